/*
 * record.c - encoding and strict parsing of secret records.
 *
 * Parsing is for outside input (a record comes out of an envelope that
 * anybody could have made): the size is bounded before jansson sees it,
 * duplicate keys and unknown keys are refused, every field is checked
 * for type and range.  Plaintext: the base64 value and the decoded value
 * are only ever held in secure memory (jansson's allocator included, see
 * cf_secmem_init).
 */
#include "record.h"

#include "b64.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <string.h>

static const char *const type_names[] = {
	[CF_TYPE_TEXT] = "text", [CF_TYPE_BINARY] = "binary",
	[CF_TYPE_FILE] = "file", [CF_TYPE_TEMPLATE] = "template",
};

const char *cf_record_type_name(cf_record_type type)
{
	if ((size_t)type >= sizeof(type_names) / sizeof(type_names[0]))
		return "unknown";
	return type_names[type];
}

int cf_record_type_from_name(const char *name, cf_record_type *out)
{
	for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++) {
		if (strcmp(type_names[i], name) == 0) {
			*out = (cf_record_type)i;
			return 0;
		}
	}
	return -1;
}

cf_record *cf_record_new(void)
{
	return OPENSSL_zalloc(sizeof(cf_record));
}

static void strings_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		OPENSSL_free(v[i]);
	OPENSSL_free(v);
}

void cf_record_free(cf_record *rec)
{
	if (rec == NULL)
		return;
	cf_secret_free(rec->value);
	strings_free(rec->targets, rec->n_targets);
	strings_free(rec->without, rec->n_without);
	OPENSSL_free(rec);
}

