/*
 * store.c - the backend-neutral half of store.h: picks the backend from
 * the url, bounds every input once for all backends, dispatches through
 * the backend's table (store_backend.h), and frees the row structs.
 *
 * Invariants: no backend is called with an argument store.h forbids (NULL
 * where a value is required, an unterminated fixed-size field, a name or
 * PEM or group above its limit, an empty or oversized envelope set, a
 * recipient twice in one set).  A refusal here is CF_ERR_USAGE
 * (malformed), CF_ERR_TOO_LARGE (above a limit), the status the database
 * would give for a duplicate recipient (CF_ERR_USAGE for a put,
 * CF_ERR_EXISTS for an upload chunk) or CF_ERR_NOMEM, and changes nothing.
 */
#include "store.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_backend.h"

/* ---- argument checks ------------------------------------------------- */

/* A fixed-size field must hold its NUL. */
#define FIXED_OK(field) (memchr((field), '\0', sizeof(field)) != NULL)

static cf_status need_str(const char *s, size_t max, const char *what,
			  cf_error *err)
{
	size_t len;

	if (s == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "store: %s is missing",
				    what);
	len = strnlen(s, max + 1);
	if (len > max)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
				    "store: %s is longer than %zu bytes", what,
				    max);
	return CF_OK;
}

static cf_status need_nonempty(const char *s, size_t max, const char *what,
			       cf_error *err)
{
	cf_status rc = need_str(s, max, what, err);

	if (rc == CF_OK && s[0] == '\0')
		rc = cf_error_set(err, CF_ERR_USAGE, "store: %s is empty",
				  what);
	return rc;
}

static cf_status need_fp(const char *s, const char *what, cf_error *err)
{
	return need_nonempty(s, 64, what, err);
}

static cf_status need_audit(const cf_audit_entry *a, cf_error *err)
{
	if (a == NULL)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: a change needs its audit entry");
	if (!FIXED_OK(a->tenant) || !FIXED_OK(a->actor) ||
	    !FIXED_OK(a->subject) || !FIXED_OK(a->source) ||
	    !FIXED_OK(a->action) || !FIXED_OK(a->object))
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: audit entry has an unterminated "
				    "field");
	if (a->action[0] == '\0')
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: audit entry has no action");
	return CF_OK;
}

/*
 * Each name of a comma-separated group list (already known to end within
 * CF_STORE_GROUPS_MAX), blanks around it trimmed as the backend trims
 * them, within CF_STORE_NAME_MAX.
 */
static cf_status need_groups(const cf_cert_row *r, cf_error *err)
{
	for (const char *p = r->groups; *p != '\0';) {
		size_t len = strcspn(p, ",");
		const char *b = p, *e = p + len;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - b) > CF_STORE_NAME_MAX)
			return cf_error_set(err, CF_ERR_TOO_LARGE,
					    "certificate %.16s: a group name "
					    "is above %d bytes", r->fp,
					    CF_STORE_NAME_MAX);
		p += len;
		if (*p == ',')
			p++;
	}
	return CF_OK;
}

static cf_status need_cert_row(const cf_cert_row *r, cf_error *err)
{
	cf_status rc;

	if (r == NULL)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: certificate row is missing");
	if (!FIXED_OK(r->tenant) || !FIXED_OK(r->fp) || !FIXED_OK(r->kind) ||
	    !FIXED_OK(r->name) || !FIXED_OK(r->cluster) ||
	    !FIXED_OK(r->issuer_fp) || !FIXED_OK(r->serial))
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: certificate row has an "
				    "unterminated field");
	if ((rc = need_fp(r->tenant, "certificate tenant", err)) != CF_OK ||
	    (rc = need_fp(r->fp, "certificate fingerprint", err)) != CF_OK ||
	    (rc = need_nonempty(r->kind, 15, "certificate kind", err)) !=
		    CF_OK ||
	    (r->groups != NULL &&
	     ((rc = need_str(r->groups, CF_STORE_GROUPS_MAX,
			     "certificate groups", err)) != CF_OK ||
	      (rc = need_groups(r, err)) != CF_OK)) ||
	    (rc = need_nonempty(r->pem, CF_STORE_PEM_MAX, "certificate PEM",
				err)) != CF_OK)
		return rc;
	return CF_OK;
}

#define DISPATCH(st, fn, ...) ((st)->ops->fn((st), __VA_ARGS__))

static cf_status need_store(cf_store *st, cf_error *err)
{
	if (st == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "store: not open");
	return CF_OK;
}

/* An open store and a tenant id: what nearly every call starts with. */
static cf_status need_tenant(cf_store *st, const char *tenant, cf_error *err)
{
	cf_status rc = need_store(st, err);

	return rc != CF_OK ? rc : need_fp(tenant, "tenant id", err);
}

static cf_status need_secret_name(const char *name, cf_error *err)
{
	return need_nonempty(name, CF_STORE_NAME_MAX, "secret name", err);
}

static cf_status no_output(cf_error *err)
{
	return cf_error_set(err, CF_ERR_USAGE, "store: no output");
}

/*
 * The outputs of a list call: both required, set to an empty list so
 * that a refusal leaves nothing to free.  out is the address of the
 * caller's array pointer.
 */
static cf_status need_list_out(void **out, size_t *n, cf_error *err)
{
	if (out == NULL || n == NULL)
		return no_output(err);
	*out = NULL;
	*n = 0;
	return CF_OK;
}

/* ---- open and close -------------------------------------------------- */

cf_status cf_store_open(const char *url, unsigned flags, cf_store **out,
			cf_error *err)
{
	cf_status rc;

	if (out == NULL)
		return no_output(err);
	*out = NULL;
	if ((rc = need_nonempty(url, 4096, "database url", err)) != CF_OK)
		return rc;
	if (strncmp(url, "postgresql://", 13) == 0 ||
	    strncmp(url, "postgres://", 11) == 0)
		/* The url is never echoed: it may hold a password. */
		return cf_store_pg_open(url, flags, out, err);
	if (strncmp(url, "sqlite:", 7) == 0)
		url += 7;
	if (url[0] == '\0')
		return cf_error_set(err, CF_ERR_USAGE,
				    "database url sqlite: names no file");
	return cf_store_sqlite_open(url, flags, out, err);
}

void cf_store_free(cf_store *st)
{
	if (st != NULL)
		st->ops->free(st);
}

int cf_store_schema_version(cf_store *st)
{
	return st == NULL ? 0 : st->ops->schema_version(st);
}

/* ---- tenants -------------------------------------------------------- */

cf_status cf_store_tenant_add(cf_store *st, const char *id,
			      const char *root_pem,
			      const cf_audit_entry *audit, cf_error *err)
{
	cf_status rc;

	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_fp(id, "tenant id", err)) != CF_OK ||
	    (rc = need_nonempty(root_pem, CF_STORE_PEM_MAX, "root PEM", err)) !=
		    CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	return DISPATCH(st, tenant_add, id, root_pem, audit, err);
}

cf_status cf_store_tenant_get(cf_store *st, const char *id, cf_tenant *out,
			      cf_error *err)
{
	cf_status rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_fp(id, "tenant id", err)) != CF_OK)
		return rc;
	if (out == NULL)
		return no_output(err);
	return DISPATCH(st, tenant_get, id, out, err);
}

cf_status cf_store_tenant_list(cf_store *st, cf_tenant **out, size_t *n,
			       cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK)
		return rc;
	if ((rc = need_store(st, err)) != CF_OK)
		return rc;
	return DISPATCH(st, tenant_list, out, n, err);
}

