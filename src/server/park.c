/*
 * park.c - long-polls: parked requests, their timers, and wake-ups that
 * may come from any thread.
 *
 * Each thread keeps its parked requests in a hash of doubly linked lists
 * keyed by "tenant/recipient" (a request waiting on two feeds, a member's
 * own and its cluster's, is in the lists of both keys through two links),
 * each with a timer and, where the event backend can (epoll: EV_CLOSED),
 * a watch on the socket for the client hanging up.  srv_wake appends the
 * keys to every thread's queue under that thread's mutex and activates its
 * wake event; the thread then retries the parked requests of those keys.
 * A request is in the table exactly while is_parked is set; every path
 * out (wake, timeout, reply, connection gone) goes through srv_unpark
 * first, which takes out both its links.
 *
 * Across nodes (several servers on one PostgreSQL): srv_wake also tells
 * the database (cf_store_notify_feeds, one round trip on this thread's
 * connection, after the commit), and every other node's main thread,
 * listening, calls srv_wake_local with the same keys.  A wake-up lost on
 * the way (the database restarting) is made up for by srv_wake_all once
 * the listener is back; a spurious one costs a feed read.
 *
 * While a request is parked evhttp reads nothing from its connection (it
 * disables reading once a request is complete), so neither its read
 * timeout nor pipelined bytes can touch the parked request.  The one way
 * a parked request dies under us is its connection being freed: evhttp
 * then calls srv_park_conn_closed (the connection's close callback),
 * before it frees anything.
 */
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

extern srv_thread *srv_threads;
extern size_t srv_n_threads;

static unsigned key_bucket(const char *key)
{
	unsigned h = 2166136261u;

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h % SRV_PARK_BUCKETS;
}

static void link_add(srv_thread *th, srv_park_link *l, srv_req *r,
		     const char *tenant, const char *recipient)
{
	snprintf(l->key, sizeof(l->key), "%s/%s", tenant, recipient);
	l->req = r;
	l->bucket = key_bucket(l->key);
	l->prev = NULL;
	l->next = th->parked[l->bucket];
	if (l->next != NULL)
		l->next->prev = l;
	th->parked[l->bucket] = l;
	l->linked = 1;
}

static void link_remove(srv_thread *th, srv_park_link *l)
{
	if (!l->linked)
		return;
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		th->parked[l->bucket] = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	l->prev = l->next = NULL;
	l->linked = 0;
}

void srv_unpark(srv_req *r)
{
	srv_thread *th = r->th;

	if (!r->is_parked)
		return;
	link_remove(th, &r->park_links[0]);
	link_remove(th, &r->park_links[1]);
	r->is_parked = 0;
	if (r->park_timer != NULL)
		event_del(r->park_timer);
	if (r->park_closed != NULL)
		event_del(r->park_closed);
	if (r->conn != NULL && r->conn->parked == r)
		r->conn->parked = NULL;
	atomic_fetch_sub(&srv_m_parked, 1);
}

/*
 * Retries a request that was parked.  Up to a minute may have passed: the
 * caller's certificate may have expired or its tenant's CRL changed
 * meanwhile, so it is authenticated again first (cheap when nothing
 * changed), and a 401 is the answer if it no longer passes.
 */
static void retry_checked(srv_req *r)
{
	if (r->route != NULL && !r->route->public && srv_auth_request(r) != 0)
		return;
	r->retry(r);
}

static void park_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_req *r = arg;

	srv_unpark(r);
	retry_checked(r);
}

/* The client hung up while its request was parked: drop the connection. */
static void park_closed_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_req *r = arg;
	struct evhttp_connection *evcon = r->conn ? r->conn->evcon : NULL;

	srv_log(SRV_LOG_DEBUG, "%s: client left while its request was parked",
		srv_req_source(r));
	if (evcon != NULL)
		evhttp_connection_free(evcon);  /* calls srv_park_conn_closed */
}

void srv_req_park(srv_req *r, const char *tenant, const char *recipient,
		  int timeout_ms, void (*retry)(srv_req *r))
{
	srv_req_park_either(r, tenant, recipient, NULL, timeout_ms, retry);
}

void srv_req_park_either(srv_req *r, const char *tenant, const char *recipient,
			 const char *also, int timeout_ms,
			 void (*retry)(srv_req *r))
{
	srv_thread *th = r->th;
	srv_conn *conn = r->conn;
	struct timeval tv;

	if (th->draining || conn == NULL || conn->evcon == NULL) {
		srv_reply_error(r, 503, "unavailable",
			"the server is shutting down; retry in a moment");
		return;
	}
	if (timeout_ms < 0)
		timeout_ms = 0;
	if (r->park_timer == NULL)
		r->park_timer = evtimer_new(th->base, park_timeout_cb, r);
	if (r->park_closed == NULL &&
	    (event_base_get_features(th->base) & EV_FEATURE_EARLY_CLOSE))
		r->park_closed = event_new(th->base, bufferevent_getfd(conn->bev),
					   EV_CLOSED, park_closed_cb, r);
	if (r->park_timer == NULL) {
		srv_reply_error(r, 503, "unavailable", "the server is out of memory");
		return;
	}
	r->retry = retry;
	if (r->park_first_ms == 0)
		r->park_first_ms = srv_now_ms() | 1;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(r->park_timer, &tv);
	if (r->park_closed != NULL)
		event_add(r->park_closed, NULL);
	link_add(th, &r->park_links[0], r, tenant, recipient);
	/* The same key twice would put the request twice in one list. */
	if (also != NULL && strcmp(also, recipient) != 0)
		link_add(th, &r->park_links[1], r, tenant, also);
	r->is_parked = 1;
	conn->parked = r;
	atomic_fetch_add(&srv_m_parked, 1);
}

