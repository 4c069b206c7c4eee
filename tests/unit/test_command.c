/*
 * test_command.c - command and result records (command.h): encoding and
 * strict parsing, and the checks that decide whether an agent may act on
 * a command and whether an operator may believe an answer, on a PKI made
 * in the run (root, operators with and without agent.manage, agents in
 * groups, a CRL).
 */
#include "fixture.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "envelope.h"
#include "trust.h"

#define NOW 1800000000

typedef struct pki {
	EVP_PKEY *root_key, *op_key, *weak_key, *agent_key, *other_key;
	X509 *root, *op, *weak, *agent, *other;
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
	P.op = fx_holder(P.root, P.root_key, P.op_key, CF_KIND_OPERATOR, "tech",
			 "agent.manage:web", NULL);
	P.weak_key = fx_key();
	P.weak = fx_holder(P.root, P.root_key, P.weak_key, CF_KIND_OPERATOR,
			   "intern", "agent.manage:db", "secret.write:**");
	P.agent_key = fx_key();
	P.agent = fx_agent(P.root, P.root_key, P.agent_key, "web-1", "web");
	P.other_key = fx_key();
	P.other = fx_agent(P.root, P.root_key, P.other_key, "web-2", "web");
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
	X509_free(P.weak);
	X509_free(P.agent);
	X509_free(P.other);
	EVP_PKEY_free(P.root_key);
	EVP_PKEY_free(P.op_key);
	EVP_PKEY_free(P.weak_key);
	EVP_PKEY_free(P.agent_key);
	EVP_PKEY_free(P.other_key);
	return 0;
}

static cf_command *make_command(const char *target, int64_t issued,
				int64_t expires)
{
	cf_command *cmd = cf_command_new();
	cf_error err = { 0 };

	assert_non_null(cmd);
	memcpy(cmd->tenant, cf_trust_tenant(P.trust), 65);
	assert_status(CF_OK, cf_command_id_new(cmd->id, &err), &err);
	snprintf(cmd->action, sizeof(cmd->action), "restart-app");
	assert_status(CF_OK, cf_command_add_arg(cmd, "--now", &err), &err);
	assert_status(CF_OK, cf_command_add_arg(cmd, "a b; c", &err), &err);
	assert_status(CF_OK, cf_command_add_target(cmd, target, &err), &err);
	cmd->issued = issued;
	cmd->expires = expires;
	return cmd;
}

/* Signs json as content_nid by (cert, key) and seals it to recipient. */
static unsigned char *seal(const cf_secret *json, int content_nid, X509 *cert,
			   EVP_PKEY *key, X509 *recipient, size_t *len)
{
	cf_secret *signed_der = NULL;
	cf_sealer *sealer = NULL;
	unsigned char *der = NULL;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_envelope_sign_as(json, content_nid, cert, key,
						 NULL, &signed_der, &err), &err);
	assert_status(CF_OK, cf_sealer_new(signed_der, &sealer, &err), &err);
	assert_status(CF_OK, cf_sealer_seal(sealer, recipient, &der, len, &err),
		      &err);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	return der;
}

static unsigned char *seal_command(const cf_command *cmd, X509 *cert,
				   EVP_PKEY *key, X509 *recipient, size_t *len)
{
	cf_secret *json = NULL;
	unsigned char *der;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_command_encode(cmd, &json, &err), &err);
	der = seal(json, cf_nid_command(), cert, key, recipient, len);
	cf_secret_free(json);
	return der;
}

static void test_roundtrip(void **state)
{
	cf_command *cmd = make_command("group:web", NOW, NOW + 30), *back = NULL;
	cf_secret *json = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_command_encode(cmd, &json, &err), &err);
	assert_status(CF_OK, cf_command_parse(cf_secret_cdata(json),
					      cf_secret_len(json), &back, &err),
		      &err);
	assert_string_equal(back->id, cmd->id);
	assert_string_equal(back->action, "restart-app");
	assert_int_equal(back->n_args, 2);
	assert_string_equal(back->args[1], "a b; c");
	assert_int_equal(back->n_targets, 1);
	assert_string_equal(back->targets[0], "group:web");
	assert_int_equal(back->expires, NOW + 30);
	cf_command_free(back);
	cf_secret_free(json);
	cf_command_free(cmd);
}

