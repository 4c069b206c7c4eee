/*
 * recipients.c - `--to agent:NAME|group:G|cluster:C|fp:FP` resolved
 * through the server's directory into verified certificates, for
 * everything that seals to agents (`put`, `cmd run`).  A cluster is its
 * newest valid certificate: the key its members hold now
 * (docs/CLUSTERS.md).
 *
 * The server's answers are trusted for nothing: each certificate must be
 * the one asked for (name, group, fingerprint, kind agent) and verify
 * against COFFER_ROOT and the root-signed CRL, else it is refused by name
 * (a group's revoked or expired members are skipped, with a note).
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cluster.h"
#include "policy.h"
#include "recipients.h"
#include "sealing.h"

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
	r->v[r->n].unusable = 0;
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

/* 1 if the certificate is a cluster certificate named cluster. */
static int cert_is_cluster(X509 *cert, const char *cluster)
{
	cf_error quiet = { 0 };

	return cf_cluster_check_cert(cert, NULL, cluster, &quiet) == CF_OK;
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

	int cluster = strncmp(spec, "cluster:", 8) == 0;

	if (cluster ? !cert_is_cluster(cert, val) || strcmp(cn, val) != 0 :
	    strncmp(spec, "fp:", 3) == 0 ? strcmp(fp, val) != 0 :
	    cf_cert_kind(cert) != CF_KIND_AGENT)
		return cf_error_set(err, CF_ERR_UNTRUSTED, "the server answered "
			"--to %.100s with %s, which is %s; not sealing to it "
			"(the server's directory is wrong or hostile)", spec, what,
			cluster ? "not that cluster's certificate" :
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
 * One directory answer entry, checked (by a worker thread): everything
 * that costs (parsing, the fingerprint, the match, the verification) is
 * done here in parallel; what depends on the order of the entries (the
 * duplicates, the notes, the first refusal) is done afterwards, in order,
 * by use_entry.  Read-only on the entry and on the trust.
 */
struct checked {
	const char *pem;          /* the entry's "cert" */
	const json_t *chain_json; /* its "chain" */
	X509 *cert;
	STACK_OF(X509) *chain;
	char fp[65];
	char cn[CF_CN_MAX_BYTES + 1];
	char what[CF_CN_MAX_BYTES + 128];
	cf_status rc;             /* parsing or matching: refuses the put */
	cf_status vrc;            /* the verification, P-256 included */
	int expired;
	cf_error err, verr;
};

static void check_entry(const cf_trust *trust, const char *spec,
			struct checked *k)
{
	const json_t *x;
	size_t i;
	char pcn[CF_CN_MAX_BYTES + 1];

	k->chain = sk_X509_new_null();
	if (k->chain == NULL) {
		k->rc = cf_error_set(&k->err, CF_ERR_NOMEM, "out of memory");
		return;
	}
	k->rc = cf_cert_parse((const unsigned char *)k->pem, strlen(k->pem),
			      "a certificate from the server", &k->cert, NULL,
			      &k->err);
	json_array_foreach(k->chain_json, i, x) {
		X509 *ca = NULL;
		const char *text = json_string_value(x);

		if (k->rc != CF_OK || text == NULL)
			break;
		k->rc = cf_cert_parse((const unsigned char *)text, strlen(text),
				      "a chain certificate from the server", &ca,
				      NULL, &k->err);
		if (k->rc == CF_OK && !sk_X509_push(k->chain, ca)) {
			X509_free(ca);
			k->rc = cf_error_set(&k->err, CF_ERR_NOMEM, "out of memory");
		}
	}
	if (k->rc == CF_OK)
		k->rc = cf_cert_fingerprint(k->cert, k->fp, &k->err);
	if (k->rc != CF_OK)
		return;
	cf_cert_cn(k->cert, k->cn, sizeof(k->cn));
	/* what is for messages; the CN is the server's word until verified. */
	snprintf(k->what, sizeof(k->what), "recipient \"%s\" (%s, %.16s...)",
		 cli_printable(k->cn, pcn, sizeof(pcn)), spec, k->fp);
	k->rc = check_match(k->cert, spec, k->fp, k->cn, k->what, &k->err);
	if (k->rc != CF_OK)
		return;
	k->expired = X509_cmp_current_time(X509_get0_notAfter(k->cert)) < 0;
	k->vrc = cf_trust_verify(trust, k->cert, k->chain, k->what, &k->verr);
	if (k->vrc == CF_OK && !cf_key_is_p256(X509_get0_pubkey(k->cert)))
		k->vrc = cf_error_set(&k->verr, CF_ERR_UNTRUSTED,
				      "%s has no P-256 key", k->what);
}

static void checked_clear(struct checked *k)
{
	X509_free(k->cert);
	sk_X509_pop_free(k->chain, X509_free);
	memset(k, 0, sizeof(*k));
}

/*
 * The fingerprints already in r, for the duplicate check: open
 * addressing on the fingerprint's first 16 hex digits, indices into r->v
 * (which moves as it grows).  Without it a group of 10,000 costs 50
 * million comparisons.
 */
#define FPSET_FROM 64         /* entries of one answer before indexing r */

struct fpset {
	size_t *slot;             /* index + 1; 0 is empty */
	size_t cap;               /* a power of two */
};

static size_t fp_hash(const char *fp)
{
	return (size_t)strtoull((char[17]){ fp[0], fp[1], fp[2], fp[3], fp[4],
		fp[5], fp[6], fp[7], fp[8], fp[9], fp[10], fp[11], fp[12],
		fp[13], fp[14], fp[15], '\0' }, NULL, 16);
}

/* Is fp in r (through set)? */
static int fpset_has(const struct fpset *set, const cli_rcpts *r,
		     const char *fp)
{
	for (size_t h = fp_hash(fp) & (set->cap - 1); set->slot[h] != 0;
	     h = (h + 1) & (set->cap - 1))
		if (strcmp(r->v[set->slot[h] - 1].fp, fp) == 0)
			return 1;
	return 0;
}

/* Indexes r->v[from..r->n), growing the table to twice r->n at least. */
static cf_status fpset_sync(struct fpset *set, const cli_rcpts *r,
			    size_t *from, cf_error *err)
{
	if (set->cap < 2 * r->n + 2) {
		size_t cap = 1024;

		while (cap < 4 * r->n + 4)
			cap *= 2;
		free(set->slot);
		set->slot = calloc(cap, sizeof(*set->slot));
		if (set->slot == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		set->cap = cap;
		*from = 0;
	}
	for (; *from < r->n; (*from)++) {
		size_t h = fp_hash(r->v[*from].fp) & (set->cap - 1);

		while (set->slot[h] != 0)
			h = (h + 1) & (set->cap - 1);
		set->slot[h] = *from + 1;
	}
	return CF_OK;
}

/*
 * The checked entry k, in the answer's order.  With lenient (a group), a
 * revoked or expired member is skipped with a note; otherwise any
 * failure refuses the whole put.
 */
static cf_status use_entry(struct checked *k, int lenient, cli_rcpts *r,
			   struct fpset *set, size_t *indexed, size_t listed,
			   size_t *added, cf_error *err)
{
	cf_status rc = CF_OK;
	int dup;

	if (k->rc != CF_OK) {
		*err = k->err;
		return k->rc;
	}
	/*
	 * After the match: an answer of our own certificate to "agent:db-1"
	 * must not pass as a harmless duplicate.  A short answer (rotate
	 * resolves one fp:FP at a time into a long list) scans r; a long one
	 * indexes it once.
	 */
	if (listed <= FPSET_FROM) {
		dup = cli_rcpts_have(r, k->fp);
	} else {
		rc = fpset_sync(set, r, indexed, err);
		dup = rc == CF_OK && fpset_has(set, r, k->fp);
	}
	if (rc != CF_OK || dup)
		return rc;
	/* A cluster's: every certificate it had, marked, for the choice of
	 * the newest (newest_cluster). */
	if (lenient == 2 && (k->expired || k->vrc == CF_ERR_REVOKED)) {
		rc = cli_rcpts_add(r, k->cert, k->chain, k->fp, err);
		if (rc == CF_OK)
			r->v[r->n - 1].unusable = 1;
		return rc;
	}
	if (lenient && k->expired) {
		fprintf(stderr, "coffer: skipping %s: expired\n", k->what);
		return CF_OK;
	}
	if (k->vrc == CF_ERR_REVOKED && lenient) {
		fprintf(stderr, "coffer: skipping %s: revoked\n", k->what);
		return CF_OK;
	}
	if (k->vrc != CF_OK) {
		*err = k->verr;
		return k->vrc;
	}
	rc = cli_rcpts_add(r, k->cert, k->chain, k->fp, err);
	if (rc == CF_OK)
		(*added)++;
	return rc;
}

/* A page's entries checked on cli_threads() threads, started apart. */
struct page_job {
	const cf_trust *trust;
	const char *spec;
	struct checked *k;
	size_t n, stride, first;
};

static void *page_worker(void *arg)
{
	struct page_job *job = arg;

	for (size_t i = job->first; i < job->n; i += job->stride)
		check_entry(job->trust, job->spec, &job->k[i]);
	return NULL;
}

struct page {
	json_t *resp;             /* holds what k points into */
	struct checked *k;
	size_t n;
	struct page_job jobs[CLI_THREADS_MAX];
	pthread_t tids[CLI_THREADS_MAX];
	size_t started;           /* threads running; 0: checked inline */
};

/* Starts checking the entries of resp (taken); the threads run on. */
static cf_status page_start(struct page *pg, json_t *resp,
			    const cf_trust *trust, const char *spec,
			    cf_error *err)
{
	const json_t *certs = json_object_get(resp, "certs"), *e;
	size_t i, threads = cli_threads();

	memset(pg, 0, sizeof(*pg));
	pg->n = json_array_size(certs);
	if (pg->n > 0 && (pg->k = calloc(pg->n, sizeof(*pg->k))) == NULL) {
		pg->n = 0;
		/* resp stays the caller's on failure: it frees it. */
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	}
	pg->resp = resp;
	if (pg->n == 0)
		return CF_OK;
	json_array_foreach(certs, i, e) {
		pg->k[i].pem = cli_json_str(e, "cert");
		pg->k[i].chain_json = json_object_get(e, "chain");
	}
	if (threads > pg->n)
		threads = pg->n;
	for (size_t t = 0; t < threads; t++)
		pg->jobs[t] = (struct page_job){ trust, spec, pg->k, pg->n,
						 threads, t };
	for (size_t t = 0; threads > 1 && t < threads; t++) {
		if (pthread_create(&pg->tids[t], NULL, page_worker,
				   &pg->jobs[t]) != 0)
			break;
		pg->started++;
	}
	/* One thread, or threads refused: whatever is left, here. */
	for (size_t t = pg->started; t < threads; t++)
		page_worker(&pg->jobs[t]);
	return CF_OK;
}

static void page_join(struct page *pg)
{
	for (size_t t = 0; t < pg->started; t++)
		pthread_join(pg->tids[t], NULL);
	pg->started = 0;
}

static void page_free(struct page *pg)
{
	page_join(pg);
	for (size_t i = 0; pg->k != NULL && i < pg->n; i++)
		checked_clear(&pg->k[i]);
	free(pg->k);
	json_decref(pg->resp);
	memset(pg, 0, sizeof(*pg));
}

/*
 * The cluster's key now: of its certificates (found), the one that became
 * valid last (a rotation's), added to r unless it is there.  If that one
 * is revoked or expired the cluster has no usable key: an older
 * certificate is never taken instead (no member holds its key any more).
 */
static cf_status newest_cluster(const cli_rcpts *found, const char *spec,
				cli_rcpts *r, cf_error *err)
{
	const cli_rcpt *best = NULL;

	for (size_t i = 0; i < found->n; i++)
		if (best == NULL ||
		    ASN1_TIME_compare(X509_get0_notBefore(found->v[i].cert),
				      X509_get0_notBefore(best->cert)) >= 0)
			best = &found->v[i];
	if (best == NULL || best->unusable)
		return cf_error_set(err, CF_ERR_REVOKED, "--to %.200s: the "
			"cluster's newest certificate%s%.64s is revoked or "
			"expired; make a new key with 'coffer cluster rotate'",
			spec, best ? " " : "", best ? best->fp : "");
	if (cli_rcpts_have(r, best->fp))
		return CF_OK;
	return cli_rcpts_add(r, best->cert, best->chain, best->fp, err);
}

/*
 * Resolves one --to through GET /v1/certs, page by page: while one
 * page's certificates are checked on cli_threads() threads, the next
 * page is fetched; then the checked page is taken in order.
 */
cf_status cli_resolve(cli_client *c, const char *spec, cli_rcpts *r,
			 cf_error *err)
{
	const char *colon = strchr(spec, ':');
	const cf_trust *trust = NULL;
	char query[512], after[65] = "", *val = NULL;
	json_t *resp = NULL;
	struct page cur = { 0 };
	struct fpset set = { 0 };
	size_t added = 0, listed = 0, indexed = 0;
	int lenient = 0, more = 1, cluster = 0;
	cli_rcpts found = { 0 }, *dst = r;
	cf_error ferr = { 0 };
	cf_status rc = CF_OK, frc;

	if (colon == NULL || colon[1] == '\0')
		return cf_error_set(err, CF_ERR_USAGE, "--to \"%.100s\": say "
			"agent:NAME, group:G, cluster:C or fp:FP", spec);
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
	} else if (strncmp(spec, "cluster:", 8) == 0) {
		rc = cf_name_check("cluster name", colon + 1, err);
		if (rc != CF_OK) {
			rc = cf_error_set(err, CF_ERR_USAGE, "%s", err->msg);
			goto out;
		}
		/* Every certificate the cluster had; the newest valid one is
		 * chosen below. */
		snprintf(query, sizeof(query), "kind=cluster&name=%s", val);
		lenient = 2;
		cluster = 1;
		dst = &found;
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
			"agent:NAME, group:G, cluster:C or fp:FP", spec);
		goto out;
	}
	rc = cli_client_trust(c, &trust, err);
	while (rc == CF_OK && more) {
		char path[700];

		snprintf(path, sizeof(path), "/v1/certs?%s&limit=%d%s%s", query,
			 CERT_PAGE, after[0] ? "&after=" : "", after);
		resp = NULL;
		frc = cli_client_call(c, "GET", path, NULL, &resp, &ferr);
		/* The page before is checked meanwhile; take it now, in order. */
		page_join(&cur);
		for (size_t i = 0; rc == CF_OK && i < cur.n; i++) {
			listed++;
			rc = use_entry(&cur.k[i], lenient, dst, &set, &indexed,
				       listed, &added, err);
			/* The total is not known before the last page. */
			if (listed % 100 == 0 && isatty(STDERR_FILENO))
				fprintf(stderr, "\rverified %zu certificates", listed);
		}
		page_free(&cur);
		if (rc == CF_OK && frc != CF_OK) {
			*err = ferr;
			rc = frc;
		}
		if (rc != CF_OK) {
			json_decref(resp);
			break;
		}
		more = cli_next_cursor(resp, after, sizeof(after));
		rc = page_start(&cur, resp, trust, spec, err);
		if (rc != CF_OK)
			json_decref(resp);
	}
	/* The last page. */
	page_join(&cur);
	for (size_t i = 0; rc == CF_OK && i < cur.n; i++) {
		listed++;
		rc = use_entry(&cur.k[i], lenient, dst, &set, &indexed, listed,
			       &added, err);
	}
	if (rc != CF_OK)
		goto out;
	if (listed >= 100 && isatty(STDERR_FILENO))
		fprintf(stderr, "\rverified %zu certificates\n", listed);
	/* added == 0 otherwise: duplicates, or a group's skipped members. */
	if (listed == 0)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "--to %.200s: the server "
			"knows no such certificate", spec);
	if (rc == CF_OK && cluster)
		rc = newest_cluster(&found, spec, r, err);
out:
	cli_rcpts_free(&found);
	page_free(&cur);
	free(set.slot);
	free(val);
	return rc;
}
