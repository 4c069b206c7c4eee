/*
 * feed.c - bench/feed: what one agent's feed query costs in a tenant of
 * 100 agents and in one of 100,000 (issue 4, section 4: "an agent's feed
 * costs the same with 100 or 100,000 agents").
 *
 * For each tenant size M (default 100 and 100,000): a fresh SQLite store
 * in a temp directory, one tenant, S secrets (default 10) each put as one
 * version to all M agents.  The envelopes are placeholder bytes of a fixed
 * size B (default 256; the feed neither parses nor decrypts them, and the
 * payload copied per query is the same for every M).  Untimed.  B is
 * small by default so that the largest tenant's database stays near the
 * page cache's reach; with real 1.4 KiB envelopes the 100,000-agent
 * database holds 1.4 GB and the full query's cost becomes that of the
 * disk and cache, not of the index (say --bytes 1400 to see it).
 *
 * What is timed, for Q queries (default 2,000) of agents picked at random
 * with a fixed seed:
 *   full:   cf_store_feed(since = 0): the agent's S newest envelopes, as
 *           an agent that starts from nothing asks;
 *   empty:  cf_store_feed(since = the agent's cursor): nothing new, the
 *           query every long-poll wake-up and every idle poll makes.
 * Each is reported in microseconds per query (median of R repetitions of
 * Q queries), and the ratio of the largest tenant to the smallest.  The
 * baseline is the smallest tenant, measured in the same run.  A ratio
 * near 1 is the claim; a feed that scanned the tenant would give ~1000.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

static size_t envelope_bytes = 256;

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

static void agent_fp(size_t i, char fp[65])
{
	/* 64 hex characters, distinct per agent, spread over the key space. */
	snprintf(fp, 65, "%016zx%016zx%016zx%016zx", i * 2654435761u, i,
		 ~i, i ^ 0x5bd1e995u);
}

static const char tenant_id[65] =
	"d7ae8334c9d0bdf30031e8bd7d1792502b3bb234f15ee781898a2b456a5bf160";

/* Fills a store with one tenant, m agents, s secrets each to all agents. */
static int populate(cf_store *st, size_t m, size_t s)
{
	cf_error err = { 0 };
	cf_audit_entry audit = { 0 };
	cf_envelope_in *envs = calloc(m, sizeof(*envs));
	unsigned char *blob = malloc(envelope_bytes);
	int rc = -1;

	if (envs == NULL || blob == NULL)
		goto out;
	memset(blob, 0x30, envelope_bytes);
	snprintf(audit.action, sizeof(audit.action), "tenant.add");
	if (cf_store_tenant_add(st, tenant_id,
				"-----BEGIN CERTIFICATE-----\nbench\n"
				"-----END CERTIFICATE-----\n", &audit, &err) != CF_OK)
		goto fail;
	for (size_t i = 0; i < m; i++) {
		agent_fp(i, envs[i].recipient);
		envs[i].der = blob;
		envs[i].len = envelope_bytes;
	}
	for (size_t k = 0; k < s; k++) {
		char name[64];

		snprintf(name, sizeof(name), "bench/secret-%zu", k);
		memset(&audit, 0, sizeof(audit));
		snprintf(audit.action, sizeof(audit.action), "secret.put");
		if (cf_store_secret_put(st, tenant_id, name, 1, tenant_id,
					(int64_t)time(NULL), envs, m, &audit,
					NULL, &err) != CF_OK)
			goto fail;
	}
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "feed: populating the store failed: %s\n", err.msg);
out:
	free(envs);
	free(blob);
	return rc;
}

