/*
 * exec.c - `coffer agent exec`: runs a command with secrets in its
 * environment (--env VAR=NAME) or in memfds (--file-env VAR=NAME: VAR
 * holds /proc/self/fd/N, an in-memory file, so the secret never touches a
 * disk), and stays its parent: a supervisor.  docs/AGENT.md "exec".
 *
 * Each secret is the server's copy of this agent's envelope when the
 * server can be reached (not with --offline) and it verifies at or above
 * the version the agent accepted; else the state dir's cached one, with
 * a warning.  exec only reads the state dir (`agent run` owns it), so the
 * two can run side by side.
 *
 * The command runs as our child, the leader of a process group of its
 * own.  The signals a service manager or a container runtime sends
 * (TERM, INT, HUP, QUIT, USR1, USR2) are received through a signalfd and
 * sent on to that group; its exit status becomes ours (128 + N when
 * signal N killed it).  A thread (supervise.c) watches the feed for the
 * secrets given; when one of them gets a verified new version with
 * another value, --on-change says what happens: restart (the stop signal
 * to the group, a grace period, SIGKILL, then the command again with the
 * new values), signal:SIG (the memfds rewritten, then SIG), or none.
 *
 * Plaintext: each secret's value in use (uses[].value), the environment
 * entries while a command is being started (freed right after the fork),
 * and the memfds; all but the memfds in secure memory.  In restart and
 * none modes the memfds are sealed against every change and closed here
 * once the command has them; in signal mode they stay open here, sealed
 * only against more seals, so that they can be rewritten in place (the
 * command can write them too: they are its own secrets).
 */
#include "agent.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "member.h"
#include "policy.h"
#include "runtime.h"
#include "supervise.h"

#define MAX_MAPPINGS 256
/* Inherited descriptors passed on to the command (more are closed). */
#define MAX_INHERITED 256
#define DEFAULT_WAIT_S 55
#define DEFAULT_GRACE_S 10
#define MAX_GRACE_S 3600

extern char **environ;

enum on_change { ON_RESTART, ON_SIGNAL, ON_NONE };

/* The signals sent on to the command. */
static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1,
				 SIGUSR2 };

struct mapping {
	const char *var;        /* points into argv */
	size_t var_len;
	const char *name;
	int as_file;
	size_t use;             /* index in uses */
	int fd;                 /* the memfd while held here, else -1 */
};

/* One distinct secret given to the command. */
struct use {
	const char *name;       /* points into argv */
	uint64_t version;
	cf_secret *value;       /* the value in use */
};

struct sup {
	struct mapping maps[MAX_MAPPINGS];
	size_t n_maps;
	struct use uses[MAX_MAPPINGS];
	size_t n_uses;
	enum on_change mode;
	int change_sig, stop_sig;
	long grace_s;
	int inherited[MAX_INHERITED];
	size_t n_inherited;
	ag_spawn sp;
	char path[4096];
};

