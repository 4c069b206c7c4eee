/*
 * client.c - the HTTPS client of the coffer commands (docs/API.md,
 * docs/CLIENT.md): one libcurl easy handle per command, so that a command's
 * requests share one TLS connection.
 *
 * Invariants:
 *   - the server is authenticated with --server-ca alone (or, without
 *     it, the system's CAs), host name included; plain http:// is refused;
 *   - the client certificate, its chain and the key loaded by coffer are
 *     installed into each SSL_CTX curl makes (CURLOPT_SSL_CTX_FUNCTION), so
 *     curl never reads the key file or its passphrase;
 *   - every answer is bounded (RESPONSE_MAX_BYTES) and every request timed
 *     out; an error answer becomes one sentence with the server's own
 *     message, stripped of control characters and bounded;
 *   - request bodies are serialized into the ordinary heap: jansson's own
 *     allocations live on the (small) secure heap (secmem.c), and bodies
 *     carry only ciphertext and metadata.
 */
#include "client.h"

#include <curl/curl.h>
#include <ctype.h>
#include <signal.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "b64.h"
#include "cli.h"
#include "pki.h"

/* Largest answer read; parsed JSON must also fit in the secure heap. */
#define RESPONSE_MAX_BYTES (16u * 1024u * 1024u)
#define CONNECT_TIMEOUT_S 15L
#define DEFAULT_TIMEOUT_S 120L
#define SERVER_MESSAGE_MAX 400
/* "Coffer-Cluster: " FP " " PROOF and the NUL. */
#define CLUSTER_HEADER_MAX 256

const char cli_settings_help[] =
	"Connection (flags, else the environment):\n"
	"  --server URL      COFFER_SERVER     https://host:port of the server\n"
	"  --server-ca F     COFFER_SERVER_CA  the server's certificate or CA\n"
	"  --cert F          COFFER_CERT       your certificate (+ its chain)\n"
	"  --key F           COFFER_KEY        your private key\n"
	"  --root F          COFFER_ROOT       your organisation's root certificate\n"
	"  --crl F           COFFER_CRL        a local CRL (optional; the newer of it\n"
	"                                      and the server's is used)\n"
	"  --pass-file F                       passphrase of an encrypted key (else\n"
	"                                      COFFER_PASSPHRASE, else a prompt)\n";

struct cli_client {
	CURL *curl;
	struct curl_slist *headers;
	char *base;                 /* server URL without a trailing '/' */
	X509 *cert;
	STACK_OF(X509) *chain;
	EVP_PKEY *key;
	X509 *root;
	X509_CRL *local_crl;
	cf_trust *trust;
	char fp[65];
	char tenant[65];
	long http_status;
	char curl_err[CURL_ERROR_SIZE];
	/* The answer being received. */
	unsigned char *buf;
	size_t len, cap;
	int overflow;
	int send_failed;      /* the last call broke off while sending */
	volatile sig_atomic_t *abort_flag;  /* cli_client_set_abort */
	int abort_fd;         /* readable when abort_flag may have been set */
	CURLM *multi;         /* with abort_fd: drives the transfer */
};

int cli_settings_option(cli_settings *s, int c, const char *arg)
{
	switch (c) {
	case CLI_OPT_SERVER: s->server = arg; return 1;
	case CLI_OPT_SERVER_CA: s->server_ca = arg; return 1;
	case CLI_OPT_CERT: s->cert = arg; return 1;
	case CLI_OPT_KEY: s->key = arg; return 1;
	case CLI_OPT_ROOT: s->root = arg; return 1;
	case CLI_OPT_CRL: s->crl = arg; return 1;
	case CLI_OPT_PASS_FILE: s->pass.file = arg; return 1;
	default: return 0;
	}
}

int cli_settings_parse(const char *cmd, int argc, char **argv,
		       void (*usage)(FILE *out), cli_settings *s, int *as_json)
{
	static const struct option with_json[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	const struct option *opts = with_json + (as_json == NULL);
	int ch;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(s, ch, optarg))
			continue;
		switch (ch) {
		case 'j': *as_json = 1; break;
		case 'h': usage(stdout); return 0;
		default: return cli_bad_option(cmd);
		}
	}
	return -1;
}

