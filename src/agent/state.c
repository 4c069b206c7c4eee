/*
 * state.c - the agent's state directory; see state.h for its layout.
 *
 * Invariants:
 *   - one process writes D at a time: `agent run` and `agent once` hold
 *     D/run.lock (ag_state_lock_run) before they change anything, and
 *     `agent exec` only reads;
 *   - the version recorded for a name only ever goes up;
 *   - a version is recorded only after its envelope is in the cache, so
 *     after a crash the cache holds at least what state.json promises;
 *   - nothing here holds plaintext: the cache is ciphertext, state.json
 *     names and numbers.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "envelope.h"
#include "sink_file.h"

#define STATE_MAX_BYTES (64u * 1024u * 1024u)

struct ag_state {
	char dir[PATH_MAX];
	json_t *versions;        /* NAME -> integer */
	char **names;            /* the keys of versions, for iteration */
	size_t n_names, cap_names;
	int64_t cursor;
	int64_t confirmed;       /* last answer from the server (UNIX s) */
	char cluster_fp[65];     /* the cluster key whose feed cursor ... */
	int64_t cluster_cursor;  /* ... this is ("": none) */
	int run_lock_fd;
};

int64_t ag_state_cluster_cursor(const ag_state *st, const char *fp)
{
	return strcmp(st->cluster_fp, fp) == 0 ? st->cluster_cursor : 0;
}

void ag_state_set_cluster_cursor(ag_state *st, const char *fp, int64_t cursor)
{
	snprintf(st->cluster_fp, sizeof(st->cluster_fp), "%s", fp);
	st->cluster_cursor = cursor;
}

const char *ag_state_dir(const ag_state *st) { return st->dir; }
int64_t ag_state_cursor(const ag_state *st) { return st->cursor; }
size_t ag_state_count(const ag_state *st) { return st->n_names; }
const char *ag_state_name_at(const ag_state *st, size_t i)
{
	return i < st->n_names ? st->names[i] : NULL;
}

void ag_state_set_cursor(ag_state *st, int64_t cursor)
{
	st->cursor = cursor;
}

time_t ag_state_confirmed(const ag_state *st)
{
	return (time_t)st->confirmed;
}

void ag_state_set_confirmed(ag_state *st, time_t when)
{
	st->confirmed = (int64_t)when;
}

cf_status ag_state_path(const ag_state *st, const char *file, char *buf,
			size_t size, cf_error *err)
{
	if (!cli_path_in(buf, size, st->dir, file))
		return cf_error_set(err, CF_ERR_USAGE,
				    "state dir path %s/%s is too long", st->dir,
				    file);
	return CF_OK;
}

