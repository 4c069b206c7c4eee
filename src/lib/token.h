/*
 * token.h - join tokens for agent enrollment (docs/API.md, "Join tokens").
 *
 * A token is the text `ID.SECRET`: ID is 16 random bytes in lower-case hex
 * (32 characters), SECRET 32 random bytes in base64url without padding
 * (43 characters; 64 lower-case hex characters are accepted too).  The
 * client makes both.  The server keeps ID, SHA-256(SECRET) and the SECRET
 * only as an envelope sealed to the enroller that created the token; the
 * agent proves it holds SECRET with HMAC-SHA256(key = SECRET text,
 * data = CSR DER), which the enroller checks after opening that envelope.
 *
 * Invariants: SECRET lives only in a cf_secret (secure heap, wiped); hashes
 * and MACs are compared in constant time; parsing is strict and bounded.
 */
#ifndef CF_TOKEN_H
#define CF_TOKEN_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "error.h"
#include "policy.h"
#include "secmem.h"
#include "trust.h"

#define CF_TOKEN_ID_BYTES 16
#define CF_TOKEN_ID_HEX (2 * CF_TOKEN_ID_BYTES)         /* 32 */
#define CF_TOKEN_SECRET_BYTES 32
#define CF_TOKEN_SECRET_B64 43                          /* base64url, no '=' */
#define CF_TOKEN_SECRET_HEX (2 * CF_TOKEN_SECRET_BYTES) /* 64 */
/* Longest token text accepted: ID '.' hex SECRET. */
#define CF_TOKEN_TEXT_MAX (CF_TOKEN_ID_HEX + 1 + CF_TOKEN_SECRET_HEX)

typedef struct cf_token {
	char id[CF_TOKEN_ID_HEX + 1];   /* lower-case hex */
	cf_secret *secret;              /* SECRET text exactly as in the token */
	/* What the token admits to, sealed with the SECRET by cf_token_seal
	 * (set by the creator before sealing; empty/0 after cf_token_parse). */
	char group[CF_NAME_MAX_BYTES + 1];
	int64_t expires;                /* unix seconds */
} cf_token;

/* A new random token (ID and base64url SECRET). */
cf_status cf_token_generate(cf_token **out, cf_error *err);

/*
 * Parses token text `ID.SECRET` of len bytes (not NUL-terminated; one
 * trailing LF or CRLF is ignored, as read from a file).  Anything else,
 * including a longer text, is CF_ERR_PARSE with a sentence that never
 * repeats the text (it may be a secret).
 */
cf_status cf_token_parse(const unsigned char *text, size_t len, cf_token **out,
			 cf_error *err);

/* `ID.SECRET` into secure memory (no newline). */
cf_status cf_token_text(const cf_token *tok, cf_secret **out, cf_error *err);

void cf_token_free(cf_token *tok);

/* 1 if id is exactly 32 lower-case hex characters, else 0. */
int cf_token_id_valid(const char *id);

/* Lower-case hex SHA-256 of the SECRET text. */
cf_status cf_token_hash(const cf_secret *secret, char hex[65], cf_error *err);

/* Lower-case hex HMAC-SHA256(key = SECRET text, data). */
cf_status cf_token_hmac(const cf_secret *secret, const unsigned char *data,
			size_t len, char hex[65], cf_error *err);

/*
 * Constant-time comparison of two hex digests of 64 characters
 * (CRYPTO_memcmp); 1 if equal, 0 otherwise (also for a wrong length).
 */
int cf_token_digest_equal(const char *a, const char *b);

/*
 * The SECRET as a coffer envelope: a record (tenant, name `token/ID`,
 * version 1, type text, value = SECRET text, then, when tok->group is set,
 * "\n" GROUP "\n" EXPIRES in decimal unix seconds) signed with key/cert
 * (chain included when not NULL) and sealed to cert alone.  The group and
 * expiry travel inside the signed record so that the server, which keeps
 * its own copy of them for its checks, cannot change what an enroller
 * signs an agent into (cf_token_open_claims).  *der is OPENSSL_malloc'd.
 */
cf_status cf_token_seal(const cf_token *tok, const char *tenant, X509 *cert,
			EVP_PKEY *key, STACK_OF(X509) *chain, unsigned char **der,
			size_t *der_len, cf_error *err);

/*
 * Opens such an envelope with key/cert and returns the SECRET text.  The
 * signed record must pass cf_envelope_check_signature (the profile, one
 * signer, a SHA-2 digest, the signature; its refusals are CF_ERR_MALFORMED
 * or CF_ERR_SIGNATURE, the sentence prefixed "the envelope of token ID: ")
 * and be signed by cert itself (the caller made the token; an
 * envelope anybody else sealed to us is refused, CF_ERR_SIGNATURE), cert
 * must verify against trust, and the record must be of trust's tenant,
 * named `token/ID` and of type text.  A token secret is not a secret
 * value in the sense of secret.write, so unlike cf_envelope_verify this
 * needs no such rule of the signer: pinning the signer is stronger.
 */
cf_status cf_token_open(const unsigned char *der, size_t der_len, X509 *cert,
			EVP_PKEY *key, const cf_trust *trust, const char *id,
			cf_secret **secret, cf_error *err);

/*
 * As cf_token_open, and also returns the group (into group, size bytes)
 * and expiry sealed with the SECRET.  An envelope without them (sealed
 * without tok->group) is refused, CF_ERR_RECORD: an enroller must not
 * take the group of a token from the server.  cf_token_open ignores them.
 */
cf_status cf_token_open_claims(const unsigned char *der, size_t der_len,
			       X509 *cert, EVP_PKEY *key, const cf_trust *trust,
			       const char *id, cf_secret **secret, char *group,
			       size_t size, int64_t *expires, cf_error *err);

#endif
