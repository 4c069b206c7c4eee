/*
 * test_b64.c - the strict base64 codec (b64.h, b64.c): RFC 4648 vectors
 * both ways, round trips of every length near a quantum boundary through
 * both decoders, every refusal with its status, the size bound at and one
 * past the limit, and that a refusal never quotes the text.
 */
#include "fixture.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

#include "b64.h"
#include "secmem.h"

/* RFC 4648 section 10. */
static const struct {
	const char *plain, *b64;
} vectors[] = {
	{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

static void rfc4648_vectors(void **state)
{
	cf_error err = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const char *p = vectors[i].plain, *t = vectors[i].b64;
		char text[16];
		unsigned char *out = NULL;
		cf_secret *s = NULL;
		size_t n = 99;

		assert_int_equal(cf_b64_encoded_len(strlen(p)), strlen(t));
		assert_status(CF_OK, cf_b64_encode((const unsigned char *)p,
			strlen(p), text, sizeof(text), &n, &err), &err);
		assert_int_equal(n, strlen(t));
		assert_string_equal(text, t);

		assert_status(CF_OK, cf_b64_decode(t, strlen(t), 100, "v",
						   &out, &n, &err), &err);
		assert_non_null(out);
		assert_int_equal(n, strlen(p));
		if (n > 0)
			assert_memory_equal(out, p, n);
		OPENSSL_free(out);

		assert_status(CF_OK, cf_b64_decode_secret(t, strlen(t), 100, "v",
							  &s, &err), &err);
		assert_int_equal(cf_secret_len(s), strlen(p));
		if (n > 0)
			assert_memory_equal(cf_secret_cdata(s), p, n);
		cf_secret_free(s);
	}
}

static void round_trips(void **state)
{
	unsigned char in[100];
	char text[140];
	cf_error err = { 0 };

	(void)state;
	assert_int_equal(RAND_bytes(in, sizeof(in)), 1);
	for (size_t len = 0; len <= sizeof(in); len++) {
		unsigned char *out = NULL;
		cf_secret *s = NULL;
		size_t n = 0, got = 0;

		assert_status(CF_OK, cf_b64_encode(in, len, text, sizeof(text),
						   &n, &err), &err);
		assert_int_equal(strlen(text), n);
		assert_status(CF_OK, cf_b64_decode(text, n, len, "v", &out,
						   &got, &err), &err);
		assert_int_equal(got, len);
		if (len > 0)
			assert_memory_equal(out, in, len);
		OPENSSL_free(out);
		assert_status(CF_OK, cf_b64_decode_secret(text, n, len, "v",
							  &s, &err), &err);
		assert_int_equal(cf_secret_len(s), len);
		if (len > 0)
			assert_memory_equal(cf_secret_cdata(s), in, len);
		cf_secret_free(s);
	}
}

static void encode_refuses_small_buffer(void **state)
{
	char text[8] = "xxxxxxx";
	cf_error err = { 0 };

	(void)state;
	/* "foobar" needs 8 characters and the NUL. */
	assert_status(CF_ERR_USAGE, cf_b64_encode((const unsigned char *)"foobar",
		6, text, sizeof(text), NULL, &err), &err);
	assert_string_equal(text, "xxxxxxx");
	assert_status(CF_ERR_TOO_LARGE, cf_b64_encode((const unsigned char *)"",
		CF_B64_MAX_BYTES + 1, text, sizeof(text), NULL, &err), &err);
}

static void refusals(void **state)
{
	static const char *const bad[] = {
		"QUJ", "QUJDR", "Q",             /* length not a multiple of 4 */
		"QUJ!", "QU-D", "QU_D",          /* outside the alphabet */
		" QUJ", "QUJD    ", "QU\nJ", "QUJD\r\n\r\n", "QU\tD",
		"QQ==QUJD", "QQ=A", "Q===", "====", "=QUJ", "A=AA",
		"QR==", "Zm9=", "Zg=\x01",       /* padding bits; bad pad */
		"Zh==", "Zm9w=",
	};
	cf_error err = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned char *out = (unsigned char *)"x";
		cf_secret *s = (cf_secret *)"x";
		size_t n = 7;

		assert_status(CF_ERR_PARSE, cf_b64_decode(bad[i], strlen(bad[i]),
			100, "the field", &out, &n, &err), &err);
		assert_null(out);
		assert_int_equal(n, 0);
		assert_non_null(strstr(err.msg, "the field"));
		assert_status(CF_ERR_PARSE, cf_b64_decode_secret(bad[i],
			strlen(bad[i]), 100, "the field", &s, &err), &err);
		assert_null(s);
	}
	/* A NUL inside the text (JSON allows \u0000) is not the end. */
	{
		unsigned char *out = NULL;
		size_t n = 0;

		assert_status(CF_ERR_PARSE, cf_b64_decode("QU\0D", 4, 100, "v",
							  &out, &n, &err), &err);
	}
}

