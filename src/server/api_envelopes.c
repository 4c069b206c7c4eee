/*
 * api_envelopes.c - the checks every upload of envelopes passes, shared
 * by PUT /v1/secrets (api_secrets.c) and the staged uploads
 * (api_uploads.c), so that both refuse exactly the same things.
 *
 * The server sees ciphertext only: it checks an envelope's size and that
 * it is DER (starts with a SEQUENCE), never what is inside.  Every
 * recipient must be a certificate of the tenant's directory that the
 * tenant's CRL does not revoke, nor its issuing enroller; no recipient
 * may appear twice in one list.  A refusal answers the request (400 naming
 * the envelope or recipient) before anything is stored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "envelope.h"

/*
 * Every recipient is in the directory and neither it nor its issuing
 * enroller is revoked; -1 answered.
 */
static int check_recipients(srv_req *r, const srv_identity *id,
			    const cf_envelope_in *envs, size_t n)
{
	cf_store *st = srv_req_store(r);
	X509_CRL *crl = NULL;
	cf_cert_row row, issuer;
	char issuer_ok[65] = "";  /* the last issuer found not revoked */
	cf_error err;
	cf_status rc;
	int ok = -1;

	memset(&row, 0, sizeof(row));
	memset(&issuer, 0, sizeof(issuer));
	if (api_tenant_crl(r, id->tenant, &crl) != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		cf_cert_row_clear(&row);
		rc = cf_store_cert_get(st, id->tenant, envs[i].recipient, &row, &err);
		if (rc == CF_ERR_NOT_FOUND) {
			srv_reply_error(r, 400, "bad_request",
				"recipient %s is not a certificate in this "
				"organisation's directory; nothing was stored; "
				"add it (POST /v1/certs) or leave it out",
				envs[i].recipient);
			goto out;
		}
		if (rc != CF_OK) {
			api_fail(r, &err, "looking up recipients");
			goto out;
		}
		if (api_serial_revoked(crl, row.serial)) {
			srv_reply_error(r, 400, "bad_request",
				"recipient %s (%s \"%s\") is revoked; nothing "
				"was stored; seal the secret again without it",
				row.fp, row.kind, row.name);
			goto out;
		}
		if (row.issuer_fp[0] == '\0' || strcmp(row.issuer_fp, id->tenant) == 0 ||
		    strcmp(row.issuer_fp, issuer_ok) == 0)
			continue;
		cf_cert_row_clear(&issuer);
		rc = cf_store_cert_get(st, id->tenant, row.issuer_fp, &issuer, &err);
		if (rc != CF_OK && rc != CF_ERR_NOT_FOUND) {
			api_fail(r, &err, "looking up recipients");
			goto out;
		}
		if (rc == CF_OK && api_serial_revoked(crl, issuer.serial)) {
			srv_reply_error(r, 400, "bad_request",
				"recipient %s (%s \"%s\") was issued by enroller "
				"\"%s\", which is revoked; nothing was stored; "
				"seal the secret again without it", row.fp,
				row.kind, row.name, issuer.name);
			goto out;
		}
		snprintf(issuer_ok, sizeof(issuer_ok), "%s", row.issuer_fp);
	}
	ok = 0;
out:
	cf_cert_row_clear(&row);
	cf_cert_row_clear(&issuer);
	X509_CRL_free(crl);
	return ok;
}

static int by_recipient(const void *a, const void *b)
{
	const cf_envelope_in *x = *(const cf_envelope_in *const *)a;
	const cf_envelope_in *y = *(const cf_envelope_in *const *)b;

	return strcmp(x->recipient, y->recipient);
}

/* No recipient twice; -1 answered. */
static int check_unique(srv_req *r, const cf_envelope_in *envs, size_t n)
{
	const cf_envelope_in **sorted = malloc(n * sizeof(*sorted));
	int ok = 0;

	if (sorted == NULL) {
		srv_reply_error(r, 500, "internal", "out of memory; nothing "
			"was stored; try again");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		sorted[i] = &envs[i];
	qsort(sorted, n, sizeof(*sorted), by_recipient);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(sorted[i - 1]->recipient, sorted[i]->recipient) == 0) {
			srv_reply_error(r, 400, "bad_request",
				"recipient %s has two envelopes; send one per "
				"recipient", sorted[i]->recipient);
			ok = -1;
			break;
		}
	}
	free(sorted);
	return ok;
}

int api_envelopes_read(srv_req *r, const srv_identity *id,
		       const json_t *body, size_t max, api_envelopes *out)
{
	const json_t *list = json_object_get(body, "envelopes"), *v;
	char what[48];
	size_t n;

	memset(out, 0, sizeof(*out));
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > max) {
		srv_reply_error(r, 400, "bad_request",
			"\"envelopes\" must be an array of 1 to %zu "
			"{\"recipient\",\"envelope\"} objects", max);
		return -1;
	}
	n = json_array_size(list);
	out->envs = calloc(n, sizeof(*out->envs));
	out->bufs = calloc(n, sizeof(*out->bufs));
	out->recipients = calloc(n, sizeof(*out->recipients));
	if (out->envs == NULL || out->bufs == NULL || out->recipients == NULL) {
		srv_reply_error(r, 500, "internal", "out of memory; nothing "
			"was stored; try again");
		goto fail;
	}
	out->n = n;
	for (size_t i = 0; i < n; i++) {
		const char *fp;

		v = json_array_get(list, i);
		snprintf(what, sizeof(what), "envelopes[%zu].envelope", i);
		if (!json_is_object(v)) {
			srv_reply_error(r, 400, "bad_request",
				"envelopes[%zu] is not an object", i);
			goto fail;
		}
		if (api_hex_field(r, v, "recipient", 64, &fp) != 0 ||
		    api_b64_field(r, what, json_object_get(v, "envelope"),
				  CF_ENVELOPE_MAX_BYTES, &out->bufs[i],
				  &out->envs[i].len) != 0)
			goto fail;
		if (out->bufs[i][0] != 0x30) {
			srv_reply_error(r, 400, "bad_request",
				"%s is not a DER envelope (it does not start "
				"with a SEQUENCE); seal it with coffer seal or "
				"openssl cms -encrypt -outform DER", what);
			goto fail;
		}
		snprintf(out->envs[i].recipient, sizeof(out->envs[i].recipient),
			 "%s", fp);
		memcpy(out->recipients[i], fp, 65);
		out->envs[i].der = out->bufs[i];
		out->bytes += (int64_t)out->envs[i].len;
	}
	if (check_unique(r, out->envs, n) != 0 ||
	    check_recipients(r, id, out->envs, n) != 0)
		goto fail;
	return 0;
fail:
	api_envelopes_clear(out);
	return -1;
}

void api_envelopes_clear(api_envelopes *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; e->bufs != NULL && i < e->n; i++)
		OPENSSL_free(e->bufs[i]); /* from api_b64_field */
	free(e->bufs);
	free(e->envs);
	free(e->recipients);
	memset(e, 0, sizeof(*e));
}
