/*
 * store.h - the server's only way to its database.
 *
 * One cf_store is one connection; it is used by one thread at a time (the
 * server opens one per worker thread).  Every function that changes state
 * does it in one transaction together with its audit entry, so a change
 * is never committed without its log line and never logged without being
 * committed.  Audit entries are chained per tenant (audit.h): the store
 * assigns seq, prev and hash inside that transaction.
 *
 * Backends: "sqlite:PATH" or a plain PATH (the embedded default; WAL, one
 * file), or "postgres://..." / "postgresql://..." (store_pg.c, libpq; the
 * libpq environment applies).  Callers never see SQL.
 *
 * What is stored is what the server may see: certificates, CRLs, token
 * hashes and constraints, token secrets only as envelopes to their
 * enroller, enrollment requests (CSR + HMAC), envelopes (ciphertext) and
 * the metadata around them.  Never a private key, never a plaintext
 * secret.
 *
 * Ownership: strings and buffers in the row structs returned by the store
 * are heap copies owned by the caller and released with the matching
 * *_free function; fixed-size char arrays are NUL-terminated.  Arrays of
 * structs without heap members (cf_secret_row, cf_audit_entry, the
 * recipients of cf_store_secret_delete and cf_store_upload_commit) are
 * released with free().  Inputs
 * are only read.
 *
 * Audit entries passed in: the store sets their seq, prev and hash, their
 * tenant to the tenant of the change (for enrollment: the token's), time
 * 0 to now, and an empty object to what changed (tenant id, certificate
 * fingerprint, token id, enrollment id, secret name).  A change that
 * does nothing (cf_store_cert_put of a known certificate) logs nothing.
 *
 * Limits (refused with CF_ERR_TOO_LARGE before any database work): names,
 * CNs and each group name 255 bytes, a certificate's whole group list
 * 64 KiB, PEMs 256 KiB, one envelope 1,664,344 bytes, 100,000 envelopes
 * per version or per upload chunk, 10,000 tokens per add.  Checked in the
 * transaction instead, because they depend on what is stored: the
 * envelopes an upload holds in all (CF_ERR_TOO_LARGE) and the open
 * uploads of a tenant (CF_ERR_LIMIT).
 *
 * Errors: CF_ERR_NOT_FOUND (no such row), CF_ERR_EXISTS (already there),
 * CF_ERR_CONFLICT (stale version, already decided), CF_ERR_TOKEN (token
 * refused, with the reason), CF_ERR_STORE (the database failed, is busy
 * beyond the timeout, or has a schema newer than this program),
 * CF_ERR_NOMEM.
 */
#ifndef CF_STORE_H
#define CF_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "error.h"

typedef struct cf_store cf_store;

#define CF_STORE_CREATE 0x1  /* create the database if it does not exist */
#define CF_STORE_SYNC_FULL 0x2 /* fsync every commit (power-loss safe) */

/*
 * Opens (and with CF_STORE_CREATE creates) the database at url and brings
 * its schema up to date with versioned migrations.  Without
 * CF_STORE_CREATE a missing database is CF_ERR_NOT_FOUND.  A committed
 * transaction survives a kill -9 of the process in any mode; with
 * CF_STORE_SYNC_FULL it also survives a power loss.
 */
cf_status cf_store_open(const char *url, unsigned flags, cf_store **out,
			cf_error *err);
void cf_store_free(cf_store *st);

/* The schema version the database is at (for `server init`, /metrics). */
int cf_store_schema_version(cf_store *st);

/* ---- tenants -------------------------------------------------------- */

typedef struct cf_tenant {
	char id[65];       /* SHA-256 of the root certificate's DER, hex */
	char *root_pem;
	char *crl_pem;     /* NULL until a CRL was pushed */
	int64_t crl_number; /* the pushed CRL's cRLNumber, -1 if none */
	int64_t created;
} cf_tenant;

cf_status cf_store_tenant_add(cf_store *st, const char *id,
			      const char *root_pem,
			      const cf_audit_entry *audit, cf_error *err);
cf_status cf_store_tenant_get(cf_store *st, const char *id, cf_tenant *out,
			      cf_error *err);
cf_status cf_store_tenant_list(cf_store *st, cf_tenant **out, size_t *n,
			       cf_error *err);
/* Replaces the CRL; CF_ERR_CONFLICT if crl_number is not above the stored. */
cf_status cf_store_tenant_set_crl(cf_store *st, const char *id,
				  const char *crl_pem, int64_t crl_number,
				  const cf_audit_entry *audit, cf_error *err);
void cf_tenant_clear(cf_tenant *t);
void cf_tenants_free(cf_tenant *t, size_t n);

/* ---- certificate directory ------------------------------------------ */

typedef struct cf_cert_row {
	char tenant[65];
	char fp[65];          /* SHA-256 of the certificate's DER, hex */
	char kind[16];        /* "operator", "enroller", "agent", "cluster" */
	char name[256];       /* the certificate's CN */
	char *groups;         /* comma-separated agent groups, "" if none
	                       * (NULL accepted on input as "") */
	char cluster[256];    /* cluster name, "" if none */
	char issuer_fp[65];   /* fingerprint of the issuer (root or enroller) */
	char serial[80];      /* serial number, hex */
	int64_t not_after;    /* unix seconds */
	char *pem;            /* the certificate */
	int64_t created;      /* first seen */
} cf_cert_row;

