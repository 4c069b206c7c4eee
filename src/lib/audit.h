/*
 * audit.h - one entry of the server's audit log and its hash chain.
 *
 * The server logs every state change and every envelope read as an entry
 * of metadata only (who, from where, did what, to which object, how many
 * bytes).  Entries of one tenant form a chain: each holds the SHA-256 of
 * the previous entry's hash and its own fields (docs/API.md, "Audit").
 * It is an unsigned hash chain that the server builds: it detects an entry
 * edited, removed or reordered while later entries stay in place, but
 * whoever can write the database can rewrite the whole chain from some
 * entry on, which is detectable only against a last hash recorded earlier
 * (docs/THREAT-MODEL.md, "Audit").  The store computes the chain when it
 * appends; the CLI's `coffer audit verify` recomputes it with the same
 * function.
 */
#ifndef CF_AUDIT_H
#define CF_AUDIT_H

#include <jansson.h>
#include <stdint.h>

#include "error.h"

#define CF_AUDIT_ACTION_MAX 32
#define CF_AUDIT_OBJECT_MAX 512
#define CF_AUDIT_SUBJECT_MAX 256
#define CF_AUDIT_SOURCE_MAX 64

typedef struct cf_audit_entry {
	int64_t seq;                 /* 1, 2, ... within the tenant (store sets) */
	int64_t time;                /* unix seconds (0: the store uses now) */
	char tenant[65];             /* root fingerprint, hex */
	char actor[65];              /* caller's certificate fingerprint, or "" */
	char subject[CF_AUDIT_SUBJECT_MAX]; /* caller's subject ("CN=a,O=b"), or "" */
	char source[CF_AUDIT_SOURCE_MAX];   /* "127.0.0.1:50312", "[::1]:4431" */
	char action[CF_AUDIT_ACTION_MAX];   /* "secret.put", "secret.read", ... */
	char object[CF_AUDIT_OBJECT_MAX];   /* secret name, token id, fp, ... */
	int64_t bytes;               /* payload bytes moved or stored */
	char prev[65];               /* hash of the previous entry (store sets) */
	char hash[65];               /* this entry's hash (store sets) */
} cf_audit_entry;

/* The hash of the chain's first entry's "prev": 64 zeros. */
extern const char cf_audit_genesis[65];

/*
 * Computes e's hash from e->prev and its fields into hex[65]:
 * SHA-256 over the netstrings ("<len>:<bytes>,") of seq, time, tenant,
 * actor, subject, source, action, object, bytes, prev, in that order,
 * integers in decimal.  Never fails for a well-formed entry.
 */
cf_status cf_audit_hash(const cf_audit_entry *e, char hex[65], cf_error *err);

/*
 * Checks one link: e->hash is cf_audit_hash(e) and e->prev equals prev_hash
 * (cf_audit_genesis for seq 1).  CF_ERR_AUDIT names the entry's seq.
 */
cf_status cf_audit_check(const cf_audit_entry *e, const char *prev_hash,
			 cf_error *err);

/*
 * The JSON object of one entry, as GET /v1/audit sends it (docs/API.md,
 * "Audit"): {"seq","time","tenant","actor","subject","source","action",
 * "object","bytes","prev","hash"}, integers as JSON integers.  *out is a
 * new reference.  Refuses (CF_ERR_USAGE) an entry cf_audit_from_json would
 * refuse, so that whatever one side writes the other reads back equal.
 */
cf_status cf_audit_to_json(const cf_audit_entry *e, json_t **out,
			   cf_error *err);

/*
 * Reads such an object, which comes from a server the reader does not
 * trust, into *e (zeroed first).  Every field is required: seq >= 1,
 * time and bytes integers; tenant, prev and hash exactly 64 lower-case
 * hex characters; the other strings shorter than their buffer, without
 * NUL.  Other keys are ignored (a newer server may add some).  It checks
 * form only: whether the entry belongs to its chain is cf_audit_check's
 * job.  CF_ERR_AUDIT names the first bad field.
 */
cf_status cf_audit_from_json(const json_t *j, cf_audit_entry *e,
			     cf_error *err);

#endif
