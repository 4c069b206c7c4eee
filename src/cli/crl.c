/*
 * crl.c - `coffer crl show`: what a revocation list says, and whether
 * a given root signed it; `coffer crl push`: hand the organisation's CRL
 * to the server, which refuses any certificate on it from then on.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "client.h"
#include "pki.h"

static void crl_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer crl show FILE [--root ROOT] [--json]\n"
		"       coffer crl push FILE [--json] [connection options]\n"
		"\n"
		"show  prints the issuer, number, this and next update, and the\n"
		"      revoked serial numbers of a CRL.  With --root, also checks\n"
		"      the CRL was signed by that root (exit code 16 if not).\n"
		"push  uploads the CRL (from 'coffer ca revoke') to the server,\n"
		"      which checks it is signed by your root and newer than the\n"
		"      one it has (exit 22 if not); revoked certificates are\n"
		"      refused at once, and every envelope the server holds for\n"
		"      them (or for certificates a revoked enroller issued) is\n"
		"      deleted.  With --root (or COFFER_ROOT) the signature is\n"
		"      also checked here first.\n"
		"\n%s", cli_settings_help);
}

static int crl_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "root", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *root_path = NULL;
	X509_CRL *crl = NULL;
	X509 *root = NULL;
	ASN1_INTEGER *number = NULL;
	STACK_OF(X509_REVOKED) *entries;
	char *issuer = NULL, *num = NULL, last[32], next[32];
	json_t *obj = NULL, *list = NULL;
	cf_error err = { 0 };
	cf_status rc;
	int c, as_json = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': as_json = 1; break;
		case 'r': root_path = optarg; break;
		case 'h': crl_usage(stdout); return 0;
		default: return cli_bad_option("crl show");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("crl show", "give exactly one CRL FILE");
	rc = cli_load_crl(argv[optind], &crl, &err);
	if (rc == CF_OK && root_path != NULL)
		rc = cli_load_cert(root_path, &root, NULL, &err);
	if (rc == CF_OK && root != NULL)
		rc = cf_crl_check_signer(crl, root, &err);
	if (rc != CF_OK)
		goto out;
	issuer = cf_name_text(X509_CRL_get_issuer(crl));
	number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	num = cli_int_hex(number);
	cli_iso_time(X509_CRL_get0_lastUpdate(crl), last, sizeof(last));
	cli_iso_time(X509_CRL_get0_nextUpdate(crl), next, sizeof(next));
	entries = X509_CRL_get_REVOKED(crl);
	list = json_array();
	for (int i = 0; i < sk_X509_REVOKED_num(entries); i++) {
		X509_REVOKED *e = sk_X509_REVOKED_value(entries, i);
		char *serial = cli_int_hex(X509_REVOKED_get0_serialNumber(e));
		char when[32];

		cli_iso_time(X509_REVOKED_get0_revocationDate(e), when, sizeof(when));
		json_array_append_new(list, json_pack("{s:s, s:s}",
			"serial", serial ? serial : "", "revoked", when));
		OPENSSL_free(serial);
	}
	if (as_json) {
		obj = json_pack("{s:s, s:s?, s:s, s:s, s:b, s:O}",
			"issuer", issuer ? issuer : "", "number", num,
			"this_update", last, "next_update", next,
			"signature_checked", root != NULL, "revoked", list);
		if (obj == NULL) {
			rc = cf_error_set(&err, CF_ERR_NOMEM, "could not build JSON");
			goto out;
		}
		json_dumpf(obj, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		printf("issuer:      %s\n", issuer ? issuer : "");
		printf("number:      %s\n", num ? num : "-");
		printf("this update: %s\n", last);
		printf("next update: %s\n", next);
		printf("entries:     %d%s\n", sk_X509_REVOKED_num(entries),
		       root ? " (signature checked against the root)" : "");
		for (size_t i = 0; i < json_array_size(list); i++) {
			json_t *e = json_array_get(list, i);

			printf("revoked:     %s at %s\n",
			       json_string_value(json_object_get(e, "serial")),
			       json_string_value(json_object_get(e, "revoked")));
		}
	}
out:
	json_decref(obj);
	json_decref(list);
	ASN1_INTEGER_free(number);
	OPENSSL_free(issuer);
	OPENSSL_free(num);
	X509_free(root);
	X509_CRL_free(crl);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

static int crl_push(int argc, char **argv)
{
	cli_settings set = { 0 };
	cli_client *c = NULL;
	X509_CRL *crl = NULL;
	unsigned char *pem = NULL;
	size_t pem_len = 0;
	json_t *body = NULL, *resp = NULL;
	cf_error err = { 0 };
	cf_status rc;
	int code, as_json = 0;

	code = cli_settings_parse("crl push", argc, argv, crl_usage, &set,
				  &as_json);
	if (code >= 0)
		return code;
	if (optind + 1 != argc)
		return cli_usage("crl push", "give exactly one CRL FILE");
	rc = cli_load_crl(argv[optind], &crl, &err);
	if (rc == CF_OK)
		rc = cli_client_connect(&set, CLI_NEED_IDENTITY, &c, &err);
	if (rc == CF_OK && cli_client_root(c) != NULL)
		rc = cf_crl_check_signer(crl, cli_client_root(c), &err);
	if (rc == CF_OK)
		rc = cf_crl_to_pem(crl, &pem, &pem_len, &err);
	if (rc != CF_OK)
		goto out;
	body = json_pack("{s:s%}", "crl", (const char *)pem, pem_len);
	rc = body ? cli_client_call(c, "PUT", "/v1/crl", body, &resp, &err) :
		    cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
	if (rc == CF_OK && as_json)
		cli_json_print(resp);
	else if (rc == CF_OK)
		printf("pushed %s: the server now uses CRL number %lld (%d "
		       "revoked); it deleted %lld envelope(s) it held for "
		       "revoked certificates\n", argv[optind],
		       (long long)json_integer_value(json_object_get(resp, "number")),
		       sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)),
		       (long long)json_integer_value(json_object_get(resp,
							"purged")));
out:
	json_decref(body);
	json_decref(resp);
	OPENSSL_free(pem);
	X509_CRL_free(crl);
	cli_client_free(c);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

int cmd_crl(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "show", crl_show },
		{ "push", crl_push },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    crl_usage);
}
