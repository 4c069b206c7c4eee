/*
 * test_store_ack.c - the rollout part of the store (store.h "rollout"):
 * acknowledgements kept per agent and name, a version's recipients with
 * their directory rows, the envelopes still addressed to revoked
 * certificates, and the rollout totals of /metrics.  On a real database:
 * SQLite in a temp dir, or the one COFFER_TEST_STORE_URL names (tests/pg
 * runs it on PostgreSQL, where tests share one database: each uses names
 * of its own, and totals are compared with what they were before).
 *
 * Acks and envelopes are opaque to the store, so they are made-up bytes
 * here: what is checked is the contract (who may be stored, which ack
 * wins, what is exposed, what is counted), and the audit chain.
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
#define AGENT_A fp_of('c')
#define AGENT_B fp_of('d')
#define AGENT_C fp_of('e')    /* issued by ENROLLER */
#define ENROLLER fp_of('f')
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

static void put_cert(cf_store *st, const char *fp, const char *kind,
		     const char *name, const char *groups, const char *issuer,
		     const char *serial)
{
	cf_cert_row row;
	cf_error err = { 0 };

	memset(&row, 0, sizeof(row));
	snprintf(row.tenant, sizeof(row.tenant), "%.64s", TENANT);
	snprintf(row.fp, sizeof(row.fp), "%.64s", fp);
	snprintf(row.kind, sizeof(row.kind), "%.15s", kind);
	snprintf(row.name, sizeof(row.name), "%.64s", name);
	row.groups = (char *)groups;
	snprintf(row.issuer_fp, sizeof(row.issuer_fp), "%.64s", issuer);
	snprintf(row.serial, sizeof(row.serial), "%.16s", serial);
	row.not_after = NOW + 86400;
	row.pem = (char *)"-----CERT-----";
	row.created = NOW;
	assert_status(CF_OK, cf_store_cert_put(st, &row, NULL, &err), &err);
}

static int setup(void **state)
{
	fx_db *db = calloc(1, sizeof(*db));
	const char *url = getenv("COFFER_TEST_STORE_URL");
	char path[128];
	cf_error err = { 0 };
	cf_audit_entry a = audit_of("tenant.add", ALICE);

	assert_non_null(db);
	snprintf(db->dir, sizeof(db->dir), "/tmp/test_store_ack.XXXXXX");
	assert_non_null(mkdtemp(db->dir));
	snprintf(path, sizeof(path), "%s/coffer.db", db->dir);
	assert_status(CF_OK, cf_store_open(url && *url ? url : path,
					   CF_STORE_CREATE, &db->st, &err),
		      &err);
	if (cf_store_tenant_add(db->st, TENANT, "-----ROOT-----", &a, &err) !=
	    CF_OK)
		assert_int_equal(err.code, CF_ERR_EXISTS);
	put_cert(db->st, ALICE, "operator", "alice", "", TENANT, "01");
	put_cert(db->st, AGENT_A, "agent", "web-a", "web", TENANT, "0a");
	put_cert(db->st, AGENT_B, "agent", "web-b", "web,db", TENANT, "0b");
	put_cert(db->st, ENROLLER, "enroller", "enr", "", TENANT, "0e");
	put_cert(db->st, AGENT_C, "agent", "db-c", "db", ENROLLER, "0c");
	*state = db;
	return 0;
}

