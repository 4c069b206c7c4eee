/*
 * b64.h - the one strict base64 codec of coffer (RFC 4648 section 4:
 * standard alphabet, '=' padding, no white space or line breaks).
 *
 * Every base64 text coffer reads (record values, envelopes and tokens in
 * API bodies, envelopes in server answers) goes through cf_b64_decode or
 * cf_b64_decode_secret, and every one it writes through cf_b64_encode, so
 * all readers agree on what a text means: only the canonical encoding of
 * some bytes is accepted (no stray '=', no non-zero padding bits), which
 * keeps two readers of one signed record from seeing two values.
 *
 * Errors name the field (`what`, e.g. "record value" or
 * "envelopes[3].envelope") and at most a character offset; they never
 * quote the text, which may be a secret's encoding.
 */
#ifndef CF_B64_H
#define CF_B64_H

#include <stddef.h>

#include "error.h"
#include "secmem.h"

/*
 * Largest input of cf_b64_encode: its text (and the NUL) must fit an int,
 * the length type of EVP_EncodeBlock.
 */
#define CF_B64_MAX_BYTES ((size_t)(0x7fffffff / 4 - 1) * 3)

/* Characters of the encoding of len bytes, without the NUL (len must be at
 * most CF_B64_MAX_BYTES). */
size_t cf_b64_encoded_len(size_t len);

/*
 * Writes the base64 of in[0..len) and a NUL to out, which has room for
 * out_cap bytes (cf_b64_encoded_len(len) + 1 is enough); *out_len (may be
 * NULL) gets the characters written.  CF_ERR_TOO_LARGE above
 * CF_B64_MAX_BYTES, CF_ERR_USAGE if out is too small (nothing written).
 */
cf_status cf_b64_encode(const unsigned char *in, size_t len, char *out,
			size_t out_cap, size_t *out_len, cf_error *err);

/*
 * Decodes text[0..len) (need not be NUL-terminated) to at most max bytes.
 * Refused: a length not a multiple of 4, a character outside the alphabet
 * (NUL and white space included), '=' anywhere but the last two places,
 * a non-canonical encoding (non-zero padding bits) - all CF_ERR_PARSE -
 * and more than max decoded bytes (CF_ERR_TOO_LARGE, checked before any
 * memory is taken).  The empty text decodes to zero bytes.
 *
 * cf_b64_decode: *out is OPENSSL_malloc'ed (never NULL on success, free
 * with OPENSSL_free), *out_len its length.
 * cf_b64_decode_secret: *out is a cf_secret (secure heap; the caller
 * frees it with cf_secret_free).
 * On error *out is NULL and nothing is left allocated.
 */
cf_status cf_b64_decode(const char *text, size_t len, size_t max,
			const char *what, unsigned char **out, size_t *out_len,
			cf_error *err);
cf_status cf_b64_decode_secret(const char *text, size_t len, size_t max,
			       const char *what, cf_secret **out, cf_error *err);

#endif
