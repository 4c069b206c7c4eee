/*
 * apply.c - bringing the configured sinks up to date (docs/AGENT.md
 * "Files, templates and reloads").
 *
 * A pass opens the secrets of one sink at a time from the cache
 * (verifying them again: a signer may have been revoked since) and
 * writes the file or rendered template only if its bytes changed; then
 * each changed sink's on_change command (reload or restart), and each
 * [group]'s once if one of its members changed, runs once per distinct
 * command line.  When they run is the caller's: at once, or after the
 * sink or group settled (run.c).  A sink that cannot
 * be brought up to date (a secret not received, a template that does not
 * parse or names an unknown secret, a write that fails) is logged and
 * left exactly as it was.
 *
 * Each pass also notes, per secret it used, the version the sinks hold
 * and whether they were written, for the acknowledgement the agent then
 * signs (acks.c); a sink's command that fails afterwards makes that
 * acknowledgement "failed" too.
 *
 * Plaintext lives here in the opened records (cf_record, secure memory)
 * and the rendered template (cf_secret) of one sink, and is wiped before
 * the next sink.
 */
#include "runtime.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hook.h"
#include "log.h"
#include "sink_file.h"
#include "template.h"

struct opened {
	char *name;
	cf_record *rec;             /* NULL: could not be opened, */
	cf_error why;               /* and why */
};

struct pass {
	ag_runtime *rt;
	struct opened *items;
	size_t n, cap;
};

/* name opened for this pass (once), NULL when out of memory. */
static struct opened *opened_get(struct pass *p, const char *name)
{
	cf_record *rec = NULL;
	cf_error why = { 0 };

	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->items[i].name, name) == 0)
			return &p->items[i];
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct opened *grown = OPENSSL_realloc(p->items,
						       cap * sizeof(*grown));

		if (grown == NULL)
			return NULL;
		p->items = grown;
		p->cap = cap;
	}
	/* A cached version that no longer verifies (its signer revoked
	 * since) is news in its own right; a missing one the sink reports. */
	if (ag_open_cached(p->rt, name, &rec, &why) != CF_OK &&
	    why.code != CF_ERR_NOT_FOUND)
		ag_log(AG_LOG_ERROR, "cached %s: %s", name, why.msg);
	p->items[p->n].name = OPENSSL_strdup(name);
	if (p->items[p->n].name == NULL) {
		cf_record_free(rec);
		return NULL;
	}
	p->items[p->n].why = why;
	p->items[p->n].rec = rec;
	return &p->items[p->n++];
}

/* The template lookup: the value of name, NULL when unavailable. */
static const cf_secret *lookup(void *ctx, const char *name)
{
	struct opened *o = opened_get(ctx, name);

	return o != NULL && o->rec != NULL ? o->rec->value : NULL;
}

static void pass_free(struct pass *p)
{
	for (size_t i = 0; i < p->n; i++) {
		OPENSSL_free(p->items[i].name);
		cf_record_free(p->items[i].rec);
	}
	OPENSSL_free(p->items);
}

static int names_hit(char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return 1;
	return 0;
}

/* Whether sink uses one of names; a template's source is parsed for it. */
static int sink_uses(const ag_sink *sink, char *const *names, size_t n)
{
	ag_template *t = NULL;
	int hit = 0;

	if (sink->kind == AG_SINK_FILE)
		return names_hit(names, n, sink->secret);
	/* A template that does not load is news: say it is used. */
	if (ag_template_load(sink->source, &t, NULL) != CF_OK)
		return 1;
	for (size_t i = 0; !hit && i < ag_template_n_names(t); i++)
		hit = names_hit(names, n, ag_template_name(t, i));
	ag_template_free(t);
	return hit;
}

void ag_sinks_using(const ag_config *cfg, char *const *names, size_t n,
		    unsigned char *out)
{
	for (size_t i = 0; i < cfg->n_sinks; i++)
		out[i] = sink_uses(&cfg->sinks[i], names, n) ? 1 : 0;
}

/*
 * max_stale: a sink whose values the server has not confirmed for that
 * long is taken away rather than served.
 */
static int too_stale(const ag_runtime *rt, const ag_sink *sink)
{
	time_t confirmed = ag_state_confirmed(rt->st);

	/* Only once the server was asked and did not answer: at start (or
	 * on SIGHUP) it may well be there. */
	return sink->max_stale_s > 0 && rt->contact_failed &&
	       (confirmed == 0 || time(NULL) - confirmed > sink->max_stale_s);
}

