/*
 * acks.c - acknowledgements of what the sinks made of each version
 * (runtime.h "acknowledgements", docs/AGENT.md "Acknowledgements").
 *
 * A pass over the sinks (ag_apply_sinks, and the commands after it)
 * notes, per secret name it used, the version and the outcome; at its
 * end each name gets one outcome (failed if any sink using it failed)
 * and, if that differs from the last one made for the name, a signed ack
 * (ack.h) is queued.  ag_acks_flush posts the queue.
 *
 * Invariants: an ack carries metadata only (name, version, time, ok or
 * failed, the reason sentence), never a value; at most one ack per name
 * waits (a newer one replaces it), at most AG_ACKS_PENDING_MAX in all;
 * nothing here blocks a sink: signing happens after the pass, posting
 * between syncs, and a post that fails loses nothing but time.
 */
#include "runtime.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ack.h"
#include "log.h"
#include "template.h"

#define POST_BATCH 200          /* acks per request (~1 MiB of base64) */
#define POST_TIMEOUT_S 30

struct outcome {               /* a name within one pass */
	char *name;
	uint64_t version;
	int failed;
	char reason[CF_ACK_REASON_MAX + 1];
};

struct last {                  /* what was last acknowledged of a name */
	char *name;
	uint64_t version;
	int failed;
	char reason[CF_ACK_REASON_MAX + 1];
};

struct pending {
	char *name;
	unsigned char *der;
	size_t len;
};

struct ag_acks {
	int in_pass;
	struct outcome *pass;
	size_t n_pass, cap_pass;
	struct last *last;
	size_t n_last, cap_last;
	struct pending *queue;     /* oldest first */
	size_t n_queue, cap_queue;
	int dropped_said;          /* the overflow was logged */
	int unsupported_said;      /* the server's 404 was logged */
};

/* Room for one more element of size elem in *arr; 0 if no memory. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	size_t want;
	void *p;

	if (n < *cap)
		return 1;
	want = *cap ? *cap * 2 : 16;
	p = OPENSSL_realloc(*arr, want * elem);
	if (p == NULL)
		return 0;
	*arr = p;
	*cap = want;
	return 1;
}

struct ag_acks *ag_acks_new(void)
{
	return OPENSSL_zalloc(sizeof(struct ag_acks));
}

static void pass_clear(struct ag_acks *a)
{
	for (size_t i = 0; i < a->n_pass; i++)
		OPENSSL_free(a->pass[i].name);
	a->n_pass = 0;
}

static void pending_clear(struct pending *p)
{
	OPENSSL_free(p->name);
	OPENSSL_free(p->der);
	memset(p, 0, sizeof(*p));
}

void ag_acks_free(struct ag_acks *a)
{
	if (a == NULL)
		return;
	pass_clear(a);
	OPENSSL_free(a->pass);
	for (size_t i = 0; i < a->n_last; i++)
		OPENSSL_free(a->last[i].name);
	OPENSSL_free(a->last);
	for (size_t i = 0; i < a->n_queue; i++)
		pending_clear(&a->queue[i]);
	OPENSSL_free(a->queue);
	OPENSSL_free(a);
}

void ag_acks_begin(ag_runtime *rt)
{
	if (rt->acks == NULL)
		return;
	pass_clear(rt->acks);
	rt->acks->in_pass = 1;
}

void ag_acks_note(ag_runtime *rt, const char *name, uint64_t version,
		  const char *reason)
{
	struct ag_acks *a = rt->acks;
	struct outcome *o = NULL;

	if (a == NULL || !a->in_pass)
		return;
	if (version == 0)
		version = ag_state_version(rt->st, name);
	if (version == 0)
		return;   /* nothing of it received: nothing to acknowledge */
	for (size_t i = 0; i < a->n_pass && o == NULL; i++)
		if (strcmp(a->pass[i].name, name) == 0)
			o = &a->pass[i];
	if (o == NULL) {
		if (!grow((void **)&a->pass, &a->cap_pass, a->n_pass,
			  sizeof(*a->pass)))
			return;
		o = &a->pass[a->n_pass];
		memset(o, 0, sizeof(*o));
		if ((o->name = OPENSSL_strdup(name)) == NULL)
			return;
		a->n_pass++;
	}
	/* The sinks of one pass hold one version; should two differ (a
	 * cached record refused since), the lower is what all of them hold. */
	if (o->version == 0 || version < o->version)
		o->version = version;
	if (reason != NULL && !o->failed) {
		cf_ack tmp;

		o->failed = 1;
		cf_ack_set_reason(&tmp, reason);
		memcpy(o->reason, tmp.reason, sizeof(o->reason));
	}
}

