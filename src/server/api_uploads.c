/*
 * api_uploads.c - staged uploads: one secret version too large for one
 * request body, sent in chunks and committed in one transaction
 * (docs/API.md, "Staged uploads").
 *
 *   POST   /v1/secrets/uploads              secret.write on the name
 *   POST   /v1/secrets/uploads/ID           the certificate that began it
 *   POST   /v1/secrets/uploads/ID/commit    the certificate that began it
 *   DELETE /v1/secrets/uploads/ID           the certificate that began it
 *
 * Why: evhttp buffers a whole body before any handler runs, so the body
 * limit (--max-body, 2 MiB by default) must stay one hard limit for every
 * caller; a version to thousands of recipients, or a large secret to a
 * few, does not fit in it.  Staging keeps that limit and still stores
 * the version whole or not at all.
 *
 * Invariants: every chunk passes exactly the checks of PUT /v1/secrets
 * (api_envelopes_read), plus no recipient twice across chunks (the
 * store's key); staged envelopes are visible to nobody (no feed, no
 * listing, no envelope read) until the commit, which is one store
 * transaction with its secret.put audit entry and then wakes the
 * recipients' long-polls, as the PUT does.  Begin, chunks and abort log
 * no audit entry: they change nothing anybody can see.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "runtime.h"  /* srv_cfg: the body limit, told to the writer */

#define VERSION_MAX ((int64_t)1 << 53)  /* exact in every JSON reader */
#define UPLOAD_ID_LEN 32

/*
 * The open upload named by the path's ID, begun by the caller and still
 * within its rights; -1 answered (404 none or expired, 403 another's).
 */
static int load_upload(srv_req *r, const srv_identity *id, const char *upload,
		       cf_upload_row *out)
{
	cf_error err;

	if (cf_store_upload_get(srv_req_store(r), id->tenant, upload,
				srv_now(), out, &err) != CF_OK) {
		api_fail(r, &err, "reading an upload");
		return -1;
	}
	if (strcmp(out->writer, id->fp) != 0) {
		srv_reply_error(r, 403, "forbidden",
			"upload %s was begun by another certificate; only it "
			"may add to, commit or abort it", upload);
		return -1;
	}
	if (!api_secret_allows(id, "secret.write", out->name))
		return api_deny_secret(r, id, "secret.write", out->name);
	return 0;
}

/* ---- POST /v1/secrets/uploads ------------------------------------------------ */

static void upload_begin(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *name;
	json_t *body;
	cf_upload_row up;
	int64_t version;
	cf_error err;

	if (api_need_operator(r, id, "uploading a secret") != 0)
		return;
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_str(r, body, "name", CF_NAME_MAX_BYTES, 1, &name) != 0 ||
	    api_name_ok(r, "name", name) != 0 ||
	    api_int(r, body, "version", 1, VERSION_MAX, &version) != 0)
		goto out;
	if (!api_secret_allows(id, "secret.write", name)) {
		api_deny_secret(r, id, "secret.write", name);
		goto out;
	}
	if (cf_store_upload_begin(srv_req_store(r), id->tenant, name, version,
				  id->fp, srv_now(), &up, &err) != CF_OK) {
		if (err.code == CF_ERR_CONFLICT)
			api_reply_stale(r, id->tenant, name, version,
				    "nothing was begun; begin again");
		else
			api_fail(r, &err, "beginning an upload");
		goto out;
	}
	/* max_body: what one chunk's request body may hold. */
	api_reply(r, 201, json_pack("{s:s,s:s,s:I,s:I,s:I}", "upload", up.id,
		"name", up.name, "version", (json_int_t)up.version,
		"expires", (json_int_t)up.expires,
		"max_body", (json_int_t)srv_cfg->max_body_bytes));
out:
	json_decref(body);
}

/* ---- POST /v1/secrets/uploads/ID, /commit ------------------------------------ */

static void upload_add(srv_req *r, const char *upload)
{
	const srv_identity *id = srv_req_identity(r);
	api_envelopes envs = { 0 };
	cf_upload_row up;
	json_t *body = NULL;
	cf_error err;

	/* The upload first: no parsing of chunks for someone else's. */
	if (load_upload(r, id, upload, &up) != 0)
		return;
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_envelopes_read(r, id, body, API_ENVELOPES_MAX, &envs) != 0)
		goto out;
	if (cf_store_upload_add(srv_req_store(r), id->tenant, upload, id->fp,
				srv_now(), envs.envs, envs.n, &up,
				&err) != CF_OK) {
		/* As the PUT answers a recipient twice in one list. */
		if (err.code == CF_ERR_EXISTS)
			srv_reply_error(r, 400, "bad_request", "%s; nothing of "
				"this chunk was stored", err.msg);
		else
			api_fail(r, &err, "staging envelopes");
		goto out;
	}
	api_reply(r, 200, json_pack("{s:s,s:I,s:I}", "upload", up.id,
		"received", (json_int_t)up.envelopes,
		"bytes", (json_int_t)up.bytes));
