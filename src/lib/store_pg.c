/*
 * store_pg.c - the PostgreSQL backend of store.h (libpq), for several
 * stateless server nodes on one database (DESIGN 4).
 *
 * One cf_store is one libpq connection, used by one thread at a time (the
 * server opens one per worker thread, as with SQLite).  The semantics,
 * statuses and messages are those of store_sqlite.c; what differs is how
 * the guarantees SQLite gets from its single writer are kept here.
 *
 * Invariants:
 * - Every change runs in one transaction (READ COMMITTED) together with
 *   its audit entry.  What SQLite's writer lock serialises is serialised
 *   by explicit locks, always taken in this order, so that writers never
 *   wait on each other in a cycle:
 *   1. the feed lock (one advisory lock for the database), by every
 *      change that writes feed rows (secret put and delete, upload
 *      commit), and the mail lock likewise by command posts: sequence
 *      numbers are then handed out in commit order, so a cursor never
 *      skips an entry that commits after a later-numbered one, and
 *      "version above the latest" is read and written atomically;
 *   2. row locks (SELECT ... FOR UPDATE) on what a change reads and then
 *      updates: a token's uses, a tenant's CRL number, an upload, a
 *      command's answer numbering;
 *   3. the audit lock of a tenant (an advisory lock keyed by a hash of the
 *      tenant id), taken right before the chain head is read and held to
 *      the commit, so that seq, prev and hash form one chain per tenant
 *      whatever the number of connections and nodes.  A batch over several
 *      tenants takes its tenants' locks first, in sorted order.
 *   Deadlocks and serialization failures, which PostgreSQL rolls back,
 *   are retried.
 * - SQL text is constant (the STMTS table), prepared once per connection;
 *   every value is bound (bytea and arrays in binary), results are read
 *   in binary.  Sets of envelopes go as arrays, in chunks, not a
 *   statement per row.
 * - Text keys are COLLATE "C": orders and prefixes compare bytes, as in
 *   SQLite, whatever the database's locale.
 * - Schema: coffer_schema holds the number of migration steps applied
 *   (SQLite's PRAGMA user_version; the same numbers and the same logical
 *   schema).  Steps run at open, each in a transaction holding the
 *   migration lock, so nodes that start together migrate once.  A newer
 *   schema is refused, never touched.
 * - Connection loss: the call that meets it fails with CF_ERR_STORE, or,
 *   if the connection broke before COMMIT was sent (so nothing of the
 *   call can have committed), is run once more on a new connection.  A
 *   COMMIT whose answer was lost is reported, never retried.  While the
 *   database stays unreachable, reconnection backs off (100 ms doubling
 *   to 2 s) and calls in between fail at once.
 * - Nothing waits forever: connect_timeout (5 s unless the URL or
 *   PGCONNECT_TIMEOUT says otherwise), TCP keepalives and
 *   tcp_user_timeout, and on every session statement_timeout,
 *   lock_timeout and idle_in_transaction_session_timeout.
 * - The URL is never copied into a message (it may hold a password):
 *   messages name the database by name, host and port.  Notices are
 *   swallowed: src/lib never prints.
 */
#include "store_backend.h"
#include "store_schema.h"
#include "store_pg.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AUDIT_LIST_DEFAULT 1000
#define AUDIT_LIST_MAX 10000
#define ATTEMPTS 3                 /* a call and its retries */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define STATEMENT_TIMEOUT_S 60
#define LOCK_TIMEOUT_S 15
#define IDLE_IN_TX_TIMEOUT_S 60
/* One statement's share of a set of envelopes. */
#define CHUNK_ROWS 5000
#define CHUNK_BYTES (16u * 1024u * 1024u)

/* Type OIDs (pg_type.dat) of binary array elements. */
#define OID_BYTEA 17
#define OID_TEXT 25

/* Advisory lock classes ("cf" + n), the first key of the two-key form. */
#define LOCK_MIGRATE "1667629057"
#define LOCK_FEED "1667629058"
#define LOCK_AUDIT "1667629059"
#define LOCK_UPLOADS "1667629060"
#define LOCK_MAIL "1667629061"
#define LOCK_EXPIRE "1667629062"

/* ---- schema ---------------------------------------------------------- */

/* The steps are store_schema.c's, shared with store_sqlite.c. */
#define SCHEMA_VERSION cf_schema_version

/* ---- statements ------------------------------------------------------ */

#define CERT_COLS "c.tenant, c.fp, c.kind, c.name, c.groups, c.cluster, " \
	"c.issuer_fp, c.serial, c.not_after, c.pem, c.created"
#define TOKEN_COLS "tenant, id, hash, grp, uses, used, expires, created, " \
	"creator, revoked"
#define ENROLL_COLS "id, tenant, token_id, grp, name, csr_pem, hmac, " \
	"source, status, cert_pem, chain_pem, reason, decided_by, created, " \
	"decided"
#define VERSION_COLS "name, version, created, writer, recipients, bytes, " \
	"deleted"
#define AUDIT_COLS "seq, time, tenant, actor, subject, source, action, " \
	"object, bytes, prev, hash"
#define UPLOAD_COLS "id, tenant, name, version, writer, envelopes, bytes, " \
	"created, expires"
#define CMD_COLS "c.id, c.sender, c.created, c.expires, c.recipients, " \
	"(SELECT COUNT(*) FROM command_mail m WHERE m.tenant = c.tenant " \
	"AND m.id = c.id AND m.answer_seq IS NOT NULL), c.bytes"
#define FEED_UPDATE "ON CONFLICT (tenant, recipient, name) DO UPDATE SET " \
	"seq = excluded.seq, version = excluded.version, " \
	"deleted = excluded.deleted, writer = excluded.writer, " \
	"created = excluded.created"

/*
 * The feed: the recipient's rows after the cursor in seq order, one
 * beyond the limit to tell whether more wait, each with its envelope's
 * length and the running total; the envelope itself only for the rows the
 * byte budget ($5, 0: none) admits, so that neither this process nor the
 * wire carries what the answer leaves out.
 */
#define FEED_SQL "SELECT seq, name, version, deleted, writer, created, " \
	"CASE WHEN rn <= $4::bigint AND (rn = 1 OR $5::bigint = 0 " \
	"OR total <= $5::bigint) THEN der END, len FROM (" \
	"SELECT f.seq, f.name, f.version, f.deleted, f.writer, f.created, " \
	"e.der, COALESCE(octet_length(e.der), 0)::bigint AS len, " \
	"row_number() OVER w AS rn, " \
	"sum(COALESCE(octet_length(e.der), 0)) OVER w AS total " \
	"FROM feed f LEFT JOIN envelopes e ON e.tenant = f.tenant " \
	"AND e.name = f.name AND e.recipient = f.recipient " \
	"AND e.version = f.version " \
	"WHERE f.tenant = $1 AND f.recipient = $2 AND f.seq > $3::bigint " \
	"WINDOW w AS (ORDER BY f.seq ROWS UNBOUNDED PRECEDING) " \
	"ORDER BY f.seq LIMIT $4::bigint + 1) s ORDER BY seq"

#define STMTS(X) \
	X(S_LOCK_FEED, "SELECT pg_advisory_xact_lock(" LOCK_FEED ", 0)") \
	X(S_LOCK_MAIL, "SELECT pg_advisory_xact_lock(" LOCK_MAIL ", 0)") \
	X(S_LOCK_EXPIRE, "SELECT pg_advisory_xact_lock(" LOCK_EXPIRE ", 0)") \
	X(S_LOCK_AUDIT, "SELECT pg_advisory_xact_lock(" LOCK_AUDIT ", " \
	  "hashtext($1::text))") \
	X(S_LOCK_UPLOADS, "SELECT pg_advisory_xact_lock(" LOCK_UPLOADS ", " \
	  "hashtext($1::text))") \
	X(S_AUDIT_LAST, "SELECT seq, hash FROM audit WHERE tenant = $1 " \
	  "ORDER BY seq DESC LIMIT 1") \
	X(S_AUDIT_INS, "INSERT INTO audit (tenant, seq, time, actor, " \
	  "subject, source, action, object, bytes, prev, hash) " \
	  "VALUES ($1, $2::bigint, $3::bigint, $4, $5, $6, $7, $8, " \
	  "$9::bigint, $10, $11)") \
	X(S_AUDIT_LIST, "SELECT " AUDIT_COLS " FROM audit " \
	  "WHERE tenant = $1 AND seq > $2::bigint AND ($3::bigint = 0 OR " \
	  "time >= $3::bigint) AND ($4::bigint = 0 OR time < $4::bigint) " \
	  "AND ($5::text IS NULL OR actor = $5::text) " \
	  "AND ($6::text IS NULL OR action = $6::text OR " \
	  "(right($6::text, 1) = '.' AND starts_with(action, $6::text))) " \
	  "ORDER BY seq LIMIT $7::bigint") \
	X(S_TENANT_INS, "INSERT INTO tenants (id, root_pem, crl_pem, " \
	  "crl_number, created) VALUES ($1, $2, NULL, -1, $3::bigint)") \
	X(S_TENANT_GET, "SELECT id, root_pem, crl_pem, crl_number, created " \
	  "FROM tenants WHERE id = $1") \
	X(S_TENANT_LIST, "SELECT id, root_pem, crl_pem, crl_number, created " \
	  "FROM tenants ORDER BY created, id") \
	X(S_TENANT_CRL_NUMBER, "SELECT crl_number FROM tenants WHERE id = $1 " \
	  "FOR UPDATE") \
	X(S_TENANT_SET_CRL, "UPDATE tenants SET crl_pem = $2, " \
	  "crl_number = $3::bigint WHERE id = $1") \
	X(S_CERT_INS, "INSERT INTO certs (tenant, fp, kind, name, groups, " \
	  "cluster, issuer_fp, serial, not_after, pem, created) " \
	  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::bigint, $10, " \
	  "$11::bigint) ON CONFLICT (tenant, fp) DO NOTHING") \
	X(S_CERT_GROUP_INS, "INSERT INTO cert_groups (tenant, grp, fp) " \
	  "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING") \
	X(S_CERT_GET, "SELECT " CERT_COLS " FROM certs c " \
	  "WHERE c.tenant = $1 AND c.fp = $2") \
	X(S_CERT_LIST, "SELECT " CERT_COLS " FROM certs c " \
	  "WHERE c.tenant = $1 AND ($2::text IS NULL OR c.kind = $2::text) " \
	  "AND ($3::text IS NULL OR c.name = $3::text) " \
	  "AND ($4::text IS NULL OR c.fp = $4::text) AND c.fp > $5 " \
	  "ORDER BY c.fp LIMIT $6::bigint") \
	X(S_CERT_LIST_GROUP, "SELECT " CERT_COLS " FROM cert_groups g " \
	  "JOIN certs c ON c.tenant = g.tenant AND c.fp = g.fp " \
	  "WHERE g.tenant = $1 AND g.grp = $7 " \
	  "AND ($2::text IS NULL OR c.kind = $2::text) " \
	  "AND ($3::text IS NULL OR c.name = $3::text) " \
	  "AND ($4::text IS NULL OR c.fp = $4::text) AND g.fp > $5 " \
	  "ORDER BY g.fp LIMIT $6::bigint") \
	X(S_TOKEN_INS, "INSERT INTO tokens (tenant, id, hash, grp, uses, " \
	  "used, expires, created, creator, revoked, envelope) " \
	  "VALUES ($1, $2, $3, $4, $5::bigint, 0, $6::bigint, $7::bigint, " \
	  "$8, 0, $9::bytea)") \
	X(S_TOKEN_GET, "SELECT " TOKEN_COLS ", envelope FROM tokens " \
	  "WHERE id = $1") \
	X(S_TOKEN_GET_LOCK, "SELECT " TOKEN_COLS ", envelope FROM tokens " \
	  "WHERE id = $1 FOR UPDATE") \
	X(S_TOKEN_LIST, "SELECT " TOKEN_COLS ", NULL::bytea FROM tokens " \
	  "WHERE tenant = $1 ORDER BY created DESC, id") \
	X(S_TOKEN_REVOKE, "UPDATE tokens SET revoked = 1 " \
	  "WHERE tenant = $1 AND id = $2") \
	X(S_TOKEN_USE, "UPDATE tokens SET used = used + 1 WHERE id = $1") \
	X(S_ENROLL_INS, "INSERT INTO enrollments (id, tenant, token_id, grp, " \
	  "name, csr_pem, hmac, source, status, created) " \
	  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9::bigint)") \
	X(S_ENROLL_GET, "SELECT " ENROLL_COLS " FROM enrollments " \
	  "WHERE id = $1") \
	X(S_ENROLL_LIST, "SELECT " ENROLL_COLS " FROM enrollments " \
	  "WHERE tenant = $1 AND ($2::text IS NULL OR status = $2::text) " \
	  "ORDER BY created, ord") \
	X(S_ENROLL_STATUS, "SELECT status FROM enrollments " \
	  "WHERE tenant = $1 AND id = $2") \
	X(S_ENROLL_DECIDE, "UPDATE enrollments SET status = $3, " \
	  "cert_pem = $4, chain_pem = $5, reason = $6, decided_by = $7, " \
	  "decided = $8::bigint WHERE tenant = $1 AND id = $2 " \
	  "AND status = 'pending'") \
	X(S_VERSION_LATEST, "SELECT " VERSION_COLS " FROM versions " \
	  "WHERE tenant = $1 AND name = $2 ORDER BY version DESC LIMIT 1") \
	X(S_VERSION_INS, "INSERT INTO versions (tenant, name, version, " \
	  "created, writer, recipients, bytes, deleted) " \
	  "VALUES ($1, $2, $3::bigint, $4::bigint, $5, $6::bigint, " \
	  "$7::bigint, $8::integer)") \
	X(S_VERSION_HISTORY, "SELECT " VERSION_COLS " FROM versions " \
	  "WHERE tenant = $1 AND name = $2 ORDER BY version DESC") \
	X(S_SECRET_LIST, "SELECT " VERSION_COLS " FROM (SELECT DISTINCT ON " \
	  "(name) " VERSION_COLS " FROM versions WHERE tenant = $1 " \
	  "AND name >= $2 AND starts_with(name, $2) " \
	  "ORDER BY name, version DESC) v WHERE deleted = 0 ORDER BY name") \
	X(S_ENVELOPE_INS, "INSERT INTO envelopes (tenant, name, version, " \
	  "recipient, seq, der) SELECT $1, $2, $3::bigint, u.r, " \
	  "$4::bigint + u.i - 1, u.d FROM unnest($5::text[], $6::bytea[]) " \
	  "WITH ORDINALITY AS u(r, d, i)") \
	X(S_ENVELOPE_DEL_NAME, "DELETE FROM envelopes " \
	  "WHERE tenant = $1 AND name = $2") \
	X(S_ENVELOPE_HAS, "SELECT 1 FROM envelopes WHERE tenant = $1 " \
	  "AND name = $2 AND recipient = $3 AND version = $4") \
	X(S_VERSION_GROW, "UPDATE versions SET recipients = recipients + $4, " \
	  "bytes = bytes + $5 WHERE tenant = $1 AND name = $2 " \
	  "AND version = $3") \
	X(S_VERSION_RECIPIENTS, "SELECT e.recipient, COALESCE(c.kind, ''), " \
	  "COALESCE(c.name, '') FROM envelopes e LEFT JOIN certs c " \
	  "ON c.tenant = e.tenant AND c.fp = e.recipient " \
	  "WHERE e.tenant = $1 AND e.name = $2 AND e.version = $3 " \
	  "ORDER BY e.recipient") \
	X(S_RECIPIENT_NAMES, "SELECT DISTINCT name FROM envelopes " \
	  "WHERE tenant = $1 AND recipient = $2 ORDER BY name") \
	X(S_PURGED_INS, "INSERT INTO purged (tenant, name, version, " \
	  "recipient, purged) SELECT tenant, name, version, recipient, " \
	  "extract(epoch FROM now())::bigint FROM envelopes WHERE " \
	  "tenant = $1 AND recipient = $2 AND name = $3 ON CONFLICT DO " \
	  "NOTHING") \
	X(S_ENVELOPE_PURGE, "WITH d AS (DELETE FROM envelopes WHERE " \
	  "tenant = $1 AND recipient = $2 AND name = $3 RETURNING " \
	  "octet_length(der) AS len) SELECT COUNT(*)::bigint, " \
	  "COALESCE(SUM(len), 0)::bigint FROM d") \
	X(S_FEED_DEL_ONE, "DELETE FROM feed WHERE tenant = $1 " \
	  "AND recipient = $2 AND name = $3") \
	X(S_ENVELOPE_GET, "SELECT e.seq, e.version, v.writer, v.created, " \
	  "e.der FROM envelopes e JOIN versions v ON v.tenant = e.tenant " \
	  "AND v.name = e.name AND v.version = e.version " \
	  "WHERE e.tenant = $1 AND e.name = $2 AND e.recipient = $3 " \
	  "AND e.version = (CASE WHEN $4::bigint > 0 THEN $4::bigint ELSE " \
	  "(SELECT MAX(version) FROM versions WHERE tenant = $1 " \
	  "AND name = $2) END)") \
	/* Under the feed lock nobody else draws from the sequence: the \
	 * block first .. first + n - 1 is this change's, in order. */ \
	X(S_FEED_RESERVE, "SELECT setval('feed_seq', nextval('feed_seq') + " \
	  "$1::bigint - 1)") \
	X(S_FEED_UPSERT, "INSERT INTO feed (seq, tenant, recipient, name, " \
	  "version, deleted, writer, created) SELECT $1::bigint + u.i - 1, " \
	  "$2, u.r, $3, $4::bigint, $5::integer, $6, $7::bigint " \
	  "FROM unnest($8::text[]) WITH ORDINALITY AS u(r, i) " FEED_UPDATE) \
	X(S_FEED_NAME_RECIPIENTS, "SELECT recipient FROM feed " \
	  "WHERE tenant = $1 AND name = $2 AND deleted = 0 " \
	  "ORDER BY recipient") \
	X(S_FEED, FEED_SQL) \
	X(S_FEED_HEAD, "SELECT CASE WHEN is_called THEN last_value ELSE 0 " \
	  "END FROM feed_seq") \
	X(S_UPLOAD_PURGE_ENV, "DELETE FROM upload_envelopes WHERE upload IN " \
	  "(SELECT id FROM uploads WHERE expires <= $1::bigint)") \
	X(S_UPLOAD_PURGE, "DELETE FROM uploads WHERE expires <= $1::bigint") \
	X(S_UPLOAD_COUNT, "SELECT COUNT(*) FROM uploads " \
	  "WHERE tenant = $1 AND expires > $2::bigint") \
	X(S_UPLOAD_INS, "INSERT INTO uploads (" UPLOAD_COLS ") " \
	  "VALUES ($1, $2, $3, $4::bigint, $5, 0, 0, $6::bigint, $7::bigint)") \
	X(S_UPLOAD_GET, "SELECT " UPLOAD_COLS " FROM uploads " \
	  "WHERE id = $1 AND tenant = $2") \
	X(S_UPLOAD_GET_LOCK, "SELECT " UPLOAD_COLS " FROM uploads " \
	  "WHERE id = $1 AND tenant = $2 FOR UPDATE") \
	/* The first recipient of a chunk the upload has already. */ \
	X(S_UPLOAD_DUP, "SELECT u.r FROM unnest($2::text[]) WITH ORDINALITY " \
	  "AS u(r, i) JOIN upload_envelopes e ON e.upload = $1 " \
	  "AND e.recipient = u.r ORDER BY u.i LIMIT 1") \
	X(S_UPLOAD_ENV_INS, "INSERT INTO upload_envelopes (upload, " \
	  "recipient, der) SELECT $1, u.r, u.d " \
	  "FROM unnest($2::text[], $3::bytea[]) AS u(r, d)") \
	X(S_UPLOAD_GROW, "UPDATE uploads SET envelopes = envelopes + " \
	  "$2::bigint, bytes = bytes + $3::bigint, expires = $4::bigint " \
	  "WHERE id = $1") \
	X(S_UPLOAD_RECIPIENTS, "SELECT recipient FROM upload_envelopes " \
	  "WHERE upload = $1 ORDER BY recipient") \
	/* Feed numbers in recipient order, as the single put gives them \
	 * in its envelopes' order. */ \
	X(S_UPLOAD_FEED_UPSERT, "INSERT INTO feed (seq, tenant, recipient, " \
	  "name, version, deleted, writer, created) SELECT $1::bigint + " \
	  "row_number() OVER (ORDER BY recipient) - 1, $2, recipient, $3, " \
	  "$4::bigint, 0, $5, $6::bigint FROM upload_envelopes " \
	  "WHERE upload = $7 " FEED_UPDATE) \
	X(S_UPLOAD_ENV_MOVE, "INSERT INTO envelopes (tenant, name, version, " \
	  "recipient, seq, der) SELECT $1, $2, $3::bigint, u.recipient, " \
	  "f.seq, u.der FROM upload_envelopes u JOIN feed f ON f.tenant = $1 " \
	  "AND f.recipient = u.recipient AND f.name = $2 WHERE u.upload = $4") \
	X(S_UPLOAD_ENV_DEL, "DELETE FROM upload_envelopes WHERE upload = $1") \
	X(S_UPLOAD_DEL, "DELETE FROM uploads WHERE id = $1") \
	X(S_CMD_INS, "INSERT INTO commands (tenant, id, sender, created, " \
	  "expires, recipients, bytes) VALUES ($1, $2, $3, $4::bigint, " \
	  "$5::bigint, 0, 0)") \
	X(S_CMD_GET, "SELECT " CMD_COLS " FROM commands c " \
	  "WHERE c.tenant = $1 AND c.id = $2") \
	X(S_CMD_LOCK, "SELECT 1 FROM commands WHERE tenant = $1 AND id = $2 " \
	  "FOR UPDATE") \
	X(S_CMD_GROW, "UPDATE commands SET recipients = recipients + " \
	  "$3::bigint, bytes = bytes + $4::bigint " \
	  "WHERE tenant = $1 AND id = $2") \
	/* The first recipient of a chunk whose mailbox is full, or that has \
	 * this command already (checked in that order, as one by one). */ \
	X(S_CMD_ROOM, "SELECT r, pending FROM (SELECT u.i, u.r, " \
	  "(SELECT COUNT(*) FROM command_mail m WHERE m.tenant = $1 " \
	  "AND m.recipient = u.r AND m.answer_seq IS NULL " \
	  "AND m.expires >= $3::bigint) AS pending, " \
	  "EXISTS (SELECT 1 FROM command_mail d WHERE d.tenant = $1 " \
	  "AND d.id = $2 AND d.recipient = u.r) AS dup " \
	  "FROM unnest($4::text[]) WITH ORDINALITY AS u(r, i)) s " \
	  "WHERE dup OR pending >= $5::bigint ORDER BY i LIMIT 1") \
	X(S_CMD_MAIL_RESERVE, "SELECT setval('command_mail_seq', " \
	  "nextval('command_mail_seq') + $1::bigint - 1)") \
	X(S_CMD_MAIL_INS, "INSERT INTO command_mail (seq, tenant, id, " \
	  "recipient, expires, envelope) SELECT $1::bigint + u.i - 1, $2, $3, " \
	  "u.r, $4::bigint, u.d FROM unnest($5::text[], $6::bytea[]) " \
	  "WITH ORDINALITY AS u(r, d, i)") \
	X(S_CMD_PENDING, "SELECT m.seq, m.id, c.sender, '', m.expires, " \
	  "m.answered, m.envelope FROM command_mail m JOIN commands c " \
	  "ON c.tenant = m.tenant AND c.id = m.id " \
	  "WHERE m.tenant = $1 AND m.recipient = $2 AND m.answer_seq IS NULL " \
	  "AND m.seq > $3::bigint AND m.expires >= $4::bigint " \
	  "AND m.envelope IS NOT NULL ORDER BY m.seq LIMIT $5::bigint") \
	X(S_CMD_MAIL_HEAD, "SELECT CASE WHEN is_called THEN last_value " \
	  "ELSE 0 END FROM command_mail_seq") \
	X(S_CMD_MAIL_GET, "SELECT (m.answer_seq IS NOT NULL)::integer, " \
	  "c.sender FROM command_mail m JOIN commands c ON c.tenant = m.tenant " \
	  "AND c.id = m.id WHERE m.tenant = $1 AND m.id = $2 " \
	  "AND m.recipient = $3") \
	X(S_CMD_ANSWER_NEXT, "SELECT COALESCE(MAX(answer_seq), 0) + 1 " \
	  "FROM command_mail WHERE tenant = $1 AND id = $2") \
	X(S_CMD_ANSWER, "UPDATE command_mail SET answer_seq = $4::bigint, " \
	  "answered = $5::bigint, result = $6::bytea WHERE tenant = $1 " \
	  "AND id = $2 AND recipient = $3 AND answer_seq IS NULL") \
	X(S_CMD_RECIPIENTS, "SELECT COALESCE(m.answer_seq, 0), m.id, " \
	  "m.recipient, COALESCE(ce.name, ''), m.expires, m.answered, " \
	  "NULL::bytea FROM command_mail m LEFT JOIN certs ce " \
	  "ON ce.tenant = m.tenant AND ce.fp = m.recipient " \
	  "WHERE m.tenant = $1 AND m.id = $2 ORDER BY m.recipient") \
	X(S_CMD_ANSWERS, "SELECT m.answer_seq, m.id, m.recipient, " \
	  "COALESCE(ce.name, ''), m.expires, m.answered, m.result " \
	  "FROM command_mail m LEFT JOIN certs ce ON ce.tenant = m.tenant " \
	  "AND ce.fp = m.recipient WHERE m.tenant = $1 AND m.id = $2 " \
	  "AND m.answer_seq > $3::bigint ORDER BY m.answer_seq " \
	  "LIMIT $4::bigint") \
	X(S_CMD_LIST, "SELECT " CMD_COLS " FROM commands c " \
	  "WHERE c.tenant = $1 AND c.sender = $2 AND ($3::bigint = 0 OR " \
	  "c.created < $3::bigint) ORDER BY c.created DESC, c.id " \
	  "LIMIT $4::bigint") \
	X(S_CMD_DROP_ENV, "UPDATE command_mail SET envelope = NULL " \
	  "WHERE expires < $1::bigint AND envelope IS NOT NULL") \
	X(S_CMD_PURGE_MAIL, "DELETE FROM command_mail " \
	  "WHERE expires < $1::bigint") \
	X(S_CMD_PURGE, "DELETE FROM commands WHERE expires < $1::bigint") \
	/* Rollout (store.h): an ack only from a recipient of the name, and \
	 * only if not older than the stored one. */ \
	X(S_ACK_PUT, "INSERT INTO acks (tenant, name, agent, version, " \
	  "applied, result, reason, received, der) SELECT $1, $2, $3, " \
	  "$4::bigint, $5::bigint, $6, $7, $8::bigint, $9::bytea " \
	  "WHERE EXISTS (SELECT 1 FROM feed WHERE tenant = $1 " \
	  "AND (recipient = $3 OR recipient = $10) AND name = $2) " \
	  "ON CONFLICT (tenant, name, agent) DO UPDATE SET " \
	  "version = excluded.version, applied = excluded.applied, " \
	  "result = excluded.result, reason = excluded.reason, " \
	  "received = excluded.received, der = excluded.der " \
	  "WHERE excluded.version > acks.version OR (excluded.version = " \
	  "acks.version AND excluded.applied >= acks.applied)") \
	X(S_ACK_LIST, "SELECT agent, name, version, applied, result, reason, " \
	  "received, der FROM acks WHERE tenant = $1 AND name = $2 " \
	  "ORDER BY agent") \
	X(S_RECIPIENT_CERTS, "SELECT e.tenant, e.recipient, " \
	  "COALESCE(c.kind, ''), COALESCE(c.name, ''), " \
	  "COALESCE(c.groups, ''), COALESCE(c.cluster, ''), " \
	  "COALESCE(c.issuer_fp, ''), COALESCE(c.serial, ''), " \
	  "COALESCE(c.not_after, 0)::bigint, NULL::text, " \
	  "COALESCE(c.created, 0)::bigint " \
	  "FROM envelopes e LEFT JOIN certs c ON c.tenant = e.tenant " \
	  "AND c.fp = e.recipient WHERE e.tenant = $1 AND e.name = $2 " \
	  "AND e.version = $3::bigint ORDER BY e.recipient") \
	X(S_EXPOSED, "SELECT name, version, recipient, kind, cn, via FROM (" \
	  "SELECT e.name AS name, e.version AS version, e.recipient AS " \
	  "recipient, c.kind AS kind, c.name AS cn, 'envelope'::text AS via " \
	  "FROM certs c LEFT JOIN certs i ON i.tenant = c.tenant " \
	  "AND i.fp = c.issuer_fp JOIN envelopes e ON e.tenant = c.tenant " \
	  "AND e.recipient = c.fp WHERE c.tenant = $1 " \
	  "AND (c.serial IN (SELECT jsonb_array_elements_text($2::jsonb)) " \
	  "OR i.serial IN (SELECT jsonb_array_elements_text($2::jsonb))) " \
	  "AND e.name >= $3 AND starts_with(e.name, $3) " \
	  "UNION ALL SELECT a.name, a.version, a.agent, c.kind, c.name, " \
	  "'ack'::text FROM acks a JOIN certs c ON c.tenant = a.tenant " \
	  "AND c.fp = a.agent LEFT JOIN certs i ON i.tenant = c.tenant " \
	  "AND i.fp = c.issuer_fp JOIN (SELECT name, MAX(version) AS " \
	  "version FROM versions WHERE tenant = $1 AND name >= $3 " \
	  "AND starts_with(name, $3) GROUP BY name) l " \
	  "ON l.name = a.name AND a.version >= l.version " \
	  "WHERE a.tenant = $1 AND (c.serial IN (SELECT " \
	  "jsonb_array_elements_text($2::jsonb)) OR i.serial IN (SELECT " \
	  "jsonb_array_elements_text($2::jsonb))) " \
	  "AND NOT EXISTS (SELECT 1 FROM envelopes e WHERE e.tenant = $1 " \
	  "AND e.name = a.name AND e.recipient = a.agent) " \
	  "UNION ALL SELECT p.name, p.version, p.recipient, c.kind, c.name, " \
	  "'purged'::text FROM purged p JOIN certs c ON c.tenant = p.tenant " \
	  "AND c.fp = p.recipient LEFT JOIN certs i ON i.tenant = c.tenant " \
	  "AND i.fp = c.issuer_fp JOIN (SELECT name, MAX(version) AS " \
	  "version FROM versions WHERE tenant = $1 AND name >= $3 " \
	  "AND starts_with(name, $3) GROUP BY name) l " \
	  "ON l.name = p.name AND p.version >= l.version " \
	  "WHERE p.tenant = $1 AND (c.serial IN (SELECT " \
	  "jsonb_array_elements_text($2::jsonb)) OR i.serial IN (SELECT " \
	  "jsonb_array_elements_text($2::jsonb))) " \
	  "AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.tenant = $1 " \
	  "AND a.name = p.name AND a.agent = p.recipient " \
	  "AND a.version >= p.version) " \
	  "AND NOT EXISTS (SELECT 1 FROM envelopes e WHERE e.tenant = $1 " \
	  "AND e.name = p.name AND e.recipient = p.recipient)) x " \
	  "ORDER BY name, recipient, version") \
	X(S_ROLLOUT, "SELECT COALESCE(SUM(CASE WHEN a.version >= e.version " \
	  "AND a.result = 'ok' THEN 1 ELSE 0 END), 0)::bigint, " \
	  "COALESCE(SUM(CASE WHEN a.version >= e.version " \
	  "AND a.result = 'failed' THEN 1 ELSE 0 END), 0)::bigint, " \
	  "COALESCE(SUM(CASE WHEN a.version IS NULL OR a.version < e.version " \
	  "THEN 1 ELSE 0 END), 0)::bigint FROM (SELECT tenant, name, " \
	  "MAX(version) AS version FROM versions GROUP BY tenant, name) l " \
	  "JOIN envelopes e ON e.tenant = l.tenant AND e.name = l.name " \
	  "AND e.version = l.version JOIN certs c ON c.tenant = e.tenant " \
	  "AND c.fp = e.recipient AND c.kind = 'agent' LEFT JOIN acks a " \
	  "ON a.tenant = e.tenant AND a.name = e.name " \
	  "AND a.agent = e.recipient") \
	X(S_STATS, "SELECT (SELECT COUNT(*) FROM tenants), " \
	  "(SELECT COUNT(*) FROM certs), " \
	  "(SELECT COUNT(*) FROM certs WHERE kind = 'agent'), " \
	  "(SELECT COUNT(*) FROM tokens), " \
	  "(SELECT COUNT(*) FROM enrollments WHERE status = 'pending'), " \
	  "(SELECT COUNT(*) FROM (SELECT DISTINCT ON (tenant, name) deleted " \
	  "FROM versions ORDER BY tenant, name, version DESC) v " \
	  "WHERE deleted = 0), " \
	  "(SELECT COUNT(*) FROM envelopes), " \
	  "(SELECT COALESCE(SUM(octet_length(der)), 0)::bigint " \
	  "FROM envelopes), " \
	  "(SELECT COUNT(*) FROM audit), " \
	  "(SELECT COALESCE(MAX(seq), 0) FROM feed)")

