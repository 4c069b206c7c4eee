/*
 * auth.c - the tenants in memory, and who a connection is.
 *
 * The tenant table is an array of immutable, reference-counted entries
 * {root, cf_trust (root + CRL), CRL number} under a read-write lock.  A
 * reload builds a new array, reusing the entries whose CRL number did not
 * change, and swaps it in; a connection holds a reference to the entry it
 * was verified against, so "the entry was replaced" is the signal that
 * its tenant's CRL changed and the connection must be verified again.
 *
 * A connection is verified once (on its first request to a non-public
 * route), against each tenant whose root's subject is the issuer of the
 * top of the presented chain, with cf_trust_verify (chain to the root,
 * validity, CRL for every certificate of the chain, enroller rights).
 * That happens before any database work; the directory registration of
 * the caller's certificate comes after, once per connection.
 *
 * Reloads: at most once a second when an unknown root shows up (so a
 * `tenant add` on a running server takes effect), every 5 s from the main
 * thread (so a CRL pushed through another node applies), on SIGHUP, and
 * when the API says a CRL changed (srv_tenants_changed).
 */
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>

#include "api.h"
#include "runtime.h"

/* Certificates a client may send besides its own (enroller, root). */
#define SRV_CHAIN_MAX 2

struct srv_tenant {
	atomic_int refs;
	char id[65];
	X509 *root;
	cf_trust *trust;       /* NULL: the stored CRL is unusable (fail closed) */
	int64_t crl_number;
	char why[CF_ERROR_MAX];
};

static pthread_rwlock_t tenants_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t reload_mu = PTHREAD_MUTEX_INITIALIZER;
static srv_tenant **tenants;
static size_t n_tenants;
static atomic_llong last_reload_ms;

static void tenant_unref(srv_tenant *t)
{
	if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	X509_free(t->root);
	cf_trust_free(t->trust);
	free(t);
}

static srv_tenant *tenant_ref(srv_tenant *t)
{
	if (t != NULL)
		atomic_fetch_add(&t->refs, 1);
	return t;
}

static srv_tenant *tenant_build(const cf_tenant *row)
{
	srv_tenant *t = calloc(1, sizeof(*t));
	X509_CRL *crl = NULL;
	cf_error err = { 0 };

	if (t == NULL)
		return NULL;
	atomic_store(&t->refs, 1);
	snprintf(t->id, sizeof(t->id), "%s", row->id);
	t->crl_number = row->crl_number;
	if (cf_cert_parse((const unsigned char *)row->root_pem,
			  strlen(row->root_pem), "the tenant root", &t->root,
			  NULL, &err) != CF_OK) {
		srv_log(SRV_LOG_ERROR, "tenant %.16s: %s", row->id, err.msg);
		free(t);
		return NULL;
	}
	if (row->crl_pem != NULL &&
	    cf_crl_parse((const unsigned char *)row->crl_pem,
			 strlen(row->crl_pem), "the tenant CRL", &crl, &err) != CF_OK) {
		snprintf(t->why, sizeof(t->why), "%s", err.msg);
	} else if (cf_trust_new(t->root, crl, &t->trust, &err) != CF_OK) {
		snprintf(t->why, sizeof(t->why), "%s", err.msg);
	}
	if (t->trust == NULL)
		srv_log(SRV_LOG_WARN, "tenant %.16s refuses every client until a "
			"good CRL is pushed: %s", row->id, t->why);
	X509_CRL_free(crl);
	return t;
}

