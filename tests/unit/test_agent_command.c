/*
 * test_agent_command.c - the agent's side of operators' commands
 * (src/agent/inbox.h): the args policy of [action] sections, output
 * bounding and timeouts of actions (ag_hook_capture), the replay store
 * across a restart, and the whole path from a feed answer to a sealed
 * answer, with records made by the library on a PKI made in the run.
 *
 * Answers are not posted anywhere: the post callback keeps them, and
 * each is opened as `coffer cmd run` does (cf_cmd_result_open: decrypts
 * with the operator's key, checks that the agent signed it, for this
 * command id) before its fields are checked.
 */
#include "fixture.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "b64.h"
#include "inbox.h"
#include "config.h"
#include "envelope.h"
#include "hook.h"
#include "trust.h"

#define NOW 1800000000

typedef struct pki {
	EVP_PKEY *root_key, *op_key, *weak_key, *agent_key, *other_key;
	X509 *root, *op, *weak, *agent, *other;
	cf_trust *trust;
	char agent_fp[65];
} pki;

static pki P;

/* What the post callback saw; each answer opened with the operator's key. */
#define MAX_POSTS 16
typedef struct posts {
	size_t n;
	char id[MAX_POSTS][CF_CMD_ID_LEN + 1];
	unsigned char *der[MAX_POSTS];
	size_t len[MAX_POSTS];
	int fail_first;          /* this many posts fail with CF_ERR_NETWORK */
	int calls;
} posts;

typedef struct fixture {
	char dir[256];
	posts posts;
	ag_config *cfg;
	int64_t now;
} fixture;

static fixture *current;

static int64_t test_clock(void)
{
	return current->now;
}

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
	P.other = fx_agent(P.root, P.root_key, P.other_key, "db-1", "db");
	if (cf_trust_new(P.root, NULL, &P.trust, &err) != CF_OK ||
	    cf_cert_fingerprint(P.agent, P.agent_fp, &err) != CF_OK)
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

#define CONFIG_HEAD "[server]\nurl = https://coffer.example:8443\n"

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	cf_error err = { 0 };
	char text[2048];

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/coffer-agcmd-XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(text, sizeof(text), CONFIG_HEAD
		 "[action hello]\nrun = /bin/echo hello\n"
		 "[action env]\nrun = /usr/bin/env\n"
		 "[action echo]\nrun = /bin/echo\nargs = any\n"
		 "[action tail]\nrun = /bin/echo\nargs = [a-z]+\n"
		 "[action count]\nrun = /bin/sh -c 'echo ran >> %s/count'\n"
		 "[action fail]\nrun = /bin/sh -c 'echo oops >&2; exit 3'\n"
		 "[action slow]\nrun = /bin/sleep 10\ntimeout = 1s\n"
		 "[action long]\nrun = /bin/sleep 30\ntimeout = 1m\n"
		 "[action missing]\nrun = /nonexistent/program\n", f->dir);
	if (ag_config_parse(text, strlen(text), "test.conf", &f->cfg, &err) !=
	    CF_OK) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	f->now = NOW;
	current = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	for (size_t i = 0; i < f->posts.n; i++)
		OPENSSL_free(f->posts.der[i]);
	ag_config_free(f->cfg);
	fx_remove_tree(f->dir);
	free(f);
	return 0;
}

static cf_status keep_post(void *arg, const char *id,
			   const unsigned char *der, size_t len, cf_error *err)
{
	posts *p = arg;

	p->calls++;
	if (p->fail_first > 0) {
		p->fail_first--;
		return cf_error_set(err, CF_ERR_NETWORK, "test: no server");
	}
	if (p->n == MAX_POSTS)
		return cf_error_set(err, CF_ERR_LIMIT, "test: too many posts");
	snprintf(p->id[p->n], sizeof(p->id[p->n]), "%s", id);
	p->der[p->n] = OPENSSL_memdup(der, len);
	p->len[p->n] = len;
	p->n++;
	return CF_OK;
}

static char *const status_argv[] = { "/bin/echo", "the status report", NULL };

