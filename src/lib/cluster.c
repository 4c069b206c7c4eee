/*
 * cluster.c - cluster names, certificates, key bundles, membership proofs
 * and PKCS#12 files (see cluster.h).
 *
 * Invariants:
 *   - the cluster's private key as text or DER exists only in cf_secret
 *     buffers and OpenSSL's secure heap (PEM_FLAG_SECURE, BIO_s_secmem),
 *     or inside OpenSSL's own key objects; a PKCS#12 password is copied
 *     NUL-terminated into the secure heap and wiped;
 *   - both readers of outside input (bundle, PKCS#12) are strict and
 *     bounded: a bundle is PEM blocks and white space only, with exactly
 *     one unencrypted PKCS#8 key; a PKCS#12 file is read in one pass over
 *     its bags, so that every algorithm is checked before it is used and
 *     no iteration count above CF_CLUSTER_P12_ITER_MAX is ever run;
 *   - no error sentence quotes key material or a password.
 */
#include "cluster.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <stdio.h>
#include <string.h>

#include "b64.h"
#include "pki.h"
#include "policy.h"

/* Longest ECDSA P-256 signature in DER, and a floor below any real one. */
#define PROOF_SIG_MAX 72
#define PROOF_SIG_MIN 8
/* Longest PKCS#12 password accepted (a typed or generated passphrase). */
#define P12_PASS_MAX 1024

/* ------------------------------------------------------------- names */

int cf_cluster_of_name(const char *name, int key, char *buf, size_t size)
{
	const char *prefix = key ? CF_CLUSTER_KEY_PREFIX : CF_CLUSTER_CACHE_PREFIX;
	size_t plen = strlen(prefix);
	const char *start, *end;
	size_t len;

	if (buf != NULL && size > 0)
		buf[0] = '\0';
	if (name == NULL || buf == NULL ||
	    cf_name_check("secret name", name, NULL) != CF_OK ||
	    strncmp(name, prefix, plen) != 0)
		return 0;
	start = name + plen;
	end = strchr(start, '/');
	if (key) {
		/* The whole rest is the cluster name: no further segment. */
		if (end != NULL)
			return 0;
		len = strlen(start);
	} else {
		/* A cache entry is cluster/NAME/REST with REST not empty. */
		if (end == NULL || end[1] == '\0')
			return 0;
		len = (size_t)(end - start);
	}
	if (len == 0 || len >= size || len > CF_NAME_MAX_BYTES)
		return 0;
	memcpy(buf, start, len);
	buf[len] = '\0';
	if (cf_name_check("cluster name", buf, NULL) != CF_OK) {
		buf[0] = '\0';
		return 0;
	}
	return 1;
}

/* ------------------------------------------------------- certificates */

cf_status cf_cluster_check_cert(X509 *cert, EVP_PKEY *key, const char *name,
				cf_error *err)
{
	char *cluster = NULL;
	char cn[CF_CN_MAX_BYTES + 1];
	EVP_PKEY_CTX *ctx = NULL;
	cf_status rc;

	if (cert == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "no cluster certificate");
	cf_cert_cn(cert, cn, sizeof(cn));
	if (cf_cert_kind(cert) != CF_KIND_CLUSTER) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"certificate \"%s\" is of kind %s, not a cluster "
			"certificate", cn, cf_kind_name(cf_cert_kind(cert)));
		goto out;
	}
	if (!cf_key_is_p256(X509_get0_pubkey(cert))) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"cluster certificate \"%s\" does not hold a P-256 key",
			cn);
		goto out;
	}
	rc = cf_cert_ext_text(cert, cf_nid_cluster(), &cluster, err);
	if (rc != CF_OK)
		goto out;
	/* The name is one segment: cluster/NAME/... must be unambiguous. */
	if (cluster == NULL || strchr(cluster, '/') != NULL ||
	    cf_name_check("cluster name", cluster, NULL) != CF_OK) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"cluster certificate \"%s\" carries no valid cluster "
			"name (one segment of letters, digits, '.', '_', '-')",
			cn);
		goto out;
	}
	if (name != NULL && strcmp(cluster, name) != 0) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"certificate \"%s\" is for cluster \"%s\", not \"%s\"",
			cn, cluster, name);
		goto out;
	}
	if (key != NULL &&
	    (!cf_key_is_p256(key) || X509_check_private_key(cert, key) != 1)) {
		ERR_clear_error();
		rc = cf_error_set(err, CF_ERR_POLICY,
			"the private key does not belong to cluster "
			"certificate \"%s\" (cluster %s)", cn, cluster);
		goto out;
	}
	/*
	 * A PKCS#8 EC key may carry its public key beside the private
	 * scalar, and OpenSSL takes it as given: X509_check_private_key
	 * compares only that.  The scalar must be the one behind it, or the
	 * key would "match" and yet sign nothing the certificate verifies.
	 */
	if (key != NULL) {
		ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
		if (ctx == NULL || EVP_PKEY_pairwise_check(ctx) != 1) {
			ERR_clear_error();
			rc = cf_error_set(err, CF_ERR_POLICY,
				"the private key of cluster certificate "
				"\"%s\" (cluster %s) is inconsistent: its "
				"private and public halves do not match", cn,
				cluster);
			goto out;
		}
	}
	rc = CF_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	OPENSSL_free(cluster);
	return rc;
}

