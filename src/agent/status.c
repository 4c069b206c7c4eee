/*
 * status.c - the agent's report on itself (status.h) and `coffer agent
 * status` (docs/AGENT.md "Status"), which reads it without the server.
 *
 * Invariants:
 *   - the record holds no secret: paths, names, versions, times and our
 *     own error sentences;
 *   - sinks are kept sorted by path (bsearch; status.json lists them in
 *     that order), one entry per path;
 *   - status.json is only ever replaced whole (ag_file_replace), so a
 *     reader sees the previous report or the next one;
 *   - a save writes only when `dirty` (something a reader acts on
 *     changed) or when `touched` (times only) and the file is
 *     AG_STATUS_REFRESH_S old: an idle agent writes about once per
 *     two long polls, a busy one once per pass;
 *   - `agent status` only reads D: it creates nothing there, and probes
 *     D/run.lock with a shared, non-blocking flock held for an instant.
 */
#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "cli.h"
#include "sink_file.h"

/* The two kinds; a record's kind points at one of them. */
static const char KIND_FILE[] = "file";
static const char KIND_TEMPLATE[] = "template";

struct sink_rec {
	char *path;
	const char *kind;          /* KIND_FILE or KIND_TEMPLATE */
	char *source;              /* the secret's name or the template's */
	uint64_t version;          /* held by the file, 0: unknown/template */
	time_t last_ok;            /* last pass that found it up to date */
	time_t last_written;       /* last rewrite of its file */
	char *error;               /* NULL: no error since the last ok */
	time_t error_since;        /* when this error (text) began */
	time_t error_at;           /* when it was last seen */
};

struct ag_status {
	struct sink_rec *sinks;
	size_t n_sinks, cap_sinks;
	long pid;
	time_t started, stopped;
	int server_known;          /* some contact was attempted */
	int connected;
	time_t last_contact;
	char *server_error;
	time_t server_error_since, server_error_at;
	int dirty, touched;
	time_t saved_at;
	time_t (*now)(void);
};

static time_t clock_now(void)
{
	return time(NULL);
}

static time_t now_of(const ag_status *st)
{
	return st->now();
}

void ag_status_set_clock(ag_status *st, time_t (*now)(void))
{
	st->now = now != NULL ? now : clock_now;
	st->started = now_of(st);
}

ag_status *ag_status_new(void)
{
	ag_status *st = OPENSSL_zalloc(sizeof(*st));

	if (st == NULL)
		return NULL;
	st->now = clock_now;
	st->pid = (long)getpid();
	st->started = now_of(st);
	st->dirty = 1;             /* the first save says the agent is up */
	return st;
}

static void rec_clear(struct sink_rec *r)
{
	OPENSSL_free(r->path);
	OPENSSL_free(r->source);
	OPENSSL_free(r->error);
	memset(r, 0, sizeof(*r));
}

void ag_status_free(ag_status *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < st->n_sinks; i++)
		rec_clear(&st->sinks[i]);
	OPENSSL_free(st->sinks);
	OPENSSL_free(st->server_error);
	OPENSSL_free(st);
}

static const char *kind_of(const char *kind)
{
	return kind != NULL && strcmp(kind, KIND_TEMPLATE) == 0 ? KIND_TEMPLATE :
	       KIND_FILE;
}

/* A copy of an error sentence, cut to AG_STATUS_ERROR_MAX on a UTF-8
 * character boundary. */
static char *error_copy(const char *msg)
{
	size_t len;
	char *copy;

	if (msg == NULL || msg[0] == '\0')
		msg = "unknown error";
	len = strlen(msg);
	if (len >= AG_STATUS_ERROR_MAX) {
		len = AG_STATUS_ERROR_MAX - 1;
		while (len > 0 && ((unsigned char)msg[len] & 0xc0) == 0x80)
			len--;
	}
	copy = OPENSSL_malloc(len + 1);
	if (copy != NULL) {
		memcpy(copy, msg, len);
		copy[len] = '\0';
	}
	return copy;
}

static int cmp_rec(const void *a, const void *b)
{
	return strcmp(((const struct sink_rec *)a)->path,
		      ((const struct sink_rec *)b)->path);
}

static struct sink_rec *rec_find(ag_status *st, const char *path)
{
	struct sink_rec key = { .path = (char *)path };

	if (st->n_sinks == 0)
		return NULL;
	return bsearch(&key, st->sinks, st->n_sinks, sizeof(*st->sinks),
		       cmp_rec);
}

static int grow(ag_status *st, size_t want)
{
	struct sink_rec *grown;
	size_t cap = st->cap_sinks ? st->cap_sinks : 16;

	if (want <= st->cap_sinks)
		return 1;
	while (cap < want)
		cap *= 2;
	grown = OPENSSL_realloc(st->sinks, cap * sizeof(*grown));
	if (grown == NULL)
		return 0;
	st->sinks = grown;
	st->cap_sinks = cap;
	return 1;
}

