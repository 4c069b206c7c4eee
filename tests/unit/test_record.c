/*
 * test_record.c - secret records (record.h).
 *
 * The encoder must produce the contract's JSON (docs/FORMAT.md) and the
 * parser, fed by whoever made the envelope, must take back exactly that
 * and refuse everything else with CF_ERR_RECORD (or CF_ERR_TOO_LARGE for
 * sizes), including the near misses a lax parser lets through.
 */
#include "fixture.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

#define TENANT "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static cf_record *record_of(cf_record_type type, const void *value, size_t len)
{
	cf_record *rec = cf_record_new();

	assert_non_null(rec);
	memcpy(rec->tenant, TENANT, sizeof(TENANT));
	snprintf(rec->name, sizeof(rec->name), "prod/db/password");
	rec->version = 7;
	rec->created = 1700000000;
	rec->type = type;
	rec->value = cf_secret_from(value, len);
	assert_non_null(rec->value);
	return rec;
}

static cf_record *round_trip(const cf_record *rec)
{
	cf_error err = { 0 };
	cf_secret *json = NULL;
	cf_record *back = NULL;

	assert_status(CF_OK, cf_record_encode(rec, &json, &err), &err);
	assert_true(CRYPTO_secure_allocated(cf_secret_cdata(json)));
	assert_status(CF_OK, cf_record_parse(cf_secret_cdata(json),
					     cf_secret_len(json), &back, &err), &err);
	cf_secret_free(json);
	assert_string_equal(back->tenant, rec->tenant);
	assert_string_equal(back->name, rec->name);
	assert_int_equal(back->version, rec->version);
	assert_int_equal(back->created, rec->created);
	assert_int_equal(back->type, rec->type);
	assert_true(CRYPTO_secure_allocated(cf_secret_cdata(back->value)));
	return back;
}

static void parse_expect(cf_status want, const char *json)
{
	cf_error err = { 0 };
	cf_record *rec = (cf_record *)&err; /* not NULL, so that a reset is visible */

	assert_status(want, cf_record_parse((const unsigned char *)json,
					    strlen(json), &rec, &err), &err);
	if (want != CF_OK)
		assert_null(rec);
	cf_record_free(want == CF_OK ? rec : NULL);
}

/*
 * A record with one field replaced: each argument is the raw JSON of that
 * field's value, or NULL to leave the field out.  extra is appended as is.
 */
static char *json_with(const char *v, const char *tenant, const char *name,
		       const char *version, const char *created,
		       const char *type, const char *value, const char *extra)
{
	const char *keys[] = { "v", "tenant", "name", "version", "created",
			       "type", "value" };
	const char *vals[] = { v, tenant, name, version, created, type, value };
	size_t size = 512 + (value ? strlen(value) : 0) + (extra ? strlen(extra) : 0);
	char *buf = malloc(size);
	size_t used = 0;

	assert_non_null(buf);
	buf[used++] = '{';
	for (size_t i = 0; i < 7; i++) {
		if (vals[i] == NULL)
			continue;
		used += (size_t)snprintf(buf + used, size - used, "%s\"%s\":%s",
					 used > 1 ? "," : "", keys[i], vals[i]);
	}
	used += (size_t)snprintf(buf + used, size - used, "%s}", extra ? extra : "");
	assert_true(used < size);
	return buf;
}

#define GOOD_V "1"
#define GOOD_TENANT "\"" TENANT "\""
#define GOOD_NAME "\"prod/db\""
#define GOOD_VERSION "3"
#define GOOD_CREATED "1700000000"
#define GOOD_TYPE "\"text\""
#define GOOD_VALUE "\"aGk=\""

static void expect_with(cf_status want, const char *v, const char *tenant,
			const char *name, const char *version,
			const char *created, const char *type,
			const char *value, const char *extra)
{
	char *json = json_with(v, tenant, name, version, created, type, value,
			       extra);

	parse_expect(want, json);
	free(json);
}

static void types_round_trip(void **state)
{
	static const unsigned char binary[] = { 0, 1, 2, 0xff, 0, '"', '\\', 0x80 };

	(void)state;
	for (int t = CF_TYPE_TEXT; t <= CF_TYPE_TEMPLATE; t++) {
		cf_record *rec = record_of((cf_record_type)t, binary, sizeof(binary));
		cf_record *back = round_trip(rec);

		assert_int_equal(cf_secret_len(back->value), sizeof(binary));
		assert_memory_equal(cf_secret_cdata(back->value), binary,
				    sizeof(binary));
		cf_record_free(rec);
		cf_record_free(back);
	}
}

