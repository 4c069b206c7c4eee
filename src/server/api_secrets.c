/*
 * api_secrets.c - secrets, their envelopes and the agent feed
 * (docs/API.md, "Secrets").
 *
 *   PUT    /v1/secrets?name=N            secret.write on N
 *   GET    /v1/secrets?prefix=P          secret.read or secret.write (per name)
 *   DELETE /v1/secrets?name=N            secret.write on N
 *   GET    /v1/secrets/history?name=N    secret.read or secret.write on N
 *   GET    /v1/secrets/envelope?name=N   operators: secret.read or
 *                                        secret.write on N; anyone: only
 *                                        the envelope addressed to itself
 *                                        (else, with Coffer-Cluster, its
 *                                        cluster's)
 *   GET    /v1/secrets/recipients?name=N secret.read or secret.write on N
 *   DELETE /v1/secrets/envelopes?recipient=FP[&name=N]  a recipient's
 *                                        envelopes of the names (or N)
 *                                        the caller may write
 *   POST   /v1/secrets/envelopes?name=N&version=V  secret.write on N:
 *                                        more recipients for the latest
 *   GET    /v1/agent/secrets             anyone: its own feed (long-poll),
 *                                        with ?commands=C also the commands
 *                                        pending for it (api_commands.c),
 *                                        with a Coffer-Cluster header also
 *                                        its cluster's feed
 *
 * Clusters (docs/API.md, "Clusters"): a name "cluster-key/NAME" carries
 * the key of cluster NAME, the enrollers' to give, so every secret.read
 * and secret.write check on it takes agent.enroll on NAME instead (and a
 * name under cluster-key/ that is not of that form is nobody's).  A
 * member agent, proving it holds the cluster key (api_cluster_member),
 * may PUT cluster/NAME/... sealed to cluster certificates named NAME
 * only.  An enroller re-sealing a cluster's secrets to its new key may add
 * envelopes for, and purge those of, certificates of a cluster its
 * agent.enroll covers, on names it may not otherwise write.
 *
 * The server sees ciphertext only: it checks an envelope's size and that
 * it is DER, never what is inside.  A version is stored whole (every
 * recipient's envelope, one transaction, with its secret.put entry) or
 * not at all, and only if every recipient is a certificate of the
 * tenant's directory that the tenant's CRL does not revoke (nor its
 * issuing enroller).  An envelope is handed out only to the certificate
 * it is addressed to, and every answer that carries envelopes is logged
 * (secret.read) before it is sent: no log entry, no envelope.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cluster.h"
#include "command.h"
#include "envelope.h"

#define VERSION_MAX ((int64_t)1 << 53)  /* exact in every JSON reader */
#define WHY_MAX 512

static int may_read(const srv_identity *id, const char *name)
{
	return api_secret_allows(id, "secret.read", name) ||
	       api_secret_allows(id, "secret.write", name);
}

/*
 * Is every recipient a cluster certificate of the directory named
 * cluster (NULL: of one same cluster, whose name goes to cluster_out,
 * size CF_NAME_MAX_BYTES + 1)?  1 if so; 0 if not, with why (size
 * WHY_MAX) naming the first that is not; -1 answered (500).
 */
static int all_of_cluster(srv_req *r, const char *tenant,
			  const char (*fps)[65], size_t n, const char *cluster,
			  char *cluster_out, char *why)
{
	cf_cert_row row;
	char first[CF_NAME_MAX_BYTES + 1] = "";
	cf_error err;
	cf_status rc;
	int ok = 1;

	memset(&row, 0, sizeof(row));
	for (size_t i = 0; ok == 1 && i < n; i++) {
		cf_cert_row_clear(&row);
		rc = cf_store_cert_get(srv_req_store(r), tenant, fps[i], &row,
				       &err);
		if (rc != CF_OK && rc != CF_ERR_NOT_FOUND) {
			api_fail(r, &err, "looking up recipients");
			ok = -1;
			break;
		}
		if (cluster == NULL && i == 0 && rc == CF_OK)
			snprintf(first, sizeof(first), "%s", row.cluster);
		if (rc == CF_OK && strcmp(row.kind, "cluster") == 0 &&
		    row.cluster[0] != '\0' &&
		    strcmp(row.cluster, cluster ? cluster : first) == 0)
			continue;
		if (rc != CF_OK)
			snprintf(why, WHY_MAX, "recipient %.64s is not "
				 "in the directory", fps[i]);
		else if (strcmp(row.kind, "cluster") != 0)
			snprintf(why, WHY_MAX, "recipient %.64s is "
				 "%s \"%.64s\", not a cluster certificate",
				 fps[i], row.kind, row.name);
		else
			snprintf(why, WHY_MAX, "recipient %.64s is a "
				 "certificate of cluster \"%.64s\", not of "
				 "\"%.64s\"", fps[i], row.cluster,
				 cluster ? cluster : first);
		ok = 0;
	}
	if (ok == 1 && cluster_out != NULL)
		snprintf(cluster_out, CF_NAME_MAX_BYTES + 1, "%s",
			 cluster ? cluster : first);
	cf_cert_row_clear(&row);
	return ok;
}

