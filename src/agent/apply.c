/*
 * apply.c - bringing the configured sinks up to date (docs/AGENT.md
 * "Files, templates and reloads").
 *
 * A pass opens the secrets of one sink at a time from the cache
 * (verifying them again: a signer may have been revoked since), writes
 * the file or rendered template only if its bytes changed, and then runs each
 * distinct reload command of the changed sinks once.  A sink that cannot
 * be brought up to date (a secret not received, a template that does not
 * parse or names an unknown secret, a write that fails) is logged and
 * left exactly as it was.
 *
 * Plaintext lives here in the opened records (cf_record, secure memory)
 * and the rendered template (cf_secret) of one sink, and is wiped before
 * the next sink.
 */
#include "runtime.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

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
static int sink_uses(const ag_sink *sink, const ag_template *t,
		     char *const *names, size_t n)
{
	if (sink->kind == AG_SINK_FILE)
		return names_hit(names, n, sink->secret);
	for (size_t i = 0; t != NULL && i < ag_template_n_names(t); i++)
		if (names_hit(names, n, ag_template_name(t, i)))
			return 1;
	return 0;
}

/* Brings one sink up to date; *changed says its file was rewritten. */
static cf_status apply_sink(struct pass *p, const ag_sink *sink,
			    char *const *names, size_t n_names, int *changed,
			    int *looked, char *what, size_t what_size,
			    cf_error *err)
{
	ag_template *t = NULL;
	cf_secret *rendered = NULL;
	const cf_secret *value;
	cf_status rc = CF_OK;

	*changed = 0;
	*looked = 0;
	if (sink->kind == AG_SINK_TEMPLATE) {
		rc = ag_template_load(sink->source, &t, err);
		if (rc != CF_OK) {
			*looked = 1;  /* a broken template is news, always */
			goto out;
		}
	}
	if (names != NULL && !sink_uses(sink, t, names, n_names))
		goto out;
	*looked = 1;
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

static void run_reload(const ag_sink *sink, long timeout_s)
{
	cf_error err = { 0 };
	int status = 0;

	ag_log(AG_LOG_INFO, "running reload: %s", sink->reload_text);
	if (ag_hook_run(sink->reload, timeout_s, &status, &err) != CF_OK)
		ag_log(AG_LOG_ERROR, "%s", err.msg);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		ag_log(AG_LOG_INFO, "reload exited 0: %s", sink->reload_text);
	else if (WIFEXITED(status))
		ag_log(AG_LOG_ERROR, "reload exited %d: %s", WEXITSTATUS(status),
		       sink->reload_text);
	else if (WIFSIGNALED(status))
		ag_log(AG_LOG_ERROR, "reload killed by signal %d: %s",
		       WTERMSIG(status), sink->reload_text);
}

size_t ag_apply(ag_runtime *rt, const ag_config *cfg, char *const *names,
		size_t n_names, long reload_timeout_s)
{
	const ag_sink **reloads = NULL;
	size_t n_reloads = 0, stale = 0;

	if (cfg->n_sinks > 0) {
		reloads = OPENSSL_zalloc(cfg->n_sinks * sizeof(*reloads));
		if (reloads == NULL) {
			ag_log(AG_LOG_ERROR, "out of memory");
			return cfg->n_sinks;
		}
	}
	for (size_t i = 0; i < cfg->n_sinks; i++) {
		const ag_sink *sink = &cfg->sinks[i];
		struct pass p = { .rt = rt };
		cf_error err = { 0 };
		char what[PATH_MAX + 32] = "";
		int changed = 0, looked = 0, dup = 0;
		cf_status rc;

		/* One sink's values at a time: the secure heap holds at most
		 * what one file or one template needs. */
		rc = apply_sink(&p, sink, names, n_names, &changed, &looked,
				what, sizeof(what), &err);
		pass_free(&p);
		if (rc != CF_OK) {
			stale++;
			/* A secret not put yet is a wait, not a failure. */
			ag_log(err.code == CF_ERR_NOT_FOUND ? AG_LOG_WARN :
			       AG_LOG_ERROR, "%s not updated (%s, line %d): %s",
			       sink->path, cfg->path, sink->line, err.msg);
			/* Written but not made durable: the reload still runs. */
			if (!changed)
				continue;
		}
		if (!changed) {
			if (looked)
				ag_log(AG_LOG_DEBUG, "%s is up to date", sink->path);
			continue;
		}
		ag_log(AG_LOG_INFO, "wrote %s (%s)", sink->path, what);
		if (sink->reload == NULL)
			continue;
		for (size_t j = 0; j < n_reloads; j++)
			dup |= strcmp(reloads[j]->reload_text,
				      sink->reload_text) == 0;
		if (!dup)
			reloads[n_reloads++] = sink;
	}
	/* Every value is wiped before any reload runs. */
	for (size_t j = 0; j < n_reloads && !ag_stopping(); j++)
		run_reload(reloads[j], reload_timeout_s);
	OPENSSL_free(reloads);
	return stale;
}
