/*
 * store_sqlite.c - the embedded SQLite backend of store.h.
 *
 * One cf_store is one sqlite3 connection (SQLITE_OPEN_NOMUTEX: the server
 * gives each worker thread its own).  Settings on every connection: WAL
 * journal (readers never block the writer), busy_timeout 5 s, foreign
 * keys on, synchronous=NORMAL (a commit is in the WAL before COMMIT
 * returns, so it survives a kill -9 of the process; FULL with
 * CF_STORE_SYNC_FULL also survives a power loss), defensive mode.
 *
 * Invariants:
 * - Every change runs in BEGIN IMMEDIATE ... COMMIT together with its
 *   audit entry; the write lock is taken up front, so two writers never
 *   deadlock upgrading a read lock, and the audit chain's (seq, prev) read
 *   and the insert that extends it are serialised across connections and
 *   processes.
 * - Writers of one process queue on write_mu (held from BEGIN IMMEDIATE
 *   to COMMIT or ROLLBACK) rather than in SQLite's busy handler, which
 *   sleeps 1 ms and more per retry inside the server's event loops;
 *   busy_timeout still covers writers in other processes (a CLI command
 *   on the same database).
 * - SQL text is constant (the STMTS table); every value is bound.
 *   Statements are prepared once per connection and reset after each use.
 * - Schema: PRAGMA user_version is the number of migration steps applied;
 *   each step runs in its own transaction and bumps it.  A database whose
 *   version is above what this program knows is refused, never touched.
 * - Versions of a name never repeat: a deletion leaves a tombstone row.
 *
 * The agent feed.  `feed` holds, per (tenant, recipient, name), exactly
 * one row: the newest change of that name for that recipient, keyed by a
 * global feed sequence (INTEGER PRIMARY KEY AUTOINCREMENT, so numbers only
 * grow and are never reused).  A put or delete replaces the row (DELETE +
 * INSERT, taking a new seq).  "The newest entry per name after cursor" is
 * then just the recipient's rows with seq > cursor, read in seq order from
 * the index feed_by_recipient (tenant, recipient, seq): the cost depends on
 * that recipient's changed names only, never on how many recipients the
 * tenant has or on old versions.  test_store.c checks with EXPLAIN QUERY
 * PLAN that the query uses that index.  (The alternative, a history table
 * with a correlated MAX per name, reads every old entry of the recipient.)
 *
 * Stats are COUNT(*) queries: cheap enough for a scrape every few seconds
 * up to millions of rows; keep counters if that ever shows in a profile.
 */
#include "store_backend.h"
#include "store_schema.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 5000
#define BEGIN_ATTEMPTS 3
#define AUDIT_LIST_DEFAULT 1000
#define AUDIT_LIST_MAX 10000

/* ---- schema ---------------------------------------------------------- */

/* The steps are store_schema.c's, shared with store_pg.c. */
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

#define STMTS(X) \
	X(S_BEGIN, "BEGIN IMMEDIATE") \
	X(S_COMMIT, "COMMIT") \
	X(S_ROLLBACK, "ROLLBACK") \
	X(S_AUDIT_LAST, "SELECT seq, hash FROM audit WHERE tenant = ?1 " \
	  "ORDER BY seq DESC LIMIT 1") \
	X(S_AUDIT_INS, "INSERT INTO audit (tenant, seq, time, actor, " \
	  "subject, source, action, object, bytes, prev, hash) " \
	  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)") \
	X(S_AUDIT_LIST, "SELECT " AUDIT_COLS " FROM audit " \
	  "WHERE tenant = ?1 AND seq > ?2 AND (?3 = 0 OR time >= ?3) " \
	  "AND (?4 = 0 OR time < ?4) AND (?5 IS NULL OR actor = ?5) " \
	  "AND (?6 IS NULL OR action = ?6 OR (substr(?6, -1) = '.' " \
	  "AND substr(action, 1, length(?6)) = ?6)) " \
	  "ORDER BY seq LIMIT ?7") \
	X(S_TENANT_INS, "INSERT INTO tenants (id, root_pem, crl_pem, " \
	  "crl_number, created) VALUES (?1, ?2, NULL, -1, ?3)") \
	X(S_TENANT_GET, "SELECT id, root_pem, crl_pem, crl_number, created " \
	  "FROM tenants WHERE id = ?1") \
	X(S_TENANT_LIST, "SELECT id, root_pem, crl_pem, crl_number, created " \
	  "FROM tenants ORDER BY created, id") \
	X(S_TENANT_CRL_NUMBER, "SELECT crl_number FROM tenants WHERE id = ?1") \
	X(S_TENANT_SET_CRL, "UPDATE tenants SET crl_pem = ?2, " \
	  "crl_number = ?3 WHERE id = ?1") \
	X(S_CERT_INS, "INSERT OR IGNORE INTO certs (tenant, fp, kind, name, " \
	  "groups, cluster, issuer_fp, serial, not_after, pem, created) " \
	  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)") \
	X(S_CERT_GROUP_INS, "INSERT OR IGNORE INTO cert_groups (tenant, grp, " \
	  "fp) VALUES (?1, ?2, ?3)") \
	X(S_CERT_GET, "SELECT " CERT_COLS " FROM certs c " \
	  "WHERE c.tenant = ?1 AND c.fp = ?2") \
	X(S_CERT_LIST, "SELECT " CERT_COLS " FROM certs c " \
	  "WHERE c.tenant = ?1 AND (?2 IS NULL OR c.kind = ?2) " \
	  "AND (?3 IS NULL OR c.name = ?3) AND (?4 IS NULL OR c.fp = ?4) " \
	  "AND c.fp > ?5 ORDER BY c.fp LIMIT ?6") \
	X(S_CERT_LIST_GROUP, "SELECT " CERT_COLS " FROM cert_groups g " \
	  "JOIN certs c ON c.tenant = g.tenant AND c.fp = g.fp " \
	  "WHERE g.tenant = ?1 AND g.grp = ?7 AND (?2 IS NULL OR c.kind = ?2) " \
	  "AND (?3 IS NULL OR c.name = ?3) AND (?4 IS NULL OR c.fp = ?4) " \
	  "AND g.fp > ?5 ORDER BY g.fp LIMIT ?6") \
	X(S_TOKEN_INS, "INSERT INTO tokens (tenant, id, hash, grp, uses, " \
	  "used, expires, created, creator, revoked, envelope) " \
	  "VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, 0, ?9)") \
	X(S_TOKEN_GET, "SELECT " TOKEN_COLS ", envelope FROM tokens " \
	  "WHERE id = ?1") \
	X(S_TOKEN_LIST, "SELECT " TOKEN_COLS ", NULL FROM tokens " \
	  "WHERE tenant = ?1 ORDER BY created DESC, id") \
	X(S_TOKEN_REVOKE, "UPDATE tokens SET revoked = 1 " \
	  "WHERE tenant = ?1 AND id = ?2") \
	X(S_TOKEN_USE, "UPDATE tokens SET used = used + 1 WHERE id = ?1") \
	X(S_ENROLL_INS, "INSERT INTO enrollments (id, tenant, token_id, grp, " \
	  "name, csr_pem, hmac, source, status, created) " \
	  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9)") \
	X(S_ENROLL_GET, "SELECT " ENROLL_COLS " FROM enrollments " \
	  "WHERE id = ?1") \
	X(S_ENROLL_LIST, "SELECT " ENROLL_COLS " FROM enrollments " \
	  "WHERE tenant = ?1 AND (?2 IS NULL OR status = ?2) " \
	  "ORDER BY created, rowid") \
	X(S_ENROLL_STATUS, "SELECT status FROM enrollments " \
	  "WHERE tenant = ?1 AND id = ?2") \
	X(S_ENROLL_DECIDE, "UPDATE enrollments SET status = ?3, " \
	  "cert_pem = ?4, chain_pem = ?5, reason = ?6, decided_by = ?7, " \
	  "decided = ?8 WHERE tenant = ?1 AND id = ?2 AND status = 'pending'") \
	X(S_VERSION_LATEST, "SELECT " VERSION_COLS " FROM versions " \
	  "WHERE tenant = ?1 AND name = ?2 ORDER BY version DESC LIMIT 1") \
	X(S_VERSION_INS, "INSERT INTO versions (tenant, name, version, " \
	  "created, writer, recipients, bytes, deleted) " \
	  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)") \
	X(S_VERSION_HISTORY, "SELECT " VERSION_COLS " FROM versions " \
	  "WHERE tenant = ?1 AND name = ?2 ORDER BY version DESC") \
	/* SQLite returns the other columns of the MAX(version) row. */ \
	X(S_SECRET_LIST, "SELECT " VERSION_COLS " FROM (SELECT name, " \
	  "MAX(version) AS version, created, writer, recipients, bytes, " \
	  "deleted FROM versions WHERE tenant = ?1 AND name >= ?2 " \
	  "AND substr(name, 1, length(?2)) = ?2 GROUP BY name) " \
	  "WHERE deleted = 0 ORDER BY name") \
	X(S_ENVELOPE_INS, "INSERT INTO envelopes (tenant, name, version, " \
	  "recipient, seq, der) VALUES (?1, ?2, ?3, ?4, ?5, ?6)") \
	X(S_ENVELOPE_DEL_NAME, "DELETE FROM envelopes " \
	  "WHERE tenant = ?1 AND name = ?2") \
	X(S_ENVELOPE_GET, "SELECT e.seq, e.version, v.writer, v.created, " \
	  "e.der FROM envelopes e JOIN versions v ON v.tenant = e.tenant " \
	  "AND v.name = e.name AND v.version = e.version " \
	  "WHERE e.tenant = ?1 AND e.name = ?2 AND e.recipient = ?3 " \
	  "AND e.version = (CASE WHEN ?4 > 0 THEN ?4 ELSE (SELECT " \
	  "MAX(version) FROM versions WHERE tenant = ?1 AND name = ?2) END)") \
	X(S_FEED_DEL, "DELETE FROM feed " \
	  "WHERE tenant = ?1 AND recipient = ?2 AND name = ?3") \
	X(S_FEED_INS, "INSERT INTO feed (tenant, recipient, name, version, " \
	  "deleted, writer, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)") \
	X(S_FEED_NAME_RECIPIENTS, "SELECT recipient FROM feed " \
	  "WHERE tenant = ?1 AND name = ?2 AND deleted = 0 " \
	  "ORDER BY recipient") \
	X(S_FEED, "SELECT f.seq, f.name, f.version, f.deleted, f.writer, " \
	  "f.created, e.der FROM feed f INDEXED BY feed_by_recipient " \
	  "LEFT JOIN envelopes e ON e.tenant = f.tenant AND e.name = f.name " \
	  "AND e.recipient = f.recipient AND e.version = f.version " \
	  "WHERE f.tenant = ?1 AND f.recipient = ?2 AND f.seq > ?3 " \
	  "ORDER BY f.seq LIMIT ?4") \
	X(S_FEED_HEAD, "SELECT seq FROM sqlite_sequence WHERE name = 'feed'") \
	X(S_UPLOAD_PURGE_ENV, "DELETE FROM upload_envelopes WHERE upload IN " \
	  "(SELECT id FROM uploads WHERE expires <= ?1)") \
	X(S_UPLOAD_PURGE, "DELETE FROM uploads WHERE expires <= ?1") \
	X(S_UPLOAD_COUNT, "SELECT COUNT(*) FROM uploads " \
	  "WHERE tenant = ?1 AND expires > ?2") \
	X(S_UPLOAD_INS, "INSERT INTO uploads (" UPLOAD_COLS ") " \
	  "VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, ?6, ?7)") \
	X(S_UPLOAD_GET, "SELECT " UPLOAD_COLS " FROM uploads " \
	  "WHERE id = ?1 AND tenant = ?2") \
	X(S_UPLOAD_ENV_INS, "INSERT INTO upload_envelopes (upload, " \
	  "recipient, der) VALUES (?1, ?2, ?3)") \
	X(S_UPLOAD_GROW, "UPDATE uploads SET envelopes = envelopes + ?2, " \
	  "bytes = bytes + ?3, expires = ?4 WHERE id = ?1") \
	X(S_UPLOAD_RECIPIENTS, "SELECT recipient FROM upload_envelopes " \
	  "WHERE upload = ?1 ORDER BY recipient") \
	X(S_UPLOAD_FEED_DEL, "DELETE FROM feed WHERE tenant = ?1 " \
	  "AND name = ?2 AND recipient IN (SELECT recipient " \
	  "FROM upload_envelopes WHERE upload = ?3)") \
	/* Feed numbers in recipient order, as the single put gives them \
	 * in its envelopes' order. */ \
	X(S_UPLOAD_FEED_INS, "INSERT INTO feed (tenant, recipient, name, " \
	  "version, deleted, writer, created) SELECT ?1, recipient, ?2, ?3, " \
	  "0, ?4, ?5 FROM upload_envelopes WHERE upload = ?6 " \
	  "ORDER BY recipient") \
	X(S_UPLOAD_ENV_MOVE, "INSERT INTO envelopes (tenant, name, version, " \
	  "recipient, seq, der) SELECT ?1, ?2, ?3, u.recipient, f.seq, u.der " \
	  "FROM upload_envelopes u JOIN feed f ON f.tenant = ?1 " \
	  "AND f.recipient = u.recipient AND f.name = ?2 WHERE u.upload = ?4") \
	X(S_UPLOAD_ENV_DEL, "DELETE FROM upload_envelopes WHERE upload = ?1") \
	X(S_UPLOAD_DEL, "DELETE FROM uploads WHERE id = ?1") \
	X(S_ENVELOPE_HAS, "SELECT 1 FROM envelopes WHERE tenant = ?1 " \
	  "AND name = ?2 AND recipient = ?3 AND version = ?4") \
	X(S_VERSION_GROW, "UPDATE versions SET recipients = recipients + ?4, " \
	  "bytes = bytes + ?5 WHERE tenant = ?1 AND name = ?2 " \
	  "AND version = ?3") \
	X(S_VERSION_RECIPIENTS, "SELECT e.recipient, COALESCE(c.kind, ''), " \
	  "COALESCE(c.name, '') FROM envelopes e LEFT JOIN certs c " \
	  "ON c.tenant = e.tenant AND c.fp = e.recipient " \
	  "WHERE e.tenant = ?1 AND e.name = ?2 AND e.version = ?3 " \
	  "ORDER BY e.recipient") \
	X(S_RECIPIENT_NAMES, "SELECT DISTINCT name FROM envelopes " \
	  "WHERE tenant = ?1 AND recipient = ?2 ORDER BY name") \
	X(S_PURGED_INS, "INSERT OR IGNORE INTO purged (tenant, name, " \
	  "version, recipient, purged) SELECT tenant, name, version, " \
	  "recipient, CAST(strftime('%s', 'now') AS INTEGER) FROM envelopes " \
	  "WHERE tenant = ?1 AND recipient = ?2 AND name = ?3") \
	X(S_ENVELOPE_PURGE, "DELETE FROM envelopes WHERE tenant = ?1 " \
	  "AND recipient = ?2 AND name = ?3 RETURNING length(der)") \
	X(S_CMD_INS, "INSERT INTO commands (tenant, id, sender, created, " \
	  "expires, recipients, bytes) VALUES (?1, ?2, ?3, ?4, ?5, 0, 0)") \
	X(S_CMD_GET, "SELECT " CMD_COLS " FROM commands c " \
	  "WHERE c.tenant = ?1 AND c.id = ?2") \
	X(S_CMD_GROW, "UPDATE commands SET recipients = recipients + ?3, " \
	  "bytes = bytes + ?4 WHERE tenant = ?1 AND id = ?2") \
	X(S_CMD_PENDING_COUNT, "SELECT COUNT(*) FROM command_mail " \
	  "INDEXED BY command_mail_pending WHERE tenant = ?1 " \
	  "AND recipient = ?2 AND answer_seq IS NULL AND expires >= ?3") \
	X(S_CMD_MAIL_INS, "INSERT INTO command_mail (tenant, id, recipient, " \
	  "expires, envelope) VALUES (?1, ?2, ?3, ?4, ?5)") \
	X(S_CMD_PENDING, "SELECT m.seq, m.id, c.sender, '', m.expires, " \
	  "m.answered, m.envelope FROM command_mail m " \
	  "INDEXED BY command_mail_pending JOIN commands c " \
	  "ON c.tenant = m.tenant AND c.id = m.id " \
	  "WHERE m.tenant = ?1 AND m.recipient = ?2 AND m.answer_seq IS NULL " \
	  "AND m.seq > ?3 AND m.expires >= ?4 AND m.envelope IS NOT NULL " \
	  "ORDER BY m.seq LIMIT ?5") \
	X(S_CMD_MAIL_HEAD, "SELECT seq FROM sqlite_sequence " \
	  "WHERE name = 'command_mail'") \
	X(S_CMD_MAIL_GET, "SELECT m.answer_seq IS NOT NULL, c.sender " \
	  "FROM command_mail m JOIN commands c ON c.tenant = m.tenant " \
	  "AND c.id = m.id WHERE m.tenant = ?1 AND m.id = ?2 " \
	  "AND m.recipient = ?3") \
	X(S_CMD_ANSWER_NEXT, "SELECT COALESCE(MAX(answer_seq), 0) + 1 " \
	  "FROM command_mail WHERE tenant = ?1 AND id = ?2") \
	X(S_CMD_ANSWER, "UPDATE command_mail SET answer_seq = ?4, " \
	  "answered = ?5, result = ?6 WHERE tenant = ?1 AND id = ?2 " \
	  "AND recipient = ?3 AND answer_seq IS NULL") \
	X(S_CMD_RECIPIENTS, "SELECT COALESCE(m.answer_seq, 0), m.id, " \
	  "m.recipient, COALESCE(ce.name, ''), m.expires, m.answered, NULL " \
	  "FROM command_mail m LEFT JOIN certs ce ON ce.tenant = m.tenant " \
	  "AND ce.fp = m.recipient WHERE m.tenant = ?1 AND m.id = ?2 " \
	  "ORDER BY m.recipient") \
	X(S_CMD_ANSWERS, "SELECT m.answer_seq, m.id, m.recipient, " \
	  "COALESCE(ce.name, ''), m.expires, m.answered, m.result " \
	  "FROM command_mail m INDEXED BY command_mail_answers " \
	  "LEFT JOIN certs ce ON ce.tenant = m.tenant AND ce.fp = m.recipient " \
	  "WHERE m.tenant = ?1 AND m.id = ?2 AND m.answer_seq > ?3 " \
	  "ORDER BY m.answer_seq LIMIT ?4") \
	X(S_CMD_LIST, "SELECT " CMD_COLS " FROM commands c " \
	  "WHERE c.tenant = ?1 AND c.sender = ?2 AND (?3 = 0 OR " \
	  "c.created < ?3) ORDER BY c.created DESC, c.id LIMIT ?4") \
	X(S_CMD_DROP_ENV, "UPDATE command_mail SET envelope = NULL " \
	  "WHERE expires < ?1 AND envelope IS NOT NULL") \
	X(S_CMD_PURGE_MAIL, "DELETE FROM command_mail WHERE expires < ?1") \
	X(S_CMD_PURGE, "DELETE FROM commands WHERE expires < ?1") \
	/* Rollout (store.h): an ack only from a recipient of the name, and \
	 * only if not older than the stored one. */ \
	X(S_ACK_PUT, "INSERT INTO acks (tenant, name, agent, version, applied, " \
	  "result, reason, received, der) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, " \
	  "?8, ?9 WHERE EXISTS (SELECT 1 FROM feed WHERE tenant = ?1 " \
	  "AND (recipient = ?3 OR recipient = ?10) AND name = ?2) " \
	  "ON CONFLICT (tenant, name, agent) DO UPDATE SET " \
	  "version = excluded.version, applied = excluded.applied, " \
	  "result = excluded.result, reason = excluded.reason, " \
	  "received = excluded.received, der = excluded.der " \
	  "WHERE excluded.version > acks.version OR (excluded.version = " \
	  "acks.version AND excluded.applied >= acks.applied)") \
	X(S_ACK_LIST, "SELECT agent, name, version, applied, result, reason, " \
	  "received, der FROM acks WHERE tenant = ?1 AND name = ?2 " \
	  "ORDER BY agent") \
	X(S_RECIPIENT_CERTS, "SELECT e.tenant, e.recipient, " \
	  "COALESCE(c.kind, ''), COALESCE(c.name, ''), " \
	  "COALESCE(c.groups, ''), COALESCE(c.cluster, ''), " \
	  "COALESCE(c.issuer_fp, ''), COALESCE(c.serial, ''), " \
	  "COALESCE(c.not_after, 0), NULL, COALESCE(c.created, 0) " \
	  "FROM envelopes e LEFT JOIN certs c ON c.tenant = e.tenant " \
	  "AND c.fp = e.recipient WHERE e.tenant = ?1 AND e.name = ?2 " \
	  "AND e.version = ?3 ORDER BY e.recipient") \
	X(S_EXPOSED, "SELECT name, version, recipient, kind, cn, via FROM (" \
	  "SELECT e.name AS name, e.version AS version, e.recipient AS " \
	  "recipient, c.kind AS kind, c.name AS cn, 'envelope' AS via " \
	  "FROM certs c LEFT JOIN certs i ON i.tenant = c.tenant " \
	  "AND i.fp = c.issuer_fp JOIN envelopes e ON e.tenant = c.tenant " \
	  "AND e.recipient = c.fp WHERE c.tenant = ?1 " \
	  "AND (c.serial IN (SELECT value FROM json_each(?2)) " \
	  "OR i.serial IN (SELECT value FROM json_each(?2))) " \
	  "AND e.name >= ?3 AND substr(e.name, 1, length(?3)) = ?3 " \
	  "UNION ALL SELECT a.name, a.version, a.agent, c.kind, c.name, " \
	  "'ack' FROM acks a JOIN certs c ON c.tenant = a.tenant " \
	  "AND c.fp = a.agent LEFT JOIN certs i ON i.tenant = c.tenant " \
	  "AND i.fp = c.issuer_fp JOIN (SELECT name, MAX(version) AS " \
	  "version FROM versions WHERE tenant = ?1 AND name >= ?3 " \
	  "AND substr(name, 1, length(?3)) = ?3 GROUP BY name) l " \
	  "ON l.name = a.name AND a.version >= l.version " \
	  "WHERE a.tenant = ?1 AND (c.serial IN (SELECT value FROM " \
	  "json_each(?2)) OR i.serial IN (SELECT value FROM json_each(?2))) " \
	  "AND NOT EXISTS (SELECT 1 FROM envelopes e WHERE e.tenant = ?1 " \
	  "AND e.name = a.name AND e.recipient = a.agent) " \
	  "UNION ALL SELECT p.name, p.version, p.recipient, c.kind, c.name, " \
	  "'purged' FROM purged p JOIN certs c ON c.tenant = p.tenant " \
	  "AND c.fp = p.recipient LEFT JOIN certs i ON i.tenant = c.tenant " \
	  "AND i.fp = c.issuer_fp JOIN (SELECT name, MAX(version) AS " \
	  "version FROM versions WHERE tenant = ?1 AND name >= ?3 " \
	  "AND substr(name, 1, length(?3)) = ?3 GROUP BY name) l " \
	  "ON l.name = p.name AND p.version >= l.version " \
	  "WHERE p.tenant = ?1 AND (c.serial IN (SELECT value FROM " \
	  "json_each(?2)) OR i.serial IN (SELECT value FROM json_each(?2))) " \
	  "AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.tenant = ?1 " \
	  "AND a.name = p.name AND a.agent = p.recipient " \
	  "AND a.version >= p.version) " \
	  "AND NOT EXISTS (SELECT 1 FROM envelopes e WHERE e.tenant = ?1 " \
	  "AND e.name = p.name AND e.recipient = p.recipient)) " \
	  "ORDER BY name, recipient, version") \
	X(S_ROLLOUT, "SELECT COALESCE(SUM(CASE WHEN a.version >= e.version " \
	  "AND a.result = 'ok' THEN 1 ELSE 0 END), 0), " \
	  "COALESCE(SUM(CASE WHEN a.version >= e.version " \
	  "AND a.result = 'failed' THEN 1 ELSE 0 END), 0), " \
	  "COALESCE(SUM(CASE WHEN a.version IS NULL OR a.version < e.version " \
	  "THEN 1 ELSE 0 END), 0) FROM (SELECT tenant, name, " \
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
	  "(SELECT COUNT(*) FROM (SELECT MAX(version), deleted FROM versions " \
	  "GROUP BY tenant, name) WHERE deleted = 0), " \
	  "(SELECT COUNT(*) FROM envelopes), " \
	  "(SELECT COALESCE(SUM(length(der)), 0) FROM envelopes), " \
	  "(SELECT COUNT(*) FROM audit), " \
	  "(SELECT COALESCE(MAX(seq), 0) FROM feed)")

