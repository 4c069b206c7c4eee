/*
 * fanout.c - bench/fanout: sealing one secret to N recipients, against the
 * floor of OpenSSL's own arithmetic (issue 3, section 4; DESIGN 8).
 *
 * Untimed set-up: a root CA, an operator (secret.write on bench/ANY), a CRL
 * that revokes one spare agent, and max(N) agent certificates issued by the
 * root with coffer's own cf_key_generate / cf_csr_new / cf_cert_issue, kept
 * as DER.  Before every timed run the agents are parsed afresh from DER, as
 * `coffer seal` loads them from files, so no run profits from what OpenSSL
 * caches inside an X509 during an earlier one.
 *
 * What is timed:
 *   coffer: encode the record, cf_envelope_sign once, cf_sealer_new, then
 *           per recipient cf_trust_verify (root-only store + CRL) and
 *           cf_sealer_seal; each envelope is counted and freed at once,
 *           so sealing streams (`coffer seal --root ... --out-dir D` minus
 *           the file writes);
 *   floor:  per recipient, OpenSSL's EVP API in its most direct form:
 *           ECDSA P-256 verify of the agent certificate's signature with
 *           the root key (SHA-256 of the TBS, EVP_PKEY_verify on one reused
 *           context), one P-256 key generation (one reused context), one
 *           ECDH derive (a context per ephemeral key: OpenSSL binds the
 *           private key to the context).
 *
 * The machine is shared and noisy, so the single-thread ratio is measured
 * with both sides interleaved: the recipients go by in chunks of CHUNK,
 * each chunk first the coffer way, then the floor way, each side's time
 * summed apart; both so see the same machine, second by second.  The
 * figures are medians over the repetitions, the ratio the median of the
 * per-repetition ratios.  With --threads, whole runs of T threads (each
 * with a cf_sealer from cf_sealer_dup, recipients split evenly) are timed
 * against whole runs of 1 thread in the same repetition, for coffer and,
 * to show what the machine itself gives, for the floor.
 *
 * Memory: before one whole coffer run per N the heap is trimmed and the
 * kernel's peak-RSS mark reset (/proc/self/clear_refs), so the growth of
 * VmHWM over VmRSS is that sealing run's working memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "envelope.h"
#include "pki.h"
#include "record.h"
#include "secmem.h"
#include "trust.h"

#define SECRET_BYTES 64
#define MAX_LIST 16
#define SECRET_NAME "bench/secret"
#define CHUNK 50         /* recipients per interleaved chunk */
#define MAX_THREADS 64
#define MAX_REPS 64

/* ------------------------------------------------------------ helpers */

