/*
 * seeds.c - make_seeds OUTDIR: the seed corpora of the fuzz targets.
 *
 * Writes OUTDIR/envelope, OUTDIR/cert, OUTDIR/record, OUTDIR/perms,
 * OUTDIR/token, OUTDIR/csr, OUTDIR/audit, OUTDIR/b64, OUTDIR/agent_config
 * and OUTDIR/template, one file per seed, generated in every run (run.sh
 * calls it; nothing here is checked in).  The envelope seeds are made with the fixed fixture of
 * fixture.h, so they open with the key fuzz_envelope holds: one seed per
 * refusal of docs/FORMAT.md and one that passes every check, each both as
 * a sealed AuthEnvelopedData and as the bare SignedData inside it (the
 * target tries every input both ways).  Other seeds cover each branch of
 * the certificate, record and permission parsers; the token seeds include
 * token envelopes sealed by the fixture's enroller (which fuzz_token opens
 * as that enroller), and the audit seeds a real hash chain.  The agent's
 * configuration and template seeds are one good file using every section,
 * key and action, and one per refusal.
 */
#include <errno.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "audit.h"
#include "cluster.h"
#include "envelope.h"
#include "fixture.h"
#include "pki.h"
#include "record.h"
#include "token.h"

static const char *out_dir;
static const struct fuzz_fixture *fx;
static int n_written;

static void fail(const char *what, const cf_error *err)
{
	fprintf(stderr, "make_seeds: %s%s%s\n", what,
		err != NULL ? ": " : "", err != NULL ? err->msg : "");
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void make_dir(const char *sub)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s%s%s", out_dir, sub ? "/" : "",
		 sub ? sub : "");
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		fail(path, NULL);
}

static void put(const char *target, const char *name, const void *data,
		size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
	f = fopen(path, "wb");
	if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) ||
	    fclose(f) != 0)
		fail(path, NULL);
	n_written++;
}

static void put_str(const char *target, const char *name, const char *text)
{
	put(target, name, text, strlen(text));
}

/* ----------------------------------------------------------- envelope */

static cf_secret *record(const char *tenant, const char *name,
			 uint64_t version, cf_record_type type,
			 const char *value)
{
	cf_record rec = { .version = version, .created = 1700000000, .type = type };
	cf_secret *json = NULL;
	cf_error err;

	snprintf(rec.tenant, sizeof(rec.tenant), "%s", tenant);
	snprintf(rec.name, sizeof(rec.name), "%s", name);
	rec.value = cf_secret_from(value, strlen(value));
	if (rec.value == NULL || cf_record_encode(&rec, &json, &err) != CF_OK)
		fail("encoding a record", &err);
	cf_secret_free(rec.value);
	return json;
}

static void seal_to(const char *name, const cf_secret *content,
		    X509 *const *recipients, size_t n)
{
	cf_sealer *sealer = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err;

	if (cf_sealer_new(content, &sealer, &err) != CF_OK ||
	    cf_sealer_seal_many(sealer, recipients, n, &der, &len, &err) != CF_OK)
		fail(name, &err);
	put("envelope", name, der, len);
	OPENSSL_free(der);
	cf_sealer_free(sealer);
}

/* One signed record, as bare SignedData and sealed to the fixture agent. */
static void signed_case(const char *name, const struct fuzz_identity *signer,
			X509 *extra_cert, const cf_secret *json)
{
	STACK_OF(X509) *extra = sk_X509_new_null();
	cf_secret *signed_der = NULL;
	X509 *agent = fx->agent.cert;
	char file[256];
	cf_error err;

	if (extra == NULL || (extra_cert != NULL && !sk_X509_push(extra, extra_cert)))
		fail(name, NULL);
	if (cf_envelope_sign(json, signer->cert, signer->key, extra,
			     &signed_der, &err) != CF_OK)
		fail(name, &err);
	snprintf(file, sizeof(file), "signed-%s", name);
	put("envelope", file, cf_secret_cdata(signed_der), cf_secret_len(signed_der));
	snprintf(file, sizeof(file), "sealed-%s", name);
	seal_to(file, signed_der, &agent, 1);
	cf_secret_free(signed_der);
	sk_X509_free(extra);
}

static cf_secret *cms_der(CMS_ContentInfo *cms, const char *what)
{
	unsigned char *der = NULL;
	int len = 0;
	cf_secret *out;

	if (cms == NULL || (len = i2d_CMS_ContentInfo(cms, &der)) <= 0)
		fail(what, NULL);
	out = cf_secret_from(der, (size_t)len);
	OPENSSL_free(der);
	CMS_ContentInfo_free(cms);
	if (out == NULL)
		fail(what, NULL);
	return out;
}

/* SignedData that OpenSSL makes but coffer must refuse. */
static void odd_signed(const cf_secret *json)
{
	const unsigned int flags = CMS_BINARY | CMS_PARTIAL;
	BIO *in = BIO_new_mem_buf(cf_secret_cdata(json), (int)cf_secret_len(json));
	X509 *agent = fx->agent.cert;
	CMS_ContentInfo *cms;
	cf_secret *der;

	/* eContentType id-data instead of coffer's record type */
	cms = CMS_sign(fx->writer.cert, fx->writer.key, NULL, in, CMS_BINARY);
	der = cms_der(cms, "id-data SignedData");
	put("envelope", "signed-data-type", cf_secret_cdata(der), cf_secret_len(der));
	seal_to("sealed-data-type", der, &agent, 1);
	cf_secret_free(der);

	/* two signers */
	cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
	if (cms == NULL || BIO_reset(in) != 1 ||
	    !CMS_set1_eContentType(cms, OBJ_nid2obj(cf_nid_record())) ||
	    !CMS_add1_signer(cms, fx->writer.cert, fx->writer.key, EVP_sha256(), flags) ||
	    !CMS_add1_signer(cms, fx->admin.cert, fx->admin.key, EVP_sha256(), flags) ||
	    !CMS_final(cms, in, NULL, flags))
		fail("two-signer SignedData", NULL);
	der = cms_der(cms, "two-signer SignedData");
	put("envelope", "signed-two-signers", cf_secret_cdata(der), cf_secret_len(der));
	seal_to("sealed-two-signers", der, &agent, 1);
	cf_secret_free(der);

	/* digests: SHA-1 is refused, SHA-512 accepted */
	for (int i = 0; i < 2; i++) {
		cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
		if (cms == NULL || BIO_reset(in) != 1 ||
		    !CMS_set1_eContentType(cms, OBJ_nid2obj(cf_nid_record())) ||
		    !CMS_add1_signer(cms, fx->writer.cert, fx->writer.key,
				     i == 0 ? EVP_sha1() : EVP_sha512(), flags) ||
		    !CMS_final(cms, in, NULL, flags))
			fail("SignedData with another digest", NULL);
		der = cms_der(cms, "SignedData with another digest");
		put("envelope", i == 0 ? "signed-sha1" : "signed-sha512",
		    cf_secret_cdata(der), cf_secret_len(der));
		seal_to(i == 0 ? "sealed-sha1" : "sealed-sha512", der, &agent, 1);
		cf_secret_free(der);
	}

	/* no certificates: the signer cannot be found */
	cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
	if (cms == NULL || BIO_reset(in) != 1 ||
	    !CMS_set1_eContentType(cms, OBJ_nid2obj(cf_nid_record())) ||
	    !CMS_add1_signer(cms, fx->writer.cert, fx->writer.key, EVP_sha256(),
			     flags | CMS_NOCERTS) ||
	    !CMS_final(cms, in, NULL, flags))
		fail("certificate-less SignedData", NULL);
	der = cms_der(cms, "certificate-less SignedData");
	put("envelope", "signed-no-certs", cf_secret_cdata(der), cf_secret_len(der));
	cf_secret_free(der);

	/* detached content */
	if (BIO_reset(in) != 1)
		fail("detached SignedData", NULL);
	cms = CMS_sign(fx->writer.cert, fx->writer.key, NULL, in,
		       CMS_BINARY | CMS_DETACHED);
	der = cms_der(cms, "detached SignedData");
	put("envelope", "signed-detached", cf_secret_cdata(der), cf_secret_len(der));
	cf_secret_free(der);
	BIO_free(in);
}

