/*
 * agent.c - `coffer agent join|approve|reject|ls`: enrollment of agents
 * with join tokens (docs/CLIENT.md "Enrolling agents", docs/API.md
 * "Enrollment").
 *
 * join runs on the new machine, unattended: it never prompts.  Its state
 * directory (0700) holds
 *   agent.key      the P-256 key (0600, unencrypted: the agent runs alone);
 *                  made once, reused by every later run
 *   agent.json     {"server","name","server_ca","cert","key"}: where the
 *                  agent's server is and which files are its identity
 *   server-ca.crt  a copy of --server-ca, so later runs need no flags
 *   enroll.json    {"id","name","created"} while a request is pending;
 *                  a second join resumes polling it instead of asking again
 *   agent.crt      the certificate followed by its chain, once approved
 * The key never leaves the machine; the token's SECRET is used only for
 * the HMAC and is kept in secure memory.
 *
 * approve runs at an enroller: for each pending request it opens the
 * token's envelope (sealed to, and signed by, this enroller), checks the
 * HMAC over the CSR with the SECRET in constant time, and only then signs
 * the agent's certificate.  A mismatch is rejected on the server.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "cli.h"
#include "client.h"
#include "pki.h"
#include "token.h"

#define WAIT_MAX_S (7L * 86400L)
#define CERT_LIST_PAGE 500
#define WATCH_INTERVAL_S 2

static void agent_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer agent join --server URL --server-ca F (--token T | --token-file F)\n"
		"                         --name NAME --state-dir D [--wait SECONDS] [--root F]\n"
		"       coffer agent approve (--all | NAME...) [--watch] [--days N] [connection options]\n"
		"       coffer agent reject ID|NAME [--reason S] [connection options]\n"
		"       coffer agent ls [--group G] [--json] [connection options]\n"
		"       coffer agent run --state-dir D --config F [--log-level L]\n"
		"       coffer agent once --state-dir D --config F [--log-level L]\n"
		"       coffer agent exec --state-dir D [--env VAR=NAME]... [--file-env VAR=NAME]...\n"
		"                         [--offline] -- CMD [ARGS...]\n"
		"       coffer agent status --state-dir D [--config F] [--json]\n"
		"       coffer agent cluster-join --state-dir D --p12 F [--pass-file P]\n"
		"       coffer agent cache put|get NAME --state-dir D [...]\n"
		"\n"
		"join     on a new machine, silently: makes the agent's key in D (0700;\n"
		"         D/agent.key 0600), sends a certificate request with the\n"
		"         token's HMAC, and waits up to SECONDS (default 0: send and\n"
		"         exit, saying \"pending\") for an enroller to approve it.\n"
		"         Run it again with the same D to keep waiting.  Exit 27 when\n"
		"         the wait ends first, 28 when rejected.  --token-file - reads\n"
		"         the token from standard input (keeps it out of the process\n"
		"         list); with --root the certificate is verified on arrival\n"
		"         and the root is kept as D/root.crt for 'agent run'.\n"
		"approve  for enrollers: checks each pending request's HMAC with the\n"
		"         token you created, signs an agent certificate (CN = the\n"
		"         requested name, group = the token's, --days N, default 825)\n"
		"         and uploads it; a bad HMAC is rejected.  --watch keeps\n"
		"         going every 2 s until interrupted.\n"
		"reject   rejects a pending request (by ID, or by the requested name).\n"
		"ls       lists the agents' certificates in the server's directory.\n"
		"run      the agent daemon (foreground, for systemd): keeps the files\n"
		"         and templates of F up to date from the server's feed; SIGHUP\n"
		"         reloads F, SIGTERM exits.  docs/AGENT.md.\n"
		"once     one sync of every file and template, then exit: 0 when all\n"
		"         are up to date, 32 when some are not, 24 server unreachable.\n"
		"exec     runs CMD with secrets in its environment (--env) or in\n"
		"         memfds whose /proc/self/fd path is in VAR (--file-env).\n"
		"status   what the agent using D last reported, without the server:\n"
		"         each sink (version, last write, last error), the secrets\n"
		"         accepted, running and connected or not.  Exit 0 when every\n"
		"         sink is up to date, 32 when not.\n"
		"cluster-join  imports a cluster's key from a PKCS#12 file\n"
		"         (docs/CLUSTERS.md); the agent then reads the cluster's secrets.\n"
		"cache    the cluster's shared cache: put or get cluster/C/KEY.\n"
		"\n%s", cli_settings_help);
}

/* ------------------------------------------------------------------ join */

struct state {
	const char *dir;
	char key[PATH_MAX], cert[PATH_MAX], ca[PATH_MAX], enroll[PATH_MAX];
	char conf[PATH_MAX], root[PATH_MAX];
};

