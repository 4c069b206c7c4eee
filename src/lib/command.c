/*
 * command.c - command and result records: encoding, strict parsing, and
 * the checks that decide whether an agent may act on a command and
 * whether an operator may believe an answer.
 *
 * Invariants: a parsed record has every field present, of its type and
 * within its bound, and no field the format does not name; a command is
 * only ever parsed after its signer chained to the tenant root (the same
 * order as cf_envelope_verify: only trusted content is parsed); record
 * JSON lives in secure memory.  Arguments and outputs are not secrets by
 * contract, but they may hold something sensitive, so what this module
 * allocates for them is wiped when freed.
 */
#include "command.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

#include "b64.h"
#include "envelope.h"
#include "pki.h"
#include "policy.h"

/* jansson integers are long long; times stay within 2^53 as in records. */
#define MAX_JSON_INT ((int64_t)1 << 53)

/* ---- small checks -------------------------------------------------------- */

static bool is_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

bool cf_command_id_valid(const char *s)
{
	return s != NULL && is_hex(s, CF_CMD_ID_LEN);
}

cf_status cf_command_id_new(char id[CF_CMD_ID_LEN + 1], cf_error *err)
{
	unsigned char raw[CF_CMD_ID_LEN / 2];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
					"could not draw a random command id");
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(id + 2 * i, 3, "%02x", raw[i]);
	return CF_OK;
}

cf_status cf_action_name_check(const char *name, cf_error *err)
{
	size_t len = name ? strnlen(name, CF_CMD_ACTION_MAX + 1) : 0;

	if (len == 0 || len > CF_CMD_ACTION_MAX)
		return cf_error_set(err, CF_ERR_USAGE,
			"an action name must be 1 to %d characters",
			CF_CMD_ACTION_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  (i > 0 && (c == '.' || c == '_' || c == '-'));

		if (!ok)
			return cf_error_set(err, CF_ERR_USAGE,
				"action name \"%.64s\" may only hold a-z, 0-9, "
				"'.', '_' and '-', and must start with a "
				"letter or digit", name);
	}
	return CF_OK;
}

cf_status cf_command_target_check(const char *spec, cf_error *err)
{
	const char *name;

	if (spec == NULL)
		return cf_error_set(err, CF_ERR_USAGE, "a target is missing");
	if (strncmp(spec, "agent:", 6) == 0)
		name = spec + 6;
	else if (strncmp(spec, "group:", 6) == 0)
		name = spec + 6;
	else
		return cf_error_set(err, CF_ERR_USAGE,
			"target \"%.80s\" is neither agent:NAME nor group:NAME",
			spec);
	return cf_name_check(spec[0] == 'a' ? "agent name" : "group name",
			     name, err);
}

/* ---- the command struct --------------------------------------------------- */

cf_command *cf_command_new(void)
{
	return OPENSSL_zalloc(sizeof(cf_command));
}

static void strings_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		OPENSSL_clear_free(v[i], strlen(v[i]) + 1);
	OPENSSL_free(v);
}

void cf_command_free(cf_command *cmd)
{
	if (cmd == NULL)
		return;
	strings_free(cmd->args, cmd->n_args);
	strings_free(cmd->targets, cmd->n_targets);
	OPENSSL_clear_free(cmd, sizeof(*cmd));
}

