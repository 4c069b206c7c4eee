/*
 * test_policy.c - permission rules, globs and names (policy.h).
 *
 * The rule text comes from certificates, so the parser is tested as a
 * parser of outside input (bounds, bytes it must refuse), and the glob as
 * the thing every permission decision rests on, including patterns built
 * to make a naive matcher take exponential time.
 */
#include "fixture.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"

static cf_perms *parse_ok(const char *text)
{
	cf_error err = { 0 };
	cf_perms *perms = NULL;

	assert_status(CF_OK, cf_perms_parse(text, strlen(text), &perms, &err), &err);
	assert_non_null(perms);
	return perms;
}

static void parse_expect(cf_status want, const char *text, size_t len)
{
	cf_error err = { 0 };
	cf_perms *perms = (cf_perms *)&err; /* not NULL, so that a reset is visible */

	assert_status(want, cf_perms_parse(text, len, &perms, &err), &err);
	assert_null(perms);
}

static void good_rules(void **state)
{
	cf_perms *perms = parse_ok(
		"secret.read:prod/*\n"
		"secret.write:prod/db/**\r\n"
		"\n"
		"agent.enroll:web-?\n"
		"agent.manage:web\n"
		"token.create:*\n"
		"audit.read:**\n"
		"admin:ops/A_b.c-9");

	(void)state;
	assert_int_equal(cf_perms_count(perms), 7);
	assert_string_equal(cf_perms_verb(perms, 0), "secret.read");
	assert_string_equal(cf_perms_scope(perms, 0), "prod/*");
	/* CRLF lines lose their CR; empty lines are skipped. */
	assert_string_equal(cf_perms_verb(perms, 1), "secret.write");
	assert_string_equal(cf_perms_scope(perms, 1), "prod/db/**");
	assert_string_equal(cf_perms_scope(perms, 2), "web-?");
	assert_string_equal(cf_perms_verb(perms, 6), "admin");
	assert_string_equal(cf_perms_scope(perms, 6), "ops/A_b.c-9");
	cf_perms_free(perms);

	/* Empty text is an empty set, not an error. */
	perms = parse_ok("");
	assert_int_equal(cf_perms_count(perms), 0);
	assert_false(cf_perms_allows(perms, "secret.read", "x"));
	cf_perms_free(perms);
	cf_perms_free(NULL);
	assert_int_equal(cf_perms_count(NULL), 0);
}

static void crlf_everywhere(void **state)
{
	cf_perms *perms = parse_ok("secret.read:a\r\nsecret.write:b\r\n\r\n");

	(void)state;
	assert_int_equal(cf_perms_count(perms), 2);
	assert_string_equal(cf_perms_scope(perms, 0), "a");
	assert_string_equal(cf_perms_scope(perms, 1), "b");
	assert_true(cf_perms_allows(perms, "secret.write", "b"));
	cf_perms_free(perms);
	/* A lone CR inside a rule is a bad character, not a line end. */
	parse_expect(CF_ERR_PARSE, "secret.read:a\rb", 15);
}

static void bad_rules(void **state)
{
	static const char *const bad[] = {
		"secret.read",               /* no ':' */
		"secret.reed:prod/*",        /* unknown verb */
		"Secret.read:prod/*",        /* verbs are case-sensitive */
		" secret.read:prod/*",       /* no padding */
		"secret.read :prod/*",
		":prod/*",                   /* empty verb */
		"secret.read:",              /* empty scope */
		"secret.read:prod/ *",       /* space */
		"secret.read:prod:db",       /* second ':' */
		"secret.read:prod/[ab]",     /* no brackets */
		"secret.read:prod/\xc3\xa9", /* no non-ASCII */
		"secret.read:a,b",           /* no lists */
		"secret.read:prod\t",        /* tab */
	};
	cf_error err = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cf_error_clear(&err);
		if (cf_perm_rule_check(bad[i], &err) != CF_ERR_PARSE)
			fail_msg("rule \"%s\" was accepted", bad[i]);
		assert_true(err.msg[0] != '\0');
		parse_expect(CF_ERR_PARSE, bad[i], strlen(bad[i]));
	}
	assert_status(CF_ERR_PARSE, cf_perm_rule_check("frobnicate:x", &err), &err);
	assert_non_null(strstr(err.msg, "unknown verb"));

	/* One bad line spoils the whole text. */
	parse_expect(CF_ERR_PARSE, "secret.read:a\nbogus\nsecret.read:b", 33);
	assert_status(CF_OK, cf_perm_rule_check("admin:**", &err), &err);
}

