/*
 * status.c - `coffer status`: the rollout of secrets to agents (docs/
 * CLIENT.md "Rollout status", docs/API.md GET /v1/status).
 *
 * Per secret: its latest version, and for each agent it was sealed to
 * whether the agent applied it (its acknowledgement says ok for that
 * version or a later one), is behind (an older version), failed (and
 * the reason it gave), has not acknowledged anything yet, or sent an
 * acknowledgement that does not verify; then the envelopes still stored
 * for revoked certificates, or acknowledged by one as its current value
 * ("exposed": rotate those secrets).
 *
 * Invariant: the server is not trusted with the answer.  Every
 * acknowledgement is verified here against COFFER_ROOT and the CRL
 * (cf_ack_verify: signature, chain, an agent's certificate, this tenant)
 * and must be signed by the very recipient it is listed for, of this
 * secret; the counts come from what verified, never from the server's
 * plain fields.  An ack that does not verify is shown as "unverified"
 * and counts as not applied.  (What the server says about revocation,
 * "exposed", is shown as it says: a server that hid an exposure could
 * as well have kept the envelopes.)
 *
 * Exit: 0 when every agent applied the latest version of every secret
 * shown and nothing is exposed; 32 (CF_ERR_STALE) otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ack.h"
#include "cli.h"
#include "client.h"

enum { OPT_PREFIX = 0x2000, OPT_GROUP, OPT_JSON, OPT_PAGE };

/* Recipients asked for per page of one secret (GET /v1/status?name=):
 * the default, and the server's most. */
#define STATUS_PAGE 1000
#define STATUS_PAGE_MAX 2000

static unsigned long long page_size = STATUS_PAGE;

static void status_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer status [NAME | --prefix P | --group G] [--json]\n"
		"\n"
		"Shows, per secret, the latest version and which agents applied it,\n"
		"which are behind, which failed (with the reason the agent gave),\n"
		"which have acknowledged nothing yet, and the envelopes still stored\n"
		"for revoked certificates (\"exposed\": rotate those secrets with\n"
		"`coffer rotate NAME`).  Every acknowledgement is verified against\n"
		"COFFER_ROOT and the CRL and must be signed by the agent it speaks\n"
		"for; one that does not verify is shown as unverified and counts as\n"
		"not applied.  Needs secret.read or secret.write on the names.\n"
		"\n"
		"  NAME          one secret\n"
		"  --prefix P    the secrets whose names start with P (default: all)\n"
		"  --group G     the secrets sealed to agents of group G, and only\n"
		"                those agents\n"
		"  --json        one JSON document (docs/CLIENT.md) instead of text\n"
		"  --page N      recipients asked for per request when a secret has\n"
		"                many (default %d, at most %d): the server answers\n"
		"                a large fleet in pages, read one after the other\n"
		"\n"
		"Exit 0 when every agent applied the latest versions and nothing is\n"
		"exposed, 32 otherwise.\n"
		"\n%s", STATUS_PAGE, STATUS_PAGE_MAX, cli_settings_help);
}

/* One agent's place in a secret's rollout. */
enum state { S_APPLIED, S_BEHIND, S_FAILED, S_NO_ACK, S_UNVERIFIED,
	     S_REVOKED, S_COUNT };

static const char *const state_names[S_COUNT] = {
	"applied", "behind", "failed", "no_ack", "unverified", "revoked",
};

static const char *const state_titles[S_COUNT] = {
	"applied", "behind", "failed", "no ack yet", "unverified", "revoked",
};

/*
 * Classifies one recipient of version latest of name: its ack verified
 * here, or why not.  *entry receives the JSON of the agent in its list.
 */