/* ---- PUT /v1/secrets -------------------------------------------------------- */

/*
 * May an agent that holds no rules write name as a cluster member?  For
 * cluster/NAME/... it must prove (Coffer-Cluster) that it holds the key
 * of a cluster certificate named NAME; cluster then gets NAME.  1 if so,
 * 0 if name is not a member's to write (nothing answered), -1 answered.
 */
static int member_write(srv_req *r, const srv_identity *id, const char *name,
			char cluster[CF_NAME_MAX_BYTES + 1])
{
	char want[CF_NAME_MAX_BYTES + 1];
	cf_cert_row row;
	int m;

	cluster[0] = '\0';
	if (id->kind != CF_KIND_AGENT ||
	    !cf_cluster_of_name(name, 0, want, sizeof(want)))
		return 0;
	m = api_cluster_member(r, id, &row, NULL);
	if (m < 0)
		return -1;
	if (m == 0) {
		srv_reply_error(r, 403, "forbidden", "agent \"%s\" may write "
			"%s only as a member of cluster \"%s\": send the "
			API_CLUSTER_HEADER " header with the proof that it holds "
			"the cluster's key (coffer agent cache put does)",
			id->name, name, want);
		return -1;
	}
	if (strcmp(row.cluster, want) != 0) {
		srv_reply_error(r, 403, "forbidden", "the " API_CLUSTER_HEADER
			" header proves membership of cluster \"%s\", and %s "
			"belongs to cluster \"%s\"", row.cluster, name, want);
		cf_cert_row_clear(&row);
		return -1;
	}
	cf_cert_row_clear(&row);
	snprintf(cluster, CF_NAME_MAX_BYTES + 1, "%s", want);
	return 1;
}

static void secret_put(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *name;
	char cluster[CF_NAME_MAX_BYTES + 1] = "", why[WHY_MAX];
	json_t *body = NULL;
	api_envelopes envs = { 0 };
	cf_audit_entry audit;
	int64_t version;
	cf_error err;

	if (api_param_name(r, "name", &name) != 0)
		return;
	if (!api_secret_allows(id, "secret.write", name)) {
		int m = member_write(r, id, name, cluster);

		if (m < 0)
			return;
		if (m == 0) {
			api_deny_secret(r, id, "secret.write", name);
			return;
		}
	}
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_int(r, body, "version", 1, VERSION_MAX, &version) != 0)
		goto out;
	if (api_envelopes_read(r, id, body, API_ENVELOPES_MAX, &envs) != 0)
		goto out;
	/* A member's cache entry: the next version (a member cannot push a
	 * name out of reach with a huge one), for the cluster's key and no
	 * one else. */
	if (cluster[0] != '\0') {
		int64_t latest = api_latest_version(r, id->tenant, name);

		if (version != latest + 1) {
			char msg[512];

			snprintf(msg, sizeof(msg), "a member of cluster \"%s\" "
				 "writes the next version of %s only, %lld, not "
				 "%lld; nothing was stored", cluster, name,
				 (long long)latest + 1, (long long)version);
			api_reply(r, 409, json_pack("{s:{s:s,s:s},s:I}",
				"error", "code", "conflict", "message", msg,
				"latest", (json_int_t)latest));
			goto out;
		}
	}
	if (cluster[0] != '\0') {
		int all = all_of_cluster(r, id->tenant,
			(const char (*)[65])envs.recipients, envs.n, cluster,
			NULL, why);

		if (all < 0)
			goto out;
		if (all == 0) {
			srv_reply_error(r, 403, "forbidden", "agent \"%s\" "
				"may seal %s to certificates of cluster \"%s\" "
				"only, and %s; nothing was stored", id->name,
				name, cluster, why);
			goto out;
		}
	}
	srv_audit_init(r, &audit, "secret.put", name, envs.bytes);
	if (cf_store_secret_put(srv_req_store(r), id->tenant, name, version,
				id->fp, srv_now(), envs.envs, envs.n, &audit, NULL,
				&err) != CF_OK) {
		if (err.code != CF_ERR_CONFLICT) {
			api_fail(r, &err, "storing a secret version");
			goto out;
		}
		api_reply_stale(r, id->tenant, name, version, "nothing was "
				"stored; seal and upload it again");
		goto out;
	}
	srv_wake(id->tenant, (const char (*)[65])envs.recipients, envs.n);
	api_reply(r, 201, json_pack("{s:s,s:I,s:I,s:I}", "name", name,
		"version", (json_int_t)version,
		"recipients", (json_int_t)envs.n,
		"bytes", (json_int_t)envs.bytes));
