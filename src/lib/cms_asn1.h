/*
 * cms_asn1.h - internal: the pieces of CMS (RFC 5652, 5083, 5084) that
 * both the sealer (to write envelopes) and the opener (to check their
 * profile) describe with OpenSSL's ASN.1 templates.  Not a public header.
 */
#ifndef CF_CMS_ASN1_H
#define CF_CMS_ASN1_H

#include <openssl/asn1t.h>
#include <openssl/x509.h>

/* GCMParameters: aes-ICVlen is DEFAULT 12, so absent means 12. */
typedef struct {
	ASN1_OCTET_STRING *nonce;
	ASN1_INTEGER *icvLen;                  /* OPTIONAL */
} CF_GCM_PARAMS;
DECLARE_ASN1_ITEM(CF_GCM_PARAMS)

/* EncryptedContentInfo. */
typedef struct {
	ASN1_OBJECT *contentType;
	X509_ALGOR *contentEncryptionAlgorithm;
	ASN1_OCTET_STRING *encryptedContent;   /* [0] IMPLICIT OPTIONAL */
} CF_ECI;
DECLARE_ASN1_ITEM(CF_ECI)

#endif
