/*
 * runtime.h - what the server runtime's files share (not the handlers).
 *
 * server.c  settings, threads, listeners, run loop, signals, logging
 * tls.c     the SSL_CTX and the per-connection state hung on each SSL
 * http.c    srv_req, routing, replies, /v1/health
 * auth.c    the tenants in memory, who a connection is
 * limits.c  connections per address, request rate, the connection count
 * park.c    long-poll parking and cross-thread wake-ups (and, through
 *           the store, cross-node ones: srv_wake notifies the database,
 *           the main thread's listener wakes this node for the others)
 * batch.c   group commit of the audit entries of envelope reads
 * metrics.c counters and GET /metrics
 *
 * Threads: one event loop per worker thread (srv_thread), each with its
 * own evhttp, listening sockets (SO_REUSEPORT) and store connection.  A
 * connection, its srv_conn and its requests live on one thread for their
 * whole life; only the tenant table, the per-address table, the wake
 * queues and the counters are shared, each under its own lock or atomic.
 */
#ifndef CF_SERVER_RUNTIME_H
#define CF_SERVER_RUNTIME_H

#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "server.h"
#include "srv.h"

#define SRV_PARK_BUCKETS 4096
#define SRV_KEY_MAX 132          /* "tenant/recipient" */

typedef struct srv_thread srv_thread;
typedef struct srv_conn srv_conn;
typedef struct srv_tenant srv_tenant;

/*
 * One entry of a thread's parking table (park.c): a parked request sits
 * in the bucket of each key it waits on ("tenant/recipient"), through
 * one link per key, so that a wake-up for either finds it.
 */
typedef struct srv_park_link {
	srv_req *req;
	char key[SRV_KEY_MAX];
	unsigned bucket;
	struct srv_park_link *prev, *next;
	int linked;                 /* in th->parked[bucket] now */
} srv_park_link;

struct srv_thread {
	int index;
	pthread_t tid;
	struct event_base *base;
	struct evhttp *http;
	cf_store *store;
	struct event *wake_ev;      /* made active by srv_wake on any thread */
	struct event *stop_ev;      /* made active by the main thread */
	struct event *drain_timer;
	int64_t drain_deadline_ms;
	int draining;
	pthread_mutex_t wake_mu;
	char (*wake_keys)[SRV_KEY_MAX]; /* queued under wake_mu */
	size_t n_wake, cap_wake;
	int wake_all;               /* under wake_mu: retry every parked one */
	srv_park_link *parked[SRV_PARK_BUCKETS]; /* heads of doubly linked lists */
	atomic_long busy;           /* requests being handled or written */
	struct event *accept_resume_ev; /* re-enables paused listeners */
	int accept_paused;
	/* Answers waiting for their audit entries' group commit (batch.c). */
	struct event *batch_ev;     /* made active when a batch starts */
	struct srv_batch_item *batch;
	cf_audit_entry *batch_entries;
	size_t n_batch, cap_batch;
	int batch_flushing;
};

/* Per connection, hung on its SSL (ex_data); freed when the SSL is. */
struct srv_conn {
	srv_thread *th;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* known from the first request on */
	char source[64];            /* "127.0.0.1:50312" */
	char ip[48];                /* "127.0.0.1" */
	int ip_counted;             /* counted in the per-address table */
	int over_limit;             /* 503 then close: too many connections */
	int far_over_total;         /* over twice --max-conns: close at accept */
	char refusal[192];          /* the 503's message when over_limit */
	int phase;                  /* CONN_READING, CONN_HANDLER, CONN_IDLE */
	struct event *read_timer;   /* handshake / request read deadline */
	srv_req *parked;            /* its one parked request, if any */
	int replying;               /* our reply is being queued (not evhttp's) */
	size_t request_bytes;       /* bytes received of the current request */
	struct event *fix_ev;       /* rewrites evhttp's own error pages */
	size_t fix_at;              /* output length when evhttp began writing */
	int fix_armed;
	struct event *accept_ev;    /* counts the address right after accept */
	/* Identity, verified once per connection (auth.c). */
	int auth_done;              /* 1 verified, -1 refused */
	srv_tenant *tenant;         /* reference held; replaced => re-verify */
	srv_identity id;
	int registered;             /* certificate put in the directory */
};

enum { CONN_READING = 0, CONN_HANDLER = 1, CONN_IDLE = 2 };