static void exec_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer agent exec --state-dir D [--env VAR=NAME]... [--file-env VAR=NAME]...\n"
		"                         [--on-change restart|signal:SIG|none] [--stop-signal SIG]\n"
		"                         [--grace DURATION] [--wait SECONDS] [--config F]\n"
		"                         [--offline] [--log-level L] -- CMD [ARGS...]\n"
		"\n"
		"Runs CMD (searched in PATH) as a child with secrets handed to it, and\n"
		"stays in the foreground as its supervisor (a container entrypoint, a\n"
		"systemd service):\n"
		"  --env VAR=NAME       the value of secret NAME in environment variable\n"
		"                       VAR (the value may not contain a NUL byte)\n"
		"  --file-env VAR=NAME  the value in a memfd; VAR holds its path,\n"
		"                       /proc/self/fd/N, valid in CMD (and children it\n"
		"                       passes the descriptor to).  Never on a disk.\n"
		"  --on-change M        when a secret given to CMD gets a new version with\n"
		"                       another value: restart (default) stops CMD and\n"
		"                       starts it again with the new values; signal:SIG\n"
		"                       (e.g. signal:HUP) rewrites the --file-env memfds,\n"
		"                       then sends SIG to CMD; none does nothing (and\n"
		"                       does not watch)\n"
		"  --stop-signal SIG    how restart stops CMD (default TERM)\n"
		"  --grace DURATION     how long restart waits after it before SIGKILL\n"
		"                       (seconds, or 30s, 2m; default 10s; 0: at once)\n"
		"  --wait SECONDS       long-poll time, 1-60 (default: the config's\n"
		"                       [agent] wait, else 55)\n"
		"  --config F           the agent config, for its [server] and [agent]\n"
		"                       sections (default: what 'agent join' recorded)\n"
		"  --offline            do not ask the server; use the cached versions\n"
		"                       and do not watch\n"
		"  --log-level L        error, warn, info (default) or debug\n"
		"\n"
		"Each secret is this agent's envelope fetched from the server, or, when\n"
		"the server cannot be reached (or with --offline), the one cached in D\n"
		"(a warning says so).  Every secret is verified (signer, root, CRL,\n"
		"name, not below the version in use) first.  D is only read, so exec\n"
		"may run beside 'agent run'.  SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1\n"
		"and SIGUSR2 are sent on to CMD's process group.  Exit codes: CMD's\n"
		"own (128+N when signal N killed it); 9 for a secret this agent does\n"
		"not have; 3 when CMD cannot be started.\n");
}

static int var_valid(const char *var, size_t len)
{
	if (len == 0 || len > 128 || isdigit((unsigned char)var[0]))
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)var[i]) && var[i] != '_')
			return 0;
	return 1;
}

static int parse_mapping(const char *arg, int as_file, struct mapping *m)
{
	const char *eq = strchr(arg, '=');

	if (eq == NULL || !var_valid(arg, (size_t)(eq - arg)) ||
	    cf_name_check("secret name", eq + 1, NULL) != CF_OK)
		return -1;
	m->var = arg;
	m->var_len = (size_t)(eq - arg);
	m->name = eq + 1;
	m->as_file = as_file;
	m->fd = -1;
	return 0;
}

/* --grace: seconds ("10") or a duration ("30s", "2m"); 0 allowed. */
static int parse_grace(const char *text, long *out)
{
	long long s;
	char *end = NULL;

	if (text[0] == '\0')
		return -1;
	errno = 0;
	s = strtoll(text, &end, 10);
	if (*end != '\0' || errno != 0 || !isdigit((unsigned char)text[0]))
		if (cli_parse_duration(text, &s) != 0)
			return -1;
	if (s < 0 || s > MAX_GRACE_S)
		return -1;
	*out = (long)s;
	return 0;
}

static int parse_on_change(const char *text, struct sup *x)
{
	if (strcmp(text, "restart") == 0) {
		x->mode = ON_RESTART;
	} else if (strcmp(text, "none") == 0) {
		x->mode = ON_NONE;
	} else if (strncmp(text, "signal:", 7) == 0) {
		x->mode = ON_SIGNAL;
		x->change_sig = ag_signal_from_name(text + 7);
		if (x->change_sig == 0 || x->change_sig == SIGKILL ||
		    x->change_sig == SIGSTOP)
			return -1;
	} else {
		return -1;
	}
	return 0;
}

/*
 * The descriptors above 2 this process inherited open across exec: they
 * were meant for the command (a socket passed by systemd, a `3<file`),
 * and survived execvpe when exec replaced itself, so they still reach it.
 */
static void note_inherited(struct sup *x)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int self, fd, flags;

	if (d == NULL)
		return;
	self = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		char *end = NULL;
		long n;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		errno = 0;
		n = strtol(de->d_name, &end, 10);
		if (errno != 0 || *end != '\0' || n > INT_MAX)
			continue;
		fd = (int)n;
		if (fd <= 2 || fd == self)
			continue;
		flags = fcntl(fd, F_GETFD);
		if (flags < 0 || (flags & FD_CLOEXEC))
			continue;
		if (x->n_inherited == MAX_INHERITED) {
			ag_log(AG_LOG_WARN, "more than %d inherited descriptors; "
			       "the command gets the first %d", MAX_INHERITED,
			       MAX_INHERITED);
			break;
		}
		x->inherited[x->n_inherited++] = fd;
	}
	closedir(d);
}

