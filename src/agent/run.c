/*
 * run.c - `coffer agent run` (the daemon) and `coffer agent once` (one
 * sync), docs/AGENT.md "Running".
 *
 *   start    harden the process, read the config, open the state dir,
 *            bring every sink up to date from the cache (the server may
 *            be down: the last good files are re-made from ciphertext)
 *   loop     refresh the CRL now and then; long-poll the feed; verify and
 *            cache what arrives; apply the sinks that use it; on an error
 *            back off exponentially (1 s .. 60 s, full jitter) and leave
 *            every file as it is
 *   SIGHUP   re-read the config (a bad one is logged and the old one
 *            kept) and re-apply every sink; SIGTERM/SIGINT: exit 0
 *   commands operators' commands come with the feed (command.h): they
 *            are checked here, on the main thread, and run on a worker
 *            thread (agent run) or before exiting (agent once); the
 *            refresh built-in is a sync of this loop, done right after
 *            the fetch that brought it
 *   acks     what each pass over the sinks made of each version is
 *            signed (acks.c) and posted before the next long poll (agent
 *            once: before it exits), only while the server answers; a
 *            post that fails is tried again at the next sync
 *
 * The loop sleeps in the long poll (the server holds the request until a
 * change or `wait` seconds), so an idle agent uses no CPU.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <unistd.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "hook.h"
#include "log.h"
#include "runtime.h"

#define BACKOFF_MIN_S 1.0
#define BACKOFF_MAX_S 60.0
#define CRL_REFRESH_S 300

static volatile sig_atomic_t got_stop, got_hup, wake;
/* Written by the signal handler: wakes a long poll or a nap at once. */
static int wake_pipe[2] = { -1, -1 };

int ag_stopping(void)
{
	return got_stop != 0;
}

static void on_signal(int sig)
{
	int saved = errno;

	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_stop = 1;
	wake = 1;
	if (wake_pipe[1] >= 0)
		(void)!write(wake_pipe[1], "", 1);
	errno = saved;
}

/*
 * What every agent command does first: no core dumps, not ptrace-able by
 * other processes of the user, files private unless a sink says
 * otherwise, and a warning when secret memory cannot be locked.
 */
void ag_harden(void)
{
	struct rlimit none = { 0, 0 };

	(void)setrlimit(RLIMIT_CORE, &none);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	umask(077);
	if (!cf_secmem_locked())
		ag_log(AG_LOG_WARN, "secret memory is not locked (RLIMIT_MEMLOCK "
		       "is too low for the 32 MiB secure heap): secrets could be "
		       "swapped out; raise it, e.g. LimitMEMLOCK=64M in the "
		       "systemd unit");
}

