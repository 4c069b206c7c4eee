/*
 * api_status.c - rollout status (docs/API.md "Rollout status"): agents
 * acknowledge what they applied; operators read, per secret, who applied
 * its latest version, who is behind or failed, and which stored envelopes
 * are still addressed to revoked certificates ("exposed").
 *
 *   POST /v1/agent/acks    agents: their own signed acknowledgements
 *   GET  /v1/status        operators: secret.read or secret.write on
 *                          each name shown (?name=N, ?prefix=P, ?group=G)
 *
 * An ack is stored only after its signature verifies, its signer chains
 * to the tenant's root and CRL, IS the calling certificate, and its
 * record names the tenant and the signer (cf_ack_verify): the server
 * cannot read secrets but it must not let one agent speak for another.
 * It keeps the signed DER, and hands it out with the status, because the
 * operator's `coffer status` trusts the signatures, not this server.
 * Acks are metadata only; one audit entry (secret.ack) per batch.
 *
 * Exposure is computed here from the tenant's stored CRL: the serials it
 * revokes go to the store as a list, which finds, for those certificates
 * and the ones their revoked enrollers issued, the envelopes still stored
 * and the acknowledgements of a current version whose envelopes were
 * removed since (cf_store_exposed), with one query whatever the fleet's
 * size.  The second is what remains after a `crl push` (which deletes a
 * revoked certificate's envelopes): the holder read the current value,
 * so it must be rotated.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>

#include "ack.h"
#include "api.h"

#define STATUS_SECRETS_MAX 1000    /* secrets in one status answer */
/*
 * Recipient entries (each with its signed ack, about 2 KB) in one answer
 * at most, and per secret of a several-secret answer: the rest of a
 * secret is had by name with after (recipients_more), so that an answer
 * stays well within what a client reads (16 MiB for coffer's).
 */
#define STATUS_ENTRIES_MAX 2000
#define STATUS_ENTRIES_EACH 100
#define STATUS_ENTRIES_NAMED 1000  /* default limit of a name's page */

/* ---- POST /v1/agent/acks ------------------------------------------------ */

/* The acks' names, comma-separated and cut as secret.read's object. */
static void acks_object(const cf_ack_row *rows, size_t n, char *buf,
			size_t size)
{
	const char *more = ",...";
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t need = strlen(rows[i].name) + (len ? 1 : 0);

		if (len + need + strlen(more) >= size) {
			snprintf(buf + len, size - len, "%s", len ? more : "...");
			return;
		}
		len += (size_t)snprintf(buf + len, size - len, "%s%s",
					len ? "," : "", rows[i].name);
	}
}