static const char *env_or(const char *flag, const char *name)
{
	const char *v;

	if (flag != NULL)
		return flag;
	v = getenv(name);
	return (v != NULL && v[0] != '\0') ? v : NULL;
}

/* Fills what no flag gave from the environment (COFFER_*). */
static void settings_from_env(cli_settings *s)
{
	s->server = env_or(s->server, "COFFER_SERVER");
	s->server_ca = env_or(s->server_ca, "COFFER_SERVER_CA");
	s->cert = env_or(s->cert, "COFFER_CERT");
	s->key = env_or(s->key, "COFFER_KEY");
	s->root = env_or(s->root, "COFFER_ROOT");
	s->crl = env_or(s->crl, "COFFER_CRL");
	/* COFFER_PASSPHRASE is read by cli_load_key itself. */
}

X509 *cli_client_cert(const cli_client *c) { return c->cert; }
STACK_OF(X509) *cli_client_chain(const cli_client *c) { return c->chain; }
EVP_PKEY *cli_client_key(const cli_client *c) { return c->key; }
X509 *cli_client_root(const cli_client *c) { return c->root; }
const char *cli_client_fp(const cli_client *c) { return c->fp; }
const char *cli_client_tenant(const cli_client *c) { return c->tenant; }
long cli_client_http_status(const cli_client *c) { return c->http_status; }

/* The three fixed headers, and the cluster proof when there is one. */
static struct curl_slist *base_headers(const char *cluster)
{
	static const char *const fixed[] = {
		"Accept: application/json",
		"Content-Type: application/json",
		"Expect:",      /* large bodies: no 100-continue round trip */
	};
	struct curl_slist *h = NULL, *grown;
	char line[CLUSTER_HEADER_MAX];

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		grown = curl_slist_append(h, fixed[i]);
		if (grown == NULL) {
			curl_slist_free_all(h);
			return NULL;
		}
		h = grown;
	}
	if (cluster != NULL) {
		snprintf(line, sizeof(line), "Coffer-Cluster: %s", cluster);
		grown = curl_slist_append(h, line);
		if (grown == NULL) {
			curl_slist_free_all(h);
			return NULL;
		}
		h = grown;
	}
	return h;
}

cf_status cli_client_set_cluster(cli_client *c, const char *value,
				 cf_error *err)
{
	struct curl_slist *h;

	if (value != NULL && (strlen(value) + 17 >= CLUSTER_HEADER_MAX ||
			      strpbrk(value, "\r\n") != NULL))
		return cf_error_set(err, CF_ERR_USAGE, "a cluster proof is one "
				    "short line");
	h = base_headers(value);
	if (h == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	curl_slist_free_all(c->headers);
	c->headers = h;
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
	return CF_OK;
}

void cli_client_set_timeout(cli_client *c, long seconds)
{
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, seconds);
}

/* Called by curl about once a second, and on every transfer step. */
static int on_progress(void *parm, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	cli_client *c = parm;

	(void)dltotal; (void)dlnow; (void)ultotal; (void)ulnow;
	return c->abort_flag != NULL && *c->abort_flag ? 1 : 0;
}

void cli_client_set_abort_fd(cli_client *c, int fd)
{
	c->abort_fd = fd;
}

void cli_client_set_abort(cli_client *c, volatile sig_atomic_t *flag)
{
	c->abort_flag = flag;
	curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, flag != NULL ? 0L : 1L);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	cli_client *c = userdata;
	size_t n = size * nmemb;

	if (n > RESPONSE_MAX_BYTES - c->len) {
		c->overflow = 1;
		return 0;          /* makes curl stop with CURLE_WRITE_ERROR */
	}
	if (c->len + n + 1 > c->cap) {
		size_t cap = c->cap ? c->cap : 16384;
		unsigned char *grown;

		while (cap < c->len + n + 1)
			cap *= 2;
		grown = OPENSSL_realloc(c->buf, cap);
		if (grown == NULL)
			return 0;
		c->buf = grown;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, ptr, n);
	c->len += n;
	c->buf[c->len] = '\0';
	return n;
}