#define STMT_ENUM(id, sql) id,
#define STMT_SQL(id, sql) sql,
enum stmt_id { STMTS(STMT_ENUM) S_COUNT };
static const char *const stmt_sql[S_COUNT] = { STMTS(STMT_SQL) };

typedef struct pg_store {
	cf_store base;          /* first: cf_store * <-> pg_store * */
	PGconn *conn;
	char label[192];        /* "database coffer on db1:5432": no secret */
	unsigned flags;
	int schema;
	unsigned char prepared[S_COUNT];
	int in_tx;              /* a transaction is open */
	int audit_locked;       /* this transaction holds its audit locks */
	/* Of the current attempt (pg_ready clears them): */
	int broken;             /* the connection broke */
	int commit_sent;        /* COMMIT went out */
	char sqlstate[6];       /* of the last failed statement, "" if none */
	/* Reconnection backoff. */
	int64_t retry_at_ms;    /* monotonic: no new attempt before */
	int backoff_ms;
} pg_store;

static pg_store *pg(cf_store *st)
{
	return (pg_store *)st;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* src/lib never prints: NOTICEs (IF NOT EXISTS, ...) are dropped. */
static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* ---- errors ---------------------------------------------------------- */

/* libpq's text on one line, trailing blanks cut. */
static void one_line(const char *in, char *out, size_t cap)
{
	size_t used = 0;
	int blank = 0;

	for (const char *p = in != NULL ? in : ""; *p != '\0' &&
	     used + 1 < cap; p++) {
		int is_blank = *p == '\n' || *p == '\t' || *p == '\r' ||
			       *p == ' ';

		if (is_blank) {
			blank = used > 0;
			continue;
		}
		if (blank && used + 2 < cap)
			out[used++] = ' ';
		blank = 0;
		out[used++] = *p;
	}
	out[used] = '\0';
	if (used == 0)
		snprintf(out, cap, "no reason given");
}

static int state_is(const pg_store *p, const char *code)
{
	return strcmp(p->sqlstate, code) == 0;
}

/* Maps a failed statement (res may be NULL) while doing `what`. */
static cf_status db_fail(pg_store *p, const PGresult *res, const char *what,
			 cf_error *err)
{
	const char *state = res != NULL ?
		PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res != NULL ?
		PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char why[320];

	snprintf(p->sqlstate, sizeof(p->sqlstate), "%s",
		 state != NULL ? state : "");
	one_line(primary != NULL ? primary : PQerrorMessage(p->conn), why,
		 sizeof(why));
	if (PQstatus(p->conn) != CONNECTION_OK ||
	    strncmp(p->sqlstate, "08", 2) == 0 ||
	    strncmp(p->sqlstate, "57P", 3) == 0) {
		p->broken = 1;
		p->in_tx = 0;
		return cf_error_set(err, CF_ERR_STORE,
				    "lost the connection to PostgreSQL %s "
				    "while %s (%s); the next call reconnects",
				    p->label, what, why);
	}
	if (state_is(p, "53100"))
		return cf_error_set(err, CF_ERR_STORE,
				    "PostgreSQL %s: the disk is full while %s; "
				    "free some space", p->label, what);
	if (state_is(p, "57014"))
		return cf_error_set(err, CF_ERR_STORE,
				    "PostgreSQL %s: %s took longer than %d s "
				    "and was cancelled; retry", p->label, what,
				    STATEMENT_TIMEOUT_S);
	if (state_is(p, "55P03") || state_is(p, "40P01") ||
	    state_is(p, "40001"))
		return cf_error_set(err, CF_ERR_STORE,
				    "PostgreSQL %s is busy: another writer held "
				    "what %s needs (%s); retry", p->label, what,
				    why);
	if (state_is(p, "22021") || state_is(p, "22P05"))
		return cf_error_set(err, CF_ERR_USAGE,
				    "PostgreSQL %s: %s: a text is not valid "
				    "UTF-8 (%s)", p->label, what, why);
	if (state_is(p, "42P01") || state_is(p, "42703"))
		return cf_error_set(err, CF_ERR_STORE,
				    "PostgreSQL %s is not a coffer database or "
				    "is damaged (%s)", p->label, why);
	return cf_error_set(err, CF_ERR_STORE, "PostgreSQL %s: %s failed: %s",
			    p->label, what, why);
}

static cf_status nomem(pg_store *p, const char *what, cf_error *err)
{
	return cf_error_set(err, CF_ERR_NOMEM,
			    "PostgreSQL %s: out of memory while %s", p->label,
			    what);
}

/* ---- bound values ------------------------------------------------------- */

#define ARGS_MAX 12

/* A statement's parameters: text, integers as text, binary values. */
typedef struct qargs {
	int n;
	const char *val[ARGS_MAX];
	int len[ARGS_MAX];
	int fmt[ARGS_MAX];
	char num[ARGS_MAX][24];
} qargs;

/* Text (NULL binds SQL NULL); the string must outlive the call. */
static void a_text(qargs *a, const char *v)
{
	if (a->n < ARGS_MAX) {
		a->val[a->n] = v;
		a->len[a->n] = 0;
		a->fmt[a->n] = 0;
		a->n++;
	}
}

static void a_int(qargs *a, int64_t v)
{
	if (a->n < ARGS_MAX) {
		snprintf(a->num[a->n], sizeof(a->num[0]), "%" PRId64, v);
		a_text(a, a->num[a->n]);
	}
}

/* Binary (bytea, an array); NULL binds SQL NULL, len 0 an empty value. */
static void a_bin(qargs *a, const void *v, size_t len)
{
	if (a->n < ARGS_MAX) {
		a->val[a->n] = v;
		a->len[a->n] = len > INT32_MAX ? INT32_MAX : (int)len;
		a->fmt[a->n] = 1;
		a->n++;
	}
}

/*
 * A one-dimensional array in PostgreSQL's binary format (array_send):
 * ndim, has-nulls flag, element type, then per dimension its size and
 * lower bound, then each element as a length and its bytes; all integers
 * 32-bit big-endian.  libpq has no builder for it.
 */
typedef struct pg_array {
	unsigned char *buf;
	size_t len, cap;
	uint32_t n;
} pg_array;

static int arr_put(pg_array *a, const void *v, size_t len)
{
	if (len > SIZE_MAX - a->len)
		return 0;
	if (a->len + len > a->cap) {
		size_t want = a->cap == 0 ? 4096 : a->cap;
		unsigned char *b;

		while (want < a->len + len) {
			if (want > SIZE_MAX / 2)
				return 0;
			want *= 2;
		}
		if ((b = realloc(a->buf, want)) == NULL)
			return 0;
		a->buf = b;
		a->cap = want;
	}
	if (len > 0)
		memcpy(a->buf + a->len, v, len);
	a->len += len;
	return 1;
}

static int arr_u32(pg_array *a, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24),
			       (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };

	return arr_put(a, b, sizeof(b));
}

/* Starts an empty array of element type oid (keeps the buffer). */
static int arr_begin(pg_array *a, uint32_t oid)
{
	a->len = 0;
	a->n = 0;
	return arr_u32(a, 1) && arr_u32(a, 0) && arr_u32(a, oid) &&
	       arr_u32(a, 0) && arr_u32(a, 1);
}

static int arr_add(pg_array *a, const void *v, size_t len)
{
	if (len > INT32_MAX || a->n == INT32_MAX)
		return 0;
	if (!arr_u32(a, (uint32_t)len) || !arr_put(a, v, len))
		return 0;
	a->n++;
	/* The dimension's size, at offset 12. */
	a->buf[12] = (unsigned char)(a->n >> 24);
	a->buf[13] = (unsigned char)(a->n >> 16);
	a->buf[14] = (unsigned char)(a->n >> 8);
	a->buf[15] = (unsigned char)a->n;
	return 1;
}

static void arr_free(pg_array *a)
{
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

/* ---- statements ---------------------------------------------------------- */

/*
 * Runs statement id (prepared on first use on this connection) with a's
 * values, results in binary.  On success *res (if res is not NULL)
 * receives the result, to PQclear; on failure err is set and p->sqlstate
 * says why.
 */
static cf_status run(pg_store *p, enum stmt_id id, const qargs *a,
		     const char *what, PGresult **res, cf_error *err)
{
	static const qargs none = { 0 };
	char name[16];
	PGresult *r;
	ExecStatusType t;
	cf_status rc;

	if (res != NULL)
		*res = NULL;
	if (a == NULL)
		a = &none;
	snprintf(name, sizeof(name), "cf_s%d", (int)id);
	if (!p->prepared[id]) {
		r = PQprepare(p->conn, name, stmt_sql[id], 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			rc = db_fail(p, r, "preparing a statement", err);
			PQclear(r);
			return rc;
		}
		PQclear(r);
		p->prepared[id] = 1;
	}
	r = PQexecPrepared(p->conn, name, a->n, a->val, a->len, a->fmt, 1);
	t = PQresultStatus(r);
	if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK) {
		if (res != NULL)
			*res = r;
		else
			PQclear(r);
		return CF_OK;
	}
	rc = db_fail(p, r, what, err);
	PQclear(r);
	return rc;
}

/* The rows a command changed. */
static int64_t changes(const PGresult *r)
{
	const char *t = PQcmdTuples((PGresult *)r);

	return t != NULL && *t != '\0' ? strtoll(t, NULL, 10) : 0;
}

/* ---- reading columns (binary) ------------------------------------------ */

static int64_t col_int(const PGresult *r, int row, int col)
{
	const unsigned char *v;
	uint64_t u = 0;
	int len;

	if (PQgetisnull(r, row, col))
		return 0;
	v = (const unsigned char *)PQgetvalue(r, row, col);
	len = PQgetlength(r, row, col);
	if (len != 1 && len != 2 && len != 4 && len != 8)
		return 0;
	for (int i = 0; i < len; i++)
		u = u << 8 | v[i];
	if (len > 1 && len < 8 && (v[0] & 0x80))
		u |= ~(uint64_t)0 << (8 * len);
	return (int64_t)u;
}

static void col_fixed(const PGresult *r, int row, int col, char *dst,
		      size_t cap)
{
	size_t len = (size_t)PQgetlength(r, row, col);

	if (PQgetisnull(r, row, col))
		len = 0;
	if (len > cap - 1)
		len = cap - 1;
	memcpy(dst, PQgetvalue(r, row, col), len);
	dst[len] = '\0';
	/* As SQLite's text: up to the first NUL. */
	dst[strnlen(dst, len)] = '\0';
}

/* A heap copy of column col, NULL for SQL NULL; 0 on allocation failure. */
static int col_dup(const PGresult *r, int row, int col, char **dst)
{
	size_t len;

	*dst = NULL;
	if (PQgetisnull(r, row, col))
		return 1;
	len = (size_t)PQgetlength(r, row, col);
	if ((*dst = malloc(len + 1)) == NULL)
		return 0;
	memcpy(*dst, PQgetvalue(r, row, col), len);
	(*dst)[len] = '\0';
	return 1;
}

