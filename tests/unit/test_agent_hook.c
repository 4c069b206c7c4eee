/*
 * test_agent_hook.c - reload commands (hook.h).
 *
 * A reload command runs without a shell, with /dev/null as input, none
 * of the agent's descriptors, default signal dispositions and an empty
 * signal mask; its exit status comes back; a program that cannot start
 * is an error naming it; and a command over its timeout dies with its
 * whole process group, grandchildren included, as does one running when
 * the agent is told to stop (the flag of ag_hook_set_abort), which also
 * keeps commands from starting at all.
 */
#include "fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hook.h"

typedef struct fixture {
	char dir[256];
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/coffer-hook-XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	fx_remove_tree(f->dir);
	free(f);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs /bin/sh -c script with timeout_s; the returned status is the call's. */
static cf_status run_sh(const char *script, long timeout_s, int *wstatus,
			cf_error *err)
{
	char *argv[] = { "/bin/sh", "-c", (char *)script, NULL };

	return ag_hook_run(argv, timeout_s, wstatus, err);
}

/*
 * Runs argv with its standard output going to a file, read back into out
 * (NUL-terminated).
 */
static cf_status run_captured(const fixture *f, char *const argv[],
			      int *wstatus, char *out, size_t size,
			      cf_error *err)
{
	char path[PATH_MAX];
	int saved, fd;
	ssize_t n;
	cf_status rc;

	snprintf(path, sizeof(path), "%s/stdout", f->dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDOUT_FILENO) == STDOUT_FILENO);
	rc = ag_hook_run(argv, 10, wstatus, err);
	assert_true(dup2(saved, STDOUT_FILENO) == STDOUT_FILENO);
	close(saved);
	n = pread(fd, out, size - 1, 0);
	assert_true(n >= 0);
	out[n] = '\0';
	close(fd);
	return rc;
}

static cf_status run_sh_captured(const fixture *f, const char *script,
				 int *wstatus, char *out, size_t size,
				 cf_error *err)
{
	char *argv[] = { "/bin/sh", "-c", (char *)script, NULL };

	return run_captured(f, argv, wstatus, out, size, err);
}

static void true_exits_zero(void **state)
{
	char *argv[] = { "/bin/true", NULL };
	cf_error err = { 0 };
	int wstatus = -1;

	(void)state;
	assert_status(CF_OK, ag_hook_run(argv, 5, &wstatus, &err), &err);
	assert_true(WIFEXITED(wstatus));
	assert_int_equal(WEXITSTATUS(wstatus), 0);
}

static void exit_status_comes_back(void **state)
{
	cf_error err = { 0 };
	int wstatus = -1;

	(void)state;
	assert_status(CF_OK, run_sh("exit 3", 5, &wstatus, &err), &err);
	assert_true(WIFEXITED(wstatus));
	assert_int_equal(WEXITSTATUS(wstatus), 3);
	/* A death by signal is reported as such, and still CF_OK. */
	assert_status(CF_OK, run_sh("kill -USR1 $$", 5, &wstatus, &err), &err);
	assert_true(WIFSIGNALED(wstatus));
	assert_int_equal(WTERMSIG(wstatus), SIGUSR1);
}

static void missing_program_is_an_io_error(void **state)
{
	const fixture *f = *state;
	char *missing[] = { "/nonexistent/coffer-reload", "arg", NULL };
	char plain[PATH_MAX];
	char *not_exec[] = { plain, NULL };
	cf_error err = { 0 };
	int wstatus = -1, fd;

	assert_status(CF_ERR_IO, ag_hook_run(missing, 5, &wstatus, &err), &err);
	assert_non_null(strstr(err.msg, "/nonexistent/coffer-reload"));
	assert_non_null(strstr(err.msg, "could not be started"));
	assert_non_null(strstr(err.msg, strerror(ENOENT)));

	/* A file without the execute bit. */
	snprintf(plain, sizeof(plain), "%s/plain", f->dir);
	fd = open(plain, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "#!/bin/sh\n", 10), 10);
	close(fd);
	assert_status(CF_ERR_IO, ag_hook_run(not_exec, 5, &wstatus, &err), &err);
	assert_non_null(strstr(err.msg, plain));
	assert_non_null(strstr(err.msg, strerror(EACCES)));
}

