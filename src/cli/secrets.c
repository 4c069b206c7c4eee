/*
 * secrets.c - `coffer put|get|ls|history|rm`: secrets on the server
 * (docs/CLIENT.md, docs/API.md "Secrets").
 *
 * put resolves its recipients through the server's directory but trusts
 * none of it: every certificate is verified here against COFFER_ROOT and
 * the root-signed CRL before anything is sealed, and a bad one is refused
 * by name (a group's revoked or expired members are skipped, with a note).
 * The record is signed once and sealed once per recipient, the writer
 * included; the server receives ciphertext only.
 *
 * get prints the secret's bytes and nothing else; they go from secure
 * memory straight to write(2) (or to --out, written atomically 0600).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "b64.h"
#include "cli.h"
#include "client.h"
#include "cluster.h"
#include "envelope.h"
#include "pki.h"
#include "policy.h"
#include "recipients.h"
#include "secrets.h"
#include "sealing.h"

#define VERSION_MAX (((unsigned long long)1 << 53) - 1)

/* ------------------------------------------------------------------ put */

static void put_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer put NAME --to agent:NAME|group:G|cluster:C|fp:FP [--to ...]\n"
		"                  [--file F] [--type text|binary|file] [--threads N]\n"
		"                  [--json] [connection options]\n"
		"\n"
		"Reads the secret (at most 1 MiB) from standard input or --file F,\n"
		"never from the command line; fetches the recipients' certificates\n"
		"from the server and verifies each against your root and the\n"
		"organisation's CRL; signs one record (version = the latest + 1) and\n"
		"seals it to every recipient and to you; uploads all envelopes as one\n"
		"version (one request, or in chunks committed together when they do\n"
		"not fit in one).  Needs secret.write on NAME.\n"
		"\n"
		"  --to agent:NAME   the agent(s) with that name\n"
		"  --to group:G      every agent in group G (revoked or expired members\n"
		"                    are skipped, with a note on stderr)\n"
		"  --to cluster:C    cluster C's key, once: every member opens it\n"
		"                    (its newest valid certificate; docs/CLUSTERS.md)\n"
		"  --to fp:FP        the certificate with that SHA-256 fingerprint\n"
		"  --threads N       verify and seal on N threads (default: the number\n"
		"                    of online CPUs, at most %d); the envelopes are the\n"
		"                    same whatever N.  A progress bar goes to stderr\n"
		"                    when it is a terminal and there are 100 recipients\n"
		"                    or more\n"
		"\n%s", CLI_THREADS_MAX, cli_settings_help);
}

/* The latest version of name, tombstones included; 0 if none. */
static cf_status latest_version(cli_client *c, const char *qname,
				unsigned long long *latest, cf_error *err)
{
	char path[1024];
	json_t *resp = NULL, *v;
	size_t i;
	cf_status rc;

	*latest = 0;
	snprintf(path, sizeof(path), "/v1/secrets/history?name=%s", qname);
	rc = cli_client_call(c, "GET", path, NULL, &resp, err);
	if (rc == CF_ERR_NOT_FOUND) {
		cf_error_clear(err);
		rc = CF_OK;
	}
	json_array_foreach(json_object_get(resp, "versions"), i, v)
		if ((unsigned long long)cli_json_int(v, "version") > *latest)
			*latest = (unsigned long long)cli_json_int(v, "version");
	json_decref(resp);
	return rc;
}

/*
 * Uploading one version.  The envelopes' JSON is built as text in the
 * ordinary heap (it is ciphertext; jansson would put it on the small
 * secure heap) and never more than about one request body of it at a
 * time: what fits one PUT goes as one PUT; anything larger goes through
 * a staged upload (begin, chunks, commit; docs/API.md "Staged uploads"),
 * sent while sealing goes on.  A server with a smaller body limit answers
 * the PUT with 413 and says its limit when the upload begins.
 */
#define PUT_BODY_MAX (1536u * 1024u)  /* JSON bytes of one PUT or chunk */
#define BODY_MARGIN 256               /* the wrapper around the entries */

/* Entries "{...},{...}" and where each one ends. */
struct entries {
	char *p;
	size_t len, cap;
	size_t *end;
	size_t n, end_cap;
};

static void entries_free(struct entries *e)
{
	free(e->p);
	free(e->end);
	memset(e, 0, sizeof(*e));
}

