/*
 * supervise.c - the parts of `coffer agent exec` as a supervisor that are
 * not about the command line (supervise.h): signal names, starting the
 * command, and the thread that watches the feed for the secrets the
 * command was given.
 *
 * Starting (ag_spawn_start) follows hook.c: fork with every signal
 * blocked, only async-signal-safe calls in the child, an exec failure
 * sent back as errno through a close-on-exec pipe.  Unlike a reload hook
 * the command keeps exec's standard input and the descriptors exec itself
 * inherited, and gets back the signal mask exec started with: it must
 * see what it would have seen had exec replaced itself, as it did before
 * it became a supervisor.
 *
 * Watching (ag_watch_*): one thread owns the runtime (curl handle, trust)
 * and long-polls GET /v1/agent/secrets with a cursor of its own, in
 * memory: exec never writes the state dir.  Entries for other secrets are
 * skipped unopened.  Each entry of interest is verified exactly as
 * feed.c's take_entry does; what counts as a change is a verified
 * version above the one in use whose value differs.  The thread keeps
 * the newest value of each secret (secure memory) to compare with, and
 * hands changes over through a mutex-guarded slot per secret and an
 * eventfd; a later change replaces one not taken yet.
 */
#include "supervise.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "envelope.h"
#include "log.h"
#include "policy.h"

/* Descriptors marked by hand when close_range is missing (Linux < 5.11). */
#define FD_SCAN_MAX 65536
#define FEED_LIMIT 100
/* How long a request may take beyond the long poll itself. */
#define FEED_SLACK_S 30L
/* Before verifying a change, the CRL is at most this old (seconds). */
#define CRL_BEFORE_ACCEPT_S 10
#define CRL_REFRESH_S 300
#define BACKOFF_MIN_S 1.0
#define BACKOFF_MAX_S 60.0
/* Pages read at once after a poll (a server always saying "more"). */
#define MORE_ROUNDS_MAX 1000

/* ---------------------------------------------------------------- signals */

int ag_signal_from_name(const char *name)
{
	char *end = NULL;
	long n;

	if (name == NULL || name[0] == '\0')
		return 0;
	if (isdigit((unsigned char)name[0])) {
		errno = 0;
		n = strtol(name, &end, 10);
		return errno == 0 && *end == '\0' && n > 0 && n < NSIG ? (int)n : 0;
	}
	if (strncasecmp(name, "SIG", 3) == 0)
		name += 3;
	for (int sig = 1; sig < NSIG; sig++) {
		const char *abbrev = sigabbrev_np(sig);

		if (abbrev != NULL && strcasecmp(abbrev, name) == 0)
			return sig;
	}
	return 0;
}

const char *ag_signal_name(int sig, char *buf, size_t size)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev != NULL)
		snprintf(buf, size, "SIG%s", abbrev);
	else
		snprintf(buf, size, "signal %d", sig);
	return buf;
}

/* ---------------------------------------------------------------- spawn */

