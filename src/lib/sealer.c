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
 *     and the AES key wrap are computed;
 *   - the DER common to all recipients is encoded once from the ASN.1
 *     templates below; per recipient only the recipient info's variable
 *     parts are encoded and the headers around them written with
 *     ASN1_put_object.  The first envelope of every sealer is also encoded
 *     whole by the template encoder and compared byte for byte, so the
 *     fast path can never drift from the templates unnoticed.
 *
 * Plaintext held here: the content-encryption key (secure memory) and,
 * briefly, the ECDH secret and key-encryption key (stack, wiped).
 */
#include "cms_asn1.h"
#include "envelope.h"
#include "pki.h"

#include <openssl/asn1t.h>
#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <limits.h>
#include <stdint.h>
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

	/* Fetched and configured once, reused for every recipient. */
	EVP_PKEY_CTX *keygen;
	EVP_KDF_CTX *kdf;             /* digest and ECC-CMS-SharedInfo set */
	EVP_CIPHER *wrap;
	EVP_CIPHER_CTX *wrap_ctx;

	/* The whole envelope as a template, for cf_sealer_seal_many. */
	CF_CI *ci;

	/*
	 * cf_sealer_seal's envelope is the template's, laid out as
	 *   SEQUENCE { ct_oid, [0] { SEQUENCE { aed_version,
	 *     SET { [1] { kari_head, point, kari_kea,
	 *       SEQUENCE { SEQUENCE { SEQUENCE { issuer, serial },
	 *                             OCTET STRING wrapped } } } },
	 *     tail } } }
	 * where every part but the point, the wrapped key and the recipient's
	 * issuer and serial is the same for all recipients: those parts are
	 * encoded once, by the templates above (kari_head: the KARI version
	 * and [0] originator up to the point's bytes; kari_kea: its
	 * keyEncryptionAlgorithm; tail: authEncryptedContentInfo and mac).
	 * Per recipient, only the headers are written (ASN1_put_object) and
	 * the issuer and serial encoded: no ASN.1 objects are built, and the
	 * content's ciphertext is copied once.  The first envelope of each
	 * sealer is also encoded by the template encoder and compared byte
	 * for byte (first_check), so the two cannot drift apart unnoticed.
	 */
	unsigned char *ct_oid, *aed_version, *kari_head, *kari_kea, *tail;
	int ct_oid_len, aed_version_len, kari_head_len, kari_kea_len, tail_len;
	int checked;

	/*
	 * The recipient info as a template object, for first_check and
	 * cf_sealer_seal_many's recipients: its constant parts are set once;
	 * the point and wrapped key are lent by the caller, the issuer and
	 * serial by the recipient's certificate (ri_borrow / ri_release).
	 */
	CF_RI *ri;
	unsigned char point[POINT_LEN];
	unsigned char wrapped[WRAPPED_LEN];
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

/*
 * A recipient info with every constant part set (version 3, originatorKey
 * algorithm id-ecPublicKey without parameters as RFC 5753 says,
 * dhSinglePass-stdDH-sha256kdf-scheme with id-aes256-wrap, one recipient
 * encrypted key) and the per-recipient parts empty, to be lent with
 * ri_borrow.
 */
static CF_RI *ri_new(void)
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
	X509_ALGOR_free(opk->algorithm);
	opk->algorithm = algor(NID_X9_62_id_ecPublicKey, V_ASN1_UNDEF, NULL);
	if (opk->algorithm == NULL)
		goto fail;
	/* A BIT STRING of whole octets: no unused bits. */
	opk->publicKey->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
	opk->publicKey->flags |= ASN1_STRING_FLAG_BITS_LEFT;
	ASN1_FREE(CF_ORIG_PUBKEY, orig->d.originatorKey);
	orig->type = 0;
	orig->d.originatorKey = opk;
	opk = NULL;

	if (ASN1_item_pack(wrap_alg, ASN1_ITEM_rptr(X509_ALGOR), &wrap_der) == NULL)
		goto fail;
	X509_ALGOR_free(kari->keyEncryptionAlgorithm);
	kari->keyEncryptionAlgorithm = algor(NID_dhSinglePass_stdDH_sha256kdf_scheme,
					     V_ASN1_SEQUENCE, wrap_der);
	if (kari->keyEncryptionAlgorithm == NULL)
		goto fail;
	wrap_der = NULL;

	/* Lent per recipient; absent until then. */
	X509_NAME_free(rek->rid->issuer);
	rek->rid->issuer = NULL;
	ASN1_INTEGER_free(rek->rid->serialNumber);
	rek->rid->serialNumber = NULL;
	if (!sk_CF_REK_push(kari->recipientEncryptedKeys, rek))
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

