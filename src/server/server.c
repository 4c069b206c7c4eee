/*
 * server.c - the server's settings, threads, listeners, run loop,
 * signals and log.
 *
 * srv_run opens one store connection per worker thread (and one for the
 * main thread's tenant refresh), makes the TLS context, binds every
 * --listen address once per worker thread with SO_REUSEPORT (the first
 * socket picks the port when it is 0, the others bind to the same one),
 * and runs one event loop per worker.  The main thread only handles
 * signals, the 5-second refresh of tenants and CRLs, and, on PostgreSQL,
 * the wake-ups of the other nodes sharing the database: it listens on a
 * connection of its own (cf_store_listener), wakes the long-polls another
 * node's change concerns and re-reads the tenants when one changed.  If
 * that connection drops (the database restarting, failing over) it comes
 * back with a backoff of LISTEN_RETRY_MIN_MS doubling to
 * LISTEN_RETRY_MAX_MS, and then every long-poll of this node looks again,
 * since the wake-ups in between are lost.  A reconnection attempt blocks
 * the main thread (signals, the refresh) for at most libpq's
 * connect_timeout; the workers go on meanwhile.
 *
 * Shutdown (SIGTERM/SIGINT): each worker stops accepting, answers its
 * parked long-polls (their wait counts as over), lets requests in flight
 * finish for up to SHUTDOWN_GRACE_MS, then frees its connections.  The
 * main thread joins the workers and frees what they shared last, so a
 * cross-thread wake-up never touches a freed event.
 *
 * The log is stderr, one line per event: "coffer-server: LEVEL: text".
 */
#include <errno.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "runtime.h"

#define SHUTDOWN_GRACE_MS 3000
#define REFRESH_S 5
#define ACCEPT_PAUSE_MS 250         /* after accept() runs out of descriptors */
#define CONFIG_MAX_BYTES (64 * 1024)
#define LISTEN_RETRY_MIN_MS 100
#define LISTEN_RETRY_MAX_MS 2000

const srv_config *srv_cfg;
int64_t srv_start_ms;
_Thread_local srv_thread *srv_cur_thread;
char srv_node_id[CF_STORE_NODE_LEN + 1];
srv_thread *srv_threads;
size_t srv_n_threads;

static struct evhttp_bound_socket *bound[SRV_THREADS_MAX][SRV_LISTEN_MAX];

/* ---- log and clock ---------------------------------------------------- */

static const char *const level_names[] = { "debug", "info", "warn", "error" };

int srv_log_enabled(int level)
{
	return srv_cfg == NULL || level >= srv_cfg->log_level;
}