static void die(const char *what, const cf_error *err)
{
	fprintf(stderr, "fanout: %s: %s\n", what, err ? err->msg : "");
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void check(cf_status rc, const char *what, const cf_error *err)
{
	if (rc != CF_OK)
		die(what, err);
}

static void ssl_check(int ok, const char *what)
{
	if (!ok)
		die(what, NULL);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the whole process (all threads), immune to time stolen by others. */
static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, size_t n)
{
	double tmp[MAX_REPS];

	if (n == 0)
		return 0;
	if (n > MAX_REPS)
		n = MAX_REPS;
	memcpy(tmp, v, n * sizeof(*v));
	qsort(tmp, n, sizeof(*tmp), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* A "Vm...:" line of /proc/self/status, in KiB (-1 if unavailable). */
static long status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t flen = strlen(field);
	long kib = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, flen) == 0) {
			kib = strtol(line + flen, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0); 0 on success. */
static int reset_peak_rss(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	int ok;

	if (f == NULL)
		return -1;
	ok = fputs("5", f) >= 0;
	return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int parse_list(const char *text, size_t *out, size_t max, size_t *n)
{
	char *copy = strdup(text), *save = NULL, *tok;

	*n = 0;
	if (copy == NULL)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long long v;

		errno = 0;
		v = strtoull(tok, &end, 10);
		if (errno || *end || v == 0 || v > 10000000 || *n == max) {
			free(copy);
			return -1;
		}
		out[(*n)++] = (size_t)v;
	}
	free(copy);
	return *n ? 0 : -1;
}

/* ------------------------------------------------------------ fixture */

struct fixture {
	EVP_PKEY *root_key, *op_key, *agent0_key;
	X509 *root, *op;
	X509_CRL *crl;
	cf_trust *trust;
	size_t n;                 /* agents */
	int external;             /* --certs: given, not made here */
	unsigned char **der;      /* each agent certificate, DER */
	size_t *der_len;
	/* For the floor: the TBS (inside der) and signature of each agent. */
	size_t *tbs_off, *tbs_len;
	unsigned char **sig;
	size_t *sig_len;
};

static X509 *issue(struct fixture *fx, EVP_PKEY *key, const char *cn,
		   const cf_cert_spec *spec)
{
	X509_REQ *csr = NULL;
	X509 *cert = NULL;
	cf_error err = { 0 };

	check(cf_csr_new(key, cn, &csr, &err), "csr", &err);
	check(cf_cert_issue(fx->root, fx->root_key, csr, spec, &cert, &err),
	      "issue", &err);
	X509_REQ_free(csr);
	return cert;
}

/* Offsets of the TBSCertificate inside a certificate's DER. */
static void find_tbs(const unsigned char *der, size_t len, size_t *off,
		     size_t *tbs_len)
{
	const unsigned char *p = der, *q;
	long body = 0;
	int tag, cls;

	ssl_check(!(ASN1_get_object(&p, &body, &tag, &cls, (long)len) & 0x80),
		  "certificate DER");
	q = p;
	ssl_check(!(ASN1_get_object(&q, &body, &tag, &cls,
				    (long)(len - (size_t)(p - der))) & 0x80),
		  "TBS DER");
	*off = (size_t)(p - der);
	*tbs_len = (size_t)(q - p) + (size_t)body;
}

static void fixture_make(struct fixture *fx, size_t n)
{
	static const char *const op_perms[] = { "secret.write:bench/*" };
	static const char *const groups[] = { "web" };
	const cf_cert_spec op_spec = { .kind = CF_KIND_OPERATOR,
		.perms = op_perms, .n_perms = 1 };
	const cf_cert_spec agent_spec = { .kind = CF_KIND_AGENT,
		.groups = groups, .n_groups = 1 };
	cf_error err = { 0 };
	EVP_PKEY *spare_key = NULL;
	X509 *spare;
	double t0 = now_s();

	memset(fx, 0, sizeof(*fx));
	fx->n = n;
	check(cf_key_generate(&fx->root_key, &err), "root key", &err);
	check(cf_ca_create(fx->root_key, "Bench Org", 30, &fx->root, &err),
	      "root", &err);
	check(cf_key_generate(&fx->op_key, &err), "operator key", &err);
	fx->op = issue(fx, fx->op_key, "bench-operator", &op_spec);
	/* A CRL that lists somebody, so the serial lookup has work to do. */
	check(cf_key_generate(&spare_key, &err), "spare key", &err);
	spare = issue(fx, spare_key, "revoked-agent", &agent_spec);
	check(cf_crl_update(fx->root, fx->root_key, NULL, spare, 30, &fx->crl,
			    &err), "crl", &err);
	X509_free(spare);
	EVP_PKEY_free(spare_key);
	check(cf_trust_new(fx->root, fx->crl, &fx->trust, &err), "trust", &err);

	fx->der = calloc(n, sizeof(*fx->der));
	fx->der_len = calloc(n, sizeof(*fx->der_len));
	fx->tbs_off = calloc(n, sizeof(*fx->tbs_off));
	fx->tbs_len = calloc(n, sizeof(*fx->tbs_len));
	fx->sig = calloc(n, sizeof(*fx->sig));
	fx->sig_len = calloc(n, sizeof(*fx->sig_len));
	if (!fx->der || !fx->der_len || !fx->tbs_off || !fx->tbs_len ||
	    !fx->sig || !fx->sig_len)
		die("out of memory", NULL);
	for (size_t i = 0; i < n; i++) {
		EVP_PKEY *key = NULL;
		X509 *cert;
		const ASN1_BIT_STRING *sig = NULL;
		char cn[32];
		int len;

		snprintf(cn, sizeof(cn), "agent-%06zu", i);
		check(cf_key_generate(&key, &err), "agent key", &err);
		cert = issue(fx, key, cn, &agent_spec);
		fx->der[i] = NULL;
		len = i2d_X509(cert, &fx->der[i]);
		ssl_check(len > 0, "i2d agent");
		fx->der_len[i] = (size_t)len;
		find_tbs(fx->der[i], fx->der_len[i], &fx->tbs_off[i],
			 &fx->tbs_len[i]);
		X509_get0_signature(&sig, NULL, cert);
		fx->sig_len[i] = (size_t)ASN1_STRING_length(sig);
		fx->sig[i] = OPENSSL_memdup(ASN1_STRING_get0_data(sig),
					    fx->sig_len[i]);
		ssl_check(fx->sig[i] != NULL, "signature copy");
		X509_free(cert);
		if (i == 0)
			fx->agent0_key = key;
		else
			EVP_PKEY_free(key);
		if (isatty(STDERR_FILENO) && n >= 1000 && (i + 1) % 1000 == 0) {
			fprintf(stderr, "\r  issued %zu/%zu agent certificates", i + 1, n);
			fflush(stderr);
		}
	}
	if (isatty(STDERR_FILENO) && n >= 1000)
		fputc('\n', stderr);
	printf("set-up: root, operator, CRL and %zu agent certificates in %.1f s "
	       "(untimed)\n", n, now_s() - t0);
}

static void fixture_free(struct fixture *fx)
{
	for (size_t i = 0; i < fx->n; i++) {
		OPENSSL_free(fx->der[i]);
		OPENSSL_free(fx->sig[i]);
	}
	free(fx->der);
	free(fx->der_len);
	free(fx->tbs_off);
	free(fx->tbs_len);
	free(fx->sig);
	free(fx->sig_len);
	cf_trust_free(fx->trust);
	X509_CRL_free(fx->crl);
	X509_free(fx->op);
	X509_free(fx->root);
	EVP_PKEY_free(fx->op_key);
	EVP_PKEY_free(fx->root_key);
	EVP_PKEY_free(fx->agent0_key);
}

/*
 * --certs: the recipients are given (bench/fanout-server.sh seals to the
 * agents it enrolled), verified against the given root and CRL.  The
 * record is signed by an operator of a throwaway root made here: the
 * signature is made once per run and never verified in the timed path,
 * so whose it is does not change the figures.  The floor verifies with
 * the given root's public key.
 */
static void fixture_load(struct fixture *fx, const char *certs_path,
			 const char *root_path, const char *crl_path,
			 const char *key_path)
{
	static const char *const op_perms[] = { "secret.write:bench/*" };
	const cf_cert_spec op_spec = { .kind = CF_KIND_OPERATOR,
		.perms = op_perms, .n_perms = 1 };
	cf_error err = { 0 };
	EVP_PKEY *signer_key = NULL;
	X509 *signer_root = NULL, *cert;
	X509_REQ *csr = NULL;
	size_t cap = 0;
	FILE *f;

	memset(fx, 0, sizeof(*fx));
	fx->external = 1;
	f = fopen(root_path, "r");
	fx->root = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f != NULL)
		fclose(f);
	ssl_check(fx->root != NULL, "reading --root");
	fx->root_key = X509_get_pubkey(fx->root);
	ssl_check(fx->root_key != NULL, "the root's public key");
	if (crl_path != NULL) {
		f = fopen(crl_path, "r");
		fx->crl = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
		if (f != NULL)
			fclose(f);
		ssl_check(fx->crl != NULL, "reading --crl");
	}
	check(cf_trust_new(fx->root, fx->crl, &fx->trust, &err), "trust", &err);
	check(cf_key_generate(&signer_key, &err), "signer root key", &err);
	check(cf_ca_create(signer_key, "Bench signer", 30, &signer_root, &err),
	      "signer root", &err);
	check(cf_key_generate(&fx->op_key, &err), "operator key", &err);
	check(cf_csr_new(fx->op_key, "bench-operator", &csr, &err), "csr", &err);
	check(cf_cert_issue(signer_root, signer_key, csr, &op_spec, &fx->op, &err),
	      "operator", &err);
	X509_REQ_free(csr);
	X509_free(signer_root);
	EVP_PKEY_free(signer_key);
	if (key_path != NULL) {
		f = fopen(key_path, "r");
		fx->agent0_key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
		if (f != NULL)
			fclose(f);
		ssl_check(fx->agent0_key != NULL, "reading --key");
	}
	f = fopen(certs_path, "r");
	ssl_check(f != NULL, "opening --certs");
	while ((cert = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		size_t i = fx->n;
		const ASN1_BIT_STRING *sig = NULL;
		int len;

		if (i == cap) {
			cap = cap ? cap * 2 : 1024;
			fx->der = realloc(fx->der, cap * sizeof(*fx->der));
			fx->der_len = realloc(fx->der_len, cap * sizeof(*fx->der_len));
			fx->tbs_off = realloc(fx->tbs_off, cap * sizeof(*fx->tbs_off));
			fx->tbs_len = realloc(fx->tbs_len, cap * sizeof(*fx->tbs_len));
			fx->sig = realloc(fx->sig, cap * sizeof(*fx->sig));
			fx->sig_len = realloc(fx->sig_len, cap * sizeof(*fx->sig_len));
			if (!fx->der || !fx->der_len || !fx->tbs_off ||
			    !fx->tbs_len || !fx->sig || !fx->sig_len)
				die("out of memory", NULL);
		}
		fx->der[i] = NULL;
		len = i2d_X509(cert, &fx->der[i]);
		ssl_check(len > 0, "i2d agent");
		fx->der_len[i] = (size_t)len;
		find_tbs(fx->der[i], fx->der_len[i], &fx->tbs_off[i],
			 &fx->tbs_len[i]);
		X509_get0_signature(&sig, NULL, cert);
		fx->sig_len[i] = (size_t)ASN1_STRING_length(sig);
		fx->sig[i] = OPENSSL_memdup(ASN1_STRING_get0_data(sig),
					    fx->sig_len[i]);
		ssl_check(fx->sig[i] != NULL, "signature copy");
		X509_free(cert);
		fx->n++;
	}
	ERR_clear_error();        /* the end of the file */
	fclose(f);
	if (fx->n == 0)
		die("--certs holds no certificate", NULL);
	printf("set-up: %zu agent certificates from %s, root %s%s%s\n", fx->n,
	       certs_path, root_path, crl_path ? ", CRL " : "",
	       crl_path ? crl_path : "");
}

/* The first n agents, parsed afresh (as from files). */
static X509 **parse_agents(const struct fixture *fx, size_t n)
{
	X509 **certs = calloc(n, sizeof(*certs));

	if (certs == NULL)
		die("out of memory", NULL);
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = fx->der[i];

		certs[i] = d2i_X509(NULL, &p, (long)fx->der_len[i]);
		ssl_check(certs[i] != NULL, "d2i agent");
	}
	return certs;
}

static void free_agents(X509 **certs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		X509_free(certs[i]);
	free(certs);
}

/*
 * --threads-only: what parsing the certificates costs (d2i_X509, which in
 * OpenSSL 3.0 decodes the public key through the provider decoders), not
 * part of the floor (the coffer run gets them parsed) but part of what a
 * client that receives them over the network must do.
 */
struct parse_job {
	const struct fixture *fx;
	X509 **certs;
	size_t lo, hi;
};

static void *parse_worker(void *arg)
{
	struct parse_job *job = arg;

	for (size_t i = job->lo; i < job->hi; i++) {
		const unsigned char *p = job->fx->der[i];

		job->certs[i] = d2i_X509(NULL, &p, (long)job->fx->der_len[i]);
		ssl_check(job->certs[i] != NULL, "d2i agent");
	}
	return NULL;
}

/* The first n agents parsed on threads threads; wall seconds. */
static double parse_run(const struct fixture *fx, size_t n, size_t threads)
{
	struct parse_job jobs[MAX_THREADS];
	pthread_t tids[MAX_THREADS];
	X509 **certs = calloc(n, sizeof(*certs));
	double t0;

	if (certs == NULL)
		die("out of memory", NULL);
	t0 = now_s();
	for (size_t t = 0; t < threads; t++)
		jobs[t] = (struct parse_job){ fx, certs, n * t / threads,
					      n * (t + 1) / threads };
	if (threads == 1) {
		parse_worker(&jobs[0]);
	} else {
		for (size_t t = 0; t < threads; t++)
			if (pthread_create(&tids[t], NULL, parse_worker, &jobs[t]) != 0)
				die("pthread_create", NULL);
		for (size_t t = 0; t < threads; t++)
			pthread_join(tids[t], NULL);
	}
	t0 = now_s() - t0;
	free_agents(certs, n);
	return t0;
}

/* -------------------------------------------------------- coffer path */

/* -------------------------------------------------------- coffer path */

static cf_secret *make_secret(void)
{
	cf_secret *s = cf_secret_new(SECRET_BYTES);

	if (s == NULL || RAND_bytes(cf_secret_data(s), SECRET_BYTES) != 1)
		die("secret", NULL);
	cf_secret_set_len(s, SECRET_BYTES, NULL);
	return s;
}

/* The signed record of the timed path, as `coffer seal` builds it. */
static cf_secret *sign_record(const struct fixture *fx, const cf_secret *value)
{
	cf_record rec = { 0 };
	cf_secret *json = NULL, *signed_der = NULL;
	cf_error err = { 0 };

	snprintf(rec.tenant, sizeof(rec.tenant), "%s", cf_trust_tenant(fx->trust));
	snprintf(rec.name, sizeof(rec.name), "%s", SECRET_NAME);
	rec.version = 1;
	rec.created = (int64_t)time(NULL);
	rec.type = CF_TYPE_BINARY;
	rec.value = (cf_secret *)value;
	check(cf_record_encode(&rec, &json, &err), "record", &err);
	check(cf_envelope_sign(json, fx->op, fx->op_key, NULL, &signed_der, &err),
	      "sign", &err);
	cf_secret_free(json);
	return signed_der;
}

/* Per recipient times and output of one coffer run (or one thread of it). */
struct coffer_acc {
	double verify_s, seal_s;
	uint64_t bytes;
};

/* One recipient the coffer way: verify, then seal. */
static void coffer_one(const cf_trust *trust, cf_sealer *sealer, X509 *cert,
		       struct coffer_acc *acc)
{
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err;             /* set only on failure; not wiped per call */
	double t0 = now_s(), t1;

	check(cf_trust_verify(trust, cert, NULL, "recipient", &err), "verify", &err);
	t1 = now_s();
	check(cf_sealer_seal(sealer, cert, &der, &len, &err), "seal", &err);
	acc->verify_s += t1 - t0;
	acc->seal_s += now_s() - t1;
	/* Streamed: the envelope would be written out here, then freed. */
	acc->bytes += len;
	OPENSSL_free(der);
}

struct seal_job {
	const cf_trust *trust;
	const cf_sealer *parent;  /* dup from this one (threads) ... */
	cf_sealer *sealer;        /* ... or use this one (one thread) */
	X509 **certs;
	size_t lo, hi;
	struct coffer_acc acc;
};

static void *seal_worker(void *arg)
{
	struct seal_job *job = arg;
	cf_sealer *own = NULL, *sealer = job->sealer;
	cf_error err = { 0 };

	if (sealer == NULL) {
		check(cf_sealer_dup(job->parent, &own, &err), "sealer dup", &err);
		sealer = own;
	}
	for (size_t i = job->lo; i < job->hi; i++)
		coffer_one(job->trust, sealer, job->certs[i], &job->acc);
	cf_sealer_free(own);
	return NULL;
}

/* A whole coffer run with threads threads; wall seconds. */
static double coffer_run(const struct fixture *fx, X509 **certs, size_t n,
			 size_t threads, const cf_secret *value,
			 struct coffer_acc *total)
{
	struct seal_job jobs[MAX_THREADS];
	pthread_t tids[MAX_THREADS];
	cf_secret *signed_der;
	cf_sealer *sealer = NULL;
	cf_error err = { 0 };
	double t0 = now_s();

	signed_der = sign_record(fx, value);
	check(cf_sealer_new(signed_der, &sealer, &err), "sealer", &err);
	memset(jobs, 0, sizeof(jobs));
	for (size_t t = 0; t < threads; t++) {
		jobs[t].trust = fx->trust;
		jobs[t].parent = sealer;
		jobs[t].sealer = threads == 1 ? sealer : NULL;
		jobs[t].certs = certs;
		jobs[t].lo = n * t / threads;
		jobs[t].hi = n * (t + 1) / threads;
	}
	if (threads == 1) {
		seal_worker(&jobs[0]);
	} else {
		for (size_t t = 0; t < threads; t++)
			if (pthread_create(&tids[t], NULL, seal_worker, &jobs[t]) != 0)
				die("pthread_create", NULL);
		for (size_t t = 0; t < threads; t++)
			pthread_join(tids[t], NULL);
	}
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	t0 = now_s() - t0;
	if (total != NULL) {
		memset(total, 0, sizeof(*total));
		for (size_t t = 0; t < threads; t++) {
			total->verify_s += jobs[t].acc.verify_s;
			total->seal_s += jobs[t].acc.seal_s;
			total->bytes += jobs[t].acc.bytes;
		}
	}
	return t0;
}

/* Untimed: what the timed path makes opens, and holds the secret. */
static void self_check(const struct fixture *fx)
{
	cf_secret *value = make_secret(), *signed_der = sign_record(fx, value);
	cf_sealer *sealer = NULL;
	cf_record *rec = NULL;
	X509 **certs = parse_agents(fx, 1);
	unsigned char *der = NULL;
	size_t len = 0;
	cf_error err = { 0 };

	if (fx->agent0_key == NULL) {
		/* --certs without --key: nothing to open with. */
		printf("self-check: skipped (no --key for the first certificate)\n");
		free_agents(certs, 1);
		cf_secret_free(signed_der);
		cf_secret_free(value);
		return;
	}
	check(cf_sealer_new(signed_der, &sealer, &err), "sealer", &err);
	check(cf_trust_verify(fx->trust, certs[0], NULL, "agent 0", &err),
	      "verify agent 0", &err);
	check(cf_sealer_seal(sealer, certs[0], &der, &len, &err), "seal", &err);
	if (fx->external) {
		/* The signer's root is not the recipients': decrypt only. */
		cf_secret *content = NULL;

		check(cf_envelope_decrypt(der, len, certs[0], fx->agent0_key,
					  &content, &err), "decrypt", &err);
		if (!cf_secret_equal(content, signed_der))
			die("self-check: the decrypted record differs", NULL);
		cf_secret_free(content);
	} else {
		check(cf_envelope_open(der, len, certs[0], fx->agent0_key,
				       fx->trust, SECRET_NAME, 1, &rec, NULL,
				       &err), "open", &err);
		if (!cf_secret_equal(rec->value, value))
			die("self-check: the opened secret differs", NULL);
	}
	printf("self-check: an envelope of the timed path (%zu bytes) opens with "
	       "%s\n", len, fx->external ? "cf_envelope_decrypt to the same "
	       "signed record" : "cf_envelope_open to the same secret");
	cf_record_free(rec);
	OPENSSL_free(der);
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	cf_secret_free(value);
	free_agents(certs, 1);
}

/* ----------------------------------------------------------- the floor */

struct floor_ctx {
	EVP_PKEY_CTX *keygen;     /* P-256 key generation, reused */
	EVP_PKEY_CTX *verify;     /* ECDSA-SHA256 verify with the root key, reused */
	EVP_MD *sha256;
};

static void floor_ctx_init(struct floor_ctx *fc, const struct fixture *fx)
{
	fc->keygen = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	fc->verify = EVP_PKEY_CTX_new_from_pkey(NULL, fx->root_key, NULL);
	fc->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	ssl_check(fc->keygen != NULL && fc->verify != NULL && fc->sha256 != NULL &&
		  EVP_PKEY_keygen_init(fc->keygen) > 0 &&
		  EVP_PKEY_CTX_set_group_name(fc->keygen, "P-256") > 0 &&
		  EVP_PKEY_verify_init(fc->verify) > 0 &&
		  EVP_PKEY_CTX_set_signature_md(fc->verify, fc->sha256) > 0,
		  "floor contexts");
}

static void floor_ctx_free(struct floor_ctx *fc)
{
	EVP_MD_free(fc->sha256);
	EVP_PKEY_CTX_free(fc->verify);
	EVP_PKEY_CTX_free(fc->keygen);
}

struct floor_acc {
	double verify_s, keygen_s, derive_s;
};

/* One recipient the floor way: agent i's certificate is cert. */
static void floor_one(struct floor_ctx *fc, const struct fixture *fx, size_t i,
		      X509 *cert, struct floor_acc *acc)
{
	unsigned char md[32], z[32];
	size_t z_len = sizeof(z);
	EVP_PKEY *eph = NULL;
	EVP_PKEY_CTX *derive;
	double t0 = now_s(), t1, t2;

	ssl_check(EVP_Digest(fx->der[i] + fx->tbs_off[i], fx->tbs_len[i], md, NULL,
			     fc->sha256, NULL) &&
		  EVP_PKEY_verify(fc->verify, fx->sig[i], fx->sig_len[i], md,
				  sizeof(md)) == 1, "floor verify");
	t1 = now_s();
	ssl_check(EVP_PKEY_keygen(fc->keygen, &eph) > 0, "floor keygen");
	t2 = now_s();
	derive = EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL);
	ssl_check(derive != NULL && EVP_PKEY_derive_init(derive) > 0 &&
		  EVP_PKEY_derive_set_peer_ex(derive, X509_get0_pubkey(cert), 0) > 0 &&
		  EVP_PKEY_derive(derive, z, &z_len) > 0, "floor derive");
	EVP_PKEY_CTX_free(derive);
	EVP_PKEY_free(eph);
	acc->verify_s += t1 - t0;
	acc->keygen_s += t2 - t1;
	acc->derive_s += now_s() - t2;
}

