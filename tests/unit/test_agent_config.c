/*
 * test_agent_config.c - the agent's configuration file and reload command
 * lines (src/agent/config.h).
 *
 * The file is outside input: every refusal is checked for its status and
 * for naming the file and the exact line ("test.conf:LINE: "), and the
 * happy paths for every field they fill.  Reload lines are split without
 * a shell, so the quoting rules are checked word by word.
 */
#include "fixture.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define WHAT "test.conf"
#define SERVER "[server]\nurl = https://coffer.example:8443\n"

static ag_config *parse_ok(const char *text)
{
	cf_error err = { 0 };
	ag_config *cfg = NULL;

	assert_status(CF_OK, ag_config_parse(text, strlen(text), WHAT, &cfg,
					     &err), &err);
	assert_non_null(cfg);
	return cfg;
}

/*
 * Fails unless text is refused with want, a message starting with
 * "test.conf:LINE: " (LINE 0: "test.conf: ") and containing needle.
 */
static void parse_fail_len(cf_status want, const char *text, size_t len,
			   int line, const char *needle)
{
	cf_error err = { 0 };
	ag_config *cfg = (ag_config *)&err; /* not NULL: the reset is visible */
	char prefix[64];

	assert_status(want, ag_config_parse(text, len, WHAT, &cfg, &err), &err);
	assert_null(cfg);
	if (line > 0)
		snprintf(prefix, sizeof(prefix), WHAT ":%d: ", line);
	else
		snprintf(prefix, sizeof(prefix), WHAT ": ");
	if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
		fail_msg("want a message starting \"%s\", got \"%s\"", prefix,
			 err.msg);
	if (needle != NULL && strstr(err.msg, needle) == NULL)
		fail_msg("want \"%s\" in \"%s\"", needle, err.msg);
}

static void parse_fail(const char *text, int line, const char *needle)
{
	parse_fail_len(CF_ERR_PARSE, text, strlen(text), line, needle);
}

static void full_example(void **state)
{
	ag_config *cfg = parse_ok(
		"# the example of the issue\n"
		"[server]\n"
		"url = https://coffer.example:8443\n"
		"ca = /etc/coffer/server-ca.pem\n"
		"root = /etc/coffer/root.pem\n"
		"\n"
		"[agent]\n"
		"reload_timeout = 10\n"
		"wait = 20\n"
		"\n"
		"[file prod/db/password]\n"
		"path = /run/app/db_password\n"
		"mode = 0400\n"
		"owner = root\n"
		"group = root\n"
		"reload = /usr/bin/systemctl reload app\n"
		"\n"
		"[template /etc/app/app.conf]\n"
		"source = /etc/coffer/app.conf.tmpl\n"
		"mode = 0640\n"
		"reload = /usr/bin/systemctl reload app\n");
	const ag_sink *f, *t;

	(void)state;
	assert_string_equal(cfg->path, WHAT);
	assert_string_equal(cfg->server_url, "https://coffer.example:8443");
	assert_string_equal(cfg->server_ca, "/etc/coffer/server-ca.pem");
	assert_string_equal(cfg->root, "/etc/coffer/root.pem");
	assert_int_equal(cfg->reload_timeout_s, 10);
	assert_int_equal(cfg->wait_s, 20);
	assert_int_equal(cfg->n_sinks, 2);

	f = &cfg->sinks[0];
	assert_int_equal(f->kind, AG_SINK_FILE);
	assert_string_equal(f->secret, "prod/db/password");
	assert_string_equal(f->path, "/run/app/db_password");
	assert_null(f->source);
	assert_int_equal(f->mode, 0400);
	assert_int_equal(f->uid, 0);
	assert_int_equal(f->gid, 0);
	assert_non_null(f->reload);
	assert_string_equal(f->reload[0], "/usr/bin/systemctl");
	assert_string_equal(f->reload[1], "reload");
	assert_string_equal(f->reload[2], "app");
	assert_null(f->reload[3]);
	assert_string_equal(f->reload_text, "/usr/bin/systemctl reload app");
	assert_int_equal(f->line, 11);

	t = &cfg->sinks[1];
	assert_int_equal(t->kind, AG_SINK_TEMPLATE);
	assert_null(t->secret);
	assert_string_equal(t->path, "/etc/app/app.conf");
	assert_string_equal(t->source, "/etc/coffer/app.conf.tmpl");
	assert_int_equal(t->mode, 0640);
	assert_int_equal(t->uid, (uid_t)-1);
	assert_int_equal(t->gid, (gid_t)-1);
	assert_string_equal(t->reload[1], "reload");
	assert_int_equal(t->line, 18);
	ag_config_free(cfg);
}

