/*
 * api_audit.c - reading the tenant's audit log (docs/API.md, "Audit").
 *
 *   GET /v1/audit?after=SEQ&since=UNIX&until=UNIX&actor=FP&action=A&limit=N
 *
 * Needs an audit.read rule (of any scope: the log is the tenant's whole
 * log, not scoped by name) or admin:**.  Entries come in seq order with
 * their chain hashes, so the reader can check the chain itself (coffer
 * audit verify); reading the log is not itself logged.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "srv.h"

static void audit_list(srv_req *r)
{
	const srv_identity *id = srv_req_identity(r);
	cf_audit_filter filter = {0};
	cf_audit_entry *entries = NULL;
	int64_t limit;
	size_t n = 0, shown;
	json_t *list;
	cf_error err;

	if (!api_holds(id, "audit.read")) {
		srv_reply_error(r, 403, "forbidden",
			"%s \"%s\" holds no audit.read rule; reading the audit "
			"log needs one", cf_kind_name(id->kind), id->name);
		return;
	}
	if (api_param_int(r, "after", 0, INT64_MAX, 0, &filter.after_seq) != 0 ||
	    api_param_int(r, "since", 0, INT64_MAX, 0, &filter.since) != 0 ||
	    api_param_int(r, "until", 0, INT64_MAX, 0, &filter.until) != 0 ||
	    api_param_hex(r, "actor", 64, &filter.actor) != 0 ||
	    api_param_int(r, "limit", 1, API_LIST_MAX, API_LIST_MAX, &limit) != 0)
		return;
	filter.action = srv_req_param(r, "action");
	if (filter.action != NULL &&
	    (strlen(filter.action) == 0 ||
	     strlen(filter.action) >= CF_AUDIT_ACTION_MAX ||
	     strspn(filter.action, "abcdefghijklmnopqrstuvwxyz._") !=
		     strlen(filter.action))) {
		srv_reply_error(r, 400, "bad_request",
			"query parameter action must be 1 to %d characters of "
			"a-z . _ (an action such as secret.read, or a prefix "
			"ending in a dot such as secret.)", CF_AUDIT_ACTION_MAX - 1);
		return;
	}
	/* One more than asked tells whether there is more. */
	filter.limit = (size_t)limit + 1;
	if (cf_store_audit_list(srv_req_store(r), id->tenant, &filter, &entries,
				&n, &err) != CF_OK) {
		api_fail(r, &err, "reading the audit log");
		return;
	}
	shown = n > (size_t)limit ? (size_t)limit : n;
	list = json_array();
	/* The same encoder the CLI's reader mirrors (audit.h), so what is
	 * written here reads back equal there. */
	for (size_t i = 0; list && i < shown; i++) {
		json_t *entry = NULL;

		if (cf_audit_to_json(&entries[i], &entry, &err) != CF_OK) {
			srv_log(SRV_LOG_ERROR, "audit entry %lld of tenant %.16s "
				"cannot be encoded: %s",
				(long long)entries[i].seq, id->tenant, err.msg);
			json_decref(list);
			free(entries);
			srv_reply_error(r, 500, "internal", "the audit log holds "
				"an entry the server cannot encode; see the "
				"server's log");
			return;
		}
		json_array_append_new(list, entry);
	}
	api_reply(r, 200, list ? json_pack("{s:o,s:b}", "entries", list,
					   "more", n > shown) : NULL);
	free(entries);
}

const srv_route srv_routes_audit[] = {
	{"GET", "/v1/audit", 0, 0, audit_list},
	{NULL, NULL, 0, 0, NULL},
};
