/*
 * test_error.c - the cf_error convention (error.h).
 *
 * What users see is one sentence of ours plus at most one OpenSSL reason,
 * never a raw stack; and a NULL cf_error is always allowed.
 */
#include "fixture.h"

#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

static void set_formats_and_returns_code(void **state)
{
	cf_error err = { 0 };

	(void)state;
	assert_int_equal(cf_error_set(&err, CF_ERR_IO, "cannot read %s: %d",
				      "root.crt", 42), CF_ERR_IO);
	assert_int_equal(err.code, CF_ERR_IO);
	assert_string_equal(err.msg, "cannot read root.crt: 42");
}

static void set_truncates_long_sentences(void **state)
{
	char big[CF_ERROR_MAX * 3];
	cf_error err;

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memset(&err, 0x55, sizeof(err)); /* no NUL to lean on */
	cf_error_set(&err, CF_ERR_PARSE, "%s%s", "head:", big);
	assert_int_equal(err.code, CF_ERR_PARSE);
	assert_int_equal(strlen(err.msg), CF_ERROR_MAX - 1);
	assert_memory_equal(err.msg, "head:aaa", 8);
}

static void null_error_is_fine(void **state)
{
	(void)state;
	assert_int_equal(cf_error_set(NULL, CF_ERR_TAMPERED, "x %d", 1),
			 CF_ERR_TAMPERED);
	ERR_raise(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE);
	assert_int_equal(cf_error_set_ssl(NULL, CF_ERR_CRYPTO, "y"),
			 CF_ERR_CRYPTO);
	/* Even with nowhere to put the reason, the queue is not left behind. */
	assert_int_equal(ERR_peek_error(), 0);
	cf_error_clear(NULL);
}

static void set_ssl_appends_oldest_reason_and_clears(void **state)
{
	const char *first, *second;
	cf_error err = { 0 };

	(void)state;
	ERR_clear_error();
	ERR_raise(ERR_LIB_X509, X509_R_KEY_VALUES_MISMATCH);
	ERR_raise(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE);
	first = ERR_reason_error_string(ERR_PACK(ERR_LIB_X509, 0,
						 X509_R_KEY_VALUES_MISMATCH));
	second = ERR_reason_error_string(ERR_PACK(ERR_LIB_X509, 0,
						  X509_R_CERT_ALREADY_IN_HASH_TABLE));
	assert_non_null(first);
	assert_non_null(second);

	assert_int_equal(cf_error_set_ssl(&err, CF_ERR_USAGE, "key of %s",
					  "alice"), CF_ERR_USAGE);
	assert_int_equal(err.code, CF_ERR_USAGE);
	/* Our sentence first, then exactly one reason: the root cause. */
	assert_memory_equal(err.msg, "key of alice", strlen("key of alice"));
	assert_non_null(strstr(err.msg, first));
	assert_null(strstr(err.msg, second));
	/* Exactly "SENTENCE (REASON)": what docs/EXIT-CODES.md tells users to read. */
	{
		char want[CF_ERROR_MAX];

		snprintf(want, sizeof(want), "key of alice (%s)", first);
		assert_string_equal(err.msg, want);
	}
	assert_int_equal(ERR_peek_error(), 0);
}

static void set_ssl_with_empty_queue_is_plain(void **state)
{
	cf_error err = { 0 };

	(void)state;
	ERR_clear_error();
	cf_error_set_ssl(&err, CF_ERR_CRYPTO, "could not sign %s", "the CRL");
	assert_string_equal(err.msg, "could not sign the CRL");
}

static void set_ssl_on_a_full_sentence_stays_bounded(void **state)
{
	char big[CF_ERROR_MAX * 2];
	cf_error err = { 0 };

	(void)state;
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ERR_raise(ERR_LIB_X509, X509_R_KEY_VALUES_MISMATCH);
	cf_error_set_ssl(&err, CF_ERR_CRYPTO, "%s", big);
	assert_int_equal(strlen(err.msg), CF_ERROR_MAX - 1);
	assert_int_equal(ERR_peek_error(), 0);
}

static void clear_resets(void **state)
{
	cf_error err = { 0 };

	(void)state;
	cf_error_set(&err, CF_ERR_NAME, "swapped");
	cf_error_clear(&err);
	assert_int_equal(err.code, CF_OK);
	assert_string_equal(err.msg, "");
}

static void status_names_are_stable(void **state)
{
	static const struct {
		cf_status code;
		const char *name;
	} all[] = {
		{ CF_OK, "CF_OK" },
		{ CF_ERR_USAGE, "CF_ERR_USAGE" },
		{ CF_ERR_IO, "CF_ERR_IO" },
		{ CF_ERR_NOMEM, "CF_ERR_NOMEM" },
		{ CF_ERR_CRYPTO, "CF_ERR_CRYPTO" },
		{ CF_ERR_PARSE, "CF_ERR_PARSE" },
		{ CF_ERR_TOO_LARGE, "CF_ERR_TOO_LARGE" },
		{ CF_ERR_PASSPHRASE, "CF_ERR_PASSPHRASE" },
		{ CF_ERR_POLICY, "CF_ERR_POLICY" },
		{ CF_ERR_EXISTS, "CF_ERR_EXISTS" },
		{ CF_ERR_TRUNCATED, "CF_ERR_TRUNCATED" },
		{ CF_ERR_MALFORMED, "CF_ERR_MALFORMED" },
		{ CF_ERR_NOT_RECIPIENT, "CF_ERR_NOT_RECIPIENT" },
		{ CF_ERR_UNDECRYPTABLE, "CF_ERR_UNDECRYPTABLE" },
		{ CF_ERR_TAMPERED, "CF_ERR_TAMPERED" },
		{ CF_ERR_SIGNATURE, "CF_ERR_SIGNATURE" },
		{ CF_ERR_UNTRUSTED, "CF_ERR_UNTRUSTED" },
		{ CF_ERR_REVOKED, "CF_ERR_REVOKED" },
		{ CF_ERR_PERMISSION, "CF_ERR_PERMISSION" },
		{ CF_ERR_NAME, "CF_ERR_NAME" },
		{ CF_ERR_ROLLBACK, "CF_ERR_ROLLBACK" },
		{ CF_ERR_RECORD, "CF_ERR_RECORD" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		assert_string_equal(cf_status_name(all[i].code), all[i].name);
	assert_string_equal(cf_status_name((cf_status)-999), "CF_ERR_UNKNOWN");
	assert_string_equal(cf_status_name((cf_status)7), "CF_ERR_UNKNOWN");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(set_formats_and_returns_code),
		cmocka_unit_test(set_truncates_long_sentences),
		cmocka_unit_test(null_error_is_fine),
		cmocka_unit_test(set_ssl_appends_oldest_reason_and_clears),
		cmocka_unit_test(set_ssl_with_empty_queue_is_plain),
		cmocka_unit_test(set_ssl_on_a_full_sentence_stays_bounded),
		cmocka_unit_test(clear_resets),
		cmocka_unit_test(status_names_are_stable),
	};

	return cmocka_run_group_tests_name("error", tests, fx_group_setup, NULL);
}