cf_status ag_spawn_resolve(const char *file, char *out, size_t size,
			   cf_error *err)
{
	const char *path = getenv("PATH");
	const char *dir, *end;
	struct stat sb;
	int saw_denied = 0;

	if (file[0] == '\0')
		return cf_error_set(err, CF_ERR_USAGE, "the command is an empty "
				    "string");
	if (strchr(file, '/') != NULL) {
		if (snprintf(out, size, "%s", file) >= (int)size)
			return cf_error_set(err, CF_ERR_USAGE, "the command's path "
					    "is too long");
		return CF_OK;
	}
	if (path == NULL || path[0] == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	for (dir = path; dir != NULL; dir = *end ? end + 1 : NULL) {
		size_t len;

		end = strchr(dir, ':');
		if (end == NULL)
			end = dir + strlen(dir);
		len = (size_t)(end - dir);
		/* An empty entry is the current directory, as for execvp. */
		if (snprintf(out, size, "%.*s%s%s", (int)len, dir, len ? "/" : "",
			     file) >= (int)size)
			continue;
		if (stat(out, &sb) != 0 || !S_ISREG(sb.st_mode))
			continue;
		if (access(out, X_OK) == 0)
			return CF_OK;
		saw_denied = 1;
	}
	return cf_error_set(err, CF_ERR_IO, "cannot run %s: %s", file,
			    saw_denied ? "permission denied" :
			    "no such program in PATH");
}

/* The child, from fork to exec: async-signal-safe calls only. */
static void child(const ag_spawn *sp, int report_fd)
{
	struct sigaction dfl;
	struct rlimit lim;
	int fd, limit, err;

	setpgid(0, 0);
	/* Every signal is blocked here, SIGTTOU too: no stop for this. */
	if (sp->take_tty)
		(void)tcsetpgrp(STDIN_FILENO, getpid());
	if (!sp->pipe_ignored) {
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigemptyset(&dfl.sa_mask);
		sigaction(SIGPIPE, &dfl, NULL);
	}
	if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) != 0) {
		limit = FD_SCAN_MAX;
		if (getrlimit(RLIMIT_NOFILE, &lim) == 0 &&
		    lim.rlim_cur < (rlim_t)FD_SCAN_MAX)
			limit = (int)lim.rlim_cur;
		for (fd = 3; fd < limit; fd++)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	for (size_t i = 0; i < sp->n_keep; i++)
		if (sp->keep[i] != report_fd && fcntl(sp->keep[i], F_SETFD, 0) != 0)
			goto fail;
	sigprocmask(SIG_SETMASK, &sp->mask, NULL);
	execve(sp->path, sp->argv, sp->envp);
fail:
	err = errno;
	while (write(report_fd, &err, sizeof(err)) < 0 && errno == EINTR)
		;
	_exit(127);
}

cf_status ag_spawn_start(const ag_spawn *sp, pid_t *pid_out, cf_error *err)
{
	sigset_t all, old_mask;
	int report[2] = { -1, -1 };
	int exec_errno = 0, wstatus;
	pid_t pid;
	ssize_t n;
	cf_status rc = CF_OK;

	*pid_out = -1;
	if (pipe2(report, O_CLOEXEC) != 0)
		return cf_error_set(err, CF_ERR_IO, "cannot start %s: pipe failed: "
				    "%s", sp->path, strerror(errno));
	/* No handler may run in the child before exec, and the child must
	 * not be stopped by SIGTTOU when it takes the terminal. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old_mask);
	pid = fork();
	if (pid == 0)
		child(sp, report[1]);
	exec_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	close(report[1]);
	if (pid < 0) {
		rc = cf_error_set(err, CF_ERR_IO, "cannot start %s: fork failed: %s",
				  sp->path, strerror(exec_errno));
		goto out;
	}
	/* Also here, so that a signal to the group can never miss it. */
	setpgid(pid, pid);
	/* EOF: exec succeeded (the pipe closed on exec); an int: it failed. */
	do {
		n = read(report[0], &exec_errno, sizeof(exec_errno));
	} while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(exec_errno)) {
		while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
			;
		rc = cf_error_set(err, CF_ERR_IO, "cannot run %s: %s", sp->path,
				  strerror(exec_errno));
		goto out;
	}
	*pid_out = pid;
out:
	close(report[0]);
	return rc;
}

/* ---------------------------------------------------------------- watch */

struct watched {
	char *name;
	uint64_t version;          /* newest verified */
	cf_secret *value;          /* its value */
	cf_secret *pending;        /* not taken yet (under lock), or NULL */
	uint64_t pending_version;
};

struct ag_watch {
	ag_runtime *rt;
	long wait_s;
	int64_t cursor;
	struct watched *secrets;
	size_t n;
	pthread_t thread;
	int started;
	pthread_mutex_t lock;
	int notify_fd;             /* eventfd: changes waiting */
	int stop_fd;               /* eventfd: ag_watch_stop was called */
	volatile sig_atomic_t stop; /* also the client's abort flag */
};


