/*
 * audit.c - the audit log's hash chain (see audit.h).
 *
 * The hash input is a sequence of netstrings so that no field can bleed
 * into the next: "a|b" + "c" and "a" + "b|c" hash differently.
 *
 * The JSON form (cf_audit_to_json / cf_audit_from_json) is read by clients
 * from a server they do not trust, so the reader bounds every field and
 * the writer refuses exactly what the reader would: one table of fields
 * drives both, and an entry survives to_json + from_json unchanged.
 */
#include "audit.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

const char cf_audit_genesis[65] =
	"0000000000000000000000000000000000000000000000000000000000000000";

static int put_field(EVP_MD_CTX *md, const char *data, size_t len)
{
	char head[32];
	int n = snprintf(head, sizeof(head), "%zu:", len);

	return EVP_DigestUpdate(md, head, (size_t)n) &&
	       EVP_DigestUpdate(md, data, len) &&
	       EVP_DigestUpdate(md, ",", 1);
}

static int put_str(EVP_MD_CTX *md, const char *s)
{
	return put_field(md, s, strlen(s));
}

static int put_int(EVP_MD_CTX *md, int64_t v)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRId64, v);

	return put_field(md, buf, (size_t)n);
}

cf_status cf_audit_hash(const cf_audit_entry *e, char hex[65], cf_error *err)
{
	cf_status rc = CF_OK;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char digest[32];
	unsigned int dlen = 0;

	if (md == NULL || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) ||
	    !put_int(md, e->seq) || !put_int(md, e->time) ||
	    !put_str(md, e->tenant) || !put_str(md, e->actor) ||
	    !put_str(md, e->subject) || !put_str(md, e->source) ||
	    !put_str(md, e->action) || !put_str(md, e->object) ||
	    !put_int(md, e->bytes) || !put_str(md, e->prev) ||
	    !EVP_DigestFinal_ex(md, digest, &dlen) || dlen != sizeof(digest)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				      "cannot hash audit entry %" PRId64, e->seq);
		goto out;
	}
	for (size_t i = 0; i < sizeof(digest); i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
out:
	EVP_MD_CTX_free(md);
	return rc;
}

cf_status cf_audit_check(const cf_audit_entry *e, const char *prev_hash,
			 cf_error *err)
{
	char want[65];
	cf_status rc;

	if (strcmp(e->prev, prev_hash) != 0)
		return cf_error_set(err, CF_ERR_AUDIT,
				    "audit entry %" PRId64 " of tenant %.16s: its "
				    "link to the previous entry is broken (an "
				    "entry before it was removed or altered)",
				    e->seq, e->tenant);
	rc = cf_audit_hash(e, want, err);
	if (rc != CF_OK)
		return rc;
	if (strcmp(want, e->hash) != 0)
		return cf_error_set(err, CF_ERR_AUDIT,
				    "audit entry %" PRId64 " of tenant %.16s: its "
				    "hash does not match its contents (the entry "
				    "was altered)", e->seq, e->tenant);
	return CF_OK;
}

/* ------------------------------------------------------------ JSON form */

/* The string fields in the order of docs/API.md; hex: 64 lower-case hex. */
static const struct {
	const char *key;
	size_t off, size;
	int hex;
} str_fields[] = {
	{ "tenant", offsetof(cf_audit_entry, tenant), 65, 1 },
	{ "actor", offsetof(cf_audit_entry, actor), 65, 0 },
	{ "subject", offsetof(cf_audit_entry, subject), CF_AUDIT_SUBJECT_MAX, 0 },
	{ "source", offsetof(cf_audit_entry, source), CF_AUDIT_SOURCE_MAX, 0 },
	{ "action", offsetof(cf_audit_entry, action), CF_AUDIT_ACTION_MAX, 0 },
	{ "object", offsetof(cf_audit_entry, object), CF_AUDIT_OBJECT_MAX, 0 },
	{ "prev", offsetof(cf_audit_entry, prev), 65, 1 },
	{ "hash", offsetof(cf_audit_entry, hash), 65, 1 },
};

#define N_STR_FIELDS (sizeof(str_fields) / sizeof(str_fields[0]))

