/*
 * http.c - a request's way through the server: limits, routing,
 * authentication, the handler, the reply.
 *
 * Every request evhttp completes lands in srv_http_gencb on its
 * connection's thread.  The order is the contract of docs/API.md: a
 * connection over its limits gets 503; an unknown path 404, a known path
 * with another method 405; a public route draws on the per-address rate
 * bucket (429); any other route is authenticated (401) before its handler
 * sees the request or the database is touched.
 *
 * A srv_req lives from there until its reply is handed to evhttp (or its
 * connection goes away while it is parked, park.c); nothing of it is used
 * after.  Every reply is JSON with Cache-Control: no-store, except
 * /metrics.  Bodies are never logged.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "runtime.h"

#ifndef COFFER_VERSION
#define COFFER_VERSION "0.1.0"
#endif

static const srv_route runtime_routes[] = {
	{ "GET", "/v1/health", 0, 1, srv_handle_health },
	{ "GET", "/metrics", 0, 1, srv_handle_metrics },
	{ NULL, NULL, 0, 0, NULL },
};

static const srv_route **routes;     /* flattened, for routing and metrics */
static size_t n_routes;

cf_status srv_http_init(cf_error *err)
{
	const srv_route *tables[] = {
		runtime_routes, srv_routes_certs, srv_routes_tokens,
		srv_routes_enroll, srv_routes_secrets, srv_routes_audit,
		srv_routes_uploads, srv_routes_commands, srv_routes_status,
	};
	size_t n = 0, k = 0;

	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const srv_route *r = tables[t]; r->fn != NULL; r++)
			n++;
	routes = calloc(n ? n : 1, sizeof(*routes));
	if (routes == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const srv_route *r = tables[t]; r->fn != NULL; r++)
			routes[k++] = r;
	n_routes = n;
	return CF_OK;
}

void srv_http_shutdown(void)
{
	free(routes);
	routes = NULL;
	n_routes = 0;
}

size_t srv_route_count(void) { return n_routes; }
const srv_route *srv_route_at(size_t i) { return routes[i]; }

/* ---- accessors -------------------------------------------------------- */

const srv_identity *srv_req_identity(const srv_req *r) { return r->id; }
cf_store *srv_req_store(srv_req *r) { return r->th->store; }

const char *srv_req_source(const srv_req *r)
{
	return r->conn != NULL && r->conn->source[0] ? r->conn->source : "?";
}

/* evhttp has already bounded the headers' size and stripped the white
 * space around each value. */
const char *srv_req_header(const srv_req *r, const char *name, int *count)
{
	struct evkeyvalq *h = r->ev ? evhttp_request_get_input_headers(r->ev) :
			      NULL;
	const char *first = NULL;
	int n = 0;

	for (struct evkeyval *kv = h ? h->tqh_first : NULL; kv != NULL;
	     kv = kv->next.tqe_next) {
		if (evutil_ascii_strcasecmp(kv->key, name) != 0)
			continue;
		if (first == NULL)
			first = kv->value;
		n++;
	}
	if (count != NULL)
		*count = n;
	return first;
}

const char *srv_req_param(const srv_req *r, const char *key)
{
	return r->params ? evhttp_find_header(r->params, key) : NULL;
}

const char *srv_req_path_rest(const srv_req *r)
{
	return r->rest ? r->rest : "";
}

int64_t srv_now(void)
{
	return (int64_t)time(NULL);
}

json_t *srv_req_json(srv_req *r)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->ev);
	size_t len = evbuffer_get_length(in);
	const char *data;
	json_error_t jerr;
	json_t *doc;

	if (len > srv_cfg->max_body_bytes) {
		atomic_fetch_add(&srv_m_limit[SRV_LIMIT_BODY], 1);
		srv_reply_error(r, 413, "too_large",
			"the request body is %zu bytes, above the server's "
			"limit of %zu", len, srv_cfg->max_body_bytes);
		return NULL;
	}
	if (len == 0) {
		srv_reply_error(r, 400, "bad_request",
			"the request needs a JSON object as its body");
		return NULL;
	}
	data = (const char *)evbuffer_pullup(in, -1);
	doc = data ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (doc == NULL) {
		srv_reply_error(r, 400, "bad_request",
			"the body is not valid JSON (line %d: %s)",
			data ? jerr.line : 0, data ? jerr.text : "out of memory");
		return NULL;
	}
	if (!json_is_object(doc)) {
		json_decref(doc);
		srv_reply_error(r, 400, "bad_request",
			"the body must be a JSON object");
		return NULL;
	}
	return doc;
}

