/*
 * test_pki.c - keys, requests, certificates and CRLs (pki.h).
 *
 * Certificates are read back with OpenSSL's own accessors as well as ours,
 * so a test fails if cf_cert_issue writes the wrong extensions even when
 * our reader would agree with our writer.
 */
#include "fixture.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "policy.h"
#include "secmem.h"

static EVP_PKEY *root_key;
static X509 *root;

static int group_setup(void **state)
{
	if (fx_group_setup(state) != 0)
		return -1;
	root_key = fx_key();
	root = fx_root(root_key, "Acme", 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	X509_free(root);
	EVP_PKEY_free(root_key);
	return 0;
}

/* --------------------------------------------------------------- keys */

static void key_generate_is_p256(void **state)
{
	EVP_PKEY *key = fx_key();
	char group[32] = "";

	(void)state;
	assert_true(EVP_PKEY_is_a(key, "EC"));
	assert_int_equal(EVP_PKEY_get_bits(key), 256);
	assert_true(EVP_PKEY_get_group_name(key, group, sizeof(group), NULL));
	assert_string_equal(group, "prime256v1");
	EVP_PKEY_free(key);
}

static void key_pem_round_trip_clear(void **state)
{
	EVP_PKEY *key = fx_key(), *back = NULL;
	cf_secret *pem = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_key_to_pem(key, NULL, &pem, &err), &err);
	assert_true(CRYPTO_secure_allocated(cf_secret_cdata(pem)));
	assert_non_null(strstr((const char *)cf_secret_cdata(pem),
			       "-----BEGIN PRIVATE KEY-----"));
	assert_false(cf_key_pem_is_encrypted(cf_secret_cdata(pem), cf_secret_len(pem)));
	assert_status(CF_OK, cf_key_from_pem(cf_secret_cdata(pem), cf_secret_len(pem),
					     NULL, "key.pem", &back, &err), &err);
	assert_int_equal(EVP_PKEY_eq(key, back), 1);
	EVP_PKEY_free(back);
	cf_secret_free(pem);

	/* An empty passphrase means no encryption, not an empty password. */
	{
		cf_secret *empty = cf_secret_new(0);

		assert_status(CF_OK, cf_key_to_pem(key, empty, &pem, &err), &err);
		assert_false(cf_key_pem_is_encrypted(cf_secret_cdata(pem),
						     cf_secret_len(pem)));
		cf_secret_free(empty);
		cf_secret_free(pem);
	}
	EVP_PKEY_free(key);
}

static void key_pem_round_trip_encrypted(void **state)
{
	EVP_PKEY *key = fx_key(), *back = NULL;
	cf_secret *pass = cf_secret_from("correct horse", 13);
	cf_secret *wrong = cf_secret_from("correct horsf", 13);
	cf_secret *empty = cf_secret_new(0);
	cf_secret *pem = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_key_to_pem(key, pass, &pem, &err), &err);
	assert_non_null(strstr((const char *)cf_secret_cdata(pem),
			       "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
	assert_true(cf_key_pem_is_encrypted(cf_secret_cdata(pem), cf_secret_len(pem)));
	assert_status(CF_OK, cf_key_from_pem(cf_secret_cdata(pem), cf_secret_len(pem),
					     pass, "key.pem", &back, &err), &err);
	assert_int_equal(EVP_PKEY_eq(key, back), 1);
	EVP_PKEY_free(back);
	back = NULL;

	assert_status(CF_ERR_PASSPHRASE,
		      cf_key_from_pem(cf_secret_cdata(pem), cf_secret_len(pem), wrong,
				      "key.pem", &back, &err), &err);
	assert_null(back);
	assert_non_null(strstr(err.msg, "key.pem"));
	/* Nothing left on OpenSSL's queue for the next error to pick up. */
	assert_int_equal(ERR_peek_error(), 0);
	assert_status(CF_ERR_PASSPHRASE,
		      cf_key_from_pem(cf_secret_cdata(pem), cf_secret_len(pem), NULL,
				      "key.pem", &back, &err), &err);
	assert_null(back);
	assert_status(CF_ERR_PASSPHRASE,
		      cf_key_from_pem(cf_secret_cdata(pem), cf_secret_len(pem), empty,
				      "key.pem", &back, &err), &err);
	assert_null(back);

	/* The scrypt parameters are the documented ones. */
	{
		BIO *bio = BIO_new_mem_buf(cf_secret_cdata(pem), (int)cf_secret_len(pem));
		X509_SIG *p8 = PEM_read_bio_PKCS8(bio, NULL, NULL, NULL);
		const X509_ALGOR *alg = NULL;

		assert_non_null(p8);
		X509_SIG_get0(p8, &alg, NULL);
		assert_int_equal(OBJ_obj2nid(alg->algorithm), NID_pbes2);
		X509_SIG_free(p8);
		BIO_free(bio);
	}
	cf_secret_free(pem);
	cf_secret_free(pass);
	cf_secret_free(wrong);
	cf_secret_free(empty);
	EVP_PKEY_free(key);
}

static unsigned char *pem_of_key(EVP_PKEY *key, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *mem = NULL;
	unsigned char *out;

	assert_true(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL));
	BIO_get_mem_ptr(bio, &mem);
	out = OPENSSL_memdup(mem->data, mem->length);
	*len = mem->length;
	BIO_free(bio);
	return out;
}