static cf_status push_string(char ***v, size_t *n, const char *s, size_t len,
			     cf_error *err)
{
	char **grown = OPENSSL_realloc(*v, (*n + 1) * sizeof(char *));
	char *copy;

	if (grown == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	*v = grown;
	copy = OPENSSL_malloc(len + 1);
	if (copy == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	memcpy(copy, s, len);
	copy[len] = '\0';
	grown[(*n)++] = copy;
	return CF_OK;
}

static cf_status check_arg(const char *s, size_t len, cf_error *err)
{
	if (len > CF_CMD_ARG_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"a command argument is %zu bytes, above the limit of %d",
			len, CF_CMD_ARG_MAX);
	if (memchr(s, '\0', len) != NULL)
		return cf_error_set(err, CF_ERR_USAGE,
			"a command argument holds a NUL byte");
	return CF_OK;
}

cf_status cf_command_add_arg(cf_command *cmd, const char *s, cf_error *err)
{
	size_t len = strnlen(s, CF_CMD_ARG_MAX + 1);
	cf_status rc = check_arg(s, len, err);

	if (rc != CF_OK)
		return rc;
	if (cmd->n_args >= CF_CMD_ARGS_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"a command takes at most %d arguments", CF_CMD_ARGS_MAX);
	return push_string(&cmd->args, &cmd->n_args, s, len, err);
}

cf_status cf_command_add_target(cf_command *cmd, const char *spec,
				cf_error *err)
{
	cf_status rc = cf_command_target_check(spec, err);

	if (rc != CF_OK)
		return rc;
	if (cmd->n_targets >= CF_CMD_TARGETS_MAX)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"a command names at most %d targets", CF_CMD_TARGETS_MAX);
	return push_string(&cmd->targets, &cmd->n_targets, spec, strlen(spec),
			   err);
}

/* ---- JSON helpers ---------------------------------------------------------- */

/* Dumps obj compactly into secure memory. */
static cf_status dump_secret(json_t *obj, const char *what, cf_secret **json,
			     cf_error *err)
{
	size_t need = json_dumpb(obj, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
	cf_secret *out = need ? cf_secret_new(need) : NULL;

	if (out == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "could not encode the %s",
				    what);
	json_dumpb(obj, (char *)cf_secret_data(out), need,
		   JSON_COMPACT | JSON_PRESERVE_ORDER);
	cf_secret_set_len(out, need, NULL);
	*json = out;
	return CF_OK;
}

static cf_status load_object(const unsigned char *json, size_t len,
			     size_t max, const char *what,
			     const char *const *keys, size_t n_keys,
			     json_t **out, cf_error *err)
{
	json_error_t jerr;
	json_t *obj, *v;
	const char *key;
	json_t *val;

	*out = NULL;
	if (len > max)
		return cf_error_set(err, CF_ERR_TOO_LARGE,
			"%s is %zu bytes, above the limit of %zu", what, len,
			max);
	obj = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (obj == NULL && json_error_code(&jerr) == json_error_out_of_memory)
		return cf_error_set(err, CF_ERR_NOMEM,
			"out of secure memory while reading a %s", what);
	if (obj == NULL)
		/* Not jerr.text: it quotes the input. */
		return cf_error_set(err, CF_ERR_RECORD,
			"%s is not valid JSON (error at byte %d)", what,
			jerr.position);
	if (!json_is_object(obj)) {
		json_decref(obj);
		return cf_error_set(err, CF_ERR_RECORD, "%s is not a JSON object",
				    what);
	}
	json_object_foreach(obj, key, val) {
		size_t i;

		(void)val;
		for (i = 0; i < n_keys; i++)
			if (strcmp(keys[i], key) == 0)
				break;
		if (i == n_keys) {
			/* The message before the decref: key lives in obj. */
			cf_status rc = cf_error_set(err, CF_ERR_RECORD,
				"%s has an unknown field \"%.40s\"", what, key);

			json_decref(obj);
			return rc;
		}
	}
	v = json_object_get(obj, "v");
	if (!json_is_integer(v) || json_integer_value(v) != 1) {
		json_decref(obj);
		return cf_error_set(err, CF_ERR_RECORD,
			"%s format version is not 1; this coffer reads v1", what);
	}
	*out = obj;
	return CF_OK;
}

/* A string field: present, no NUL inside, at most max bytes. */
static const char *get_str(json_t *obj, const char *key, size_t max)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v) || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return NULL;
	return json_string_value(v);
}

static bool get_time(json_t *obj, const char *key, int64_t *out)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) >= MAX_JSON_INT)
		return false;
	*out = (int64_t)json_integer_value(v);
	return true;
}