/* 1 if s[0..len) may be field i: bounded, no NUL, hex where required. */
static int str_ok(size_t i, const char *s, size_t len)
{
	if (len >= str_fields[i].size || memchr(s, '\0', len) != NULL)
		return 0;
	if (!str_fields[i].hex)
		return 1;
	if (len != 64)
		return 0;
	for (size_t k = 0; k < len; k++)
		if (!((s[k] >= '0' && s[k] <= '9') || (s[k] >= 'a' && s[k] <= 'f')))
			return 0;
	return 1;
}

static const char *str_rule(size_t i)
{
	return str_fields[i].hex ? "lower-case hex of exactly"
				 : "a string without NUL of at most";
}

/* What str_rule names as the longest length: 64 for hex fields too. */
static size_t str_max(size_t i)
{
	return str_fields[i].size - 1;
}

cf_status cf_audit_to_json(const cf_audit_entry *e, json_t **out,
			   cf_error *err)
{
	json_t *j = NULL;
	cf_status rc = CF_OK;

	*out = NULL;
	if (e->seq < 1)
		return cf_error_set(err, CF_ERR_USAGE,
				    "audit entry has seq %" PRId64 "; a stored "
				    "entry's seq is 1 or more", e->seq);
	j = json_pack("{s:I,s:I,s:I}", "seq", (json_int_t)e->seq, "time",
		      (json_int_t)e->time, "bytes", (json_int_t)e->bytes);
	if (j == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < N_STR_FIELDS; i++) {
		const char *s = (const char *)e + str_fields[i].off;
		const char *end = memchr(s, '\0', str_fields[i].size);
		json_t *v;

		if (end == NULL || !str_ok(i, s, (size_t)(end - s))) {
			rc = cf_error_set(err, CF_ERR_USAGE,
					  "audit entry %" PRId64 ": \"%s\" must be "
					  "%s %zu bytes", e->seq, str_fields[i].key,
					  str_rule(i), str_max(i));
			goto out;
		}
		/* NULL here is invalid UTF-8 (or, rarely, no memory). */
		v = json_stringn(s, (size_t)(end - s));
		if (v == NULL || json_object_set_new(j, str_fields[i].key, v) != 0) {
			rc = cf_error_set(err, CF_ERR_USAGE,
					  "audit entry %" PRId64 ": \"%s\" is not "
					  "UTF-8 text (or memory ran out)", e->seq,
					  str_fields[i].key);
			goto out;
		}
	}
	*out = j;
	j = NULL;
out:
	json_decref(j);
	return rc;
}

cf_status cf_audit_from_json(const json_t *j, cf_audit_entry *e,
			     cf_error *err)
{
	static const char *const int_keys[] = { "seq", "time", "bytes" };
	int64_t ints[3];

	memset(e, 0, sizeof(*e));
	if (!json_is_object(j))
		return cf_error_set(err, CF_ERR_AUDIT,
				    "an audit entry from the server is not a "
				    "JSON object");
	for (size_t i = 0; i < 3; i++) {
		const json_t *v = json_object_get(j, int_keys[i]);

		if (!json_is_integer(v))
			return cf_error_set(err, CF_ERR_AUDIT,
					    "an audit entry from the server has "
					    "no integer \"%s\"", int_keys[i]);
		ints[i] = (int64_t)json_integer_value(v);
	}
	if (ints[0] < 1)
		return cf_error_set(err, CF_ERR_AUDIT,
				    "an audit entry from the server has seq %"
				    PRId64 "; entries count from 1", ints[0]);
	for (size_t i = 0; i < N_STR_FIELDS; i++) {
		const json_t *v = json_object_get(j, str_fields[i].key);
		const char *s = json_string_value(v);
		size_t len = json_string_length(v);

		if (s == NULL || !str_ok(i, s, len)) {
			memset(e, 0, sizeof(*e));
			return cf_error_set(err, CF_ERR_AUDIT,
					    "audit entry %" PRId64 " from the "
					    "server: \"%s\" is missing or not %s "
					    "%zu bytes", ints[0], str_fields[i].key,
					    str_rule(i), str_max(i));
		}
		memcpy((char *)e + str_fields[i].off, s, len);
		((char *)e + str_fields[i].off)[len] = '\0';
	}
	e->seq = ints[0];
	e->time = ints[1];
	e->bytes = ints[2];
	return CF_OK;
}
