/*
 * ca.c - `coffer ca init` and `coffer ca revoke`: the organisation's root.
 *
 * The CA directory holds root.crt, root.key (0600) and crl.pem.  It is
 * meant to live offline; nothing here talks to a network.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pki.h"

static void ca_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer ca init --name ORG --dir DIR [--days N]\n"
		"                      [--pass-file F | --no-passphrase]\n"
		"       coffer ca revoke --ca DIR [--cert CRT] [--days N] [--pass-file F]\n"
		"\n"
		"init    makes the organisation's root CA: DIR/root.crt and DIR/root.key\n"
		"        (P-256; PKCS#8 encrypted with scrypt + AES-256 unless\n"
		"        --no-passphrase).  Valid for N days (default 3650).\n"
		"revoke  adds CRT to DIR/crl.pem, signed by the root (created if\n"
		"        absent; without --cert, re-signs it).  The CRL is valid for\n"
		"        N days (default 365).\n"
		"\n"
		"The passphrase comes from --pass-file F (its first line), else the\n"
		"COFFER_PASSPHRASE variable, else a prompt on a terminal.\n");
}

static int ca_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "dir", required_argument, NULL, 'd' },
		{ "days", required_argument, NULL, 'D' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "no-passphrase", no_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *org = NULL, *dir = NULL;
	unsigned long long days = CF_DEFAULT_CA_DAYS;
	char crt_path[PATH_MAX], key_path[PATH_MAX], fp[65];
	cli_pass pass = { 0 };
	cf_secret *phrase = NULL;
	EVP_PKEY *key = NULL;
	X509 *root = NULL;
	unsigned char *pem = NULL;
	size_t len = 0;
	cf_error err = { 0 };
	cf_status rc;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': org = optarg; break;
		case 'd': dir = optarg; break;
		case 'D':
			if (cli_parse_uint("ca init", "--days", optarg, 36500, &days))
				return 2;
			break;
		case 'p': pass.file = optarg; break;
		case 'N': pass.none = 1; break;
		case 'h': ca_usage(stdout); return 0;
		default: return cli_bad_option("ca init");
		}
	}
	if (optind != argc)
		return cli_usage("ca init", "unexpected argument \"%s\"", argv[optind]);
	if (org == NULL || dir == NULL)
		return cli_usage("ca init", "--name ORG and --dir DIR are required");
	if (!cli_path_in(crt_path, sizeof(crt_path), dir, "root.crt") ||
	    !cli_path_in(key_path, sizeof(key_path), dir, "root.key"))
		return cli_usage("ca init", "--dir is too long");
	rc = cli_mkdir(dir, 0700, &err);
	if (rc == CF_OK && (access(key_path, F_OK) == 0 || access(crt_path, F_OK) == 0))
		rc = cf_error_set(&err, CF_ERR_EXISTS,
			"%s already holds a CA (root.crt or root.key); refusing "
			"to replace an organisation's root", dir);
	if (rc == CF_OK)
		rc = cli_pass_for_new_key(&pass, "the root CA key", &phrase, &err);
	if (rc == CF_OK)
		rc = cf_key_generate(&key, &err);
	if (rc == CF_OK)
		rc = cf_ca_create(key, org, (int)days, &root, &err);
	if (rc == CF_OK)
		rc = cli_write_key(key_path, key, phrase, &err);
	if (rc == CF_OK)
		rc = cf_cert_to_pem(root, &pem, &len, &err);
	if (rc == CF_OK)
		rc = cli_write_file(crt_path, pem, len, 0644, 1, &err);
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(root, fp, &err);
	if (rc == CF_OK)
		printf("created the root CA of \"%s\" in %s\n"
		       "  root.crt  certificate, valid %llu days\n"
		       "  root.key  private key (%s); keep it offline\n"
		       "  tenant    %s\n", org, dir, days,
		       phrase ? "encrypted" : "UNENCRYPTED", fp);
	OPENSSL_free(pem);
	X509_free(root);
	EVP_PKEY_free(key);
	cf_secret_free(phrase);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

static int ca_revoke(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'c' },
		{ "cert", required_argument, NULL, 'C' },
		{ "days", required_argument, NULL, 'D' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *cert_path = NULL;
	unsigned long long days = 365;
	char crt_path[PATH_MAX], key_path[PATH_MAX], crl_path[PATH_MAX];
	char cn[CF_CN_MAX_BYTES + 1] = "";
	cli_pass pass = { 0 };
	EVP_PKEY *key = NULL;
	X509 *root = NULL, *victim = NULL;
	X509_CRL *old = NULL, *crl = NULL;
	unsigned char *pem = NULL;
	size_t len = 0;
	cf_error err = { 0 };
	cf_status rc;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': dir = optarg; break;
		case 'C': cert_path = optarg; break;
		case 'D':
			if (cli_parse_uint("ca revoke", "--days", optarg, 3650, &days))
				return 2;
			break;
		case 'p': pass.file = optarg; break;
		case 'h': ca_usage(stdout); return 0;
		default: return cli_bad_option("ca revoke");
		}
	}
	if (optind != argc)
		return cli_usage("ca revoke", "unexpected argument \"%s\"", argv[optind]);
	if (dir == NULL)
		return cli_usage("ca revoke", "--ca DIR is required");
	if (!cli_path_in(crt_path, sizeof(crt_path), dir, "root.crt") ||
	    !cli_path_in(key_path, sizeof(key_path), dir, "root.key") ||
	    !cli_path_in(crl_path, sizeof(crl_path), dir, "crl.pem"))
		return cli_usage("ca revoke", "--ca is too long");
	rc = cli_load_cert(crt_path, &root, NULL, &err);
	if (rc == CF_OK && cert_path != NULL)
		rc = cli_load_cert(cert_path, &victim, NULL, &err);
	if (rc == CF_OK && access(crl_path, F_OK) == 0)
		rc = cli_load_crl(crl_path, &old, &err);
	if (rc == CF_OK && victim != NULL && cf_cert_kind(victim) == CF_KIND_ROOT)
		rc = cf_error_set(&err, CF_ERR_USAGE,
			"%s is a root certificate; a root cannot revoke itself "
			"(make a new CA instead)", cert_path);
	if (rc == CF_OK)
		rc = cli_load_key(key_path, &pass, &key, &err);
	if (rc == CF_OK)
		rc = cf_crl_update(root, key, old, victim, (int)days, &crl, &err);
	if (rc == CF_OK)
		rc = cf_crl_to_pem(crl, &pem, &len, &err);
	if (rc == CF_OK)
		rc = cli_write_file(crl_path, pem, len, 0644, 0, &err);
	if (rc == CF_OK) {
		if (victim != NULL) {
			cf_cert_cn(victim, cn, sizeof(cn));
			printf("revoked \"%s\" (%s); %s now lists %d certificate(s)\n",
			       cn, cert_path, crl_path,
			       sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)));
		} else {
			printf("%s %s (%d entries), valid %llu days\n",
			       old ? "re-signed" : "created", crl_path,
			       sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), days);
		}
	}
	OPENSSL_free(pem);
	X509_CRL_free(crl);
	X509_CRL_free(old);
	X509_free(victim);
	X509_free(root);
	EVP_PKEY_free(key);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

int cmd_ca(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "init", ca_init },
		{ "revoke", ca_revoke },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    ca_usage);
}
