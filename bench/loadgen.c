/*
 * loadgen.c - bench/loadgen: an HTTPS load generator with a client
 * certificate (issue 4, section 9).  It speaks to any HTTPS server, coffer
 * or nginx alike, so both are measured with the same client.
 *
 * Modes:
 *   keep-alive (default): C connections, each sending its next request as
 *     soon as the previous answer is in (closed-loop, one request in flight
 *     per connection), for D seconds after an optional warm-up;
 *   --new-handshake: C slots, each opening a new TCP connection with a full
 *     TLS handshake per request ("Connection: close"), closing it after
 *     the answer.  Sessions are never resumed: the client keeps no session
 *     cache and never offers a ticket, and each answer checks
 *     SSL_session_reused(), which the report counts;
 *   --idle N: N connections, each sending one request that the server is
 *     expected to hold (a long-poll), opened at most RAMP at a time; once
 *     all are established (or have failed) they are held for D seconds,
 *     then the report says how many were still open with their request
 *     outstanding.
 *
 * Sockets are TCP_NODELAY, as curl's and browsers' are: with Nagle on the
 * client, a handshake flight or request split over segments can wait for
 * the server's delayed ACK, which measures the client, not the server.
 *
 * HTTP is libevent's evhttp client over bufferevent_openssl; TLS is one
 * SSL_CTX per --cert/--key pair (connection i uses pair i mod K), shared
 * by the T worker threads, each of which runs its own event_base and owns
 * its connections outright (no cross-thread event use, so no libevent
 * locking).  A connection that the server closed is never reused: evhttp
 * would reconnect the old bufferevent, whose SSL object cannot start over,
 * so the connection is freed (outside evhttp's callbacks, through a
 * zero-delay event) and a fresh one made.
 *
 * Counting: a request counts when its answer arrives inside the measured
 * window [start + warm-up, start + warm-up + D]; ok if its status is
 * --expect-status (or any 2xx without it), else a "status" error listed by
 * code.  Failures without an answer are classed as connect (TCP refused /
 * unreachable), tls (an OpenSSL error, or the peer closed during the
 * handshake), timeout, or closed (EOF / reset after the handshake).
 * Latency is from the request being queued (new-handshake: from the
 * connection being created, so it includes TCP + TLS) to the whole answer
 * being read; percentiles are nearest-rank over every counted ok answer.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define MAX_THREADS 64
#define MAX_CERTS 64
#define MAX_HEADERS 32
#define MAX_CONNECTIONS 100000
#define MAX_STATUS 600
#define RAMP_PER_THREAD 64        /* idle mode: handshakes in flight per thread */
#define RAMP_TIMEOUT_S 180.0      /* idle mode: hold anyway after this */
#define TICK_MS 100

enum mode { MODE_KEEPALIVE, MODE_HANDSHAKE, MODE_IDLE };
enum err_class { E_CONNECT, E_TLS, E_TIMEOUT, E_CLOSED, E_NCLASS };
static const char *const err_names[E_NCLASS] = {"connect", "tls", "timeout", "closed"};

/* ------------------------------------------------------------ options */

static struct {
	const char *url;
	char host[256];
	int port;
	char path[4096];            /* path + query, as sent */
	const char *cacert;
	const char *certs[MAX_CERTS];
	const char *keys[MAX_CERTS];
	int ncerts, nkeys;
	int connections;
	double duration_s;
	double warmup_s;
	int threads;
	enum mode mode;
	int idle;
	const char *headers[MAX_HEADERS];
	int nheaders;
	int expect_status;          /* 0: any 2xx */
	int timeout_s;
	int json;
} opt = {
	.connections = 32, .duration_s = 10, .threads = 2, .timeout_s = 10,
};

/* ------------------------------------------------------------ state */

struct worker;

struct conn {
	struct worker *w;
	int cert_idx;
	struct evhttp_connection *evcon;
	struct bufferevent *bev;    /* owned by evcon */
	struct event *kick;         /* zero-delay: replace the connection */
	double t_req;               /* when the request was queued */
	double t_conn;              /* when the connection was created */
	int closed;                 /* evhttp reported the connection closed */
	int handshake_done;
	int nodelay;                /* TCP_NODELAY set on this connection */
	int outstanding;            /* a request is in flight */
	int failed;                 /* idle mode: gave up on this one */
	int answered;               /* idle mode: the server answered early */
	int err_type;               /* from evhttp's error callback, -1 none */
	int err_errno;
};

struct lat {
	uint32_t *us;
	size_t n, cap;
};

