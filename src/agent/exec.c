/*
 * exec.c - `coffer agent exec`: runs a command with secrets in its
 * environment (--env VAR=NAME) or in memfds (--file-env VAR=NAME: VAR
 * holds /proc/self/fd/N, a sealed in-memory file, so the secret never
 * touches a disk).  docs/AGENT.md "exec".
 *
 * Each secret is the server's copy of this agent's envelope when the
 * server can be reached (not with --offline) and it verifies at or above
 * the version the agent accepted; else the state dir's cached one, with
 * a warning.  exec only reads the state dir (`agent run` owns it), so the
 * two can run side by side.  The environment block is built in
 * secure memory and handed to execve, which replaces this process: the
 * plaintext then lives only in the command.
 */
#include "agent.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "policy.h"
#include "runtime.h"

#define MAX_MAPPINGS 256

extern char **environ;

struct mapping {
	const char *var;        /* points into argv */
	size_t var_len;
	const char *name;
	int as_file;
};

static void exec_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer agent exec --state-dir D [--env VAR=NAME]... [--file-env VAR=NAME]...\n"
		"                         [--config F] [--offline] -- CMD [ARGS...]\n"
		"\n"
		"Runs CMD (searched in PATH) in place of this process with secrets\n"
		"handed to it:\n"
		"  --env VAR=NAME       the value of secret NAME in environment variable\n"
		"                       VAR (the value may not contain a NUL byte)\n"
		"  --file-env VAR=NAME  the value in a sealed memfd; VAR holds its path,\n"
		"                       /proc/self/fd/N, valid in CMD (and children it\n"
		"                       passes the descriptor to).  Never on a disk.\n"
		"  --config F           the agent config, for its [server] section\n"
		"                       (default: what 'agent join' recorded in D)\n"
		"  --offline            do not ask the server; use the cached versions\n"
		"\n"
		"Each secret is this agent's envelope fetched from the server, or, when\n"
		"the server cannot be reached (or with --offline), the one cached in D\n"
		"(a warning says so).  Every secret is verified (signer, root, CRL,\n"
		"name, not below the version the agent accepted) first.  D is only\n"
		"read, so exec may run beside 'agent run'.  Exit\n"
		"codes: CMD's own once it runs; 9 for a secret this agent does not\n"
		"have; 3 when CMD cannot be started.\n");
}

static int var_valid(const char *var, size_t len)
{
	if (len == 0 || len > 128 || isdigit((unsigned char)var[0]))
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)var[i]) && var[i] != '_')
			return 0;
	return 1;
}

static int parse_mapping(const char *arg, int as_file, struct mapping *m)
{
	const char *eq = strchr(arg, '=');

	if (eq == NULL || !var_valid(arg, (size_t)(eq - arg)) ||
	    cf_name_check("secret name", eq + 1, NULL) != CF_OK)
		return -1;
	m->var = arg;
	m->var_len = (size_t)(eq - arg);
	m->name = eq + 1;
	m->as_file = as_file;
	return 0;
}

/* A sealed memfd holding value, left open (not close-on-exec) for CMD. */
static cf_status make_memfd(const struct mapping *m, const cf_secret *value,
			    int *fd_out, cf_error *err)
{
	const unsigned char *p = cf_secret_cdata(value);
	size_t left = cf_secret_len(value);
	char label[64];
	int fd;

	snprintf(label, sizeof(label), "coffer:%.*s", (int)m->var_len, m->var);
	fd = memfd_create(label, MFD_ALLOW_SEALING);
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "memfd_create for %.*s: %s",
				    (int)m->var_len, m->var, strerror(errno));
	while (left > 0) {
		ssize_t n = write(fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			return cf_error_set(err, CF_ERR_IO, "writing the memfd for "
					    "%.*s: %s", (int)m->var_len, m->var,
					    strerror(errno));
		}
		p += n;
		left -= (size_t)n;
	}
	/* CMD may read it, never change it. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
		  F_SEAL_SEAL) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return cf_error_set(err, CF_ERR_IO, "sealing the memfd for %.*s: "
				    "%s", (int)m->var_len, m->var,
				    strerror(errno));
	}
	*fd_out = fd;
	return CF_OK;
}

/* "VAR=" + bytes into a new secret, NUL-terminated. */
static cf_secret *env_entry(const struct mapping *m, const void *bytes,
			    size_t len)
{
	cf_secret *s = cf_secret_new(m->var_len + 1 + len + 1);

	if (s == NULL)
		return NULL;
	if (cf_secret_append(s, m->var, m->var_len, NULL) != CF_OK ||
	    cf_secret_append(s, "=", 1, NULL) != CF_OK ||
	    cf_secret_append(s, bytes, len, NULL) != CF_OK) {
		cf_secret_free(s);
		return NULL;
	}
	cf_secret_data(s)[cf_secret_len(s)] = '\0';
	return s;
}