/* Installs our certificate, chain and key into each TLS context curl makes. */
static CURLcode on_ssl_ctx(CURL *curl, void *sslctx, void *parm)
{
	cli_client *c = parm;
	SSL_CTX *ctx = sslctx;

	(void)curl;
	if (c->cert == NULL)
		return CURLE_OK;
	if (SSL_CTX_use_certificate(ctx, c->cert) != 1)
		return CURLE_SSL_CERTPROBLEM;
	for (int i = 0; i < sk_X509_num(c->chain); i++)
		if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(c->chain, i)) != 1)
			return CURLE_SSL_CERTPROBLEM;
	if (SSL_CTX_use_PrivateKey(ctx, c->key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		return CURLE_SSL_CERTPROBLEM;
	return CURLE_OK;
}

static cf_status missing(const char *flag, const char *env, const char *why,
			 cf_error *err)
{
	return cf_error_set(err, CF_ERR_USAGE, "no %s: give %s or set %s (%s)",
			    flag + 2, flag, env, why);
}

cf_status cli_client_new(const cli_settings *s, unsigned need,
			 cli_client **out, cf_error *err)
{
	static int curl_ready;
	cli_client *c = NULL;
	size_t n;
	cf_status rc = CF_OK;

	*out = NULL;
	if (s->server == NULL)
		return missing("--server", "COFFER_SERVER", "https://host:port", err);
	if (strncmp(s->server, "https://", 8) != 0)
		return cf_error_set(err, CF_ERR_USAGE,
			"the server URL must start with https:// (got \"%.100s\")",
			s->server);
	if ((need & CLI_NEED_IDENTITY) && s->cert == NULL)
		return missing("--cert", "COFFER_CERT", "your certificate", err);
	if ((need & CLI_NEED_IDENTITY) && s->key == NULL)
		return missing("--key", "COFFER_KEY", "your private key", err);
	if ((need & CLI_NEED_ROOT) && s->root == NULL)
		return missing("--root", "COFFER_ROOT",
			       "your organisation's root certificate", err);
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return cf_error_set(err, CF_ERR_NETWORK,
					    "cannot initialise libcurl");
		curl_ready = 1;
	}
	c = OPENSSL_zalloc(sizeof(*c));
	if (c == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	c->base = OPENSSL_strdup(s->server);
	if (c->base == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	n = strlen(c->base);
	while (n > 8 && c->base[n - 1] == '/')
		c->base[--n] = '\0';
	if (s->root != NULL) {
		rc = cli_load_cert(s->root, &c->root, NULL, err);
		if (rc == CF_OK)
			rc = cf_cert_fingerprint(c->root, c->tenant, err);
		if (rc == CF_OK && s->crl != NULL)
			rc = cli_load_crl(s->crl, &c->local_crl, err);
		if (rc != CF_OK)
			goto out;
	}
	if (need & CLI_NEED_IDENTITY) {
		rc = cli_load_cert(s->cert, &c->cert, &c->chain, err);
		if (rc == CF_OK)
			rc = cf_cert_fingerprint(c->cert, c->fp, err);
		if (rc == CF_OK)
			rc = cli_load_key(s->key, &s->pass, &c->key, err);
		if (rc != CF_OK)
			goto out;
		if (X509_check_private_key(c->cert, c->key) != 1) {
			ERR_clear_error();
			rc = cf_error_set(err, CF_ERR_USAGE,
				"key %s does not belong to certificate %s", s->key,
				s->cert);
			goto out;
		}
	}
	c->abort_fd = -1;
	c->curl = curl_easy_init();
	c->headers = base_headers(NULL);
	if (c->curl == NULL || c->headers == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "cannot set up libcurl");
		goto out;
	}
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c->curl, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
	if (s->server_ca != NULL) {
		/* Pinned: only this file.  Debian's libcurl also has a built-in
		 * CA directory (/etc/ssl/certs) that would otherwise still let
		 * any public CA vouch for the server. */
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, s->server_ca);
		curl_easy_setopt(c->curl, CURLOPT_CAPATH, NULL);
	}
	curl_easy_setopt(c->curl, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
	curl_easy_setopt(c->curl, CURLOPT_SSL_CTX_DATA, c);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "coffer/0.1.0");
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, DEFAULT_TIMEOUT_S);
	curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE,
			 (curl_off_t)RESPONSE_MAX_BYTES);
	*out = c;
	c = NULL;