static void defaults(void **state)
{
	ag_config *cfg = parse_ok(SERVER
		"[file a]\npath = /run/a\n"
		"[template /run/t]\nsource = /etc/t.tmpl\n");

	(void)state;
	assert_null(cfg->server_ca);
	assert_null(cfg->root);
	assert_int_equal(cfg->reload_timeout_s, 30);
	assert_int_equal(cfg->wait_s, 55);
	assert_int_equal(cfg->n_sinks, 2);
	assert_int_equal(cfg->sinks[0].mode, 0400);
	assert_int_equal(cfg->sinks[0].uid, (uid_t)-1);
	assert_int_equal(cfg->sinks[0].gid, (gid_t)-1);
	assert_null(cfg->sinks[0].reload);
	assert_null(cfg->sinks[0].reload_text);
	assert_int_equal(cfg->sinks[1].mode, 0440);
	ag_config_free(cfg);

	/* No sink at all is a valid (if idle) agent. */
	cfg = parse_ok(SERVER);
	assert_int_equal(cfg->n_sinks, 0);
	assert_null(cfg->sinks);
	ag_config_free(cfg);
	ag_config_free(NULL);
}

static void layout(void **state)
{
	/* Comments, blanks, CRLF, tabs; '#' inside a value is not a comment. */
	ag_config *cfg = parse_ok(
		"  # comment\r\n"
		"\t; another\r\n"
		"\r\n"
		"   \t  \n"
		"  [ server ]  \r\n"
		"\turl\t=\thttps://h:1/#x\t\r\n"
		"[file   a/b.c-d_e]\n"
		"path=/run/x #y\n"
		"reload =   /bin/echo   a#b  \n"
		"[agent]\nwait = 60\nreload_timeout = 3600");

	(void)state;
	assert_string_equal(cfg->server_url, "https://h:1/#x");
	assert_string_equal(cfg->sinks[0].secret, "a/b.c-d_e");
	assert_string_equal(cfg->sinks[0].path, "/run/x #y");
	assert_string_equal(cfg->sinks[0].reload_text, "/bin/echo   a#b");
	assert_string_equal(cfg->sinks[0].reload[1], "a#b");
	assert_int_equal(cfg->sinks[0].line, 7);
	assert_int_equal(cfg->wait_s, 60);
	assert_int_equal(cfg->reload_timeout_s, 3600);
	ag_config_free(cfg);

	cfg = parse_ok(SERVER "[agent]\nwait = 1\nreload_timeout = 1\n");
	assert_int_equal(cfg->wait_s, 1);
	assert_int_equal(cfg->reload_timeout_s, 1);
	ag_config_free(cfg);
}

static void sections(void **state)
{
	(void)state;
	parse_fail(SERVER "[servers]\n", 3, "unknown section [servers]");
	parse_fail(SERVER "[secret a]\n", 3, "unknown section");
	parse_fail(SERVER "[]\n", 3, "unknown section");
	parse_fail(SERVER "[file a\n", 3, "closing ]");
	parse_fail(SERVER "[server]\n", 3, "first at line 1");
	parse_fail(SERVER "[agent]\n[agent]\n", 4, "first at line 3");
	parse_fail("[server x]\nurl = https://h\n", 1, "takes nothing");
	parse_fail(SERVER "[agent now]\n", 3, "takes nothing");
	parse_fail(SERVER "[file]\n", 3, "needs the secret's name");
	parse_fail(SERVER "[file ../x]\npath = /a\n", 3, "segment");
	parse_fail(SERVER "[file /abs]\npath = /a\n", 3, "[file /abs]");
	parse_fail(SERVER "[file a b]\npath = /a\n", 3, "character");
	parse_fail(SERVER "[template]\n", 3, "needs the path");
	parse_fail(SERVER "[template etc/x]\nsource = /a\n", 3,
		   "not an absolute path");
	parse_fail(SERVER "[template /etc//x]\nsource = /a\n", 3, "empty segment");
	parse_fail(SERVER "[template /etc/x/]\nsource = /a\n", 3, "empty segment");
	parse_fail(SERVER "[template /etc/./x]\nsource = /a\n", 3, "\".\"");
	parse_fail(SERVER "[template /etc/../x]\nsource = /a\n", 3, "\"..\"");
	parse_fail(SERVER "[template /]\nsource = /a\n", 3, "empty segment");
	/* Required keys: the refusal names the section's header line. */
	parse_fail(SERVER "\n[file a]\nmode = 0400\n[agent]\n", 4,
		   "[file a] has no path");
	parse_fail(SERVER "[file a]\nmode = 0400\n", 3, "has no path");
	parse_fail(SERVER "[template /x]\nmode = 0400\n\n", 3,
		   "[template /x] has no source");
	parse_fail("# none\n[agent]\nwait = 5\n", 0, "no [server] section");
	parse_fail("", 0, "no [server] section");
	parse_fail("[server]\nca = /a\n\n[agent]\n", 1, "[server] has no url");
}

