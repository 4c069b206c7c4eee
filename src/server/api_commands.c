/*
 * api_commands.c - the command mailbox (docs/COMMANDS.md, docs/API.md
 * "Commands"): operators post signed, sealed commands for agents; agents
 * take them from their feed (api_secrets.c) and post sealed answers;
 * the sender reads the answers.
 *
 *   POST /v1/commands                  operator: agent.manage on every
 *                                      recipient (its name or a group)
 *   POST /v1/commands/ID/recipients    the command's sender: more of them
 *   POST /v1/commands/ID/result        an agent the command was sent to
 *   GET  /v1/commands                  operator: its own commands
 *   GET  /v1/commands/ID               the sender: recipients and answers
 *                                      (long-poll while some are missing)
 *
 * The server cannot read what it relays: a command is an envelope per
 * agent, an answer an envelope to the sender.  It checks who may post to
 * whom, sizes, the pending limit per agent and the expiry, and logs
 * metadata only (cmd.send, cmd.result, cmd.read; cmd.fetch in the feed):
 * the command id, the parties, byte counts.  Whether a command may run is
 * the agent's decision alone; these checks only keep the mailbox clean.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "command.h"

#define CMD_ID_LEN 32
#define ANSWERS_PER_REPLY 100

/* agent.manage on the agent's name or on one of its groups? */
static int may_manage(const srv_identity *id, const cf_cert_row *agent)
{
	if (srv_allows(id, "agent.manage", agent->name))
		return 1;
	for (const char *p = agent->groups ? agent->groups : ""; *p != '\0';) {
		size_t len = strcspn(p, ",");
		char group[CF_NAME_MAX_BYTES + 1];

		if (len > 0 && len < sizeof(group)) {
			memcpy(group, p, len);
			group[len] = '\0';
			if (srv_allows(id, "agent.manage", group))
				return 1;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

/*
 * Every recipient is an agent the caller may manage; -1 answered.
 * (api_envelopes_read has checked they are in the directory, unrevoked.)
 */
static int check_targets(srv_req *r, const srv_identity *id,
			 const api_envelopes *envs)
{
	cf_cert_row row;
	cf_error err;
	int ok = 0;

	memset(&row, 0, sizeof(row));
	for (size_t i = 0; i < envs->n && ok == 0; i++) {
		cf_cert_row_clear(&row);
		if (cf_store_cert_get(srv_req_store(r), id->tenant,
				      envs->envs[i].recipient, &row,
				      &err) != CF_OK) {
			api_fail(r, &err, "looking up a command's recipients");
			ok = -1;
		} else if (strcmp(row.kind, "agent") != 0) {
			srv_reply_error(r, 400, "bad_request",
				"recipient %s is a %s (\"%s\"), not an agent; "
				"commands go to agents only; nothing was "
				"stored", row.fp, row.kind, row.name);
			ok = -1;
		} else if (!may_manage(id, &row)) {
			srv_reply_error(r, 403, "forbidden",
				"%s \"%s\" holds no agent.manage rule matching "
				"agent \"%s\" or its groups (%s); nothing was "
				"stored", cf_kind_name(id->kind), id->name,
				row.name, row.groups && *row.groups ?
				row.groups : "none");
			ok = -1;
		}
	}
	cf_cert_row_clear(&row);
	return ok;
}

/* The command's envelopes of a POST body, checked; -1 answered. */
static int read_envelopes(srv_req *r, const srv_identity *id,
			  const json_t *body, api_envelopes *envs)
{
	if (api_envelopes_read(r, id, body, API_ENVELOPES_MAX, envs) != 0)
		return -1;
	return check_targets(r, id, envs);
}

static void post_envelopes(srv_req *r, const char *cmd_id, int64_t expires,
			   int create, const json_t *body)
{
	const srv_identity *id = srv_req_identity(r);
	api_envelopes envs = { 0 };
	cf_audit_entry audit;
	cf_error err;

	if (read_envelopes(r, id, body, &envs) != 0)
		goto out;
	srv_audit_init(r, &audit, create ? "cmd.send" : "cmd.send.more",
		       cmd_id, envs.bytes);
	if (cf_store_cmd_post(srv_req_store(r), id->tenant, cmd_id, id->fp,
			      srv_now(), expires, create, envs.envs, envs.n,
			      &audit, &err) != CF_OK) {
		api_fail(r, &err, "storing a command");
		goto out;
	}
	srv_wake(id->tenant, (const char (*)[65])envs.recipients, envs.n);
	api_reply(r, 201, json_pack("{s:s,s:I,s:I}", "id", cmd_id,
		"recipients", (json_int_t)envs.n,
		"bytes", (json_int_t)envs.bytes));
out:
	api_envelopes_clear(&envs);
}

/* An operator that holds agent.manage on something; -1 answered. */
static int need_manager(srv_req *r, const srv_identity *id, const char *what)
{
	if (api_need_operator(r, id, what) != 0)
		return -1;
	if (!api_holds(id, "agent.manage")) {
		srv_reply_error(r, 403, "forbidden",
			"%s \"%s\" holds no agent.manage rule; only operators "
			"with agent.manage on an agent may command it",
			cf_kind_name(id->kind), id->name);
		return -1;
	}
	return 0;
}

/* ---- POST /v1/commands -------------------------------------------------------- */

static void command_post(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *cmd_id;
	int64_t expires, now = srv_now();
	json_t *body;

	if (need_manager(r, id, "sending a command") != 0)
		return;
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_hex_field(r, body, "id", CMD_ID_LEN, &cmd_id) == 0 &&
	    api_int(r, body, "expires", now, now + CF_CMD_LIFETIME_MAX +
		    CF_CMD_SKEW, &expires) == 0)
		post_envelopes(r, cmd_id, expires, 1, body);
	json_decref(body);
}

/* ---- /v1/commands/ID[/recipients|/result] --------------------------------------- */

/* "ID", "ID/recipients" or "ID/result" after the prefix; -1 answered. */
static int command_path(srv_req *r, char *cmd_id, const char **sub)
{
	const char *rest = srv_req_path_rest(r);

	if (rest != NULL && strlen(rest) >= CMD_ID_LEN &&
	    (rest[CMD_ID_LEN] == '\0' || rest[CMD_ID_LEN] == '/')) {
		memcpy(cmd_id, rest, CMD_ID_LEN);
		cmd_id[CMD_ID_LEN] = '\0';
		*sub = rest + CMD_ID_LEN;
		if (api_is_hex(cmd_id, CMD_ID_LEN))
			return 0;
	}
	srv_reply_error(r, 404, "not_found",
		"no such command endpoint; a command is /v1/commands/ID (32 "
		"lower-case hex), with /recipients and /result below it");
	return -1;
}

/* The command, if the caller sent it; -1 answered (404 otherwise). */
static int load_own(srv_req *r, const srv_identity *id, const char *cmd_id,
		    cf_cmd_row *out)
{
	cf_error err;

	if (cf_store_cmd_get(srv_req_store(r), id->tenant, cmd_id, out,
			     &err) != CF_OK) {
		if (err.code != CF_ERR_NOT_FOUND) {
			api_fail(r, &err, "reading a command");
			return -1;
		}
	} else if (strcmp(out->sender, id->fp) == 0) {
		return 0;
	}
	/* Another's command is as unknown as a missing one. */
	srv_reply_error(r, 404, "not_found", "you sent no command %s "
		"(or it is older than the server keeps commands); coffer cmd "
		"ls lists yours", cmd_id);
	return -1;
}

static void command_more(srv_req *r, const char *cmd_id)
{
	const srv_identity *id = srv_req_identity(r);
	cf_cmd_row cmd;
	json_t *body;

	if (need_manager(r, id, "sending a command") != 0 ||
	    load_own(r, id, cmd_id, &cmd) != 0)
		return;
	body = srv_req_json(r);
	if (body == NULL)
		return;
	post_envelopes(r, cmd_id, cmd.expires, 0, body);
	json_decref(body);
}

static void command_result(srv_req *r, const char *cmd_id)
{
	const srv_identity *id = srv_req_identity(r);
	unsigned char *der = NULL;
	size_t len = 0;
	char sender[65];
	cf_audit_entry audit;
	json_t *body;
	cf_error err;

	if (id->kind != CF_KIND_AGENT) {
		srv_reply_error(r, 403, "forbidden",
			"%s \"%s\" is no agent; only the agents a command was "
			"sent to answer it", cf_kind_name(id->kind), id->name);
		return;
	}
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_b64_field(r, "envelope", json_object_get(body, "envelope"),
			  CF_STORE_CMD_RESULT_MAX, &der, &len) != 0)
		goto out;
	if (der[0] != 0x30) {
		srv_reply_error(r, 400, "bad_request",
			"\"envelope\" is not DER (a CMS envelope starts with a "
			"SEQUENCE); nothing was stored");
		goto out;
	}
	srv_audit_init(r, &audit, "cmd.result", cmd_id, (int64_t)len);
	if (cf_store_cmd_answer(srv_req_store(r), id->tenant, cmd_id, id->fp,
				srv_now(), der, len, &audit, sender,
				&err) != CF_OK) {
		api_fail(r, &err, "storing an answer");
		goto out;
	}
	srv_wake(id->tenant, (const char (*)[65])sender, 1);
	api_reply(r, 201, json_pack("{s:s,s:b}", "id", cmd_id, "answered", 1));
out:
	OPENSSL_free(der);
	json_decref(body);
}

static void command_post_sub(srv_req *r)
{
	char cmd_id[CMD_ID_LEN + 1];
	const char *sub;

	if (command_path(r, cmd_id, &sub) != 0)
		return;
	if (strcmp(sub, "/result") == 0)
		command_result(r, cmd_id);
	else if (strcmp(sub, "/recipients") == 0)
		command_more(r, cmd_id);
	else
		srv_reply_error(r, 404, "not_found",
			"POST /v1/commands/ID/result (agents) or "
			"/v1/commands/ID/recipients (its sender)");
}

/* ---- GET /v1/commands ------------------------------------------------------------ */

static json_t *command_json(const cf_cmd_row *c)
{
	return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "id", c->id,
		"sender", c->sender, "created", (json_int_t)c->created,
		"expires", (json_int_t)c->expires,
		"recipients", (json_int_t)c->recipients,
		"answered", (json_int_t)c->answered,
		"bytes", (json_int_t)c->bytes);
}