static int is_fp(const char *s)
{
	if (strlen(s) != 64)
		return 0;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

cf_status cf_record_target_check(const char *spec, cf_error *err)
{
	if (spec == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "a target is missing");
	if (strncmp(spec, "fp:", 3) == 0)
		return is_fp(spec + 3) ? CF_OK : cf_error_set(err, CF_ERR_USAGE,
			"target \"%.80s\": a fingerprint is 64 lower-case hex "
			"characters", spec);
	if (strncmp(spec, "agent:", 6) == 0)
		return cf_name_check("agent name", spec + 6, err);
	if (strncmp(spec, "group:", 6) == 0)
		return cf_name_check("group name", spec + 6, err);
	if (strncmp(spec, "cluster:", 8) == 0)
		return cf_name_check("cluster name", spec + 8, err);
	return cf_error_set(err, CF_ERR_USAGE, "target \"%.80s\" is none of "
			    "agent:NAME, group:NAME, cluster:NAME, fp:FP", spec);
}

/* A JSON array of the n strings (NULL: out of memory). */
static json_t *strings_json(char *const *v, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr != NULL && i < n; i++)
		if (json_array_append_new(arr, json_string(v[i])) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	return arr;
}

static int is_tenant(const char *s)
{
	if (strlen(s) != 64)
		return 0;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* jansson integers are long long; records keep versions within 2^53. */
#define MAX_JSON_INT ((int64_t)1 << 53)

cf_status cf_record_encode(const cf_record *rec, cf_secret **json,
			   cf_error *err)
{
	size_t vlen = rec->value ? cf_secret_len(rec->value) : 0;
	cf_secret *b64 = NULL, *out = NULL;
	json_t *obj = NULL;
	cf_status rc = CF_OK;
	size_t need;

	*json = NULL;
	if (!is_tenant(rec->tenant))
		return cf_error_set(err, CF_ERR_USAGE,
			"record tenant must be 64 lowercase hex characters");
	rc = cf_name_check("secret name", rec->name, err);
	if (rc != CF_OK)
		return rc;
	if (rec->version < 1 || rec->version >= (uint64_t)MAX_JSON_INT)
		return cf_error_set(err, CF_ERR_USAGE,
			"version must be between 1 and 2^53-1");
	if (rec->created < 0 || rec->created >= MAX_JSON_INT)
		return cf_error_set(err, CF_ERR_USAGE, "bad creation time");
	if (vlen > CF_SECRET_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"secret value is %zu bytes, above the limit of %u bytes",
			vlen, CF_SECRET_MAX_BYTES);
	if ((size_t)rec->type >= sizeof(type_names) / sizeof(type_names[0]))
		return cf_error_set(err, CF_ERR_USAGE, "unknown record type");
	if (rec->n_targets > CF_RECORD_TARGETS_MAX ||
	    rec->n_without > CF_RECORD_TARGETS_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE, "a record names at "
				    "most %d targets and %d left out",
				    CF_RECORD_TARGETS_MAX, CF_RECORD_TARGETS_MAX);
	for (size_t i = 0; i < rec->n_targets; i++)
		if ((rc = cf_record_target_check(rec->targets[i], err)) != CF_OK)
			return rc;
	for (size_t i = 0; i < rec->n_without; i++)
		if (!is_fp(rec->without[i]))
			return cf_error_set(err, CF_ERR_USAGE, "a fingerprint left "
					    "out is 64 lower-case hex characters");

	b64 = cf_secret_new(cf_b64_encoded_len(vlen) + 1);
	if (b64 == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory");
	rc = cf_b64_encode(vlen ? cf_secret_cdata(rec->value) : NULL, vlen,
			   (char *)cf_secret_data(b64), cf_secret_cap(b64),
			   NULL, err);
	if (rc != CF_OK)
		goto out;
	cf_secret_set_len(b64, cf_b64_encoded_len(vlen), NULL);

	obj = json_pack("{s:i, s:s, s:s, s:I, s:I, s:s, s:s%}",
		"v", 1, "tenant", rec->tenant, "name", rec->name,
		"version", (json_int_t)rec->version,
		"created", (json_int_t)rec->created,
		"type", type_names[rec->type],
		"value", (const char *)cf_secret_cdata(b64), cf_secret_len(b64));
	if (obj != NULL && rec->n_targets > 0 &&
	    json_object_set_new(obj, "targets",
				strings_json(rec->targets, rec->n_targets)) != 0) {
		json_decref(obj);
		obj = NULL;
	}
	if (obj != NULL && rec->n_without > 0 &&
	    json_object_set_new(obj, "without",
				strings_json(rec->without, rec->n_without)) != 0) {
		json_decref(obj);
		obj = NULL;
	}
	if (obj != NULL && rec->member[0] != '\0' &&
	    json_object_set_new(obj, "member", json_string(rec->member)) != 0) {
		json_decref(obj);
		obj = NULL;
	}
	if (obj == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "could not build the record");
		goto out;
	}
	need = json_dumpb(obj, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
	out = cf_secret_new(need);
	if (need == 0 || out == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "could not encode the record");
		goto out;
	}
	json_dumpb(obj, (char *)cf_secret_data(out), need,
		   JSON_COMPACT | JSON_PRESERVE_ORDER);
	cf_secret_set_len(out, need, NULL);
	*json = out;
	out = NULL;
out:
	json_decref(obj);
	cf_secret_free(b64);
	cf_secret_free(out);
	return rc;
}

static const char *const known_keys[] = {
	"v", "tenant", "name", "version", "created", "type", "value",
	"targets", "without", "member",
};

/*
 * An optional array member of strings, each passing check (NULL: any):
 * absent is none.  CF_ERR_RECORD for anything else.
 */
static cf_status parse_strings(json_t *obj, const char *key,
			       cf_status (*check)(const char *, cf_error *),
			       int fps, char ***out, size_t *n, cf_error *err)
{
	json_t *arr = json_object_get(obj, key), *v;
	size_t i;

	*out = NULL;
	*n = 0;
	if (arr == NULL)
		return CF_OK;
	if (!json_is_array(arr) || json_array_size(arr) == 0 ||
	    json_array_size(arr) > CF_RECORD_TARGETS_MAX)
		return cf_error_set(err, CF_ERR_RECORD, "record %s is not an "
				    "array of 1 to %d strings", key,
				    CF_RECORD_TARGETS_MAX);
	*out = OPENSSL_zalloc(json_array_size(arr) * sizeof(char *));
	if (*out == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);

		if (s == NULL || strlen(s) != json_string_length(v) ||
		    (check != NULL && check(s, NULL) != CF_OK) ||
		    (fps && !is_fp(s)))
			return cf_error_set(err, CF_ERR_RECORD, "record %s entry "
					    "%zu is not valid", key, i + 1);
		if (((*out)[i] = OPENSSL_strdup(s)) == NULL)
			return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		(*n)++;
	}
	return CF_OK;
}

/* The optional "member" proof: base64 text of bounded length. */
static cf_status parse_member(json_t *obj, cf_record *rec, cf_error *err)
{
	json_t *m = json_object_get(obj, "member");
	const char *text;
	size_t len;

	if (m == NULL)
		return CF_OK;
	text = json_string_value(m);
	len = text ? json_string_length(m) : 0;
	if (text == NULL || len == 0 || len > CF_RECORD_MEMBER_MAX ||
	    strlen(text) != len ||
	    strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		   "0123456789+/=") != len)
		return cf_error_set(err, CF_ERR_RECORD, "record member proof is "
				    "not base64 of at most %d characters",
				    CF_RECORD_MEMBER_MAX);
	memcpy(rec->member, text, len + 1);
	return CF_OK;
}

static cf_status check_keys(json_t *obj, cf_error *err)
{
	const char *key;
	json_t *val;

	json_object_foreach(obj, key, val) {
		size_t i;

		(void)val;
		for (i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]); i++)
			if (strcmp(known_keys[i], key) == 0)
				break;
		if (i == sizeof(known_keys) / sizeof(known_keys[0]))
			return cf_error_set(err, CF_ERR_RECORD,
				"record has an unknown field \"%.40s\"", key);
	}
	return CF_OK;
}