/* The cluster name of a certificate that passed cf_cluster_check_cert. */
static cf_status cluster_name(X509 *cert, char *buf, size_t size,
			      cf_error *err)
{
	char *text = NULL;
	cf_status rc = cf_cert_ext_text(cert, cf_nid_cluster(), &text, err);

	if (rc != CF_OK)
		return rc;
	if (text == NULL || strlen(text) >= size) {
		OPENSSL_free(text);
		return cf_error_set(err, CF_ERR_POLICY,
				    "the certificate carries no cluster name");
	}
	snprintf(buf, size, "%s", text);
	OPENSSL_free(text);
	return CF_OK;
}

/* ------------------------------------------------------------ bundle */

static cf_status append_cert_pem(cf_secret *out, X509 *cert, cf_error *err)
{
	unsigned char *pem = NULL;
	size_t len = 0;
	cf_status rc = cf_cert_to_pem(cert, &pem, &len, err);

	if (rc == CF_OK)
		rc = cf_secret_append(out, pem, len, err);
	OPENSSL_free(pem);
	return rc;
}

cf_status cf_cluster_bundle_encode(X509 *cert, STACK_OF(X509) *chain,
				   EVP_PKEY *key, cf_secret **out,
				   cf_error *err)
{
	cf_secret *bundle = NULL, *key_pem = NULL;
	cf_status rc;

	*out = NULL;
	rc = cf_cluster_check_cert(cert, key, NULL, err);
	if (rc != CF_OK)
		return rc;
	bundle = cf_secret_new(4096);
	if (bundle == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	rc = append_cert_pem(bundle, cert, err);
	for (int i = 0; rc == CF_OK && i < sk_X509_num(chain); i++)
		rc = append_cert_pem(bundle, sk_X509_value(chain, i), err);
	if (rc != CF_OK)
		goto out;
	rc = cf_key_to_pem(key, NULL, &key_pem, err);
	if (rc != CF_OK)
		goto out;
	rc = cf_secret_append(bundle, cf_secret_cdata(key_pem),
			      cf_secret_len(key_pem), err);
	if (rc != CF_OK)
		goto out;
	if (cf_secret_len(bundle) > CF_CLUSTER_BUNDLE_MAX) {
		rc = cf_error_set(err, CF_ERR_TOO_LARGE,
			"the cluster bundle would be larger than %u bytes: "
			"the chain is too long", CF_CLUSTER_BUNDLE_MAX);
		goto out;
	}
	*out = bundle;
	bundle = NULL;
out:
	cf_secret_free(key_pem);
	cf_secret_free(bundle);
	return rc;
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A PEM label fit to quote in a message: "A-Z0-9 " only. */
static int plain_label(const char *label)
{
	size_t n = strlen(label);

	if (n == 0 || n > 40)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((label[i] >= 'A' && label[i] <= 'Z') ||
		      (label[i] >= '0' && label[i] <= '9') || label[i] == ' '))
			return 0;
	return 1;
}

/*
 * Whether pem[at..end) (what PEM_read_bio_ex took for one block) starts
 * with the line "-----BEGIN label-----" and ends with "-----END
 * label-----" and white space: PEM_read_bio_ex skips lines it does not
 * take for a BEGIN line, and ignores text after an END line's dashes.
 */
static int block_lines_ok(const unsigned char *pem, size_t at, size_t end,
			  const char *label)
{
	char line[80];
	size_t n, last;
	int len = snprintf(line, sizeof(line), "-----BEGIN %s-----", label);

	if (len < 0 || (size_t)len >= sizeof(line))
		return 0;
	n = (size_t)len;
	if (end - at < n || memcmp(pem + at, line, n) != 0)
		return 0;
	at += n;
	if (at < end && pem[at] == '\r')
		at++;
	if (at >= end || pem[at] != '\n')
		return 0;
	/* The END line: the last line that is not white space. */
	while (end > at && is_space(pem[end - 1]))
		end--;
	last = end;
	while (last > at && pem[last - 1] != '\n')
		last--;
	len = snprintf(line, sizeof(line), "-----END %s-----", label);
	if (len < 0 || (size_t)len >= sizeof(line))
		return 0;
	return end - last == (size_t)len && memcmp(pem + last, line, (size_t)len) == 0;
}

/* One CERTIFICATE block's DER, all of it. */
static cf_status block_cert(const unsigned char *der, long len, size_t at,
			    X509 **out, cf_error *err)
{
	const unsigned char *p = der;

	*out = d2i_X509(NULL, &p, len);
	if (*out == NULL || p != der + len) {
		X509_free(*out);
		*out = NULL;
		return cf_error_set_ssl(err, CF_ERR_PARSE,
			"cluster bundle: the certificate at byte %zu is not "
			"one well-formed DER certificate", at);
	}
	return CF_OK;
}

/* One PRIVATE KEY block's DER (unencrypted PKCS#8), all of it. */
static cf_status block_key(const unsigned char *der, long len, size_t at,
			   EVP_PKEY **out, cf_error *err)
{
	const unsigned char *p = der;
	PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, len);

	*out = NULL;
	if (p8 != NULL && p == der + len)
		*out = EVP_PKCS82PKEY(p8);
	PKCS8_PRIV_KEY_INFO_free(p8);
	if (*out == NULL)
		return cf_error_set_ssl(err, CF_ERR_PARSE,
			"cluster bundle: the private key at byte %zu is not "
			"one well-formed PKCS#8 key", at);
	if (!cf_key_is_p256(*out)) {
		EVP_PKEY_free(*out);
		*out = NULL;
		return cf_error_set(err, CF_ERR_POLICY,
			"cluster bundle: the private key is not a P-256 key; "
			"coffer uses P-256 only");
	}
	return CF_OK;
}