/*
 * Points str at a buffer it does not own (NULL: takes it back).  Not
 * ASN1_STRING_set0, which would free the previous buffer.
 */
static void lend(ASN1_STRING *str, unsigned char *data, int len)
{
	str->data = data;
	str->length = len;
}

/*
 * Lends ri the recipient's issuer name and serial (read-only: the DER
 * encoder only reads a name whose cached encoding is current, as it is
 * for any parsed or signed certificate) and the two buffers.  No copy,
 * no allocation; ri_release takes them back before ri is freed.
 */
static void ri_borrow(CF_RI *ri, X509 *recipient, unsigned char *point,
		      unsigned char *wrapped)
{
	CF_KARI *kari = ri->d.kari;
	CF_REK *rek = sk_CF_REK_value(kari->recipientEncryptedKeys, 0);

	lend(kari->originator->d.originatorKey->publicKey, point, POINT_LEN);
	rek->rid->issuer = X509_get_issuer_name(recipient);
	rek->rid->serialNumber = (ASN1_INTEGER *)X509_get0_serialNumber(recipient);
	lend(rek->encryptedKey, wrapped, WRAPPED_LEN);
}

static void ri_release(CF_RI *ri)
{
	CF_KARI *kari;
	CF_REK *rek;

	if (ri == NULL || (kari = ri->d.kari) == NULL)
		return;
	if (kari->originator != NULL && kari->originator->d.originatorKey != NULL)
		lend(kari->originator->d.originatorKey->publicKey, NULL, 0);
	rek = sk_CF_REK_value(kari->recipientEncryptedKeys, 0);
	if (rek != NULL) {
		rek->rid->issuer = NULL;
		rek->rid->serialNumber = NULL;
		lend(rek->encryptedKey, NULL, 0);
	}
}

static void ri_free(CF_RI *ri)
{
	ri_release(ri);
	ASN1_FREE(CF_RI, ri);
}

/* *out = a || b || c (c may be NULL with c_len 0); 0 on failure. */
static int concat(unsigned char **out, int *out_len,
		  const unsigned char *a, int a_len,
		  const unsigned char *b, int b_len,
		  const unsigned char *c, int c_len)
{
	size_t total;

	if (a_len < 0 || b_len < 0 || c_len < 0 || a_len > INT_MAX - b_len ||
	    a_len + b_len > INT_MAX - c_len)
		return 0;
	total = (size_t)a_len + (size_t)b_len + (size_t)c_len;
	if ((*out = OPENSSL_malloc(total ? total : 1)) == NULL)
		return 0;
	memcpy(*out, a, (size_t)a_len);
	memcpy(*out + a_len, b, (size_t)b_len);
	if (c_len > 0)
		memcpy(*out + a_len + b_len, c, (size_t)c_len);
	*out_len = (int)total;
	return 1;
}

