/*
 * trust.h - what a tenant trusts: its root certificate and its CRL.
 *
 * Every certificate coffer acts on (a recipient before sealing, a signer
 * after opening) is verified here: X509_verify_cert against the root only,
 * then the root's CRL for every certificate of the chain, then the issuing
 * rules of an enroller in the middle of the chain (docs/PKI.md).
 */
#ifndef CF_TRUST_H
#define CF_TRUST_H

#include <openssl/x509.h>

#include "error.h"

typedef struct cf_trust cf_trust;

/*
 * A trust anchor for root (a self-signed CA) and crl (may be NULL; must be
 * signed by root).  Takes its own references.
 */
cf_status cf_trust_new(X509 *root, X509_CRL *crl, cf_trust **out,
		       cf_error *err);
void cf_trust_free(cf_trust *trust);

/* The tenant id: hex SHA-256 of the root's DER. */
const char *cf_trust_tenant(const cf_trust *trust);
X509 *cf_trust_root(const cf_trust *trust);

/*
 * Verifies cert (with optional untrusted intermediates) chains to the
 * root, is valid now, is not revoked, and was issued within the rights of
 * its issuer.  what names the certificate in messages ("recipient
 * agents/web-1.crt").  Thread-safe.  Returns CF_ERR_UNTRUSTED (also
 * for an enroller that issued beyond its scope) or CF_ERR_REVOKED, with a
 * sentence.
 */
cf_status cf_trust_verify(const cf_trust *trust, X509 *cert,
			  STACK_OF(X509) *untrusted, const char *what,
			  cf_error *err);

#endif
