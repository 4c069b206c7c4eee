/*
 * ack.c - rollout acknowledgements: encoding, strict parsing, signing and
 * verification (ack.h, docs/FORMAT.md "Acknowledgements").
 *
 * Invariants: a parsed ack has every field present, of its type and
 * within its bound, and no field the format does not name; the record is
 * parsed only after its signer chained to the tenant root and was found
 * to be an agent (the order of cf_envelope_verify: only trusted content
 * is parsed); a verified ack names the agent that signed it.  Acks carry
 * no secret, so their bytes live in the ordinary heap except where the
 * envelope functions want a cf_secret.
 */
#include "ack.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <string.h>

#include "envelope.h"

/* Versions and times stay within 2^53, as in records. */
#define MAX_JSON_INT ((int64_t)1 << 53)

static const char *const result_names[] = { "ok", "failed" };

static const char *const ack_keys[] = {
	"v", "tenant", "agent", "name", "version", "time", "result", "reason",
};

const char *cf_ack_result_name(cf_ack_result result)
{
	if ((size_t)result >= sizeof(result_names) / sizeof(result_names[0]))
		return NULL;
	return result_names[result];
}

int cf_ack_result_from_name(const char *name, cf_ack_result *out)
{
	for (size_t i = 0; name != NULL &&
	     i < sizeof(result_names) / sizeof(result_names[0]); i++)
		if (strcmp(result_names[i], name) == 0) {
			*out = (cf_ack_result)i;
			return 0;
		}
	return -1;
}

static int is_lower_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* No control character (C0 or DEL) in s. */
static int is_text(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/*
 * The length of the well-formed UTF-8 sequence at s (at most left bytes),
 * 0 if it is not one: overlong forms, surrogates and values above
 * U+10FFFF are not well-formed (RFC 3629).
 */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	unsigned c = s[0];
	size_t n;
	unsigned min, v;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		min = 0x80;
		v = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		min = 0x800;
		v = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		min = 0x10000;
		v = c & 0x07;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	return n;
}

void cf_ack_set_reason(cf_ack *ack, const char *reason)
{
	size_t len = reason != NULL ? strlen(reason) : 0;

	if (len > CF_ACK_REASON_MAX) {
		len = CF_ACK_REASON_MAX;
		/* Back off continuation bytes: no half character at the end. */
		while (len > 0 && ((unsigned char)reason[len] & 0xc0) == 0x80)
			len--;
	}
	if (len > 0)
		memcpy(ack->reason, reason, len);
	ack->reason[len] = '\0';
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)ack->reason[i] < 0x20 || ack->reason[i] == 0x7f)
			ack->reason[i] = ' ';
	/* JSON strings are UTF-8: a byte that starts no valid sequence (a
	 * Latin-1 path in an error message) becomes '?', or the ack could
	 * never be encoded. */
	for (size_t i = 0; i < len;) {
		size_t n = utf8_len((const unsigned char *)ack->reason + i,
				    len - i);

		if (n == 0) {
			ack->reason[i++] = '?';
			continue;
		}
		i += n;
	}
}

/* Every field within its bounds; which says what is wrong. */
static int ack_valid(const cf_ack *ack, const char **which)
{
	size_t agent_len = strnlen(ack->agent, sizeof(ack->agent));

	if (!is_lower_hex(ack->tenant, 64))
		*which = "tenant (64 lowercase hex characters)";
	else if (agent_len == 0 || agent_len > CF_CN_MAX_BYTES ||
		 !is_text(ack->agent))
		*which = "agent (a CN of 1 to 64 bytes)";
	else if (cf_name_check("name", ack->name, NULL) != CF_OK)
		*which = "name (a secret name)";
	else if (ack->version < 1 || ack->version >= MAX_JSON_INT)
		*which = "version (1 to 2^53 - 1)";
	else if (ack->time < 0 || ack->time >= MAX_JSON_INT)
		*which = "time (unix seconds)";
	else if (cf_ack_result_name(ack->result) == NULL)
		*which = "result (ok or failed)";
	else if (strnlen(ack->reason, sizeof(ack->reason)) > CF_ACK_REASON_MAX ||
		 !is_text(ack->reason))
		*which = "reason (text of at most 1024 bytes)";
	else
		return 1;
	return 0;
}