static void keys(void **state)
{
	(void)state;
	parse_fail("url = https://h\n[server]\n", 1, "before any section");
	parse_fail(SERVER "urls = https://x\n", 3,
		   "unknown key \"urls\" in [server]; the keys there are url, ca, root");
	parse_fail(SERVER "[agent]\nwaits = 5\n", 4,
		   "the keys there are reload_timeout, wait");
	parse_fail(SERVER "[file a]\nsource = /x\n", 4,
		   "in [file a]; the keys there are path, mode, owner, group, reload");
	parse_fail(SERVER "[template /t]\npath = /x\n", 4,
		   "in [template /t]; the keys there are source, mode, owner, "
		   "group, reload");
	parse_fail(SERVER "url = https://again\n", 3, "first at line 2");
	parse_fail(SERVER "[file a]\npath = /x\nmode = 0400\nmode = 0400\n", 6,
		   "mode is set twice in [file a] (first at line 5)");
	parse_fail(SERVER "[file a]\npath = /x\nreload = /a\nreload = /b\n", 6,
		   "first at line 5");
	parse_fail(SERVER "just words\n", 3, "expected \"key = value\"");
	parse_fail(SERVER " = x\n", 3, "no key before '='");
	parse_fail(SERVER "[file a]\npath =   \n", 4, "path has no value");
	parse_fail(SERVER "[file a]\npath =\n", 4, "has no value");
}

static void values(void **state)
{
	(void)state;
	parse_fail("[server]\nurl = http://h:1\n", 2, "not an https:// URL");
	parse_fail("[server]\nurl = HTTPS://h\n", 2, "https://");
	parse_fail("[server]\nurl = https://\n", 2, "https://");
	parse_fail("[server]\nurl = https:///x\n", 2, "https://");
	parse_fail("[server]\nurl = https://h x\n", 2, "contains a blank");
	parse_fail(SERVER "ca = ca.pem\n", 3, "ca \"ca.pem\" is not an absolute");
	parse_fail(SERVER "root = /etc/../root.pem\n", 3, "root");
	parse_fail(SERVER "[file a]\npath = run/a\n", 4, "not an absolute path");
	parse_fail(SERVER "[template /t]\nsource = ./t\n", 4, "source");

	parse_fail(SERVER "[agent]\nwait = 0\n", 4, "from 1 to 60");
	parse_fail(SERVER "[agent]\nwait = 61\n", 4, "from 1 to 60");
	parse_fail(SERVER "[agent]\nwait = -1\n", 4, "whole number");
	parse_fail(SERVER "[agent]\nwait = +5\n", 4, "whole number");
	parse_fail(SERVER "[agent]\nwait = 5s\n", 4, "whole number");
	parse_fail(SERVER "[agent]\nwait = 0x10\n", 4, "whole number");
	parse_fail(SERVER "[agent]\nwait = 99999999999999999999\n", 4,
		   "whole number");
	parse_fail(SERVER "[agent]\nreload_timeout = 0\n", 4, "from 1 to 3600");
	parse_fail(SERVER "[agent]\nreload_timeout = 3601\n", 4, "from 1 to 3600");
}

static void modes(void **state)
{
	static const struct {
		const char *text;
		mode_t mode;
	} good[] = {
		{ "0400", 0400 }, { "400", 0400 }, { "0600", 0600 },
		{ "0640", 0640 }, { "0644", 0644 }, { "0444", 0444 }, { "0000", 0 }, { "755", 0755 },
	};
	static const struct {
		const char *text;
		const char *needle;
	} bad[] = {
		{ "0664", "lets the group or others write" },
		{ "0620", "022" },
		{ "0602", "022" },
		{ "666", "022" },
		{ "4400", "setuid" },
		{ "2400", "setuid, setgid or sticky" },
		{ "1400", "sticky" },
		{ "0800", "not an octal mode" },
		{ "04", "not an octal mode" },
		{ "00400", "not an octal mode" },
		{ "r--", "not an octal mode" },
		{ "0o400", "not an octal mode" },
	};
	char text[256];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ag_config *cfg;

		snprintf(text, sizeof(text), SERVER "[file a]\npath = /a\n"
			 "mode = %s\n", good[i].text);
		cfg = parse_ok(text);
		assert_int_equal(cfg->sinks[0].mode, good[i].mode);
		ag_config_free(cfg);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), SERVER "[template /t]\nsource = /a\n"
			 "mode = %s\n", bad[i].text);
		parse_fail(text, 5, bad[i].needle);
	}
}

static void owners(void **state)
{
	ag_config *cfg = parse_ok(SERVER "[file a]\npath = /a\nowner = 1234\n"
				  "group = 5678\n"
				  "[file b]\npath = /b\nowner = 0\ngroup = 4294967294\n");

	(void)state;
	assert_int_equal(cfg->sinks[0].uid, 1234);
	assert_int_equal(cfg->sinks[0].gid, 5678);
	assert_int_equal(cfg->sinks[1].uid, 0);
	assert_int_equal(cfg->sinks[1].gid, 4294967294u);
	ag_config_free(cfg);

	parse_fail(SERVER "[file a]\npath = /a\nowner = no-such-user-c0ffer\n", 5,
		   "owner \"no-such-user-c0ffer\" is not a user");
	parse_fail(SERVER "[file a]\npath = /a\ngroup = no-such-group-c0ffer\n",
		   5, "group \"no-such-group-c0ffer\" is not a group");
	parse_fail(SERVER "[file a]\npath = /a\nowner = 4294967295\n", 5,
		   "not a valid uid");
	parse_fail(SERVER "[file a]\npath = /a\ngroup = 99999999999\n", 5,
		   "not a valid gid");
}

