/*
 * record.h - the signed content of one secret version (DESIGN 3).
 *
 * JSON, field names are the contract (docs/FORMAT.md):
 *   {"v":1,"tenant":ROOT_FP,"name":NAME,"version":N,"created":UNIX,
 *    "type":"text|binary|file|template","value":BASE64}
 * The encoded record and the decoded value live in secure memory.
 */
#ifndef CF_RECORD_H
#define CF_RECORD_H

#include <stdint.h>

#include "error.h"
#include "policy.h"
#include "secmem.h"

/* Largest record accepted: a 1 MiB value in base64 plus the other fields. */
#define CF_RECORD_MAX_BYTES (((CF_SECRET_MAX_BYTES + 2) / 3) * 4 + 4096)

typedef enum cf_record_type {
	CF_TYPE_TEXT = 0,
	CF_TYPE_BINARY,
	CF_TYPE_FILE,
	CF_TYPE_TEMPLATE,
} cf_record_type;

/* Optional members (docs/FORMAT.md section 1): at most this many each. */
#define CF_RECORD_TARGETS_MAX 256
/* Longest "member" proof (cluster.h CF_CLUSTER_PROOF_MAX). */
#define CF_RECORD_MEMBER_MAX 128

typedef struct cf_record {
	char tenant[65];                    /* hex SHA-256 of the root's DER */
	char name[CF_NAME_MAX_BYTES + 1];
	uint64_t version;                   /* >= 1 */
	int64_t created;                    /* UNIX seconds */
	cf_record_type type;
	cf_secret *value;                   /* owned; freed by cf_record_free */
	/*
	 * Who the writer sealed this version for, signed with it, so that
	 * `coffer sync` and `coffer rotate` extend it only as the writer
	 * meant and never as a server says: targets are "agent:NAME",
	 * "group:NAME", "cluster:NAME" or "fp:HEX64" (the writer's --to), without the
	 * fingerprints it left out on purpose.  Both optional (n 0: the
	 * member is not written).  Owned by the record when parsed
	 * (cf_record_free frees them); when encoding, only read.
	 */
	char **targets;
	size_t n_targets;
	char **without;
	size_t n_without;
	/*
	 * A cluster cache entry written by a member agent ("cluster/NAME/..."):
	 * the agent's proof that it holds the cluster key (cluster.h
	 * cf_cluster_proof, base64).  Optional; empty: not written.
	 */
	char member[CF_RECORD_MEMBER_MAX + 1];
} cf_record;

/* A target spec of a record: agent:NAME, group:NAME, cluster:NAME or
 * fp:HEX64. */
cf_status cf_record_target_check(const char *spec, cf_error *err);

const char *cf_record_type_name(cf_record_type type);
/* Returns 0 and sets *out when name is a known type, -1 otherwise. */
int cf_record_type_from_name(const char *name, cf_record_type *out);

/* Compact JSON of rec into secure memory; the fields are validated. */
cf_status cf_record_encode(const cf_record *rec, cf_secret **json,
			   cf_error *err);

/* Parses and validates a record (outside input: strict and bounded). */
cf_status cf_record_parse(const unsigned char *json, size_t len,
			  cf_record **out, cf_error *err);

cf_record *cf_record_new(void);
void cf_record_free(cf_record *rec);

#endif
