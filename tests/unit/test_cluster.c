/*
 * test_cluster.c - clusters (cluster.h, cluster.c): the names, the
 * certificate check, the key bundle (round trip and every refusal of the
 * strict reader), the membership proof, and the PKCS#12 file (round trip,
 * its algorithms read back independently, wrong password, legacy files,
 * and files made by the openssl program both ways).
 */
#include "fixture.h"

#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "pki.h"
#include "policy.h"
#include "secmem.h"

static EVP_PKEY *root_key, *enroller_key, *web_key, *db_key, *agent_key,
	*spare_key;
static X509 *root, *enroller, *web, *db, *agent;
static char tenant[65], web_fp[65], db_fp[65], agent_fp[65];

static X509 *cluster_cert(EVP_PKEY *key, const char *cn, const char *name)
{
	cf_cert_spec spec = { .kind = CF_KIND_CLUSTER, .cluster = name };

	return fx_issue(enroller, enroller_key, key, cn, &spec);
}

static int group_setup(void **state)
{
	cf_error err = { 0 };

	if (fx_group_setup(state) != 0)
		return -1;
	root_key = fx_key();
	root = fx_root(root_key, "Acme", 0);
	enroller_key = fx_key();
	enroller = fx_holder(root, root_key, enroller_key, CF_KIND_ENROLLER,
			     "bob", "agent.enroll:web", "agent.enroll:db");
	web_key = fx_key();
	web = cluster_cert(web_key, "cluster-web", "web");
	db_key = fx_key();
	db = cluster_cert(db_key, "cluster-db", "db");
	agent_key = fx_key();
	agent = fx_agent(enroller, enroller_key, agent_key, "web-1", "web");
	spare_key = fx_key();
	if (cf_cert_fingerprint(root, tenant, &err) != CF_OK ||
	    cf_cert_fingerprint(web, web_fp, &err) != CF_OK ||
	    cf_cert_fingerprint(db, db_fp, &err) != CF_OK ||
	    cf_cert_fingerprint(agent, agent_fp, &err) != CF_OK)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	X509_free(root);
	X509_free(enroller);
	X509_free(web);
	X509_free(db);
	X509_free(agent);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(enroller_key);
	EVP_PKEY_free(web_key);
	EVP_PKEY_free(db_key);
	EVP_PKEY_free(agent_key);
	EVP_PKEY_free(spare_key);
	return 0;
}

/* ------------------------------------------------------------ helpers */

/* A growing text of PEM pieces (public material and test keys only). */
struct text {
	char *buf;
	size_t len;
};

static void text_add(struct text *t, const void *data, size_t len)
{
	t->buf = realloc(t->buf, t->len + len + 1);
	assert_non_null(t->buf);
	memcpy(t->buf + t->len, data, len);
	t->len += len;
	t->buf[t->len] = '\0';
}

static void text_str(struct text *t, const char *s)
{
	text_add(t, s, strlen(s));
}

static void text_cert(struct text *t, X509 *cert)
{
	unsigned char *pem = NULL;
	size_t len = 0;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_cert_to_pem(cert, &pem, &len, &err), &err);
	text_add(t, pem, len);
	OPENSSL_free(pem);
}

static void text_key(struct text *t, EVP_PKEY *key, const char *pass)
{
	cf_secret *pw = pass ? cf_secret_from(pass, strlen(pass)) : NULL;
	cf_secret *pem = NULL;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_key_to_pem(key, pw, &pem, &err), &err);
	text_add(t, cf_secret_cdata(pem), cf_secret_len(pem));
	cf_secret_free(pem);
	cf_secret_free(pw);
}

static void text_free(struct text *t)
{
	free(t->buf);
	t->buf = NULL;
	t->len = 0;
}

static cf_status decode(const struct text *t, const char *name, cf_error *err)
{
	X509 *cert = (X509 *)1;
	STACK_OF(X509) *chain = (STACK_OF(X509) *)1;
	EVP_PKEY *key = (EVP_PKEY *)1;
	cf_status rc = cf_cluster_bundle_decode((const unsigned char *)t->buf,
						t->len, name, &cert, &chain,
						&key, err);

	if (rc != CF_OK) {
		/* A refusal returns nothing. */
		assert_null(cert);
		assert_null(chain);
		assert_null(key);
	}
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	return rc;
}

/* ------------------------------------------------------------- names */