static int col_blob(const PGresult *r, int row, int col, unsigned char **dst,
		    size_t *len)
{
	size_t n;

	*dst = NULL;
	*len = 0;
	if (PQgetisnull(r, row, col))
		return 1;
	n = (size_t)PQgetlength(r, row, col);
	if (n == 0)
		return 1;
	if ((*dst = malloc(n)) == NULL)
		return 0;
	memcpy(*dst, PQgetvalue(r, row, col), n);
	*len = n;
	return 1;
}

/* Fills elem from row `row` of r; 0 if out of memory. */
typedef int (*read_row_fn)(const PGresult *r, int row, void *elem);
/* Frees what a read_row_fn allocated inside one element. */
typedef void (*clear_row_fn)(void *elem);

/*
 * Runs id and reads its first row, if any, into elem (*found 1), else
 * *found 0.
 */
static cf_status get_row(pg_store *p, enum stmt_id id, const qargs *a,
			 read_row_fn read, void *elem, int *found,
			 const char *what, cf_error *err)
{
	PGresult *r = NULL;
	cf_status rc;

	*found = 0;
	if ((rc = run(p, id, a, what, &r, err)) != CF_OK)
		return rc;
	if (PQntuples(r) > 0) {
		*found = 1;
		if (!read(r, 0, elem))
			rc = nomem(p, what, err);
	}
	PQclear(r);
	return rc;
}

/*
 * Runs id and reads every row into a malloc'ed array of elem_size
 * elements: on success *out (NULL if no rows) and *n; on failure nothing
 * is kept and *out and *n are untouched.
 */
static cf_status collect_rows(pg_store *p, enum stmt_id id, const qargs *a,
			      size_t elem_size, read_row_fn read,
			      clear_row_fn clear, const char *what,
			      void **out, size_t *n, cf_error *err)
{
	PGresult *r = NULL;
	void *arr = NULL;
	size_t cnt = 0, rows;
	cf_status rc;

	if ((rc = run(p, id, a, what, &r, err)) != CF_OK)
		return rc;
	rows = (size_t)PQntuples(r);
	if (rows > 0 && (elem_size > SIZE_MAX / rows ||
			 (arr = calloc(rows, elem_size)) == NULL))
		rc = nomem(p, what, err);
	for (; rc == CF_OK && cnt < rows; cnt++)
		if (!read(r, (int)cnt, (char *)arr + cnt * elem_size))
			rc = nomem(p, what, err);
	PQclear(r);
	if (rc != CF_OK) {
		/* cnt counts an element whose read failed: it is cleared. */
		for (size_t i = 0; clear != NULL && i < cnt; i++)
			clear((char *)arr + i * elem_size);
		free(arr);
		return rc;
	}
	*out = arr;
	*n = cnt;
	return CF_OK;
}

static int read_int64(const PGresult *r, int row, void *elem)
{
	*(int64_t *)elem = col_int(r, row, 0);
	return 1;
}

static int read_fp(const PGresult *r, int row, void *elem)
{
	col_fixed(r, row, 0, elem, 65);
	return 1;
}

/* ---- connection, transactions, retries ---------------------------------- */

/* Settings every session gets (constant text, no values). */
static cf_status session_setup(pg_store *p, cf_error *err)
{
	char sql[256];
	PGresult *r;
	cf_status rc = CF_OK;

	snprintf(sql, sizeof(sql),
		 "SET statement_timeout = '%ds'; SET lock_timeout = '%ds'; "
		 "SET idle_in_transaction_session_timeout = '%ds'%s",
		 STATEMENT_TIMEOUT_S, LOCK_TIMEOUT_S, IDLE_IN_TX_TIMEOUT_S,
		 (p->flags & CF_STORE_SYNC_FULL) ?
			 "; SET synchronous_commit = on" : "");
	r = PQexec(p->conn, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = db_fail(p, r, "setting up the session", err);
	PQclear(r);
	memset(p->prepared, 0, sizeof(p->prepared));
	p->in_tx = 0;
	return rc;
}

/*
 * Makes sure the connection is usable for one attempt of a call: a
 * broken one is re-established, unless the last attempt failed less than
 * the backoff ago.  Clears the attempt's state.
 */
static cf_status pg_ready(pg_store *p, cf_error *err)
{
	char why[320];
	int64_t now;

	p->commit_sent = 0;
	p->sqlstate[0] = '\0';
	if (!p->broken && PQstatus(p->conn) == CONNECTION_OK)
		return CF_OK;
	now = mono_ms();
	if (now < p->retry_at_ms)
		return cf_error_set(err, CF_ERR_STORE,
				    "PostgreSQL %s is unreachable; the next "
				    "attempt to reconnect is in %lld ms",
				    p->label,
				    (long long)(p->retry_at_ms - now));
	PQreset(p->conn);
	if (PQstatus(p->conn) == CONNECTION_OK &&
	    session_setup(p, NULL) == CF_OK) {
		p->broken = 0;
		p->backoff_ms = 0;
		p->retry_at_ms = 0;
		return CF_OK;
	}
	one_line(PQerrorMessage(p->conn), why, sizeof(why));
	p->broken = 1;
	p->backoff_ms = p->backoff_ms == 0 ? BACKOFF_MIN_MS :
			p->backoff_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS :
			p->backoff_ms * 2;
	p->retry_at_ms = mono_ms() + p->backoff_ms;
	return cf_error_set(err, CF_ERR_STORE,
			    "cannot reconnect to PostgreSQL %s (%s); retrying "
			    "in %d ms at the earliest", p->label, why,
			    p->backoff_ms);
}

/*
 * Whether a failed attempt is run again: after a lost connection if its
 * COMMIT never went out (nothing of it can have committed), after a
 * deadlock or serialization failure (PostgreSQL rolled it back).
 */
static int again(pg_store *p, cf_status rc, int attempt)
{
	if (rc == CF_OK || attempt + 1 >= ATTEMPTS)
		return 0;
	if (p->broken)
		return !p->commit_sent && attempt == 0;
	if (state_is(p, "40P01") || state_is(p, "40001")) {
		struct timespec pause = { 0, (attempt + 1) * 5 * 1000 * 1000L };

		nanosleep(&pause, NULL);
		return 1;
	}
	return 0;
}

/* Runs call (an expression of type cf_status) with retries; returns. */
#define ATTEMPT(p, err, call) do { \
	cf_status rc_; \
	for (int attempt_ = 0;; attempt_++) { \
		if ((rc_ = pg_ready((p), (err))) != CF_OK) \
			return rc_; \
		rc_ = (call); \
		if (!again((p), rc_, attempt_)) \
			return rc_; \
	} \
} while (0)

static cf_status simple(pg_store *p, const char *sql, const char *what,
			cf_error *err)
{
	PGresult *r = PQexec(p->conn, sql);
	cf_status rc = CF_OK;

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = db_fail(p, r, what, err);
	PQclear(r);
	return rc;
}

static cf_status tx_begin(pg_store *p, cf_error *err)
{
	cf_status rc = simple(p, "BEGIN", "starting a transaction", err);

	p->in_tx = rc == CF_OK;
	p->audit_locked = 0;
	return rc;
}

static void tx_rollback(pg_store *p)
{
	if (p->in_tx && !p->broken) {
		PGresult *r = PQexec(p->conn, "ROLLBACK");

		PQclear(r);
	}
	p->in_tx = 0;
}

static cf_status tx_commit(pg_store *p, cf_error *err)
{
	PGresult *r;
	cf_status rc = CF_OK;

	p->commit_sent = 1;
	r = PQexec(p->conn, "COMMIT");
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		rc = db_fail(p, r, "committing", err);
		if (p->broken)
			rc = cf_error_set(err, CF_ERR_STORE,
					  "lost the connection to PostgreSQL "
					  "%s while committing: the change may "
					  "or may not be stored; check before "
					  "retrying", p->label);
	} else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
		/* PostgreSQL answers a COMMIT of a failed transaction with
		 * ROLLBACK; the code never gets here with one, but never
		 * calls that a success either. */
		rc = cf_error_set(err, CF_ERR_STORE,
				  "PostgreSQL %s rolled the transaction back",
				  p->label);
	}
	PQclear(r);
	p->in_tx = 0;
	return rc;
}

/* Commits if rc is CF_OK, else rolls back; the outcome. */
static cf_status tx_end(pg_store *p, cf_status rc, cf_error *err)
{
	if (rc == CF_OK)
		return tx_commit(p, err);
	tx_rollback(p);
	return rc;
}

static cf_status lock(pg_store *p, enum stmt_id id, const char *key,
		      cf_error *err)
{
	qargs a = { 0 };

	if (key != NULL)
		a_text(&a, key);
	return run(p, id, &a, "waiting for a lock", NULL, err);
}

/* ---- audit chain ----------------------------------------------------- */

#define OBJECT_FORCE 1

/* The head of one tenant's chain as this transaction left it. */
typedef struct chain_head {
	int valid;
	char tenant[65];
	int64_t seq;
	char hash[65];
} chain_head;

static int read_head(const PGresult *r, int row, void *elem)
{
	chain_head *h = elem;

	h->seq = col_int(r, row, 0);
	col_fixed(r, row, 1, h->hash, sizeof(h->hash));
	return 1;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Takes the audit locks of n tenants (tenants[i] at stride bytes apart),
 * each once, in sorted order: a batch over several tenants never waits in
 * a cycle with another.  The transaction's audit writes then skip them.
 */
static cf_status audit_lock_all(pg_store *p, const char *first, size_t stride,
				size_t n, cf_error *err)
{
	const char **t;
	cf_status rc = CF_OK;

	if (n == 0)
		return CF_OK;
	if ((t = malloc(n * sizeof(*t))) == NULL)
		return nomem(p, "locking the audit log", err);
	for (size_t i = 0; i < n; i++)
		t[i] = first + i * stride;
	qsort(t, n, sizeof(*t), cmp_strp);
	for (size_t i = 0; i < n && rc == CF_OK; i++)
		if (i == 0 || strcmp(t[i - 1], t[i]) != 0)
			rc = lock(p, S_LOCK_AUDIT, t[i], err);
	free(t);
	if (rc == CF_OK)
		p->audit_locked = 1;
	return rc;
}

/*
 * Appends a copy of tmpl inside the open transaction, as in
 * store_sqlite.c: tenant (if not NULL) replaces the template's; object
 * (if not NULL) fills an empty one, or replaces it when OBJECT_FORCE;
 * time 0 becomes now; seq, prev and hash extend the tenant's chain, read
 * under the tenant's audit lock.
 */
static cf_status audit_write_head(pg_store *p, const cf_audit_entry *tmpl,
				  const char *tenant, const char *object,
				  int force, chain_head *head, cf_error *err)
{
	cf_audit_entry e = *tmpl;
	chain_head last = { 0 };
	qargs a = { 0 };
	cf_status rc;
	int found;

	if (tenant != NULL)
		snprintf(e.tenant, sizeof(e.tenant), "%s", tenant);
	if (object != NULL && (force || e.object[0] == '\0'))
		snprintf(e.object, sizeof(e.object), "%s", object);
	if (e.time == 0)
		e.time = (int64_t)time(NULL);
	if (head != NULL && head->valid && strcmp(head->tenant, e.tenant) == 0) {
		e.seq = head->seq + 1;
		memcpy(e.prev, head->hash, sizeof(e.prev));
	} else {
		/* The lock first, then the read in a new statement: its
		 * snapshot sees the last holder's commit. */
		if (!p->audit_locked &&
		    (rc = lock(p, S_LOCK_AUDIT, e.tenant, err)) != CF_OK)
			return rc;
		a_text(&a, e.tenant);
		if ((rc = get_row(p, S_AUDIT_LAST, &a, read_head, &last,
				  &found, "reading the audit chain", err)) !=
		    CF_OK)
			return rc;
		if (found) {
			e.seq = last.seq + 1;
			memcpy(e.prev, last.hash, sizeof(e.prev));
		} else {
			e.seq = 1;
			memcpy(e.prev, cf_audit_genesis, sizeof(e.prev));
		}
	}
	if ((rc = cf_audit_hash(&e, e.hash, err)) != CF_OK)
		return rc;
	memset(&a, 0, sizeof(a));
	a_text(&a, e.tenant);
	a_int(&a, e.seq);
	a_int(&a, e.time);
	a_text(&a, e.actor);
	a_text(&a, e.subject);
	a_text(&a, e.source);
	a_text(&a, e.action);
	a_text(&a, e.object);
	a_int(&a, e.bytes);
	a_text(&a, e.prev);
	a_text(&a, e.hash);
	if ((rc = run(p, S_AUDIT_INS, &a, "appending to the audit log", NULL,
		      err)) != CF_OK)
		return rc;
	if (head != NULL) {
		head->valid = 1;
		snprintf(head->tenant, sizeof(head->tenant), "%s", e.tenant);
		head->seq = e.seq;
		memcpy(head->hash, e.hash, sizeof(head->hash));
	}
	return CF_OK;
}

static cf_status audit_write(pg_store *p, const cf_audit_entry *tmpl,
			     const char *tenant, const char *object,
			     cf_error *err)
{
	return audit_write_head(p, tmpl, tenant, object, 0, NULL, err);
}

/* ---- open, close, migrations ----------------------------------------- */

static cf_status too_new(pg_store *p, int version, cf_error *err)
{
	return cf_error_set(err, CF_ERR_STORE,
			    "PostgreSQL %s has schema version %d, newer than "
			    "the %d this coffer knows; run the coffer that "
			    "wrote it, or upgrade", p->label, version,
			    SCHEMA_VERSION);
}

/* The schema version: 0 if coffer_schema is not there (or empty). */
static cf_status read_schema_version(pg_store *p, int *version,
				     cf_error *err)
{
	PGresult *r;
	cf_status rc = CF_OK;

	*version = 0;
	r = PQexecParams(p->conn, "SELECT to_regclass('coffer_schema') IS "
			 "NOT NULL", 0, NULL, NULL, NULL, NULL, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		rc = db_fail(p, r, "reading the schema version", err);
		PQclear(r);
		return rc;
	}
	if (col_int(r, 0, 0) == 0) {
		PQclear(r);
		return CF_OK;
	}
	PQclear(r);
	r = PQexecParams(p->conn, "SELECT version::bigint FROM coffer_schema",
			 0, NULL, NULL, NULL, NULL, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = cf_error_set(err, CF_ERR_STORE,
				  "PostgreSQL %s: its coffer_schema table is "
				  "not coffer's (is it a coffer database?)",
				  p->label);
	} else if (PQntuples(r) > 0) {
		int64_t v = col_int(r, 0, 0);

		*version = v < 0 || v > 1000000 ? 1000000 : (int)v;
	}
	PQclear(r);
	return rc;
}

static cf_status migrate(pg_store *p, cf_error *err)
{
	char number[16];
	const char *values[1] = { number };
	PGresult *r;
	cf_status rc;
	int version = 0;

	if ((rc = read_schema_version(p, &version, err)) != CF_OK)
		return rc;
	if (version > SCHEMA_VERSION)
		return too_new(p, version, err);
	if (version == 0 && !(p->flags & CF_STORE_CREATE))
		return cf_error_set(err, CF_ERR_NOT_FOUND,
				    "PostgreSQL %s holds no coffer database; "
				    "run coffer server init --db with it",
				    p->label);
	while (version < SCHEMA_VERSION) {
		if ((rc = tx_begin(p, err)) != CF_OK)
			return rc;
		/* Nodes starting together: one migrates, the others wait and
		 * then find the work done. */
		r = PQexec(p->conn, "SELECT pg_advisory_xact_lock(" LOCK_MIGRATE
			   ", 0)");
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			rc = db_fail(p, r, "waiting for the migration lock",
				     err);
		PQclear(r);
		if (rc == CF_OK)
			rc = simple(p, "CREATE TABLE IF NOT EXISTS coffer_schema "
				    "(version INTEGER NOT NULL); "
				    "INSERT INTO coffer_schema (version) "
				    "SELECT 0 WHERE NOT EXISTS "
				    "(SELECT 1 FROM coffer_schema)",
				    "recording the schema version", err);
		if (rc == CF_OK)
			rc = read_schema_version(p, &version, err);
		if (rc == CF_OK && version > SCHEMA_VERSION)
			rc = too_new(p, version, err);
		if (rc != CF_OK || version == SCHEMA_VERSION) {
			rc = tx_end(p, rc, err);
			break;
		}
		r = PQexec(p->conn, cf_schema_steps[version].postgres);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			char why[320];

			one_line(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY),
				 why, sizeof(why));
			rc = cf_error_set(err, CF_ERR_STORE,
					  "PostgreSQL %s: schema step %d failed: "
					  "%s (is it a coffer database?)",
					  p->label, version + 1, why);
			(void)db_fail(p, r, "migrating", NULL);
		}
		PQclear(r);
		if (rc == CF_OK) {
			snprintf(number, sizeof(number), "%d", version + 1);
			r = PQexecParams(p->conn, "UPDATE coffer_schema SET "
					 "version = $1::integer", 1, NULL,
					 values, NULL, NULL, 0);
			if (PQresultStatus(r) != PGRES_COMMAND_OK)
				rc = db_fail(p, r, "recording the schema "
					     "version", err);
			PQclear(r);
		}
		if ((rc = tx_end(p, rc, err)) != CF_OK)
			return rc;
		version++;
	}
	if (rc == CF_OK)
		p->schema = version;
	return rc;
}

static void pg_free(cf_store *st)
{
	pg_store *p = pg(st);

	if (p->conn != NULL)
		PQfinish(p->conn);
	free(p);
}

static int pg_schema_version(cf_store *st)
{
	return pg(st)->schema;
}

/* "database NAME on HOST:PORT", from what libpq parsed: no password. */
static void make_label(pg_store *p)
{
	const char *db = PQdb(p->conn), *host = PQhost(p->conn),
		   *port = PQport(p->conn);

	if (db == NULL || strchr(db, '=') != NULL || strchr(db, '@') != NULL)
		db = "?";
	snprintf(p->label, sizeof(p->label), "database %.64s on %.80s%s%.8s",
		 db, host != NULL && *host != '\0' ? host : "localhost",
		 port != NULL && *port != '\0' ? ":" : "",
		 port != NULL ? port : "");
}

int cf_store_url_has_password(const char *url)
{
	PQconninfoOption *opts;
	char *perr = NULL;
	int found = 0;

	if (url == NULL || (strncmp(url, "postgresql://", 13) != 0 &&
			    strncmp(url, "postgres://", 11) != 0))
		return 0;
	opts = PQconninfoParse(url, &perr);
	PQfreemem(perr);
	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL &&
		    o->val[0] != '\0')
			found = 1;
	PQconninfoFree(opts);
	return found;
}

static const cf_store_ops pg_ops;

cf_status cf_store_pg_open(const char *url, unsigned flags, cf_store **out,
			   cf_error *err)
{
	/*
	 * Defaults first, the URL after them (libpq keeps the last value of
	 * a repeated keyword): the URL may override any of them.  A default
	 * with an environment variable of its own yields to it.
	 */
	const char *kw[12], *val[12];
	PQconninfoOption *parsed;
	char *perr = NULL, why[320];
	pg_store *p = NULL;
	cf_status rc = CF_OK;
	int k = 0;

	*out = NULL;
	/* Checked before connecting, without echoing libpq's message: it
	 * may quote a piece of the URL, password included. */
	parsed = PQconninfoParse(url, &perr);
	PQfreemem(perr);
	if (parsed == NULL)
		return cf_error_set(err, CF_ERR_USAGE,
				    "the database URL postgresql://... is "
				    "malformed (see libpq's connection URIs); "
				    "it is not shown, it may hold a password");
	PQconninfoFree(parsed);
	if (getenv("PGCONNECT_TIMEOUT") == NULL) {
		kw[k] = "connect_timeout";
		val[k++] = "5";
	}
	if (getenv("PGAPPNAME") == NULL) {
		kw[k] = "application_name";
		val[k++] = "coffer";
	}
	kw[k] = "keepalives";
	val[k++] = "1";
	kw[k] = "keepalives_idle";
	val[k++] = "10";
	kw[k] = "keepalives_interval";
	val[k++] = "5";
	kw[k] = "keepalives_count";
	val[k++] = "3";
	kw[k] = "tcp_user_timeout";
	val[k++] = "30000";
	kw[k] = "dbname";
	val[k++] = url;
	/* Text is exchanged as UTF-8 whatever the URL or PGCLIENTENCODING. */
	kw[k] = "client_encoding";
	val[k++] = "UTF8";
	kw[k] = NULL;
	val[k] = NULL;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return cf_error_set(err, CF_ERR_NOMEM,
				    "out of memory opening a PostgreSQL "
				    "database");
	p->base.ops = &pg_ops;
	p->flags = flags;
	p->conn = PQconnectdbParams(kw, val, 1);
	if (p->conn == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM,
				  "out of memory opening a PostgreSQL database");
		goto out;
	}
	PQsetNoticeProcessor(p->conn, quiet, NULL);
	make_label(p);
	if (PQstatus(p->conn) != CONNECTION_OK) {
		one_line(PQerrorMessage(p->conn), why, sizeof(why));
		rc = cf_error_set(err, CF_ERR_STORE,
				  "cannot connect to PostgreSQL %s: %s; check "
				  "the URL, that the server runs and that it "
				  "admits this user", p->label, why);
		goto out;
	}
	if ((rc = session_setup(p, err)) != CF_OK)
		goto out;
	rc = migrate(p, err);
out:
	if (rc != CF_OK)
		pg_free(&p->base);
	else
		*out = &p->base;
	return rc;
}

/* ---- tenants -------------------------------------------------------- */

static cf_status announce_tenants(pg_store *p, cf_error *err);

static int read_tenant(const PGresult *r, int row, void *elem)
{
	cf_tenant *t = elem;

	col_fixed(r, row, 0, t->id, sizeof(t->id));
	t->crl_number = col_int(r, row, 3);
	t->created = col_int(r, row, 4);
	return col_dup(r, row, 1, &t->root_pem) &&
	       col_dup(r, row, 2, &t->crl_pem);
}

static void clear_tenant(void *elem)
{
	cf_tenant_clear(elem);
}