static ag_commands *commands_new(fixture *f, int threaded)
{
	ag_cmd_setup setup = {
		.state_dir = f->dir, .cert = P.agent, .key = P.agent_key,
		.post = keep_post, .post_arg = &f->posts,
		.status_argv = status_argv, .threaded = threaded,
		.now = test_clock, .retry_s = 1,
	};
	ag_commands *c = NULL;
	cf_error err = { 0 };

	assert_status(CF_OK, ag_commands_new(&setup, f->cfg, &c, &err), &err);
	return c;
}

/* A command from (cert, key) sealed to recipient, as one feed entry. */
static json_t *entry(const char *id_as, int64_t seq, const char *action,
		     const char *arg1, const char *arg2, const char *target,
		     int64_t issued, int64_t expires, X509 *cert, EVP_PKEY *key,
		     X509 *recipient, char id[CF_CMD_ID_LEN + 1])
{
	cf_command *cmd = cf_command_new();
	cf_secret *json = NULL, *signed_der = NULL;
	cf_sealer *sealer = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	char *b64;
	json_t *item;
	cf_error err = { 0 };

	assert_non_null(cmd);
	memcpy(cmd->tenant, cf_trust_tenant(P.trust), 65);
	assert_status(CF_OK, cf_command_id_new(cmd->id, &err), &err);
	snprintf(cmd->action, sizeof(cmd->action), "%s", action);
	if (arg1 != NULL)
		assert_status(CF_OK, cf_command_add_arg(cmd, arg1, &err), &err);
	if (arg2 != NULL)
		assert_status(CF_OK, cf_command_add_arg(cmd, arg2, &err), &err);
	assert_status(CF_OK, cf_command_add_target(cmd, target, &err), &err);
	cmd->issued = issued;
	cmd->expires = expires;
	assert_status(CF_OK, cf_command_encode(cmd, &json, &err), &err);
	assert_status(CF_OK, cf_envelope_sign_as(json, cf_nid_command(), cert,
						 key, NULL, &signed_der, &err),
		      &err);
	assert_status(CF_OK, cf_sealer_new(signed_der, &sealer, &err), &err);
	assert_status(CF_OK, cf_sealer_seal(sealer, recipient, &der, &len, &err),
		      &err);
	b64 = malloc(cf_b64_encoded_len(len) + 1);
	assert_non_null(b64);
	assert_status(CF_OK, cf_b64_encode(der, len, b64,
					   cf_b64_encoded_len(len) + 1, NULL,
					   &err), &err);
	if (id != NULL)
		memcpy(id, cmd->id, CF_CMD_ID_LEN + 1);
	item = json_pack("{s:I,s:s,s:s,s:I,s:s}", "seq", (json_int_t)seq, "id",
			 id_as != NULL ? id_as : cmd->id, "sender", "fp",
			 "expires", (json_int_t)expires, "envelope", b64);
	assert_non_null(item);
	free(b64);
	OPENSSL_free(der);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	cf_secret_free(json);
	cf_command_free(cmd);
	return item;
}

/* A simple good command from the operator to web-1. */
static json_t *good(int64_t seq, const char *action, const char *arg1,
		    const char *arg2, char id[CF_CMD_ID_LEN + 1])
{
	return entry(NULL, seq, action, arg1, arg2, "group:web", NOW - 5,
		     NOW + 60, P.op, P.op_key, P.agent, id);
}

/* Feeds items (references stolen) to c as one feed answer. */
static void feed(ag_commands *c, json_t *item1, json_t *item2)
{
	json_t *list = json_array(), *resp;
	json_int_t top = 0;
	cf_error err = { 0 };

	assert_non_null(list);
	if (item1 != NULL) {
		top = json_integer_value(json_object_get(item1, "seq"));
		json_array_append_new(list, item1);
	}
	if (item2 != NULL) {
		if (json_integer_value(json_object_get(item2, "seq")) > top)
			top = json_integer_value(json_object_get(item2, "seq"));
		json_array_append_new(list, item2);
	}
	resp = json_pack("{s:o,s:I}", "commands", list, "command_cursor", top);
	assert_non_null(resp);
	assert_status(CF_OK, ag_commands_take(c, resp, P.trust, &err), &err);
	json_decref(resp);
}