typedef struct cf_cert_filter {
	const char *kind;     /* NULL: any */
	const char *group;    /* NULL: any; else certificates in this group */
	const char *name;     /* NULL: any; else this CN exactly */
	const char *fp;       /* NULL: any */
	size_t limit;         /* 0: no limit */
	const char *after_fp; /* NULL: from the start; paging by fp order */
} cf_cert_filter;

/*
 * Adds the certificate, or does nothing if (tenant, fp) is there already.
 * audit may be NULL for the server's own registration of a caller's
 * certificate on first contact (it is logged by the request it served).
 */
cf_status cf_store_cert_put(cf_store *st, const cf_cert_row *row,
			    const cf_audit_entry *audit, cf_error *err);
cf_status cf_store_cert_get(cf_store *st, const char *tenant, const char *fp,
			    cf_cert_row *out, cf_error *err);
cf_status cf_store_cert_list(cf_store *st, const char *tenant,
			     const cf_cert_filter *filter, cf_cert_row **out,
			     size_t *n, cf_error *err);
void cf_cert_row_clear(cf_cert_row *row);
void cf_cert_rows_free(cf_cert_row *rows, size_t n);

/* ---- join tokens ----------------------------------------------------- */

typedef struct cf_token_row {
	char tenant[65];
	char id[33];          /* 32 hex characters, unique across tenants */
	char hash[65];        /* SHA-256 of the token secret, hex */
	char group[256];      /* the group enrolled agents will be in */
	int64_t uses;         /* how many enrollments it admits */
	int64_t used;
	int64_t expires;      /* unix seconds */
	int64_t created;
	char creator[65];     /* fingerprint of the creating enroller */
	int revoked;
	unsigned char *envelope; /* the token secret, sealed to the creator */
	size_t envelope_len;
} cf_token_row;

/*
 * Adds n tokens in one transaction, with one audit entry per token: a
 * copy of audit_template whose object is the token's id.
 */
cf_status cf_store_token_add(cf_store *st, const cf_token_row *rows, size_t n,
			     const cf_audit_entry *audit_template,
			     cf_error *err);
/* By id alone (enrollment does not know the tenant yet). */
cf_status cf_store_token_get(cf_store *st, const char *id, cf_token_row *out,
			     cf_error *err);
/* The tenant's tokens, newest first, without their envelopes. */
cf_status cf_store_token_list(cf_store *st, const char *tenant,
			      cf_token_row **out, size_t *n, cf_error *err);
cf_status cf_store_token_revoke(cf_store *st, const char *tenant,
				const char *id, const cf_audit_entry *audit,
				cf_error *err);
void cf_token_row_clear(cf_token_row *row);
void cf_token_rows_free(cf_token_row *rows, size_t n);

/* ---- enrollment requests --------------------------------------------- */

typedef struct cf_enroll_row {
	char id[33];          /* 32 hex characters, random: the poll handle */
	char tenant[65];
	char token_id[33];
	char group[256];      /* the token's group */
	char name[256];       /* the agent's requested name (= CSR CN) */
	char *csr_pem;
	char hmac[65];        /* HMAC-SHA256(token secret, CSR DER), hex */
	char source[64];
	char status[16];      /* "pending", "approved", "rejected" */
	char *cert_pem;       /* approved: the agent's certificate */
	char *chain_pem;      /* approved: its issuer chain (PEM, may be "") */
	char reason[256];     /* rejected: why */
	char decided_by[65];
	int64_t created;
	int64_t decided;
} cf_enroll_row;

/*
 * Queues a request if the token admits it, in one transaction: the token
 * exists, token_hash matches, it is not revoked, not expired at now, and
 * has uses left; one use is consumed.  Otherwise CF_ERR_TOKEN with the
 * reason (never saying whether an unknown id or a wrong hash).  row->id,
 * tenant and group are filled in by the store from the token.
 */
cf_status cf_store_enroll_add(cf_store *st, cf_enroll_row *row,
			      const char *token_hash, int64_t now,
			      const cf_audit_entry *audit_template,
			      cf_error *err);
cf_status cf_store_enroll_get(cf_store *st, const char *id,
			      cf_enroll_row *out, cf_error *err);
/* The tenant's requests with this status (NULL: all), oldest first. */
cf_status cf_store_enroll_list(cf_store *st, const char *tenant,
			       const char *status, cf_enroll_row **out,
			       size_t *n, cf_error *err);
/*
 * Approves (cert_pem and chain_pem given, and the certificate row added to
 * the directory in the same transaction) or rejects (reason given) a
 * pending request; CF_ERR_CONFLICT if it is not pending.
 */
cf_status cf_store_enroll_decide(cf_store *st, const char *tenant,
				 const char *id, int approve,
				 const cf_cert_row *cert, const char *chain_pem,
				 const char *reason, const char *decided_by,
				 int64_t now, const cf_audit_entry *audit,
				 cf_error *err);
