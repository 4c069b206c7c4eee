/*
 * batch.c - group commit of the audit entries that go with answers
 * (envelope reads): one store transaction per event-loop iteration
 * instead of one per request.
 *
 * A handler calls srv_reply_json_audited(r, status, body, entry): the body
 * is serialised at once, the (request, answer, entry) triple joins its
 * thread's batch, and the thread's flush event is made active.  libevent
 * appends it behind the callbacks already ready in this iteration, so the
 * requests read together are logged together: the flush appends every
 * entry of the batch in ONE transaction (cf_store_audit_append_many) and
 * only then hands the answers to evhttp.
 *
 * Invariants:
 * - No answer of the batch leaves before its entry is committed: a
 *   failed commit answers 500 to every request of the batch (and logs),
 *   nothing else.
 * - A batch never grows past BATCH_MAX: the request that fills it flushes
 *   it at once, so latency and the transaction stay bounded.
 * - A connection that goes away while its request waits
 *   (srv_batch_conn_closed, from its close callback via park.c) frees the
 *   request as park.c does; its entry is still committed (the read was
 *   prepared; logging one more read than was delivered is safe).
 * - Everything is per thread: a batch, its requests and its flush event
 *   live on the thread of their connections.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/http.h>

#include "runtime.h"

#define BATCH_MAX 256

struct srv_batch_item {
	srv_req *r;                 /* NULL once its connection went away */
	int status;
	char *body;
	size_t len;
};

static const char oom_body[] = "{\"error\":{\"code\":\"internal\","
	"\"message\":\"the server ran out of memory building the answer; "
	"try again later\"}}";

/*
 * Flush after the callbacks already ready in this loop iteration:
 * libevent appends an event made active to the end of its queue.
 */
static void arm(srv_thread *th)
{
	event_active(th->batch_ev, EV_READ, 0);
}

/* Sends or drops every answer of the batch and empties it. */
static void batch_flush(srv_thread *th)
{
	size_t n = th->n_batch;
	cf_error err;
	int ok;

	if (n == 0 || th->batch_flushing)
		return;
	th->batch_flushing = 1;
	memset(&err, 0, sizeof(err));
	ok = cf_store_audit_append_many(th->store, th->batch_entries, n,
					&err) == CF_OK;
	if (!ok)
		srv_log(SRV_LOG_ERROR, "logging %zu envelope read(s) failed, "
			"their answers are withheld (500): %s", n, err.msg);
	/* The items stay in the batch while answers go out: a connection
	 * freed meanwhile finds its request there (srv_batch_conn_closed). */
	for (size_t i = 0; i < n; i++) {
		struct srv_batch_item *it = &th->batch[i];
		srv_req *r = it->r;

		/* Out of the batch before evhttp sees it: the reply owns it. */
		it->r = NULL;
		if (r != NULL) {
			if (ok)
				srv_reply_raw(r, it->status,
					      "application/json", it->body,
					      it->len, NULL, NULL);
			else
				srv_reply_error(r, 500, "internal",
					"the server could not log this read "
					"in the audit log; nothing was sent; "
					"try again");
		}
		free(it->body);
		memset(it, 0, sizeof(*it));
	}
	/* Anything queued while answering (a reply runs no handler today)
	 * moves to the front and waits for the next flush. */
	memmove(th->batch, th->batch + n, (th->n_batch - n) * sizeof(*th->batch));
	memmove(th->batch_entries, th->batch_entries + n,
		(th->n_batch - n) * sizeof(*th->batch_entries));
	th->n_batch -= n;
	th->batch_flushing = 0;
	if (th->n_batch > 0)
		arm(th);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	batch_flush(arg);
}

static int batch_grow(srv_thread *th)
{
	size_t cap;
	struct srv_batch_item *items;
	cf_audit_entry *entries;

	if (th->n_batch < th->cap_batch)
		return 0;
	if (th->n_batch >= BATCH_MAX)
		return -1;
	cap = th->cap_batch ? th->cap_batch * 2 : 16;
	if (cap > BATCH_MAX)
		cap = BATCH_MAX;
	items = realloc(th->batch, cap * sizeof(*items));
	if (items == NULL)
		return -1;
	th->batch = items;
	entries = realloc(th->batch_entries, cap * sizeof(*entries));
	if (entries == NULL)
		return -1;
	th->batch_entries = entries;
	th->cap_batch = cap;
	return 0;
}

