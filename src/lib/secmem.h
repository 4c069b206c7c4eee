/*
 * secmem.h - secret bytes in locked, wiped memory.
 *
 * A cf_secret holds plaintext (a secret value, a record, a passphrase, a
 * signed record before encryption).  Its buffer comes from OpenSSL's secure
 * heap (mmap'd, mlock'ed, excluded from core dumps with MADV_DONTDUMP),
 * and cf_secret_free wipes it.  These are the only buffers in coffer that
 * hold plaintext on purpose; anything else that does says so in a comment.
 */
#ifndef CF_SECMEM_H
#define CF_SECMEM_H

#include <openssl/types.h>
#include <stddef.h>

#include "error.h"

/* Largest secret value coffer accepts (docs/FORMAT.md). */
#define CF_SECRET_MAX_BYTES (1024u * 1024u)

typedef struct cf_secret cf_secret;

/*
 * Initialises the secure heap once per process (idempotent, thread-unsafe:
 * call it from main before starting threads).  heap_bytes is rounded up to
 * a power of two; 0 selects the default (32 MiB).  Returns CF_OK also when
 * the heap exists but could not be locked (RLIMIT_MEMLOCK), in which case
 * *locked (if not NULL) is set to 0.  Also routes jansson's allocations
 * through the secure heap, since parsed records carry secret values.
 */
cf_status cf_secmem_init(size_t heap_bytes, int *locked, cf_error *err);

/* Whether the secure heap is locked in memory (0 before cf_secmem_init). */
int cf_secmem_locked(void);

/* A new empty secret with room for cap bytes; NULL when out of memory. */
cf_secret *cf_secret_new(size_t cap);

/* A new secret holding a copy of len bytes at data. */
cf_secret *cf_secret_from(const void *data, size_t len);

/* Wipes and frees; accepts NULL. */
void cf_secret_free(cf_secret *s);

unsigned char *cf_secret_data(cf_secret *s);
const unsigned char *cf_secret_cdata(const cf_secret *s);
size_t cf_secret_len(const cf_secret *s);
size_t cf_secret_cap(const cf_secret *s);

/* Sets the length (<= cap); bytes beyond it are wiped. */
cf_status cf_secret_set_len(cf_secret *s, size_t len, cf_error *err);

/* Appends len bytes, growing in secure memory (the old buffer is wiped). */
cf_status cf_secret_append(cf_secret *s, const void *data, size_t len,
			   cf_error *err);

/*
 * Reads all of fd into a new secret of at most max_bytes; more is refused
 * with CF_ERR_TOO_LARGE naming what (e.g. "standard input").
 */
cf_status cf_secret_read_fd(int fd, size_t max_bytes, const char *what,
			    cf_secret **out, cf_error *err);

/*
 * Copies the contents of a memory BIO (BIO_s_mem or, for plaintext,
 * BIO_s_secmem) into a new secret.
 */
cf_status cf_secret_from_bio(BIO *bio, cf_secret **out, cf_error *err);

/* Constant-time comparison of two secrets (lengths compared openly). */
int cf_secret_equal(const cf_secret *a, const cf_secret *b);

#endif