static void acks_post(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const json_t *list;
	json_t *body;
	cf_ack_row *rows = NULL;
	cf_cert_row crow = { 0 };
	int member = 0;
	unsigned char **bufs = NULL;
	char object[CF_AUDIT_OBJECT_MAX], what[32], fp[65];
	cf_audit_entry audit;
	int64_t stored = 0, bytes = 0;
	size_t n = 0;
	cf_error err;

	if (id->kind != CF_KIND_AGENT) {
		srv_reply_error(r, 403, "forbidden",
			"%s \"%s\" is no agent; only agents acknowledge what "
			"they applied", cf_kind_name(id->kind), id->name);
		return;
	}
	if ((body = srv_req_json(r)) == NULL)
		return;
	list = json_object_get(body, "acks");
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > CF_STORE_ACKS_MAX) {
		srv_reply_error(r, 400, "bad_request",
			"\"acks\" must be an array of 1 to %d base64 signed "
			"acknowledgements", CF_STORE_ACKS_MAX);
		goto out;
	}
	n = json_array_size(list);
	rows = calloc(n, sizeof(*rows));
	bufs = calloc(n, sizeof(*bufs));
	if (rows == NULL || bufs == NULL) {
		api_reply(r, 500, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		cf_ack ack;
		size_t len = 0;

		snprintf(what, sizeof(what), "acks[%zu]", i);
		if (api_b64_field(r, what, json_array_get(list, i),
				  CF_ACK_SIGNED_MAX, &bufs[i], &len) != 0)
			goto out;
		if (cf_ack_verify(bufs[i], len, id->trust, &ack, fp, &err) !=
		    CF_OK) {
			srv_reply_error(r, 400, "bad_request",
				"%s is not a valid acknowledgement: %s; nothing "
				"was stored", what, err.msg);
			goto out;
		}
		if (strcmp(fp, id->fp) != 0) {
			srv_reply_error(r, 403, "forbidden",
				"%s was signed by another certificate (%.16s...) "
				"than yours; an agent posts its own "
				"acknowledgements only; nothing was stored", what,
				fp);
			goto out;
		}
		memcpy(rows[i].agent, id->fp, sizeof(rows[i].agent));
		snprintf(rows[i].name, sizeof(rows[i].name), "%s", ack.name);
		rows[i].version = ack.version;
		rows[i].time = ack.time;
		snprintf(rows[i].result, sizeof(rows[i].result), "%s",
			 cf_ack_result_name(ack.result));
		snprintf(rows[i].reason, sizeof(rows[i].reason), "%s",
			 ack.reason);
		rows[i].der = bufs[i];
		rows[i].len = len;
		bytes += (int64_t)len;
	}
	/* A cluster member also acknowledges what came sealed to its
	 * cluster's key (it proves it holds it, as for the feed). */
	member = api_cluster_member(r, id, &crow, NULL);
	if (member < 0)
		goto out;
	acks_object(rows, n, object, sizeof(object));
	srv_audit_init(r, &audit, "secret.ack", object, bytes);
	if (cf_store_ack_put_via(srv_req_store(r), id->tenant, id->fp,
				 member ? crow.fp : NULL, rows, n, srv_now(),
				 &audit, &stored, &err) != CF_OK) {
		api_fail(r, &err, "storing acknowledgements");
		goto out;
	}
	api_reply(r, 200, json_pack("{s:I,s:I}", "received", (json_int_t)n,
				    "stored", (json_int_t)stored));
out:
	if (member > 0)
		cf_cert_row_clear(&crow);
	for (size_t i = 0; bufs != NULL && i < n; i++)
		OPENSSL_free(bufs[i]);  /* from api_b64_field */
	free(bufs);
	free(rows);
	json_decref(body);
}

/* ---- exposure ------------------------------------------------------------ */

/*
 * The serials crl revokes as a JSON array of lowercase hex, as the
 * directory stores serials (api_cert_row); "[]" for no CRL.  malloc'ed,
 * NULL when out of memory.
 */
static char *revoked_json(X509_CRL *crl)
{
	STACK_OF(X509_REVOKED) *revs = crl ? X509_CRL_get_REVOKED(crl) : NULL;
	json_t *list = json_array();
	char *text = NULL;

	for (int i = 0; list != NULL && i < sk_X509_REVOKED_num(revs); i++) {
		const ASN1_INTEGER *serial =
			X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, i));
		BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
		char *hex = bn ? BN_bn2hex(bn) : NULL;

		if (hex != NULL) {
			for (char *p = hex; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			if (json_array_append_new(list, json_string(hex)) != 0) {
				json_decref(list);
				list = NULL;
			}
		} else {
			json_decref(list);
			list = NULL;
		}
		OPENSSL_free(hex);
		BN_free(bn);
	}
	if (list != NULL)
		text = json_dumps(list, JSON_COMPACT);
	json_decref(list);
	return text;
}

cf_status api_exposed_count(cf_store *st, int64_t *secrets, cf_error *err)
{
	cf_tenant *tenants = NULL;
	size_t n_tenants = 0;
	cf_status rc;

	*secrets = 0;
	if ((rc = cf_store_tenant_list(st, &tenants, &n_tenants, err)) != CF_OK)
		return rc;
	for (size_t t = 0; rc == CF_OK && t < n_tenants; t++) {
		X509_CRL *crl = NULL;
		cf_exposed_row *rows = NULL;
		size_t n = 0;
		char *revoked;

		if (tenants[t].crl_pem == NULL)
			continue;
		rc = cf_crl_parse((const unsigned char *)tenants[t].crl_pem,
				  strlen(tenants[t].crl_pem), "a stored CRL", &crl,
				  err);
		if (rc != CF_OK)
			break;
		revoked = revoked_json(crl);
		X509_CRL_free(crl);
		if (revoked == NULL) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
			break;
		}
		rc = cf_store_exposed(st, tenants[t].id, revoked, "", &rows, &n,
				      err);
		free(revoked);
		/* Rows come in name order: count the distinct names. */
		for (size_t i = 0; rc == CF_OK && i < n; i++)
			if (i == 0 || strcmp(rows[i - 1].name, rows[i].name) != 0)
				(*secrets)++;
		free(rows);
	}
	cf_tenants_free(tenants, n_tenants);
	return rc;
}

