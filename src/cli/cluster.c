/*
 * cluster.c - `coffer cluster create|add|export|rotate|ls`: clusters of
 * agents that share one key (docs/CLUSTERS.md, src/lib/cluster.h).
 *
 * Run by an enroller whose agent.enroll covers the cluster's name.  The
 * cluster's key is made here, never on the server: create and rotate
 * generate it, have it certified by the caller (kind cluster, .3 = NAME),
 * register the certificate in the server's directory and store the key as
 * the secret "cluster-key/NAME" (the bundle: certificate, chain, PKCS#8
 * key), signed by the caller and sealed to the caller and to each member
 * agent.  The record's targets ("agent:A", ...) are the membership, signed
 * with it: add and rotate read them from the caller's own copy, never from
 * the server, so a server can withhold the key from a member but not hand
 * it to anyone else.
 *
 * rotate re-seals the cluster's secrets to the new key without reading
 * any secret's writer: it reads the old key's envelopes through the
 * cluster feed (GET /v1/agent/secrets with the member proof), opens each
 * with the old key, verifies the record against the root and the CRL like
 * any reader, and seals the SAME signed bytes to the new certificate, so
 * members open the very record its writer signed.  Cache entries written
 * by member agents are not carried over (their member proof is for the old
 * key).  Then the old key's envelopes are purged from the server.
 *
 * Plaintext held here: the bundle (the cluster's private key, in a
 * cf_secret and an EVP_PKEY), the records being re-sealed (cf_secret), and
 * an export's password (cf_secret).  None is ever printed.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "cluster.h"
#include "envelope.h"
#include "pki.h"
#include "policy.h"
#include "recipients.h"
#include "secrets.h"

#define CERT_PAGE 500
/* Cluster feed items asked for per request while re-sealing. */
#define FEED_PAGE 100
/* A feed cursor beyond any the server gave out: the caller's own feed
 * answers nothing (docs/API.md: the cursor is only echoed back). */
#define FEED_SINCE_NONE "9223372036854775807"
/* Longest export password read from a terminal. */
#define P12_PASS_MAX 1024

static void cluster_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer cluster create NAME [--agent A]... [--days N] [--json]\n"
		"       coffer cluster add NAME --agent A [--agent B]... [--json]\n"
		"       coffer cluster export NAME --out F.p12 [--pass-file P] [--force]\n"
		"                             [--key-pass-file K] [--json]\n"
		"       coffer cluster rotate NAME [--without A]... [--days N]\n"
		"                             [--old-cert F] [--json]\n"
		"       coffer cluster ls [--json]\n"
		"       (each with [connection options])\n"
		"\n"
		"A cluster is a key shared by several agents: `put --to cluster:NAME`\n"
		"seals once, to the cluster's certificate, and every member opens it.\n"
		"Run by an enroller whose agent.enroll rules cover NAME.\n"
		"\n"
		"create  makes the cluster's key and certificate (kind cluster, signed\n"
		"        by you, valid N days, default 825), registers the certificate\n"
		"        on the server and stores the key as the secret\n"
		"        cluster-key/NAME, sealed to you and to each agent A.\n"
		"add     gives the key to more agents: a new version of\n"
		"        cluster-key/NAME for the old members and the new ones.  Needs\n"
		"        your own copy of the key (you made the cluster or were given\n"
		"        it).\n"
		"export  writes the key, certificate and chain as a PKCS#12 file\n"
		"        (mode 0600; AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC) for\n"
		"        machines that join by file (`coffer agent cluster-join --p12\n"
		"        F`).  The password is the first line of --pass-file P, else\n"
		"        asked twice on the terminal; with --pass-file taken, your own\n"
		"        key's passphrase comes from --key-pass-file or\n"
		"        COFFER_PASSPHRASE.  --force replaces an existing F.\n"
		"rotate  makes a new key and certificate, gives it to the members\n"
		"        (minus each --without A), re-seals the cluster's secrets to\n"
		"        it and removes the old key's envelopes from the server.\n"
		"        Cache entries written by members are not carried over.  A\n"
		"        removed member still holds the old key: revoke the old\n"
		"        certificate (--old-cert F saves it for `coffer ca revoke`).\n"
		"ls      lists the cluster certificates in the server's directory,\n"
		"        each verified here: current (the one `--to cluster:NAME`\n"
		"        seals to), valid, revoked, expired or untrusted.  --json\n"
		"        adds each certificate's PEM (for `coffer ca revoke`).\n"
		"\n%s", cli_settings_help);
}

/* ------------------------------------------------------------- helpers */

/* A cluster's certificate, chain and key, and the certificate's fp. */
struct bundle {
	X509 *cert;
	STACK_OF(X509) *chain;
	EVP_PKEY *key;
	char fp[65];
};

static void bundle_clear(struct bundle *b)
{
	X509_free(b->cert);
	sk_X509_pop_free(b->chain, X509_free);
	EVP_PKEY_free(b->key);
	memset(b, 0, sizeof(*b));
}

/* Strings owned here (targets being built). */
struct strlist {
	char *v[CF_RECORD_TARGETS_MAX];
	size_t n;
};

static int strlist_has(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return 1;
	return 0;
}

/* Adds a copy of prefix+s unless there; 1 if added, 0 if there, -1 full. */
static int strlist_add(struct strlist *l, const char *prefix, const char *s)
{
	char buf[CF_NAME_MAX_BYTES + 32];

	snprintf(buf, sizeof(buf), "%s%s", prefix, s);
	if (strlist_has(l, buf))
		return 0;
	if (l->n == CF_RECORD_TARGETS_MAX)
		return -1;
	l->v[l->n] = strdup(buf);
	if (l->v[l->n] == NULL)
		return -1;
	l->n++;
	return 1;
}

static void strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

/* Puts "what: " before err's sentence (never formats msg into itself). */
static cf_status err_prefix(cf_error *err, const char *what)
{
	char was[CF_ERROR_MAX];

	snprintf(was, sizeof(was), "%s", err->msg);
	return cf_error_set(err, err->code, "%s: %s", what, was);
}

/* The cluster name of an operand, checked; "cluster-key/NAME" into key. */
static int check_name(const char *cmd, const char *name, char *key,
		      size_t size)
{
	char got[CF_NAME_MAX_BYTES + 1];
	int n = snprintf(key, size, "%s%s", CF_CLUSTER_KEY_PREFIX, name);

	if (n < 0 || (size_t)n >= size || strlen(name) > CF_CN_MAX_BYTES ||
	    !cf_cluster_of_name(key, 1, got, sizeof(got)) ||
	    strcmp(got, name) != 0) {
		cli_usage(cmd, "\"%.100s\" is not a valid cluster name (letters, "
			  "digits, '.', '_', '-'; at most %d bytes)", name,
			  CF_CN_MAX_BYTES);
		return -1;
	}
	return 0;
}

