/*
 * api.h - what the API handlers (api_*.c) share: checks of the caller's
 * rights beyond srv_allows, and the validation of outside input.
 *
 * Every getter here either yields a value that is checked and bounded, or
 * has already answered the request with a 400 whose message names the
 * field, what is wrong with it and what to send instead; it then returns
 * -1 and the handler must return without replying and without having
 * changed anything.  So a handler reads all its input first, then acts.
 *
 * Nothing here keeps state between requests.
 */
#ifndef CF_SERVER_API_H
#define CF_SERVER_API_H

#include <jansson.h>
#include <openssl/bio.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

/* Pages and batches. */
#define API_LIST_MAX 1000          /* rows per listing page */
#define API_TOKENS_MAX 10000       /* tokens per POST /v1/tokens */
#define API_TOKEN_ENVELOPE_MAX 65536
#define API_TOKEN_TTL_MAX (366 * 86400)
#define API_TOKEN_USES_MAX 1000000
#define API_ENVELOPES_MAX 100000   /* recipients per secret version */
#define API_FEED_LIMIT_DEFAULT 100
#define API_FEED_WAIT_MAX 60       /* seconds */
#define API_FEED_BYTES_MAX (8u * 1024u * 1024u) /* envelope bytes per answer */
#define API_REASON_MAX 255

/*
 * An `admin` rule whose scope is `**`: the right to do what has no name
 * to scope (add an operator certificate to the directory).
 */
int api_is_admin(const srv_identity *id);

/*
 * Holds some rule for verb (any scope), or admin:**: for rights that are
 * not about one name (reading the audit log).
 */
int api_holds(const srv_identity *id, const char *verb);

/* Answers 403 unless the caller is an operator or enroller; 0 if it is. */
int api_need_operator(srv_req *r, const srv_identity *id, const char *what);

/*
 * Answers a failed store or library call: the status decides the HTTP
 * status (docs/API.md); a database or internal failure is logged on
 * stderr with what was being done and answered with a sentence that
 * leaks nothing of it.
 */
void api_fail(srv_req *r, const cf_error *err, const char *doing);

/*
 * Replies status with body (taken over); a NULL body (allocation failed
 * while building it) becomes a 500.
 */
void api_reply(srv_req *r, int status, json_t *body);

/* s is exactly len characters of lower-case hex. */
int api_is_hex(const char *s, size_t len);

/*
 * Base64 of a JSON string to 1 to max bytes, strictly (cf_b64_decode:
 * RFC 4648, padded, canonical, no white space): *out OPENSSL_malloc'ed,
 * free it with OPENSSL_free.  -1 with the request answered otherwise
 * (400, 413 above max, 500 out of memory).
 */
int api_b64_field(srv_req *r, const char *what, const json_t *value,
		  size_t max, unsigned char **out, size_t *len);

/* Base64 of bytes as a new JSON string (NULL on allocation failure). */
json_t *api_b64_json(const unsigned char *data, size_t len);

/*
 * The "envelopes" of a request body (api_envelopes.c), checked as
 * docs/API.md says for PUT /v1/secrets: 1 to max of them, each a DER
 * envelope of at most CF_ENVELOPE_MAX_BYTES, no recipient twice, every
 * recipient a certificate of the caller's tenant that is not revoked (nor
 * its issuing enroller).  0 with *out filled (release it with
 * api_envelopes_clear); -1 with the request answered and *out empty.
 */
typedef struct api_envelopes {
	cf_envelope_in *envs;     /* n, pointing into bufs */
	unsigned char **bufs;     /* n malloc'ed DER buffers */
	char (*recipients)[65];   /* n fingerprints, for srv_wake */
	size_t n;
	int64_t bytes;            /* total DER bytes */
} api_envelopes;

int api_envelopes_read(srv_req *r, const srv_identity *id,
		       const json_t *body, size_t max, api_envelopes *out);
void api_envelopes_clear(api_envelopes *e);

/* Field getters of a JSON object: -1 with the request answered. */
int api_str(srv_req *r, const json_t *obj, const char *key, size_t max,
	    int required, const char **out);
int api_int(srv_req *r, const json_t *obj, const char *key, int64_t min,
	    int64_t max, int64_t *out);
int api_hex_field(srv_req *r, const json_t *obj, const char *key,
		  size_t len, const char **out);

/* Query parameters: absent -> def; -1 with the request answered. */
int api_param_int(srv_req *r, const char *key, int64_t min, int64_t max,
		  int64_t def, int64_t *out);
/* Absent -> NULL; present must be exactly len lower-case hex characters. */
int api_param_hex(srv_req *r, const char *key, size_t len, const char **out);
/* A secret, group or cluster name (cf_name_check); required. */
int api_param_name(srv_req *r, const char *key, const char **out);
int api_name_ok(srv_req *r, const char *what, const char *name);

