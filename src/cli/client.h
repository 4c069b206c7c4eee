/*
 * client.h - how the coffer commands talk to a coffer server (docs/API.md):
 * HTTPS with libcurl, mutual TLS with the caller's certificate and key,
 * JSON bodies with jansson, HTTP errors mapped to cf_status.
 *
 * The private key is loaded by coffer (cli_load_key: an encrypted key's
 * passphrase comes from --pass-file, COFFER_PASSPHRASE or a prompt) and
 * handed to OpenSSL in memory, never to curl by file name.
 */
#ifndef CF_CLI_CLIENT_H
#define CF_CLI_CLIENT_H

#include <getopt.h>
#include <jansson.h>
#include <openssl/x509.h>
#include <signal.h>

#include "cli.h"
#include "envelope.h"
#include "trust.h"

/* Connection settings: flags first, then the environment. */
typedef struct cli_settings {
	const char *server;     /* --server, COFFER_SERVER: https://host:port */
	const char *server_ca;  /* --server-ca, COFFER_SERVER_CA */
	const char *cert;       /* --cert, COFFER_CERT (may hold the chain) */
	const char *key;        /* --key, COFFER_KEY */
	const char *root;       /* --root, COFFER_ROOT */
	const char *crl;        /* --crl, COFFER_CRL (optional) */
	cli_pass pass;          /* --pass-file, else COFFER_PASSPHRASE */
} cli_settings;

enum {
	CLI_OPT_SERVER = 0x1000,
	CLI_OPT_SERVER_CA,
	CLI_OPT_CERT,
	CLI_OPT_KEY,
	CLI_OPT_ROOT,
	CLI_OPT_CRL,
	CLI_OPT_PASS_FILE,
};

/* The struct option entries of the settings, for getopt_long tables. */
#define CLI_SETTINGS_OPTIONS \
	{ "server", required_argument, NULL, CLI_OPT_SERVER }, \
	{ "server-ca", required_argument, NULL, CLI_OPT_SERVER_CA }, \
	{ "cert", required_argument, NULL, CLI_OPT_CERT }, \
	{ "key", required_argument, NULL, CLI_OPT_KEY }, \
	{ "root", required_argument, NULL, CLI_OPT_ROOT }, \
	{ "crl", required_argument, NULL, CLI_OPT_CRL }, \
	{ "pass-file", required_argument, NULL, CLI_OPT_PASS_FILE }

/* Help text for the settings, to append to a command's usage. */
extern const char cli_settings_help[];

/* Takes getopt_long's result c if it is a settings option: returns 1. */
int cli_settings_option(cli_settings *s, int c, const char *arg);

/*
 * The whole option parsing of a command that takes nothing but the
 * settings, --help and, unless as_json is NULL, --json (which sets
 * *as_json).  Returns -1 when the command goes on (optind is at its
 * operands), else its exit code: 0 after usage(stdout) for --help, 2
 * after cli_bad_option(cmd).
 */
int cli_settings_parse(const char *cmd, int argc, char **argv,
		       void (*usage)(FILE *out), cli_settings *s, int *as_json);

typedef struct cli_client cli_client;

/* What a command needs of the settings. */
enum {
	CLI_NEED_IDENTITY = 1,   /* --cert and --key: mutual TLS */
	CLI_NEED_ROOT = 2,       /* --root: verify certificates and records */
};

/*
 * Checks the settings (CF_ERR_USAGE naming the flag and variable that is
 * missing), loads the certificate, key (after checking they match) and
 * root, and prepares the HTTPS handle.  Nothing is sent yet.
 */
cf_status cli_client_new(const cli_settings *s, unsigned need,
			 cli_client **out, cf_error *err);
void cli_client_free(cli_client *c);

/*
 * What every command that talks to the server does: fills what no flag
 * gave in s from the environment (COFFER_*), then cli_client_new.
 */
cf_status cli_client_connect(cli_settings *s, unsigned need,
			     cli_client **out, cf_error *err);

/* The caller's certificate, its chain (may be NULL), key, root, fingerprint. */
X509 *cli_client_cert(const cli_client *c);
STACK_OF(X509) *cli_client_chain(const cli_client *c);
EVP_PKEY *cli_client_key(const cli_client *c);
X509 *cli_client_root(const cli_client *c);
const char *cli_client_fp(const cli_client *c);
/* The tenant (root fingerprint), "" without a root. */
const char *cli_client_tenant(const cli_client *c);

/*
 * Sets the whole-request timeout (seconds, default 120) for long polls and
 * large uploads.
 */
void cli_client_set_timeout(cli_client *c, long seconds);