static cf_status entries_add(struct entries *e, const char *fp,
			     const unsigned char *der, size_t len, cf_error *err)
{
	size_t b64 = cf_b64_encoded_len(len);
	size_t need = 64 + b64 + 40;
	cf_status rc;
	int w;

	if (len > CF_ENVELOPE_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE, "an envelope of %zu "
				    "bytes is above the limit", len);
	if (e->cap - e->len < need + 1) {
		size_t cap = e->cap ? e->cap : 64 * 1024;
		char *grown;

		while (cap - e->len < need + 1)
			cap *= 2;
		grown = realloc(e->p, cap);
		if (grown == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		e->p = grown;
		e->cap = cap;
	}
	if (e->n == e->end_cap) {
		size_t cap = e->end_cap ? e->end_cap * 2 : 256;
		size_t *grown = realloc(e->end, cap * sizeof(*grown));

		if (grown == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		e->end = grown;
		e->end_cap = cap;
	}
	/* fp is hex and base64 needs no escaping: plain text is JSON here. */
	w = snprintf(e->p + e->len, e->cap - e->len,
		     "%s{\"recipient\":\"%s\",\"envelope\":\"", e->n ? "," : "",
		     fp);
	e->len += (size_t)w;
	rc = cf_b64_encode(der, len, e->p + e->len, e->cap - e->len, NULL, err);
	if (rc != CF_OK)
		return rc;
	e->len += b64;
	w = snprintf(e->p + e->len, e->cap - e->len, "\"}");
	e->len += (size_t)w;
	e->end[e->n++] = e->len;
	return CF_OK;
}

/* Bytes of entries [from, to), without the comma before from. */
static size_t entries_span(const struct entries *e, size_t from, size_t to,
			   size_t *start)
{
	*start = from == 0 ? 0 : e->end[from - 1] + 1;
	return e->end[to - 1] - *start;
}

struct upload {
	cli_client *c;
	const char *qname;
	cf_record *rec;
	size_t total;          /* recipients */
	size_t sent;           /* envelopes staged so far */
	size_t limit;          /* JSON bytes of one request body */
	char id[33];           /* "" until begun */
	json_t **resp;         /* the last answer (a 409's "latest") */
	size_t sealed;         /* envelopes made so far (progress) */
};

/* One bar for both: sealing goes on while chunks are sent. */
static void upload_progress(const struct upload *u)
{
	cli_progress_bar("sealing", u->sealed, "uploaded", u->sent, u->total);
}

static cf_status call_text(struct upload *u, const char *method,
			   const char *path, const char *text, size_t len,
			   cf_error *err)
{
	json_decref(*u->resp);
	*u->resp = NULL;
	return cli_client_call_raw(u->c, method, path, text, len, u->resp, err);
}

static cf_status upload_begin(struct upload *u, cf_error *err)
{
	json_t *body = json_pack("{s:s, s:I}", "name", u->rec->name,
				 "version", (json_int_t)u->rec->version);
	const char *id;
	long long max_body;
	cf_status rc;

	if (body == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	json_decref(*u->resp);
	*u->resp = NULL;
	rc = cli_client_call(u->c, "POST", "/v1/secrets/uploads", body,
			     u->resp, err);
	json_decref(body);
	if (rc != CF_OK)
		return rc;
	id = cli_json_str(*u->resp, "upload");
	if (strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32)
		return cf_error_set(err, CF_ERR_SERVER, "POST /v1/secrets/uploads: "
				    "the server answered without an upload id");
	snprintf(u->id, sizeof(u->id), "%s", id);
	max_body = cli_json_int(*u->resp, "max_body");
	if (max_body > 2 * BODY_MARGIN &&
	    (unsigned long long)max_body - BODY_MARGIN < u->limit)
		u->limit = (size_t)max_body - BODY_MARGIN;
	return CF_OK;
}

/* Sends every entry as chunks of at most u->limit bytes, then empties e. */
static cf_status upload_chunks(struct upload *u, struct entries *e,
			       cf_error *err)
{
	static const char head[] = "{\"envelopes\":[", tail[] = "]}";
	char path[96];
	size_t from = 0, to, start, span;
	cf_status rc = CF_OK;

	snprintf(path, sizeof(path), "/v1/secrets/uploads/%s", u->id);
	while (rc == CF_OK && from < e->n) {
		char *body;

		for (to = from + 1; to < e->n; to++)
			if (entries_span(e, from, to + 1, &start) +
			    sizeof(head) + sizeof(tail) > u->limit)
				break;
		span = entries_span(e, from, to, &start);
		body = malloc(sizeof(head) + span + sizeof(tail));
		if (body == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		memcpy(body, head, sizeof(head) - 1);
		memcpy(body + sizeof(head) - 1, e->p + start, span);
		memcpy(body + sizeof(head) - 1 + span, tail, sizeof(tail) - 1);
		rc = call_text(u, "POST", path, body,
			       sizeof(head) - 1 + span + sizeof(tail) - 1, err);
		free(body);
		if (rc == CF_OK) {
			u->sent += to - from;
			upload_progress(u);
		}
		from = to;
	}
	e->len = 0;
	e->n = 0;
	return rc;
}

/* The whole of e as one PUT /v1/secrets. */
static cf_status upload_single(struct upload *u, const struct entries *e,
			       cf_error *err)
{
	char head[64], path[1024], *body;
	size_t hl, len;
	cf_status rc;

	hl = (size_t)snprintf(head, sizeof(head), "{\"version\":%llu,"
			      "\"envelopes\":[",
			      (unsigned long long)u->rec->version);
	len = hl + e->len + 2;
	body = malloc(len);
	if (body == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	memcpy(body, head, hl);
	memcpy(body + hl, e->p, e->len);
	memcpy(body + hl + e->len, "]}", 2);
	snprintf(path, sizeof(path), "/v1/secrets?name=%s", u->qname);
	rc = call_text(u, "PUT", path, body, len, err);
	free(body);
	return rc;
}

/*
 * Envelopes sealed ahead of the upload at most (about 3 MB): enough for
 * the workers to go on while a chunk of PUT_BODY_MAX is being sent, and
 * a bound on memory whatever the number of recipients.
 */
#define SEAL_WINDOW 2048

/*
 * Signs version rec->version of the record, seals it to every recipient
 * and uploads it (one PUT, or staged).  Sealing runs on cli_threads()
 * threads (cli_sealpool), the envelopes come out in recipient order, and
 * this thread builds and sends the chunks meanwhile.  *resp is the last
 * answer (for a 409's "latest").  A staged upload that fails is aborted,
 * best effort; a conflict at its commit has dropped it already.
 */
static cf_status upload_version(cli_client *c, const char *qname,
				cf_record *rec, const cli_rcpts *r,
				size_t *bytes, json_t **resp, cf_error *err)
{
	cf_secret *json = NULL, *signed_der = NULL;
	cf_sealer *sealer = NULL;
	cli_sealpool *pool = NULL;
	X509 **certs = NULL;
	struct entries e = { 0 };
	struct upload u = { c, qname, rec, r->n, 0, PUT_BODY_MAX, "", resp, 0 };
	int committed_conflict = 0;
	cf_status rc;

	*bytes = 0;
	rec->created = (int64_t)time(NULL);
	rc = cf_record_encode(rec, &json, err);
	if (rc == CF_OK)
		rc = cf_envelope_sign(json, cli_client_cert(c), cli_client_key(c),
				      cli_client_chain(c), &signed_der, err);
	if (rc == CF_OK)
		rc = cf_sealer_new(signed_der, &sealer, err);
	if (rc == CF_OK && (certs = calloc(r->n + 1, sizeof(*certs))) == NULL)
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	for (size_t i = 0; rc == CF_OK && i < r->n; i++)
		certs[i] = r->v[i].cert;
	if (rc == CF_OK)
		rc = cli_sealpool_start(sealer, certs, r->n, cli_threads(),
					SEAL_WINDOW, &pool, err);
	for (size_t i = 0; rc == CF_OK && i < r->n; i++) {
		unsigned char *der = NULL;
		size_t len = 0, entry;

		rc = cli_sealpool_next(pool, &der, &len, err);
		if (rc != CF_OK)
			break;
		*bytes += len;
		entry = 64 + (len + 2) / 3 * 4 + 40;
		/* Full: this is a staged upload; send what is ready. */
		if (e.n > 0 && e.len + entry + BODY_MARGIN > u.limit) {
			if (u.id[0] == '\0')
				rc = upload_begin(&u, err);
			if (rc == CF_OK)
				rc = upload_chunks(&u, &e, err);
		}
		if (rc == CF_OK)
			rc = entries_add(&e, r->v[i].fp, der, len, err);
		OPENSSL_free(der);
		u.sealed = i + 1;
		upload_progress(&u);
	}
	/* Every envelope is out (or the run failed): stop the workers. */
	cli_sealpool_free(pool);
	pool = NULL;
	if (rc == CF_OK && u.id[0] == '\0') {
		rc = upload_single(&u, &e, err);
		/*
		 * Above this server's body limit: stage it instead.  The
		 * server may also have answered 413 and closed before curl
		 * sent the whole body (a broken pipe, no answer read); it
		 * cannot have stored a body it did not receive, so staging
		 * is safe then too.
		 */
		if (rc == CF_ERR_TOO_LARGE ||
		    (rc == CF_ERR_NETWORK && cli_client_send_failed(u.c))) {
			cf_error_clear(err);
			rc = upload_begin(&u, err);
		}
		if (rc != CF_OK || u.id[0] == '\0')
			goto out;
	}
	if (rc == CF_OK)
		rc = upload_chunks(&u, &e, err);
	if (rc == CF_OK) {
		char path[96];

		snprintf(path, sizeof(path), "/v1/secrets/uploads/%s/commit",
			 u.id);
		rc = call_text(&u, "POST", path, NULL, 0, err);
		committed_conflict = rc == CF_ERR_CONFLICT;
	}
out:
	if (rc == CF_OK) {
		u.sent = u.total;
		upload_progress(&u);
	}
	if (rc != CF_OK && u.id[0] != '\0' && !committed_conflict) {
		char path[96];
		json_t *ignored = NULL;
		cf_error quiet = { 0 };

		snprintf(path, sizeof(path), "/v1/secrets/uploads/%s", u.id);
		cli_client_call(c, "DELETE", path, NULL, &ignored, &quiet);
		json_decref(ignored);
	}
	entries_free(&e);
	cli_sealpool_free(pool);
	free(certs);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	cf_secret_free(json);
	return rc;
}

int cmd_put(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "file", required_argument, NULL, 'f' },
		{ "type", required_argument, NULL, 'y' },
		{ "threads", required_argument, NULL, 'T' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	unsigned long long threads = 0;
	const char **to = NULL, *file = NULL, *type = "text", *name;
	size_t n_to = 0, bytes = 0;
	cli_rcpts r = { 0 };
	cf_record rec = { 0 };
	struct cf_perms *perms = NULL;
	json_t *resp = NULL;
	unsigned long long latest = 0;
	char *qname = NULL, me[CF_CN_MAX_BYTES + 1];
	char cluster[CF_NAME_MAX_BYTES + 1];
	const char *verb = "secret.write", *scope;
	const cf_trust *trust = NULL;
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	int ch, as_json = 0, code = 0;

	to = OPENSSL_zalloc(sizeof(*to) * (size_t)argc);
	if (to == NULL)
		return 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 't': to[n_to++] = optarg; break;
		case 'f': file = optarg; break;
		case 'y': type = optarg; break;
		case 'T':
			if (cli_parse_uint("put", "--threads", optarg,
					   CLI_THREADS_MAX, &threads)) {
				code = 2;
				goto done;
			}
			cli_threads_set((size_t)threads);
			break;
		case 'j': as_json = 1; break;
		case 'h': put_usage(stdout); goto done;
		default: code = cli_bad_option("put"); goto done;
		}
	}
	if (optind + 1 != argc) {
		/* Not echoed: a stray argument may well be the secret itself. */
		code = cli_usage("put", "give exactly one secret NAME; the secret "
				 "itself is read from standard input or --file, "
				 "never from the command line");
		goto done;
	}
	name = argv[optind];
	if (n_to == 0) {
		code = cli_usage("put", "give at least one --to");
		goto done;
	}
	if (cf_record_type_from_name(type, &rec.type) != 0 ||
	    rec.type == CF_TYPE_TEMPLATE) {
		code = cli_usage("put", "--type must be text, binary or file");
		goto done;
	}
	if (cf_name_check("secret name", name, &err) != CF_OK) {
		err.code = CF_ERR_USAGE;
		goto fail;
	}
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c, &err);
	if (rc != CF_OK)
		goto fail;
	cf_cert_cn(cli_client_cert(c), me, sizeof(me));
	rc = cf_cert_perms(cli_client_cert(c), &perms, &err);
	scope = name;
	/* A cluster's key is the enrollers' (docs/CLUSTERS.md). */
	if (cf_cluster_of_name(name, 1, cluster, sizeof(cluster))) {
		verb = "agent.enroll";
		scope = cluster;
	}
	if (rc == CF_OK && !cf_perms_allows(perms, verb, scope))
		rc = cf_error_set(&err, CF_ERR_PERMISSION, "you (\"%s\") hold no "
				  "%s rule matching \"%s\"", me, verb, scope);
	if (rc == CF_OK)
		rc = cli_plaintext_read(file, "--file F", &rec.value, &err);
	/* The writer first: it must verify like everybody else. */
	if (rc == CF_OK)
		rc = cli_client_trust(c, &trust, &err);
	if (rc == CF_OK)
		rc = cf_trust_verify(trust, cli_client_cert(c), cli_client_chain(c),
				     "your certificate", &err);
	if (rc == CF_OK)
		rc = cli_rcpts_add(&r, cli_client_cert(c), cli_client_chain(c),
			      cli_client_fp(c), &err);
	for (size_t i = 0; rc == CF_OK && i < n_to; i++)
		rc = cli_resolve(c, to[i], &r, &err);
	if (rc != CF_OK)
		goto fail;
	qname = cli_client_escape(name);
	if (qname == NULL) {
		rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		goto fail;
	}
	rc = latest_version(c, qname, &latest, &err);
	if (rc != CF_OK)
		goto fail;
	snprintf(rec.tenant, sizeof(rec.tenant), "%s", cli_client_tenant(c));
	snprintf(rec.name, sizeof(rec.name), "%s", name);
	/* Signed with the value: whom `sync` and `rotate` may extend it to. */
	rec.targets = (char **)to;
	rec.n_targets = n_to;
	cli_client_set_timeout(c, 600);
	/* Another writer may store a version in between: retry once above it. */
	for (int attempt = 0; attempt < 2; attempt++) {
		json_t *l;

		if (latest >= VERSION_MAX) {
			rc = cf_error_set(&err, CF_ERR_CONFLICT, "\"%s\" has reached "
					  "the highest version", name);
			goto fail;
		}
		rec.version = latest + 1;
		rc = upload_version(c, qname, &rec, &r, &bytes, &resp, &err);
		if (rc != CF_ERR_CONFLICT || attempt == 1)
			break;
		l = json_object_get(resp, "latest");
		if (!json_is_integer(l) || (unsigned long long)json_integer_value(l) < rec.version) {
			/* The server did not say; ask it. */
			rc = latest_version(c, qname, &latest, &err);
			if (rc != CF_OK)
				break;
		} else {
			latest = (unsigned long long)json_integer_value(l);
		}
	}
	if (rc != CF_OK)
		goto fail;
	if (as_json) {
		json_t *list = json_array(), *doc;

		for (size_t i = 0; i < r.n; i++)
			json_array_append_new(list, json_pack("{s:s, s:s}", "name",
				r.v[i].name, "fp", r.v[i].fp));
		doc = json_pack("{s:s, s:I, s:s, s:I, s:I, s:o}", "name", name,
				"version", (json_int_t)rec.version, "type", type,
				"bytes", (json_int_t)cf_secret_len(rec.value),
				"envelope_bytes", (json_int_t)bytes, "recipients", list);
		cli_json_print(doc);
		json_decref(doc);
	} else {
		printf("stored \"%s\" version %llu (%zu bytes) for %zu recipient(s), "
		       "each verified against the root:\n", name,
		       (unsigned long long)rec.version, cf_secret_len(rec.value), r.n);
		for (size_t i = 0; i < r.n && i < 20; i++) {
			char pcn[sizeof(r.v[i].name)];

			printf("  %-24s %s%s\n", cli_printable(r.v[i].name, pcn,
			       sizeof(pcn)), r.v[i].fp, i == 0 ? "  (you)" : "");
		}
		if (r.n > 20)
			printf("  ... and %zu more\n", r.n - 20);
	}
	goto done;
fail:
	code = cli_fail(&err);
done:
	free(qname);
	json_decref(resp);
	cf_perms_free(perms);
	cf_secret_free(rec.value);
	cli_rcpts_free(&r);
	cli_client_free(c);
	OPENSSL_free(to);
	return code;
}

/* ------------------------------------------------------------------ get */

static void get_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer get NAME [--version V] [--out F] [--verbose]\n"
		"                  [connection options]\n"
		"\n"
		"Fetches your own envelope of NAME (the latest version, or V),\n"
		"opens it with your key and verifies the record against your root\n"
		"and the organisation's CRL (signer, secret.write, name, version).\n"
		"Prints the secret's bytes and nothing else, or writes them to F\n"
		"(mode 0600).  Works with an operator's or an agent's certificate.\n"
		"\n%s", cli_settings_help);
}