/*
 * An agent NAME of --agent or --without (opt) added to l as "agent:NAME";
 * 0, or the usage exit code (2) after saying what is wrong.
 */
static int agent_opt(const char *cmd, const char *opt, const char *agent,
		     struct strlist *l)
{
	cf_error err = { 0 };

	if (cf_name_check("agent name", agent, &err) != CF_OK ||
	    strlen(agent) > CF_CN_MAX_BYTES)
		return cli_usage(cmd, "%s \"%.100s\" is not a valid agent name",
				 opt, agent);
	if (strlist_add(l, "agent:", agent) < 0)
		return cli_usage(cmd, "too many %s", opt);
	return 0;
}

/* PEM of cert as a new jansson string. */
static json_t *pem_json(X509 *cert)
{
	unsigned char *pem = NULL;
	size_t len = 0;
	cf_error err = { 0 };
	json_t *s;

	if (cf_cert_to_pem(cert, &pem, &len, &err) != CF_OK)
		return NULL;
	s = json_stringn((const char *)pem, len);
	OPENSSL_free(pem);
	return s;
}

/* The caller's certificate and its chain (the issuer of what it signs). */
static cf_status caller_chain(cli_client *c, STACK_OF(X509) **out,
			      cf_error *err)
{
	STACK_OF(X509) *own = cli_client_chain(c);
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509 *me = cli_client_cert(c);

	*out = NULL;
	if (chain == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	/* The root is the trust anchor, never part of a chain. */
	if (cf_cert_kind(me) != CF_KIND_ROOT) {
		if (!X509_up_ref(me) || !sk_X509_push(chain, me)) {
			sk_X509_pop_free(chain, X509_free);
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		}
	}
	for (int i = 0; own != NULL && i < sk_X509_num(own); i++) {
		X509 *x = sk_X509_value(own, i);

		if (cf_cert_kind(x) == CF_KIND_ROOT)
			continue;
		if (!X509_up_ref(x) || !sk_X509_push(chain, x)) {
			sk_X509_pop_free(chain, X509_free);
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		}
	}
	*out = chain;
	return CF_OK;
}

/*
 * A new key and a cluster certificate for it, signed by the caller.
 * not_before_after (may be NULL): the new certificate must start later
 * than this one, so that `--to cluster:NAME` (the newest by notBefore)
 * cannot pick the certificate it replaces.
 */
static cf_status make_cert(cli_client *c, const char *name, int days,
			   const X509 *not_before_after, struct bundle *b,
			   cf_error *err)
{
	cf_cert_spec spec = { 0 };
	X509_REQ *csr = NULL;
	cf_status rc;

	spec.kind = CF_KIND_CLUSTER;
	spec.cluster = name;
	spec.days = days;
	rc = cf_key_generate(&b->key, err);
	if (rc == CF_OK)
		rc = cf_csr_new(b->key, name, &csr, err);
	for (int tries = 0; rc == CF_OK && tries < 3; tries++) {
		X509_free(b->cert);
		b->cert = NULL;
		rc = cf_cert_issue(cli_client_cert(c), cli_client_key(c), csr,
				   &spec, &b->cert, err);
		if (rc != CF_OK || not_before_after == NULL ||
		    ASN1_TIME_compare(X509_get0_notBefore(b->cert),
				      X509_get0_notBefore(not_before_after)) > 0)
			break;
		sleep(1);       /* issued within the same second as the old one */
	}
	/* --to cluster:NAME seals to the newest: this one must be it. */
	if (rc == CF_OK && not_before_after != NULL &&
	    ASN1_TIME_compare(X509_get0_notBefore(b->cert),
			      X509_get0_notBefore(not_before_after)) <= 0)
		rc = cf_error_set(err, CF_ERR_CONFLICT, "the cluster's current "
			"certificate is valid from a time after now (a clock "
			"ahead where it was made): a new one would not be the "
			"newest; try again once this machine's clock is past it");
	if (rc == CF_OK)
		rc = caller_chain(c, &b->chain, err);
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(b->cert, b->fp, err);
	if (rc == CF_OK && cf_cluster_check_cert(b->cert, b->key, name, err) !=
	    CF_OK)
		rc = err->code;
	X509_REQ_free(csr);
	return rc;
}

/* POST /v1/certs: the cluster certificate joins the directory. */
static cf_status upload_cert(cli_client *c, const struct bundle *b,
			     cf_error *err)
{
	json_t *body, *chain = json_array(), *resp = NULL;
	cf_status rc;

	for (int i = 0; chain != NULL && i < sk_X509_num(b->chain); i++)
		json_array_append_new(chain, pem_json(sk_X509_value(b->chain, i)));
	body = chain ? json_pack("{s:o, s:O}", "cert", pem_json(b->cert),
				 "chain", chain) : NULL;
	json_decref(chain);
	if (body == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = cli_client_call(c, "POST", "/v1/certs", body, &resp, err);
	if (rc == CF_OK && strcmp(cli_json_str(resp, "fp"), b->fp) != 0)
		rc = cf_error_set(err, CF_ERR_SERVER, "the server registered the "
				  "cluster certificate under another fingerprint");
	else if (rc != CF_OK)
		rc = err_prefix(err, "registering the cluster certificate");
	json_decref(body);
	json_decref(resp);
	return rc;
}

/*
 * The caller's own copy of cluster-key/NAME (the latest version), opened
 * and verified like `coffer get`, and its bundle decoded and checked:
 * the certificate is a cluster certificate NAME for the key, and it
 * verifies against the root and the CRL (a revoked one only with
 * allow_revoked, for rotate: *revoked says so).
 */
static cf_status load_own(cli_client *c, const char *name, const char *key,
			  const char *verb, int allow_revoked, cf_record **rec,
			  struct bundle *b, int *revoked, cf_error *err)
{
	const cf_trust *trust = NULL;
	X509 *signer = NULL;
	cf_status rc;

	*rec = NULL;
	if (revoked != NULL)
		*revoked = 0;
	rc = cli_fetch_own(c, key, 0, rec, &signer, err);
	if (rc == CF_ERR_NOT_FOUND) {
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "you hold no copy of "
			"%s: only an enroller who holds the cluster key (the one "
			"that made cluster \"%s\", or one it was given to) can %s; "
			"a new cluster is made with 'coffer cluster create'",
			key, name, verb);
	}
	if (rc == CF_OK && (*rec)->type != CF_TYPE_BINARY)
		rc = cf_error_set(err, CF_ERR_RECORD, "%s version %llu is of type "
			"%s, not binary: not a cluster key bundle", key,
			(unsigned long long)(*rec)->version,
			cf_record_type_name((*rec)->type));
	if (rc == CF_OK)
		rc = cf_cluster_bundle_decode(cf_secret_cdata((*rec)->value),
					      cf_secret_len((*rec)->value), name,
					      &b->cert, &b->chain, &b->key, err);
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(b->cert, b->fp, err);
	if (rc == CF_OK)
		rc = cli_client_trust(c, &trust, err);
	if (rc == CF_OK) {
		cf_error why = { 0 };
		cf_status v = cf_trust_verify(trust, b->cert, b->chain,
					      "the cluster certificate", &why);

		if (v == CF_ERR_REVOKED && allow_revoked && revoked != NULL) {
			*revoked = 1;
		} else if (v == CF_ERR_REVOKED) {
			rc = cf_error_set(err, v, "cluster \"%s\": its certificate "
				"%s is revoked; make a new key with 'coffer cluster "
				"rotate %s'", name, b->fp, name);
		} else if (v != CF_OK) {
			*err = why;
			rc = v;
		}
	}
	if (rc != CF_OK) {
		cf_record_free(*rec);
		*rec = NULL;
		bundle_clear(b);
	}
	X509_free(signer);
	return rc;
}

/*
 * The recipients of a new version of the key: the caller, then each
 * target.  strict: a target that resolves to nothing is an error (agents
 * named on this command line); otherwise it is skipped with a note.
 */
static cf_status resolve_members(cli_client *c, const char *key,
				 const struct strlist *targets,
				 const struct strlist *strict, cli_rcpts *r,
				 cf_error *err)
{
	cf_status rc = cli_rcpts_add(r, cli_client_cert(c),
				     cli_client_chain(c), cli_client_fp(c), err);

	for (size_t i = 0; rc == CF_OK && i < targets->n; i++) {
		cf_error why = { 0 };
		size_t before = r->n;
		cf_status one = cli_resolve(c, targets->v[i], r, &why);

		/* Agents take a key only from who could have enrolled them
		 * (cf_cluster_may_give): say so now, before anything is
		 * made, rather than have the agent refuse it. */
		for (size_t k = before; one == CF_OK && k < r->n; k++)
			one = cf_cluster_may_give(cli_client_cert(c),
						  r->v[k].cert, &why);
		if (one == CF_OK)
			continue;
		if (one == CF_ERR_POLICY) {
			*err = why;
			rc = one;
			break;
		}
		if (strlist_has(strict, targets->v[i]) ||
		    (one != CF_ERR_NOT_FOUND && one != CF_ERR_REVOKED &&
		     one != CF_ERR_UNTRUSTED)) {
			*err = why;
			rc = one;
		} else {
			fprintf(stderr, "coffer: %s: member %s skipped: %s\n", key,
				targets->v[i], why.msg);
		}
	}
	return rc;
}

/* Writes the next version of cluster-key/NAME: the bundle, to r. */
static cf_status write_key(cli_client *c, const char *key,
			   const struct bundle *b, const struct strlist *targets,
			   const cli_rcpts *r, unsigned long long *version,
			   cf_error *err)
{
	cf_record rec;
	size_t bytes = 0;
	cf_status rc;

	memset(&rec, 0, sizeof(rec));
	snprintf(rec.name, sizeof(rec.name), "%s", key);
	rec.type = CF_TYPE_BINARY;
	rec.targets = (char **)targets->v;
	rec.n_targets = targets->n;
	rc = cf_cluster_bundle_encode(b->cert, b->chain, b->key, &rec.value,
				      err);
	if (rc == CF_OK)
		rc = cli_write_version(c, &rec, r, 0, 1, &bytes, err);
	if (rc == CF_OK)
		*version = rec.version;
	cf_secret_free(rec.value);
	return rc;
}

/* The members of r (every recipient but the caller, the first) as JSON. */
static json_t *members_json(const cli_rcpts *r)
{
	json_t *arr = json_array();

	for (size_t i = 1; arr != NULL && i < r->n; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s}", "name",
			r->v[i].name, "fp", r->v[i].fp));
	return arr;
}

