/*
 * config.h - the agent's configuration file (INI, docs/AGENT.md).
 *
 *   [server]                     where the server is, what to trust
 *   url = https://coffer.example:8443
 *   ca = /etc/coffer/server-ca.pem
 *   root = /etc/coffer/root.pem
 *
 *   [agent]                      optional knobs (all have defaults)
 *   reload_timeout = 30
 *   wait = 55
 *
 *   [file NAME]                  one secret's value -> one file
 *   path = /run/app/db_password
 *   mode = 0400
 *   owner = app
 *   group = app
 *   reload = /usr/bin/systemctl reload app
 *
 *   [template PATH]              a template rendered -> PATH
 *   source = /etc/coffer/app.conf.tmpl
 *   mode = 0640
 *   reload = /usr/bin/systemctl reload app
 *   wait = 2s:10s                settle before acting (any sink)
 *   on_change = reload           reload | restart | none
 *   restart = /usr/bin/systemctl restart app
 *   max_stale = 1h               remove when unconfirmed that long
 *
 *   [group app]                  sinks acting together
 *   sinks = /etc/app/tls.crt /etc/app/tls.key
 *   wait = 2s:10s
 *   reload = /usr/bin/systemctl reload app
 *
 *   [action restart-app]         what an operator may run (docs/COMMANDS.md)
 *   run = /usr/bin/systemctl restart app
 *   timeout = 30s                default 30s, at most 1h
 *   args = none                  none | any | REGEX each argument matches
 *
 * The file is outside input: every line is bounded, every key known,
 * every value checked, and a refusal names the file and the line.  The
 * parsed configuration holds no secret.
 */
#ifndef CF_AGENT_CONFIG_H
#define CF_AGENT_CONFIG_H

#include <regex.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* Largest configuration file and template source accepted. */
#define AG_CONFIG_MAX_BYTES (1024u * 1024u)
#define AG_TEMPLATE_SOURCE_MAX_BYTES (1024u * 1024u)
/* Longest line of the configuration, most [file] + [template] sections. */
#define AG_CONFIG_MAX_LINE 4096u
#define AG_CONFIG_MAX_SINKS 10000u
/* Longest reload command and most words in it (ag_argv_split). */
#define AG_ARGV_MAX_BYTES AG_CONFIG_MAX_LINE
#define AG_ARGV_MAX_WORDS 256u

typedef enum ag_sink_kind {
	AG_SINK_FILE = 0,       /* [file NAME]: the value of secret NAME */
	AG_SINK_TEMPLATE,       /* [template PATH]: source rendered */
} ag_sink_kind;

/* What a change of a sink (or group) runs once it has settled. */
typedef enum ag_on_change {
	AG_ON_NONE = 0,
	AG_ON_RELOAD,           /* the reload command */
	AG_ON_RESTART,          /* the restart command */
} ag_on_change;

typedef struct ag_sink {
	ag_sink_kind kind;
	char *secret;           /* FILE: the secret's name; TEMPLATE: NULL */
	char *path;             /* absolute path of the file written */
	char *source;           /* TEMPLATE: absolute path of the template */
	mode_t mode;            /* default 0400 (file), 0440 (template) */
	uid_t uid;              /* (uid_t)-1: the agent's own */
	gid_t gid;              /* (gid_t)-1: the agent's own */
	char **reload;          /* argv (NULL-terminated), NULL for none */
	char *reload_text;      /* the reload line as written, for logs */
	char **restart;         /* restart = ..., as reload */
	char *restart_text;
	ag_on_change on_change; /* default: reload if set, else restart if
				   set, else none */
	long wait_min_ms;       /* wait = MIN[:MAX]: act once no change came */
	long wait_max_ms;       /* for MIN, or MAX after the first; 0: at once */
	long max_stale_s;       /* max_stale: the file is removed when the
				   server has not confirmed it for this long;
				   0: never */
	int group;              /* index in cfg->groups, -1: none */
	int line;               /* line of the section header */
} ag_sink;

/*
 * [group NAME]: sinks that settle together and one command run once
 * after all of them were written (a certificate, its key and a password
 * that must change together).  Its members have no command or wait of
 * their own.
 */
typedef struct ag_group {
	char *name;
	char **reload, *reload_text;
	char **restart, *restart_text;
	ag_on_change on_change;
	long wait_min_ms, wait_max_ms;
	int line;
} ag_group;

