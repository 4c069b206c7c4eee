/*
 * ack.h - rollout acknowledgements (issue 6 section 4, docs/FORMAT.md
 * "Acknowledgements").
 *
 * After an agent has materialized a version of a secret (every sink that
 * uses it written, or failed), it says so in a small record signed with
 * its own key, eContentType CF_OID_ACK (.8 of the arc):
 *   {"v":1,"tenant":ROOT_FP,"agent":CN,"name":NAME,"version":N,
 *    "time":UNIX,"result":"ok|failed","reason":TEXT}
 * Field names are the contract.  Metadata only: an ack never carries a
 * value, and is not encrypted (the server stores it, operators read it).
 * The signature is what makes it worth reading: the server relays acks,
 * and `coffer status` believes only those that verify against its own
 * root and CRL and were signed by the agent they speak for.
 *
 * The parser is for outside input: bounded (CF_ACK_RECORD_MAX before any
 * JSON parsing), strict (unknown or duplicate keys refused, every field
 * present, of its type and within its bound, no control character in a
 * text field).
 */
#ifndef CF_ACK_H
#define CF_ACK_H

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "pki.h"
#include "policy.h"
#include "secmem.h"
#include "trust.h"

#define CF_ACK_REASON_MAX 1024          /* bytes of a failure's reason */
#define CF_ACK_RECORD_MAX (8u * 1024u)  /* the record JSON */
/* The signed DER: the record, the agent's certificate and its enroller's. */
#define CF_ACK_SIGNED_MAX (64u * 1024u)

typedef enum cf_ack_result {
	CF_ACK_OK = 0,       /* every sink using the version was written */
	CF_ACK_FAILED,       /* some could not be; reason says why */
} cf_ack_result;

typedef struct cf_ack {
	char tenant[65];                     /* ROOT_FP */
	char agent[CF_CN_MAX_BYTES + 1];     /* the agent's CN */
	char name[CF_NAME_MAX_BYTES + 1];    /* the secret */
	int64_t version;                     /* 1 .. 2^53 - 1 */
	int64_t time;                        /* unix seconds, when applied */
	cf_ack_result result;
	char reason[CF_ACK_REASON_MAX + 1];  /* "" for ok */
} cf_ack;

/* "ok", "failed"; NULL for anything else. */
const char *cf_ack_result_name(cf_ack_result result);
/* 0 and *out set for "ok" or "failed", else -1. */
int cf_ack_result_from_name(const char *name, cf_ack_result *out);

/*
 * Copies reason into ack->reason, cut to CF_ACK_REASON_MAX bytes (on a
 * UTF-8 character boundary) and with every control character made a
 * space, so that any error sentence can be acknowledged.
 */
void cf_ack_set_reason(cf_ack *ack, const char *reason);

/* Compact JSON of ack (every field checked: CF_ERR_USAGE). */
cf_status cf_ack_encode(const cf_ack *ack, cf_secret **json, cf_error *err);

/* Strict parse of an ack record (outside input): CF_ERR_RECORD,
 * CF_ERR_TOO_LARGE, CF_ERR_NOMEM.  *out is zeroed first. */
cf_status cf_ack_parse(const unsigned char *json, size_t len, cf_ack *out,
		       cf_error *err);

/*
 * Encodes ack and signs it with the agent's key (cert, key, and chain:
 * the enroller between the agent and the root, may be NULL, included so
 * that a verifier needs only the root).  *der is OPENSSL_malloc'ed: free
 * it with OPENSSL_free.
 */
cf_status cf_ack_sign(const cf_ack *ack, X509 *cert, EVP_PKEY *key,
		      STACK_OF(X509) *chain, unsigned char **der, size_t *len,
		      cf_error *err);

/*
 * Verifies a signed ack: at most CF_ACK_SIGNED_MAX bytes, one CMS
 * SignedData of content type ack whose signature verifies
 * (cf_envelope_check_signature_as), a signer that chains to trust's root
 * and is not revoked (cf_trust_verify) and is an agent certificate, then
 * the record's strict parse, its tenant (trust's) and its agent (the
 * signer's CN).  On success *out is the record and signer_fp (may be
 * NULL) the signer's fingerprint, so the caller can check whose ack it
 * is.  Refusals: CF_ERR_TOO_LARGE, CF_ERR_MALFORMED, CF_ERR_SIGNATURE,
 * CF_ERR_UNTRUSTED, CF_ERR_REVOKED, CF_ERR_PERMISSION (not an agent),
 * CF_ERR_RECORD, CF_ERR_NAME (the record speaks for another agent).
 */
cf_status cf_ack_verify(const unsigned char *der, size_t len,
			const cf_trust *trust, cf_ack *out, char signer_fp[65],
			cf_error *err);

#endif
