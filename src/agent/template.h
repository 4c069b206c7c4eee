/*
 * template.h - config templates with secrets in them (docs/AGENT.md).
 *
 *   password = {{ secret "prod/db/password" }}
 *   "token": {{ secret "prod/api/token" | json }}
 *
 * Text outside {{ }} is copied as is.  Inside, one action: `secret "NAME"`
 * (the value's bytes) or `secret "NAME" | json` (the value as one JSON
 * string, quotes included, so it can stand as a JSON value).  Blanks
 * inside the braces are free.  Anything else in braces, a {{ without }},
 * a name that is not a valid secret name: a parse error naming the line
 * and column.  A literal "{{" is written {{ "{{" }}.
 *
 * The template source is configuration, not secret; the rendered output
 * holds secrets and lives only in secure memory.
 */
#ifndef CF_AGENT_TEMPLATE_H
#define CF_AGENT_TEMPLATE_H

#include <stddef.h>

#include "config.h"       /* AG_TEMPLATE_SOURCE_MAX_BYTES */
#include "error.h"
#include "secmem.h"

/* Largest rendered output. */
#define AG_TEMPLATE_OUTPUT_MAX_BYTES (4u * 1024u * 1024u)

typedef struct ag_template ag_template;

/*
 * Parses len bytes of template text (at most
 * AG_TEMPLATE_SOURCE_MAX_BYTES); what names it in messages ("FILE").
 * Refusal: CF_ERR_PARSE "FILE:LINE:COL: ...".
 */
cf_status ag_template_parse(const char *text, size_t len, const char *what,
			    ag_template **out, cf_error *err);

/* Reads and parses a template file. */
cf_status ag_template_load(const char *path, ag_template **out,
			   cf_error *err);

/* The distinct secret names the template uses, in first-use order. */
size_t ag_template_n_names(const ag_template *t);
const char *ag_template_name(const ag_template *t, size_t i);

/*
 * Gives the value of secret name, or NULL when the agent does not have
 * it (the render then fails with CF_ERR_NOT_FOUND naming it).  The
 * returned secret stays owned by the callback's owner.
 */
typedef const cf_secret *(*ag_template_lookup)(void *ctx, const char *name);

/*
 * Renders into a new secret.  Refusals: CF_ERR_NOT_FOUND (a secret the
 * agent does not have), CF_ERR_PARSE (| json on a value that is not
 * UTF-8), CF_ERR_TOO_LARGE (output above AG_TEMPLATE_OUTPUT_MAX_BYTES).
 * No message ever contains a secret's value.
 */
cf_status ag_template_render(const ag_template *t, ag_template_lookup lookup,
			     void *ctx, cf_secret **out, cf_error *err);

void ag_template_free(ag_template *t);

#endif