static cf_status tenant_add_once(pg_store *p, const char *id,
				 const char *root_pem,
				 const cf_audit_entry *audit, cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	a_text(&a, id);
	a_text(&a, root_pem);
	a_int(&a, (int64_t)time(NULL));
	rc = run(p, S_TENANT_INS, &a, "adding a tenant", NULL, err);
	if (rc != CF_OK && state_is(p, "23505"))
		rc = cf_error_set(err, CF_ERR_EXISTS,
				  "tenant %s is already registered", id);
	if (rc == CF_OK)
		rc = audit_write(p, audit, id, id, err);
	if (rc == CF_OK)
		rc = announce_tenants(p, err);
	return tx_end(p, rc, err);
}

static cf_status pg_tenant_add(cf_store *st, const char *id,
			       const char *root_pem,
			       const cf_audit_entry *audit, cf_error *err)
{
	ATTEMPT(pg(st), err, tenant_add_once(pg(st), id, root_pem, audit, err));
}

static cf_status tenant_get_once(pg_store *p, const char *id, cf_tenant *out,
				 cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;
	int found;

	cf_tenant_clear(out);
	a_text(&a, id);
	rc = get_row(p, S_TENANT_GET, &a, read_tenant, out, &found,
		     "reading a tenant", err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "no tenant %s; register its root with "
				  "coffer server tenant add", id);
	if (rc != CF_OK)
		cf_tenant_clear(out);
	return rc;
}

static cf_status pg_tenant_get(cf_store *st, const char *id, cf_tenant *out,
			       cf_error *err)
{
	ATTEMPT(pg(st), err, tenant_get_once(pg(st), id, out, err));
}

static cf_status pg_tenant_list(cf_store *st, cf_tenant **out, size_t *n,
				cf_error *err)
{
	ATTEMPT(pg(st), err, collect_rows(pg(st), S_TENANT_LIST, NULL,
					  sizeof(**out), read_tenant,
					  clear_tenant, "listing tenants",
					  (void **)out, n, err));
}

static cf_status tenant_set_crl_once(pg_store *p, const char *id,
				     const char *crl_pem, int64_t crl_number,
				     const cf_audit_entry *audit,
				     cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;
	int64_t stored = -1;
	int found;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	a_text(&a, id);
	if ((rc = get_row(p, S_TENANT_CRL_NUMBER, &a, read_int64, &stored,
			  &found, "reading a tenant's CRL number", err)) !=
	    CF_OK)
		goto out;
	if (!found) {
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "no tenant %s", id);
		goto out;
	}
	if (crl_number <= stored) {
		rc = cf_error_set(err, CF_ERR_CONFLICT,
				  "CRL number %" PRId64 " of tenant %.16s is "
				  "not above the stored %" PRId64 "; sign a "
				  "newer CRL", crl_number, id, stored);
		goto out;
	}
	memset(&a, 0, sizeof(a));
	a_text(&a, id);
	a_text(&a, crl_pem);
	a_int(&a, crl_number);
	if ((rc = run(p, S_TENANT_SET_CRL, &a, "storing a CRL", NULL, err)) ==
	    CF_OK)
		rc = audit_write(p, audit, id, NULL, err);
	if (rc == CF_OK)
		rc = announce_tenants(p, err);
out:
	return tx_end(p, rc, err);
}

static cf_status pg_tenant_set_crl(cf_store *st, const char *id,
				   const char *crl_pem, int64_t crl_number,
				   const cf_audit_entry *audit, cf_error *err)
{
	ATTEMPT(pg(st), err, tenant_set_crl_once(pg(st), id, crl_pem,
						 crl_number, audit, err));
}

/* ---- certificate directory ------------------------------------------ */

static int read_cert(const PGresult *r, int row, void *elem)
{
	cf_cert_row *c = elem;

	col_fixed(r, row, 0, c->tenant, sizeof(c->tenant));
	col_fixed(r, row, 1, c->fp, sizeof(c->fp));
	col_fixed(r, row, 2, c->kind, sizeof(c->kind));
	col_fixed(r, row, 3, c->name, sizeof(c->name));
	col_fixed(r, row, 5, c->cluster, sizeof(c->cluster));
	col_fixed(r, row, 6, c->issuer_fp, sizeof(c->issuer_fp));
	col_fixed(r, row, 7, c->serial, sizeof(c->serial));
	c->not_after = col_int(r, row, 8);
	c->created = col_int(r, row, 10);
	return col_dup(r, row, 4, &c->groups) && col_dup(r, row, 9, &c->pem);
}

static void clear_cert(void *elem)
{
	cf_cert_row_clear(elem);
}

/* Inserts row (and its groups) in the open transaction unless there. */
static cf_status cert_insert(pg_store *p, const cf_cert_row *row,
			     int *inserted, cf_error *err)
{
	qargs a = { 0 };
	PGresult *r = NULL;
	char what[128];
	cf_status rc;
	int64_t added;

	*inserted = 0;
	snprintf(what, sizeof(what), "adding certificate %.16s", row->fp);
	a_text(&a, row->tenant);
	a_text(&a, row->fp);
	a_text(&a, row->kind);
	a_text(&a, row->name);
	a_text(&a, row->groups != NULL ? row->groups : "");
	a_text(&a, row->cluster);
	a_text(&a, row->issuer_fp);
	a_text(&a, row->serial);
	a_int(&a, row->not_after);
	a_text(&a, row->pem);
	a_int(&a, row->created != 0 ? row->created : (int64_t)time(NULL));
	rc = run(p, S_CERT_INS, &a, what, &r, err);
	if (rc != CF_OK && state_is(p, "23503"))
		return cf_error_set(err, CF_ERR_NOT_FOUND,
				    "certificate %.16s: no tenant %s", row->fp,
				    row->tenant);
	if (rc != CF_OK)
		return rc;
	added = changes(r);
	PQclear(r);
	if (added == 0)
		return CF_OK;
	*inserted = 1;
	/* "web, db" -> rows "web" and "db". */
	for (const char *s = row->groups != NULL ? row->groups : "";
	     *s != '\0';) {
		char grp[CF_STORE_NAME_MAX + 1];
		size_t len = strcspn(s, ",");
		const char *b = s, *e = s + len;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > b) {
			/* store.c refused this already; kept because grp is
			 * a fixed-size buffer. */
			if ((size_t)(e - b) > CF_STORE_NAME_MAX)
				return cf_error_set(err, CF_ERR_TOO_LARGE,
						    "certificate %.16s: a "
						    "group name is above %d "
						    "bytes", row->fp,
						    CF_STORE_NAME_MAX);
			memcpy(grp, b, (size_t)(e - b));
			grp[e - b] = '\0';
			memset(&a, 0, sizeof(a));
			a_text(&a, row->tenant);
			a_text(&a, grp);
			a_text(&a, row->fp);
			if ((rc = run(p, S_CERT_GROUP_INS, &a, what, NULL,
				      err)) != CF_OK)
				return rc;
		}
		s += len;
		if (*s == ',')
			s++;
	}
	return CF_OK;
}

static cf_status cert_put_once(pg_store *p, const cf_cert_row *row,
			       const cf_audit_entry *audit, cf_error *err)
{
	cf_status rc;
	int inserted = 0;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	rc = cert_insert(p, row, &inserted, err);
	/* Nothing changed, nothing to log. */
	if (rc == CF_OK && inserted && audit != NULL)
		rc = audit_write(p, audit, row->tenant, row->fp, err);
	return tx_end(p, rc, err);
}

static cf_status pg_cert_put(cf_store *st, const cf_cert_row *row,
			     const cf_audit_entry *audit, cf_error *err)
{
	ATTEMPT(pg(st), err, cert_put_once(pg(st), row, audit, err));
}

static cf_status cert_get_once(pg_store *p, const char *tenant,
			       const char *fp, cf_cert_row *out,
			       cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;
	int found;

	cf_cert_row_clear(out);
	a_text(&a, tenant);
	a_text(&a, fp);
	rc = get_row(p, S_CERT_GET, &a, read_cert, out, &found,
		     "reading a certificate", err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "no certificate %s in the directory", fp);
	if (rc != CF_OK)
		cf_cert_row_clear(out);
	return rc;
}

static cf_status pg_cert_get(cf_store *st, const char *tenant, const char *fp,
			     cf_cert_row *out, cf_error *err)
{
	ATTEMPT(pg(st), err, cert_get_once(pg(st), tenant, fp, out, err));
}

static cf_status cert_list_once(pg_store *p, const char *tenant,
				const cf_cert_filter *f, cf_cert_row **out,
				size_t *n, cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	a_text(&a, f->kind);
	a_text(&a, f->name);
	a_text(&a, f->fp);
	a_text(&a, f->after_fp != NULL ? f->after_fp : "");
	if (f->limit == 0)
		a_text(&a, NULL); /* LIMIT NULL: no limit */
	else
		a_int(&a, f->limit > INT64_MAX ? INT64_MAX :
						 (int64_t)f->limit);
	if (f->group != NULL)
		a_text(&a, f->group);
	return collect_rows(p, f->group != NULL ? S_CERT_LIST_GROUP :
						  S_CERT_LIST,
			    &a, sizeof(**out), read_cert, clear_cert,
			    "listing certificates", (void **)out, n, err);
}

static cf_status pg_cert_list(cf_store *st, const char *tenant,
			      const cf_cert_filter *f, cf_cert_row **out,
			      size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, cert_list_once(pg(st), tenant, f, out, n, err));
}

/* ---- join tokens ----------------------------------------------------- */

static int read_token(const PGresult *r, int row, void *elem)
{
	cf_token_row *t = elem;

	col_fixed(r, row, 0, t->tenant, sizeof(t->tenant));
	col_fixed(r, row, 1, t->id, sizeof(t->id));
	col_fixed(r, row, 2, t->hash, sizeof(t->hash));
	col_fixed(r, row, 3, t->group, sizeof(t->group));
	t->uses = col_int(r, row, 4);
	t->used = col_int(r, row, 5);
	t->expires = col_int(r, row, 6);
	t->created = col_int(r, row, 7);
	col_fixed(r, row, 8, t->creator, sizeof(t->creator));
	t->revoked = (int)col_int(r, row, 9);
	return col_blob(r, row, 10, &t->envelope, &t->envelope_len);
}

static void clear_token(void *elem)
{
	cf_token_row_clear(elem);
}

static cf_status token_add_once(pg_store *p, const cf_token_row *rows,
				size_t n, const cf_audit_entry *audit_template,
				cf_error *err)
{
	chain_head head = { 0 };
	int64_t now = (int64_t)time(NULL);
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	for (size_t i = 0; i < n && rc == CF_OK; i++) {
		const cf_token_row *t = &rows[i];
		qargs a = { 0 };

		a_text(&a, t->tenant);
		a_text(&a, t->id);
		a_text(&a, t->hash);
		a_text(&a, t->group);
		a_int(&a, t->uses);
		a_int(&a, t->expires);
		a_int(&a, t->created != 0 ? t->created : now);
		a_text(&a, t->creator);
		a_bin(&a, t->envelope, t->envelope_len);
		rc = run(p, S_TOKEN_INS, &a, "adding a token", NULL, err);
		if (rc != CF_OK && state_is(p, "23505"))
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "token %s exists already; make a "
					  "new id", t->id);
		else if (rc != CF_OK && state_is(p, "23503"))
			rc = cf_error_set(err, CF_ERR_NOT_FOUND,
					  "token %s: no tenant %s", t->id,
					  t->tenant);
	}
	/* The chains last: audit locks are held only to the commit. */
	if (rc == CF_OK)
		rc = audit_lock_all(p, rows[0].tenant, sizeof(*rows), n, err);
	for (size_t i = 0; i < n && rc == CF_OK; i++)
		rc = audit_write_head(p, audit_template, rows[i].tenant,
				      rows[i].id, OBJECT_FORCE, &head, err);
	return tx_end(p, rc, err);
}

static cf_status pg_token_add(cf_store *st, const cf_token_row *rows,
			      size_t n, const cf_audit_entry *audit_template,
			      cf_error *err)
{
	ATTEMPT(pg(st), err, token_add_once(pg(st), rows, n, audit_template,
					    err));
}

static cf_status token_get_once(pg_store *p, const char *id,
				cf_token_row *out, cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;
	int found;

	cf_token_row_clear(out);
	a_text(&a, id);
	rc = get_row(p, S_TOKEN_GET, &a, read_token, out, &found,
		     "reading a token", err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "no token %s", id);
	if (rc != CF_OK)
		cf_token_row_clear(out);
	return rc;
}

static cf_status pg_token_get(cf_store *st, const char *id, cf_token_row *out,
			      cf_error *err)
{
	ATTEMPT(pg(st), err, token_get_once(pg(st), id, out, err));
}

static cf_status token_list_once(pg_store *p, const char *tenant,
				 cf_token_row **out, size_t *n, cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	return collect_rows(p, S_TOKEN_LIST, &a, sizeof(**out), read_token,
			    clear_token, "listing tokens", (void **)out, n,
			    err);
}

static cf_status pg_token_list(cf_store *st, const char *tenant,
			       cf_token_row **out, size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, token_list_once(pg(st), tenant, out, n, err));
}

static cf_status token_revoke_once(pg_store *p, const char *tenant,
				   const char *id, const cf_audit_entry *audit,
				   cf_error *err)
{
	qargs a = { 0 };
	PGresult *r = NULL;
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	a_text(&a, tenant);
	a_text(&a, id);
	if ((rc = run(p, S_TOKEN_REVOKE, &a, "revoking a token", &r, err)) !=
	    CF_OK)
		goto out;
	if (changes(r) == 0) {
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "no token %s in this tenant", id);
		goto out;
	}
	rc = audit_write(p, audit, tenant, id, err);
out:
	PQclear(r);
	return tx_end(p, rc, err);
}

static cf_status pg_token_revoke(cf_store *st, const char *tenant,
				 const char *id, const cf_audit_entry *audit,
				 cf_error *err)
{
	ATTEMPT(pg(st), err, token_revoke_once(pg(st), tenant, id, audit,
					       err));
}

/* ---- enrollment requests --------------------------------------------- */

static int read_enroll(const PGresult *r, int row, void *elem)
{
	cf_enroll_row *e = elem;

	col_fixed(r, row, 0, e->id, sizeof(e->id));
	col_fixed(r, row, 1, e->tenant, sizeof(e->tenant));
	col_fixed(r, row, 2, e->token_id, sizeof(e->token_id));
	col_fixed(r, row, 3, e->group, sizeof(e->group));
	col_fixed(r, row, 4, e->name, sizeof(e->name));
	col_fixed(r, row, 6, e->hmac, sizeof(e->hmac));
	col_fixed(r, row, 7, e->source, sizeof(e->source));
	col_fixed(r, row, 8, e->status, sizeof(e->status));
	col_fixed(r, row, 11, e->reason, sizeof(e->reason));
	col_fixed(r, row, 12, e->decided_by, sizeof(e->decided_by));
	e->created = col_int(r, row, 13);
	e->decided = col_int(r, row, 14);
	return col_dup(r, row, 5, &e->csr_pem) &&
	       col_dup(r, row, 9, &e->cert_pem) &&
	       col_dup(r, row, 10, &e->chain_pem);
}

static void clear_enroll(void *elem)
{
	cf_enroll_row_clear(elem);
}

/* A fresh id of 32 hex digits into id (33 bytes); 0 if RAND_bytes failed. */
static int random_id(char *id)
{
	unsigned char rnd[16];

	if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1)
		return 0;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	return 1;
}

static void iso_time(int64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, cap, "%" PRId64, t);
}

static cf_status enroll_add_once(pg_store *p, cf_enroll_row *row,
				 const char *token_hash, int64_t now,
				 const cf_audit_entry *audit_template,
				 cf_error *err)
{
	static const char refused[] =
		"join token refused: unknown token or wrong secret";
	cf_token_row tok = { 0 };
	qargs a = { 0 };
	char when[40];
	cf_status rc;
	int found;

	row->id[0] = '\0';
	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	/* Locked: two requests racing for the last use are serialised. */
	a_text(&a, row->token_id);
	if ((rc = get_row(p, S_TOKEN_GET_LOCK, &a, read_token, &tok, &found,
			  "reading a token", err)) != CF_OK)
		goto out;
	if (!found) {
		rc = cf_error_set(err, CF_ERR_TOKEN, "%s", refused);
		goto out;
	}
	/* Constant time over the hash; lengths are not secret. */
	if (strlen(token_hash) != 64 || strlen(tok.hash) != 64 ||
	    CRYPTO_memcmp(token_hash, tok.hash, 64) != 0) {
		rc = cf_error_set(err, CF_ERR_TOKEN, "%s", refused);
		goto out;
	}
	if (tok.revoked) {
		rc = cf_error_set(err, CF_ERR_TOKEN,
				  "join token %s refused: revoked", tok.id);
		goto out;
	}
	if (now >= tok.expires) {
		iso_time(tok.expires, when, sizeof(when));
		rc = cf_error_set(err, CF_ERR_TOKEN,
				  "join token %s refused: expired at %s",
				  tok.id, when);
		goto out;
	}
	if (tok.used >= tok.uses) {
		rc = cf_error_set(err, CF_ERR_TOKEN,
				  "join token %s refused: used up (%" PRId64
				  " of %" PRId64 ")", tok.id, tok.used,
				  tok.uses);
		goto out;
	}
	memset(&a, 0, sizeof(a));
	a_text(&a, tok.id);
	if ((rc = run(p, S_TOKEN_USE, &a, "consuming a token use", NULL,
		      err)) != CF_OK)
		goto out;
	if (!random_id(row->id)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				      "cannot make an enrollment id");
		goto out;
	}
	snprintf(row->tenant, sizeof(row->tenant), "%s", tok.tenant);
	snprintf(row->group, sizeof(row->group), "%s", tok.group);
	snprintf(row->status, sizeof(row->status), "pending");
	row->created = now;
	row->decided = 0;
	memset(&a, 0, sizeof(a));
	a_text(&a, row->id);
	a_text(&a, row->tenant);
	a_text(&a, row->token_id);
	a_text(&a, row->group);
	a_text(&a, row->name);
	a_text(&a, row->csr_pem);
	a_text(&a, row->hmac);
	a_text(&a, row->source);
	a_int(&a, now);
	if ((rc = run(p, S_ENROLL_INS, &a, "queueing an enrollment", NULL,
		      err)) != CF_OK)
		goto out;
	rc = audit_write(p, audit_template, row->tenant, row->id, err);
out:
	if ((rc = tx_end(p, rc, err)) != CF_OK)
		row->id[0] = '\0';
	cf_token_row_clear(&tok);
	return rc;
}

static cf_status pg_enroll_add(cf_store *st, cf_enroll_row *row,
			       const char *token_hash, int64_t now,
			       const cf_audit_entry *audit_template,
			       cf_error *err)
{
	ATTEMPT(pg(st), err, enroll_add_once(pg(st), row, token_hash, now,
					     audit_template, err));
}

static cf_status enroll_get_once(pg_store *p, const char *id,
				 cf_enroll_row *out, cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;
	int found;

	cf_enroll_row_clear(out);
	a_text(&a, id);
	rc = get_row(p, S_ENROLL_GET, &a, read_enroll, out, &found,
		     "reading an enrollment", err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "no enrollment request %s", id);
	if (rc != CF_OK)
		cf_enroll_row_clear(out);
	return rc;
}

static cf_status pg_enroll_get(cf_store *st, const char *id,
			       cf_enroll_row *out, cf_error *err)
{
	ATTEMPT(pg(st), err, enroll_get_once(pg(st), id, out, err));
}

static cf_status enroll_list_once(pg_store *p, const char *tenant,
				  const char *status, cf_enroll_row **out,
				  size_t *n, cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	a_text(&a, status);
	return collect_rows(p, S_ENROLL_LIST, &a, sizeof(**out), read_enroll,
			    clear_enroll, "listing enrollments", (void **)out,
			    n, err);
}

static cf_status pg_enroll_list(cf_store *st, const char *tenant,
				const char *status, cf_enroll_row **out,
				size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, enroll_list_once(pg(st), tenant, status, out, n,
					      err));
}

static int read_status(const PGresult *r, int row, void *elem)
{
	col_fixed(r, row, 0, elem, 16);
	return 1;
}

static cf_status enroll_decide_once(pg_store *p, const char *tenant,
				    const char *id, int approve,
				    const cf_cert_row *cert,
				    const char *chain_pem, const char *reason,
				    const char *decided_by, int64_t now,
				    const cf_audit_entry *audit, cf_error *err)
{
	qargs a = { 0 };
	PGresult *r = NULL;
	char status[16] = "";
	cf_status rc;
	int inserted, found;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	a_text(&a, tenant);
	a_text(&a, id);
	a_text(&a, approve ? "approved" : "rejected");
	a_text(&a, approve ? cert->pem : NULL);
	a_text(&a, approve ? (chain_pem != NULL ? chain_pem : "") : NULL);
	a_text(&a, !approve && reason != NULL ? reason : "");
	a_text(&a, decided_by);
	a_int(&a, now);
	if ((rc = run(p, S_ENROLL_DECIDE, &a, "deciding an enrollment", &r,
		      err)) != CF_OK)
		goto out;
	if (changes(r) == 0) {
		/* Tell a missing request from one already decided. */
		memset(&a, 0, sizeof(a));
		a_text(&a, tenant);
		a_text(&a, id);
		rc = get_row(p, S_ENROLL_STATUS, &a, read_status, status,
			     &found, "reading an enrollment", err);
		if (rc == CF_OK && found)
			rc = cf_error_set(err, CF_ERR_CONFLICT,
					  "enrollment %s is already %s", id,
					  status);
		else if (rc == CF_OK)
			rc = cf_error_set(err, CF_ERR_NOT_FOUND,
					  "no enrollment request %s in this "
					  "tenant", id);
		goto out;
	}
	if (approve && (rc = cert_insert(p, cert, &inserted, err)) != CF_OK)
		goto out;
	rc = audit_write(p, audit, tenant, id, err);
out:
	PQclear(r);
	return tx_end(p, rc, err);
}

static cf_status pg_enroll_decide(cf_store *st, const char *tenant,
				  const char *id, int approve,
				  const cf_cert_row *cert,
				  const char *chain_pem, const char *reason,
				  const char *decided_by, int64_t now,
				  const cf_audit_entry *audit, cf_error *err)
{
	ATTEMPT(pg(st), err, enroll_decide_once(pg(st), tenant, id, approve,
						cert, chain_pem, reason,
						decided_by, now, audit, err));
}