cf_status cf_store_tenant_set_crl(cf_store *st, const char *id,
				  const char *crl_pem, int64_t crl_number,
				  const cf_audit_entry *audit, cf_error *err)
{
	cf_status rc;

	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_fp(id, "tenant id", err)) != CF_OK ||
	    (rc = need_nonempty(crl_pem, CF_STORE_PEM_MAX, "CRL PEM", err)) !=
		    CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	if (crl_number < 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: CRL number %" PRId64
				    " is negative", crl_number);
	return DISPATCH(st, tenant_set_crl, id, crl_pem, crl_number, audit,
			err);
}

void cf_tenant_clear(cf_tenant *t)
{
	if (t == NULL)
		return;
	free(t->root_pem);
	free(t->crl_pem);
	memset(t, 0, sizeof(*t));
}

void cf_tenants_free(cf_tenant *t, size_t n)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		cf_tenant_clear(&t[i]);
	free(t);
}

/* ---- certificate directory ------------------------------------------ */

cf_status cf_store_cert_put(cf_store *st, const cf_cert_row *row,
			    const cf_audit_entry *audit, cf_error *err)
{
	cf_status rc;

	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_cert_row(row, err)) != CF_OK ||
	    (audit != NULL && (rc = need_audit(audit, err)) != CF_OK))
		return rc;
	return DISPATCH(st, cert_put, row, audit, err);
}

cf_status cf_store_cert_get(cf_store *st, const char *tenant, const char *fp,
			    cf_cert_row *out, cf_error *err)
{
	cf_status rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_fp(fp, "certificate fingerprint", err)) != CF_OK)
		return rc;
	if (out == NULL)
		return no_output(err);
	return DISPATCH(st, cert_get, tenant, fp, out, err);
}

cf_status cf_store_cert_list(cf_store *st, const char *tenant,
			     const cf_cert_filter *filter, cf_cert_row **out,
			     size_t *n, cf_error *err)
{
	static const cf_cert_filter all = { 0 };
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK)
		return rc;
	if (filter == NULL)
		filter = &all;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (filter->kind != NULL &&
	     (rc = need_str(filter->kind, 15, "kind", err)) != CF_OK) ||
	    (filter->group != NULL &&
	     (rc = need_str(filter->group, CF_STORE_NAME_MAX, "group", err)) !=
		     CF_OK) ||
	    (filter->name != NULL &&
	     (rc = need_str(filter->name, CF_STORE_NAME_MAX, "name", err)) !=
		     CF_OK) ||
	    (filter->fp != NULL &&
	     (rc = need_str(filter->fp, 64, "fingerprint", err)) != CF_OK) ||
	    (filter->after_fp != NULL &&
	     (rc = need_str(filter->after_fp, 64, "paging fingerprint",
			    err)) != CF_OK))
		return rc;
	return DISPATCH(st, cert_list, tenant, filter, out, n, err);
}

void cf_cert_row_clear(cf_cert_row *row)
{
	if (row == NULL)
		return;
	free(row->groups);
	free(row->pem);
	memset(row, 0, sizeof(*row));
}

void cf_cert_rows_free(cf_cert_row *rows, size_t n)
{
	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		cf_cert_row_clear(&rows[i]);
	free(rows);
}

/* ---- join tokens ----------------------------------------------------- */

cf_status cf_store_token_add(cf_store *st, const cf_token_row *rows, size_t n,
			     const cf_audit_entry *audit_template,
			     cf_error *err)
{
	cf_status rc;

	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_audit(audit_template, err)) != CF_OK)
		return rc;
	if (rows == NULL || n == 0)
		return cf_error_set(err, CF_ERR_USAGE, "store: no tokens to add");
	if (n > CF_STORE_TOKENS_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
				    "store: %zu tokens in one request; at most "
				    "%d", n, CF_STORE_TOKENS_MAX);
	for (size_t i = 0; i < n; i++) {
		const cf_token_row *t = &rows[i];

		if (!FIXED_OK(t->tenant) || !FIXED_OK(t->id) ||
		    !FIXED_OK(t->hash) || !FIXED_OK(t->group) ||
		    !FIXED_OK(t->creator))
			return cf_error_set(err, CF_ERR_USAGE,
					    "store: token %zu has an "
					    "unterminated field", i);
		if ((rc = need_fp(t->tenant, "token tenant", err)) != CF_OK ||
		    (rc = need_nonempty(t->id, 32, "token id", err)) != CF_OK ||
		    (rc = need_nonempty(t->hash, 64, "token hash", err)) !=
			    CF_OK ||
		    (rc = need_nonempty(t->group, CF_STORE_NAME_MAX,
					"token group", err)) != CF_OK)
			return rc;
		if (t->uses < 1)
			return cf_error_set(err, CF_ERR_USAGE,
					    "store: token %s admits %" PRId64
					    " enrollments; at least 1", t->id,
					    t->uses);
		if (t->envelope_len > CF_STORE_TOKEN_ENVELOPE_MAX ||
		    (t->envelope == NULL && t->envelope_len > 0))
			return cf_error_set(err, CF_ERR_TOO_LARGE,
					    "store: envelope of token %s is "
					    "above %d bytes", t->id,
					    CF_STORE_TOKEN_ENVELOPE_MAX);
	}
	return DISPATCH(st, token_add, rows, n, audit_template, err);
}

cf_status cf_store_token_get(cf_store *st, const char *id, cf_token_row *out,
			     cf_error *err)
{
	cf_status rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_nonempty(id, 32, "token id", err)) != CF_OK)
		return rc;
	if (out == NULL)
		return no_output(err);
	return DISPATCH(st, token_get, id, out, err);
}

cf_status cf_store_token_list(cf_store *st, const char *tenant,
			      cf_token_row **out, size_t *n, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK)
		return rc;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK)
		return rc;
	return DISPATCH(st, token_list, tenant, out, n, err);
}

cf_status cf_store_token_revoke(cf_store *st, const char *tenant,
				const char *id, const cf_audit_entry *audit,
				cf_error *err)
{
	cf_status rc;

	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_nonempty(id, 32, "token id", err)) != CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	return DISPATCH(st, token_revoke, tenant, id, audit, err);
}

void cf_token_row_clear(cf_token_row *row)
{
	if (row == NULL)
		return;
	free(row->envelope);
	memset(row, 0, sizeof(*row));
}

void cf_token_rows_free(cf_token_row *rows, size_t n)
{
	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		cf_token_row_clear(&rows[i]);
	free(rows);
}

/* ---- enrollment requests --------------------------------------------- */

cf_status cf_store_enroll_add(cf_store *st, cf_enroll_row *row,
			      const char *token_hash, int64_t now,
			      const cf_audit_entry *audit_template,
			      cf_error *err)
{
	cf_status rc;

	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_audit(audit_template, err)) != CF_OK ||
	    (rc = need_str(token_hash, 64, "token hash", err)) != CF_OK)
		return rc;
	if (row == NULL)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: enrollment row is missing");
	if (!FIXED_OK(row->token_id) || !FIXED_OK(row->name) ||
	    !FIXED_OK(row->hmac) || !FIXED_OK(row->source))
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: enrollment row has an "
				    "unterminated field");
	if ((rc = need_nonempty(row->name, CF_STORE_NAME_MAX, "agent name",
				err)) != CF_OK ||
	    (rc = need_nonempty(row->csr_pem, CF_STORE_PEM_MAX, "CSR PEM",
				err)) != CF_OK ||
	    (rc = need_nonempty(row->hmac, 64, "enrollment HMAC", err)) !=
		    CF_OK)
		return rc;
	return DISPATCH(st, enroll_add, row, token_hash, now, audit_template,
			err);
}

cf_status cf_store_enroll_get(cf_store *st, const char *id,
			      cf_enroll_row *out, cf_error *err)
{
	cf_status rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_nonempty(id, 32, "enrollment id", err)) != CF_OK)
		return rc;
	if (out == NULL)
		return no_output(err);
	return DISPATCH(st, enroll_get, id, out, err);
}

