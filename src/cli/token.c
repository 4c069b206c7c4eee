/*
 * token.c - `coffer token create|ls|revoke`: join tokens for enrolling
 * agents (docs/CLIENT.md, docs/API.md "Join tokens").
 *
 * The client makes every token: the server receives only its ID, the
 * SHA-256 of its SECRET, the constraints, and the SECRET sealed to the
 * creating enroller (cf_token_seal).  The token texts are printed only
 * after the server has accepted all of them; if a later batch fails, the
 * tokens already stored are revoked again, so no unprinted token stays
 * usable.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "policy.h"
#include "token.h"

#define TOKENS_MAX 10000
#define USES_MAX 1000000
/* Tokens are uploaded in POSTs of about this many bytes (body limit 2 MiB). */
#define BATCH_BYTES (1024u * 1024u)

static void token_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer token create --group G [--uses N] [--ttl DURATION]\n"
		"                           [--count K] [--json] [connection options]\n"
		"       coffer token ls [--json] [connection options]\n"
		"       coffer token revoke ID [connection options]\n"
		"\n"
		"create  makes K (default 1, at most %d) join tokens for group G,\n"
		"        each good for N enrollments (default 1) during DURATION\n"
		"        (30m, 24h, 7d; default 24h), and prints them one per line\n"
		"        as ID.SECRET.  The server never sees SECRET: it stores its\n"
		"        SHA-256 and the SECRET sealed to your certificate.  Needs\n"
		"        token.create on G and --root (the record's tenant).\n"
		"ls      lists the tokens of the groups you may create tokens for.\n"
		"revoke  makes a token unusable at once.\n"
		"\n%s", TOKENS_MAX, cli_settings_help);
}

struct batch {
	json_t *list;       /* the tokens of the next POST */
	size_t bytes;
};