static enum state classify(const json_t *rcp, const char *name,
			   int64_t latest, const cf_trust *trust,
			   json_t **entry)
{
	const json_t *ack = json_object_get(rcp, "ack");
	const char *fp = cli_json_str(rcp, "fp");
	unsigned char *der = NULL;
	size_t len = 0;
	cf_ack a;
	char signer[65];
	cf_error err = { 0 };
	enum state st;

	*entry = json_pack("{s:s,s:s}", "fp", fp, "name",
			   cli_json_str(rcp, "name"));
	if (*entry == NULL)
		return S_NO_ACK;
	if (json_is_true(json_object_get(rcp, "revoked")))
		return S_REVOKED;
	if (!json_is_object(ack))
		return S_NO_ACK;
	if (cli_b64_decode(cli_json_str(ack, "signed"), "an acknowledgement",
			   &der, &len, &err) != CF_OK ||
	    cf_ack_verify(der, len, trust, &a, signer, &err) != CF_OK) {
		st = S_UNVERIFIED;
	} else if (strcmp(signer, fp) != 0) {
		cf_error_set(&err, CF_ERR_NAME, "signed by another agent "
			     "(%.16s...), not by this recipient", signer);
		st = S_UNVERIFIED;
	} else if (strcmp(a.name, name) != 0) {
		cf_error_set(&err, CF_ERR_NAME, "it acknowledges %s, not %s",
			     a.name, name);
		st = S_UNVERIFIED;
	} else if (a.version < latest) {
		st = S_BEHIND;
	} else {
		st = a.result == CF_ACK_OK ? S_APPLIED : S_FAILED;
	}
	OPENSSL_free(der);
	if (st == S_UNVERIFIED) {
		json_object_set_new(*entry, "reason", json_string(err.msg));
		return st;
	}
	/* A cluster member is known by its acknowledgement only. */
	if (cli_json_str(rcp, "name")[0] == '\0')
		json_object_set_new(*entry, "name", json_string(a.agent));
	json_object_set_new(*entry, "version", json_integer(a.version));
	json_object_set_new(*entry, "time", json_integer(a.time));
	json_object_set_new(*entry, "result", json_string(
				    cf_ack_result_name(a.result)));
	if (a.result == CF_ACK_FAILED)
		json_object_set_new(*entry, "reason", json_string(a.reason));
	return st;
}

/*
 * The exposures, one entry per certificate and way ("envelope": still
 * stored for it; "ack": it acknowledged the current version) with the
 * versions.
 */
static json_t *exposed_by_cert(const json_t *list)
{
	json_t *out = json_array(), *v, *prev = NULL;
	size_t i;

	json_array_foreach(list, i, v) {
		const char *fp = cli_json_str(v, "fp");
		const char *via = cli_json_str(v, "via");

		if (prev == NULL || strcmp(cli_json_str(prev, "fp"), fp) != 0 ||
		    strcmp(cli_json_str(prev, "via"), via) != 0) {
			prev = json_pack("{s:s,s:s,s:s,s:s,s:[]}", "fp", fp,
					 "name", cli_json_str(v, "name"), "kind",
					 cli_json_str(v, "kind"), "via", via,
					 "versions");
			if (prev == NULL || json_array_append_new(out, prev) != 0)
				break;
		}
		json_array_append_new(json_object_get(prev, "versions"),
				      json_integer(cli_json_int(v, "version")));
	}
	return out;
}

/* One secret's lists while its pages come in (secret_doc). */
struct sdoc {
	const char *name;
	int64_t latest;
	json_t *lists[S_COUNT];
};

/* Classifies one page of a secret's entries: its agent recipients (the
 * writer's own envelope and other non-agents have no acks) and the
 * members of a cluster it was sealed to, those that acknowledged. */
static void take_page(struct sdoc *d, const json_t *page,
		      const cf_trust *trust, int *clean)
{
	const char *parts[] = { "recipients", "cluster_acks" };
	json_t *rcp, *entry;
	size_t i;

	for (size_t p = 0; p < 2; p++)
		json_array_foreach(json_object_get(page, parts[p]), i, rcp) {
			enum state st;

			if (p == 0 &&
			    strcmp(cli_json_str(rcp, "kind"), "agent") != 0)
				continue;
			st = classify(rcp, d->name, d->latest, trust, &entry);
			if (entry != NULL)
				json_array_append_new(d->lists[st], entry);
			if (st != S_APPLIED)
				*clean = 0;
		}
}

