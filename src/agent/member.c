/*
 * member.c - the agent in a cluster: D/cluster.pem, `coffer agent
 * cluster-join --p12` and `coffer agent cache put|get` (docs/CLUSTERS.md).
 *
 * The cluster key is the agent's second private key, kept exactly like
 * the first (0600 in D, read into secure memory).  Nothing is kept that
 * did not verify: the certificate must be a cluster certificate of this
 * organisation (root, CRL, enroller scope) and the key must be its key.
 * A cache entry is signed with the agent's own key and carries the proof
 * that the agent holds the cluster key, so its readers know which member
 * wrote it and that a member did.
 */
#include "member.h"
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "cli.h"
#include "envelope.h"
#include "log.h"
#include "pki.h"
#include "recipients.h"
#include "runtime.h"
#include "sealing.h"
#include "secrets.h"
#include "sink_file.h"

#define BUNDLE_FILE "cluster.pem"

void ag_member_free(ag_member *m)
{
	if (m == NULL)
		return;
	X509_free(m->cert);
	sk_X509_pop_free(m->chain, X509_free);
	EVP_PKEY_free(m->key);
	OPENSSL_clear_free(m, sizeof(*m));
}

/* A membership from a checked bundle: verified, and the proof made. */
static cf_status member_from(const unsigned char *pem, size_t len,
			     const char *name, const cf_trust *trust,
			     X509 *agent, ag_member **out, cf_error *err)
{
	ag_member *m = OPENSSL_zalloc(sizeof(*m));
	char agent_fp[65], proof[CF_CLUSTER_PROOF_MAX + 1];
	char *cn = NULL;
	cf_status rc;

	*out = NULL;
	if (m == NULL)
		return cf_error_set(err, CF_ERR_NOMEM, "out of memory");
	rc = cf_cluster_bundle_decode(pem, len, name, &m->cert, &m->chain,
				      &m->key, err);
	if (rc == CF_OK)
		rc = cf_trust_verify(trust, m->cert, m->chain,
				     "the cluster certificate", err);
	if (rc == CF_OK)
		rc = cf_cert_ext_text(m->cert, cf_nid_cluster(), &cn, err);
	if (rc == CF_OK && (cn == NULL ||
	    snprintf(m->name, sizeof(m->name), "%s", cn) >= (int)sizeof(m->name)))
		rc = cf_error_set(err, CF_ERR_PARSE, "the cluster certificate "
				  "names no cluster");
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(m->cert, m->fp, err);
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(agent, agent_fp, err);
	if (rc == CF_OK)
		rc = cf_cluster_proof(m->key, cf_trust_tenant(trust), m->fp,
				      agent_fp, proof, err);
	if (rc == CF_OK)
		snprintf(m->header, sizeof(m->header), "%s %s", m->fp, proof);
	OPENSSL_free(cn);
	if (rc != CF_OK) {
		ag_member_free(m);
		return rc;
	}
	*out = m;
	return CF_OK;
}

/* D/cluster.pem into secure memory; *pem NULL if there is none. */
static cf_status read_bundle(const ag_state *st, char *path, size_t size,
			     cf_secret **pem, cf_error *err)
{
	cf_status rc;
	int fd;

	*pem = NULL;
	rc = ag_state_path(st, BUNDLE_FILE, path, size, err);
	if (rc != CF_OK)
		return rc;
	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT)
		return CF_OK;
	if (fd < 0)
		return cf_error_set(err, CF_ERR_IO, "cannot open %s: %s", path,
				    strerror(errno));
	rc = cf_secret_read_fd(fd, CF_CLUSTER_BUNDLE_MAX, path, pem, err);
	close(fd);
	return rc;
}

cf_status ag_member_load(const ag_state *st, const cf_trust *trust,
			 X509 *agent, ag_member **out, cf_error *err)
{
	char path[PATH_MAX];
	cf_secret *pem = NULL;
	cf_status rc;

	*out = NULL;
	rc = read_bundle(st, path, sizeof(path), &pem, err);
	if (rc == CF_OK && pem != NULL)
		rc = member_from(cf_secret_cdata(pem), cf_secret_len(pem), NULL,
				 trust, agent, out, err);
	if (rc != CF_OK && pem != NULL)
		rc = cf_error_set(err, rc, "%s: %s; remove it, or join the "
				  "cluster again ('coffer agent cluster-join')",
				  path, err->msg);
	cf_secret_free(pem);
	return rc;
}