/* [action NAME] args =: what an operator may append to run. */
typedef enum ag_args_policy {
	AG_ARGS_NONE = 0,       /* nothing (the default) */
	AG_ARGS_ANY,            /* any arguments */
	AG_ARGS_REGEX,          /* each argument matches the pattern in full */
} ag_args_policy;

/* Most [action] sections; the default and longest timeout of one. */
#define AG_CONFIG_MAX_ACTIONS 1000u
#define AG_ACTION_TIMEOUT_DEFAULT_MS (30L * 1000)
#define AG_ACTION_TIMEOUT_MAX_MS (3600L * 1000)

/*
 * [action NAME]: a command an operator may have the agent run
 * (docs/COMMANDS.md).  NAME per cf_action_name_check; "status" and
 * "refresh" are built in and cannot be configured.
 */
typedef struct ag_action {
	char *name;
	char **run;             /* argv (NULL-terminated), as reload = */
	char *run_text;         /* the line as written, for logs */
	long timeout_ms;        /* 1 s .. 1 h, default 30 s */
	ag_args_policy args;
	char *args_text;        /* REGEX: the pattern as written */
	regex_t *args_re;       /* REGEX: "^(" pattern ")$", REG_EXTENDED |
				   REG_NOSUB */
	int line;               /* line of the section header */
} ag_action;

typedef struct ag_config {
	char *path;             /* the file it was read from */
	char *server_url;       /* [server] url (https://...) */
	char *server_ca;        /* [server] ca, NULL: the state dir's copy;
				   "system": the system's CA store */
	char *root;             /* [server] root, NULL: the state dir's copy */
	long reload_timeout_s;  /* [agent] reload_timeout, 1..3600, default 30 */
	long wait_s;            /* [agent] wait: long-poll seconds, 1..60,
				   default 55 */
	ag_sink *sinks;
	size_t n_sinks;
	ag_group *groups;
	size_t n_groups;
	ag_action *actions;
	size_t n_actions;
} ag_config;

/*
 * Reads and parses path (at most AG_CONFIG_MAX_BYTES, not world-writable:
 * see ag_config_read_text).  Refusals are
 * CF_ERR_PARSE with "FILE:LINE: what is wrong and what to write instead":
 * unknown section or key, a key twice, a value out of range, a mode that
 * is not octal or gives others write access, an owner or group that does
 * not exist, a relative path, two sinks writing the same path, a reload
 * line that does not split into an absolute program and arguments.
 * CF_ERR_TOO_LARGE: above AG_CONFIG_MAX_BYTES or AG_CONFIG_MAX_SINKS.
 */
cf_status ag_config_load(const char *path, ag_config **out, cf_error *err);

/* The same from memory (len bytes of text); what names it in messages. */
cf_status ag_config_parse(const char *text, size_t len, const char *what,
			  ag_config **out, cf_error *err);

void ag_config_free(ag_config *cfg);

/* The [action NAME] of cfg, or NULL when there is none. */
const ag_action *ag_config_action(const ag_config *cfg, const char *name);

/*
 * May the n operator arguments args be appended to action's run line?
 * args = none: only when n is 0; any: always; REGEX: when each one
 * matches the pattern in full.  Refusal: CF_ERR_PERMISSION (the
 * configuration does not permit them; CF_ERR_NOMEM aside) with a sentence
 * that names the action and the argument's position, never its value.
 */
cf_status ag_action_args_check(const ag_action *action, char *const *args,
			       size_t n, cf_error *err);

/*
 * Reads a whole configuration file or template source of at most max
 * bytes into *text (malloc'd, NUL-terminated, *len bytes before the NUL;
 * not secret).  Refusals: CF_ERR_IO for what cannot be read, is not a
 * regular file, or is writable by every user (it decides where secrets
 * go); CF_ERR_TOO_LARGE above max.
 */
cf_status ag_config_read_text(const char *path, size_t max, char **text,
			      size_t *len, cf_error *err);

/*
 * Splits a reload line into argv without a shell: words separated by
 * blanks, '...' and "..." group words (no escapes inside '...'; \" and \\
 * inside "..."), nothing is expanded.  The first word must be an absolute
 * path.  *argv is NULL-terminated; free it with ag_argv_free.
 */
cf_status ag_argv_split(const char *line, char ***argv, cf_error *err);
void ag_argv_free(char **argv);

#endif
