/*
 * test_trust.c - chain verification against one tenant root (trust.h).
 *
 * Some certificates here are built by hand with raw OpenSSL calls,
 * because they are exactly what cf_cert_issue refuses to make (an enroller
 * issuing beyond its scope, an expired certificate): a verifier must
 * refuse them even though their signatures are good.  Each forged shape
 * is also made once within the rules, and accepted, so that a refusal
 * cannot come from a defect of the forging itself.
 */
#include "fixture.h"

#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "trust.h"

static EVP_PKEY *root_key, *enroller_key, *other_key;
static X509 *root, *enroller, *other_root;

static int group_setup(void **state)
{
	if (fx_group_setup(state) != 0)
		return -1;
	root_key = fx_key();
	root = fx_root(root_key, "Acme", 0);
	enroller_key = fx_key();
	enroller = fx_holder(root, root_key, enroller_key, CF_KIND_ENROLLER,
			     "enroll-web", "agent.enroll:web-*", NULL);
	other_key = fx_key();
	other_root = fx_root(other_key, "Other", 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	X509_free(root);
	X509_free(enroller);
	X509_free(other_root);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(enroller_key);
	EVP_PKEY_free(other_key);
	return 0;
}

static cf_trust *trust_of(X509 *anchor, X509_CRL *crl)
{
	cf_error err = { 0 };
	cf_trust *trust = NULL;

	assert_status(CF_OK, cf_trust_new(anchor, crl, &trust, &err), &err);
	assert_non_null(trust);
	return trust;
}

static STACK_OF(X509) *stack_of(X509 *cert)
{
	STACK_OF(X509) *sk = sk_X509_new_null();

	assert_non_null(sk);
	assert_true(sk_X509_push(sk, cert) > 0);
	return sk;
}

/*
 * A certificate for key signed by issuer with none of cf_cert_issue's
 * checks: kind and groups as given (NULL: no extension), valid from
 * from_days to until_days relative to now.
 */
static X509 *forge(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
		   const char *cn, const char *kind, const char *groups,
		   long from_days, long until_days)
{
	X509 *cert = X509_new();
	X509_NAME *name = X509_NAME_new();
	unsigned char serial[16];
	BIGNUM *bn;
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	assert_non_null(cert);
	assert_non_null(name);
	assert_true(X509_set_version(cert, 2));
	assert_int_equal(RAND_bytes(serial, sizeof(serial)), 1);
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)));
	BN_free(bn);
	assert_true(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
					       (const unsigned char *)"Acme", -1, -1, 0));
	assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
					       (const unsigned char *)cn, -1, -1, 0));
	assert_true(X509_set_subject_name(cert, name));
	assert_true(X509_set_issuer_name(cert, X509_get_subject_name(issuer)));
	assert_true(X509_set_pubkey(cert, key));
	assert_non_null(X509_time_adj_ex(X509_getm_notBefore(cert), (int)from_days,
					 0, NULL));
	assert_non_null(X509_time_adj_ex(X509_getm_notAfter(cert), (int)until_days,
					 0, NULL));
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
				  "critical,CA:FALSE");
	assert_non_null(ext);
	assert_true(X509_add_ext(cert, ext, -1));
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier,
				  "keyid:always");
	assert_non_null(ext);
	assert_true(X509_add_ext(cert, ext, -1));
	X509_EXTENSION_free(ext);
	if (kind != NULL)
		fx_add_utf8_ext(cert, cf_nid_kind(), kind);
	if (groups != NULL)
		fx_add_utf8_ext(cert, cf_nid_groups(), groups);
	assert_true(X509_sign(cert, issuer_key, EVP_sha256()) > 0);
	X509_NAME_free(name);
	return cert;
}

static void root_to_agent(void **state)
{
	EVP_PKEY *key = fx_key();
	X509 *agent = fx_agent(root, root_key, key, "web-1", "web");
	cf_trust *trust = trust_of(root, NULL);
	char fp[65];
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_trust_verify(trust, agent, NULL, "recipient", &err),
		      &err);
	/* The root verifies as itself. */
	assert_status(CF_OK, cf_trust_verify(trust, root, NULL, "root", &err), &err);
	/* The tenant is the root's fingerprint. */
	assert_status(CF_OK, cf_cert_fingerprint(root, fp, &err), &err);
	assert_string_equal(cf_trust_tenant(trust), fp);
	assert_ptr_equal(cf_trust_root(trust), root);
	cf_trust_free(trust);
	cf_trust_free(NULL);
	X509_free(agent);
	EVP_PKEY_free(key);
}

