/*
 * quickstart.c - `coffer quickstart --dir D`: the whole system, for real,
 * on this machine (issue 5, section 7; README's first command).
 *
 * In D it makes a root CA, an operator and an enroller, a server
 * (SQLite) on 127.0.0.1 with an ephemeral port, two agents that join with
 * one-time tokens and are approved, a configuration per agent with a
 * [file] and a [template] sink and a reload command each; it runs both
 * agents, puts a random demo secret to their group, waits until both
 * wrote the file and rendered the template, rotates it, measures how
 * long the rotation took to arrive, stops everything and reports what is
 * where.
 *
 * Every step is this same binary run as a child process with an argv we
 * build (fork + execve of /proc/self/exe, never a shell), printed first
 * as the command it is, so the output teaches the real CLI; each child
 * runs in D, so the printed commands work there as they are.
 *
 * Invariants:
 *   - no secret in any argv or environment: the demo values and the join
 *     tokens reach the children only through pipes to their stdin; the CA
 *     passphrase only through D/ca.pass (0600);
 *   - the demo values live in cf_secrets; they are printed only in the
 *     --json report (for tests), never in D or in a log;
 *   - nothing is left running: every child is recorded by PID before
 *     anything else happens, and every way out (success, error, timeout,
 *     SIGINT/SIGTERM/SIGHUP) stops the running ones by PID (SIGTERM, then
 *     SIGKILL after a grace period) and reaps them; the children also get
 *     PR_SET_PDEATHSIG, so even a SIGKILL of quickstart stops them;
 *   - every wait is bounded (--timeout, default 30 s per step), and an
 *     error names the log in D where the child's stderr went.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define AGENTS 2
#define GROUP "demo"
#define SECRET_NAME "demo/db/password"
#define VALUE_RANDOM_BYTES 16
#define TIMEOUT_DEFAULT_S 30L
#define TIMEOUT_MAX_S 3600UL
#define STOP_GRACE_MS 10000.0
#define POLL_NS 5000000L            /* 5 ms between looks at a file */
#define PROCS_MAX 64
#define ARGS_MAX 32
#define DIR_MAX 3000                /* D's absolute path, so every path fits */
#define READ_MAX 65536u             /* a sink file or log tail we read */

/* The template the agents render: one plain use, one | json use. */
#define TMPL_HEAD \
	"# app.conf of the quickstart's demo application, rendered by\n" \
	"# 'coffer agent run' from app.conf.tmpl; each new version of\n" \
	"# " SECRET_NAME " rewrites it and runs its reload command.\n"
#define TMPL_TEXT TMPL_HEAD \
	"password = {{ secret \"" SECRET_NAME "\" }}\n" \
	"json = {\"password\": {{ secret \"" SECRET_NAME "\" | json }}}\n"

static const char *const operator_perms[] = {
	"secret.write:demo/**", "secret.read:demo/**", "audit.read:**", NULL
};
static const char *const enroller_perms[] = {
	"agent.enroll:" GROUP, "token.create:" GROUP, NULL
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

/* One child process, recorded before anything else happens to it. */
struct proc {
	pid_t pid;
	char what[32];          /* "server", "agent1", "ca init", ... */
	int background;
	int running;
	int status;             /* waitpid's, once reaped */
};

struct agent_result {
	char name[16];          /* agent1: also its state dir, in D */
	int proc;               /* index in procs, -1 before it runs */
	double first_ms;        /* first put returned -> file + template */
	double rotation_ms;     /* second put returned -> file + template */
	int reloads_file;
	int reloads_template;
	char file_mode[8];
	char template_mode[8];
	int file_ok;            /* holds the rotated value, read after the stop */
	int template_ok;        /* rendered with it */
};

struct quick {
	char self[PATH_MAX];    /* this program, run for every step */
	char dir[PATH_MAX];     /* D, absolute, no symlinks */
	unsigned long timeout_s;
	int json;
	FILE *say;              /* progress: stdout, or stderr with --json */
	int tty;
	int devnull;
	int steps_log;          /* D/logs/steps.log: stderr of every step */
	int child_out;          /* where the steps' stdout goes */
	char **env;             /* the children's environment */
	size_t n_env;
	char url[64];
	struct proc procs[PROCS_MAX];
	size_t n_procs;
	int server;             /* index in procs, -1 before it runs */
	struct agent_result agents[AGENTS];
	cf_secret *values[2];   /* the demo values: first, rotated */
	double put_ms[2];
	int child_exit;         /* exit code of a failed step, returned as ours */
	int audit_ok;
};

/* ---- small helpers ------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void pause_briefly(void)
{
	struct timespec ts = { 0, POLL_NS };

	(void)nanosleep(&ts, NULL);
}

static void say(struct quick *q, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(struct quick *q, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(q->say, fmt, ap);
	va_end(ap);
	fflush(q->say);
}

static void section(struct quick *q, const char *title)
{
	if (q->tty)
		say(q, "\n\033[1m== %s\033[0m\n", title);
	else
		say(q, "\n== %s\n", title);
}

/* "D/rel" into buf (D is short enough for every rel we use). */
static const char *in_dir(const struct quick *q, const char *rel, char *buf,
			  size_t size)
{
	if (!cli_path_in(buf, size, q->dir, rel))
		buf[0] = '\0';
	return buf;
}

/* Whether a word needs quoting for a POSIX shell. */
static int plain_word(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			   "0123456789_./:=@%+,-", *s) == NULL)
			return 0;
	return 1;
}

/* Appends len bytes of s to buf (used bytes so far), cutting to fit. */
static void append(char *buf, size_t size, size_t *used, const char *s,
		   size_t len)
{
	if (*used + 1 >= size)
		return;
	if (len > size - 1 - *used)
		len = size - 1 - *used;
	memcpy(buf + *used, s, len);
	*used += len;
	buf[*used] = '\0';
}

/* argv as a shell command line ("coffer" for argv[0]), cut to fit. */
static void format_cmd(char *const argv[], char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; argv[i] != NULL; i++) {
		const char *w = i == 0 ? "coffer" : argv[i];

		if (i > 0)
			append(buf, size, &used, " ", 1);
		if (plain_word(w)) {
			append(buf, size, &used, w, strlen(w));
			continue;
		}
		/* '...' with each ' written as '\'' */
		append(buf, size, &used, "'", 1);
		for (const char *c = w; *c != '\0'; c++)
			if (*c == '\'')
				append(buf, size, &used, "'\\''", 4);
			else
				append(buf, size, &used, c, 1);
		append(buf, size, &used, "'", 1);
	}
}

/* The last non-empty line of fd from offset on, control characters made
 * spaces, for an error message; "" if there is none. */
static void log_tail(int fd, off_t from, char *buf, size_t size)
{
	char chunk[4096];
	off_t end = lseek(fd, 0, SEEK_END);
	ssize_t n;
	char *line;

	buf[0] = '\0';
	if (end < 0 || end <= from)
		return;
	if (end - from > (off_t)sizeof(chunk) - 1)
		from = end - (off_t)sizeof(chunk) + 1;
	n = pread(fd, chunk, sizeof(chunk) - 1, from);
	if (n <= 0)
		return;
	chunk[n] = '\0';
	while (n > 0 && (chunk[n - 1] == '\n' || chunk[n - 1] == '\r' ||
			 chunk[n - 1] == ' '))
		chunk[--n] = '\0';
	line = strrchr(chunk, '\n');
	line = line != NULL ? line + 1 : chunk;
	/* the child's own "coffer: " is in our message already */
	if (strncmp(line, "coffer: ", 8) == 0)
		line += 8;
	cli_printable(line, buf, size);
}

/* The same for a log file by path. */
static void file_tail(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	buf[0] = '\0';
	if (fd >= 0) {
		log_tail(fd, 0, buf, size);
		close(fd);
	}
}