/* ---- secrets and envelopes ------------------------------------------- */

static int read_version(const PGresult *r, int row, void *elem)
{
	cf_secret_row *v = elem;

	col_fixed(r, row, 0, v->name, sizeof(v->name));
	v->version = col_int(r, row, 1);
	v->created = col_int(r, row, 2);
	col_fixed(r, row, 3, v->writer, sizeof(v->writer));
	v->recipients = col_int(r, row, 4);
	v->bytes = col_int(r, row, 5);
	v->deleted = (int)col_int(r, row, 6);
	return 1;
}

/* The latest version row of name; *found 0 if it never had one. */
static cf_status version_latest(pg_store *p, const char *tenant,
				const char *name, cf_secret_row *out,
				int *found, cf_error *err)
{
	qargs a = { 0 };

	memset(out, 0, sizeof(*out));
	a_text(&a, tenant);
	a_text(&a, name);
	return get_row(p, S_VERSION_LATEST, &a, read_version, out, found,
		       "reading a secret's versions", err);
}

static cf_status version_conflict(const char *name, int64_t latest,
				  cf_error *err)
{
	return cf_error_set(err, CF_ERR_CONFLICT,
			    "secret %s is at version %" PRId64
			    "; upload version %" PRId64, name, latest,
			    latest + 1);
}

/* CF_OK if version is above every version name has had. */
static cf_status version_is_new(pg_store *p, const char *tenant,
				const char *name, int64_t version,
				cf_error *err)
{
	cf_secret_row latest;
	cf_status rc;
	int found;

	rc = version_latest(p, tenant, name, &latest, &found, err);
	if (rc == CF_OK && found && version <= latest.version)
		rc = version_conflict(name, latest.version, err);
	return rc;
}

static cf_status version_insert(pg_store *p, const char *tenant,
				const char *name, int64_t version,
				int64_t now, const char *writer,
				int64_t recipients, int64_t bytes,
				int deleted, cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;

	a_text(&a, tenant);
	a_text(&a, name);
	a_int(&a, version);
	a_int(&a, now);
	a_text(&a, writer);
	a_int(&a, recipients);
	a_int(&a, bytes);
	a_int(&a, deleted);
	rc = run(p, S_VERSION_INS, &a, "recording a secret version", NULL,
		 err);
	if (rc != CF_OK && state_is(p, "23503"))
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "secret %s: no tenant %s", name, tenant);
	else if (rc != CF_OK && state_is(p, "23505"))
		rc = version_conflict(name, version - 1, err);
	return rc;
}

/*
 * The next n numbers of sequence stmt (S_FEED_RESERVE,
 * S_CMD_MAIL_RESERVE): *first .. *first + n - 1.  Only under the lock
 * that guards that sequence.
 */
static cf_status seq_reserve(pg_store *p, enum stmt_id stmt, int64_t n,
			     int64_t *first, cf_error *err)
{
	qargs a = { 0 };
	int64_t last = 0;
	cf_status rc;
	int found;

	a_int(&a, n);
	rc = get_row(p, stmt, &a, read_int64, &last, &found,
		     "numbering entries", err);
	*first = last - n + 1;
	return rc;
}

/* Gives recipients (a text array) feed entries first, first + 1, ... */
static cf_status feed_upsert(pg_store *p, const char *tenant,
			     const char *name, int64_t version, int deleted,
			     const char *writer, int64_t now, int64_t first,
			     const pg_array *rcpt, cf_error *err)
{
	qargs a = { 0 };

	a_int(&a, first);
	a_text(&a, tenant);
	a_text(&a, name);
	a_int(&a, version);
	a_int(&a, deleted);
	a_text(&a, writer);
	a_int(&a, now);
	a_bin(&a, rcpt->buf, rcpt->len);
	return run(p, S_FEED_UPSERT, &a, "updating the feed", NULL, err);
}

/* How many envelopes from off on go in one statement (at least one). */
static size_t chunk_of(const cf_envelope_in *envs, size_t n, size_t off)
{
	size_t m = 0, bytes = 0;

	while (off + m < n && m < CHUNK_ROWS &&
	       (m == 0 || envs[off + m].len <= CHUNK_BYTES - bytes)) {
		bytes += envs[off + m].len;
		m++;
	}
	return m;
}

/* The recipients and envelopes of envs[off .. off + m) as two arrays. */
static int env_arrays(const cf_envelope_in *envs, size_t off, size_t m,
		      pg_array *rcpt, pg_array *der)
{
	if (!arr_begin(rcpt, OID_TEXT) || !arr_begin(der, OID_BYTEA))
		return 0;
	for (size_t i = off; i < off + m; i++)
		if (!arr_add(rcpt, envs[i].recipient,
			     strlen(envs[i].recipient)) ||
		    !arr_add(der, envs[i].der, envs[i].len))
			return 0;
	return 1;
}

static cf_status secret_put_once(pg_store *p, const char *tenant,
				 const char *name, int64_t version,
				 const char *writer, int64_t now,
				 const cf_envelope_in *envs, size_t n,
				 const cf_audit_entry *audit, int64_t *seq_out,
				 cf_error *err)
{
	pg_array rcpt = { 0 }, der = { 0 };
	int64_t bytes = 0, first = 0;
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	if ((rc = lock(p, S_LOCK_FEED, NULL, err)) != CF_OK ||
	    (rc = version_is_new(p, tenant, name, version, err)) != CF_OK)
		goto out;
	for (size_t i = 0; i < n; i++)
		bytes += (int64_t)envs[i].len;
	if ((rc = version_insert(p, tenant, name, version, now, writer,
				 (int64_t)n, bytes, 0, err)) != CF_OK ||
	    (rc = seq_reserve(p, S_FEED_RESERVE, (int64_t)n, &first, err)) !=
		    CF_OK)
		goto out;
	for (size_t off = 0, m; off < n; off += m) {
		qargs a = { 0 };
		PGresult *r = NULL;

		m = chunk_of(envs, n, off);
		if (!env_arrays(envs, off, m, &rcpt, &der)) {
			rc = nomem(p, "storing envelopes", err);
			goto out;
		}
		if ((rc = feed_upsert(p, tenant, name, version, 0, writer, now,
				      first + (int64_t)off, &rcpt, err)) !=
		    CF_OK)
			goto out;
		a_text(&a, tenant);
		a_text(&a, name);
		a_int(&a, version);
		a_int(&a, first + (int64_t)off);
		a_bin(&a, rcpt.buf, rcpt.len);
		a_bin(&a, der.buf, der.len);
		rc = run(p, S_ENVELOPE_INS, &a, "storing envelopes", &r, err);
		if (rc != CF_OK && state_is(p, "23505"))
			rc = cf_error_set(err, CF_ERR_USAGE,
					  "secret %s: a recipient has two "
					  "envelopes in one version", name);
		else if (rc == CF_OK && changes(r) != (int64_t)m)
			rc = cf_error_set(err, CF_ERR_STORE,
					  "PostgreSQL %s: %zu envelopes sent "
					  "but %" PRId64 " stored", p->label,
					  m, changes(r));
		PQclear(r);
		if (rc != CF_OK)
			goto out;
	}
	rc = audit_write(p, audit, tenant, name, err);
out:
	arr_free(&rcpt);
	arr_free(&der);
	if ((rc = tx_end(p, rc, err)) == CF_OK && seq_out != NULL)
		*seq_out = first + (int64_t)n - 1;
	return rc;
}

static cf_status pg_secret_put(cf_store *st, const char *tenant,
			       const char *name, int64_t version,
			       const char *writer, int64_t now,
			       const cf_envelope_in *envs, size_t n,
			       const cf_audit_entry *audit, int64_t *seq_out,
			       cf_error *err)
{
	ATTEMPT(pg(st), err, secret_put_once(pg(st), tenant, name, version,
					     writer, now, envs, n, audit,
					     seq_out, err));
}

static cf_status secret_delete_once(pg_store *p, const char *tenant,
				    const char *name, const char *writer,
				    int64_t now, const cf_audit_entry *audit,
				    char (**recipients_out)[65],
				    size_t *n_out, cf_error *err)
{
	cf_secret_row latest;
	char (*rcpt)[65] = NULL;
	pg_array arr = { 0 };
	qargs a = { 0 };
	size_t cnt = 0;
	int64_t first = 0;
	cf_status rc;
	int found;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	if ((rc = lock(p, S_LOCK_FEED, NULL, err)) != CF_OK ||
	    (rc = version_latest(p, tenant, name, &latest, &found, err)) !=
		    CF_OK)
		goto out;
	if (!found || latest.deleted) {
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  found ? "secret %s is already deleted" :
					  "no secret %s", name);
		goto out;
	}
	/* Everyone whose feed still shows the name, so that a recipient
	 * dropped from the latest version hears of the deletion too. */
	a_text(&a, tenant);
	a_text(&a, name);
	if ((rc = collect_rows(p, S_FEED_NAME_RECIPIENTS, &a, sizeof(*rcpt),
			       read_fp, NULL, "deleting a secret",
			       (void **)&rcpt, &cnt, err)) != CF_OK ||
	    (rc = run(p, S_ENVELOPE_DEL_NAME, &a, "deleting envelopes", NULL,
		      err)) != CF_OK ||
	    (rc = version_insert(p, tenant, name, latest.version + 1, now,
				 writer, 0, 0, 1, err)) != CF_OK)
		goto out;
	if (cnt > 0 && (rc = seq_reserve(p, S_FEED_RESERVE, (int64_t)cnt,
					 &first, err)) != CF_OK)
		goto out;
	for (size_t off = 0, m; off < cnt; off += m) {
		m = cnt - off < CHUNK_ROWS ? cnt - off : CHUNK_ROWS;
		if (!arr_begin(&arr, OID_TEXT)) {
			rc = nomem(p, "deleting a secret", err);
			goto out;
		}
		for (size_t i = off; i < off + m; i++)
			if (!arr_add(&arr, rcpt[i], strlen(rcpt[i]))) {
				rc = nomem(p, "deleting a secret", err);
				goto out;
			}
		if ((rc = feed_upsert(p, tenant, name, latest.version + 1, 1,
				      writer, now, first + (int64_t)off, &arr,
				      err)) != CF_OK)
			goto out;
	}
	rc = audit_write(p, audit, tenant, name, err);
out:
	arr_free(&arr);
	if ((rc = tx_end(p, rc, err)) != CF_OK) {
		free(rcpt);
		return rc;
	}
	if (recipients_out != NULL)
		*recipients_out = rcpt;
	else
		free(rcpt);
	if (n_out != NULL)
		*n_out = cnt;
	return CF_OK;
}

static cf_status pg_secret_delete(cf_store *st, const char *tenant,
				  const char *name, const char *writer,
				  int64_t now, const cf_audit_entry *audit,
				  char (**recipients_out)[65], size_t *n_out,
				  cf_error *err)
{
	ATTEMPT(pg(st), err, secret_delete_once(pg(st), tenant, name, writer,
						now, audit, recipients_out,
						n_out, err));
}

static cf_status secret_latest_once(pg_store *p, const char *tenant,
				    const char *name, cf_secret_row *out,
				    cf_error *err)
{
	cf_status rc;
	int found;

	rc = version_latest(p, tenant, name, out, &found, err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "no secret %s", name);
	return rc;
}

static cf_status pg_secret_latest(cf_store *st, const char *tenant,
				  const char *name, cf_secret_row *out,
				  cf_error *err)
{
	ATTEMPT(pg(st), err, secret_latest_once(pg(st), tenant, name, out,
						err));
}

static cf_status versions_of(pg_store *p, enum stmt_id id, const char *tenant,
			     const char *name, cf_secret_row **out, size_t *n,
			     cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;

	a_text(&a, tenant);
	a_text(&a, name);
	rc = collect_rows(p, id, &a, sizeof(**out), read_version, NULL,
			  "listing secrets", (void **)out, n, err);
	if (rc == CF_OK && id == S_VERSION_HISTORY && *n == 0)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "no secret %s", name);
	return rc;
}

static cf_status pg_secret_list(cf_store *st, const char *tenant,
				const char *prefix, cf_secret_row **out,
				size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, versions_of(pg(st), S_SECRET_LIST, tenant, prefix,
					 out, n, err));
}

static cf_status pg_secret_history(cf_store *st, const char *tenant,
				   const char *name, cf_secret_row **out,
				   size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, versions_of(pg(st), S_VERSION_HISTORY, tenant,
					 name, out, n, err));
}

/* ---- sync ------------------------------------------------------------------- */

static cf_status live_version(pg_store *p, const char *tenant,
			      const char *name, cf_secret_row *out,
			      cf_error *err)
{
	int found = 0;
	cf_status rc = version_latest(p, tenant, name, out, &found, err);

	if (rc == CF_OK && (!found || out->deleted))
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "there is no secret %s%s",
				  name, found ? " (it is deleted)" : "");
	return rc;
}

static cf_status version_add_once(pg_store *p, const char *tenant,
				  const char *name, int64_t version,
				  int64_t now, const cf_envelope_in *envs,
				  size_t n, const cf_audit_entry *audit,
				  int64_t *added, char (**recipients_out)[65],
				  size_t *n_out, cf_error *err)
{
	cf_secret_row latest;
	char (*rcpts)[65] = NULL;
	pg_array rcpt = { 0 }, der = { 0 };
	cf_audit_entry e = *audit;
	int64_t bytes = 0, seq = 0, count = 0;
	int found;
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	/* The feed lock: one writer of feed numbers at a time, on every node,
	 * so the check below and the insert cannot interleave with another. */
	if ((rc = lock(p, S_LOCK_FEED, NULL, err)) != CF_OK ||
	    (rc = live_version(p, tenant, name, &latest, err)) != CF_OK)
		goto out;
	if (latest.version != version) {
		rc = cf_error_set(err, CF_ERR_CONFLICT, "secret %s is at version "
				  "%lld now, not %lld; sync again",
				  name, (long long)latest.version,
				  (long long)version);
		goto out;
	}
	if ((rcpts = calloc(n, sizeof(*rcpts))) == NULL) {
		rc = nomem(p, "adding envelopes", err);
		goto out;
	}
	for (size_t i = 0; i < n && rc == CF_OK; i++) {
		qargs a = { 0 };
		int64_t one = 0;

		a_text(&a, tenant);
		a_text(&a, name);
		a_text(&a, envs[i].recipient);
		a_int(&a, version);
		found = 0;
		rc = get_row(p, S_ENVELOPE_HAS, &a, read_int64, &one, &found,
			     "adding envelopes", err);
		if (rc != CF_OK || found)
			continue;       /* somebody gave it one already */
		arr_free(&rcpt);
		arr_free(&der);
		if (!env_arrays(envs, i, 1, &rcpt, &der)) {
			rc = nomem(p, "adding envelopes", err);
			break;
		}
		if ((rc = seq_reserve(p, S_FEED_RESERVE, 1, &seq, err)) !=
			    CF_OK ||
		    (rc = feed_upsert(p, tenant, name, version, 0, latest.writer,
				      now, seq, &rcpt, err)) != CF_OK)
			break;
		memset(&a, 0, sizeof(a));
		a_text(&a, tenant);
		a_text(&a, name);
		a_int(&a, version);
		a_int(&a, seq);
		a_bin(&a, rcpt.buf, rcpt.len);
		a_bin(&a, der.buf, der.len);
		if ((rc = run(p, S_ENVELOPE_INS, &a, "storing an envelope", NULL,
			      err)) != CF_OK)
			break;
		memcpy(rcpts[count++], envs[i].recipient, 65);
		bytes += (int64_t)envs[i].len;
	}
	if (rc == CF_OK && count > 0) {
		qargs a = { 0 };

		a_text(&a, tenant);
		a_text(&a, name);
		a_int(&a, version);
		a_int(&a, count);
		a_int(&a, bytes);
		rc = run(p, S_VERSION_GROW, &a, "counting a version's recipients",
			 NULL, err);
		if (rc == CF_OK) {
			e.bytes = bytes;
			rc = audit_write(p, &e, tenant, name, err);
		}
	}
out:
	arr_free(&rcpt);
	arr_free(&der);
	rc = tx_end(p, rc, err);
	if (rc != CF_OK) {
		free(rcpts);
		return rc;
	}
	*added = count;
	*recipients_out = rcpts;
	*n_out = (size_t)count;
	return CF_OK;
}

static cf_status pg_version_add(cf_store *st, const char *tenant,
				const char *name, int64_t version,
				int64_t now, const cf_envelope_in *envs,
				size_t n, const cf_audit_entry *audit,
				int64_t *added, char (**recipients_out)[65],
				size_t *n_out, cf_error *err)
{
	ATTEMPT(pg(st), err, version_add_once(pg(st), tenant, name, version,
					      now, envs, n, audit, added,
					      recipients_out, n_out, err));
}

/* ---- removal ---------------------------------------------------------------- */

static int read_recipient(const PGresult *r, int row, void *elem)
{
	cf_recipient_row *rr = elem;

	col_fixed(r, row, 0, rr->fp, sizeof(rr->fp));
	col_fixed(r, row, 1, rr->kind, sizeof(rr->kind));
	col_fixed(r, row, 2, rr->name, sizeof(rr->name));
	return 1;
}

static cf_status secret_recipients_once(pg_store *p, const char *tenant,
					const char *name, int64_t version,
					int64_t *version_out,
					cf_recipient_row **out, size_t *n,
					cf_error *err)
{
	cf_secret_row latest;
	qargs a = { 0 };
	int found = 0;
	cf_status rc;

	if (version == 0) {
		rc = version_latest(p, tenant, name, &latest, &found, err);
		if (rc != CF_OK)
			return rc;
		if (!found)
			return cf_error_set(err, CF_ERR_NOT_FOUND,
					    "there is no secret %s", name);
		if (latest.deleted)
			return cf_error_set(err, CF_ERR_NOT_FOUND,
					    "secret %s is deleted", name);
		version = latest.version;
	}
	a_text(&a, tenant);
	a_text(&a, name);
	a_int(&a, version);
	rc = collect_rows(p, S_VERSION_RECIPIENTS, &a, sizeof(cf_recipient_row),
			  read_recipient, NULL, "reading a version's recipients",
			  (void **)out, n, err);
	if (rc == CF_OK && *n == 0)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "secret %s has no version %lld", name,
				  (long long)version);
	if (rc == CF_OK)
		*version_out = version;
	return rc;
}

static cf_status pg_secret_recipients(cf_store *st, const char *tenant,
				      const char *name, int64_t version,
				      int64_t *version_out,
				      cf_recipient_row **out, size_t *n,
				      cf_error *err)
{
	ATTEMPT(pg(st), err, secret_recipients_once(pg(st), tenant, name,
						    version, version_out, out,
						    n, err));
}

static int read_name256(const PGresult *r, int row, void *elem)
{
	col_fixed(r, row, 0, elem, 256);
	return 1;
}

static cf_status recipient_names_once(pg_store *p, const char *tenant,
				      const char *recipient, char (**out)[256],
				      size_t *n, cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	a_text(&a, recipient);
	return collect_rows(p, S_RECIPIENT_NAMES, &a, 256, read_name256, NULL,
			    "listing a recipient's secrets", (void **)out, n,
			    err);
}

static cf_status pg_recipient_names(cf_store *st, const char *tenant,
				    const char *recipient, char (**out)[256],
				    size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, recipient_names_once(pg(st), tenant, recipient,
						  out, n, err));
}

/* Columns 0 and 1 as two int64_t. */
static int read_two_ints(const PGresult *r, int row, void *elem)
{
	int64_t *v = elem;

	v[0] = col_int(r, row, 0);
	v[1] = col_int(r, row, 1);
	return 1;
}

static cf_status envelopes_purge_once(pg_store *p, const char *tenant,
				      const char *recipient,
				      const char (*names)[256], size_t n,
				      const cf_audit_entry *audit,
				      int64_t *removed, cf_error *err)
{
	cf_audit_entry e = *audit;
	int64_t count = 0, bytes = 0, got[2];
	int found = 0;
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	for (size_t i = 0; i < n && rc == CF_OK; i++) {
		qargs a = { 0 };

		a_text(&a, tenant);
		a_text(&a, recipient);
		a_text(&a, names[i]);
		got[0] = got[1] = 0;
		/* What is deleted is remembered (coffer status, "exposed"). */
		rc = run(p, S_PURGED_INS, &a, "remembering deleted envelopes",
			 NULL, err);
		if (rc == CF_OK)
			rc = get_row(p, S_ENVELOPE_PURGE, &a, read_two_ints, got,
				     &found, "deleting envelopes", err);
		if (rc == CF_OK)
			rc = run(p, S_FEED_DEL_ONE, &a, "deleting feed entries",
				 NULL, err);
		count += got[0];
		bytes += got[1];
	}
	if (rc == CF_OK) {
		e.bytes = bytes;
		rc = audit_write_head(p, &e, tenant, recipient, OBJECT_FORCE,
				      NULL, err);
	}
	rc = tx_end(p, rc, err);
	if (rc == CF_OK && removed != NULL)
		*removed = count;
	return rc;
}

static cf_status pg_envelopes_purge(cf_store *st, const char *tenant,
				    const char *recipient,
				    const char (*names)[256], size_t n,
				    const cf_audit_entry *audit,
				    int64_t *removed, cf_error *err)
{
	ATTEMPT(pg(st), err, envelopes_purge_once(pg(st), tenant, recipient,
						  names, n, audit, removed,
						  err));
}

/* An envelope row of S_ENVELOPE_GET; the name is the caller's. */
static int read_envelope(const PGresult *r, int row, void *elem)
{
	cf_feed_item *it = elem;

	it->seq = col_int(r, row, 0);
	it->version = col_int(r, row, 1);
	col_fixed(r, row, 2, it->writer, sizeof(it->writer));
	it->created = col_int(r, row, 3);
	return col_blob(r, row, 4, &it->der, &it->len);
}