/*
 * The value, strictly (cf_b64_decode_secret: canonical, so stray '=',
 * non-zero padding bits or white space cannot make two readers see
 * different secrets in one signed record).  A malformed value is a
 * malformed record; the message names only a character offset.
 */
static cf_status decode_value(const char *b64, size_t len, cf_secret **out,
			      cf_error *err)
{
	cf_error e = { 0 };
	cf_status rc = cf_b64_decode_secret(b64, len, CF_SECRET_MAX_BYTES,
					    "record value", out, &e);

	if (rc == CF_OK)
		return CF_OK;
	return cf_error_set(err, rc == CF_ERR_PARSE ? CF_ERR_RECORD : rc,
			    "%s", e.msg);
}

cf_status cf_record_parse(const unsigned char *json, size_t len,
			  cf_record **out, cf_error *err)
{
	json_error_t jerr;
	json_t *obj = NULL, *v, *tenant, *name, *version, *created, *type, *value;
	cf_record *rec = NULL;
	cf_status rc = CF_OK;

	*out = NULL;
	if (len > CF_RECORD_MAX_BYTES)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"record is %zu bytes, above the limit of %u", len,
			(unsigned)CF_RECORD_MAX_BYTES);
	obj = json_loadb((const char *)json, len,
			 JSON_REJECT_DUPLICATES, &jerr);
	/* The secure heap ran out: not the record's fault. */
	if (obj == NULL && json_error_code(&jerr) == json_error_out_of_memory)
		return cf_error_set(err, CF_ERR_NOMEM, "out of secure memory "
				    "while reading a record of %zu bytes", len);
	if (obj == NULL)
		/*
		 * Not jerr.text: jansson quotes the input near the error, which
		 * may be the secret's base64.  The position is enough.
		 */
		return cf_error_set(err, CF_ERR_RECORD,
			"record is not valid JSON (error at byte %d)",
			jerr.position);
	if (!json_is_object(obj)) {
		rc = cf_error_set(err, CF_ERR_RECORD, "record is not a JSON object");
		goto out;
	}
	rc = check_keys(obj, err);
	if (rc != CF_OK)
		goto out;
	v = json_object_get(obj, "v");
	tenant = json_object_get(obj, "tenant");
	name = json_object_get(obj, "name");
	version = json_object_get(obj, "version");
	created = json_object_get(obj, "created");
	type = json_object_get(obj, "type");
	value = json_object_get(obj, "value");
	if (!json_is_integer(v) || json_integer_value(v) != 1) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"record format version is not 1; this coffer reads v1 records");
		goto out;
	}
	if (!json_is_string(tenant) || !is_tenant(json_string_value(tenant))) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"record tenant is not a 64-character hex fingerprint");
		goto out;
	}
	if (!json_is_string(name) ||
	    strlen(json_string_value(name)) != json_string_length(name) ||
	    cf_name_check("record name", json_string_value(name), NULL) != CF_OK) {
		rc = cf_error_set(err, CF_ERR_RECORD, "record name is missing or invalid");
		goto out;
	}
	if (!json_is_integer(version) || json_integer_value(version) < 1 ||
	    json_integer_value(version) >= MAX_JSON_INT) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"record version is missing or not a positive integer");
		goto out;
	}
	if (!json_is_integer(created) || json_integer_value(created) < 0 ||
	    json_integer_value(created) >= MAX_JSON_INT) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"record creation time is missing or invalid");
		goto out;
	}
	rec = cf_record_new();
	if (rec == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!json_is_string(type) ||
	    cf_record_type_from_name(json_string_value(type), &rec->type) != 0) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"record type is missing or not one of text, binary, file, template");
		goto out;
	}
	if (!json_is_string(value)) {
		rc = cf_error_set(err, CF_ERR_RECORD, "record value is missing");
		goto out;
	}
	rc = decode_value(json_string_value(value), json_string_length(value),
			  &rec->value, err);
	if (rc == CF_OK)
		rc = parse_strings(obj, "targets", cf_record_target_check, 0,
				   &rec->targets, &rec->n_targets, err);
	if (rc == CF_OK)
		rc = parse_strings(obj, "without", NULL, 1, &rec->without,
				   &rec->n_without, err);
	if (rc == CF_OK)
		rc = parse_member(obj, rec, err);
	if (rc != CF_OK)
		goto out;
	memcpy(rec->tenant, json_string_value(tenant), 65);
	snprintf(rec->name, sizeof(rec->name), "%s", json_string_value(name));
	rec->version = (uint64_t)json_integer_value(version);
	rec->created = (int64_t)json_integer_value(created);
	*out = rec;
	rec = NULL;
out:
	cf_record_free(rec);
	json_decref(obj);
	return rc;
}
