/*
 * sealer.c - fast sealing of one signed record to many recipients.
 *
 * The output is a standard CMS AuthEnvelopedData (RFC 5083) with one
 * KeyAgreeRecipientInfo (RFC 5652 6.2.2, RFC 5753 3.1), DER, which OpenSSL's
 * own CMS code (and `openssl cms -decrypt`) opens.  We do not use
 * CMS_encrypt per recipient: it would encrypt the content again, fetch
 * ciphers and digests and build key contexts each time, which costs about
 * as much as the cryptography itself (DESIGN 8).  Instead:
 *   - the content is encrypted once with AES-256-GCM (cf_sealer_new);
 *   - algorithms are fetched once and contexts reused across recipients;
 *   - per recipient only the ephemeral key, the ECDH derive, the X9.63 KDF
 *     and the AES key wrap are computed, and the recipient info is encoded
 *     with OpenSSL's own DER encoder from the ASN.1 templates below.
 *
 * Plaintext held here: the content-encryption key (secure memory) and,
 * briefly, the ECDH secret and key-encryption key (stack, wiped).
 */
#include "envelope.h"

#include <openssl/asn1t.h>
#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <string.h>

/* ----------------------------------------------- ASN.1 (RFC 5652, 5083) */

typedef struct {
	X509_ALGOR *algorithm;
	ASN1_BIT_STRING *publicKey;
} CF_ORIG_PUBKEY;

ASN1_SEQUENCE(CF_ORIG_PUBKEY) = {
	ASN1_SIMPLE(CF_ORIG_PUBKEY, algorithm, X509_ALGOR),
	ASN1_SIMPLE(CF_ORIG_PUBKEY, publicKey, ASN1_BIT_STRING)
} static_ASN1_SEQUENCE_END(CF_ORIG_PUBKEY)

/* OriginatorIdentifierOrKey; we only ever emit originatorKey [1]. */
typedef struct {
	int type;
	union {
		CF_ORIG_PUBKEY *originatorKey;
	} d;
} CF_ORIGINATOR;

ASN1_CHOICE(CF_ORIGINATOR) = {
	ASN1_IMP(CF_ORIGINATOR, d.originatorKey, CF_ORIG_PUBKEY, 1)
} static_ASN1_CHOICE_END(CF_ORIGINATOR)

typedef struct {
	X509_NAME *issuer;
	ASN1_INTEGER *serialNumber;
} CF_ISSUER_SERIAL;

ASN1_SEQUENCE(CF_ISSUER_SERIAL) = {
	ASN1_SIMPLE(CF_ISSUER_SERIAL, issuer, X509_NAME),
	ASN1_SIMPLE(CF_ISSUER_SERIAL, serialNumber, ASN1_INTEGER)
} static_ASN1_SEQUENCE_END(CF_ISSUER_SERIAL)

/* RecipientEncryptedKey with rid = issuerAndSerialNumber. */
typedef struct {
	CF_ISSUER_SERIAL *rid;
	ASN1_OCTET_STRING *encryptedKey;
} CF_REK;

ASN1_SEQUENCE(CF_REK) = {
	ASN1_SIMPLE(CF_REK, rid, CF_ISSUER_SERIAL),
	ASN1_SIMPLE(CF_REK, encryptedKey, ASN1_OCTET_STRING)
} static_ASN1_SEQUENCE_END(CF_REK)

DEFINE_STACK_OF(CF_REK)

typedef struct {
	ASN1_INTEGER *version;                 /* 3 */
	CF_ORIGINATOR *originator;             /* [0] EXPLICIT */
	X509_ALGOR *keyEncryptionAlgorithm;
	STACK_OF(CF_REK) *recipientEncryptedKeys;
} CF_KARI;

ASN1_SEQUENCE(CF_KARI) = {
	ASN1_SIMPLE(CF_KARI, version, ASN1_INTEGER),
	ASN1_EXP(CF_KARI, originator, CF_ORIGINATOR, 0),
	ASN1_SIMPLE(CF_KARI, keyEncryptionAlgorithm, X509_ALGOR),
	ASN1_SEQUENCE_OF(CF_KARI, recipientEncryptedKeys, CF_REK)
} static_ASN1_SEQUENCE_END(CF_KARI)