cf_status ag_member_install(const ag_state *st, const cf_trust *trust,
			    X509 *agent, const unsigned char *pem, size_t len,
			    const char *name, int replace, ag_member **out,
			    cf_error *err)
{
	char path[PATH_MAX];
	ag_member *m = NULL, *old = NULL;
	cf_error quiet = { 0 };
	cf_status rc;

	*out = NULL;
	rc = member_from(pem, len, name, trust, agent, &m, err);
	if (rc != CF_OK)
		return rc;
	/* One cluster at a time: another one's key is not swapped in
	 * behind the operator's back. */
	if (!replace && ag_member_load(st, trust, agent, &old, &quiet) == CF_OK &&
	    old != NULL && strcmp(old->name, m->name) != 0) {
		rc = cf_error_set(err, CF_ERR_EXISTS, "this agent is in cluster "
			"\"%s\" already, and an agent is in one cluster at a "
			"time; to move it to \"%s\", run 'coffer agent "
			"cluster-join --replace' with that cluster's file",
			old->name, m->name);
		goto out;
	}
	rc = ag_state_path(st, BUNDLE_FILE, path, sizeof(path), err);
	if (rc == CF_OK)
		rc = ag_file_replace(path, pem, len, 0600, err);
	if (rc == CF_OK) {
		*out = m;
		m = NULL;
	}
out:
	ag_member_free(old);
	ag_member_free(m);
	return rc;
}

/* ------------------------------------------------------- cluster-join */

static void join_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer agent cluster-join --state-dir D --p12 F [--pass-file P]\n"
		"                                 [--replace]\n"
		"\n"
		"Imports a cluster's key from a PKCS#12 file made by 'coffer cluster\n"
		"export' (or by openssl pkcs12 -export with AES-256-CBC, PBKDF2 and a\n"
		"SHA-256 MAC; legacy RC2/3DES files are refused) into D/cluster.pem\n"
		"(0600), after verifying the cluster certificate against the\n"
		"organisation's root and CRL.  A running agent takes it at its next\n"
		"feed request.  The password comes from --pass-file (first line),\n"
		"COFFER_PASSPHRASE, or a prompt.  An agent is in one cluster at a\n"
		"time: --replace leaves another cluster for this one.\n");
}

int ag_cmd_cluster_join(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "p12", required_argument, NULL, 'p' },
		{ "pass-file", required_argument, NULL, 'P' },
		{ "replace", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *dir = NULL, *file = NULL;
	cli_pass pass = { 0 };
	ag_runtime *rt = NULL;
	ag_member *m = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_secret *pw = NULL, *pem = NULL;
	X509 *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	cf_error err = { 0 };
	int replace = 0, ch;
	cf_status rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'p': file = optarg; break;
		case 'P': pass.file = optarg; break;
		case 'r': replace = 1; break;
		case 'h': join_usage(stdout); return 0;
		default: return cli_bad_option("agent cluster-join");
		}
	}
	if (optind != argc)
		return cli_usage("agent cluster-join", "unexpected argument "
				 "\"%s\"", argv[optind]);
	if (dir == NULL || file == NULL)
		return cli_usage("agent cluster-join", "--state-dir and --p12 "
				 "are required");
	ag_harden();
	rc = ag_runtime_new(dir, NULL, NULL, NULL, 1, &rt, &err);
	if (rc == CF_OK)
		rc = cli_read_file(file, CF_CLUSTER_P12_MAX, &der, &len, &err);
	if (rc == CF_OK)
		rc = cli_pass_to_open(&pass, file, &pw, &err);
	if (rc == CF_OK) {
		cf_error why = { 0 };

		rc = cf_cluster_p12_import(der, len, pw, NULL, &cert, &chain,
					   &key, &why);
		if (rc != CF_OK)
			rc = cf_error_set(&err, rc, "%s: %s", file, why.msg);
	}
	if (rc == CF_OK)
		rc = cf_cluster_bundle_encode(cert, chain, key, &pem, &err);
	if (rc == CF_OK)
		rc = ag_member_install(rt->st, rt->trust, rt->cert,
				       cf_secret_cdata(pem), cf_secret_len(pem),
				       NULL, replace, &m, &err);
	if (rc == CF_OK)
		printf("joined cluster \"%s\" (certificate %s); the agent reads "
		       "the cluster's secrets from its next feed request\n",
		       m->name, m->fp);
	ag_member_free(m);
	cf_secret_free(pem);
	cf_secret_free(pw);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	OPENSSL_free(der);
	ag_runtime_free(rt);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

