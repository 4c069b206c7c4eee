/*
 * api_common.c - the rights checks and input validation every API handler
 * uses (server.h: srv_allows, srv_is_operator; api.h: the rest).
 *
 * Invariants: a getter that fails has answered the request with a JSON
 * error that names the field and what to send instead, and the handler
 * has changed nothing yet; every value a getter yields is bounded (length,
 * range, alphabet).  Database failures are logged here (srv_log), and
 * answered without detail: the client learns that the server failed and
 * that nothing changed, never how.
 *
 * Cluster membership (api_cluster_member) is proved per request by the
 * Coffer-Cluster header and checked against the directory, the tenant's
 * root and CRL, and the cluster certificate's key; nothing of it is kept.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <event2/http.h>

#include "api.h"
#include "b64.h"
#include "cluster.h"
#include "runtime.h"

int srv_allows(const srv_identity *id, const char *verb, const char *name)
{
	if (id == NULL || id->perms == NULL || name == NULL)
		return 0;
	if (id->kind != CF_KIND_OPERATOR && id->kind != CF_KIND_ENROLLER)
		return 0;
	return cf_perms_allows(id->perms, verb, name);
}

int srv_is_operator(const srv_identity *id)
{
	return id != NULL && (id->kind == CF_KIND_OPERATOR ||
			      id->kind == CF_KIND_ENROLLER);
}

int api_is_admin(const srv_identity *id)
{
	return srv_is_operator(id) && id->perms != NULL &&
	       cf_perms_covers(id->perms, "admin", "**");
}

int api_holds(const srv_identity *id, const char *verb)
{
	size_t n;

	if (!srv_is_operator(id) || id->perms == NULL)
		return 0;
	if (api_is_admin(id))
		return 1;
	n = cf_perms_count(id->perms);
	for (size_t i = 0; i < n; i++)
		if (strcmp(cf_perms_verb(id->perms, i), verb) == 0)
			return 1;
	return 0;
}

int api_need_operator(srv_req *r, const srv_identity *id, const char *what)
{
	if (srv_is_operator(id))
		return 0;
	srv_reply_error(r, 403, "forbidden",
		"%s is for operators and enrollers, and \"%s\" is %s %s "
		"certificate; use an operator's certificate",
		what, id ? id->name : "",
		id && id->kind == CF_KIND_CLUSTER ? "a" : "an",
		id ? cf_kind_name(id->kind) : "unknown");
	return -1;
}

void api_fail(srv_req *r, const cf_error *err, const char *doing)
{
	const char *code;
	int status = srv_status_http(err->code, &code);

	if (status != 500) {
		srv_reply_error(r, status, code, "%s", err->msg);
		return;
	}
	srv_log(SRV_LOG_ERROR, "%s: %s failed (%s): %s", srv_req_source(r),
		doing, cf_status_name(err->code), err->msg);
	srv_reply_error(r, 500, "internal",
		"the server failed while %s; nothing was changed; try again, "
		"and if it persists tell the server's operator (its log has "
		"the cause)", doing);
}

int api_is_hex(const char *s, size_t len)
{
	if (s == NULL || strlen(s) != len)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int api_b64_field(srv_req *r, const char *what, const json_t *value,
		  size_t max, unsigned char **out, size_t *len)
{
	cf_error err = { 0 };
	cf_status rc;

	*out = NULL;
	*len = 0;
	if (!json_is_string(value)) {
		srv_reply_error(r, 400, "bad_request",
			"%s is missing or not a string; send it as standard "
			"base64 (RFC 4648, with padding)", what);
		return -1;
	}
	if (json_string_length(value) == 0) {
		srv_reply_error(r, 400, "bad_request",
			"%s is empty; send it as standard base64 (RFC 4648, "
			"with padding)", what);
		return -1;
	}
	rc = cf_b64_decode(json_string_value(value), json_string_length(value),
			   max, what, out, len, &err);
	if (rc == CF_ERR_TOO_LARGE)
		srv_reply_error(r, 413, "too_large", "%s; nothing was stored",
				err.msg);
	else if (rc == CF_ERR_NOMEM)
		srv_reply_error(r, 500, "internal",
			"the server ran out of memory decoding %s; nothing "
			"was changed; try again later", what);
	else if (rc != CF_OK)
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
	return rc == CF_OK ? 0 : -1;
}

json_t *api_b64_json(const unsigned char *data, size_t len)
{
	size_t cap, n;
	char *buf;
	json_t *s;

	if (len > CF_B64_MAX_BYTES)
		return NULL;
	cap = cf_b64_encoded_len(len) + 1;
	buf = malloc(cap);
	if (buf == NULL)
		return NULL;
	/* Base64 is ASCII: no UTF-8 check needed (a measurable cost on the
	 * feed's 2 KB+ envelopes). */
	s = cf_b64_encode(data, len, buf, cap, &n, NULL) == CF_OK ?
		json_stringn_nocheck(buf, n) : NULL;
	free(buf);
	return s;
}