cf_status cf_store_enroll_list(cf_store *st, const char *tenant,
			       const char *status, cf_enroll_row **out,
			       size_t *n, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK)
		return rc;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (status != NULL &&
	     (rc = need_str(status, 15, "status", err)) != CF_OK))
		return rc;
	return DISPATCH(st, enroll_list, tenant, status, out, n, err);
}

cf_status cf_store_enroll_decide(cf_store *st, const char *tenant,
				 const char *id, int approve,
				 const cf_cert_row *cert, const char *chain_pem,
				 const char *reason, const char *decided_by,
				 int64_t now, const cf_audit_entry *audit,
				 cf_error *err)
{
	cf_status rc;

	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_nonempty(id, 32, "enrollment id", err)) != CF_OK ||
	    (rc = need_str(decided_by, 64, "deciding certificate", err)) !=
		    CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	if (approve) {
		if ((rc = need_cert_row(cert, err)) != CF_OK ||
		    (chain_pem != NULL &&
		     (rc = need_str(chain_pem, CF_STORE_PEM_MAX, "chain PEM",
				    err)) != CF_OK))
			return rc;
		if (strcmp(cert->tenant, tenant) != 0)
			return cf_error_set(err, CF_ERR_USAGE,
					    "store: the approved certificate "
					    "belongs to another tenant");
	} else if (reason != NULL &&
		   (rc = need_str(reason, 255, "rejection reason", err)) !=
			   CF_OK) {
		return rc;
	}
	return DISPATCH(st, enroll_decide, tenant, id, approve, cert,
			chain_pem, reason, decided_by, now, audit, err);
}

void cf_enroll_row_clear(cf_enroll_row *row)
{
	if (row == NULL)
		return;
	free(row->csr_pem);
	free(row->cert_pem);
	free(row->chain_pem);
	memset(row, 0, sizeof(*row));
}

void cf_enroll_rows_free(cf_enroll_row *rows, size_t n)
{
	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		cf_enroll_row_clear(&rows[i]);
	free(rows);
}

/* ---- secrets and envelopes ------------------------------------------- */

static int recipient_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Refuses two envelopes for one recipient among envs (already checked to
 * be terminated and within CF_STORE_ENVELOPES_MAX) with dup_status, the
 * status the database gives for it, before any database work.  Sorted
 * copy of the pointers: n may be 100,000, too many to compare pairwise.
 */
static cf_status need_distinct(const char *what, const char *name,
			       const cf_envelope_in *envs, size_t n,
			       cf_status dup_status, cf_error *err)
{
	const char **r;
	cf_status rc = CF_OK;

	if (n < 2)
		return CF_OK;
	if ((r = malloc(n * sizeof(*r))) == NULL)
		return cf_error_set(err, CF_ERR_NOMEM,
				    "%s %s: out of memory checking %zu "
				    "recipients", what, name, n);
	for (size_t i = 0; i < n; i++)
		r[i] = envs[i].recipient;
	qsort(r, n, sizeof(*r), recipient_cmp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(r[i - 1], r[i]) == 0) {
			rc = cf_error_set(err, dup_status,
					  "%s %s: recipient %s has two "
					  "envelopes in one request; send one "
					  "per recipient", what, name, r[i]);
			break;
		}
	free(r);
	return rc;
}

/*
 * 1 to CF_STORE_ENVELOPES_MAX envelopes, each named and within its limit,
 * no recipient twice (refused with dup_status).
 */
static cf_status need_envelopes(const char *name, const cf_envelope_in *envs,
				size_t n, cf_status dup_status, cf_error *err)
{
	if (envs == NULL || n == 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "secret %s: a version needs at least one "
				    "envelope", name);
	if (n > CF_STORE_ENVELOPES_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
				    "secret %s: %zu envelopes in one version; "
				    "at most %d", name, n,
				    CF_STORE_ENVELOPES_MAX);
	for (size_t i = 0; i < n; i++) {
		if (!FIXED_OK(envs[i].recipient) ||
		    envs[i].recipient[0] == '\0')
			return cf_error_set(err, CF_ERR_USAGE,
					    "secret %s: envelope %zu names no "
					    "recipient", name, i);
		if (envs[i].der == NULL || envs[i].len == 0)
			return cf_error_set(err, CF_ERR_USAGE,
					    "secret %s: envelope for %.16s is "
					    "empty", name, envs[i].recipient);
		if (envs[i].len > CF_STORE_ENVELOPE_MAX)
			return cf_error_set(err, CF_ERR_TOO_LARGE,
					    "secret %s: envelope for %.16s is "
					    "%zu bytes; at most %d", name,
					    envs[i].recipient, envs[i].len,
					    CF_STORE_ENVELOPE_MAX);
	}
	return need_distinct("secret", name, envs, n, dup_status, err);
}

cf_status cf_store_secret_put(cf_store *st, const char *tenant,
			      const char *name, int64_t version,
			      const char *writer, int64_t now,
			      const cf_envelope_in *envs, size_t n,
			      const cf_audit_entry *audit, int64_t *seq_out,
			      cf_error *err)
{
	cf_status rc;

	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK ||
	    (rc = need_fp(writer, "writer fingerprint", err)) != CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	if (version < 1)
		return cf_error_set(err, CF_ERR_USAGE,
				    "secret %s: version %" PRId64 " is not "
				    "positive", name, version);
	if ((rc = need_envelopes(name, envs, n, CF_ERR_USAGE, err)) != CF_OK)
		return rc;
	if (seq_out != NULL)
		*seq_out = 0;
	return DISPATCH(st, secret_put, tenant, name, version, writer, now,
			envs, n, audit, seq_out, err);
}

cf_status cf_store_secret_delete(cf_store *st, const char *tenant,
				 const char *name, const char *writer,
				 int64_t now, const cf_audit_entry *audit,
				 char (**recipients_out)[65], size_t *n_out,
				 cf_error *err)
{
	cf_status rc;

	if (recipients_out != NULL)
		*recipients_out = NULL;
	if (n_out != NULL)
		*n_out = 0;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK ||
	    (rc = need_fp(writer, "writer fingerprint", err)) != CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	return DISPATCH(st, secret_delete, tenant, name, writer, now, audit,
			recipients_out, n_out, err);
}

cf_status cf_store_secret_latest(cf_store *st, const char *tenant,
				 const char *name, cf_secret_row *out,
				 cf_error *err)
{
	cf_status rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK)
		return rc;
	if (out == NULL)
		return no_output(err);
	return DISPATCH(st, secret_latest, tenant, name, out, err);
}

cf_status cf_store_secret_list(cf_store *st, const char *tenant,
			       const char *prefix, cf_secret_row **out,
			       size_t *n, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK)
		return rc;
	if (prefix == NULL)
		prefix = "";
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_str(prefix, CF_STORE_NAME_MAX, "name prefix", err)) !=
		    CF_OK)
		return rc;
	return DISPATCH(st, secret_list, tenant, prefix, out, n, err);
}

cf_status cf_store_secret_history(cf_store *st, const char *tenant,
				  const char *name, cf_secret_row **out,
				  size_t *n, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK)
		return rc;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK)
		return rc;
	return DISPATCH(st, secret_history, tenant, name, out, n, err);
}

cf_status cf_store_envelope_get(cf_store *st, const char *tenant,
				const char *name, int64_t version,
				const char *recipient, cf_feed_item *out,
				cf_error *err)
{
	cf_status rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK ||
	    (rc = need_fp(recipient, "recipient fingerprint", err)) != CF_OK)
		return rc;
	if (out == NULL)
		return no_output(err);
	if (version < 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "secret %s: version %" PRId64 " is "
				    "negative", name, version);
	return DISPATCH(st, envelope_get, tenant, name, version, recipient,
			out, err);
}

