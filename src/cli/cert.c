/*
 * cert.c - `coffer cert issue` and `coffer cert show`.
 *
 * issue signs a request as an operator, enroller, agent or cluster
 * certificate, by the root (--ca DIR) or by an enroller (--issuer-cert,
 * --issuer-key), within what the issuer may issue.  A certificate issued
 * by an enroller is written followed by the enroller's certificate, so
 * that whoever verifies it against the root finds the whole chain.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/x509v3.h>

#include "cli.h"
#include "pki.h"
#include "policy.h"

#define MAX_LIST 256

static void cert_usage(FILE *out)
{
	fprintf(out,
		"usage: coffer cert issue (--ca DIR | --issuer-cert C --issuer-key K)\n"
		"                         --csr CSR --out CRT\n"
		"                         --kind operator|enroller|agent|cluster\n"
		"                         [--perm VERB:SCOPE]... [--group G]...\n"
		"                         [--cluster NAME] [--days N] [--pass-file F]\n"
		"       coffer cert show FILE [--json]\n"
		"\n"
		"issue  signs CSR.  operator and enroller take --perm rules (VERB is\n"
		"       secret.read, secret.write, agent.enroll, agent.manage,\n"
		"       token.create, audit.read or admin; SCOPE a glob such as\n"
		"       prod/db/*); an agent takes --group; a cluster (and a cluster\n"
		"       member agent) takes --cluster.  An enroller may only issue\n"
		"       agents and clusters its agent.enroll rules cover.  Default\n"
		"       validity 825 days, never beyond the issuer's.\n"
		"show   prints subject, fingerprint (SHA-256 of the DER), validity,\n"
		"       kind, permissions, groups, cluster and issuer.\n");
}

static int cert_issue(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'c' },
		{ "issuer-cert", required_argument, NULL, 'C' },
		{ "issuer-key", required_argument, NULL, 'K' },
		{ "csr", required_argument, NULL, 'r' },
		{ "out", required_argument, NULL, 'o' },
		{ "kind", required_argument, NULL, 'k' },
		{ "perm", required_argument, NULL, 'P' },
		{ "group", required_argument, NULL, 'g' },
		{ "cluster", required_argument, NULL, 'l' },
		{ "days", required_argument, NULL, 'D' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ca_dir = NULL, *issuer_cert = NULL, *issuer_key = NULL;
	const char *csr_path = NULL, *out = NULL, *kind_name = NULL;
	const char *perms[MAX_LIST], *groups[MAX_LIST];
	char cert_path[PATH_MAX], key_path[PATH_MAX], fp[65];
	char cn[CF_CN_MAX_BYTES + 1], issuer_cn[CF_CN_MAX_BYTES + 1];
	unsigned long long days = 0;
	cf_cert_spec spec = { 0 };
	cli_pass pass = { 0 };
	X509 *issuer = NULL, *cert = NULL;
	EVP_PKEY *key = NULL;
	X509_REQ *csr = NULL;
	unsigned char *csr_buf = NULL, *pem = NULL, *chain_pem = NULL;
	size_t csr_len = 0, pem_len = 0, chain_len = 0;
	cf_error err = { 0 };
	cf_status rc;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': ca_dir = optarg; break;
		case 'C': issuer_cert = optarg; break;
		case 'K': issuer_key = optarg; break;
		case 'r': csr_path = optarg; break;
		case 'o': out = optarg; break;
		case 'k': kind_name = optarg; break;
		case 'P':
			if (spec.n_perms == MAX_LIST)
				return cli_usage("cert issue", "too many --perm");
			perms[spec.n_perms++] = optarg;
			break;
		case 'g':
			if (spec.n_groups == MAX_LIST)
				return cli_usage("cert issue", "too many --group");
			groups[spec.n_groups++] = optarg;
			break;
		case 'l': spec.cluster = optarg; break;
		case 'D':
			if (cli_parse_uint("cert issue", "--days", optarg, 36500, &days))
				return 2;
			break;
		case 'p': pass.file = optarg; break;
		case 'h': cert_usage(stdout); return 0;
		default: return cli_bad_option("cert issue");
		}
	}
	if (optind != argc)
		return cli_usage("cert issue", "unexpected argument \"%s\"", argv[optind]);
	if (csr_path == NULL || out == NULL || kind_name == NULL)
		return cli_usage("cert issue", "--csr, --out and --kind are required");
	if ((ca_dir != NULL) == (issuer_cert != NULL || issuer_key != NULL))
		return cli_usage("cert issue",
			"give either --ca DIR or both --issuer-cert and --issuer-key");
	if (ca_dir == NULL && (issuer_cert == NULL || issuer_key == NULL))
		return cli_usage("cert issue",
			"--issuer-cert and --issuer-key go together");
	spec.kind = cf_kind_from_name(kind_name);
	if (spec.kind == CF_KIND_UNKNOWN || spec.kind == CF_KIND_ROOT)
		return cli_usage("cert issue", "--kind must be operator, enroller, "
				 "agent or cluster, not \"%s\"", kind_name);
	spec.perms = perms;
	spec.groups = groups;
	spec.days = (int)days;
	if (ca_dir != NULL) {
		snprintf(cert_path, sizeof(cert_path), "%s/root.crt", ca_dir);
		snprintf(key_path, sizeof(key_path), "%s/root.key", ca_dir);
		issuer_cert = cert_path;
		issuer_key = key_path;
	}
	rc = cli_read_file(csr_path, CF_PEM_MAX_BYTES, &csr_buf, &csr_len, &err);
	if (rc == CF_OK)
		rc = cf_csr_parse(csr_buf, csr_len, csr_path, &csr, &err);
	if (rc == CF_OK)
		rc = cli_load_cert(issuer_cert, &issuer, NULL, &err);
	if (rc == CF_OK)
		rc = cli_load_key(issuer_key, &pass, &key, &err);
	if (rc == CF_OK)
		rc = cf_cert_issue(issuer, key, csr, &spec, &cert, &err);
	if (rc == CF_OK)
		rc = cf_cert_to_pem(cert, &pem, &pem_len, &err);
	if (rc == CF_OK && cf_cert_kind(issuer) != CF_KIND_ROOT)
		rc = cf_cert_to_pem(issuer, &chain_pem, &chain_len, &err);
	if (rc == CF_OK && chain_pem != NULL) {
		unsigned char *both = OPENSSL_malloc(pem_len + chain_len);

		if (both == NULL) {
			rc = cf_error_set(&err, CF_ERR_NOMEM, "out of memory");
		} else {
			memcpy(both, pem, pem_len);
			memcpy(both + pem_len, chain_pem, chain_len);
			OPENSSL_free(pem);
			pem = both;
			pem_len += chain_len;
		}
	}
	if (rc == CF_OK)
		rc = cli_write_file(out, pem, pem_len, 0644, 0, &err);
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(cert, fp, &err);
	if (rc == CF_OK) {
		cf_cert_cn(cert, cn, sizeof(cn));
		cf_cert_cn(issuer, issuer_cn, sizeof(issuer_cn));
		printf("issued %s certificate \"%s\" to %s, signed by \"%s\"\n"
		       "  fingerprint %s\n", cf_kind_name(spec.kind), cn, out,
		       issuer_cn, fp);
	}
	OPENSSL_free(chain_pem);
	OPENSSL_free(pem);
	OPENSSL_free(csr_buf);
	X509_REQ_free(csr);
	X509_free(cert);
	X509_free(issuer);
	EVP_PKEY_free(key);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

static json_t *split_list(const char *text, const char *seps)
{
	json_t *arr = json_array();
	char *copy, *save = NULL;

	if (arr == NULL || text == NULL)
		return arr;
	copy = OPENSSL_strdup(text);
	for (char *t = copy ? strtok_r(copy, seps, &save) : NULL; t != NULL;
	     t = strtok_r(NULL, seps, &save))
		json_array_append_new(arr, json_string(t));
	OPENSSL_free(copy);
	return arr;
}

static int cert_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char fp[65], nb[32], na[32], cn[CF_CN_MAX_BYTES + 1];
	char *subject = NULL, *issuer = NULL, *perms = NULL, *groups = NULL;
	char *cluster = NULL, *serial = NULL;
	json_t *obj = NULL;
	X509 *cert = NULL;
	cf_error err = { 0 };
	cf_status rc;
	int c, as_json = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': as_json = 1; break;
		case 'h': cert_usage(stdout); return 0;
		default: return cli_bad_option("cert show");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("cert show", "give exactly one certificate FILE");
	rc = cli_load_cert(argv[optind], &cert, NULL, &err);
	if (rc == CF_OK)
		rc = cf_cert_fingerprint(cert, fp, &err);
	if (rc == CF_OK)
		rc = cf_cert_ext_text(cert, cf_nid_perms(), &perms, &err);
	if (rc == CF_OK)
		rc = cf_cert_ext_text(cert, cf_nid_groups(), &groups, &err);
	if (rc == CF_OK)
		rc = cf_cert_ext_text(cert, cf_nid_cluster(), &cluster, &err);
	if (rc != CF_OK)
		goto out;
	subject = cf_name_text(X509_get_subject_name(cert));
	issuer = cf_name_text(X509_get_issuer_name(cert));
	serial = cli_int_hex(X509_get0_serialNumber(cert));
	cf_cert_cn(cert, cn, sizeof(cn));
	cli_iso_time(X509_get0_notBefore(cert), nb, sizeof(nb));
	cli_iso_time(X509_get0_notAfter(cert), na, sizeof(na));
	if (as_json) {
		obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, "
				"s:o, s:o, s:o, s:b}",
			"subject", subject ? subject : "", "cn", cn,
			"issuer", issuer ? issuer : "",
			"kind", cf_kind_name(cf_cert_kind(cert)),
			"fingerprint", fp, "serial", serial ? serial : "",
			"not_before", nb,
			"not_before_unix", (json_int_t)cf_asn1_time_unix(X509_get0_notBefore(cert)),
			"not_after_unix", (json_int_t)cf_asn1_time_unix(X509_get0_notAfter(cert)),
			"permissions", split_list(perms, "\n"),
			"groups", split_list(groups, ","),
			"cluster", cluster ? json_string(cluster) : json_null(),
			"ca", X509_check_ca(cert) > 0);
		if (obj == NULL || json_object_set_new(obj, "not_after", json_string(na)) != 0) {
			rc = cf_error_set(&err, CF_ERR_NOMEM, "could not build JSON");
			goto out;
		}
		json_dumpf(obj, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		printf("subject:     %s\n", subject ? subject : "");
		printf("kind:        %s\n", cf_kind_name(cf_cert_kind(cert)));
		printf("fingerprint: %s\n", fp);
		printf("serial:      %s\n", serial ? serial : "");
		printf("valid:       %s to %s\n", nb, na);
		printf("issuer:      %s\n", issuer ? issuer : "");
		if (perms != NULL) {
			char *save = NULL;

			for (char *r = strtok_r(perms, "\n", &save); r;
			     r = strtok_r(NULL, "\n", &save))
				printf("permission:  %s\n", r);
		}
		if (groups != NULL)
			printf("groups:      %s\n", groups);
		if (cluster != NULL)
			printf("cluster:     %s\n", cluster);
	}
out:
	json_decref(obj);
	OPENSSL_free(subject);
	OPENSSL_free(issuer);
	OPENSSL_free(perms);
	OPENSSL_free(groups);
	OPENSSL_free(cluster);
	OPENSSL_free(serial);
	X509_free(cert);
	return rc == CF_OK ? 0 : cli_fail(&err);
}

int cmd_cert(int argc, char **argv)
{
	static const cli_sub subs[] = {
		{ "issue", cert_issue },
		{ "show", cert_show },
	};

	return cli_dispatch(argc, argv, subs, sizeof(subs) / sizeof(subs[0]),
			    cert_usage);
}
