/*
 * server.c - `coffer server init|tenant add|tenant ls|run`: set up a
 * server directory, register organisations, run the server.
 *
 * The server directory holds server.crt, server.key (0600) and the
 * database coffer.db; the directory itself is 0700.  --db URL puts the
 * database elsewhere: PostgreSQL (postgresql://...), for several server
 * nodes on one database, or another SQLite file (sqlite:PATH).  A URL is
 * never printed, and one holding a password is refused on the command
 * line (ps shows it to every user): the password goes in PGPASSWORD,
 * ~/.pgpass or `run --config`.  Everything here runs on the server host;
 * `run` hands over to src/server (srv_run).
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pki.h"
#include "srv.h"
#include "store.h"
#include "store_pg.h"
#include "trust.h"

#define HOSTS_MAX 32
#define SERVER_CERT_DAYS 825

static void server_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer server init --dir DIR [--db URL] [--host NAME]... [--force]\n"
		"                          [--tls-cert FILE --tls-key FILE]\n"
		"       coffer server tenant add --dir DIR [--db URL] ROOT.crt\n"
		"       coffer server tenant ls --dir DIR [--db URL] [--json]\n"
		"       coffer server run --dir DIR [--db URL] --listen ADDR:PORT [OPTIONS]\n"
		"       coffer server migrate --from URL|--dir DIR --to URL|--config FILE\n"
		"\n"
		"init        makes DIR (0700) with server.crt and server.key (a\n"
		"            self-signed P-256 certificate for 127.0.0.1, ::1,\n"
		"            localhost and each --host; or copies of --tls-cert and\n"
		"            --tls-key) and an empty database DIR/coffer.db.\n"
		"tenant add  registers an organisation by its root certificate.\n"
		"tenant ls   lists the registered organisations.\n"
		"run         runs the server in the foreground ('coffer server run\n"
		"            --help' lists its options).\n"
		"migrate     copies a whole installation into a new database\n"
		"            (SQLite to PostgreSQL or back) and verifies the copy\n"
		"            ('coffer server migrate --help').\n"
		"\n"
		"--db URL    the database, for every subcommand alike (default:\n"
		"            DIR/coffer.db): sqlite:PATH, or postgresql://[USER@]HOST\n"
		"            [:PORT]/DBNAME[?sslmode=verify-full...] for PostgreSQL,\n"
		"            which several server nodes can share.  The libpq\n"
		"            environment applies (PGHOST, PGUSER, PGPASSWORD,\n"
		"            PGPASSFILE, PGSSLMODE...).  A URL is never printed; one\n"
		"            with a password is refused here (the command line is\n"
		"            public): use PGPASSWORD, ~/.pgpass or 'run --config'.\n"
		"\n"
		"docs/OPERATIONS.md describes running a server.\n");
}

/* A --host is a DNS name or an IP address, nothing that could smuggle a
 * second entry into the subjectAltName text. */
static int host_ok(const char *h)
{
	size_t len = strlen(h);

	if (len == 0 || len > 253)
		return 0;
	for (const char *p = h; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '.' && *p != '-' &&
		    *p != ':' && *p != '*')
			return 0;
	return 1;
}

static int is_ip(const char *h)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

static cf_status add_ext(X509 *x, int nid, const char *value, cf_error *err)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	ok = ext != NULL && X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (!ok)
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
			"cannot add the extension \"%s\" to the server certificate",
			value);
	return CF_OK;
}

