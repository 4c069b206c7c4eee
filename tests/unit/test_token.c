/*
 * test_token.c - join tokens (token.h, token.c): generation, the strict
 * parser, SHA-256 and HMAC-SHA256 against published vectors, the
 * constant-time comparison, and the token envelope (sealed to and signed
 * by its creator; anything else refused with its own status).
 */
#include "fixture.h"

#include <openssl/cms.h>
#include <string.h>

#include "envelope.h"
#include "pki.h"
#include "record.h"
#include "secmem.h"
#include "token.h"
#include "trust.h"

static EVP_PKEY *root_key, *enroller_key, *other_key, *other_root_key;
static X509 *root, *enroller, *other, *other_root;
static cf_trust *trust, *other_trust;

static int group_setup(void **state)
{
	cf_error err = { 0 };

	if (fx_group_setup(state) != 0)
		return -1;
	root_key = fx_key();
	root = fx_root(root_key, "Acme", 0);
	enroller_key = fx_key();
	enroller = fx_holder(root, root_key, enroller_key, CF_KIND_ENROLLER,
			     "bob", "agent.enroll:web", "token.create:web");
	other_key = fx_key();
	other = fx_holder(root, root_key, other_key, CF_KIND_ENROLLER, "eve",
			  "agent.enroll:web", NULL);
	other_root_key = fx_key();
	other_root = fx_root(other_root_key, "Other", 0);
	if (cf_trust_new(root, NULL, &trust, &err) != CF_OK ||
	    cf_trust_new(other_root, NULL, &other_trust, &err) != CF_OK)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	cf_trust_free(trust);
	cf_trust_free(other_trust);
	X509_free(root);
	X509_free(enroller);
	X509_free(other);
	X509_free(other_root);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(enroller_key);
	EVP_PKEY_free(other_key);
	EVP_PKEY_free(other_root_key);
	return 0;
}

static cf_status parse_str(const char *text, cf_token **out, cf_error *err)
{
	return cf_token_parse((const unsigned char *)text, strlen(text), out, err);
}

static void generate_makes_distinct_wellformed_tokens(void **state)
{
	cf_token *a = NULL, *b = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_token_generate(&a, &err), &err);
	assert_status(CF_OK, cf_token_generate(&b, &err), &err);
	assert_true(cf_token_id_valid(a->id));
	assert_int_equal(cf_secret_len(a->secret), CF_TOKEN_SECRET_B64);
	for (size_t i = 0; i < cf_secret_len(a->secret); i++) {
		unsigned char ch = cf_secret_cdata(a->secret)[i];

		assert_true((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_');
	}
	assert_string_not_equal(a->id, b->id);
	assert_false(cf_secret_equal(a->secret, b->secret));
	cf_token_free(a);
	cf_token_free(b);
}

static void text_parses_back(void **state)
{
	cf_token *a = NULL, *b = NULL, *c = NULL;
	cf_secret *text = NULL;
	char line[CF_TOKEN_TEXT_MAX + 3];
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_token_generate(&a, &err), &err);
	assert_status(CF_OK, cf_token_text(a, &text, &err), &err);
	assert_int_equal(cf_secret_len(text), 32 + 1 + 43);
	assert_status(CF_OK, cf_token_parse(cf_secret_cdata(text),
					    cf_secret_len(text), &b, &err), &err);
	assert_string_equal(a->id, b->id);
	assert_true(cf_secret_equal(a->secret, b->secret));
	/* As read from a file: one trailing CRLF is not part of the token. */
	snprintf(line, sizeof(line), "%.*s\r\n", (int)cf_secret_len(text),
		 (const char *)cf_secret_cdata(text));
	assert_status(CF_OK, parse_str(line, &c, &err), &err);
	assert_true(cf_secret_equal(a->secret, c->secret));
	cf_secret_free(text);
	cf_token_free(a);
	cf_token_free(b);
	cf_token_free(c);
}

