/*
 * config.c - the agent's configuration file (config.h, docs/AGENT.md
 * "Configuration").
 *
 * One pass over the text, line by line.  Invariants:
 *   - every line is at most AG_CONFIG_MAX_LINE bytes of printable text
 *     (tab allowed, no other control byte), the file at most
 *     AG_CONFIG_MAX_BYTES, the sinks at most AG_CONFIG_MAX_SINKS, so the
 *     work is bounded by the input and no value is ever truncated;
 *   - every refusal is CF_ERR_PARSE (CF_ERR_TOO_LARGE for the two size
 *     limits) with "FILE:LINE: what is wrong; what to do", and nothing
 *     half-built escapes: *out is set only on success;
 *   - every path is absolute and plain (no empty, "." or ".." segment),
 *     so two sinks writing one file are caught by comparing strings;
 *   - the configuration names secrets but holds none of their values.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "command.h"
#include "config.h"
#include "policy.h"

enum section { SEC_NONE, SEC_SERVER, SEC_AGENT, SEC_FILE, SEC_TEMPLATE,
	       SEC_GROUP, SEC_ACTION };

#define MAX_KEYS 9

/* The keys of each section, in the order the messages list them. */
static const char *const section_keys[][MAX_KEYS + 1] = {
	[SEC_NONE] = { NULL },
	[SEC_SERVER] = { "url", "ca", "root", NULL },
	[SEC_AGENT] = { "reload_timeout", "wait", NULL },
	[SEC_FILE] = { "path", "mode", "owner", "group", "reload", "restart",
		       "on_change", "wait", "max_stale", NULL },
	[SEC_TEMPLATE] = { "source", "mode", "owner", "group", "reload",
			   "restart", "on_change", "wait", "max_stale", NULL },
	[SEC_GROUP] = { "sinks", "reload", "restart", "on_change", "wait",
			NULL },
	[SEC_ACTION] = { "run", "timeout", "args", NULL },
};

/* The members of a [group], as written, until the file is read. */
struct group_members {
	char **paths;           /* ag_argv_split of the sinks = line */
	int line;
};

struct parser {
	const char *what;          /* the file's name, for messages */
	ag_config *cfg;
	cf_error *err;
	int line;                  /* current line, 1-based */
	enum section section;
	char header[AG_CONFIG_MAX_LINE + 1]; /* "[file x]", for messages */
	int section_line;          /* line of the current header */
	int key_line[MAX_KEYS];    /* where each key was set, 0: not yet */
	int server_line;           /* 0: no [server] yet */
	int agent_line;            /* 0: no [agent] yet */
	bool on_change_set;        /* on_change given in this section */
	struct group_members *members; /* one per cfg->groups */
};

static cf_status nomem(struct parser *p);
static cf_status set_action_key(struct parser *p, const char *key,
				const char *value);