static void key_from_pem_refuses_other_keys(void **state)
{
	static const char *const kinds[] = { "P-384", "RSA" };
	cf_error err = { 0 };

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		EVP_PKEY *other = fx_other_key(kinds[i]), *back = NULL;
		size_t len = 0;
		unsigned char *pem = pem_of_key(other, &len);
		X509_REQ *csr = NULL;

		assert_status(CF_ERR_PARSE, cf_key_from_pem(pem, len, NULL, "k.pem",
							    &back, &err), &err);
		assert_null(back);
		assert_non_null(strstr(err.msg, "P-256"));
		/* Nor may such a key make a request. */
		assert_status(CF_ERR_USAGE, cf_csr_new(other, "web-1", &csr, &err), &err);
		assert_null(csr);
		OPENSSL_free(pem);
		EVP_PKEY_free(other);
	}
}

static void key_from_pem_refuses_garbage(void **state)
{
	static const char garbage[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n"
				      "-----END PRIVATE KEY-----\n";
	unsigned char *big = OPENSSL_zalloc(CF_PEM_MAX_BYTES + 1);
	EVP_PKEY *back = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_ERR_PARSE, cf_key_from_pem((const unsigned char *)garbage,
						    sizeof(garbage) - 1, NULL, "k",
						    &back, &err), &err);
	assert_status(CF_ERR_PARSE, cf_key_from_pem((const unsigned char *)"", 0,
						    NULL, "k", &back, &err), &err);
	assert_status(CF_ERR_TOO_LARGE, cf_key_from_pem(big, CF_PEM_MAX_BYTES + 1,
							NULL, "k", &back, &err), &err);
	assert_null(back);
	assert_int_equal(ERR_peek_error(), 0);
	OPENSSL_free(big);
}

/* --------------------------------------------------------------- CSRs */

static void csr_new_and_parse(void **state)
{
	EVP_PKEY *key = fx_key();
	X509_REQ *csr = NULL, *back = NULL;
	unsigned char *pem = NULL, *der = NULL;
	size_t pem_len = 0;
	int der_len;
	char cn[CF_CN_MAX_BYTES + 1];
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_csr_new(key, "web-1.example", &csr, &err), &err);
	cf_cert_cn_of_name(X509_REQ_get_subject_name(csr), cn, sizeof(cn));
	assert_string_equal(cn, "web-1.example");
	assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(csr), key), 1);
	assert_int_equal(X509_REQ_verify(csr, key), 1);

	assert_status(CF_OK, cf_csr_to_pem(csr, &pem, &pem_len, &err), &err);
	assert_memory_equal(pem, "-----BEGIN CERTIFICATE REQUEST-----", 35);
	assert_status(CF_OK, cf_csr_parse(pem, pem_len, "web.csr", &back, &err), &err);
	assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(back), key), 1);
	X509_REQ_free(back);
	back = NULL;

	der_len = i2d_X509_REQ(csr, &der);
	assert_true(der_len > 0);
	assert_status(CF_OK, cf_csr_parse(der, (size_t)der_len, "web.der", &back,
					  &err), &err);
	assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(back), key), 1);
	X509_REQ_free(back);
	back = NULL;

	/* Trailing bytes after the DER are not a request. */
	{
		unsigned char *longer = OPENSSL_malloc((size_t)der_len + 1);

		memcpy(longer, der, (size_t)der_len);
		longer[der_len] = 0;
		assert_status(CF_ERR_PARSE, cf_csr_parse(longer, (size_t)der_len + 1,
							 "x", &back, &err), &err);
		OPENSSL_free(longer);
	}
	assert_status(CF_ERR_PARSE, cf_csr_parse((const unsigned char *)"hello", 5,
						 "x", &back, &err), &err);
	assert_null(back);

	/* Names: 1..64 bytes, no control characters. */
	{
		char longest[CF_CN_MAX_BYTES + 2];
		X509_REQ *r = NULL;

		memset(longest, 'c', CF_CN_MAX_BYTES);
		longest[CF_CN_MAX_BYTES] = '\0';
		assert_status(CF_OK, cf_csr_new(key, longest, &r, &err), &err);
		X509_REQ_free(r);
		r = NULL;
		longest[CF_CN_MAX_BYTES] = 'c';
		longest[CF_CN_MAX_BYTES + 1] = '\0';
		assert_status(CF_ERR_USAGE, cf_csr_new(key, longest, &r, &err), &err);
		assert_status(CF_ERR_USAGE, cf_csr_new(key, "", &r, &err), &err);
		assert_status(CF_ERR_USAGE, cf_csr_new(key, "web\n1", &r, &err), &err);
		assert_null(r);
	}
	OPENSSL_free(pem);
	OPENSSL_free(der);
	X509_REQ_free(csr);
	EVP_PKEY_free(key);
}

