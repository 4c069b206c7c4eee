/*
 * cmd.c - `coffer cmd run|ls|show`: operator-to-agent commands
 * (docs/COMMANDS.md).
 *
 * run builds one command record (tenant, random id, action, arguments,
 * issue and expiry times, the --to targets), signs it once with the
 * operator's key, seals it to each target agent's certificate - resolved
 * through the server's directory and verified here against COFFER_ROOT
 * and the CRL, exactly as `put` does - and posts the envelopes to the
 * agents' mailboxes.  Then it long-polls for the answers and prints each
 * as it arrives, but only after it decrypted with the operator's key, was
 * signed by the certificate of the agent it was sent to (same root, not
 * revoked) and answers this command id: the server relays answers, it
 * cannot make or alter one that is believed.
 */
#include <getopt.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "b64.h"
#include "cli.h"
#include "client.h"
#include "command.h"
#include "envelope.h"
#include "pki.h"
#include "policy.h"
#include "recipients.h"
#include "sealing.h"

#define DEFAULT_TIMEOUT 30
#define CHUNK_BYTES (1024u * 1024u)  /* request body per POST, below 2 MiB */
#define POLL_MAX 30                  /* seconds of one long-poll */

static void cmd_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer cmd run --to agent:NAME|group:G [--to ...] [--timeout 30s]\n"
		"                      [--json] ACTION [--] [ARG...]\n"
		"       coffer cmd ls [--limit N] [--json]\n"
		"       coffer cmd show ID [--json]\n"
		"\n"
		"Operator-to-agent commands (docs/COMMANDS.md).  `run` signs one\n"
		"command with your key, encrypts it to each target agent's verified\n"
		"certificate, posts it to their mailboxes on the server, and prints\n"
		"each agent's verified answer as it arrives (exit status, stdout,\n"
		"stderr), then a summary.  An agent runs only actions of its own\n"
		"configuration ([action NAME]) and checks your agent.manage rights\n"
		"itself; the server sees neither the action nor its output.\n"
		"\n"
		"  --to SPEC      agent:NAME or group:G; repeatable\n"
		"  --             ends the options: what follows are the action's\n"
		"                 arguments even if they start with '-' (-n 5)\n"
		"  --timeout D    how long agents may still start the command and how\n"
		"                 long to wait for answers (default 30s; s, m, h)\n"
		"  --json         one JSON object per agent per line, as answers arrive\n"
		"  --limit N      (ls) at most N commands, newest first (default 50)\n"
		"\n"
		"Exit status: 0 every agent ran it and exited 0; 35 some agent failed,\n"
		"refused it, or answered with a result that does not verify; 27 some\n"
		"agent gave no answer before the timeout (and none failed).\n"
		"\n%s", cli_settings_help);
}

/* ---- answers ------------------------------------------------------------------ */

/* What became of one recipient. */
enum outcome { PENDING = 0, OK, FAILED, REFUSED, REJECTED };

struct target {
	char fp[65];
	char name[CF_CN_MAX_BYTES + 1];
	enum outcome outcome;
};

struct tally {
	struct target *t;
	size_t n;
	size_t ok, failed, refused, rejected;
	int as_json;
};

static struct target *find_target(struct tally *tl, const char *fp)
{
	for (size_t i = 0; i < tl->n; i++)
		if (strcmp(tl->t[i].fp, fp) == 0)
			return &tl->t[i];
	return NULL;
}

/* Bytes as a JSON string if they are UTF-8, else NULL. */
static json_t *text_json(const unsigned char *buf, size_t len)
{
	return json_stringn(len ? (const char *)buf : "", len);
}

static void put_output(json_t *o, const char *key, const unsigned char *buf,
		       size_t len, bool cut)
{
	char key_b64[32], key_cut[32];
	json_t *s = text_json(buf, len);

	snprintf(key_b64, sizeof(key_b64), "%s_base64", key);
	snprintf(key_cut, sizeof(key_cut), "%s_cut", key);
	if (s != NULL)
		json_object_set_new(o, key, s);
	else
		json_object_set_new(o, key_b64, cli_b64_json(buf, len));
	json_object_set_new(o, key_cut, json_boolean(cut));
}

/* One compact line (jansson allocates from the secure heap: no json_dumps). */
static void print_json_line(json_t *o)
{
	if (o != NULL &&
	    json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) == 0)
		putchar('\n');
	fflush(stdout);
	json_decref(o);
}

