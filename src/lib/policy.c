/*
 * policy.c - permission rules of operator certificates.
 *
 * The parser is fed outside input (a certificate extension), so it bounds
 * everything: total length, rule count, name length and character set.
 * Matching is a table-driven glob whose cost is the product of the two
 * lengths, so no pattern can make it explode.
 */
#include "policy.h"

#include <openssl/crypto.h>
#include <string.h>

struct cf_perm_rule {
	char *verb;
	char *scope;
};

struct cf_perms {
	struct cf_perm_rule *rules;
	size_t count;
};

static const char *const verbs[] = {
	"secret.read", "secret.write", "agent.enroll", "agent.manage",
	"token.create", "audit.read", "admin",
};

static bool verb_known(const char *verb, size_t len)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strlen(verbs[i]) == len && memcmp(verbs[i], verb, len) == 0)
			return true;
	return false;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
	       c == '/';
}

cf_status cf_name_check(const char *what, const char *name, cf_error *err)
{
	size_t len = strlen(name);
	const char *seg = name;

	if (len == 0 || len > CF_NAME_MAX_BYTES)
		return cf_error_set(err, CF_ERR_USAGE,
			"%s must be 1 to %d bytes long", what, CF_NAME_MAX_BYTES);
	for (size_t i = 0; i <= len; i++) {
		char c = name[i];

		if (c != '\0' && !name_char(c))
			return cf_error_set(err, CF_ERR_USAGE,
				"%s \"%.64s\" has a character outside "
				"[A-Za-z0-9._/-] at byte %zu", what, name, i);
		if (c == '/' || c == '\0') {
			size_t seglen = (size_t)(name + i - seg);

			if (seglen == 0 || (seglen == 1 && seg[0] == '.') ||
			    (seglen == 2 && seg[0] == '.' && seg[1] == '.'))
				return cf_error_set(err, CF_ERR_USAGE,
					"%s \"%.64s\" has an empty, \".\" or "
					"\"..\" path segment", what, name);
			seg = name + i + 1;
		}
	}
	return CF_OK;
}

static bool scope_char(char c)
{
	return name_char(c) || c == '*' || c == '?';
}

static cf_status rule_check(const char *rule, size_t len, size_t *colon,
			    cf_error *err)
{
	const char *sep = memchr(rule, ':', len);
	size_t verb_len, scope_len;

	if (sep == NULL)
		return cf_error_set(err, CF_ERR_PARSE,
			"permission rule \"%.*s\" has no ':'; write VERB:SCOPE, "
			"for example secret.read:prod/*", (int)(len > 80 ? 80 : len), rule);
	verb_len = (size_t)(sep - rule);
	scope_len = len - verb_len - 1;
	if (!verb_known(rule, verb_len))
		return cf_error_set(err, CF_ERR_PARSE,
			"permission rule \"%.*s\": unknown verb \"%.*s\"; known "
			"verbs are secret.read, secret.write, agent.enroll, "
			"agent.manage, token.create, audit.read, admin",
			(int)(len > 80 ? 80 : len), rule,
			(int)(verb_len > 40 ? 40 : verb_len), rule);
	if (scope_len == 0 || scope_len > CF_NAME_MAX_BYTES)
		return cf_error_set(err, CF_ERR_PARSE,
			"permission rule \"%.*s\": the scope must be 1 to %d bytes",
			(int)(len > 80 ? 80 : len), rule, CF_NAME_MAX_BYTES);
	for (size_t i = 0; i < scope_len; i++)
		if (!scope_char(sep[1 + i]))
			return cf_error_set(err, CF_ERR_PARSE,
				"permission rule \"%.*s\": scope has a character "
				"outside [A-Za-z0-9._/-*?]",
				(int)(len > 80 ? 80 : len), rule);
	if (colon != NULL)
		*colon = verb_len;
	return CF_OK;
}

cf_status cf_perm_rule_check(const char *rule, cf_error *err)
{
	return rule_check(rule, strlen(rule), NULL, err);
}

void cf_perms_free(cf_perms *perms)
{
	if (perms == NULL)
		return;
	for (size_t i = 0; i < perms->count; i++) {
		OPENSSL_free(perms->rules[i].verb);
		OPENSSL_free(perms->rules[i].scope);
	}
	OPENSSL_free(perms->rules);
	OPENSSL_free(perms);
}

