/*
 * fuzz_agent_config.c - libFuzzer target for the agent's configuration
 * parser (src/agent/config.c) and its reload command splitter.
 *
 * Input: the bytes of a configuration file, given with their length (no
 * terminator) to ag_config_parse.  Checked, beyond the sanitizers:
 *   - a refusal is CF_ERR_PARSE or CF_ERR_TOO_LARGE (CF_ERR_NOMEM aside)
 *     with a sentence that starts with the file's name, and leaves *out
 *     NULL;
 *   - what is accepted keeps the promises of config.h: an https:// url,
 *     values in range, at most AG_CONFIG_MAX_SINKS sinks, each with a
 *     plain absolute path no other sink writes, a valid secret name
 *     (files) or absolute source (templates), a mode without the 07022
 *     bits, and a reload argv whose program is absolute;
 *   - each [action] has a valid name (not a built-in, no two alike), a run
 *     argv whose program is absolute, a timeout of 1 s..1 h, and an args
 *     policy that agrees with its pattern; ag_action_args_check keeps
 *     its promises for none and any, and never quotes an argument;
 *   - each line of the input, given to ag_argv_split, either splits into
 *     1..AG_ARGV_MAX_WORDS words, the first absolute, or is refused with
 *     a sentence.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/lib/command.h"  /* cf_action_name_check */
#include "config.h"
#include "fixture.h"
#include "policy.h"

#define WHAT "fuzz.conf"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_secmem_init();
	return 0;
}

static void die(const char *what, const cf_error *err)
{
	fuzz_die("fuzz_agent_config", what, err);
}

/* Absolute, and no empty, "." or ".." segment (written apart from config.c). */
static int plain_absolute(const char *path)
{
	const char *seg;

	if (path == NULL || path[0] != '/')
		return 0;
	seg = path + 1;
	for (;;) {
		size_t n = strcspn(seg, "/");

		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		if (seg[n] == '\0')
			return 1;
		seg += n + 1;
	}
}

static void check_argv(char **argv, const cf_error *err)
{
	size_t n = 0;

	if (argv == NULL)
		die("a reload argv is NULL", err);
	while (argv[n] != NULL)
		n++;
	if (n == 0 || n > AG_ARGV_MAX_WORDS)
		die("a reload argv has no word or too many", err);
	if (argv[0][0] != '/')
		die("a reload program is not absolute", err);
}

