/*
 * store_backend.h - what a storage backend implements (private to
 * store.c and the store_*.c backends; callers use store.h only).
 *
 * A backend's connection struct starts with a struct cf_store whose ops
 * point at its table.  store.c checks and bounds every argument before it
 * dispatches, so a backend may rely on: non-NULL pointers where store.h
 * requires them, NUL-terminated fixed-size fields, names and PEMs within
 * the limits below (each group of a certificate's list included), n >= 1
 * envelopes of at most CF_STORE_ENVELOPE_MAX bytes each and no recipient
 * twice among them.  Every op is required (no NULL entries).  Adding a backend (store_pg.c) means one table of these
 * functions and one branch in cf_store_open; no caller changes.
 */
#ifndef CF_STORE_BACKEND_H
#define CF_STORE_BACKEND_H

#include "store.h"

/* Limits checked by store.c before any backend sees the input. */
#define CF_STORE_NAME_MAX 255              /* secret names, CNs, groups */
#define CF_STORE_GROUPS_MAX (64 * 1024)    /* a certificate's group list */
#define CF_STORE_PEM_MAX (256 * 1024)      /* a certificate, CSR, CRL, chain */
#define CF_STORE_ENVELOPE_MAX 1664344      /* one envelope's DER (API.md) */
#define CF_STORE_ENVELOPES_MAX 100000      /* envelopes in one version */
#define CF_STORE_TOKENS_MAX 10000          /* tokens in one add */
#define CF_STORE_TOKEN_ENVELOPE_MAX (64 * 1024)

