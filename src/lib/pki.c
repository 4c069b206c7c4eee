/*
 * pki.c - keys, certificate requests, certificates and CRLs of a tenant.
 *
 * Invariants:
 *  - every key made or accepted here is P-256 (DESIGN 1);
 *  - a certificate issued here carries exactly the extensions of its kind,
 *    and an enroller never issues beyond its agent.enroll scopes;
 *  - private keys are only ever encoded into secure memory (cf_secret).
 *  - no file I/O: callers hand us bytes and take bytes back.
 */
#include "pki.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "policy.h"

static CRYPTO_ONCE oid_once = CRYPTO_ONCE_STATIC_INIT;
static int oid_ok;
static int nid_perms, nid_groups, nid_cluster, nid_record, nid_kind;
static int nid_command, nid_result, nid_ack;

static int create_oid(const char *oid, const char *sn, const char *ln)
{
	int nid = OBJ_txt2nid(oid);

	if (nid != NID_undef)
		return nid;
	return OBJ_create(oid, sn, ln);
}

static void oid_init(void)
{
	nid_perms = create_oid(CF_OID_PERMS, "cofferPermissions",
			       "coffer operator permissions");
	nid_groups = create_oid(CF_OID_GROUPS, "cofferGroups",
				"coffer agent groups");
	nid_cluster = create_oid(CF_OID_CLUSTER, "cofferCluster",
				 "coffer cluster name");
	nid_record = create_oid(CF_OID_RECORD, "cofferRecord",
				"coffer signed secret record");
	nid_kind = create_oid(CF_OID_KIND, "cofferKind",
			      "coffer certificate kind");
	nid_command = create_oid(CF_OID_COMMAND, "cofferCommand",
				 "coffer signed operator command");
	nid_result = create_oid(CF_OID_RESULT, "cofferResult",
				"coffer signed command result");
	nid_ack = create_oid(CF_OID_ACK, "cofferAck",
			     "coffer signed rollout acknowledgement");
	oid_ok = nid_perms != NID_undef && nid_groups != NID_undef &&
		 nid_cluster != NID_undef && nid_record != NID_undef &&
		 nid_kind != NID_undef && nid_command != NID_undef &&
		 nid_result != NID_undef && nid_ack != NID_undef;
}

cf_status cf_pki_init(cf_error *err)
{
	if (!CRYPTO_THREAD_run_once(&oid_once, oid_init) || !oid_ok)
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not register coffer's object identifiers");
	return CF_OK;
}

int cf_nid_perms(void) { return nid_perms; }
int cf_nid_groups(void) { return nid_groups; }
int cf_nid_cluster(void) { return nid_cluster; }
int cf_nid_record(void) { return nid_record; }
int cf_nid_kind(void) { return nid_kind; }
int cf_nid_command(void) { return nid_command; }
int cf_nid_result(void) { return nid_result; }
int cf_nid_ack(void) { return nid_ack; }

static const char *const kind_names[] = {
	[CF_KIND_UNKNOWN] = "unknown", [CF_KIND_ROOT] = "root",
	[CF_KIND_OPERATOR] = "operator", [CF_KIND_ENROLLER] = "enroller",
	[CF_KIND_AGENT] = "agent", [CF_KIND_CLUSTER] = "cluster",
};

const char *cf_kind_name(cf_kind kind)
{
	if ((size_t)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
		return "unknown";
	return kind_names[kind];
}

cf_kind cf_kind_from_name(const char *name)
{
	for (size_t i = 1; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
		if (strcmp(kind_names[i], name) == 0)
			return (cf_kind)i;
	return CF_KIND_UNKNOWN;
}

/* ---------------------------------------------------------------- keys */

int cf_key_is_p256(EVP_PKEY *key)
{
	char group[32];
	size_t len = 0;

	if (!EVP_PKEY_is_a(key, "EC"))
		return 0;
	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
					    group, sizeof(group), &len))
		return 0;
	return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

cf_status cf_key_generate(EVP_PKEY **out, cf_error *err)
{
	*out = EVP_EC_gen("P-256");
	if (*out == NULL)
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not generate a P-256 key");
	return CF_OK;
}

static cf_status bio_to_buf(BIO *bio, unsigned char **buf, size_t *len,
			    cf_error *err)
{
	BUF_MEM *mem = NULL;

	BIO_get_mem_ptr(bio, &mem);
	*buf = OPENSSL_memdup(mem->data, mem->length ? mem->length : 1);
	if (*buf == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	*len = mem->length;
	return CF_OK;
}

cf_status cf_key_to_pem(EVP_PKEY *key, const cf_secret *pass, cf_secret **pem,
			cf_error *err)
{
	/* BIO_s_secmem keeps the encoded (maybe clear) key in secure memory. */
	BIO *bio = BIO_new(BIO_s_secmem());
	PKCS8_PRIV_KEY_INFO *p8inf = NULL;
	X509_ALGOR *pbe = NULL;
	X509_SIG *p8 = NULL;
	cf_status rc = CF_OK;

	*pem = NULL;
	if (bio == NULL)
		return cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
	p8inf = EVP_PKEY2PKCS8(key);
	if (p8inf == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not encode the private key as PKCS#8");
		goto out;
	}
	if (pass != NULL && cf_secret_len(pass) > 0) {
		pbe = PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), NULL, 0, NULL,
					    16384, 8, 1);
		if (pbe == NULL) {
			rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				"could not set up scrypt key encryption");
			goto out;
		}
		p8 = PKCS8_set0_pbe((const char *)cf_secret_cdata(pass),
				    (int)cf_secret_len(pass), p8inf, pbe);
		if (p8 == NULL) {
			rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				"could not encrypt the private key");
			goto out;
		}
		pbe = NULL; /* owned by p8 now */
		if (!PEM_write_bio_PKCS8(bio, p8)) {
			rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				"could not PEM-encode the private key");
			goto out;
		}
	} else if (!PEM_write_bio_PKCS8_PRIV_KEY_INFO(bio, p8inf)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not PEM-encode the private key");
		goto out;
	}
	rc = cf_secret_from_bio(bio, pem, err);