#define STMT_ENUM(id, sql) id,
#define STMT_SQL(id, sql) sql,
enum stmt_id { STMTS(STMT_ENUM) S_COUNT };
static const char *const stmt_sql[S_COUNT] = { STMTS(STMT_SQL) };

typedef struct sq_store {
	cf_store base;          /* first: cf_store * <-> sq_store * */
	sqlite3 *db;
	char *path;
	int schema;
	int writing;            /* holds write_mu */
	sqlite3_stmt *stmt[S_COUNT];
} sq_store;

/* One writer at a time in this process (see the invariants above). */
static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER;

static void write_lock(sq_store *s)
{
	if (!s->writing) {
		pthread_mutex_lock(&write_mu);
		s->writing = 1;
	}
}

static void write_unlock(sq_store *s)
{
	if (s->writing) {
		s->writing = 0;
		pthread_mutex_unlock(&write_mu);
	}
}

static sq_store *sq(cf_store *st)
{
	return (sq_store *)st;
}

/* ---- errors ---------------------------------------------------------- */

/* Maps an SQLite failure while doing `what` to a status and sentence. */
static cf_status db_fail(sq_store *s, int code, const char *what,
			 cf_error *err)
{
	int primary = code & 0xff;

	switch (primary) {
	case SQLITE_NOMEM:
		return cf_error_set(err, CF_ERR_NOMEM,
				    "database %s: out of memory while %s",
				    s->path, what);
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return cf_error_set(err, CF_ERR_STORE,
				    "database %s is busy: another writer held "
				    "it for more than %d s while %s; retry",
				    s->path, BUSY_TIMEOUT_MS / 1000, what);
	case SQLITE_FULL:
		return cf_error_set(err, CF_ERR_STORE,
				    "database %s: the disk is full while %s; "
				    "free some space", s->path, what);
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
		return cf_error_set(err, CF_ERR_STORE,
				    "database %s cannot be written while %s "
				    "(%s); check the file's and its "
				    "directory's permissions", s->path, what,
				    sqlite3_errmsg(s->db));
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return cf_error_set(err, CF_ERR_STORE,
				    "database %s is not a coffer database or "
				    "is damaged (%s)", s->path,
				    sqlite3_errmsg(s->db));
	default:
		return cf_error_set(err, CF_ERR_STORE,
				    "database %s: %s failed: %s", s->path,
				    what, sqlite3_errmsg(s->db));
	}
}

/* ---- statement helpers ----------------------------------------------- */

/* The cached statement id, prepared on first use; NULL with err set. */
static sqlite3_stmt *prep(sq_store *s, enum stmt_id id, cf_error *err)
{
	int rc;

	if (s->stmt[id] != NULL)
		return s->stmt[id];
	rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1,
				SQLITE_PREPARE_PERSISTENT, &s->stmt[id], NULL);
	if (rc != SQLITE_OK) {
		db_fail(s, rc, "preparing a statement", err);
		sqlite3_finalize(s->stmt[id]);
		s->stmt[id] = NULL;
		return NULL;
	}
	return s->stmt[id];
}

static void done(sqlite3_stmt *q)
{
	if (q != NULL) {
		sqlite3_reset(q);
		sqlite3_clear_bindings(q);
	}
}

/* Binds text (NULL binds SQL NULL); the string must outlive the step. */
static int bind_text(sqlite3_stmt *q, int i, const char *v)
{
	if (v == NULL)
		return sqlite3_bind_null(q, i);
	return sqlite3_bind_text(q, i, v, -1, SQLITE_STATIC);
}

static int bind_blob(sqlite3_stmt *q, int i, const void *v, size_t len)
{
	if (v == NULL)
		return sqlite3_bind_null(q, i);
	return sqlite3_bind_blob64(q, i, v, (sqlite3_uint64)len,
				   SQLITE_STATIC);
}

/* Steps a statement that returns no rows, then resets it. */
static cf_status run(sq_store *s, sqlite3_stmt *q, const char *what,
		     cf_error *err)
{
	int rc = sqlite3_step(q);
	cf_status st = CF_OK;

	if (rc != SQLITE_DONE)
		st = db_fail(s, rc, what, err);
	done(q);
	return st;
}

static void col_fixed(sqlite3_stmt *q, int i, char *dst, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(q, i);

	snprintf(dst, cap, "%s", t != NULL ? (const char *)t : "");
}

/* A heap copy of column i, NULL for SQL NULL; 0 on allocation failure. */
static int col_dup(sqlite3_stmt *q, int i, char **dst)
{
	const unsigned char *t;

	*dst = NULL;
	if (sqlite3_column_type(q, i) == SQLITE_NULL)
		return 1;
	t = sqlite3_column_text(q, i);
	if (t == NULL)
		return 0;
	*dst = strdup((const char *)t);
	return *dst != NULL;
}

static int col_blob(sqlite3_stmt *q, int i, unsigned char **dst,
		    size_t *len)
{
	const void *b = sqlite3_column_blob(q, i);
	int n = sqlite3_column_bytes(q, i);

	*dst = NULL;
	*len = 0;
	if (b == NULL || n <= 0)
		return sqlite3_column_type(q, i) == SQLITE_NULL || n == 0;
	*dst = malloc((size_t)n);
	if (*dst == NULL)
		return 0;
	memcpy(*dst, b, (size_t)n);
	*len = (size_t)n;
	return 1;
}

/* Makes room for one more element of size elem in *arr; 0 if no memory. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	size_t want;
	void *p;

	if (n < *cap)
		return 1;
	if (elem == 0 || *cap > SIZE_MAX / 2)
		return 0;
	want = *cap == 0 ? 16 : *cap * 2;
	if (want > SIZE_MAX / elem)
		return 0;
	p = realloc(*arr, want * elem);
	if (p == NULL)
		return 0;
	memset((char *)p + *cap * elem, 0, (want - *cap) * elem);
	*arr = p;
	*cap = want;
	return 1;
}

static cf_status nomem(sq_store *s, const char *what, cf_error *err)
{
	return cf_error_set(err, CF_ERR_NOMEM,
			    "database %s: out of memory while %s", s->path,
			    what);
}

/* ---- reading rows ----------------------------------------------------- */

