/*
 * envelope.c - signing records and opening envelopes.
 *
 * Opening is where a hostile server or sender gets its say, so every
 * step is a separate check with its own refusal (docs/FORMAT.md):
 * size and DER shape, our recipient info, key agreement, AES-GCM
 * authentication, the inner SignedData's shape, the signature, the
 * signer's chain and revocation, its permission, the record's tenant,
 * name and version.  Decryption and verification are OpenSSL's standard
 * CMS code, so what `openssl cms` makes, we open, and vice versa.
 *
 * Plaintext held here: the decrypted SignedData and the verified record
 * (secure memory); OpenSSL's own copy of the eContent inside a parsed
 * SignedData is wiped before it is freed (wipe_econtent).
 */
#include "cms_asn1.h"
#include "envelope.h"

#include <openssl/cms.h>
#include <openssl/err.h>
#include <string.h>

#include "cluster.h"
#include "pki.h"
#include "policy.h"

/* OpenSSL keeps the signed content in an OCTET STRING of the ordinary heap. */
static void wipe_econtent(CMS_ContentInfo *cms)
{
	ASN1_OCTET_STRING **pos;

	if (cms == NULL)
		return;
	pos = CMS_get0_content(cms);
	if (pos != NULL && *pos != NULL && ASN1_STRING_length(*pos) > 0)
		OPENSSL_cleanse((void *)ASN1_STRING_get0_data(*pos),
				(size_t)ASN1_STRING_length(*pos));
}

static void cms_free_wiped(CMS_ContentInfo *cms)
{
	wipe_econtent(cms);
	CMS_ContentInfo_free(cms);
}

cf_status cf_envelope_sign(const cf_secret *record_json, X509 *signer_cert,
			   EVP_PKEY *signer_key, STACK_OF(X509) *extra,
			   cf_secret **signed_der, cf_error *err)
{
	cf_status rc = cf_pki_init(err);

	if (rc != CF_OK)
		return rc;
	return cf_envelope_sign_as(record_json, cf_nid_record(), signer_cert,
				   signer_key, extra, signed_der, err);
}

/* What a content type is called in messages. */
static const char *content_name(int nid)
{
	if (nid == cf_nid_command())
		return "command";
	if (nid == cf_nid_result())
		return "command result";
	if (nid == cf_nid_ack())
		return "acknowledgement";
	return "record";
}

cf_status cf_envelope_sign_as(const cf_secret *record_json, int content_nid,
			      X509 *signer_cert, EVP_PKEY *signer_key,
			      STACK_OF(X509) *extra, cf_secret **signed_der,
			      cf_error *err)
{
	const unsigned int flags = CMS_BINARY | CMS_PARTIAL | CMS_NOSMIMECAP;
	CMS_ContentInfo *cms = NULL;
	BIO *in = NULL;
	cf_secret *out = NULL;
	unsigned char *p;
	int len;
	cf_status rc;

	*signed_der = NULL;
	rc = cf_pki_init(err);
	if (rc != CF_OK)
		return rc;
	if (X509_check_private_key(signer_cert, signer_key) != 1)
		return cf_error_set_ssl(err, CF_ERR_USAGE,
			"the signer key does not belong to the signer certificate");
	/* A read-only BIO over the secure buffer: no copy of the record. */
	in = BIO_new_mem_buf(cf_secret_cdata(record_json),
			     (int)cf_secret_len(record_json));
	cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
	if (in == NULL || cms == NULL ||
	    !CMS_set1_eContentType(cms, OBJ_nid2obj(content_nid)) ||
	    CMS_add1_signer(cms, signer_cert, signer_key, EVP_sha256(),
			    flags) == NULL)
		goto ssl_fail;
	for (int i = 0; i < sk_X509_num(extra); i++)
		if (!CMS_add1_cert(cms, sk_X509_value(extra, i)))
			goto ssl_fail;
	if (!CMS_final(cms, in, NULL, flags))
		goto ssl_fail;
	len = i2d_CMS_ContentInfo(cms, NULL);
	if (len <= 0 || (out = cf_secret_new((size_t)len)) == NULL)
		goto ssl_fail;
	p = cf_secret_data(out);
	if (i2d_CMS_ContentInfo(cms, &p) != len)
		goto ssl_fail;
	cf_secret_set_len(out, (size_t)len, NULL);
	*signed_der = out;
	out = NULL;
	goto out;
ssl_fail:
	rc = cf_error_set_ssl(err, CF_ERR_CRYPTO, "could not sign the %s",
			      content_name(content_nid));
out:
	cf_secret_free(out);
	cms_free_wiped(cms);
	BIO_free(in);
	return rc;
}