static void parser_is_strict(void **state)
{
	static const char id[] = "0123456789abcdef0123456789abcdef";
	static const char *const bad[] = {
		"",
		"0123456789abcdef0123456789abcdef",                /* no secret */
		"0123456789abcdef0123456789abcdef.",
		"0123456789ABCDEF0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"0123456789abcdef0123456789abcde.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"0123456789abcdef0123456789abcdef:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		/* 42 and 44 base64url characters */
		"0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		/* standard base64 characters and padding are not base64url */
		"0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
		"0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		/* 63 hex characters; 64 with an upper-case one */
		"0123456789abcdef0123456789abcdef.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
		"0123456789abcdef0123456789abcdef.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeF",
		/* too long; whitespace inside or before */
		"0123456789abcdef0123456789abcdef.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
		"0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAA AAAAAAAAAAAAAAAAAAAAA",
		" 0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n\n",
	};
	char good[200];
	cf_token *tok = NULL;
	cf_error err = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_status(CF_ERR_PARSE, parse_str(bad[i], &tok, &err), &err);
		assert_null(tok);
		/* The sentence never repeats the token (it may be a secret). */
		assert_null(strstr(err.msg, "AAAAAAAAAA"));
	}
	assert_status(CF_ERR_PARSE, cf_token_parse(NULL, 0, &tok, &err), &err);
	snprintf(good, sizeof(good), "%s.%s", id,
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_status(CF_OK, parse_str(good, &tok, &err), &err);
	assert_string_equal(tok->id, id);
	assert_int_equal(cf_secret_len(tok->secret), 64);
	cf_token_free(tok);
	snprintf(good, sizeof(good), "%s.%s", id,
		 "Az09-_Az09-_Az09-_Az09-_Az09-_Az09-_Az09-_A");
	assert_status(CF_OK, parse_str(good, &tok, &err), &err);
	cf_token_free(tok);
	/* A NUL inside the given length is refused, not cut short. */
	assert_status(CF_ERR_PARSE, cf_token_parse((const unsigned char *)good,
						   strlen(good) + 1, &tok, &err), &err);
	cf_token_free(NULL);
}

static void id_validation(void **state)
{
	(void)state;
	assert_true(cf_token_id_valid("0123456789abcdef0123456789abcdef"));
	assert_false(cf_token_id_valid("0123456789abcdef0123456789abcdeF"));
	assert_false(cf_token_id_valid("0123456789abcdef0123456789abcde"));
	assert_false(cf_token_id_valid("0123456789abcdef0123456789abcdef0"));
	assert_false(cf_token_id_valid("../../../../../../../../../../etc"));
	assert_false(cf_token_id_valid(NULL));
}

static void hash_and_hmac_match_published_vectors(void **state)
{
	cf_secret *abc = cf_secret_from("abc", 3);
	cf_secret *jefe = cf_secret_from("Jefe", 4);
	static const char data[] = "what do ya want for nothing?";
	char hex[65];
	cf_error err = { 0 };

	(void)state;
	/* FIPS 180-2, SHA-256 of "abc". */
	assert_status(CF_OK, cf_token_hash(abc, hex, &err), &err);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
				 "b00361a396177a9cb410ff61f20015ad");
	/* RFC 4231 test case 2. */
	assert_status(CF_OK, cf_token_hmac(jefe, (const unsigned char *)data,
					   strlen(data), hex, &err), &err);
	assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c7"
				 "5a003f089d2739839dec58b964ec3843");
	cf_secret_free(abc);
	cf_secret_free(jefe);
}

static void digest_comparison(void **state)
{
	static const char a[] = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
	char b[65];

	(void)state;
	memcpy(b, a, sizeof(b));
	assert_true(cf_token_digest_equal(a, b));
	b[63] = '2';
	assert_false(cf_token_digest_equal(a, b));
	b[63] = '3';
	b[0] = '4';
	assert_false(cf_token_digest_equal(a, b));
	assert_false(cf_token_digest_equal(a, "5bdc"));
	assert_false(cf_token_digest_equal(a, ""));
	assert_false(cf_token_digest_equal(a, NULL));
	assert_false(cf_token_digest_equal(NULL, NULL));
}

static void envelope_round_trip(void **state)
{
	cf_token *tok = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_secret *secret = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_token_generate(&tok, &err), &err);
	assert_status(CF_OK, cf_token_seal(tok, cf_trust_tenant(trust), enroller,
					   enroller_key, NULL, &der, &len, &err), &err);
	/* The SECRET never appears in the envelope in the clear. */
	assert_null(memmem(der, len, cf_secret_cdata(tok->secret),
			   cf_secret_len(tok->secret)));
	assert_status(CF_OK, cf_token_open(der, len, enroller, enroller_key, trust,
					   tok->id, &secret, &err), &err);
	assert_true(cf_secret_equal(secret, tok->secret));
	cf_secret_free(secret);
	secret = NULL;
	/* Another token's ID: a swapped envelope. */
	assert_status(CF_ERR_NAME, cf_token_open(der, len, enroller, enroller_key,
		trust, "0123456789abcdef0123456789abcdef", &secret, &err), &err);
	assert_null(secret);
	/* Not addressed to eve. */
	assert_status(CF_ERR_NOT_RECIPIENT, cf_token_open(der, len, other,
		other_key, trust, tok->id, &secret, &err), &err);
	/* Our certificate under another root. */
	assert_status(CF_ERR_UNTRUSTED, cf_token_open(der, len, enroller,
		enroller_key, other_trust, tok->id, &secret, &err), &err);
	/* A flipped byte near the end (the GCM tag). */
	der[len - 3] ^= 1;
	assert_status(CF_ERR_TAMPERED, cf_token_open(der, len, enroller,
		enroller_key, trust, tok->id, &secret, &err), &err);
	assert_status(CF_ERR_USAGE, cf_token_open(der, len, enroller,
		enroller_key, trust, "not-an-id", &secret, &err), &err);
	OPENSSL_free(der);
	cf_token_free(tok);
}