/* Fills elem from the current row of q; 0 if out of memory. */
typedef int (*read_row_fn)(sqlite3_stmt *q, void *elem);
/* Frees what a read_row_fn allocated inside one element. */
typedef void (*clear_row_fn)(void *elem);

/*
 * Steps q (prepared and bound) once: the row, if any, is read into elem
 * and *found is 1; no row is CF_OK with *found 0.  `what` names the work
 * in an error sentence.  Resets q.
 */
static cf_status get_row(sq_store *s, sqlite3_stmt *q, read_row_fn read,
			 void *elem, int *found, const char *what,
			 cf_error *err)
{
	cf_status rc = CF_OK;
	int src = sqlite3_step(q);

	*found = src == SQLITE_ROW;
	if (src == SQLITE_ROW) {
		if (!read(q, elem))
			rc = nomem(s, what, err);
	} else if (src != SQLITE_DONE) {
		rc = db_fail(s, src, what, err);
	}
	done(q);
	return rc;
}

/*
 * Steps q (prepared and bound) to its end, reading every row into a
 * malloc'ed array of elem_size elements.  On success *out (NULL if there
 * were no rows) and *n receive it; on failure all that was read is freed
 * (clear, if not NULL, on each element) and *out and *n are untouched.
 * Resets q.
 */
static cf_status collect_rows(sq_store *s, sqlite3_stmt *q, size_t elem_size,
			      read_row_fn read, clear_row_fn clear,
			      const char *what, void **out, size_t *n,
			      cf_error *err)
{
	void *arr = NULL;
	size_t cap = 0, cnt = 0;
	cf_status rc = CF_OK;
	int src;

	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		/* cnt counts an element whose read failed: it is cleared. */
		if (!grow(&arr, &cap, cnt, elem_size) ||
		    !read(q, (char *)arr + cnt++ * elem_size)) {
			rc = nomem(s, what, err);
			break;
		}
	}
	if (rc == CF_OK && src != SQLITE_DONE)
		rc = db_fail(s, src, what, err);
	done(q);
	if (rc != CF_OK) {
		for (size_t i = 0; clear != NULL && i < cnt; i++)
			clear((char *)arr + i * elem_size);
		free(arr);
		return rc;
	}
	*out = arr;
	*n = cnt;
	return CF_OK;
}

/* Column 0 as an int64_t. */
static int read_int64(sqlite3_stmt *q, void *elem)
{
	*(int64_t *)elem = sqlite3_column_int64(q, 0);
	return 1;
}

/* Column 0 as a certificate fingerprint, into a char[65]. */
static int read_fp(sqlite3_stmt *q, void *elem)
{
	col_fixed(q, 0, elem, 65);
	return 1;
}

/* ---- transactions ---------------------------------------------------- */

static cf_status tx_begin(sq_store *s, cf_error *err)
{
	sqlite3_stmt *q = prep(s, S_BEGIN, err);
	int rc = SQLITE_ERROR;

	if (q == NULL)
		return CF_ERR_STORE;
	write_lock(s);
	/* busy_timeout already waited; a retry covers a writer that kept
	 * the lock across our whole wait by a hair. */
	for (int i = 0; i < BEGIN_ATTEMPTS; i++) {
		rc = sqlite3_step(q);
		sqlite3_reset(q);
		if (rc == SQLITE_DONE)
			return CF_OK;
		if ((rc & 0xff) != SQLITE_BUSY)
			break;
	}
	write_unlock(s);
	return db_fail(s, rc, "starting a transaction", err);
}

static void tx_rollback(sq_store *s)
{
	sqlite3_stmt *q;

	if (sqlite3_get_autocommit(s->db)) {
		write_unlock(s);
		return;
	}
	q = prep(s, S_ROLLBACK, NULL);
	if (q != NULL) {
		sqlite3_step(q);
		sqlite3_reset(q);
	}
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	write_unlock(s);
}

static cf_status tx_commit(sq_store *s, cf_error *err)
{
	sqlite3_stmt *q = prep(s, S_COMMIT, err);
	cf_status rc;

	/* A failed COMMIT is rolled back here, so write_mu never stays held
	 * whatever the caller does next (its own rollback is then a no-op). */
	if (q == NULL) {
		tx_rollback(s);
		return CF_ERR_STORE;
	}
	rc = run(s, q, "committing", err);
	if (rc == CF_OK)
		write_unlock(s);
	else
		tx_rollback(s);
	return rc;
}

/*
 * Ends the open transaction: commits it if rc is CF_OK, else rolls it
 * back.  The outcome: rc, or the failure to commit.
 */
static cf_status tx_end(sq_store *s, cf_status rc, cf_error *err)
{
	if (rc == CF_OK)
		return tx_commit(s, err);
	tx_rollback(s);
	return rc;
}

/* ---- audit chain ----------------------------------------------------- */

/*
 * Appends a copy of tmpl inside the open transaction: tenant (if not NULL)
 * replaces the template's; object (if not NULL) fills an empty one, or
 * replaces it when OBJECT_FORCE; time 0 becomes now; seq, prev and hash
 * extend the tenant's chain.
 */
#define OBJECT_FORCE 1

/*
 * The head of one tenant's chain as this transaction left it, so that a
 * batch of entries (sq_audit_append_many) reads it from the table once.
 * Valid only inside the transaction that filled it.
 */
typedef struct chain_head {
	int valid;
	char tenant[65];
	int64_t seq;
	char hash[65];
} chain_head;

static cf_status audit_write_head(sq_store *s, const cf_audit_entry *tmpl,
				  const char *tenant, const char *object,
				  int force, chain_head *head, cf_error *err);

static cf_status audit_write_obj(sq_store *s, const cf_audit_entry *tmpl,
				 const char *tenant, const char *object,
				 int force, cf_error *err)
{
	return audit_write_head(s, tmpl, tenant, object, force, NULL, err);
}

static cf_status audit_write_head(sq_store *s, const cf_audit_entry *tmpl,
				  const char *tenant, const char *object,
				  int force, chain_head *head, cf_error *err)
{
	cf_audit_entry e = *tmpl;
	sqlite3_stmt *q;
	cf_status rc = CF_OK;
	int src, b = 0;

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
		if ((q = prep(s, S_AUDIT_LAST, err)) == NULL)
			return CF_ERR_STORE;
		bind_text(q, 1, e.tenant);
		src = sqlite3_step(q);
		if (src == SQLITE_ROW) {
			e.seq = sqlite3_column_int64(q, 0) + 1;
			col_fixed(q, 1, e.prev, sizeof(e.prev));
		} else if (src == SQLITE_DONE) {
			e.seq = 1;
			memcpy(e.prev, cf_audit_genesis, sizeof(e.prev));
		} else {
			rc = db_fail(s, src, "reading the audit chain", err);
		}
		done(q);
		if (rc != CF_OK)
			return rc;
	}
	if ((rc = cf_audit_hash(&e, e.hash, err)) != CF_OK)
		return rc;
	if (head != NULL) {
		head->valid = 1;
		snprintf(head->tenant, sizeof(head->tenant), "%s", e.tenant);
		head->seq = e.seq;
		memcpy(head->hash, e.hash, sizeof(head->hash));
	}
	if ((q = prep(s, S_AUDIT_INS, err)) == NULL)
		return CF_ERR_STORE;
	b |= bind_text(q, 1, e.tenant);
	b |= sqlite3_bind_int64(q, 2, e.seq);
	b |= sqlite3_bind_int64(q, 3, e.time);
	b |= bind_text(q, 4, e.actor);
	b |= bind_text(q, 5, e.subject);
	b |= bind_text(q, 6, e.source);
	b |= bind_text(q, 7, e.action);
	b |= bind_text(q, 8, e.object);
	b |= sqlite3_bind_int64(q, 9, e.bytes);
	b |= bind_text(q, 10, e.prev);
	b |= bind_text(q, 11, e.hash);
	if (b != SQLITE_OK) {
		done(q);
		return db_fail(s, b, "binding an audit entry", err);
	}
	return run(s, q, "appending to the audit log", err);
}

static cf_status audit_write(sq_store *s, const cf_audit_entry *tmpl,
			     const char *tenant, const char *object,
			     cf_error *err)
{
	return audit_write_obj(s, tmpl, tenant, object, 0, err);
}

/* ---- open, close, migrations ----------------------------------------- */

static int read_user_version(sq_store *s, int *version)
{
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q,
				    NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(q);
		if (rc == SQLITE_ROW) {
			*version = sqlite3_column_int(q, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(q);
	return rc;
}

static cf_status too_new(sq_store *s, int version, cf_error *err)
{
	return cf_error_set(err, CF_ERR_STORE,
			    "database %s has schema version %d, newer than "
			    "the %d this coffer knows; run the coffer that "
			    "wrote it, or upgrade", s->path, version,
			    SCHEMA_VERSION);
}

static cf_status migrate(sq_store *s, cf_error *err)
{
	cf_status rc = CF_OK;
	char pragma[64];
	int version = 0, src;

	if ((src = read_user_version(s, &version)) != SQLITE_OK)
		return db_fail(s, src, "reading the schema version", err);
	if (version > SCHEMA_VERSION)
		return too_new(s, version, err);
	while (version < SCHEMA_VERSION) {
		if ((rc = tx_begin(s, err)) != CF_OK)
			return rc;
		/* Another connection may have migrated while we waited. */
		if ((src = read_user_version(s, &version)) != SQLITE_OK) {
			rc = db_fail(s, src, "reading the schema version", err);
			goto out;
		}
		if (version > SCHEMA_VERSION) {
			rc = too_new(s, version, err);
			goto out;
		}
		if (version == SCHEMA_VERSION)
			break;
		src = sqlite3_exec(s->db, cf_schema_steps[version].sqlite, NULL, NULL,
				   NULL);
		if (src != SQLITE_OK) {
			rc = cf_error_set(err, CF_ERR_STORE,
					  "database %s: schema step %d failed: "
					  "%s (is it a coffer database?)",
					  s->path, version + 1,
					  sqlite3_errmsg(s->db));
			goto out;
		}
		/* A PRAGMA takes no parameters; the number is our own. */
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d",
			 version + 1);
		src = sqlite3_exec(s->db, pragma, NULL, NULL, NULL);
		if (src != SQLITE_OK) {
			rc = db_fail(s, src, "recording the schema version",
				     err);
			goto out;
		}
		if ((rc = tx_commit(s, err)) != CF_OK)
			goto out;
		version++;
	}
out:
	if (rc != CF_OK)
		tx_rollback(s);
	else if (!sqlite3_get_autocommit(s->db))
		rc = tx_commit(s, err);
	if (rc == CF_OK)
		s->schema = version;
	return rc;
}

/* Runs a settings PRAGMA that needs no lock. */
static cf_status pragma(sq_store *s, const char *sql, cf_error *err)
{
	int src = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

	return src == SQLITE_OK ? CF_OK : db_fail(s, src, sql, err);
}

/*
 * Switches to WAL.  The switch needs an exclusive lock and SQLite does not
 * call the busy handler for it, so connections opening a new database at
 * the same moment would see SQLITE_BUSY at once: wait here instead, up to
 * the busy timeout.
 */
static cf_status set_wal(sq_store *s, cf_error *err)
{
	const struct timespec pause = { 0, 10 * 1000 * 1000 };
	cf_status rc = CF_OK;

	for (int waited_ms = 0;; waited_ms += 10) {
		sqlite3_stmt *q = NULL;
		const unsigned char *mode = NULL;
		int src = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL",
					     -1, &q, NULL);

		if (src == SQLITE_OK) {
			src = sqlite3_step(q);
			if (src == SQLITE_ROW)
				mode = sqlite3_column_text(q, 0);
		}
		if (src == SQLITE_ROW) {
			if (mode == NULL ||
			    sqlite3_stricmp((const char *)mode, "wal") != 0)
				rc = cf_error_set(err, CF_ERR_STORE,
						  "database %s cannot use WAL "
						  "(journal mode stays %s)",
						  s->path,
						  mode != NULL ?
							  (const char *)mode :
							  "unknown");
			sqlite3_finalize(q);
			return rc;
		}
		sqlite3_finalize(q);
		if ((src & 0xff) != SQLITE_BUSY || waited_ms >= BUSY_TIMEOUT_MS)
			return db_fail(s, src, "switching to WAL", err);
		nanosleep(&pause, NULL);
	}
}

static void sq_free(cf_store *st)
{
	sq_store *s = sq(st);

	tx_rollback(s);  /* never leave write_mu held */
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	if (s->db != NULL)
		sqlite3_close_v2(s->db);
	free(s->path);
	free(s);
}

static int sq_schema_version(cf_store *st)
{
	return sq(st)->schema;
}

static const cf_store_ops sqlite_ops;

cf_status cf_store_sqlite_open(const char *path, unsigned flags,
			       cf_store **out, cf_error *err)
{
	sq_store *s = NULL;
	struct stat sb;
	cf_status rc = CF_OK;
	int src;

	*out = NULL;
	if (stat(path, &sb) != 0) {
		int fd;

		if (errno != ENOENT)
			return cf_error_set(err, CF_ERR_STORE,
					    "database %s: %s", path,
					    strerror(errno));
		if (!(flags & CF_STORE_CREATE))
			return cf_error_set(err, CF_ERR_NOT_FOUND,
					    "no database at %s; run coffer "
					    "server init", path);
		/* Created here, not by SQLite, for mode 0600: the WAL and
		 * shared-memory files then inherit it. */
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			return cf_error_set(err, CF_ERR_STORE,
					    "cannot create database %s: %s",
					    path, strerror(errno));
		if (fd >= 0)
			close(fd);
	} else if (!S_ISREG(sb.st_mode)) {
		return cf_error_set(err, CF_ERR_STORE,
				    "database %s is not a regular file", path);
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->path = strdup(path)) == NULL) {
		free(s);
		return cf_error_set(err, CF_ERR_NOMEM,
				    "out of memory opening database %s", path);
	}
	s->base.ops = &sqlite_ops;
	src = sqlite3_open_v2(path, &s->db,
			      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			      NULL);
	if (src != SQLITE_OK) {
		if (s->db == NULL)
			rc = cf_error_set(err, CF_ERR_NOMEM,
					  "out of memory opening database %s",
					  path);
		else
			rc = db_fail(s, src, "opening", err);
		goto out;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	if ((rc = set_wal(s, err)) != CF_OK ||
	    (rc = pragma(s, "PRAGMA foreign_keys = ON", err)) != CF_OK ||
	    (rc = pragma(s, (flags & CF_STORE_SYNC_FULL) ?
				    "PRAGMA synchronous = FULL" :
				    "PRAGMA synchronous = NORMAL",
			 err)) != CF_OK)
		goto out;
	rc = migrate(s, err);
out:
	if (rc != CF_OK)
		sq_free(&s->base);
	else
		*out = &s->base;
	return rc;
}

/* ---- tenants -------------------------------------------------------- */

static int read_tenant(sqlite3_stmt *q, void *elem)
{
	cf_tenant *t = elem;

	col_fixed(q, 0, t->id, sizeof(t->id));
	t->crl_number = sqlite3_column_int64(q, 3);
	t->created = sqlite3_column_int64(q, 4);
	return col_dup(q, 1, &t->root_pem) && col_dup(q, 2, &t->crl_pem);
}