/* Truncated (the DER says more than we have) or otherwise malformed? */
static cf_status classify_bad_der(const unsigned char *der, size_t len,
				  cf_error *err)
{
	const unsigned char *p = der;
	long body = 0;
	int tag, cls, r, reason;

	if (len == 0)
		return cf_error_set(err, CF_ERR_TRUNCATED, "the envelope is empty");
	r = ASN1_get_object(&p, &body, &tag, &cls, (long)len);
	reason = ERR_GET_REASON(ERR_peek_last_error());
	ERR_clear_error();
	if ((r & 0x80) && p > der && body > (long)(len - (size_t)(p - der)))
		return cf_error_set(err, CF_ERR_TRUNCATED,
			"the envelope is truncated: its DER announces %ld bytes "
			"but only %zu follow; fetch it again",
			body, len - (size_t)(p - der));
	/* OpenSSL could not even finish the first header: cut inside it. */
	if (r == 0x80 && p == der && reason == ASN1_R_HEADER_TOO_LONG)
		return cf_error_set(err, CF_ERR_TRUNCATED,
			"the envelope is truncated inside its first DER header "
			"(%zu bytes); fetch it again", len);
	if (len < 2)
		return cf_error_set(err, CF_ERR_TRUNCATED,
			"the envelope is truncated (%zu bytes)", len);
	return cf_error_set(err, CF_ERR_MALFORMED,
		"the envelope is not a DER-encoded CMS message");
}

/*
 * Just enough of AuthEnvelopedData (RFC 5083) to check what OpenSSL's CMS
 * code leaves open: the content cipher, the nonce and the tag length (it
 * would take a 1-byte mac as a 1-byte tag).  Recipient infos and
 * attributes are taken as they come; OpenSSL checks those.
 */
typedef struct {
	ASN1_INTEGER *version;
	STACK_OF(ASN1_TYPE) *originatorInfo;
	STACK_OF(ASN1_TYPE) *recipientInfos;
	CF_ECI *eci;
	STACK_OF(ASN1_TYPE) *authAttrs;
	ASN1_OCTET_STRING *mac;
	STACK_OF(ASN1_TYPE) *unauthAttrs;
} PROFILE_ENV;

ASN1_SEQUENCE(PROFILE_ENV) = {
	ASN1_SIMPLE(PROFILE_ENV, version, ASN1_INTEGER),
	ASN1_IMP_SEQUENCE_OF_OPT(PROFILE_ENV, originatorInfo, ASN1_ANY, 0),
	ASN1_SET_OF(PROFILE_ENV, recipientInfos, ASN1_ANY),
	ASN1_SIMPLE(PROFILE_ENV, eci, CF_ECI),
	ASN1_IMP_SET_OF_OPT(PROFILE_ENV, authAttrs, ASN1_ANY, 1),
	ASN1_SIMPLE(PROFILE_ENV, mac, ASN1_OCTET_STRING),
	ASN1_IMP_SET_OF_OPT(PROFILE_ENV, unauthAttrs, ASN1_ANY, 2)
} static_ASN1_SEQUENCE_END(PROFILE_ENV)

typedef struct {
	ASN1_OBJECT *contentType;
	PROFILE_ENV *content;
} PROFILE_CI;

ASN1_SEQUENCE(PROFILE_CI) = {
	ASN1_SIMPLE(PROFILE_CI, contentType, ASN1_OBJECT),
	ASN1_EXP(PROFILE_CI, content, PROFILE_ENV, 0)
} static_ASN1_SEQUENCE_END(PROFILE_CI)

#define CF_GCM_NONCE_BYTES 12
#define CF_GCM_TAG_BYTES 16

