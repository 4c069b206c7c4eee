/*
 * test_envelope.c - signing, sealing and opening envelopes (envelope.h,
 * envelope.c and sealer.c).
 *
 * One test per refusal of DESIGN 3 / docs/FORMAT.md, each expecting its
 * exact status: a reader that refuses for the wrong reason tells the user
 * the wrong thing to do.  Bad envelopes are made from good ones by the
 * smallest change that breaks the one rule under test, and OpenSSL's own
 * CMS code is used both ways to show the envelopes are standard.
 */
#include "fixture.h"

#include <openssl/cms.h>
#include <openssl/err.h>
#include <string.h>

#include "envelope.h"
#include "policy.h"
#include "record.h"
#include "secmem.h"
#include "trust.h"

#define NAME "prod/db/password"
#define VALUE "s3cret-v4lue"

/* The tenant's PKI, made once per run. */
static EVP_PKEY *root_key, *enroller_key, *alice_key, *bob_key, *carol_key,
	*mallory_key, *web1_key, *web2_key, *db1_key, *other_key, *eve_key;
static X509 *root, *enroller, *alice, *bob, *carol, *mallory, *web1, *web2,
	*db1, *other_root, *eve;
static X509_CRL *crl;
static cf_trust *trust;

static int group_setup(void **state)
{
	cf_error err = { 0 };

	if (fx_group_setup(state) != 0)
		return -1;
	root_key = fx_key();
	root = fx_root(root_key, "Acme", 0);
	enroller_key = fx_key();
	enroller = fx_holder(root, root_key, enroller_key, CF_KIND_ENROLLER,
			     "enroll", "agent.enroll:web", NULL);
	/* alice writes prod; bob only reads; carol writes dev only. */
	alice_key = fx_key();
	alice = fx_holder(root, root_key, alice_key, CF_KIND_OPERATOR, "alice",
			  "secret.write:prod/**", "secret.read:**");
	bob_key = fx_key();
	bob = fx_holder(root, root_key, bob_key, CF_KIND_OPERATOR, "bob",
			"secret.read:**", NULL);
	carol_key = fx_key();
	carol = fx_holder(root, root_key, carol_key, CF_KIND_OPERATOR, "carol",
			  "secret.write:dev/*", NULL);
	mallory_key = fx_key();
	mallory = fx_holder(root, root_key, mallory_key, CF_KIND_OPERATOR,
			    "mallory", "secret.write:**", NULL);
	web1_key = fx_key();
	web1 = fx_agent(root, root_key, web1_key, "web-1", "web");
	web2_key = fx_key();
	web2 = fx_agent(enroller, enroller_key, web2_key, "web-2", "web");
	db1_key = fx_key();
	db1 = fx_agent(root, root_key, db1_key, "db-1", "db");
	other_key = fx_key();
	other_root = fx_root(other_key, "Other", 0);
	eve_key = fx_key();
	eve = fx_holder(other_root, other_key, eve_key, CF_KIND_OPERATOR, "eve",
			"secret.write:**", NULL);
	crl = fx_crl(root, root_key, mallory, NULL);
	if (cf_trust_new(root, crl, &trust, &err) != CF_OK) {
		print_error("trust: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	EVP_PKEY *keys[] = { root_key, enroller_key, alice_key, bob_key, carol_key,
			     mallory_key, web1_key, web2_key, db1_key, other_key,
			     eve_key };
	X509 *certs[] = { root, enroller, alice, bob, carol, mallory, web1, web2,
			  db1, other_root, eve };

	(void)state;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		EVP_PKEY_free(keys[i]);
	for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++)
		X509_free(certs[i]);
	X509_CRL_free(crl);
	cf_trust_free(trust);
	return 0;
}

/* ------------------------------------------------------------ helpers */

static cf_secret *record_json(const char *tenant, const char *name,
			      uint64_t version, const char *value)
{
	cf_record *rec = cf_record_new();
	cf_secret *json = NULL;
	cf_error err = { 0 };

	assert_non_null(rec);
	snprintf(rec->tenant, sizeof(rec->tenant), "%s", tenant);
	snprintf(rec->name, sizeof(rec->name), "%s", name);
	rec->version = version;
	rec->created = 1700000000;
	rec->type = CF_TYPE_TEXT;
	rec->value = cf_secret_from(value, strlen(value));
	assert_status(CF_OK, cf_record_encode(rec, &json, &err), &err);
	cf_record_free(rec);
	return json;
}

static cf_secret *sign(const cf_secret *json, X509 *cert, EVP_PKEY *key)
{
	cf_secret *signed_der = NULL;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_envelope_sign(json, cert, key, NULL, &signed_der,
					      &err), &err);
	return signed_der;
}

/* A signed record of this tenant, by signer. */
static cf_secret *signed_record(const char *name, uint64_t version,
				X509 *cert, EVP_PKEY *key)
{
	cf_secret *json = record_json(cf_trust_tenant(trust), name, version, VALUE);
	cf_secret *signed_der = sign(json, cert, key);

	cf_secret_free(json);
	return signed_der;
}