/* Whether environment entry e sets one of the mapped variables. */
static int overridden(const char *e, const struct mapping *maps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strncmp(e, maps[i].var, maps[i].var_len) == 0 &&
		    e[maps[i].var_len] == '=')
			return 1;
	return 0;
}

/*
 * The newest verified version of name: the server's copy of our envelope
 * (GET /v1/secrets/envelope) when it can be had and verifies at or above
 * the version the agent accepted, else the cached one.  *use_server is
 * cleared when the server cannot be reached, so it is asked once.
 */
static cf_status newest(ag_runtime *rt, const char *name, int *use_server,
			cf_record **out, cf_error *err)
{
	char path[64 + 3 * CF_NAME_MAX_BYTES];
	char *escaped = NULL;
	json_t *resp = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error why = { 0 };
	cf_status rc;

	*out = NULL;
	if (!*use_server)
		goto cached;
	escaped = cli_client_escape(name);
	if (escaped == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	snprintf(path, sizeof(path), "/v1/secrets/envelope?name=%s", escaped);
	free(escaped);
	rc = cli_client_call(rt->client, "GET", path, NULL, &resp, &why);
	if (rc == CF_OK)
		rc = cli_b64_decode(json_string_value(json_object_get(resp,
				    "envelope")), "an envelope", &der, &len, &why);
	if (rc == CF_OK)
		rc = cf_envelope_open(der, len, rt->cert, rt->key, rt->trust,
				      name, ag_state_version(rt->st, name), out,
				      NULL, &why);
	OPENSSL_free(der);
	json_decref(resp);
	if (rc == CF_OK)
		return CF_OK;
	if (rc == CF_ERR_NETWORK) {
		*use_server = 0;
		ag_log(AG_LOG_WARN, "%s; using the versions cached in %s", why.msg,
		       ag_state_dir(rt->st));
	} else if (rc == CF_ERR_NOT_FOUND &&
		   ag_state_version(rt->st, name) == 0) {
		/* Neither the server nor the cache has it: say it once. */
		return cf_error_set(err, rc, "%s", why.msg);
	} else if (rc == CF_ERR_NOT_FOUND || rc == CF_ERR_DENIED) {
		ag_log(AG_LOG_WARN, "%s; using the cached version", why.msg);
	} else {
		ag_log(AG_LOG_ERROR, "refused %s from the server: %s; using the "
		       "cached version", name, why.msg);
	}
cached:
	return ag_open_cached(rt, name, out, err);
}

int ag_cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "env", required_argument, NULL, 'e' },
		{ "file-env", required_argument, NULL, 'f' },
		{ "config", required_argument, NULL, 'c' },
		{ "offline", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct mapping maps[MAX_MAPPINGS];
	cf_secret *entries[MAX_MAPPINGS] = { 0 };
	size_t n_maps = 0, n_env = 0;
	const char *dir = NULL, *config = NULL;
	ag_config *cfg = NULL;
	ag_runtime *rt = NULL;
	char **envp = NULL;
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	int ch, offline = 0, use_server, code;

	optind = 1;
	/* "+": options stop at the first non-option (CMD's own flags). */
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'c': config = optarg; break;
		case 'o': offline = 1; break;
		case 'e':
		case 'f':
			if (n_maps == MAX_MAPPINGS)
				return cli_usage("agent exec", "at most %d --env and "
						 "--file-env", MAX_MAPPINGS);
			if (parse_mapping(optarg, ch == 'f', &maps[n_maps]) != 0)
				return cli_usage("agent exec", "--%s takes VAR=NAME "
					"(VAR letters, digits and _; NAME a secret "
					"name), not \"%s\"", ch == 'f' ? "file-env" :
					"env", optarg);
			n_maps++;
			break;
		case 'h': exec_usage(stdout); return 0;
		default: return cli_bad_option("agent exec");
		}
	}
	if (dir == NULL)
		return cli_usage("agent exec", "--state-dir is required");
	if (optind >= argc)
		return cli_usage("agent exec", "no command: give it after --");
	ag_harden();
	if (config != NULL)
		rc = ag_config_load(config, &cfg, &err);
	if (rc == CF_OK)
		rc = ag_runtime_new(dir, cfg ? cfg->server_url : NULL,
				    cfg ? cfg->server_ca : NULL,
				    cfg ? cfg->root : NULL, offline, &rt, &err);
	if (rc != CF_OK)
		goto fail;
	rt->read_only = 1;
	use_server = !offline;
	if (use_server) {
		cf_error why = { 0 };

		if (ag_refresh_crl(rt, &why) != CF_OK) {
			ag_log(AG_LOG_WARN, "%s; using the versions cached in %s",
			       why.msg, dir);
			use_server = 0;
		}
	}
	for (size_t i = 0; i < n_maps; i++) {
		cf_record *rec = NULL;
		const cf_secret *v;
		char path[64];
		int fd = -1;

		rc = newest(rt, maps[i].name, &use_server, &rec, &err);
		if (rc != CF_OK)
			goto fail;
		v = rec->value;
		if (maps[i].as_file) {
			rc = make_memfd(&maps[i], v, &fd, &err);
			if (rc == CF_OK) {
				snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
				entries[n_env] = env_entry(&maps[i], path,
							   strlen(path));
			}
		} else if (memchr(cf_secret_cdata(v), '\0',
				  cf_secret_len(v)) != NULL) {
			rc = cf_error_set(&err, CF_ERR_USAGE, "%s holds a NUL byte "
				"and cannot be an environment variable; use "
				"--file-env %.*s=%s", maps[i].name,
				(int)maps[i].var_len, maps[i].var, maps[i].name);
		} else {
			entries[n_env] = env_entry(&maps[i], cf_secret_cdata(v),
						   cf_secret_len(v));
		}
		cf_record_free(rec);
		if (rc == CF_OK && entries[n_env] == NULL)
			rc = cf_error_set(&err, CF_ERR_NOMEM, "out of secure memory");
		if (rc != CF_OK)
			goto fail;
		n_env++;
	}
	{
		size_t n_environ = 0, k = 0;

		while (environ[n_environ] != NULL)
			n_environ++;
		envp = OPENSSL_zalloc((n_environ + n_env + 1) * sizeof(*envp));
		if (envp == NULL) {
			rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
			goto fail;
		}
		for (size_t i = 0; i < n_environ; i++)
			if (!overridden(environ[i], maps, n_maps))
				envp[k++] = environ[i];
		for (size_t i = 0; i < n_env; i++)
			envp[k++] = (char *)cf_secret_data(entries[i]);
		envp[k] = NULL;
	}
	ag_runtime_free(rt);
	rt = NULL;
	ag_config_free(cfg);
	cfg = NULL;
	fflush(NULL);
	execvpe(argv[optind], argv + optind, envp);
	rc = cf_error_set(&err, CF_ERR_IO, "cannot run %s: %s", argv[optind],
			  strerror(errno));
fail:
	code = cli_fail(&err);
	for (size_t i = 0; i < n_env; i++)
		cf_secret_free(entries[i]);
	OPENSSL_free(envp);
	ag_runtime_free(rt);
	ag_config_free(cfg);
	return code;
}