/* AES-256-GCM, a 12-byte nonce, a 16-byte tag: nothing weaker opens. */
static cf_status check_profile(const unsigned char *der, size_t len,
			       cf_error *err)
{
	const unsigned char *p = der;
	PROFILE_CI *ci = (PROFILE_CI *)ASN1_item_d2i(NULL, &p, (long)len,
						     ASN1_ITEM_rptr(PROFILE_CI));
	CF_GCM_PARAMS *gcm = NULL;
	const X509_ALGOR *alg;
	long icv = 12;
	cf_status rc = CF_OK;

	if (ci == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_MALFORMED,
			"the envelope is not a well-formed AuthEnvelopedData");
		goto out;
	}
	alg = ci->content->eci->contentEncryptionAlgorithm;
	if (OBJ_obj2nid(alg->algorithm) != NID_aes_256_gcm) {
		rc = cf_error_set(err, CF_ERR_MALFORMED,
			"the envelope's content is encrypted with %s; coffer "
			"accepts AES-256-GCM only",
			OBJ_nid2ln(OBJ_obj2nid(alg->algorithm)));
		goto out;
	}
	if (alg->parameter != NULL && alg->parameter->type == V_ASN1_SEQUENCE)
		gcm = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(CF_GCM_PARAMS),
						alg->parameter);
	if (gcm != NULL && gcm->icvLen != NULL)
		icv = ASN1_INTEGER_get(gcm->icvLen);
	if (gcm == NULL || ASN1_STRING_length(gcm->nonce) != CF_GCM_NONCE_BYTES ||
	    icv != CF_GCM_TAG_BYTES ||
	    ASN1_STRING_length(ci->content->mac) != CF_GCM_TAG_BYTES) {
		rc = cf_error_set(err, CF_ERR_MALFORMED,
			"the envelope's AES-GCM parameters are not a %d-byte "
			"nonce and a %d-byte tag", CF_GCM_NONCE_BYTES,
			CF_GCM_TAG_BYTES);
		goto out;
	}
out:
	ERR_clear_error();
	ASN1_item_free((ASN1_VALUE *)gcm, ASN1_ITEM_rptr(CF_GCM_PARAMS));
	ASN1_item_free((ASN1_VALUE *)ci, ASN1_ITEM_rptr(PROFILE_CI));
	return rc;
}

static int ri_matches(CMS_RecipientInfo *ri, X509 *cert)
{
	switch (CMS_RecipientInfo_type(ri)) {
	case CMS_RECIPINFO_AGREE: {
		STACK_OF(CMS_RecipientEncryptedKey) *reks =
			CMS_RecipientInfo_kari_get0_reks(ri);

		for (int i = 0; i < sk_CMS_RecipientEncryptedKey_num(reks); i++)
			if (CMS_RecipientEncryptedKey_cert_cmp(
				    sk_CMS_RecipientEncryptedKey_value(reks, i),
				    cert) == 0)
				return 1;
		return 0;
	}
	case CMS_RECIPINFO_TRANS:
		return CMS_RecipientInfo_ktri_cert_cmp(ri, cert) == 0;
	default:
		return 0;
	}
}

/*
 * The key-wrap algorithm of a KeyAgreeRecipientInfo must be AES key wrap
 * (RFC 3394: id-aes128-wrap, id-aes192-wrap or id-aes256-wrap; coffer
 * writes id-aes256-wrap, `openssl cms -encrypt` one of the three).  Checked
 * before OpenSSL unwraps anything, because OpenSSL 3.0's unwrap for the
 * padded variant (RFC 5649, id-aes*-wrap-pad: CRYPTO_128_unwrap_pad) wipes
 * inlen bytes of an (inlen - 8)-byte output buffer when the unwrap fails,
 * i.e. writes 8 zero bytes past a heap block (openssl/openssl PR #30663);
 * a hostile envelope only has to name that algorithm to trigger it.
 * Same parse as OpenSSL's ecdh_cms_set_shared_info: the parameter of
 * keyEncryptionAlgorithm is the DER of the wrap AlgorithmIdentifier.
 */
static int kari_wrap_ok(CMS_RecipientInfo *ri)
{
	X509_ALGOR *alg = NULL, *wrap;
	const unsigned char *p;
	int nid;

	if (!CMS_RecipientInfo_kari_get0_alg(ri, &alg, NULL) || alg == NULL ||
	    alg->parameter == NULL || alg->parameter->type != V_ASN1_SEQUENCE)
		return 0;
	p = alg->parameter->value.sequence->data;
	wrap = d2i_X509_ALGOR(NULL, &p, alg->parameter->value.sequence->length);
	if (wrap == NULL) {
		ERR_clear_error();
		return 0;
	}
	nid = OBJ_obj2nid(wrap->algorithm);
	X509_ALGOR_free(wrap);
	return nid == NID_id_aes128_wrap || nid == NID_id_aes192_wrap ||
	       nid == NID_id_aes256_wrap;
}

