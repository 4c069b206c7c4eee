#!/usr/bin/env bash
#
# interop.sh - the envelope is standard CMS, both ways (DESIGN section 3):
# `openssl cms -decrypt` then `openssl cms -verify` open coffer's
# envelopes to the exact record, and an envelope made by openssl alone
# around a record written by this script opens with `coffer open` --
# unless its signer lacks secret.write.

. "$(dirname "$0")/lib.sh"

step "PKI"
mk_ca "$W/ca" "Acme"
mk_ca "$W/other" "Other"
mk_operator alice "$W/ca" 'secret.write:app/*'
mk_operator bob "$W/ca" 'secret.read:app/*' 'secret.write:elsewhere/*'
mk_cert enr enroller "$W/ca" --perm 'agent.enroll:web'
mk_key a1 --pass-file "$PASS_FILE"
expect_ok coffer cert issue --ca "$W/ca" --pass-file "$PASS_FILE" --csr "$W/a1.csr" \
	--out "$W/a1.crt" --kind agent --group db
mk_agent a2 enr web
ROOT=$W/ca/root.crt
ROOT_FP=$(fingerprint "$ROOT")
open_a1() { coffer open --cert "$W/a1.crt" --key "$W/a1.key" --pass-file "$PASS_FILE" \
	--root "$ROOT" "$@"; }
open_a2() { coffer open --cert "$W/a2.crt" --key "$W/a2.key" --root "$ROOT" "$@"; }

# check_record REC_JSON NAME VERSION TYPE VALUE_FILE: the record's fields
# (tenant: this root's fingerprint), read by python3 from the bytes
# openssl verified.
check_record()
{
	python3 -c 'import base64, json, sys, time
rec, tenant, name, version, typ, vfile = sys.argv[1:7]
d = json.loads(open(rec, "rb").read())
want_keys = {"v", "tenant", "name", "version", "created", "type", "value"}
problems = []
if set(d) != want_keys:
    problems.append("keys %s" % sorted(d))
for key, want in (("v", 1), ("tenant", tenant), ("name", name),
                  ("version", int(version)), ("type", typ)):
    if d.get(key) != want or type(d.get(key)) is not type(want):
        problems.append("%s is %r, want %r" % (key, d.get(key), want))
created = d.get("created")
if not isinstance(created, int) or abs(created - time.time()) > 3600:
    problems.append("created is %r, not about now" % (created,))
try:
    value = base64.b64decode(d.get("value", ""), validate=True)
except Exception as e:
    problems.append("value is not base64: %s" % e)
else:
    if value != open(vfile, "rb").read():
        problems.append("value decodes to other bytes than the secret")
for p in problems:
    print("  record " + p, file=sys.stderr)
sys.exit(1 if problems else 0)' "$1" "$ROOT_FP" "${@:2}" || fail "the record openssl opened is not right"
}

# ------------------------------------------------ coffer seals, openssl opens

step "openssl decrypts and verifies coffer's envelope (text)"
printf 'p4ss w0rd "quoted" \\ and unicode \xc3\xa9' >"$W/secret.txt"
expect_ok coffer seal --name app/db --version 42 --signer-cert "$W/alice.crt" \
	--signer-key "$W/alice.key" --root "$ROOT" --to "$W/a1.crt" --to "$W/a2.crt" \
	--out "$W/env.cms" --in "$W/secret.txt"
# The outer layer is AuthEnvelopedData with AES-256-GCM.
expect_ok openssl asn1parse -inform DER -in "$W/env.cms"
grep -q ':id-smime-ct-authEnvelopedData' "$OUT" || fail "not an AuthEnvelopedData"
grep -q ':aes-256-gcm' "$OUT" || fail "not AES-256-GCM"
grep -q ':dhSinglePass-stdDH-sha256kdf-scheme' "$OUT" || fail "not ECDH key agreement"
for a in a1 a2; do
	if [ "$a" = a1 ]; then passin=(-passin "file:$PASS_FILE"); else passin=(); fi
	expect_ok openssl cms -decrypt -inform DER -in "$W/env.cms" -recip "$W/$a.crt" \
		-inkey "$W/$a.key" "${passin[@]}" -out "$W/$a.sd"
	expect_ok openssl asn1parse -inform DER -in "$W/$a.sd"
	grep -q ':pkcs7-signedData' "$OUT" || fail "$a: the content is not a SignedData"
	grep -q ":$RECORD_OID\$" "$OUT" || fail "$a: eContentType is not $RECORD_OID"
	expect_ok openssl cms -verify -inform DER -in "$W/$a.sd" -CAfile "$ROOT" \
		-out "$W/$a.rec.json"
	stderr_has 'Verification successful'
	check_record "$W/$a.rec.json" app/db 42 text "$W/secret.txt"