static void root_to_enroller_to_agent(void **state)
{
	EVP_PKEY *key = fx_key();
	X509 *agent = fx_agent(enroller, enroller_key, key, "web-7", "web-eu");
	STACK_OF(X509) *chain = stack_of(enroller);
	cf_trust *trust = trust_of(root, NULL);
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_trust_verify(trust, agent, chain, "recipient", &err),
		      &err);
	assert_status(CF_OK, cf_trust_verify(trust, enroller, NULL, "enroller", &err),
		      &err);
	/* Without the enroller at hand there is no chain. */
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, agent, NULL,
							"recipient web-7", &err), &err);
	assert_non_null(strstr(err.msg, "recipient web-7"));
	sk_X509_free(chain);
	cf_trust_free(trust);
	X509_free(agent);
	EVP_PKEY_free(key);
}

static void other_root_untrusted(void **state)
{
	EVP_PKEY *key = fx_key(), *twin_key = fx_key();
	/* Same subject as our root, another key. */
	X509 *twin = fx_root(twin_key, "Acme", 0);
	X509 *foreign = fx_agent(other_root, other_key, key, "web-1", "web");
	X509 *imposter = fx_agent(twin, twin_key, key, "web-1", "web");
	cf_trust *trust = trust_of(root, NULL);
	STACK_OF(X509) *with_root = stack_of(other_root);
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, foreign, NULL, "r",
							&err), &err);
	/* Handing the other root over as an intermediate changes nothing. */
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, foreign, with_root,
							"r", &err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, other_root, NULL, "r",
							&err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, imposter, NULL, "r",
							&err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, twin, NULL, "r", &err),
		      &err);
	sk_X509_free(with_root);
	cf_trust_free(trust);
	X509_free(twin);
	X509_free(foreign);
	X509_free(imposter);
	EVP_PKEY_free(key);
	EVP_PKEY_free(twin_key);
}

static void revoked_leaf_and_enroller(void **state)
{
	EVP_PKEY *k1 = fx_key(), *k2 = fx_key(), *k3 = fx_key(), *ek = fx_key();
	X509 *bad_enroller = fx_holder(root, root_key, ek, CF_KIND_ENROLLER,
				       "enroll-old", "agent.enroll:**", NULL);
	X509 *revoked = fx_agent(root, root_key, k1, "web-1", "web");
	X509 *fine = fx_agent(root, root_key, k2, "web-2", "web");
	X509 *orphan = fx_agent(bad_enroller, ek, k3, "web-3", "web");
	X509 *sibling = fx_agent(enroller, enroller_key, k3, "web-4", "web-4");
	X509_CRL *crl = fx_crl(root, root_key, revoked, bad_enroller);
	cf_trust *trust = trust_of(root, crl);
	cf_trust *unrevoked = trust_of(root, NULL);
	STACK_OF(X509) *via_bad = stack_of(bad_enroller);
	STACK_OF(X509) *via_good = stack_of(enroller);
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_ERR_REVOKED, cf_trust_verify(trust, revoked, NULL,
						      "recipient", &err), &err);
	assert_non_null(strstr(err.msg, "web-1"));
	assert_status(CF_ERR_REVOKED, cf_trust_verify(trust, orphan, via_bad,
						      "recipient", &err), &err);
	assert_non_null(strstr(err.msg, "enroll-old"));
	assert_status(CF_ERR_REVOKED, cf_trust_verify(trust, bad_enroller, NULL,
						      "enroller", &err), &err);
	/* Only what the CRL lists is refused. */
	assert_status(CF_OK, cf_trust_verify(trust, fine, NULL, "r", &err), &err);
	assert_status(CF_OK, cf_trust_verify(trust, sibling, via_good, "r", &err),
		      &err);
	/* And without the CRL the same certificates are good. */
	assert_status(CF_OK, cf_trust_verify(unrevoked, revoked, NULL, "r", &err),
		      &err);
	assert_status(CF_OK, cf_trust_verify(unrevoked, orphan, via_bad, "r", &err),
		      &err);
	sk_X509_free(via_bad);
	sk_X509_free(via_good);
	cf_trust_free(trust);
	cf_trust_free(unrevoked);
	X509_CRL_free(crl);
	X509_free(bad_enroller);
	X509_free(revoked);
	X509_free(fine);
	X509_free(orphan);
	X509_free(sibling);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k3);
	EVP_PKEY_free(ek);
}