void ag_acks_note_sink(ag_runtime *rt, const ag_sink *sink,
		       const char *reason)
{
	ag_template *t = NULL;

	if (rt->acks == NULL)
		return;
	if (sink->kind == AG_SINK_FILE) {
		ag_acks_note(rt, sink->secret, 0, reason);
		return;
	}
	if (ag_template_load(sink->source, &t, NULL) != CF_OK)
		return;
	for (size_t i = 0; i < ag_template_n_names(t); i++)
		ag_acks_note(rt, ag_template_name(t, i), 0, reason);
	ag_template_free(t);
}

static struct last *last_of(struct ag_acks *a, const char *name)
{
	for (size_t i = 0; i < a->n_last; i++)
		if (strcmp(a->last[i].name, name) == 0)
			return &a->last[i];
	if (!grow((void **)&a->last, &a->cap_last, a->n_last,
		  sizeof(*a->last)))
		return NULL;
	memset(&a->last[a->n_last], 0, sizeof(a->last[0]));
	if ((a->last[a->n_last].name = OPENSSL_strdup(name)) == NULL)
		return NULL;
	return &a->last[a->n_last++];
}

/* Queues der for name (taken over), replacing a waiting ack of name. */
static void enqueue(struct ag_acks *a, const char *name, unsigned char *der,
		    size_t len)
{
	for (size_t i = 0; i < a->n_queue; i++)
		if (strcmp(a->queue[i].name, name) == 0) {
			OPENSSL_free(a->queue[i].der);
			a->queue[i].der = der;
			a->queue[i].len = len;
			return;
		}
	if (a->n_queue == AG_ACKS_PENDING_MAX) {
		if (!a->dropped_said)
			ag_log(AG_LOG_WARN, "more than %d acknowledgements wait "
			       "for the server; dropping the oldest",
			       AG_ACKS_PENDING_MAX);
		a->dropped_said = 1;
		pending_clear(&a->queue[0]);
		memmove(a->queue, a->queue + 1,
			(a->n_queue - 1) * sizeof(*a->queue));
		a->n_queue--;
	}
	if (!grow((void **)&a->queue, &a->cap_queue, a->n_queue,
		  sizeof(*a->queue)) ||
	    (a->queue[a->n_queue].name = OPENSSL_strdup(name)) == NULL) {
		OPENSSL_free(der);
		return;
	}
	a->queue[a->n_queue].der = der;
	a->queue[a->n_queue].len = len;
	a->n_queue++;
}