static void clear_tenant(void *elem)
{
	cf_tenant_clear(elem);
}

static cf_status sq_tenant_add(cf_store *st, const char *id,
			       const char *root_pem,
			       const cf_audit_entry *audit, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_status rc;
	int src;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((q = prep(s, S_TENANT_INS, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, id);
	bind_text(q, 2, root_pem);
	sqlite3_bind_int64(q, 3, (int64_t)time(NULL));
	src = sqlite3_step(q);
	done(q);
	if (src == SQLITE_CONSTRAINT_PRIMARYKEY) {
		rc = cf_error_set(err, CF_ERR_EXISTS,
				  "tenant %s is already registered", id);
		goto out;
	}
	if (src != SQLITE_DONE) {
		rc = db_fail(s, src, "adding a tenant", err);
		goto out;
	}
	rc = audit_write(s, audit, id, id, err);
out:
	return tx_end(s, rc, err);
}

static cf_status sq_tenant_get(cf_store *st, const char *id, cf_tenant *out,
			       cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_TENANT_GET, err);
	cf_status rc;
	int found;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, id);
	rc = get_row(s, q, read_tenant, out, &found, "reading a tenant", err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "no tenant %s; register its root with "
				  "coffer server tenant add", id);
	if (rc != CF_OK)
		cf_tenant_clear(out);
	return rc;
}

static cf_status sq_tenant_list(cf_store *st, cf_tenant **out, size_t *n,
				cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_TENANT_LIST, err);

	if (q == NULL)
		return CF_ERR_STORE;
	return collect_rows(s, q, sizeof(**out), read_tenant, clear_tenant,
			    "listing tenants", (void **)out, n, err);
}

static cf_status sq_tenant_set_crl(cf_store *st, const char *id,
				   const char *crl_pem, int64_t crl_number,
				   const cf_audit_entry *audit, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_status rc;
	int64_t stored = -1;
	int found;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((q = prep(s, S_TENANT_CRL_NUMBER, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, id);
	if ((rc = get_row(s, q, read_int64, &stored, &found,
			  "reading a tenant's CRL number", err)) != CF_OK)
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
	if ((q = prep(s, S_TENANT_SET_CRL, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, id);
	bind_text(q, 2, crl_pem);
	sqlite3_bind_int64(q, 3, crl_number);
	if ((rc = run(s, q, "storing a CRL", err)) == CF_OK)
		rc = audit_write(s, audit, id, NULL, err);
out:
	return tx_end(s, rc, err);
}

/* ---- certificate directory ------------------------------------------ */

static int read_cert(sqlite3_stmt *q, void *elem)
{
	cf_cert_row *r = elem;

	col_fixed(q, 0, r->tenant, sizeof(r->tenant));
	col_fixed(q, 1, r->fp, sizeof(r->fp));
	col_fixed(q, 2, r->kind, sizeof(r->kind));
	col_fixed(q, 3, r->name, sizeof(r->name));
	col_fixed(q, 5, r->cluster, sizeof(r->cluster));
	col_fixed(q, 6, r->issuer_fp, sizeof(r->issuer_fp));
	col_fixed(q, 7, r->serial, sizeof(r->serial));
	r->not_after = sqlite3_column_int64(q, 8);
	r->created = sqlite3_column_int64(q, 10);
	return col_dup(q, 4, &r->groups) && col_dup(q, 9, &r->pem);
}

static void clear_cert(void *elem)
{
	cf_cert_row_clear(elem);
}

/* Inserts row (and its groups) in the open transaction unless there. */
static cf_status cert_insert(sq_store *s, const cf_cert_row *row,
			     int *inserted, cf_error *err)
{
	sqlite3_stmt *q = prep(s, S_CERT_INS, err);
	char what[128];
	cf_status rc;
	int src;

	*inserted = 0;
	if (q == NULL)
		return CF_ERR_STORE;
	snprintf(what, sizeof(what), "adding certificate %.16s", row->fp);
	bind_text(q, 1, row->tenant);
	bind_text(q, 2, row->fp);
	bind_text(q, 3, row->kind);
	bind_text(q, 4, row->name);
	bind_text(q, 5, row->groups != NULL ? row->groups : "");
	bind_text(q, 6, row->cluster);
	bind_text(q, 7, row->issuer_fp);
	bind_text(q, 8, row->serial);
	sqlite3_bind_int64(q, 9, row->not_after);
	bind_text(q, 10, row->pem);
	sqlite3_bind_int64(q, 11, row->created != 0 ? row->created :
						      (int64_t)time(NULL));
	src = sqlite3_step(q);
	done(q);
	if (src == SQLITE_CONSTRAINT_FOREIGNKEY)
		return cf_error_set(err, CF_ERR_NOT_FOUND,
				    "certificate %.16s: no tenant %s",
				    row->fp, row->tenant);
	if (src != SQLITE_DONE)
		return db_fail(s, src, what, err);
	if (sqlite3_changes(s->db) == 0)
		return CF_OK;
	*inserted = 1;
	/* "web, db" -> rows "web" and "db". */
	for (const char *p = row->groups != NULL ? row->groups : "";
	     *p != '\0';) {
		char grp[CF_STORE_NAME_MAX + 1];
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *b = p, *e = p + len;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > b) {
			/* store.c refused this already; kept because grp
			 * is a fixed-size buffer. */
			if ((size_t)(e - b) > CF_STORE_NAME_MAX)
				return cf_error_set(err, CF_ERR_TOO_LARGE,
						    "certificate %.16s: a "
						    "group name is above %d "
						    "bytes", row->fp,
						    CF_STORE_NAME_MAX);
			memcpy(grp, b, (size_t)(e - b));
			grp[e - b] = '\0';
			if ((q = prep(s, S_CERT_GROUP_INS, err)) == NULL)
				return CF_ERR_STORE;
			bind_text(q, 1, row->tenant);
			bind_text(q, 2, grp);
			bind_text(q, 3, row->fp);
			if ((rc = run(s, q, what, err)) != CF_OK)
				return rc;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return CF_OK;
}

static cf_status sq_cert_put(cf_store *st, const cf_cert_row *row,
			     const cf_audit_entry *audit, cf_error *err)
{
	sq_store *s = sq(st);
	cf_status rc;
	int inserted = 0;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((rc = cert_insert(s, row, &inserted, err)) != CF_OK)
		goto out;
	/* Nothing changed, nothing to log. */
	if (inserted && audit != NULL)
		rc = audit_write(s, audit, row->tenant, row->fp, err);
out:
	return tx_end(s, rc, err);
}

static cf_status sq_cert_get(cf_store *st, const char *tenant, const char *fp,
			     cf_cert_row *out, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_CERT_GET, err);
	cf_status rc;
	int found;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, fp);
	rc = get_row(s, q, read_cert, out, &found, "reading a certificate",
		     err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "no certificate %s in the directory", fp);
	if (rc != CF_OK)
		cf_cert_row_clear(out);
	return rc;
}

static cf_status sq_cert_list(cf_store *st, const char *tenant,
			      const cf_cert_filter *f, cf_cert_row **out,
			      size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;

	q = prep(s, f->group != NULL ? S_CERT_LIST_GROUP : S_CERT_LIST, err);
	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, f->kind);
	bind_text(q, 3, f->name);
	bind_text(q, 4, f->fp);
	bind_text(q, 5, f->after_fp != NULL ? f->after_fp : "");
	sqlite3_bind_int64(q, 6, f->limit == 0 ? -1 : (int64_t)f->limit);
	if (f->group != NULL)
		bind_text(q, 7, f->group);
	return collect_rows(s, q, sizeof(**out), read_cert, clear_cert,
			    "listing certificates", (void **)out, n, err);
}

/* ---- join tokens ----------------------------------------------------- */

static int read_token(sqlite3_stmt *q, void *elem)
{
	cf_token_row *t = elem;

	col_fixed(q, 0, t->tenant, sizeof(t->tenant));
	col_fixed(q, 1, t->id, sizeof(t->id));
	col_fixed(q, 2, t->hash, sizeof(t->hash));
	col_fixed(q, 3, t->group, sizeof(t->group));
	t->uses = sqlite3_column_int64(q, 4);
	t->used = sqlite3_column_int64(q, 5);
	t->expires = sqlite3_column_int64(q, 6);
	t->created = sqlite3_column_int64(q, 7);
	col_fixed(q, 8, t->creator, sizeof(t->creator));
	t->revoked = sqlite3_column_int(q, 9);
	return col_blob(q, 10, &t->envelope, &t->envelope_len);
}

static void clear_token(void *elem)
{
	cf_token_row_clear(elem);
}

static cf_status sq_token_add(cf_store *st, const cf_token_row *rows,
			      size_t n, const cf_audit_entry *audit_template,
			      cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_status rc;
	int64_t now = (int64_t)time(NULL);
	int src;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	for (size_t i = 0; i < n; i++) {
		const cf_token_row *t = &rows[i];

		if ((q = prep(s, S_TOKEN_INS, err)) == NULL) {
			rc = CF_ERR_STORE;
			goto out;
		}
		bind_text(q, 1, t->tenant);
		bind_text(q, 2, t->id);
		bind_text(q, 3, t->hash);
		bind_text(q, 4, t->group);
		sqlite3_bind_int64(q, 5, t->uses);
		sqlite3_bind_int64(q, 6, t->expires);
		sqlite3_bind_int64(q, 7, t->created != 0 ? t->created : now);
		bind_text(q, 8, t->creator);
		bind_blob(q, 9, t->envelope, t->envelope_len);
		src = sqlite3_step(q);
		done(q);
		if (src == SQLITE_CONSTRAINT_PRIMARYKEY) {
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "token %s exists already; make a "
					  "new id", t->id);
			goto out;
		}
		if (src == SQLITE_CONSTRAINT_FOREIGNKEY) {
			rc = cf_error_set(err, CF_ERR_NOT_FOUND,
					  "token %s: no tenant %s", t->id,
					  t->tenant);
			goto out;
		}
		if (src != SQLITE_DONE) {
			rc = db_fail(s, src, "adding a token", err);
			goto out;
		}
		if ((rc = audit_write_obj(s, audit_template, t->tenant, t->id,
					  OBJECT_FORCE, err)) != CF_OK)
			goto out;
	}
out:
	return tx_end(s, rc, err);
}

static cf_status sq_token_get(cf_store *st, const char *id, cf_token_row *out,
			      cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_TOKEN_GET, err);
	cf_status rc;
	int found;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, id);
	rc = get_row(s, q, read_token, out, &found, "reading a token", err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "no token %s", id);
	if (rc != CF_OK)
		cf_token_row_clear(out);
	return rc;
}

static cf_status sq_token_list(cf_store *st, const char *tenant,
			       cf_token_row **out, size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_TOKEN_LIST, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	return collect_rows(s, q, sizeof(**out), read_token, clear_token,
			    "listing tokens", (void **)out, n, err);
}

