/*
 * sealing.c - what `seal`/`open` (offline) and `put`/`get` (through the
 * server) share: the plaintext's way in and out, the --verbose line about
 * an opened record, bulk progress, and the sealing pool of large fan-outs.
 *
 * Invariant: the plaintext stays in a cf_secret; it is read with
 * cf_secret_read_fd and written with write(2) from secure memory (or by
 * cli_write_file), never through stdio's buffers.
 *
 * The sealing pool keeps these invariants (under its mutex): recipients
 * are claimed in increasing index order, in blocks, and never further
 * than `window` ahead of the consumer, so slot i % window is free when
 * index i is claimed; the consumer takes index `taken` only once its slot
 * is filled, so the output order is the recipients' order; after a
 * failure at index f no new block is claimed, every index below f is
 * already claimed and gets filled, so the consumer always reaches f.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

static void with_commas(size_t v, char *buf, size_t size)
{
	char digits[32];
	size_t n = (size_t)snprintf(digits, sizeof(digits), "%zu", v), j = 0;

	for (size_t i = 0; i < n && j + 2 < size; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			buf[j++] = ',';
		buf[j++] = digits[i];
	}
	buf[j] = '\0';
}

void cli_progress_bar(const char *what, size_t done, const char *what2,
		      size_t done2, size_t total)
{
	static struct timespec last;
	struct timespec now;
	char bar[31], a[32], b[32], c[32];
	size_t fill;

	if (total < 100 || !isatty(STDERR_FILENO))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (done2 < total && (now.tv_sec - last.tv_sec) * 1000 +
	    (now.tv_nsec - last.tv_nsec) / 1000000 < 100)
		return;
	last = now;
	fill = (done > total ? total : done) * (sizeof(bar) - 1) / total;
	memset(bar, '#', fill);
	memset(bar + fill, ' ', sizeof(bar) - 1 - fill);
	bar[sizeof(bar) - 1] = '\0';
	with_commas(done, a, sizeof(a));
	with_commas(total, b, sizeof(b));
	with_commas(done2, c, sizeof(c));
	fprintf(stderr, "\r%s [%s] %s/%s, %s %s ", what, bar, a, b, what2, c);
	if (done2 >= total)
		fputc('\n', stderr);
}

/* ---------------------------------------------------------- threads */

static size_t threads_chosen;

void cli_threads_set(size_t n)
{
	threads_chosen = n > CLI_THREADS_MAX ? CLI_THREADS_MAX : n;
}

size_t cli_threads(void)
{
	long cpus;

	if (threads_chosen > 0)
		return threads_chosen;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1)
		return 1;
	return cpus > CLI_THREADS_MAX ? CLI_THREADS_MAX : (size_t)cpus;
}

/* ------------------------------------------------------ sealing pool */

#define POOL_BLOCK 8              /* recipients claimed at once */

enum { SLOT_EMPTY, SLOT_READY, SLOT_FAILED };

struct slot {
	unsigned char *der;
	size_t len;
	int state;
};

struct cli_sealpool {
	pthread_mutex_t mu;
	pthread_cond_t ready;     /* a slot was filled (the consumer waits) */
	pthread_cond_t space;     /* the consumer moved on (workers wait) */
	X509 *const *certs;
	size_t n, window;
	size_t next;              /* first index nobody claimed */
	size_t taken;             /* the consumer's next index */
	size_t fail_at;           /* lowest failed index; n if none */
	cf_error fail_err;        /* its error */
	int stop;                 /* the consumer is gone */
	struct slot *slots;       /* window of them; index i in i % window */
	cf_sealer *inline_sealer; /* threads <= 1: the caller's, borrowed */
	size_t n_threads, started;
	pthread_t *tids;
	cf_sealer **sealers;      /* one per thread, owned */
};

struct worker_arg {
	cli_sealpool *pool;
	cf_sealer *sealer;
};

static void *pool_worker(void *arg)
{
	cli_sealpool *p = ((struct worker_arg *)arg)->pool;
	cf_sealer *sealer = ((struct worker_arg *)arg)->sealer;
	int quit = 0;

	free(arg);
	while (!quit) {
		size_t lo, hi;

		pthread_mutex_lock(&p->mu);
		while (!p->stop && p->next < p->n && p->fail_at == p->n &&
		       p->next >= p->taken + p->window)
			pthread_cond_wait(&p->space, &p->mu);
		if (p->stop || p->next >= p->n || p->fail_at < p->n) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		lo = p->next;
		hi = lo + POOL_BLOCK;
		if (hi > p->n)
			hi = p->n;
		if (hi > p->taken + p->window)
			hi = p->taken + p->window;
		p->next = hi;
		pthread_mutex_unlock(&p->mu);
		for (size_t i = lo; i < hi && !quit; i++) {
			unsigned char *der = NULL;
			size_t len = 0;
			cf_error err = { 0 };
			cf_status rc = cf_sealer_seal(sealer, p->certs[i], &der,
						      &len, &err);
			struct slot *s = &p->slots[i % p->window];

			pthread_mutex_lock(&p->mu);
			if (rc == CF_OK) {
				s->der = der;
				s->len = len;
				s->state = SLOT_READY;
			} else {
				s->state = SLOT_FAILED;
				if (i < p->fail_at) {
					p->fail_at = i;
					p->fail_err = err;
				}
				/* Nobody claims more; waiting workers leave. */
				pthread_cond_broadcast(&p->space);
				quit = 1;
			}
			if (i == p->taken)
				pthread_cond_signal(&p->ready);
			quit |= p->stop;
			pthread_mutex_unlock(&p->mu);
		}
	}
	return NULL;
}