/*
 * The next page of secret d->name, which the server cut after the
 * fingerprint after (recipients_more), of the same version.
 */
static cf_status next_page(cli_client *c, const struct sdoc *d,
			   const char *after, const char *group,
			   json_t **page, cf_error *err)
{
	char *q = cli_client_escape(d->name);
	char *g = group ? cli_client_escape(group) : NULL;
	char path[1400];
	json_t *resp = NULL, *p;
	cf_status rc;

	*page = NULL;
	if (q == NULL || (group != NULL && g == NULL)) {
		free(q);
		free(g);
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	}
	snprintf(path, sizeof(path), "/v1/status?name=%s%s%s&limit=%llu&after=%s",
		 q, g ? "&group=" : "", g ? g : "", page_size, after);
	free(q);
	free(g);
	rc = cli_client_call(c, "GET", path, NULL, &resp, err);
	p = json_array_get(json_object_get(resp, "secrets"), 0);
	if (rc == CF_OK && (p == NULL ||
			    strcmp(cli_json_str(p, "name"), d->name) != 0))
		rc = cf_error_set(err, CF_ERR_SERVER, "the server's next page of "
				  "%s is not about it", d->name);
	else if (rc == CF_OK && cli_json_int(p, "version") != d->latest)
		rc = cf_error_set(err, CF_ERR_CONFLICT, "%s got a new version "
				  "while its status was read; run coffer status "
				  "again", d->name);
	if (rc == CF_OK)
		*page = json_incref(p);
	json_decref(resp);
	return rc;
}

/*
 * Where the server cut a page (recipients_after) into after, checked:
 * a fingerprint beyond the previous cut.  0 when the page was not cut.
 */
static int page_cut(const json_t *page, char after[65], const char *name,
		    cf_status *rc, cf_error *err)
{
	const char *at = cli_json_str(page, "recipients_after");

	if (!json_is_true(json_object_get(page, "recipients_more")))
		return 0;
	if (strlen(at) != 64 || strspn(at, "0123456789abcdef") != 64 ||
	    strcmp(at, after) <= 0) {
		*rc = cf_error_set(err, CF_ERR_SERVER, "the server's pages of %s "
				   "do not move forward (next after \"%.80s\")",
				   name, at);
		return 0;
	}
	memcpy(after, at, 65);
	return 1;
}

/*
 * One secret of the answer as the command's JSON, its further pages
 * fetched and classified one at a time, each freed before the next is
 * asked for (a secret may have tens of thousands of recipients, each
 * with a 2 KB signed ack); s's own entries are taken out of it once
 * classified.  *clean: all applied.
 */
