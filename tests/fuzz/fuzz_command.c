/*
 * fuzz_command.c - libFuzzer target for cf_command_parse and
 * cf_cmd_result_parse (docs/COMMANDS.md).
 *
 * A command comes out of an envelope any operator can make, a result out
 * of one any agent can make, so both parsers take outside input.  The
 * first byte picks the parser (even: command, odd: result), the rest is
 * the JSON.  Besides the sanitizers the target checks:
 *   - a refusal carries its status and a sentence (error.h);
 *   - what parses encodes again, and the encoding parses back to the
 *     same fields: parse and encode agree on what a valid record is.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "fixture.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_secmem_init();
	return 0;
}

static void refusal_ok(cf_status rc, const cf_error *err, const void *out)
{
	if (out != NULL || err->code != rc || err->msg[0] == '\0') {
		fprintf(stderr, "refusal %s breaks the error contract\n",
			cf_status_name(rc));
		abort();
	}
}

static int same_command(const cf_command *a, const cf_command *b)
{
	if (strcmp(a->tenant, b->tenant) != 0 || strcmp(a->id, b->id) != 0 ||
	    strcmp(a->action, b->action) != 0 || a->issued != b->issued ||
	    a->expires != b->expires || a->n_args != b->n_args ||
	    a->n_targets != b->n_targets)
		return 0;
	for (size_t i = 0; i < a->n_args; i++)
		if (strcmp(a->args[i], b->args[i]) != 0)
			return 0;
	for (size_t i = 0; i < a->n_targets; i++)
		if (strcmp(a->targets[i], b->targets[i]) != 0)
			return 0;
	return 1;
}

static void fuzz_command(const uint8_t *data, size_t size)
{
	cf_command *cmd = NULL, *again = NULL;
	cf_secret *json = NULL;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_command_parse(data, size, &cmd, &err);
	if (rc != CF_OK) {
		refusal_ok(rc, &err, cmd);
		return;
	}
	if (cf_command_encode(cmd, &json, &err) != CF_OK ||
	    cf_command_parse(cf_secret_cdata(json), cf_secret_len(json),
			     &again, &err) != CF_OK ||
	    !same_command(cmd, again)) {
		fprintf(stderr, "a command does not survive encode+parse: %s\n",
			err.msg);
		abort();
	}
	(void)cf_command_targets(cmd, "web-1", "web,db");
	cf_command_free(again);
	cf_secret_free(json);
	cf_command_free(cmd);
}

static int same_result(const cf_cmd_result *a, const cf_cmd_result *b)
{
	return strcmp(a->tenant, b->tenant) == 0 && strcmp(a->id, b->id) == 0 &&
	       strcmp(a->agent, b->agent) == 0 && a->status == b->status &&
	       strcmp(a->code, b->code) == 0 && a->exit_code == b->exit_code &&
	       a->signal == b->signal && a->timed_out == b->timed_out &&
	       strcmp(a->reason, b->reason) == 0 && a->out_len == b->out_len &&
	       a->err_len == b->err_len && a->out_cut == b->out_cut &&
	       a->err_cut == b->err_cut &&
	       (a->out_len == 0 || memcmp(a->out, b->out, a->out_len) == 0) &&
	       (a->err_len == 0 ||
		memcmp(a->err_out, b->err_out, a->err_len) == 0) &&
	       a->received == b->received && a->started == b->started &&
	       a->finished == b->finished;
}

static void fuzz_result(const uint8_t *data, size_t size)
{
	cf_cmd_result *res = NULL, *again = NULL;
	cf_secret *json = NULL;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_cmd_result_parse(data, size, &res, &err);
	if (rc != CF_OK) {
		refusal_ok(rc, &err, res);
		return;
	}
	if (cf_cmd_result_encode(res, &json, &err) != CF_OK ||
	    cf_cmd_result_parse(cf_secret_cdata(json), cf_secret_len(json),
				&again, &err) != CF_OK ||
	    !same_result(res, again)) {
		fprintf(stderr, "a result does not survive encode+parse: %s\n",
			err.msg);
		abort();
	}
	cf_cmd_result_free(again);
	cf_secret_free(json);
	cf_cmd_result_free(res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		fuzz_result(data + 1, size - 1);
	else
		fuzz_command(data + 1, size - 1);
	return 0;
}