static cf_status make_server_cert(EVP_PKEY *key, const char *const *hosts,
				  size_t n_hosts, X509 **out, cf_error *err)
{
	char san[HOSTS_MAX * 260 + 64];
	size_t used;
	X509 *x = X509_new();
	X509_NAME *name = NULL;
	BIGNUM *bn = BN_new();
	ASN1_INTEGER *serial = NULL;
	cf_status rc = CF_OK;

	*out = NULL;
	if (x == NULL || bn == NULL || !BN_rand(bn, 159, BN_RAND_TOP_ANY,
						BN_RAND_BOTTOM_ANY) ||
	    (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
	    !X509_set_version(x, X509_VERSION_3) ||
	    !X509_set_serialNumber(x, serial) ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), SERVER_CERT_DAYS, 0, NULL) == NULL ||
	    !X509_set_pubkey(x, key) || (name = X509_NAME_new()) == NULL ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
		(const unsigned char *)(n_hosts ? hosts[0] : "coffer server"),
		-1, -1, 0) ||
	    !X509_set_subject_name(x, name) || !X509_set_issuer_name(x, name)) {
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				      "cannot build the server certificate");
		goto out;
	}
	used = (size_t)snprintf(san, sizeof(san), "IP:127.0.0.1,IP:::1,DNS:localhost");
	for (size_t i = 0; i < n_hosts && used < sizeof(san); i++)
		used += (size_t)snprintf(san + used, sizeof(san) - used, ",%s:%s",
					 is_ip(hosts[i]) ? "IP" : "DNS", hosts[i]);
	rc = add_ext(x, NID_basic_constraints, "critical,CA:FALSE", err);
	if (rc == CF_OK)
		rc = add_ext(x, NID_key_usage, "critical,digitalSignature", err);
	if (rc == CF_OK)
		rc = add_ext(x, NID_ext_key_usage, "serverAuth", err);
	if (rc == CF_OK)
		rc = add_ext(x, NID_subject_key_identifier, "hash", err);
	if (rc == CF_OK)
		rc = add_ext(x, NID_subject_alt_name, san, err);
	if (rc == CF_OK && !X509_sign(x, key, EVP_sha256()))
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO,
				      "cannot sign the server certificate");
	if (rc == CF_OK) {
		*out = x;
		x = NULL;
	}
out:
	X509_NAME_free(name);
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	X509_free(x);
	return rc;
}

/* An unencrypted private key of any type (the server reads it unattended). */
static cf_status load_tls_key(const char *path, EVP_PKEY **out, cf_error *err)
{
	cf_secret *text = NULL;
	BIO *bio = NULL;
	cf_status rc;
	FILE *f = fopen(path, "rb");

	*out = NULL;
	if (f == NULL)
		return cf_error_set(err, CF_ERR_IO, "cannot open key %s", path);
	rc = cf_secret_read_fd(fileno(f), CF_PEM_MAX_BYTES, path, &text, err);
	fclose(f);
	if (rc != CF_OK)
		return rc;
	bio = BIO_new_mem_buf(cf_secret_cdata(text), (int)cf_secret_len(text));
	if (bio != NULL)
		*out = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
	if (*out == NULL)
		rc = cf_error_set_ssl(err, CF_ERR_PARSE,
			"cannot read the TLS key %s (it must be an unencrypted "
			"PEM private key: the server reads it at every start)", path);
	BIO_free(bio);
	cf_secret_free(text);
	return rc;
}

static cf_status write_tls_key(const char *path, EVP_PKEY *key, int exclusive,
			       cf_error *err)
{
	BIO *bio = BIO_new(BIO_s_secmem());
	cf_secret *pem = NULL;
	cf_status rc = CF_OK;

	if (bio == NULL || !PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0,
							  NULL, NULL))
		rc = cf_error_set_ssl(err, CF_ERR_CRYPTO, "cannot encode the TLS key");
	if (rc == CF_OK)
		rc = cf_secret_from_bio(bio, &pem, err);
	if (rc == CF_OK)
		rc = cli_write_file(path, cf_secret_cdata(pem), cf_secret_len(pem),
				    0600, exclusive, err);
	cf_secret_free(pem);
	BIO_free(bio);
	return rc;
}

static cf_status certs_pem(X509 *cert, STACK_OF(X509) *chain, char **out,
			   size_t *len, cf_error *err)
{
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *mem = NULL;
	int ok = bio != NULL && PEM_write_bio_X509(bio, cert);

	for (int i = 0; ok && i < sk_X509_num(chain); i++)
		ok = PEM_write_bio_X509(bio, sk_X509_value(chain, i));
	*out = NULL;
	if (ok) {
		BIO_get_mem_ptr(bio, &mem);
		*out = malloc(mem->length ? mem->length : 1);
		if (*out != NULL) {
			memcpy(*out, mem->data, mem->length);
			*len = mem->length;
		}
	}
	BIO_free(bio);
	if (*out == NULL)
		return cf_error_set_ssl(err, CF_ERR_NOMEM, "cannot encode certificates");
	return CF_OK;
}

