/*
 * error.c - formatting of cf_error sentences.
 *
 * The only place that reads OpenSSL's error queue for users: it keeps the
 * first (root-cause) reason and drops the rest, so every message a user
 * sees is one sentence of ours plus at most one short library reason.
 */
#include "error.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The attribute lets clang's -Wformat-nonliteral see fmt is checked upstream. */
__attribute__((format(printf, 3, 0)))
static void vformat(cf_error *err, cf_status code, const char *fmt, va_list ap)
{
	err->code = code;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

cf_status cf_error_set(cf_error *err, cf_status code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	va_start(ap, fmt);
	vformat(err, code, fmt, ap);
	va_end(ap);
	return code;
}

cf_status cf_error_set_ssl(cf_error *err, cf_status code, const char *fmt, ...)
{
	va_list ap;
	unsigned long e;
	const char *reason;
	size_t used;

	if (err == NULL) {
		ERR_clear_error();
		return code;
	}
	va_start(ap, fmt);
	vformat(err, code, fmt, ap);
	va_end(ap);

	e = ERR_peek_error();
	reason = e != 0 ? ERR_reason_error_string(e) : NULL;
	used = strlen(err->msg);
	if (reason != NULL && used + 3 < sizeof(err->msg))
		snprintf(err->msg + used, sizeof(err->msg) - used, " (%s)", reason);
	ERR_clear_error();
	return code;
}

void cf_error_clear(cf_error *err)
{
	if (err == NULL)
		return;
	err->code = CF_OK;
	err->msg[0] = '\0';
}

const char *cf_status_name(cf_status code)
{
	switch (code) {
	case CF_OK: return "CF_OK";
	case CF_ERR_USAGE: return "CF_ERR_USAGE";
	case CF_ERR_IO: return "CF_ERR_IO";
	case CF_ERR_NOMEM: return "CF_ERR_NOMEM";
	case CF_ERR_CRYPTO: return "CF_ERR_CRYPTO";
	case CF_ERR_PARSE: return "CF_ERR_PARSE";
	case CF_ERR_TOO_LARGE: return "CF_ERR_TOO_LARGE";
	case CF_ERR_PASSPHRASE: return "CF_ERR_PASSPHRASE";
	case CF_ERR_POLICY: return "CF_ERR_POLICY";
	case CF_ERR_EXISTS: return "CF_ERR_EXISTS";
	case CF_ERR_TRUNCATED: return "CF_ERR_TRUNCATED";
	case CF_ERR_MALFORMED: return "CF_ERR_MALFORMED";
	case CF_ERR_NOT_RECIPIENT: return "CF_ERR_NOT_RECIPIENT";
	case CF_ERR_UNDECRYPTABLE: return "CF_ERR_UNDECRYPTABLE";
	case CF_ERR_TAMPERED: return "CF_ERR_TAMPERED";
	case CF_ERR_SIGNATURE: return "CF_ERR_SIGNATURE";
	case CF_ERR_UNTRUSTED: return "CF_ERR_UNTRUSTED";
	case CF_ERR_REVOKED: return "CF_ERR_REVOKED";
	case CF_ERR_PERMISSION: return "CF_ERR_PERMISSION";
	case CF_ERR_NAME: return "CF_ERR_NAME";
	case CF_ERR_ROLLBACK: return "CF_ERR_ROLLBACK";
	case CF_ERR_RECORD: return "CF_ERR_RECORD";
	case CF_ERR_NOT_FOUND: return "CF_ERR_NOT_FOUND";
	case CF_ERR_CONFLICT: return "CF_ERR_CONFLICT";
	case CF_ERR_DENIED: return "CF_ERR_DENIED";
	case CF_ERR_NETWORK: return "CF_ERR_NETWORK";
	case CF_ERR_SERVER: return "CF_ERR_SERVER";
	case CF_ERR_TOKEN: return "CF_ERR_TOKEN";
	case CF_ERR_TIMEOUT: return "CF_ERR_TIMEOUT";
	case CF_ERR_REJECTED: return "CF_ERR_REJECTED";
	case CF_ERR_STORE: return "CF_ERR_STORE";
	case CF_ERR_LIMIT: return "CF_ERR_LIMIT";
	case CF_ERR_AUDIT: return "CF_ERR_AUDIT";
	case CF_ERR_STALE: return "CF_ERR_STALE";
	case CF_ERR_EXPIRED: return "CF_ERR_EXPIRED";
	case CF_ERR_REPLAY: return "CF_ERR_REPLAY";
	case CF_ERR_FAILED: return "CF_ERR_FAILED";
	}
	return "CF_ERR_UNKNOWN";
}