/* Sets kind and source; a different one makes the version unknown. */
static int rec_describe(ag_status *st, struct sink_rec *r, const char *kind,
			const char *source)
{
	const char *k = kind_of(kind);
	char *copy;

	if (source == NULL)
		source = "";
	if (r->kind == k && r->source != NULL && strcmp(r->source, source) == 0)
		return 1;
	copy = OPENSSL_strdup(source);
	if (copy == NULL)
		return 0;
	OPENSSL_free(r->source);
	r->source = copy;
	if (r->kind != NULL)
		r->version = 0;
	r->kind = k;
	st->dirty = 1;
	return 1;
}

/* The entry of path, made (in order) when missing; NULL if no memory. */
static struct sink_rec *rec_get(ag_status *st, const char *path,
				const char *kind, const char *source)
{
	struct sink_rec *r = rec_find(st, path);
	size_t at = 0, lo = 0, hi = st->n_sinks;

	if (r == NULL) {
		char *copy = OPENSSL_strdup(path);

		if (copy == NULL || !grow(st, st->n_sinks + 1)) {
			OPENSSL_free(copy);
			return NULL;
		}
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (strcmp(st->sinks[mid].path, path) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		at = lo;
		memmove(&st->sinks[at + 1], &st->sinks[at],
			(st->n_sinks - at) * sizeof(*st->sinks));
		st->n_sinks++;
		r = &st->sinks[at];
		memset(r, 0, sizeof(*r));
		r->path = copy;
		st->dirty = 1;
	}
	return rec_describe(st, r, kind, source) ? r : NULL;
}

/* A deep copy of r (strings duplicated); 0 when out of memory. */
static int rec_dup(struct sink_rec *to, const struct sink_rec *r)
{
	*to = *r;
	to->path = OPENSSL_strdup(r->path);
	to->source = r->source != NULL ? OPENSSL_strdup(r->source) : NULL;
	to->error = r->error != NULL ? OPENSSL_strdup(r->error) : NULL;
	if (to->path != NULL && (r->source == NULL || to->source != NULL) &&
	    (r->error == NULL || to->error != NULL))
		return 1;
	rec_clear(to);
	return 0;
}

/*
 * Builds the new list aside, from copies, and swaps it in only when all
 * of it could be made: out of memory leaves the record as it was.
 */
cf_status ag_status_config(ag_status *st, const ag_config *cfg)
{
	struct sink_rec *fresh = NULL;
	size_t n = 0, kept = 0;
	int dirty = st->dirty;

	if (cfg->n_sinks > 0) {
		fresh = OPENSSL_zalloc(cfg->n_sinks * sizeof(*fresh));
		if (fresh == NULL)
			return CF_ERR_NOMEM;
	}
	for (; n < cfg->n_sinks; n++) {
		const ag_sink *s = &cfg->sinks[n];
		const struct sink_rec *old = rec_find(st, s->path);
		int is_template = s->kind == AG_SINK_TEMPLATE;

		if (old != NULL) {
			kept++;
			if (!rec_dup(&fresh[n], old))
				goto nomem;
		} else {
			fresh[n].path = OPENSSL_strdup(s->path);
			if (fresh[n].path == NULL)
				goto nomem;
		}
		if (!rec_describe(st, &fresh[n], is_template ? KIND_TEMPLATE :
				  KIND_FILE, is_template ? s->source : s->secret))
			goto nomem;
	}
	/* Something new, or something gone. */
	if (kept != cfg->n_sinks || kept != st->n_sinks)
		st->dirty = 1;
	for (size_t i = 0; i < st->n_sinks; i++)
		rec_clear(&st->sinks[i]);
	OPENSSL_free(st->sinks);
	st->sinks = fresh;
	st->n_sinks = n;
	st->cap_sinks = cfg->n_sinks;
	if (n > 1)
		qsort(st->sinks, n, sizeof(*st->sinks), cmp_rec);
	return CF_OK;
nomem:
	for (size_t i = 0; i <= n && i < cfg->n_sinks; i++)
		rec_clear(&fresh[i]);
	OPENSSL_free(fresh);
	st->dirty = dirty;
	return CF_ERR_NOMEM;
}

static json_int_t int_of(const json_t *obj, const char *key);

void ag_status_carry(ag_status *st, const char *state_dir)
{
	json_t *doc = NULL, *sinks, *s;
	size_t i;

	if (ag_status_load(state_dir, &doc, NULL) != CF_OK || doc == NULL)
		return;
	sinks = json_object_get(doc, "sinks");
	json_array_foreach(sinks, i, s) {
		const char *path = json_string_value(json_object_get(s, "path"));
		struct sink_rec *r = path != NULL ? rec_find(st, path) : NULL;

		/* Same sink (path and what it holds): its history carries. */
		if (r == NULL || r->source == NULL ||
		    json_string_value(json_object_get(s, r->kind == KIND_TEMPLATE ?
				      "source" : "secret")) == NULL ||
		    strcmp(r->source, json_string_value(json_object_get(s,
			   r->kind == KIND_TEMPLATE ? "source" : "secret"))) != 0)
			continue;
		if (int_of(s, "version") > 0)
			r->version = (uint64_t)int_of(s, "version");
		if (int_of(s, "last_written") > 0)
			r->last_written = (time_t)int_of(s, "last_written");
		if (int_of(s, "last_ok") > 0)
			r->last_ok = (time_t)int_of(s, "last_ok");
	}
	json_decref(doc);
}

void ag_status_sink_ok(ag_status *st, const char *path, const char *kind,
		       const char *secret_or_source, uint64_t version,
		       int written)
{
	struct sink_rec *r = rec_get(st, path, kind, secret_or_source);
	time_t now = now_of(st);

	if (r == NULL)
		return;
	if (r->version != version || r->error != NULL || r->last_ok == 0)
		st->dirty = 1;
	r->version = version;
	OPENSSL_free(r->error);
	r->error = NULL;
	r->error_since = r->error_at = 0;
	r->last_ok = now;
	if (written) {
		r->last_written = now;
		st->dirty = 1;
	}
	st->touched = 1;
}

void ag_status_sink_failed(ag_status *st, const char *path, const char *kind,
			   const char *secret_or_source,
			   const char *error_sentence)
{
	struct sink_rec *r = rec_get(st, path, kind, secret_or_source);
	time_t now = now_of(st);
	char *copy;

	if (r == NULL)
		return;
	copy = error_copy(error_sentence);
	if (copy == NULL)
		return;
	if (r->error == NULL || strcmp(r->error, copy) != 0) {
		OPENSSL_free(r->error);
		r->error = copy;
		r->error_since = now;
		st->dirty = 1;
	} else {
		OPENSSL_free(copy);
	}
	r->error_at = now;
	st->touched = 1;
}

void ag_status_server(ag_status *st, int ok, const char *error_sentence)
{
	time_t now = now_of(st);

	if (!st->server_known || st->connected != (ok != 0))
		st->dirty = 1;
	if (ok) {
		st->last_contact = now;
	} else {
		char *copy = error_copy(error_sentence);

		if (copy == NULL)
			return;
		/* A new text, or the same one again after a good contact,
		 * starts a new episode. */
		if (st->server_error == NULL || st->connected ||
		    strcmp(st->server_error, copy) != 0) {
			OPENSSL_free(st->server_error);
			st->server_error = copy;
			st->server_error_since = now;
			st->dirty = 1;
		} else {
			OPENSSL_free(copy);
		}
		st->server_error_at = now;
	}
	st->server_known = 1;
	st->connected = ok != 0;
	st->touched = 1;
}

void ag_status_stopped(ag_status *st)
{
	st->stopped = now_of(st);
	st->dirty = 1;
}

/* ------------------------------------------------------------- saving */

/*
 * s as a JSON string.  Paths may be any bytes but control characters
 * (config.c), and JSON strings are UTF-8: a string that is not valid
 * UTF-8 is written with each byte above 0x7f as '?'.
 */
static json_t *text_json(const char *s)
{
	json_t *j;
	char *ascii;

	if (s == NULL)
		return json_null();
	j = json_string(s);
	if (j != NULL)
		return j;
	ascii = OPENSSL_strdup(s);
	if (ascii == NULL)
		return NULL;
	for (char *p = ascii; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(ascii);
	OPENSSL_free(ascii);
	return j;
}

static json_t *time_json(time_t t)
{
	return t > 0 ? json_integer((json_int_t)t) : json_null();
}

static const char *rec_state(const struct sink_rec *r)
{
	return r->error != NULL ? "failed" : r->last_ok > 0 ? "ok" : "never";
}

static json_t *rec_json(const struct sink_rec *r)
{
	int is_file = r->kind != KIND_TEMPLATE;

	return json_pack("{s:o, s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o}",
		"path", text_json(r->path),
		"kind", r->kind != NULL ? r->kind : KIND_FILE,
		is_file ? "secret" : "source", text_json(r->source),
		"state", rec_state(r),
		"version", r->version > 0 && r->version <= (uint64_t)INT64_MAX ?
			   json_integer((json_int_t)r->version) : json_null(),
		"last_ok", time_json(r->last_ok),
		"last_written", time_json(r->last_written),
		"error", text_json(r->error),
		"error_since", time_json(r->error_since),
		"error_at", time_json(r->error_at));
}

struct text {
	char *data;
	size_t len, cap;
};

/* Room for more bytes and a NUL after t->len; 0 when out of memory. */
static int text_reserve(struct text *t, size_t more)
{
	size_t cap = t->cap ? t->cap : 4096;
	char *grown;

	if (more > SIZE_MAX / 2 - t->len - 1)
		return 0;
	if (t->len + more + 1 <= t->cap)
		return 1;
	while (cap < t->len + more + 1)
		cap *= 2;
	grown = OPENSSL_realloc(t->data, cap);
	if (grown == NULL)
		return 0;
	t->data = grown;
	t->cap = cap;
	return 1;
}

static int text_add(struct text *t, const char *data, size_t len)
{
	if (!text_reserve(t, len))
		return 0;
	memcpy(t->data + t->len, data, len);
	t->len += len;
	t->data[t->len] = '\0';
	return 1;
}

/* Appends j's compact text; takes the reference.  0 when out of memory. */
static int text_add_json(struct text *t, json_t *j)
{
	size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
	size_t need = j != NULL ? json_dumpb(j, NULL, 0, flags) : 0;
	int ok = need > 0 && text_reserve(t, need) &&
		 json_dumpb(j, t->data + t->len, need, flags) == need;

	if (ok) {
		t->len += need;
		t->data[t->len] = '\0';
	}
	json_decref(j);
	return ok;
}

/*
 * The document, built one sink at a time: jansson allocates from the
 * secure heap (secmem.c), which the secrets need, and 10,000 sinks as
 * one tree would take megabytes of it.  Each piece is jansson's output;
 * only the brackets joining them are ours:
 *   {"format":1,...,"server":{...},"sinks":[
 *   {...},
 *   {...}
 *   ]}
 */
static cf_status render(const ag_status *st, time_t now, struct text *t,
			cf_error *err)
{
	json_t *server, *head;

	server = json_pack("{s:o, s:o, s:o, s:o, s:o}",
		"connected", st->server_known ? json_boolean(st->connected) :
			     json_null(),
		"last_contact", time_json(st->last_contact),
		"error", text_json(st->server_error),
		"error_since", time_json(st->server_error_since),
		"error_at", time_json(st->server_error_at));
	head = server == NULL ? NULL :
	       json_pack("{s:i, s:I, s:o, s:I, s:o, s:o}",
		"format", AG_STATUS_FORMAT, "pid", (json_int_t)st->pid,
		"started", time_json(st->started), "updated", (json_int_t)now,
		"stopped", time_json(st->stopped), "server", server);
	if (!text_add_json(t, head) || t->len == 0 ||
	    t->data[t->len - 1] != '}')
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	t->len--;
	if (!text_add(t, ",\"sinks\":[", 10))
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < st->n_sinks; i++) {
		if (!text_add(t, i > 0 ? ",\n" : "\n", i > 0 ? 2 : 1) ||
		    !text_add_json(t, rec_json(&st->sinks[i])))
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory "
					    "writing the status of %zu sinks",
					    st->n_sinks);
	}
	if (!text_add(t, "\n]}\n", 4))
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	return CF_OK;
}

