/*
 * test_store.c - the store (store.h) on a real database: a SQLite file,
 * and a real PostgreSQL when COFFER_TEST_STORE_URL names one.
 *
 * The same tests run on both backends: ctest runs this program twice,
 * as unit_store (SQLite) and as unit_store_pg under tests/pg/pgtest.sh,
 * which starts a private PostgreSQL and sets COFFER_TEST_STORE_URL (and
 * COFFER_TEST_PG_CTL, to stop and restart it).  Each test gets a fresh
 * temporary directory and database: a new SQLite file, or a new
 * PostgreSQL schema (the URL selects it with search_path).  The store
 * keeps certificates and envelopes as opaque text and bytes, so the rows
 * here are made up; what is checked is the contract: conflicts, token
 * refusals, the feed's order and cursor, the audit chain (tampering found
 * at the exact entry, concurrent writers on several connections kept in
 * one chain), durability across kill -9, schema versions, that the feed
 * query uses its index, and for PostgreSQL that a restarted or stopped
 * server costs one clean CF_ERR_STORE, never a crash or a hang.
 */
#include "fixture.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "store.h"
#include "store_backend.h"
#include "store_pg.h"

/* COFFER_TEST_STORE_URL: a PostgreSQL to test on; NULL: SQLite. */
static const char *pg_url;

#define FX_SCHEMAS 8

typedef struct fx_db {
	char dir[64];
	char path[512];       /* what cf_store_open takes: file or URL */
	char schema[32];      /* PostgreSQL: the test's schema */
	char extra[FX_SCHEMAS][48]; /* further schemas of fresh_db */
	cf_store *st;
} fx_db;

/* fixture.c: one repeated character as a fingerprint. */
#define fp_of fx_fp_of

/* A decimal count psql printed: all digits, or the test fails. */
static long count_of(const char *text)
{
	char *end = NULL;
	long v = strtol(text, &end, 10);

	if (end == text || *end != '\0' || v < 0)
		fail_msg("\"%s\" is not a count", text);
	return v;
}

#define TENANT fp_of('a')
#define OTHER_TENANT fp_of('f')
#define ALICE fp_of('b')  /* an operator */
#define AGENT_A fp_of('c')
#define AGENT_B fp_of('d')
#define AGENT_C fp_of('e')

static cf_audit_entry audit_of(const char *action, const char *object)
{
	cf_audit_entry e;

	memset(&e, 0, sizeof(e));
	snprintf(e.tenant, sizeof(e.tenant), "%.64s", TENANT);
	snprintf(e.actor, sizeof(e.actor), "%.64s", ALICE);
	snprintf(e.subject, sizeof(e.subject), "CN=alice,O=Acme");
	snprintf(e.source, sizeof(e.source), "127.0.0.1:50312");
	snprintf(e.action, sizeof(e.action), "%s", action);
	snprintf(e.object, sizeof(e.object), "%s", object);
	return e;
}

/* ---- PostgreSQL helpers ------------------------------------------------ */

static void quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/*
 * Runs sql (at most one parameter, p1, may be NULL) on a connection of
 * its own to url, behind the store's back; the first value of the first
 * row, if any, into out.  Fails the test on an error.
 */
static void pg_raw(const char *url, const char *sql, const char *p1,
		   char *out, size_t cap)
{
	PGconn *c = PQconnectdb(url);
	PGresult *r;
	ExecStatusType t;

	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("cannot connect to the test PostgreSQL: %s",
			 PQerrorMessage(c));
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	r = PQexecParams(c, sql, p1 != NULL ? 1 : 0, NULL, &p1, NULL, NULL, 0);
	t = PQresultStatus(r);
	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	if (out != NULL) {
		out[0] = '\0';
		if (t == PGRES_TUPLES_OK && PQntuples(r) > 0)
			snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	PQfinish(c);
}

/* The test URL with search_path set to schema (made of [a-z0-9_]). */
static void pg_schema_url(const char *schema, char *out, size_t cap)
{
	int w = snprintf(out, cap, "%s%soptions=-c%%20search_path%%3D%s",
			 pg_url, strchr(pg_url, '?') != NULL ? "&" : "?",
			 schema);

	assert_true(w > 0 && (size_t)w < cap);
}

/* A new, empty schema (its name is ours: no quoting needed). */
static void pg_create_schema(const char *schema)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
	pg_raw(pg_url, sql, NULL, NULL, 0);
}

static void pg_drop_schema(const char *schema)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
	pg_raw(pg_url, sql, NULL, NULL, 0);
}

/*
 * A second, empty database of this test named name: a file in its dir,
 * or a schema of its own (dropped by teardown).
 */
static void fresh_db(fx_db *db, const char *name, char *out, size_t cap)
{
	if (pg_url == NULL) {
		snprintf(out, cap, "%s/%s.db", db->dir, name);
		return;
	}
	for (int i = 0; i < FX_SCHEMAS; i++)
		if (db->extra[i][0] == '\0') {
			snprintf(db->extra[i], sizeof(db->extra[i]), "%s_%s",
				 db->schema, name);
			pg_create_schema(db->extra[i]);
			pg_schema_url(db->extra[i], out, cap);
			return;
		}
	fail_msg("fresh_db: more than %d databases in one test", FX_SCHEMAS);
}

/* msg does not hold the password of the test URL (if it has one). */
static void assert_no_password(const char *msg)
{
	const char *user, *colon, *at;
	char pw[128];
	size_t len;

	if (pg_url == NULL || (user = strstr(pg_url, "://")) == NULL)
		return;
	user += 3;
	if ((at = strchr(user, '@')) == NULL ||
	    (colon = memchr(user, ':', (size_t)(at - user))) == NULL)
		return;
	len = (size_t)(at - colon - 1);
	if (len < 4 || len >= sizeof(pw))
		return;
	memcpy(pw, colon + 1, len);
	pw[len] = '\0';
	if (strstr(msg, pw) != NULL)
		fail_msg("a message shows the database password: %s", msg);
}

/* `pgtest.sh ctl stop|start|restart`: the test server, by the harness. */
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

/* ---- fixture ---------------------------------------------------------- */

