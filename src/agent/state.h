/*
 * state.h - the agent's state directory (docs/AGENT.md "State").
 *
 *   D/agent.json     written by `agent join`: server, name, file names
 *   D/agent.key      the agent's private key (0600)
 *   D/agent.crt      its certificate and chain
 *   D/server-ca.crt  the server's TLS certificate or CA
 *   D/root.crt       the organisation's root (join --root), the anchor
 *                    every record is verified against
 *   D/crl.pem        the newest root-signed CRL seen (never replaced by
 *                    an older one)
 *   D/state.json     {"cursor":N,"confirmed":T,"secrets":{NAME:
 *                    {"version":V}},"cluster":{"fp":FP,"cursor":C}}:
 *                    the feed cursor, when the server last answered
 *                    (for max_stale), the highest version accepted per
 *                    secret (anti-rollback), and the cursor of the
 *                    cluster's feed for the cluster key FP
 *   D/cluster.pem    the key of the agent's cluster, its certificate and
 *                    chain (0600; docs/CLUSTERS.md), if it is in one
 *   D/cache/HEX.cms  the envelope of that version (HEX = SHA-256 of the
 *                    name): ciphertext for this agent only, so that a
 *                    restart with the server down re-materializes all
 *   D/run.lock       flock'd by `agent run` / `agent once` for their
 *                    lifetime: the one process that may change D
 *
 * D must belong to the agent's user and be closed to everybody else
 * (0700), and so must the key: anything else is refused, not repaired.
 * Every file is replaced atomically (ag_file_replace).
 */
#ifndef CF_AGENT_STATE_H
#define CF_AGENT_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "error.h"

typedef struct ag_state ag_state;

/*
 * Opens D: checks its owner and mode and the key's, and reads
 * state.json (missing: empty state).  Refusals: CF_ERR_USAGE (no such
 * dir, never joined), CF_ERR_IO, CF_ERR_PARSE (state.json damaged).
 */
cf_status ag_state_open(const char *dir, ag_state **out, cf_error *err);
void ag_state_free(ag_state *st);

const char *ag_state_dir(const ag_state *st);

/* "D/FILE" into buf (size >= PATH_MAX); CF_ERR_USAGE if too long. */
cf_status ag_state_path(const ag_state *st, const char *file, char *buf,
			size_t size, cf_error *err);

/* Highest version accepted for name, 0 for none. */
uint64_t ag_state_version(const ag_state *st, const char *name);

/* The names with an accepted version, in no particular order. */
size_t ag_state_count(const ag_state *st);
const char *ag_state_name_at(const ag_state *st, size_t i);

int64_t ag_state_cursor(const ag_state *st);

/* When the server last answered the feed (UNIX s, 0: never). */
time_t ag_state_confirmed(const ag_state *st);
void ag_state_set_confirmed(ag_state *st, time_t when);
void ag_state_set_cursor(ag_state *st, int64_t cursor);
/* The cluster feed's cursor for the cluster key fp (0: another key or
 * none yet); setting it forgets the one of any other key. */
int64_t ag_state_cluster_cursor(const ag_state *st, const char *fp);
void ag_state_set_cluster_cursor(ag_state *st, const char *fp, int64_t cursor);

/*
 * Records an accepted version: the envelope goes to the cache first, then
 * the version is raised in memory (persist it with ag_state_save).
 */
cf_status ag_state_accept(ag_state *st, const char *name, uint64_t version,
			  const unsigned char *der, size_t len, cf_error *err);

/* The cached envelope of name (OPENSSL_malloc'd).  CF_ERR_NOT_FOUND. */
cf_status ag_state_cached(const ag_state *st, const char *name,
			  unsigned char **der, size_t *len, cf_error *err);

/* Writes state.json (atomically).  Only under ag_state_lock_run. */
cf_status ag_state_save(ag_state *st, cf_error *err);

/*
 * Takes D/run.lock for the life of the process: the one process that
 * may change D (`agent run` or `agent once`).  CF_ERR_CONFLICT when
 * another process holds it.
 */
cf_status ag_state_lock_run(ag_state *st, cf_error *err);

#endif
