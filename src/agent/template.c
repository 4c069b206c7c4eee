/*
 * template.c - config templates with secrets in them (template.h,
 * docs/AGENT.md "Templates").
 *
 * Parsing turns the source into a list of nodes: literal text (kept, with
 * string literals unescaped, in one buffer no larger than the source) and
 * secret uses (an index into the distinct names, plus whether | json
 * applies).  Invariants:
 *   - one left-to-right pass; names are de-duplicated with a hash set,
 *     so parsing is linear in the source, and rendering linear in the
 *     output;
 *   - an action never spans lines, so every error has an exact
 *     LINE:COL (1-based, COL in bytes);
 *   - the source and the parsed template hold no secret; the rendered
 *     output exists only in a cf_secret, and the | json encoding is done
 *     by jansson, whose allocations cf_secmem_init puts on the secure
 *     heap.  No message ever quotes a value, only names and positions.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "policy.h"
#include "template.h"

enum node_kind { NODE_TEXT, NODE_SECRET, NODE_JSON };

struct node {
	enum node_kind kind;
	size_t off, len;        /* NODE_TEXT: bytes of t->text */
	size_t name;            /* otherwise: index into t->names */
	unsigned line, col;     /* where the action's {{ is */
};

struct name {
	char *name;
	unsigned line, col;     /* the {{ of its first use, for "not found" */
};

struct ag_template {
	char *what;
	char *text;             /* literal bytes of all text nodes */
	size_t text_len;
	struct node *nodes;
	size_t n_nodes, cap_nodes;
	struct name *names;
	size_t n_names, cap_names;
};

struct tparser {
	const char *src;
	size_t len;
	size_t line_start;      /* offset of the current line's first byte */
	unsigned line;
	ag_template *t;
	size_t *slots;          /* hash set of names: index + 1, 0 empty */
	size_t n_slots;         /* a power of two, > 2 * t->n_names */
	cf_error *err;
};

static unsigned col_of(const struct tparser *p, size_t pos)
{
	return (unsigned)(pos - p->line_start + 1);
}