/* ---- replies ---------------------------------------------------------- */

static void log_request(srv_req *r, int status)
{
	const char *path = r->path ? r->path : "?";

	if (!srv_log_enabled(SRV_LOG_DEBUG))
		return;
	/*
	 * GET /v1/enroll/ID: the ID is the only thing that lets a joining
	 * agent fetch its certificate; it stays out of the log.
	 */
	if (strncmp(path, "/v1/enroll/", 11) == 0)
		path = "/v1/enroll/(id)";
	srv_log(SRV_LOG_DEBUG, "%s %s %d %lldus %s %.12s", r->method, path,
		status,
		(long long)(srv_now_us() - r->start_us), srv_req_source(r),
		r->id ? r->id->fp : "-");
}

void srv_reply_raw(srv_req *r, int status, const char *content_type,
		   const char *body, size_t len, const char *extra_header,
		   const char *extra_value)
{
	struct evhttp_request *ev = r->ev;
	struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
	struct evbuffer *buf = evbuffer_new();
	srv_conn *conn = r->conn;

	if (r->is_parked)
		srv_unpark(r);
	evhttp_add_header(out, "Content-Type", content_type);
	evhttp_add_header(out, "Cache-Control", "no-store");
	if (extra_header != NULL)
		evhttp_add_header(out, extra_header, extra_value);
	if (r->th->draining || (conn != NULL && conn->over_limit) || status == 401)
		evhttp_add_header(out, "Connection", "close");
	if (buf != NULL)
		evbuffer_add(buf, body, len);
	srv_metrics_count(r->route_index, status);
	log_request(r, status);
	if (conn != NULL) {
		conn->parked = NULL;
		conn->phase = CONN_IDLE;
	}
	r->ev = NULL;
	/* evhttp owns ev from here (and frees it if the peer is gone). */
	if (conn != NULL)
		conn->replying = 1;
	evhttp_send_reply(ev, status, NULL, buf);
	if (conn != NULL)
		conn->replying = 0;
	if (buf != NULL)
		evbuffer_free(buf);
	srv_req_free(r);
}

void srv_reply_json(srv_req *r, int status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	json_decref(body);
	if (text == NULL) {
		static const char oom[] = "{\"error\":{\"code\":\"internal\","
			"\"message\":\"the server ran out of memory\"}}";

		srv_reply_raw(r, 500, "application/json", oom, sizeof(oom) - 1,
			      NULL, NULL);
		return;
	}
	srv_reply_raw(r, status, "application/json", text, strlen(text), NULL, NULL);
	free(text);
}

static void reply_error_v(srv_req *r, int status, const char *code,
			  const char *extra_header, const char *extra_value,
			  const char *fmt, va_list ap)
	__attribute__((format(printf, 6, 0)));
static void reply_error_v(srv_req *r, int status, const char *code,
			  const char *extra_header, const char *extra_value,
			  const char *fmt, va_list ap)
{
	char msg[CF_ERROR_MAX + 256];
	json_t *body;
	char *text;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL) {
		static const char oom[] = "{\"error\":{\"code\":\"internal\","
			"\"message\":\"the server ran out of memory\"}}";

		srv_reply_raw(r, 500, "application/json", oom, sizeof(oom) - 1,
			      NULL, NULL);
		return;
	}
	srv_reply_raw(r, status, "application/json", text, strlen(text),
		      extra_header, extra_value);
	free(text);
}

void srv_reply_error(srv_req *r, int status, const char *code,
		     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_error_v(r, status, code, NULL, NULL, fmt, ap);
	va_end(ap);
}