/*
 * What a hostile server could do: seal a secret of its choosing to the
 * enroller, signed by somebody else (here another enroller of the same
 * tenant, the strongest case).  The enroller must refuse it.
 */
static void envelope_signed_by_another_is_refused(void **state)
{
	cf_token *tok = NULL;
	cf_record rec = { 0 };
	cf_secret *json = NULL, *signed_der = NULL, *secret = NULL;
	cf_sealer *sealer = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_token_generate(&tok, &err), &err);
	snprintf(rec.tenant, sizeof(rec.tenant), "%s", cf_trust_tenant(trust));
	snprintf(rec.name, sizeof(rec.name), "token/%s", tok->id);
	rec.version = 1;
	rec.created = 1;
	rec.type = CF_TYPE_TEXT;
	rec.value = tok->secret;
	assert_status(CF_OK, cf_record_encode(&rec, &json, &err), &err);
	assert_status(CF_OK, cf_envelope_sign(json, other, other_key, NULL,
					      &signed_der, &err), &err);
	assert_status(CF_OK, cf_sealer_new(signed_der, &sealer, &err), &err);
	assert_status(CF_OK, cf_sealer_seal(sealer, enroller, &der, &len, &err), &err);
	assert_status(CF_ERR_SIGNATURE, cf_token_open(der, len, enroller,
		enroller_key, trust, tok->id, &secret, &err), &err);
	assert_null(secret);
	OPENSSL_free(der);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	cf_secret_free(json);
	cf_token_free(tok);
}

/*
 * The token record (SECRET only) signed by the enroller itself with the
 * CMS API directly and digest md, sealed to the enroller: what a client
 * other than ours could make.  *len bytes, OPENSSL_malloc'd.
 */
static unsigned char *token_envelope_with_digest(const cf_token *tok,
						 const EVP_MD *md, size_t *len)
{
	const unsigned int flags = CMS_BINARY | CMS_PARTIAL | CMS_NOSMIMECAP;
	cf_record rec = { 0 };
	cf_secret *json = NULL, *signed_der = NULL;
	cf_sealer *sealer = NULL;
	CMS_ContentInfo *cms;
	unsigned char *der = NULL, *out = NULL;
	BIO *in;
	int n;
	cf_error err = { 0 };

	snprintf(rec.tenant, sizeof(rec.tenant), "%s", cf_trust_tenant(trust));
	snprintf(rec.name, sizeof(rec.name), "token/%s", tok->id);
	rec.version = 1;
	rec.created = 1;
	rec.type = CF_TYPE_TEXT;
	rec.value = tok->secret;
	assert_status(CF_OK, cf_record_encode(&rec, &json, &err), &err);
	in = BIO_new_mem_buf(cf_secret_cdata(json), (int)cf_secret_len(json));
	cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
	assert_non_null(in);
	assert_non_null(cms);
	assert_true(CMS_set1_eContentType(cms, OBJ_nid2obj(cf_nid_record())));
	assert_non_null(CMS_add1_signer(cms, enroller, enroller_key, md, flags));
	assert_true(CMS_final(cms, in, NULL, flags));
	n = i2d_CMS_ContentInfo(cms, &der);
	assert_true(n > 0);
	signed_der = cf_secret_from(der, (size_t)n);
	assert_non_null(signed_der);
	assert_status(CF_OK, cf_sealer_new(signed_der, &sealer, &err), &err);
	assert_status(CF_OK, cf_sealer_seal(sealer, enroller, &out, len, &err),
		      &err);
	OPENSSL_free(der);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	cf_secret_free(json);
	return out;
}