cf_status cf_store_feed_bounded(cf_store *st, const char *tenant,
				const char *recipient, int64_t since,
				size_t limit, size_t max_bytes,
				cf_feed_item **out, size_t *n,
				int64_t *cursor_out, int *more_out,
				cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK)
		return rc;
	if (cursor_out != NULL)
		*cursor_out = since;
	if (more_out != NULL)
		*more_out = 0;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_fp(recipient, "recipient fingerprint", err)) != CF_OK)
		return rc;
	if (since < 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "feed cursor %" PRId64 " is negative",
				    since);
	if (limit == 0)
		limit = CF_STORE_FEED_MAX;
	if (limit > CF_STORE_FEED_LIMIT_MAX)
		limit = CF_STORE_FEED_LIMIT_MAX;
	return DISPATCH(st, feed, tenant, recipient, since, limit, max_bytes,
			out, n, cursor_out, more_out, err);
}

cf_status cf_store_feed(cf_store *st, const char *tenant,
			const char *recipient, int64_t since, size_t limit,
			cf_feed_item **out, size_t *n, int64_t *cursor_out,
			cf_error *err)
{
	return cf_store_feed_bounded(st, tenant, recipient, since, limit, 0,
				     out, n, cursor_out, NULL, err);
}

void cf_feed_item_clear(cf_feed_item *item)
{
	if (item == NULL)
		return;
	free(item->der);
	memset(item, 0, sizeof(*item));
}

void cf_feed_items_free(cf_feed_item *items, size_t n)
{
	if (items == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		cf_feed_item_clear(&items[i]);
	free(items);
}

/* ---- removal --------------------------------------------------------------- */

cf_status cf_store_secret_recipients(cf_store *st, const char *tenant,
				     const char *name, int64_t version,
				     int64_t *version_out,
				     cf_recipient_row **out, size_t *n,
				     cf_error *err)
{
	int64_t got = 0;
	cf_status rc;

	if (version_out != NULL)
		*version_out = 0;
	if ((rc = need_list_out((void **)out, n, err)) != CF_OK ||
	    (rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK)
		return rc;
	if (version < 0)
		return cf_error_set(err, CF_ERR_USAGE, "store: a negative version");
	rc = DISPATCH(st, secret_recipients, tenant, name, version, &got, out,
		      n, err);
	if (rc == CF_OK && version_out != NULL)
		*version_out = got;
	return rc;
}

cf_status cf_store_recipient_names(cf_store *st, const char *tenant,
				   const char *recipient, char (**out)[256],
				   size_t *n, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK ||
	    (rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_fp(recipient, "recipient fingerprint", err)) != CF_OK)
		return rc;
	return DISPATCH(st, recipient_names, tenant, recipient, out, n, err);
}

cf_status cf_store_envelopes_purge(cf_store *st, const char *tenant,
				   const char *recipient,
				   const char (*names)[256], size_t n,
				   const cf_audit_entry *audit,
				   int64_t *removed, cf_error *err)
{
	cf_status rc;

	if (removed != NULL)
		*removed = 0;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_fp(recipient, "recipient fingerprint", err)) != CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	if (n > 0 && names == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "store: no names");
	for (size_t i = 0; i < n; i++)
		if (!FIXED_OK(names[i]) ||
		    (rc = need_secret_name(names[i], err)) != CF_OK)
			return rc != CF_OK ? rc : cf_error_set(err, CF_ERR_USAGE,
				"store: an unterminated name");
	if (n == 0)
		return CF_OK;
	return DISPATCH(st, envelopes_purge, tenant, recipient, names, n, audit,
			removed, err);
}

/* ---- sync --------------------------------------------------------------------- */

cf_status cf_store_version_add(cf_store *st, const char *tenant,
			       const char *name, int64_t version,
			       int64_t now, const cf_envelope_in *envs,
			       size_t n, const cf_audit_entry *audit,
			       int64_t *added, char (**recipients_out)[65],
			       size_t *n_out, cf_error *err)
{
	char (*rcpts)[65] = NULL;
	size_t n_rcpts = 0;
	int64_t count = 0;
	cf_status rc;

	if (added != NULL)
		*added = 0;
	if (recipients_out != NULL)
		*recipients_out = NULL;
	if (n_out != NULL)
		*n_out = 0;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK ||
	    (rc = need_envelopes(name, envs, n, CF_ERR_USAGE, err)) != CF_OK)
		return rc;
	if (version < 1)
		return cf_error_set(err, CF_ERR_USAGE, "store: a version is 1 "
				    "or more");
	rc = DISPATCH(st, version_add, tenant, name, version, now, envs, n,
		      audit, &count, &rcpts, &n_rcpts, err);
	if (rc != CF_OK)
		return rc;
	if (added != NULL)
		*added = count;
	if (recipients_out != NULL && n_out != NULL) {
		*recipients_out = rcpts;
		*n_out = n_rcpts;
	} else {
		free(rcpts);
	}
	return CF_OK;
}

/* ---- staged uploads ------------------------------------------------------ */

/* An upload id: exactly 32 lower-case hex characters. */
static cf_status need_upload_id(const char *id, cf_error *err)
{
	if (id == NULL || strnlen(id, 33) != 32 ||
	    strspn(id, "0123456789abcdef") != 32)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: an upload id is 32 lower-case hex "
				    "characters");
	return CF_OK;
}

cf_status cf_store_upload_begin(cf_store *st, const char *tenant,
				const char *name, int64_t version,
				const char *writer, int64_t now,
				cf_upload_row *out, cf_error *err)
{
	cf_status rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK ||
	    (rc = need_fp(writer, "writer fingerprint", err)) != CF_OK)
		return rc;
	if (out == NULL)
		return no_output(err);
	if (version < 1)
		return cf_error_set(err, CF_ERR_USAGE,
				    "secret %s: version %" PRId64 " is not "
				    "positive", name, version);
	return DISPATCH(st, upload_begin, tenant, name, version, writer, now,
			out, err);
}

cf_status cf_store_upload_get(cf_store *st, const char *tenant,
			      const char *id, int64_t now, cf_upload_row *out,
			      cf_error *err)
{
	cf_status rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_upload_id(id, err)) != CF_OK)
		return rc;
	if (out == NULL)
		return no_output(err);
	return DISPATCH(st, upload_get, tenant, id, now, out, err);
}

cf_status cf_store_upload_add(cf_store *st, const char *tenant,
			      const char *id, const char *writer, int64_t now,
			      const cf_envelope_in *envs, size_t n,
			      cf_upload_row *out, cf_error *err)
{
	cf_upload_row scratch;
	cf_status rc;

	if (out == NULL)
		out = &scratch;
	memset(out, 0, sizeof(*out));
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_upload_id(id, err)) != CF_OK ||
	    (rc = need_fp(writer, "writer fingerprint", err)) != CF_OK ||
	    (rc = need_envelopes(id, envs, n, CF_ERR_EXISTS, err)) != CF_OK)
		return rc;
	return DISPATCH(st, upload_add, tenant, id, writer, now, envs, n, out,
			err);
}

cf_status cf_store_upload_commit(cf_store *st, const char *tenant,
				 const char *id, const char *writer,
				 int64_t now, const cf_audit_entry *audit,
				 cf_upload_row *out,
				 char (**recipients_out)[65], size_t *n_out,
				 cf_error *err)
{
	cf_status rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (recipients_out != NULL)
		*recipients_out = NULL;
	if (n_out != NULL)
		*n_out = 0;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_upload_id(id, err)) != CF_OK ||
	    (rc = need_fp(writer, "writer fingerprint", err)) != CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	return DISPATCH(st, upload_commit, tenant, id, writer, now, audit, out,
			recipients_out, n_out, err);
}