cf_status cf_envelope_decrypt(const unsigned char *der, size_t der_len,
			      X509 *cert, EVP_PKEY *key, cf_secret **content,
			      cf_error *err)
{
	CMS_ContentInfo *cms = NULL;
	STACK_OF(CMS_RecipientInfo) *ris;
	const unsigned char *p = der;
	BIO *out = NULL;
	int found = 0, n;
	cf_status rc = CF_OK;

	*content = NULL;
	if (der_len > CF_ENVELOPE_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"the envelope is %zu bytes, above the limit of %u",
			der_len, (unsigned)CF_ENVELOPE_MAX_BYTES);
	if (X509_check_private_key(cert, key) != 1)
		return cf_error_set_ssl(err, CF_ERR_USAGE,
			"the key does not belong to the certificate given to open "
			"with; pass the matching --cert and --key");
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)der_len);
	if (cms == NULL) {
		ERR_clear_error();
		return classify_bad_der(der, der_len, err);
	}
	if (p != der + der_len) {
		rc = cf_error_set(err, CF_ERR_MALFORMED,
			"the envelope has %zu stray bytes after its end",
			(size_t)(der + der_len - p));
		goto out;
	}
	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_id_smime_ct_authEnvelopedData) {
		rc = cf_error_set(err, CF_ERR_MALFORMED,
			"the envelope is a CMS %s, not an AuthEnvelopedData "
			"(AES-GCM); coffer accepts only authenticated encryption",
			OBJ_nid2ln(OBJ_obj2nid(CMS_get0_type(cms))));
		goto out;
	}
	rc = check_profile(der, der_len, err);
	if (rc != CF_OK)
		goto out;
	ris = CMS_get0_RecipientInfos(cms);
	n = sk_CMS_RecipientInfo_num(ris);
	/*
	 * Every recipient info naming us, not only the first: which of them
	 * CMS_decrypt_set1_pkey_and_peer unwraps is OpenSSL's choice, so
	 * each must pass.
	 */
	for (int i = 0; i < n; i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);

		if (!ri_matches(ri, cert))
			continue;
		found = 1;
		if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_AGREE &&
		    !kari_wrap_ok(ri)) {
			rc = cf_error_set(err, CF_ERR_MALFORMED,
				"the envelope's recipient info for this "
				"certificate does not use AES key wrap (RFC "
				"3394); coffer accepts id-aes128-wrap, "
				"id-aes192-wrap or id-aes256-wrap only");
			goto out;
		}
	}
	if (!found) {
		char cn[CF_CN_MAX_BYTES + 1];

		cf_cert_cn(cert, cn, sizeof(cn));
		rc = cf_error_set(err, CF_ERR_NOT_RECIPIENT,
			"the envelope is not addressed to \"%s\": none of its %d "
			"recipient(s) is this certificate", cn, n);
		goto out;
	}
	if (!CMS_decrypt_set1_pkey_and_peer(cms, key, cert, NULL)) {
		rc = cf_error_set_ssl(err, CF_ERR_UNDECRYPTABLE,
			"the envelope names this certificate but its key could "
			"not be unwrapped: the recipient info was altered or "
			"made for another key");
		goto out;
	}
	/* The decrypted bytes are the signed record: keep them in secure memory. */
	out = BIO_new(BIO_s_secmem());
	if (out == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!CMS_decrypt(cms, NULL, NULL, NULL, out, CMS_BINARY)) {
		rc = cf_error_set_ssl(err, CF_ERR_TAMPERED,
			"the envelope's content fails AES-GCM authentication: it "
			"was altered after sealing");
		goto out;
	}
	rc = cf_secret_from_bio(out, content, err);
out:
	BIO_free(out);
	CMS_ContentInfo_free(cms);
	return rc;
}

/*
 * Who may have signed rec (docs/FORMAT.md section 5, docs/CLUSTERS.md):
 *   cluster-key/NAME   an operator or enroller holding agent.enroll on
 *                      the cluster NAME (the key is the enroller's to give)
 *   cluster/NAME/...   an operator holding secret.write on the name, or a
 *                      member agent: its record carries the proof that it
 *                      holds the key of recipient, the cluster certificate
 *                      named NAME that opened the envelope
 *   anything else      an operator holding secret.write on the name
 */