cf_status cf_cluster_bundle_decode(const unsigned char *pem, size_t len,
				   const char *name, X509 **cert,
				   STACK_OF(X509) **chain, EVP_PKEY **key,
				   cf_error *err)
{
	BIO *bio = NULL;
	STACK_OF(X509) *certs = NULL;
	EVP_PKEY *pkey = NULL;
	char *label = NULL, *header = NULL;
	unsigned char *data = NULL;
	long data_len = 0;
	X509 *first = NULL;
	cf_status rc = CF_OK;

	*cert = NULL;
	if (chain != NULL)
		*chain = NULL;
	*key = NULL;
	if (len > CF_CLUSTER_BUNDLE_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"cluster bundle: larger than %u bytes",
			CF_CLUSTER_BUNDLE_MAX);
	if (len == 0)
		return cf_error_set(err, CF_ERR_PARSE, "cluster bundle: empty");
	/* PEM's line reader works on C strings: a NUL would hide text. */
	if (memchr(pem, '\0', len) != NULL)
		return cf_error_set(err, CF_ERR_PARSE,
			"cluster bundle: holds a NUL byte; a bundle is PEM text");
	bio = BIO_new_mem_buf(pem, (int)len);
	certs = sk_X509_new_null();
	if (bio == NULL || certs == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		size_t at = len - BIO_ctrl_pending(bio);
		X509 *one = NULL;

		/*
		 * PEM_read_bio skips any text before a BEGIN line; only white
		 * space may stand there, and the BEGIN must start a line.
		 */
		while (at < len && is_space(pem[at]))
			at++;
		if (at == len)
			break;
		if ((at > 0 && pem[at - 1] != '\n') || len - at < 11 ||
		    memcmp(pem + at, "-----BEGIN ", 11) != 0) {
			rc = cf_error_set(err, CF_ERR_PARSE,
				"cluster bundle: unexpected text at byte %zu; a "
				"bundle holds PEM blocks and white space only",
				at);
			goto out;
		}
		/* PEM_FLAG_SECURE: the key's DER goes to the secure heap. */
		if (PEM_read_bio_ex(bio, &label, &header, &data, &data_len,
				    PEM_FLAG_SECURE) != 1) {
			rc = cf_error_set_ssl(err, CF_ERR_PARSE,
				"cluster bundle: the PEM block at byte %zu is "
				"malformed or cut short", at);
			goto out;
		}
		if (!block_lines_ok(pem, at, len - BIO_ctrl_pending(bio),
				    label)) {
			rc = cf_error_set(err, CF_ERR_PARSE,
				"cluster bundle: the PEM block at byte %zu does "
				"not begin and end with its own BEGIN and END "
				"lines", at);
		} else if (header != NULL && header[0] != '\0') {
			/* Proc-Type and DEK-Info: the legacy key encryption. */
			rc = cf_error_set(err, CF_ERR_PARSE,
				"cluster bundle: the PEM block at byte %zu has "
				"headers; a bundle's blocks have none", at);
		} else if (strcmp(label, "CERTIFICATE") == 0) {
			rc = block_cert(data, data_len, at, &one, err);
			if (rc == CF_OK && !sk_X509_push(certs, one)) {
				X509_free(one);
				rc = cf_error_set_ssl(err, CF_ERR_NOMEM,
						      "out of memory");
			}
		} else if (strcmp(label, "PRIVATE KEY") == 0) {
			if (pkey != NULL)
				rc = cf_error_set(err, CF_ERR_PARSE,
					"cluster bundle: a second private key "
					"at byte %zu; a bundle holds exactly "
					"one", at);
			else
				rc = block_key(data, data_len, at, &pkey, err);
		} else if (strcmp(label, "ENCRYPTED PRIVATE KEY") == 0) {
			rc = cf_error_set(err, CF_ERR_PARSE,
				"cluster bundle: the private key is encrypted; "
				"a bundle carries it as unencrypted PKCS#8 "
				"(the envelope that carries it is sealed)");
		} else {
			rc = cf_error_set(err, CF_ERR_PARSE,
				"cluster bundle: a PEM block of type %s at byte "
				"%zu; a bundle holds only CERTIFICATE and "
				"PRIVATE KEY blocks",
				plain_label(label) ? label : "(unreadable)", at);
		}
		OPENSSL_secure_free(label);
		OPENSSL_secure_free(header);
		OPENSSL_secure_clear_free(data, data_len > 0 ? (size_t)data_len : 0);
		label = header = NULL;
		data = NULL;
		if (rc != CF_OK)
			goto out;
	}
	if (sk_X509_num(certs) == 0) {
		rc = cf_error_set(err, CF_ERR_PARSE,
			"cluster bundle: holds no certificate");
		goto out;
	}
	if (pkey == NULL) {
		rc = cf_error_set(err, CF_ERR_PARSE,
			"cluster bundle: holds no private key");
		goto out;
	}
	first = sk_X509_value(certs, 0);
	rc = cf_cluster_check_cert(first, pkey, name, err);
	if (rc != CF_OK)
		goto out;
	(void)sk_X509_shift(certs);
	*cert = first;
	*key = pkey;
	pkey = NULL;
	if (chain != NULL && sk_X509_num(certs) > 0) {
		*chain = certs;
		certs = NULL;
	}
out:
	ERR_clear_error();
	OPENSSL_secure_free(label);
	OPENSSL_secure_free(header);
	OPENSSL_secure_clear_free(data, data_len > 0 ? (size_t)data_len : 0);
	EVP_PKEY_free(pkey);
	sk_X509_pop_free(certs, X509_free);
	BIO_free(bio);
	return rc;
}