struct floor_job {
	const struct fixture *fx;
	X509 **certs;
	size_t lo, hi;
};

static void *floor_worker(void *arg)
{
	struct floor_job *job = arg;
	struct floor_ctx fc;
	struct floor_acc acc = { 0 };

	floor_ctx_init(&fc, job->fx);
	for (size_t i = job->lo; i < job->hi; i++)
		floor_one(&fc, job->fx, i, job->certs[i], &acc);
	floor_ctx_free(&fc);
	return NULL;
}

/* A whole floor run with threads threads; wall seconds. */
static double floor_run(const struct fixture *fx, X509 **certs, size_t n,
			size_t threads)
{
	struct floor_job jobs[MAX_THREADS];
	pthread_t tids[MAX_THREADS];
	double t0 = now_s();

	for (size_t t = 0; t < threads; t++) {
		jobs[t].fx = fx;
		jobs[t].certs = certs;
		jobs[t].lo = n * t / threads;
		jobs[t].hi = n * (t + 1) / threads;
	}
	if (threads == 1) {
		floor_worker(&jobs[0]);
	} else {
		for (size_t t = 0; t < threads; t++)
			if (pthread_create(&tids[t], NULL, floor_worker, &jobs[t]) != 0)
				die("pthread_create", NULL);
		for (size_t t = 0; t < threads; t++)
			pthread_join(tids[t], NULL);
	}
	return now_s() - t0;
}