/* The rest of the path as an id of len hex characters, else 404. */
int api_path_id(srv_req *r, size_t len, const char *what, char *id,
		size_t id_size);

/*
 * A directory row for cert of tenant, issued by issuer_fp (the tenant for
 * the root).  The strings are malloc'ed: cf_cert_row_clear releases them.
 */
cf_status api_cert_row(X509 *cert, const char *tenant, const char *issuer_fp,
		       int64_t now, cf_cert_row *row, cf_error *err);

/* A certificate as a new PEM JSON string. */
json_t *api_pem_json(X509 *cert);

/* A comma-separated list as a JSON array of strings ("" -> []). */
json_t *api_split_json(const char *list);

/* The contents of a memory BIO as a malloc'ed string (NULL if none). */
char *api_bio_text(BIO *bio);

/*
 * A certificate or request as PEM text (cf_cert_to_pem, cf_csr_to_pem),
 * malloc'ed (NULL on failure).
 */
char *api_cert_pem(X509 *cert);
char *api_csr_pem(X509_REQ *csr);

/* 403: "KIND \"NAME\" holds no RULES rule matching NAME"; returns -1. */
int api_deny_name(srv_req *r, const srv_identity *id, const char *rules,
		  const char *name);

/*
 * srv_allows for the secret verbs (secret.read, secret.write), with the
 * substitution for cluster keys: "cluster-key/NAME" takes agent.enroll on
 * the cluster NAME instead, whatever the verb, and any other name under
 * cluster-key/ is allowed to nobody.  Every check of a secret verb on a
 * name goes through this (docs/API.md, "Clusters").
 */
int api_secret_allows(const srv_identity *id, const char *verb,
		      const char *name);
/* The 403 for a refusal of api_secret_allows (rules: what was needed,
 * "secret.write"); returns -1. */
int api_deny_secret(srv_req *r, const srv_identity *id, const char *rules,
		    const char *name);

/* The latest version of name, tombstones included (0 if none). */
int64_t api_latest_version(srv_req *r, const char *tenant, const char *name);

/*
 * 409 for a version not above the latest, with "latest" beside "error"
 * so the writer can retry above it; then says what happened and what to
 * do ("nothing was stored; seal and upload it again"), before "as version
 * LATEST+1".
 */
void api_reply_stale(srv_req *r, const char *tenant, const char *name,
		     int64_t version, const char *then);

/*
 * The certificate of chain that issued cert, if one did and may have: an
 * enroller named as cert's issuer whose key verifies cert's signature and
 * which itself verifies against trust (root, CRL).  X509_check_issued
 * alone compares names and key ids, so a client could otherwise append a
 * forged "enroller" with made-up rights.  NULL if none (not an error).
 */
X509 *api_proven_issuer(const cf_trust *trust, X509 *cert,
			STACK_OF(X509) *chain);

/*
 * The tenant's stored CRL, parsed (*out NULL if it has none; the caller
 * frees it with X509_CRL_free); -1 answered (500).
 */
int api_tenant_crl(srv_req *r, const char *tenant, X509_CRL **out);

/*
 * Is the certificate with this serial (lowercase hex, as the directory
 * stores it) on crl?  An unreadable serial counts as revoked: it is never
 * handed envelopes.  0 when crl is NULL.
 */
int api_serial_revoked(X509_CRL *crl, const char *serial_hex);

/*
 * Cluster membership: the request header "Coffer-Cluster: CLUSTER_FP
 * PROOF" (exactly one space; PROOF the base64 cf_cluster_proof over this
 * tenant, CLUSTER_FP and the caller's own fingerprint).  Returns 0 if the
 * header is absent (nothing answered); 1 if the caller proved it holds
 * the key of that cluster certificate, with *row its directory row
 * (release it with cf_cert_row_clear) and, if cert is not NULL, *cert the
 * certificate; -1 answered otherwise: 400 for a header sent twice or not
 * of that form, 403 naming what failed (not in the directory, not of kind
 * cluster, expired, revoked or its enroller revoked, proof not verifying),
 * 500 for the server's own failure.  *row is empty unless 1.
 */
#define API_CLUSTER_HEADER "Coffer-Cluster"
int api_cluster_member(srv_req *r, const srv_identity *id, cf_cert_row *row,
		       X509 **cert);

/*
 * For /metrics (api_status.c): how many secrets, over every tenant, still
 * have a stored envelope addressed to a certificate the tenant's CRL
 * revokes (or whose issuing enroller it revokes).
 */
cf_status api_exposed_count(cf_store *st, int64_t *secrets, cf_error *err);

#endif
