/*
 * secmem.c - the secure buffers behind cf_secret.
 *
 * Invariants: once cf_secmem_init has run, a cf_secret's bytes live only in
 * the secure heap, and a full heap makes allocation fail (CF_ERR_NOMEM)
 * rather than fall back to ordinary memory; before it (unit tests,
 * libraries that never call it) OpenSSL hands out ordinary memory, still
 * wiped on free by CRYPTO_secure_clear_free.  Nothing here copies secret
 * bytes elsewhere, and every growth wipes the old buffer.
 */
#include "secmem.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <string.h>
#include <unistd.h>

struct cf_secret {
	unsigned char *data;
	size_t len;
	size_t cap;
};

#define DEFAULT_HEAP_BYTES (32u * 1024u * 1024u)

/*
 * jansson does not tell free() the size, so each block carries it in a
 * header; the whole block is wiped on release.  Parsed records hold the
 * base64 of the secret value, hence jansson lives on the secure heap.
 */
typedef union {
	size_t size;
	max_align_t align;
} json_block_header;

static void *json_secure_malloc(size_t size)
{
	json_block_header *h;

	if (size > SIZE_MAX - sizeof(*h))
		return NULL;
	h = CRYPTO_secure_malloc(sizeof(*h) + size, __FILE__, __LINE__);
	if (h == NULL)
		return NULL;
	h->size = sizeof(*h) + size;
	return h + 1;
}

static void json_secure_free(void *p)
{
	json_block_header *h;

	if (p == NULL)
		return;
	h = (json_block_header *)p - 1;
	CRYPTO_secure_clear_free(h, h->size, __FILE__, __LINE__);
}

static int heap_locked;

int cf_secmem_locked(void)
{
	return heap_locked;
}

cf_status cf_secmem_init(size_t heap_bytes, int *locked, cf_error *err)
{
	size_t size = 1;
	int rc;

	if (heap_bytes == 0)
		heap_bytes = DEFAULT_HEAP_BYTES;
	while (size < heap_bytes)
		size <<= 1;
	if (!CRYPTO_secure_malloc_initialized()) {
		rc = CRYPTO_secure_malloc_init(size, 64);
		if (rc == 0)
			return cf_error_set_ssl(err, CF_ERR_NOMEM,
				"could not create the secure heap of %zu bytes; "
				"check the process's memory limits", size);
		heap_locked = (rc == 1);
	}
	if (locked != NULL)
		*locked = heap_locked;
	json_set_alloc_funcs(json_secure_malloc, json_secure_free);
	return CF_OK;
}

cf_secret *cf_secret_new(size_t cap)
{
	cf_secret *s = OPENSSL_zalloc(sizeof(*s));

	if (s == NULL)
		return NULL;
	/* One spare byte so text consumers may NUL-terminate in place. */
	s->data = CRYPTO_secure_zalloc(cap + 1, __FILE__, __LINE__);
	if (s->data == NULL) {
		OPENSSL_free(s);
		return NULL;
	}
	s->cap = cap;
	return s;
}

cf_secret *cf_secret_from(const void *data, size_t len)
{
	cf_secret *s = cf_secret_new(len);

	if (s == NULL)
		return NULL;
	if (len > 0)
		memcpy(s->data, data, len);
	s->len = len;
	return s;
}

void cf_secret_free(cf_secret *s)
{
	if (s == NULL)
		return;
	CRYPTO_secure_clear_free(s->data, s->cap + 1, __FILE__, __LINE__);
	OPENSSL_free(s);
}

unsigned char *cf_secret_data(cf_secret *s) { return s->data; }
const unsigned char *cf_secret_cdata(const cf_secret *s) { return s->data; }
size_t cf_secret_len(const cf_secret *s) { return s->len; }
size_t cf_secret_cap(const cf_secret *s) { return s->cap; }

cf_status cf_secret_set_len(cf_secret *s, size_t len, cf_error *err)
{
	if (len > s->cap)
		return cf_error_set(err, CF_ERR_USAGE,
			"secret length %zu exceeds its capacity %zu", len, s->cap);
	if (len < s->len)
		OPENSSL_cleanse(s->data + len, s->len - len);
	s->len = len;
	s->data[len] = '\0';
	return CF_OK;
}

static cf_status grow(cf_secret *s, size_t need, cf_error *err)
{
	size_t cap = s->cap ? s->cap : 64;
	unsigned char *data;

	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			return cf_error_set(err, CF_ERR_TOO_LARGE,
				"secret buffer would exceed addressable memory");
		cap *= 2;
	}
	data = CRYPTO_secure_zalloc(cap + 1, __FILE__, __LINE__);
	if (data == NULL)
		return cf_error_set(err, CF_ERR_NOMEM,
			"out of secure memory growing a secret to %zu bytes", cap);
	memcpy(data, s->data, s->len);
	CRYPTO_secure_clear_free(s->data, s->cap + 1, __FILE__, __LINE__);
	s->data = data;
	s->cap = cap;
	return CF_OK;
}

cf_status cf_secret_append(cf_secret *s, const void *data, size_t len,
			   cf_error *err)
{
	cf_status rc;

	if (len > SIZE_MAX - s->len - 1)
		return cf_error_set(err, CF_ERR_TOO_LARGE, "secret too large");
	if (s->len + len > s->cap) {
		rc = grow(s, s->len + len, err);
		if (rc != CF_OK)
			return rc;
	}
	memcpy(s->data + s->len, data, len);
	s->len += len;
	s->data[s->len] = '\0';
	return CF_OK;
}

cf_status cf_secret_read_fd(int fd, size_t max_bytes, const char *what,
			    cf_secret **out, cf_error *err)
{
	cf_secret *s = cf_secret_new(4096);
	cf_status rc = CF_OK;
	ssize_t got;

	*out = NULL;
	if (s == NULL)
		return cf_error_set(err, CF_ERR_NOMEM,
			"out of secure memory reading %s", what);
	for (;;) {
		if (s->len == s->cap) {
			if (s->len > max_bytes) {
				rc = cf_error_set(err, CF_ERR_TOO_LARGE,
					"%s is larger than the limit of %zu bytes; "
					"store large files as several secrets",
					what, max_bytes);
				goto out;
			}
			rc = grow(s, s->cap + 1, err);
			if (rc != CF_OK)
				goto out;
		}
		got = read(fd, s->data + s->len, s->cap - s->len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = cf_error_set(err, CF_ERR_IO, "cannot read %s: %s",
				what, strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		s->len += (size_t)got;
	}
	if (s->len > max_bytes) {
		rc = cf_error_set(err, CF_ERR_TOO_LARGE,
			"%s is %zu bytes, above the limit of %zu bytes",
			what, s->len, max_bytes);
		goto out;
	}
	s->data[s->len] = '\0';
	*out = s;
	s = NULL;
out:
	cf_secret_free(s);
	return rc;
}

cf_status cf_secret_from_bio(BIO *bio, cf_secret **out, cf_error *err)
{
	BUF_MEM *mem = NULL;

	*out = NULL;
	if (BIO_get_mem_ptr(bio, &mem) <= 0 || mem == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "not a memory BIO");
	*out = cf_secret_from(mem->data, mem->length);
	if (*out == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	return CF_OK;
}

int cf_secret_equal(const cf_secret *a, const cf_secret *b)
{
	if (a->len != b->len)
		return 0;
	return CRYPTO_memcmp(a->data, b->data, a->len) == 0;
}