/* Prints a buffer of outside bytes: its lines indented, controls shown. */
static void print_block(const char *label, const unsigned char *buf,
			size_t len, bool cut)
{
	if (len == 0 && !cut)
		return;
	if (label != NULL)
		printf("   %s:\n", label);
	fputs("   | ", stdout);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = buf[i];

		if (ch == '\n') {
			fputs(i + 1 < len ? "\n   | " : "", stdout);
			continue;
		}
		/* No terminal escapes from a remote machine. */
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			printf("\\x%02x", ch);
		else
			putchar(ch);
	}
	putchar('\n');
	if (cut)
		printf("   [cut at %d bytes]\n", CF_CMD_OUTPUT_MAX);
}

static void report_result(struct tally *tl, struct target *t,
			  const cf_cmd_result *res)
{
	char pname[CF_CN_MAX_BYTES + 1];
	double secs = res->finished >= res->started ?
		      (double)(res->finished - res->started) : 0;

	t->outcome = res->status == CF_RESULT_OK ? OK :
		     res->status == CF_RESULT_FAILED ? FAILED : REFUSED;
	if (t->outcome == OK)
		tl->ok++;
	else if (t->outcome == FAILED)
		tl->failed++;
	else
		tl->refused++;
	if (tl->as_json) {
		json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "agent", t->name,
			"fp", t->fp, "id", res->id, "status",
			cf_result_status_name(res->status));

		if (o == NULL)
			return;
		if (res->status == CF_RESULT_REFUSED) {
			json_object_set_new(o, "code", json_string(res->code));
			json_object_set_new(o, "reason", json_string(res->reason));
		} else {
			json_object_set_new(o, "exit", json_integer(res->exit_code));
			json_object_set_new(o, "signal", json_integer(res->signal));
			json_object_set_new(o, "timed_out",
					    json_boolean(res->timed_out));
			put_output(o, "stdout", res->out, res->out_len,
				   res->out_cut);
			put_output(o, "stderr", res->err_out, res->err_len,
				   res->err_cut);
			json_object_set_new(o, "started",
					    json_integer(res->started));
			json_object_set_new(o, "finished",
					    json_integer(res->finished));
		}
		print_json_line(o);
		return;
	}
	cli_printable(t->name, pname, sizeof(pname));
	if (res->status == CF_RESULT_REFUSED &&
	    strcmp(res->code, "CF_ERR_REPLAY") == 0) {
		/* The agent saw this id before: it ran it at most once, maybe
		 * then; the answer of that first delivery did not reach us. */
		printf("== %s: delivered again (CF_ERR_REPLAY): the agent ran "
		       "it at most once, perhaps at an earlier delivery whose "
		       "answer was lost; it did not run it now\n", pname);
	} else if (res->status == CF_RESULT_REFUSED) {
		char preason[CF_CMD_REASON_MAX + 1];

		printf("== %s: refused (%s): %s\n", pname, res->code,
		       cli_printable(res->reason, preason, sizeof(preason)));
	} else if (res->timed_out) {
		printf("== %s: failed: killed at its timeout after %.0f s\n",
		       pname, secs);
	} else if (res->signal != 0) {
		printf("== %s: failed: killed by signal %d after %.0f s\n", pname,
		       res->signal, secs);
	} else {
		printf("== %s: %s (exit %d, %.0f s)\n", pname,
		       res->status == CF_RESULT_OK ? "ok" : "failed",
		       res->exit_code, secs);
	}
	print_block(NULL, res->out, res->out_len, res->out_cut);
	print_block("stderr", res->err_out, res->err_len, res->err_cut);
	fflush(stdout);
}

static void report_rejected(struct tally *tl, struct target *t,
			    const char *fp, const cf_error *why)
{
	char pname[CF_CN_MAX_BYTES + 1];

	tl->rejected++;
	if (t != NULL)
		t->outcome = REJECTED;
	if (tl->as_json) {
		print_json_line(json_pack("{s:s,s:s,s:s,s:s,s:s}", "agent",
			t ? t->name : "", "fp", fp, "status", "rejected",
			"code", cf_status_name(why->code), "reason", why->msg));
		return;
	}
	{
		char pfp[80], pmsg[CF_ERROR_MAX];

		printf("== %s: result rejected: %s\n",
		       t ? cli_printable(t->name, pname, sizeof(pname)) :
		       cli_printable(fp, pfp, sizeof(pfp)),
		       cli_printable(why->msg, pmsg, sizeof(pmsg)));
	}
	fflush(stdout);
}

