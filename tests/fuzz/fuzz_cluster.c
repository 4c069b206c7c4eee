/*
 * fuzz_cluster.c - libFuzzer target for the cluster readers (cluster.h).
 *
 * Three readers take outside input:
 *   - cf_cluster_bundle_decode: the value of a "cluster-key/NAME" record
 *     (a bundle of PEM blocks), on the whole input;
 *   - cf_cluster_p12_import: a PKCS#12 file given to `agent cluster-join`,
 *     on the whole input, with the password FUZZ_CLUSTER_PASS;
 *   - cf_cluster_proof_check: the proof of the Coffer-Cluster header and
 *     of a cache entry, on the input's first line, checked against a
 *     cluster certificate issued here by the fixture's enroller (its key
 *     lives in this process only, so no input may pass) and, when the rest
 *     of the input is a bundle, against that bundle's certificate.
 * Seeds (seeds.c) are bundles, "PROOF\nBUNDLE" pairs whose proof is
 * valid, and PKCS#12 files (modern and legacy) with that password.
 * Besides the sanitizers the target checks:
 *   - a refusal carries its status and a sentence and returns nothing;
 *   - an accepted bundle or file passes cf_cluster_check_cert with its
 *     key; a bundle encodes again and decodes to the same certificate,
 *     chain length and key, and a proof made with its key verifies for
 *     its member and not for another;
 *   - cf_cluster_of_name, on the input as text, returns a name that is
 *     the one segment after its prefix.
 * A PKCS#12 file asking for more than FUZZ_P12_ITER iterations (but not
 * so many that the import refuses it at once) is not imported: each try
 * would cost a sizable fraction of a second, and only seeds that pass
 * the MAC reach past that count anyway.
 */
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "fixture.h"
#include "pki.h"
#include "policy.h"

/* Must match seeds.c. */
#define FUZZ_CLUSTER_PASS "fuzz cluster password"
#define FUZZ_CLUSTER_MEMBER \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define FUZZ_P12_ITER 10000

static const struct fuzz_fixture *fx;
static X509 *cluster;          /* "web", issued by the fixture's enroller */
static cf_secret *pass;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

_Noreturn static void die(const char *what, const cf_error *err)
{
	fuzz_die("fuzz_cluster", what, err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	cf_cert_spec spec = { .kind = CF_KIND_CLUSTER, .cluster = "web" };
	EVP_PKEY *key = NULL;
	X509_REQ *csr = NULL;
	cf_error err;

	(void)argc;
	(void)argv;
	fuzz_secmem_init();
	fx = fuzz_fixture();
	if (cf_key_generate(&key, &err) != CF_OK ||
	    cf_csr_new(key, "fuzz cluster", &csr, &err) != CF_OK ||
	    cf_cert_issue(fx->enroller.cert, fx->enroller.key, csr, &spec,
			  &cluster, &err) != CF_OK)
		die("issuing the cluster certificate", &err);
	pass = cf_secret_from(FUZZ_CLUSTER_PASS, strlen(FUZZ_CLUSTER_PASS));
	if (pass == NULL)
		die("the password", NULL);
	X509_REQ_free(csr);
	EVP_PKEY_free(key);
	return 0;
}

static void check_refusal(const char *call, cf_status rc, const cf_error *err)
{
	if (rc != CF_OK && (err->code != rc || err->msg[0] == '\0')) {
		fprintf(stderr, "%s: refusal %s breaks the error contract\n", call,
			cf_status_name(rc));
		abort();
	}
}

static void check_outputs(const char *call, cf_status rc, X509 *cert,
			  STACK_OF(X509) *chain, EVP_PKEY *key)
{
	if (rc != CF_OK && (cert != NULL || chain != NULL || key != NULL))
		die("a refusal returned something", NULL);
	if (rc == CF_OK && (cert == NULL || key == NULL))
		die("an acceptance returned nothing", NULL);
	if (rc == CF_OK && chain != NULL && sk_X509_num(chain) == 0)
		die("an empty chain is returned as a stack", NULL);
	(void)call;
}

/* What an accepted bundle or file must satisfy. */
static void check_accepted(X509 *cert, EVP_PKEY *key, const char *tenant)
{
	char fp[65], proof[CF_CLUSTER_PROOF_MAX + 1];
	cf_error err;

	if (cf_cluster_check_cert(cert, key, NULL, &err) != CF_OK)
		die("an accepted cluster key fails cf_cluster_check_cert", &err);
	if (cf_cert_fingerprint(cert, fp, &err) != CF_OK ||
	    cf_cluster_proof(key, tenant, fp, FUZZ_CLUSTER_MEMBER, proof,
			     &err) != CF_OK)
		die("making a proof with an accepted key", &err);
	if (cf_cluster_proof_check(cert, tenant, FUZZ_CLUSTER_MEMBER, proof,
				   &err) != CF_OK)
		die("a proof made with an accepted key does not verify", &err);
	if (cf_cluster_proof_check(cert, tenant, fp, proof, &err) !=
	    CF_ERR_SIGNATURE)
		die("a proof verifies for another member", &err);
}

static void fuzz_bundle(const uint8_t *data, size_t size, const char *tenant,
			X509 **out_cert)
{
	X509 *cert = NULL, *cert2 = NULL;
	STACK_OF(X509) *chain = NULL, *chain2 = NULL;
	EVP_PKEY *key = NULL, *key2 = NULL;
	cf_secret *again = NULL;
	cf_error err;
	cf_status rc;

	cf_error_clear(&err);
	rc = cf_cluster_bundle_decode(data, size, NULL, &cert, &chain, &key, &err);
	check_refusal("cf_cluster_bundle_decode", rc, &err);
	check_outputs("cf_cluster_bundle_decode", rc, cert, chain, key);
	if (rc != CF_OK)
		return;
	check_accepted(cert, key, tenant);
	if (cf_cluster_bundle_encode(cert, chain, key, &again, &err) != CF_OK)
		die("an accepted bundle does not encode again", &err);
	if (cf_cluster_bundle_decode(cf_secret_cdata(again), cf_secret_len(again),
				     NULL, &cert2, &chain2, &key2,
				     &err) != CF_OK)
		die("a re-encoded bundle does not decode", &err);
	if (X509_cmp(cert, cert2) != 0 || EVP_PKEY_eq(key, key2) != 1 ||
	    sk_X509_num(chain) != sk_X509_num(chain2))
		die("a bundle does not survive decode + encode + decode", NULL);
	cf_secret_free(again);
	X509_free(cert2);
	EVP_PKEY_free(key2);
	sk_X509_pop_free(chain2, X509_free);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	if (out_cert != NULL)
		*out_cert = cert;
	else
		X509_free(cert);
}

/* The MAC's iteration count, or 0 if the input is no PKCS#12 with a MAC. */
static int64_t mac_iterations(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)size);
	const ASN1_INTEGER *iter = NULL;
	int64_t n = 0;

	if (p12 != NULL && PKCS12_mac_present(p12)) {
		PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
		n = 1;
		if (iter != NULL && !ASN1_INTEGER_get_int64(&n, iter))
			n = 0;
	}
	PKCS12_free(p12);
	ERR_clear_error();
	return n;
}