out:
	api_envelopes_clear(&envs);
	json_decref(body);
}

static void upload_commit(srv_req *r, const char *upload)
{
	const srv_identity *id = srv_req_identity(r);
	char (*recipients)[65] = NULL;
	cf_audit_entry audit;
	cf_upload_row up, done;
	size_t n = 0;
	cf_error err;

	if (load_upload(r, id, upload, &up) != 0)
		return;
	/* The store sets bytes to what was staged. */
	srv_audit_init(r, &audit, "secret.put", up.name, 0);
	if (cf_store_upload_commit(srv_req_store(r), id->tenant, upload,
				   id->fp, srv_now(), &audit, &done,
				   &recipients, &n, &err) != CF_OK) {
		if (err.code == CF_ERR_CONFLICT)
			api_reply_stale(r, id->tenant, up.name, up.version,
				    "nothing was stored and the upload is "
				    "dropped; seal and upload it again");
		else
			api_fail(r, &err, "committing an upload");
		return;
	}
	srv_wake(id->tenant, (const char (*)[65])recipients, n);
	free(recipients);
	api_reply(r, 201, json_pack("{s:s,s:I,s:I,s:I}", "name", done.name,
		"version", (json_int_t)done.version,
		"recipients", (json_int_t)done.envelopes,
		"bytes", (json_int_t)done.bytes));
}

/* "ID" or "ID/commit" after the prefix; anything else is 404. */
static int upload_path(srv_req *r, char *upload, int *commit)
{
	const char *rest = srv_req_path_rest(r);

	*commit = 0;
	if (strlen(rest) >= UPLOAD_ID_LEN &&
	    strcmp(rest + UPLOAD_ID_LEN, "/commit") == 0)
		*commit = 1;
	if ((*commit || strlen(rest) == UPLOAD_ID_LEN)) {
		memcpy(upload, rest, UPLOAD_ID_LEN);
		upload[UPLOAD_ID_LEN] = '\0';
		if (api_is_hex(upload, UPLOAD_ID_LEN))
			return 0;
	}
	srv_reply_error(r, 404, "not_found",
		"no such upload endpoint; an upload is "
		"/v1/secrets/uploads/ID (32 lower-case hex) and its commit "
		"/v1/secrets/uploads/ID/commit");
	return -1;
}

static void upload_post(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	char upload[UPLOAD_ID_LEN + 1];
	int commit;

	if (api_need_operator(r, id, "uploading a secret") != 0 ||
	    upload_path(r, upload, &commit) != 0)
		return;
	if (commit)
		upload_commit(r, upload);
	else
		upload_add(r, upload);
}

/* ---- DELETE /v1/secrets/uploads/ID ------------------------------------------- */

static void upload_abort(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	char upload[UPLOAD_ID_LEN + 1];
	cf_upload_row up;
	cf_error err;
	int commit;

	if (api_need_operator(r, id, "aborting an upload") != 0 ||
	    upload_path(r, upload, &commit) != 0)
		return;
	if (commit) {
		srv_reply_error(r, 404, "not_found", "DELETE the upload "
			"(/v1/secrets/uploads/ID), not its commit");
		return;
	}
	if (load_upload(r, id, upload, &up) != 0)
		return;
	if (cf_store_upload_abort(srv_req_store(r), id->tenant, upload, id->fp,
				  srv_now(), &err) != CF_OK) {
		api_fail(r, &err, "aborting an upload");
		return;
	}
	api_reply(r, 200, json_pack("{s:s,s:b}", "upload", upload,
				    "aborted", 1));
}

const srv_route srv_routes_uploads[] = {
	{"POST", "/v1/secrets/uploads", 0, 0, upload_begin},
	{"POST", "/v1/secrets/uploads/", 1, 0, upload_post},
	{"DELETE", "/v1/secrets/uploads/", 1, 0, upload_abort},
	{NULL, NULL, 0, 0, NULL},
};