void srv_log(int level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	if (!srv_log_enabled(level))
		return;
	n = snprintf(line, sizeof(line), "coffer-server: %s: ",
		     level_names[level < 0 || level > 3 ? 3 : level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	/* Messages quote clients (paths, names): no newline of theirs gets in. */
	for (char *p = line + n; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	n = (int)strlen(line);
	line[n++] = '\n';
	/* One write per line, so lines of several threads never interleave. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to complain to. */
	}
}

int64_t srv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t srv_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- settings --------------------------------------------------------- */

void srv_config_defaults(srv_config *c)
{
	memset(c, 0, sizeof(*c));
	c->max_body_bytes = 2u * 1024u * 1024u;
	c->max_header_bytes = 16u * 1024u;
	c->max_conns_per_ip = 256;
	c->max_conns = 20000;
	c->rate_per_s = 20;
	c->rate_burst = 40;
	c->idle_timeout_s = 120;
	c->metrics_every_s = 60;
	c->request_timeout_s = 10;
	c->log_level = SRV_LOG_INFO;
}

void srv_config_clear(srv_config *c)
{
	free(c->dir);
	free(c->db);
	for (size_t i = 0; i < c->n_listen; i++)
		free(c->listen[i]);
	free(c->port_file);
	memset(c, 0, sizeof(*c));
}

static cf_status set_string(char **field, const char *value, cf_error *err)
{
	char *copy = strdup(value);

	if (copy == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	free(*field);
	*field = copy;
	return CF_OK;
}

static cf_status parse_num(const char *key, const char *value,
			   unsigned long long min, unsigned long long max,
			   unsigned long long *out, cf_error *err)
{
	char *end = NULL;
	unsigned long long v;

	errno = 0;
	if (value[0] < '0' || value[0] > '9')
		return cf_error_set(err, CF_ERR_USAGE,
			"%s needs a whole number, not \"%s\"", key, value);
	v = strtoull(value, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return cf_error_set(err, CF_ERR_USAGE,
			"%s must be a whole number from %llu to %llu, not \"%s\"",
			key, min, max, value);
	*out = v;
	return CF_OK;
}

static cf_status parse_flag(const char *key, const char *value, int *out,
			    cf_error *err)
{
	if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0)
		*out = 1;
	else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0)
		*out = 0;
	else
		return cf_error_set(err, CF_ERR_USAGE,
			"%s is true or false, not \"%s\"", key, value);
	return CF_OK;
}

cf_status srv_config_set(srv_config *c, const char *key, const char *value,
			 cf_error *err)
{
	unsigned long long v = 0;
	cf_status rc = CF_OK;

	if (strcmp(key, "dir") == 0)
		return set_string(&c->dir, value, err);
	if (strcmp(key, "db") == 0)
		return set_string(&c->db, value, err);
	if (strcmp(key, "port-file") == 0)
		return set_string(&c->port_file, value, err);
	if (strcmp(key, "listen") == 0) {
		if (c->n_listen == SRV_LISTEN_MAX)
			return cf_error_set(err, CF_ERR_USAGE,
				"at most %d --listen addresses", SRV_LISTEN_MAX);
		c->listen[c->n_listen] = strdup(value);
		if (c->listen[c->n_listen] == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		c->n_listen++;
		return CF_OK;
	}
	if (strcmp(key, "tls12") == 0)
		return parse_flag(key, value, &c->tls12, err);
	if (strcmp(key, "sync-full") == 0)
		return parse_flag(key, value, &c->sync_full, err);
	if (strcmp(key, "log-level") == 0) {
		for (int i = 0; i < 4; i++)
			if (strcmp(value, level_names[i]) == 0) {
				c->log_level = i;
				return CF_OK;
			}
		return cf_error_set(err, CF_ERR_USAGE,
			"log-level is debug, info, warn or error, not \"%s\"", value);
	}
	if (strcmp(key, "rate") == 0) {
		char *end = NULL;
		double r;

		errno = 0;
		r = strtod(value, &end);
		if (end != NULL && strcmp(end, "/s") == 0)
			end += 2;
		if (errno != 0 || end == value || *end != '\0' || !(r >= 0.01) ||
		    r > 1e6)
			return cf_error_set(err, CF_ERR_USAGE,
				"rate is requests per second (\"20/s\"), from "
				"0.01 to 1000000, not \"%s\"", value);
		c->rate_per_s = r;
		/* The default burst follows the rate, in whatever order the
		 * options came; a burst given explicitly stays. */
		if (!c->burst_set)
			c->rate_burst = r * 2 < 1 ? 1 : (unsigned)(r * 2);
		return CF_OK;
	}
	if (strcmp(key, "threads") == 0) {
		rc = parse_num(key, value, 1, SRV_THREADS_MAX, &v, err);
		c->threads = (unsigned)v;
	} else if (strcmp(key, "max-body") == 0) {
		rc = parse_num(key, value, 1024, 1024ull * 1024 * 1024, &v, err);
		c->max_body_bytes = (size_t)v;
	} else if (strcmp(key, "max-header") == 0) {
		rc = parse_num(key, value, 1024, 1024 * 1024, &v, err);
		c->max_header_bytes = (size_t)v;
	} else if (strcmp(key, "max-conns-per-ip") == 0) {
		rc = parse_num(key, value, 1, 1000000, &v, err);
		c->max_conns_per_ip = (unsigned)v;
	} else if (strcmp(key, "max-conns") == 0) {
		rc = parse_num(key, value, 1, 10000000, &v, err);
		c->max_conns = (unsigned)v;
	} else if (strcmp(key, "burst") == 0) {
		rc = parse_num(key, value, 1, 1000000, &v, err);
		c->rate_burst = (unsigned)v;
		c->burst_set = 1;
	} else if (strcmp(key, "idle-timeout") == 0) {
		rc = parse_num(key, value, 1, 86400, &v, err);
		c->idle_timeout_s = (unsigned)v;
	} else if (strcmp(key, "metrics-every") == 0) {
		rc = parse_num(key, value, 0, 86400, &v, err);
		c->metrics_every_s = (unsigned)v;
	} else if (strcmp(key, "request-timeout") == 0) {
		rc = parse_num(key, value, 1, 3600, &v, err);
		c->request_timeout_s = (unsigned)v;
	} else {
		return cf_error_set(err, CF_ERR_PARSE, "unknown setting \"%s\"", key);
	}
	return rc;
}

cf_status srv_config_load(srv_config *c, const char *path, cf_error *err)
{
	json_error_t jerr;
	json_t *doc = NULL, *value;
	const char *key;
	cf_status rc = CF_OK;
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t len;

	if (f == NULL)
		return cf_error_set(err, CF_ERR_IO, "cannot open the config file "
				    "%s: %s", path, strerror(errno));
	text = malloc(CONFIG_MAX_BYTES + 1);
	len = text ? fread(text, 1, CONFIG_MAX_BYTES + 1, f) : 0;
	fclose(f);
	if (text == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (len > CONFIG_MAX_BYTES) {
		rc = cf_error_set(err, CF_ERR_TOO_LARGE, "the config file %s is "
				  "above %d bytes", path, CONFIG_MAX_BYTES);
		goto out;
	}
	doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL || !json_is_object(doc)) {
		rc = cf_error_set(err, CF_ERR_PARSE, "the config file %s is not a "
			"JSON object (line %d: %s)", path, doc ? 1 : jerr.line,
			doc ? "not an object" : jerr.text);
		goto out;
	}
	json_object_foreach(doc, key, value) {
		char buf[64];
		cf_error why = { 0 };

		if (strcmp(key, "listen") == 0 && json_is_array(value)) {
			size_t i;
			json_t *item;

			json_array_foreach(value, i, item) {
				if (!json_is_string(item)) {
					rc = cf_error_set(err, CF_ERR_PARSE,
						"%s: \"listen\" holds addresses as "
						"strings", path);
					goto out;
				}
				rc = srv_config_set(c, key, json_string_value(item), &why);
				if (rc != CF_OK)
					break;
			}
		} else if (json_is_string(value)) {
			rc = srv_config_set(c, key, json_string_value(value), &why);
		} else if (json_is_integer(value)) {
			snprintf(buf, sizeof(buf), "%lld",
				 (long long)json_integer_value(value));
			rc = srv_config_set(c, key, buf, &why);
		} else if (json_is_real(value)) {
			snprintf(buf, sizeof(buf), "%g", json_real_value(value));
			rc = srv_config_set(c, key, buf, &why);
		} else if (json_is_boolean(value)) {
			rc = srv_config_set(c, key, json_is_true(value) ? "1" : "0", &why);
		} else {
			rc = cf_error_set(&why, CF_ERR_PARSE,
				"\"%s\" has a value of the wrong type", key);
		}
		if (rc != CF_OK) {
			rc = cf_error_set(err, rc == CF_ERR_NOMEM ? rc : CF_ERR_PARSE,
					  "config file %s: %s", path, why.msg);
			goto out;
		}
	}
out:
	json_decref(doc);
	free(text);
	return rc;
}

/* ---- listeners ---------------------------------------------------------- */

static cf_status parse_listen(const char *text, char *host, size_t host_size,
			      char *port, size_t port_size, cf_error *err)
{
	const char *colon = strrchr(text, ':');
	size_t hlen;

	if (colon == NULL || colon[1] == '\0')
		return cf_error_set(err, CF_ERR_USAGE, "--listen %s: give "
			"ADDRESS:PORT (\"127.0.0.1:8443\", \"[::1]:8443\")", text);
	hlen = (size_t)(colon - text);
	if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
		text++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= host_size || strlen(colon + 1) >= port_size)
		return cf_error_set(err, CF_ERR_USAGE, "--listen %s: bad address",
				    text);
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	snprintf(port, port_size, "%s", colon + 1);
	return CF_OK;
}

static cf_status bind_one(const struct addrinfo *ai, unsigned short port,
			  int *fd_out, unsigned short *port_out, cf_error *err)
{
	struct sockaddr_storage ss;
	socklen_t len = (socklen_t)ai->ai_addrlen;
	int fd, on = 1;

	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	/*
	 * evhttp writes a reply's headers and body as separate TLS records;
	 * with Nagle on, the second waits for the client's delayed ACK
	 * (~40 ms per reply on a keep-alive connection).  Accepted sockets
	 * inherit the option from the listener on Linux.
	 */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
		int e = errno;

		close(fd);
		return cf_error_set(err, CF_ERR_IO, "cannot listen on port %u: %s",
				    port, strerror(e));
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		*port_out = ntohs(ss.ss_family == AF_INET
			? ((struct sockaddr_in *)&ss)->sin_port
			: ((struct sockaddr_in6 *)&ss)->sin6_port);
	*fd_out = fd;
	return CF_OK;
}

/* After a pause: listen again on what this thread still has bound. */
static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_thread *th = arg;

	th->accept_paused = 0;
	if (th->draining)
		return;
	for (size_t l = 0; l < srv_cfg->n_listen; l++)
		if (bound[th->index][l] != NULL)
			evconnlistener_enable(evhttp_bound_socket_get_listener(
				bound[th->index][l]));
}

/*
 * accept() failed for another reason than "try again": out of descriptors
 * (EMFILE, ENFILE) or kernel memory.  The listening socket stays readable,
 * so without this the loop would spin at full CPU; instead this thread
 * stops accepting for ACCEPT_PAUSE_MS while its connections time out.
 */
static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
	srv_thread *th = srv_cur_thread;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, ACCEPT_PAUSE_MS * 1000 };

	evconnlistener_disable(lev);
	if (th == NULL || th->accept_resume_ev == NULL)
		return;
	if (!th->accept_paused)
		srv_log(SRV_LOG_WARN, "cannot accept connections: %s; pausing "
			"for %d ms (raise the descriptor limit or lower "
			"--max-conns)", strerror(e), ACCEPT_PAUSE_MS);
	th->accept_paused = 1;
	for (size_t l = 0; l < srv_cfg->n_listen; l++)
		if (bound[th->index][l] != NULL)
			evconnlistener_disable(evhttp_bound_socket_get_listener(
				bound[th->index][l]));
	evtimer_add(th->accept_resume_ev, &tv);
}