static void fuzz_p12(const uint8_t *data, size_t size, const char *tenant)
{
	X509 *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	int64_t iter;
	cf_error err;
	cf_status rc;

	if (size > CF_CLUSTER_P12_MAX)
		return;
	iter = mac_iterations(data, size);
	if (iter > FUZZ_P12_ITER && iter <= CF_CLUSTER_P12_ITER_MAX)
		return;
	cf_error_clear(&err);
	rc = cf_cluster_p12_import(data, size, pass, NULL, &cert, &chain, &key,
				   &err);
	check_refusal("cf_cluster_p12_import", rc, &err);
	check_outputs("cf_cluster_p12_import", rc, cert, chain, key);
	if (rc == CF_OK)
		check_accepted(cert, key, tenant);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
}

static void fuzz_proof(const uint8_t *data, size_t size, const char *tenant)
{
	const uint8_t *nl = memchr(data, '\n', size);
	char line[CF_CLUSTER_PROOF_MAX + 16];
	size_t n;
	X509 *bundle_cert = NULL;
	cf_error err;
	cf_status rc;

	n = nl != NULL ? (size_t)(nl - data) : size;
	if (n > sizeof(line) - 1)
		n = sizeof(line) - 1;
	memcpy(line, data, n);
	line[n] = '\0';
	cf_error_clear(&err);
	rc = cf_cluster_proof_check(cluster, tenant, FUZZ_CLUSTER_MEMBER, line,
				    &err);
	check_refusal("cf_cluster_proof_check", rc, &err);
	if (rc == CF_OK)
		die("a proof verifies for a key nobody outside holds", NULL);
	if (nl == NULL)
		return;
	fuzz_bundle(nl + 1, size - (size_t)(nl + 1 - data), tenant, &bundle_cert);
	if (bundle_cert == NULL)
		return;
	cf_error_clear(&err);
	rc = cf_cluster_proof_check(bundle_cert, tenant, FUZZ_CLUSTER_MEMBER,
				    line, &err);
	check_refusal("cf_cluster_proof_check (bundle)", rc, &err);
	X509_free(bundle_cert);
}

static void fuzz_names(const uint8_t *data, size_t size)
{
	char name[CF_NAME_MAX_BYTES + 2], buf[CF_NAME_MAX_BYTES + 1];
	size_t n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;

	memcpy(name, data, n);
	name[n] = '\0';
	for (int key = 0; key <= 1; key++) {
		const char *prefix = key ? CF_CLUSTER_KEY_PREFIX
					 : CF_CLUSTER_CACHE_PREFIX;
		size_t plen = strlen(prefix), blen;

		if (!cf_cluster_of_name(name, key, buf, sizeof(buf))) {
			if (buf[0] != '\0')
				die("cf_cluster_of_name: refusal leaves a name", NULL);
			continue;
		}
		blen = strlen(buf);
		if (blen == 0 || strchr(buf, '/') != NULL ||
		    strncmp(name, prefix, plen) != 0 ||
		    strncmp(name + plen, buf, blen) != 0 ||
		    (key && name[plen + blen] != '\0') ||
		    (!key && (name[plen + blen] != '/' ||
			      name[plen + blen + 1] == '\0')) ||
		    cf_name_check("name", name, NULL) != CF_OK)
			die("cf_cluster_of_name disagrees with its definition",
			    NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *tenant = cf_trust_tenant(fx->trust);

	fuzz_bundle(data, size, tenant, NULL);
	fuzz_p12(data, size, tenant);
	fuzz_proof(data, size, tenant);
	fuzz_names(data, size);
	return 0;
}