out:
	cli_client_free(c);
	return rc;
}

cf_status cli_client_connect(cli_settings *s, unsigned need,
			     cli_client **out, cf_error *err)
{
	settings_from_env(s);
	return cli_client_new(s, need, out, err);
}

void cli_client_free(cli_client *c)
{
	if (c == NULL)
		return;
	if (c->multi != NULL)
		curl_multi_cleanup(c->multi);
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	curl_slist_free_all(c->headers);
	OPENSSL_free(c->base);
	OPENSSL_free(c->buf);
	X509_free(c->cert);
	sk_X509_pop_free(c->chain, X509_free);
	EVP_PKEY_free(c->key);
	X509_free(c->root);
	X509_CRL_free(c->local_crl);
	cf_trust_free(c->trust);
	OPENSSL_free(c);
}

char *cli_client_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0);
	char *copy;

	if (e == NULL)
		return NULL;
	copy = strdup(e);
	curl_free(e);
	return copy;
}

static int dump_to_buf(const char *data, size_t size, void *userdata)
{
	struct { char *p; size_t len, cap; } *b = userdata;

	if (size > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 4096;
		char *grown;

		while (cap - b->len < size) {
			if (cap > SIZE_MAX / 2)
				return -1;
			cap *= 2;
		}
		grown = OPENSSL_realloc(b->p, cap);
		if (grown == NULL)
			return -1;
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, size);
	b->len += size;
	return 0;
}