out:
	api_envelopes_clear(&envs);
	json_decref(body);
}

/* ---- GET /v1/secrets, history ------------------------------------------------- */

static json_t *secret_json(const cf_secret_row *s, int with_deleted)
{
	json_t *o = json_pack("{s:s,s:I,s:I,s:s,s:I,s:I}", "name", s->name,
		"version", (json_int_t)s->version,
		"created", (json_int_t)s->created, "writer", s->writer,
		"recipients", (json_int_t)s->recipients,
		"bytes", (json_int_t)s->bytes);

	if (o && with_deleted)
		json_object_set_new(o, "deleted", json_boolean(s->deleted));
	return o;
}

static void secrets_list(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *prefix = srv_req_param(r, "prefix");
	cf_secret_row *rows = NULL;
	json_t *list;
	size_t n = 0;
	cf_error err;

	if (api_need_operator(r, id, "listing secrets") != 0)
		return;
	if (prefix == NULL)
		prefix = "";
	if (strlen(prefix) > CF_NAME_MAX_BYTES ||
	    strspn(prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		   "0123456789._/-") != strlen(prefix)) {
		srv_reply_error(r, 400, "bad_request",
			"query parameter prefix must be at most %d characters "
			"of A-Z a-z 0-9 . _ / -", CF_NAME_MAX_BYTES);
		return;
	}
	if (cf_store_secret_list(srv_req_store(r), id->tenant, prefix, &rows,
				 &n, &err) != CF_OK) {
		api_fail(r, &err, "listing secrets");
		return;
	}
	list = json_array();
	for (size_t i = 0; list && i < n; i++)
		if (may_read(id, rows[i].name))
			json_array_append_new(list, secret_json(&rows[i], 0));
	api_reply(r, 200, list ? json_pack("{s:o}", "secrets", list) : NULL);
	free(rows);
}

static void secret_history(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *name;
	cf_secret_row *rows = NULL;
	json_t *list;
	size_t n = 0;
	cf_error err;
	cf_status rc;

	if (api_param_name(r, "name", &name) != 0)
		return;
	if (!may_read(id, name)) {
		api_deny_secret(r, id, "secret.read or secret.write", name);
		return;
	}
	rc = cf_store_secret_history(srv_req_store(r), id->tenant, name, &rows,
				     &n, &err);
	if (rc == CF_OK && n == 0) {
		rc = CF_ERR_NOT_FOUND;
		cf_error_set(&err, rc, "there is no secret %s", name);
	}
	if (rc != CF_OK) {
		if (rc == CF_ERR_NOT_FOUND)
			srv_reply_error(r, 404, "not_found",
				"there is no secret %s; coffer ls lists them", name);
		else
			api_fail(r, &err, "reading a secret's history");
		free(rows);
		return;
	}
	list = json_array();
	for (size_t i = 0; list && i < n; i++)
		json_array_append_new(list, secret_json(&rows[i], 1));
	api_reply(r, 200, list ? json_pack("{s:s,s:o}", "name", name,
					   "versions", list) : NULL);
	free(rows);
}

/* ---- GET /v1/secrets/envelope ------------------------------------------------- */

static void secret_envelope(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *name;
	cf_feed_item item;
	cf_cert_row crow;
	cf_audit_entry audit;
	int64_t version;
	json_t *body;
	cf_error err;
	cf_status rc;
	int member;

	memset(&item, 0, sizeof(item));
	memset(&crow, 0, sizeof(crow));
	if (api_param_name(r, "name", &name) != 0 ||
	    api_param_int(r, "version", 1, VERSION_MAX, 0, &version) != 0)
		return;
	/* Agents and clusters may read what is addressed to them, no more. */
	if (srv_is_operator(id) && !may_read(id, name)) {
		api_deny_secret(r, id, "secret.read or secret.write", name);
		return;
	}
	if ((member = api_cluster_member(r, id, &crow, NULL)) < 0)
		return;
	rc = cf_store_envelope_get(srv_req_store(r), id->tenant, name, version,
				   id->fp, &item, &err);
	/* A member that has none of its own gets the cluster's. */
	if (rc == CF_ERR_NOT_FOUND && member)
		rc = cf_store_envelope_get(srv_req_store(r), id->tenant, name,
					   version, crow.fp, &item, &err);
	if (rc == CF_ERR_NOT_FOUND) {
		char which[40] = "";

		if (version > 0)
			snprintf(which, sizeof(which), " version %lld",
				 (long long)version);
		srv_reply_error(r, 404, "not_found",
			"no envelope of %s%s is addressed to you (%s)%s%s%s",
			name, which, id->fp, member ? " nor to your cluster (" :
			"", member ? crow.fp : "", member ? ")" : "");
		goto out;
	}
	if (rc != CF_OK) {
		api_fail(r, &err, "reading an envelope");
		goto out;
	}
	srv_audit_init(r, &audit, "secret.read", name, (int64_t)item.len);
	if (cf_store_audit_append(srv_req_store(r), &audit, &err) != CF_OK) {
		api_fail(r, &err, "logging an envelope read");
		goto out;
	}
	body = json_pack("{s:s,s:I,s:I,s:s,s:o}", "name", item.name,
		"version", (json_int_t)item.version,
		"created", (json_int_t)item.created, "writer", item.writer,
		"envelope", api_b64_json(item.der, item.len));
	api_reply(r, 200, body);
out:
	cf_feed_item_clear(&item);
	cf_cert_row_clear(&crow);
}