/* Answer i, opened as the operator (signer op) opens it. */
static cf_cmd_result *answer(fixture *f, size_t i, X509 *op, EVP_PKEY *op_key,
			     const char *id)
{
	cf_cmd_result *res = NULL;
	cf_error err = { 0 };

	assert_true(i < f->posts.n);
	assert_string_equal(f->posts.id[i], id);
	assert_status(CF_OK, cf_cmd_result_open(f->posts.der[i], f->posts.len[i],
						op, op_key, P.trust, id,
						P.agent_fp, &res, &err), &err);
	assert_string_equal(res->agent, "web-1");
	assert_string_equal(res->id, id);
	return res;
}

static void assert_refused(fixture *f, size_t i, const char *id,
			   const char *code, X509 *op, EVP_PKEY *op_key)
{
	cf_cmd_result *res = answer(f, i, op, op_key, id);

	assert_int_equal(res->status, CF_RESULT_REFUSED);
	assert_string_equal(res->code, code);
	assert_true(res->reason != NULL && res->reason[0] != '\0');
	assert_int_equal(res->out_len, 0);
	cf_cmd_result_free(res);
}

static long count_lines(const fixture *f)
{
	char path[300], line[64];
	long n = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/count", f->dir);
	fp = fopen(path, "r");
	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		n++;
	fclose(fp);
	return n;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------- tests */

static void args_policy(void **state)
{
	fixture *f = *state;
	const ag_action *any = ag_config_action(f->cfg, "echo");
	const ag_action *none = ag_config_action(f->cfg, "hello");
	const ag_action *re = ag_config_action(f->cfg, "tail");
	char *ok[] = { "abc", "xyz" }, *bad[] = { "abc", "abc;rm" };
	char *nl[] = { "abc\nrm" }, *empty[] = { "" }, *upper[] = { "ABC" };
	static const char patterns[] = CONFIG_HEAD
		"[action a]\nrun = /bin/echo\nargs = ^[a-z]+$\n"
		"[action b]\nrun = /bin/echo\nargs = start|stop\n"
		"[action c]\nrun = /bin/echo\nargs = [[:digit:]]{1,3}\n";
	ag_config *cfg = NULL;
	cf_error err = { 0 };

	assert_non_null(any);
	assert_non_null(none);
	assert_non_null(re);
	assert_null(ag_config_action(f->cfg, "status"));
	assert_null(ag_config_action(f->cfg, "nope"));
	assert_status(CF_OK, ag_action_args_check(none, NULL, 0, &err), &err);
	assert_status(CF_ERR_PERMISSION, ag_action_args_check(none, ok, 1, &err),
		      &err);
	assert_non_null(strstr(err.msg, "takes no arguments"));
	assert_status(CF_OK, ag_action_args_check(any, bad, 2, &err), &err);
	assert_status(CF_OK, ag_action_args_check(re, ok, 2, &err), &err);
	assert_status(CF_ERR_PERMISSION, ag_action_args_check(re, bad, 2, &err),
		      &err);
	/* The position, never the value. */
	assert_non_null(strstr(err.msg, "argument 2"));
	assert_null(strstr(err.msg, "abc;rm"));
	assert_status(CF_ERR_PERMISSION, ag_action_args_check(re, nl, 1, &err), &err);
	assert_status(CF_ERR_PERMISSION, ag_action_args_check(re, empty, 1, &err),
		      &err);
	assert_status(CF_ERR_PERMISSION, ag_action_args_check(re, upper, 1, &err),
		      &err);

	/* Anchors of the pattern's own, alternation, classes. */
	assert_status(CF_OK, ag_config_parse(patterns, strlen(patterns),
					     "t.conf", &cfg, &err), &err);
	{
		char *stop[] = { "stop" }, *stopx[] = { "stopx" };
		char *xstart[] = { "xstart" }, *n[] = { "123" }, *n4[] = { "1234" };

		assert_status(CF_OK, ag_action_args_check(
			ag_config_action(cfg, "a"), ok, 2, &err), &err);
		assert_status(CF_ERR_PERMISSION, ag_action_args_check(
			ag_config_action(cfg, "a"), bad, 2, &err), &err);
		assert_status(CF_OK, ag_action_args_check(
			ag_config_action(cfg, "b"), stop, 1, &err), &err);
		assert_status(CF_ERR_PERMISSION, ag_action_args_check(
			ag_config_action(cfg, "b"), stopx, 1, &err), &err);
		assert_status(CF_ERR_PERMISSION, ag_action_args_check(
			ag_config_action(cfg, "b"), xstart, 1, &err), &err);
		assert_status(CF_OK, ag_action_args_check(
			ag_config_action(cfg, "c"), n, 1, &err), &err);
		assert_status(CF_ERR_PERMISSION, ag_action_args_check(
			ag_config_action(cfg, "c"), n4, 1, &err), &err);
	}
	ag_config_free(cfg);
}

static void capture_bounds(void **state)
{
	char *argv[] = { "/bin/sh", "-c",
			 "head -c 204800 /dev/zero; head -c 100 /dev/zero >&2; "
			 "echo \"$PATH|$HOME|$X\" >&2", NULL };
	char *envp[] = { "PATH=/bin", "X=1", NULL };
	ag_capture cap = { .argv = argv, .envp = envp, .timeout_ms = 10000,
			   .grace_ms = 1000, .max_bytes = CF_CMD_OUTPUT_MAX };
	cf_error err = { 0 };

	(void)state;
	assert_status(CF_OK, ag_hook_capture(&cap, &err), &err);
	assert_true(WIFEXITED(cap.wstatus));
	assert_int_equal(WEXITSTATUS(cap.wstatus), 0);
	assert_int_equal(cap.out_len, CF_CMD_OUTPUT_MAX);
	assert_true(cap.out_cut);
	assert_false(cap.err_cut);
	assert_int_equal(cap.err_len, 100 + strlen("/bin||1\n"));
	assert_memory_equal(cap.err + 100, "/bin||1\n", 8);
	assert_false(cap.timed_out);
	ag_capture_clear(&cap);
	assert_null(cap.out);

	/* A program that is not there: an error naming it. */
	{
		char *missing[] = { "/nonexistent/x", NULL };

		cap.argv = missing;
		assert_status(CF_ERR_IO, ag_hook_capture(&cap, &err), &err);
		assert_non_null(strstr(err.msg, "/nonexistent/x"));
		ag_capture_clear(&cap);
	}
}

static void capture_timeout(void **state)
{
	char *argv[] = { "/bin/sh", "-c", "echo started; sleep 10 & sleep 10",
			 NULL };
	ag_capture cap = { .argv = argv, .timeout_ms = 1000, .grace_ms = 1000,
			   .max_bytes = 1024 };
	cf_error err = { 0 };
	double t0 = now_s(), took;

	(void)state;
	assert_status(CF_OK, ag_hook_capture(&cap, &err), &err);
	took = now_s() - t0;
	assert_true(cap.timed_out);
	assert_true(WIFSIGNALED(cap.wstatus));
	assert_true(took >= 0.9 && took < 2.5);
	assert_int_equal(cap.out_len, 8);
	assert_memory_equal(cap.out, "started\n", 8);
	ag_capture_clear(&cap);

	/* A stop flag ends it just as soon. */
	{
		volatile sig_atomic_t stop = 0;
		char *sleeper[] = { "/bin/sleep", "10", NULL };
		ag_capture c2 = { .argv = sleeper, .timeout_ms = 60000,
				  .grace_ms = 1000, .max_bytes = 16 };

		c2.stop[0] = &stop;
		stop = 1;
		assert_status(CF_ERR_TIMEOUT, ag_hook_capture(&c2, &err), &err);
		ag_capture_clear(&c2);
	}
}

static void replay_store(void **state)
{
	fixture *f = *state;
	ag_replay *r = NULL;
	cf_error err = { 0 };
	char id1[] = "0123456789abcdef0123456789abcdef";
	char id2[] = "fedcba9876543210fedcba9876543210";
	char path[300];
	struct stat sb;

	assert_status(CF_OK, ag_replay_open(f->dir, NOW, &r, &err), &err);
	assert_int_equal(ag_replay_cursor(r), 0);
	assert_int_equal(ag_replay_count(r), 0);
	assert_status(CF_OK, ag_replay_record(r, id1, NOW + 30, 4, NOW, &err),
		      &err);
	assert_status(CF_OK, ag_replay_record(r, id2, NOW + 3600, 5, NOW, &err),
		      &err);
	assert_status(CF_ERR_REPLAY, ag_replay_record(r, id1, NOW + 30, 6, NOW,
						      &err), &err);
	assert_int_equal(ag_replay_cursor(r), 6);
	ag_replay_free(r);

	/* The agent restarts: the ids are still there, on disk, 0600. */
	snprintf(path, sizeof(path), "%s/%s", f->dir, AG_REPLAY_FILE);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_status(CF_OK, ag_replay_open(f->dir, NOW + 10, &r, &err), &err);
	assert_int_equal(ag_replay_cursor(r), 6);
	assert_true(ag_replay_seen(r, id1));
	assert_status(CF_ERR_REPLAY, ag_replay_record(r, id1, NOW + 30, 6,
						      NOW + 10, &err), &err);
	ag_replay_free(r);

	/* Past its expiry (+ skew) an id is forgotten; the other stays. */
	assert_status(CF_OK, ag_replay_open(f->dir, NOW + 30 + CF_CMD_SKEW + 1,
					    &r, &err), &err);
	assert_false(ag_replay_seen(r, id1));
	assert_true(ag_replay_seen(r, id2));
	assert_int_equal(ag_replay_count(r), 1);
	ag_replay_free(r);
	/* ... but not before. */
	assert_status(CF_OK, ag_replay_open(f->dir, NOW + 30 + CF_CMD_SKEW, &r,
					    &err), &err);
	assert_true(ag_replay_seen(r, id1));
	ag_replay_free(r);
}

static void replay_full_and_damaged(void **state)
{
	fixture *f = *state;
	ag_replay *r = NULL;
	cf_error err = { 0 };
	char path[300], id[CF_CMD_ID_LEN + 1];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", f->dir, AG_REPLAY_FILE);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp, "coffer-agent-commands 1\ncursor 9\n");
	for (unsigned i = 0; i < AG_REPLAY_MAX; i++)
		fprintf(fp, "%032x %d\n", i, NOW + 100 + (i == 7 ? -200 : 0));
	fclose(fp);
	assert_status(CF_OK, ag_replay_open(f->dir, NOW, &r, &err), &err);
	/* One expired at the open: room for exactly one more. */
	assert_int_equal(ag_replay_count(r), AG_REPLAY_MAX - 1);
	snprintf(id, sizeof(id), "%032x", 0xabcdefu);
	assert_status(CF_OK, ag_replay_record(r, id, NOW + 10, 10, NOW, &err),
		      &err);
	snprintf(id, sizeof(id), "%032x", 0xabcdeeu);
	assert_status(CF_ERR_LIMIT, ag_replay_record(r, id, NOW + 10, 11, NOW,
						     &err), &err);
	/* Nothing was forgotten to make room. */
	snprintf(id, sizeof(id), "%032x", 3u);
	assert_true(ag_replay_seen(r, id));
	ag_replay_free(r);

	fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp, "coffer-agent-commands 1\ncursor 9\nnot an id 5\n");
	fclose(fp);
	assert_status(CF_ERR_PARSE, ag_replay_open(f->dir, NOW, &r, &err),
		      &err);
	assert_non_null(strstr(err.msg, "line 3"));
	fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp, "coffer-agent-commands 2\ncursor 9\n");
	fclose(fp);
	assert_status(CF_ERR_PARSE, ag_replay_open(f->dir, NOW, &r, &err),
		      &err);
}