/*
 * A memfd holding value, close-on-exec here (ag_spawn_start opens it for
 * the command).  sealed: against writing, growing, shrinking and further
 * seals; else only against further seals, so that it can be rewritten.
 */
static cf_status make_memfd(const struct mapping *m, const cf_secret *value,
			    int sealed, int *fd_out, cf_error *err)
{
	const unsigned char *p = cf_secret_cdata(value);
	size_t left = cf_secret_len(value);
	char label[64];
	int fd;

	snprintf(label, sizeof(label), "coffer:%.*s", (int)m->var_len, m->var);
	fd = memfd_create(label, MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "memfd_create for %.*s: %s",
				    (int)m->var_len, m->var, strerror(errno));
	while (left > 0) {
		ssize_t n = write(fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			return cf_error_set(err, CF_ERR_IO, "writing the memfd for "
					    "%.*s: %s", (int)m->var_len, m->var,
					    strerror(errno));
		}
		p += n;
		left -= (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, sealed ? F_SEAL_SHRINK | F_SEAL_GROW |
		  F_SEAL_WRITE | F_SEAL_SEAL : F_SEAL_SEAL) != 0 ||
	    lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return cf_error_set(err, CF_ERR_IO, "sealing the memfd for %.*s: "
				    "%s", (int)m->var_len, m->var,
				    strerror(errno));
	}
	*fd_out = fd;
	return CF_OK;
}

/* Signal mode: the memfd the command holds now holds value. */
static cf_status rewrite_memfd(const struct mapping *m, const cf_secret *value,
			       cf_error *err)
{
	const unsigned char *p = cf_secret_cdata(value);
	size_t len = cf_secret_len(value), done = 0;

	while (done < len) {
		ssize_t n = pwrite(m->fd, p + done, len - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return cf_error_set(err, CF_ERR_IO, "rewriting the memfd of "
					    "%.*s: %s", (int)m->var_len, m->var,
					    strerror(errno));
		done += (size_t)n;
	}
	if (ftruncate(m->fd, (off_t)len) != 0)
		return cf_error_set(err, CF_ERR_IO, "rewriting the memfd of %.*s: "
				    "%s", (int)m->var_len, m->var,
				    strerror(errno));
	return CF_OK;
}

/* "VAR=" + bytes into a new secret, NUL-terminated. */
static cf_secret *env_entry(const struct mapping *m, const void *bytes,
			    size_t len)
{
	cf_secret *s = cf_secret_new(m->var_len + 1 + len + 1);

	if (s == NULL)
		return NULL;
	if (cf_secret_append(s, m->var, m->var_len, NULL) != CF_OK ||
	    cf_secret_append(s, "=", 1, NULL) != CF_OK ||
	    cf_secret_append(s, bytes, len, NULL) != CF_OK) {
		cf_secret_free(s);
		return NULL;
	}
	cf_secret_data(s)[cf_secret_len(s)] = '\0';
	return s;
}

/* Whether environment entry e sets one of the mapped variables. */
static int overridden(const char *e, const struct mapping *maps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strncmp(e, maps[i].var, maps[i].var_len) == 0 &&
		    e[maps[i].var_len] == '=')
			return 1;
	return 0;
}

static int has_nul(const cf_secret *v)
{
	return memchr(cf_secret_cdata(v), '\0', cf_secret_len(v)) != NULL;
}

/*
 * The newest verified version of name: the server's copy of our envelope
 * (GET /v1/secrets/envelope) when it can be had and verifies at or above
 * the version the agent accepted, else the cached one.  *use_server is
 * cleared when the server cannot be reached, so it is asked once.
 */