cf_status ag_status_save(ag_status *st, const char *state_dir, cf_error *err)
{
	char path[PATH_MAX];
	struct text t = { 0 };
	time_t now = now_of(st);
	cf_status rc;

	if (!st->dirty && !(st->touched && (now < st->saved_at ||
	    now - st->saved_at >= AG_STATUS_REFRESH_S)))
		return CF_OK;
	if (!cli_path_in(path, sizeof(path), state_dir, "status.json"))
		return cf_error_set(err, CF_ERR_USAGE, "state dir path %s is too "
				    "long", state_dir);
	rc = render(st, now, &t, err);
	if (rc == CF_OK)
		rc = ag_file_replace(path, t.data, t.len, 0600, err);
	if (rc == CF_OK) {
		st->dirty = st->touched = 0;
		st->saved_at = now;
	}
	OPENSSL_free(t.data);
	return rc;
}

/* ------------------------------------------------------------ reading */

/* A JSON file of the state dir: CF_ERR_NOT_FOUND when missing. */
static cf_status load_json(const char *dir, const char *file, size_t max,
			   json_t **out, const char *damaged_hint,
			   cf_error *err)
{
	char path[PATH_MAX];
	unsigned char *text = NULL;
	size_t len = 0;
	json_error_t jerr;
	cf_status rc;

	*out = NULL;
	if (!cli_path_in(path, sizeof(path), dir, file))
		return cf_error_set(err, CF_ERR_USAGE, "state dir path %s is too "
				    "long", dir);
	if (access(path, F_OK) != 0 && errno == ENOENT)
		return cf_error_set(err, CF_ERR_NOT_FOUND, "%s does not exist",
				    path);
	rc = cli_read_file(path, max, &text, &len, err);
	if (rc != CF_OK)
		return rc;
	*out = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
	OPENSSL_free(text);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return cf_error_set(err, CF_ERR_PARSE, "%s is damaged (line %d: "
				    "%s); %s", path, jerr.line, jerr.text,
				    damaged_hint);
	}
	return CF_OK;
}