out:
	X509_ALGOR_free(pbe);
	X509_SIG_free(p8);
	PKCS8_PRIV_KEY_INFO_free(p8inf);
	BIO_free(bio);
	return rc;
}

int cf_key_pem_is_encrypted(const unsigned char *pem, size_t len)
{
	static const char tag[] = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
	size_t tlen = sizeof(tag) - 1;

	for (size_t i = 0; i + tlen <= len; i++)
		if (memcmp(pem + i, tag, tlen) == 0)
			return 1;
	return 0;
}

struct pass_cb_arg {
	const cf_secret *pass;
	int asked;
};

static int pass_cb(char *buf, int size, int rwflag, void *u)
{
	struct pass_cb_arg *arg = u;
	size_t len;

	(void)rwflag;
	arg->asked = 1;
	if (arg->pass == NULL)
		return -1;
	len = cf_secret_len(arg->pass);
	if (len > (size_t)size)
		return -1;
	memcpy(buf, cf_secret_cdata(arg->pass), len);
	return (int)len;
}

cf_status cf_key_from_pem(const unsigned char *pem, size_t len,
			  const cf_secret *pass, const char *what,
			  EVP_PKEY **out, cf_error *err)
{
	struct pass_cb_arg arg = { pass, 0 };
	int encrypted;
	BIO *bio;

	*out = NULL;
	if (len > CF_PEM_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"%s is larger than %u bytes; it is not a key file",
			what, CF_PEM_MAX_BYTES);
	encrypted = cf_key_pem_is_encrypted(pem, len);
	if (encrypted && (pass == NULL || cf_secret_len(pass) == 0))
		return cf_error_set(err, CF_ERR_PASSPHRASE,
			"%s is encrypted and needs a passphrase: give "
			"--pass-file FILE or set COFFER_PASSPHRASE", what);
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL)
		return cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
	*out = PEM_read_bio_PrivateKey(bio, NULL, pass_cb, &arg);
	BIO_free(bio);
	if (*out == NULL) {
		if (encrypted) {
			/*
			 * Our sentence says it all; a "bad decrypt" left on the
			 * queue would be appended to the next, unrelated error.
			 */
			ERR_clear_error();
			return cf_error_set(err, CF_ERR_PASSPHRASE,
				"cannot decrypt %s: wrong passphrase", what);
		}
		return cf_error_set_ssl(err, CF_ERR_PARSE,
			"%s holds no PEM private key", what);
	}
	ERR_clear_error();
	if (!cf_key_is_p256(*out)) {
		EVP_PKEY_free(*out);
		*out = NULL;
		return cf_error_set(err, CF_ERR_PARSE,
			"%s is not a P-256 key; coffer uses P-256 only", what);
	}
	return CF_OK;
}

/* ------------------------------------------------------------- helpers */

static cf_status check_cn(const char *cn, cf_error *err)
{
	size_t len = strlen(cn);

	if (len == 0 || len > CF_CN_MAX_BYTES)
		return cf_error_set(err, CF_ERR_USAGE,
			"name must be 1 to %d bytes", CF_CN_MAX_BYTES);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)cn[i] < 0x20 || cn[i] == 0x7f)
			return cf_error_set(err, CF_ERR_USAGE,
				"name has a control character at byte %zu", i);
	return CF_OK;
}

static X509_NAME *name_cn(const char *org, const char *cn)
{
	X509_NAME *name = X509_NAME_new();

	if (name == NULL)
		return NULL;
	if (org != NULL &&
	    !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
					(const unsigned char *)org, -1, -1, 0))
		goto fail;
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0))
		goto fail;
	return name;
fail:
	X509_NAME_free(name);
	return NULL;
}

