/*
 * test_secmem.c - secret buffers (secmem.h).
 *
 * A cf_secret must live on the secure heap, grow without losing bytes,
 * wipe what it drops, and refuse input above the caller's limit.
 */
#include "fixture.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "secmem.h"

static void init_is_idempotent(void **state)
{
	cf_error err = { 0 };
	int locked = -1;
	cf_secret *s;

	(void)state;
	/* The group setup already made the heap; again must be harmless. */
	assert_status(CF_OK, cf_secmem_init(0, &locked, &err), &err);
	assert_int_equal(locked, 1);
	assert_status(CF_OK, cf_secmem_init(1000, NULL, &err), &err);
	assert_true(CRYPTO_secure_malloc_initialized());
	s = cf_secret_from("k", 1);
	assert_non_null(s);
	assert_true(CRYPTO_secure_allocated(cf_secret_data(s)));
	cf_secret_free(s);
}

static void new_and_from(void **state)
{
	cf_secret *empty = cf_secret_new(16);
	cf_secret *copy = cf_secret_from("hunter2", 7);
	cf_secret *zero = cf_secret_from(NULL, 0);

	(void)state;
	assert_non_null(empty);
	assert_int_equal(cf_secret_len(empty), 0);
	assert_int_equal(cf_secret_cap(empty), 16);
	for (size_t i = 0; i <= 16; i++)
		assert_int_equal(cf_secret_data(empty)[i], 0);

	assert_non_null(copy);
	assert_int_equal(cf_secret_len(copy), 7);
	assert_memory_equal(cf_secret_cdata(copy), "hunter2", 7);
	/* The spare byte lets text consumers treat it as a C string. */
	assert_string_equal((const char *)cf_secret_cdata(copy), "hunter2");
	assert_true(CRYPTO_secure_allocated(cf_secret_cdata(copy)));

	assert_non_null(zero);
	assert_int_equal(cf_secret_len(zero), 0);
	cf_secret_free(empty);
	cf_secret_free(copy);
	cf_secret_free(zero);
	cf_secret_free(NULL);
}

static void append_grows_and_keeps_bytes(void **state)
{
	unsigned char chunk[97];
	cf_error err = { 0 };
	cf_secret *s = cf_secret_new(0);

	(void)state;
	assert_non_null(s);
	for (size_t round = 0; round < 100; round++) {
		memset(chunk, (int)(round & 0xff), sizeof(chunk));
		assert_status(CF_OK, cf_secret_append(s, chunk, sizeof(chunk), &err),
			      &err);
		assert_int_equal(cf_secret_len(s), (round + 1) * sizeof(chunk));
		assert_true(cf_secret_cap(s) >= cf_secret_len(s));
		assert_int_equal(cf_secret_data(s)[cf_secret_len(s)], 0);
	}
	for (size_t i = 0; i < cf_secret_len(s); i++)
		assert_int_equal(cf_secret_data(s)[i], (i / sizeof(chunk)) & 0xff);
	assert_true(CRYPTO_secure_allocated(cf_secret_data(s)));
	cf_secret_free(s);
}

static void set_len_wipes_the_tail(void **state)
{
	cf_error err = { 0 };
	cf_secret *s = cf_secret_from("abcdefgh", 8);

	(void)state;
	assert_status(CF_OK, cf_secret_set_len(s, 3, &err), &err);
	assert_int_equal(cf_secret_len(s), 3);
	assert_memory_equal(cf_secret_cdata(s), "abc", 3);
	for (size_t i = 3; i < 8; i++)
		assert_int_equal(cf_secret_data(s)[i], 0);
	/* Growing the length again must expose zeros, never the old bytes. */
	assert_status(CF_OK, cf_secret_set_len(s, 8, &err), &err);
	assert_memory_equal(cf_secret_cdata(s), "abc\0\0\0\0\0", 8);
	assert_status(CF_ERR_USAGE, cf_secret_set_len(s, 9, &err), &err);
	assert_int_equal(cf_secret_len(s), 8);
	cf_secret_free(s);
}

/* A pipe whose read end holds len bytes of pattern and then EOF. */
static int pipe_with(size_t len)
{
	int fds[2];
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Writer child: the reader may take more than a pipe buffer. */
		unsigned char buf[4096];
		size_t done = 0;

		close(fds[0]);
		while (done < len) {
			size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);
			ssize_t w;

			for (size_t i = 0; i < n; i++)
				buf[i] = (unsigned char)((done + i) % 251);
			w = write(fds[1], buf, n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				_exit(1);
			done += (size_t)w;
		}
		_exit(0);
	}
	close(fds[1]);
	return fds[0];
}

