/*
 * envelope.h - signed records sealed to recipients (DESIGN 3).
 *
 *   record JSON --cf_envelope_sign--> CMS SignedData (DER, once per version)
 *   SignedData  --cf_sealer_seal----> CMS AuthEnvelopedData (DER, one per
 *                                     recipient: AES-256-GCM content, one
 *                                     KeyAgreeRecipientInfo, ECDH P-256
 *                                     ephemeral-static, X9.63 KDF SHA-256,
 *                                     AES-256 key wrap)
 *   envelope    --cf_envelope_open--> verified record
 *
 * The sealer encrypts the content once per cf_sealer, so all envelopes of
 * one sealer share one content-encryption key, exactly as the recipients
 * of one multi-recipient CMS message do; each envelope still stands alone
 * and opens with `openssl cms -decrypt`.  docs/FORMAT.md has the details.
 */
#ifndef CF_ENVELOPE_H
#define CF_ENVELOPE_H

#include <openssl/x509.h>
#include <stdint.h>

#include "error.h"
#include "record.h"
#include "secmem.h"
#include "trust.h"

/* Largest envelope accepted: a maximal record plus room for certificates. */
#define CF_ENVELOPE_MAX_BYTES (CF_RECORD_MAX_BYTES + 256u * 1024u)

/*
 * Signs record JSON with signer_key (ECDSA-SHA256), eContentType
 * CF_OID_RECORD, the signer certificate and extra (may be NULL, e.g. an
 * enroller between signer and root) included.  Output in secure memory.
 */
cf_status cf_envelope_sign(const cf_secret *record_json, X509 *signer_cert,
			   EVP_PKEY *signer_key, STACK_OF(X509) *extra,
			   cf_secret **signed_der, cf_error *err);

/*
 * The same for another signed content type (cf_nid_command(),
 * cf_nid_result(): docs/COMMANDS.md); content_nid must be one of coffer's.
 */
cf_status cf_envelope_sign_as(const cf_secret *record_json, int content_nid,
			      X509 *signer_cert, EVP_PKEY *signer_key,
			      STACK_OF(X509) *extra, cf_secret **signed_der,
			      cf_error *err);

typedef struct cf_sealer cf_sealer;

/*
 * Prepares sealing of content (normally the signed record): draws a fresh
 * content-encryption key and IV and encrypts content once.
 */
cf_status cf_sealer_new(const cf_secret *content, cf_sealer **out,
			cf_error *err);

/*
 * A sealer with the same key and ciphertext but contexts of its own, for
 * another thread (a cf_sealer must not be used by two threads at once).
 */
cf_status cf_sealer_dup(const cf_sealer *sealer, cf_sealer **out,
			cf_error *err);

/*
 * One envelope for recipient (a P-256 certificate; verify it first).
 * *der is OPENSSL_malloc'd; free it with OPENSSL_free.
 */
cf_status cf_sealer_seal(cf_sealer *sealer, X509 *recipient,
			 unsigned char **der, size_t *der_len, cf_error *err);

/*
 * One envelope with one recipient info per certificate of recipients
 * (as `openssl cms -encrypt` with several -recip makes), for offline files
 * that several recipients open.
 */
cf_status cf_sealer_seal_many(cf_sealer *sealer, X509 *const *recipients,
			      size_t n, unsigned char **der, size_t *der_len,
			      cf_error *err);

void cf_sealer_free(cf_sealer *sealer);

/*
 * Decrypts an envelope addressed to cert with key into secure memory
 * (the signed record, unverified).  Refusals: CF_ERR_TRUNCATED,
 * CF_ERR_MALFORMED, CF_ERR_NOT_RECIPIENT, CF_ERR_UNDECRYPTABLE,
 * CF_ERR_TAMPERED.
 */
cf_status cf_envelope_decrypt(const unsigned char *der, size_t der_len,
			      X509 *cert, EVP_PKEY *key, cf_secret **content,
			      cf_error *err);

/*
 * The signature half of opening, shared by every reader of a signed
 * record (cf_envelope_verify, cf_token_open): signed_der must be exactly
 * one CMS SignedData (DER or BER, nothing after it) with eContentType
 * CF_OID_RECORD, exactly one SignerInfo, digest SHA-256, SHA-384 or
 * SHA-512, attached content, and a signature that verifies with the
 * signer certificate included in it (docs/FORMAT.md rules 9-12).
 *
 * It does NOT check the signer's chain, revocation or enroller scope, its
 * kind or rights, nor anything in the record (it is not even parsed: the
 * caller parses it with cf_record_parse only after it trusts the signer,
 * and then checks tenant, name and version).  A signature that verifies
 * says only "whoever holds this certificate's key signed this"; anybody
 * can make one, so the caller must check the signer next.
 *
 * On success *content is the signed record JSON (secure memory), *signer
 * the signer's certificate and, when certs is not NULL, *certs the
 * SignedData's certificates (may be NULL: none), for use as untrusted
 * intermediates; the caller frees all three (cf_secret_free, X509_free,
 * sk_X509_pop_free(..., X509_free)).  On failure all are NULL.
 * Refusals: CF_ERR_MALFORMED (shape, content type, signer count),
 * CF_ERR_SIGNATURE (digest, signature, missing signer certificate).
 */
cf_status cf_envelope_check_signature(const cf_secret *signed_der,
				      cf_secret **content, X509 **signer,
				      STACK_OF(X509) **certs, cf_error *err);
/* The same for another content type (a command or a result). */
cf_status cf_envelope_check_signature_as(const cf_secret *signed_der,
					 int content_nid, cf_secret **content,
					 X509 **signer, STACK_OF(X509) **certs,
					 cf_error *err);

/*
 * Verifies a signed record: cf_envelope_check_signature, then the
 * signer's chain to trust's root and the CRL, the record's strict parse,
 * the signer's right to the name (secret.write; agent.enroll on the
 * cluster for "cluster-key/NAME"; docs/CLUSTERS.md), the tenant, the
 * expected name, and
 * version >= min_version (0: no minimum), in that order.
 * On success *out is the record and *signer (if not NULL) the signer's
 * certificate (caller frees).  Refusals: CF_ERR_MALFORMED,
 * CF_ERR_SIGNATURE, CF_ERR_UNTRUSTED, CF_ERR_REVOKED, CF_ERR_PERMISSION,
 * CF_ERR_RECORD, CF_ERR_NAME, CF_ERR_ROLLBACK.
 */
cf_status cf_envelope_verify(const cf_secret *signed_der,
			     const cf_trust *trust, const char *name,
			     uint64_t min_version, cf_record **out,
			     X509 **signer, cf_error *err);

/*
 * cf_envelope_decrypt then cf_envelope_verify, with one more signer
 * accepted: on "cluster/NAME/..." a member agent whose record proves it
 * holds the key of cert, when cert is the cluster certificate NAME.
 */
cf_status cf_envelope_open(const unsigned char *der, size_t der_len,
			   X509 *cert, EVP_PKEY *key, const cf_trust *trust,
			   const char *name, uint64_t min_version,
			   cf_record **out, X509 **signer, cf_error *err);

#endif