/* ------------------------------------------------------------- proof */

static int is_fingerprint(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[i] == '\0';
}

/* The signed text; every part is 64 lowercase hex, so it is unambiguous. */
static cf_status proof_text(const char *tenant, const char *cluster_fp,
			    const char *member_fp, char *buf, size_t size,
			    size_t *len, cf_error *err)
{
	int n;

	if (!is_fingerprint(tenant) || !is_fingerprint(cluster_fp) ||
	    !is_fingerprint(member_fp))
		return cf_error_set(err, CF_ERR_USAGE,
			"cluster proof: tenant and fingerprints must be 64 "
			"lowercase hex characters");
	n = snprintf(buf, size, "coffer cluster member v1\n%s\n%s\n%s", tenant,
		     cluster_fp, member_fp);
	if (n < 0 || (size_t)n >= size)
		return cf_error_set(err, CF_ERR_USAGE, "cluster proof: text too long");
	*len = (size_t)n;
	return CF_OK;
}

cf_status cf_cluster_proof(EVP_PKEY *cluster_key, const char *tenant,
			   const char *cluster_fp, const char *member_fp,
			   char out[CF_CLUSTER_PROOF_MAX + 1], cf_error *err)
{
	char text[256];
	unsigned char sig[PROOF_SIG_MAX + 8];
	size_t text_len = 0, sig_len = sizeof(sig);
	EVP_MD_CTX *ctx = NULL;
	cf_status rc;

	out[0] = '\0';
	if (cluster_key == NULL || !cf_key_is_p256(cluster_key))
		return cf_error_set(err, CF_ERR_USAGE,
				    "cluster proof: the cluster key is not P-256");
	rc = proof_text(tenant, cluster_fp, member_fp, text, sizeof(text),
			&text_len, err);
	if (rc != CF_OK)
		return rc;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL ||
	    EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, cluster_key) != 1 ||
	    EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)text,
			   text_len) != 1) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				      "cluster proof: signing failed");
		goto out;
	}
	if (sig_len > PROOF_SIG_MAX) {
		rc = cf_error_set(err, CF_ERR_CRYPTO,
				  "cluster proof: unexpected signature length");
		goto out;
	}
	rc = cf_b64_encode(sig, sig_len, out, CF_CLUSTER_PROOF_MAX + 1, NULL, err);
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