static unsigned char *seal_to(const cf_secret *content, X509 *recipient,
			      size_t *len)
{
	cf_sealer *sealer = NULL;
	unsigned char *der = NULL;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_sealer_new(content, &sealer, &err), &err);
	assert_status(CF_OK, cf_sealer_seal(sealer, recipient, &der, len, &err), &err);
	cf_sealer_free(sealer);
	return der;
}

/* An envelope to web-1 holding a record signed by signer. */
static unsigned char *envelope_by(X509 *cert, EVP_PKEY *key, const char *name,
				  uint64_t version, size_t *len)
{
	cf_secret *signed_der = signed_record(name, version, cert, key);
	unsigned char *der = seal_to(signed_der, web1, len);

	cf_secret_free(signed_der);
	return der;
}

/* Opens as cert/key; on success checks the record is the one we sealed. */
static void expect_open(cf_status want, const unsigned char *der, size_t len,
			X509 *cert, EVP_PKEY *key, const char *name,
			uint64_t min_version)
{
	cf_record *rec = (cf_record *)&want; /* not NULL, so that a reset is visible */
	cf_error err = { 0 };

	assert_status(want, cf_envelope_open(der, len, cert, key, trust, name,
					     min_version, &rec, NULL, &err), &err);
	if (want != CF_OK) {
		assert_null(rec);
		return;
	}
	assert_non_null(rec);
	assert_int_equal(cf_secret_len(rec->value), strlen(VALUE));
	assert_memory_equal(cf_secret_cdata(rec->value), VALUE, strlen(VALUE));
	cf_record_free(rec);
}

static cf_secret *secret_of(const unsigned char *der, int len)
{
	cf_secret *s;

	assert_true(len > 0);
	s = cf_secret_from(der, (size_t)len);
	assert_non_null(s);
	return s;
}

static cf_secret *cms_to_secret(CMS_ContentInfo *cms)
{
	unsigned char *der = NULL;
	int len = i2d_CMS_ContentInfo(cms, &der);
	cf_secret *s = secret_of(der, len);

	OPENSSL_free(der);
	return s;
}

/*
 * A SignedData over json made with the CMS API directly: econtent_nid
 * (NID_undef: plain id-data), one signer per cert/key with digest md,
 * extra_flags passed to CMS_add1_signer (CMS_NOCERTS to leave the
 * certificate out).
 */
static cf_secret *cms_signed(const cf_secret *json, int econtent_nid,
			     X509 *const *certs, EVP_PKEY *const *keys,
			     size_t n, const EVP_MD *md, unsigned int extra_flags)
{
	const unsigned int flags = CMS_BINARY | CMS_PARTIAL | CMS_NOSMIMECAP;
	BIO *in = BIO_new_mem_buf(cf_secret_cdata(json), (int)cf_secret_len(json));
	CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
	cf_secret *out;

	assert_non_null(in);
	assert_non_null(cms);
	if (econtent_nid != NID_undef)
		assert_true(CMS_set1_eContentType(cms, OBJ_nid2obj(econtent_nid)));
	for (size_t i = 0; i < n; i++)
		assert_non_null(CMS_add1_signer(cms, certs[i], keys[i], md,
						flags | extra_flags));
	assert_true(CMS_final(cms, in, NULL, flags));
	out = cms_to_secret(cms);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	return out;
}

/* CMS_encrypt to one recipient with cipher, as `openssl cms -encrypt` does. */
static unsigned char *openssl_encrypt(const cf_secret *content, X509 *recipient,
				      const EVP_CIPHER *cipher, size_t *len)
{
	STACK_OF(X509) *recips = sk_X509_new_null();
	BIO *in = BIO_new_mem_buf(cf_secret_cdata(content),
				  (int)cf_secret_len(content));
	CMS_ContentInfo *cms;
	unsigned char *der = NULL;
	int n;

	assert_true(sk_X509_push(recips, recipient) > 0);
	cms = CMS_encrypt(recips, in, cipher, CMS_BINARY);
	assert_non_null(cms);
	n = i2d_CMS_ContentInfo(cms, &der);
	assert_true(n > 0);
	*len = (size_t)n;
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	sk_X509_free(recips);
	return der;
}

/* ------------------------------------------------------------ success */

