/*
 * tls.c - the server's TLS context and the state of each connection.
 *
 * The handshake asks for a client certificate but accepts any or none:
 * enrollment and health are public, and authentication happens after
 * the handshake against the tenant that the presented chain names
 * (auth.c), so OpenSSL's own verification is switched off entirely.
 *
 * Each accepted connection gets an SSL and a srv_conn hung on it as
 * ex_data; the srv_conn is freed by OpenSSL's ex_data free callback when
 * the SSL is (the bufferevent frees it), so it can never outlive its
 * connection nor be freed before it.  Memory per idle connection is kept
 * small: SSL_MODE_RELEASE_BUFFERS, no session cache, no tickets.
 *
 * Between evhttp freeing a connection's bufferevent and libevent
 * finalizing it (later in the same loop iteration; that frees the SSL,
 * so the srv_conn and its events) an event of ours may still fire.  It
 * must not touch the bufferevent then: bufferevent_trigger_event takes
 * and drops a reference, and dropping it to zero a second time finalizes
 * the bufferevent again, a double SSL_free.  bev_released() tells.
 *
 * Connections over a limit (per address, or in all): up to twice the
 * limit they get their handshake and a 503 JSON answer to their first
 * request, under a short deadline (REFUSE_DEADLINE_S); beyond twice the
 * limit they are closed right after accept, before the handshake, so
 * bare TCP connections cannot hold more descriptors than that.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "runtime.h"

#define REFUSE_DEADLINE_S 2

static int conn_index = -1;

/* 1 once evhttp has let go of the bufferevent (bufferevent_free clears
 * its callbacks; evhttp always keeps its event callback set). */
static int bev_released(const srv_conn *conn)
{
	bufferevent_event_cb eventcb = NULL;

	bufferevent_getcb(conn->bev, NULL, NULL, &eventcb, NULL);
	return eventcb == NULL;
}

static int far_over(unsigned long n, unsigned limit)
{
	return n > 2ul * limit;
}

static void conn_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
			 long argl, void *argp)
{
	srv_conn *conn = ptr;

	if (conn == NULL)
		return;
	if (conn->read_timer != NULL)
		event_free(conn->read_timer);
	if (conn->fix_ev != NULL)
		event_free(conn->fix_ev);
	if (conn->accept_ev != NULL)
		event_free(conn->accept_ev);
	srv_auth_conn_clear(conn);
	if (conn->ip_counted)
		srv_limits_conn_remove(conn->ip);
	atomic_fetch_sub(&srv_conns_total, 1);
	free(conn);
}

/* OpenSSL's verification is skipped: auth.c verifies after the handshake. */
static int accept_any_cert(X509_STORE_CTX *ctx, void *arg)
{
	return 1;
}

static void addr_text(const struct sockaddr_storage *ss, char *ip, size_t ip_size,
		      char *source, size_t source_size)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(source, source_size, "%s:%u", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(source, source_size, "[%s]:%u", host, port);
	} else {
		snprintf(source, source_size, "?");
	}
	snprintf(ip, ip_size, "%s", host);
}

/*
 * Counts the connection against its address: 0 within the limit, 1 over
 * it (answered 503), 2 over twice the limit (to be closed at once).
 * Called right after accept (accepted_cb), or at the ClientHello if that
 * could not run (no memory for its event).
 */
static int count_address(srv_conn *conn, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	unsigned limit = srv_cfg->max_conns_per_ip;
	unsigned long n;
	int far;

	if (conn->ip_counted)
		return 0;
	memset(&ss, 0, sizeof(ss));
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	addr_text(&ss, conn->ip, sizeof(conn->ip), conn->source,
		  sizeof(conn->source));
	conn->ip_counted = 1;
	n = srv_limits_conn_add(conn->ip);
	if (n <= limit)
		return 0;
	far = far_over(n, limit);
	atomic_fetch_add(&srv_m_limit[SRV_LIMIT_CONNS_IP], 1);
	srv_log(SRV_LOG_INFO, "too many connections from %s: %lu open, limit "
		"%u; %s", conn->ip, n, limit, far ? "closing the new one at "
		"accept (over twice the limit)" : "answering 503");
	snprintf(conn->refusal, sizeof(conn->refusal), "too many connections "
		 "from %s: %lu open, limit %u; close some or raise "
		 "--max-conns-per-ip", conn->ip, n, limit);
	conn->over_limit = 1;
	srv_conn_set_read_deadline(conn);
	return far ? 2 : 1;
}