static void print_members(const cli_rcpts *r)
{
	char pcn[CF_CN_MAX_BYTES + 1];

	if (r->n <= 1)
		printf("  no member agent holds the key yet (add them with "
		       "'coffer cluster add')\n");
	for (size_t i = 1; i < r->n; i++)
		printf("  member %-24s %s\n", cli_printable(r->v[i].name, pcn,
		       sizeof(pcn)), r->v[i].fp);
}

/* 1 if cluster-key/NAME has a version (deleted or not); -1 on error. */
static int key_exists(cli_client *c, const char *key, cf_error *err)
{
	char *q = cli_client_escape(key), path[1024];
	json_t *resp = NULL;
	cf_status rc;

	if (q == NULL) {
		cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		return -1;
	}
	snprintf(path, sizeof(path), "/v1/secrets/history?name=%s", q);
	free(q);
	rc = cli_client_call(c, "GET", path, NULL, &resp, err);
	json_decref(resp);
	if (rc == CF_ERR_NOT_FOUND) {
		cf_error_clear(err);
		return 0;
	}
	return rc == CF_OK ? 1 : -1;
}

/* -------------------------------------------------------------- create */

static int cluster_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "agent", required_argument, NULL, 'a' },
		{ "days", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const char *name;
	char key[CF_NAME_MAX_BYTES + 1], na[32];
	char *serial = NULL;
	unsigned long long days = CF_DEFAULT_CERT_DAYS, version = 0;
	struct strlist targets = { 0 };
	struct bundle b = { 0 };
	cli_rcpts r = { 0 };
	int ch, as_json = 0, code = 0, registered = 0;
	cf_error err = { 0 };
	cf_status rc;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'a':
			code = agent_opt("cluster create", "--agent", optarg, &targets);
			if (code != 0)
				goto done;
			break;
		case 'd':
			if (cli_parse_uint("cluster create", "--days", optarg,
					   36500, &days)) {
				code = 2;
				goto done;
			}
			break;
		case 'j': as_json = 1; break;
		case 'h': cluster_usage(stdout); goto done;
		default: code = cli_bad_option("cluster create"); goto done;
		}
	}
	if (optind + 1 != argc) {
		code = cli_usage("cluster create", "give exactly one cluster NAME");
		goto done;
	}
	name = argv[optind];
	if (check_name("cluster create", name, key, sizeof(key)) != 0) {
		code = 2;
		goto done;
	}
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c,
				&err);
	if (rc != CF_OK)
		goto fail;
	switch (key_exists(c, key, &err)) {
	case 0: break;
	case 1:
		rc = cf_error_set(&err, CF_ERR_CONFLICT, "cluster \"%s\" exists "
			"already (%s has a version): give it members with "
			"'coffer cluster add %s --agent A', or a new key with "
			"'coffer cluster rotate %s'", name, key, name, name);
		goto fail;
	default:
		rc = err.code;
		goto fail;
	}
	/* Every member is checked before anything is made. */
	rc = resolve_members(c, key, &targets, &targets, &r, &err);
	if (rc == CF_OK)
		rc = make_cert(c, name, (int)days, NULL, &b, &err);
	if (rc == CF_OK)
		rc = upload_cert(c, &b, &err);
	if (rc != CF_OK)
		goto fail;
	registered = 1;
	rc = write_key(c, key, &b, &targets, &r, &version, &err);
	if (rc != CF_OK)
		goto fail;
	serial = cli_int_hex(X509_get0_serialNumber(b.cert));
	cli_iso_time(X509_get0_notAfter(b.cert), na, sizeof(na));
	if (as_json) {
		json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o}",
			"cluster", name, "fp", b.fp, "serial", serial ? serial : "",
			"not_after", na, "secret", key, "version",
			(json_int_t)version, "members", members_json(&r));

		cli_json_print(doc);
		json_decref(doc);
	} else {
		printf("created cluster \"%s\": certificate %s (serial %s, valid "
		       "until %s)\n", name, b.fp, serial ? serial : "?", na);
		printf("  the key is %s version %llu, sealed to you and %zu "
		       "member certificate(s)\n", key, version, r.n - 1);
		print_members(&r);
	}
	goto done;