/*
 * Fetches the caller's own envelope of name (version 0: the latest) and
 * opens it with every rule of `coffer open`; also checks the version the
 * server named is the one inside.  *rec and *signer are the caller's.
 */
static cf_status fetch_own(cli_client *c, const char *name, const char *qname,
			   unsigned long long version, cf_record **rec,
			   X509 **signer, cf_error *err)
{
	const cf_trust *trust = NULL;
	json_t *resp = NULL;
	unsigned char *der = NULL;
	size_t der_len = 0;
	char path[1100];
	cf_status rc;

	*rec = NULL;
	if (version)
		snprintf(path, sizeof(path), "/v1/secrets/envelope?name=%s&version=%llu",
			 qname, version);
	else
		snprintf(path, sizeof(path), "/v1/secrets/envelope?name=%s", qname);
	rc = cli_client_trust(c, &trust, err);
	if (rc == CF_OK)
		rc = cli_client_call(c, "GET", path, NULL, &resp, err);
	if (rc == CF_OK)
		rc = cli_b64_decode(cli_json_str(resp, "envelope"), "the envelope",
				    &der, &der_len, err);
	if (rc == CF_OK)
		rc = cf_envelope_open(der, der_len, cli_client_cert(c),
				      cli_client_key(c), trust, name, version,
				      rec, signer, err);
	if (rc == CF_OK && version != 0 && (*rec)->version != version)
		rc = cf_error_set(err, CF_ERR_ROLLBACK, "asked for version %llu "
			"of \"%s\", the envelope holds version %llu", version,
			name, (unsigned long long)(*rec)->version);
	if (rc == CF_OK && version == 0 &&
	    (*rec)->version != (unsigned long long)cli_json_int(resp, "version"))
		rc = cf_error_set(err, CF_ERR_ROLLBACK, "the server said version "
			"%lld of \"%s\" but the envelope holds version %llu",
			cli_json_int(resp, "version"), name,
			(unsigned long long)(*rec)->version);
	if (rc != CF_OK) {
		cf_record_free(*rec);
		*rec = NULL;
	}
	OPENSSL_free(der);
	json_decref(resp);
	return rc;
}