cf_status cf_store_upload_abort(cf_store *st, const char *tenant,
				const char *id, const char *writer,
				int64_t now, cf_error *err)
{
	cf_status rc;

	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_upload_id(id, err)) != CF_OK ||
	    (rc = need_fp(writer, "writer fingerprint", err)) != CF_OK)
		return rc;
	return DISPATCH(st, upload_abort, tenant, id, writer, now, err);
}

/* ---- operator commands --------------------------------------------------- */

static cf_status need_cmd_id(const char *id, cf_error *err)
{
	if (id == NULL || strnlen(id, 33) != 32 ||
	    strspn(id, "0123456789abcdef") != 32)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: a command id is 32 lower-case hex "
				    "characters");
	return CF_OK;
}

static cf_status need_cmd_envelopes(const char *id, const cf_envelope_in *envs,
				    size_t n, cf_error *err)
{
	if (envs == NULL || n == 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "command %s: at least one envelope is "
				    "needed", id);
	if (n > CF_STORE_ENVELOPES_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
				    "command %s: %zu envelopes in one request; "
				    "at most %d", id, n, CF_STORE_ENVELOPES_MAX);
	for (size_t i = 0; i < n; i++) {
		if (!FIXED_OK(envs[i].recipient) ||
		    envs[i].recipient[0] == '\0')
			return cf_error_set(err, CF_ERR_USAGE,
					    "command %s: envelope %zu names no "
					    "recipient", id, i);
		if (envs[i].der == NULL || envs[i].len == 0)
			return cf_error_set(err, CF_ERR_USAGE,
					    "command %s: the envelope for %.16s "
					    "is empty", id, envs[i].recipient);
		if (envs[i].len > CF_STORE_CMD_ENVELOPE_MAX)
			return cf_error_set(err, CF_ERR_TOO_LARGE,
					    "command %s: the envelope for %.16s "
					    "is %zu bytes; at most %d", id,
					    envs[i].recipient, envs[i].len,
					    CF_STORE_CMD_ENVELOPE_MAX);
	}
	return need_distinct("command", id, envs, n, CF_ERR_EXISTS, err);
}

static cf_status need_limit(size_t limit, cf_error *err)
{
	if (limit == 0 || limit > CF_STORE_FEED_MAX)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: a limit is 1 to %d",
				    CF_STORE_FEED_MAX);
	return CF_OK;
}

cf_status cf_store_cmd_post(cf_store *st, const char *tenant, const char *id,
			    const char *sender, int64_t now, int64_t expires,
			    int create, const cf_envelope_in *envs, size_t n,
			    const cf_audit_entry *audit, cf_error *err)
{
	cf_status rc;

	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_cmd_id(id, err)) != CF_OK ||
	    (rc = need_fp(sender, "sender fingerprint", err)) != CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK ||
	    (rc = need_cmd_envelopes(id, envs, n, err)) != CF_OK)
		return rc;
	if (create && expires < now)
		return cf_error_set(err, CF_ERR_USAGE,
				    "command %s: expires before it is posted",
				    id);
	return DISPATCH(st, cmd_post, tenant, id, sender, now, expires,
			create, envs, n, audit, err);
}

cf_status cf_store_cmd_pending(cf_store *st, const char *tenant,
			       const char *recipient, int64_t since,
			       int64_t now, size_t limit, cf_cmd_item **out,
			       size_t *n, int64_t *cursor_out, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK ||
	    (rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_fp(recipient, "recipient fingerprint", err)) != CF_OK ||
	    (rc = need_limit(limit, err)) != CF_OK)
		return rc;
	if (cursor_out != NULL)
		*cursor_out = since;
	return DISPATCH(st, cmd_pending, tenant, recipient, since, now, limit,
			out, n, cursor_out, err);
}

cf_status cf_store_cmd_answer(cf_store *st, const char *tenant,
			      const char *id, const char *recipient,
			      int64_t now, const unsigned char *der,
			      size_t len, const cf_audit_entry *audit,
			      char sender_out[65], cf_error *err)
{
	cf_status rc;

	if (sender_out == NULL)
		return no_output(err);
	sender_out[0] = '\0';
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_cmd_id(id, err)) != CF_OK ||
	    (rc = need_fp(recipient, "recipient fingerprint", err)) != CF_OK ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	if (der == NULL || len == 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "command %s: the answer is empty", id);
	if (len > CF_STORE_CMD_RESULT_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
				    "command %s: the answer is %zu bytes; at "
				    "most %d", id, len, CF_STORE_CMD_RESULT_MAX);
	return DISPATCH(st, cmd_answer, tenant, id, recipient, now, der, len,
			audit, sender_out, err);
}

cf_status cf_store_cmd_get(cf_store *st, const char *tenant, const char *id,
			   cf_cmd_row *out, cf_error *err)
{
	cf_status rc;

	if (out == NULL)
		return no_output(err);
	memset(out, 0, sizeof(*out));
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_cmd_id(id, err)) != CF_OK)
		return rc;
	return DISPATCH(st, cmd_get, tenant, id, out, err);
}

cf_status cf_store_cmd_recipients(cf_store *st, const char *tenant,
				  const char *id, cf_cmd_item **out,
				  size_t *n, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK ||
	    (rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_cmd_id(id, err)) != CF_OK)
		return rc;
	return DISPATCH(st, cmd_recipients, tenant, id, out, n, err);
}

cf_status cf_store_cmd_answers(cf_store *st, const char *tenant,
			       const char *id, int64_t since, size_t limit,
			       cf_cmd_item **out, size_t *n, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK ||
	    (rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_cmd_id(id, err)) != CF_OK ||
	    (rc = need_limit(limit, err)) != CF_OK)
		return rc;
	return DISPATCH(st, cmd_answers, tenant, id, since, limit, out, n, err);
}

cf_status cf_store_cmd_list(cf_store *st, const char *tenant,
			    const char *sender, int64_t before, size_t limit,
			    cf_cmd_row **out, size_t *n, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK ||
	    (rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_fp(sender, "sender fingerprint", err)) != CF_OK ||
	    (rc = need_limit(limit, err)) != CF_OK)
		return rc;
	return DISPATCH(st, cmd_list, tenant, sender, before, limit, out, n,
			err);
}

cf_status cf_store_cmd_expire(cf_store *st, int64_t now, int64_t retention,
			      int64_t *removed, cf_error *err)
{
	cf_status rc;

	if (removed != NULL)
		*removed = 0;
	if ((rc = need_store(st, err)) != CF_OK)
		return rc;
	if (retention < 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: a negative retention");
	return DISPATCH(st, cmd_expire, now, retention, removed, err);
}

void cf_cmd_items_free(cf_cmd_item *items, size_t n)
{
	if (items == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(items[i].der);
	free(items);
}

/* ---- audit ------------------------------------------------------------ */

cf_status cf_store_audit_append(cf_store *st, const cf_audit_entry *entry,
				cf_error *err)
{
	cf_status rc;

	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_audit(entry, err)) != CF_OK)
		return rc;
	return DISPATCH(st, audit_append, entry, err);
}

cf_status cf_store_audit_append_many(cf_store *st,
				     const cf_audit_entry *entries, size_t n,
				     cf_error *err)
{
	cf_status rc;

	if ((rc = need_store(st, err)) != CF_OK)
		return rc;
	if (n == 0)
		return CF_OK;
	if (entries == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "store: no audit entries");
	for (size_t i = 0; i < n; i++)
		if ((rc = need_audit(&entries[i], err)) != CF_OK)
			return rc;
	return DISPATCH(st, audit_append_many, entries, n, err);
}

