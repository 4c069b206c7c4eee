/*
 * sealing.h - the steps that the offline `seal`/`open` and the server's
 * `put`/`get` share: a plaintext secret's way in (a file or standard
 * input, into secure memory) and out (write(2) from secure memory, or an
 * atomic 0600 file), the --verbose line about an opened record, and
 * progress on bulk sealing.
 *
 * These are the CLI's only places that read or write a plaintext secret.
 */
#ifndef CF_CLI_SEALING_H
#define CF_CLI_SEALING_H

#include <openssl/x509.h>
#include <stddef.h>

#include "error.h"
#include "record.h"
#include "secmem.h"

/*
 * Reads the secret from path, or from standard input when path is NULL
 * or "-" (refused with CF_ERR_USAGE if that is a terminal; the sentence
 * tells to give flag, e.g. "--in FILE").  At most CF_SECRET_MAX_BYTES;
 * *out is the caller's (cf_secret_free).
 */
cf_status cli_plaintext_read(const char *path, const char *flag,
			     cf_secret **out, cf_error *err);

/*
 * Writes rec's value to path (atomically, mode 0600), or with path NULL
 * straight from secure memory to standard output, bypassing stdio.
 */
cf_status cli_plaintext_write(const char *path, const cf_record *rec,
			      cf_error *err);

/* --verbose: says on stderr what was opened and who signed it. */
void cli_opened_report(const cf_record *rec, X509 *signer);

/* Progress on a terminal for bulk work (100 items or more); else silent. */
void cli_progress(const char *what, size_t done, size_t total);

#endif