static cf_status interrupted(cf_error *err)
{
	return cf_error_set(err, CF_ERR_IO, "interrupted by signal %d; every "
			    "process quickstart started has been stopped",
			    (int)got_signal);
}

/* ---- the children's environment ------------------------------------ */

/*
 * Ours minus every COFFER_* (a caller's COFFER_CERT or COFFER_PASSPHRASE
 * must not leak into the demo), plus the settings of `extra` (NULL-ended
 * "NAME=value" strings, none of them secret).
 */
static cf_status set_env(struct quick *q, const char *const extra[],
			 cf_error *err)
{
	extern char **environ;
	size_t n = 0, k = 0;

	for (size_t i = 0; q->env != NULL && q->env[i] != NULL; i++)
		free(q->env[i]);
	free(q->env);
	q->env = NULL;
	for (char **e = environ; *e != NULL; e++)
		n++;
	for (size_t i = 0; extra[i] != NULL; i++)
		n++;
	q->env = calloc(n + 1, sizeof(*q->env));
	if (q->env == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	for (char **e = environ; *e != NULL; e++)
		if (strncmp(*e, "COFFER_", 7) != 0 &&
		    (q->env[k] = strdup(*e)) != NULL)
			k++;
	for (size_t i = 0; extra[i] != NULL; i++)
		if ((q->env[k] = strdup(extra[i])) != NULL)
			k++;
	q->n_env = k;
	return CF_OK;
}

/* ---- children ------------------------------------------------------ */

/* In the child, between fork and exec: async-signal-safe calls only. */
static void child_exec(const struct quick *q, char *const argv[], int in,
		       int out, int errfd, pid_t parent)
{
	static const char msg[] = "coffer quickstart: cannot run this program "
				  "again (/proc/self/exe)\n";
	struct sigaction dfl;
	const int fds[3] = { in, out, errfd };

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	(void)sigaction(SIGINT, &dfl, NULL);
	(void)sigaction(SIGTERM, &dfl, NULL);
	(void)sigaction(SIGHUP, &dfl, NULL);
	(void)sigaction(SIGPIPE, &dfl, NULL);
	/* Its own process group: a ^C reaches quickstart, which stops the
	 * children in order; the death signal covers quickstart's end. */
	(void)setpgid(0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
		_exit(127);
	for (int i = 0; i < 3; i++) {
		if (fds[i] == i)
			(void)fcntl(i, F_SETFD, 0);
		else if (dup2(fds[i], i) < 0)
			_exit(127);
	}
	if (chdir(q->dir) != 0)
		_exit(127);
	execve(q->self, argv, q->env);
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(127);
}

static cf_status spawn(struct quick *q, const char *what, char *const argv[],
		       int in, int out, int errfd, int background,
		       size_t *slot, cf_error *err)
{
	struct proc *p;
	pid_t parent = getpid(), pid;

	if (q->n_procs == PROCS_MAX)
		return cf_error_set(err, CF_ERR_LIMIT, "more than %d child "
				    "processes", PROCS_MAX);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return cf_error_set(err, CF_ERR_IO, "cannot start `coffer %s`: "
				    "fork: %s", what, strerror(errno));
	if (pid == 0)
		child_exec(q, argv, in, out, errfd, parent);
	p = &q->procs[q->n_procs];
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	snprintf(p->what, sizeof(p->what), "%s", what);
	p->background = background;
	p->running = 1;
	*slot = q->n_procs++;
	return CF_OK;
}

/* Reaps procs[slot] if it has ended; returns whether it still runs. */
static int still_running(struct quick *q, size_t slot)
{
	struct proc *p = &q->procs[slot];
	int st;
	pid_t r;

	if (!p->running)
		return 0;
	r = waitpid(p->pid, &st, WNOHANG);
	if (r == p->pid || (r < 0 && errno == ECHILD)) {
		p->running = 0;
		p->status = r == p->pid ? st : 0;
	}
	return p->running;
}

/* The exit code of a reaped child; 128 + N for a signal N. */
static int exit_code(const struct proc *p)
{
	if (WIFEXITED(p->status))
		return WEXITSTATUS(p->status);
	if (WIFSIGNALED(p->status))
		return 128 + WTERMSIG(p->status);
	return 255;
}

/* SIGTERM, then SIGKILL after grace_ms; reaps.  Returns whether it had to
 * be killed. */
static int stop_proc(struct quick *q, size_t slot, double grace_ms)
{
	struct proc *p = &q->procs[slot];
	double deadline;

	if (!still_running(q, slot))
		return 0;
	(void)kill(p->pid, SIGTERM);
	deadline = now_ms() + grace_ms;
	while (still_running(q, slot) && now_ms() < deadline)
		pause_briefly();
	if (!still_running(q, slot))
		return 0;
	(void)kill(p->pid, SIGKILL);
	while (still_running(q, slot))
		pause_briefly();
	return 1;
}

/* Every way out: what still runs is stopped, newest first (agents before
 * the server), each by its PID. */
static void stop_all(struct quick *q)
{
	for (size_t i = q->n_procs; i-- > 0;)
		if (q->procs[i].running)
			(void)stop_proc(q, i, 5000.0);
}

/* Waits for a step; CF_ERR_TIMEOUT after timeout_ms (it is left running
 * for stop_all). */
static cf_status wait_step(struct quick *q, size_t slot, const char *cmd,
			   cf_error *err)
{
	double deadline = now_ms() + (double)q->timeout_s * 1000.0;

	while (still_running(q, slot)) {
		if (got_signal)
			return interrupted(err);
		if (now_ms() > deadline)
			return cf_error_set(err, CF_ERR_TIMEOUT, "`%s` did not "
					    "finish in %lu s (--timeout); its "
					    "stderr is in %s/logs/steps.log", cmd,
					    q->timeout_s, q->dir);
		pause_briefly();
	}
	return CF_OK;
}

struct step_io {
	const unsigned char *input;   /* to its stdin through a pipe, or NULL */
	size_t input_len;
	int out;                      /* its stdout; -1: q->child_out */
	const char *shown_before;     /* printed before the command ("... | ") */
	const char *shown_after;      /* printed after it (" > tokens.txt") */
};

/*
 * Runs one step to its end: prints it, appends "$ command" and its
 * stderr to logs/steps.log, feeds input to its stdin.  A failure quotes
 * the last line it wrote to stderr and keeps its exit code for ours.
 */
static cf_status run_step(struct quick *q, char *const argv[],
			  const struct step_io *io, cf_error *err)
{
	static const struct step_io none = { NULL, 0, -1, NULL, NULL };
	char cmd[2048], what[32], tail[512];
	int pipefd[2] = { -1, -1 };
	off_t from;
	size_t slot;
	cf_status rc;

	if (io == NULL)
		io = &none;
	format_cmd(argv, cmd, sizeof(cmd));
	say(q, "$ %s%s%s\n", io->shown_before ? io->shown_before : "", cmd,
	    io->shown_after ? io->shown_after : "");
	dprintf(q->steps_log, "$ %s\n", cmd);
	from = lseek(q->steps_log, 0, SEEK_END);
	snprintf(what, sizeof(what), "%s%s%s", argv[1],
		 argv[2] != NULL && argv[2][0] != '-' ? " " : "",
		 argv[2] != NULL && argv[2][0] != '-' ? argv[2] : "");
	if (io->input != NULL && pipe2(pipefd, O_CLOEXEC) != 0)
		return cf_error_set(err, CF_ERR_IO, "pipe: %s", strerror(errno));
	rc = spawn(q, what, argv, io->input != NULL ? pipefd[0] : q->devnull,
		   io->out >= 0 ? io->out : q->child_out, q->steps_log, 0, &slot,
		   err);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (rc == CF_OK && io->input != NULL) {
		/* Small (a value or a token): fits the pipe; a child that
		 * exits early gives EPIPE (SIGPIPE is ignored), seen below. */
		size_t off = 0;

		while (off < io->input_len) {
			ssize_t n = write(pipefd[1], io->input + off,
					  io->input_len - off);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			off += (size_t)n;
		}
	}
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (rc != CF_OK)
		return rc;
	rc = wait_step(q, slot, cmd, err);
	if (rc != CF_OK)
		return rc;
	if (exit_code(&q->procs[slot]) != 0) {
		q->child_exit = exit_code(&q->procs[slot]);
		log_tail(q->steps_log, from, tail, sizeof(tail));
		return cf_error_set(err, CF_ERR_IO, "`%s` failed with exit %d%s%s; "
				    "its stderr is in %s/logs/steps.log", cmd,
				    q->child_exit, tail[0] ? ": " : "", tail,
				    q->dir);
	}
	return CF_OK;
}

/* Starts a daemon in the background, its stderr appended to log. */
static cf_status run_background(struct quick *q, const char *what,
				char *const argv[], const char *log_rel,
				size_t *slot, cf_error *err)
{
	char cmd[2048], path[PATH_MAX];
	int fd;
	cf_status rc;

	format_cmd(argv, cmd, sizeof(cmd));
	say(q, "$ %s 2>>%s &\n", cmd, log_rel);
	fd = open(in_dir(q, log_rel, path, sizeof(path)),
		  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "cannot open %s: %s", path,
				    strerror(errno));
	rc = spawn(q, what, argv, q->devnull, q->child_out, fd, 1, slot, err);
	close(fd);
	if (rc == CF_OK)
		say(q, "(%s runs as pid %ld)\n", what, (long)q->procs[*slot].pid);
	return rc;
}

/* ---- files --------------------------------------------------------- */

static cf_status write_text(const struct quick *q, const char *rel,
			    const char *text, int mode, cf_error *err)
{
	char path[PATH_MAX];

	return cli_write_file(in_dir(q, rel, path, sizeof(path)), text,
			      strlen(text), mode, 1, err);
}

/*
 * Reads a file that holds a secret into *out; CF_OK with *out NULL when
 * it does not exist yet.
 */
static cf_status read_secret_file(const char *path, cf_secret **out,
				  cf_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	cf_status rc;

	*out = NULL;
	if (fd < 0)
		return errno == ENOENT ? CF_OK :
		       cf_error_set(err, CF_ERR_IO, "cannot read %s: %s", path,
				    strerror(errno));
	rc = cf_secret_read_fd(fd, READ_MAX, path, out, err);
	close(fd);
	return rc;
}

/* Whether path holds exactly want (missing: no). */
static cf_status file_holds(const char *path, const cf_secret *want,
			    int *yes, cf_error *err)
{
	cf_secret *got = NULL;
	cf_status rc = read_secret_file(path, &got, err);

	*yes = rc == CF_OK && got != NULL && cf_secret_equal(got, want);
	cf_secret_free(got);
	return rc;
}

/* What the template renders to with value v (hex digits: JSON needs no
 * escapes, so the | json use is the value in quotes). */
static cf_status expected_render(const cf_secret *v, cf_secret **out,
				 cf_error *err)
{
	static const char *const parts[] = {
		TMPL_HEAD "password = ", NULL, "\njson = {\"password\": \"",
		NULL, "\"}\n"
	};
	cf_secret *s = cf_secret_new(1024);
	cf_status rc = s != NULL ? CF_OK :
		       cf_error_set(err, CF_ERR_NOMEM, "out of memory");

	for (size_t i = 0; rc == CF_OK && i < sizeof(parts) / sizeof(parts[0]); i++)
		rc = parts[i] != NULL ?
		     cf_secret_append(s, parts[i], strlen(parts[i]), err) :
		     cf_secret_append(s, cf_secret_cdata(v), cf_secret_len(v), err);
	if (rc != CF_OK) {
		cf_secret_free(s);
		s = NULL;
	}
	*out = s;
	return rc;
}

/* A random demo value: VALUE_RANDOM_BYTES in hex. */
static cf_status random_value(cf_secret **out, cf_error *err)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[VALUE_RANDOM_BYTES];
	cf_secret *s = cf_secret_new(2 * sizeof(raw));
	cf_status rc = CF_OK;

	*out = NULL;
	if (s == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (RAND_bytes(raw, (int)sizeof(raw)) != 1) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO, "RAND_bytes failed");
		goto out;
	}
	for (size_t i = 0; i < sizeof(raw); i++) {
		cf_secret_data(s)[2 * i] = (unsigned char)hex[raw[i] >> 4];
		cf_secret_data(s)[2 * i + 1] = (unsigned char)hex[raw[i] & 15];
	}
	rc = cf_secret_set_len(s, 2 * sizeof(raw), err);
out:
	OPENSSL_cleanse(raw, sizeof(raw));
	if (rc != CF_OK)
		cf_secret_free(s);
	else
		*out = s;
	return rc;
}