/*
 * The database of DIR: db (a --db URL) or DIR/coffer.db, into out.
 * CF_ERR_USAGE for a URL with a password (from argv: ps shows it).
 */
static cf_status pick_db(const char *dir, const char *db, char *out,
			 size_t cap, cf_error *err)
{
	if (db != NULL && cf_store_url_has_password(db))
		return cf_error_set(err, CF_ERR_USAGE,
				    "--db holds a password, which the command "
				    "line shows to every user; give it in "
				    "PGPASSWORD or ~/.pgpass (or in 'server run "
				    "--config')");
	if (db != NULL && db[0] == '\0')
		return cf_error_set(err, CF_ERR_USAGE, "--db is empty");
	if (db != NULL) {
		if ((size_t)snprintf(out, cap, "%s", db) >= cap)
			return cf_error_set(err, CF_ERR_USAGE,
					    "--db is too long");
		return CF_OK;
	}
	if (!cli_path_in(out, cap, dir, "coffer.db"))
		return cf_error_set(err, CF_ERR_USAGE, "--dir is too long");
	return CF_OK;
}

static int server_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "db", required_argument, NULL, 'D' },
		{ "host", required_argument, NULL, 'H' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-key", required_argument, NULL, 'k' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *tls_cert = NULL, *tls_key = NULL, *db = NULL;
	const char *hosts[HOSTS_MAX];
	size_t n_hosts = 0;
	int force = 0, c;
	char crt_path[PATH_MAX], key_path[PATH_MAX], db_path[PATH_MAX], fp[65];
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	char *pem = NULL;
	size_t pem_len = 0;
	cf_store *st = NULL;
	cf_error err = { 0 };
	cf_status rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'D': db = optarg; break;
		case 'H':
			if (n_hosts == HOSTS_MAX)
				return cli_usage("server init", "at most %d --host",
						 HOSTS_MAX);
			if (!host_ok(optarg))
				return cli_usage("server init", "--host \"%s\" is "
					"not a DNS name or IP address", optarg);
			hosts[n_hosts++] = optarg;
			break;
		case 'c': tls_cert = optarg; break;
		case 'k': tls_key = optarg; break;
		case 'f': force = 1; break;
		case 'h': server_usage(stdout); return 0;
		default: return cli_bad_option("server init");
		}
	}
	if (optind != argc)
		return cli_usage("server init", "unexpected argument \"%s\"", argv[optind]);
	if (dir == NULL)
		return cli_usage("server init", "--dir DIR is required");
	if ((tls_cert == NULL) != (tls_key == NULL))
		return cli_usage("server init", "--tls-cert and --tls-key go together");
	if (tls_cert != NULL && n_hosts > 0)
		return cli_usage("server init", "--host only applies to the "
				 "self-signed certificate, not to --tls-cert");
	if (!cli_path_in(crt_path, sizeof(crt_path), dir, "server.crt") ||
	    !cli_path_in(key_path, sizeof(key_path), dir, "server.key"))
		return cli_usage("server init", "--dir is too long");
	if (pick_db(dir, db, db_path, sizeof(db_path), &err) != CF_OK)
		return cli_usage("server init", "%s", err.msg);
	rc = cli_mkdir(dir, 0700, &err);
	if (rc == CF_OK && chmod(dir, 0700) != 0)
		rc = cf_error_set(&err, CF_ERR_IO, "cannot make %s private (0700)", dir);
	if (rc == CF_OK && !force && access(key_path, F_OK) == 0)
		rc = cf_error_set(&err, CF_ERR_EXISTS,
			"%s already holds a server key; refusing to replace it "
			"(clients pin the certificate); use --force to make a new one",
			dir);
	if (rc == CF_OK && tls_cert != NULL) {
		rc = cli_load_cert(tls_cert, &cert, &chain, &err);
		if (rc == CF_OK)
			rc = load_tls_key(tls_key, &key, &err);
		if (rc == CF_OK && X509_check_private_key(cert, key) != 1)
			rc = cf_error_set_ssl(&err, CF_ERR_USAGE,
				"%s does not belong to the certificate %s",
				tls_key, tls_cert);
	} else if (rc == CF_OK) {
		rc = cf_key_generate(&key, &err);
		if (rc == CF_OK)
			rc = make_server_cert(key, hosts, n_hosts, &cert, &err);
	}
	if (rc == CF_OK)
		rc = write_tls_key(key_path, key, !force, &err);
	if (rc == CF_OK)
		rc = certs_pem(cert, chain, &pem, &pem_len, &err);
	if (rc == CF_OK)
		rc = cli_write_file(crt_path, pem, pem_len, 0644, 0, &err);
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(cert, fp, &err);
	if (rc == CF_OK)
		rc = cf_store_open(db_path, CF_STORE_CREATE, &st, &err);
	if (rc == CF_OK) {
		printf("initialised the coffer server in %s\n", dir);
		if (tls_cert != NULL) {
			printf("  server.crt   copy of %s\n", tls_cert);
		} else {
			printf("  server.crt   self-signed, valid %d days, for "
			       "127.0.0.1, ::1, localhost", SERVER_CERT_DAYS);
			for (size_t i = 0; i < n_hosts; i++)
				printf(", %s", hosts[i]);
			printf("\n");
		}
		printf("  server.key   private key (mode 0600)\n"
		       "  %-12s database, schema version %d\n"
		       "  fingerprint  %s\n"
		       "clients trust it with --server-ca %s\n",
		       db == NULL ? "coffer.db" :
		       strncmp(db, "sqlite:", 7) == 0 ? "(--db)" : "PostgreSQL",
		       cf_store_schema_version(st), fp, crt_path);
	}
	cf_store_free(st);
	free(pem);
	sk_X509_pop_free(chain, X509_free);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