static void of_name_splits_key_and_cache_names(void **state)
{
	char buf[CF_NAME_MAX_BYTES + 1];
	char small[4];

	(void)state;
	assert_int_equal(cf_cluster_of_name("cluster-key/web", 1, buf,
					    sizeof(buf)), 1);
	assert_string_equal(buf, "web");
	assert_int_equal(cf_cluster_of_name("cluster/web/a/b.c", 0, buf,
					    sizeof(buf)), 1);
	assert_string_equal(buf, "web");
	assert_int_equal(cf_cluster_of_name("cluster/web-2.x/k", 0, buf,
					    sizeof(buf)), 1);
	assert_string_equal(buf, "web-2.x");

	assert_int_equal(cf_cluster_of_name("cluster-key/web/x", 1, buf,
					    sizeof(buf)), 0);
	assert_string_equal(buf, "");
	assert_int_equal(cf_cluster_of_name("cluster-key/", 1, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("cluster-key/web", 0, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("cluster/web/x", 1, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("cluster/web", 0, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("cluster/web/", 0, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("cluster//x", 0, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("cluster/../x", 0, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("cluster-key/..", 1, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("cluster-key/a b", 1, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("prod/db/password", 0, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("clusterx/web/a", 0, buf,
					    sizeof(buf)), 0);
	assert_int_equal(cf_cluster_of_name("cluster-key/webby", 1, small,
					    sizeof(small)), 0);
	assert_int_equal(cf_cluster_of_name("cluster-key/web", 1, small,
					    sizeof(small)), 1);
	assert_string_equal(small, "web");
}

/* ------------------------------------------------------- certificates */

/*
 * A key whose private scalar is priv_from's and whose public half is
 * pub_from's: OpenSSL takes such a pair as given, and X509_check_private_key
 * compares only the public half.
 */
static EVP_PKEY *franken_key(EVP_PKEY *priv_from, EVP_PKEY *pub_from)
{
	BIGNUM *d = NULL;
	unsigned char pub[65];
	size_t pub_len = 0;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *key = NULL;

	assert_non_null(bld);
	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_get_bn_param(priv_from,
					       OSSL_PKEY_PARAM_PRIV_KEY, &d), 1);
	assert_int_equal(EVP_PKEY_get_octet_string_param(pub_from,
			 OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &pub_len), 1);
	assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld,
			 OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0), 1);
	assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY,
						d), 1);
	assert_int_equal(OSSL_PARAM_BLD_push_octet_string(bld,
			 OSSL_PKEY_PARAM_PUB_KEY, pub, pub_len), 1);
	params = OSSL_PARAM_BLD_to_param(bld);
	assert_non_null(params);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params),
			 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_clear_free(d);
	return key;
}

static void check_cert_accepts_cluster_refuses_others(void **state)
{
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_cluster_check_cert(web, web_key, "web", &err),
		      &err);
	assert_status(CF_OK, cf_cluster_check_cert(web, NULL, NULL, &err), &err);
	assert_status(CF_ERR_POLICY, cf_cluster_check_cert(web, NULL, "db", &err),
		      &err);
	assert_non_null(strstr(err.msg, "\"web\""));
	assert_status(CF_ERR_POLICY, cf_cluster_check_cert(web, db_key, NULL,
							   &err), &err);
	assert_status(CF_ERR_POLICY, cf_cluster_check_cert(agent, agent_key,
							   NULL, &err), &err);
	assert_non_null(strstr(err.msg, "agent"));
	assert_status(CF_ERR_POLICY, cf_cluster_check_cert(enroller, NULL, NULL,
							   &err), &err);
}

static void check_cert_refuses_inconsistent_key(void **state)
{
	EVP_PKEY *franken = franken_key(db_key, web_key);
	struct text t = { 0 };
	cf_error err = { 0 };

	(void)state;
	/* It fools the public-half comparison... */
	assert_int_equal(X509_check_private_key(web, franken), 1);
	/* ...not us, neither directly nor inside a bundle. */
	assert_status(CF_ERR_POLICY, cf_cluster_check_cert(web, franken, NULL,
							   &err), &err);
	assert_non_null(strstr(err.msg, "inconsistent"));
	text_cert(&t, web);
	text_key(&t, franken, NULL);
	assert_status(CF_ERR_POLICY, decode(&t, NULL, &err), &err);
	assert_non_null(strstr(err.msg, "inconsistent"));
	text_free(&t);
	EVP_PKEY_free(franken);
}

static void check_cert_refuses_name_with_slash(void **state)
{
	cf_error err = { 0 };
	EVP_PKEY *key = fx_key();
	X509_REQ *csr = NULL;
	X509 *cert = NULL;
	cf_cert_spec spec = { .kind = CF_KIND_CLUSTER, .cluster = "web/x" };

	(void)state;
	/* The root may issue it; a cluster of that name is still refused. */
	assert_status(CF_OK, cf_csr_new(key, "slash", &csr, &err), &err);
	if (cf_cert_issue(root, root_key, csr, &spec, &cert, &err) == CF_OK) {
		assert_status(CF_ERR_POLICY,
			      cf_cluster_check_cert(cert, key, NULL, &err), &err);
		X509_free(cert);
	}
	X509_REQ_free(csr);
	EVP_PKEY_free(key);
}

/* ------------------------------------------------------------ bundle */

static void bundle_round_trip(void **state)
{
	STACK_OF(X509) *chain = sk_X509_new_null(), *back_chain = NULL;
	cf_secret *bundle = NULL, *again = NULL;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_true(sk_X509_push(chain, enroller));
	assert_true(sk_X509_push(chain, root));
	assert_status(CF_OK, cf_cluster_bundle_encode(web, chain, web_key,
						      &bundle, &err), &err);
	assert_non_null(strstr((const char *)cf_secret_cdata(bundle),
			       "-----BEGIN PRIVATE KEY-----"));
	assert_status(CF_OK, cf_cluster_bundle_decode(cf_secret_cdata(bundle),
						      cf_secret_len(bundle),
						      "web", &cert, &back_chain,
						      &key, &err), &err);
	assert_int_equal(X509_cmp(cert, web), 0);
	assert_int_equal(EVP_PKEY_eq(key, web_key), 1);
	assert_non_null(back_chain);
	assert_int_equal(sk_X509_num(back_chain), 2);
	assert_int_equal(X509_cmp(sk_X509_value(back_chain, 0), enroller), 0);
	assert_int_equal(X509_cmp(sk_X509_value(back_chain, 1), root), 0);
	/* Encoding what was decoded gives the same bytes. */
	assert_status(CF_OK, cf_cluster_bundle_encode(cert, back_chain, key,
						      &again, &err), &err);
	assert_true(cf_secret_equal(bundle, again));
	X509_free(cert);
	EVP_PKEY_free(key);
	sk_X509_pop_free(back_chain, X509_free);
	cf_secret_free(again);
	cf_secret_free(bundle);

	/* No chain: *chain stays NULL; chain == NULL is allowed. */
	assert_status(CF_OK, cf_cluster_bundle_encode(web, NULL, web_key,
						      &bundle, &err), &err);
	back_chain = (STACK_OF(X509) *)1;
	assert_status(CF_OK, cf_cluster_bundle_decode(cf_secret_cdata(bundle),
						      cf_secret_len(bundle),
						      NULL, &cert, &back_chain,
						      &key, &err), &err);
	assert_null(back_chain);
	X509_free(cert);
	EVP_PKEY_free(key);
	assert_status(CF_OK, cf_cluster_bundle_decode(cf_secret_cdata(bundle),
						      cf_secret_len(bundle),
						      "web", &cert, NULL, &key,
						      &err), &err);
	X509_free(cert);
	EVP_PKEY_free(key);
	cf_secret_free(bundle);
	sk_X509_free(chain);
}

static void bundle_encode_refuses_non_cluster(void **state)
{
	cf_secret *bundle = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_ERR_POLICY, cf_cluster_bundle_encode(agent, NULL,
							      agent_key, &bundle,
							      &err), &err);
	assert_null(bundle);
	assert_status(CF_ERR_POLICY, cf_cluster_bundle_encode(web, NULL, db_key,
							      &bundle, &err),
		      &err);
	assert_null(bundle);
}

static void bundle_tolerates_white_space(void **state)
{
	struct text t = { 0 };
	cf_error err = { 0 };

	(void)state;
	text_str(&t, "\n\r\n");
	text_cert(&t, web);
	text_str(&t, "\n  \t\n");
	text_cert(&t, enroller);
	text_key(&t, web_key, NULL);
	text_str(&t, "\n\n");
	assert_status(CF_OK, decode(&t, "web", &err), &err);
	/* The key may come first. */
	text_free(&t);
	text_key(&t, web_key, NULL);
	text_cert(&t, web);
	assert_status(CF_OK, decode(&t, "web", &err), &err);
	text_free(&t);
}

static void bundle_refuses_wrong_contents(void **state)
{
	struct text t = { 0 };
	cf_error err = { 0 };

	(void)state;
	/* No key. */
	text_cert(&t, web);
	text_cert(&t, enroller);
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	assert_non_null(strstr(err.msg, "no private key"));
	text_free(&t);
	/* No certificate. */
	text_key(&t, web_key, NULL);
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	assert_non_null(strstr(err.msg, "no certificate"));
	text_free(&t);
	/* Two keys, even the same one twice. */
	text_cert(&t, web);
	text_key(&t, web_key, NULL);
	text_key(&t, web_key, NULL);
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	assert_non_null(strstr(err.msg, "second private key"));
	text_free(&t);
	/* An encrypted key. */
	text_cert(&t, web);
	text_key(&t, web_key, "passphrase");
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	assert_non_null(strstr(err.msg, "encrypted"));
	text_free(&t);
	/* A key that is not the certificate's. */
	text_cert(&t, web);
	text_key(&t, db_key, NULL);
	assert_status(CF_ERR_POLICY, decode(&t, NULL, &err), &err);
	text_free(&t);
	/* The cluster certificate must come first. */
	text_cert(&t, enroller);
	text_cert(&t, web);
	text_key(&t, web_key, NULL);
	assert_status(CF_ERR_POLICY, decode(&t, NULL, &err), &err);
	text_free(&t);
	/* Not a cluster certificate. */
	text_cert(&t, agent);
	text_key(&t, agent_key, NULL);
	assert_status(CF_ERR_POLICY, decode(&t, NULL, &err), &err);
	text_free(&t);
	/* Another cluster than asked for. */
	text_cert(&t, web);
	text_key(&t, web_key, NULL);
	assert_status(CF_ERR_POLICY, decode(&t, "db", &err), &err);
	assert_non_null(strstr(err.msg, "not \"db\""));
	text_free(&t);
	/* A key that is not P-256. */
	{
		EVP_PKEY *p384 = fx_other_key("P-384");

		text_cert(&t, web);
		text_key(&t, p384, NULL);
		assert_status(CF_ERR_POLICY, decode(&t, NULL, &err), &err);
		text_free(&t);
		EVP_PKEY_free(p384);
	}
}

static void bundle_refuses_other_blocks(void **state)
{
	struct text t = { 0 };
	cf_error err = { 0 };
	BIO *bio = BIO_new(BIO_s_mem());
	char *mem = NULL;
	long n;

	(void)state;
	/* The key in the traditional "EC PRIVATE KEY" form. */
	assert_true(PEM_write_bio_PrivateKey_traditional(bio, web_key, NULL,
							 NULL, 0, NULL, NULL));
	n = BIO_get_mem_data(bio, &mem);
	text_cert(&t, web);
	text_add(&t, mem, (size_t)n);
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	assert_non_null(strstr(err.msg, "EC PRIVATE KEY"));
	text_free(&t);
	BIO_free(bio);
	/* A CRL among the certificates. */
	{
		X509_CRL *crl = fx_crl(root, root_key, NULL, NULL);
		unsigned char *pem = NULL;
		size_t len = 0;

		assert_status(CF_OK, cf_crl_to_pem(crl, &pem, &len, &err), &err);
		text_cert(&t, web);
		text_add(&t, pem, len);
		text_key(&t, web_key, NULL);
		assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
		assert_non_null(strstr(err.msg, "X509 CRL"));
		text_free(&t);
		OPENSSL_free(pem);
		X509_CRL_free(crl);
	}
	/* PEM headers (the legacy encryption's Proc-Type). */
	{
		struct text c = { 0 };
		char *nl;

		text_cert(&c, web);
		nl = strchr(c.buf, '\n');
		assert_non_null(nl);
		text_add(&t, c.buf, (size_t)(nl - c.buf) + 1);
		text_str(&t, "Proc-Type: 4,ENCRYPTED\n\n");
		text_str(&t, nl + 1);
		text_key(&t, web_key, NULL);
		assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
		assert_non_null(strstr(err.msg, "headers"));
		text_free(&t);
		text_free(&c);
	}
}

static void bundle_refuses_garbage(void **state)
{
	struct text good = { 0 }, t = { 0 };
	cf_error err = { 0 };
	char *second;

	(void)state;
	text_cert(&good, web);
	text_cert(&good, enroller);
	text_key(&good, web_key, NULL);
	assert_status(CF_OK, decode(&good, "web", &err), &err);

	text_str(&t, "hello");
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	text_free(&t);
	t.len = 0;
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	/* Text before, after, between blocks; a BEGIN not starting a line. */
	text_str(&t, "comment\n");
	text_add(&t, good.buf, good.len);
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	assert_non_null(strstr(err.msg, "byte 0"));
	text_free(&t);
	text_add(&t, good.buf, good.len);
	text_str(&t, "trailer");
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	text_free(&t);
	text_add(&t, good.buf, good.len);
	text_str(&t, "-----BEGIN CERTIFICATE-----\n");
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	text_free(&t);
	second = strstr(good.buf + 1, "-----BEGIN");
	assert_non_null(second);
	text_add(&t, good.buf, (size_t)(second - good.buf));
	text_str(&t, "junk\n");
	text_str(&t, second);
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	text_free(&t);
	text_str(&t, "  ");
	text_add(&t, good.buf, good.len);
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	text_free(&t);
	/* Text on a BEGIN or END line. */
	{
		char *end = strstr(good.buf, "-----END CERTIFICATE-----");

		assert_non_null(end);
		end += strlen("-----END CERTIFICATE-----");
		text_add(&t, good.buf, (size_t)(end - good.buf));
		text_str(&t, "junk");
		text_str(&t, end);
		assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
		text_free(&t);
		text_str(&t, "-----BEGIN junk\njunk\n");
		text_add(&t, good.buf, good.len);
		assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
		text_free(&t);
		text_str(&t, "-----BEGIN CERTIFICATE----- junk\n");
		text_str(&t, strchr(good.buf, '\n') + 1);
		assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
		text_free(&t);
	}
	/* A NUL byte, even at the end. */
	text_add(&t, good.buf, good.len);
	text_add(&t, "", 1);
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	text_free(&t);
	/* Truncated anywhere. */
	for (size_t cut = 1; cut < good.len; cut += good.len / 37 + 1) {
		t.buf = good.buf;
		t.len = cut;
		/* A cut right after a complete block may still hold all three. */
		if (decode(&t, NULL, &err) == CF_OK)
			fail_msg("a bundle cut at %zu of %zu was accepted", cut,
				 good.len);
		assert_true(err.code == CF_ERR_PARSE || err.code == CF_ERR_POLICY);
	}
	t.buf = NULL;
	t.len = 0;
	/* A flipped base64 character inside the key block. */
	{
		char *key = strstr(good.buf, "PRIVATE KEY-----\n");

		assert_non_null(key);
		text_add(&t, good.buf, good.len);
		key = t.buf + (key - good.buf) + 40;
		*key = *key == 'A' ? 'B' : 'A';
		assert_int_not_equal(decode(&t, NULL, &err), CF_OK);
		text_free(&t);
	}
	/* Too large, even if only white space. */
	t.buf = malloc(CF_CLUSTER_BUNDLE_MAX + 1);
	assert_non_null(t.buf);
	memset(t.buf, '\n', CF_CLUSTER_BUNDLE_MAX + 1);
	t.len = CF_CLUSTER_BUNDLE_MAX + 1;
	assert_status(CF_ERR_TOO_LARGE, decode(&t, NULL, &err), &err);
	t.len = CF_CLUSTER_BUNDLE_MAX;
	assert_status(CF_ERR_PARSE, decode(&t, NULL, &err), &err);
	text_free(&t);
	text_free(&good);
}

/* ------------------------------------------------------------- proof */

static void proof_round_trip(void **state)
{
	char proof[CF_CLUSTER_PROOF_MAX + 1];
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_cluster_proof(web_key, tenant, web_fp, agent_fp,
					      proof, &err), &err);
	assert_true(strlen(proof) > 0 && strlen(proof) <= CF_CLUSTER_PROOF_MAX);
	assert_null(strchr(proof, '\n'));
	assert_status(CF_OK, cf_cluster_proof_check(web, tenant, agent_fp, proof,
						    &err), &err);
}

static void proof_refuses_other_context(void **state)
{
	char proof[CF_CLUSTER_PROOF_MAX + 1], bad[CF_CLUSTER_PROOF_MAX + 1];
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_cluster_proof(web_key, tenant, web_fp, agent_fp,
					      proof, &err), &err);
	/* For another member, tenant, cluster certificate. */
	assert_status(CF_ERR_SIGNATURE, cf_cluster_proof_check(web, tenant,
							       web_fp, proof,
							       &err), &err);
	assert_status(CF_ERR_SIGNATURE, cf_cluster_proof_check(web, agent_fp,
							       agent_fp, proof,
							       &err), &err);
	assert_status(CF_ERR_SIGNATURE, cf_cluster_proof_check(db, tenant,
							       agent_fp, proof,
							       &err), &err);
	/* Made with the right key but for another cluster fingerprint. */
	assert_status(CF_OK, cf_cluster_proof(web_key, tenant, db_fp, agent_fp,
					      bad, &err), &err);
	assert_status(CF_ERR_SIGNATURE, cf_cluster_proof_check(web, tenant,
							       agent_fp, bad,
							       &err), &err);
	/* Made with a key that is not the cluster's. */
	assert_status(CF_OK, cf_cluster_proof(db_key, tenant, web_fp, agent_fp,
					      bad, &err), &err);
	assert_status(CF_ERR_SIGNATURE, cf_cluster_proof_check(web, tenant,
							       agent_fp, bad,
							       &err), &err);
	/* Against a certificate that is no cluster's. */
	assert_status(CF_ERR_POLICY, cf_cluster_proof_check(agent, tenant,
							    agent_fp, proof,
							    &err), &err);
}