static void csr_with_bad_signature_refused(void **state)
{
	EVP_PKEY *key = fx_key();
	X509_REQ *csr = NULL, *back = NULL;
	unsigned char *der = NULL, *pos;
	int der_len;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_csr_new(key, "victim", &csr, &err), &err);
	der_len = i2d_X509_REQ(csr, &der);
	/* Rename the subject inside the signed part: "victim" -> "victin". */
	pos = memmem(der, (size_t)der_len, "victim", 6);
	assert_non_null(pos);
	pos[5] = 'n';
	assert_status(CF_ERR_PARSE, cf_csr_parse(der, (size_t)der_len, "evil.csr",
						 &back, &err), &err);
	assert_null(back);
	assert_non_null(strstr(err.msg, "signature"));
	pos[5] = 'm';
	/* And the last byte of the signature itself. */
	der[der_len - 1] ^= 0x01;
	assert_status(CF_ERR_PARSE, cf_csr_parse(der, (size_t)der_len, "evil.csr",
						 &back, &err), &err);
	assert_null(back);
	OPENSSL_free(der);
	X509_REQ_free(csr);
	EVP_PKEY_free(key);
}

/* ------------------------------------------------------- certificates */

static void ca_create_is_a_self_signed_root(void **state)
{
	char cn[CF_CN_MAX_BYTES + 1];
	X509 *bad = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_int_equal(X509_check_issued(root, root), X509_V_OK);
	assert_int_equal(X509_verify(root, root_key), 1);
	assert_true(X509_check_ca(root) > 0);
	/* pathlen 1: room for exactly one enroller below the root. */
	assert_int_equal(X509_get_pathlen(root), 1);
	assert_true(X509_get_key_usage(root) & KU_KEY_CERT_SIGN);
	assert_true(X509_get_key_usage(root) & KU_CRL_SIGN);
	assert_int_equal(cf_cert_kind(root), CF_KIND_ROOT);
	cf_cert_cn(root, cn, sizeof(cn));
	assert_string_equal(cn, "Acme root CA");
	assert_int_equal(X509_get_version(root), 2);
	assert_true(X509_cmp_time(X509_get0_notAfter(root), NULL) > 0);
	assert_true(X509_cmp_time(X509_get0_notBefore(root), NULL) < 0);

	assert_status(CF_ERR_USAGE, cf_ca_create(root_key, "", 0, &bad, &err), &err);
	/* "<org> root CA" must itself fit in a CN. */
	{
		char org[CF_CN_MAX_BYTES];
		size_t most = CF_CN_MAX_BYTES - strlen(" root CA");

		memset(org, 'o', most);
		org[most] = '\0';
		assert_status(CF_OK, cf_ca_create(root_key, org, 0, &bad, &err), &err);
		cf_cert_cn(bad, cn, sizeof(cn));
		assert_int_equal(strlen(cn), CF_CN_MAX_BYTES);
		X509_free(bad);
		bad = NULL;
		org[most] = 'o';
		org[most + 1] = '\0';
		assert_status(CF_ERR_USAGE, cf_ca_create(root_key, org, 0, &bad, &err),
			      &err);
	}
	assert_status(CF_ERR_USAGE, cf_ca_create(root_key, "Ac\x01me", 0, &bad, &err),
		      &err);
	assert_null(bad);
}

static char *ext_text(X509 *cert, int nid)
{
	cf_error err = { 0 };
	char *text = NULL;

	assert_status(CF_OK, cf_cert_ext_text(cert, nid, &text, &err), &err);
	return text;
}

static void assert_ext(X509 *cert, int nid, const char *want)
{
	char *text = ext_text(cert, nid);

	if (want == NULL) {
		assert_null(text);
		return;
	}
	assert_non_null(text);
	assert_string_equal(text, want);
	OPENSSL_free(text);
	/* Never critical, so that standard verifiers accept our certificates. */
	assert_int_equal(X509_EXTENSION_get_critical(
		X509_get_ext(cert, X509_get_ext_by_NID(cert, nid, -1))), 0);
}

static void issued_by_root(X509 *cert, EVP_PKEY *key, const char *cn_want)
{
	char cn[CF_CN_MAX_BYTES + 1];

	assert_int_equal(X509_check_issued(root, cert), X509_V_OK);
	assert_int_equal(X509_verify(cert, root_key), 1);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), key), 1);
	cf_cert_cn(cert, cn, sizeof(cn));
	assert_string_equal(cn, cn_want);
	/* The subject is rebuilt under the issuer's organisation. */
	assert_int_equal(X509_NAME_get_index_by_NID(X509_get_subject_name(cert),
						    NID_organizationName, -1), 0);
}