__attribute__((format(printf, 3, 4)))
static cf_status fail_at(struct tparser *p, size_t pos, const char *fmt, ...)
{
	char msg[CF_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return cf_error_set(p->err, CF_ERR_PARSE, "%s:%u:%u: %s", p->t->what,
			    p->line, col_of(p, pos), msg);
}

static cf_status nomem(cf_error *err, const char *what)
{
	return cf_error_set(err, CF_ERR_NOMEM, "%s: out of memory", what);
}

/* What was found where something else was expected, printable. */
static const char *describe(const struct tparser *p, size_t pos, char *buf,
			    size_t size)
{
	unsigned char c;

	if (pos >= p->len)
		return "the end of the template";
	c = (unsigned char)p->src[pos];
	if (c == '\n' || c == '\r')
		return "the end of the line";
	if (c >= 0x21 && c < 0x7f)
		snprintf(buf, size, "'%c'", c);
	else
		snprintf(buf, size, "byte 0x%02x", c);
	return buf;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static size_t skip_blanks(const struct tparser *p, size_t pos)
{
	while (pos < p->len && is_blank(p->src[pos]))
		pos++;
	return pos;
}

static bool is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_';
}

static cf_status add_node(struct tparser *p, const struct node *n)
{
	ag_template *t = p->t;

	if (t->n_nodes == t->cap_nodes) {
		size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 16;
		struct node *bigger = realloc(t->nodes, cap * sizeof(*bigger));

		if (bigger == NULL)
			return nomem(p->err, t->what);
		t->nodes = bigger;
		t->cap_nodes = cap;
	}
	t->nodes[t->n_nodes++] = *n;
	return CF_OK;
}

/* Appends len bytes of literal text, merging with a text node before. */
static cf_status add_text(struct tparser *p, const char *bytes, size_t len)
{
	ag_template *t = p->t;
	struct node n = { .kind = NODE_TEXT };

	if (len == 0)
		return CF_OK;
	/* t->text has room for the whole source; literals never outgrow it. */
	memmove(t->text + t->text_len, bytes, len);
	if (t->n_nodes > 0 && t->nodes[t->n_nodes - 1].kind == NODE_TEXT) {
		t->nodes[t->n_nodes - 1].len += len;
		t->text_len += len;
		return CF_OK;
	}
	n.off = t->text_len;
	n.len = len;
	t->text_len += len;
	return add_node(p, &n);
}

static uint64_t hash_name(const char *s)
{
	uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3u;
	return h;
}

static size_t *find_slot(size_t *slots, size_t n_slots,
			 const struct name *names, const char *name)
{
	size_t i = (size_t)hash_name(name) & (n_slots - 1);

	while (slots[i] != 0 && strcmp(names[slots[i] - 1].name, name) != 0)
		i = (i + 1) & (n_slots - 1);
	return &slots[i];
}

/* The index of name in t->names, adding it on first use. */
static cf_status intern(struct tparser *p, const char *name, size_t at,
			size_t *index)
{
	ag_template *t = p->t;
	size_t *slot;

	if (2 * (t->n_names + 1) >= p->n_slots) {
		size_t n_slots = p->n_slots ? p->n_slots * 2 : 64;
		size_t *slots = calloc(n_slots, sizeof(*slots));

		if (slots == NULL)
			return nomem(p->err, t->what);
		for (size_t i = 0; i < t->n_names; i++)
			*find_slot(slots, n_slots, t->names, t->names[i].name) = i + 1;
		free(p->slots);
		p->slots = slots;
		p->n_slots = n_slots;
	}
	slot = find_slot(p->slots, p->n_slots, t->names, name);
	if (*slot != 0) {
		*index = *slot - 1;
		return CF_OK;
	}
	if (t->n_names == t->cap_names) {
		size_t cap = t->cap_names ? t->cap_names * 2 : 8;
		struct name *bigger = realloc(t->names, cap * sizeof(*bigger));

		if (bigger == NULL)
			return nomem(p->err, t->what);
		t->names = bigger;
		t->cap_names = cap;
	}
	t->names[t->n_names].name = strdup(name);
	if (t->names[t->n_names].name == NULL)
		return nomem(p->err, t->what);
	t->names[t->n_names].line = p->line;
	t->names[t->n_names].col = col_of(p, at);
	*index = t->n_names++;
	*slot = t->n_names;
	return CF_OK;
}

/*
 * A "..." string at *pos: its bytes, unescaped (\" and \\ only), go to
 * t->text after text_len without being committed; *out_len says how
 * many.  *pos ends after the closing quote.
 */
static cf_status parse_string(struct tparser *p, size_t *pos, size_t *out_len)
{
	ag_template *t = p->t;
	size_t open = *pos, i = *pos + 1, n = 0;
	char *dst = t->text + t->text_len;

	for (;; i++) {
		unsigned char c;

		if (i >= p->len || p->src[i] == '\n')
			return fail_at(p, open, "this string has no closing \" on "
				       "its line; close it");
		c = (unsigned char)p->src[i];
		if (c == '"')
			break;
		if (c == '\\') {
			if (i + 1 < p->len && (p->src[i + 1] == '"' ||
					       p->src[i + 1] == '\\')) {
				dst[n++] = p->src[++i];
				continue;
			}
			return fail_at(p, i, "unknown escape in a string; the only "
				       "escapes are \\\" and \\\\");
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail_at(p, i, "control byte 0x%02x in a string; "
				       "write it outside {{ }}", c);
		dst[n++] = (char)c;
	}
	*pos = i + 1;
	*out_len = n;
	return CF_OK;
}

/* The word (letters, digits, _) at pos; its length. */
static size_t word_at(const struct tparser *p, size_t pos)
{
	size_t end = pos;

	while (end < p->len && is_word_char(p->src[end]))
		end++;
	return end - pos;
}

/* After an action's content: blanks, then }}. */
static cf_status expect_close(struct tparser *p, size_t open, size_t *pos)
{
	char buf[16];
	size_t i = skip_blanks(p, *pos);

	if (i + 1 < p->len && p->src[i] == '}' && p->src[i + 1] == '}') {
		*pos = i + 2;
		return CF_OK;
	}
	if (i >= p->len || p->src[i] == '\n' || p->src[i] == '\r')
		return fail_at(p, open, "{{ without a closing }} on its line; "
			       "close the action, or write a literal {{ as "
			       "{{ \"{{\" }}");
	return fail_at(p, i, "expected }} but found %s; an action is "
		       "{{ secret \"NAME\" }}, {{ secret \"NAME\" | json }} or "
		       "{{ \"text\" }}", describe(p, i, buf, sizeof(buf)));
}

/* One action; *pos is at its {{ and ends after its }}. */
static cf_status parse_action(struct tparser *p, size_t *pos)
{
	ag_template *t = p->t;
	size_t open = *pos, i = skip_blanks(p, *pos + 2), len, word;
	struct node n = { .kind = NODE_SECRET };
	char name[CF_NAME_MAX_BYTES + 1], buf[16];
	cf_error name_err = { 0 };
	cf_status rc;

	n.line = p->line;
	n.col = col_of(p, open);
	if (i < p->len && p->src[i] == '"') {
		/* {{ "text" }}: a literal, so that "{{" can be written. */
		rc = parse_string(p, &i, &len);
		if (rc != CF_OK)
			return rc;
		rc = expect_close(p, open, &i);
		if (rc != CF_OK)
			return rc;
		*pos = i;
		return add_text(p, t->text + t->text_len, len);
	}
	word = word_at(p, i);
	if (word != 6 || memcmp(p->src + i, "secret", 6) != 0) {
		if (i >= p->len || p->src[i] == '\n' || p->src[i] == '\r')
			return fail_at(p, open, "{{ without a closing }} on its "
				       "line; close the action, or write a literal "
				       "{{ as {{ \"{{\" }}");
		if (word > 0)
			return fail_at(p, i, "unknown action \"%.*s\"; an action "
				       "is secret \"NAME\" (optionally | json) or a "
				       "\"quoted string\"", (int)(word > 32 ? 32 : word),
				       p->src + i);
		return fail_at(p, i, "expected secret \"NAME\" or a \"quoted "
			       "string\" after {{, found %s",
			       describe(p, i, buf, sizeof(buf)));
	}
	i = skip_blanks(p, i + 6);
	if (i >= p->len || p->src[i] != '"')
		return fail_at(p, i, "secret needs the name in double quotes, "
			       "found %s; write secret \"prod/db/password\"",
			       describe(p, i, buf, sizeof(buf)));
	{
		size_t name_at = i;

		rc = parse_string(p, &i, &len);
		if (rc != CF_OK)
			return rc;
		if (len > CF_NAME_MAX_BYTES || memchr(t->text + t->text_len,
						      '\0', len) != NULL)
			return fail_at(p, name_at, "this is not a secret name "
				       "(at most %d bytes of [A-Za-z0-9._/-]); write "
				       "the name as coffer stores it",
				       CF_NAME_MAX_BYTES);
		memcpy(name, t->text + t->text_len, len);
		name[len] = '\0';
		if (cf_name_check("secret name", name, &name_err) != CF_OK)
			return fail_at(p, name_at, "%s; write the name as coffer "
				       "stores it, e.g. \"prod/db/password\"",
				       name_err.msg);
		rc = intern(p, name, open, &n.name);
		if (rc != CF_OK)
			return rc;
	}
	i = skip_blanks(p, i);
	if (i < p->len && p->src[i] == '|') {
		i = skip_blanks(p, i + 1);
		word = word_at(p, i);
		if (word != 4 || memcmp(p->src + i, "json", 4) != 0) {
			if (word == 0)
				return fail_at(p, i, "expected a filter name after "
					       "'|', found %s; the one filter is json",
					       describe(p, i, buf, sizeof(buf)));
			return fail_at(p, i, "unknown filter \"%.*s\"; the one "
				       "filter is json", (int)(word > 32 ? 32 : word),
				       p->src + i);
		}
		n.kind = NODE_JSON;
		i += 4;
	}
	rc = expect_close(p, open, &i);
	if (rc != CF_OK)
		return rc;
	*pos = i;
	return add_node(p, &n);
}

/* Moves the line count over the literal text [from, to). */
static void count_lines(struct tparser *p, size_t from, size_t to)
{
	const char *nl;

	while (from < to &&
	       (nl = memchr(p->src + from, '\n', to - from)) != NULL) {
		from = (size_t)(nl - p->src) + 1;
		p->line++;
		p->line_start = from;
	}
}

cf_status ag_template_parse(const char *text, size_t len, const char *what,
			    ag_template **out, cf_error *err)
{
	struct tparser p = { 0 };
	ag_template *t = NULL;
	size_t pos = 0;
	cf_status rc = CF_OK;

	*out = NULL;
	if (what == NULL)
		what = "template";
	if (len > AG_TEMPLATE_SOURCE_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE, "%s: %zu bytes is more "
				    "than the limit of %u for a template; split it",
				    what, len, AG_TEMPLATE_SOURCE_MAX_BYTES);
	t = calloc(1, sizeof(*t));
	if (t == NULL || (t->what = strdup(what)) == NULL ||
	    (t->text = malloc(len + 1)) == NULL) {
		rc = nomem(err, what);
		goto out;
	}
	p.src = text;
	p.len = len;
	p.line = 1;
	p.t = t;
	p.err = err;
	while (pos < len) {
		const char *open = memmem(text + pos, len - pos, "{{", 2);
		size_t end = open != NULL ? (size_t)(open - text) : len;

		rc = add_text(&p, text + pos, end - pos);
		if (rc != CF_OK)
			goto out;
		count_lines(&p, pos, end);
		pos = end;
		if (open == NULL)
			break;
		rc = parse_action(&p, &pos);
		if (rc != CF_OK)
			goto out;
	}
	*out = t;
	t = NULL;
out:
	free(p.slots);
	ag_template_free(t);
	return rc;
}

cf_status ag_template_load(const char *path, ag_template **out, cf_error *err)
{
	char *text = NULL;
	size_t len = 0;
	cf_status rc;

	*out = NULL;
	rc = ag_config_read_text(path, AG_TEMPLATE_SOURCE_MAX_BYTES, &text,
				 &len, err);
	if (rc == CF_OK)
		rc = ag_template_parse(text, len, path, out, err);
	free(text);
	return rc;
}

size_t ag_template_n_names(const ag_template *t)
{
	return t->n_names;
}

const char *ag_template_name(const ag_template *t, size_t i)
{
	return i < t->n_names ? t->names[i].name : NULL;
}

static cf_status too_large(const ag_template *t, cf_error *err)
{
	return cf_error_set(err, CF_ERR_TOO_LARGE, "%s: the rendered template "
			    "would be larger than the limit of %u bytes; split it",
			    t->what, AG_TEMPLATE_OUTPUT_MAX_BYTES);
}

/*
 * value as one JSON string, appended to out.  jansson checks the UTF-8
 * and escapes '"', '\\' and control bytes; its buffers are on the secure
 * heap (cf_secmem_init), and the copy it dumps into is a cf_secret.
 */
static cf_status append_json(const ag_template *t, const struct node *n,
			     const cf_secret *value, cf_secret *out,
			     cf_error *err)
{
	const struct name *nm = &t->names[n->name];
	const char *bytes = (const char *)cf_secret_cdata(value);
	size_t len = cf_secret_len(value), need;
	json_t *j = json_stringn(bytes, len);
	cf_secret *enc = NULL;
	cf_status rc = CF_OK;

	if (j == NULL) {
		/* Invalid UTF-8, unless it was memory: ask without the check. */
		j = json_stringn_nocheck(bytes, len);
		if (j == NULL)
			return nomem(err, t->what);
		rc = cf_error_set(err, CF_ERR_PARSE, "%s:%u:%u: the value of "
				  "secret \"%s\" is not valid UTF-8, so | json cannot "
				  "make a JSON string of it; drop | json or store a "
				  "UTF-8 (e.g. base64) value", t->what, n->line,
				  n->col, nm->name);
		goto out;
	}
	need = json_dumpb(j, NULL, 0, JSON_ENCODE_ANY);
	if (need == 0) {
		rc = nomem(err, t->what);
		goto out;
	}
	if (need > AG_TEMPLATE_OUTPUT_MAX_BYTES - cf_secret_len(out)) {
		rc = too_large(t, err);
		goto out;
	}
	enc = cf_secret_new(need);
	if (enc == NULL) {
		rc = nomem(err, t->what);
		goto out;
	}
	if (json_dumpb(j, (char *)cf_secret_data(enc), need,
		       JSON_ENCODE_ANY) != need) {
		rc = nomem(err, t->what);
		goto out;
	}
	rc = cf_secret_set_len(enc, need, err);
	if (rc == CF_OK)
		rc = cf_secret_append(out, cf_secret_cdata(enc), need, err);
out:
	cf_secret_free(enc);
	json_decref(j);
	return rc;
}

cf_status ag_template_render(const ag_template *t, ag_template_lookup lookup,
			     void *ctx, cf_secret **out, cf_error *err)
{
	const cf_secret **values = NULL;
	cf_secret *s = NULL;
	size_t estimate = t->text_len;
	cf_status rc = CF_OK;

	*out = NULL;
	if (t->n_names > 0) {
		values = calloc(t->n_names, sizeof(*values));
		if (values == NULL)
			return nomem(err, t->what);
	}
	/* Every name first, so a missing one fails before any work. */
	for (size_t i = 0; i < t->n_names; i++) {
		values[i] = lookup(ctx, t->names[i].name);
		if (values[i] == NULL) {
			rc = cf_error_set(err, CF_ERR_NOT_FOUND, "%s:%u:%u: secret "
					  "\"%s\" is not available to this agent "
					  "(not granted to it, or not received yet); "
					  "grant it to the agent or fix the name",
					  t->what, t->names[i].line,
					  t->names[i].col, t->names[i].name);
			goto out;
		}
	}
	/* A lower bound of the output (JSON only grows): one allocation. */
	for (size_t i = 0; i < t->n_nodes; i++) {
		const struct node *n = &t->nodes[i];

		if (n->kind == NODE_TEXT)
			continue;
		estimate += cf_secret_len(values[n->name]) +
			    (n->kind == NODE_JSON ? 2 : 0);
		if (estimate > AG_TEMPLATE_OUTPUT_MAX_BYTES) {
			rc = too_large(t, err);
			goto out;
		}
	}
	s = cf_secret_new(estimate);
	if (s == NULL) {
		rc = nomem(err, t->what);
		goto out;
	}
	for (size_t i = 0; i < t->n_nodes && rc == CF_OK; i++) {
		const struct node *n = &t->nodes[i];
		const cf_secret *v = n->kind == NODE_TEXT ? NULL : values[n->name];

		if (n->kind == NODE_JSON) {
			rc = append_json(t, n, v, s, err);
			continue;
		}
		if ((n->kind == NODE_TEXT ? n->len : cf_secret_len(v)) >
		    AG_TEMPLATE_OUTPUT_MAX_BYTES - cf_secret_len(s)) {
			rc = too_large(t, err);
			break;
		}
		if (n->kind == NODE_TEXT)
			rc = cf_secret_append(s, t->text + n->off, n->len, err);
		else
			rc = cf_secret_append(s, cf_secret_cdata(v),
					      cf_secret_len(v), err);
	}
	if (rc != CF_OK)
		goto out;
	*out = s;
	s = NULL;
out:
	cf_secret_free(s);
	free(values);
	return rc;
}

void ag_template_free(ag_template *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_names; i++)
		free(t->names[i].name);
	free(t->names);
	free(t->nodes);
	free(t->text);
	free(t->what);
	free(t);
}