static void reload_lines(void **state)
{
	ag_config *cfg = parse_ok(SERVER "[file a]\npath = /a\n"
		"reload = /bin/sh -c 'kill -HUP $(cat /run/x.pid)' \"a \\\"b\"\n");

	(void)state;
	assert_string_equal(cfg->sinks[0].reload[0], "/bin/sh");
	assert_string_equal(cfg->sinks[0].reload[1], "-c");
	assert_string_equal(cfg->sinks[0].reload[2], "kill -HUP $(cat /run/x.pid)");
	assert_string_equal(cfg->sinks[0].reload[3], "a \"b");
	assert_null(cfg->sinks[0].reload[4]);
	ag_config_free(cfg);

	parse_fail(SERVER "[file a]\npath = /a\nreload = systemctl reload x\n", 5,
		   "reload: the program \"systemctl\" is not an absolute path");
	parse_fail(SERVER "[file a]\npath = /a\nreload = /bin/x 'a\n", 5,
		   "reload: a ' quote is not closed");
	parse_fail(SERVER "[file a]\npath = /a\nreload = ''\n", 5,
		   "not an absolute path");
}

static void duplicate_paths(void **state)
{
	ag_config *cfg;

	(void)state;
	parse_fail(SERVER "[file a]\npath = /run/x\n[file b]\npath = /run/x\n", 5,
		   "writes /run/x, which the section at line 3 writes too");
	parse_fail(SERVER "[file a]\npath = /run/t\n\n[template /run/t]\n"
		   "source = /s\n", 6, "the section at line 3");
	parse_fail(SERVER "[template /run/t]\nsource = /s\n[file a]\n"
		   "path = /run/t\n", 5, "the section at line 3");
	/* Two clashes: the one found first in the file is reported. */
	parse_fail(SERVER "[file a]\npath = /z\n[file b]\npath = /y\n"
		   "[file c]\npath = /y\n[file d]\npath = /z\n", 7,
		   "line 5 writes too");
	/* One secret to two files, and a template reading another's target, are fine. */
	cfg = parse_ok(SERVER "[file a]\npath = /run/x\n[file a]\npath = /run/y\n"
		       "[template /run/t]\nsource = /run/x\n");
	assert_int_equal(cfg->n_sinks, 3);
	ag_config_free(cfg);
}

static void bytes_and_limits(void **state)
{
	char *text;
	size_t len, cap = 64 + (size_t)AG_CONFIG_MAX_SINKS * 48;
	ag_config *cfg;

	(void)state;
	parse_fail(SERVER "[file a]\npath = /a\x01" "b\n", 4, "control byte 0x01");
	parse_fail(SERVER "\x7f\n", 3, "control byte 0x7f");
	parse_fail_len(CF_ERR_PARSE, SERVER "# a\0b\n", sizeof(SERVER "# a\0b\n") - 1,
		       3, "control byte 0x00 at column 4");
	parse_fail("[server]\rurl = https://h\n", 1, "control byte 0x0d");

	/* A line of exactly AG_CONFIG_MAX_LINE bytes is fine, one more is not. */
	text = malloc(AG_CONFIG_MAX_BYTES + 1);
	assert_non_null(text);
	len = (size_t)snprintf(text, 64, SERVER "#");
	memset(text + len, 'x', AG_CONFIG_MAX_LINE - 1);
	len += AG_CONFIG_MAX_LINE - 1;
	text[len++] = '\n';
	cfg = NULL;
	{
		cf_error err = { 0 };

		assert_status(CF_OK, ag_config_parse(text, len, WHAT, &cfg, &err),
			      &err);
		ag_config_free(cfg);
	}
	text[len - 1] = 'x';
	text[len++] = '\n';
	parse_fail_len(CF_ERR_PARSE, text, len, 3, "longer than 4096 bytes");

	/* The file size limit. */
	memset(text, '#', AG_CONFIG_MAX_BYTES + 1);
	parse_fail_len(CF_ERR_TOO_LARGE, text, AG_CONFIG_MAX_BYTES + 1, 0,
		       "limit");
	free(text);

	/* AG_CONFIG_MAX_SINKS sinks are fine, one more is not. */
	text = malloc(cap);
	assert_non_null(text);
	len = (size_t)snprintf(text, cap, SERVER);
	for (unsigned i = 0; i < AG_CONFIG_MAX_SINKS; i++)
		len += (size_t)snprintf(text + len, cap - len,
					"[file s/%u]\npath = /run/%u\n", i, i);
	{
		cf_error err = { 0 };

		cfg = NULL;
		assert_status(CF_OK, ag_config_parse(text, len, WHAT, &cfg, &err),
			      &err);
		assert_int_equal(cfg->n_sinks, AG_CONFIG_MAX_SINKS);
		assert_string_equal(cfg->sinks[AG_CONFIG_MAX_SINKS - 1].path,
				    "/run/9999");
		ag_config_free(cfg);
	}
	len += (size_t)snprintf(text + len, cap - len, "[file x]\npath = /x\n");
	parse_fail_len(CF_ERR_TOO_LARGE, text, len, 3 + 2 * AG_CONFIG_MAX_SINKS,
		       "more than 10000");
	/* A clash between the first and the last of many. */
	len = (size_t)snprintf(text, cap, SERVER);
	for (unsigned i = 0; i < AG_CONFIG_MAX_SINKS - 1; i++)
		len += (size_t)snprintf(text + len, cap - len,
					"[file s/%u]\npath = /run/%u\n", i, i);
	len += (size_t)snprintf(text + len, cap - len, "[file y]\npath = /run/0\n");
	parse_fail_len(CF_ERR_PARSE, text, len, 1 + 2 * AG_CONFIG_MAX_SINKS,
		       "writes /run/0, which the section at line 3 writes too");
	free(text);
}