/* ---- GET /v1/status ------------------------------------------------------ */

static int may_read(const srv_identity *id, const char *name)
{
	return api_secret_allows(id, "secret.read", name) ||
	       api_secret_allows(id, "secret.write", name);
}

/* Whether the comma-separated list holds group. */
static int in_groups(const char *groups, const char *group)
{
	size_t want = strlen(group);

	for (const char *p = groups ? groups : ""; *p != '\0';) {
		size_t len = strcspn(p, ",");

		if (len == want && strncmp(p, group, len) == 0)
			return 1;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

static json_t *ack_json(const cf_ack_row *a)
{
	return json_pack("{s:I,s:I,s:s,s:s,s:I,s:o}",
			 "version", (json_int_t)a->version,
			 "time", (json_int_t)a->time, "result", a->result,
			 "reason", a->reason,
			 "received", (json_int_t)a->received,
			 "signed", api_b64_json(a->der, a->len));
}

/* The exposed rows of name (rows are in name order). */
static json_t *exposed_json(const cf_exposed_row *x, size_t n,
			    const char *name)
{
	json_t *list = json_array();

	for (size_t i = 0; list != NULL && i < n; i++) {
		if (strcmp(x[i].name, name) != 0)
			continue;
		if (json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:I,s:s}",
			"fp", x[i].recipient, "name", x[i].cn, "kind",
			x[i].kind, "version", (json_int_t)x[i].version,
			"via", x[i].via)) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	return list;
}

static int is_exposed(const cf_exposed_row *x, size_t n, const char *name,
		      const char *fp)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(x[i].name, name) == 0 &&
		    strcmp(x[i].recipient, fp) == 0)
			return 1;
	return 0;
}

static int has_cluster(const cf_cert_row *recips, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(recips[i].kind, "cluster") == 0)
			return 1;
	return 0;
}

/*
 * One page of a secret's status: which entries, from where, how many.
 * Entries are the recipients (in group, if one is asked) and, for a
 * version sealed to a cluster key, the acknowledgements of agents that
 * are no recipient (the cluster's members: the server cannot tell a
 * member that has not acknowledged); one fingerprint order over both.
 */
struct page {
	const char *group;        /* NULL: every recipient */
	const char *after;        /* NULL: from the first entry */
	size_t limit;             /* entries at most (0: none, only "more") */
	size_t shown;             /* entries put in the answer */
};

/*
 * One secret's status, NULL when out of memory; *out NULL (group filter)
 * when it has no recipient in group.  CF_OK or the store's failure in
 * *err.
 */