static void install_signals(void)
{
	struct sigaction sa;

	if (wake_pipe[0] < 0 && pipe2(wake_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
		wake_pipe[0] = wake_pipe[1] = -1;   /* naps fall back to slices */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;                 /* no SA_RESTART: wake the sleeps */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/* Sleeps about seconds, returning early when a signal arrives. */
static void nap(double seconds)
{
	struct timespec slice = { 0, 200 * 1000 * 1000 };
	double slept = 0;

	if (wake_pipe[0] >= 0) {
		struct pollfd pfd = { .fd = wake_pipe[0], .events = POLLIN };
		char drain[64];

		if (!wake)
			(void)poll(&pfd, 1, (int)(seconds * 1000));
		while (read(wake_pipe[0], drain, sizeof(drain)) > 0)
			;
		return;
	}
	while (slept < seconds && !wake) {
		nanosleep(&slice, NULL);
		slept += 0.2;
	}
}

double ag_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Full jitter: uniform in [backoff/2, backoff]. */
double ag_jittered(double backoff)
{
	unsigned int r = 0;

	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		r = (unsigned int)time(NULL);
	return backoff / 2 + backoff / 2 * ((double)r / 4294967295.0);
}

struct run_opts {
	const char *state_dir, *config;
	int level;
};

static void run_usage(FILE *out, const char *cmd)
{
	fprintf(out,
		"usage: coffer agent %s --state-dir D --config F [--log-level L]\n"
		"\n", cmd);
	if (strcmp(cmd, "run") == 0)
		fprintf(out,
			"The agent daemon, in the foreground (systemd: Type=exec).\n"
			"Brings every [file] and [template] of F up to date from the\n"
			"cache in D, then long-polls the server and applies each new\n"
			"version as it arrives, running reload commands once per change.\n"
			"A server that is down leaves the last good files in place; the\n"
			"agent retries with exponential backoff.  SIGHUP re-reads F,\n"
			"SIGTERM exits 0.  Logs go to stderr, one line per event.\n");
	else
		fprintf(out,
			"One sync: fetch every change from the server, verify it, bring\n"
			"every [file] and [template] of F up to date, run the reloads of\n"
			"what changed, and exit.  Exit 0 when every sink is up to date,\n"
			"32 when some are not (the log says which and why), 24 when the\n"
			"server cannot be reached (the cached versions are applied).\n");
	fprintf(out,
		"\n"
		"  --state-dir D   the directory 'coffer agent join' made\n"
		"  --config F      the agent configuration (docs/AGENT.md)\n"
		"  --log-level L   error, warn, info (default) or debug\n");
}

static int parse_run(const char *cmd, int argc, char **argv,
		     struct run_opts *o)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	char full[32];
	int ch;

	snprintf(full, sizeof(full), "agent %s", cmd);
	o->level = AG_LOG_INFO;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': o->state_dir = optarg; break;
		case 'c': o->config = optarg; break;
		case 'l':
			o->level = ag_log_level_from_name(optarg);
			if (o->level < 0)
				return cli_usage(full, "--log-level is error, warn, "
						 "info or debug, not \"%s\"", optarg);
			break;
		case 'h': run_usage(stdout, cmd); return 0;
		default: return cli_bad_option(full);
		}
	}
	if (optind != argc)
		return cli_usage(full, "unexpected argument \"%s\"", argv[optind]);
	if (o->state_dir == NULL || o->config == NULL)
		return cli_usage(full, "--state-dir and --config are required");
	return -1;
}

/* Config and runtime, the common start of run and once (threaded:
 * commands run on a worker thread). */
static cf_status start(const struct run_opts *o, int threaded,
		       ag_config **cfg, ag_runtime **rt, cf_error *err)
{
	cf_status rc;

	ag_log_set_level(o->level);
	ag_harden();
	rc = ag_config_load(o->config, cfg, err);
	if (rc == CF_OK)
		rc = ag_runtime_new(o->state_dir, (*cfg)->server_url,
				    (*cfg)->server_ca, (*cfg)->root, 0, rt, err);
	if (rc == CF_OK)
		rc = ag_state_lock_run((*rt)->st, err);
	if (rc == CF_OK && ((*rt)->status = ag_status_new()) == NULL)
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (rc == CF_OK && ((*rt)->acks = ag_acks_new()) == NULL)
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (rc == CF_OK)
		rc = ag_status_config((*rt)->status, *cfg);
	if (rc == CF_OK) {
		ag_status_carry((*rt)->status, o->state_dir);
		ag_report(*rt);
	}
	if (rc == CF_OK)
		rc = ag_runtime_commands(*rt, *cfg, o->config, &got_stop,
					 threaded, err);
	return rc;
}

/*
 * The refresh built-in's summary (its answer's stdout): what the fetch
 * brought and what the sinks are now.  Returns its exit code: 0 when
 * the server answered and every sink is up to date, else 1.
 */
static int refresh_summary(char *buf, size_t size, cf_status fetched,
			   const cf_error *err, size_t accepted,
			   size_t n_sinks, size_t written, size_t stale)
{
	if (fetched == CF_OK)
		snprintf(buf, size, "refresh: the server answered; %zu new "
			 "version(s) accepted\nsinks: %zu configured, %zu "
			 "rewritten, %zu not up to date\n", accepted, n_sinks,
			 written, stale);
	else
		snprintf(buf, size, "refresh: the server could not be asked "
			 "(%s); the versions this agent has were applied\n"
			 "sinks: %zu configured, %zu rewritten, %zu not up to "
			 "date\n", err->msg, n_sinks, written, stale);
	return fetched == CF_OK && stale == 0 ? 0 : 1;
}

