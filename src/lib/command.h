/*
 * command.h - operator-to-agent commands and their results (DESIGN 2,
 * docs/COMMANDS.md).
 *
 * A command is a signed record, sealed to each target agent exactly as a
 * secret is (envelope.h), with its own eContentType (CF_OID_COMMAND):
 *   {"v":1,"tenant":ROOT_FP,"id":ID,"action":NAME,"args":[...],
 *    "issued":UNIX,"expires":UNIX,"targets":["agent:NAME","group:G",...]}
 * The agent answers with a result record signed by its own key, sealed
 * to the command's signer (CF_OID_RESULT):
 *   {"v":1,"tenant":ROOT_FP,"id":ID,"agent":CN,"status":"ok|failed|refused",
 *    "code":STATUS_NAME,"exit":N,"signal":N,"timed_out":BOOL,"reason":TEXT,
 *    "stdout":BASE64,"stdout_cut":BOOL,"stderr":BASE64,"stderr_cut":BOOL,
 *    "received":UNIX,"started":UNIX,"finished":UNIX}
 * Field names are the contract.  Both parsers are for outside input:
 * bounded, strict (unknown or duplicate keys refused), every field
 * checked.
 *
 * What this module decides is what the records say and who signed them;
 * what an agent runs (its [action] configuration) and which ids it has
 * seen (its state directory) are the agent's, not the library's.
 */
#ifndef CF_COMMAND_H
#define CF_COMMAND_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"
#include "trust.h"

#define CF_CMD_ID_LEN 32          /* hex characters of a command id */
#define CF_CMD_ACTION_MAX 64      /* bytes of an action name */
#define CF_CMD_ARGS_MAX 64        /* arguments of one command */
#define CF_CMD_ARG_MAX 4096       /* bytes of one argument */
#define CF_CMD_TARGETS_MAX 256    /* target specs of one command */
#define CF_CMD_OUTPUT_MAX 65536   /* bytes kept of stdout, and of stderr */
#define CF_CMD_REASON_MAX 1024    /* bytes of a result's reason */
#define CF_CMD_SKEW 300           /* seconds an issue time may lie ahead */
#define CF_CMD_LIFETIME_MAX (7 * 86400) /* expires - issued, at most */
/* Largest records accepted, before any JSON parsing. */
#define CF_CMD_RECORD_MAX (512u * 1024u)
#define CF_RESULT_RECORD_MAX (256u * 1024u)

typedef struct cf_command {
	char tenant[65];
	char id[CF_CMD_ID_LEN + 1];
	char action[CF_CMD_ACTION_MAX + 1];
	char **args;             /* n_args NUL-terminated strings */
	size_t n_args;
	char **targets;          /* "agent:NAME" or "group:NAME" */
	size_t n_targets;
	int64_t issued;
	int64_t expires;
} cf_command;

typedef enum cf_result_status {
	CF_RESULT_OK = 0,        /* ran and exited 0 */
	CF_RESULT_FAILED,        /* ran: non-zero exit, signal or timeout */
	CF_RESULT_REFUSED,       /* did not run; reason says why */
} cf_result_status;

typedef struct cf_cmd_result {
	char tenant[65];
	char id[CF_CMD_ID_LEN + 1];
	char agent[256];         /* the answering agent's CN */
	cf_result_status status;
	char code[32];           /* a refusal's status name (CF_ERR_...), or "" */
	int exit_code;           /* -1 when it did not exit normally */
	int signal;              /* 0 unless a signal ended it */
	bool timed_out;
	char *reason;            /* "" when there is nothing to say */
	unsigned char *out;      /* stdout, out_len bytes */
	size_t out_len;
	bool out_cut;            /* more than CF_CMD_OUTPUT_MAX was written */
	unsigned char *err_out;  /* stderr */
	size_t err_len;
	bool err_cut;
	int64_t received, started, finished;
} cf_cmd_result;

/* A fresh random command id (CF_CMD_ID_LEN lowercase hex). */
cf_status cf_command_id_new(char id[CF_CMD_ID_LEN + 1], cf_error *err);
/* True if s is a well-formed command id. */
bool cf_command_id_valid(const char *s);