/* One entry (CN, O, ...) of a name as UTF-8 into buf, empty when absent. */
static void name_entry(const X509_NAME *name, int nid, char *buf, size_t size)
{
	int idx = X509_NAME_get_index_by_NID(name, nid, -1);
	unsigned char *utf8 = NULL;
	int len = -1;

	if (size == 0)
		return;
	if (idx >= 0)
		len = ASN1_STRING_to_UTF8(&utf8,
			X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
	/*
	 * An embedded NUL (possible in a BMPString) would cut the name short
	 * and so misname the holder: treat such a name as absent.  Longer
	 * than buf: truncated, which check_cn then refuses.
	 */
	if (len > 0 && memchr(utf8, '\0', (size_t)len) != NULL)
		len = 0;
	snprintf(buf, size, "%.*s", len > 0 ? len : 0, len > 0 ? (char *)utf8 : "");
	OPENSSL_free(utf8);
}

void cf_cert_cn_of_name(const X509_NAME *name, char *buf, size_t size)
{
	name_entry(name, NID_commonName, buf, size);
}

void cf_cert_cn(X509 *cert, char *buf, size_t size)
{
	cf_cert_cn_of_name(X509_get_subject_name(cert), buf, size);
}

char *cf_name_text(const X509_NAME *name)
{
	BIO *bio = BIO_new(BIO_s_mem());
	unsigned char *buf = NULL;
	size_t len = 0;

	if (bio == NULL)
		return NULL;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
	    BIO_write(bio, "", 1) == 1 &&
	    bio_to_buf(bio, &buf, &len, NULL) != CF_OK)
		buf = NULL;
	BIO_free(bio);
	return (char *)buf;
}

/* ---------------------------------------------------------------- CSRs */

cf_status cf_csr_new(EVP_PKEY *key, const char *cn, X509_REQ **out,
		     cf_error *err)
{
	X509_REQ *req = NULL;
	X509_NAME *name = NULL;
	cf_status rc;

	*out = NULL;
	rc = check_cn(cn, err);
	if (rc != CF_OK)
		return rc;
	if (!cf_key_is_p256(key))
		return cf_error_set(err, CF_ERR_USAGE,
			"the key is not P-256; make one with coffer key new");
	req = X509_REQ_new();
	name = name_cn(NULL, cn);
	if (req == NULL || name == NULL ||
	    !X509_REQ_set_version(req, 0) ||
	    !X509_REQ_set_subject_name(req, name) ||
	    !X509_REQ_set_pubkey(req, key) ||
	    !X509_REQ_sign(req, key, EVP_sha256())) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not make a certificate request for \"%s\"", cn);
		goto out;
	}
	*out = req;
	req = NULL;
out:
	X509_NAME_free(name);
	X509_REQ_free(req);
	return rc;
}

static int looks_like_pem(const unsigned char *buf, size_t len)
{
	static const char tag[] = "-----BEGIN ";

	for (size_t i = 0; i + sizeof(tag) - 1 <= len && i < 4096; i++)
		if (memcmp(buf + i, tag, sizeof(tag) - 1) == 0)
			return 1;
	return 0;
}

/*
 * The first PEM block called pem_name in buf, or else all of buf as DER,
 * decoded as it; NULL unless the DER is exactly one object.
 */
static ASN1_VALUE *decode_pem_or_der(const unsigned char *buf, size_t len,
				     const char *pem_name, const ASN1_ITEM *it)
{
	const unsigned char *der = buf, *p;
	unsigned char *block = NULL;
	long der_len = (long)len;
	ASN1_VALUE *v;

	if (looks_like_pem(buf, len)) {
		BIO *bio = BIO_new_mem_buf(buf, (int)len);
		int ok = bio != NULL && PEM_bytes_read_bio(&block, &der_len, NULL,
							   pem_name, bio, NULL, NULL);

		BIO_free(bio);
		if (!ok)
			return NULL;
		der = block;
	}
	p = der;
	v = ASN1_item_d2i(NULL, &p, der_len, it);
	if (v != NULL && p != der + der_len) {
		ASN1_item_free(v, it);
		v = NULL;
	}
	OPENSSL_free(block);
	return v;
}

cf_status cf_csr_parse(const unsigned char *buf, size_t len, const char *what,
		       X509_REQ **out, cf_error *err)
{
	X509_REQ *req = NULL;
	EVP_PKEY *pub;

	*out = NULL;
	if (len > CF_PEM_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"%s is larger than %u bytes", what, CF_PEM_MAX_BYTES);
	req = (X509_REQ *)decode_pem_or_der(buf, len, PEM_STRING_X509_REQ,
					    ASN1_ITEM_rptr(X509_REQ));
	if (req == NULL)
		return cf_error_set_ssl(err, CF_ERR_PARSE,
			"%s is not a certificate request (PEM or DER)", what);
	pub = X509_REQ_get0_pubkey(req);
	if (pub == NULL || !cf_key_is_p256(pub)) {
		X509_REQ_free(req);
		return cf_error_set(err, CF_ERR_PARSE,
			"%s does not hold a P-256 public key", what);
	}
	if (X509_REQ_verify(req, pub) != 1) {
		X509_REQ_free(req);
		return cf_error_set_ssl(err, CF_ERR_PARSE,
			"%s has a bad self-signature; make it again with "
			"coffer csr new", what);
	}
	*out = req;
	return CF_OK;
}

cf_status cf_csr_to_pem(X509_REQ *csr, unsigned char **pem, size_t *len,
			cf_error *err)
{
	BIO *bio = BIO_new(BIO_s_mem());
	cf_status rc;

	if (bio == NULL || !PEM_write_bio_X509_REQ(bio, csr)) {
		BIO_free(bio);
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not PEM-encode the request");
	}
	rc = bio_to_buf(bio, pem, len, err);
	BIO_free(bio);
	return rc;
}

/* -------------------------------------------------------- certificates */

