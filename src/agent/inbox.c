/*
 * inbox.c - the agent's side of operator-to-agent commands (inbox.h,
 * docs/COMMANDS.md).
 *
 * Threads.  Everything that decides (ag_commands_take: unseal, checks,
 * the replay store, the configuration) runs on the main thread, with the
 * runtime's trust as it is at that moment.  What takes time (running an
 * action, posting an answer with retries) runs on one worker thread
 * (agent run) or in ag_commands_drain (agent once), one action at a
 * time, so that the long poll and the sinks never wait for an action.
 * The two share only the job queue and the retry list, under one mutex;
 * a job owns copies of everything it needs (argv, the signer's
 * certificate), so a SIGHUP that frees the configuration, or a CRL that
 * rebuilds the trust, cannot pull anything from under it.  The worker
 * signs with its own copy of the agent's key and certificate.
 *
 * Invariants:
 *   - nothing runs unless every check passed and its id is on disk
 *     (ag_replay_record wrote D/commands) first: a crash after that
 *     never runs it again;
 *   - every refusal after the unseal is answered, sealed to the signer
 *     (the only party the agent can trust to read it);
 *   - arguments and outputs are never logged, never written to disk;
 *     they live in wiped memory (argv, capture buffers, the result);
 *   - the replay store only forgets an id after its command expired
 *     (+ CF_CMD_SKEW); when it is full, new commands are refused.
 *
 * D/commands (text, replaced whole):
 *   coffer-agent-commands 1
 *   cursor N
 *   ID KEEP_UNTIL            one line per id seen (unix seconds)
 */
#include "inbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "b64.h"
#include "envelope.h"
#include "hook.h"
#include "log.h"
#include "pki.h"
#include "sink_file.h"

#define REPLAY_HEADER "coffer-agent-commands 1\n"
/* A line "ID KEEP_UNTIL\n" is at most this long; the file is bounded. */
#define REPLAY_LINE_MAX (CF_CMD_ID_LEN + 1 + 20 + 1)
#define REPLAY_FILE_MAX (64u + (size_t)AG_REPLAY_MAX * REPLAY_LINE_MAX)
/* What an action finds in its environment, besides the two of ours. */
#define ACTION_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* agent once: attempts and first delay posting an answer. */
#define DRAIN_POST_ATTEMPTS 3
#define DRAIN_RETRY_S 1.0
/* Most commands one feed answer may hand us (the server sends <= 100). */
#define TAKE_MAX 1000u

/* ------------------------------------------------------------ replay */

struct seen {
	char id[CF_CMD_ID_LEN + 1];
	int64_t keep_until;
};

struct ag_replay {
	char path[PATH_MAX];
	struct seen *ids;
	size_t n, cap;
	int64_t cursor;
};

int64_t ag_replay_cursor(const ag_replay *r) { return r->cursor; }
size_t ag_replay_count(const ag_replay *r) { return r->n; }

int ag_replay_seen(const ag_replay *r, const char *id)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->ids[i].id, id) == 0)
			return 1;
	return 0;
}

static void replay_prune(ag_replay *r, int64_t now)
{
	size_t kept = 0;

	for (size_t i = 0; i < r->n; i++)
		if (r->ids[i].keep_until >= now)
			r->ids[kept++] = r->ids[i];
	r->n = kept;
}

static cf_status replay_add(ag_replay *r, const char *id, int64_t keep_until,
			    cf_error *err)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct seen *grown;

		if (cap > AG_REPLAY_MAX)
			cap = AG_REPLAY_MAX;
		grown = realloc(r->ids, cap * sizeof(*grown));
		if (grown == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		r->ids = grown;
		r->cap = cap;
	}
	snprintf(r->ids[r->n].id, sizeof(r->ids[r->n].id), "%s", id);
	r->ids[r->n].keep_until = keep_until;
	r->n++;
	return CF_OK;
}

static cf_status replay_save(ag_replay *r, cf_error *err)
{
	size_t cap = 64 + r->n * REPLAY_LINE_MAX, used;
	char *text = malloc(cap);
	cf_status rc;
	int n;

	if (text == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	n = snprintf(text, cap, REPLAY_HEADER "cursor %lld\n",
		     (long long)r->cursor);
	used = (size_t)n;
	for (size_t i = 0; i < r->n; i++) {
		n = snprintf(text + used, cap - used, "%s %lld\n", r->ids[i].id,
			     (long long)r->ids[i].keep_until);
		used += (size_t)n;
	}
	rc = ag_file_replace(r->path, text, used, 0600, err);
	free(text);
	return rc;
}

/* A decimal number of at most 18 digits (no sign), the whole of text. */
static int parse_count(const char *text, size_t len, int64_t *out)
{
	int64_t v = 0;

	if (len == 0 || len > 18)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		v = v * 10 + (text[i] - '0');
	}
	*out = v;
	return 0;
}

