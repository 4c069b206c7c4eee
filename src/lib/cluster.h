/*
 * cluster.h - clusters: several agents that share one key (docs/CLUSTERS.md).
 *
 * A cluster is a P-256 key and a certificate of kind cluster whose
 * extension .3 names it, issued by an enroller whose agent.enroll covers
 * the name (or by the root).  Its private key reaches members two ways:
 *
 *   bundle   the value of the secret "cluster-key/NAME": the cluster
 *            certificate, its chain and the key, as PEM text, signed by
 *            the enroller and sealed to each member like any secret
 *   PKCS#12  a password-protected file (AES-256-CBC, PBKDF2 with
 *            HMAC-SHA256, SHA-256 MAC) for machines that join by file
 *
 * Holding the key is what membership is.  A member proves it with a
 * signature by the cluster key over (tenant, cluster fingerprint, member
 * fingerprint): the proof.  The server asks for it before it hands out
 * the cluster's envelopes or takes a cluster cache entry from an agent
 * (it cannot read either; the proof only keeps strangers' requests out),
 * and a cluster cache entry carries it inside the signed record, where
 * readers check it: the member agent signed the entry and the proof says
 * that agent held the cluster key.
 */
#ifndef CF_CLUSTER_H
#define CF_CLUSTER_H

#include <openssl/x509.h>

#include "error.h"
#include "secmem.h"

/* Names: "cluster-key/NAME" carries the key, "cluster/NAME/..." is the
 * members' shared cache. */
#define CF_CLUSTER_KEY_PREFIX "cluster-key/"
#define CF_CLUSTER_CACHE_PREFIX "cluster/"

/* Largest bundle and PKCS#12 file accepted. */
#define CF_CLUSTER_BUNDLE_MAX (64u * 1024u)
#define CF_CLUSTER_P12_MAX (64u * 1024u)
/* Longest proof in base64 (an ECDSA P-256 DER signature is <= 72 bytes). */
#define CF_CLUSTER_PROOF_MAX 128

/* PBKDF2 iterations of an exported PKCS#12 (key and MAC). */
#define CF_CLUSTER_P12_ITER 600000
/*
 * Most iterations an imported PKCS#12 may ask for (MAC or a bag's PBKDF2):
 * the file is outside input, and its counts decide how long we compute.
 */
#define CF_CLUSTER_P12_ITER_MAX 10000000

/*
 * The cluster NAME of a secret name: "cluster-key/NAME" (key != 0) or
 * "cluster/NAME/..." (key == 0) into buf (size >= CF_NAME_MAX_BYTES + 1).
 * Returns 1 if name is of that form with a valid cluster name, else 0.
 * The whole name must pass cf_name_check; NAME is one segment (no '/');
 * "cluster/NAME/" (empty rest) is not a cache entry.  buf is "" on 0.
 */
int cf_cluster_of_name(const char *name, int key, char *buf, size_t size);

/*
 * Checks that cert is a cluster certificate (kind cluster, P-256) whose
 * extension .3 is a valid one-segment cluster name (no '/': cf_cert_issue
 * would accept one, but cluster/NAME/... could not name it), equal to
 * name (NULL: any), and that key (if not NULL) is P-256 and belongs to
 * it.  CF_ERR_POLICY if not, saying which.
 */
cf_status cf_cluster_check_cert(X509 *cert, EVP_PKEY *key, const char *name,
				cf_error *err);

/*
 * Whether signer may give agent (an agent certificate) a cluster's key:
 * it must be one who could have enrolled the agent, an agent.enroll rule
 * covering one of the agent's groups (for an agent without groups, a
 * rule covering every name, as admin does).  Agents refuse a key record
 * from anybody else, and `coffer cluster` checks it before it gives one,
 * so that an enroller of one part of the organisation cannot pull
 * another part's agents into a cluster of its own.  CF_ERR_POLICY,
 * naming the signer, when not.
 */
cf_status cf_cluster_may_give(X509 *signer, X509 *agent, cf_error *err);

/*
 * The bundle: cert's PEM, each of chain's (may be NULL), then key as
 * unencrypted PKCS#8 PEM, into secure memory (*out, cf_secret_free).
 * cert and key must pass cf_cluster_check_cert (CF_ERR_POLICY);
 * CF_ERR_TOO_LARGE if the result would exceed CF_CLUSTER_BUNDLE_MAX.
 */
cf_status cf_cluster_bundle_encode(X509 *cert, STACK_OF(X509) *chain,
				   EVP_PKEY *key, cf_secret **out,
				   cf_error *err);
