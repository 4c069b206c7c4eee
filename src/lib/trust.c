/*
 * trust.c - chain verification against one tenant root.
 *
 * Invariants: the X509_STORE holds the root and nothing else, so no chain
 * can end anywhere else; revocation is checked by serial against the
 * root's CRL for every certificate of the chain (serials are 159-bit
 * integers with 158 random bits, unique within a tenant; docs/PKI.md
 * explains why the root's CRL also lists certificates that an enroller
 * issued).  The store is only
 * read after creation, so verification is safe from many threads.
 */
#include "trust.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "pki.h"

struct cf_trust {
	X509_STORE *store;
	X509 *root;
	X509_CRL *crl;
	char tenant[65];
};

cf_status cf_trust_new(X509 *root, X509_CRL *crl, cf_trust **out,
		       cf_error *err)
{
	cf_trust *t = NULL;
	cf_status rc;

	*out = NULL;
	rc = cf_pki_init(err);
	if (rc != CF_OK)
		return rc;
	if (cf_cert_kind(root) != CF_KIND_ROOT)
		return cf_error_set(err, CF_ERR_USAGE,
			"the root certificate is not a self-signed CA; give the "
			"organisation's root.crt");
	if (crl != NULL) {
		const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);

		rc = cf_crl_check_signer(crl, root, err);
		if (rc != CF_OK)
			return rc;
		/*
		 * A stale list may be hiding newer revocations (a replay by
		 * whoever handed it to us), so it is refused, not trusted.
		 */
		if (next != NULL && X509_cmp_current_time(next) < 0)
			return cf_error_set(err, CF_ERR_UNTRUSTED,
				"the CRL's next update time has passed; re-sign it "
				"with 'coffer ca revoke --ca DIR' and use the new one");
	}
	t = OPENSSL_zalloc(sizeof(*t));
	if (t == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	t->store = X509_STORE_new();
	if (t->store == NULL || !X509_STORE_add_cert(t->store, root)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"could not set up certificate verification");
		goto out;
	}
	rc = cf_cert_fingerprint(root, t->tenant, err);
	if (rc != CF_OK)
		goto out;
	X509_up_ref(root);
	t->root = root;
	if (crl != NULL) {
		X509_CRL_up_ref(crl);
		t->crl = crl;
	}
	*out = t;
	t = NULL;
out:
	cf_trust_free(t);
	return rc;
}

void cf_trust_free(cf_trust *trust)
{
	if (trust == NULL)
		return;
	X509_STORE_free(trust->store);
	X509_free(trust->root);
	X509_CRL_free(trust->crl);
	OPENSSL_free(trust);
}

const char *cf_trust_tenant(const cf_trust *trust) { return trust->tenant; }
X509 *cf_trust_root(const cf_trust *trust) { return trust->root; }

static cf_status check_revoked(const cf_trust *trust, STACK_OF(X509) *chain,
			       const char *what, cf_error *err)
{
	X509_REVOKED *entry = NULL;
	char cn[CF_CN_MAX_BYTES + 1];
	int n = sk_X509_num(chain);

	if (trust->crl == NULL)
		return CF_OK;
	/* The last element is the root itself, which a CRL cannot revoke. */
	for (int i = 0; i < n - 1; i++) {
		X509 *c = sk_X509_value(chain, i);

		if (X509_CRL_get0_by_serial(trust->crl, &entry,
				(ASN1_INTEGER *)X509_get0_serialNumber(c)) == 1) {
			cf_cert_cn(c, cn, sizeof(cn));
			if (i == 0)
				return cf_error_set(err, CF_ERR_REVOKED,
					"%s (\"%s\") is revoked by the "
					"organisation's CRL", what, cn);
			return cf_error_set(err, CF_ERR_REVOKED,
				"%s was issued by \"%s\", which is revoked by "
				"the organisation's CRL", what, cn);
		}
	}
	return CF_OK;
}

cf_status cf_trust_verify(const cf_trust *trust, X509 *cert,
			  STACK_OF(X509) *untrusted, const char *what,
			  cf_error *err)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *chain;
	char cn[CF_CN_MAX_BYTES + 1];
	cf_status rc = CF_OK;
	int depth;

	if (ctx == NULL || !X509_STORE_CTX_init(ctx, trust->store, cert, untrusted)) {
		rc = cf_error_set_ssl(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (X509_verify_cert(ctx) != 1) {
		int code = X509_STORE_CTX_get_error(ctx);

		cf_cert_cn(cert, cn, sizeof(cn));
		ERR_clear_error();
		rc = cf_error_set(err, CF_ERR_UNTRUSTED,
			"%s (\"%s\") is not trusted by this organisation's "
			"root: %s", what, cn, X509_verify_cert_error_string(code));
		goto out;
	}
	chain = X509_STORE_CTX_get0_chain(ctx);
	rc = check_revoked(trust, chain, what, err);
	if (rc != CF_OK)
		goto out;
	/* Each issuer below the root must have had the right to issue. */
	depth = sk_X509_num(chain);
	for (int i = depth - 3; i >= 0; i--) {
		cf_error why;

		if (cf_cert_check_issuance(sk_X509_value(chain, i + 1),
					   sk_X509_value(chain, i), &why) != CF_OK) {
			rc = cf_error_set(err, CF_ERR_UNTRUSTED,
				"%s is not trusted: %s", what, why.msg);
			goto out;
		}
	}
out:
	X509_STORE_CTX_free(ctx);
	return rc;
}
