/*
 * cli.c - plumbing shared by the subcommands: exit codes, files,
 * passphrases.  Passphrases are read into secure memory only; a file
 * passphrase is its first line (a trailing newline is not part of it).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pki.h"

#define PASS_MAX_BYTES 1024

int cli_exit_code(cf_status rc)
{
	switch (rc) {
	case CF_OK: return 0;
	case CF_ERR_NOMEM:
	case CF_ERR_CRYPTO: return 1;
	case CF_ERR_USAGE: return 2;
	case CF_ERR_IO: return 3;
	case CF_ERR_PARSE: return 4;
	case CF_ERR_TOO_LARGE: return 5;
	case CF_ERR_PASSPHRASE: return 6;
	case CF_ERR_POLICY: return 7;
	case CF_ERR_EXISTS: return 8;
	case CF_ERR_TRUNCATED: return 10;
	case CF_ERR_MALFORMED: return 11;
	case CF_ERR_NOT_RECIPIENT: return 12;
	case CF_ERR_UNDECRYPTABLE: return 13;
	case CF_ERR_TAMPERED: return 14;
	case CF_ERR_SIGNATURE: return 15;
	case CF_ERR_UNTRUSTED: return 16;
	case CF_ERR_REVOKED: return 17;
	case CF_ERR_PERMISSION: return 18;
	case CF_ERR_NAME: return 19;
	case CF_ERR_ROLLBACK: return 20;
	case CF_ERR_RECORD: return 21;
	case CF_ERR_NOT_FOUND: return 9;
	case CF_ERR_CONFLICT: return 22;
	case CF_ERR_DENIED: return 23;
	case CF_ERR_NETWORK: return 24;
	case CF_ERR_SERVER: return 25;
	case CF_ERR_TOKEN: return 26;
	case CF_ERR_TIMEOUT: return 27;
	case CF_ERR_REJECTED: return 28;
	case CF_ERR_STORE: return 29;
	case CF_ERR_LIMIT: return 30;
	case CF_ERR_AUDIT: return 31;
	case CF_ERR_STALE: return 32;
	case CF_ERR_EXPIRED: return 33;
	case CF_ERR_REPLAY: return 34;
	case CF_ERR_FAILED: return 35;
	}
	return 1;
}

int cli_fail(const cf_error *err)
{
	fprintf(stderr, "coffer: %s\n", err->msg[0] ? err->msg : "failed");
	return cli_exit_code(err->code);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "coffer %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; see 'coffer %s --help'\n", cmd);
	return 2;
}

int cli_bad_option(const char *cmd)
{
	/* getopt has already named the option; add where to look. */
	fprintf(stderr, "coffer %s: see 'coffer %s --help'\n", cmd, cmd);
	return 2;
}

int cli_parse_uint(const char *cmd, const char *opt, const char *text,
		   unsigned long long max, unsigned long long *out)
{
	char *end = NULL;
	unsigned long long v;

	errno = 0;
	if (text[0] < '0' || text[0] > '9')
		return cli_usage(cmd, "%s needs a positive whole number, not \"%s\"",
				 opt, text);
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > max)
		return cli_usage(cmd, "%s must be a whole number from 1 to %llu, "
				 "not \"%s\"", opt, max, text);
	*out = v;
	return 0;
}

int cli_dispatch(int argc, char **argv, const cli_sub *subs, size_t n_subs,
		 void (*usage)(FILE *out))
{
	if (argc >= 2) {
		for (size_t i = 0; i < n_subs; i++)
			if (strcmp(argv[1], subs[i].name) == 0)
				return subs[i].fn(argc - 1, argv + 1);
		if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		fprintf(stderr, "coffer %s: unknown subcommand \"%s\"\n",
			argv[0], argv[1]);
	}
	usage(stderr);
	return 2;
}

