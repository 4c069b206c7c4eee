/*
 * test_store_notify.c - wake-ups across processes (store.h,
 * cf_store_notify_feeds and cf_store_listener): on SQLite they are
 * nothing (notify succeeds doing nothing, no listener opens); on a real
 * PostgreSQL (COFFER_TEST_STORE_URL, set by tests/pg/pgtest.sh) a wake
 * for 10,000 recipients arrives as 84 notifications of at most 120
 * fingerprints, each payload under PostgreSQL's 8000 bytes, in order; a
 * listener skips its own node's; malformed payloads are dropped; tenant
 * changes are announced when they commit and only then; and after
 * PostgreSQL restarts the listener says it lost the connection, comes
 * back with cf_store_listener_reconnect and hears again.
 */
#include "fixture.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "store.h"

#define NODE_US "aaaaaaaaaaaaaaaa"
#define NODE_THEM "bbbbbbbbbbbbbbbb"
#define TENANT "1111111111111111111111111111111111111111111111111111111111111111"
#define UPPER "ABCDEF1111111111111111111111111111111111111111111111111111111111"
#define MANY 10000

static const char *pg_url;

/* Fingerprint i: 64 hex digits. */
static void fp_of(size_t i, char out[65])
{
	snprintf(out, 65, "%064zx", i);
}

/* What the listener handed over. */
typedef struct heard {
	size_t wakes, fps, tenants, max_n;
	int in_order;          /* fingerprints arrived as 0, 1, 2, ... */
	int wrong_tenant;
} heard;

static void on_wake(void *ctx, const cf_store_wake *w)
{
	heard *h = ctx;
	char want[65];

	if (w->kind == CF_STORE_WAKE_TENANTS) {
		h->tenants++;
		return;
	}
	assert_int_equal(w->kind, CF_STORE_WAKE_FEEDS);
	h->wakes++;
	if (w->n > h->max_n)
		h->max_n = w->n;
	if (strcmp(w->tenant, TENANT) != 0)
		h->wrong_tenant = 1;
	for (size_t i = 0; i < w->n; i++) {
		fp_of(h->fps + i, want);
		if (strcmp(w->recipients[i], want) != 0)
			h->in_order = 0;
	}
	h->fps += w->n;
}

/* Reads l until done(h) or ms pass; the final read status. */
static cf_status listen_for(cf_store_listener *l, heard *h, int ms,
			    int (*done)(const heard *h), cf_error *err)
{
	struct timespec t0, t;
	cf_status rc = CF_OK;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd pfd = { cf_store_listener_fd(l), POLLIN, 0 };
		long spent;

		if (done != NULL && done(h))
			return CF_OK;
		clock_gettime(CLOCK_MONOTONIC, &t);
		spent = (t.tv_sec - t0.tv_sec) * 1000 +
			(t.tv_nsec - t0.tv_nsec) / 1000000;
		if (spent >= ms)
			return rc;
		if (pfd.fd < 0)
			return cf_error_set(err, CF_ERR_STORE, "listener down");
		if (poll(&pfd, 1, (int)(ms - spent)) > 0 &&
		    (rc = cf_store_listener_read(l, on_wake, h, err)) != CF_OK)
			return rc;
	}
}

static int got_all(const heard *h) { return h->fps >= MANY; }
static int got_one(const heard *h) { return h->fps >= 1; }
static int got_tenant(const heard *h) { return h->tenants >= 1; }

/* A plain libpq session (for NOTIFYs the store would never send). */
static PGconn *raw_conn(void)
{
	PGconn *c = PQconnectdb(pg_url);

	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("cannot connect to the test PostgreSQL: %s",
			 PQerrorMessage(c));
	return c;
}

static void raw_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType t = PQresultStatus(r);

	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

