/*
 * fuzz_token.c - libFuzzer target for join tokens (token.h).
 *
 * Two parsers of outside input see the same bytes:
 *   - cf_token_parse: the token text an agent is given (a file, stdin) and
 *     that it sends in part to an unauthenticated endpoint.  Properties:
 *     a refusal keeps the error contract and never quotes the secret; an
 *     accepted token has a valid ID and a 43-character base64url or
 *     64-character hex secret, cf_token_text gives back exactly the input
 *     (less one trailing LF or CRLF), which parses to the same token; its
 *     hash and the HMAC over the input are 64 lower-case hex characters,
 *     deterministic, and equal to themselves under cf_token_digest_equal;
 *   - cf_token_open: the token envelope the server hands an enroller (the
 *     server is not trusted), opened as the fixture's enroller for the ID
 *     FUZZ_TOKEN_ID.  Property: a secret comes back exactly when the call
 *     succeeds, and it is a secret cf_token_parse accepts.
 * Besides, cf_token_id_valid and cf_token_digest_equal get the input as a
 * C string and must agree with their one-line definitions.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "token.h"

/* The ID of the sealed seeds (seeds.c). */
#define FUZZ_TOKEN_ID "00112233445566778899aabbccddeeff"

static const struct fuzz_fixture *fx;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_secmem_init();
	fx = fuzz_fixture();
	return 0;
}

_Noreturn static void die(const char *what, const cf_error *err)
{
	fuzz_die("fuzz_token", what, err);
}

static int lower_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int digest_ok(const char hex[65])
{
	return strlen(hex) == 64 && lower_hex(hex, 64);
}

static int b64url(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return 0;
	return 1;
}

/* The secret of a well-formed token, as cf_token_parse defines it. */
static int secret_form_ok(const unsigned char *s, size_t len)
{
	return (len == CF_TOKEN_SECRET_B64 && b64url(s, len)) ||
	       (len == CF_TOKEN_SECRET_HEX && lower_hex((const char *)s, len));
}

static void check_refusal(const char *call, cf_status rc, const cf_error *err)
{
	if (rc != CF_OK && (err->code != rc || err->msg[0] == '\0')) {
		fprintf(stderr, "%s: refusal %s breaks the error contract\n", call,
			cf_status_name(rc));
		abort();
	}
}

static void fuzz_parse(const uint8_t *data, size_t size)
{
	cf_token *tok = NULL, *again = NULL;
	cf_secret *text = NULL;
	char hash[65], hash2[65], mac[65], mac2[65];
	size_t body = size;
	const unsigned char *secret;
	size_t secret_len;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_token_parse(data, size, &tok, &err);
	check_refusal("cf_token_parse", rc, &err);
	if ((rc == CF_OK) != (tok != NULL))
		die("cf_token_parse: result and status disagree", NULL);
	if (rc != CF_OK) {
		/* A refusal never quotes what may be a secret. */
		if (size > CF_TOKEN_ID_HEX + 12 && data[CF_TOKEN_ID_HEX] == '.') {
			const char *s = (const char *)data + CF_TOKEN_ID_HEX + 1;
			size_t n = size - CF_TOKEN_ID_HEX - 1;

			char piece[13];

			memcpy(piece, s, 12);
			piece[12] = '\0';
			if (n > 12 && b64url((const unsigned char *)s, 12) &&
			    strstr(err.msg, piece) != NULL)
				die("a refusal quotes the token's secret", NULL);
		}
		return;
	}
	if (body > 0 && data[body - 1] == '\n') {
		body--;
		if (body > 0 && data[body - 1] == '\r')
			body--;
	}
	secret = cf_secret_cdata(tok->secret);
	secret_len = cf_secret_len(tok->secret);
	if (!cf_token_id_valid(tok->id) || !secret_form_ok(secret, secret_len))
		die("an accepted token is not of the documented form", NULL);
	if (cf_token_text(tok, &text, &err) != CF_OK)
		die("cf_token_text", &err);
	if (cf_secret_len(text) != body ||
	    memcmp(cf_secret_cdata(text), data, body) != 0)
		die("cf_token_text does not give back the accepted text", NULL);
	if (cf_token_parse(cf_secret_cdata(text), cf_secret_len(text), &again,
			   &err) != CF_OK)
		die("the text of an accepted token does not parse", &err);
	if (strcmp(again->id, tok->id) != 0 ||
	    !cf_secret_equal(again->secret, tok->secret))
		die("a token does not survive text + parse", NULL);
	if (cf_token_hash(tok->secret, hash, &err) != CF_OK ||
	    cf_token_hash(again->secret, hash2, &err) != CF_OK)
		die("cf_token_hash", &err);
	if (cf_token_hmac(tok->secret, data, size, mac, &err) != CF_OK ||
	    cf_token_hmac(again->secret, data, size, mac2, &err) != CF_OK)
		die("cf_token_hmac", &err);
	if (!digest_ok(hash) || !digest_ok(mac) ||
	    !cf_token_digest_equal(hash, hash2) ||
	    !cf_token_digest_equal(mac, mac2))
		die("hash or HMAC is not a stable 64-character hex digest", NULL);
	cf_token_free(again);
	cf_secret_free(text);
	cf_token_free(tok);
}

static void fuzz_open(const uint8_t *data, size_t size)
{
	cf_secret *secret = NULL;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_token_open(data, size, fx->enroller.cert, fx->enroller.key,
			   fx->trust, FUZZ_TOKEN_ID, &secret, &err);
	check_refusal("cf_token_open", rc, &err);
	if ((rc == CF_OK) != (secret != NULL))
		die("cf_token_open: result and status disagree", NULL);
	if (secret == NULL)
		return;
	/*
	 * Only the enroller's key signs what opens, so this is a seed or a
	 * mutation outside the signed bytes: the secret must be one that
	 * cf_token_seal was given, which cf_token_parse accepts.
	 */
	if (!secret_form_ok(cf_secret_cdata(secret), cf_secret_len(secret)))
		die("an opened token envelope holds a malformed secret", NULL);
	cf_secret_free(secret);
}

/* The string helpers against their definitions, on the input as text. */
static void fuzz_strings(const uint8_t *data, size_t size)
{
	char buf[160];
	size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;
	size_t len;
	const char *mid;

	memcpy(buf, data, n);
	buf[n] = '\0';
	len = strlen(buf);
	if (cf_token_id_valid(buf) != (len == CF_TOKEN_ID_HEX && lower_hex(buf, len)))
		die("cf_token_id_valid disagrees with its definition", NULL);
	mid = buf + len / 2;
	if (cf_token_digest_equal(buf, buf) != (len == 64))
		die("cf_token_digest_equal(x, x) disagrees", NULL);
	if (cf_token_digest_equal(buf, mid) !=
	    (len == 64 && strlen(mid) == 64 && memcmp(buf, mid, 64) == 0))
		die("cf_token_digest_equal disagrees with its definition", NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_parse(data, size);
	fuzz_open(data, size);
	fuzz_strings(data, size);
	return 0;
}