static void scope_length_limit(void **state)
{
	char rule[16 + CF_NAME_MAX_BYTES + 2];
	cf_error err = { 0 };
	size_t prefix = strlen("secret.read:");

	(void)state;
	memcpy(rule, "secret.read:", prefix);
	memset(rule + prefix, 'a', CF_NAME_MAX_BYTES);
	rule[prefix + CF_NAME_MAX_BYTES] = '\0';
	assert_status(CF_OK, cf_perm_rule_check(rule, &err), &err);
	rule[prefix + CF_NAME_MAX_BYTES] = 'a';
	rule[prefix + CF_NAME_MAX_BYTES + 1] = '\0';
	assert_status(CF_ERR_PARSE, cf_perm_rule_check(rule, &err), &err);
	parse_expect(CF_ERR_PARSE, rule, strlen(rule));
}

static void text_and_rule_count_limits(void **state)
{
	static const char one[] = "secret.read:x\n";
	size_t one_len = sizeof(one) - 1;
	size_t big_len = CF_PERMS_MAX_BYTES + 1;
	char *text = malloc(big_len + 1);
	cf_perms *perms;
	size_t len = 0;

	(void)state;
	assert_non_null(text);
	/* CF_PERM_MAX_RULES rules are fine, one more is too many. */
	for (int i = 0; i < CF_PERM_MAX_RULES; i++, len += one_len)
		memcpy(text + len, one, one_len);
	text[len] = '\0';
	perms = parse_ok(text);
	assert_int_equal(cf_perms_count(perms), CF_PERM_MAX_RULES);
	cf_perms_free(perms);
	memcpy(text + len, one, one_len);
	parse_expect(CF_ERR_TOO_LARGE, text, len + one_len);

	/* Above the byte limit, even when every line is blank. */
	memset(text, '\n', big_len);
	parse_expect(CF_ERR_TOO_LARGE, text, big_len);
	{
		cf_error err = { 0 };

		/* At the limit, blank lines make an empty set. */
		perms = NULL;
		assert_status(CF_OK, cf_perms_parse(text, big_len - 1, &perms, &err),
			      &err);
		assert_int_equal(cf_perms_count(perms), 0);
		cf_perms_free(perms);
	}
	free(text);
}

static void nul_byte_refused(void **state)
{
	static const char text[] = "secret.read:prod/*\0\nadmin:**";

	(void)state;
	parse_expect(CF_ERR_PARSE, text, sizeof(text) - 1);
	/* Length is what counts: text need not be NUL-terminated. */
	{
		cf_error err = { 0 };
		cf_perms *perms = NULL;

		assert_status(CF_OK, cf_perms_parse("admin:abcdef", 8, &perms, &err),
			      &err);
		assert_string_equal(cf_perms_scope(perms, 0), "ab");
		cf_perms_free(perms);
	}
}