static int setup(void **state)
{
	static unsigned counter;
	fx_db *db = calloc(1, sizeof(*db));
	cf_error err = { 0 };
	cf_audit_entry a = audit_of("tenant.add", "");

	assert_non_null(db);
	snprintf(db->dir, sizeof(db->dir), "/tmp/test_store.XXXXXX");
	assert_non_null(mkdtemp(db->dir));
	if (pg_url != NULL) {
		snprintf(db->schema, sizeof(db->schema), "t_%ld_%u",
			 (long)getpid(), ++counter);
		pg_create_schema(db->schema);
		pg_schema_url(db->schema, db->path, sizeof(db->path));
	} else {
		snprintf(db->path, sizeof(db->path), "%s/coffer.db", db->dir);
	}
	assert_status(CF_OK, cf_store_open(db->path, CF_STORE_CREATE, &db->st,
					   &err), &err);
	assert_status(CF_OK, cf_store_tenant_add(db->st, TENANT,
						 "-----ROOT-----", &a, &err),
		      &err);
	*state = db;
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type,
			struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown(void **state)
{
	fx_db *db = *state;

	cf_store_free(db->st);
	if (pg_url != NULL) {
		pg_drop_schema(db->schema);
		for (int i = 0; i < FX_SCHEMAS; i++)
			if (db->extra[i][0] != '\0')
				pg_drop_schema(db->extra[i]);
	}
	/* Depth first, no symlinks followed: the temp dir and what is in it. */
	if (nftw(db->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return -1;
	free(db);
	return 0;
}

static void put_version(cf_store *st, const char *name, int64_t version,
			const char *const *recipients, size_t n,
			int64_t *seq_out)
{
	cf_envelope_in envs[8];
	unsigned char der[8][32];
	cf_audit_entry a = audit_of("secret.put", "");
	cf_error err = { 0 };

	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		/* Each envelope says whose and which version it is. */
		int w = snprintf((char *)der[i], sizeof(der[i]), "%s@%" PRId64
				 ":%c", name, version, recipients[i][0]);

		snprintf(envs[i].recipient, sizeof(envs[i].recipient), "%.64s",
			 recipients[i]);
		envs[i].der = der[i];
		envs[i].len = (size_t)w;
	}
	assert_status(CF_OK, cf_store_secret_put(st, TENANT, name, version,
						 ALICE, 1700000000 + version,
						 envs, n, &a, seq_out, &err),
		      &err);
}

static void expect_der(const cf_feed_item *it, const char *name,
		       int64_t version, char recipient)
{
	char want[64];
	int w = snprintf(want, sizeof(want), "%s@%" PRId64 ":%c", name,
			 version, recipient);

	assert_non_null(it->der);
	assert_int_equal(it->len, (size_t)w);
	assert_memory_equal(it->der, want, (size_t)w);
}

/* Every entry of the tenant's chain checks, in seq order from 1. */
static size_t verify_chain(cf_store *st, const char *tenant)
{
	cf_audit_filter f = { .limit = 100000 };
	cf_audit_entry *e = NULL;
	cf_error err = { 0 };
	const char *prev = cf_audit_genesis;
	size_t n = 0;

	assert_status(CF_OK, cf_store_audit_list(st, tenant, &f, &e, &n, &err),
		      &err);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(e[i].seq, (int64_t)i + 1);
		assert_status(CF_OK, cf_audit_check(&e[i], prev, &err), &err);
		prev = e[i].hash;
	}
	free(e);
	return n;
}

/* ---- open, schema ---------------------------------------------------- */

/* What any backend does with a PostgreSQL URL it cannot use. */
static void pg_urls_refused_quietly(void)
{
	cf_store *st = NULL;
	cf_error err = { 0 };

	/* Nobody listens on port 1: a clean refusal, the password unsaid. */
	assert_status(CF_ERR_STORE,
		      cf_store_open("postgresql://coffer:sekrit-pw@127.0.0.1:1/"
				    "coffer?connect_timeout=2", 0, &st, &err),
		      &err);
	assert_null(st);
	assert_null(strstr(err.msg, "sekrit-pw"));
	assert_non_null(strstr(err.msg, "127.0.0.1"));
	/* Malformed: libpq would quote the bad part, password and all. */
	assert_status(CF_ERR_USAGE,
		      cf_store_open("postgres://coffer:pa%zzss@127.0.0.1/x", 0,
				    &st, &err), &err);
	assert_null(st);
	assert_null(strstr(err.msg, "pa%zz"));
	assert_null(strstr(err.msg, "zzss"));
}

static void open_missing_and_create(void **state)
{
	fx_db *db = *state;
	cf_store *st = NULL;
	cf_error err = { 0 };
	char path[512];
	struct stat sb;

	fresh_db(db, "none", path, sizeof(path));
	assert_status(CF_ERR_NOT_FOUND, cf_store_open(path, 0, &st, &err),
		      &err);
	assert_null(st);
	assert_non_null(strstr(err.msg, "coffer server init"));
	assert_no_password(err.msg);
	if (pg_url == NULL)
		assert_int_equal(stat(path, &sb), -1);

	if (pg_url == NULL) {
		snprintf(path, sizeof(path), "sqlite:%s/new.db", db->dir);
	} else {
		fresh_db(db, "new", path, sizeof(path));
	}
	assert_status(CF_OK, cf_store_open(path, CF_STORE_CREATE |
					   CF_STORE_SYNC_FULL, &st, &err),
		      &err);
	assert_true(cf_store_schema_version(st) >= 1);
	if (pg_url == NULL) {
		char wal[sizeof(path) + 8];

		/* The WAL (made by the migration) is private too. */
		snprintf(wal, sizeof(wal), "%s-wal", path + 7);
		assert_int_equal(stat(wal, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}
	cf_store_free(st);
	if (pg_url == NULL) {
		assert_int_equal(stat(path + 7, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}

	/* Reopening an up-to-date database, without CREATE, is fine. */
	assert_status(CF_OK, cf_store_open(path, 0, &st, &err), &err);
	assert_int_equal(cf_store_schema_version(st),
			 cf_store_schema_version(db->st));
	cf_store_free(st);

	pg_urls_refused_quietly();
	assert_status(CF_ERR_USAGE, cf_store_open("sqlite:", 0, &st, &err),
		      &err);
	cf_store_free(NULL);
}

static void future_schema_refused(void **state)
{
	fx_db *db = *state;
	cf_store *st = NULL;
	sqlite3 *raw = NULL;
	cf_error err = { 0 };
	char path[512];
	int version = cf_store_schema_version(db->st);
	char sql[64];

	fresh_db(db, "future", path, sizeof(path));
	assert_status(CF_OK, cf_store_open(path, CF_STORE_CREATE, &st, &err),
		      &err);
	cf_store_free(st);
	st = NULL;
	if (pg_url != NULL) {
		snprintf(sql, sizeof(sql), "%d", version + 1);
		pg_raw(path, "UPDATE coffer_schema SET version = $1::integer",
		       sql, NULL, 0);
	} else {
		assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
			 version + 1);
		assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, NULL),
				 SQLITE_OK);
		sqlite3_close(raw);
	}

	assert_status(CF_ERR_STORE, cf_store_open(path, 0, &st, &err), &err);
	assert_null(st);
	assert_non_null(strstr(err.msg, "newer"));
	/* Never touched: the version is still the future one. */
	if (pg_url != NULL) {
		char got[16];

		pg_raw(path, "SELECT version FROM coffer_schema", NULL, got,
		       sizeof(got));
		assert_int_equal(count_of(got), version + 1);
	}

	/* Not a (coffer) database at all. */
	fresh_db(db, "junk", path, sizeof(path));
	if (pg_url != NULL) {
		/* Somebody else's tables where coffer's would go. */
		pg_raw(path, "CREATE TABLE tenants (x integer)", NULL, NULL, 0);
		assert_status(CF_ERR_STORE,
			      cf_store_open(path, CF_STORE_CREATE, &st, &err),
			      &err);
		assert_non_null(strstr(err.msg, "coffer database"));
		assert_null(st);
		/* A coffer_schema that is not coffer's. */
		fresh_db(db, "junk2", path, sizeof(path));
		pg_raw(path, "CREATE TABLE coffer_schema (version text)", NULL,
		       NULL, 0);
		pg_raw(path, "INSERT INTO coffer_schema VALUES ('x')", NULL,
		       NULL, 0);
		assert_status(CF_ERR_STORE, cf_store_open(path, 0, &st, &err),
			      &err);
		assert_null(st);
		return;
	}
	{
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		fputs("this is not an SQLite file, not even close, but it "
		      "is long enough to have a header of sorts......\n", f);
		fclose(f);
	}
	assert_status(CF_ERR_STORE, cf_store_open(path, 0, &st, &err), &err);
	assert_null(st);
}

/* ---- tenants and certificates ---------------------------------------- */

static void tenants(void **state)
{
	fx_db *db = *state;
	cf_audit_entry a = audit_of("tenant.add", "");
	cf_tenant t, *list = NULL;
	cf_error err = { 0 };
	size_t n = 0;

	assert_status(CF_ERR_EXISTS, cf_store_tenant_add(db->st, TENANT, "x",
							 &a, &err), &err);
	assert_status(CF_OK, cf_store_tenant_add(db->st, OTHER_TENANT,
						 "-----ROOT2-----", &a, &err),
		      &err);
	assert_status(CF_OK, cf_store_tenant_get(db->st, TENANT, &t, &err),
		      &err);
	assert_string_equal(t.id, TENANT);
	assert_string_equal(t.root_pem, "-----ROOT-----");
	assert_null(t.crl_pem);
	assert_int_equal(t.crl_number, -1);
	cf_tenant_clear(&t);
	assert_status(CF_ERR_NOT_FOUND, cf_store_tenant_get(db->st, fp_of('9'),
							    &t, &err), &err);
	assert_status(CF_OK, cf_store_tenant_list(db->st, &list, &n, &err),
		      &err);
	assert_int_equal(n, 2);
	cf_tenants_free(list, n);

	a = audit_of("crl.push", "");
	assert_status(CF_OK, cf_store_tenant_set_crl(db->st, TENANT, "CRL5", 5,
						     &a, &err), &err);
	assert_status(CF_ERR_CONFLICT,
		      cf_store_tenant_set_crl(db->st, TENANT, "CRL5b", 5, &a,
					      &err), &err);
	assert_status(CF_ERR_CONFLICT,
		      cf_store_tenant_set_crl(db->st, TENANT, "CRL4", 4, &a,
					      &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_tenant_set_crl(db->st, fp_of('9'), "CRL", 1,
					      &a, &err), &err);
	assert_status(CF_OK, cf_store_tenant_get(db->st, TENANT, &t, &err),
		      &err);
	assert_string_equal(t.crl_pem, "CRL5");
	assert_int_equal(t.crl_number, 5);
	cf_tenant_clear(&t);
	/* tenant.add, crl.push: the refusals logged nothing. */
	assert_int_equal(verify_chain(db->st, TENANT), 2);
	assert_int_equal(verify_chain(db->st, OTHER_TENANT), 1);
}

static cf_cert_row cert_of(const char *fp, const char *kind, const char *cn,
			   const char *groups)
{
	cf_cert_row r;

	memset(&r, 0, sizeof(r));
	snprintf(r.tenant, sizeof(r.tenant), "%.64s", TENANT);
	snprintf(r.fp, sizeof(r.fp), "%.64s", fp);
	snprintf(r.kind, sizeof(r.kind), "%s", kind);
	snprintf(r.name, sizeof(r.name), "%s", cn);
	r.groups = (char *)groups;
	snprintf(r.issuer_fp, sizeof(r.issuer_fp), "%.64s", ALICE);
	snprintf(r.serial, sizeof(r.serial), "0a0b");
	r.not_after = 1900000000;
	r.pem = (char *)"-----CERT-----";
	return r;
}

static void certificates(void **state)
{
	fx_db *db = *state;
	cf_audit_entry a = audit_of("cert.add", "");
	cf_cert_row r, got, *rows = NULL;
	cf_cert_filter f;
	cf_error err = { 0 };
	size_t n = 0;

	r = cert_of(AGENT_A, "agent", "web-1", "web, db");
	assert_status(CF_OK, cf_store_cert_put(db->st, &r, &a, &err), &err);
	/* Idempotent, and a second put logs nothing. */
	assert_status(CF_OK, cf_store_cert_put(db->st, &r, &a, &err), &err);
	r = cert_of(AGENT_B, "agent", "web-2", "web");
	assert_status(CF_OK, cf_store_cert_put(db->st, &r, NULL, &err), &err);
	r = cert_of(ALICE, "operator", "alice", "");
	assert_status(CF_OK, cf_store_cert_put(db->st, &r, &a, &err), &err);
	r = cert_of(AGENT_C, "agent", "x", "");
	snprintf(r.tenant, sizeof(r.tenant), "%.64s", fp_of('9'));
	assert_status(CF_ERR_NOT_FOUND, cf_store_cert_put(db->st, &r, &a, &err),
		      &err);

	assert_status(CF_OK, cf_store_cert_get(db->st, TENANT, AGENT_A, &got,
					       &err), &err);
	assert_string_equal(got.name, "web-1");
	assert_string_equal(got.groups, "web, db");
	assert_string_equal(got.kind, "agent");
	assert_string_equal(got.pem, "-----CERT-----");
	assert_int_equal(got.not_after, 1900000000);
	assert_true(got.created > 0);
	cf_cert_row_clear(&got);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_cert_get(db->st, TENANT, AGENT_C, &got, &err),
		      &err);

	memset(&f, 0, sizeof(f));
	assert_status(CF_OK, cf_store_cert_list(db->st, TENANT, &f, &rows, &n,
						&err), &err);
	assert_int_equal(n, 3);
	cf_cert_rows_free(rows, n);

	f.group = "web";
	assert_status(CF_OK, cf_store_cert_list(db->st, TENANT, &f, &rows, &n,
						&err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].fp, AGENT_A); /* fp order */
	assert_string_equal(rows[1].fp, AGENT_B);
	cf_cert_rows_free(rows, n);
	f.group = "db";
	assert_status(CF_OK, cf_store_cert_list(db->st, TENANT, &f, &rows, &n,
						&err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].name, "web-1");
	cf_cert_rows_free(rows, n);
	f.group = "we";
	assert_status(CF_OK, cf_store_cert_list(db->st, TENANT, &f, &rows, &n,
						&err), &err);
	assert_int_equal(n, 0);
	cf_cert_rows_free(rows, n);

	/* Paging: one at a time after the last seen fingerprint. */
	memset(&f, 0, sizeof(f));
	f.kind = "agent";
	f.limit = 1;
	assert_status(CF_OK, cf_store_cert_list(db->st, TENANT, &f, &rows, &n,
						&err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].fp, AGENT_A);
	cf_cert_rows_free(rows, n);
	f.after_fp = AGENT_A;
	assert_status(CF_OK, cf_store_cert_list(db->st, TENANT, &f, &rows, &n,
						&err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].fp, AGENT_B);
	cf_cert_rows_free(rows, n);
	f.after_fp = AGENT_B;
	assert_status(CF_OK, cf_store_cert_list(db->st, TENANT, &f, &rows, &n,
						&err), &err);
	assert_int_equal(n, 0);
	cf_cert_rows_free(rows, n);

	memset(&f, 0, sizeof(f));
	f.name = "alice";
	assert_status(CF_OK, cf_store_cert_list(db->st, OTHER_TENANT, &f,
						&rows, &n, &err), &err);
	assert_int_equal(n, 0);
	cf_cert_rows_free(rows, n);
	assert_status(CF_OK, cf_store_cert_list(db->st, TENANT, &f, &rows, &n,
						&err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].kind, "operator");
	cf_cert_rows_free(rows, n);

	/* tenant.add + two logged inserts. */
	assert_int_equal(verify_chain(db->st, TENANT), 3);
}

/* ---- tokens and enrollment ------------------------------------------- */

static cf_token_row token_of(const char *id, const char *hash, int64_t uses,
			     int64_t expires)
{
	static const unsigned char sealed[] = "sealed-token-secret";
	cf_token_row t;

	memset(&t, 0, sizeof(t));
	snprintf(t.tenant, sizeof(t.tenant), "%.64s", TENANT);
	snprintf(t.id, sizeof(t.id), "%s", id);
	snprintf(t.hash, sizeof(t.hash), "%s", hash);
	snprintf(t.group, sizeof(t.group), "web");
	t.uses = uses;
	t.expires = expires;
	snprintf(t.creator, sizeof(t.creator), "%.64s", ALICE);
	t.envelope = (unsigned char *)sealed;
	t.envelope_len = sizeof(sealed) - 1;
	return t;
}

#define TOK1 "11111111111111111111111111111111"
#define TOK2 "22222222222222222222222222222222"
#define TOK3 "33333333333333333333333333333333"
#define TOK4 "44444444444444444444444444444444"
#define NOW 1700000000

static cf_enroll_row enroll_of(const char *token_id, const char *name)
{
	cf_enroll_row r;

	memset(&r, 0, sizeof(r));
	snprintf(r.token_id, sizeof(r.token_id), "%s", token_id);
	snprintf(r.name, sizeof(r.name), "%s", name);
	r.csr_pem = (char *)"-----CSR-----";
	memset(r.hmac, '7', 64);
	snprintf(r.source, sizeof(r.source), "127.0.0.1:4000");
	return r;
}

static void tokens(void **state)
{
	fx_db *db = *state;
	cf_audit_entry a = audit_of("token.create", "ignored");
	cf_token_row rows[2], got, *list = NULL;
	cf_error err = { 0 };
	size_t n = 0;

	rows[0] = token_of(TOK1, fp_of('1'), 5, NOW + 3600);
	rows[1] = token_of(TOK2, fp_of('2'), 1, NOW + 3600);
	assert_status(CF_OK, cf_store_token_add(db->st, rows, 2, &a, &err),
		      &err);
	/* A batch with one duplicate adds nothing. */
	rows[0] = token_of(TOK3, fp_of('3'), 1, NOW + 3600);
	rows[1] = token_of(TOK1, fp_of('1'), 1, NOW + 3600);
	assert_status(CF_ERR_EXISTS, cf_store_token_add(db->st, rows, 2, &a,
							&err), &err);
	assert_status(CF_ERR_NOT_FOUND, cf_store_token_get(db->st, TOK3, &got,
							   &err), &err);

	assert_status(CF_OK, cf_store_token_get(db->st, TOK1, &got, &err),
		      &err);
	assert_string_equal(got.tenant, TENANT);
	assert_string_equal(got.hash, fp_of('1'));
	assert_string_equal(got.group, "web");
	assert_int_equal(got.uses, 5);
	assert_int_equal(got.used, 0);
	assert_int_equal(got.revoked, 0);
	assert_int_equal(got.envelope_len, 19);
	assert_memory_equal(got.envelope, "sealed-token-secret", 19);
	cf_token_row_clear(&got);

	assert_status(CF_OK, cf_store_token_list(db->st, TENANT, &list, &n,
						 &err), &err);
	assert_int_equal(n, 2);
	assert_null(list[0].envelope);
	cf_token_rows_free(list, n);

	a = audit_of("token.revoke", "");
	assert_status(CF_OK, cf_store_token_revoke(db->st, TENANT, TOK2, &a,
						   &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_token_revoke(db->st, OTHER_TENANT, TOK1, &a,
					    &err), &err);
	assert_status(CF_OK, cf_store_token_get(db->st, TOK2, &got, &err),
		      &err);
	assert_int_equal(got.revoked, 1);
	cf_token_row_clear(&got);

	/* One audit entry per token, its object the token id. */
	{
		cf_audit_filter f = { .action = "token.create" };
		cf_audit_entry *e = NULL;

		assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &e,
							 &n, &err), &err);
		assert_int_equal(n, 2);
		assert_string_equal(e[0].object, TOK1);
		assert_string_equal(e[1].object, TOK2);
		free(e);
	}
	assert_int_equal(verify_chain(db->st, TENANT), 4);
}

static void token_refusals(void **state)
{
	fx_db *db = *state;
	cf_audit_entry a = audit_of("token.create", "");
	cf_token_row rows[4], got;
	cf_enroll_row r;
	cf_error err = { 0 };
	char unknown_msg[CF_ERROR_MAX];

	rows[0] = token_of(TOK1, fp_of('1'), 1, NOW + 3600); /* one use */
	rows[1] = token_of(TOK2, fp_of('2'), 5, NOW - 1);    /* expired */
	rows[2] = token_of(TOK3, fp_of('3'), 5, NOW + 3600); /* revoked */
	rows[3] = token_of(TOK4, fp_of('4'), 5, NOW + 3600);
	assert_status(CF_OK, cf_store_token_add(db->st, rows, 4, &a, &err),
		      &err);
	a = audit_of("token.revoke", "");
	assert_status(CF_OK, cf_store_token_revoke(db->st, TENANT, TOK3, &a,
						   &err), &err);
	a = audit_of("enroll.request", "");
	memset(a.actor, 0, sizeof(a.actor));
	memset(a.tenant, 0, sizeof(a.tenant)); /* public route: unknown */

	/* Unknown id and wrong hash: one and the same sentence. */
	r = enroll_of("99999999999999999999999999999999", "web-1");
	assert_status(CF_ERR_TOKEN, cf_store_enroll_add(db->st, &r, fp_of('1'),
							NOW, &a, &err), &err);
	snprintf(unknown_msg, sizeof(unknown_msg), "%s", err.msg);
	assert_string_equal(unknown_msg,
			    "join token refused: unknown token or wrong "
			    "secret");
	r = enroll_of(TOK1, "web-1");
	assert_status(CF_ERR_TOKEN, cf_store_enroll_add(db->st, &r, fp_of('2'),
							NOW, &a, &err), &err);
	assert_string_equal(err.msg, unknown_msg);
	assert_status(CF_ERR_TOKEN, cf_store_enroll_add(db->st, &r, "short",
							NOW, &a, &err), &err);
	assert_string_equal(err.msg, unknown_msg);

	r = enroll_of(TOK2, "web-1");
	assert_status(CF_ERR_TOKEN, cf_store_enroll_add(db->st, &r, fp_of('2'),
							NOW, &a, &err), &err);
	assert_non_null(strstr(err.msg, "expired at 2023-11-14T22:13:19Z"));
	r = enroll_of(TOK3, "web-1");
	assert_status(CF_ERR_TOKEN, cf_store_enroll_add(db->st, &r, fp_of('3'),
							NOW, &a, &err), &err);
	assert_non_null(strstr(err.msg, "revoked"));

	/* uses = 1: the first enrollment takes it, the second is refused. */
	r = enroll_of(TOK1, "web-1");
	assert_status(CF_OK, cf_store_enroll_add(db->st, &r, fp_of('1'), NOW,
						 &a, &err), &err);
	assert_int_equal(strlen(r.id), 32);
	assert_int_equal(strspn(r.id, "0123456789abcdef"), 32);
	assert_string_equal(r.tenant, TENANT);
	assert_string_equal(r.group, "web");
	assert_string_equal(r.status, "pending");
	r = enroll_of(TOK1, "web-2");
	assert_status(CF_ERR_TOKEN, cf_store_enroll_add(db->st, &r, fp_of('1'),
							NOW, &a, &err), &err);
	assert_non_null(strstr(err.msg, "used up (1 of 1)"));
	assert_status(CF_OK, cf_store_token_get(db->st, TOK1, &got, &err),
		      &err);
	assert_int_equal(got.used, 1);
	cf_token_row_clear(&got);
	/* Refusals consumed nothing. */
	assert_status(CF_OK, cf_store_token_get(db->st, TOK2, &got, &err),
		      &err);
	assert_int_equal(got.used, 0);
	cf_token_row_clear(&got);
	/* tenant.add, 4 token.create, revoke, 1 enrollment (tenant filled
	 * in from the token). */
	assert_int_equal(verify_chain(db->st, TENANT), 7);
	assert_int_equal(verify_chain(db->st, ""), 0);
}

typedef struct racer {
	const char *path;
	int ok, token;
	pthread_barrier_t *go;
} racer;

static void *enroll_racer(void *arg)
{
	racer *rc = arg;
	cf_store *st = NULL;
	cf_audit_entry a = audit_of("enroll.request", "");
	cf_enroll_row r = enroll_of(TOK1, "racer");
	cf_error err = { 0 };
	cf_status s;

	if (cf_store_open(rc->path, 0, &st, &err) != CF_OK)
		return NULL;
	pthread_barrier_wait(rc->go);
	s = cf_store_enroll_add(st, &r, fp_of('1'), NOW, &a, &err);
	rc->ok = s == CF_OK;
	rc->token = s == CF_ERR_TOKEN;
	cf_store_free(st);
	return NULL;
}

/* Two connections racing for the last use: exactly one wins. */
static void token_use_is_atomic(void **state)
{
	fx_db *db = *state;
	cf_audit_entry a = audit_of("token.create", "");
	cf_token_row t = token_of(TOK1, fp_of('1'), 1, NOW + 3600);
	pthread_barrier_t go;
	pthread_t th[2];
	racer rc[2];
	cf_error err = { 0 };

	assert_status(CF_OK, cf_store_token_add(db->st, &t, 1, &a, &err),
		      &err);
	pthread_barrier_init(&go, NULL, 2);
	for (int i = 0; i < 2; i++) {
		rc[i] = (racer){ .path = db->path, .go = &go };
		assert_int_equal(pthread_create(&th[i], NULL, enroll_racer,
						&rc[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	assert_int_equal(rc[0].ok + rc[1].ok, 1);
	assert_int_equal(rc[0].token + rc[1].token, 1);
}

static void enrollment_decisions(void **state)
{
	fx_db *db = *state;
	cf_audit_entry a = audit_of("token.create", "");
	cf_token_row t = token_of(TOK1, fp_of('1'), 5, NOW + 3600);
	cf_enroll_row r1, r2, got, *list = NULL;
	cf_cert_row cert = cert_of(AGENT_A, "agent", "web-1", "web"), c;
	cf_error err = { 0 };
	size_t n = 0;

	assert_status(CF_OK, cf_store_token_add(db->st, &t, 1, &a, &err),
		      &err);
	a = audit_of("enroll.request", "");
	r1 = enroll_of(TOK1, "web-1");
	assert_status(CF_OK, cf_store_enroll_add(db->st, &r1, fp_of('1'), NOW,
						 &a, &err), &err);
	r2 = enroll_of(TOK1, "web-2");
	assert_status(CF_OK, cf_store_enroll_add(db->st, &r2, fp_of('1'),
						 NOW + 1, &a, &err), &err);
	assert_string_not_equal(r1.id, r2.id);

	assert_status(CF_OK, cf_store_enroll_get(db->st, r1.id, &got, &err),
		      &err);
	assert_string_equal(got.name, "web-1");
	assert_string_equal(got.csr_pem, "-----CSR-----");
	assert_string_equal(got.source, "127.0.0.1:4000");
	assert_string_equal(got.status, "pending");
	assert_null(got.cert_pem);
	cf_enroll_row_clear(&got);

	assert_status(CF_OK, cf_store_enroll_list(db->st, TENANT, "pending",
						  &list, &n, &err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id, r1.id); /* oldest first */
	cf_enroll_rows_free(list, n);

	a = audit_of("enroll.approve", "");
	assert_status(CF_OK, cf_store_enroll_decide(db->st, TENANT, r1.id, 1,
						    &cert, "-----CHAIN-----",
						    NULL, ALICE, NOW + 5, &a,
						    &err), &err);
	assert_status(CF_ERR_CONFLICT,
		      cf_store_enroll_decide(db->st, TENANT, r1.id, 0, NULL,
					     NULL, "no", ALICE, NOW + 6, &a,
					     &err), &err);
	assert_non_null(strstr(err.msg, "already approved"));
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_enroll_decide(db->st, OTHER_TENANT, r2.id, 0,
					     NULL, NULL, "no", ALICE, NOW, &a,
					     &err), &err);
	a = audit_of("enroll.reject", "");
	assert_status(CF_OK, cf_store_enroll_decide(db->st, TENANT, r2.id, 0,
						    NULL, NULL, "unknown host",
						    ALICE, NOW + 7, &a, &err),
		      &err);

	assert_status(CF_OK, cf_store_enroll_get(db->st, r1.id, &got, &err),
		      &err);
	assert_string_equal(got.status, "approved");
	assert_string_equal(got.cert_pem, "-----CERT-----");
	assert_string_equal(got.chain_pem, "-----CHAIN-----");
	assert_string_equal(got.decided_by, ALICE);
	assert_int_equal(got.decided, NOW + 5);
	cf_enroll_row_clear(&got);
	assert_status(CF_OK, cf_store_enroll_get(db->st, r2.id, &got, &err),
		      &err);
	assert_string_equal(got.status, "rejected");
	assert_string_equal(got.reason, "unknown host");
	cf_enroll_row_clear(&got);

	/* The approved agent is in the directory now. */
	assert_status(CF_OK, cf_store_cert_get(db->st, TENANT, AGENT_A, &c,
					       &err), &err);
	assert_string_equal(c.name, "web-1");
	cf_cert_row_clear(&c);
	assert_status(CF_OK, cf_store_enroll_list(db->st, TENANT, "pending",
						  &list, &n, &err), &err);
	assert_int_equal(n, 0);
	cf_enroll_rows_free(list, n);
	assert_status(CF_OK, cf_store_enroll_list(db->st, TENANT, NULL, &list,
						  &n, &err), &err);
	assert_int_equal(n, 2);
	cf_enroll_rows_free(list, n);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_enroll_get(db->st, TOK4, &got, &err), &err);
	assert_int_equal(verify_chain(db->st, TENANT), 6);
}

/* ---- secrets, envelopes, feed ---------------------------------------- */

static void versions_and_conflicts(void **state)
{
	fx_db *db = *state;
	const char *ab[] = { AGENT_A, AGENT_B };
	cf_audit_entry a = audit_of("secret.delete", "");
	cf_secret_row *rows = NULL, latest;
	char (*rcpt)[65] = NULL;
	cf_envelope_in env;
	cf_error err = { 0 };
	int64_t seq = 0;
	size_t n = 0;

	put_version(db->st, "prod/db/password", 1, ab, 2, &seq);
	assert_true(seq > 0);

	/* Stale: the message says where the name is. */
	snprintf(env.recipient, sizeof(env.recipient), "%.64s", AGENT_A);
	env.der = (const unsigned char *)"x";
	env.len = 1;
	a = audit_of("secret.put", "");
	assert_status(CF_ERR_CONFLICT,
		      cf_store_secret_put(db->st, TENANT, "prod/db/password",
					  1, ALICE, NOW, &env, 1, &a, NULL,
					  &err), &err);
	assert_string_equal(err.msg, "secret prod/db/password is at version "
			    "1; upload version 2");
	put_version(db->st, "prod/db/password", 3, ab, 1, NULL);
	put_version(db->st, "prod/web/key", 1, ab + 1, 1, NULL);
	put_version(db->st, "staging/x", 7, ab, 2, NULL);

	assert_status(CF_OK, cf_store_secret_list(db->st, TENANT, "prod/",
						  &rows, &n, &err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].name, "prod/db/password");
	assert_int_equal(rows[0].version, 3);
	assert_int_equal(rows[0].recipients, 1);
	assert_string_equal(rows[0].writer, ALICE);
	assert_string_equal(rows[1].name, "prod/web/key");
	free(rows);
	assert_status(CF_OK, cf_store_secret_list(db->st, TENANT, "", &rows, &n,
						  &err), &err);
	assert_int_equal(n, 3);
	free(rows);

	/* Delete: tombstone at latest + 1, recipients returned. */
	a = audit_of("secret.delete", "");
	assert_status(CF_OK, cf_store_secret_delete(db->st, TENANT,
						    "prod/db/password", ALICE,
						    NOW, &a, &rcpt, &n, &err),
		      &err);
	/* A (v3) and B (v1, dropped from v3) both hear of it. */
	assert_int_equal(n, 2);
	assert_string_equal(rcpt[0], AGENT_A);
	assert_string_equal(rcpt[1], AGENT_B);
	free(rcpt);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_secret_delete(db->st, TENANT,
					     "prod/db/password", ALICE, NOW,
					     &a, NULL, NULL, &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_secret_delete(db->st, TENANT, "nope", ALICE,
					     NOW, &a, NULL, NULL, &err), &err);
	assert_status(CF_OK, cf_store_secret_latest(db->st, TENANT,
						    "prod/db/password",
						    &latest, &err), &err);
	assert_int_equal(latest.version, 4);
	assert_int_equal(latest.deleted, 1);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_secret_latest(db->st, TENANT, "nope", &latest,
					     &err), &err);

	/* Versions never repeat, not even the tombstone's. */
	a = audit_of("secret.put", "");
	assert_status(CF_ERR_CONFLICT,
		      cf_store_secret_put(db->st, TENANT, "prod/db/password",
					  4, ALICE, NOW, &env, 1, &a, NULL,
					  &err), &err);
	assert_non_null(strstr(err.msg, "upload version 5"));
	assert_status(CF_OK, cf_store_secret_list(db->st, TENANT, "prod/",
						  &rows, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].name, "prod/web/key");
	free(rows);
	put_version(db->st, "prod/db/password", 5, ab, 1, NULL);

	assert_status(CF_OK, cf_store_secret_history(db->st, TENANT,
						     "prod/db/password", &rows,
						     &n, &err), &err);
	assert_int_equal(n, 4);
	assert_int_equal(rows[0].version, 5);
	assert_int_equal(rows[0].deleted, 0);
	assert_int_equal(rows[1].version, 4);
	assert_int_equal(rows[1].deleted, 1);
	assert_int_equal(rows[2].version, 3);
	assert_int_equal(rows[3].version, 1);
	assert_int_equal(rows[3].recipients, 2);
	assert_int_equal(rows[3].bytes, 2 * (int64_t)strlen(
				 "prod/db/password@1:c"));
	free(rows);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_secret_history(db->st, TENANT, "nope", &rows, &n,
					      &err), &err);

	/* Two envelopes for one recipient in one version: refused whole. */
	{
		cf_envelope_in two[2] = { env, env };

		assert_status(CF_ERR_USAGE,
			      cf_store_secret_put(db->st, TENANT, "dup", 1,
						  ALICE, NOW, two, 2, &a, NULL,
						  &err), &err);
		assert_status(CF_ERR_NOT_FOUND,
			      cf_store_secret_latest(db->st, TENANT, "dup",
						     &latest, &err), &err);
	}
	/* tenant.add + 4 puts + 1 delete + 1 put; refusals log nothing. */
	assert_int_equal(verify_chain(db->st, TENANT), 7);
}

static void envelope_get(void **state)
{
	fx_db *db = *state;
	const char *ab[] = { AGENT_A, AGENT_B };
	cf_audit_entry a = audit_of("secret.delete", "");
	cf_feed_item it;
	cf_error err = { 0 };

	put_version(db->st, "s", 1, ab, 2, NULL);
	put_version(db->st, "s", 2, ab, 1, NULL); /* A only */

	assert_status(CF_OK, cf_store_envelope_get(db->st, TENANT, "s", 0,
						   AGENT_A, &it, &err), &err);
	assert_int_equal(it.version, 2);
	assert_string_equal(it.name, "s");
	assert_string_equal(it.writer, ALICE);
	assert_int_equal(it.created, 1700000002);
	assert_int_equal(it.deleted, 0);
	expect_der(&it, "s", 2, 'c');
	cf_feed_item_clear(&it);
	assert_status(CF_OK, cf_store_envelope_get(db->st, TENANT, "s", 1,
						   AGENT_A, &it, &err), &err);
	expect_der(&it, "s", 1, 'c');
	cf_feed_item_clear(&it);
	assert_status(CF_OK, cf_store_envelope_get(db->st, TENANT, "s", 1,
						   AGENT_B, &it, &err), &err);
	expect_der(&it, "s", 1, 'd');
	cf_feed_item_clear(&it);

	/* B is not addressed by the latest; C never; no version 9; no name;
	 * another tenant. */
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_envelope_get(db->st, TENANT, "s", 0, AGENT_B,
					    &it, &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_envelope_get(db->st, TENANT, "s", 1, AGENT_C,
					    &it, &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_envelope_get(db->st, TENANT, "s", 9, AGENT_A,
					    &it, &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_envelope_get(db->st, TENANT, "t", 0, AGENT_A,
					    &it, &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_envelope_get(db->st, OTHER_TENANT, "s", 0,
					    AGENT_A, &it, &err), &err);

	/* Deleted: nothing left, any version. */
	assert_status(CF_OK, cf_store_secret_delete(db->st, TENANT, "s", ALICE,
						    NOW, &a, NULL, NULL, &err),
		      &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_envelope_get(db->st, TENANT, "s", 0, AGENT_A,
					    &it, &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_envelope_get(db->st, TENANT, "s", 2, AGENT_A,
					    &it, &err), &err);
}

static void feed(void **state)
{
	fx_db *db = *state;
	const char *ab[] = { AGENT_A, AGENT_B }, *a_only[] = { AGENT_A };
	cf_audit_entry a = audit_of("secret.delete", "");
	cf_feed_item *items = NULL;
	cf_error err = { 0 };
	int64_t cursor = -1, c1;
	size_t n = 0;

	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_A, 0, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 0);
	assert_int_equal(cursor, 0);
	cf_feed_items_free(items, n);

	put_version(db->st, "x", 1, ab, 2, NULL);
	put_version(db->st, "y", 1, a_only, 1, NULL);
	put_version(db->st, "x", 2, a_only, 1, NULL);
	put_version(db->st, "z", 1, ab + 1, 1, NULL);

	/* A: newest per name, in seq order: y@1, then x@2 (x@1 is gone). */
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_A, 0, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(items[0].name, "y");
	assert_int_equal(items[0].version, 1);
	expect_der(&items[0], "y", 1, 'c');
	assert_string_equal(items[1].name, "x");
	assert_int_equal(items[1].version, 2);
	expect_der(&items[1], "x", 2, 'c');
	assert_true(items[0].seq < items[1].seq);
	assert_int_equal(cursor, items[1].seq);
	assert_string_equal(items[1].writer, ALICE);
	assert_int_equal(items[1].created, 1700000002);
	cf_feed_items_free(items, n);

	/* Nothing new after the cursor: the same cursor back. */
	c1 = cursor;
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_A, c1, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 0);
	assert_int_equal(cursor, c1);
	cf_feed_items_free(items, n);

	/* Paging with limit 1. */
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_A, 0, 1,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].name, "y");
	assert_int_equal(cursor, items[0].seq);
	cf_feed_items_free(items, n);
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_A, cursor, 1,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].name, "x");
	assert_int_equal(cursor, c1);
	cf_feed_items_free(items, n);

	/* B: x@1 (still its newest of x) and z@1. */
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_B, 0, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(items[0].name, "x");
	assert_int_equal(items[0].version, 1);
	expect_der(&items[0], "x", 1, 'd');
	assert_string_equal(items[1].name, "z");
	c1 = cursor;
	cf_feed_items_free(items, n);

	/* A deletion reaches A and B as the newest entry of x. */
	assert_status(CF_OK, cf_store_secret_delete(db->st, TENANT, "x", ALICE,
						    NOW, &a, NULL, NULL, &err),
		      &err);
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_B, c1, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].name, "x");
	assert_int_equal(items[0].deleted, 1);
	assert_int_equal(items[0].version, 3);
	assert_null(items[0].der);
	assert_true(cursor > c1);
	cf_feed_items_free(items, n);
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_A, 0, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(items[0].name, "y");
	assert_string_equal(items[1].name, "x");
	assert_int_equal(items[1].deleted, 1);
	cf_feed_items_free(items, n);

	/* Other tenants' recipients see nothing. */
	assert_status(CF_OK, cf_store_feed(db->st, OTHER_TENANT, AGENT_A, 0, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 0);
	cf_feed_items_free(items, n);
}