static cf_status state_paths(struct state *st, const char *dir, cf_error *err)
{
	int n = 0;

	st->dir = dir;
	n |= snprintf(st->key, sizeof(st->key), "%s/agent.key", dir) >= (int)sizeof(st->key);
	n |= snprintf(st->cert, sizeof(st->cert), "%s/agent.crt", dir) >= (int)sizeof(st->cert);
	n |= snprintf(st->ca, sizeof(st->ca), "%s/server-ca.crt", dir) >= (int)sizeof(st->ca);
	n |= snprintf(st->enroll, sizeof(st->enroll), "%s/enroll.json", dir) >= (int)sizeof(st->enroll);
	n |= snprintf(st->conf, sizeof(st->conf), "%s/agent.json", dir) >= (int)sizeof(st->conf);
	n |= snprintf(st->root, sizeof(st->root), "%s/root.crt", dir) >= (int)sizeof(st->root);
	if (n)
		return cf_error_set(err, CF_ERR_USAGE, "--state-dir path too long");
	return CF_OK;
}

static int exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static cf_status read_json_file(const char *path, json_t **out, cf_error *err)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	json_error_t jerr;
	cf_status rc = cli_read_file(path, 64 * 1024, &buf, &len, err);

	*out = NULL;
	if (rc != CF_OK)
		return rc;
	*out = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
	OPENSSL_free(buf);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return cf_error_set(err, CF_ERR_PARSE, "%s is not a JSON object "
				    "(line %d: %s)", path, jerr.line, jerr.text);
	}
	return CF_OK;
}

static cf_status write_json_file(const char *path, json_t *obj, int mode,
				 cf_error *err)
{
	size_t flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER;
	/* Not json_dumps: jansson allocates from the secure heap (secmem.c). */
	size_t len = json_dumpb(obj, NULL, 0, flags);
	char *text = len ? OPENSSL_malloc(len + 1) : NULL;
	cf_status rc;

	if (text == NULL || json_dumpb(obj, text, len, flags) != len) {
		OPENSSL_free(text);
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	}
	text[len] = '\n';
	rc = cli_write_file(path, text, len + 1, mode, 0, err);
	OPENSSL_free(text);
	return rc;
}

static cf_status read_token(const char *text, const char *file, cf_token **out,
			    cf_error *err)
{
	cf_secret *s = NULL;
	cf_status rc;
	int fd = STDIN_FILENO;

	if (text != NULL)
		return cf_token_parse((const unsigned char *)text, strlen(text),
				      out, err);
	if (strcmp(file, "-") != 0) {
		fd = open(file, O_RDONLY);
		if (fd < 0)
			return cf_error_set(err, CF_ERR_IO, "cannot open %s: %s",
					    file, strerror(errno));
	}
	rc = cf_secret_read_fd(fd, CF_TOKEN_TEXT_MAX + 2, "the token file", &s, err);
	if (fd != STDIN_FILENO)
		close(fd);
	if (rc == CF_OK)
		rc = cf_token_parse(cf_secret_cdata(s), cf_secret_len(s), out, err);
	cf_secret_free(s);
	return rc;
}

/* The approved certificate: ours (key and name), optionally verified. */
static cf_status save_cert(const struct state *st, json_t *answer,
			   EVP_PKEY *key, const char *name, const char *root_path,
			   char fp[65], cf_error *err)
{
	const char *pem = json_string_value(json_object_get(answer, "cert"));
	json_t *chain = json_object_get(answer, "chain"), *c;
	X509 *cert = NULL, *root = NULL;
	STACK_OF(X509) *extra = NULL;
	cf_trust *trust = NULL;
	char cn[CF_CN_MAX_BYTES + 1];
	BIO *out = BIO_new(BIO_s_mem());
	BUF_MEM *mem = NULL;
	size_t i;
	cf_status rc;

	if (out == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (pem == NULL) {
		rc = cf_error_set(err, CF_ERR_SERVER, "the server approved the "
				  "enrollment but sent no certificate");
		goto out;
	}
	rc = cf_cert_parse((const unsigned char *)pem, strlen(pem),
			   "the approved certificate", &cert, NULL, err);
	if (rc != CF_OK)
		goto out;
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		rc = cf_error_set(err, CF_ERR_SERVER, "the certificate the server "
				  "sent is not for this agent's key; not saved");
		goto out;
	}
	cf_cert_cn(cert, cn, sizeof(cn));
	if (strcmp(cn, name) != 0 || cf_cert_kind(cert) != CF_KIND_AGENT) {
		rc = cf_error_set(err, CF_ERR_SERVER, "the certificate the server "
				  "sent is not an agent certificate for \"%s\"", name);
		goto out;
	}
	PEM_write_bio_X509(out, cert);
	extra = sk_X509_new_null();
	json_array_foreach(chain, i, c) {
		X509 *x = NULL;
		const char *text = json_string_value(c);

		if (text == NULL)
			continue;
		rc = cf_cert_parse((const unsigned char *)text, strlen(text),
				   "the certificate's chain", &x, NULL, err);
		if (rc != CF_OK)
			goto out;
		PEM_write_bio_X509(out, x);
		sk_X509_push(extra, x);
	}
	if (root_path != NULL) {
		rc = cli_load_cert(root_path, &root, NULL, err);
		if (rc == CF_OK)
			rc = cf_trust_new(root, NULL, &trust, err);
		if (rc == CF_OK)
			rc = cf_trust_verify(trust, cert, extra,
					     "the approved certificate", err);
		if (rc != CF_OK)
			goto out;
	}
	rc = cf_cert_fingerprint(cert, fp, err);
	BIO_get_mem_ptr(out, &mem);
	if (rc == CF_OK)
		rc = cli_write_file(st->cert, mem->data, mem->length, 0644, 0, err);
out:
	BIO_free(out);
	X509_free(cert);
	X509_free(root);
	sk_X509_pop_free(extra, X509_free);
	cf_trust_free(trust);
	return rc;
}