/*
 * Parses a bundle (outside input: strict, bounded by
 * CF_CLUSTER_BUNDLE_MAX, CF_ERR_TOO_LARGE above): PEM blocks separated by
 * white space only (no text around them, no NUL, no PEM headers), of
 * types CERTIFICATE and PRIVATE KEY (unencrypted PKCS#8, P-256) only;
 * exactly one private key, at least one certificate, the first
 * certificate is the cluster's and passes cf_cluster_check_cert with the
 * key and name (NULL: any name).  The other certificates are returned as
 * *chain in their order (chain may be NULL: they are dropped; *chain is
 * NULL when there are none).  It does not verify the chain: the caller
 * does that with its trust.  CF_ERR_PARSE or CF_ERR_POLICY; on error
 * nothing is returned.
 */
cf_status cf_cluster_bundle_decode(const unsigned char *pem, size_t len,
				   const char *name, X509 **cert,
				   STACK_OF(X509) **chain, EVP_PKEY **key,
				   cf_error *err);

/*
 * The proof that whoever holds member_fp's identity holds cluster_key:
 * base64 of the ECDSA-SHA256 signature over the text
 * "coffer cluster member v1\n" TENANT "\n" CLUSTER_FP "\n" MEMBER_FP,
 * fingerprints lowercase hex SHA-256 of DER.  out has room for
 * CF_CLUSTER_PROOF_MAX + 1 bytes.  tenant and both fingerprints must be
 * 64 lowercase hex characters (CF_ERR_USAGE otherwise); the key must be
 * P-256.  The caller makes sure cluster_fp is the fingerprint of
 * cluster_key's certificate: a proof made for another fp never checks.
 */
cf_status cf_cluster_proof(EVP_PKEY *cluster_key, const char *tenant,
			   const char *cluster_fp, const char *member_fp,
			   char out[CF_CLUSTER_PROOF_MAX + 1], cf_error *err);
/*
 * Checks a proof (a NUL-terminated string from outside, e.g. the
 * Coffer-Cluster header) against cluster_cert's public key, for the
 * fingerprint of cluster_cert.  CF_ERR_POLICY if cluster_cert is not a
 * cluster certificate (cf_cluster_check_cert), CF_ERR_USAGE if tenant or
 * member_fp is not 64 lowercase hex, CF_ERR_PARSE if proof is not
 * canonical base64 of a plausible length, CF_ERR_SIGNATURE if it does not
 * verify.  It checks neither the chain nor the CRL: the caller does.
 */
cf_status cf_cluster_proof_check(X509 *cluster_cert, const char *tenant,
				 const char *member_fp, const char *proof,
				 cf_error *err);

/*
 * A PKCS#12 file of key, cert and chain (may be NULL), friendly name
 * "coffer cluster NAME", protected by pass: certificates and key
 * encrypted with PBES2 (PBKDF2 HMAC-SHA256, AES-256-CBC), MAC SHA-256,
 * all with CF_CLUSTER_P12_ITER iterations.  *der is OPENSSL_malloc'd.
 * cert and key must pass cf_cluster_check_cert (CF_ERR_POLICY); pass must
 * be 1..1024 bytes without NUL (CF_ERR_USAGE).  Takes about three times
 * CF_CLUSTER_P12_ITER iterations of work (a few tenths of a second).
 */
cf_status cf_cluster_p12_export(X509 *cert, STACK_OF(X509) *chain,
				EVP_PKEY *key, const cf_secret *pass,
				unsigned char **der, size_t *len,
				cf_error *err);
/*
 * Opens one (outside input, DER, at most CF_CLUSTER_P12_MAX bytes,
 * CF_ERR_TOO_LARGE above, CF_ERR_PARSE if malformed or followed by
 * bytes): a MAC must be present, with SHA-256/384/512 and at most
 * CF_CLUSTER_P12_ITER_MAX iterations (CF_ERR_POLICY otherwise), and must
 * verify with pass (CF_ERR_PASSPHRASE otherwise: wrong password; the
 * message names no file, the caller adds it).  Every encrypted bag must
 * use PBES2 with PBKDF2 (HMAC-SHA2 PRF, at most CF_CLUSTER_P12_ITER_MAX
 * iterations) and AES-CBC: legacy algorithms (RC2, RC4, 3DES, DES,
 * PBKDF2 with HMAC-SHA1) and an unencrypted key are refused with
 * CF_ERR_POLICY, a message naming the algorithm and how to re-export.
 * Exactly one private key; the certificate it belongs to is *cert and
 * must pass cf_cluster_check_cert with name (NULL: any); the other
 * certificates are *chain (chain may be NULL; *chain NULL if none).
 * Files of `openssl pkcs12 -export -keypbe AES-256-CBC -certpbe
 * AES-256-CBC -macalg sha256` are accepted.
 */
cf_status cf_cluster_p12_import(const unsigned char *der, size_t len,
				const cf_secret *pass, const char *name,
				X509 **cert, STACK_OF(X509) **chain,
				EVP_PKEY **key, cf_error *err);

#endif
