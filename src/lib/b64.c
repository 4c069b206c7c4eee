/*
 * b64.c - strict, bounded base64 (see b64.h).
 *
 * Decoding checks the text before it takes memory: length, alphabet and
 * '=' placement are checked character by character, then the decoded
 * size against the caller's maximum, then EVP_DecodeBlock decodes into
 * the caller's kind of memory.  Canonical form is checked by encoding the
 * last quantum back and comparing: every earlier quantum is four alphabet
 * characters, which map one-to-one to three bytes, so only the last one
 * (where padding bits live) can be non-canonical.  That scratch holds up
 * to three bytes of what may be a secret, so it is wiped.
 */
#include "b64.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

static int in_alphabet(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/';
}

size_t cf_b64_encoded_len(size_t len)
{
	return (len / 3 + (len % 3 != 0)) * 4;
}

cf_status cf_b64_encode(const unsigned char *in, size_t len, char *out,
			size_t out_cap, size_t *out_len, cf_error *err)
{
	size_t n;

	if (out_len != NULL)
		*out_len = 0;
	if (len > CF_B64_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"cannot base64-encode %zu bytes: the limit is %zu",
			len, CF_B64_MAX_BYTES);
	n = cf_b64_encoded_len(len);
	if (out_cap < n + 1)
		return cf_error_set(err, CF_ERR_USAGE,
			"the base64 buffer holds %zu bytes, %zu are needed",
			out_cap, n + 1);
	out[0] = '\0';
	if (len > 0 &&
	    EVP_EncodeBlock((unsigned char *)out, in, (int)len) != (int)n)
		return cf_error_set(err, CF_ERR_CRYPTO, "base64 encoding failed");
	if (out_len != NULL)
		*out_len = n;
	return CF_OK;
}

/* Everything but canonical form: *n gets the decoded size. */
static cf_status check(const char *text, size_t len, size_t max,
		       const char *what, size_t *n, cf_error *err)
{
	const unsigned char *t = (const unsigned char *)text;
	size_t pad = 0;

	*n = 0;
	/* The bound comes first, so a huge text is not even scanned. */
	if (len / 4 * 3 > max + 2 || len > INT_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"%s is larger than the limit of %zu bytes", what, max);
	if (len % 4 != 0)
		return cf_error_set(err, CF_ERR_PARSE,
			"%s is not base64: %zu characters, not a multiple of "
			"4; use standard base64 with '=' padding", what, len);
	if (len > 0 && t[len - 1] == '=')
		pad = t[len - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < len - pad; i++)
		if (!in_alphabet(t[i]))
			return cf_error_set(err, CF_ERR_PARSE,
				"%s is not base64: unexpected character at "
				"offset %zu; use standard base64 (A-Z a-z 0-9 "
				"+ /, '=' only as padding at the end, no white "
				"space)", what, i);
	if (len / 4 * 3 - pad > max)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"%s is larger than the limit of %zu bytes", what, max);
	*n = len / 4 * 3 - pad;
	return CF_OK;
}

/* Decodes checked text into buf (len / 4 * 3 bytes of room). */
static cf_status decode_into(const char *text, size_t len, size_t n,
			     const char *what, unsigned char *buf, cf_error *err)
{
	unsigned char again[5];
	size_t last;
	int got, same;

	if (len == 0)
		return CF_OK;
	got = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len);
	if (got < 0 || (size_t)got != len / 4 * 3)
		return cf_error_set(err, CF_ERR_PARSE,
			"%s is not valid base64", what);
	last = n - (len / 4 - 1) * 3; /* 1 to 3 bytes in the last quantum */
	EVP_EncodeBlock(again, buf + n - last, (int)last);
	same = CRYPTO_memcmp(again, text + len - 4, 4) == 0;
	OPENSSL_cleanse(again, sizeof(again));
	if (!same)
		return cf_error_set(err, CF_ERR_PARSE,
			"%s is not canonical base64 (non-zero padding bits); "
			"encode the bytes again with a standard encoder", what);
	return CF_OK;
}

cf_status cf_b64_decode(const char *text, size_t len, size_t max,
			const char *what, unsigned char **out, size_t *out_len,
			cf_error *err)
{
	unsigned char *buf;
	size_t n;
	cf_status rc;

	*out = NULL;
	*out_len = 0;
	rc = check(text, len, max, what, &n, err);
	if (rc != CF_OK)
		return rc;
	buf = OPENSSL_malloc(len / 4 * 3 + 1);
	if (buf == NULL)
		return cf_error_set(err, CF_ERR_NOMEM,
			"out of memory decoding %s", what);
	rc = decode_into(text, len, n, what, buf, err);
	if (rc != CF_OK) {
		OPENSSL_free(buf);
		return rc;
	}
	*out = buf;
	*out_len = n;
	return CF_OK;
}

cf_status cf_b64_decode_secret(const char *text, size_t len, size_t max,
			       const char *what, cf_secret **out, cf_error *err)
{
	cf_secret *value;
	size_t n;
	cf_status rc;

	*out = NULL;
	rc = check(text, len, max, what, &n, err);
	if (rc != CF_OK)
		return rc;
	value = cf_secret_new(len / 4 * 3);
	if (value == NULL)
		return cf_error_set(err, CF_ERR_NOMEM,
			"out of secure memory decoding %s", what);
	rc = decode_into(text, len, n, what, cf_secret_data(value), err);
	if (rc == CF_OK)
		rc = cf_secret_set_len(value, n, err);
	if (rc != CF_OK) {
		cf_secret_free(value);
		return rc;
	}
	*out = value;
	return CF_OK;
}
