/*
 * srv.h - how a program starts the server: its settings and srv_run().
 *
 * The CLI (`coffer server run`, src/cli/server.c) fills a srv_config from
 * defaults, an optional JSON config file and its options, in that order,
 * and calls srv_run, which returns when a SIGTERM or SIGINT has drained
 * the server.  Everything else about the runtime is in runtime.h.
 */
#ifndef CF_SRV_H
#define CF_SRV_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SRV_LISTEN_MAX 16
#define SRV_THREADS_MAX 256

enum srv_log_level { SRV_LOG_DEBUG, SRV_LOG_INFO, SRV_LOG_WARN, SRV_LOG_ERROR };

/* All strings are owned (malloc'ed) and released by srv_config_clear. */
typedef struct srv_config {
	char *dir;                     /* holds server.crt, server.key, coffer.db */
	char *db;                      /* --db URL (sqlite:PATH, postgresql://...);
	                                * NULL: DIR/coffer.db.  Never logged. */
	char *listen[SRV_LISTEN_MAX];  /* "127.0.0.1:8443", "[::1]:8443" */
	size_t n_listen;
	unsigned threads;              /* 0: one per CPU */
	int tls12;                     /* also accept TLS 1.2 */
	size_t max_body_bytes;         /* default 2 MiB */
	size_t max_header_bytes;       /* default 16 KiB */
	unsigned max_conns_per_ip;     /* default 256 */
	unsigned max_conns;            /* default 20,000 (capped by fds) */
	double rate_per_s;             /* unauthenticated requests/s per IP, 20 */
	unsigned rate_burst;           /* default 2 x rate */
	int burst_set;                 /* burst was given: rate leaves it */
	unsigned idle_timeout_s;       /* keep-alive connection idle, 120 */
	unsigned request_timeout_s;    /* handshake / reading a request, 10 */
	unsigned metrics_every_s;      /* rollout figures of /metrics, 60 */
	int sync_full;                 /* CF_STORE_SYNC_FULL */
	int log_level;                 /* enum srv_log_level */
	char *port_file;               /* write the bound port here */
} srv_config;

void srv_config_defaults(srv_config *c);
void srv_config_clear(srv_config *c);

/* Sets one setting by its long option name ("max-body", "listen", ...). */
cf_status srv_config_set(srv_config *c, const char *key, const char *value,
			 cf_error *err);

/*
 * Reads a JSON object whose keys are the long option names (numbers as
 * JSON numbers or strings, flags as booleans, "listen" a string or an
 * array); unknown keys are refused (CF_ERR_PARSE naming the key).
 */
cf_status srv_config_load(srv_config *c, const char *path, cf_error *err);

/*
 * Runs the server in the foreground until SIGTERM/SIGINT.  CF_OK after a
 * clean drain; otherwise what stopped it from starting.
 */
cf_status srv_run(const srv_config *c, cf_error *err);

#endif