static void bad_arguments_refused(void **state)
{
	char *relative[] = { "true", NULL };
	char *none[] = { NULL };
	char *ok[] = { "/bin/true", NULL };
	cf_error err = { 0 };
	int wstatus = -1;

	(void)state;
	/* No PATH search: a bare name is refused, not looked up. */
	assert_status(CF_ERR_USAGE, ag_hook_run(relative, 5, &wstatus, &err),
		      &err);
	assert_status(CF_ERR_USAGE, ag_hook_run(none, 5, &wstatus, &err), &err);
	assert_status(CF_ERR_USAGE, ag_hook_run(NULL, 5, &wstatus, &err), &err);
	assert_status(CF_ERR_USAGE, ag_hook_run(ok, 0, &wstatus, &err), &err);
	assert_status(CF_ERR_USAGE, ag_hook_run(ok, 5, NULL, &err), &err);
}

/* A process is gone when kill fails or only its zombie is left. */
static int gone(pid_t pid)
{
	char path[64], stat_line[256];
	const char *close_paren;
	FILE *fp;
	int zombie = 0;

	if (kill(pid, 0) != 0)
		return errno == ESRCH;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return 1;
	if (fgets(stat_line, sizeof(stat_line), fp) != NULL) {
		close_paren = strrchr(stat_line, ')');
		zombie = close_paren != NULL && close_paren[1] == ' ' &&
			 (close_paren[2] == 'Z' || close_paren[2] == 'X');
	}
	fclose(fp);
	return zombie;
}

/* Waits up to a second for a killed process's parent to reap it. */
static int gone_soon(pid_t pid)
{
	struct timespec step = { 0, 20 * 1000 * 1000 };

	for (int i = 0; i < 50; i++) {
		if (gone(pid))
			return 1;
		nanosleep(&step, NULL);
	}
	return 0;
}

static void timeout_kills_the_whole_group(void **state)
{
	const fixture *f = *state;
	char script[PATH_MAX + 128], pids_path[PATH_MAX];
	cf_error err = { 0 };
	long shell_pid = 0, grandchild_pid = 0;
	int wstatus = -1;
	double start, took;
	FILE *fp;

	snprintf(pids_path, sizeof(pids_path), "%s/pids", f->dir);
	snprintf(script, sizeof(script),
		 "sleep 30 & echo $$ $! > '%s'; sleep 30", pids_path);
	start = now_s();
	assert_status(CF_ERR_TIMEOUT, run_sh(script, 1, &wstatus, &err), &err);
	took = now_s() - start;
	if (took < 0.9 || took > 4.0)
		fail_msg("the timeout of 1 s took %.2f s", took);
	assert_non_null(strstr(err.msg, "/bin/sh"));
	assert_non_null(strstr(err.msg, "1 s"));
	assert_true(WIFSIGNALED(wstatus));

	fp = fopen(pids_path, "r");
	assert_non_null(fp);
	assert_int_equal(fscanf(fp, "%ld %ld", &shell_pid, &grandchild_pid), 2);
	fclose(fp);
	assert_true(shell_pid > 1 && grandchild_pid > 1);
	assert_true(gone(shell_pid));
	if (!gone_soon(grandchild_pid))
		fail_msg("the grandchild %ld outlived the timeout", grandchild_pid);
}