static cf_status open_store(const char *dir, const char *url, cf_store **st,
			    cf_error *err)
{
	char db[PATH_MAX];
	cf_status rc;

	if ((rc = pick_db(dir, url, db, sizeof(db), err)) != CF_OK)
		return rc;
	rc = cf_store_open(db, 0, st, err);
	/* A URL is not echoed: the store's sentence names the database. */
	if (rc == CF_ERR_NOT_FOUND && url == NULL)
		rc = cf_error_set(err, CF_ERR_NOT_FOUND, "no database at %s; run "
				  "'coffer server init --dir %s' first", db, dir);
	return rc;
}

static int tenant_add(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "db", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *db = NULL, *path;
	X509 *root = NULL;
	cf_trust *trust = NULL;
	unsigned char *pem = NULL;
	char *text = NULL, *subject = NULL, fp[65];
	size_t len = 0;
	cf_store *st = NULL;
	cf_audit_entry audit = { 0 };
	cf_error err = { 0 };
	cf_status rc;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'D': db = optarg; break;
		case 'h': server_usage(stdout); return 0;
		default: return cli_bad_option("server tenant add");
		}
	}
	if (dir == NULL || optind + 1 != argc)
		return cli_usage("server tenant add", "give --dir DIR and one ROOT.crt");
	path = argv[optind];
	rc = cli_load_cert(path, &root, NULL, &err);
	if (rc == CF_OK && cf_cert_kind(root) != CF_KIND_ROOT)
		rc = cf_error_set(&err, CF_ERR_USAGE, "%s is not a root certificate "
			"(a self-signed CA); give the organisation's root.crt", path);
	if (rc == CF_OK)
		rc = cf_trust_new(root, NULL, &trust, &err);
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(root, fp, &err);
	if (rc == CF_OK)
		rc = cf_cert_to_pem(root, &pem, &len, &err);
	if (rc == CF_OK && (text = malloc(len + 1)) == NULL)
		rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
	if (rc == CF_OK) {
		memcpy(text, pem, len);
		text[len] = '\0';
		rc = open_store(dir, db, &st, &err);
	}
	if (rc == CF_OK) {
		audit.time = (int64_t)time(NULL);
		snprintf(audit.tenant, sizeof(audit.tenant), "%s", fp);
		snprintf(audit.subject, sizeof(audit.subject), "server-admin");
		snprintf(audit.source, sizeof(audit.source), "local");
		snprintf(audit.action, sizeof(audit.action), "tenant.add");
		snprintf(audit.object, sizeof(audit.object), "%s", fp);
		audit.bytes = (int64_t)len;
		rc = cf_store_tenant_add(st, fp, text, &audit, &err);
		if (rc == CF_ERR_EXISTS)
			rc = cf_error_set(&err, CF_ERR_EXISTS, "tenant %s (%s) is "
					  "already registered", fp, path);
	}
	if (rc == CF_OK) {
		subject = cf_name_text(X509_get_subject_name(root));
		printf("registered tenant %s\n  root  %s\n", fp,
		       subject ? subject : "?");
		printf("a running server picks it up within a few seconds\n");
	}
	OPENSSL_free(subject);
	cf_store_free(st);
	free(text);
	OPENSSL_free(pem);
	cf_trust_free(trust);
	X509_free(root);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