cf_status cf_cert_parse(const unsigned char *buf, size_t len, const char *what,
			X509 **out, STACK_OF(X509) **chain, cf_error *err)
{
	X509 *cert = NULL;
	cf_status rc = CF_OK;

	*out = NULL;
	if (len > CF_PEM_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"%s is larger than %u bytes; it is not a certificate",
			what, CF_PEM_MAX_BYTES);
	if (looks_like_pem(buf, len)) {
		BIO *bio = BIO_new_mem_buf(buf, (int)len);
		X509 *extra;

		if (bio == NULL)
			return cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
		cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		while (cert != NULL && chain != NULL &&
		       (extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
			if (*chain == NULL)
				*chain = sk_X509_new_null();
			if (*chain == NULL || !sk_X509_push(*chain, extra)) {
				X509_free(extra);
				rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
				break;
			}
		}
		BIO_free(bio);
		ERR_clear_error(); /* the loop ends on "no start line" */
	} else {
		cert = (X509 *)decode_pem_or_der(buf, len, PEM_STRING_X509,
						 ASN1_ITEM_rptr(X509));
	}
	if (rc != CF_OK) {
		X509_free(cert);
		return rc;
	}
	if (cert == NULL)
		return cf_error_set_ssl(err, CF_ERR_PARSE,
			"%s is not a certificate (PEM or DER)", what);
	*out = cert;
	return CF_OK;
}

cf_status cf_cert_to_pem(X509 *cert, unsigned char **pem, size_t *len,
			 cf_error *err)
{
	BIO *bio = BIO_new(BIO_s_mem());
	cf_status rc;

	if (bio == NULL || !PEM_write_bio_X509(bio, cert)) {
		BIO_free(bio);
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not PEM-encode the certificate");
	}
	rc = bio_to_buf(bio, pem, len, err);
	BIO_free(bio);
	return rc;
}

cf_status cf_cert_fingerprint(X509 *cert, char hex[65], cf_error *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	if (!X509_digest(cert, EVP_sha256(), md, &md_len) || md_len != 32)
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not compute a certificate fingerprint");
	for (unsigned int i = 0; i < md_len; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return CF_OK;
}

static int set_random_serial(X509 *cert)
{
	unsigned char bytes[20];
	BIGNUM *bn = NULL;
	int ok;

	if (RAND_bytes(bytes, sizeof(bytes)) != 1)
		return 0;
	bytes[0] &= 0x7f; /* positive, at most 20 octets */
	bytes[0] |= 0x40; /* and never shorter, for a uniform look */
	bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
	ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
	BN_free(bn);
	return ok;
}

static int add_ext_conf(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok = ext != NULL && X509_add_ext(cert, ext, -1);

	X509_EXTENSION_free(ext);
	return ok;
}

static int add_ext_utf8(X509 *cert, int nid, const char *text)
{
	ASN1_UTF8STRING *str = ASN1_UTF8STRING_new();
	ASN1_OCTET_STRING *der = ASN1_OCTET_STRING_new();
	X509_EXTENSION *ext = NULL;
	unsigned char *enc = NULL;
	int enc_len, ok = 0;

	if (str == NULL || der == NULL ||
	    !ASN1_STRING_set(str, text, (int)strlen(text)))
		goto out;
	enc_len = i2d_ASN1_UTF8STRING(str, &enc);
	if (enc_len <= 0 || !ASN1_OCTET_STRING_set(der, enc, enc_len))
		goto out;
	ext = X509_EXTENSION_create_by_NID(NULL, nid, 0, der);
	ok = ext != NULL && X509_add_ext(cert, ext, -1);
out:
	OPENSSL_free(enc);
	X509_EXTENSION_free(ext);
	ASN1_OCTET_STRING_free(der);
	ASN1_UTF8STRING_free(str);
	return ok;
}

cf_status cf_cert_ext_text(X509 *cert, int nid, char **out, cf_error *err)
{
	int idx = X509_get_ext_by_NID(cert, nid, -1);
	X509_EXTENSION *ext;
	const ASN1_OCTET_STRING *data;
	const unsigned char *p;
	ASN1_UTF8STRING *str;

	*out = NULL;
	if (idx < 0)
		return CF_OK;
	if (X509_get_ext_by_NID(cert, nid, idx) >= 0)
		return cf_error_set(err, CF_ERR_PARSE,
			"certificate has the extension %s twice", OBJ_nid2sn(nid));
	ext = X509_get_ext(cert, idx);
	data = X509_EXTENSION_get_data(ext);
	p = ASN1_STRING_get0_data(data);
	str = d2i_ASN1_UTF8STRING(NULL, &p, ASN1_STRING_length(data));
	if (str == NULL || p != ASN1_STRING_get0_data(data) + ASN1_STRING_length(data)) {
		ASN1_UTF8STRING_free(str);
		return cf_error_set_ssl(err, CF_ERR_PARSE,
			"certificate extension %s is not a UTF8String",
			OBJ_nid2sn(nid));
	}
	if (memchr(ASN1_STRING_get0_data(str), '\0', (size_t)ASN1_STRING_length(str))) {
		ASN1_UTF8STRING_free(str);
		return cf_error_set(err, CF_ERR_PARSE,
			"certificate extension %s contains a NUL byte",
			OBJ_nid2sn(nid));
	}
	*out = OPENSSL_strndup((const char *)ASN1_STRING_get0_data(str),
			       (size_t)ASN1_STRING_length(str));
	ASN1_UTF8STRING_free(str);
	if (*out == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	return CF_OK;
}

cf_kind cf_cert_kind(X509 *cert)
{
	char *text = NULL;
	cf_kind kind = CF_KIND_UNKNOWN;

	if (cf_pki_init(NULL) != CF_OK)
		return CF_KIND_UNKNOWN;
	if ((X509_get_extension_flags(cert) & EXFLAG_SS) &&
	    X509_check_ca(cert) > 0)
		return CF_KIND_ROOT;
	if (cf_cert_ext_text(cert, nid_kind, &text, NULL) == CF_OK && text) {
		kind = cf_kind_from_name(text);
		if (kind == CF_KIND_ROOT)
			kind = CF_KIND_UNKNOWN;
	}
	OPENSSL_free(text);
	return kind;
}

cf_status cf_cert_perms(X509 *cert, struct cf_perms **out, cf_error *err)
{
	char *text = NULL;
	cf_status rc;

	*out = NULL;
	rc = cf_pki_init(err);
	if (rc == CF_OK)
		rc = cf_cert_ext_text(cert, nid_perms, &text, err);
	if (rc == CF_OK)
		rc = cf_perms_parse(text ? text : "", text ? strlen(text) : 0,
				    out, err);
	OPENSSL_free(text);
	return rc;
}

static cf_status set_validity(X509 *cert, X509 *issuer, int days,
			      cf_error *err)
{
	/* Five minutes of slack for clocks that lag the issuer's. */
	if (X509_gmtime_adj(X509_getm_notBefore(cert), -300) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, NULL) == NULL)
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not set the validity period");
	if (issuer != NULL &&
	    ASN1_TIME_compare(X509_get0_notAfter(cert),
			      X509_get0_notAfter(issuer)) > 0 &&
	    !X509_set1_notAfter(cert, X509_get0_notAfter(issuer)))
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not clamp the validity to the issuer's");
	return CF_OK;
}

cf_status cf_ca_create(EVP_PKEY *key, const char *org, int days, X509 **out,
		       cf_error *err)
{
	X509 *cert = NULL;
	X509_NAME *name = NULL;
	X509V3_CTX ctx;
	cf_status rc;
	char cn[CF_CN_MAX_BYTES + 16];

	*out = NULL;
	rc = cf_pki_init(err);
	if (rc != CF_OK)
		return rc;
	rc = check_cn(org, err);
	if (rc != CF_OK)
		return rc;
	/* The root's CN is "<org> root CA", itself at most 64 bytes. */
	if (strlen(org) > CF_CN_MAX_BYTES - strlen(" root CA"))
		return cf_error_set(err, CF_ERR_USAGE,
			"organisation name must be at most %zu bytes",
			CF_CN_MAX_BYTES - strlen(" root CA"));
	if (days <= 0)
		days = CF_DEFAULT_CA_DAYS;
	snprintf(cn, sizeof(cn), "%s root CA", org);
	cert = X509_new();
	name = name_cn(org, cn);
	if (cert == NULL || name == NULL || !X509_set_version(cert, 2) ||
	    !set_random_serial(cert) || !X509_set_subject_name(cert, name) ||
	    !X509_set_issuer_name(cert, name) || !X509_set_pubkey(cert, key)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not build the root certificate");
		goto out;
	}
	rc = set_validity(cert, NULL, days, err);
	if (rc != CF_OK)
		goto out;
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	if (!add_ext_conf(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:1") ||
	    !add_ext_conf(cert, &ctx, NID_key_usage,
			  "critical,keyCertSign,cRLSign,digitalSignature") ||
	    !add_ext_conf(cert, &ctx, NID_subject_key_identifier, "hash") ||
	    !X509_sign(cert, key, EVP_sha256())) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not sign the root certificate");
		goto out;
	}
	*out = cert;
	cert = NULL;
out:
	X509_NAME_free(name);
	X509_free(cert);
	return rc;
}

static cf_status join_checked(const char *what, const char *const *items,
			      size_t n, char sep, char **out, cf_error *err)
{
	size_t total = 1;
	char *text, *p;

	*out = NULL;
	for (size_t i = 0; i < n; i++) {
		cf_status rc = cf_name_check(what, items[i], err);

		if (rc != CF_OK)
			return rc;
		total += strlen(items[i]) + 1;
	}
	p = text = OPENSSL_zalloc(total);
	if (text == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(items[i]);

		memcpy(p, items[i], len);
		p += len;
		if (i + 1 < n)
			*p++ = sep;
	}
	*out = text;
	return CF_OK;
}

/* May issuer (root or enroller) issue what spec asks? */
static cf_status check_issuer_scope(X509 *issuer, const cf_cert_spec *spec,
				    cf_error *err)
{
	cf_kind ikind = cf_cert_kind(issuer);
	struct cf_perms *perms = NULL;
	char cn[CF_CN_MAX_BYTES + 1];
	cf_status rc = CF_OK;

	cf_cert_cn(issuer, cn, sizeof(cn));
	if (ikind == CF_KIND_ROOT)
		return CF_OK;
	if (ikind != CF_KIND_ENROLLER)
		return cf_error_set(err, CF_ERR_POLICY,
			"issuer \"%s\" is of kind %s and may not issue "
			"certificates; use the root CA or an enroller",
			cn, cf_kind_name(ikind));
	if (spec->kind != CF_KIND_AGENT && spec->kind != CF_KIND_CLUSTER)
		return cf_error_set(err, CF_ERR_POLICY,
			"enroller \"%s\" may only issue agent and cluster "
			"certificates, not %s; use the root CA", cn,
			cf_kind_name(spec->kind));
	rc = cf_cert_perms(issuer, &perms, err);
	if (rc != CF_OK)
		return rc;
	for (size_t i = 0; i < spec->n_groups; i++) {
		if (!cf_perms_covers(perms, "agent.enroll", spec->groups[i])) {
			rc = cf_error_set(err, CF_ERR_POLICY,
				"enroller \"%s\" may not issue certificates for "
				"group \"%s\": none of its agent.enroll rules "
				"covers it", cn, spec->groups[i]);
			goto out;
		}
	}
	if (spec->cluster != NULL &&
	    !cf_perms_covers(perms, "agent.enroll", spec->cluster)) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"enroller \"%s\" may not issue certificates for "
			"cluster \"%s\": none of its agent.enroll rules covers it",
			cn, spec->cluster);
		goto out;
	}
	if (spec->kind == CF_KIND_AGENT && spec->n_groups == 0 &&
	    spec->cluster == NULL) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"enroller \"%s\" may only issue agents with at least one "
			"group its agent.enroll rules cover; add --group", cn);
		goto out;
	}