/* A command that ignores SIGTERM gets SIGKILL 2 s later. */
static void sigterm_ignored_then_sigkill(void **state)
{
	const fixture *f = *state;
	char script[PATH_MAX + 128], pids_path[PATH_MAX];
	cf_error err = { 0 };
	long shell_pid = 0, child_pid = 0;
	int wstatus = -1;
	double start, took;
	FILE *fp;

	snprintf(pids_path, sizeof(pids_path), "%s/pids", f->dir);
	snprintf(script, sizeof(script),
		 "trap '' TERM; sleep 30 & echo $$ $! > '%s'; wait; sleep 30",
		 pids_path);
	start = now_s();
	assert_status(CF_ERR_TIMEOUT, run_sh(script, 1, &wstatus, &err), &err);
	took = now_s() - start;
	if (took < 2.9 || took > 5.0)
		fail_msg("timeout 1 s + grace 2 s took %.2f s", took);
	assert_true(WIFSIGNALED(wstatus));
	assert_int_equal(WTERMSIG(wstatus), SIGKILL);
	fp = fopen(pids_path, "r");
	assert_non_null(fp);
	assert_int_equal(fscanf(fp, "%ld %ld", &shell_pid, &child_pid), 2);
	fclose(fp);
	assert_true(gone(shell_pid));
	if (!gone_soon(child_pid))
		fail_msg("the child %ld outlived the SIGKILL", child_pid);
}

static void stdin_is_at_eof(void **state)
{
	const fixture *f = *state;
	char out[256];
	cf_error err = { 0 };
	int in[2], saved, wstatus = -1;
	cf_status rc;

	/* Our own standard input has data; the command must not see it. */
	assert_int_equal(pipe(in), 0);
	assert_int_equal(write(in[1], "leak\n", 5), 5);
	close(in[1]);
	saved = dup(STDIN_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(in[0], STDIN_FILENO) == STDIN_FILENO);
	close(in[0]);
	rc = run_sh_captured(f, "cat; echo END", &wstatus, out, sizeof(out),
			     &err);
	assert_true(dup2(saved, STDIN_FILENO) == STDIN_FILENO);
	close(saved);
	assert_status(CF_OK, rc, &err);
	assert_true(WIFEXITED(wstatus));
	assert_string_equal(out, "END\n");
}

static void parent_fds_not_inherited(void **state)
{
	const fixture *f = *state;
	char out[512];
	cf_error err = { 0 };
	int low, high, wstatus = -1;
	char *line, *save = NULL;

	/* Descriptors without O_CLOEXEC, as a careless library would leave. */
	low = open("/dev/null", O_RDONLY);
	assert_true(low >= 0);
	high = dup2(low, 77);
	assert_int_equal(high, 77);
	/* The shell's own glob may open the directory as fd 3; nothing above. */
	assert_status(CF_OK, run_sh_captured(f,
		      "for p in /proc/$$/fd/*; do echo \"${p##*/}\"; done",
		      &wstatus, out, sizeof(out), &err), &err);
	close(high);
	close(low);
	assert_true(WIFEXITED(wstatus));
	assert_non_null(strstr(out, "0\n1\n2\n"));
	for (line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		if (strtol(line, NULL, 10) > 3)
			fail_msg("the command inherited fd %s (leaked: %d, %d)",
				 line, low, high);
}

/*
 * The agent blocks SIGTERM and ignores SIGHUP and SIGPIPE; the command
 * must start with nothing blocked and nothing ignored.
 */
static void signals_reset_for_the_command(void **state)
{
	const fixture *f = *state;
	struct sigaction ign = { 0 }, old_hup, old_pipe;
	sigset_t block, old_mask;
	char out[512];
	cf_error err = { 0 };
	int wstatus = -1, term_status = -1;
	cf_status rc, rc_out;

	ign.sa_handler = SIG_IGN;
	assert_int_equal(sigaction(SIGHUP, &ign, &old_hup), 0);
	assert_int_equal(sigaction(SIGPIPE, &ign, &old_pipe), 0);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGUSR2);
	assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old_mask), 0);

	/* A blocked SIGTERM would let the shell survive and exit 0. */
	rc = run_sh("kill -TERM $$; exit 0", 5, &term_status, &err);
	rc_out = run_sh_captured(f, "exec grep -E '^Sig(Blk|Ign)' /proc/self/status",
				 &wstatus, out, sizeof(out), &err);

	assert_int_equal(sigprocmask(SIG_SETMASK, &old_mask, NULL), 0);
	assert_int_equal(sigaction(SIGHUP, &old_hup, NULL), 0);
	assert_int_equal(sigaction(SIGPIPE, &old_pipe, NULL), 0);
	assert_int_equal(rc, CF_OK);
	assert_int_equal(rc_out, CF_OK);
	assert_non_null(strstr(out, "SigBlk:\t0000000000000000\n"));
	assert_non_null(strstr(out, "SigIgn:\t0000000000000000\n"));
	assert_true(WIFSIGNALED(term_status));
	assert_int_equal(WTERMSIG(term_status), SIGTERM);
}