/*
 * Names accepted that no sink uses are acknowledged at once: the version
 * was received and verified, and nothing of it could fail.
 */
static void ack_unused(ag_runtime *rt, const ag_config *cfg,
		       char *const *names, size_t n)
{
	unsigned char *using = cfg->n_sinks ? OPENSSL_zalloc(cfg->n_sinks) :
			       NULL;

	if (rt->acks == NULL || (cfg->n_sinks > 0 && using == NULL)) {
		OPENSSL_free(using);
		return;
	}
	ag_acks_begin(rt);
	for (size_t i = 0; i < n; i++) {
		int used = 0;

		ag_sinks_using(cfg, &names[i], 1, using);
		for (size_t j = 0; j < cfg->n_sinks && !used; j++)
			used = using[j];
		if (!used)
			ag_acks_note(rt, names[i], 0, NULL);
	}
	ag_acks_end(rt);
	OPENSSL_free(using);
}

/*
 * agent once: the refresh built-in as ag_apply does it (every sink,
 * then the commands of those rewritten), counting what was rewritten.
 */
static void once_refresh(ag_runtime *rt, const ag_config *cfg)
{
	unsigned char *changed = NULL, *failed = NULL;
	size_t accepted, written = 0, stale = 0;
	cf_error err = { 0 };
	char summary[CF_ERROR_MAX + 256];
	cf_status rc;

	rc = ag_refresh_crl(rt, &err);
	if (rc == CF_OK)
		rc = ag_fetch_all(rt, &err);
	accepted = rt->n_changed;
	ack_unused(rt, cfg, rt->changed, rt->n_changed);
	ag_runtime_clear_changes(rt);
	if (cfg->n_sinks > 0) {
		changed = OPENSSL_zalloc(cfg->n_sinks);
		failed = OPENSSL_zalloc(cfg->n_sinks);
	}
	if (cfg->n_sinks > 0 && (changed == NULL || failed == NULL)) {
		stale = cfg->n_sinks;
	} else if (cfg->n_sinks > 0) {
		stale = ag_apply_sinks(rt, cfg, NULL, changed, NULL);
		ag_run_commands(cfg, changed, cfg->reload_timeout_s, failed);
		ag_acks_begin(rt);
		for (size_t i = 0; i < cfg->n_sinks; i++) {
			written += changed[i];
			stale += failed[i];
			if (failed[i])
				ag_acks_note_sink(rt, &cfg->sinks[i], "the file is "
						  "up to date but its command "
						  "failed");
		}
		ag_acks_end(rt);
		ag_report(rt);
	}
	OPENSSL_free(changed);
	OPENSSL_free(failed);
	ag_commands_refresh_done(rt->commands, refresh_summary(summary,
		sizeof(summary), rc, &err, accepted, cfg->n_sinks, written,
		stale), summary);
}