struct worker {
	int id;
	pthread_t thread;
	struct event_base *base;
	struct event *tick;
	struct event *ramp;         /* idle mode: zero-delay: open more */
	struct conn *conns;
	int nconns;
	int next_to_open;           /* idle mode: ramp position */
	int opening;                /* idle mode: handshakes in flight */
	int stopped;
	/* results, read by main after join */
	struct lat lat;
	uint64_t ok, handshakes, resumed;
	uint64_t errors[E_NCLASS];
	uint64_t status[MAX_STATUS];
	uint64_t status_other;
	size_t body_min, body_max;
	char first_err[E_NCLASS][200];
	int held, open_idle, answered, idle_failed;
};

static SSL_CTX *ctxs[MAX_CERTS];
static int conn_ex_index = -1;
static double t_start, t_window_begin, t_window_end;
static struct worker workers[MAX_THREADS];

/* idle mode, shared between the workers and main */
static atomic_int idle_established, idle_failed_count;
static atomic_int workers_ramped;
static _Atomic double hold_deadline;   /* 0 until the hold phase starts */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "loadgen: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ERR_print_errors_fp(stderr);
	exit(2);
}

/* ------------------------------------------------------------ recording */

static int in_window(double t)
{
	return t >= t_window_begin && t <= t_window_end;
}

static void lat_add(struct lat *l, double seconds)
{
	double us = seconds * 1e6;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;
		uint32_t *v = realloc(l->us, cap * sizeof(*v));

		if (v == NULL)
			return;             /* drop the sample, keep counting */
		l->us = v;
		l->cap = cap;
	}
	l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void record_error(struct conn *c, enum err_class cls, const char *why)
{
	struct worker *w = c->w;

	if (opt.mode != MODE_IDLE && !in_window(now_s()))
		return;
	w->errors[cls]++;
	if (w->first_err[cls][0] == '\0')
		snprintf(w->first_err[cls], sizeof(w->first_err[cls]), "%s", why);
}

/* ------------------------------------------------------------ connections */

static void conn_open(struct conn *c);
static void conn_send(struct conn *c);
static void idle_open_more(struct worker *w);

static void on_info(const SSL *ssl, int where, int ret)
{
	struct conn *c = SSL_get_ex_data(ssl, conn_ex_index);

	if (c == NULL || !(where & SSL_CB_HANDSHAKE_DONE) || c->handshake_done)
		return;
	c->handshake_done = 1;
	if (opt.mode == MODE_IDLE) {
		atomic_fetch_add(&idle_established, 1);
		c->w->opening--;
		/* open the next ones from the loop, not inside OpenSSL's callback */
		event_active(c->w->ramp, EV_TIMEOUT, 0);
	}
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg;

	c->closed = 1;
}

static void on_error(enum evhttp_request_error type, void *arg)
{
	struct conn *c = arg;

	c->err_type = (int)type;
	c->err_errno = errno;
}

/* Frees the connection; safe only outside evhttp's callbacks. */
static void conn_drop(struct conn *c)
{
	if (c->evcon != NULL)
		evhttp_connection_free(c->evcon);
	c->evcon = NULL;
	c->bev = NULL;
}

/* Replaces the connection from a fresh stack frame (see the file comment). */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	conn_drop(c);
	if (c->w->stopped || opt.mode == MODE_IDLE)
		return;
	conn_open(c);
}

static void schedule_replace(struct conn *c)
{
	event_active(c->kick, EV_TIMEOUT, 0);
}

/* After a failure: a short pause, so a refused port does not spin. */
static void schedule_retry(struct conn *c)
{
	struct timeval tv = {0, 10000};

	event_add(c->kick, &tv);
}

static void classify_failure(struct conn *c)
{
	unsigned long e = c->bev ? bufferevent_get_openssl_error(c->bev) : 0;
	char buf[200];

	/* libevent also queues SSL_get_error() codes of failed system calls
	 * (library 0): those are socket errors, not TLS ones. */
	if (e != 0 && ERR_GET_LIB(e) == 0)
		e = 0;
	if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		record_error(c, E_TLS, buf);
	} else if (c->err_type == EVREQ_HTTP_TIMEOUT) {
		record_error(c, E_TIMEOUT, "no answer within the timeout");
	} else if (!c->handshake_done) {
		/* evhttp loses errno on a failed connect, but OpenSSL's state
		 * says whether the server ever answered the ClientHello. */
		SSL *ssl = c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
		OSSL_HANDSHAKE_STATE st = ssl ? SSL_get_state(ssl) : TLS_ST_BEFORE;

		if (st == TLS_ST_BEFORE || st == TLS_ST_CW_CLNT_HELLO)
			record_error(c, E_CONNECT, "connection refused, or closed before"
				     " the server's TLS hello");
		else
			record_error(c, E_TLS, "closed during the TLS handshake");
	} else {
		snprintf(buf, sizeof(buf), "connection closed without an answer%s%s",
			 c->err_errno ? ": " : "",
			 c->err_errno ? strerror(c->err_errno) : "");
		record_error(c, E_CLOSED, buf);
	}
	while (ERR_get_error() != 0)
		;                       /* the thread's queue: start clean */
}