/* The DER that every envelope of this sealer shares (see struct cf_sealer). */
static int encode_constant_parts(cf_sealer *s)
{
	static const unsigned char zero_point[POINT_LEN];
	CF_AED *aed = s->ci->content;
	CF_KARI *kari = s->ri->d.kari;
	unsigned char *eci = NULL, *mac = NULL, *version = NULL, *orig = NULL;
	unsigned char explicit0[8], *p = explicit0;
	int eci_len, mac_len, version_len, orig_len, ok = 0;

	s->ct_oid_len = i2d_ASN1_OBJECT(s->ci->contentType, &s->ct_oid);
	s->aed_version_len = i2d_ASN1_INTEGER(aed->version, &s->aed_version);
	eci_len = ASN1_item_i2d((ASN1_VALUE *)aed->authEncryptedContentInfo, &eci,
				ASN1_ITEM_rptr(CF_ECI));
	mac_len = i2d_ASN1_OCTET_STRING(aed->mac, &mac);
	s->kari_kea_len = i2d_X509_ALGOR(kari->keyEncryptionAlgorithm, &s->kari_kea);
	version_len = i2d_ASN1_INTEGER(kari->version, &version);
	/* The originator ends with the point's bytes: keep what comes before. */
	lend(kari->originator->d.originatorKey->publicKey,
	     (unsigned char *)zero_point, POINT_LEN);
	orig_len = ASN1_item_i2d((ASN1_VALUE *)kari->originator, &orig,
				 ASN1_ITEM_rptr(CF_ORIGINATOR));
	lend(kari->originator->d.originatorKey->publicKey, NULL, 0);
	if (s->ct_oid_len <= 0 || s->aed_version_len <= 0 || eci_len <= 0 ||
	    mac_len <= 0 || s->kari_kea_len <= 0 || version_len <= 0 ||
	    orig_len <= POINT_LEN ||
	    memcmp(orig + orig_len - POINT_LEN, zero_point, POINT_LEN) != 0)
		goto out;
	/* kari_head = version, [0] EXPLICIT header, originator but the point. */
	ASN1_put_object(&p, 1, orig_len, 0, V_ASN1_CONTEXT_SPECIFIC);
	ok = concat(&s->kari_head, &s->kari_head_len, version, version_len,
		    explicit0, (int)(p - explicit0), orig, orig_len - POINT_LEN) &&
	     concat(&s->tail, &s->tail_len, eci, eci_len, mac, mac_len, NULL, 0);
out:
	OPENSSL_free(eci);
	OPENSSL_free(mac);
	OPENSSL_free(version);
	OPENSSL_free(orig);
	return ok;
}

/* Contexts and constant DER shared by all recipients of this sealer. */
static cf_status sealer_prepare(cf_sealer *s, cf_error *err)
{
	EVP_KDF *kdf = NULL;
	X509_ALGOR *wrap_alg = NULL;
	CF_GCM_PARAMS *gcm = NULL;
	ASN1_STRING *gcm_der = NULL;
	unsigned char *shared_info = NULL;
	OSSL_PARAM params[3];
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
	/*
	 * The cipher is bound once; per recipient only the key is set (a
	 * NULL cipher keeps the provider's context instead of remaking it).
	 */
	if (!EVP_EncryptInit_ex2(s->wrap_ctx, s->wrap, NULL, NULL, NULL))
		goto ssl_fail;

	/*
	 * The KDF's digest and its input keyInfo (the key-wrap algorithm, no
	 * parameters) are the same for every recipient: set them once, so
	 * that a recipient costs no digest fetch, only its shared secret.
	 */
	wrap_alg = algor(NID_id_aes256_wrap, V_ASN1_UNDEF, NULL);
	if (wrap_alg == NULL)
		goto ssl_fail;
	len = CMS_SharedInfo_encode(&shared_info, wrap_alg, NULL, CEK_LEN);
	if (len <= 0)
		goto ssl_fail;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						     (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
						      shared_info, (size_t)len);
	params[2] = OSSL_PARAM_construct_end();
	if (EVP_KDF_CTX_set_params(s->kdf, params) <= 0)
		goto ssl_fail;

	/* ASN1_NEW(CF_CI) also makes its (non-optional) [0] content. */
	s->ci = ASN1_NEW(CF_CI);
	if (s->ci == NULL)
		goto ssl_fail;
	s->ci->contentType = OBJ_nid2obj(NID_id_smime_ct_authEnvelopedData);
	aed = s->ci->content;
	if (aed == NULL || !ASN1_INTEGER_set(aed->version, 0))
		goto ssl_fail;
	aed->authEncryptedContentInfo->contentType = OBJ_nid2obj(NID_pkcs7_data);
	gcm = ASN1_NEW(CF_GCM_PARAMS);
	if (gcm != NULL)
		gcm->icvLen = ASN1_INTEGER_new(); /* written although OPTIONAL */
	if (gcm == NULL || gcm->icvLen == NULL ||
	    !ASN1_OCTET_STRING_set(gcm->nonce, s->iv, IV_LEN) ||
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
	    !ASN1_OCTET_STRING_set(aed->mac, s->tag, TAG_LEN) ||
	    (s->ri = ri_new()) == NULL || !encode_constant_parts(s))
		goto ssl_fail;
	goto out;
ssl_fail:
	rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
		"could not set up envelope encryption");