void srv_reply_json_audited(srv_req *r, int status, json_t *body,
			    const cf_audit_entry *entry)
{
	srv_thread *th = r->th;
	struct srv_batch_item *it;
	char *text = NULL;
	size_t len = 0;

	if (body != NULL) {
		/* Dumped once into a buffer on the stack (no growing string
		 * buffer); a second pass only for answers larger than it. */
		char small[8192];

		len = json_dumpb(body, small, sizeof(small), JSON_COMPACT);
		text = len > 0 ? malloc(len) : NULL;
		if (text != NULL && len <= sizeof(small))
			memcpy(text, small, len);
		else if (text != NULL &&
			 json_dumpb(body, text, len, JSON_COMPACT) != len) {
			free(text);
			text = NULL;
		}
	}
	json_decref(body);
	if (text == NULL) {
		srv_log(SRV_LOG_ERROR, "%s: out of memory building an answer",
			srv_req_source(r));
		srv_reply_raw(r, 500, "application/json", oom_body,
			      sizeof(oom_body) - 1, NULL, NULL);
		return;
	}
	if (th->batch_ev == NULL || batch_grow(th) != 0) {
		/* No batch: log this one alone, then answer. */
		cf_error err;

		memset(&err, 0, sizeof(err));
		if (cf_store_audit_append(th->store, entry, &err) != CF_OK) {
			srv_log(SRV_LOG_ERROR, "%s: logging an envelope read "
				"failed, answer withheld: %s",
				srv_req_source(r), err.msg);
			srv_reply_error(r, 500, "internal", "the server could "
				"not log this read in the audit log; nothing "
				"was sent; try again");
		} else {
			srv_reply_raw(r, status, "application/json", text, len,
				      NULL, NULL);
		}
		free(text);
		return;
	}
	it = &th->batch[th->n_batch];
	it->r = r;
	it->status = status;
	it->body = text;
	it->len = len;
	th->batch_entries[th->n_batch] = *entry;
	th->n_batch++;
	if (th->n_batch >= BATCH_MAX && !th->batch_flushing)
		batch_flush(th);
	else
		arm(th);
}

void srv_batch_conn_closed(srv_conn *conn)
{
	srv_thread *th = conn->th;

	if (th == NULL)
		return;
	for (size_t i = 0; i < th->n_batch; i++) {
		srv_req *r = th->batch[i].r;

		if (r == NULL || r->conn != conn)
			continue;
		/* As park.c: a detached request is ours to free; one still
		 * queued on the connection is freed by evhttp after this. */
		if (r->ev != NULL && evhttp_request_get_connection(r->ev) == NULL)
			evhttp_request_free(r->ev);
		r->ev = NULL;
		r->conn = NULL;
		srv_req_free(r);
		th->batch[i].r = NULL;
	}
}

cf_status srv_batch_thread_init(srv_thread *th, cf_error *err)
{
	/*
	 * One priority, on purpose: a lowest-priority flush (waiting until
	 * no connection has anything ready) measured no larger batches here
	 * (11-12 entries per commit under the keep-alive bench either way)
	 * and would need a timer against starvation under a handshake flood.
	 */
	th->batch_ev = event_new(th->base, -1, 0, flush_cb, th);
	if (th->batch_ev == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	return CF_OK;
}

void srv_batch_thread_clear(srv_thread *th)
{
	/* Connections are gone by now (evhttp_free), so are their requests. */
	for (size_t i = 0; i < th->n_batch; i++)
		free(th->batch[i].body);
	if (th->batch_ev != NULL)
		event_free(th->batch_ev);
	th->batch_ev = NULL;
	free(th->batch);
	free(th->batch_entries);
	th->batch = NULL;
	th->batch_entries = NULL;
	th->n_batch = th->cap_batch = 0;
}