static void runs_and_answers(void **state)
{
	fixture *f = *state;
	ag_commands *c = commands_new(f, 0);
	char id1[CF_CMD_ID_LEN + 1], id2[CF_CMD_ID_LEN + 1];
	char id3[CF_CMD_ID_LEN + 1], id4[CF_CMD_ID_LEN + 1];
	cf_cmd_result *res;
	char want[128];

	feed(c, good(1, "hello", NULL, NULL, id1), good(2, "env", NULL, NULL,
							id2));
	feed(c, good(3, "echo", "a b", "--c", id3), good(4, "fail", NULL, NULL,
							  id4));
	assert_int_equal(ag_commands_cursor(c), 4);
	assert_int_equal(f->posts.n, 0);        /* not threaded: at drain */
	ag_commands_drain(c);
	assert_int_equal(f->posts.n, 4);

	res = answer(f, 0, P.op, P.op_key, id1);
	assert_int_equal(res->status, CF_RESULT_OK);
	assert_int_equal(res->exit_code, 0);
	assert_int_equal(res->out_len, 6);
	assert_memory_equal(res->out, "hello\n", 6);
	assert_int_equal(res->received, NOW);
	cf_cmd_result_free(res);

	/* The environment: PATH and our two, nothing of the agent's. */
	res = answer(f, 1, P.op, P.op_key, id2);
	snprintf(want, sizeof(want), "COFFER_COMMAND_ID=%s\n", id2);
	assert_non_null(memmem(res->out, res->out_len, want, strlen(want)));
	assert_non_null(memmem(res->out, res->out_len,
			       "COFFER_COMMAND_SENDER=tech\n", 27));
	assert_non_null(memmem(res->out, res->out_len, "PATH=/", 6));
	assert_null(memmem(res->out, res->out_len, "HOME=", 5));
	cf_cmd_result_free(res);

	/* Arguments appended as words, no shell in between. */
	res = answer(f, 2, P.op, P.op_key, id3);
	assert_int_equal(res->out_len, 8);
	assert_memory_equal(res->out, "a b --c\n", 8);
	cf_cmd_result_free(res);

	res = answer(f, 3, P.op, P.op_key, id4);
	assert_int_equal(res->status, CF_RESULT_FAILED);
	assert_int_equal(res->exit_code, 3);
	assert_int_equal(res->err_len, 5);
	assert_memory_equal(res->err_out, "oops\n", 5);
	cf_cmd_result_free(res);
	ag_commands_free(c);

	/* The cursor survives a restart. */
	c = commands_new(f, 0);
	assert_int_equal(ag_commands_cursor(c), 4);
	ag_commands_free(c);
}