static void parse_refused(const char *json)
{
	cf_command *cmd = NULL;
	cf_error err = { 0 };

	assert_status(CF_ERR_RECORD, cf_command_parse((const unsigned char *)json,
						      strlen(json), &cmd, &err),
		      &err);
	assert_null(cmd);
}

#define T "\"tenant\":\"" \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""
#define ID "\"id\":\"0123456789abcdef0123456789abcdef\""

static void test_parse_strict(void **state)
{
	cf_command *cmd = NULL;
	const char *good = "{\"v\":1," T "," ID ",\"action\":\"tail-log\","
		"\"args\":[],\"issued\":1,\"expires\":2,"
		"\"targets\":[\"agent:web-1\"]}";
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_command_parse((const unsigned char *)good,
					      strlen(good), &cmd, &err), &err);
	cf_command_free(cmd);
	parse_refused("[]");
	parse_refused("{\"v\":2," T "," ID ",\"action\":\"a\",\"args\":[],"
		      "\"issued\":1,\"expires\":2,\"targets\":[\"agent:x\"]}");
	/* unknown field, duplicate key, bad action, bad target, no target */
	parse_refused("{\"v\":1," T "," ID ",\"action\":\"a\",\"args\":[],"
		      "\"issued\":1,\"expires\":2,\"targets\":[\"agent:x\"],"
		      "\"shell\":true}");
	parse_refused("{\"v\":1," T "," ID ",\"action\":\"a\",\"action\":\"b\","
		      "\"args\":[],\"issued\":1,\"expires\":2,"
		      "\"targets\":[\"agent:x\"]}");
	parse_refused("{\"v\":1," T "," ID ",\"action\":\"../x\",\"args\":[],"
		      "\"issued\":1,\"expires\":2,\"targets\":[\"agent:x\"]}");
	parse_refused("{\"v\":1," T "," ID ",\"action\":\"a\",\"args\":[],"
		      "\"issued\":1,\"expires\":2,\"targets\":[\"host:x\"]}");
	parse_refused("{\"v\":1," T "," ID ",\"action\":\"a\",\"args\":[],"
		      "\"issued\":1,\"expires\":2,\"targets\":[]}");
	/* an argument with a NUL, a non-string argument */
	parse_refused("{\"v\":1," T "," ID ",\"action\":\"a\",\"args\":"
		      "[\"x\\u0000y\"],\"issued\":1,\"expires\":2,"
		      "\"targets\":[\"agent:x\"]}");
	parse_refused("{\"v\":1," T "," ID ",\"action\":\"a\",\"args\":[1],"
		      "\"issued\":1,\"expires\":2,\"targets\":[\"agent:x\"]}");
	/* expires before issued; a lifetime above 7 days */
	parse_refused("{\"v\":1," T "," ID ",\"action\":\"a\",\"args\":[],"
		      "\"issued\":5,\"expires\":2,\"targets\":[\"agent:x\"]}");
	parse_refused("{\"v\":1," T "," ID ",\"action\":\"a\",\"args\":[],"
		      "\"issued\":1,\"expires\":604802,"
		      "\"targets\":[\"agent:x\"]}");
}

/* Unseals cmd sealed by (cert, key) for the agent and checks it at now. */
static cf_status receive(const cf_command *cmd, X509 *cert, EVP_PKEY *key,
			 int64_t now, cf_error *err)
{
	size_t len = 0;
	unsigned char *der = seal_command(cmd, cert, key, P.agent, &len);
	cf_command *got = NULL;
	X509 *signer = NULL;
	cf_status rc;

	rc = cf_command_unseal(der, len, P.agent, P.agent_key, P.trust, &got,
			       &signer, err);
	if (rc == CF_OK) {
		assert_string_equal(got->id, cmd->id);
		assert_int_equal(X509_cmp(signer, cert), 0);
		rc = cf_command_check(got, signer, "web-1", "web", now, err);
	}
	cf_command_free(got);
	X509_free(signer);
	OPENSSL_free(der);
	return rc;
}

