/*
 * csr.c - `coffer csr new`: a certificate request for a key, so that the
 * key never has to leave the machine that made it.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pki.h"

static void csr_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer csr new --key KEY --name CN --out CSR [--pass-file F]\n"
		"\n"
		"Makes a certificate request (PEM) for KEY with common name CN,\n"
		"to be signed with 'coffer cert issue'.\n"
		"\n"
		"  --key KEY        the private key (coffer key new)\n"
		"  --name CN        the name: an agent's host name, an operator's name\n"
		"  --out CSR        where to write the request\n"
		"  --pass-file F    passphrase of KEY if encrypted (else\n"
		"                   COFFER_PASSPHRASE, else a prompt)\n");
}

static int csr_new(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "name", required_argument, NULL, 'n' },
		{ "out", required_argument, NULL, 'o' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	cli_pass pass = { 0 };
	const char *key_path = NULL, *cn = NULL, *out = NULL;
	EVP_PKEY *key = NULL;
	X509_REQ *req = NULL;
	unsigned char *pem = NULL;
	size_t len = 0;
	cf_error err = { 0 };
	cf_status rc;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key_path = optarg; break;
		case 'n': cn = optarg; break;
		case 'o': out = optarg; break;
		case 'p': pass.file = optarg; break;
		case 'h': csr_usage(stdout); return 0;
		default: return cli_bad_option("csr new");
		}
	}
	if (optind != argc)
		return cli_usage("csr new", "unexpected argument \"%s\"", argv[optind]);
	if (key_path == NULL || cn == NULL || out == NULL)
		return cli_usage("csr new", "--key, --name and --out are required");
	rc = cli_load_key(key_path, &pass, &key, &err);
	if (rc == CF_OK)
		rc = cf_csr_new(key, cn, &req, &err);
	if (rc == CF_OK)
		rc = cf_csr_to_pem(req, &pem, &len, &err);
	if (rc == CF_OK)
		rc = cli_write_file(out, pem, len, 0644, 0, &err);
	if (rc == CF_OK)
		printf("wrote a certificate request for \"%s\" to %s\n", cn, out);
	OPENSSL_free(pem);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

int cmd_csr(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "new", csr_new },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    csr_usage);
}
