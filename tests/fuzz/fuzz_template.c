/*
 * fuzz_template.c - libFuzzer target for agent templates
 * (src/agent/template.c).
 *
 * Input: template source bytes, given with their length to
 * ag_template_parse.  When it parses, it is rendered with a lookup that
 * knows some names (by their first byte: plain text, text that needs
 * JSON escaping, bytes that are not UTF-8, a value of 512 KiB so that a
 * few uses cross the output limit, an empty value) and not others.
 * Checked, beyond the sanitizers:
 *   - a parse refusal is CF_ERR_PARSE "fuzz.tmpl:LINE:COL: ..." (or
 *     CF_ERR_TOO_LARGE / CF_ERR_NOMEM) and leaves *out NULL;
 *   - the names are distinct valid secret names;
 *   - a render is CF_OK exactly when every name is known and no | json
 *     meets a value that is not UTF-8 and the output fits: CF_ERR_NOT_FOUND
 *     only with an unknown name, CF_ERR_PARSE only with the non-UTF-8
 *     value in use; the output never exceeds AG_TEMPLATE_OUTPUT_MAX_BYTES;
 *   - no message ever holds a value (each value carries a marker that
 *     the message may show only if the input itself holds it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "policy.h"
#include "secmem.h"
#include "template.h"

#define WHAT "fuzz.tmpl"
#define MARKER "S3CR3T"
#define BIG_BYTES (512u * 1024u)

/* By a name's first byte; names starting otherwise are unknown. */
static cf_secret *v_plain, *v_escape, *v_binary, *v_big, *v_empty;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const cf_error *err)
{
	fuzz_die("fuzz_template", what, err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char escape[] = MARKER " \"q\" \\ \n\t\x01\x1f\x7f "
				     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91";
	static const char binary[] = MARKER "\xff\xfe\0\xc0\xaf";
	char *big;

	(void)argc;
	(void)argv;
	fuzz_secmem_init();
	big = malloc(BIG_BYTES);
	if (big == NULL)
		die("out of memory", NULL);
	memset(big, 'B', BIG_BYTES);
	memcpy(big, MARKER, strlen(MARKER));
	v_plain = cf_secret_from(MARKER "-hunter2", strlen(MARKER) + 8);
	v_escape = cf_secret_from(escape, sizeof(escape) - 1);
	v_binary = cf_secret_from(binary, sizeof(binary) - 1);
	v_big = cf_secret_from(big, BIG_BYTES);
	v_empty = cf_secret_new(0);
	free(big);
	if (v_plain == NULL || v_escape == NULL || v_binary == NULL ||
	    v_big == NULL || v_empty == NULL)
		die("out of memory", NULL);
	return 0;
}

static const cf_secret *value_of(const char *name)
{
	switch (name[0]) {
	case 'a': case 'p': return v_plain;
	case 'e': case 'j': return v_escape;
	case 'b': return v_binary;
	case 'B': return v_big;
	case 'z': return v_empty;
	default: return NULL;
	}
}

static const cf_secret *lookup(void *ctx, const char *name)
{
	(*(size_t *)ctx)++;
	return value_of(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ag_template *t = (ag_template *)&size;
	cf_secret *out = (cf_secret *)&size;
	cf_error err = { 0 };
	cf_status rc;
	size_t n, calls = 0;
	int missing = 0, binary = 0;

	rc = ag_template_parse((const char *)data, size, WHAT, &t, &err);
	if (rc != CF_OK) {
		if (t != NULL)
			die("a parse refusal left *out set", &err);
		if (rc != CF_ERR_PARSE && rc != CF_ERR_TOO_LARGE &&
		    rc != CF_ERR_NOMEM)
			die("unexpected parse status", &err);
		if (err.code != rc ||
		    strncmp(err.msg, WHAT ":", strlen(WHAT) + 1) != 0)
			die("a parse refusal does not name the template", &err);
		return 0;
	}
	n = ag_template_n_names(t);
	for (size_t i = 0; i < n; i++) {
		const char *name = ag_template_name(t, i);

		if (name == NULL || cf_name_check("name", name, &err) != CF_OK)
			die("a name is not a valid secret name", &err);
		for (size_t j = 0; j < i && j < 64; j++)
			if (strcmp(ag_template_name(t, j), name) == 0)
				die("a name is listed twice", NULL);
		missing |= value_of(name) == NULL;
		binary |= value_of(name) == v_binary;
	}
	if (ag_template_name(t, n) != NULL)
		die("a name past the end", NULL);

	rc = ag_template_render(t, lookup, &calls, &out, &err);
	/* (Unless the input wrote the marker itself, say into a name.) */
	if (strstr(err.msg, MARKER) != NULL &&
	    memmem(data, size, MARKER, strlen(MARKER)) == NULL)
		die("a message holds a secret value", NULL);
	if (rc == CF_OK) {
		if (out == NULL || missing)
			die("rendered with an unknown name", &err);
		if (cf_secret_len(out) > AG_TEMPLATE_OUTPUT_MAX_BYTES)
			die("the output exceeds the limit", NULL);
	} else {
		if (out != NULL)
			die("a render refusal left *out set", &err);
		if (rc == CF_ERR_NOT_FOUND ? !missing :
		    rc == CF_ERR_PARSE ? missing || !binary :
		    rc == CF_ERR_TOO_LARGE ? missing :
		    rc != CF_ERR_NOMEM)
			die("unexpected render status", &err);
		if (rc != CF_ERR_NOMEM &&
		    strncmp(err.msg, WHAT ":", strlen(WHAT) + 1) != 0)
			die("a render refusal does not name the template", &err);
	}
	if (calls > n)
		die("more lookups than names", NULL);
	cf_secret_free(out);
	ag_template_free(t);
	return 0;
}
