/*
 * secrets.h - writing and reading versions, for commands other than put
 * and get (secrets.c): cluster keys and cluster cache entries.
 */
#ifndef CF_CLI_SECRETS_H
#define CF_CLI_SECRETS_H

#include <openssl/x509.h>

#include "client.h"
#include "error.h"
#include "record.h"
#include "recipients.h"

/*
 * Fetches the caller's own envelope of name (version 0: the latest) and
 * opens it with every rule of `coffer open` (cf_envelope_open with the
 * caller's certificate and key).  *rec and *signer (may be NULL) are the
 * caller's to free.
 */
cf_status cli_fetch_own(cli_client *c, const char *name,
			unsigned long long version, cf_record **rec,
			X509 **signer, cf_error *err);

/*
 * Signs rec (name, type, value, targets, without and member set by the
 * caller; version and created are set here, and tenant unless the caller
 * set it: an agent's client has no root to take it from) with the client's
 * certificate and key, seals it to every certificate of r and uploads it
 * as the next version.  ask != 0: the latest version is asked of the
 * server (GET /v1/secrets/history); 0: latest is the caller's guess (an
 * agent may not read histories).  On a conflict it retries once above
 * the version the server names.  *bytes: envelope bytes sent.
 */
cf_status cli_write_version(cli_client *c, cf_record *rec, const cli_rcpts *r,
			    unsigned long long latest, int ask,
			    size_t *bytes, cf_error *err);

#endif