cf_status cf_cluster_proof_check(X509 *cluster_cert, const char *tenant,
				 const char *member_fp, const char *proof,
				 cf_error *err)
{
	char cluster_fp[65], text[256];
	unsigned char *sig = NULL;
	size_t sig_len = 0, text_len = 0, proof_len;
	EVP_MD_CTX *ctx = NULL;
	cf_error sub;
	cf_status rc;

	rc = cf_cluster_check_cert(cluster_cert, NULL, NULL, err);
	if (rc != CF_OK)
		return rc;
	rc = cf_cert_fingerprint(cluster_cert, cluster_fp, err);
	if (rc != CF_OK)
		return rc;
	rc = proof_text(tenant, cluster_fp, member_fp, text, sizeof(text),
			&text_len, err);
	if (rc != CF_OK)
		return rc;
	if (proof == NULL)
		return cf_error_set(err, CF_ERR_PARSE, "no cluster proof");
	proof_len = strnlen(proof, CF_CLUSTER_PROOF_MAX + 1);
	if (proof_len > CF_CLUSTER_PROOF_MAX ||
	    cf_b64_decode(proof, proof_len, PROOF_SIG_MAX, "cluster proof",
			  &sig, &sig_len, &sub) != CF_OK ||
	    sig_len < PROOF_SIG_MIN) {
		rc = cf_error_set(err, CF_ERR_PARSE,
			"the cluster proof is not the base64 of an ECDSA "
			"signature (at most %d characters)",
			CF_CLUSTER_PROOF_MAX);
		goto out;
	}
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL ||
	    EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL,
				 X509_get0_pubkey(cluster_cert)) != 1) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				      "cluster proof: cannot set up verification");
		goto out;
	}
	if (EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)text,
			     text_len) != 1) {
		ERR_clear_error();
		rc = cf_error_set(err, CF_ERR_SIGNATURE,
			"the cluster proof does not verify: it was not made "
			"with cluster %.16s...'s key for this member and tenant",
			cluster_fp);
		goto out;
	}
	rc = CF_OK;
out:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(sig);
	return rc;
}

/* ----------------------------------------------------------- PKCS#12 */

/*
 * The password NUL-terminated in the secure heap (PKCS12_create takes a C
 * string); freed with OPENSSL_secure_clear_free(p, len + 1).
 */
static cf_status pass_text(const cf_secret *pass, char **out, cf_error *err)
{
	size_t len;

	*out = NULL;
	if (pass == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "no PKCS#12 password");
	len = cf_secret_len(pass);
	if (len > P12_PASS_MAX)
		return cf_error_set(err, CF_ERR_USAGE,
			"the PKCS#12 password is longer than %d bytes",
			P12_PASS_MAX);
	if (len > 0 && memchr(cf_secret_cdata(pass), '\0', len) != NULL)
		return cf_error_set(err, CF_ERR_USAGE,
				    "the PKCS#12 password holds a NUL byte");
	*out = OPENSSL_secure_malloc(len + 1);
	if (*out == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	if (len > 0)
		memcpy(*out, cf_secret_cdata(pass), len);
	(*out)[len] = '\0';
	return CF_OK;
}

cf_status cf_cluster_p12_export(X509 *cert, STACK_OF(X509) *chain,
				EVP_PKEY *key, const cf_secret *pass,
				unsigned char **der, size_t *len,
				cf_error *err)
{
	char name[CF_NAME_MAX_BYTES + 1], friendly[CF_NAME_MAX_BYTES + 32];
	char *pw = NULL;
	PKCS12 *p12 = NULL;
	int n;
	cf_status rc;

	*der = NULL;
	*len = 0;
	rc = cf_cluster_check_cert(cert, key, NULL, err);
	if (rc != CF_OK)
		return rc;
	rc = cluster_name(cert, name, sizeof(name), err);
	if (rc != CF_OK)
		return rc;
	if (pass == NULL || cf_secret_len(pass) == 0)
		return cf_error_set(err, CF_ERR_USAGE,
			"a PKCS#12 file of a cluster key needs a non-empty "
			"password");
	rc = pass_text(pass, &pw, err);
	if (rc != CF_OK)
		return rc;
	snprintf(friendly, sizeof(friendly), "coffer cluster %s", name);
	/*
	 * AES-256-CBC for both bags makes OpenSSL 3 use PBES2 with PBKDF2
	 * (PRF HMAC-SHA256).  mac_iter -1 leaves out the MAC PKCS12_create
	 * would make with SHA-1; PKCS12_set_mac adds it with SHA-256.
	 */
	p12 = PKCS12_create_ex(pw, friendly, key, cert, chain, NID_aes_256_cbc,
			       NID_aes_256_cbc, CF_CLUSTER_P12_ITER, -1, 0,
			       NULL, NULL);
	if (p12 == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not make the PKCS#12 file of cluster %s", name);
		goto out;
	}
	if (PKCS12_set_mac(p12, pw, -1, NULL, 0, CF_CLUSTER_P12_ITER,
			   EVP_sha256()) != 1) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not add the MAC to the PKCS#12 file of cluster %s",
			name);
		goto out;
	}
	n = i2d_PKCS12(p12, der);
	if (n <= 0) {
		*der = NULL;
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not encode the PKCS#12 file of cluster %s", name);
		goto out;
	}
	*len = (size_t)n;
	rc = CF_OK;