static void type_names(void **state)
{
	cf_record_type type = CF_TYPE_TEXT;

	(void)state;
	assert_string_equal(cf_record_type_name(CF_TYPE_TEXT), "text");
	assert_string_equal(cf_record_type_name(CF_TYPE_BINARY), "binary");
	assert_string_equal(cf_record_type_name(CF_TYPE_FILE), "file");
	assert_string_equal(cf_record_type_name(CF_TYPE_TEMPLATE), "template");
	assert_string_equal(cf_record_type_name((cf_record_type)9), "unknown");
	assert_int_equal(cf_record_type_from_name("file", &type), 0);
	assert_int_equal(type, CF_TYPE_FILE);
	assert_int_equal(cf_record_type_from_name("File", &type), -1);
	assert_int_equal(cf_record_type_from_name("", &type), -1);
}

static void encoding_is_the_contract(void **state)
{
	cf_record *rec = record_of(CF_TYPE_TEXT, "hi", 2);
	cf_error err = { 0 };
	cf_secret *json = NULL;

	(void)state;
	rec->version = 3;
	snprintf(rec->name, sizeof(rec->name), "prod/db");
	assert_status(CF_OK, cf_record_encode(rec, &json, &err), &err);
	assert_int_equal(cf_secret_len(json),
			 strlen((const char *)cf_secret_cdata(json)));
	assert_string_equal((const char *)cf_secret_cdata(json),
		"{\"v\":1,\"tenant\":\"" TENANT "\",\"name\":\"prod/db\","
		"\"version\":3,\"created\":1700000000,\"type\":\"text\","
		"\"value\":\"aGk=\"}");
	cf_secret_free(json);
	cf_record_free(rec);
	/* And what the contract spells, the parser takes. */
	expect_with(CF_OK, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);
}

static void empty_value(void **state)
{
	cf_record *rec = record_of(CF_TYPE_BINARY, "", 0);
	cf_record *back = round_trip(rec);

	(void)state;
	assert_int_equal(cf_secret_len(back->value), 0);
	cf_record_free(back);
	/* A record without a value buffer encodes as the empty value. */
	cf_secret_free(rec->value);
	rec->value = NULL;
	back = round_trip(rec);
	assert_int_equal(cf_secret_len(back->value), 0);
	cf_record_free(back);
	cf_record_free(rec);
}

static void one_mebibyte_value(void **state)
{
	cf_secret *big = cf_secret_new(CF_SECRET_MAX_BYTES);
	cf_record *rec, *back;
	cf_error err = { 0 };

	(void)state;
	assert_non_null(big);
	for (size_t i = 0; i < CF_SECRET_MAX_BYTES; i++)
		cf_secret_data(big)[i] = (unsigned char)((i * 131) >> 3);
	assert_status(CF_OK, cf_secret_set_len(big, CF_SECRET_MAX_BYTES, &err), &err);
	rec = record_of(CF_TYPE_FILE, "", 0);
	cf_secret_free(rec->value);
	rec->value = big;
	back = round_trip(rec);
	assert_int_equal(cf_secret_len(back->value), CF_SECRET_MAX_BYTES);
	assert_true(cf_secret_equal(back->value, big));
	cf_record_free(back);
	cf_record_free(rec);
}

