/*
 * supervise.h - what `coffer agent exec` (exec.c) needs to stay the parent
 * of its command: signal names, the command started in a process group of
 * its own (ag_spawn_*), and the secrets it was given watched in the
 * agent's feed (ag_watch_*).  docs/AGENT.md "exec".
 *
 * Threads: ag_watch_start starts one thread that owns the runtime from
 * then on (its client, trust, CRL); the caller must not use that runtime
 * again before ag_watch_stop.  Everything else runs in the caller's
 * thread.
 */
#ifndef CF_AGENT_SUPERVISE_H
#define CF_AGENT_SUPERVISE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "runtime.h"
#include "secmem.h"

/*
 * A signal by name ("HUP", "SIGHUP", case-insensitive) or number; 0 when
 * it is neither.
 */
int ag_signal_from_name(const char *name);
/* "SIGHUP" for SIGHUP, into buf. */
const char *ag_signal_name(int sig, char *buf, size_t size);

/* How the command is started; the same for every start. */
typedef struct ag_spawn {
	const char *path;          /* the program (ag_spawn_resolve) */
	char *const *argv;
	char *const *envp;         /* in secure memory: the caller's */
	const int *keep;           /* descriptors left open in the command */
	size_t n_keep;
	sigset_t mask;             /* the command's signal mask */
	int pipe_ignored;          /* SIGPIPE was ignored when exec started */
	int take_tty;              /* make its group the terminal's foreground */
} ag_spawn;

/*
 * The program execvp would run for file: file itself when it holds a '/',
 * else the first executable regular file of that name in $PATH (default
 * /usr/local/bin:/usr/bin:/bin).  CF_ERR_IO naming file when there is
 * none.
 */
cf_status ag_spawn_resolve(const char *file, char *out, size_t size,
			   cf_error *err);

/*
 * fork + execve of sp: the child becomes the leader of a process group
 * of its own (and, with take_tty, the terminal's foreground group), gets
 * sp->mask and SIGPIPE back as they were, and keeps only standard input,
 * output, error and sp->keep open.  Between fork and exec it makes only
 * async-signal-safe calls.  An exec failure comes back as CF_ERR_IO with
 * errno's reason (the child is reaped).  *pid is the command's pid, which
 * is also its process group's id.
 */
cf_status ag_spawn_start(const ag_spawn *sp, pid_t *pid, cf_error *err);

typedef struct ag_watch ag_watch;

/*
 * Starts a thread that long-polls rt's feed (wait_s seconds per request)
 * from cursor, for the n secrets names[i] in use at versions[i] with
 * values[i] (copied: the caller keeps its own).  A feed entry for one of
 * them is verified as `agent run` verifies it (cf_envelope_open with our
 * key, root and newest CRL, under the entry's name, not below the version
 * in use); a version above the one in use whose value differs is a
 * change.  Nothing is written to the state dir (rt->read_only).  Errors
 * are logged and retried with backoff (1 s .. 60 s, jittered); the
 * thread ends only with ag_watch_stop.
 */
cf_status ag_watch_start(ag_runtime *rt, long wait_s, int64_t cursor,
			 size_t n, const char *const *names,
			 const uint64_t *versions, const cf_secret *const *values,
			 ag_watch **out, cf_error *err);

/* A descriptor that polls readable while changes are waiting. */
int ag_watch_fd(const ag_watch *w);

/*
 * Takes the waiting changes: for each i, values[i] is the newest value of
 * names[i] (the caller owns it) and versions[i] its version, or
 * values[i] NULL when it did not change.  Returns how many changed.
 */
size_t ag_watch_take(ag_watch *w, cf_secret **values, uint64_t *versions);

/* Ends the thread (a long poll gives up within about a second), frees w. */
void ag_watch_stop(ag_watch *w);

#endif