static int teardown(void **state)
{
	fx_db *db = *state;

	cf_store_free(db->st);
	if (nftw(db->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return -1;
	free(db);
	return 0;
}

/* Version `version` of name, one made-up envelope per recipient. */
static void put_version(cf_store *st, const char *name, int64_t version,
			const char *const *to, size_t n)
{
	cf_envelope_in envs[8];
	unsigned char der[8][32];
	cf_audit_entry a = audit_of("secret.put", ALICE);
	cf_error err = { 0 };

	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		int w = snprintf((char *)der[i], sizeof(der[i]), "0env %c v%d",
				 to[i][0], (int)version);

		der[i][0] = 0x30;
		snprintf(envs[i].recipient, sizeof(envs[i].recipient), "%.64s",
			 to[i]);
		envs[i].der = der[i];
		envs[i].len = (size_t)w;
	}
	assert_status(CF_OK, cf_store_secret_put(st, TENANT, name, version,
						 ALICE, NOW, envs, n, &a, NULL,
						 &err), &err);
}

static cf_ack_row ack_of(const char *agent, const char *name, int64_t version,
			 int64_t time, const char *result, const char *reason)
{
	static unsigned char der[4][64];
	static int next;
	unsigned char *d = der[next++ % 4];
	cf_ack_row r;
	int w;

	memset(&r, 0, sizeof(r));
	snprintf(r.agent, sizeof(r.agent), "%.64s", agent);
	snprintf(r.name, sizeof(r.name), "%.200s", name);
	r.version = version;
	r.time = time;
	snprintf(r.result, sizeof(r.result), "%s", result);
	snprintf(r.reason, sizeof(r.reason), "%s", reason);
	w = snprintf((char *)d, 64, "ack %c %s v%d %d", agent[0], result,
		     (int)version, (int)(time % 1000));
	r.der = d;
	r.len = (size_t)w;
	return r;
}

static int64_t put_acks(cf_store *st, const char *agent, const cf_ack_row *rows,
			size_t n)
{
	cf_audit_entry a = audit_of("secret.ack", agent);
	int64_t stored = -1;
	cf_error err = { 0 };

	assert_status(CF_OK, cf_store_ack_put(st, TENANT, agent, rows, n, NOW,
					      &a, &stored, &err), &err);
	return stored;
}

static void rollout(cf_store *st, cf_rollout_stats *out)
{
	cf_error err = { 0 };

	assert_status(CF_OK, cf_store_rollout_stats(st, out, &err), &err);
}

static void test_acks(void **state)
{
	fx_db *db = *state;
	const char *name = "ack/app";
	const char *v1[] = { ALICE, AGENT_A, AGENT_B, AGENT_C };
	const char *v2[] = { ALICE, AGENT_A, AGENT_B };
	cf_rollout_stats base, now;
	cf_ack_row rows[3], *got = NULL;
	cf_cert_row *recips = NULL;
	size_t n = 0;
	cf_error err = { 0 };

	rollout(db->st, &base);
	put_version(db->st, name, 1, v1, 4);
	/* Three agent recipients, none acknowledged: all behind.  The
	 * operator's own envelope is not counted. */
	rollout(db->st, &now);
	assert_int_equal(now.behind - base.behind, 3);
	assert_int_equal(now.up_to_date - base.up_to_date, 0);

	/* A's ack is stored; one for a name it never received is not. */
	rows[0] = ack_of(AGENT_A, name, 1, NOW - 10, "ok", "");
	rows[1] = ack_of(AGENT_A, "ack/never-sent", 1, NOW - 10, "ok", "");
	assert_int_equal(put_acks(db->st, AGENT_A, rows, 2), 1);
	assert_status(CF_OK, cf_store_ack_list(db->st, TENANT, name, &got, &n,
					       &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(got[0].agent, AGENT_A);
	assert_string_equal(got[0].name, name);
	assert_int_equal(got[0].version, 1);
	assert_int_equal(got[0].time, NOW - 10);
	assert_string_equal(got[0].result, "ok");
	assert_int_equal(got[0].received, NOW);
	assert_int_equal(got[0].len, rows[0].len);
	assert_memory_equal(got[0].der, rows[0].der, rows[0].len);
	cf_ack_rows_free(got, n);
	rollout(db->st, &now);
	assert_int_equal(now.up_to_date - base.up_to_date, 1);
	assert_int_equal(now.behind - base.behind, 2);

	/* An older ack does not replace a newer one; a later one of the same
	 * version does. */
	rows[0] = ack_of(AGENT_A, name, 1, NOW - 20, "failed", "older");
	assert_int_equal(put_acks(db->st, AGENT_A, rows, 1), 0);
	rows[0] = ack_of(AGENT_A, name, 1, NOW - 5, "failed", "disk full");
	assert_int_equal(put_acks(db->st, AGENT_A, rows, 1), 1);
	assert_status(CF_OK, cf_store_ack_list(db->st, TENANT, name, &got, &n,
					       &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(got[0].result, "failed");
	assert_string_equal(got[0].reason, "disk full");
	cf_ack_rows_free(got, n);
	rollout(db->st, &now);
	assert_int_equal(now.failed - base.failed, 1);
	assert_int_equal(now.up_to_date - base.up_to_date, 0);

	/* Version 2 leaves C out: A (acked v1) and B are behind. */
	put_version(db->st, name, 2, v2, 3);
	rollout(db->st, &now);
	assert_int_equal(now.behind - base.behind, 2);
	assert_int_equal(now.failed - base.failed, 0);
	rows[0] = ack_of(AGENT_B, name, 2, NOW, "ok", "");
	assert_int_equal(put_acks(db->st, AGENT_B, rows, 1), 1);
	/* An ack of an older version, later in time, loses to it. */
	rows[0] = ack_of(AGENT_B, name, 1, NOW + 50, "ok", "");
	assert_int_equal(put_acks(db->st, AGENT_B, rows, 1), 0);
	rollout(db->st, &now);
	assert_int_equal(now.up_to_date - base.up_to_date, 1);
	assert_int_equal(now.behind - base.behind, 1);

	/* The recipients of each version, with their directory rows. */
	assert_status(CF_OK, cf_store_recipient_certs(db->st, TENANT, name, 2,
						      &recips, &n, &err), &err);
	assert_int_equal(n, 3);
	assert_string_equal(recips[0].fp, ALICE);
	assert_string_equal(recips[0].kind, "operator");
	assert_string_equal(recips[1].fp, AGENT_A);
	assert_string_equal(recips[2].fp, AGENT_B);
	assert_string_equal(recips[2].groups, "web,db");
	assert_string_equal(recips[2].name, "web-b");
	assert_string_equal(recips[2].serial, "0b");
	assert_null(recips[2].pem);
	cf_cert_rows_free(recips, n);
	assert_status(CF_OK, cf_store_recipient_certs(db->st, TENANT, name, 1,
						      &recips, &n, &err), &err);
	assert_int_equal(n, 4);
	cf_cert_rows_free(recips, n);
	assert_status(CF_OK, cf_store_recipient_certs(db->st, TENANT, name, 9,
						      &recips, &n, &err), &err);
	assert_int_equal(n, 0);

	/* Deleted: no longer counted, its acks stay readable. */
	{
		cf_audit_entry a = audit_of("secret.delete", ALICE);

		assert_status(CF_OK, cf_store_secret_delete(db->st, TENANT, name,
							    ALICE, NOW, &a, NULL,
							    NULL, &err), &err);
	}
	rollout(db->st, &now);
	assert_int_equal(now.up_to_date - base.up_to_date, 0);
	assert_int_equal(now.behind - base.behind, 0);
	assert_int_equal(now.failed - base.failed, 0);
}

/* A cluster member's ack counts through the cluster key's feed entry. */
static void test_acks_via(void **state)
{
	fx_db *db = *state;
	const char *name = "ack/cluster";
	/* AGENT_C stands for the cluster key: the version's one agent
	 * recipient; AGENT_A and AGENT_B are members, no recipients. */
	const char *v1[] = { ALICE, AGENT_C };
	cf_audit_entry a = audit_of("secret.ack", AGENT_A);
	cf_ack_row rows[1], *got = NULL;
	int64_t stored = -1;
	size_t n = 0;
	cf_error err = { 0 };

	put_version(db->st, name, 1, v1, 2);
	rows[0] = ack_of(AGENT_A, name, 1, NOW - 3, "ok", "");
	/* Not a recipient, not through the cluster: skipped. */
	assert_int_equal(put_acks(db->st, AGENT_A, rows, 1), 0);
	/* Through a fingerprint without a feed entry of the name: skipped. */
	assert_status(CF_OK, cf_store_ack_put_via(db->st, TENANT, AGENT_A,
		AGENT_B, rows, 1, NOW, &a, &stored, &err), &err);
	assert_int_equal(stored, 0);
	/* Through the cluster key's entry: stored, under the member. */
	assert_status(CF_OK, cf_store_ack_put_via(db->st, TENANT, AGENT_A,
		AGENT_C, rows, 1, NOW, &a, &stored, &err), &err);
	assert_int_equal(stored, 1);
	assert_status(CF_OK, cf_store_ack_list(db->st, TENANT, name, &got, &n,
					       &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(got[0].agent, AGENT_A);
	cf_ack_rows_free(got, n);
	/* An empty via is the caller's mistake (NULL means none). */
	assert_status(CF_ERR_USAGE, cf_store_ack_put_via(db->st, TENANT, AGENT_A,
		"", rows, 1, NOW, &a, &stored, &err), &err);
}

static void test_exposed(void **state)
{
	fx_db *db = *state;
	const char *to1[] = { ALICE, AGENT_A, AGENT_B, AGENT_C };
	const char *to2[] = { ALICE, AGENT_A, AGENT_B };
	cf_exposed_row *x = NULL;
	size_t n = 0;
	cf_error err = { 0 };

	put_version(db->st, "exp/one", 1, to1, 4);
	put_version(db->st, "exp/one", 2, to2, 3);
	put_version(db->st, "other/two", 1, to2, 3);

	/* Nothing revoked, nothing exposed. */
	assert_status(CF_OK, cf_store_exposed(db->st, TENANT, "[]", "exp/", &x,
					      &n, &err), &err);
	assert_int_equal(n, 0);

	/* B revoked: both stored versions of exp/one (and other/two, when
	 * the prefix admits it). */
	assert_status(CF_OK, cf_store_exposed(db->st, TENANT, "[\"0b\"]",
					      "exp/", &x, &n, &err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(x[0].name, "exp/one");
	assert_string_equal(x[0].recipient, AGENT_B);
	assert_int_equal(x[0].version, 1);
	assert_int_equal(x[1].version, 2);
	assert_string_equal(x[1].kind, "agent");
	assert_string_equal(x[1].cn, "web-b");
	assert_string_equal(x[1].via, "envelope");
	free(x);
	assert_status(CF_OK, cf_store_exposed(db->st, TENANT, "[\"0b\",\"77\"]",
					      "", &x, &n, &err), &err);
	assert_int_equal(n, 3);
	assert_string_equal(x[2].name, "other/two");
	free(x);

	/* The enroller revoked: what it issued (C, in version 1 only). */
	assert_status(CF_OK, cf_store_exposed(db->st, TENANT, "[\"0e\"]",
					      "exp/", &x, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(x[0].recipient, AGENT_C);
	assert_int_equal(x[0].version, 1);
	free(x);

	/* B acknowledged the latest version, then its envelopes were removed
	 * (what a CRL push does): it still holds the current value. */
	{
		cf_ack_row row = ack_of(AGENT_B, "exp/one", 2, NOW, "ok", "");
		cf_audit_entry pa = audit_of("envelope.purge", ALICE);
		const char names[2][256] = { "exp/one", "other/two" };

		assert_int_equal(put_acks(db->st, AGENT_B, &row, 1), 1);
		assert_status(CF_OK, cf_store_envelopes_purge(db->st, TENANT,
			AGENT_B, names, 2, &pa, NULL, &err), &err);
	}
	/* And other/two, which B held (version 1, the current one) but never
	 * acknowledged: its deleted envelope is remembered. */
	assert_status(CF_OK, cf_store_exposed(db->st, TENANT, "[\"0b\"]", "",
					      &x, &n, &err), &err);
	assert_int_equal(n, 2);
	assert_string_equal(x[0].name, "exp/one");
	assert_string_equal(x[0].recipient, AGENT_B);
	assert_int_equal(x[0].version, 2);
	assert_string_equal(x[0].via, "ack");
	assert_string_equal(x[1].name, "other/two");
	assert_string_equal(x[1].recipient, AGENT_B);
	assert_int_equal(x[1].version, 1);
	assert_string_equal(x[1].via, "purged");
	free(x);
	/* A newer version (a rotation) ends each exposure. */
	put_version(db->st, "exp/one", 3, to2 + 1, 1);
	assert_status(CF_OK, cf_store_exposed(db->st, TENANT, "[\"0b\"]", "",
					      &x, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_string_equal(x[0].name, "other/two");
	free(x);
	put_version(db->st, "other/two", 2, to2 + 1, 1);
	assert_status(CF_OK, cf_store_exposed(db->st, TENANT, "[\"0b\"]", "",
					      &x, &n, &err), &err);
	assert_int_equal(n, 0);
	free(x);

	/* Another tenant sees none of it. */
	assert_status(CF_OK, cf_store_exposed(db->st, fp_of('9'), "[\"0b\"]",
					      "", &x, &n, &err), &err);
	assert_int_equal(n, 0);
}

static void test_refusals(void **state)
{
	fx_db *db = *state;
	cf_ack_row row = ack_of(AGENT_A, "ack/x", 1, NOW, "ok", "");
	cf_audit_entry a = audit_of("secret.ack", AGENT_A);
	cf_exposed_row *x = NULL;
	cf_ack_row *many;
	size_t n = 0;
	int64_t stored = 9;
	cf_error err = { 0 };

	/* An ack of another agent than the caller. */
	assert_status(CF_ERR_USAGE, cf_store_ack_put(db->st, TENANT, AGENT_B,
						     &row, 1, NOW, &a, &stored,
						     &err), &err);
	assert_int_equal(stored, 0);
	row = ack_of(AGENT_A, "ack/x", 1, NOW, "maybe", "");
	assert_status(CF_ERR_USAGE, cf_store_ack_put(db->st, TENANT, AGENT_A,
						     &row, 1, NOW, &a, NULL,
						     &err), &err);
	row = ack_of(AGENT_A, "ack/../x", 1, NOW, "ok", "");
	row.der = NULL;
	assert_status(CF_ERR_USAGE, cf_store_ack_put(db->st, TENANT, AGENT_A,
						     &row, 1, NOW, &a, NULL,
						     &err), &err);
	assert_status(CF_ERR_USAGE, cf_store_ack_put(db->st, TENANT, AGENT_A,
						     &row, 0, NOW, &a, NULL,
						     &err), &err);
	row = ack_of(AGENT_A, "ack/x", 1, NOW, "ok", "");
	row.len = CF_STORE_ACK_DER_MAX + 1;
	assert_status(CF_ERR_TOO_LARGE, cf_store_ack_put(db->st, TENANT,
							 AGENT_A, &row, 1, NOW,
							 &a, NULL, &err), &err);
	many = calloc(CF_STORE_ACKS_MAX + 1, sizeof(*many));
	assert_non_null(many);
	assert_status(CF_ERR_TOO_LARGE, cf_store_ack_put(db->st, TENANT,
							 AGENT_A, many,
							 CF_STORE_ACKS_MAX + 1,
							 NOW, &a, NULL, &err),
		      &err);
	free(many);
	assert_status(CF_ERR_USAGE, cf_store_exposed(db->st, TENANT, "", "",
						     &x, &n, &err), &err);
	assert_null(x);
}

static void test_audit(void **state)
{
	fx_db *db = *state;
	const char *to[] = { ALICE, AGENT_A };
	cf_ack_row row = ack_of(AGENT_A, "aud/x", 1, NOW, "ok", "");
	cf_audit_filter f = { 0 };
	cf_audit_entry *entries = NULL;
	size_t n = 0, acks = 0;
	cf_error err = { 0 };

	put_version(db->st, "aud/x", 1, to, 2);
	assert_int_equal(put_acks(db->st, AGENT_A, &row, 1), 1);
	/* Even a batch that stores nothing is logged: it was received. */
	row.time = NOW - 100;
	assert_int_equal(put_acks(db->st, AGENT_A, &row, 1), 0);
	f.limit = 10000;
	assert_status(CF_OK, cf_store_audit_list(db->st, TENANT, &f, &entries,
						 &n, &err), &err);
	for (size_t i = 0; i < n; i++) {
		assert_status(CF_OK, cf_audit_check(&entries[i], i == 0 ?
			cf_audit_genesis : entries[i - 1].hash, &err), &err);
		if (strcmp(entries[i].action, "secret.ack") == 0 &&
		    strcmp(entries[i].actor, AGENT_A) == 0)
			acks++;
	}
	assert_true(acks >= 2);
	free(entries);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_acks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acks_via, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exposed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