/* Lines of path equal to word (0 when it does not exist). */
static int count_lines(const char *path, const char *word)
{
	FILE *f = fopen(path, "re");
	char line[256];
	int n = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		n += strcmp(line, word) == 0;
	}
	fclose(f);
	return n;
}

static void mode_of(const char *path, char *buf, size_t size)
{
	struct stat st;

	if (stat(path, &st) == 0)
		snprintf(buf, size, "%04o", (unsigned)(st.st_mode & 07777));
	else
		snprintf(buf, size, "-");
}

/* ---- D ------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level == 0)
		return 0;
	return remove(path) == 0 ? 0 : errno;
}

/* Whether a is b or a directory above b. */
static int is_at_or_above(const char *a, const char *b)
{
	size_t n = strlen(a);

	if (strcmp(a, "/") == 0)
		return 1;
	return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

/*
 * Makes D (0700) or, with force, empties it; resolves it to q->dir.  A
 * non-empty D without --force is refused; so is, even with --force, a D
 * that is /, the home directory, or the current directory or above it.
 */
static cf_status prepare_dir(struct quick *q, const char *dir, int force,
			     cf_error *err)
{
	char cwd[PATH_MAX], home[PATH_MAX];
	const char *h = getenv("HOME");
	DIR *d;
	struct dirent *e;
	int empty = 1;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return cf_error_set(err, CF_ERR_IO, "cannot create %s: %s (its "
				    "parent must exist)", dir, strerror(errno));
	if (realpath(dir, q->dir) == NULL)
		return cf_error_set(err, CF_ERR_IO, "cannot resolve %s: %s", dir,
				    strerror(errno));
	if (strlen(q->dir) > DIR_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE, "%.100s...: the path "
				    "is longer than %d bytes; pick a shorter "
				    "--dir", q->dir, DIR_MAX);
	for (const char *c = q->dir; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '"' ||
		    *c == '\\' || *c == '\'')
			return cf_error_set(err, CF_ERR_USAGE, "%s: the agents' "
					    "configurations quote paths, and this "
					    "one holds a quote, backslash or "
					    "control character; pick another "
					    "--dir", dir);
	d = opendir(q->dir);
	if (d == NULL)
		return cf_error_set(err, CF_ERR_IO, "cannot open %s: %s", q->dir,
				    strerror(errno));
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			empty = 0;
	closedir(d);
	if (!empty && !force)
		return cf_error_set(err, CF_ERR_EXISTS, "%s is not empty; pick a "
				    "new --dir, or add --force to delete what is "
				    "in it first", q->dir);
	if (!empty) {
		if (getcwd(cwd, sizeof(cwd)) != NULL && is_at_or_above(q->dir, cwd))
			return cf_error_set(err, CF_ERR_USAGE, "refusing to empty "
					    "%s: it is the current directory or "
					    "above it; pick a new --dir", q->dir);
		if (h != NULL && realpath(h, home) != NULL &&
		    strcmp(home, q->dir) == 0)
			return cf_error_set(err, CF_ERR_USAGE, "refusing to empty "
					    "the home directory %s; pick a new "
					    "--dir", q->dir);
		if (nftw(q->dir, remove_entry, 16,
			 FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
			return cf_error_set(err, CF_ERR_IO, "cannot empty %s "
					    "(--force): %s", q->dir,
					    strerror(errno));
	}
	if (chmod(q->dir, 0700) != 0)
		return cf_error_set(err, CF_ERR_IO, "cannot chmod 700 %s: %s",
				    q->dir, strerror(errno));
	return CF_OK;
}

/* ---- the story ------------------------------------------------------ */

static cf_status make_identity(struct quick *q, const char *name,
			       const char *kind, const char *const perms[],
			       cf_error *err)
{
	char key[64], csr[64], crt[64];
	char *argv[ARGS_MAX];
	size_t n = 0;
	cf_status rc;

	snprintf(key, sizeof(key), "%s.key", name);
	snprintf(csr, sizeof(csr), "%s.csr", name);
	snprintf(crt, sizeof(crt), "%s.crt", name);
	{
		char *a[] = { q->self, "key", "new", "--out", key,
			      "--no-passphrase", NULL };

		rc = run_step(q, a, NULL, err);
	}
	if (rc == CF_OK) {
		char *a[] = { q->self, "csr", "new", "--key", key, "--name",
			      (char *)name, "--out", csr, NULL };

		rc = run_step(q, a, NULL, err);
	}
	if (rc != CF_OK)
		return rc;
	argv[n++] = q->self;
	argv[n++] = "cert";
	argv[n++] = "issue";
	argv[n++] = "--ca";
	argv[n++] = "ca";
	argv[n++] = "--pass-file";
	argv[n++] = "ca.pass";
	argv[n++] = "--csr";
	argv[n++] = csr;
	argv[n++] = "--out";
	argv[n++] = crt;
	argv[n++] = "--kind";
	argv[n++] = (char *)kind;
	for (size_t i = 0; perms[i] != NULL && n + 3 < ARGS_MAX; i++) {
		argv[n++] = "--perm";
		argv[n++] = (char *)perms[i];
	}
	argv[n] = NULL;
	return run_step(q, argv, NULL, err);
}

static cf_status pki(struct quick *q, cf_error *err)
{
	unsigned char raw[24];
	unsigned char text[64];
	char path[PATH_MAX];
	int len;
	cf_status rc;

	section(q, "1. The organisation's PKI: a root CA, an operator, an "
		"enroller");
	/* The CA's passphrase: random, in a 0600 file, never in an argv. */
	if (RAND_bytes(raw, (int)sizeof(raw)) != 1)
		return cf_error_set_ssl(err, CF_ERR_CRYPTO, "RAND_bytes failed");
	len = EVP_EncodeBlock(text, raw, (int)sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	text[len++] = '\n';
	rc = cli_write_file(in_dir(q, "ca.pass", path, sizeof(path)), text,
			    (size_t)len, 0600, 1, err);
	OPENSSL_cleanse(text, sizeof(text));
	if (rc != CF_OK)
		return rc;
	say(q, "(a random passphrase for the CA key, written to ca.pass, "
	    "mode 0600)\n");
	{
		char *a[] = { q->self, "ca", "init", "--name", "Quickstart Org",
			      "--dir", "ca", "--pass-file", "ca.pass", NULL };

		rc = run_step(q, a, NULL, err);
	}
	if (rc == CF_OK)
		rc = make_identity(q, "operator", "operator", operator_perms, err);
	if (rc == CF_OK)
		rc = make_identity(q, "enroller", "enroller", enroller_perms, err);
	return rc;
}

/* Waits for server/port, the server running. */
static cf_status wait_port(struct quick *q, cf_error *err)
{
	char path[PATH_MAX], log[PATH_MAX], tail[512], buf[16];
	double deadline = now_ms() + (double)q->timeout_s * 1000.0;
	unsigned long long port = 0;

	in_dir(q, "server/port", path, sizeof(path));
	in_dir(q, "logs/server.log", log, sizeof(log));
	for (;;) {
		int fd;
		ssize_t n = 0;

		if (got_signal)
			return interrupted(err);
		if (!still_running(q, (size_t)q->server)) {
			file_tail(log, tail, sizeof(tail));
			return cf_error_set(err, CF_ERR_SERVER, "the server exited "
					    "at start (exit %d): %s; see %s",
					    exit_code(&q->procs[q->server]), tail,
					    log);
		}
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
		}
		if (n > 0) {
			char *end;

			buf[n] = '\0';
			port = strtoull(buf, &end, 10);
			if ((*end == '\n' || *end == '\0') && port > 0 &&
			    port < 65536)
				break;
		}
		if (now_ms() > deadline)
			return cf_error_set(err, CF_ERR_TIMEOUT, "the server wrote "
					    "no port to %s in %lu s; see %s", path,
					    q->timeout_s, log);
		pause_briefly();
	}
	snprintf(q->url, sizeof(q->url), "https://127.0.0.1:%llu", port);
	return CF_OK;
}

static cf_status server(struct quick *q, cf_error *err)
{
	char env_url[96];
	const char *env[4];
	size_t slot;
	cf_status rc;

	section(q, "2. The server: TLS key, SQLite database, the organisation "
		"registered by its root");
	{
		char *a[] = { q->self, "server", "init", "--dir", "server", NULL };

		rc = run_step(q, a, NULL, err);
	}
	if (rc == CF_OK) {
		char *a[] = { q->self, "server", "tenant", "add", "--dir", "server",
			      "ca/root.crt", NULL };

		rc = run_step(q, a, NULL, err);
	}
	if (rc == CF_OK) {
		char *a[] = { q->self, "server", "run", "--dir", "server",
			      "--listen", "127.0.0.1:0", "--port-file",
			      "server/port", NULL };

		rc = run_background(q, "server", a, "logs/server.log", &slot, err);
		if (rc == CF_OK)
			q->server = (int)slot;
	}
	if (rc == CF_OK)
		rc = wait_port(q, err);
	if (rc != CF_OK)
		return rc;
	snprintf(env_url, sizeof(env_url), "COFFER_SERVER=%s", q->url);
	env[0] = env_url;
	env[1] = "COFFER_SERVER_CA=server/server.crt";
	env[2] = "COFFER_ROOT=ca/root.crt";
	env[3] = NULL;
	rc = set_env(q, env, err);
	if (rc == CF_OK)
		say(q, "$ export COFFER_SERVER=%s COFFER_SERVER_CA=server/server.crt "
		    "COFFER_ROOT=ca/root.crt\n", q->url);
	return rc;
}

static cf_status join(struct quick *q, cf_error *err)
{
	char path[PATH_MAX], wait_s[24];
	cf_secret *tokens = NULL;
	const char *line;
	size_t len, at = 0;
	int fd;
	cf_status rc;

	section(q, "3. Two agents join with one-time tokens; the enroller "
		"approves them");
	fd = open(in_dir(q, "tokens.txt", path, sizeof(path)),
		  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "cannot create %s: %s", path,
				    strerror(errno));
	{
		char *a[] = { q->self, "token", "create", "--group", GROUP,
			      "--count", "2", "--ttl", "1h", "--cert",
			      "enroller.crt", "--key", "enroller.key", NULL };
		struct step_io io = { NULL, 0, fd, NULL, " > tokens.txt" };

		rc = run_step(q, a, &io, err);
	}
	close(fd);
	/* The tokens are credentials: they go to join through a pipe. */
	if (rc == CF_OK)
		rc = read_secret_file(path, &tokens, err);
	if (rc == CF_OK && tokens == NULL)
		rc = cf_error_set(err, CF_ERR_IO, "%s vanished", path);
	if (rc != CF_OK)
		goto out;
	line = (const char *)cf_secret_cdata(tokens);
	len = cf_secret_len(tokens);
	for (int n = 0; n < AGENTS && rc == CF_OK; n++) {
		char shown[64];
		const char *nl = at < len ? memchr(line + at, '\n', len - at) : NULL;
		size_t end = nl != NULL ? (size_t)(nl - line) + 1 : len;
		char *a[] = { q->self, "agent", "join", "--server", q->url,
			      "--server-ca", "server/server.crt", "--token-file",
			      "-", "--name", q->agents[n].name, "--state-dir",
			      q->agents[n].name, "--root", "ca/root.crt", NULL };
		struct step_io io = { (const unsigned char *)line + at, end - at,
				      -1, shown, NULL };

		if (end <= at + 1) {
			rc = cf_error_set(err, CF_ERR_PARSE, "token create printed "
					  "fewer than %d tokens into %s", AGENTS,
					  path);
			break;
		}
		snprintf(shown, sizeof(shown), "sed -n %dp tokens.txt | ", n + 1);
		rc = run_step(q, a, &io, err);
		at = end;
	}
	if (rc == CF_OK) {
		char *a[] = { q->self, "agent", "approve", "--all", "--cert",
			      "enroller.crt", "--key", "enroller.key", NULL };

		rc = run_step(q, a, NULL, err);
	}
	snprintf(wait_s, sizeof(wait_s), "%lu", q->timeout_s);
	for (int n = 0; n < AGENTS && rc == CF_OK; n++) {
		char *a[] = { q->self, "agent", "join", "--state-dir",
			      q->agents[n].name, "--wait", wait_s, "--root",
			      "ca/root.crt", NULL };

		rc = run_step(q, a, NULL, err);
	}
out:
	cf_secret_free(tokens);
	return rc;
}

/* agentN.conf and appN/: a file and a template sink, each with a reload
 * command that appends a word to appN/reloads.log. */
static cf_status configs(struct quick *q, cf_error *err)
{
	char conf[8192], rel[64], app[PATH_MAX], tmpl[PATH_MAX];
	cf_status rc;
	int len;

	section(q, "4. Each agent's configuration: a file and a template, each "
		"with a reload command");
	rc = write_text(q, "app.conf.tmpl", TMPL_TEXT, 0644, err);
	if (rc != CF_OK)
		return rc;
	say(q, "$ cat app.conf.tmpl\n%s", TMPL_TEXT);
	in_dir(q, "app.conf.tmpl", tmpl, sizeof(tmpl));
	for (int n = 0; n < AGENTS; n++) {
		snprintf(rel, sizeof(rel), "app%d", n + 1);
		in_dir(q, rel, app, sizeof(app));
		if (mkdir(app, 0700) != 0)
			return cf_error_set(err, CF_ERR_IO, "cannot create %s: %s",
					    app, strerror(errno));
		/* No owner=/group= lines: the files belong to whoever runs the
		 * agent, root or not.  The reload runs without a shell of the
		 * agent's: it execs /bin/sh, whose $0 is the log's path. */
		len = snprintf(conf, sizeof(conf),
			 "# %s.conf - written by 'coffer quickstart' (docs/AGENT.md)\n"
			 "[server]\n"
			 "url = %s\n"
			 "\n"
			 "[file " SECRET_NAME "]\n"
			 "path = %s/db_password\n"
			 "mode = 0400\n"
			 "reload = /bin/sh -c 'echo file >>\"$0\"' \"%s/reloads.log\"\n"
			 "\n"
			 "[template %s/app.conf]\n"
			 "source = %s\n"
			 "mode = 0440\n"
			 "reload = /bin/sh -c 'echo template >>\"$0\"' \"%s/reloads.log\"\n",
			 q->agents[n].name, q->url, app, app, app, tmpl, app);
		if (len < 0 || (size_t)len >= sizeof(conf))
			return cf_error_set(err, CF_ERR_USAGE, "the paths under %s "
					    "are too long for an agent configuration; "
					    "use a shorter --dir", q->dir);
		snprintf(rel, sizeof(rel), "%s.conf", q->agents[n].name);
		rc = write_text(q, rel, conf, 0600, err);
		if (rc != CF_OK)
			return rc;
		if (n == 0)
			say(q, "$ cat %s\n%s", rel, conf);
	}
	say(q, "(agent2.conf is the same with app2/)\n");
	return CF_OK;
}

static cf_status start_agents(struct quick *q, cf_error *err)
{
	section(q, "5. Both agents run in the background, long-polling the "
		"server");
	say(q, "(until the secret exists, their logs say that their files are "
	    "not up to date yet)\n");
	for (int n = 0; n < AGENTS; n++) {
		char conf[32], log[48];
		char *a[] = { q->self, "agent", "run", "--state-dir",
			      q->agents[n].name, "--config", conf, NULL };
		size_t slot;
		cf_status rc;

		snprintf(conf, sizeof(conf), "%s.conf", q->agents[n].name);
		snprintf(log, sizeof(log), "logs/%s.log", q->agents[n].name);
		rc = run_background(q, q->agents[n].name, a, log, &slot, err);
		if (rc != CF_OK)
			return rc;
		q->agents[n].proc = (int)slot;
	}
	return CF_OK;
}

/* An agent that has stopped is an error naming its log. */
static cf_status agent_alive(struct quick *q, int n, cf_error *err)
{
	char log[PATH_MAX], rel[48], tail[512];
	struct proc *p = &q->procs[q->agents[n].proc];

	if (still_running(q, (size_t)q->agents[n].proc))
		return CF_OK;
	snprintf(rel, sizeof(rel), "logs/%s.log", q->agents[n].name);
	file_tail(in_dir(q, rel, log, sizeof(log)), tail, sizeof(tail));
	return cf_error_set(err, CF_ERR_IO, "%s (pid %ld) exited with %d: %s; "
			    "see %s", q->agents[n].name, (long)p->pid,
			    exit_code(p), tail, log);
}

/*
 * Waits until every agent's file holds v and its template is rendered
 * with it; ms[n] = time from since to when agent n had both.
 */
static cf_status wait_delivery(struct quick *q, const cf_secret *v,
			       double since, double ms[AGENTS], cf_error *err)
{
	char file[AGENTS][PATH_MAX], tmpl[AGENTS][PATH_MAX], rel[64];
	cf_secret *render = NULL;
	double deadline = now_ms() + (double)q->timeout_s * 1000.0;
	int done[AGENTS] = { 0 }, left = AGENTS;
	cf_status rc;

	for (int n = 0; n < AGENTS; n++) {
		snprintf(rel, sizeof(rel), "app%d/db_password", n + 1);
		in_dir(q, rel, file[n], sizeof(file[n]));
		snprintf(rel, sizeof(rel), "app%d/app.conf", n + 1);
		in_dir(q, rel, tmpl[n], sizeof(tmpl[n]));
	}
	rc = expected_render(v, &render, err);
	while (rc == CF_OK && left > 0) {
		for (int n = 0; n < AGENTS && rc == CF_OK; n++) {
			int file_ok = 0, tmpl_ok = 0;

			if (done[n])
				continue;
			rc = agent_alive(q, n, err);
			if (rc == CF_OK)
				rc = file_holds(file[n], v, &file_ok, err);
			if (rc == CF_OK && file_ok)
				rc = file_holds(tmpl[n], render, &tmpl_ok, err);
			if (rc == CF_OK && file_ok && tmpl_ok) {
				ms[n] = now_ms() - since;
				done[n] = 1;
				left--;
			}
		}
		if (rc != CF_OK || left == 0)
			break;
		if (got_signal) {
			rc = interrupted(err);
			break;
		}
		if (now_ms() > deadline) {
			for (int n = 0; n < AGENTS; n++)
				if (!done[n]) {
					rc = cf_error_set(err, CF_ERR_TIMEOUT,
						"%s did not write the new value "
						"to %s and %s in %lu s; see "
						"%s/logs/%s.log",
						q->agents[n].name, file[n], tmpl[n],
						q->timeout_s, q->dir,
						q->agents[n].name);
					break;
				}
			break;
		}
		pause_briefly();
	}
	cf_secret_free(render);
	return rc;
}

/* Puts values[i] to the group; put_ms[i] is how long put took. */
static cf_status put(struct quick *q, int i, double *put_done, cf_error *err)
{
	char *a[] = { q->self, "put", SECRET_NAME, "--to", "group:" GROUP,
		      "--cert", "operator.crt", "--key", "operator.key", NULL };
	struct step_io io = { NULL, 0, -1, NULL,
			      "   # the value on standard input" };
	double t0;
	cf_status rc;

	rc = random_value(&q->values[i], err);
	if (rc != CF_OK)
		return rc;
	io.input = cf_secret_cdata(q->values[i]);
	io.input_len = cf_secret_len(q->values[i]);
	say(q, "(a random demo value: %d hex digits, only ever on put's "
	    "standard input)\n", 2 * VALUE_RANDOM_BYTES);
	t0 = now_ms();
	rc = run_step(q, a, &io, err);
	*put_done = now_ms();
	q->put_ms[i] = *put_done - t0;
	return rc;
}

static cf_status deliver(struct quick *q, cf_error *err)
{
	double done, ms[AGENTS];
	cf_status rc;

	section(q, "6. The operator puts a secret for group " GROUP " (sealed "
		"here to each agent)");
	rc = put(q, 0, &done, err);
	if (rc == CF_OK)
		rc = wait_delivery(q, q->values[0], done, ms, err);
	if (rc != CF_OK)
		return rc;
	for (int n = 0; n < AGENTS; n++) {
		q->agents[n].first_ms = ms[n];
		say(q, "%s: app%d/db_password written and app%d/app.conf rendered "
		    "%.0f ms after put returned\n", q->agents[n].name, n + 1,
		    n + 1, ms[n]);
	}

	section(q, "7. A rotation: a second put; both agents rewrite both files "
		"and reload");
	rc = put(q, 1, &done, err);
	if (rc == CF_OK)
		rc = wait_delivery(q, q->values[1], done, ms, err);
	if (rc != CF_OK)
		return rc;
	for (int n = 0; n < AGENTS; n++) {
		q->agents[n].rotation_ms = ms[n];
		say(q, "%s: rotation arrived %.0f ms after put returned (put "
		    "itself took %.0f ms)\n", q->agents[n].name, ms[n], q->put_ms[1]);
	}
	return CF_OK;
}

/* Each agent ran each reload once per version: 2 file + 2 template. */
static cf_status wait_reloads(struct quick *q, cf_error *err)
{
	double deadline = now_ms() + (double)q->timeout_s * 1000.0;
	char path[AGENTS][PATH_MAX], rel[48];

	for (int n = 0; n < AGENTS; n++) {
		snprintf(rel, sizeof(rel), "app%d/reloads.log", n + 1);
		in_dir(q, rel, path[n], sizeof(path[n]));
	}
	for (;;) {
		int ok = 1;

		for (int n = 0; n < AGENTS; n++)
			ok &= count_lines(path[n], "file") >= 2 &&
			      count_lines(path[n], "template") >= 2;
		if (ok)
			return CF_OK;
		if (got_signal)
			return interrupted(err);
		for (int n = 0; n < AGENTS; n++) {
			cf_status rc = agent_alive(q, n, err);

			if (rc != CF_OK)
				return rc;
		}
		if (now_ms() > deadline)
			return cf_error_set(err, CF_ERR_TIMEOUT, "the reload "
					    "commands did not run twice each in "
					    "%lu s; see %s/app*/reloads.log and "
					    "%s/logs/agent*.log", q->timeout_s,
					    q->dir, q->dir);
		pause_briefly();
	}
}

static cf_status audit(struct quick *q, cf_error *err)
{
	char *a[] = { q->self, "audit", "verify", "--cert", "operator.crt",
		      "--key", "operator.key", NULL };
	cf_status rc;

	section(q, "8. The audit log: every change and read, hash-chained");
	rc = run_step(q, a, NULL, err);
	q->audit_ok = rc == CF_OK;
	return rc;
}

/* SIGTERM to each, by PID, agents first; each must exit 0. */
static cf_status stop(struct quick *q, cf_error *err)
{
	int order[AGENTS + 1];

	section(q, "9. Stopping the agents and the server (SIGTERM, by PID)");
	for (int n = 0; n < AGENTS; n++)
		order[n] = q->agents[n].proc;
	order[AGENTS] = q->server;
	for (int i = 0; i <= AGENTS; i++) {
		struct proc *p = &q->procs[order[i]];
		int killed;

		say(q, "$ kill -TERM %ld   # %s\n", (long)p->pid, p->what);
		killed = stop_proc(q, (size_t)order[i], STOP_GRACE_MS);
		if (!killed)
			say(q, "(%s exited %d)\n", p->what, exit_code(p));
		if (killed || exit_code(p) != 0)
			return cf_error_set(err, CF_ERR_IO, "%s (pid %ld) %s after "
					    "SIGTERM; see %s/logs/%s.log", p->what,
					    (long)p->pid, killed ? "did not exit "
					    "in 10 s and was killed" :
					    "exited with an error",
					    q->dir, p->what);
	}
	return CF_OK;
}

/* After the stop: what each agent left, read back from the files. */
static cf_status inspect(struct quick *q, cf_error *err)
{
	cf_secret *render = NULL;
	cf_status rc = expected_render(q->values[1], &render, err);

	for (int n = 0; n < AGENTS && rc == CF_OK; n++) {
		struct agent_result *a = &q->agents[n];
		char rel[48], path[PATH_MAX];

		snprintf(rel, sizeof(rel), "app%d/db_password", n + 1);
		in_dir(q, rel, path, sizeof(path));
		mode_of(path, a->file_mode, sizeof(a->file_mode));
		rc = file_holds(path, q->values[1], &a->file_ok, err);
		snprintf(rel, sizeof(rel), "app%d/app.conf", n + 1);
		in_dir(q, rel, path, sizeof(path));
		mode_of(path, a->template_mode, sizeof(a->template_mode));
		if (rc == CF_OK)
			rc = file_holds(path, render, &a->template_ok, err);
		snprintf(rel, sizeof(rel), "app%d/reloads.log", n + 1);
		in_dir(q, rel, path, sizeof(path));
		a->reloads_file = count_lines(path, "file");
		a->reloads_template = count_lines(path, "template");
	}
	cf_secret_free(render);
	return rc;
}

/* ---- the report ----------------------------------------------------- */

static json_t *abs_path(const struct quick *q, const char *rel)
{
	char path[PATH_MAX];

	return json_string(in_dir(q, rel, path, sizeof(path)));
}

/* Milliseconds to a tenth, for the report. */
static double tenth(double ms)
{
	return (double)(long long)(ms * 10.0 + 0.5) / 10.0;
}

static json_t *perms_json(const char *const perms[])
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && perms[i] != NULL; i++)
		json_array_append_new(a, json_string(perms[i]));
	return a;
}

/* The commands to run the pieces again by hand, from D. */
static json_t *next_steps(const struct quick *q)
{
	char line[PATH_MAX + 256];
	const char *port = strrchr(q->url, ':') + 1;
	json_t *a = json_array();

#define ADD(...) do { snprintf(line, sizeof(line), __VA_ARGS__); \
		      json_array_append_new(a, json_string(line)); } while (0)
	ADD("cd %s", q->dir);
	ADD("export COFFER_SERVER=%s COFFER_SERVER_CA=server/server.crt "
	    "COFFER_ROOT=ca/root.crt", q->url);
	ADD("%s server run --dir server --listen 127.0.0.1:%s "
	    "2>>logs/server.log &", q->self, port);
	ADD("%s agent run --state-dir agent1 --config agent1.conf "
	    "2>>logs/agent1.log &", q->self);
	ADD("head -c 12 /dev/urandom | base64 > new-value.txt");
	ADD("%s put " SECRET_NAME " --to group:" GROUP " --cert operator.crt "
	    "--key operator.key < new-value.txt", q->self);
	ADD("cat app1/db_password app1/reloads.log");
	ADD("%s history " SECRET_NAME " --cert operator.crt --key operator.key",
	    q->self);
	ADD("%s audit verify --cert operator.crt --key operator.key", q->self);
	ADD("kill %%1 %%2");
#undef ADD
	return a;
}

