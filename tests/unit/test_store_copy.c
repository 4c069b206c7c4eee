/*
 * test_store_copy.c - copying a whole store (cf_store_copy,
 * cf_store_copy_verify: `coffer server migrate`) between backends.
 *
 * ctest runs it twice: as unit_store_copy (SQLite to SQLite) and as
 * unit_store_copy_pg under tests/pg/pgtest.sh, which starts a private
 * PostgreSQL and sets COFFER_TEST_STORE_URL: then every direction runs,
 * SQLite to PostgreSQL, PostgreSQL to SQLite and PostgreSQL to
 * PostgreSQL (each PostgreSQL database a schema of its own, chosen by
 * search_path in the URL).  A source is filled through store.h with a
 * bit of everything (tenants, a CRL, certificates in groups, tokens
 * used and revoked, enrollments pending and approved, versions, a
 * deletion, an open upload, commands and an answer, audit entries of
 * two tenants and of none) and copied; what is checked is what the copy
 * promises: the same rows, table by table; each agent's feed identical
 * and continuing after its cursor (sequence numbers kept, new ones
 * above them), the mailbox likewise, the audit chains verbatim and
 * extended on the copy; a non-empty target refused and left untouched;
 * that the verification catches a copy changed behind its back; and
 * that every table of the schema is one the copy moves.
 */
#include "fixture.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "store.h"

static const char *pg_url;
static char upload_id[33]; /* the open upload fill() leaves */

#define NOW 1700000000
#define BIG 2600 /* recipients of one version: several copy pages */

/* fixture.c: one repeated character as a fingerprint. */
#define fp_of fx_fp_of

#define TENANT fp_of('a')
#define OTHER fp_of('f')
#define ALICE fp_of('b')
#define AGENT_A fp_of('c')
#define AGENT_B fp_of('d')
#define AGENT_C fp_of('e')

static void big_fp(size_t i, char out[65])
{
	snprintf(out, 65, "%064zx", i + 0x1000);
}

static cf_audit_entry audit_of(const char *tenant, const char *action,
			       const char *object)
{
	cf_audit_entry e;

	memset(&e, 0, sizeof(e));
	snprintf(e.tenant, sizeof(e.tenant), "%.64s", tenant);
	snprintf(e.actor, sizeof(e.actor), "%.64s", ALICE);
	snprintf(e.subject, sizeof(e.subject), "CN=alice,O=Acme");
	snprintf(e.source, sizeof(e.source), "127.0.0.1:50312");
	snprintf(e.action, sizeof(e.action), "%s", action);
	snprintf(e.object, sizeof(e.object), "%s", object);
	e.time = NOW;
	return e;
}

/* ---- databases ----------------------------------------------------------- */

static void quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Runs sql on its own connection to the test PostgreSQL. */
static void pg_raw(const char *url, const char *sql)
{
	PGconn *c = PQconnectdb(url);
	PGresult *r;
	ExecStatusType t;

	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("cannot connect to the test PostgreSQL: %s",
			 PQerrorMessage(c));
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	r = PQexec(c, sql);
	t = PQresultStatus(r);
	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(c);
}

typedef struct fx_db {
	int pg;
	char schema[48];
	char url[1024];   /* what cf_store_open takes */
} fx_db;

typedef struct fx {
	char dir[64];
	fx_db db[4];
	int n;
} fx;

/* A new, empty database: a SQLite file in the test's dir or a schema. */
static fx_db *new_db(fx *f, int pg)
{
	static unsigned counter;
	fx_db *d;

	assert_true(f->n < 4);
	d = &f->db[f->n++];
	d->pg = pg;
	if (!pg) {
		char dir[sizeof(f->dir)];

		memcpy(dir, f->dir, sizeof(dir));
		snprintf(d->url, sizeof(d->url), "sqlite:%s/db%d.db", dir,
			 f->n);
		return d;
	}
	snprintf(d->schema, sizeof(d->schema), "c_%ld_%u", (long)getpid(),
		 ++counter);
	{
		char sql[96];

		snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", d->schema);
		pg_raw(pg_url, sql);
	}
	{
		char schema[sizeof(d->schema)];

		memcpy(schema, d->schema, sizeof(schema));
		snprintf(d->url, sizeof(d->url),
			 "%s%soptions=-c%%20search_path%%3D%s", pg_url,
			 strchr(pg_url, '?') != NULL ? "&" : "?", schema);
	}
	return d;
}