void cf_enroll_row_clear(cf_enroll_row *row);
void cf_enroll_rows_free(cf_enroll_row *rows, size_t n);

/* ---- secrets and envelopes ------------------------------------------- */

typedef struct cf_envelope_in {
	char recipient[65];   /* recipient certificate's fingerprint */
	const unsigned char *der;
	size_t len;
} cf_envelope_in;

typedef struct cf_secret_row {
	char name[256];
	int64_t version;
	int64_t created;
	char writer[65];      /* fingerprint of the uploading operator */
	int64_t recipients;
	int64_t bytes;        /* total envelope bytes of this version */
	int deleted;          /* the name was deleted at this version */
} cf_secret_row;

/*
 * Stores version `version` of tenant/name as n envelopes, in one
 * transaction: CF_ERR_CONFLICT if version is not above the latest stored
 * (deleted names included, so versions never repeat); CF_ERR_USAGE, before
 * any database work, if two envelopes name one recipient.  Each envelope
 * gets a new feed sequence number, in the order of envs.  *seq_out (may
 * be NULL) receives the highest sequence number assigned.
 */
cf_status cf_store_secret_put(cf_store *st, const char *tenant,
			      const char *name, int64_t version,
			      const char *writer, int64_t now,
			      const cf_envelope_in *envs, size_t n,
			      const cf_audit_entry *audit, int64_t *seq_out,
			      cf_error *err);
/*
 * Deletes a name: its envelopes are removed, a tombstone version
 * (latest + 1, deleted = 1) is recorded, and every recipient whose feed
 * still shows the name (of the latest version or of an older one it was
 * left out of since) gets a feed entry saying so, in fingerprint order.
 * *recipients_out (may be NULL) receives a malloc'ed array of those
 * fingerprints, for waking their long-polls.
 */
cf_status cf_store_secret_delete(cf_store *st, const char *tenant,
				 const char *name, const char *writer,
				 int64_t now, const cf_audit_entry *audit,
				 char (**recipients_out)[65], size_t *n_out,
				 cf_error *err);
/*
 * The latest version row of name, a deletion tombstone included (for the
 * 409 answer's "latest" and the DELETE answer's tombstone version).
 * CF_ERR_NOT_FOUND if the name never had a version.
 */
cf_status cf_store_secret_latest(cf_store *st, const char *tenant,
				 const char *name, cf_secret_row *out,
				 cf_error *err);
/* Latest version of each name under prefix ("" for all), not deleted. */
cf_status cf_store_secret_list(cf_store *st, const char *tenant,
			       const char *prefix, cf_secret_row **out,
			       size_t *n, cf_error *err);
/* Every version of name, newest first; CF_ERR_NOT_FOUND if none. */
cf_status cf_store_secret_history(cf_store *st, const char *tenant,
				  const char *name, cf_secret_row **out,
				  size_t *n, cf_error *err);

typedef struct cf_feed_item {
	int64_t seq;          /* the feed cursor of this entry */
	char name[256];
	int64_t version;
	int deleted;          /* the name was deleted; der is NULL */
	char writer[65];
	int64_t created;
	unsigned char *der;   /* the envelope addressed to the recipient */
	size_t len;
} cf_feed_item;

/*
 * The envelope of tenant/name addressed to recipient, of version (0: the
 * latest).  CF_ERR_NOT_FOUND if there is none (no such name, deleted, or
 * not addressed to this recipient).  With 0, a recipient left out of the
 * latest version gets CF_ERR_NOT_FOUND even if an older version was
 * addressed to it (its feed keeps showing that older version).
 */
cf_status cf_store_envelope_get(cf_store *st, const char *tenant,
				const char *name, int64_t version,
				const char *recipient, cf_feed_item *out,
				cf_error *err);
/* limit 0 of cf_store_feed means this many items. */
#define CF_STORE_FEED_MAX 1000
/* Larger limits are clipped to this. */
#define CF_STORE_FEED_LIMIT_MAX 100000

/*
 * What changed for recipient after cursor since: for each name, the
 * newest entry with seq > since (an envelope, or a deletion), ordered by
 * seq, at most limit of them.  *cursor_out is the seq of the last item
 * returned, or since if none -- unless since lies beyond the newest
 * position the store ever gave out (its database was restored from a
 * backup), in which case it is that newest position, below since.  The cost depends on the recipient's own
 * entries only, not on how many recipients the tenant has.
 */
cf_status cf_store_feed(cf_store *st, const char *tenant,
			const char *recipient, int64_t since, size_t limit,
			cf_feed_item **out, size_t *n, int64_t *cursor_out,
			cf_error *err);
/*
 * As cf_store_feed, but also stops before an item whose envelope would
 * take the items' total envelope bytes above max_bytes (0: no byte
 * bound), though it always returns at least one item.  *more_out (may be
 * NULL) is 1 if items after the last returned were left for the next
 * call, by limit or by bytes, else 0.  Memory used is bounded by
 * max_bytes plus one envelope, not by limit times the envelope limit.
 */