static void test_agent_checks(void **state)
{
	cf_command *to_group = make_command("group:web", NOW, NOW + 30);
	cf_command *to_me = make_command("agent:web-1", NOW, NOW + 30);
	cf_command *to_other = make_command("agent:web-2", NOW, NOW + 30);
	cf_command *to_db = make_command("group:db", NOW, NOW + 30);
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, receive(to_group, P.op, P.op_key, NOW, &err),
		      &err);
	assert_status(CF_OK, receive(to_me, P.op, P.op_key, NOW + 30, &err),
		      &err);
	/* Not a target: another agent, another group. */
	assert_status(CF_ERR_NAME, receive(to_other, P.op, P.op_key, NOW, &err),
		      &err);
	assert_status(CF_ERR_NAME, receive(to_db, P.op, P.op_key, NOW, &err),
		      &err);
	/* An operator whose agent.manage covers db, not web. */
	assert_status(CF_ERR_PERMISSION, receive(to_group, P.weak, P.weak_key,
						 NOW, &err), &err);
	assert_non_null(strstr(err.msg, "agent.manage"));
	/* An agent is no operator, even one of the same group. */
	assert_status(CF_ERR_PERMISSION, receive(to_group, P.other, P.other_key,
						 NOW, &err), &err);
	/* Expired; issued too far ahead of the agent's clock. */
	assert_status(CF_ERR_EXPIRED, receive(to_group, P.op, P.op_key,
					      NOW + 31, &err), &err);
	assert_status(CF_ERR_EXPIRED, receive(to_group, P.op, P.op_key,
					      NOW - CF_CMD_SKEW - 1, &err),
		      &err);
	cf_command_free(to_group);
	cf_command_free(to_me);
	cf_command_free(to_other);
	cf_command_free(to_db);
}

static void test_unseal_refusals(void **state)
{
	cf_command *cmd = make_command("group:web", NOW, NOW + 30);
	cf_command *got = NULL;
	X509 *signer = NULL;
	X509_CRL *crl;
	cf_trust *revoked = NULL;
	cf_secret *json = NULL;
	unsigned char *der;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	/* A secret record's content type is not a command's. */
	assert_status(CF_OK, cf_command_encode(cmd, &json, &err), &err);
	der = seal(json, cf_nid_record(), P.op, P.op_key, P.agent, &len);
	assert_status(CF_ERR_MALFORMED, cf_command_unseal(der, len, P.agent,
		      P.agent_key, P.trust, &got, &signer, &err), &err);
	OPENSSL_free(der);
	/* Sealed to another agent. */
	der = seal(json, cf_nid_command(), P.op, P.op_key, P.other, &len);
	assert_status(CF_ERR_NOT_RECIPIENT, cf_command_unseal(der, len, P.agent,
		      P.agent_key, P.trust, &got, &signer, &err), &err);
	OPENSSL_free(der);
	/* The signer revoked. */
	crl = fx_crl(P.root, P.root_key, P.op, NULL);
	assert_status(CF_OK, cf_trust_new(P.root, crl, &revoked, &err), &err);
	der = seal(json, cf_nid_command(), P.op, P.op_key, P.agent, &len);
	assert_status(CF_ERR_REVOKED, cf_command_unseal(der, len, P.agent,
		      P.agent_key, revoked, &got, &signer, &err), &err);
	assert_null(got);
	assert_null(signer);
	OPENSSL_free(der);
	cf_trust_free(revoked);
	X509_CRL_free(crl);
	cf_secret_free(json);
	cf_command_free(cmd);
}

static cf_cmd_result *make_result(const char *id, const char *agent)
{
	cf_cmd_result *res = cf_cmd_result_new();
	unsigned char big[CF_CMD_OUTPUT_MAX + 10];
	cf_error err = { 0 };

	assert_non_null(res);
	memcpy(res->tenant, cf_trust_tenant(P.trust), 65);
	snprintf(res->id, sizeof(res->id), "%s", id);
	snprintf(res->agent, sizeof(res->agent), "%s", agent);
	res->status = CF_RESULT_FAILED;
	res->exit_code = 3;
	memset(big, 'x', sizeof(big));
	assert_status(CF_OK, cf_cmd_result_set_output(res, 0, big, sizeof(big),
						      false, &err), &err);
	assert_status(CF_OK, cf_cmd_result_set_output(res, 1,
		      (const unsigned char *)"oops\n", 5, false, &err), &err);
	assert_status(CF_OK, cf_cmd_result_set_reason(res, "", &err), &err);
	res->received = res->started = NOW;
	res->finished = NOW + 2;
	return res;
}