static void on_response(struct evhttp_request *req, void *arg)
{
	struct conn *c = arg;
	struct worker *w = c->w;
	double t = now_s();
	int status = req ? evhttp_request_get_response_code(req) : 0;
	const char *connection;
	int again;

	c->outstanding = 0;
	if (w->stopped)
		return;
	if (status == 0) {
		classify_failure(c);
		if (opt.mode == MODE_IDLE) {
			if (!c->handshake_done) {
				w->opening--;
				event_active(w->ramp, EV_TIMEOUT, 0);
			}
			if (!c->failed)
				atomic_fetch_add(&idle_failed_count, 1);
			c->failed = 1;
		}
		schedule_retry(c);
		return;
	}
	if (opt.mode == MODE_IDLE) {
		/* A long-poll answered before the end: the connection stays open
		 * (keep-alive) but no longer holds a request. */
		c->answered = 1;
		if (status >= 0 && status < MAX_STATUS)
			w->status[status]++;
		return;
	}
	if (in_window(t)) {
		int good = opt.expect_status ? status == opt.expect_status
					     : status >= 200 && status < 300;
		size_t body = evbuffer_get_length(evhttp_request_get_input_buffer(req));

		if (good) {
			w->ok++;
			lat_add(&w->lat, t - (opt.mode == MODE_HANDSHAKE ? c->t_conn : c->t_req));
			if (w->body_min == 0 || body < w->body_min)
				w->body_min = body;
			if (body > w->body_max)
				w->body_max = body;
		}
		if (!good) {
			if (status > 0 && status < MAX_STATUS)
				w->status[status]++;
			else
				w->status_other++;
		}
		if (opt.mode == MODE_HANDSHAKE) {
			SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

			w->handshakes++;
			if (ssl != NULL && SSL_session_reused(ssl))
				w->resumed++;
		}
	}
	connection = evhttp_find_header(evhttp_request_get_input_headers(req),
					"Connection");
	again = opt.mode == MODE_KEEPALIVE && !c->closed &&
		!(connection && evutil_ascii_strcasecmp(connection, "close") == 0) &&
		evhttp_request_get_response_code(req) != 0;
	if (again)
		conn_send(c);
	else
		schedule_replace(c);
}

static void conn_send(struct conn *c)
{
	struct evhttp_request *req = evhttp_request_new(on_response, c);
	struct evkeyvalq *h;
	char hostport[300];
	int i;

	if (req == NULL)
		die("%s", "out of memory (evhttp_request_new)");
	evhttp_request_set_error_cb(req, on_error);
	h = evhttp_request_get_output_headers(req);
	snprintf(hostport, sizeof(hostport), "%s:%d", opt.host, opt.port);
	evhttp_add_header(h, "Host", hostport);
	evhttp_add_header(h, "User-Agent", "coffer-loadgen");
	if (opt.mode == MODE_HANDSHAKE)
		evhttp_add_header(h, "Connection", "close");
	for (i = 0; i < opt.nheaders; i++) {
		char name[256];
		const char *colon = strchr(opt.headers[i], ':');
		const char *value = colon + 1;
		size_t len = (size_t)(colon - opt.headers[i]);

		memcpy(name, opt.headers[i], len);
		name[len] = '\0';
		while (*value == ' ')
			value++;
		evhttp_add_header(h, name, value);
	}
	c->err_type = -1;
	c->err_errno = 0;
	c->t_req = now_s();
	c->outstanding = 1;
	if (evhttp_make_request(c->evcon, req, EVHTTP_REQ_GET, opt.path) != 0) {
		/* evhttp freed req; treat like a failed connection */
		c->outstanding = 0;
		record_error(c, E_CONNECT, "evhttp_make_request failed");
		schedule_retry(c);
		return;
	}
	if (!c->nodelay) {
		/* The first request started the connect, so the socket exists.
		 * No Nagle, as curl and browsers do: a handshake flight or a
		 * request split over segments must not wait for a delayed ACK. */
		evutil_socket_t fd = bufferevent_getfd(c->bev);
		int on = 1;

		if (fd >= 0 &&
		    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == 0)
			c->nodelay = 1;
	}
}