out:
	PKCS12_free(p12);
	if (pw != NULL)
		OPENSSL_secure_clear_free(pw, strlen(pw) + 1);
	return rc;
}

static const char p12_reexport[] =
	"; re-export it with `coffer cluster export` or `openssl pkcs12 "
	"-export -keypbe AES-256-CBC -certpbe AES-256-CBC -macalg sha256`";

static const char *obj_text(const ASN1_OBJECT *obj, char *buf, int size)
{
	if (obj == NULL || OBJ_obj2txt(buf, size, obj, 0) <= 0)
		snprintf(buf, (size_t)size, "an unknown algorithm");
	return buf;
}

static cf_status check_iter(const ASN1_INTEGER *iter, const char *what,
			    cf_error *err)
{
	int64_t n = 1;   /* PKCS#12: an absent MAC iteration count means 1 */

	if (iter != NULL && !ASN1_INTEGER_get_int64(&n, iter))
		n = 0;
	if (n < 1 || n > CF_CLUSTER_P12_ITER_MAX) {
		ERR_clear_error();
		return cf_error_set(err, CF_ERR_POLICY,
			"PKCS#12: the %s's iteration count is not between 1 "
			"and %d%s", what, CF_CLUSTER_P12_ITER_MAX, p12_reexport);
	}
	return CF_OK;
}

/*
 * The password-based encryption of a bag (what): PBES2, PBKDF2 with an
 * HMAC-SHA2 PRF and a bounded iteration count, AES-CBC.
 */
static cf_status check_pbe(const X509_ALGOR *alg, const char *what,
			   cf_error *err)
{
	const ASN1_OBJECT *obj = NULL;
	const void *param = NULL;
	int ptype = 0;
	PBE2PARAM *pbe2 = NULL;
	PBKDF2PARAM *kdf = NULL;
	char name[80];
	int nid;
	cf_status rc = CF_OK;

	X509_ALGOR_get0(&obj, &ptype, &param, alg);
	if (OBJ_obj2nid(obj) != NID_pbes2) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"PKCS#12: the %s is encrypted with %s, a legacy "
			"algorithm coffer refuses%s", what,
			obj_text(obj, name, sizeof(name)), p12_reexport);
		goto out;
	}
	if (ptype != V_ASN1_SEQUENCE ||
	    (pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM),
					      alg->parameter)) == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_PARSE,
			"PKCS#12: the %s's PBES2 parameters are malformed", what);
		goto out;
	}
	if (OBJ_obj2nid(pbe2->keyfunc->algorithm) != NID_id_pbkdf2) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"PKCS#12: the %s's key derivation is %s, not PBKDF2%s",
			what, obj_text(pbe2->keyfunc->algorithm, name,
				       sizeof(name)), p12_reexport);
		goto out;
	}
	if (pbe2->keyfunc->parameter == NULL ||
	    pbe2->keyfunc->parameter->type != V_ASN1_SEQUENCE ||
	    (kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM),
					     pbe2->keyfunc->parameter)) == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_PARSE,
			"PKCS#12: the %s's PBKDF2 parameters are malformed", what);
		goto out;
	}
	/* An absent PRF is HMAC-SHA1, the default of PKCS#5. */
	nid = kdf->prf != NULL ? OBJ_obj2nid(kdf->prf->algorithm) : NID_hmacWithSHA1;
	if (nid != NID_hmacWithSHA256 && nid != NID_hmacWithSHA384 &&
	    nid != NID_hmacWithSHA512) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"PKCS#12: the %s's PBKDF2 uses %s, a legacy PRF coffer "
			"refuses%s", what,
			kdf->prf != NULL ? obj_text(kdf->prf->algorithm, name,
						   sizeof(name))
					 : "hmacWithSHA1", p12_reexport);
		goto out;
	}
	rc = check_iter(kdf->iter, what, err);
	if (rc != CF_OK)
		goto out;
	nid = OBJ_obj2nid(pbe2->encryption->algorithm);
	if (nid != NID_aes_256_cbc && nid != NID_aes_192_cbc &&
	    nid != NID_aes_128_cbc) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"PKCS#12: the %s is encrypted with %s; coffer accepts "
			"AES-CBC only%s", what,
			obj_text(pbe2->encryption->algorithm, name, sizeof(name)),
			p12_reexport);
		goto out;
	}
out:
	PBKDF2PARAM_free(kdf);
	PBE2PARAM_free(pbe2);
	return rc;
}

/* What one pass over the bags collects. */
struct p12_contents {
	EVP_PKEY *key;
	STACK_OF(X509) *certs;
};

