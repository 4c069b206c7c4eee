/*
 * main.c - the coffer program: a table of subcommand groups.
 *
 * Each group lives in its own file and exports cmd_<group>(argc, argv)
 * with argv[0] the group name.  main sets up what every command needs
 * (the secure heap, no core dumps, coffer's OIDs) and dispatches.
 */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "pki.h"

#ifndef COFFER_VERSION
#define COFFER_VERSION "0.1.0"
#endif

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "ca", cmd_ca, "create the organisation's root CA; revoke certificates" },
	{ "key", cmd_key, "make a P-256 private key" },
	{ "csr", cmd_csr, "make a certificate request for a key" },
	{ "cert", cmd_cert, "issue certificates (operator, enroller, agent, cluster); show one" },
	{ "crl", cmd_crl, "show a certificate revocation list; push it to the server" },
	{ "seal", cmd_seal, "sign a secret and encrypt it to recipients' certificates" },
	{ "open", cmd_open, "decrypt and verify an envelope; print the secret" },
	{ "server", cmd_server, "set up and run the coffer server; register tenants" },
	{ "token", cmd_token, "create, list and revoke agent join tokens" },
	{ "agent", cmd_agent, "enroll agents; run the agent daemon, one sync, or a command with secrets" },
	{ "put", cmd_put, "encrypt a secret to agents and groups and upload it" },
	{ "get", cmd_get, "fetch and open your own envelope of a secret" },
	{ "ls", cmd_ls, "list secrets on the server" },
	{ "history", cmd_history, "list the versions of a secret" },
	{ "rm", cmd_rm, "delete a secret on the server" },
	{ "sync", cmd_sync, "extend the secrets you wrote to groups to their current members" },
	{ "cluster", cmd_cluster, "clusters of agents sharing one key: create, add, export, rotate" },
	{ "rotate", cmd_rotate, "new versions without removed recipients; purge their envelopes" },
	{ "audit", cmd_audit, "read the server's audit log; verify its hash chain" },
	{ "cmd", cmd_cmd, "send a signed command to agents; read their answers" },
	{ "status", cmd_status, "which agents applied, are behind on or failed each secret; exposed envelopes" },
	{ "quickstart", cmd_quickstart, "run the whole system here: CA, server, two agents, a rotation" },
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: coffer COMMAND [ARGS]...\n"
		"\n"
		"coffer distributes secrets end to end encrypted on your own PKI.\n"
		"\n"
		"Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out,
		"\n"
		"'coffer COMMAND --help' describes a command; 'coffer --version'\n"
		"prints the version.  Exit codes are listed in docs/EXIT-CODES.md;\n"
		"errors go to stderr prefixed 'coffer:'.\n");
}

int main(int argc, char **argv)
{
	struct rlimit no_core = { 0, 0 };
	cf_error err = { 0 };

	/* Secrets may be in memory: never let them reach a core file. */
	(void)setrlimit(RLIMIT_CORE, &no_core);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("coffer %s\n", COFFER_VERSION);
		return 0;
	}
	if (cf_secmem_init(0, NULL, &err) != CF_OK || cf_pki_init(&err) != CF_OK)
		return cli_fail(&err);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "coffer: unknown command \"%s\"; see 'coffer --help'\n",
		argv[1]);
	return 2;
}