/* -------------------------------------------------------------- cache */

static void cache_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer agent cache put NAME --state-dir D [--file F]\n"
		"                               [--type text|binary] [--json]\n"
		"       coffer agent cache get NAME --state-dir D [--out F]\n"
		"\n"
		"The cluster's shared cache, for its members (docs/CLUSTERS.md).\n"
		"NAME is cluster/CLUSTER/KEY, CLUSTER this agent's cluster.\n"
		"put  signs the value (standard input, or --file) with this agent's\n"
		"     key, with the proof that it holds the cluster key, seals it to\n"
		"     the cluster key only and stores it as the next version.\n"
		"get  fetches the cluster's envelope of NAME, opens it with the\n"
		"     cluster key, verifies who wrote it (a member agent, or an\n"
		"     operator with secret.write) and prints the value (or writes\n"
		"     --out F, 0600).  Without the server: this agent's cached copy.\n");
}

/* The runtime of a cache command: online, the agent's cluster loaded,
 * name within it. */
static cf_status cache_runtime(const char *dir, const char *name,
			       ag_runtime **out, cf_error *err)
{
	char cluster[CF_NAME_MAX_BYTES + 1];
	ag_runtime *rt = NULL;
	cf_status rc;

	*out = NULL;
	if (!cf_cluster_of_name(name, 0, cluster, sizeof(cluster)))
		return cf_error_set(err, CF_ERR_USAGE, "\"%.200s\" is not a "
			"cluster cache name: say cluster/CLUSTER/KEY", name);
	rc = ag_runtime_new(dir, NULL, NULL, NULL, 0, &rt, err);
	if (rc != CF_OK)
		return rc;
	rt->read_only = 1;
	if (rt->member == NULL)
		rc = cf_error_set(err, CF_ERR_USAGE, "this agent is in no cluster "
			"(%s/%s is missing): an enroller adds it with 'coffer "
			"cluster add', or import a key with 'coffer agent "
			"cluster-join'", dir, BUNDLE_FILE);
	else if (strcmp(rt->member->name, cluster) != 0)
		rc = cf_error_set(err, CF_ERR_USAGE, "this agent is in cluster "
			"\"%s\", not \"%s\"", rt->member->name, cluster);
	if (rc != CF_OK) {
		ag_runtime_free(rt);
		return rc;
	}
	*out = rt;
	return CF_OK;
}

static cf_status cache_put(const char *dir, const char *name, const char *file,
			   cf_record_type type, int as_json, cf_error *err)
{
	ag_runtime *rt = NULL;
	cf_record rec = { 0 };
	cli_rcpts r = { 0 };
	const char *space;
	size_t bytes = 0;
	cf_status rc;

	rc = cache_runtime(dir, name, &rt, err);
	if (rc == CF_OK)
		rc = cli_plaintext_read(file, "--file", &rec.value, err);
	if (rc != CF_OK)
		goto out;
	snprintf(rec.name, sizeof(rec.name), "%s", name);
	snprintf(rec.tenant, sizeof(rec.tenant), "%s", cf_trust_tenant(rt->trust));
	rec.type = type;
	/* The proof is the header's second half. */
	space = strchr(rt->member->header, ' ');
	snprintf(rec.member, sizeof(rec.member), "%s", space + 1);
	rc = cli_rcpts_add(&r, rt->member->cert, rt->member->chain,
			   rt->member->fp, err);
	if (rc == CF_OK)
		rc = cli_write_version(rt->client, &rec, &r,
				       ag_state_version(rt->st, name), 0, &bytes,
				       err);
	if (rc != CF_OK)
		goto out;
	if (as_json) {
		json_t *doc = json_pack("{s:s,s:I,s:s,s:s,s:I}", "name", name,
					"version", (json_int_t)rec.version,
					"cluster", rt->member->name, "key",
					rt->member->fp, "bytes",
					(json_int_t)cf_secret_len(rec.value));

		cli_json_print(doc);
		json_decref(doc);
	} else {
		printf("stored \"%s\" version %llu (%zu bytes) for cluster \"%s\", "
		       "sealed to its key only\n", name,
		       (unsigned long long)rec.version, cf_secret_len(rec.value),
		       rt->member->name);
	}
out:
	cli_rcpts_free(&r);
	cf_secret_free(rec.value);
	ag_runtime_free(rt);
	return rc;
}

