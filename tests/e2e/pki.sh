#!/usr/bin/env bash
#
# pki.sh - the organisation PKI end to end: ca init (three ways to get a
# passphrase, and the refusals), key/csr/cert for every kind, what
# `cert show --json` says against what openssl computes, every
# certificate verified by OpenSSL and by GnuTLS certtool, the enroller's
# limits, wrong passphrases, the root key's encoding, revocation and the
# CRL checked by both independent implementations.

. "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------- ca init

step "ca init with --pass-file"
mk_ca "$W/ca" "Acme"
assert_eq "$(stat -c %a "$W/ca/root.key")" 600 "mode of root.key"
assert_eq "$(head -n 1 "$W/ca/root.key")" "-----BEGIN ENCRYPTED PRIVATE KEY-----" \
	"first line of root.key"
expect_ok openssl pkey -in "$W/ca/root.key" -passin "file:$PASS_FILE" -noout
expect_fail openssl pkey -in "$W/ca/root.key" -passin "file:$WRONG_PASS_FILE" -noout
expect_ok openssl asn1parse -in "$W/ca/root.key"
grep -q ':PBES2' "$OUT" || fail "root.key is not PBES2"
grep -q ':scrypt' "$OUT" || fail "root.key's key derivation is not scrypt"
grep -q ':aes-256-' "$OUT" || fail "root.key's cipher is not AES-256"
ROOT_FP=$(fingerprint "$W/ca/root.crt")
expect_ok coffer cert show "$W/ca/root.crt" --json
cp "$OUT" "$W/root.json"
json_assert "$W/root.json" 'd["fingerprint"]' "$ROOT_FP" 'd["kind"]' root \
	'd["ca"]' true 'd["cn"]' "Acme root CA" 'd["issuer"]' "CN=Acme root CA,O=Acme"
# The root's key is P-256 and it is self-signed, by both tools' reckoning.
expect_ok openssl x509 -in "$W/ca/root.crt" -noout -text
grep -q 'NIST CURVE: P-256' "$OUT" || fail "root key is not P-256"
expect_ok openssl verify -CAfile "$W/ca/root.crt" "$W/ca/root.crt"
expect_ok certtool --verify --load-ca-certificate "$W/ca/root.crt" --infile "$W/ca/root.crt"
grep -q 'Chain verification output: Verified' "$OUT" || fail "certtool did not verify root.crt"

step "ca init with COFFER_PASSPHRASE"
ENV_PASS='env passphrase, not the file one'
coffer_pp() { COFFER_PASSPHRASE=$1 coffer "${@:2}"; }
expect_ok coffer_pp "$ENV_PASS" ca init --name "Env Org" --dir "$W/ca-env"
assert_eq "$(stat -c %a "$W/ca-env/root.key")" 600 "mode of env root.key"
assert_eq "$(head -n 1 "$W/ca-env/root.key")" "-----BEGIN ENCRYPTED PRIVATE KEY-----" \
	"first line of env root.key"
expect_ok openssl pkey -in "$W/ca-env/root.key" -passin "pass:$ENV_PASS" -noout
expect_fail openssl pkey -in "$W/ca-env/root.key" -passin "file:$PASS_FILE" -noout
expect_ok openssl asn1parse -in "$W/ca-env/root.key"
grep -q ':scrypt' "$OUT" || fail "env root.key's key derivation is not scrypt"
# The same variable unlocks it for issuing; another passphrase does not.
mk_key envop
expect_ok coffer_pp "$ENV_PASS" cert issue --ca "$W/ca-env" --csr "$W/envop.csr" \
	--out "$W/envop.crt" --kind operator --perm 'secret.read:*'
expect_ok openssl verify -CAfile "$W/ca-env/root.crt" "$W/envop.crt"
expect_refusal 6 coffer_pp "not it" cert issue --ca "$W/ca-env" --csr "$W/envop.csr" \
	--out "$W/envop2.crt" --kind operator --perm 'secret.read:*'
assert_absent "$W/envop2.crt"

step "ca init with --no-passphrase"
expect_ok coffer ca init --name "Plain Org" --dir "$W/ca-plain" --no-passphrase
assert_eq "$(stat -c %a "$W/ca-plain/root.key")" 600 "mode of plain root.key"
assert_eq "$(head -n 1 "$W/ca-plain/root.key")" "-----BEGIN PRIVATE KEY-----" \
	"first line of plain root.key"
expect_ok openssl pkey -in "$W/ca-plain/root.key" -passin pass: -noout
# No passphrase is asked for, nor needed, to issue from it.
mk_key plainag
expect_ok coffer cert issue --ca "$W/ca-plain" --csr "$W/plainag.csr" \
	--out "$W/plainag.crt" --kind agent --group web
