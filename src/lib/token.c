/*
 * token.c - join tokens: generation, strict parsing, hash and HMAC, and the
 * envelope that keeps a token's SECRET on the server for its creator.
 *
 * Invariants: the SECRET text exists only in cf_secret buffers (and, for
 * the instant of encoding, in a stack buffer wiped right after); digests
 * are compared with CRYPTO_memcmp; no error sentence quotes token text.
 */
#include "token.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "record.h"

static const char hexdigits[] = "0123456789abcdef";

static void to_hex(const unsigned char *bin, size_t len, char *hex)
{
	for (size_t i = 0; i < len; i++) {
		hex[2 * i] = hexdigits[bin[i] >> 4];
		hex[2 * i + 1] = hexdigits[bin[i] & 0x0f];
	}
	hex[2 * len] = '\0';
}

static int is_lower_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int is_b64url(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int cf_token_id_valid(const char *id)
{
	size_t i;

	if (id == NULL)
		return 0;
	for (i = 0; i < CF_TOKEN_ID_HEX; i++)
		if (!is_lower_hex((unsigned char)id[i]))
			return 0;
	return id[i] == '\0';
}

void cf_token_free(cf_token *tok)
{
	if (tok == NULL)
		return;
	cf_secret_free(tok->secret);
	OPENSSL_free(tok);
}

cf_status cf_token_generate(cf_token **out, cf_error *err)
{
	unsigned char id[CF_TOKEN_ID_BYTES];
	/* EVP_EncodeBlock writes 4 * ceil(32 / 3) = 44 characters and a NUL. */
	unsigned char text[48];
	cf_secret *raw = NULL;
	cf_token *tok = NULL;
	cf_status rc = CF_OK;
	int n;

	*out = NULL;
	tok = OPENSSL_zalloc(sizeof(*tok));
	raw = cf_secret_new(CF_TOKEN_SECRET_BYTES);
	if (tok == NULL || raw == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (RAND_bytes(id, sizeof(id)) != 1 ||
	    RAND_priv_bytes(cf_secret_data(raw), CF_TOKEN_SECRET_BYTES) != 1) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"cannot draw random bytes for a join token");
		goto out;
	}
	cf_secret_set_len(raw, CF_TOKEN_SECRET_BYTES, NULL);
	to_hex(id, sizeof(id), tok->id);
	n = EVP_EncodeBlock(text, cf_secret_cdata(raw), CF_TOKEN_SECRET_BYTES);
	if (n != 44 || text[43] != '=') {
		rc = cf_error_set(err, CF_ERR_CRYPTO,
			"base64 encoding of a join token failed");
		goto out;
	}
	/* base64 to base64url (RFC 4648 section 5), without padding. */
	for (int i = 0; i < CF_TOKEN_SECRET_B64; i++) {
		if (text[i] == '+')
			text[i] = '-';
		else if (text[i] == '/')
			text[i] = '_';
	}
	tok->secret = cf_secret_from(text, CF_TOKEN_SECRET_B64);
	if (tok->secret == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
		goto out;
	}
	*out = tok;
	tok = NULL;
out:
	OPENSSL_cleanse(text, sizeof(text));
	cf_secret_free(raw);
	cf_token_free(tok);
	return rc;
}