cf_status cf_store_audit_list(cf_store *st, const char *tenant,
			      const cf_audit_filter *filter,
			      cf_audit_entry **out, size_t *n, cf_error *err)
{
	static const cf_audit_filter all = { 0 };
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK)
		return rc;
	if (filter == NULL)
		filter = &all;
	/* Not need_tenant: "" is a valid query, the chain of entries logged
	 * before a tenant was known (the tests check it stays empty). */
	if ((rc = need_store(st, err)) != CF_OK ||
	    (rc = need_str(tenant, 64, "tenant id", err)) != CF_OK ||
	    (filter->actor != NULL &&
	     (rc = need_str(filter->actor, 64, "actor", err)) != CF_OK) ||
	    (filter->action != NULL &&
	     (rc = need_str(filter->action, CF_AUDIT_ACTION_MAX - 1, "action",
			    err)) != CF_OK))
		return rc;
	return DISPATCH(st, audit_list, tenant, filter, out, n, err);
}

/* ---- numbers for /metrics --------------------------------------------- */

cf_status cf_store_stats_get(cf_store *st, cf_store_stats *out, cf_error *err)
{
	cf_status rc;

	if (out == NULL)
		return no_output(err);
	memset(out, 0, sizeof(*out));
	if ((rc = need_store(st, err)) != CF_OK)
		return rc;
	return DISPATCH(st, stats_get, out, err);
}

/* ---- copying a whole store --------------------------------------------- */

/*
 * cf_store_copy streams the source's rows (copy_out) into pages of at
 * most COPY_PAGE_ROWS rows or about COPY_PAGE_BYTES bytes (one row more
 * if a single row is larger), each written to the target with one
 * copy_in, so memory is bounded by a page whatever the store's size.
 * The digest of a table is SHA-256 over its rows in copy order, each
 * value as a tag byte (0 NULL, 1 integer, 2 text or bytes) then the
 * integer as 8 bytes big-endian or the length as 8 bytes big-endian and
 * the bytes: the same rows give the same digest on either backend.
 */
const cf_copy_def cf_copy_tables[CF_COPY_COUNT] = {
	{ "tenants", "id, root_pem, crl_pem, crl_number, created", "tttii" },
	{ "certs", "tenant, fp, kind, name, groups, cluster, issuer_fp, "
	  "serial, not_after, pem, created", "ttttttttiti" },
	{ "cert_groups", "tenant, grp, fp", "ttt" },
	{ "tokens", "id, tenant, hash, grp, uses, used, expires, created, "
	  "creator, revoked, envelope", "ttttiiiitib" },
	{ "enrollments", "id, tenant, token_id, grp, name, csr_pem, hmac, "
	  "source, status, cert_pem, chain_pem, reason, decided_by, created, "
	  "decided", "tttttttttttttii" },
	{ "versions", "tenant, name, version, created, writer, recipients, "
	  "bytes, deleted", "ttiitiii" },
	{ "envelopes", "tenant, name, version, recipient, seq, der",
	  "ttitib" },
	{ "feed", "seq, tenant, recipient, name, version, deleted, writer, "
	  "created", "itttiiti" },
	{ "audit", "tenant, seq, time, actor, subject, source, action, "
	  "object, bytes, prev, hash", "tiitttttitt" },
	{ "uploads", "id, tenant, name, version, writer, envelopes, bytes, "
	  "created, expires", "tttitiiii" },
	{ "upload_envelopes", "upload, recipient, der", "ttb" },
	{ "commands", "tenant, id, sender, created, expires, recipients, "
	  "bytes", "tttiiii" },
	{ "command_mail", "seq, tenant, id, recipient, expires, envelope, "
	  "answer_seq, answered, result", "itttibiib" },
	{ "acks", "tenant, name, agent, version, applied, result, reason, "
	  "received, der", "tttiittib" },
	{ "purged", "tenant, name, version, recipient, purged", "ttiti" },
	{ "sequences", "name, seq", "ti" },
};

_Static_assert(CF_COPY_COUNT == CF_STORE_COPY_TABLES,
	       "store.h and store_backend.h disagree on the copied tables");

#define COPY_PAGE_ROWS 500
#define COPY_PAGE_BYTES (4u * 1024u * 1024u)
#define CHAIN_PAGE 10000

typedef struct copy_ctx {
	cf_store *to;                /* NULL: a survey, nothing written */
	cf_store_copy_report *rep;
	EVP_MD_CTX *md[CF_COPY_COUNT];
	int table;                   /* of the last row seen, -1 before */
	cf_store_progress_fn progress;
	void *pctx;
	/* The page: rows of `table`, values whose bytes are in buf at off. */
	cf_copy_value *vals;
	size_t *off;
	size_t rows, cap_vals;
	unsigned char *buf;
	size_t used, cap;
} copy_ctx;

static void be64(uint64_t v, unsigned char out[8])
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		out[i] = (unsigned char)v;
}

static int digest_row(EVP_MD_CTX *md, const char *types,
		      const cf_copy_value *row)
{
	for (size_t c = 0; types[c] != '\0'; c++) {
		unsigned char head[9];

		if (row[c].null) {
			head[0] = 0;
			if (!EVP_DigestUpdate(md, head, 1))
				return 0;
		} else if (types[c] == 'i') {
			head[0] = 1;
			be64((uint64_t)row[c].i, head + 1);
			if (!EVP_DigestUpdate(md, head, 9))
				return 0;
		} else {
			head[0] = 2;
			be64((uint64_t)row[c].len, head + 1);
			if (!EVP_DigestUpdate(md, head, 9) ||
			    (row[c].len > 0 &&
			     !EVP_DigestUpdate(md, row[c].p, row[c].len)))
				return 0;
		}
	}
	return 1;
}

/* Writes the page to the target and empties it. */
static cf_status copy_flush(copy_ctx *x, cf_error *err)
{
	size_t cols;
	cf_status rc;

	if (x->rows == 0 || x->to == NULL)
		return CF_OK;
	cols = strlen(cf_copy_tables[x->table].types);
	/* buf no longer moves: the values may point into it now. */
	for (size_t k = 0; k < x->rows * cols; k++)
		if (!x->vals[k].null && x->vals[k].p != NULL)
			x->vals[k].p = x->buf + x->off[k];
	rc = x->to->ops->copy_in(x->to, x->table, x->vals, x->rows, err);
	if (rc == CF_OK && x->progress != NULL)
		x->progress(x->pctx, cf_copy_tables[x->table].name,
			    x->rep->tables[x->table].rows);
	x->rows = 0;
	x->used = 0;
	return rc;
}

static cf_status copy_nomem(cf_error *err)
{
	return cf_error_set(err, CF_ERR_NOMEM,
			    "out of memory while copying the database");
}

/* Appends one row to the page (values' bytes copied into buf). */
static cf_status copy_keep(copy_ctx *x, size_t cols, const cf_copy_value *row,
			   cf_error *err)
{
	size_t need = 0, at = x->rows * cols;

	for (size_t c = 0; c < cols; c++)
		if (!row[c].null && row[c].p != NULL) {
			if (row[c].len > SIZE_MAX - need)
				return copy_nomem(err);
			need += row[c].len;
		}
	if (at + cols > x->cap_vals) {
		size_t want = x->cap_vals == 0 ? COPY_PAGE_ROWS * cols :
			      x->cap_vals * 2;
		cf_copy_value *v;
		size_t *o;

		while (want < at + cols)
			want *= 2;
		if ((v = realloc(x->vals, want * sizeof(*v))) == NULL)
			return copy_nomem(err);
		x->vals = v;
		if ((o = realloc(x->off, want * sizeof(*o))) == NULL)
			return copy_nomem(err);
		x->off = o;
		x->cap_vals = want;
	}
	if (need > x->cap - x->used) {
		size_t want = x->cap == 0 ? 64 * 1024 : x->cap;
		unsigned char *b;

		while (want - x->used < need) {
			if (want > SIZE_MAX / 2)
				return copy_nomem(err);
			want *= 2;
		}
		if ((b = realloc(x->buf, want)) == NULL)
			return copy_nomem(err);
		x->buf = b;
		x->cap = want;
	}
	for (size_t c = 0; c < cols; c++) {
		cf_copy_value *v = &x->vals[at + c];

		*v = row[c];
		x->off[at + c] = x->used;
		if (!v->null && v->p != NULL) {
			if (v->len > 0)
				memcpy(x->buf + x->used, v->p, v->len);
			x->used += v->len;
		}
	}
	x->rows++;
	return CF_OK;
}

