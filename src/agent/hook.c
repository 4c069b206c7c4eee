/*
 * hook.c - running reload commands and operators' actions (hook.h).
 *
 * fork + execv, never a shell and never a PATH search.  Between fork and
 * exec the child only makes async-signal-safe calls (the agent may have
 * threads: libcurl's resolver): it becomes the leader of a process group
 * of its own, takes /dev/null as standard input, puts every signal back
 * to its default disposition and unblocks them all (the agent blocks or
 * handles SIGTERM, SIGHUP, SIGCHLD; a reload command must not inherit
 * that), marks every descriptor above 2 close-on-exec, and execs.  An
 * exec failure travels back as errno through a close-on-exec pipe, so a
 * missing program is an error naming it, not an exit status 127.
 *
 * The parent waits on a pidfd with poll (no busy polling, no SIGCHLD
 * handler needed); on timeout it sends SIGTERM to the group, waits up to
 * KILL_GRACE_MS for the leader, then SIGKILL to the group (which also
 * catches members that outlived the leader), and reaps the leader.
 * On that path the leader is reaped only after the last signal to the
 * group, so its pid, which is the group id, cannot have been reused.
 * After a normal exit the group is left alone (what the command started
 * on purpose is its business).
 *
 * Stopping: the agent's SIGTERM handler sets the flag given to
 * ag_hook_set_abort.  poll is never restarted after a handler (whatever
 * SA_RESTART says), so the wait sees EINTR and checks the flag; a signal
 * landing between the check and poll is caught anyway because, while a
 * flag is watched, poll sleeps at most ABORT_CHECK_MS at a time.  The
 * command is then stopped like a timed-out one (SIGTERM, grace, SIGKILL);
 * the grace wait itself is not cut short by the flag.
 *
 * SIGCHLD: when the process ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT),
 * children are reaped by the kernel and their status is lost, so the
 * disposition is set to SIG_DFL for the duration of the call and then
 * restored.  A SIGCHLD handler is left alone, but it must not reap with
 * waitpid(-1, ...): that would steal the status of the hook (the call
 * then fails with CF_ERR_IO saying so).  A handler that only notes the
 * signal is fine; poll's EINTR is handled.
 */
#include "hook.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long the group gets between SIGTERM and SIGKILL. */
#define KILL_GRACE_MS 2000
/* Descriptors marked by hand when close_range is missing (Linux < 5.11). */
#define FD_SCAN_MAX 65536
/* The longest poll while an abort flag is watched (see the top). */
#define ABORT_CHECK_MS 250

/* What wait_exit saw. */
enum {
	WAIT_FAILED = -1,       /* poll failed, errno set */
	WAIT_TIMEOUT = 0,
	WAIT_EXITED = 1,
	WAIT_ABORTED = 2        /* the abort flag was set */
};

/* Set by ag_hook_set_abort; read by the thread running the hooks. */
static volatile sig_atomic_t *abort_flag;

void ag_hook_set_abort(volatile sig_atomic_t *flag)
{
	abort_flag = flag;
}

static int aborting(void)
{
	volatile sig_atomic_t *flag = abort_flag;

	return flag != NULL && *flag != 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits until the process behind pidfd has exited or deadline_ms (on
 * now_ms's clock) passed, or, when watch_abort, the abort flag is set.
 * Returns a WAIT_ value.
 */
static int wait_exit(int pidfd, int64_t deadline_ms, int watch_abort)
{
	struct pollfd pfd;
	int64_t left;
	int n;

	for (;;) {
		if (watch_abort && aborting())
			return WAIT_ABORTED;
		left = deadline_ms - now_ms();
		if (left < 0)
			left = 0;
		if (left > INT_MAX)
			left = INT_MAX;
		if (watch_abort && abort_flag != NULL && left > ABORT_CHECK_MS)
			left = ABORT_CHECK_MS;
		pfd.fd = pidfd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		n = poll(&pfd, 1, (int)left);
		if (n > 0)
			return WAIT_EXITED;
		if (n == 0 && now_ms() >= deadline_ms)
			return WAIT_TIMEOUT;
		if (n < 0 && errno != EINTR)
			return WAIT_FAILED;
	}
}

static pid_t reap(pid_t pid, int *wstatus)
{
	pid_t got;

	do {
		got = waitpid(pid, wstatus, 0);
	} while (got < 0 && errno == EINTR);
	return got;
}

/*
 * The child, from fork to exec: async-signal-safe calls only.  out_fd and
 * err_fd (-1: keep the agent's) become standard output and error; envp
 * NULL keeps the agent's environment.  The caller makes sure out_fd and
 * err_fd are above 2.
 */
static void child(char *const argv[], char *const envp[], int null_fd,
		  int out_fd, int err_fd, int report_fd)
{
	struct sigaction dfl;
	sigset_t none;
	struct rlimit lim;
	int fd, limit, err;

	setpgid(0, 0);
	/* dup2 clears close-on-exec; an agent started with fd 0 closed got
	 * /dev/null as fd 0 itself, which must then survive exec too. */
	if (null_fd != STDIN_FILENO) {
		if (dup2(null_fd, STDIN_FILENO) < 0)
			goto fail;
	} else if (fcntl(STDIN_FILENO, F_SETFD, 0) < 0) {
		goto fail;
	}
	if (out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) < 0)
		goto fail;
	if (err_fd >= 0 && dup2(err_fd, STDERR_FILENO) < 0)
		goto fail;
	/* Signals are all blocked here (the parent did it before fork). */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);  /* fails harmlessly on KILL, STOP */
	if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) != 0) {
		limit = FD_SCAN_MAX;
		if (getrlimit(RLIMIT_NOFILE, &lim) == 0 &&
		    lim.rlim_cur < (rlim_t)FD_SCAN_MAX)
			limit = (int)lim.rlim_cur;
		for (fd = 3; fd < limit; fd++)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (envp != NULL)
		execve(argv[0], argv, envp);
	else
		execv(argv[0], argv);
fail:
	err = errno;
	while (write(report_fd, &err, sizeof(err)) < 0 && errno == EINTR)
		;
	_exit(127);
}