int cmd_get(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "version", required_argument, NULL, 'v' },
		{ "out", required_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const char *out = NULL, *name;
	unsigned long long version = 0;
	cf_record *rec = NULL;
	X509 *signer = NULL;
	char *qname = NULL;
	cf_error err = { 0 };
	cf_status rc;
	int ch, verbose = 0;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'v':
			if (cli_parse_uint("get", "--version", optarg, VERSION_MAX,
					   &version))
				return 2;
			break;
		case 'o': out = optarg; break;
		case 'V': verbose = 1; break;
		case 'h': get_usage(stdout); return 0;
		default: return cli_bad_option("get");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("get", "give exactly one secret NAME");
	name = argv[optind];
	if (cf_name_check("secret name", name, &err) != CF_OK) {
		err.code = CF_ERR_USAGE;
		return cli_fail(&err);
	}
	qname = cli_client_escape(name);
	if (qname == NULL)
		return 1;
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c, &err);
	if (rc == CF_OK)
		rc = fetch_own(c, name, qname, version, &rec, &signer, &err);
	if (rc == CF_OK)
		rc = cli_plaintext_write(out, rec, &err);
	if (rc == CF_OK && verbose)
		cli_opened_report(rec, signer);
	cf_record_free(rec);
	X509_free(signer);
	free(qname);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

