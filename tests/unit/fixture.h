/*
 * fixture.h - what the unit tests share: cmocka, a status assertion, and a
 * tenant's PKI made at test time.
 *
 * Every key and certificate is generated in the run that uses it; no
 * private key is ever checked in (STYLE, Tests).  The fx_ helpers fail the
 * current test on any error, so that the tests themselves only spell out
 * what they check.  Objects they return belong to the caller.
 */
#ifndef CF_TEST_FIXTURE_H
#define CF_TEST_FIXTURE_H

/* cmocka needs these before its own header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "error.h"
#include "pki.h"

/*
 * Runs call with a cleared *errp and fails the test unless it returns
 * want.  A refusal must also fill the error: code want and a sentence,
 * since a bare status is never what the user sees.
 */
#define assert_status(want, call, errp) do { \
	cf_status want_ = (want); \
	cf_status got_; \
	cf_error_clear(errp); \
	got_ = (call); \
	if (got_ != want_) \
		fail_msg("%s:%d: got %s, want %s (%s)", __FILE__, __LINE__, \
			 cf_status_name(got_), cf_status_name(want_), \
			 (errp)->msg); \
	if (want_ != CF_OK && ((errp)->code != want_ || (errp)->msg[0] == '\0')) \
		fail_msg("%s:%d: %s returned without an error sentence", \
			 __FILE__, __LINE__, cf_status_name(want_)); \
} while (0)

/* Group setup: the secure heap and coffer's OIDs, as every program does. */
int fx_group_setup(void **state);

/* A fresh P-256 key. */
EVP_PKEY *fx_key(void);

/* A fresh key of another kind: "P-384" or "RSA" (1024 bits, for speed). */
EVP_PKEY *fx_other_key(const char *what);

/* A root CA for org, valid for days (0: the default). */
X509 *fx_root(EVP_PKEY *key, const char *org, int days);

/* Issues a certificate for key with CN cn as spec says; must succeed. */
X509 *fx_issue(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
	       const char *cn, const cf_cert_spec *spec);

/* An operator or enroller certificate with one or two rules (rule2 may be NULL). */
X509 *fx_holder(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
		cf_kind kind, const char *cn, const char *rule1,
		const char *rule2);

/* An agent certificate in one group. */
X509 *fx_agent(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
	       const char *cn, const char *group);

/*
 * A CRL of root listing revoke1 and revoke2 (either may be NULL), built
 * with cf_crl_update as an admin would.
 */
X509_CRL *fx_crl(X509 *root, EVP_PKEY *root_key, X509 *revoke1, X509 *revoke2);

/*
 * Adds a non-critical coffer extension (UTF8String text) to cert, for
 * certificates the tests build by hand because cf_cert_issue refuses them.
 */
void fx_add_utf8_ext(X509 *cert, int nid, const char *text);

/* The DER of cert into a new buffer (OPENSSL_free). */
unsigned char *fx_cert_der(X509 *cert, size_t *len);

/* Removes dir and everything below it (symbolic links are not followed). */
void fx_remove_tree(const char *dir);

/*
 * Runs argv[0] (looked up in PATH) with argv, no shell, standard output
 * and error to out_path (NULL: /dev/null), standard input /dev/null.
 * Its exit status, or -1 when it could not be started or was killed.
 */
int fx_run(char *const argv[], const char *out_path);

/*
 * A certificate fingerprint (or tenant id) made of one repeated
 * character, for the store's tests, which keep fingerprints as opaque
 * text: stable storage per c, so several may be used at once.
 */
const char *fx_fp_of(char c);

#endif
