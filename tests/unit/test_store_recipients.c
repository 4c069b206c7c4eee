/*
 * test_store_recipients.c - who holds a version, in the store (store.h,
 * "removal" and "sync"): the recipients of a version, the names a
 * recipient has envelopes of, purging one recipient's envelopes and feed
 * entries, and adding recipients to a version,
 * on SQLite in a temp dir or on the database COFFER_TEST_STORE_URL names
 * (tests/pg runs it on PostgreSQL).
 */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "store.h"

typedef struct fx_db {
	char dir[64];
	cf_store *st;
	char tenant[65];
} fx_db;

/* fixture.c: one repeated character as a fingerprint. */
#define fp_of fx_fp_of

#define WRITER fp_of('b')
#define AGENT_A fp_of('c')
#define AGENT_B fp_of('d')

static cf_audit_entry audit_of(const fx_db *db, const char *action)
{
	cf_audit_entry e;

	memset(&e, 0, sizeof(e));
	memcpy(e.tenant, db->tenant, sizeof(db->tenant));
	memcpy(e.actor, WRITER, 65);
	snprintf(e.action, sizeof(e.action), "%s", action);
	return e;
}

static int setup(void **state)
{
	static int round;
	fx_db *db = calloc(1, sizeof(*db));
	const char *url = getenv("COFFER_TEST_STORE_URL");
	char path[128];
	cf_error err = { 0 };
	cf_audit_entry a;
	cf_cert_row row;

	assert_non_null(db);
	/* A tenant of its own per test: a shared database keeps old rows. */
	snprintf(db->tenant, sizeof(db->tenant), "%064x", 0xa0 + round++);
	snprintf(db->dir, sizeof(db->dir), "/tmp/test_store_recipients.XXXXXX");
	assert_non_null(mkdtemp(db->dir));
	snprintf(path, sizeof(path), "%s/coffer.db", db->dir);
	assert_status(CF_OK, cf_store_open(url && *url ? url : path,
					   CF_STORE_CREATE, &db->st, &err),
		      &err);
	a = audit_of(db, "tenant.add");
	assert_status(CF_OK, cf_store_tenant_add(db->st, db->tenant, "ROOT",
						 &a, &err), &err);
	/* A is in the directory, B is not. */
	memset(&row, 0, sizeof(row));
	memcpy(row.tenant, db->tenant, sizeof(db->tenant));
	memcpy(row.fp, AGENT_A, 65);
	snprintf(row.kind, sizeof(row.kind), "agent");
	snprintf(row.name, sizeof(row.name), "web-1");
	row.groups = "web";
	row.pem = "PEM";
	a = audit_of(db, "cert.add");
	assert_status(CF_OK, cf_store_cert_put(db->st, &row, &a, &err), &err);
	*state = db;
	return 0;
}

static int teardown(void **state)
{
	fx_db *db = *state;

	cf_store_free(db->st);
	fx_remove_tree(db->dir);
	free(db);
	return 0;
}

static void put(fx_db *db, const char *name, int64_t version,
		const char *const *to, size_t n)
{
	cf_envelope_in envs[4];
	cf_audit_entry a = audit_of(db, "secret.put");
	cf_error err = { 0 };

	for (size_t i = 0; i < n; i++) {
		memcpy(envs[i].recipient, to[i], 65);
		envs[i].der = (const unsigned char *)"0123456789";
		envs[i].len = 10;
	}
	assert_status(CF_OK, cf_store_secret_put(db->st, db->tenant, name,
						 version, WRITER, 1800000000,
						 envs, n, &a, NULL, &err), &err);
}

static void test_recipients(void **state)
{
	fx_db *db = *state;
	const char *both[] = { AGENT_A, AGENT_B, WRITER };
	const char *one[] = { AGENT_A, WRITER };
	cf_recipient_row *rows = NULL;
	int64_t v = 0;
	size_t n = 0;
	cf_error err = { 0 };

	put(db, "prod/db", 1, both, 3);
	put(db, "prod/db", 2, one, 2);
	assert_status(CF_OK, cf_store_secret_recipients(db->st, db->tenant,
		      "prod/db", 0, &v, &rows, &n, &err), &err);
	assert_int_equal(v, 2);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].fp, WRITER);  /* 'b' < 'c' */
	assert_string_equal(rows[1].fp, AGENT_A);
	assert_string_equal(rows[1].name, "web-1");
	assert_string_equal(rows[1].kind, "agent");
	assert_string_equal(rows[0].kind, "");
	free(rows);
	assert_status(CF_OK, cf_store_secret_recipients(db->st, db->tenant,
		      "prod/db", 1, &v, &rows, &n, &err), &err);
	assert_int_equal(n, 3);
	free(rows);
	assert_status(CF_ERR_NOT_FOUND, cf_store_secret_recipients(db->st,
		      db->tenant, "prod/none", 0, &v, &rows, &n, &err), &err);
	assert_status(CF_ERR_NOT_FOUND, cf_store_secret_recipients(db->st,
		      db->tenant, "prod/db", 7, &v, &rows, &n, &err), &err);
}