/* Sleeps about seconds, or until ag_watch_stop. */
static void nap(ag_watch *w, double seconds)
{
	struct pollfd pfd = { .fd = w->stop_fd, .events = POLLIN };
	double until = ag_mono_s() + seconds, left;

	while (!w->stop && (left = until - ag_mono_s()) > 0)
		(void)poll(&pfd, 1, (int)(left * 1000) + 1);
}

static struct watched *find(ag_watch *w, const char *name)
{
	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->secrets[i].name, name) == 0)
			return &w->secrets[i];
	return NULL;
}

/* Hands s's newest value over to the supervisor (a copy). */
static cf_status hand_over(ag_watch *w, struct watched *s, cf_error *err)
{
	cf_secret *copy = cf_secret_from(cf_secret_cdata(s->value),
					 cf_secret_len(s->value));

	if (copy == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	pthread_mutex_lock(&w->lock);
	cf_secret_free(s->pending);
	s->pending = copy;
	s->pending_version = s->version;
	pthread_mutex_unlock(&w->lock);
	return CF_OK;
}

/*
 * One feed entry: skipped unless it is for a watched secret; else
 * verified as take_entry (feed.c) does, and a change when its version is
 * above the newest one verified and its value differs.  Only running out
 * of memory is an error; a refusal is logged and changes nothing.
 */
static cf_status check_entry(ag_watch *w, const json_t *item, size_t *changes,
			     cf_error *err)
{
	ag_runtime *rt = w->rt;
	const char *name = json_string_value(json_object_get(item, "name"));
	json_int_t said = json_integer_value(json_object_get(item, "version"));
	char shown[CF_NAME_MAX_BYTES * 4 + 8];
	struct watched *s;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_record *rec = NULL;
	cf_error why = { 0 };
	cf_status rc = CF_OK;

	if (name == NULL || cf_name_check("secret name", name, NULL) != CF_OK) {
		ag_log(AG_LOG_WARN, "the server sent a feed entry without a valid "
		       "secret name (\"%s\"); ignored",
		       cli_printable(name ? name : "", shown, sizeof(shown)));
		return CF_OK;
	}
	s = find(w, name);
	if (s == NULL) {
		ag_log(AG_LOG_DEBUG, "%s v%lld: not given to the command", name,
		       (long long)said);
		return CF_OK;
	}
	if (json_is_true(json_object_get(item, "deleted"))) {
		ag_log(AG_LOG_WARN, "the server says %s was deleted (version %lld); "
		       "deletions are not signed: the command keeps version %llu",
		       name, (long long)said, (unsigned long long)s->version);
		return CF_OK;
	}
	rc = ag_open_entry(rt, item, name, s->version, &der, &len, &rec, &why);
	if (rc == CF_ERR_NOMEM) {
		*err = why;
		goto out;
	}
	rc = CF_OK;
	if (rec == NULL)
		goto refused;
	if (rec->version == s->version) {
		ag_log(AG_LOG_DEBUG, "%s v%llu: the version in use", name,
		       (unsigned long long)rec->version);
		goto out;
	}
	if (cf_secret_equal(rec->value, s->value)) {
		ag_log(AG_LOG_INFO, "%s v%llu holds the same value as v%llu: "
		       "nothing to do", name, (unsigned long long)rec->version,
		       (unsigned long long)s->version);
		s->version = rec->version;
		goto out;
	}
	ag_log(AG_LOG_INFO, "verified %s v%llu: its value changed (was v%llu)",
	       name, (unsigned long long)rec->version,
	       (unsigned long long)s->version);
	cf_secret_free(s->value);
	s->value = rec->value;
	rec->value = NULL;
	s->version = rec->version;
	rc = hand_over(w, s, err);
	if (rc == CF_OK)
		(*changes)++;
	goto out;
refused:
	ag_log(AG_LOG_ERROR, "refused %s from the server (version %lld): %s; "
	       "the command keeps version %llu", name, (long long)said, why.msg,
	       (unsigned long long)s->version);
out:
	cf_record_free(rec);
	OPENSSL_free(der);
	return rc;
}

/* Whether list holds an entry for a watched secret. */
static int any_watched(ag_watch *w, const json_t *list)
{
	const json_t *item;
	size_t i;

	json_array_foreach(list, i, item) {
		const char *name = json_string_value(json_object_get(item, "name"));

		if (name != NULL && find(w, name) != NULL)
			return 1;
	}
	return 0;
}

/*
 * One feed request from w->cursor.  *more: the server has more ready (or
 * its position went back and the feed is read again from 0).
 */
static cf_status fetch(ag_watch *w, long wait_s, int *more, size_t *changes,
		       cf_error *err)
{
	ag_runtime *rt = w->rt;
	char path[128];
	json_t *resp = NULL, *list, *item;
	json_int_t cursor;
	size_t i;
	cf_status rc;

	*more = 0;
	snprintf(path, sizeof(path), "/v1/agent/secrets?since=%lld&wait=%ld&limit=%d",
		 (long long)w->cursor, wait_s, FEED_LIMIT);
	cli_client_set_timeout(rt->client, wait_s + FEED_SLACK_S);
	rc = cli_client_call(rt->client, "GET", path, NULL, &resp, err);
	if (rc != CF_OK)
		goto out;
	list = json_object_get(resp, "secrets");
	cursor = json_integer_value(json_object_get(resp, "cursor"));
	if (!json_is_array(list) || !json_is_integer(json_object_get(resp, "cursor")) ||
	    cursor < 0) {
		rc = cf_error_set(err, CF_ERR_SERVER, "the server's feed answer has "
				  "no cursor or secrets list");
		goto out;
	}
	ag_log(AG_LOG_DEBUG, "feed: %zu entr%s after %lld, up to %lld",
	       json_array_size(list), json_array_size(list) == 1 ? "y" : "ies",
	       (long long)w->cursor, (long long)cursor);
	/* A revocation pushed since our last look counts before a change
	 * is believed (as in ag_fetch). */
	if (any_watched(w, list) &&
	    time(NULL) - rt->crl_checked >= CRL_BEFORE_ACCEPT_S) {
		rc = ag_refresh_crl(rt, err);
		if (rc != CF_OK)
			goto out;
	}
	json_array_foreach(list, i, item) {
		rc = check_entry(w, item, changes, err);
		if (rc != CF_OK)
			goto out;
	}
	if (cursor < w->cursor && json_array_size(list) == 0) {
		ag_log(AG_LOG_WARN, "the server's feed position went back (%lld, "
		       "exec was at %lld): its database was restored; reading "
		       "the whole feed again", (long long)cursor,
		       (long long)w->cursor);
		cursor = 0;
		*more = 1;
	} else {
		*more = json_is_true(json_object_get(resp, "more")) &&
			json_array_size(list) > 0;
	}
	w->cursor = cursor;
out:
	json_decref(resp);
	return rc;
}

static void notify(ag_watch *w)
{
	uint64_t one = 1;

	while (write(w->notify_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void *watch_main(void *arg)
{
	ag_watch *w = arg;
	ag_runtime *rt = w->rt;
	double backoff = BACKOFF_MIN_S;

	while (!w->stop) {
		double asked = ag_mono_s();
		int64_t cursor = w->cursor;
		size_t changes = 0;
		int more = 0, rounds = 0;
		cf_error err = { 0 };
		cf_status rc = CF_OK;

		if (time(NULL) - rt->crl_checked >= CRL_REFRESH_S)
			rc = ag_refresh_crl(rt, &err);
		if (rc == CF_OK)
			rc = fetch(w, w->wait_s, &more, &changes, &err);
		/* What the server has ready makes one change, not several. */
		while (rc == CF_OK && more && !w->stop && ++rounds < MORE_ROUNDS_MAX)
			rc = fetch(w, 0, &more, &changes, &err);
		/* Verified changes count even when a later page failed. */
		if (changes > 0)
			notify(w);
		if (w->stop)
			break;
		if (rc != CF_OK) {
			double delay = ag_jittered(backoff);

			ag_log(rc == CF_ERR_NETWORK ? AG_LOG_WARN : AG_LOG_ERROR,
			       "%s; the command keeps running; retrying in %.1f s",
			       err.msg, delay);
			nap(w, delay);
			backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S :
				  backoff * 2;
			continue;
		}
		if (backoff > BACKOFF_MIN_S)
			ag_log(AG_LOG_INFO, "the server answers again");
		backoff = BACKOFF_MIN_S;
		/* A server that answers at once with nothing, though asked to
		 * wait, must not make us spin. */
		if (w->cursor == cursor && ag_mono_s() - asked < 1.0)
			nap(w, ag_jittered(2.0));
	}
	return NULL;
}

static void watch_free(ag_watch *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->n; i++) {
		OPENSSL_free(w->secrets[i].name);
		cf_secret_free(w->secrets[i].value);
		cf_secret_free(w->secrets[i].pending);
	}
	OPENSSL_free(w->secrets);
	if (w->notify_fd >= 0)
		close(w->notify_fd);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	pthread_mutex_destroy(&w->lock);
	OPENSSL_free(w);
}

cf_status ag_watch_start(ag_runtime *rt, long wait_s, int64_t cursor,
			 size_t n, const char *const *names,
			 const uint64_t *versions, const cf_secret *const *values,
			 ag_watch **out, cf_error *err)
{
	ag_watch *w;
	int e;

	*out = NULL;
	if (rt->client == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "no server to watch");
	w = OPENSSL_zalloc(sizeof(*w));
	if (w == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	w->notify_fd = w->stop_fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	w->rt = rt;
	w->wait_s = wait_s;
	w->cursor = cursor < 0 ? 0 : cursor;
	w->secrets = OPENSSL_zalloc((n ? n : 1) * sizeof(*w->secrets));
	if (w->secrets == NULL)
		goto nomem;
	w->n = n;
	for (size_t i = 0; i < n; i++) {
		w->secrets[i].name = OPENSSL_strdup(names[i]);
		w->secrets[i].version = versions[i];
		w->secrets[i].value = cf_secret_from(cf_secret_cdata(values[i]),
						     cf_secret_len(values[i]));
		if (w->secrets[i].name == NULL || w->secrets[i].value == NULL)
			goto nomem;
	}
	w->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->notify_fd < 0 || w->stop_fd < 0) {
		cf_error_set(err, CF_ERR_IO, "eventfd: %s", strerror(errno));
		watch_free(w);
		return CF_ERR_IO;
	}
	ag_runtime_set_abort(rt, &w->stop);
	/* A long poll then ends at once when ag_watch_stop writes stop_fd. */
	cli_client_set_abort_fd(rt->client, w->stop_fd);
	e = pthread_create(&w->thread, NULL, watch_main, w);
	if (e != 0) {
		ag_runtime_set_abort(rt, NULL);
		cli_client_set_abort_fd(rt->client, -1);
		cf_error_set(err, CF_ERR_IO, "cannot start the watching thread: %s",
			     strerror(e));
		watch_free(w);
		return CF_ERR_IO;
	}
	w->started = 1;
	*out = w;
	return CF_OK;
nomem:
	watch_free(w);
	return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
}

int ag_watch_fd(const ag_watch *w)
{
	return w->notify_fd;
}

size_t ag_watch_take(ag_watch *w, cf_secret **values, uint64_t *versions)
{
	uint64_t count;
	size_t changed = 0;

	while (read(w->notify_fd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < w->n; i++) {
		values[i] = w->secrets[i].pending;
		versions[i] = w->secrets[i].pending_version;
		w->secrets[i].pending = NULL;
		if (values[i] != NULL)
			changed++;
	}
	pthread_mutex_unlock(&w->lock);
	return changed;
}

void ag_watch_stop(ag_watch *w)
{
	uint64_t one = 1;

	if (w == NULL)
		return;
	if (w->started) {
		w->stop = 1;
		while (write(w->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
		pthread_join(w->thread, NULL);
		ag_runtime_set_abort(w->rt, NULL);
		cli_client_set_abort_fd(w->rt->client, -1);
	}
	watch_free(w);
}