cf_status cf_store_feed_bounded(cf_store *st, const char *tenant,
				const char *recipient, int64_t since,
				size_t limit, size_t max_bytes,
				cf_feed_item **out, size_t *n,
				int64_t *cursor_out, int *more_out,
				cf_error *err);
void cf_feed_item_clear(cf_feed_item *item);
void cf_feed_items_free(cf_feed_item *items, size_t n);

/* ---- removal: recipients of a version, purging a recipient ------------ */

typedef struct cf_recipient_row {
	char fp[65];
	char kind[16];        /* the directory's, "" if not in it */
	char name[256];       /* its CN, "" if not in the directory */
} cf_recipient_row;

/*
 * The recipients of version `version` of name (0: the latest), in
 * fingerprint order; *version_out (may be NULL) the version read.
 * CF_ERR_NOT_FOUND if name has no such version or is deleted.  Released
 * with free().
 */
cf_status cf_store_secret_recipients(cf_store *st, const char *tenant,
				     const char *name, int64_t version,
				     int64_t *version_out,
				     cf_recipient_row **out, size_t *n,
				     cf_error *err);
/* The names that have a stored envelope (any version) for recipient. */
cf_status cf_store_recipient_names(cf_store *st, const char *tenant,
				   const char *recipient, char (**out)[256],
				   size_t *n, cf_error *err);
/*
 * Deletes every stored envelope addressed to recipient (all versions) of
 * each of the n names, and the recipient's feed entries of those names,
 * in one transaction with one audit entry (object: the recipient; bytes:
 * the envelope bytes removed).  *removed (may be NULL): envelopes
 * deleted.  A name without such envelopes is no error.  The versions'
 * recipient counts stay what they were when written (history).
 */
cf_status cf_store_envelopes_purge(cf_store *st, const char *tenant,
				   const char *recipient,
				   const char (*names)[256], size_t n,
				   const cf_audit_entry *audit,
				   int64_t *removed, cf_error *err);

/* ---- sync: more recipients for a version ------------------------------ */

/*
 * Adds envelopes to version `version` of name for recipients that have
 * none of it yet, in one transaction: the version must still be the
 * latest and not deleted (CF_ERR_CONFLICT otherwise: a newer one was
 * written meanwhile); a recipient that has an envelope of it already is
 * skipped, so two writers adding at once neither lose nor duplicate one.
 * Each envelope added gets a feed entry, as a put gives; the version's
 * recipient and byte counts grow.  *added (may be NULL) the number
 * added; *recipients_out (may be NULL) their fingerprints, malloc'ed,
 * for waking their long-polls.
 */
cf_status cf_store_version_add(cf_store *st, const char *tenant,
			       const char *name, int64_t version,
			       int64_t now, const cf_envelope_in *envs,
			       size_t n, const cf_audit_entry *audit,
			       int64_t *added, char (**recipients_out)[65],
			       size_t *n_out, cf_error *err);

/* ---- staged uploads ------------------------------------------------------ */

/*
 * A version too large for one request is staged: begun, filled with
 * envelopes chunk by chunk, then committed in one transaction that stores
 * it as cf_store_secret_put would (one secret.put audit entry, feed
 * entries, the version row), with two differences: the feed sequence
 * numbers are assigned in recipient (fingerprint) order, not in the order
 * the envelopes were sent, and a recipient sent twice is CF_ERR_EXISTS
 * from cf_store_upload_add (CF_ERR_USAGE from cf_store_secret_put).
 * Until the commit nothing of it is visible to agents, listings, history,
 * stats or the audit log; begin, add and abort change nothing anybody
 * else can see and log no audit entry (the commit does).
 *
 * An upload belongs to its tenant and to the writer that began it: any
 * other writer gets CF_ERR_PERMISSION, another tenant CF_ERR_NOT_FOUND.
 * It expires CF_STORE_UPLOAD_TTL seconds after it was begun or last
 * added to; an expired upload is CF_ERR_NOT_FOUND and its rows are
 * purged by the next begin (of any tenant).
 */
#define CF_STORE_UPLOAD_TTL 3600   /* seconds after the last chunk */
#define CF_STORE_UPLOADS_MAX 64    /* open uploads per tenant */

typedef struct cf_upload_row {
	char id[33];          /* 32 hex characters, random */
	char tenant[65];
	char name[256];
	int64_t version;
	char writer[65];
	int64_t envelopes;    /* staged so far */
	int64_t bytes;        /* their total size */
	int64_t created;
	int64_t expires;      /* unix seconds */
} cf_upload_row;

/*
 * Begins an upload of version `version` of tenant/name by writer.
 * CF_ERR_CONFLICT if version is not above the latest stored (the handler
 * reads the latest with cf_store_secret_latest); CF_ERR_LIMIT if the
 * tenant has CF_STORE_UPLOADS_MAX open uploads.  Purges expired uploads
 * first.  *out receives the new upload (its id is the handle).
 */