static void issue_operator(void **state)
{
	EVP_PKEY *key = fx_key();
	X509 *cert = fx_holder(root, root_key, key, CF_KIND_OPERATOR, "alice",
			       "secret.read:prod/*", "secret.write:prod/db/*");
	cf_perms *perms = NULL;
	cf_error err = { 0 };

	(void)state;
	issued_by_root(cert, key, "alice");
	assert_int_equal(cf_cert_kind(cert), CF_KIND_OPERATOR);
	assert_ext(cert, cf_nid_kind(), "operator");
	assert_ext(cert, cf_nid_perms(), "secret.read:prod/*\nsecret.write:prod/db/*");
	assert_ext(cert, cf_nid_groups(), NULL);
	assert_ext(cert, cf_nid_cluster(), NULL);
	assert_int_equal(X509_check_ca(cert), 0);
	assert_int_equal(X509_get_key_usage(cert),
			 KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT);
	assert_non_null(X509_get0_subject_key_id(cert));
	assert_non_null(X509_get0_authority_key_id(cert));
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(cert),
					       X509_get0_subject_key_id(root)), 0);

	assert_status(CF_OK, cf_cert_perms(cert, &perms, &err), &err);
	assert_int_equal(cf_perms_count(perms), 2);
	assert_true(cf_perms_allows(perms, "secret.write", "prod/db/pw"));
	assert_false(cf_perms_allows(perms, "secret.write", "prod/web"));
	cf_perms_free(perms);
	/* Serials: positive, 20 octets, and different every time. */
	{
		X509 *again = fx_holder(root, root_key, key, CF_KIND_OPERATOR, "alice",
					"secret.read:prod/*", NULL);
		const ASN1_INTEGER *s1 = X509_get0_serialNumber(cert);

		assert_int_equal(ASN1_STRING_length(s1), 20);
		assert_int_equal(ASN1_STRING_type(s1), V_ASN1_INTEGER);
		assert_int_not_equal(ASN1_INTEGER_cmp(s1, X509_get0_serialNumber(again)), 0);
		X509_free(again);
	}
	X509_free(cert);
	EVP_PKEY_free(key);
}

static void issue_enroller(void **state)
{
	EVP_PKEY *key = fx_key();
	X509 *cert = fx_holder(root, root_key, key, CF_KIND_ENROLLER, "enroll-eu",
			       "agent.enroll:web-*", NULL);
	BASIC_CONSTRAINTS *bc;

	(void)state;
	issued_by_root(cert, key, "enroll-eu");
	assert_int_equal(cf_cert_kind(cert), CF_KIND_ENROLLER);
	assert_ext(cert, cf_nid_kind(), "enroller");
	assert_ext(cert, cf_nid_perms(), "agent.enroll:web-*");
	bc = X509_get_ext_d2i(cert, NID_basic_constraints, NULL, NULL);
	assert_non_null(bc);
	assert_true(bc->ca);
	assert_non_null(bc->pathlen);
	assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
	BASIC_CONSTRAINTS_free(bc);
	assert_int_equal(X509_get_pathlen(cert), 0);
	assert_true(X509_check_ca(cert) > 0);
	assert_true(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN);
	assert_false(X509_get_key_usage(cert) & KU_CRL_SIGN);
	X509_free(cert);
	EVP_PKEY_free(key);
}

static void issue_agent_and_cluster(void **state)
{
	static const char *const groups[] = { "web", "eu/db" };
	EVP_PKEY *key = fx_key(), *ckey = fx_key();
	cf_cert_spec agent_spec = { .kind = CF_KIND_AGENT, .groups = groups,
				    .n_groups = 2, .cluster = "pg-main" };
	cf_cert_spec cluster_spec = { .kind = CF_KIND_CLUSTER, .cluster = "pg-main" };
	X509 *agent = fx_issue(root, root_key, key, "db-1", &agent_spec);
	X509 *cluster = fx_issue(root, root_key, ckey, "pg-main", &cluster_spec);
	cf_perms *perms = NULL;
	cf_error err = { 0 };

	(void)state;
	issued_by_root(agent, key, "db-1");
	assert_int_equal(cf_cert_kind(agent), CF_KIND_AGENT);
	assert_ext(agent, cf_nid_kind(), "agent");
	assert_ext(agent, cf_nid_groups(), "web,eu/db");
	assert_ext(agent, cf_nid_cluster(), "pg-main");
	assert_ext(agent, cf_nid_perms(), NULL);
	assert_int_equal(X509_check_ca(agent), 0);
	/* No permissions extension: an empty set, not an error. */
	assert_status(CF_OK, cf_cert_perms(agent, &perms, &err), &err);
	assert_int_equal(cf_perms_count(perms), 0);
	cf_perms_free(perms);

	issued_by_root(cluster, ckey, "pg-main");
	assert_int_equal(cf_cert_kind(cluster), CF_KIND_CLUSTER);
	assert_ext(cluster, cf_nid_kind(), "cluster");
	assert_ext(cluster, cf_nid_cluster(), "pg-main");
	assert_ext(cluster, cf_nid_groups(), NULL);
	assert_int_equal(X509_check_ca(cluster), 0);
	X509_free(agent);
	X509_free(cluster);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ckey);
}

static cf_status try_issue(X509 *issuer, EVP_PKEY *issuer_key,
			   const cf_cert_spec *spec, cf_error *err)
{
	EVP_PKEY *key = fx_key();
	X509_REQ *csr = NULL;
	X509 *cert = (X509 *)err; /* not NULL, so that a reset is visible */
	cf_error local = { 0 };
	cf_status rc;

	assert_status(CF_OK, cf_csr_new(key, "subject", &csr, &local), &local);
	rc = cf_cert_issue(issuer, issuer_key, csr, spec, &cert, err);
	if (rc != CF_OK)
		assert_null(cert);
	X509_free(rc == CF_OK ? cert : NULL);
	X509_REQ_free(csr);
	EVP_PKEY_free(key);
	return rc;
}

