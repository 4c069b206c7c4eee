/*
 * feed.c - the agent's side of GET /v1/agent/secrets (docs/API.md), and
 * the runtime every agent command starts from (runtime.h).
 *
 * The server is a relay we do not trust: each feed entry is opened with
 * the agent's key and verified against the organisation's root and the
 * newest CRL seen (cf_envelope_open, docs/FORMAT.md section 4), under the
 * name the server said it is for and with the highest version accepted so
 * far as the minimum.  Whatever fails is logged with the reason and
 * dropped; the cache and the files keep the last good version.
 */
#include "runtime.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "envelope.h"
#include "log.h"
#include "member.h"
#include "pki.h"
#include "policy.h"
#include "sink_file.h"

#define FEED_LIMIT 100
/* Before accepting anything, the CRL is at most this old (seconds). */
#define CRL_BEFORE_ACCEPT_S 10
/* How long a request may take beyond the long poll itself. */
#define FEED_SLACK_S 30L

static int file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* agent.json's "server" (the URL `agent join` used) into buf. */
static cf_status joined_server(const ag_runtime *rt, char *buf, size_t size,
			       cf_error *err)
{
	char path[PATH_MAX];
	unsigned char *text = NULL;
	size_t len = 0;
	json_t *doc = NULL;
	const char *url;
	cf_status rc;

	rc = ag_state_path(rt->st, "agent.json", path, sizeof(path), err);
	if (rc == CF_OK)
		rc = cli_read_file(path, 64 * 1024, &text, &len, err);
	if (rc != CF_OK)
		return rc;
	doc = json_loadb((const char *)text, len, 0, NULL);
	url = json_string_value(json_object_get(doc, "server"));
	if (url == NULL || snprintf(buf, size, "%s", url) >= (int)size)
		rc = cf_error_set(err, CF_ERR_PARSE, "%s names no server URL; "
				  "give one in the config's [server] url", path);
	json_decref(doc);
	OPENSSL_free(text);
	return rc;
}

static cf_status rebuild_trust(ag_runtime *rt, cf_error *err)
{
	cf_trust *trust = NULL;
	cf_status rc = cf_trust_new(rt->root, rt->crl, &trust, err);

	if (rc != CF_OK)
		return rc;
	cf_trust_free(rt->trust);
	rt->trust = trust;
	return CF_OK;
}

/*
 * D/cluster.pem, if there is one.  A damaged or untrusted one is logged
 * and left aside: the agent's own secrets do not wait for it.
 */
static void load_member(ag_runtime *rt)
{
	cf_error why = { 0 };

	ag_member_free(rt->member);
	rt->member = NULL;
	if (ag_member_load(rt->st, rt->trust, rt->cert, &rt->member, &why) !=
	    CF_OK) {
		ag_log(AG_LOG_ERROR, "not reading the cluster's secrets: %s",
		       why.msg);
		return;
	}
	if (rt->member != NULL && rt->client != NULL &&
	    cli_client_set_cluster(rt->client, rt->member->header, &why) !=
	    CF_OK) {
		ag_log(AG_LOG_ERROR, "not reading the cluster's secrets: %s",
		       why.msg);
		ag_member_free(rt->member);
		rt->member = NULL;
	}
}