cf_status cf_store_upload_begin(cf_store *st, const char *tenant,
				const char *name, int64_t version,
				const char *writer, int64_t now,
				cf_upload_row *out, cf_error *err);
/* The open upload id of tenant; CF_ERR_NOT_FOUND if none or expired. */
cf_status cf_store_upload_get(cf_store *st, const char *tenant,
			      const char *id, int64_t now, cf_upload_row *out,
			      cf_error *err);
/*
 * Stages n envelopes (1 to CF_STORE_ENVELOPES_MAX, each as for
 * cf_store_secret_put) in one transaction: all of them or none.
 * CF_ERR_EXISTS if a recipient already has an envelope in this upload
 * (from an earlier chunk, or twice in this one, the latter refused before
 * any database work), CF_ERR_TOO_LARGE if the upload would
 * hold more than CF_STORE_ENVELOPES_MAX.  Moves the expiry to now +
 * CF_STORE_UPLOAD_TTL.  *out (may be NULL) receives the upload after it.
 */
cf_status cf_store_upload_add(cf_store *st, const char *tenant,
			      const char *id, const char *writer, int64_t now,
			      const cf_envelope_in *envs, size_t n,
			      cf_upload_row *out, cf_error *err);
/*
 * Stores the staged envelopes as the new version, in one transaction
 * with the audit entry (whose bytes the store sets to the staged bytes),
 * and drops the upload.  CF_ERR_USAGE if nothing was staged (the upload
 * stays); CF_ERR_CONFLICT if the version is no longer above the latest
 * (the upload is dropped all the same, so the writer starts again).
 * *out (may be NULL) receives the upload as committed;
 * *recipients_out (may be NULL) a malloc'ed array of the recipients'
 * fingerprints, for waking their long-polls.
 */
cf_status cf_store_upload_commit(cf_store *st, const char *tenant,
				 const char *id, const char *writer,
				 int64_t now, const cf_audit_entry *audit,
				 cf_upload_row *out,
				 char (**recipients_out)[65], size_t *n_out,
				 cf_error *err);
/* Drops an upload and what it staged. */
cf_status cf_store_upload_abort(cf_store *st, const char *tenant,
				const char *id, const char *writer,
				int64_t now, cf_error *err);

/* ---- operator commands: the mailbox (docs/COMMANDS.md) ------------------ */

/*
 * A command is stored as opaque envelopes, one per recipient agent, each
 * a mailbox entry with its own sequence number (the agent's command
 * cursor); an agent's answer (also an envelope, to the sender) is stored
 * in its entry with an answer sequence number per command (the sender's
 * cursor).  An entry is pending while unanswered and not expired.
 * Envelopes of a command are dropped when it expires, the whole command
 * and its answers CF_STORE_CMD_RETENTION seconds after (cf_store_cmd_expire).
 */
#define CF_STORE_CMD_PENDING_MAX 100   /* pending commands per agent */
#define CF_STORE_CMD_ENVELOPE_MAX (640 * 1024) /* one command envelope */
#define CF_STORE_CMD_RESULT_MAX (384 * 1024)   /* one result envelope */
#define CF_STORE_CMD_RETENTION (30 * 86400)

typedef struct cf_cmd_row {
	char id[33];
	char sender[65];      /* the posting operator's fingerprint */
	int64_t created;
	int64_t expires;
	int64_t recipients;
	int64_t answered;     /* recipients that answered */
	int64_t bytes;        /* command envelope bytes */
} cf_cmd_row;

typedef struct cf_cmd_item {
	int64_t seq;          /* mailbox seq (pending) or answer seq (answers) */
	char id[33];
	char peer[65];        /* the sender (pending) or the recipient */
	char name[256];       /* the recipient's CN, "" if not in the directory */
	int64_t expires;
	int64_t answered;     /* when it was answered, 0 if not */
	unsigned char *der;   /* the command (pending) or the result envelope;
	                       * NULL in cf_store_cmd_recipients */
	size_t len;
} cf_cmd_item;

/*
 * Posts command id of sender with one envelope per recipient, in one
 * transaction with the audit entry.  create: a new command (CF_ERR_EXISTS
 * if the tenant has this id already); !create: more recipients for an
 * existing unexpired command of the same sender (CF_ERR_NOT_FOUND if
 * there is none, CF_ERR_CONFLICT if it expired, CF_ERR_EXISTS if a
 * recipient has an entry already).  CF_ERR_LIMIT, naming the recipient,
 * if one already has CF_STORE_CMD_PENDING_MAX pending commands.
 */
cf_status cf_store_cmd_post(cf_store *st, const char *tenant, const char *id,
			    const char *sender, int64_t now, int64_t expires,
			    int create, const cf_envelope_in *envs, size_t n,
			    const cf_audit_entry *audit, cf_error *err);
/*
 * The recipient's pending entries (unanswered, expires >= now) with seq
 * above since, in seq order, at most limit (1..CF_STORE_FEED_MAX).
 * *cursor_out: the last seq returned, or since.  Costs the recipient's
 * pending entries only.
 */