int ag_cmd_once(int argc, char **argv)
{
	struct run_opts o = { 0 };
	ag_config *cfg = NULL;
	ag_runtime *rt = NULL;
	cf_error err = { 0 };
	size_t stale;
	cf_status rc;
	int code = parse_run("once", argc, argv, &o);

	if (code >= 0)
		return code;
	install_signals();
	rc = start(&o, 0, &cfg, &rt, &err);
	if (rc != CF_OK) {
		code = cli_fail(&err);
		goto out;
	}
	ag_runtime_set_abort(rt, &got_stop);
	rc = ag_refresh_crl(rt, &err);
	if (rc == CF_OK)
		rc = ag_fetch_all(rt, &err);
	if (rc != CF_OK)
		ag_log(AG_LOG_ERROR, "%s; applying the versions this agent has",
		       err.msg);
	ack_unused(rt, cfg, rt->changed, rt->n_changed);
	stale = ag_apply(rt, cfg, NULL, 0, cfg->reload_timeout_s);
	if (rc != CF_OK) {
		code = cli_exit_code(rc);
	} else if (stale > 0 || rt->refused > 0) {
		if (rt->refused > 0)
			ag_log(AG_LOG_ERROR, "%zu envelope(s) from the server were "
			       "refused (see above)", rt->refused);
		ag_log(AG_LOG_ERROR, "%zu of %zu sink(s) are not up to date",
		       stale, cfg->n_sinks);
		code = cli_exit_code(CF_ERR_STALE);
	} else {
		ag_log(AG_LOG_INFO, "all %zu sink(s) are up to date", cfg->n_sinks);
		code = 0;
	}
	/* Commands that came with the feed, before exiting. */
	if (ag_commands_refresh_wanted(rt->commands) > 0 && !got_stop)
		once_refresh(rt, cfg);
	ag_commands_drain(rt->commands);
	/* What the sinks made of it, while the server answers. */
	if (rc == CF_OK && ag_acks_pending(rt) > 0 && !got_stop)
		(void)ag_acks_flush(rt, &err);
	ag_status_stopped(rt->status);
	ag_report(rt);
out:
	ag_runtime_free(rt);
	ag_config_free(cfg);
	return code;
}

/*
 * What the daemon keeps about its sinks between loop rounds, indexed like
 * cfg->sinks (and cfg->groups): which failed (retried 5 s, doubling to
 * 5 min, until they are up to date), and which wait to settle.
 */
#define RETRY_MIN_S 5
#define RETRY_MAX_S 300

struct unit {                   /* a sink, or a group of sinks */
	int pending;
	double first, last;     /* CLOCK_MONOTONIC of the first, last change */
};

struct sched {
	size_t n_sinks, n_groups;
	unsigned char *failed;  /* per sink */
	size_t n_failed;
	double retry_at;
	long retry_every_s;
	struct unit *sinks, *groups;
	unsigned char *which, *changed, *using; /* scratch, per sink */
	unsigned char *rerun;   /* per sink: its command failed, run it again */
	size_t n_written;       /* files rewritten by the last sched_apply */
};

static void sched_free(struct sched *sc)
{
	OPENSSL_free(sc->failed);
	OPENSSL_free(sc->sinks);
	OPENSSL_free(sc->groups);
	OPENSSL_free(sc->which);
	OPENSSL_free(sc->changed);
	OPENSSL_free(sc->using);
	OPENSSL_free(sc->rerun);
	memset(sc, 0, sizeof(*sc));
}

/* For cfg (again after a SIGHUP: nothing pending survives, all is applied). */
static cf_status sched_init(struct sched *sc, const ag_config *cfg,
			    cf_error *err)
{
	size_t n = cfg->n_sinks ? cfg->n_sinks : 1;

	sched_free(sc);
	sc->n_sinks = cfg->n_sinks;
	sc->n_groups = cfg->n_groups;
	sc->retry_every_s = RETRY_MIN_S;
	sc->failed = OPENSSL_zalloc(n);
	sc->which = OPENSSL_zalloc(n);
	sc->changed = OPENSSL_zalloc(n);
	sc->using = OPENSSL_zalloc(n);
	sc->rerun = OPENSSL_zalloc(n);
	sc->sinks = OPENSSL_zalloc(n * sizeof(*sc->sinks));
	sc->groups = OPENSSL_zalloc((cfg->n_groups ? cfg->n_groups : 1) *
				    sizeof(*sc->groups));
	if (sc->failed == NULL || sc->which == NULL || sc->changed == NULL ||
	    sc->using == NULL || sc->rerun == NULL || sc->sinks == NULL ||
	    sc->groups == NULL) {
		sched_free(sc);
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	}
	return CF_OK;
}