fail:
	if (registered)
		fprintf(stderr, "coffer: note: cluster certificate %s was added "
			"to the directory but its key was not stored; run the "
			"command again (it makes a new key)\n", b.fp);
	code = cli_fail(&err);
done:
	OPENSSL_free(serial);
	bundle_clear(&b);
	cli_rcpts_free(&r);
	strlist_free(&targets);
	cli_client_free(c);
	return code;
}

/* ----------------------------------------------------------------- add */

static int cluster_add(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "agent", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const char *name;
	char key[CF_NAME_MAX_BYTES + 1];
	unsigned long long version = 0;
	struct strlist asked = { 0 }, targets = { 0 };
	struct bundle b = { 0 };
	cf_record *rec = NULL;
	cli_rcpts r = { 0 };
	json_t *added = json_array();
	int ch, as_json = 0, code = 0;
	cf_error err = { 0 };
	cf_status rc = CF_OK;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'a':
			code = agent_opt("cluster add", "--agent", optarg, &asked);
			if (code != 0)
				goto done;
			break;
		case 'j': as_json = 1; break;
		case 'h': cluster_usage(stdout); goto done;
		default: code = cli_bad_option("cluster add"); goto done;
		}
	}
	if (optind + 1 != argc) {
		code = cli_usage("cluster add", "give exactly one cluster NAME");
		goto done;
	}
	if (asked.n == 0) {
		code = cli_usage("cluster add", "give the agents to add with "
				 "--agent A");
		goto done;
	}
	name = argv[optind];
	if (check_name("cluster add", name, key, sizeof(key)) != 0) {
		code = 2;
		goto done;
	}
	if (added == NULL) {
		rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		goto fail;
	}
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c,
				&err);
	if (rc == CF_OK)
		rc = load_own(c, name, key, "add members", 0, &rec, &b, NULL, &err);
	if (rc != CF_OK)
		goto fail;
	/* The old members as the signed record says, then the new ones. */
	for (size_t i = 0; rc == CF_OK && i < rec->n_targets; i++)
		if (strlist_add(&targets, "", rec->targets[i]) < 0)
			rc = cf_error_set(&err, CF_ERR_TOO_LARGE, "%s: more than %d "
					  "members", key, CF_RECORD_TARGETS_MAX);
	for (size_t i = 0; rc == CF_OK && i < asked.n; i++) {
		int n = strlist_add(&targets, "", asked.v[i]);

		if (n < 0)
			rc = cf_error_set(&err, CF_ERR_TOO_LARGE, "%s: more than %d "
					  "members", key, CF_RECORD_TARGETS_MAX);
		else if (n == 0)
			fprintf(stderr, "coffer: note: %s is a member already; its "
				"certificates get the key again\n", asked.v[i]);
		else
			json_array_append_new(added, json_string(asked.v[i] + 6));
	}
	if (rc == CF_OK)
		rc = resolve_members(c, key, &targets, &asked, &r, &err);
	if (rc == CF_OK)
		rc = write_key(c, key, &b, &targets, &r, &version, &err);
	if (rc != CF_OK)
		goto fail;
	if (as_json) {
		json_t *doc = json_pack("{s:s, s:s, s:s, s:I, s:O, s:o}",
			"cluster", name, "fp", b.fp, "secret", key, "version",
			(json_int_t)version, "added", added, "members",
			members_json(&r));

		cli_json_print(doc);
		json_decref(doc);
	} else {
		printf("cluster \"%s\" (certificate %s): %s version %llu for %zu "
		       "member certificate(s); added", name, b.fp, key, version,
		       r.n - 1);
		if (json_array_size(added) == 0)
			printf(" nobody new");
		for (size_t i = 0; i < json_array_size(added); i++)
			printf("%s%s", i ? ", " : " ",
			       json_string_value(json_array_get(added, i)));
		printf("\n");
		print_members(&r);
	}
	goto done;
fail:
	code = cli_fail(&err);
done:
	json_decref(added);
	cf_record_free(rec);
	bundle_clear(&b);
	cli_rcpts_free(&r);
	strlist_free(&asked);
	strlist_free(&targets);
	cli_client_free(c);
	return code;
}

/* -------------------------------------------------------------- export */

/*
 * The export password: the first line of file, else asked twice on the
 * terminal (never COFFER_PASSPHRASE: that is the caller's key's).
 */