/* A byte budget bounds an answer, but never to nothing. */
static void feed_bounded(void **state)
{
	fx_db *db = *state;
	const char *a_only[] = { AGENT_A };
	cf_feed_item *items = NULL;
	cf_error err = { 0 };
	int64_t cursor = 0;
	size_t n = 0;
	int more = -1;

	put_version(db->st, "p", 1, a_only, 1, NULL); /* "p@1:c": 5 bytes */
	put_version(db->st, "q", 1, a_only, 1, NULL);
	put_version(db->st, "r", 1, a_only, 1, NULL);

	assert_status(CF_OK, cf_store_feed_bounded(db->st, TENANT, AGENT_A, 0,
						   0, 10, &items, &n, &cursor,
						   &more, &err), &err);
	assert_int_equal(n, 2);
	assert_int_equal(more, 1);
	assert_int_equal(cursor, items[1].seq);
	cf_feed_items_free(items, n);
	assert_status(CF_OK, cf_store_feed_bounded(db->st, TENANT, AGENT_A, 0,
						   0, 9, &items, &n, &cursor,
						   &more, &err), &err);
	assert_int_equal(n, 1);
	assert_int_equal(more, 1);
	cf_feed_items_free(items, n);
	assert_status(CF_OK, cf_store_feed_bounded(db->st, TENANT, AGENT_A, 0,
						   0, 1, &items, &n, &cursor,
						   &more, &err), &err);
	assert_int_equal(n, 1); /* at least one, even above the budget */
	assert_string_equal(items[0].name, "p");
	cf_feed_items_free(items, n);
	assert_status(CF_OK, cf_store_feed_bounded(db->st, TENANT, AGENT_A,
						   cursor, 0, 1, &items, &n,
						   &cursor, &more, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].name, "q");
	cf_feed_items_free(items, n);

	assert_status(CF_OK, cf_store_feed_bounded(db->st, TENANT, AGENT_A, 0,
						   2, 0, &items, &n, &cursor,
						   &more, &err), &err);
	assert_int_equal(n, 2);
	assert_int_equal(more, 1);
	cf_feed_items_free(items, n);
	assert_status(CF_OK, cf_store_feed_bounded(db->st, TENANT, AGENT_A, 0,
						   3, 15, &items, &n, &cursor,
						   &more, &err), &err);
	assert_int_equal(n, 3);
	assert_int_equal(more, 0);
	cf_feed_items_free(items, n);
}