/* Copies root_path to D/root.crt once agent.crt is shown to chain to it. */
static cf_status install_root(const struct state *st, const char *root_path,
			      cf_error *err)
{
	X509 *root = NULL, *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	cf_trust *trust = NULL;
	unsigned char *pem = NULL;
	size_t len = 0;
	cf_status rc;

	rc = cli_read_file(root_path, CF_PEM_MAX_BYTES, &pem, &len, err);
	if (rc == CF_OK)
		rc = cli_load_cert(root_path, &root, NULL, err);
	if (rc == CF_OK)
		rc = cli_load_cert(st->cert, &cert, &chain, err);
	if (rc == CF_OK)
		rc = cf_trust_new(root, NULL, &trust, err);
	if (rc == CF_OK)
		rc = cf_trust_verify(trust, cert, chain, "the agent's certificate",
				     err);
	if (rc == CF_OK)
		rc = cli_write_file(st->root, pem, len, 0644, 0, err);
	OPENSSL_free(pem);
	X509_free(root);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	cf_trust_free(trust);
	return rc;
}

/*
 * An enrollment id goes into request paths: the server makes them 32
 * lower-case hex characters (the same shape as a token ID), and anything
 * else, from the server or from enroll.json, is refused.
 */
static int enroll_id_valid(const char *id)
{
	return id != NULL && cf_token_id_valid(id);
}

static cf_status send_request(cli_client *c, const struct state *st,
			      const cf_token *tok, EVP_PKEY *key,
			      const char *name, char id[65], cf_error *err)
{
	X509_REQ *csr = NULL;
	unsigned char *pem = NULL, *der = NULL;
	size_t pem_len = 0;
	int der_len;
	char hmac[65], hash[65];
	json_t *body = NULL, *resp = NULL, *saved = NULL;
	const char *got;
	cf_status rc;

	rc = cf_csr_new(key, name, &csr, err);
	if (rc == CF_OK)
		rc = cf_csr_to_pem(csr, &pem, &pem_len, err);
	if (rc != CF_OK)
		goto out;
	der_len = i2d_X509_REQ(csr, &der);
	if (der_len <= 0) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO, "cannot encode the request");
		goto out;
	}
	rc = cf_token_hmac(tok->secret, der, (size_t)der_len, hmac, err);
	if (rc == CF_OK)
		rc = cf_token_hash(tok->secret, hash, err);
	if (rc != CF_OK)
		goto out;
	body = json_pack("{s:s, s:s, s:s, s:s%, s:s}", "token_id", tok->id,
			 "token_hash", hash, "name", name, "csr", (const char *)pem,
			 pem_len, "hmac", hmac);
	if (body == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = cli_client_call(c, "POST", "/v1/enroll", body, &resp, err);
	if (rc != CF_OK)
		goto out;
	got = cli_json_str(resp, "id");
	if (!enroll_id_valid(got)) {
		rc = cf_error_set(err, CF_ERR_SERVER, "the server accepted the "
				  "request but sent no usable enrollment id");
		goto out;
	}
	snprintf(id, 65, "%s", got);
	saved = json_pack("{s:s, s:s, s:I}", "id", id, "name", name, "created",
			  (json_int_t)time(NULL));
	rc = saved ? write_json_file(st->enroll, saved, 0600, err) :
		     cf_error_set(err, CF_ERR_NOMEM, "out of memory");
out:
	json_decref(saved);
	json_decref(body);
	json_decref(resp);
	OPENSSL_free(der);
	OPENSSL_free(pem);
	X509_REQ_free(csr);
	return rc;
}

