/*
 * test_ack.c - rollout acknowledgements (ack.h): encoding and strict
 * parsing of the record, and what cf_ack_verify believes, on a PKI made
 * in the run (root, an operator, agents issued by the root and by an
 * enroller, another organisation, a CRL).
 */
#include "fixture.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "ack.h"
#include "envelope.h"
#include "trust.h"

#define TENANT_OF(t) cf_trust_tenant(t)

typedef struct pki {
	EVP_PKEY *root_key, *op_key, *agent_key, *enr_key, *sub_key;
	EVP_PKEY *other_root_key, *stranger_key;
	X509 *root, *op, *agent, *enr, *sub, *other_root, *stranger;
	cf_trust *trust;
} pki;

static pki P;

static int group_setup(void **state)
{
	cf_error err = { 0 };

	fx_group_setup(state);
	P.root_key = fx_key();
	P.root = fx_root(P.root_key, "Acme", 0);
	P.op_key = fx_key();
	P.op = fx_holder(P.root, P.root_key, P.op_key, CF_KIND_OPERATOR, "ops",
			 "secret.write:**", NULL);
	P.agent_key = fx_key();
	P.agent = fx_agent(P.root, P.root_key, P.agent_key, "web-1", "web");
	P.enr_key = fx_key();
	P.enr = fx_holder(P.root, P.root_key, P.enr_key, CF_KIND_ENROLLER, "enr",
			  "agent.enroll:web", NULL);
	P.sub_key = fx_key();
	P.sub = fx_agent(P.enr, P.enr_key, P.sub_key, "web-2", "web");
	P.other_root_key = fx_key();
	P.other_root = fx_root(P.other_root_key, "Evil", 0);
	P.stranger_key = fx_key();
	P.stranger = fx_agent(P.other_root, P.other_root_key, P.stranger_key,
			      "web-1", "web");
	if (cf_trust_new(P.root, NULL, &P.trust, &err) != CF_OK)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	cf_trust_free(P.trust);
	X509_free(P.root);
	X509_free(P.op);
	X509_free(P.agent);
	X509_free(P.enr);
	X509_free(P.sub);
	X509_free(P.other_root);
	X509_free(P.stranger);
	EVP_PKEY_free(P.root_key);
	EVP_PKEY_free(P.op_key);
	EVP_PKEY_free(P.agent_key);
	EVP_PKEY_free(P.enr_key);
	EVP_PKEY_free(P.sub_key);
	EVP_PKEY_free(P.other_root_key);
	EVP_PKEY_free(P.stranger_key);
	return 0;
}

static cf_ack sample(const char *agent)
{
	cf_ack a;

	memset(&a, 0, sizeof(a));
	snprintf(a.tenant, sizeof(a.tenant), "%s", TENANT_OF(P.trust));
	snprintf(a.agent, sizeof(a.agent), "%s", agent);
	snprintf(a.name, sizeof(a.name), "prod/db/password");
	a.version = 7;
	a.time = 1800000000;
	a.result = CF_ACK_OK;
	return a;
}

static cf_status parse_text(const char *json, cf_ack *out, cf_error *err)
{
	return cf_ack_parse((const unsigned char *)json, strlen(json), out, err);
}

static void test_roundtrip(void **state)
{
	cf_ack a = sample("web-1"), b;
	cf_secret *json = NULL;
	cf_error err = { 0 };

	(void)state;
	a.result = CF_ACK_FAILED;
	cf_ack_set_reason(&a, "/etc/app/db.conf: Permission denied\nline 2");
	assert_string_equal(a.reason, "/etc/app/db.conf: Permission denied line 2");
	assert_status(CF_OK, cf_ack_encode(&a, &json, &err), &err);
	/* The field names and order are the contract (docs/FORMAT.md). */
	assert_non_null(strstr((const char *)cf_secret_cdata(json),
			       "{\"v\":1,\"tenant\":\""));
	assert_non_null(strstr((const char *)cf_secret_cdata(json),
			       "\"name\":\"prod/db/password\",\"version\":7,"
			       "\"time\":1800000000,\"result\":\"failed\","));
	assert_status(CF_OK, cf_ack_parse(cf_secret_cdata(json),
					  cf_secret_len(json), &b, &err), &err);
	assert_string_equal(a.tenant, b.tenant);
	assert_string_equal(a.agent, b.agent);
	assert_string_equal(a.name, b.name);
	assert_int_equal(a.version, b.version);
	assert_int_equal(a.time, b.time);
	assert_int_equal(a.result, b.result);
	assert_string_equal(a.reason, b.reason);
	cf_secret_free(json);

	/* A long reason is cut on a character boundary, not mid-UTF-8. */
	{
		char *longer = malloc(CF_ACK_REASON_MAX + 8);

		assert_non_null(longer);
		memset(longer, 'x', CF_ACK_REASON_MAX - 1);
		memcpy(longer + CF_ACK_REASON_MAX - 1, "\xc3\xa9zz", 5);
		cf_ack_set_reason(&a, longer);
		assert_int_equal(strlen(a.reason), CF_ACK_REASON_MAX - 1);
		free(longer);
	}
	/* Bytes that are not UTF-8 (a Latin-1 path) become '?', so the ack
	 * still encodes; well-formed characters stay. */
	a = sample("web-1");
	a.result = CF_ACK_FAILED;
	cf_ack_set_reason(&a, "/srv/caf\xe9/x: caf\xc3\xa9 \xed\xa0\x80.");
	assert_string_equal(a.reason, "/srv/caf?/x: caf\xc3\xa9 ???.");
	assert_status(CF_OK, cf_ack_encode(&a, &json, &err), &err);
	cf_secret_free(json);
	json = NULL;
	/* Invalid acks are not encoded. */
	a = sample("web-1");
	a.version = 0;
	assert_status(CF_ERR_USAGE, cf_ack_encode(&a, &json, &err), &err);
	a = sample("web-1");
	snprintf(a.name, sizeof(a.name), "../etc");
	assert_status(CF_ERR_USAGE, cf_ack_encode(&a, &json, &err), &err);
	a = sample("");
	assert_status(CF_ERR_USAGE, cf_ack_encode(&a, &json, &err), &err);
	assert_null(json);
}