expect_ok openssl verify -CAfile "$W/ca-plain/root.crt" "$W/plainag.crt"

step "ca init without any passphrase and no terminal: exit 6, nothing written"
expect_refusal 6 coffer ca init --name "Nopass" --dir "$W/ca-none"
stderr_has "passphrase"
assert_absent "$W/ca-none/root.key" "$W/ca-none/root.crt"

step "ca init over an existing CA: exit 8, nothing changed"
cp "$W/ca/root.key" "$W/root.key.before"
cp "$W/ca/root.crt" "$W/root.crt.before"
expect_refusal 8 coffer ca init --name "Acme" --dir "$W/ca" --pass-file "$PASS_FILE"
expect_refusal 8 coffer ca init --name "Other" --dir "$W/ca" --no-passphrase
same_file "$W/ca/root.key" "$W/root.key.before"
same_file "$W/ca/root.crt" "$W/root.crt.before"

step "a second, unrelated organisation"
mk_ca "$W/other" "Other Org"

# ---------------------------------------------------------- issue every kind

step "issue operator, enroller, agents, cluster"
mk_operator alice "$W/ca" 'secret.write:prod/*' 'secret.read:prod/*'
mk_cert enr enroller "$W/ca" --perm 'agent.enroll:web*'
mk_agent db1 "$W/ca" db cache                  # issued by the root
mk_agent web1 enr web-1                        # issued by the enroller
mk_cert pool cluster "$W/ca" --cluster pool-a  # a cluster, by the root
mk_cert web2 agent enr --group web-2 --cluster web-pool  # member, by the enroller
mk_cert webpool cluster enr --cluster web-pool   # cluster, by the enroller
# A key with a passphrase works for a CSR with --pass-file only.
mk_key sec1 --pass-file "$PASS_FILE"
expect_refusal 6 coffer csr new --key "$W/sec1.key" --name sec1b --out "$W/sec1b.csr" \
	--pass-file "$WRONG_PASS_FILE"
assert_absent "$W/sec1b.csr"
expect_refusal 6 coffer csr new --key "$W/sec1.key" --name sec1b --out "$W/sec1b.csr"
assert_absent "$W/sec1b.csr"
expect_ok coffer cert issue --ca "$W/ca" --pass-file "$PASS_FILE" --csr "$W/sec1.csr" \
	--out "$W/sec1.crt" --kind agent --group db

step "cert show --json against openssl"
# show NAME EXPR WANT...: `cert show --json` of NAME.crt, whose
# fingerprint and serial must be what openssl computes, and the checks.
show()
{
	local name=$1 serial
	shift
	expect_ok coffer cert show "$W/$name.crt" --json
	cp "$OUT" "$W/$name.json"
	serial=$(openssl x509 -in "$W/$name.crt" -noout -serial | cut -d= -f2)
	json_assert "$W/$name.json" \
		'd["fingerprint"]' "$(fingerprint "$W/$name.crt")" \
		'd["serial"].upper()' "$serial" \
		'd["cn"]' "$name" "$@"
}
show alice 'd["kind"]' operator \
	'd["permissions"]' '["secret.write:prod/*", "secret.read:prod/*"]' \
	'd["groups"]' '[]' 'd["cluster"]' null 'd["ca"]' false \
	'd["issuer"]' "CN=Acme root CA,O=Acme"
show enr 'd["kind"]' enroller 'd["permissions"]' '["agent.enroll:web*"]' \
	'd["ca"]' true 'd["issuer"]' "CN=Acme root CA,O=Acme"
show db1 'd["kind"]' agent 'd["groups"]' '["db", "cache"]' \
	'd["permissions"]' '[]' 'd["cluster"]' null 'd["ca"]' false
show web1 'd["kind"]' agent 'd["groups"]' '["web-1"]' 'd["issuer"]' "CN=enr,O=Acme"
show pool 'd["kind"]' cluster 'd["cluster"]' pool-a 'd["groups"]' '[]'
show web2 'd["kind"]' agent 'd["cluster"]' web-pool 'd["groups"]' '["web-2"]'
show webpool 'd["kind"]' cluster 'd["cluster"]' web-pool 'd["issuer"]' "CN=enr,O=Acme"
show sec1 'd["kind"]' agent 'd["groups"]' '["db"]'
# The human form says the same fingerprint.
expect_ok coffer cert show "$W/alice.crt"
grep -q "^fingerprint: *$(fingerprint "$W/alice.crt")\$" "$OUT" ||
	fail "cert show (text) does not print alice's fingerprint"