/* ------------------------------------------------------ ls, history, rm */

static void ls_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer ls [PREFIX] [--json] [connection options]\n"
		"       coffer history NAME [--json] [connection options]\n"
		"       coffer rm NAME [connection options]\n"
		"\n"
		"ls       the secrets (latest versions) whose names start with PREFIX\n"
		"         that your secret.read or secret.write rules cover\n"
		"history  every version of NAME, deletions included\n"
		"rm       deletes NAME: stores a tombstone version; agents remove it\n"
		"\n%s", cli_settings_help);
}

/*
 * Shared by ls, history and rm: options, then one request.  Returns the
 * exit code; 0 with *resp NULL after --help.
 */
static int simple_call(const char *cmd, int argc, char **argv, int need_arg,
		       const char *method, const char *base, json_t **resp,
		       const char **arg, int *as_json)
{
	cli_settings set = { 0 };
	cli_client *c = NULL;
	char *q = NULL, path[1100];
	cf_error err = { 0 };
	cf_status rc;
	int code;

	*resp = NULL;
	*arg = NULL;
	code = cli_settings_parse(cmd, argc, argv, ls_usage, &set, as_json);
	if (code >= 0)
		return code;
	if (argc - optind > 1 || (need_arg && argc - optind != 1))
		return cli_usage(cmd, need_arg ? "give exactly one secret NAME" :
				 "give at most one PREFIX");
	*arg = optind < argc ? argv[optind] : "";
	if (need_arg && cf_name_check("secret name", *arg, &err) != CF_OK) {
		err.code = CF_ERR_USAGE;
		return cli_fail(&err);
	}
	q = cli_client_escape(*arg);
	if (q == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s%s", base, q);
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY, &c, &err);
	if (rc == CF_OK)
		rc = cli_client_call(c, method, path, NULL, resp, &err);
	free(q);
	cli_client_free(c);
	if (rc != CF_OK) {
		json_decref(*resp);
		*resp = NULL;
		return cli_fail(&err);
	}
	return 0;
}

int cmd_ls(int argc, char **argv)
{
	json_t *resp = NULL, *s;
	const char *prefix;
	int as_json = 0, code;
	size_t i;

	code = simple_call("ls", argc, argv, 0, "GET", "/v1/secrets?prefix=",
			   &resp, &prefix, &as_json);
	if (code != 0 || resp == NULL)
		return code;  /* a refusal, or --help */
	if (as_json) {
		cli_json_print(resp);
	} else {
		printf("%-40s  %7s  %10s  %8s  %-20s\n", "NAME", "VERSION",
		       "RECIPIENTS", "BYTES", "CREATED");
		json_array_foreach(json_object_get(resp, "secrets"), i, s) {
			char when[32], pname[CF_NAME_MAX_BYTES + 1];

			cli_unix_iso(cli_json_int(s, "created"), when, sizeof(when));
			printf("%-40s  %7lld  %10lld  %8lld  %-20s\n",
			       cli_printable(cli_json_str(s, "name"), pname,
					     sizeof(pname)), cli_json_int(s, "version"),
			       cli_json_int(s, "recipients"), cli_json_int(s, "bytes"),
			       when);
		}
	}
	json_decref(resp);
	return 0;
}

int cmd_history(int argc, char **argv)
{
	json_t *resp = NULL, *v;
	const char *name;
	int as_json = 0, code;
	size_t i;

	code = simple_call("history", argc, argv, 1, "GET",
			   "/v1/secrets/history?name=", &resp, &name, &as_json);
	if (code != 0 || resp == NULL)
		return code;  /* a refusal, or --help */
	if (as_json) {
		cli_json_print(resp);
	} else {
		printf("%7s  %-20s  %10s  %8s  %-8s  %s\n", "VERSION", "CREATED",
		       "RECIPIENTS", "BYTES", "DELETED", "WRITER");
		json_array_foreach(json_object_get(resp, "versions"), i, v) {
			char when[32], writer[CF_CN_MAX_BYTES + 72];

			cli_unix_iso(cli_json_int(v, "created"), when, sizeof(when));
			printf("%7lld  %-20s  %10lld  %8lld  %-8s  %s\n",
			       cli_json_int(v, "version"), when,
			       cli_json_int(v, "recipients"), cli_json_int(v, "bytes"),
			       json_is_true(json_object_get(v, "deleted")) ? "yes" : "no",
			       cli_printable(cli_json_str(v, "writer"), writer,
					     sizeof(writer)));
		}
	}
	json_decref(resp);
	return 0;
}