static void refusals(void **state)
{
	fixture *f = *state;
	ag_commands *c = commands_new(f, 0);
	char id[8][CF_CMD_ID_LEN + 1];
	const char *other = "0123456789abcdef0123456789abcdef";

	/* Not agent.manage on web: even a "hostile server" delivers it. */
	feed(c, entry(NULL, 1, "count", NULL, NULL, "group:web", NOW - 5,
		      NOW + 60, P.weak, P.weak_key, P.agent, id[0]),
	     /* For another agent. */
	     entry(NULL, 2, "count", NULL, NULL, "agent:web-2", NOW - 5,
		   NOW + 60, P.op, P.op_key, P.agent, id[1]));
	/* Expired, and issued too far ahead. */
	feed(c, entry(NULL, 3, "count", NULL, NULL, "agent:web-1", NOW - 100,
		      NOW - 1, P.op, P.op_key, P.agent, id[2]),
	     entry(NULL, 4, "count", NULL, NULL, "agent:web-1",
		   NOW + CF_CMD_SKEW + 10, NOW + CF_CMD_SKEW + 60, P.op,
		   P.op_key, P.agent, id[3]));
	/* Unconfigured action; arguments under args = none and a REGEX. */
	feed(c, good(5, "restart-db", NULL, NULL, id[4]),
	     good(6, "count", "x", NULL, id[5]));
	feed(c, good(7, "tail", "abc", "abc;rm", id[6]),
	     good(8, "status", "x", NULL, id[7]));
	ag_commands_drain(c);
	assert_int_equal(count_lines(f), 0);
	assert_int_equal(f->posts.n, 8);
	assert_refused(f, 0, id[0], "CF_ERR_PERMISSION", P.weak, P.weak_key);
	assert_refused(f, 1, id[1], "CF_ERR_NAME", P.op, P.op_key);
	assert_refused(f, 2, id[2], "CF_ERR_EXPIRED", P.op, P.op_key);
	assert_refused(f, 3, id[3], "CF_ERR_EXPIRED", P.op, P.op_key);
	assert_refused(f, 4, id[4], "CF_ERR_NOT_FOUND", P.op, P.op_key);
	assert_refused(f, 5, id[5], "CF_ERR_PERMISSION", P.op, P.op_key);
	assert_refused(f, 6, id[6], "CF_ERR_PERMISSION", P.op, P.op_key);
	assert_refused(f, 7, id[7], "CF_ERR_PERMISSION", P.op, P.op_key);

	/* The server hands one command's record under another id: dropped,
	 * not answered (an answer would carry the server's id, so a server
	 * could have the agent sign "refused" for a command it never saw),
	 * and the record's own command can still run when it comes
	 * properly. */
	{
		char real[CF_CMD_ID_LEN + 1];
		json_t *e = good(9, "count", NULL, NULL, real);
		json_t *again = json_deep_copy(e);

		json_object_set_new(e, "id", json_string(other));
		feed(c, e, NULL);
		ag_commands_drain(c);
		assert_int_equal(f->posts.n, 8);
		assert_int_equal(count_lines(f), 0);
		json_object_set_new(again, "seq", json_integer(10));
		feed(c, again, NULL);
		ag_commands_drain(c);
		assert_int_equal(count_lines(f), 1);
		assert_int_equal(f->posts.n, 9);
		assert_string_equal(f->posts.id[8], real);
	}
	ag_commands_free(c);
}