static void conn_open(struct conn *c)
{
	SSL *ssl = SSL_new(ctxs[c->cert_idx]);
	X509_VERIFY_PARAM *vp;

	if (ssl == NULL)
		die("%s", "SSL_new failed");
	SSL_set_ex_data(ssl, conn_ex_index, c);
	vp = SSL_get0_param(ssl);
	/* The server certificate must name the host: an IP SAN for an address. */
	if (X509_VERIFY_PARAM_set1_ip_asc(vp, opt.host) != 1) {
		X509_VERIFY_PARAM_set1_host(vp, opt.host, 0);
		SSL_set_tlsext_host_name(ssl, opt.host);
	}
	c->bev = bufferevent_openssl_socket_new(c->w->base, -1, ssl,
						BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL)
		die("%s", "bufferevent_openssl_socket_new failed");
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	c->evcon = evhttp_connection_base_bufferevent_new(c->w->base, NULL, c->bev,
							  opt.host, (unsigned short)opt.port);
	if (c->evcon == NULL)
		die("%s", "evhttp_connection_base_bufferevent_new failed");
	evhttp_connection_set_timeout(c->evcon, opt.timeout_s);
	evhttp_connection_set_retries(c->evcon, 0);
	evhttp_connection_set_closecb(c->evcon, on_close, c);
	c->closed = 0;
	c->handshake_done = 0;
	c->nodelay = 0;
	c->t_conn = now_s();
	conn_send(c);
}

static void idle_open_more(struct worker *w)
{
	while (w->opening < RAMP_PER_THREAD && w->next_to_open < w->nconns) {
		struct conn *c = &w->conns[w->next_to_open++];

		w->opening++;
		conn_open(c);
	}
	if (w->next_to_open == w->nconns && w->opening == 0) {
		w->next_to_open++;      /* count this worker once */
		atomic_fetch_add(&workers_ramped, 1);
	}
}

/* ------------------------------------------------------------ workers */

static void on_ramp(evutil_socket_t fd, short what, void *arg)
{
	idle_open_more(arg);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	double deadline = atomic_load(&hold_deadline);
	double t = now_s();

	if ((opt.mode == MODE_IDLE && deadline > 0 && t >= deadline) ||
	    (opt.mode != MODE_IDLE && t >= t_window_end)) {
		w->stopped = 1;
		event_base_loopbreak(w->base);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct timeval tv = {0, TICK_MS * 1000};
	int i;

	w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
	w->ramp = event_new(w->base, -1, 0, on_ramp, w);
	if (w->tick == NULL || w->ramp == NULL)
		die("%s", "event_new failed");
	event_add(w->tick, &tv);
	for (i = 0; i < w->nconns; i++) {
		w->conns[i].kick = event_new(w->base, -1, 0, on_kick, &w->conns[i]);
		if (w->conns[i].kick == NULL)
			die("%s", "event_new failed");
	}
	if (opt.mode == MODE_IDLE)
		idle_open_more(w);
	else
		for (i = 0; i < w->nconns; i++)
			conn_open(&w->conns[i]);
	event_base_dispatch(w->base);

	for (i = 0; i < w->nconns; i++) {
		struct conn *c = &w->conns[i];

		if (opt.mode == MODE_IDLE && c->evcon != NULL && !c->failed && !c->closed &&
		    c->handshake_done) {
			w->open_idle++;
			if (c->outstanding)
				w->held++;
		}
		if (c->answered)
			w->answered++;
		if (c->failed)
			w->idle_failed++;
		conn_drop(c);
		event_free(c->kick);
	}
	/* Deferred bufferevent callbacks hold references to the freed
	 * connections: let the loop run them so that everything is released. */
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	event_free(w->tick);
	event_free(w->ramp);
	return NULL;
}

/* ------------------------------------------------------------ set-up */

static SSL_CTX *make_ctx(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		die("%s", "SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_load_verify_locations(ctx, opt.cacert, NULL) != 1)
		die("cannot load the CA file %s", opt.cacert);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cert != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
			die("cannot load the certificate (chain) %s", cert);
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
			die("cannot load the key %s (must be unencrypted PEM)", key);
		if (SSL_CTX_check_private_key(ctx) != 1)
			die("the key %s does not match its certificate", key);
	}
	/* No resumption: every new connection is a full handshake. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	/* Idle connections keep no read/write buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_info_callback(ctx, on_info);
	return ctx;
}

static void parse_url(void)
{
	struct evhttp_uri *u = evhttp_uri_parse(opt.url);
	const char *scheme, *host, *path, *query;
	int n;

	if (u == NULL)
		die("cannot parse the URL %s", opt.url);
	scheme = evhttp_uri_get_scheme(u);
	host = evhttp_uri_get_host(u);
	if (scheme == NULL || evutil_ascii_strcasecmp(scheme, "https") != 0 ||
	    host == NULL || host[0] == '\0' || strlen(host) >= sizeof(opt.host)) {
		evhttp_uri_free(u);
		die("the URL must be https://HOST[:PORT]/PATH, not %s", opt.url);
	}
	/* "[::1]" comes back as "[::1]": evhttp and OpenSSL want it bare */
	if (host[0] == '[') {
		size_t len = strlen(host);

		snprintf(opt.host, sizeof(opt.host), "%.*s", (int)(len - 2), host + 1);
	} else {
		snprintf(opt.host, sizeof(opt.host), "%s", host);
	}
	opt.port = evhttp_uri_get_port(u);
	if (opt.port <= 0)
		opt.port = 443;
	path = evhttp_uri_get_path(u);
	query = evhttp_uri_get_query(u);
	if (path == NULL || path[0] == '\0')
		path = "/";
	n = snprintf(opt.path, sizeof(opt.path), "%s%s%s", path,
		     query ? "?" : "", query ? query : "");
	evhttp_uri_free(u);
	if (n < 0 || (size_t)n >= sizeof(opt.path))
		die("path too long in %s", opt.url);
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			fprintf(stderr, "loadgen: cannot raise RLIMIT_NOFILE: %s\n",
				strerror(errno));
	}
}