cf_status ag_hook_run(char *const argv[], long timeout_s, int *status,
		      cf_error *err)
{
	struct sigaction chld_old, chld_dfl;
	sigset_t all, old_mask;
	int report[2] = { -1, -1 };
	int null_fd = -1, pidfd = -1, restore_chld = 0, exec_errno = 0;
	int wstatus = 0, exited, wait_errno;
	int64_t deadline_ms;
	pid_t pid = -1;
	ssize_t n;
	cf_status rc;

	if (status != NULL)
		*status = 0;
	if (argv == NULL || argv[0] == NULL || argv[0][0] != '/' ||
	    status == NULL || timeout_s <= 0) {
		rc = cf_error_set(err, CF_ERR_USAGE,
				  "reload command %s: it needs an absolute program path and a timeout above 0 s",
				  argv != NULL && argv[0] != NULL ? argv[0] : "(none)");
		goto out;
	}
	if (timeout_s > INT32_MAX / 1000)
		timeout_s = INT32_MAX / 1000;   /* ~24 days is "forever" */
	if (aborting()) {
		rc = cf_error_set(err, CF_ERR_TIMEOUT,
				  "reload command %s was not started (the agent is stopping)",
				  argv[0]);
		goto out;
	}

	/* The child's status must not vanish into automatic reaping. */
	if (sigaction(SIGCHLD, NULL, &chld_old) == 0 &&
	    (chld_old.sa_handler == SIG_IGN ||
	     (chld_old.sa_flags & SA_NOCLDWAIT) != 0)) {
		memset(&chld_dfl, 0, sizeof(chld_dfl));
		chld_dfl.sa_handler = SIG_DFL;
		sigemptyset(&chld_dfl.sa_mask);
		if (sigaction(SIGCHLD, &chld_dfl, NULL) == 0)
			restore_chld = 1;
	}

	do {
		null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	} while (null_fd < 0 && errno == EINTR);
	if (null_fd < 0) {
		rc = cf_error_set(err, CF_ERR_IO,
				  "reload command %s could not be started: opening /dev/null failed: %s",
				  argv[0], strerror(errno));
		goto out;
	}
	if (pipe2(report, O_CLOEXEC) != 0) {
		rc = cf_error_set(err, CF_ERR_IO,
				  "reload command %s could not be started: pipe failed: %s",
				  argv[0], strerror(errno));
		goto out;
	}

	/*
	 * No handler of the agent may run in the child before it has reset
	 * the dispositions: block everything across fork.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old_mask);
	pid = fork();
	if (pid == 0)
		child(argv, NULL, null_fd, -1, -1, report[1]);
	exec_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (pid < 0) {
		rc = cf_error_set(err, CF_ERR_IO,
				  "reload command %s could not be started: fork failed: %s",
				  argv[0], strerror(exec_errno));
		goto out;
	}
	/* Also here, so that kill(-pid) below can never miss the group. */
	setpgid(pid, pid);
	deadline_ms = now_ms() + (int64_t)timeout_s * 1000;
	close(report[1]);
	report[1] = -1;

	/* EOF: exec succeeded (the pipe closed on exec); an int: it failed. */
	do {
		n = read(report[0], &exec_errno, sizeof(exec_errno));
	} while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(exec_errno)) {
		reap(pid, &wstatus);
		pid = -1;
		rc = cf_error_set(err, CF_ERR_IO,
				  "reload command %s could not be started: %s",
				  argv[0], strerror(exec_errno));
		goto out;
	}

	pidfd = pidfd_open(pid, 0);
	if (pidfd < 0) {
		int saved = errno;

		kill(-pid, SIGKILL);
		if (reap(pid, &wstatus) == pid)
			*status = wstatus;
		pid = -1;
		rc = cf_error_set(err, CF_ERR_IO,
				  "reload command %s: cannot wait for it (pidfd_open failed: %s); coffer needs Linux 5.3 or later, and no SIGCHLD handler that reaps every child",
				  argv[0], strerror(saved));
		goto out;
	}
	exited = wait_exit(pidfd, deadline_ms, 1);
	wait_errno = errno;
	if (exited == WAIT_EXITED) {
		rc = CF_OK;
	} else {
		/*
		 * Timed out, the agent is stopping, or poll failed (which must
		 * not leave it running either).
		 */
		kill(-pid, SIGTERM);
		wait_exit(pidfd, now_ms() + KILL_GRACE_MS, 0);
		if (exited == WAIT_TIMEOUT)
			rc = cf_error_set(err, CF_ERR_TIMEOUT,
					  "reload command %s did not finish within %ld s; its process group was killed (SIGTERM, then SIGKILL after %d s)",
					  argv[0], timeout_s,
					  KILL_GRACE_MS / 1000);
		else if (exited == WAIT_ABORTED)
			rc = cf_error_set(err, CF_ERR_TIMEOUT,
					  "reload command %s interrupted (the agent is stopping); its process group was sent SIGTERM, then SIGKILL after %d s",
					  argv[0], KILL_GRACE_MS / 1000);
		else
			rc = cf_error_set(err, CF_ERR_IO,
					  "reload command %s: waiting for it failed: %s; it was killed",
					  argv[0], strerror(wait_errno));
	}
	if (exited != WAIT_EXITED)
		kill(-pid, SIGKILL);    /* members that outlived the leader */
	if (reap(pid, &wstatus) != pid) {
		if (rc == CF_OK)
			rc = cf_error_set(err, CF_ERR_IO,
					  "reload command %s: its exit status was taken by someone else (%s); the agent must not reap children in a SIGCHLD handler",
					  argv[0], strerror(errno));
	} else {
		*status = wstatus;
	}
	pid = -1;