static json_t *report_json(const struct quick *q)
{
	json_t *r, *agents = json_array(), *pids = json_array();
	json_t *logs = json_pack("{s:o, s:o}", "steps",
				 abs_path(q, "logs/steps.log"), "server",
				 abs_path(q, "logs/server.log"));
	char buf[80];

	for (size_t i = 0; i < q->n_procs; i++)
		json_array_append_new(pids, json_integer(q->procs[i].pid));
	for (int n = 0; n < AGENTS; n++) {
		const struct agent_result *a = &q->agents[n];
		const struct proc *p = &q->procs[a->proc];
		char conf[32], log[48], file[48], tmpl[48], rl[48];

		snprintf(conf, sizeof(conf), "%s.conf", a->name);
		snprintf(log, sizeof(log), "logs/%s.log", a->name);
		snprintf(file, sizeof(file), "app%d/db_password", n + 1);
		snprintf(tmpl, sizeof(tmpl), "app%d/app.conf", n + 1);
		snprintf(rl, sizeof(rl), "app%d/reloads.log", n + 1);
		json_object_set_new(logs, a->name, abs_path(q, log));
		json_array_append_new(agents, json_pack(
			"{s:s, s:o, s:o, s:o, s:I, s:i, s:f, s:f,"
			" s:{s:o, s:s, s:b}, s:{s:o, s:o, s:s, s:b},"
			" s:{s:o, s:i, s:i}}",
			"name", a->name,
			"state_dir", abs_path(q, a->name),
			"config", abs_path(q, conf),
			"log", abs_path(q, log),
			"pid", (json_int_t)p->pid,
			"exit_status", exit_code(p),
			"first_delivery_ms", tenth(a->first_ms),
			"rotation_ms", tenth(a->rotation_ms),
			"file", "path", abs_path(q, file), "mode", a->file_mode,
			"holds_rotated_value", a->file_ok,
			"template", "path", abs_path(q, tmpl),
			"source", abs_path(q, "app.conf.tmpl"),
			"mode", a->template_mode, "rendered", a->template_ok,
			"reloads", "log", abs_path(q, rl),
			"file", a->reloads_file, "template", a->reloads_template));
	}
	snprintf(buf, sizeof(buf), "%s", q->url);
	r = json_pack("{s:s, s:s,"
		      " s:{s:o, s:o, s:o, s:o},"
		      " s:{s:o, s:o, s:o}, s:{s:o, s:o, s:o},"
		      " s:{s:o, s:o, s:s, s:o, s:I, s:i},"
		      " s:o, s:o,"
		      " s:{s:s, s:s, s:i, s:s%, s:s%, s:f, s:f},"
		      " s:o, s:b, s:o, s:o, s:o}",
		      "dir", q->dir, "coffer", q->self,
		      "ca", "dir", abs_path(q, "ca"),
		      "root_cert", abs_path(q, "ca/root.crt"),
		      "root_key", abs_path(q, "ca/root.key"),
		      "pass_file", abs_path(q, "ca.pass"),
		      "operator", "cert", abs_path(q, "operator.crt"),
		      "key", abs_path(q, "operator.key"),
		      "perms", perms_json(operator_perms),
		      "enroller", "cert", abs_path(q, "enroller.crt"),
		      "key", abs_path(q, "enroller.key"),
		      "perms", perms_json(enroller_perms),
		      "server", "dir", abs_path(q, "server"),
		      "db", abs_path(q, "server/coffer.db"), "url", buf,
		      "log", abs_path(q, "logs/server.log"),
		      "pid", (json_int_t)q->procs[q->server].pid,
		      "exit_status", exit_code(&q->procs[q->server]),
		      "tokens", abs_path(q, "tokens.txt"),
		      "template_source", abs_path(q, "app.conf.tmpl"),
		      "secret", "name", SECRET_NAME, "group", GROUP,
		      "versions", 2,
		      /* random demo values, printed for tests to check the
		       * files and grep the logs; never written to D */
		      "first_value", (const char *)cf_secret_cdata(q->values[0]),
		      cf_secret_len(q->values[0]),
		      "rotated_value", (const char *)cf_secret_cdata(q->values[1]),
		      cf_secret_len(q->values[1]),
		      "first_put_ms", tenth(q->put_ms[0]),
		      "rotation_put_ms", tenth(q->put_ms[1]),
		      "agents", agents,
		      "audit_verified", q->audit_ok,
		      "logs", logs,
		      "pids", pids,
		      "next", next_steps(q));
	return r;
}

