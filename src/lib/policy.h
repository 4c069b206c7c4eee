/*
 * policy.h - operator permissions: parsing and matching.
 *
 * Grammar (docs/PKI.md): the permissions extension is UTF-8 text, one rule
 * per line, each `VERB:SCOPE`.  VERB is one of secret.read, secret.write,
 * agent.enroll, agent.manage, token.create, audit.read, admin.  SCOPE is a
 * glob over secret names or group names: `*` matches any run of characters
 * other than '/', `**` matches any run including '/', `?` matches one
 * character other than '/'; everything else matches itself.  `admin`
 * grants every verb on its scope.
 */
#ifndef CF_POLICY_H
#define CF_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define CF_PERMS_MAX_BYTES 16384  /* whole extension text */
#define CF_PERM_MAX_RULES 256
#define CF_NAME_MAX_BYTES 255     /* secret, group and cluster names */

typedef struct cf_perms cf_perms;

/* Parses rule text of len bytes (need not be NUL-terminated). */
cf_status cf_perms_parse(const char *text, size_t len, cf_perms **out,
			 cf_error *err);
void cf_perms_free(cf_perms *perms);

/* Checks one `VERB:SCOPE` rule; CF_ERR_PARSE with the reason if bad. */
cf_status cf_perm_rule_check(const char *rule, cf_error *err);

/* True if some rule grants verb on name (admin grants all verbs). */
bool cf_perms_allows(const cf_perms *perms, const char *verb, const char *name);

/*
 * True if every name that scope `inner` can match is also matched by some
 * rule for `verb`: used to check an enroller's agent.enroll rules cover
 * the groups of a certificate it issues (inner is then a literal name).
 */
bool cf_perms_covers(const cf_perms *perms, const char *verb, const char *inner);

size_t cf_perms_count(const cf_perms *perms);
const char *cf_perms_verb(const cf_perms *perms, size_t i);
const char *cf_perms_scope(const cf_perms *perms, size_t i);

/* Glob matching as described above. */
bool cf_glob_match(const char *pattern, const char *name);

/*
 * Validates a secret, group or cluster name: 1..255 bytes of
 * [A-Za-z0-9._/-], no empty, "." or ".." path segment, no leading '/'.
 */
cf_status cf_name_check(const char *what, const char *name, cf_error *err);

#endif