static long nofile_limit(void)
{
	struct rlimit rl;

	return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long)rl.rlim_cur : -1;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: loadgen --url https://HOST:PORT/PATH --cacert F [--cert F --key F]...\n"
"               [--connections C] [--duration D] [--warmup W] [--threads T]\n"
"               [--new-handshake | --idle N] [--header 'K: V']...\n"
"               [--expect-status S] [--timeout S] [--json]\n"
"\n"
"HTTPS load with a client certificate, against any server.\n"
"\n"
"  --url U            https URL; GET, path and query sent as given\n"
"  --cacert F         CA(s) that verify the server certificate (its name\n"
"                     or IP address is checked against the URL's host)\n"
"  --cert F --key F   client certificate (the file may hold a chain) and\n"
"                     its unencrypted PEM key; repeat for several clients:\n"
"                     connection i uses pair i mod K\n"
"  --connections C    connections (keep-alive) or concurrent handshakes\n"
"                     (--new-handshake); default 32\n"
"  --duration D       seconds measured (default 10); with --idle, seconds\n"
"                     the connections are held after all are open\n"
"  --warmup W         seconds run before measuring (default 0)\n"
"  --threads T        event-loop threads (default 2)\n"
"  --new-handshake    a new TCP connection and a full TLS handshake per\n"
"                     request (no session resumption; 'Connection: close')\n"
"  --idle N           open N connections, each sending one request the\n"
"                     server holds (long-poll); hold them D seconds and\n"
"                     report how many stayed open with the request pending\n"
"  --header 'K: V'    an extra request header (repeatable)\n"
"  --expect-status S  only status S counts as ok (default: any 2xx);\n"
"                     others are errors, listed by status\n"
"  --timeout S        per-request I/O timeout in seconds (default 10;\n"
"                     with --idle, D + 30)\n"
"  --json             print the result as one JSON object\n"
"\n"
"Exit status: 0 when at least one request (with --idle: one held\n"
"connection) succeeded, 1 when none did, 2 on a usage or set-up error.\n");
}

static int parse_int(const char *s, int lo, int hi, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "loadgen: %s must be an integer from %d to %d, not '%s'\n",
			what, lo, hi, s);
		exit(2);
	}
	return (int)v;
}

