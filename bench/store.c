/*
 * store.c - bench/store: the store's workload of a large tenant on one
 * backend (issue 8, section 4); bench/store.sh runs it on SQLite and on
 * PostgreSQL and compares.
 *
 * Set-up (untimed): a root CA made at run time (P-256), registered as
 * the tenant; N agent certificates (default 10,000) issued by it, each
 * a real X.509 certificate of kind agent in group "bench" (one key
 * shared by all: what is measured is the store, not key generation),
 * put in the directory through store.h (cf_store_cert_put), as the
 * server's first contact would.  With --out DIR, the root, the shared
 * key and the first A agents' certificates are written there, so that
 * bench/store.sh can run a server on the same database and send
 * loadgen's requests as those agents.  Nothing is checked in.
 *
 * Timed, R repetitions, median:
 *   put:    cf_store_secret_put of one version to all N recipients
 *           (placeholder envelopes of B bytes: the store neither parses
 *           nor decrypts them), as PUT /v1/secrets does;
 *   feed:   cf_store_feed(since = 0) by each of A agents (default
 *           1,000), one after the other: each gets its envelope of the
 *           latest version;
 *   empty:  cf_store_feed(since = its cursor) by the same agents:
 *           nothing new, what every long-poll wake-up asks.
 * Prints them, then one JSON line (prefix "json ") for bench/store.sh.
 */
#include <getopt.h>
#include <inttypes.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "pki.h"
#include "secmem.h"
#include "store.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int die(const char *what, const cf_error *err)
{
	fprintf(stderr, "store: %s: %s\n", what, err->msg);
	return 1;
}

static int write_pem_cert(const char *dir, const char *name, X509 *cert)
{
	char path[4096];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL)
		return 0;
	ok = PEM_write_X509(f, cert);
	return fclose(f) == 0 && ok;
}

/* The bench's own throwaway key, unencrypted, for loadgen. */
static int write_pem_key(const char *dir, EVP_PKEY *key)
{
	char path[4096];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/agent.key", dir);
	if ((f = fopen(path, "w")) == NULL)
		return 0;
	ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	return fclose(f) == 0 && ok;
}

static char *pem_of(X509 *cert, cf_error *err)
{
	unsigned char *pem = NULL;
	size_t len = 0;
	char *text;

	if (cf_cert_to_pem(cert, &pem, &len, err) != CF_OK)
		return NULL;
	if ((text = malloc(len + 1)) != NULL) {
		memcpy(text, pem, len);
		text[len] = '\0';
	}
	OPENSSL_free(pem);
	return text;
}

typedef struct agents {
	size_t n;
	char (*fp)[65];
} agents;

/* Root, tenant, n agents in the directory; the first out_n written. */
static int populate(cf_store *st, size_t n, const char *out, size_t out_n,
		    char tenant[65], agents *ag)
{
	static const char *const groups[] = { "bench" };
	cf_cert_spec spec = { .kind = CF_KIND_AGENT, .groups = groups,
			      .n_groups = 1 };
	EVP_PKEY *root_key = NULL, *key = NULL;
	X509 *root = NULL;
	cf_audit_entry audit = { 0 };
	cf_error err = { 0 };
	char *root_pem = NULL;
	int rc = 1;

	if ((ag->fp = calloc(n, sizeof(*ag->fp))) == NULL)
		return 1;
	ag->n = n;
	if (cf_key_generate(&root_key, &err) != CF_OK ||
	    cf_ca_create(root_key, "Bench", 30, &root, &err) != CF_OK ||
	    cf_cert_fingerprint(root, tenant, &err) != CF_OK ||
	    (root_pem = pem_of(root, &err)) == NULL ||
	    cf_key_generate(&key, &err) != CF_OK) {
		die("making the PKI", &err);
		goto out;
	}
	snprintf(audit.action, sizeof(audit.action), "tenant.add");
	snprintf(audit.subject, sizeof(audit.subject), "bench");
	if (cf_store_tenant_add(st, tenant, root_pem, &audit, &err) != CF_OK) {
		die("adding the tenant", &err);
		goto out;
	}
	if (out != NULL && (!write_pem_cert(out, "root.crt", root) ||
			    !write_pem_key(out, key))) {
		fprintf(stderr, "store: cannot write into %s\n", out);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		X509_REQ *csr = NULL;
		X509 *cert = NULL;
		cf_cert_row row;
		char cn[32];
		const ASN1_INTEGER *sn;
		BIGNUM *bn = NULL;
		char *hex = NULL;
		cf_status s;

		snprintf(cn, sizeof(cn), "agent-%zu", i);
		memset(&row, 0, sizeof(row));
		s = cf_csr_new(key, cn, &csr, &err);
		if (s == CF_OK)
			s = cf_cert_issue(root, root_key, csr, &spec, &cert, &err);
		if (s == CF_OK)
			s = cf_cert_fingerprint(cert, ag->fp[i], &err);
		if (s == CF_OK && (row.pem = pem_of(cert, &err)) == NULL)
			s = CF_ERR_NOMEM;
		if (s == CF_OK) {
			sn = X509_get0_serialNumber(cert);
			bn = ASN1_INTEGER_to_BN(sn, NULL);
			hex = bn != NULL ? BN_bn2hex(bn) : NULL;
			snprintf(row.tenant, sizeof(row.tenant), "%s", tenant);
			snprintf(row.fp, sizeof(row.fp), "%s", ag->fp[i]);
			snprintf(row.kind, sizeof(row.kind), "agent");
			snprintf(row.name, sizeof(row.name), "%s", cn);
			row.groups = (char *)"bench";
			snprintf(row.issuer_fp, sizeof(row.issuer_fp), "%s",
				 tenant);
			snprintf(row.serial, sizeof(row.serial), "%.79s",
				 hex != NULL ? hex : "00");
			row.not_after = (int64_t)time(NULL) + 30 * 86400;
			s = cf_store_cert_put(st, &row, NULL, &err);
		}
		if (s == CF_OK && out != NULL && i < out_n) {
			char name[48];

			snprintf(name, sizeof(name), "agent-%zu.crt", i);
			if (!write_pem_cert(out, name, cert))
				s = cf_error_set(&err, CF_ERR_IO,
						 "cannot write %s", name);
		}
		OPENSSL_free(hex);
		BN_free(bn);
		free(row.pem);
		X509_free(cert);
		X509_REQ_free(csr);
		if (s != CF_OK) {
			die("issuing the agents", &err);
			goto out;
		}
	}
	rc = 0;
out:
	free(root_pem);
	X509_free(root);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(key);
	return rc;
}