/* With SIGCHLD ignored, the kernel would reap the command and lose its status. */
static void status_survives_ignored_sigchld(void **state)
{
	struct sigaction ign = { 0 }, old, now;
	cf_error err = { 0 };
	int wstatus = -1;
	cf_status rc;

	(void)state;
	ign.sa_handler = SIG_IGN;
	assert_int_equal(sigaction(SIGCHLD, &ign, &old), 0);
	rc = run_sh("exit 5", 5, &wstatus, &err);
	assert_int_equal(sigaction(SIGCHLD, &old, &now), 0);
	assert_status(CF_OK, rc, &err);
	assert_true(WIFEXITED(wstatus));
	assert_int_equal(WEXITSTATUS(wstatus), 5);
	/* And the agent's disposition is put back. */
	assert_true(now.sa_handler == SIG_IGN);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

/*
 * Signals arriving all the time (no SA_RESTART) must neither end the
 * wait early nor make it fail: the command's 0.5 s are waited for.
 */
static void interrupted_wait_carries_on(void **state)
{
	struct sigaction on = { 0 }, old;
	struct itimerval every = { { 0, 10000 }, { 0, 10000 } }, off = { 0 };
	cf_error err = { 0 };
	int wstatus = -1;
	double start, took;
	cf_status rc;

	(void)state;
	on.sa_handler = on_alarm;
	sigemptyset(&on.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &on, &old), 0);
	alarms = 0;
	assert_int_equal(setitimer(ITIMER_REAL, &every, NULL), 0);
	start = now_s();
	rc = run_sh("sleep 0.5; exit 4", 5, &wstatus, &err);
	took = now_s() - start;
	assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
	assert_int_equal(sigaction(SIGALRM, &old, NULL), 0);
	assert_status(CF_OK, rc, &err);
	assert_true(WIFEXITED(wstatus));
	assert_int_equal(WEXITSTATUS(wstatus), 4);
	assert_true(alarms > 5);
	if (took < 0.45 || took > 3.0)
		fail_msg("a 0.5 s command took %.2f s", took);
}

static volatile sig_atomic_t stop_flag;

static void on_stop_alarm(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/*
 * 1 when no live process is left in group pgid.  Zombies do not count:
 * orphans go to PID 1, which need not reap them at once (in containers
 * it often does not), and kill(-pgid, 0) still finds them.
 */
static int group_gone(pid_t pgid)
{
	char path[64], line[512];
	const char *close_paren;
	struct dirent *e;
	DIR *proc;
	FILE *fp;
	long pgrp;
	char st;
	int alive = 0;

	if (kill(-pgid, 0) != 0 && errno == ESRCH)
		return 1;
	proc = opendir("/proc");
	assert_non_null(proc);
	while (!alive && (e = readdir(proc)) != NULL) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%.20s/stat", e->d_name);
		fp = fopen(path, "r");
		if (fp == NULL)
			continue;
		if (fgets(line, sizeof(line), fp) != NULL &&
		    (close_paren = strrchr(line, ')')) != NULL &&
		    sscanf(close_paren + 1, " %c %*d %ld", &st, &pgrp) == 2 &&
		    pgrp == (long)pgid && st != 'Z' && st != 'X')
			alive = 1;
		fclose(fp);
	}
	closedir(proc);
	return !alive;
}