static cf_status listen_all(const srv_config *c, unsigned short *first_port,
			    cf_error *err)
{
	for (size_t l = 0; l < c->n_listen; l++) {
		struct addrinfo hints = { 0 }, *ai = NULL;
		char host[256], port_text[16];
		unsigned long long want = 0;
		unsigned short port = 0;
		cf_status rc;
		int gai;

		rc = parse_listen(c->listen[l], host, sizeof(host), port_text,
				  sizeof(port_text), err);
		if (rc == CF_OK)
			rc = parse_num("--listen port", port_text, 0, 65535, &want, err);
		if (rc != CF_OK)
			return rc;
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
		gai = getaddrinfo(host, port_text, &hints, &ai);
		if (gai != 0)
			return cf_error_set(err, CF_ERR_USAGE, "--listen %s: %s",
					    c->listen[l], gai_strerror(gai));
		port = (unsigned short)want;
		for (size_t t = 0; t < srv_n_threads && rc == CF_OK; t++) {
			int fd = -1;

			rc = bind_one(ai, port, &fd, &port, err);
			if (rc != CF_OK)
				break;
			bound[t][l] = evhttp_accept_socket_with_handle(
				srv_threads[t].http, fd);
			if (bound[t][l] != NULL)
				evconnlistener_set_error_cb(
					evhttp_bound_socket_get_listener(bound[t][l]),
					accept_error_cb);
			if (bound[t][l] == NULL) {
				close(fd);
				rc = cf_error_set(err, CF_ERR_IO,
					"cannot accept on %s", c->listen[l]);
			}
		}
		freeaddrinfo(ai);
		if (rc != CF_OK)
			return cf_error_set(err, rc, "--listen %s: %s", c->listen[l],
					    err->msg);
		if (l == 0)
			*first_port = port;
		srv_log(SRV_LOG_INFO, "listening on %s%s%s:%u (%zu threads)",
			strchr(host, ':') ? "[" : "", host,
			strchr(host, ':') ? "]" : "", port, srv_n_threads);
	}
	return CF_OK;
}