static void over_limit_value(void **state)
{
	size_t b64_len = ((CF_SECRET_MAX_BYTES + 1 + 2) / 3) * 4;
	cf_record *rec = record_of(CF_TYPE_FILE, "", 0);
	cf_error err = { 0 };
	cf_secret *json = NULL;
	char *value, *doc;

	(void)state;
	/* The encoder refuses one byte more than the limit ... */
	cf_secret_free(rec->value);
	rec->value = cf_secret_new(CF_SECRET_MAX_BYTES + 1);
	assert_status(CF_OK, cf_secret_set_len(rec->value, CF_SECRET_MAX_BYTES + 1,
					       &err), &err);
	assert_status(CF_ERR_TOO_LARGE, cf_record_encode(rec, &json, &err), &err);
	assert_null(json);
	cf_record_free(rec);

	/* ... and so does the parser, whoever encoded it. */
	value = malloc(b64_len + 3);
	assert_non_null(value);
	value[0] = '"';
	memset(value + 1, 'A', b64_len);
	value[b64_len] = '='; /* 1048577 = 3 * 349525 + 2: one pad */
	value[b64_len + 1] = '"';
	value[b64_len + 2] = '\0';
	expect_with(CF_ERR_TOO_LARGE, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, value, NULL);
	/* Exactly the limit (two pads) still parses. */
	value[b64_len - 1] = '=';
	doc = json_with(GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
			GOOD_CREATED, GOOD_TYPE, value, NULL);
	{
		cf_record *back = NULL;

		assert_status(CF_OK, cf_record_parse((unsigned char *)doc,
						     strlen(doc), &back, &err), &err);
		assert_int_equal(cf_secret_len(back->value), CF_SECRET_MAX_BYTES);
		cf_record_free(back);
	}
	free(doc);

	/* Input above the record limit is refused before JSON parsing. */
	doc = malloc(CF_RECORD_MAX_BYTES + 2);
	assert_non_null(doc);
	memset(doc, ' ', CF_RECORD_MAX_BYTES + 1);
	doc[CF_RECORD_MAX_BYTES + 1] = '\0';
	parse_expect(CF_ERR_TOO_LARGE, doc);
	free(doc);
	free(value);
}

static void duplicate_and_unknown_keys(void **state)
{
	(void)state;
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"name\":\"prod/other\"");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"version\":3");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"comment\":\"hi\"");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"Value\":\"aGk=\"");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"\":0");
}

/* targets and without: optional, signed with the rest, strict. */
static void targets_and_without(void **state)
{
	static const unsigned char value[] = "hi";
	char *targets[] = { "group:web", "agent:db-1",
		"fp:" "0123456789abcdef0123456789abcdef"
		"0123456789abcdef0123456789abcdef" };
	char *without[] = { "fedcba9876543210fedcba9876543210"
			    "fedcba9876543210fedcba9876543210" };
	cf_record *rec = record_of(CF_TYPE_TEXT, value, 2), *back;
	cf_secret *json = NULL;
	cf_error err = { 0 };

	(void)state;
	/* Without them the encoding is the seven members, as before. */
	assert_status(CF_OK, cf_record_encode(rec, &json, &err), &err);
	assert_null(strstr((const char *)cf_secret_cdata(json), "targets"));
	cf_secret_free(json);
	rec->targets = targets;
	rec->n_targets = 3;
	rec->without = without;
	rec->n_without = 1;
	back = round_trip(rec);
	assert_int_equal(back->n_targets, 3);
	assert_string_equal(back->targets[1], "agent:db-1");
	assert_int_equal(back->n_without, 1);
	assert_string_equal(back->without[0], without[0]);
	cf_record_free(back);
	/* Refused when encoding: a bad spec. */
	targets[0] = "host:x";
	assert_status(CF_ERR_USAGE, cf_record_encode(rec, &json, &err), &err);
	rec->targets = NULL;
	rec->n_targets = 0;
	rec->without = NULL;
	rec->n_without = 0;
	cf_record_free(rec);
	/* Refused when parsing: empty, not strings, bad specs, bad fps. */
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"targets\":[]");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"targets\":[1]");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE,
		    ",\"targets\":[\"group:../x\"]");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"without\":[\"ab\"]");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE,
		    ",\"targets\":\"group:web\"");
	expect_with(CF_OK, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE,
		    ",\"targets\":[\"group:web\"]");
}

/* member (a cluster member's proof) and cluster: targets. */
static void member_and_cluster_targets(void **state)
{
	static const unsigned char value[] = "hi";
	char *targets[] = { "cluster:cache-1" };
	cf_record *rec = record_of(CF_TYPE_TEXT, value, 2), *back;
	cf_secret *json = NULL;
	cf_error err = { 0 };
	char many[CF_RECORD_MEMBER_MAX + 40];

	(void)state;
	assert_status(CF_OK, cf_record_encode(rec, &json, &err), &err);
	assert_null(strstr((const char *)cf_secret_cdata(json), "member"));
	cf_secret_free(json);
	rec->targets = targets;
	rec->n_targets = 1;
	snprintf(rec->member, sizeof(rec->member), "MEUCIQ+/abc=");
	back = round_trip(rec);
	assert_string_equal(back->member, "MEUCIQ+/abc=");
	assert_string_equal(back->targets[0], "cluster:cache-1");
	cf_record_free(back);
	rec->targets = NULL;
	rec->n_targets = 0;
	cf_record_free(rec);
	/* Refused: empty, not a string, not base64, too long, a bad name. */
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"member\":\"\"");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"member\":7");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"member\":\"a b\"");
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE,
		    ",\"member\":\"a\\u0000b\"");
	memset(many, 'A', sizeof(many));
	memcpy(many, ",\"member\":\"", 11);
	memcpy(many + sizeof(many) - 2, "\"", 2);
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, many);
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE,
		    ",\"targets\":[\"cluster:..\"]");
	expect_with(CF_OK, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, ",\"member\":\"QUJD\"");
}