static cf_status export_pass(const char *file, cf_secret **out, cf_error *err)
{
	char buf[P12_PASS_MAX + 1];
	cf_status rc = CF_OK;

	*out = NULL;
	if (file != NULL) {
		cli_pass p = { 0 };

		p.file = file;
		return cli_pass_for_new_key(&p, "the PKCS#12 file", out, err);
	}
	if (!isatty(STDIN_FILENO))
		return cf_error_set(err, CF_ERR_PASSPHRASE, "the PKCS#12 file "
			"needs a password: give --pass-file FILE (its first line), "
			"or run on a terminal to be asked");
	if (EVP_read_pw_string_min(buf, 8, sizeof(buf),
				   "Password for the PKCS#12 file: ", 1) != 0) {
		rc = cf_error_set(err, CF_ERR_PASSPHRASE, "no password was "
			"entered (at least 8 characters, and both entries must "
			"match)");
		goto out;
	}
	*out = cf_secret_from(buf, strlen(buf));
	if (*out == NULL)
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

static int cluster_export(int argc, char **argv)
{
	/* --pass-file is the file's password here: the settings' passphrase
	 * option is --key-pass-file instead. */
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "key-pass-file", required_argument, NULL, CLI_OPT_PASS_FILE },
		{ "force", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "server", required_argument, NULL, CLI_OPT_SERVER },
		{ "server-ca", required_argument, NULL, CLI_OPT_SERVER_CA },
		{ "cert", required_argument, NULL, CLI_OPT_CERT },
		{ "key", required_argument, NULL, CLI_OPT_KEY },
		{ "root", required_argument, NULL, CLI_OPT_ROOT },
		{ "crl", required_argument, NULL, CLI_OPT_CRL },
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const char *name, *out = NULL, *pass_file = NULL;
	char key[CF_NAME_MAX_BYTES + 1];
	struct bundle b = { 0 };
	cf_record *rec = NULL;
	cf_secret *pass = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	int ch, force = 0, as_json = 0;
	cf_error err = { 0 };
	cf_status rc;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'o': out = optarg; break;
		case 'p': pass_file = optarg; break;
		case 'f': force = 1; break;
		case 'j': as_json = 1; break;
		case 'h': cluster_usage(stdout); return 0;
		default: return cli_bad_option("cluster export");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("cluster export", "give exactly one cluster NAME");
	if (out == NULL)
		return cli_usage("cluster export", "--out F.p12 is required");
	name = argv[optind];
	if (check_name("cluster export", name, key, sizeof(key)) != 0)
		return 2;
	/* Before any password is asked for. */
	if (!force && access(out, F_OK) == 0) {
		cf_error_set(&err, CF_ERR_EXISTS, "%s exists already; give "
			     "--force to replace it", out);
		return cli_fail(&err);
	}
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c,
				&err);
	if (rc == CF_OK)
		rc = load_own(c, name, key, "export it", 0, &rec, &b, NULL, &err);
	if (rc == CF_OK)
		rc = export_pass(pass_file, &pass, &err);
	if (rc == CF_OK)
		rc = cf_cluster_p12_export(b.cert, b.chain, b.key, pass, &der,
					   &len, &err);
	if (rc == CF_OK)
		rc = cli_write_file(out, der, len, 0600, !force, &err);
	if (rc != CF_OK)
		goto out;
	if (as_json) {
		json_t *doc = json_pack("{s:s, s:s, s:s, s:I, s:I}", "cluster",
			name, "fp", b.fp, "file", out, "bytes", (json_int_t)len,
			"version", (json_int_t)rec->version);

		cli_json_print(doc);
		json_decref(doc);
	} else {
		printf("wrote %s: cluster \"%s\" (certificate %s) as PKCS#12, "
		       "mode 0600 (AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC); "
		       "join with 'coffer agent cluster-join --p12 %s'\n", out,
		       name, b.fp, cli_basename(out));
	}
out:
	if (der != NULL)
		OPENSSL_clear_free(der, len);
	cf_secret_free(pass);
	cf_record_free(rec);
	bundle_clear(&b);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

/* -------------------------------------------------------------- rotate */

struct reseal {
	json_t *skipped;         /* [{"name","version","reason"}] */
	int64_t resealed, already, cache_entries, deleted;
};

static void skip(struct reseal *st, const char *name, int64_t version,
		 const char *why)
{
	char pname[CF_NAME_MAX_BYTES + 1];

	cli_printable(name, pname, sizeof(pname));
	fprintf(stderr, "coffer: note: %s version %lld not re-sealed: %s\n",
		pname, (long long)version, why);
	json_array_append_new(st->skipped, json_pack("{s:s, s:I, s:s}", "name",
		pname, "version", (json_int_t)version, "reason", why));
}

/*
 * One item of the old cluster's feed: the record verified as any member
 * would, then its signed bytes sealed to the new certificate and added to
 * that version.  Returns an error only for what stops the rotation (the
 * server or the network); a record that is not passed on is noted.
 */