static void commands_list(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	cf_cmd_row *rows = NULL;
	int64_t limit, before;
	json_t *list;
	size_t n = 0;
	cf_error err;

	if (api_need_operator(r, id, "listing commands") != 0 ||
	    api_param_int(r, "limit", 1, API_LIST_MAX, 100, &limit) != 0 ||
	    api_param_int(r, "before", 0, INT64_MAX, 0, &before) != 0)
		return;
	if (cf_store_cmd_list(srv_req_store(r), id->tenant, id->fp, before,
			      (size_t)limit, &rows, &n, &err) != CF_OK) {
		api_fail(r, &err, "listing commands");
		return;
	}
	list = json_array();
	for (size_t i = 0; list && i < n; i++)
		if (json_array_append_new(list, command_json(&rows[i])) != 0) {
			json_decref(list);
			list = NULL;
		}
	api_reply(r, 200, list ? json_pack("{s:o}", "commands", list) : NULL);
	free(rows);
}

/* ---- GET /v1/commands/ID ---------------------------------------------------------- */

static json_t *recipients_json(const cf_cmd_item *items, size_t n)
{
	json_t *list = json_array();

	for (size_t i = 0; list && i < n; i++)
		if (json_array_append_new(list, json_pack("{s:s,s:s,s:I}",
			"fp", items[i].peer, "name", items[i].name,
			"answered", (json_int_t)items[i].answered)) != 0) {
			json_decref(list);
			list = NULL;
		}
	return list;
}

