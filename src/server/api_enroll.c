/*
 * api_enroll.c - join-token enrollment (docs/API.md, "Enrollment").
 *
 *   POST /v1/enroll                      public (rate limited by the runtime)
 *   GET  /v1/enroll/ID                   public: ID is the unguessable handle
 *   GET  /v1/enrollments                 agent.enroll on the request's group
 *   POST /v1/enrollments/ID/approve      agent.enroll on the request's group
 *   POST /v1/enrollments/ID/reject       agent.enroll on the request's group
 *
 * What the server can check, it checks before queueing: the token (in the
 * store, atomically with consuming one use), the CSR (P-256, its own
 * signature, CN = the requested name).  What it cannot check it leaves to
 * the enroller: the HMAC over the CSR, keyed with the token secret the
 * server never sees.  An approval is accepted only for an agent
 * certificate that verifies against the tenant's root and CRL, issued by
 * the approving enroller (or the root), with the CSR's public key, the
 * requested name and exactly the token's group; the certificate and its
 * directory row are stored with the decision in one transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "api.h"

/* ---- POST /v1/enroll ------------------------------------------------------ */

static void enroll_request(srv_req *r)
{
	json_t *body = NULL;
	const char *token_id, *token_hash, *name, *csr, *hmac;
	X509_REQ *req = NULL;
	cf_enroll_row row;
	cf_audit_entry audit;
	char cn[CF_CN_MAX_BYTES + 1];
	cf_error err;

	memset(&row, 0, sizeof(row));
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_hex_field(r, body, "token_id", 32, &token_id) != 0 ||
	    api_hex_field(r, body, "token_hash", 64, &token_hash) != 0 ||
	    api_str(r, body, "name", CF_CN_MAX_BYTES, 1, &name) != 0 ||
	    api_name_ok(r, "agent name", name) != 0 ||
	    api_str(r, body, "csr", CF_PEM_MAX_BYTES, 1, &csr) != 0 ||
	    api_hex_field(r, body, "hmac", 64, &hmac) != 0)
		goto out;
	if (cf_csr_parse((const unsigned char *)csr, strlen(csr), "\"csr\"",
			 &req, &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
		goto out;
	}
	cf_cert_cn_of_name(X509_REQ_get_subject_name(req), cn, sizeof(cn));
	if (strcmp(cn, name) != 0) {
		srv_reply_error(r, 400, "bad_request",
			"the CSR's CN \"%s\" is not the requested name \"%s\"; "
			"make the CSR for the name you enroll", cn, name);
		goto out;
	}
	row.csr_pem = api_csr_pem(req);
	if (row.csr_pem == NULL) {
		srv_reply_error(r, 500, "internal", "the server ran out of "
			"memory; nothing was changed; try again");
		goto out;
	}
	snprintf(row.token_id, sizeof(row.token_id), "%s", token_id);
	snprintf(row.name, sizeof(row.name), "%s", name);
	snprintf(row.hmac, sizeof(row.hmac), "%s", hmac);
	snprintf(row.source, sizeof(row.source), "%s", srv_req_source(r));
	snprintf(row.status, sizeof(row.status), "pending");
	row.created = srv_now();
	/* The store names the new request's id as the object. */
	srv_audit_init(r, &audit, "enroll.request", "", 0);
	if (cf_store_enroll_add(srv_req_store(r), &row, token_hash, row.created,
				&audit, &err) != CF_OK) {
		if (err.code == CF_ERR_TOKEN)
			srv_reply_error(r, 410, "gone", "%s", err.msg);
		else
			api_fail(r, &err, "queueing an enrollment");
		goto out;
	}
	api_reply(r, 202, json_pack("{s:s,s:s}", "id", row.id,
				    "status", "pending"));
out:
	free(row.csr_pem);
	X509_REQ_free(req);
	json_decref(body);
}

/* ---- GET /v1/enroll/ID ------------------------------------------------------ */

/* A PEM text of certificates ("" for none) as an array of PEM strings. */
static json_t *pem_list_json(const char *pem)
{
	json_t *a = json_array();
	STACK_OF(X509) *more = NULL;
	X509 *first = NULL;

	if (a == NULL || pem == NULL || pem[0] == '\0')
		return a;
	if (cf_cert_parse((const unsigned char *)pem, strlen(pem), "chain",
			  &first, &more, NULL) == CF_OK) {
		json_array_append_new(a, api_pem_json(first));
		for (int i = 0; i < sk_X509_num(more); i++)
			json_array_append_new(a, api_pem_json(sk_X509_value(more, i)));
	}
	X509_free(first);
	sk_X509_pop_free(more, X509_free);
	return a;
}

