/*
 * fuzz_ack.c - libFuzzer target for cf_ack_parse (ack.h, docs/FORMAT.md
 * "Acknowledgements").
 *
 * An acknowledgement comes out of a signature any agent can make, and the
 * server and `coffer status` parse it, so the parser takes outside input.
 * Besides the sanitizers the target checks:
 *   - a refusal carries its status and a sentence (error.h) and leaves
 *     the output zeroed;
 *   - what parses encodes again, and the encoding parses back to the
 *     same fields: parse and encode agree on what a valid ack is.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ack.h"
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

static int same(const cf_ack *a, const cf_ack *b)
{
	return strcmp(a->tenant, b->tenant) == 0 &&
	       strcmp(a->agent, b->agent) == 0 &&
	       strcmp(a->name, b->name) == 0 && a->version == b->version &&
	       a->time == b->time && a->result == b->result &&
	       strcmp(a->reason, b->reason) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const cf_ack zero;
	cf_ack ack, again;
	cf_secret *json = NULL;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_ack_parse(data, size, &ack, &err);
	if (rc != CF_OK) {
		if (err.code != rc || err.msg[0] == '\0' ||
		    memcmp(&ack, &zero, sizeof(ack)) != 0) {
			fprintf(stderr, "refusal %s breaks the error contract\n",
				cf_status_name(rc));
			abort();
		}
		return 0;
	}
	if (cf_ack_encode(&ack, &json, &err) != CF_OK ||
	    cf_ack_parse(cf_secret_cdata(json), cf_secret_len(json), &again,
			 &err) != CF_OK ||
	    !same(&ack, &again)) {
		fprintf(stderr, "an ack does not survive encode+parse: %s\n",
			err.msg);
		abort();
	}
	cf_secret_free(json);
	return 0;
}