/* A throwaway self-signed RSA certificate: a key-transport recipient. */
static X509 *rsa_cert(EVP_PKEY **key_out)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	X509 *cert = X509_new();
	X509_NAME *name = X509_NAME_new();

	if (key == NULL || cert == NULL || name == NULL ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
					(const unsigned char *)"rsa recipient", -1, -1, 0) ||
	    !X509_set_version(cert, 2) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(cert), 7) ||
	    !X509_set_subject_name(cert, name) || !X509_set_issuer_name(cert, name) ||
	    !X509_gmtime_adj(X509_getm_notBefore(cert), 0) ||
	    !X509_gmtime_adj(X509_getm_notAfter(cert), 86400) ||
	    !X509_set_pubkey(cert, key) || !X509_sign(cert, key, EVP_sha256()))
		fail("an RSA certificate", NULL);
	X509_NAME_free(name);
	*key_out = key;
	return cert;
}

/* Envelopes made by OpenSSL's CMS_encrypt (as `openssl cms -encrypt`). */
static void openssl_envelopes(const cf_secret *content)
{
	static const struct {
		const char *name;
		const char *cipher;
		int keyid, rsa;
	} cases[] = {
		{ "openssl-gcm", "AES-256-GCM", 0, 0 },
		{ "openssl-gcm-keyid", "AES-256-GCM", 1, 0 },
		{ "openssl-gcm-rsa-and-agent", "AES-256-GCM", 0, 1 },
		{ "openssl-gcm128", "AES-128-GCM", 0, 0 },  /* below the profile */
		{ "openssl-cbc", "AES-256-CBC", 0, 0 },     /* not authenticated */
	};
	EVP_PKEY *rsa_key = NULL;
	X509 *rsa = rsa_cert(&rsa_key);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		STACK_OF(X509) *to = sk_X509_new_null();
		unsigned int flags = CMS_BINARY | (cases[i].keyid ? CMS_USE_KEYID : 0);
		BIO *in = BIO_new_mem_buf(cf_secret_cdata(content),
					  (int)cf_secret_len(content));
		CMS_ContentInfo *cms;
		cf_secret *der;

		if (to == NULL || in == NULL ||
		    (cases[i].rsa && !sk_X509_push(to, rsa)) ||
		    !sk_X509_push(to, fx->agent.cert))
			fail(cases[i].name, NULL);
		cms = CMS_encrypt(to, in, EVP_get_cipherbyname(cases[i].cipher),
				  flags);
		der = cms_der(cms, cases[i].name);
		put("envelope", cases[i].name, cf_secret_cdata(der), cf_secret_len(der));
		cf_secret_free(der);
		BIO_free(in);
		sk_X509_free(to);
	}
	X509_free(rsa);
	EVP_PKEY_free(rsa_key);
}

