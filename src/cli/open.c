/*
 * open.c - `coffer open`: decrypt an envelope, verify the record and print
 * the secret's bytes to standard output, and nothing else.
 *
 * Every refusal of docs/FORMAT.md has its own exit code; a refused
 * envelope prints nothing on stdout.  The secret goes from secure memory
 * straight to write(2), bypassing stdio's buffer.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "envelope.h"
#include "pki.h"
#include "sealing.h"

static void open_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer open --name NAME --cert C --key K --root ROOT [--crl CRL]\n"
		"                   [--min-version V] [--in FILE] [--pass-file F]\n"
		"                   [--verbose]\n"
		"\n"
		"Decrypts the envelope (--in FILE, or standard input) with the key\n"
		"K of certificate C, verifies the signed record against ROOT (and\n"
		"CRL): signer chain, revocation, secret.write on NAME, the name,\n"
		"and version >= V.  Prints the secret's bytes and nothing else.\n"
		"--verbose says on stderr what was opened.  Exit codes 10-21 name\n"
		"the reason of a refusal (docs/EXIT-CODES.md).\n");
}

int cmd_open(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "root", required_argument, NULL, 'r' },
		{ "crl", required_argument, NULL, 'l' },
		{ "min-version", required_argument, NULL, 'm' },
		{ "in", required_argument, NULL, 'i' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *cert_path = NULL, *key_path = NULL;
	const char *root_path = NULL, *crl_path = NULL, *in = "-";
	unsigned long long min_version = 0;
	cli_pass pass = { 0 };
	X509 *cert = NULL, *root = NULL, *signer = NULL;
	X509_CRL *crl = NULL;
	EVP_PKEY *key = NULL;
	cf_trust *trust = NULL;
	cf_record *rec = NULL;
	unsigned char *der = NULL;
	size_t der_len = 0;
	cf_error err = { 0 };
	cf_status rc;
	int c, verbose = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 'c': cert_path = optarg; break;
		case 'k': key_path = optarg; break;
		case 'r': root_path = optarg; break;
		case 'l': crl_path = optarg; break;
		case 'm':
			if (cli_parse_uint("open", "--min-version", optarg,
					   ((unsigned long long)1 << 53) - 1, &min_version))
				return 2;
			break;
		case 'i': in = optarg; break;
		case 'p': pass.file = optarg; break;
		case 'V': verbose = 1; break;
		case 'h': open_usage(stdout); return 0;
		default: return cli_bad_option("open");
		}
	}
	if (optind != argc)
		return cli_usage("open", "unexpected argument \"%s\"", argv[optind]);
	if (name == NULL || cert_path == NULL || key_path == NULL || root_path == NULL)
		return cli_usage("open", "--name, --cert, --key and --root are required");

	if (strcmp(in, "-") == 0 && isatty(STDIN_FILENO))
		return cli_usage("open", "the envelope is read from standard input, "
				 "which is a terminal; give --in FILE or pipe it in");
	rc = cli_load_cert(cert_path, &cert, NULL, &err);
	if (rc == CF_OK)
		rc = cli_load_cert(root_path, &root, NULL, &err);
	if (rc == CF_OK && crl_path != NULL)
		rc = cli_load_crl(crl_path, &crl, &err);
	if (rc == CF_OK)
		rc = cf_trust_new(root, crl, &trust, &err);
	if (rc == CF_OK)
		rc = cli_read_file(in, CF_ENVELOPE_MAX_BYTES, &der, &der_len, &err);
	if (rc == CF_OK)
		rc = cli_load_key(key_path, &pass, &key, &err);
	if (rc == CF_OK)
		rc = cf_envelope_open(der, der_len, cert, key, trust, name,
				      min_version, &rec, &signer, &err);
	if (rc == CF_OK)
		rc = cli_plaintext_write(NULL, rec, &err);
	if (rc == CF_OK && verbose)
		cli_opened_report(rec, signer);
	cf_record_free(rec);
	OPENSSL_free(der);
	cf_trust_free(trust);
	EVP_PKEY_free(key);
	X509_CRL_free(crl);
	X509_free(signer);
	X509_free(root);
	X509_free(cert);
	return rc == CF_OK ? 0 : cli_fail(&err);
}
