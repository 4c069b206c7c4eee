/*
 * metrics.c - counters and GET /metrics (Prometheus text format 0.0.4).
 *
 * Counters are process-wide atomics (relaxed: a scrape may see one
 * thread's increment a moment late, never a torn value).  Requests are
 * counted per route and status class; requests that matched no route
 * are counted under route="other".
 *
 * Rollout totals (agents up to date, behind or failed on the latest
 * versions, secrets with exposed envelopes) are aggregates the store
 * computes per scrape: no per-agent or per-secret labels, so the series
 * count does not grow with the fleet (docs/OPERATIONS.md).
 */
#include <event2/buffer.h>
#include <pthread.h>
#include <stdlib.h>

#include "api.h"
#include "runtime.h"

#define CLASSES 5

atomic_long srv_m_parked, srv_m_auth_fail, srv_m_conns_accepted;
atomic_long srv_m_limit[SRV_LIMIT_N];
static atomic_long *requests;   /* (n_routes + 1) x CLASSES */
static size_t n_counted;

static const char *const limit_names[SRV_LIMIT_N] = {
	"conns_per_ip", "conns_total", "rate", "body", "header", "timeout",
};

void srv_metrics_init(size_t n_routes)
{
	n_counted = n_routes + 1;
	requests = calloc(n_counted * CLASSES, sizeof(*requests));
}

void srv_metrics_shutdown(void)
{
	free(requests);
	requests = NULL;
}

void srv_metrics_count(int route_index, int status)
{
	size_t row = route_index >= 0 && (size_t)route_index < n_counted - 1
		? (size_t)route_index : n_counted - 1;
	int cls = status / 100 - 1;

	if (requests == NULL || cls < 0 || cls >= CLASSES)
		return;
	atomic_fetch_add_explicit(&requests[row * CLASSES + (size_t)cls], 1,
				  memory_order_relaxed);
}

static void gauge(struct evbuffer *b, const char *name, const char *help,
		  const char *type, long long value)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n",
			    name, help, name, type, name, value);
}

/* The rollout totals (cf_store_rollout_stats, api_exposed_count). */
/*
 * The rollout figures cost whole-database queries, and /metrics is
 * public: they are computed at most once per --metrics-every seconds on
 * any thread, and every other scrape prints the cached values.
 */
static pthread_mutex_t rollout_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t rollout_at;          /* when last computed, 0: never */
static int rollout_ok, exposed_ok;
static cf_rollout_stats rollout_cache;
static int64_t exposed_cache;

static void rollout_gauges(struct evbuffer *b, cf_store *store)
{
	cf_rollout_stats ro = { 0 };
	cf_error err = { 0 };
	int64_t exposed = 0, now = srv_now();
	int fresh = 0, ro_ok, ex_ok;

	pthread_mutex_lock(&rollout_mu);
	if (rollout_at == 0 ||
	    now - rollout_at >= (int64_t)srv_cfg->metrics_every_s) {
		rollout_at = now;   /* claimed: concurrent scrapes use the cache */
		fresh = 1;
	}
	ro = rollout_cache;
	exposed = exposed_cache;
	ro_ok = rollout_ok;
	ex_ok = exposed_ok;
	pthread_mutex_unlock(&rollout_mu);
	if (fresh) {
		ro_ok = cf_store_rollout_stats(store, &ro, &err) == CF_OK;
		if (!ro_ok)
			srv_log(SRV_LOG_WARN, "/metrics: %s", err.msg);
		ex_ok = api_exposed_count(store, &exposed, &err) == CF_OK;
		if (!ex_ok)
			srv_log(SRV_LOG_WARN, "/metrics: %s", err.msg);
		pthread_mutex_lock(&rollout_mu);
		rollout_cache = ro;
		exposed_cache = exposed;
		rollout_ok = ro_ok;
		exposed_ok = ex_ok;
		pthread_mutex_unlock(&rollout_mu);
	}
	if (ro_ok) {
		evbuffer_add_printf(b,
			"# HELP coffer_rollout_agents Agent recipients of the "
			"secrets' latest versions, by what their acknowledgements say.\n"
			"# TYPE coffer_rollout_agents gauge\n"
			"coffer_rollout_agents{state=\"up_to_date\"} %lld\n"
			"coffer_rollout_agents{state=\"behind\"} %lld\n"
			"coffer_rollout_agents{state=\"failed\"} %lld\n",
			(long long)ro.up_to_date, (long long)ro.behind,
			(long long)ro.failed);
	}
	if (ex_ok)
		gauge(b, "coffer_secrets_exposed",
		      "Secrets with a stored envelope addressed to a revoked "
		      "certificate (rotate them).", "gauge", exposed);
}

