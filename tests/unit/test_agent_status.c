/*
 * test_agent_status.c - the agent's report on itself (status.h) and
 * `coffer agent status` (ag_cmd_status).
 *
 * What a save writes comes back from ag_status_load in the documented
 * shape; a save writes only when something a reader acts on changed, or
 * for times alone once AG_STATUS_REFRESH_S passed (a fake clock drives
 * it); a failure keeps what the sink last wrote; the configuration
 * decides which sinks are listed; strings that are too long or not UTF-8
 * are cut or made ASCII.  The command is run on state dirs built here:
 * its JSON, its text, its exit codes (0 all ok, 32 otherwise, 2 usage)
 * and its view of run.lock.
 */
#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "config.h"
#include "status.h"

typedef struct fixture {
	char dir[256];
	char file[PATH_MAX];        /* dir/status.json */
} fixture;

static time_t fake_now = 1700000000;

static time_t fake_clock(void)
{
	return fake_now;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/coffer-status-XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->file, sizeof(f->file), "%s/status.json", f->dir);
	fake_now = 1700000000;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	fx_remove_tree(f->dir);
	free(f);
	return 0;
}

static int exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static ag_status *new_status(void)
{
	ag_status *st = ag_status_new();

	assert_non_null(st);
	ag_status_set_clock(st, fake_clock);
	return st;
}

/* Saves, and says whether status.json was (re)written: it is removed first. */
static int saved(ag_status *st, const fixture *f)
{
	cf_error err = { 0 };

	unlink(f->file);
	assert_status(CF_OK, ag_status_save(st, f->dir, &err), &err);
	return exists(f->file);
}

static json_t *load(const fixture *f)
{
	json_t *doc = NULL;
	cf_error err = { 0 };

	assert_status(CF_OK, ag_status_load(f->dir, &doc, &err), &err);
	return doc;
}

static json_t *sink_at(json_t *doc, const char *path)
{
	json_t *s;
	size_t i;

	json_array_foreach(json_object_get(doc, "sinks"), i, s)
		if (strcmp(json_string_value(json_object_get(s, "path")), path) == 0)
			return s;
	fail_msg("no sink %s in the status", path);
	return NULL;
}

static json_int_t int_at(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v))
		fail_msg("%s is not an integer", key);
	return json_integer_value(v);
}

static const char *str_at(const json_t *obj, const char *key)
{
	const char *v = json_string_value(json_object_get(obj, key));

	if (v == NULL)
		fail_msg("%s is not a string", key);
	return v;
}

static void assert_null_at(const json_t *obj, const char *key)
{
	if (!json_is_null(json_object_get(obj, key)))
		fail_msg("%s is not null", key);
}

/* ------------------------------------------------------------ record */