static int agent_join(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "server-ca", required_argument, NULL, 'C' },
		{ "token", required_argument, NULL, 't' },
		{ "token-file", required_argument, NULL, 'T' },
		{ "name", required_argument, NULL, 'n' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "wait", required_argument, NULL, 'w' },
		{ "root", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *server_ca = NULL, *token_text = NULL;
	const char *token_file = NULL, *name = NULL, *dir = NULL, *root = NULL;
	unsigned long long wait_s = 0;
	struct state st;
	cli_settings set = { 0 };
	cli_client *c = NULL;
	cf_token *tok = NULL;
	EVP_PKEY *key = NULL;
	json_t *conf = NULL, *pending = NULL, *resp = NULL;
	unsigned char *ca_pem = NULL, *root_pem = NULL;
	size_t ca_len = 0, root_len = 0;
	char id[65] = "", fp[65], path[128], reason[301];
	time_t deadline;
	double delay = 1.0;
	cli_pass nopass = { 0 };
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	int ch, n, code = 0;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 's': server = optarg; break;
		case 'C': server_ca = optarg; break;
		case 't': token_text = optarg; break;
		case 'T': token_file = optarg; break;
		case 'n': name = optarg; break;
		case 'd': dir = optarg; break;
		case 'r': root = optarg; break;
		case 'w':
			if (strcmp(optarg, "0") != 0 &&
			    cli_parse_uint("agent join", "--wait", optarg,
					   WAIT_MAX_S, &wait_s))
				return 2;
			break;
		case 'h': agent_usage(stdout); return 0;
		default: return cli_bad_option("agent join");
		}
	}
	if (optind != argc)
		return cli_usage("agent join", "unexpected argument");
	if (dir == NULL)
		return cli_usage("agent join", "--state-dir is required");
	if (token_text != NULL && token_file != NULL)
		return cli_usage("agent join", "give --token or --token-file, not both");
	rc = state_paths(&st, dir, &err);
	if (rc != CF_OK)
		goto fail;
	if (exists(st.cert)) {
		/* Joined without --root: the root may be added afterwards,
		 * once it is shown to be the one the certificate chains to. */
		if (root != NULL && !exists(st.root)) {
			rc = install_root(&st, root, &err);
			if (rc != CF_OK)
				goto fail;
			printf("installed %s as %s\n", root, st.root);
		}
		printf("already joined: %s holds the agent's certificate\n", st.cert);
		return 0;
	}
	if (token_text != NULL)
		fprintf(stderr, "coffer: warning: --token puts the token in the "
			"process list, where other users can read it; prefer "
			"--token-file F (or --token-file - and standard input)\n");
	/* A previous run's settings fill in what this one does not say. */
	if (exists(st.conf)) {
		rc = read_json_file(st.conf, &conf, &err);
		if (rc != CF_OK)
			goto fail;
		if (server == NULL && cli_json_str(conf, "server")[0])
			server = cli_json_str(conf, "server");
		if (name == NULL && cli_json_str(conf, "name")[0])
			name = cli_json_str(conf, "name");
		if (server_ca == NULL && exists(st.ca))
			server_ca = st.ca;
	}
	if (exists(st.enroll)) {
		rc = read_json_file(st.enroll, &pending, &err);
		if (rc != CF_OK)
			goto fail;
		if (!enroll_id_valid(cli_json_str(pending, "id"))) {
			rc = cf_error_set(&err, CF_ERR_PARSE, "%s holds no valid "
				"enrollment id (32 lower-case hex characters); "
				"remove it and join again with a new token",
				st.enroll);
			goto fail;
		}
		snprintf(id, sizeof(id), "%s", cli_json_str(pending, "id"));
		if (name == NULL)
			name = cli_json_str(pending, "name");
	}
	if (server == NULL || name == NULL) {
		code = cli_usage("agent join", "--server and --name are required");
		goto done;
	}
	if (id[0] == '\0' && token_text == NULL && token_file == NULL) {
		code = cli_usage("agent join", "--token or --token-file is required");
		goto done;
	}

	/* Everything that can be refused is checked before files are made. */
	if (id[0] == '\0') {
		rc = read_token(token_text, token_file, &tok, &err);
		if (rc != CF_OK)
			goto fail;
	}
	if (server_ca != NULL && server_ca != st.ca) {
		rc = cli_read_file(server_ca, CF_PEM_MAX_BYTES, &ca_pem, &ca_len, &err);
		if (rc != CF_OK)
			goto fail;
	}
	if (root != NULL) {
		X509 *r = NULL;

		rc = cli_read_file(root, CF_PEM_MAX_BYTES, &root_pem, &root_len,
				   &err);
		if (rc == CF_OK)
			rc = cli_load_cert(root, &r, NULL, &err);
		if (rc == CF_OK && cf_cert_kind(r) != CF_KIND_ROOT)
			rc = cf_error_set(&err, CF_ERR_USAGE, "--root %s is not "
				"a root certificate (self-signed CA)", root);
		X509_free(r);
		if (rc != CF_OK)
			goto fail;
	}
	rc = cli_mkdir(dir, 0700, &err);
	if (rc == CF_OK && chmod(dir, 0700) != 0)
		rc = cf_error_set(&err, CF_ERR_IO, "cannot set mode 0700 on %s: %s",
				  dir, strerror(errno));
	if (rc == CF_OK && ca_pem != NULL) {
		rc = cli_write_file(st.ca, ca_pem, ca_len, 0644, 0, &err);
		server_ca = st.ca;
	}
	/* The anchor `agent run` verifies every record against. */
	if (rc == CF_OK && root_pem != NULL)
		rc = cli_write_file(st.root, root_pem, root_len, 0644, 0, &err);
	if (rc == CF_OK) {
		json_t *nc = json_pack("{s:s, s:s, s:s?, s:s, s:s}", "server", server,
			"name", name, "server_ca", server_ca ? "server-ca.crt" : NULL,
			"cert", "agent.crt", "key", "agent.key");

		rc = nc ? write_json_file(st.conf, nc, 0644, &err) :
			  cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		json_decref(nc);
	}
	if (rc != CF_OK)
		goto fail;
	if (exists(st.key)) {
		rc = cli_load_key(st.key, &nopass, &key, &err);
	} else {
		rc = cf_key_generate(&key, &err);
		if (rc == CF_OK)
			rc = cli_write_key(st.key, key, NULL, &err);
	}
	if (rc != CF_OK)
		goto fail;

	set.server = server;
	set.server_ca = server_ca;
	rc = cli_client_new(&set, 0, &c, &err);
	if (rc == CF_OK && id[0] == '\0')
		rc = send_request(c, &st, tok, key, name, id, &err);
	if (rc != CF_OK)
		goto fail;

	deadline = time(NULL) + (time_t)wait_s;
	n = enroll_id_valid(id) ? snprintf(path, sizeof(path), "/v1/enroll/%s",
					   id) : -1;
	if (n < 0 || (size_t)n >= sizeof(path)) {
		rc = cf_error_set(&err, CF_ERR_SERVER, "enrollment id \"%.64s\" "
				  "is not 32 lower-case hex characters", id);
		goto fail;
	}
	for (;;) {
		const char *status;

		json_decref(resp);
		resp = NULL;
		rc = cli_client_call(c, "GET", path, NULL, &resp, &err);
		if (rc != CF_OK)
			goto fail;
		status = cli_json_str(resp, "status");
		if (strcmp(status, "approved") == 0) {
			rc = save_cert(&st, resp, key, name, root != NULL ? root :
				       exists(st.root) ? st.root : NULL, fp, &err);
			if (rc != CF_OK)
				goto fail;
			unlink(st.enroll);
			printf("joined as \"%s\": %s (fingerprint %s)\n", name,
			       st.cert, fp);
			goto done;
		}
		if (strcmp(status, "rejected") == 0) {
			/* A new token may be tried with the same key. */
			unlink(st.enroll);
			rc = cf_error_set(&err, CF_ERR_REJECTED,
				"enrollment %s of \"%s\" was rejected%s%s",
				id, name, cli_json_str(resp, "reason")[0] ?
				": " : "", cli_printable(cli_json_str(resp,
				"reason"), reason, sizeof(reason)));
			goto fail;
		}
		if (strcmp(status, "pending") != 0) {
			rc = cf_error_set(&err, CF_ERR_SERVER, "enrollment %s has "
					  "an unknown status", id);
			goto fail;
		}
		if (time(NULL) >= deadline) {
			if (wait_s == 0) {
				printf("pending: enrollment %s of \"%s\" waits for an "
				       "enroller; run 'coffer agent join --state-dir "
				       "%s --wait SECONDS' to wait for it\n", id, name, dir);
				goto done;
			}
			rc = cf_error_set(&err, CF_ERR_TIMEOUT,
				"enrollment %s of \"%s\" is still pending after %llu "
				"s; run the same command again to keep waiting", id,
				name, wait_s);
			goto fail;
		}
		{
			double left = difftime(deadline, time(NULL));
			double nap = delay < left ? delay : left;

			if (nap > 0) {
				struct timespec ts = { (time_t)nap,
					(long)((nap - (double)(time_t)nap) * 1e9) };

				nanosleep(&ts, NULL);
			}
		}
		delay = delay * 1.5 > 5.0 ? 5.0 : delay * 1.5;
	}
