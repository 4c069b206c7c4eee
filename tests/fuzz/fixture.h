/*
 * fixture.h - the fixed PKI that the fuzz targets and their seed generator
 * share.  FUZZ-ONLY MATERIAL: never use it anywhere else.
 *
 * Every key is a P-256 key whose private scalar is SHA-256 of a public
 * label, and every signature and serial made while building the fixture
 * comes from a deterministic RNG, with fixed validity periods where a
 * certificate's bytes matter.  So every process that builds the fixture
 * gets byte-identical root and CRL-listed serials and the same recipient
 * issuer+serial: an envelope that make_seeds seals to `agent` in one run
 * is opened by fuzz_envelope in any other run, and its record's tenant
 * (SHA-256 of the root's DER) matches, so mutations reach the last check
 * of cf_envelope_verify.  Anyone can recompute these keys: they protect
 * nothing, and no private key is checked in.
 */
#ifndef CF_FUZZ_FIXTURE_H
#define CF_FUZZ_FIXTURE_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "trust.h"

/* The name and minimum version that fuzz_envelope opens with. */
#define FUZZ_SECRET_NAME "fuzz/db/password"
#define FUZZ_MIN_VERSION 2

struct fuzz_identity {
	EVP_PKEY *key;
	X509 *cert;
};

struct fuzz_fixture {
	struct fuzz_identity root;      /* "Fuzz Org" root CA, 2020..2099 */
	struct fuzz_identity agent;     /* the recipient fuzz_envelope opens as */
	struct fuzz_identity other;     /* another agent: envelopes not for us */
	struct fuzz_identity writer;    /* operator, secret.write on fuzz/... */
	struct fuzz_identity reader;    /* operator, secret.read only */
	struct fuzz_identity admin;     /* operator, admin on fuzz/db/<one> */
	struct fuzz_identity revoked;   /* operator on the CRL */
	struct fuzz_identity expired;   /* operator, valid 2020..2021 only */
	struct fuzz_identity enroller;  /* agent.enroll:web, secret.write */
	struct fuzz_identity enrolled;  /* agent (group web) by the enroller */
	struct fuzz_identity rogue;     /* agent (group db) the enroller may not issue */
	struct fuzz_identity enroller2; /* enroller on the CRL */
	struct fuzz_identity orphan;    /* agent issued by the revoked enroller2 */
	struct fuzz_identity foreign_root;   /* "Other Org" root */
	struct fuzz_identity foreign_writer; /* operator of the other root */
	X509_CRL *crl;                  /* root's CRL: revoked, enroller2 */
	cf_trust *trust;                /* root + crl */
};

/*
 * Builds the fixture on first use (also initialising coffer's OIDs) and
 * returns it; prints why and aborts if that fails.  Not thread-safe.
 */
const struct fuzz_fixture *fuzz_fixture(void);

/*
 * A property failed (or the fixture cannot be built): prints "WHO: WHAT:
 * the sentence of err" (err may be NULL) and OpenSSL's error queue to
 * stderr, and aborts so that libFuzzer keeps the input.
 */
_Noreturn void fuzz_die(const char *who, const char *what, const cf_error *err);

/*
 * Secure heap for a fuzz process.  OpenSSL's secure heap is one mmap'd
 * arena that ASan cannot see into (no overflow, use-after-free or leak is
 * reported inside it), so by default the targets leave it uninitialised
 * and CRYPTO_secure_* fall back to the ordinary, instrumented heap.  With
 * COFFER_FUZZ_SECMEM=1 in the environment this calls cf_secmem_init, to
 * fuzz the production allocators (jansson's secure allocator included).
 */
void fuzz_secmem_init(void);

#endif