static void proof_refuses_garbage(void **state)
{
	char proof[CF_CLUSTER_PROOF_MAX + 1], edit[CF_CLUSTER_PROOF_MAX + 2];
	char big[CF_CLUSTER_PROOF_MAX + 8];
	char upper[65];
	cf_error err = { 0 };
	size_t n;

	(void)state;
	assert_status(CF_OK, cf_cluster_proof(web_key, tenant, web_fp, agent_fp,
					      proof, &err), &err);
	n = strlen(proof);
	assert_status(CF_ERR_PARSE, cf_cluster_proof_check(web, tenant, agent_fp,
							   "", &err), &err);
	assert_status(CF_ERR_PARSE, cf_cluster_proof_check(web, tenant, agent_fp,
							   "not base64!", &err),
		      &err);
	assert_status(CF_ERR_PARSE, cf_cluster_proof_check(web, tenant, agent_fp,
							   "AAAA", &err), &err);
	assert_status(CF_ERR_PARSE, cf_cluster_proof_check(web, tenant, agent_fp,
							   NULL, &err), &err);
	snprintf(edit, sizeof(edit), "%s ", proof);
	assert_status(CF_ERR_PARSE, cf_cluster_proof_check(web, tenant, agent_fp,
							   edit, &err), &err);
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_status(CF_ERR_PARSE, cf_cluster_proof_check(web, tenant, agent_fp,
							   big, &err), &err);
	/* One character changed: parses, does not verify. */
	snprintf(edit, sizeof(edit), "%s", proof);
	edit[n / 2] = edit[n / 2] == 'B' ? 'C' : 'B';
	assert_int_not_equal(cf_cluster_proof_check(web, tenant, agent_fp, edit,
						    &err), CF_OK);
	/* Fingerprints must be lowercase hex of the right length. */
	snprintf(upper, sizeof(upper), "%s", agent_fp);
	for (size_t i = 0; upper[i]; i++)
		if (upper[i] >= 'a' && upper[i] <= 'f')
			upper[i] = (char)(upper[i] - 'a' + 'A');
	assert_status(CF_ERR_USAGE, cf_cluster_proof_check(web, tenant, upper,
							   proof, &err), &err);
	assert_status(CF_ERR_USAGE, cf_cluster_proof(web_key, tenant, web_fp,
						     "abc", proof, &err), &err);
	assert_status(CF_ERR_USAGE, cf_cluster_proof(web_key, "x\ny", web_fp,
						     agent_fp, proof, &err), &err);
}

