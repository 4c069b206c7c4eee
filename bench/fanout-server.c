/*
 * fanout-server.c - bench/fanout-server's certificate maker: N agents of
 * one group, issued at run time by a root made by `coffer ca init`, for
 * bench/fanout-server.sh (issue 6, section 6).  Nothing it makes is ever
 * checked in.
 *
 *   fanout-server --ca DIR --n N --group G --out DIR
 *                 [--url URL --cacert F --cert F --key F]
 *
 * Each agent has a P-256 key of its own (cf_key_generate), a CSR and a
 * certificate of kind agent in group G issued by the root
 * (cf_csr_new, cf_cert_issue: what `coffer key new`, `csr new` and `cert
 * issue` do, without three processes per agent).  It writes into --out:
 *   agents.pem          the N certificates, PEM, in issue order (bench/fanout
 *                       --certs seals to these);
 *   first.crt/.key, last.crt/.key   agents 0 and N-1 with their keys
 *                       (the bench checks that both open their envelope);
 *   json/I.json         {"cert": PEM, "chain": []} per agent, the body of
 *                       POST /v1/certs;
 *   certs.curl          with --url: a curl config that posts them all as
 *                       the admin operator (--cert/--key), one transfer
 *                       per certificate (`curl --parallel -K certs.curl`).
 * The root's key must be unencrypted (`coffer ca init --no-passphrase`).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "pki.h"
#include "secmem.h"

static int fail(const char *what, const cf_error *err)
{
	fprintf(stderr, "fanout-server: %s%s%s\n", what, err ? ": " : "",
		err ? err->msg : "");
	return 1;
}

static char *pem_of(X509 *cert)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL, *text = NULL;
	long len;

	if (b != NULL && PEM_write_bio_X509(b, cert) &&
	    (len = BIO_get_mem_data(b, &p)) > 0 &&
	    (text = malloc((size_t)len + 1)) != NULL) {
		memcpy(text, p, (size_t)len);
		text[len] = '\0';
	}
	BIO_free(b);
	return text;
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (f == NULL)
		return 0;
	ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok;
}

static int write_key(const char *path, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (f == NULL)
		return 0;
	ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	return fclose(f) == 0 && ok;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: fanout-server --ca DIR --n N --group G --out DIR\n"
		"                     [--url URL --cacert F --cert F --key F]\n"
		"Issues N agent certificates of group G with the root in DIR\n"
		"(root.crt, unencrypted root.key); writes agents.pem, first/last\n"
		".crt/.key, json/I.json and, with --url, certs.curl into --out.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'a' },
		{ "n", required_argument, NULL, 'n' },
		{ "group", required_argument, NULL, 'g' },
		{ "out", required_argument, NULL, 'o' },
		{ "url", required_argument, NULL, 'u' },
		{ "cacert", required_argument, NULL, 'C' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ca = NULL, *group = NULL, *out = NULL, *url = NULL;
	const char *cacert = NULL, *opcert = NULL, *opkey = NULL;
	unsigned long n = 0;
	char path[4096];
	X509 *root = NULL;
	EVP_PKEY *root_key = NULL;
	FILE *f, *pems = NULL, *curl = NULL;
	cf_error err = { 0 };
	double t0 = now_s();
	int ch, rc = 1;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'a': ca = optarg; break;
		case 'n':
			errno = 0;
			n = strtoul(optarg, NULL, 10);
			if (errno || n == 0 || n > 1000000)
				return fail("--n must be 1 to 1000000", NULL);
			break;
		case 'g': group = optarg; break;
		case 'o': out = optarg; break;
		case 'u': url = optarg; break;
		case 'C': cacert = optarg; break;
		case 'c': opcert = optarg; break;
		case 'k': opkey = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (ca == NULL || n == 0 || group == NULL || out == NULL ||
	    (url != NULL && (cacert == NULL || opcert == NULL || opkey == NULL))) {
		usage(stderr);
		return 2;
	}
	if (cf_secmem_init(0, NULL, &err) != CF_OK || cf_pki_init(&err) != CF_OK)
		return fail("initialising", &err);
	snprintf(path, sizeof(path), "%s/root.crt", ca);
	if ((f = fopen(path, "r")) != NULL) {
		root = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/root.key", ca);
	if ((f = fopen(path, "r")) != NULL) {
		root_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (root == NULL || root_key == NULL) {
		fail("cannot read root.crt and an unencrypted root.key in --ca", NULL);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/json", out);
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		fail("cannot make the json directory", NULL);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/agents.pem", out);
	pems = fopen(path, "w");
	if (url != NULL) {
		snprintf(path, sizeof(path), "%s/certs.curl", out);
		curl = fopen(path, "w");
	}
	if (pems == NULL || (url != NULL && curl == NULL)) {
		fail("cannot write into --out", NULL);
		goto out;
	}
	for (unsigned long i = 0; i < n; i++) {
		const char *const groups[] = { group };
		const cf_cert_spec spec = { .kind = CF_KIND_AGENT, .groups = groups,
					    .n_groups = 1 };
		EVP_PKEY *key = NULL;
		X509_REQ *csr = NULL;
		X509 *cert = NULL;
		json_t *body = NULL;
		char cn[48], *pem = NULL;
		cf_status s;
		int ok;

		snprintf(cn, sizeof(cn), "%s-%05lu", group, i);
		s = cf_key_generate(&key, &err);
		if (s == CF_OK)
			s = cf_csr_new(key, cn, &csr, &err);
		if (s == CF_OK)
			s = cf_cert_issue(root, root_key, csr, &spec, &cert, &err);
		ok = s == CF_OK && (pem = pem_of(cert)) != NULL &&
		     fputs(pem, pems) >= 0;
		if (ok) {
			body = json_pack("{s:s, s:[]}", "cert", pem, "chain");
			snprintf(path, sizeof(path), "%s/json/%lu.json", out, i);
			ok = body != NULL && json_dump_file(body, path, 0) == 0;
		}
		if (ok && curl != NULL)
			ok = fprintf(curl, "url = \"%s/v1/certs\"\n"
				     "data-binary = \"@%s\"\n"
				     "header = \"Content-Type: application/json\"\n"
				     "cacert = \"%s\"\ncert = \"%s\"\nkey = \"%s\"\n"
				     "output = /dev/null\n"
				     "write-out = \"%%{http_code}\\n\"\n"
				     "silent\n%s", url, path, cacert, opcert, opkey,
				     i + 1 < n ? "next\n" : "") > 0;
		if (ok && (i == 0 || i + 1 == n)) {
			const char *which = i == 0 ? "first" : "last";

			snprintf(path, sizeof(path), "%s/%s.crt", out, which);
			ok = write_text(path, pem);
			snprintf(path, sizeof(path), "%s/%s.key", out, which);
			ok = ok && write_key(path, key);
		}
		json_decref(body);
		free(pem);
		X509_free(cert);
		X509_REQ_free(csr);
		EVP_PKEY_free(key);
		if (!ok) {
			fail(s != CF_OK ? "issuing an agent" : "writing an agent",
			     s != CF_OK ? &err : NULL);
			goto out;
		}
	}
	printf("issued %lu agent certificates of group %s in %.1f s\n", n, group,
	       now_s() - t0);
	rc = 0;
out:
	if (pems != NULL && fclose(pems) != 0)
		rc = 1;
	if (curl != NULL && fclose(curl) != 0)
		rc = 1;
	X509_free(root);
	EVP_PKEY_free(root_key);
	return rc;
}
