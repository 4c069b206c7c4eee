/*
 * recipients.c - `--to agent:NAME|group:G|fp:FP` resolved through the
 * server's directory into verified certificates, for everything that
 * seals to agents (`put`, `cmd run`).
 *
 * The server's answers are trusted for nothing: each certificate must be
 * the one asked for (name, group, fingerprint, kind agent) and verify
 * against COFFER_ROOT and the root-signed CRL, else it is refused by name
 * (a group's revoked or expired members are skipped, with a note).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "policy.h"
#include "recipients.h"

#define MAX_RECIPIENTS 100000
#define CERT_PAGE 500

int cli_rcpts_have(const cli_rcpts *r, const char *fp)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i].fp, fp) == 0)
			return 1;
	return 0;
}

cf_status cli_rcpts_add(cli_rcpts *r, X509 *cert, STACK_OF(X509) *chain,
			  const char *fp, cf_error *err)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		cli_rcpt *grown = OPENSSL_realloc(r->v, cap * sizeof(*grown));

		if (grown == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		r->v = grown;
		r->cap = cap;
	}
	if (r->n >= MAX_RECIPIENTS)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"more than %d recipients", MAX_RECIPIENTS);
	X509_up_ref(cert);
	r->v[r->n].cert = cert;
	r->v[r->n].chain = chain ? X509_chain_up_ref(chain) : NULL;
	snprintf(r->v[r->n].fp, sizeof(r->v[r->n].fp), "%s", fp);
	cf_cert_cn(cert, r->v[r->n].name, sizeof(r->v[r->n].name));
	r->n++;
	return CF_OK;
}

void cli_rcpts_free(cli_rcpts *r)
{
	for (size_t i = 0; i < r->n; i++) {
		X509_free(r->v[i].cert);
		sk_X509_pop_free(r->v[i].chain, X509_free);
	}
	OPENSSL_free(r->v);
}

/* 1 if the certificate's groups extension lists group exactly. */
static int cert_in_group(X509 *cert, const char *group)
{
	char *groups = NULL, *save = NULL, *g;
	cf_error quiet = { 0 };
	int found = 0;

	if (cf_cert_ext_text(cert, cf_nid_groups(), &groups, &quiet) != CF_OK ||
	    groups == NULL)
		return 0;
	for (g = strtok_r(groups, ",", &save); g != NULL && !found;
	     g = strtok_r(NULL, ",", &save))
		found = strcmp(g, group) == 0;
	OPENSSL_free(groups);
	return found;
}

/*
 * Is this the certificate `--to spec` asked for?  The server's directory
 * chooses what to answer, so a hostile server could hand back another
 * valid certificate of the same organisation (an agent it controls, an
 * operator): the answer must match the question itself.
 */
static cf_status check_match(X509 *cert, const char *spec, const char *fp,
			     const char *cn, const char *what, cf_error *err)
{
	const char *val = strchr(spec, ':') + 1;

	if (strncmp(spec, "fp:", 3) == 0 ? strcmp(fp, val) != 0 :
	    cf_cert_kind(cert) != CF_KIND_AGENT)
		return cf_error_set(err, CF_ERR_UNTRUSTED, "the server answered "
			"--to %.100s with %s, which is %s; not sealing to it "
			"(the server's directory is wrong or hostile)", spec, what,
			strncmp(spec, "fp:", 3) == 0 ? "another fingerprint" :
			"not an agent certificate");
	if ((strncmp(spec, "agent:", 6) == 0 && strcmp(cn, val) != 0) ||
	    (strncmp(spec, "group:", 6) == 0 && !cert_in_group(cert, val)))
		return cf_error_set(err, CF_ERR_UNTRUSTED, "the server answered "
			"--to %.100s with %s, whose certificate %s; not sealing "
			"to it (the server's directory is wrong or hostile)", spec,
			what, spec[0] == 'a' ? "has another name" :
			"is not in that group");
	return CF_OK;
}

/*
 * Adds the certificates of one directory answer entry, verified.  With
 * lenient (a group), a revoked or expired member is skipped with a note;
 * otherwise any failure refuses the whole put.
 */