/* RecipientInfo; we only ever emit kari [1]. */
typedef struct {
	int type;
	union {
		CF_KARI *kari;
	} d;
} CF_RI;

ASN1_CHOICE(CF_RI) = {
	ASN1_IMP(CF_RI, d.kari, CF_KARI, 1)
} static_ASN1_CHOICE_END(CF_RI)

DEFINE_STACK_OF(CF_RI)

typedef struct {
	ASN1_OBJECT *contentType;
	X509_ALGOR *contentEncryptionAlgorithm;
	ASN1_OCTET_STRING *encryptedContent;   /* [0] IMPLICIT */
} CF_ECI;

ASN1_SEQUENCE(CF_ECI) = {
	ASN1_SIMPLE(CF_ECI, contentType, ASN1_OBJECT),
	ASN1_SIMPLE(CF_ECI, contentEncryptionAlgorithm, X509_ALGOR),
	ASN1_IMP_OPT(CF_ECI, encryptedContent, ASN1_OCTET_STRING, 0)
} static_ASN1_SEQUENCE_END(CF_ECI)

typedef struct {
	ASN1_INTEGER *version;                 /* 0 */
	STACK_OF(CF_RI) *recipientInfos;
	CF_ECI *authEncryptedContentInfo;
	ASN1_OCTET_STRING *mac;
} CF_AED;

ASN1_SEQUENCE(CF_AED) = {
	ASN1_SIMPLE(CF_AED, version, ASN1_INTEGER),
	ASN1_SET_OF(CF_AED, recipientInfos, CF_RI),
	ASN1_SIMPLE(CF_AED, authEncryptedContentInfo, CF_ECI),
	ASN1_SIMPLE(CF_AED, mac, ASN1_OCTET_STRING)
} static_ASN1_SEQUENCE_END(CF_AED)

typedef struct {
	ASN1_OBJECT *contentType;
	CF_AED *content;                       /* [0] EXPLICIT */
} CF_CI;

ASN1_SEQUENCE(CF_CI) = {
	ASN1_SIMPLE(CF_CI, contentType, ASN1_OBJECT),
	ASN1_EXP(CF_CI, content, CF_AED, 0)
} static_ASN1_SEQUENCE_END(CF_CI)

/* GCMParameters (RFC 5084). */
typedef struct {
	ASN1_OCTET_STRING *nonce;
	ASN1_INTEGER *icvLen;
} CF_GCM_PARAMS;

ASN1_SEQUENCE(CF_GCM_PARAMS) = {
	ASN1_SIMPLE(CF_GCM_PARAMS, nonce, ASN1_OCTET_STRING),
	ASN1_SIMPLE(CF_GCM_PARAMS, icvLen, ASN1_INTEGER)
} static_ASN1_SEQUENCE_END(CF_GCM_PARAMS)

/* Typed allocation of the template types above. */
#define ASN1_NEW(T) ((T *)ASN1_item_new(ASN1_ITEM_rptr(T)))
#define ASN1_FREE(T, p) ASN1_item_free((ASN1_VALUE *)(p), ASN1_ITEM_rptr(T))

/* ------------------------------------------------------------- sealer */

#define CEK_LEN 32
#define IV_LEN 12
#define TAG_LEN 16
#define WRAPPED_LEN (CEK_LEN + 8)
#define POINT_LEN 65 /* uncompressed P-256 point */

struct cf_sealer {
	cf_secret *cek;
	unsigned char iv[IV_LEN];
	unsigned char tag[TAG_LEN];
	unsigned char *ciphertext;
	size_t ciphertext_len;

	/* Fetched once, reused for every recipient. */
	EVP_PKEY_CTX *keygen;
	EVP_KDF_CTX *kdf;
	EVP_CIPHER *wrap;
	EVP_CIPHER_CTX *wrap_ctx;
	unsigned char *shared_info;   /* ECC-CMS-SharedInfo DER, constant */
	size_t shared_info_len;

