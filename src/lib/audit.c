/*
 * audit.c - the audit log's hash chain (see audit.h).
 *
 * The hash input is a sequence of netstrings so that no field can bleed
 * into the next: "a|b" + "c" and "a" + "b|c" hash differently.
 */
#include "audit.h"

#include <inttypes.h>
#include <openssl/evp.h>
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
