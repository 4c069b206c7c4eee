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

/*
 * A whole store as cf_store_copy moves it: the tables of store.h's
 * CF_STORE_COPY_TABLES, in this order, each a fixed list of columns with
 * the same names and meaning in every backend (cf_copy_tables, store.c).
 * Types: 'i' integer, 't' text, 'b' bytes; any value may be NULL.  Rows
 * go in their copy order (the primary key, byte order for text; for
 * enrollments, creation time then insertion order), which both backends
 * give alike, so digests over it compare across backends.  "sequences"
 * is two rows (name, number): "command_mail" and "feed", the highest
 * number each has given out (0 if none), even if no row holds it.
 */
enum cf_copy_table {
	CF_COPY_TENANTS, CF_COPY_CERTS, CF_COPY_CERT_GROUPS, CF_COPY_TOKENS,
	CF_COPY_ENROLLMENTS, CF_COPY_VERSIONS, CF_COPY_ENVELOPES,
	CF_COPY_FEED, CF_COPY_AUDIT, CF_COPY_UPLOADS,
	CF_COPY_UPLOAD_ENVELOPES, CF_COPY_COMMANDS, CF_COPY_COMMAND_MAIL,
	CF_COPY_ACKS, CF_COPY_PURGED, CF_COPY_SEQUENCES, CF_COPY_COUNT
};

typedef struct cf_copy_def {
	const char *name;     /* the table */
	const char *columns;  /* "a, b, c": its columns in copy order */
	const char *types;    /* one of 'i', 't', 'b' per column */
} cf_copy_def;

/* Indexed by enum cf_copy_table (the sequences entry names no table). */
extern const cf_copy_def cf_copy_tables[CF_COPY_COUNT];

typedef struct cf_copy_value {
	int null;
	int64_t i;                /* 'i' */
	const unsigned char *p;   /* 't', 'b': len bytes, not terminated */
	size_t len;
} cf_copy_value;

/* Receives one row of table: strlen(types) values. */
typedef cf_status (*cf_copy_row_fn)(void *ctx, int table,
				    const cf_copy_value *row, cf_error *err);

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

	cf_status (*secret_recipients)(cf_store *st, const char *tenant,
				       const char *name, int64_t version,
				       int64_t *version_out,
				       cf_recipient_row **out, size_t *n,
				       cf_error *err);
	cf_status (*recipient_names)(cf_store *st, const char *tenant,
				     const char *recipient, char (**out)[256],
				     size_t *n, cf_error *err);
	cf_status (*envelopes_purge)(cf_store *st, const char *tenant,
				     const char *recipient,
				     const char (*names)[256], size_t n,
				     const cf_audit_entry *audit,
				     int64_t *removed, cf_error *err);

	/* added, recipients_out, n_out are never NULL here. */
	cf_status (*version_add)(cf_store *st, const char *tenant,
				 const char *name, int64_t version,
				 int64_t now, const cf_envelope_in *envs,
				 size_t n, const cf_audit_entry *audit,
				 int64_t *added, char (**recipients_out)[65],
				 size_t *n_out, cf_error *err);

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

	/* Copying a whole store (cf_store_copy; cf_copy_tables above). */
	/* Every row of every table, table by table in cf_copy_table order
	 * and each in its copy order (below), all from one read snapshot;
	 * row() per row, its values valid during the call only.  A failure
	 * of row() stops the dump and is returned. */
	cf_status (*copy_out)(cf_store *st, cf_copy_row_fn row, void *ctx,
			      cf_error *err);
	/* Opens the copy's one write transaction on an empty store:
	 * CF_ERR_EXISTS if a table holds a row. */
	cf_status (*copy_in_begin)(cf_store *st, cf_error *err);
	/* n rows of table (n * columns values, row after row), inserted
	 * verbatim in the open transaction. */
	cf_status (*copy_in)(cf_store *st, int table,
			     const cf_copy_value *vals, size_t n,
			     cf_error *err);
	/* commit: commits (sequences were moved by the "sequences" rows);
	 * !commit: rolls back.  Safe to call after a failed copy_in. */
	cf_status (*copy_in_end)(cf_store *st, int commit, cf_error *err);

	/* Rollout (store.h); arguments checked by store.c. */
	cf_status (*ack_put)(cf_store *st, const char *tenant,
			     const char *agent, const char *via,
			     const cf_ack_row *rows,
			     size_t n, int64_t now,
			     const cf_audit_entry *audit, int64_t *stored,
			     cf_error *err);
	cf_status (*ack_list)(cf_store *st, const char *tenant,
			      const char *name, cf_ack_row **out, size_t *n,
			      cf_error *err);
	cf_status (*recipient_certs)(cf_store *st, const char *tenant,
					const char *name, int64_t version,
					cf_cert_row **out, size_t *n,
					cf_error *err);
	cf_status (*exposed)(cf_store *st, const char *tenant,
			     const char *revoked, const char *prefix,
			     cf_exposed_row **out, size_t *n, cf_error *err);
	cf_status (*rollout_stats)(cf_store *st, cf_rollout_stats *out,
				   cf_error *err);

	/* The one optional op (NULL: no other process can share the
	 * database, as with SQLite): cf_store_notify_feeds, n >= 1, node
	 * and tenant checked. */
	cf_status (*notify_feeds)(cf_store *st, const char *node,
				  const char *tenant,
				  const char (*recipients)[65], size_t n,
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

/* The PostgreSQL listener (store_pg.c), the only backend that has one;
 * node checked by store.c. */
cf_status cf_store_pg_listener_open(const char *url, const char *node,
				    cf_store_listener **out, cf_error *err);

/*
 * For tests: EXPLAIN QUERY PLAN of the feed query, one detail line per
 * plan step, into buf.  CF_ERR_USAGE if st is not a SQLite store.
 */
cf_status cf_store_sqlite_explain_feed(cf_store *st, char *buf, size_t cap,
				       cf_error *err);

#endif
