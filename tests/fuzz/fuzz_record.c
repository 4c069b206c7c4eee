/*
 * fuzz_record.c - libFuzzer target for cf_record_parse (record JSON).
 *
 * A record is the signed content of an envelope: anybody holding a writer
 * certificate chooses its bytes.  Besides the sanitizers the target checks
 * two properties:
 *   - a refusal carries its status and a sentence (error.h);
 *   - a record that parses encodes again (cf_record_encode validates the
 *     same rules), and the encoding parses back to the same fields and
 *     value: parse and encode agree on what a valid record is.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "record.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_secmem_init();
	return 0;
}

static int same_strings(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return 0;
	return 1;
}

static int same_record(const cf_record *a, const cf_record *b)
{
	return strcmp(a->tenant, b->tenant) == 0 &&
	       strcmp(a->name, b->name) == 0 && a->version == b->version &&
	       a->created == b->created && a->type == b->type &&
	       cf_secret_equal(a->value, b->value) &&
	       same_strings(a->targets, a->n_targets, b->targets,
			    b->n_targets) &&
	       same_strings(a->without, a->n_without, b->without,
			    b->n_without);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cf_record *rec = NULL, *again = NULL;
	cf_secret *json = NULL;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_record_parse(data, size, &rec, &err);
	if (rc != CF_OK) {
		if (rec != NULL || err.code != rc || err.msg[0] == '\0') {
			fprintf(stderr, "refusal %s breaks the error contract\n",
				cf_status_name(rc));
			abort();
		}
		return 0;
	}
	(void)cf_record_type_name(rec->type);
	cf_error_clear(&err);
	rc = cf_record_encode(rec, &json, &err);
	if (rc != CF_OK) {
		fprintf(stderr, "a parsed record does not encode: %s\n", err.msg);
		abort();
	}
	rc = cf_record_parse(cf_secret_cdata(json), cf_secret_len(json), &again,
			     &err);
	if (rc != CF_OK || !same_record(rec, again)) {
		fprintf(stderr, "a record does not survive encode+parse: %s\n",
			rc != CF_OK ? err.msg : "fields differ");
		abort();
	}
	cf_record_free(again);
	cf_secret_free(json);
	cf_record_free(rec);
	return 0;
}