out:
	cf_perms_free(perms);
	return rc;
}

cf_status cf_cert_check_issuance(X509 *issuer, X509 *cert, cf_error *err)
{
	cf_cert_spec spec = { 0 };
	char *groups = NULL, *cluster = NULL, *save = NULL;
	const char *list[CF_GROUPS_MAX];
	cf_status rc;

	spec.kind = cf_cert_kind(cert);
	rc = cf_cert_ext_text(cert, nid_groups, &groups, err);
	if (rc == CF_OK)
		rc = cf_cert_ext_text(cert, nid_cluster, &cluster, err);
	if (rc != CF_OK)
		goto out;
	for (char *g = groups ? strtok_r(groups, ",", &save) : NULL; g != NULL;
	     g = strtok_r(NULL, ",", &save)) {
		if (spec.n_groups == CF_GROUPS_MAX) {
			rc = cf_error_set(err, CF_ERR_POLICY,
				"certificate lists more than %d groups",
				CF_GROUPS_MAX);
			goto out;
		}
		list[spec.n_groups++] = g;
	}
	spec.groups = list;
	spec.cluster = cluster;
	rc = check_issuer_scope(issuer, &spec, err);
out:
	OPENSSL_free(groups);
	OPENSSL_free(cluster);
	return rc;
}