static cf_status secret_doc(cli_client *c, json_t *s, const char *group,
			    const cf_trust *trust, int *clean, json_t **out,
			    cf_error *err)
{
	struct sdoc d = { cli_json_str(s, "name"), cli_json_int(s, "version"),
			  { NULL } };
	json_t *doc, *counts, *page = NULL;
	char after[65] = "";
	cf_status rc = CF_OK;

	*out = NULL;
	doc = json_pack("{s:s,s:I}", "name", d.name, "version",
			(json_int_t)d.latest);
	counts = json_object();
	for (int k = 0; k < S_COUNT; k++)
		d.lists[k] = json_array();
	take_page(&d, s, trust, clean);
	if (page_cut(s, after, d.name, &rc, err)) {
		do {
			json_decref(page);
			page = NULL;
			rc = next_page(c, &d, after, group, &page, err);
			if (rc == CF_OK)
				take_page(&d, page, trust, clean);
		} while (rc == CF_OK && page_cut(page, after, d.name, &rc, err));
	}
	json_decref(page);
	json_object_del(s, "recipients");
	json_object_del(s, "cluster_acks");
	for (int k = 0; k < S_COUNT; k++) {
		json_object_set_new(counts, state_names[k],
				    json_integer((json_int_t)json_array_size(
						 d.lists[k])));
		json_object_set_new(doc, state_names[k], d.lists[k]);
	}
	json_object_set_new(doc, "exposed",
			    exposed_by_cert(json_object_get(s, "exposed")));
	json_object_set_new(counts, "exposed", json_integer((json_int_t)
		json_array_size(json_object_get(doc, "exposed"))));
	if (json_array_size(json_object_get(doc, "exposed")) > 0)
		*clean = 0;
	json_object_set_new(doc, "counts", counts);
	if (rc != CF_OK) {
		json_decref(doc);
		return rc;
	}
	if (doc == NULL || counts == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	*out = doc;
	return CF_OK;
}

static void print_agents(const json_t *doc, int k)
{
	const json_t *list = json_object_get(doc, state_names[k]), *a;
	char name[CF_CN_MAX_BYTES + 1], reason[CF_ACK_REASON_MAX + 1];
	char when[32];
	size_t i;

	if (json_array_size(list) == 0)
		return;
	printf("  %s:\n", state_titles[k]);
	json_array_foreach(list, i, a) {
		char pfp[80];

		printf("    %-24s %.16s", cli_printable(cli_json_str(a, "name"),
		       name, sizeof(name)), cli_printable(cli_json_str(a, "fp"),
		       pfp, sizeof(pfp)));
		if (json_object_get(a, "version") != NULL) {
			cli_unix_iso(cli_json_int(a, "time"), when, sizeof(when));
			printf("  v%lld %s at %s", cli_json_int(a, "version"),
			       cli_json_str(a, "result"), when);
		}
		if (json_object_get(a, "reason") != NULL)
			printf(": %s", cli_printable(cli_json_str(a, "reason"),
			       reason, sizeof(reason)));
		printf("\n");
	}
}

static void print_doc(const json_t *doc)
{
	const json_t *counts = json_object_get(doc, "counts"), *x, *v;
	char pname[CF_NAME_MAX_BYTES + 1], cn[CF_NAME_MAX_BYTES + 1];
	size_t i, j;

	printf("%s  v%lld: %lld applied, %lld behind, %lld failed, %lld no ack "
	       "yet", cli_printable(cli_json_str(doc, "name"), pname,
				   sizeof(pname)),
	       cli_json_int(doc, "version"), cli_json_int(counts, "applied"),
	       cli_json_int(counts, "behind"), cli_json_int(counts, "failed"),
	       cli_json_int(counts, "no_ack"));
	if (cli_json_int(counts, "unverified") > 0)
		printf(", %lld unverified", cli_json_int(counts, "unverified"));
	if (cli_json_int(counts, "revoked") > 0)
		printf(", %lld revoked", cli_json_int(counts, "revoked"));
	printf("\n");
	for (int k = 0; k < S_COUNT; k++)
		print_agents(doc, k);
	json_array_foreach(json_object_get(doc, "exposed"), i, x) {
		char pkind[32], pfp[80];

		printf("  EXPOSED: %s \"%s\" (%.16s...), revoked, %s",
		       cli_printable(cli_json_str(x, "kind"), pkind,
				     sizeof(pkind)),
		       cli_printable(cli_json_str(x, "name"), cn, sizeof(cn)),
		       cli_printable(cli_json_str(x, "fp"), pfp, sizeof(pfp)),
		       strcmp(cli_json_str(x, "via"), "ack") == 0 ?
		       "acknowledged the current value, version" :
		       strcmp(cli_json_str(x, "via"), "purged") == 0 ?
		       "held the current value until its envelopes were "
		       "deleted, version" :
		       "still has envelopes of version");
		json_array_foreach(json_object_get(x, "versions"), j, v)
			printf("%s %lld", j ? "," : "", (long long)
			       json_integer_value(v));
		printf("\n");
	}
	if (json_array_size(json_object_get(doc, "exposed")) > 0)
		printf("  -> it may have read them: run `coffer rotate %s` for a "
		       "new value without it\n", pname);
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_SETTINGS_OPTIONS,
		{ "prefix", required_argument, NULL, OPT_PREFIX },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "page", required_argument, NULL, OPT_PAGE },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const cf_trust *trust = NULL;
	const char *name = NULL, *prefix = NULL, *group = NULL, *key, *value;
	json_t *resp = NULL, *out = NULL, *s;
	char *q = NULL, path[1100];
	cf_error err = { 0 };
	int as_json = 0, clean = 1, ch, code;
	size_t i, shown = 0;
	cf_status rc;

	/*
	 * Nothing here is secret, and a large fleet's acknowledgements would
	 * not fit OpenSSL's secure heap, where coffer's JSON goes otherwise
	 * (secmem.c): this command's JSON lives in the ordinary heap.  Set
	 * before any JSON exists, so every value is freed as it was made.
	 */
	json_set_alloc_funcs(malloc, free);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case OPT_PREFIX: prefix = optarg; break;
		case OPT_GROUP: group = optarg; break;
		case OPT_JSON: as_json = 1; break;
		case OPT_PAGE:
			if (cli_parse_uint("status", "--page", optarg,
					   STATUS_PAGE_MAX, &page_size) != 0)
				return 2;
			break;
		case 'h': status_usage(stdout); return 0;
		default: return cli_bad_option("status");
		}
	}
	if (argc - optind > 1)
		return cli_usage("status", "give at most one secret NAME");
	if (optind < argc)
		name = argv[optind];
	if ((name != NULL) + (prefix != NULL) + (group != NULL) > 1)
		return cli_usage("status", "give one of NAME, --prefix and "
				 "--group, or none of them (every secret)");
	if ((name != NULL && cf_name_check("secret name", name, &err) != CF_OK) ||
	    (group != NULL && cf_name_check("group", group, &err) != CF_OK)) {
		err.code = CF_ERR_USAGE;
		return cli_fail(&err);
	}
	key = name ? "name" : group ? "group" : "prefix";
	value = name ? name : group ? group : prefix ? prefix : "";
	if ((q = cli_client_escape(value)) == NULL)
		return cli_fail(&(cf_error){ .code = CF_ERR_NOMEM,
					     .msg = "out of memory" });
	if (name != NULL)
		snprintf(path, sizeof(path), "/v1/status?name=%s&limit=%llu", q,
			 page_size);
	else
		snprintf(path, sizeof(path), "/v1/status?%s=%s", key, q);
	free(q);
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c,
				&err);
	if (rc == CF_OK)
		rc = cli_client_trust(c, &trust, &err);
	if (rc == CF_OK)
		rc = cli_client_call(c, "GET", path, NULL, &resp, &err);
	if (rc != CF_OK) {
		code = cli_fail(&err);
		goto out;
	}
	out = json_pack("{s:[],s:b}", "secrets", "more",
			json_is_true(json_object_get(resp, "more")));
	if (out == NULL) {
		code = cli_fail(&(cf_error){ .code = CF_ERR_NOMEM,
					     .msg = "out of memory" });
		goto out;
	}
	json_array_foreach(json_object_get(resp, "secrets"), i, s) {
		json_t *doc = NULL;

		rc = secret_doc(c, s, group, trust, &clean, &doc, &err);
		if (rc != CF_OK) {
			code = cli_fail(&err);
			goto out;
		}
		shown++;
		/* Text goes out secret by secret, and is not kept. */
		if (!as_json) {
			print_doc(doc);
			json_decref(doc);
			continue;
		}
		json_array_append_new(json_object_get(out, "secrets"), doc);
	}
	json_object_set_new(out, "ok", json_boolean(clean));
	if (as_json)
		cli_json_print(out);
	else if (shown == 0)
		printf("no secret matches (or none you may read)\n");
	else if (json_is_true(json_object_get(out, "more")))
		printf("(the server stopped after %zu secrets: narrow the query)\n",
		       shown);
	code = clean ? 0 : cli_exit_code(CF_ERR_STALE);
out:
	json_decref(out);
	json_decref(resp);
	cli_client_free(c);
	return code;
}