static cf_status write_port_file(const char *path, unsigned short port,
				 cf_error *err)
{
	char tmp[PATH_MAX], text[16];
	int fd, n = snprintf(text, sizeof(text), "%u\n", port);

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return cf_error_set(err, CF_ERR_USAGE, "--port-file is too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) != 0 ||
	    rename(tmp, path) != 0) {
		int e = errno;

		if (fd >= 0)
			unlink(tmp);
		return cf_error_set(err, CF_ERR_IO, "cannot write the port file "
				    "%s: %s", path, strerror(e));
	}
	return CF_OK;
}

/* ---- workers ------------------------------------------------------------- */

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
	srv_thread *th = arg;
	struct timeval tv = { 0, 50 * 1000 };

	if (atomic_load(&th->busy) == 0 || srv_now_ms() >= th->drain_deadline_ms) {
		event_base_loopbreak(th->base);
		return;
	}
	evtimer_add(th->drain_timer, &tv);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_thread *th = arg;
	struct timeval tv = { 0, 0 };

	if (th->draining)
		return;
	th->draining = 1;
	for (size_t l = 0; l < srv_cfg->n_listen; l++)
		if (bound[th->index][l] != NULL) {
			evhttp_del_accept_socket(th->http, bound[th->index][l]);
			bound[th->index][l] = NULL;
		}
	srv_park_drain(th);
	th->drain_deadline_ms = srv_now_ms() + SHUTDOWN_GRACE_MS;
	th->drain_timer = evtimer_new(th->base, drain_tick, th);
	if (th->drain_timer != NULL)
		evtimer_add(th->drain_timer, &tv);
	else
		event_base_loopbreak(th->base);
}

