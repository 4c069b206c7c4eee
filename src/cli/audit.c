/*
 * audit.c - `coffer audit` and `coffer audit verify`: the server's audit
 * log (docs/API.md "Audit", docs/CLIENT.md).
 *
 * verify fetches the tenant's whole chain in seq order, page by page, and
 * recomputes every link with cf_audit_check (the same function the store
 * uses to append).  The chain is an unsigned hash chain that the server
 * builds: it detects an entry edited or removed while later entries stay
 * in place (the chain breaks at that entry, which is named, exit 31), but
 * whoever can write the database can rewrite the whole chain from some
 * entry on, and that is detectable only against a last hash recorded
 * earlier (docs/THREAT-MODEL.md): the last hash printed is for an auditor
 * to record, and a later run must show that entry unchanged.  With a root
 * (--root, COFFER_ROOT), every entry must also be of that root's tenant.
 * Each entry is read with cf_audit_from_json, which bounds every field
 * the server sends.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "cli.h"
#include "client.h"

#define AUDIT_PAGE 500

static void audit_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer audit [--since T] [--until T] [--action A] [--actor FP]\n"
		"                    [--json] [connection options]\n"
		"       coffer audit verify [--json] [connection options]\n"
		"\n"
		"Reads the server's audit log of your organisation (needs\n"
		"audit.read).  T is unix seconds, an ISO 8601 UTC date or time\n"
		"(2026-01-31, 2026-01-31T12:00:00Z), or a duration meaning \"ago\"\n"
		"(90s, 30m, 1h, 7d).  verify checks the whole hash chain and names\n"
		"the first bad entry (exit 31); on success it prints the number of\n"
		"entries and the last hash.  The chain catches an entry edited or\n"
		"removed in place, not a rewrite of the whole chain: record the\n"
		"last hash and compare it on later runs.  With --root, every entry\n"
		"must be of that root's organisation.\n"
		"\n%s", cli_settings_help);
}

/* Whether a page of GET /v1/audit says that further entries follow. */
static int more_entries(const json_t *resp)
{
	return json_array_size(json_object_get(resp, "entries")) > 0 &&
	       json_is_true(json_object_get(resp, "more"));
}

static int audit_verify(int argc, char **argv)
{
	cli_settings set = { 0 };
	cli_client *c = NULL;
	json_t *resp = NULL, *j;
	cf_audit_entry e;
	char prev[65], tenant[65] = "";
	long long count = 0;
	cf_error err = { 0 };
	cf_status rc;
	size_t i;
	int code, as_json = 0;

	code = cli_settings_parse("audit verify", argc, argv, audit_usage, &set,
				  &as_json);
	if (code >= 0)
		return code;
	if (optind != argc)
		return cli_usage("audit verify", "unexpected argument \"%s\"",
				 argv[optind]);
	memcpy(prev, cf_audit_genesis, sizeof(prev));
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY, &c, &err);
	/* With a root, the tenant is known, not taken from the first entry. */
	if (rc == CF_OK)
		snprintf(tenant, sizeof(tenant), "%s", cli_client_tenant(c));
	while (rc == CF_OK) {
		char path[128];

		snprintf(path, sizeof(path), "/v1/audit?after=%lld&limit=%d", count,
			 AUDIT_PAGE);
		json_decref(resp);
		resp = NULL;
		rc = cli_client_call(c, "GET", path, NULL, &resp, &err);
		if (rc != CF_OK)
			break;
		json_array_foreach(json_object_get(resp, "entries"), i, j) {
			rc = cf_audit_from_json(j, &e, &err);
			if (rc != CF_OK)
				break;
			if (e.seq != count + 1) {
				rc = cf_error_set(&err, CF_ERR_AUDIT,
					"audit chain broken at entry %lld: the server "
					"sent entry %lld in its place (entries missing or "
					"reordered)", count + 1, (long long)e.seq);
				break;
			}
			if (tenant[0] == '\0')
				memcpy(tenant, e.tenant, sizeof(tenant));
			if (strcmp(tenant, e.tenant) != 0) {
				rc = cf_error_set(&err, CF_ERR_AUDIT,
					"audit entry %lld belongs to tenant %.16s..., "
					"not %.16s...%s", (long long)e.seq, e.tenant,
					tenant, cli_client_tenant(c)[0] ? " (the "
					"fingerprint of your --root)" : "");
				break;
			}
			rc = cf_audit_check(&e, prev, &err);
			if (rc != CF_OK)
				break;
			memcpy(prev, e.hash, sizeof(prev));
			count++;
		}
		if (rc != CF_OK || !more_entries(resp))
			break;
	}
	if (rc == CF_OK) {
		if (as_json) {
			json_t *doc = json_pack("{s:b, s:I, s:s}", "intact", 1,
				"entries", (json_int_t)count, "last_hash", prev);

			cli_json_print(doc);
			json_decref(doc);
		} else {
			printf("audit chain intact: %lld entries, last hash %s\n",
			       count, prev);
		}
	}
	json_decref(resp);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