/* Applies the sinks in sc->which, runs their commands, notes failures. */
static void sched_apply(struct sched *sc, ag_runtime *rt, const ag_config *cfg)
{
	unsigned char *failed = sc->using;   /* scratch */
	size_t was = sc->n_failed;

	ag_apply_sinks(rt, cfg, sc->which, sc->changed, failed);
	sc->n_written = 0;
	for (size_t i = 0; i < sc->n_sinks; i++)
		sc->n_written += sc->changed[i];
	/* A command that failed before runs again, changed file or not. */
	for (size_t i = 0; i < sc->n_sinks; i++) {
		if (sc->which[i] && sc->rerun[i])
			sc->changed[i] = 1;
		if (sc->which[i])
			sc->rerun[i] = 0;
	}
	/* A group's command runs for all its members: it is no longer
	 * owed to any of them (it fails again for all, if it fails). */
	for (size_t i = 0; i < sc->n_sinks; i++)
		if (sc->changed[i] && cfg->sinks[i].group >= 0)
			for (size_t j = 0; j < sc->n_sinks; j++)
				if (cfg->sinks[j].group == cfg->sinks[i].group)
					sc->rerun[j] = 0;
	ag_run_commands(cfg, sc->changed, cfg->reload_timeout_s, sc->rerun);
	ag_acks_begin(rt);
	for (size_t i = 0; i < sc->n_sinks; i++)
		if (sc->rerun[i] && sc->changed[i])
			ag_acks_note_sink(rt, &cfg->sinks[i], "the file is up to "
					  "date but its command failed");
	ag_acks_end(rt);
	for (size_t i = 0; i < sc->n_sinks; i++) {
		sc->failed[i] = (sc->which[i] ? failed[i] : sc->failed[i]) |
				sc->rerun[i];
		if (sc->rerun[i] && rt->status != NULL)
			ag_status_sink_failed(rt->status, cfg->sinks[i].path,
				cfg->sinks[i].kind == AG_SINK_FILE ? "file" :
				"template", cfg->sinks[i].kind == AG_SINK_FILE ?
				cfg->sinks[i].secret : cfg->sinks[i].source,
				"the file is up to date but its command failed "
				"(see the log); it runs again at the next retry");
	}
	ag_report(rt);
	sc->n_failed = 0;
	for (size_t i = 0; i < sc->n_sinks; i++)
		sc->n_failed += sc->failed[i];
	if (sc->n_failed == 0) {
		if (was > 0)
			ag_log(AG_LOG_INFO, "all sinks are up to date");
		sc->retry_every_s = RETRY_MIN_S;
		return;
	}
	if (sc->n_failed > was || sc->retry_at == 0) {
		ag_log(AG_LOG_WARN, "%zu sink(s) not up to date; trying again in "
		       "%ld s", sc->n_failed, sc->retry_every_s);
		sc->retry_at = ag_mono_s() + (double)sc->retry_every_s;
	}
}

/* Everything, now (start, SIGHUP, after a config change). */
static void sched_apply_all(struct sched *sc, ag_runtime *rt,
			    const ag_config *cfg)
{
	memset(sc->which, 1, sc->n_sinks);
	for (size_t i = 0; i < sc->n_sinks; i++)
		sc->sinks[i].pending = 0;
	for (size_t g = 0; g < sc->n_groups; g++)
		sc->groups[g].pending = 0;
	sc->retry_at = 0;
	sched_apply(sc, rt, cfg);
}

static long unit_wait(const ag_config *cfg, size_t i, long *max_ms)
{
	const ag_sink *sink = &cfg->sinks[i];

	if (sink->group >= 0) {
		*max_ms = cfg->groups[sink->group].wait_max_ms;
		return cfg->groups[sink->group].wait_min_ms;
	}
	*max_ms = sink->wait_max_ms;
	return sink->wait_min_ms;
}

/*
 * The sinks that use the names just accepted: those that act at once
 * are applied now; the others (wait = MIN:MAX, on them or their group)
 * start or extend their settling.
 */
