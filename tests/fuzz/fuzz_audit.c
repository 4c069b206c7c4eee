/*
 * fuzz_audit.c - libFuzzer target for cf_audit_from_json (audit.h).
 *
 * `coffer audit verify` reads GET /v1/audit answers from a server it does
 * not trust, and its whole point is to catch a server that lies.  The
 * input is parsed as the CLI parses an answer (json_loadb with
 * JSON_REJECT_DUPLICATES); an object with "entries", or an array, gives
 * its members as entries, anything else is one entry.  Each entry goes
 * through cf_audit_from_json, and the accepted ones are walked as the CLI
 * walks a chain.  Properties beyond the sanitizers:
 *   - a refusal is CF_ERR_AUDIT with a sentence, and leaves *e zeroed;
 *   - an accepted entry writes again (cf_audit_to_json refuses exactly
 *     what the reader refuses), reads back equal, and its text
 *     (JSON_SORT_KEYS | JSON_COMPACT) is canonical: writing the entry read
 *     back gives the same text;
 *   - cf_audit_check(e, e->prev) succeeds exactly when e->hash is
 *     cf_audit_hash(e): the entry with its hash recomputed always passes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
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

_Noreturn static void die(const char *what, const cf_error *err)
{
	fuzz_die("fuzz_audit", what, err);
}

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

static int all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

/* The canonical text of e; e must write. */
static char *canonical(const cf_audit_entry *e)
{
	json_t *j = NULL;
	char *text;
	cf_error err;

	cf_error_clear(&err);
	if (cf_audit_to_json(e, &j, &err) != CF_OK)
		die("an accepted entry does not write", &err);
	text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	if (text == NULL)
		die("json_dumps", NULL);
	json_decref(j);
	return text;
}

/* One entry; returns 1 if accepted (into *e). */
static int entry(const json_t *j, cf_audit_entry *e)
{
	cf_audit_entry back, fixed;
	char *text, *again;
	char want[65];
	json_t *parsed;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	memset(e, 0x5a, sizeof(*e));
	rc = cf_audit_from_json(j, e, &err);
	if (rc != CF_OK) {
		if (rc != CF_ERR_AUDIT || err.code != rc || err.msg[0] == '\0')
			die("a refusal breaks the error contract", NULL);
		if (!all_zero(e, sizeof(*e)))
			die("a refusal leaves a half-read entry", NULL);
		return 0;
	}
	text = canonical(e);
	parsed = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	if (parsed == NULL)
		die("the written entry is not JSON", NULL);
	if (cf_audit_from_json(parsed, &back, &err) != CF_OK)
		die("the written entry does not read back", &err);
	if (!same_entry(e, &back))
		die("an entry does not survive to_json + from_json", NULL);
	again = canonical(&back);
	if (strcmp(text, again) != 0)
		die("the written form is not canonical", NULL);
	json_decref(parsed);
	free(again);
	free(text);

	if (cf_audit_hash(e, want, &err) != CF_OK)
		die("cf_audit_hash", &err);
	rc = cf_audit_check(e, e->prev, &err);
	if ((rc == CF_OK) != (strcmp(want, e->hash) == 0))
		die("cf_audit_check disagrees with cf_audit_hash", NULL);
	fixed = *e;
	memcpy(fixed.hash, want, sizeof(fixed.hash));
	if (cf_audit_check(&fixed, fixed.prev, &err) != CF_OK)
		die("an entry with its hash recomputed fails its check", &err);
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const json_t *list, *j;
	char prev[65];
	cf_audit_entry e;
	json_t *doc;
	int64_t count = 0;
	cf_error err;
	size_t i;

	doc = json_loadb((const char *)data, size,
			 JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
	if (doc == NULL)
		return 0;
	list = json_is_array(doc) ? doc : json_object_get(doc, "entries");
	if (!json_is_array(list)) {
		(void)entry(doc, &e);
		json_decref(doc);
		return 0;
	}
	/* The walk of coffer audit verify: seq 1, 2, ... each linked. */
	memcpy(prev, cf_audit_genesis, sizeof(prev));
	json_array_foreach(list, i, j) {
		if (!entry(j, &e) || e.seq != count + 1)
			break;
		cf_error_clear(&err);
		if (cf_audit_check(&e, prev, &err) != CF_OK) {
			if (err.code != CF_ERR_AUDIT || err.msg[0] == '\0')
				die("a broken link breaks the error contract",
				    NULL);
			break;
		}
		memcpy(prev, e.hash, sizeof(prev));
		count++;
	}
	json_decref(doc);
	return 0;
}