/*
 * Sends "Coffer-Cluster: VALUE" with every later request (a cluster
 * member's proof, docs/CLUSTERS.md); NULL stops sending it.
 */
cf_status cli_client_set_cluster(cli_client *c, const char *value,
				 cf_error *err);

/*
 * Makes every later call give up (CF_ERR_TIMEOUT, "interrupted") within
 * about a second once *flag becomes non-zero, e.g. from a signal
 * handler, so a long poll does not hold up a SIGTERM.  NULL: never.
 */
void cli_client_set_abort(cli_client *c, volatile sig_atomic_t *flag);

/*
 * A descriptor (non-blocking, e.g. a pipe's read end a signal handler
 * writes to) that wakes a transfer to look at the abort flag.  With one,
 * a long poll sleeps until the server answers instead of waking every
 * second; -1: none.  The client never closes it.
 */
void cli_client_set_abort_fd(cli_client *c, int fd);

/*
 * One request: method and path (with any query, already escaped); body
 * may be NULL.  On a 2xx answer *resp is the JSON object.  Otherwise the
 * status is mapped (401/403 CF_ERR_DENIED, 404 CF_ERR_NOT_FOUND, 409
 * CF_ERR_CONFLICT, 410 CF_ERR_TOKEN, 413 CF_ERR_TOO_LARGE, 429/503
 * CF_ERR_LIMIT, other 4xx CF_ERR_USAGE, 5xx or nonsense CF_ERR_SERVER, no
 * answer CF_ERR_NETWORK) with the server's message in the sentence, and
 * *resp is still the error body when it was JSON (e.g. "latest" of a 409),
 * else NULL.  The caller json_decref's *resp.
 */
cf_status cli_client_call(cli_client *c, const char *method, const char *path,
			  json_t *body, json_t **resp, cf_error *err);

/*
 * As cli_client_call, with a body already serialized by the caller (len
 * bytes of JSON text, NULL for none): for bodies too large for the
 * secure heap jansson allocates from (put's envelopes), built in the
 * ordinary heap.
 */
cf_status cli_client_call_raw(cli_client *c, const char *method,
			      const char *path, const char *body, size_t len,
			      json_t **resp, cf_error *err);

/*
 * Whether the last call failed while its request body was being sent
 * (the server closed the connection first, as it does after answering
 * 413 to a body above its limit before reading it).  The server then
 * cannot have acted on that request.
 */
int cli_client_send_failed(const cli_client *c);

/* HTTP status of the last answer (0 if none). */
long cli_client_http_status(const cli_client *c);

/* URL-escapes s (for a query value); NULL when out of memory. free() it. */
char *cli_client_escape(const char *s);

/*
 * The trust to verify certificates and records with: the root, and the
 * newer (higher cRLNumber) of the tenant's CRL on the server (GET
 * /v1/crl, which must be signed by the root) and --crl.  Fetched once,
 * owned by c.  Needs CLI_NEED_ROOT.
 */
cf_status cli_client_trust(cli_client *c, const cf_trust **out, cf_error *err);

/*
 * Cursor paging (GET /v1/certs, docs/API.md): copies the answer's "next"
 * into after (size bytes, at least 65); returns 0 when there is no further
 * page: no "next", not a fingerprint, or the same cursor again (a server
 * that would keep a client looping).
 */
int cli_next_cursor(const json_t *resp, char *after, size_t size);

/*
 * Decodes a non-empty base64 field of a server answer, strictly
 * (cf_b64_decode, at most CF_ENVELOPE_MAX_BYTES), into OPENSSL_malloc'd
 * bytes; anything unreadable is CF_ERR_SERVER.
 */
cf_status cli_b64_decode(const char *text, const char *what,
			 unsigned char **out, size_t *len, cf_error *err);
/* Encodes bytes as standard base64 into a jansson string (new reference). */
json_t *cli_b64_json(const unsigned char *data, size_t len);

/* A JSON field of an answer, or "" / 0 when absent or of another type. */
const char *cli_json_str(const json_t *obj, const char *key);
long long cli_json_int(const json_t *obj, const char *key);

/* Prints a JSON value to stdout, indented, with a newline. */
void cli_json_print(const json_t *v);

/*
 * Parses a time: unix seconds, ISO 8601 UTC date or date-time
 * ("2026-01-31", "2026-01-31T12:00:00Z"), or, with ago set, a duration
 * (30m, 24h, 7d, 90s) meaning that long before now.  For --ttl the
 * duration form alone is used through cli_parse_duration.
 */
int cli_parse_duration(const char *text, long long *seconds);
int cli_parse_time(const char *text, long long *unix_seconds);

#endif