/* Runs sql on d behind the store's back. */
static void raw_sql(const fx_db *d, const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;

	if (d->pg) {
		pg_raw(d->url, sql);
		return;
	}
	assert_int_equal(sqlite3_open(d->url + 7, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store_copy.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;

	for (int i = 0; i < f->n; i++)
		if (f->db[i].pg) {
			char sql[96];

			snprintf(sql, sizeof(sql),
				 "DROP SCHEMA IF EXISTS %s CASCADE",
				 f->db[i].schema);
			pg_raw(pg_url, sql);
		}
	fx_remove_tree(f->dir);
	free(f);
	return 0;
}

static cf_store *open_db(const fx_db *d)
{
	cf_store *st = NULL;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_store_open(d->url, CF_STORE_CREATE, &st, &err),
		      &err);
	return st;
}

/* ---- a source with a bit of everything ------------------------------------ */

static cf_cert_row cert_of(const char *tenant, const char *fp,
			   const char *kind, const char *cn,
			   const char *groups)
{
	cf_cert_row r;

	memset(&r, 0, sizeof(r));
	snprintf(r.tenant, sizeof(r.tenant), "%.64s", tenant);
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

static void put(cf_store *st, const char *tenant, const char *name,
		int64_t version, const char *const *to, size_t n)
{
	cf_envelope_in envs[4];
	char der[4][64];
	cf_audit_entry a = audit_of(tenant, "secret.put", name);
	cf_error err = { 0 };

	assert_true(n <= 4);
	for (size_t i = 0; i < n; i++) {
		snprintf(envs[i].recipient, sizeof(envs[i].recipient), "%s",
			 to[i]);
		snprintf(der[i], sizeof(der[i]), "%s v%" PRId64 " for %.8s",
			 name, version, to[i]);
		envs[i].der = (const unsigned char *)der[i];
		envs[i].len = strlen(der[i]);
	}
	assert_status(CF_OK, cf_store_secret_put(st, tenant, name, version,
						 ALICE, NOW, envs, n, &a, NULL,
						 &err), &err);
}

static void fill(cf_store *st)
{
	const char *ab[] = { AGENT_A, AGENT_B }, *a_only[] = { AGENT_A },
		   *c_only[] = { AGENT_C };
	static const unsigned char sealed[] = "sealed-token-secret";
	static const unsigned char cmd[] = "command-envelope";
	static const unsigned char res[] = "result-envelope";
	cf_audit_entry a = audit_of(TENANT, "tenant.add", "");
	cf_token_row tok[2];
	cf_enroll_row er;
	cf_cert_row c;
	cf_envelope_in envs[2], *big;
	cf_upload_row up;
	unsigned char *bytes;
	char sender[65];
	cf_error err = { 0 };

	assert_status(CF_OK, cf_store_tenant_add(st, TENANT, "-----ROOT A-----",
						 &a, &err), &err);
	a = audit_of(OTHER, "tenant.add", "");
	assert_status(CF_OK, cf_store_tenant_add(st, OTHER, "-----ROOT F-----",
						 &a, &err), &err);
	a = audit_of(TENANT, "crl.push", "");
	assert_status(CF_OK, cf_store_tenant_set_crl(st, TENANT, "-----CRL-----",
						     7, &a, &err), &err);
	a = audit_of(TENANT, "cert.add", "");
	c = cert_of(TENANT, ALICE, "operator", "alice", "");
	assert_status(CF_OK, cf_store_cert_put(st, &c, &a, &err), &err);
	c = cert_of(TENANT, AGENT_A, "agent", "web-1", "web,db");
	assert_status(CF_OK, cf_store_cert_put(st, &c, &a, &err), &err);
	c = cert_of(TENANT, AGENT_B, "agent", "web-2", "web");
	assert_status(CF_OK, cf_store_cert_put(st, &c, NULL, &err), &err);
	a = audit_of(OTHER, "cert.add", "");
	c = cert_of(OTHER, AGENT_C, "agent", "f-1", "");
	assert_status(CF_OK, cf_store_cert_put(st, &c, &a, &err), &err);

	/* Tokens: one used twice, one revoked with no envelope. */
	memset(tok, 0, sizeof(tok));
	for (int i = 0; i < 2; i++) {
		snprintf(tok[i].tenant, sizeof(tok[i].tenant), "%.64s", TENANT);
		memset(tok[i].id, i ? '2' : '1', 32);
		snprintf(tok[i].hash, sizeof(tok[i].hash), "%s",
			 fp_of(i ? '8' : '9'));
		snprintf(tok[i].group, sizeof(tok[i].group), "web");
		tok[i].uses = 5;
		tok[i].expires = NOW + 3600;
		snprintf(tok[i].creator, sizeof(tok[i].creator), "%.64s", ALICE);
	}
	tok[0].envelope = (unsigned char *)sealed;
	tok[0].envelope_len = sizeof(sealed) - 1;
	a = audit_of(TENANT, "token.create", "");
	assert_status(CF_OK, cf_store_token_add(st, tok, 2, &a, &err), &err);
	a = audit_of(TENANT, "token.revoke", "");
	assert_status(CF_OK, cf_store_token_revoke(st, TENANT, tok[1].id, &a,
						   &err), &err);
	/* Enrollments in the same second: their order must survive. */
	for (int i = 0; i < 3; i++) {
		memset(&er, 0, sizeof(er));
		snprintf(er.token_id, sizeof(er.token_id), "%s", tok[0].id);
		snprintf(er.name, sizeof(er.name), "new-%d", 3 - i);
		er.csr_pem = (char *)"-----CSR-----";
		memset(er.hmac, '7', 64);
		snprintf(er.source, sizeof(er.source), "127.0.0.1:4000");
		a = audit_of("", "enroll.request", "");
		assert_status(CF_OK, cf_store_enroll_add(st, &er, fp_of('9'),
							 NOW, &a, &err), &err);
	}
	c = cert_of(TENANT, fp_of('5'), "agent", "new-1", "web");
	a = audit_of(TENANT, "enroll.approve", "");
	assert_status(CF_OK, cf_store_enroll_decide(st, TENANT, er.id, 1, &c,
						    "", NULL, ALICE, NOW, &a,
						    &err), &err);

	/* Versions: a history, a name left out, a deletion. */
	put(st, TENANT, "app/db", 1, ab, 2);
	put(st, TENANT, "app/db", 2, ab, 2);
	put(st, TENANT, "app/db", 3, a_only, 1);
	put(st, TENANT, "app/gone", 1, ab, 2);
	a = audit_of(TENANT, "secret.delete", "app/gone");
	assert_status(CF_OK, cf_store_secret_delete(st, TENANT, "app/gone",
						    ALICE, NOW, &a, NULL, NULL,
						    &err), &err);
	put(st, OTHER, "other/x", 1, c_only, 1);
	/* Many recipients: several pages of the copy. */
	big = calloc(BIG, sizeof(*big));
	bytes = malloc(300);
	assert_non_null(big);
	assert_non_null(bytes);
	for (size_t i = 0; i < 300; i++)
		bytes[i] = (unsigned char)i; /* NUL bytes included */
	for (size_t i = 0; i < BIG; i++) {
		big_fp(i, big[i].recipient);
		big[i].der = bytes;
		big[i].len = 1 + i % 300;
	}
	a = audit_of(TENANT, "secret.put", "fleet/key");
	assert_status(CF_OK, cf_store_secret_put(st, TENANT, "fleet/key", 1,
						 ALICE, NOW, big, BIG, &a, NULL,
						 &err), &err);
	free(big);
	free(bytes);

	/* An upload left open. */
	assert_status(CF_OK, cf_store_upload_begin(st, TENANT, "app/staged", 1,
						   ALICE, NOW, &up, &err),
		      &err);
	snprintf(envs[0].recipient, sizeof(envs[0].recipient), "%.64s", AGENT_A);
	envs[0].der = (const unsigned char *)"staged";
	envs[0].len = 6;
	assert_status(CF_OK, cf_store_upload_add(st, TENANT, up.id, ALICE, NOW,
						 envs, 1, NULL, &err), &err);
	memcpy(upload_id, up.id, sizeof(upload_id));

	/* A command to A and B, answered by A. */
	for (int i = 0; i < 2; i++) {
		snprintf(envs[i].recipient, sizeof(envs[i].recipient), "%s",
			 ab[i]);
		envs[i].der = cmd;
		envs[i].len = sizeof(cmd) - 1;
	}
	a = audit_of(TENANT, "command.post", "");
	assert_status(CF_OK, cf_store_cmd_post(st, TENANT, fp_of('3') + 32,
					       ALICE, NOW, NOW + 600, 1, envs,
					       2, &a, &err), &err);
	a = audit_of(TENANT, "command.answer", "");
	assert_status(CF_OK, cf_store_cmd_answer(st, TENANT, fp_of('3') + 32,
						 AGENT_A, NOW, res,
						 sizeof(res) - 1, &a, sender,
						 &err), &err);
	a = audit_of(TENANT, "secret.read", "app/db");
	assert_status(CF_OK, cf_store_audit_append(st, &a, &err), &err);
	/* An entry of no tenant (a refusal before one was known). */
	a = audit_of("", "auth.refused", "");
	assert_status(CF_OK, cf_store_audit_append(st, &a, &err), &err);
}

/* ---- checks ---------------------------------------------------------------- */

static void same_feed(cf_store *x, cf_store *y, const char *tenant,
		      const char *agent, int64_t *cursor)
{
	cf_feed_item *a = NULL, *b = NULL;
	size_t na = 0, nb = 0;
	int64_t ca = 0, cb = 0;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_store_feed(x, tenant, agent, 0, 0, &a, &na,
					   &ca, &err), &err);
	assert_status(CF_OK, cf_store_feed(y, tenant, agent, 0, 0, &b, &nb,
					   &cb, &err), &err);
	assert_int_equal(na, nb);
	assert_true(na > 0);
	assert_int_equal(ca, cb);
	for (size_t i = 0; i < na; i++) {
		assert_int_equal(a[i].seq, b[i].seq);
		assert_string_equal(a[i].name, b[i].name);
		assert_int_equal(a[i].version, b[i].version);
		assert_int_equal(a[i].deleted, b[i].deleted);
		assert_int_equal(a[i].len, b[i].len);
		if (a[i].len > 0)
			assert_memory_equal(a[i].der, b[i].der, a[i].len);
	}
	cf_feed_items_free(a, na);
	cf_feed_items_free(b, nb);
	*cursor = ca;
}

static int64_t chain_length(cf_store *st, const char *tenant)
{
	cf_audit_filter f = { .limit = 10000 };
	cf_audit_entry *e = NULL;
	char prev[65];
	size_t n = 0;
	cf_error err = { 0 };

	memcpy(prev, cf_audit_genesis, sizeof(prev));
	assert_status(CF_OK, cf_store_audit_list(st, tenant, &f, &e, &n, &err),
		      &err);
	for (size_t i = 0; i < n; i++) {
		assert_status(CF_OK, cf_audit_check(&e[i], prev, &err), &err);
		memcpy(prev, e[i].hash, sizeof(prev));
	}
	free(e);
	return (int64_t)n;
}

static int progress_calls;

static void progress(void *ctx, const char *table, int64_t rows)
{
	(void)ctx;
	assert_non_null(table);
	assert_true(rows > 0);
	progress_calls++;
}

/* Copies a filled store of kind `from` into one of kind `to`; checks. */
static void copy_between(void **state, int from_pg, int to_pg)
{
	fx *f = *state;
	fx_db *src_db = new_db(f, from_pg), *dst_db = new_db(f, to_pg);
	cf_store *src = open_db(src_db), *dst = open_db(dst_db);
	cf_store_copy_report rep, again;
	cf_store_chain_report chains;
	cf_store_stats s1, s2;
	cf_enroll_row *e1 = NULL, *e2 = NULL;
	cf_cmd_item *items = NULL;
	cf_feed_item *feed = NULL;
	cf_token_row tok;
	cf_audit_entry a;
	size_t n1 = 0, n2 = 0, n = 0;
	int64_t cursor_a = 0, cursor_c = 0, cursor = 0, len_before;
	cf_error err = { 0 };
	const char *a_only[] = { AGENT_A };

	fill(src);
	progress_calls = 0;
	assert_status(CF_OK, cf_store_copy(src, dst, progress, NULL, &rep,
					   &err), &err);
	assert_true(progress_calls >= 6);
	assert_int_equal(rep.tables[0].rows, 2);           /* tenants */
	assert_int_equal(rep.tables[6].rows, 2 + 2 + 1 + BIG + 1); /* envelopes */
	assert_status(CF_OK, cf_store_copy_verify(src, dst, &rep, &chains,
						  &err), &err);
	assert_int_equal(chains.chains, 3); /* two tenants and "" */

	/* The same store, seen through store.h. */
	assert_status(CF_OK, cf_store_stats_get(src, &s1, &err), &err);
	assert_status(CF_OK, cf_store_stats_get(dst, &s2, &err), &err);
	assert_memory_equal(&s1, &s2, sizeof(s1));
	same_feed(src, dst, TENANT, AGENT_A, &cursor_a);
	same_feed(src, dst, TENANT, AGENT_B, &cursor);
	same_feed(src, dst, OTHER, AGENT_C, &cursor_c);
	assert_status(CF_OK, cf_store_enroll_list(src, TENANT, NULL, &e1, &n1,
						  &err), &err);
	assert_status(CF_OK, cf_store_enroll_list(dst, TENANT, NULL, &e2, &n2,
						  &err), &err);
	assert_int_equal(n1, 3);
	assert_int_equal(n2, 3);
	for (size_t i = 0; i < n1; i++) {
		assert_string_equal(e1[i].id, e2[i].id);
		assert_string_equal(e1[i].status, e2[i].status);
	}
	cf_enroll_rows_free(e1, n1);
	cf_enroll_rows_free(e2, n2);
	assert_status(CF_OK, cf_store_token_get(dst, "11111111111111111111111111111111",
						&tok, &err), &err);
	assert_int_equal(tok.used, 3);
	assert_int_equal(tok.envelope_len, 19);
	cf_token_row_clear(&tok);
	assert_status(CF_OK, cf_store_token_get(dst, "22222222222222222222222222222222",
						&tok, &err), &err);
	assert_int_equal(tok.revoked, 1);
	assert_null(tok.envelope);
	cf_token_row_clear(&tok);

	/* An agent goes on from its cursor: nothing again, then only what
	 * is new, numbered after everything the source gave out. */
	assert_status(CF_OK, cf_store_feed(dst, TENANT, AGENT_A, cursor_a, 0,
					   &feed, &n, &cursor, &err), &err);
	assert_int_equal(n, 0);
	assert_int_equal(cursor, cursor_a);
	put(dst, TENANT, "app/db", 4, a_only, 1);
	assert_status(CF_OK, cf_store_feed(dst, TENANT, AGENT_A, cursor_a, 0,
					   &feed, &n, &cursor, &err), &err);
	assert_int_equal(n, 1);
	assert_int_equal(feed[0].version, 4);
	assert_true(feed[0].seq > s1.feed_seq);
	cf_feed_items_free(feed, n);
	/* Versions go on too. */
	{
		cf_secret_row latest;

		assert_status(CF_OK, cf_store_secret_latest(dst, TENANT,
							    "app/gone", &latest,
							    &err), &err);
		assert_int_equal(latest.version, 2);
		assert_int_equal(latest.deleted, 1);
	}

	/* The mailbox: B's command still pending, new posts numbered on. */
	assert_status(CF_OK, cf_store_cmd_pending(dst, TENANT, AGENT_B, 0, NOW,
						  10, &items, &n, &cursor,
						  &err), &err);
	assert_int_equal(n, 1);
	{
		int64_t old_seq = items[0].seq;
		cf_envelope_in env;

		cf_cmd_items_free(items, n);
		snprintf(env.recipient, sizeof(env.recipient), "%.64s", AGENT_B);
		env.der = (const unsigned char *)"again";
		env.len = 5;
		a = audit_of(TENANT, "command.post", "");
		assert_status(CF_OK, cf_store_cmd_post(dst, TENANT,
						       fp_of('4') + 32, ALICE,
						       NOW, NOW + 600, 1, &env,
						       1, &a, &err), &err);
		assert_status(CF_OK, cf_store_cmd_pending(dst, TENANT, AGENT_B,
							  old_seq, NOW, 10,
							  &items, &n, &cursor,
							  &err), &err);
		assert_int_equal(n, 1);
		assert_true(items[0].seq > old_seq);
		cf_cmd_items_free(items, n);
	}
	/* The open upload is there. */
	{
		cf_upload_row up;

		assert_status(CF_OK, cf_store_upload_get(dst, TENANT,
							 upload_id, NOW, &up,
							 &err), &err);
		assert_int_equal(up.envelopes, 1);
		assert_string_equal(up.name, "app/staged");
	}

	/* The chains go on from the copied heads. */
	len_before = chain_length(src, TENANT);
	a = audit_of(TENANT, "secret.read", "app/db");
	assert_status(CF_OK, cf_store_audit_append(dst, &a, &err), &err);
	assert_int_equal(chain_length(dst, TENANT), len_before + 3);

	/* A non-empty target is refused, untouched. */
	assert_status(CF_OK, cf_store_survey(dst, &again, &err), &err);
	assert_status(CF_ERR_EXISTS, cf_store_copy(src, dst, NULL, NULL, &rep,
						   &err), &err);
	assert_non_null(strstr(err.msg, "new"));
	{
		cf_store_copy_report after;

		assert_status(CF_OK, cf_store_survey(dst, &after, &err), &err);
		for (int t = 0; t < CF_STORE_COPY_TABLES; t++) {
			assert_int_equal(after.tables[t].rows,
					 again.tables[t].rows);
			assert_memory_equal(after.tables[t].digest,
					    again.tables[t].digest, 32);
		}
	}
	cf_store_free(dst);
	cf_store_free(src);
}

static void sqlite_to_sqlite(void **state)
{
	copy_between(state, 0, 0);
}

static void sqlite_to_pg(void **state)
{
	copy_between(state, 0, 1);
}

static void pg_to_sqlite(void **state)
{
	copy_between(state, 1, 0);
}

static void pg_to_pg(void **state)
{
	copy_between(state, 1, 1);
}

/* A copy changed behind its back fails verification, at the table. */
static void verify_catches_changes(void **state)
{
	fx *f = *state;
	int pg = pg_url != NULL;
	fx_db *src_db = new_db(f, 0), *dst_db = new_db(f, pg);
	cf_store *src = open_db(src_db), *dst = open_db(dst_db);
	cf_store_copy_report rep;
	cf_error err = { 0 };

	fill(src);
	assert_status(CF_OK, cf_store_copy(src, dst, NULL, NULL, &rep, &err),
		      &err);
	assert_status(CF_OK, cf_store_copy_verify(src, dst, &rep, NULL, &err),
		      &err);
	/* One byte of one envelope. */
	raw_sql(dst_db, pg ? "UPDATE envelopes SET der = '\\x00'::bytea "
			     "WHERE name = 'app/db' AND version = 2" :
			     "UPDATE envelopes SET der = x'00' "
			     "WHERE name = 'app/db' AND version = 2");
	assert_status(CF_ERR_STORE, cf_store_copy_verify(src, dst, &rep, NULL,
							 &err), &err);
	assert_non_null(strstr(err.msg, "envelopes"));
	/* A row less. */
	raw_sql(dst_db, "DELETE FROM cert_groups WHERE grp = 'db'");
	assert_status(CF_ERR_STORE, cf_store_copy_verify(src, dst, &rep, NULL,
							 &err), &err);
	assert_non_null(strstr(err.msg, "cert_groups"));
	cf_store_free(dst);
	cf_store_free(src);
}

/* An empty store copies (every table empty, sequences at 0). */
static void empty_store(void **state)
{
	fx *f = *state;
	fx_db *src_db = new_db(f, pg_url != NULL), *dst_db = new_db(f, 0);
	cf_store *src = open_db(src_db), *dst = open_db(dst_db);
	cf_store_copy_report rep;
	cf_store_chain_report chains;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_store_copy(src, dst, NULL, NULL, &rep, &err),
		      &err);
	for (int t = 0; t < CF_STORE_COPY_TABLES - 1; t++)
		assert_int_equal(rep.tables[t].rows, 0);
	assert_int_equal(rep.tables[CF_STORE_COPY_TABLES - 1].rows, 2);
	assert_status(CF_OK, cf_store_copy_verify(src, dst, &rep, &chains,
						  &err), &err);
	assert_int_equal(chains.chains, 0);
	assert_status(CF_ERR_USAGE, cf_store_copy(src, src, NULL, NULL, &rep,
						  &err), &err);
	cf_store_free(dst);
	cf_store_free(src);
}