static void sched_changed(struct sched *sc, ag_runtime *rt,
			  const ag_config *cfg, char *const *names, size_t n)
{
	double now = ag_mono_s();
	int any = 0;

	ag_sinks_using(cfg, names, n, sc->using);
	memset(sc->which, 0, sc->n_sinks);
	for (size_t i = 0; i < sc->n_sinks; i++) {
		struct unit *u;
		long max_ms;

		if (!sc->using[i])
			continue;
		if (unit_wait(cfg, i, &max_ms) == 0 && max_ms == 0) {
			/* A group acts as one: all its members, now. */
			for (size_t j = 0; j < sc->n_sinks; j++)
				if (j == i || (cfg->sinks[i].group >= 0 &&
				    cfg->sinks[j].group == cfg->sinks[i].group))
					sc->which[j] = 1;
			any = 1;
			continue;
		}
		u = cfg->sinks[i].group >= 0 ? &sc->groups[cfg->sinks[i].group] :
					       &sc->sinks[i];
		if (!u->pending) {
			u->pending = 1;
			u->first = now;
			ag_log(AG_LOG_DEBUG, "%s: settling before it is written",
			       cfg->sinks[i].path);
		}
		u->last = now;
	}
	if (any)
		sched_apply(sc, rt, cfg);
}

/* Seconds until the next settled unit (or, with retries, retry) is due. */
static double sched_next(const struct sched *sc, const ag_config *cfg,
			 int retries)
{
	double next = 1e9, now = ag_mono_s();

	for (size_t i = 0; i < sc->n_sinks + sc->n_groups; i++) {
		const struct unit *u = i < sc->n_sinks ? &sc->sinks[i] :
				       &sc->groups[i - sc->n_sinks];
		long min_ms, max_ms;
		double due;

		if (!u->pending)
			continue;
		if (i < sc->n_sinks) {
			min_ms = cfg->sinks[i].wait_min_ms;
			max_ms = cfg->sinks[i].wait_max_ms;
		} else {
			min_ms = cfg->groups[i - sc->n_sinks].wait_min_ms;
			max_ms = cfg->groups[i - sc->n_sinks].wait_max_ms;
		}
		due = u->last + (double)min_ms / 1000.0;
		if (u->first + (double)max_ms / 1000.0 < due)
			due = u->first + (double)max_ms / 1000.0;
		if (due - now < next)
			next = due - now;
	}
	if (retries && sc->n_failed > 0 && sc->retry_at - now < next)
		next = sc->retry_at - now;
	return next;
}

/* Applies what has settled, and retries what failed, when due. */
static void sched_due(struct sched *sc, ag_runtime *rt, const ag_config *cfg)
{
	double now = ag_mono_s();
	int any = 0;

	memset(sc->which, 0, sc->n_sinks);
	for (size_t i = 0; i < sc->n_sinks; i++) {
		struct unit *u = cfg->sinks[i].group >= 0 ?
				 &sc->groups[cfg->sinks[i].group] : &sc->sinks[i];
		long max_ms, min_ms = unit_wait(cfg, i, &max_ms);

		if (!u->pending ||
		    (now - u->last < (double)min_ms / 1000.0 &&
		     now - u->first < (double)max_ms / 1000.0))
			continue;
		sc->which[i] = 1;
		any = 1;
	}
	/* Members of a settled group, even those the change did not touch. */
	for (size_t i = 0; i < sc->n_sinks; i++)
		if (cfg->sinks[i].group >= 0 &&
		    sc->groups[cfg->sinks[i].group].pending) {
			for (size_t j = 0; j < sc->n_sinks; j++)
				if (sc->which[j] && cfg->sinks[j].group ==
						    cfg->sinks[i].group)
					sc->which[i] = 1;
		}
	for (size_t i = 0; i < sc->n_sinks; i++)
		if (sc->which[i]) {
			if (cfg->sinks[i].group >= 0)
				sc->groups[cfg->sinks[i].group].pending = 0;
			else
				sc->sinks[i].pending = 0;
		}
	if (sc->n_failed > 0 && now >= sc->retry_at) {
		for (size_t i = 0; i < sc->n_sinks; i++)
			if (sc->failed[i])
				sc->which[i] = any = 1;
		sc->retry_every_s = sc->retry_every_s * 2 > RETRY_MAX_S ?
				    RETRY_MAX_S : sc->retry_every_s * 2;
		sc->retry_at = now + (double)sc->retry_every_s;
	}
	if (any)
		sched_apply(sc, rt, cfg);
}