	/* The envelope skeleton; only the recipient info changes. */
	CF_CI *ci;
};

static X509_ALGOR *algor(int nid, int ptype, void *pval)
{
	X509_ALGOR *a = X509_ALGOR_new();

	if (a != NULL && !X509_ALGOR_set0(a, OBJ_nid2obj(nid), ptype, pval)) {
		X509_ALGOR_free(a);
		return NULL;
	}
	return a;
}

/* Contexts and constant DER shared by all recipients of this sealer. */
static cf_status sealer_prepare(cf_sealer *s, cf_error *err)
{
	EVP_KDF *kdf = NULL;
	X509_ALGOR *wrap_alg = NULL;
	CF_GCM_PARAMS *gcm = NULL;
	ASN1_STRING *gcm_der = NULL;
	CF_AED *aed;
	int len;
	cf_status rc = CF_OK;

	s->keygen = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (s->keygen == NULL || EVP_PKEY_keygen_init(s->keygen) <= 0 ||
	    EVP_PKEY_CTX_set_group_name(s->keygen, "P-256") <= 0)
		goto ssl_fail;
	kdf = EVP_KDF_fetch(NULL, "X963KDF", NULL);
	s->kdf = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	s->wrap = EVP_CIPHER_fetch(NULL, "id-aes256-wrap", NULL);
	s->wrap_ctx = EVP_CIPHER_CTX_new();
	if (s->kdf == NULL || s->wrap == NULL || s->wrap_ctx == NULL)
		goto ssl_fail;
	EVP_CIPHER_CTX_set_flags(s->wrap_ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);

	/* keyInfo of the KDF input = the key-wrap algorithm, no parameters. */
	wrap_alg = algor(NID_id_aes256_wrap, V_ASN1_UNDEF, NULL);
	if (wrap_alg == NULL)
		goto ssl_fail;
	len = CMS_SharedInfo_encode(&s->shared_info, wrap_alg, NULL, CEK_LEN);
	if (len <= 0)
		goto ssl_fail;
	s->shared_info_len = (size_t)len;

	s->ci = ASN1_NEW(CF_CI);
	if (s->ci == NULL)
		goto ssl_fail;
	s->ci->contentType = OBJ_nid2obj(NID_id_smime_ct_authEnvelopedData);
	s->ci->content = aed = ASN1_NEW(CF_AED);
	if (aed == NULL || !ASN1_INTEGER_set(aed->version, 0))
		goto ssl_fail;
	aed->authEncryptedContentInfo->contentType = OBJ_nid2obj(NID_pkcs7_data);
	gcm = ASN1_NEW(CF_GCM_PARAMS);
	if (gcm == NULL || !ASN1_OCTET_STRING_set(gcm->nonce, s->iv, IV_LEN) ||
	    !ASN1_INTEGER_set(gcm->icvLen, TAG_LEN) ||
	    ASN1_item_pack(gcm, ASN1_ITEM_rptr(CF_GCM_PARAMS), &gcm_der) == NULL)
		goto ssl_fail;
	X509_ALGOR_free(aed->authEncryptedContentInfo->contentEncryptionAlgorithm);
	aed->authEncryptedContentInfo->contentEncryptionAlgorithm =
		algor(NID_aes_256_gcm, V_ASN1_SEQUENCE, gcm_der);
	if (aed->authEncryptedContentInfo->contentEncryptionAlgorithm == NULL)
		goto ssl_fail;
	gcm_der = NULL;
	aed->authEncryptedContentInfo->encryptedContent = ASN1_OCTET_STRING_new();
	if (aed->authEncryptedContentInfo->encryptedContent == NULL ||
	    !ASN1_OCTET_STRING_set(aed->authEncryptedContentInfo->encryptedContent,
				   s->ciphertext, (int)s->ciphertext_len) ||
	    !ASN1_OCTET_STRING_set(aed->mac, s->tag, TAG_LEN))
		goto ssl_fail;
	goto out;
ssl_fail:
	rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
		"could not set up envelope encryption");
