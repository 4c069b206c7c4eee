/*
 * error.h - the one error convention of coffer.
 *
 * Every library function that can fail returns a cf_status (CF_OK == 0,
 * named negative values otherwise) and takes a cf_error * as its last
 * argument.  On failure the cf_error receives one human sentence: what
 * failed, on what, why, and what to do.  A NULL cf_error is allowed and
 * simply receives nothing.
 *
 * The status values are part of the contract with the programs: src/cli
 * maps each one to a documented exit code (docs/EXIT-CODES.md).
 */
#ifndef CF_ERROR_H
#define CF_ERROR_H

#include <stddef.h>

typedef enum cf_status {
	CF_OK = 0,
	CF_ERR_USAGE = -1,        /* a caller passed something invalid */
	CF_ERR_IO = -2,           /* a file or descriptor could not be used */
	CF_ERR_NOMEM = -3,        /* allocation failed (secure heap included) */
	CF_ERR_CRYPTO = -4,       /* an OpenSSL operation failed unexpectedly */
	CF_ERR_PARSE = -5,        /* malformed PEM, DER, JSON or rule text */
	CF_ERR_TOO_LARGE = -6,    /* input above a documented limit */
	CF_ERR_PASSPHRASE = -7,   /* passphrase missing or wrong */
	CF_ERR_POLICY = -8,       /* an issuer may not issue what was asked */
	CF_ERR_EXISTS = -9,       /* refusing to overwrite something */

	/* The server, its store and its clients. */
	CF_ERR_NOT_FOUND = -10,   /* no such tenant, secret, token, enrollment */
	CF_ERR_CONFLICT = -11,    /* stale version, request already decided */
	CF_ERR_DENIED = -12,      /* server refused the caller (401 / 403) */
	CF_ERR_NETWORK = -13,     /* server unreachable, TLS handshake failed */
	CF_ERR_SERVER = -14,      /* server failed (5xx) or answered nonsense */
	CF_ERR_TOKEN = -15,       /* join token unknown, expired, used, revoked */
	CF_ERR_TIMEOUT = -16,     /* waited as long as asked; not done yet */
	CF_ERR_REJECTED = -17,    /* an enroller rejected the enrollment */
	CF_ERR_STORE = -18,       /* the database failed or is from the future */
	CF_ERR_LIMIT = -19,       /* a rate, size or connection limit was hit */
	CF_ERR_AUDIT = -32,       /* the audit hash chain is broken */
	CF_ERR_STALE = -33,       /* some outputs could not be brought up to
				     date (the agent's sinks) */
	CF_ERR_EXPIRED = -34,     /* an operator command expired before it ran */
	CF_ERR_REPLAY = -35,      /* an operator command was seen before */
	CF_ERR_FAILED = -36,      /* a command failed, was refused or went
				     unanswered on some agent (cmd run) */

	/* Refusals of an envelope, one per rule of docs/FORMAT.md. */
	CF_ERR_TRUNCATED = -20,   /* envelope shorter than its DER says */
	CF_ERR_MALFORMED = -21,   /* not a CMS AuthEnvelopedData we accept */
	CF_ERR_NOT_RECIPIENT = -22, /* no recipient info for this certificate */
	CF_ERR_UNDECRYPTABLE = -23, /* key agreement / unwrap failed */
	CF_ERR_TAMPERED = -24,    /* AES-GCM authentication failed */
	CF_ERR_SIGNATURE = -25,   /* the record's signature does not verify */
	CF_ERR_UNTRUSTED = -26,   /* signer does not chain to this root */
	CF_ERR_REVOKED = -27,     /* signer (or its issuer) is on the CRL */
	CF_ERR_PERMISSION = -28,  /* signer lacks secret.write on the name */
	CF_ERR_NAME = -29,        /* record is for another secret name */
	CF_ERR_ROLLBACK = -30,    /* version below the minimum accepted */
	CF_ERR_RECORD = -31,      /* record JSON malformed or other tenant */
} cf_status;

#define CF_ERROR_MAX 768

typedef struct cf_error {
	cf_status code;
	char msg[CF_ERROR_MAX];
} cf_error;

/* Sets err (if not NULL) to code and the formatted sentence; returns code. */
cf_status cf_error_set(cf_error *err, cf_status code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * As cf_error_set, then appends " (REASON)", the reason string of the
 * oldest error on OpenSSL's thread-local queue (if any), and clears the
 * queue (docs/EXIT-CODES.md: "the reason in parentheses").
 * Users never see a raw OpenSSL stack, only our sentence and one reason.
 */
cf_status cf_error_set_ssl(cf_error *err, cf_status code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Resets err to CF_OK with an empty message. */
void cf_error_clear(cf_error *err);

/* A short stable name for a status ("CF_ERR_TAMPERED"), for logs and JSON. */
const char *cf_status_name(cf_status code);

#endif