static int tenant_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "db", required_argument, NULL, 'D' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *db = NULL;
	int json = 0, c;
	cf_tenant *rows = NULL;
	size_t n = 0;
	cf_store *st = NULL;
	json_t *list = NULL;
	cf_error err = { 0 };
	cf_status rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'D': db = optarg; break;
		case 'j': json = 1; break;
		case 'h': server_usage(stdout); return 0;
		default: return cli_bad_option("server tenant ls");
		}
	}
	if (dir == NULL || optind != argc)
		return cli_usage("server tenant ls", "give --dir DIR and nothing else");
	rc = open_store(dir, db, &st, &err);
	if (rc == CF_OK)
		rc = cf_store_tenant_list(st, &rows, &n, &err);
	if (rc == CF_OK && json && (list = json_array()) == NULL)
		rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
	for (size_t i = 0; rc == CF_OK && i < n; i++) {
		X509 *root = NULL;
		char *subject = NULL;
		cf_error why = { 0 };

		if (cf_cert_parse((const unsigned char *)rows[i].root_pem,
				  strlen(rows[i].root_pem), "root", &root, NULL,
				  &why) == CF_OK)
			subject = cf_name_text(X509_get_subject_name(root));
		if (json) {
			json_t *o = json_pack("{s:s,s:s,s:I,s:I}", "id", rows[i].id,
				"root", subject ? subject : "?",
				"crl_number", (json_int_t)rows[i].crl_number,
				"created", (json_int_t)rows[i].created);

			if (o == NULL || json_array_append_new(list, o) != 0)
				rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		} else {
			char when[32];

			cli_unix_iso(rows[i].created, when, sizeof(when));
			if (i == 0)
				printf("%-64s  %-8s  %-20s  %s\n", "TENANT", "CRL",
				       "CREATED", "ROOT");
			if (rows[i].crl_number < 0)
				printf("%-64s  %-8s  %-20s  %s\n", rows[i].id, "-",
				       when, subject ? subject : "?");
			else
				printf("%-64s  %-8lld  %-20s  %s\n", rows[i].id,
				       (long long)rows[i].crl_number, when,
				       subject ? subject : "?");
		}
		OPENSSL_free(subject);
		X509_free(root);
	}
	if (rc == CF_OK && json) {
		char *text = json_dumps(list, JSON_INDENT(2));
		json_malloc_t jmalloc;
		json_free_t jfree;

		if (text == NULL)
			rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		else
			printf("%s\n", text);
		/* jansson may live on the secure heap (secmem.c): its free. */
		json_get_alloc_funcs(&jmalloc, &jfree);
		jfree(text);
	}
	json_decref(list);
	cf_tenants_free(rows, n);
	cf_store_free(st);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

static void tenant_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer server tenant add --dir DIR [--db URL] ROOT.crt\n"
		"       coffer server tenant ls --dir DIR [--db URL] [--json]\n");
}

static int server_tenant(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "add", tenant_add },
		{ "ls", tenant_ls },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    tenant_usage);
}