/* Action names: 1..64 bytes of [a-z0-9._-], starting with a letter or digit. */
cf_status cf_action_name_check(const char *name, cf_error *err);

/* Target specs: "agent:NAME" or "group:NAME" with NAME per cf_name_check. */
cf_status cf_command_target_check(const char *spec, cf_error *err);

cf_command *cf_command_new(void);
void cf_command_free(cf_command *cmd);
/* Appends a copy of s to the args (or targets); checks count and size. */
cf_status cf_command_add_arg(cf_command *cmd, const char *s, cf_error *err);
cf_status cf_command_add_target(cf_command *cmd, const char *spec,
				cf_error *err);

/* Compact JSON of cmd into secure memory; every field validated. */
cf_status cf_command_encode(const cf_command *cmd, cf_secret **json,
			    cf_error *err);
/* Strict parse of a command record (outside input); CF_ERR_RECORD. */
cf_status cf_command_parse(const unsigned char *json, size_t len,
			   cf_command **out, cf_error *err);

/*
 * The first half of receiving a command: decrypts the envelope addressed
 * to (cert, key), checks the signature (content type command), the
 * signer's chain to trust's root and the CRL, parses the record and
 * checks its tenant.  Only after this may an agent answer at all: the
 * answer is sealed to *signer.  Refusals as cf_envelope_open's.
 */
cf_status cf_command_unseal(const unsigned char *der, size_t der_len,
			    X509 *cert, EVP_PKEY *key, const cf_trust *trust,
			    cf_command **out, X509 **signer, cf_error *err);

/*
 * The second half: may this agent act on cmd at time now?  The signer
 * must be an operator holding agent.manage on the agent's name or on one
 * of its groups (a comma-separated list, may be NULL), the agent must be
 * among the targets (agent:NAME or group:G of one of its groups), and now
 * must lie within [issued - CF_CMD_SKEW, expires].  Refusals:
 * CF_ERR_PERMISSION, CF_ERR_NAME (not a target), CF_ERR_EXPIRED, with a
 * sentence the operator reads in the refusal.
 */
cf_status cf_command_check(const cf_command *cmd, X509 *signer,
			   const char *agent_name, const char *agent_groups,
			   int64_t now, cf_error *err);

/* True if the agent (name, comma-separated groups) is one of the targets. */
bool cf_command_targets(const cf_command *cmd, const char *agent_name,
			const char *agent_groups);

cf_cmd_result *cf_cmd_result_new(void);
void cf_cmd_result_free(cf_cmd_result *res);
const char *cf_result_status_name(cf_result_status status);
/* Copies text (reason) or bytes (outputs) into res; bounded, cut marked. */
cf_status cf_cmd_result_set_reason(cf_cmd_result *res, const char *reason,
				   cf_error *err);
cf_status cf_cmd_result_set_output(cf_cmd_result *res, int which_stderr,
				   const unsigned char *buf, size_t len,
				   bool cut, cf_error *err);

cf_status cf_cmd_result_encode(const cf_cmd_result *res, cf_secret **json,
			       cf_error *err);
cf_status cf_cmd_result_parse(const unsigned char *json, size_t len,
			      cf_cmd_result **out, cf_error *err);

/*
 * Opens a result addressed to the operator (cert, key): decrypts, checks
 * the signature (content type result) and the signer's chain, parses,
 * and checks the tenant, that the record answers command id, that the
 * signer is an agent whose CN is the record's agent, and, when
 * agent_fp is not NULL, that the signer's fingerprint is agent_fp (the
 * agent the command was sealed to).  Refusals as cf_envelope_open's, and
 * CF_ERR_NAME for an answer to another command or from another agent.
 */
cf_status cf_cmd_result_open(const unsigned char *der, size_t der_len,
			     X509 *cert, EVP_PKEY *key, const cf_trust *trust,
			     const char *id, const char *agent_fp,
			     cf_cmd_result **out, cf_error *err);

#endif