out:
	if (pidfd >= 0)
		close(pidfd);
	if (report[0] >= 0)
		close(report[0]);
	if (report[1] >= 0)
		close(report[1]);
	if (null_fd >= 0)
		close(null_fd);
	if (restore_chld)
		sigaction(SIGCHLD, &chld_old, NULL);
	return rc;
}

/* ------------------------------------------------------------ capture */

/* After the leader exited: how long pipes still held open are read. */
#define CAPTURE_DRAIN_MS 1000
/* After the group was killed: how long its pipes get to close. */
#define CAPTURE_KILLED_DRAIN_MS 200
#define CAPTURE_CHUNK 16384

static int stop_asked(const ag_capture *cap)
{
	for (size_t i = 0; i < 2; i++)
		if (cap->stop[i] != NULL && *cap->stop[i] != 0)
			return 1;
	return 0;
}

/*
 * fd moved above 2 (still close-on-exec), so that the child's dup2 onto
 * standard output and error cannot overwrite one pipe with the other
 * when the agent was started with those closed.  -1 on failure.
 */
static int above_stdio(int fd)
{
	int moved;

	if (fd > STDERR_FILENO)
		return fd;
	moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
	close(fd);
	return moved;
}

/*
 * Reads what *fd has into buf (max bytes, *len used so far); beyond max
 * the bytes are dropped and *cut set.  At end of file or on an error the
 * descriptor is closed and *fd set to -1.
 */