/* ----------------------------------------------------------- PKCS#12 */

static cf_secret *pass_of(const char *text)
{
	cf_secret *s = cf_secret_from(text, strlen(text));

	assert_non_null(s);
	return s;
}

static cf_status import(const unsigned char *der, size_t len, const char *pass,
			const char *name, cf_error *err)
{
	cf_secret *pw = pass_of(pass);
	X509 *cert = (X509 *)1;
	STACK_OF(X509) *chain = (STACK_OF(X509) *)1;
	EVP_PKEY *key = (EVP_PKEY *)1;
	cf_status rc = cf_cluster_p12_import(der, len, pw, name, &cert, &chain,
					     &key, err);

	if (rc != CF_OK) {
		assert_null(cert);
		assert_null(chain);
		assert_null(key);
	}
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	cf_secret_free(pw);
	return rc;
}

/* A PKCS#12 made directly with OpenSSL, as other tools would. */
static unsigned char *make_p12(X509 *cert, EVP_PKEY *key, int key_nid,
			       int cert_nid, int iter, const EVP_MD *mac_md,
			       size_t *len)
{
	PKCS12 *p12 = PKCS12_create("sesame", "test", key, cert, NULL, key_nid,
				    cert_nid, iter, -1, 0);
	unsigned char *der = NULL;
	int n;

	assert_non_null(p12);
	if (mac_md != NULL)
		assert_int_equal(PKCS12_set_mac(p12, "sesame", -1, NULL, 0, iter,
						mac_md), 1);
	n = i2d_PKCS12(p12, &der);
	assert_true(n > 0);
	*len = (size_t)n;
	PKCS12_free(p12);
	return der;
}