fail:
	code = cli_fail(&err);
done:
	OPENSSL_free(ca_pem);
	OPENSSL_free(root_pem);
	json_decref(resp);
	json_decref(conf);
	json_decref(pending);
	EVP_PKEY_free(key);
	cf_token_free(tok);
	cli_client_free(c);
	return code;
}

/* --------------------------------------------------------------- approve */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static cf_status reject(cli_client *c, const char *id, const char *reason,
			cf_error *err)
{
	char path[160], shown[72];
	json_t *body, *resp = NULL;
	cf_status rc;
	int n;

	/* id came from the server: it must not steer the request elsewhere. */
	n = enroll_id_valid(id) ? snprintf(path, sizeof(path),
					   "/v1/enrollments/%s/reject", id) : -1;
	if (n < 0 || (size_t)n >= sizeof(path))
		return cf_error_set(err, CF_ERR_SERVER, "enrollment id \"%s\" "
				    "is not 32 lower-case hex characters; not "
				    "rejected", cli_printable(id, shown,
							      sizeof(shown)));
	body = json_pack("{s:s}", "reason", reason);
	if (body == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = cli_client_call(c, "POST", path, body, &resp, err);
	json_decref(body);
	json_decref(resp);
	return rc;
}

/*
 * One pending request: checks and signs, or rejects on a bad HMAC.
 * Returns CF_OK when a decision was made and uploaded.
 */
static cf_status approve_one(cli_client *c, const json_t *req, int days,
			     cf_error *err)
{
	const char *id = cli_json_str(req, "id");
	const char *name = cli_json_str(req, "name");
	const char *token_id = cli_json_str(req, "token_id");
	const char *csr_pem = cli_json_str(req, "csr");
	const char *hmac = cli_json_str(req, "hmac");
	const char *server_group;
	char group[CF_NAME_MAX_BYTES + 1], when[32];
	int64_t expires = 0;
	char path[160], want[65], hash[65], cn[CF_CN_MAX_BYTES + 1];
	char fp[65], pname[CF_NAME_MAX_BYTES + 1], shown[CF_NAME_MAX_BYTES + 1];
	json_t *tok = NULL, *body = NULL, *resp = NULL;
	unsigned char *env = NULL, *der = NULL, *pem = NULL;
	size_t env_len = 0, pem_len = 0;
	int der_len;
	const cf_trust *trust = NULL;
	cf_secret *secret = NULL;
	X509_REQ *csr = NULL;
	X509 *cert = NULL;
	cf_cert_spec spec = { 0 };
	const char *groups[1];
	cf_status rc;

	/* id goes into a request path: hex only, as the server makes them. */
	if (!enroll_id_valid(id) || !cf_token_id_valid(token_id))
		return cf_error_set(err, CF_ERR_SERVER,
			"a pending enrollment from the server lacks an id or token id");
	/* The name is the server's (the agent's) word: printable in messages. */
	cli_printable(name, pname, sizeof(pname));
	snprintf(path, sizeof(path), "/v1/tokens/%s", token_id);
	rc = cli_client_trust(c, &trust, err);
	if (rc == CF_OK)
		rc = cli_client_call(c, "GET", path, NULL, &tok, err);
	if (rc != CF_OK)
		goto out;
	server_group = cli_json_str(tok, "group");
	if (json_object_get(tok, "envelope") == NULL) {
		rc = cf_error_set(err, CF_ERR_DENIED,
			"enrollment %s of \"%s\": token %s was created by another "
			"enroller (%s); only its creator can check the HMAC",
			id, pname, token_id, cli_printable(cli_json_str(tok,
			"creator"), shown, sizeof(shown)));
		goto out;
	}
	rc = cli_b64_decode(cli_json_str(tok, "envelope"), "the token's envelope",
			    &env, &env_len, err);
	if (rc == CF_OK)
		rc = cf_token_open_claims(env, env_len, cli_client_cert(c),
				cli_client_key(c), trust, token_id, &secret, group,
				sizeof(group), &expires, err);
	if (rc == CF_OK)
		rc = cf_csr_parse((const unsigned char *)csr_pem, strlen(csr_pem),
				  "the agent's request", &csr, err);
	if (rc != CF_OK)
		goto out;
	der_len = i2d_X509_REQ(csr, &der);
	if (der_len <= 0) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO, "cannot encode the request");
		goto out;
	}
	rc = cf_token_hmac(secret, der, (size_t)der_len, want, err);
	if (rc == CF_OK)
		rc = cf_token_hash(secret, hash, err);
	if (rc != CF_OK)
		goto out;
	if (!cf_token_digest_equal(want, hmac) ||
	    (json_object_get(tok, "hash") != NULL &&
	     !cf_token_digest_equal(hash, cli_json_str(tok, "hash")))) {
		rc = reject(c, id, "HMAC does not match the token", err);
		if (rc == CF_OK)
			printf("rejected %s (%s): HMAC does not match the token\n",
			       pname, id);
		goto out;
	}
	cf_cert_cn_of_name(X509_REQ_get_subject_name(csr), cn, sizeof(cn));
	if (strcmp(cn, name) != 0) {
		rc = reject(c, id, "the request's common name is not the name asked for", err);
		if (rc == CF_OK)
			printf("rejected %s (%s): the request's CN is \"%s\"\n",
			       pname, id, cli_printable(cn, shown, sizeof(shown)));
		goto out;
	}
	/*
	 * The group and expiry are the ones sealed with the SECRET at
	 * creation: the server's copies only have to agree with them.
	 */
	if (strcmp(server_group, group) != 0 || (cli_json_str(req, "group")[0] &&
	    strcmp(group, cli_json_str(req, "group")) != 0)) {
		rc = cf_error_set(err, CF_ERR_SERVER,
			"enrollment %s: the server says token %s is for group "
			"\"%.100s\", but you made it for \"%s\"; not approved (the "
			"server's data is wrong or was altered)", id, token_id,
			cli_printable(server_group, shown, sizeof(shown)), group);
		goto out;
	}
	if ((int64_t)time(NULL) >= expires) {
		cli_unix_iso(expires, when, sizeof(when));
		rc = cf_error_set(err, CF_ERR_TOKEN,
			"enrollment %s of \"%s\": token %s expired at %s; not "
			"approved (reject it, and give the machine a new token)",
			id, pname, token_id, when);
		goto out;
	}
	groups[0] = group;
	spec.kind = CF_KIND_AGENT;
	spec.groups = groups;
	spec.n_groups = 1;
	spec.days = days;
	rc = cf_cert_issue(cli_client_cert(c), cli_client_key(c), csr, &spec,
			   &cert, err);
	if (rc == CF_OK)
		rc = cf_cert_to_pem(cert, &pem, &pem_len, err);
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(cert, fp, err);
	if (rc != CF_OK)
		goto out;
	body = json_pack("{s:s%}", "cert", (const char *)pem, pem_len);
	snprintf(path, sizeof(path), "/v1/enrollments/%s/approve", id);
	rc = body ? cli_client_call(c, "POST", path, body, &resp, err) :
		    cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (rc == CF_OK)
		printf("approved %s (group %s, enrollment %s): fingerprint %s\n",
		       pname, group, id, fp);