/* ------------------------------------------------------- measurement */

/* One repetition of the single-thread comparison, in seconds. */
struct pair {
	double c_wall, c_cpu, c_fixed;
	struct coffer_acc c;
	double f_wall, f_cpu;
	struct floor_acc f;
	double x509_verify_s;     /* reference: X509_verify, timed apart */
};

/*
 * One coffer run and the floor over the same recipients, interleaved by
 * chunks (see the top of the file).  The coffer side is a complete,
 * ordinary run: record, signature and sealer first, then every recipient;
 * the floor's chunks only run in its pauses, and are timed apart.
 */
static struct pair pair_run(const struct fixture *fx, X509 **certs, size_t n,
			    const cf_secret *value)
{
	struct pair p;
	struct floor_ctx fc;
	cf_secret *signed_der;
	cf_sealer *sealer = NULL;
	cf_error err = { 0 };
	double w, c;

	memset(&p, 0, sizeof(p));
	floor_ctx_init(&fc, fx);
	w = now_s();
	c = cpu_s();
	signed_der = sign_record(fx, value);
	check(cf_sealer_new(signed_der, &sealer, &err), "sealer", &err);
	p.c_fixed = now_s() - w;
	p.c_cpu = cpu_s() - c;
	for (size_t lo = 0; lo < n; lo += CHUNK) {
		size_t hi = n - lo < CHUNK ? n : lo + CHUNK;

		w = now_s();
		c = cpu_s();
		for (size_t i = lo; i < hi; i++)
			coffer_one(fx->trust, sealer, certs[i], &p.c);
		p.c_wall += now_s() - w;
		p.c_cpu += cpu_s() - c;
		w = now_s();
		c = cpu_s();
		for (size_t i = lo; i < hi; i++)
			floor_one(&fc, fx, i, certs[i], &p.f);
		p.f_wall += now_s() - w;
		p.f_cpu += cpu_s() - c;
		/*
		 * Reference: the other floor verify the issue allows, OpenSSL's
		 * X509_verify (an EVP_DigestVerify with a fresh context per call).
		 */
		w = now_s();
		for (size_t i = lo; i < hi; i++)
			ssl_check(X509_verify(certs[i], fx->root_key) == 1,
				  "X509_verify");
		p.x509_verify_s += now_s() - w;
	}
	w = now_s();
	c = cpu_s();
	cf_sealer_free(sealer);
	cf_secret_free(signed_der);
	p.c_fixed += now_s() - w;
	p.c_cpu += cpu_s() - c;
	p.c_wall += p.c_fixed;
	floor_ctx_free(&fc);
	return p;
}