out:
	EVP_KDF_free(kdf);
	X509_ALGOR_free(wrap_alg);
	OPENSSL_free(shared_info);
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
	ASN1_FREE(CF_CI, s->ci);
	OPENSSL_free(s->ct_oid);
	OPENSSL_free(s->aed_version);
	OPENSSL_free(s->kari_head);
	OPENSSL_free(s->kari_kea);
	OPENSSL_free(s->tail);
	ri_free(s->ri);
	OPENSSL_clear_free(s, sizeof(*s));
}

/* The certificate names the curve prime256v1 (P-256) in its key info. */
static int spki_names_p256(X509 *cert)
{
	X509_ALGOR *alg = NULL;
	const ASN1_OBJECT *oid = NULL;
	const void *param = NULL;
	int ptype = V_ASN1_UNDEF;

	if (!X509_PUBKEY_get0_param(NULL, NULL, NULL, &alg,
				    X509_get_X509_PUBKEY(cert)) || alg == NULL)
		return 0;
	X509_ALGOR_get0(&oid, &ptype, &param, alg);
	return OBJ_obj2nid(oid) == NID_X9_62_id_ecPublicKey &&
	       ptype == V_ASN1_OBJECT &&
	       OBJ_obj2nid(param) == NID_X9_62_prime256v1;
}

static cf_status check_recipient(X509 *recipient, cf_error *err)
{
	EVP_PKEY *peer = X509_get0_pubkey(recipient);

	/*
	 * The base id and size first (ints, no name lookup), then the group's
	 * name: secp256k1 and brainpoolP256r1 are 256 bits too.  The name
	 * costs a provider parameter query (~1 us, per recipient), so a key
	 * whose certificate names prime256v1 and decoded (peer != NULL) is
	 * taken as P-256 without it; only other encodings ask the key.
	 */
	if (peer == NULL || EVP_PKEY_get_base_id(peer) != EVP_PKEY_EC ||
	    EVP_PKEY_get_bits(peer) != 256 ||
	    (!spki_names_p256(recipient) && !cf_key_is_p256(peer)))
		return cf_error_set(err, CF_ERR_USAGE,
			"the recipient certificate does not hold a P-256 key");
	return CF_OK;
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
	OSSL_PARAM params[2];
	cf_status rc = CF_OK;

	if (EVP_PKEY_keygen(s->keygen, &eph) <= 0 ||
	    !EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
					     point, POINT_LEN, &point_len) ||
	    point_len != POINT_LEN)
		goto ssl_fail;
	/*
	 * A context per ephemeral key: OpenSSL binds the private key to the
	 * context when it is made, and offers no way to swap it.
	 */
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
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, z, z_len);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(s->kdf, kek, sizeof(kek), params) <= 0 ||
	    !EVP_EncryptInit_ex2(s->wrap_ctx, NULL, kek, NULL, NULL) ||
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

