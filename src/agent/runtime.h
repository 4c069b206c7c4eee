/*
 * runtime.h - what one agent process holds while it works: its state dir,
 * identity, trust and connection, and the steps every command is made of.
 *
 *   ag_runtime_new     state dir + identity (+ a client when a server is
 *                      known) + trust from the root and the newest CRL
 *   ag_refresh_crl     the server's CRL, if root-signed and newer
 *   ag_fetch           one feed request: every envelope verified, the
 *                      accepted ones cached and their names remembered
 *   ag_open_cached     a cached envelope opened and verified again
 *   ag_apply (apply.c) the sinks brought up to date, reloads run
 *   ag_runtime_commands  run and once: operators' commands taken from
 *                      the same feed (inbox.h, docs/COMMANDS.md)
 *   ag_acks_* (acks.c) run and once: what the sinks made of each version,
 *                      signed and posted to the server (docs/AGENT.md
 *                      "Acknowledgements")
 *
 * Trust (DESIGN invariants 2, 4, 5): nothing the server says is believed
 * unless the PKI proves it.  A record counts only if its envelope opens
 * with our key, its signer chains to our root, is not on the newest CRL
 * we have seen, holds secret.write on the name, the record names the
 * secret it was served as, and its version is not below the highest we
 * accepted.  Deletions are metadata (unsigned): they are logged, never
 * acted upon.
 */
#ifndef CF_AGENT_RUNTIME_H
#define CF_AGENT_RUNTIME_H

#include <openssl/x509.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "client.h"
#include "inbox.h"
#include "config.h"
#include "record.h"
#include "state.h"
#include "status.h"
#include "trust.h"

typedef struct ag_runtime {
	ag_state *st;
	cli_client *client;       /* NULL: no server known (exec --offline) */
	X509 *cert;               /* the agent's certificate */
	STACK_OF(X509) *chain;    /* the rest of agent.crt (may be NULL) */
	EVP_PKEY *key;            /* the agent's key */
	X509 *root;               /* the anchor (D/root.crt or [server] root) */
	X509_CRL *crl;            /* the newest root-signed CRL seen, or NULL */
	cf_trust *trust;          /* root + crl */
	time_t crl_checked;       /* last ag_refresh_crl that reached the server */
	int read_only;            /* agent exec: D is not changed at all */
	int contact_failed;       /* the last feed request failed: max_stale
				     applies (never before one was tried) */
	ag_status *status;        /* run and once: reported in D/status.json
				     (ag_report); NULL: nothing reported */
	/* Names accepted by ag_fetch since the caller last cleared them. */
	char **changed;
	size_t n_changed, cap_changed;
	size_t refused;           /* envelopes refused since last cleared */
	/* run and once (ag_runtime_commands): commands taken from the
	 * feed; their answers are posted with a client of their own, used
	 * only by the thread that runs them. */
	ag_commands *commands;
	cli_client *cmd_client;
	char *server_url, *server_ca;  /* as the client was made (server_ca
					  NULL: the system's store) */
	char *cert_path, *key_path;
	/* run and once: acknowledgements to post (acks.c); NULL: none are
	 * made (agent exec). */
	struct ag_acks *acks;
	/* The agent's cluster (member.h): its key opens the cluster's
	 * envelopes, which the feed brings too; NULL: in none. */
	struct ag_member *member;
	int member_changed;       /* a new cluster key came with the feed */
} ag_runtime;

/*
 * What every agent command does first (run.c): no core dumps
 * (RLIMIT_CORE 0, PR_SET_DUMPABLE 0), umask 077, and a warning when the
 * secure heap could not be locked.
 */
void ag_harden(void);

/* Whether SIGTERM/SIGINT arrived (run.c): long work should stop. */
int ag_stopping(void);

/* CLOCK_MONOTONIC in seconds; backoff with full jitter, uniform in
 * [backoff/2, backoff] (run.c, shared with exec's watcher). */
double ag_mono_s(void);
double ag_jittered(double backoff);

/*
 * Opens state_dir and the identity in it.  server_url NULL takes the one
 * `agent join` recorded; server_ca and root NULL take the state dir's
 * copies.  With offline set no client is made.
 */
cf_status ag_runtime_new(const char *state_dir, const char *server_url,
			 const char *server_ca, const char *root, int offline,
			 ag_runtime **out, cf_error *err);
void ag_runtime_free(ag_runtime *rt);

/*
 * Takes operators' commands from the feed from now on (ag_fetch asks
 * for them): cfg says which actions exist (ag_commands_set_config on
 * rt->commands after a SIGHUP), config_path is given to the status
 * built-in (`coffer agent status --state-dir D --config F`, run as a
 * child of this program), stop is the SIGTERM flag, threaded says
 * actions run on a worker thread (agent run) rather than at
 * ag_commands_drain (agent once).  Needs a client (not offline).
 */
cf_status ag_runtime_commands(ag_runtime *rt, const ag_config *cfg,
			      const char *config_path,
			      volatile sig_atomic_t *stop, int threaded,
			      cf_error *err);

/*
 * The server refused a request carrying the cluster proof (what: which,
 * why: its answer): most likely the cluster's certificate was revoked.
 * The agent goes on without the cluster (no proof sent, no cluster feed)
 * until it restarts, so that its own secrets and acknowledgements do not
 * wait for it; logged.
 */
void ag_runtime_leave_cluster(ag_runtime *rt, const char *what,
			      const char *why);

/* Makes every request give up within ~1 s once *flag is set. */
void ag_runtime_set_abort(ag_runtime *rt, volatile sig_atomic_t *flag);