/*
 * Opens and reports the answers of one GET /v1/commands/ID reply; new
 * answers only (a target that already answered is not reported again).
 * *cursor moves past them.
 */
static cf_status take_answers(cli_client *c, const char *id, json_t *resp,
			      struct tally *tl, int64_t *cursor,
			      cf_error *err)
{
	const cf_trust *trust = NULL;
	json_t *e;
	size_t i;
	cf_status rc = cli_client_trust(c, &trust, err);

	if (rc != CF_OK)
		return rc;
	json_array_foreach(json_object_get(resp, "results"), i, e) {
		const char *fp = cli_json_str(e, "fp");
		struct target *t = find_target(tl, fp);
		unsigned char *der = NULL;
		size_t len = 0;
		cf_cmd_result *res = NULL;
		cf_error why = { 0 };

		if (cli_json_int(e, "seq") > *cursor)
			*cursor = cli_json_int(e, "seq");
		if (t != NULL && t->outcome != PENDING)
			continue;
		if (t == NULL) {
			/* Not one we sealed to: the server made it up. */
			cf_error_set(&why, CF_ERR_NAME, "an answer from %.64s, to "
				     "whom this command was not sent", fp);
			report_rejected(tl, NULL, fp, &why);
			continue;
		}
		rc = cli_b64_decode(cli_json_str(e, "envelope"), "an answer",
				    &der, &len, &why);
		if (rc == CF_OK)
			rc = cf_cmd_result_open(der, len, cli_client_cert(c),
						cli_client_key(c), trust, id,
						t->fp, &res, &why);
		if (rc == CF_OK)
			report_result(tl, t, res);
		else
			report_rejected(tl, t, fp, &why);
		cf_cmd_result_free(res);
		OPENSSL_free(der);
	}
	return CF_OK;
}

/* The summary line, and the exit status it means. */
static int summarize(struct tally *tl, const char *what)
{
	size_t silent = 0;

	for (size_t i = 0; i < tl->n; i++)
		if (tl->t[i].outcome == PENDING) {
			silent++;
			if (tl->as_json)
				print_json_line(json_pack("{s:s,s:s,s:s}", "agent",
					tl->t[i].name, "fp", tl->t[i].fp,
					"status", "no answer"));
		}
	if (!tl->as_json) {
		for (size_t i = 0; i < tl->n; i++)
			if (tl->t[i].outcome == PENDING) {
				char pname[CF_CN_MAX_BYTES + 1];

				printf("== %s: no answer\n",
				       cli_printable(tl->t[i].name, pname,
						     sizeof(pname)));
			}
		printf("%s on %zu agent(s): %zu ok, %zu failed, %zu refused, "
		       "%zu rejected, %zu no answer\n", what, tl->n, tl->ok,
		       tl->failed, tl->refused, tl->rejected, silent);
	}
	if (tl->failed + tl->refused + tl->rejected > 0)
		return cli_exit_code(CF_ERR_FAILED);
	if (silent > 0)
		return cli_exit_code(CF_ERR_TIMEOUT);
	return 0;
}

/* Long-polls the answers until every target answered or deadline. */
static cf_status wait_answers(cli_client *c, const char *id,
			      struct tally *tl, time_t deadline,
			      cf_error *err)
{
	int64_t cursor = 0;
	char path[200];
	cf_status rc = CF_OK;

	for (;;) {
		size_t done = 0;
		json_t *resp = NULL;
		time_t now = time(NULL);
		long wait = deadline > now ? (long)(deadline - now) : 0;

		for (size_t i = 0; i < tl->n; i++)
			done += tl->t[i].outcome != PENDING;
		if (done == tl->n)
			break;
		if (wait > POLL_MAX)
			wait = POLL_MAX;
		snprintf(path, sizeof(path), "/v1/commands/%s?since=%lld&wait=%ld",
			 id, (long long)cursor, wait);
		cli_client_set_timeout(c, wait + 30);
		rc = cli_client_call(c, "GET", path, NULL, &resp, err);
		if (rc == CF_OK)
			rc = take_answers(c, id, resp, tl, &cursor, err);
		json_decref(resp);
		if (rc != CF_OK || wait == 0)
			break;
	}
	return rc;
}