/* -------------------------------------------------------------- argv */

static char **split_ok(const char *line, size_t want_n)
{
	cf_error err = { 0 };
	char **argv = NULL;
	size_t n = 0;

	assert_status(CF_OK, ag_argv_split(line, &argv, &err), &err);
	assert_non_null(argv);
	while (argv[n] != NULL)
		n++;
	assert_int_equal(n, want_n);
	return argv;
}

#define SRV "[server]\nurl = https://x:1\n"

/* wait, on_change, restart, max_stale and [group] (issue 7). */
static void settle_and_groups(void **state)
{
	ag_config *cfg;

	(void)state;
	cfg = parse_ok(SRV
		"[file a/b]\npath = /o/a\n"                        /* 3 */
		"[template /o/t]\nsource = /o/t.tmpl\n"            /* 5 */
		"[file a/c]\npath = /o/c\nwait = 1500ms:1m\n"      /* 7 */
		"restart = /bin/true x\nmax_stale = 2h\n"
		"[file a/d]\npath = /o/d\nreload = /bin/r\nrestart = /bin/s\n"
		"on_change = restart\n"
		"[group app]\nsinks = /o/a /o/t\nwait = 2s\n"
		"reload = /bin/echo hi\n");
	assert_int_equal(cfg->n_sinks, 4);
	assert_int_equal(cfg->n_groups, 1);
	assert_string_equal(cfg->groups[0].name, "app");
	assert_int_equal(cfg->groups[0].on_change, AG_ON_RELOAD);
	assert_int_equal(cfg->groups[0].wait_min_ms, 2000);
	assert_int_equal(cfg->groups[0].wait_max_ms, 2000);
	assert_int_equal(cfg->sinks[0].group, 0);
	assert_int_equal(cfg->sinks[1].group, 0);
	assert_int_equal(cfg->sinks[2].group, -1);
	assert_int_equal(cfg->sinks[2].wait_min_ms, 1500);
	assert_int_equal(cfg->sinks[2].wait_max_ms, 60000);
	assert_int_equal(cfg->sinks[2].max_stale_s, 7200);
	/* only restart given: on_change defaults to restart */
	assert_int_equal(cfg->sinks[2].on_change, AG_ON_RESTART);
	assert_string_equal(cfg->sinks[2].restart[1], "x");
	assert_int_equal(cfg->sinks[3].on_change, AG_ON_RESTART);
	assert_int_equal(cfg->sinks[0].on_change, AG_ON_NONE);
	ag_config_free(cfg);

	parse_fail(SRV "[file a/b]\npath = /o/a\nwait = 2s:1s\n", 5, "MAX >= MIN");
	parse_fail(SRV "[file a/b]\npath = /o/a\nwait = 2x\n", 5, "wait must be");
	parse_fail(SRV "[file a/b]\npath = /o/a\nwait = 2h\n", 5, "up to 1h");
	parse_fail(SRV "[file a/b]\npath = /o/a\nmax_stale = 0s\n", 5,
		   "max_stale must be");
	parse_fail(SRV "[file a/b]\npath = /o/a\non_change = bounce\n", 5,
		   "reload, restart or none");
	parse_fail(SRV "[file a/b]\npath = /o/a\non_change = restart\n", 3,
		   "no restart = command");
	parse_fail(SRV "[file a/b]\npath = /o/a\non_change = reload\n", 3,
		   "no reload = command");
	parse_fail(SRV "[group g]\nwait = 1s\n", 3, "has no sinks");
	parse_fail(SRV "[group g]\nsinks = /o/none\n", 4, "no [file] or [template]");
	parse_fail(SRV "[file a/b]\npath = /o/a\nreload = /bin/r\n"
		   "[group g]\nsinks = /o/a\n", 3, "move its reload");
	parse_fail(SRV "[file a/b]\npath = /o/a\n[group g]\nsinks = /o/a\n"
		   "[group h]\nsinks = /o/a\n", 8, "already in [group g]");
	parse_fail(SRV "[group g]\nsinks = /o/a\n[group g]\n", 5, "appears twice");
	parse_fail(SRV "[group b@d]\n", 3, "a group's name");
	parse_fail(SRV "[group g]\nsinks = relative\n", 4, "absolute");
}