static void *thread_main(void *arg)
{
	srv_thread *th = arg;

	srv_cur_thread = th;
	event_base_dispatch(th->base);
	/* Frees every connection (close callbacks run), then their TLS state. */
	evhttp_free(th->http);
	th->http = NULL;
	for (int i = 0; i < 4; i++)
		event_base_loop(th->base, EVLOOP_NONBLOCK);
	ERR_clear_error();
	return NULL;
}

static cf_status thread_setup(srv_thread *th, const srv_config *c, SSL_CTX *ctx,
			      const char *db, cf_error *err)
{
	cf_status rc;

	th->base = event_base_new();
	th->http = th->base ? evhttp_new(th->base) : NULL;
	if (th->http == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "cannot make an event loop");
	evhttp_set_bevcb(th->http, srv_tls_bevcb, ctx);
	evhttp_set_gencb(th->http, srv_http_gencb, th);
	evhttp_set_timeout(th->http, (int)c->idle_timeout_s);
	evhttp_set_max_headers_size(th->http, (ev_ssize_t)c->max_header_bytes);
	evhttp_set_max_body_size(th->http, (ev_ssize_t)c->max_body_bytes);
	evhttp_set_allowed_methods(th->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
		EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
		EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	th->stop_ev = event_new(th->base, -1, 0, stop_cb, th);
	th->accept_resume_ev = evtimer_new(th->base, accept_resume_cb, th);
	if (th->stop_ev == NULL || th->accept_resume_ev == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = srv_park_thread_init(th, err);
	if (rc == CF_OK)
		rc = cf_store_open(db, c->sync_full ? CF_STORE_SYNC_FULL : 0,
				   &th->store, err);
	return rc;
}

static void thread_clear(srv_thread *th)
{
	if (th->http != NULL)
		evhttp_free(th->http);
	if (th->stop_ev != NULL)
		event_free(th->stop_ev);
	if (th->accept_resume_ev != NULL)
		event_free(th->accept_resume_ev);
	if (th->drain_timer != NULL)
		event_free(th->drain_timer);
	srv_park_thread_clear(th);
	if (th->base != NULL)
		event_base_free(th->base);
	cf_store_free(th->store);
	memset(th, 0, sizeof(*th));
}

/* ---- the main thread ------------------------------------------------------ */

typedef struct main_state {
	struct event_base *base;
	cf_store *store;
	int stopping;
	/* Wake-ups from the other nodes (PostgreSQL only; NULL: none). */
	cf_store_listener *listener;
	struct event *listen_ev;     /* its descriptor, while it is up */
	struct event *relisten_ev;   /* timer: the next reconnection */
	int relisten_ms;             /* the backoff; 0 while up */
	int reload_tenants;          /* set by on_wake */
} main_state;

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	main_state *m = arg;

	if (sig == SIGHUP) {
		srv_log(SRV_LOG_INFO, "SIGHUP: re-reading tenants and CRLs");
		srv_auth_reload(m->store, 1);
		return;
	}
	if (m->stopping)
		return;
	m->stopping = 1;
	srv_log(SRV_LOG_INFO, "%s: stopping (answering parked requests, "
		"finishing those in flight)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	for (size_t t = 0; t < srv_n_threads; t++)
		event_active(srv_threads[t].stop_ev, EV_READ, 0);
	event_base_loopbreak(m->base);
}

/*
 * Once a minute: drop the envelopes of expired commands, and commands
 * past their retention (docs/COMMANDS.md).  Housekeeping of data nobody
 * may read any more; no audit entry.
 */
static void expire_commands(cf_store *st)
{
	static int64_t last;
	int64_t now = srv_now(), removed = 0;
	cf_error err;

	if (now - last < 60)
		return;
	last = now;
	if (cf_store_cmd_expire(st, now, CF_STORE_CMD_RETENTION, &removed,
				&err) != CF_OK)
		srv_log(SRV_LOG_ERROR, "clearing expired commands: %s", err.msg);
	else if (removed > 0)
		srv_log(SRV_LOG_INFO, "removed %lld commands older than %d "
			"days", (long long)removed,
			CF_STORE_CMD_RETENTION / 86400);
}

/* ---- wake-ups from the other nodes ---------------------------------------- */

static void on_wake(void *ctx, const cf_store_wake *w)
{
	main_state *m = ctx;

	if (w->kind == CF_STORE_WAKE_FEEDS)
		srv_wake_local(w->tenant, w->recipients, w->n);
	else if (w->kind == CF_STORE_WAKE_TENANTS)
		m->reload_tenants = 1;
}

static void relisten_later(main_state *m)
{
	struct timeval tv;

	m->relisten_ms = m->relisten_ms == 0 ? LISTEN_RETRY_MIN_MS :
		m->relisten_ms * 2 > LISTEN_RETRY_MAX_MS ? LISTEN_RETRY_MAX_MS :
		m->relisten_ms * 2;
	tv.tv_sec = m->relisten_ms / 1000;
	tv.tv_usec = (m->relisten_ms % 1000) * 1000;
	if (m->relisten_ev != NULL)
		evtimer_add(m->relisten_ev, &tv);
}

static void on_listener(evutil_socket_t fd, short what, void *arg)
{
	main_state *m = arg;
	cf_error err;

	m->reload_tenants = 0;
	if (cf_store_listener_read(m->listener, on_wake, m, &err) != CF_OK) {
		srv_log(SRV_LOG_WARN, "%s; until it is back, other nodes' "
			"changes reach this node's long-polls at their timeout",
			err.msg);
		event_free(m->listen_ev);
		m->listen_ev = NULL;
		relisten_later(m);
	}
	/*
	 * Several tenant changes in one read: one re-read; and at most one
	 * a second (any database role may NOTIFY): a later change within the
	 * second is picked up by the 5 s refresh at the latest.
	 */
	if (m->reload_tenants) {
		static int64_t last;
		int64_t now = srv_now();

		if (now != last) {
			last = now;
			srv_auth_reload(m->store, 1);
		}
	}
}

/* Watches the listener's (new) descriptor: 0, or -1 with a reconnection
 * scheduled. */
static int listener_watch(main_state *m)
{
	int fd = cf_store_listener_fd(m->listener);

	m->listen_ev = fd < 0 ? NULL : event_new(m->base, fd,
		EV_READ | EV_PERSIST, on_listener, m);
	if (m->listen_ev == NULL || event_add(m->listen_ev, NULL) != 0) {
		if (m->listen_ev != NULL)
			event_free(m->listen_ev);
		m->listen_ev = NULL;
		relisten_later(m);
		return -1;
	}
	m->relisten_ms = 0;
	return 0;
}

static void on_relisten(evutil_socket_t fd, short what, void *arg)
{
	main_state *m = arg;
	cf_error err;

	if (m->stopping)
		return;
	if (cf_store_listener_reconnect(m->listener, &err) != CF_OK) {
		/* Said once per outage, not every 2 s. */
		srv_log(m->relisten_ms > LISTEN_RETRY_MIN_MS ? SRV_LOG_DEBUG :
			SRV_LOG_WARN, "cannot listen for other nodes' wake-ups "
			"yet: %s", err.msg);
		relisten_later(m);
		return;
	}
	if (listener_watch(m) != 0)
		return;
	srv_log(SRV_LOG_INFO, "listening for other nodes' wake-ups again; "
		"every parked long-poll looks again");
	/* What the others changed meanwhile was not announced to us. */
	srv_wake_all();
	srv_auth_reload(m->store, 1);
}

/*
 * Opens the listener on db's database, if its backend has one.  A
 * database that cannot be reached right now is retried in the
 * background; only running out of memory stops the server.
 */
static cf_status listener_start(main_state *m, const char *db, cf_error *err)
{
	unsigned char id[CF_STORE_NODE_LEN / 2];
	cf_error why;
	cf_status rc;

	if (RAND_bytes(id, (int)sizeof(id)) != 1)
		return cf_error_set_ssl(err, CF_ERR_CRYPTO, "cannot draw a node id");
	for (size_t i = 0; i < sizeof(id); i++)
		snprintf(srv_node_id + 2 * i, 3, "%02x", id[i]);
	rc = cf_store_listener_open(db, srv_node_id, &m->listener, &why);
	if (rc == CF_ERR_USAGE)
		return CF_OK;  /* SQLite: one process, nobody else to hear */
	if (rc == CF_ERR_NOMEM)
		return cf_error_set(err, rc, "%s", why.msg);
	if (m->listener == NULL) {
		srv_log(SRV_LOG_WARN, "no wake-ups from other nodes: %s; their "
			"changes reach long-polls here at their timeout",
			why.msg);
		return CF_OK;
	}
	m->relisten_ev = evtimer_new(m->base, on_relisten, m);
	if (m->relisten_ev == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (rc != CF_OK) {
		srv_log(SRV_LOG_WARN, "cannot listen for other nodes' wake-ups "
			"yet: %s", why.msg);
		relisten_later(m);
		return CF_OK;
	}
	if (listener_watch(m) == 0)
		srv_log(SRV_LOG_INFO, "listening for other nodes' wake-ups "
			"(node %s)", srv_node_id);
	return CF_OK;
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
	main_state *m = arg;

	srv_auth_reload(m->store, 1);
	srv_limits_sweep();
	expire_commands(m->store);
}

static unsigned raise_fd_limit(const srv_config *c)
{
	struct rlimit rl;
	rlim_t usable;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return c->max_conns;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	/* Descriptors for the listeners, the databases and the rest. */
	usable = rl.rlim_cur > 256 ? rl.rlim_cur - 256 : 16;
	if ((rlim_t)c->max_conns > usable) {
		srv_log(SRV_LOG_INFO, "max-conns %u is above what %llu file "
			"descriptors allow; using %llu", c->max_conns,
			(unsigned long long)rl.rlim_cur, (unsigned long long)usable);
		return (unsigned)usable;
	}
	return c->max_conns;
}

cf_status srv_run(const srv_config *cin, cf_error *err)
{
	srv_config c = *cin;
	main_state m = { 0 };
	struct event *sig_ev[3] = { NULL, NULL, NULL };
	struct event *refresh = NULL;
	struct timeval every = { REFRESH_S, 0 };
	char path[PATH_MAX];
	const char *db = path;
	SSL_CTX *ctx = NULL;
	unsigned short port = 0;
	size_t started = 0;
	cf_status rc;

	srv_cfg = &c;
	srv_start_ms = srv_now_ms();
	/*
	 * The server never holds a plaintext secret (DESIGN 7.1): its JSON is
	 * ciphertext and metadata, and concurrent request bodies of up to
	 * max-body each would not fit the CLI's 32 MiB secure heap.  No JSON
	 * value is alive at this point, so the allocator can change.
	 */
	json_set_alloc_funcs(malloc, free);
	if (c.dir == NULL || c.n_listen == 0)
		return cf_error_set(err, CF_ERR_USAGE, "--dir and --listen are required");
	if (snprintf(path, sizeof(path), "%s/coffer.db", c.dir) >=
	    (int)sizeof(path))
		return cf_error_set(err, CF_ERR_USAGE, "--dir is too long");
	if (c.db != NULL)
		db = c.db;
	c.max_conns = raise_fd_limit(&c);
	if (c.threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		c.threads = n < 1 ? 1 : n > SRV_THREADS_MAX ? SRV_THREADS_MAX : (unsigned)n;
	}
	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() != 0)
		return cf_error_set(err, CF_ERR_CRYPTO, "libevent has no thread support");
	rc = cf_store_open(db, 0, &m.store, err);
	/* A URL is never echoed (it may hold a password): the store's own
	 * sentence names the database. */
	if (rc == CF_ERR_NOT_FOUND && c.db == NULL)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "no database at %s; run "
				  "'coffer server init --dir %s' first", db, c.dir);
	if (rc == CF_OK)
		rc = srv_tls_new(&c, &ctx, err);
	if (rc == CF_OK)
		rc = srv_http_init(err);
	if (rc != CF_OK)
		goto out;
	srv_metrics_init(srv_route_count());
	srv_limits_init();
	srv_auth_init(m.store, err);
	srv_threads = calloc(c.threads, sizeof(*srv_threads));
	if (srv_threads == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	srv_n_threads = c.threads;
	for (size_t t = 0; t < srv_n_threads && rc == CF_OK; t++) {
		srv_threads[t].index = (int)t;
		rc = thread_setup(&srv_threads[t], &c, ctx, db, err);
	}
	if (rc == CF_OK)
		rc = listen_all(&c, &port, err);
	if (rc == CF_OK && c.port_file != NULL)
		rc = write_port_file(c.port_file, port, err);
	m.base = rc == CF_OK ? event_base_new() : NULL;
	if (rc == CF_OK && m.base == NULL)
		rc = cf_error_set(err, CF_ERR_NOMEM, "cannot make an event loop");
	if (rc != CF_OK)
		goto out;
	sig_ev[0] = evsignal_new(m.base, SIGTERM, on_signal, &m);
	sig_ev[1] = evsignal_new(m.base, SIGINT, on_signal, &m);
	sig_ev[2] = evsignal_new(m.base, SIGHUP, on_signal, &m);
	refresh = event_new(m.base, -1, EV_PERSIST, on_refresh, &m);
	for (int i = 0; i < 3; i++)
		if (sig_ev[i] == NULL || evsignal_add(sig_ev[i], NULL) != 0)
			rc = cf_error_set(err, CF_ERR_IO, "cannot catch signals");
	if (refresh == NULL || evtimer_add(refresh, &every) != 0)
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (rc == CF_OK)
		rc = listener_start(&m, db, err);
	for (; rc == CF_OK && started < srv_n_threads; started++)
		if (pthread_create(&srv_threads[started].tid, NULL, thread_main,
				   &srv_threads[started]) != 0)
			rc = cf_error_set(err, CF_ERR_NOMEM, "cannot start a thread");
	if (rc == CF_OK) {
		srv_log(SRV_LOG_INFO, "serving %zu tenant(s) from %s; max body %zu, "
			"max header %zu, %u conns per address, %g req/s "
			"unauthenticated, idle %u s, request %u s",
			srv_auth_tenant_count(), c.db == NULL ? path :
			strncmp(c.db, "sqlite:", 7) == 0 ? c.db + 7 :
			"PostgreSQL", c.max_body_bytes,
			c.max_header_bytes, c.max_conns_per_ip, c.rate_per_s,
			c.idle_timeout_s, c.request_timeout_s);
		event_base_dispatch(m.base);
	} else {
		for (size_t t = 0; t < started; t++)
			event_active(srv_threads[t].stop_ev, EV_READ, 0);
	}
	for (size_t t = 0; t < started; t++)
		pthread_join(srv_threads[t].tid, NULL);
	if (rc == CF_OK)
		srv_log(SRV_LOG_INFO, "stopped");
out:
	for (size_t t = 0; srv_threads != NULL && t < srv_n_threads; t++)
		thread_clear(&srv_threads[t]);
	free(srv_threads);
	srv_threads = NULL;
	srv_n_threads = 0;
	for (int i = 0; i < 3; i++)
		if (sig_ev[i] != NULL)
			event_free(sig_ev[i]);
	if (refresh != NULL)
		event_free(refresh);
	if (m.listen_ev != NULL)
		event_free(m.listen_ev);
	if (m.relisten_ev != NULL)
		event_free(m.relisten_ev);
	cf_store_listener_free(m.listener);
	if (m.base != NULL)
		event_base_free(m.base);
	srv_auth_shutdown();
	srv_limits_shutdown();
	srv_metrics_shutdown();
	srv_http_shutdown();
	cf_store_free(m.store);
	SSL_CTX_free(ctx);
	memset(bound, 0, sizeof(bound));
	srv_cfg = NULL;
	return rc;
}