static bool get_bool(json_t *obj, const char *key, bool *out)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_boolean(v))
		return false;
	*out = json_is_true(v);
	return true;
}

/* ---- commands ------------------------------------------------------------- */

static cf_status check_command(const cf_command *cmd, cf_error *err)
{
	cf_status rc;

	if (!is_hex(cmd->tenant, 64))
		return cf_error_set(err, CF_ERR_USAGE,
			"command tenant must be 64 lowercase hex characters");
	if (!cf_command_id_valid(cmd->id))
		return cf_error_set(err, CF_ERR_USAGE,
			"command id must be %d lowercase hex characters",
			CF_CMD_ID_LEN);
	if ((rc = cf_action_name_check(cmd->action, err)) != CF_OK)
		return rc;
	if (cmd->n_targets == 0)
		return cf_error_set(err, CF_ERR_USAGE, "a command needs a target");
	if (cmd->issued < 0 || cmd->expires < cmd->issued ||
	    cmd->expires >= MAX_JSON_INT ||
	    cmd->expires - cmd->issued > CF_CMD_LIFETIME_MAX)
		return cf_error_set(err, CF_ERR_USAGE,
			"a command must expire after it is issued and within "
			"%d days", CF_CMD_LIFETIME_MAX / 86400);
	return CF_OK;
}

cf_status cf_command_encode(const cf_command *cmd, cf_secret **json,
			    cf_error *err)
{
	json_t *obj = NULL, *args = NULL, *targets = NULL;
	cf_status rc;

	*json = NULL;
	if ((rc = check_command(cmd, err)) != CF_OK)
		return rc;
	args = json_array();
	targets = json_array();
	for (size_t i = 0; args && i < cmd->n_args; i++)
		if (json_array_append_new(args, json_string(cmd->args[i])) != 0) {
			json_decref(args);
			args = NULL;
		}
	for (size_t i = 0; targets && i < cmd->n_targets; i++)
		if (json_array_append_new(targets,
					  json_string(cmd->targets[i])) != 0) {
			json_decref(targets);
			targets = NULL;
		}
	if (args == NULL || targets == NULL) {
		json_decref(args);
		json_decref(targets);
		return cf_error_set(err, CF_ERR_NOMEM,
				    "could not build the command");
	}
	obj = json_pack("{s:i,s:s,s:s,s:s,s:o,s:I,s:I,s:o}", "v", 1,
		"tenant", cmd->tenant, "id", cmd->id, "action", cmd->action,
		"args", args, "issued", (json_int_t)cmd->issued,
		"expires", (json_int_t)cmd->expires, "targets", targets);
	if (obj == NULL)
		return cf_error_set(err, CF_ERR_NOMEM,
				    "could not build the command");
	rc = dump_secret(obj, "command", json, err);
	json_decref(obj);
	return rc;
}

static const char *const command_keys[] = {
	"v", "tenant", "id", "action", "args", "issued", "expires", "targets",
};

static cf_status parse_strings(json_t *arr, size_t max_n, const char *what,
			       cf_command *cmd, int targets, cf_error *err)
{
	size_t i;
	json_t *v;
	cf_status rc;

	if (!json_is_array(arr) || json_array_size(arr) > max_n)
		return cf_error_set(err, CF_ERR_RECORD,
			"command %s is not an array of at most %zu strings",
			what, max_n);
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v))
			return cf_error_set(err, CF_ERR_RECORD,
				"command %s holds something not a string", what);
		if (targets)
			rc = cf_command_add_target(cmd, json_string_value(v),
						   NULL);
		else
			rc = check_arg(json_string_value(v),
				       json_string_length(v), NULL) == CF_OK ?
			     push_string(&cmd->args, &cmd->n_args,
					 json_string_value(v),
					 json_string_length(v), NULL) :
			     CF_ERR_RECORD;
		if (rc == CF_ERR_NOMEM)
			return cf_error_set(err, rc, "out of memory");
		if (rc != CF_OK)
			return cf_error_set(err, CF_ERR_RECORD,
				"command %s %zu is not valid", what, i + 1);
	}
	return CF_OK;
}