static void test_purge(void **state)
{
	fx_db *db = *state;
	const char *to[] = { AGENT_A, AGENT_B, WRITER };
	cf_audit_entry a = audit_of(db, "envelope.purge");
	char (*names)[256] = NULL;
	cf_feed_item *items = NULL, item;
	cf_recipient_row *rows = NULL;
	int64_t removed = -1, cursor = 0, v = 0;
	size_t n = 0;
	cf_error err = { 0 };

	put(db, "prod/a", 1, to, 3);
	put(db, "prod/a", 2, to, 3);
	put(db, "prod/b", 1, to, 3);
	put(db, "prod/c", 1, to + 1, 2);
	assert_status(CF_OK, cf_store_recipient_names(db->st, db->tenant,
		      AGENT_A, &names, &n, &err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "prod/a");
	assert_string_equal(names[1], "prod/b");
	/* Purge A's envelopes of prod/a only: both versions go. */
	assert_status(CF_OK, cf_store_envelopes_purge(db->st, db->tenant,
		      AGENT_A, (const char (*)[256])names, 1, &a, &removed,
		      &err), &err);
	assert_int_equal(removed, 2);
	free(names);
	assert_status(CF_ERR_NOT_FOUND, cf_store_envelope_get(db->st,
		      db->tenant, "prod/a", 1, AGENT_A, &item, &err), &err);
	assert_status(CF_OK, cf_store_envelope_get(db->st, db->tenant, "prod/b",
		      0, AGENT_A, &item, &err), &err);
	cf_feed_item_clear(&item);
	assert_status(CF_OK, cf_store_envelope_get(db->st, db->tenant, "prod/a",
		      0, AGENT_B, &item, &err), &err);
	cf_feed_item_clear(&item);
	/* A's feed no longer names prod/a; B's still does. */
	assert_status(CF_OK, cf_store_feed(db->st, db->tenant, AGENT_A, 0, 100,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].name, "prod/b");
	cf_feed_items_free(items, n);
	assert_status(CF_OK, cf_store_secret_recipients(db->st, db->tenant,
		      "prod/a", 0, &v, &rows, &n, &err), &err);
	assert_int_equal(n, 2);
	free(rows);
	/* Again: nothing left to remove, no error. */
	assert_status(CF_OK, cf_store_recipient_names(db->st, db->tenant,
		      AGENT_A, &names, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_status(CF_OK, cf_store_envelopes_purge(db->st, db->tenant,
		      AGENT_A, (const char (*)[256])names, n, &a, &removed,
		      &err), &err);
	assert_int_equal(removed, 1);
	assert_status(CF_OK, cf_store_envelopes_purge(db->st, db->tenant,
		      AGENT_A, (const char (*)[256])names, n, &a, &removed,
		      &err), &err);
	assert_int_equal(removed, 0);
	free(names);
	assert_status(CF_OK, cf_store_recipient_names(db->st, db->tenant,
		      AGENT_A, &names, &n, &err), &err);
	assert_int_equal(n, 0);
	free(names);
}

static void test_version_add(void **state)
{
	fx_db *db = *state;
	const char *first[] = { AGENT_A, WRITER };
	cf_audit_entry a = audit_of(db, "secret.add");
	cf_envelope_in envs[2];
	char (*woken)[65] = NULL;
	cf_feed_item *items = NULL;
	int64_t added = -1, cursor = 0;
	size_t n = 0, n_woken = 0;
	cf_error err = { 0 };

	put(db, "prod/db", 1, first, 2);
	/* A and B: A has one already, B is new. */
	for (int i = 0; i < 2; i++) {
		memcpy(envs[i].recipient, i == 0 ? AGENT_A : AGENT_B, 65);
		envs[i].der = (const unsigned char *)"abcdefgh";
		envs[i].len = 8;
	}
	a = audit_of(db, "secret.add");
	assert_status(CF_OK, cf_store_version_add(db->st, db->tenant, "prod/db",
		      1, 1800000100, envs, 2, &a, &added, &woken, &n_woken,
		      &err), &err);
	assert_int_equal(added, 1);
	assert_int_equal(n_woken, 1);
	assert_string_equal(woken[0], AGENT_B);
	free(woken);
	/* Again: nothing to add. */
	assert_status(CF_OK, cf_store_version_add(db->st, db->tenant, "prod/db",
		      1, 1800000100, envs, 2, &a, &added, NULL, NULL, &err),
		      &err);
	assert_int_equal(added, 0);
	/* B's feed shows version 1 now. */
	assert_status(CF_OK, cf_store_feed(db->st, db->tenant, AGENT_B, 0, 10,
					   &items, &n, &cursor, &err), &err);
	assert_int_equal(n, 1);
	assert_int_equal(items[0].version, 1);
	assert_int_equal(items[0].len, 8);
	cf_feed_items_free(items, n);
	/* A newer version exists: adding to the old one is a conflict. */
	put(db, "prod/db", 2, first, 2);
	assert_status(CF_ERR_CONFLICT, cf_store_version_add(db->st, db->tenant,
		      "prod/db", 1, 1800000200, envs + 1, 1, &a, &added, NULL,
		      NULL, &err), &err);
	assert_status(CF_ERR_NOT_FOUND, cf_store_version_add(db->st,
		      db->tenant, "prod/none", 1, 1800000200, envs, 1, &a,
		      &added, NULL, NULL, &err), &err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_recipients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version_add, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