cf_status cf_token_parse(const unsigned char *text, size_t len, cf_token **out,
			 cf_error *err)
{
	cf_token *tok = NULL;
	const unsigned char *secret;
	size_t secret_len, i;
	int hex = 1, b64 = 1;

	*out = NULL;
	if (text == NULL)
		return cf_error_set(err, CF_ERR_PARSE, "no join token was given");
	if (len > 0 && text[len - 1] == '\n') {
		len--;
		if (len > 0 && text[len - 1] == '\r')
			len--;
	}
	if (len > CF_TOKEN_TEXT_MAX)
		return cf_error_set(err, CF_ERR_PARSE,
			"the join token is %zu bytes long; a token is ID.SECRET of "
			"at most %d bytes, as printed by 'coffer token create'",
			len, CF_TOKEN_TEXT_MAX);
	if (len < CF_TOKEN_ID_HEX + 1 || text[CF_TOKEN_ID_HEX] != '.')
		return cf_error_set(err, CF_ERR_PARSE,
			"the join token is not of the form ID.SECRET (32 hex "
			"characters, a dot, the secret), as printed by 'coffer "
			"token create'");
	for (i = 0; i < CF_TOKEN_ID_HEX; i++)
		if (!is_lower_hex(text[i]))
			return cf_error_set(err, CF_ERR_PARSE,
				"the join token's ID must be 32 lower-case hex "
				"characters");
	secret = text + CF_TOKEN_ID_HEX + 1;
	secret_len = len - CF_TOKEN_ID_HEX - 1;
	for (i = 0; i < secret_len; i++) {
		hex &= is_lower_hex(secret[i]);
		b64 &= is_b64url(secret[i]);
	}
	if (!((secret_len == CF_TOKEN_SECRET_B64 && b64) ||
	      (secret_len == CF_TOKEN_SECRET_HEX && hex)))
		return cf_error_set(err, CF_ERR_PARSE,
			"the join token's secret must be %d base64url or %d "
			"lower-case hex characters; was the token cut or "
			"changed?", CF_TOKEN_SECRET_B64, CF_TOKEN_SECRET_HEX);
	tok = OPENSSL_zalloc(sizeof(*tok));
	if (tok == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	memcpy(tok->id, text, CF_TOKEN_ID_HEX);
	tok->id[CF_TOKEN_ID_HEX] = '\0';
	tok->secret = cf_secret_from(secret, secret_len);
	if (tok->secret == NULL) {
		cf_token_free(tok);
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	}
	*out = tok;
	return CF_OK;
}

cf_status cf_token_text(const cf_token *tok, cf_secret **out, cf_error *err)
{
	cf_secret *s = cf_secret_new(CF_TOKEN_TEXT_MAX);
	cf_status rc;

	*out = NULL;
	if (s == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	rc = cf_secret_append(s, tok->id, strlen(tok->id), err);
	if (rc == CF_OK)
		rc = cf_secret_append(s, ".", 1, err);
	if (rc == CF_OK)
		rc = cf_secret_append(s, cf_secret_cdata(tok->secret),
				      cf_secret_len(tok->secret), err);
	if (rc != CF_OK) {
		cf_secret_free(s);
		return rc;
	}
	*out = s;
	return CF_OK;
}

cf_status cf_token_hash(const cf_secret *secret, char hex[65], cf_error *err)
{
	unsigned char md[32];
	unsigned int md_len = 0;

	if (EVP_Digest(cf_secret_cdata(secret), cf_secret_len(secret), md,
		       &md_len, EVP_sha256(), NULL) != 1 || md_len != sizeof(md))
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"cannot hash the join token");
	to_hex(md, sizeof(md), hex);
	return CF_OK;
}

cf_status cf_token_hmac(const cf_secret *secret, const unsigned char *data,
			size_t len, char hex[65], cf_error *err)
{
	EVP_MAC *mac = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	unsigned char md[32];
	size_t md_len = 0;
	cf_status rc = CF_OK;
	char digest[] = "SHA256";

	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (ctx == NULL ||
	    EVP_MAC_init(ctx, cf_secret_cdata(secret), cf_secret_len(secret),
			 params) != 1 ||
	    EVP_MAC_update(ctx, data, len) != 1 ||
	    EVP_MAC_final(ctx, md, &md_len, sizeof(md)) != 1 ||
	    md_len != sizeof(md)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"cannot compute the HMAC of the certificate request");
		goto out;
	}
	to_hex(md, sizeof(md), hex);
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return rc;
}

int cf_token_digest_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL || strlen(a) != 64 || strlen(b) != 64)
		return 0;
	return CRYPTO_memcmp(a, b, 64) == 0;
}

static cf_status record_name(const char *id, char *name, size_t size,
			     cf_error *err)
{
	if (!cf_token_id_valid(id))
		return cf_error_set(err, CF_ERR_USAGE,
			"a token ID must be 32 lower-case hex characters");
	snprintf(name, size, "token/%s", id);
	return CF_OK;
}

