/*
 * limits.c - per source address: open connections and the request rate
 * of unauthenticated requests (a token bucket).
 *
 * One table for the whole process (a client's connections land on any
 * thread), a hash of addresses under one mutex; the critical sections are
 * a few comparisons.  An entry lives while the address has a connection
 * or an unfull bucket, so the table's size is bounded by the connections
 * (themselves bounded by max_conns) plus the addresses seen in the last
 * burst / rate seconds.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define IP_BUCKETS 4096

typedef struct ip_entry {
	struct ip_entry *next;
	char ip[48];
	unsigned conns;
	double tokens;
	int64_t last_us;
} ip_entry;

static pthread_mutex_t ip_mu = PTHREAD_MUTEX_INITIALIZER;
static ip_entry *ip_table[IP_BUCKETS];
atomic_long srv_conns_total;

static unsigned ip_hash(const char *ip)
{
	unsigned h = 2166136261u;

	for (; *ip; ip++)
		h = (h ^ (unsigned char)*ip) * 16777619u;
	return h % IP_BUCKETS;
}

/* Under ip_mu: the entry of ip, made if create; NULL if none or no memory. */
static ip_entry *ip_find(const char *ip, int create, ip_entry ***slot_out)
{
	ip_entry **slot = &ip_table[ip_hash(ip)];
	ip_entry *e;

	for (; *slot != NULL; slot = &(*slot)->next)
		if (strcmp((*slot)->ip, ip) == 0) {
			*slot_out = slot;
			return *slot;
		}
	if (!create)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	snprintf(e->ip, sizeof(e->ip), "%s", ip);
	e->tokens = srv_cfg->rate_burst;
	e->last_us = srv_now_us();
	*slot = e;
	*slot_out = slot;
	return e;
}

static void refill(ip_entry *e, int64_t now_us)
{
	double burst = srv_cfg->rate_burst;

	e->tokens += (double)(now_us - e->last_us) / 1e6 * srv_cfg->rate_per_s;
	if (e->tokens > burst)
		e->tokens = burst;
	e->last_us = now_us;
}

static void maybe_drop(ip_entry **slot)
{
	ip_entry *e = *slot;

	refill(e, srv_now_us());
	if (e->conns == 0 && e->tokens >= srv_cfg->rate_burst) {
		*slot = e->next;
		free(e);
	}
}

void srv_limits_init(void)
{
	atomic_store(&srv_conns_total, 0);
}

void srv_limits_shutdown(void)
{
	pthread_mutex_lock(&ip_mu);
	for (size_t i = 0; i < IP_BUCKETS; i++) {
		while (ip_table[i] != NULL) {
			ip_entry *e = ip_table[i];

			ip_table[i] = e->next;
			free(e);
		}
	}
	pthread_mutex_unlock(&ip_mu);
}

unsigned long srv_limits_conn_add(const char *ip)
{
	ip_entry **slot = NULL;
	ip_entry *e;
	unsigned long n = 0;

	pthread_mutex_lock(&ip_mu);
	e = ip_find(ip, 1, &slot);
	/* No memory for the entry: count nothing, refuse nothing. */
	if (e != NULL) {
		e->conns++;
		n = e->conns;
	}
	pthread_mutex_unlock(&ip_mu);
	return n;
}

void srv_limits_conn_remove(const char *ip)
{
	ip_entry **slot = NULL;
	ip_entry *e;

	pthread_mutex_lock(&ip_mu);
	e = ip_find(ip, 0, &slot);
	if (e != NULL) {
		if (e->conns > 0)
			e->conns--;
		maybe_drop(slot);
	}
	pthread_mutex_unlock(&ip_mu);
}

int srv_limits_rate_take(const char *ip)
{
	ip_entry **slot = NULL;
	ip_entry *e;
	int wait_s = 0;

	pthread_mutex_lock(&ip_mu);
	e = ip_find(ip, 1, &slot);
	if (e != NULL) {
		refill(e, srv_now_us());
		if (e->tokens >= 1.0) {
			e->tokens -= 1.0;
		} else {
			double need = (1.0 - e->tokens) / srv_cfg->rate_per_s;

			wait_s = (int)need + 1;
		}
	}
	pthread_mutex_unlock(&ip_mu);
	return wait_s;
}

void srv_limits_sweep(void)
{
	pthread_mutex_lock(&ip_mu);
	for (size_t i = 0; i < IP_BUCKETS; i++) {
		ip_entry **slot = &ip_table[i];

		while (*slot != NULL) {
			ip_entry *e = *slot;

			maybe_drop(slot);
			if (*slot == e)
				slot = &e->next;
		}
	}
	pthread_mutex_unlock(&ip_mu);
}