static void glob_semantics(void **state)
{
	static const struct {
		const char *pattern, *name;
		bool match;
	} cases[] = {
		{ "prod/db", "prod/db", true },
		{ "prod/db", "prod/dbx", false },
		{ "prod/db", "prod/d", false },
		{ "prod/db", "Prod/db", false },
		{ "prod/*", "prod/db", true },
		{ "prod/*", "prod/", true },
		{ "prod/*", "prod/db/password", false },   /* '*' stops at '/' */
		{ "prod/*", "prod", false },
		{ "prod/**", "prod/db/password", true },   /* '**' crosses '/' */
		{ "prod/**", "prod/", true },
		{ "prod/**", "production", false },
		{ "**", "a/b/c", true },
		{ "**", "", true },
		{ "*", "a/b", false },
		{ "*", "abc", true },
		{ "*/password", "db/password", true },
		{ "*/password", "a/db/password", false },
		{ "**/password", "a/db/password", true },
		{ "**/password", "a/db/passwords", false },
		{ "prod/**/key", "prod/a/b/key", true },
		{ "prod/**/key", "prod/key", false },
		{ "web-?", "web-1", true },
		{ "web-?", "web-12", false },
		{ "web-?", "web-", false },
		{ "a?c", "a/c", false },                   /* '?' is not '/' */
		{ "*.conf", "app.conf", true },
		{ "*.conf", "appXconf", false },           /* '.' is literal */
		{ "a*b*c", "aXbYc", true },
		{ "a*b*c", "aXbY/c", false },
		{ "***", "a/b", true },
		{ "", "", true },
		{ "", "a", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (cf_glob_match(cases[i].pattern, cases[i].name) != cases[i].match)
			fail_msg("glob \"%s\" vs \"%s\": want %s", cases[i].pattern,
				 cases[i].name, cases[i].match ? "match" : "no match");
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void glob_pathological_patterns_are_fast(void **state)
{
	char pattern[4 * CF_NAME_MAX_BYTES + 1], name[4 * CF_NAME_MAX_BYTES + 1];
	size_t plen = 4 * CF_NAME_MAX_BYTES, nlen = 4 * CF_NAME_MAX_BYTES;
	double start = now_seconds();

	(void)state;
	/* a*a*a*...*b against aaaa...a: exponential for a backtracking matcher. */
	for (size_t i = 0; i < plen; i += 2) {
		pattern[i] = 'a';
		pattern[i + 1] = '*';
	}
	pattern[plen - 1] = 'b';
	pattern[plen] = '\0';
	memset(name, 'a', nlen);
	name[nlen] = '\0';
	assert_false(cf_glob_match(pattern, name));

	/* All stars, and all double stars, against a long name with slashes. */
	memset(pattern, '*', plen);
	for (size_t i = 0; i < nlen; i++)
		name[i] = i % 8 == 7 ? '/' : 'x';
	assert_true(cf_glob_match(pattern, name));
	memset(pattern, '*', plen - 1);
	pattern[plen - 1] = '?';
	pattern[plen - 2] = '/';
	name[nlen - 2] = '/';
	assert_true(cf_glob_match(pattern, name));
	name[nlen - 1] = '/'; /* '?' never matches '/' */
	assert_false(cf_glob_match(pattern, name));

	/* Beyond the bound the answer is simply no. */
	{
		char *huge = malloc(8 * CF_NAME_MAX_BYTES + 1);

		assert_non_null(huge);
		memset(huge, 'a', 8 * CF_NAME_MAX_BYTES);
		huge[8 * CF_NAME_MAX_BYTES] = '\0';
		assert_false(cf_glob_match("**", huge));
		assert_false(cf_glob_match(huge, "a"));
		free(huge);
	}
	/* Generous even for a sanitizer build: the DP is ~1M cells a call. */
	assert_true(now_seconds() - start < 5.0);
}

static void allows_and_admin(void **state)
{
	cf_perms *perms = parse_ok("secret.read:prod/*\nsecret.write:dev/**\n"
				   "admin:ops/*");

	(void)state;
	assert_true(cf_perms_allows(perms, "secret.read", "prod/db"));
	assert_false(cf_perms_allows(perms, "secret.read", "prod/db/pw"));
	assert_false(cf_perms_allows(perms, "secret.write", "prod/db"));
	assert_true(cf_perms_allows(perms, "secret.write", "dev/a/b"));
	assert_false(cf_perms_allows(perms, "secret.read", "dev/a"));
	/* admin grants every verb, but only on its own scope. */
	assert_true(cf_perms_allows(perms, "secret.read", "ops/x"));
	assert_true(cf_perms_allows(perms, "secret.write", "ops/x"));
	assert_true(cf_perms_allows(perms, "agent.enroll", "ops/x"));
	assert_true(cf_perms_allows(perms, "audit.read", "ops/x"));
	assert_true(cf_perms_allows(perms, "admin", "ops/x"));
	assert_false(cf_perms_allows(perms, "secret.read", "ops/x/y"));
	assert_false(cf_perms_allows(perms, "admin", "prod/db"));
	assert_false(cf_perms_allows(perms, "token.create", "prod/db"));
	assert_false(cf_perms_allows(NULL, "secret.read", "prod/db"));
	cf_perms_free(perms);
}

static void covers(void **state)
{
	cf_perms *perms = parse_ok("agent.enroll:web-*\nagent.enroll:db\n"
				   "secret.read:**");
	cf_perms *wide = parse_ok("agent.enroll:**");
	cf_perms *admin = parse_ok("admin:eu/*");

	(void)state;
	assert_true(cf_perms_covers(perms, "agent.enroll", "web-1"));
	assert_true(cf_perms_covers(perms, "agent.enroll", "db"));
	assert_false(cf_perms_covers(perms, "agent.enroll", "dbx"));
	assert_false(cf_perms_covers(perms, "agent.enroll", "web/1"));
	assert_false(cf_perms_covers(perms, "agent.enroll", "api"));
	/* secret.read:** must not lend agent.enroll anything. */
	assert_false(cf_perms_covers(perms, "agent.manage", "web-1"));
	/* An inner glob: covered by the same glob, never by a narrower rule. */
	assert_true(cf_perms_covers(perms, "agent.enroll", "web-*"));
	assert_false(cf_perms_covers(perms, "agent.enroll", "db*"));
	assert_false(cf_perms_covers(perms, "agent.enroll", "web-**"));
	assert_true(cf_perms_covers(wide, "agent.enroll", "anything/*"));
	assert_true(cf_perms_covers(wide, "agent.enroll", "**"));
	assert_true(cf_perms_covers(admin, "agent.enroll", "eu/web"));
	assert_false(cf_perms_covers(admin, "agent.enroll", "us/web"));
	assert_false(cf_perms_covers(NULL, "agent.enroll", "web-1"));
	cf_perms_free(perms);
	cf_perms_free(wide);
	cf_perms_free(admin);
}

static void name_check(void **state)
{
	static const char *const good[] = {
		"a", "prod/db/password", "A-Z_0.9", "a.b", "...", "a/..b", "x/.y/z",
	};
	static const char *const bad[] = {
		"", "/prod", "prod/", "prod//db", ".", "..", "prod/./db",
		"prod/../db", "./a", "a/..", "a b", "a\tb", "a:b", "a*b", "a?b",
		"caf\xc3\xa9", "a\\b", "a\nb",
	};
	char longest[CF_NAME_MAX_BYTES + 2];
	cf_error err = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_status(CF_OK, cf_name_check("secret name", good[i], &err), &err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cf_error_clear(&err);
		if (cf_name_check("secret name", bad[i], &err) != CF_ERR_USAGE)
			fail_msg("name \"%s\" was accepted", bad[i]);
		assert_non_null(strstr(err.msg, "secret name"));
	}
	memset(longest, 'n', CF_NAME_MAX_BYTES);
	longest[CF_NAME_MAX_BYTES] = '\0';
	assert_status(CF_OK, cf_name_check("group name", longest, &err), &err);
	longest[CF_NAME_MAX_BYTES] = 'n';
	longest[CF_NAME_MAX_BYTES + 1] = '\0';
	assert_status(CF_ERR_USAGE, cf_name_check("group name", longest, &err), &err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_rules),
		cmocka_unit_test(crlf_everywhere),
		cmocka_unit_test(bad_rules),
		cmocka_unit_test(scope_length_limit),
		cmocka_unit_test(text_and_rule_count_limits),
		cmocka_unit_test(nul_byte_refused),
		cmocka_unit_test(glob_semantics),
		cmocka_unit_test(glob_pathological_patterns_are_fast),
		cmocka_unit_test(allows_and_admin),
		cmocka_unit_test(covers),
		cmocka_unit_test(name_check),
	};

	return cmocka_run_group_tests_name("policy", tests, fx_group_setup, NULL);
}