static void wrong_format_version(void **state)
{
	static const char *const bad[] = { "2", "0", "-1", "1.0", "\"1\"", "true",
					   "null", "[1]" };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_with(CF_ERR_RECORD, bad[i], GOOD_TENANT, GOOD_NAME,
			    GOOD_VERSION, GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);
	expect_with(CF_ERR_RECORD, NULL, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);
}

static void bad_tenant(void **state)
{
	static const char *const bad[] = {
		"\"" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef" "\"",
		"\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde" "\"",
		"\"" TENANT "0" "\"",
		"\"" "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\"",
		"\"\"",
		"42",
		"null",
		/* The right 64 characters with something hidden after a NUL. */
		"\"" TENANT "\\u0000evil" "\"",
	};
	cf_record *rec = record_of(CF_TYPE_TEXT, "x", 1);
	cf_error err = { 0 };
	cf_secret *json = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_with(CF_ERR_RECORD, GOOD_V, bad[i], GOOD_NAME, GOOD_VERSION,
			    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);
	expect_with(CF_ERR_RECORD, GOOD_V, NULL, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);
	/* The encoder checks the same. */
	rec->tenant[0] = 'A';
	assert_status(CF_ERR_USAGE, cf_record_encode(rec, &json, &err), &err);
	rec->tenant[0] = '0';
	rec->tenant[63] = '\0';
	assert_status(CF_ERR_USAGE, cf_record_encode(rec, &json, &err), &err);
	assert_null(json);
	cf_record_free(rec);
}

static void bad_name(void **state)
{
	static const char *const bad[] = {
		"\"\"", "\"/prod\"", "\"prod/\"", "\"prod//db\"", "\"..\"",
		"\"prod/../db\"", "\"a b\"", "\"a*\"", "\"prod\\u0000/db\"", "7",
		"null",
	};
	cf_record *rec = record_of(CF_TYPE_TEXT, "x", 1);
	cf_error err = { 0 };
	cf_secret *json = NULL;
	char longest[CF_NAME_MAX_BYTES + 8];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, bad[i], GOOD_VERSION,
			    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);
	longest[0] = '"';
	memset(longest + 1, 'n', CF_NAME_MAX_BYTES + 1);
	memcpy(longest + CF_NAME_MAX_BYTES + 2, "\"", 2);
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, longest, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);
	memcpy(longest + CF_NAME_MAX_BYTES + 1, "\"", 2);
	expect_with(CF_OK, GOOD_V, GOOD_TENANT, longest, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);

	snprintf(rec->name, sizeof(rec->name), "prod/../etc");
	assert_status(CF_ERR_USAGE, cf_record_encode(rec, &json, &err), &err);
	assert_null(json);
	cf_record_free(rec);
}

static void bad_version_and_time(void **state)
{
	static const char *const bad[] = {
		"0", "-1", "9007199254740992", "9223372036854775807",
		"99999999999999999999", "1.5", "1e3", "\"3\"", "null",
	};
	cf_record *rec = record_of(CF_TYPE_TEXT, "x", 1);
	cf_error err = { 0 };
	cf_secret *json = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, bad[i],
			    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, NULL,
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);
	/* The largest version a double holds exactly is still fine. */
	expect_with(CF_OK, GOOD_V, GOOD_TENANT, GOOD_NAME, "9007199254740991",
		    GOOD_CREATED, GOOD_TYPE, GOOD_VALUE, NULL);

	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    "-1", GOOD_TYPE, GOOD_VALUE, NULL);
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    "\"now\"", GOOD_TYPE, GOOD_VALUE, NULL);
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    NULL, GOOD_TYPE, GOOD_VALUE, NULL);
	expect_with(CF_OK, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    "0", GOOD_TYPE, GOOD_VALUE, NULL);

	rec->version = 0;
	assert_status(CF_ERR_USAGE, cf_record_encode(rec, &json, &err), &err);
	rec->version = (uint64_t)1 << 53;
	assert_status(CF_ERR_USAGE, cf_record_encode(rec, &json, &err), &err);
	rec->version = 1;
	rec->created = -5;
	assert_status(CF_ERR_USAGE, cf_record_encode(rec, &json, &err), &err);
	rec->created = 0;
	rec->type = (cf_record_type)4;
	assert_status(CF_ERR_USAGE, cf_record_encode(rec, &json, &err), &err);
	assert_null(json);
	cf_record_free(rec);
}