/*
 * The feed must cost the same with 100 or 100,000 agents: its query must
 * be an index search on (tenant, recipient, seq), and the envelope join an
 * index lookup.  A schema change that loses either fails here.
 */
/*
 * PostgreSQL plans by statistics, so the question is asked of a
 * populated, analysed database shaped like a real one: 2,000 agents, 20
 * names each, so that one agent's rows are a small part of the table.
 * The feed must be read from feed_by_recipient in seq order (no sort, no
 * sequential scan), and the envelopes looked up by their unique index.
 */
static void feed_uses_its_index_pg(fx_db *db)
{
	enum { AGENTS = 2000, NAMES = 20 };
	cf_envelope_in *envs = calloc(AGENTS, sizeof(*envs));
	cf_audit_entry a = audit_of("secret.put", "");
	cf_error err = { 0 };
	char plan[4096], name[32];

	assert_non_null(envs);
	for (int i = 0; i < AGENTS; i++) {
		snprintf(envs[i].recipient, sizeof(envs[i].recipient), "%064x",
			 i);
		envs[i].der = (const unsigned char *)"an envelope";
		envs[i].len = 11;
	}
	for (int k = 0; k < NAMES; k++) {
		snprintf(name, sizeof(name), "n%d", k);
		assert_status(CF_OK, cf_store_secret_put(db->st, TENANT, name,
							 1, ALICE, NOW, envs,
							 AGENTS, &a, NULL,
							 &err), &err);
	}
	pg_raw(db->path, "ANALYZE", NULL, NULL, 0);
	assert_status(CF_OK, cf_store_pg_explain_feed(db->st, TENANT,
						      envs[7].recipient, plan,
						      sizeof(plan), &err),
		      &err);
	free(envs);
	if (strstr(plan, "using feed_by_recipient on feed") == NULL ||
	    strstr(plan, "envelopes_tenant_name_recipient_version_key") ==
		    NULL ||
	    strstr(plan, "Seq Scan") != NULL || strstr(plan, "Sort") != NULL)
		fail_msg("feed query plan:\n%s", plan);
}