static json_t *answers_json(const cf_cmd_item *items, size_t n,
			    int64_t *bytes)
{
	json_t *list = json_array();

	*bytes = 0;
	for (size_t i = 0; list && i < n; i++) {
		*bytes += (int64_t)items[i].len;
		if (json_array_append_new(list, json_pack("{s:I,s:s,s:s,s:I,s:o}",
			"seq", (json_int_t)items[i].seq, "fp", items[i].peer,
			"name", items[i].name,
			"received", (json_int_t)items[i].answered,
			"envelope", api_b64_json(items[i].der,
						 items[i].len))) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	return list;
}

static void command_get(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	char cmd_id[CMD_ID_LEN + 1];
	const char *sub;
	cf_cmd_row cmd;
	cf_cmd_item *answers = NULL, *recips = NULL;
	size_t n_answers = 0, n_recips = 0;
	int64_t since, wait, remaining_ms, bytes = 0, cursor;
	cf_audit_entry audit;
	json_t *body = NULL, *results, *recipients;
	cf_error err;

	if (api_need_operator(r, id, "reading a command") != 0 ||
	    command_path(r, cmd_id, &sub) != 0)
		return;
	if (*sub != '\0') {
		srv_reply_error(r, 404, "not_found",
			"GET /v1/commands/ID (its sender) only");
		return;
	}
	if (api_param_int(r, "since", 0, INT64_MAX, 0, &since) != 0 ||
	    api_param_int(r, "wait", 0, INT64_MAX, 0, &wait) != 0 ||
	    load_own(r, id, cmd_id, &cmd) != 0)
		return;
	if (wait > API_FEED_WAIT_MAX)
		wait = API_FEED_WAIT_MAX;
	if (cf_store_cmd_answers(srv_req_store(r), id->tenant, cmd_id, since,
				 ANSWERS_PER_REPLY, &answers, &n_answers,
				 &err) != CF_OK) {
		api_fail(r, &err, "reading a command's answers");
		return;
	}
	remaining_ms = wait * 1000 - srv_req_parked_ms(r);
	if (n_answers == 0 && cmd.answered < cmd.recipients &&
	    remaining_ms > 0) {
		/* The agents' answers wake the sender's key (command_result). */
		srv_req_park(r, id->tenant, id->fp, (int)remaining_ms,
			     command_get);
		goto out;
	}
	if (cf_store_cmd_recipients(srv_req_store(r), id->tenant, cmd_id,
				    &recips, &n_recips, &err) != CF_OK) {
		api_fail(r, &err, "reading a command's recipients");
		goto out;
	}
	cursor = n_answers > 0 ? answers[n_answers - 1].seq : since;
	results = answers_json(answers, n_answers, &bytes);
	recipients = recipients_json(recips, n_recips);
	if (results == NULL || recipients == NULL) {
		json_decref(results);
		json_decref(recipients);
		api_reply(r, 500, NULL);
		goto out;
	}
	body = json_pack("{s:s,s:s,s:I,s:I,s:I,s:o,s:o,s:I,s:b}", "id", cmd.id,
		"sender", cmd.sender, "created", (json_int_t)cmd.created,
		"expires", (json_int_t)cmd.expires,
		"answered", (json_int_t)cmd.answered, "recipients", recipients,
		"results", results, "cursor", (json_int_t)cursor,
		"more", n_answers == ANSWERS_PER_REPLY);
	if (bytes > 0 && body != NULL) {
		/* Answers leave only once their reading is logged. */
		srv_audit_init(r, &audit, "cmd.read", cmd_id, bytes);
		srv_reply_json_audited(r, 200, body, &audit);
		goto out;
	}
	api_reply(r, 200, body);
out:
	cf_cmd_items_free(answers, n_answers);
	cf_cmd_items_free(recips, n_recips);
}

const srv_route srv_routes_commands[] = {
	{"POST", "/v1/commands", 0, 0, command_post},
	{"GET", "/v1/commands", 0, 0, commands_list},
	{"POST", "/v1/commands/", 1, 0, command_post_sub},
	{"GET", "/v1/commands/", 1, 0, command_get},
	{NULL, NULL, 0, 0, NULL},
};