static void issue_refuses_bad_specs(void **state)
{
	static const char *const perm[] = { "secret.read:*" };
	static const char *const bad_perm[] = { "secret.read" };
	static const char *const group[] = { "web" };
	static const char *const bad_group[] = { "../web" };
	cf_cert_spec spec;
	cf_error err = { 0 };

	(void)state;
	spec = (cf_cert_spec){ .kind = CF_KIND_AGENT, .perms = perm, .n_perms = 1 };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_OPERATOR, .perms = perm, .n_perms = 1,
			       .groups = group, .n_groups = 1 };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_CLUSTER };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_CLUSTER, .cluster = "c",
			       .groups = group, .n_groups = 1 };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_ENROLLER };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_ROOT };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);
	/* A bad rule given to issue is the caller's error, like a bad group. */
	spec = (cf_cert_spec){ .kind = CF_KIND_OPERATOR, .perms = bad_perm,
			       .n_perms = 1 };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);
	/* An enroller must be able to admit something. */
	spec = (cf_cert_spec){ .kind = CF_KIND_ENROLLER, .perms = perm,
			       .n_perms = 1 };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_AGENT, .groups = bad_group,
			       .n_groups = 1 };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_CLUSTER, .cluster = "a//b" };
	assert_status(CF_ERR_USAGE, try_issue(root, root_key, &spec, &err), &err);

	/* The issuer key must be the issuer's. */
	{
		EVP_PKEY *other = fx_key();

		spec = (cf_cert_spec){ .kind = CF_KIND_AGENT, .groups = group,
				       .n_groups = 1 };
		assert_status(CF_ERR_USAGE, try_issue(root, other, &spec, &err), &err);
		EVP_PKEY_free(other);
	}
}

static void enroller_issues_only_within_scope(void **state)
{
	static const char *const web[] = { "web-1" };
	static const char *const db[] = { "db" };
	static const char *const mixed[] = { "web-2", "db" };
	static const char *const perm[] = { "secret.read:*" };
	static const char *const enroll_web[] = { "agent.enroll:web-9" };
	EVP_PKEY *ekey = fx_key();
	X509 *enroller = fx_holder(root, root_key, ekey, CF_KIND_ENROLLER, "enroll",
				   "agent.enroll:web-*", "agent.enroll:pg-*");
	cf_cert_spec spec;
	cf_error err = { 0 };

	(void)state;
	spec = (cf_cert_spec){ .kind = CF_KIND_AGENT, .groups = web, .n_groups = 1 };
	assert_status(CF_OK, try_issue(enroller, ekey, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_CLUSTER, .cluster = "pg-main" };
	assert_status(CF_OK, try_issue(enroller, ekey, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_AGENT, .groups = web, .n_groups = 1,
			       .cluster = "pg-main" };
	assert_status(CF_OK, try_issue(enroller, ekey, &spec, &err), &err);

	spec = (cf_cert_spec){ .kind = CF_KIND_AGENT, .groups = db, .n_groups = 1 };
	assert_status(CF_ERR_POLICY, try_issue(enroller, ekey, &spec, &err), &err);
	assert_non_null(strstr(err.msg, "\"db\""));
	spec = (cf_cert_spec){ .kind = CF_KIND_AGENT, .groups = mixed, .n_groups = 2 };
	assert_status(CF_ERR_POLICY, try_issue(enroller, ekey, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_CLUSTER, .cluster = "redis" };
	assert_status(CF_ERR_POLICY, try_issue(enroller, ekey, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_AGENT, .groups = web, .n_groups = 1,
			       .cluster = "redis" };
	assert_status(CF_ERR_POLICY, try_issue(enroller, ekey, &spec, &err), &err);
	/* An agent in no group would be outside every scope. */
	spec = (cf_cert_spec){ .kind = CF_KIND_AGENT };
	assert_status(CF_ERR_POLICY, try_issue(enroller, ekey, &spec, &err), &err);
	/* Operators and enrollers only come from the root. */
	spec = (cf_cert_spec){ .kind = CF_KIND_OPERATOR, .perms = perm, .n_perms = 1 };
	assert_status(CF_ERR_POLICY, try_issue(enroller, ekey, &spec, &err), &err);
	spec = (cf_cert_spec){ .kind = CF_KIND_ENROLLER, .perms = enroll_web,
			       .n_perms = 1 };
	assert_status(CF_ERR_POLICY, try_issue(enroller, ekey, &spec, &err), &err);
	/* The root may make that very enroller. */
	assert_status(CF_OK, try_issue(root, root_key, &spec, &err), &err);
	X509_free(enroller);
	EVP_PKEY_free(ekey);
}

static void operator_and_agent_cannot_issue(void **state)
{
	static const char *const web[] = { "web" };
	EVP_PKEY *okey = fx_key(), *akey = fx_key();
	/* Even an admin operator: issuing is the root's and enrollers' alone. */
	X509 *op = fx_holder(root, root_key, okey, CF_KIND_OPERATOR, "boss",
			     "admin:**", "agent.enroll:**");
	X509 *agent = fx_agent(root, root_key, akey, "web-1", "web");
	cf_cert_spec spec = { .kind = CF_KIND_AGENT, .groups = web, .n_groups = 1 };
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_ERR_POLICY, try_issue(op, okey, &spec, &err), &err);
	assert_status(CF_ERR_POLICY, try_issue(agent, akey, &spec, &err), &err);
	X509_free(op);
	X509_free(agent);
	EVP_PKEY_free(okey);
	EVP_PKEY_free(akey);
}

static void validity_clamped_to_issuer(void **state)
{
	EVP_PKEY *skey = fx_key(), *ekey = fx_key(), *akey = fx_key();
	X509 *short_root = fx_root(skey, "Shortlived", 10);
	const char *rules[] = { "agent.enroll:**" };
	cf_cert_spec long_op = { .kind = CF_KIND_ENROLLER, .perms = rules,
				 .n_perms = 1, .days = 825 };
	cf_cert_spec short_agent = { .kind = CF_KIND_AGENT, .days = 3,
				     .groups = (const char *const[]){ "web" },
				     .n_groups = 1 };
	X509 *enroller = fx_issue(short_root, skey, ekey, "enroll", &long_op);
	X509 *agent = fx_issue(enroller, ekey, akey, "web-1", &short_agent);
	int day = 0, sec = 0;

	(void)state;
	assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(enroller),
					   X509_get0_notAfter(short_root)), 0);
	/* A shorter request is honoured as asked. */
	assert_true(ASN1_TIME_compare(X509_get0_notAfter(agent),
				      X509_get0_notAfter(enroller)) < 0);
	assert_true(ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(agent)));
	assert_true(day == 3 || (day == 2 && sec > 86000));
	/* Five minutes of slack before now. */
	assert_true(ASN1_TIME_diff(&day, &sec, X509_get0_notBefore(agent), NULL));
	assert_int_equal(day, 0);
	assert_in_range(sec, 290, 400);
	X509_free(agent);
	X509_free(enroller);
	X509_free(short_root);
	EVP_PKEY_free(skey);
	EVP_PKEY_free(ekey);
	EVP_PKEY_free(akey);
}