static void enroll_poll(srv_req *r)
{
	cf_enroll_row row;
	char id[33];
	json_t *body;
	cf_error err;
	cf_status rc;

	memset(&row, 0, sizeof(row));
	if (api_path_id(r, 32, "enrollment", id, sizeof(id)) != 0)
		return;
	rc = cf_store_enroll_get(srv_req_store(r), id, &row, &err);
	if (rc == CF_ERR_NOT_FOUND) {
		srv_reply_error(r, 404, "not_found",
			"there is no enrollment %s; enroll again with a valid "
			"join token", id);
		return;
	}
	if (rc != CF_OK) {
		api_fail(r, &err, "reading an enrollment");
		return;
	}
	body = json_pack("{s:s,s:s}", "id", row.id, "status", row.status);
	if (body && strcmp(row.status, "approved") == 0) {
		json_object_set_new(body, "cert", json_string(row.cert_pem ?
							      row.cert_pem : ""));
		json_object_set_new(body, "chain", pem_list_json(row.chain_pem));
	} else if (body && strcmp(row.status, "rejected") == 0) {
		json_object_set_new(body, "reason", json_string(row.reason));
	}
	api_reply(r, 200, body);
	cf_enroll_row_clear(&row);
}

/* ---- GET /v1/enrollments ---------------------------------------------------- */

static json_t *enrollment_json(const cf_enroll_row *e)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I}",
		"id", e->id, "name", e->name, "group", e->group,
		"token_id", e->token_id, "csr", e->csr_pem ? e->csr_pem : "",
		"hmac", e->hmac, "source", e->source, "status", e->status,
		"created", (json_int_t)e->created);

	if (o && strcmp(e->status, "pending") != 0) {
		json_object_set_new(o, "decided", json_integer(e->decided));
		json_object_set_new(o, "decided_by", json_string(e->decided_by));
		if (strcmp(e->status, "rejected") == 0)
			json_object_set_new(o, "reason", json_string(e->reason));
		else
			json_object_set_new(o, "cert", json_string(
				e->cert_pem ? e->cert_pem : ""));
	}
	return o;
}

static void enrollments_list(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *status = srv_req_param(r, "status");
	cf_enroll_row *rows = NULL;
	json_t *list;
	cf_error err;
	size_t n = 0;

	if (api_need_operator(r, id, "listing enrollments") != 0)
		return;
	if (status && strcmp(status, "pending") != 0 &&
	    strcmp(status, "approved") != 0 && strcmp(status, "rejected") != 0) {
		srv_reply_error(r, 400, "bad_request",
			"query parameter status=%.32s is not pending, approved "
			"or rejected", status);
		return;
	}
	if (cf_store_enroll_list(srv_req_store(r), id->tenant, status, &rows,
				 &n, &err) != CF_OK) {
		api_fail(r, &err, "listing enrollments");
		return;
	}
	list = json_array();
	for (size_t i = 0; list && i < n; i++)
		if (srv_allows(id, "agent.enroll", rows[i].group))
			json_array_append_new(list, enrollment_json(&rows[i]));
	api_reply(r, 200, list ? json_pack("{s:o}", "enrollments", list) : NULL);
	cf_enroll_rows_free(rows, n);
}

/* ---- POST /v1/enrollments/ID/approve|reject ---------------------------------- */

/*
 * The pending-or-not request of the path, of the caller's tenant, whose
 * group the caller may enroll; -1 with the request answered.
 */
