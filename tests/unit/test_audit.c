/*
 * test_audit.c - the audit log's hash chain (audit.h).
 *
 * The known answers were computed independently of audit.c, with
 * python3's hashlib over the netstrings of the fields in the order
 * audit.h gives (seq, time, tenant, actor, subject, source, action,
 * object, bytes, prev; integers in decimal):
 *
 *   ns = lambda s: str(len(s.encode())).encode() + b":" + s.encode() + b","
 *   hashlib.sha256(b"".join(ns(f) for f in fields)).hexdigest()
 */
#include "fixture.h"

#include <stdio.h>
#include <string.h>

#include "audit.h"

static const char kat1[65] =
	"60ec73b8f09624ec9a6eca2e5ec51f58c81f4f6e19a9b81be0d38499e840a990";
static const char kat2[65] =
	"4c13da43fec63e69cec3a24dd017784f9db1987cb29629a2306c5d503dc8d535";

static void first_entry(cf_audit_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->seq = 1;
	e->time = 1700000000;
	memset(e->tenant, 'a', 64);
	memset(e->actor, 'b', 64);
	snprintf(e->subject, sizeof(e->subject), "CN=alice,O=Acme");
	snprintf(e->source, sizeof(e->source), "127.0.0.1:50312");
	snprintf(e->action, sizeof(e->action), "secret.put");
	snprintf(e->object, sizeof(e->object), "prod/db/password");
	e->bytes = 1234;
	memcpy(e->prev, cf_audit_genesis, sizeof(e->prev));
}

/* Entry 2 links to entry 1, with empty fields and a negative number. */
static void second_entry(cf_audit_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->seq = 2;
	e->time = 1700000001;
	memset(e->tenant, 'a', 64);
	snprintf(e->source, sizeof(e->source), "[::1]:4431");
	snprintf(e->action, sizeof(e->action), "secret.read");
	snprintf(e->object, sizeof(e->object), "prod/db/password");
	e->bytes = -1;
	memcpy(e->prev, kat1, sizeof(e->prev));
}

static void known_answers(void **state)
{
	cf_audit_entry e;
	cf_error err = { 0 };
	char hex[65];

	(void)state;
	assert_int_equal(strlen(cf_audit_genesis), 64);
	assert_int_equal(strspn(cf_audit_genesis, "0"), 64);
	first_entry(&e);
	assert_status(CF_OK, cf_audit_hash(&e, hex, &err), &err);
	assert_string_equal(hex, kat1);
	second_entry(&e);
	assert_status(CF_OK, cf_audit_hash(&e, hex, &err), &err);
	assert_string_equal(hex, kat2);
}

static void check_accepts_a_good_chain(void **state)
{
	cf_audit_entry a, b;
	cf_error err = { 0 };

	(void)state;
	first_entry(&a);
	memcpy(a.hash, kat1, sizeof(a.hash));
	second_entry(&b);
	memcpy(b.hash, kat2, sizeof(b.hash));
	assert_status(CF_OK, cf_audit_check(&a, cf_audit_genesis, &err), &err);
	assert_status(CF_OK, cf_audit_check(&b, a.hash, &err), &err);
}

/* Each field, changed alone, changes the hash. */
static void every_field_counts(void **state)
{
	cf_audit_entry e;
	cf_error err = { 0 };
	char hex[65];

	(void)state;
	for (int field = 0; field < 10; field++) {
		first_entry(&e);
		switch (field) {
		case 0: e.seq = 2; break;
		case 1: e.time++; break;
		case 2: e.tenant[63] = 'c'; break;
		case 3: e.actor[0] = 'c'; break;
		case 4: e.subject[3] = 'A'; break;
		case 5: e.source[0] = '8'; break;
		case 6: e.action[0] = 'S'; break;
		case 7: e.object[0] = 'q'; break;
		case 8: e.bytes = 1235; break;
		case 9: e.prev[10] = '1'; break;
		}
		assert_status(CF_OK, cf_audit_hash(&e, hex, &err), &err);
		if (strcmp(hex, kat1) == 0)
			fail_msg("changing field %d left the hash alone", field);
	}
}

/* Netstrings keep fields apart: moving a byte across a border counts. */
static void fields_do_not_bleed(void **state)
{
	cf_audit_entry a, b;
	cf_error err = { 0 };
	char ha[65], hb[65];

	(void)state;
	first_entry(&a);
	first_entry(&b);
	snprintf(a.action, sizeof(a.action), "secret.putx");
	snprintf(a.object, sizeof(a.object), "y");
	snprintf(b.action, sizeof(b.action), "secret.put");
	snprintf(b.object, sizeof(b.object), "xy");
	assert_status(CF_OK, cf_audit_hash(&a, ha, &err), &err);
	assert_status(CF_OK, cf_audit_hash(&b, hb, &err), &err);
	assert_string_not_equal(ha, hb);
}

static void check_names_the_bad_entry(void **state)
{
	cf_audit_entry a, b;
	cf_error err = { 0 };

	(void)state;
	first_entry(&a);
	memcpy(a.hash, kat1, sizeof(a.hash));
	second_entry(&b);
	memcpy(b.hash, kat2, sizeof(b.hash));

	/* An edited field: the entry's own hash no longer matches. */
	b.bytes = 0;
	assert_status(CF_ERR_AUDIT, cf_audit_check(&b, a.hash, &err), &err);
	assert_non_null(strstr(err.msg, "entry 2 "));
	assert_non_null(strstr(err.msg, "altered"));
	b.bytes = -1;

	/* A broken link: entry 2 does not follow what precedes it. */
	assert_status(CF_ERR_AUDIT, cf_audit_check(&b, cf_audit_genesis, &err),
		      &err);
	assert_non_null(strstr(err.msg, "entry 2 "));
	assert_non_null(strstr(err.msg, "link"));

	/* A recomputed hash with the wrong prev is still a broken link. */
	a.prev[0] = '1';
	assert_status(CF_ERR_AUDIT, cf_audit_check(&a, cf_audit_genesis, &err),
		      &err);
	assert_non_null(strstr(err.msg, "entry 1 "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(known_answers),
		cmocka_unit_test(check_accepts_a_good_chain),
		cmocka_unit_test(every_field_counts),
		cmocka_unit_test(fields_do_not_bleed),
		cmocka_unit_test(check_names_the_bad_entry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