done
# One record, signed once: both recipients see the same bytes.
same_file "$W/a1.rec.json" "$W/a2.rec.json"
# The signer's certificate is in the SignedData and is alice's.
expect_ok openssl cms -verify -inform DER -in "$W/a1.sd" -CAfile "$ROOT" \
	-signer "$W/signer.pem" -out /dev/null
assert_eq "$(fingerprint "$W/signer.pem")" "$(fingerprint "$W/alice.crt")" "signer certificate"
# Control: under another root, openssl refuses the same SignedData.
expect_fail openssl cms -verify -inform DER -in "$W/a1.sd" -CAfile "$W/other/root.crt" \
	-out "$W/nope.json"

step "openssl decrypts and verifies coffer's envelope (binary, --out-dir)"
python3 -c 'import os, sys
open(sys.argv[1], "wb").write(b"\0\x01\xfe\xff" + os.urandom(700) + b"\0")' "$W/binary.bin"
expect_ok coffer seal --name app/blob --version 7 --type binary --signer-cert "$W/alice.crt" \
	--signer-key "$W/alice.key" --root "$ROOT" --to "$W/a2.crt" --out-dir "$W/dir" \
	<"$W/binary.bin"
expect_ok openssl cms -decrypt -inform DER -in "$W/dir/$(fingerprint "$W/a2.crt").cms" \
	-recip "$W/a2.crt" -inkey "$W/a2.key" -out "$W/bin.sd"
expect_ok openssl cms -verify -inform DER -in "$W/bin.sd" -CAfile "$ROOT" \
	-out "$W/bin.rec.json"
check_record "$W/bin.rec.json" app/blob 7 binary "$W/binary.bin"

# ------------------------------------------------ openssl seals, coffer opens

step "an envelope made by openssl alone opens with coffer open"
printf 'made-by-openssl\n' >"$W/ossl.txt"
make_record "$W/ossl.rec.json" "$ROOT_FP" app/api 3 "$W/ossl.txt"
ossl_sign "$W/ossl.rec.json" alice "$W/ossl.sd"
ossl_encrypt "$W/ossl.sd" "$W/a1.crt" "$W/ossl.cms"
expect_ok open_a1 --name app/api --min-version 3 --in "$W/ossl.cms"
same_file "$OUT" "$W/ossl.txt"
# The recipient whose file holds its chain: openssl reads its first
# certificate, coffer opens the result.
ossl_encrypt "$W/ossl.sd" "$W/a2.crt" "$W/ossl2.cms"
expect_ok open_a2 --name app/api --in "$W/ossl2.cms"
same_file "$OUT" "$W/ossl.txt"
# Binary value, two recipients in one openssl envelope.
make_record "$W/obin.rec.json" "$ROOT_FP" app/blob 9 "$W/binary.bin" binary
ossl_sign "$W/obin.rec.json" alice "$W/obin.sd"
expect_ok openssl cms -encrypt -aes-256-gcm -binary -inform DER -outform DER \
	-recip "$W/a1.crt" -recip "$W/a2.crt" -in "$W/obin.sd" -out "$W/obin.cms"
expect_ok open_a1 --name app/blob --in "$W/obin.cms"
same_file "$OUT" "$W/binary.bin"
expect_ok open_a2 --name app/blob <"$W/obin.cms"
same_file "$OUT" "$W/binary.bin"

step "an openssl-made envelope signed without secret.write is refused (18)"
make_record "$W/bob.rec.json" "$ROOT_FP" app/api 4 "$W/ossl.txt"
ossl_sign "$W/bob.rec.json" bob "$W/bob.sd"
# openssl itself is content: the signature and chain are fine.
expect_ok openssl cms -verify -inform DER -in "$W/bob.sd" -CAfile "$ROOT" -out /dev/null
ossl_encrypt "$W/bob.sd" "$W/a1.crt" "$W/bob.cms"
expect_refusal 18 open_a1 --name app/api --in "$W/bob.cms"
stderr_has 'secret.write'
stderr_has '"bob"'
# The same writer may write where its rule says so.
make_record "$W/bob2.rec.json" "$ROOT_FP" elsewhere/x 1 "$W/ossl.txt"
ossl_sign "$W/bob2.rec.json" bob "$W/bob2.sd"
ossl_encrypt "$W/bob2.sd" "$W/a1.crt" "$W/bob2.cms"
expect_ok open_a1 --name elsewhere/x --in "$W/bob2.cms"
same_file "$OUT" "$W/ossl.txt"

pass