/*
 * Runs in the same loop iteration as the accept, once evhttp has given
 * the bufferevent its socket and before any byte is read: a connection
 * over twice its address's limit, or twice the total cap, is closed here
 * before the handshake costs anything, so a client opening TCP
 * connections and sending nothing cannot hold more than that.
 */
static void accepted_cb(evutil_socket_t unused, short what, void *arg)
{
	srv_conn *conn = arg;

	if (bev_released(conn))
		return;
	if (count_address(conn, bufferevent_getfd(conn->bev)) == 2 ||
	    conn->far_over_total)
		/* evhttp takes it as a read error and frees the connection. */
		bufferevent_trigger_event(conn->bev, BEV_EVENT_ERROR |
					  BEV_EVENT_READING, 0);
}

/* The fallback moment the socket is known: the ClientHello. */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
	srv_conn *conn = SSL_get_ex_data(ssl, conn_index);

	if (conn != NULL && !conn->ip_counted &&
	    count_address(conn, SSL_get_fd(ssl)) == 2) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

cf_status srv_tls_new(const srv_config *c, SSL_CTX **out, cf_error *err)
{
	char crt[PATH_MAX], key[PATH_MAX];
	SSL_CTX *ctx = NULL;
	cf_status rc = CF_OK;

	*out = NULL;
	if (snprintf(crt, sizeof(crt), "%s/server.crt", c->dir) >= (int)sizeof(crt) ||
	    snprintf(key, sizeof(key), "%s/server.key", c->dir) >= (int)sizeof(key))
		return cf_error_set(err, CF_ERR_USAGE, "--dir %s is too long", c->dir);
	if (conn_index < 0) {
		conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_free_cb);
		if (conn_index < 0)
			return cf_error_set_ssl(err, CF_ERR_CRYPTO,
				"cannot register the connection state with OpenSSL");
	}
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO, "cannot make a TLS context");
		goto out;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, c->tls12 ? TLS1_2_VERSION
							 : TLS1_3_VERSION)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO, "cannot set the TLS version");
		goto out;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, crt) != 1) {
		rc = cf_error_set_ssl(err, CF_ERR_IO,
			"cannot load the server certificate %s; run 'coffer "
			"server init --dir %s' first", crt, c->dir);
		goto out;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		rc = cf_error_set_ssl(err, CF_ERR_IO,
			"cannot load the server key %s, or it does not match %s",
			key, crt);
		goto out;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, accept_any_cert, NULL);
	SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
				 SSL_OP_CIPHER_SERVER_PREFERENCE);
	*out = ctx;
	ctx = NULL;
out:
	SSL_CTX_free(ctx);
	return rc;
}

/* A refused connection gets a short while to read its 503. */
static unsigned deadline_s(const srv_conn *conn)
{
	unsigned t = srv_cfg->request_timeout_s;

	return conn->over_limit && t > REFUSE_DEADLINE_S ? REFUSE_DEADLINE_S : t;
}

static void read_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_conn *conn = arg;

	if (bev_released(conn))
		return;
	atomic_fetch_add(&srv_m_limit[SRV_LIMIT_TIMEOUT], 1);
	srv_log(SRV_LOG_INFO, "%s: no complete request within %u s; closing",
		conn->source[0] ? conn->source : "a client", deadline_s(conn));
	/* evhttp treats it as its own read timeout and frees the connection. */
	bufferevent_trigger_event(conn->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, 0);
}

void srv_conn_set_read_deadline(srv_conn *conn)
{
	struct timeval tv = { (time_t)deadline_s(conn), 0 };

	conn->phase = CONN_READING;
	if (conn->read_timer != NULL)
		event_add(conn->read_timer, &tv);
}