out:
	json_decref(tok);
	json_decref(body);
	json_decref(resp);
	OPENSSL_free(env);
	OPENSSL_free(der);
	OPENSSL_free(pem);
	cf_secret_free(secret);
	X509_REQ_free(csr);
	X509_free(cert);
	return rc;
}

static int agent_approve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "watch", no_argument, NULL, 'w' },
		{ "days", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	json_t *seen = NULL, *resp = NULL, *req;
	unsigned long long days = CF_DEFAULT_CERT_DAYS;
	int ch, all = 0, watch = 0, decided = 0, code = 0;
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	size_t i;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'a': all = 1; break;
		case 'w': watch = 1; break;
		case 'd':
			if (cli_parse_uint("agent approve", "--days", optarg,
					   36500, &days))
				return 2;
			break;
		case 'h': agent_usage(stdout); return 0;
		default: return cli_bad_option("agent approve");
		}
	}
	if (all == (optind < argc))
		return cli_usage("agent approve", "give --all or the names to "
				 "approve (not both)");
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c, &err);
	if (rc != CF_OK)
		return cli_fail(&err);
	if (watch) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	seen = json_object();
	do {
		json_decref(resp);
		resp = NULL;
		rc = cli_client_call(c, "GET", "/v1/enrollments?status=pending",
				     NULL, &resp, &err);
		if (rc != CF_OK) {
			/* --watch outlives a server restart, not a refusal. */
			if (!watch || (rc != CF_ERR_NETWORK && rc != CF_ERR_LIMIT &&
				       rc != CF_ERR_SERVER)) {
				code = cli_fail(&err);
				break;
			}
			fprintf(stderr, "coffer: %s; retrying\n", err.msg);
		}
		json_array_foreach(json_object_get(resp, "enrollments"), i, req) {
			const char *id = cli_json_str(req, "id");
			const char *name = cli_json_str(req, "name");
			int wanted = all;

			for (int a = optind; !wanted && a < argc; a++)
				wanted = strcmp(argv[a], name) == 0;
			/* A request that failed once is not retried every 2 s. */
			if (!wanted || json_object_get(seen, id) != NULL)
				continue;
			json_object_set_new(seen, id, json_true());
			cf_error_clear(&err);
			if (approve_one(c, req, (int)days, &err) == CF_OK) {
				decided++;
				continue;
			}
			/* Go on with the others; the exit code is the first failure's. */
			fprintf(stderr, "coffer: %s\n", err.msg);
			if (code == 0)
				code = cli_exit_code(err.code);
		}
		fflush(stdout);
		if (watch && !interrupted)
			sleep(WATCH_INTERVAL_S);
	} while (watch && !interrupted);
	if (rc == CF_OK && !watch) {
		/* Named requests that were not pending are an error. */
		for (int a = optind; a < argc && code == 0; a++) {
			int found = 0;

			json_array_foreach(json_object_get(resp, "enrollments"), i, req)
				found |= strcmp(cli_json_str(req, "name"), argv[a]) == 0;
			if (!found) {
				cf_error_set(&err, CF_ERR_NOT_FOUND,
					"no pending enrollment for \"%s\" that you "
					"may approve", argv[a]);
				code = cli_fail(&err);
			}
		}
		if (code == 0 && decided == 0 && all)
			fprintf(stderr, "coffer: no pending enrollment\n");
	}
	json_decref(resp);
	json_decref(seen);
	cli_client_free(c);
	return code;
}

