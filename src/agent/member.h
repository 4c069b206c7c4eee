/*
 * member.h - the agent as a member of a cluster (docs/CLUSTERS.md).
 *
 * An agent is in at most one cluster: the key, certificate and chain in
 * D/cluster.pem (0600).  It gets there from a "cluster-key/NAME" record
 * in the agent's own feed (an enroller's `coffer cluster add`), or from a
 * PKCS#12 file (`coffer agent cluster-join --p12`).  Either way the
 * cluster certificate must verify against the organisation's root and
 * CRL before the key is kept.  While it is a member, its feed requests
 * carry the proof that it holds the key (Coffer-Cluster), and the
 * server's answer carries the cluster's envelopes, opened with the
 * cluster key.
 */
#ifndef CF_AGENT_MEMBER_H
#define CF_AGENT_MEMBER_H

#include <openssl/x509.h>

#include "cluster.h"
#include "error.h"
#include "policy.h"
#include "state.h"
#include "trust.h"

typedef struct ag_member {
	char name[CF_NAME_MAX_BYTES + 1];   /* the cluster's */
	char fp[65];                        /* its certificate's */
	X509 *cert;
	STACK_OF(X509) *chain;
	EVP_PKEY *key;
	/* "FP PROOF": the Coffer-Cluster header's value for this agent. */
	char header[65 + CF_CLUSTER_PROOF_MAX + 1];
} ag_member;

/*
 * Loads D/cluster.pem if there is one (*out NULL if not), verified with
 * trust; agent is the agent's certificate (the proof is for it).
 */
cf_status ag_member_load(const ag_state *st, const cf_trust *trust,
			 X509 *agent, ag_member **out, cf_error *err);

/*
 * Takes a bundle (cluster.h) for cluster name (NULL: the one it names):
 * checks and verifies it, and writes D/cluster.pem.  A key of another
 * cluster than the one in D is refused (CF_ERR_EXISTS) unless replace.
 * *out is the new membership.
 */
cf_status ag_member_install(const ag_state *st, const cf_trust *trust,
			    X509 *agent, const unsigned char *pem, size_t len,
			    const char *name, int replace, ag_member **out,
			    cf_error *err);

void ag_member_free(ag_member *m);

#endif