static int enrollment_of(srv_req *r, const srv_identity *id, const char *eid,
			 cf_enroll_row *row)
{
	cf_error err;
	cf_status rc;

	rc = cf_store_enroll_get(srv_req_store(r), eid, row, &err);
	if (rc != CF_OK && rc != CF_ERR_NOT_FOUND) {
		api_fail(r, &err, "reading an enrollment");
		return -1;
	}
	if (rc != CF_OK || strcmp(row->tenant, id->tenant) != 0) {
		srv_reply_error(r, 404, "not_found",
			"there is no enrollment %s in this organisation; coffer "
			"agent ls lists the pending ones", eid);
		return -1;
	}
	if (!srv_allows(id, "agent.enroll", row->group)) {
		srv_reply_error(r, 403, "forbidden",
			"%s \"%s\" holds no agent.enroll rule matching group "
			"%s of enrollment %s", cf_kind_name(id->kind), id->name,
			row->group, eid);
		return -1;
	}
	if (strcmp(row->status, "pending") != 0) {
		srv_reply_error(r, 409, "conflict",
			"enrollment %s of \"%s\" was already %s", eid,
			row->name, row->status);
		return -1;
	}
	return 0;
}

/* Checks the uploaded certificate against the request; -1 answered. */
static int check_agent_cert(srv_req *r, const srv_identity *id,
			    const cf_enroll_row *row, X509 *cert,
			    int *by_caller)
{
	STACK_OF(X509) *untrusted = NULL;
	X509_REQ *req = NULL;
	char *groups = NULL;
	char cn[CF_CN_MAX_BYTES + 1];
	cf_error err;
	int ok = -1;

	*by_caller = id->kind == CF_KIND_ENROLLER &&
		     X509_check_issued(id->cert, cert) == X509_V_OK;
	if (!*by_caller && X509_check_issued(id->root, cert) != X509_V_OK) {
		srv_reply_error(r, 400, "bad_request",
			"the certificate was issued neither by you (%s) nor by "
			"the root; sign the CSR with your enroller key",
			id->name);
		goto out;
	}
	untrusted = sk_X509_new_null();
	if (untrusted == NULL || (*by_caller && !sk_X509_push(untrusted, id->cert))) {
		srv_reply_error(r, 500, "internal", "out of memory; try again");
		goto out;
	}
	if (cf_trust_verify(id->trust, cert, untrusted, "the agent certificate",
			    &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
		goto out;
	}
	if (cf_cert_kind(cert) != CF_KIND_AGENT) {
		srv_reply_error(r, 400, "bad_request",
			"the certificate is not an agent certificate; issue it "
			"with --kind agent");
		goto out;
	}
	cf_cert_cn(cert, cn, sizeof(cn));
	if (strcmp(cn, row->name) != 0) {
		srv_reply_error(r, 400, "bad_request",
			"the certificate's CN \"%s\" is not the requested name "
			"\"%s\"; sign the request's own CSR", cn, row->name);
		goto out;
	}
	if (cf_csr_parse((const unsigned char *)row->csr_pem,
			 strlen(row->csr_pem), "the stored CSR", &req, &err) != CF_OK) {
		api_fail(r, &err, "reading a stored CSR");
		goto out;
	}
	if (EVP_PKEY_eq(X509_get0_pubkey(cert), X509_REQ_get0_pubkey(req)) != 1) {
		srv_reply_error(r, 400, "bad_request",
			"the certificate's public key is not the one of the "
			"request's CSR; sign the request's own CSR");
		goto out;
	}
	if (cf_cert_ext_text(cert, cf_nid_groups(), &groups, &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
		goto out;
	}
	if (groups == NULL || strcmp(groups, row->group) != 0) {
		srv_reply_error(r, 400, "bad_request",
			"the certificate's groups \"%s\" are not exactly the "
			"join token's group \"%s\"", groups ? groups : "",
			row->group);
		goto out;
	}
	ok = 0;
out:
	OPENSSL_free(groups);
	X509_REQ_free(req);
	sk_X509_free(untrusted);
	ERR_clear_error();
	return ok;
}

static void approve(srv_req *r, const srv_identity *id, const char *eid)
{
	json_t *body = NULL;
	const char *pem;
	X509 *cert = NULL;
	cf_enroll_row row;
	cf_cert_row crow;
	cf_audit_entry audit;
	char *chain_pem = NULL;
	int by_caller = 0;
	cf_error err;
	int64_t now = srv_now();

	memset(&row, 0, sizeof(row));
	memset(&crow, 0, sizeof(crow));
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_str(r, body, "cert", CF_PEM_MAX_BYTES, 1, &pem) != 0 ||
	    enrollment_of(r, id, eid, &row) != 0)
		goto out;
	if (cf_cert_parse((const unsigned char *)pem, strlen(pem), "\"cert\"",
			  &cert, NULL, &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
		goto out;
	}
	if (check_agent_cert(r, id, &row, cert, &by_caller) != 0)
		goto out;
	chain_pem = by_caller ? api_cert_pem(id->cert) : strdup("");
	if (chain_pem == NULL ||
	    api_cert_row(cert, id->tenant, by_caller ? id->fp : id->tenant, now,
			 &crow, &err) != CF_OK) {
		srv_reply_error(r, 500, "internal", "out of memory; try again");
		goto out;
	}
	srv_audit_init(r, &audit, "enroll.approve", eid, 0);
	if (cf_store_enroll_decide(srv_req_store(r), id->tenant, eid, 1, &crow,
				   chain_pem, NULL, id->fp, now, &audit,
				   &err) != CF_OK) {
		if (err.code == CF_ERR_CONFLICT)
			srv_reply_error(r, 409, "conflict", "enrollment %s was "
				"decided meanwhile: %s", eid, err.msg);
		else
			api_fail(r, &err, "approving an enrollment");
		goto out;
	}
	api_reply(r, 200, json_pack("{s:s,s:s,s:s}", "id", eid,
				    "status", "approved", "fp", crow.fp));
out:
	free(chain_pem);
	cf_cert_row_clear(&crow);
	cf_enroll_row_clear(&row);
	X509_free(cert);
	json_decref(body);
}

static void reject(srv_req *r, const srv_identity *id, const char *eid)
{
	json_t *body = NULL;
	const char *reason;
	cf_enroll_row row;
	cf_audit_entry audit;
	cf_error err;

	memset(&row, 0, sizeof(row));
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_str(r, body, "reason", API_REASON_MAX, 0, &reason) != 0)
		goto out;
	if (reason == NULL)
		reason = "";
	for (const char *p = reason; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			srv_reply_error(r, 400, "bad_request",
				"\"reason\" contains a control character; "
				"send one line of text");
			goto out;
		}
	}
	if (enrollment_of(r, id, eid, &row) != 0)
		goto out;
	srv_audit_init(r, &audit, "enroll.reject", eid, 0);
	if (cf_store_enroll_decide(srv_req_store(r), id->tenant, eid, 0, NULL,
				   NULL, reason, id->fp, srv_now(), &audit,
				   &err) != CF_OK) {
		api_fail(r, &err, "rejecting an enrollment");
		goto out;
	}
	api_reply(r, 200, json_pack("{s:s,s:s}", "id", eid,
				    "status", "rejected"));
out:
	cf_enroll_row_clear(&row);
	json_decref(body);
}