static void check_config(const ag_config *cfg)
{
	cf_error err = { 0 };

	if (strcmp(cfg->path, WHAT) != 0)
		die("path is not what the parse was given", NULL);
	if (cfg->server_url == NULL || strncmp(cfg->server_url, "https://", 8) != 0)
		die("accepted a config without an https:// url", NULL);
	if ((cfg->server_ca != NULL && !plain_absolute(cfg->server_ca)) ||
	    (cfg->root != NULL && !plain_absolute(cfg->root)))
		die("accepted a ca or root that is not a plain absolute path", NULL);
	if (cfg->reload_timeout_s < 1 || cfg->reload_timeout_s > 3600 ||
	    cfg->wait_s < 1 || cfg->wait_s > 60)
		die("accepted a value out of range", NULL);
	if (cfg->n_sinks > AG_CONFIG_MAX_SINKS)
		die("accepted too many sinks", NULL);
	for (size_t i = 0; i < cfg->n_sinks; i++) {
		const ag_sink *s = &cfg->sinks[i];

		if (!plain_absolute(s->path))
			die("accepted a sink path that is not plain absolute", NULL);
		if (s->kind == AG_SINK_FILE &&
		    (s->secret == NULL || s->source != NULL ||
		     cf_name_check("name", s->secret, &err) != CF_OK))
			die("accepted a [file] with a bad name", &err);
		if (s->kind == AG_SINK_TEMPLATE &&
		    (s->secret != NULL || !plain_absolute(s->source)))
			die("accepted a [template] without a good source", NULL);
		if (s->mode & 07022)
			die("accepted a mode with 07022 bits", NULL);
		if ((s->reload == NULL) != (s->reload_text == NULL))
			die("reload and reload_text disagree", NULL);
		if (s->reload != NULL)
			check_argv(s->reload, NULL);
		/* Quadratic, but only up to the few sinks a fuzz input holds. */
		for (size_t j = 0; j < i && j < 64; j++)
			if (strcmp(cfg->sinks[j].path, s->path) == 0)
				die("accepted two sinks with one path", NULL);
	}
	if (cfg->n_actions > AG_CONFIG_MAX_ACTIONS)
		die("accepted too many actions", NULL);
	for (size_t i = 0; i < cfg->n_actions; i++) {
		const ag_action *a = &cfg->actions[i];
		char *probe[] = { "\001probe;x", "" };
		cf_status rc;

		if (cf_action_name_check(a->name, &err) != CF_OK ||
		    strcmp(a->name, "status") == 0 ||
		    strcmp(a->name, "refresh") == 0)
			die("accepted a bad or built-in action name", &err);
		if (ag_config_action(cfg, a->name) != a)
			die("two actions with one name", NULL);
		if (a->run_text == NULL)
			die("an action without its run line", NULL);
		check_argv(a->run, NULL);
		if (a->timeout_ms < 1000 || a->timeout_ms > AG_ACTION_TIMEOUT_MAX_MS)
			die("accepted an action timeout out of range", NULL);
		if ((a->args == AG_ARGS_REGEX) != (a->args_re != NULL) ||
		    (a->args == AG_ARGS_REGEX) != (a->args_text != NULL))
			die("args policy and pattern disagree", NULL);
		if (ag_action_args_check(a, probe, 0, &err) != CF_OK)
			die("no argument at all was refused", &err);
		cf_error_clear(&err);
		rc = ag_action_args_check(a, probe, 2, &err);
		if ((a->args == AG_ARGS_NONE && rc == CF_OK) ||
		    (a->args == AG_ARGS_ANY && rc != CF_OK) ||
		    (rc != CF_OK && (rc != err.code || err.msg[0] == '\0')))
			die("args = none / any not kept, or a bare refusal", &err);
		/* The probe holds a control byte, which no name or pattern of
		 * a configuration can: found in a message, it was quoted. */
		if (rc != CF_OK && strstr(err.msg, "\001probe") != NULL)
			die("a refusal quotes an argument", &err);
	}
}

/* Every line of the input (up to a few) as a reload command. */
static void split_lines(const uint8_t *data, size_t size)
{
	size_t pos = 0;
	int lines = 0;

	while (pos < size && lines++ < 8) {
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		size_t len = nl != NULL ? (size_t)(nl - (data + pos)) : size - pos;
		char *line = malloc(len + 1);
		char **argv = (char **)&lines;
		cf_error err = { 0 };
		cf_status rc;

		if (line == NULL)
			return;
		memcpy(line, data + pos, len);
		line[len] = '\0';
		rc = ag_argv_split(line, &argv, &err);
		if (rc == CF_OK)
			check_argv(argv, &err);
		else if (argv != NULL || err.msg[0] == '\0' || err.code != rc)
			die("ag_argv_split refused without a sentence or left argv",
			    &err);
		ag_argv_free(argv);
		free(line);
		pos += len + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ag_config *cfg = (ag_config *)&size;
	cf_error err = { 0 };
	cf_status rc;

	rc = ag_config_parse((const char *)data, size, WHAT, &cfg, &err);
	if (rc == CF_OK) {
		if (cfg == NULL)
			die("CF_OK without a config", NULL);
		check_config(cfg);
		ag_config_free(cfg);
	} else {
		if (cfg != NULL)
			die("a refusal left *out set", &err);
		if (rc != CF_ERR_PARSE && rc != CF_ERR_TOO_LARGE &&
		    rc != CF_ERR_NOMEM)
			die("unexpected status", &err);
		if (err.code != rc || strncmp(err.msg, WHAT ":", strlen(WHAT) + 1) != 0)
			die("a refusal does not start with the file's name", &err);
	}
	split_lines(data, size);
	return 0;
}