static unsigned char *seal_result(const cf_cmd_result *res, X509 *cert,
				  EVP_PKEY *key, size_t *len)
{
	cf_secret *json = NULL;
	unsigned char *der;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_cmd_result_encode(res, &json, &err), &err);
	der = seal(json, cf_nid_result(), cert, key, P.op, len);
	cf_secret_free(json);
	return der;
}

static void test_results(void **state)
{
	char id[CF_CMD_ID_LEN + 1], other_id[CF_CMD_ID_LEN + 1], fp[65],
	     fp2[65];
	cf_cmd_result *res, *got = NULL;
	unsigned char *der;
	size_t len = 0;
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_command_id_new(id, &err), &err);
	assert_status(CF_OK, cf_command_id_new(other_id, &err), &err);
	assert_string_not_equal(id, other_id);
	assert_status(CF_OK, cf_cert_fingerprint(P.agent, fp, &err), &err);
	assert_status(CF_OK, cf_cert_fingerprint(P.other, fp2, &err), &err);
	res = make_result(id, "web-1");
	assert_int_equal(res->out_len, CF_CMD_OUTPUT_MAX);
	assert_true(res->out_cut);

	der = seal_result(res, P.agent, P.agent_key, &len);
	assert_status(CF_OK, cf_cmd_result_open(der, len, P.op, P.op_key,
		      P.trust, id, fp, &got, &err), &err);
	assert_int_equal(got->status, CF_RESULT_FAILED);
	assert_int_equal(got->exit_code, 3);
	assert_int_equal(got->out_len, CF_CMD_OUTPUT_MAX);
	assert_true(got->out_cut);
	assert_int_equal(got->err_len, 5);
	assert_memory_equal(got->err_out, "oops\n", 5);
	cf_cmd_result_free(got);
	got = NULL;
	/* An answer to another command; from another agent than asked. */
	assert_status(CF_ERR_NAME, cf_cmd_result_open(der, len, P.op, P.op_key,
		      P.trust, other_id, fp, &got, &err), &err);
	assert_status(CF_ERR_NAME, cf_cmd_result_open(der, len, P.op, P.op_key,
		      P.trust, id, fp2, &got, &err), &err);
	/* One flipped byte. */
	der[len - 20] ^= 1;
	assert_status(CF_ERR_TAMPERED, cf_cmd_result_open(der, len, P.op,
		      P.op_key, P.trust, id, fp, &got, &err), &err);
	OPENSSL_free(der);
	/* Signed by web-2 but naming web-1. */
	der = seal_result(res, P.other, P.other_key, &len);
	assert_status(CF_ERR_NAME, cf_cmd_result_open(der, len, P.op, P.op_key,
		      P.trust, id, NULL, &got, &err), &err);
	OPENSSL_free(der);
	/* Signed by an operator: not an agent's answer. */
	der = seal_result(res, P.weak, P.weak_key, &len);
	assert_status(CF_ERR_PERMISSION, cf_cmd_result_open(der, len, P.op,
		      P.op_key, P.trust, id, NULL, &got, &err), &err);
	OPENSSL_free(der);
	assert_null(got);
	cf_cmd_result_free(res);
}

static void test_names(void **state)
{
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, cf_action_name_check("tail-log", &err), &err);
	assert_status(CF_OK, cf_action_name_check("a.b_c-9", &err), &err);
	assert_status(CF_ERR_USAGE, cf_action_name_check("-x", &err), &err);
	assert_status(CF_ERR_USAGE, cf_action_name_check("Restart", &err), &err);
	assert_status(CF_ERR_USAGE, cf_action_name_check("", &err), &err);
	assert_status(CF_OK, cf_command_target_check("group:web/eu", &err),
		      &err);
	assert_status(CF_ERR_USAGE, cf_command_target_check("agent:", &err),
		      &err);
	assert_status(CF_ERR_USAGE, cf_command_target_check("fp:abc", &err),
		      &err);
	assert_true(cf_command_id_valid("0123456789abcdef0123456789abcdef"));
	assert_false(cf_command_id_valid("0123456789ABCDEF0123456789abcdef"));
	assert_false(cf_command_id_valid("0123"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_parse_strict),
		cmocka_unit_test(test_agent_checks),
		cmocka_unit_test(test_unseal_refusals),
		cmocka_unit_test(test_results),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