static double parse_seconds(const char *s, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !(v >= 0) || v > 86400) {
		fprintf(stderr, "loadgen: %s must be seconds from 0 to 86400, not '%s'\n",
			what, s);
		exit(2);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"url", required_argument, NULL, 'u'},
		{"cacert", required_argument, NULL, 'a'},
		{"cert", required_argument, NULL, 'c'},
		{"key", required_argument, NULL, 'k'},
		{"connections", required_argument, NULL, 'C'},
		{"duration", required_argument, NULL, 'd'},
		{"warmup", required_argument, NULL, 'w'},
		{"threads", required_argument, NULL, 't'},
		{"new-handshake", no_argument, NULL, 'n'},
		{"idle", required_argument, NULL, 'i'},
		{"header", required_argument, NULL, 'H'},
		{"expect-status", required_argument, NULL, 's'},
		{"timeout", required_argument, NULL, 'T'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch, timeout_set = 0;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u': opt.url = optarg; break;
		case 'a': opt.cacert = optarg; break;
		case 'c':
			if (opt.ncerts == MAX_CERTS)
				die("at most %d --cert options", MAX_CERTS);
			opt.certs[opt.ncerts++] = optarg;
			break;
		case 'k':
			if (opt.nkeys == MAX_CERTS)
				die("at most %d --key options", MAX_CERTS);
			opt.keys[opt.nkeys++] = optarg;
			break;
		case 'C': opt.connections = parse_int(optarg, 1, MAX_CONNECTIONS, "--connections"); break;
		case 'd': opt.duration_s = parse_seconds(optarg, "--duration"); break;
		case 'w': opt.warmup_s = parse_seconds(optarg, "--warmup"); break;
		case 't': opt.threads = parse_int(optarg, 1, MAX_THREADS, "--threads"); break;
		case 'n': opt.mode = MODE_HANDSHAKE; break;
		case 'i':
			opt.mode = MODE_IDLE;
			opt.idle = parse_int(optarg, 1, MAX_CONNECTIONS, "--idle");
			break;
		case 'H': {
			const char *colon = strchr(optarg, ':');

			if (opt.nheaders == MAX_HEADERS)
				die("at most %d --header options", MAX_HEADERS);
			if (colon == NULL || colon == optarg || colon - optarg >= 255 ||
			    strpbrk(optarg, "\r\n") != NULL)
				die("--header wants 'Name: value', not '%s'", optarg);
			opt.headers[opt.nheaders++] = optarg;
			break;
		}
		case 's': opt.expect_status = parse_int(optarg, 100, 599, "--expect-status"); break;
		case 'T':
			opt.timeout_s = parse_int(optarg, 1, 3600, "--timeout");
			timeout_set = 1;
			break;
		case 'j': opt.json = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc || opt.url == NULL || opt.cacert == NULL) {
		usage(stderr);
		exit(2);
	}
	if (opt.ncerts != opt.nkeys)
		die("%s", "give one --key per --cert");
	if (opt.mode == MODE_IDLE) {
		opt.connections = opt.idle;
		if (!timeout_set)
			opt.timeout_s = (int)opt.duration_s + 30;
	}
	if (opt.threads > opt.connections)
		opt.threads = opt.connections;
}

/* ------------------------------------------------------------ report */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static double pct_ms(const uint32_t *v, size_t n, double p)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1] / 1000.0;
}

static const char *mode_name(void)
{
	return opt.mode == MODE_KEEPALIVE ? "keep-alive"
	       : opt.mode == MODE_HANDSHAKE ? "new-handshake" : "idle";
}