static cf_status copy_row(void *ctx, int table, const cf_copy_value *row,
			  cf_error *err)
{
	copy_ctx *x = ctx;
	cf_store_copy_table *t;
	size_t cols;
	cf_status rc;

	if (table < 0 || table >= CF_COPY_COUNT || table < x->table)
		return cf_error_set(err, CF_ERR_STORE,
				    "store: the copy met table %d out of order",
				    table);
	if (table != x->table && (rc = copy_flush(x, err)) != CF_OK)
		return rc;
	x->table = table;
	t = &x->rep->tables[table];
	cols = strlen(cf_copy_tables[table].types);
	if (!digest_row(x->md[table], cf_copy_tables[table].types, row))
		return cf_error_set(err, CF_ERR_CRYPTO,
				    "store: cannot hash table %s",
				    cf_copy_tables[table].name);
	t->rows++;
	for (size_t c = 0; c < cols; c++)
		if (!row[c].null && cf_copy_tables[table].types[c] != 'i')
			t->bytes += (int64_t)row[c].len;
	if (x->to == NULL)
		return CF_OK;
	if ((rc = copy_keep(x, cols, row, err)) != CF_OK)
		return rc;
	if (x->rows >= COPY_PAGE_ROWS || x->used >= COPY_PAGE_BYTES)
		return copy_flush(x, err);
	return CF_OK;
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Dumps from (into to, if not NULL) and fills rep. */
static cf_status copy_run(cf_store *from, cf_store *to,
			  cf_store_progress_fn progress, void *pctx,
			  cf_store_copy_report *rep, cf_error *err)
{
	copy_ctx x = { 0 };
	cf_status rc = CF_OK;
	double t0 = mono_s();

	memset(rep, 0, sizeof(*rep));
	x.to = to;
	x.rep = rep;
	x.table = -1;
	x.progress = progress;
	x.pctx = pctx;
	for (int t = 0; t < CF_COPY_COUNT; t++) {
		rep->tables[t].name = cf_copy_tables[t].name;
		if ((x.md[t] = EVP_MD_CTX_new()) == NULL ||
		    !EVP_DigestInit_ex(x.md[t], EVP_sha256(), NULL)) {
			rc = cf_error_set(err, CF_ERR_CRYPTO,
					  "store: cannot start a digest");
			goto out;
		}
	}
	if (to != NULL && (rc = to->ops->copy_in_begin(to, err)) != CF_OK)
		goto out;
	rc = from->ops->copy_out(from, copy_row, &x, err);
	if (rc == CF_OK)
		rc = copy_flush(&x, err);
	if (to != NULL) {
		if (rc == CF_OK)
			rc = to->ops->copy_in_end(to, 1, err);
		else
			(void)to->ops->copy_in_end(to, 0, NULL);
	}
	for (int t = 0; rc == CF_OK && t < CF_COPY_COUNT; t++)
		if (!EVP_DigestFinal_ex(x.md[t], rep->tables[t].digest, NULL))
			rc = cf_error_set(err, CF_ERR_CRYPTO,
					  "store: cannot finish a digest");
	rep->seconds = mono_s() - t0;
out:
	for (int t = 0; t < CF_COPY_COUNT; t++)
		EVP_MD_CTX_free(x.md[t]);
	free(x.vals);
	free(x.off);
	free(x.buf);
	return rc;
}

cf_status cf_store_copy(cf_store *from, cf_store *to,
			cf_store_progress_fn progress, void *ctx,
			cf_store_copy_report *out, cf_error *err)
{
	cf_store_copy_report scratch;
	cf_status rc;

	if ((rc = need_store(from, err)) != CF_OK ||
	    (rc = need_store(to, err)) != CF_OK)
		return rc;
	if (from == to)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: a database cannot be copied into "
				    "itself");
	return copy_run(from, to, progress, ctx, out != NULL ? out : &scratch,
			err);
}

cf_status cf_store_survey(cf_store *st, cf_store_copy_report *out,
			  cf_error *err)
{
	cf_status rc;

	if (out == NULL)
		return no_output(err);
	if ((rc = need_store(st, err)) != CF_OK)
		return rc;
	return copy_run(st, NULL, NULL, NULL, out, err);
}

/*
 * Walks tenant's chain on st page by page, checking every link and that
 * seq runs 1, 2, ...: *entries and last (genesis if empty).  where names
 * st in a message ("the source", "the copy").
 */
static cf_status chain_walk(cf_store *st, const char *tenant,
			    const char *where, int64_t *entries,
			    char last[65], cf_error *err)
{
	cf_audit_filter f = { 0 };
	cf_error why = { 0 };
	cf_status rc = CF_OK;

	*entries = 0;
	memcpy(last, cf_audit_genesis, 65);
	f.limit = CHAIN_PAGE;
	for (;;) {
		cf_audit_entry *e = NULL;
		size_t n = 0;

		if ((rc = cf_store_audit_list(st, tenant, &f, &e, &n, err)) !=
		    CF_OK)
			return rc;
		for (size_t i = 0; rc == CF_OK && i < n; i++) {
			if (e[i].seq != *entries + 1)
				rc = cf_error_set(err, CF_ERR_AUDIT,
						  "audit chain of tenant %.16s "
						  "on %s: entry %" PRId64
						  " follows entry %" PRId64,
						  tenant, where, e[i].seq,
						  *entries);
			else if (cf_audit_check(&e[i], last, &why) != CF_OK)
				rc = cf_error_set(err, CF_ERR_AUDIT,
						  "audit chain of tenant %.16s "
						  "on %s: %s", tenant, where,
						  why.msg);
			if (rc == CF_OK) {
				memcpy(last, e[i].hash, 65);
				*entries = e[i].seq;
				f.after_seq = e[i].seq;
			}
		}
		free(e);
		if (rc != CF_OK || n < CHAIN_PAGE)
			return rc;
	}
}

cf_status cf_store_copy_verify(cf_store *from, cf_store *to,
			       const cf_store_copy_report *copied,
			       cf_store_chain_report *chains, cf_error *err)
{
	cf_store_copy_report now;
	cf_tenant *tenants = NULL;
	size_t n = 0;
	cf_status rc;

	if (chains != NULL)
		memset(chains, 0, sizeof(*chains));
	if ((rc = need_store(from, err)) != CF_OK ||
	    (rc = need_store(to, err)) != CF_OK)
		return rc;
	if (copied == NULL)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: no copy report to verify against");
	if ((rc = cf_store_survey(to, &now, err)) != CF_OK)
		return rc;
	for (int t = 0; t < CF_COPY_COUNT; t++) {
		const cf_store_copy_table *a = &copied->tables[t],
					  *b = &now.tables[t];

		if (a->rows != b->rows)
			return cf_error_set(err, CF_ERR_STORE,
					    "the copy's table %s holds %" PRId64
					    " rows, the source's %" PRId64,
					    b->name, b->rows, a->rows);
		if (memcmp(a->digest, b->digest, sizeof(a->digest)) != 0)
			return cf_error_set(err, CF_ERR_STORE,
					    "the rows of the copy's table %s "
					    "differ from the source's (same "
					    "count, different digest)", b->name);
	}
	if ((rc = cf_store_tenant_list(from, &tenants, &n, err)) != CF_OK)
		return rc;
	/* i == n: the chain of entries logged before a tenant was known. */
	for (size_t i = 0; rc == CF_OK && i <= n; i++) {
		const char *id = i < n ? tenants[i].id : "";
		char last_from[65], last_to[65];
		int64_t n_from = 0, n_to = 0;

		if ((rc = chain_walk(from, id, "the source", &n_from,
				     last_from, err)) != CF_OK ||
		    (rc = chain_walk(to, id, "the copy", &n_to, last_to,
				     err)) != CF_OK)
			break;
		if (n_from != n_to || strcmp(last_from, last_to) != 0)
			rc = cf_error_set(err, CF_ERR_AUDIT,
					  "audit chain of tenant %.16s: the "
					  "copy ends at entry %" PRId64 " (%.16s"
					  "...), the source at %" PRId64
					  " (%.16s...)", id, n_to, last_to,
					  n_from, last_from);
		if (rc == CF_OK && chains != NULL && n_to > 0) {
			chains->chains++;
			chains->entries += n_to;
		}
	}
	cf_tenants_free(tenants, n);
	return rc;
}

