/*
 * pki.h - the organisation's PKI: keys, requests, certificates, CRLs.
 *
 * All keys are P-256.  Certificates carry coffer's private extensions
 * under the arc CF_OID_ARC (docs/PKI.md):
 *   .1 permissions (operator, enroller)   UTF8String, VERB:SCOPE per line
 *   .2 groups (agent)                     UTF8String, comma-separated
 *   .3 cluster name (cluster, member)     UTF8String
 *   .4 content type of a signed record    (an eContentType, not an extension)
 *   .5 kind of certificate                UTF8String operator|enroller|...
 *   .6 content type of a signed command   (eContentType, docs/COMMANDS.md)
 *   .7 content type of a signed result    (eContentType, docs/COMMANDS.md)
 *   .8 content type of a signed ack       (eContentType, docs/FORMAT.md)
 * None is critical, so standard verifiers (openssl verify, certtool)
 * accept the certificates.
 *
 * This module does no file I/O: it encodes to and decodes from memory.
 * Buffers it returns are freed with OPENSSL_free unless said otherwise.
 */
#ifndef CF_PKI_H
#define CF_PKI_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <time.h>

#include "error.h"
#include "secmem.h"

/*
 * 2.25.N with N = the design's UUID 253208824162204592790799324446465436028
 * modulo 2^63: GnuTLS (libtasn1) refuses any certificate with an OID arc
 * above 2^64, so the full UUID arc made our certificates unreadable to it
 * (docs/PKI.md, "Object identifiers").
 */
#define CF_OID_ARC "2.25.2512399633766132092"
#define CF_OID_PERMS CF_OID_ARC ".1"
#define CF_OID_GROUPS CF_OID_ARC ".2"
#define CF_OID_CLUSTER CF_OID_ARC ".3"
#define CF_OID_RECORD CF_OID_ARC ".4"
#define CF_OID_KIND CF_OID_ARC ".5"
#define CF_OID_COMMAND CF_OID_ARC ".6"
#define CF_OID_RESULT CF_OID_ARC ".7"
#define CF_OID_ACK CF_OID_ARC ".8"

#define CF_PEM_MAX_BYTES (256u * 1024u)   /* one certificate/key/CSR/CRL file */
#define CF_CRL_MAX_BYTES (16u * 1024u * 1024u)
#define CF_CN_MAX_BYTES 64
#define CF_GROUPS_MAX 64
#define CF_DEFAULT_CA_DAYS 3650
#define CF_DEFAULT_CERT_DAYS 825

typedef enum cf_kind {
	CF_KIND_UNKNOWN = 0,
	CF_KIND_ROOT,
	CF_KIND_OPERATOR,
	CF_KIND_ENROLLER,
	CF_KIND_AGENT,
	CF_KIND_CLUSTER,
} cf_kind;

/* Registers coffer's OIDs with OpenSSL; idempotent and thread-safe. */
cf_status cf_pki_init(cf_error *err);

/* NIDs of coffer's OIDs (valid after cf_pki_init). */
int cf_nid_perms(void);
int cf_nid_groups(void);
int cf_nid_cluster(void);
int cf_nid_record(void);
int cf_nid_kind(void);
int cf_nid_command(void);
int cf_nid_result(void);
int cf_nid_ack(void);

const char *cf_kind_name(cf_kind kind);
cf_kind cf_kind_from_name(const char *name);

/* --- keys --- */

/* True if key is an EC key on P-256 (by group name, not just size). */
int cf_key_is_p256(EVP_PKEY *key);

/* A new P-256 key pair. */
cf_status cf_key_generate(EVP_PKEY **out, cf_error *err);

/*
 * PEM PKCS#8 of key into secure memory.  With pass (not NULL, non-empty)
 * the key is encrypted with scrypt (N=16384, r=8, p=1) and AES-256-CBC.
 */
cf_status cf_key_to_pem(EVP_PKEY *key, const cf_secret *pass, cf_secret **pem,
			cf_error *err);

/*
 * Parses a PEM private key.  An encrypted key needs pass; without it the
 * result is CF_ERR_PASSPHRASE ("needs a passphrase"), and a wrong one also
 * gives CF_ERR_PASSPHRASE.  Only P-256 keys are accepted.  what names the
 * source in messages.
 */
cf_status cf_key_from_pem(const unsigned char *pem, size_t len,
			  const cf_secret *pass, const char *what,
			  EVP_PKEY **out, cf_error *err);

/* True if the PEM text holds an encrypted private key. */
int cf_key_pem_is_encrypted(const unsigned char *pem, size_t len);