static void envelope_seeds(void)
{
	const char *tenant = cf_trust_tenant(fx->trust);
	char foreign_tenant[65];
	cf_secret *good = record(tenant, FUZZ_SECRET_NAME, 3, CF_TYPE_TEXT, "hunter2");
	cf_secret *json;
	cf_secret *signed_der = NULL;
	X509 *both[2] = { fx->other.cert, fx->agent.cert };
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err;

	if (cf_cert_fingerprint(fx->foreign_root.cert, foreign_tenant, &err) != CF_OK)
		fail("fingerprint", &err);

	signed_case("ok", &fx->writer, NULL, good);
	signed_case("ok-admin", &fx->admin, NULL, good);
	signed_case("ok-enroller", &fx->enroller, NULL, good);
	signed_case("reader-no-write", &fx->reader, NULL, good);
	signed_case("revoked", &fx->revoked, NULL, good);
	signed_case("expired", &fx->expired, NULL, good);
	signed_case("foreign-root", &fx->foreign_writer, fx->foreign_root.cert, good);
	signed_case("agent-signer", &fx->enrolled, fx->enroller.cert, good);
	signed_case("beyond-enroller-scope", &fx->rogue, fx->enroller.cert, good);
	signed_case("revoked-issuer", &fx->orphan, fx->enroller2.cert, good);
	signed_case("missing-intermediate", &fx->enrolled, NULL, good);

	json = record(tenant, FUZZ_SECRET_NAME, 1, CF_TYPE_TEXT, "old");
	signed_case("rollback", &fx->writer, NULL, json);
	cf_secret_free(json);
	json = record(tenant, "fuzz/db/other", 5, CF_TYPE_BINARY, "swapped");
	signed_case("swapped-name", &fx->writer, NULL, json);
	cf_secret_free(json);
	json = record(foreign_tenant, FUZZ_SECRET_NAME, 5, CF_TYPE_FILE, "x");
	signed_case("other-tenant", &fx->writer, NULL, json);
	cf_secret_free(json);
	json = record(tenant, "prod/db/password", 5, CF_TYPE_TEMPLATE, "{{x}}");
	signed_case("no-permission-on-name", &fx->writer, NULL, json);
	cf_secret_free(json);
	json = cf_secret_from("{\"v\":1,\"tenant\":\"\"}", 19);
	signed_case("bad-record", &fx->writer, NULL, json);
	cf_secret_free(json);

	odd_signed(good);

	/* the record sealed without a signature */
	{
		X509 *agent = fx->agent.cert;

		seal_to("sealed-unsigned", good, &agent, 1);
		seal_to("sealed-not-for-us", good, &fx->other.cert, 1);
	}
	if (cf_envelope_sign(good, fx->writer.cert, fx->writer.key, NULL,
			     &signed_der, &err) != CF_OK)
		fail("signing", &err);
	seal_to("sealed-two-recipients", signed_der, both, 2);
	openssl_envelopes(signed_der);

	/* damaged copies of the good envelope */
	{
		cf_sealer *sealer = NULL;

		if (cf_sealer_new(signed_der, &sealer, &err) != CF_OK ||
		    cf_sealer_seal(sealer, fx->agent.cert, &der, &len, &err) != CF_OK)
			fail("sealing", &err);
		cf_sealer_free(sealer);
	}
	put("envelope", "damaged-truncated", der, len / 2);
	put("envelope", "damaged-short-header", der, 3);
	put("envelope", "damaged-empty", der, 0);
	{
		unsigned char *copy = OPENSSL_malloc(len + 1);

		if (copy == NULL)
			fail("copy", NULL);
		memcpy(copy, der, len);
		copy[len] = 0;
		put("envelope", "damaged-trailing-byte", copy, len + 1);
		copy[len - 1] ^= 0x01; /* the GCM tag */
		put("envelope", "damaged-tag", copy, len);
		copy[len - 1] ^= 0x01;
		copy[len / 3] ^= 0x40;
		put("envelope", "damaged-middle", copy, len);
		OPENSSL_free(copy);
	}
	OPENSSL_free(der);
	cf_secret_free(signed_der);
	cf_secret_free(good);
}

/* --------------------------------------------------------------- cert */

/*
 * Writes one object as two seeds of target, NAME.pem and NAME.der (a
 * der_len <= 0 means its encoding failed), and frees both buffers.
 */
static void put_pem_der(const char *target, const char *name,
			unsigned char *pem, size_t pem_len, unsigned char *der,
			int der_len)
{
	char file[256];

	if (der_len <= 0)
		fail(name, NULL);
	snprintf(file, sizeof(file), "%s.pem", name);
	put(target, file, pem, pem_len);
	snprintf(file, sizeof(file), "%s.der", name);
	put(target, file, der, (size_t)der_len);
	OPENSSL_free(pem);
	OPENSSL_free(der);
}

static void put_cert(const char *name, X509 *cert)
{
	unsigned char *pem = NULL, *der = NULL;
	size_t pem_len = 0;
	int der_len;
	cf_error err;

	if (cf_cert_to_pem(cert, &pem, &pem_len, &err) != CF_OK)
		fail(name, &err);
	der_len = i2d_X509(cert, &der);
	put_pem_der("cert", name, pem, pem_len, der, der_len);
}

/* A copy of the writer's certificate with one extension added raw. */
static void odd_extension(const char *name, int nid, const unsigned char *der,
			  int der_len)
{
	X509 *cert = X509_dup(fx->writer.cert);
	ASN1_OCTET_STRING *data = ASN1_OCTET_STRING_new();
	X509_EXTENSION *ext = NULL;

	if (cert == NULL || data == NULL ||
	    !ASN1_OCTET_STRING_set(data, der, der_len) ||
	    (ext = X509_EXTENSION_create_by_NID(NULL, nid, 0, data)) == NULL ||
	    !X509_add_ext(cert, ext, -1) ||
	    !X509_sign(cert, fx->root.key, EVP_sha256()))
		fail(name, NULL);
	put_cert(name, cert);
	X509_EXTENSION_free(ext);
	ASN1_OCTET_STRING_free(data);
	X509_free(cert);
}

static void cert_seeds(void)
{
	static const unsigned char kind_root[] = { 0x0c, 4, 'r', 'o', 'o', 't' };
	static const unsigned char ia5_perms[] = {
		0x16, 13, 's', 'e', 'c', 'r', 'e', 't', '.', 'r', 'e', 'a', 'd',
		':', '*',
	};
	static const unsigned char nul_perms[] = {
		0x0c, 6, 'a', 'd', 'm', 'i', 'n', 0,
	};
	static const unsigned char bad_perms[] = {
		0x0c, 11, 's', 'u', 'd', 'o', ':', 'e', 'v', 'e', 'r', 'y', '!',
	};
	static const unsigned char trailing[] = { 0x0c, 1, 'x', 0x00 };
	const struct { const char *name; const struct fuzz_identity *id; } ids[] = {
		{ "root", &fx->root }, { "agent", &fx->agent },
		{ "writer", &fx->writer }, { "admin", &fx->admin },
		{ "expired", &fx->expired }, { "enroller", &fx->enroller },
		{ "enrolled", &fx->enrolled }, { "rogue", &fx->rogue },
		{ "orphan", &fx->orphan }, { "foreign-root", &fx->foreign_root },
	};
	unsigned char *buf = NULL, *der = NULL, *a = NULL, *b = NULL, *c = NULL;
	size_t len = 0, la = 0, lb = 0, lc = 0;
	X509_REQ *csr = NULL;
	cf_error err;
	int der_len;

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		put_cert(ids[i].name, ids[i].id->cert);

	/* chains: leaf, intermediate, root in one PEM file */
	if (cf_cert_to_pem(fx->enrolled.cert, &a, &la, &err) != CF_OK ||
	    cf_cert_to_pem(fx->enroller.cert, &b, &lb, &err) != CF_OK ||
	    cf_cert_to_pem(fx->root.cert, &c, &lc, &err) != CF_OK)
		fail("chain", &err);
	buf = OPENSSL_malloc(la + lb + lc + 64);
	if (buf == NULL)
		fail("chain", NULL);
	memcpy(buf, a, la);
	memcpy(buf + la, b, lb);
	memcpy(buf + la + lb, c, lc);
	put("cert", "chain-enrolled.pem", buf, la + lb + lc);
	memcpy(buf, "junk before\n", 12);
	memcpy(buf + 12, a, la);
	memcpy(buf + 12 + la, "-----BEGIN CERTIFICATE-----\nAAAA\n", 33);
	put("cert", "junk-around.pem", buf, 12 + la + 33);
	OPENSSL_free(buf);
	OPENSSL_free(a);
	OPENSSL_free(b);
	OPENSSL_free(c);

	odd_extension("kind-twice", cf_nid_kind(), kind_root, sizeof(kind_root));
	odd_extension("perms-ia5string", cf_nid_perms(), ia5_perms, sizeof(ia5_perms));
	odd_extension("perms-nul", cf_nid_perms(), nul_perms, sizeof(nul_perms));
	odd_extension("perms-bad-rule", cf_nid_perms(), bad_perms, sizeof(bad_perms));
	odd_extension("groups-trailing", cf_nid_groups(), trailing, sizeof(trailing));
	odd_extension("cluster", cf_nid_cluster(), trailing, 3);

	if (cf_crl_to_pem(fx->crl, &buf, &len, &err) != CF_OK)
		fail("crl", &err);
	der = NULL;
	der_len = i2d_X509_CRL(fx->crl, &der);
	put_pem_der("cert", "crl", buf, len, der, der_len);

	buf = NULL;
	if (cf_csr_new(fx->agent.key, "web-1.example", &csr, &err) != CF_OK ||
	    cf_csr_to_pem(csr, &buf, &len, &err) != CF_OK)
		fail("csr", &err);
	der = NULL;
	der_len = i2d_X509_REQ(csr, &der);
	put_pem_der("cert", "csr", buf, len, der, der_len);
	X509_REQ_free(csr);
}