/* Reads back one bag encryption: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC. */
static void assert_modern_pbe(const X509_ALGOR *alg)
{
	PBE2PARAM *pbe2;
	PBKDF2PARAM *kdf;

	assert_int_equal(OBJ_obj2nid(alg->algorithm), NID_pbes2);
	pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM),
					 alg->parameter);
	assert_non_null(pbe2);
	assert_int_equal(OBJ_obj2nid(pbe2->keyfunc->algorithm), NID_id_pbkdf2);
	assert_int_equal(OBJ_obj2nid(pbe2->encryption->algorithm),
			 NID_aes_256_cbc);
	kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM),
					pbe2->keyfunc->parameter);
	assert_non_null(kdf);
	assert_non_null(kdf->prf);
	assert_int_equal(OBJ_obj2nid(kdf->prf->algorithm), NID_hmacWithSHA256);
	assert_int_equal(ASN1_INTEGER_get(kdf->iter), CF_CLUSTER_P12_ITER);
	PBKDF2PARAM_free(kdf);
	PBE2PARAM_free(pbe2);
}

static void assert_exported_algorithms(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
	const X509_ALGOR *mac_alg = NULL;
	const ASN1_INTEGER *mac_iter = NULL;
	STACK_OF(PKCS7) *safes;
	int shrouded = 0, encrypted = 0;

	assert_non_null(p12);
	assert_true(PKCS12_mac_present(p12));
	PKCS12_get0_mac(NULL, &mac_alg, NULL, &mac_iter, p12);
	assert_int_equal(OBJ_obj2nid(mac_alg->algorithm), NID_sha256);
	assert_int_equal(ASN1_INTEGER_get(mac_iter), CF_CLUSTER_P12_ITER);
	safes = PKCS12_unpack_authsafes(p12);
	assert_non_null(safes);
	for (int i = 0; i < sk_PKCS7_num(safes); i++) {
		PKCS7 *p7 = sk_PKCS7_value(safes, i);
		STACK_OF(PKCS12_SAFEBAG) *bags;

		if (OBJ_obj2nid(p7->type) == NID_pkcs7_encrypted) {
			assert_modern_pbe(p7->d.encrypted->enc_data->algorithm);
			encrypted++;
			continue;
		}
		assert_int_equal(OBJ_obj2nid(p7->type), NID_pkcs7_data);
		bags = PKCS12_unpack_p7data(p7);
		assert_non_null(bags);
		for (int j = 0; j < sk_PKCS12_SAFEBAG_num(bags); j++) {
			const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, j);
			const X509_ALGOR *alg = NULL;

			/* No key travels unencrypted. */
			assert_int_not_equal(PKCS12_SAFEBAG_get_nid(bag), NID_keyBag);
			if (PKCS12_SAFEBAG_get_nid(bag) != NID_pkcs8ShroudedKeyBag)
				continue;
			X509_SIG_get0(PKCS12_SAFEBAG_get0_pkcs8(bag), &alg, NULL);
			assert_modern_pbe(alg);
			shrouded++;
		}
		sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	}
	assert_int_equal(shrouded, 1);
	assert_int_equal(encrypted, 1);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	PKCS12_free(p12);
}