static void refusal_does_not_quote(void **state)
{
	const char *secret = "U0VDUkVU!0VDUkVU";
	cf_error err = { 0 };
	cf_secret *s = NULL;

	(void)state;
	assert_status(CF_ERR_PARSE, cf_b64_decode_secret(secret, strlen(secret),
		100, "record value", &s, &err), &err);
	assert_null(strstr(err.msg, "U0VD"));
	assert_non_null(strstr(err.msg, "offset 8"));
	/* Non-zero padding bits: "Ug==" is canonical, "Uh==" is not. */
	assert_status(CF_ERR_PARSE, cf_b64_decode_secret("U0VDUh==", 8, 100,
		"record value", &s, &err), &err);
	assert_null(strstr(err.msg, "U0VD"));
	assert_status(CF_OK, cf_b64_decode_secret("U0VDUkVU", 8, 100,
		"record value", &s, &err), &err);
	cf_secret_free(s);
	assert_status(CF_ERR_PARSE, cf_b64_decode_secret("U0VDUkV=", 8, 100,
		"record value", &s, &err), &err);
	assert_null(strstr(err.msg, "U0VD"));
}

static void size_bound(void **state)
{
	cf_error err = { 0 };
	unsigned char *out = NULL;
	size_t n = 0;

	(void)state;
	/* "AAAA" is 3 bytes, "AAA=" 2, "AA==" 1. */
	assert_status(CF_OK, cf_b64_decode("AAAAAA==", 8, 4, "v", &out, &n,
					   &err), &err);
	assert_int_equal(n, 4);
	OPENSSL_free(out);
	assert_status(CF_ERR_TOO_LARGE, cf_b64_decode("AAAAAAA=", 8, 4, "the blob",
						      &out, &n, &err), &err);
	assert_null(out);
	assert_non_null(strstr(err.msg, "the blob"));
	assert_status(CF_ERR_TOO_LARGE, cf_b64_decode("AAAAAAAA", 8, 4, "v",
						      &out, &n, &err), &err);
	/* Far above: refused on the length alone, before the text is read. */
	assert_status(CF_ERR_TOO_LARGE, cf_b64_decode("!!!!", 400, 4, "v",
						      &out, &n, &err), &err);
	assert_status(CF_OK, cf_b64_decode("", 0, 0, "v", &out, &n, &err),
		      &err);
	assert_int_equal(n, 0);
	OPENSSL_free(out);
	assert_status(CF_ERR_TOO_LARGE, cf_b64_decode("AA==", 4, 0, "v", &out,
						      &n, &err), &err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rfc4648_vectors),
		cmocka_unit_test(round_trips),
		cmocka_unit_test(encode_refuses_small_buffer),
		cmocka_unit_test(refusals),
		cmocka_unit_test(refusal_does_not_quote),
		cmocka_unit_test(size_bound),
	};

	return cmocka_run_group_tests_name("b64", tests, fx_group_setup, NULL);
}
