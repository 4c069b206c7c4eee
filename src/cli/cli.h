/*
 * cli.h - what the subcommands of the coffer program share: error
 * reporting and exit codes, reading and writing files, passphrases,
 * loading keys and certificates.  The library never does any of this.
 */
#ifndef CF_CLI_H
#define CF_CLI_H

#include <openssl/x509.h>
#include <stdio.h>

#include "error.h"
#include "secmem.h"

/* Each subcommand group, as wireguard-tools does it: one file, one entry. */
int cmd_ca(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_csr(int argc, char **argv);
int cmd_cert(int argc, char **argv);
int cmd_crl(int argc, char **argv);
int cmd_seal(int argc, char **argv);
int cmd_open(int argc, char **argv);
int cmd_server(int argc, char **argv);   /* server.c: init, tenant, run */
int cmd_token(int argc, char **argv);    /* token.c: create, ls, revoke */
int cmd_agent(int argc, char **argv);    /* agent.c: join, approve, reject, ls */
int cmd_put(int argc, char **argv);      /* secrets.c */
int cmd_get(int argc, char **argv);      /* secrets.c */
int cmd_ls(int argc, char **argv);       /* secrets.c */
int cmd_history(int argc, char **argv);  /* secrets.c */
int cmd_rm(int argc, char **argv);       /* secrets.c */
int cmd_rotate(int argc, char **argv);   /* secrets.c */
int cmd_sync(int argc, char **argv);     /* sync.c */
int cmd_cluster(int argc, char **argv);  /* cluster.c */
int cmd_audit(int argc, char **argv);    /* audit.c: (read), verify */
int cmd_cmd(int argc, char **argv);      /* cmd.c: run, ls, show */
int cmd_status(int argc, char **argv);   /* status.c: rollout status */
int cmd_quickstart(int argc, char **argv); /* quickstart.c: the whole system */

/* A subcommand of a group ("ca init"), and the group's dispatcher. */
typedef struct cli_sub {
	const char *name;
	int (*fn)(int argc, char **argv);
} cli_sub;

/*
 * Runs the subcommand named by argv[1] with argv shifted by one; prints
 * usage to stdout for --help (exit 0), to stderr otherwise (exit 2).
 */
int cli_dispatch(int argc, char **argv, const cli_sub *subs, size_t n_subs,
		 void (*usage)(FILE *out));

/* ISO 8601 UTC ("2026-01-31T12:00:00Z") of an ASN1_TIME; "-" if NULL. */
void cli_iso_time(const ASN1_TIME *t, char *buf, size_t size);

/* The same of unix seconds; "-" if out of range. */
void cli_unix_iso(long long t, char *buf, size_t size);

/* Hex of an ASN.1 INTEGER (serial, CRL number); OPENSSL_free'd; NULL if t is. */
char *cli_int_hex(const ASN1_INTEGER *i);

/* Exit code of a status (docs/EXIT-CODES.md). */
int cli_exit_code(cf_status rc);

/* Prints "coffer: <sentence>" to stderr and returns the exit code. */
int cli_fail(const cf_error *err);

/* Prints "coffer CMD: <message>; see 'coffer CMD --help'" and returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Handles a getopt_long result that is '?' or ':' (returns 2). */
int cli_bad_option(const char *cmd);

/* Parses a positive decimal integer option; 0 on success. */
int cli_parse_uint(const char *cmd, const char *opt, const char *text,
		   unsigned long long max, unsigned long long *out);

/* Reads a whole (non-secret) file of at most max bytes. */
cf_status cli_read_file(const char *path, size_t max, unsigned char **buf,
			size_t *len, cf_error *err);

/*
 * Writes data atomically: a temporary file in the same directory with
 * mode set first, fsync, then rename over path (or, with exclusive, a
 * link that fails if path exists), then fsync of the directory.
 */
cf_status cli_write_file(const char *path, const void *data, size_t len,
			 int mode, int exclusive, cf_error *err);

/* Creates dir (and not its parents) with mode if missing. */
cf_status cli_mkdir(const char *dir, int mode, cf_error *err);

/* Where a passphrase comes from (docs/PKI.md "Passphrases"). */
typedef struct cli_pass {
	const char *file;      /* --pass-file */
	int none;              /* --no-passphrase */
} cli_pass;

/*
 * A passphrase for a new key: --pass-file, then COFFER_PASSPHRASE, then a
 * prompt (twice) on a terminal.  *out stays NULL with --no-passphrase.
 * Without any source and no terminal: CF_ERR_PASSPHRASE saying what to do.
 */
cf_status cli_pass_for_new_key(const cli_pass *pass, const char *what,
			       cf_secret **out, cf_error *err);

/* The password of something that exists (a PKCS#12 file): --pass-file,
 * then COFFER_PASSPHRASE, then one prompt on a terminal. */
cf_status cli_pass_to_open(const cli_pass *pass, const char *what,
			   cf_secret **out, cf_error *err);

/* Loads a private key, asking for a passphrase only if it is encrypted. */
cf_status cli_load_key(const char *path, const cli_pass *pass, EVP_PKEY **out,
		       cf_error *err);

/* Writes a key (PEM PKCS#8, encrypted if pass) with mode 0600, exclusive. */
cf_status cli_write_key(const char *path, EVP_PKEY *key, const cf_secret *pass,
			cf_error *err);

/* Loads a certificate file; chain (may be NULL) gets any further certs. */
cf_status cli_load_cert(const char *path, X509 **out, STACK_OF(X509) **chain,
			cf_error *err);
cf_status cli_load_crl(const char *path, X509_CRL **out, cf_error *err);

/* "DIR/FILE" into buf; 0 if it does not fit. */
int cli_path_in(char *buf, size_t size, const char *dir, const char *file);

/*
 * s for a terminal: every control character (below 0x20, and 0x7f) made
 * a space, cut to fit size (which must be at least 1).  For any string the
 * server sent that is printed as text (not as JSON, which jansson escapes),
 * so an untrusted server cannot drive the terminal.  Returns buf; "" if s
 * is NULL.
 */
const char *cli_printable(const char *s, char *buf, size_t size);

/* "a/b/c.crt" -> "c.crt", for messages. */
const char *cli_basename(const char *path);

#endif
