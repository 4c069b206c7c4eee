/*
 * fuzz_envelope.c - libFuzzer target for the opening of envelopes.
 *
 * Every input is tried twice, as what a hostile server or sender hands an
 * agent:
 *   1. as an envelope (AuthEnvelopedData DER) into cf_envelope_open, with
 *      the fixture agent's certificate and key and the fixture trust (root
 *      plus CRL), for FUZZ_SECRET_NAME at FUZZ_MIN_VERSION;
 *   2. as the SignedData inside an envelope into cf_envelope_verify: AES-GCM
 *      authentication stops every mutation of a sealed envelope's content,
 *      so the signed layer is only reachable by fuzzing it directly.
 * The seeds (make_seeds) are sealed to the fixture agent, whose keys are
 * the same in every run (fixture.h), so mutations start from envelopes
 * that decrypt and records that pass every check.
 *
 * Besides the sanitizers, the target checks the error contract of
 * error.h: a refusal carries its status and a non-empty sentence, and
 * leaves no output behind; a success yields a record and a signer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "fixture.h"

static const struct fuzz_fixture *fx;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_secmem_init();
	fx = fuzz_fixture();
	return 0;
}

static void check_outcome(const char *call, cf_status rc, const cf_error *err,
			  cf_record *rec, X509 *signer)
{
	if (rc == CF_OK) {
		if (rec == NULL || signer == NULL ||
		    strcmp(rec->name, FUZZ_SECRET_NAME) != 0 ||
		    rec->version < FUZZ_MIN_VERSION ||
		    strcmp(rec->tenant, cf_trust_tenant(fx->trust)) != 0) {
			fprintf(stderr, "%s: accepted a record that fails its "
				"own checks\n", call);
			abort();
		}
		return;
	}
	if (rec != NULL || signer != NULL || err->code != rc ||
	    err->msg[0] == '\0') {
		fprintf(stderr, "%s: refusal %s breaks the error contract "
			"(code %s, message \"%s\", outputs %p %p)\n", call,
			cf_status_name(rc), cf_status_name(err->code), err->msg,
			(void *)rec, (void *)signer);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cf_record *rec = NULL;
	X509 *signer = NULL;
	cf_secret *signed_der;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_envelope_open(data, size, fx->agent.cert, fx->agent.key,
			      fx->trust, FUZZ_SECRET_NAME, FUZZ_MIN_VERSION,
			      &rec, &signer, &err);
	check_outcome("cf_envelope_open", rc, &err, rec, signer);
	cf_record_free(rec);
	X509_free(signer);
	rec = NULL;
	signer = NULL;

	signed_der = cf_secret_from(data, size);
	if (signed_der == NULL)
		abort();
	cf_error_clear(&err);
	rc = cf_envelope_verify(signed_der, fx->trust, FUZZ_SECRET_NAME,
				FUZZ_MIN_VERSION, &rec, &signer, &err);
	check_outcome("cf_envelope_verify", rc, &err, rec, signer);
	cf_record_free(rec);
	X509_free(signer);
	cf_secret_free(signed_der);
	return 0;
}