cf_status cf_command_parse(const unsigned char *json, size_t len,
			   cf_command **out, cf_error *err)
{
	json_t *obj = NULL;
	cf_command *cmd = NULL;
	const char *tenant, *id, *action;
	cf_status rc;

	*out = NULL;
	rc = load_object(json, len, CF_CMD_RECORD_MAX, "command", command_keys,
			 sizeof(command_keys) / sizeof(command_keys[0]), &obj,
			 err);
	if (rc != CF_OK)
		return rc;
	if ((cmd = cf_command_new()) == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	tenant = get_str(obj, "tenant", 64);
	id = get_str(obj, "id", CF_CMD_ID_LEN);
	action = get_str(obj, "action", CF_CMD_ACTION_MAX);
	if (tenant == NULL || !is_hex(tenant, 64) || id == NULL ||
	    !cf_command_id_valid(id) || action == NULL ||
	    cf_action_name_check(action, NULL) != CF_OK) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"command tenant, id or action is missing or invalid");
		goto out;
	}
	memcpy(cmd->tenant, tenant, 65);
	memcpy(cmd->id, id, CF_CMD_ID_LEN + 1);
	snprintf(cmd->action, sizeof(cmd->action), "%s", action);
	if (!get_time(obj, "issued", &cmd->issued) ||
	    !get_time(obj, "expires", &cmd->expires)) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"command issue or expiry time is missing or invalid");
		goto out;
	}
	if ((rc = parse_strings(json_object_get(obj, "args"), CF_CMD_ARGS_MAX,
				"args", cmd, 0, err)) != CF_OK ||
	    (rc = parse_strings(json_object_get(obj, "targets"),
				CF_CMD_TARGETS_MAX, "targets", cmd, 1,
				err)) != CF_OK)
		goto out;
	if (check_command(cmd, NULL) != CF_OK) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"command has no target, or expires before it is "
			"issued or more than %d days after",
			CF_CMD_LIFETIME_MAX / 86400);
		goto out;
	}
	*out = cmd;
	cmd = NULL;
out:
	cf_command_free(cmd);
	json_decref(obj);
	return rc;
}

/* Is name one of the comma-separated groups (blanks around each ignored)? */
static bool in_groups(const char *groups, const char *name)
{
	size_t nlen = strlen(name);

	for (const char *p = groups; p != NULL && *p != '\0';) {
		size_t len = strcspn(p, ",");
		const char *b = p, *e = p + len;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - b) == nlen && memcmp(b, name, nlen) == 0)
			return true;
		p += len;
		if (*p == ',')
			p++;
	}
	return false;
}

bool cf_command_targets(const cf_command *cmd, const char *agent_name,
			const char *agent_groups)
{
	for (size_t i = 0; i < cmd->n_targets; i++) {
		const char *t = cmd->targets[i];

		if (strncmp(t, "agent:", 6) == 0 && strcmp(t + 6, agent_name) == 0)
			return true;
		if (strncmp(t, "group:", 6) == 0 && in_groups(agent_groups, t + 6))
			return true;
	}
	return false;
}