void ag_acks_end(ag_runtime *rt)
{
	struct ag_acks *a = rt->acks;
	cf_ack ack;

	if (a == NULL || !a->in_pass)
		return;
	a->in_pass = 0;
	memset(&ack, 0, sizeof(ack));
	snprintf(ack.tenant, sizeof(ack.tenant), "%s",
		 cf_trust_tenant(rt->trust));
	cf_cert_cn(rt->cert, ack.agent, sizeof(ack.agent));
	for (size_t i = 0; i < a->n_pass; i++) {
		const struct outcome *o = &a->pass[i];
		struct last *l = last_of(a, o->name);
		unsigned char *der = NULL;
		size_t len = 0;
		cf_error err = { 0 };

		if (l == NULL)
			continue;
		if (l->version == o->version && l->failed == o->failed &&
		    strcmp(l->reason, o->failed ? o->reason : "") == 0)
			continue;   /* nothing new to say */
		snprintf(ack.name, sizeof(ack.name), "%s", o->name);
		ack.version = (int64_t)o->version;
		ack.time = (int64_t)time(NULL);
		ack.result = o->failed ? CF_ACK_FAILED : CF_ACK_OK;
		memcpy(ack.reason, o->failed ? o->reason : "",
		       o->failed ? sizeof(ack.reason) : 1);
		if (cf_ack_sign(&ack, rt->cert, rt->key, rt->chain, &der, &len,
				&err) != CF_OK) {
			ag_log(AG_LOG_WARN, "could not sign the acknowledgement of "
			       "%s v%llu: %s", o->name,
			       (unsigned long long)o->version, err.msg);
			continue;
		}
		l->version = o->version;
		l->failed = o->failed;
		memcpy(l->reason, ack.reason, sizeof(l->reason));
		ag_log(AG_LOG_DEBUG, "acknowledging %s v%llu: %s", o->name,
		       (unsigned long long)o->version,
		       cf_ack_result_name(ack.result));
		enqueue(a, o->name, der, len);
	}
	pass_clear(a);
}

size_t ag_acks_pending(const ag_runtime *rt)
{
	return rt->acks != NULL ? rt->acks->n_queue : 0;
}

/* Drops the first n of the queue. */
static void dequeue(struct ag_acks *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pending_clear(&a->queue[i]);
	memmove(a->queue, a->queue + n, (a->n_queue - n) * sizeof(*a->queue));
	a->n_queue -= n;
}

cf_status ag_acks_flush(ag_runtime *rt, cf_error *err)
{
	struct ag_acks *a = rt->acks;

	if (a == NULL || rt->client == NULL)
		return CF_OK;
	while (a->n_queue > 0) {
		size_t n = a->n_queue < POST_BATCH ? a->n_queue : POST_BATCH;
		json_t *list = json_array(), *body, *resp = NULL;
		cf_status rc;

		for (size_t i = 0; list != NULL && i < n; i++)
			if (json_array_append_new(list, cli_b64_json(
				a->queue[i].der, a->queue[i].len)) != 0) {
				json_decref(list);
				list = NULL;
			}
		body = list ? json_pack("{s:o}", "acks", list) : NULL;
		if (body == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		cli_client_set_timeout(rt->client, POST_TIMEOUT_S);
		rc = cli_client_call(rt->client, "POST", "/v1/agent/acks", body,
				     &resp, err);
		json_decref(body);
		if (rc == CF_OK) {
			ag_log(AG_LOG_DEBUG, "posted %zu acknowledgement(s), %lld "
			       "stored", n, cli_json_int(resp, "stored"));
			json_decref(resp);
			dequeue(a, n);
			continue;
		}
		json_decref(resp);
		/* Refused for the cluster proof the request carried: post
		 * them again without it (they are this agent's own). */
		if (rc == CF_ERR_DENIED && rt->member != NULL) {
			ag_runtime_leave_cluster(rt, "acknowledgements",
						 err->msg);
			cf_error_clear(err);
			continue;
		}
		if (rc == CF_ERR_NETWORK || rc == CF_ERR_SERVER ||
		    rc == CF_ERR_LIMIT || rc == CF_ERR_TIMEOUT ||
		    rc == CF_ERR_NOMEM) {
			ag_log(AG_LOG_WARN, "could not post %zu acknowledgement(s)"
			       " (%s); trying again at the next sync",
			       a->n_queue, err->msg);
			return rc;
		}
		if (rc == CF_ERR_NOT_FOUND) {
			if (!a->unsupported_said)
				ag_log(AG_LOG_WARN, "the server takes no "
				       "acknowledgements (POST /v1/agent/acks: "
				       "%s); rollout status will not show this "
				       "agent", err->msg);
			a->unsupported_said = 1;
		} else {
			ag_log(AG_LOG_ERROR, "the server refused %zu "
			       "acknowledgement(s): %s; they are dropped", n,
			       err->msg);
		}
		dequeue(a, n);
		return rc;
	}
	return CF_OK;
}