/* ---------------------------------------------------------------- reject */

static int agent_reject(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "reason", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	json_t *resp = NULL, *req;
	const char *reason = "rejected by an enroller", *who, *id = NULL;
	cf_error err = { 0 };
	cf_status rc;
	size_t i;
	int ch, matches = 0;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'r': reason = optarg; break;
		case 'h': agent_usage(stdout); return 0;
		default: return cli_bad_option("agent reject");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("agent reject", "give one enrollment ID or name");
	if (strlen(reason) > 500)
		return cli_usage("agent reject", "--reason is limited to 500 bytes");
	who = argv[optind];
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY, &c, &err);
	if (rc == CF_OK)
		rc = cli_client_call(c, "GET", "/v1/enrollments?status=pending",
				     NULL, &resp, &err);
	if (rc != CF_OK)
		goto out;
	json_array_foreach(json_object_get(resp, "enrollments"), i, req) {
		if (strcmp(cli_json_str(req, "id"), who) == 0 ||
		    strcmp(cli_json_str(req, "name"), who) == 0) {
			id = cli_json_str(req, "id");
			matches++;
		}
	}
	if (matches == 0) {
		rc = cf_error_set(&err, CF_ERR_NOT_FOUND, "no pending enrollment "
				  "with id or name \"%s\"", who);
		goto out;
	}
	if (matches > 1) {
		rc = cf_error_set(&err, CF_ERR_USAGE, "%d pending enrollments are "
				  "named \"%s\"; reject them by id (see 'coffer agent "
				  "approve' output or the server's list)", matches, who);
		goto out;
	}
	rc = reject(c, id, reason, &err);
	if (rc == CF_OK)
		printf("rejected enrollment %s\n", id);