static cf_status reseal_one(cli_client *c, const json_t *item,
			    const struct bundle *old, const struct bundle *nb,
			    const cf_trust *trust, struct reseal *st,
			    cf_error *err)
{
	const char *name = cli_json_str(item, "name");
	int64_t version = cli_json_int(item, "version");
	unsigned char *der = NULL, *env = NULL;
	size_t der_len = 0, env_len = 0;
	cf_record *rec = NULL;
	X509 *signer = NULL;
	cf_secret *content = NULL;
	cf_sealer *sealer = NULL;
	json_t *body = NULL, *resp = NULL;
	char *qname = NULL, path[1200], why[300];
	cf_error e = { 0 };
	cf_status rc = CF_OK;

	if (json_is_true(json_object_get(item, "deleted"))) {
		st->deleted++;
		return CF_OK;
	}
	if (cf_name_check("secret name", name, &e) != CF_OK || version < 1) {
		skip(st, name, version, "the server sent an unusable name or "
		     "version");
		return CF_OK;
	}
	if (cli_b64_decode(cli_json_str(item, "envelope"), "an envelope", &der,
			   &der_len, &e) != CF_OK ||
	    cf_envelope_open(der, der_len, old->cert, old->key, trust, name, 0,
			     &rec, &signer, &e) != CF_OK) {
		skip(st, name, version, e.msg);
		goto out;
	}
	/* A member's cache entry proves membership of the old key: the
	 * members write it again with the new one. */
	if (cf_cert_kind(signer) == CF_KIND_AGENT) {
		st->cache_entries++;
		goto out;
	}
	if (rec->version != (uint64_t)version) {
		snprintf(why, sizeof(why), "the envelope holds version %llu",
			 (unsigned long long)rec->version);
		skip(st, name, version, why);
		goto out;
	}
	/* The same signed bytes the writer made, to the new key. */
	rc = cf_envelope_decrypt(der, der_len, old->cert, old->key, &content,
				 err);
	if (rc == CF_OK)
		rc = cf_sealer_new(content, &sealer, err);
	if (rc == CF_OK)
		rc = cf_sealer_seal(sealer, nb->cert, &env, &env_len, err);
	if (rc != CF_OK)
		goto out;
	qname = cli_client_escape(name);
	body = json_pack("{s:[{s:s, s:o}]}", "envelopes", "recipient", nb->fp,
			 "envelope", cli_b64_json(env, env_len));
	if (qname == NULL || body == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	snprintf(path, sizeof(path), "/v1/secrets/envelopes?name=%s&version=%lld",
		 qname, (long long)version);
	rc = cli_client_call(c, "POST", path, body, &resp, err);
	if (rc == CF_ERR_CONFLICT) {
		cf_error_clear(err);
		rc = CF_OK;
		skip(st, name, version, "a newer version exists that is not "
		     "sealed to the cluster");
	} else if (rc == CF_ERR_DENIED || rc == CF_ERR_NOT_FOUND) {
		skip(st, name, version, err->msg);
		cf_error_clear(err);
		rc = CF_OK;
	} else if (rc == CF_OK) {
		if (cli_json_int(resp, "added") > 0)
			st->resealed++;
		else
			st->already++;
	}
out:
	json_decref(body);
	json_decref(resp);
	free(qname);
	cf_sealer_free(sealer);
	cf_secret_free(content);
	cf_record_free(rec);
	X509_free(signer);
	OPENSSL_free(der);
	OPENSSL_free(env);
	return rc;
}

/*
 * Reads the old key's envelopes through the cluster feed, as a member
 * (the Coffer-Cluster header with a proof made with the old key), page
 * by page; the header is sent with the feed requests only.
 */
static cf_status reseal_all(cli_client *c, const struct bundle *old,
			    const struct bundle *nb, struct reseal *st,
			    cf_error *err)
{
	char proof[CF_CLUSTER_PROOF_MAX + 1];
	char header[65 + 1 + CF_CLUSTER_PROOF_MAX + 1], path[256];
	const cf_trust *trust = NULL;
	long long cursor = 0;
	int more = 1;
	cf_status rc;

	rc = cli_client_trust(c, &trust, err);
	if (rc == CF_OK)
		rc = cf_cluster_proof(old->key, cli_client_tenant(c), old->fp,
				      cli_client_fp(c), proof, err);
	if (rc == CF_OK)
		snprintf(header, sizeof(header), "%s %s", old->fp, proof);
	while (rc == CF_OK && more) {
		json_t *resp = NULL, *feed, *item;
		cf_error ignored = { 0 };
		long long next;
		size_t i;

		snprintf(path, sizeof(path), "/v1/agent/secrets?since="
			 FEED_SINCE_NONE "&wait=0&limit=%d&cluster_since=%lld",
			 FEED_PAGE, cursor);
		rc = cli_client_set_cluster(c, header, err);
		if (rc == CF_OK)
			rc = cli_client_call(c, "GET", path, NULL, &resp, err);
		cli_client_set_cluster(c, NULL, &ignored);
		if (rc == CF_ERR_DENIED)
			rc = err_prefix(err, "reading the old key's envelopes as "
					"a member");
		if (rc != CF_OK) {
			json_decref(resp);
			break;
		}
		feed = json_object_get(resp, "cluster");
		if (!json_is_object(feed) ||
		    strcmp(cli_json_str(feed, "fp"), old->fp) != 0) {
			json_decref(resp);
			rc = cf_error_set(err, CF_ERR_SERVER, "the server sent no "
				"feed of the old cluster certificate %s (does it "
				"support clusters?)", old->fp);
			break;
		}
		json_array_foreach(json_object_get(feed, "secrets"), i, item) {
			rc = reseal_one(c, item, old, nb, trust, st, err);
			if (rc != CF_OK)
				break;
		}
		next = cli_json_int(feed, "cursor");
		more = json_is_true(json_object_get(feed, "more"));
		json_decref(resp);
		if (rc == CF_OK && more && next <= cursor)
			rc = cf_error_set(err, CF_ERR_SERVER, "the server's cluster "
					  "feed does not advance (cursor %lld)",
					  next);
		cursor = next;
	}
	return rc;
}

/*
 * The removed members' envelopes of the key (old versions: keys they
 * hold anyway, but nothing of the cluster's stays addressed to them).  A
 * member that cannot be resolved any more (revoked: the CRL push purged
 * it already) is passed over.  Returns the envelopes removed.
 */
static long long purge_removed(cli_client *c, const char *key,
			       const struct strlist *without, const cli_rcpts *r)
{
	char *qkey = cli_client_escape(key), path[1300];
	long long removed = 0;

	for (size_t i = 0; qkey != NULL && i < without->n; i++) {
		cli_rcpts gone = { 0 };
		cf_error why = { 0 };

		if (cli_resolve(c, without->v[i], &gone, &why) != CF_OK) {
			cli_rcpts_free(&gone);
			continue;
		}
		for (size_t k = 0; k < gone.n; k++) {
			json_t *resp = NULL;

			if (cli_rcpts_have(r, gone.v[k].fp))
				continue;       /* still a member (another name) */
			snprintf(path, sizeof(path), "/v1/secrets/envelopes?"
				 "recipient=%s&name=%s", gone.v[k].fp, qkey);
			if (cli_client_call(c, "DELETE", path, NULL, &resp, &why) ==
			    CF_OK)
				removed += cli_json_int(resp, "removed");
			else
				fprintf(stderr, "coffer: note: %s's copies of the "
					"old key stay on the server: %s\n",
					without->v[i] + 6, why.msg);
			json_decref(resp);
		}
		cli_rcpts_free(&gone);
	}
	free(qkey);
	return removed;
}

static int cluster_rotate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "without", required_argument, NULL, 'w' },
		{ "days", required_argument, NULL, 'd' },
		{ "old-cert", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const char *name, *old_cert_out = NULL;
	char key[CF_NAME_MAX_BYTES + 1], *old_serial = NULL;
	char path[256];
	unsigned long long days = CF_DEFAULT_CERT_DAYS, version = 0;
	struct strlist without = { 0 }, targets = { 0 }, none = { 0 };
	struct bundle old = { 0 }, nb = { 0 };
	struct reseal st = { 0 };
	cf_record *rec = NULL;
	cli_rcpts r = { 0 };
	json_t *resp = NULL, *removed = json_array();
	long long purged = 0, purged_keys = 0;
	int ch, as_json = 0, code = 0, old_revoked = 0, stage = 0;
	cf_error err = { 0 };
	cf_status rc = CF_OK;

	st.skipped = json_array();
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'w':
			code = agent_opt("cluster rotate", "--without", optarg, &without);
			if (code != 0)
				goto done;
			break;
		case 'd':
			if (cli_parse_uint("cluster rotate", "--days", optarg,
					   36500, &days)) {
				code = 2;
				goto done;
			}
			break;
		case 'o': old_cert_out = optarg; break;
		case 'j': as_json = 1; break;
		case 'h': cluster_usage(stdout); goto done;
		default: code = cli_bad_option("cluster rotate"); goto done;
		}
	}
	if (optind + 1 != argc) {
		code = cli_usage("cluster rotate", "give exactly one cluster NAME");
		goto done;
	}
	name = argv[optind];
	if (check_name("cluster rotate", name, key, sizeof(key)) != 0) {
		code = 2;
		goto done;
	}
	if (removed == NULL || st.skipped == NULL) {
		rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		goto fail;
	}
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c,
				&err);
	if (rc == CF_OK)
		rc = load_own(c, name, key, "rotate it", 1, &rec, &old,
			      &old_revoked, &err);
	if (rc != CF_OK)
		goto fail;
	/* The members: the signed record's, minus --without. */
	for (size_t i = 0; i < without.n; i++) {
		int member = 0;

		for (size_t t = 0; t < rec->n_targets; t++)
			member |= strcmp(rec->targets[t], without.v[i]) == 0;
		if (!member) {
			rc = cf_error_set(&err, CF_ERR_USAGE, "--without %s: not a "
				"member of cluster \"%s\" (%s version %llu); nothing "
				"was changed", without.v[i] + 6, name, key,
				(unsigned long long)rec->version);
			goto fail;
		}
		json_array_append_new(removed, json_string(without.v[i] + 6));
	}
	for (size_t t = 0; t < rec->n_targets; t++)
		if (!strlist_has(&without, rec->targets[t]) &&
		    strlist_add(&targets, "", rec->targets[t]) < 0) {
			rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
			goto fail;
		}
	if (old_cert_out != NULL) {
		unsigned char *pem = NULL;
		size_t len = 0;

		rc = cf_cert_to_pem(old.cert, &pem, &len, &err);
		if (rc == CF_OK)
			rc = cli_write_file(old_cert_out, pem, len, 0644, 0, &err);
		OPENSSL_free(pem);
		if (rc != CF_OK)
			goto fail;
	}
	old_serial = cli_int_hex(X509_get0_serialNumber(old.cert));
	cli_client_set_timeout(c, 600);
	rc = resolve_members(c, key, &targets, &none, &r, &err);
	if (rc == CF_OK)
		rc = make_cert(c, name, (int)days, old.cert, &nb, &err);
	if (rc == CF_OK)
		rc = upload_cert(c, &nb, &err);
	if (rc != CF_OK)
		goto fail;
	stage = 1;
	rc = write_key(c, key, &nb, &targets, &r, &version, &err);
	if (rc != CF_OK)
		goto fail;
	stage = 2;
	if (old_revoked)
		fprintf(stderr, "coffer: note: the old cluster certificate %s is "
			"revoked: its secrets cannot be read through the cluster "
			"any more and are not re-sealed; put them again with --to "
			"cluster:%s\n", old.fp, name);
	else
		rc = reseal_all(c, &old, &nb, &st, &err);
	if (rc != CF_OK)
		goto fail;
	stage = 3;
	snprintf(path, sizeof(path), "/v1/secrets/envelopes?recipient=%s",
		 old.fp);
	rc = cli_client_call(c, "DELETE", path, NULL, &resp, &err);
	if (rc != CF_OK)
		goto fail;
	purged = cli_json_int(resp, "removed");
	purged_keys = purge_removed(c, key, &without, &r);
	if (json_array_size(json_object_get(resp, "kept")) > 0)
		fprintf(stderr, "coffer: note: the server kept the old key's "
			"envelopes of %zu name(s) you may not purge\n",
			json_array_size(json_object_get(resp, "kept")));
	if (as_json) {
		json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o, "
			"s:O, s:I, s:I, s:I, s:O, s:I, s:I, s:b}",
			"cluster", name, "fp", nb.fp, "old_fp", old.fp,
			"old_serial", old_serial ? old_serial : "", "secret", key,
			"version", (json_int_t)version, "members", members_json(&r),
			"removed", removed, "resealed", (json_int_t)st.resealed,
			"already", (json_int_t)st.already,
			"cache_entries_dropped", (json_int_t)st.cache_entries,
			"skipped", st.skipped, "purged", (json_int_t)purged,
			"purged_key_copies", (json_int_t)purged_keys,
			"revoke_old", json_array_size(removed) > 0);

		cli_json_print(doc);
		json_decref(doc);
	} else {
		printf("rotated cluster \"%s\": new certificate %s\n", name, nb.fp);
		printf("  the new key is %s version %llu, sealed to you and %zu "
		       "member certificate(s)\n", key, version, r.n - 1);
		print_members(&r);
		for (size_t i = 0; i < json_array_size(removed); i++)
			printf("  removed %s\n",
			       json_string_value(json_array_get(removed, i)));
		printf("  re-sealed %lld secret(s) to the new key (%lld had it "
		       "already, %zu skipped, %lld members' cache entries not "
		       "carried over)\n", (long long)st.resealed,
		       (long long)st.already, json_array_size(st.skipped),
		       (long long)st.cache_entries);
		printf("  purged %lld envelope(s) of the old key %s from the "
		       "server\n", purged, old.fp);
		if (purged_keys > 0)
			printf("  purged %lld envelope(s) of %s of the removed "
			       "member(s)\n", purged_keys, key);
		if (!old_revoked)
			printf("%s: revoke its certificate (fingerprint %s, "
			       "serial %s) with 'coffer ca revoke --ca DIR --cert "
			       "%s' and 'coffer crl push'\n",
			       json_array_size(removed) > 0 ? "the removed "
			       "member(s) still hold the old key" : "the old key "
			       "is retired", old.fp, old_serial ? old_serial : "?",
			       old_cert_out ? old_cert_out : "OLD.crt (save it "
			       "with --old-cert, or take it from 'coffer cluster "
			       "ls --json')");
	}
	goto done;