/* Waits up to a second for every member of process group pgid to go. */
static int group_gone_soon(pid_t pgid)
{
	struct timespec step = { 0, 20 * 1000 * 1000 };

	for (int i = 0; i < 50; i++) {
		if (group_gone(pgid))
			return 1;
		nanosleep(&step, NULL);
	}
	return 0;
}

/*
 * Runs "sleep 30 & ...; sleep 30" with a 60 s timeout while something
 * sets stop_flag 0.3 s in; fails unless the call ends within 3 s with
 * CF_ERR_TIMEOUT, "interrupted", the shell killed by SIGTERM and the
 * whole process group gone.
 */
static void assert_stopped_early(const fixture *f, void (*arm)(void),
				 void (*disarm)(void))
{
	char script[PATH_MAX + 128], pids_path[PATH_MAX];
	cf_error err = { 0 };
	long shell_pid = 0, grandchild_pid = 0;
	int wstatus = -1;
	double start, took;
	cf_status rc;
	FILE *fp;

	snprintf(pids_path, sizeof(pids_path), "%s/pids", f->dir);
	snprintf(script, sizeof(script),
		 "sleep 30 & echo $$ $! > '%s'; sleep 30", pids_path);
	stop_flag = 0;
	ag_hook_set_abort(&stop_flag);
	arm();
	start = now_s();
	rc = run_sh(script, 60, &wstatus, &err);
	took = now_s() - start;
	disarm();
	ag_hook_set_abort(NULL);

	if (rc != CF_ERR_TIMEOUT)
		fail_msg("got %s, want CF_ERR_TIMEOUT (%s)", cf_status_name(rc),
			 err.msg);
	assert_int_equal(stop_flag, 1);
	if (took < 0.25 || took > 3.0)
		fail_msg("stopping a command 0.3 s in took %.2f s", took);
	assert_non_null(strstr(err.msg,
		"reload command /bin/sh interrupted (the agent is stopping)"));
	assert_true(WIFSIGNALED(wstatus));
	assert_int_equal(WTERMSIG(wstatus), SIGTERM);
	fp = fopen(pids_path, "r");
	assert_non_null(fp);
	assert_int_equal(fscanf(fp, "%ld %ld", &shell_pid, &grandchild_pid), 2);
	fclose(fp);
	assert_true(shell_pid > 1 && grandchild_pid > 1);
	assert_true(gone(shell_pid));
	if (!gone_soon(grandchild_pid))
		fail_msg("the grandchild %ld outlived the stop", grandchild_pid);
	if (!group_gone_soon((pid_t)shell_pid))
		fail_msg("process group %ld outlived the stop", shell_pid);
}

static struct sigaction saved_alarm;

static void arm_alarm(void)
{
	struct sigaction on = { 0 };
	struct itimerval once = { { 0, 0 }, { 0, 300000 } };

	/* Like the agent's SIGTERM handler: no SA_RESTART. */
	on.sa_handler = on_stop_alarm;
	sigemptyset(&on.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &on, &saved_alarm), 0);
	assert_int_equal(setitimer(ITIMER_REAL, &once, NULL), 0);
}

static void disarm_alarm(void)
{
	struct itimerval off = { 0 };

	assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
	assert_int_equal(sigaction(SIGALRM, &saved_alarm, NULL), 0);
}

/* The agent's SIGTERM lands while a reload runs: the reload is stopped. */
static void stop_signal_ends_a_running_command(void **state)
{
	assert_stopped_early(*state, arm_alarm, disarm_alarm);
}

static pthread_t setter;

static void *set_flag_later(void *arg)
{
	struct timespec pause = { 0, 300 * 1000 * 1000 };

	(void)arg;
	nanosleep(&pause, NULL);
	stop_flag = 1;
	return NULL;
}

static void arm_thread(void)
{
	assert_int_equal(pthread_create(&setter, NULL, set_flag_later, NULL),
			 0);
}