/* The server's error message, printable and bounded, or "". */
static void server_message(const json_t *resp, char *buf, size_t size)
{
	const json_t *e = json_object_get(resp, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *code = json_string_value(json_object_get(e, "code"));

	if (msg == NULL)
		msg = code;
	/* The same filter as everything else the server sends, and bounded. */
	cli_printable(msg, buf, size < SERVER_MESSAGE_MAX + 1 ? size
						       : SERVER_MESSAGE_MAX + 1);
}

static cf_status map_status(long http, const char *method, const char *path,
			    const char *msg, cf_error *err)
{
	cf_status code;
	const char *hint = "";

	if (http == 401) {
		code = CF_ERR_DENIED;
		hint = " (check --cert: it must chain to a root the server "
		       "knows and not be revoked)";
	} else if (http == 403) {
		code = CF_ERR_DENIED;
	} else if (http == 404) {
		code = CF_ERR_NOT_FOUND;
	} else if (http == 409) {
		code = CF_ERR_CONFLICT;
	} else if (http == 410) {
		code = CF_ERR_TOKEN;
	} else if (http == 413) {
		code = CF_ERR_TOO_LARGE;
	} else if (http == 429 || http == 503) {
		code = CF_ERR_LIMIT;
		hint = " (try again later)";
	} else if (http >= 500) {
		code = CF_ERR_SERVER;
	} else if (http >= 400) {
		code = CF_ERR_USAGE;
	} else {
		code = CF_ERR_SERVER;
	}
	return cf_error_set(err, code, "server refused %s %s: %s%s", method,
			    path, msg, hint);
}

/* One request with an already serialized body (data NULL: none). */
/*
 * curl_easy_perform wakes every second to look at its sockets; a long
 * poll that waits a minute should not.  With an abort descriptor the
 * transfer is driven here and sleeps until the socket, curl's own timer
 * or that descriptor (written by a signal handler) says otherwise.
 */
static CURLcode perform_multi(cli_client *c)
{
	struct curl_waitfd extra = { .fd = c->abort_fd, .events = CURL_WAIT_POLLIN };
	CURLcode result = CURLE_OK;
	CURLMsg *msg;
	int running = 1, left;

	if (c->multi == NULL && (c->multi = curl_multi_init()) == NULL)
		return CURLE_OUT_OF_MEMORY;
	if (curl_multi_add_handle(c->multi, c->curl) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	while (running) {
		long timeout_ms = -1;

		if (curl_multi_perform(c->multi, &running) != CURLM_OK) {
			result = CURLE_RECV_ERROR;
			break;
		}
		if (!running)
			break;
		if (c->abort_flag != NULL && *c->abort_flag) {
			result = CURLE_ABORTED_BY_CALLBACK;
			break;
		}
		curl_multi_timeout(c->multi, &timeout_ms);
		if (timeout_ms < 0 || timeout_ms > 60000)
			timeout_ms = 60000;
		if (curl_multi_poll(c->multi, &extra, 1, (int)timeout_ms,
				    NULL) != CURLM_OK) {
			result = CURLE_RECV_ERROR;
			break;
		}
		if (extra.revents & CURL_WAIT_POLLIN) {
			char drain[64];

			while (read(c->abort_fd, drain, sizeof(drain)) > 0)
				;
			extra.revents = 0;
		}
	}
	if (result == CURLE_OK) {
		result = CURLE_RECV_ERROR;
		while ((msg = curl_multi_info_read(c->multi, &left)) != NULL)
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == c->curl)
				result = msg->data.result;
	}
	curl_multi_remove_handle(c->multi, c->curl);
	return result;
}

static cf_status perform(cli_client *c, const char *method, const char *path,
			 const char *data, size_t data_len, json_t **resp,
			 cf_error *err)
{
	char url[4096], msg[SERVER_MESSAGE_MAX + 8];
	json_t *answer = NULL;
	json_error_t jerr;
	CURLcode cc;
	cf_status rc = CF_OK;
	int n;

	*resp = NULL;
	c->http_status = 0;
	c->len = 0;
	c->overflow = 0;
	c->curl_err[0] = '\0';
	n = snprintf(url, sizeof(url), "%s%s", c->base, path);
	if (n < 0 || (size_t)n >= sizeof(url))
		return cf_error_set(err, CF_ERR_USAGE, "request URL too long");
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, NULL);
		curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
	} else if (data == NULL) {
		curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
	} else {
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)data_len);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, data);
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
	}
	cc = c->abort_fd >= 0 ? perform_multi(c) : curl_easy_perform(c->curl);
	c->send_failed = cc == CURLE_SEND_ERROR;
	if (cc != CURLE_OK) {
		if (cc == CURLE_ABORTED_BY_CALLBACK)
			rc = cf_error_set(err, CF_ERR_TIMEOUT,
				"%s %s: interrupted", method, path);
		else if (c->overflow || cc == CURLE_FILESIZE_EXCEEDED)
			rc = cf_error_set(err, CF_ERR_SERVER,
				"%s %s: the answer is larger than %u bytes; ask "
				"for less (a prefix, a filter)", method, path,
				RESPONSE_MAX_BYTES);
		else if (cc == CURLE_OPERATION_TIMEDOUT)
			rc = cf_error_set(err, CF_ERR_NETWORK,
				"%s %s: no answer from %s in time (%s)", method,
				path, c->base, c->curl_err);
		else if (cc == CURLE_PEER_FAILED_VERIFICATION ||
			 cc == CURLE_SSL_CACERT_BADFILE)
			rc = cf_error_set(err, CF_ERR_NETWORK,
				"cannot verify the server %s: %s; give its "
				"certificate with --server-ca (COFFER_SERVER_CA)",
				c->base, c->curl_err[0] ? c->curl_err :
				curl_easy_strerror(cc));
		else
			rc = cf_error_set(err, CF_ERR_NETWORK,
				"cannot reach the server at %s (%s %s): %s", c->base,
				method, path, c->curl_err[0] ? c->curl_err :
				curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->http_status);
	if (c->len > 0) {
		answer = json_loadb((const char *)c->buf, c->len,
				    JSON_REJECT_DUPLICATES, &jerr);
		if (answer != NULL && !json_is_object(answer)) {
			json_decref(answer);
			answer = NULL;
		}
	}
	if (c->len > 0 && answer == NULL &&
	    json_error_code(&jerr) == json_error_out_of_memory) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "%s %s: out of memory "
			"reading the server's %zu-byte answer (JSON is kept in "
			"the locked secure heap)", method, path, c->len);
		goto out;
	}
	if (c->http_status >= 200 && c->http_status < 300) {
		if (answer == NULL) {
			rc = cf_error_set(err, CF_ERR_SERVER,
				"%s %s: the server answered %ld without a JSON "
				"object", method, path, c->http_status);
			goto out;
		}
		*resp = answer;
		answer = NULL;
		goto out;
	}
	server_message(answer, msg, sizeof(msg));
	if (msg[0] == '\0')
		snprintf(msg, sizeof(msg), "HTTP %ld", c->http_status);
	rc = map_status(c->http_status, method, path, msg, err);
	*resp = answer;
	answer = NULL;
