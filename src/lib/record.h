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

typedef struct cf_record {
	char tenant[65];                    /* hex SHA-256 of the root's DER */
	char name[CF_NAME_MAX_BYTES + 1];
	uint64_t version;                   /* >= 1 */
	int64_t created;                    /* UNIX seconds */
	cf_record_type type;
	cf_secret *value;                   /* owned; freed by cf_record_free */
} cf_record;

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
