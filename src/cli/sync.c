/*
 * sync.c - `coffer sync [--watch]`: groups that change (docs/CLIENT.md).
 *
 * For every secret whose latest version the caller wrote to group:G or
 * agent:NAME (the targets `put` signs into the record, with what a
 * rotation left out: the server cannot widen them), the current members
 * are resolved again through the directory and verified here against
 * COFFER_ROOT and the CRL, exactly as `put` does; each verified member
 * that has no envelope of that version gets one, made from the caller's
 * own envelope of it: decrypted, checked to be the caller's own signed
 * record of that name and version, and the SAME signed bytes sealed
 * again, so every member opens the very record the writer signed.  The
 * server adds the envelopes only while the version is still the latest
 * and only for recipients without one, in one transaction: two writers
 * syncing at once neither lose nor duplicate an envelope.
 *
 * Members that left the group or were revoked get nothing new: they are
 * not resolved any more, and a fingerprint a rotation left out is skipped.
 * Taking away what they hold is `coffer rotate`.
 */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "envelope.h"
#include "pki.h"
#include "policy.h"
#include "recipients.h"

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void sync_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer sync [NAME...] [--watch [--interval 5s]] [--json]\n"
		"                   [connection options]\n"
		"\n"
		"Extends the secrets you wrote to groups (`put --to group:G`) to the\n"
		"groups' current members: each member that verifies against your\n"
		"root and the CRL and has no envelope of the latest version gets one,\n"
		"sealed from your own copy (the record you signed, unchanged).\n"
		"Members that left or were revoked get nothing new (coffer rotate\n"
		"takes away what they have).  Without NAMEs: every secret whose\n"
		"latest version you wrote.  Needs secret.write on each.\n"
		"\n"
		"  --watch         keep going: sync again every --interval (default\n"
		"                  5s) until interrupted, so new members get the\n"
		"                  secrets moments after they are approved\n"
		"  --json          one JSON object per secret extended\n"
		"\n%s", cli_settings_help);
}

/* 1 if fp is among the recipients of the server's answer. */
static int has_recipient(const json_t *recipients, const char *fp)
{
	json_t *e;
	size_t i;

	json_array_foreach(recipients, i, e)
		if (strcmp(cli_json_str(e, "fp"), fp) == 0)
			return 1;
	return 0;
}

/*
 * The caller's own envelope of name version V, decrypted and checked to
 * hold the caller's own signed record of that name and version: the
 * signed bytes to seal again.
 */
static cf_status own_signed(cli_client *c, const char *name,
			    const char *qname, int64_t version,
			    cf_secret **signed_der, cf_record **rec_out,
			    cf_error *err)
{
	const cf_trust *trust = NULL;
	json_t *resp = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_record *rec = NULL;
	X509 *signer = NULL;
	char path[1100];
	cf_status rc;

	*signed_der = NULL;
	*rec_out = NULL;
	snprintf(path, sizeof(path), "/v1/secrets/envelope?name=%s&version=%lld",
		 qname, (long long)version);
	rc = cli_client_trust(c, &trust, err);
	if (rc == CF_OK)
		rc = cli_client_call(c, "GET", path, NULL, &resp, err);
	if (rc == CF_OK)
		rc = cli_b64_decode(cli_json_str(resp, "envelope"),
				    "your envelope", &der, &len, err);
	if (rc == CF_OK)
		rc = cf_envelope_decrypt(der, len, cli_client_cert(c),
					 cli_client_key(c), signed_der, err);
	if (rc == CF_OK)
		rc = cf_envelope_verify(*signed_der, trust, name,
					(uint64_t)version, &rec, &signer, err);
	if (rc == CF_OK && rec->version != (uint64_t)version)
		rc = cf_error_set(err, CF_ERR_ROLLBACK, "%s: your envelope holds "
				  "version %llu, not %lld", name,
				  (unsigned long long)rec->version,
				  (long long)version);
	/* Only the writer's own record is passed on as it is. */
	if (rc == CF_OK && X509_cmp(signer, cli_client_cert(c)) != 0)
		rc = cf_error_set(err, CF_ERR_PERMISSION, "%s version %lld was "
				  "signed by somebody else; only its writer "
				  "extends it", name, (long long)version);
	if (rc != CF_OK) {
		cf_secret_free(*signed_der);
		*signed_der = NULL;
	} else {
		*rec_out = rec;
		rec = NULL;
	}
	cf_record_free(rec);
	X509_free(signer);
	OPENSSL_free(der);
	json_decref(resp);
	return rc;
}