struct srv_req {
	struct evhttp_request *ev;
	srv_thread *th;
	srv_conn *conn;
	const struct srv_route *route;
	int route_index;
	const srv_identity *id;
	char method[8];
	char *path;                 /* decoded path, malloc'ed */
	const char *rest;
	struct evkeyvalq *params;
	int64_t start_us;
	/* long-poll */
	void (*retry)(srv_req *r);
	struct event *park_timer;
	struct event *park_closed;  /* EV_CLOSED on the socket */
	int64_t park_first_ms;
	srv_park_link park_links[2]; /* [0] its own key, [1] a second (cluster) */
	int is_parked;
};

/* ---- server.c ---- */
extern const srv_config *srv_cfg;
extern int64_t srv_start_ms;
extern _Thread_local srv_thread *srv_cur_thread;
/* This process among the nodes sharing a database (random, per run):
 * its own cross-node wake-ups come back to it and are skipped. */
extern char srv_node_id[CF_STORE_NODE_LEN + 1];
int srv_log_enabled(int level);
int64_t srv_now_ms(void);
int64_t srv_now_us(void);
void srv_thread_maybe_stop(srv_thread *th);

/* ---- tls.c ---- */
cf_status srv_tls_new(const srv_config *c, SSL_CTX **out, cf_error *err);
struct bufferevent *srv_tls_bevcb(struct event_base *base, void *arg);
srv_conn *srv_conn_of(struct evhttp_connection *evcon);
void srv_conn_set_read_deadline(srv_conn *conn);
void srv_conn_clear_read_deadline(srv_conn *conn);

/* ---- http.c ---- */
cf_status srv_http_init(cf_error *err);
void srv_http_shutdown(void);
void srv_http_gencb(struct evhttp_request *ev, void *arg);
void srv_req_free(srv_req *r);
void srv_reply_raw(srv_req *r, int status, const char *content_type,
		   const char *body, size_t len, const char *extra_header,
		   const char *extra_value);

/* ---- auth.c ---- */
cf_status srv_auth_init(cf_store *st, cf_error *err);
void srv_auth_shutdown(void);
void srv_auth_reload(cf_store *st, int force);
/* 0 and r->id set, or -1 with the 401 sent. */
int srv_auth_request(srv_req *r);
void srv_auth_conn_clear(srv_conn *conn);
size_t srv_auth_tenant_count(void);

/* ---- limits.c ---- */
void srv_limits_init(void);
void srv_limits_shutdown(void);
/* Counts a connection from ip; its open connections now, this one
 * included (0 when out of memory: nothing counted, nothing refused). */
unsigned long srv_limits_conn_add(const char *ip);
void srv_limits_conn_remove(const char *ip);
/* Takes one token of ip's bucket: 0, or the seconds to wait. */
int srv_limits_rate_take(const char *ip);
/* Forgets idle addresses whose bucket is full again (every few seconds). */
void srv_limits_sweep(void);
extern atomic_long srv_conns_total;

/* ---- park.c ---- */
cf_status srv_park_thread_init(srv_thread *th, cf_error *err);
void srv_park_thread_clear(srv_thread *th);
void srv_park_conn_closed(srv_conn *conn);
void srv_park_drain(srv_thread *th);
void srv_unpark(srv_req *r);
/* srv_wake on this node only (what another node's wake-up asks for). */
void srv_wake_local(const char *tenant, const char (*recipients)[65],
		    size_t n);
/* Retries every parked request of every thread (each looks again and
 * parks again if nothing changed): after wake-ups may have been lost. */
void srv_wake_all(void);

/* ---- batch.c ---- */
cf_status srv_batch_thread_init(srv_thread *th, cf_error *err);
void srv_batch_thread_clear(srv_thread *th);
void srv_batch_conn_closed(srv_conn *conn);

/* ---- metrics.c ---- */
enum srv_limit_kind {
	SRV_LIMIT_CONNS_IP, SRV_LIMIT_CONNS_TOTAL, SRV_LIMIT_RATE,
	SRV_LIMIT_BODY, SRV_LIMIT_HEADER, SRV_LIMIT_TIMEOUT, SRV_LIMIT_N
};
extern atomic_long srv_m_parked, srv_m_auth_fail, srv_m_conns_accepted;
extern atomic_long srv_m_limit[SRV_LIMIT_N];
void srv_metrics_init(size_t n_routes);
void srv_metrics_shutdown(void);
void srv_metrics_count(int route_index, int status);
void srv_metrics_reply(srv_req *r);

/* Routes of the runtime itself (http.c / metrics.c). */
void srv_handle_health(srv_req *r);
void srv_handle_metrics(srv_req *r);
size_t srv_route_count(void);
const struct srv_route *srv_route_at(size_t i);

#endif