/* Brings one sink up to date; *changed says its file was rewritten. */
static cf_status apply_sink(struct pass *p, const ag_sink *sink, int *changed,
			    uint64_t *version, char *what, size_t what_size,
			    cf_error *err)
{
	ag_template *t = NULL;
	cf_secret *rendered = NULL;
	const cf_secret *value;
	cf_status rc = CF_OK;

	*changed = 0;
	if (too_stale(p->rt, sink)) {
		time_t confirmed = ag_state_confirmed(p->rt->st);

		if (unlink(sink->path) == 0)
			ag_log(AG_LOG_WARN, "removed %s: the server has not "
			       "confirmed its value for more than max_stale (%ld s)",
			       sink->path, sink->max_stale_s);
		return cf_error_set(err, CF_ERR_STALE, "not served: the server "
			"has not confirmed this agent's secrets for %lld s, more "
			"than max_stale = %ld s", confirmed ? (long long)(time(NULL) -
			confirmed) : -1LL, sink->max_stale_s);
	}
	if (sink->kind == AG_SINK_TEMPLATE) {
		rc = ag_template_load(sink->source, &t, err);
		if (rc != CF_OK)
			goto out;
	}
	if (sink->kind == AG_SINK_FILE) {
		struct opened *o = opened_get(p, sink->secret);

		if (o == NULL) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (o->rec == NULL) {
			rc = cf_error_set(err, o->why.code, "%s", o->why.msg);
			goto out;
		}
		value = o->rec->value;
		*version = o->rec->version;
		snprintf(what, what_size, "%s v%llu", sink->secret,
			 (unsigned long long)o->rec->version);
	} else {
		rc = ag_template_render(t, lookup, p, &rendered, err);
		if (rc != CF_OK)
			goto out;
		value = rendered;
		snprintf(what, what_size, "template %s", sink->source);
	}
	rc = ag_file_put(sink->path, cf_secret_cdata(value), cf_secret_len(value),
			 sink->mode, sink->uid, sink->gid, changed, err);
out:
	cf_secret_free(rendered);
	ag_template_free(t);
	return rc;
}

/*
 * The acknowledgement notes of one sink's pass (acks.c): every secret it
 * opened, at the version opened (0: not opened, the highest accepted),
 * written or failed for reason.
 */
static void note_acks(ag_runtime *rt, const ag_sink *sink,
		      const struct pass *p, const char *reason)
{
	if (sink->kind == AG_SINK_FILE && p->n == 0)
		ag_acks_note(rt, sink->secret, 0, reason);
	for (size_t i = 0; i < p->n; i++)
		ag_acks_note(rt, p->items[i].name, p->items[i].rec != NULL ?
			     p->items[i].rec->version : 0, reason);
}

/* Runs one command; 0 when it ran and exited 0. */
static int run_command(const char *what, char **argv, const char *text,
		       long timeout_s)
{
	cf_error err = { 0 };
	int status = 0;

	ag_log(AG_LOG_INFO, "running %s: %s", what, text);
	if (ag_hook_run(argv, timeout_s, &status, &err) != CF_OK) {
		ag_log(AG_LOG_ERROR, "%s", err.msg);
		return -1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		ag_log(AG_LOG_INFO, "%s exited 0: %s", what, text);
		return 0;
	}
	if (WIFEXITED(status))
		ag_log(AG_LOG_ERROR, "%s exited %d: %s", what, WEXITSTATUS(status),
		       text);
	else if (WIFSIGNALED(status))
		ag_log(AG_LOG_ERROR, "%s killed by signal %d: %s", what,
		       WTERMSIG(status), text);
	return -1;
}

size_t ag_apply_sinks(ag_runtime *rt, const ag_config *cfg,
		      const unsigned char *which, unsigned char *changed_out,
		      unsigned char *failed_out)
{
	size_t stale = 0;

	ag_acks_begin(rt);
	for (size_t i = 0; i < cfg->n_sinks; i++) {
		const ag_sink *sink = &cfg->sinks[i];
		struct pass p = { .rt = rt };
		cf_error err = { 0 };
		char what[PATH_MAX + 32] = "";
		const char *kind = sink->kind == AG_SINK_FILE ? "file" : "template";
		const char *from = sink->kind == AG_SINK_FILE ? sink->secret :
				   sink->source;
		uint64_t version = 0;
		int changed = 0;
		cf_status rc;

		if (changed_out != NULL)
			changed_out[i] = 0;
		if (which != NULL && !which[i])
			continue;
		if (failed_out != NULL)
			failed_out[i] = 0;
		/* One sink's values at a time: the secure heap holds at most
		 * what one file or one template needs. */
		rc = apply_sink(&p, sink, &changed, &version, what, sizeof(what),
				&err);
		note_acks(rt, sink, &p, rc == CF_OK ? NULL : err.msg);
		pass_free(&p);
		if (rt->status != NULL && rc != CF_OK)
			ag_status_sink_failed(rt->status, sink->path, kind, from,
					      err.msg);
		else if (rt->status != NULL)
			ag_status_sink_ok(rt->status, sink->path, kind, from,
					  version, changed);
		if (rc != CF_OK) {
			stale++;
			if (failed_out != NULL)
				failed_out[i] = 1;
			/* A secret not put yet is a wait, not a failure. */
			ag_log(err.code == CF_ERR_NOT_FOUND ? AG_LOG_WARN :
			       AG_LOG_ERROR, "%s not updated (%s, line %d): %s",
			       sink->path, cfg->path, sink->line, err.msg);
			/* Written but not made durable: the command still runs. */
			if (!changed)
				continue;
		}
		if (!changed) {
			ag_log(AG_LOG_DEBUG, "%s is up to date", sink->path);
			continue;
		}
		ag_log(AG_LOG_INFO, "wrote %s (%s)", sink->path, what);
		if (changed_out != NULL)
			changed_out[i] = 1;
	}
	ag_acks_end(rt);
	ag_report(rt);
	return stale;
}

