/*
 * test_store_cmd.c - the command mailbox of the store (store.h, "operator
 * commands") on a real database: SQLite in a temp dir, or the database
 * COFFER_TEST_STORE_URL names (tests/pg runs it on PostgreSQL).
 *
 * Envelopes are opaque to the store, so they are made-up bytes here; what
 * is checked is the contract: who gets what and in which order, answers
 * once per agent, the pending limit, expiry and retention, the restored
 * database's cursor, and that every change is in the audit chain.
 */
#include "fixture.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "store.h"

typedef struct fx_db {
	char dir[64];
	cf_store *st;
} fx_db;

/* fixture.c: one repeated character as a fingerprint. */
#define fp_of fx_fp_of

#define TENANT fp_of('a')
#define ALICE fp_of('b')
#define BOB fp_of('f')
#define AGENT_A fp_of('c')
#define AGENT_B fp_of('d')
#define AGENT_C fp_of('e')
#define NOW 1800000000

static cf_audit_entry audit_of(const char *action, const char *actor)
{
	cf_audit_entry e;

	memset(&e, 0, sizeof(e));
	snprintf(e.tenant, sizeof(e.tenant), "%.64s", TENANT);
	snprintf(e.actor, sizeof(e.actor), "%.64s", actor);
	snprintf(e.source, sizeof(e.source), "127.0.0.1:4000");
	snprintf(e.action, sizeof(e.action), "%s", action);
	return e;
}