struct single_result {
	double c_wall, c_cpu, c_verify, c_seal, c_fixed;
	double f_wall, f_cpu, f_verify, f_keygen, f_derive;
	double ratio_wall, ratio_cpu, x509_verify, ratio_x509;
};

static struct single_result measure_single(const struct fixture *fx, size_t n,
					   size_t reps, const cf_secret *value)
{
	double v[14][MAX_REPS];
	struct single_result r;
	double dn = (double)n / 1e6;     /* seconds -> us per recipient */

	memset(&r, 0, sizeof(r));
	for (size_t k = 0; k < reps; k++) {
		X509 **certs = parse_agents(fx, n);
		struct pair p = pair_run(fx, certs, n, value);

		free_agents(certs, n);
		v[0][k] = p.c_wall / dn;
		v[1][k] = p.c_cpu / dn;
		v[2][k] = p.c.verify_s / dn;
		v[3][k] = p.c.seal_s / dn;
		v[4][k] = p.c_fixed / dn;
		v[5][k] = p.f_wall / dn;
		v[6][k] = p.f_cpu / dn;
		v[7][k] = p.f.verify_s / dn;
		v[8][k] = p.f.keygen_s / dn;
		v[9][k] = p.f.derive_s / dn;
		v[10][k] = p.c_wall / p.f_wall;
		v[11][k] = p.c_cpu / p.f_cpu;
		v[12][k] = p.x509_verify_s / dn;
		v[13][k] = p.c_wall /
			   (p.f_wall - p.f.verify_s + p.x509_verify_s);
	}
	r.c_wall = median(v[0], reps);
	r.c_cpu = median(v[1], reps);
	r.c_verify = median(v[2], reps);
	r.c_seal = median(v[3], reps);
	r.c_fixed = median(v[4], reps);
	r.f_wall = median(v[5], reps);
	r.f_cpu = median(v[6], reps);
	r.f_verify = median(v[7], reps);
	r.f_keygen = median(v[8], reps);
	r.f_derive = median(v[9], reps);
	r.ratio_wall = median(v[10], reps);
	r.ratio_cpu = median(v[11], reps);
	r.x509_verify = median(v[12], reps);
	r.ratio_x509 = median(v[13], reps);
	return r;
}