static cf_status check_signer_rights(X509 *signer, const cf_record *rec,
				     X509 *recipient, cf_error *err)
{
	struct cf_perms *perms = NULL;
	char cn[CF_CN_MAX_BYTES + 1], cluster[CF_NAME_MAX_BYTES + 1];
	char fp[65];
	cf_kind kind = cf_cert_kind(signer);
	const char *verb = "secret.write", *scope = rec->name;
	cf_status rc;

	cf_cert_cn(signer, cn, sizeof(cn));
	if (kind == CF_KIND_AGENT &&
	    cf_cluster_of_name(rec->name, 0, cluster, sizeof(cluster))) {
		if (rec->member[0] == '\0')
			return cf_error_set(err, CF_ERR_PERMISSION,
				"agent \"%s\" signed cluster entry \"%s\" without "
				"a proof that it holds the cluster key", cn,
				rec->name);
		if (recipient == NULL ||
		    cf_cluster_check_cert(recipient, NULL, cluster, err) != CF_OK)
			return cf_error_set(err, CF_ERR_PERMISSION,
				"cluster entry \"%s\" by agent \"%s\" did not come "
				"sealed to the key of cluster \"%s\"", rec->name,
				cn, cluster);
		rc = cf_cert_fingerprint(signer, fp, err);
		if (rc == CF_OK &&
		    cf_cluster_proof_check(recipient, rec->tenant, fp,
					   rec->member, err) != CF_OK)
			rc = cf_error_set(err, CF_ERR_PERMISSION,
				"agent \"%s\" does not prove it holds the key of "
				"cluster \"%s\" (entry \"%s\")", cn, cluster,
				rec->name);
		return rc;
	}
	if (kind != CF_KIND_OPERATOR && kind != CF_KIND_ENROLLER)
		return cf_error_set(err, CF_ERR_PERMISSION,
			"signer \"%s\" is of kind %s; only operators may "
			"write secrets", cn, cf_kind_name(kind));
	if (cf_cluster_of_name(rec->name, 1, cluster, sizeof(cluster))) {
		verb = "agent.enroll";
		scope = cluster;
	}
	rc = cf_cert_perms(signer, &perms, err);
	if (rc != CF_OK)
		return cf_error_set(err, CF_ERR_PERMISSION,
			"signer \"%s\" has unreadable permissions", cn);
	if (!cf_perms_allows(perms, verb, scope))
		rc = cf_error_set(err, CF_ERR_PERMISSION,
			"signer \"%s\" does not hold %s on \"%s\"", cn, verb,
			scope);
	cf_perms_free(perms);
	return rc;
}

cf_status cf_envelope_check_signature(const cf_secret *signed_der,
				      cf_secret **content, X509 **signer_out,
				      STACK_OF(X509) **certs_out, cf_error *err)
{
	cf_status rc = cf_pki_init(err);

	if (rc != CF_OK)
		return rc;
	return cf_envelope_check_signature_as(signed_der, cf_nid_record(),
					      content, signer_out, certs_out,
					      err);
}

cf_status cf_envelope_check_signature_as(const cf_secret *signed_der,
					 int content_nid, cf_secret **content,
					 X509 **signer_out,
					 STACK_OF(X509) **certs_out,
					 cf_error *err)
{
	const unsigned char *p = cf_secret_cdata(signed_der);
	size_t len = cf_secret_len(signed_der);
	CMS_ContentInfo *cms = NULL;
	STACK_OF(X509) *signers = NULL;
	X509 *signer;
	X509_ALGOR *dig = NULL;
	BIO *bio = NULL;
	int md;
	cf_status rc;

	*content = NULL;
	*signer_out = NULL;
	if (certs_out != NULL)
		*certs_out = NULL;
	rc = cf_pki_init(err);
	if (rc != CF_OK)
		return rc;
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	if (cms == NULL || p != cf_secret_cdata(signed_der) + len ||
	    OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
		rc = cf_error_set_ssl(err, CF_ERR_MALFORMED,
			"the envelope's content is not a CMS SignedData");
		goto out;
	}
	if (OBJ_obj2nid(CMS_get0_eContentType(cms)) != content_nid) {
		char oid[80];

		OBJ_obj2txt(oid, sizeof(oid), OBJ_nid2obj(content_nid), 1);
		rc = cf_error_set(err, CF_ERR_MALFORMED,
			"the signed content is not a coffer %s (eContentType "
			"must be %s)", content_name(content_nid), oid);
		goto out;
	}
	if (sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(cms)) != 1) {
		rc = cf_error_set(err, CF_ERR_MALFORMED,
			"the record must have exactly one signer, it has %d",
			sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(cms)));
		goto out;
	}
	CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms),
							 0), NULL, NULL, &dig, NULL);
	md = dig ? OBJ_obj2nid(dig->algorithm) : NID_undef;
	if (md != NID_sha256 && md != NID_sha384 && md != NID_sha512) {
		rc = cf_error_set(err, CF_ERR_SIGNATURE,
			"the record is signed with digest %s; coffer accepts "
			"SHA-256, SHA-384 or SHA-512 only",
			md == NID_undef ? "(none)" : OBJ_nid2sn(md));
		goto out;
	}
	bio = BIO_new(BIO_s_secmem());
	if (bio == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* Signature only here; the chain is the caller's to check. */
	if (!CMS_verify(cms, NULL, NULL, NULL, bio,
			CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY)) {
		rc = cf_error_set_ssl(err, CF_ERR_SIGNATURE,
			"the record's signature does not verify");
		goto out;
	}
	signers = CMS_get0_signers(cms);
	signer = sk_X509_value(signers, 0);
	if (signer == NULL) {
		rc = cf_error_set(err, CF_ERR_SIGNATURE,
			"the record does not include its signer's certificate");
		goto out;
	}
	rc = cf_secret_from_bio(bio, content, err);
	if (rc != CF_OK)
		goto out;
	/* NULL (out of memory) only loses the intermediates: fails closed. */
	if (certs_out != NULL)
		*certs_out = CMS_get1_certs(cms);
	X509_up_ref(signer);
	*signer_out = signer;
out:
	if (rc != CF_OK) {
		cf_secret_free(*content);
		*content = NULL;
	}
	BIO_free(bio);
	sk_X509_free(signers);
	cms_free_wiped(cms);
	return rc;
}