/* POSTs the batch; the IDs stored so far are remembered in stored. */
static cf_status post_batch(cli_client *c, struct batch *b, json_t *stored,
			    cf_error *err)
{
	json_t *body, *resp = NULL;
	size_t i;
	json_t *t;
	cf_status rc;

	if (json_array_size(b->list) == 0)
		return CF_OK;
	body = json_pack("{s:O}", "tokens", b->list);
	if (body == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = cli_client_call(c, "POST", "/v1/tokens", body, &resp, err);
	if (rc == CF_OK)
		json_array_foreach(b->list, i, t)
			json_array_append(stored, json_object_get(t, "id"));
	json_decref(body);
	json_decref(resp);
	json_array_clear(b->list);
	b->bytes = 0;
	return rc;
}

/* Best effort: a failed create leaves no usable token behind. */
static void revoke_stored(cli_client *c, json_t *stored)
{
	size_t i;
	json_t *id;

	json_array_foreach(stored, i, id) {
		char path[128];
		json_t *resp = NULL;
		cf_error ignored = { 0 };

		snprintf(path, sizeof(path), "/v1/tokens/%s", json_string_value(id));
		if (cli_client_call(c, "DELETE", path, NULL, &resp, &ignored) != CF_OK)
			fprintf(stderr, "coffer: could not revoke token %s after the "
				"failure; revoke it with 'coffer token revoke %s'\n",
				json_string_value(id), json_string_value(id));
		json_decref(resp);
	}
}

static int token_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "uses", required_argument, NULL, 'u' },
		{ "ttl", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	const char *group = NULL, *ttl_text = "24h";
	unsigned long long uses = 1, count = 1;
	long long ttl = 0, expires;
	cli_client *c = NULL;
	cf_token **toks = NULL;
	struct batch b = { 0 };
	json_t *stored = NULL, *report = NULL;
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	int ch, as_json = 0, code = 0;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'g': group = optarg; break;
		case 'u':
			if (cli_parse_uint("token create", "--uses", optarg,
					   USES_MAX, &uses))
				return 2;
			break;
		case 't': ttl_text = optarg; break;
		case 'n':
			if (cli_parse_uint("token create", "--count", optarg,
					   TOKENS_MAX, &count))
				return 2;
			break;
		case 'j': as_json = 1; break;
		case 'h': token_usage(stdout); return 0;
		default: return cli_bad_option("token create");
		}
	}
	if (optind != argc)
		return cli_usage("token create", "unexpected argument \"%s\"",
				 argv[optind]);
	if (group == NULL)
		return cli_usage("token create", "--group is required");
	if (cli_parse_duration(ttl_text, &ttl) != 0)
		return cli_usage("token create", "--ttl must be a duration such "
				 "as 90s, 30m, 24h or 7d, not \"%s\"", ttl_text);
	if (cf_name_check("group name", group, &err) != CF_OK) {
		err.code = CF_ERR_USAGE;
		return cli_fail(&err);
	}
	/*
	 * Unbuffered before any output: the SECRETs then go straight to the
	 * descriptor and are never copied into stdio's (unwiped) heap buffer.
	 */
	setvbuf(stdout, NULL, _IONBF, 0);
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c, &err);
	if (rc != CF_OK)
		goto fail;
	toks = OPENSSL_zalloc(sizeof(*toks) * count);
	stored = json_array();
	b.list = json_array();
	if (toks == NULL || stored == NULL || b.list == NULL) {
		rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		goto fail;
	}
	expires = (long long)time(NULL) + ttl;
	for (size_t i = 0; i < count; i++) {
		unsigned char *der = NULL;
		size_t der_len = 0;
		char hash[65];
		json_t *t, *env;

		rc = cf_token_generate(&toks[i], &err);
		if (rc == CF_OK) {
			/* Sealed with the SECRET: what approve will sign into. */
			snprintf(toks[i]->group, sizeof(toks[i]->group), "%s", group);
			toks[i]->expires = (int64_t)expires;
			rc = cf_token_hash(toks[i]->secret, hash, &err);
		}
		if (rc == CF_OK)
			rc = cf_token_seal(toks[i], cli_client_tenant(c),
					   cli_client_cert(c), cli_client_key(c),
					   cli_client_chain(c), &der, &der_len, &err);
		if (rc != CF_OK)
			goto fail;
		env = cli_b64_json(der, der_len);
		OPENSSL_free(der);
		t = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o}", "id", toks[i]->id,
			      "hash", hash, "group", group, "uses", (json_int_t)uses,
			      "expires", (json_int_t)expires, "envelope", env);
		if (env == NULL || t == NULL || json_array_append_new(b.list, t) != 0) {
			rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
			goto fail;
		}
		b.bytes += der_len * 4 / 3 + 300;
		if (b.bytes >= BATCH_BYTES) {
			rc = post_batch(c, &b, stored, &err);
			if (rc != CF_OK)
				goto fail;
		}
		if (count >= 100 && isatty(STDERR_FILENO) &&
		    ((i + 1) % 100 == 0 || i + 1 == count))
			fprintf(stderr, "\rmade %zu/%llu tokens%s", i + 1, count,
				i + 1 == count ? "\n" : "");
	}
	rc = post_batch(c, &b, stored, &err);
	if (rc != CF_OK)
		goto fail;

	/* Only now, with every token stored, are the texts shown. */
	if (as_json) {
		json_t *list = json_array();

		report = json_pack("{s:s, s:I, s:I, s:o}", "group", group,
				   "uses", (json_int_t)uses, "expires",
				   (json_int_t)expires, "tokens", list);
		if (report == NULL) {
			rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
			goto fail;
		}
		/*
		 * All or nothing: a partial list would leave stored tokens
		 * nobody saw, so any failure revokes them all (at fail).
		 */
		for (size_t i = 0; i < count; i++) {
			cf_secret *text = NULL;
			json_t *one;

			rc = cf_token_text(toks[i], &text, &err);
			if (rc != CF_OK)
				goto fail;
			one = json_pack("{s:s, s:s%}", "id", toks[i]->id, "token",
					(const char *)cf_secret_cdata(text),
					cf_secret_len(text));
			cf_secret_free(text);
			if (one == NULL || json_array_append_new(list, one) != 0) {
				rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory "
						  "while listing the tokens, "
						  "which are revoked again");
				goto fail;
			}
		}
		cli_json_print(report);
	} else {
		for (size_t i = 0; i < count; i++) {
			fwrite(toks[i]->id, 1, strlen(toks[i]->id), stdout);
			fputc('.', stdout);
			fwrite(cf_secret_cdata(toks[i]->secret), 1,
			       cf_secret_len(toks[i]->secret), stdout);
			fputc('\n', stdout);
		}
		fflush(stdout);
		if (isatty(STDERR_FILENO)) {
			char when[32];

			cli_unix_iso(expires, when, sizeof(when));
			fprintf(stderr, "coffer: %llu token(s) for group \"%s\", "
				"%llu use(s) each, valid until %s\n", count, group,
				uses, when);
		}
	}
	goto done;