static void sign_seal_open_round_trip(void **state)
{
	cf_secret *json = record_json(cf_trust_tenant(trust), NAME, 4, VALUE);
	cf_secret *signed_der = sign(json, alice, alice_key);
	size_t len = 0;
	unsigned char *der = seal_to(signed_der, web1, &len);
	cf_record *rec = NULL;
	X509 *signer = NULL;
	cf_secret *inner = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_true(CRYPTO_secure_allocated(cf_secret_cdata(signed_der)));
	assert_status(CF_OK, cf_envelope_open(der, len, web1, web1_key, trust, NAME,
					      4, &rec, &signer, &err), &err);
	assert_string_equal(rec->tenant, cf_trust_tenant(trust));
	assert_string_equal(rec->name, NAME);
	assert_int_equal(rec->version, 4);
	assert_int_equal(rec->created, 1700000000);
	assert_int_equal(rec->type, CF_TYPE_TEXT);
	assert_memory_equal(cf_secret_cdata(rec->value), VALUE, strlen(VALUE));
	assert_true(CRYPTO_secure_allocated(cf_secret_cdata(rec->value)));
	assert_non_null(signer);
	assert_int_equal(X509_cmp(signer, alice), 0);
	X509_free(signer);
	cf_record_free(rec);

	/* Decrypt alone gives back exactly the signed record, in secure memory. */
	assert_status(CF_OK, cf_envelope_decrypt(der, len, web1, web1_key, &inner,
						 &err), &err);
	assert_true(cf_secret_equal(inner, signed_der));
	assert_true(CRYPTO_secure_allocated(cf_secret_cdata(inner)));
	/* No expected name and no minimum: any name, any version. */
	rec = NULL;
	assert_status(CF_OK, cf_envelope_verify(inner, trust, NULL, 0, &rec, NULL,
						&err), &err);
	assert_string_equal(rec->name, NAME);
	cf_record_free(rec);
	/* The envelope never carries the plaintext in the clear. */
	assert_null(memmem(der, len, "prod/db", 7));

	cf_secret_free(inner);
	OPENSSL_free(der);
	cf_secret_free(signed_der);
	cf_secret_free(json);
}

static void recipient_issued_by_enroller(void **state)
{
	size_t len = 0;
	unsigned char *der;
	cf_secret *signed_der = signed_record(NAME, 1, alice, alice_key);

	(void)state;
	der = seal_to(signed_der, web2, &len);
	expect_open(CF_OK, der, len, web2, web2_key, NAME, 0);
	OPENSSL_free(der);
	cf_secret_free(signed_der);
}

static void signer_chain_extra_certs(void **state)
{
	cf_secret *json = record_json(cf_trust_tenant(trust), NAME, 1, VALUE);
	STACK_OF(X509) *extra = sk_X509_new_null();
	cf_secret *signed_der = NULL;
	unsigned char *der;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	assert_true(sk_X509_push(extra, root) > 0);
	assert_status(CF_OK, cf_envelope_sign(json, alice, alice_key, extra,
					      &signed_der, &err), &err);
	der = seal_to(signed_der, web1, &len);
	expect_open(CF_OK, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	cf_secret_free(signed_der);
	sk_X509_free(extra);
	cf_secret_free(json);
}

static void multi_recipient_opened_by_each(void **state)
{
	X509 *recips[] = { web1, web2, db1, alice };
	EVP_PKEY *keys[] = { web1_key, web2_key, db1_key, alice_key };
	cf_secret *signed_der = signed_record(NAME, 2, alice, alice_key);
	cf_sealer *sealer = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_sealer_new(signed_der, &sealer, &err), &err);
	assert_status(CF_OK, cf_sealer_seal_many(sealer, recips, 4, &der, &len, &err),
		      &err);
	for (size_t i = 0; i < 4; i++)
		expect_open(CF_OK, der, len, recips[i], keys[i], NAME, 2);
	expect_open(CF_ERR_NOT_RECIPIENT, der, len, bob, bob_key, NAME, 0);
	/* OpenSSL sees four recipient infos in one envelope. */
	{
		const unsigned char *p = der;
		CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);

		assert_non_null(cms);
		assert_int_equal(sk_CMS_RecipientInfo_num(CMS_get0_RecipientInfos(cms)), 4);
		CMS_ContentInfo_free(cms);
	}
	OPENSSL_free(der);
	der = NULL;

	/* The sealer is reusable after a multi-recipient envelope. */
	assert_status(CF_OK, cf_sealer_seal(sealer, db1, &der, &len, &err), &err);
	expect_open(CF_OK, der, len, db1, db1_key, NAME, 0);
	expect_open(CF_ERR_NOT_RECIPIENT, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	der = NULL;

	assert_status(CF_ERR_USAGE, cf_sealer_seal_many(sealer, recips, 0, &der, &len,
							&err), &err);
	assert_null(der);
	cf_sealer_free(sealer);
	cf_sealer_free(NULL);
	cf_secret_free(signed_der);
}

/* secp256k1 is 256 bits too, but not P-256: refused before any ECDH. */
static void recipient_on_other_256_bit_curve(void **state)
{
	cf_secret *signed_der = signed_record(NAME, 3, alice, alice_key);
	EVP_PKEY *k1 = EVP_EC_gen("secp256k1");
	cf_sealer *sealer = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	X509 *cert;
	cf_error err = { 0 };

	(void)state;
	assert_non_null(k1);
	/* A bare certificate is enough: the sealer looks only at its key. */
	cert = X509_new();
	assert_non_null(cert);
	assert_int_equal(X509_set_pubkey(cert, k1), 1);
	assert_int_equal(X509_set_issuer_name(cert, X509_get_subject_name(web1)), 1);
	assert_status(CF_OK, cf_sealer_new(signed_der, &sealer, &err), &err);
	assert_status(CF_ERR_USAGE, cf_sealer_seal(sealer, cert, &der, &len, &err),
		      &err);
	assert_null(der);
	cf_sealer_free(sealer);
	X509_free(cert);
	EVP_PKEY_free(k1);
	cf_secret_free(signed_der);
}