void srv_auth_reload(cf_store *st, int force)
{
	cf_tenant *rows = NULL;
	size_t n = 0, n_new = 0, n_old;
	srv_tenant **fresh = NULL, **old;
	cf_error err = { 0 };
	int64_t now = srv_now_ms();

	if (!force && now - atomic_load(&last_reload_ms) < 1000)
		return;
	if (force)
		pthread_mutex_lock(&reload_mu);
	else if (pthread_mutex_trylock(&reload_mu) != 0)
		return;
	atomic_store(&last_reload_ms, now);
	if (cf_store_tenant_list(st, &rows, &n, &err) != CF_OK) {
		srv_log(SRV_LOG_ERROR, "cannot re-read the tenants: %s", err.msg);
		goto out;
	}
	fresh = calloc(n ? n : 1, sizeof(*fresh));
	if (fresh == NULL)
		goto out;
	pthread_rwlock_rdlock(&tenants_lock);
	for (size_t i = 0; i < n; i++) {
		srv_tenant *keep = NULL;

		for (size_t j = 0; j < n_tenants && keep == NULL; j++)
			if (strcmp(tenants[j]->id, rows[i].id) == 0 &&
			    tenants[j]->crl_number == rows[i].crl_number)
				keep = tenant_ref(tenants[j]);
		fresh[n_new] = keep;
		if (keep != NULL)
			n_new++;
	}
	pthread_rwlock_unlock(&tenants_lock);
	/* Build the new or changed ones outside the lock (parsing, verifying). */
	for (size_t i = 0; i < n; i++) {
		int have = 0;

		for (size_t j = 0; j < n_new && !have; j++)
			have = strcmp(fresh[j]->id, rows[i].id) == 0;
		if (!have) {
			srv_tenant *t = tenant_build(&rows[i]);

			if (t != NULL) {
				fresh[n_new++] = t;
				srv_log(SRV_LOG_INFO, "tenant %s loaded (CRL number %lld)",
					t->id, (long long)t->crl_number);
			}
		}
	}
	pthread_rwlock_wrlock(&tenants_lock);
	old = tenants;
	n_old = n_tenants;
	tenants = fresh;
	n_tenants = n_new;
	pthread_rwlock_unlock(&tenants_lock);
	fresh = NULL;
	for (size_t i = 0; i < n_old; i++)
		tenant_unref(old[i]);
	free(old);
out:
	free(fresh);
	cf_tenants_free(rows, n);
	pthread_mutex_unlock(&reload_mu);
}

cf_status srv_auth_init(cf_store *st, cf_error *err)
{
	srv_auth_reload(st, 1);
	return CF_OK;
}

void srv_auth_shutdown(void)
{
	pthread_rwlock_wrlock(&tenants_lock);
	for (size_t i = 0; i < n_tenants; i++)
		tenant_unref(tenants[i]);
	free(tenants);
	tenants = NULL;
	n_tenants = 0;
	pthread_rwlock_unlock(&tenants_lock);
}

size_t srv_auth_tenant_count(void)
{
	size_t n;

	pthread_rwlock_rdlock(&tenants_lock);
	n = n_tenants;
	pthread_rwlock_unlock(&tenants_lock);
	return n;
}

void srv_tenants_changed(void)
{
	srv_thread *th = srv_cur_thread;

	if (th != NULL && th->store != NULL)
		srv_auth_reload(th->store, 1);
}

/* The current entry of tenant id, referenced; NULL if none. */
static srv_tenant *tenant_current(const char *id)
{
	srv_tenant *t = NULL;

	pthread_rwlock_rdlock(&tenants_lock);
	for (size_t i = 0; i < n_tenants && t == NULL; i++)
		if (strcmp(tenants[i]->id, id) == 0)
			t = tenant_ref(tenants[i]);
	pthread_rwlock_unlock(&tenants_lock);
	return t;
}

/* The tenants whose root's subject is name, referenced (up to max). */
static size_t tenant_candidates(const X509_NAME *name, srv_tenant **out,
				size_t max)
{
	size_t n = 0;

	pthread_rwlock_rdlock(&tenants_lock);
	for (size_t i = 0; i < n_tenants && n < max; i++)
		if (X509_NAME_cmp(X509_get_subject_name(tenants[i]->root), name) == 0)
			out[n++] = tenant_ref(tenants[i]);
	pthread_rwlock_unlock(&tenants_lock);
	return n;
}

void srv_auth_conn_clear(srv_conn *conn)
{
	srv_identity *id = &conn->id;

	free(id->groups);
	cf_perms_free(id->perms);
	X509_free(id->cert);
	sk_X509_pop_free(id->chain, X509_free);
	tenant_unref(conn->tenant);
	memset(id, 0, sizeof(*id));
	conn->tenant = NULL;
	conn->auth_done = 0;
	conn->registered = 0;
}