/* ---- DELETE /v1/secrets --------------------------------------------------------- */

static void secret_delete(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *name;
	char (*recipients)[65] = NULL;
	size_t n = 0;
	cf_audit_entry audit;
	cf_error err;

	if (api_param_name(r, "name", &name) != 0)
		return;
	if (!api_secret_allows(id, "secret.write", name)) {
		api_deny_secret(r, id, "secret.write", name);
		return;
	}
	srv_audit_init(r, &audit, "secret.delete", name, 0);
	if (cf_store_secret_delete(srv_req_store(r), id->tenant, name, id->fp,
				   srv_now(), &audit, &recipients, &n,
				   &err) != CF_OK) {
		if (err.code == CF_ERR_NOT_FOUND)
			srv_reply_error(r, 404, "not_found",
				"there is no secret %s (or it is deleted "
				"already); coffer ls lists them", name);
		else
			api_fail(r, &err, "deleting a secret");
		return;
	}
	if (n > 0)
		srv_wake(id->tenant, (const char (*)[65])recipients, n);
	free(recipients);
	api_reply(r, 200, json_pack("{s:s,s:I,s:b}", "name", name,
		"version", (json_int_t)api_latest_version(r, id->tenant, name),
		"deleted", 1));
}

/* ---- GET /v1/secrets/recipients ------------------------------------------------- */

static void secret_recipients(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *name;
	cf_recipient_row *rows = NULL;
	int64_t version, got = 0;
	json_t *list;
	size_t n = 0;
	cf_error err;

	if (api_need_operator(r, id, "listing a secret's recipients") != 0 ||
	    api_param_name(r, "name", &name) != 0 ||
	    api_param_int(r, "version", 1, VERSION_MAX, 0, &version) != 0)
		return;
	if (!may_read(id, name)) {
		api_deny_secret(r, id, "secret.read or secret.write", name);
		return;
	}
	if (cf_store_secret_recipients(srv_req_store(r), id->tenant, name,
				       version, &got, &rows, &n, &err) != CF_OK) {
		api_fail(r, &err, "listing a secret's recipients");
		return;
	}
	list = json_array();
	for (size_t i = 0; list && i < n; i++)
		if (json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "fp",
			rows[i].fp, "kind", rows[i].kind, "name",
			rows[i].name)) != 0) {
			json_decref(list);
			list = NULL;
		}
	api_reply(r, 200, list ? json_pack("{s:s,s:I,s:o}", "name", name,
		"version", (json_int_t)got, "recipients", list) : NULL);
	free(rows);
}

/* ---- DELETE /v1/secrets/envelopes ----------------------------------------------- */

/*
 * Is fp a cluster certificate of a cluster the caller's agent.enroll
 * rules cover?  1 if so, 0 if not, -1 answered (500).
 */
static int enrolled_cluster(srv_req *r, const srv_identity *id,
			    const char *fp)
{
	cf_cert_row row, *all = NULL;
	cf_cert_filter f = { 0 };
	size_t n = 0;
	cf_error err;
	cf_status rc;
	int ok;

	rc = cf_store_cert_get(srv_req_store(r), id->tenant, fp, &row, &err);
	if (rc == CF_ERR_NOT_FOUND)
		return 0;
	if (rc != CF_OK) {
		api_fail(r, &err, "looking up a recipient");
		return -1;
	}
	ok = strcmp(row.kind, "cluster") == 0 && row.cluster[0] != '\0' &&
	     srv_allows(id, "agent.enroll", row.cluster);
	/*
	 * Only a key a rotation replaced: another certificate of the same
	 * cluster entered the directory after it.  The current key's
	 * envelopes are the members' secrets, not the enroller's to drop.
	 */
	if (ok) {
		f.kind = "cluster";
		rc = cf_store_cert_list(srv_req_store(r), id->tenant, &f, &all,
					&n, &err);
		if (rc != CF_OK) {
			cf_cert_row_clear(&row);
			api_fail(r, &err, "looking up the cluster's keys");
			return -1;
		}
		ok = 0;
		for (size_t i = 0; i < n && !ok; i++)
			ok = strcmp(all[i].cluster, row.cluster) == 0 &&
			     strcmp(all[i].fp, row.fp) != 0 &&
			     all[i].created > row.created;
		cf_cert_rows_free(all, n);
	}
	cf_cert_row_clear(&row);
	return ok;
}