/*
 * Fetches the server's CRL; if it is signed by the root and newer than
 * ours, keeps it (D/crl.pem) and rebuilds the trust.  An older or
 * foreign one is refused and logged; ours stays.
 */
cf_status ag_refresh_crl(ag_runtime *rt, cf_error *err);

/*
 * One GET /v1/agent/secrets from the state's cursor, waiting up to wait_s
 * for a change.  Every envelope is verified; accepted ones are cached and
 * their names added to rt->changed; refusals are logged and counted in
 * rt->refused, and leave everything as it was.  The cursor is saved.
 * With rt->commands, pending commands are asked for too and handed to
 * ag_commands_take (after the secrets).
 * *more says the server has more changes ready.  Errors: the request's
 * (CF_ERR_NETWORK, CF_ERR_DENIED, ...), or the state dir's.
 */
cf_status ag_fetch(ag_runtime *rt, long wait_s, int *more, cf_error *err);

/*
 * The verification every feed entry (not a deletion) gets, in ag_fetch
 * and in exec's watcher: its envelope decoded and opened under name with
 * min_version as the minimum (a warning when the feed listed another
 * version than the signed one).  CF_OK: the record, the envelope
 * and its length are the caller's.  CF_ERR_NOMEM is ours to fail on; any other status is a
 * refusal, said in *why.
 */
cf_status ag_open_entry(ag_runtime *rt, const json_t *item, const char *name,
			uint64_t min_version, unsigned char **der, size_t *len,
			cf_record **rec, cf_error *why);

/* ag_fetch until the server has nothing more (wait 0). */
cf_status ag_fetch_all(ag_runtime *rt, cf_error *err);

/* Writes D/status.json if the status changed (a failure is logged). */
void ag_report(ag_runtime *rt);

/* Forgets rt->changed and rt->refused. */
void ag_runtime_clear_changes(ag_runtime *rt);

/*
 * Opens the cached envelope of name again (the trust may have changed:
 * a signer revoked since) with the state's version as the minimum.
 * CF_ERR_NOT_FOUND when nothing of name was accepted yet.
 */
cf_status ag_open_cached(ag_runtime *rt, const char *name, cf_record **out,
			 cf_error *err);

/* out[i] = 1 for each sink of cfg that uses one of names (apply.c). */
void ag_sinks_using(const ag_config *cfg, char *const *names, size_t n,
		    unsigned char *out);

/*
 * Brings the sinks marked in which (NULL: all) up to date, running no
 * command: changed[i] (may be NULL) says sink i was rewritten, failed[i]
 * (may be NULL) that it could not be brought up to date.  Returns how
 * many failed.
 */
size_t ag_apply_sinks(ag_runtime *rt, const ag_config *cfg,
		      const unsigned char *which, unsigned char *changed,
		      unsigned char *failed);

/*
 * The commands of the changed sinks (their on_change) and of each group
 * with a changed member, each distinct command line once.  failed[i]
 * (may be NULL) is set to 1 for each sink whose command (or whose
 * group's) failed or timed out, and left alone otherwise.
 */
void ag_run_commands(const ag_config *cfg, const unsigned char *changed,
		     long timeout_s, unsigned char *failed);

/*
 * Brings the sinks of cfg up to date: all of them (names == NULL), or
 * those that use one of names.  Writes only what changed, then runs each
 * distinct reload command of the changed sinks once.  Returns how many of
 * the sinks looked at are not up to date (each logged with the reason).
 */
size_t ag_apply(ag_runtime *rt, const ag_config *cfg, char *const *names,
		size_t n_names, long reload_timeout_s);

/* ---- acknowledgements (acks.c) ------------------------------------------ */

/*
 * After every pass over the sinks, the agent acknowledges, per secret
 * the pass used, the version its sinks now hold and whether all of them
 * were written ("ok") or one failed ("failed", with the first reason):
 * a record signed with the agent's key (ack.h), never a value.  An ack
 * is made only when it says something new for that name (another
 * version, result or reason); it waits in memory (at most
 * AG_ACKS_PENDING_MAX names, the oldest dropped beyond) until
 * ag_acks_flush posts it.  Posting never holds up a sink: it happens
 * after them, and a failure keeps the acks for the next sync.
 */
#define AG_ACKS_PENDING_MAX 4096

struct ag_acks *ag_acks_new(void);
void ag_acks_free(struct ag_acks *acks);

/* A pass over the sinks starts (apply.c) / ends: the acks it earned are
 * signed and queued.  No-ops when rt->acks is NULL. */
void ag_acks_begin(ag_runtime *rt);
void ag_acks_end(ag_runtime *rt);

/*
 * Within a pass: a sink using name was written (reason NULL) or failed
 * (reason says why) with version (0: the highest accepted of name; a
 * name never accepted is not acknowledged).
 */
void ag_acks_note(ag_runtime *rt, const char *name, uint64_t version,
		  const char *reason);

/* Within a pass: sink's command failed after it was written; every
 * secret it uses is acknowledged as failed with reason. */
void ag_acks_note_sink(ag_runtime *rt, const ag_sink *sink,
		       const char *reason);

/* How many acks wait to be posted. */
size_t ag_acks_pending(const ag_runtime *rt);

/*
 * Posts the waiting acks (POST /v1/agent/acks, in batches).  Kept for
 * the next call when the server cannot be reached or fails (network,
 * 5xx, 429/503, timeout); dropped, with a log line, when it refuses them
 * (4xx: retrying would not help).  Returns the request's status.
 */
cf_status ag_acks_flush(ag_runtime *rt, cf_error *err);

#endif