static void cert_parse_pem_chain_der_and_garbage(void **state)
{
	EVP_PKEY *ekey = fx_key(), *akey = fx_key();
	X509 *enroller = fx_holder(root, root_key, ekey, CF_KIND_ENROLLER, "enroll",
				   "agent.enroll:web", NULL);
	X509 *agent = fx_agent(enroller, ekey, akey, "web-1", "web");
	unsigned char *pem1 = NULL, *pem2 = NULL, *both, *der;
	size_t len1 = 0, len2 = 0, der_len = 0;
	STACK_OF(X509) *chain = NULL;
	X509 *out = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_cert_to_pem(agent, &pem1, &len1, &err), &err);
	assert_status(CF_OK, cf_cert_to_pem(enroller, &pem2, &len2, &err), &err);
	both = OPENSSL_malloc(len1 + len2);
	memcpy(both, pem1, len1);
	memcpy(both + len1, pem2, len2);

	assert_status(CF_OK, cf_cert_parse(both, len1 + len2, "chain.pem", &out,
					   &chain, &err), &err);
	assert_int_equal(X509_cmp(out, agent), 0);
	assert_int_equal(sk_X509_num(chain), 1);
	assert_int_equal(X509_cmp(sk_X509_value(chain, 0), enroller), 0);
	X509_free(out);
	sk_X509_pop_free(chain, X509_free);
	chain = NULL;
	/* Without a chain to fill, the rest is ignored. */
	assert_status(CF_OK, cf_cert_parse(both, len1 + len2, "chain.pem", &out,
					   NULL, &err), &err);
	assert_int_equal(X509_cmp(out, agent), 0);
	X509_free(out);
	/* One certificate: the chain stays empty. */
	assert_status(CF_OK, cf_cert_parse(pem1, len1, "one.pem", &out, &chain,
					   &err), &err);
	assert_null(chain);
	X509_free(out);

	der = fx_cert_der(agent, &der_len);
	assert_status(CF_OK, cf_cert_parse(der, der_len, "a.der", &out, NULL, &err),
		      &err);
	assert_int_equal(X509_cmp(out, agent), 0);
	X509_free(out);
	out = NULL;
	assert_status(CF_ERR_PARSE, cf_cert_parse(der, der_len - 1, "cut.der", &out,
						  NULL, &err), &err);
	assert_non_null(strstr(err.msg, "cut.der"));
	assert_status(CF_ERR_PARSE, cf_cert_parse((const unsigned char *)"garbage!", 8,
						  "junk", &out, NULL, &err), &err);
	{
		static const char junk[] = "-----BEGIN CERTIFICATE-----\nZm9v\n"
					   "-----END CERTIFICATE-----\n";

		assert_status(CF_ERR_PARSE, cf_cert_parse((const unsigned char *)junk,
							  sizeof(junk) - 1, "junk.pem",
							  &out, NULL, &err), &err);
	}
	assert_status(CF_ERR_PARSE, cf_cert_parse(both, 0, "empty", &out, NULL, &err),
		      &err);
	assert_null(out);
	assert_int_equal(ERR_peek_error(), 0);
	{
		unsigned char *big = OPENSSL_zalloc(CF_PEM_MAX_BYTES + 1);

		assert_status(CF_ERR_TOO_LARGE, cf_cert_parse(big, CF_PEM_MAX_BYTES + 1,
							      "big", &out, NULL, &err),
			      &err);
		OPENSSL_free(big);
	}
	OPENSSL_free(der);
	OPENSSL_free(both);
	OPENSSL_free(pem1);
	OPENSSL_free(pem2);
	X509_free(agent);
	X509_free(enroller);
	EVP_PKEY_free(ekey);
	EVP_PKEY_free(akey);
}