/* Reads the whole of path (a regular file, at most max bytes). */
static cf_status read_small(const char *path, size_t max, char **text,
			    size_t *len, cf_error *err)
{
	struct stat sb;
	char *buf = NULL;
	size_t used = 0;
	int fd;
	cf_status rc = CF_OK;

	*text = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return cf_error_set(err, errno == ENOENT ? CF_ERR_NOT_FOUND :
				    CF_ERR_IO, "cannot open %s: %s", path,
				    strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		rc = cf_error_set(err, CF_ERR_IO, "%s is not a regular file",
				  path);
		goto out;
	}
	if ((uint64_t)sb.st_size > max) {
		rc = cf_error_set(err, CF_ERR_TOO_LARGE, "%s is larger than "
				  "%zu bytes; it is damaged: remove it to start "
				  "over", path, max);
		goto out;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (buf == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	while (used < (size_t)sb.st_size) {
		ssize_t got = read(fd, buf + used, (size_t)sb.st_size - used);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			rc = cf_error_set(err, CF_ERR_IO, "cannot read %s: %s",
					  path, got < 0 ? strerror(errno) :
					  "it shrank while read");
			goto out;
		}
		used += (size_t)got;
	}
	buf[used] = '\0';
	*text = buf;
	*len = used;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

static cf_status replay_parse(ag_replay *r, const char *text, size_t len,
			      cf_error *err)
{
	size_t hlen = strlen(REPLAY_HEADER), pos;
	int line = 2;
	int64_t v;

	if (len < hlen || memcmp(text, REPLAY_HEADER, hlen) != 0)
		goto damaged;
	pos = hlen;
	for (; pos < len; line++) {
		const char *start = text + pos, *nl = memchr(start, '\n',
							      len - pos);
		size_t n = nl != NULL ? (size_t)(nl - start) : 0;
		const char *sp;

		if (nl == NULL)
			goto damaged;
		pos += n + 1;
		if (line == 2) {
			if (n < 8 || memcmp(start, "cursor ", 7) != 0 ||
			    parse_count(start + 7, n - 7, &r->cursor) != 0)
				goto damaged;
			continue;
		}
		sp = memchr(start, ' ', n);
		if (sp == NULL || sp - start != CF_CMD_ID_LEN ||
		    parse_count(sp + 1, n - CF_CMD_ID_LEN - 1, &v) != 0 ||
		    r->n >= AG_REPLAY_MAX)
			goto damaged;
		{
			char id[CF_CMD_ID_LEN + 1];
			cf_status rc;

			memcpy(id, start, CF_CMD_ID_LEN);
			id[CF_CMD_ID_LEN] = '\0';
			if (!cf_command_id_valid(id) || ag_replay_seen(r, id))
				goto damaged;
			rc = replay_add(r, id, v, err);
			if (rc != CF_OK)
				return rc;
		}
	}
	if (line == 2)
		goto damaged;       /* no cursor line */
	return CF_OK;
damaged:
	return cf_error_set(err, CF_ERR_PARSE, "%s is damaged (line %d); it "
			    "is the agent's record of the commands it has seen: "
			    "restore it from a backup, or remove it to start "
			    "over (the agent then runs again a command the "
			    "server delivers again before it expires)", r->path,
			    line);
}

cf_status ag_replay_open(const char *state_dir, int64_t now, ag_replay **out,
			 cf_error *err)
{
	ag_replay *r = calloc(1, sizeof(*r));
	char *text = NULL;
	size_t len = 0;
	cf_status rc;

	*out = NULL;
	if (r == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (snprintf(r->path, sizeof(r->path), "%s/%s", state_dir,
		     AG_REPLAY_FILE) >= (int)sizeof(r->path)) {
		rc = cf_error_set(err, CF_ERR_USAGE, "state dir path %s is too "
				  "long", state_dir);
		goto out;
	}
	rc = read_small(r->path, REPLAY_FILE_MAX, &text, &len, err);
	if (rc == CF_ERR_NOT_FOUND) {
		cf_error_clear(err);
		rc = CF_OK;
	} else if (rc == CF_OK) {
		rc = replay_parse(r, text, len, err);
	}
	if (rc != CF_OK)
		goto out;
	replay_prune(r, now);
	*out = r;
	r = NULL;
out:
	free(text);
	ag_replay_free(r);
	return rc;
}

void ag_replay_free(ag_replay *r)
{
	if (r == NULL)
		return;
	free(r->ids);
	free(r);
}

cf_status ag_replay_set_cursor(ag_replay *r, int64_t cursor, cf_error *err)
{
	int64_t was = r->cursor;
	cf_status rc;

	if (cursor == r->cursor)
		return CF_OK;
	r->cursor = cursor;
	rc = replay_save(r, err);
	if (rc != CF_OK)
		r->cursor = was;
	return rc;
}

cf_status ag_replay_record(ag_replay *r, const char *id, int64_t expires,
			   int64_t cursor, int64_t now, cf_error *err)
{
	int64_t was = r->cursor;
	cf_status rc;

	if (ag_replay_seen(r, id)) {
		if (cursor > r->cursor)
			(void)ag_replay_set_cursor(r, cursor, NULL);
		return cf_error_set(err, CF_ERR_REPLAY, "command %s was seen by "
				    "this agent before; a command runs at most once "
				    "(delivered again, replayed or posted twice, it "
				    "is refused)", id);
	}
	replay_prune(r, now);
	if (r->n >= AG_REPLAY_MAX)
		return cf_error_set(err, CF_ERR_LIMIT, "this agent keeps the ids "
				    "of %u commands that have not expired yet and "
				    "takes no more until some expire; send fewer "
				    "commands, or shorter-lived ones", AG_REPLAY_MAX);
	rc = replay_add(r, id, expires > INT64_MAX - CF_CMD_SKEW ? INT64_MAX :
			expires + CF_CMD_SKEW, err);
	if (rc != CF_OK)
		return rc;
	if (cursor > r->cursor)
		r->cursor = cursor;
	rc = replay_save(r, err);
	if (rc != CF_OK) {
		r->n--;
		r->cursor = was;
		return cf_error_set(err, CF_ERR_IO, "command %s: its id could "
				    "not be recorded, so it does not run (%s)", id,
				    err != NULL ? err->msg : "write failed");
	}
	return CF_OK;
}

/* ---------------------------------------------------------- commands */

enum job_kind {
	JOB_RUN,        /* a configured action */
	JOB_STATUS,     /* the status built-in */
	JOB_REFRESH,    /* the refresh built-in (main thread) */
	JOB_ANSWER,     /* res is ready: only seal and post it */
};

struct job {
	struct job *next;
	enum job_kind kind;
	char id[CF_CMD_ID_LEN + 1];         /* the id answered */
	char tenant[65];                    /* the command's (= our root's) */
	char action[CF_CMD_ACTION_MAX + 1];
	char sender[256];                   /* the signer's CN, printable */
	char *sender_raw;                   /* as in the certificate */
	X509 *reply_to;                     /* the signer: answers go to it */
	char **argv;                        /* JOB_RUN: run words + args */
	size_t argc;
	char *env[4];                       /* PATH, id, sender, NULL */
	long timeout_ms;
	int64_t received;
	double queued_at;                   /* CLOCK_MONOTONIC */
	cf_cmd_result *res;
	const char *status_name;            /* of the answer, for the log */
	unsigned char *der;                 /* the sealed answer */
	size_t der_len;
	int attempts;
	double next_try;                    /* CLOCK_MONOTONIC */
	int stopped;                        /* killed: the agent stopped */
};

struct ag_commands {
	ag_cmd_setup setup;
	X509 *cert;
	STACK_OF(X509) *chain;
	EVP_PKEY *key;
	char **status_argv;
	char name[256];                     /* our CN */
	char *groups;                       /* our groups, comma-separated */
	const ag_config *cfg;               /* main thread */
	ag_replay *replay;                  /* main thread */
	struct job *refresh;                /* main thread */
	size_t n_refresh;

	pthread_mutex_t mu;                 /* guards what follows */
	pthread_cond_t cv;
	struct job *head, *tail;            /* to run or answer */
	size_t n_queued, n_runs;            /* queued, of which to run */
	struct job *retry;                  /* answers to post again */
	size_t n_retry;
	int busy;                           /* the worker holds a job */
	int quit;
	volatile sig_atomic_t halt;         /* stops a running action */
	pthread_t worker;
	int has_worker;
};

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_of(const ag_commands *c)
{
	return c->setup.now != NULL ? c->setup.now() : (int64_t)time(NULL);
}

static int stopping(const ag_commands *c)
{
	return c->halt || (c->setup.stop != NULL && *c->setup.stop);
}

/* Control bytes of outside text (a CN) made blanks, for the log. */
static void printable(const char *s, char *buf, size_t size)
{
	size_t j = 0;

	for (size_t i = 0; s[i] != '\0' && j + 1 < size; i++) {
		unsigned char ch = (unsigned char)s[i];

		buf[j++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	buf[j] = '\0';
}

static void strings_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		if (v[i] != NULL)
			OPENSSL_clear_free(v[i], strlen(v[i]) + 1);
	OPENSSL_free(v);
}

static void job_free(struct job *job)
{
	if (job == NULL)
		return;
	X509_free(job->reply_to);
	strings_free(job->argv, job->argc);
	for (size_t i = 0; i < 3; i++)
		if (job->env[i] != NULL)
			OPENSSL_clear_free(job->env[i], strlen(job->env[i]) + 1);
	if (job->sender_raw != NULL)
		OPENSSL_free(job->sender_raw);
	cf_cmd_result_free(job->res);
	OPENSSL_free(job->der);
	OPENSSL_free(job);
}

static char *env_entry(const char *name, const char *value)
{
	size_t len = strlen(name) + strlen(value) + 2;
	char *s = OPENSSL_malloc(len);

	if (s != NULL)
		snprintf(s, len, "%s=%s", name, value);
	return s;
}

/* A job for cmd from signer, received at now. */
static struct job *job_new(enum job_kind kind, const char *id,
			   const cf_command *cmd, X509 *signer,
			   const char *sender_raw, int64_t now)
{
	struct job *job = OPENSSL_zalloc(sizeof(*job));

	if (job == NULL)
		return NULL;
	job->kind = kind;
	snprintf(job->id, sizeof(job->id), "%s", id);
	snprintf(job->tenant, sizeof(job->tenant), "%s", cmd->tenant);
	snprintf(job->action, sizeof(job->action), "%s", cmd->action);
	printable(sender_raw, job->sender, sizeof(job->sender));
	job->sender_raw = OPENSSL_strdup(sender_raw);
	job->received = now;
	job->queued_at = mono_s();
	job->reply_to = X509_dup(signer);
	if (job->sender_raw == NULL || job->reply_to == NULL) {
		job_free(job);
		return NULL;
	}
	return job;
}

/* PATH and our two variables, for JOB_RUN and JOB_STATUS. */
static cf_status job_env(struct job *job, cf_error *err)
{
	job->env[0] = OPENSSL_strdup(ACTION_PATH);
	job->env[1] = env_entry("COFFER_COMMAND_ID", job->id);
	job->env[2] = env_entry("COFFER_COMMAND_SENDER", job->sender_raw);
	job->env[3] = NULL;
	if (job->env[0] == NULL || job->env[1] == NULL || job->env[2] == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	return CF_OK;
}

/* The configured run words, then the operator's arguments. */
static cf_status job_argv(struct job *job, const ag_action *action,
			  const cf_command *cmd, cf_error *err)
{
	size_t words = 0;

	while (action->run[words] != NULL)
		words++;
	job->argv = OPENSSL_zalloc((words + cmd->n_args + 1) * sizeof(char *));
	if (job->argv == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < words + cmd->n_args; i++) {
		const char *s = i < words ? action->run[i] : cmd->args[i - words];

		job->argv[i] = OPENSSL_strdup(s);
		job->argc = i + 1;
		if (job->argv[i] == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	}
	job->timeout_ms = action->timeout_ms;
	return CF_OK;
}

/* A result for job: tenant, id, agent and times filled. */
static cf_cmd_result *result_for(const ag_commands *c, const struct job *job)
{
	cf_cmd_result *res = cf_cmd_result_new();

	if (res == NULL)
		return NULL;
	snprintf(res->tenant, sizeof(res->tenant), "%s", job->tenant);
	snprintf(res->id, sizeof(res->id), "%s", job->id);
	snprintf(res->agent, sizeof(res->agent), "%s", c->name);
	res->received = res->started = res->finished = job->received;
	return res;
}

static void enqueue(ag_commands *c, struct job *job)
{
	pthread_mutex_lock(&c->mu);
	job->next = NULL;
	if (c->tail != NULL)
		c->tail->next = job;
	else
		c->head = job;
	c->tail = job;
	c->n_queued++;
	if (job->kind == JOB_RUN || job->kind == JOB_STATUS)
		c->n_runs++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static struct job *dequeue(ag_commands *c)
{
	struct job *job = c->head;

	if (job == NULL)
		return NULL;
	c->head = job->next;
	if (c->head == NULL)
		c->tail = NULL;
	job->next = NULL;
	c->n_queued--;
	if (job->kind == JOB_RUN || job->kind == JOB_STATUS)
		c->n_runs--;
	return job;
}

/*
 * Answers a refusal: logged (warning), then queued to be sealed to the
 * signer and posted.  rc is the refusal's status, why its sentence.
 */
static cf_status refuse(ag_commands *c, const char *id, const cf_command *cmd,
			X509 *signer, const char *sender_raw, cf_status rc,
			const char *why, int64_t now)
{
	struct job *job;
	size_t waiting;

	ag_log(AG_LOG_WARN, "command %s: refused (%s): %s", id,
	       cf_status_name(rc), why);
	/*
	 * Answers waiting to be posted are bounded: a server that delivers
	 * the same refused envelope over and over (or stalls the posts) must
	 * not grow this agent's memory.  Beyond the bound a refusal is only
	 * logged.
	 */
	pthread_mutex_lock(&c->mu);
	waiting = c->n_queued - c->n_runs + c->n_retry;
	pthread_mutex_unlock(&c->mu);
	if (waiting >= AG_CMD_ANSWERS_MAX) {
		ag_log(AG_LOG_WARN, "command %s: %zu answers wait to be posted; "
		       "this refusal is not answered", id, waiting);
		return CF_OK;
	}
	job = job_new(JOB_ANSWER, id, cmd, signer, sender_raw, now);
	if (job == NULL || (job->res = result_for(c, job)) == NULL ||
	    cf_cmd_result_set_reason(job->res, why, NULL) != CF_OK) {
		job_free(job);
		ag_log(AG_LOG_ERROR, "command %s: out of memory; the refusal is "
		       "not answered", id);
		return CF_ERR_NOMEM;
	}
	job->res->status = CF_RESULT_REFUSED;
	snprintf(job->res->code, sizeof(job->res->code), "%s",
		 cf_status_name(rc));
	enqueue(c, job);
	return CF_OK;
}

/*
 * One entry of the feed's "commands", in the order of docs/COMMANDS.md.
 * *cursor is raised to the entry's seq.  Only CF_ERR_NOMEM is returned.
 */
static cf_status take_one(ag_commands *c, const json_t *item,
			  const cf_trust *trust, int64_t *cursor)
{
	const json_t *seq = json_object_get(item, "seq");
	const char *outer = json_string_value(json_object_get(item, "id"));
	const char *b64 = json_string_value(json_object_get(item, "envelope"));
	unsigned char *der = NULL;
	size_t len = 0;
	cf_command *cmd = NULL;
	X509 *signer = NULL;
	cf_error why = { 0 };
	char cn[256], shown[256];
	const ag_action *action = NULL;
	enum job_kind kind = JOB_RUN;
	struct job *job = NULL;
	int64_t now;
	cf_status rc;

	if (!json_is_integer(seq) || json_integer_value(seq) < 0) {
		ag_log(AG_LOG_WARN, "the server sent a command entry without a "
		       "valid seq; ignored");
		return CF_OK;
	}
	if (json_integer_value(seq) > *cursor)
		*cursor = json_integer_value(seq);
	if (!cf_command_id_valid(outer) || b64 == NULL) {
		ag_log(AG_LOG_WARN, "the server sent a command entry (seq %lld) "
		       "without a valid id or envelope; dropped",
		       (long long)json_integer_value(seq));
		return CF_OK;
	}
	rc = cf_b64_decode(b64, strlen(b64), CF_ENVELOPE_MAX_BYTES,
			   "the command's envelope", &der, &len, &why);
	if (rc == CF_OK)
		rc = cf_command_unseal(der, len, c->cert, c->key, trust, &cmd,
				       &signer, &why);
	if (rc == CF_ERR_NOMEM)
		goto out;
	if (rc != CF_OK) {
		/* Nobody we can trust to read an answer: log and drop. */
		ag_log(AG_LOG_WARN, "command %s: dropped, not answered: %s",
		       outer, why.msg);
		rc = CF_OK;
		goto out;
	}
	cf_cert_cn(signer, cn, sizeof(cn));
	printable(cn, shown, sizeof(shown));
	ag_log(AG_LOG_INFO, "command %s: received \"%s\" from %s (%zu "
	       "argument(s))", outer, cmd->action, shown, cmd->n_args);
	now = now_of(c);
	if (strcmp(outer, cmd->id) != 0) {
		/*
		 * Not answered: an answer would carry the server's id, so a
		 * server could relabel an old refused command as a new one
		 * and have this agent sign "refused" for a command it never
		 * saw.
		 */
		ag_log(AG_LOG_WARN, "command %s: dropped, not answered: the "
		       "server delivered the record of command %s under this "
		       "id; nothing ran", outer, cmd->id);
		goto out;
	}
	if (rc == CF_OK)
		rc = cf_command_check(cmd, signer, c->name, c->groups, now, &why);
	if (rc == CF_OK)
		rc = ag_replay_record(c->replay, cmd->id, cmd->expires, *cursor,
				      now, &why);
	if (rc == CF_OK) {
		if (strcmp(cmd->action, "status") == 0 ||
		    strcmp(cmd->action, "refresh") == 0) {
			kind = cmd->action[0] == 's' ? JOB_STATUS : JOB_REFRESH;
			if (cmd->n_args > 0)
				rc = cf_error_set(&why, CF_ERR_PERMISSION, "the "
						  "built-in "
						  "action %s takes no arguments and "
						  "%zu were given", cmd->action,
						  cmd->n_args);
		} else if ((action = ag_config_action(c->cfg, cmd->action)) ==
			   NULL) {
			rc = cf_error_set(&why, CF_ERR_NOT_FOUND, "action %s is "
					  "not configured on agent %s (no [action "
					  "%s] section); the built-in actions are "
					  "status and refresh", cmd->action,
					  c->name, cmd->action);
		} else {
			rc = ag_action_args_check(action, cmd->args, cmd->n_args,
						  &why);
		}
	}
	if (rc == CF_OK && kind != JOB_REFRESH) {
		pthread_mutex_lock(&c->mu);
		if (c->n_runs >= AG_CMD_QUEUE_MAX)
			rc = cf_error_set(&why, CF_ERR_LIMIT, "%u commands already "
					  "wait to run on agent %s; try again "
					  "later", AG_CMD_QUEUE_MAX, c->name);
		pthread_mutex_unlock(&c->mu);
	}
	if (rc == CF_ERR_NOMEM)
		goto out;
	if (rc != CF_OK) {
		rc = refuse(c, outer, cmd, signer, cn, rc, why.msg, now);
		goto out;
	}
	job = job_new(kind, outer, cmd, signer, cn, now);
	if (job == NULL || job_env(job, &why) != CF_OK ||
	    (kind == JOB_RUN && job_argv(job, action, cmd, &why) != CF_OK)) {
		rc = CF_ERR_NOMEM;
		goto out;
	}
	if (kind == JOB_STATUS)
		job->timeout_ms = AG_CMD_STATUS_TIMEOUT_MS;
	if (kind == JOB_REFRESH) {
		job->next = c->refresh;
		c->refresh = job;
		c->n_refresh++;
	} else {
		enqueue(c, job);
	}
	job = NULL;
out:
	if (rc == CF_ERR_NOMEM)
		ag_log(AG_LOG_ERROR, "command %s: out of memory; not run, not "
		       "answered", outer);
	job_free(job);
	X509_free(signer);
	cf_command_free(cmd);
	OPENSSL_free(der);
	return rc;
}

cf_status ag_commands_take(ag_commands *c, const json_t *resp,
			   const cf_trust *trust, cf_error *err)
{
	const json_t *list = json_object_get(resp, "commands");
	const json_t *said = json_object_get(resp, "command_cursor");
	int64_t mine = ag_replay_cursor(c->replay), cursor = mine;
	cf_error why = { 0 };
	size_t i, n;
	json_t *item;

	if (list != NULL && !json_is_array(list)) {
		ag_log(AG_LOG_WARN, "the server's feed answer has a \"commands\" "
		       "that is not a list; ignored");
		list = NULL;
	}
	n = json_array_size(list);
	if (n > TAKE_MAX)
		n = TAKE_MAX;
	for (i = 0; i < n; i++) {
		item = json_array_get(list, i);
		if (take_one(c, item, trust, &cursor) == CF_ERR_NOMEM)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory "
					    "taking commands");
	}
	if (json_is_integer(said) && json_integer_value(said) >= 0) {
		int64_t theirs = json_integer_value(said);

		if (n == 0 && theirs < mine) {
			/* A restored server: its commands start again lower.
			 * The ids seen still refuse what ran already. */
			ag_log(AG_LOG_WARN, "the server's command position went "
			       "back (%lld, this agent was at %lld): its database "
			       "was restored; reading its commands from there",
			       (long long)theirs, (long long)mine);
			cursor = theirs;
		} else if (n == json_array_size(list) && theirs > cursor) {
			cursor = theirs;
		}
	}
	if (ag_replay_set_cursor(c->replay, cursor, &why) != CF_OK)
		ag_log(AG_LOG_WARN, "the command position was not saved: %s; "
		       "commands delivered again are refused as seen", why.msg);
	return CF_OK;
}

/* ------------------------------------------------------------ running */

static void log_ran(const struct job *job, const cf_cmd_result *res,
		    double ran_s, double queued_s)
{
	char how[CF_ERROR_MAX + 64];

	if (res->timed_out)
		snprintf(how, sizeof(how), "timed out after %.1f s and was "
			 "killed", (double)job->timeout_ms / 1000.0);
	else if (job->stopped)
		snprintf(how, sizeof(how), "was killed (signal %d): the agent "
			 "is stopping", res->signal);
	else if (res->signal != 0)
		snprintf(how, sizeof(how), "was killed by signal %d",
			 res->signal);
	else if (res->exit_code >= 0)
		snprintf(how, sizeof(how), "exited %d", res->exit_code);
	else
		snprintf(how, sizeof(how), "could not be started (%s: %s)",
			 res->code, res->reason ? res->reason : "");
	ag_log(res->status == CF_RESULT_OK ? AG_LOG_INFO : AG_LOG_WARN,
	       "command %s: \"%s\" %s (status %s) after %.2f s, queued %.2f s; "
	       "stdout %zu bytes%s, stderr %zu bytes%s", job->id, job->action,
	       how, cf_result_status_name(res->status), ran_s, queued_s,
	       res->out_len, res->out_cut ? " (cut)" : "", res->err_len,
	       res->err_cut ? " (cut)" : "");
}

/* Runs a JOB_RUN or JOB_STATUS; job->res is its result (NULL: no memory). */
static void run_job(ag_commands *c, struct job *job)
{
	ag_capture cap = { 0 };
	cf_error why = { 0 };
	cf_cmd_result *res = result_for(c, job);
	double queued_s = mono_s() - job->queued_at;
	cf_status rc;

	if (res == NULL)
		return;
	cap.argv = job->kind == JOB_STATUS ? c->status_argv : job->argv;
	cap.envp = job->env;
	cap.timeout_ms = job->timeout_ms;
	cap.grace_ms = AG_CMD_KILL_GRACE_MS;
	cap.max_bytes = CF_CMD_OUTPUT_MAX;
	cap.stop[0] = c->setup.stop;
	cap.stop[1] = &c->halt;
	res->started = now_of(c);
	rc = ag_hook_capture(&cap, &why);
	res->finished = now_of(c);
	if (rc == CF_OK) {
		int ws = cap.wstatus;

		res->exit_code = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
		res->signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
		res->timed_out = cap.timed_out != 0;
		job->stopped = cap.stopped;
		res->status = res->exit_code == 0 && !cap.timed_out &&
			      !cap.stopped ? CF_RESULT_OK : CF_RESULT_FAILED;
		if (cap.timed_out)
			snprintf(why.msg, sizeof(why.msg), "the action did not "
				 "finish within %.1f s; its process group was "
				 "killed (SIGTERM, then SIGKILL %.0f s later)",
				 (double)job->timeout_ms / 1000.0,
				 (double)AG_CMD_KILL_GRACE_MS / 1000.0);
		else if (cap.stopped)
			snprintf(why.msg, sizeof(why.msg), "the agent was "
				 "stopping; the action was killed");
		if ((why.msg[0] != '\0' &&
		     cf_cmd_result_set_reason(res, why.msg, NULL) != CF_OK) ||
		    cf_cmd_result_set_output(res, 0, cap.out, cap.out_len,
					     cap.out_cut != 0, NULL) != CF_OK ||
		    cf_cmd_result_set_output(res, 1, cap.err, cap.err_len,
					     cap.err_cut != 0, NULL) != CF_OK) {
			cf_cmd_result_free(res);
			res = NULL;
		}
	} else {
		res->status = CF_RESULT_FAILED;
		snprintf(res->code, sizeof(res->code), "%s", cf_status_name(rc));
		if (cf_cmd_result_set_reason(res, why.msg, NULL) != CF_OK) {
			cf_cmd_result_free(res);
			res = NULL;
		}
	}
	if (res != NULL)
		log_ran(job, res, cap.ran_s, queued_s);
	else
		ag_log(AG_LOG_ERROR, "command %s: out of memory; not answered",
		       job->id);
	ag_capture_clear(&cap);
	job->res = res;
}

/* The result signed by the agent and sealed to the signer. */
static cf_status seal_answer(ag_commands *c, struct job *job, cf_error *err)
{
	cf_secret *json = NULL, *signed_der = NULL;
	cf_sealer *sealer = NULL;
	cf_status rc;

	job->status_name = cf_result_status_name(job->res->status);
	rc = cf_cmd_result_encode(job->res, &json, err);
	if (rc == CF_OK)
		rc = cf_envelope_sign_as(json, cf_nid_result(), c->cert, c->key,
					 c->chain, &signed_der, err);
	if (rc == CF_OK)
		rc = cf_sealer_new(signed_der, &sealer, err);
	if (rc == CF_OK)
		rc = cf_sealer_seal(sealer, job->reply_to, &job->der,
				    &job->der_len, err);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	cf_secret_free(json);
	/* The outputs are in the sealed answer now; not kept in the clear. */
	cf_cmd_result_free(job->res);
	job->res = NULL;
	return rc;
}

static int retryable(cf_status rc)
{
	return rc == CF_ERR_NETWORK || rc == CF_ERR_SERVER ||
	       rc == CF_ERR_LIMIT || rc == CF_ERR_TIMEOUT;
}

/*
 * One attempt at delivering job's answer.  Returns 1 when the job is
 * done with (delivered, or given up: job freed), 0 when it should be
 * tried again (after *why).
 */
static int post_once(ag_commands *c, struct job *job, int max_attempts,
		     cf_error *why)
{
	cf_status rc;

	cf_error_clear(why);
	job->attempts++;
	rc = c->setup.post(c->setup.post_arg, job->id, job->der, job->der_len,
			   why);
	if (rc == CF_OK) {
		ag_log(AG_LOG_INFO, "command %s: answered (%s)", job->id,
		       job->status_name);
	} else if (rc == CF_ERR_CONFLICT) {
		ag_log(AG_LOG_INFO, "command %s: already answered (the server "
		       "has this agent's answer)", job->id);
	} else if (retryable(rc) && !stopping(c) &&
		   job->attempts < max_attempts) {
		return 0;
	} else if (retryable(rc)) {
		ag_log(AG_LOG_ERROR, "command %s: answer not delivered after %d "
		       "attempt(s): %s; giving up (the operator gets no answer)",
		       job->id, job->attempts, why->msg);
	} else {
		ag_log(AG_LOG_ERROR, "command %s: answer refused by the server: "
		       "%s; giving up", job->id, why->msg);
	}
	job_free(job);
	return 1;
}

/* Whatever job is, it ends sealed (or is given up): 0 when given up. */
static int prepare_answer(ag_commands *c, struct job *job)
{
	cf_error why = { 0 };

	if (job->kind == JOB_RUN || job->kind == JOB_STATUS) {
		if (stopping(c)) {
			ag_log(AG_LOG_WARN, "command %s: \"%s\" not run (the "
			       "agent is stopping); not answered", job->id,
			       job->action);
			return 0;
		}
		run_job(c, job);
	}
	if (job->res == NULL)
		return 0;
	if (seal_answer(c, job, &why) != CF_OK) {
		ag_log(AG_LOG_ERROR, "command %s: the answer could not be "
		       "signed and sealed: %s; not answered", job->id, why.msg);
		return 0;
	}
	return 1;
}

/* Sleeps seconds, in slices, until stopping. */
static void nap(const ag_commands *c, double seconds)
{
	double until = mono_s() + seconds;

	while (!stopping(c) && mono_s() < until) {
		struct timespec slice = { 0, 100 * 1000 * 1000 };

		nanosleep(&slice, NULL);
	}
}

static double first_retry_s(const ag_commands *c)
{
	return c->setup.retry_s > 0 ? (double)c->setup.retry_s : 2.0;
}

/* The worker: actions one at a time, answers posted, retried later. */
static void *worker_main(void *arg)
{
	ag_commands *c = arg;
	cf_error why = { 0 };

	pthread_mutex_lock(&c->mu);
	while (!c->quit) {
		struct job *job = dequeue(c), **pp, *due = NULL;
		double now = mono_s(), next = 0;

		if (job != NULL) {
			c->busy = 1;
			pthread_mutex_unlock(&c->mu);
			if (!prepare_answer(c, job)) {
				job_free(job);
				job = NULL;
			} else if (post_once(c, job, AG_CMD_POST_ATTEMPTS, &why)) {
				job = NULL;
			}
			pthread_mutex_lock(&c->mu);
			c->busy = 0;
		} else {
			for (pp = &c->retry; *pp != NULL; pp = &(*pp)->next)
				if ((*pp)->next_try <= now) {
					due = *pp;
					*pp = due->next;
					due->next = NULL;
					c->n_retry--;
					break;
				}
			if (due != NULL) {
				c->busy = 1;
				pthread_mutex_unlock(&c->mu);
				job = post_once(c, due, AG_CMD_POST_ATTEMPTS,
						&why) ? NULL : due;
				pthread_mutex_lock(&c->mu);
				c->busy = 0;
			}
		}
		if (job != NULL) {
			double delay = first_retry_s(c);

			for (int i = 1; i < job->attempts && delay < 300; i++)
				delay *= 2;
			ag_log(AG_LOG_WARN, "command %s: answer not delivered "
			       "(attempt %d of %d): %s; retrying in %.0f s",
			       job->id, job->attempts, AG_CMD_POST_ATTEMPTS,
			       why.msg, delay);
			job->next_try = mono_s() + delay;
			job->next = c->retry;
			c->retry = job;
			c->n_retry++;
		}
		pthread_cond_broadcast(&c->cv);
		if (job != NULL || due != NULL || c->head != NULL || c->quit)
			continue;
		/* Nothing to do: sleep until work or the next retry. */
		for (struct job *r = c->retry; r != NULL; r = r->next)
			if (next == 0 || r->next_try < next)
				next = r->next_try;
		if (next == 0) {
			pthread_cond_wait(&c->cv, &c->mu);
		} else {
			struct timespec ts;
			double left = next - mono_s();

			if (left <= 0)
				continue;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += (time_t)left;
			ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

void ag_commands_drain(ag_commands *c)
{
	cf_error why = { 0 };
	struct job *job;

	if (c->has_worker) {
		pthread_mutex_lock(&c->mu);
		while ((c->head != NULL || c->busy || c->retry != NULL) &&
		       !stopping(c)) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
		pthread_mutex_unlock(&c->mu);
		return;
	}
	for (;;) {
		double delay = c->setup.retry_s > 0 ? (double)c->setup.retry_s :
			       DRAIN_RETRY_S;

		pthread_mutex_lock(&c->mu);
		job = dequeue(c);
		pthread_mutex_unlock(&c->mu);
		if (job == NULL)
			break;
		if (!prepare_answer(c, job)) {
			job_free(job);
			continue;
		}
		while (!post_once(c, job, DRAIN_POST_ATTEMPTS, &why)) {
			ag_log(AG_LOG_WARN, "command %s: answer not delivered "
			       "(attempt %d of %d): %s; retrying in %.0f s",
			       job->id, job->attempts, DRAIN_POST_ATTEMPTS,
			       why.msg, delay);
			nap(c, delay);
			delay *= 2;
		}
	}
}

size_t ag_commands_pending(ag_commands *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->n_queued + c->n_retry + (size_t)c->busy + c->n_refresh;
	pthread_mutex_unlock(&c->mu);
	return n;
}

size_t ag_commands_refresh_wanted(const ag_commands *c)
{
	return c->n_refresh;
}

void ag_commands_refresh_done(ag_commands *c, int exit_code,
			      const char *summary)
{
	struct job *job, *next;

	for (job = c->refresh; job != NULL; job = next) {
		next = job->next;
		job->next = NULL;
		job->kind = JOB_ANSWER;
		job->res = result_for(c, job);
		if (job->res == NULL || cf_cmd_result_set_output(job->res, 0,
		    (const unsigned char *)summary, strlen(summary), false,
		    NULL) != CF_OK) {
			ag_log(AG_LOG_ERROR, "command %s: out of memory; not "
			       "answered", job->id);
			job_free(job);
			continue;
		}
		job->res->started = job->received;
		job->res->finished = now_of(c);
		job->res->exit_code = exit_code;
		job->res->status = exit_code == 0 ? CF_RESULT_OK :
				   CF_RESULT_FAILED;
		job->timeout_ms = 0;
		log_ran(job, job->res, (double)(job->res->finished -
			job->received), mono_s() - job->queued_at);
		enqueue(c, job);
	}
	c->refresh = NULL;
	c->n_refresh = 0;
}

/* ------------------------------------------------------------ set up */

static void argv_free(char **argv)
{
	size_t n = 0;

	while (argv != NULL && argv[n] != NULL)
		n++;
	strings_free(argv, n);
}

static char **argv_copy(char *const *argv)
{
	size_t n = 0;
	char **copy;

	while (argv[n] != NULL)
		n++;
	copy = OPENSSL_zalloc((n + 1) * sizeof(*copy));
	for (size_t i = 0; copy != NULL && i < n; i++)
		if ((copy[i] = OPENSSL_strdup(argv[i])) == NULL) {
			strings_free(copy, n);
			return NULL;
		}
	return copy;
}

cf_status ag_commands_new(const ag_cmd_setup *setup, const ag_config *cfg,
			  ag_commands **out, cf_error *err)
{
	ag_commands *c;
	cf_status rc;

	*out = NULL;
	if (setup->post == NULL || setup->cert == NULL || setup->key == NULL ||
	    setup->status_argv == NULL || setup->status_argv[0] == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "commands need the "
				    "agent's certificate, key, a way to post "
				    "answers and a status command");
	c = OPENSSL_zalloc(sizeof(*c));
	if (c == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->setup = *setup;
	c->setup.status_argv = NULL;
	c->setup.state_dir = NULL;
	c->cfg = cfg;
	c->cert = X509_dup(setup->cert);
	c->key = EVP_PKEY_dup(setup->key);
	c->status_argv = argv_copy(setup->status_argv);
	if (setup->chain != NULL)
		c->chain = X509_chain_up_ref(setup->chain);
	if (c->cert == NULL || c->key == NULL || c->status_argv == NULL ||
	    (setup->chain != NULL && c->chain == NULL)) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	cf_cert_cn(c->cert, c->name, sizeof(c->name));
	rc = cf_cert_ext_text(c->cert, cf_nid_groups(), &c->groups, err);
	if (rc != CF_OK)
		goto out;
	rc = ag_replay_open(setup->state_dir, now_of(c), &c->replay, err);
	if (rc != CF_OK)
		goto out;
	if (setup->threaded) {
		sigset_t all, old;
		int prc;

		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		prc = pthread_create(&c->worker, NULL, worker_main, c);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (prc != 0) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "cannot start the "
					  "thread that runs commands: %s",
					  strerror(prc));
			goto out;
		}
		c->has_worker = 1;
	}
	*out = c;
	return CF_OK;
out:
	ag_commands_free(c);
	return rc;
}

void ag_commands_set_config(ag_commands *c, const ag_config *cfg)
{
	c->cfg = cfg;
}

int64_t ag_commands_cursor(const ag_commands *c)
{
	return ag_replay_cursor(c->replay);
}

void ag_commands_free(ag_commands *c)
{
	struct job *job;

	if (c == NULL)
		return;
	if (c->has_worker) {
		pthread_mutex_lock(&c->mu);
		c->quit = 1;
		c->halt = 1;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->worker, NULL);
	}
	while ((job = dequeue(c)) != NULL) {
		ag_log(AG_LOG_WARN, "command %s: %s (the agent is stopping)",
		       job->id, job->kind == JOB_ANSWER ? "answer not sent" :
		       "not run; not answered");
		job_free(job);
	}
	while ((job = c->retry) != NULL) {
		c->retry = job->next;
		ag_log(AG_LOG_ERROR, "command %s: answer not delivered after %d "
		       "attempt(s); giving up (the agent is stopping)", job->id,
		       job->attempts);
		job_free(job);
	}
	while ((job = c->refresh) != NULL) {
		c->refresh = job->next;
		ag_log(AG_LOG_WARN, "command %s: \"refresh\" not done (the agent "
		       "is stopping); not answered", job->id);
		job_free(job);
	}
	ag_replay_free(c->replay);
	argv_free(c->status_argv);
	OPENSSL_free(c->groups);
	X509_free(c->cert);
	sk_X509_pop_free(c->chain, X509_free);
	EVP_PKEY_free(c->key);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	OPENSSL_free(c);
}
