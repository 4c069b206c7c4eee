/*
 * seal.c - `coffer seal`: sign a secret once and encrypt it to each
 * recipient's certificate, offline, with no server.
 *
 * The secret comes from standard input or --in, never from argv.  With
 * --root every recipient (and the signer) is verified first and a bad
 * one is refused by name, so no envelope is written for anybody.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <errno.h>
#include <unistd.h>

#include "cli.h"
#include "envelope.h"
#include "pki.h"
#include "policy.h"
#include "sealing.h"

#define MAX_RECIPIENTS 100000

static void seal_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer seal --name NAME --version V --signer-cert C --signer-key K\n"
		"                   (--root ROOT [--crl CRL] | --tenant FINGERPRINT)\n"
		"                   --to CRT [--to CRT]... (--out FILE | --out-dir DIR)\n"
		"                   [--in FILE] [--type text|binary|file|template]\n"
		"                   [--pass-file F] [--json]\n"
		"\n"
		"Reads the secret (at most 1 MiB) from standard input or --in FILE,\n"
		"signs one record (NAME, version V) with the signer's key, and\n"
		"encrypts it to every --to certificate.\n"
		"\n"
		"  --root ROOT      verify the signer and every recipient against the\n"
		"                   organisation's root (and --crl) first; the root's\n"
		"                   fingerprint is the record's tenant\n"
		"  --tenant FP      without --root: the tenant fingerprint to record\n"
		"  --out FILE       one envelope that every recipient can open\n"
		"  --out-dir DIR    one envelope per recipient: DIR/<fingerprint>.cms\n"
		"  --json           print what was written as JSON\n"
		"  --pass-file F    passphrase of the signer key if encrypted\n");
}

struct recipient {
	const char *path;
	X509 *cert;
	STACK_OF(X509) *chain;
	char fp[65];
};

static cf_status check_signer(X509 *signer, const char *name, cf_error *err)
{
	struct cf_perms *perms = NULL;
	char cn[CF_CN_MAX_BYTES + 1];
	cf_status rc = cf_cert_perms(signer, &perms, err);

	if (rc != CF_OK)
		return rc;
	cf_cert_cn(signer, cn, sizeof(cn));
	if (!cf_perms_allows(perms, "secret.write", name))
		rc = cf_error_set(err, CF_ERR_PERMISSION,
			"signer \"%s\" does not hold secret.write on \"%s\"; "
			"recipients would refuse this record", cn, name);
	cf_perms_free(perms);
	return rc;
}

static int is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int cmd_seal(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "version", required_argument, NULL, 'v' },
		{ "signer-cert", required_argument, NULL, 'c' },
		{ "signer-key", required_argument, NULL, 'k' },
		{ "root", required_argument, NULL, 'r' },
		{ "crl", required_argument, NULL, 'l' },
		{ "tenant", required_argument, NULL, 'T' },
		{ "to", required_argument, NULL, 't' },
		{ "out", required_argument, NULL, 'o' },
		{ "out-dir", required_argument, NULL, 'O' },
		{ "in", required_argument, NULL, 'i' },
		{ "type", required_argument, NULL, 'y' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *signer_path = NULL, *key_path = NULL;
	const char *root_path = NULL, *crl_path = NULL, *tenant = NULL;
	const char *out = NULL, *out_dir = NULL, *in = NULL, *type = "text";
	const char **to = NULL;
	size_t n_to = 0;
	unsigned long long version = 0;
	struct recipient *rcpt = NULL;
	X509 **certs = NULL;
	cli_pass pass = { 0 };
	X509 *signer = NULL, *root = NULL;
	STACK_OF(X509) *signer_chain = NULL;
	X509_CRL *crl = NULL;
	EVP_PKEY *key = NULL;
	cf_trust *trust = NULL;
	cf_record rec = { 0 };
	cf_secret *json = NULL, *signed_der = NULL;
	cf_sealer *sealer = NULL;
	json_t *report = NULL, *written = NULL;
	char signer_cn[CF_CN_MAX_BYTES + 1];
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	int c, as_json = 0, code = 0;

	to = OPENSSL_zalloc(sizeof(*to) * (size_t)argc);
	if (to == NULL)
		return 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 'v':
			if (cli_parse_uint("seal", "--version", optarg,
					   ((unsigned long long)1 << 53) - 1, &version)) {
				code = 2;
				goto done;
			}
			break;
		case 'c': signer_path = optarg; break;
		case 'k': key_path = optarg; break;
		case 'r': root_path = optarg; break;
		case 'l': crl_path = optarg; break;
		case 'T': tenant = optarg; break;
		case 't': to[n_to++] = optarg; break;
		case 'o': out = optarg; break;
		case 'O': out_dir = optarg; break;
		case 'i': in = optarg; break;
		case 'y': type = optarg; break;
		case 'p': pass.file = optarg; break;
		case 'j': as_json = 1; break;
		case 'h': seal_usage(stdout); goto done;
		default: code = cli_bad_option("seal"); goto done;
		}
	}
	if (optind != argc) {
		/* Not echoed: a stray argument may well be the secret itself. */
		code = cli_usage("seal", "unexpected argument; the secret is read "
				 "from standard input or --in FILE, never from the "
				 "command line");
		goto done;
	}
	if (name == NULL || version == 0 || signer_path == NULL || key_path == NULL) {
		code = cli_usage("seal", "--name, --version, --signer-cert and "
				 "--signer-key are required");
		goto done;
	}
	if (n_to == 0 || n_to > MAX_RECIPIENTS) {
		code = cli_usage("seal", "give 1 to %d --to certificates", MAX_RECIPIENTS);
		goto done;
	}
	if ((out == NULL) == (out_dir == NULL)) {
		code = cli_usage("seal", "give exactly one of --out FILE and --out-dir DIR");
		goto done;
	}
	if ((root_path == NULL) == (tenant == NULL)) {
		code = cli_usage("seal", "give --root ROOT (recommended) or --tenant "
				 "FINGERPRINT, not both");
		goto done;
	}
	if (crl_path != NULL && root_path == NULL) {
		code = cli_usage("seal", "--crl needs --root");
		goto done;
	}
	if (tenant != NULL && !is_hex64(tenant)) {
		code = cli_usage("seal", "--tenant must be the root's 64 lowercase hex "
				 "SHA-256 fingerprint ('coffer cert show root.crt')");
		goto done;
	}
	if (cf_record_type_from_name(type, &rec.type) != 0) {
		code = cli_usage("seal", "--type must be text, binary, file or template");
		goto done;
	}
	rc = cf_name_check("secret name", name, &err);
	if (rc != CF_OK)
		goto fail;

	/* Everything that can be refused is checked before anything is read. */
	rc = cli_load_cert(signer_path, &signer, &signer_chain, &err);
	if (rc == CF_OK && root_path != NULL)
		rc = cli_load_cert(root_path, &root, NULL, &err);
	if (rc == CF_OK && crl_path != NULL)
		rc = cli_load_crl(crl_path, &crl, &err);
	if (rc == CF_OK && root != NULL)
		rc = cf_trust_new(root, crl, &trust, &err);
	if (rc == CF_OK && trust != NULL)
		rc = cf_trust_verify(trust, signer, signer_chain, "the signer", &err);
	if (rc == CF_OK)
		rc = check_signer(signer, name, &err);
	if (rc != CF_OK)
		goto fail;
	rcpt = OPENSSL_zalloc(sizeof(*rcpt) * n_to);
	certs = OPENSSL_zalloc(sizeof(*certs) * n_to);
	if (rcpt == NULL || certs == NULL) {
		rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n_to && rc == CF_OK; i++) {
		char what[PATH_MAX + 16];

		rcpt[i].path = to[i];
		rc = cli_load_cert(to[i], &rcpt[i].cert, &rcpt[i].chain, &err);
		if (rc != CF_OK)
			break;
		certs[i] = rcpt[i].cert;
		snprintf(what, sizeof(what), "recipient %s", to[i]);
		if (trust != NULL)
			rc = cf_trust_verify(trust, rcpt[i].cert, rcpt[i].chain,
					     what, &err);
		if (rc == CF_OK)
			rc = cf_cert_fingerprint(rcpt[i].cert, rcpt[i].fp, &err);
		cli_progress(trust ? "verified" : "loaded", i + 1, n_to);
	}
	if (rc == CF_OK)
		rc = cli_load_key(key_path, &pass, &key, &err);
	if (rc == CF_OK)
		rc = cli_plaintext_read(in, "--in FILE", &rec.value, &err);
	if (rc != CF_OK)
		goto fail;

	snprintf(rec.tenant, sizeof(rec.tenant), "%s",
		 trust ? cf_trust_tenant(trust) : tenant);
	snprintf(rec.name, sizeof(rec.name), "%s", name);
	rec.version = version;
	rec.created = (int64_t)time(NULL);
	rc = cf_record_encode(&rec, &json, &err);
	if (rc == CF_OK)
		rc = cf_envelope_sign(json, signer, key, signer_chain, &signed_der, &err);
	if (rc == CF_OK)
		rc = cf_sealer_new(signed_der, &sealer, &err);
	if (rc == CF_OK && out_dir != NULL)
		rc = cli_mkdir(out_dir, 0755, &err);
	if (rc != CF_OK)
		goto fail;

	written = json_array();
	if (out != NULL) {
		unsigned char *der = NULL;
		size_t len = 0;

		rc = cf_sealer_seal_many(sealer, certs, n_to, &der, &len, &err);
		if (rc == CF_OK)
			rc = cli_write_file(out, der, len, 0644, 0, &err);
		OPENSSL_free(der);
		if (rc != CF_OK)
			goto fail;
		for (size_t i = 0; i < n_to; i++)
			json_array_append_new(written, json_pack("{s:s, s:s, s:s, s:I}",
				"recipient", rcpt[i].path, "fingerprint", rcpt[i].fp,
				"file", out, "bytes", (json_int_t)len));
	} else {
		for (size_t i = 0; i < n_to; i++) {
			char path[PATH_MAX];
			unsigned char *der = NULL;
			size_t len = 0;

			snprintf(path, sizeof(path), "%s/%s.cms", out_dir, rcpt[i].fp);
			rc = cf_sealer_seal(sealer, rcpt[i].cert, &der, &len, &err);
			if (rc == CF_OK)
				rc = cli_write_file(path, der, len, 0644, 0, &err);
			OPENSSL_free(der);
			if (rc != CF_OK)
				goto fail;
			json_array_append_new(written, json_pack("{s:s, s:s, s:s, s:I}",
				"recipient", rcpt[i].path, "fingerprint", rcpt[i].fp,
				"file", path, "bytes", (json_int_t)len));
			cli_progress("sealed", i + 1, n_to);
		}
	}
	cf_cert_cn(signer, signer_cn, sizeof(signer_cn));
	if (as_json) {
		report = json_pack("{s:s, s:I, s:s, s:I, s:s, s:s, s:b, s:O}",
			"name", name, "version", (json_int_t)version, "type", type,
			"bytes", (json_int_t)cf_secret_len(rec.value),
			"signer", signer_cn, "tenant", rec.tenant,
			"verified", trust != NULL, "envelopes", written);
		json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		printf("sealed \"%s\" version %llu (%zu bytes, signed by \"%s\") to "
		       "%zu recipient(s)%s:\n", name, version,
		       cf_secret_len(rec.value), signer_cn, n_to,
		       trust ? ", each verified against the root" :
			       " (NOT verified: no --root)");
		for (size_t i = 0; i < json_array_size(written); i++) {
			json_t *e = json_array_get(written, i);

			printf("  %s -> %s\n",
			       json_string_value(json_object_get(e, "recipient")),
			       json_string_value(json_object_get(e, "file")));
		}
	}
	goto done;
fail:
	code = cli_fail(&err);
done:
	json_decref(report);
	json_decref(written);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	cf_secret_free(json);
	cf_secret_free(rec.value);
	for (size_t i = 0; rcpt != NULL && i < n_to; i++) {
		X509_free(rcpt[i].cert);
		sk_X509_pop_free(rcpt[i].chain, X509_free);
	}
	OPENSSL_free(rcpt);
	OPENSSL_free(certs);
	cf_trust_free(trust);
	EVP_PKEY_free(key);
	X509_CRL_free(crl);
	X509_free(root);
	X509_free(signer);
	sk_X509_pop_free(signer_chain, X509_free);
	OPENSSL_free(to);
	return code;
}