static int report_load(void)
{
	uint64_t ok = 0, handshakes = 0, resumed = 0, errors[E_NCLASS] = {0};
	uint64_t status[MAX_STATUS] = {0}, status_other = 0, status_errors = 0;
	size_t n = 0, body_min = 0, body_max = 0;
	uint32_t *all;
	double window = t_window_end - t_window_begin, rate;
	const char *first_err[E_NCLASS] = {NULL};
	int i, s, e;

	for (i = 0; i < opt.threads; i++)
		n += workers[i].lat.n;
	all = malloc((n ? n : 1) * sizeof(*all));
	if (all == NULL)
		die("%s", "out of memory");
	n = 0;
	for (i = 0; i < opt.threads; i++) {
		struct worker *w = &workers[i];

		if (w->lat.n)
			memcpy(all + n, w->lat.us, w->lat.n * sizeof(*all));
		n += w->lat.n;
		ok += w->ok;
		handshakes += w->handshakes;
		resumed += w->resumed;
		for (e = 0; e < E_NCLASS; e++) {
			errors[e] += w->errors[e];
			if (first_err[e] == NULL && w->first_err[e][0])
				first_err[e] = w->first_err[e];
		}
		for (s = 0; s < MAX_STATUS; s++) {
			status[s] += w->status[s];
			status_errors += w->status[s];
		}
		status_other += w->status_other;
		status_errors += w->status_other;
		if (w->body_min && (body_min == 0 || w->body_min < body_min))
			body_min = w->body_min;
		if (w->body_max > body_max)
			body_max = w->body_max;
	}
	qsort(all, n, sizeof(*all), cmp_u32);
	rate = window > 0 ? (double)ok / window : 0;

	if (opt.json) {
		json_t *o = json_object(), *errs = json_object(), *st = json_object();
		char key[16];
		char *text;

		json_object_set_new(o, "url", json_string(opt.url));
		json_object_set_new(o, "mode", json_string(mode_name()));
		json_object_set_new(o, "connections", json_integer(opt.connections));
		json_object_set_new(o, "threads", json_integer(opt.threads));
		json_object_set_new(o, "clients", json_integer(opt.ncerts));
		json_object_set_new(o, "duration_s", json_real(window));
		json_object_set_new(o, "requests", json_integer((json_int_t)ok));
		json_object_set_new(o, "rate", json_real(rate));
		json_object_set_new(o, "p50_ms", json_real(pct_ms(all, n, 50)));
		json_object_set_new(o, "p90_ms", json_real(pct_ms(all, n, 90)));
		json_object_set_new(o, "p99_ms", json_real(pct_ms(all, n, 99)));
		json_object_set_new(o, "max_ms", json_real(n ? all[n - 1] / 1000.0 : 0));
		json_object_set_new(o, "body_min", json_integer((json_int_t)body_min));
		json_object_set_new(o, "body_max", json_integer((json_int_t)body_max));
		if (opt.mode == MODE_HANDSHAKE) {
			json_object_set_new(o, "handshakes", json_integer((json_int_t)handshakes));
			json_object_set_new(o, "resumed", json_integer((json_int_t)resumed));
		}
		for (e = 0; e < E_NCLASS; e++)
			json_object_set_new(errs, err_names[e], json_integer((json_int_t)errors[e]));
		for (s = 0; s < MAX_STATUS; s++)
			if (status[s]) {
				snprintf(key, sizeof(key), "%d", s);
				json_object_set_new(st, key, json_integer((json_int_t)status[s]));
			}
		if (status_other) {
			json_object_set_new(st, "other", json_integer((json_int_t)status_other));
		}
		json_object_set_new(errs, "status", st);
		json_object_set_new(o, "errors", errs);
		text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
		if (text == NULL)
			die("%s", "json_dumps failed");
		printf("%s\n", text);
		free(text);
		json_decref(o);
	} else {
		printf("loadgen: %s  %s, %d connections, %d threads, %d client cert(s)\n",
		       opt.url, mode_name(), opt.connections, opt.threads, opt.ncerts);
		printf("  requests   %" PRIu64 " ok in %.2f s = %.1f req/s", ok, window, rate);
		if (body_min == body_max && body_min)
			printf("  (body %zu bytes)", body_min);
		else if (body_min)
			printf("  (body %zu..%zu bytes)", body_min, body_max);
		printf("\n");
		printf("  latency    p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
		       pct_ms(all, n, 50), pct_ms(all, n, 90), pct_ms(all, n, 99),
		       n ? all[n - 1] / 1000.0 : 0);
		if (opt.mode == MODE_HANDSHAKE)
			printf("  handshakes %" PRIu64 " full, %" PRIu64 " resumed\n",
			       handshakes - resumed, resumed);
		printf("  errors     %" PRIu64 " connect, %" PRIu64 " tls, %" PRIu64
		       " timeout, %" PRIu64 " closed, %" PRIu64 " status\n",
		       errors[E_CONNECT], errors[E_TLS], errors[E_TIMEOUT], errors[E_CLOSED],
		       status_errors);
		for (e = 0; e < E_NCLASS; e++)
			if (first_err[e])
				printf("    %s: %s\n", err_names[e], first_err[e]);
		for (s = 0; s < MAX_STATUS; s++)
			if (status[s])
				printf("    status %d: %" PRIu64 "\n", s, status[s]);
		if (status_other)
			printf("    status other: %" PRIu64 "\n", status_other);
	}
	free(all);
	return ok > 0 ? 0 : 1;
}

