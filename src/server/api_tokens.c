/*
 * api_tokens.c - join tokens (docs/API.md, "Join tokens").
 *
 *   POST   /v1/tokens      token.create on each token's group
 *   GET    /v1/tokens      the tokens whose group the caller's
 *                          token.create covers
 *   GET    /v1/tokens/ID   the same, plus the envelope for its creator
 *   DELETE /v1/tokens/ID   token.create on its group
 *
 * The server stores a token's id, the SHA-256 of its secret, its
 * constraints, and the secret only as an envelope sealed to the creating
 * enroller: it never sees the secret, so it cannot enroll a key of its
 * own.  A batch of tokens is all stored, with one audit entry each
 * (token.create), or none is.  Tokens of another tenant are answered as
 * absent, not as forbidden.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

static const char *token_state(const cf_token_row *t, int64_t now)
{
	if (t->revoked)
		return "revoked";
	if (t->used >= t->uses)
		return "used";
	if (t->expires <= now)
		return "expired";
	return "active";
}

static json_t *token_json(const cf_token_row *t, int64_t now)
{
	return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:b,s:s}",
		"id", t->id, "group", t->group, "uses", (json_int_t)t->uses,
		"used", (json_int_t)t->used, "expires", (json_int_t)t->expires,
		"created", (json_int_t)t->created, "creator", t->creator,
		"revoked", t->revoked != 0, "state", token_state(t, now));
}

/* ---- POST /v1/tokens ---------------------------------------------------- */

/* Reads tokens[i] into row; -1 with the request answered. */
static int token_in(srv_req *r, const srv_identity *id, const json_t *v,
		    size_t i, int64_t now, cf_token_row *row)
{
	const char *tid, *hash, *group;
	int64_t uses, expires;
	char what[64];

	if (!json_is_object(v)) {
		srv_reply_error(r, 400, "bad_request",
			"tokens[%zu] is not an object", i);
		return -1;
	}
	if (api_hex_field(r, v, "id", 32, &tid) != 0 ||
	    api_hex_field(r, v, "hash", 64, &hash) != 0 ||
	    api_str(r, v, "group", CF_NAME_MAX_BYTES, 1, &group) != 0 ||
	    api_name_ok(r, "group", group) != 0 ||
	    api_int(r, v, "uses", 1, API_TOKEN_USES_MAX, &uses) != 0 ||
	    api_int(r, v, "expires", now + 1, now + API_TOKEN_TTL_MAX,
		    &expires) != 0)
		return -1;
	if (!srv_allows(id, "token.create", group)) {
		srv_reply_error(r, 403, "forbidden",
			"%s \"%s\" holds no token.create rule matching group "
			"%s; no token was created", cf_kind_name(id->kind),
			id->name, group);
		return -1;
	}
	snprintf(what, sizeof(what), "tokens[%zu].envelope", i);
	if (api_b64_field(r, what, json_object_get(v, "envelope"),
			  API_TOKEN_ENVELOPE_MAX, &row->envelope,
			  &row->envelope_len) != 0)
		return -1;
	if (row->envelope[0] != 0x30) {
		srv_reply_error(r, 400, "bad_request",
			"%s is not a DER envelope (it does not start with a "
			"SEQUENCE); seal the token secret with coffer's "
			"envelope format", what);
		return -1;
	}
	snprintf(row->tenant, sizeof(row->tenant), "%s", id->tenant);
	snprintf(row->id, sizeof(row->id), "%s", tid);
	snprintf(row->hash, sizeof(row->hash), "%s", hash);
	snprintf(row->group, sizeof(row->group), "%s", group);
	snprintf(row->creator, sizeof(row->creator), "%s", id->fp);
	row->uses = uses;
	row->expires = expires;
	row->created = now;
	return 0;
}