cf_status ag_runtime_new(const char *state_dir, const char *server_url,
			 const char *server_ca, const char *root, int offline,
			 ag_runtime **out, cf_error *err)
{
	ag_runtime *rt;
	char cert_path[PATH_MAX], key_path[PATH_MAX], root_path[PATH_MAX];
	char ca_path[PATH_MAX], crl_path[PATH_MAX], url[2048];
	cli_pass nopass = { 0 };
	cli_settings set = { 0 };
	cf_error trust_err = { 0 };
	cf_status rc;

	*out = NULL;
	rt = OPENSSL_zalloc(sizeof(*rt));
	if (rt == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = ag_state_open(state_dir, &rt->st, err);
	if (rc == CF_OK)
		rc = ag_state_path(rt->st, "agent.crt", cert_path,
				   sizeof(cert_path), err);
	if (rc == CF_OK)
		rc = ag_state_path(rt->st, "agent.key", key_path,
				   sizeof(key_path), err);
	if (rc == CF_OK)
		rc = ag_state_path(rt->st, "crl.pem", crl_path,
				   sizeof(crl_path), err);
	if (rc == CF_OK && root == NULL) {
		rc = ag_state_path(rt->st, "root.crt", root_path,
				   sizeof(root_path), err);
		root = root_path;
	}
	if (rc != CF_OK)
		goto out;
	if (!file_exists(cert_path)) {
		rc = cf_error_set(err, CF_ERR_USAGE, "%s has no agent.crt: the "
			"agent has not been approved yet; run 'coffer agent join "
			"--state-dir %s' to finish enrolling", state_dir, state_dir);
		goto out;
	}
	if (!file_exists(root)) {
		rc = cf_error_set(err, CF_ERR_USAGE, "no organisation root at %s: "
			"the agent verifies every secret against it; give it with "
			"'root =' in the config's [server] section, or install it "
			"with 'coffer agent join --state-dir %s --root ROOT.crt'",
			root, state_dir);
		goto out;
	}
	rc = cli_load_cert(cert_path, &rt->cert, &rt->chain, err);
	if (rc == CF_OK)
		rc = cli_load_key(key_path, &nopass, &rt->key, err);
	if (rc == CF_OK)
		rc = cli_load_cert(root, &rt->root, NULL, err);
	if (rc == CF_OK && file_exists(crl_path))
		rc = cli_load_crl(crl_path, &rt->crl, err);
	if (rc != CF_OK)
		goto out;
	/* A CRL past its next update: the server may have a newer one. */
	if (rebuild_trust(rt, &trust_err) != CF_OK && (rt->crl == NULL || offline)) {
		rc = cf_error_set(err, trust_err.code, "%s", trust_err.msg);
		goto out;
	}
	if (X509_check_private_key(rt->cert, rt->key) != 1) {
		ERR_clear_error();
		rc = cf_error_set(err, CF_ERR_USAGE, "%s does not belong to %s; "
				  "the state dir is damaged: join again",
				  key_path, cert_path);
		goto out;
	}
	if (offline) {
		load_member(rt);
		*out = rt;
		return CF_OK;
	}
	if (server_url == NULL) {
		rc = joined_server(rt, url, sizeof(url), err);
		if (rc != CF_OK)
			goto out;
		server_url = url;
	}
	rc = ag_state_path(rt->st, "server-ca.crt", ca_path, sizeof(ca_path),
			   err);
	if (rc != CF_OK)
		goto out;
	if (server_ca == NULL && file_exists(ca_path))
		server_ca = ca_path;
	if (server_ca == NULL) {
		rc = cf_error_set(err, CF_ERR_USAGE, "no server CA: %s is missing "
			"and the config's [server] has no ca; give ca = PATH (the "
			"server's certificate or its CA), or ca = system to trust "
			"the system's CA store", ca_path);
		goto out;
	}
	set.server = server_url;
	/* NULL: curl's default, the system's store (said on purpose). */
	set.server_ca = strcmp(server_ca, "system") == 0 ? NULL : server_ca;
	set.cert = cert_path;
	set.key = key_path;
	/* Kept for the client that posts commands' answers. */
	rt->server_url = OPENSSL_strdup(set.server);
	rt->server_ca = set.server_ca ? OPENSSL_strdup(set.server_ca) : NULL;
	rt->cert_path = OPENSSL_strdup(cert_path);
	rt->key_path = OPENSSL_strdup(key_path);
	if (rt->server_url == NULL || rt->cert_path == NULL ||
	    rt->key_path == NULL || (set.server_ca && rt->server_ca == NULL)) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = cli_client_new(&set, CLI_NEED_IDENTITY, &rt->client, err);
	if (rc != CF_OK)
		goto out;
	if (rt->trust == NULL) {
		cf_error why = { 0 };

		(void)ag_refresh_crl(rt, &why);
		if (rt->trust == NULL) {
			rc = cf_error_set(err, CF_ERR_UNTRUSTED, "%s (%s)%s%s; "
				"until the organisation re-signs its CRL and pushes "
				"it ('coffer ca revoke --ca DIR', 'coffer crl push'), "
				"this agent accepts nothing", trust_err.msg, crl_path,
				why.msg[0] ? "; the server's: " : "", why.msg);
			goto out;
		}
	}
	load_member(rt);
	*out = rt;
	return CF_OK;
out:
	ag_runtime_free(rt);
	return rc;
}

void ag_runtime_free(ag_runtime *rt)
{
	if (rt == NULL)
		return;
	/* First: its worker may be posting with cmd_client. */
	ag_commands_free(rt->commands);
	cli_client_free(rt->cmd_client);
	OPENSSL_free(rt->server_url);
	OPENSSL_free(rt->server_ca);
	OPENSSL_free(rt->cert_path);
	OPENSSL_free(rt->key_path);
	ag_runtime_clear_changes(rt);
	OPENSSL_free(rt->changed);
	ag_status_free(rt->status);
	ag_acks_free(rt->acks);
	ag_member_free(rt->member);
	cli_client_free(rt->client);
	X509_free(rt->cert);
	sk_X509_pop_free(rt->chain, X509_free);
	EVP_PKEY_free(rt->key);
	X509_free(rt->root);
	X509_CRL_free(rt->crl);
	cf_trust_free(rt->trust);
	ag_state_free(rt->st);
	OPENSSL_free(rt);
}

void ag_runtime_set_abort(ag_runtime *rt, volatile sig_atomic_t *flag)
{
	if (rt->client != NULL)
		cli_client_set_abort(rt->client, flag);
}

void ag_report(ag_runtime *rt)
{
	cf_error err = { 0 };

	if (rt->status != NULL &&
	    ag_status_save(rt->status, ag_state_dir(rt->st), &err) != CF_OK)
		ag_log(AG_LOG_WARN, "status.json not written: %s", err.msg);
}

void ag_runtime_clear_changes(ag_runtime *rt)
{
	for (size_t i = 0; i < rt->n_changed; i++)
		OPENSSL_free(rt->changed[i]);
	rt->n_changed = 0;
	rt->refused = 0;
}

static cf_status note_changed(ag_runtime *rt, const char *name, cf_error *err)
{
	for (size_t i = 0; i < rt->n_changed; i++)
		if (strcmp(rt->changed[i], name) == 0)
			return CF_OK;
	if (rt->n_changed == rt->cap_changed) {
		size_t cap = rt->cap_changed ? rt->cap_changed * 2 : 16;
		char **grown = OPENSSL_realloc(rt->changed, cap * sizeof(*grown));

		if (grown == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		rt->changed = grown;
		rt->cap_changed = cap;
	}
	rt->changed[rt->n_changed] = OPENSSL_strdup(name);
	if (rt->changed[rt->n_changed] == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rt->n_changed++;
	return CF_OK;
}

/* -1, 0, 1 as a's cRLNumber is below, equal to, above b's (none = -1). */
static int crl_cmp(X509_CRL *a, X509_CRL *b)
{
	ASN1_INTEGER *na = X509_CRL_get_ext_d2i(a, NID_crl_number, NULL, NULL);
	ASN1_INTEGER *nb = b ? X509_CRL_get_ext_d2i(b, NID_crl_number, NULL,
						   NULL) : NULL;
	int r;

	if (na == NULL || nb == NULL)
		r = na != NULL ? 1 : nb != NULL ? -1 : 0;
	else
		r = ASN1_INTEGER_cmp(na, nb);
	/* Equal (or both unnumbered, as other tools may make them): the
	 * later thisUpdate is the newer list. */
	if (r == 0 && b != NULL) {
		int day = 0, sec = 0;

		if (ASN1_TIME_diff(&day, &sec, X509_CRL_get0_lastUpdate(b),
				   X509_CRL_get0_lastUpdate(a)) == 1)
			r = day > 0 || sec > 0 ? 1 : day < 0 || sec < 0 ? -1 : 0;
	}
	ASN1_INTEGER_free(na);
	ASN1_INTEGER_free(nb);
	return r < 0 ? -1 : r > 0;
}

cf_status ag_refresh_crl(ag_runtime *rt, cf_error *err)
{
	json_t *resp = NULL;
	X509_CRL *crl = NULL;
	cf_trust *trust = NULL;
	unsigned char *pem = NULL;
	size_t pem_len = 0;
	char path[PATH_MAX];
	const char *text;
	cf_error why = { 0 };
	cf_status rc;

	if (rt->client == NULL)
		return CF_OK;
	cli_client_set_timeout(rt->client, FEED_SLACK_S);
	rc = cli_client_call(rt->client, "GET", "/v1/crl", NULL, &resp, err);
	if (rc != CF_ERR_TIMEOUT)
		rt->contact_failed = rc != CF_OK;
	if (rc != CF_OK)
		goto out;
	rt->crl_checked = time(NULL);
	text = json_string_value(json_object_get(resp, "crl"));
	if (text == NULL)
		goto out;            /* the organisation has not pushed one */
	if (cf_crl_parse((const unsigned char *)text, strlen(text),
			 "the server's CRL", &crl, &why) != CF_OK ||
	    cf_crl_check_signer(crl, rt->root, &why) != CF_OK) {
		ag_log(AG_LOG_WARN, "ignoring the server's CRL: %s; keeping the "
		       "one we have", why.msg);
		goto out;
	}
	if (rt->crl != NULL && crl_cmp(crl, rt->crl) <= 0) {
		if (crl_cmp(crl, rt->crl) < 0)
			ag_log(AG_LOG_WARN, "the server serves an older CRL than "
			       "the one this agent has seen; keeping the newer "
			       "(a server cannot un-revoke anybody)");
		goto out;
	}
	/* The new trust first: a CRL that cannot be used changes nothing. */
	if (cf_trust_new(rt->root, crl, &trust, &why) != CF_OK) {
		ag_log(AG_LOG_WARN, "ignoring the server's newer CRL: %s; "
		       "keeping the one we have", why.msg);
		goto out;
	}
	cf_trust_free(rt->trust);
	rt->trust = trust;
	X509_CRL_free(rt->crl);
	rt->crl = crl;
	crl = NULL;
	if (rt->read_only)
		goto out;
	rc = cf_crl_to_pem(rt->crl, &pem, &pem_len, err);
	if (rc == CF_OK)
		rc = ag_state_path(rt->st, "crl.pem", path, sizeof(path), err);
	if (rc == CF_OK)
		rc = ag_file_replace(path, pem, pem_len, 0644, err);
	if (rc == CF_OK)
		ag_log(AG_LOG_INFO, "took the organisation's newer CRL");
out:
	OPENSSL_free(pem);
	X509_CRL_free(crl);
	json_decref(resp);
	return rc;
}

/* One feed entry opened with cert and key (the agent's, or its
 * cluster's) and verified. */
static cf_status open_entry_as(ag_runtime *rt, const json_t *item,
			       const char *name, uint64_t min_version,
			       X509 *cert, EVP_PKEY *key, unsigned char **der,
			       size_t *len, cf_record **rec, X509 **signer,
			       cf_error *why)
{
	const char *b64 = json_string_value(json_object_get(item, "envelope"));
	json_int_t said = json_integer_value(json_object_get(item, "version"));
	cf_status rc;

	*der = NULL;
	*len = 0;
	*rec = NULL;
	rc = cli_b64_decode(b64, "an envelope", der, len, why);
	if (rc == CF_OK)
		rc = cf_envelope_open(*der, *len, cert, key, rt->trust, name,
				      min_version, rec, signer, why);
	if (rc == CF_OK && said != (json_int_t)(*rec)->version)
		ag_log(AG_LOG_WARN, "the server listed %s as version %lld but the "
		       "signed record is version %llu; the record counts", name,
		       (long long)said, (unsigned long long)(*rec)->version);
	return rc;
}

cf_status ag_open_entry(ag_runtime *rt, const json_t *item, const char *name,
			uint64_t min_version, unsigned char **der, size_t *len,
			cf_record **rec, cf_error *why)
{
	return open_entry_as(rt, item, name, min_version, rt->cert, rt->key,
			     der, len, rec, NULL, why);
}

/*
 * A "cluster-key/NAME" record from the agent's own feed, verified: an
 * enroller gives this agent the key of cluster NAME (`coffer cluster
 * add` or `rotate`).  It is kept (D/cluster.pem) once the signer may give
 * it (cf_cluster_may_give) and the cluster certificate verifies, before
 * the version is accepted: a key that is not taken is refused like any
 * record (the feed moves past it: the enroller gives it again with
 * `cluster add`), except when this agent could not write it (I/O), where
 * the request fails and the key is read again.  A new key makes the next
 * request read the cluster's feed from its start.
 */
static cf_status take_cluster_key(ag_runtime *rt, const cf_record *rec,
				  X509 *signer, cf_error *why)
{
	char cluster[CF_NAME_MAX_BYTES + 1];
	ag_member *m = NULL;
	cf_status rc;

	if (!cf_cluster_of_name(rec->name, 1, cluster, sizeof(cluster)) ||
	    rt->read_only)
		return CF_OK;
	rc = cf_cluster_may_give(signer, rt->cert, why);
	if (rc != CF_OK)
		return rc;
	rc = ag_member_install(rt->st, rt->trust, rt->cert,
			       cf_secret_cdata(rec->value),
			       cf_secret_len(rec->value), cluster, 0, &m, why);
	if (rc != CF_OK)
		return rc;
	if (rt->client != NULL &&
	    (rc = cli_client_set_cluster(rt->client, m->header, why)) != CF_OK) {
		ag_member_free(m);
		return rc;
	}
	if (rt->member == NULL || strcmp(rt->member->fp, m->fp) != 0) {
		ag_log(AG_LOG_INFO, "%s cluster %s: key %s", rt->member ?
		       "new key of" : "joined", cluster, m->fp);
		rt->member_changed = 1;
	}
	ag_member_free(rt->member);
	rt->member = m;
	return CF_OK;
}

/*
 * Verifies one feed entry and, if it is good and new, caches it.  From
 * the cluster's feed (member not NULL) it is opened with the cluster key.
 */
static cf_status take_entry(ag_runtime *rt, const json_t *item,
			    const ag_member *member, size_t *bytes,
			    cf_error *err)
{
	const char *name = json_string_value(json_object_get(item, "name"));
	json_int_t said = json_integer_value(json_object_get(item, "version"));
	char shown[CF_NAME_MAX_BYTES * 4 + 8];
	unsigned char *der = NULL;
	size_t len = 0;
	cf_record *rec = NULL;
	X509 *signer = NULL;
	cf_error why = { 0 };
	uint64_t have;
	cf_status rc = CF_OK;

	if (name == NULL || cf_name_check("secret name", name, NULL) != CF_OK) {
		ag_log(AG_LOG_WARN, "the server sent a feed entry without a valid "
		       "secret name (\"%s\"); ignored",
		       cli_printable(name ? name : "", shown, sizeof(shown)));
		rt->refused++;
		return CF_OK;
	}
	have = ag_state_version(rt->st, name);
	if (json_is_true(json_object_get(item, "deleted"))) {
		ag_log(AG_LOG_WARN, "the server says %s was deleted (version %lld); "
		       "deletions are not signed, so this agent keeps its files "
		       "(remove the sink from the config to stop writing it)",
		       name, (long long)said);
		return CF_OK;
	}
	rc = open_entry_as(rt, item, name, have, member ? member->cert : rt->cert,
			   member ? member->key : rt->key, &der, &len, &rec,
			   &signer, &why);
	if (rc == CF_ERR_NOMEM) {
		*err = why;
		goto out;
	}
	rc = CF_OK;
	if (rec == NULL)
		goto refused;
	if (rec->version == have) {
		unsigned char *cached = NULL;
		size_t cached_len = 0;
		cf_error ignored = { 0 };
		int same = ag_state_cached(rt->st, name, &cached, &cached_len,
					   &ignored) == CF_OK &&
			   cached_len == len && memcmp(cached, der, len) == 0;

		OPENSSL_free(cached);
		if (same) {
			ag_log(AG_LOG_DEBUG, "%s v%llu: already have it", name,
			       (unsigned long long)have);
			goto out;
		}
		/*
		 * The same version in another envelope (the cache lost it, or
		 * a restored server had it put again): it verified and is not
		 * below the highest seen, so it is accepted like any other;
		 * the sinks rewrite only what really changed.
		 */
		ag_log(AG_LOG_INFO, "%s v%llu again, in another envelope than the "
		       "cached one", name, (unsigned long long)have);
	}
	/* A cluster's key comes only in the agent's own feed. */
	if (member == NULL) {
		rc = take_cluster_key(rt, rec, signer, &why);
		/* This agent's failure, not the record's: the request fails
		 * and its cursor stays, so the key is read again. */
		if (rc == CF_ERR_NOMEM || rc == CF_ERR_IO) {
			*err = why;
			goto out;
		}
		if (rc != CF_OK) {
			rc = CF_OK;
			goto refused;
		}
	}
	rc = ag_state_accept(rt->st, name, rec->version, der, len, err);
	if (rc == CF_OK)
		rc = note_changed(rt, name, err);
	if (rc == CF_OK) {
		*bytes += len;
		ag_log(AG_LOG_INFO, "accepted %s v%llu%s", name,
		       (unsigned long long)rec->version,
		       member ? " (cluster)" : "");
	}
	goto out;
refused:
	rt->refused++;
	ag_log(AG_LOG_ERROR, "refused %s from the server (version %lld): %s; "
	       "keeping version %llu", name, (long long)said, why.msg,
	       (unsigned long long)have);
out:
	cf_record_free(rec);
	X509_free(signer);
	OPENSSL_free(der);
	return rc;
}

void ag_runtime_leave_cluster(ag_runtime *rt, const char *what,
			      const char *why)
{
	cf_error ignored = { 0 };

	if (rt->member == NULL)
		return;
	ag_log(AG_LOG_ERROR, "the server refused %s with the proof for cluster "
	       "%s (%s); going on without the cluster until the agent "
	       "restarts", what, rt->member->name, why);
	if (rt->client != NULL)
		(void)cli_client_set_cluster(rt->client, NULL, &ignored);
	ag_member_free(rt->member);
	rt->member = NULL;
}

/*
 * The cluster's part of a feed answer, asked for with member's proof:
 * its entries opened with the cluster key, its cursor kept.  *more is
 * set when the cluster's feed has more (own_items: entries of the
 * agent's own part of the same answer).
 */
static cf_status take_cluster(ag_runtime *rt, const ag_member *member,
			      const json_t *cl, size_t own_items, size_t *bytes,
			      int *more, cf_error *err)
{
	const json_t *list = json_object_get(cl, "secrets"), *item;
	json_int_t cursor = json_integer_value(json_object_get(cl, "cursor"));
	const char *fp = json_string_value(json_object_get(cl, "fp"));
	size_t i;
	cf_status rc;

	if (cl == NULL) {
		ag_log(AG_LOG_WARN, "the server's feed answer has no \"cluster\" "
		       "part: it does not serve clusters (an older server?)");
		return CF_OK;
	}
	if (fp == NULL || strcmp(fp, member->fp) != 0 || !json_is_array(list) ||
	    !json_is_integer(json_object_get(cl, "cursor")) || cursor < 0) {
		ag_log(AG_LOG_WARN, "ignoring the cluster part of the server's feed "
		       "answer: it is not for cluster key %.16s... or has no "
		       "cursor or secrets", member->fp);
		return CF_OK;
	}
	json_array_foreach(list, i, item) {
		rc = take_entry(rt, item, member, bytes, err);
		if (rc != CF_OK)
			return rc;
	}
	if (cursor < ag_state_cluster_cursor(rt->st, member->fp) &&
	    json_array_size(list) == 0) {
		ag_log(AG_LOG_WARN, "the cluster feed's position went back: the "
		       "server's database was restored; reading it again");
		cursor = 0;
		*more = 1;
	} else if (json_is_true(json_object_get(cl, "more")) &&
		   (json_array_size(list) > 0 || own_items > 0)) {
		/* (The agent's own entries may have taken the answer's
		 * bytes: the cluster's come with the next request.) */
		*more = 1;
	}
	ag_state_set_cluster_cursor(rt->st, member->fp, cursor);
	return CF_OK;
}

cf_status ag_fetch(ag_runtime *rt, long wait_s, int *more, cf_error *err)
{
	char path[192], extra[64] = "";
	json_t *resp = NULL, *list, *item, *cl;
	json_int_t cursor;
	int64_t mine = ag_state_cursor(rt->st);
	size_t i, bytes = 0, accepted = rt->n_changed;
	int cl_more = 0, cl_moved = 0;
	/* As asked.  Not used after the agent's own entries are taken:
	 * take_cluster_key may replace (and free) it. */
	ag_member *member = rt->member;
	cf_status rc;

	*more = 0;
	if (rt->client == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "no server to fetch from");
	rt->member_changed = 0;
	if (member != NULL)
		snprintf(extra, sizeof(extra), "&cluster_since=%lld",
			 (long long)ag_state_cluster_cursor(rt->st, member->fp));
	if (rt->commands != NULL)
		snprintf(path, sizeof(path), "/v1/agent/secrets?since=%lld&"
			 "commands=%lld&wait=%ld&limit=%d%s", (long long)mine,
			 (long long)ag_commands_cursor(rt->commands), wait_s,
			 FEED_LIMIT, extra);
	else
		snprintf(path, sizeof(path), "/v1/agent/secrets?since=%lld&"
			 "wait=%ld&limit=%d%s", (long long)mine, wait_s,
			 FEED_LIMIT, extra);
	cli_client_set_timeout(rt->client, wait_s + FEED_SLACK_S);
	rc = cli_client_call(rt->client, "GET", path, NULL, &resp, err);
	if (rc == CF_ERR_DENIED && member != NULL) {
		/* The cluster proof, most likely (a revoked cluster key): the
		 * agent's own secrets must not wait for it. */
		ag_runtime_leave_cluster(rt, "its feed request", err->msg);
		cf_error_clear(err);
		*more = 1;
		rc = CF_OK;
		goto out;
	}
	/* CF_ERR_TIMEOUT: our own signal cut the long poll short. */
	if (rt->status != NULL && rc != CF_ERR_TIMEOUT)
		ag_status_server(rt->status, rc == CF_OK, rc == CF_OK ? NULL :
				 err->msg);
	ag_report(rt);
	rt->contact_failed = rc != CF_OK && rc != CF_ERR_TIMEOUT;
	if (rc != CF_OK)
		goto out;
	list = json_object_get(resp, "secrets");
	cl = member != NULL ? json_object_get(resp, "cluster") : NULL;
	cursor = json_integer_value(json_object_get(resp, "cursor"));
	if (!json_is_array(list) || !json_is_integer(json_object_get(resp, "cursor")) ||
	    cursor < 0) {
		rc = cf_error_set(err, CF_ERR_SERVER, "the server's feed answer has "
				  "no cursor or secrets list");
		goto out;
	}
	/*
	 * Something new is about to be accepted: make sure a revocation the
	 * organisation pushed since our last look counts (a server cannot
	 * hold the CRL back for long: it is fetched at most this far apart).
	 */
	if ((json_array_size(list) > 0 ||
	     json_array_size(json_object_get(cl, "secrets")) > 0 ||
	     json_array_size(json_object_get(resp, "commands")) > 0) &&
	    time(NULL) - rt->crl_checked >= CRL_BEFORE_ACCEPT_S) {
		rc = ag_refresh_crl(rt, err);
		if (rc != CF_OK)
			goto out;
	}
	/* The cluster's first: the agent's own feed may bring a new
	 * cluster key, which replaces member. */
	if (member != NULL) {
		int64_t before = ag_state_cluster_cursor(rt->st, member->fp);

		rc = take_cluster(rt, member, cl, json_array_size(list), &bytes,
				  &cl_more, err);
		if (rc != CF_OK)
			goto out;
		cl_moved = ag_state_cluster_cursor(rt->st, member->fp) != before;
	}
	json_array_foreach(list, i, item) {
		rc = take_entry(rt, item, NULL, &bytes, err);
		if (rc != CF_OK)
			goto out;
	}
	/* Commands, once the secrets are in (a refresh sees them). */
	if (rt->commands != NULL) {
		rc = ag_commands_take(rt->commands, resp, rt->trust, err);
		if (rc != CF_OK)
			goto out;
	}
	if (cursor < mine && json_array_size(list) == 0) {
		/* The server's database went back (a restore): start over
		 * from 0.  Versions below those accepted stay refused. */
		ag_log(AG_LOG_WARN, "the server's feed position went back (%lld, "
		       "this agent was at %lld): its database was restored; "
		       "reading the whole feed again", (long long)cursor,
		       (long long)mine);
		cursor = 0;
		*more = 1;
	} else {
		*more = json_is_true(json_object_get(resp, "more")) &&
			json_array_size(list) > 0;
	}
	/* A new cluster key: its feed is read next, from the start. */
	if (cl_more || rt->member_changed)
		*more = 1;
	ag_state_set_cursor(rt->st, cursor);
	/* The server answered: every accepted value is confirmed current
	 * (written down once a minute when nothing else changes). */
	{
		time_t before = ag_state_confirmed(rt->st), now = time(NULL);

		ag_state_set_confirmed(rt->st, now);
		if (cursor != mine || rt->n_changed != accepted || cl_moved ||
		    rt->member_changed || now - before >= 60)
			rc = ag_state_save(rt->st, err);
	}
out:
	json_decref(resp);
	return rc;
}

cf_status ag_fetch_all(ag_runtime *rt, cf_error *err)
{
	int more = 1;
	cf_status rc = CF_OK;

	/* Bounded: a server that always says "more" cannot keep us here. */
	for (int round = 0; more && rc == CF_OK && round < 10000; round++)
		rc = ag_fetch(rt, 0, &more, err);
	return rc;
}

cf_status ag_open_cached(ag_runtime *rt, const char *name, cf_record **out,
			 cf_error *err)
{
	unsigned char *der = NULL;
	size_t len = 0;
	uint64_t have = ag_state_version(rt->st, name);
	cf_status rc;

	*out = NULL;
	if (have == 0)
		return cf_error_set(err, CF_ERR_NOT_FOUND, "%s has not been "
			"received yet (no envelope for this agent on the server, "
			"or none accepted)", name);
	rc = ag_state_cached(rt->st, name, &der, &len, err);
	if (rc == CF_OK)
		rc = cf_envelope_open(der, len, rt->cert, rt->key, rt->trust,
				      name, have, out, NULL, err);
	/* Sealed to the cluster key instead (the cluster's feed). */
	if (rc == CF_ERR_NOT_RECIPIENT && rt->member != NULL) {
		cf_error_clear(err);
		rc = cf_envelope_open(der, len, rt->member->cert,
				      rt->member->key, rt->trust, name, have,
				      out, NULL, err);
	}
	OPENSSL_free(der);
	return rc;
}

/* ---------------------------------------------------------- commands */

/* Seconds one POST of an answer may take. */
#define ANSWER_TIMEOUT_S 30L

/*
 * POST /v1/commands/ID/result (ag_cmd_post_fn), on the client made for
 * it: called only from the thread that runs commands.
 */
static cf_status post_result(void *arg, const char *id,
			     const unsigned char *der, size_t len,
			     cf_error *err)
{
	ag_runtime *rt = arg;
	char path[96];
	json_t *body = NULL, *resp = NULL, *b64;
	cf_status rc;

	if (!cf_command_id_valid(id))
		return cf_error_set(err, CF_ERR_USAGE, "not a command id");
	snprintf(path, sizeof(path), "/v1/commands/%s/result", id);
	b64 = cli_b64_json(der, len);
	body = b64 != NULL ? json_pack("{s:o}", "envelope", b64) : NULL;
	if (body == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	cli_client_set_timeout(rt->cmd_client, ANSWER_TIMEOUT_S);
	rc = cli_client_call(rt->cmd_client, "POST", path, body, &resp, err);
	json_decref(resp);
	json_decref(body);
	return rc;
}

cf_status ag_runtime_commands(ag_runtime *rt, const ag_config *cfg,
			      const char *config_path,
			      volatile sig_atomic_t *stop, int threaded,
			      cf_error *err)
{
	char *status_argv[] = { "/proc/self/exe", "agent", "status",
				"--state-dir", (char *)ag_state_dir(rt->st),
				"--config", (char *)config_path, NULL };
	cli_settings set = { 0 };
	ag_cmd_setup setup = { 0 };
	cf_status rc;

	if (rt->client == NULL || rt->commands != NULL)
		return cf_error_set(err, CF_ERR_USAGE, "commands need a server "
				    "and are taken once");
	set.server = rt->server_url;
	set.server_ca = rt->server_ca;
	set.cert = rt->cert_path;
	set.key = rt->key_path;
	rc = cli_client_new(&set, CLI_NEED_IDENTITY, &rt->cmd_client, err);
	if (rc != CF_OK)
		return rc;
	cli_client_set_abort(rt->cmd_client, stop);
	setup.state_dir = ag_state_dir(rt->st);
	setup.cert = rt->cert;
	setup.chain = rt->chain;
	setup.key = rt->key;
	setup.post = post_result;
	setup.post_arg = rt;
	setup.status_argv = status_argv;
	setup.stop = stop;
	setup.threaded = threaded;
	return ag_commands_new(&setup, cfg, &rt->commands, err);
}