static void sealer_dup_output_opens(void **state)
{
	cf_secret *signed_der = signed_record(NAME, 3, alice, alice_key);
	cf_sealer *sealer = NULL, *copy = NULL;
	unsigned char *der1 = NULL, *der2 = NULL;
	size_t len1 = 0, len2 = 0;
	cf_secret *in1 = NULL, *in2 = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_sealer_new(signed_der, &sealer, &err), &err);
	assert_status(CF_OK, cf_sealer_dup(sealer, &copy, &err), &err);
	/* The original goes away first: the copy must not lean on it. */
	assert_status(CF_OK, cf_sealer_seal(sealer, web1, &der1, &len1, &err), &err);
	cf_sealer_free(sealer);
	assert_status(CF_OK, cf_sealer_seal(copy, web2, &der2, &len2, &err), &err);
	expect_open(CF_OK, der1, len1, web1, web1_key, NAME, 0);
	expect_open(CF_OK, der2, len2, web2, web2_key, NAME, 0);
	assert_status(CF_OK, cf_envelope_decrypt(der1, len1, web1, web1_key, &in1,
						 &err), &err);
	assert_status(CF_OK, cf_envelope_decrypt(der2, len2, web2, web2_key, &in2,
						 &err), &err);
	assert_true(cf_secret_equal(in1, in2));
	/* Same content key, so the same ciphertext and tag at the end. */
	assert_memory_equal(der1 + len1 - 64, der2 + len2 - 64, 64);
	cf_secret_free(in1);
	cf_secret_free(in2);
	OPENSSL_free(der1);
	OPENSSL_free(der2);
	cf_sealer_free(copy);
	cf_secret_free(signed_der);
}

static void sealer_refuses_non_p256_recipient(void **state)
{
	EVP_PKEY *p384 = fx_other_key("P-384");
	X509 *cert = X509_new();
	cf_secret *signed_der = signed_record(NAME, 1, alice, alice_key);
	cf_sealer *sealer = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	/* cf_cert_issue would not sign such a key; build it by hand. */
	assert_true(X509_set_version(cert, 2));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(cert), 77));
	assert_true(X509_set_subject_name(cert, X509_get_subject_name(web1)));
	assert_true(X509_set_issuer_name(cert, X509_get_subject_name(root)));
	assert_true(X509_set_pubkey(cert, p384));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 3600));
	assert_true(X509_sign(cert, root_key, EVP_sha256()) > 0);

	assert_status(CF_OK, cf_sealer_new(signed_der, &sealer, &err), &err);
	assert_status(CF_ERR_USAGE, cf_sealer_seal(sealer, cert, &der, &len, &err),
		      &err);
	assert_null(der);
	/* A bad recipient in a list spoils the list but not the sealer. */
	{
		X509 *list[] = { web1, cert };

		assert_status(CF_ERR_USAGE, cf_sealer_seal_many(sealer, list, 2, &der,
								&len, &err), &err);
		assert_null(der);
	}
	assert_status(CF_OK, cf_sealer_seal(sealer, web1, &der, &len, &err), &err);
	expect_open(CF_OK, der, len, web1, web1_key, NAME, 0);
	{
		const unsigned char *p = der;
		CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);

		assert_non_null(cms);
		assert_int_equal(sk_CMS_RecipientInfo_num(CMS_get0_RecipientInfos(cms)), 1);
		CMS_ContentInfo_free(cms);
	}
	OPENSSL_free(der);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	X509_free(cert);
	EVP_PKEY_free(p384);
}

static void openssl_cms_interoperates(void **state)
{
	cf_secret *signed_der = signed_record(NAME, 5, alice, alice_key);
	size_t len = 0;
	unsigned char *ours = seal_to(signed_der, web1, &len);
	unsigned char *theirs;
	const unsigned char *p = ours;
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	BIO *out = BIO_new(BIO_s_mem());
	BUF_MEM *mem = NULL;

	(void)state;
	/* `openssl cms -decrypt` opens what we seal ... */
	assert_non_null(cms);
	assert_int_equal(OBJ_obj2nid(CMS_get0_type(cms)),
			 NID_id_smime_ct_authEnvelopedData);
	assert_int_equal(CMS_decrypt(cms, web1_key, web1, NULL, out, CMS_BINARY), 1);
	BIO_get_mem_ptr(out, &mem);
	assert_int_equal(mem->length, cf_secret_len(signed_der));
	assert_memory_equal(mem->data, cf_secret_cdata(signed_der), mem->length);
	CMS_ContentInfo_free(cms);
	BIO_free(out);
	OPENSSL_free(ours);

	/* ... and we open what `openssl cms -encrypt -aes-256-gcm` makes. */
	theirs = openssl_encrypt(signed_der, web1, EVP_aes_256_gcm(), &len);
	expect_open(CF_OK, theirs, len, web1, web1_key, NAME, 5);
	OPENSSL_free(theirs);
	cf_secret_free(signed_der);
}

