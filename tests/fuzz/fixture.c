/*
 * fixture.c - the deterministic, FUZZ-ONLY PKI of fixture.h.
 *
 * Determinism has two sources:
 *   - keys: the private scalar of each identity is SHA-256 of a public
 *     label ("coffer fuzz fixture key: NAME"), so nothing secret exists;
 *   - everything random while the fixture is built (serials, ECDSA
 *     nonces): OpenSSL 3.0 has no deterministic ECDSA, so for the length
 *     of fuzz_fixture() the process's RAND_METHOD is replaced by SHA-256
 *     in counter mode over a fixed seed, and the default RNG is put back
 *     before anything else runs.  RAND_set_rand_method is deprecated in
 *     OpenSSL 3.0, which is why this one file re-enables deprecated
 *     declarations; no other coffer code does or may.
 * The root's validity is fixed (2020-01-01 .. 2099-12-31) so its DER, and
 * so the tenant, is the same in every run; so is the enroller's (the
 * token envelopes it signs pin its certificate); the other certificates
 * keep the validity cf_cert_issue gives them, which the seeds do not
 * depend on.
 */
/* Before any OpenSSL header: this file needs RAND_set_rand_method. */
#undef OPENSSL_NO_DEPRECATED
#undef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 10101
#define OPENSSL_SUPPRESS_DEPRECATED

#include "fixture.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki.h"
#include "policy.h"
#include "secmem.h"

/* ------------------------------------------------ deterministic RNG */

static uint64_t det_counter;

static int det_bytes(unsigned char *buf, int num)
{
	static const char seed[] = "coffer fuzz fixture rng";
	unsigned char block[sizeof(seed) + sizeof(det_counter)];
	unsigned char md[32];

	while (num > 0) {
		int n = num < 32 ? num : 32;

		memcpy(block, seed, sizeof(seed));
		memcpy(block + sizeof(seed), &det_counter, sizeof(det_counter));
		det_counter++;
		if (!EVP_Digest(block, sizeof(block), md, NULL, EVP_sha256(), NULL))
			return 0;
		memcpy(buf, md, (size_t)n);
		buf += n;
		num -= n;
	}
	return 1;
}

static int det_status(void)
{
	return 1;
}

static const RAND_METHOD det_rand = {
	.bytes = det_bytes,
	.pseudorand = det_bytes,
	.status = det_status,
};

/* --------------------------------------------------------- helpers */

_Noreturn void fuzz_die(const char *who, const char *what, const cf_error *err)
{
	fprintf(stderr, "%s: %s%s%s\n", who, what, err != NULL ? ": " : "",
		err != NULL ? err->msg : "");
	ERR_print_errors_fp(stderr);
	abort();
}

static void die(const char *what, const cf_error *err)
{
	fuzz_die("fuzz fixture", what, err);
}

static EVP_PKEY *key_from_label(const char *label)
{
	char text[128];
	unsigned char scalar[32], point[65];
	EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	EC_POINT *pub = group ? EC_POINT_new(group) : NULL;
	BIGNUM *priv = NULL;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *key = NULL;
	int len = snprintf(text, sizeof(text), "coffer fuzz fixture key: %s", label);

	if (len < 0 || (size_t)len >= sizeof(text) || pub == NULL ||
	    bld == NULL || ctx == NULL ||
	    !EVP_Digest(text, (size_t)len, scalar, NULL, EVP_sha256(), NULL) ||
	    (priv = BN_bin2bn(scalar, sizeof(scalar), NULL)) == NULL ||
	    BN_is_zero(priv) ||
	    BN_cmp(priv, EC_GROUP_get0_order(group)) >= 0 ||
	    !EC_POINT_mul(group, pub, priv, NULL, NULL, NULL) ||
	    EC_POINT_point2oct(group, pub, POINT_CONVERSION_UNCOMPRESSED,
			       point, sizeof(point), NULL) != sizeof(point) ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					     "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
					      point, sizeof(point)) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) != 1)
		die(label, NULL);
	OPENSSL_cleanse(scalar, sizeof(scalar));
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(priv);
	EC_POINT_free(pub);
	EC_GROUP_free(group);
	return key;
}