static cf_status envelope_get_once(pg_store *p, const char *tenant,
				   const char *name, int64_t version,
				   const char *recipient, cf_feed_item *out,
				   cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;
	int found;

	cf_feed_item_clear(out);
	a_text(&a, tenant);
	a_text(&a, name);
	a_text(&a, recipient);
	a_int(&a, version);
	rc = get_row(p, S_ENVELOPE_GET, &a, read_envelope, out, &found,
		     "reading an envelope", err);
	if (rc == CF_OK && found) {
		snprintf(out->name, sizeof(out->name), "%s", name);
	} else if (rc == CF_OK) {
		if (version > 0)
			rc = cf_error_set(err, CF_ERR_NOT_FOUND,
					  "no envelope of secret %s version "
					  "%" PRId64 " is addressed to "
					  "certificate %.16s", name, version,
					  recipient);
		else
			rc = cf_error_set(err, CF_ERR_NOT_FOUND,
					  "no envelope of the latest version "
					  "of secret %s is addressed to "
					  "certificate %.16s", name,
					  recipient);
	}
	if (rc != CF_OK)
		cf_feed_item_clear(out);
	return rc;
}

static cf_status pg_envelope_get(cf_store *st, const char *tenant,
				 const char *name, int64_t version,
				 const char *recipient, cf_feed_item *out,
				 cf_error *err)
{
	ATTEMPT(pg(st), err, envelope_get_once(pg(st), tenant, name, version,
					       recipient, out, err));
}

static cf_status feed_once(pg_store *p, const char *tenant,
			   const char *recipient, int64_t since, size_t limit,
			   size_t max_bytes, cf_feed_item **out, size_t *n,
			   int64_t *cursor_out, int *more_out, cf_error *err)
{
	cf_feed_item *arr = NULL;
	size_t cnt = 0, bytes = 0, rows;
	PGresult *r = NULL;
	qargs a = { 0 };
	cf_status rc;
	int more = 0;

	a_text(&a, tenant);
	a_text(&a, recipient);
	a_int(&a, since);
	a_int(&a, (int64_t)limit);
	a_int(&a, max_bytes > INT64_MAX ? INT64_MAX : (int64_t)max_bytes);
	if ((rc = run(p, S_FEED, &a, "reading the feed", &r, err)) != CF_OK)
		return rc;
	rows = (size_t)PQntuples(r);
	/* At most limit + 1 rows came. */
	if (rows > 0 && (arr = calloc(rows, sizeof(*arr))) == NULL)
		rc = nomem(p, "reading the feed", err);
	for (size_t i = 0; rc == CF_OK && i < rows; i++) {
		cf_feed_item *it;
		size_t len = (size_t)col_int(r, (int)i, 7);

		/* The same rule as the query's, which sent the envelopes of
		 * exactly these rows. */
		if (cnt == limit ||
		    (max_bytes > 0 && cnt > 0 &&
		     (bytes >= max_bytes || len > max_bytes - bytes))) {
			more = 1;
			break;
		}
		bytes += len;
		it = &arr[cnt++];
		it->seq = col_int(r, (int)i, 0);
		col_fixed(r, (int)i, 1, it->name, sizeof(it->name));
		it->version = col_int(r, (int)i, 2);
		it->deleted = (int)col_int(r, (int)i, 3);
		col_fixed(r, (int)i, 4, it->writer, sizeof(it->writer));
		it->created = col_int(r, (int)i, 5);
		if (!it->deleted && !col_blob(r, (int)i, 6, &it->der, &it->len))
			rc = nomem(p, "reading the feed", err);
	}
	PQclear(r);
	if (rc != CF_OK) {
		cf_feed_items_free(arr, cnt);
		return rc;
	}
	if (cnt == 0 && since > 0 && cursor_out != NULL) {
		/*
		 * Nothing after since.  A since beyond the newest position
		 * ever handed out means the database went back (restored from
		 * a backup): answer with the real head so the client notices.
		 */
		int64_t head = 0;
		int found = 0;

		rc = get_row(p, S_FEED_HEAD, NULL, read_int64, &head, &found,
			     "reading the feed", err);
		if (rc != CF_OK) {
			free(arr);
			return rc;
		}
		if (head < since)
			since = head;
	}
	if (cnt == 0) {
		free(arr);
		arr = NULL;
	}
	*out = arr;
	*n = cnt;
	if (cursor_out != NULL)
		*cursor_out = cnt > 0 ? arr[cnt - 1].seq : since;
	if (more_out != NULL)
		*more_out = more;
	return CF_OK;
}

static cf_status pg_feed(cf_store *st, const char *tenant,
			 const char *recipient, int64_t since, size_t limit,
			 size_t max_bytes, cf_feed_item **out, size_t *n,
			 int64_t *cursor_out, int *more_out, cf_error *err)
{
	ATTEMPT(pg(st), err, feed_once(pg(st), tenant, recipient, since, limit,
				       max_bytes, out, n, cursor_out, more_out,
				       err));
}

/* ---- staged uploads ------------------------------------------------------ */

static int read_upload(const PGresult *r, int row, void *elem)
{
	cf_upload_row *u = elem;

	col_fixed(r, row, 0, u->id, sizeof(u->id));
	col_fixed(r, row, 1, u->tenant, sizeof(u->tenant));
	col_fixed(r, row, 2, u->name, sizeof(u->name));
	u->version = col_int(r, row, 3);
	col_fixed(r, row, 4, u->writer, sizeof(u->writer));
	u->envelopes = col_int(r, row, 5);
	u->bytes = col_int(r, row, 6);
	u->created = col_int(r, row, 7);
	u->expires = col_int(r, row, 8);
	return 1;
}

/*
 * The open upload id of tenant, begun by writer (NULL: anyone), locked
 * for the transaction if lock: CF_ERR_NOT_FOUND if there is none or it
 * expired, CF_ERR_PERMISSION if another writer began it.
 */
static cf_status upload_load(pg_store *p, const char *tenant, const char *id,
			     const char *writer, int64_t now, int lock_it,
			     cf_upload_row *out, cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;
	int found;

	memset(out, 0, sizeof(*out));
	a_text(&a, id);
	a_text(&a, tenant);
	if ((rc = get_row(p, lock_it ? S_UPLOAD_GET_LOCK : S_UPLOAD_GET, &a,
			  read_upload, out, &found, "reading an upload",
			  err)) != CF_OK)
		return rc;
	if (!found)
		return cf_error_set(err, CF_ERR_NOT_FOUND,
				    "there is no upload %s; begin one with "
				    "POST /v1/secrets/uploads", id);
	if (out->expires <= now)
		return cf_error_set(err, CF_ERR_NOT_FOUND,
				    "upload %s of %s expired (an upload lasts "
				    "%d s after its last chunk); begin a new one",
				    id, out->name, CF_STORE_UPLOAD_TTL);
	if (writer != NULL && strcmp(writer, out->writer) != 0)
		return cf_error_set(err, CF_ERR_PERMISSION,
				    "upload %s of %s was begun by another "
				    "certificate (%.16s...); only it may add to, "
				    "commit or abort it", id, out->name,
				    out->writer);
	return CF_OK;
}

static cf_status upload_drop(pg_store *p, const char *id, cf_error *err)
{
	qargs a = { 0 };
	cf_status rc;

	a_text(&a, id);
	rc = run(p, S_UPLOAD_ENV_DEL, &a, "dropping an upload", NULL, err);
	if (rc == CF_OK)
		rc = run(p, S_UPLOAD_DEL, &a, "dropping an upload", NULL, err);
	return rc;
}

static cf_status upload_begin_once(pg_store *p, const char *tenant,
				   const char *name, int64_t version,
				   const char *writer, int64_t now,
				   cf_upload_row *out, cf_error *err)
{
	qargs a = { 0 };
	int64_t open_n = 0;
	cf_status rc;
	int found;

	memset(out, 0, sizeof(*out));
	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	/* The count and the insert below, atomic per tenant. */
	if ((rc = lock(p, S_LOCK_UPLOADS, tenant, err)) != CF_OK)
		goto out;
	/* Expired uploads of every tenant go first: they hold disk only. */
	a_int(&a, now);
	if ((rc = run(p, S_UPLOAD_PURGE_ENV, &a, "purging expired uploads",
		      NULL, err)) != CF_OK ||
	    (rc = run(p, S_UPLOAD_PURGE, &a, "purging expired uploads", NULL,
		      err)) != CF_OK ||
	    (rc = version_is_new(p, tenant, name, version, err)) != CF_OK)
		goto out;
	memset(&a, 0, sizeof(a));
	a_text(&a, tenant);
	a_int(&a, now);
	if ((rc = get_row(p, S_UPLOAD_COUNT, &a, read_int64, &open_n, &found,
			  "counting uploads", err)) != CF_OK)
		goto out;
	if (open_n >= CF_STORE_UPLOADS_MAX) {
		rc = cf_error_set(err, CF_ERR_LIMIT,
				  "the organisation has %" PRId64 " open "
				  "uploads, the most it may have; commit or "
				  "abort one, or wait for one to expire",
				  open_n);
		goto out;
	}
	if (!random_id(out->id)) {
		rc = cf_error_set(err, CF_ERR_CRYPTO,
				  "no random bytes for an upload id");
		goto out;
	}
	snprintf(out->tenant, sizeof(out->tenant), "%s", tenant);
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->writer, sizeof(out->writer), "%s", writer);
	out->version = version;
	out->created = now;
	out->expires = now + CF_STORE_UPLOAD_TTL;
	memset(&a, 0, sizeof(a));
	a_text(&a, out->id);
	a_text(&a, tenant);
	a_text(&a, name);
	a_int(&a, version);
	a_text(&a, writer);
	a_int(&a, out->created);
	a_int(&a, out->expires);
	rc = run(p, S_UPLOAD_INS, &a, "beginning an upload", NULL, err);
	if (rc != CF_OK && state_is(p, "23503"))
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "secret %s: no tenant %s", name, tenant);
out:
	if ((rc = tx_end(p, rc, err)) != CF_OK)
		memset(out, 0, sizeof(*out));
	return rc;
}

static cf_status pg_upload_begin(cf_store *st, const char *tenant,
				 const char *name, int64_t version,
				 const char *writer, int64_t now,
				 cf_upload_row *out, cf_error *err)
{
	ATTEMPT(pg(st), err, upload_begin_once(pg(st), tenant, name, version,
					       writer, now, out, err));
}

static cf_status pg_upload_get(cf_store *st, const char *tenant,
			       const char *id, int64_t now, cf_upload_row *out,
			       cf_error *err)
{
	ATTEMPT(pg(st), err, upload_load(pg(st), tenant, id, NULL, now, 0, out,
					 err));
}

static cf_status upload_add_once(pg_store *p, const char *tenant,
				 const char *id, const char *writer,
				 int64_t now, const cf_envelope_in *envs,
				 size_t n, cf_upload_row *out, cf_error *err)
{
	pg_array rcpt = { 0 }, der = { 0 };
	int64_t bytes = 0;
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	/* Locked: chunks of one upload are added one after the other. */
	if ((rc = upload_load(p, tenant, id, writer, now, 1, out, err)) !=
	    CF_OK)
		goto out;
	if ((int64_t)n > CF_STORE_ENVELOPES_MAX - out->envelopes) {
		rc = cf_error_set(err, CF_ERR_TOO_LARGE,
				  "upload %s holds %" PRId64 " envelopes; %zu "
				  "more would be above the %d of one version",
				  id, out->envelopes, n, CF_STORE_ENVELOPES_MAX);
		goto out;
	}
	for (size_t off = 0, m; off < n; off += m) {
		qargs a = { 0 };
		char dup[65] = "";
		int found = 0;

		m = chunk_of(envs, n, off);
		if (!env_arrays(envs, off, m, &rcpt, &der)) {
			rc = nomem(p, "staging envelopes", err);
			goto out;
		}
		a_text(&a, id);
		a_bin(&a, rcpt.buf, rcpt.len);
		if ((rc = get_row(p, S_UPLOAD_DUP, &a, read_fp, dup, &found,
				  "staging envelopes", err)) != CF_OK)
			goto out;
		if (found) {
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "recipient %s has an envelope in "
					  "upload %s already; send one per "
					  "recipient", dup, id);
			goto out;
		}
		a_bin(&a, der.buf, der.len);
		rc = run(p, S_UPLOAD_ENV_INS, &a, "staging envelopes", NULL,
			 err);
		if (rc != CF_OK && state_is(p, "23505"))
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "a recipient has an envelope in "
					  "upload %s already; send one per "
					  "recipient", id);
		if (rc != CF_OK)
			goto out;
		for (size_t i = off; i < off + m; i++)
			bytes += (int64_t)envs[i].len;
	}
	{
		qargs a = { 0 };

		a_text(&a, id);
		a_int(&a, (int64_t)n);
		a_int(&a, bytes);
		a_int(&a, now + CF_STORE_UPLOAD_TTL);
		rc = run(p, S_UPLOAD_GROW, &a, "staging envelopes", NULL, err);
	}
out:
	arr_free(&rcpt);
	arr_free(&der);
	if ((rc = tx_end(p, rc, err)) != CF_OK)
		return rc;
	out->envelopes += (int64_t)n;
	out->bytes += bytes;
	out->expires = now + CF_STORE_UPLOAD_TTL;
	return CF_OK;
}

static cf_status pg_upload_add(cf_store *st, const char *tenant,
			       const char *id, const char *writer, int64_t now,
			       const cf_envelope_in *envs, size_t n,
			       cf_upload_row *out, cf_error *err)
{
	ATTEMPT(pg(st), err, upload_add_once(pg(st), tenant, id, writer, now,
					     envs, n, out, err));
}

static cf_status upload_commit_once(pg_store *p, const char *tenant,
				    const char *id, const char *writer,
				    int64_t now, const cf_audit_entry *audit,
				    cf_upload_row *out,
				    char (**recipients_out)[65],
				    size_t *n_out, cf_error *err)
{
	cf_upload_row up;
	cf_secret_row latest;
	cf_audit_entry entry;
	char (*rcpt)[65] = NULL;
	PGresult *r = NULL;
	qargs a = { 0 };
	size_t cnt = 0;
	int64_t first = 0;
	cf_status rc;
	int found;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	if ((rc = lock(p, S_LOCK_FEED, NULL, err)) != CF_OK ||
	    (rc = upload_load(p, tenant, id, writer, now, 1, &up, err)) !=
		    CF_OK)
		goto out;
	if (up.envelopes == 0) {
		rc = cf_error_set(err, CF_ERR_USAGE,
				  "upload %s of %s holds no envelopes; add "
				  "them before committing", id, up.name);
		goto out;
	}
	if ((rc = version_latest(p, tenant, up.name, &latest, &found, err)) !=
	    CF_OK)
		goto out;
	if (found && up.version <= latest.version) {
		/* Dropped in its own commit: the writer starts again. */
		if ((rc = upload_drop(p, id, err)) != CF_OK ||
		    (rc = tx_commit(p, err)) != CF_OK)
			goto out;
		rc = version_conflict(up.name, latest.version, err);
		goto out;
	}
	a_text(&a, id);
	if ((rc = collect_rows(p, S_UPLOAD_RECIPIENTS, &a, sizeof(*rcpt),
			       read_fp, NULL, "committing an upload",
			       (void **)&rcpt, &cnt, err)) != CF_OK ||
	    (rc = version_insert(p, tenant, up.name, up.version, now, writer,
				 up.envelopes, up.bytes, 0, err)) != CF_OK ||
	    (rc = seq_reserve(p, S_FEED_RESERVE, up.envelopes, &first, err)) !=
		    CF_OK)
		goto out;
	memset(&a, 0, sizeof(a));
	a_int(&a, first);
	a_text(&a, tenant);
	a_text(&a, up.name);
	a_int(&a, up.version);
	a_text(&a, writer);
	a_int(&a, now);
	a_text(&a, id);
	if ((rc = run(p, S_UPLOAD_FEED_UPSERT, &a, "updating the feed", NULL,
		      err)) != CF_OK)
		goto out;
	memset(&a, 0, sizeof(a));
	a_text(&a, tenant);
	a_text(&a, up.name);
	a_int(&a, up.version);
	a_text(&a, id);
	if ((rc = run(p, S_UPLOAD_ENV_MOVE, &a, "storing envelopes", &r,
		      err)) != CF_OK)
		goto out;
	/* Every staged envelope found its feed row, or nothing is stored. */
	if (changes(r) != up.envelopes) {
		rc = cf_error_set(err, CF_ERR_STORE,
				  "PostgreSQL %s: upload %s: %" PRId64 " staged "
				  "envelopes but %" PRId64 " moved", p->label,
				  id, up.envelopes, changes(r));
		goto out;
	}
	entry = *audit;
	entry.bytes = up.bytes;
	if ((rc = upload_drop(p, id, err)) != CF_OK ||
	    (rc = audit_write(p, &entry, tenant, up.name, err)) != CF_OK)
		goto out;
	rc = tx_commit(p, err);
out:
	PQclear(r);
	if (rc != CF_OK) {
		tx_rollback(p); /* nothing after a commit */
		free(rcpt);
		return rc;
	}
	if (out != NULL)
		*out = up;
	if (recipients_out != NULL)
		*recipients_out = rcpt;
	else
		free(rcpt);
	if (n_out != NULL)
		*n_out = cnt;
	return CF_OK;
}

static cf_status pg_upload_commit(cf_store *st, const char *tenant,
				  const char *id, const char *writer,
				  int64_t now, const cf_audit_entry *audit,
				  cf_upload_row *out,
				  char (**recipients_out)[65], size_t *n_out,
				  cf_error *err)
{
	ATTEMPT(pg(st), err, upload_commit_once(pg(st), tenant, id, writer,
						now, audit, out,
						recipients_out, n_out, err));
}

static cf_status upload_abort_once(pg_store *p, const char *tenant,
				   const char *id, const char *writer,
				   int64_t now, cf_error *err)
{
	cf_upload_row up;
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	if ((rc = upload_load(p, tenant, id, writer, now, 1, &up, err)) ==
	    CF_OK)
		rc = upload_drop(p, id, err);
	return tx_end(p, rc, err);
}

static cf_status pg_upload_abort(cf_store *st, const char *tenant,
				 const char *id, const char *writer,
				 int64_t now, cf_error *err)
{
	ATTEMPT(pg(st), err, upload_abort_once(pg(st), tenant, id, writer, now,
					       err));
}

/* ---- operator commands --------------------------------------------------- */

static int read_cmd(const PGresult *r, int row, void *elem)
{
	cf_cmd_row *c = elem;

	col_fixed(r, row, 0, c->id, sizeof(c->id));
	col_fixed(r, row, 1, c->sender, sizeof(c->sender));
	c->created = col_int(r, row, 2);
	c->expires = col_int(r, row, 3);
	c->recipients = col_int(r, row, 4);
	c->answered = col_int(r, row, 5);
	c->bytes = col_int(r, row, 6);
	return 1;
}

/* seq, id, peer, name, expires, answered, der */
static int read_cmd_item(const PGresult *r, int row, void *elem)
{
	cf_cmd_item *it = elem;

	it->seq = col_int(r, row, 0);
	col_fixed(r, row, 1, it->id, sizeof(it->id));
	col_fixed(r, row, 2, it->peer, sizeof(it->peer));
	col_fixed(r, row, 3, it->name, sizeof(it->name));
	it->expires = col_int(r, row, 4);
	it->answered = col_int(r, row, 5);
	return col_blob(r, row, 6, &it->der, &it->len);
}

static void clear_cmd_item(void *elem)
{
	cf_cmd_item *it = elem;

	free(it->der);
	it->der = NULL;
}

/* The first recipient of a S_CMD_ROOM answer and its pending count. */
typedef struct room_row {
	char recipient[65];
	int64_t pending;
} room_row;

static int read_room(const PGresult *r, int row, void *elem)
{
	room_row *rr = elem;

	col_fixed(r, row, 0, rr->recipient, sizeof(rr->recipient));
	rr->pending = col_int(r, row, 1);
	return 1;
}

static cf_status cmd_post_once(pg_store *p, const char *tenant,
			       const char *id, const char *sender, int64_t now,
			       int64_t expires, int create,
			       const cf_envelope_in *envs, size_t n,
			       const cf_audit_entry *audit, cf_error *err)
{
	pg_array rcpt = { 0 }, der = { 0 };
	cf_cmd_row cmd;
	qargs a = { 0 };
	int64_t bytes = 0, first = 0;
	cf_status rc;
	int found = 0;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	/* Mailbox numbers in commit order, and the pending limit checked
	 * and filled atomically. */
	if ((rc = lock(p, S_LOCK_MAIL, NULL, err)) != CF_OK)
		goto out;
	a_text(&a, tenant);
	a_text(&a, id);
	if (create) {
		a_text(&a, sender);
		a_int(&a, now);
		a_int(&a, expires);
		rc = run(p, S_CMD_INS, &a, "storing a command", NULL, err);
		if (rc != CF_OK && (state_is(p, "23505") ||
				    state_is(p, "23503")))
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "command %s exists already; every "
					  "command needs a new id", id);
		if (rc != CF_OK)
			goto out;
	} else {
		memset(&cmd, 0, sizeof(cmd));
		if ((rc = get_row(p, S_CMD_GET, &a, read_cmd, &cmd, &found,
				  "reading a command", err)) != CF_OK)
			goto out;
		if (!found || strcmp(cmd.sender, sender) != 0) {
			rc = cf_error_set(err, CF_ERR_NOT_FOUND,
					  "you sent no command %s", id);
			goto out;
		}
		if (cmd.expires < now) {
			rc = cf_error_set(err, CF_ERR_CONFLICT,
					  "command %s expired; send a new one",
					  id);
			goto out;
		}
		expires = cmd.expires;
	}
	if ((rc = seq_reserve(p, S_CMD_MAIL_RESERVE, (int64_t)n, &first,
			      err)) != CF_OK)
		goto out;
	for (size_t off = 0, m; off < n; off += m) {
		room_row room;

		m = chunk_of(envs, n, off);
		if (!env_arrays(envs, off, m, &rcpt, &der)) {
			rc = nomem(p, "storing a command", err);
			goto out;
		}
		memset(&a, 0, sizeof(a));
		a_text(&a, tenant);
		a_text(&a, id);
		a_int(&a, now);
		a_bin(&a, rcpt.buf, rcpt.len);
		a_int(&a, CF_STORE_CMD_PENDING_MAX);
		memset(&room, 0, sizeof(room));
		if ((rc = get_row(p, S_CMD_ROOM, &a, read_room, &room, &found,
				  "counting pending commands", err)) != CF_OK)
			goto out;
		if (found && room.pending >= CF_STORE_CMD_PENDING_MAX) {
			rc = cf_error_set(err, CF_ERR_LIMIT,
					  "agent %.16s... has %lld pending "
					  "commands already (at most %d); wait "
					  "for it to answer them or for them to "
					  "expire", room.recipient,
					  (long long)room.pending,
					  CF_STORE_CMD_PENDING_MAX);
			goto out;
		}
		if (found) {
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "command %s: agent %.16s... has it "
					  "already", id, room.recipient);
			goto out;
		}
		memset(&a, 0, sizeof(a));
		a_int(&a, first + (int64_t)off);
		a_text(&a, tenant);
		a_text(&a, id);
		a_int(&a, expires);
		a_bin(&a, rcpt.buf, rcpt.len);
		a_bin(&a, der.buf, der.len);
		rc = run(p, S_CMD_MAIL_INS, &a, "storing a command envelope",
			 NULL, err);
		if (rc != CF_OK && state_is(p, "23505"))
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "command %s: an agent has it "
					  "already", id);
		if (rc != CF_OK)
			goto out;
		for (size_t i = off; i < off + m; i++)
			bytes += (int64_t)envs[i].len;
	}
	memset(&a, 0, sizeof(a));
	a_text(&a, tenant);
	a_text(&a, id);
	a_int(&a, (int64_t)n);
	a_int(&a, bytes);
	if ((rc = run(p, S_CMD_GROW, &a, "counting a command's recipients",
		      NULL, err)) != CF_OK)
		goto out;
	rc = audit_write(p, audit, tenant, id, err);