int64_t srv_req_parked_ms(const srv_req *r)
{
	/* Draining: every wait is over, so handlers answer what they have. */
	if (r->th->draining)
		return (int64_t)1000 * 1000 * 1000;
	if (r->park_first_ms == 0)
		return 0;
	return srv_now_ms() - r->park_first_ms;
}

void srv_park_conn_closed(srv_conn *conn)
{
	srv_req *r = conn->parked;

	srv_batch_conn_closed(conn);
	srv_conn_clear_read_deadline(conn);
	conn->evcon = NULL;
	if (r == NULL)
		return;
	srv_unpark(r);
	/*
	 * A request evhttp detached from its failed connection is ours to
	 * free; one still queued on it is freed by evhttp right after this.
	 */
	if (evhttp_request_get_connection(r->ev) == NULL)
		evhttp_request_free(r->ev);
	r->ev = NULL;
	srv_req_free(r);
}

/*
 * Retries every parked request that matches one of keys (all if NULL).
 * A request may have two links: looking up keys, a link matches only its
 * own key, and the request is unparked (both links out) before the next
 * key is looked up, so it is retried once; sweeping every bucket, only
 * first links count, since every parked request has exactly one.
 */
static void retry_matching(srv_thread *th, char (*keys)[SRV_KEY_MAX], size_t n)
{
	srv_req **hits = NULL;
	size_t n_hits = 0, cap = 0;

	for (size_t k = 0; k < (keys ? n : SRV_PARK_BUCKETS); k++) {
		unsigned b = keys ? key_bucket(keys[k]) : (unsigned)k;
		size_t start = n_hits;

		for (srv_park_link *l = th->parked[b]; l != NULL; l = l->next) {
			if (keys != NULL ? strcmp(l->key, keys[k]) != 0 :
			    l != &l->req->park_links[0])
				continue;
			if (n_hits == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				srv_req **grown = realloc(hits, ncap * sizeof(*hits));

				if (grown == NULL)
					break;
				hits = grown;
				cap = ncap;
			}
			hits[n_hits++] = l->req;
		}
		/* Unpark now so a key queued twice does not retry twice. */
		for (size_t i = start; i < n_hits; i++)
			srv_unpark(hits[i]);
	}
	for (size_t i = 0; i < n_hits; i++)
		retry_checked(hits[i]);
	free(hits);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_thread *th = arg;
	char (*keys)[SRV_KEY_MAX];
	size_t n;
	int all;

	pthread_mutex_lock(&th->wake_mu);
	keys = th->wake_keys;
	n = th->n_wake;
	all = th->wake_all;
	th->wake_keys = NULL;
	th->n_wake = th->cap_wake = 0;
	th->wake_all = 0;
	pthread_mutex_unlock(&th->wake_mu);
	if (all)
		retry_matching(th, NULL, 0);
	else if (keys != NULL)
		retry_matching(th, keys, n);
	free(keys);
}

void srv_wake_all(void)
{
	for (size_t t = 0; t < srv_n_threads; t++) {
		srv_thread *th = &srv_threads[t];

		pthread_mutex_lock(&th->wake_mu);
		th->wake_all = 1;
		pthread_mutex_unlock(&th->wake_mu);
		if (th->wake_ev != NULL)
			event_active(th->wake_ev, EV_READ, 0);
	}
}

void srv_wake(const char *tenant, const char (*recipients)[65], size_t n)
{
	srv_thread *self = srv_cur_thread;
	cf_error err;

	srv_wake_local(tenant, recipients, n);
	if (self == NULL || self->store == NULL || n == 0)
		return;
	if (cf_store_notify_feeds(self->store, srv_node_id, tenant, recipients,
				  n, &err) != CF_OK)
		srv_log(SRV_LOG_WARN, "cannot wake the other nodes' long-polls "
			"(%s); theirs learn of the change at their timeout",
			err.msg);
}

void srv_wake_local(const char *tenant, const char (*recipients)[65],
		    size_t n)
{
	for (size_t t = 0; t < srv_n_threads; t++) {
		srv_thread *th = &srv_threads[t];
		int queued = 0;

		pthread_mutex_lock(&th->wake_mu);
		if (th->n_wake + n > th->cap_wake) {
			size_t ncap = (th->n_wake + n) * 2;
			char (*grown)[SRV_KEY_MAX] =
				realloc(th->wake_keys, ncap * sizeof(*grown));

			if (grown != NULL) {
				th->wake_keys = grown;
				th->cap_wake = ncap;
			}
		}
		for (size_t i = 0; i < n && th->n_wake < th->cap_wake; i++) {
			snprintf(th->wake_keys[th->n_wake++], SRV_KEY_MAX, "%s/%s",
				 tenant, recipients[i]);
			queued = 1;
		}
		pthread_mutex_unlock(&th->wake_mu);
		if (queued && th->wake_ev != NULL)
			event_active(th->wake_ev, EV_READ, 0);
	}
}

void srv_park_drain(srv_thread *th)
{
	retry_matching(th, NULL, 0);
}

cf_status srv_park_thread_init(srv_thread *th, cf_error *err)
{
	pthread_mutex_init(&th->wake_mu, NULL);
	th->wake_ev = event_new(th->base, -1, 0, wake_cb, th);
	if (th->wake_ev == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	return srv_batch_thread_init(th, err);
}

void srv_park_thread_clear(srv_thread *th)
{
	srv_batch_thread_clear(th);
	if (th->wake_ev != NULL)
		event_free(th->wake_ev);
	th->wake_ev = NULL;
	free(th->wake_keys);
	th->wake_keys = NULL;
	pthread_mutex_destroy(&th->wake_mu);
}
