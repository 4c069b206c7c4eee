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
#include <stdlib.h>
#include <string.h>

#include "audit.h"

static const char kat1[65] =
	"60ec73b8f09624ec9a6eca2e5ec51f58c81f4f6e19a9b81be0d38499e840a990";
static const char kat2[65] =
	"4c13da43fec63e69cec3a24dd017784f9db1987cb29629a2306c5d503dc8d535";

/* Entry 1 as the log stores it, its hash (kat1) included. */
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
	memcpy(e->hash, kat1, sizeof(e->hash));
}

/* Entry 2 links to entry 1, with empty fields and a negative number; its
 * hash (kat2) included. */
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
	memcpy(e->hash, kat2, sizeof(e->hash));
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
	second_entry(&b);
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
	second_entry(&b);

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

/* ---------------------------------------------------------- JSON form */

static int same_entry(const cf_audit_entry *a, const cf_audit_entry *b)
{
	return a->seq == b->seq && a->time == b->time && a->bytes == b->bytes &&
	       strcmp(a->tenant, b->tenant) == 0 &&
	       strcmp(a->actor, b->actor) == 0 &&
	       strcmp(a->subject, b->subject) == 0 &&
	       strcmp(a->source, b->source) == 0 &&
	       strcmp(a->action, b->action) == 0 &&
	       strcmp(a->object, b->object) == 0 &&
	       strcmp(a->prev, b->prev) == 0 && strcmp(a->hash, b->hash) == 0;
}

static void json_round_trip(void **state)
{
	cf_audit_entry a, b, back;
	cf_error err = { 0 };
	json_t *j = NULL;
	char *text;

	(void)state;
	first_entry(&a);
	assert_status(CF_OK, cf_audit_to_json(&a, &j, &err), &err);
	/* The wire form of docs/API.md: every field, integers as integers. */
	text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	assert_non_null(text);
	assert_string_equal(text,
		"{\"action\":\"secret.put\",\"actor\":\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\",\"bytes\":1234,\"hash\":\""
		"60ec73b8f09624ec9a6eca2e5ec51f58c81f4f6e19a9b81be0d38499e840a990\","
		"\"object\":\"prod/db/password\",\"prev\":\"0000000000000000000000"
		"000000000000000000000000000000000000000000\",\"seq\":1,"
		"\"source\":\"127.0.0.1:50312\",\"subject\":\"CN=alice,O=Acme\","
		"\"tenant\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaa\",\"time\":1700000000}");
	free(text);
	memset(&back, 0x55, sizeof(back));
	assert_status(CF_OK, cf_audit_from_json(j, &back, &err), &err);
	assert_true(same_entry(&a, &back));
	assert_status(CF_OK, cf_audit_check(&back, cf_audit_genesis, &err), &err);
	json_decref(j);

	/* Empty strings, a negative byte count, the longest strings. */
	second_entry(&b);
	memset(b.object, 'o', sizeof(b.object) - 1);
	memset(b.subject, 's', sizeof(b.subject) - 1);
	assert_status(CF_OK, cf_audit_to_json(&b, &j, &err), &err);
	assert_status(CF_OK, cf_audit_from_json(j, &back, &err), &err);
	assert_true(same_entry(&b, &back));
	json_decref(j);
}

/* Parses text (an entry object) and expects a refusal naming field. */
static void refused(const char *text, const char *field)
{
	cf_audit_entry e;
	cf_error err = { 0 };
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_ALLOW_NUL, &jerr);

	assert_non_null(j);
	memset(&e, 0x55, sizeof(e));
	assert_status(CF_ERR_AUDIT, cf_audit_from_json(j, &e, &err), &err);
	if (strstr(err.msg, field) == NULL)
		fail_msg("refusal \"%s\" does not name %s", err.msg, field);
	/* Nothing half-read is left behind. */
	assert_int_equal(e.seq, 0);
	assert_string_equal(e.tenant, "");
	json_decref(j);
}

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define ENTRY(seq, tenant, actor, object, prev, hash)                        \
	"{\"seq\":" seq ",\"time\":1,\"tenant\":\"" tenant "\",\"actor\":\"" \
	actor "\",\"subject\":\"\",\"source\":\"s\",\"action\":\"a\","      \
	"\"object\":\"" object "\",\"bytes\":0,\"prev\":\"" prev            \
	"\",\"hash\":\"" hash "\"}"