out:
	arr_free(&rcpt);
	arr_free(&der);
	return tx_end(p, rc, err);
}

static cf_status pg_cmd_post(cf_store *st, const char *tenant, const char *id,
			     const char *sender, int64_t now, int64_t expires,
			     int create, const cf_envelope_in *envs, size_t n,
			     const cf_audit_entry *audit, cf_error *err)
{
	ATTEMPT(pg(st), err, cmd_post_once(pg(st), tenant, id, sender, now,
					   expires, create, envs, n, audit,
					   err));
}

static cf_status cmd_pending_once(pg_store *p, const char *tenant,
				  const char *recipient, int64_t since,
				  int64_t now, size_t limit,
				  cf_cmd_item **out, size_t *n,
				  int64_t *cursor_out, cf_error *err)
{
	qargs a = { 0 };
	int64_t head = 0;
	int found = 0;
	cf_status rc;

	a_text(&a, tenant);
	a_text(&a, recipient);
	a_int(&a, since);
	a_int(&a, now);
	a_int(&a, (int64_t)limit);
	rc = collect_rows(p, S_CMD_PENDING, &a, sizeof(cf_cmd_item),
			  read_cmd_item, clear_cmd_item,
			  "reading pending commands", (void **)out, n, err);
	if (rc != CF_OK)
		return rc;
	if (*n > 0) {
		if (cursor_out != NULL)
			*cursor_out = (*out)[*n - 1].seq;
		return CF_OK;
	}
	if (cursor_out != NULL)
		*cursor_out = since;
	/* A cursor beyond the head: the database was restored (as feed). */
	if (since > 0 && cursor_out != NULL) {
		rc = get_row(p, S_CMD_MAIL_HEAD, NULL, read_int64, &head,
			     &found, "reading pending commands", err);
		if (rc != CF_OK)
			return rc;
		*cursor_out = head < since ? head : since;
	}
	return CF_OK;
}

static cf_status pg_cmd_pending(cf_store *st, const char *tenant,
				const char *recipient, int64_t since,
				int64_t now, size_t limit, cf_cmd_item **out,
				size_t *n, int64_t *cursor_out, cf_error *err)
{
	ATTEMPT(pg(st), err, cmd_pending_once(pg(st), tenant, recipient, since,
					      now, limit, out, n, cursor_out,
					      err));
}

/* A mailbox entry as cf_store_cmd_answer needs it. */
typedef struct mail_state {
	int answered;
	char sender[65];
} mail_state;

static int read_mail_state(const PGresult *r, int row, void *elem)
{
	mail_state *m = elem;

	m->answered = (int)col_int(r, row, 0);
	col_fixed(r, row, 1, m->sender, sizeof(m->sender));
	return 1;
}

static cf_status cmd_answer_once(pg_store *p, const char *tenant,
				 const char *id, const char *recipient,
				 int64_t now, const unsigned char *der,
				 size_t len, const cf_audit_entry *audit,
				 char sender_out[65], cf_error *err)
{
	mail_state mail;
	PGresult *r = NULL;
	qargs a = { 0 };
	int64_t next = 0;
	int found = 0;
	cf_status rc;

	memset(&mail, 0, sizeof(mail));
	sender_out[0] = '\0';
	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	/* Answers of one command are numbered one after the other. */
	a_text(&a, tenant);
	a_text(&a, id);
	if ((rc = run(p, S_CMD_LOCK, &a, "reading a command", NULL, err)) !=
	    CF_OK)
		goto out;
	a_text(&a, recipient);
	if ((rc = get_row(p, S_CMD_MAIL_GET, &a, read_mail_state, &mail,
			  &found, "reading a command", err)) != CF_OK)
		goto out;
	if (!found) {
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "command %s was not sent to you", id);
		goto out;
	}
	if (mail.answered) {
		rc = cf_error_set(err, CF_ERR_EXISTS,
				  "command %s: you answered it already", id);
		goto out;
	}
	memset(&a, 0, sizeof(a));
	a_text(&a, tenant);
	a_text(&a, id);
	if ((rc = get_row(p, S_CMD_ANSWER_NEXT, &a, read_int64, &next, &found,
			  "numbering an answer", err)) != CF_OK)
		goto out;
	a_text(&a, recipient);
	a_int(&a, next);
	a_int(&a, now);
	a_bin(&a, der, len);
	if ((rc = run(p, S_CMD_ANSWER, &a, "storing an answer", &r, err)) !=
	    CF_OK)
		goto out;
	if (changes(r) == 0) {
		rc = cf_error_set(err, CF_ERR_EXISTS,
				  "command %s: you answered it already", id);
		goto out;
	}
	rc = audit_write(p, audit, tenant, id, err);
out:
	PQclear(r);
	rc = tx_end(p, rc, err);
	if (rc == CF_OK)
		memcpy(sender_out, mail.sender, 65);
	return rc;
}

static cf_status pg_cmd_answer(cf_store *st, const char *tenant,
			       const char *id, const char *recipient,
			       int64_t now, const unsigned char *der,
			       size_t len, const cf_audit_entry *audit,
			       char sender_out[65], cf_error *err)
{
	ATTEMPT(pg(st), err, cmd_answer_once(pg(st), tenant, id, recipient, now,
					     der, len, audit, sender_out,
					     err));
}

static cf_status cmd_get_once(pg_store *p, const char *tenant, const char *id,
			      cf_cmd_row *out, cf_error *err)
{
	qargs a = { 0 };
	int found = 0;
	cf_status rc;

	memset(out, 0, sizeof(*out));
	a_text(&a, tenant);
	a_text(&a, id);
	rc = get_row(p, S_CMD_GET, &a, read_cmd, out, &found,
		     "reading a command", err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "there is no command %s",
				  id);
	return rc;
}

static cf_status pg_cmd_get(cf_store *st, const char *tenant, const char *id,
			    cf_cmd_row *out, cf_error *err)
{
	ATTEMPT(pg(st), err, cmd_get_once(pg(st), tenant, id, out, err));
}

static cf_status cmd_items(pg_store *p, enum stmt_id id, const qargs *a,
			   const char *what, cf_cmd_item **out, size_t *n,
			   cf_error *err)
{
	return collect_rows(p, id, a, sizeof(cf_cmd_item), read_cmd_item,
			    clear_cmd_item, what, (void **)out, n, err);
}

static cf_status cmd_recipients_once(pg_store *p, const char *tenant,
				     const char *id, cf_cmd_item **out,
				     size_t *n, cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	a_text(&a, id);
	return cmd_items(p, S_CMD_RECIPIENTS, &a,
			 "reading a command's recipients", out, n, err);
}

static cf_status pg_cmd_recipients(cf_store *st, const char *tenant,
				   const char *id, cf_cmd_item **out,
				   size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, cmd_recipients_once(pg(st), tenant, id, out, n,
						 err));
}

static cf_status cmd_answers_once(pg_store *p, const char *tenant,
				  const char *id, int64_t since, size_t limit,
				  cf_cmd_item **out, size_t *n, cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	a_text(&a, id);
	a_int(&a, since);
	a_int(&a, (int64_t)limit);
	return cmd_items(p, S_CMD_ANSWERS, &a, "reading a command's answers",
			 out, n, err);
}

static cf_status pg_cmd_answers(cf_store *st, const char *tenant,
				const char *id, int64_t since, size_t limit,
				cf_cmd_item **out, size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, cmd_answers_once(pg(st), tenant, id, since, limit,
					      out, n, err));
}

static cf_status cmd_list_once(pg_store *p, const char *tenant,
			       const char *sender, int64_t before,
			       size_t limit, cf_cmd_row **out, size_t *n,
			       cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	a_text(&a, sender);
	a_int(&a, before);
	a_int(&a, (int64_t)limit);
	return collect_rows(p, S_CMD_LIST, &a, sizeof(cf_cmd_row), read_cmd,
			    NULL, "listing commands", (void **)out, n, err);
}

static cf_status pg_cmd_list(cf_store *st, const char *tenant,
			     const char *sender, int64_t before, size_t limit,
			     cf_cmd_row **out, size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, cmd_list_once(pg(st), tenant, sender, before,
					   limit, out, n, err));
}

static cf_status cmd_expire_once(pg_store *p, int64_t now, int64_t retention,
				 int64_t *removed, cf_error *err)
{
	PGresult *r = NULL;
	qargs a = { 0 };
	cf_status rc;

	if (removed != NULL)
		*removed = 0;
	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	/* Every node runs it: one at a time, never crossing row locks. */
	if ((rc = lock(p, S_LOCK_EXPIRE, NULL, err)) != CF_OK)
		goto out;
	a_int(&a, now);
	if ((rc = run(p, S_CMD_DROP_ENV, &a, "dropping expired commands", NULL,
		      err)) != CF_OK)
		goto out;
	memset(&a, 0, sizeof(a));
	a_int(&a, now - retention);
	if ((rc = run(p, S_CMD_PURGE_MAIL, &a, "purging old commands", NULL,
		      err)) != CF_OK ||
	    (rc = run(p, S_CMD_PURGE, &a, "purging old commands", &r, err)) !=
		    CF_OK)
		goto out;
	if (removed != NULL)
		*removed = changes(r);
out:
	PQclear(r);
	rc = tx_end(p, rc, err);
	if (rc != CF_OK && removed != NULL)
		*removed = 0;
	return rc;
}

static cf_status pg_cmd_expire(cf_store *st, int64_t now, int64_t retention,
			       int64_t *removed, cf_error *err)
{
	ATTEMPT(pg(st), err, cmd_expire_once(pg(st), now, retention, removed,
					     err));
}

/* ---- audit ------------------------------------------------------------ */

static cf_status audit_append_once(pg_store *p, const cf_audit_entry *entries,
				   size_t n, cf_error *err)
{
	chain_head head = { 0 };
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	if (n > 1)
		rc = audit_lock_all(p, entries[0].tenant, sizeof(*entries), n,
				    err);
	for (size_t i = 0; i < n && rc == CF_OK; i++)
		rc = audit_write_head(p, &entries[i], NULL, NULL, 0, &head, err);
	return tx_end(p, rc, err);
}

static cf_status pg_audit_append(cf_store *st, const cf_audit_entry *entry,
				 cf_error *err)
{
	ATTEMPT(pg(st), err, audit_append_once(pg(st), entry, 1, err));
}

static cf_status pg_audit_append_many(cf_store *st,
				      const cf_audit_entry *entries, size_t n,
				      cf_error *err)
{
	ATTEMPT(pg(st), err, audit_append_once(pg(st), entries, n, err));
}

static int read_audit(const PGresult *r, int row, void *elem)
{
	cf_audit_entry *e = elem;

	e->seq = col_int(r, row, 0);
	e->time = col_int(r, row, 1);
	col_fixed(r, row, 2, e->tenant, sizeof(e->tenant));
	col_fixed(r, row, 3, e->actor, sizeof(e->actor));
	col_fixed(r, row, 4, e->subject, sizeof(e->subject));
	col_fixed(r, row, 5, e->source, sizeof(e->source));
	col_fixed(r, row, 6, e->action, sizeof(e->action));
	col_fixed(r, row, 7, e->object, sizeof(e->object));
	e->bytes = col_int(r, row, 8);
	col_fixed(r, row, 9, e->prev, sizeof(e->prev));
	col_fixed(r, row, 10, e->hash, sizeof(e->hash));
	return 1;
}

static cf_status audit_list_once(pg_store *p, const char *tenant,
				 const cf_audit_filter *f,
				 cf_audit_entry **out, size_t *n,
				 cf_error *err)
{
	size_t limit = f->limit == 0 ? AUDIT_LIST_DEFAULT : f->limit;
	qargs a = { 0 };

	if (limit > AUDIT_LIST_MAX)
		limit = AUDIT_LIST_MAX;
	a_text(&a, tenant);
	a_int(&a, f->after_seq);
	a_int(&a, f->since);
	a_int(&a, f->until);
	a_text(&a, f->actor);
	a_text(&a, f->action);
	a_int(&a, (int64_t)limit);
	return collect_rows(p, S_AUDIT_LIST, &a, sizeof(**out), read_audit,
			    NULL, "reading the audit log", (void **)out, n,
			    err);
}

static cf_status pg_audit_list(cf_store *st, const char *tenant,
			       const cf_audit_filter *f, cf_audit_entry **out,
			       size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, audit_list_once(pg(st), tenant, f, out, n, err));
}

/* ---- numbers for /metrics --------------------------------------------- */

static int read_stats(const PGresult *r, int row, void *elem)
{
	cf_store_stats *s = elem;

	s->tenants = col_int(r, row, 0);
	s->certs = col_int(r, row, 1);
	s->agents = col_int(r, row, 2);
	s->tokens = col_int(r, row, 3);
	s->enrollments_pending = col_int(r, row, 4);
	s->secrets = col_int(r, row, 5);
	s->envelopes = col_int(r, row, 6);
	s->envelope_bytes = col_int(r, row, 7);
	s->audit_entries = col_int(r, row, 8);
	s->feed_seq = col_int(r, row, 9);
	return 1;
}

static cf_status stats_once(pg_store *p, cf_store_stats *out, cf_error *err)
{
	int found = 0;
	cf_status rc;

	memset(out, 0, sizeof(*out));
	rc = get_row(p, S_STATS, NULL, read_stats, out, &found,
		     "counting rows", err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_STORE,
				  "PostgreSQL %s: counting rows gave nothing",
				  p->label);
	return rc;
}

static cf_status pg_stats_get(cf_store *st, cf_store_stats *out,
			      cf_error *err)
{
	ATTEMPT(pg(st), err, stats_once(pg(st), out, err));
}

cf_status cf_store_pg_explain_feed(cf_store *st, const char *tenant,
				   const char *recipient, char *buf,
				   size_t cap, cf_error *err)
{
	pg_store *p = pg(st);
	const char *values[5] = { tenant, recipient, "0", "1000", "0" };
	char sql[2048];
	size_t used = 0;
	PGresult *r;
	cf_status rc = CF_OK;

	if (st == NULL || st->ops != &pg_ops || cap == 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: not a PostgreSQL store");
	buf[0] = '\0';
	if ((rc = pg_ready(p, err)) != CF_OK)
		return rc;
	snprintf(sql, sizeof(sql), "EXPLAIN %s", stmt_sql[S_FEED]);
	r = PQexecParams(p->conn, sql, 5, NULL, values, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = db_fail(p, r, "explaining the feed query", err);
		goto out;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		int w = snprintf(buf + used, cap - used, "%s\n",
				 PQgetvalue(r, i, 0));

		if (w < 0 || (size_t)w >= cap - used) {
			rc = cf_error_set(err, CF_ERR_TOO_LARGE,
					  "store: query plan above %zu bytes",
					  cap);
			goto out;
		}
		used += (size_t)w;
	}
out:
	PQclear(r);
	return rc;
}

/* ---- copying a whole store (store_backend.h) ------------------------- */

/* Each table's copy order: keys in byte order (COLLATE "C"), and
 * enrollments by ord within a second, as pg_enroll_list lists them. */
static const char *const copy_order[CF_COPY_COUNT] = {
	"id", "tenant, fp", "tenant, grp, fp", "id", "created, ord",
	"tenant, name, version", "tenant, name, recipient, version", "seq",
	"tenant, seq", "id", "upload, recipient", "tenant, id", "seq",
	"tenant, name, agent", "tenant, name, recipient, version", NULL,
};

#define COPY_SEQ_SQL "SELECT 'command_mail'::text, (SELECT CASE WHEN " \
	"is_called THEN last_value ELSE 0 END FROM command_mail_seq) " \
	"UNION ALL SELECT 'feed'::text, (SELECT CASE WHEN is_called THEN " \
	"last_value ELSE 0 END FROM feed_seq)"
/* A sequence at least $1, at least its table's highest number, never
 * moved back; not touched while 0 (setval takes 1 and up). */
#define COPY_SETVAL_SQL(seq, table) "SELECT setval('" seq "', v) FROM " \
	"(SELECT GREATEST($1::bigint, (SELECT COALESCE(MAX(seq), 0) FROM " \
	table "), (SELECT CASE WHEN is_called THEN last_value ELSE 0 END " \
	"FROM " seq ")) AS v) s WHERE v > 0"
/* Rows per INSERT: below PostgreSQL's 65,535 parameters. */
#define COPY_INSERT_ROWS 1000

static cf_status pg_copy_out(cf_store *st, cf_copy_row_fn row, void *ctx,
			     cf_error *err)
{
	pg_store *p = pg(st);
	cf_copy_value vals[16];
	cf_status rc;
	char sql[512];

	if ((rc = pg_ready(p, err)) != CF_OK ||
	    (rc = tx_begin(p, err)) != CF_OK)
		return rc;
	/* One snapshot for every table; a large table may take longer
	 * than a request's statement timeout to stream. */
	rc = simple(p, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, "
		    "READ ONLY; SET LOCAL statement_timeout = 0",
		    "starting to read the database", err);
	for (int t = 0; rc == CF_OK && t < CF_COPY_COUNT; t++) {
		const char *types = cf_copy_tables[t].types;
		int cols = (int)strlen(types), cancelled = 0;
		PGresult *r;

		if (cols > (int)(sizeof(vals) / sizeof(vals[0]))) {
			rc = cf_error_set(err, CF_ERR_USAGE,
					  "store: table %s has too many columns "
					  "to copy", cf_copy_tables[t].name);
			break;
		}

		/* Text made of the constant table definitions only. */
		if (t == CF_COPY_SEQUENCES)
			snprintf(sql, sizeof(sql), "%s", COPY_SEQ_SQL);
		else
			snprintf(sql, sizeof(sql), "SELECT %s FROM %s ORDER BY "
				 "%s", cf_copy_tables[t].columns,
				 cf_copy_tables[t].name, copy_order[t]);
		/* Row by row (single-row mode): memory stays one row. */
		if (!PQsendQueryParams(p->conn, sql, 0, NULL, NULL, NULL, NULL,
				       1) ||
		    !PQsetSingleRowMode(p->conn)) {
			rc = db_fail(p, NULL, "reading a table to copy", err);
			break;
		}
		while ((r = PQgetResult(p->conn)) != NULL) {
			ExecStatusType s = PQresultStatus(r);

			if (s == PGRES_SINGLE_TUPLE && rc == CF_OK) {
				for (int c = 0; c < cols; c++) {
					cf_copy_value *v = &vals[c];

					memset(v, 0, sizeof(*v));
					if (PQgetisnull(r, 0, c))
						v->null = 1;
					else if (types[c] == 'i')
						v->i = col_int(r, 0, c);
					else {
						v->p = (const unsigned char *)
							PQgetvalue(r, 0, c);
						v->len = (size_t)PQgetlength(r,
									 0, c);
					}
				}
				rc = row(ctx, t, vals, err);
			} else if (s != PGRES_SINGLE_TUPLE &&
				   s != PGRES_TUPLES_OK && rc == CF_OK) {
				rc = db_fail(p, r, "reading a table to copy",
					     err);
			}
			PQclear(r);
			if (rc != CF_OK && !cancelled) {
				/* Stop the server streaming the rest. */
				PGcancel *cancel = PQgetCancel(p->conn);
				char why[64];

				if (cancel != NULL)
					PQcancel(cancel, why, sizeof(why));
				PQfreeCancel(cancel);
				cancelled = 1;
			}
		}
	}
	tx_rollback(p);
	return rc;
}

static cf_status pg_copy_in_begin(cf_store *st, cf_error *err)
{
	pg_store *p = pg(st);
	char sql[128];
	cf_status rc;

	if ((rc = pg_ready(p, err)) != CF_OK ||
	    (rc = tx_begin(p, err)) != CF_OK)
		return rc;
	/* Nobody writes meanwhile (readers may); the copy's transaction
	 * may wait on its source between statements. */
	rc = simple(p, "SET LOCAL statement_timeout = 0; "
		    "SET LOCAL idle_in_transaction_session_timeout = 0; "
		    "LOCK TABLE tenants, certs, cert_groups, tokens, "
		    "enrollments, versions, envelopes, feed, audit, uploads, "
		    "upload_envelopes, commands, command_mail, acks, purged "
		    "IN EXCLUSIVE MODE", "locking the tables to copy into",
		    err);
	for (int t = 0; rc == CF_OK && t < CF_COPY_SEQUENCES; t++) {
		PGresult *r;

		snprintf(sql, sizeof(sql), "SELECT 1 FROM %s LIMIT 1",
			 cf_copy_tables[t].name);
		r = PQexecParams(p->conn, sql, 0, NULL, NULL, NULL, NULL, 1);
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			rc = db_fail(p, r, "checking that the database is "
				     "empty", err);
		else if (PQntuples(r) > 0)
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "PostgreSQL %s is not empty (its "
					  "table %s holds rows); a copy goes "
					  "into a new database: a new "
					  "PostgreSQL database (createdb NAME) "
					  "or a SQLite file that does not "
					  "exist yet", p->label,
					  cf_copy_tables[t].name);
		PQclear(r);
	}
	if (rc != CF_OK)
		tx_rollback(p);
	return rc;
}