/* Sinks with max_stale, applied again: removed if now too stale. */
static void sched_stale(struct sched *sc, ag_runtime *rt, const ag_config *cfg)
{
	int any = 0;

	memset(sc->which, 0, sc->n_sinks);
	for (size_t i = 0; i < sc->n_sinks; i++)
		if (cfg->sinks[i].max_stale_s > 0 && !sc->failed[i] &&
		    time(NULL) - ag_state_confirmed(rt->st) >
		    cfg->sinks[i].max_stale_s)
			sc->which[i] = any = 1;
	if (any)
		sched_apply(sc, rt, cfg);
}

/* The server answers again: sinks with max_stale are written back. */
static void sched_apply_stale(struct sched *sc, ag_runtime *rt,
			      const ag_config *cfg)
{
	int any = 0;

	memset(sc->which, 0, sc->n_sinks);
	for (size_t i = 0; i < sc->n_sinks; i++)
		if (cfg->sinks[i].max_stale_s > 0)
			sc->which[i] = any = 1;
	if (any)
		sched_apply(sc, rt, cfg);
}

/*
 * agent run: the refresh built-in, right after the fetch that brought
 * it: fetch again at once, then every sink brought up to date (and the
 * commands of those rewritten run), as at a SIGHUP.
 */
static void run_refresh(struct sched *sc, ag_runtime *rt, const ag_config *cfg)
{
	cf_error err = { 0 };
	char summary[CF_ERROR_MAX + 256];
	size_t accepted;
	cf_status rc;

	ag_log(AG_LOG_INFO, "refresh asked by an operator: syncing now");
	rc = ag_fetch_all(rt, &err);
	accepted = rt->n_changed;
	ack_unused(rt, cfg, rt->changed, rt->n_changed);
	ag_runtime_clear_changes(rt);
	sched_apply_all(sc, rt, cfg);
	ag_commands_refresh_done(rt->commands, refresh_summary(summary,
		sizeof(summary), rc, &err, accepted, cfg->n_sinks,
		sc->n_written, sc->n_failed), summary);
}

/* SIGHUP: the new config if it reads, else the old one (returns 0). */
static int reload_config(const struct run_opts *o, ag_config **cfg,
			 struct sched *sc, ag_runtime *rt)
{
	ag_config *fresh = NULL;
	cf_error err = { 0 };

	struct sched next = { 0 };

	if (ag_config_load(o->config, &fresh, &err) != CF_OK ||
	    sched_init(&next, fresh, &err) != CF_OK) {
		ag_log(AG_LOG_ERROR, "SIGHUP: %s; keeping the configuration "
		       "already loaded", err.msg);
		ag_config_free(fresh);
		return 0;
	}
	/* A command still owed (it failed) stays owed, by the sink's path. */
	for (size_t i = 0; i < next.n_sinks; i++)
		for (size_t j = 0; j < sc->n_sinks; j++)
			if (sc->rerun[j] && strcmp(fresh->sinks[i].path,
						   (*cfg)->sinks[j].path) == 0)
				next.rerun[i] = 1;
	sched_free(sc);
	*sc = next;
	ag_commands_set_config(rt->commands, fresh);
	ag_config_free(*cfg);
	*cfg = fresh;
	if (ag_status_config(rt->status, *cfg) != CF_OK)
		ag_log(AG_LOG_WARN, "out of memory updating status.json");
	ag_log(AG_LOG_INFO, "SIGHUP: reloaded %s (%zu sink(s))", o->config,
	       fresh->n_sinks);
	sched_apply_all(sc, rt, *cfg);
	return 1;
}