/* 1 if fp is one of the record's left-out fingerprints. */
static int left_out(const cf_record *rec, const char *fp)
{
	for (size_t i = 0; i < rec->n_without; i++)
		if (strcmp(rec->without[i], fp) == 0)
			return 1;
	return 0;
}

/*
 * Extends one secret; *added the envelopes the server took.  Whom to is
 * read from the writer's own signed record of the latest version (its
 * targets, minus its left-out fingerprints), never from the server: the
 * server only says who has an envelope already, and a lie there can only
 * withhold an envelope, not send one elsewhere.
 */
static cf_status sync_one(cli_client *c, const char *name, int as_json,
			  int64_t *added, cf_error *err)
{
	char *qname = cli_client_escape(name), path[1200];
	json_t *recips = NULL, *resp = NULL, *body = NULL;
	json_t *list = NULL, *who = NULL;
	cli_rcpts all = { 0 };
	cf_secret *signed_der = NULL;
	cf_record *rec = NULL;
	cf_sealer *sealer = NULL;
	int64_t version;
	cf_status rc;

	*added = 0;
	if (qname == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	snprintf(path, sizeof(path), "/v1/secrets/recipients?name=%s", qname);
	rc = cli_client_call(c, "GET", path, NULL, &recips, err);
	if (rc != CF_OK)
		goto out;
	version = cli_json_int(recips, "version");
	rc = own_signed(c, name, qname, version, &signed_der, &rec, err);
	if (rc != CF_OK)
		goto out;
	if (rec->n_targets == 0)
		goto out;       /* written without targets: nothing to extend */
	/* The current members, verified; agent:, group: and cluster:
	 * targets (a cluster's newest key) only. */
	for (size_t t = 0; t < rec->n_targets && rc == CF_OK; t++) {
		const char *spec = rec->targets[t];
		cf_error why = { 0 };
		cf_status one;

		if (strncmp(spec, "group:", 6) != 0 &&
		    strncmp(spec, "agent:", 6) != 0 &&
		    strncmp(spec, "cluster:", 8) != 0)
			continue;
		one = cli_resolve(c, spec, &all, &why);
		if (one == CF_ERR_NOT_FOUND || one == CF_ERR_REVOKED ||
		    one == CF_ERR_UNTRUSTED)
			fprintf(stderr, "coffer: %s: %s\n", name, why.msg);
		else if (one != CF_OK) {
			*err = why;
			rc = one;
		}
	}
	list = json_array();
	who = json_array();
	if (rc != CF_OK || list == NULL || who == NULL) {
		if (rc == CF_OK)
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < all.n && rc == CF_OK; i++) {
		unsigned char *der = NULL;
		size_t len = 0;

		if (left_out(rec, all.v[i].fp) ||
		    has_recipient(json_object_get(recips, "recipients"),
				  all.v[i].fp))
			continue;
		if (sealer == NULL &&
		    (rc = cf_sealer_new(signed_der, &sealer, err)) != CF_OK)
			break;
		rc = cf_sealer_seal(sealer, all.v[i].cert, &der, &len, err);
		if (rc != CF_OK)
			break;
		json_array_append_new(list, json_pack("{s:s,s:o}", "recipient",
			all.v[i].fp, "envelope", cli_b64_json(der, len)));
		json_array_append_new(who, json_string(all.v[i].name));
		OPENSSL_free(der);
	}
	if (rc != CF_OK || json_array_size(list) == 0)
		goto out;
	body = json_pack("{s:O}", "envelopes", list);
	snprintf(path, sizeof(path), "/v1/secrets/envelopes?name=%s&version=%lld",
		 qname, (long long)version);
	rc = cli_client_call(c, "POST", path, body, &resp, err);
	if (rc == CF_ERR_CONFLICT) {
		rc = CF_OK;     /* a newer version: the next round extends it */
		goto out;
	}
	if (rc != CF_OK)
		goto out;
	*added = cli_json_int(resp, "added");
	if (as_json) {
		json_t *doc = json_pack("{s:s,s:I,s:I,s:O}", "name", name,
					"version", (json_int_t)version,
					"added", (json_int_t)*added,
					"members", who);

		if (doc != NULL &&
		    json_dumpf(doc, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) ==
		    0)
			putchar('\n');
		json_decref(doc);
	} else if (*added > 0) {
		printf("synced %s version %lld: %lld new member(s)", name,
		       (long long)version, (long long)*added);
		for (size_t i = 0; i < json_array_size(who) && i < 10; i++)
			printf("%s%s", i ? ", " : " (",
			       json_string_value(json_array_get(who, i)));
		printf("%s\n", json_array_size(who) > 10 ? ", ...)" : ")");
	}
	fflush(stdout);
out:
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	cf_record_free(rec);
	cli_rcpts_free(&all);
	json_decref(body);
	json_decref(list);
	json_decref(who);
	json_decref(resp);
	json_decref(recips);
	free(qname);
	return rc;
}

/* The names to sync: the given ones, or every latest version by me. */
static cf_status sync_names(cli_client *c, int argc, char **argv,
			    json_t **names, cf_error *err)
{
	json_t *resp = NULL, *e;
	size_t i;
	cf_status rc = CF_OK;

	*names = json_array();
	if (*names == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (argc > 0) {
		for (int a = 0; a < argc; a++)
			json_array_append_new(*names, json_string(argv[a]));
		return CF_OK;
	}
	rc = cli_client_call(c, "GET", "/v1/secrets", NULL, &resp, err);
	json_array_foreach(json_object_get(resp, "secrets"), i, e)
		if (strcmp(cli_json_str(e, "writer"), cli_client_fp(c)) == 0)
			json_array_append_new(*names,
					      json_string(cli_json_str(e, "name")));
	json_decref(resp);
	return rc;
}

int cmd_sync(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "watch", no_argument, NULL, 'w' },
		{ "interval", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SETTINGS_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_settings set = { 0 };
	cli_client *c = NULL;
	json_t *names = NULL;
	long long interval = 5;
	int64_t total = 0;
	cf_error err = { 0 };
	cf_status rc;
	int ch, watch = 0, as_json = 0, failed = 0;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_settings_option(&set, ch, optarg))
			continue;
		switch (ch) {
		case 'w': watch = 1; break;
		case 'i':
			if (cli_parse_duration(optarg, &interval) != 0 ||
			    interval < 1 || interval > 86400)
				return cli_usage("sync", "--interval is a duration "
						 "from 1s to 24h");
			break;
		case 'j': as_json = 1; break;
		case 'h': sync_usage(stdout); return 0;
		default: return cli_bad_option("sync");
		}
	}
	for (int a = optind; a < argc; a++)
		if (cf_name_check("secret name", argv[a], &err) != CF_OK) {
			err.code = CF_ERR_USAGE;
			return cli_fail(&err);
		}
	rc = cli_client_connect(&set, CLI_NEED_IDENTITY | CLI_NEED_ROOT, &c,
				&err);
	if (rc != CF_OK)
		return cli_fail(&err);
	cli_client_set_abort(c, &stop);
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	do {
		size_t n;

		failed = 0;
		json_decref(names);
		names = NULL;
		rc = sync_names(c, argc - optind, argv + optind, &names, &err);
		if (rc != CF_OK) {
			if (!watch || stop)
				break;
			fprintf(stderr, "coffer: %s; trying again\n", err.msg);
			failed = 1;
		}
		n = json_array_size(names);
		for (size_t i = 0; i < n && !stop; i++) {
			const char *name = json_string_value(json_array_get(names, i));
			cf_error why = { 0 };
			int64_t added = 0;

			if (sync_one(c, name, as_json, &added, &why) != CF_OK) {
				fprintf(stderr, "coffer: %s not synced: %s\n", name,
					why.msg);
				if (!failed)
					err = why;
				failed = 1;
			}
			total += added;
		}
		for (long long t = 0; watch && !stop && t < interval * 10; t++)
			usleep(100000);
	} while (watch && !stop);
	json_decref(names);
	cli_client_free(c);
	if (rc != CF_OK && !watch)
		return cli_fail(&err);
	if (!as_json && !watch)
		fprintf(stderr, "coffer: sync: %lld envelope(s) added\n",
			(long long)total);
	if (failed && !watch)
		return cli_fail(&err);
	return 0;
}