static void report_text(struct quick *q)
{
	json_t *next = next_steps(q);
	size_t i;
	json_t *line;

	section(q, "Done: coffer ran end to end; nothing is left running");
	say(q, "Everything is in %s:\n", q->dir);
	say(q, "  ca/root.crt, ca/root.key  the root CA (key encrypted; its "
	    "passphrase is in ca.pass, 0600)\n");
	say(q, "  operator.crt, .key        operator: secret.write and "
	    "secret.read on demo/**, audit.read\n");
	say(q, "  enroller.crt, .key        enroller: agent.enroll and "
	    "token.create for group " GROUP "\n");
	say(q, "  server/                   coffer.db (SQLite: ciphertext and "
	    "metadata only), server.crt, server.key\n");
	say(q, "  logs/server.log           the server's log (it ran at %s, pid "
	    "%ld, exit %d)\n", q->url, (long)q->procs[q->server].pid,
	    exit_code(&q->procs[q->server]));
	say(q, "  tokens.txt                the two join tokens (each used "
	    "once)\n");
	say(q, "  app.conf.tmpl             the template both agents render\n");
	for (int n = 0; n < AGENTS; n++) {
		struct agent_result *a = &q->agents[n];
		struct proc *p = &q->procs[a->proc];
		char left[64];

		snprintf(left, sizeof(left), "%s/, %s.conf", a->name, a->name);
		say(q, "  %-25s %s's state dir (agent.key, agent.crt, cache, "
		    "state) and configuration\n", left, a->name);
		snprintf(left, sizeof(left), "logs/%s.log", a->name);
		say(q, "  %-25s its log (pid %ld, exit %d)\n", left, (long)p->pid,
		    exit_code(p));
		snprintf(left, sizeof(left), "app%d/db_password", n + 1);
		say(q, "  %-25s mode %s, %s\n", left, a->file_mode,
		    a->file_ok ? "holds the rotated value" :
		    "does NOT hold the rotated value");
		snprintf(left, sizeof(left), "app%d/app.conf", n + 1);
		say(q, "  %-25s mode %s, %s\n", left, a->template_mode,
		    a->template_ok ? "rendered with the rotated value" :
		    "NOT rendered with the rotated value");
		snprintf(left, sizeof(left), "app%d/reloads.log", n + 1);
		say(q, "  %-25s reloads run: %d for the file, %d for the "
		    "template (one per change)\n", left, a->reloads_file,
		    a->reloads_template);
	}
	say(q, "  logs/steps.log            the stderr of every command above\n");
	say(q, "\nRotation latency (second put returned -> file and template "
	    "rewritten):\n");
	for (int n = 0; n < AGENTS; n++)
		say(q, "  %s  %.0f ms\n", q->agents[n].name,
		    q->agents[n].rotation_ms);
	say(q, "\nRun the pieces by hand (coffer is %s; the agents' "
	    "configurations name port %s):\n", q->self, strrchr(q->url, ':') + 1);
	json_array_foreach(next, i, line)
		say(q, "  %s\n", json_string_value(line));
	say(q, "'cat app1/db_password' shows the demo value; docs/AGENT.md "
	    "explains the configuration, docs/CLIENT.md the commands.\n");
	json_decref(next);
}

