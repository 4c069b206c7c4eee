/*
 * inbox.h - the agent's side of operator-to-agent commands
 * (docs/COMMANDS.md, docs/AGENT.md "Commands").
 *
 *   ag_replay     the ids of the commands seen, kept on disk (D/commands)
 *                 until each command expired, and the command cursor
 *   ag_commands   takes the "commands" of a feed answer: unseals and
 *                 checks each one, records its id, and runs it (on a
 *                 worker thread for `agent run`, at ag_commands_drain for
 *                 `agent once`), then answers with a result signed by
 *                 the agent and sealed to the operator
 *
 * What decides whether anything runs is here, in the order of
 * docs/COMMANDS.md "What an agent checks": the envelope opens and its
 * signer chains to our root and is not revoked (cf_command_unseal:
 * failing that, the command is logged and dropped, unanswered); the
 * feed's id is the record's; cf_command_check (agent.manage, targets,
 * expiry); the id was never seen (recorded on disk before anything
 * runs: at most once, even across a crash); the action is built in or
 * configured, and its arguments are allowed.  Every refusal after the
 * unseal is answered as a refusal and logged; nothing runs.
 *
 * The log says what happened to each command by its id, action and
 * signer; never an argument or an output.
 */
#ifndef CF_AGENT_INBOX_H
#define CF_AGENT_INBOX_H

#include <jansson.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "command.h"   /* the library's: cf_command, cf_cmd_result */
#include "config.h"
#include "error.h"
#include "trust.h"

/* ------------------------------------------------------------ replay */

/* Most ids kept; a command beyond that is refused, never one forgotten. */
#define AG_REPLAY_MAX 10000u
/* The file in the state dir. */
#define AG_REPLAY_FILE "commands"

typedef struct ag_replay ag_replay;

/*
 * Opens D/commands (missing: nothing seen, cursor 0) and forgets the
 * ids whose command expired more than CF_CMD_SKEW s before now.
 * Refusals: CF_ERR_PARSE for a damaged file (the message says how to
 * start over), CF_ERR_IO, CF_ERR_TOO_LARGE, CF_ERR_NOMEM.
 */
cf_status ag_replay_open(const char *state_dir, int64_t now, ag_replay **out,
			 cf_error *err);
void ag_replay_free(ag_replay *r);

int64_t ag_replay_cursor(const ag_replay *r);
size_t ag_replay_count(const ag_replay *r);
int ag_replay_seen(const ag_replay *r, const char *id);

/*
 * Records id (kept until expires + CF_CMD_SKEW) and the cursor (raised
 * to at least cursor), and writes the file atomically before returning
 * (temp, fsync, rename, directory fsync).  Refusals: CF_ERR_REPLAY when
 * id was seen before (the cursor is still raised and written),
 * CF_ERR_LIMIT when AG_REPLAY_MAX ids are kept and none has expired,
 * CF_ERR_IO when the file cannot be written (nothing is recorded).
 */
cf_status ag_replay_record(ag_replay *r, const char *id, int64_t expires,
			   int64_t cursor, int64_t now, cf_error *err);

/* Sets the cursor (any value: a restored server may go back) and writes
 * the file if it changed. */
cf_status ag_replay_set_cursor(ag_replay *r, int64_t cursor, cf_error *err);

/* ---------------------------------------------------------- commands */

/*
 * Delivers one sealed result: POST /v1/commands/ID/result.  CF_OK when
 * the server took it, CF_ERR_CONFLICT when it has this agent's answer
 * already; CF_ERR_NETWORK, CF_ERR_SERVER, CF_ERR_LIMIT and CF_ERR_TIMEOUT
 * are tried again later, anything else is final.  Called from the
 * thread that runs commands (the worker, or the caller of
 * ag_commands_drain), never from two at once.
 */
typedef cf_status (*ag_cmd_post_fn)(void *arg, const char *id,
				    const unsigned char *der, size_t len,
				    cf_error *err);

typedef struct ag_cmd_setup {
	const char *state_dir;
	X509 *cert;                  /* the agent's certificate (copied) */
	STACK_OF(X509) *chain;       /* its chain up to the root (copied,
					may be NULL): sent with each answer */
	EVP_PKEY *key;               /* the agent's key (copied) */
	ag_cmd_post_fn post;
	void *post_arg;
	char *const *status_argv;    /* the status built-in: a command whose
					stdout is the status report (copied) */
	volatile sig_atomic_t *stop; /* the agent is stopping (SIGTERM) */
	int threaded;                /* 1: a worker thread runs the actions
					(agent run); 0: ag_commands_drain */
	int64_t (*now)(void);        /* the clock (NULL: time()); for tests */
	long retry_s;                /* first delay before an answer is
					posted again (0: 2 s), doubling */
} ag_cmd_setup;

/* Attempts at posting one answer (agent run; agent once tries 3 times). */
#define AG_CMD_POST_ATTEMPTS 6
/* Commands waiting to run, at most; beyond, refused with CF_ERR_LIMIT. */
#define AG_CMD_QUEUE_MAX 100u
/* Answers (refusals) waiting to be posted, at most. */
#define AG_CMD_ANSWERS_MAX 200u
/* Between SIGTERM and SIGKILL to an action's process group. */
#define AG_CMD_KILL_GRACE_MS 1000L
/* The status built-in's time limit. */
#define AG_CMD_STATUS_TIMEOUT_MS (30L * 1000)

typedef struct ag_commands ag_commands;

/*
 * Opens the replay store of setup->state_dir, reads the agent's name
 * (its certificate's CN) and groups, and (threaded) starts the worker,
 * with every signal blocked in it.  cfg (borrowed, see
 * ag_commands_set_config) says which actions exist.
 */
cf_status ag_commands_new(const ag_cmd_setup *setup, const ag_config *cfg,
			  ag_commands **out, cf_error *err);

/*
 * Stops the worker: a running action is stopped like a timed-out one
 * (SIGTERM to its group, SIGKILL 1 s later), queued commands do not
 * run, and answers not yet delivered are given up (each logged).
 */
void ag_commands_free(ag_commands *c);

/* The configuration after a SIGHUP (borrowed; main thread). */
void ag_commands_set_config(ag_commands *c, const ag_config *cfg);

/* What to ask the feed for: commands=CURSOR. */
int64_t ag_commands_cursor(const ag_commands *c);

/*
 * The "commands" and "command_cursor" of one feed answer (resp; either
 * absent: nothing), each command verified with trust and refused (an
 * answer queued) or queued to run; the cursor follows.  Returns an
 * error only for what stops the agent from keeping its promises:
 * CF_ERR_NOMEM.  Main thread.
 */
cf_status ag_commands_take(ag_commands *c, const json_t *resp,
			   const cf_trust *trust, cf_error *err);

/*
 * The refresh built-in runs on the main thread (it fetches and applies
 * the sinks): how many refresh commands wait for it, and, once it is
 * done, its exit code (0: every sink up to date) and summary (the
 * result's stdout), which answer all of them.
 */
size_t ag_commands_refresh_wanted(const ag_commands *c);
void ag_commands_refresh_done(ag_commands *c, int exit_code,
			      const char *summary);

/*
 * Not threaded (agent once, tests): runs what is queued, one after the
 * other, and delivers every answer (3 attempts, 1 s then 2 s apart).
 * Threaded: waits until the worker is idle (the queue empty and no
 * answer left to retry), or *setup->stop.
 */
void ag_commands_drain(ag_commands *c);

/* Commands queued or running, and answers waiting to be delivered. */
size_t ag_commands_pending(ag_commands *c);

#endif