static void drain_pipe(int *fd, unsigned char *buf, size_t *len, size_t max,
		       int *cut)
{
	unsigned char chunk[CAPTURE_CHUNK];

	for (;;) {
		ssize_t n = read(*fd, chunk, sizeof(chunk));

		if (n > 0) {
			size_t room = max - *len;
			size_t take = (size_t)n < room ? (size_t)n : room;

			memcpy(buf + *len, chunk, take);
			*len += take;
			if (take < (size_t)n)
				*cut = 1;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		close(*fd);
		*fd = -1;
		break;
	}
	OPENSSL_cleanse(chunk, sizeof(chunk));
}

void ag_capture_clear(ag_capture *cap)
{
	if (cap == NULL)
		return;
	/* Only the bytes written need wiping (the buffers may be larger). */
	OPENSSL_clear_free(cap->out, cap->out_len);
	OPENSSL_clear_free(cap->err, cap->err_len);
	cap->out = cap->err = NULL;
	cap->out_len = cap->err_len = 0;
	cap->out_cut = cap->err_cut = 0;
}

cf_status ag_hook_capture(ag_capture *cap, cf_error *err)
{
	static char *const no_env[] = { NULL };
	sigset_t all, old_mask;
	int report[2] = { -1, -1 }, out_pipe[2] = { -1, -1 };
	int err_pipe[2] = { -1, -1 };
	int null_fd = -1, pidfd = -1, exec_errno = 0, wstatus = 0;
	int exited = 0, killing = 0;
	int64_t start_ms = 0, deadline_ms, kill_deadline_ms = 0, drain_deadline_ms = 0;
	pid_t pid = -1;
	ssize_t n;
	cf_status rc = CF_OK;

	if (cap == NULL || cap->argv == NULL || cap->argv[0] == NULL ||
	    cap->argv[0][0] != '/' || cap->timeout_ms <= 0 ||
	    cap->grace_ms < 0)
		return cf_error_set(err, CF_ERR_USAGE, "an action needs an "
				    "absolute program path and a timeout above 0");
	ag_capture_clear(cap);
	cap->wstatus = 0;
	cap->timed_out = cap->stopped = 0;
	cap->ran_s = 0;
	if (stop_asked(cap))
		return cf_error_set(err, CF_ERR_TIMEOUT, "%s was not started "
				    "(the agent is stopping)", cap->argv[0]);
	cap->out = OPENSSL_malloc(cap->max_bytes + 1);
	cap->err = OPENSSL_malloc(cap->max_bytes + 1);
	if (cap->out == NULL || cap->err == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory running %s",
				  cap->argv[0]);
		goto out;
	}
	do {
		null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	} while (null_fd < 0 && errno == EINTR);
	if (null_fd < 0 || pipe2(report, O_CLOEXEC) != 0 ||
	    pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0 ||
	    (out_pipe[1] = above_stdio(out_pipe[1])) < 0 ||
	    (err_pipe[1] = above_stdio(err_pipe[1])) < 0 ||
	    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK) != 0 ||
	    fcntl(err_pipe[0], F_SETFL, O_NONBLOCK) != 0) {
		rc = cf_error_set(err, CF_ERR_IO, "%s could not be started: "
				  "making its pipes failed: %s", cap->argv[0],
				  strerror(errno));
		goto out;
	}

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old_mask);
	pid = fork();
	if (pid == 0)
		child(cap->argv, cap->envp != NULL ? cap->envp : no_env,
		      null_fd, out_pipe[1], err_pipe[1], report[1]);
	exec_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (pid < 0) {
		rc = cf_error_set(err, CF_ERR_IO, "%s could not be started: "
				  "fork failed: %s", cap->argv[0],
				  strerror(exec_errno));
		goto out;
	}
	start_ms = now_ms();
	setpgid(pid, pid);
	close(report[1]);
	close(out_pipe[1]);
	close(err_pipe[1]);
	report[1] = out_pipe[1] = err_pipe[1] = -1;
	do {
		n = read(report[0], &exec_errno, sizeof(exec_errno));
	} while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(exec_errno)) {
		reap(pid, &wstatus);
		pid = -1;
		rc = cf_error_set(err, CF_ERR_IO, "%s could not be started: %s",
				  cap->argv[0], strerror(exec_errno));
		goto out;
	}
	pidfd = pidfd_open(pid, 0);
	if (pidfd < 0) {
		int saved = errno;

		kill(-pid, SIGKILL);
		reap(pid, &wstatus);
		pid = -1;
		rc = cf_error_set(err, CF_ERR_IO, "%s: cannot wait for it "
				  "(pidfd_open failed: %s); coffer needs Linux "
				  "5.3 or later", cap->argv[0], strerror(saved));
		goto out;
	}

	deadline_ms = start_ms + cap->timeout_ms;
	for (;;) {
		struct pollfd pfd[3];
		int nfds = 0, i_pid = -1, i_out = -1, i_err = -1, got;
		int64_t now = now_ms(), wait_ms;

		if (!exited) {
			pfd[nfds] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
			i_pid = nfds++;
		}
		if (out_pipe[0] >= 0) {
			pfd[nfds] = (struct pollfd){ .fd = out_pipe[0],
						     .events = POLLIN };
			i_out = nfds++;
		}
		if (err_pipe[0] >= 0) {
			pfd[nfds] = (struct pollfd){ .fd = err_pipe[0],
						     .events = POLLIN };
			i_err = nfds++;
		}
		if (nfds == 0)
			break;          /* exited, and both pipes closed */
		if (exited) {
			if (now >= drain_deadline_ms)
				break;  /* something it started holds them */
			wait_ms = drain_deadline_ms - now;
		} else if (killing) {
			if (now >= kill_deadline_ms)
				break;  /* the grace is over: SIGKILL below */
			wait_ms = kill_deadline_ms - now;
		} else if (stop_asked(cap) || now >= deadline_ms) {
			if (now >= deadline_ms)
				cap->timed_out = 1;
			else
				cap->stopped = 1;
			kill(-pid, SIGTERM);
			killing = 1;
			kill_deadline_ms = now + cap->grace_ms;
			continue;
		} else {
			wait_ms = deadline_ms - now;
			if ((cap->stop[0] != NULL || cap->stop[1] != NULL) &&
			    wait_ms > ABORT_CHECK_MS)
				wait_ms = ABORT_CHECK_MS;
		}
		if (wait_ms > INT_MAX)
			wait_ms = INT_MAX;
		got = poll(pfd, (nfds_t)nfds, (int)wait_ms);
		if (got < 0 && errno != EINTR) {
			rc = cf_error_set(err, CF_ERR_IO, "%s: waiting for it "
					  "failed: %s; it was killed",
					  cap->argv[0], strerror(errno));
			killing = 1;
			break;
		}
		if (got <= 0)
			continue;
		if (i_pid >= 0 && pfd[i_pid].revents != 0) {
			exited = 1;
			drain_deadline_ms = now_ms() + CAPTURE_DRAIN_MS;
		}
		if (i_out >= 0 && pfd[i_out].revents != 0)
			drain_pipe(&out_pipe[0], cap->out, &cap->out_len,
				   cap->max_bytes, &cap->out_cut);
		if (i_err >= 0 && pfd[i_err].revents != 0)
			drain_pipe(&err_pipe[0], cap->err, &cap->err_len,
				   cap->max_bytes, &cap->err_cut);
	}
	/*
	 * Killed for time, for a stop, or because waiting failed: the whole
	 * group goes, members that outlived the leader included.  The leader
	 * is not reaped yet, so its pid (the group's id) is still ours.
	 */
	if (killing) {
		int64_t until = now_ms() + CAPTURE_KILLED_DRAIN_MS;

		kill(-pid, SIGKILL);
		while ((out_pipe[0] >= 0 || err_pipe[0] >= 0) &&
		       now_ms() < until) {
			struct pollfd pfd[2];
			int nfds = 0;

			if (out_pipe[0] >= 0)
				pfd[nfds++] = (struct pollfd){ .fd = out_pipe[0],
							       .events = POLLIN };
			if (err_pipe[0] >= 0)
				pfd[nfds++] = (struct pollfd){ .fd = err_pipe[0],
							       .events = POLLIN };
			if (poll(pfd, (nfds_t)nfds, (int)(until - now_ms())) <= 0)
				break;
			if (out_pipe[0] >= 0)
				drain_pipe(&out_pipe[0], cap->out, &cap->out_len,
					   cap->max_bytes, &cap->out_cut);
			if (err_pipe[0] >= 0)
				drain_pipe(&err_pipe[0], cap->err, &cap->err_len,
					   cap->max_bytes, &cap->err_cut);
		}
	}
	if (reap(pid, &wstatus) != pid) {
		if (rc == CF_OK)
			rc = cf_error_set(err, CF_ERR_IO, "%s: its exit status "
					  "was taken by someone else (%s)",
					  cap->argv[0], strerror(errno));
	} else {
		cap->wstatus = wstatus;
	}
	pid = -1;
	cap->ran_s = (double)(now_ms() - start_ms) / 1000.0;
out:
	if (pidfd >= 0)
		close(pidfd);
	for (size_t i = 0; i < 2; i++) {
		if (report[i] >= 0)
			close(report[i]);
		if (out_pipe[i] >= 0)
			close(out_pipe[i]);
		if (err_pipe[i] >= 0)
			close(err_pipe[i]);
	}
	if (null_fd >= 0)
		close(null_fd);
	if (rc != CF_OK && rc != CF_ERR_IO)
		ag_capture_clear(cap);
	return rc;
}