/* ---- run ------------------------------------------------------------------------ */

/* agent.manage on the agent's name or one of its groups (as the agent checks). */
static int may_manage(const cf_perms *perms, const cli_rcpt *r)
{
	char *groups = NULL, *save = NULL, *g;
	cf_error quiet = { 0 };
	int ok = cf_perms_allows(perms, "agent.manage", r->name);

	if (ok || cf_cert_ext_text(r->cert, cf_nid_groups(), &groups,
				   &quiet) != CF_OK || groups == NULL)
		return ok;
	for (g = strtok_r(groups, ",", &save); g != NULL && !ok;
	     g = strtok_r(NULL, ",", &save))
		ok = cf_perms_allows(perms, "agent.manage", g);
	OPENSSL_free(groups);
	return ok;
}

/* Posts the sealed envelopes, in bodies of at most CHUNK_BYTES. */
static cf_status post_command(cli_client *c, const cf_command *cmd,
			      cf_sealer *sealer, const cli_rcpts *r,
			      cf_error *err)
{
	json_t *body = NULL, *list = NULL, *resp = NULL;
	size_t i = 0, in_body = 0, bytes = 0;
	char path[100];
	int first = 1;
	cf_status rc = CF_OK;

	while (rc == CF_OK && i < r->n) {
		unsigned char *der = NULL;
		size_t len = 0;
		json_t *env;

		if (list == NULL) {
			list = json_array();
			body = first ? json_pack("{s:s,s:I}", "id", cmd->id,
						 "expires", (json_int_t)cmd->expires)
				     : json_object();
			if (list == NULL || body == NULL) {
				rc = cf_error_set(err, CF_ERR_NOMEM,
						  "out of memory");
				break;
			}
			in_body = bytes = 0;
		}
		rc = cf_sealer_seal(sealer, r->v[i].cert, &der, &len, err);
		if (rc != CF_OK)
			break;
		env = json_pack("{s:s,s:o}", "recipient", r->v[i].fp,
				"envelope", cli_b64_json(der, len));
		OPENSSL_free(der);
		if (env == NULL || json_array_append_new(list, env) != 0) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
			break;
		}
		in_body++;
		bytes += len * 4 / 3 + 100;
		i++;
		cli_progress("sealing", i, r->n);
		if (i < r->n && bytes < CHUNK_BYTES)
			continue;
		json_object_set_new(body, "envelopes", list);
		list = NULL;
		if (first)
			snprintf(path, sizeof(path), "/v1/commands");
		else
			snprintf(path, sizeof(path), "/v1/commands/%s/recipients",
				 cmd->id);
		rc = cli_client_call(c, "POST", path, body, &resp, err);
		json_decref(resp);
		resp = NULL;
		json_decref(body);
		body = NULL;
		first = 0;
		(void)in_body;
	}
	json_decref(list);
	json_decref(body);
	return rc;
}