out:
	if (data != NULL)
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);
	json_decref(answer);
	return rc;
}

cf_status cli_client_call(cli_client *c, const char *method, const char *path,
			  json_t *body, json_t **resp, cf_error *err)
{
	struct { char *p; size_t len, cap; } out = { 0 };
	cf_status rc;

	*resp = NULL;
	if (body != NULL &&
	    json_dump_callback(body, dump_to_buf, &out, JSON_COMPACT) != 0) {
		rc = cf_error_set(err, CF_ERR_NOMEM,
				  "cannot serialize the request body");
		goto out;
	}
	/* An empty object still has its "{}". */
	rc = perform(c, method, path, body != NULL ? (out.p ? out.p : "{}") : NULL,
		     body != NULL ? (out.p ? out.len : 2) : 0, resp, err);
out:
	/* The body is ciphertext and metadata, but wipe it all the same. */
	if (out.p != NULL)
		OPENSSL_clear_free(out.p, out.cap);
	return rc;
}

cf_status cli_client_call_raw(cli_client *c, const char *method,
			      const char *path, const char *body, size_t len,
			      json_t **resp, cf_error *err)
{
	return perform(c, method, path, body, len, resp, err);
}

cf_status cli_client_trust(cli_client *c, const cf_trust **out, cf_error *err)
{
	json_t *resp = NULL;
	X509_CRL *server_crl = NULL, *use = NULL;
	const char *pem;
	cf_status rc;

	*out = NULL;
	if (c->trust != NULL) {
		*out = c->trust;
		return CF_OK;
	}
	if (c->root == NULL)
		return cf_error_set(err, CF_ERR_USAGE,
			"no --root: give your organisation's root certificate "
			"with --root or COFFER_ROOT");
	rc = cli_client_call(c, "GET", "/v1/crl", NULL, &resp, err);
	if (rc != CF_OK)
		goto out;
	pem = json_string_value(json_object_get(resp, "crl"));
	if (pem != NULL) {
		rc = cf_crl_parse((const unsigned char *)pem, strlen(pem),
				  "the server's CRL", &server_crl, err);
		if (rc == CF_OK)
			rc = cf_crl_check_signer(server_crl, c->root, err);
		if (rc != CF_OK)
			goto out;
	}
	use = server_crl;
	if (c->local_crl != NULL) {
		rc = cf_crl_check_signer(c->local_crl, c->root, err);
		if (rc != CF_OK)
			goto out;
		if (use == NULL) {
			use = c->local_crl;
		} else {
			ASN1_INTEGER *a = X509_CRL_get_ext_d2i(c->local_crl,
				NID_crl_number, NULL, NULL);
			ASN1_INTEGER *b = X509_CRL_get_ext_d2i(server_crl,
				NID_crl_number, NULL, NULL);

			if (a != NULL && (b == NULL || ASN1_INTEGER_cmp(a, b) > 0))
				use = c->local_crl;
			ASN1_INTEGER_free(a);
			ASN1_INTEGER_free(b);
		}
	}
	rc = cf_trust_new(c->root, use, &c->trust, err);
	if (rc == CF_OK)
		*out = c->trust;
out:
	X509_CRL_free(server_crl);
	json_decref(resp);
	return rc;
}