/* agent.manage on the agent's name or on one of its groups? */
static bool may_manage(const cf_perms *perms, const char *agent_name,
		       const char *groups)
{
	if (cf_perms_allows(perms, "agent.manage", agent_name))
		return true;
	for (const char *p = groups; p != NULL && *p != '\0';) {
		size_t len = strcspn(p, ",");
		char name[CF_NAME_MAX_BYTES + 1];
		const char *b = p, *e = p + len;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > b && (size_t)(e - b) < sizeof(name)) {
			memcpy(name, b, (size_t)(e - b));
			name[e - b] = '\0';
			if (cf_perms_allows(perms, "agent.manage", name))
				return true;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return false;
}

cf_status cf_command_check(const cf_command *cmd, X509 *signer,
			   const char *agent_name, const char *agent_groups,
			   int64_t now, cf_error *err)
{
	char cn[256];
	cf_perms *perms = NULL;
	cf_kind kind = cf_cert_kind(signer);
	bool ok;

	cf_cert_cn(signer, cn, sizeof(cn));
	if (kind != CF_KIND_OPERATOR)
		return cf_error_set(err, CF_ERR_PERMISSION,
			"command %s was signed by \"%s\", of kind %s; only "
			"operators may command agents", cmd->id, cn,
			cf_kind_name(kind));
	if (cf_cert_perms(signer, &perms, NULL) != CF_OK)
		return cf_error_set(err, CF_ERR_PERMISSION,
			"command %s: signer \"%s\" has unreadable permissions",
			cmd->id, cn);
	ok = may_manage(perms, agent_name, agent_groups);
	cf_perms_free(perms);
	if (!ok)
		return cf_error_set(err, CF_ERR_PERMISSION,
			"command %s: signer \"%s\" does not hold agent.manage "
			"on agent %s or on any of its groups (%s)", cmd->id, cn,
			agent_name, agent_groups && *agent_groups ?
			agent_groups : "none");
	if (!cf_command_targets(cmd, agent_name, agent_groups))
		return cf_error_set(err, CF_ERR_NAME,
			"command %s does not name agent %s or any of its "
			"groups as a target", cmd->id, agent_name);
	if (now > cmd->expires)
		return cf_error_set(err, CF_ERR_EXPIRED,
			"command %s expired %lld s before it reached agent %s",
			cmd->id, (long long)(now - cmd->expires), agent_name);
	if (cmd->issued > now + CF_CMD_SKEW)
		return cf_error_set(err, CF_ERR_EXPIRED,
			"command %s is issued %lld s in the future of agent "
			"%s's clock; check both clocks", cmd->id,
			(long long)(cmd->issued - now), agent_name);
	return CF_OK;
}

cf_status cf_command_unseal(const unsigned char *der, size_t der_len,
			    X509 *cert, EVP_PKEY *key, const cf_trust *trust,
			    cf_command **out, X509 **signer_out, cf_error *err)
{
	cf_secret *signed_der = NULL, *json = NULL;
	STACK_OF(X509) *certs = NULL;
	X509 *signer = NULL;
	cf_command *cmd = NULL;
	cf_status rc;

	*out = NULL;
	*signer_out = NULL;
	if ((rc = cf_pki_init(err)) != CF_OK)
		return rc;
	rc = cf_envelope_decrypt(der, der_len, cert, key, &signed_der, err);
	if (rc != CF_OK)
		goto out;
	rc = cf_envelope_check_signature_as(signed_der, cf_nid_command(), &json,
					    &signer, &certs, err);
	if (rc != CF_OK)
		goto out;
	rc = cf_trust_verify(trust, signer, certs, "the command's signer", err);
	if (rc != CF_OK)
		goto out;
	rc = cf_command_parse(cf_secret_cdata(json), cf_secret_len(json), &cmd,
			      err);
	if (rc != CF_OK)
		goto out;
	if (strcmp(cmd->tenant, cf_trust_tenant(trust)) != 0) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"command %s belongs to another organisation (tenant "
			"%.16s...)", cmd->id, cmd->tenant);
		goto out;
	}
	*out = cmd;
	cmd = NULL;
	*signer_out = signer;
	signer = NULL;
out:
	cf_command_free(cmd);
	X509_free(signer);
	sk_X509_pop_free(certs, X509_free);
	cf_secret_free(json);
	cf_secret_free(signed_der);
	return rc;
}

/* ---- results --------------------------------------------------------------- */

static const char *const status_names[] = {
	[CF_RESULT_OK] = "ok", [CF_RESULT_FAILED] = "failed",
	[CF_RESULT_REFUSED] = "refused",
};