static void test_parse_strict(void **state)
{
	char good[512], buf[1024];
	cf_ack a;
	cf_error err = { 0 };
	const char *t = TENANT_OF(P.trust);

	(void)state;
	snprintf(good, sizeof(good), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"version\":2,\"time\":5,"
		 "\"result\":\"ok\",\"reason\":\"\"}", t);
	assert_status(CF_OK, parse_text(good, &a, &err), &err);
	assert_int_equal(a.version, 2);

	/* Unknown field, duplicate key, missing field, wrong types. */
	snprintf(buf, sizeof(buf), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"version\":2,\"time\":5,"
		 "\"result\":\"ok\",\"reason\":\"\",\"value\":\"c2VjcmV0\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	assert_non_null(strstr(err.msg, "unknown field"));
	snprintf(buf, sizeof(buf), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"name\":\"c\",\"version\":2,"
		 "\"time\":5,\"result\":\"ok\",\"reason\":\"\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	snprintf(buf, sizeof(buf), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"version\":2,\"time\":5,"
		 "\"result\":\"ok\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	snprintf(buf, sizeof(buf), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"version\":\"2\",\"time\":5,"
		 "\"result\":\"ok\",\"reason\":\"\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	snprintf(buf, sizeof(buf), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"version\":2,\"time\":5,"
		 "\"result\":\"maybe\",\"reason\":\"\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	snprintf(buf, sizeof(buf), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"version\":0,\"time\":5,"
		 "\"result\":\"ok\",\"reason\":\"\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	snprintf(buf, sizeof(buf), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"version\":9007199254740992,"
		 "\"time\":5,\"result\":\"ok\",\"reason\":\"\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	/* A control character in a text field, a bad name, a bad tenant. */
	snprintf(buf, sizeof(buf), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"version\":2,\"time\":5,"
		 "\"result\":\"failed\",\"reason\":\"x\\ny\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	snprintf(buf, sizeof(buf), "{\"v\":1,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/../b\",\"version\":2,\"time\":5,"
		 "\"result\":\"ok\",\"reason\":\"\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	assert_status(CF_ERR_RECORD, parse_text("{\"v\":1,\"tenant\":\"AB\","
		"\"agent\":\"web-1\",\"name\":\"a\",\"version\":2,\"time\":5,"
		"\"result\":\"ok\",\"reason\":\"\"}", &a, &err), &err);
	/* Version 2 of the format, not JSON, not an object, too large. */
	snprintf(buf, sizeof(buf), "{\"v\":2,\"tenant\":\"%s\",\"agent\":"
		 "\"web-1\",\"name\":\"a/b\",\"version\":2,\"time\":5,"
		 "\"result\":\"ok\",\"reason\":\"\"}", t);
	assert_status(CF_ERR_RECORD, parse_text(buf, &a, &err), &err);
	assert_status(CF_ERR_RECORD, parse_text("{\"v\":1,", &a, &err), &err);
	assert_status(CF_ERR_RECORD, parse_text("[1]", &a, &err), &err);
	{
		size_t len = CF_ACK_RECORD_MAX + 1;
		unsigned char *big = malloc(len);

		assert_non_null(big);
		memset(big, ' ', len);
		assert_status(CF_ERR_TOO_LARGE, cf_ack_parse(big, len, &a, &err),
			      &err);
		free(big);
	}
	/* A refusal leaves nothing behind. */
	assert_string_equal(a.name, "");
}

static void test_verify(void **state)
{
	cf_ack a = sample("web-1"), got;
	unsigned char *der = NULL;
	size_t len = 0;
	char fp[65], want[65];
	STACK_OF(X509) *chain = sk_X509_new_null();
	cf_error err = { 0 };

	(void)state;
	/* The agent's own ack verifies and says who signed it. */
	assert_status(CF_OK, cf_ack_sign(&a, P.agent, P.agent_key, NULL, &der,
					 &len, &err), &err);
	assert_status(CF_OK, cf_ack_verify(der, len, P.trust, &got, fp, &err),
		      &err);
	assert_status(CF_OK, cf_cert_fingerprint(P.agent, want, &err), &err);
	assert_string_equal(fp, want);
	assert_string_equal(got.name, "prod/db/password");
	assert_int_equal(got.version, 7);

	/* One flipped byte in the signed content: the signature fails. */
	for (size_t i = len - 40; i < len; i++)
		der[i] ^= 0x01;
	assert_true(cf_ack_verify(der, len, P.trust, &got, fp, &err) != CF_OK);
	assert_string_equal(got.name, "");
	OPENSSL_free(der);

	/* An agent issued by an enroller: the chain travels in the ack. */
	a = sample("web-2");
	assert_non_null(chain);
	assert_true(sk_X509_push(chain, P.enr) > 0);
	assert_status(CF_OK, cf_ack_sign(&a, P.sub, P.sub_key, chain, &der,
					 &len, &err), &err);
	assert_status(CF_OK, cf_ack_verify(der, len, P.trust, &got, NULL, &err),
		      &err);
	OPENSSL_free(der);
	/* ... and without it, it does not chain. */
	assert_status(CF_OK, cf_ack_sign(&a, P.sub, P.sub_key, NULL, &der,
					 &len, &err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_ack_verify(der, len, P.trust, &got,
						      NULL, &err), &err);
	OPENSSL_free(der);
	sk_X509_free(chain);

	/* The record must name its signer. */
	a = sample("web-9");
	assert_status(CF_OK, cf_ack_sign(&a, P.agent, P.agent_key, NULL, &der,
					 &len, &err), &err);
	assert_status(CF_ERR_NAME, cf_ack_verify(der, len, P.trust, &got, NULL,
						 &err), &err);
	OPENSSL_free(der);

	/* An operator is no agent. */
	a = sample("ops");
	assert_status(CF_OK, cf_ack_sign(&a, P.op, P.op_key, NULL, &der, &len,
					 &err), &err);
	assert_status(CF_ERR_PERMISSION, cf_ack_verify(der, len, P.trust, &got,
						       NULL, &err), &err);
	OPENSSL_free(der);

	/* Another organisation's agent. */
	a = sample("web-1");
	assert_status(CF_OK, cf_ack_sign(&a, P.stranger, P.stranger_key, NULL,
					 &der, &len, &err), &err);
	assert_status(CF_ERR_UNTRUSTED, cf_ack_verify(der, len, P.trust, &got,
						      NULL, &err), &err);
	OPENSSL_free(der);

	/* The right signer, another tenant in the record. */
	a = sample("web-1");
	memset(a.tenant, 'b', 64);
	assert_status(CF_OK, cf_ack_sign(&a, P.agent, P.agent_key, NULL, &der,
					 &len, &err), &err);
	assert_status(CF_ERR_RECORD, cf_ack_verify(der, len, P.trust, &got,
						   NULL, &err), &err);
	OPENSSL_free(der);

	/* A secret record (content type .4) is no ack, whoever signed it. */
	{
		cf_secret *json = cf_secret_from("{}", 2), *sig = NULL;

		assert_non_null(json);
		assert_status(CF_OK, cf_envelope_sign(json, P.agent, P.agent_key,
						      NULL, &sig, &err), &err);
		assert_status(CF_ERR_MALFORMED, cf_ack_verify(
			cf_secret_cdata(sig), cf_secret_len(sig), P.trust, &got,
			NULL, &err), &err);
		cf_secret_free(sig);
		cf_secret_free(json);
	}
	/* Sizes. */
	assert_status(CF_ERR_TOO_LARGE, cf_ack_verify((const unsigned char *)"",
						      0, P.trust, &got, NULL,
						      &err), &err);
}

static void test_revoked(void **state)
{
	cf_ack a = sample("web-1"), got;
	X509_CRL *crl = fx_crl(P.root, P.root_key, P.agent, NULL);
	cf_trust *revoking = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_trust_new(P.root, crl, &revoking, &err), &err);
	assert_status(CF_OK, cf_ack_sign(&a, P.agent, P.agent_key, NULL, &der,
					 &len, &err), &err);
	assert_status(CF_OK, cf_ack_verify(der, len, P.trust, &got, NULL, &err),
		      &err);
	assert_status(CF_ERR_REVOKED, cf_ack_verify(der, len, revoking, &got,
						    NULL, &err), &err);
	OPENSSL_free(der);
	cf_trust_free(revoking);
	X509_CRL_free(crl);
}

static void test_results(void **state)
{
	cf_ack_result r;

	(void)state;
	assert_string_equal(cf_ack_result_name(CF_ACK_OK), "ok");
	assert_string_equal(cf_ack_result_name(CF_ACK_FAILED), "failed");
	assert_null(cf_ack_result_name((cf_ack_result)7));
	assert_int_equal(cf_ack_result_from_name("failed", &r), 0);
	assert_int_equal(r, CF_ACK_FAILED);
	assert_int_equal(cf_ack_result_from_name("OK", &r), -1);
	assert_int_equal(cf_ack_result_from_name(NULL, &r), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_parse_strict),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_results),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
