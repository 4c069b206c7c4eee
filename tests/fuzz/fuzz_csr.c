/*
 * fuzz_csr.c - libFuzzer target for cf_csr_parse along the enrollment path.
 *
 * POST /v1/enroll takes a CSR from a client that has no certificate yet
 * (it holds only a join token), so its bytes are anybody's.  The input
 * goes where such a request goes (docs/API.md, "Enrollment"):
 *   - the server parses it (PEM or DER), takes its CN and stores it again
 *     as PEM (PEM_write_bio_X509_REQ, as api_enroll.c does);
 *   - the enroller parses that PEM, HMACs the request's DER with the token
 *     secret and compares with the HMAC the agent made over its own DER,
 *     then issues an agent certificate with its own key.
 * Properties beyond the sanitizers:
 *   - a refusal keeps the error contract and leaves *out NULL;
 *   - an accepted request holds a P-256 key, and survives the server's
 *     PEM rewrite and cf_csr_to_pem: both parse again, to the same DER
 *     and CN, so the agent's HMAC and the enroller's agree;
 *   - what the fixture enroller issues from it is an agent certificate
 *     that verifies with the enroller as chain, carries the request's
 *     public key and (when the CN is one cf_cert_issue takes) its CN.
 * fuzz_cert also feeds cf_csr_parse, among two other parsers; this target
 * starts from request seeds only and follows the request further.
 */
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "pki.h"
#include "trust.h"

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

_Noreturn static void die(const char *what, const cf_error *err)
{
	fuzz_die("fuzz_csr", what, err);
}

/* Parses buf, which must succeed, and checks it has DER der and CN cn. */
static void reparse_same(const unsigned char *buf, size_t len,
			 const unsigned char *der, int der_len, const char *cn,
			 const char *what)
{
	char cn2[CF_CN_MAX_BYTES + 1];
	unsigned char *der2 = NULL;
	X509_REQ *req = NULL;
	int len2;
	cf_error err;

	cf_error_clear(&err);
	if (cf_csr_parse(buf, len, what, &req, &err) != CF_OK)
		die("an accepted request is refused after a rewrite", &err);
	len2 = i2d_X509_REQ(req, &der2);
	if (len2 != der_len || memcmp(der, der2, (size_t)len2) != 0)
		die("a rewrite changes the request's DER (the HMACs would differ)",
		    NULL);
	cf_cert_cn_of_name(X509_REQ_get_subject_name(req), cn2, sizeof(cn2));
	if (strcmp(cn, cn2) != 0)
		die("a rewrite changes the request's CN", NULL);
	OPENSSL_free(der2);
	X509_REQ_free(req);
}

static void issue(X509_REQ *req, const char *cn)
{
	static const char *const groups[] = { "web" };
	const cf_cert_spec spec = {
		.kind = CF_KIND_AGENT, .groups = groups, .n_groups = 1,
	};
	char got[CF_CN_MAX_BYTES + 1];
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509 *cert = NULL;
	cf_error err;
	cf_status rc;

	if (chain == NULL || !sk_X509_push(chain, fx->enroller.cert))
		die("out of memory", NULL);
	cf_error_clear(&err);
	rc = cf_cert_issue(fx->enroller.cert, fx->enroller.key, req, &spec,
			   &cert, &err);
	if (rc != CF_OK && (err.code != rc || err.msg[0] == '\0' || cert != NULL))
		die("cf_cert_issue: refusal breaks the error contract", NULL);
	if (cert != NULL) {
		if (cf_cert_kind(cert) != CF_KIND_AGENT)
			die("an issued certificate is not an agent's", NULL);
		if (EVP_PKEY_eq(X509_get0_pubkey(cert),
				X509_REQ_get0_pubkey(req)) != 1)
			die("an issued certificate has another public key", NULL);
		cf_cert_cn(cert, got, sizeof(got));
		if (strcmp(got, cn) != 0)
			die("an issued certificate has another CN", NULL);
		cf_error_clear(&err);
		if (cf_trust_verify(fx->trust, cert, chain, "issued", &err) != CF_OK)
			die("a certificate the enroller issued does not verify",
			    &err);
	}
	X509_free(cert);
	sk_X509_free(chain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char cn[CF_CN_MAX_BYTES + 1];
	unsigned char *der = NULL, *pem = NULL;
	size_t pem_len = 0;
	X509_REQ *req = NULL;
	BIO *bio = NULL;
	char *server_pem;
	long server_len;
	int der_len;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_csr_parse(data, size, "fuzz input", &req, &err);
	if ((rc == CF_OK) != (req != NULL))
		die("cf_csr_parse: result and status disagree", NULL);
	if (rc != CF_OK) {
		if (err.code != rc || err.msg[0] == '\0')
			die("cf_csr_parse: refusal breaks the error contract", NULL);
		return 0;
	}
	if (!cf_key_is_p256(X509_REQ_get0_pubkey(req)))
		die("an accepted request does not hold a P-256 key", NULL);
	cf_cert_cn_of_name(X509_REQ_get_subject_name(req), cn, sizeof(cn));
	if (strlen(cn) > CF_CN_MAX_BYTES)
		die("a CN is longer than its bound", NULL);
	der_len = i2d_X509_REQ(req, &der);
	if (der_len <= 0)
		die("an accepted request does not encode", NULL);

	/* The server's rewrite, as api_enroll.c stores it. */
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || PEM_write_bio_X509_REQ(bio, req) != 1 ||
	    (server_len = BIO_get_mem_data(bio, &server_pem)) <= 0)
		die("PEM_write_bio_X509_REQ", NULL);
	reparse_same((const unsigned char *)server_pem, (size_t)server_len, der,
		     der_len, cn, "server PEM");
	if (cf_csr_to_pem(req, &pem, &pem_len, &err) != CF_OK)
		die("cf_csr_to_pem", &err);
	reparse_same(pem, pem_len, der, der_len, cn, "cf_csr_to_pem");
	reparse_same(der, (size_t)der_len, der, der_len, cn, "DER");

	issue(req, cn);
	OPENSSL_free(pem);
	OPENSSL_free(der);
	BIO_free(bio);
	X509_REQ_free(req);
	return 0;
}