static void p12_round_trip(void **state)
{
	STACK_OF(X509) *chain = sk_X509_new_null(), *back_chain = NULL;
	cf_secret *pw = pass_of("correct horse battery staple");
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	PKCS12 *p12;
	cf_error err = { 0 };

	(void)state;
	assert_true(sk_X509_push(chain, enroller));
	assert_true(sk_X509_push(chain, root));
	assert_status(CF_OK, cf_cluster_p12_export(web, chain, web_key, pw, &der,
						   &len, &err), &err);
	assert_non_null(der);
	assert_true(len > 0 && len <= CF_CLUSTER_P12_MAX);
	assert_exported_algorithms(der, len);
	assert_status(CF_OK, cf_cluster_p12_import(der, len, pw, "web", &cert,
						   &back_chain, &key, &err),
		      &err);
	assert_int_equal(X509_cmp(cert, web), 0);
	assert_int_equal(EVP_PKEY_eq(key, web_key), 1);
	assert_non_null(back_chain);
	assert_int_equal(sk_X509_num(back_chain), 2);
	X509_free(cert);
	EVP_PKEY_free(key);
	sk_X509_pop_free(back_chain, X509_free);

	/* OpenSSL's own reader agrees, friendly name included. */
	p = der;
	p12 = d2i_PKCS12(NULL, &p, (long)len);
	assert_non_null(p12);
	assert_int_equal(PKCS12_parse(p12, "correct horse battery staple", &key,
				      &cert, NULL), 1);
	assert_string_equal((const char *)X509_alias_get0(cert, NULL),
			    "coffer cluster web");
	X509_free(cert);
	EVP_PKEY_free(key);
	PKCS12_free(p12);

	/* Wrong password, other cluster, garbage, truncated, trailing. */
	assert_status(CF_ERR_PASSPHRASE, import(der, len, "wrong", NULL, &err),
		      &err);
	assert_status(CF_ERR_PASSPHRASE, import(der, len, "", NULL, &err), &err);
	assert_status(CF_ERR_POLICY, import(der, len,
					    "correct horse battery staple",
					    "db", &err), &err);
	assert_status(CF_ERR_PARSE, import((const unsigned char *)"hello", 5,
					   "x", NULL, &err), &err);
	assert_status(CF_ERR_PARSE, import(der, len - 1, "x", NULL, &err), &err);
	assert_status(CF_ERR_PARSE, import(der, len / 2, "x", NULL, &err), &err);
	{
		unsigned char *longer = malloc(len + 1);

		assert_non_null(longer);
		memcpy(longer, der, len);
		longer[len] = 0;
		assert_status(CF_ERR_PARSE, import(longer, len + 1, "x", NULL,
						   &err), &err);
		free(longer);
	}
	assert_status(CF_ERR_TOO_LARGE, import(der, CF_CLUSTER_P12_MAX + 1, "x",
					       NULL, &err), &err);
	OPENSSL_free(der);
	sk_X509_free(chain);
	cf_secret_free(pw);
}