cf_status cf_sealer_seal_many(cf_sealer *s, X509 *const *recipients, size_t n,
			      unsigned char **der, size_t *der_len,
			      cf_error *err)
{
	STACK_OF(CF_RI) *ris = s->ci->content->recipientInfos;
	unsigned char *points = NULL, *wrapped = NULL, *buf = NULL;
	cf_status rc = CF_OK;
	CF_RI *ri;
	int len;

	*der = NULL;
	*der_len = 0;
	if (n == 0)
		return cf_error_set(err, CF_ERR_USAGE, "no recipient to seal to");
	if (n > SIZE_MAX / POINT_LEN)
		return cf_error_set(err, CF_ERR_TOO_LARGE, "too many recipients");
	points = OPENSSL_malloc(n * POINT_LEN);
	wrapped = OPENSSL_malloc(n * WRAPPED_LEN);
	if (points == NULL || wrapped == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char *pt = points + i * POINT_LEN;
		unsigned char *wr = wrapped + i * WRAPPED_LEN;

		rc = check_recipient(recipients[i], err);
		if (rc == CF_OK)
			rc = agree_and_wrap(s, X509_get0_pubkey(recipients[i]),
					    pt, wr, err);
		if (rc != CF_OK)
			goto out;
		ri = ri_new();
		if (ri != NULL)
			ri_borrow(ri, recipients[i], pt, wr);
		if (ri == NULL || !sk_CF_RI_push(ris, ri)) {
			ri_free(ri);
			rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				"could not build the recipient info");
			goto out;
		}
	}
	/* The template encoder sorts the SET OF recipient infos, as DER says. */
	len = ASN1_item_i2d((ASN1_VALUE *)s->ci, &buf, ASN1_ITEM_rptr(CF_CI));
	if (len <= 0) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not encode the envelope");
		goto out;
	}
	*der = buf;
	*der_len = (size_t)len;
out:
	while ((ri = sk_CF_RI_pop(ris)) != NULL)
		ri_free(ri);
	OPENSSL_free(points);
	OPENSSL_free(wrapped);
	return rc;
}

/* Adds b to *a, or fails (-1) past INT_MAX. */
static int add_len(int a, int b)
{
	return a < 0 || b < 0 || a > INT_MAX - b ? -1 : a + b;
}

/*
 * One envelope for recipient, with s->point and s->wrapped, laid out as
 * struct cf_sealer says.  Lengths are computed inside out, then written
 * outside in.
 */