static void fingerprint_is_sha256_of_der(void **state)
{
	unsigned char md[EVP_MAX_MD_SIZE], digest[32];
	unsigned int md_len = 0;
	char hex[65], want[65];
	size_t der_len = 0;
	unsigned char *der = fx_cert_der(root, &der_len);
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_cert_fingerprint(root, hex, &err), &err);
	assert_int_equal(strlen(hex), 64);
	assert_true(X509_digest(root, EVP_sha256(), md, &md_len));
	assert_int_equal(md_len, 32);
	for (unsigned int i = 0; i < md_len; i++)
		snprintf(want + 2 * i, 3, "%02x", md[i]);
	assert_string_equal(hex, want);
	/* And independently of X509_digest: the hash of i2d_X509. */
	assert_true(EVP_Digest(der, der_len, digest, NULL, EVP_sha256(), NULL));
	assert_memory_equal(digest, md, 32);
	OPENSSL_free(der);
}

static void kind_names(void **state)
{
	(void)state;
	assert_string_equal(cf_kind_name(CF_KIND_ENROLLER), "enroller");
	assert_string_equal(cf_kind_name((cf_kind)42), "unknown");
	assert_int_equal(cf_kind_from_name("agent"), CF_KIND_AGENT);
	assert_int_equal(cf_kind_from_name("cluster"), CF_KIND_CLUSTER);
	assert_int_equal(cf_kind_from_name("unknown"), CF_KIND_UNKNOWN);
	assert_int_equal(cf_kind_from_name("Agent"), CF_KIND_UNKNOWN);
}

/* --------------------------------------------------------------- CRLs */

static long crl_number(X509_CRL *crl)
{
	ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	long value;

	assert_non_null(number);
	value = ASN1_INTEGER_get(number);
	ASN1_INTEGER_free(number);
	return value;
}

/* An empty CRL has no list at all, which OpenSSL counts as -1. */
static int revoked_count(X509_CRL *crl)
{
	STACK_OF(X509_REVOKED) *entries = X509_CRL_get_REVOKED(crl);

	return entries == NULL ? 0 : sk_X509_REVOKED_num(entries);
}

static int crl_lists(X509_CRL *crl, X509 *cert)
{
	X509_REVOKED *entry = NULL;

	return X509_CRL_get0_by_serial(crl, &entry,
		(ASN1_INTEGER *)X509_get0_serialNumber(cert)) == 1;
}

static void crl_update_add_and_number(void **state)
{
	EVP_PKEY *k1 = fx_key(), *k2 = fx_key();
	X509 *a1 = fx_agent(root, root_key, k1, "a1", "web");
	X509 *a2 = fx_agent(root, root_key, k2, "a2", "web");
	X509_CRL *c1 = NULL, *c2 = NULL, *c3 = NULL, *dup = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_crl_update(root, root_key, NULL, NULL, 0, &c1, &err),
		      &err);
	assert_int_equal(crl_number(c1), 1);
	assert_int_equal(revoked_count(c1), 0);
	assert_int_equal(X509_CRL_verify(c1, root_key), 1);
	assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(c1),
				       X509_get_subject_name(root)), 0);
	assert_true(X509_cmp_time(X509_CRL_get0_nextUpdate(c1), NULL) > 0);

	assert_status(CF_OK, cf_crl_update(root, root_key, c1, a1, 30, &c2, &err),
		      &err);
	assert_int_equal(crl_number(c2), 2);
	assert_true(crl_lists(c2, a1));
	assert_false(crl_lists(c2, a2));

	assert_status(CF_ERR_EXISTS, cf_crl_update(root, root_key, c2, a1, 30, &dup,
						   &err), &err);
	assert_null(dup);

	assert_status(CF_OK, cf_crl_update(root, root_key, c2, a2, 30, &c3, &err),
		      &err);
	assert_int_equal(crl_number(c3), 3);
	assert_int_equal(revoked_count(c3), 2);
	assert_true(crl_lists(c3, a1));
	assert_true(crl_lists(c3, a2));
	assert_int_equal(X509_CRL_verify(c3, root_key), 1);
	/* Re-signing without a new entry still moves the number on. */
	assert_status(CF_OK, cf_crl_update(root, root_key, c3, NULL, 30, &dup, &err),
		      &err);
	assert_int_equal(crl_number(dup), 4);
	assert_int_equal(revoked_count(dup), 2);
	X509_CRL_free(dup);
	dup = NULL;
	/* Only the root's own key signs its CRL. */
	assert_status(CF_ERR_USAGE, cf_crl_update(root, k1, c3, NULL, 30, &dup, &err),
		      &err);
	assert_null(dup);

	X509_CRL_free(c1);
	X509_CRL_free(c2);
	X509_CRL_free(c3);
	X509_free(a1);
	X509_free(a2);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
}