static cf_status check_spec(const cf_cert_spec *spec, cf_error *err)
{
	int has_perms = spec->n_perms > 0, has_groups = spec->n_groups > 0;

	switch (spec->kind) {
	case CF_KIND_OPERATOR:
	case CF_KIND_ENROLLER:
		if (has_groups || spec->cluster)
			return cf_error_set(err, CF_ERR_USAGE,
				"--group and --cluster are for agent and cluster "
				"certificates, not %s", cf_kind_name(spec->kind));
		break;
	case CF_KIND_AGENT:
		if (has_perms)
			return cf_error_set(err, CF_ERR_USAGE,
				"--perm is for operator and enroller certificates; "
				"agents get --group");
		break;
	case CF_KIND_CLUSTER:
		if (has_perms || has_groups)
			return cf_error_set(err, CF_ERR_USAGE,
				"a cluster certificate takes only --cluster NAME");
		if (spec->cluster == NULL)
			return cf_error_set(err, CF_ERR_USAGE,
				"a cluster certificate needs --cluster NAME");
		break;
	default:
		return cf_error_set(err, CF_ERR_USAGE,
			"--kind must be operator, enroller, agent or cluster");
	}
	if (spec->kind == CF_KIND_ENROLLER) {
		size_t i;

		for (i = 0; i < spec->n_perms; i++)
			if (strncmp(spec->perms[i], "agent.enroll:", 13) == 0 ||
			    strncmp(spec->perms[i], "admin:", 6) == 0)
				break;
		if (i == spec->n_perms)
			return cf_error_set(err, CF_ERR_USAGE,
				"an enroller needs at least one --perm "
				"agent.enroll:SCOPE naming what it may admit");
	}
	if (spec->n_groups > CF_GROUPS_MAX)
		return cf_error_set(err, CF_ERR_USAGE,
			"at most %d groups per certificate", CF_GROUPS_MAX);
	if (spec->n_perms > CF_PERM_MAX_RULES)
		return cf_error_set(err, CF_ERR_USAGE,
			"at most %d permission rules per certificate",
			CF_PERM_MAX_RULES);
	for (size_t i = 0; i < spec->n_perms; i++) {
		if (cf_perm_rule_check(spec->perms[i], err) != CF_OK) {
			/* A rule typed on a command line is a usage error. */
			if (err != NULL)
				err->code = CF_ERR_USAGE;
			return CF_ERR_USAGE;
		}
	}
	if (spec->cluster != NULL)
		return cf_name_check("cluster name", spec->cluster, err);
	return CF_OK;
}