struct thread_result {
	double c_wall, c_speedup, f_wall, f_speedup;  /* us per recipient */
};

/*
 * Whole runs with each thread count of ths (and 1, the baseline), coffer
 * then floor, per repetition; speedups are taken within a repetition.
 */
static void measure_threads(const struct fixture *fx, size_t n,
			    const size_t *ths, size_t n_ths, size_t reps,
			    const cf_secret *value, struct thread_result *out)
{
	static double cw[MAX_LIST][MAX_REPS], fw[MAX_LIST][MAX_REPS];
	static double cs[MAX_LIST][MAX_REPS], fs[MAX_LIST][MAX_REPS];
	double dn = (double)n / 1e6;

	for (size_t k = 0; k < reps; k++) {
		X509 **certs = parse_agents(fx, n);
		double c1 = coffer_run(fx, certs, n, 1, value, NULL);
		double f1 = floor_run(fx, certs, n, 1);

		free_agents(certs, n);
		for (size_t t = 0; t < n_ths; t++) {
			double c, f;

			if (ths[t] == 1 || ths[t] > n) {
				c = c1;   /* more threads than recipients: not run */
				f = f1;
			} else {
				certs = parse_agents(fx, n);
				c = coffer_run(fx, certs, n, ths[t], value, NULL);
				f = floor_run(fx, certs, n, ths[t]);
				free_agents(certs, n);
			}
			cw[t][k] = c / dn;
			fw[t][k] = f / dn;
			cs[t][k] = c1 / c;
			fs[t][k] = f1 / f;
		}
	}
	for (size_t t = 0; t < n_ths; t++) {
		out[t].c_wall = median(cw[t], reps);
		out[t].f_wall = median(fw[t], reps);
		out[t].c_speedup = median(cs[t], reps);
		out[t].f_speedup = median(fs[t], reps);
	}
}

struct mem_note {
	long certs_kib, rss_kib, hwm_kib;
	size_t heap_before, heap_after;
	struct coffer_acc acc;
};

/* One whole single-thread coffer run, for its memory (not its time). */
static struct mem_note measure_memory(const struct fixture *fx, size_t n,
				      const cf_secret *value)
{
	struct mem_note m;
	long before_kib = status_kib("VmRSS:");
	X509 **certs = parse_agents(fx, n);

	memset(&m, 0, sizeof(m));
	m.certs_kib = status_kib("VmRSS:") - before_kib;
	malloc_trim(0);
	m.heap_before = mallinfo2().uordblks;
	m.hwm_kib = reset_peak_rss() == 0 ? 0 : -1;
	m.rss_kib = status_kib("VmRSS:");
	coffer_run(fx, certs, n, 1, value, &m.acc);
	if (m.hwm_kib == 0)
		m.hwm_kib = status_kib("VmHWM:");
	m.heap_after = mallinfo2().uordblks;
	free_agents(certs, n);
	return m;
}