/* ---- the command ---------------------------------------------------- */

static void quickstart_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer quickstart [--dir D] [--force] [--json] [--timeout S]\n"
		"\n"
		"Sets up and runs coffer for real on this machine, in D (default\n"
		"./coffer-quickstart), printing each command as it runs it:\n"
		"a root CA (its key's random passphrase in D/ca.pass), an operator\n"
		"and an enroller; a server (SQLite) on 127.0.0.1 with an ephemeral\n"
		"port; two agents that join with one-time tokens and are approved;\n"
		"a configuration per agent with a [file] and a [template] sink and\n"
		"reload commands; both agents running; a random demo secret put to\n"
		"their group, written and rendered by both; a rotation and how long\n"
		"it took to arrive.  Then it stops the agents and the server\n"
		"(SIGTERM, by PID) and reports what is where and how to run the\n"
		"pieces again by hand.  Nothing is left running, on errors and\n"
		"^C too.  The commands' stderr goes to D/logs/.\n"
		"\n"
		"  --dir D      where everything goes; must be empty or missing\n"
		"  --force      empty a non-empty D first (deletes what is in it)\n"
		"  --json       print the report as JSON (progress goes to stderr);\n"
		"               it includes the two random demo values\n"
		"  --timeout S  the longest wait for any one step (default 30)\n");
}