static void reply_error_hdr(srv_req *r, int status, const char *code,
			    const char *header, const char *value,
			    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void reply_error_hdr(srv_req *r, int status, const char *code,
			    const char *header, const char *value,
			    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_error_v(r, status, code, header, value, fmt, ap);
	va_end(ap);
}

/*
 * The HTTP status and code of each status a handler may pass on.  The
 * caller is authenticated by then, so a certificate or name it sent that
 * does not verify is a bad request, not a 401.
 */
static const struct {
	cf_status code;
	int http;
	const char *name;
} status_map[] = {
	{ CF_ERR_USAGE, 400, "bad_request" },
	{ CF_ERR_PARSE, 400, "bad_request" },
	{ CF_ERR_UNTRUSTED, 400, "bad_request" },
	{ CF_ERR_REVOKED, 400, "bad_request" },
	{ CF_ERR_NAME, 400, "bad_request" },
	{ CF_ERR_POLICY, 403, "forbidden" },
	{ CF_ERR_PERMISSION, 403, "forbidden" },
	{ CF_ERR_DENIED, 403, "forbidden" },
	{ CF_ERR_NOT_FOUND, 404, "not_found" },
	{ CF_ERR_EXISTS, 409, "conflict" },
	{ CF_ERR_CONFLICT, 409, "conflict" },
	{ CF_ERR_TOKEN, 410, "gone" },
	{ CF_ERR_TOO_LARGE, 413, "too_large" },
	{ CF_ERR_LIMIT, 429, "rate_limited" },
};

int srv_status_http(cf_status code, const char **name)
{
	for (size_t i = 0; i < sizeof(status_map) / sizeof(status_map[0]); i++)
		if (status_map[i].code == code) {
			*name = status_map[i].name;
			return status_map[i].http;
		}
	*name = "internal";
	return 500;
}

void srv_audit_init(const srv_req *r, cf_audit_entry *e, const char *action,
		    const char *object, int64_t bytes)
{
	memset(e, 0, sizeof(*e));
	e->time = srv_now();
	if (r->id != NULL) {
		snprintf(e->tenant, sizeof(e->tenant), "%s", r->id->tenant);
		snprintf(e->actor, sizeof(e->actor), "%s", r->id->fp);
		snprintf(e->subject, sizeof(e->subject), "%s", r->id->subject);
	}
	snprintf(e->source, sizeof(e->source), "%s", srv_req_source(r));
	snprintf(e->action, sizeof(e->action), "%s", action ? action : "");
	snprintf(e->object, sizeof(e->object), "%s", object ? object : "");
	e->bytes = bytes;
}

void srv_req_free(srv_req *r)
{
	if (r == NULL)
		return;
	if (r->is_parked)
		srv_unpark(r);
	if (r->park_timer != NULL)
		event_free(r->park_timer);
	if (r->park_closed != NULL)
		event_free(r->park_closed);
	if (r->params != NULL) {
		evhttp_clear_headers(r->params);
		free(r->params);
	}
	free(r->path);
	atomic_fetch_sub(&r->th->busy, 1);
	free(r);
}

/* ---- /v1/health --------------------------------------------------------- */

void srv_handle_health(srv_req *r)
{
	srv_reply_json(r, 200, json_pack("{s:s,s:s,s:i}", "status", "ok",
		"version", COFFER_VERSION,
		"schema", cf_store_schema_version(r->th->store)));
}

/* ---- the way in ---------------------------------------------------------- */

static const char *method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_PATCH: return "PATCH";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	}
	return "?";
}

/* Exact matches first, then the longest prefix. -1: none; -2: method. */
static int route_find(const char *method, const char *path, const char **rest)
{
	int wrong_method = 0, best = -1;
	size_t best_len = 0;

	for (size_t i = 0; i < n_routes; i++) {
		const srv_route *rt = routes[i];

		if (rt->prefix || strcmp(rt->path, path) != 0)
			continue;
		if (strcmp(rt->method, method) == 0) {
			*rest = "";
			return (int)i;
		}
		wrong_method = 1;
	}
	for (size_t i = 0; i < n_routes; i++) {
		const srv_route *rt = routes[i];
		size_t len = strlen(rt->path);

		if (!rt->prefix || strncmp(rt->path, path, len) != 0 || len <= best_len)
			continue;
		if (strcmp(rt->method, method) == 0) {
			best = (int)i;
			best_len = len;
			*rest = path + len;
		} else {
			wrong_method = 1;
		}
	}
	if (best >= 0)
		return best;
	return wrong_method ? -2 : -1;
}

/* Longest query parameter key or value (names are at most 255 bytes). */
#define SRV_PARAM_MAX 1024

/* An escaped NUL ("%00") anywhere in text: it would cut a C string short. */
static int has_escaped_nul(const char *text)
{
	for (const char *p = strchr(text, '%'); p != NULL; p = strchr(p + 1, '%'))
		if (p[1] == '0' && p[2] == '0')
			return 1;
	return 0;
}

/*
 * Every parameter bounded and given once: a duplicate would be read as
 * its first occurrence by one check and could be read otherwise by a
 * proxy or a later change, so it is refused.  Keys compare as evhttp
 * finds them (case-insensitively).  0, or -1 with the 400 sent.
 */