cf_status cf_store_cmd_pending(cf_store *st, const char *tenant,
			       const char *recipient, int64_t since,
			       int64_t now, size_t limit, cf_cmd_item **out,
			       size_t *n, int64_t *cursor_out, cf_error *err);
/*
 * Stores recipient's answer to command id, with the audit entry, and
 * gives the command's sender (for waking its long-poll).  An expired
 * command may still be answered (it may have started in time).
 * CF_ERR_NOT_FOUND if the command was not sent to recipient,
 * CF_ERR_EXISTS if it answered already.
 */
cf_status cf_store_cmd_answer(cf_store *st, const char *tenant,
			      const char *id, const char *recipient,
			      int64_t now, const unsigned char *der,
			      size_t len, const cf_audit_entry *audit,
			      char sender_out[65], cf_error *err);
/* The command's metadata; CF_ERR_NOT_FOUND if there is none. */
cf_status cf_store_cmd_get(cf_store *st, const char *tenant, const char *id,
			   cf_cmd_row *out, cf_error *err);
/* Every recipient of id (fp, name, answered, answer seq), der NULL. */
cf_status cf_store_cmd_recipients(cf_store *st, const char *tenant,
				  const char *id, cf_cmd_item **out,
				  size_t *n, cf_error *err);
/* Answers to id with answer seq above since, in order, at most limit. */
cf_status cf_store_cmd_answers(cf_store *st, const char *tenant,
			       const char *id, int64_t since, size_t limit,
			       cf_cmd_item **out, size_t *n, cf_error *err);
/* sender's commands created before `before` (0: any), newest first. */
cf_status cf_store_cmd_list(cf_store *st, const char *tenant,
			    const char *sender, int64_t before, size_t limit,
			    cf_cmd_row **out, size_t *n, cf_error *err);
/*
 * Housekeeping, no audit entry: drops the envelopes of commands expired
 * at now, and commands (with their answers) expired before now -
 * retention.  *removed (may be NULL): commands removed.
 */
cf_status cf_store_cmd_expire(cf_store *st, int64_t now, int64_t retention,
			      int64_t *removed, cf_error *err);
void cf_cmd_items_free(cf_cmd_item *items, size_t n);

/* ---- audit ------------------------------------------------------------ */

/* Appends an entry that goes with no state change (an envelope read). */
cf_status cf_store_audit_append(cf_store *st, const cf_audit_entry *entry,
				cf_error *err);

/*
 * Appends n entries (any tenants, each extending its tenant's chain in
 * array order) in ONE transaction: all are committed or none is.  For
 * group commit: the server logs the envelope reads of one event-loop
 * iteration together, then sends their answers.  n == 0 does nothing.
 */
cf_status cf_store_audit_append_many(cf_store *st,
				     const cf_audit_entry *entries, size_t n,
				     cf_error *err);

typedef struct cf_audit_filter {
	int64_t after_seq;    /* entries with seq > after_seq */
	int64_t since;        /* time >= since (0: any) */
	int64_t until;        /* time < until (0: any) */
	const char *actor;    /* NULL: any */
	const char *action;   /* NULL: any; "secret." matches a prefix */
	size_t limit;         /* 0: 1000; at most 10,000 (page by after_seq) */
} cf_audit_filter;

/* The tenant's entries in seq order. */
cf_status cf_store_audit_list(cf_store *st, const char *tenant,
			      const cf_audit_filter *filter,
			      cf_audit_entry **out, size_t *n, cf_error *err);

/* ---- numbers for /metrics --------------------------------------------- */

typedef struct cf_store_stats {
	int64_t tenants, certs, agents, tokens, enrollments_pending;
	int64_t secrets, envelopes, envelope_bytes, audit_entries;
	int64_t feed_seq;     /* highest feed sequence number */
} cf_store_stats;

cf_status cf_store_stats_get(cf_store *st, cf_store_stats *out, cf_error *err);

/* ---- copying a whole store (coffer server migrate) ------------------- */

/*
 * The tables a copy moves, in this order (parents before children):
 * tenants, certs, cert_groups, tokens, enrollments, versions, envelopes,
 * feed, audit, uploads, upload_envelopes, commands, command_mail, acks,
 * purged, and
 * "sequences" (the feed's and the mailbox's highest numbers given out).
 */
#define CF_STORE_COPY_TABLES 16

typedef struct cf_store_copy_table {
	const char *name;        /* static */
	int64_t rows;
	int64_t bytes;           /* text and binary bytes of its values */
	unsigned char digest[32]; /* SHA-256 over its rows, in copy order */
} cf_store_copy_table;

typedef struct cf_store_copy_report {
	cf_store_copy_table tables[CF_STORE_COPY_TABLES];
	double seconds;          /* cf_store_copy: the copy's wall time */
} cf_store_copy_report;

/* Called after each batch written: table name, its rows so far. */
typedef void (*cf_store_progress_fn)(void *ctx, const char *table,
				     int64_t rows);