static void p12_export_refuses(void **state)
{
	cf_secret *pw = pass_of("pw"), *empty = cf_secret_new(8);
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_ERR_POLICY, cf_cluster_p12_export(agent, NULL,
							   agent_key, pw, &der,
							   &len, &err), &err);
	assert_status(CF_ERR_POLICY, cf_cluster_p12_export(web, NULL, db_key, pw,
							   &der, &len, &err),
		      &err);
	assert_status(CF_ERR_USAGE, cf_cluster_p12_export(web, NULL, web_key,
							  empty, &der, &len,
							  &err), &err);
	assert_null(der);
	cf_secret_free(pw);
	cf_secret_free(empty);
}

static void p12_refuses_legacy(void **state)
{
	unsigned char *der;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	/* The old default: 3DES key, SHA-1 MAC. */
	der = make_p12(web, web_key, NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
		       NID_pbe_WithSHA1And3_Key_TripleDES_CBC, 2048, EVP_sha1(),
		       &len);
	assert_status(CF_ERR_POLICY, import(der, len, "sesame", NULL, &err),
		      &err);
	assert_non_null(strstr(err.msg, "coffer cluster export"));
	OPENSSL_free(der);
	/* 3DES bags under a SHA-256 MAC: the key's algorithm is named. */
	der = make_p12(web, web_key, NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
		       NID_aes_256_cbc, 2048, EVP_sha256(), &len);
	assert_status(CF_ERR_POLICY, import(der, len, "sesame", NULL, &err),
		      &err);
	assert_non_null(strstr(err.msg, "TripleDES"));
	assert_non_null(strstr(err.msg, "private key"));
	OPENSSL_free(der);
	der = make_p12(web, web_key, NID_aes_256_cbc,
		       NID_pbe_WithSHA1And3_Key_TripleDES_CBC, 2048, EVP_sha256(),
		       &len);
	assert_status(CF_ERR_POLICY, import(der, len, "sesame", NULL, &err),
		      &err);
	assert_non_null(strstr(err.msg, "certificate"));
	OPENSSL_free(der);
	/* AES bags under a SHA-1 MAC. */
	der = make_p12(web, web_key, NID_aes_256_cbc, NID_aes_256_cbc, 2048,
		       EVP_sha1(), &len);
	assert_status(CF_ERR_POLICY, import(der, len, "sesame", NULL, &err),
		      &err);
	assert_non_null(strstr(err.msg, "sha1"));
	OPENSSL_free(der);
	/* No MAC at all. */
	der = make_p12(web, web_key, NID_aes_256_cbc, NID_aes_256_cbc, 2048, NULL,
		       &len);
	assert_status(CF_ERR_POLICY, import(der, len, "sesame", NULL, &err),
		      &err);
	assert_non_null(strstr(err.msg, "MAC"));
	OPENSSL_free(der);
	/* The modern form with few iterations and the same calls: accepted. */
	der = make_p12(web, web_key, NID_aes_256_cbc, NID_aes_256_cbc, 2048,
		       EVP_sha256(), &len);
	assert_status(CF_OK, import(der, len, "sesame", "web", &err), &err);
	OPENSSL_free(der);
}

static void p12_refuses_huge_iterations(void **state)
{
	PKCS12 *p12 = PKCS12_create("sesame", "test", web_key, web, NULL,
				    NID_aes_256_cbc, NID_aes_256_cbc, 1000, -1, 0);
	const ASN1_INTEGER *iter = NULL;
	unsigned char *der = NULL;
	cf_error err = { 0 };
	int n;

	(void)state;
	assert_non_null(p12);
	assert_int_equal(PKCS12_set_mac(p12, "sesame", -1, NULL, 0, 1000,
					EVP_sha256()), 1);
	/* Edit the count afterwards: refused before the MAC is computed. */
	PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
	assert_non_null(iter);
	assert_int_equal(ASN1_INTEGER_set((ASN1_INTEGER *)iter,
					  CF_CLUSTER_P12_ITER_MAX + 1L), 1);
	n = i2d_PKCS12(p12, &der);
	assert_true(n > 0);
	assert_status(CF_ERR_POLICY, import(der, (size_t)n, "sesame", NULL, &err),
		      &err);
	assert_non_null(strstr(err.msg, "iteration"));
	OPENSSL_free(der);
	PKCS12_free(p12);
}

static void p12_refuses_non_cluster(void **state)
{
	unsigned char *der;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	der = make_p12(agent, agent_key, NID_aes_256_cbc, NID_aes_256_cbc, 2048,
		       EVP_sha256(), &len);
	assert_status(CF_ERR_POLICY, import(der, len, "sesame", NULL, &err),
		      &err);
	OPENSSL_free(der);
}

/* --------------------------------------------------- openssl program */

static int have_openssl(void)
{
	char *const argv[] = { "openssl", "version", NULL };

	return fx_run(argv, NULL) == 0;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = malloc(CF_CLUSTER_P12_MAX + 1);

	assert_non_null(f);
	assert_non_null(buf);
	*len = fread(buf, 1, CF_CLUSTER_P12_MAX + 1, f);
	fclose(f);
	return buf;
}