static cf_status take_bags(const STACK_OF(PKCS12_SAFEBAG) *bags,
			   const char *pw, struct p12_contents *c,
			   cf_error *err)
{
	char name[80];

	for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
		const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, i);
		const X509_ALGOR *alg = NULL;
		PKCS8_PRIV_KEY_INFO *p8 = NULL;
		X509 *cert = NULL;
		cf_status rc;

		switch (PKCS12_SAFEBAG_get_nid(bag)) {
		case NID_pkcs8ShroudedKeyBag:
			if (c->key != NULL)
				return cf_error_set(err, CF_ERR_PARSE,
					"PKCS#12: holds more than one private "
					"key; a cluster file holds exactly one");
			X509_SIG_get0(PKCS12_SAFEBAG_get0_pkcs8(bag), &alg, NULL);
			rc = check_pbe(alg, "private key", err);
			if (rc != CF_OK)
				return rc;
			p8 = PKCS12_decrypt_skey_ex(bag, pw, -1, NULL, NULL);
			if (p8 == NULL)
				return cf_error_set_ssl(err, CF_ERR_PASSPHRASE,
					"PKCS#12: the password opens the file "
					"but not its private key");
			c->key = EVP_PKCS82PKEY(p8);
			PKCS8_PRIV_KEY_INFO_free(p8);
			if (c->key == NULL)
				return cf_error_set_ssl(err, CF_ERR_PARSE,
					"PKCS#12: the private key is malformed");
			break;
		case NID_keyBag:
			return cf_error_set(err, CF_ERR_POLICY,
				"PKCS#12: holds an unencrypted private key%s",
				p12_reexport);
		case NID_certBag:
			if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate)
				return cf_error_set(err, CF_ERR_PARSE,
					"PKCS#12: holds a certificate that is "
					"not X.509");
			cert = PKCS12_SAFEBAG_get1_cert(bag);
			if (cert == NULL)
				return cf_error_set_ssl(err, CF_ERR_PARSE,
					"PKCS#12: a certificate is malformed");
			if (!sk_X509_push(c->certs, cert)) {
				X509_free(cert);
				return cf_error_set_ssl(err, CF_ERR_NOMEM,
							"out of memory");
			}
			break;
		default:
			return cf_error_set(err, CF_ERR_PARSE,
				"PKCS#12: holds a bag of type %s; a cluster file "
				"holds only certificates and one shrouded key",
				obj_text(PKCS12_SAFEBAG_get0_type(bag), name,
					 sizeof(name)));
		}
	}
	return CF_OK;
}

static cf_status take_safes(PKCS12 *p12, const char *pw,
			    struct p12_contents *c, cf_error *err)
{
	STACK_OF(PKCS7) *safes = PKCS12_unpack_authsafes(p12);
	cf_status rc = CF_OK;
	char name[80];

	if (safes == NULL)
		return cf_error_set_ssl(err, CF_ERR_PARSE,
			"PKCS#12: the contents are malformed");
	for (int i = 0; rc == CF_OK && i < sk_PKCS7_num(safes); i++) {
		PKCS7 *p7 = sk_PKCS7_value(safes, i);
		STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
		int nid = OBJ_obj2nid(p7->type);

		if (nid == NID_pkcs7_data) {
			bags = PKCS12_unpack_p7data(p7);
		} else if (nid == NID_pkcs7_encrypted) {
			if (p7->d.encrypted == NULL ||
			    p7->d.encrypted->enc_data == NULL ||
			    p7->d.encrypted->enc_data->algorithm == NULL) {
				rc = cf_error_set(err, CF_ERR_PARSE,
					"PKCS#12: encrypted contents are malformed");
				break;
			}
			rc = check_pbe(p7->d.encrypted->enc_data->algorithm,
				       "certificate bag", err);
			if (rc != CF_OK)
				break;
			bags = PKCS12_unpack_p7encdata(p7, pw, -1);
			if (bags == NULL) {
				rc = cf_error_set_ssl(err, CF_ERR_PASSPHRASE,
					"PKCS#12: the password opens the file "
					"but not its certificates");
				break;
			}
		} else {
			rc = cf_error_set(err, CF_ERR_PARSE,
				"PKCS#12: contents of type %s; coffer reads "
				"password-protected files only",
				obj_text(p7->type, name, sizeof(name)));
			break;
		}
		if (bags == NULL) {
			rc = cf_error_set_ssl(err, CF_ERR_PARSE,
				"PKCS#12: the contents are malformed");
			break;
		}
		rc = take_bags(bags, pw, c, err);
		sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	}
	sk_PKCS7_pop_free(safes, PKCS7_free);
	return rc;
}