static cf_status sq_token_revoke(cf_store *st, const char *tenant,
				 const char *id, const cf_audit_entry *audit,
				 cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_status rc;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((q = prep(s, S_TOKEN_REVOKE, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, id);
	if ((rc = run(s, q, "revoking a token", err)) != CF_OK)
		goto out;
	if (sqlite3_changes(s->db) == 0) {
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "no token %s in this tenant", id);
		goto out;
	}
	rc = audit_write(s, audit, tenant, id, err);
out:
	return tx_end(s, rc, err);
}

/* ---- enrollment requests --------------------------------------------- */

static int read_enroll(sqlite3_stmt *q, void *elem)
{
	cf_enroll_row *r = elem;

	col_fixed(q, 0, r->id, sizeof(r->id));
	col_fixed(q, 1, r->tenant, sizeof(r->tenant));
	col_fixed(q, 2, r->token_id, sizeof(r->token_id));
	col_fixed(q, 3, r->group, sizeof(r->group));
	col_fixed(q, 4, r->name, sizeof(r->name));
	col_fixed(q, 6, r->hmac, sizeof(r->hmac));
	col_fixed(q, 7, r->source, sizeof(r->source));
	col_fixed(q, 8, r->status, sizeof(r->status));
	col_fixed(q, 11, r->reason, sizeof(r->reason));
	col_fixed(q, 12, r->decided_by, sizeof(r->decided_by));
	r->created = sqlite3_column_int64(q, 13);
	r->decided = sqlite3_column_int64(q, 14);
	return col_dup(q, 5, &r->csr_pem) && col_dup(q, 9, &r->cert_pem) &&
	       col_dup(q, 10, &r->chain_pem);
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

static cf_status sq_enroll_add(cf_store *st, cf_enroll_row *row,
			       const char *token_hash, int64_t now,
			       const cf_audit_entry *audit_template,
			       cf_error *err)
{
	static const char refused[] =
		"join token refused: unknown token or wrong secret";
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_token_row tok = { 0 };
	char when[40];
	cf_status rc;
	int found;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((q = prep(s, S_TOKEN_GET, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, row->token_id);
	if ((rc = get_row(s, q, read_token, &tok, &found, "reading a token",
			  err)) != CF_OK)
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
	if ((q = prep(s, S_TOKEN_USE, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tok.id);
	if ((rc = run(s, q, "consuming a token use", err)) != CF_OK)
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

	if ((q = prep(s, S_ENROLL_INS, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, row->id);
	bind_text(q, 2, row->tenant);
	bind_text(q, 3, row->token_id);
	bind_text(q, 4, row->group);
	bind_text(q, 5, row->name);
	bind_text(q, 6, row->csr_pem);
	bind_text(q, 7, row->hmac);
	bind_text(q, 8, row->source);
	sqlite3_bind_int64(q, 9, now);
	if ((rc = run(s, q, "queueing an enrollment", err)) != CF_OK)
		goto out;
	rc = audit_write(s, audit_template, row->tenant, row->id, err);
out:
	if ((rc = tx_end(s, rc, err)) != CF_OK)
		row->id[0] = '\0';
	cf_token_row_clear(&tok);
	return rc;
}

static cf_status sq_enroll_get(cf_store *st, const char *id,
			       cf_enroll_row *out, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_ENROLL_GET, err);
	cf_status rc;
	int found;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, id);
	rc = get_row(s, q, read_enroll, out, &found, "reading an enrollment",
		     err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "no enrollment request %s", id);
	if (rc != CF_OK)
		cf_enroll_row_clear(out);
	return rc;
}

static cf_status sq_enroll_list(cf_store *st, const char *tenant,
				const char *status, cf_enroll_row **out,
				size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_ENROLL_LIST, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, status);
	return collect_rows(s, q, sizeof(**out), read_enroll, clear_enroll,
			    "listing enrollments", (void **)out, n, err);
}

static cf_status sq_enroll_decide(cf_store *st, const char *tenant,
				  const char *id, int approve,
				  const cf_cert_row *cert,
				  const char *chain_pem, const char *reason,
				  const char *decided_by, int64_t now,
				  const cf_audit_entry *audit, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	char status[16] = "";
	cf_status rc;
	int src, inserted;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((q = prep(s, S_ENROLL_DECIDE, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, id);
	bind_text(q, 3, approve ? "approved" : "rejected");
	bind_text(q, 4, approve ? cert->pem : NULL);
	bind_text(q, 5, approve ? (chain_pem != NULL ? chain_pem : "") : NULL);
	bind_text(q, 6, !approve && reason != NULL ? reason : "");
	bind_text(q, 7, decided_by);
	sqlite3_bind_int64(q, 8, now);
	if ((rc = run(s, q, "deciding an enrollment", err)) != CF_OK)
		goto out;
	if (sqlite3_changes(s->db) == 0) {
		/* Tell a missing request from one already decided. */
		if ((q = prep(s, S_ENROLL_STATUS, err)) == NULL) {
			rc = CF_ERR_STORE;
			goto out;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, id);
		src = sqlite3_step(q);
		if (src == SQLITE_ROW)
			col_fixed(q, 0, status, sizeof(status));
		done(q);
		if (src == SQLITE_ROW)
			rc = cf_error_set(err, CF_ERR_CONFLICT,
					  "enrollment %s is already %s", id,
					  status);
		else if (src == SQLITE_DONE)
			rc = cf_error_set(err, CF_ERR_NOT_FOUND,
					  "no enrollment request %s in this "
					  "tenant", id);
		else
			rc = db_fail(s, src, "reading an enrollment", err);
		goto out;
	}
	if (approve && (rc = cert_insert(s, cert, &inserted, err)) != CF_OK)
		goto out;
	rc = audit_write(s, audit, tenant, id, err);
out:
	return tx_end(s, rc, err);
}

/* ---- secrets and envelopes ------------------------------------------- */

static int read_version(sqlite3_stmt *q, void *elem)
{
	cf_secret_row *r = elem;

	col_fixed(q, 0, r->name, sizeof(r->name));
	r->version = sqlite3_column_int64(q, 1);
	r->created = sqlite3_column_int64(q, 2);
	col_fixed(q, 3, r->writer, sizeof(r->writer));
	r->recipients = sqlite3_column_int64(q, 4);
	r->bytes = sqlite3_column_int64(q, 5);
	r->deleted = sqlite3_column_int(q, 6);
	return 1;
}

/* The latest version row of name; *found 0 if it never had one. */
static cf_status version_latest(sq_store *s, const char *tenant,
				const char *name, cf_secret_row *out,
				int *found, cf_error *err)
{
	sqlite3_stmt *q = prep(s, S_VERSION_LATEST, err);

	*found = 0;
	memset(out, 0, sizeof(*out));
	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, name);
	return get_row(s, q, read_version, out, found,
		       "reading a secret's versions", err);
}

/* The refusal of a version of name that is not above latest. */
static cf_status version_conflict(const char *name, int64_t latest,
				  cf_error *err)
{
	return cf_error_set(err, CF_ERR_CONFLICT,
			    "secret %s is at version %" PRId64
			    "; upload version %" PRId64, name, latest,
			    latest + 1);
}

/* CF_OK if version is above every version name has had. */
static cf_status version_is_new(sq_store *s, const char *tenant,
				const char *name, int64_t version,
				cf_error *err)
{
	cf_secret_row latest;
	cf_status rc;
	int found;

	rc = version_latest(s, tenant, name, &latest, &found, err);
	if (rc == CF_OK && found && version <= latest.version)
		rc = version_conflict(name, latest.version, err);
	return rc;
}

/* Replaces recipient's feed row of name; *seq receives its new number. */
static cf_status feed_set(sq_store *s, const char *tenant,
			  const char *recipient, const char *name,
			  int64_t version, int deleted, const char *writer,
			  int64_t now, int64_t *seq, cf_error *err)
{
	sqlite3_stmt *q = prep(s, S_FEED_DEL, err);
	cf_status rc;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, recipient);
	bind_text(q, 3, name);
	if ((rc = run(s, q, "updating the feed", err)) != CF_OK)
		return rc;
	if ((q = prep(s, S_FEED_INS, err)) == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, recipient);
	bind_text(q, 3, name);
	sqlite3_bind_int64(q, 4, version);
	sqlite3_bind_int(q, 5, deleted);
	bind_text(q, 6, writer);
	sqlite3_bind_int64(q, 7, now);
	if ((rc = run(s, q, "updating the feed", err)) != CF_OK)
		return rc;
	*seq = sqlite3_last_insert_rowid(s->db);
	return CF_OK;
}

static cf_status version_insert(sq_store *s, const char *tenant,
				const char *name, int64_t version,
				int64_t now, const char *writer,
				int64_t recipients, int64_t bytes,
				int deleted, cf_error *err)
{
	sqlite3_stmt *q = prep(s, S_VERSION_INS, err);
	int src;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, name);
	sqlite3_bind_int64(q, 3, version);
	sqlite3_bind_int64(q, 4, now);
	bind_text(q, 5, writer);
	sqlite3_bind_int64(q, 6, recipients);
	sqlite3_bind_int64(q, 7, bytes);
	sqlite3_bind_int(q, 8, deleted);
	src = sqlite3_step(q);
	done(q);
	if (src == SQLITE_CONSTRAINT_FOREIGNKEY)
		return cf_error_set(err, CF_ERR_NOT_FOUND,
				    "secret %s: no tenant %s", name, tenant);
	if (src != SQLITE_DONE)
		return db_fail(s, src, "recording a secret version", err);
	return CF_OK;
}

static cf_status sq_secret_put(cf_store *st, const char *tenant,
			       const char *name, int64_t version,
			       const char *writer, int64_t now,
			       const cf_envelope_in *envs, size_t n,
			       const cf_audit_entry *audit, int64_t *seq_out,
			       cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_status rc;
	int64_t bytes = 0, seq = 0;
	int src;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((rc = version_is_new(s, tenant, name, version, err)) != CF_OK)
		goto out;
	for (size_t i = 0; i < n; i++)
		bytes += (int64_t)envs[i].len;
	if ((rc = version_insert(s, tenant, name, version, now, writer,
				 (int64_t)n, bytes, 0, err)) != CF_OK)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if ((rc = feed_set(s, tenant, envs[i].recipient, name, version,
				   0, writer, now, &seq, err)) != CF_OK)
			goto out;
		if ((q = prep(s, S_ENVELOPE_INS, err)) == NULL) {
			rc = CF_ERR_STORE;
			goto out;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, name);
		sqlite3_bind_int64(q, 3, version);
		bind_text(q, 4, envs[i].recipient);
		sqlite3_bind_int64(q, 5, seq);
		bind_blob(q, 6, envs[i].der, envs[i].len);
		src = sqlite3_step(q);
		done(q);
		if (src == SQLITE_CONSTRAINT_UNIQUE) {
			rc = cf_error_set(err, CF_ERR_USAGE,
					  "secret %s: recipient %s has two "
					  "envelopes in one version", name,
					  envs[i].recipient);
			goto out;
		}
		if (src != SQLITE_DONE) {
			rc = db_fail(s, src, "storing an envelope", err);
			goto out;
		}
	}
	rc = audit_write(s, audit, tenant, name, err);
out:
	if ((rc = tx_end(s, rc, err)) == CF_OK && seq_out != NULL)
		*seq_out = seq;
	return rc;
}

static cf_status sq_secret_delete(cf_store *st, const char *tenant,
				  const char *name, const char *writer,
				  int64_t now, const cf_audit_entry *audit,
				  char (**recipients_out)[65], size_t *n_out,
				  cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_secret_row latest;
	char (*rcpt)[65] = NULL;
	size_t cnt = 0;
	cf_status rc;
	int64_t seq;
	int found;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((rc = version_latest(s, tenant, name, &latest, &found, err)) !=
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
	if ((q = prep(s, S_FEED_NAME_RECIPIENTS, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, name);
	if ((rc = collect_rows(s, q, sizeof(*rcpt), read_fp, NULL,
			       "deleting a secret", (void **)&rcpt, &cnt,
			       err)) != CF_OK)
		goto out;
	if ((q = prep(s, S_ENVELOPE_DEL_NAME, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, name);
	if ((rc = run(s, q, "deleting envelopes", err)) != CF_OK ||
	    (rc = version_insert(s, tenant, name, latest.version + 1, now,
				 writer, 0, 0, 1, err)) != CF_OK)
		goto out;
	for (size_t i = 0; i < cnt; i++)
		if ((rc = feed_set(s, tenant, rcpt[i], name,
				   latest.version + 1, 1, writer, now, &seq,
				   err)) != CF_OK)
			goto out;
	rc = audit_write(s, audit, tenant, name, err);
out:
	if ((rc = tx_end(s, rc, err)) != CF_OK) {
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

static cf_status sq_secret_latest(cf_store *st, const char *tenant,
				  const char *name, cf_secret_row *out,
				  cf_error *err)
{
	cf_status rc;
	int found;

	rc = version_latest(sq(st), tenant, name, out, &found, err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "no secret %s", name);
	return rc;
}

static cf_status list_versions(sq_store *s, sqlite3_stmt *q,
			       cf_secret_row **out, size_t *n, cf_error *err)
{
	return collect_rows(s, q, sizeof(**out), read_version, NULL,
			    "listing secrets", (void **)out, n, err);
}

static cf_status sq_secret_list(cf_store *st, const char *tenant,
				const char *prefix, cf_secret_row **out,
				size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_SECRET_LIST, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, prefix);
	return list_versions(s, q, out, n, err);
}

static cf_status sq_secret_history(cf_store *st, const char *tenant,
				   const char *name, cf_secret_row **out,
				   size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_VERSION_HISTORY, err);
	cf_status rc;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, name);
	rc = list_versions(s, q, out, n, err);
	if (rc == CF_OK && *n == 0)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "no secret %s", name);
	return rc;
}

/* An envelope row of S_ENVELOPE_GET; the name is the caller's. */
static int read_envelope(sqlite3_stmt *q, void *elem)
{
	cf_feed_item *it = elem;

	it->seq = sqlite3_column_int64(q, 0);
	it->version = sqlite3_column_int64(q, 1);
	col_fixed(q, 2, it->writer, sizeof(it->writer));
	it->created = sqlite3_column_int64(q, 3);
	return col_blob(q, 4, &it->der, &it->len);
}

static cf_status sq_envelope_get(cf_store *st, const char *tenant,
				 const char *name, int64_t version,
				 const char *recipient, cf_feed_item *out,
				 cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_ENVELOPE_GET, err);
	cf_status rc;
	int found;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, name);
	bind_text(q, 3, recipient);
	sqlite3_bind_int64(q, 4, version);
	rc = get_row(s, q, read_envelope, out, &found, "reading an envelope",
		     err);
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

static cf_status sq_feed(cf_store *st, const char *tenant,
			 const char *recipient, int64_t since, size_t limit,
			 size_t max_bytes, cf_feed_item **out, size_t *n,
			 int64_t *cursor_out, int *more_out, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_FEED, err);
	cf_feed_item *arr = NULL;
	size_t cap = 0, cnt = 0, bytes = 0;
	cf_status rc = CF_OK;
	int src, more = 0;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, recipient);
	sqlite3_bind_int64(q, 3, since);
	/* One row beyond the limit tells whether more are waiting. */
	sqlite3_bind_int64(q, 4, (int64_t)limit + 1);
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		cf_feed_item *it;
		size_t len = (size_t)sqlite3_column_bytes(q, 6);

		/* Checked before the blob is copied: memory stays bounded. */
		if (cnt == limit ||
		    (max_bytes > 0 && cnt > 0 &&
		     (bytes >= max_bytes || len > max_bytes - bytes))) {
			more = 1;
			src = SQLITE_DONE;
			break;
		}
		bytes += len;
		if (!grow((void **)&arr, &cap, cnt, sizeof(*arr))) {
			rc = nomem(s, "reading the feed", err);
			break;
		}
		it = &arr[cnt++];
		it->seq = sqlite3_column_int64(q, 0);
		col_fixed(q, 1, it->name, sizeof(it->name));
		it->version = sqlite3_column_int64(q, 2);
		it->deleted = sqlite3_column_int(q, 3);
		col_fixed(q, 4, it->writer, sizeof(it->writer));
		it->created = sqlite3_column_int64(q, 5);
		if (!it->deleted && !col_blob(q, 6, &it->der, &it->len)) {
			rc = nomem(s, "reading the feed", err);
			break;
		}
	}
	if (rc == CF_OK && src != SQLITE_DONE)
		rc = db_fail(s, src, "reading the feed", err);
	done(q);
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

		q = prep(s, S_FEED_HEAD, err);
		if (q == NULL)
			return CF_ERR_STORE;
		rc = get_row(s, q, read_int64, &head, &found, "reading the feed",
			     err);
		if (rc != CF_OK)
			return rc;
		if (head < since)
			since = head;
	}
	*out = arr;
	*n = cnt;
	if (cursor_out != NULL)
		*cursor_out = cnt > 0 ? arr[cnt - 1].seq : since;
	if (more_out != NULL)
		*more_out = more;
	return CF_OK;
}

/* ---- sync ------------------------------------------------------------------- */

/* The latest version of name, not deleted; CF_ERR_NOT_FOUND otherwise. */
static cf_status live_version(sq_store *s, const char *tenant,
			      const char *name, cf_secret_row *out,
			      cf_error *err)
{
	int found = 0;
	cf_status rc = version_latest(s, tenant, name, out, &found, err);

	if (rc == CF_OK && (!found || out->deleted))
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "there is no secret %s%s",
				  name, found ? " (it is deleted)" : "");
	return rc;
}

static cf_status sq_version_add(cf_store *st, const char *tenant,
				const char *name, int64_t version,
				int64_t now, const cf_envelope_in *envs,
				size_t n, const cf_audit_entry *audit,
				int64_t *added, char (**recipients_out)[65],
				size_t *n_out, cf_error *err)
{
	sq_store *s = sq(st);
	cf_secret_row latest;
	char (*rcpts)[65] = NULL;
	sqlite3_stmt *q;
	int64_t bytes = 0, seq = 0, count = 0;
	cf_audit_entry a = *audit;
	cf_status rc;
	int src;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((rc = live_version(s, tenant, name, &latest, err)) != CF_OK)
		goto out;
	if (latest.version != version) {
		rc = cf_error_set(err, CF_ERR_CONFLICT, "secret %s is at version "
				  "%lld now, not %lld; sync again",
				  name, (long long)latest.version,
				  (long long)version);
		goto out;
	}
	if ((rcpts = calloc(n, sizeof(*rcpts))) == NULL) {
		rc = nomem(s, "adding envelopes", err);
		goto out;
	}
	for (size_t i = 0; i < n && rc == CF_OK; i++) {
		if ((q = prep(s, S_ENVELOPE_HAS, err)) == NULL) {
			rc = CF_ERR_STORE;
			break;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, name);
		bind_text(q, 3, envs[i].recipient);
		sqlite3_bind_int64(q, 4, version);
		src = sqlite3_step(q);
		done(q);
		if (src == SQLITE_ROW)
			continue;       /* somebody gave it one already */
		if (src != SQLITE_DONE) {
			rc = db_fail(s, src, "adding envelopes", err);
			break;
		}
		rc = feed_set(s, tenant, envs[i].recipient, name, version, 0,
			      latest.writer, now, &seq, err);
		if (rc != CF_OK)
			break;
		if ((q = prep(s, S_ENVELOPE_INS, err)) == NULL) {
			rc = CF_ERR_STORE;
			break;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, name);
		sqlite3_bind_int64(q, 3, version);
		bind_text(q, 4, envs[i].recipient);
		sqlite3_bind_int64(q, 5, seq);
		bind_blob(q, 6, envs[i].der, envs[i].len);
		rc = run(s, q, "storing an envelope", err);
		memcpy(rcpts[count++], envs[i].recipient, 65);
		bytes += (int64_t)envs[i].len;
	}
	if (rc == CF_OK && count > 0) {
		if ((q = prep(s, S_VERSION_GROW, err)) == NULL) {
			rc = CF_ERR_STORE;
			goto out;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, name);
		sqlite3_bind_int64(q, 3, version);
		sqlite3_bind_int64(q, 4, count);
		sqlite3_bind_int64(q, 5, bytes);
		if ((rc = run(s, q, "counting a version's recipients", err)) ==
		    CF_OK) {
			a.bytes = bytes;
			rc = audit_write(s, &a, tenant, name, err);
		}
	}
out:
	rc = tx_end(s, rc, err);
	if (rc != CF_OK) {
		free(rcpts);
		return rc;
	}
	*added = count;
	*recipients_out = rcpts;
	*n_out = (size_t)count;
	return CF_OK;
}