static void feed_uses_its_index(void **state)
{
	fx_db *db = *state;
	cf_error err = { 0 };
	char plan[4096];

	if (pg_url != NULL) {
		feed_uses_its_index_pg(db);
		return;
	}
	assert_status(CF_OK, cf_store_sqlite_explain_feed(db->st, plan,
							  sizeof(plan), &err),
		      &err);
	if (strstr(plan, "SEARCH f USING INDEX feed_by_recipient "
			 "(tenant=? AND recipient=? AND seq>?)") == NULL ||
	    strstr(plan, "SEARCH e USING INDEX") == NULL ||
	    strstr(plan, "SCAN") != NULL ||
	    strstr(plan, "TEMP B-TREE") != NULL)
		fail_msg("feed query plan:\n%s", plan);
}

/* ---- audit ------------------------------------------------------------ */

static void audit_list_and_filters(void **state)
{
	fx_db *db = *state;
	const char *a_only[] = { AGENT_A };
	cf_audit_entry a, *e = NULL;
	cf_audit_filter f;
	cf_error err = { 0 };
	size_t n = 0;

	put_version(db->st, "p", 1, a_only, 1, NULL);
	a = audit_of("secret.read", "p");
	a.bytes = 20;
	a.time = 1800000000;
	snprintf(a.actor, sizeof(a.actor), "%.64s", AGENT_A);
	assert_status(CF_OK, cf_store_audit_append(db->st, &a, &err), &err);
	a = audit_of("secretary", "q"); /* not under "secret." */
	assert_status(CF_OK, cf_store_audit_append(db->st, &a, &err), &err);

	memset(&f, 0, sizeof(f));
	f.action = "secret.";
	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &e, &n,
						 &err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(e[0].action, "secret.put");
	assert_string_equal(e[0].object, "p");
	assert_string_equal(e[1].action, "secret.read");
	/* Every field made it into the row. */
	assert_int_equal(e[1].seq, 3);
	assert_int_equal(e[1].time, 1800000000);
	assert_string_equal(e[1].tenant, TENANT);
	assert_string_equal(e[1].actor, AGENT_A);
	assert_string_equal(e[1].subject, "CN=alice,O=Acme");
	assert_string_equal(e[1].source, "127.0.0.1:50312");
	assert_string_equal(e[1].object, "p");
	assert_int_equal(e[1].bytes, 20);
	assert_string_equal(e[1].prev, e[0].hash);
	free(e);

	memset(&f, 0, sizeof(f));
	f.actor = AGENT_A;
	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &e, &n,
						 &err), &err);
	assert_int_equal(n, 1);
	free(e);
	memset(&f, 0, sizeof(f));
	f.after_seq = 1;
	f.limit = 2;
	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &e, &n,
						 &err), &err);
	assert_int_equal(n, 2);
	assert_int_equal(e[0].seq, 2);
	free(e);
	memset(&f, 0, sizeof(f));
	f.since = 1800000000;
	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &e, &n,
						 &err), &err);
	assert_int_equal(n, 1);
	assert_int_equal(e[0].seq, 3);
	free(e);
	f.since = 0;
	f.until = 1800000000;
	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &e, &n,
						 &err), &err);
	assert_int_equal(n, 3);
	free(e);
}

/* An UPDATE behind the store's back is found at exactly that entry. */
static void audit_tamper_detected(void **state)
{
	fx_db *db = *state;
	const char *a_only[] = { AGENT_A };
	cf_audit_filter f = { 0 };
	cf_audit_entry *e = NULL;
	cf_error err = { 0 };
	sqlite3 *raw = NULL;
	sqlite3_stmt *q = NULL;
	const char *prev = cf_audit_genesis;
	size_t n = 0, bad = 0;

	for (int v = 1; v <= 5; v++)
		put_version(db->st, "t", v, a_only, 1, NULL);
	assert_int_equal(verify_chain(db->st, TENANT), 6);

	if (pg_url != NULL) {
		char changed[16];

		pg_raw(db->path, "WITH u AS (UPDATE audit SET bytes = bytes + 1 "
		       "WHERE tenant = $1 AND seq = 4 RETURNING 1) "
		       "SELECT COUNT(*) FROM u", TENANT, changed,
		       sizeof(changed));
		assert_string_equal(changed, "1");
	} else {
		assert_int_equal(sqlite3_open(db->path, &raw), SQLITE_OK);
		sqlite3_busy_timeout(raw, 5000);
		assert_int_equal(sqlite3_prepare_v2(raw, "UPDATE audit SET "
						    "bytes = bytes + 1 WHERE "
						    "tenant = ?1 AND seq = 4",
						    -1, &q, NULL), SQLITE_OK);
		sqlite3_bind_text(q, 1, TENANT, -1, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(q), SQLITE_DONE);
		assert_int_equal(sqlite3_changes(raw), 1);
		sqlite3_finalize(q);
		sqlite3_close(raw);
	}

	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &e, &n,
						 &err), &err);
	assert_int_equal(n, 6);
	for (size_t i = 0; i < n; i++) {
		if (cf_audit_check(&e[i], prev, &err) != CF_OK) {
			bad = (size_t)e[i].seq;
			break;
		}
		prev = e[i].hash;
	}
	assert_int_equal(bad, 4);
	assert_int_equal(err.code, CF_ERR_AUDIT);
	assert_non_null(strstr(err.msg, "entry 4 "));
	free(e);
}