fail:
	if (stage == 1)
		fprintf(stderr, "coffer: note: the new cluster certificate %s is "
			"registered but its key was not stored, and 'put --to "
			"cluster:%s' would seal to it: run 'coffer cluster rotate "
			"%s' again now (its newer certificate supersedes this "
			"one)\n", nb.fp, name, name);
	else if (stage == 2)
		fprintf(stderr, "coffer: note: the members hold the new key "
			"(certificate %s), but not every secret of the old key "
			"(certificate %s) was re-sealed to it and its envelopes "
			"were not purged: put those secrets again with --to "
			"cluster:%s (coffer rotate NAME does it from your own "
			"copy), then revoke the old certificate\n", nb.fp, old.fp,
			name);
	code = cli_fail(&err);
done:
	OPENSSL_free(old_serial);
	json_decref(resp);
	json_decref(removed);
	json_decref(st.skipped);
	cf_record_free(rec);
	bundle_clear(&old);
	bundle_clear(&nb);
	cli_rcpts_free(&r);
	strlist_free(&without);
	strlist_free(&targets);
	cli_client_free(c);
	return code;
}

/* ------------------------------------------------------------------ ls */

/*
 * What this client makes of a directory entry: "valid" (verifies against
 * the root and the CRL now), "revoked", "expired" or "untrusted".
 */