static void p12_interoperates_with_openssl(void **state)
{
	char dir[] = "/tmp/test_cluster.XXXXXX";
	char path[4][64], passin[80], line[256];
	struct text t = { 0 };
	cf_secret *pw = pass_of("s3same");
	unsigned char *der = NULL;
	size_t len = 0;
	int mac_sha256 = 0, prf_sha256 = 0;
	FILE *out;
	cf_error err = { 0 };

	(void)state;
	if (!have_openssl())
		skip();
	assert_non_null(mkdtemp(dir));
	snprintf(path[0], sizeof(path[0]), "%s/bundle.pem", dir);
	snprintf(path[1], sizeof(path[1]), "%s/pass", dir);
	snprintf(path[2], sizeof(path[2]), "%s/f.p12", dir);
	snprintf(path[3], sizeof(path[3]), "%s/info.txt", dir);
	snprintf(passin, sizeof(passin), "file:%s", path[1]);
	text_cert(&t, web);
	text_key(&t, web_key, NULL);
	write_file(path[0], t.buf, t.len);
	write_file(path[1], "s3same\n", 7);
	text_free(&t);

	/* What `openssl pkcs12 -export` makes with the documented flags. */
	{
		char *const argv[] = { "openssl", "pkcs12", "-export",
			"-keypbe", "AES-256-CBC", "-certpbe", "AES-256-CBC",
			"-macalg", "sha256", "-in", path[0], "-passout", passin,
			"-out", path[2], NULL };

		assert_int_equal(fx_run(argv, NULL), 0);
	}
	der = read_file(path[2], &len);
	assert_status(CF_OK, import(der, len, "s3same", "web", &err), &err);
	free(der);

	/* What we make, as openssl reads it. */
	assert_status(CF_OK, cf_cluster_p12_export(web, NULL, web_key, pw, &der,
						   &len, &err), &err);
	write_file(path[2], der, len);
	OPENSSL_free(der);
	{
		char *const argv[] = { "openssl", "pkcs12", "-info", "-noout",
			"-in", path[2], "-passin", passin, NULL };

		assert_int_equal(fx_run(argv, path[3]), 0);
	}
	out = fopen(path[3], "r");
	assert_non_null(out);
	while (fgets(line, sizeof(line), out) != NULL) {
		if (strstr(line, "MAC: sha256") != NULL)
			mac_sha256 = 1;
		if (strstr(line, "PRF hmacWithSHA256") != NULL &&
		    strstr(line, "AES-256-CBC") != NULL)
			prf_sha256++;
		assert_null(strstr(line, "SHA1"));
	}
	fclose(out);
	assert_int_equal(mac_sha256, 1);
	assert_int_equal(prf_sha256, 2);
	cf_secret_free(pw);
	fx_remove_tree(dir);
}

/* Only who could have enrolled an agent may give it a cluster key. */
static void may_give_needs_a_rule_on_the_agents_groups(void **state)
{
	EVP_PKEY *k1 = fx_key(), *k2 = fx_key(), *k3 = fx_key(), *k4 = fx_key();
	X509 *dave = fx_holder(root, root_key, k1, CF_KIND_ENROLLER, "dave",
			       "agent.enroll:cache*", NULL);
	X509 *admin = fx_holder(root, root_key, k2, CF_KIND_OPERATOR, "root-op",
				"admin:**", NULL);
	X509 *glob = fx_holder(root, root_key, k3, CF_KIND_ENROLLER, "carol",
			       "agent.enroll:w*", NULL);
	cf_cert_spec spec = { .kind = CF_KIND_AGENT };
	X509 *loner = fx_issue(root, root_key, k4, "loner", &spec);
	cf_error err = { 0 };

	(void)state;
	/* bob covers group web; carol by a glob; an admin covers all. */
	assert_status(CF_OK, cf_cluster_may_give(enroller, agent, &err), &err);
	assert_status(CF_OK, cf_cluster_may_give(glob, agent, &err), &err);
	assert_status(CF_OK, cf_cluster_may_give(admin, agent, &err), &err);
	/* dave may make cache clusters, not enroll web's agents. */
	assert_status(CF_ERR_POLICY, cf_cluster_may_give(dave, agent, &err),
		      &err);
	assert_non_null(strstr(err.msg, "\"dave\""));
	assert_non_null(strstr(err.msg, "\"web-1\""));
	/* An agent without groups: only a rule covering every name. */
	assert_status(CF_OK, cf_cluster_may_give(admin, loner, &err), &err);
	assert_status(CF_ERR_POLICY, cf_cluster_may_give(enroller, loner, &err),
		      &err);
	assert_status(CF_ERR_POLICY, cf_cluster_may_give(glob, loner, &err),
		      &err);
	X509_free(dave);
	X509_free(admin);
	X509_free(glob);
	X509_free(loner);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k3);
	EVP_PKEY_free(k4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(may_give_needs_a_rule_on_the_agents_groups),
		cmocka_unit_test(of_name_splits_key_and_cache_names),
		cmocka_unit_test(check_cert_accepts_cluster_refuses_others),
		cmocka_unit_test(check_cert_refuses_name_with_slash),
		cmocka_unit_test(check_cert_refuses_inconsistent_key),
		cmocka_unit_test(bundle_round_trip),
		cmocka_unit_test(bundle_encode_refuses_non_cluster),
		cmocka_unit_test(bundle_tolerates_white_space),
		cmocka_unit_test(bundle_refuses_wrong_contents),
		cmocka_unit_test(bundle_refuses_other_blocks),
		cmocka_unit_test(bundle_refuses_garbage),
		cmocka_unit_test(proof_round_trip),
		cmocka_unit_test(proof_refuses_other_context),
		cmocka_unit_test(proof_refuses_garbage),
		cmocka_unit_test(p12_round_trip),
		cmocka_unit_test(p12_export_refuses),
		cmocka_unit_test(p12_refuses_legacy),
		cmocka_unit_test(p12_refuses_huge_iterations),
		cmocka_unit_test(p12_refuses_non_cluster),
		cmocka_unit_test(p12_interoperates_with_openssl),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