cf_status cf_token_seal(const cf_token *tok, const char *tenant, X509 *cert,
			EVP_PKEY *key, STACK_OF(X509) *chain, unsigned char **der,
			size_t *der_len, cf_error *err)
{
	cf_record rec = { 0 };
	cf_secret *json = NULL, *signed_der = NULL;
	cf_sealer *sealer = NULL;
	cf_secret *value = NULL;
	cf_status rc;

	*der = NULL;
	*der_len = 0;
	rc = record_name(tok->id, rec.name, sizeof(rec.name), err);
	if (rc != CF_OK)
		return rc;
	snprintf(rec.tenant, sizeof(rec.tenant), "%s", tenant);
	rec.version = 1;
	rec.created = (int64_t)time(NULL);
	rec.type = CF_TYPE_TEXT;
	if (tok->group[0] != '\0') {
		char claims[CF_NAME_MAX_BYTES + 32];
		int n;

		rc = cf_name_check("group name", tok->group, err);
		if (rc != CF_OK)
			return rc;
		n = snprintf(claims, sizeof(claims), "\n%s\n%lld", tok->group,
			     (long long)tok->expires);
		value = cf_secret_from(cf_secret_cdata(tok->secret),
				       cf_secret_len(tok->secret));
		if (value == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
		rc = cf_secret_append(value, claims, (size_t)n, err);
		if (rc != CF_OK)
			goto out;
		rec.value = value;
	} else {
		/* Borrowed, not owned: rec is never passed to cf_record_free. */
		rec.value = tok->secret;
	}
	rc = cf_record_encode(&rec, &json, err);
	if (rc == CF_OK)
		rc = cf_envelope_sign(json, cert, key, chain, &signed_der, err);
	if (rc == CF_OK)
		rc = cf_sealer_new(signed_der, &sealer, err);
	if (rc == CF_OK)
		rc = cf_sealer_seal(sealer, cert, der, der_len, err);
out:
	cf_secret_free(value);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	cf_secret_free(json);
	return rc;
}

/*
 * Splits a token record's value "SECRET[\nGROUP\nEXPIRES]" into a new
 * cf_secret of SECRET and, when group is not NULL, the claims (required).
 */
static cf_status split_claims(const cf_secret *value, const char *id,
			      cf_secret **secret, char *group, size_t size,
			      int64_t *expires, cf_error *err)
{
	const char *p = (const char *)cf_secret_cdata(value);
	size_t len = cf_secret_len(value), cut, glen;
	const char *nl = memchr(p, '\n', len), *nl2;
	char num[24], *end = NULL;
	long long when;

	cut = nl ? (size_t)(nl - p) : len;
	if (group != NULL) {
		nl2 = nl ? memchr(nl + 1, '\n', len - cut - 1) : NULL;
		glen = nl2 ? (size_t)(nl2 - nl - 1) : 0;
		if (nl2 == NULL || glen == 0 || glen >= size ||
		    (size_t)(p + len - nl2 - 1) == 0 ||
		    (size_t)(p + len - nl2 - 1) >= sizeof(num))
			return cf_error_set(err, CF_ERR_RECORD,
				"the envelope of token %s does not say which group "
				"the token is for; make a new token with this "
				"version of coffer ('coffer token create')", id);
		memcpy(group, nl + 1, glen);
		group[glen] = '\0';
		memcpy(num, nl2 + 1, (size_t)(p + len - nl2 - 1));
		num[p + len - nl2 - 1] = '\0';
		errno = 0;
		when = strtoll(num, &end, 10);
		if (errno != 0 || *end != '\0' || num[0] == '-' ||
		    cf_name_check("group name", group, err) != CF_OK)
			return cf_error_set(err, CF_ERR_RECORD,
				"the envelope of token %s holds a bad group or "
				"expiry", id);
		*expires = (int64_t)when;
	}
	*secret = cf_secret_from(p, cut);
	return *secret ? CF_OK : cf_error_set(err, CF_ERR_NOMEM,
					      "out of secure memory");
}

static cf_status open_token(const unsigned char *der, size_t der_len,
			    X509 *cert, EVP_PKEY *key, const cf_trust *trust,
			    const char *id, cf_secret **secret, char *group,
			    size_t size, int64_t *expires, cf_error *err)
{
	char name[CF_NAME_MAX_BYTES + 1];
	cf_secret *signed_der = NULL, *json = NULL;
	X509 *signer = NULL;
	cf_record *rec = NULL;
	cf_error why = { 0 };
	cf_status rc;

	*secret = NULL;
	rc = record_name(id, name, sizeof(name), err);
	if (rc == CF_OK)
		rc = cf_trust_verify(trust, cert, NULL, "your certificate", err);
	if (rc == CF_OK)
		rc = cf_envelope_decrypt(der, der_len, cert, key, &signed_der, err);
	if (rc != CF_OK)
		goto out;
	/* The same profile and signature checks as every other record. */
	rc = cf_envelope_check_signature(signed_der, &json, &signer, NULL, &why);
	if (rc != CF_OK) {
		rc = cf_error_set(err, rc, "the envelope of token %s: %s", id,
				  why.msg);
		goto out;
	}
	/* The signer is pinned to ourselves, so no chain building here. */
	if (X509_cmp(signer, cert) != 0) {
		rc = cf_error_set(err, CF_ERR_SIGNATURE,
			"the envelope of token %s was not signed by you: only "
			"the enroller who created a token can check its agents "
			"(someone else may have replaced the envelope)", id);
		goto out;
	}
	rc = cf_record_parse(cf_secret_cdata(json), cf_secret_len(json), &rec,
			     err);
	if (rc != CF_OK)
		goto out;
	if (strcmp(rec->tenant, cf_trust_tenant(trust)) != 0 ||
	    strcmp(rec->name, name) != 0 || rec->type != CF_TYPE_TEXT) {
		rc = cf_error_set(err, CF_ERR_NAME,
			"the envelope of token %s holds another record (\"%s\" of "
			"another tenant or type): it was swapped", id, rec->name);
		goto out;
	}
	rc = split_claims(rec->value, id, secret, group, size, expires, err);
out:
	cf_record_free(rec);
	cf_secret_free(json);
	X509_free(signer);
	cf_secret_free(signed_der);
	return rc;
}

cf_status cf_token_open(const unsigned char *der, size_t der_len, X509 *cert,
			EVP_PKEY *key, const cf_trust *trust, const char *id,
			cf_secret **secret, cf_error *err)
{
	return open_token(der, der_len, cert, key, trust, id, secret, NULL, 0,
			  NULL, err);
}

cf_status cf_token_open_claims(const unsigned char *der, size_t der_len,
			       X509 *cert, EVP_PKEY *key, const cf_trust *trust,
			       const char *id, cf_secret **secret, char *group,
			       size_t size, int64_t *expires, cf_error *err)
{
	group[0] = '\0';
	*expires = 0;
	return open_token(der, der_len, cert, key, trust, id, secret, group,
			  size, expires, err);
}
