/*
 * test_agent_template.c - config templates (src/agent/template.h).
 *
 * Exact outputs for the happy paths (plain values, | json with every
 * kind of byte that must be escaped, literals), exact LINE:COL for every
 * parse refusal, the render refusals (missing secret, | json on bytes
 * that are not UTF-8, the output limit at and just past it), that no
 * message ever holds a value, and that parsing stays linear.
 */
#include "fixture.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "secmem.h"
#include "template.h"

#define WHAT "app.tmpl"

/* The secrets the lookup knows; the values are test data. */
struct entry {
	const char *name;
	cf_secret *value;
};

struct table {
	struct entry e[8];
	size_t n;
	size_t calls;
};

static void table_add(struct table *tab, const char *name, const void *value,
		      size_t len)
{
	assert_true(tab->n < 8);
	tab->e[tab->n].name = name;
	tab->e[tab->n].value = cf_secret_from(value, len);
	assert_non_null(tab->e[tab->n].value);
	tab->n++;
}

static void table_free(struct table *tab)
{
	for (size_t i = 0; i < tab->n; i++)
		cf_secret_free(tab->e[i].value);
	tab->n = 0;
}

static const cf_secret *lookup(void *ctx, const char *name)
{
	struct table *tab = ctx;

	tab->calls++;
	for (size_t i = 0; i < tab->n; i++)
		if (strcmp(tab->e[i].name, name) == 0)
			return tab->e[i].value;
	return NULL;
}

static ag_template *parse_ok(const char *text)
{
	cf_error err = { 0 };
	ag_template *t = NULL;

	assert_status(CF_OK, ag_template_parse(text, strlen(text), WHAT, &t, &err),
		      &err);
	assert_non_null(t);
	return t;
}

/* Parses and renders text; the output must be want (want_len bytes). */
static void render_is(struct table *tab, const char *text, const char *want,
		      size_t want_len)
{
	ag_template *t = parse_ok(text);
	cf_error err = { 0 };
	cf_secret *out = NULL;

	assert_status(CF_OK, ag_template_render(t, lookup, tab, &out, &err), &err);
	assert_non_null(out);
	assert_int_equal(cf_secret_len(out), want_len);
	assert_memory_equal(cf_secret_cdata(out), want, want_len);
	cf_secret_free(out);
	ag_template_free(t);
}

/* A parse refusal with the message "app.tmpl:LINE:COL: ...needle...". */
static void parse_fail_len(const char *text, size_t len, unsigned line,
			   unsigned col, const char *needle)
{
	cf_error err = { 0 };
	ag_template *t = (ag_template *)&err;
	char prefix[64];

	assert_status(CF_ERR_PARSE, ag_template_parse(text, len, WHAT, &t, &err),
		      &err);
	assert_null(t);
	snprintf(prefix, sizeof(prefix), WHAT ":%u:%u: ", line, col);
	if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
		fail_msg("want a message starting \"%s\", got \"%s\"", prefix,
			 err.msg);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("want \"%s\" in \"%s\"", needle, err.msg);
}

static void parse_fail(const char *text, unsigned line, unsigned col,
		       const char *needle)
{
	parse_fail_len(text, strlen(text), line, col, needle);
}

static void plain(void **state)
{
	struct table tab = { 0 };

	(void)state;
	table_add(&tab, "prod/db/password", "hunter2", 7);
	table_add(&tab, "prod/api/token", "t0k", 3);
	render_is(&tab, "password = {{ secret \"prod/db/password\" }}\n",
		  "password = hunter2\n", 19);
	/* Blanks inside the braces are free, and optional. */
	render_is(&tab, "{{secret\"prod/api/token\"}}|{{ \t secret \t "
		  "\"prod/api/token\"\t}}", "t0k|t0k", 7);
	/* Several on a line, many lines, text at both ends. */
	render_is(&tab, "a{{ secret \"prod/api/token\" }}b{{ secret "
		  "\"prod/db/password\" }}c\n\nd {{ secret \"prod/api/token\" }}",
		  "at0kbhunter2c\n\nd t0k", 20);
	/* No action at all, and nothing at all. */
	render_is(&tab, "just { text } with }} and {\n", "just { text } with }} "
		  "and {\n", 28);
	render_is(&tab, "", "", 0);
	table_free(&tab);

	/* A value's bytes as they are, NUL and non-UTF-8 included. */
	table_add(&tab, "bin", "a\0\xff\n", 4);
	render_is(&tab, "[{{ secret \"bin\" }}]", "[a\0\xff\n]", 6);
	table_free(&tab);
}