/* A fresh X509 from cert's DER, so no cached state survives an edit. */
static X509 *reparse(X509 *cert)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	int len = i2d_X509(cert, &der);
	X509 *copy = NULL;

	p = der;
	if (len > 0)
		copy = d2i_X509(NULL, &p, len);
	OPENSSL_free(der);
	X509_free(cert);
	if (copy == NULL)
		die("re-reading a fixture certificate", NULL);
	return copy;
}

static void set_validity(X509 *cert, const char *not_before,
			 const char *not_after)
{
	if (!ASN1_TIME_set_string_X509(X509_getm_notBefore(cert), not_before) ||
	    !ASN1_TIME_set_string_X509(X509_getm_notAfter(cert), not_after))
		die("setting a fixed validity", NULL);
}

static void make_root(struct fuzz_identity *id, const char *label,
		      const char *org)
{
	cf_error err;

	id->key = key_from_label(label);
	if (cf_ca_create(id->key, org, 0, &id->cert, &err) != CF_OK)
		die(label, &err);
	set_validity(id->cert, "20200101000000Z", "20991231235959Z");
	if (!X509_sign(id->cert, id->key, EVP_sha256()))
		die(label, NULL);
	id->cert = reparse(id->cert);
}

static void issue(struct fuzz_identity *id, const char *label,
		  const struct fuzz_identity *issuer, cf_kind kind,
		  const char *const *perms, size_t n_perms,
		  const char *const *groups, size_t n_groups)
{
	cf_cert_spec spec = {
		.kind = kind, .perms = perms, .n_perms = n_perms,
		.groups = groups, .n_groups = n_groups,
	};
	X509_REQ *csr = NULL;
	cf_error err;

	id->key = key_from_label(label);
	if (cf_csr_new(id->key, label, &csr, &err) != CF_OK ||
	    cf_cert_issue(issuer->cert, issuer->key, csr, &spec, &id->cert,
			  &err) != CF_OK)
		die(label, &err);
	X509_REQ_free(csr);
}

/* Replaces (or adds) coffer extension nid with the UTF8String text. */
static void set_ext_utf8(X509 *cert, int nid, const char *text)
{
	ASN1_UTF8STRING *str = ASN1_UTF8STRING_new();
	ASN1_OCTET_STRING *der = ASN1_OCTET_STRING_new();
	X509_EXTENSION *ext = NULL;
	unsigned char *enc = NULL;
	int idx, len;

	while ((idx = X509_get_ext_by_NID(cert, nid, -1)) >= 0)
		X509_EXTENSION_free(X509_delete_ext(cert, idx));
	if (str == NULL || der == NULL ||
	    !ASN1_STRING_set(str, text, (int)strlen(text)) ||
	    (len = i2d_ASN1_UTF8STRING(str, &enc)) <= 0 ||
	    !ASN1_OCTET_STRING_set(der, enc, len) ||
	    (ext = X509_EXTENSION_create_by_NID(NULL, nid, 0, der)) == NULL ||
	    !X509_add_ext(cert, ext, -1))
		die("editing a fixture extension", NULL);
	X509_EXTENSION_free(ext);
	OPENSSL_free(enc);
	ASN1_OCTET_STRING_free(der);
	ASN1_UTF8STRING_free(str);
}

/* ---------------------------------------------------------- fixture */

static struct fuzz_fixture fixture;
static int fixture_built;