fail:
	if (c != NULL && stored != NULL)
		revoke_stored(c, stored);
	code = cli_fail(&err);
done:
	for (size_t i = 0; toks != NULL && i < count; i++)
		cf_token_free(toks[i]);
	OPENSSL_free(toks);
	json_decref(report);
	json_decref(stored);
	json_decref(b.list);
	cli_client_free(c);
	return code;
}

static int token_ls(int argc, char **argv)
{
	cli_settings set = { 0 };
	cli_client *c = NULL;
	json_t *resp = NULL, *t;
	cf_error err = { 0 };
	cf_status rc;
	size_t i;
	int code, as_json = 0;

	code = cli_settings_parse("token ls", argc, argv, token_usage, &set,
				  &as_json);
	if (code >= 0)
		return code;
	if (optind != argc)
		return cli_usage("token ls", "unexpected argument \"%s\"", argv[optind]);
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY, &c, &err);
	if (rc == CF_OK)
		rc = cli_client_call(c, "GET", "/v1/tokens", NULL, &resp, &err);
	if (rc != CF_OK)
		goto out;
	if (as_json) {
		cli_json_print(resp);
		goto out;
	}
	printf("%-32s  %-16s  %9s  %-20s  %s\n", "ID", "GROUP", "USED", "EXPIRES",
	       "STATE");
	json_array_foreach(json_object_get(resp, "tokens"), i, t) {
		char when[32], used[32], id[80], group[CF_NAME_MAX_BYTES + 1], state[32];

		cli_unix_iso(cli_json_int(t, "expires"), when, sizeof(when));
		snprintf(used, sizeof(used), "%lld/%lld", cli_json_int(t, "used"),
			 cli_json_int(t, "uses"));
		printf("%-32s  %-16s  %9s  %-20s  %s\n",
		       cli_printable(cli_json_str(t, "id"), id, sizeof(id)),
		       cli_printable(cli_json_str(t, "group"), group, sizeof(group)),
		       used, when,
		       cli_printable(cli_json_str(t, "state"), state, sizeof(state)));
	}
out:
	json_decref(resp);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

static int token_revoke(int argc, char **argv)
{
	cli_settings set = { 0 };
	cli_client *c = NULL;
	json_t *resp = NULL;
	char path[128];
	cf_error err = { 0 };
	cf_status rc;
	int code;

	code = cli_settings_parse("token revoke", argc, argv, token_usage, &set,
				  NULL);
	if (code >= 0)
		return code;
	if (optind + 1 != argc)
		return cli_usage("token revoke", "give exactly one token ID");
	if (!cf_token_id_valid(argv[optind]))
		return cli_usage("token revoke", "a token ID is 32 lower-case hex "
				 "characters (the part before the dot)");
	snprintf(path, sizeof(path), "/v1/tokens/%s", argv[optind]);
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY, &c, &err);
	if (rc == CF_OK)
		rc = cli_client_call(c, "DELETE", path, NULL, &resp, &err);
	if (rc == CF_OK)
		printf("revoked token %s\n", argv[optind]);
	json_decref(resp);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

int cmd_token(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "create", token_create },
		{ "ls", token_ls },
		{ "revoke", token_revoke },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    token_usage);
}