static int check_params(srv_req *r, const char *query)
{
	const struct evkeyval *kv, *other;

	if (has_escaped_nul(query)) {
		srv_reply_error(r, 400, "bad_request", "the query string "
			"contains an encoded NUL (%%00); remove it");
		return -1;
	}
	TAILQ_FOREACH(kv, r->params, next) {
		if (strlen(kv->key) > SRV_PARAM_MAX ||
		    strlen(kv->value) > SRV_PARAM_MAX) {
			srv_reply_error(r, 400, "bad_request", "query parameter "
				"%.32s is longer than %d bytes", kv->key,
				SRV_PARAM_MAX);
			return -1;
		}
		for (other = TAILQ_NEXT(kv, next); other != NULL;
		     other = TAILQ_NEXT(other, next))
			if (evutil_ascii_strcasecmp(kv->key, other->key) == 0) {
				srv_reply_error(r, 400, "bad_request", "query "
					"parameter %.32s is given more than "
					"once; give it once", kv->key);
				return -1;
			}
	}
	return 0;
}

static void conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	srv_park_conn_closed(arg);
}

void srv_http_gencb(struct evhttp_request *ev, void *arg)
{
	srv_thread *th = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	srv_conn *conn = srv_conn_of(evcon);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	srv_req *r = calloc(1, sizeof(*r));
	int idx, bad_path;

	if (r == NULL) {
		evhttp_send_error(ev, 503, NULL);
		return;
	}
	atomic_fetch_add(&th->busy, 1);
	r->ev = ev;
	r->th = th;
	r->conn = conn;
	r->route_index = -1;
	r->start_us = srv_now_us();
	snprintf(r->method, sizeof(r->method), "%s",
		 method_name(evhttp_request_get_command(ev)));
	if (conn != NULL) {
		srv_conn_clear_read_deadline(conn);
		conn->phase = CONN_HANDLER;
		if (conn->evcon == NULL) {
			conn->evcon = evcon;
			evhttp_connection_set_closecb(evcon, conn_closed_cb, conn);
		}
	}
	r->path = evhttp_uridecode(raw_path && raw_path[0] ? raw_path : "/", 0, NULL);
	bad_path = raw_path != NULL && has_escaped_nul(raw_path);
	r->params = calloc(1, sizeof(*r->params));
	if (r->path == NULL || r->params == NULL) {
		srv_reply_error(r, 503, "unavailable", "the server is out of memory");
		return;
	}
	TAILQ_INIT(r->params);
	if (conn == NULL || conn->over_limit) {
		srv_reply_error(r, 503, "unavailable", "%s", conn != NULL ?
			conn->refusal : "the server is out of memory; retry later");
		return;
	}
	if (th->draining) {
		srv_reply_error(r, 503, "unavailable",
			"the server is shutting down; retry in a moment");
		return;
	}
	if (bad_path) {
		srv_reply_error(r, 400, "bad_request", "the path contains an "
				"encoded NUL (%%00); remove it");
		return;
	}
	if (query != NULL && evhttp_parse_query_str(query, r->params) != 0) {
		srv_reply_error(r, 400, "bad_request",
			"the query string is malformed");
		return;
	}
	if (query != NULL && check_params(r, query) != 0)
		return;
	idx = route_find(r->method, r->path, &r->rest);
	if (idx == -1) {
		srv_reply_error(r, 404, "not_found", "no such endpoint: %s %s",
				r->method, r->path);
		return;
	}
	if (idx == -2) {
		srv_reply_error(r, 405, "method_not_allowed",
			"%s does not accept %s", r->path, r->method);
		return;
	}
	r->route_index = idx;
	r->route = routes[idx];
	if (r->route->public) {
		int wait_s = srv_limits_rate_take(conn->ip);

		if (wait_s > 0) {
			char retry[16];

			atomic_fetch_add(&srv_m_limit[SRV_LIMIT_RATE], 1);
			snprintf(retry, sizeof(retry), "%d", wait_s);
			srv_log(SRV_LOG_INFO, "%s: rate limit (%g/s) hit on %s",
				conn->source, srv_cfg->rate_per_s, r->path);
			reply_error_hdr(r, 429, "rate_limited", "Retry-After", retry,
				"too many requests from your address (limit "
				"%g/s); retry in %d s", srv_cfg->rate_per_s, wait_s);
			return;
		}
	} else if (srv_auth_request(r) != 0) {
		return;
	}
	r->route->fn(r);
}