static cf_status copy_setval(pg_store *p, const cf_copy_value *row,
			     cf_error *err)
{
	const char *sql;
	qargs a = { 0 };
	PGresult *r;
	cf_status rc = CF_OK;

	if (!row[0].null && !row[1].null && row[0].len == 4 &&
	    memcmp(row[0].p, "feed", 4) == 0)
		sql = COPY_SETVAL_SQL("feed_seq", "feed");
	else if (!row[0].null && !row[1].null && row[0].len == 12 &&
		 memcmp(row[0].p, "command_mail", 12) == 0)
		sql = COPY_SETVAL_SQL("command_mail_seq", "command_mail");
	else
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: the copy names an unknown sequence");
	a_int(&a, row[1].i);
	r = PQexecParams(p->conn, sql, a.n, NULL, a.val, a.len, a.fmt, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = db_fail(p, r, "setting a sequence of the copy", err);
	PQclear(r);
	return rc;
}

/* The first m rows of vals as one multi-row INSERT; its text is made of
 * the constant table definitions and placeholders only, values bound. */
static cf_status copy_insert(pg_store *p, int table,
			     const cf_copy_value *vals, size_t m,
			     const char *what, cf_error *err)
{
	const char *types = cf_copy_tables[table].types;
	size_t cols = strlen(types), np = m * cols, cap, used;
	const char **val = calloc(np, sizeof(*val));
	int *len = calloc(np, sizeof(*len)), *fmt = calloc(np, sizeof(*fmt));
	char (*num)[24] = calloc(np, sizeof(*num));
	char *sql = NULL;
	PGresult *r;
	cf_status rc = CF_OK;

	/* "($1, ..., $k), " per row: at most 8 bytes a placeholder. */
	cap = 256 + strlen(cf_copy_tables[table].columns) + m * (cols * 8 + 4);
	if (val == NULL || len == NULL || fmt == NULL || num == NULL ||
	    (sql = malloc(cap)) == NULL) {
		rc = nomem(p, what, err);
		goto out;
	}
	used = (size_t)snprintf(sql, cap, "INSERT INTO %s (%s) VALUES ",
				cf_copy_tables[table].name,
				cf_copy_tables[table].columns);
	for (size_t k = 0; k < np && used < cap; k++) {
		const cf_copy_value *v = &vals[k];
		char type = types[k % cols];

		used += (size_t)snprintf(sql + used, cap - used, "%s$%zu%s",
					 k % cols == 0 ? (k > 0 ? ", (" : "(") :
							 ", ",
					 k + 1, k % cols == cols - 1 ? ")" : "");
		if (v->null) {
			val[k] = NULL;
		} else if (type == 'i') {
			snprintf(num[k], sizeof(num[k]), "%" PRId64, v->i);
			val[k] = num[k];
		} else if (v->len > INT32_MAX) {
			rc = cf_error_set(err, CF_ERR_TOO_LARGE,
					  "store: a value of table %s is too "
					  "large to copy",
					  cf_copy_tables[table].name);
			goto out;
		} else {
			/* Text and bytea both as binary: their bytes. */
			val[k] = (const char *)v->p;
			len[k] = (int)v->len;
			fmt[k] = 1;
		}
	}
	if (used >= cap) {
		rc = cf_error_set(err, CF_ERR_USAGE,
				  "store: a copy statement is too long");
		goto out;
	}
	r = PQexecParams(p->conn, sql, (int)np, NULL, val, len, fmt, 1);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = db_fail(p, r, what, err);
	PQclear(r);
out:
	free(sql);
	free(num);
	free(fmt);
	free(len);
	free(val);
	return rc;
}

static cf_status pg_copy_in(cf_store *st, int table, const cf_copy_value *vals,
			    size_t n, cf_error *err)
{
	pg_store *p = pg(st);
	size_t cols, per;
	char what[96];
	cf_status rc = CF_OK;

	if (table < 0 || table >= CF_COPY_COUNT)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: no such table to copy");
	cols = strlen(cf_copy_tables[table].types);
	if (table == CF_COPY_SEQUENCES) {
		for (size_t r = 0; rc == CF_OK && r < n; r++)
			rc = copy_setval(p, vals + r * cols, err);
		return rc;
	}
	snprintf(what, sizeof(what), "copying table %s",
		 cf_copy_tables[table].name);
	per = COPY_INSERT_ROWS;
	for (size_t r = 0; rc == CF_OK && r < n; r += per)
		rc = copy_insert(p, table, vals + r * cols,
				 n - r < per ? n - r : per, what, err);
	return rc;
}

static cf_status pg_copy_in_end(cf_store *st, int commit, cf_error *err)
{
	pg_store *p = pg(st);

	if (commit)
		return tx_commit(p, err);
	tx_rollback(p);
	return CF_OK;
}

/* ---- wake-ups across nodes (LISTEN/NOTIFY) ---------------------------- */

/*
 * Two channels.  coffer_wake carries "F NODE TENANT FP FP ...": the
 * sending node (its listener skips its own), a tenant and 1 to
 * CF_STORE_WAKE_BATCH recipients' fingerprints, all lowercase hex, single
 * spaces; a put to 10,000 agents is 84 such payloads sent in one
 * statement.  coffer_tenants carries nothing: re-read the tenants.  It is
 * sent inside the transaction that changes a tenant (NOTIFY is delivered
 * at COMMIT, never for a rollback), so changes made by any process count,
 * `coffer server tenant add` included.
 */
#define WAKE_CHANNEL "coffer_wake"
#define TENANTS_CHANNEL "coffer_tenants"
/* "F " NODE " " TENANT, then " " FP per recipient. */
#define WAKE_HEAD (2 + CF_STORE_NODE_LEN + 1 + 64)
#define WAKE_PAYLOAD_MAX (WAKE_HEAD + 65 * CF_STORE_WAKE_BATCH)

_Static_assert(WAKE_PAYLOAD_MAX < 8000,
	       "a NOTIFY payload is shorter than 8000 bytes");

static cf_status announce_tenants(pg_store *p, cf_error *err)
{
	return simple(p, "NOTIFY " TENANTS_CHANNEL, "announcing a tenant "
		      "change", err);
}

static cf_status notify_feeds_once(pg_store *p, const char *node,
				   const char *tenant,
				   const char (*recipients)[65], size_t n,
				   cf_error *err)
{
	char payload[WAKE_PAYLOAD_MAX + 1];
	pg_array arr = { 0 };
	const char *vals[1];
	int lens[1], fmts[1] = { 1 };
	PGresult *r = NULL;
	cf_status rc = CF_OK;

	if (!arr_begin(&arr, OID_TEXT))
		rc = nomem(p, "waking other nodes", err);
	for (size_t off = 0; rc == CF_OK && off < n;
	     off += CF_STORE_WAKE_BATCH) {
		size_t m = n - off < CF_STORE_WAKE_BATCH ? n - off :
			   CF_STORE_WAKE_BATCH;
		size_t len = (size_t)snprintf(payload, sizeof(payload),
					      "F %s %s", node, tenant);

		for (size_t i = 0; i < m; i++) {
			payload[len] = ' ';
			memcpy(payload + len + 1, recipients[off + i], 64);
			len += 65;
		}
		if (!arr_add(&arr, payload, len))
			rc = nomem(p, "waking other nodes", err);
	}
	if (rc == CF_OK && arr.len > INT32_MAX)
		rc = cf_error_set(err, CF_ERR_TOO_LARGE, "PostgreSQL %s: a "
				  "wake-up of %zu recipients is too large",
				  p->label, n);
	if (rc == CF_OK) {
		vals[0] = (const char *)arr.buf;
		lens[0] = (int)arr.len;
		r = PQexecParams(p->conn, "SELECT pg_notify('" WAKE_CHANNEL
				 "', x) FROM unnest($1::text[]) AS x", 1,
				 NULL, vals, lens, fmts, 1);
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			rc = db_fail(p, r, "waking other nodes", err);
	}
	PQclear(r);
	arr_free(&arr);
	return rc;
}

static cf_status pg_notify_feeds(cf_store *st, const char *node,
				 const char *tenant,
				 const char (*recipients)[65], size_t n,
				 cf_error *err)
{
	ATTEMPT(pg(st), err, notify_feeds_once(pg(st), node, tenant,
					       recipients, n, err));
}

/*
 * A listener is one connection that only LISTENs, opened like a store's
 * (cf_store_pg_open: the same defaults, timeouts and keepalives) and then
 * taken over.  PostgreSQL is the only backend with listeners, so the
 * listener functions of store.h live here.
 */
struct cf_store_listener {
	PGconn *conn;                     /* NULL while down */
	char *url;                        /* wiped at free: may hold a password */
	char node[CF_STORE_NODE_LEN + 1];
	char label[192];                  /* "database coffer on db1:5432" */
};

static cf_status listener_connect(cf_store_listener *l, cf_error *err)
{
	cf_store *st = NULL;
	pg_store *p;
	PGresult *r;
	cf_status rc;

	if ((rc = cf_store_pg_open(l->url, 0, &st, err)) != CF_OK)
		return rc;
	p = pg(st);
	snprintf(l->label, sizeof(l->label), "%s", p->label);
	r = PQexec(p->conn, "LISTEN " WAKE_CHANNEL "; LISTEN " TENANTS_CHANNEL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = db_fail(p, r, "listening for wake-ups", err);
	PQclear(r);
	/* PQconsumeInput then never waits for more than what arrived. */
	if (rc == CF_OK && PQsetnonblocking(p->conn, 1) != 0)
		rc = cf_error_set(err, CF_ERR_STORE, "PostgreSQL %s: cannot "
				  "make the wake-up connection non-blocking",
				  p->label);
	if (rc == CF_OK) {
		l->conn = p->conn;
		p->conn = NULL;
	}
	pg_free(st);
	return rc;
}

cf_status cf_store_pg_listener_open(const char *url, const char *node,
				    cf_store_listener **out, cf_error *err)
{
	cf_store_listener *l = calloc(1, sizeof(*l));
	cf_status rc;

	*out = NULL;
	if (l == NULL || (l->url = strdup(url)) == NULL) {
		free(l);
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory opening "
				    "a PostgreSQL listener");
	}
	snprintf(l->node, sizeof(l->node), "%s", node);
	snprintf(l->label, sizeof(l->label), "database");
	rc = listener_connect(l, err);
	if (rc != CF_OK && rc != CF_ERR_STORE) {
		cf_store_listener_free(l);
		return rc;
	}
	*out = l;
	return rc;
}

int cf_store_listener_fd(const cf_store_listener *l)
{
	return l == NULL || l->conn == NULL ? -1 : PQsocket(l->conn);
}

/* One notification: checked to the byte, then handed to fn. */
static void listener_deliver(const cf_store_listener *l, const PGnotify *nf,
			     cf_store_wake_fn fn, void *ctx)
{
	char fps[CF_STORE_WAKE_BATCH][65];
	cf_store_wake w = { 0 };
	const char *s = nf->extra != NULL ? nf->extra : "";
	size_t len = strlen(s), n;

	if (strcmp(nf->relname, TENANTS_CHANNEL) == 0) {
		w.kind = CF_STORE_WAKE_TENANTS;
		fn(ctx, &w);
		return;
	}
	if (strcmp(nf->relname, WAKE_CHANNEL) != 0 || len < WAKE_HEAD + 65 ||
	    len > WAKE_PAYLOAD_MAX || (len - WAKE_HEAD) % 65 != 0 ||
	    s[0] != 'F' || s[1] != ' ' || s[2 + CF_STORE_NODE_LEN] != ' ')
		return;
	if (memcmp(s + 2, l->node, CF_STORE_NODE_LEN) == 0)
		return;  /* our own: its threads were woken already */
	n = (len - WAKE_HEAD) / 65;
	memcpy(w.tenant, s + 3 + CF_STORE_NODE_LEN, 64);
	w.tenant[64] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *f = s + WAKE_HEAD + 65 * i;

		if (f[0] != ' ')
			return;
		memcpy(fps[i], f + 1, 64);
		fps[i][64] = '\0';
	}
	for (size_t i = 0; i < 64; i++)
		if (strchr("0123456789abcdef", w.tenant[i]) == NULL)
			return;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < 64; j++)
			if (strchr("0123456789abcdef", fps[i][j]) == NULL)
				return;
	w.kind = CF_STORE_WAKE_FEEDS;
	w.recipients = (const char (*)[65])fps;
	w.n = n;
	fn(ctx, &w);
}

cf_status cf_store_listener_read(cf_store_listener *l, cf_store_wake_fn fn,
				 void *ctx, cf_error *err)
{
	PGnotify *nf;
	char why[320];

	if (l == NULL || fn == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "store: no listener");
	if (l->conn == NULL)
		return cf_error_set(err, CF_ERR_STORE, "the wake-up connection "
				    "to PostgreSQL %s is down", l->label);
	if (!PQconsumeInput(l->conn) || PQstatus(l->conn) != CONNECTION_OK) {
		one_line(PQerrorMessage(l->conn), why, sizeof(why));
		PQfinish(l->conn);
		l->conn = NULL;
		return cf_error_set(err, CF_ERR_STORE, "lost the wake-up "
				    "connection to PostgreSQL %s (%s)",
				    l->label, why);
	}
	while ((nf = PQnotifies(l->conn)) != NULL) {
		listener_deliver(l, nf, fn, ctx);
		PQfreemem(nf);
	}
	return CF_OK;
}

cf_status cf_store_listener_reconnect(cf_store_listener *l, cf_error *err)
{
	if (l == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "store: no listener");
	if (l->conn != NULL)
		return CF_OK;
	return listener_connect(l, err);
}

void cf_store_listener_free(cf_store_listener *l)
{
	if (l == NULL)
		return;
	if (l->conn != NULL)
		PQfinish(l->conn);
	if (l->url != NULL) {
		OPENSSL_cleanse(l->url, strlen(l->url));
		free(l->url);
	}
	free(l);
}

/* ---- rollout: acknowledgements and exposure ----------------------- */

static int read_ack(const PGresult *r, int row, void *elem)
{
	cf_ack_row *a = elem;

	col_fixed(r, row, 0, a->agent, sizeof(a->agent));
	col_fixed(r, row, 1, a->name, sizeof(a->name));
	a->version = col_int(r, row, 2);
	a->time = col_int(r, row, 3);
	col_fixed(r, row, 4, a->result, sizeof(a->result));
	col_fixed(r, row, 5, a->reason, sizeof(a->reason));
	a->received = col_int(r, row, 6);
	return col_blob(r, row, 7, &a->der, &a->len);
}

static void clear_ack(void *elem)
{
	free(((cf_ack_row *)elem)->der);
}

static cf_status ack_put_once(pg_store *p, const char *tenant,
			      const char *agent, const char *via,
			      const cf_ack_row *rows,
			      size_t n, int64_t now,
			      const cf_audit_entry *audit, int64_t *stored,
			      cf_error *err)
{
	int64_t written = 0;
	cf_status rc;

	if ((rc = tx_begin(p, err)) != CF_OK)
		return rc;
	for (size_t i = 0; i < n && rc == CF_OK; i++) {
		PGresult *r = NULL;
		qargs a = { 0 };

		a_text(&a, tenant);
		a_text(&a, rows[i].name);
		a_text(&a, agent);
		a_int(&a, rows[i].version);
		a_int(&a, rows[i].time);
		a_text(&a, rows[i].result);
		a_text(&a, rows[i].reason);
		a_int(&a, now);
		a_bin(&a, rows[i].der, rows[i].len);
		a_text(&a, via);
		rc = run(p, S_ACK_PUT, &a, "storing an acknowledgement", &r, err);
		if (rc == CF_OK)
			written += changes(r);
		PQclear(r);
	}
	if (rc == CF_OK)
		rc = audit_write(p, audit, tenant, agent, err);
	rc = tx_end(p, rc, err);
	if (rc == CF_OK && stored != NULL)
		*stored = written;
	return rc;
}

static cf_status pg_ack_put(cf_store *st, const char *tenant,
			    const char *agent, const char *via,
			    const cf_ack_row *rows, size_t n, int64_t now,
			    const cf_audit_entry *audit, int64_t *stored,
			    cf_error *err)
{
	ATTEMPT(pg(st), err, ack_put_once(pg(st), tenant, agent, via, rows, n,
					  now, audit, stored, err));
}

static cf_status ack_list_once(pg_store *p, const char *tenant,
			       const char *name, cf_ack_row **out, size_t *n,
			       cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	a_text(&a, name);
	return collect_rows(p, S_ACK_LIST, &a, sizeof(cf_ack_row), read_ack,
			    clear_ack, "reading acknowledgements", (void **)out,
			    n, err);
}

static cf_status pg_ack_list(cf_store *st, const char *tenant,
			     const char *name, cf_ack_row **out, size_t *n,
			     cf_error *err)
{
	ATTEMPT(pg(st), err, ack_list_once(pg(st), tenant, name, out, n, err));
}

static cf_status recipient_certs_once(pg_store *p, const char *tenant,
					 const char *name, int64_t version,
					 cf_cert_row **out, size_t *n,
					 cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	a_text(&a, name);
	a_int(&a, version);
	return collect_rows(p, S_RECIPIENT_CERTS, &a, sizeof(cf_cert_row),
			    read_cert, clear_cert,
			    "reading a version's recipients", (void **)out, n,
			    err);
}

static cf_status pg_recipient_certs(cf_store *st, const char *tenant,
				       const char *name, int64_t version,
				       cf_cert_row **out, size_t *n,
				       cf_error *err)
{
	ATTEMPT(pg(st), err, recipient_certs_once(pg(st), tenant, name,
						     version, out, n, err));
}

static int read_exposed(const PGresult *r, int row, void *elem)
{
	cf_exposed_row *x = elem;

	col_fixed(r, row, 0, x->name, sizeof(x->name));
	x->version = col_int(r, row, 1);
	col_fixed(r, row, 2, x->recipient, sizeof(x->recipient));
	col_fixed(r, row, 3, x->kind, sizeof(x->kind));
	col_fixed(r, row, 4, x->cn, sizeof(x->cn));
	col_fixed(r, row, 5, x->via, sizeof(x->via));
	return 1;
}

static cf_status exposed_once(pg_store *p, const char *tenant,
			      const char *revoked, const char *prefix,
			      cf_exposed_row **out, size_t *n, cf_error *err)
{
	qargs a = { 0 };

	a_text(&a, tenant);
	a_text(&a, revoked);
	a_text(&a, prefix);
	return collect_rows(p, S_EXPOSED, &a, sizeof(cf_exposed_row),
			    read_exposed, NULL, "finding exposed envelopes",
			    (void **)out, n, err);
}

static cf_status pg_exposed(cf_store *st, const char *tenant,
			    const char *revoked, const char *prefix,
			    cf_exposed_row **out, size_t *n, cf_error *err)
{
	ATTEMPT(pg(st), err, exposed_once(pg(st), tenant, revoked, prefix, out,
					  n, err));
}

static int read_rollout(const PGresult *r, int row, void *elem)
{
	cf_rollout_stats *s = elem;

	s->up_to_date = col_int(r, row, 0);
	s->failed = col_int(r, row, 1);
	s->behind = col_int(r, row, 2);
	return 1;
}

static cf_status rollout_once(pg_store *p, cf_rollout_stats *out,
			      cf_error *err)
{
	int found = 0;

	return get_row(p, S_ROLLOUT, NULL, read_rollout, out, &found,
		       "counting the rollout", err);
}

static cf_status pg_rollout_stats(cf_store *st, cf_rollout_stats *out,
				  cf_error *err)
{
	ATTEMPT(pg(st), err, rollout_once(pg(st), out, err));
}

static const cf_store_ops pg_ops = {
	.name = "postgresql",
	.free = pg_free,
	.schema_version = pg_schema_version,
	.tenant_add = pg_tenant_add,
	.tenant_get = pg_tenant_get,
	.tenant_list = pg_tenant_list,
	.tenant_set_crl = pg_tenant_set_crl,
	.cert_put = pg_cert_put,
	.cert_get = pg_cert_get,
	.cert_list = pg_cert_list,
	.token_add = pg_token_add,
	.token_get = pg_token_get,
	.token_list = pg_token_list,
	.token_revoke = pg_token_revoke,
	.enroll_add = pg_enroll_add,
	.enroll_get = pg_enroll_get,
	.enroll_list = pg_enroll_list,
	.enroll_decide = pg_enroll_decide,
	.secret_put = pg_secret_put,
	.secret_delete = pg_secret_delete,
	.secret_latest = pg_secret_latest,
	.secret_list = pg_secret_list,
	.secret_history = pg_secret_history,
	.envelope_get = pg_envelope_get,
	.secret_recipients = pg_secret_recipients,
	.version_add = pg_version_add,
	.recipient_names = pg_recipient_names,
	.envelopes_purge = pg_envelopes_purge,
	.feed = pg_feed,
	.upload_begin = pg_upload_begin,
	.upload_get = pg_upload_get,
	.upload_add = pg_upload_add,
	.upload_commit = pg_upload_commit,
	.upload_abort = pg_upload_abort,
	.cmd_post = pg_cmd_post,
	.cmd_pending = pg_cmd_pending,
	.cmd_answer = pg_cmd_answer,
	.cmd_get = pg_cmd_get,
	.cmd_recipients = pg_cmd_recipients,
	.cmd_answers = pg_cmd_answers,
	.cmd_list = pg_cmd_list,
	.cmd_expire = pg_cmd_expire,
	.audit_append = pg_audit_append,
	.audit_append_many = pg_audit_append_many,
	.audit_list = pg_audit_list,
	.stats_get = pg_stats_get,
	.copy_out = pg_copy_out,
	.copy_in_begin = pg_copy_in_begin,
	.copy_in = pg_copy_in,
	.copy_in_end = pg_copy_in_end,
	.ack_put = pg_ack_put,
	.ack_list = pg_ack_list,
	.recipient_certs = pg_recipient_certs,
	.exposed = pg_exposed,
	.rollout_stats = pg_rollout_stats,
	.notify_feeds = pg_notify_feeds,
};