int api_str(srv_req *r, const json_t *obj, const char *key, size_t max,
	    int required, const char **out)
{
	const json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		srv_reply_error(r, 400, "bad_request",
			"the request has no \"%s\"; docs/API.md lists the "
			"fields of each endpoint", key);
		return -1;
	}
	if (!json_is_string(v)) {
		srv_reply_error(r, 400, "bad_request",
			"\"%s\" must be a JSON string", key);
		return -1;
	}
	if (json_string_length(v) > max) {
		srv_reply_error(r, 400, "bad_request",
			"\"%s\" is %zu bytes long, more than the %zu allowed",
			key, json_string_length(v), max);
		return -1;
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		srv_reply_error(r, 400, "bad_request",
			"\"%s\" contains a NUL character", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int api_int(srv_req *r, const json_t *obj, const char *key, int64_t min,
	    int64_t max, int64_t *out)
{
	const json_t *v = json_object_get(obj, key);
	json_int_t i;

	if (!json_is_integer(v)) {
		srv_reply_error(r, 400, "bad_request",
			"\"%s\" is %s; send an integer from %lld to %lld", key,
			v == NULL ? "missing" : "not an integer",
			(long long)min, (long long)max);
		return -1;
	}
	i = json_integer_value(v);
	if (i < min || i > max) {
		srv_reply_error(r, 400, "bad_request",
			"\"%s\" is %lld; it must be from %lld to %lld", key,
			(long long)i, (long long)min, (long long)max);
		return -1;
	}
	*out = (int64_t)i;
	return 0;
}

int api_hex_field(srv_req *r, const json_t *obj, const char *key,
		  size_t len, const char **out)
{
	if (api_str(r, obj, key, 4 * len, 1, out) != 0)
		return -1;
	if (!api_is_hex(*out, len)) {
		srv_reply_error(r, 400, "bad_request",
			"\"%s\" must be %zu lower-case hex characters", key, len);
		return -1;
	}
	return 0;
}

int api_param_int(srv_req *r, const char *key, int64_t min, int64_t max,
		  int64_t def, int64_t *out)
{
	const char *text = srv_req_param(r, key);
	char *end = NULL;
	long long v = 0;

	if (text == NULL) {
		*out = def;
		return 0;
	}
	errno = 0;
	if (text[0] >= '0' && text[0] <= '9')
		v = strtoll(text, &end, 10);
	if (end == NULL || *end != '\0' || errno != 0 || strlen(text) > 19 ||
	    v < min || v > max) {
		srv_reply_error(r, 400, "bad_request",
			"query parameter %s=%.32s is not a whole number from "
			"%lld to %lld", key, text, (long long)min,
			(long long)max);
		return -1;
	}
	*out = (int64_t)v;
	return 0;
}

int api_param_hex(srv_req *r, const char *key, size_t len, const char **out)
{
	const char *text = srv_req_param(r, key);

	*out = NULL;
	if (text == NULL)
		return 0;
	if (!api_is_hex(text, len)) {
		srv_reply_error(r, 400, "bad_request",
			"query parameter %s must be %zu lower-case hex "
			"characters", key, len);
		return -1;
	}
	*out = text;
	return 0;
}

int api_name_ok(srv_req *r, const char *what, const char *name)
{
	cf_error err;

	if (cf_name_check(what, name, &err) != CF_OK) {
		srv_reply_error(r, 400, "bad_request", "%s", err.msg);
		return -1;
	}
	return 0;
}

int api_param_name(srv_req *r, const char *key, const char **out)
{
	*out = srv_req_param(r, key);
	if (*out == NULL) {
		srv_reply_error(r, 400, "bad_request",
			"query parameter %s is missing; add ?%s=NAME", key, key);
		return -1;
	}
	return api_name_ok(r, "secret name", *out);
}

int api_path_id(srv_req *r, size_t len, const char *what, char *id,
		size_t id_size)
{
	const char *rest = srv_req_path_rest(r);

	if (rest == NULL)
		rest = "";
	if (rest[0] == '/')
		rest++;
	if (!api_is_hex(rest, len) || id_size <= len) {
		srv_reply_error(r, 404, "not_found",
			"there is no %s \"%.64s\"; an id is %zu lower-case hex "
			"characters", what, rest, len);
		return -1;
	}
	memcpy(id, rest, len + 1);
	return 0;
}

char *api_bio_text(BIO *bio)
{
	char *data, *text = NULL;
	long n = BIO_get_mem_data(bio, &data);

	if (n > 0 && (text = malloc((size_t)n + 1)) != NULL) {
		memcpy(text, data, (size_t)n);
		text[n] = '\0';
	}
	return text;
}

/* The library's PEM (cf_*_to_pem) as a malloc'ed C string. */
static char *pem_text(cf_status rc, unsigned char *pem, size_t len)
{
	char *text = NULL;

	if (rc == CF_OK && len > 0 && (text = malloc(len + 1)) != NULL) {
		memcpy(text, pem, len);
		text[len] = '\0';
	}
	OPENSSL_free(pem);
	return text;
}

char *api_cert_pem(X509 *cert)
{
	unsigned char *pem = NULL;
	size_t len = 0;

	cf_status rc = cf_cert_to_pem(cert, &pem, &len, NULL);

	return pem_text(rc, pem, len);
}

char *api_csr_pem(X509_REQ *csr)
{
	unsigned char *pem = NULL;
	size_t len = 0;

	cf_status rc = cf_csr_to_pem(csr, &pem, &len, NULL);

	return pem_text(rc, pem, len);
}

json_t *api_pem_json(X509 *cert)
{
	char *pem = api_cert_pem(cert);
	json_t *s = pem ? json_string(pem) : NULL;

	free(pem);
	return s;
}

json_t *api_split_json(const char *list)
{
	json_t *a = json_array();
	const char *p = list, *comma;

	if (a == NULL || list == NULL || list[0] == '\0')
		return a;
	for (;;) {
		comma = strchr(p, ',');
		json_array_append_new(a, json_stringn(p, comma ?
			(size_t)(comma - p) : strlen(p)));
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return a;
}

static char *ext_copy(X509 *cert, int nid, cf_error *err)
{
	char *text = NULL, *copy;

	if (cf_cert_ext_text(cert, nid, &text, err) != CF_OK)
		return NULL;
	copy = strdup(text ? text : "");
	OPENSSL_free(text);
	if (copy == NULL)
		cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	return copy;
}

cf_status api_cert_row(X509 *cert, const char *tenant, const char *issuer_fp,
		       int64_t now, cf_cert_row *row, cf_error *err)
{
	BIGNUM *bn = NULL;
	char *hex = NULL, *cluster = NULL;
	char cn[CF_CN_MAX_BYTES + 1];
	cf_kind kind = cf_cert_kind(cert);
	cf_status rc;

	memset(row, 0, sizeof(*row));
	snprintf(row->tenant, sizeof(row->tenant), "%s", tenant);
	rc = cf_cert_fingerprint(cert, row->fp, err);
	if (rc != CF_OK)
		goto out;
	if (kind != CF_KIND_OPERATOR && kind != CF_KIND_ENROLLER &&
	    kind != CF_KIND_AGENT && kind != CF_KIND_CLUSTER) {
		rc = cf_error_set(err, CF_ERR_PARSE,
			"the certificate is not an operator, enroller, agent "
			"or cluster certificate (no coffer kind extension)");
		goto out;
	}
	snprintf(row->kind, sizeof(row->kind), "%s", cf_kind_name(kind));
	cf_cert_cn(cert, cn, sizeof(cn));
	snprintf(row->name, sizeof(row->name), "%s", cn);
	row->groups = ext_copy(cert, cf_nid_groups(), err);
	if (row->groups == NULL) {
		rc = err ? err->code : CF_ERR_PARSE;
		goto out;
	}
	cluster = ext_copy(cert, cf_nid_cluster(), err);
	if (cluster == NULL) {
		rc = err ? err->code : CF_ERR_PARSE;
		goto out;
	}
	snprintf(row->cluster, sizeof(row->cluster), "%s", cluster);
	snprintf(row->issuer_fp, sizeof(row->issuer_fp), "%s", issuer_fp);
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	hex = bn ? BN_bn2hex(bn) : NULL;
	if (hex == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (char *p = hex; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	snprintf(row->serial, sizeof(row->serial), "%s", hex);
	row->not_after = cf_asn1_time_unix(X509_get0_notAfter(cert));
	row->pem = api_cert_pem(cert);
	if (row->pem == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	row->created = now;
out:
	if (rc != CF_OK)
		cf_cert_row_clear(row);
	free(cluster);
	OPENSSL_free(hex);
	BN_free(bn);
	return rc;
}

void api_reply(srv_req *r, int status, json_t *body)
{
	if (body == NULL) {
		srv_log(SRV_LOG_ERROR, "%s: out of memory building an "
			"answer", srv_req_source(r));
		srv_reply_error(r, 500, "internal",
			"the server ran out of memory building the answer; "
			"try again later");
		return;
	}
	srv_reply_json(r, status, body);
}

int api_deny_name(srv_req *r, const srv_identity *id, const char *rules,
		  const char *name)
{
	srv_reply_error(r, 403, "forbidden",
		"%s \"%s\" holds no %s rule matching %s",
		cf_kind_name(id->kind), id->name, rules, name);
	return -1;
}

/* A name under cluster-key/ (a valid cluster key name or not). */
static int under_cluster_key(const char *name)
{
	return strncmp(name, CF_CLUSTER_KEY_PREFIX,
		       strlen(CF_CLUSTER_KEY_PREFIX)) == 0;
}

int api_secret_allows(const srv_identity *id, const char *verb,
		      const char *name)
{
	char cluster[CF_NAME_MAX_BYTES + 1];

	if (cf_cluster_of_name(name, 1, cluster, sizeof(cluster)))
		return srv_allows(id, "agent.enroll", cluster);
	if (under_cluster_key(name))
		return 0;
	return srv_allows(id, verb, name);
}

int api_deny_secret(srv_req *r, const srv_identity *id, const char *rules,
		    const char *name)
{
	char cluster[CF_NAME_MAX_BYTES + 1];

	if (cf_cluster_of_name(name, 1, cluster, sizeof(cluster))) {
		srv_reply_error(r, 403, "forbidden",
			"%s \"%s\" holds no agent.enroll rule matching %s: %s "
			"carries the key of cluster \"%s\", and reading or "
			"writing it takes agent.enroll on the cluster",
			cf_kind_name(id->kind), id->name, cluster, name, cluster);
		return -1;
	}
	if (under_cluster_key(name)) {
		srv_reply_error(r, 403, "forbidden",
			"%s is not a cluster key name; names under %s are "
			"%sNAME with NAME a valid cluster name, and nothing "
			"else may be stored there", name, CF_CLUSTER_KEY_PREFIX,
			CF_CLUSTER_KEY_PREFIX);
		return -1;
	}
	return api_deny_name(r, id, rules, name);
}

int64_t api_latest_version(srv_req *r, const char *tenant, const char *name)
{
	cf_secret_row row;

	if (cf_store_secret_latest(srv_req_store(r), tenant, name, &row,
				   NULL) != CF_OK)
		return 0;
	return row.version;
}

void api_reply_stale(srv_req *r, const char *tenant, const char *name,
		     int64_t version, const char *then)
{
	int64_t latest = api_latest_version(r, tenant, name);
	char msg[512];

	snprintf(msg, sizeof(msg), "version %lld of %s is not above the "
		 "latest stored version, %lld; %s as version %lld",
		 (long long)version, name, (long long)latest, then,
		 (long long)latest + 1);
	api_reply(r, 409, json_pack("{s:{s:s,s:s},s:I}", "error",
		"code", "conflict", "message", msg,
		"latest", (json_int_t)latest));
}

X509 *api_proven_issuer(const cf_trust *trust, X509 *cert,
			STACK_OF(X509) *chain)
{
	X509_NAME *issuer = X509_get_issuer_name(cert);

	for (int i = 0; i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);
		cf_error err = { 0 };

		if (X509_NAME_cmp(X509_get_subject_name(c), issuer) != 0 ||
		    cf_cert_kind(c) != CF_KIND_ENROLLER ||
		    X509_check_issued(c, cert) != X509_V_OK)
			continue;
		if (X509_verify(cert, X509_get0_pubkey(c)) == 1 &&
		    cf_trust_verify(trust, c, NULL, "an enroller certificate "
				    "sent along", &err) == CF_OK)
			return c;
		ERR_clear_error();
	}
	return NULL;
}

/* ---- the tenant's CRL (api_envelopes.c, api_status.c) ---------------- */

/* The tenant's CRL, parsed (NULL if it has none); -1 answered. */
int api_tenant_crl(srv_req *r, const char *tenant, X509_CRL **out)
{
	cf_tenant t = {0};
	cf_error err;
	int ok = 0;

	*out = NULL;
	if (cf_store_tenant_get(srv_req_store(r), tenant, &t, &err) != CF_OK) {
		api_fail(r, &err, "reading the tenant's CRL");
		return -1;
	}
	if (t.crl_pem != NULL &&
	    cf_crl_parse((const unsigned char *)t.crl_pem, strlen(t.crl_pem),
			 "the stored CRL", out, &err) != CF_OK) {
		api_fail(r, &err, "parsing the tenant's stored CRL");
		ok = -1;
	}
	cf_tenant_clear(&t);
	return ok;
}

/* Is the certificate with this serial (hex) on the CRL? */
int api_serial_revoked(X509_CRL *crl, const char *serial_hex)
{
	BIGNUM *bn = NULL;
	ASN1_INTEGER *serial = NULL;
	X509_REVOKED *entry;
	int revoked;

	if (crl == NULL)
		return 0;
	/* Unreadable serial: treat as revoked, never hand it envelopes. */
	if (BN_hex2bn(&bn, serial_hex) == 0 ||
	    (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		revoked = 1;
	else
		revoked = X509_CRL_get0_by_serial(crl, &entry, serial) == 1;
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	return revoked;
}

/* ---- cluster membership (docs/API.md, "Clusters") ----------------------- */

/* "FP PROOF": 64 lower-case hex, one space, 1..max base64 characters. */
static int cluster_header_parse(const char *v, char fp[65], const char **proof)
{
	size_t len = strlen(v), plen;

	if (len < 66 || len > 65 + CF_CLUSTER_PROOF_MAX || v[64] != ' ')
		return -1;
	memcpy(fp, v, 64);
	fp[64] = '\0';
	if (!api_is_hex(fp, 64))
		return -1;
	*proof = v + 65;
	plen = strlen(*proof);
	if (strspn(*proof, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		   "0123456789+/=") != plen)
		return -1;
	return 0;
}

/*
 * The cluster certificate of row, verified as the tenant's root and CRL
 * say (chain, validity, revocation of it and of its issuing enroller,
 * the enroller's right to issue it), with that enroller taken from the
 * directory; -1 answered.
 */
static int cluster_cert_verify(srv_req *r, const srv_identity *id,
			       const cf_cert_row *row, X509 **out)
{
	cf_store *st = srv_req_store(r);
	cf_cert_row issuer;
	STACK_OF(X509) *chain = NULL;
	X509 *cert = NULL, *icert = NULL;
	cf_error err = { 0 };
	cf_status rc;
	int ok = -1;

	memset(&issuer, 0, sizeof(issuer));
	*out = NULL;
	if (row->pem == NULL ||
	    cf_cert_parse((const unsigned char *)row->pem, strlen(row->pem),
			  "a stored cluster certificate", &cert, NULL,
			  &err) != CF_OK) {
		api_fail(r, &err, "reading a stored cluster certificate");
		goto out;
	}
	if ((chain = sk_X509_new_null()) == NULL) {
		api_reply(r, 500, NULL);
		goto out;
	}
	if (row->issuer_fp[0] != '\0' && strcmp(row->issuer_fp, id->tenant) != 0) {
		rc = cf_store_cert_get(st, id->tenant, row->issuer_fp, &issuer,
				       &err);
		if (rc != CF_OK && rc != CF_ERR_NOT_FOUND) {
			api_fail(r, &err, "looking up a cluster's enroller");
			goto out;
		}
		/* Not found: the verification below says it does not chain. */
		if (rc == CF_OK && issuer.pem != NULL &&
		    cf_cert_parse((const unsigned char *)issuer.pem,
				  strlen(issuer.pem), "a stored enroller "
				  "certificate", &icert, NULL, &err) == CF_OK) {
			if (sk_X509_push(chain, icert) <= 0) {
				api_reply(r, 500, NULL);
				goto out;
			}
			icert = NULL;
		}
	}
	if (id->trust == NULL) {
		srv_reply_error(r, 403, "forbidden", "this organisation's CRL "
			"cannot be used, so no cluster certificate can be "
			"checked; push a valid CRL (coffer crl push)");
		goto out;
	}
	rc = cf_trust_verify(id->trust, cert, chain, "the cluster certificate",
			     &err);
	if (rc == CF_ERR_NOMEM || rc == CF_ERR_CRYPTO || rc == CF_ERR_USAGE) {
		api_fail(r, &err, "verifying a cluster certificate");
		goto out;
	}
	if (rc != CF_OK) {
		srv_reply_error(r, 403, "forbidden", "cluster certificate %s "
			"(cluster \"%s\") named in Coffer-Cluster does not pass: "
			"%s; a member must use the cluster's current key "
			"(coffer cluster rotate %s makes a new one)", row->fp,
			row->cluster, err.msg, row->cluster);
		goto out;
	}
	if (cf_cluster_check_cert(cert, NULL, row->cluster, &err) != CF_OK) {
		srv_reply_error(r, 403, "forbidden", "certificate %s named in "
			"Coffer-Cluster is not a usable cluster certificate: %s",
			row->fp, err.msg);
		goto out;
	}
	*out = cert;
	cert = NULL;
	ok = 0;
out:
	X509_free(cert);
	X509_free(icert);
	sk_X509_pop_free(chain, X509_free);
	cf_cert_row_clear(&issuer);
	return ok;
}

int api_cluster_member(srv_req *r, const srv_identity *id, cf_cert_row *row,
		       X509 **cert_out)
{
	const char *value, *proof = NULL;
	char fp[65];
	X509 *cert = NULL;
	cf_error err = { 0 };
	cf_status rc;
	int count = 0, ok = -1;

	memset(row, 0, sizeof(*row));
	if (cert_out != NULL)
		*cert_out = NULL;
	value = srv_req_header(r, API_CLUSTER_HEADER, &count);
	if (value == NULL)
		return 0;
	if (count > 1) {
		srv_reply_error(r, 400, "bad_request", "the " API_CLUSTER_HEADER
			" header came %d times; send it once", count);
		return -1;
	}
	if (cluster_header_parse(value, fp, &proof) != 0) {
		srv_reply_error(r, 400, "bad_request", "the " API_CLUSTER_HEADER
			" header must be the cluster certificate's fingerprint "
			"(64 lower-case hex characters), one space, and the "
			"membership proof (base64, at most %d characters)",
			CF_CLUSTER_PROOF_MAX);
		return -1;
	}
	rc = cf_store_cert_get(srv_req_store(r), id->tenant, fp, row, &err);
	if (rc == CF_ERR_NOT_FOUND) {
		srv_reply_error(r, 403, "forbidden", "cluster certificate %s "
			"named in " API_CLUSTER_HEADER " is not in this "
			"organisation's directory; register it (POST /v1/certs, "
			"coffer cluster create does)", fp);
		goto out;
	}
	if (rc != CF_OK) {
		api_fail(r, &err, "looking up a cluster certificate");
		goto out;
	}
	if (strcmp(row->kind, "cluster") != 0) {
		srv_reply_error(r, 403, "forbidden", "certificate %s named in "
			API_CLUSTER_HEADER " is the %s certificate of \"%s\", "
			"not a cluster certificate", fp, row->kind, row->name);
		goto out;
	}
	if (cluster_cert_verify(r, id, row, &cert) != 0)
		goto out;
	rc = cf_cluster_proof_check(cert, id->tenant, id->fp, proof, &err);
	if (rc == CF_ERR_SIGNATURE || rc == CF_ERR_PARSE) {
		srv_reply_error(r, 403, "forbidden", "the " API_CLUSTER_HEADER
			" proof does not verify for cluster certificate %s: the "
			"caller (%s) does not hold the key of cluster \"%s\"; "
			"the proof signs this organisation, the cluster "
			"certificate's and the caller's own fingerprint", fp,
			id->fp, row->cluster);
		goto out;
	}
	if (rc != CF_OK) {
		api_fail(r, &err, "checking a cluster membership proof");
		goto out;
	}
	if (cert_out != NULL) {
		*cert_out = cert;
		cert = NULL;
	}
	ok = 1;
out:
	X509_free(cert);
	if (ok != 1)
		cf_cert_row_clear(row);
	return ok;
}