cf_status cf_cert_issue(X509 *issuer, EVP_PKEY *issuer_key, X509_REQ *csr,
			const cf_cert_spec *spec, X509 **out, cf_error *err)
{
	X509 *cert = NULL;
	X509_NAME *subject = NULL;
	char *perms = NULL, *groups = NULL;
	char cn[CF_CN_MAX_BYTES + 2], org[CF_CN_MAX_BYTES + 1]; /* +2: overlong is refused */
	X509V3_CTX ctx;
	const char *bc, *ku;
	cf_status rc;

	*out = NULL;
	rc = cf_pki_init(err);
	if (rc == CF_OK)
		rc = check_spec(spec, err);
	if (rc == CF_OK)
		rc = check_issuer_scope(issuer, spec, err);
	if (rc != CF_OK)
		return rc;
	if (X509_check_private_key(issuer, issuer_key) != 1)
		return cf_error_set_ssl(err, CF_ERR_USAGE,
			"the issuer key does not belong to the issuer certificate");
	if (spec->n_perms > 0) {
		/* rules were checked by check_spec; join them one per line */
		size_t total = 1;
		char *p;

		for (size_t i = 0; i < spec->n_perms; i++)
			total += strlen(spec->perms[i]) + 1;
		p = perms = OPENSSL_zalloc(total);
		if (perms == NULL) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < spec->n_perms; i++)
			p += snprintf(p, total - (size_t)(p - perms), "%s%s",
				      spec->perms[i], i + 1 < spec->n_perms ? "\n" : "");
	}
	rc = join_checked("group name", spec->groups, spec->n_groups, ',',
			  &groups, err);
	if (rc != CF_OK)
		goto out;

	/*
	 * The subject is rebuilt, not copied: the request's CN (checked) under
	 * the issuer's organisation, so a request cannot smuggle attributes.
	 */
	cf_cert_cn_of_name(X509_REQ_get_subject_name(csr), cn, sizeof(cn));
	if (check_cn(cn, NULL) != CF_OK) {
		rc = cf_error_set(err, CF_ERR_PARSE, "the request's common name is "
			"missing, longer than %d bytes or has control characters; "
			"make it with coffer csr new --name", CF_CN_MAX_BYTES);
		goto out;
	}
	name_entry(X509_get_subject_name(issuer), NID_organizationName, org,
		   sizeof(org));
	subject = name_cn(org[0] ? org : NULL, cn);
	cert = X509_new();
	if (cert == NULL || subject == NULL || !X509_set_version(cert, 2) ||
	    !set_random_serial(cert) ||
	    !X509_set_subject_name(cert, subject) ||
	    !X509_set_issuer_name(cert, X509_get_subject_name(issuer)) ||
	    !X509_set_pubkey(cert, X509_REQ_get0_pubkey(csr))) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not build the certificate");
		goto out;
	}
	rc = set_validity(cert, issuer,
			  spec->days > 0 ? spec->days : CF_DEFAULT_CERT_DAYS, err);
	if (rc != CF_OK)
		goto out;

	if (spec->kind == CF_KIND_ENROLLER) {
		bc = "critical,CA:TRUE,pathlen:0";
		ku = "critical,keyCertSign,digitalSignature,keyAgreement";
	} else {
		bc = "critical,CA:FALSE";
		ku = "critical,digitalSignature,keyAgreement";
	}
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	if (!add_ext_conf(cert, &ctx, NID_basic_constraints, bc) ||
	    !add_ext_conf(cert, &ctx, NID_key_usage, ku) ||
	    !add_ext_conf(cert, &ctx, NID_subject_key_identifier, "hash") ||
	    !add_ext_conf(cert, &ctx, NID_authority_key_identifier, "keyid:always") ||
	    !add_ext_utf8(cert, nid_kind, cf_kind_name(spec->kind)) ||
	    (perms != NULL && !add_ext_utf8(cert, nid_perms, perms)) ||
	    (spec->kind == CF_KIND_AGENT && !add_ext_utf8(cert, nid_groups, groups)) ||
	    (spec->cluster != NULL && !add_ext_utf8(cert, nid_cluster, spec->cluster)) ||
	    !X509_sign(cert, issuer_key, EVP_sha256())) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not sign the certificate");
		goto out;
	}
	*out = cert;
	cert = NULL;
out:
	X509_NAME_free(subject);
	OPENSSL_free(perms);
	OPENSSL_free(groups);
	X509_free(cert);
	return rc;
}

/* ---------------------------------------------------------------- CRLs */

cf_status cf_crl_parse(const unsigned char *buf, size_t len, const char *what,
		       X509_CRL **out, cf_error *err)
{
	X509_CRL *crl = NULL;

	*out = NULL;
	if (len > CF_CRL_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"%s is larger than %u bytes", what, CF_CRL_MAX_BYTES);
	crl = (X509_CRL *)decode_pem_or_der(buf, len, PEM_STRING_X509_CRL,
					    ASN1_ITEM_rptr(X509_CRL));
	if (crl == NULL)
		return cf_error_set_ssl(err, CF_ERR_PARSE,
			"%s is not a certificate revocation list (PEM or DER)", what);
	*out = crl;
	return CF_OK;
}