const char *cf_result_status_name(cf_result_status status)
{
	if ((size_t)status >= sizeof(status_names) / sizeof(status_names[0]))
		return "unknown";
	return status_names[status];
}

cf_cmd_result *cf_cmd_result_new(void)
{
	cf_cmd_result *res = OPENSSL_zalloc(sizeof(cf_cmd_result));

	if (res != NULL)
		res->exit_code = -1;
	return res;
}

void cf_cmd_result_free(cf_cmd_result *res)
{
	if (res == NULL)
		return;
	if (res->reason != NULL)
		OPENSSL_clear_free(res->reason, strlen(res->reason) + 1);
	OPENSSL_clear_free(res->out, res->out_len);
	OPENSSL_clear_free(res->err_out, res->err_len);
	OPENSSL_clear_free(res, sizeof(*res));
}

cf_status cf_cmd_result_set_reason(cf_cmd_result *res, const char *reason,
				   cf_error *err)
{
	size_t len = strnlen(reason, CF_CMD_REASON_MAX);
	char *copy = OPENSSL_malloc(len + 1);

	if (copy == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	memcpy(copy, reason, len);
	copy[len] = '\0';
	if (res->reason != NULL)
		OPENSSL_clear_free(res->reason, strlen(res->reason) + 1);
	res->reason = copy;
	return CF_OK;
}

cf_status cf_cmd_result_set_output(cf_cmd_result *res, int which_stderr,
				   const unsigned char *buf, size_t len,
				   bool cut, cf_error *err)
{
	unsigned char **dst = which_stderr ? &res->err_out : &res->out;
	size_t *dlen = which_stderr ? &res->err_len : &res->out_len;
	bool *dcut = which_stderr ? &res->err_cut : &res->out_cut;
	unsigned char *copy;

	if (len > CF_CMD_OUTPUT_MAX) {
		len = CF_CMD_OUTPUT_MAX;
		cut = true;
	}
	copy = OPENSSL_malloc(len ? len : 1);
	if (copy == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	if (len)
		memcpy(copy, buf, len);
	OPENSSL_clear_free(*dst, *dlen);
	*dst = copy;
	*dlen = len;
	*dcut = cut;
	return CF_OK;
}

/* base64 of len bytes as a new JSON string (NULL: out of memory). */
static json_t *b64_json(const unsigned char *buf, size_t len)
{
	size_t cap = cf_b64_encoded_len(len) + 1;
	char *text = OPENSSL_malloc(cap);
	json_t *s = NULL;

	if (text != NULL &&
	    cf_b64_encode(buf, len, text, cap, NULL, NULL) == CF_OK)
		s = json_stringn(text, cap - 1);
	OPENSSL_clear_free(text, cap);
	return s;
}

cf_status cf_cmd_result_encode(const cf_cmd_result *res, cf_secret **json,
			       cf_error *err)
{
	json_t *obj;
	cf_status rc;

	*json = NULL;
	if (!is_hex(res->tenant, 64) || !cf_command_id_valid(res->id) ||
	    res->agent[0] == '\0' ||
	    (size_t)res->status >= sizeof(status_names) / sizeof(status_names[0]) ||
	    res->out_len > CF_CMD_OUTPUT_MAX || res->err_len > CF_CMD_OUTPUT_MAX)
		return cf_error_set(err, CF_ERR_USAGE,
				    "a command result needs a tenant, an id, "
				    "an agent and a status");
	obj = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:b,s:s,s:o,s:b,"
			"s:o,s:b,s:I,s:I,s:I}", "v", 1, "tenant", res->tenant,
		"id", res->id, "agent", res->agent, "status",
		status_names[res->status], "code", res->code,
		"exit", res->exit_code, "signal", res->signal,
		"timed_out", res->timed_out, "reason",
		res->reason ? res->reason : "",
		"stdout", b64_json(res->out, res->out_len),
		"stdout_cut", res->out_cut,
		"stderr", b64_json(res->err_out, res->err_len),
		"stderr_cut", res->err_cut,
		"received", (json_int_t)res->received,
		"started", (json_int_t)res->started,
		"finished", (json_int_t)res->finished);
	if (obj == NULL)
		return cf_error_set(err, CF_ERR_NOMEM,
				    "could not build the command result");
	rc = dump_secret(obj, "command result", json, err);
	json_decref(obj);
	return rc;
}

static const char *const result_keys[] = {
	"v", "tenant", "id", "agent", "status", "code", "exit", "signal",
	"timed_out", "reason", "stdout", "stdout_cut", "stderr", "stderr_cut",
	"received", "started", "finished",
};

static cf_status get_output(json_t *obj, const char *key,
			    unsigned char **out, size_t *len, cf_error *err)
{
	const char *text = get_str(obj, key, cf_b64_encoded_len(CF_CMD_OUTPUT_MAX));
	unsigned char *buf = NULL;
	cf_status rc;

	if (text == NULL)
		return cf_error_set(err, CF_ERR_RECORD,
			"command result %s is missing or too long", key);
	rc = cf_b64_decode(text, strlen(text), CF_CMD_OUTPUT_MAX, key, &buf, len,
			   NULL);
	if (rc == CF_ERR_NOMEM)
		return cf_error_set(err, rc, "out of memory");
	if (rc != CF_OK)
		return cf_error_set(err, CF_ERR_RECORD,
			"command result %s is not valid base64", key);
	*out = buf;
	return CF_OK;
}

cf_status cf_cmd_result_parse(const unsigned char *json, size_t len,
			      cf_cmd_result **out, cf_error *err)
{
	json_t *obj = NULL, *v;
	cf_cmd_result *res = NULL;
	const char *tenant, *id, *agent, *status, *code, *reason;
	size_t i;
	cf_status rc;

	*out = NULL;
	rc = load_object(json, len, CF_RESULT_RECORD_MAX, "command result",
			 result_keys, sizeof(result_keys) / sizeof(result_keys[0]),
			 &obj, err);
	if (rc != CF_OK)
		return rc;
	if ((res = cf_cmd_result_new()) == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	tenant = get_str(obj, "tenant", 64);
	id = get_str(obj, "id", CF_CMD_ID_LEN);
	agent = get_str(obj, "agent", sizeof(res->agent) - 1);
	status = get_str(obj, "status", 16);
	code = get_str(obj, "code", sizeof(res->code) - 1);
	reason = get_str(obj, "reason", CF_CMD_REASON_MAX);
	if (tenant == NULL || !is_hex(tenant, 64) || id == NULL ||
	    !cf_command_id_valid(id) || agent == NULL || agent[0] == '\0' ||
	    status == NULL || code == NULL || reason == NULL) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"command result tenant, id, agent, status, code or "
			"reason is missing or invalid");
		goto out;
	}
	for (i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++)
		if (strcmp(status_names[i], status) == 0)
			break;
	if (i == sizeof(status_names) / sizeof(status_names[0])) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"command result status is not ok, failed or refused");
		goto out;
	}
	res->status = (cf_result_status)i;
	memcpy(res->tenant, tenant, 65);
	memcpy(res->id, id, CF_CMD_ID_LEN + 1);
	snprintf(res->agent, sizeof(res->agent), "%s", agent);
	snprintf(res->code, sizeof(res->code), "%s", code);
	if ((rc = cf_cmd_result_set_reason(res, reason, err)) != CF_OK)
		goto out;
	v = json_object_get(obj, "exit");
	if (!json_is_integer(v) || json_integer_value(v) < -1 ||
	    json_integer_value(v) > 255) {
		rc = cf_error_set(err, CF_ERR_RECORD,
				  "command result exit is not -1..255");
		goto out;
	}
	res->exit_code = (int)json_integer_value(v);
	v = json_object_get(obj, "signal");
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > 128) {
		rc = cf_error_set(err, CF_ERR_RECORD,
				  "command result signal is not 0..128");
		goto out;
	}
	res->signal = (int)json_integer_value(v);
	if (!get_bool(obj, "timed_out", &res->timed_out) ||
	    !get_bool(obj, "stdout_cut", &res->out_cut) ||
	    !get_bool(obj, "stderr_cut", &res->err_cut) ||
	    !get_time(obj, "received", &res->received) ||
	    !get_time(obj, "started", &res->started) ||
	    !get_time(obj, "finished", &res->finished)) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"command result flags or times are missing or invalid");
		goto out;
	}
	if ((rc = get_output(obj, "stdout", &res->out, &res->out_len, err)) !=
		    CF_OK ||
	    (rc = get_output(obj, "stderr", &res->err_out, &res->err_len,
			     err)) != CF_OK)
		goto out;
	*out = res;
	res = NULL;