static cf_status newest(ag_runtime *rt, const char *name, int *use_server,
			cf_record **out, cf_error *err)
{
	char path[64 + 3 * CF_NAME_MAX_BYTES];
	char *escaped = NULL;
	json_t *resp = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error why = { 0 };
	cf_status rc;

	*out = NULL;
	if (!*use_server)
		goto cached;
	escaped = cli_client_escape(name);
	if (escaped == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	snprintf(path, sizeof(path), "/v1/secrets/envelope?name=%s", escaped);
	free(escaped);
	rc = cli_client_call(rt->client, "GET", path, NULL, &resp, &why);
	if (rc == CF_OK)
		rc = cli_b64_decode(json_string_value(json_object_get(resp,
				    "envelope")), "an envelope", &der, &len, &why);
	if (rc == CF_OK)
		rc = cf_envelope_open(der, len, rt->cert, rt->key, rt->trust,
				      name, ag_state_version(rt->st, name), out,
				      NULL, &why);
	/* The cluster's envelope (the server answers with it when the
	 * agent has none of its own and proves it is a member). */
	if (rc == CF_ERR_NOT_RECIPIENT && rt->member != NULL) {
		cf_error_clear(&why);
		rc = cf_envelope_open(der, len, rt->member->cert,
				      rt->member->key, rt->trust, name,
				      ag_state_version(rt->st, name), out, NULL,
				      &why);
	}
	OPENSSL_free(der);
	json_decref(resp);
	if (rc == CF_OK)
		return CF_OK;
	if (rc == CF_ERR_NETWORK) {
		*use_server = 0;
		ag_log(AG_LOG_WARN, "%s; using the versions cached in %s", why.msg,
		       ag_state_dir(rt->st));
	} else if (rc == CF_ERR_NOT_FOUND &&
		   ag_state_version(rt->st, name) == 0) {
		/* Neither the server nor the cache has it: say it once. */
		return cf_error_set(err, rc, "%s", why.msg);
	} else if (rc == CF_ERR_NOT_FOUND || rc == CF_ERR_DENIED) {
		ag_log(AG_LOG_WARN, "%s; using the cached version", why.msg);
	} else {
		ag_log(AG_LOG_ERROR, "refused %s from the server: %s; using the "
		       "cached version", name, why.msg);
	}
cached:
	return ag_open_cached(rt, name, out, err);
}

/* Every distinct secret's newest verified value, into x->uses. */
static cf_status load_values(struct sup *x, ag_runtime *rt, int use_server,
			     cf_error *err)
{
	cf_status rc = CF_OK;

	for (size_t i = 0; i < x->n_maps && rc == CF_OK; i++) {
		struct mapping *m = &x->maps[i];
		cf_record *rec = NULL;
		size_t u;

		for (u = 0; u < x->n_uses; u++)
			if (strcmp(x->uses[u].name, m->name) == 0)
				break;
		if (u == x->n_uses) {
			rc = newest(rt, m->name, &use_server, &rec, err);
			if (rc != CF_OK)
				break;
			x->uses[u].name = m->name;
			x->uses[u].version = rec->version;
			x->uses[u].value = rec->value;
			rec->value = NULL;
			cf_record_free(rec);
			x->n_uses++;
		}
		m->use = u;
		if (!m->as_file && has_nul(x->uses[u].value))
			rc = cf_error_set(err, CF_ERR_USAGE, "%s holds a NUL byte "
				"and cannot be an environment variable; use "
				"--file-env %.*s=%s", m->name, (int)m->var_len,
				m->var, m->name);
	}
	return rc;
}

/* Closes the memfds held here. */
static void close_memfds(struct sup *x)
{
	for (size_t i = 0; i < x->n_maps; i++)
		if (x->maps[i].fd >= 0) {
			close(x->maps[i].fd);
			x->maps[i].fd = -1;
		}
}

/*
 * Starts the command with the values in use: the memfds made (unless
 * signal mode holds them already), the environment built in secure
 * memory, fork + exec, and then all of it dropped here except signal
 * mode's memfds.
 */
static cf_status start_command(struct sup *x, pid_t *pid, cf_error *err)
{
	cf_secret *entries[MAX_MAPPINGS] = { 0 };
	int keep[MAX_INHERITED + MAX_MAPPINGS];
	size_t n_keep = 0, n_environ = 0, k = 0;
	char **envp = NULL;
	char path[64];
	cf_status rc = CF_OK;

	for (size_t i = 0; i < x->n_inherited; i++)
		keep[n_keep++] = x->inherited[i];
	for (size_t i = 0; i < x->n_maps && rc == CF_OK; i++) {
		struct mapping *m = &x->maps[i];
		const cf_secret *v = x->uses[m->use].value;

		if (m->as_file) {
			if (m->fd < 0)
				rc = make_memfd(m, v, x->mode != ON_SIGNAL, &m->fd,
						err);
			if (rc != CF_OK)
				break;
			keep[n_keep++] = m->fd;
			snprintf(path, sizeof(path), "/proc/self/fd/%d", m->fd);
			entries[i] = env_entry(m, path, strlen(path));
		} else {
			entries[i] = env_entry(m, cf_secret_cdata(v),
					       cf_secret_len(v));
		}
		if (entries[i] == NULL)
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	}
	if (rc != CF_OK)
		goto out;
	while (environ[n_environ] != NULL)
		n_environ++;
	envp = OPENSSL_zalloc((n_environ + x->n_maps + 1) * sizeof(*envp));
	if (envp == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_environ; i++)
		if (!overridden(environ[i], x->maps, x->n_maps))
			envp[k++] = environ[i];
	for (size_t i = 0; i < x->n_maps; i++)
		envp[k++] = (char *)cf_secret_data(entries[i]);
	envp[k] = NULL;
	x->sp.envp = envp;
	x->sp.keep = keep;
	x->sp.n_keep = n_keep;
	rc = ag_spawn_start(&x->sp, pid, err);
	x->sp.envp = NULL;
	x->sp.keep = NULL;
out:
	for (size_t i = 0; i < x->n_maps; i++)
		cf_secret_free(entries[i]);
	OPENSSL_free(envp);
	if (x->mode != ON_SIGNAL || rc != CF_OK)
		close_memfds(x);
	return rc;
}

/*
 * Takes the watcher's changes into the values in use.  A value equal to
 * the one in use is no change; one an --env variable cannot hold (a NUL
 * byte) is refused.  changed[u]: whether uses[u] changed; *files:
 * whether a memfd's secret did.  Returns how many secrets changed.
 */
static size_t adopt(struct sup *x, ag_watch *w, int *changed, int *files)
{
	cf_secret *news[MAX_MAPPINGS];
	uint64_t versions[MAX_MAPPINGS];
	size_t n = 0;

	*files = 0;
	memset(changed, 0, x->n_uses * sizeof(*changed));
	if (ag_watch_take(w, news, versions) == 0)
		return 0;
	for (size_t u = 0; u < x->n_uses; u++) {
		struct use *use = &x->uses[u];
		int refused = 0;

		if (news[u] == NULL)
			continue;
		if (cf_secret_equal(news[u], use->value)) {
			use->version = versions[u];
			cf_secret_free(news[u]);
			continue;
		}
		for (size_t i = 0; i < x->n_maps && !refused; i++)
			if (x->maps[i].use == u && !x->maps[i].as_file &&
			    has_nul(news[u])) {
				ag_log(AG_LOG_ERROR, "%s v%llu holds a NUL byte and "
				       "cannot be environment variable %.*s; the "
				       "command keeps v%llu", use->name,
				       (unsigned long long)versions[u],
				       (int)x->maps[i].var_len, x->maps[i].var,
				       (unsigned long long)use->version);
				refused = 1;
			}
		if (refused) {
			cf_secret_free(news[u]);
			continue;
		}
		cf_secret_free(use->value);
		use->value = news[u];
		use->version = versions[u];
		changed[u] = 1;
		n++;
	}
	for (size_t i = 0; i < x->n_maps; i++)
		if (changed[x->maps[i].use] && x->maps[i].as_file)
			*files = 1;
	return n;
}

/* Signal mode: every memfd of a changed secret rewritten; 0 when all are. */
static int rewrite_changed(struct sup *x, const int *changed)
{
	int failed = 0;

	for (size_t i = 0; i < x->n_maps; i++) {
		struct mapping *m = &x->maps[i];
		const struct use *use = &x->uses[m->use];
		cf_error err = { 0 };

		if (!changed[m->use])
			continue;
		if (m->as_file && m->fd >= 0) {
			if (rewrite_memfd(m, use->value, &err) != CF_OK) {
				ag_log(AG_LOG_ERROR, "%s", err.msg);
				failed = 1;
			}
		} else if (!m->as_file) {
			ag_log(AG_LOG_WARN, "%s v%llu: environment variable %.*s "
			       "cannot change while the command runs; it keeps "
			       "the value it started with", use->name,
			       (unsigned long long)use->version,
			       (int)m->var_len, m->var);
		}
	}
	return failed;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int exit_code(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 1;
}

/*
 * The supervisor's loop, until the command exits on its own or after a
 * stop request: signals sent on, children reaped, changes acted upon.
 * Returns exec's exit code.
 */
static int supervise(struct sup *x, int sfd, ag_watch *w, pid_t child)
{
	char signame[32], stopname[32];
	int64_t kill_at = -1;
	int restarting = 0, stopping = 0, wstatus = 0;

	ag_signal_name(x->stop_sig, stopname, sizeof(stopname));
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = w ? ag_watch_fd(w) : -1, .events = POLLIN },
		};
		struct signalfd_siginfo si;
		int timeout = -1;
		pid_t got;

		if (kill_at >= 0) {
			int64_t left = kill_at - now_ms();

			timeout = left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
		}
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR) {
			ag_log(AG_LOG_ERROR, "poll: %s; stopping the command",
			       strerror(errno));
			kill(-child, SIGKILL);
			stopping = 1;
		}
		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			int sig = (int)si.ssi_signo;

			if (sig == SIGCHLD || child < 0)
				continue;
			ag_log(AG_LOG_DEBUG, "%s: sent on to the command",
			       ag_signal_name(sig, signame, sizeof(signame)));
			kill(-child, sig);
			/* SIGQUIT is often a request for a dump (a JVM's
			 * thread dump), not to stop: changes still count. */
			if (sig == SIGTERM || sig == SIGINT)
				stopping = 1;
		}
		/* Every child: as PID 1 of a container, orphans are ours. */
		while ((got = waitpid(-1, &wstatus, WNOHANG)) > 0) {
			if (got != child)
				continue;
			child = -1;
			if (!restarting || stopping)
				return exit_code(wstatus);
			restarting = 0;
			kill_at = -1;
			{
				cf_error err = { 0 };

				if (start_command(x, &child, &err) != CF_OK) {
					ag_log(AG_LOG_ERROR, "%s; exec gives up",
					       err.msg);
					return cli_exit_code(err.code);
				}
			}
			ag_log(AG_LOG_INFO, "started the command again with the "
			       "new value(s) (pid %d)", (int)child);
		}
		if (kill_at >= 0 && now_ms() >= kill_at && child > 0) {
			ag_log(AG_LOG_WARN, "the command did not stop within %ld s "
			       "of %s: SIGKILL", x->grace_s, stopname);
			kill(-child, SIGKILL);
			kill_at = -1;
		}
		if (w != NULL && (pfd[1].revents & POLLIN) && child > 0) {
			int changed[MAX_MAPPINGS], files;

			if (adopt(x, w, changed, &files) == 0)
				continue;
			if (x->mode == ON_RESTART && restarting) {
				ag_log(AG_LOG_INFO, "another change while the "
				       "command stops: it starts with the newest");
			} else if (x->mode == ON_RESTART && !stopping) {
				ag_log(AG_LOG_INFO, "a secret given to the command "
				       "changed: stopping it (%s, SIGKILL after "
				       "%ld s) to start it again", stopname,
				       x->grace_s);
				restarting = 1;
				kill(-child, x->stop_sig);
				kill_at = now_ms() + (int64_t)x->grace_s * 1000;
			} else if (x->mode == ON_RESTART) {
				ag_log(AG_LOG_WARN, "a secret given to the command "
				       "changed, but the command was told to stop "
				       "(SIGTERM/SIGINT sent on): not restarted");
			} else if (x->mode == ON_SIGNAL) {
				ag_signal_name(x->change_sig, signame,
					       sizeof(signame));
				if (rewrite_changed(x, changed) != 0)
					ag_log(AG_LOG_ERROR, "the command was not "
					       "sent %s", signame);
				else if (files) {
					ag_log(AG_LOG_INFO, "a secret given to the "
					       "command changed: its memfd is "
					       "rewritten; sending %s", signame);
					kill(-child, x->change_sig);
				}
			}
		}
	}
}