#define STATUS_HINT "it is only the agent's report: remove it, and the " \
	"agent writes it again at its next change (or at once when restarted)"

cf_status ag_status_load(const char *state_dir, json_t **out, cf_error *err)
{
	json_t *doc = NULL, *format;
	cf_status rc;

	*out = NULL;
	rc = load_json(state_dir, "status.json", AG_STATUS_MAX_BYTES, &doc,
		       STATUS_HINT, err);
	if (rc != CF_OK)
		return rc;
	format = json_object_get(doc, "format");
	if (json_is_integer(format) &&
	    json_integer_value(format) > AG_STATUS_FORMAT) {
		rc = cf_error_set(err, CF_ERR_PARSE, "%s/status.json has format "
			"%lld, written by a newer coffer than this one (format "
			"%d); use that version's 'coffer agent status'", state_dir,
			(long long)json_integer_value(format), AG_STATUS_FORMAT);
	} else if (!json_is_integer(format) ||
		   !json_is_array(json_object_get(doc, "sinks"))) {
		rc = cf_error_set(err, CF_ERR_PARSE, "%s/status.json is damaged "
				  "(no format or sinks); " STATUS_HINT, state_dir);
	}
	if (rc != CF_OK) {
		json_decref(doc);
		return rc;
	}
	*out = doc;
	return CF_OK;
}