cf_status cf_cluster_p12_import(const unsigned char *der, size_t len,
				const cf_secret *pass, const char *name,
				X509 **cert, STACK_OF(X509) **chain,
				EVP_PKEY **key, cf_error *err)
{
	struct p12_contents c = { NULL, NULL };
	const unsigned char *p = der;
	const ASN1_OCTET_STRING *mac = NULL;
	const X509_ALGOR *mac_alg = NULL;
	const ASN1_OBJECT *mac_obj = NULL;
	const ASN1_INTEGER *mac_iter = NULL;
	PKCS12 *p12 = NULL;
	X509 *mine = NULL;
	char *pw = NULL, algname[80];
	int mac_nid;
	cf_status rc;

	*cert = NULL;
	if (chain != NULL)
		*chain = NULL;
	*key = NULL;
	if (len > CF_CLUSTER_P12_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"PKCS#12: larger than %u bytes; not a cluster key file",
			CF_CLUSTER_P12_MAX);
	p12 = d2i_PKCS12(NULL, &p, (long)len);
	if (p12 == NULL || p != der + len) {
		rc = cf_error_set_ssl(err, CF_ERR_PARSE,
			"not a PKCS#12 file (DER), or trailing bytes after it");
		goto out;
	}
	if (!PKCS12_mac_present(p12)) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"PKCS#12: has no MAC, so its integrity cannot be "
			"checked%s", p12_reexport);
		goto out;
	}
	PKCS12_get0_mac(&mac, &mac_alg, NULL, &mac_iter, p12);
	if (mac_alg != NULL)
		X509_ALGOR_get0(&mac_obj, NULL, NULL, mac_alg);
	mac_nid = OBJ_obj2nid(mac_obj);
	if (mac_nid != NID_sha256 && mac_nid != NID_sha384 &&
	    mac_nid != NID_sha512) {
		rc = cf_error_set(err, CF_ERR_POLICY,
			"PKCS#12: the MAC uses %s, a legacy digest coffer "
			"refuses%s", obj_text(mac_obj, algname, sizeof(algname)),
			p12_reexport);
		goto out;
	}
	/* Before the MAC is computed: its count bounds the work it makes. */
	rc = check_iter(mac_iter, "MAC", err);
	if (rc != CF_OK)
		goto out;
	rc = pass_text(pass, &pw, err);
	if (rc != CF_OK)
		goto out;
	if (PKCS12_verify_mac(p12, pw, -1) != 1) {
		ERR_clear_error();
		rc = cf_error_set(err, CF_ERR_PASSPHRASE,
			"the password does not open this PKCS#12 file "
			"(wrong password, or the file was altered)");
		goto out;
	}
	c.certs = sk_X509_new_null();
	if (c.certs == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = take_safes(p12, pw, &c, err);
	if (rc != CF_OK)
		goto out;
	if (c.key == NULL) {
		rc = cf_error_set(err, CF_ERR_PARSE, "PKCS#12: holds no private key");
		goto out;
	}
	/* The cluster's certificate is the one the key belongs to. */
	for (int i = 0; i < sk_X509_num(c.certs); i++)
		if (X509_check_private_key(sk_X509_value(c.certs, i), c.key) == 1) {
			mine = sk_X509_delete(c.certs, i);
			break;
		}
	ERR_clear_error();
	if (mine == NULL) {
		rc = cf_error_set(err, CF_ERR_PARSE,
			"PKCS#12: holds no certificate for its private key");
		goto out;
	}
	rc = cf_cluster_check_cert(mine, c.key, name, err);
	if (rc != CF_OK)
		goto out;
	*cert = mine;
	mine = NULL;
	*key = c.key;
	c.key = NULL;
	if (chain != NULL && sk_X509_num(c.certs) > 0) {
		*chain = c.certs;
		c.certs = NULL;
	}
out:
	ERR_clear_error();
	if (pw != NULL)
		OPENSSL_secure_clear_free(pw, strlen(pw) + 1);
	X509_free(mine);
	EVP_PKEY_free(c.key);
	sk_X509_pop_free(c.certs, X509_free);
	PKCS12_free(p12);
	return rc;
}

cf_status cf_cluster_may_give(X509 *signer, X509 *agent, cf_error *err)
{
	struct cf_perms *perms = NULL;
	char *groups = NULL, *save = NULL, *g;
	char scn[CF_CN_MAX_BYTES + 1], acn[CF_CN_MAX_BYTES + 1];
	cf_error quiet = { 0 };
	int ok = 0, any = 0;

	if (cf_cert_perms(signer, &perms, &quiet) == CF_OK &&
	    cf_cert_ext_text(agent, cf_nid_groups(), &groups, &quiet) == CF_OK) {
		for (g = groups ? strtok_r(groups, ",", &save) : NULL;
		     g != NULL && !ok; g = strtok_r(NULL, ",", &save)) {
			any = 1;
			ok = cf_perms_allows(perms, "agent.enroll", g);
		}
		if (!any)
			ok = cf_perms_covers(perms, "agent.enroll", "**");
	}
	cf_perms_free(perms);
	OPENSSL_free(groups);
	if (ok)
		return CF_OK;
	cf_cert_cn(signer, scn, sizeof(scn));
	cf_cert_cn(agent, acn, sizeof(acn));
	return cf_error_set(err, CF_ERR_POLICY, "\"%s\" may not give agent "
		"\"%s\" a cluster key: none of its agent.enroll rules covers "
		"the agent's groups (only who could have enrolled an agent "
		"may make it a member)", scn, acn);
}