/*
 * Copies every row of from into to, which must be empty (CF_ERR_EXISTS
 * otherwise, saying how to start from an empty database), in ONE
 * transaction on to: all or nothing.  Everything is kept verbatim:
 * feed, envelope and mailbox sequence numbers, the audit chains (seq,
 * prev, hash), token uses, enrollment order; to's sequences are moved
 * past the copied numbers, so new rows continue after them.  from is
 * read in one snapshot, page by page (memory stays bounded whatever the
 * size).  Either backend on either side.  progress may be NULL.  out
 * (may be NULL) receives the rows, bytes and digest of each table as
 * read from from.  Stop every server on from first: what is written
 * after the snapshot is not copied.
 */
cf_status cf_store_copy(cf_store *from, cf_store *to,
			cf_store_progress_fn progress, void *ctx,
			cf_store_copy_report *out, cf_error *err);

/* The rows, bytes and digest of each table of st (one snapshot). */
cf_status cf_store_survey(cf_store *st, cf_store_copy_report *out,
			  cf_error *err);

/* What cf_store_copy_verify found in the audit chains. */
typedef struct cf_store_chain_report {
	size_t chains;           /* tenants' chains checked (non-empty) */
	int64_t entries;         /* entries checked on the target */
} cf_store_chain_report;

/*
 * Checks a copy made by cf_store_copy (copied: its report): to's rows
 * and digests equal copied's, table by table (CF_ERR_STORE naming the
 * first that differs), and every chain of from's tenants (and the
 * tenant-less "" chain) verifies on to with cf_audit_check, page by
 * page, and ends in the same last hash as on from (CF_ERR_AUDIT).
 * chains may be NULL.
 */
cf_status cf_store_copy_verify(cf_store *from, cf_store *to,
			       const cf_store_copy_report *copied,
			       cf_store_chain_report *chains, cf_error *err);

/* ---- wake-ups across processes (several nodes on one database) ------ */

/*
 * Several server nodes on one PostgreSQL learn of each other's changes
 * through LISTEN/NOTIFY: a node that committed a change to some agents'
 * feeds (or to a tenant) tells the others, which wake the long-polls
 * they hold for those agents.  A wake-up only says "look again": it
 * carries no data, a lost one costs a long-poll's timeout at most, and a
 * spurious one a feed read.  On SQLite (one process per database) there
 * is nobody to tell: notify does nothing and no listener opens.
 *
 * node: the sending process's id, CF_STORE_NODE_LEN lowercase hex
 * digits, so that a node skips the wake-ups it sent itself (it woke its
 * own threads already).  Tenant changes (CRL, new tenant) are announced
 * by the store itself, in the changing transaction, whoever makes them
 * (a node, `coffer server tenant add`).
 */
#define CF_STORE_NODE_LEN 16
/* Fingerprints in one notification: within PostgreSQL's 8000 bytes. */
#define CF_STORE_WAKE_BATCH 120

/*
 * After the commit that changed the feeds of these n recipients of
 * tenant: tells the other nodes, in one round trip whatever n (batches of
 * CF_STORE_WAKE_BATCH fingerprints, one notification each).  CF_OK at
 * once on SQLite or when n is 0.  CF_ERR_STORE if the database could not
 * be told (the change itself is committed; the others then learn of it at
 * their long-polls' timeout).
 */
cf_status cf_store_notify_feeds(cf_store *st, const char *node,
				const char *tenant,
				const char (*recipients)[65], size_t n,
				cf_error *err);

typedef struct cf_store_listener cf_store_listener;

enum cf_store_wake_kind {
	CF_STORE_WAKE_FEEDS = 1,   /* these recipients' feeds changed */
	CF_STORE_WAKE_TENANTS = 2  /* a tenant or its CRL changed: re-read */
};

typedef struct cf_store_wake {
	int kind;                       /* enum cf_store_wake_kind */
	char tenant[65];                /* FEEDS */
	const char (*recipients)[65];   /* FEEDS: n fingerprints */
	size_t n;                       /* 1..CF_STORE_WAKE_BATCH */
} cf_store_wake;

/* Called by cf_store_listener_read per wake-up; w valid during the call. */
typedef void (*cf_store_wake_fn)(void *ctx, const cf_store_wake *w);

/*
 * Opens a listener on url's database, on a connection of its own (the
 * URL and environment as cf_store_open; a blocking connect, bounded by
 * connect_timeout), skipping the wake-ups sent with node.  CF_ERR_USAGE
 * if the backend has no notifications (SQLite): the caller does without.
 * CF_ERR_STORE if the database cannot be reached: *out is still set, to
 * a listener that is down (cf_store_listener_fd -1), to reconnect.
 */
cf_status cf_store_listener_open(const char *url, const char *node,
				 cf_store_listener **out, cf_error *err);

/* The descriptor to wait on for reading, -1 while the listener is down. */
int cf_store_listener_fd(const cf_store_listener *l);

/*
 * Reads what arrived, without blocking, and calls fn per wake-up (own
 * ones and malformed payloads skipped).  CF_ERR_STORE when the
 * connection is lost: the listener is then down, its descriptor closed
 * (stop watching the old one), until cf_store_listener_reconnect.
 */
cf_status cf_store_listener_read(cf_store_listener *l, cf_store_wake_fn fn,
				 void *ctx, cf_error *err);

