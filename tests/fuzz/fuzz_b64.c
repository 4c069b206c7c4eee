/*
 * fuzz_b64.c - libFuzzer target for the one base64 decoder (src/lib/b64.c),
 * which reads envelopes and other fields from HTTP JSON (server), answers
 * from a server the CLI does not trust, and record values.
 *
 * Input: the text to decode, as it would arrive.  Checked, beyond the
 * sanitizers:
 *   - both decoders (ordinary and secure memory) agree: same status, same
 *     bytes;
 *   - what is accepted is canonical: encoding the bytes again gives the
 *     input exactly (so two texts never decode to the same value);
 *   - the size limit holds: with max one below the decoded size the text
 *     is refused as too large;
 *   - a refusal never quotes the input (it may be a secret).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "fixture.h"
#include "secmem.h"

#define MAX_BYTES 8192

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_secmem_init();
	return 0;
}

static void die(const char *what)
{
	fuzz_die("fuzz_b64", what, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	unsigned char *plain = NULL;
	size_t plain_len = 0;
	cf_secret *secret = NULL;
	cf_error e1 = { 0 }, e2 = { 0 };
	cf_status r1, r2;

	r1 = cf_b64_decode(text, size, MAX_BYTES, "field", &plain, &plain_len,
			   &e1);
	r2 = cf_b64_decode_secret(text, size, MAX_BYTES, "field", &secret, &e2);
	if (r1 != r2)
		die("the two decoders disagree on the status");
	if (r1 != CF_OK) {
		/* A quoted input of 8+ characters would show in the message. */
		if (size >= 8 && memmem(e1.msg, strlen(e1.msg), data, 8) != NULL)
			die("a refusal quotes the input");
		if (plain != NULL || secret != NULL)
			die("a refusal left output behind");
		return 0;
	}
	if (plain_len != cf_secret_len(secret) ||
	    (plain_len > 0 &&
	     memcmp(plain, cf_secret_cdata(secret), plain_len) != 0))
		die("the two decoders disagree on the bytes");
	{
		size_t cap = cf_b64_encoded_len(plain_len) + 1, n = 0;
		char *again = malloc(cap);

		if (again == NULL ||
		    cf_b64_encode(plain, plain_len, again, cap, &n, &e1) != CF_OK)
			die("encoding accepted bytes failed");
		if (n != size || memcmp(again, text, size) != 0)
			die("accepted text is not canonical");
		free(again);
	}
	if (plain_len > 0) {
		unsigned char *small = NULL;
		size_t small_len = 0;

		if (cf_b64_decode(text, size, plain_len - 1, "field", &small,
				  &small_len, &e1) != CF_ERR_TOO_LARGE)
			die("the size limit did not hold");
		OPENSSL_free(small);
	}
	OPENSSL_free(plain);
	cf_secret_free(secret);
	return 0;
}