/*
 * A token envelope goes through the same signature checks as any record
 * (cf_envelope_check_signature): signed by the enroller itself, so the
 * pin holds, but with SHA-1, it is refused; the same with SHA-256 opens.
 */
static void envelope_with_weak_digest_is_refused(void **state)
{
	cf_token *tok = NULL;
	unsigned char *der;
	size_t len = 0;
	cf_secret *secret = NULL;
	char prefix[80];
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_token_generate(&tok, &err), &err);
	der = token_envelope_with_digest(tok, EVP_sha1(), &len);
	assert_status(CF_ERR_SIGNATURE, cf_token_open(der, len, enroller,
		enroller_key, trust, tok->id, &secret, &err), &err);
	assert_null(secret);
	snprintf(prefix, sizeof(prefix), "the envelope of token %s: ", tok->id);
	assert_int_equal(strncmp(err.msg, prefix, strlen(prefix)), 0);
	assert_non_null(strstr(err.msg, "SHA1"));
	OPENSSL_free(der);
	der = token_envelope_with_digest(tok, EVP_sha256(), &len);
	assert_status(CF_OK, cf_token_open(der, len, enroller, enroller_key,
					   trust, tok->id, &secret, &err), &err);
	assert_true(cf_secret_equal(secret, tok->secret));
	cf_secret_free(secret);
	OPENSSL_free(der);
	cf_token_free(tok);
}

/*
 * The group and expiry a token was made for travel sealed with its SECRET
 * (signed by the enroller), so a server cannot change which group approve
 * signs an agent into.  A token envelope without them is refused by
 * cf_token_open_claims; cf_token_open still returns the bare SECRET.
 */
static void envelope_binds_group_and_expiry(void **state)
{
	cf_token *tok = NULL;
	unsigned char *der = NULL, *bare = NULL;
	size_t len = 0, bare_len = 0;
	cf_secret *secret = NULL;
	char group[CF_NAME_MAX_BYTES + 1];
	int64_t expires = -1;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_token_generate(&tok, &err), &err);
	assert_status(CF_OK, cf_token_seal(tok, cf_trust_tenant(trust), enroller,
					   enroller_key, NULL, &bare, &bare_len,
					   &err), &err);
	snprintf(tok->group, sizeof(tok->group), "web/eu");
	tok->expires = 1893456000;
	assert_status(CF_OK, cf_token_seal(tok, cf_trust_tenant(trust), enroller,
					   enroller_key, NULL, &der, &len, &err), &err);
	assert_status(CF_OK, cf_token_open_claims(der, len, enroller, enroller_key,
		trust, tok->id, &secret, group, sizeof(group), &expires, &err), &err);
	assert_true(cf_secret_equal(secret, tok->secret));
	assert_string_equal(group, "web/eu");
	assert_int_equal(expires, 1893456000);
	cf_secret_free(secret);
	secret = NULL;
	/* The plain open yields the SECRET alone: the HMAC key is unchanged. */
	assert_status(CF_OK, cf_token_open(der, len, enroller, enroller_key, trust,
					   tok->id, &secret, &err), &err);
	assert_true(cf_secret_equal(secret, tok->secret));
	cf_secret_free(secret);
	secret = NULL;
	/* No claims sealed: the group cannot be known, so nothing is signed. */
	assert_status(CF_ERR_RECORD, cf_token_open_claims(bare, bare_len, enroller,
		enroller_key, trust, tok->id, &secret, group, sizeof(group),
		&expires, &err), &err);
	assert_null(secret);
	/* A group that is no name is refused at sealing. */
	snprintf(tok->group, sizeof(tok->group), "web\nprod");
	OPENSSL_free(der);
	der = NULL;
	assert_status(CF_ERR_USAGE, cf_token_seal(tok, cf_trust_tenant(trust),
		enroller, enroller_key, NULL, &der, &len, &err), &err);
	OPENSSL_free(der);
	OPENSSL_free(bare);
	cf_token_free(tok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(generate_makes_distinct_wellformed_tokens),
		cmocka_unit_test(text_parses_back),
		cmocka_unit_test(parser_is_strict),
		cmocka_unit_test(id_validation),
		cmocka_unit_test(hash_and_hmac_match_published_vectors),
		cmocka_unit_test(digest_comparison),
		cmocka_unit_test(envelope_round_trip),
		cmocka_unit_test(envelope_signed_by_another_is_refused),
		cmocka_unit_test(envelope_with_weak_digest_is_refused),
		cmocka_unit_test(envelope_binds_group_and_expiry),
	};

	return cmocka_run_group_tests_name("token", tests, group_setup,
					   group_teardown);
}