/*
 * One attempt to bring a listener that is down up again (CF_OK at once
 * if it is up).  Wake-ups sent while it was down are lost: after CF_OK
 * the caller must act as if everything changed (retry every long-poll,
 * re-read the tenants).
 */
cf_status cf_store_listener_reconnect(cf_store_listener *l, cf_error *err);

void cf_store_listener_free(cf_store_listener *l);


/* ---- rollout: acknowledgements and exposure (docs/API.md "Status") --- */

/*
 * An agent's latest acknowledgement of one secret (ack.h): what its
 * signed record says, as the server verified it, and the signed DER
 * itself, which readers verify again (the server is not trusted).  The
 * store keeps one per (tenant, agent, name): a newer version, or the
 * same version with a time not before the stored one, replaces it.
 */
#define CF_STORE_ACK_DER_MAX (64 * 1024)  /* one signed ack */
#define CF_STORE_ACK_REASON_MAX 1024
#define CF_STORE_ACKS_MAX 1000            /* acks in one put */

typedef struct cf_ack_row {
	char agent[65];       /* the signing agent's fingerprint */
	char name[256];
	int64_t version;
	int64_t time;         /* when the agent applied it (its clock) */
	char result[8];       /* "ok" or "failed" */
	char reason[CF_STORE_ACK_REASON_MAX + 1];
	int64_t received;     /* when the server stored it */
	unsigned char *der;   /* the signed ack */
	size_t len;
} cf_ack_row;

/*
 * Stores n acks of agent (each row's agent must be it: CF_ERR_USAGE
 * otherwise, before any database work) in one transaction with the
 * audit entry, at time now.  An ack for a name that agent has no feed
 * entry for (it never was a recipient of it) is skipped, as is one
 * older than the stored (lower version, or same version and earlier
 * time): *stored (may be NULL) counts the rows written.
 */
cf_status cf_store_ack_put(cf_store *st, const char *tenant,
			   const char *agent, const cf_ack_row *rows,
			   size_t n, int64_t now, const cf_audit_entry *audit,
			   int64_t *stored, cf_error *err);
/*
 * The same for a member of a cluster: an ack also counts when via (the
 * fingerprint of the cluster key the agent proved it holds) has a feed
 * entry of the name.  via NULL: as cf_store_ack_put.
 */
cf_status cf_store_ack_put_via(cf_store *st, const char *tenant,
			       const char *agent, const char *via,
			       const cf_ack_row *rows, size_t n, int64_t now,
			       const cf_audit_entry *audit, int64_t *stored,
			       cf_error *err);
/* Every stored ack of tenant/name, in agent fingerprint order. */
cf_status cf_store_ack_list(cf_store *st, const char *tenant,
			    const char *name, cf_ack_row **out, size_t *n,
			    cf_error *err);
void cf_ack_rows_free(cf_ack_row *rows, size_t n);

/*
 * The recipients of version of tenant/name (one row per envelope), as
 * directory rows without their PEM (pem NULL), in fingerprint order; a
 * recipient missing from the directory has kind and name "".  Release
 * with cf_cert_rows_free.
 */
cf_status cf_store_recipient_certs(cf_store *st, const char *tenant,
				      const char *name, int64_t version,
				      cf_cert_row **out, size_t *n,
				      cf_error *err);

/* A secret a revoked certificate may read (cf_store_exposed). */
typedef struct cf_exposed_row {
	char name[256];       /* the secret */
	int64_t version;
	char recipient[65];   /* the certificate's fingerprint */
	char kind[16];
	char cn[256];
	char via[16];         /* "envelope" (still stored) or "ack" */
} cf_exposed_row;

/*
 * What certificates revoked by the tenant's CRL may read of the names
 * under prefix ("" for all), a revoked certificate being one whose
 * serial, or whose issuer's serial, is one of revoked (a JSON array of
 * lowercase hex serials as the directory stores them, "[]" for none, at
 * most CF_STORE_REVOKED_MAX bytes):
 *  - "envelope": a stored envelope (any version) addressed to it: the
 *    ciphertext is still there for its key;
 *  - "ack": its acknowledgement of the latest version (not deleted), of
 *    which no envelope is stored any more: it held the current value when
 *    its envelopes were removed.
 * In (name, recipient, version) order.  Release with free().
 */
#define CF_STORE_REVOKED_MAX (8 * 1024 * 1024)
cf_status cf_store_exposed(cf_store *st, const char *tenant,
			   const char *revoked, const char *prefix,
			   cf_exposed_row **out, size_t *n, cf_error *err);

/*
 * Rollout totals over every tenant, for /metrics: over the agent
 * recipients of every name's latest version (deleted names excluded),
 * those whose ack is of that version or later and ok (up_to_date) or
 * failed (failed), and the others (behind: no ack, or an older one).
 */
typedef struct cf_rollout_stats {
	int64_t up_to_date, behind, failed;
} cf_rollout_stats;

cf_status cf_store_rollout_stats(cf_store *st, cf_rollout_stats *out,
				 cf_error *err);

#endif