/* ---- removal ---------------------------------------------------------------- */

static int read_recipient(sqlite3_stmt *q, void *elem)
{
	cf_recipient_row *r = elem;

	col_fixed(q, 0, r->fp, sizeof(r->fp));
	col_fixed(q, 1, r->kind, sizeof(r->kind));
	col_fixed(q, 2, r->name, sizeof(r->name));
	return 1;
}

static cf_status sq_secret_recipients(cf_store *st, const char *tenant,
				      const char *name, int64_t version,
				      int64_t *version_out,
				      cf_recipient_row **out, size_t *n,
				      cf_error *err)
{
	sq_store *s = sq(st);
	cf_secret_row latest;
	sqlite3_stmt *q;
	cf_status rc;
	int found = 0;

	if (version == 0) {
		rc = version_latest(s, tenant, name, &latest, &found, err);
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
	if ((q = prep(s, S_VERSION_RECIPIENTS, err)) == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, name);
	sqlite3_bind_int64(q, 3, version);
	rc = collect_rows(s, q, sizeof(cf_recipient_row), read_recipient, NULL,
			  "reading a version's recipients", (void **)out, n,
			  err);
	if (rc == CF_OK && *n == 0)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "secret %s has no version %lld", name,
				  (long long)version);
	if (rc == CF_OK)
		*version_out = version;
	return rc;
}

static int read_name(sqlite3_stmt *q, void *elem)
{
	col_fixed(q, 0, elem, 256);
	return 1;
}

static cf_status sq_recipient_names(cf_store *st, const char *tenant,
				    const char *recipient, char (**out)[256],
				    size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_RECIPIENT_NAMES, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, recipient);
	return collect_rows(s, q, 256, read_name, NULL,
			    "listing a recipient's secrets", (void **)out, n,
			    err);
}

static cf_status sq_envelopes_purge(cf_store *st, const char *tenant,
				    const char *recipient,
				    const char (*names)[256], size_t n,
				    const cf_audit_entry *audit,
				    int64_t *removed, cf_error *err)
{
	sq_store *s = sq(st);
	cf_audit_entry a = *audit;
	sqlite3_stmt *q;
	int64_t count = 0, bytes = 0;
	cf_status rc;
	int src;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	for (size_t i = 0; i < n && rc == CF_OK; i++) {
		if ((q = prep(s, S_ENVELOPE_PURGE, err)) == NULL) {
			rc = CF_ERR_STORE;
			break;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, recipient);
		bind_text(q, 3, names[i]);
		/* What is deleted is remembered (coffer status, "exposed"). */
		{
			sqlite3_stmt *m = prep(s, S_PURGED_INS, err);

			if (m == NULL) {
				done(q);
				rc = CF_ERR_STORE;
				break;
			}
			bind_text(m, 1, tenant);
			bind_text(m, 2, recipient);
			bind_text(m, 3, names[i]);
			if ((rc = run(s, m, "remembering deleted envelopes",
				      err)) != CF_OK) {
				done(q);
				break;
			}
		}
		while ((src = sqlite3_step(q)) == SQLITE_ROW) {
			count++;
			bytes += sqlite3_column_int64(q, 0);
		}
		done(q);
		if (src != SQLITE_DONE) {
			rc = db_fail(s, src, "deleting envelopes", err);
			break;
		}
		if ((q = prep(s, S_FEED_DEL, err)) == NULL) {
			rc = CF_ERR_STORE;
			break;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, recipient);
		bind_text(q, 3, names[i]);
		rc = run(s, q, "deleting feed entries", err);
	}
	if (rc == CF_OK) {
		a.bytes = bytes;
		rc = audit_write_obj(s, &a, tenant, recipient, OBJECT_FORCE, err);
	}
	rc = tx_end(s, rc, err);
	if (rc == CF_OK && removed != NULL)
		*removed = count;
	return rc;
}

/* ---- staged uploads ------------------------------------------------------ */

static int read_upload(sqlite3_stmt *q, void *elem)
{
	cf_upload_row *u = elem;

	col_fixed(q, 0, u->id, sizeof(u->id));
	col_fixed(q, 1, u->tenant, sizeof(u->tenant));
	col_fixed(q, 2, u->name, sizeof(u->name));
	u->version = sqlite3_column_int64(q, 3);
	col_fixed(q, 4, u->writer, sizeof(u->writer));
	u->envelopes = sqlite3_column_int64(q, 5);
	u->bytes = sqlite3_column_int64(q, 6);
	u->created = sqlite3_column_int64(q, 7);
	u->expires = sqlite3_column_int64(q, 8);
	return 1;
}

/*
 * The open upload id of tenant, begun by writer (NULL: anyone):
 * CF_ERR_NOT_FOUND if there is none or it expired, CF_ERR_PERMISSION if
 * another writer began it.
 */