static cf_status take_entry(cli_client *c, const json_t *e, const char *spec,
			    int lenient, cli_rcpts *r, size_t *added,
			    cf_error *err)
{
	const cf_trust *trust = NULL;
	const char *pem = cli_json_str(e, "cert");
	X509 *cert = NULL;
	STACK_OF(X509) *chain = sk_X509_new_null();
	json_t *x;
	size_t i;
	char fp[65], cn[CF_CN_MAX_BYTES + 1], what[CF_CN_MAX_BYTES + 128];
	char pcn[CF_CN_MAX_BYTES + 1];
	cf_status rc;

	if (chain == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = cli_client_trust(c, &trust, err);
	if (rc == CF_OK)
		rc = cf_cert_parse((const unsigned char *)pem, strlen(pem),
				   "a certificate from the server", &cert, NULL, err);
	json_array_foreach(json_object_get(e, "chain"), i, x) {
		X509 *ca = NULL;
		const char *text = json_string_value(x);

		if (rc != CF_OK || text == NULL)
			break;
		rc = cf_cert_parse((const unsigned char *)text, strlen(text),
				   "a chain certificate from the server", &ca, NULL, err);
		if (rc == CF_OK)
			sk_X509_push(chain, ca);
	}
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(cert, fp, err);
	if (rc != CF_OK)
		goto out;
	cf_cert_cn(cert, cn, sizeof(cn));
	/* what is for messages; the CN is the server's word until verified. */
	snprintf(what, sizeof(what), "recipient \"%s\" (%s, %.16s...)",
		 cli_printable(cn, pcn, sizeof(pcn)), spec, fp);
	/* Before the duplicate check: an answer of our own certificate to
	 * "agent:db-1" must not pass as a harmless duplicate. */
	rc = check_match(cert, spec, fp, cn, what, err);
	if (rc != CF_OK || cli_rcpts_have(r, fp))
		goto out;
	if (lenient && X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
		fprintf(stderr, "coffer: skipping %s: expired\n", what);
		goto out;
	}
	rc = cf_trust_verify(trust, cert, chain, what, err);
	if (rc == CF_ERR_REVOKED && lenient) {
		fprintf(stderr, "coffer: skipping %s: revoked\n", what);
		rc = CF_OK;
		goto out;
	}
	if (rc == CF_OK && !cf_key_is_p256(X509_get0_pubkey(cert)))
		rc = cf_error_set(err, CF_ERR_UNTRUSTED, "%s has no P-256 key", what);
	if (rc == CF_OK)
		rc = cli_rcpts_add(r, cert, chain, fp, err);
	if (rc == CF_OK)
		(*added)++;
out:
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}

/* Resolves one --to through GET /v1/certs, page by page. */
cf_status cli_resolve(cli_client *c, const char *spec, cli_rcpts *r,
			 cf_error *err)
{
	const char *colon = strchr(spec, ':');
	char query[512], after[65] = "", *val = NULL;
	json_t *resp = NULL, *e;
	size_t added = 0, listed = 0, i;
	int lenient = 0;
	cf_status rc = CF_OK;

	if (colon == NULL || colon[1] == '\0')
		return cf_error_set(err, CF_ERR_USAGE, "--to \"%.100s\": say "
			"agent:NAME, group:G or fp:FP", spec);
	val = cli_client_escape(colon + 1);
	if (val == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (strncmp(spec, "agent:", 6) == 0) {
		snprintf(query, sizeof(query), "kind=agent&name=%s", val);
	} else if (strncmp(spec, "group:", 6) == 0) {
		rc = cf_name_check("group name", colon + 1, err);
		if (rc != CF_OK) {
			rc = cf_error_set(err, CF_ERR_USAGE, "%s", err->msg);
			goto out;
		}
		snprintf(query, sizeof(query), "kind=agent&group=%s", val);
		lenient = 1;
	} else if (strncmp(spec, "fp:", 3) == 0) {
		if (strlen(colon + 1) != 64 || strspn(colon + 1,
		    "0123456789abcdef") != 64) {
			rc = cf_error_set(err, CF_ERR_USAGE, "--to %.100s: a "
				"fingerprint is 64 lower-case hex characters", spec);
			goto out;
		}
		snprintf(query, sizeof(query), "fp=%s", val);
	} else {
		rc = cf_error_set(err, CF_ERR_USAGE, "--to \"%.100s\": say "
			"agent:NAME, group:G or fp:FP", spec);
		goto out;
	}
	for (;;) {
		char path[700];

		snprintf(path, sizeof(path), "/v1/certs?%s&limit=%d%s%s", query,
			 CERT_PAGE, after[0] ? "&after=" : "", after);
		json_decref(resp);
		resp = NULL;
		rc = cli_client_call(c, "GET", path, NULL, &resp, err);
		if (rc != CF_OK)
			goto out;
		json_array_foreach(json_object_get(resp, "certs"), i, e) {
			listed++;
			rc = take_entry(c, e, spec, lenient, r, &added, err);
			if (rc != CF_OK)
				goto out;
			/* The total is not known before the last page. */
			if (listed % 100 == 0 && isatty(STDERR_FILENO))
				fprintf(stderr, "\rverified %zu certificates", listed);
		}
		if (!cli_next_cursor(resp, after, sizeof(after)))
			break;
	}
	if (listed >= 100 && isatty(STDERR_FILENO))
		fprintf(stderr, "\rverified %zu certificates\n", listed);
	/* added == 0 otherwise: duplicates, or a group's skipped members. */
	if (listed == 0)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "--to %.200s: the server "
			"knows no such certificate", spec);
out:
	free(val);
	json_decref(resp);
	return rc;
}