static void replays_and_drops(void **state)
{
	fixture *f = *state;
	ag_commands *c = commands_new(f, 0);
	char id[CF_CMD_ID_LEN + 1], junk_id[CF_CMD_ID_LEN + 1];
	json_t *e = good(1, "count", NULL, NULL, id), *copy = json_deep_copy(e);
	json_t *junk;

	feed(c, e, NULL);
	ag_commands_drain(c);
	assert_int_equal(count_lines(f), 1);
	/* The same record posted again (a retry, or a hostile server). */
	json_object_set_new(copy, "seq", json_integer(2));
	feed(c, json_deep_copy(copy), NULL);
	ag_commands_drain(c);
	assert_int_equal(count_lines(f), 1);
	assert_int_equal(f->posts.n, 2);
	assert_refused(f, 1, id, "CF_ERR_REPLAY", P.op, P.op_key);
	ag_commands_free(c);

	/* ... and after a restart of the agent. */
	c = commands_new(f, 0);
	json_object_set_new(copy, "seq", json_integer(3));
	feed(c, copy, NULL);
	ag_commands_drain(c);
	assert_int_equal(count_lines(f), 1);
	assert_int_equal(f->posts.n, 3);
	assert_refused(f, 2, id, "CF_ERR_REPLAY", P.op, P.op_key);

	/* Sealed to another agent, or not an envelope: dropped, unanswered,
	 * the cursor still moves on. */
	junk = entry(NULL, 4, "count", NULL, NULL, "group:web", NOW - 5,
		     NOW + 60, P.op, P.op_key, P.other, junk_id);
	feed(c, junk, json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)5, "id",
				junk_id, "envelope", "AAAA"));
	ag_commands_drain(c);
	assert_int_equal(f->posts.n, 3);
	assert_int_equal(ag_commands_cursor(c), 5);
	assert_int_equal(count_lines(f), 1);
	ag_commands_free(c);
}

