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
 *
 * The loop sleeps in the long poll (the server holds the request until a
 * change or `wait` seconds), so an idle agent uses no CPU.
 */
#include "agent.h"

#include <errno.h>
#include <getopt.h>
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

int ag_stopping(void)
{
	return got_stop != 0;
}

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_stop = 1;
	wake = 1;
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

	while (slept < seconds && !wake) {
		nanosleep(&slice, NULL);
		slept += 0.2;
	}
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Full jitter: uniform in [backoff/2, backoff]. */
static double jittered(double backoff)
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

/* Config and runtime, the common start of run and once. */
static cf_status start(const struct run_opts *o, ag_config **cfg,
		       ag_runtime **rt, cf_error *err)
{
	cf_status rc;

	ag_log_set_level(o->level);
	ag_harden();
	rc = ag_config_load(o->config, cfg, err);
	if (rc == CF_OK)
		rc = ag_runtime_new(o->state_dir, (*cfg)->server_url,
				    (*cfg)->server_ca, (*cfg)->root, 0, rt, err);
	return rc;
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
	rc = start(&o, &cfg, &rt, &err);
	if (rc != CF_OK) {
		code = cli_fail(&err);
		goto out;
	}
	rc = ag_state_lock_run(rt->st, &err);
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
out:
	ag_runtime_free(rt);
	ag_config_free(cfg);
	return code;
}

/* SIGHUP: the new config if it reads, else the old one.  Returns the
 * number of sinks not up to date, or -1 when the old config stays. */
static long reload_config(const struct run_opts *o, ag_config **cfg,
			  ag_runtime *rt)
{
	ag_config *fresh = NULL;
	cf_error err = { 0 };

	if (ag_config_load(o->config, &fresh, &err) != CF_OK) {
		ag_log(AG_LOG_ERROR, "SIGHUP: %s; keeping the configuration "
		       "already loaded", err.msg);
		return -1;
	}
	ag_config_free(*cfg);
	*cfg = fresh;
	ag_log(AG_LOG_INFO, "SIGHUP: reloaded %s (%zu sink(s))", o->config,
	       fresh->n_sinks);
	return (long)ag_apply(rt, *cfg, NULL, 0, (*cfg)->reload_timeout_s);
}

/*
 * Sinks that could not be brought up to date (a directory not there yet,
 * a secret not put yet) are tried again, all of them, on this schedule:
 * 5 s, doubling to 5 minutes, reset once all are up to date.
 */
#define RETRY_MIN_S 5
#define RETRY_MAX_S 300

struct retry {
	size_t stale;           /* sinks not up to date after the last pass */
	time_t at;              /* when to try them again */
	long every_s;
};

static void retry_note(struct retry *r, size_t stale)
{
	r->stale = stale;
	if (stale == 0) {
		r->every_s = RETRY_MIN_S;
		return;
	}
	ag_log(AG_LOG_WARN, "%zu sink(s) not up to date; trying again in %ld s",
	       stale, r->every_s);
	r->at = time(NULL) + r->every_s;
	r->every_s = r->every_s * 2 > RETRY_MAX_S ? RETRY_MAX_S : r->every_s * 2;
}

int ag_cmd_run(int argc, char **argv)
{
	struct run_opts o = { 0 };
	struct retry retry = { .every_s = RETRY_MIN_S };
	ag_config *cfg = NULL;
	ag_runtime *rt = NULL;
	cf_error err = { 0 };
	double backoff = BACKOFF_MIN_S;
	cf_status rc;
	int code = parse_run("run", argc, argv, &o);

	if (code >= 0)
		return code;
	install_signals();
	rc = start(&o, &cfg, &rt, &err);
	if (rc == CF_OK)
		rc = ag_state_lock_run(rt->st, &err);
	if (rc != CF_OK) {
		code = cli_fail(&err);
		goto out;
	}
	ag_runtime_set_abort(rt, &wake);
	ag_hook_set_abort(&got_stop);
	ag_log(AG_LOG_INFO, "started: state dir %s, %zu sink(s), %zu secret(s) "
	       "cached", o.state_dir, cfg->n_sinks, ag_state_count(rt->st));
	retry_note(&retry, ag_apply(rt, cfg, NULL, 0, cfg->reload_timeout_s));
	while (!got_stop) {
		time_t asked = time(NULL);
		double asked_mono = mono_s();
		int64_t cursor = ag_state_cursor(rt->st);
		long wait_s = cfg->wait_s;
		int more = 0;

		if (got_hup) {
			long stale;

			got_hup = 0;
			wake = got_stop;
			stale = reload_config(&o, &cfg, rt);
			if (stale >= 0) {
				/* Every sink was applied: nothing is pending. */
				ag_runtime_clear_changes(rt);
				retry.every_s = RETRY_MIN_S;
				retry_note(&retry, (size_t)stale);
			}
			continue;
		}
		if (retry.stale > 0 && asked >= retry.at) {
			retry_note(&retry, ag_apply(rt, cfg, NULL, 0,
						    cfg->reload_timeout_s));
			if (retry.stale == 0)
				ag_log(AG_LOG_INFO, "all sinks are up to date");
		}
		/* Wake up in time for the next retry. */
		if (retry.stale > 0 && retry.at - asked < wait_s)
			wait_s = retry.at > asked ? (long)(retry.at - asked) : 1;
		rc = CF_OK;
		if (time(NULL) - rt->crl_checked >= CRL_REFRESH_S)
			rc = ag_refresh_crl(rt, &err);
		if (rc == CF_OK)
			rc = ag_fetch(rt, wait_s, &more, &err);
		/*
		 * Whatever was accepted is applied, even when the request
		 * then failed, and stays pending until it was (a SIGHUP
		 * arriving first applies everything anyway).
		 */
		if (rt->n_changed > 0 && !got_stop && !got_hup) {
			size_t stale = ag_apply(rt, cfg, rt->changed,
						rt->n_changed,
						cfg->reload_timeout_s);

			ag_runtime_clear_changes(rt);
			if (stale > 0 && retry.stale == 0)
				retry_note(&retry, stale);
		}
		if (got_stop || got_hup)
			continue;
		if (rc != CF_OK) {
			double delay = jittered(backoff);

			ag_log(rc == CF_ERR_NETWORK ? AG_LOG_WARN : AG_LOG_ERROR,
			       "%s; files stay as they are; retrying in %.1f s",
			       err.msg, delay);
			nap(delay);
			backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S :
				  backoff * 2;
			continue;
		}
		if (backoff > BACKOFF_MIN_S)
			ag_log(AG_LOG_INFO, "the server answers again");
		backoff = BACKOFF_MIN_S;
		/*
		 * A server (or a proxy) that answers at once with nothing,
		 * though asked to wait, must not make us spin.
		 */
		if (!more && ag_state_cursor(rt->st) == cursor &&
		    mono_s() - asked_mono < 1.0)
			nap(jittered(2.0));
	}
	ag_log(AG_LOG_INFO, "stopping");
	code = 0;
out:
	ag_runtime_free(rt);
	ag_config_free(cfg);
	return code;
}