/* ------------------------------------------------------------- record */

static void record_seeds(void)
{
	static const char *const raw[] = {
		"{}",
		"[]",
		"null",
		"{\"v\":1}",
		"{\"v\":1,\"v\":1}",
		("{\"v\":2,\"tenant\":\"00\",\"name\":\"a\",\"version\":1,"
		 "\"created\":0,\"type\":\"text\",\"value\":\"\"}"),
		"{\"v\":1,\"extra\":true}",
		"{\"v\":1e400}",
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
		"{\"v\":1,\"name\":\"a\\u0000b\"}",
		"\xef\xbb\xbf{\"v\":1}",
		"{\"value\":\"\xff\xfe\"}",
	};
	static const char *const tenant =
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	static const struct {
		const char *file, *name, *value;
		uint64_t version;
		cf_record_type type;
	} good[] = {
		{ "text", "prod/db/password", "hunter2", 1, CF_TYPE_TEXT },
		{ "binary", "a", "\x01\x02\x03\xff", 9007199254740991ull, CF_TYPE_BINARY },
		{ "file", "etc/app.conf", "key = value\n", 7, CF_TYPE_FILE },
		{ "template", "t/x.tmpl", "{{ .db }}", 2, CF_TYPE_TEMPLATE },
		{ "empty", "e", "", 1, CF_TYPE_TEXT },
	};
	char name[CF_NAME_MAX_BYTES + 1];
	char file[64];

	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		snprintf(file, sizeof(file), "raw-%02zu", i);
		put_str("record", file, raw[i]);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cf_secret *json = record(tenant, good[i].name, good[i].version,
					 good[i].type, good[i].value);

		snprintf(file, sizeof(file), "good-%s", good[i].file);
		put("record", file, cf_secret_cdata(json), cf_secret_len(json));
		cf_secret_free(json);
	}
	memset(name, 'n', CF_NAME_MAX_BYTES);
	name[CF_NAME_MAX_BYTES] = '\0';
	{
		cf_secret *json = record(tenant, name, 1, CF_TYPE_TEXT, "v");

		put("record", "good-longest-name", cf_secret_cdata(json),
		    cf_secret_len(json));
		cf_secret_free(json);
	}
	/* each field wrong in turn, the rest valid */
#define R(v, t, n, ver, c, ty, val) \
	"{\"v\":" v ",\"tenant\":\"" t "\",\"name\":\"" n "\",\"version\":" ver \
	",\"created\":" c ",\"type\":\"" ty "\",\"value\":\"" val "\"}"
#define T "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	put_str("record", "bad-tenant-case", R("1", "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "a", "1", "0", "text", "aGk="));
	put_str("record", "bad-tenant-short", R("1", "0123", "a", "1", "0", "text", "aGk="));
	put_str("record", "bad-name-dotdot", R("1", T, "a/../b", "1", "0", "text", "aGk="));
	put_str("record", "bad-name-nul", R("1", T, "a\\u0000b", "1", "0", "text", "aGk="));
	put_str("record", "bad-version-zero", R("1", T, "a", "0", "0", "text", "aGk="));
	put_str("record", "bad-version-2^53", R("1", T, "a", "9007199254740992", "0", "text", "aGk="));
	put_str("record", "bad-version-float", R("1", T, "a", "1.0", "0", "text", "aGk="));
	put_str("record", "bad-created-negative", R("1", T, "a", "1", "-1", "text", "aGk="));
	put_str("record", "bad-type", R("1", T, "a", "1", "0", "blob", "aGk="));
	put_str("record", "bad-value-length", R("1", T, "a", "1", "0", "text", "aGk"));
	put_str("record", "bad-value-space", R("1", T, "a", "1", "0", "text", "aG k"));
	put_str("record", "bad-value-chars", R("1", T, "a", "1", "0", "text", "a*k="));
	put_str("record", "odd-value-padding", R("1", T, "a", "1", "0", "text", "===="));
	put_str("record", "odd-value-inner-pad", R("1", T, "a", "1", "0", "text", "aG=k"));
	put_str("record", "odd-value-nul", R("1", T, "a", "1", "0", "text", "aGk\\u0000"));
#undef R
#undef T
}

/* -------------------------------------------------------------- perms */

/* Rule text, then NUL-separated names and patterns (see fuzz_perms.c). */
static void perms_seed(const char *file, const char *text,
		       const char *const *names, size_t n)
{
	char buf[8192];
	size_t len = strlen(text);

	if (len >= sizeof(buf))
		fail(file, NULL);
	memcpy(buf, text, len);
	for (size_t i = 0; i < n; i++) {
		size_t nlen = strlen(names[i]);

		if (len + 1 + nlen >= sizeof(buf))
			fail(file, NULL);
		buf[len++] = '\0';
		memcpy(buf + len, names[i], nlen);
		len += nlen;
	}
	put("perms", file, buf, len);
}