static void enroller_beyond_scope_untrusted(void **state)
{
	EVP_PKEY *key = fx_key();
	/* The enroller may enroll web-*; these it signed anyway. */
	X509 *within = forge(enroller, enroller_key, key, "web-1", "agent", "web-1",
			     0, 30);
	X509 *beyond = forge(enroller, enroller_key, key, "db-1", "agent", "db", 0, 30);
	X509 *partly = forge(enroller, enroller_key, key, "db-2", "agent",
			     "web-1,db", 0, 30);
	X509 *operator = forge(enroller, enroller_key, key, "op", "operator", NULL,
			       0, 30);
	X509 *groupless = forge(enroller, enroller_key, key, "x", "agent", NULL, 0, 30);
	X509 *kindless = forge(enroller, enroller_key, key, "y", NULL, "web-1", 0, 30);
	STACK_OF(X509) *chain = stack_of(enroller);
	cf_trust *trust = trust_of(root, NULL);
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_trust_verify(trust, within, chain, "agent", &err),
		      &err);
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, beyond, chain,
							"agent db-1", &err), &err);
	assert_non_null(strstr(err.msg, "\"db\""));
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, partly, chain, "a",
							&err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, operator, chain, "a",
							&err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, groupless, chain, "a",
							&err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, kindless, chain, "a",
							&err), &err);
	/* The check the verifier repeats, on its own. */
	assert_status(CF_OK, cf_cert_check_issuance(enroller, within, &err), &err);
	assert_status(CF_ERR_POLICY, cf_cert_check_issuance(enroller, beyond, &err),
		      &err);
	sk_X509_free(chain);
	cf_trust_free(trust);
	X509_free(within);
	X509_free(beyond);
	X509_free(partly);
	X509_free(operator);
	X509_free(groupless);
	X509_free(kindless);
	EVP_PKEY_free(key);
}

static void expired_and_future_certs_untrusted(void **state)
{
	EVP_PKEY *key = fx_key();
	X509 *current = forge(root, root_key, key, "web-1", "agent", "web", -10, 10);
	X509 *expired = forge(root, root_key, key, "web-1", "agent", "web", -10, -1);
	X509 *future = forge(root, root_key, key, "web-1", "agent", "web", 2, 10);
	cf_trust *trust = trust_of(root, NULL);
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_trust_verify(trust, current, NULL, "r", &err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, expired, NULL, "r",
							&err), &err);
	assert_non_null(strstr(err.msg, "expired"));
	assert_status(CF_ERR_UNTRUSTED, cf_trust_verify(trust, future, NULL, "r",
							&err), &err);
	cf_trust_free(trust);
	X509_free(current);
	X509_free(expired);
	X509_free(future);
	EVP_PKEY_free(key);
}

static void crl_of_another_root_refused(void **state)
{
	EVP_PKEY *twin_key = fx_key();
	X509 *twin = fx_root(twin_key, "Acme", 0);
	X509_CRL *foreign = fx_crl(other_root, other_key, NULL, NULL);
	X509_CRL *twin_crl = fx_crl(twin, twin_key, NULL, NULL);
	cf_trust *trust = (cf_trust *)&twin; /* not NULL, so that a reset is visible */
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_ERR_UNTRUSTED, cf_trust_new(root, foreign, &trust, &err),
		      &err);
	assert_null(trust);
	/* Same issuer name, other key: the signature decides. */
	assert_status(CF_ERR_UNTRUSTED, cf_trust_new(root, twin_crl, &trust, &err),
		      &err);
	assert_null(trust);
	X509_CRL_free(foreign);
	X509_CRL_free(twin_crl);
	X509_free(twin);
	EVP_PKEY_free(twin_key);
}

static void stale_crl_refused(void **state)
{
	X509_CRL *crl = fx_crl(root, root_key, NULL, NULL);
	ASN1_TIME *last = X509_time_adj_ex(NULL, -10, 0, NULL);
	ASN1_TIME *next = X509_time_adj_ex(NULL, -1, 0, NULL);
	cf_trust *trust = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_true(X509_CRL_set1_lastUpdate(crl, last));
	assert_true(X509_CRL_set1_nextUpdate(crl, next));
	assert_true(X509_CRL_sign(crl, root_key, EVP_sha256()) > 0);
	/* Properly signed by our root, only out of date. */
	assert_status(CF_OK, cf_crl_check_signer(crl, root, &err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_trust_new(root, crl, &trust, &err), &err);
	assert_null(trust);
	ASN1_TIME_free(last);
	ASN1_TIME_free(next);
	X509_CRL_free(crl);
}

static void anchor_must_be_a_root(void **state)
{
	EVP_PKEY *key = fx_key();
	X509 *agent = fx_agent(root, root_key, key, "web-1", "web");
	cf_trust *trust = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_ERR_USAGE, cf_trust_new(agent, NULL, &trust, &err), &err);
	assert_status(CF_ERR_USAGE, cf_trust_new(enroller, NULL, &trust, &err), &err);
	assert_null(trust);
	X509_free(agent);
	EVP_PKEY_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(root_to_agent),
		cmocka_unit_test(root_to_enroller_to_agent),
		cmocka_unit_test(other_root_untrusted),
		cmocka_unit_test(revoked_leaf_and_enroller),
		cmocka_unit_test(enroller_beyond_scope_untrusted),
		cmocka_unit_test(expired_and_future_certs_untrusted),
		cmocka_unit_test(crl_of_another_root_refused),
		cmocka_unit_test(stale_crl_refused),
		cmocka_unit_test(anchor_must_be_a_root),
	};

	return cmocka_run_group_tests_name("trust", tests, group_setup,
					   group_teardown);
}