static void built_ins(void **state)
{
	fixture *f = *state;
	ag_commands *c = commands_new(f, 0);
	char id1[CF_CMD_ID_LEN + 1], id2[CF_CMD_ID_LEN + 1];
	cf_cmd_result *res;

	feed(c, good(1, "status", NULL, NULL, id1), good(2, "refresh", NULL,
							  NULL, id2));
	assert_int_equal(ag_commands_refresh_wanted(c), 1);
	ag_commands_refresh_done(c, 0, "refresh: fine\n");
	assert_int_equal(ag_commands_refresh_wanted(c), 0);
	ag_commands_drain(c);
	assert_int_equal(f->posts.n, 2);
	res = answer(f, 0, P.op, P.op_key, id1);
	assert_int_equal(res->status, CF_RESULT_OK);
	assert_int_equal(res->out_len, 18);
	assert_memory_equal(res->out, "the status report\n", 18);
	cf_cmd_result_free(res);
	res = answer(f, 1, P.op, P.op_key, id2);
	assert_int_equal(res->status, CF_RESULT_OK);
	assert_memory_equal(res->out, "refresh: fine\n", 14);
	cf_cmd_result_free(res);
	ag_commands_free(c);
}

static void timeouts_and_missing(void **state)
{
	fixture *f = *state;
	ag_commands *c = commands_new(f, 0);
	char id1[CF_CMD_ID_LEN + 1], id2[CF_CMD_ID_LEN + 1];
	cf_cmd_result *res;
	double t0 = now_s();

	feed(c, good(1, "slow", NULL, NULL, id1), good(2, "missing", NULL, NULL,
							id2));
	ag_commands_drain(c);
	assert_true(now_s() - t0 < 3.0);
	res = answer(f, 0, P.op, P.op_key, id1);
	assert_int_equal(res->status, CF_RESULT_FAILED);
	assert_true(res->timed_out);
	assert_int_equal(res->exit_code, -1);
	assert_int_equal(res->signal, SIGTERM);
	assert_non_null(strstr(res->reason, "did not finish"));
	cf_cmd_result_free(res);
	res = answer(f, 1, P.op, P.op_key, id2);
	assert_int_equal(res->status, CF_RESULT_FAILED);
	assert_string_equal(res->code, "CF_ERR_IO");
	assert_non_null(strstr(res->reason, "/nonexistent/program"));
	cf_cmd_result_free(res);
	ag_commands_free(c);
}