static void perms_seeds(void)
{
	static const char *const names[] = {
		"prod/db/password", "prod/*", "prod/**", "web", "ops/ax",
		"a?c", "**", "x", "prod/db/", "",
	};
	static const char *const globs[] = {
		"*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"**/x/**", "a/b/c/x/d", "***", "?/?", "a/b",
	};
	char many[4096];
	size_t pos = 0;

	perms_seed("typical",
		   "secret.read:prod/*\nsecret.write:prod/db/**\n"
		   "agent.enroll:web\nadmin:ops/?x\n", names,
		   sizeof(names) / sizeof(names[0]));
	perms_seed("crlf", "secret.read:a\r\n\r\n\nsecret.write:b*\r\n", names, 4);
	perms_seed("every-verb",
		   "secret.read:a\nsecret.write:b\nagent.enroll:c\n"
		   "agent.manage:d\ntoken.create:e\naudit.read:f\nadmin:g",
		   names, 3);
	perms_seed("star-star", "agent.enroll:**", names, 7);
	perms_seed("globs", "secret.read:**/x/**\nsecret.write:*a*a*a*a*a*a*b",
		   globs, sizeof(globs) / sizeof(globs[0]));
	perms_seed("bad-verb", "secret.delete:x", names, 1);
	perms_seed("no-colon", "admin", names, 1);
	perms_seed("empty-scope", "admin:", names, 1);
	perms_seed("bad-scope-char", "admin:a b", names, 1);
	perms_seed("empty", "", names, 2);
	while (pos + 8 < sizeof(many) && pos < 257 * 8) {
		memcpy(many + pos, "admin:a\n", 8);
		pos += 8;
	}
	many[pos] = '\0';
	perms_seed("too-many-rules", many, names, 1);
}

/* -------------------------------------------------------------- token */

/* Must match fuzz_token.c. */
#define FUZZ_TOKEN_ID "00112233445566778899aabbccddeeff"
#define B64_SECRET "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde"
#define HEX_SECRET \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static void token_envelope(const char *file, const char *id,
			   const struct fuzz_identity *sealer, const char *tenant)
{
	cf_token *tok = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err;

	if (cf_token_parse((const unsigned char *)FUZZ_TOKEN_ID "." B64_SECRET,
			   strlen(FUZZ_TOKEN_ID "." B64_SECRET), &tok, &err) != CF_OK)
		fail(file, &err);
	memcpy(tok->id, id, CF_TOKEN_ID_HEX + 1);
	if (cf_token_seal(tok, tenant, sealer->cert, sealer->key, NULL, &der,
			  &len, &err) != CF_OK)
		fail(file, &err);
	put("token", file, der, len);
	OPENSSL_free(der);
	cf_token_free(tok);
}

static void token_seeds(void)
{
	static const struct {
		const char *file, *text;
	} texts[] = {
		{ "b64", FUZZ_TOKEN_ID "." B64_SECRET },
		{ "b64-lf", FUZZ_TOKEN_ID "." B64_SECRET "\n" },
		{ "b64-crlf", FUZZ_TOKEN_ID "." B64_SECRET "\r\n" },
		{ "hex", FUZZ_TOKEN_ID "." HEX_SECRET },
		{ "hex-lf", FUZZ_TOKEN_ID "." HEX_SECRET "\n" },
		{ "bad-two-lf", FUZZ_TOKEN_ID "." B64_SECRET "\n\n" },
		{ "bad-upper-id", "00112233445566778899AABBCCDDEEFF." B64_SECRET },
		{ "bad-no-dot", FUZZ_TOKEN_ID B64_SECRET },
		{ "bad-short", FUZZ_TOKEN_ID "." "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd" },
		{ "bad-padded", FUZZ_TOKEN_ID "." B64_SECRET "=" },
		{ "bad-std-b64", FUZZ_TOKEN_ID "." "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/abcde" },
		{ "bad-upper-hex", FUZZ_TOKEN_ID "." "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff" },
		{ "bad-long", FUZZ_TOKEN_ID "." HEX_SECRET "0" },
		{ "bad-empty", "" },
		{ "bad-dot", "." },
	};
	cf_token *tok = NULL;
	cf_secret *text = NULL;
	cf_error err;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		put_str("token", texts[i].file, texts[i].text);
	if (cf_token_generate(&tok, &err) != CF_OK ||
	    cf_token_text(tok, &text, &err) != CF_OK)
		fail("token", &err);
	put("token", "generated", cf_secret_cdata(text), cf_secret_len(text));
	cf_secret_free(text);
	cf_token_free(tok);
	/* Envelopes the enroller opens, and ones it must refuse. */
	token_envelope("env-good", FUZZ_TOKEN_ID, &fx->enroller,
		       cf_trust_tenant(fx->trust));
	token_envelope("env-other-id", "ffeeddccbbaa99887766554433221100",
		       &fx->enroller, cf_trust_tenant(fx->trust));
	token_envelope("env-other-tenant", FUZZ_TOKEN_ID, &fx->enroller,
		       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	token_envelope("env-not-ours", FUZZ_TOKEN_ID, &fx->agent,
		       cf_trust_tenant(fx->trust));
}

/* ---------------------------------------------------------------- csr */

static void put_csr(const char *name, X509_REQ *csr)
{
	unsigned char *pem = NULL, *der = NULL;
	size_t pem_len = 0;
	int der_len;
	cf_error err;

	if (cf_csr_to_pem(csr, &pem, &pem_len, &err) != CF_OK)
		fail(name, &err);
	der_len = i2d_X509_REQ(csr, &der);
	put_pem_der("csr", name, pem, pem_len, der, der_len);
}

static void csr_seeds(void)
{
	char cn[CF_CN_MAX_BYTES + 1];
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *ext;
	X509_REQ *csr = NULL;
	EVP_PKEY *p384;
	cf_error err;

	if (cf_csr_new(fx->agent.key, "web-1.example", &csr, &err) != CF_OK)
		fail("csr", &err);
	put_csr("agent", csr);
	/* Asks for CA:TRUE and a coffer permission: the issuer must not copy. */
	exts = sk_X509_EXTENSION_new_null();
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints,
				  "critical,CA:TRUE");
	if (exts == NULL || ext == NULL || !sk_X509_EXTENSION_push(exts, ext) ||
	    !X509_REQ_add_extensions(csr, exts) ||
	    !X509_REQ_sign(csr, fx->agent.key, EVP_sha256()))
		fail("csr with extensions", NULL);
	put_csr("asks-ca", csr);
	/* A public key that did not sign: the self-signature is bad. */
	if (!X509_REQ_set_pubkey(csr, fx->other.key))
		fail("csr with another key", NULL);
	put_csr("bad-signature", csr);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(csr);

	memset(cn, 'n', CF_CN_MAX_BYTES);
	cn[CF_CN_MAX_BYTES] = '\0';
	if (cf_csr_new(fx->other.key, cn, &csr, &err) != CF_OK)
		fail("csr long cn", &err);
	put_csr("longest-cn", csr);
	X509_REQ_free(csr);
	if (cf_csr_new(fx->rogue.key, "a", &csr, &err) != CF_OK)
		fail("csr short cn", &err);
	put_csr("short-cn", csr);
	X509_REQ_free(csr);

	/* Not P-256: refused before the signature. */
	p384 = EVP_EC_gen("secp384r1");
	csr = X509_REQ_new();
	if (p384 == NULL || csr == NULL || !X509_REQ_set_pubkey(csr, p384) ||
	    !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(csr), "CN",
					MBSTRING_UTF8,
					(const unsigned char *)"p384", -1, -1, 0) ||
	    !X509_REQ_sign(csr, p384, EVP_sha384()))
		fail("csr p384", NULL);
	put_csr("p384", csr);
	X509_REQ_free(csr);
	EVP_PKEY_free(p384);
	put_str("csr", "junk.pem",
		"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n"
		"-----END CERTIFICATE REQUEST-----\n");
}