static int cmds_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const char **to = NULL;
	size_t n_to = 0;
	long long timeout = DEFAULT_TIMEOUT;
	cli_rcpts r = { 0 };
	cf_command *cmd = NULL;
	cf_perms *perms = NULL;
	cf_secret *json = NULL, *signed_der = NULL;
	cf_sealer *sealer = NULL;
	struct tally tl = { 0 };
	const cf_trust *trust = NULL;
	char me[CF_CN_MAX_BYTES + 1], what[CF_CMD_ACTION_MAX + 80];
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	int ch, code = 0;

	to = OPENSSL_zalloc(sizeof(*to) * (size_t)argc);
	cmd = cf_command_new();
	if (to == NULL || cmd == NULL) {
		code = 1;
		goto done;
	}
	/*
	 * Options may come anywhere (as with every coffer command); an
	 * argument of the action that starts with '-' goes after "--".
	 */
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 't': to[n_to++] = optarg; break;
		case 'T':
			if (cli_parse_duration(optarg, &timeout) != 0 ||
			    timeout < 1 || timeout > CF_CMD_LIFETIME_MAX) {
				code = cli_usage("cmd run", "--timeout must be a "
						 "duration from 1s to 7d (30s, "
						 "5m, 1h)");
				goto done;
			}
			break;
		case 'j': tl.as_json = 1; break;
		case 'h': cmd_usage(stdout); goto done;
		default: code = cli_bad_option("cmd run"); goto done;
		}
	}
	if (optind >= argc) {
		code = cli_usage("cmd run", "give the ACTION to run (and its "
				 "arguments)");
		goto done;
	}
	if (n_to == 0) {
		code = cli_usage("cmd run", "give at least one --to "
				 "agent:NAME or group:G");
		goto done;
	}
	if (cf_action_name_check(argv[optind], &err) != CF_OK)
		goto fail;
	snprintf(cmd->action, sizeof(cmd->action), "%s", argv[optind]);
	for (int a = optind + 1; a < argc; a++)
		if (cf_command_add_arg(cmd, argv[a], &err) != CF_OK)
			goto fail;
	for (size_t i = 0; i < n_to; i++)
		if (cf_command_add_target(cmd, to[i], &err) != CF_OK) {
			err.code = CF_ERR_USAGE;
			goto fail;
		}
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c,
				&err);
	if (rc != CF_OK)
		goto fail;
	cf_cert_cn(cli_client_cert(c), me, sizeof(me));
	rc = cf_cert_perms(cli_client_cert(c), &perms, &err);
	if (rc == CF_OK && cf_cert_kind(cli_client_cert(c)) != CF_KIND_OPERATOR)
		rc = cf_error_set(&err, CF_ERR_PERMISSION, "you (\"%s\") are no "
				  "operator; only operators command agents", me);
	if (rc == CF_OK)
		rc = cli_client_trust(c, &trust, &err);
	if (rc == CF_OK)
		rc = cf_trust_verify(trust, cli_client_cert(c),
				     cli_client_chain(c), "your certificate",
				     &err);
	for (size_t i = 0; rc == CF_OK && i < n_to; i++)
		rc = cli_resolve(c, to[i], &r, &err);
	if (rc == CF_OK && r.n == 0)
		rc = cf_error_set(&err, CF_ERR_NOT_FOUND, "no agent to send the "
				  "command to (every member was skipped)");
	for (size_t i = 0; rc == CF_OK && i < r.n; i++)
		if (!may_manage(perms, &r.v[i]))
			rc = cf_error_set(&err, CF_ERR_PERMISSION, "you (\"%s\") "
				"hold no agent.manage rule matching agent \"%s\" "
				"or its groups", me, r.v[i].name);
	if (rc != CF_OK)
		goto fail;

	snprintf(cmd->tenant, sizeof(cmd->tenant), "%s", cli_client_tenant(c));
	cmd->issued = (int64_t)time(NULL);
	cmd->expires = cmd->issued + timeout;
	rc = cf_command_id_new(cmd->id, &err);
	if (rc == CF_OK)
		rc = cf_command_encode(cmd, &json, &err);
	if (rc == CF_OK)
		rc = cf_envelope_sign_as(json, cf_nid_command(),
					 cli_client_cert(c), cli_client_key(c),
					 cli_client_chain(c), &signed_der, &err);
	if (rc == CF_OK)
		rc = cf_sealer_new(signed_der, &sealer, &err);
	if (rc == CF_OK)
		rc = post_command(c, cmd, sealer, &r, &err);
	if (rc != CF_OK)
		goto fail;
	if (!tl.as_json) {
		printf("command %s: %s sent to %zu agent(s), answers for %llds\n",
		       cmd->id, cmd->action, r.n, timeout);
		fflush(stdout);
	}
	tl.n = r.n;
	tl.t = calloc(r.n, sizeof(*tl.t));
	if (tl.t == NULL) {
		rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < r.n; i++) {
		memcpy(tl.t[i].fp, r.v[i].fp, sizeof(tl.t[i].fp));
		memcpy(tl.t[i].name, r.v[i].name, sizeof(tl.t[i].name));
	}
	rc = wait_answers(c, cmd->id, &tl, (time_t)cmd->expires, &err);
	if (rc != CF_OK)
		goto fail;
	snprintf(what, sizeof(what), "%s (command %.8s)", cmd->action,
		 cmd->id);
	code = summarize(&tl, what);
	goto done;
fail:
	code = cli_fail(&err);
done:
	free(tl.t);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	cf_secret_free(json);
	cf_perms_free(perms);
	cf_command_free(cmd);
	cli_rcpts_free(&r);
	cli_client_free(c);
	OPENSSL_free(to);
	return code;
}

/* ---- ls, show ------------------------------------------------------------------- */