out:
	EVP_KDF_free(kdf);
	X509_ALGOR_free(wrap_alg);
	ASN1_FREE(CF_GCM_PARAMS, gcm);
	ASN1_STRING_free(gcm_der);
	return rc;
}

static cf_status encrypt_content(cf_sealer *s, const cf_secret *content,
				 cf_error *err)
{
	EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	size_t len = cf_secret_len(content);
	int outl = 0, finl = 0;
	cf_status rc = CF_OK;

	if (len > INT_MAX - 16) {
		rc = cf_error_set(err, CF_ERR_TOO_LARGE, "content too large");
		goto out;
	}
	s->ciphertext = OPENSSL_malloc(len ? len : 1);
	if (gcm == NULL || ctx == NULL || s->ciphertext == NULL ||
	    !EVP_EncryptInit_ex2(ctx, gcm, cf_secret_cdata(s->cek), s->iv, NULL) ||
	    !EVP_EncryptUpdate(ctx, s->ciphertext, &outl,
			       cf_secret_cdata(content), (int)len) ||
	    !EVP_EncryptFinal_ex(ctx, s->ciphertext + outl, &finl) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, s->tag) <= 0) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not encrypt the content with AES-256-GCM");
		goto out;
	}
	s->ciphertext_len = (size_t)outl + (size_t)finl;
out:
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(gcm);
	return rc;
}

cf_status cf_sealer_new(const cf_secret *content, cf_sealer **out,
			cf_error *err)
{
	cf_sealer *s = OPENSSL_zalloc(sizeof(*s));
	cf_status rc;

	*out = NULL;
	if (s == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	s->cek = cf_secret_new(CEK_LEN);
	if (s->cek == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
		goto out;
	}
	if (RAND_priv_bytes(cf_secret_data(s->cek), CEK_LEN) != 1 ||
	    RAND_bytes(s->iv, IV_LEN) != 1) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"the random generator failed");
		goto out;
	}
	cf_secret_set_len(s->cek, CEK_LEN, NULL);
	rc = encrypt_content(s, content, err);
	if (rc == CF_OK)
		rc = sealer_prepare(s, err);
	if (rc == CF_OK) {
		*out = s;
		s = NULL;
	}
out:
	cf_sealer_free(s);
	return rc;
}