cf_status cli_b64_decode(const char *text, const char *what,
			 unsigned char **out, size_t *len, cf_error *err)
{
	char label[128];
	cf_error e = { 0 };
	cf_status rc;

	*out = NULL;
	*len = 0;
	if (text == NULL || text[0] == '\0')
		return cf_error_set(err, CF_ERR_SERVER,
			"%s from the server is missing or empty", what);
	snprintf(label, sizeof(label), "%s from the server", what);
	rc = cf_b64_decode(text, strlen(text), CF_ENVELOPE_MAX_BYTES, label,
			   out, len, &e);
	if (rc == CF_OK)
		return CF_OK;
	/* Anything the server sent that we cannot read is its failure. */
	return cf_error_set(err, rc == CF_ERR_NOMEM ? rc : CF_ERR_SERVER, "%s",
			    e.msg);
}

json_t *cli_b64_json(const unsigned char *data, size_t len)
{
	size_t cap, n;
	char *buf;
	json_t *s;

	if (len > CF_ENVELOPE_MAX_BYTES)
		return NULL;
	cap = cf_b64_encoded_len(len) + 1;
	buf = OPENSSL_malloc(cap);
	if (buf == NULL)
		return NULL;
	s = cf_b64_encode(data, len, buf, cap, &n, NULL) == CF_OK ?
		json_stringn_nocheck(buf, n) : NULL;
	OPENSSL_free(buf);
	return s;
}

const char *cli_json_str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

long long cli_json_int(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

int cli_next_cursor(const json_t *resp, char *after, size_t size)
{
	const char *next = json_string_value(json_object_get(resp, "next"));

	if (next == NULL || strlen(next) != 64 || strcmp(next, after) == 0)
		return 0;
	snprintf(after, size, "%s", next);
	return 1;
}

void cli_json_print(const json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
}

int cli_parse_duration(const char *text, long long *seconds)
{
	char *end = NULL;
	long long v, unit;

	if (text == NULL || !isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || v <= 0)
		return -1;
	switch (*end) {
	case 's': unit = 1; break;
	case 'm': unit = 60; break;
	case 'h': unit = 3600; break;
	case 'd': unit = 86400; break;
	case 'w': unit = 7 * 86400; break;
	default: return -1;
	}
	if (end[1] != '\0' || v > (long long)100 * 365 * 86400 / unit)
		return -1;
	*seconds = v * unit;
	return 0;
}

int cli_parse_time(const char *text, long long *unix_seconds)
{
	static const char *const formats[] = {
		"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
		"%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M", "%Y-%m-%d",
	};
	long long d;
	size_t i;

	if (text == NULL || text[0] == '\0')
		return -1;
	for (i = 0; text[i] != '\0' && isdigit((unsigned char)text[i]); i++)
		;
	if (text[i] == '\0' && i <= 12) {
		*unix_seconds = strtoll(text, NULL, 10);
		return 0;
	}
	if (cli_parse_duration(text, &d) == 0) {
		*unix_seconds = (long long)time(NULL) - d;
		return 0;
	}
	for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		struct tm tm;
		const char *end;

		memset(&tm, 0, sizeof(tm));
		end = strptime(text, formats[i], &tm);
		if (end != NULL && *end == '\0') {
			*unix_seconds = (long long)timegm(&tm);
			return 0;
		}
	}
	return -1;
}

int cli_client_send_failed(const cli_client *c)
{
	return c->send_failed;
}