static void disarm_thread(void)
{
	assert_int_equal(pthread_join(setter, NULL), 0);
}

/*
 * The flag set with no signal interrupting the wait (as when the signal
 * lands just before poll is entered): still honoured within the check
 * interval, not at the 60 s timeout.
 */
static void stop_flag_seen_without_an_interrupt(void **state)
{
	assert_stopped_early(*state, arm_thread, disarm_thread);
}

/*
 * A watched flag that is not set changes nothing; once it is set, no
 * command starts.
 */
static void stop_flag_keeps_commands_from_starting(void **state)
{
	const fixture *f = *state;
	char script[PATH_MAX + 64], marker[PATH_MAX];
	cf_error err = { 0 };
	int wstatus = -1;
	double start;
	cf_status rc, rc_set;

	snprintf(marker, sizeof(marker), "%s/ran", f->dir);
	snprintf(script, sizeof(script), ": > '%s'; exit 4", marker);
	stop_flag = 0;
	ag_hook_set_abort(&stop_flag);
	rc = run_sh(script, 60, &wstatus, &err);
	assert_int_equal(rc, CF_OK);
	assert_true(WIFEXITED(wstatus));
	assert_int_equal(WEXITSTATUS(wstatus), 4);
	assert_int_equal(unlink(marker), 0);

	stop_flag = 1;
	wstatus = -1;
	start = now_s();
	rc_set = run_sh(script, 60, &wstatus, &err);
	ag_hook_set_abort(NULL);
	stop_flag = 0;
	if (rc_set != CF_ERR_TIMEOUT)
		fail_msg("got %s, want CF_ERR_TIMEOUT (%s)",
			 cf_status_name(rc_set), err.msg);
	assert_true(now_s() - start < 1.0);
	assert_non_null(strstr(err.msg, "/bin/sh"));
	assert_non_null(strstr(err.msg, "not started (the agent is stopping)"));
	assert_int_equal(wstatus, 0);
	assert_int_equal(access(marker, F_OK), -1);
}

/* argv goes to the program as is: no shell word splitting, no globbing. */
static void argv_passed_verbatim(void **state)
{
	const fixture *f = *state;
	char *argv[] = { "/usr/bin/printf", "%s|", "* $HOME ;x", "a  b", "",
			 NULL };
	char out[256];
	cf_error err = { 0 };
	int wstatus = -1;

	assert_status(CF_OK, run_captured(f, argv, &wstatus, out, sizeof(out),
					  &err), &err);
	assert_true(WIFEXITED(wstatus));
	assert_int_equal(WEXITSTATUS(wstatus), 0);
	assert_string_equal(out, "* $HOME ;x|a  b||");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(true_exits_zero),
		cmocka_unit_test(exit_status_comes_back),
		cmocka_unit_test_setup_teardown(missing_program_is_an_io_error,
						setup, teardown),
		cmocka_unit_test(bad_arguments_refused),
		cmocka_unit_test_setup_teardown(timeout_kills_the_whole_group,
						setup, teardown),
		cmocka_unit_test_setup_teardown(sigterm_ignored_then_sigkill,
						setup, teardown),
		cmocka_unit_test_setup_teardown(stdin_is_at_eof,
						setup, teardown),
		cmocka_unit_test_setup_teardown(parent_fds_not_inherited,
						setup, teardown),
		cmocka_unit_test_setup_teardown(signals_reset_for_the_command,
						setup, teardown),
		cmocka_unit_test(status_survives_ignored_sigchld),
		cmocka_unit_test(interrupted_wait_carries_on),
		cmocka_unit_test_setup_teardown(stop_signal_ends_a_running_command,
						setup, teardown),
		cmocka_unit_test_setup_teardown(stop_flag_seen_without_an_interrupt,
						setup, teardown),
		cmocka_unit_test_setup_teardown(stop_flag_keeps_commands_from_starting,
						setup, teardown),
		cmocka_unit_test_setup_teardown(argv_passed_verbatim,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, fx_group_setup, NULL);
}