void srv_handle_metrics(srv_req *r)
{
	struct evbuffer *b = evbuffer_new();
	cf_store_stats st = { 0 };
	cf_error err = { 0 };
	const char *text;

	if (b == NULL) {
		srv_reply_error(r, 503, "unavailable", "the server is out of memory");
		return;
	}
	evbuffer_add_printf(b,
		"# HELP coffer_requests_total Requests answered, by route and status class.\n"
		"# TYPE coffer_requests_total counter\n");
	for (size_t i = 0; requests != NULL && i < n_counted; i++) {
		const srv_route *rt = i < n_counted - 1 ? srv_route_at(i) : NULL;

		for (int c = 0; c < CLASSES; c++) {
			long v = atomic_load_explicit(&requests[i * CLASSES + (size_t)c],
						      memory_order_relaxed);

			if (v == 0 && c != 1)
				continue;
			evbuffer_add_printf(b,
				"coffer_requests_total{method=\"%s\",route=\"%s%s\",class=\"%dxx\"} %ld\n",
				rt ? rt->method : "", rt ? rt->path : "other",
				rt && rt->prefix ? "*" : "", c + 1, v);
		}
	}
	gauge(b, "coffer_connections_active", "Open client connections.", "gauge",
	      atomic_load(&srv_conns_total));
	gauge(b, "coffer_connections_accepted_total", "Connections accepted.",
	      "counter", atomic_load(&srv_m_conns_accepted));
	gauge(b, "coffer_requests_parked", "Long-poll requests waiting.", "gauge",
	      atomic_load(&srv_m_parked));
	gauge(b, "coffer_auth_failures_total",
	      "Requests refused 401 (no, unknown, expired or revoked certificate).",
	      "counter", atomic_load(&srv_m_auth_fail));
	evbuffer_add_printf(b,
		"# HELP coffer_limit_hits_total Requests or connections refused by a limit.\n"
		"# TYPE coffer_limit_hits_total counter\n");
	for (int i = 0; i < SRV_LIMIT_N; i++)
		evbuffer_add_printf(b, "coffer_limit_hits_total{limit=\"%s\"} %ld\n",
				    limit_names[i], atomic_load(&srv_m_limit[i]));
	gauge(b, "coffer_tenants", "Tenants loaded.", "gauge",
	      (long long)srv_auth_tenant_count());
	gauge(b, "coffer_uptime_seconds", "Seconds since the server started.",
	      "gauge", (long long)((srv_now_ms() - srv_start_ms) / 1000));
	if (cf_store_stats_get(r->th->store, &st, &err) == CF_OK) {
		gauge(b, "coffer_store_schema_version", "Database schema version.",
		      "gauge", cf_store_schema_version(r->th->store));
		gauge(b, "coffer_store_certs", "Certificates in the directory.",
		      "gauge", st.certs);
		gauge(b, "coffer_store_agents", "Agent certificates.", "gauge",
		      st.agents);
		gauge(b, "coffer_store_tokens", "Join tokens.", "gauge", st.tokens);
		gauge(b, "coffer_store_enrollments_pending",
		      "Enrollment requests waiting for an enroller.", "gauge",
		      st.enrollments_pending);
		gauge(b, "coffer_store_secrets", "Secret names.", "gauge", st.secrets);
		gauge(b, "coffer_store_envelopes", "Stored envelopes.", "gauge",
		      st.envelopes);
		gauge(b, "coffer_store_envelope_bytes", "Bytes of stored envelopes.",
		      "gauge", st.envelope_bytes);
		gauge(b, "coffer_store_audit_entries", "Audit log entries.", "gauge",
		      st.audit_entries);
		gauge(b, "coffer_store_feed_seq", "Highest feed sequence number.",
		      "gauge", st.feed_seq);
	} else {
		srv_log(SRV_LOG_WARN, "/metrics: %s", err.msg);
	}
	rollout_gauges(b, r->th->store);
	text = (const char *)evbuffer_pullup(b, -1);
	srv_reply_raw(r, 200, "text/plain; version=0.0.4", text ? text : "",
		      text ? evbuffer_get_length(b) : 0, NULL, NULL);
	evbuffer_free(b);
}