int cmd_rm(int argc, char **argv)
{
	json_t *resp = NULL;
	const char *name;
	int as_json = 0, code;

	code = simple_call("rm", argc, argv, 1, "DELETE", "/v1/secrets?name=",
			   &resp, &name, &as_json);
	if (code != 0 || resp == NULL)
		return code;  /* a refusal, or --help */
	if (as_json)
		cli_json_print(resp);
	else
		printf("deleted \"%s\" (tombstone version %lld)\n", name,
		       cli_json_int(resp, "version"));
	json_decref(resp);
	return 0;
}

/* --------------------------------------------------------------- rotate */

static void rotate_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer rotate NAME... | --all [--without FP]... [--generate LEN]\n"
		"                     [--to SPEC]... [--json] [connection options]\n"
		"\n"
		"Removal that is real: re-encrypting a value does not take it away\n"
		"from someone who already read it, so each NAME gets a new version,\n"
		"sealed to the targets its latest version was written to (signed in\n"
		"that record: the server cannot widen them), resolved again and\n"
		"verified against your root and the CRL (revoked ones are left\n"
		"out, with a note), minus every --without FP and every fingerprint\n"
		"an earlier rotation left out.  The new record keeps both lists, so\n"
		"`coffer sync` never adds a left-out machine back.  Then the server\n"
		"deletes every envelope it holds of NAME for each FP left out.\n"
		"Needs secret.write on each NAME.\n"
		"\n"
		"  --generate LEN  the new value: LEN random characters of A-Z a-z 0-9\n"
		"                  (RAND_bytes); without it, the value of your own copy\n"
		"                  of the latest version (a new version, same value:\n"
		"                  change the value yourself when it was exposed)\n"
		"  --without FP    a certificate fingerprint to leave out; repeatable\n"
		"  --to SPEC       the targets instead of the latest version's\n"
		"                  (agent:NAME, group:G, cluster:C, fp:FP; repeatable):\n"
		"                  needed for\n"
		"                  a version written before targets were recorded\n"
		"  --all           every secret you hold secret.write on\n"
		"\n%s", cli_settings_help);
}

#define GENERATE_MAX 4096

/* len random characters of [A-Za-z0-9], unbiased (rejection sampling). */
static cf_status generate_value(size_t len, cf_secret **out, cf_error *err)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	cf_secret *v = cf_secret_new(len);
	unsigned char *p, buf[64];
	size_t have = 0;

	*out = NULL;
	if (v == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	p = cf_secret_data(v);
	while (have < len) {
		if (RAND_bytes(buf, sizeof(buf)) != 1) {
			cf_secret_free(v);
			OPENSSL_cleanse(buf, sizeof(buf));
			return cf_error_set_ssl(err, CF_ERR_CRYPTO,
				"could not draw random bytes");
		}
		/* 248 = 4 * 62: bytes at or above it would bias the choice. */
		for (size_t i = 0; i < sizeof(buf) && have < len; i++)
			if (buf[i] < 248)
				p[have++] = (unsigned char)alphabet[buf[i] % 62];
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	cf_secret_set_len(v, len, NULL);
	*out = v;
	return CF_OK;
}

static int is_without(const char *const *without, size_t n, const char *fp)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(without[i], fp) == 0)
			return 1;
	return 0;
}

/* What one rotation leaves out: --without and the record's own list. */
struct leave_out {
	const char **fp;
	size_t n, cap;
};

static int leave_out_add(struct leave_out *l, const char *fp)
{
	if (is_without(l->fp, l->n, fp))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		const char **grown = realloc(l->fp, cap * sizeof(*grown));

		if (grown == NULL)
			return -1;
		l->fp = grown;
		l->cap = cap;
	}
	l->fp[l->n++] = fp;
	return 0;
}

/*
 * The recipients of the new version: the writer, then every certificate
 * the targets resolve to that verifies (revoked ones are left out with a
 * note and purged with the rest), minus the left-out fingerprints.
 */
static cf_status rotate_recipients(cli_client *c, const char *name,
				   char *const *targets, size_t n_targets,
				   struct leave_out *out, cli_rcpts *r,
				   size_t *left, cf_error *err)
{
	cli_rcpts all = { 0 };
	cf_status rc = cli_rcpts_add(r, cli_client_cert(c), cli_client_chain(c),
				     cli_client_fp(c), err);

	for (size_t i = 0; rc == CF_OK && i < n_targets; i++) {
		cf_error why = { 0 };
		cf_status one = cli_resolve(c, targets[i], &all, &why);

		if (one == CF_ERR_REVOKED || one == CF_ERR_UNTRUSTED ||
		    one == CF_ERR_NOT_FOUND) {
			fprintf(stderr, "coffer: %s: leaving out %s: %s\n", name,
				targets[i], why.msg);
			(*left)++;
		} else if (one != CF_OK) {
			*err = why;
			rc = one;
		}
	}
	for (size_t i = 0; rc == CF_OK && i < all.n; i++) {
		if (is_without(out->fp, out->n, all.v[i].fp)) {
			(*left)++;
			continue;
		}
		if (!cli_rcpts_have(r, all.v[i].fp))
			rc = cli_rcpts_add(r, all.v[i].cert, all.v[i].chain,
					   all.v[i].fp, err);
	}
	cli_rcpts_free(&all);
	return rc;
}