static void run_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer server run --dir DIR --listen ADDR:PORT [--listen ...]\n"
		"                         [--db URL] [--config FILE] [--threads N] [--tls12]\n"
		"                         [--max-body BYTES] [--max-header BYTES]\n"
		"                         [--max-conns N] [--max-conns-per-ip N]\n"
		"                         [--rate R/s] [--burst N] [--idle-timeout S]\n"
		"                         [--request-timeout S] [--sync-full]\n"
		"                         [--log-level debug|info|warn|error]\n"
		"                         [--port-file F]\n"
		"\n"
		"Runs the server in the foreground, logging to stderr.  SIGTERM or\n"
		"SIGINT drains it (parked long-polls are answered, requests in\n"
		"flight finish) and it exits 0; SIGHUP re-reads tenants and CRLs.\n"
		"\n"
		"--listen ADDR:PORT  where to accept (\"127.0.0.1:8443\", \"[::1]:8443\");\n"
		"                    port 0 picks a free port (see --port-file)\n"
		"--db URL            the database (default DIR/coffer.db): sqlite:PATH,\n"
		"                    or postgresql://[USER@]HOST[:PORT]/DBNAME for\n"
		"                    PostgreSQL, which any number of nodes can share\n"
		"                    (the libpq environment applies: PGPASSWORD,\n"
		"                    PGPASSFILE, PGSSLMODE...).  Never logged; a\n"
		"                    password only via that environment, ~/.pgpass or\n"
		"                    \"db\" in --config, never on the command line\n"
		"--config FILE       a JSON object with these option names as keys\n"
		"                    (\"listen\" may be an array); options given on\n"
		"                    the command line win\n"
		"--threads N         event loops (default: one per CPU)\n"
		"--tls12             also accept TLS 1.2 (default: TLS 1.3 only)\n"
		"--max-body BYTES    request body limit (default 2097152)\n"
		"--max-header BYTES  request header limit (default 16384)\n"
		"--max-conns N       connections in all (default 20000)\n"
		"--max-conns-per-ip N  per source address (default 256)\n"
		"--rate R/s          unauthenticated requests per second per\n"
		"                    address (default 20/s; burst twice that)\n"
		"--burst N           the rate bucket's size\n"
		"--idle-timeout S    close idle keep-alive connections (default 120)\n"
		"--request-timeout S handshake + one whole request (default 10)\n"
		"--metrics-every S   recompute /metrics' rollout figures (whole-\n"
		"                    database queries) at most every S seconds\n"
		"                    (default 60; 0: at every scrape)\n"
		"--sync-full         fsync every commit (survives power loss)\n"
		"--log-level L       debug logs one line per request (default info)\n"
		"--port-file F       write the listening port of the first --listen\n");
}

static int server_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'C' },
		{ "threads", required_argument, NULL, 1 },
		{ "tls12", no_argument, NULL, 2 },
		{ "max-body", required_argument, NULL, 3 },
		{ "max-header", required_argument, NULL, 4 },
		{ "max-conns-per-ip", required_argument, NULL, 5 },
		{ "rate", required_argument, NULL, 6 },
		{ "idle-timeout", required_argument, NULL, 7 },
		{ "sync-full", no_argument, NULL, 8 },
		{ "log-level", required_argument, NULL, 9 },
		{ "port-file", required_argument, NULL, 10 },
		{ "max-conns", required_argument, NULL, 11 },
		{ "burst", required_argument, NULL, 12 },
		{ "request-timeout", required_argument, NULL, 13 },
		{ "db", required_argument, NULL, 14 },
		{ "metrics-every", required_argument, NULL, 15 },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	srv_config cfg;
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	int c, listens = 0;

	/* Pass one: --help and --config, which the other options override. */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			run_usage(stdout);
			return 0;
		}
		if (c == '?' || c == ':')
			return cli_bad_option("server run");
		if (c == 'C')
			config = optarg;
		if (c == 'l')
			listens++;
		if (c == 14 && cf_store_url_has_password(optarg))
			return cli_usage("server run", "--db holds a password, "
					 "which the command line shows to every "
					 "user; give it in PGPASSWORD, ~/.pgpass "
					 "or \"db\" in --config");
	}
	if (optind != argc)
		return cli_usage("server run", "unexpected argument \"%s\"", argv[optind]);
	srv_config_defaults(&cfg);
	if (config != NULL)
		rc = srv_config_load(&cfg, config, &err);
	if (rc == CF_OK && listens > 0) {
		for (size_t i = 0; i < cfg.n_listen; i++)
			free(cfg.listen[i]);
		cfg.n_listen = 0;
	}
	optind = 1;
	while (rc == CF_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		const char *key = NULL;

		for (size_t i = 0; opts[i].name != NULL; i++)
			if (opts[i].val == c)
				key = opts[i].name;
		if (c == 'C' || key == NULL)
			continue;
		rc = srv_config_set(&cfg, key, optarg ? optarg : "1", &err);
	}
	if (rc == CF_OK && (cfg.dir == NULL || cfg.n_listen == 0)) {
		srv_config_clear(&cfg);
		return cli_usage("server run", "--dir DIR and --listen ADDR:PORT "
				 "are required (on the command line or in --config)");
	}
	if (rc == CF_OK)
		rc = srv_run(&cfg, &err);
	srv_config_clear(&cfg);
	if (rc != CF_OK && rc == CF_ERR_USAGE) {
		fprintf(stderr, "coffer server run: %s; see 'coffer server run --help'\n",
			err.msg);
		return 2;
	}
	return rc == CF_OK ? 0 : cli_fail(&err);
}

