/*
 * status.h - what the running agent reports about itself, for `coffer
 * agent status` (docs/AGENT.md "Status").
 *
 * The agent keeps an ag_status in memory: one entry per sink (its kind,
 * secret or template source, the version it holds, when it was last
 * brought up to date and last rewritten, its last error), and the state
 * of its connection to the server.  ag_status_save writes it to
 * D/status.json (0600, atomically, ag_file_replace), so that the status
 * can be read without the server and without the agent's help.
 *
 * Writes are few: a save writes only when something a reader would act
 * on changed (a sink's state, version, source or error; a file rewritten;
 * the connection going up or down; the set of sinks) or, for times alone
 * (the last contact, the last time a sink was found up to date), when the
 * file is AG_STATUS_REFRESH_S old.  The caller saves at most once per
 * apply pass or connection change; a save with nothing new costs nothing.
 *
 * Nothing here holds a secret value: names, paths, versions, times and
 * our own error sentences (cf_error texts, which never hold values).
 * The record lives on the ordinary heap; jansson (on the secure heap,
 * secmem.c) is used one sink at a time while saving.
 *
 * Not thread-safe; one ag_status per agent process.
 */
#ifndef CF_AGENT_STATUS_H
#define CF_AGENT_STATUS_H

#include <jansson.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "error.h"

/* The shape of status.json (its "format" member). */
#define AG_STATUS_FORMAT 1
/* Times alone are written at most this often (seconds). */
#define AG_STATUS_REFRESH_S 60
/* Longest error sentence kept per sink or for the server (bytes). */
#define AG_STATUS_ERROR_MAX 1024u
/* Largest status.json ag_status_load reads. */
#define AG_STATUS_MAX_BYTES (64u * 1024u * 1024u)

typedef struct ag_status ag_status;

/* A record for this process (its pid and start time), NULL if no memory. */
ag_status *ag_status_new(void);
void ag_status_free(ag_status *st);

/*
 * The sinks cfg configures: entries for sinks no longer configured are
 * dropped, and new ones appear as "never" (not applied yet), so the
 * status lists every sink even before its first pass.  Call after each
 * (re)load of the configuration.  Returns CF_ERR_NOMEM (the record is
 * then unchanged) or CF_OK.
 */
cf_status ag_status_config(ag_status *st, const ag_config *cfg);

/*
 * The sink at path is up to date: kind "file" or "template",
 * secret_or_source its secret's name or its template's source, version
 * the version it now holds (0 for templates or when unknown), written 1
 * when its file was rewritten just now.  Records the time as its last
 * good pass (and last write when written) and clears its error.  An
 * entry that does not exist yet is made.  Out of memory: not recorded.
 */
/*
 * Takes over, for the sinks ag_status_config listed, what the previous
 * status.json of state_dir said of the same sink (its version, last
 * write, last ok), so a restart does not forget when a file was last
 * written.  Nothing happens when there is none.
 */
void ag_status_carry(ag_status *st, const char *state_dir);

void ag_status_sink_ok(ag_status *st, const char *path, const char *kind,
		       const char *secret_or_source, uint64_t version,
		       int written);

/*
 * The sink at path could not be brought up to date: error_sentence is
 * the cf_error text (kept up to AG_STATUS_ERROR_MAX bytes).  Its last
 * good pass, last write and version stay as they were (its file still
 * holds that version).
 */
void ag_status_sink_failed(ag_status *st, const char *path, const char *kind,
			   const char *secret_or_source,
			   const char *error_sentence);

/*
 * One contact with the server: ok 1 when it answered (the time becomes
 * the last contact, the error is cleared), 0 when it could not be
 * reached or failed, with the cf_error text (NULL: "unknown error").
 */
void ag_status_server(ag_status *st, int ok, const char *error_sentence);

/* The agent is stopping (a clean exit); save once more afterwards. */
void ag_status_stopped(ag_status *st);

/*
 * Writes state_dir/status.json when something changed since the last
 * successful save (see the top of this file); CF_OK without writing
 * otherwise.  Errors: CF_ERR_NOMEM, CF_ERR_IO (from ag_file_replace),
 * CF_ERR_USAGE (path too long); the record stays unsaved and the next
 * call tries again.
 */
cf_status ag_status_save(ag_status *st, const char *state_dir, cf_error *err);

/*
 * Reads state_dir/status.json into *out (an object with "format" ==
 * AG_STATUS_FORMAT and a "sinks" array; the caller json_decref's it).
 * CF_ERR_NOT_FOUND when there is none (the agent has not reported yet),
 * CF_ERR_PARSE when it is damaged, CF_ERR_IO / CF_ERR_TOO_LARGE.
 */
cf_status ag_status_load(const char *state_dir, json_t **out, cf_error *err);

/* For tests: the clock (default time()); the start time is read again. */
void ag_status_set_clock(ag_status *st, time_t (*now)(void));

#endif