/* Every table of the schema is one the copy moves: a migration step
 * that adds a table must add it to the copy (store_backend.h). */
static void every_table_copied(void **state)
{
	fx *f = *state;
	fx_db *d = new_db(f, 0);
	cf_store *st = open_db(d);
	cf_store_copy_report rep;
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	cf_error err = { 0 };
	int tables = 0;

	assert_status(CF_OK, cf_store_survey(st, &rep, &err), &err);
	cf_store_free(st);
	assert_int_equal(sqlite3_open(d->url + 7, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master "
					    "WHERE type = 'table' AND name NOT "
					    "LIKE 'sqlite_%'", -1, &q, NULL),
			 SQLITE_OK);
	while (sqlite3_step(q) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(q, 0);
		int found = 0;

		for (int t = 0; t < CF_STORE_COPY_TABLES; t++)
			found |= strcmp(rep.tables[t].name, name) == 0;
		if (!found)
			fail_msg("table %s is not copied by cf_store_copy", name);
		tables++;
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	/* All but "sequences", which names no table. */
	assert_int_equal(tables, CF_STORE_COPY_TABLES - 1);
}

int main(void)
{
	const struct CMUnitTest sqlite_tests[] = {
		cmocka_unit_test_setup_teardown(sqlite_to_sqlite, setup,
						teardown),
		cmocka_unit_test_setup_teardown(verify_catches_changes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(empty_store, setup, teardown),
		cmocka_unit_test_setup_teardown(every_table_copied, setup,
						teardown),
	};
	const struct CMUnitTest pg_tests[] = {
		cmocka_unit_test_setup_teardown(sqlite_to_pg, setup, teardown),
		cmocka_unit_test_setup_teardown(pg_to_sqlite, setup, teardown),
		cmocka_unit_test_setup_teardown(pg_to_pg, setup, teardown),
		cmocka_unit_test_setup_teardown(verify_catches_changes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(empty_store, setup, teardown),
	};

	pg_url = getenv("COFFER_TEST_STORE_URL");
	if (pg_url != NULL && pg_url[0] == '\0')
		pg_url = NULL;
	if (pg_url != NULL)
		return cmocka_run_group_tests(pg_tests, fx_group_setup, NULL);
	return cmocka_run_group_tests(sqlite_tests, fx_group_setup, NULL);
}