cf_status cf_perms_parse(const char *text, size_t len, cf_perms **out,
			 cf_error *err)
{
	cf_perms *perms = NULL;
	cf_status rc = CF_OK;
	size_t pos = 0;

	*out = NULL;
	if (len > CF_PERMS_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"permission text is %zu bytes, above the limit of %d",
			len, CF_PERMS_MAX_BYTES);
	if (memchr(text, '\0', len) != NULL)
		return cf_error_set(err, CF_ERR_PARSE,
			"permission text contains a NUL byte");
	perms = OPENSSL_zalloc(sizeof(*perms));
	if (perms == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	while (pos < len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl ? (size_t)(nl - line) : len - pos;
		size_t colon;
		struct cf_perm_rule *rules;

		pos += line_len + (nl ? 1 : 0);
		if (line_len > 0 && line[line_len - 1] == '\r')
			line_len--;
		if (line_len == 0)
			continue;
		rc = rule_check(line, line_len, &colon, err);
		if (rc != CF_OK)
			goto out;
		if (perms->count == CF_PERM_MAX_RULES) {
			rc = cf_error_set(err, CF_ERR_TOO_LARGE,
				"more than %d permission rules", CF_PERM_MAX_RULES);
			goto out;
		}
		rules = OPENSSL_realloc(perms->rules,
			(perms->count + 1) * sizeof(*rules));
		if (rules == NULL) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		perms->rules = rules;
		rules[perms->count].verb = OPENSSL_strndup(line, colon);
		rules[perms->count].scope =
			OPENSSL_strndup(line + colon + 1, line_len - colon - 1);
		perms->count++;
		if (rules[perms->count - 1].verb == NULL ||
		    rules[perms->count - 1].scope == NULL) {
			rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	*out = perms;
	perms = NULL;
out:
	cf_perms_free(perms);
	return rc;
}

bool cf_glob_match(const char *pattern, const char *name)
{
	/*
	 * Dynamic programming over (pattern suffix, name suffix): time and
	 * memory are plen * nlen, never exponential, whatever the pattern.
	 * Row i holds whether pattern[i..] matches name[j..] for every j.
	 */
	size_t plen = strlen(pattern), nlen = strlen(name);
	size_t width = nlen + 1;
	unsigned char *m;
	bool result;

	if (plen > 4 * CF_NAME_MAX_BYTES || nlen > 4 * CF_NAME_MAX_BYTES)
		return false;
	m = OPENSSL_zalloc((plen + 2) * width);
	if (m == NULL)
		return false;
#define M(i, j) m[(i) * width + (j)]
	M(plen, nlen) = 1;
	for (size_t i = plen; i-- > 0;) {
		for (size_t j = nlen + 1; j-- > 0;) {
			char pc = pattern[i];
			bool more = j < nlen;

			if (pc == '*' && pattern[i + 1] == '*')
				M(i, j) = M(i + 2, j) || (more && M(i, j + 1));
			else if (pc == '*')
				M(i, j) = M(i + 1, j) ||
					(more && name[j] != '/' && M(i, j + 1));
			else if (pc == '?')
				M(i, j) = more && name[j] != '/' && M(i + 1, j + 1);
			else
				M(i, j) = more && name[j] == pc && M(i + 1, j + 1);
		}
	}
	result = M(0, 0);
#undef M
	OPENSSL_free(m);
	return result;
}

static bool verb_grants(const char *have, const char *want)
{
	return strcmp(have, want) == 0 || strcmp(have, "admin") == 0;
}

bool cf_perms_allows(const cf_perms *perms, const char *verb, const char *name)
{
	if (perms == NULL)
		return false;
	for (size_t i = 0; i < perms->count; i++)
		if (verb_grants(perms->rules[i].verb, verb) &&
		    cf_glob_match(perms->rules[i].scope, name))
			return true;
	return false;
}

bool cf_perms_covers(const cf_perms *perms, const char *verb, const char *inner)
{
	/*
	 * Only literal inner scopes are decided exactly; an inner glob is
	 * covered only by a rule whose scope is the same text or "**".
	 */
	bool literal = strpbrk(inner, "*?") == NULL;

	if (perms == NULL)
		return false;
	for (size_t i = 0; i < perms->count; i++) {
		const struct cf_perm_rule *r = &perms->rules[i];

		if (!verb_grants(r->verb, verb))
			continue;
		if (literal && cf_glob_match(r->scope, inner))
			return true;
		if (!literal && (strcmp(r->scope, inner) == 0 ||
				 strcmp(r->scope, "**") == 0))
			return true;
	}
	return false;
}

size_t cf_perms_count(const cf_perms *perms) { return perms ? perms->count : 0; }
const char *cf_perms_verb(const cf_perms *perms, size_t i) { return perms->rules[i].verb; }
const char *cf_perms_scope(const cf_perms *perms, size_t i) { return perms->rules[i].scope; }