/* ---- wake-ups across processes -------------------------------------- */

/* s is exactly len lowercase hex digits (what a payload can carry). */
static int is_hex(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[len] == '\0';
}

static cf_status need_node(const char *node, cf_error *err)
{
	if (node == NULL || !is_hex(node, CF_STORE_NODE_LEN))
		return cf_error_set(err, CF_ERR_USAGE, "store: a node id is "
				    "%d lowercase hex digits",
				    CF_STORE_NODE_LEN);
	return CF_OK;
}

cf_status cf_store_notify_feeds(cf_store *st, const char *node,
				const char *tenant,
				const char (*recipients)[65], size_t n,
				cf_error *err)
{
	cf_status rc;

	if ((rc = need_store(st, err)) != CF_OK)
		return rc;
	if (st->ops->notify_feeds == NULL || n == 0)
		return CF_OK;
	if ((rc = need_node(node, err)) != CF_OK)
		return rc;
	if (tenant == NULL || !is_hex(tenant, 64) || recipients == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "store: a wake-up names "
				    "a tenant and recipients by fingerprint");
	for (size_t i = 0; i < n; i++)
		if (!is_hex(recipients[i], 64))
			return cf_error_set(err, CF_ERR_USAGE, "store: recipient "
					    "%zu of a wake-up is not a "
					    "fingerprint", i);
	return st->ops->notify_feeds(st, node, tenant, recipients, n, err);
}

cf_status cf_store_listener_open(const char *url, const char *node,
				 cf_store_listener **out, cf_error *err)
{
	cf_status rc;

	if (out == NULL)
		return no_output(err);
	*out = NULL;
	if ((rc = need_nonempty(url, 4096, "database url", err)) != CF_OK ||
	    (rc = need_node(node, err)) != CF_OK)
		return rc;
	if (strncmp(url, "postgresql://", 13) == 0 ||
	    strncmp(url, "postgres://", 11) == 0)
		return cf_store_pg_listener_open(url, node, out, err);
	return cf_error_set(err, CF_ERR_USAGE, "store: SQLite has no "
			    "wake-ups across processes (one process serves "
			    "its file)");
}

/* ---- rollout: acknowledgements and exposure ---------------------------- */

cf_status cf_store_ack_put(cf_store *st, const char *tenant,
			   const char *agent, const cf_ack_row *rows,
			   size_t n, int64_t now, const cf_audit_entry *audit,
			   int64_t *stored, cf_error *err)
{
	return cf_store_ack_put_via(st, tenant, agent, NULL, rows, n, now,
				    audit, stored, err);
}

cf_status cf_store_ack_put_via(cf_store *st, const char *tenant,
			       const char *agent, const char *via,
			       const cf_ack_row *rows, size_t n, int64_t now,
			       const cf_audit_entry *audit, int64_t *stored,
			       cf_error *err)
{
	cf_status rc;

	if (stored != NULL)
		*stored = 0;
	if ((rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_fp(agent, "agent fingerprint", err)) != CF_OK ||
	    (via != NULL &&
	     (rc = need_fp(via, "cluster fingerprint", err)) != CF_OK) ||
	    (rc = need_audit(audit, err)) != CF_OK)
		return rc;
	if (rows == NULL || n == 0)
		return cf_error_set(err, CF_ERR_USAGE, "store: no acks to put");
	if (n > CF_STORE_ACKS_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
				    "store: %zu acks in one put, above %d", n,
				    CF_STORE_ACKS_MAX);
	for (size_t i = 0; i < n; i++) {
		const cf_ack_row *r = &rows[i];

		if (!FIXED_OK(r->agent) || !FIXED_OK(r->name) ||
		    !FIXED_OK(r->result) || !FIXED_OK(r->reason))
			return cf_error_set(err, CF_ERR_USAGE,
					    "store: ack %zu has an unterminated "
					    "field", i);
		if (strcmp(r->agent, agent) != 0)
			return cf_error_set(err, CF_ERR_USAGE,
					    "store: ack %zu is of another agent",
					    i);
		if ((rc = need_secret_name(r->name, err)) != CF_OK)
			return rc;
		if (strcmp(r->result, "ok") != 0 &&
		    strcmp(r->result, "failed") != 0)
			return cf_error_set(err, CF_ERR_USAGE,
					    "store: ack %zu result is not ok or "
					    "failed", i);
		if (r->der == NULL || r->len == 0)
			return cf_error_set(err, CF_ERR_USAGE,
					    "store: ack %zu has no signed DER", i);
		if (r->len > CF_STORE_ACK_DER_MAX)
			return cf_error_set(err, CF_ERR_TOO_LARGE,
					    "store: ack %zu is %zu bytes, above "
					    "%d", i, r->len, CF_STORE_ACK_DER_MAX);
	}
	return DISPATCH(st, ack_put, tenant, agent, via ? via : "", rows, n, now,
			audit, stored, err);
}

cf_status cf_store_ack_list(cf_store *st, const char *tenant,
			    const char *name, cf_ack_row **out, size_t *n,
			    cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK ||
	    (rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK)
		return rc;
	return DISPATCH(st, ack_list, tenant, name, out, n, err);
}

void cf_ack_rows_free(cf_ack_row *rows, size_t n)
{
	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(rows[i].der);
	free(rows);
}

cf_status cf_store_recipient_certs(cf_store *st, const char *tenant,
				      const char *name, int64_t version,
				      cf_cert_row **out, size_t *n,
				      cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK ||
	    (rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_secret_name(name, err)) != CF_OK)
		return rc;
	return DISPATCH(st, recipient_certs, tenant, name, version, out, n,
			err);
}

cf_status cf_store_exposed(cf_store *st, const char *tenant,
			   const char *revoked, const char *prefix,
			   cf_exposed_row **out, size_t *n, cf_error *err)
{
	cf_status rc;

	if ((rc = need_list_out((void **)out, n, err)) != CF_OK ||
	    (rc = need_tenant(st, tenant, err)) != CF_OK ||
	    (rc = need_nonempty(revoked, CF_STORE_REVOKED_MAX,
				"revoked serials", err)) != CF_OK ||
	    (rc = need_str(prefix, CF_STORE_NAME_MAX, "prefix", err)) != CF_OK)
		return rc;
	return DISPATCH(st, exposed, tenant, revoked, prefix, out, n, err);
}

cf_status cf_store_rollout_stats(cf_store *st, cf_rollout_stats *out,
				 cf_error *err)
{
	cf_status rc;

	if (out == NULL)
		return no_output(err);
	memset(out, 0, sizeof(*out));
	if ((rc = need_store(st, err)) != CF_OK)
		return rc;
	return DISPATCH(st, rollout_stats, out, err);
}