/* ------------------------------------------------------------ refusals */

static void key_not_matching_cert(void **state)
{
	size_t len = 0;
	unsigned char *der = envelope_by(alice, alice_key, NAME, 1, &len);
	cf_secret *json = record_json(cf_trust_tenant(trust), NAME, 1, VALUE);
	cf_secret *signed_der = NULL, *content = NULL;
	cf_error err = { 0 };

	(void)state;
	expect_open(CF_ERR_USAGE, der, len, web1, db1_key, NAME, 0);
	assert_status(CF_ERR_USAGE, cf_envelope_decrypt(der, len, web1, db1_key,
							&content, &err), &err);
	assert_null(content);
	assert_status(CF_ERR_USAGE, cf_envelope_sign(json, alice, bob_key, NULL,
						     &signed_der, &err), &err);
	assert_null(signed_der);
	assert_int_equal(ERR_peek_error(), 0);
	cf_secret_free(json);
	OPENSSL_free(der);
}

static void truncated(void **state)
{
	size_t len = 0;
	unsigned char *der = envelope_by(alice, alice_key, NAME, 1, &len);
	static const unsigned char empty[1];

	(void)state;
	expect_open(CF_ERR_TRUNCATED, der, len / 2, web1, web1_key, NAME, 0);
	expect_open(CF_ERR_TRUNCATED, der, len - 1, web1, web1_key, NAME, 0);
	expect_open(CF_ERR_TRUNCATED, der, 10, web1, web1_key, NAME, 0);
	expect_open(CF_ERR_TRUNCATED, der, 1, web1, web1_key, NAME, 0);
	expect_open(CF_ERR_TRUNCATED, empty, 0, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
}

static void malformed(void **state)
{
	/* Well-formed DER, just not CMS: SEQUENCE { INTEGER 5 }. */
	static const unsigned char not_cms[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };
	/* A definite length that is consistent but a tag that means nothing. */
	static const unsigned char junk[] = { 0x04, 0x04, 'j', 'u', 'n', 'k' };
	cf_secret *signed_der = signed_record(NAME, 1, alice, alice_key);
	size_t len = 0, cbc_len = 0;
	unsigned char *der = seal_to(signed_der, web1, &len);
	unsigned char *longer = OPENSSL_malloc(len + 1);
	unsigned char *cbc = openssl_encrypt(signed_der, web1, EVP_aes_256_cbc(),
					     &cbc_len);
	cf_error err = { 0 };
	cf_secret *content = NULL;

	(void)state;
	expect_open(CF_ERR_MALFORMED, not_cms, sizeof(not_cms), web1, web1_key,
		    NAME, 0);
	expect_open(CF_ERR_MALFORMED, junk, sizeof(junk), web1, web1_key, NAME, 0);
	/* Trailing bytes after a good envelope. */
	memcpy(longer, der, len);
	longer[len] = 0;
	expect_open(CF_ERR_MALFORMED, longer, len + 1, web1, web1_key, NAME, 0);
	/* An EnvelopedData (AES-CBC, no authentication) that would decrypt. */
	assert_status(CF_ERR_MALFORMED, cf_envelope_decrypt(cbc, cbc_len, web1,
							    web1_key, &content, &err),
		      &err);
	assert_non_null(strstr(err.msg, "AuthEnvelopedData"));
	assert_null(content);
	/* A SignedData is not an envelope either. */
	expect_open(CF_ERR_MALFORMED, cf_secret_cdata(signed_der),
		    cf_secret_len(signed_der), web1, web1_key, NAME, 0);
	/* Too large to be one of ours is refused before parsing. */
	{
		unsigned char *big = OPENSSL_zalloc(CF_ENVELOPE_MAX_BYTES + 1);

		expect_open(CF_ERR_TOO_LARGE, big, CF_ENVELOPE_MAX_BYTES + 1, web1,
			    web1_key, NAME, 0);
		OPENSSL_free(big);
	}
	OPENSSL_free(cbc);
	OPENSSL_free(longer);
	OPENSSL_free(der);
	cf_secret_free(signed_der);
}

static void not_for_this_recipient(void **state)
{
	size_t len = 0;
	unsigned char *der = envelope_by(alice, alice_key, NAME, 1, &len);
	cf_error err = { 0 };
	cf_record *rec = NULL;

	(void)state;
	expect_open(CF_ERR_NOT_RECIPIENT, der, len, db1, db1_key, NAME, 0);
	assert_status(CF_ERR_NOT_RECIPIENT,
		      cf_envelope_open(der, len, web2, web2_key, trust, NAME, 0, &rec,
				       NULL, &err), &err);
	assert_non_null(strstr(err.msg, "web-2"));
	OPENSSL_free(der);
}

/* Where the recipient's wrapped key sits: right after its serial number. */
static unsigned char *wrapped_key_of(unsigned char *der, size_t len, X509 *cert)
{
	const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
	const unsigned char *bytes = ASN1_STRING_get0_data(serial);
	size_t n = (size_t)ASN1_STRING_length(serial);
	unsigned char *pos = memmem(der, len, bytes, n);

	assert_non_null(pos);
	/* RecipientEncryptedKey: ..., serial, OCTET STRING (40 bytes of AES wrap). */
	assert_int_equal(pos[n], 0x04);
	assert_int_equal(pos[n + 1], 40);
	return pos + n + 2;
}

static void undecryptable(void **state)
{
	size_t len = 0;
	unsigned char *der = envelope_by(alice, alice_key, NAME, 1, &len);
	unsigned char *wrapped = wrapped_key_of(der, len, web1);

	(void)state;
	wrapped[5] ^= 0x20;
	expect_open(CF_ERR_UNDECRYPTABLE, der, len, web1, web1_key, NAME, 0);
	wrapped[5] ^= 0x20;
	wrapped[39] ^= 0x01;
	expect_open(CF_ERR_UNDECRYPTABLE, der, len, web1, web1_key, NAME, 0);
	wrapped[39] ^= 0x01;
	expect_open(CF_OK, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
}

/*
 * The key-wrap algorithm must be AES key wrap (RFC 3394), checked before
 * OpenSSL unwraps: OpenSSL 3.0's failed RFC 5649 unwrap (id-aes*-wrap-pad)
 * zeroes 8 bytes past its output buffer, in uninstrumented code that ASan
 * does not see.  The OID's last arc is one byte: 45 (0x2d) is
 * id-aes256-wrap, 48 (0x30) id-aes256-wrap-pad, 5 id-aes128-wrap.
 */
static void padded_key_wrap_refused(void **state)
{
	static const unsigned char aes256_wrap[] = {
		0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2d,
	};
	size_t len = 0;
	unsigned char *der = envelope_by(alice, alice_key, NAME, 1, &len);
	unsigned char *oid = memmem(der, len, aes256_wrap, sizeof(aes256_wrap));
	unsigned char *last;

	(void)state;
	assert_non_null(oid);
	/* Only in the recipient info: the KDF's SharedInfo is not sent. */
	last = oid + sizeof(aes256_wrap) - 1;
	assert_null(memmem(last, len - (size_t)(last - der), aes256_wrap,
			   sizeof(aes256_wrap)));
	*last = 0x30;
	expect_open(CF_ERR_MALFORMED, der, len, web1, web1_key, NAME, 0);
	/* Another RFC 3394 size passes the check (and fails the unwrap). */
	*last = 0x05;
	expect_open(CF_ERR_UNDECRYPTABLE, der, len, web1, web1_key, NAME, 0);
	*last = 0x2d;
	expect_open(CF_OK, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
}

static void tampered_ciphertext_and_mac(void **state)
{
	size_t len = 0;
	unsigned char *der = envelope_by(alice, alice_key, NAME, 1, &len);

	(void)state;
	/* The envelope ends with the mac: OCTET STRING of 16 bytes. */
	assert_int_equal(der[len - 18], 0x04);
	assert_int_equal(der[len - 17], 16);
	/* The last ciphertext byte sits just before it. */
	der[len - 19] ^= 0x01;
	expect_open(CF_ERR_TAMPERED, der, len, web1, web1_key, NAME, 0);
	der[len - 19] ^= 0x01;
	/* And the first: flip a byte well inside the encrypted content. */
	der[len - 19 - 100] ^= 0x80;
	expect_open(CF_ERR_TAMPERED, der, len, web1, web1_key, NAME, 0);
	der[len - 19 - 100] ^= 0x80;
	der[len - 1] ^= 0x01;
	expect_open(CF_ERR_TAMPERED, der, len, web1, web1_key, NAME, 0);
	der[len - 1] ^= 0x01;
	der[len - 16] ^= 0xff;
	expect_open(CF_ERR_TAMPERED, der, len, web1, web1_key, NAME, 0);
	der[len - 16] ^= 0xff;
	/* The untouched envelope still opens: each refusal was the flip's. */
	expect_open(CF_OK, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
}

static void bad_signature(void **state)
{
	cf_secret *signed_der = signed_record(NAME, 1, alice, alice_key);
	const unsigned char *p = cf_secret_cdata(signed_der);
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p,
						   (long)cf_secret_len(signed_der));
	ASN1_OCTET_STRING **econtent;
	unsigned char *copy, *version;
	cf_secret *altered;
	unsigned char *der;
	size_t len = 0, n;

	(void)state;
	/* Signed content: version 1 -> 9, everything else as signed. */
	assert_non_null(cms);
	econtent = CMS_get0_content(cms);
	assert_non_null(econtent);
	assert_non_null(*econtent);
	n = (size_t)ASN1_STRING_length(*econtent);
	copy = OPENSSL_memdup(ASN1_STRING_get0_data(*econtent), n);
	version = memmem(copy, n, "\"version\":1", 11);
	assert_non_null(version);
	version[10] = '9';
	assert_true(ASN1_OCTET_STRING_set(*econtent, copy, (int)n));
	altered = cms_to_secret(cms);
	assert_true(cf_secret_len(altered) == cf_secret_len(signed_der));
	der = seal_to(altered, web1, &len);
	expect_open(CF_ERR_SIGNATURE, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	cf_secret_free(altered);

	/* The signature bytes themselves: the last byte of the DER. */
	altered = cf_secret_from(cf_secret_cdata(signed_der), cf_secret_len(signed_der));
	cf_secret_data(altered)[cf_secret_len(altered) - 1] ^= 0x01;
	der = seal_to(altered, web1, &len);
	expect_open(CF_ERR_SIGNATURE, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	cf_secret_free(altered);

	OPENSSL_free(copy);
	CMS_ContentInfo_free(cms);
	cf_secret_free(signed_der);
}

static void signer_certificate_missing(void **state)
{
	cf_secret *json = record_json(cf_trust_tenant(trust), NAME, 1, VALUE);
	cf_secret *signed_der = cms_signed(json, cf_nid_record(), &alice, &alice_key,
					   1, EVP_sha256(), CMS_NOCERTS);
	size_t len = 0;
	unsigned char *der = seal_to(signed_der, web1, &len);

	(void)state;
	expect_open(CF_ERR_SIGNATURE, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	cf_secret_free(signed_der);
	cf_secret_free(json);
}

static void weak_digest_refused(void **state)
{
	cf_secret *json = record_json(cf_trust_tenant(trust), NAME, 1, VALUE);
	cf_secret *sha1 = cms_signed(json, cf_nid_record(), &alice, &alice_key, 1,
				     EVP_sha1(), 0);
	cf_secret *sha384 = cms_signed(json, cf_nid_record(), &alice, &alice_key, 1,
				       EVP_sha384(), 0);
	size_t len = 0;
	unsigned char *der;

	(void)state;
	/* A valid ECDSA signature, over a digest coffer does not trust. */
	der = seal_to(sha1, web1, &len);
	expect_open(CF_ERR_SIGNATURE, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	der = seal_to(sha384, web1, &len);
	expect_open(CF_OK, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	cf_secret_free(sha1);
	cf_secret_free(sha384);
	cf_secret_free(json);
}

static void inner_content_malformed(void **state)
{
	cf_secret *json = record_json(cf_trust_tenant(trust), NAME, 1, VALUE);
	X509 *two_certs[] = { alice, carol };
	EVP_PKEY *two_keys[] = { alice_key, carol_key };
	cf_secret *plain_data = cms_signed(json, NID_undef, &alice, &alice_key, 1,
					   EVP_sha256(), 0);
	cf_secret *two = cms_signed(json, cf_nid_record(), two_certs, two_keys, 2,
				    EVP_sha256(), 0);
	cf_secret *good = cms_signed(json, cf_nid_record(), &alice, &alice_key, 1,
				     EVP_sha256(), 0);
	cf_secret *contents[] = { json, plain_data, two };
	size_t len = 0;
	unsigned char *der;

	(void)state;
	/* Not SignedData; SignedData of id-data; two signers. */
	for (size_t i = 0; i < 3; i++) {
		der = seal_to(contents[i], web1, &len);
		expect_open(CF_ERR_MALFORMED, der, len, web1, web1_key, NAME, 0);
		OPENSSL_free(der);
	}
	/* The same CMS calls with one signer and our content type are fine. */
	der = seal_to(good, web1, &len);
	expect_open(CF_OK, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	cf_secret_free(plain_data);
	cf_secret_free(two);
	cf_secret_free(good);
	cf_secret_free(json);
}

static void record_malformed_inside_good_signature(void **state)
{
	cf_secret *json = cf_secret_from("{\"v\":2}", 7);
	cf_secret *signed_der = sign(json, alice, alice_key);
	size_t len = 0;
	unsigned char *der = seal_to(signed_der, web1, &len);

	(void)state;
	expect_open(CF_ERR_RECORD, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	cf_secret_free(signed_der);
	cf_secret_free(json);
}

static void signer_from_another_root(void **state)
{
	size_t len = 0;
	unsigned char *der = envelope_by(eve, eve_key, NAME, 1, &len);

	(void)state;
	expect_open(CF_ERR_UNTRUSTED, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
}

static void revoked_signer(void **state)
{
	size_t len = 0;
	unsigned char *der = envelope_by(mallory, mallory_key, NAME, 1, &len);

	(void)state;
	expect_open(CF_ERR_REVOKED, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
}

static void signer_without_write_permission(void **state)
{
	size_t len = 0;
	unsigned char *der;

	(void)state;
	/* bob reads everything but writes nothing. */
	der = envelope_by(bob, bob_key, NAME, 1, &len);
	expect_open(CF_ERR_PERMISSION, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	/* carol writes dev/x names, not prod/... */
	der = envelope_by(carol, carol_key, NAME, 1, &len);
	expect_open(CF_ERR_PERMISSION, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	/* ... nor dev/a/b: '*' stops at '/' ... */
	der = envelope_by(carol, carol_key, "dev/a/b", 1, &len);
	expect_open(CF_ERR_PERMISSION, der, len, web1, web1_key, "dev/a/b", 0);
	OPENSSL_free(der);
	/* ... but dev/x she may. */
	der = envelope_by(carol, carol_key, "dev/x", 1, &len);
	expect_open(CF_OK, der, len, web1, web1_key, "dev/x", 0);
	OPENSSL_free(der);
}

static void non_operator_signer(void **state)
{
	size_t len = 0;
	unsigned char *der;

	(void)state;
	/* An agent's key signs fine, but agents may not write secrets. */
	der = envelope_by(db1, db1_key, NAME, 1, &len);
	expect_open(CF_ERR_PERMISSION, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	/* Nor may an enroller without secret.write. */
	der = envelope_by(enroller, enroller_key, NAME, 1, &len);
	expect_open(CF_ERR_PERMISSION, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	/*
	 * Nor an agent whose certificate carries secret.write anyway (the
	 * root signed it by hand; cf_cert_issue refuses --perm on an agent):
	 * the kind decides before any rule is read.
	 */
	{
		EVP_PKEY *key = fx_key();
		X509 *agent = fx_agent(root, root_key, key, "rogue", "web");

		fx_add_utf8_ext(agent, cf_nid_perms(), "secret.write:**");
		assert_true(X509_sign(agent, root_key, EVP_sha256()) > 0);
		der = envelope_by(agent, key, NAME, 1, &len);
		expect_open(CF_ERR_PERMISSION, der, len, web1, web1_key, NAME, 0);
		OPENSSL_free(der);
		X509_free(agent);
		EVP_PKEY_free(key);
	}
}

static void record_of_another_tenant(void **state)
{
	char other_tenant[65];
	cf_secret *json, *signed_der;
	unsigned char *der;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_cert_fingerprint(other_root, other_tenant, &err), &err);
	json = record_json(other_tenant, NAME, 1, VALUE);
	signed_der = sign(json, alice, alice_key);
	der = seal_to(signed_der, web1, &len);
	expect_open(CF_ERR_RECORD, der, len, web1, web1_key, NAME, 0);
	OPENSSL_free(der);
	cf_secret_free(signed_der);
	cf_secret_free(json);
}

static void name_mismatch(void **state)
{
	size_t len = 0;
	unsigned char *der = envelope_by(alice, alice_key, "prod/db/user", 1, &len);

	(void)state;
	expect_open(CF_ERR_NAME, der, len, web1, web1_key, NAME, 0);
	expect_open(CF_ERR_NAME, der, len, web1, web1_key, "prod/db/user2", 0);
	OPENSSL_free(der);
}

static void version_below_minimum(void **state)
{
	size_t len = 0;
	unsigned char *der = envelope_by(alice, alice_key, NAME, 6, &len);

	(void)state;
	expect_open(CF_ERR_ROLLBACK, der, len, web1, web1_key, NAME, 7);
	expect_open(CF_ERR_ROLLBACK, der, len, web1, web1_key, NAME, UINT64_MAX);
	/* The highest version seen may be seen again (a re-delivery). */
	expect_open(CF_OK, der, len, web1, web1_key, NAME, 6);
	expect_open(CF_OK, der, len, web1, web1_key, NAME, 1);
	OPENSSL_free(der);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sign_seal_open_round_trip),
		cmocka_unit_test(recipient_issued_by_enroller),
		cmocka_unit_test(signer_chain_extra_certs),
		cmocka_unit_test(multi_recipient_opened_by_each),
		cmocka_unit_test(sealer_dup_output_opens),
		cmocka_unit_test(sealer_refuses_non_p256_recipient),
		cmocka_unit_test(openssl_cms_interoperates),
		cmocka_unit_test(key_not_matching_cert),
		cmocka_unit_test(truncated),
		cmocka_unit_test(malformed),
		cmocka_unit_test(not_for_this_recipient),
		cmocka_unit_test(undecryptable),
		cmocka_unit_test(padded_key_wrap_refused),
		cmocka_unit_test(tampered_ciphertext_and_mac),
		cmocka_unit_test(bad_signature),
		cmocka_unit_test(signer_certificate_missing),
		cmocka_unit_test(weak_digest_refused),
		cmocka_unit_test(inner_content_malformed),
		cmocka_unit_test(record_malformed_inside_good_signature),
		cmocka_unit_test(signer_from_another_root),
		cmocka_unit_test(revoked_signer),
		cmocka_unit_test(signer_without_write_permission),
		cmocka_unit_test(non_operator_signer),
		cmocka_unit_test(record_of_another_tenant),
		cmocka_unit_test(name_mismatch),
		cmocka_unit_test(recipient_on_other_256_bit_curve),
		cmocka_unit_test(version_below_minimum),
	};

	return cmocka_run_group_tests_name("envelope", tests, group_setup,
					   group_teardown);
}
