/*
 * cms_asn1.c - ASN.1 templates shared by sealer.c and envelope.c.
 */
#include "cms_asn1.h"

ASN1_SEQUENCE(CF_GCM_PARAMS) = {
	ASN1_SIMPLE(CF_GCM_PARAMS, nonce, ASN1_OCTET_STRING),
	ASN1_OPT(CF_GCM_PARAMS, icvLen, ASN1_INTEGER)
} ASN1_SEQUENCE_END(CF_GCM_PARAMS)

ASN1_SEQUENCE(CF_ECI) = {
	ASN1_SIMPLE(CF_ECI, contentType, ASN1_OBJECT),
	ASN1_SIMPLE(CF_ECI, contentEncryptionAlgorithm, X509_ALGOR),
	ASN1_IMP_OPT(CF_ECI, encryptedContent, ASN1_OCTET_STRING, 0)
} ASN1_SEQUENCE_END(CF_ECI)