static void pg_ctl(const char *what)
{
	const char *ctl = getenv("COFFER_TEST_PG_CTL");
	int status = 0;
	pid_t pid;

	assert_non_null(ctl);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execlp("bash", "bash", ctl, "ctl", what, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("pgtest.sh ctl %s failed (status %d)", what, status);
}

static cf_audit_entry audit_of(const char *action)
{
	cf_audit_entry a;

	memset(&a, 0, sizeof(a));
	snprintf(a.action, sizeof(a.action), "%s", action);
	snprintf(a.actor, sizeof(a.actor), "test");
	return a;
}

static void sqlite_has_none(void **state)
{
	char dir[] = "/tmp/coffer-notify.XXXXXX", path[128];
	char (*fps)[65] = calloc(3, 65);
	cf_store_listener *l = NULL;
	cf_store *st = NULL;
	cf_error err = { 0 };

	(void)state;
	assert_non_null(fps);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "sqlite:%s/coffer.db", dir);
	assert_status(CF_OK, cf_store_open(path, CF_STORE_CREATE, &st, &err),
		      &err);
	for (size_t i = 0; i < 3; i++)
		fp_of(i, fps[i]);
	assert_status(CF_OK, cf_store_notify_feeds(st, NODE_US, TENANT,
		(const char (*)[65])fps, 3, &err), &err);
	assert_status(CF_ERR_USAGE, cf_store_listener_open(path, NODE_US, &l,
							    &err), &err);
	assert_null(l);
	assert_int_equal(cf_store_listener_fd(NULL), -1);
	cf_store_listener_free(NULL);
	cf_store_free(st);
	snprintf(path, sizeof(path), "%s/coffer.db", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/coffer.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/coffer.db-shm", dir);
	unlink(path);
	rmdir(dir);
	free(fps);
}

static void pg_wakes(void **state)
{
	char (*fps)[65] = NULL;
	char bad[65] = TENANT;
	cf_store_listener *l = NULL;
	cf_store *st = NULL;
	cf_error err = { 0 };
	heard h = { 0 };
	cf_audit_entry a = audit_of("tenant.add");
	PGconn *raw;
	PGnotify *nf;
	size_t raw_n = 0, raw_max = 0;

	(void)state;
	if (pg_url == NULL)
		skip();
	fps = calloc(MANY, 65);
	assert_non_null(fps);
	for (size_t i = 0; i < MANY; i++)
		fp_of(i, fps[i]);
	assert_status(CF_OK, cf_store_open(pg_url, CF_STORE_CREATE, &st, &err),
		      &err);
	/* Checked arguments. */
	assert_status(CF_ERR_USAGE, cf_store_listener_open(pg_url, "xyz", &l,
							    &err), &err);
	assert_status(CF_ERR_USAGE, cf_store_notify_feeds(st, "AAAAAAAAAAAAAAAA",
		TENANT, (const char (*)[65])fps, 1, &err), &err);
	bad[3] = 'G';
	assert_status(CF_ERR_USAGE, cf_store_notify_feeds(st, NODE_THEM, bad,
		(const char (*)[65])fps, 1, &err), &err);
	assert_status(CF_OK, cf_store_listener_open(pg_url, NODE_US, &l, &err),
		      &err);
	assert_true(cf_store_listener_fd(l) >= 0);
	/* A second session LISTENs too, to see the raw payloads. */
	raw = raw_conn();
	raw_exec(raw, "LISTEN coffer_wake");

	/* 10,000 recipients: a few notifications, in order, none too big. */
	h.in_order = 1;
	assert_status(CF_OK, cf_store_notify_feeds(st, NODE_THEM, TENANT,
		(const char (*)[65])fps, MANY, &err), &err);
	assert_status(CF_OK, listen_for(l, &h, 5000, got_all, &err), &err);
	assert_int_equal(h.fps, MANY);
	assert_int_equal(h.wakes, (MANY + CF_STORE_WAKE_BATCH - 1) /
			 CF_STORE_WAKE_BATCH);
	assert_int_equal(h.max_n, CF_STORE_WAKE_BATCH);
	assert_true(h.in_order);
	assert_false(h.wrong_tenant);
	for (int tries = 0; tries < 1000 && raw_n < h.wakes; tries++) {
		struct pollfd pfd = { PQsocket(raw), POLLIN, 0 };

		poll(&pfd, 1, 100);
		PQconsumeInput(raw);
		while ((nf = PQnotifies(raw)) != NULL) {
			size_t len = strlen(nf->extra);

			raw_n++;
			if (len > raw_max)
				raw_max = len;
			PQfreemem(nf);
		}
	}
	assert_int_equal(raw_n, h.wakes);
	assert_true(raw_max < 8000);
	fprintf(stderr, "  10000 recipients: %zu notifications, the largest "
		"%zu bytes\n", raw_n, raw_max);

	/* Our own node's are skipped; junk is dropped; the next one counts. */
	memset(&h, 0, sizeof(h));
	h.in_order = 1;
	assert_status(CF_OK, cf_store_notify_feeds(st, NODE_US, TENANT,
		(const char (*)[65])fps, 5, &err), &err);
	/* Not ours to parse: too short, a fingerprint too long, upper case,
	 * a node id of the wrong length. */
	raw_exec(raw, "SELECT pg_notify('coffer_wake', 'junk'), "
		 "pg_notify('coffer_wake', 'F " NODE_THEM " " TENANT " "
		 TENANT "x'), pg_notify('coffer_wake', 'F " NODE_THEM " "
		 TENANT " " UPPER "'), pg_notify('coffer_wake', 'F "
		 NODE_THEM "b " TENANT " " TENANT "')");
	assert_status(CF_OK, cf_store_notify_feeds(st, NODE_THEM, TENANT,
		(const char (*)[65])fps, 1, &err), &err);
	assert_status(CF_OK, listen_for(l, &h, 5000, got_one, &err), &err);
	assert_status(CF_OK, listen_for(l, &h, 200, NULL, &err), &err);
	assert_int_equal(h.wakes, 1);
	assert_int_equal(h.fps, 1);
	assert_true(h.in_order);

	/* Tenant changes: announced at commit, not for a refused change. */
	memset(&h, 0, sizeof(h));
	assert_status(CF_OK, cf_store_tenant_add(st, TENANT, "root", &a, &err),
		      &err);
	assert_status(CF_OK, listen_for(l, &h, 5000, got_tenant, &err), &err);
	assert_int_equal(h.tenants, 1);
	memset(&h, 0, sizeof(h));
	assert_status(CF_ERR_EXISTS, cf_store_tenant_add(st, TENANT, "root", &a,
							  &err), &err);
	assert_status(CF_OK, listen_for(l, &h, 300, NULL, &err), &err);
	assert_int_equal(h.tenants, 0);
	a = audit_of("crl.push");
	assert_status(CF_OK, cf_store_tenant_set_crl(st, TENANT, "crl", 1, &a,
						     &err), &err);
	assert_status(CF_OK, listen_for(l, &h, 5000, got_tenant, &err), &err);
	assert_int_equal(h.tenants, 1);
	memset(&h, 0, sizeof(h));
	assert_status(CF_ERR_CONFLICT, cf_store_tenant_set_crl(st, TENANT,
		"crl", 1, &a, &err), &err);
	assert_status(CF_OK, listen_for(l, &h, 300, NULL, &err), &err);
	assert_int_equal(h.tenants, 0);
	PQfinish(raw);

	/* PostgreSQL restarts: the listener notices, then comes back. */
	if (getenv("COFFER_TEST_PG_CTL") != NULL) {
		cf_status rc = CF_OK;

		pg_ctl("restart");
		memset(&h, 0, sizeof(h));
		assert_status(CF_ERR_STORE, listen_for(l, &h, 5000, NULL,
						       &err), &err);
		assert_non_null(strstr(err.msg, "lost the wake-up connection"));
		assert_null(strstr(err.msg, "password"));
		assert_int_equal(cf_store_listener_fd(l), -1);
		rc = cf_store_listener_reconnect(l, &err);
		for (int tries = 0; rc != CF_OK && tries < 50; tries++) {
			usleep(100 * 1000);
			rc = cf_store_listener_reconnect(l, &err);
		}
		if (rc != CF_OK)
			fail_msg("the listener did not come back: %s", err.msg);
		assert_true(cf_store_listener_fd(l) >= 0);
		/* The store's own connection comes back by itself. */
		h.in_order = 1;
		assert_status(CF_OK, cf_store_notify_feeds(st, NODE_THEM,
			TENANT, (const char (*)[65])fps, 2, &err), &err);
		assert_status(CF_OK, listen_for(l, &h, 5000, got_one, &err),
			      &err);
		assert_int_equal(h.fps, 2);
	}
	cf_store_listener_free(l);
	cf_store_free(st);
	free(fps);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sqlite_has_none),
		cmocka_unit_test(pg_wakes),
	};

	pg_url = getenv("COFFER_TEST_STORE_URL");
	if (pg_url != NULL && pg_url[0] == '\0')
		pg_url = NULL;
	return cmocka_run_group_tests(tests, fx_group_setup, NULL);
}