/* ------------------------------------------------- coffer agent status */

static void status_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer agent status --state-dir D [--config F] [--json]\n"
		"\n"
		"What the agent using D last reported, read from D without the\n"
		"server: each sink (its secret or template, the version written,\n"
		"when, its last error), the secrets it accepted, whether it is\n"
		"running and connected to the server.\n"
		"Exit 0 when every sink is up to date, 32 when one failed or was\n"
		"never applied (or the agent has not reported yet).\n"
		"\n"
		"  --state-dir D   the agent's state directory\n"
		"  --config F      also list the sinks of F the agent has not\n"
		"                  reported on (never applied), and only F's\n"
		"  --json          the same as one JSON object (docs/AGENT.md)\n");
}

static json_int_t int_of(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	return json_is_integer(v) ? json_integer_value(v) : 0;
}

static const char *str_of(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* A time member of obj copied as a positive integer or null. */
static json_t *time_of(const json_t *obj, const char *key)
{
	json_int_t t = int_of(obj, key);

	return t > 0 ? json_integer(t) : json_null();
}

/*
 * Whether an agent holds D/run.lock: 1 yes, 0 no, -1 unknown (why).
 * The probe is a shared lock held for an instant; an agent starting at
 * that very instant would find the state dir busy (and say so).
 */
static int agent_running(const char *dir, char *why, size_t why_size)
{
	char path[PATH_MAX];
	int fd, held;

	if (!cli_path_in(path, sizeof(path), dir, "run.lock")) {
		snprintf(why, why_size, "path too long");
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(why, why_size, "cannot open %s: %s", path,
			 strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		held = 0;
		(void)flock(fd, LOCK_UN);
	} else if (errno == EWOULDBLOCK) {
		held = 1;
	} else {
		snprintf(why, why_size, "cannot lock %s: %s", path,
			 strerror(errno));
		held = -1;
	}
	close(fd);
	return held;
}

/* state.json: {"cursor":N,"secrets":{NAME:{"version":V}}}, read only. */
static cf_status load_secrets(const char *dir, json_t **secrets,
			      json_t **cursor, cf_error *err)
{
	json_t *doc = NULL, *v;
	const char *name;
	cf_status rc;

	*secrets = json_array();
	*cursor = json_null();
	if (*secrets == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = load_json(dir, "state.json", AG_STATUS_MAX_BYTES, &doc,
		       "see docs/AGENT.md \"The state directory\"", err);
	if (rc == CF_ERR_NOT_FOUND) {
		cf_error_clear(err);
		return CF_OK;
	}
	if (rc != CF_OK)
		return rc;
	if (!json_is_object(json_object_get(doc, "secrets"))) {
		rc = cf_error_set(err, CF_ERR_PARSE, "%s/state.json is damaged "
			"(no secrets); the agent refuses to start with it: "
			"restore it from a backup, or remove it", dir);
		goto out;
	}
	if (json_is_integer(json_object_get(doc, "cursor"))) {
		json_decref(*cursor);
		*cursor = json_integer(int_of(doc, "cursor"));
	}
	json_object_foreach(json_object_get(doc, "secrets"), name, v) {
		json_t *row = json_pack("{s:s, s:o}", "name", name, "version",
			json_is_integer(json_object_get(v, "version")) ?
			json_integer(int_of(v, "version")) : json_null());

		if (row == NULL || json_array_append_new(*secrets, row) != 0) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
out:
	json_decref(doc);
	return rc;
}

/* One reported sink, in the shape of the --json output. */
static json_t *sink_entry(const json_t *s)
{
	const char *kind = str_of(s, "kind");
	int is_template = kind != NULL && strcmp(kind, KIND_TEMPLATE) == 0;
	const char *source = str_of(s, is_template ? "source" : "secret");
	const char *error = str_of(s, "error");
	json_int_t version = int_of(s, "version");

	return json_pack("{s:s, s:s, s:s?, s:s, s:o, s:o, s:o, s:s?, s:o, s:o}",
		"path", str_of(s, "path"),
		"kind", is_template ? KIND_TEMPLATE : KIND_FILE,
		is_template ? "source" : "secret", source,
		"state", error != NULL ? "failed" :
			 int_of(s, "last_ok") > 0 ? "ok" : "never",
		"version", version > 0 ? json_integer(version) : json_null(),
		"last_ok", time_of(s, "last_ok"),
		"last_written", time_of(s, "last_written"),
		"error", error,
		"error_since", time_of(s, "error_since"),
		"error_at", time_of(s, "error_at"));
}

/* A configured sink the agent has not reported on. */
static json_t *never_entry(const ag_sink *s)
{
	int is_template = s->kind == AG_SINK_TEMPLATE;
	json_t *path = text_json(s->path);
	json_t *source = text_json(is_template ? s->source : s->secret);

	return json_pack("{s:o, s:s, s:o, s:s, s:n, s:n, s:n, s:n, s:n, s:n}",
		"path", path, "kind", is_template ? KIND_TEMPLATE : KIND_FILE,
		is_template ? "source" : "secret", source, "state", "never",
		"version", "last_ok", "last_written", "error", "error_since",
		"error_at");
}

/*
 * The report: {"state_dir","agent","server","sinks","secrets","cursor",
 * "ok"} (docs/AGENT.md "Status").  status may be NULL (none yet), cfg too.
 */
static cf_status build_report(const char *dir, const json_t *status,
			      const ag_config *cfg, int running,
			      const char *running_why, json_t *secrets,
			      json_t *cursor, json_t **out, cf_error *err)
{
	json_t *sinks = json_array(), *agent = NULL, *server = NULL, *s;
	json_t *configured = cfg != NULL ? json_object() : NULL;
	json_t *reported = json_object();
	const json_t *srv = json_object_get(status, "server");
	const json_t *connected = json_object_get(srv, "connected");
	int ok = status != NULL;
	size_t i;

	*out = NULL;
	if (sinks == NULL || reported == NULL || (cfg != NULL &&
						  configured == NULL))
		goto nomem;
	/* The paths of F, spelled as status.json spells them (text_json). */
	for (size_t j = 0; cfg != NULL && j < cfg->n_sinks; j++) {
		json_t *p = text_json(cfg->sinks[j].path);

		if (p == NULL || json_object_set_new(configured,
		    json_string_value(p), json_true()) != 0) {
			json_decref(p);
			goto nomem;
		}
		json_decref(p);
	}
	json_array_foreach(json_object_get(status, "sinks"), i, s) {
		const char *path = str_of(s, "path");
		int in_config = cfg == NULL ||
				json_object_get(configured, path) != NULL;
		json_t *e;

		if (path == NULL)
			continue;
		e = sink_entry(s);
		if (e == NULL || (cfg != NULL && json_object_set_new(e,
		    "configured", json_boolean(in_config)) != 0) ||
		    json_array_append_new(sinks, e) != 0 ||
		    json_object_set_new(reported, path, json_true()) != 0)
			goto nomem;
		if (in_config && strcmp(str_of(e, "state"), "ok") != 0)
			ok = 0;
	}
	for (size_t j = 0; cfg != NULL && j < cfg->n_sinks; j++) {
		json_t *p = text_json(cfg->sinks[j].path), *e;
		int known = p != NULL &&
			    json_object_get(reported, json_string_value(p)) != NULL;

		if (p == NULL)
			goto nomem;
		json_decref(p);
		if (known)
			continue;
		e = never_entry(&cfg->sinks[j]);
		if (e == NULL || json_object_set_new(e, "configured",
						     json_true()) != 0 ||
		    json_array_append_new(sinks, e) != 0)
			goto nomem;
		ok = 0;
	}
	json_decref(configured);
	json_decref(reported);
	configured = reported = NULL;
	agent = json_pack("{s:o, s:o, s:o, s:o, s:o, s:s?}",
		"running", running < 0 ? json_null() : json_boolean(running),
		"pid", status != NULL && int_of(status, "pid") > 0 ?
		       json_integer(int_of(status, "pid")) : json_null(),
		"started", time_of(status, "started"),
		"reported", time_of(status, "updated"),
		"stopped", time_of(status, "stopped"),
		"lock_error", running < 0 ? running_why : NULL);
	server = json_pack("{s:o, s:o, s:s?, s:o, s:o}",
		"connected", json_is_boolean(connected) ?
			     json_boolean(json_is_true(connected)) : json_null(),
		"last_contact", time_of(srv, "last_contact"),
		"error", str_of(srv, "error"),
		"error_since", time_of(srv, "error_since"),
		"error_at", time_of(srv, "error_at"));
	if (agent == NULL || server == NULL)
		goto nomem;
	*out = json_pack("{s:s, s:o, s:o, s:o, s:O, s:O, s:b}", "state_dir", dir,
			 "agent", agent, "server", server, "sinks", sinks,
			 "secrets", secrets, "cursor", cursor, "ok", ok);
	agent = server = sinks = NULL;
	if (*out == NULL)
		goto nomem;
	return CF_OK;
nomem:
	json_decref(configured);
	json_decref(reported);
	json_decref(sinks);
	json_decref(agent);
	json_decref(server);
	return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
}

/* "12 s", "5 min", "3 h", "2 d" since t. */
static const char *ago(time_t now, json_int_t t, char *buf, size_t size)
{
	long long d = (long long)now - (long long)t;

	if (t <= 0) {
		snprintf(buf, size, "at an unknown time");
		return buf;
	}
	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(buf, size, "%lld s ago", d);
	else if (d < 120 * 60)
		snprintf(buf, size, "%lld min ago", d / 60);
	else if (d < 48 * 3600)
		snprintf(buf, size, "%lld h ago", d / 3600);
	else
		snprintf(buf, size, "%lld d ago", d / 86400);
	return buf;
}

static void print_agent(const json_t *agent, const char *dir, time_t now)
{
	const json_t *running = json_object_get(agent, "running");
	json_int_t pid = int_of(agent, "pid"), reported = int_of(agent, "reported");
	json_int_t stopped = int_of(agent, "stopped");
	char a[32], b[32], why[600];

	if (json_is_null(running)) {
		printf("agent:   unknown (%s)\n", cli_printable(str_of(agent,
		       "lock_error"), why, sizeof(why)));
	} else if (json_is_true(running)) {
		if (reported > 0 && stopped == 0)
			printf("agent:   running (pid %lld, started %s; last "
			       "report %s)\n", (long long)pid,
			       ago(now, int_of(agent, "started"), a, sizeof(a)),
			       ago(now, reported, b, sizeof(b)));
		else
			printf("agent:   running (it has not reported yet)\n");
	} else if (reported == 0) {
		printf("agent:   not running, and it never reported in %s "
		       "(no status.json)\n", cli_printable(dir, why, sizeof(why)));
	} else if (stopped > 0) {
		printf("agent:   not running (pid %lld stopped %s)\n",
		       (long long)pid, ago(now, stopped, a, sizeof(a)));
	} else {
		printf("agent:   not running (pid %lld last reported %s, and did "
		       "not stop cleanly)\n", (long long)pid,
		       ago(now, reported, a, sizeof(a)));
	}
}

static void print_server(const json_t *server, int live, time_t now)
{
	const json_t *connected = json_object_get(server, "connected");
	json_int_t contact = int_of(server, "last_contact");
	json_int_t since = int_of(server, "error_since");
	char a[32], b[32], iso[32], why[AG_STATUS_ERROR_MAX];

	cli_printable(str_of(server, "error"), why, sizeof(why));
	if (json_is_null(connected)) {
		printf("server:  not contacted yet\n");
	} else if (json_is_true(connected)) {
		printf("server:  connected%s (last contact %s", live ? "" :
		       " at the agent's last report", ago(now, contact, a,
							 sizeof(a)));
		if (why[0] != '\0')
			printf("; last error %s: %s", ago(now, int_of(server,
			       "error_at"), b, sizeof(b)), why);
		printf(")\n");
	} else if (contact > 0) {
		cli_unix_iso(contact, iso, sizeof(iso));
		printf("server:  not reached since %s (%s): %s\n", iso,
		       ago(now, contact, a, sizeof(a)), why);
	} else {
		printf("server:  never reached (failing since %s): %s\n",
		       ago(now, since, a, sizeof(a)), why);
	}
}

static int width_of(const json_t *sinks, const char *key, const char *alt,
		    int least, int most)
{
	const json_t *s;
	size_t i;
	int w = least;

	json_array_foreach(sinks, i, s) {
		const char *v = str_of(s, key) ? str_of(s, key) :
				alt ? str_of(s, alt) : NULL;
		size_t len = v ? strlen(v) : 0;

		if (len > (size_t)w)
			w = len > (size_t)most ? most : (int)len;
	}
	return w;
}

static void print_sinks(const json_t *sinks, time_t now)
{
	const json_t *s;
	size_t i, n_ok = 0, n_failed = 0, n_never = 0, n_other = 0;
	int wp = width_of(sinks, "path", NULL, 4, 60);
	int ws = width_of(sinks, "secret", "source", 15, 50);

	json_array_foreach(sinks, i, s) {
		const char *state = str_of(s, "state");

		if (json_is_false(json_object_get(s, "configured")))
			n_other++;
		else if (strcmp(state, "ok") == 0)
			n_ok++;
		else if (strcmp(state, "failed") == 0)
			n_failed++;
		else
			n_never++;
	}
	printf("sinks:   %zu ok, %zu failed, %zu never applied", n_ok, n_failed,
	       n_never);
	if (n_other > 0)
		printf(", %zu no longer configured", n_other);
	printf("\n");
	if (json_array_size(sinks) == 0)
		return;
	printf("  %-*s  %-6s  %-*s  %-7s  %s\n", wp, "PATH", "STATE", ws,
	       "SECRET / SOURCE", "VERSION", "WRITTEN");
	json_array_foreach(sinks, i, s) {
		char path[PATH_MAX], source[PATH_MAX], ver[24], when[32];
		char err[AG_STATUS_ERROR_MAX], since[32], at[32];
		const char *src = str_of(s, "secret") ? str_of(s, "secret") :
				  str_of(s, "source");

		if (int_of(s, "version") > 0)
			snprintf(ver, sizeof(ver), "%lld",
				 (long long)int_of(s, "version"));
		else
			snprintf(ver, sizeof(ver), "-");
		if (int_of(s, "last_written") > 0)
			ago(now, int_of(s, "last_written"), when, sizeof(when));
		else
			snprintf(when, sizeof(when), "never");
		printf("  %-*s  %-6s  %-*s  %-7s  %s%s\n", wp,
		       cli_printable(str_of(s, "path"), path, sizeof(path)),
		       str_of(s, "state"), ws,
		       cli_printable(src, source, sizeof(source)), ver, when,
		       json_is_false(json_object_get(s, "configured")) ?
		       "  (not in the config)" : "");
		if (str_of(s, "error") != NULL)
			printf("      error %s (since %s): %s\n",
			       ago(now, int_of(s, "error_at"), at, sizeof(at)),
			       ago(now, int_of(s, "error_since"), since,
				   sizeof(since)),
			       cli_printable(str_of(s, "error"), err, sizeof(err)));
	}
}

static void print_secrets(const json_t *secrets, const json_t *cursor)
{
	const json_t *s;
	size_t i;
	int wn = 4;

	json_array_foreach(secrets, i, s) {
		size_t len = strlen(str_of(s, "name"));

		if (len > (size_t)wn)
			wn = len > 60 ? 60 : (int)len;
	}
	printf("secrets: %zu accepted", json_array_size(secrets));
	if (json_is_integer(cursor))
		printf(" (feed cursor %lld)", (long long)json_integer_value(cursor));
	printf("\n");
	json_array_foreach(secrets, i, s) {
		char name[300];

		printf("  %-*s  v%lld\n", wn, cli_printable(str_of(s, "name"),
		       name, sizeof(name)), (long long)int_of(s, "version"));
	}
}

static void print_report(const json_t *report, time_t now)
{
	const json_t *agent = json_object_get(report, "agent");

	print_agent(agent, str_of(report, "state_dir"), now);
	print_server(json_object_get(report, "server"),
		     json_is_true(json_object_get(agent, "running")), now);
	print_sinks(json_object_get(report, "sinks"), now);
	print_secrets(json_object_get(report, "secrets"),
		      json_object_get(report, "cursor"));
}

/* D must exist and be a directory this user may read. */
static cf_status check_dir(const char *dir, cf_error *err)
{
	struct stat sb;

	if (stat(dir, &sb) != 0)
		return cf_error_set(err, errno == ENOENT ? CF_ERR_USAGE :
			CF_ERR_IO, "state dir %s: %s; give the --state-dir the "
			"agent runs with (made by 'coffer agent join')", dir,
			strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return cf_error_set(err, CF_ERR_USAGE, "state dir %s is not a "
				    "directory", dir);
	if (access(dir, R_OK | X_OK) != 0)
		return cf_error_set(err, CF_ERR_IO, "cannot read state dir %s: "
			"%s; run this as its owner (uid %lu, the agent's user) "
			"or root", dir, strerror(errno),
			(unsigned long)sb.st_uid);
	return CF_OK;
}

int ag_cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *dir = NULL, *config = NULL;
	json_t *status = NULL, *secrets = NULL, *cursor = NULL, *report = NULL;
	ag_config *cfg = NULL;
	cf_error err = { 0 };
	char why[PATH_MAX + 64] = "";
	int ch, as_json = 0, running, code;
	json_malloc_t secure_malloc;
	json_free_t secure_free;
	cf_status rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'c': config = optarg; break;
		case 'j': as_json = 1; break;
		case 'h': status_usage(stdout); return 0;
		default: return cli_bad_option("agent status");
		}
	}
	if (optind != argc)
		return cli_usage("agent status", "unexpected argument \"%s\"",
				 argv[optind]);
	if (dir == NULL)
		return cli_usage("agent status", "--state-dir is required");
	/*
	 * Nothing read here is secret (names, paths, versions, times, our
	 * sentences), and the report of 10,000 sinks would not fit the
	 * secure heap that jansson otherwise uses (secmem.c): ordinary
	 * memory while this command runs, every json_t freed before the
	 * secure allocator is put back.
	 */
	json_get_alloc_funcs(&secure_malloc, &secure_free);
	json_set_alloc_funcs(malloc, free);
	rc = check_dir(dir, &err);
	if (rc == CF_OK && config != NULL)
		rc = ag_config_load(config, &cfg, &err);
	if (rc == CF_OK) {
		rc = ag_status_load(dir, &status, &err);
		if (rc == CF_ERR_NOT_FOUND) {
			cf_error_clear(&err);
			rc = CF_OK;
		}
	}
	if (rc == CF_OK)
		rc = load_secrets(dir, &secrets, &cursor, &err);
	if (rc != CF_OK) {
		code = cli_fail(&err);
		goto out;
	}
	running = agent_running(dir, why, sizeof(why));
	rc = build_report(dir, status, cfg, running, why, secrets, cursor,
			  &report, &err);
	if (rc != CF_OK) {
		code = cli_fail(&err);
		goto out;
	}
	if (as_json) {
		json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		print_report(report, time(NULL));
	}
	fflush(stdout);
	code = json_is_true(json_object_get(report, "ok")) ? 0 :
	       cli_exit_code(CF_ERR_STALE);
out:
	json_decref(report);
	json_decref(status);
	json_decref(secrets);
	json_decref(cursor);
	ag_config_free(cfg);
	json_set_alloc_funcs(secure_malloc, secure_free);
	return code;
}