void cli_iso_time(const ASN1_TIME *t, char *buf, size_t size)
{
	if (t == NULL) {
		snprintf(buf, size, "-");
		return;
	}
	cli_unix_iso((long long)cf_asn1_time_unix(t), buf, size);
}

void cli_unix_iso(long long t, char *buf, size_t size)
{
	time_t secs = (time_t)t;
	struct tm tm;

	if (gmtime_r(&secs, &tm) == NULL) {
		snprintf(buf, size, "-");
		return;
	}
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

char *cli_int_hex(const ASN1_INTEGER *i)
{
	BIGNUM *bn = i ? ASN1_INTEGER_to_BN(i, NULL) : NULL;
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	BN_free(bn);
	return hex;
}

int cli_path_in(char *buf, size_t size, const char *dir, const char *file)
{
	int n = snprintf(buf, size, "%s/%s", dir, file);

	return n > 0 && (size_t)n < size;
}

const char *cli_printable(const char *s, char *buf, size_t size)
{
	size_t j = 0;

	if (size == 0)
		return "";
	for (size_t i = 0; s != NULL && s[i] != '\0' && j + 1 < size; i++) {
		unsigned char ch = (unsigned char)s[i];

		buf[j++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	buf[j] = '\0';
	return buf;
}

const char *cli_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

cf_status cli_read_file(const char *path, size_t max, unsigned char **buf,
			size_t *len, cf_error *err)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	unsigned char *data = NULL;
	size_t used = 0, cap = 0;
	cf_status rc = CF_OK;

	*buf = NULL;
	*len = 0;
	if (f == NULL)
		return cf_error_set(err, CF_ERR_IO, "cannot open %s: %s", path,
				    strerror(errno));
	for (;;) {
		size_t got;

		if (used == cap) {
			unsigned char *grown;

			if (cap > max) {
				rc = cf_error_set(err, CF_ERR_TOO_LARGE,
					"%s is larger than the limit of %zu bytes",
					path, max);
				goto out;
			}
			cap = cap ? cap * 2 : 8192;
			grown = OPENSSL_realloc(data, cap + 1);
			if (grown == NULL) {
				rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
				goto out;
			}
			data = grown;
		}
		got = fread(data + used, 1, cap - used, f);
		used += got;
		if (got == 0) {
			if (ferror(f))
				rc = cf_error_set(err, CF_ERR_IO, "cannot read %s: %s",
						  path, strerror(errno));
			break;
		}
	}
	if (rc == CF_OK && used > max)
		rc = cf_error_set(err, CF_ERR_TOO_LARGE,
			"%s is %zu bytes, above the limit of %zu bytes",
			path, used, max);
out:
	if (f != stdin)
		fclose(f);
	if (rc != CF_OK) {
		OPENSSL_free(data);
		return rc;
	}
	data[used] = '\0';
	*buf = data;
	*len = used;
	return CF_OK;
}

static cf_status fsync_dir(const char *path, cf_error *err)
{
	char *copy = OPENSSL_strdup(path);
	int fd;

	if (copy == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
	OPENSSL_free(copy);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	return CF_OK;
}

cf_status cli_write_file(const char *path, const void *data, size_t len,
			 int mode, int exclusive, cf_error *err)
{
	char tmp[PATH_MAX];
	const unsigned char *p = data;
	size_t left = len;
	cf_status rc = CF_OK;
	int fd, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return cf_error_set(err, CF_ERR_USAGE, "path too long: %s", path);
	if (exclusive && access(path, F_OK) == 0)
		return cf_error_set(err, CF_ERR_EXISTS,
			"%s already exists; remove it first or choose another "
			"path", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "cannot create a file next to "
				    "%s: %s", path, strerror(errno));
	if (fchmod(fd, (mode_t)mode) != 0) {
		rc = cf_error_set(err, CF_ERR_IO, "cannot set the mode of %s: %s",
				  tmp, strerror(errno));
		goto fail;
	}
	while (left > 0) {
		ssize_t w = write(fd, p, left);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = cf_error_set(err, CF_ERR_IO, "cannot write %s: %s",
					  path, strerror(errno));
			goto fail;
		}
		p += w;
		left -= (size_t)w;
	}
	if (fsync(fd) != 0) {
		rc = cf_error_set(err, CF_ERR_IO, "cannot sync %s: %s", path,
				  strerror(errno));
		goto fail;
	}
	close(fd);
	fd = -1;
	if (exclusive) {
		if (link(tmp, path) != 0) {
			rc = cf_error_set(err, errno == EEXIST ? CF_ERR_EXISTS : CF_ERR_IO,
				"cannot create %s: %s", path, strerror(errno));
			goto fail;
		}
		unlink(tmp);
	} else if (rename(tmp, path) != 0) {
		rc = cf_error_set(err, CF_ERR_IO, "cannot replace %s: %s", path,
				  strerror(errno));
		goto fail;
	}
	return fsync_dir(path, err);
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

cf_status cli_mkdir(const char *dir, int mode, cf_error *err)
{
	struct stat st;

	if (mkdir(dir, (mode_t)mode) == 0)
		return CF_OK;
	if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return CF_OK;
	return cf_error_set(err, CF_ERR_IO, "cannot create directory %s: %s",
			    dir, strerror(errno));
}

/* The first line of a file, into secure memory. */
static cf_status pass_from_file(const char *path, cf_secret **out,
				cf_error *err)
{
	int fd = open(path, O_RDONLY);
	cf_secret *s = NULL;
	unsigned char *nl;
	cf_status rc;

	*out = NULL;
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "cannot open passphrase file "
				    "%s: %s", path, strerror(errno));
	rc = cf_secret_read_fd(fd, PASS_MAX_BYTES, "the passphrase file", &s, err);
	close(fd);
	if (rc != CF_OK)
		return rc;
	nl = memchr(cf_secret_data(s), '\n', cf_secret_len(s));
	if (nl != NULL) {
		size_t len = (size_t)(nl - cf_secret_data(s));

		if (len > 0 && cf_secret_data(s)[len - 1] == '\r')
			len--;
		cf_secret_set_len(s, len, NULL);
	}
	if (cf_secret_len(s) == 0) {
		cf_secret_free(s);
		return cf_error_set(err, CF_ERR_PASSPHRASE,
			"passphrase file %s is empty; use --no-passphrase to "
			"store a key unencrypted", path);
	}
	*out = s;
	return CF_OK;
}

static cf_status pass_from_env(cf_secret **out, cf_error *err)
{
	const char *env = getenv("COFFER_PASSPHRASE");

	*out = NULL;
	if (env == NULL || env[0] == '\0')
		return CF_OK;
	*out = cf_secret_from(env, strlen(env));
	if (*out == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	return CF_OK;
}

static cf_status pass_from_tty(const char *prompt, int confirm,
			       cf_secret **out, cf_error *err)
{
	char buf[PASS_MAX_BYTES + 1];
	cf_status rc = CF_OK;

	*out = NULL;
	if (EVP_read_pw_string_min(buf, 8, sizeof(buf), prompt, confirm) != 0) {
		rc = cf_error_set(err, CF_ERR_PASSPHRASE,
			"no passphrase was entered (at least 8 characters, "
			"and both entries must match)");
		goto out;
	}
	*out = cf_secret_from(buf, strlen(buf));
	if (*out == NULL)
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

cf_status cli_pass_for_new_key(const cli_pass *pass, const char *what,
			       cf_secret **out, cf_error *err)
{
	char prompt[256];
	cf_status rc;

	*out = NULL;
	if (pass->none && pass->file != NULL)
		return cf_error_set(err, CF_ERR_USAGE,
			"--no-passphrase and --pass-file exclude each other");
	if (pass->none)
		return CF_OK;
	if (pass->file != NULL)
		return pass_from_file(pass->file, out, err);
	rc = pass_from_env(out, err);
	if (rc != CF_OK || *out != NULL)
		return rc;
	if (!isatty(STDIN_FILENO))
		return cf_error_set(err, CF_ERR_PASSPHRASE,
			"%s needs a passphrase: give --pass-file FILE, set "
			"COFFER_PASSPHRASE, or say --no-passphrase to store it "
			"unencrypted", what);
	snprintf(prompt, sizeof(prompt), "Passphrase for %s: ", what);
	return pass_from_tty(prompt, 1, out, err);
}

cf_status cli_pass_to_open(const cli_pass *pass, const char *what,
			   cf_secret **out, cf_error *err)
{
	char prompt[256];
	cf_status rc;

	*out = NULL;
	if (pass->file != NULL)
		return pass_from_file(pass->file, out, err);
	rc = pass_from_env(out, err);
	if (rc != CF_OK || *out != NULL)
		return rc;
	if (!isatty(STDIN_FILENO))
		return cf_error_set(err, CF_ERR_PASSPHRASE, "%s needs its "
			"password: give --pass-file FILE or set COFFER_PASSPHRASE",
			what);
	snprintf(prompt, sizeof(prompt), "Password of %s: ", what);
	return pass_from_tty(prompt, 0, out, err);
}

cf_status cli_load_key(const char *path, const cli_pass *pass, EVP_PKEY **out,
		       cf_error *err)
{
	unsigned char *pem = NULL;
	size_t len = 0;
	cf_secret *phrase = NULL, *text = NULL;
	cf_status rc;
	int fd;

	*out = NULL;
	/* The key file may be unencrypted: read it into secure memory. */
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "cannot open key %s: %s",
				    path, strerror(errno));
	rc = cf_secret_read_fd(fd, CF_PEM_MAX_BYTES, path, &text, err);
	close(fd);
	if (rc != CF_OK)
		return rc;
	pem = cf_secret_data(text);
	len = cf_secret_len(text);
	if (cf_key_pem_is_encrypted(pem, len)) {
		if (pass->file != NULL)
			rc = pass_from_file(pass->file, &phrase, err);
		else
			rc = pass_from_env(&phrase, err);
		if (rc == CF_OK && phrase == NULL && isatty(STDIN_FILENO)) {
			char prompt[PATH_MAX + 32];

			snprintf(prompt, sizeof(prompt), "Passphrase for %s: ", path);
			rc = pass_from_tty(prompt, 0, &phrase, err);
		}
	}
	if (rc == CF_OK)
		rc = cf_key_from_pem(pem, len, phrase, path, out, err);
	cf_secret_free(phrase);
	cf_secret_free(text);
	return rc;
}

cf_status cli_write_key(const char *path, EVP_PKEY *key, const cf_secret *pass,
			cf_error *err)
{
	cf_secret *pem = NULL;
	cf_status rc = cf_key_to_pem(key, pass, &pem, err);

	if (rc == CF_OK)
		rc = cli_write_file(path, cf_secret_cdata(pem), cf_secret_len(pem),
				    0600, 1, err);
	cf_secret_free(pem);
	return rc;
}

cf_status cli_load_cert(const char *path, X509 **out, STACK_OF(X509) **chain,
			cf_error *err)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	cf_status rc = cli_read_file(path, CF_PEM_MAX_BYTES, &buf, &len, err);

	if (rc == CF_OK)
		rc = cf_cert_parse(buf, len, path, out, chain, err);
	OPENSSL_free(buf);
	return rc;
}

cf_status cli_load_crl(const char *path, X509_CRL **out, cf_error *err)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	cf_status rc = cli_read_file(path, CF_CRL_MAX_BYTES, &buf, &len, err);

	if (rc == CF_OK)
		rc = cf_crl_parse(buf, len, path, out, err);
	OPENSSL_free(buf);
	return rc;
}