static int put_version(cf_store *st, const char *tenant, const agents *ag,
		       int64_t version, size_t bytes, double *ms,
		       int64_t *seq)
{
	cf_envelope_in *envs = calloc(ag->n, sizeof(*envs));
	unsigned char *blob = malloc(bytes);
	cf_audit_entry audit = { 0 };
	cf_error err = { 0 };
	double t0;
	int rc = 1;

	if (envs == NULL || blob == NULL)
		goto out;
	memset(blob, 0x30 + (int)(version % 10), bytes);
	for (size_t i = 0; i < ag->n; i++) {
		memcpy(envs[i].recipient, ag->fp[i], 65);
		envs[i].der = blob;
		envs[i].len = bytes;
	}
	snprintf(audit.action, sizeof(audit.action), "secret.put");
	snprintf(audit.object, sizeof(audit.object), "bench/key");
	t0 = now_s();
	if (cf_store_secret_put(st, tenant, "bench/key", version, tenant,
				(int64_t)time(NULL), envs, ag->n, &audit, seq,
				&err) != CF_OK) {
		die("put", &err);
		goto out;
	}
	*ms = (now_s() - t0) * 1e3;
	rc = 0;
out:
	free(envs);
	free(blob);
	return rc;
}

/* µs per feed of agents 0..a-1, from 0 (or from their cursor). */
static int feeds(cf_store *st, const char *tenant, const agents *ag, size_t a,
		 int64_t version, int empty, double *us)
{
	cf_error err = { 0 };
	double t = 0;

	for (size_t i = 0; i < a; i++) {
		cf_feed_item *items = NULL;
		size_t n = 0;
		int64_t since = 0, cursor = 0;
		double t0;

		if (empty) {
			if (cf_store_feed(st, tenant, ag->fp[i], 0, 0, &items,
					  &n, &since, &err) != CF_OK)
				return die("feed", &err);
			cf_feed_items_free(items, n);
		}
		t0 = now_s();
		if (cf_store_feed(st, tenant, ag->fp[i], since, 0, &items, &n,
				  &cursor, &err) != CF_OK)
			return die("feed", &err);
		t += now_s() - t0;
		if (empty ? n != 0 : n != 1 || items[0].version != version) {
			fprintf(stderr, "store: agent %zu got %zu items\n", i, n);
			cf_feed_items_free(items, n);
			return 1;
		}
		cf_feed_items_free(items, n);
	}
	*us = t * 1e6 / (double)a;
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: store --db URL [--recipients N] [--agents A] [--reps R]\n"
		"             [--bytes B] [--out DIR] [--quick]\n"
		"\n"
		"The store's workload on one database (a new, empty one: sqlite:PATH\n"
		"or postgresql://...; the libpq environment applies): N agents (default\n"
		"10000) issued and put in the directory, then R times (default 3) a\n"
		"put of one version to all N (B-byte envelopes, default 1400) and the\n"
		"feed of A agents (default 1000) from 0 and from their cursor.  --out:\n"
		"write root.crt, agent.key and agent-I.crt (I < A) there.  --quick:\n"
		"N 300, A 100, R 1.  Prints medians and a JSON line.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "recipients", required_argument, NULL, 'n' },
		{ "agents", required_argument, NULL, 'a' },
		{ "reps", required_argument, NULL, 'r' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "out", required_argument, NULL, 'o' },
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *url = NULL, *out = NULL;
	size_t n = 10000, a = 1000, reps = 3, bytes = 1400;
	double *put_ms = NULL, *feed_us = NULL, *empty_us = NULL, t0, fill;
	char tenant[65];
	agents ag = { 0 };
	cf_store *st = NULL;
	cf_error err = { 0 };
	int64_t seq = 0;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': url = optarg; break;
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'a': a = strtoul(optarg, NULL, 10); break;
		case 'r': reps = strtoul(optarg, NULL, 10); break;
		case 'b': bytes = strtoul(optarg, NULL, 10); break;
		case 'o': out = optarg; break;
		case 'q': n = 300, a = 100, reps = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (url == NULL || n == 0 || n > 100000 || a == 0 || a > n ||
	    reps == 0 || reps > 100 || bytes == 0 || bytes > 1664344) {
		usage(stderr);
		return 2;
	}
	if (cf_secmem_init(0, NULL, &err) != CF_OK || cf_pki_init(&err) != CF_OK)
		return die("initialising", &err);
	if (cf_store_open(url, CF_STORE_CREATE, &st, &err) != CF_OK)
		return die("opening the database", &err);
	put_ms = calloc(reps, sizeof(double));
	feed_us = calloc(reps, sizeof(double));
	empty_us = calloc(reps, sizeof(double));
	if (put_ms == NULL || feed_us == NULL || empty_us == NULL)
		goto out;
	t0 = now_s();
	if (populate(st, n, out, a, tenant, &ag) != 0)
		goto out;
	fill = now_s() - t0;
	for (size_t r = 0; r < reps; r++)
		if (put_version(st, tenant, &ag, (int64_t)r + 1, bytes,
				&put_ms[r], &seq) != 0 ||
		    feeds(st, tenant, &ag, a, (int64_t)r + 1, 0, &feed_us[r]) !=
			    0 ||
		    feeds(st, tenant, &ag, a, (int64_t)r + 1, 1,
			  &empty_us[r]) != 0)
			goto out;
	qsort(put_ms, reps, sizeof(double), cmp_double);
	qsort(feed_us, reps, sizeof(double), cmp_double);
	qsort(empty_us, reps, sizeof(double), cmp_double);
	printf("store: %s, %zu agents in the directory (%.1f s to issue and "
	       "register), %zu-byte envelopes, median of %zu\n",
	       strncmp(url, "postgres", 8) == 0 ? "PostgreSQL" : "SQLite", n,
	       fill, bytes, reps);
	printf("  put of one version to %zu recipients  %10.1f ms  (%.1f us "
	       "per recipient)\n", n, put_ms[reps / 2],
	       put_ms[reps / 2] * 1e3 / (double)n);
	printf("  feed from 0, %zu agents              %10.1f us/feed  "
	       "(%.0f feeds/s)\n", a, feed_us[reps / 2],
	       1e6 / feed_us[reps / 2]);
	printf("  feed from the cursor (nothing new)   %10.1f us/feed  "
	       "(%.0f feeds/s)\n", empty_us[reps / 2],
	       1e6 / empty_us[reps / 2]);
	printf("json {\"backend\":\"%s\",\"recipients\":%zu,\"agents\":%zu,"
	       "\"bytes\":%zu,\"reps\":%zu,\"fill_s\":%.3f,\"put_ms\":%.3f,"
	       "\"feed_us\":%.3f,\"empty_us\":%.3f,\"tenant\":\"%s\","
	       "\"cursor\":%" PRId64 "}\n",
	       strncmp(url, "postgres", 8) == 0 ? "postgresql" : "sqlite", n,
	       a, bytes, reps, fill, put_ms[reps / 2], feed_us[reps / 2],
	       empty_us[reps / 2], tenant, seq);
	rc = 0;
out:
	free(put_ms);
	free(feed_us);
	free(empty_us);
	free(ag.fp);
	cf_store_free(st);
	return rc;
}
