/*
 * api_certs.c - who am I, the tenant's certificate directory, its CRL
 * (docs/API.md, "Identity, directory, CRL").
 *
 *   GET  /v1/whoami      any caller
 *   GET  /v1/certs       operators and enrollers
 *   POST /v1/certs       admin:**, or an enroller whose agent.enroll covers
 *                        the certificate's groups (and cluster)
 *   GET  /v1/crl         any caller
 *   PUT  /v1/crl         operators and enrollers; the root's signature is
 *                        what authorises a CRL
 *
 * Invariants: a certificate enters the directory only after it verified
 * against the tenant's root and CRL (cf_trust_verify, which also checks
 * an enroller's right to issue it); a CRL replaces the stored one only if
 * the root signed it and its number is higher.  Each change is committed
 * with its audit entry (cert.add, crl.push).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "api.h"

#define CHAIN_MAX 4  /* certificates a client may send with one */

/* ---- GET /v1/whoami -------------------------------------------------- */

static void whoami(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	json_t *perms = json_array(), *body;
	size_t n = id->perms ? cf_perms_count(id->perms) : 0;
	char rule[CF_PERMS_MAX_BYTES];

	for (size_t i = 0; perms && i < n; i++) {
		snprintf(rule, sizeof(rule), "%s:%s", cf_perms_verb(id->perms, i),
			 cf_perms_scope(id->perms, i));
		json_array_append_new(perms, json_string(rule));
	}
	body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:I}",
		"tenant", id->tenant, "fp", id->fp,
		"kind", cf_kind_name(id->kind), "name", id->name,
		"subject", id->subject,
		"groups", api_split_json(id->groups),
		"perms", perms, "crl_number", (json_int_t)id->crl_number);
	api_reply(r, 200, body);
}

/* ---- GET /v1/certs --------------------------------------------------- */

/* Issuers' PEMs already looked up for one listing. */
typedef struct issuer_cache {
	char (*fp)[65];
	char **pem;           /* NULL: not in the directory */
	size_t n, cap;
} issuer_cache;

static void issuer_cache_free(issuer_cache *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->pem[i]);
	free(c->fp);
	free(c->pem);
}

/*
 * The chain of a directory row: the issuing enroller's certificate, or
 * nothing for a root-issued one.  -1 on a database failure (err set).
 */