static void tokens_create(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	json_t *body = NULL, *list, *ids = NULL;
	cf_token_row *rows = NULL;
	cf_audit_entry audit;
	cf_error err;
	size_t n = 0;
	int64_t now = srv_now();

	if (api_need_operator(r, id, "creating join tokens") != 0)
		return;
	body = srv_req_json(r);
	if (body == NULL)
		return;
	list = json_object_get(body, "tokens");
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > API_TOKENS_MAX) {
		srv_reply_error(r, 400, "bad_request",
			"\"tokens\" must be an array of 1 to %d tokens",
			API_TOKENS_MAX);
		goto out;
	}
	n = json_array_size(list);
	rows = calloc(n, sizeof(*rows));
	if (rows == NULL) {
		srv_reply_error(r, 500, "internal", "the server ran out of "
			"memory; no token was created; try fewer at once");
		n = 0;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (token_in(r, id, json_array_get(list, i), i, now, &rows[i]) != 0)
			goto out;
	srv_audit_init(r, &audit, "token.create", "", 0);
	if (cf_store_token_add(srv_req_store(r), rows, n, &audit, &err) != CF_OK) {
		if (err.code == CF_ERR_EXISTS)
			srv_reply_error(r, 409, "conflict", "%s; no token of "
				"this request was created", err.msg);
		else
			api_fail(r, &err, "storing join tokens");
		goto out;
	}
	ids = json_array();
	for (size_t i = 0; ids && i < n; i++)
		json_array_append_new(ids, json_pack("{s:s,s:s,s:I}", "id",
			rows[i].id, "group", rows[i].group,
			"expires", (json_int_t)rows[i].expires));
	api_reply(r, 201, ids ? json_pack("{s:o}", "tokens", ids) : NULL);
out:
	for (size_t i = 0; i < n; i++)
		OPENSSL_free(rows[i].envelope); /* from api_b64_field */
	free(rows);
	json_decref(body);
}

/* ---- GET /v1/tokens -------------------------------------------------------- */

static void tokens_list(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	cf_token_row *rows = NULL;
	json_t *list;
	cf_error err;
	size_t n = 0;
	int64_t now = srv_now();

	if (api_need_operator(r, id, "listing join tokens") != 0)
		return;
	if (cf_store_token_list(srv_req_store(r), id->tenant, &rows, &n, &err) != CF_OK) {
		api_fail(r, &err, "listing join tokens");
		return;
	}
	list = json_array();
	for (size_t i = 0; list && i < n; i++)
		if (srv_allows(id, "token.create", rows[i].group))
			json_array_append_new(list, token_json(&rows[i], now));
	api_reply(r, 200, list ? json_pack("{s:o}", "tokens", list) : NULL);
	cf_token_rows_free(rows, n);
}

/*
 * The token of the path, of the caller's tenant, whose group the caller
 * may create tokens for; -1 with the request answered.
 */
static int token_of_path(srv_req *r, const srv_identity *id, cf_token_row *t)
{
	char tid[33];
	cf_error err;
	cf_status rc;

	memset(t, 0, sizeof(*t));
	if (api_need_operator(r, id, "join tokens") != 0 ||
	    api_path_id(r, 32, "join token", tid, sizeof(tid)) != 0)
		return -1;
	rc = cf_store_token_get(srv_req_store(r), tid, t, &err);
	if (rc != CF_OK && rc != CF_ERR_NOT_FOUND) {
		api_fail(r, &err, "reading a join token");
		return -1;
	}
	if (rc != CF_OK || strcmp(t->tenant, id->tenant) != 0) {
		srv_reply_error(r, 404, "not_found",
			"there is no join token %s in this organisation; "
			"coffer token ls lists them", tid);
		cf_token_row_clear(t);
		return -1;
	}
	if (!srv_allows(id, "token.create", t->group)) {
		srv_reply_error(r, 403, "forbidden",
			"%s \"%s\" holds no token.create rule matching group "
			"%s of token %s", cf_kind_name(id->kind), id->name,
			t->group, tid);
		cf_token_row_clear(t);
		return -1;
	}
	return 0;
}

static void token_get(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	cf_token_row t;
	json_t *body;

	if (token_of_path(r, id, &t) != 0)
		return;
	body = token_json(&t, srv_now());
	/* The secret's envelope opens only with the creator's key anyway. */
	if (body && strcmp(t.creator, id->fp) == 0 && t.envelope != NULL &&
	    json_object_set_new(body, "envelope",
				api_b64_json(t.envelope, t.envelope_len)) != 0) {
		json_decref(body);
		body = NULL;
	}
	api_reply(r, 200, body);
	cf_token_row_clear(&t);
}

static void token_revoke(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	cf_audit_entry audit;
	cf_token_row t;
	cf_error err;

	if (token_of_path(r, id, &t) != 0)
		return;
	srv_audit_init(r, &audit, "token.revoke", t.id, 0);
	if (cf_store_token_revoke(srv_req_store(r), id->tenant, t.id, &audit,
				  &err) != CF_OK)
		api_fail(r, &err, "revoking a join token");
	else
		api_reply(r, 200, json_pack("{s:s,s:b}", "id", t.id,
					    "revoked", 1));
	cf_token_row_clear(&t);
}

const srv_route srv_routes_tokens[] = {
	{"POST", "/v1/tokens", 0, 0, tokens_create},
	{"GET", "/v1/tokens", 0, 0, tokens_list},
	{"GET", "/v1/tokens/", 1, 0, token_get},
	{"DELETE", "/v1/tokens/", 1, 0, token_revoke},
	{NULL, NULL, 0, 0, NULL},
};