out:
	json_decref(resp);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

/* -------------------------------------------------------------------- ls */

static int agent_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const char *group = NULL;
	char *group_q = NULL, after[65] = "";
	json_t *all = json_array(), *resp = NULL, *e;
	cf_error err = { 0 };
	cf_status rc;
	size_t i;
	int ch, as_json = 0;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'g': group = optarg; break;
		case 'j': as_json = 1; break;
		case 'h': agent_usage(stdout); json_decref(all); return 0;
		default: json_decref(all); return cli_bad_option("agent ls");
		}
	}
	if (optind != argc) {
		json_decref(all);
		return cli_usage("agent ls", "unexpected argument \"%s\"", argv[optind]);
	}
	if (group != NULL)
		group_q = cli_client_escape(group);
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY, &c, &err);
	while (rc == CF_OK) {
		char path[512];

		snprintf(path, sizeof(path), "/v1/certs?kind=agent&limit=%d%s%s%s%s",
			 CERT_LIST_PAGE, group_q ? "&group=" : "",
			 group_q ? group_q : "", after[0] ? "&after=" : "", after);
		json_decref(resp);
		resp = NULL;
		rc = cli_client_call(c, "GET", path, NULL, &resp, &err);
		if (rc != CF_OK)
			break;
		json_array_foreach(json_object_get(resp, "certs"), i, e) {
			json_t *row = json_pack("{s:s, s:s, s:O?, s:s, s:I}",
				"name", cli_json_str(e, "name"), "fp",
				cli_json_str(e, "fp"), "groups",
				json_object_get(e, "groups"), "issuer",
				cli_json_str(e, "issuer"), "not_after",
				(json_int_t)cli_json_int(e, "not_after"));

			if (row != NULL)
				json_array_append_new(all, row);
		}
		if (!cli_next_cursor(resp, after, sizeof(after)))
			break;
	}
	if (rc != CF_OK)
		goto out;
	if (as_json) {
		json_t *doc = json_pack("{s:O}", "agents", all);

		cli_json_print(doc);
		json_decref(doc);
		goto out;
	}
	printf("%-24s  %-24s  %-20s  %s\n", "NAME", "GROUPS", "NOT AFTER",
	       "FINGERPRINT");
	json_array_foreach(all, i, e) {
		char groups[256] = "", when[32], pname[CF_NAME_MAX_BYTES + 1];
		char shown[sizeof(groups)], pfp[72];
		json_t *g;
		size_t j, used = 0;

		json_array_foreach(json_object_get(e, "groups"), j, g) {
			int n = snprintf(groups + used, sizeof(groups) - used, "%s%s",
					 j ? "," : "", json_string_value(g) ?
					 json_string_value(g) : "");

			if (n < 0 || (size_t)n >= sizeof(groups) - used)
				break;
			used += (size_t)n;
		}
		cli_unix_iso(cli_json_int(e, "not_after"), when, sizeof(when));
		printf("%-24s  %-24s  %-20s  %s\n",
		       cli_printable(cli_json_str(e, "name"), pname, sizeof(pname)),
		       cli_printable(groups, shown, sizeof(shown)), when,
		       cli_printable(cli_json_str(e, "fp"), pfp, sizeof(pfp)));
	}
out:
	free(group_q);
	json_decref(resp);
	json_decref(all);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

int cmd_agent(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "join", agent_join },
		{ "approve", agent_approve },
		{ "reject", agent_reject },
		{ "ls", agent_ls },
		{ "run", ag_cmd_run },
		{ "once", ag_cmd_once },
		{ "exec", ag_cmd_exec },
		{ "status", ag_cmd_status },
		{ "cluster-join", ag_cmd_cluster_join },
		{ "cache", ag_cmd_cache },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    agent_usage);
}