static cf_status rotate_one(cli_client *c, const char *name,
			    const char *const *without, size_t n_without,
			    const char **to, size_t n_to, size_t generate,
			    json_t *report, cf_error *err)
{
	char *qname = cli_client_escape(name), path[1200];
	cf_record *own = NULL, rec = { 0 };
	X509 *signer = NULL;
	cli_rcpts r = { 0 };
	struct leave_out out = { 0 };
	json_t *resp = NULL, *purged = json_array();
	unsigned long long latest = 0;
	size_t bytes = 0, left = 0;
	cf_status rc;

	if (qname == NULL || purged == NULL) {
		free(qname);
		json_decref(purged);
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	}
	/* Your own copy: its value, and the targets signed with it. */
	rc = fetch_own(c, name, qname, 0, &own, &signer, err);
	if (rc != CF_OK && generate > 0 && n_to > 0)
		rc = CF_OK;     /* no copy needed: new value, targets given */
	else if (rc == CF_ERR_NOT_FOUND)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "%s: you hold no copy "
			"of its latest version; rotate it with --generate and "
			"--to, or put a new value", name);
	if (rc == CF_OK && n_to == 0 && (own == NULL || own->n_targets == 0))
		rc = cf_error_set(err, CF_ERR_USAGE, "%s: its latest version "
			"records no targets (written before coffer recorded "
			"them); give them with --to", name);
	for (size_t i = 0; rc == CF_OK && i < n_without; i++)
		if (leave_out_add(&out, without[i]) != 0)
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	for (size_t i = 0; rc == CF_OK && own != NULL && i < own->n_without; i++)
		if (leave_out_add(&out, own->without[i]) != 0)
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (rc == CF_OK && is_without(out.fp, out.n, cli_client_fp(c)))
		rc = cf_error_set(err, CF_ERR_USAGE, "%s: your own certificate "
				  "is left out; the writer always keeps a copy",
				  name);
	if (rc == CF_OK) {
		rec.targets = n_to > 0 ? (char **)to : own->targets;
		rec.n_targets = n_to > 0 ? n_to : own->n_targets;
		rec.without = (char **)out.fp;
		rec.n_without = out.n;
		rc = rotate_recipients(c, name, rec.targets, rec.n_targets, &out,
				       &r, &left, err);
	}
	if (rc == CF_OK && generate > 0) {
		rec.type = CF_TYPE_TEXT;
		rc = generate_value(generate, &rec.value, err);
	} else if (rc == CF_OK) {
		rec.type = own->type;
		rec.value = own->value;
		own->value = NULL;
	}
	if (rc == CF_OK)
		rc = latest_version(c, qname, &latest, err);
	snprintf(rec.tenant, sizeof(rec.tenant), "%s", cli_client_tenant(c));
	snprintf(rec.name, sizeof(rec.name), "%s", name);
	for (int attempt = 0; rc == CF_OK && attempt < 2; attempt++) {
		rec.version = latest + 1;
		json_decref(resp);
		resp = NULL;
		rc = upload_version(c, qname, &rec, &r, &bytes, &resp, err);
		if (rc != CF_ERR_CONFLICT || attempt == 1)
			break;
		rc = latest_version(c, qname, &latest, err);
	}
	/* The new value is stored: now what the left-out hold of NAME goes. */
	for (size_t i = 0; rc == CF_OK && i < out.n; i++) {
		json_decref(resp);
		resp = NULL;
		snprintf(path, sizeof(path),
			 "/v1/secrets/envelopes?recipient=%s&name=%s", out.fp[i],
			 qname);
		rc = cli_client_call(c, "DELETE", path, NULL, &resp, err);
		if (rc == CF_OK && cli_json_int(resp, "removed") > 0)
			json_array_append_new(purged, json_pack("{s:s,s:I}",
				"recipient", out.fp[i], "removed",
				(json_int_t)cli_json_int(resp, "removed")));
	}
	if (rc == CF_OK)
		json_array_append_new(report, json_pack("{s:s,s:I,s:I,s:I,s:b,s:O}",
			"name", name, "version", (json_int_t)rec.version,
			"recipients", (json_int_t)r.n, "left_out",
			(json_int_t)left, "generated", generate > 0,
			"purged", purged));
	json_decref(resp);
	json_decref(purged);
	cf_secret_free(rec.value);   /* own's moved here, or a generated one */
	cf_record_free(own);
	X509_free(signer);
	cli_rcpts_free(&r);
	free(out.fp);
	free(qname);
	return rc;
}

/* Every secret the caller may write, from the server's list. */
static cf_status writable_names(cli_client *c, json_t **names, cf_error *err)
{
	struct cf_perms *perms = NULL;
	json_t *resp = NULL, *e;
	size_t i;
	cf_status rc = cf_cert_perms(cli_client_cert(c), &perms, err);

	*names = json_array();
	if (rc == CF_OK && *names == NULL)
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (rc == CF_OK)
		rc = cli_client_call(c, "GET", "/v1/secrets", NULL, &resp, err);
	json_array_foreach(json_object_get(resp, "secrets"), i, e) {
		const char *name = cli_json_str(e, "name");

		if (rc == CF_OK && cf_perms_allows(perms, "secret.write", name))
			json_array_append_new(*names, json_string(name));
	}
	cf_perms_free(perms);
	json_decref(resp);
	return rc;
}