static void bad_type(void **state)
{
	static const char *const bad[] = { "\"secret\"", "\"Text\"", "\"\"", "0",
					   "\"text\\u0000x\"" };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME,
			    GOOD_VERSION, GOOD_CREATED, bad[i], GOOD_VALUE, NULL);
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, NULL, GOOD_VALUE, NULL);
}

static void bad_base64(void **state)
{
	static const char *const bad[] = {
		"\"QUJ\"",           /* length not a multiple of 4 */
		"\"QUJDR\"",
		"\"QUJ!\"",          /* a character outside the alphabet */
		"\"QU-D\"",          /* base64url is not base64 */
		"\"QU_D\"",
		"\"QUJ\\u0000\"",
		"\" QUJ\"",          /* white space, anywhere */
		"\"QUJD    \"",
		"\"QU\\nJ\"",
		"\"QUJD\\r\\n\\r\\n\"",
		"\"QU\\tD\"",
		"\"QQ==QUJD\"",      /* padding only at the end */
		"\"QQ=A\"",
		"\"Q===\"",
		"\"====\"",
		"42",
		"null",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *json = json_with(GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
				       GOOD_CREATED, GOOD_TYPE, bad[i], NULL);
		cf_error err = { 0 };
		cf_record *rec = NULL;
		cf_status rc = cf_record_parse((unsigned char *)json, strlen(json),
					       &rec, &err);

		if (rc != CF_ERR_RECORD)
			fail_msg("value %s: got %s, want CF_ERR_RECORD", bad[i],
				 cf_status_name(rc));
		assert_null(rec);
		free(json);
	}
	expect_with(CF_ERR_RECORD, GOOD_V, GOOD_TENANT, GOOD_NAME, GOOD_VERSION,
		    GOOD_CREATED, GOOD_TYPE, NULL, NULL);
	/* One and two pads decode to the right lengths. */
	{
		static const char *const good[] = { "\"QUJD\"", "\"QUI=\"", "\"QQ==\"",
						    "\"\"" };
		static const size_t lens[] = { 3, 2, 1, 0 };

		for (size_t i = 0; i < 4; i++) {
			char *json = json_with(GOOD_V, GOOD_TENANT, GOOD_NAME,
					       GOOD_VERSION, GOOD_CREATED, GOOD_TYPE,
					       good[i], NULL);
			cf_error err = { 0 };
			cf_record *rec = NULL;

			assert_status(CF_OK, cf_record_parse((unsigned char *)json,
							     strlen(json), &rec, &err),
				      &err);
			assert_int_equal(cf_secret_len(rec->value), lens[i]);
			assert_memory_equal(cf_secret_cdata(rec->value), "ABC", lens[i]);
			cf_record_free(rec);
			free(json);
		}
	}
}

static void not_an_object(void **state)
{
	static const char *const bad[] = {
		"", "[]", "[{\"v\":1}]", "\"v\"", "1", "null", "{", "{\"v\":1,}",
		"{\"v\":1} {}", "not json at all",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_expect(CF_ERR_RECORD, bad[i]);
	parse_expect(CF_ERR_RECORD, "{}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(types_round_trip),
		cmocka_unit_test(type_names),
		cmocka_unit_test(encoding_is_the_contract),
		cmocka_unit_test(empty_value),
		cmocka_unit_test(one_mebibyte_value),
		cmocka_unit_test(over_limit_value),
		cmocka_unit_test(duplicate_and_unknown_keys),
		cmocka_unit_test(targets_and_without),
		cmocka_unit_test(wrong_format_version),
		cmocka_unit_test(bad_tenant),
		cmocka_unit_test(member_and_cluster_targets),
		cmocka_unit_test(bad_name),
		cmocka_unit_test(bad_version_and_time),
		cmocka_unit_test(bad_type),
		cmocka_unit_test(bad_base64),
		cmocka_unit_test(not_an_object),
	};

	return cmocka_run_group_tests_name("record", tests, fx_group_setup, NULL);
}
