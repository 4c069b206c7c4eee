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
#include <stdlib.h>
#include <string.h>

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