/* /v1/enrollments/ID/approve and /v1/enrollments/ID/reject */
static void enrollment_decide(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *rest = srv_req_path_rest(r);
	char eid[33];

	if (api_need_operator(r, id, "deciding enrollments") != 0)
		return;
	if (rest == NULL)
		rest = "";
	if (rest[0] == '/')
		rest++;
	if (strlen(rest) < 33 || rest[32] != '/') {
		srv_reply_error(r, 404, "not_found",
			"no such endpoint; use POST /v1/enrollments/ID/approve "
			"or /v1/enrollments/ID/reject");
		return;
	}
	memcpy(eid, rest, 32);
	eid[32] = '\0';
	if (!api_is_hex(eid, 32)) {
		srv_reply_error(r, 404, "not_found",
			"there is no enrollment \"%s\"; an id is 32 lower-case "
			"hex characters", eid);
		return;
	}
	if (strcmp(rest + 33, "approve") == 0)
		approve(r, id, eid);
	else if (strcmp(rest + 33, "reject") == 0)
		reject(r, id, eid);
	else
		srv_reply_error(r, 404, "not_found",
			"no such endpoint; use POST /v1/enrollments/ID/approve "
			"or /v1/enrollments/ID/reject");
}

const srv_route srv_routes_enroll[] = {
	{"POST", "/v1/enroll", 0, 1, enroll_request},
	{"GET", "/v1/enroll/", 1, 1, enroll_poll},
	{"GET", "/v1/enrollments", 0, 0, enrollments_list},
	{"POST", "/v1/enrollments/", 1, 0, enrollment_decide},
	{NULL, NULL, 0, 0, NULL},
};