static const char *cert_state(const cf_trust *trust, const json_t *e,
			      X509 **cert_out)
{
	const char *pem = cli_json_str(e, "cert");
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509 *cert = NULL;
	cf_error why = { 0 };
	const char *state = "untrusted";
	json_t *p;
	size_t i;

	*cert_out = NULL;
	if (chain == NULL || cf_cert_parse((const unsigned char *)pem,
			strlen(pem), "a cluster certificate", &cert, NULL,
			&why) != CF_OK)
		goto out;
	json_array_foreach(json_object_get(e, "chain"), i, p) {
		X509 *x = NULL;
		const char *text = json_string_value(p);

		if (text != NULL && cf_cert_parse((const unsigned char *)text,
		    strlen(text), "a chain certificate", &x, NULL, &why) == CF_OK &&
		    !sk_X509_push(chain, x))
			X509_free(x);
	}
	switch (cf_trust_verify(trust, cert, chain, "a cluster certificate",
				&why)) {
	case CF_OK:
		state = cf_cluster_check_cert(cert, NULL, cli_json_str(e, "name"),
					      &why) == CF_OK ? "valid" :
							       "untrusted";
		break;
	case CF_ERR_REVOKED: state = "revoked"; break;
	default:
		if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
			state = "expired";
		break;
	}
	if (strcmp(state, "valid") == 0) {
		*cert_out = cert;
		cert = NULL;
	}
out:
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	return state;
}

static int cluster_ls(int argc, char **argv)
{
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const cf_trust *trust = NULL;
	char after[65] = "", path[256];
	json_t *all = json_array(), *resp = NULL, *e;
	json_t *newest = json_object();      /* name -> index of its current */
	X509 **valid = NULL;
	cf_error err = { 0 };
	cf_status rc;
	size_t i, n = 0;
	int as_json = 0, code;

	code = cli_settings_parse("cluster ls", argc, argv, cluster_usage, &set,
				  &as_json);
	if (code >= 0 || optind != argc) {
		json_decref(all);
		json_decref(newest);
		return code >= 0 ? code : cli_usage("cluster ls", "unexpected "
				 "argument \"%s\"", argv[optind]);
	}
	rc = all && newest ? cli_client_connect(&set, CLI_NEED_IDENTITY |
				CLI_NEED_ROOT, &c, &err) :
			     cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
	if (rc == CF_OK)
		rc = cli_client_trust(c, &trust, &err);
	while (rc == CF_OK) {
		snprintf(path, sizeof(path), "/v1/certs?kind=cluster&limit=%d%s%s",
			 CERT_PAGE, after[0] ? "&after=" : "", after);
		json_decref(resp);
		resp = NULL;
		rc = cli_client_call(c, "GET", path, NULL, &resp, &err);
		if (rc != CF_OK)
			break;
		json_array_foreach(json_object_get(resp, "certs"), i, e)
			json_array_append_new(all, json_pack("{s:s, s:s, s:s, s:s, "
				"s:I, s:s, s:O?}", "name", cli_json_str(e, "name"),
				"fp", cli_json_str(e, "fp"), "serial",
				cli_json_str(e, "serial"), "issuer",
				cli_json_str(e, "issuer"), "not_after",
				(json_int_t)cli_json_int(e, "not_after"), "cert",
				cli_json_str(e, "cert"), "chain",
				json_object_get(e, "chain")));
		if (!cli_next_cursor(resp, after, sizeof(after)))
			break;
	}
	if (rc != CF_OK)
		goto out;
	/* Which one `--to cluster:NAME` picks: the valid one that became
	 * valid last (recipients.c). */
	n = json_array_size(all);
	valid = calloc(n ? n : 1, sizeof(*valid));
	if (valid == NULL) {
		rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	json_array_foreach(all, i, e) {
		const char *name = cli_json_str(e, "name");
		json_t *best = json_object_get(newest, name);

		json_object_set_new(e, "state", json_string(cert_state(trust, e,
								 &valid[i])));
		json_object_del(e, "chain");
		if (valid[i] != NULL && (best == NULL ||
		    ASN1_TIME_compare(X509_get0_notBefore(valid[i]),
			X509_get0_notBefore(valid[json_integer_value(best)])) >= 0))
			json_object_set_new(newest, name,
					    json_integer((json_int_t)i));
	}
	json_array_foreach(all, i, e)
		json_object_set_new(e, "current", json_boolean(
			json_integer_value(json_object_get(newest,
				cli_json_str(e, "name"))) == (json_int_t)i &&
			valid[i] != NULL));
	if (as_json) {
		json_t *doc = json_pack("{s:O}", "clusters", all);

		cli_json_print(doc);
		json_decref(doc);
		goto out;
	}
	printf("%-24s  %-9s  %-20s  %s\n", "NAME", "STATE", "NOT AFTER",
	       "FINGERPRINT");
	json_array_foreach(all, i, e) {
		char when[32], pname[CF_NAME_MAX_BYTES + 1], pfp[72];

		cli_unix_iso(cli_json_int(e, "not_after"), when, sizeof(when));
		printf("%-24s  %-9s  %-20s  %s\n",
		       cli_printable(cli_json_str(e, "name"), pname, sizeof(pname)),
		       json_is_true(json_object_get(e, "current")) ? "current" :
		       cli_json_str(e, "state"), when,
		       cli_printable(cli_json_str(e, "fp"), pfp, sizeof(pfp)));
	}
out:
	for (i = 0; valid != NULL && i < n; i++)
		X509_free(valid[i]);
	free(valid);
	json_decref(resp);
	json_decref(all);
	json_decref(newest);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

int cmd_cluster(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "create", cluster_create },
		{ "add", cluster_add },
		{ "export", cluster_export },
		{ "rotate", cluster_rotate },
		{ "ls", cluster_ls },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    cluster_usage);
}
