/*
 * fuzz_perms.c - libFuzzer target for permission rules and glob matching.
 *
 * Input: RULES [NUL NAME]... : the bytes before the first NUL go, with
 * their length and no terminator, to cf_perms_parse (the permissions
 * extension of a certificate); each NUL-separated piece after it is a
 * name or pattern (at most MAX_NAMES of them; see PIECE_MAX for longer
 * ones).  Checked, beyond the sanitizers:
 *   - each parsed rule passes cf_perm_rule_check again;
 *   - cf_glob_match agrees with ref_glob, a second, top-down matcher
 *     written from the grammar in policy.h, on every ordered pair
 *     of pieces and on every (scope, piece) pair;
 *   - cf_perms_allows is "some rule of the verb or admin whose scope
 *     matches", for the verbs below;
 *   - cf_perms_covers is sound: if a rule set covers a scope for a verb,
 *     it allows that verb on every piece the scope matches (an enroller
 *     that covers a group may issue for it, and for nothing more).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "policy.h"

#define MAX_NAMES 8
#define REF_MAX 1020 /* cf_glob_match refuses longer (4 * CF_NAME_MAX_BYTES) */
/*
 * cf_glob_match fills a plen x nlen table, so all-pairs checks of long
 * pieces would cost milliseconds per input; names are at most 255 bytes,
 * so longer pieces only meet cheap patterns (and cf_glob_match's own
 * length limit).
 */
#define PIECE_MAX (CF_NAME_MAX_BYTES + 1)

/*
 * The verbs asked for: two ordinary ones (a rule of another verb must not
 * grant them), admin itself, and one no rule can name.  All seven would
 * only repeat the same string comparisons at a third of the speed.
 */
static const char *const verbs[] = {
	"secret.write", "agent.enroll", "admin", "unknown.verb",
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_secmem_init();
	return 0;
}

/*
 * The reference, top-down over (pattern offset, name offset): "**" (a
 * pair of stars, taken left to right) matches any run, '*' any run
 * without '/', '?' one character but '/', anything else itself.
 * Memoised, so each state costs O(1) and no pattern makes it exponential.
 */
static unsigned char memo[(REF_MAX + 2) * (REF_MAX + 2)]; /* 0 unknown, 1 no, 2 yes */
static size_t memo_width;

static bool ref_at(const char *pat, size_t pi, const char *name, size_t ni)
{
	unsigned char *slot = &memo[pi * memo_width + ni];
	bool result;

	if (*slot != 0)
		return *slot == 2;
	if (pat[pi] == '\0')
		result = name[ni] == '\0';
	else if (pat[pi] == '*' && pat[pi + 1] == '*')
		result = ref_at(pat, pi + 2, name, ni) ||
			 (name[ni] != '\0' && ref_at(pat, pi, name, ni + 1));
	else if (pat[pi] == '*')
		result = ref_at(pat, pi + 1, name, ni) ||
			 (name[ni] != '\0' && name[ni] != '/' &&
			  ref_at(pat, pi, name, ni + 1));
	else if (pat[pi] == '?')
		result = name[ni] != '\0' && name[ni] != '/' &&
			 ref_at(pat, pi + 1, name, ni + 1);
	else
		result = name[ni] == pat[pi] && ref_at(pat, pi + 1, name, ni + 1);
	*slot = result ? 2 : 1;
	return result;
}

static bool ref_glob(const char *pat, const char *name)
{
	size_t plen = strlen(pat), nlen = strlen(name);

	if (plen > REF_MAX || nlen > REF_MAX)
		return false;
	memo_width = nlen + 1;
	memset(memo, 0, (plen + 1) * memo_width);
	return ref_at(pat, 0, name, 0);
}

static bool glob_agrees(const char *pat, const char *name)
{
	bool got = cf_glob_match(pat, name);

	if (got != ref_glob(pat, name)) {
		fprintf(stderr, "cf_glob_match(\"%s\", \"%s\") = %d, the grammar "
			"says %d\n", pat, name, got, !got);
		abort();
	}
	return got;
}