/* [action NAME] (docs/COMMANDS.md): run, timeout, args. */
static void actions(void **state)
{
	ag_config *cfg = parse_ok(SERVER
		"[action restart-app]\n"
		"run = /usr/bin/systemctl restart 'app x'\n"
		"timeout = 5m\n"
		"\n"
		"[action tail-log]\n"
		"run = /usr/bin/tail -n 100 /var/log/app.log\n"
		"args = none\n"
		"[action echo.1_x]\nrun = /bin/echo\nargs = any\n"
		"[action grep]\nrun = /bin/grep -c\nargs = [a-z]+\n"
		"timeout = 1h\n"
		"[file a]\npath = /run/a\n");
	const ag_action *a;

	(void)state;
	assert_int_equal(cfg->n_actions, 4);
	assert_int_equal(cfg->n_sinks, 1);
	a = ag_config_action(cfg, "restart-app");
	assert_non_null(a);
	assert_string_equal(a->name, "restart-app");
	assert_string_equal(a->run[0], "/usr/bin/systemctl");
	assert_string_equal(a->run[2], "app x");
	assert_null(a->run[3]);
	assert_string_equal(a->run_text, "/usr/bin/systemctl restart 'app x'");
	assert_int_equal(a->timeout_ms, 5 * 60 * 1000);
	assert_int_equal(a->args, AG_ARGS_NONE);
	assert_int_equal(a->line, 3);
	a = ag_config_action(cfg, "tail-log");
	assert_int_equal(a->timeout_ms, AG_ACTION_TIMEOUT_DEFAULT_MS);
	assert_int_equal(a->timeout_ms, 30 * 1000);
	assert_int_equal(a->args, AG_ARGS_NONE);
	assert_int_equal(ag_config_action(cfg, "echo.1_x")->args, AG_ARGS_ANY);
	a = ag_config_action(cfg, "grep");
	assert_int_equal(a->args, AG_ARGS_REGEX);
	assert_string_equal(a->args_text, "[a-z]+");
	assert_non_null(a->args_re);
	assert_int_equal(a->timeout_ms, 3600L * 1000);
	assert_null(ag_config_action(cfg, "status"));
	assert_null(ag_config_action(cfg, "grep2"));
	ag_config_free(cfg);

	/* None at all. */
	cfg = parse_ok(SERVER);
	assert_int_equal(cfg->n_actions, 0);
	assert_null(ag_config_action(cfg, "x"));
	ag_config_free(cfg);

	parse_fail(SERVER "[action]\nrun = /bin/true\n", 3, "needs a name");
	parse_fail(SERVER "[action Restart]\nrun = /bin/true\n", 3,
		   "may only hold");
	parse_fail(SERVER "[action -x]\nrun = /bin/true\n", 3, "may only hold");
	parse_fail(SERVER "[action a b]\nrun = /bin/true\n", 3,
		   "may only hold");
	parse_fail(SERVER "[action status]\nrun = /bin/true\n", 3, "built in");
	parse_fail(SERVER "[action refresh]\nrun = /bin/true\n", 3, "built in");
	parse_fail(SERVER "[action a]\nrun = /bin/true\n[action a]\n"
		   "run = /bin/false\n", 5, "first at line 3");
	parse_fail(SERVER "[action a]\ntimeout = 5s\n", 3, "has no run");
	parse_fail(SERVER "[action a]\nrun = /bin/true\n[file x]\n"
		   "path = /run/x\n[action b]\n", 7, "has no run");
	parse_fail(SERVER "[action a]\nrun = true\n", 4,
		   "run: the program \"true\" is not an absolute path");
	parse_fail(SERVER "[action a]\nrun = /bin/x 'open\n", 4, "not closed");
	parse_fail(SERVER "[action a]\nrun = /bin/true\nrun = /bin/false\n", 5,
		   "set twice");
	parse_fail(SERVER "[action a]\nrun = /bin/true\npath = /x\n", 5,
		   "the keys there are run, timeout, args");
	parse_fail(SERVER "[action a]\nrun = /bin/true\ntimeout = 0s\n", 5,
		   "timeout must be");
	parse_fail(SERVER "[action a]\nrun = /bin/true\ntimeout = 500ms\n", 5,
		   "timeout must be");
	parse_fail(SERVER "[action a]\nrun = /bin/true\ntimeout = 61m\n", 5,
		   "timeout must be");
	parse_fail(SERVER "[action a]\nrun = /bin/true\ntimeout = soon\n", 5,
		   "timeout must be");
	parse_fail(SERVER "[action a]\nrun = /bin/true\nargs = [a-z\n", 5,
		   "not a POSIX extended regular expression");
	parse_fail(SERVER "[action a]\nrun = /bin/true\nargs = (a\n", 5,
		   "not a POSIX extended regular expression");
	/* A ')' that would close our "^(" and undo the anchoring. */
	parse_fail(SERVER "[action a]\nrun = /bin/true\nargs = a)|.*\n", 5,
		   "closes no '('");
	parse_fail(SERVER "[action a]\nrun = /bin/true\nargs = x)|(.*\n", 5,
		   NULL);
	/* Repetitions that would make regcomp take gigabytes; too long. */
	parse_fail(SERVER "[action a]\nrun = /bin/true\nargs = "
		   "x++++++++++++++++++++++++++++++++++++++++\n", 5,
		   "too much memory");
	parse_fail(SERVER "[action a]\nrun = /bin/true\nargs = ((a{99}){99})\n",
		   5, "too much memory");
	parse_fail(SERVER "[action a]\nrun = /bin/true\nargs = a)(((((((((((((x+)"
		   "+)+)+)+)+)+)+)+)+)+)+)+)+\n", 5, "too much memory");
	{
		char text[600];

		snprintf(text, sizeof(text), SERVER "[action a]\nrun = /bin/true"
			 "\nargs = %0300d\n", 0);
		parse_fail(text, 5, "longer than 256 bytes");
	}
	cfg = parse_ok(SERVER "[action a]\nrun = /bin/true\nargs = "
		       "([a-z0-9-]{1,63}\\.)+[a-z]{2,24}\n");
	ag_config_free(cfg);
	/* ... while parentheses in brackets or escaped are fine. */
	cfg = parse_ok(SERVER "[action a]\nrun = /bin/true\nargs = [)]+\\)(b)\n"
		       "[action b]\nrun = /bin/true\nargs = []a-z)]+|[[:alpha:]]\n");
	{
		char *ok[] = { "))))b" }, *bad[] = { "x" }, *br[] = { "a)]" };
		cf_error err = { 0 };

		assert_status(CF_OK, ag_action_args_check(ag_config_action(cfg,
			      "a"), ok, 1, &err), &err);
		assert_status(CF_ERR_PERMISSION, ag_action_args_check(
			      ag_config_action(cfg, "a"), bad, 1, &err), &err);
		assert_status(CF_OK, ag_action_args_check(ag_config_action(cfg,
			      "b"), br, 1, &err), &err);
	}
	ag_config_free(cfg);
}