static int cmds_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "limit", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	json_t *resp = NULL, *e;
	unsigned long long limit = 50;
	char path[80];
	size_t i;
	cf_error err = { 0 };
	cf_status rc;
	int ch, as_json = 0;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'l':
			if (cli_parse_uint("cmd ls", "--limit", optarg, 1000,
					   &limit) != 0)
				return 2;
			break;
		case 'j': as_json = 1; break;
		case 'h': cmd_usage(stdout); return 0;
		default: return cli_bad_option("cmd ls");
		}
	}
	if (optind != argc)
		return cli_usage("cmd ls", "takes no arguments");
	snprintf(path, sizeof(path), "/v1/commands?limit=%llu", limit);
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY, &c, &err);
	if (rc == CF_OK)
		rc = cli_client_call(c, "GET", path, NULL, &resp, &err);
	if (rc == CF_OK && as_json) {
		cli_json_print(json_object_get(resp, "commands"));
	} else if (rc == CF_OK) {
		printf("%-32s  %-20s  %-20s  %s\n", "ID", "SENT", "EXPIRES",
		       "ANSWERED");
		json_array_foreach(json_object_get(resp, "commands"), i, e) {
			char sent[32], exp[32], pid[40];

			cli_unix_iso(cli_json_int(e, "created"), sent, sizeof(sent));
			cli_unix_iso(cli_json_int(e, "expires"), exp, sizeof(exp));
			printf("%-32s  %-20s  %-20s  %lld/%lld\n",
			       cli_printable(cli_json_str(e, "id"), pid,
					     sizeof(pid)), sent, exp,
			       cli_json_int(e, "answered"),
			       cli_json_int(e, "recipients"));
		}
	}
	json_decref(resp);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

static int cmds_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	json_t *resp = NULL, *e;
	struct tally tl = { 0 };
	int64_t cursor = 0;
	char path[200], sent[32], exp[32];
	const char *id;
	size_t i;
	cf_error err = { 0 };
	cf_status rc;
	int ch, code;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'j': tl.as_json = 1; break;
		case 'h': cmd_usage(stdout); return 0;
		default: return cli_bad_option("cmd show");
		}
	}
	if (optind + 1 != argc || !cf_command_id_valid(argv[optind]))
		return cli_usage("cmd show", "give one command ID (32 lower-case "
				 "hex characters; coffer cmd ls lists them)");
	id = argv[optind];
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c,
				&err);
	/* The answers page by page; the recipients come with every page. */
	while (rc == CF_OK) {
		json_decref(resp);
		resp = NULL;
		snprintf(path, sizeof(path), "/v1/commands/%s?since=%lld", id,
			 (long long)cursor);
		rc = cli_client_call(c, "GET", path, NULL, &resp, &err);
		if (rc != CF_OK)
			break;
		if (tl.t == NULL) {
			json_t *list = json_object_get(resp, "recipients");

			tl.n = json_array_size(list);
			tl.t = calloc(tl.n ? tl.n : 1, sizeof(*tl.t));
			if (tl.t == NULL) {
				rc = cf_error_set(&err, CF_ERR_NOMEM,
						  "out of memory");
				break;
			}
			json_array_foreach(list, i, e) {
				snprintf(tl.t[i].fp, sizeof(tl.t[i].fp), "%s",
					 cli_json_str(e, "fp"));
				snprintf(tl.t[i].name, sizeof(tl.t[i].name), "%s",
					 cli_json_str(e, "name"));
			}
			cli_unix_iso(cli_json_int(resp, "created"), sent,
				     sizeof(sent));
			cli_unix_iso(cli_json_int(resp, "expires"), exp,
				     sizeof(exp));
			if (!tl.as_json)
				printf("command %s: sent %s, expires %s, %lld of "
				       "%zu answered\n", id, sent, exp,
				       cli_json_int(resp, "answered"), tl.n);
		}
		rc = take_answers(c, id, resp, &tl, &cursor, &err);
		if (!json_is_true(json_object_get(resp, "more")))
			break;
	}
	json_decref(resp);
	cli_client_free(c);
	if (rc != CF_OK) {
		free(tl.t);
		return cli_fail(&err);
	}
	code = summarize(&tl, "command");
	free(tl.t);
	return code;
}

int cmd_cmd(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "run", cmds_run },
		{ "ls", cmds_ls },
		{ "show", cmds_show },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    cmd_usage);
}