/* Whether text is among the first n of done (each command runs once). */
static int ran(const char **done, size_t n, const char *text)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(done[i], text) == 0)
			return 1;
	return 0;
}

void ag_run_commands(const ag_config *cfg, const unsigned char *changed,
		     long timeout_s, unsigned char *failed)
{
	size_t max = cfg->n_sinks + cfg->n_groups, n_done = 0;
	const char **done = max ? OPENSSL_zalloc(max * sizeof(*done)) : NULL;

	if (max > 0 && done == NULL) {
		ag_log(AG_LOG_ERROR, "out of memory; no command runs");
		return;
	}
	/* Every value is wiped before any command runs (apply_sink). */
	for (size_t i = 0; i < cfg->n_sinks && !ag_stopping(); i++) {
		const ag_sink *sink = &cfg->sinks[i];
		int restart = sink->on_change == AG_ON_RESTART;
		const char *text = restart ? sink->restart_text : sink->reload_text;

		if (!changed[i] || sink->group >= 0 ||
		    sink->on_change == AG_ON_NONE || ran(done, n_done, text))
			continue;
		done[n_done++] = text;
		if (run_command(restart ? "restart" : "reload",
				restart ? sink->restart : sink->reload, text,
				timeout_s) != 0 && failed != NULL)
			/* Every changed sink sharing this command line. */
			for (size_t j = i; j < cfg->n_sinks; j++)
				if (changed[j] && cfg->sinks[j].group < 0 &&
				    cfg->sinks[j].on_change == sink->on_change &&
				    strcmp(restart ? cfg->sinks[j].restart_text ?
					   cfg->sinks[j].restart_text : "" :
					   cfg->sinks[j].reload_text ?
					   cfg->sinks[j].reload_text : "",
					   text) == 0)
					failed[j] = 1;
	}
	for (size_t g = 0; g < cfg->n_groups && !ag_stopping(); g++) {
		const ag_group *grp = &cfg->groups[g];
		int restart = grp->on_change == AG_ON_RESTART, any = 0;
		const char *text = restart ? grp->restart_text : grp->reload_text;

		for (size_t i = 0; i < cfg->n_sinks; i++)
			any |= changed[i] && cfg->sinks[i].group == (int)g;
		if (!any || grp->on_change == AG_ON_NONE || ran(done, n_done, text))
			continue;
		done[n_done++] = text;
		if (run_command(restart ? "restart" : "reload",
				restart ? grp->restart : grp->reload, text,
				timeout_s) != 0 && failed != NULL)
			for (size_t i = 0; i < cfg->n_sinks; i++)
				if (cfg->sinks[i].group == (int)g)
					failed[i] = 1;
	}
	OPENSSL_free(done);
}

size_t ag_apply(ag_runtime *rt, const ag_config *cfg, char *const *names,
		size_t n_names, long reload_timeout_s)
{
	unsigned char *which = NULL, *changed = NULL;
	size_t stale;

	if (cfg->n_sinks == 0)
		return 0;
	changed = OPENSSL_zalloc(cfg->n_sinks);
	which = names != NULL ? OPENSSL_zalloc(cfg->n_sinks) : NULL;
	if (changed == NULL || (names != NULL && which == NULL)) {
		OPENSSL_free(changed);
		OPENSSL_free(which);
		ag_log(AG_LOG_ERROR, "out of memory");
		return cfg->n_sinks;
	}
	if (which != NULL)
		ag_sinks_using(cfg, names, n_names, which);
	stale = ag_apply_sinks(rt, cfg, which, changed, NULL);
	{
		unsigned char *failed = OPENSSL_zalloc(cfg->n_sinks);

		ag_run_commands(cfg, changed, reload_timeout_s, failed);
		ag_acks_begin(rt);
		for (size_t i = 0; failed != NULL && i < cfg->n_sinks; i++) {
			const ag_sink *sink = &cfg->sinks[i];

			if (!failed[i])
				continue;
			stale++;
			ag_acks_note_sink(rt, sink, "the file is up to date but "
					  "its command failed");
			if (rt->status != NULL)
				ag_status_sink_failed(rt->status, sink->path,
					sink->kind == AG_SINK_FILE ? "file" :
					"template", sink->kind == AG_SINK_FILE ?
					sink->secret : sink->source, "the file is "
					"up to date but its command failed (see the "
					"log)");
		}
		ag_acks_end(rt);
		OPENSSL_free(failed);
		ag_report(rt);
	}
	OPENSSL_free(which);
	OPENSSL_free(changed);
	return stale;
}