step "extensions as openssl reads them"
ext_text() { openssl x509 -in "$W/$1.crt" -noout -text >"$W/$1.txt"; }
for c in alice enr db1 pool; do ext_text "$c"; done
grep -A1 'X509v3 Basic Constraints: critical' "$W/enr.txt" | grep -q 'CA:TRUE, pathlen:0' ||
	fail "the enroller is not CA:TRUE, pathlen:0"
grep -A1 'X509v3 Basic Constraints: critical' "$W/db1.txt" | grep -q 'CA:FALSE' ||
	fail "the agent is not CA:FALSE"
grep -A1 '2.25.2512399633766132092.1:' "$W/alice.txt" | grep -q 'secret.write:prod/\*' ||
	fail "alice lacks the permissions extension (.1)"
grep -A1 '2.25.2512399633766132092.5:' "$W/alice.txt" | grep -q 'operator' ||
	fail "alice lacks the kind extension (.5)"
grep -A1 '2.25.2512399633766132092.2:' "$W/db1.txt" | grep -q 'db,cache' ||
	fail "db1 lacks the groups extension (.2)"
grep -A1 '2.25.2512399633766132092.3:' "$W/pool.txt" | grep -q 'pool-a' ||
	fail "pool lacks the cluster extension (.3)"
grep -q 'NIST CURVE: P-256' "$W/db1.txt" || fail "db1's key is not P-256"

step "an enroller-issued certificate file holds the chain"
for c in web1 web2 webpool; do
	assert_eq "$(grep -c -- '-----BEGIN CERTIFICATE-----' "$W/$c.crt")" 2 "certificates in $c.crt"
	# The second one is the enroller's.
	awk '/-----BEGIN CERTIFICATE-----/{n++} n==2' "$W/$c.crt" >"$W/$c.chain2.pem"
	assert_eq "$(fingerprint "$W/$c.chain2.pem")" "$(fingerprint "$W/enr.crt")" \
		"second certificate in $c.crt"
done

step "every certificate verifies with openssl and with GnuTLS certtool"
for c in alice enr db1 pool sec1; do
	expect_ok openssl verify -CAfile "$W/ca/root.crt" "$W/$c.crt"
	grep -q ": OK\$" "$OUT" || fail "openssl verify did not say OK for $c"
	expect_ok certtool --verify --load-ca-certificate "$W/ca/root.crt" --infile "$W/$c.crt"
	grep -q 'Chain verification output: Verified' "$OUT" || fail "certtool did not verify $c"
done
for c in web1 web2 webpool; do
	expect_ok openssl verify -CAfile "$W/ca/root.crt" -untrusted "$W/enr.crt" "$W/$c.crt"
	grep -q ": OK\$" "$OUT" || fail "openssl verify did not say OK for $c"
	expect_ok certtool --verify --load-ca-certificate "$W/ca/root.crt" --infile "$W/$c.crt"
	grep -q 'Chain verification output: Verified' "$OUT" || fail "certtool did not verify $c"
done
# And neither tool accepts them under another root: the checks can fail.
expect_fail openssl verify -CAfile "$W/other/root.crt" "$W/db1.crt"
expect_fail certtool --verify --load-ca-certificate "$W/other/root.crt" --infile "$W/db1.crt"
expect_fail certtool --verify --load-ca-certificate "$W/other/root.crt" --infile "$W/web1.crt"
expect_fail openssl verify -CAfile "$W/ca/root.crt" "$W/web1.crt"  # enroller not given

# ------------------------------------------------------- the enroller's limits

step "enroller refuses a group its agent.enroll rules do not cover (exit 7)"
mk_key stray
expect_refusal 7 coffer cert issue --issuer-cert "$W/enr.crt" --issuer-key "$W/enr.key" \
	--csr "$W/stray.csr" --out "$W/stray.crt" --kind agent --group db
stderr_has '"db"'
assert_absent "$W/stray.crt"
# One covered group does not carry an uncovered one along.
expect_refusal 7 coffer cert issue --issuer-cert "$W/enr.crt" --issuer-key "$W/enr.key" \
	--csr "$W/stray.csr" --out "$W/stray.crt" --kind agent --group web-3 --group db
assert_absent "$W/stray.crt"
expect_refusal 7 coffer cert issue --issuer-cert "$W/enr.crt" --issuer-key "$W/enr.key" \
	--csr "$W/stray.csr" --out "$W/stray.crt" --kind cluster --cluster db-pool
assert_absent "$W/stray.crt"

step "enroller refuses to issue an operator or an enroller (exit 7)"
expect_refusal 7 coffer cert issue --issuer-cert "$W/enr.crt" --issuer-key "$W/enr.key" \
	--csr "$W/stray.csr" --out "$W/stray.crt" --kind operator --perm 'secret.write:*'