static void reap(void)
{
	int status = 0;

	while (wait(&status) > 0)
		;
}

static void read_fd_reads_everything(void **state)
{
	static const size_t sizes[] = { 0, 1, 4095, 4096, 4097, 200000 };
	cf_error err = { 0 };

	(void)state;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		cf_secret *s = NULL;
		int fd = pipe_with(sizes[k]);

		assert_status(CF_OK, cf_secret_read_fd(fd, 200000, "standard input",
						       &s, &err), &err);
		close(fd);
		reap();
		assert_non_null(s);
		assert_int_equal(cf_secret_len(s), sizes[k]);
		for (size_t i = 0; i < sizes[k]; i++)
			if (cf_secret_data(s)[i] != (unsigned char)(i % 251))
				fail_msg("byte %zu of %zu differs", i, sizes[k]);
		assert_int_equal(cf_secret_data(s)[sizes[k]], 0);
		assert_true(CRYPTO_secure_allocated(cf_secret_data(s)));
		cf_secret_free(s);
	}
}

static void read_fd_enforces_the_limit(void **state)
{
	cf_error err = { 0 };
	cf_secret *s = NULL;
	int fd;

	(void)state;
	/* Exactly at the limit is fine ... */
	fd = pipe_with(100);
	assert_status(CF_OK, cf_secret_read_fd(fd, 100, "the value", &s, &err), &err);
	close(fd);
	reap();
	assert_int_equal(cf_secret_len(s), 100);
	cf_secret_free(s);

	/* ... one byte more is not, and nothing is returned. */
	s = (cf_secret *)&s; /* not NULL, so that a reset is visible */
	fd = pipe_with(101);
	assert_status(CF_ERR_TOO_LARGE, cf_secret_read_fd(fd, 100, "the value",
							  &s, &err), &err);
	close(fd);
	reap();
	assert_null(s);
	assert_non_null(strstr(err.msg, "the value"));

	/* A stream far above the limit stops early rather than reading it all. */
	fd = pipe_with(300000);
	assert_status(CF_ERR_TOO_LARGE, cf_secret_read_fd(fd, 5000, "standard input",
							  &s, &err), &err);
	close(fd);
	reap();
	assert_null(s);

	/* A limit of 0 admits only empty input. */
	fd = pipe_with(1);
	assert_status(CF_ERR_TOO_LARGE, cf_secret_read_fd(fd, 0, "empty-only", &s,
							  &err), &err);
	close(fd);
	reap();
}

static void read_fd_reports_io_errors(void **state)
{
	cf_error err = { 0 };
	cf_secret *s = NULL;

	(void)state;
	assert_status(CF_ERR_IO, cf_secret_read_fd(-1, 100, "the pass file", &s,
						   &err), &err);
	assert_null(s);
	assert_non_null(strstr(err.msg, "the pass file"));
}

static void equal_compares_length_and_bytes(void **state)
{
	cf_secret *a = cf_secret_from("secret", 6);
	cf_secret *b = cf_secret_from("secret", 6);
	cf_secret *c = cf_secret_from("secreT", 6);
	cf_secret *d = cf_secret_from("secret!", 7);
	cf_secret *e1 = cf_secret_new(4), *e2 = cf_secret_new(0);

	(void)state;
	assert_true(cf_secret_equal(a, b));
	assert_true(cf_secret_equal(a, a));
	assert_false(cf_secret_equal(a, c));
	assert_false(cf_secret_equal(a, d));
	assert_false(cf_secret_equal(d, a));
	assert_true(cf_secret_equal(e1, e2));
	assert_false(cf_secret_equal(e1, a));
	cf_secret_free(a);
	cf_secret_free(b);
	cf_secret_free(c);
	cf_secret_free(d);
	cf_secret_free(e1);
	cf_secret_free(e2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(init_is_idempotent),
		cmocka_unit_test(new_and_from),
		cmocka_unit_test(append_grows_and_keeps_bytes),
		cmocka_unit_test(set_len_wipes_the_tail),
		cmocka_unit_test(read_fd_reads_everything),
		cmocka_unit_test(read_fd_enforces_the_limit),
		cmocka_unit_test(read_fd_reports_io_errors),
		cmocka_unit_test(equal_compares_length_and_bytes),
	};

	return cmocka_run_group_tests_name("secmem", tests, fx_group_setup, NULL);
}
