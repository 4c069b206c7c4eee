/*
 * sealing.c - what `seal`/`open` (offline) and `put`/`get` (through the
 * server) share: the plaintext's way in and out, the --verbose line about
 * an opened record, bulk progress.
 *
 * Invariant: the plaintext stays in a cf_secret; it is read with
 * cf_secret_read_fd and written with write(2) from secure memory (or by
 * cli_write_file), never through stdio's buffers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pki.h"
#include "sealing.h"

cf_status cli_plaintext_read(const char *path, const char *flag,
			     cf_secret **out, cf_error *err)
{
	int fd = STDIN_FILENO;
	cf_status rc;

	if (path != NULL && strcmp(path, "-") != 0) {
		fd = open(path, O_RDONLY);
		if (fd < 0)
			return cf_error_set(err, CF_ERR_IO, "cannot open %s: %s",
					    path, strerror(errno));
	} else if (isatty(STDIN_FILENO)) {
		return cf_error_set(err, CF_ERR_USAGE,
			"the secret is read from standard input, which is a "
			"terminal; pipe it in or give %s", flag);
	}
	rc = cf_secret_read_fd(fd, CF_SECRET_MAX_BYTES,
			       path ? path : "standard input", out, err);
	if (fd != STDIN_FILENO)
		close(fd);
	return rc;
}

static cf_status write_all(int fd, const unsigned char *p, size_t len,
			   cf_error *err)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return cf_error_set(err, CF_ERR_IO,
				"cannot write the secret to standard output: %s",
				strerror(errno));
		p += w;
		len -= (size_t)w;
	}
	return CF_OK;
}

cf_status cli_plaintext_write(const char *path, const cf_record *rec,
			      cf_error *err)
{
	if (path != NULL)
		return cli_write_file(path, cf_secret_cdata(rec->value),
				      cf_secret_len(rec->value), 0600, 0, err);
	return write_all(STDOUT_FILENO, cf_secret_cdata(rec->value),
			 cf_secret_len(rec->value), err);
}

void cli_opened_report(const cf_record *rec, X509 *signer)
{
	char cn[CF_CN_MAX_BYTES + 1], when[32];

	cf_cert_cn(signer, cn, sizeof(cn));
	cli_unix_iso((long long)rec->created, when, sizeof(when));
	fprintf(stderr, "coffer: opened \"%s\" version %llu (%s, %zu bytes), "
		"signed by \"%s\" at %s\n", rec->name,
		(unsigned long long)rec->version,
		cf_record_type_name(rec->type), cf_secret_len(rec->value),
		cn, when);
}

void cli_progress(const char *what, size_t done, size_t total)
{
	if (total < 100 || !isatty(STDERR_FILENO))
		return;
	if (done % 100 != 0 && done != total)
		return;
	fprintf(stderr, "\r%s %zu/%zu", what, done, total);
	if (done == total)
		fputc('\n', stderr);
}