/* ---- server migrate ------------------------------------------------------ */

static void migrate_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer server migrate --from URL [--to URL | --config FILE]\n"
		"       coffer server migrate --dir DIR [--to URL | --config FILE]\n"
		"\n"
		"Copies a whole installation from one database into a new, empty\n"
		"one -- SQLite to PostgreSQL, or back, or to the same kind -- and\n"
		"verifies the copy.  Everything is kept as it is: tenants,\n"
		"certificates and groups, tokens (uses counted), enrollments,\n"
		"every version and envelope, each agent's feed with its sequence\n"
		"numbers (agents go on from their cursors, nothing is sent twice or\n"
		"lost), staged uploads, commands and answers, and the audit log\n"
		"with its hash chains verbatim.  The copy is one transaction on the\n"
		"target: all or nothing.  Then it checks that every table has the\n"
		"same rows (count and SHA-256 digest) and that every tenant's audit\n"
		"chain verifies on the target and ends in the same last hash, and\n"
		"prints what it copied.  Stop every server using --from first:\n"
		"what is written after the copy starts is not copied.\n"
		"\n"
		"--from URL     the database to copy (sqlite:PATH, a path, or\n"
		"               postgresql://...); --dir DIR means DIR/coffer.db\n"
		"--to URL       the new database: a SQLite file that does not\n"
		"               exist yet, or an empty PostgreSQL database\n"
		"               (createdb NAME); a non-empty one is refused\n"
		"--config FILE  a 'server run --config' file: its \"db\" is --to's\n"
		"               default (and may hold a password)\n"
		"\n"
		"URLs are never printed.  A password never goes on the command line\n"
		"(ps shows it to every user): use PGPASSWORD, PGPASSFILE/~/.pgpass,\n"
		"or --config.  The libpq environment applies to both sides\n"
		"(PGHOST, PGUSER, PGSSLMODE...).  Exit status: 0 copied and\n"
		"verified, 8 the target is not empty, 29 a database failed or the\n"
		"copy differs, 31 an audit chain does not verify.\n");
}

/* A database named for the terminal without its URL (it may hold a
 * password): the SQLite path, or just "PostgreSQL". */
static void db_label(const char *url, char *out, size_t cap)
{
	if (strncmp(url, "postgresql://", 13) == 0 ||
	    strncmp(url, "postgres://", 11) == 0)
		snprintf(out, cap, "PostgreSQL");
	else
		snprintf(out, cap, "SQLite %s",
			 strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url);
}

typedef struct migrate_progress {
	int tty;
	struct timespec last;
} migrate_progress;

/* On a terminal, the table being copied and its rows, 5 times a second. */
static void migrate_tick(void *ctx, const char *table, int64_t rows)
{
	migrate_progress *p = ctx;
	struct timespec now;

	if (!p->tty)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if ((now.tv_sec - p->last.tv_sec) * 1000 +
	    (now.tv_nsec - p->last.tv_nsec) / 1000000 < 200)
		return;
	p->last = now;
	fprintf(stderr, "\rcopying %-16s %12lld rows", table, (long long)rows);
	fflush(stderr);
}