static int report_idle(double ramp_s)
{
	int held = 0, open_idle = 0, answered = 0, failed = 0, i, s, e;
	uint64_t errors[E_NCLASS] = {0}, status[MAX_STATUS] = {0};
	const char *first_err[E_NCLASS] = {NULL};

	for (i = 0; i < opt.threads; i++) {
		struct worker *w = &workers[i];

		held += w->held;
		open_idle += w->open_idle;
		answered += w->answered;
		failed += w->idle_failed;
		for (e = 0; e < E_NCLASS; e++) {
			errors[e] += w->errors[e];
			if (first_err[e] == NULL && w->first_err[e][0])
				first_err[e] = w->first_err[e];
		}
		for (s = 0; s < MAX_STATUS; s++)
			status[s] += w->status[s];
	}
	if (opt.json) {
		json_t *o = json_object(), *errs = json_object(), *st = json_object();
		char key[16], *text;

		json_object_set_new(o, "url", json_string(opt.url));
		json_object_set_new(o, "mode", json_string("idle"));
		json_object_set_new(o, "target", json_integer(opt.idle));
		json_object_set_new(o, "threads", json_integer(opt.threads));
		json_object_set_new(o, "ramp_s", json_real(ramp_s));
		json_object_set_new(o, "hold_s", json_real(opt.duration_s));
		json_object_set_new(o, "open", json_integer(open_idle));
		json_object_set_new(o, "held", json_integer(held));
		json_object_set_new(o, "answered", json_integer(answered));
		json_object_set_new(o, "failed", json_integer(failed));
		for (e = 0; e < E_NCLASS; e++)
			json_object_set_new(errs, err_names[e], json_integer((json_int_t)errors[e]));
		for (s = 0; s < MAX_STATUS; s++)
			if (status[s]) {
				snprintf(key, sizeof(key), "%d", s);
				json_object_set_new(st, key, json_integer((json_int_t)status[s]));
			}
		json_object_set_new(o, "answers", st);
		json_object_set_new(o, "errors", errs);
		text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
		if (text == NULL)
			die("%s", "json_dumps failed");
		printf("%s\n", text);
		free(text);
		json_decref(o);
	} else {
		printf("loadgen: %s  idle, %d connections, %d threads\n", opt.url, opt.idle,
		       opt.threads);
		printf("  opened     in %.2f s; held %.1f s\n", ramp_s, opt.duration_s);
		printf("  at the end %d open with the request pending, %d open but answered early,"
		       " %d failed\n", held, open_idle - held, failed);
		printf("  errors     %" PRIu64 " connect, %" PRIu64 " tls, %" PRIu64
		       " timeout, %" PRIu64 " closed\n",
		       errors[E_CONNECT], errors[E_TLS], errors[E_TIMEOUT], errors[E_CLOSED]);
		for (e = 0; e < E_NCLASS; e++)
			if (first_err[e])
				printf("    %s: %s\n", err_names[e], first_err[e]);
		for (s = 0; s < MAX_STATUS; s++)
			if (status[s])
				printf("    early answers with status %d: %" PRIu64 "\n", s, status[s]);
	}
	return held > 0 ? 0 : 1;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	int i, k, rc;
	long need;
	double ramp_s = 0;

	parse_args(argc, argv);
	raise_nofile();
	need = (long)opt.connections + 64;
	if (nofile_limit() < need)
		fprintf(stderr, "loadgen: warning: %d connections need about %ld file"
			" descriptors; the limit is %ld\n", opt.connections, need,
			nofile_limit());
	signal(SIGPIPE, SIG_IGN);
	parse_url();
	conn_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	for (k = 0; k < (opt.ncerts ? opt.ncerts : 1); k++)
		ctxs[k] = make_ctx(opt.ncerts ? opt.certs[k] : NULL,
				   opt.ncerts ? opt.keys[k] : NULL);

	for (i = 0; i < opt.threads; i++) {
		struct worker *w = &workers[i];

		w->id = i;
		w->base = event_base_new();
		if (w->base == NULL)
			die("%s", "event_base_new failed");
		/* connections i, i+T, i+2T, ... */
		w->nconns = opt.connections / opt.threads +
			    (i < opt.connections % opt.threads ? 1 : 0);
		w->conns = calloc((size_t)w->nconns, sizeof(*w->conns));
		if (w->conns == NULL)
			die("%s", "out of memory");
		for (k = 0; k < w->nconns; k++) {
			w->conns[k].w = w;
			w->conns[k].cert_idx = opt.ncerts ? (k * opt.threads + i) % opt.ncerts : 0;
		}
	}

	t_start = now_s();
	t_window_begin = t_start + opt.warmup_s;
	t_window_end = t_window_begin + opt.duration_s;
	for (i = 0; i < opt.threads; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
			die("%s", "pthread_create failed");

	if (opt.mode == MODE_IDLE) {
		/* Progress on stderr; "holding" marks the start of the hold phase
		 * (bench/server.sh waits for it before sampling the server). */
		double next_print = t_start + 1;

		for (;;) {
			double t = now_s();
			int ramped = atomic_load(&workers_ramped) == opt.threads;

			if (ramped || t - t_start > RAMP_TIMEOUT_S) {
				ramp_s = t - t_start;
				fprintf(stderr, "loadgen: idle: %d established, %d failed in %.1f s;"
					" holding for %.0f s\n", atomic_load(&idle_established),
					atomic_load(&idle_failed_count), ramp_s, opt.duration_s);
				atomic_store(&hold_deadline, t + opt.duration_s);
				break;
			}
			if (t >= next_print) {
				fprintf(stderr, "loadgen: idle: %d established, %d failed\n",
					atomic_load(&idle_established),
					atomic_load(&idle_failed_count));
				next_print += 1;
			}
			usleep(20000);
		}
	}
	for (i = 0; i < opt.threads; i++)
		pthread_join(workers[i].thread, NULL);
	rc = opt.mode == MODE_IDLE ? report_idle(ramp_s) : report_load();
	for (i = 0; i < opt.threads; i++) {
		free(workers[i].lat.us);
		free(workers[i].conns);
		event_base_free(workers[i].base);
	}
	for (k = 0; k < (opt.ncerts ? opt.ncerts : 1); k++)
		SSL_CTX_free(ctxs[k]);
	return rc;
}