int cmd_quickstart(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "force", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct quick *q;
	struct sigaction sa, old[4];
	static const int sigs[4] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };
	const char *dir = "coffer-quickstart";
	const char *const noenv[] = { NULL };
	unsigned long long timeout = TIMEOUT_DEFAULT_S;
	int force = 0, as_json = 0, c, code = 0;
	char path[PATH_MAX];
	ssize_t n;
	cf_error err = { 0 };
	cf_status rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 'f':
			force = 1;
			break;
		case 'j':
			as_json = 1;
			break;
		case 't':
			if (cli_parse_uint("quickstart", "--timeout", optarg,
					   TIMEOUT_MAX_S, &timeout) != 0)
				return 2;
			break;
		case 'h':
			quickstart_usage(stdout);
			return 0;
		default:
			return cli_bad_option("quickstart");
		}
	}
	if (optind != argc)
		return cli_usage("quickstart", "unexpected argument \"%s\"",
				 argv[optind]);
	if (dir[0] == '\0')
		return cli_usage("quickstart", "--dir is empty");

	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		return cli_fail(&err);
	}
	q->timeout_s = (unsigned long)timeout;
	q->json = as_json;
	q->say = as_json ? stderr : stdout;
	q->tty = isatty(fileno(q->say));
	q->server = -1;
	q->devnull = q->steps_log = -1;
	for (int i = 0; i < AGENTS; i++) {
		snprintf(q->agents[i].name, sizeof(q->agents[i].name), "agent%d",
			 i + 1);
		q->agents[i].proc = -1;
	}

	/* Caught, not default: every way out goes through stop_all. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 4; i++) {
		struct sigaction *use = &sa, ign;

		if (sigs[i] == SIGPIPE) {
			/* a child that exits before reading its stdin */
			memset(&ign, 0, sizeof(ign));
			ign.sa_handler = SIG_IGN;
			sigemptyset(&ign.sa_mask);
			use = &ign;
		}
		(void)sigaction(sigs[i], use, &old[i]);
	}

	n = readlink("/proc/self/exe", q->self, sizeof(q->self) - 1);
	if (n <= 0 || (size_t)n >= sizeof(q->self) - 1) {
		rc = cf_error_set(&err, CF_ERR_IO, "cannot find this program "
				  "(/proc/self/exe): %s", strerror(errno));
		goto out;
	}
	q->self[n] = '\0';
	rc = prepare_dir(q, dir, force, &err);
	if (rc != CF_OK)
		goto out;
	q->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (q->devnull < 0) {
		rc = cf_error_set(&err, CF_ERR_IO, "cannot open /dev/null: %s",
				  strerror(errno));
		goto out;
	}
	rc = cli_mkdir(in_dir(q, "logs", path, sizeof(path)), 0700, &err);
	if (rc != CF_OK)
		goto out;
	q->steps_log = open(in_dir(q, "logs/steps.log", path, sizeof(path)),
			    O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (q->steps_log < 0) {
		rc = cf_error_set(&err, CF_ERR_IO, "cannot open %s: %s", path,
				  strerror(errno));
		goto out;
	}
	/* With --json, stdout is the report alone: the steps' go to the log. */
	q->child_out = as_json ? q->steps_log : STDOUT_FILENO;
	rc = set_env(q, noenv, &err);
	if (rc != CF_OK)
		goto out;
	say(q, "coffer quickstart: the whole system on this machine, in %s\n"
	    "(every command runs in that directory; coffer is %s)\n", q->dir,
	    q->self);
	say(q, "$ cd %s\n", q->dir);

	rc = pki(q, &err);
	if (rc == CF_OK)
		rc = server(q, &err);
	if (rc == CF_OK)
		rc = join(q, &err);
	if (rc == CF_OK)
		rc = configs(q, &err);
	if (rc == CF_OK)
		rc = start_agents(q, &err);
	if (rc == CF_OK)
		rc = deliver(q, &err);
	if (rc == CF_OK)
		rc = wait_reloads(q, &err);
	if (rc == CF_OK)
		rc = audit(q, &err);
	if (rc == CF_OK)
		rc = stop(q, &err);
	if (rc == CF_OK)
		rc = inspect(q, &err);
	for (int i = 0; rc == CF_OK && i < AGENTS; i++)
		if (!q->agents[i].file_ok || !q->agents[i].template_ok)
			rc = cf_error_set(&err, CF_ERR_IO, "%s's files changed "
					  "after it stopped", q->agents[i].name);
out:
	stop_all(q);
	if (rc == CF_OK) {
		if (as_json) {
			json_t *r = report_json(q);

			if (r == NULL || json_dumpf(r, stdout, JSON_INDENT(2)) != 0) {
				cf_error_set(&err, CF_ERR_NOMEM, "cannot write the "
					     "report");
				code = cli_fail(&err);
			} else {
				fputc('\n', stdout);
			}
			json_decref(r);
		} else {
			report_text(q);
		}
	} else {
		code = got_signal ? 128 + (int)got_signal :
		       q->child_exit > 0 ? q->child_exit : cli_exit_code(rc);
		/* one sentence; what ran is stopped already (stop_all) */
		(void)cli_fail(&err);
	}
	fflush(stdout);
	for (int i = 0; i < 4; i++)
		(void)sigaction(sigs[i], &old[i], NULL);
	for (int i = 0; i < 2; i++)
		cf_secret_free(q->values[i]);
	for (size_t i = 0; q->env != NULL && q->env[i] != NULL; i++)
		free(q->env[i]);
	free(q->env);
	if (q->devnull >= 0)
		close(q->devnull);
	if (q->steps_log >= 0)
		close(q->steps_log);
	free(q);
	return code;
}
