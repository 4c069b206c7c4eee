/*
 * fuzz_cert.c - libFuzzer target for certificates, CRLs and requests.
 *
 * The same input goes to the three PKI parsers of outside input:
 *   - cf_cert_parse (PEM with a chain, or DER), then, for the certificate
 *     and every chain member, everything coffer reads from a certificate
 *     it was handed: kind, permissions, each coffer extension, CN, names,
 *     fingerprint, validity, the issuing rules (cf_cert_check_issuance
 *     with the fixture root as issuer and with the certificate as its own
 *     issuer) and cf_trust_verify against the fixture trust;
 *   - cf_crl_parse, then cf_crl_check_signer and cf_trust_new against the
 *     fixture root (a CRL is uploaded by an admin, but read by everyone);
 *   - cf_csr_parse, then the subject CN and cf_cert_issue by the fixture
 *     root (an agent's join request reaches an enroller this way).
 * The fixture (fixture.h) is the PKI that signed the seeds, so mutations
 * start from certificates that verify.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "pki.h"
#include "policy.h"
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

/* A refusal must say why (error.h). */
static void check_refusal(const char *call, cf_status rc, const cf_error *err)
{
	if (rc != CF_OK && (err->code != rc || err->msg[0] == '\0')) {
		fprintf(stderr, "%s: refusal %s without its sentence (code %s)\n",
			call, cf_status_name(rc), cf_status_name(err->code));
		abort();
	}
}

static void inspect(X509 *cert, STACK_OF(X509) *chain)
{
	const int nids[] = {
		cf_nid_perms(), cf_nid_groups(), cf_nid_cluster(),
		cf_nid_record(), cf_nid_kind(),
	};
	char cn[CF_CN_MAX_BYTES + 1], hex[65];
	struct cf_perms *perms = NULL;
	char *text;
	cf_error err;
	cf_status rc;

	(void)cf_kind_name(cf_cert_kind(cert));
	cf_error_clear(&err);
	rc = cf_cert_perms(cert, &perms, &err);
	check_refusal("cf_cert_perms", rc, &err);
	if ((rc == CF_OK) != (perms != NULL))
		abort();
	/* Every scope matches itself as a name: a rule grants its own text. */
	for (size_t i = 0; i < cf_perms_count(perms); i++)
		if (!cf_perms_allows(perms, cf_perms_verb(perms, i),
				     cf_perms_scope(perms, i)))
			abort();
	cf_perms_free(perms);
	for (size_t i = 0; i < sizeof(nids) / sizeof(nids[0]); i++) {
		text = NULL;
		cf_error_clear(&err);
		rc = cf_cert_ext_text(cert, nids[i], &text, &err);
		check_refusal("cf_cert_ext_text", rc, &err);
		if (rc != CF_OK && text != NULL)
			abort();
		if (text != NULL && strlen(text) > 65536)
			abort();
		OPENSSL_free(text);
	}
	cf_cert_cn(cert, cn, sizeof(cn));
	if (strlen(cn) > CF_CN_MAX_BYTES)
		abort();
	OPENSSL_free(cf_name_text(X509_get_subject_name(cert)));
	OPENSSL_free(cf_name_text(X509_get_issuer_name(cert)));
	cf_error_clear(&err);
	if (cf_cert_fingerprint(cert, hex, &err) == CF_OK && strlen(hex) != 64)
		abort();
	(void)cf_asn1_time_unix(X509_get0_notBefore(cert));
	(void)cf_asn1_time_unix(X509_get0_notAfter(cert));
	cf_error_clear(&err);
	rc = cf_cert_check_issuance(fx->root.cert, cert, &err);
	check_refusal("cf_cert_check_issuance", rc, &err);
	cf_error_clear(&err);
	rc = cf_cert_check_issuance(cert, cert, &err);
	check_refusal("cf_cert_check_issuance", rc, &err);
	cf_error_clear(&err);
	rc = cf_trust_verify(fx->trust, cert, chain, "fuzzed certificate", &err);
	check_refusal("cf_trust_verify", rc, &err);
}

static void fuzz_cert(const uint8_t *data, size_t size)
{
	STACK_OF(X509) *chain = NULL;
	X509 *cert = NULL;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_cert_parse(data, size, "fuzz input", &cert, &chain, &err);
	check_refusal("cf_cert_parse", rc, &err);
	if ((rc == CF_OK) != (cert != NULL))
		abort();
	if (cert != NULL) {
		inspect(cert, chain);
		for (int i = 0; i < sk_X509_num(chain); i++)
			inspect(sk_X509_value(chain, i), NULL);
	}
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
}

static void fuzz_crl(const uint8_t *data, size_t size)
{
	X509_CRL *crl = NULL;
	cf_trust *trust = NULL;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_crl_parse(data, size, "fuzz input", &crl, &err);
	check_refusal("cf_crl_parse", rc, &err);
	if (rc != CF_OK)
		return;
	cf_error_clear(&err);
	rc = cf_crl_check_signer(crl, fx->root.cert, &err);
	check_refusal("cf_crl_check_signer", rc, &err);
	cf_error_clear(&err);
	rc = cf_trust_new(fx->root.cert, crl, &trust, &err);
	check_refusal("cf_trust_new", rc, &err);
	if (trust != NULL) {
		cf_error_clear(&err);
		rc = cf_trust_verify(trust, fx->revoked.cert, NULL, "revoked", &err);
		check_refusal("cf_trust_verify", rc, &err);
	}
	cf_trust_free(trust);
	X509_CRL_free(crl);
}

static void fuzz_csr(const uint8_t *data, size_t size)
{
	static const char *const groups[] = { "web" };
	const cf_cert_spec spec = {
		.kind = CF_KIND_AGENT, .groups = groups, .n_groups = 1,
	};
	char cn[CF_CN_MAX_BYTES + 1];
	X509_REQ *csr = NULL;
	X509 *cert = NULL;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_csr_parse(data, size, "fuzz input", &csr, &err);
	check_refusal("cf_csr_parse", rc, &err);
	if (rc != CF_OK)
		return;
	cf_cert_cn_of_name(X509_REQ_get_subject_name(csr), cn, sizeof(cn));
	cf_error_clear(&err);
	rc = cf_cert_issue(fx->root.cert, fx->root.key, csr, &spec, &cert, &err);
	check_refusal("cf_cert_issue", rc, &err);
	if (cert != NULL) {
		/* What the root issues from any request it accepts must verify. */
		if (cf_cert_kind(cert) != CF_KIND_AGENT)
			abort();
		cf_error_clear(&err);
		rc = cf_trust_verify(fx->trust, cert, NULL, "issued", &err);
		if (rc != CF_OK) {
			fprintf(stderr, "issued certificate refused: %s\n", err.msg);
			abort();
		}
	}
	X509_free(cert);
	X509_REQ_free(csr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_cert(data, size);
	fuzz_crl(data, size);
	fuzz_csr(data, size);
	return 0;
}