static int remove_entry(const char *path, const struct stat *st, int type,
			struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static int setup(void **state)
{
	fx_db *db = calloc(1, sizeof(*db));
	const char *url = getenv("COFFER_TEST_STORE_URL");
	char path[128];
	cf_error err = { 0 };
	cf_audit_entry a = audit_of("tenant.add", ALICE);

	assert_non_null(db);
	snprintf(db->dir, sizeof(db->dir), "/tmp/test_store_cmd.XXXXXX");
	assert_non_null(mkdtemp(db->dir));
	snprintf(path, sizeof(path), "%s/coffer.db", db->dir);
	assert_status(CF_OK, cf_store_open(url && *url ? url : path,
					   CF_STORE_CREATE, &db->st, &err),
		      &err);
	/* A shared database (PostgreSQL) keeps the tenant of a prior test. */
	if (cf_store_tenant_add(db->st, TENANT, "-----ROOT-----", &a, &err) !=
	    CF_OK)
		assert_int_equal(err.code, CF_ERR_EXISTS);
	*state = db;
	return 0;
}

static int teardown(void **state)
{
	fx_db *db = *state;

	/* Leave nothing for the next test on a shared database. */
	cf_store_cmd_expire(db->st, INT64_MAX / 2, 0, NULL, NULL);
	cf_store_free(db->st);
	if (nftw(db->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return -1;
	free(db);
	return 0;
}

/* A command id made of one repeated hex digit and a number. */
static const char *id_of(int n)
{
	static char bufs[8][33];
	static int next;
	char *b = bufs[next++ % 8];

	snprintf(b, 33, "%032x", n);
	return b;
}

static cf_status post(cf_store *st, const char *id, const char *sender,
		      int64_t expires, int create,
		      const char *const *recipients, size_t n, cf_error *err)
{
	cf_envelope_in envs[4];
	unsigned char der[4][48];
	cf_audit_entry a = audit_of("cmd.send", sender);

	/* The id's tail names the envelope; a malformed id is shorter. */
	const char *tail = strlen(id) > 24 ? id + 24 : id;

	assert_true(n <= 4);
	for (size_t i = 0; i < n; i++) {
		int w = snprintf((char *)der[i], sizeof(der[i]), "cmd %.8s to %c",
				 tail, recipients[i][0]);

		snprintf(envs[i].recipient, sizeof(envs[i].recipient), "%s",
			 recipients[i]);
		envs[i].der = der[i];
		envs[i].len = (size_t)w;
	}
	return cf_store_cmd_post(st, TENANT, id, sender, NOW, expires, create,
				 envs, n, &a, err);
}

static cf_status answer(cf_store *st, const char *id, const char *agent,
			char sender[65], cf_error *err)
{
	cf_audit_entry a = audit_of("cmd.result", agent);
	char der[32];
	int w = snprintf(der, sizeof(der), "answer of %c", agent[0]);

	return cf_store_cmd_answer(st, TENANT, id, agent, NOW + 1,
				   (const unsigned char *)der, (size_t)w, &a,
				   sender, err);
}

static void pending(cf_store *st, const char *agent, int64_t since,
		    int64_t now, size_t expect, int64_t *cursor)
{
	cf_cmd_item *items = NULL;
	size_t n = 0;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_store_cmd_pending(st, TENANT, agent, since, now,
						  100, &items, &n, cursor,
						  &err), &err);
	assert_int_equal(n, expect);
	for (size_t i = 0; i < n; i++) {
		char want[48];

		snprintf(want, sizeof(want), "cmd %.8s to %c", items[i].id + 24,
			 agent[0]);
		assert_int_equal(items[i].len, strlen(want));
		assert_memory_equal(items[i].der, want, items[i].len);
		assert_string_equal(items[i].peer, ALICE);
		if (i > 0)
			assert_true(items[i].seq > items[i - 1].seq);
	}
	cf_cmd_items_free(items, n);
}

static void test_post_fetch_answer(void **state)
{
	fx_db *db = *state;
	const char *to[] = { AGENT_A, AGENT_B };
	const char *id = id_of(1);
	char sender[65];
	cf_cmd_item *items = NULL;
	size_t n = 0;
	cf_cmd_row row;
	int64_t cursor = -1, cursor2 = -1;
	cf_error err = { 0 };

	assert_status(CF_OK, post(db->st, id, ALICE, NOW + 30, 1, to, 2, &err),
		      &err);
	pending(db->st, AGENT_A, 0, NOW, 1, &cursor);
	assert_true(cursor > 0);
	/* Past the cursor nothing new; C was not addressed at all. */
	pending(db->st, AGENT_A, cursor, NOW, 0, &cursor2);
	assert_int_equal(cursor2, cursor);
	pending(db->st, AGENT_C, 0, NOW, 0, NULL);

	assert_status(CF_OK, answer(db->st, id, AGENT_A, sender, &err), &err);
	assert_string_equal(sender, ALICE);
	/* Answered: no longer pending for A, still for B. */
	pending(db->st, AGENT_A, 0, NOW, 0, NULL);
	pending(db->st, AGENT_B, 0, NOW, 1, NULL);
	assert_status(CF_ERR_EXISTS, answer(db->st, id, AGENT_A, sender, &err),
		      &err);
	assert_status(CF_ERR_NOT_FOUND, answer(db->st, id, AGENT_C, sender,
					       &err), &err);

	assert_status(CF_OK, cf_store_cmd_get(db->st, TENANT, id, &row, &err),
		      &err);
	assert_int_equal(row.recipients, 2);
	assert_int_equal(row.answered, 1);
	assert_string_equal(row.sender, ALICE);
	assert_int_equal(row.expires, NOW + 30);

	assert_status(CF_OK, cf_store_cmd_answers(db->st, TENANT, id, 0, 100,
						  &items, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_int_equal(items[0].seq, 1);
	assert_string_equal(items[0].peer, AGENT_A);
	assert_int_equal(items[0].answered, NOW + 1);
	assert_memory_equal(items[0].der, "answer of c", 11);
	cf_cmd_items_free(items, n);

	assert_status(CF_OK, answer(db->st, id, AGENT_B, sender, &err), &err);
	/* Answers after the first: only B's, numbered 2. */
	assert_status(CF_OK, cf_store_cmd_answers(db->st, TENANT, id, 1, 100,
						  &items, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_int_equal(items[0].seq, 2);
	assert_string_equal(items[0].peer, AGENT_B);
	cf_cmd_items_free(items, n);

	assert_status(CF_OK, cf_store_cmd_recipients(db->st, TENANT, id,
						     &items, &n, &err), &err);
	assert_int_equal(n, 2);
	assert_null(items[0].der);
	assert_true(items[0].answered > 0 && items[1].answered > 0);
	cf_cmd_items_free(items, n);
}

static void test_refusals(void **state)
{
	fx_db *db = *state;
	const char *to_a[] = { AGENT_A };
	const char *to_c[] = { AGENT_C };
	const char *to_ac[] = { AGENT_A, AGENT_C };
	const char *twice[] = { AGENT_B, AGENT_B };
	const char *id = id_of(2);
	cf_cmd_row row;
	cf_error err = { 0 };

	assert_status(CF_OK, post(db->st, id, ALICE, NOW + 30, 1, to_a, 1, &err),
		      &err);
	/* The same id again: refused, and the first stays as it was. */
	assert_status(CF_ERR_EXISTS, post(db->st, id, ALICE, NOW + 30, 1, to_c,
					  1, &err), &err);
	/* Appending: only its sender, only new recipients, all or none. */
	assert_status(CF_ERR_NOT_FOUND, post(db->st, id, BOB, 0, 0, to_c, 1,
					     &err), &err);
	assert_status(CF_ERR_EXISTS, post(db->st, id, ALICE, 0, 0, to_ac, 2,
					  &err), &err);
	pending(db->st, AGENT_C, 0, NOW, 0, NULL);
	assert_status(CF_OK, post(db->st, id, ALICE, 0, 0, to_c, 1, &err), &err);
	pending(db->st, AGENT_C, 0, NOW, 1, NULL);
	assert_status(CF_OK, cf_store_cmd_get(db->st, TENANT, id, &row, &err),
		      &err);
	assert_int_equal(row.recipients, 2);
	/* Checked before the database: one recipient twice, a bad id. */
	assert_status(CF_ERR_EXISTS, post(db->st, id_of(3), ALICE, NOW + 30, 1,
					  twice, 2, &err), &err);
	assert_status(CF_ERR_USAGE, post(db->st, "not-an-id", ALICE, NOW + 30, 1,
					 to_a, 1, &err), &err);
	assert_status(CF_ERR_NOT_FOUND, cf_store_cmd_get(db->st, TENANT,
							 id_of(3), &row, &err),
		      &err);
}

static void test_pending_limit(void **state)
{
	fx_db *db = *state;
	const char *to[] = { AGENT_A };
	char sender[65];
	cf_error err = { 0 };
	int i;

	for (i = 0; i < CF_STORE_CMD_PENDING_MAX; i++)
		assert_status(CF_OK, post(db->st, id_of(100 + i), ALICE,
					  NOW + 30, 1, to, 1, &err), &err);
	assert_status(CF_ERR_LIMIT, post(db->st, id_of(100 + i), ALICE,
					 NOW + 30, 1, to, 1, &err), &err);
	assert_non_null(strstr(err.msg, "pending"));
	/* One answered makes room for one more. */
	assert_status(CF_OK, answer(db->st, id_of(100), AGENT_A, sender, &err),
		      &err);
	assert_status(CF_OK, post(db->st, id_of(100 + i), ALICE, NOW + 30, 1,
				  to, 1, &err), &err);
}

static void test_expiry(void **state)
{
	fx_db *db = *state;
	const char *to[] = { AGENT_A };
	cf_cmd_row *rows = NULL;
	cf_cmd_item *items = NULL;
	size_t n = 0;
	int64_t removed = -1;
	char sender[65];
	cf_error err = { 0 };

	assert_status(CF_OK, post(db->st, id_of(7), ALICE, NOW + 10, 1, to, 1,
				  &err), &err);
	assert_status(CF_OK, post(db->st, id_of(8), ALICE, NOW + 100, 1, to, 1,
				  &err), &err);
	pending(db->st, AGENT_A, 0, NOW + 10, 2, NULL);
	/* Past its expiry a command is no longer delivered ... */
	pending(db->st, AGENT_A, 0, NOW + 11, 1, NULL);
	/* ... but may still be answered (it may have started in time). */
	assert_status(CF_OK, answer(db->st, id_of(7), AGENT_A, sender, &err),
		      &err);
	/* Clean-up at NOW+50: envelopes of 7 dropped, rows kept. */
	assert_status(CF_OK, cf_store_cmd_expire(db->st, NOW + 50, 3600,
						 &removed, &err), &err);
	assert_int_equal(removed, 0);
	assert_status(CF_OK, cf_store_cmd_list(db->st, TENANT, ALICE, 0, 100,
					       &rows, &n, &err), &err);
	assert_int_equal(n, 2);
	free(rows);
	assert_status(CF_OK, cf_store_cmd_answers(db->st, TENANT, id_of(7), 0,
						  10, &items, &n, &err), &err);
	assert_int_equal(n, 1);
	cf_cmd_items_free(items, n);
	/* After the retention: 7 is gone with its answer; 8 stays. */
	assert_status(CF_OK, cf_store_cmd_expire(db->st, NOW + 10 + 3601, 3600,
						 &removed, &err), &err);
	assert_int_equal(removed, 1);
	assert_status(CF_OK, cf_store_cmd_list(db->st, TENANT, ALICE, 0, 100,
					       &rows, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].id, id_of(8));
	free(rows);
	assert_status(CF_ERR_NOT_FOUND, answer(db->st, id_of(7), AGENT_A,
					       sender, &err), &err);
}

static void test_restored_cursor(void **state)
{
	fx_db *db = *state;
	const char *to[] = { AGENT_A };
	int64_t cursor = 0, head = 0;
	cf_error err = { 0 };

	assert_status(CF_OK, post(db->st, id_of(9), ALICE, NOW + 30, 1, to, 1,
				  &err), &err);
	pending(db->st, AGENT_A, 0, NOW, 1, &head);
	/* An agent whose cursor is beyond anything ever given out. */
	pending(db->st, AGENT_A, head + 1000, NOW, 0, &cursor);
	assert_int_equal(cursor, head);
}

static void test_audit_and_list(void **state)
{
	fx_db *db = *state;
	const char *to[] = { AGENT_B };
	cf_audit_filter f = { 0 };
	cf_audit_entry *entries = NULL;
	cf_cmd_row *rows = NULL;
	size_t n = 0;
	char sender[65];
	cf_error err = { 0 };

	assert_status(CF_OK, post(db->st, id_of(11), ALICE, NOW + 30, 1, to, 1,
				  &err), &err);
	assert_status(CF_OK, post(db->st, id_of(12), BOB, NOW + 30, 1, to, 1,
				  &err), &err);
	assert_status(CF_OK, answer(db->st, id_of(11), AGENT_B, sender, &err),
		      &err);
	f.action = "cmd.";
	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &entries,
						 &n, &err), &err);
	assert_true(n >= 3);
	assert_string_equal(entries[n - 1].action, "cmd.result");
	assert_string_equal(entries[n - 1].object, id_of(11));
	assert_string_equal(entries[n - 1].actor, AGENT_B);
	free(entries);
	/* The whole chain, these entries included, still links up. */
	f.action = NULL;
	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &entries,
						 &n, &err), &err);
	for (size_t i = 0; i < n; i++)
		assert_status(CF_OK, cf_audit_check(&entries[i], i == 0 ?
			      cf_audit_genesis : entries[i - 1].hash, &err),
			      &err);
	free(entries);
	/* Each sender lists its own commands only. */
	assert_status(CF_OK, cf_store_cmd_list(db->st, TENANT, BOB, 0, 100,
					       &rows, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].id, id_of(12));
	assert_int_equal(rows[0].answered, 0);
	free(rows);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_post_fetch_answer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_limit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restored_cursor, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_audit_and_list, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