cf_status cf_sealer_dup(const cf_sealer *src, cf_sealer **out, cf_error *err)
{
	cf_sealer *s = OPENSSL_zalloc(sizeof(*s));
	cf_status rc;

	*out = NULL;
	if (s == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	s->cek = cf_secret_from(cf_secret_cdata(src->cek), CEK_LEN);
	s->ciphertext = OPENSSL_memdup(src->ciphertext,
				       src->ciphertext_len ? src->ciphertext_len : 1);
	if (s->cek == NULL || s->ciphertext == NULL) {
		cf_sealer_free(s);
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	}
	s->ciphertext_len = src->ciphertext_len;
	memcpy(s->iv, src->iv, IV_LEN);
	memcpy(s->tag, src->tag, TAG_LEN);
	rc = sealer_prepare(s, err);
	if (rc != CF_OK) {
		cf_sealer_free(s);
		return rc;
	}
	*out = s;
	return CF_OK;
}

void cf_sealer_free(cf_sealer *s)
{
	if (s == NULL)
		return;
	cf_secret_free(s->cek);
	OPENSSL_free(s->ciphertext);
	EVP_PKEY_CTX_free(s->keygen);
	EVP_KDF_CTX_free(s->kdf);
	EVP_CIPHER_free(s->wrap);
	EVP_CIPHER_CTX_free(s->wrap_ctx);
	OPENSSL_free(s->shared_info);
	ASN1_FREE(CF_CI, s->ci);
	OPENSSL_clear_free(s, sizeof(*s));
}

/*
 * ECDH with a fresh ephemeral key, X9.63 KDF, AES key wrap of the CEK.
 * Fills point (the ephemeral public key) and wrapped.
 */
static cf_status agree_and_wrap(cf_sealer *s, EVP_PKEY *peer,
				unsigned char point[POINT_LEN],
				unsigned char wrapped[WRAPPED_LEN],
				cf_error *err)
{
	EVP_PKEY *eph = NULL;
	EVP_PKEY_CTX *derive = NULL;
	unsigned char z[32], kek[CEK_LEN];
	size_t z_len = sizeof(z), point_len = 0;
	int outl = 0, finl = 0;
	OSSL_PARAM params[4];
	cf_status rc = CF_OK;

	if (EVP_PKEY_keygen(s->keygen, &eph) <= 0 ||
	    !EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
					     point, POINT_LEN, &point_len) ||
	    point_len != POINT_LEN)
		goto ssl_fail;
	derive = EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL);
	/*
	 * validate_peer = 0: the peer key was decoded from a certificate
	 * that chained to the root (decoding checks the point is on the
	 * curve, and P-256 has cofactor 1), so the costly full public-key
	 * check would only repeat what is already known.
	 */
	if (derive == NULL || EVP_PKEY_derive_init(derive) <= 0 ||
	    EVP_PKEY_derive_set_peer_ex(derive, peer, 0) <= 0 ||
	    EVP_PKEY_derive(derive, z, &z_len) <= 0 || z_len != sizeof(z))
		goto ssl_fail;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						     (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, z, z_len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
		s->shared_info, s->shared_info_len);
	params[3] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(s->kdf, kek, sizeof(kek), params) <= 0 ||
	    !EVP_EncryptInit_ex2(s->wrap_ctx, s->wrap, kek, NULL, NULL) ||
	    !EVP_EncryptUpdate(s->wrap_ctx, wrapped, &outl,
			       cf_secret_cdata(s->cek), CEK_LEN) ||
	    !EVP_EncryptFinal_ex(s->wrap_ctx, wrapped + outl, &finl) ||
	    outl + finl != WRAPPED_LEN)
		goto ssl_fail;
	goto out;
ssl_fail:
	rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
		"key agreement with the recipient's key failed");
out:
	OPENSSL_cleanse(z, sizeof(z));
	OPENSSL_cleanse(kek, sizeof(kek));
	EVP_PKEY_CTX_free(derive);
	EVP_PKEY_free(eph);
	return rc;
}