void srv_conn_clear_read_deadline(srv_conn *conn)
{
	if (conn->read_timer != NULL)
		event_del(conn->read_timer);
}

/*
 * Bytes of a request arrived: if the connection was idle, a request has
 * begun and must be complete within the request timeout (evhttp's own
 * timeout only measures silence, so a client trickling one byte at a
 * time would otherwise hold the connection forever).
 */
static void input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
		     void *arg)
{
	srv_conn *conn = arg;

	if (info->n_added > 0 && conn->phase == CONN_IDLE) {
		conn->request_bytes = 0;
		srv_conn_set_read_deadline(conn);
	}
	conn->request_bytes += info->n_added;
}

/*
 * evhttp answers some requests itself, before any callback of ours: a
 * body or header block above the limits (413 and 400), a malformed
 * request (400), with an HTML page.  Every API answer is JSON, so such a
 * page is replaced before it is sent: it sits in the output buffer until
 * the socket's write event fires in a later loop iteration, and the event
 * activated here runs first.  The page says "Connection: close", and so
 * does the replacement; evhttp closes the connection once it is written.
 */
static void fix_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_conn *conn = arg;
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	char line[32] = "", msg[160], body[320], head[256];
	const char *code;
	int status = 0, n_body, n_head;
	struct evbuffer_ptr at, html;
	ev_ssize_t got;

	conn->fix_armed = 0;
	if (bev_released(conn))
		return;
	/*
	 * Only a page evhttp put into an empty output buffer is replaced: then
	 * nothing of it can have been sent yet (the write event is only added
	 * by that first addition and fires in a later loop iteration), and
	 * nothing of ours is in front of it.  It must also be evhttp's HTML
	 * page, so an answer of ours is never touched.
	 */
	if (conn->fix_at != 0)
		return;
	if (evbuffer_ptr_set(out, &at, 0, EVBUFFER_PTR_SET) != 0)
		return;
	html = evbuffer_search(out, "<HTML><HEAD>", 12, &at);
	if (html.pos < 0)
		return;
	got = evbuffer_copyout(out, line, sizeof(line) - 1);
	if (got < 13 || strncmp(line, "HTTP/1.", 7) != 0)
		return;
	line[got] = '\0';
	/* "HTTP/1.x NNN ": exactly three digits, as evhttp writes them. */
	if (line[8] != ' ' || !isdigit((unsigned char)line[9]) ||
	    !isdigit((unsigned char)line[10]) ||
	    !isdigit((unsigned char)line[11]) || line[12] != ' ')
		return;
	status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	if (status < 400)
		return;
	switch (status) {
	case 413:
		atomic_fetch_add(&srv_m_limit[SRV_LIMIT_BODY], 1);
		code = "too_large";
		n_body = snprintf(msg, sizeof(msg), "the request body is above "
			"the server's limit of %zu bytes", srv_cfg->max_body_bytes);
		break;
	case 400:
		if (conn->request_bytes > srv_cfg->max_header_bytes) {
			atomic_fetch_add(&srv_m_limit[SRV_LIMIT_HEADER], 1);
			status = 431;
			code = "headers_too_large";
			n_body = snprintf(msg, sizeof(msg), "the request headers are "
				"above the server's limit of %zu bytes",
				srv_cfg->max_header_bytes);
		} else {
			code = "bad_request";
			n_body = snprintf(msg, sizeof(msg), "the request is not "
				"well-formed HTTP/1.1");
		}
		break;
	case 405:
	case 501:
		code = "method_not_allowed";
		n_body = snprintf(msg, sizeof(msg), "the method is not supported");
		break;
	case 503:
		code = "unavailable";
		n_body = snprintf(msg, sizeof(msg), "the server is out of memory; "
			"retry later");
		break;
	default:
		code = "bad_request";
		n_body = snprintf(msg, sizeof(msg), "the request was refused");
		break;
	}
	srv_log(SRV_LOG_INFO, "%s: request refused (%d): %s", conn->source[0]
		? conn->source : "?", status, msg);
	srv_metrics_count(-1, status);
	n_body = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\","
		"\"message\":\"%s\"}}", code, msg);
	n_head = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n"
		"Content-Type: application/json\r\nCache-Control: no-store\r\n"
		"Connection: close\r\nContent-Length: %d\r\n\r\n", status,
		status == 431 ? "Request Header Fields Too Large" :
		status == 413 ? "Payload Too Large" : "Error", n_body);
	conn->replying = 1;
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add(out, head, (size_t)n_head);
	evbuffer_add(out, body, (size_t)n_body);
	conn->replying = 0;
}