__attribute__((format(printf, 3, 4)))
static cf_status fail_at(struct parser *p, int line, const char *fmt, ...)
{
	char msg[CF_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return cf_error_set(p->err, CF_ERR_PARSE, "%s:%d: %s", p->what, line, msg);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Trims blanks at both ends of s in place; returns the new start. */
static char *trim(char *s)
{
	size_t len;

	while (is_blank(*s))
		s++;
	len = strlen(s);
	while (len > 0 && is_blank(s[len - 1]))
		s[--len] = '\0';
	return s;
}

/*
 * A plain absolute path: starts with '/', shorter than PATH_MAX, and no
 * empty, "." or ".." segment (so no "//", no trailing '/').  NULL when
 * good, else why not.
 */
static const char *path_problem(const char *path)
{
	const char *seg;

	if (path[0] != '/')
		return "is not an absolute path";
	if (strlen(path) >= 4096)
		return "is longer than 4095 bytes";
	seg = path + 1;
	for (;;) {
		const char *end = strchr(seg, '/');
		size_t seg_len = end != NULL ? (size_t)(end - seg) : strlen(seg);

		if (seg_len == 0)
			return "has an empty segment (\"//\" or a trailing \"/\")";
		if ((seg_len == 1 && seg[0] == '.') ||
		    (seg_len == 2 && seg[0] == '.' && seg[1] == '.'))
			return "has a \".\" or \"..\" segment";
		if (end == NULL)
			return NULL;
		seg = end + 1;
	}
}

static cf_status check_path(struct parser *p, const char *key,
			    const char *value)
{
	const char *why = path_problem(value);

	if (why == NULL)
		return CF_OK;
	return fail_at(p, p->line, "%s \"%.200s\" %s; write a plain absolute "
		       "path such as /run/app/secret", key, value, why);
}

/* Decimal digits only, min..max. */
static cf_status parse_number(struct parser *p, const char *key,
			      const char *value, long min, long max, long *out)
{
	long n = 0;
	size_t i;

	for (i = 0; value[i] != '\0'; i++) {
		if (value[i] < '0' || value[i] > '9' || i >= 9)
			break;
		n = n * 10 + (value[i] - '0');
	}
	if (i == 0 || value[i] != '\0' || n < min || n > max)
		return fail_at(p, p->line, "%s must be a whole number of "
			       "seconds from %ld to %ld, not \"%.64s\"; write one in "
			       "that range, or remove the line to get the default",
			       key, min, max, value);
	*out = n;
	return CF_OK;
}

/*
 * A duration: digits and a unit (ms, s, m, h, d; none: seconds), into
 * milliseconds, min_ms..max_ms.  NULL end: the whole value; else the
 * text stops at *end (for MIN:MAX).
 */
static int duration_ms(const char *text, size_t len, long *out)
{
	long long n = 0, unit = 1000;
	size_t i = 0;

	while (i < len && text[i] >= '0' && text[i] <= '9' && i < 9)
		n = n * 10 + (text[i++] - '0');
	if (i == 0)
		return -1;
	if (len - i == 2 && strncmp(text + i, "ms", 2) == 0)
		unit = 1;
	else if (len - i == 1 && text[i] == 's')
		unit = 1000;
	else if (len - i == 1 && text[i] == 'm')
		unit = 60 * 1000;
	else if (len - i == 1 && text[i] == 'h')
		unit = 3600 * 1000;
	else if (len - i == 1 && text[i] == 'd')
		unit = 86400LL * 1000;
	else if (len != i)
		return -1;
	if (n > 400LL * 86400 * 1000 / unit)
		return -1;
	*out = (long)(n * unit);
	return 0;
}

/* wait = MIN[:MAX] (MAX >= MIN; both at most an hour). */
static cf_status parse_wait(struct parser *p, const char *value, long *min_ms,
			    long *max_ms)
{
	const char *colon = strchr(value, ':');
	size_t first = colon != NULL ? (size_t)(colon - value) : strlen(value);
	long lo = 0, hi = 0;

	if (duration_ms(value, first, &lo) != 0 ||
	    (colon != NULL && duration_ms(colon + 1, strlen(colon + 1), &hi) != 0) ||
	    lo > 3600L * 1000 || hi > 3600L * 1000 ||
	    (colon != NULL && hi < lo))
		return fail_at(p, p->line, "wait must be MIN or MIN:MAX, durations "
			       "such as 500ms, 2s or 1m up to 1h with MAX >= MIN, "
			       "not \"%.64s\"; e.g. wait = 2s:10s", value);
	*min_ms = lo;
	*max_ms = colon != NULL ? hi : lo;
	return CF_OK;
}

static cf_status parse_on_change(struct parser *p, const char *value,
				 ag_on_change *out)
{
	if (strcmp(value, "reload") == 0)
		*out = AG_ON_RELOAD;
	else if (strcmp(value, "restart") == 0)
		*out = AG_ON_RESTART;
	else if (strcmp(value, "none") == 0)
		*out = AG_ON_NONE;
	else
		return fail_at(p, p->line, "on_change is reload, restart or none, "
			       "not \"%.64s\"", value);
	p->on_change_set = true;
	return CF_OK;
}

/* reload = / restart =: an argv for fork/exec, and the line for logs. */
static cf_status parse_command(struct parser *p, const char *key,
			       const char *value, char ***argv, char **text)
{
	cf_error inner = { 0 };
	cf_status rc = ag_argv_split(value, argv, &inner);

	if (rc == CF_ERR_NOMEM)
		return nomem(p);
	if (rc != CF_OK)
		return fail_at(p, p->line, "%s: %s", key, inner.msg);
	*text = strdup(value);
	return *text != NULL ? CF_OK : nomem(p);
}

static cf_status parse_mode(struct parser *p, const char *value, mode_t *out)
{
	size_t len = strlen(value);
	unsigned mode = 0;

	bool octal = len == 3 || len == 4;

	for (size_t i = 0; i < len && octal; i++) {
		octal = value[i] >= '0' && value[i] <= '7';
		mode = mode * 8 + (unsigned)(value[i] - '0');
	}
	if (!octal)
		return fail_at(p, p->line, "mode \"%.64s\" is not an octal mode of "
			       "3 or 4 digits; write e.g. mode = 0400", value);
	if (mode & 07000)
		return fail_at(p, p->line, "mode %s sets setuid, setgid or sticky "
			       "bits, which a file of secrets never needs; write the "
			       "permission bits only, e.g. mode = 0400", value);
	if (mode & 0022)
		return fail_at(p, p->line, "mode %s lets the group or others "
			       "write the file, so they could replace the secret; "
			       "use a mode without the 022 bits, e.g. 0640 or 0400",
			       value);
	*out = (mode_t)mode;
	return CF_OK;
}

/*
 * A numeric id (decimal, below the "no change" value (uid_t)-1), or
 * 0 when value is not all digits.  -1 when it is digits but too large.
 */
static int numeric_id(const char *value, unsigned long *out)
{
	unsigned long long n = 0;
	size_t i;

	for (i = 0; value[i] >= '0' && value[i] <= '9'; i++) {
		if (i >= 10)
			return -1;
		n = n * 10 + (unsigned long long)(value[i] - '0');
	}
	if (i == 0 || value[i] != '\0')
		return 0;
	if (n >= UINT32_MAX)
		return -1;
	*out = (unsigned long)n;
	return 1;
}

/* getpw*_r / getgr*_r buffers: grown on ERANGE up to this. */
#define NSS_BUF_MAX (1024u * 1024u)

/*
 * owner = / group =: a numeric id, or a name looked up in the user or the
 * group database (getpwnam_r / getgrnam_r, the buffer grown on ERANGE).
 */
static cf_status lookup_id(struct parser *p, const char *value, int is_group,
			   unsigned long *out)
{
	const char *what = is_group ? "group" : "owner";
	const char *kind = is_group ? "group" : "user";
	const char *idname = is_group ? "gid" : "uid";
	unsigned long id;
	int num = numeric_id(value, &id);
	struct passwd pw, *pw_found = NULL;
	struct group gr, *gr_found = NULL;
	size_t size = 4096;
	char *buf = NULL;
	int rc, found = 0;

	if (num == 1) {
		*out = id;
		return CF_OK;
	}
	if (num < 0)
		return fail_at(p, p->line, "%s %.64s is not a valid %s; give "
			       "a %s name or a %s below 4294967295", what, value,
			       idname, kind, idname);
	for (;;) {
		char *bigger = realloc(buf, size);

		if (bigger == NULL) {
			free(buf);
			return cf_error_set(p->err, CF_ERR_NOMEM, "%s:%d: out of "
					    "memory looking up %s \"%.64s\"",
					    p->what, p->line, kind, value);
		}
		buf = bigger;
		rc = is_group ? getgrnam_r(value, &gr, buf, size, &gr_found) :
				getpwnam_r(value, &pw, buf, size, &pw_found);
		if (rc != ERANGE || size >= NSS_BUF_MAX)
			break;
		size *= 2;
	}
	if (gr_found != NULL || pw_found != NULL) {
		*out = gr_found != NULL ? (unsigned long)gr_found->gr_gid :
					  (unsigned long)pw_found->pw_uid;
		found = 1;
	}
	free(buf);
	if (found)
		return CF_OK;
	if (rc != 0 && rc != ENOENT && rc != ESRCH)
		return fail_at(p, p->line, "%s \"%.64s\" could not be looked "
			       "up (%s); check the %s database or give a numeric "
			       "%s", what, value, strerror(rc), kind, idname);
	return fail_at(p, p->line, "%s \"%.64s\" is not a %s on this "
		       "system; create the %s first or give a numeric %s",
		       what, value, kind, kind, idname);
}

static cf_status lookup_owner(struct parser *p, const char *value, uid_t *out)
{
	unsigned long id = 0;
	cf_status rc = lookup_id(p, value, 0, &id);

	if (rc == CF_OK)
		*out = (uid_t)id;
	return rc;
}

static cf_status lookup_group(struct parser *p, const char *value, gid_t *out)
{
	unsigned long id = 0;
	cf_status rc = lookup_id(p, value, 1, &id);

	if (rc == CF_OK)
		*out = (gid_t)id;
	return rc;
}

static ag_sink *current_sink(struct parser *p)
{
	return &p->cfg->sinks[p->cfg->n_sinks - 1];
}

/* "path, mode, owner, group, reload" for the message of an unknown key. */
static void key_list(enum section sec, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; section_keys[sec][i] != NULL && used < size; i++) {
		int n = snprintf(buf + used, size - used, "%s%s",
				 i > 0 ? ", " : "", section_keys[sec][i]);

		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static cf_status nomem(struct parser *p)
{
	return cf_error_set(p->err, CF_ERR_NOMEM, "%s:%d: out of memory",
			    p->what, p->line);
}

static cf_status set_key(struct parser *p, const char *key, const char *value)
{
	const char *const *keys = section_keys[p->section];
	ag_config *cfg = p->cfg;
	char **slot = NULL;
	ag_sink *sink;
	size_t k;
	cf_status rc;

	if (p->section == SEC_NONE)
		return fail_at(p, p->line, "\"%.64s = ...\" comes before any "
			       "section; put it under [server], [agent], [file NAME], "
			       "[template PATH], [group NAME] or [action NAME]", key);
	for (k = 0; keys[k] != NULL; k++)
		if (strcmp(keys[k], key) == 0)
			break;
	if (keys[k] == NULL) {
		char list[128];

		key_list(p->section, list, sizeof(list));
		return fail_at(p, p->line, "unknown key \"%.64s\" in %.200s; the "
			       "keys there are %s", key, p->header, list);
	}
	if (p->key_line[k] != 0)
		return fail_at(p, p->line, "%s is set twice in %.200s (first at "
			       "line %d); keep one", key, p->header, p->key_line[k]);
	p->key_line[k] = p->line;

	switch (p->section) {
	case SEC_SERVER:
		if (strcmp(key, "url") == 0) {
			if (strncmp(value, "https://", 8) != 0 || value[8] == '\0' ||
			    value[8] == '/')
				return fail_at(p, p->line, "url \"%.200s\" is not an "
					       "https:// URL; the agent talks to its "
					       "server over TLS only: write e.g. url = "
					       "https://coffer.example:8443", value);
			for (const char *c = value; *c != '\0'; c++)
				if (is_blank(*c))
					return fail_at(p, p->line, "url \"%.200s\" "
						       "contains a blank; write the URL "
						       "without spaces", value);
			slot = &cfg->server_url;
		} else {
			/* ca = system: the system's CA store (a server with a
			 * publicly trusted certificate), said on purpose. */
			if (!(strcmp(key, "ca") == 0 &&
			      strcmp(value, "system") == 0)) {
				rc = check_path(p, key, value);
				if (rc != CF_OK)
					return rc;
			}
			slot = strcmp(key, "ca") == 0 ? &cfg->server_ca : &cfg->root;
		}
		break;
	case SEC_AGENT:
		if (strcmp(key, "reload_timeout") == 0)
			return parse_number(p, key, value, 1, 3600,
					    &cfg->reload_timeout_s);
		return parse_number(p, key, value, 1, 60, &cfg->wait_s);
	case SEC_FILE:
	case SEC_TEMPLATE:
		sink = current_sink(p);
		if (strcmp(key, "path") == 0 || strcmp(key, "source") == 0) {
			rc = check_path(p, key, value);
			if (rc != CF_OK)
				return rc;
			slot = p->section == SEC_FILE ? &sink->path : &sink->source;
		} else if (strcmp(key, "mode") == 0) {
			return parse_mode(p, value, &sink->mode);
		} else if (strcmp(key, "owner") == 0) {
			return lookup_owner(p, value, &sink->uid);
		} else if (strcmp(key, "group") == 0) {
			return lookup_group(p, value, &sink->gid);
		} else if (strcmp(key, "reload") == 0) {
			return parse_command(p, key, value, &sink->reload,
					     &sink->reload_text);
		} else if (strcmp(key, "restart") == 0) {
			return parse_command(p, key, value, &sink->restart,
					     &sink->restart_text);
		} else if (strcmp(key, "on_change") == 0) {
			return parse_on_change(p, value, &sink->on_change);
		} else if (strcmp(key, "wait") == 0) {
			return parse_wait(p, value, &sink->wait_min_ms,
					  &sink->wait_max_ms);
		} else {
			long ms = 0;

			if (duration_ms(value, strlen(value), &ms) != 0 ||
			    ms < 1000 || ms > 366L * 86400 * 1000)
				return fail_at(p, p->line, "max_stale must be a "
					       "duration from 1s to 366d such as "
					       "30m, 12h or 7d, not \"%.64s\"",
					       value);
			sink->max_stale_s = ms / 1000;
			return CF_OK;
		}
		break;
	case SEC_GROUP: {
		ag_group *g = &cfg->groups[cfg->n_groups - 1];

		if (strcmp(key, "sinks") == 0) {
			struct group_members *m = &p->members[cfg->n_groups - 1];
			cf_error inner = { 0 };

			rc = ag_argv_split(value, &m->paths, &inner);
			if (rc == CF_ERR_NOMEM)
				return nomem(p);
			if (rc != CF_OK)
				return fail_at(p, p->line, "sinks: %s; list the "
					       "paths of the [file] and [template] "
					       "sections, separated by blanks",
					       inner.msg);
			m->line = p->line;
			for (size_t i = 0; m->paths[i] != NULL; i++) {
				rc = check_path(p, "sinks", m->paths[i]);
				if (rc != CF_OK)
					return rc;
			}
			return CF_OK;
		}
		if (strcmp(key, "reload") == 0)
			return parse_command(p, key, value, &g->reload,
					     &g->reload_text);
		if (strcmp(key, "restart") == 0)
			return parse_command(p, key, value, &g->restart,
					     &g->restart_text);
		if (strcmp(key, "on_change") == 0)
			return parse_on_change(p, value, &g->on_change);
		return parse_wait(p, value, &g->wait_min_ms, &g->wait_max_ms);
	}
	case SEC_ACTION:
		return set_action_key(p, key, value);
	case SEC_NONE:
		break;
	}
	if (slot != NULL) {
		*slot = strdup(value);
		if (*slot == NULL)
			return nomem(p);
	}
	return CF_OK;
}

/*
 * on_change of a sink or group: given, or reload / restart / none by the
 * commands present; a mode whose command is missing is refused.
 */
static cf_status settle_on_change(struct parser *p, ag_on_change *on,
				  char **reload, char **restart)
{
	if (!p->on_change_set)
		*on = reload != NULL ? AG_ON_RELOAD :
		      restart != NULL ? AG_ON_RESTART : AG_ON_NONE;
	else if (*on == AG_ON_RELOAD && reload == NULL)
		return fail_at(p, p->section_line, "%.200s has on_change = "
			       "reload but no reload = command; add one, or say "
			       "on_change = none", p->header);
	else if (*on == AG_ON_RESTART && restart == NULL)
		return fail_at(p, p->section_line, "%.200s has on_change = "
			       "restart but no restart = command; add one",
			       p->header);
	return CF_OK;
}

/* The checks that need the whole section: required keys. */
static cf_status end_section(struct parser *p)
{
	switch (p->section) {
	case SEC_GROUP: {
		ag_group *g = &p->cfg->groups[p->cfg->n_groups - 1];

		if (p->members[p->cfg->n_groups - 1].paths == NULL)
			return fail_at(p, p->section_line, "%.200s has no sinks; "
				       "add sinks = PATH PATH ... (the paths of "
				       "its [file] and [template] sections)",
				       p->header);
		return settle_on_change(p, &g->on_change, g->reload, g->restart);
	}
	case SEC_SERVER:
		if (p->cfg->server_url == NULL)
			return fail_at(p, p->section_line, "[server] has no url; "
				       "add url = https://HOST:PORT");
		break;
	case SEC_FILE:
	case SEC_TEMPLATE: {
		ag_sink *sink = current_sink(p);

		if (p->section == SEC_FILE && sink->path == NULL)
			return fail_at(p, p->section_line, "%.200s has no path; add "
				       "path = /absolute/file to say where the value "
				       "goes", p->header);
		if (p->section == SEC_TEMPLATE && sink->source == NULL)
			return fail_at(p, p->section_line, "%.200s has no source; "
				       "add source = /absolute/template to say what to "
				       "render", p->header);
		return settle_on_change(p, &sink->on_change, sink->reload,
					sink->restart);
	}
	case SEC_ACTION:
		if (p->cfg->actions[p->cfg->n_actions - 1].run == NULL)
			return fail_at(p, p->section_line, "%.200s has no run; add "
				       "run = /absolute/program ARGS... (the command "
				       "it runs, without a shell)", p->header);
		break;
	case SEC_AGENT:
	case SEC_NONE:
		break;
	}
	return CF_OK;
}

static cf_status new_sink(struct parser *p, ag_sink_kind kind, const char *arg)
{
	ag_config *cfg = p->cfg;
	ag_sink *sink;

	if (cfg->n_sinks >= AG_CONFIG_MAX_SINKS)
		return cf_error_set(p->err, CF_ERR_TOO_LARGE, "%s:%d: more than "
				    "%u [file] and [template] sections; split the "
				    "secrets over several agents", p->what, p->line,
				    AG_CONFIG_MAX_SINKS);
	if ((cfg->n_sinks & (cfg->n_sinks - 1)) == 0) {
		/* At 0, 1, 2, 4, ...: room for twice as many (at least 4). */
		size_t cap = cfg->n_sinks < 4 ? 4 : cfg->n_sinks * 2;
		ag_sink *bigger = realloc(cfg->sinks, cap * sizeof(*bigger));

		if (bigger == NULL)
			return nomem(p);
		cfg->sinks = bigger;
	}
	sink = &cfg->sinks[cfg->n_sinks++];
	memset(sink, 0, sizeof(*sink));
	sink->kind = kind;
	sink->mode = kind == AG_SINK_FILE ? 0400 : 0440;
	sink->uid = (uid_t)-1;
	sink->gid = (gid_t)-1;
	sink->group = -1;
	sink->line = p->line;
	if (kind == AG_SINK_FILE)
		sink->secret = strdup(arg);
	else
		sink->path = strdup(arg);
	if ((kind == AG_SINK_FILE ? sink->secret : sink->path) == NULL)
		return nomem(p);
	return CF_OK;
}

#define MAX_GROUPS 1000

static cf_status new_group(struct parser *p, const char *name)
{
	ag_config *cfg = p->cfg;
	ag_group *g;
	size_t len = strlen(name);

	if (len == 0 || len > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != len)
		return fail_at(p, p->line, "[group %.64s]: a group's name is 1 to "
			       "64 letters, digits, '-', '_' or '.'; write e.g. "
			       "[group app]", name);
	for (size_t i = 0; i < cfg->n_groups; i++)
		if (strcmp(cfg->groups[i].name, name) == 0)
			return fail_at(p, p->line, "[group %s] appears twice "
				       "(first at line %d); keep one", name,
				       cfg->groups[i].line);
	if (cfg->n_groups >= MAX_GROUPS)
		return cf_error_set(p->err, CF_ERR_TOO_LARGE, "%s:%d: more than "
				    "%d [group] sections", p->what, p->line,
				    MAX_GROUPS);
	if ((cfg->n_groups & (cfg->n_groups + 1)) == 0 || cfg->n_groups == 0) {
		size_t cap = (cfg->n_groups + 1) * 2;
		ag_group *bigger = realloc(cfg->groups, cap * sizeof(*bigger));
		struct group_members *more = realloc(p->members,
						     cap * sizeof(*more));

		if (bigger != NULL)
			cfg->groups = bigger;
		if (more != NULL)
			p->members = more;
		if (bigger == NULL || more == NULL)
			return nomem(p);
	}
	g = &cfg->groups[cfg->n_groups];
	memset(g, 0, sizeof(*g));
	memset(&p->members[cfg->n_groups], 0, sizeof(p->members[0]));
	cfg->n_groups++;
	g->line = p->line;
	g->name = strdup(name);
	if (g->name == NULL)
		return nomem(p);
	p->section = SEC_GROUP;
	snprintf(p->header, sizeof(p->header), "[group %s]", name);
	return CF_OK;
}

/*
 * Each [group]'s sinks = paths name [file]/[template] sections (by the
 * path they write); a sink is in one group at most, and acts only
 * through it: no command or wait of its own.
 */
static cf_status resolve_groups(struct parser *p)
{
	ag_config *cfg = p->cfg;

	for (size_t g = 0; g < cfg->n_groups; g++) {
		struct group_members *m = &p->members[g];

		for (size_t i = 0; m->paths[i] != NULL; i++) {
			ag_sink *sink = NULL;

			for (size_t j = 0; j < cfg->n_sinks && sink == NULL; j++)
				if (strcmp(cfg->sinks[j].path, m->paths[i]) == 0)
					sink = &cfg->sinks[j];
			if (sink == NULL)
				return fail_at(p, m->line, "[group %s]: no [file] "
					       "or [template] section writes %.200s; "
					       "list the paths of this file's sinks",
					       cfg->groups[g].name, m->paths[i]);
			if (sink->group >= 0)
				return fail_at(p, m->line, "[group %s]: %.200s is "
					       "already in [group %s]; a sink belongs "
					       "to one group", cfg->groups[g].name,
					       m->paths[i],
					       cfg->groups[sink->group].name);
			if (sink->reload != NULL || sink->restart != NULL ||
			    sink->wait_max_ms > 0)
				return fail_at(p, sink->line, "this section is in "
					       "[group %s] (line %d), which decides "
					       "when it acts: move its reload, "
					       "restart and wait to the group",
					       cfg->groups[g].name,
					       cfg->groups[g].line);
			sink->group = (int)g;
			sink->on_change = AG_ON_NONE;
		}
	}
	return CF_OK;
}

/* ---------------------------------------------------------- actions */

/*
 * The parenthesis that would close the "^(" we wrap a pattern in: glibc
 * takes an unmatched ')' of an extended regex as a literal, so "a)|.*"
 * compiles, alone and wrapped, but wrapped it reads "^(a)|.*)$", whose
 * second branch is not anchored at the start.  Refused instead: 0 when
 * every ')' outside brackets and escapes closes a '(' of the pattern.
 * Only called on a pattern that compiles, so brackets are well formed.
 */
static int unmatched_close(const char *re)
{
	size_t depth = 0;

	for (size_t i = 0; re[i] != '\0'; i++) {
		if (re[i] == '\\' && re[i + 1] != '\0') {
			i++;
		} else if (re[i] == '[') {
			i++;
			if (re[i] == '^')
				i++;
			if (re[i] == ']')
				i++;        /* a leading ']' is a member */
			while (re[i] != '\0' && re[i] != ']') {
				/* [:class:], [.coll.], [=equiv=] hold no ']' end */
				if (re[i] == '[' && (re[i + 1] == ':' ||
				    re[i + 1] == '.' || re[i + 1] == '=')) {
					char kind = re[i + 1];

					for (i += 2; re[i] != '\0' &&
					     !(re[i] == kind && re[i + 1] == ']'); i++)
						;
					if (re[i] == '\0')
						return 1;
					i++;
				}
				i++;
			}
			if (re[i] == '\0')
				return 1;
		} else if (re[i] == '(') {
			depth++;
		} else if (re[i] == ')') {
			if (depth == 0)
				return 1;
			depth--;
		}
	}
	return 0;
}

/* Longest args pattern, and the most its compiled form may grow. */
#define ARGS_PATTERN_MAX 256u
#define ARGS_PATTERN_COST_MAX 4096.0
#define ARGS_PATTERN_DEPTH_MAX 32

/*
 * An estimate, from above, of the nodes glibc's regcomp builds for a
 * sequence of re at *pos (up to the ')' closing a group, or the end): it
 * copies
 * the tree under '+' once more and under an interval {m,n} up to
 * max(m,n) times, so repetitions nested in each other or stacked one
 * after another multiply ("((a+)+)+..." doubles per '+', "(a{99}){99}"
 * is ten thousand copies) and a short pattern could take gigabytes.
 * Sequences and alternatives add.  Brackets and escapes are one atom;
 * the pattern need not be valid yet (this runs before regcomp).
 */
static double pattern_cost(const char *re, size_t *pos, int depth)
{
	double total = 0, last = 0;

	if (depth > ARGS_PATTERN_DEPTH_MAX)
		return ARGS_PATTERN_COST_MAX * 2;
	/* At the top, a ')' that closes nothing is a literal (glibc). */
	while (re[*pos] != '\0' && (re[*pos] != ')' || depth == 0)) {
		char c = re[(*pos)++];
		double factor = 0;

		if (c == '(') {
			last = pattern_cost(re, pos, depth + 1);
			if (re[*pos] == ')')
				(*pos)++;
			total += last;
		} else if (c == '\\') {
			if (re[*pos] != '\0')
				(*pos)++;
			total += last = 1;
		} else if (c == '[') {
			/* A leading ']' is a member; [:class:] ends in ":]". */
			if (re[*pos] == '^')
				(*pos)++;
			if (re[*pos] == ']')
				(*pos)++;
			while (re[*pos] != '\0' && re[*pos] != ']') {
				if (re[*pos] == '[' && re[*pos + 1] == ':') {
					const char *end = strstr(re + *pos + 2, ":]");

					*pos = end != NULL ? (size_t)(end - re) + 1 :
					       strlen(re);
				}
				if (re[*pos] != '\0')
					(*pos)++;
			}
			if (re[*pos] == ']')
				(*pos)++;
			total += last = 1;
		} else if (c == '+') {
			factor = 2;
		} else if (c == '{') {
			unsigned long most = 0, n = 0;

			for (; re[*pos] >= '0' && re[*pos] <= '9'; (*pos)++)
				n = n < 100000 ? n * 10 + (unsigned long)(re[*pos] - '0') : n;
			most = n;
			if (re[*pos] == ',')
				for (n = 0, (*pos)++; re[*pos] >= '0' &&
				     re[*pos] <= '9'; (*pos)++)
					n = n < 100000 ? n * 10 +
					    (unsigned long)(re[*pos] - '0') : n;
			if (re[*pos] == '}')
				(*pos)++;
			factor = (double)(n > most ? n : most) + 1;
		} else if (c == '|' || c == '*' || c == '?' || c == '^' ||
			   c == '$') {
			total += 1;
		} else {
			total += last = 1;
		}
		if (factor > 0) {
			/* The repetition applies to the last atom. */
			total += last * (factor - 1) + 1;
			last *= factor;
		}
		if (total > ARGS_PATTERN_COST_MAX * 2)
			return total;
	}
	return total;
}

/* args = none | any | REGEX. */
static cf_status parse_args(struct parser *p, ag_action *a, const char *value)
{
	char *wrapped = NULL;
	regex_t alone;
	size_t len, pos;
	double cost;
	int rc;

	if (strcmp(value, "none") == 0) {
		a->args = AG_ARGS_NONE;
		return CF_OK;
	}
	if (strcmp(value, "any") == 0) {
		a->args = AG_ARGS_ANY;
		return CF_OK;
	}
	if (strlen(value) > ARGS_PATTERN_MAX)
		return fail_at(p, p->line, "args: the pattern is longer than %u "
			       "bytes; an argument pattern is short, e.g. args = "
			       "[a-z0-9][a-z0-9-]*", ARGS_PATTERN_MAX);
	pos = 0;
	cost = pattern_cost(value, &pos, 0);
	if (cost > ARGS_PATTERN_COST_MAX)
		return fail_at(p, p->line, "args: \"%.200s\" repeats "
			       "repetitions ('+' and {m,n} inside each other or "
			       "one after another) so much that compiling it "
			       "would take too much memory; simplify it",
			       value);
	rc = regcomp(&alone, value, REG_EXTENDED | REG_NOSUB);
	if (rc == REG_ESPACE)
		return nomem(p);
	if (rc != 0) {
		char why[160];

		regerror(rc, &alone, why, sizeof(why));
		return fail_at(p, p->line, "args: \"%.200s\" is not a POSIX "
			       "extended regular expression (%s); write none, any, "
			       "or a pattern each argument must match in full, e.g. "
			       "args = [a-z0-9][a-z0-9-]*", value, why);
	}
	regfree(&alone);
	if (unmatched_close(value))
		return fail_at(p, p->line, "args: \"%.200s\" has a ')' that "
			       "closes no '(' of the pattern, which would undo "
			       "its anchoring; write \\) for a literal "
			       "parenthesis", value);
	len = strlen(value);
	wrapped = malloc(len + 5);
	a->args_re = calloc(1, sizeof(*a->args_re));
	a->args_text = strdup(value);
	if (wrapped == NULL || a->args_re == NULL || a->args_text == NULL) {
		free(wrapped);
		return nomem(p);
	}
	snprintf(wrapped, len + 5, "^(%s)$", value);
	rc = regcomp(a->args_re, wrapped, REG_EXTENDED | REG_NOSUB);
	free(wrapped);
	if (rc != 0) {
		free(a->args_re);
		a->args_re = NULL;
		return rc == REG_ESPACE ? nomem(p) :
		       fail_at(p, p->line, "args: \"%.200s\" does not compile "
			       "as a whole-argument pattern; simplify it", value);
	}
	a->args = AG_ARGS_REGEX;
	return CF_OK;
}

static cf_status set_action_key(struct parser *p, const char *key,
				const char *value)
{
	ag_action *a = &p->cfg->actions[p->cfg->n_actions - 1];
	long ms = 0;

	if (strcmp(key, "run") == 0)
		return parse_command(p, key, value, &a->run, &a->run_text);
	if (strcmp(key, "args") == 0)
		return parse_args(p, a, value);
	if (duration_ms(value, strlen(value), &ms) != 0 || ms < 1000 ||
	    ms > AG_ACTION_TIMEOUT_MAX_MS)
		return fail_at(p, p->line, "timeout must be a duration from 1s "
			       "to 1h such as 30s, 5m or 1h, not \"%.64s\"", value);
	a->timeout_ms = ms;
	return CF_OK;
}

static cf_status new_action(struct parser *p, const char *name)
{
	ag_config *cfg = p->cfg;
	cf_error inner = { 0 };
	ag_action *a;

	if (*name == '\0')
		return fail_at(p, p->line, "[action] needs a name; write e.g. "
			       "[action restart-app]");
	if (cf_action_name_check(name, &inner) != CF_OK)
		return fail_at(p, p->line, "[action %.64s]: %s; write e.g. "
			       "[action restart-app]", name, inner.msg);
	if (strcmp(name, "status") == 0 || strcmp(name, "refresh") == 0)
		return fail_at(p, p->line, "[action %s]: %s is built in (%s) "
			       "and cannot be configured; give this action "
			       "another name", name, name, name[0] == 's' ?
			       "the agent's status report" : "sync now");
	for (size_t i = 0; i < cfg->n_actions; i++)
		if (strcmp(cfg->actions[i].name, name) == 0)
			return fail_at(p, p->line, "[action %s] appears twice "
				       "(first at line %d); keep one", name,
				       cfg->actions[i].line);
	if (cfg->n_actions >= AG_CONFIG_MAX_ACTIONS)
		return cf_error_set(p->err, CF_ERR_TOO_LARGE, "%s:%d: more than "
				    "%u [action] sections", p->what, p->line,
				    AG_CONFIG_MAX_ACTIONS);
	if ((cfg->n_actions & (cfg->n_actions - 1)) == 0) {
		size_t cap = cfg->n_actions < 4 ? 4 : cfg->n_actions * 2;
		ag_action *bigger = realloc(cfg->actions, cap * sizeof(*bigger));

		if (bigger == NULL)
			return nomem(p);
		cfg->actions = bigger;
	}
	a = &cfg->actions[cfg->n_actions++];
	memset(a, 0, sizeof(*a));
	a->timeout_ms = AG_ACTION_TIMEOUT_DEFAULT_MS;
	a->args = AG_ARGS_NONE;
	a->line = p->line;
	a->name = strdup(name);
	if (a->name == NULL)
		return nomem(p);
	p->section = SEC_ACTION;
	snprintf(p->header, sizeof(p->header), "[action %s]", name);
	return CF_OK;
}

const ag_action *ag_config_action(const ag_config *cfg, const char *name)
{
	for (size_t i = 0; cfg != NULL && i < cfg->n_actions; i++)
		if (strcmp(cfg->actions[i].name, name) == 0)
			return &cfg->actions[i];
	return NULL;
}

cf_status ag_action_args_check(const ag_action *action, char *const *args,
			       size_t n, cf_error *err)
{
	if (n == 0 || action->args == AG_ARGS_ANY)
		return CF_OK;
	if (action->args == AG_ARGS_NONE)
		return cf_error_set(err, CF_ERR_PERMISSION, "action %s takes no "
				    "arguments (args = none in its [action] "
				    "section) and %zu were given", action->name, n);
	for (size_t i = 0; i < n; i++) {
		int rc = regexec(action->args_re, args[i], 0, NULL, 0);

		if (rc == REG_NOMATCH)
			return cf_error_set(err, CF_ERR_PERMISSION, "argument %zu of "
					    "action %s does not match its args "
					    "pattern %.200s in full", i + 1,
					    action->name, action->args_text);
		if (rc != 0)
			return cf_error_set(err, CF_ERR_NOMEM, "action %s: "
					    "matching argument %zu failed (out of "
					    "memory)", action->name, i + 1);
	}
	return CF_OK;
}

static cf_status start_section(struct parser *p, char *inner)
{
	char *arg = inner;
	size_t word;
	cf_status rc;

	while (*arg != '\0' && !is_blank(*arg))
		arg++;
	word = (size_t)(arg - inner);
	arg = trim(arg);

	rc = end_section(p);
	if (rc != CF_OK)
		return rc;
	memset(p->key_line, 0, sizeof(p->key_line));
	p->on_change_set = false;
	p->section_line = p->line;

	if ((word == 6 && strncmp(inner, "server", 6) == 0) ||
	    (word == 5 && strncmp(inner, "agent", 5) == 0)) {
		bool server = word == 6;
		int *seen = server ? &p->server_line : &p->agent_line;

		inner[word] = '\0';
		if (*arg != '\0')
			return fail_at(p, p->line, "[%s] takes nothing after its "
				       "name; write [%s]", inner, inner);
		if (*seen != 0)
			return fail_at(p, p->line, "[%s] appears twice (first at "
				       "line %d); keep one", inner, *seen);
		*seen = p->line;
		p->section = server ? SEC_SERVER : SEC_AGENT;
		snprintf(p->header, sizeof(p->header), "[%s]", inner);
		return CF_OK;
	}
	if (word == 4 && strncmp(inner, "file", 4) == 0) {
		cf_error inner_err = { 0 };

		if (*arg == '\0')
			return fail_at(p, p->line, "[file] needs the secret's name; "
				       "write e.g. [file prod/db/password]");
		if (cf_name_check("secret name", arg, &inner_err) != CF_OK)
			return fail_at(p, p->line, "[file %.200s]: %s; write the "
				       "name as coffer stores it, e.g. [file "
				       "prod/db/password]", arg, inner_err.msg);
		p->section = SEC_FILE;
		snprintf(p->header, sizeof(p->header), "[file %s]", arg);
		return new_sink(p, AG_SINK_FILE, arg);
	}
	if (word == 8 && strncmp(inner, "template", 8) == 0) {
		const char *why;

		if (*arg == '\0')
			return fail_at(p, p->line, "[template] needs the path it "
				       "writes; write e.g. [template /etc/app/app.conf]");
		why = path_problem(arg);
		if (why != NULL)
			return fail_at(p, p->line, "[template %.200s]: the target "
				       "%s; write a plain absolute path such as "
				       "[template /etc/app/app.conf]", arg, why);
		p->section = SEC_TEMPLATE;
		snprintf(p->header, sizeof(p->header), "[template %s]", arg);
		return new_sink(p, AG_SINK_TEMPLATE, arg);
	}
	if (word == 5 && strncmp(inner, "group", 5) == 0)
		return new_group(p, arg);
	if (word == 6 && strncmp(inner, "action", 6) == 0)
		return new_action(p, arg);
	inner[word] = '\0';
	return fail_at(p, p->line, "unknown section [%.64s]; the sections are "
		       "[server], [agent], [file NAME], [template PATH], "
		       "[group NAME] and [action NAME]", inner);
}

/* One line (NUL-terminated, without its end of line). */
static cf_status parse_line(struct parser *p, char *line)
{
	char *s = trim(line), *eq;
	size_t len = strlen(s);

	if (len == 0 || s[0] == '#' || s[0] == ';')
		return CF_OK;
	if (s[0] == '[') {
		if (s[len - 1] != ']')
			return fail_at(p, p->line, "section header without a "
				       "closing ]; write e.g. [server]");
		s[len - 1] = '\0';
		return start_section(p, trim(s + 1));
	}
	eq = strchr(s, '=');
	if (eq == NULL)
		return fail_at(p, p->line, "expected \"key = value\", a [section] "
			       "or a # comment, found \"%.64s\"", s);
	*eq = '\0';
	s = trim(s);
	if (*s == '\0')
		return fail_at(p, p->line, "no key before '='; write key = value");
	if (*trim(eq + 1) == '\0')
		return fail_at(p, p->line, "%.64s has no value; give one, or "
			       "remove the line to get the default", s);
	return set_key(p, s, trim(eq + 1));
}

struct path_ref {
	const char *path;
	int line;
};

static int path_ref_cmp(const void *a, const void *b)
{
	const struct path_ref *x = a, *y = b;
	int c = strcmp(x->path, y->path);

	if (c != 0)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

/*
 * Two sinks writing one file would overwrite each other on every sync.
 * Sorted, so 10,000 sinks cost n log n; of several clashes the one whose
 * later line comes first is reported, so the message does not depend on
 * the sort.
 */
static cf_status check_duplicate_paths(struct parser *p)
{
	ag_config *cfg = p->cfg;
	struct path_ref *refs;
	const struct path_ref *first = NULL, *second = NULL;
	cf_status rc = CF_OK;

	if (cfg->n_sinks < 2)
		return CF_OK;
	refs = calloc(cfg->n_sinks, sizeof(*refs));
	if (refs == NULL)
		return nomem(p);
	for (size_t i = 0; i < cfg->n_sinks; i++) {
		refs[i].path = cfg->sinks[i].path;
		refs[i].line = cfg->sinks[i].line;
	}
	qsort(refs, cfg->n_sinks, sizeof(*refs), path_ref_cmp);
	for (size_t i = 1; i < cfg->n_sinks; i++) {
		if (strcmp(refs[i - 1].path, refs[i].path) != 0)
			continue;
		if (second == NULL || refs[i].line < second->line) {
			first = &refs[i - 1];
			second = &refs[i];
		}
	}
	if (second != NULL)
		rc = fail_at(p, second->line, "this section writes %.200s, which "
			     "the section at line %d writes too; give each [file] "
			     "and [template] its own path", second->path, first->line);
	free(refs);
	return rc;
}

cf_status ag_config_parse(const char *text, size_t len, const char *what,
			  ag_config **out, cf_error *err)
{
	struct parser *p = NULL;
	ag_config *cfg = NULL;
	char *line = NULL;
	size_t pos = 0;
	cf_status rc = CF_OK;

	*out = NULL;
	if (what == NULL)
		what = "configuration";
	if (len > AG_CONFIG_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE, "%s: %zu bytes is more "
				    "than the limit of %u for a configuration file; "
				    "split the secrets over several agents", what, len,
				    AG_CONFIG_MAX_BYTES);
	p = calloc(1, sizeof(*p));
	cfg = calloc(1, sizeof(*cfg));
	line = malloc(AG_CONFIG_MAX_LINE + 1);
	if (p == NULL || cfg == NULL || line == NULL ||
	    (cfg->path = strdup(what)) == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "%s: out of memory", what);
		goto out;
	}
	cfg->reload_timeout_s = 30;
	cfg->wait_s = 55;
	p->what = what;
	p->cfg = cfg;
	p->err = err;

	while (pos < len) {
		const char *start = text + pos;
		const char *nl = memchr(start, '\n', len - pos);
		size_t line_len = nl != NULL ? (size_t)(nl - start) : len - pos;

		pos += line_len + (nl != NULL);
		p->line++;
		if (line_len > 0 && start[line_len - 1] == '\r')
			line_len--;
		if (line_len > AG_CONFIG_MAX_LINE) {
			rc = fail_at(p, p->line, "line is longer than %u bytes; "
				     "shorten it", AG_CONFIG_MAX_LINE);
			goto out;
		}
		for (size_t i = 0; i < line_len; i++) {
			unsigned char c = (unsigned char)start[i];

			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				rc = fail_at(p, p->line, "control byte 0x%02x at "
					     "column %zu; the configuration is plain "
					     "text, one setting per line", c, i + 1);
				goto out;
			}
		}
		memcpy(line, start, line_len);
		line[line_len] = '\0';
		rc = parse_line(p, line);
		if (rc != CF_OK)
			goto out;
	}
	rc = end_section(p);
	if (rc != CF_OK)
		goto out;
	if (p->server_line == 0) {
		rc = cf_error_set(err, CF_ERR_PARSE, "%s: no [server] section; "
				  "add [server] with url = https://HOST:PORT", what);
		goto out;
	}
	rc = check_duplicate_paths(p);
	if (rc == CF_OK)
		rc = resolve_groups(p);
	if (rc != CF_OK)
		goto out;
	*out = cfg;
	cfg = NULL;
out:
	/* p->cfg is still the configuration, handed out or not. */
	if (p != NULL && p->members != NULL)
		for (size_t g = 0; g < p->cfg->n_groups; g++)
			ag_argv_free(p->members[g].paths);
	if (p != NULL)
		free(p->members);
	ag_config_free(cfg);
	free(line);
	free(p);
	return rc;
}

/*
 * A world-writable configuration would let every local user choose the
 * commands the agent runs and where secrets go; a world-writable template
 * which secrets land in its target.  Both are refused, not repaired.
 */
cf_status ag_config_read_text(const char *path, size_t max, char **text,
			      size_t *len, cf_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t used = 0;
	int fd;
	cf_status rc = CF_OK;

	*text = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "cannot open %s: %s", path,
				    strerror(errno));
	if (fstat(fd, &st) != 0) {
		rc = cf_error_set(err, CF_ERR_IO, "cannot stat %s: %s", path,
				  strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = cf_error_set(err, CF_ERR_IO, "%s is not a regular file; "
				  "give the path of the configuration file", path);
		goto out;
	}
	if (st.st_mode & S_IWOTH) {
		rc = cf_error_set(err, CF_ERR_IO, "%s is writable by every user "
				  "(mode %04o), who could then decide where secrets "
				  "go; chmod o-w %s", path,
				  (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	buf = malloc(max + 2);
	if (buf == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory reading %s",
				  path);
		goto out;
	}
	/* Read one byte past the limit, to tell "exactly max" from "more". */
	while (used <= max) {
		ssize_t got = read(fd, buf + used, max + 1 - used);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = cf_error_set(err, CF_ERR_IO, "cannot read %s: %s",
					  path, strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		used += (size_t)got;
	}
	if (used > max) {
		rc = cf_error_set(err, CF_ERR_TOO_LARGE, "%s is larger than the "
				  "limit of %zu bytes", path, max);
		goto out;
	}
	buf[used] = '\0';
	*text = buf;
	*len = used;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

cf_status ag_config_load(const char *path, ag_config **out, cf_error *err)
{
	char *text = NULL;
	size_t len = 0;
	cf_status rc;

	*out = NULL;
	rc = ag_config_read_text(path, AG_CONFIG_MAX_BYTES, &text, &len, err);
	if (rc == CF_OK)
		rc = ag_config_parse(text, len, path, out, err);
	free(text);
	return rc;
}

void ag_config_free(ag_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n_sinks; i++) {
		ag_sink *sink = &cfg->sinks[i];

		free(sink->secret);
		free(sink->path);
		free(sink->source);
		ag_argv_free(sink->reload);
		free(sink->reload_text);
		ag_argv_free(sink->restart);
		free(sink->restart_text);
	}
	for (size_t i = 0; i < cfg->n_groups; i++) {
		ag_group *g = &cfg->groups[i];

		free(g->name);
		ag_argv_free(g->reload);
		free(g->reload_text);
		ag_argv_free(g->restart);
		free(g->restart_text);
	}
	for (size_t i = 0; i < cfg->n_actions; i++) {
		ag_action *a = &cfg->actions[i];

		free(a->name);
		ag_argv_free(a->run);
		free(a->run_text);
		free(a->args_text);
		if (a->args_re != NULL)
			regfree(a->args_re);
		free(a->args_re);
	}
	free(cfg->actions);
	free(cfg->groups);
	free(cfg->sinks);
	free(cfg->path);
	free(cfg->server_url);
	free(cfg->server_ca);
	free(cfg->root);
	free(cfg);
}

/* ------------------------------------------------------------ argv */

/*
 * The words are collected into buf (each NUL-terminated) and then moved
 * with their pointers into one block, so that ag_argv_free is one free().
 * A word of k bytes of line yields at most k bytes and a NUL, and every
 * word but the last is followed by a blank, so buf never needs more than
 * strlen(line) + 1 bytes.
 */
cf_status ag_argv_split(const char *line, char ***argv, cf_error *err)
{
	size_t len, used = 0, n = 0, i = 0;
	size_t *starts = NULL;
	char *buf = NULL, **vec = NULL;
	cf_status rc = CF_OK;

	*argv = NULL;
	len = strnlen(line, AG_ARGV_MAX_BYTES + 1);
	if (len > AG_ARGV_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE, "the command is longer "
				    "than %u bytes; put it in a script and run that",
				    AG_ARGV_MAX_BYTES);
	buf = malloc(len + 1);
	starts = malloc(AG_ARGV_MAX_WORDS * sizeof(*starts));
	if (buf == NULL || starts == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory splitting a "
				  "command");
		goto out;
	}
	for (;;) {
		while (is_blank(line[i]))
			i++;
		if (line[i] == '\0')
			break;
		if (n == AG_ARGV_MAX_WORDS) {
			rc = cf_error_set(err, CF_ERR_PARSE, "the command has more "
					  "than %u words; put it in a script and run "
					  "that", AG_ARGV_MAX_WORDS);
			goto out;
		}
		starts[n++] = used;
		while (line[i] != '\0' && !is_blank(line[i])) {
			char quote = line[i];
			unsigned char c = (unsigned char)quote;

			if (c < 0x20 || c == 0x7f) {
				rc = cf_error_set(err, CF_ERR_PARSE, "control byte "
						  "0x%02x at byte %zu of the command; "
						  "write it as plain text", c, i + 1);
				goto out;
			}
			if (quote != '\'' && quote != '"') {
				buf[used++] = line[i++];
				continue;
			}
			for (i++;; i++) {
				c = (unsigned char)line[i];
				if (c == '\0') {
					rc = cf_error_set(err, CF_ERR_PARSE, "a %c "
							  "quote is not closed; close it "
							  "with another %c", quote, quote);
					goto out;
				}
				if (c == (unsigned char)quote)
					break;
				if ((c < 0x20 && c != '\t') || c == 0x7f) {
					rc = cf_error_set(err, CF_ERR_PARSE,
							  "control byte 0x%02x at byte "
							  "%zu of the command; write it "
							  "as plain text", c, i + 1);
					goto out;
				}
				if (quote == '"' && c == '\\' &&
				    (line[i + 1] == '"' || line[i + 1] == '\\'))
					c = (unsigned char)line[++i];
				buf[used++] = (char)c;
			}
			i++;
		}
		buf[used++] = '\0';
	}
	if (n == 0) {
		rc = cf_error_set(err, CF_ERR_PARSE, "the command is empty; give "
				  "an absolute program path and its arguments");
		goto out;
	}
	if (buf[0] != '/') {
		rc = cf_error_set(err, CF_ERR_PARSE, "the program \"%.200s\" is "
				  "not an absolute path; commands run without a shell "
				  "or PATH search: write e.g. /usr/bin/systemctl",
				  buf);
		goto out;
	}
	vec = malloc((n + 1) * sizeof(*vec) + used);
	if (vec == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory splitting a "
				  "command");
		goto out;
	}
	memcpy((char *)(vec + n + 1), buf, used);
	for (size_t w = 0; w < n; w++)
		vec[w] = (char *)(vec + n + 1) + starts[w];
	vec[n] = NULL;
	*argv = vec;
out:
	free(starts);
	free(buf);
	return rc;
}

void ag_argv_free(char **argv)
{
	free(argv);
}