static void split_fail(cf_status want, const char *line, const char *needle)
{
	cf_error err = { 0 };
	char **argv = (char **)&err;

	assert_status(want, ag_argv_split(line, &argv, &err), &err);
	assert_null(argv);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("want \"%s\" in \"%s\"", needle, err.msg);
}

static void argv_split(void **state)
{
	char **argv;
	char *line;
	size_t len;

	(void)state;
	argv = split_ok("/bin/x", 1);
	assert_string_equal(argv[0], "/bin/x");
	ag_argv_free(argv);

	argv = split_ok(" \t/bin/x  a\tb   ", 3);
	assert_string_equal(argv[1], "a");
	assert_string_equal(argv[2], "b");
	ag_argv_free(argv);

	/* '...' keeps everything, backslashes and $ included. */
	argv = split_ok("/bin/x 'a b\\n $HOME \"q\"'", 2);
	assert_string_equal(argv[1], "a b\\n $HOME \"q\"");
	ag_argv_free(argv);

	/* "..." knows \" and \\ only; other backslashes stay. */
	argv = split_ok("/bin/x \"a \\\"b\\\" \\\\ \\n 'c'\"", 2);
	assert_string_equal(argv[1], "a \"b\" \\ \\n 'c'");
	ag_argv_free(argv);

	/* Parts glue into one word; empty quotes are an empty word. */
	argv = split_ok("/bin/x a'b c'\"d\"e '' \"\" x''", 5);
	assert_string_equal(argv[1], "ab cde");
	assert_string_equal(argv[2], "");
	assert_string_equal(argv[3], "");
	assert_string_equal(argv[4], "x");
	ag_argv_free(argv);

	/* Outside quotes a backslash is just a byte. */
	argv = split_ok("/bin/x a\\ b", 3);
	assert_string_equal(argv[1], "a\\");
	ag_argv_free(argv);

	/* The program itself may be quoted. */
	argv = split_ok("'/opt/my app/bin/reload' now", 2);
	assert_string_equal(argv[0], "/opt/my app/bin/reload");
	ag_argv_free(argv);
	ag_argv_free(NULL);

	split_fail(CF_ERR_PARSE, "", "empty");
	split_fail(CF_ERR_PARSE, " \t ", "empty");
	split_fail(CF_ERR_PARSE, "systemctl reload", "not an absolute path");
	split_fail(CF_ERR_PARSE, "./x", "not an absolute path");
	split_fail(CF_ERR_PARSE, "/bin/x 'a", "' quote is not closed");
	split_fail(CF_ERR_PARSE, "/bin/x \"a\\\"", "\" quote is not closed");
	split_fail(CF_ERR_PARSE, "/bin/x a\nb", "control byte 0x0a");
	split_fail(CF_ERR_PARSE, "/bin/x 'a\rb'", "control byte 0x0d");

	/* 256 words, not 257. */
	line = malloc(4096);
	assert_non_null(line);
	len = (size_t)snprintf(line, 4096, "/bin/x");
	for (int i = 1; i < 256; i++)
		len += (size_t)snprintf(line + len, 4096 - len, " a");
	argv = split_ok(line, 256);
	ag_argv_free(argv);
	snprintf(line + len, 4096 - len, " a");
	split_fail(CF_ERR_PARSE, line, "more than 256 words");
	free(line);

	/* AG_ARGV_MAX_BYTES bytes, not one more. */
	line = malloc(AG_ARGV_MAX_BYTES + 2);
	assert_non_null(line);
	memset(line, 'a', AG_ARGV_MAX_BYTES + 1);
	line[0] = '/';
	line[AG_ARGV_MAX_BYTES] = '\0';
	argv = split_ok(line, 1);
	assert_int_equal(strlen(argv[0]), AG_ARGV_MAX_BYTES);
	ag_argv_free(argv);
	line[AG_ARGV_MAX_BYTES] = 'a';
	line[AG_ARGV_MAX_BYTES + 1] = '\0';
	split_fail(CF_ERR_TOO_LARGE, line, "longer than");
	free(line);
}