static cf_status cache_get(const char *dir, const char *name, const char *out_path,
			   cf_error *err)
{
	ag_runtime *rt = NULL;
	json_t *resp = NULL;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_record *rec = NULL;
	char path[1100], *q = NULL;
	cf_status rc;

	rc = cache_runtime(dir, name, &rt, err);
	if (rc != CF_OK)
		return rc;
	q = cli_client_escape(name);
	if (q == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	snprintf(path, sizeof(path), "/v1/secrets/envelope?name=%s", q);
	rc = cli_client_call(rt->client, "GET", path, NULL, &resp, err);
	if (rc == CF_ERR_NETWORK && ag_state_version(rt->st, name) > 0) {
		ag_log(AG_LOG_WARN, "%s; reading this agent's cached copy",
		       err->msg);
		cf_error_clear(err);
		rc = ag_open_cached(rt, name, &rec, err);
		goto print;
	}
	if (rc == CF_OK)
		rc = cli_b64_decode(cli_json_str(resp, "envelope"), "the envelope",
				    &der, &len, err);
	if (rc == CF_OK)
		rc = cf_envelope_open(der, len, rt->member->cert,
				      rt->member->key, rt->trust, name,
				      ag_state_version(rt->st, name), &rec,
				      NULL, err);
print:
	if (rc == CF_OK)
		rc = cli_plaintext_write(out_path, rec, err);
out:
	cf_record_free(rec);
	OPENSSL_free(der);
	json_decref(resp);
	free(q);
	ag_runtime_free(rt);
	return rc;
}

int ag_cmd_cache(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "file", required_argument, NULL, 'f' },
		{ "out", required_argument, NULL, 'o' },
		{ "type", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *dir = NULL, *file = NULL, *out = NULL, *verb, *name;
	cf_record_type type = CF_TYPE_TEXT;
	cf_error err = { 0 };
	int as_json = 0, ch;
	cf_status rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'f': file = optarg; break;
		case 'o': out = optarg; break;
		case 't':
			if (cf_record_type_from_name(optarg, &type) != 0 ||
			    (type != CF_TYPE_TEXT && type != CF_TYPE_BINARY))
				return cli_usage("agent cache", "--type is text "
						 "or binary, not \"%s\"", optarg);
			break;
		case 'j': as_json = 1; break;
		case 'h': cache_usage(stdout); return 0;
		default: return cli_bad_option("agent cache");
		}
	}
	if (argc - optind != 2)
		return cli_usage("agent cache", "say put NAME or get NAME");
	verb = argv[optind];
	name = argv[optind + 1];
	if (dir == NULL)
		return cli_usage("agent cache", "--state-dir is required");
	if (strcmp(verb, "put") != 0 && strcmp(verb, "get") != 0)
		return cli_usage("agent cache", "say put or get, not \"%s\"", verb);
	if (strcmp(verb, "put") == 0 ? out != NULL : (file != NULL || as_json))
		return cli_usage("agent cache", "--file, --type and --json go "
				 "with put, --out with get");
	ag_harden();
	rc = strcmp(verb, "put") == 0 ?
		cache_put(dir, name, file, type, as_json, &err) :
		cache_get(dir, name, out, &err);
	return rc == CF_OK ? 0 : cli_fail(&err);
}