static int row_chain(cf_store *st, const char *tenant, const cf_cert_row *row,
		     issuer_cache *c, json_t **out, cf_error *err)
{
	cf_cert_row issuer;
	size_t i;

	*out = json_array();
	if (*out == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory"), -1;
	if (row->issuer_fp[0] == '\0' || strcmp(row->issuer_fp, tenant) == 0)
		return 0;
	for (i = 0; i < c->n; i++)
		if (strcmp(c->fp[i], row->issuer_fp) == 0)
			break;
	if (i == c->n) {
		if (c->n == c->cap) {
			size_t cap = c->cap ? 2 * c->cap : 8;
			char (*fp)[65] = realloc(c->fp, cap * sizeof(*fp));
			char **pem;

			if (fp == NULL)
				return cf_error_set(err, CF_ERR_NOMEM, "out of memory"), -1;
			c->fp = fp;
			pem = realloc(c->pem, cap * sizeof(*pem));
			if (pem == NULL)
				return cf_error_set(err, CF_ERR_NOMEM, "out of memory"), -1;
			c->pem = pem;
			c->cap = cap;
		}
		snprintf(c->fp[i], sizeof(c->fp[i]), "%s", row->issuer_fp);
		c->pem[i] = NULL;
		if (cf_store_cert_get(st, tenant, row->issuer_fp, &issuer, err) == CF_OK) {
			c->pem[i] = issuer.pem;
			issuer.pem = NULL;
			cf_cert_row_clear(&issuer);
		} else if (err->code != CF_ERR_NOT_FOUND) {
			return -1;
		}
		c->n++;
	}
	if (c->pem[i] != NULL)
		json_array_append_new(*out, json_string(c->pem[i]));
	return 0;
}

static json_t *row_json(const cf_cert_row *row, json_t *chain)
{
	return json_pack("{s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:I,s:I,s:s,s:o}",
		"fp", row->fp, "kind", row->kind, "name", row->name,
		"groups", api_split_json(row->groups),
		"cluster", row->cluster, "issuer", row->issuer_fp,
		"serial", row->serial, "not_after", (json_int_t)row->not_after,
		"created", (json_int_t)row->created,
		"cert", row->pem ? row->pem : "", "chain", chain);
}

static void certs_list(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	cf_store *st = srv_req_store(r);
	cf_cert_filter filter = {0};
	cf_cert_row *rows = NULL;
	issuer_cache cache = {0};
	json_t *list = NULL, *chain;
	cf_error err;
	size_t n = 0, shown;
	int64_t limit;

	if (api_need_operator(r, id, "the certificate directory") != 0)
		return;
	filter.kind = srv_req_param(r, "kind");
	if (filter.kind && (cf_kind_from_name(filter.kind) == CF_KIND_UNKNOWN ||
			    cf_kind_from_name(filter.kind) == CF_KIND_ROOT)) {
		srv_reply_error(r, 400, "bad_request",
			"query parameter kind=%.32s is not operator, enroller, "
			"agent or cluster", filter.kind);
		return;
	}
	filter.group = srv_req_param(r, "group");
	if (filter.group && api_name_ok(r, "group", filter.group) != 0)
		return;
	filter.name = srv_req_param(r, "name");
	if (filter.name && strlen(filter.name) > CF_NAME_MAX_BYTES) {
		srv_reply_error(r, 400, "bad_request",
			"query parameter name is longer than %d bytes; no "
			"certificate has such a name", CF_NAME_MAX_BYTES);
		return;
	}
	if (api_param_hex(r, "fp", 64, &filter.fp) != 0 ||
	    api_param_hex(r, "after", 64, &filter.after_fp) != 0 ||
	    api_param_int(r, "limit", 1, API_LIST_MAX, API_LIST_MAX, &limit) != 0)
		return;
	/* One more than asked tells whether there is a next page. */
	filter.limit = (size_t)limit + 1;
	if (cf_store_cert_list(st, id->tenant, &filter, &rows, &n, &err) != CF_OK) {
		api_fail(r, &err, "listing the certificate directory");
		return;
	}
	shown = n > (size_t)limit ? (size_t)limit : n;
	list = json_array();
	for (size_t i = 0; list && i < shown; i++) {
		if (row_chain(st, id->tenant, &rows[i], &cache, &chain, &err) != 0) {
			json_decref(chain);
			json_decref(list);
			api_fail(r, &err, "listing the certificate directory");
			goto out;
		}
		if (json_array_append_new(list, row_json(&rows[i], chain)) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	api_reply(r, 200, list == NULL ? NULL : json_pack("{s:o,s:o}",
		"certs", list, "next", n > shown ?
		json_string(rows[shown - 1].fp) : json_null()));
out:
	issuer_cache_free(&cache);
	cf_cert_rows_free(rows, n);
}

/* ---- POST /v1/certs -------------------------------------------------- */

/* May the caller add cert (of kind) to the directory?  0, or answered. */
static int may_add(srv_req *r, const srv_identity *id, X509 *cert,
		   cf_kind kind)
{
	char *groups = NULL, *cluster = NULL, *save = NULL, *g;
	cf_error err;
	int ok = 1;

	if (api_is_admin(id))
		return 0;
	if (kind != CF_KIND_AGENT && kind != CF_KIND_CLUSTER) {
		srv_reply_error(r, 403, "forbidden",
			"adding an %s certificate to the directory needs an "
			"admin:** rule, which %s \"%s\" does not hold",
			cf_kind_name(kind), cf_kind_name(id->kind), id->name);
		return -1;
	}
	if (cf_cert_ext_text(cert, cf_nid_groups(), &groups, &err) != CF_OK ||
	    cf_cert_ext_text(cert, cf_nid_cluster(), &cluster, &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
		ok = -1;
		goto out;
	}
	if ((groups == NULL || groups[0] == '\0') &&
	    (cluster == NULL || cluster[0] == '\0')) {
		srv_reply_error(r, 403, "forbidden",
			"the %s certificate has no groups and no cluster, so "
			"only an admin:** rule may add it", cf_kind_name(kind));
		ok = -1;
		goto out;
	}
	for (g = groups ? strtok_r(groups, ",", &save) : NULL; g;
	     g = strtok_r(NULL, ",", &save)) {
		if (!srv_is_operator(id) ||
		    !cf_perms_covers(id->perms, "agent.enroll", g)) {
			srv_reply_error(r, 403, "forbidden",
				"%s \"%s\" holds no agent.enroll rule covering "
				"group %.255s of the certificate",
				cf_kind_name(id->kind), id->name, g);
			ok = -1;
			goto out;
		}
	}
	if (cluster && cluster[0] &&
	    (!srv_is_operator(id) ||
	     !cf_perms_covers(id->perms, "agent.enroll", cluster))) {
		srv_reply_error(r, 403, "forbidden",
			"%s \"%s\" holds no agent.enroll rule covering cluster "
			"%.255s of the certificate", cf_kind_name(id->kind),
			id->name, cluster);
		ok = -1;
	}
out:
	OPENSSL_free(groups);
	OPENSSL_free(cluster);
	return ok > 0 ? 0 : -1;
}

/* Parses "chain": an optional array of PEM strings into *out. */
static int parse_chain(srv_req *r, const json_t *body, STACK_OF(X509) **out)
{
	const json_t *chain = json_object_get(body, "chain"), *v;
	STACK_OF(X509) *sk = sk_X509_new_null();
	X509 *c;
	cf_error err;
	size_t i;

	*out = NULL;
	if (sk == NULL) {
		srv_reply_error(r, 500, "internal", "out of memory; try again");
		return -1;
	}
	if (chain != NULL && !json_is_null(chain) &&
	    (!json_is_array(chain) || json_array_size(chain) > CHAIN_MAX)) {
		srv_reply_error(r, 400, "bad_request",
			"\"chain\" must be an array of at most %d PEM "
			"certificates (the issuing enroller's)", CHAIN_MAX);
		goto fail;
	}
	json_array_foreach(chain, i, v) {
		if (!json_is_string(v) ||
		    json_string_length(v) > CF_PEM_MAX_BYTES ||
		    cf_cert_parse((const unsigned char *)json_string_value(v),
				  json_string_length(v), "a certificate of "
				  "\"chain\"", &c, NULL, &err) != CF_OK) {
			srv_reply_error(r, 400, "bad_request",
				"\"chain\"[%zu] is not a PEM certificate", i);
			goto fail;
		}
		if (!sk_X509_push(sk, c)) {
			X509_free(c);
			srv_reply_error(r, 500, "internal", "out of memory; try again");
			goto fail;
		}
	}
	*out = sk;
	return 0;
fail:
	sk_X509_pop_free(sk, X509_free);
	return -1;
}

static void certs_add(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	cf_store *st = srv_req_store(r);
	json_t *body = NULL;
	const char *pem;
	X509 *cert = NULL, *issuer = NULL;
	STACK_OF(X509) *chain = NULL;
	cf_cert_row row = {0}, issuer_row = {0};
	cf_audit_entry audit;
	char issuer_fp[65];
	cf_error err;
	cf_kind kind;

	if (api_need_operator(r, id, "adding certificates") != 0)
		return;
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_str(r, body, "cert", CF_PEM_MAX_BYTES, 1, &pem) != 0 ||
	    parse_chain(r, body, &chain) != 0)
		goto out;
	/* Certificates after the first in "cert" count as chain too. */
	if (cf_cert_parse((const unsigned char *)pem, strlen(pem),
			  "\"cert\"", &cert, &chain, &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
		goto out;
	}
	if (sk_X509_num(chain) > CHAIN_MAX) {
		srv_reply_error(r, 400, "bad_request",
			"\"cert\" and \"chain\" hold more than %d certificates "
			"besides the one to add; send it and its issuing "
			"enroller's only", CHAIN_MAX);
		goto out;
	}
	kind = cf_cert_kind(cert);
	if (kind != CF_KIND_OPERATOR && kind != CF_KIND_ENROLLER &&
	    kind != CF_KIND_AGENT && kind != CF_KIND_CLUSTER) {
		srv_reply_error(r, 400, "bad_request",
			"\"cert\" is not an operator, enroller, agent or "
			"cluster certificate (no coffer kind extension); "
			"issue it with coffer cert issue");
		goto out;
	}
	if (may_add(r, id, cert, kind) != 0)
		goto out;
	if (cf_trust_verify(id->trust, cert, chain, "\"cert\"", &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
		goto out;
	}
	/* Who issued it: the root, or an enroller sent along in "chain". */
	snprintf(issuer_fp, sizeof(issuer_fp), "%s", id->tenant);
	if (X509_check_issued(id->root, cert) != X509_V_OK) {
		issuer = api_proven_issuer(id->trust, cert, chain);
		if (issuer == NULL ||
		    api_cert_row(issuer, id->tenant, id->tenant, srv_now(),
				 &issuer_row, &err) != CF_OK) {
			srv_reply_error(r, 400, "bad_request",
				"\"cert\" was not issued by the root nor by "
				"a trusted enroller certificate of \"chain\"");
			goto out;
		}
		snprintf(issuer_fp, sizeof(issuer_fp), "%s", issuer_row.fp);
		/* The enroller itself, so the directory can give the chain. */
		if (cf_store_cert_put(st, &issuer_row, NULL, &err) != CF_OK) {
			api_fail(r, &err, "adding a certificate's issuer");
			goto out;
		}
	}
	if (api_cert_row(cert, id->tenant, issuer_fp, srv_now(), &row, &err) != CF_OK) {
		api_fail(r, &err, "reading a certificate");
		goto out;
	}
	srv_audit_init(r, &audit, "cert.add", row.fp, 0);
	if (cf_store_cert_put(st, &row, &audit, &err) != CF_OK) {
		api_fail(r, &err, "adding a certificate");
		goto out;
	}
	api_reply(r, 201, json_pack("{s:s,s:s,s:s}", "fp", row.fp,
		"kind", row.kind, "name", row.name));
out:
	cf_cert_row_clear(&row);
	cf_cert_row_clear(&issuer_row);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	json_decref(body);
}

/* ---- GET /v1/crl, PUT /v1/crl ------------------------------------------ */

static void crl_get(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	cf_tenant t = {0};
	cf_error err;

	if (cf_store_tenant_get(srv_req_store(r), id->tenant, &t, &err) != CF_OK) {
		api_fail(r, &err, "reading the tenant's CRL");
		return;
	}
	api_reply(r, 200, json_pack("{s:o,s:I}",
		"crl", t.crl_pem ? json_string(t.crl_pem) : json_null(),
		"number", (json_int_t)t.crl_number));
	cf_tenant_clear(&t);
}

/*
 * After a new CRL: the envelopes the server holds for certificates it
 * revokes (or whose issuing enroller it revokes) can only ever be read by
 * keys the organisation disowned: delete them, every version, one
 * envelope.purge entry per certificate.  *purged: envelopes deleted.
 * Runs through the whole directory once, on this request's thread (a CRL
 * push is rare).  -1 answered.
 */
static int purge_revoked(srv_req *r, const srv_identity *id, X509_CRL *crl,
			 int64_t *purged)
{
	cf_store *st = srv_req_store(r);
	cf_cert_filter f = { .limit = 1000 };
	cf_cert_row *rows = NULL;
	char after[65] = "", (*revoked)[65] = NULL, (*names)[256] = NULL;
	size_t n = 0, n_rev = 0, cap = 0, n_names = 0;
	cf_audit_entry audit;
	int64_t removed;
	cf_error err;
	int rc = -1;

	*purged = 0;
	/* Pass 1: revoked by serial; pass 2: issued by a revoked enroller. */
	for (int pass = 0; pass < 2; pass++) {
		after[0] = '\0';
		do {
			f.after_fp = after[0] ? after : NULL;
			if (cf_store_cert_list(st, id->tenant, &f, &rows, &n,
					       &err) != CF_OK) {
				api_fail(r, &err, "reading the directory");
				goto out;
			}
			for (size_t i = 0; i < n; i++) {
				int hit = 0;

				if (pass == 0)
					hit = api_serial_revoked(crl, rows[i].serial);
				else
					for (size_t k = 0; k < n_rev && !hit; k++)
						hit = strcmp(revoked[k],
							     rows[i].issuer_fp) == 0;
				for (size_t k = 0; hit && k < n_rev; k++)
					if (strcmp(revoked[k], rows[i].fp) == 0)
						hit = 0;  /* listed already */
				if (!hit)
					continue;
				if (n_rev == cap) {
					size_t want = cap ? cap * 2 : 16;
					void *grown = realloc(revoked,
							      want * sizeof(*revoked));

					if (grown == NULL) {
						api_reply(r, 500, NULL);
						goto out;
					}
					revoked = grown;
					cap = want;
				}
				memcpy(revoked[n_rev++], rows[i].fp, 65);
			}
			if (n > 0)
				memcpy(after, rows[n - 1].fp, 65);
			cf_cert_rows_free(rows, n);
			rows = NULL;
		} while (n == f.limit);
	}
	for (size_t k = 0; k < n_rev; k++) {
		free(names);
		names = NULL;
		if (cf_store_recipient_names(st, id->tenant, revoked[k], &names,
					     &n_names, &err) != CF_OK) {
			api_fail(r, &err, "listing a revoked recipient's secrets");
			goto out;
		}
		if (n_names == 0)
			continue;
		srv_audit_init(r, &audit, "envelope.purge", revoked[k], 0);
		if (cf_store_envelopes_purge(st, id->tenant, revoked[k],
					     (const char (*)[256])names, n_names,
					     &audit, &removed, &err) != CF_OK) {
			api_fail(r, &err, "deleting a revoked recipient's "
				 "envelopes");
			goto out;
		}
		*purged += removed;
	}
	rc = 0;
out:
	cf_cert_rows_free(rows, n);
	free(names);
	free(revoked);
	return rc;
}

static void crl_put(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	json_t *body = NULL;
	const char *pem;
	X509_CRL *crl = NULL;
	ASN1_INTEGER *num = NULL;
	BIO *bio = NULL;
	char *norm = NULL;
	int64_t number = -1, purged = 0;
	cf_audit_entry audit;
	char object[32];
	cf_error err;

	if (api_need_operator(r, id, "pushing a CRL") != 0)
		return;
	body = srv_req_json(r);
	if (body == NULL)
		return;
	if (api_str(r, body, "crl", CF_CRL_MAX_BYTES, 1, &pem) != 0)
		goto out;
	if (cf_crl_parse((const unsigned char *)pem, strlen(pem), "\"crl\"",
			 &crl, &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
		goto out;
	}
	if (cf_crl_check_signer(crl, id->root, &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request",
			"%s; only a CRL signed by this tenant's root (coffer "
			"ca revoke) can be pushed", err.msg);
		goto out;
	}
	num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	if (num == NULL || ASN1_INTEGER_get_int64(&number, num) != 1 || number < 0) {
		srv_reply_error(r, 400, "bad_request",
			"the CRL has no usable cRLNumber extension (a number "
			"from 0 to 2^63-1), so it cannot be ordered against "
			"the stored one; make it with coffer ca revoke");
		goto out;
	}
	if (number <= id->crl_number) {
		srv_reply_error(r, 409, "conflict",
			"the CRL's number %lld is not above the stored CRL's "
			"%lld; push the newest CRL", (long long)number,
			(long long)id->crl_number);
		goto out;
	}
	/* Stored as we encode it, whatever the client's PEM looked like. */
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || PEM_write_bio_X509_CRL(bio, crl) != 1 ||
	    (norm = api_bio_text(bio)) == NULL) {
		srv_reply_error(r, 500, "internal", "the server ran out of "
			"memory encoding the CRL; nothing was changed; try "
			"again");
		goto out;
	}
	/*
	 * The purge first: should it fail, the CRL is not stored either and
	 * pushing it again does both (after the CRL, a second push would
	 * be refused as not newer and the envelopes stay).  The root's
	 * signature already makes the revocation true.
	 */
	if (purge_revoked(r, id, crl, &purged) != 0)
		goto out;
	snprintf(object, sizeof(object), "%lld", (long long)number);
	srv_audit_init(r, &audit, "crl.push", object, (int64_t)strlen(norm));
	if (cf_store_tenant_set_crl(srv_req_store(r), id->tenant,
				    norm, number, &audit, &err) != CF_OK) {
		api_fail(r, &err, "storing the CRL");
		goto out;
	}
	srv_tenants_changed();
	api_reply(r, 200, json_pack("{s:I,s:I}", "number", (json_int_t)number,
				    "purged", (json_int_t)purged));
out:
	free(norm);
	BIO_free(bio);
	ASN1_INTEGER_free(num);
	X509_CRL_free(crl);
	json_decref(body);
}

const srv_route srv_routes_certs[] = {
	{"GET", "/v1/whoami", 0, 0, whoami},
	{"GET", "/v1/certs", 0, 0, certs_list},
	{"POST", "/v1/certs", 0, 0, certs_add},
	{"GET", "/v1/crl", 0, 0, crl_get},
	{"PUT", "/v1/crl", 0, 0, crl_put},
	{NULL, NULL, 0, 0, NULL},
};