/* -------------------------------------------------------------- audit */

static void audit_entry_fill(cf_audit_entry *e, int64_t seq, const char *prev,
			     const char *action, const char *object,
			     int64_t bytes)
{
	cf_error err;

	memset(e, 0, sizeof(*e));
	e->seq = seq;
	e->time = 1700000000 + seq;
	snprintf(e->tenant, sizeof(e->tenant), "%s", cf_trust_tenant(fx->trust));
	if (cf_cert_fingerprint(fx->writer.cert, e->actor, &err) != CF_OK)
		fail("audit actor", &err);
	snprintf(e->subject, sizeof(e->subject), "CN=writer,O=Fuzz Org");
	snprintf(e->source, sizeof(e->source), seq % 2 ? "127.0.0.1:50312"
						       : "[::1]:4431");
	snprintf(e->action, sizeof(e->action), "%s", action);
	snprintf(e->object, sizeof(e->object), "%s", object);
	e->bytes = bytes;
	snprintf(e->prev, sizeof(e->prev), "%s", prev);
	if (cf_audit_hash(e, e->hash, &err) != CF_OK)
		fail("audit hash", &err);
}

static void put_json(const char *target, const char *file, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);

	if (text == NULL)
		fail(file, NULL);
	put_str(target, file, text);
	free(text);
	json_decref(j);
}

static json_t *entry_json(const cf_audit_entry *e)
{
	json_t *j = NULL;
	cf_error err;

	if (cf_audit_to_json(e, &j, &err) != CF_OK)
		fail("audit entry", &err);
	return j;
}

static void audit_seeds(void)
{
	static const struct {
		const char *action, *object;
		int64_t bytes;
	} chain[] = {
		{ "tenant.add", "", 612 },
		{ "secret.put", "fuzz/db/password", 1830 },
		{ "secret.read", "fuzz/db/password,fuzz/web/key", 3660 },
		{ "enroll.request", "0123456789abcdef", 0 },
		{ "secret.delete", "fuzz/db/\xc3\xa9t\xc3\xa9", -1 },
	};
	cf_audit_entry e[5], bad;
	json_t *list = json_array(), *j;
	const char *prev = cf_audit_genesis;

	for (size_t i = 0; i < 5; i++) {
		audit_entry_fill(&e[i], (int64_t)i + 1, prev, chain[i].action,
				 chain[i].object, chain[i].bytes);
		prev = e[i].hash;
		json_array_append_new(list, entry_json(&e[i]));
	}
	put_json("audit", "page", json_pack("{s:O,s:b}", "entries", list,
					    "more", 0));
	put_json("audit", "array", json_incref(list));
	put_json("audit", "one", entry_json(&e[1]));
	put_json("audit", "empty-page", json_pack("{s:[],s:b}", "entries",
						  "more", 0));
	/* A removed entry: the link of the next one is broken. */
	j = json_deep_copy(list);
	json_array_remove(j, 2);
	put_json("audit", "removed", json_pack("{s:o,s:b}", "entries", j,
					       "more", 1));
	/* An edited entry: its hash no longer matches. */
	bad = e[1];
	bad.bytes = 1;
	j = json_deep_copy(list);
	json_array_set_new(j, 1, entry_json(&bad));
	put_json("audit", "edited", json_pack("{s:o}", "entries", j));
	/* Extremes that must read and write back. */
	bad = e[0];
	bad.seq = INT64_MAX;
	bad.time = INT64_MIN;
	bad.bytes = INT64_MIN;
	memset(bad.object, 'o', sizeof(bad.object) - 1);
	memset(bad.subject, 's', sizeof(bad.subject) - 1);
	memset(bad.source, 'p', sizeof(bad.source) - 1);
	memset(bad.action, 'a', sizeof(bad.action) - 1);
	put_json("audit", "extremes", entry_json(&bad));
	/* Malformed ones, each wrong in one field. */
	j = entry_json(&e[0]);
	json_object_set_new(j, "seq", json_integer(0));
	put_json("audit", "bad-seq", j);
	j = entry_json(&e[0]);
	json_object_set_new(j, "hash", json_string("ABC"));
	put_json("audit", "bad-hash", j);
	j = entry_json(&e[0]);
	json_object_set_new(j, "object", json_stringn("a\0b", 3));
	put_json("audit", "bad-nul", j);
	j = entry_json(&e[0]);
	json_object_del(j, "prev");
	put_json("audit", "bad-missing", j);
	j = entry_json(&e[0]);
	json_object_set_new(j, "time", json_real(1.5));
	put_json("audit", "bad-time", j);
	put_str("audit", "dup-key", "{\"seq\":1,\"seq\":2}");
	json_decref(list);
}

/* ------------------------------------------------------------- b64 */

/* The RFC 4648 examples, and the ways base64 goes wrong. */
static void b64_seeds(void)
{
	static const char *const texts[] = {
		"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy",
		"Zh==", "Zm9=", "Zg", "Z===", "Zg=a", "Zm9v\n", "Zm 9v",
		"-_-_", "+/+/", "AAAA", "////",
	};
	char name[32];

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		snprintf(name, sizeof(name), "text-%zu", i);
		put_str("b64", name, texts[i]);
	}
}