static void threaded_worker(void **state)
{
	fixture *f = *state;
	ag_commands *c = commands_new(f, 1);
	char id1[CF_CMD_ID_LEN + 1], id2[CF_CMD_ID_LEN + 1];
	cf_cmd_result *res;
	double t0;

	/* The first post fails: the answer is posted again a second later. */
	f->posts.fail_first = 1;
	t0 = now_s();
	feed(c, good(1, "hello", NULL, NULL, id1), NULL);
	/* take returns at once: the action runs on the worker. */
	assert_true(now_s() - t0 < 1.0);
	ag_commands_drain(c);
	assert_int_equal(f->posts.calls, 2);
	assert_int_equal(f->posts.n, 1);
	res = answer(f, 0, P.op, P.op_key, id1);
	assert_int_equal(res->status, CF_RESULT_OK);
	cf_cmd_result_free(res);
	assert_int_equal(ag_commands_pending(c), 0);

	/* Stopping the agent stops a running action within ~1-2 s. */
	feed(c, good(2, "long", NULL, NULL, id2), NULL);
	{
		struct timespec ms200 = { 0, 200 * 1000 * 1000 };

		nanosleep(&ms200, NULL);
	}
	t0 = now_s();
	ag_commands_free(c);
	assert_true(now_s() - t0 < 2.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(args_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(capture_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(capture_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(replay_store, setup, teardown),
		cmocka_unit_test_setup_teardown(replay_full_and_damaged, setup,
						teardown),
		cmocka_unit_test_setup_teardown(runs_and_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(replays_and_drops, setup,
						teardown),
		cmocka_unit_test_setup_teardown(built_ins, setup, teardown),
		cmocka_unit_test_setup_teardown(timeouts_and_missing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(threaded_worker, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
