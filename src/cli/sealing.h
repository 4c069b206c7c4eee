/*
 * sealing.h - the steps that the offline `seal`/`open` and the server's
 * `put`/`get` share: a plaintext secret's way in (a file or standard
 * input, into secure memory) and out (write(2) from secure memory, or an
 * atomic 0600 file), the --verbose line about an opened record,
 * progress on bulk work, and sealing one record to many recipients on
 * several threads (cli_sealpool).
 *
 * These are the CLI's only places that read or write a plaintext secret.
 */
#ifndef CF_CLI_SEALING_H
#define CF_CLI_SEALING_H

#include <openssl/x509.h>
#include <stddef.h>

#include "envelope.h"
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

/*
 * The same as a bar with a second count ("sealing [####    ] 3,500/10,000,
 * uploaded 2,800"), redrawn at most every 100 ms and always when done2
 * reaches total (then ended with a newline).  On stderr, and only when it
 * is a terminal and total >= 100: never mixed into --json output.
 */
void cli_progress_bar(const char *what, size_t done, const char *what2,
		      size_t done2, size_t total);

/*
 * Threads for bulk sealing and verification: what cli_threads_set chose
 * (`--threads N`), else the online CPUs; always 1..CLI_THREADS_MAX.
 */
#define CLI_THREADS_MAX 64
void cli_threads_set(size_t n);
size_t cli_threads(void);

/*
 * Sealing one sealer's content to n recipients on several threads, the
 * envelopes handed out in recipient order whatever the threads' timing.
 * Each worker seals with a cf_sealer_dup of sealer (so all envelopes share
 * one content key, as one sealer's do); the caller takes the envelopes one
 * by one with cli_sealpool_next while the workers go on, at most window
 * envelopes ahead of it: the memory held is bounded by window envelopes,
 * whatever n.  With threads <= 1 the pool seals in the caller's thread,
 * with sealer itself.
 *
 * sealer and certs are borrowed and must outlive the pool; nothing else
 * may use sealer while the pool lives.  certs must be verified already.
 */
typedef struct cli_sealpool cli_sealpool;

cf_status cli_sealpool_start(cf_sealer *sealer, X509 *const *certs, size_t n,
			     size_t threads, size_t window, cli_sealpool **out,
			     cf_error *err);

/*
 * The envelope of the next recipient (index 0, 1, ... n-1; waits for it).
 * *der is the caller's (OPENSSL_free).  A sealing failure comes back at
 * the index of the recipient it concerns, with that recipient's error;
 * after a failure or past n the pool hands out nothing more.
 */
cf_status cli_sealpool_next(cli_sealpool *pool, unsigned char **der,
			    size_t *len, cf_error *err);

/* Stops the workers (an unfinished run is abandoned) and frees the pool. */
void cli_sealpool_free(cli_sealpool *pool);

#endif
