/*
 * store_pg.h - what the PostgreSQL backend (store_pg.c) offers besides
 * store.h: a check for the CLI and a query plan for the tests.
 * cf_store_pg_open itself is declared in store_backend.h with the other
 * backends; callers use cf_store_open.
 */
#ifndef CF_STORE_PG_H
#define CF_STORE_PG_H

#include <stddef.h>

#include "store.h"

/*
 * 1 if url is a PostgreSQL URL that holds a password (user:PASSWORD@ or
 * ?password=...), which a command line must not carry (ps shows it to
 * every user); 0 otherwise, a malformed URL included.
 */
int cf_store_url_has_password(const char *url);

/*
 * EXPLAIN of the feed query for tenant/recipient (cursor 0, the default
 * limit, no byte budget), one plan line per line, into buf.  CF_ERR_USAGE
 * if st is not a PostgreSQL store, CF_ERR_TOO_LARGE if the plan does not
 * fit cap.
 */
cf_status cf_store_pg_explain_feed(cf_store *st, const char *tenant,
				   const char *recipient, char *buf,
				   size_t cap, cf_error *err);

#endif