int cmd_rotate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "without", required_argument, NULL, 'w' },
		{ "generate", required_argument, NULL, 'g' },
		{ "to", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const char **without = NULL, **to = NULL;
	size_t n_without = 0, n_to = 0, n_names;
	unsigned long long generate = 0;
	json_t *names = NULL, *report = json_array();
	cf_error err = { 0 }, first = { 0 };
	cf_status rc = CF_OK;
	int ch, all = 0, as_json = 0, code = 0;

	without = OPENSSL_zalloc(sizeof(*without) * (size_t)argc);
	to = OPENSSL_zalloc(sizeof(*to) * (size_t)argc);
	if (without == NULL || to == NULL || report == NULL) {
		code = 1;
		goto done;
	}
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'a': all = 1; break;
		case 'w':
			if (strlen(optarg) != 64 ||
			    strspn(optarg, "0123456789abcdef") != 64) {
				code = cli_usage("rotate", "--without takes a "
					"certificate fingerprint: 64 lower-case "
					"hex characters (coffer cert show)");
				goto done;
			}
			without[n_without++] = optarg;
			break;
		case 't':
			if (cf_record_target_check(optarg, &err) != CF_OK) {
				code = cli_usage("rotate", "%s", err.msg);
				goto done;
			}
			to[n_to++] = optarg;
			break;
		case 'g':
			if (cli_parse_uint("rotate", "--generate", optarg,
					   GENERATE_MAX, &generate)) {
				code = 2;
				goto done;
			}
			break;
		case 'j': as_json = 1; break;
		case 'h': rotate_usage(stdout); goto done;
		default: code = cli_bad_option("rotate"); goto done;
		}
	}
	if (all == (optind < argc)) {
		code = cli_usage("rotate", "give the secret NAMEs or --all (not "
				 "both)");
		goto done;
	}
	for (int i = optind; i < argc; i++)
		if (cf_name_check("secret name", argv[i], &err) != CF_OK) {
			err.code = CF_ERR_USAGE;
			code = cli_fail(&err);
			goto done;
		}
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c,
				&err);
	if (rc == CF_OK && is_without(without, n_without, cli_client_fp(c)))
		rc = cf_error_set(&err, CF_ERR_USAGE, "--without names your own "
				  "certificate; the writer always keeps a copy");
	if (rc == CF_OK && all) {
		rc = writable_names(c, &names, &err);
	} else if (rc == CF_OK) {
		names = json_array();
		for (int i = optind; names != NULL && i < argc; i++)
			json_array_append_new(names, json_string(argv[i]));
	}
	if (rc != CF_OK)
		goto fail;
	cli_client_set_timeout(c, 600);
	n_names = json_array_size(names);
	for (size_t i = 0; i < n_names; i++) {
		const char *name = json_string_value(json_array_get(names, i));
		json_t *last;

		err = (cf_error){ 0 };
		rc = rotate_one(c, name, without, n_without, to, n_to,
				(size_t)generate, report, &err);
		if (rc != CF_OK) {
			fprintf(stderr, "coffer: %s not rotated: %s\n", name,
				err.msg);
			if (first.code == CF_OK)
				first = err;
			continue;
		}
		last = json_array_get(report, json_array_size(report) - 1);
		if (!as_json) {
			json_t *p;
			size_t k;

			printf("rotated %s: version %lld for %lld recipient(s)%s\n",
			       name, cli_json_int(last, "version"),
			       cli_json_int(last, "recipients"),
			       cli_json_int(last, "left_out") > 0 ?
			       ", some left out" : "");
			json_array_foreach(json_object_get(last, "purged"), k, p)
				printf("removed %lld envelope(s) of %s for "
				       "%.16s... from the server\n",
				       cli_json_int(p, "removed"), name,
				       cli_json_str(p, "recipient"));
		}
		cli_progress("rotating", i + 1, n_names);
	}
	if (as_json) {
		json_t *doc = json_pack("{s:O}", "rotated", report);

		cli_json_print(doc);
		json_decref(doc);
	}
	if (first.code != CF_OK) {
		err = first;
		goto fail;
	}
	goto done;
fail:
	code = cli_fail(&err);
done:
	json_decref(names);
	json_decref(report);
	cli_client_free(c);
	OPENSSL_free(without);
	OPENSSL_free(to);
	return code;
}

/* ------------------------------------------------ for other commands */

cf_status cli_fetch_own(cli_client *c, const char *name,
			unsigned long long version, cf_record **rec,
			X509 **signer, cf_error *err)
{
	char *qname = cli_client_escape(name);
	cf_status rc;

	*rec = NULL;
	if (signer != NULL)
		*signer = NULL;
	if (qname == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = fetch_own(c, name, qname, version, rec, signer, err);
	free(qname);
	return rc;
}

cf_status cli_write_version(cli_client *c, cf_record *rec, const cli_rcpts *r,
			    unsigned long long latest, int ask,
			    size_t *bytes, cf_error *err)
{
	char *qname = cli_client_escape(rec->name);
	json_t *resp = NULL, *l;
	cf_status rc = CF_OK;

	if (qname == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	/* An agent's client knows no tenant: the agent sets it. */
	if (rec->tenant[0] == '\0')
		snprintf(rec->tenant, sizeof(rec->tenant), "%s",
			 cli_client_tenant(c));
	if (ask)
		rc = latest_version(c, qname, &latest, err);
	/* Another writer may store a version in between: retry once above it. */
	for (int attempt = 0; rc == CF_OK && attempt < 2; attempt++) {
		if (latest >= VERSION_MAX) {
			rc = cf_error_set(err, CF_ERR_CONFLICT, "\"%s\" has reached "
					  "the highest version", rec->name);
			break;
		}
		rec->version = latest + 1;
		json_decref(resp);
		resp = NULL;
		rc = upload_version(c, qname, rec, r, bytes, &resp, err);
		if (rc != CF_ERR_CONFLICT || attempt == 1)
			break;
		l = json_object_get(resp, "latest");
		if (json_is_integer(l) &&
		    (unsigned long long)json_integer_value(l) >= rec->version) {
			latest = (unsigned long long)json_integer_value(l);
			cf_error_clear(err);
			rc = CF_OK;
		} else if (ask) {
			cf_error_clear(err);
			rc = latest_version(c, qname, &latest, err);
		}
	}
	json_decref(resp);
	free(qname);
	return rc;
}