static bool verb_grants(const char *have, const char *want)
{
	return strcmp(have, want) == 0 || strcmp(have, "admin") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t rules_len = nul ? (size_t)(nul - data) : size;
	char *names[MAX_NAMES];
	size_t n_names = 0, pos = rules_len + 1;
	static bool scope_matches[CF_PERM_MAX_RULES][MAX_NAMES];
	bool piece_matches[MAX_NAMES][MAX_NAMES];
	cf_perms *perms = NULL;
	cf_error err;
	cf_status rc;

	while (nul != NULL && pos <= size && n_names < MAX_NAMES) {
		const uint8_t *end = memchr(data + pos, '\0', size - pos);
		size_t len = end ? (size_t)(end - (data + pos)) : size - pos;

		char *piece = malloc(len + 1);

		if (piece == NULL)
			abort();
		memcpy(piece, data + pos, len);
		piece[len] = '\0';
		pos += len + 1;
		if (len <= PIECE_MAX) {
			names[n_names++] = piece;
			continue;
		}
		(void)cf_name_check("name", piece, NULL);
		glob_agrees("**", piece);
		glob_agrees(piece, "a");
		free(piece);
	}

	cf_error_clear(&err);
	rc = cf_perms_parse((const char *)data, rules_len, &perms, &err);
	if (rc != CF_OK && (perms != NULL || err.code != rc || err.msg[0] == '\0'))
		abort();
	if (rc == CF_OK && cf_perms_count(perms) > CF_PERM_MAX_RULES)
		abort();
	for (size_t i = 0; i < cf_perms_count(perms); i++) {
		char rule[512];

		snprintf(rule, sizeof(rule), "%s:%s", cf_perms_verb(perms, i),
			 cf_perms_scope(perms, i));
		if (cf_perm_rule_check(rule, NULL) != CF_OK) {
			fprintf(stderr, "parsed rule \"%s\" fails its check\n", rule);
			abort();
		}
	}

	/* Each glob once: scopes against pieces, pieces against pieces. */
	for (size_t r = 0; r < cf_perms_count(perms); r++)
		for (size_t j = 0; j < n_names; j++)
			scope_matches[r][j] = glob_agrees(cf_perms_scope(perms, r),
							  names[j]);
	for (size_t i = 0; i < n_names; i++) {
		(void)cf_name_check("name", names[i], NULL);
		(void)cf_perm_rule_check(names[i], NULL);
		for (size_t j = 0; j < n_names; j++)
			piece_matches[i][j] = glob_agrees(names[i], names[j]);
	}
	for (size_t v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++) {
		bool allows[MAX_NAMES];

		for (size_t j = 0; j < n_names; j++) {
			bool want = false;

			allows[j] = cf_perms_allows(perms, verbs[v], names[j]);
			for (size_t r = 0; r < cf_perms_count(perms) && !want; r++)
				want = verb_grants(cf_perms_verb(perms, r), verbs[v]) &&
				       scope_matches[r][j];
			if (allows[j] != want) {
				fprintf(stderr, "cf_perms_allows(%s, \"%s\") = %d\n",
					verbs[v], names[j], allows[j]);
				abort();
			}
		}
		for (size_t i = 0; i < n_names; i++) {
			if (!cf_perms_covers(perms, verbs[v], names[i]))
				continue;
			for (size_t j = 0; j < n_names; j++) {
				if (piece_matches[i][j] && !allows[j]) {
					fprintf(stderr, "covers(%s, \"%s\") but "
						"not allows(\"%s\")\n", verbs[v],
						names[i], names[j]);
					abort();
				}
			}
		}
	}
	cf_perms_free(perms);
	for (size_t i = 0; i < n_names; i++)
		free(names[i]);
	return 0;
}