static cf_status secret_status(cf_store *st, const srv_identity *id,
			       const cf_secret_row *s, struct page *pg,
			       const cf_exposed_row *x, size_t n_x,
			       json_t **out, cf_error *err)
{
	cf_cert_row *recips = NULL;
	cf_ack_row *acks = NULL;
	size_t n_recips = 0, n_acks = 0, ri = 0, ai = 0, a = 0, r2 = 0;
	json_t *list = NULL, *members = NULL, *o;
	const char *last = NULL;
	int cluster, more = 0;
	cf_status rc;

	*out = NULL;
	rc = cf_store_recipient_certs(st, id->tenant, s->name, s->version,
				      &recips, &n_recips, err);
	if (rc == CF_OK)
		rc = cf_store_ack_list(st, id->tenant, s->name, &acks, &n_acks,
				       err);
	if (rc != CF_OK)
		goto out;
	cluster = pg->group == NULL && has_cluster(recips, n_recips);
	if ((list = json_array()) == NULL ||
	    (cluster && (members = json_array()) == NULL))
		goto nomem;
	for (;;) {
		const cf_cert_row *c = NULL;
		const cf_ack_row *m = NULL;
		json_t *ack = json_null();

		/* The next recipient (in group) and the next member's ack. */
		while (ri < n_recips && pg->group != NULL &&
		       !in_groups(recips[ri].groups, pg->group))
			ri++;
		while (cluster && ai < n_acks) {
			while (r2 < n_recips && strcmp(recips[r2].fp,
						       acks[ai].agent) < 0)
				r2++;
			if (r2 < n_recips &&
			    strcmp(recips[r2].fp, acks[ai].agent) == 0)
				ai++;           /* a recipient's: not a member's */
			else
				break;
		}
		if (ri < n_recips)
			c = &recips[ri];
		if (cluster && ai < n_acks)
			m = &acks[ai];
		if (c == NULL && m == NULL)
			break;
		if (c != NULL && m != NULL) {
			if (strcmp(c->fp, m->agent) < 0)
				m = NULL;
			else
				c = NULL;
		}
		if (c != NULL)
			ri++;
		else
			ai++;
		if (pg->after != NULL &&
		    strcmp(c ? c->fp : m->agent, pg->after) <= 0)
			continue;
		if (pg->shown == pg->limit) {
			more = 1;
			break;
		}
		if (m != NULL) {
			ack = ack_json(m);
			o = ack ? json_pack("{s:s,s:o}", "fp", m->agent, "ack",
					    ack) : NULL;
			if (o == NULL || json_array_append_new(members, o) != 0)
				goto nomem;
			last = m->agent;
			pg->shown++;
			continue;
		}
		while (a < n_acks && strcmp(acks[a].agent, c->fp) < 0)
			a++;
		if (a < n_acks && strcmp(acks[a].agent, c->fp) == 0 &&
		    (ack = ack_json(&acks[a])) == NULL)
			goto nomem;
		o = json_pack("{s:s,s:s,s:s,s:o,s:b,s:o}", "fp", c->fp,
			      "name", c->name, "kind", c->kind,
			      "groups", api_split_json(c->groups),
			      "revoked", is_exposed(x, n_x, s->name, c->fp),
			      "ack", ack);
		if (o == NULL || json_array_append_new(list, o) != 0)
			goto nomem;
		last = c->fp;
		pg->shown++;
	}
	if (pg->group != NULL && json_array_size(list) == 0 && !more)
		goto out;   /* *out NULL: nothing of group */
	*out = json_pack("{s:s,s:I,s:I,s:s,s:o,s:o}", "name", s->name,
			 "version", (json_int_t)s->version,
			 "created", (json_int_t)s->created, "writer", s->writer,
			 "recipients", list,
			 "exposed", exposed_json(x, n_x, s->name));
	list = NULL;
	if (*out == NULL)
		goto nomem;
	if (members != NULL &&
	    json_object_set_new(*out, "cluster_acks", members) != 0) {
		members = NULL;
		goto nomem;
	}
	members = NULL;
	/* The rest: GET /v1/status?name=N&after=LAST (and the group). */
	if (more && (json_object_set_new(*out, "recipients_more",
					 json_true()) != 0 ||
		     json_object_set_new(*out, "recipients_after", json_string(
					 last ? last : pg->after ? pg->after :
					 "")) != 0))
		goto nomem;
	goto out;
nomem:
	json_decref(*out);
	*out = NULL;
	rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
out:
	json_decref(list);
	json_decref(members);
	cf_cert_rows_free(recips, n_recips);
	cf_ack_rows_free(acks, n_acks);
	return rc;
}