cf_status cf_ack_encode(const cf_ack *ack, cf_secret **json, cf_error *err)
{
	const char *which = NULL;
	json_t *obj;
	cf_secret *out = NULL;
	size_t need;

	*json = NULL;
	if (!ack_valid(ack, &which))
		return cf_error_set(err, CF_ERR_USAGE,
				    "an acknowledgement needs a valid %s", which);
	obj = json_pack("{s:i,s:s,s:s,s:s,s:I,s:I,s:s,s:s}", "v", 1,
			"tenant", ack->tenant, "agent", ack->agent,
			"name", ack->name, "version", (json_int_t)ack->version,
			"time", (json_int_t)ack->time,
			"result", cf_ack_result_name(ack->result),
			"reason", ack->reason);
	if (obj == NULL)
		return cf_error_set(err, CF_ERR_NOMEM,
				    "could not build the acknowledgement");
	need = json_dumpb(obj, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (need == 0 || (out = cf_secret_new(need)) == NULL) {
		json_decref(obj);
		return cf_error_set(err, CF_ERR_NOMEM,
				    "could not encode the acknowledgement");
	}
	json_dumpb(obj, (char *)cf_secret_data(out), need,
		   JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	cf_secret_set_len(out, need, NULL);
	*json = out;
	return CF_OK;
}

/* A string field: present, no NUL inside, at most max bytes; else NULL. */
static const char *get_str(json_t *obj, const char *key, size_t max)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v) || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return NULL;
	return json_string_value(v);
}

static int get_int(json_t *obj, const char *key, int64_t min, int64_t *out)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) >= MAX_JSON_INT)
		return 0;
	*out = (int64_t)json_integer_value(v);
	return 1;
}

static cf_status refuse(cf_error *err, const char *what)
{
	return cf_error_set(err, CF_ERR_RECORD,
			    "acknowledgement %s is missing or invalid", what);
}

cf_status cf_ack_parse(const unsigned char *json, size_t len, cf_ack *out,
		       cf_error *err)
{
	json_error_t jerr;
	json_t *obj = NULL, *v, *val;
	const char *key, *tenant, *agent, *name, *result, *reason, *which;
	cf_status rc = CF_OK;

	memset(out, 0, sizeof(*out));
	if (len > CF_ACK_RECORD_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
				    "an acknowledgement is %zu bytes, above the "
				    "limit of %u", len, CF_ACK_RECORD_MAX);
	obj = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (obj == NULL && json_error_code(&jerr) == json_error_out_of_memory)
		return cf_error_set(err, CF_ERR_NOMEM,
				    "out of memory reading an acknowledgement");
	if (obj == NULL)
		/* Not jerr.text: it quotes the input. */
		return cf_error_set(err, CF_ERR_RECORD,
				    "an acknowledgement is not valid JSON "
				    "(error at byte %d)", jerr.position);
	if (!json_is_object(obj)) {
		rc = cf_error_set(err, CF_ERR_RECORD,
				  "an acknowledgement is not a JSON object");
		goto out;
	}
	json_object_foreach(obj, key, val) {
		size_t i;

		(void)val;
		for (i = 0; i < sizeof(ack_keys) / sizeof(ack_keys[0]); i++)
			if (strcmp(ack_keys[i], key) == 0)
				break;
		if (i == sizeof(ack_keys) / sizeof(ack_keys[0])) {
			rc = cf_error_set(err, CF_ERR_RECORD,
					  "an acknowledgement has an unknown "
					  "field \"%.40s\"", key);
			goto out;
		}
	}
	v = json_object_get(obj, "v");
	if (!json_is_integer(v) || json_integer_value(v) != 1) {
		rc = cf_error_set(err, CF_ERR_RECORD,
				  "acknowledgement format version is not 1; "
				  "this coffer reads v1");
		goto out;
	}
	tenant = get_str(obj, "tenant", 64);
	agent = get_str(obj, "agent", CF_CN_MAX_BYTES);
	name = get_str(obj, "name", CF_NAME_MAX_BYTES);
	result = get_str(obj, "result", 8);
	reason = get_str(obj, "reason", CF_ACK_REASON_MAX);
	if (tenant == NULL) {
		rc = refuse(err, "tenant");
		goto out;
	}
	if (agent == NULL) {
		rc = refuse(err, "agent");
		goto out;
	}
	if (name == NULL) {
		rc = refuse(err, "name");
		goto out;
	}
	if (reason == NULL) {
		rc = refuse(err, "reason");
		goto out;
	}
	if (result == NULL || cf_ack_result_from_name(result, &out->result)) {
		rc = cf_error_set(err, CF_ERR_RECORD,
				  "acknowledgement result is not ok or failed");
		goto out;
	}
	if (!get_int(obj, "version", 1, &out->version)) {
		rc = refuse(err, "version");
		goto out;
	}
	if (!get_int(obj, "time", 0, &out->time)) {
		rc = refuse(err, "time");
		goto out;
	}
	snprintf(out->tenant, sizeof(out->tenant), "%s", tenant);
	snprintf(out->agent, sizeof(out->agent), "%s", agent);
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->reason, sizeof(out->reason), "%s", reason);
	if (!ack_valid(out, &which)) {
		rc = cf_error_set(err, CF_ERR_RECORD,
				  "acknowledgement %s is invalid", which);
		goto out;
	}