int ag_cmd_run(int argc, char **argv)
{
	struct run_opts o = { 0 };
	struct sched sc = { 0 };
	ag_config *cfg = NULL;
	ag_runtime *rt = NULL;
	cf_error err = { 0 };
	double backoff = BACKOFF_MIN_S;
	cf_status rc;
	int code = parse_run("run", argc, argv, &o);

	if (code >= 0)
		return code;
	install_signals();
	rc = start(&o, 1, &cfg, &rt, &err);
	if (rc == CF_OK)
		rc = sched_init(&sc, cfg, &err);
	if (rc != CF_OK) {
		code = cli_fail(&err);
		goto out;
	}
	ag_runtime_set_abort(rt, &wake);
	if (rt->client != NULL && wake_pipe[0] >= 0)
		cli_client_set_abort_fd(rt->client, wake_pipe[0]);
	ag_hook_set_abort(&got_stop);
	ag_log(AG_LOG_INFO, "started: state dir %s, %zu sink(s), %zu secret(s) "
	       "cached", o.state_dir, cfg->n_sinks, ag_state_count(rt->st));
	sched_apply_all(&sc, rt, cfg);
	while (!got_stop) {
		double asked = ag_mono_s(), next;
		int64_t cursor = ag_state_cursor(rt->st);
		long wait_s = cfg->wait_s;
		int more = 0;

		if (got_hup) {
			got_hup = 0;
			wake = got_stop;
			if (reload_config(&o, &cfg, &sc, rt))
				ag_runtime_clear_changes(rt);
			continue;
		}
		sched_due(&sc, rt, cfg);
		/* Something settles within a second: wait for it here, not in
		 * a long poll that counts in whole seconds.  Retries of failed
		 * sinks do not shorten the poll (they cost the server nothing):
		 * they run when it returns. */
		next = sched_next(&sc, cfg, 0);
		if (next < 1.0) {
			if (next > 0)
				nap(next);
			continue;
		}
		if (next < (double)wait_s)
			wait_s = (long)next;
		rc = CF_OK;
		/* Acknowledgements first: the server answered last time. */
		if (ag_acks_pending(rt) > 0 && !rt->contact_failed)
			(void)ag_acks_flush(rt, &err);
		if (time(NULL) - rt->crl_checked >= CRL_REFRESH_S)
			rc = ag_refresh_crl(rt, &err);
		if (rc == CF_OK)
			rc = ag_fetch(rt, wait_s, &more, &err);
		/*
		 * Whatever was accepted is applied (or starts settling), even
		 * when the request then failed, and stays pending until it
		 * was (a SIGHUP arriving first applies everything anyway).
		 */
		if (rt->n_changed > 0 && !got_stop && !got_hup) {
			ack_unused(rt, cfg, rt->changed, rt->n_changed);
			sched_changed(&sc, rt, cfg, rt->changed, rt->n_changed);
			ag_runtime_clear_changes(rt);
		}
		if (ag_commands_refresh_wanted(rt->commands) > 0 && !got_stop)
			run_refresh(&sc, rt, cfg);
		if (got_stop || got_hup)
			continue;
		if (rc != CF_OK) {
			double delay = ag_jittered(backoff);

			ag_log(rc == CF_ERR_NETWORK ? AG_LOG_WARN : AG_LOG_ERROR,
			       "%s; files stay as they are; retrying in %.1f s",
			       err.msg, delay);
			/* max_stale may now take a sink away. */
			sched_stale(&sc, rt, cfg);
			/* ... and a settling sink is not kept waiting. */
			next = sched_next(&sc, cfg, 0);
			nap(next < delay ? (next > 0 ? next : 0) : delay);
			backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S :
				  backoff * 2;
			continue;
		}
		if (backoff > BACKOFF_MIN_S) {
			ag_log(AG_LOG_INFO, "the server answers again");
			/* Sinks taken away for max_stale come back. */
			sched_apply_stale(&sc, rt, cfg);
		}
		backoff = BACKOFF_MIN_S;
		/*
		 * A server (or a proxy) that answers at once with nothing,
		 * though asked to wait, must not make us spin.
		 */
		if (!more && ag_state_cursor(rt->st) == cursor &&
		    ag_mono_s() - asked < 1.0)
			nap(ag_jittered(2.0));
	}
	ag_log(AG_LOG_INFO, "stopping");
	ag_status_stopped(rt->status);
	ag_report(rt);
	code = 0;
out:
	sched_free(&sc);
	ag_runtime_free(rt);
	ag_config_free(cfg);
	return code;
}