static void output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
		      void *arg)
{
	srv_conn *conn = arg;

	if (info->n_added == 0 || conn->replying || conn->fix_armed)
		return;
	conn->fix_armed = 1;
	conn->fix_at = info->orig_size;
	if (conn->fix_ev == NULL)
		conn->fix_ev = event_new(bufferevent_get_base(conn->bev), -1, 0,
					 fix_cb, conn);
	if (conn->fix_ev != NULL)
		event_active(conn->fix_ev, EV_WRITE, 0);
}

struct bufferevent *srv_tls_bevcb(struct event_base *base, void *arg)
{
	SSL_CTX *ctx = arg;
	srv_conn *conn = calloc(1, sizeof(*conn));
	SSL *ssl = SSL_new(ctx);
	struct bufferevent *bev = NULL;
	unsigned limit = srv_cfg->max_conns;
	long total;

	/*
	 * evhttp cannot be refused a bufferevent here; on failure it gets a
	 * TLS bufferevent without state, whose requests are answered 503.
	 */
	if (ssl == NULL) {
		free(conn);
		return NULL;
	}
	total = atomic_fetch_add(&srv_conns_total, 1) + 1;
	atomic_fetch_add(&srv_m_conns_accepted, 1);
	if (conn != NULL) {
		conn->th = srv_cur_thread;
		conn->phase = CONN_READING;
		if (!SSL_set_ex_data(ssl, conn_index, conn)) {
			free(conn);
			conn = NULL;
			atomic_fetch_sub(&srv_conns_total, 1);
		}
	} else {
		atomic_fetch_sub(&srv_conns_total, 1);
	}
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
		BUFFEREVENT_SSL_ACCEPTING,
		BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);  /* frees conn too */
		return NULL;
	}
	if (conn != NULL) {
		conn->bev = bev;
		if (total > (long)limit) {
			int far = far_over((unsigned long)total, limit);

			conn->over_limit = 1;
			conn->far_over_total = far;
			atomic_fetch_add(&srv_m_limit[SRV_LIMIT_CONNS_TOTAL], 1);
			srv_log(SRV_LOG_INFO, "too many connections in all: %ld "
				"open, limit %u; %s", total, limit, far ?
				"closing the new one at accept (over twice "
				"the limit)" : "answering 503");
			snprintf(conn->refusal, sizeof(conn->refusal), "too many "
				 "connections to the server: %ld open, limit "
				 "%u; retry later or raise --max-conns", total,
				 limit);
		}
		conn->read_timer = evtimer_new(base, read_deadline_cb, conn);
		srv_conn_set_read_deadline(conn);
		evbuffer_add_cb(bufferevent_get_input(bev), input_cb, conn);
		evbuffer_add_cb(bufferevent_get_output(bev), output_cb, conn);
		conn->accept_ev = event_new(base, -1, 0, accepted_cb, conn);
		if (conn->accept_ev != NULL)
			event_active(conn->accept_ev, EV_WRITE, 0);
	}
	return bev;
}

srv_conn *srv_conn_of(struct evhttp_connection *evcon)
{
	struct bufferevent *bev;
	SSL *ssl;

	if (evcon == NULL)
		return NULL;
	bev = evhttp_connection_get_bufferevent(evcon);
	ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
	return ssl ? SSL_get_ex_data(ssl, conn_index) : NULL;
}