/* cf_envelope_verify, knowing the certificate that opened the envelope
 * (NULL: not known). */
static cf_status verify_for(const cf_secret *signed_der, const cf_trust *trust,
			    const char *name, uint64_t min_version,
			    X509 *recipient, cf_record **out,
			    X509 **signer_out, cf_error *err)
{
	STACK_OF(X509) *certs = NULL;
	X509 *signer = NULL;
	cf_secret *json = NULL;
	cf_record *rec = NULL;
	cf_status rc;

	*out = NULL;
	if (signer_out != NULL)
		*signer_out = NULL;
	rc = cf_envelope_check_signature(signed_der, &json, &signer, &certs, err);
	if (rc != CF_OK)
		goto out;
	/* The chain before the record: only trusted content is parsed. */
	rc = cf_trust_verify(trust, signer, certs, "the record's signer", err);
	if (rc != CF_OK)
		goto out;
	rc = cf_record_parse(cf_secret_cdata(json), cf_secret_len(json), &rec, err);
	if (rc != CF_OK)
		goto out;
	rc = check_signer_rights(signer, rec, recipient, err);
	if (rc != CF_OK)
		goto out;
	if (strcmp(rec->tenant, cf_trust_tenant(trust)) != 0) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"the record belongs to another organisation (tenant "
			"%.16s..., expected %.16s...)", rec->tenant,
			cf_trust_tenant(trust));
		goto out;
	}
	if (name != NULL && strcmp(rec->name, name) != 0) {
		rc = cf_error_set(err, CF_ERR_NAME,
			"the envelope holds secret \"%s\", not \"%s\": it was "
			"swapped", rec->name, name);
		goto out;
	}
	if (rec->version < min_version) {
		rc = cf_error_set(err, CF_ERR_ROLLBACK,
			"the envelope holds version %llu of \"%s\", below the "
			"minimum %llu: refusing a rollback",
			(unsigned long long)rec->version, rec->name,
			(unsigned long long)min_version);
		goto out;
	}
	if (signer_out != NULL) {
		*signer_out = signer;
		signer = NULL;
	}
	*out = rec;
	rec = NULL;
out:
	cf_record_free(rec);
	cf_secret_free(json);
	X509_free(signer);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

cf_status cf_envelope_verify(const cf_secret *signed_der,
			     const cf_trust *trust, const char *name,
			     uint64_t min_version, cf_record **out,
			     X509 **signer_out, cf_error *err)
{
	return verify_for(signed_der, trust, name, min_version, NULL, out,
			  signer_out, err);
}

cf_status cf_envelope_open(const unsigned char *der, size_t der_len,
			   X509 *cert, EVP_PKEY *key, const cf_trust *trust,
			   const char *name, uint64_t min_version,
			   cf_record **out, X509 **signer, cf_error *err)
{
	cf_secret *signed_der = NULL;
	cf_status rc;

	*out = NULL;
	rc = cf_envelope_decrypt(der, der_len, cert, key, &signed_der, err);
	if (rc == CF_OK)
		rc = verify_for(signed_der, trust, name, min_version, cert,
				out, signer, err);
	cf_secret_free(signed_der);
	return rc;
}