static void json_from_an_untrusted_server(void **state)
{
	cf_audit_entry e;
	cf_error err = { 0 };
	char big[1024];
	json_t *j;

	(void)state;
	/* The template itself is fine, extra keys included. */
	j = json_loads(ENTRY("7", H64, "", "x", H64, H64), 0, NULL);
	assert_non_null(j);
	json_object_set_new(j, "future", json_true());
	assert_status(CF_OK, cf_audit_from_json(j, &e, &err), &err);
	assert_int_equal(e.seq, 7);
	json_decref(j);

	refused("[]", "not a JSON object");
	refused(ENTRY("0", H64, "", "x", H64, H64), "seq");
	refused(ENTRY("-3", H64, "", "x", H64, H64), "seq");
	refused(ENTRY("1.0", H64, "", "x", H64, H64), "seq");
	refused(ENTRY("\"1\"", H64, "", "x", H64, H64), "seq");
	refused("{\"seq\":1,\"time\":1}", "bytes");
	refused(ENTRY("1", "ABCDEF", "", "x", H64, H64), "tenant");
	refused(ENTRY("1", H64 "0", "", "x", H64, H64), "tenant");
	refused(ENTRY("1", H64, "", "x", "0123456789ABCDEF0123456789abcdef"
		      "0123456789abcdef0123456789abcdef", H64), "prev");
	refused(ENTRY("1", H64, "", "x", H64, "short"), "hash");
	refused(ENTRY("1", H64, H64 "x", "x", H64, H64), "actor");
	/* A NUL would cut the field short: what is hashed is not what came. */
	refused(ENTRY("1", H64, "", "a\\u0000b", H64, H64), "object");
	/* One byte over the object's buffer. */
	memset(big, 'o', CF_AUDIT_OBJECT_MAX);
	big[CF_AUDIT_OBJECT_MAX] = '\0';
	j = json_loads(ENTRY("1", H64, "", "x", H64, H64), 0, NULL);
	assert_non_null(j);
	json_object_set_new(j, "object", json_string(big));
	assert_status(CF_ERR_AUDIT, cf_audit_from_json(j, &e, &err), &err);
	assert_non_null(strstr(err.msg, "\"object\""));
	big[CF_AUDIT_OBJECT_MAX - 1] = '\0';
	json_object_set_new(j, "object", json_string(big));
	assert_status(CF_OK, cf_audit_from_json(j, &e, &err), &err);
	json_decref(j);
}

static void to_json_refuses_what_from_json_would(void **state)
{
	cf_audit_entry e;
	cf_error err = { 0 };
	json_t *j = (json_t *)&err; /* must be reset to NULL */

	(void)state;
	first_entry(&e);
	e.seq = 0;
	assert_status(CF_ERR_USAGE, cf_audit_to_json(&e, &j, &err), &err);
	assert_null(j);
	e.seq = 1;
	e.hash[0] = 'A';
	assert_status(CF_ERR_USAGE, cf_audit_to_json(&e, &j, &err), &err);
	assert_non_null(strstr(err.msg, "\"hash\""));
	memcpy(e.hash, kat1, sizeof(e.hash));
	memset(e.subject, 's', sizeof(e.subject)); /* unterminated */
	assert_status(CF_ERR_USAGE, cf_audit_to_json(&e, &j, &err), &err);
	assert_non_null(strstr(err.msg, "\"subject\""));
	snprintf(e.subject, sizeof(e.subject), "CN=\xff");
	assert_status(CF_ERR_USAGE, cf_audit_to_json(&e, &j, &err), &err);
	assert_non_null(strstr(err.msg, "UTF-8"));
	assert_null(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(known_answers),
		cmocka_unit_test(check_accepts_a_good_chain),
		cmocka_unit_test(every_field_counts),
		cmocka_unit_test(fields_do_not_bleed),
		cmocka_unit_test(check_names_the_bad_entry),
		cmocka_unit_test(json_round_trip),
		cmocka_unit_test(json_from_an_untrusted_server),
		cmocka_unit_test(to_json_refuses_what_from_json_would),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