static void test_round_trip(void **state)
{
	fixture *f = *state;
	ag_status *st = new_status();
	json_t *doc, *s, *server;
	struct stat sb;
	const char *prev = NULL;
	size_t i;

	ag_status_sink_ok(st, "/run/b/password", "file", "prod/db/password", 3, 1);
	fake_now += 5;
	ag_status_sink_ok(st, "/etc/a/app.conf", "template", "/etc/a/app.tmpl", 0,
			  1);
	ag_status_sink_failed(st, "/run/c/token", "file", "prod/api/token",
			      "secret prod/api/token is not available");
	ag_status_server(st, 1, NULL);
	assert_true(saved(st, f));
	assert_int_equal(stat(f->file, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	doc = load(f);
	assert_int_equal(int_at(doc, "format"), AG_STATUS_FORMAT);
	assert_int_equal(int_at(doc, "pid"), getpid());
	assert_int_equal(int_at(doc, "started"), 1700000000);
	assert_int_equal(int_at(doc, "updated"), 1700000005);
	assert_null_at(doc, "stopped");
	assert_int_equal(json_array_size(json_object_get(doc, "sinks")), 3);
	/* Sorted by path. */
	json_array_foreach(json_object_get(doc, "sinks"), i, s) {
		if (prev != NULL)
			assert_true(strcmp(prev, str_at(s, "path")) < 0);
		prev = str_at(s, "path");
	}

	s = sink_at(doc, "/run/b/password");
	assert_string_equal(str_at(s, "kind"), "file");
	assert_string_equal(str_at(s, "secret"), "prod/db/password");
	assert_string_equal(str_at(s, "state"), "ok");
	assert_int_equal(int_at(s, "version"), 3);
	assert_int_equal(int_at(s, "last_ok"), 1700000000);
	assert_int_equal(int_at(s, "last_written"), 1700000000);
	assert_null_at(s, "error");
	assert_null_at(s, "error_since");

	s = sink_at(doc, "/etc/a/app.conf");
	assert_string_equal(str_at(s, "kind"), "template");
	assert_string_equal(str_at(s, "source"), "/etc/a/app.tmpl");
	assert_null(json_object_get(s, "secret"));
	assert_null_at(s, "version");
	assert_int_equal(int_at(s, "last_written"), 1700000005);

	s = sink_at(doc, "/run/c/token");
	assert_string_equal(str_at(s, "state"), "failed");
	assert_string_equal(str_at(s, "error"),
			    "secret prod/api/token is not available");
	assert_int_equal(int_at(s, "error_since"), 1700000005);
	assert_null_at(s, "last_ok");
	assert_null_at(s, "last_written");

	server = json_object_get(doc, "server");
	assert_true(json_is_true(json_object_get(server, "connected")));
	assert_int_equal(int_at(server, "last_contact"), 1700000005);
	assert_null_at(server, "error");
	json_decref(doc);

	ag_status_stopped(st);
	assert_true(saved(st, f));
	doc = load(f);
	assert_int_equal(int_at(doc, "stopped"), 1700000005);
	json_decref(doc);
	ag_status_free(st);
}

static void test_only_changed_writes(void **state)
{
	fixture *f = *state;
	ag_status *st = new_status();

	assert_true(saved(st, f));            /* the first save, always */
	assert_false(saved(st, f));

	ag_status_sink_ok(st, "/run/a", "file", "a", 1, 1);
	ag_status_server(st, 1, NULL);
	assert_true(saved(st, f));
	assert_false(saved(st, f));

	/* Times alone: not before AG_STATUS_REFRESH_S. */
	fake_now += 10;
	ag_status_sink_ok(st, "/run/a", "file", "a", 1, 0);
	ag_status_server(st, 1, NULL);
	assert_false(saved(st, f));
	fake_now += AG_STATUS_REFRESH_S;
	ag_status_server(st, 1, NULL);
	assert_true(saved(st, f));
	assert_false(saved(st, f));

	/* What a reader acts on: at once. */
	fake_now += 1;
	ag_status_sink_ok(st, "/run/a", "file", "a", 2, 0);     /* version */
	assert_true(saved(st, f));
	ag_status_sink_ok(st, "/run/a", "file", "a", 2, 1);     /* written */
	assert_true(saved(st, f));
	ag_status_sink_failed(st, "/run/a", "file", "a", "cannot write");
	assert_true(saved(st, f));
	fake_now += 5;
	ag_status_sink_failed(st, "/run/a", "file", "a", "cannot write");
	assert_false(saved(st, f));                /* the same error again */
	ag_status_sink_failed(st, "/run/a", "file", "a", "another reason");
	assert_true(saved(st, f));
	ag_status_sink_ok(st, "/run/a", "file", "a", 2, 0);     /* recovered */
	assert_true(saved(st, f));
	ag_status_sink_ok(st, "/run/b", "file", "b", 1, 0);     /* a new sink */
	assert_true(saved(st, f));
	ag_status_sink_ok(st, "/run/b", "template", "/t", 0, 0); /* kind */
	assert_true(saved(st, f));

	ag_status_server(st, 0, "cannot reach the server");
	assert_true(saved(st, f));
	fake_now += 5;
	ag_status_server(st, 0, "cannot reach the server");
	assert_false(saved(st, f));
	ag_status_server(st, 1, NULL);
	assert_true(saved(st, f));
	assert_false(saved(st, f));
	ag_status_free(st);
}

static void test_error_keeps_written(void **state)
{
	fixture *f = *state;
	ag_status *st = new_status();
	json_t *doc, *s, *server;

	ag_status_sink_ok(st, "/run/a", "file", "prod/a", 2, 1);
	ag_status_server(st, 1, NULL);
	fake_now += 100;
	ag_status_sink_failed(st, "/run/a", "file", "prod/a",
			      "prod/a version 3 is refused: bad signature");
	fake_now += 50;
	ag_status_sink_failed(st, "/run/a", "file", "prod/a",
			      "prod/a version 3 is refused: bad signature");
	ag_status_server(st, 0, "the server answered 503");
	assert_true(saved(st, f));
	doc = load(f);
	s = sink_at(doc, "/run/a");
	assert_string_equal(str_at(s, "state"), "failed");
	assert_int_equal(int_at(s, "version"), 2);
	assert_int_equal(int_at(s, "last_ok"), 1700000000);
	assert_int_equal(int_at(s, "last_written"), 1700000000);
	assert_int_equal(int_at(s, "error_since"), 1700000100);
	assert_int_equal(int_at(s, "error_at"), 1700000150);
	server = json_object_get(doc, "server");
	assert_true(json_is_false(json_object_get(server, "connected")));
	assert_int_equal(int_at(server, "last_contact"), 1700000000);
	assert_string_equal(str_at(server, "error"), "the server answered 503");
	assert_int_equal(int_at(server, "error_since"), 1700000150);
	json_decref(doc);

	/* Up to date again without a rewrite: the old write time stays. */
	fake_now += 10;
	ag_status_sink_ok(st, "/run/a", "file", "prod/a", 2, 0);
	ag_status_server(st, 1, NULL);
	assert_true(saved(st, f));
	doc = load(f);
	s = sink_at(doc, "/run/a");
	assert_string_equal(str_at(s, "state"), "ok");
	assert_int_equal(int_at(s, "last_ok"), 1700000160);
	assert_int_equal(int_at(s, "last_written"), 1700000000);
	assert_null_at(s, "error");
	server = json_object_get(doc, "server");
	assert_true(json_is_true(json_object_get(server, "connected")));
	/* The last error stays on record, with its time. */
	assert_string_equal(str_at(server, "error"), "the server answered 503");
	json_decref(doc);
	ag_status_free(st);
}

static const char CONFIG_HEAD[] =
	"[server]\nurl = https://127.0.0.1:1\n";

static ag_config *parse_config(const char *sinks)
{
	char text[4096];
	ag_config *cfg = NULL;
	cf_error err = { 0 };

	snprintf(text, sizeof(text), "%s%s", CONFIG_HEAD, sinks);
	assert_status(CF_OK, ag_config_parse(text, strlen(text), "test.conf",
					     &cfg, &err), &err);
	return cfg;
}

static void test_config_sinks(void **state)
{
	fixture *f = *state;
	ag_status *st = new_status();
	ag_config *cfg = parse_config(
		"[file prod/a]\npath = /run/a\n"
		"[template /etc/t.conf]\nsource = /etc/t.tmpl\n"
		"[file prod/c]\npath = /run/c\n");
	ag_config *smaller = parse_config(
		"[file prod/a]\npath = /run/a\n"
		"[file prod/other]\npath = /run/c\n");
	json_t *doc, *s;

	ag_status_sink_ok(st, "/run/a", "file", "prod/a", 4, 1);
	ag_status_sink_ok(st, "/run/gone", "file", "prod/gone", 1, 1);
	assert_int_equal(ag_status_config(st, cfg), CF_OK);
	assert_true(saved(st, f));
	doc = load(f);
	assert_int_equal(json_array_size(json_object_get(doc, "sinks")), 3);
	s = sink_at(doc, "/run/a");                 /* kept as it was */
	assert_string_equal(str_at(s, "state"), "ok");
	assert_int_equal(int_at(s, "version"), 4);
	s = sink_at(doc, "/etc/t.conf");
	assert_string_equal(str_at(s, "state"), "never");
	assert_string_equal(str_at(s, "kind"), "template");
	assert_string_equal(str_at(s, "source"), "/etc/t.tmpl");
	s = sink_at(doc, "/run/c");
	assert_string_equal(str_at(s, "state"), "never");
	assert_string_equal(str_at(s, "secret"), "prod/c");
	json_decref(doc);

	/* The same configuration again: nothing to write. */
	assert_int_equal(ag_status_config(st, cfg), CF_OK);
	assert_false(saved(st, f));

	/* A sink dropped, another given a new secret (version unknown). */
	ag_status_sink_ok(st, "/run/c", "file", "prod/c", 7, 1);
	assert_int_equal(ag_status_config(st, smaller), CF_OK);
	assert_true(saved(st, f));
	doc = load(f);
	assert_int_equal(json_array_size(json_object_get(doc, "sinks")), 2);
	s = sink_at(doc, "/run/c");
	assert_string_equal(str_at(s, "secret"), "prod/other");
	assert_null_at(s, "version");
	assert_int_equal(int_at(s, "last_written"), 1700000000);
	json_decref(doc);
	ag_config_free(cfg);
	ag_config_free(smaller);
	ag_status_free(st);
}

static void test_strings_bounded(void **state)
{
	fixture *f = *state;
	ag_status *st = new_status();
	char long_msg[3000];
	json_t *doc, *s;
	const char *err_text;

	/* 'x' then two-byte characters: a cut must not split one. */
	memset(long_msg, 'x', 1);
	for (size_t i = 1; i + 2 < sizeof(long_msg); i += 2) {
		long_msg[i] = (char)0xc3;
		long_msg[i + 1] = (char)0xa9;     /* é */
	}
	long_msg[sizeof(long_msg) - 2] = 'x';
	long_msg[sizeof(long_msg) - 1] = '\0';
	ag_status_sink_failed(st, "/run/a", "file", "a", long_msg);
	ag_status_sink_failed(st, "/run/\xff\xfe", "file", "a", "bad \xff path");
	ag_status_server(st, 0, NULL);
	assert_true(saved(st, f));
	doc = load(f);
	s = sink_at(doc, "/run/a");
	err_text = str_at(s, "error");
	assert_true(strlen(err_text) < AG_STATUS_ERROR_MAX);
	assert_true(strlen(err_text) > AG_STATUS_ERROR_MAX - 4);
	assert_memory_equal(err_text, long_msg, strlen(err_text));
	s = sink_at(doc, "/run/??");
	assert_string_equal(str_at(s, "error"), "bad ? path");
	assert_string_equal(str_at(json_object_get(doc, "server"), "error"),
			    "unknown error");
	json_decref(doc);
	ag_status_free(st);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static void test_load_refusals(void **state)
{
	fixture *f = *state;
	json_t *doc = NULL;
	cf_error err = { 0 };

	assert_status(CF_ERR_NOT_FOUND, ag_status_load(f->dir, &doc, &err), &err);
	assert_null(doc);
	write_file(f->file, "{\"format\":1,\"sinks\":[");
	assert_status(CF_ERR_PARSE, ag_status_load(f->dir, &doc, &err), &err);
	assert_non_null(strstr(err.msg, "remove it"));
	write_file(f->file, "{\"format\":1}");
	assert_status(CF_ERR_PARSE, ag_status_load(f->dir, &doc, &err), &err);
	write_file(f->file, "{\"format\":1,\"sinks\":[],\"sinks\":[]}");
	assert_status(CF_ERR_PARSE, ag_status_load(f->dir, &doc, &err), &err);
	write_file(f->file, "{\"format\":2,\"sinks\":[]}");
	assert_status(CF_ERR_PARSE, ag_status_load(f->dir, &doc, &err), &err);
	assert_non_null(strstr(err.msg, "newer"));
	assert_null(doc);
}

/* ----------------------------------------------------------- command */

/*
 * Runs `agent status` with args (NULL-terminated); its stdout into
 * *out (malloc'd), stderr into *errs (may be NULL); returns its exit code.
 */
static int run_status(const fixture *f, char **out, char **errs, ...)
{
	char *argv[16];
	char out_path[PATH_MAX], err_path[PATH_MAX];
	int argc = 0, code, saved_out, saved_err, fd_out, fd_err;
	const char *a;
	va_list ap;
	FILE *fp;
	long len;

	argv[argc++] = "status";
	va_start(ap, errs);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 15)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	snprintf(out_path, sizeof(out_path), "%s.out", f->dir);
	snprintf(err_path, sizeof(err_path), "%s.err", f->dir);
	fflush(stdout);
	fflush(stderr);
	fd_out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	fd_err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd_out >= 0 && fd_err >= 0);
	saved_out = dup(STDOUT_FILENO);
	saved_err = dup(STDERR_FILENO);
	dup2(fd_out, STDOUT_FILENO);
	dup2(fd_err, STDERR_FILENO);
	code = ag_cmd_status(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, STDOUT_FILENO);
	dup2(saved_err, STDERR_FILENO);
	close(saved_out);
	close(saved_err);
	close(fd_out);
	close(fd_err);
	for (int i = 0; i < 2; i++) {
		char **dst = i == 0 ? out : errs;
		const char *path = i == 0 ? out_path : err_path;

		if (dst != NULL) {
			fp = fopen(path, "r");
			assert_non_null(fp);
			fseek(fp, 0, SEEK_END);
			len = ftell(fp);
			rewind(fp);
			*dst = calloc(1, (size_t)len + 1);
			assert_non_null(*dst);
			assert_int_equal(fread(*dst, 1, (size_t)len, fp), (size_t)len);
			fclose(fp);
		}
		unlink(path);
	}
	return code;
}

static json_t *parse_out(char *out)
{
	json_error_t jerr;
	json_t *doc = json_loads(out, 0, &jerr);

	if (doc == NULL)
		fail_msg("not JSON (%s): %s", jerr.text, out);
	free(out);
	return doc;
}

/* A state dir as the agent leaves it: status.json and state.json. */
static void make_state(const fixture *f, int failing)
{
	char path[PATH_MAX];
	ag_status *st = new_status();

	fake_now = time(NULL) - 30;
	ag_status_sink_ok(st, "/run/a", "file", "prod/a", 3, 1);
	if (failing)
		ag_status_sink_failed(st, "/run/b", "file", "prod/b",
				      "secret prod/b is not available");
	else
		ag_status_sink_ok(st, "/run/b", "file", "prod/b", 1, 1);
	fake_now += 18;
	ag_status_server(st, 1, NULL);
	assert_true(saved(st, f));
	ag_status_free(st);
	snprintf(path, sizeof(path), "%s/state.json", f->dir);
	write_file(path, "{\"cursor\":42,\"secrets\":{\"prod/a\":{\"version\":3},"
		   "\"prod/b\":{\"version\":1}}}");
}

static void test_cmd_json(void **state)
{
	fixture *f = *state;
	char *out = NULL;
	json_t *doc, *s, *agent, *server, *secrets;
	size_t i;
	int seen = 0;

	make_state(f, 1);
	assert_int_equal(run_status(f, &out, NULL, "--state-dir", f->dir,
				    "--json", NULL), 32);
	doc = parse_out(out);
	assert_string_equal(str_at(doc, "state_dir"), f->dir);
	assert_true(json_is_false(json_object_get(doc, "ok")));
	assert_int_equal(int_at(doc, "cursor"), 42);
	agent = json_object_get(doc, "agent");
	assert_true(json_is_false(json_object_get(agent, "running")));
	assert_int_equal(int_at(agent, "pid"), getpid());
	assert_non_null(json_object_get(agent, "reported"));
	server = json_object_get(doc, "server");
	assert_true(json_is_true(json_object_get(server, "connected")));
	assert_int_equal(int_at(server, "last_contact"), fake_now);
	assert_int_equal(json_array_size(json_object_get(doc, "sinks")), 2);
	s = sink_at(doc, "/run/b");
	assert_string_equal(str_at(s, "state"), "failed");
	assert_string_equal(str_at(s, "error"), "secret prod/b is not available");
	assert_null(json_object_get(s, "configured"));  /* no --config */
	s = sink_at(doc, "/run/a");
	assert_string_equal(str_at(s, "state"), "ok");
	assert_int_equal(int_at(s, "version"), 3);
	secrets = json_object_get(doc, "secrets");
	assert_int_equal(json_array_size(secrets), 2);
	json_array_foreach(secrets, i, s) {
		if (strcmp(str_at(s, "name"), "prod/a") == 0) {
			assert_int_equal(int_at(s, "version"), 3);
			seen++;
		}
	}
	assert_int_equal(seen, 1);
	json_decref(doc);

	/* All up to date: 0. */
	make_state(f, 0);
	assert_int_equal(run_status(f, &out, NULL, "--state-dir", f->dir,
				    "--json", NULL), 0);
	doc = parse_out(out);
	assert_true(json_is_true(json_object_get(doc, "ok")));
	json_decref(doc);
}

static void test_cmd_config_and_lock(void **state)
{
	fixture *f = *state;
	char conf[PATH_MAX], lock[PATH_MAX], *out = NULL;
	json_t *doc, *s;
	int fd;

	make_state(f, 0);
	snprintf(conf, sizeof(conf), "%s.conf", f->dir);
	write_file(conf, "[server]\nurl = https://127.0.0.1:1\n"
		   "[file prod/a]\npath = /run/a\n"
		   "[file prod/new]\npath = /run/new\n");
	/* /run/b is in the status but no longer configured: not counted;
	 * /run/new never applied: 32. */
	assert_int_equal(run_status(f, &out, NULL, "--state-dir", f->dir,
				    "--config", conf, "--json", NULL), 32);
	doc = parse_out(out);
	assert_int_equal(json_array_size(json_object_get(doc, "sinks")), 3);
	s = sink_at(doc, "/run/new");
	assert_string_equal(str_at(s, "state"), "never");
	assert_string_equal(str_at(s, "secret"), "prod/new");
	assert_true(json_is_true(json_object_get(s, "configured")));
	s = sink_at(doc, "/run/b");
	assert_true(json_is_false(json_object_get(s, "configured")));
	json_decref(doc);

	/* Only configured sinks, all ok: 0, though /run/b is not in F. */
	write_file(conf, "[server]\nurl = https://127.0.0.1:1\n"
		   "[file prod/a]\npath = /run/a\n");
	assert_int_equal(run_status(f, &out, NULL, "--state-dir", f->dir,
				    "--config", conf, NULL), 0);
	assert_non_null(strstr(out, "no longer configured"));
	free(out);
	unlink(conf);

	/* An agent holding run.lock is running; the probe leaves it held. */
	snprintf(lock, sizeof(lock), "%s/run.lock", f->dir);
	fd = open(lock, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
	assert_int_equal(run_status(f, &out, NULL, "--state-dir", f->dir,
				    "--json", NULL), 0);
	doc = parse_out(out);
	assert_true(json_is_true(json_object_get(json_object_get(doc, "agent"),
						 "running")));
	json_decref(doc);
	assert_int_equal(run_status(f, &out, NULL, "--state-dir", f->dir, NULL),
			 0);
	assert_non_null(strstr(out, "running (pid"));
	free(out);
	/* Still ours: the probe did not take or drop it. */
	{
		int other = open(lock, O_RDONLY);

		assert_true(other >= 0);
		assert_int_equal(flock(other, LOCK_SH | LOCK_NB), -1);
		assert_int_equal(errno, EWOULDBLOCK);
		close(other);
	}
	close(fd);
	assert_int_equal(run_status(f, &out, NULL, "--state-dir", f->dir,
				    "--json", NULL), 0);
	doc = parse_out(out);
	assert_true(json_is_false(json_object_get(json_object_get(doc, "agent"),
						  "running")));
	json_decref(doc);
}

static void test_cmd_text(void **state)
{
	fixture *f = *state;
	char *out = NULL;

	make_state(f, 1);
	assert_int_equal(run_status(f, &out, NULL, "--state-dir", f->dir, NULL),
			 32);
	assert_non_null(strstr(out, "agent:   not running (pid"));
	/* The command reads the real clock: "N s ago", N about 12. */
	assert_non_null(strstr(out, "server:  connected at the agent's last "
			       "report (last contact 1"));
	assert_non_null(strstr(out, "sinks:   1 ok, 1 failed, 0 never applied"));
	assert_non_null(strstr(out, "/run/b"));
	assert_non_null(strstr(out, " s ago): secret prod/b is not available"));
	assert_non_null(strstr(out, "      error 3"));
	assert_non_null(strstr(out, "secrets: 2 accepted (feed cursor 42)"));
	assert_non_null(strstr(out, "prod/a  v3"));
	free(out);
}

static void test_cmd_refusals(void **state)
{
	fixture *f = *state;
	char missing[PATH_MAX], *out = NULL, *errs = NULL;

	/* No report yet: 32, and says so. */
	assert_int_equal(run_status(f, &out, NULL, "--state-dir", f->dir, NULL),
			 32);
	assert_non_null(strstr(out, "never reported"));
	assert_non_null(strstr(out, "server:  not contacted yet"));
	free(out);

	assert_int_equal(run_status(f, NULL, &errs, NULL), 2);
	assert_non_null(strstr(errs, "--state-dir is required"));
	free(errs);
	assert_int_equal(run_status(f, NULL, NULL, "--state-dir", f->dir,
				    "extra", NULL), 2);
	assert_int_equal(run_status(f, NULL, NULL, "--bogus", NULL), 2);
	assert_int_equal(run_status(f, &out, NULL, "--help", NULL), 0);
	assert_non_null(strstr(out, "usage: coffer agent status"));
	free(out);

	snprintf(missing, sizeof(missing), "%s/nope", f->dir);
	assert_int_equal(run_status(f, NULL, &errs, "--state-dir", missing,
				    NULL), 2);
	assert_non_null(strstr(errs, "No such file or directory"));
	assert_non_null(strstr(errs, "coffer agent join"));
	free(errs);

	write_file(f->file, "not json");
	assert_int_equal(run_status(f, NULL, &errs, "--state-dir", f->dir,
				    NULL), 4);
	assert_non_null(strstr(errs, "status.json is damaged"));
	free(errs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_changed_writes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_error_keeps_written, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_config_sinks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_strings_bounded, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_load_refusals, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cmd_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmd_config_and_lock, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cmd_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmd_refusals, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, fx_group_setup, NULL);
}