/* -------------------------------------------------------------- load */

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static void load(void **state)
{
	char dir[] = "/tmp/test_agent_config.XXXXXX";
	char path[256], want[300];
	cf_error err = { 0 };
	ag_config *cfg = NULL;
	char *big;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/agent.conf", dir);

	write_file(path, SERVER "[file a]\npath = /a\n", 0644);
	assert_status(CF_OK, ag_config_load(path, &cfg, &err), &err);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->sinks[0].secret, "a");
	ag_config_free(cfg);

	/* Parse errors name the file's path. */
	write_file(path, SERVER "[file a]\npath = a\n", 0600);
	assert_status(CF_ERR_PARSE, ag_config_load(path, &cfg, &err), &err);
	assert_null(cfg);
	snprintf(want, sizeof(want), "%s:4: ", path);
	assert_true(strncmp(err.msg, want, strlen(want)) == 0);

	/* Anybody may write it: refused, they could choose the commands. */
	write_file(path, SERVER, 0646);
	assert_status(CF_ERR_IO, ag_config_load(path, &cfg, &err), &err);
	assert_non_null(strstr(err.msg, "writable by every user"));
	assert_null(cfg);

	/* Too large. */
	big = malloc(AG_CONFIG_MAX_BYTES + 2);
	assert_non_null(big);
	memset(big, '#', AG_CONFIG_MAX_BYTES + 1);
	big[AG_CONFIG_MAX_BYTES + 1] = '\0';
	write_file(path, big, 0600);
	free(big);
	assert_status(CF_ERR_TOO_LARGE, ag_config_load(path, &cfg, &err), &err);
	assert_non_null(strstr(err.msg, path));

	assert_int_equal(unlink(path), 0);
	assert_status(CF_ERR_IO, ag_config_load(path, &cfg, &err), &err);
	assert_non_null(strstr(err.msg, path));
	assert_status(CF_ERR_IO, ag_config_load(dir, &cfg, &err), &err);
	assert_non_null(strstr(err.msg, "not a regular file"));

	/* ag_config_read_text: exactly max bytes is fine. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "12345", 5), 5);
	close(fd);
	{
		char *text = NULL;
		size_t len = 0;

		assert_status(CF_OK, ag_config_read_text(path, 5, &text, &len, &err),
			      &err);
		assert_int_equal(len, 5);
		assert_string_equal(text, "12345");
		free(text);
		assert_status(CF_ERR_TOO_LARGE, ag_config_read_text(path, 4, &text,
								    &len, &err), &err);
		assert_null(text);
	}
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(full_example),
		cmocka_unit_test(defaults),
		cmocka_unit_test(layout),
		cmocka_unit_test(sections),
		cmocka_unit_test(keys),
		cmocka_unit_test(values),
		cmocka_unit_test(modes),
		cmocka_unit_test(owners),
		cmocka_unit_test(reload_lines),
		cmocka_unit_test(duplicate_paths),
		cmocka_unit_test(bytes_and_limits),
		cmocka_unit_test(argv_split),
		cmocka_unit_test(settle_and_groups),
		cmocka_unit_test(actions),
		cmocka_unit_test(load),
	};

	return cmocka_run_group_tests_name("agent_config", tests, fx_group_setup,
					   NULL);
}