/* --- certificate requests --- */

cf_status cf_csr_new(EVP_PKEY *key, const char *cn, X509_REQ **out,
		     cf_error *err);
/* PEM or DER; the CSR's own signature is checked. */
cf_status cf_csr_parse(const unsigned char *buf, size_t len, const char *what,
		       X509_REQ **out, cf_error *err);
cf_status cf_csr_to_pem(X509_REQ *csr, unsigned char **pem, size_t *len,
			cf_error *err);

/* --- certificates --- */

/*
 * Parses PEM (one or more certificates: the first is *out, the others are
 * appended to *chain if chain is not NULL) or a single DER certificate.
 */
cf_status cf_cert_parse(const unsigned char *buf, size_t len, const char *what,
			X509 **out, STACK_OF(X509) **chain, cf_error *err);
cf_status cf_cert_to_pem(X509 *cert, unsigned char **pem, size_t *len,
			 cf_error *err);

/* Hex SHA-256 of the DER encoding (64 chars + NUL). */
cf_status cf_cert_fingerprint(X509 *cert, char hex[65], cf_error *err);

/* A self-signed root for organisation org, valid for days. */
cf_status cf_ca_create(EVP_PKEY *key, const char *org, int days, X509 **out,
		       cf_error *err);

typedef struct cf_cert_spec {
	cf_kind kind;                 /* operator, enroller, agent or cluster */
	const char *const *perms;     /* VERB:SCOPE rules (operator/enroller) */
	size_t n_perms;
	const char *const *groups;    /* agent groups */
	size_t n_groups;
	const char *cluster;          /* cluster cert name, or member's cluster */
	int days;                     /* 0 = CF_DEFAULT_CERT_DAYS */
} cf_cert_spec;

/*
 * Signs csr as the kind of certificate spec describes.  The issuer must be
 * the root or an enroller; an enroller may only issue agents and clusters,
 * and only for groups and cluster names its agent.enroll rules cover
 * (CF_ERR_POLICY otherwise, naming the uncovered group).  The validity is
 * clamped to the issuer's.  The issuer key must match the issuer cert.
 */
cf_status cf_cert_issue(X509 *issuer, EVP_PKEY *issuer_key, X509_REQ *csr,
			const cf_cert_spec *spec, X509 **out, cf_error *err);

/*
 * Would issuer be allowed to issue cert as it is (its kind, groups and
 * cluster)?  The check verifiers repeat on every chain through an
 * enroller, so that a signature alone never proves the right to issue.
 */
cf_status cf_cert_check_issuance(X509 *issuer, X509 *cert, cf_error *err);

/* Text of a coffer UTF8String extension (NULL if absent). */
cf_status cf_cert_ext_text(X509 *cert, int nid, char **out, cf_error *err);

/* The kind recorded in the certificate (root when self-signed CA). */
cf_kind cf_cert_kind(X509 *cert);

/* Parsed permissions of an operator or enroller (empty set if none). */
struct cf_perms;
cf_status cf_cert_perms(X509 *cert, struct cf_perms **out, cf_error *err);

/* The subject's CN as UTF-8 into buf (empty when absent). */
void cf_cert_cn(X509 *cert, char *buf, size_t size);
void cf_cert_cn_of_name(const X509_NAME *name, char *buf, size_t size);

/* One-line subject/issuer as RFC 2253 text, OPENSSL_free'd by caller. */
char *cf_name_text(const X509_NAME *name);

/* --- revocation lists --- */

/* PEM or DER CRL. */
cf_status cf_crl_parse(const unsigned char *buf, size_t len, const char *what,
		       X509_CRL **out, cf_error *err);
cf_status cf_crl_to_pem(X509_CRL *crl, unsigned char **pem, size_t *len,
			cf_error *err);

/*
 * A new CRL signed by root/root_key: the entries of old (may be NULL),
 * plus revoke (may be NULL, to just re-sign), with the next CRL number,
 * valid for days.  CF_ERR_EXISTS if revoke is already listed.
 */
cf_status cf_crl_update(X509 *root, EVP_PKEY *root_key, X509_CRL *old,
			X509 *revoke, int days, X509_CRL **out, cf_error *err);

/* Checks the CRL was signed by root. */
cf_status cf_crl_check_signer(X509_CRL *crl, X509 *root, cf_error *err);

/* Converts an ASN1_TIME to UNIX seconds (0 on failure). */
int64_t cf_asn1_time_unix(const ASN1_TIME *t);

#endif