static void literals(void **state)
{
	struct table tab = { 0 };

	(void)state;
	render_is(&tab, "{{ \"{{\" }} secret \"x\" }}", "{{ secret \"x\" }}", 16);
	render_is(&tab, "a{{\"\"}}b", "ab", 2);
	render_is(&tab, "{{ \"q\\\"b\\\\s}}\" }}", "q\"b\\s}}", 7);
	render_is(&tab, "{{ \"\t\xc3\xa9\" }}", "\t\xc3\xa9", 3);
}

static void json(void **state)
{
	struct table tab = { 0 };
	static const char value[] =
		"q\"b\\s/\n\r\t\b\f\x01\x1f\x7f \xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91";
	static const char want[] =
		"{\"k\": \"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001F\x7f "
		"\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91\"}";

	(void)state;
	table_add(&tab, "v", value, sizeof(value) - 1);
	table_add(&tab, "nul", "a\0b", 3);
	table_add(&tab, "empty", "", 0);
	render_is(&tab, "{\"k\": {{ secret \"v\" | json }}}", want,
		  sizeof(want) - 1);
	render_is(&tab, "{{secret \"nul\"|json}} {{ secret \"empty\"  |  json }}",
		  "\"a\\u0000b\" \"\"", 13);
	table_free(&tab);
}

/* The | json refusal names the secret and where, never the value. */
static void json_not_utf8(void **state)
{
	static const char *const bad[] = {
		"VALUE-\xff", "VALUE-\xc3", "VALUE-\xc0\xaf" /* overlong */,
		"VALUE-\xed\xa0\x80" /* surrogate */, "VALUE-\xf4\x90\x80\x80",
	};
	cf_error err = { 0 };
	cf_secret *out = (cf_secret *)&err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct table tab = { 0 };
		ag_template *t = parse_ok("x\n  {{ secret \"a/b\" }} {{ secret "
					  "\"a/b\" | json }}");

		table_add(&tab, "a/b", bad[i], strlen(bad[i]));
		assert_status(CF_ERR_PARSE, ag_template_render(t, lookup, &tab,
							       &out, &err), &err);
		assert_null(out);
		assert_non_null(strstr(err.msg, WHAT ":2:22: "));
		assert_non_null(strstr(err.msg, "\"a/b\" is not valid UTF-8"));
		assert_null(strstr(err.msg, "VALUE"));
		ag_template_free(t);
		table_free(&tab);
	}
}

static void names(void **state)
{
	ag_template *t = parse_ok("{{ secret \"b\" }}{{ secret \"a\" }}\n"
				  "{{ secret \"b\" | json }}{{ \"c\" }}{{ secret \"c\" }}");
	struct table tab = { 0 };
	cf_error err = { 0 };
	cf_secret *out = (cf_secret *)&err;

	(void)state;
	assert_int_equal(ag_template_n_names(t), 3);
	assert_string_equal(ag_template_name(t, 0), "b");
	assert_string_equal(ag_template_name(t, 1), "a");
	assert_string_equal(ag_template_name(t, 2), "c");
	assert_null(ag_template_name(t, 3));

	/* A missing secret: NOT_FOUND, its name and first use, no output. */
	table_add(&tab, "b", "B", 1);
	table_add(&tab, "c", "C", 1);
	assert_status(CF_ERR_NOT_FOUND, ag_template_render(t, lookup, &tab, &out,
							   &err), &err);
	assert_null(out);
	assert_non_null(strstr(err.msg, WHAT ":1:17: secret \"a\" is not available"));
	table_add(&tab, "a", "A", 1);
	tab.calls = 0;
	assert_status(CF_OK, ag_template_render(t, lookup, &tab, &out, &err), &err);
	assert_int_equal(cf_secret_len(out), 8);
	assert_memory_equal(cf_secret_cdata(out), "BA\n\"B\"cC", 8);
	/* One lookup per distinct name. */
	assert_int_equal(tab.calls, 3);
	cf_secret_free(out);
	ag_template_free(t);
	ag_template_free(NULL);
	table_free(&tab);

	t = parse_ok("no secrets");
	assert_int_equal(ag_template_n_names(t), 0);
	assert_null(ag_template_name(t, 0));
	ag_template_free(t);
}