static int audit_read(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "action", required_argument, NULL, 'a' },
		{ "actor", required_argument, NULL, 'A' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	const char *action = NULL, *actor = NULL;
	long long since = -1, until = -1, after = 0;
	char filter[512] = "", *qa = NULL, *qb = NULL;
	json_t *resp = NULL, *all = json_array(), *j;
	cf_error err = { 0 };
	cf_status rc;
	size_t i;
	int ch, as_json = 0, code = 0;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 's':
			if (cli_parse_time(optarg, &since) != 0) {
				code = cli_usage("audit", "--since: not a time or "
						 "duration: \"%s\"", optarg);
				goto out;
			}
			break;
		case 'u':
			if (cli_parse_time(optarg, &until) != 0) {
				code = cli_usage("audit", "--until: not a time or "
						 "duration: \"%s\"", optarg);
				goto out;
			}
			break;
		case 'a': action = optarg; break;
		case 'A': actor = optarg; break;
		case 'j': as_json = 1; break;
		case 'h': audit_usage(stdout); goto out;
		default: code = cli_bad_option("audit"); goto out;
		}
	}
	if (optind != argc) {
		code = cli_usage("audit", "unknown subcommand or argument \"%s\"",
				 argv[optind]);
		goto out;
	}
	qa = action ? cli_client_escape(action) : NULL;
	qb = actor ? cli_client_escape(actor) : NULL;
	{
		size_t used = 0;

		if (since >= 0)
			used += (size_t)snprintf(filter + used, sizeof(filter) - used,
						 "&since=%lld", since);
		if (until >= 0)
			used += (size_t)snprintf(filter + used, sizeof(filter) - used,
						 "&until=%lld", until);
		if (qa != NULL && used < sizeof(filter))
			used += (size_t)snprintf(filter + used, sizeof(filter) - used,
						 "&action=%s", qa);
		if (qb != NULL && used < sizeof(filter))
			used += (size_t)snprintf(filter + used, sizeof(filter) - used,
						 "&actor=%s", qb);
		if (used >= sizeof(filter)) {
			code = cli_usage("audit", "filters too long");
			goto out;
		}
	}
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY, &c, &err);
	while (rc == CF_OK) {
		char path[700];

		snprintf(path, sizeof(path), "/v1/audit?after=%lld&limit=%d%s",
			 after, AUDIT_PAGE, filter);
		json_decref(resp);
		resp = NULL;
		rc = cli_client_call(c, "GET", path, NULL, &resp, &err);
		if (rc != CF_OK)
			break;
		/* The header only once the server has answered: a refusal prints nothing. */
		if (after == 0 && !as_json)
			printf("%6s  %-20s  %-16s  %-32s  %-24s  %-21s  %s\n", "SEQ",
			       "TIME", "ACTION", "OBJECT", "SUBJECT", "SOURCE", "BYTES");
		json_array_foreach(json_object_get(resp, "entries"), i, j) {
			long long seq = cli_json_int(j, "seq");
			char when[32], act[CF_AUDIT_ACTION_MAX];
			char object[CF_AUDIT_OBJECT_MAX];
			char subject[CF_AUDIT_SUBJECT_MAX], source[CF_AUDIT_SOURCE_MAX];

			if (seq <= after) {
				rc = cf_error_set(&err, CF_ERR_SERVER, "the server "
					"sent audit entries out of order");
				break;
			}
			after = seq;
			if (as_json) {
				json_array_append(all, j);
				continue;
			}
			cli_unix_iso(cli_json_int(j, "time"), when, sizeof(when));
			printf("%6lld  %-20s  %-16s  %-32s  %-24s  %-21s  %lld\n", seq,
			       when, cli_printable(cli_json_str(j, "action"), act,
						   sizeof(act)),
			       cli_printable(cli_json_str(j, "object"), object,
					     sizeof(object)),
			       cli_printable(cli_json_str(j, "subject"), subject,
					     sizeof(subject)),
			       cli_printable(cli_json_str(j, "source"), source,
					     sizeof(source)),
			       cli_json_int(j, "bytes"));
		}
		if (rc != CF_OK || !more_entries(resp))
			break;
	}
	if (rc == CF_OK && as_json) {
		json_t *doc = json_pack("{s:O}", "entries", all);

		cli_json_print(doc);
		json_decref(doc);
	}
	code = rc == CF_OK ? 0 : cli_fail(&err);
out:
	free(qa);
	free(qb);
	json_decref(resp);
	json_decref(all);
	cli_client_free(c);
	return code;
}

int cmd_audit(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return audit_verify(argc - 1, argv + 1);
	return audit_read(argc, argv);
}