/* ------------------------------------------------------- agent_config */

static void agent_config_seeds(void)
{
	static const struct {
		const char *name;
		const char *text;
	} seeds[] = {
		{ "full",
		  "# every section and key\n"
		  "[server]\n"
		  "url = https://coffer.example:8443\n"
		  "ca = /etc/coffer/server-ca.pem\n"
		  "root = /etc/coffer/root.pem\n"
		  "\n"
		  "[agent]\n"
		  "reload_timeout = 30\n"
		  "wait = 55\n"
		  "\n"
		  "[file prod/db/password]\n"
		  "path = /run/app/db_password\n"
		  "mode = 0400\n"
		  "owner = root\n"
		  "group = root\n"
		  "reload = /usr/bin/systemctl reload app\n"
		  "\n"
		  "[template /etc/app/app.conf]\n"
		  "source = /etc/coffer/app.conf.tmpl\n"
		  "mode = 0640\n"
		  "owner = 0\n"
		  "group = 0\n"
		  "reload = /bin/sh -c 'kill -HUP 1' \"a \\\"b\\\\\"\n" },
		{ "crlf-comments", "; c\r\n  # c\r\n[ server ]\r\n\turl=https://h:1\r\n"
		  "[file a/b]\r\npath = /x\r\n" },
		{ "minimal", "[server]\nurl = https://h\n" },
		{ "unknown-section", "[server]\nurl = https://h\n[secret a]\n" },
		{ "unknown-key", "[server]\nurl = https://h\nport = 1\n" },
		{ "key-twice", "[server]\nurl = https://h\nurl = https://i\n" },
		{ "section-twice", "[server]\nurl = https://h\n[agent]\n[agent]\n" },
		{ "no-server", "[agent]\nwait = 5\n" },
		{ "http", "[server]\nurl = http://h\n" },
		{ "range", "[server]\nurl = https://h\n[agent]\nwait = 61\n"
		  "reload_timeout = 0\n" },
		{ "bad-mode", "[server]\nurl = https://h\n[file a]\npath = /a\n"
		  "mode = 4666\n" },
		{ "bad-owner", "[server]\nurl = https://h\n[file a]\npath = /a\n"
		  "owner = nobody-here\ngroup = 99999999999\n" },
		{ "relative", "[server]\nurl = https://h\n[template etc/x]\n"
		  "source = ./x\n" },
		{ "dup-path", "[server]\nurl = https://h\n[file a]\npath = /x\n"
		  "[template /x]\nsource = /s\n" },
		{ "bad-name", "[server]\nurl = https://h\n[file ../a]\npath = /x\n" },
		{ "bad-reload", "[server]\nurl = https://h\n[file a]\npath = /x\n"
		  "reload = rel 'open\n" },
		{ "no-path", "[server]\nurl = https://h\n[file a]\n[template /t]\n" },
		{ "no-equals", "[server]\nurl\n" },
		{ "control", "[server]\nurl = https://h\x01\n" },
		{ "argv", "/bin/x a'b c'\"d\\\"e\" '' \"\"\n/bin/y \"unclosed\n" },
	};

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		put_str("agent_config", seeds[i].name, seeds[i].text);
}

/* ----------------------------------------------------------- template */

/*
 * fuzz_template's lookup knows names by their first byte (a, p: plain;
 * e, j: needs escaping; b: not UTF-8; B: 512 KiB; z: empty).
 */
static void template_seeds(void)
{
	static const struct {
		const char *name;
		const char *text;
	} seeds[] = {
		{ "full", "password = {{ secret \"prod/db/password\" }}\n"
		  "{\"token\": {{ secret \"escape/token\" | json }},\n"
		  " \"empty\": {{secret\"z\"|json}}}\n"
		  "literal {{ \"{{\" }} and {{ \"q\\\"\\\\\" }} and }} and {\n" },
		{ "missing", "{{ secret \"a\" }}{{ secret \"missing/x\" }}\n" },
		{ "binary-json", "{{ secret \"b\" }} {{ secret \"b\" | json }}\n" },
		{ "too-large", "{{ secret \"B\" }}{{ secret \"B\" }}{{ secret \"B\" }}"
		  "{{ secret \"B\" }}{{ secret \"B\" }}{{ secret \"B\" }}"
		  "{{ secret \"B\" }}{{ secret \"B\" }}{{ secret \"B\" }}\n" },
		{ "json-grows", "{{ secret \"B\" | json }}{{ secret \"e\" | json }}\n" },
		{ "unclosed", "a\nb {{ secret \"a\"\n" },
		{ "unknown-action", "{{ range \"a\" }}" },
		{ "unknown-filter", "{{ secret \"a\" | base64 }}" },
		{ "bad-name", "{{ secret \"../a\" }}" },
		{ "bad-escape", "{{ \"\\n\" }}" },
		{ "unclosed-string", "{{ \"abc }}" },
		{ "no-quotes", "{{ secret a }}" },
	};

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		put_str("template", seeds[i].name, seeds[i].text);
}

/* ------------------------------------------------------------ command */

/* The first byte picks the parser: '0' a command, '1' a result. */
static void command_seeds(void)
{
	static const struct { const char *name, *text; } seeds[] = {
		{ "command", "0{\"v\":1,\"tenant\":\"aaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"id\":\"0123456789"
		  "abcdef0123456789abcdef\",\"action\":\"restart-app\",\"args\":"
		  "[\"--now\",\"x y\"],\"issued\":1800000000,\"expires\":"
		  "1800000030,\"targets\":[\"group:web\",\"agent:db-1\"]}" },
		{ "command-bare", "0{\"v\":1,\"tenant\":\"aaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"id\":\"01234"
		  "56789abcdef0123456789abcdef\",\"action\":\"status\",\"args\":"
		  "[],\"issued\":1,\"expires\":2,\"targets\":[\"agent:a\"]}" },
		{ "result", "1{\"v\":1,\"tenant\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"id\":\"0123456789abcdef"
		  "0123456789abcdef\",\"agent\":\"web-1\",\"status\":\"failed\","
		  "\"code\":\"\",\"exit\":3,\"signal\":0,\"timed_out\":false,"
		  "\"reason\":\"\",\"stdout\":\"aGVsbG8K\",\"stdout_cut\":false,"
		  "\"stderr\":\"\",\"stderr_cut\":true,\"received\":1,\"started\":"
		  "2,\"finished\":3}" },
		{ "result-refused", "1{\"v\":1,\"tenant\":\"aaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"id\":\"01234"
		  "56789abcdef0123456789abcdef\",\"agent\":\"web-1\",\"status\":"
		  "\"refused\",\"code\":\"CF_ERR_REPLAY\",\"exit\":-1,\"signal\":0,"
		  "\"timed_out\":false,\"reason\":\"seen before\",\"stdout\":\"\","
		  "\"stdout_cut\":false,\"stderr\":\"\",\"stderr_cut\":false,"
		  "\"received\":1,\"started\":0,\"finished\":0}" },
	};

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		put_str("command", seeds[i].name, seeds[i].text);
}