/*
 * Removes what the server holds for one recipient: every stored envelope
 * (all versions) of the names the caller may write, or of every name if
 * the recipient is a cluster certificate of a cluster the caller may
 * enroll into (coffer cluster rotate drops the old key's envelopes).
 * What a recipient already decrypted is out of reach; this is the
 * server-side half of `coffer rotate --without` (new values first, then
 * this).
 */
static void envelopes_purge(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *fp;
	char (*names)[256] = NULL, (*mine)[256] = NULL;
	size_t n = 0, n_mine = 0;
	json_t *purged = NULL, *kept = NULL;
	cf_audit_entry audit;
	int64_t removed = 0;
	cf_error err;
	int cl;

	const char *only = srv_req_param(r, "name");

	if (api_need_operator(r, id, "removing a recipient's envelopes") != 0 ||
	    api_param_hex(r, "recipient", 64, &fp) != 0 ||
	    (only != NULL && api_name_ok(r, "name", only) != 0))
		return;
	if (fp == NULL) {
		srv_reply_error(r, 400, "bad_request", "give ?recipient=FP, the "
			"fingerprint whose envelopes to remove");
		return;
	}
	/* An old cluster key's envelopes are for who enrolls into it. */
	if ((cl = enrolled_cluster(r, id, fp)) < 0)
		return;
	if (cf_store_recipient_names(srv_req_store(r), id->tenant, fp, &names,
				     &n, &err) != CF_OK) {
		api_fail(r, &err, "listing a recipient's secrets");
		return;
	}
	mine = calloc(n ? n : 1, sizeof(*mine));
	purged = json_array();
	kept = json_array();
	if (mine == NULL || purged == NULL || kept == NULL) {
		api_reply(r, 500, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (only != NULL && strcmp(only, names[i]) != 0)
			continue;
		if (cl == 1 || api_secret_allows(id, "secret.write", names[i])) {
			memcpy(mine[n_mine++], names[i], sizeof(names[i]));
			json_array_append_new(purged, json_string(names[i]));
		} else {
			json_array_append_new(kept, json_string(names[i]));
		}
	}
	srv_audit_init(r, &audit, "envelope.purge", fp, 0);
	if (cf_store_envelopes_purge(srv_req_store(r), id->tenant, fp,
				     (const char (*)[256])mine, n_mine, &audit,
				     &removed, &err) != CF_OK) {
		api_fail(r, &err, "removing a recipient's envelopes");
		goto out;
	}
	api_reply(r, 200, json_pack("{s:s,s:I,s:O,s:O}", "recipient", fp,
		"removed", (json_int_t)removed, "names", purged, "kept", kept));
out:
	json_decref(purged);
	json_decref(kept);
	free(mine);
	free(names);
}

/* ---- POST /v1/secrets/envelopes (coffer sync) ------------------------------------ */

/*
 * 1 if version V of name has an envelope for a certificate of cluster
 * (one of its keys); 0 with why said; -1 answered.  Names under
 * cluster-key/ never qualify: a cluster's key goes to agents.
 */
static int sealed_to_cluster(srv_req *r, const char *tenant, const char *name,
			     int64_t version, const char *cluster,
			     char why[WHY_MAX])
{
	cf_cert_row *rows = NULL;
	size_t n = 0;
	cf_error err;
	int found = 0;

	if (strncmp(name, CF_CLUSTER_KEY_PREFIX,
		    strlen(CF_CLUSTER_KEY_PREFIX)) == 0) {
		snprintf(why, WHY_MAX, "%s is a cluster's key, which is sealed "
			 "to agents only", name);
		return 0;
	}
	if (cf_store_recipient_certs(srv_req_store(r), tenant, name, version,
				     &rows, &n, &err) != CF_OK) {
		api_fail(r, &err, "reading a version's recipients");
		return -1;
	}
	for (size_t i = 0; i < n && !found; i++)
		found = strcmp(rows[i].kind, "cluster") == 0 &&
			strcmp(rows[i].cluster, cluster) == 0;
	cf_cert_rows_free(rows, n);
	if (!found)
		snprintf(why, WHY_MAX, "version %lld of %s was never sealed to "
			 "cluster \"%s\": only what an older key of the cluster "
			 "held is re-sealed this way", (long long)version, name,
			 cluster);
	return found;
}

static void envelopes_add(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	const char *name;
	int64_t version, added = 0;
	api_envelopes envs = { 0 };
	char (*woken)[65] = NULL;
	char cluster[CF_NAME_MAX_BYTES + 1] = "", why[WHY_MAX];
	size_t n_woken = 0;
	cf_audit_entry audit;
	json_t *body = NULL;
	cf_error err;
	int may_write;

	if (api_param_name(r, "name", &name) != 0 ||
	    api_param_int(r, "version", 1, VERSION_MAX, 0, &version) != 0)
		return;
	/* Without secret.write, only envelopes for a cluster's certificates
	 * by who may enroll into it: checked once the recipients are known. */
	may_write = api_secret_allows(id, "secret.write", name);
	if (!may_write && !api_holds(id, "agent.enroll")) {
		api_deny_secret(r, id, "secret.write", name);
		return;
	}
	if (version == 0) {
		srv_reply_error(r, 400, "bad_request", "give ?version=V, the "
			"version the envelopes belong to");
		return;
	}
	if ((body = srv_req_json(r)) == NULL)
		return;
	if (api_envelopes_read(r, id, body, API_ENVELOPES_MAX, &envs) != 0)
		goto out;
	if (!may_write) {
		int all = all_of_cluster(r, id->tenant,
			(const char (*)[65])envs.recipients, envs.n, NULL,
			cluster, why);

		if (all < 0)
			goto out;
		/* A re-seal by `cluster rotate`: the version must already
		 * be sealed to another key of that same cluster. */
		if (all == 1 && srv_allows(id, "agent.enroll", cluster)) {
			all = sealed_to_cluster(r, id->tenant, name, version,
						cluster, why);
			if (all < 0)
				goto out;
		}
		if (all == 0 || !srv_allows(id, "agent.enroll", cluster)) {
			if (all == 1)
				snprintf(why, sizeof(why), "it holds no "
					 "agent.enroll rule matching cluster "
					 "\"%s\"", cluster);
			srv_reply_error(r, 403, "forbidden", "%s \"%s\" holds "
				"no secret.write rule matching %s, so it may "
				"only add envelopes for the certificates of a "
				"cluster it may enroll into, and %s; nothing "
				"was stored", cf_kind_name(id->kind), id->name,
				name, why);
			goto out;
		}
	}
	srv_audit_init(r, &audit, "secret.add", name, envs.bytes);
	if (cf_store_version_add(srv_req_store(r), id->tenant, name, version,
				 srv_now(), envs.envs, envs.n, &audit, &added,
				 &woken, &n_woken, &err) != CF_OK) {
		api_fail(r, &err, "adding envelopes to a version");
		goto out;
	}
	if (n_woken > 0)
		srv_wake(id->tenant, (const char (*)[65])woken, n_woken);
	api_reply(r, 200, json_pack("{s:s,s:I,s:I,s:I}", "name", name,
		"version", (json_int_t)version, "added", (json_int_t)added,
		"skipped", (json_int_t)envs.n - (json_int_t)added));
out:
	free(woken);
	api_envelopes_clear(&envs);
	json_decref(body);
}

/* ---- GET /v1/agent/secrets -------------------------------------------------------- */

/* "a,b,c" of the names that carry envelopes, cut to fit an audit object. */
static void feed_object(const cf_feed_item *items, size_t n, char *buf,
			size_t size)
{
	size_t len = 0, need;
	const char *more = ",...";

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (items[i].deleted)
			continue;
		need = strlen(items[i].name) + (len ? 1 : 0);
		if (len + need + strlen(more) >= size) {
			snprintf(buf + len, size - len, "%s", len ? more : "...");
			return;
		}
		len += (size_t)snprintf(buf + len, size - len, "%s%s",
					len ? "," : "", items[i].name);
	}
}