static cf_status encode_envelope(cf_sealer *s, X509 *recipient,
				 unsigned char **der, size_t *der_len,
				 cf_error *err)
{
	X509_NAME *issuer = X509_get_issuer_name(recipient);
	const ASN1_INTEGER *serial = X509_get0_serialNumber(recipient);
	int issuer_len = i2d_X509_NAME(issuer, NULL);
	int serial_len = i2d_ASN1_INTEGER(serial, NULL);
	int rid_body, rek_body, reks_body, kari_body, set_body, aed_body;
	int ctx0_body, ci_body, total;
	unsigned char *buf = NULL, *p;

	rid_body = add_len(issuer_len, serial_len);
	rek_body = add_len(ASN1_object_size(1, rid_body, V_ASN1_SEQUENCE),
			   ASN1_object_size(0, WRAPPED_LEN, V_ASN1_OCTET_STRING));
	reks_body = ASN1_object_size(1, rek_body, V_ASN1_SEQUENCE);
	kari_body = add_len(add_len(s->kari_head_len, POINT_LEN),
			    add_len(s->kari_kea_len,
				    ASN1_object_size(1, reks_body, V_ASN1_SEQUENCE)));
	set_body = ASN1_object_size(1, kari_body, 1);
	aed_body = add_len(add_len(s->aed_version_len, s->tail_len),
			   ASN1_object_size(1, set_body, V_ASN1_SET));
	ctx0_body = ASN1_object_size(1, aed_body, V_ASN1_SEQUENCE);
	ci_body = add_len(s->ct_oid_len, ASN1_object_size(1, ctx0_body, 0));
	total = ASN1_object_size(1, ci_body, V_ASN1_SEQUENCE);
	if (issuer_len <= 0 || serial_len <= 0 || rid_body < 0 || rek_body < 0 ||
	    reks_body < 0 || kari_body < 0 || set_body < 0 || aed_body < 0 ||
	    ctx0_body < 0 || ci_body < 0 || total < 0 ||
	    (buf = OPENSSL_malloc((size_t)total)) == NULL)
		goto fail;
	p = buf;
	ASN1_put_object(&p, 1, ci_body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(p, s->ct_oid, (size_t)s->ct_oid_len);
	p += s->ct_oid_len;
	ASN1_put_object(&p, 1, ctx0_body, 0, V_ASN1_CONTEXT_SPECIFIC);
	ASN1_put_object(&p, 1, aed_body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(p, s->aed_version, (size_t)s->aed_version_len);
	p += s->aed_version_len;
	ASN1_put_object(&p, 1, set_body, V_ASN1_SET, V_ASN1_UNIVERSAL);
	ASN1_put_object(&p, 1, kari_body, 1, V_ASN1_CONTEXT_SPECIFIC);
	memcpy(p, s->kari_head, (size_t)s->kari_head_len);
	p += s->kari_head_len;
	memcpy(p, s->point, POINT_LEN);
	p += POINT_LEN;
	memcpy(p, s->kari_kea, (size_t)s->kari_kea_len);
	p += s->kari_kea_len;
	ASN1_put_object(&p, 1, reks_body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	ASN1_put_object(&p, 1, rek_body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	ASN1_put_object(&p, 1, rid_body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	if (i2d_X509_NAME(issuer, &p) != issuer_len ||
	    i2d_ASN1_INTEGER(serial, &p) != serial_len)
		goto fail;
	ASN1_put_object(&p, 0, WRAPPED_LEN, V_ASN1_OCTET_STRING, V_ASN1_UNIVERSAL);
	memcpy(p, s->wrapped, WRAPPED_LEN);
	p += WRAPPED_LEN;
	memcpy(p, s->tail, (size_t)s->tail_len);
	p += s->tail_len;
	if (p != buf + total)
		goto fail;
	*der = buf;
	*der_len = (size_t)total;
	return CF_OK;
fail:
	OPENSSL_free(buf);
	return cf_error_set_ssl(err, CF_ERR_CRYPTO, "could not encode the envelope");
}

/*
 * The template encoder's DER of the same envelope must be identical;
 * checked once per sealer, on its first envelope.
 */
static cf_status first_check(cf_sealer *s, X509 *recipient,
			     const unsigned char *der, size_t der_len,
			     cf_error *err)
{
	STACK_OF(CF_RI) *ris = s->ci->content->recipientInfos;
	unsigned char *ref = NULL;
	int len = -1;

	ri_borrow(s->ri, recipient, s->point, s->wrapped);
	if (sk_CF_RI_push(ris, s->ri)) {
		len = ASN1_item_i2d((ASN1_VALUE *)s->ci, &ref, ASN1_ITEM_rptr(CF_CI));
		(void)sk_CF_RI_pop(ris);
	}
	ri_release(s->ri);
	if (len <= 0 || (size_t)len != der_len || memcmp(ref, der, der_len) != 0) {
		OPENSSL_free(ref);
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"internal error: the envelope's encoding differs from "
			"the ASN.1 template's; please report this");
	}
	OPENSSL_free(ref);
	s->checked = 1;
	return CF_OK;
}

cf_status cf_sealer_seal(cf_sealer *s, X509 *recipient, unsigned char **der,
			 size_t *der_len, cf_error *err)
{
	cf_status rc;

	*der = NULL;
	*der_len = 0;
	rc = check_recipient(recipient, err);
	if (rc == CF_OK)
		rc = agree_and_wrap(s, X509_get0_pubkey(recipient), s->point,
				    s->wrapped, err);
	if (rc == CF_OK)
		rc = encode_envelope(s, recipient, der, der_len, err);
	if (rc == CF_OK && !s->checked)
		rc = first_check(s, recipient, *der, *der_len, err);
	if (rc != CF_OK) {
		OPENSSL_free(*der);
		*der = NULL;
		*der_len = 0;
	}
	return rc;
}