static void crl_pem_der_round_trip(void **state)
{
	X509_CRL *crl = fx_crl(root, root_key, NULL, NULL), *back = NULL;
	unsigned char *pem = NULL, *der = NULL;
	size_t pem_len = 0;
	int der_len;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_crl_to_pem(crl, &pem, &pem_len, &err), &err);
	assert_status(CF_OK, cf_crl_parse(pem, pem_len, "crl.pem", &back, &err), &err);
	assert_int_equal(X509_CRL_cmp(back, crl), 0);
	assert_int_equal(crl_number(back), 1);
	X509_CRL_free(back);
	back = NULL;
	der_len = i2d_X509_CRL(crl, &der);
	assert_status(CF_OK, cf_crl_parse(der, (size_t)der_len, "crl.der", &back,
					  &err), &err);
	X509_CRL_free(back);
	back = NULL;
	assert_status(CF_ERR_PARSE, cf_crl_parse(der, (size_t)der_len - 1, "cut",
						 &back, &err), &err);
	assert_status(CF_ERR_PARSE, cf_crl_parse((const unsigned char *)"xx", 2,
						 "junk", &back, &err), &err);
	assert_null(back);
	OPENSSL_free(pem);
	OPENSSL_free(der);
	X509_CRL_free(crl);
}

static void crl_check_signer(void **state)
{
	EVP_PKEY *twin_key = fx_key(), *other_key = fx_key();
	/* Same name as our root, another key: only the signature tells them apart. */
	X509 *twin = fx_root(twin_key, "Acme", 0);
	X509 *other = fx_root(other_key, "Other", 0);
	X509_CRL *ours = fx_crl(root, root_key, NULL, NULL);
	X509_CRL *theirs = fx_crl(twin, twin_key, NULL, NULL), *next = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_crl_check_signer(ours, root, &err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_crl_check_signer(ours, twin, &err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_crl_check_signer(ours, other, &err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_crl_check_signer(theirs, root, &err), &err);
	assert_int_equal(ERR_peek_error(), 0);
	/* Our root's key, another CA's name: the issuer must be this root. */
	{
		X509_CRL *renamed = X509_CRL_new();
		ASN1_TIME *now = X509_gmtime_adj(NULL, 0);

		assert_non_null(renamed);
		assert_true(X509_CRL_set_version(renamed, 1));
		assert_true(X509_CRL_set_issuer_name(renamed,
						     X509_get_subject_name(other)));
		assert_true(X509_CRL_set1_lastUpdate(renamed, now));
		assert_true(X509_CRL_sign(renamed, root_key, EVP_sha256()) > 0);
		assert_int_equal(X509_CRL_verify(renamed, root_key), 1);
		assert_status(CF_ERR_UNTRUSTED, cf_crl_check_signer(renamed, root, &err),
			      &err);
		ASN1_TIME_free(now);
		X509_CRL_free(renamed);
	}
	/* A CRL from elsewhere is not a base to build ours on. */
	assert_status(CF_ERR_UNTRUSTED, cf_crl_update(root, root_key, theirs, NULL,
						      30, &next, &err), &err);
	assert_null(next);
	X509_CRL_free(ours);
	X509_CRL_free(theirs);
	X509_free(twin);
	X509_free(other);
	EVP_PKEY_free(twin_key);
	EVP_PKEY_free(other_key);
}

static void asn1_time_unix(void **state)
{
	ASN1_TIME *t = ASN1_TIME_set(NULL, 1700000000);

	(void)state;
	assert_int_equal(cf_asn1_time_unix(t), 1700000000);
	assert_int_equal(cf_asn1_time_unix(NULL), 0);
	ASN1_TIME_free(t);
}

/* A BMPString CN "a\0b" would be issued as "a": it is refused instead. */
static void csr_cn_with_nul_refused(void **state)
{
	static const unsigned char bmp[] = { 0, 'a', 0, 0, 0, 'b' };
	EVP_PKEY *key = fx_key();
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	cf_cert_spec spec = { .kind = CF_KIND_AGENT };
	X509 *cert = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_non_null(req);
	assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_commonName,
		V_ASN1_BMPSTRING, bmp, sizeof(bmp), -1, 0), 1);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
	assert_status(CF_ERR_PARSE, cf_cert_issue(root, root_key, req, &spec,
						  &cert, &err), &err);
	assert_null(cert);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(key_generate_is_p256),
		cmocka_unit_test(key_pem_round_trip_clear),
		cmocka_unit_test(key_pem_round_trip_encrypted),
		cmocka_unit_test(key_from_pem_refuses_other_keys),
		cmocka_unit_test(key_from_pem_refuses_garbage),
		cmocka_unit_test(csr_new_and_parse),
		cmocka_unit_test(csr_with_bad_signature_refused),
		cmocka_unit_test(ca_create_is_a_self_signed_root),
		cmocka_unit_test(issue_operator),
		cmocka_unit_test(issue_enroller),
		cmocka_unit_test(issue_agent_and_cluster),
		cmocka_unit_test(issue_refuses_bad_specs),
		cmocka_unit_test(enroller_issues_only_within_scope),
		cmocka_unit_test(operator_and_agent_cannot_issue),
		cmocka_unit_test(validity_clamped_to_issuer),
		cmocka_unit_test(cert_parse_pem_chain_der_and_garbage),
		cmocka_unit_test(fingerprint_is_sha256_of_der),
		cmocka_unit_test(kind_names),
		cmocka_unit_test(crl_update_add_and_number),
		cmocka_unit_test(crl_pem_der_round_trip),
		cmocka_unit_test(crl_check_signer),
		cmocka_unit_test(asn1_time_unix),
		cmocka_unit_test(csr_cn_with_nul_refused),
	};

	return cmocka_run_group_tests_name("pki", tests, group_setup, group_teardown);
}