cf_status cli_sealpool_start(cf_sealer *sealer, X509 *const *certs, size_t n,
			     size_t threads, size_t window, cli_sealpool **out,
			     cf_error *err)
{
	cli_sealpool *p = calloc(1, sizeof(*p));
	cf_status rc = CF_OK;

	*out = NULL;
	if (p == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (threads > n)
		threads = n;
	if (threads > CLI_THREADS_MAX)
		threads = CLI_THREADS_MAX;
	if (window < POOL_BLOCK)
		window = POOL_BLOCK;
	p->certs = certs;
	p->n = n;
	p->window = window;
	p->fail_at = n;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->ready, NULL);
	pthread_cond_init(&p->space, NULL);
	if (threads <= 1) {
		p->inline_sealer = sealer;
		*out = p;
		return CF_OK;
	}
	p->slots = calloc(window, sizeof(*p->slots));
	p->tids = calloc(threads, sizeof(*p->tids));
	p->sealers = calloc(threads, sizeof(*p->sealers));
	if (p->slots == NULL || p->tids == NULL || p->sealers == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	p->n_threads = threads;
	for (size_t t = 0; rc == CF_OK && t < threads; t++)
		rc = cf_sealer_dup(sealer, &p->sealers[t], err);
	for (size_t t = 0; rc == CF_OK && t < threads; t++) {
		struct worker_arg *a = malloc(sizeof(*a));
		int e;

		if (a == NULL) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
			break;
		}
		a->pool = p;
		a->sealer = p->sealers[t];
		e = pthread_create(&p->tids[t], NULL, pool_worker, a);
		if (e != 0) {
			free(a);
			rc = cf_error_set(err, CF_ERR_NOMEM, "cannot start a "
					  "sealing thread: %s", strerror(e));
			break;
		}
		p->started++;
	}
out:
	if (rc != CF_OK) {
		cli_sealpool_free(p);
		return rc;
	}
	*out = p;
	return CF_OK;
}

cf_status cli_sealpool_next(cli_sealpool *p, unsigned char **der, size_t *len,
			    cf_error *err)
{
	struct slot *s;
	cf_status rc = CF_OK;

	size_t fail_at;

	*der = NULL;
	*len = 0;
	/* fail_at is the workers' to write, under mu. */
	pthread_mutex_lock(&p->mu);
	fail_at = p->fail_at;
	pthread_mutex_unlock(&p->mu);
	if (p->taken >= p->n || p->taken >= fail_at)
		return cf_error_set(err, CF_ERR_USAGE, "the sealing pool has "
				    "no more envelopes");
	if (p->inline_sealer != NULL) {
		rc = cf_sealer_seal(p->inline_sealer, p->certs[p->taken], der,
				    len, err);
		if (rc != CF_OK)
			p->fail_at = p->taken;
		else
			p->taken++;
		return rc;
	}
	pthread_mutex_lock(&p->mu);
	s = &p->slots[p->taken % p->window];
	while (s->state == SLOT_EMPTY)
		pthread_cond_wait(&p->ready, &p->mu);
	if (s->state == SLOT_FAILED) {
		/* The lowest failure is this one: nothing below it failed. */
		if (err != NULL)
			*err = p->fail_err;
		rc = p->fail_err.code;
	} else {
		*der = s->der;
		*len = s->len;
		s->der = NULL;
		s->state = SLOT_EMPTY;
		p->taken++;
		pthread_cond_broadcast(&p->space);
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void cli_sealpool_free(cli_sealpool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->space);
	pthread_mutex_unlock(&p->mu);
	for (size_t t = 0; t < p->started; t++)
		pthread_join(p->tids[t], NULL);
	for (size_t i = 0; p->slots != NULL && i < p->window; i++)
		OPENSSL_free(p->slots[i].der);
	for (size_t t = 0; p->sealers != NULL && t < p->n_threads; t++)
		cf_sealer_free(p->sealers[t]);
	free(p->sealers);
	free(p->tids);
	free(p->slots);
	pthread_cond_destroy(&p->space);
	pthread_cond_destroy(&p->ready);
	pthread_mutex_destroy(&p->mu);
	OPENSSL_cleanse(&p->fail_err, sizeof(p->fail_err));
	free(p);
}