static void status_get(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	cf_store *st = srv_req_store(r);
	const char *name = srv_req_param(r, "name");
	const char *prefix = srv_req_param(r, "prefix");
	const char *group = srv_req_param(r, "group");
	const char *after = NULL;
	cf_secret_row *rows = NULL, one;
	cf_exposed_row *x = NULL;
	X509_CRL *crl = NULL;
	char *revoked = NULL;
	json_t *list = NULL, *item;
	size_t n = 0, n_x = 0, kept = 0, budget = STATUS_ENTRIES_MAX;
	int64_t limit;
	int more = 0;
	struct page pg = { 0 };
	cf_error err;
	cf_status rc;

	if (api_need_operator(r, id, "reading the rollout status") != 0)
		return;
	if (prefix != NULL && (name != NULL || group != NULL)) {
		srv_reply_error(r, 400, "bad_request",
			"prefix goes alone: give name (and group), prefix, or "
			"group");
		return;
	}
	if (api_param_hex(r, "after", 64, &after) != 0 ||
	    api_param_int(r, "limit", 1, STATUS_ENTRIES_MAX,
			  STATUS_ENTRIES_NAMED, &limit) != 0)
		return;
	if ((after != NULL || srv_req_param(r, "limit") != NULL) &&
	    name == NULL) {
		srv_reply_error(r, 400, "bad_request",
			"after and limit page one secret's recipients: they go "
			"with name");
		return;
	}
	if ((name != NULL && api_name_ok(r, "name", name) != 0) ||
	    (group != NULL && api_name_ok(r, "group", group) != 0))
		return;
	if (prefix != NULL && (strlen(prefix) > CF_NAME_MAX_BYTES ||
	    strspn(prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		   "0123456789._/-") != strlen(prefix))) {
		srv_reply_error(r, 400, "bad_request",
			"query parameter prefix must be at most %d characters "
			"of A-Z a-z 0-9 . _ / -", CF_NAME_MAX_BYTES);
		return;
	}
	if (name != NULL) {
		if (!may_read(id, name)) {
			api_deny_secret(r, id, "secret.read or secret.write", name);
			return;
		}
		rc = cf_store_secret_latest(st, id->tenant, name, &one, &err);
		if (rc == CF_OK && one.deleted)
			rc = cf_error_set(&err, CF_ERR_NOT_FOUND,
					  "secret %s was deleted", name);
		if (rc == CF_ERR_NOT_FOUND) {
			srv_reply_error(r, 404, "not_found",
				"there is no secret %s", name);
			return;
		}
		if (rc != CF_OK) {
			api_fail(r, &err, "reading the rollout status");
			return;
		}
		rows = malloc(sizeof(*rows));
		if (rows == NULL) {
			api_reply(r, 500, NULL);
			return;
		}
		rows[0] = one;
		n = 1;
	} else if (cf_store_secret_list(st, id->tenant, prefix ? prefix : "",
					&rows, &n, &err) != CF_OK) {
		api_fail(r, &err, "reading the rollout status");
		return;
	}
	if (api_tenant_crl(r, id->tenant, &crl) != 0)
		goto out;
	if ((revoked = revoked_json(crl)) == NULL) {
		api_reply(r, 500, NULL);
		goto out;
	}
	if (cf_store_exposed(st, id->tenant, revoked,
			     name ? name : prefix ? prefix : "", &x, &n_x,
			     &err) != CF_OK) {
		api_fail(r, &err, "finding exposed envelopes");
		goto out;
	}
	if ((list = json_array()) == NULL) {
		api_reply(r, 500, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!may_read(id, rows[i].name))
			continue;
		if (kept == STATUS_SECRETS_MAX) {
			more = 1;
			break;
		}
		pg.group = group;
		pg.after = after;
		pg.limit = name != NULL ? (size_t)limit :
			   budget < STATUS_ENTRIES_EACH ? budget :
			   STATUS_ENTRIES_EACH;
		pg.shown = 0;
		if (secret_status(st, id, &rows[i], &pg, x, n_x, &item,
				  &err) != CF_OK) {
			api_fail(r, &err, "reading the rollout status");
			goto out;
		}
		if (item == NULL)
			continue;   /* no recipient in group */
		budget -= pg.shown;
		if (json_array_append_new(list, item) != 0) {
			api_reply(r, 500, NULL);
			goto out;
		}
		kept++;
	}
	api_reply(r, 200, json_pack("{s:o,s:I,s:b}", "secrets", list,
				    "crl_number", (json_int_t)id->crl_number,
				    "more", more));
	list = NULL;
out:
	json_decref(list);
	free(x);
	free(revoked);
	X509_CRL_free(crl);
	free(rows);
}

const srv_route srv_routes_status[] = {
	{"POST", "/v1/agent/acks", 0, 0, acks_post},
	{"GET", "/v1/status", 0, 0, status_get},
	{NULL, NULL, 0, 0, NULL},
};
