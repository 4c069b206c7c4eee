/*
 * server.h - what the server's parts share: the request a handler sees,
 * the identity the TLS layer proved, replies, audit and wake-ups.
 *
 * The runtime (server.c, tls.c, http.c, auth.c, limits.c, ...) accepts
 * connections on one event loop per thread, completes the TLS handshake
 * with a client certificate request, authenticates the caller against
 * the tenants' roots and CRLs before any database work, applies limits,
 * and calls the route's handler.  Handlers (api_*.c, one file per API
 * area) check permissions, talk to the store, log to the audit and reply;
 * they never touch libevent or OpenSSL's TLS directly.
 *
 * Threading: a handler runs on its connection's thread with that thread's
 * own cf_store connection; it may keep nothing between requests.
 */
#ifndef CF_SERVER_H
#define CF_SERVER_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stdint.h>

#include "audit.h"
#include "error.h"
#include "pki.h"
#include "policy.h"
#include "store.h"
#include "trust.h"
#include "srv.h"

typedef struct srv_req srv_req;

/* Who the caller is, as proved by its certificate chain. */
typedef struct srv_identity {
	char tenant[65];            /* fingerprint of the chain's root */
	char fp[65];                /* fingerprint of the caller's certificate */
	cf_kind kind;               /* operator, enroller, agent, cluster */
	char name[65];              /* CN */
	char subject[CF_AUDIT_SUBJECT_MAX]; /* "CN=web-1,O=Acme" */
	char *groups;               /* agent groups, comma-separated, "" if none */
	cf_perms *perms;            /* operator / enroller rules; NULL for agents */
	X509 *cert;                 /* the caller's certificate */
	STACK_OF(X509) *chain;      /* what it sent besides (enroller), may be empty */
	const cf_trust *trust;      /* the tenant's root and CRL */
	X509 *root;                 /* the tenant's root certificate */
	int64_t crl_number;         /* the tenant's CRL number, -1 if none */
} srv_identity;

/* NULL on public routes (health, enrollment); never NULL on others. */
const srv_identity *srv_req_identity(const srv_req *r);

/* This thread's store connection. */
cf_store *srv_req_store(srv_req *r);

/* The peer's address, "127.0.0.1:50312" or "[::1]:50312". */
const char *srv_req_source(const srv_req *r);

/* A decoded query parameter, NULL if absent. */
const char *srv_req_param(const srv_req *r, const char *key);

/*
 * The value of a request header (name case-insensitive), NULL if absent;
 * *count (may be NULL) is how many times it was sent, so that a header
 * that must come once can be refused when it comes twice.
 */
const char *srv_req_header(const srv_req *r, const char *name, int *count);

/* The path after the route's prefix ("ID" of /v1/tokens/ID), "" if none. */
const char *srv_req_path_rest(const srv_req *r);

/*
 * Parses the request body as a JSON object (at most the configured body
 * size).  On failure the request has been answered (400/413) and the
 * handler must return without replying.
 */
json_t *srv_req_json(srv_req *r);

/* Replies with status and the JSON body, which it takes over. */
void srv_reply_json(srv_req *r, int status, json_t *body);

/*
 * Like srv_reply_json, but the answer leaves only after entry (an
 * envelope read, filled by srv_audit_init) is committed to the audit log,
 * together with the other such entries of this event-loop iteration (one
 * transaction: group commit, batch.c).  If the commit fails the request
 * is answered 500 instead, and nothing of body is sent.  body NULL
 * answers 500 (out of memory).  The handler returns right after.
 */
void srv_reply_json_audited(srv_req *r, int status, json_t *body,
			    const cf_audit_entry *entry);

/*
 * Replies {"error":{"code":CODE,"message":MESSAGE}} with an HTTP status:
 * 400 bad_request, 401 unauthenticated, 403 forbidden, 404 not_found,
 * 409 conflict, 410 gone, 413 too_large, 429 rate_limited,
 * 500 internal, 503 unavailable.
 */
void srv_reply_error(srv_req *r, int status, const char *code,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * The HTTP status (400..429) and error code that fit a handler's status
 * (docs/API.md, "Errors"); 500 and "internal" for any other (a failure of
 * the server's own, whose sentence may name database internals).
 */
int srv_status_http(cf_status code, const char **name);

/*
 * Fills an audit entry for this request: time now, tenant, actor and
 * subject of the caller (empty on public routes), source, action, object,
 * bytes.  The store completes seq, prev and hash.
 */
void srv_audit_init(const srv_req *r, cf_audit_entry *e, const char *action,
		    const char *object, int64_t bytes);

/*
 * Logs one line on stderr, "coffer-server: LEVEL: message", level one of
 * SRV_LOG_DEBUG..SRV_LOG_ERROR (srv.h); below the configured level it is
 * dropped.  Control characters of the message (a client's path, a name)
 * are written as '?', so no client can forge or split a log line.  Never
 * pass secret material or a request body.
 */
void srv_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Unix seconds now. */
int64_t srv_now(void);

/*
 * Long-poll: instead of replying, park the request until the feed of
 * (tenant, recipient) may have changed or timeout_ms passes, then call
 * retry(r) again on the same thread (the handler then replies, or parks
 * again).  A client that goes away frees the request; retry is then not
 * called.
 */
void srv_req_park(srv_req *r, const char *tenant, const char *recipient,
		  int timeout_ms, void (*retry)(srv_req *r));
/*
 * The same, woken by a change of either feed: recipient's or also's (a
 * member's own feed and its cluster's); also NULL is srv_req_park.
 */
void srv_req_park_either(srv_req *r, const char *tenant, const char *recipient,
			 const char *also, int timeout_ms,
			 void (*retry)(srv_req *r));

/* Milliseconds this request has been parked so far (0 before any park). */
int64_t srv_req_parked_ms(const srv_req *r);

/*
 * Wakes the parked requests of these recipients of tenant, on every
 * thread (and, with a shared database, on every node).  Called after a
 * commit that changed their feeds.
 */
void srv_wake(const char *tenant, const char (*recipients)[65], size_t n);

/* Called after a tenant's CRL changed: re-read it, re-check connections. */
void srv_tenants_changed(void);

/* Counter for /metrics: requests answered per route and status class. */

/* A route: method ("GET"), path ("/v1/tokens"), prefix match or exact. */
typedef struct srv_route {
	const char *method;
	const char *path;
	int prefix;                 /* path is a prefix: rest in srv_req_path_rest */
	int public;                 /* no client certificate needed */
	void (*fn)(srv_req *r);
} srv_route;

/* Each API file exports its routes, ended by an entry with fn NULL. */
extern const srv_route srv_routes_certs[];    /* api_certs.c: /v1/certs, /v1/whoami, /v1/crl */
extern const srv_route srv_routes_tokens[];   /* api_tokens.c */
extern const srv_route srv_routes_enroll[];   /* api_enroll.c: /v1/enroll, /v1/enrollments */
extern const srv_route srv_routes_secrets[];  /* api_secrets.c: /v1/secrets, /v1/agent/secrets */
extern const srv_route srv_routes_audit[];    /* api_audit.c */
extern const srv_route srv_routes_uploads[];  /* api_uploads.c: /v1/secrets/uploads */
extern const srv_route srv_routes_commands[]; /* api_commands.c: /v1/commands */
extern const srv_route srv_routes_status[];   /* api_status.c: /v1/agent/acks, /v1/status */

/* Permission helpers shared by the handlers (api_common.c). */
int srv_allows(const srv_identity *id, const char *verb, const char *name);
int srv_is_operator(const srv_identity *id);   /* operator or enroller */

#endif