/* A batch is one transaction: all entries, chained in array order, or none. */
static void audit_append_many_batch(void **state)
{
	fx_db *db = *state;
	cf_audit_entry b[3], *e = NULL;
	cf_audit_filter f;
	cf_error err = { 0 };
	size_t n = 0;

	assert_status(CF_OK, cf_store_audit_append_many(db->st, NULL, 0, &err),
		      &err);
	for (int i = 0; i < 3; i++) {
		char obj[16];

		snprintf(obj, sizeof(obj), "b%d", i);
		b[i] = audit_of("secret.read", obj);
		b[i].bytes = 10 + i;
	}
	assert_status(CF_OK, cf_store_audit_append_many(db->st, b, 3, &err),
		      &err);
	/* One bad entry: nothing of the batch is written. */
	b[1].action[0] = '\0';
	assert_int_equal(cf_store_audit_append_many(db->st, b, 3, &err),
			 CF_ERR_USAGE);
	memset(&f, 0, sizeof(f));
	f.action = "secret.read";
	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &e, &n,
						 &err), &err);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < 3; i++) {
		char obj[16];

		snprintf(obj, sizeof(obj), "b%zu", i);
		assert_string_equal(e[i].object, obj);
		assert_int_equal(e[i].bytes, 10 + (int64_t)i);
		if (i > 0) {
			assert_int_equal(e[i].seq, e[i - 1].seq + 1);
			assert_string_equal(e[i].prev, e[i - 1].hash);
		}
	}
	free(e);
	assert_int_equal(verify_chain(db->st, TENANT), 1 + 3);
}

typedef struct appender {
	const char *path;
	int n;
	int batch;      /* entries per cf_store_audit_append_many; 0: one by one */
	cf_status rc;
	cf_error err;
} appender;

static void *append_many(void *arg)
{
	appender *ap = arg;
	cf_store *st = NULL;
	cf_audit_entry a = audit_of("secret.read", ""), b[10];

	ap->rc = cf_store_open(ap->path, 0, &st, &ap->err);
	for (int i = 0; ap->rc == CF_OK && i < ap->n; i++) {
		snprintf(a.object, sizeof(a.object), "obj-%p-%d", arg, i);
		if (ap->batch == 0) {
			ap->rc = cf_store_audit_append(st, &a, &ap->err);
			continue;
		}
		b[i % 10] = a;
		if (i % 10 == 9)
			ap->rc = cf_store_audit_append_many(st, b, 10, &ap->err);
	}
	cf_store_free(st);
	return NULL;
}