/*
 * The commands pending for the caller after its command cursor, as the
 * feed answer's "commands" (docs/COMMANDS.md); their reading is logged
 * (cmd.fetch) before the answer leaves.  -1 answered.
 */
static int feed_commands(srv_req *r, const srv_identity *id, int64_t since,
			 json_t **list_out, int64_t *cursor_out, size_t *n_out)
{
	cf_cmd_item *items = NULL;
	cf_audit_entry audit;
	char object[CF_AUDIT_OBJECT_MAX];
	size_t n = 0, used = 0;
	int64_t bytes = 0;
	json_t *list;
	cf_error err;

	*list_out = NULL;
	*n_out = 0;
	if (cf_store_cmd_pending(srv_req_store(r), id->tenant, id->fp, since,
				 srv_now(), API_FEED_LIMIT_DEFAULT, &items, &n,
				 cursor_out, &err) != CF_OK) {
		api_fail(r, &err, "reading pending commands");
		return -1;
	}
	list = json_array();
	object[0] = '\0';
	for (size_t i = 0; list && i < n; i++) {
		bytes += (int64_t)items[i].len;
		if (used + CF_CMD_ID_LEN + 2 < sizeof(object))
			used += (size_t)snprintf(object + used,
				sizeof(object) - used, "%s%s", used ? "," : "",
				items[i].id);
		if (json_array_append_new(list, json_pack("{s:I,s:s,s:s,s:I,s:o}",
			"seq", (json_int_t)items[i].seq, "id", items[i].id,
			"sender", items[i].peer,
			"expires", (json_int_t)items[i].expires,
			"envelope", api_b64_json(items[i].der,
						 items[i].len))) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	cf_cmd_items_free(items, n);
	if (list == NULL) {
		api_reply(r, 500, NULL);
		return -1;
	}
	if (n > 0) {
		srv_audit_init(r, &audit, "cmd.fetch", object, bytes);
		if (cf_store_audit_append(srv_req_store(r), &audit, &err) !=
		    CF_OK) {
			json_decref(list);
			api_fail(r, &err, "logging a command fetch");
			return -1;
		}
	}
	*list_out = list;
	*n_out = n;
	return 0;
}

/* One feed's share of an answer: the caller's own, or its cluster's. */
typedef struct feed_part {
	cf_feed_item *items;
	size_t n, shown;
	int64_t cursor, bytes;
	int more;
} feed_part;

/* Up to limit + 1 changes of recipient's feed after since; -1 answered. */
static int part_read(srv_req *r, const char *tenant, const char *recipient,
		     int64_t since, int64_t limit, feed_part *p)
{
	cf_error err;

	if (cf_store_feed(srv_req_store(r), tenant, recipient, since,
			  (size_t)limit + 1, &p->items, &p->n, &p->cursor,
			  &err) != CF_OK) {
		api_fail(r, &err, "reading the feed");
		return -1;
	}
	return 0;
}

/*
 * Up to limit items, and no more envelope bytes than budget, though
 * always the first when first_free (so the cursor moves on).  With nothing to send the
 * cursor stays the store's answer: since or (a restored database) its
 * head below since.
 */
static void part_cut(feed_part *p, int64_t limit, int64_t budget,
		     int first_free)
{
	for (p->shown = 0; p->shown < p->n && p->shown < (size_t)limit;
	     p->shown++) {
		if ((p->shown > 0 || !first_free) &&
		    p->bytes + (int64_t)p->items[p->shown].len > budget)
			break;
		p->bytes += (int64_t)p->items[p->shown].len;
	}
	p->more = p->shown < p->n;
	if (p->shown > 0)
		p->cursor = p->items[p->shown - 1].seq;
}

/* The "secrets" array of a part; NULL when out of memory. */
static json_t *part_json(const feed_part *p)
{
	json_t *list = json_array(), *o;
	const cf_feed_item *it;

	for (size_t i = 0; list && i < p->shown; i++) {
		it = &p->items[i];
		if (it->deleted)
			o = json_pack("{s:s,s:I,s:b}", "name", it->name,
				"version", (json_int_t)it->version, "deleted", 1);
		else
			o = json_pack("{s:s,s:I,s:I,s:s,s:o}", "name", it->name,
				"version", (json_int_t)it->version,
				"created", (json_int_t)it->created,
				"writer", it->writer,
				"envelope", api_b64_json(it->der, it->len));
		if (o == NULL || json_array_append_new(list, o) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	return list;
}

/*
 * The caller's feed, its pending commands (?commands=C) and, with a
 * Coffer-Cluster header, its cluster's feed (?cluster_since=M): the
 * changes of the cluster certificate's envelopes, as "cluster".  The
 * long-poll wakes for a change of either feed.  Membership is checked on
 * every try, so a key revoked during the wait ends it with a 403.
 */
static void feed(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	feed_part own = { 0 }, cl = { 0 };
	cf_cert_row crow;
	cf_audit_entry audit;
	char object[CF_AUDIT_OBJECT_MAX];
	int64_t since, wait, limit, remaining_ms, cl_since;
	int64_t cmd_since, cmd_cursor = 0;
	size_t n_cmds = 0;
	json_t *list, *body = NULL, *cmds = NULL, *part;
	int member;
	cf_error err;

	memset(&crow, 0, sizeof(crow));
	if (api_param_int(r, "since", 0, INT64_MAX, 0, &since) != 0 ||
	    api_param_int(r, "wait", 0, INT64_MAX, 0, &wait) != 0 ||
	    api_param_int(r, "limit", 1, INT64_MAX, API_FEED_LIMIT_DEFAULT,
			  &limit) != 0 ||
	    api_param_int(r, "commands", -1, INT64_MAX, -1, &cmd_since) != 0 ||
	    api_param_int(r, "cluster_since", 0, INT64_MAX, 0, &cl_since) != 0)
		return;
	if (srv_req_param(r, "cluster_since") != NULL &&
	    srv_req_header(r, API_CLUSTER_HEADER, NULL) == NULL) {
		srv_reply_error(r, 400, "bad_request", "cluster_since asks for "
			"a cluster's feed, which takes the " API_CLUSTER_HEADER
			" header (the cluster certificate's fingerprint and the "
			"membership proof); send it, or leave cluster_since out");
		return;
	}
	if ((member = api_cluster_member(r, id, &crow, NULL)) < 0)
		return;
	if (wait > API_FEED_WAIT_MAX)
		wait = API_FEED_WAIT_MAX;
	if (limit > API_LIST_MAX)
		limit = API_LIST_MAX;
	if (part_read(r, id->tenant, id->fp, since, limit, &own) != 0)
		goto out;
	if (member && part_read(r, id->tenant, crow.fp, cl_since, limit,
				&cl) != 0)
		goto out;
	/* Commands only for a caller that asks (agent run/once, not exec). */
	if (cmd_since >= 0 &&
	    feed_commands(r, id, cmd_since, &cmds, &cmd_cursor, &n_cmds) != 0)
		goto out;
	remaining_ms = wait * 1000 - srv_req_parked_ms(r);
	if (own.n == 0 && cl.n == 0 && n_cmds == 0 && remaining_ms > 0) {
		/* Nothing yet: hold the request until a change or the end. */
		srv_req_park_either(r, id->tenant, id->fp,
				    member ? crow.fp : NULL, (int)remaining_ms,
				    feed);
		goto out;
	}
	/* One answer's envelope bytes, the own feed's first. */
	part_cut(&own, limit, (int64_t)API_FEED_BYTES_MAX, 1);
	/* The rest of the budget: an answer stays within one answer's
	 * bytes (one item always goes, when the own part took none). */
	part_cut(&cl, limit, (int64_t)API_FEED_BYTES_MAX - own.bytes,
		 own.shown == 0);
	if ((list = part_json(&own)) == NULL) {
		api_reply(r, 500, NULL);
		goto out;
	}
	body = json_pack("{s:I,s:b,s:o}", "cursor", (json_int_t)own.cursor,
			 "more", own.more, "secrets", list);
	if (body != NULL && member) {
		list = part_json(&cl);
		part = list ? json_pack("{s:s,s:s,s:I,s:b,s:o}", "fp", crow.fp,
			"name", crow.cluster, "cursor", (json_int_t)cl.cursor,
			"more", cl.more, "secrets", list) : NULL;
		if (part == NULL || json_object_set_new(body, "cluster", part)) {
			json_decref(body);
			body = NULL;
		}
	}
	if (body != NULL && cmds != NULL) {
		json_object_set_new(body, "commands", cmds);
		json_object_set_new(body, "command_cursor",
				    json_integer((json_int_t)cmd_cursor));
		cmds = NULL;
	}
	if (body == NULL) {
		api_reply(r, 500, NULL);
		goto out;
	}
	/*
	 * Envelopes leave only once their reading is in the audit log: the
	 * cluster's, as its own entry, right here if the own feed's entry
	 * takes the group commit.
	 */
	if (cl.bytes > 0 && own.bytes > 0) {
		feed_object(cl.items, cl.shown, object, sizeof(object));
		srv_audit_init(r, &audit, "secret.read", object, cl.bytes);
		if (cf_store_audit_append(srv_req_store(r), &audit, &err) !=
		    CF_OK) {
			json_decref(body);
			api_fail(r, &err, "logging a cluster feed read");
			goto out;
		}
	}
	if (own.bytes > 0 || cl.bytes > 0) {
		const feed_part *p = own.bytes > 0 ? &own : &cl;

		feed_object(p->items, p->shown, object, sizeof(object));
		srv_audit_init(r, &audit, "secret.read", object, p->bytes);
		srv_reply_json_audited(r, 200, body, &audit);
		goto out;
	}
	api_reply(r, 200, body);
out:
	json_decref(cmds);
	cf_feed_items_free(own.items, own.n);
	cf_feed_items_free(cl.items, cl.n);
	cf_cert_row_clear(&crow);
}

const srv_route srv_routes_secrets[] = {
	{"PUT", "/v1/secrets", 0, 0, secret_put},
	{"GET", "/v1/secrets", 0, 0, secrets_list},
	{"DELETE", "/v1/secrets", 0, 0, secret_delete},
	{"GET", "/v1/secrets/history", 0, 0, secret_history},
	{"GET", "/v1/secrets/envelope", 0, 0, secret_envelope},
	{"GET", "/v1/secrets/recipients", 0, 0, secret_recipients},
	{"DELETE", "/v1/secrets/envelopes", 0, 0, envelopes_purge},
	{"POST", "/v1/secrets/envelopes", 0, 0, envelopes_add},
	{"GET", "/v1/agent/secrets", 0, 0, feed},
	{NULL, NULL, 0, 0, NULL},
};