stderr_has operator
assert_absent "$W/stray.crt"
expect_refusal 7 coffer cert issue --issuer-cert "$W/enr.crt" --issuer-key "$W/enr.key" \
	--csr "$W/stray.csr" --out "$W/stray.crt" --kind enroller --perm 'agent.enroll:web*'
assert_absent "$W/stray.crt"
# An operator (not CA) cannot issue anything.
expect_exit 7 coffer cert issue --issuer-cert "$W/alice.crt" --issuer-key "$W/alice.key" \
	--csr "$W/stray.csr" --out "$W/stray.crt" --kind agent --group web-1
assert_absent "$W/stray.crt"

step "wrong passphrase for the root key (exit 6)"
expect_refusal 6 coffer cert issue --ca "$W/ca" --pass-file "$WRONG_PASS_FILE" \
	--csr "$W/stray.csr" --out "$W/stray.crt" --kind agent --group db
assert_absent "$W/stray.crt"
expect_refusal 6 coffer ca revoke --ca "$W/ca" --pass-file "$WRONG_PASS_FILE" --cert "$W/db1.crt"
assert_absent "$W/ca/crl.pem"

# ---------------------------------------------------------------- revocation

step "ca revoke and crl show"
expect_ok coffer ca revoke --ca "$W/ca" --pass-file "$PASS_FILE" --cert "$W/db1.crt"
[ -s "$W/ca/crl.pem" ] || fail "ca revoke wrote no crl.pem"
expect_ok coffer crl show "$W/ca/crl.pem" --json
cp "$OUT" "$W/crl1.json"
json_assert "$W/crl1.json" 'len(d["revoked"])' 1 \
	'd["revoked"][0]["serial"].upper()' \
	"$(openssl x509 -in "$W/db1.crt" -noout -serial | cut -d= -f2)" \
	'd["issuer"]' "CN=Acme root CA,O=Acme"
expect_ok coffer ca revoke --ca "$W/ca" --pass-file "$PASS_FILE" --cert "$W/pool.crt"
expect_ok coffer crl show "$W/ca/crl.pem" --json --root "$W/ca/root.crt"
cp "$OUT" "$W/crl2.json"
json_assert "$W/crl2.json" 'len(d["revoked"])' 2 'd["signature_checked"]' true \
	'sorted(e["serial"].upper() for e in d["revoked"])' \
	"$(for c in db1 pool; do openssl x509 -in "$W/$c.crt" -noout -serial | cut -d= -f2; done |
	   sort | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split()))')"
expect_ok coffer crl show "$W/ca/crl.pem" --root "$W/ca/root.crt"
expect_refusal 16 coffer crl show "$W/ca/crl.pem" --root "$W/other/root.crt"

step "the CRL as openssl and certtool see it"
expect_ok openssl crl -in "$W/ca/crl.pem" -CAfile "$W/ca/root.crt" -noout
grep -qi 'verify OK' "$ERR" "$OUT" || fail "openssl does not verify the CRL's signature"
expect_fail openssl crl -in "$W/ca/crl.pem" -CAfile "$W/other/root.crt" -noout
expect_ok certtool --verify-crl --load-ca-certificate "$W/ca/root.crt" --infile "$W/ca/crl.pem"
grep -q 'Verification output: Verified' "$OUT" || fail "certtool does not verify the CRL"
# A revoked root-issued certificate fails openssl's CRL check; one that
# was not revoked passes the very same check.
expect_fail openssl verify -crl_check -CRLfile "$W/ca/crl.pem" -CAfile "$W/ca/root.crt" "$W/db1.crt"
grep -q 'certificate revoked' "$ERR" "$OUT" || fail "openssl does not say db1 is revoked"
expect_fail openssl verify -crl_check -CRLfile "$W/ca/crl.pem" -CAfile "$W/ca/root.crt" "$W/pool.crt"
expect_ok openssl verify -crl_check -CRLfile "$W/ca/crl.pem" -CAfile "$W/ca/root.crt" "$W/alice.crt"
expect_ok openssl verify -crl_check -CRLfile "$W/ca/crl.pem" -CAfile "$W/ca/root.crt" "$W/sec1.crt"
# GnuTLS agrees.
expect_fail certtool --verify --load-ca-certificate "$W/ca/root.crt" \
	--load-crl "$W/ca/crl.pem" --infile "$W/db1.crt"
expect_ok certtool --verify --load-ca-certificate "$W/ca/root.crt" \
	--load-crl "$W/ca/crl.pem" --infile "$W/alice.crt"

pass