out:
	cf_cmd_result_free(res);
	json_decref(obj);
	return rc;
}

cf_status cf_cmd_result_open(const unsigned char *der, size_t der_len,
			     X509 *cert, EVP_PKEY *key, const cf_trust *trust,
			     const char *id, const char *agent_fp,
			     cf_cmd_result **out, cf_error *err)
{
	cf_secret *signed_der = NULL, *json = NULL;
	STACK_OF(X509) *certs = NULL;
	X509 *signer = NULL;
	cf_cmd_result *res = NULL;
	char cn[256], fp[65];
	cf_status rc;

	*out = NULL;
	if ((rc = cf_pki_init(err)) != CF_OK)
		return rc;
	rc = cf_envelope_decrypt(der, der_len, cert, key, &signed_der, err);
	if (rc != CF_OK)
		goto out;
	rc = cf_envelope_check_signature_as(signed_der, cf_nid_result(), &json,
					    &signer, &certs, err);
	if (rc != CF_OK)
		goto out;
	rc = cf_trust_verify(trust, signer, certs, "the result's signer", err);
	if (rc != CF_OK)
		goto out;
	cf_cert_cn(signer, cn, sizeof(cn));
	if (cf_cert_kind(signer) != CF_KIND_AGENT) {
		rc = cf_error_set(err, CF_ERR_PERMISSION,
			"the result was signed by \"%s\", of kind %s, not by "
			"an agent", cn, cf_kind_name(cf_cert_kind(signer)));
		goto out;
	}
	if ((rc = cf_cert_fingerprint(signer, fp, err)) != CF_OK)
		goto out;
	if (agent_fp != NULL && strcmp(fp, agent_fp) != 0) {
		rc = cf_error_set(err, CF_ERR_NAME,
			"the result was signed by agent \"%s\" (%.16s...), not "
			"by the agent the command was sent to (%.16s...)", cn,
			fp, agent_fp);
		goto out;
	}
	rc = cf_cmd_result_parse(cf_secret_cdata(json), cf_secret_len(json),
				 &res, err);
	if (rc != CF_OK)
		goto out;
	if (strcmp(res->tenant, cf_trust_tenant(trust)) != 0) {
		rc = cf_error_set(err, CF_ERR_RECORD,
			"the result belongs to another organisation");
		goto out;
	}
	if (strcmp(res->id, id) != 0) {
		rc = cf_error_set(err, CF_ERR_NAME,
			"the result answers command %s, not %s: it was swapped",
			res->id, id);
		goto out;
	}
	if (strcmp(res->agent, cn) != 0) {
		rc = cf_error_set(err, CF_ERR_NAME,
			"the result names agent \"%s\" but was signed by \"%s\"",
			res->agent, cn);
		goto out;
	}
	*out = res;
	res = NULL;
out:
	cf_cmd_result_free(res);
	X509_free(signer);
	sk_X509_pop_free(certs, X509_free);
	cf_secret_free(json);
	cf_secret_free(signed_der);
	return rc;
}