int ag_cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "env", required_argument, NULL, 'e' },
		{ "file-env", required_argument, NULL, 'f' },
		{ "config", required_argument, NULL, 'c' },
		{ "offline", no_argument, NULL, 'o' },
		{ "on-change", required_argument, NULL, 'm' },
		{ "stop-signal", required_argument, NULL, 's' },
		{ "grace", required_argument, NULL, 'g' },
		{ "wait", required_argument, NULL, 'w' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct sup *x = NULL;
	const char *dir = NULL, *config = NULL;
	ag_config *cfg = NULL;
	ag_runtime *rt = NULL;
	ag_watch *w = NULL;
	sigset_t block, ttou;
	struct sigaction sa, old_pipe, old_chld;
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	long wait_s = 0;
	pid_t child = -1;
	int ch, offline = 0, use_server, code, level = AG_LOG_INFO, sfd = -1;
	int signals_set = 0;

	x = OPENSSL_zalloc(sizeof(*x));
	if (x == NULL) {
		cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		return cli_fail(&err);
	}
	x->mode = ON_RESTART;
	x->stop_sig = SIGTERM;
	x->grace_s = DEFAULT_GRACE_S;
	/* First, before this process opens anything of its own. */
	note_inherited(x);
	optind = 1;
	/* "+": options stop at the first non-option (CMD's own flags). */
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'c': config = optarg; break;
		case 'o': offline = 1; break;
		case 'e':
		case 'f':
			if (x->n_maps == MAX_MAPPINGS) {
				code = cli_usage("agent exec", "at most %d --env and "
						 "--file-env", MAX_MAPPINGS);
				goto out;
			}
			if (parse_mapping(optarg, ch == 'f',
					  &x->maps[x->n_maps]) != 0) {
				code = cli_usage("agent exec", "--%s takes VAR=NAME "
					"(VAR letters, digits and _; NAME a secret "
					"name), not \"%s\"", ch == 'f' ? "file-env" :
					"env", optarg);
				goto out;
			}
			x->n_maps++;
			break;
		case 'm':
			if (parse_on_change(optarg, x) != 0) {
				code = cli_usage("agent exec", "--on-change is "
					"restart, signal:SIG (a signal name such as "
					"HUP, not KILL or STOP) or none, not \"%s\"",
					optarg);
				goto out;
			}
			break;
		case 's':
			x->stop_sig = ag_signal_from_name(optarg);
			if (x->stop_sig == 0) {
				code = cli_usage("agent exec", "--stop-signal takes "
					"a signal name such as TERM or INT, not "
					"\"%s\"", optarg);
				goto out;
			}
			break;
		case 'g':
			if (parse_grace(optarg, &x->grace_s) != 0) {
				code = cli_usage("agent exec", "--grace takes seconds "
					"or a duration such as 30s or 2m (at most "
					"1h), not \"%s\"", optarg);
				goto out;
			}
			break;
		case 'w': {
			char *end = NULL;

			errno = 0;
			wait_s = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || !isdigit(
			    (unsigned char)optarg[0]) || wait_s < 1 || wait_s > 60) {
				code = cli_usage("agent exec", "--wait takes seconds, "
						 "1 to 60, not \"%s\"", optarg);
				goto out;
			}
			break;
		}
		case 'l':
			level = ag_log_level_from_name(optarg);
			if (level < 0) {
				code = cli_usage("agent exec", "--log-level is error, "
						 "warn, info or debug, not \"%s\"",
						 optarg);
				goto out;
			}
			break;
		case 'h': exec_usage(stdout); code = 0; goto out;
		default: code = cli_bad_option("agent exec"); goto out;
		}
	}
	if (dir == NULL) {
		code = cli_usage("agent exec", "--state-dir is required");
		goto out;
	}
	if (optind >= argc) {
		code = cli_usage("agent exec", "no command: give it after --");
		goto out;
	}
	ag_log_set_level(level);
	ag_harden();
	if (config != NULL)
		rc = ag_config_load(config, &cfg, &err);
	if (rc == CF_OK)
		rc = ag_runtime_new(dir, cfg ? cfg->server_url : NULL,
				    cfg ? cfg->server_ca : NULL,
				    cfg ? cfg->root : NULL, offline, &rt, &err);
	if (rc != CF_OK)
		goto fail;
	rt->read_only = 1;
	if (wait_s == 0)
		wait_s = cfg != NULL ? cfg->wait_s : DEFAULT_WAIT_S;
	use_server = !offline;
	if (use_server) {
		cf_error why = { 0 };

		if (ag_refresh_crl(rt, &why) != CF_OK) {
			ag_log(AG_LOG_WARN, "%s; using the versions cached in %s",
			       why.msg, dir);
			use_server = 0;
		}
	}
	rc = load_values(x, rt, use_server, &err);
	if (rc == CF_OK)
		rc = ag_spawn_resolve(argv[optind], x->path, sizeof(x->path),
				      &err);
	if (rc != CF_OK)
		goto fail;

	/*
	 * Signals: the forwarded ones and SIGCHLD come through a signalfd,
	 * blocked in every thread (the watcher and curl's inherit the mask).
	 * The command gets the mask we started with.  SIGCHLD must not be
	 * ignored, or the command's status would be lost.
	 */
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaddset(&block, forwarded[i]);
	sigaddset(&block, SIGCHLD);
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, &old_pipe);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, &old_chld);
	pthread_sigmask(SIG_BLOCK, &block, &x->sp.mask);
	signals_set = 1;
	sfd = signalfd(-1, &block, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		rc = cf_error_set(&err, CF_ERR_IO, "signalfd: %s", strerror(errno));
		goto fail;
	}
	x->sp.path = x->path;
	x->sp.argv = argv + optind;
	x->sp.pipe_ignored = old_pipe.sa_handler == SIG_IGN;
	x->sp.take_tty = isatty(STDIN_FILENO) &&
			 tcgetpgrp(STDIN_FILENO) == getpgrp();
	fflush(NULL);
	rc = start_command(x, &child, &err);
	if (rc != CF_OK)
		goto fail;
	ag_log(AG_LOG_DEBUG, "started %s (pid %d)", x->path, (int)child);

	if (x->mode != ON_NONE && x->n_uses > 0 && rt->client != NULL) {
		const char *names[MAX_MAPPINGS];
		uint64_t versions[MAX_MAPPINGS];
		const cf_secret *values[MAX_MAPPINGS];

		for (size_t u = 0; u < x->n_uses; u++) {
			names[u] = x->uses[u].name;
			versions[u] = x->uses[u].version;
			values[u] = x->uses[u].value;
		}
		/* From the state dir's cursor: whatever changed since that
		 * position is checked against the values just given. */
		rc = ag_watch_start(rt, wait_s, ag_state_cursor(rt->st),
				    x->n_uses, names, versions, values, &w, &err);
		if (rc != CF_OK) {
			ag_log(AG_LOG_ERROR, "%s; the command runs, but changes "
			       "of its secrets are not followed", err.msg);
			rc = CF_OK;
		}
	}
	code = supervise(x, sfd, w, child);
	goto out;
fail:
	code = cli_fail(&err);
out:
	ag_watch_stop(w);
	if (x->sp.take_tty) {
		/* The terminal back to our group, as the shell left it. */
		sigemptyset(&ttou);
		sigaddset(&ttou, SIGTTOU);
		pthread_sigmask(SIG_BLOCK, &ttou, NULL);
		(void)tcsetpgrp(STDIN_FILENO, getpgrp());
	}
	if (sfd >= 0)
		close(sfd);
	/* The signals stay blocked: one not read yet must not end this
	 * process before it returns the command's status. */
	if (signals_set) {
		sigaction(SIGPIPE, &old_pipe, NULL);
		sigaction(SIGCHLD, &old_chld, NULL);
	}
	close_memfds(x);
	for (size_t u = 0; u < x->n_uses; u++)
		cf_secret_free(x->uses[u].value);
	OPENSSL_free(x);
	ag_runtime_free(rt);
	ag_config_free(cfg);
	return code;
}