static CF_RI *build_ri(X509 *recipient, const unsigned char *point,
		       const unsigned char *wrapped)
{
	CF_RI *ri = ASN1_NEW(CF_RI);
	CF_KARI *kari = ASN1_NEW(CF_KARI);
	CF_ORIGINATOR *orig = ASN1_NEW(CF_ORIGINATOR);
	CF_ORIG_PUBKEY *opk = ASN1_NEW(CF_ORIG_PUBKEY);
	CF_REK *rek = ASN1_NEW(CF_REK);
	X509_ALGOR *wrap_alg = algor(NID_id_aes256_wrap, V_ASN1_UNDEF, NULL);
	ASN1_STRING *wrap_der = NULL;

	if (ri == NULL || kari == NULL || orig == NULL || opk == NULL ||
	    rek == NULL || wrap_alg == NULL)
		goto fail;
	/* originatorKey: id-ecPublicKey with absent parameters (RFC 5753). */
	X509_ALGOR_free(opk->algorithm);
	opk->algorithm = algor(NID_X9_62_id_ecPublicKey, V_ASN1_UNDEF, NULL);
	if (opk->algorithm == NULL ||
	    !ASN1_BIT_STRING_set(opk->publicKey, (unsigned char *)point, POINT_LEN))
		goto fail;
	opk->publicKey->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
	opk->publicKey->flags |= ASN1_STRING_FLAG_BITS_LEFT;
	ASN1_FREE(CF_ORIG_PUBKEY, orig->d.originatorKey);
	orig->type = 0;
	orig->d.originatorKey = opk;
	opk = NULL;

	/* keyEncryptionAlgorithm: dhSinglePass-stdDH-sha256kdf-scheme. */
	if (ASN1_item_pack(wrap_alg, ASN1_ITEM_rptr(X509_ALGOR), &wrap_der) == NULL)
		goto fail;
	X509_ALGOR_free(kari->keyEncryptionAlgorithm);
	kari->keyEncryptionAlgorithm = algor(NID_dhSinglePass_stdDH_sha256kdf_scheme,
					     V_ASN1_SEQUENCE, wrap_der);
	if (kari->keyEncryptionAlgorithm == NULL)
		goto fail;
	wrap_der = NULL;

	X509_NAME_free(rek->rid->issuer);
	rek->rid->issuer = X509_NAME_dup(X509_get_issuer_name(recipient));
	ASN1_INTEGER_free(rek->rid->serialNumber);
	rek->rid->serialNumber = ASN1_INTEGER_dup(X509_get0_serialNumber(recipient));
	if (rek->rid->issuer == NULL || rek->rid->serialNumber == NULL ||
	    !ASN1_OCTET_STRING_set(rek->encryptedKey, wrapped, WRAPPED_LEN) ||
	    !sk_CF_REK_push(kari->recipientEncryptedKeys, rek))
		goto fail;
	rek = NULL;
	if (!ASN1_INTEGER_set(kari->version, 3))
		goto fail;
	ASN1_FREE(CF_ORIGINATOR, kari->originator);
	kari->originator = orig;
	orig = NULL;
	ri->type = 0;
	ri->d.kari = kari;
	X509_ALGOR_free(wrap_alg);
	return ri;
fail:
	ASN1_STRING_free(wrap_der);
	X509_ALGOR_free(wrap_alg);
	ASN1_FREE(CF_REK, rek);
	ASN1_FREE(CF_ORIG_PUBKEY, opk);
	ASN1_FREE(CF_ORIGINATOR, orig);
	ASN1_FREE(CF_KARI, kari);
	ASN1_FREE(CF_RI, ri);
	return NULL;
}

static void pop_all(STACK_OF(CF_RI) *ris)
{
	CF_RI *ri;

	while ((ri = sk_CF_RI_pop(ris)) != NULL)
		ASN1_FREE(CF_RI, ri);
}

cf_status cf_sealer_seal_many(cf_sealer *s, X509 *const *recipients, size_t n,
			      unsigned char **der, size_t *der_len,
			      cf_error *err)
{
	unsigned char point[POINT_LEN], wrapped[WRAPPED_LEN];
	STACK_OF(CF_RI) *ris = s->ci->content->recipientInfos;
	unsigned char *buf = NULL;
	cf_status rc = CF_OK;
	int len;

	*der = NULL;
	*der_len = 0;
	if (n == 0)
		return cf_error_set(err, CF_ERR_USAGE, "no recipient to seal to");
	for (size_t i = 0; i < n; i++) {
		EVP_PKEY *peer = X509_get0_pubkey(recipients[i]);
		CF_RI *ri;

		if (peer == NULL || !EVP_PKEY_is_a(peer, "EC") ||
		    EVP_PKEY_get_bits(peer) != 256) {
			rc = cf_error_set(err, CF_ERR_USAGE,
				"the recipient certificate does not hold a P-256 key");
			goto out;
		}
		rc = agree_and_wrap(s, peer, point, wrapped, err);
		if (rc != CF_OK)
			goto out;
		ri = build_ri(recipients[i], point, wrapped);
		if (ri == NULL || !sk_CF_RI_push(ris, ri)) {
			ASN1_FREE(CF_RI, ri);
			rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				"could not build the recipient info");
			goto out;
		}
	}
	len = ASN1_item_i2d((ASN1_VALUE *)s->ci, &buf, ASN1_ITEM_rptr(CF_CI));
	if (len <= 0) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not encode the envelope");
		goto out;
	}
	*der = buf;
	*der_len = (size_t)len;
out:
	pop_all(ris);
	return rc;
}

cf_status cf_sealer_seal(cf_sealer *s, X509 *recipient, unsigned char **der,
			 size_t *der_len, cf_error *err)
{
	return cf_sealer_seal_many(s, &recipient, 1, der, der_len, err);
}