typedef struct cf_store_ops {
	const char *name; /* "sqlite" */
	void (*free)(cf_store *st);
	int (*schema_version)(cf_store *st);

	cf_status (*tenant_add)(cf_store *st, const char *id,
				const char *root_pem,
				const cf_audit_entry *audit, cf_error *err);
	cf_status (*tenant_get)(cf_store *st, const char *id, cf_tenant *out,
				cf_error *err);
	cf_status (*tenant_list)(cf_store *st, cf_tenant **out, size_t *n,
				 cf_error *err);
	cf_status (*tenant_set_crl)(cf_store *st, const char *id,
				    const char *crl_pem, int64_t crl_number,
				    const cf_audit_entry *audit, cf_error *err);

	cf_status (*cert_put)(cf_store *st, const cf_cert_row *row,
			      const cf_audit_entry *audit, cf_error *err);
	cf_status (*cert_get)(cf_store *st, const char *tenant, const char *fp,
			      cf_cert_row *out, cf_error *err);
	cf_status (*cert_list)(cf_store *st, const char *tenant,
			       const cf_cert_filter *filter, cf_cert_row **out,
			       size_t *n, cf_error *err);

	cf_status (*token_add)(cf_store *st, const cf_token_row *rows, size_t n,
			       const cf_audit_entry *audit_template,
			       cf_error *err);
	cf_status (*token_get)(cf_store *st, const char *id, cf_token_row *out,
			       cf_error *err);
	cf_status (*token_list)(cf_store *st, const char *tenant,
				cf_token_row **out, size_t *n, cf_error *err);
	cf_status (*token_revoke)(cf_store *st, const char *tenant,
				  const char *id, const cf_audit_entry *audit,
				  cf_error *err);

	cf_status (*enroll_add)(cf_store *st, cf_enroll_row *row,
				const char *token_hash, int64_t now,
				const cf_audit_entry *audit_template,
				cf_error *err);
	cf_status (*enroll_get)(cf_store *st, const char *id,
				cf_enroll_row *out, cf_error *err);
	cf_status (*enroll_list)(cf_store *st, const char *tenant,
				 const char *status, cf_enroll_row **out,
				 size_t *n, cf_error *err);
	cf_status (*enroll_decide)(cf_store *st, const char *tenant,
				   const char *id, int approve,
				   const cf_cert_row *cert,
				   const char *chain_pem, const char *reason,
				   const char *decided_by, int64_t now,
				   const cf_audit_entry *audit, cf_error *err);

	cf_status (*secret_put)(cf_store *st, const char *tenant,
				const char *name, int64_t version,
				const char *writer, int64_t now,
				const cf_envelope_in *envs, size_t n,
				const cf_audit_entry *audit, int64_t *seq_out,
				cf_error *err);
	cf_status (*secret_delete)(cf_store *st, const char *tenant,
				   const char *name, const char *writer,
				   int64_t now, const cf_audit_entry *audit,
				   char (**recipients_out)[65], size_t *n_out,
				   cf_error *err);
	cf_status (*secret_latest)(cf_store *st, const char *tenant,
				   const char *name, cf_secret_row *out,
				   cf_error *err);
	cf_status (*secret_list)(cf_store *st, const char *tenant,
				 const char *prefix, cf_secret_row **out,
				 size_t *n, cf_error *err);
	cf_status (*secret_history)(cf_store *st, const char *tenant,
				    const char *name, cf_secret_row **out,
				    size_t *n, cf_error *err);
	cf_status (*envelope_get)(cf_store *st, const char *tenant,
				  const char *name, int64_t version,
				  const char *recipient, cf_feed_item *out,
				  cf_error *err);
	/* limit >= 1; max_bytes 0: no byte bound; more_out may be NULL. */
	cf_status (*feed)(cf_store *st, const char *tenant,
			  const char *recipient, int64_t since, size_t limit,
			  size_t max_bytes, cf_feed_item **out, size_t *n,
			  int64_t *cursor_out, int *more_out, cf_error *err);

	cf_status (*upload_begin)(cf_store *st, const char *tenant,
				  const char *name, int64_t version,
				  const char *writer, int64_t now,
				  cf_upload_row *out, cf_error *err);
	cf_status (*upload_get)(cf_store *st, const char *tenant,
				const char *id, int64_t now,
				cf_upload_row *out, cf_error *err);
	/* out is never NULL here. */
	cf_status (*upload_add)(cf_store *st, const char *tenant,
				const char *id, const char *writer,
				int64_t now, const cf_envelope_in *envs,
				size_t n, cf_upload_row *out, cf_error *err);
	cf_status (*upload_commit)(cf_store *st, const char *tenant,
				   const char *id, const char *writer,
				   int64_t now, const cf_audit_entry *audit,
				   cf_upload_row *out,
				   char (**recipients_out)[65],
				   size_t *n_out, cf_error *err);
	cf_status (*upload_abort)(cf_store *st, const char *tenant,
				  const char *id, const char *writer,
				  int64_t now, cf_error *err);

	/* Commands (store.h); arguments checked by store.c. */
	cf_status (*cmd_post)(cf_store *st, const char *tenant, const char *id,
			      const char *sender, int64_t now, int64_t expires,
			      int create, const cf_envelope_in *envs, size_t n,
			      const cf_audit_entry *audit, cf_error *err);
	cf_status (*cmd_pending)(cf_store *st, const char *tenant,
				 const char *recipient, int64_t since,
				 int64_t now, size_t limit, cf_cmd_item **out,
				 size_t *n, int64_t *cursor_out, cf_error *err);
	cf_status (*cmd_answer)(cf_store *st, const char *tenant,
				const char *id, const char *recipient,
				int64_t now, const unsigned char *der,
				size_t len, const cf_audit_entry *audit,
				char sender_out[65], cf_error *err);
	cf_status (*cmd_get)(cf_store *st, const char *tenant, const char *id,
			     cf_cmd_row *out, cf_error *err);
	cf_status (*cmd_recipients)(cf_store *st, const char *tenant,
				    const char *id, cf_cmd_item **out,
				    size_t *n, cf_error *err);
	cf_status (*cmd_answers)(cf_store *st, const char *tenant,
				 const char *id, int64_t since, size_t limit,
				 cf_cmd_item **out, size_t *n, cf_error *err);
	cf_status (*cmd_list)(cf_store *st, const char *tenant,
			      const char *sender, int64_t before, size_t limit,
			      cf_cmd_row **out, size_t *n, cf_error *err);
	cf_status (*cmd_expire)(cf_store *st, int64_t now, int64_t retention,
				int64_t *removed, cf_error *err);

	cf_status (*audit_append)(cf_store *st, const cf_audit_entry *entry,
				  cf_error *err);
	/* All n in one transaction, all or none (store.h); required. */
	cf_status (*audit_append_many)(cf_store *st,
				       const cf_audit_entry *entries, size_t n,
				       cf_error *err);
	cf_status (*audit_list)(cf_store *st, const char *tenant,
				const cf_audit_filter *filter,
				cf_audit_entry **out, size_t *n, cf_error *err);

	cf_status (*stats_get)(cf_store *st, cf_store_stats *out,
			       cf_error *err);
} cf_store_ops;

struct cf_store {
	const cf_store_ops *ops;
};

/* The SQLite backend (store_sqlite.c); path is a file name. */
cf_status cf_store_sqlite_open(const char *path, unsigned flags,
			       cf_store **out, cf_error *err);

/*
 * The PostgreSQL backend (store_pg.c); url is a libpq connection URI
 * (postgresql://...), never copied into a message.  Without
 * CF_STORE_CREATE a database holding no coffer schema is
 * CF_ERR_NOT_FOUND.
 */
cf_status cf_store_pg_open(const char *url, unsigned flags, cf_store **out,
			   cf_error *err);

/*
 * For tests: EXPLAIN QUERY PLAN of the feed query, one detail line per
 * plan step, into buf.  CF_ERR_USAGE if st is not a SQLite store.
 */
cf_status cf_store_sqlite_explain_feed(cf_store *st, char *buf, size_t cap,
				       cf_error *err);

#endif
