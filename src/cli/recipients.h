/*
 * recipients.h - verified recipient certificates from `--to` specs
 * (recipients.c).
 */
#ifndef CF_CLI_RECIPIENTS_H
#define CF_CLI_RECIPIENTS_H

#include <openssl/x509.h>
#include <stddef.h>

#include "client.h"
#include "error.h"
#include "pki.h"

typedef struct cli_rcpt {
	X509 *cert;
	STACK_OF(X509) *chain;      /* its enroller, if any */
	char fp[65];
	char name[CF_CN_MAX_BYTES + 1];
	int unusable;               /* revoked or expired (cluster lookups) */
} cli_rcpt;

typedef struct cli_rcpts {
	cli_rcpt *v;
	size_t n, cap;
} cli_rcpts;

/* 1 if a recipient with fingerprint fp is in r already. */
int cli_rcpts_have(const cli_rcpts *r, const char *fp);

/* Adds cert (and its chain) with fingerprint fp; takes references. */
cf_status cli_rcpts_add(cli_rcpts *r, X509 *cert, STACK_OF(X509) *chain,
			const char *fp, cf_error *err);
void cli_rcpts_free(cli_rcpts *r);

/*
 * Resolves one --to spec (agent:NAME, group:G, cluster:C, fp:FP) through GET
 * /v1/certs, page by page, verifying every answer; adds what is new to r.
 * CF_ERR_NOT_FOUND if the server knows no such certificate,
 * CF_ERR_UNTRUSTED / CF_ERR_REVOKED for a certificate that is not what
 * was asked or does not verify (a group's revoked or expired members
 * are skipped with a note on stderr instead).
 */
cf_status cli_resolve(cli_client *c, const char *spec, cli_rcpts *r,
		      cf_error *err);

#endif
