/*
 * fixture.c - the test-time PKI of fixture.h.
 *
 * Goes through the library's own calls (cf_key_generate, cf_csr_new,
 * cf_cert_issue, cf_crl_update) so that a fixture is exactly what the
 * coffer program would have made; only fx_add_utf8_ext and fx_other_key
 * step outside, for certificates and keys the library refuses to make.
 */
#include "fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "secmem.h"

int fx_group_setup(void **state)
{
	cf_error err = { 0 };

	(void)state;
	if (cf_secmem_init(0, NULL, &err) != CF_OK ||
	    cf_pki_init(&err) != CF_OK) {
		print_error("group setup: %s\n", err.msg);
		return -1;
	}
	return 0;
}

EVP_PKEY *fx_key(void)
{
	cf_error err = { 0 };
	EVP_PKEY *key = NULL;

	assert_status(CF_OK, cf_key_generate(&key, &err), &err);
	assert_non_null(key);
	return key;
}

EVP_PKEY *fx_other_key(const char *what)
{
	EVP_PKEY *key = NULL;

	if (strcmp(what, "RSA") == 0)
		key = EVP_RSA_gen(1024);
	else
		key = EVP_EC_gen(what);
	assert_non_null(key);
	return key;
}

X509 *fx_root(EVP_PKEY *key, const char *org, int days)
{
	cf_error err = { 0 };
	X509 *root = NULL;

	assert_status(CF_OK, cf_ca_create(key, org, days, &root, &err), &err);
	assert_non_null(root);
	return root;
}

X509 *fx_issue(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
	       const char *cn, const cf_cert_spec *spec)
{
	cf_error err = { 0 };
	X509_REQ *csr = NULL;
	X509 *cert = NULL;

	assert_status(CF_OK, cf_csr_new(key, cn, &csr, &err), &err);
	assert_status(CF_OK, cf_cert_issue(issuer, issuer_key, csr, spec, &cert,
					   &err), &err);
	X509_REQ_free(csr);
	assert_non_null(cert);
	return cert;
}

X509 *fx_holder(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
		cf_kind kind, const char *cn, const char *rule1,
		const char *rule2)
{
	const char *rules[2] = { rule1, rule2 };
	cf_cert_spec spec = { .kind = kind, .perms = rules,
			      .n_perms = rule2 ? 2 : 1 };

	return fx_issue(issuer, issuer_key, key, cn, &spec);
}

X509 *fx_agent(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
	       const char *cn, const char *group)
{
	const char *groups[1] = { group };
	cf_cert_spec spec = { .kind = CF_KIND_AGENT, .groups = groups,
			      .n_groups = 1 };

	return fx_issue(issuer, issuer_key, key, cn, &spec);
}

X509_CRL *fx_crl(X509 *root, EVP_PKEY *root_key, X509 *revoke1, X509 *revoke2)
{
	cf_error err = { 0 };
	X509_CRL *first = NULL, *second = NULL;

	assert_status(CF_OK, cf_crl_update(root, root_key, NULL, revoke1, 30,
					   &first, &err), &err);
	if (revoke2 == NULL)
		return first;
	assert_status(CF_OK, cf_crl_update(root, root_key, first, revoke2, 30,
					   &second, &err), &err);
	X509_CRL_free(first);
	return second;
}

void fx_add_utf8_ext(X509 *cert, int nid, const char *text)
{
	ASN1_UTF8STRING *str = ASN1_UTF8STRING_new();
	ASN1_OCTET_STRING *data = ASN1_OCTET_STRING_new();
	X509_EXTENSION *ext = NULL;
	unsigned char *der = NULL;
	int der_len;

	assert_non_null(str);
	assert_non_null(data);
	assert_true(ASN1_STRING_set(str, text, (int)strlen(text)));
	der_len = i2d_ASN1_UTF8STRING(str, &der);
	assert_true(der_len > 0);
	assert_true(ASN1_OCTET_STRING_set(data, der, der_len));
	ext = X509_EXTENSION_create_by_NID(NULL, nid, 0, data);
	assert_non_null(ext);
	assert_true(X509_add_ext(cert, ext, -1));
	X509_EXTENSION_free(ext);
	OPENSSL_free(der);
	ASN1_OCTET_STRING_free(data);
	ASN1_UTF8STRING_free(str);
}

unsigned char *fx_cert_der(X509 *cert, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_X509(cert, &der);

	assert_true(n > 0);
	*len = (size_t)n;
	return der;
}

void fx_remove_tree(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	struct stat st;
	DIR *d = opendir(dir);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		int n;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		n = snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (n < 0 || (size_t)n >= sizeof(path))
			continue;
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			fx_remove_tree(path);
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

const char *fx_fp_of(char c)
{
	static char bufs[128][65];
	char *b = bufs[(unsigned char)c & 127];

	memset(b, c, 64);
	b[64] = '\0';
	return b;
}

int fx_run(char *const argv[], const char *out_path)
{
	int status, in, out;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		in = open("/dev/null", O_RDONLY);
		out = open(out_path ? out_path : "/dev/null",
			   O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (in < 0 || out < 0 || dup2(in, STDIN_FILENO) < 0 ||
		    dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
		return -1;
	return WEXITSTATUS(status);
}