static void build(struct fuzz_fixture *fx)
{
	static const char *const write_fuzz[] = {
		"secret.write:fuzz/**", "secret.read:fuzz/**",
	};
	static const char *const read_all[] = { "secret.read:**" };
	static const char *const admin_db[] = { "admin:fuzz/db/*" };
	static const char *const write_all[] = { "secret.write:**" };
	static const char *const enroll_web[] = {
		"agent.enroll:web", "secret.write:fuzz/**",
	};
	static const char *const enroll_db[] = { "agent.enroll:db" };
	static const char *const web[] = { "web" };
	static const char *const db[] = { "db" };
	X509_CRL *first = NULL;
	cf_error err;

	make_root(&fx->root, "root", "Fuzz Org");
	issue(&fx->agent, "agent", &fx->root, CF_KIND_AGENT, NULL, 0, web, 1);
	issue(&fx->other, "other", &fx->root, CF_KIND_AGENT, NULL, 0, db, 1);
	issue(&fx->writer, "writer", &fx->root, CF_KIND_OPERATOR, write_fuzz, 2,
	      NULL, 0);
	issue(&fx->reader, "reader", &fx->root, CF_KIND_OPERATOR, read_all, 1,
	      NULL, 0);
	issue(&fx->admin, "admin", &fx->root, CF_KIND_OPERATOR, admin_db, 1,
	      NULL, 0);
	issue(&fx->revoked, "revoked", &fx->root, CF_KIND_OPERATOR, write_all,
	      1, NULL, 0);
	issue(&fx->expired, "expired", &fx->root, CF_KIND_OPERATOR, write_all,
	      1, NULL, 0);
	set_validity(fx->expired.cert, "20200101000000Z", "20210101000000Z");
	if (!X509_sign(fx->expired.cert, fx->root.key, EVP_sha256()))
		die("expired", NULL);
	fx->expired.cert = reparse(fx->expired.cert);
	issue(&fx->enroller, "enroller", &fx->root, CF_KIND_ENROLLER,
	      enroll_web, 2, NULL, 0);
	/*
	 * Byte-identical in every run: cf_token_open pins the signer of a
	 * token envelope by certificate, so fuzz_token opens the envelopes
	 * make_seeds sealed only if this is the very same certificate.
	 */
	set_validity(fx->enroller.cert, "20200101000000Z", "20991231235959Z");
	if (!X509_sign(fx->enroller.cert, fx->root.key, EVP_sha256()))
		die("enroller", NULL);
	fx->enroller.cert = reparse(fx->enroller.cert);
	issue(&fx->enrolled, "enrolled", &fx->enroller, CF_KIND_AGENT, NULL, 0,
	      web, 1);
	/* Issued for web, then edited to db and re-signed: beyond the scope. */
	issue(&fx->rogue, "rogue", &fx->enroller, CF_KIND_AGENT, NULL, 0, web, 1);
	set_ext_utf8(fx->rogue.cert, cf_nid_groups(), "db");
	if (!X509_sign(fx->rogue.cert, fx->enroller.key, EVP_sha256()))
		die("rogue", NULL);
	fx->rogue.cert = reparse(fx->rogue.cert);
	issue(&fx->enroller2, "enroller2", &fx->root, CF_KIND_ENROLLER,
	      enroll_db, 1, NULL, 0);
	issue(&fx->orphan, "orphan", &fx->enroller2, CF_KIND_AGENT, NULL, 0,
	      db, 1);
	make_root(&fx->foreign_root, "foreign root", "Other Org");
	issue(&fx->foreign_writer, "foreign writer", &fx->foreign_root,
	      CF_KIND_OPERATOR, write_all, 1, NULL, 0);

	if (cf_crl_update(fx->root.cert, fx->root.key, NULL, fx->revoked.cert,
			  3650, &first, &err) != CF_OK ||
	    cf_crl_update(fx->root.cert, fx->root.key, first,
			  fx->enroller2.cert, 3650, &fx->crl, &err) != CF_OK ||
	    cf_trust_new(fx->root.cert, fx->crl, &fx->trust, &err) != CF_OK)
		die("the CRL and trust anchor", &err);
	X509_CRL_free(first);
}

const struct fuzz_fixture *fuzz_fixture(void)
{
	cf_error err;

	if (fixture_built)
		return &fixture;
	if (cf_pki_init(&err) != CF_OK)
		die("cf_pki_init", &err);
	det_counter = 0;
	if (!RAND_set_rand_method(&det_rand))
		die("installing the fixture RNG", NULL);
	build(&fixture);
	/* From here on the process draws real random numbers again. */
	if (!RAND_set_rand_method(RAND_OpenSSL()))
		die("restoring the default RNG", NULL);
	fixture_built = 1;
	return &fixture;
}

void fuzz_secmem_init(void)
{
	const char *env = getenv("COFFER_FUZZ_SECMEM");
	cf_error err;

	if (env == NULL || strcmp(env, "1") != 0)
		return;
	if (cf_secmem_init(0, NULL, &err) != CF_OK)
		die("cf_secmem_init", &err);
}
