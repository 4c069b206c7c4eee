/*
 * hook.h - running reload commands (docs/AGENT.md "Reload") and
 * operators' actions (ag_hook_capture, docs/AGENT.md "Commands").
 *
 * fork + execv of an argv (never a shell), standard input /dev/null,
 * standard output and error the agent's (so they reach its log), in a
 * process group of its own so a timeout kills the whole command.  The
 * child gets the agent's environment, which holds no secret.
 */
#ifndef CF_AGENT_HOOK_H
#define CF_AGENT_HOOK_H

#include <signal.h>
#include <stddef.h>

#include "error.h"

/*
 * Runs argv[0] (an absolute path) with argv and waits at most timeout_s
 * seconds; then SIGTERM to its process group, and SIGKILL 2 s later.
 * *status is the wait status (WIFEXITED/WEXITSTATUS...).  Returns CF_OK
 * when the command ran and exited (whatever its status), CF_ERR_TIMEOUT
 * when it was killed for time or because the agent is stopping (see
 * ag_hook_set_abort), CF_ERR_IO when it could not be started (the message
 * names the program and errno's reason).
 */
cf_status ag_hook_run(char *const argv[], long timeout_s, int *status,
		      cf_error *err);

/*
 * Makes every later ag_hook_run watch *flag (process-wide; NULL, the
 * default, watches nothing).  The flag is meant to be set by the agent's
 * SIGTERM/SIGINT handler.  When it is set before a command starts, the
 * command is not run (CF_ERR_TIMEOUT, "...not started (the agent is
 * stopping)"); when it is set while a command runs, the wait ends within
 * about 250 ms, at once when the signal interrupts it: SIGTERM to the
 * command's process group, SIGKILL 2 s later if it is still there, the
 * leader reaped, and CF_ERR_TIMEOUT with "reload command X interrupted
 * (the agent is stopping)".  Call it from the thread that runs the hooks,
 * before it runs any; the flag must outlive every call.
 */
void ag_hook_set_abort(volatile sig_atomic_t *flag);

/*
 * An operator's action (docs/COMMANDS.md): run like a reload command
 * (fork + execve, no shell, /dev/null as input, a process group of its
 * own, default signals, no descriptor of the agent), but with its
 * standard output and error captured through pipes and an environment
 * of the caller's choosing.
 */
typedef struct ag_capture {
	/* In. */
	char *const *argv;        /* argv[0] an absolute path */
	char *const *envp;        /* the whole environment (NULL: none) */
	long timeout_ms;          /* > 0 */
	long grace_ms;            /* SIGTERM to the group, then SIGKILL after */
	size_t max_bytes;         /* kept of each output; the rest is read
				     and dropped, *_cut set */
	volatile sig_atomic_t *stop[2]; /* either set (NULL: none): the
				     command is stopped like a timed-out one */
	/* Out (OPENSSL_malloc'd, free with ag_capture_clear). */
	unsigned char *out, *err;
	size_t out_len, err_len;
	int out_cut, err_cut;
	int wstatus;              /* the wait status, when it ran */
	int timed_out;            /* killed at its timeout */
	int stopped;              /* killed because a stop flag was set */
	double ran_s;             /* from fork to reaping */
} ag_capture;

/*
 * Runs cap->argv (cap zeroed before its first use, its "In" fields then
 * set) and collects its outputs until it exits (and its pipes
 * close, or 1 s after the exit when something it started keeps them
 * open: what it left running is its business) or its timeout passes.
 * CF_OK when it ran (whatever its status, timed_out or stopped); CF_ERR_IO
 * when it could not be started (the message names the program and the
 * reason), CF_ERR_USAGE for a bad cap, CF_ERR_NOMEM.  Thread-safe: it
 * touches no global state (the SIGCHLD disposition must not be SIG_IGN).
 */
cf_status ag_hook_capture(ag_capture *cap, cf_error *err);

/* Frees (wiping) the outputs of cap and zeroes them. */
void ag_capture_clear(ag_capture *cap);

#endif