uint64_t ag_state_version(const ag_state *st, const char *name)
{
	const json_t *v = json_object_get(st->versions, name);

	return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

static cf_status remember_name(ag_state *st, const char *name, cf_error *err)
{
	char *copy;

	if (st->n_names == st->cap_names) {
		size_t cap = st->cap_names ? st->cap_names * 2 : 64;
		char **grown = OPENSSL_realloc(st->names, cap * sizeof(*grown));

		if (grown == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		st->names = grown;
		st->cap_names = cap;
	}
	copy = OPENSSL_strdup(name);
	if (copy == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	st->names[st->n_names++] = copy;
	return CF_OK;
}

/* Raises name to version (never lowers it). */
static cf_status raise_version(ag_state *st, const char *name,
			       uint64_t version, cf_error *err)
{
	uint64_t have = ag_state_version(st, name);
	int known = json_object_get(st->versions, name) != NULL;

	if (version > (uint64_t)INT64_MAX)
		return cf_error_set(err, CF_ERR_RECORD,
				    "version of %s is out of range", name);
	if (known && have >= version)
		return CF_OK;
	if (json_object_set_new(st->versions, name,
				json_integer((json_int_t)version)) != 0)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	return known ? CF_OK : remember_name(st, name, err);
}

/* "cache/HEX.cms" for name. */
static void cache_file(const char *name, char *buf, size_t size)
{
	unsigned char md[32];
	char hex[65];

	EVP_Digest(name, strlen(name), md, NULL, EVP_sha256(), NULL);
	for (size_t i = 0; i < sizeof(md); i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	snprintf(buf, size, "cache/%s.cms", hex);
}

/* Merges the state.json at path into st (max per name, max cursor). */
static cf_status merge_file(ag_state *st, const char *path, cf_error *err)
{
	unsigned char *text = NULL;
	size_t len = 0;
	json_t *doc = NULL, *secrets, *cursor, *v;
	json_error_t jerr;
	const char *name;
	cf_status rc;

	if (access(path, F_OK) != 0 && errno == ENOENT)
		return CF_OK;
	rc = cli_read_file(path, STATE_MAX_BYTES, &text, &len, err);
	if (rc != CF_OK)
		return rc;
	doc = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
	secrets = json_object_get(doc, "secrets");
	cursor = json_object_get(doc, "cursor");
	if (!json_is_object(doc) || !json_is_object(secrets) ||
	    !json_is_integer(cursor) || json_integer_value(cursor) < 0) {
		rc = cf_error_set(err, CF_ERR_PARSE,
			"%s is damaged (%s); it is the agent's own record of the "
			"versions it accepted: restore it from a backup, or remove "
			"it to start over (the agent then accepts the server's "
			"current versions again)", path,
			doc == NULL ? jerr.text : "unexpected shape");
		goto out;
	}
	ag_state_set_cursor(st, json_integer_value(cursor));
	if (json_is_integer(json_object_get(doc, "confirmed")))
		st->confirmed = json_integer_value(json_object_get(doc,
								   "confirmed"));
	v = json_object_get(doc, "cluster");
	if (v != NULL) {
		const char *fp = json_string_value(json_object_get(v, "fp"));
		json_t *at = json_object_get(v, "cursor");

		if (fp == NULL || strlen(fp) != 64 ||
		    strspn(fp, "0123456789abcdef") != 64 ||
		    !json_is_integer(at) || json_integer_value(at) < 0) {
			rc = cf_error_set(err, CF_ERR_PARSE, "%s is damaged (its "
				"cluster cursor); restore it or remove it", path);
			goto out;
		}
		ag_state_set_cluster_cursor(st, fp, json_integer_value(at));
	}
	json_object_foreach(secrets, name, v) {
		json_t *ver = json_object_get(v, "version");

		if (!json_is_integer(ver) || json_integer_value(ver) < 1 ||
		    cf_name_check("secret name", name, NULL) != CF_OK) {
			rc = cf_error_set(err, CF_ERR_PARSE,
				"%s is damaged (an entry is not a name with a "
				"version); restore it or remove it", path);
			goto out;
		}
		rc = raise_version(st, name, (uint64_t)json_integer_value(ver),
				   err);
		if (rc != CF_OK)
			goto out;
	}
out:
	json_decref(doc);
	OPENSSL_free(text);
	return rc;
}

/* The directory and the key: ours, and closed to everybody else. */
static cf_status check_private(const char *path, int is_dir, cf_error *err)
{
	struct stat sb;

	if (lstat(path, &sb) != 0)
		return cf_error_set(err, errno == ENOENT ? CF_ERR_USAGE : CF_ERR_IO,
			"%s: %s%s", path, strerror(errno),
			is_dir ? "; make it with 'coffer agent join --state-dir'"
			       : "; was 'coffer agent join' run with this state dir?");
	if (is_dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode))
		return cf_error_set(err, CF_ERR_USAGE, "%s is not a %s", path,
				    is_dir ? "directory" : "regular file");
	if (sb.st_uid != geteuid())
		return cf_error_set(err, CF_ERR_USAGE,
			"%s belongs to uid %lu, not to the agent's user (uid %lu); "
			"run the agent as its owner or chown it", path,
			(unsigned long)sb.st_uid, (unsigned long)geteuid());
	if (sb.st_mode & 077)
		return cf_error_set(err, CF_ERR_USAGE,
			"%s is open to other users (mode %04o); it holds the "
			"agent's key: 'chmod %s %s', and check who may have read it",
			path, (unsigned)(sb.st_mode & 07777), is_dir ? "700" : "600",
			path);
	return CF_OK;
}

cf_status ag_state_open(const char *dir, ag_state **out, cf_error *err)
{
	ag_state *st = NULL;
	char path[PATH_MAX];
	cf_status rc;

	*out = NULL;
	st = OPENSSL_zalloc(sizeof(*st));
	if (st == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	st->run_lock_fd = -1;
	if (snprintf(st->dir, sizeof(st->dir), "%s", dir) >= (int)sizeof(st->dir)) {
		rc = cf_error_set(err, CF_ERR_USAGE, "state dir path is too long");
		goto out;
	}
	st->versions = json_object();
	if (st->versions == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = check_private(dir, 1, err);
	if (rc == CF_OK)
		rc = ag_state_path(st, "agent.key", path, sizeof(path), err);
	if (rc == CF_OK)
		rc = check_private(path, 0, err);
	if (rc == CF_OK)
		rc = ag_state_path(st, "cache", path, sizeof(path), err);
	if (rc == CF_OK)
		rc = cli_mkdir(path, 0700, err);
	if (rc == CF_OK)
		rc = ag_state_path(st, "state.json", path, sizeof(path), err);
	if (rc == CF_OK)
		rc = merge_file(st, path, err);
	if (rc != CF_OK)
		goto out;
	*out = st;
	st = NULL;
out:
	ag_state_free(st);
	return rc;
}

void ag_state_free(ag_state *st)
{
	if (st == NULL)
		return;
	json_decref(st->versions);
	for (size_t i = 0; i < st->n_names; i++)
		OPENSSL_free(st->names[i]);
	OPENSSL_free(st->names);
	if (st->run_lock_fd >= 0)
		close(st->run_lock_fd);
	OPENSSL_free(st);
}

cf_status ag_state_accept(ag_state *st, const char *name, uint64_t version,
			  const unsigned char *der, size_t len, cf_error *err)
{
	char file[96], path[PATH_MAX];
	cf_status rc;

	cache_file(name, file, sizeof(file));
	rc = ag_state_path(st, file, path, sizeof(path), err);
	if (rc == CF_OK)
		rc = ag_file_replace(path, der, len, 0600, err);
	if (rc == CF_OK)
		rc = raise_version(st, name, version, err);
	return rc;
}

cf_status ag_state_cached(const ag_state *st, const char *name,
			  unsigned char **der, size_t *len, cf_error *err)
{
	char file[96], path[PATH_MAX];
	cf_status rc;

	*der = NULL;
	*len = 0;
	cache_file(name, file, sizeof(file));
	rc = ag_state_path(st, file, path, sizeof(path), err);
	if (rc != CF_OK)
		return rc;
	if (access(path, F_OK) != 0 && errno == ENOENT)
		return cf_error_set(err, CF_ERR_NOT_FOUND,
				    "no cached envelope of %s", name);
	return cli_read_file(path, CF_ENVELOPE_MAX_BYTES, der, len, err);
}

static int lock_file(const ag_state *st, const char *file, int how,
		     cf_error *err)
{
	char path[PATH_MAX];
	int fd;

	if (ag_state_path(st, file, path, sizeof(path), err) != CF_OK)
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		cf_error_set(err, CF_ERR_IO, "cannot open %s: %s", path,
			     strerror(errno));
		return -1;
	}
	if (flock(fd, how) != 0) {
		cf_error_set(err, errno == EWOULDBLOCK ? CF_ERR_CONFLICT :
			     CF_ERR_IO, "cannot lock %s: %s", path,
			     errno == EWOULDBLOCK ?
			     "another 'coffer agent run' or 'agent once' uses "
			     "this state dir (it keeps the sinks up to date "
			     "already)" : strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

cf_status ag_state_save(ag_state *st, cf_error *err)
{
	char path[PATH_MAX];
	json_t *doc = NULL, *secrets = NULL;
	char *text = NULL;
	size_t len;
	cf_status rc;

	rc = ag_state_path(st, "state.json", path, sizeof(path), err);
	if (rc != CF_OK)
		return rc;
	secrets = json_object();
	doc = json_pack("{s:I,s:I,s:o}", "cursor", (json_int_t)st->cursor,
			"confirmed", (json_int_t)st->confirmed, "secrets",
			secrets);
	if (doc != NULL && st->cluster_fp[0] != '\0' &&
	    json_object_set_new(doc, "cluster", json_pack("{s:s,s:I}", "fp",
				st->cluster_fp, "cursor",
				(json_int_t)st->cluster_cursor)) != 0) {
		json_decref(doc);
		doc = NULL;
	}
	if (doc == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < st->n_names; i++) {
		json_t *entry = json_pack("{s:O}", "version",
			json_object_get(st->versions, st->names[i]));

		if (entry == NULL ||
		    json_object_set_new(secrets, st->names[i], entry) != 0) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	/* Not json_dumps: jansson allocates from the secure heap (secmem.c). */
	len = json_dumpb(doc, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
	text = len ? OPENSSL_malloc(len) : NULL;
	if (text == NULL ||
	    json_dumpb(doc, text, len, JSON_COMPACT | JSON_SORT_KEYS) != len) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = ag_file_replace(path, text, len, 0600, err);
out:
	OPENSSL_free(text);
	json_decref(doc);
	return rc;
}

cf_status ag_state_lock_run(ag_state *st, cf_error *err)
{
	if (st->run_lock_fd >= 0)
		return CF_OK;
	st->run_lock_fd = lock_file(st, "run.lock", LOCK_EX | LOCK_NB, err);
	return st->run_lock_fd >= 0 ? CF_OK : err != NULL ? err->code : CF_ERR_IO;
}
