/*
 * log.h - the agent's log: one line per event on standard error, with a
 * level, for systemd's journal or a terminal.
 *
 *   coffer agent: info: prod/db/password v3 -> /run/app/db_password
 *
 * Under systemd (JOURNAL_STREAM names stderr) each line starts with the syslog
 * priority ("<6>"), so the journal records the level.  A message never
 * holds a secret: callers log names, versions, paths and our own error
 * sentences, and text that came from the server goes through
 * cli_printable first.
 */
#ifndef CF_AGENT_LOG_H
#define CF_AGENT_LOG_H

enum ag_log_level {
	AG_LOG_ERROR = 3,       /* syslog LOG_ERR */
	AG_LOG_WARN = 4,        /* LOG_WARNING */
	AG_LOG_INFO = 6,        /* LOG_INFO */
	AG_LOG_DEBUG = 7,       /* LOG_DEBUG */
};

/* Lines above max_level are dropped (default AG_LOG_INFO). */
void ag_log_set_level(int max_level);
/* Parses "error", "warn", "info", "debug"; -1 otherwise. */
int ag_log_level_from_name(const char *name);

void ag_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