static void refuse(srv_req *r, const char *detail)
{
	atomic_fetch_add(&srv_m_auth_fail, 1);
	srv_log(SRV_LOG_INFO, "%s: %s %s refused: %s", srv_req_source(r),
		r->method, r->path, detail);
	/* Unauthenticated requests draw on the same budget as public ones. */
	(void)srv_limits_rate_take(r->conn ? r->conn->ip : "?");
	srv_reply_error(r, 401, "unauthenticated", "%s", detail);
}

/* Fills conn->id from a verified cert; CF_OK or a sentence in err. */
static cf_status fill_identity(srv_conn *conn, srv_tenant *t, X509 *cert,
			       STACK_OF(X509) *chain, cf_error *err)
{
	srv_identity *id = &conn->id;
	char *subject = NULL;
	cf_status rc;

	snprintf(id->tenant, sizeof(id->tenant), "%s", t->id);
	rc = cf_cert_fingerprint(cert, id->fp, err);
	if (rc != CF_OK)
		return rc;
	id->kind = cf_cert_kind(cert);
	if (id->kind != CF_KIND_OPERATOR && id->kind != CF_KIND_ENROLLER &&
	    id->kind != CF_KIND_AGENT && id->kind != CF_KIND_CLUSTER)
		return cf_error_set(err, CF_ERR_DENIED,
			"the client certificate is not an operator, enroller, "
			"agent or cluster certificate");
	cf_cert_cn(cert, id->name, sizeof(id->name));
	subject = cf_name_text(X509_get_subject_name(cert));
	snprintf(id->subject, sizeof(id->subject), "%s", subject ? subject : "");
	OPENSSL_free(subject);
	rc = cf_cert_ext_text(cert, cf_nid_groups(), &id->groups, err);
	if (rc != CF_OK)
		return rc;
	if (id->groups == NULL) {
		id->groups = strdup("");
		if (id->groups == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	}
	if (id->kind == CF_KIND_OPERATOR || id->kind == CF_KIND_ENROLLER) {
		rc = cf_cert_perms(cert, &id->perms, err);
		if (rc != CF_OK)
			return rc;
	}
	X509_up_ref(cert);
	id->cert = cert;
	id->chain = chain ? X509_chain_up_ref(chain) : sk_X509_new_null();
	if (id->chain == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	id->trust = t->trust;
	id->root = t->root;
	id->crl_number = t->crl_number;
	conn->tenant = tenant_ref(t);
	return CF_OK;
}

/*
 * Is (tenant, fp) in the directory already?  A read (no write lock): a
 * known certificate, the common case of every new connection, then costs
 * no write transaction.  On a read error, 0: the put decides.
 */
static int known_cert(cf_store *st, const char *tenant, const char *fp)
{
	cf_cert_row row;
	int known;

	memset(&row, 0, sizeof(row));
	known = cf_store_cert_get(st, tenant, fp, &row, NULL) == CF_OK;
	cf_cert_row_clear(&row);
	return known;
}

/* cf_store_cert_put, skipped when the certificate is known (a no-op then). */
static cf_status put_cert(cf_store *st, const cf_cert_row *row, cf_error *err)
{
	if (known_cert(st, row->tenant, row->fp))
		return CF_OK;
	return cf_store_cert_put(st, row, NULL, err);
}

/*
 * Puts the caller's certificate (and the enroller certificate that issued
 * it, if it came along) in the tenant's directory, once per connection.
 * A failure is logged and does not refuse the request: the certificate is
 * proved, and the directory is a convenience for writers.
 */
static void register_caller(srv_req *r, srv_conn *conn)
{
	srv_identity *id = &conn->id;
	cf_store *st = r->th->store;
	char issuer_fp[65];
	cf_cert_row row;
	cf_error err = { 0 };

	conn->registered = 1;
	if (sk_X509_num(id->chain) <= 0 && known_cert(st, id->tenant, id->fp))
		return;
	snprintf(issuer_fp, sizeof(issuer_fp), "%s", id->tenant);
	if (sk_X509_num(id->chain) > 0) {
		X509 *c = api_proven_issuer(id->trust, id->cert, id->chain);

		if (c == NULL)
			srv_log(SRV_LOG_INFO, "%s: no certificate sent along with "
				"\"%s\" is its trusted enroller; not put in the "
				"directory", srv_req_source(r), id->name);
		else if (api_cert_row(c, id->tenant, id->tenant, srv_now(), &row,
				      &err) == CF_OK) {
			if (put_cert(st, &row, &err) == CF_OK)
				snprintf(issuer_fp, sizeof(issuer_fp), "%s", row.fp);
			cf_cert_row_clear(&row);
		}
	}
	if (err.code == CF_OK &&
	    api_cert_row(id->cert, id->tenant, issuer_fp, srv_now(), &row,
			 &err) == CF_OK) {
		(void)put_cert(st, &row, &err);
		cf_cert_row_clear(&row);
	}
	if (err.code != CF_OK)
		srv_log(SRV_LOG_WARN, "%s: cannot register the certificate of "
			"\"%s\" in the directory: %s", srv_req_source(r),
			id->name, err.msg);
}

int srv_auth_request(srv_req *r)
{
	srv_conn *conn = r->conn;
	srv_tenant *cand[8];
	size_t n_cand = 0;
	X509 *cert, *top;
	STACK_OF(X509) *chain;
	SSL *ssl;
	cf_error err = { 0 }, first = { 0 };
	int ok = 0;

	if (conn == NULL || conn->bev == NULL) {
		refuse(r, "no connection state");
		return -1;
	}
	if (conn->auth_done == 1) {
		srv_tenant *cur = tenant_current(conn->id.tenant);
		int still = cur != NULL && cur == conn->tenant &&
			X509_cmp_current_time(X509_get0_notAfter(conn->id.cert)) > 0;

		tenant_unref(cur);
		if (still) {
			r->id = &conn->id;
			return 0;
		}
		srv_auth_conn_clear(conn);
	}
	ssl = bufferevent_openssl_get_ssl(conn->bev);
	cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
	if (cert == NULL) {
		refuse(r, "this endpoint needs a client certificate issued "
		       "under a registered organisation root; none was sent");
		return -1;
	}
	chain = SSL_get_peer_cert_chain(ssl);
	/* The deepest legitimate chain is agent, enroller (and the root). */
	if (sk_X509_num(chain) > SRV_CHAIN_MAX) {
		refuse(r, "the client sent more than 3 certificates; send "
		       "your certificate and, for an agent, its enroller's");
		return -1;
	}
	top = sk_X509_num(chain) > 0 ? sk_X509_value(chain, sk_X509_num(chain) - 1)
				     : cert;
	for (int attempt = 0; attempt < 2 && !ok; attempt++) {
		n_cand = tenant_candidates(X509_get_issuer_name(top), cand, 8);
		if (n_cand == 0 && attempt == 0) {
			srv_auth_reload(r->th->store, 0);
			continue;
		}
		for (size_t i = 0; i < n_cand; i++) {
			if (!ok && cand[i]->trust == NULL) {
				cf_error_set(&err, CF_ERR_DENIED,
					"the organisation's CRL on the server "
					"is unusable (%s)", cand[i]->why);
			} else if (!ok && cf_trust_verify(cand[i]->trust, cert, chain,
						   "the client certificate",
						   &err) == CF_OK) {
				ok = fill_identity(conn, cand[i], cert, chain,
						   &err) == CF_OK;
				if (!ok)
					srv_auth_conn_clear(conn);
			}
			if (!ok && first.code == CF_OK)
				first = err;
			tenant_unref(cand[i]);
		}
		break;
	}
	if (!ok) {
		if (n_cand == 0)
			refuse(r, "the client certificate was not issued "
			       "under any organisation root registered on this "
			       "server");
		else
			refuse(r, first.msg);
		return -1;
	}
	conn->auth_done = 1;
	r->id = &conn->id;
	if (!conn->registered)
		register_caller(r, conn);
	return 0;
}