static cf_status upload_load(sq_store *s, const char *tenant, const char *id,
			     const char *writer, int64_t now,
			     cf_upload_row *out, cf_error *err)
{
	sqlite3_stmt *q = prep(s, S_UPLOAD_GET, err);
	cf_status rc;
	int found;

	memset(out, 0, sizeof(*out));
	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, id);
	bind_text(q, 2, tenant);
	if ((rc = get_row(s, q, read_upload, out, &found, "reading an upload",
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

/* Runs statement id with id bound as ?1. */
static cf_status upload_run_id(sq_store *s, enum stmt_id stmt, const char *id,
			       const char *what, cf_error *err)
{
	sqlite3_stmt *q = prep(s, stmt, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, id);
	return run(s, q, what, err);
}

static cf_status upload_drop(sq_store *s, const char *id, cf_error *err)
{
	cf_status rc = upload_run_id(s, S_UPLOAD_ENV_DEL, id,
				     "dropping an upload", err);

	if (rc == CF_OK)
		rc = upload_run_id(s, S_UPLOAD_DEL, id, "dropping an upload",
				   err);
	return rc;
}

static cf_status sq_upload_begin(cf_store *st, const char *tenant,
				 const char *name, int64_t version,
				 const char *writer, int64_t now,
				 cf_upload_row *out, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_status rc;
	int64_t open_n = 0;
	int found, src;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	/* Expired uploads of every tenant go first: they hold disk only. */
	if ((q = prep(s, S_UPLOAD_PURGE_ENV, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	sqlite3_bind_int64(q, 1, now);
	if ((rc = run(s, q, "purging expired uploads", err)) != CF_OK)
		goto out;
	if ((q = prep(s, S_UPLOAD_PURGE, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	sqlite3_bind_int64(q, 1, now);
	if ((rc = run(s, q, "purging expired uploads", err)) != CF_OK)
		goto out;
	if ((rc = version_is_new(s, tenant, name, version, err)) != CF_OK)
		goto out;
	if ((q = prep(s, S_UPLOAD_COUNT, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	sqlite3_bind_int64(q, 2, now);
	if ((rc = get_row(s, q, read_int64, &open_n, &found,
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
	if ((q = prep(s, S_UPLOAD_INS, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, out->id);
	bind_text(q, 2, tenant);
	bind_text(q, 3, name);
	sqlite3_bind_int64(q, 4, version);
	bind_text(q, 5, writer);
	sqlite3_bind_int64(q, 6, out->created);
	sqlite3_bind_int64(q, 7, out->expires);
	src = sqlite3_step(q);
	done(q);
	if (src == SQLITE_CONSTRAINT_FOREIGNKEY)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND,
				  "secret %s: no tenant %s", name, tenant);
	else if (src != SQLITE_DONE)
		rc = db_fail(s, src, "beginning an upload", err);
out:
	if ((rc = tx_end(s, rc, err)) != CF_OK)
		memset(out, 0, sizeof(*out));
	return rc;
}

static cf_status sq_upload_get(cf_store *st, const char *tenant,
			       const char *id, int64_t now, cf_upload_row *out,
			       cf_error *err)
{
	return upload_load(sq(st), tenant, id, NULL, now, out, err);
}

static cf_status sq_upload_add(cf_store *st, const char *tenant,
			       const char *id, const char *writer, int64_t now,
			       const cf_envelope_in *envs, size_t n,
			       cf_upload_row *out, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_status rc;
	int64_t bytes = 0;
	int src;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((rc = upload_load(s, tenant, id, writer, now, out, err)) != CF_OK)
		goto out;
	if ((int64_t)n > CF_STORE_ENVELOPES_MAX - out->envelopes) {
		rc = cf_error_set(err, CF_ERR_TOO_LARGE,
				  "upload %s holds %" PRId64 " envelopes; %zu "
				  "more would be above the %d of one version",
				  id, out->envelopes, n, CF_STORE_ENVELOPES_MAX);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if ((q = prep(s, S_UPLOAD_ENV_INS, err)) == NULL) {
			rc = CF_ERR_STORE;
			goto out;
		}
		bind_text(q, 1, id);
		bind_text(q, 2, envs[i].recipient);
		bind_blob(q, 3, envs[i].der, envs[i].len);
		src = sqlite3_step(q);
		done(q);
		if ((src & 0xff) == SQLITE_CONSTRAINT) {
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "recipient %s has an envelope in "
					  "upload %s already; send one per "
					  "recipient", envs[i].recipient, id);
			goto out;
		}
		if (src != SQLITE_DONE) {
			rc = db_fail(s, src, "staging an envelope", err);
			goto out;
		}
		bytes += (int64_t)envs[i].len;
	}
	if ((q = prep(s, S_UPLOAD_GROW, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, id);
	sqlite3_bind_int64(q, 2, (int64_t)n);
	sqlite3_bind_int64(q, 3, bytes);
	sqlite3_bind_int64(q, 4, now + CF_STORE_UPLOAD_TTL);
	rc = run(s, q, "staging envelopes", err);
out:
	if ((rc = tx_end(s, rc, err)) != CF_OK)
		return rc;
	out->envelopes += (int64_t)n;
	out->bytes += bytes;
	out->expires = now + CF_STORE_UPLOAD_TTL;
	return CF_OK;
}

/* The staged recipients of upload id, in order, into a malloc'ed array. */
static cf_status upload_recipients(sq_store *s, const char *id,
				   char (**out)[65], size_t *n, cf_error *err)
{
	sqlite3_stmt *q = prep(s, S_UPLOAD_RECIPIENTS, err);

	*out = NULL;
	*n = 0;
	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, id);
	return collect_rows(s, q, sizeof(**out), read_fp, NULL,
			    "committing an upload", (void **)out, n, err);
}

static cf_status sq_upload_commit(cf_store *st, const char *tenant,
				  const char *id, const char *writer,
				  int64_t now, const cf_audit_entry *audit,
				  cf_upload_row *out,
				  char (**recipients_out)[65], size_t *n_out,
				  cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_upload_row up;
	cf_secret_row latest;
	cf_audit_entry entry;
	char (*rcpt)[65] = NULL;
	size_t cnt = 0;
	cf_status rc;
	int found, dropped = 0;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((rc = upload_load(s, tenant, id, writer, now, &up, err)) != CF_OK)
		goto out;
	if (up.envelopes == 0) {
		rc = cf_error_set(err, CF_ERR_USAGE,
				  "upload %s of %s holds no envelopes; add "
				  "them before committing", id, up.name);
		goto out;
	}
	if ((rc = version_latest(s, tenant, up.name, &latest, &found, err)) !=
	    CF_OK)
		goto out;
	if (found && up.version <= latest.version) {
		/* Dropped in its own commit: the writer starts again. */
		if ((rc = upload_drop(s, id, err)) != CF_OK ||
		    (rc = tx_commit(s, err)) != CF_OK)
			goto out;
		dropped = 1;
		rc = version_conflict(up.name, latest.version, err);
		goto out;
	}
	if ((rc = upload_recipients(s, id, &rcpt, &cnt, err)) != CF_OK ||
	    (rc = version_insert(s, tenant, up.name, up.version, now, writer,
				 up.envelopes, up.bytes, 0, err)) != CF_OK)
		goto out;
	if ((q = prep(s, S_UPLOAD_FEED_DEL, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, up.name);
	bind_text(q, 3, id);
	if ((rc = run(s, q, "updating the feed", err)) != CF_OK)
		goto out;
	if ((q = prep(s, S_UPLOAD_FEED_INS, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, up.name);
	sqlite3_bind_int64(q, 3, up.version);
	bind_text(q, 4, writer);
	sqlite3_bind_int64(q, 5, now);
	bind_text(q, 6, id);
	if ((rc = run(s, q, "updating the feed", err)) != CF_OK)
		goto out;
	if ((q = prep(s, S_UPLOAD_ENV_MOVE, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, up.name);
	sqlite3_bind_int64(q, 3, up.version);
	bind_text(q, 4, id);
	if ((rc = run(s, q, "storing envelopes", err)) != CF_OK)
		goto out;
	/* Every staged envelope found its feed row, or nothing is stored. */
	if (sqlite3_changes64(s->db) != up.envelopes) {
		rc = cf_error_set(err, CF_ERR_STORE,
				  "database %s: upload %s: %" PRId64 " staged "
				  "envelopes but %lld moved", s->path, id,
				  up.envelopes,
				  (long long)sqlite3_changes64(s->db));
		goto out;
	}
	entry = *audit;
	entry.bytes = up.bytes;
	if ((rc = upload_drop(s, id, err)) != CF_OK ||
	    (rc = audit_write(s, &entry, tenant, up.name, err)) != CF_OK)
		goto out;
	rc = tx_commit(s, err);
out:
	if (rc != CF_OK) {
		if (!dropped)
			tx_rollback(s);
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

static cf_status sq_upload_abort(cf_store *st, const char *tenant,
				 const char *id, const char *writer,
				 int64_t now, cf_error *err)
{
	sq_store *s = sq(st);
	cf_upload_row up;
	cf_status rc;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((rc = upload_load(s, tenant, id, writer, now, &up, err)) == CF_OK)
		rc = upload_drop(s, id, err);
	return tx_end(s, rc, err);
}

/* ---- audit ------------------------------------------------------------ */

static cf_status sq_audit_append(cf_store *st, const cf_audit_entry *entry,
				 cf_error *err)
{
	sq_store *s = sq(st);
	cf_status rc;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	rc = audit_write(s, entry, NULL, NULL, err);
	return tx_end(s, rc, err);
}

static cf_status sq_audit_append_many(cf_store *st,
				      const cf_audit_entry *entries, size_t n,
				      cf_error *err)
{
	sq_store *s = sq(st);
	chain_head head = { 0 };
	cf_status rc;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	for (size_t i = 0; i < n && rc == CF_OK; i++)
		rc = audit_write_head(s, &entries[i], NULL, NULL, 0, &head, err);
	return tx_end(s, rc, err);
}

static int read_audit(sqlite3_stmt *q, void *elem)
{
	cf_audit_entry *e = elem;

	e->seq = sqlite3_column_int64(q, 0);
	e->time = sqlite3_column_int64(q, 1);
	col_fixed(q, 2, e->tenant, sizeof(e->tenant));
	col_fixed(q, 3, e->actor, sizeof(e->actor));
	col_fixed(q, 4, e->subject, sizeof(e->subject));
	col_fixed(q, 5, e->source, sizeof(e->source));
	col_fixed(q, 6, e->action, sizeof(e->action));
	col_fixed(q, 7, e->object, sizeof(e->object));
	e->bytes = sqlite3_column_int64(q, 8);
	col_fixed(q, 9, e->prev, sizeof(e->prev));
	col_fixed(q, 10, e->hash, sizeof(e->hash));
	return 1;
}

static cf_status sq_audit_list(cf_store *st, const char *tenant,
			       const cf_audit_filter *f,
			       cf_audit_entry **out, size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_AUDIT_LIST, err);
	size_t limit;

	if (q == NULL)
		return CF_ERR_STORE;
	limit = f->limit == 0 ? AUDIT_LIST_DEFAULT : f->limit;
	if (limit > AUDIT_LIST_MAX)
		limit = AUDIT_LIST_MAX;
	bind_text(q, 1, tenant);
	sqlite3_bind_int64(q, 2, f->after_seq);
	sqlite3_bind_int64(q, 3, f->since);
	sqlite3_bind_int64(q, 4, f->until);
	bind_text(q, 5, f->actor);
	bind_text(q, 6, f->action);
	sqlite3_bind_int64(q, 7, (int64_t)limit);
	return collect_rows(s, q, sizeof(**out), read_audit, NULL,
			    "reading the audit log", (void **)out, n, err);
}

/* ---- numbers for /metrics --------------------------------------------- */

/* ---- operator commands --------------------------------------------------- */

static int read_cmd(sqlite3_stmt *q, void *elem)
{
	cf_cmd_row *r = elem;

	col_fixed(q, 0, r->id, sizeof(r->id));
	col_fixed(q, 1, r->sender, sizeof(r->sender));
	r->created = sqlite3_column_int64(q, 2);
	r->expires = sqlite3_column_int64(q, 3);
	r->recipients = sqlite3_column_int64(q, 4);
	r->answered = sqlite3_column_int64(q, 5);
	r->bytes = sqlite3_column_int64(q, 6);
	return 1;
}

/* seq, id, peer, name, expires, answered, der */
static int read_cmd_item(sqlite3_stmt *q, void *elem)
{
	cf_cmd_item *it = elem;

	it->seq = sqlite3_column_int64(q, 0);
	col_fixed(q, 1, it->id, sizeof(it->id));
	col_fixed(q, 2, it->peer, sizeof(it->peer));
	col_fixed(q, 3, it->name, sizeof(it->name));
	it->expires = sqlite3_column_int64(q, 4);
	it->answered = sqlite3_column_int64(q, 5);
	return col_blob(q, 6, &it->der, &it->len);
}

static void clear_cmd_item(void *elem)
{
	cf_cmd_item *it = elem;

	free(it->der);
	it->der = NULL;
}

/* Refuses the post if a recipient's mailbox is full. */
static cf_status cmd_room(sq_store *s, const char *tenant,
			  const char *recipient, int64_t now, cf_error *err)
{
	sqlite3_stmt *q = prep(s, S_CMD_PENDING_COUNT, err);
	int64_t count = 0;
	int found = 0;
	cf_status rc;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, recipient);
	sqlite3_bind_int64(q, 3, now);
	rc = get_row(s, q, read_int64, &count, &found,
		     "counting pending commands", err);
	if (rc == CF_OK && count >= CF_STORE_CMD_PENDING_MAX)
		rc = cf_error_set(err, CF_ERR_LIMIT,
				  "agent %.16s... has %lld pending commands "
				  "already (at most %d); wait for it to "
				  "answer them or for them to expire",
				  recipient, (long long)count,
				  CF_STORE_CMD_PENDING_MAX);
	return rc;
}

static cf_status sq_cmd_post(cf_store *st, const char *tenant, const char *id,
			     const char *sender, int64_t now, int64_t expires,
			     int create, const cf_envelope_in *envs, size_t n,
			     const cf_audit_entry *audit, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_cmd_row cmd;
	int64_t bytes = 0;
	cf_status rc;
	int src, found = 0;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if (create) {
		if ((q = prep(s, S_CMD_INS, err)) == NULL) {
			rc = CF_ERR_STORE;
			goto out;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, id);
		bind_text(q, 3, sender);
		sqlite3_bind_int64(q, 4, now);
		sqlite3_bind_int64(q, 5, expires);
		src = sqlite3_step(q);
		done(q);
		if ((src & 0xff) == SQLITE_CONSTRAINT) {
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "command %s exists already; every "
					  "command needs a new id", id);
			goto out;
		}
		if (src != SQLITE_DONE) {
			rc = db_fail(s, src, "storing a command", err);
			goto out;
		}
	} else {
		memset(&cmd, 0, sizeof(cmd));
		if ((q = prep(s, S_CMD_GET, err)) == NULL) {
			rc = CF_ERR_STORE;
			goto out;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, id);
		rc = get_row(s, q, read_cmd, &cmd, &found, "reading a command",
			     err);
		if (rc != CF_OK)
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
	for (size_t i = 0; i < n; i++) {
		if ((rc = cmd_room(s, tenant, envs[i].recipient, now, err)) !=
		    CF_OK)
			goto out;
		if ((q = prep(s, S_CMD_MAIL_INS, err)) == NULL) {
			rc = CF_ERR_STORE;
			goto out;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, id);
		bind_text(q, 3, envs[i].recipient);
		sqlite3_bind_int64(q, 4, expires);
		bind_blob(q, 5, envs[i].der, envs[i].len);
		src = sqlite3_step(q);
		done(q);
		if ((src & 0xff) == SQLITE_CONSTRAINT) {
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "command %s: agent %.16s... has it "
					  "already", id, envs[i].recipient);
			goto out;
		}
		if (src != SQLITE_DONE) {
			rc = db_fail(s, src, "storing a command envelope", err);
			goto out;
		}
		bytes += (int64_t)envs[i].len;
	}
	if ((q = prep(s, S_CMD_GROW, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, id);
	sqlite3_bind_int64(q, 3, (int64_t)n);
	sqlite3_bind_int64(q, 4, bytes);
	if ((rc = run(s, q, "counting a command's recipients", err)) != CF_OK)
		goto out;
	rc = audit_write(s, audit, tenant, id, err);
out:
	return tx_end(s, rc, err);
}

static cf_status sq_cmd_pending(cf_store *st, const char *tenant,
				const char *recipient, int64_t since,
				int64_t now, size_t limit, cf_cmd_item **out,
				size_t *n, int64_t *cursor_out, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_CMD_PENDING, err);
	int64_t head = 0;
	int found = 0;
	cf_status rc;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, recipient);
	sqlite3_bind_int64(q, 3, since);
	sqlite3_bind_int64(q, 4, now);
	sqlite3_bind_int64(q, 5, (int64_t)limit);
	rc = collect_rows(s, q, sizeof(cf_cmd_item), read_cmd_item,
			  clear_cmd_item, "reading pending commands",
			  (void **)out, n, err);
	if (rc != CF_OK)
		return rc;
	if (*n > 0) {
		if (cursor_out != NULL)
			*cursor_out = (*out)[*n - 1].seq;
		return CF_OK;
	}
	/* A cursor beyond the head: the database was restored (as sq_feed). */
	if (since > 0 && cursor_out != NULL) {
		if ((q = prep(s, S_CMD_MAIL_HEAD, err)) == NULL)
			return CF_ERR_STORE;
		rc = get_row(s, q, read_int64, &head, &found,
			     "reading pending commands", err);
		if (rc != CF_OK)
			return rc;
		*cursor_out = head < since ? head : since;
	}
	return CF_OK;
}

/* A mailbox entry as cf_store_cmd_answer needs it. */
typedef struct mail_state {
	int answered;
	char sender[65];
} mail_state;

static int read_mail_state(sqlite3_stmt *q, void *elem)
{
	mail_state *m = elem;

	m->answered = sqlite3_column_int(q, 0);
	col_fixed(q, 1, m->sender, sizeof(m->sender));
	return 1;
}

static cf_status sq_cmd_answer(cf_store *st, const char *tenant,
			       const char *id, const char *recipient,
			       int64_t now, const unsigned char *der,
			       size_t len, const cf_audit_entry *audit,
			       char sender_out[65], cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	mail_state mail;
	int64_t next = 0;
	int found = 0;
	cf_status rc;

	memset(&mail, 0, sizeof(mail));
	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((q = prep(s, S_CMD_MAIL_GET, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, id);
	bind_text(q, 3, recipient);
	rc = get_row(s, q, read_mail_state, &mail, &found,
		     "reading a command", err);
	if (rc != CF_OK)
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
	if ((q = prep(s, S_CMD_ANSWER_NEXT, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, id);
	rc = get_row(s, q, read_int64, &next, &found, "numbering an answer",
		     err);
	if (rc != CF_OK)
		goto out;
	if ((q = prep(s, S_CMD_ANSWER, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	bind_text(q, 1, tenant);
	bind_text(q, 2, id);
	bind_text(q, 3, recipient);
	sqlite3_bind_int64(q, 4, next);
	sqlite3_bind_int64(q, 5, now);
	bind_blob(q, 6, der, len);
	if ((rc = run(s, q, "storing an answer", err)) != CF_OK)
		goto out;
	rc = audit_write(s, audit, tenant, id, err);
out:
	rc = tx_end(s, rc, err);
	if (rc == CF_OK)
		memcpy(sender_out, mail.sender, 65);
	return rc;
}

static cf_status sq_cmd_get(cf_store *st, const char *tenant, const char *id,
			    cf_cmd_row *out, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_CMD_GET, err);
	int found = 0;
	cf_status rc;

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, id);
	rc = get_row(s, q, read_cmd, out, &found, "reading a command", err);
	if (rc == CF_OK && !found)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "there is no command %s",
				  id);
	return rc;
}

static cf_status sq_cmd_recipients(cf_store *st, const char *tenant,
				   const char *id, cf_cmd_item **out,
				   size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_CMD_RECIPIENTS, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, id);
	return collect_rows(s, q, sizeof(cf_cmd_item), read_cmd_item,
			    clear_cmd_item, "reading a command's recipients",
			    (void **)out, n, err);
}

static cf_status sq_cmd_answers(cf_store *st, const char *tenant,
				const char *id, int64_t since, size_t limit,
				cf_cmd_item **out, size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_CMD_ANSWERS, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, id);
	sqlite3_bind_int64(q, 3, since);
	sqlite3_bind_int64(q, 4, (int64_t)limit);
	return collect_rows(s, q, sizeof(cf_cmd_item), read_cmd_item,
			    clear_cmd_item, "reading a command's answers",
			    (void **)out, n, err);
}

static cf_status sq_cmd_list(cf_store *st, const char *tenant,
			     const char *sender, int64_t before, size_t limit,
			     cf_cmd_row **out, size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_CMD_LIST, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, sender);
	sqlite3_bind_int64(q, 3, before);
	sqlite3_bind_int64(q, 4, (int64_t)limit);
	return collect_rows(s, q, sizeof(cf_cmd_row), read_cmd, NULL,
			    "listing commands", (void **)out, n, err);
}

static cf_status sq_cmd_expire(cf_store *st, int64_t now, int64_t retention,
			       int64_t *removed, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	cf_status rc;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	if ((q = prep(s, S_CMD_DROP_ENV, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	sqlite3_bind_int64(q, 1, now);
	if ((rc = run(s, q, "dropping expired commands", err)) != CF_OK)
		goto out;
	if ((q = prep(s, S_CMD_PURGE_MAIL, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	sqlite3_bind_int64(q, 1, now - retention);
	if ((rc = run(s, q, "purging old commands", err)) != CF_OK)
		goto out;
	if ((q = prep(s, S_CMD_PURGE, err)) == NULL) {
		rc = CF_ERR_STORE;
		goto out;
	}
	sqlite3_bind_int64(q, 1, now - retention);
	if ((rc = run(s, q, "purging old commands", err)) != CF_OK)
		goto out;
	if (removed != NULL)
		*removed = sqlite3_changes(s->db);
out:
	return tx_end(s, rc, err);
}

static cf_status sq_stats_get(cf_store *st, cf_store_stats *out,
			      cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_STATS, err);
	cf_status rc = CF_OK;
	int src;

	if (q == NULL)
		return CF_ERR_STORE;
	src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		out->tenants = sqlite3_column_int64(q, 0);
		out->certs = sqlite3_column_int64(q, 1);
		out->agents = sqlite3_column_int64(q, 2);
		out->tokens = sqlite3_column_int64(q, 3);
		out->enrollments_pending = sqlite3_column_int64(q, 4);
		out->secrets = sqlite3_column_int64(q, 5);
		out->envelopes = sqlite3_column_int64(q, 6);
		out->envelope_bytes = sqlite3_column_int64(q, 7);
		out->audit_entries = sqlite3_column_int64(q, 8);
		out->feed_seq = sqlite3_column_int64(q, 9);
	} else {
		rc = db_fail(s, src, "counting rows", err);
	}
	done(q);
	return rc;
}

cf_status cf_store_sqlite_explain_feed(cf_store *st, char *buf, size_t cap,
				       cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = NULL;
	char sql[1024];
	size_t used = 0;
	cf_status rc = CF_OK;
	int src;

	if (st == NULL || st->ops != &sqlite_ops || cap == 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: not a SQLite store");
	buf[0] = '\0';
	snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", stmt_sql[S_FEED]);
	src = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
	if (src != SQLITE_OK) {
		rc = db_fail(s, src, "explaining the feed query", err);
		goto out;
	}
	/* Columns: id, parent, notused, detail. */
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		const unsigned char *d = sqlite3_column_text(q, 3);
		int w = snprintf(buf + used, cap - used, "%s\n",
				 d != NULL ? (const char *)d : "");

		if (w < 0 || (size_t)w >= cap - used) {
			rc = cf_error_set(err, CF_ERR_TOO_LARGE,
					  "store: query plan above %zu bytes",
					  cap);
			goto out;
		}
		used += (size_t)w;
	}
	if (src != SQLITE_DONE)
		rc = db_fail(s, src, "explaining the feed query", err);
out:
	sqlite3_finalize(q);
	return rc;
}

/* ---- copying a whole store (store_backend.h) ------------------------- */

/* Each table's copy order: keys in byte order (BINARY collation), and
 * enrollments by rowid within a second, as sq_enroll_list lists them. */
static const char *const copy_order[CF_COPY_COUNT] = {
	"id", "tenant, fp", "tenant, grp, fp", "id", "created, rowid",
	"tenant, name, version", "tenant, name, recipient, version", "seq",
	"tenant, seq", "id", "upload, recipient", "tenant, id", "seq",
	"tenant, name, agent", "tenant, name, recipient, version", NULL,
};

/* The "sequences" rows: 0 for a table that never took a row. */
#define COPY_SEQ_SQL "SELECT 'command_mail', COALESCE((SELECT seq FROM " \
	"sqlite_sequence WHERE name = 'command_mail'), 0) UNION ALL " \
	"SELECT 'feed', COALESCE((SELECT seq FROM sqlite_sequence " \
	"WHERE name = 'feed'), 0)"

/* SQL text for table t, made of the constant table definitions only. */
static void copy_select_sql(int t, char *sql, size_t cap)
{
	if (t == CF_COPY_SEQUENCES)
		snprintf(sql, cap, "%s", COPY_SEQ_SQL);
	else
		snprintf(sql, cap, "SELECT %s FROM %s ORDER BY %s",
			 cf_copy_tables[t].columns, cf_copy_tables[t].name,
			 copy_order[t]);
}

/* Column c of q's row as a copy value of type `type`; 0 if no memory. */
static int copy_col(sqlite3_stmt *q, int c, char type, cf_copy_value *v)
{
	memset(v, 0, sizeof(*v));
	if (sqlite3_column_type(q, c) == SQLITE_NULL) {
		v->null = 1;
		return 1;
	}
	if (type == 'i') {
		v->i = sqlite3_column_int64(q, c);
		return 1;
	}
	v->p = type == 't' ? sqlite3_column_text(q, c) :
			     sqlite3_column_blob(q, c);
	v->len = (size_t)sqlite3_column_bytes(q, c);
	if (v->p == NULL) {
		if (v->len > 0 || type == 't')
			return 0;
		v->p = (const unsigned char *)"";
	}
	return 1;
}

static cf_status sq_copy_out(cf_store *st, cf_copy_row_fn row, void *ctx,
			     cf_error *err)
{
	sq_store *s = sq(st);
	cf_copy_value vals[16];
	sqlite3_stmt *q = NULL;
	cf_status rc = CF_OK;
	char sql[512];
	int src;

	/* One read transaction: every table from the same snapshot. */
	if ((src = sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL)) != SQLITE_OK)
		return db_fail(s, src, "starting to read the database", err);
	for (int t = 0; rc == CF_OK && t < CF_COPY_COUNT; t++) {
		const char *types = cf_copy_tables[t].types;
		int cols = (int)strlen(types);

		if (cols > (int)(sizeof(vals) / sizeof(vals[0]))) {
			rc = cf_error_set(err, CF_ERR_USAGE,
					  "store: table %s has too many columns "
					  "to copy", cf_copy_tables[t].name);
			break;
		}
		copy_select_sql(t, sql, sizeof(sql));
		if ((src = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL)) !=
		    SQLITE_OK) {
			rc = db_fail(s, src, "reading a table to copy", err);
			break;
		}
		while (rc == CF_OK && (src = sqlite3_step(q)) == SQLITE_ROW) {
			for (int c = 0; rc == CF_OK && c < cols; c++)
				if (!copy_col(q, c, types[c], &vals[c]))
					rc = nomem(s, "reading a table to copy",
						   err);
			if (rc == CF_OK)
				rc = row(ctx, t, vals, err);
		}
		if (rc == CF_OK && src != SQLITE_DONE)
			rc = db_fail(s, src, "reading a table to copy", err);
		sqlite3_finalize(q);
		q = NULL;
	}
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static cf_status sq_copy_in_begin(cf_store *st, cf_error *err)
{
	sq_store *s = sq(st);
	cf_status rc;
	char sql[128];

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	for (int t = 0; rc == CF_OK && t < CF_COPY_SEQUENCES; t++) {
		sqlite3_stmt *q = NULL;
		int src;

		snprintf(sql, sizeof(sql), "SELECT 1 FROM %s LIMIT 1",
			 cf_copy_tables[t].name);
		src = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
		if (src == SQLITE_OK)
			src = sqlite3_step(q);
		if (src == SQLITE_ROW)
			rc = cf_error_set(err, CF_ERR_EXISTS,
					  "database %s is not empty (its table "
					  "%s holds rows); a copy goes into a "
					  "new database: a SQLite file that "
					  "does not exist yet, or a new "
					  "PostgreSQL database (createdb NAME)",
					  s->path, cf_copy_tables[t].name);
		else if (src != SQLITE_DONE)
			rc = db_fail(s, src, "checking that the database is "
				     "empty", err);
		sqlite3_finalize(q);
	}
	if (rc != CF_OK)
		tx_rollback(s);
	return rc;
}

/* A "sequences" row: the table's AUTOINCREMENT counter at least v. */
static cf_status copy_sequence(sq_store *s, const cf_copy_value *row,
			       cf_error *err)
{
	sqlite3_stmt *q = NULL;
	int src;

	if (row[0].null || row[1].null ||
	    !((row[0].len == 4 && memcmp(row[0].p, "feed", 4) == 0) ||
	      (row[0].len == 12 && memcmp(row[0].p, "command_mail", 12) == 0)))
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: the copy names an unknown sequence");
	src = sqlite3_prepare_v2(s->db, "UPDATE sqlite_sequence SET seq = "
				 "MAX(seq, ?2) WHERE name = ?1", -1, &q, NULL);
	if (src == SQLITE_OK) {
		sqlite3_bind_text(q, 1, (const char *)row[0].p,
				  (int)row[0].len, SQLITE_STATIC);
		sqlite3_bind_int64(q, 2, row[1].i);
		src = sqlite3_step(q);
	}
	sqlite3_finalize(q);
	q = NULL;
	if (src == SQLITE_DONE && sqlite3_changes(s->db) == 0 && row[1].i > 0) {
		src = sqlite3_prepare_v2(s->db, "INSERT INTO sqlite_sequence "
					 "(name, seq) VALUES (?1, ?2)", -1, &q,
					 NULL);
		if (src == SQLITE_OK) {
			sqlite3_bind_text(q, 1, (const char *)row[0].p,
					  (int)row[0].len, SQLITE_STATIC);
			sqlite3_bind_int64(q, 2, row[1].i);
			src = sqlite3_step(q);
		}
		sqlite3_finalize(q);
	}
	return src == SQLITE_DONE ? CF_OK :
	       db_fail(s, src, "setting a sequence of the copy", err);
}

static cf_status sq_copy_in(cf_store *st, int table, const cf_copy_value *vals,
			    size_t n, cf_error *err)
{
	sq_store *s = sq(st);
	const char *types;
	sqlite3_stmt *q = NULL;
	char sql[1024], what[96];
	size_t cols, used;
	cf_status rc = CF_OK;
	int src;

	if (table < 0 || table >= CF_COPY_COUNT)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: no such table to copy");
	types = cf_copy_tables[table].types;
	cols = strlen(types);
	if (table == CF_COPY_SEQUENCES) {
		for (size_t r = 0; rc == CF_OK && r < n; r++)
			rc = copy_sequence(s, vals + r * cols, err);
		return rc;
	}
	snprintf(what, sizeof(what), "copying table %s",
		 cf_copy_tables[table].name);
	used = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO %s (%s) VALUES (",
				cf_copy_tables[table].name,
				cf_copy_tables[table].columns);
	for (size_t c = 0; c < cols && used < sizeof(sql); c++)
		used += (size_t)snprintf(sql + used, sizeof(sql) - used, "%s?",
					 c > 0 ? ", " : "");
	if (used >= sizeof(sql) - 2)
		return cf_error_set(err, CF_ERR_USAGE,
				    "store: a copy statement is too long");
	snprintf(sql + used, sizeof(sql) - used, ")");
	if ((src = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL)) != SQLITE_OK)
		return db_fail(s, src, what, err);
	for (size_t r = 0; rc == CF_OK && r < n; r++) {
		const cf_copy_value *row = vals + r * cols;
		int b = SQLITE_OK;

		for (size_t c = 0; c < cols && b == SQLITE_OK; c++) {
			int i = (int)c + 1;

			if (row[c].null)
				b = sqlite3_bind_null(q, i);
			else if (types[c] == 'i')
				b = sqlite3_bind_int64(q, i, row[c].i);
			else if (row[c].len > (size_t)INT32_MAX)
				b = SQLITE_TOOBIG;
			else if (types[c] == 't')
				b = sqlite3_bind_text(q, i,
						      (const char *)row[c].p,
						      (int)row[c].len,
						      SQLITE_STATIC);
			else
				b = sqlite3_bind_blob64(q, i, row[c].p,
							row[c].len,
							SQLITE_STATIC);
		}
		src = b == SQLITE_OK ? sqlite3_step(q) : b;
		if (src != SQLITE_DONE)
			rc = db_fail(s, src, what, err);
		sqlite3_reset(q);
		sqlite3_clear_bindings(q);
	}
	sqlite3_finalize(q);
	return rc;
}

static cf_status sq_copy_in_end(cf_store *st, int commit, cf_error *err)
{
	sq_store *s = sq(st);

	if (commit)
		return tx_commit(s, err);
	tx_rollback(s);
	return CF_OK;
}

/* ---- rollout: acknowledgements and exposure ----------------------- */

static int read_ack(sqlite3_stmt *q, void *elem)
{
	cf_ack_row *a = elem;

	col_fixed(q, 0, a->agent, sizeof(a->agent));
	col_fixed(q, 1, a->name, sizeof(a->name));
	a->version = sqlite3_column_int64(q, 2);
	a->time = sqlite3_column_int64(q, 3);
	col_fixed(q, 4, a->result, sizeof(a->result));
	col_fixed(q, 5, a->reason, sizeof(a->reason));
	a->received = sqlite3_column_int64(q, 6);
	return col_blob(q, 7, &a->der, &a->len);
}

static void clear_ack(void *elem)
{
	free(((cf_ack_row *)elem)->der);
}

static cf_status sq_ack_put(cf_store *st, const char *tenant,
			    const char *agent, const char *via,
			    const cf_ack_row *rows,
			    size_t n, int64_t now, const cf_audit_entry *audit,
			    int64_t *stored, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q;
	int64_t written = 0;
	cf_status rc;

	if ((rc = tx_begin(s, err)) != CF_OK)
		return rc;
	for (size_t i = 0; i < n && rc == CF_OK; i++) {
		if ((q = prep(s, S_ACK_PUT, err)) == NULL) {
			rc = CF_ERR_STORE;
			break;
		}
		bind_text(q, 1, tenant);
		bind_text(q, 2, rows[i].name);
		bind_text(q, 3, agent);
		sqlite3_bind_int64(q, 4, rows[i].version);
		sqlite3_bind_int64(q, 5, rows[i].time);
		bind_text(q, 6, rows[i].result);
		bind_text(q, 7, rows[i].reason);
		sqlite3_bind_int64(q, 8, now);
		bind_blob(q, 9, rows[i].der, rows[i].len);
		bind_text(q, 10, via);
		rc = run(s, q, "storing an acknowledgement", err);
		if (rc == CF_OK)
			written += sqlite3_changes(s->db);
	}
	if (rc == CF_OK)
		rc = audit_write(s, audit, tenant, agent, err);
	rc = tx_end(s, rc, err);
	if (rc == CF_OK && stored != NULL)
		*stored = written;
	return rc;
}

static cf_status sq_ack_list(cf_store *st, const char *tenant,
			     const char *name, cf_ack_row **out, size_t *n,
			     cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_ACK_LIST, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, name);
	return collect_rows(s, q, sizeof(cf_ack_row), read_ack, clear_ack,
			    "reading acknowledgements", (void **)out, n, err);
}

static cf_status sq_recipient_certs(cf_store *st, const char *tenant,
				       const char *name, int64_t version,
				       cf_cert_row **out, size_t *n,
				       cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_RECIPIENT_CERTS, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, name);
	sqlite3_bind_int64(q, 3, version);
	return collect_rows(s, q, sizeof(cf_cert_row), read_cert, clear_cert,
			    "reading a version's recipients", (void **)out, n,
			    err);
}

static int read_exposed(sqlite3_stmt *q, void *elem)
{
	cf_exposed_row *x = elem;

	col_fixed(q, 0, x->name, sizeof(x->name));
	x->version = sqlite3_column_int64(q, 1);
	col_fixed(q, 2, x->recipient, sizeof(x->recipient));
	col_fixed(q, 3, x->kind, sizeof(x->kind));
	col_fixed(q, 4, x->cn, sizeof(x->cn));
	col_fixed(q, 5, x->via, sizeof(x->via));
	return 1;
}

static cf_status sq_exposed(cf_store *st, const char *tenant,
			    const char *revoked, const char *prefix,
			    cf_exposed_row **out, size_t *n, cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_EXPOSED, err);

	if (q == NULL)
		return CF_ERR_STORE;
	bind_text(q, 1, tenant);
	bind_text(q, 2, revoked);
	bind_text(q, 3, prefix);
	return collect_rows(s, q, sizeof(cf_exposed_row), read_exposed, NULL,
			    "finding exposed envelopes", (void **)out, n, err);
}

static cf_status sq_rollout_stats(cf_store *st, cf_rollout_stats *out,
				  cf_error *err)
{
	sq_store *s = sq(st);
	sqlite3_stmt *q = prep(s, S_ROLLOUT, err);
	cf_status rc = CF_OK;
	int src;

	if (q == NULL)
		return CF_ERR_STORE;
	src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		out->up_to_date = sqlite3_column_int64(q, 0);
		out->failed = sqlite3_column_int64(q, 1);
		out->behind = sqlite3_column_int64(q, 2);
	} else {
		rc = db_fail(s, src, "counting the rollout", err);
	}
	done(q);
	return rc;
}

static const cf_store_ops sqlite_ops = {
	.name = "sqlite",
	.free = sq_free,
	.schema_version = sq_schema_version,
	.tenant_add = sq_tenant_add,
	.tenant_get = sq_tenant_get,
	.tenant_list = sq_tenant_list,
	.tenant_set_crl = sq_tenant_set_crl,
	.cert_put = sq_cert_put,
	.cert_get = sq_cert_get,
	.cert_list = sq_cert_list,
	.token_add = sq_token_add,
	.token_get = sq_token_get,
	.token_list = sq_token_list,
	.token_revoke = sq_token_revoke,
	.enroll_add = sq_enroll_add,
	.enroll_get = sq_enroll_get,
	.enroll_list = sq_enroll_list,
	.enroll_decide = sq_enroll_decide,
	.secret_put = sq_secret_put,
	.secret_delete = sq_secret_delete,
	.secret_latest = sq_secret_latest,
	.secret_list = sq_secret_list,
	.secret_history = sq_secret_history,
	.envelope_get = sq_envelope_get,
	.secret_recipients = sq_secret_recipients,
	.version_add = sq_version_add,
	.recipient_names = sq_recipient_names,
	.envelopes_purge = sq_envelopes_purge,
	.feed = sq_feed,
	.upload_begin = sq_upload_begin,
	.upload_get = sq_upload_get,
	.upload_add = sq_upload_add,
	.upload_commit = sq_upload_commit,
	.upload_abort = sq_upload_abort,
	.audit_append = sq_audit_append,
	.audit_append_many = sq_audit_append_many,
	.audit_list = sq_audit_list,
	.cmd_post = sq_cmd_post,
	.cmd_pending = sq_cmd_pending,
	.cmd_answer = sq_cmd_answer,
	.cmd_get = sq_cmd_get,
	.cmd_recipients = sq_cmd_recipients,
	.cmd_answers = sq_cmd_answers,
	.cmd_list = sq_cmd_list,
	.cmd_expire = sq_cmd_expire,
	.stats_get = sq_stats_get,
	.copy_out = sq_copy_out,
	.copy_in_begin = sq_copy_in_begin,
	.copy_in = sq_copy_in,
	.copy_in_end = sq_copy_in_end,
	.ack_put = sq_ack_put,
	.ack_list = sq_ack_list,
	.recipient_certs = sq_recipient_certs,
	.exposed = sq_exposed,
	.rollout_stats = sq_rollout_stats,
};