static void parse_errors(void **state)
{
	char name[300];

	(void)state;
	parse_fail("a\nb {{ secret \"x\"", 2, 3, "{{ without a closing }}");
	parse_fail("a\nb {{ secret \"x\" }\n}}", 2, 17, "expected }} but found '}'");
	parse_fail("{{", 1, 1, "without a closing }}");
	parse_fail("x {{   ", 1, 3, "without a closing }}");
	parse_fail("{{ foo }}", 1, 4, "unknown action \"foo\"");
	parse_fail("{{ secrets \"a\" }}", 1, 4, "unknown action \"secrets\"");
	parse_fail("{{ Secret \"a\" }}", 1, 4, "unknown action");
	parse_fail("{{ }}", 1, 4, "after {{, found '}'");
	parse_fail("{{{ secret \"a\" }}", 1, 3, "found '{'");
	parse_fail("{{ secret x }}", 1, 11, "double quotes, found 'x'");
	parse_fail("{{ secret }}", 1, 11, "double quotes");
	parse_fail("{{ secret \"../x\" }}", 1, 11, "path segment");
	parse_fail("{{ secret \"a b\" }}", 1, 11, "character outside");
	parse_fail("{{ secret \"\" }}", 1, 11, "1 to 255 bytes");
	parse_fail("{{ secret \"/a\" }}", 1, 11, "secret name");
	parse_fail("{{ secret \"a\" | base64 }}", 1, 17, "unknown filter \"base64\"");
	parse_fail("{{ secret \"a\" | }}", 1, 17, "filter name after '|', found '}'");
	parse_fail("{{ secret \"a\" | json | json }}", 1, 22, "expected }} but found '|'");
	parse_fail("{{ secret \"a\" extra }}", 1, 15, "expected }} but found 'e'");
	parse_fail("{{ secret \"a\" } }", 1, 15, "found '}'");
	parse_fail("{{ \"a\" | json }}", 1, 8, "found '|'");
	parse_fail("{{ \"abc }}", 1, 4, "string has no closing \"");
	parse_fail("{{ \"abc\n\" }}", 1, 4, "no closing \"");
	parse_fail("{{ secret \"a\nb\" }}", 1, 11, "no closing \"");
	parse_fail("{{ \"a\\nb\" }}", 1, 6, "unknown escape");
	parse_fail("{{ \"a\x01\" }}", 1, 6, "control byte 0x01");
	parse_fail_len("{{ \"a\0\" }}", 10, 1, 6, "control byte 0x00");
	parse_fail("{{\xff}}", 1, 3, "found byte 0xff");
	parse_fail("{{ secret \"a\"\r\n}}", 1, 1, "without a closing }}");
	/* Columns count bytes, tabs as one; lines count from 1. */
	parse_fail("{{ secret \"a\" }}\n\tx {{ secret \"b\" }}\n\n\t\t{{ nope }}",
		   4, 6, "unknown action \"nope\"");
	/* A name of 255 bytes is fine, 256 are not. */
	snprintf(name, sizeof(name), "{{ secret \"%.*s\" }}", 255,
		 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
		 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
		 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
		 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn");
	ag_template_free(parse_ok(name));
	snprintf(name, sizeof(name), "{{ secret \"%.*s\" }}", 256,
		 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
		 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
		 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
		 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn");
	parse_fail(name, 1, 11, "not a secret name");
}

static void limits(void **state)
{
	size_t big_len = 1024 * 1024;
	unsigned char *big = malloc(big_len);
	struct table tab = { 0 };
	cf_error err = { 0 };
	ag_template *t = NULL;
	cf_secret *out = NULL;
	char *src;

	(void)state;
	assert_non_null(big);
	/* The source limit. */
	src = calloc(1, AG_TEMPLATE_SOURCE_MAX_BYTES + 1);
	assert_non_null(src);
	memset(src, 'x', AG_TEMPLATE_SOURCE_MAX_BYTES + 1);
	assert_status(CF_ERR_TOO_LARGE, ag_template_parse(src,
		      AG_TEMPLATE_SOURCE_MAX_BYTES + 1, WHAT, &t, &err), &err);
	assert_null(t);
	assert_status(CF_OK, ag_template_parse(src, AG_TEMPLATE_SOURCE_MAX_BYTES,
					       WHAT, &t, &err), &err);
	ag_template_free(t);
	free(src);

	/* 4 x 1 MiB is exactly the output limit; one more byte is not. */
	memset(big, 'v', big_len);
	table_add(&tab, "big", big, big_len);
	t = parse_ok("{{ secret \"big\" }}{{ secret \"big\" }}{{ secret \"big\" }}"
		     "{{ secret \"big\" }}");
	assert_status(CF_OK, ag_template_render(t, lookup, &tab, &out, &err), &err);
	assert_int_equal(cf_secret_len(out), AG_TEMPLATE_OUTPUT_MAX_BYTES);
	cf_secret_free(out);
	ag_template_free(t);
	t = parse_ok("{{ secret \"big\" }}{{ secret \"big\" }}{{ secret \"big\" }}"
		     "{{ secret \"big\" }}\n");
	assert_status(CF_ERR_TOO_LARGE, ag_template_render(t, lookup, &tab, &out,
							   &err), &err);
	assert_null(out);
	assert_non_null(strstr(err.msg, WHAT));
	ag_template_free(t);
	table_free(&tab);

	/* Past the limit only once escaped: 700 KiB of control bytes. */
	memset(big, '\x01', 700 * 1024);
	table_add(&tab, "ctl", big, 700 * 1024);
	t = parse_ok("{{ secret \"ctl\" | json }}");
	assert_status(CF_ERR_TOO_LARGE, ag_template_render(t, lookup, &tab, &out,
							   &err), &err);
	assert_null(out);
	ag_template_free(t);
	/* 600 KiB of them is 3.5 MiB escaped: fine. */
	cf_secret_set_len(tab.e[0].value, 600 * 1024, &err);
	t = parse_ok("{{ secret \"ctl\" | json }}");
	assert_status(CF_OK, ag_template_render(t, lookup, &tab, &out, &err), &err);
	assert_int_equal(cf_secret_len(out), 6 * 600 * 1024 + 2);
	assert_memory_equal(cf_secret_cdata(out), "\"\\u0001\\u0001", 13);
	cf_secret_free(out);
	ag_template_free(t);
	table_free(&tab);
	free(big);
}

/*
 * Linear time: a source of the maximum size made of the most actions and
 * distinct names parses in well under the time a quadratic scan (tens of
 * billions of steps) would need, even under the sanitizers.
 */
static void linear(void **state)
{
	size_t cap = AG_TEMPLATE_SOURCE_MAX_BYTES, len = 0;
	char *src = malloc(cap);
	cf_error err = { 0 };
	ag_template *t = NULL;
	clock_t start;
	double seconds;
	unsigned i = 0;

	(void)state;
	assert_non_null(src);
	while (len + 32 < cap)
		len += (size_t)snprintf(src + len, cap - len,
					"{{secret \"n%u\"}}\n", i++);
	start = clock();
	assert_status(CF_OK, ag_template_parse(src, len, WHAT, &t, &err), &err);
	seconds = (double)(clock() - start) / CLOCKS_PER_SEC;
	assert_int_equal(ag_template_n_names(t), i);
	{
		char last[32];

		snprintf(last, sizeof(last), "n%u", i - 1);
		assert_string_equal(ag_template_name(t, i - 1), last);
	}
	ag_template_free(t);

	/* Many {{ "{{" }} literals and long runs of braces. */
	memset(src, '{', cap);
	for (len = 0; len + 9 < cap; len += 9)
		memcpy(src + len, "{{ \"}\" }}", 9);
	assert_status(CF_OK, ag_template_parse(src, len, WHAT, &t, &err), &err);
	ag_template_free(t);
	free(src);
	if (seconds > 5.0)
		fail_msg("parsing %u actions took %.1f s", i, seconds);
}

static void load(void **state)
{
	char dir[] = "/tmp/test_agent_template.XXXXXX";
	char path[256];
	cf_error err = { 0 };
	ag_template *t = NULL;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/app.conf.tmpl", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x = {{ secret \"a\" }}\n{{ bad }}", 30), 30);
	assert_int_equal(close(fd), 0);
	assert_status(CF_ERR_PARSE, ag_template_load(path, &t, &err), &err);
	assert_null(t);
	assert_true(strncmp(err.msg, path, strlen(path)) == 0);
	assert_non_null(strstr(err.msg, ":2:4: "));

	assert_int_equal(truncate(path, 21), 0);
	assert_status(CF_OK, ag_template_load(path, &t, &err), &err);
	assert_int_equal(ag_template_n_names(t), 1);
	ag_template_free(t);

	/* Anybody could redirect secrets into the target: refused. */
	assert_int_equal(chmod(path, 0666), 0);
	assert_status(CF_ERR_IO, ag_template_load(path, &t, &err), &err);
	assert_null(t);

	assert_int_equal(unlink(path), 0);
	assert_status(CF_ERR_IO, ag_template_load(path, &t, &err), &err);
	assert_non_null(strstr(err.msg, path));
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain),
		cmocka_unit_test(literals),
		cmocka_unit_test(json),
		cmocka_unit_test(json_not_utf8),
		cmocka_unit_test(names),
		cmocka_unit_test(parse_errors),
		cmocka_unit_test(limits),
		cmocka_unit_test(linear),
		cmocka_unit_test(load),
	};

	return cmocka_run_group_tests_name("agent_template", tests,
					   fx_group_setup, NULL);
}