static int server_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "dir", required_argument, NULL, 'd' },
		{ "config", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *from = NULL, *to = NULL, *dir = NULL, *config = NULL;
	char from_db[PATH_MAX], from_label[PATH_MAX + 16], to_label[PATH_MAX + 16];
	srv_config cfg;
	cf_store *src = NULL, *dst = NULL;
	cf_store_copy_report rep;
	cf_store_chain_report chains;
	migrate_progress prog = { 0 };
	cf_error err = { 0 };
	cf_status rc = CF_OK;
	int c, have_cfg = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': from = optarg; break;
		case 't': to = optarg; break;
		case 'd': dir = optarg; break;
		case 'C': config = optarg; break;
		case 'h': migrate_usage(stdout); return 0;
		default: return cli_bad_option("server migrate");
		}
	}
	if (optind != argc)
		return cli_usage("server migrate", "unexpected argument \"%s\"",
				 argv[optind]);
	if ((from == NULL) == (dir == NULL))
		return cli_usage("server migrate", "give the database to copy: "
				 "--from URL or --dir DIR (one of them)");
	if ((from != NULL && cf_store_url_has_password(from)) ||
	    (to != NULL && cf_store_url_has_password(to)))
		return cli_usage("server migrate", "a URL holds a password, "
				 "which the command line shows to every user; "
				 "give it in PGPASSWORD, ~/.pgpass or \"db\" "
				 "in --config");
	if (config != NULL) {
		srv_config_defaults(&cfg);
		have_cfg = 1;
		if ((rc = srv_config_load(&cfg, config, &err)) != CF_OK) {
			srv_config_clear(&cfg);
			return cli_fail(&err);
		}
		if (to == NULL)
			to = cfg.db;
	}
	if (to == NULL || to[0] == '\0') {
		if (have_cfg)
			srv_config_clear(&cfg);
		return cli_usage("server migrate", "give the new database: --to "
				 "URL, or --config FILE with a \"db\"");
	}
	if (pick_db(dir, dir != NULL ? NULL : from, from_db, sizeof(from_db),
		    &err) != CF_OK) {
		if (have_cfg)
			srv_config_clear(&cfg);
		return cli_usage("server migrate", "%s", err.msg);
	}
	db_label(from_db, from_label, sizeof(from_label));
	db_label(to, to_label, sizeof(to_label));
	prog.tty = isatty(STDERR_FILENO);
	rc = cf_store_open(from_db, 0, &src, &err);
	if (rc == CF_OK)
		rc = cf_store_open(to, CF_STORE_CREATE, &dst, &err);
	if (rc == CF_OK)
		rc = cf_store_copy(src, dst, migrate_tick, &prog, &rep, &err);
	if (prog.tty)
		fprintf(stderr, "\r%48s\r", "");
	if (rc == CF_OK &&
	    (rc = cf_store_copy_verify(src, dst, &rep, &chains, &err)) !=
		    CF_OK) {
		char why[CF_ERROR_MAX];

		snprintf(why, sizeof(why), "%s", err.msg);
		cf_error_set(&err, rc, "the copy was written to %s but does not "
			     "verify: %s; do not run a server on it (drop it and "
			     "migrate again into a new database)", to_label, why);
	}
	if (rc == CF_OK) {
		int64_t rows = 0, bytes = 0;

		printf("copied %s to %s in %.2f s, and verified the copy\n",
		       from_label, to_label, rep.seconds);
		printf("  %-18s %12s %14s\n", "TABLE", "ROWS", "BYTES");
		for (int t = 0; t < CF_STORE_COPY_TABLES; t++) {
			printf("  %-18s %12lld %14lld\n", rep.tables[t].name,
			       (long long)rep.tables[t].rows,
			       (long long)rep.tables[t].bytes);
			rows += rep.tables[t].rows;
			bytes += rep.tables[t].bytes;
		}
		printf("  %-18s %12lld %14lld\n", "total", (long long)rows,
		       (long long)bytes);
		printf("row counts and SHA-256 digests equal in all %d tables\n"
		       "audit chains intact on the target: %zu chain(s), %lld "
		       "entries, last hashes equal to the source's\n",
		       CF_STORE_COPY_TABLES, chains.chains,
		       (long long)chains.entries);
	}
	cf_store_free(dst);
	cf_store_free(src);
	if (have_cfg)
		srv_config_clear(&cfg);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

int cmd_server(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "init", server_init },
		{ "tenant", server_tenant },
		{ "run", server_run },
		{ "migrate", server_migrate },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    server_usage);
}
