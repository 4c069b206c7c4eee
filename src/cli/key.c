/*
 * key.c - `coffer key new`: a P-256 private key in a file of mode 0600.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pki.h"

static void key_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer key new --out KEY [--pass-file F | --no-passphrase]\n"
		"\n"
		"Makes a P-256 private key and writes it to KEY (PEM PKCS#8, mode\n"
		"0600; encrypted with scrypt + AES-256 unless --no-passphrase).\n"
		"An existing file is never overwritten.\n"
		"\n"
		"  --out KEY          where to write the key\n"
		"  --pass-file F      passphrase: first line of F (else the\n"
		"                     COFFER_PASSPHRASE variable, else a prompt)\n"
		"  --no-passphrase    store the key unencrypted\n");
}

static int key_new(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "no-passphrase", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	cli_pass pass = { 0 };
	const char *out = NULL;
	cf_secret *phrase = NULL;
	EVP_PKEY *key = NULL;
	cf_error err = { 0 };
	cf_status rc;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'p': pass.file = optarg; break;
		case 'n': pass.none = 1; break;
		case 'h': key_usage(stdout); return 0;
		default: return cli_bad_option("key new");
		}
	}
	if (optind != argc)
		return cli_usage("key new", "unexpected argument \"%s\"", argv[optind]);
	if (out == NULL)
		return cli_usage("key new", "--out KEY is required");
	rc = cli_pass_for_new_key(&pass, out, &phrase, &err);
	if (rc == CF_OK)
		rc = cf_key_generate(&key, &err);
	if (rc == CF_OK)
		rc = cli_write_key(out, key, phrase, &err);
	if (rc == CF_OK)
		printf("wrote a P-256 private key to %s (%s)\n", out,
		       phrase ? "encrypted" : "unencrypted");
	cf_secret_free(phrase);
	EVP_PKEY_free(key);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

int cmd_key(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "new", key_new },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    key_usage);
}