/* Two connections appending at once keep one intact chain. */
static void audit_concurrent_appends(void **state)
{
	fx_db *db = *state;
	appender ap[2];
	pthread_t th[2];

	for (int i = 0; i < 2; i++) {
		memset(&ap[i], 0, sizeof(ap[i]));
		ap[i].path = db->path;
		ap[i].n = 150;
		ap[i].batch = i;   /* one appends one by one, one in batches */
		assert_int_equal(pthread_create(&th[i], NULL, append_many,
						&ap[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		if (ap[i].rc != CF_OK)
			fail_msg("appender %d: %s", i, ap[i].err.msg);
	}
	assert_int_equal(verify_chain(db->st, TENANT), 1 + 2 * 150);
}

/*
 * Two processes (as two server nodes would) append batches that span two
 * tenants, in opposite tenant orders, and single entries in between:
 * both chains stay whole and nobody deadlocks or loses an entry.
 */
static void audit_concurrent_processes(void **state)
{
	fx_db *db = *state;
	cf_audit_entry a = audit_of("tenant.add", "");
	cf_error err = { 0 };
	pid_t pid[2];

	assert_status(CF_OK, cf_store_tenant_add(db->st, OTHER_TENANT,
						 "-----ROOT2-----", &a, &err),
		      &err);
	for (int p = 0; p < 2; p++) {
		pid[p] = fork();
		assert_true(pid[p] >= 0);
		if (pid[p] == 0) {
			cf_store *st = NULL;
			cf_audit_entry b[6];

			if (cf_store_open(db->path, 0, &st, NULL) != CF_OK)
				_exit(2);
			for (int round = 0; round < 40; round++) {
				for (int i = 0; i < 6; i++) {
					/* p 0: a f a f...; p 1: f a f a... */
					b[i] = audit_of("secret.read", "x");
					snprintf(b[i].tenant, sizeof(b[i].tenant),
						 "%.64s", (i + p) % 2 ?
						 OTHER_TENANT : TENANT);
					snprintf(b[i].object, sizeof(b[i].object),
						 "p%d-r%d-%d", p, round, i);
				}
				if (cf_store_audit_append_many(st, b, 6, NULL) !=
					    CF_OK ||
				    cf_store_audit_append(st, &b[1], NULL) != CF_OK)
					_exit(1);
			}
			cf_store_free(st);
			_exit(0);
		}
	}
	for (int p = 0; p < 2; p++) {
		int status = 0;

		assert_int_equal(waitpid(pid[p], &status, 0), pid[p]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("appending process %d failed (status %d)", p,
				 status);
	}
	/* tenant.add, then per process and round 3 + (1 if its b[1] is
	 * this tenant's). */
	assert_int_equal(verify_chain(db->st, TENANT), 1 + 2 * 40 * 3 + 40);
	assert_int_equal(verify_chain(db->st, OTHER_TENANT),
			 1 + 2 * 40 * 3 + 40);
}

typedef struct writer {
	const char *path;
	int puts, conflicts;
	cf_status rc;
	cf_error err;
} writer;

/* Read the latest version, upload the next; on a lost race, try again. */
static void *write_versions(void *arg)
{
	writer *w = arg;
	cf_store *st = NULL;
	cf_audit_entry a = audit_of("secret.put", "");
	cf_envelope_in env;
	cf_secret_row latest;

	snprintf(env.recipient, sizeof(env.recipient), "%.64s", AGENT_A);
	env.der = (const unsigned char *)"race";
	env.len = 4;
	w->rc = cf_store_open(w->path, 0, &st, &w->err);
	while (w->rc == CF_OK && w->puts < 40) {
		int64_t next = 1;

		w->rc = cf_store_secret_latest(st, TENANT, "race", &latest,
					       &w->err);
		if (w->rc == CF_OK)
			next = latest.version + 1;
		else if (w->rc == CF_ERR_NOT_FOUND)
			w->rc = CF_OK;
		else
			break;
		w->rc = cf_store_secret_put(st, TENANT, "race", next, ALICE,
					    NOW, &env, 1, &a, NULL, &w->err);
		if (w->rc == CF_ERR_CONFLICT) {
			w->conflicts++;
			w->rc = CF_OK;
		} else if (w->rc == CF_OK) {
			w->puts++;
		}
	}
	cf_store_free(st);
	return NULL;
}

/* Three writers on one name: every version once, in order, one chain. */
static void concurrent_writers(void **state)
{
	fx_db *db = *state;
	writer w[3];
	pthread_t th[3];
	cf_secret_row *rows = NULL;
	cf_error err = { 0 };
	size_t n = 0;

	for (int i = 0; i < 3; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].path = db->path;
		assert_int_equal(pthread_create(&th[i], NULL, write_versions,
						&w[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		if (w[i].rc != CF_OK)
			fail_msg("writer %d: %s", i, w[i].err.msg);
	}
	assert_status(CF_OK, cf_store_secret_history(db->st, TENANT, "race",
						     &rows, &n, &err), &err);
	assert_int_equal(n, 120);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rows[i].version, (int64_t)(n - i));
	free(rows);
	assert_int_equal(verify_chain(db->st, TENANT), 1 + 120);
}

typedef struct opener {
	char path[512];
	int schema;
	cf_status rc;
	cf_error err;
	pthread_barrier_t *go;
} opener;

static void *open_fresh(void *arg)
{
	opener *o = arg;
	cf_store *st = NULL;

	pthread_barrier_wait(o->go);
	o->rc = cf_store_open(o->path, CF_STORE_CREATE, &st, &o->err);
	o->schema = cf_store_schema_version(st);
	cf_store_free(st);
	return NULL;
}

/* Several connections creating the same new database at once. */
static void concurrent_create(void **state)
{
	fx_db *db = *state;
	pthread_barrier_t go;
	opener o[4];
	pthread_t th[4];

	char path[512];

	fresh_db(db, "fresh", path, sizeof(path));
	pthread_barrier_init(&go, NULL, 4);
	for (int i = 0; i < 4; i++) {
		memset(&o[i], 0, sizeof(o[i]));
		snprintf(o[i].path, sizeof(o[i].path), "%s", path);
		o[i].go = &go;
		assert_int_equal(pthread_create(&th[i], NULL, open_fresh,
						&o[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		if (o[i].rc != CF_OK)
			fail_msg("opener %d: %s", i, o[i].err.msg);
		assert_int_equal(o[i].schema,
				 cf_store_schema_version(db->st));
	}
	pthread_barrier_destroy(&go);
}

/* ---- durability ------------------------------------------------------- */

/* A committed version survives kill -9 of the process that wrote it. */
static void survives_kill_9(void **state)
{
	fx_db *db = *state;
	cf_secret_row latest;
	cf_feed_item it;
	cf_store *st = NULL;
	cf_error err = { 0 };
	int fds[2], status = 0;
	char byte = 0;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		const char *a_only[] = { AGENT_A };
		cf_envelope_in env;
		cf_audit_entry a = audit_of("secret.put", "");
		cf_store *child = NULL;

		close(fds[0]);
		snprintf(env.recipient, sizeof(env.recipient), "%.64s", a_only[0]);
		env.der = (const unsigned char *)"durable";
		env.len = 7;
		if (cf_store_open(db->path, 0, &child, NULL) != CF_OK ||
		    cf_store_secret_put(child, TENANT, "durable", 1, ALICE,
					NOW, &env, 1, &a, NULL, NULL) != CF_OK)
			_exit(1);
		if (write(fds[1], "k", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &byte, 1), 1);
	close(fds[0]);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	/* A fresh connection, as a restarted server would open. */
	assert_status(CF_OK, cf_store_open(db->path, 0, &st, &err), &err);
	assert_status(CF_OK, cf_store_secret_latest(st, TENANT, "durable",
						    &latest, &err), &err);
	assert_int_equal(latest.version, 1);
	assert_status(CF_OK, cf_store_envelope_get(st, TENANT, "durable", 0,
						   AGENT_A, &it, &err), &err);
	assert_int_equal(it.len, 7);
	assert_memory_equal(it.der, "durable", 7);
	cf_feed_item_clear(&it);
	assert_int_equal(verify_chain(st, TENANT), 2);
	cf_store_free(st);
}

/* ---- PostgreSQL going away --------------------------------------------- */

/* Milliseconds since an arbitrary start. */
static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The server restarts between two calls on one cf_store: the second call
 * finds its connection dead and succeeds on a new one.  Stopped, calls
 * fail at once with CF_ERR_STORE (never a crash or a hang); started
 * again, the store comes back by itself within its backoff.  SQLite has
 * no server to lose: skipped there.
 */
static void pg_server_restart(void **state)
{
	fx_db *db = *state;
	const char *a_only[] = { AGENT_A };
	cf_secret_row latest;
	cf_feed_item *items = NULL;
	cf_error err = { 0 };
	int64_t t0, cursor = 0;
	size_t n = 0;
	cf_status rc = CF_ERR_STORE;

	if (pg_url == NULL || getenv("COFFER_TEST_PG_CTL") == NULL) {
		skip();
		return;
	}
	put_version(db->st, "r", 1, a_only, 1, NULL);
	pg_ctl("restart");
	/* A read, then a write, on the connection the restart killed. */
	assert_status(CF_OK, cf_store_secret_latest(db->st, TENANT, "r",
						    &latest, &err), &err);
	assert_int_equal(latest.version, 1);
	pg_ctl("restart");
	put_version(db->st, "r", 2, a_only, 1, NULL);

	pg_ctl("stop");
	t0 = now_ms();
	assert_status(CF_ERR_STORE, cf_store_feed(db->st, TENANT, AGENT_A, 0,
						  0, &items, &n, &cursor,
						  &err), &err);
	assert_no_password(err.msg);
	/* Again at once: the backoff answers without a new attempt. */
	assert_status(CF_ERR_STORE, cf_store_secret_latest(db->st, TENANT, "r",
							   &latest, &err),
		      &err);
	assert_true(now_ms() - t0 < 5000);
	pg_ctl("start");
	/* Back within the backoff's 2 s ceiling (and the server's start). */
	t0 = now_ms();
	while (now_ms() - t0 < 15000) {
		rc = cf_store_secret_latest(db->st, TENANT, "r", &latest, &err);
		if (rc == CF_OK)
			break;
		assert_int_equal(rc, CF_ERR_STORE);
		usleep(100 * 1000);
	}
	if (rc != CF_OK)
		fail_msg("the store did not come back: %s", err.msg);
	assert_int_equal(latest.version, 2);
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_A, 0, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 1);
	assert_int_equal(items[0].version, 2);
	cf_feed_items_free(items, n);
	/* Nothing was committed twice: tenant.add and two puts. */
	assert_int_equal(verify_chain(db->st, TENANT), 3);
}

/* ---- limits and stats ------------------------------------------------- */

static void limits(void **state)
{
	fx_db *db = *state;
	cf_audit_entry a = audit_of("secret.put", "");
	cf_envelope_in env;
	cf_error err = { 0 };
	char name[300];
	unsigned char *big;
	cf_feed_item *items = NULL;
	size_t n = 0;

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(env.recipient, sizeof(env.recipient), "%.64s", AGENT_A);
	env.der = (const unsigned char *)"x";
	env.len = 1;
	assert_status(CF_ERR_TOO_LARGE,
		      cf_store_secret_put(db->st, TENANT, name, 1, ALICE, NOW,
					  &env, 1, &a, NULL, &err), &err);
	name[255] = '\0'; /* exactly 255 bytes is fine */
	assert_status(CF_OK, cf_store_secret_put(db->st, TENANT, name, 1,
						 ALICE, NOW, &env, 1, &a, NULL,
						 &err), &err);

	big = calloc(1, CF_STORE_ENVELOPE_MAX + 1);
	assert_non_null(big);
	env.der = big;
	env.len = CF_STORE_ENVELOPE_MAX + 1;
	assert_status(CF_ERR_TOO_LARGE,
		      cf_store_secret_put(db->st, TENANT, "big", 1, ALICE, NOW,
					  &env, 1, &a, NULL, &err), &err);
	env.len = CF_STORE_ENVELOPE_MAX;
	assert_status(CF_OK, cf_store_secret_put(db->st, TENANT, "big", 1,
						 ALICE, NOW, &env, 1, &a, NULL,
						 &err), &err);
	free(big);
	assert_status(CF_ERR_TOO_LARGE,
		      cf_store_secret_put(db->st, TENANT, "many", 1, ALICE,
					  NOW, &env, CF_STORE_ENVELOPES_MAX + 1,
					  &a, NULL, &err), &err);
	assert_status(CF_ERR_USAGE,
		      cf_store_secret_put(db->st, TENANT, "none", 1, ALICE,
					  NOW, &env, 0, &a, NULL, &err), &err);
	assert_status(CF_ERR_USAGE,
		      cf_store_secret_put(db->st, TENANT, "zero", 0, ALICE,
					  NOW, &env, 1, &a, NULL, &err), &err);
	assert_status(CF_ERR_USAGE,
		      cf_store_secret_put(db->st, TENANT, "noaudit", 1, ALICE,
					  NOW, &env, 1, NULL, NULL, &err),
		      &err);
	assert_status(CF_ERR_USAGE,
		      cf_store_feed(db->st, TENANT, AGENT_A, -1, 0, &items, &n,
				    NULL, &err), &err);
	{
		char *pem = malloc(CF_STORE_PEM_MAX + 2);

		assert_non_null(pem);
		memset(pem, 'P', CF_STORE_PEM_MAX + 1);
		pem[CF_STORE_PEM_MAX + 1] = '\0';
		a = audit_of("tenant.add", "");
		assert_status(CF_ERR_TOO_LARGE,
			      cf_store_tenant_add(db->st, fp_of('9'), pem, &a,
						  &err), &err);
		free(pem);
	}
}

static void stats(void **state)
{
	fx_db *db = *state;
	const char *ab[] = { AGENT_A, AGENT_B };
	cf_cert_row r = cert_of(AGENT_A, "agent", "web-1", "web");
	cf_audit_entry a = audit_of("cert.add", "");
	cf_store_stats s;
	cf_error err = { 0 };
	int64_t seq = 0;

	assert_status(CF_OK, cf_store_cert_put(db->st, &r, &a, &err), &err);
	r = cert_of(ALICE, "operator", "alice", "");
	assert_status(CF_OK, cf_store_cert_put(db->st, &r, &a, &err), &err);
	put_version(db->st, "one", 1, ab, 2, NULL);
	put_version(db->st, "two", 1, ab, 1, &seq);
	a = audit_of("secret.delete", "");
	assert_status(CF_OK, cf_store_secret_delete(db->st, TENANT, "two",
						    ALICE, NOW, &a, NULL, NULL,
						    &err), &err);
	assert_status(CF_OK, cf_store_stats_get(db->st, &s, &err), &err);
	assert_int_equal(s.tenants, 1);
	assert_int_equal(s.certs, 2);
	assert_int_equal(s.agents, 1);
	assert_int_equal(s.tokens, 0);
	assert_int_equal(s.enrollments_pending, 0);
	assert_int_equal(s.secrets, 1);
	assert_int_equal(s.envelopes, 2);
	assert_int_equal(s.envelope_bytes, 2 * (int64_t)strlen("one@1:c"));
	assert_int_equal(s.audit_entries, 6);
	assert_true(s.feed_seq > seq); /* the deletion took new numbers */
}

/* ---- staged uploads ------------------------------------------------------ */

/* One envelope for recipient in the expect_der format. */
static cf_envelope_in env_of(const char *name, int64_t version,
			     const char *recipient, unsigned char *buf,
			     size_t cap)
{
	cf_envelope_in e;
	int w = snprintf((char *)buf, cap, "%s@%" PRId64 ":%c", name, version,
			 recipient[0]);

	memset(&e, 0, sizeof(e));
	snprintf(e.recipient, sizeof(e.recipient), "%.64s", recipient);
	e.der = buf;
	e.len = (size_t)w;
	return e;
}

static size_t audit_count(cf_store *st, const char *action)
{
	cf_audit_filter f = { .action = action, .limit = 10000 };
	cf_audit_entry *e = NULL;
	cf_error err = { 0 };
	size_t n = 0;

	assert_status(CF_OK, cf_store_audit_list(st, TENANT, &f, &e, &n, &err),
		      &err);
	free(e);
	return n;
}

static void uploads_commit(void **state)
{
	fx_db *db = *state;
	cf_upload_row up, got;
	cf_envelope_in envs[2];
	unsigned char der[3][32];
	cf_audit_entry a = audit_of("secret.put", "");
	cf_feed_item *items = NULL, item;
	cf_secret_row *hist = NULL;
	cf_store_stats stats;
	char (*rcpt)[65] = NULL;
	cf_error err = { 0 };
	size_t n = 0;
	int64_t cursor;

	assert_status(CF_OK, cf_store_upload_begin(db->st, TENANT, "big", 1,
						   ALICE, NOW, &up, &err), &err);
	assert_int_equal(strlen(up.id), 32);
	assert_int_equal(up.expires, NOW + CF_STORE_UPLOAD_TTL);
	assert_int_equal(up.envelopes, 0);
	/* Nothing staged yet: nothing to commit, and the upload stays. */
	assert_status(CF_ERR_USAGE,
		      cf_store_upload_commit(db->st, TENANT, up.id, ALICE, NOW,
					     &a, NULL, NULL, NULL, &err), &err);
	envs[0] = env_of("big", 1, AGENT_A, der[0], sizeof(der[0]));
	envs[1] = env_of("big", 1, AGENT_B, der[1], sizeof(der[1]));
	assert_status(CF_OK, cf_store_upload_add(db->st, TENANT, up.id, ALICE,
						 NOW + 10, envs, 2, &got, &err),
		      &err);
	assert_int_equal(got.envelopes, 2);
	assert_int_equal(got.bytes, (int64_t)(envs[0].len + envs[1].len));
	assert_int_equal(got.expires, NOW + 10 + CF_STORE_UPLOAD_TTL);
	envs[0] = env_of("big", 1, AGENT_C, der[2], sizeof(der[2]));
	assert_status(CF_OK, cf_store_upload_add(db->st, TENANT, up.id, ALICE,
						 NOW + 20, envs, 1, &got, &err),
		      &err);
	assert_int_equal(got.envelopes, 3);

	/* Staged is invisible: no version, no feed, no envelope, no entry. */
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_secret_history(db->st, TENANT, "big", &hist, &n,
					      &err), &err);
	free(hist);
	hist = NULL;
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_A, 0, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 0);
	cf_feed_items_free(items, n);
	assert_status(CF_OK, cf_store_stats_get(db->st, &stats, &err), &err);
	assert_int_equal(stats.envelopes, 0);
	assert_int_equal(stats.secrets, 0);
	assert_int_equal(audit_count(db->st, "secret.put"), 0);

	assert_status(CF_OK, cf_store_upload_commit(db->st, TENANT, up.id,
						    ALICE, NOW + 30, &a, &got,
						    &rcpt, &n, &err), &err);
	assert_int_equal(n, 3);
	assert_string_equal(rcpt[0], AGENT_A);
	assert_string_equal(rcpt[2], AGENT_C);
	free(rcpt);
	assert_string_equal(got.name, "big");
	assert_int_equal(got.version, 1);
	assert_int_equal(got.envelopes, 3);

	/* Committed: exactly as a single put would have stored it. */
	assert_status(CF_OK, cf_store_secret_history(db->st, TENANT, "big",
						     &hist, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_int_equal(hist[0].recipients, 3);
	assert_int_equal(hist[0].bytes, got.bytes);
	assert_string_equal(hist[0].writer, ALICE);
	free(hist);
	for (int i = 0; i < 3; i++) {
		const char *who = i == 0 ? AGENT_A : i == 1 ? AGENT_B : AGENT_C;

		memset(&item, 0, sizeof(item));
		assert_status(CF_OK, cf_store_envelope_get(db->st, TENANT, "big",
							   0, who, &item, &err),
			      &err);
		expect_der(&item, "big", 1, who[0]);
		cf_feed_item_clear(&item);
	}
	assert_status(CF_OK, cf_store_feed(db->st, TENANT, AGENT_B, 0, 0,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 1);
	expect_der(&items[0], "big", 1, 'd');
	cf_feed_items_free(items, n);
	assert_int_equal(audit_count(db->st, "secret.put"), 1);
	verify_chain(db->st, TENANT);
	{
		cf_audit_filter f = { .action = "secret.put", .limit = 10 };
		cf_audit_entry *e = NULL;

		assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &e,
							 &n, &err), &err);
		assert_int_equal(n, 1);
		assert_string_equal(e[0].object, "big");
		assert_int_equal(e[0].bytes, got.bytes);
		free(e);
	}
	/* The upload is gone with its commit. */
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_upload_get(db->st, TENANT, up.id, NOW + 40, &got,
					  &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_upload_commit(db->st, TENANT, up.id, ALICE,
					     NOW + 40, &a, NULL, NULL, NULL,
					     &err), &err);
}

static void uploads_refusals(void **state)
{
	fx_db *db = *state;
	const char *a_only[] = { AGENT_A };
	cf_upload_row up, up2, got;
	cf_envelope_in envs[2];
	unsigned char der[2][32];
	cf_audit_entry a = audit_of("secret.put", "");
	cf_secret_row latest;
	cf_error err = { 0 };
	size_t before;

	put_version(db->st, "s", 1, a_only, 1, NULL);
	/* Begin: not above the latest. */
	assert_status(CF_ERR_CONFLICT,
		      cf_store_upload_begin(db->st, TENANT, "s", 1, ALICE, NOW,
					    &up, &err), &err);
	assert_status(CF_OK, cf_store_upload_begin(db->st, TENANT, "s", 2,
						   ALICE, NOW, &up, &err), &err);
	envs[0] = env_of("s", 2, AGENT_A, der[0], sizeof(der[0]));
	envs[1] = env_of("s", 2, AGENT_B, der[1], sizeof(der[1]));
	assert_status(CF_OK, cf_store_upload_add(db->st, TENANT, up.id, ALICE,
						 NOW, envs, 1, NULL, &err), &err);
	/* A recipient again, in a later chunk: the whole chunk is refused. */
	envs[0] = env_of("s", 2, AGENT_B, der[0], sizeof(der[0]));
	envs[1] = env_of("s", 2, AGENT_A, der[1], sizeof(der[1]));
	assert_status(CF_ERR_EXISTS,
		      cf_store_upload_add(db->st, TENANT, up.id, ALICE, NOW,
					  envs, 2, NULL, &err), &err);
	assert_non_null(strstr(err.msg, AGENT_A));
	assert_status(CF_OK, cf_store_upload_get(db->st, TENANT, up.id, NOW,
						 &got, &err), &err);
	assert_int_equal(got.envelopes, 1);
	/* Only the writer that began it; another tenant does not see it. */
	assert_status(CF_ERR_PERMISSION,
		      cf_store_upload_add(db->st, TENANT, up.id, AGENT_C, NOW,
					  envs, 1, NULL, &err), &err);
	assert_status(CF_ERR_PERMISSION,
		      cf_store_upload_commit(db->st, TENANT, up.id, AGENT_C,
					     NOW, &a, NULL, NULL, NULL, &err),
		      &err);
	assert_status(CF_ERR_PERMISSION,
		      cf_store_upload_abort(db->st, TENANT, up.id, AGENT_C, NOW,
					    &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_upload_get(db->st, OTHER_TENANT, up.id, NOW,
					  &got, &err), &err);
	assert_status(CF_ERR_USAGE,
		      cf_store_upload_get(db->st, TENANT, "NOTHEX", NOW, &got,
					  &err), &err);

	/* Another writer stores version 2 meanwhile: conflict at commit,
	 * and the upload is dropped. */
	assert_status(CF_OK, cf_store_upload_begin(db->st, TENANT, "s", 2,
						   ALICE, NOW, &up2, &err), &err);
	put_version(db->st, "s", 2, a_only, 1, NULL);
	before = audit_count(db->st, "secret.put");
	assert_status(CF_ERR_CONFLICT,
		      cf_store_upload_commit(db->st, TENANT, up.id, ALICE, NOW,
					     &a, NULL, NULL, NULL, &err), &err);
	assert_int_equal(audit_count(db->st, "secret.put"), before);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_upload_get(db->st, TENANT, up.id, NOW, &got,
					  &err), &err);
	assert_status(CF_OK, cf_store_secret_latest(db->st, TENANT, "s",
						    &latest, &err), &err);
	assert_int_equal(latest.version, 2);
	assert_int_equal(latest.recipients, 1);

	/* Abort. */
	assert_status(CF_OK, cf_store_upload_abort(db->st, TENANT, up2.id,
						   ALICE, NOW, &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_upload_abort(db->st, TENANT, up2.id, ALICE, NOW,
					    &err), &err);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_upload_add(db->st, TENANT, up2.id, ALICE, NOW,
					  envs, 1, NULL, &err), &err);
	verify_chain(db->st, TENANT);
}

static void uploads_expiry_and_limit(void **state)
{
	fx_db *db = *state;
	cf_upload_row up, old, got;
	cf_envelope_in env;
	unsigned char der[32];
	cf_audit_entry a = audit_of("secret.put", "");
	cf_error err = { 0 };
	sqlite3 *raw;
	sqlite3_stmt *q;
	int staged = -1;

	assert_status(CF_OK, cf_store_upload_begin(db->st, TENANT, "e", 1,
						   ALICE, NOW, &old, &err), &err);
	env = env_of("e", 1, AGENT_A, der, sizeof(der));
	/* A chunk moves the expiry: alive after the first hour... */
	assert_status(CF_OK, cf_store_upload_add(db->st, TENANT, old.id, ALICE,
						 NOW + 3000, &env, 1, NULL,
						 &err), &err);
	assert_status(CF_OK, cf_store_upload_get(db->st, TENANT, old.id,
						 NOW + 3000 + 3599, &got, &err),
		      &err);
	/* ...and refused an hour after its last chunk. */
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_upload_commit(db->st, TENANT, old.id, ALICE,
					     NOW + 3000 + 3600, &a, NULL, NULL,
					     NULL, &err), &err);
	assert_non_null(strstr(err.msg, "expired"));

	/* The per-tenant limit counts open uploads only. */
	for (int i = 1; i < CF_STORE_UPLOADS_MAX; i++)
		assert_status(CF_OK, cf_store_upload_begin(db->st, TENANT, "e",
							   1, ALICE, NOW + 3001,
							   &up, &err), &err);
	assert_status(CF_ERR_LIMIT,
		      cf_store_upload_begin(db->st, TENANT, "e", 1, ALICE,
					    NOW + 3001, &up, &err), &err);
	/* Once `old` has expired (the others not yet), a begin purges it
	 * and has room for exactly one more. */
	assert_status(CF_OK, cf_store_upload_begin(db->st, TENANT, "e", 1,
						   ALICE, NOW + 6600, &up, &err),
		      &err);
	assert_status(CF_ERR_LIMIT,
		      cf_store_upload_begin(db->st, TENANT, "e", 1, ALICE,
					    NOW + 6600, &got, &err), &err);
	if (pg_url != NULL) {
		char count[16];

		pg_raw(db->path, "SELECT COUNT(*) FROM upload_envelopes", NULL,
		       count, sizeof(count));
		staged = (int)count_of(count);
	} else {
		assert_int_equal(sqlite3_open_v2(db->path, &raw,
						 SQLITE_OPEN_READONLY, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(raw, "SELECT COUNT(*) FROM "
						    "upload_envelopes", -1, &q,
						    NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(q), SQLITE_ROW);
		staged = sqlite3_column_int(q, 0);
		sqlite3_finalize(q);
		sqlite3_close(raw);
	}
	assert_int_equal(staged, 0);
	assert_status(CF_ERR_NOT_FOUND,
		      cf_store_upload_get(db->st, TENANT, old.id, NOW, &got,
					  &err), &err);

	/* At most CF_STORE_ENVELOPES_MAX per upload, across chunks. */
	{
		size_t n = CF_STORE_ENVELOPES_MAX;
		cf_envelope_in *many = calloc(n, sizeof(*many));

		assert_non_null(many);
		for (size_t i = 0; i < n; i++) {
			snprintf(many[i].recipient, sizeof(many[i].recipient),
				 "%064zx", i);
			many[i].der = der;
			many[i].len = 1;
		}
		assert_status(CF_OK, cf_store_upload_add(db->st, TENANT, up.id,
							 ALICE, NOW + 6600,
							 many, n - 1, NULL,
							 &err), &err);
		snprintf(many[0].recipient, sizeof(many[0].recipient), "%064x",
			 0xfffffff);
		assert_status(CF_ERR_TOO_LARGE,
			      cf_store_upload_add(db->st, TENANT, up.id, ALICE,
						  NOW + 6600, many, 2, NULL,
						  &err), &err);
		assert_status(CF_OK, cf_store_upload_add(db->st, TENANT, up.id,
							 ALICE, NOW + 6600,
							 many, 1, NULL, &err),
			      &err);
		free(many);
	}
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(open_missing_and_create),
		T(future_schema_refused),
		T(tenants),
		T(certificates),
		T(tokens),
		T(token_refusals),
		T(token_use_is_atomic),
		T(enrollment_decisions),
		T(versions_and_conflicts),
		T(envelope_get),
		T(feed),
		T(feed_bounded),
		T(feed_uses_its_index),
		T(audit_list_and_filters),
		T(audit_tamper_detected),
		T(audit_append_many_batch),
		T(audit_concurrent_appends),
		T(audit_concurrent_processes),
		T(concurrent_writers),
		T(concurrent_create),
		T(survives_kill_9),
		T(pg_server_restart),
		T(limits),
		T(stats),
		T(uploads_commit),
		T(uploads_refusals),
		T(uploads_expiry_and_limit),
	};
#undef T

	pg_url = getenv("COFFER_TEST_STORE_URL");
	if (pg_url != NULL && pg_url[0] == '\0')
		pg_url = NULL;
	return cmocka_run_group_tests(tests, fx_group_setup, NULL);
}