/* --------------------------------------------------------------- main */

static void header(size_t reps)
{
	char model[128] = "unknown CPU", line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");
	struct utsname uts;
	double load[3] = { 0 };

	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "model name", 10) == 0) {
			char *colon = strchr(line, ':');

			if (colon != NULL) {
				snprintf(model, sizeof(model), "%s", colon + 2);
				model[strcspn(model, "\n")] = '\0';
			}
			break;
		}
	if (f != NULL)
		fclose(f);
	uname(&uts);
	if (getloadavg(load, 3) < 0)
		load[0] = load[1] = load[2] = -1;
	printf("coffer bench/fanout: seal one %d-byte secret to N recipients, with "
	       "--root verification\n", SECRET_BYTES);
	printf("  coffer: record + cf_envelope_sign + cf_sealer_new once, then per "
	       "recipient\n"
	       "          cf_trust_verify (root-only store, CRL) + cf_sealer_seal "
	       "(DER counted, freed)\n");
	printf("  floor:  OpenSSL EVP per recipient: ECDSA P-256 verify of the "
	       "agent cert\n"
	       "          (SHA-256 of TBS + EVP_PKEY_verify, ctx reused) + P-256 "
	       "keygen (ctx reused)\n"
	       "          + ECDH derive (ctx per ephemeral key, peer not "
	       "re-validated, as coffer)\n");
	printf("  ratio = coffer / floor per recipient; target <= 1.30 "
	       "single-threaded at N = 10000\n");
	printf("machine: %ld cores online, %s, %s %s\n",
	       sysconf(_SC_NPROCESSORS_ONLN), model, uts.sysname, uts.release);
	printf("openssl: %s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("load average at start: %.2f %.2f %.2f; medians of %zu "
	       "repetitions\n\n", load[0], load[1], load[2], reps);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: fanout [--n LIST] [--threads LIST] [--reps R] [--quick]\n"
		"              [--certs F --root F [--crl F] [--key F]] [--threads-only]\n"
		"  --n LIST        recipient counts (default 1,1000,10000)\n"
		"  --threads LIST  thread counts (default 1; e.g. 1,2)\n"
		"  --reps R        repetitions per measurement (default 5)\n"
		"  --quick         smoke run: --n 1,100 --reps 3\n"
		"  --certs F       seal to these certificates (PEM, concatenated)\n"
		"                  instead of making agents; --n defaults to all of\n"
		"                  them; verified against --root F and --crl F;\n"
		"                  --key F: the first one's key, for the self-check\n"
		"  --threads-only  only the whole runs of --threads (no single-\n"
		"                  thread table, no memory run); ends with a line\n"
		"                  \"json {...}\" of the medians, in ms\n");
}