cf_status cf_crl_to_pem(X509_CRL *crl, unsigned char **pem, size_t *len,
			cf_error *err)
{
	BIO *bio = BIO_new(BIO_s_mem());
	cf_status rc;

	if (bio == NULL || !PEM_write_bio_X509_CRL(bio, crl)) {
		BIO_free(bio);
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not PEM-encode the CRL");
	}
	rc = bio_to_buf(bio, pem, len, err);
	BIO_free(bio);
	return rc;
}

cf_status cf_crl_check_signer(X509_CRL *crl, X509 *root, cf_error *err)
{
	EVP_PKEY *pub = X509_get0_pubkey(root);

	if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(root)) != 0)
		return cf_error_set(err, CF_ERR_UNTRUSTED,
			"the CRL was issued by another CA than this root");
	if (pub == NULL || X509_CRL_verify(crl, pub) != 1)
		return cf_error_set_ssl(err, CF_ERR_UNTRUSTED,
			"the CRL's signature does not verify with this root");
	return CF_OK;
}

cf_status cf_crl_update(X509 *root, EVP_PKEY *root_key, X509_CRL *old,
			X509 *revoke, int days, X509_CRL **out, cf_error *err)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *now = NULL;
	ASN1_INTEGER *number = NULL;
	BIGNUM *bn = NULL;
	X509V3_CTX ctx;
	cf_status rc = CF_OK;
	STACK_OF(X509_REVOKED) *entries = old ? X509_CRL_get_REVOKED(old) : NULL;

	*out = NULL;
	if (days <= 0)
		days = 365;
	if (X509_check_private_key(root, root_key) != 1) {
		rc = cf_error_set_ssl(err, CF_ERR_USAGE,
			"the CA key does not belong to the root certificate");
		goto out;
	}
	if (old != NULL) {
		rc = cf_crl_check_signer(old, root, err);
		if (rc != CF_OK)
			goto out;
	}
	now = X509_gmtime_adj(NULL, 0);
	if (crl == NULL || now == NULL || !X509_CRL_set_version(crl, 1) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(root)) ||
	    !X509_CRL_set1_lastUpdate(crl, now) ||
	    X509_time_adj_ex(now, days, 0, NULL) == NULL ||
	    !X509_CRL_set1_nextUpdate(crl, now)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO, "could not build the CRL");
		goto out;
	}
	for (int i = 0; i < sk_X509_REVOKED_num(entries); i++) {
		X509_REVOKED *e = X509_REVOKED_dup(sk_X509_REVOKED_value(entries, i));

		if (revoke != NULL &&
		    ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(e),
				     X509_get0_serialNumber(revoke)) == 0) {
			X509_REVOKED_free(e);
			rc = cf_error_set(err, CF_ERR_EXISTS,
				"the certificate is already revoked in this CRL");
			goto out;
		}
		if (e == NULL || !X509_CRL_add0_revoked(crl, e)) {
			X509_REVOKED_free(e);
			rc = cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (revoke != NULL) {
		X509_REVOKED *e = X509_REVOKED_new();
		ASN1_TIME *when = X509_gmtime_adj(NULL, 0);

		if (e == NULL || when == NULL ||
		    !X509_REVOKED_set_serialNumber(e, X509_get_serialNumber(revoke)) ||
		    !X509_REVOKED_set_revocationDate(e, when) ||
		    !X509_CRL_add0_revoked(crl, e)) {
			X509_REVOKED_free(e);
			ASN1_TIME_free(when);
			rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				"could not add the entry to the CRL");
			goto out;
		}
		ASN1_TIME_free(when);
	}
	/* CRL number: one more than the old list's. */
	if (old != NULL) {
		ASN1_INTEGER *prev = X509_CRL_get_ext_d2i(old, NID_crl_number, NULL, NULL);

		if (prev != NULL)
			bn = ASN1_INTEGER_to_BN(prev, NULL);
		ASN1_INTEGER_free(prev);
	}
	if (bn == NULL)
		bn = BN_new();
	if (bn == NULL || !BN_add_word(bn, 1) ||
	    (number = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not number the CRL");
		goto out;
	}
	X509V3_set_ctx(&ctx, root, NULL, NULL, crl, 0);
	{
		X509_EXTENSION *aki = X509V3_EXT_conf_nid(NULL, &ctx,
			NID_authority_key_identifier, "keyid:always");

		if (aki == NULL || !X509_CRL_add_ext(crl, aki, -1)) {
			X509_EXTENSION_free(aki);
			rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				"could not add the authority key identifier");
			goto out;
		}
		X509_EXTENSION_free(aki);
	}
	if (!X509_CRL_sort(crl) || !X509_CRL_sign(crl, root_key, EVP_sha256())) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO, "could not sign the CRL");
		goto out;
	}
	*out = crl;
	crl = NULL;
out:
	ASN1_TIME_free(now);
	ASN1_INTEGER_free(number);
	BN_free(bn);
	X509_CRL_free(crl);
	return rc;
}

int64_t cf_asn1_time_unix(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return (int64_t)timegm(&tm);
}