/* ---------------------------------------------------------------- ack */

static void ack_seeds(void)
{
	static const struct { const char *name, *text; } seeds[] = {
		{ "ok", "{\"v\":1,\"tenant\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"agent\":\"web-1\",\"name\":"
		  "\"prod/db/password\",\"version\":7,\"time\":1800000000,"
		  "\"result\":\"ok\",\"reason\":\"\"}" },
		{ "failed", "{\"v\":1,\"tenant\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"agent\":\"db-2\","
		  "\"name\":\"a\",\"version\":1,\"time\":0,\"result\":\"failed\","
		  "\"reason\":\"/etc/x: Not a directory \\u00e9\"}" },
		{ "unknown-field", "{\"v\":1,\"tenant\":\"aaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"agent\":\"w\","
		  "\"name\":\"a\",\"version\":1,\"time\":0,\"result\":\"ok\","
		  "\"reason\":\"\",\"value\":\"c2VjcmV0\"}" },
	};

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		put_str("ack", seeds[i].name, seeds[i].text);
}

/* ------------------------------------------------------------ cluster */

/* Must match fuzz_cluster.c. */
#define FUZZ_CLUSTER_PASS "fuzz cluster password"
#define FUZZ_CLUSTER_MEMBER \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* A PKCS#12 made with OpenSSL's calls, few iterations so fuzzing is fast. */
static void cluster_p12(const char *file, X509 *cert, EVP_PKEY *key,
			STACK_OF(X509) *chain, int pbe, const EVP_MD *mac_md)
{
	PKCS12 *p12 = PKCS12_create(FUZZ_CLUSTER_PASS, "coffer cluster web",
				    key, cert, chain, pbe, pbe, 2048, -1, 0);
	unsigned char *der = NULL;
	int len = 0;

	if (p12 == NULL ||
	    (mac_md != NULL &&
	     !PKCS12_set_mac(p12, FUZZ_CLUSTER_PASS, -1, NULL, 0, 2048,
			     mac_md)) ||
	    (len = i2d_PKCS12(p12, &der)) <= 0)
		fail(file, NULL);
	put("cluster", file, der, (size_t)len);
	OPENSSL_free(der);
	PKCS12_free(p12);
}

static void cluster_seeds(void)
{
	cf_cert_spec spec = { .kind = CF_KIND_CLUSTER, .cluster = "web" };
	STACK_OF(X509) *chain = sk_X509_new_null();
	char fp[65], proof[CF_CLUSTER_PROOF_MAX + 1];
	cf_secret *bundle = NULL, *alone = NULL, *pair = NULL;
	EVP_PKEY *key = NULL;
	X509_REQ *csr = NULL;
	X509 *cert = NULL;
	cf_error err;

	if (chain == NULL || !sk_X509_push(chain, fx->enroller.cert) ||
	    cf_key_generate(&key, &err) != CF_OK ||
	    cf_csr_new(key, "cluster seed", &csr, &err) != CF_OK ||
	    cf_cert_issue(fx->enroller.cert, fx->enroller.key, csr, &spec, &cert,
			  &err) != CF_OK ||
	    cf_cluster_bundle_encode(cert, chain, key, &bundle, &err) != CF_OK ||
	    cf_cluster_bundle_encode(cert, NULL, key, &alone, &err) != CF_OK ||
	    cf_cert_fingerprint(cert, fp, &err) != CF_OK ||
	    cf_cluster_proof(key, cf_trust_tenant(fx->trust), fp,
			     FUZZ_CLUSTER_MEMBER, proof, &err) != CF_OK ||
	    (pair = cf_secret_from(proof, strlen(proof))) == NULL ||
	    cf_secret_append(pair, "\n", 1, &err) != CF_OK ||
	    cf_secret_append(pair, cf_secret_cdata(bundle),
			     cf_secret_len(bundle), &err) != CF_OK)
		fail("cluster", &err);
	put("cluster", "bundle", cf_secret_cdata(bundle), cf_secret_len(bundle));
	put("cluster", "bundle-alone", cf_secret_cdata(alone),
	    cf_secret_len(alone));
	put("cluster", "proof-bundle", cf_secret_cdata(pair),
	    cf_secret_len(pair));
	put_str("cluster", "proof-only", proof);
	cluster_p12("p12", cert, key, chain, NID_aes_256_cbc, EVP_sha256());
	cluster_p12("p12-alone", cert, key, NULL, NID_aes_256_cbc, EVP_sha256());
	cluster_p12("p12-legacy", cert, key, NULL,
		    NID_pbe_WithSHA1And3_Key_TripleDES_CBC, EVP_sha1());
	cluster_p12("p12-no-mac", cert, key, NULL, NID_aes_256_cbc, NULL);
	put_str("cluster", "key-name", "cluster-key/web");
	put_str("cluster", "cache-name", "cluster/web/a/b");
	cf_secret_free(pair);
	cf_secret_free(alone);
	cf_secret_free(bundle);
	X509_free(cert);
	X509_REQ_free(csr);
	EVP_PKEY_free(key);
	sk_X509_free(chain);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_seeds OUTDIR\n");
		return 2;
	}
	out_dir = argv[1];
	fuzz_secmem_init();
	fx = fuzz_fixture();
	make_dir(NULL);
	make_dir("envelope");
	make_dir("cert");
	make_dir("record");
	make_dir("perms");
	make_dir("token");
	make_dir("csr");
	make_dir("audit");
	make_dir("b64");
	make_dir("agent_config");
	make_dir("template");
	make_dir("command");
	make_dir("ack");
	make_dir("cluster");
	envelope_seeds();
	cert_seeds();
	record_seeds();
	perms_seeds();
	token_seeds();
	csr_seeds();
	audit_seeds();
	b64_seeds();
	agent_config_seeds();
	template_seeds();
	command_seeds();
	ack_seeds();
	cluster_seeds();
	printf("make_seeds: %d seeds in %s (tenant %s)\n", n_written, out_dir,
	       cf_trust_tenant(fx->trust));
	return 0;
}