/* Median µs per query of reps runs of q queries; since < 0: the cursor. */
static int measure(cf_store *st, size_t m, size_t q, size_t reps, int empty,
		   double *median_us)
{
	double *runs = calloc(reps, sizeof(double));
	cf_error err = { 0 };
	int rc = -1;

	if (runs == NULL)
		return -1;
	for (size_t r = 0; r < reps; r++) {
		unsigned seed = 12345u + (unsigned)r;
		double t0 = now_s();

		for (size_t i = 0; i < q; i++) {
			char fp[65];
			cf_feed_item *items = NULL;
			size_t n = 0;
			int64_t cursor = 0, since = 0;

			agent_fp((size_t)rand_r(&seed) % m, fp);
			if (empty) {
				/* find the agent's cursor first (untimed) */
				double t1 = now_s();

				if (cf_store_feed(st, tenant_id, fp, 0, 0, &items,
						  &n, &since, &err) != CF_OK)
					goto fail;
				cf_feed_items_free(items, n);
				items = NULL;
				t0 += now_s() - t1;
			}
			if (cf_store_feed(st, tenant_id, fp, since, 0, &items, &n,
					  &cursor, &err) != CF_OK)
				goto fail;
			if ((empty && n != 0) || (!empty && n == 0)) {
				fprintf(stderr, "feed: agent %s got %zu items\n", fp, n);
				cf_feed_items_free(items, n);
				goto out;
			}
			cf_feed_items_free(items, n);
		}
		runs[r] = (now_s() - t0) * 1e6 / (double)q;
	}
	qsort(runs, reps, sizeof(double), cmp_double);
	*median_us = runs[reps / 2];
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "feed: query failed: %s\n", err.msg);
out:
	free(runs);
	return rc;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: feed [--agents M,M...] [--secrets S] [--bytes B] [--queries Q] [--reps R] [--quick]\n"
		"\n"
		"Measures one agent's feed query (cf_store_feed on SQLite) in tenants\n"
		"of M agents (default 100,100000), each with S secrets (default 10)\n"
		"addressed to every agent; Q random agents per repetition (default\n"
		"2000), median of R repetitions (default 5).  Prints microseconds per\n"
		"query and the ratio of each tenant size to the first.  --quick: 100\n"
		"and 10000 agents, 3 secrets, 500 queries, 3 repetitions.  --bytes:\n"
		"the placeholder envelope size (default 256; the database of the\n"
		"largest tenant holds M x S of them).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "agents", required_argument, NULL, 'a' },
		{ "secrets", required_argument, NULL, 's' },
		{ "queries", required_argument, NULL, 'q' },
		{ "reps", required_argument, NULL, 'r' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "quick", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	size_t sizes[8] = { 100, 100000 }, n_sizes = 2;
	size_t secrets = 10, queries = 2000, reps = 5;
	double base_full = 0, base_empty = 0;
	char dir[] = "/tmp/coffer-bench-feed-XXXXXX";
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': {
			char *p = optarg, *end;

			n_sizes = 0;
			while (*p != '\0' && n_sizes < 8) {
				unsigned long long v = strtoull(p, &end, 10);

				if (end == p || v == 0 || v > 100000) {
					fprintf(stderr, "feed: --agents takes sizes 1..100000\n");
					return 2;
				}
				sizes[n_sizes++] = (size_t)v;
				p = *end == ',' ? end + 1 : end;
			}
			break;
		}
		case 's': secrets = strtoul(optarg, NULL, 10); break;
		case 'q': queries = strtoul(optarg, NULL, 10); break;
		case 'r': reps = strtoul(optarg, NULL, 10); break;
		case 'b':
			envelope_bytes = strtoul(optarg, NULL, 10);
			if (envelope_bytes == 0 || envelope_bytes > 1664344) {
				fprintf(stderr, "feed: --bytes takes 1..1664344\n");
				return 2;
			}
			break;
		case 'k':
			sizes[0] = 100, sizes[1] = 10000, n_sizes = 2;
			secrets = 3, queries = 500, reps = 3;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (secrets == 0 || queries == 0 || reps == 0 || n_sizes == 0) {
		usage(stderr);
		return 2;
	}
	if (mkdtemp(dir) == NULL) {
		perror("feed: mkdtemp");
		return 1;
	}
	printf("feed: one agent's feed query, SQLite store, %zu secrets per agent, "
	       "%zu-byte envelopes; %zu queries x %zu reps (median)\n",
	       secrets, (size_t)envelope_bytes, queries, reps);
	printf("%10s  %14s  %8s  %14s  %8s  %8s\n", "agents", "full us/query",
	       "ratio", "empty us/query", "ratio", "fill s");
	for (size_t i = 0; i < n_sizes; i++) {
		char path[128];
		cf_store *st = NULL;
		cf_error err = { 0 };
		double t0, fill, full, empty;

		snprintf(path, sizeof(path), "%s/feed-%zu.db", dir, sizes[i]);
		if (cf_store_open(path, CF_STORE_CREATE, &st, &err) != CF_OK) {
			fprintf(stderr, "feed: %s\n", err.msg);
			return 1;
		}
		t0 = now_s();
		if (populate(st, sizes[i], secrets) != 0)
			return 1;
		fill = now_s() - t0;
		if (measure(st, sizes[i], queries, reps, 0, &full) != 0 ||
		    measure(st, sizes[i], queries, reps, 1, &empty) != 0)
			return 1;
		if (i == 0)
			base_full = full, base_empty = empty;
		printf("%10zu  %14.1f  %8.2f  %14.1f  %8.2f  %8.1f\n", sizes[i],
		       full, full / base_full, empty, empty / base_empty, fill);
		fflush(stdout);
		cf_store_free(st);
		unlink(path);
		snprintf(path, sizeof(path), "%s/feed-%zu.db-wal", dir, sizes[i]);
		unlink(path);
		snprintf(path, sizeof(path), "%s/feed-%zu.db-shm", dir, sizes[i]);
		unlink(path);
	}
	rmdir(dir);
	return 0;
}