out:
	if (rc != CF_OK)
		memset(out, 0, sizeof(*out));
	json_decref(obj);
	return rc;
}

cf_status cf_ack_sign(const cf_ack *ack, X509 *cert, EVP_PKEY *key,
		      STACK_OF(X509) *chain, unsigned char **der, size_t *len,
		      cf_error *err)
{
	cf_secret *json = NULL, *signed_der = NULL;
	cf_status rc;

	*der = NULL;
	*len = 0;
	if ((rc = cf_pki_init(err)) != CF_OK)
		return rc;
	if ((rc = cf_ack_encode(ack, &json, err)) != CF_OK)
		return rc;
	rc = cf_envelope_sign_as(json, cf_nid_ack(), cert, key, chain,
				 &signed_der, err);
	if (rc != CF_OK)
		goto out;
	*der = OPENSSL_memdup(cf_secret_cdata(signed_der),
			      cf_secret_len(signed_der));
	if (*der == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	*len = cf_secret_len(signed_der);
out:
	cf_secret_free(signed_der);
	cf_secret_free(json);
	return rc;
}

cf_status cf_ack_verify(const unsigned char *der, size_t len,
			const cf_trust *trust, cf_ack *out, char signer_fp[65],
			cf_error *err)
{
	cf_secret *signed_der = NULL, *json = NULL;
	STACK_OF(X509) *certs = NULL;
	X509 *signer = NULL;
	char cn[CF_CN_MAX_BYTES + 1], fp[65];
	cf_status rc;

	memset(out, 0, sizeof(*out));
	if (len == 0 || len > CF_ACK_SIGNED_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
				    "a signed acknowledgement is %zu bytes; it "
				    "must be 1 to %u", len, CF_ACK_SIGNED_MAX);
	if ((rc = cf_pki_init(err)) != CF_OK)
		return rc;
	if ((signed_der = cf_secret_from(der, len)) == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = cf_envelope_check_signature_as(signed_der, cf_nid_ack(), &json,
					    &signer, &certs, err);
	if (rc != CF_OK)
		goto out;
	rc = cf_trust_verify(trust, signer, certs,
			     "the acknowledgement's signer", err);
	if (rc != CF_OK)
		goto out;
	cf_cert_cn(signer, cn, sizeof(cn));
	if (cf_cert_kind(signer) != CF_KIND_AGENT) {
		rc = cf_error_set(err, CF_ERR_PERMISSION,
				  "the acknowledgement was signed by \"%s\", of "
				  "kind %s, not by an agent", cn,
				  cf_kind_name(cf_cert_kind(signer)));
		goto out;
	}
	if ((rc = cf_cert_fingerprint(signer, fp, err)) != CF_OK)
		goto out;
	rc = cf_ack_parse(cf_secret_cdata(json), cf_secret_len(json), out, err);
	if (rc != CF_OK)
		goto out;
	if (strcmp(out->tenant, cf_trust_tenant(trust)) != 0) {
		rc = cf_error_set(err, CF_ERR_RECORD,
				  "the acknowledgement belongs to another "
				  "organisation (tenant %.16s...)", out->tenant);
		goto out;
	}
	if (strcmp(out->agent, cn) != 0) {
		rc = cf_error_set(err, CF_ERR_NAME,
				  "the acknowledgement names agent \"%s\" but "
				  "was signed by \"%s\"", out->agent, cn);
		goto out;
	}
	if (signer_fp != NULL)
		memcpy(signer_fp, fp, 65);
out:
	if (rc != CF_OK)
		memset(out, 0, sizeof(*out));
	X509_free(signer);
	sk_X509_pop_free(certs, X509_free);
	cf_secret_free(json);
	cf_secret_free(signed_der);
	return rc;
}