int main(int argc, char **argv)
{
	size_t ns[MAX_LIST] = { 1, 1000, 10000 }, n_ns = 3;
	size_t ths[MAX_LIST] = { 1 }, n_ths = 1, reps = 5, max_n = 0;
	struct single_result single[MAX_LIST];
	struct thread_result thr[MAX_LIST][MAX_LIST];
	struct mem_note mem[MAX_LIST];
	struct fixture fx;
	cf_secret *value;
	cf_error err = { 0 };
	double t_start = now_s();
	int with_threads = 0, threads_only = 0, n_given = 0;
	const char *certs_path = NULL, *root_path = NULL, *crl_path = NULL;
	const char *key_path = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		size_t one;

		if (strcmp(a, "--n") == 0 && v != NULL) {
			if (parse_list(v, ns, MAX_LIST, &n_ns))
				goto bad;
			n_given = 1;
			i++;
		} else if (strcmp(a, "--threads") == 0 && v != NULL) {
			if (parse_list(v, ths, MAX_LIST, &n_ths))
				goto bad;
			for (size_t t = 0; t < n_ths; t++)
				if (ths[t] > MAX_THREADS)
					goto bad;
			i++;
		} else if (strcmp(a, "--reps") == 0 && v != NULL) {
			if (parse_list(v, &reps, 1, &one) || reps > MAX_REPS)
				goto bad;
			i++;
		} else if (strcmp(a, "--quick") == 0) {
			ns[0] = 1;
			ns[1] = 100;
			n_ns = 2;
			reps = 3;
		} else if (strcmp(a, "--certs") == 0 && v != NULL) {
			certs_path = argv[++i];
		} else if (strcmp(a, "--root") == 0 && v != NULL) {
			root_path = argv[++i];
		} else if (strcmp(a, "--crl") == 0 && v != NULL) {
			crl_path = argv[++i];
		} else if (strcmp(a, "--key") == 0 && v != NULL) {
			key_path = argv[++i];
		} else if (strcmp(a, "--threads-only") == 0) {
			threads_only = 1;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			goto bad;
		}
	}
	if ((certs_path == NULL) != (root_path == NULL))
		goto bad;
	for (size_t k = 0; k < n_ns; k++)
		if (ns[k] > max_n)
			max_n = ns[k];
	for (size_t t = 0; t < n_ths; t++)
		if (ths[t] > 1)
			with_threads = 1;
	if (threads_only)
		with_threads = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	check(cf_secmem_init(0, NULL, &err), "secure heap", &err);
	check(cf_pki_init(&err), "pki", &err);
	header(reps);
	{
		long rss0 = status_kib("VmRSS:"), rss1;

		if (certs_path != NULL) {
			fixture_load(&fx, certs_path, root_path, crl_path, key_path);
			if (!n_given) {
				ns[0] = fx.n;
				n_ns = 1;
			} else if (max_n > fx.n) {
				fprintf(stderr, "fanout: --n %zu is more than the %zu "
					"certificates of --certs\n", max_n, fx.n);
				return 2;
			}
		} else {
			fixture_make(&fx, max_n);
		}
		rss1 = status_kib("VmRSS:");
		printf("memory: the set-up holds %.1f MiB (VmRSS %ld -> %ld KiB)\n",
		       (double)(rss1 - rss0) / 1024.0, rss0, rss1);
	}
	self_check(&fx);
	value = make_secret();

	if (!threads_only) {
		printf("\nsingle thread, coffer and floor interleaved by chunks of %d "
		       "recipients; us per recipient\n", CHUNK);
		printf("(coffer = verify + seal + fixed: record, signature and sealer "
		       "set-up spread over N;\n floor = verify + keygen + derive)\n\n");
		printf("%6s | %7s %7s %7s %7s %6s | %7s %7s %7s %7s %7s | %5s %5s "
		       "| %7s %5s\n",
		       "", "coffer", "", "", "", "", "floor", "", "", "", "",
		       "ratio", "", "ref.", "");
		printf("%6s | %7s %7s %7s %7s %6s | %7s %7s %7s %7s %7s | %5s %5s "
		       "| %7s %5s\n",
		       "N", "wall", "cpu", "verify", "seal", "fixed", "wall", "cpu",
		       "verify", "keygen", "derive", "wall", "cpu", "X509_v", "ratio");
		for (size_t k = 0; k < n_ns; k++) {
			struct single_result *r = &single[k];

			mem[k] = measure_memory(&fx, ns[k], value);
			*r = measure_single(&fx, ns[k], reps, value);
			printf("%6zu | %7.1f %7.1f %7.1f %7.1f %6.1f | %7.1f %7.1f %7.1f "
			       "%7.1f %7.1f | %5.3f %5.3f | %7.1f %5.3f\n",
			       ns[k], r->c_wall, r->c_cpu, r->c_verify, r->c_seal, r->c_fixed,
			       r->f_wall, r->f_cpu, r->f_verify, r->f_keygen, r->f_derive,
			       r->ratio_wall, r->ratio_cpu, r->x509_verify, r->ratio_x509);
		}
		printf("(ratio: median of the per-repetition ratios; cpu: process CPU "
		       "time, which time taken\n by other processes does not inflate.  "
		       "ref.: the floor's other allowed verify, OpenSSL's\n X509_verify "
		       "(a fresh EVP_DigestVerify context per call), timed in the same "
		       "chunks, and\n the wall ratio with it in place of the direct "
		       "verify; the target is on the strict one)\n");
	}

	if (with_threads) {
		printf("\nthreads: whole runs, wall us per recipient; speedup = "
		       "1 thread / T threads, same repetition\n\n");
		printf("%6s %3s | %8s %7s | %8s %7s\n", "N", "T", "coffer", "speedup",
		       "floor", "speedup");
		for (size_t k = 0; k < n_ns; k++) {
			measure_threads(&fx, ns[k], ths, n_ths, reps, value, thr[k]);
			for (size_t t = 0; t < n_ths; t++)
				if (ths[t] <= ns[k])
					printf("%6zu %3zu | %8.1f %6.2fx | %8.1f %6.2fx\n",
					       ns[k], ths[t], thr[k][t].c_wall,
					       thr[k][t].c_speedup, thr[k][t].f_wall,
					       thr[k][t].f_speedup);
		}
		printf("(the floor's speedup is what this machine gives right now, "
		       "with whatever else runs on it)\n");
	}
	if (threads_only) {
		/* For scripts: whole runs in ms, the last N, each thread count. */
		size_t k = n_ns - 1;
		double ms = (double)ns[k] / 1000.0, parse[MAX_LIST];

		printf("\nparsing the %zu certificates from DER (d2i_X509), not in "
		       "the runs above; wall ms\n", ns[k]);
		for (size_t t = 0; t < n_ths; t++) {
			double v[MAX_REPS];

			for (size_t r = 0; r < reps; r++)
				v[r] = parse_run(&fx, ns[k], ths[t]) * 1000.0;
			parse[t] = median(v, reps);
			printf("%6zu %3zu | %8.1f ms = %.1f us per certificate\n",
			       ns[k], ths[t], parse[t],
			       parse[t] * 1000.0 / (double)ns[k]);
		}
		printf("json {\"n\":%zu,\"runs\":[", ns[k]);
		for (size_t t = 0; t < n_ths; t++)
			printf("%s{\"threads\":%zu,\"coffer_ms\":%.1f,"
			       "\"floor_ms\":%.1f,\"parse_ms\":%.1f}", t ? "," : "",
			       ths[t], thr[k][t].c_wall * ms, thr[k][t].f_wall * ms,
			       parse[t]);
		printf("]}\n");
		cf_secret_free(value);
		fixture_free(&fx);
		return 0;
	}

	printf("\nmemory of one whole sealing run per N (1 thread; heap trimmed "
	       "and VmHWM reset just before)\n");
	for (size_t k = 0; k < n_ns; k++) {
		const struct mem_note *m = &mem[k];
		double dn = (double)ns[k], peak, kept;

		if (m->hwm_kib < 0) {
			printf("  N = %6zu: the peak RSS mark could not be reset\n", ns[k]);
			continue;
		}
		peak = (double)(m->hwm_kib - m->rss_kib) * 1024.0;
		kept = (double)m->heap_after - (double)m->heap_before;
		printf("  N = %6zu: peak RSS +%.0f KiB = %.0f B/rcpt; of the heap, "
		       "%.0f B/rcpt stays in the certificates\n"
		       "%14s (OpenSSL's caches, filled by verification); parsed "
		       "certificates: %.1f KiB/rcpt;\n"
		       "%14s %.1f MiB of envelopes made and freed one by one\n",
		       ns[k], peak / 1024.0, peak / dn, kept / dn, "",
		       (double)m->certs_kib / dn, "", (double)m->acc.bytes / 1048576.0);
	}
	printf("  process peak RSS since the last reset: %ld KiB\n",
	       status_kib("VmHWM:"));
	printf("\ntotal time %.1f s\n", now_s() - t_start);

	cf_secret_free(value);
	fixture_free(&fx);
	return 0;
bad:
	usage(stderr);
	return 2;
}
