#!/usr/bin/env bash
#
# seal_open.sh - offline seal and open: one envelope for two agents and
# one envelope per agent, the secret from a file or standard input,
# binary secrets, the 1 MiB limit, the secret never on argv, --json, and
# the recipients seal refuses with --root.

. "$(dirname "$0")/lib.sh"

step "PKI: two organisations, an operator, agents"
mk_ca "$W/ca" "Acme"
mk_ca "$W/other" "Other"
mk_operator alice "$W/ca" 'secret.write:app/*'
mk_cert enr enroller "$W/ca" --perm 'agent.enroll:web'
# a1's key has a passphrase; a2 is issued by the enroller (chain in file).
mk_key a1 --pass-file "$PASS_FILE"
expect_ok coffer cert issue --ca "$W/ca" --pass-file "$PASS_FILE" --csr "$W/a1.csr" \
	--out "$W/a1.crt" --kind agent --group db
mk_agent a2 enr web
mk_agent a3 "$W/ca" db         # to be revoked
mk_agent x1 "$W/other" db      # another organisation's agent
expect_ok coffer ca revoke --ca "$W/ca" --pass-file "$PASS_FILE" --cert "$W/a3.crt"
ROOT=$W/ca/root.crt
CRL=$W/ca/crl.pem
ROOT_FP=$(fingerprint "$ROOT")
A1_FP=$(fingerprint "$W/a1.crt")
A2_FP=$(fingerprint "$W/a2.crt")
SEAL=(coffer seal --signer-cert "$W/alice.crt" --signer-key "$W/alice.key"
      --root "$ROOT" --crl "$CRL")
open_a1() { coffer open --cert "$W/a1.crt" --key "$W/a1.key" --pass-file "$PASS_FILE" \
	--root "$ROOT" --crl "$CRL" "$@"; }
open_a2() { coffer open --cert "$W/a2.crt" --key "$W/a2.key" --root "$ROOT" --crl "$CRL" "$@"; }

printf 'correct-db-password' >"$W/secret.txt"

step "--out: one envelope, both agents open it (--in FILE and stdin)"
expect_ok "${SEAL[@]}" --name app/db --version 1 --to "$W/a1.crt" --to "$W/a2.crt" \
	--out "$W/both.cms" --in "$W/secret.txt"
[ -s "$W/both.cms" ] || fail "seal --out wrote nothing"
grep -qF 'correct-db-password' "$OUT" && fail "seal printed the secret"
# Two recipient infos, addressed to the two certificates' serials.
expect_ok openssl cms -cmsout -print -inform DER -in "$W/both.cms"
assert_eq "$(grep -c 'd.kari:' "$OUT")" 2 "key agreement recipient infos"
expect_ok open_a1 --name app/db --in "$W/both.cms"
same_file "$OUT" "$W/secret.txt"
[ ! -s "$ERR" ] || fail "open printed something on stderr without --verbose"
expect_ok open_a2 --name app/db --in "$W/both.cms"
same_file "$OUT" "$W/secret.txt"
expect_ok open_a1 --name app/db <"$W/both.cms"
same_file "$OUT" "$W/secret.txt"
expect_ok open_a2 --name app/db --in - <"$W/both.cms"
same_file "$OUT" "$W/secret.txt"
# --verbose talks on stderr only; stdout is still exactly the secret.
expect_ok open_a2 --name app/db --in "$W/both.cms" --verbose
same_file "$OUT" "$W/secret.txt"
stderr_has '"app/db" version 1'
stderr_has '"alice"'

step "--out-dir: one <fingerprint>.cms per recipient, secret from stdin"
expect_ok "${SEAL[@]}" --name app/db --version 2 --to "$W/a1.crt" --to "$W/a2.crt" \
	--out-dir "$W/outdir" <"$W/secret.txt"
assert_eq "$(find "$W/outdir" -mindepth 1 -printf '%f\n' | sort | tr '\n' ' ')" \
	"$(printf '%s.cms\n' "$A1_FP" "$A2_FP" | sort | tr '\n' ' ')" "files in --out-dir"
expect_ok open_a1 --name app/db --min-version 2 --in "$W/outdir/$A1_FP.cms"
same_file "$OUT" "$W/secret.txt"
expect_ok open_a2 --name app/db --min-version 2 --in "$W/outdir/$A2_FP.cms"
same_file "$OUT" "$W/secret.txt"
# Each file is for its own agent only.
expect_refusal 12 open_a2 --name app/db --in "$W/outdir/$A1_FP.cms"
expect_refusal 12 open_a1 --name app/db --in "$W/outdir/$A2_FP.cms"
# The record is signed once per call: both envelopes carry the very same
# SignedData (ECDSA signatures are randomised, so two signings differ).
expect_ok openssl cms -decrypt -inform DER -in "$W/outdir/$A1_FP.cms" -recip "$W/a1.crt" \
	-inkey "$W/a1.key" -passin "file:$PASS_FILE" -out "$W/sd1.der"
expect_ok openssl cms -decrypt -inform DER -in "$W/outdir/$A2_FP.cms" -recip "$W/a2.crt" \
	-inkey "$W/a2.key" -out "$W/sd2.der"
same_file "$W/sd1.der" "$W/sd2.der"

step "a binary secret with NUL bytes round-trips byte for byte"
python3 -c 'import os, sys
data = b"\0" + os.urandom(3000) + b"\0\0\r\n\xff\0" + bytes(range(256)) + b"\0"
open(sys.argv[1], "wb").write(data)' "$W/binary.bin"
expect_ok "${SEAL[@]}" --name app/blob --version 1 --type binary --to "$W/a1.crt" \
	--to "$W/a2.crt" --out "$W/binary.cms" <"$W/binary.bin"
expect_ok open_a1 --name app/blob --in "$W/binary.cms"
same_file "$OUT" "$W/binary.bin"
expect_ok open_a2 --name app/blob <"$W/binary.cms"
same_file "$OUT" "$W/binary.bin"
# An empty line, a trailing newline: nothing is trimmed or added.
printf 'line one\n\nline three\n\n' >"$W/lines.txt"
expect_ok "${SEAL[@]}" --name app/lines --version 1 --type file --to "$W/a2.crt" \
	--out "$W/lines.cms" --in "$W/lines.txt"
expect_ok open_a2 --name app/lines --in "$W/lines.cms"
same_file "$OUT" "$W/lines.txt"

step "exactly 1 MiB works; 1 MiB + 1 is refused (exit 5), nothing written"
head -c "$MIB" /dev/urandom >"$W/mib.bin"
head -c "$((MIB + 1))" /dev/urandom >"$W/mib1.bin"
assert_eq "$(stat -c %s "$W/mib.bin")" "$MIB" "size of the 1 MiB secret"
expect_ok "${SEAL[@]}" --name app/big --version 1 --type binary --to "$W/a1.crt" \
	--to "$W/a2.crt" --out "$W/mib.cms" --in "$W/mib.bin"
expect_ok open_a2 --name app/big --in "$W/mib.cms"
same_file "$OUT" "$W/mib.bin"
expect_ok open_a1 --name app/big <"$W/mib.cms"
same_file "$OUT" "$W/mib.bin"
expect_refusal 5 "${SEAL[@]}" --name app/big --version 2 --type binary --to "$W/a1.crt" \
	--out "$W/mib1.cms" --in "$W/mib1.bin"
stderr_has 'limit'
assert_absent "$W/mib1.cms"
expect_refusal 5 "${SEAL[@]}" --name app/big --version 2 --type binary --to "$W/a1.crt" \
	--out "$W/mib1.cms" <"$W/mib1.bin"
assert_absent "$W/mib1.cms"
expect_refusal 5 "${SEAL[@]}" --name app/big --version 2 --type binary --to "$W/a1.crt" \
	--to "$W/a2.crt" --out-dir "$W/mib1dir" <"$W/mib1.bin"
dir_empty "$W/mib1dir"
# No temporary files left behind either.
[ -z "$(find "$W" -maxdepth 1 -name '*.tmp.*')" ] || fail "temporary files left: $(ls "$W")"

step "the secret is never taken from argv"
expect_exit 2 "${SEAL[@]}" --name app/db --version 3 --to "$W/a1.crt" \
	--out "$W/argv.cms" hunter2 <"$W/secret.txt"
assert_absent "$W/argv.cms"
expect_exit 2 "${SEAL[@]}" --name app/db --version 3 --to "$W/a1.crt" \
	--out "$W/argv.cms" --in "$W/secret.txt" -- hunter2
assert_absent "$W/argv.cms"
expect_exit 2 "${SEAL[@]}" --name app/db --version 3 --to "$W/a1.crt" \
	--out "$W/argv.cms" --secret hunter2 <"$W/secret.txt"
assert_absent "$W/argv.cms"

step "--json says what was written"
expect_ok "${SEAL[@]}" --name app/db --version 4 --to "$W/a1.crt" --to "$W/a2.crt" \
	--out-dir "$W/jsondir" --json <"$W/secret.txt"
cp "$OUT" "$W/seal.json"
expect_ok python3 -m json.tool "$W/seal.json"
json_assert "$W/seal.json" 'd["name"]' app/db 'd["version"]' 4 'd["type"]' text \
	'd["bytes"]' "$(stat -c %s "$W/secret.txt")" 'd["signer"]' alice \
	'd["tenant"]' "$ROOT_FP" 'd["verified"]' true 'len(d["envelopes"])' 2 \
	'd["envelopes"][0]["fingerprint"]' "$A1_FP" \
	'd["envelopes"][1]["fingerprint"]' "$A2_FP" \
	'd["envelopes"][0]["file"]' "$W/jsondir/$A1_FP.cms" \
	'd["envelopes"][1]["bytes"]' "$(stat -c %s "$W/jsondir/$A2_FP.cms")"
expect_ok "${SEAL[@]}" --name app/db --version 5 --to "$W/a1.crt" \
	--out "$W/json.cms" --json --in "$W/secret.txt"
cp "$OUT" "$W/seal2.json"
expect_ok python3 -m json.tool "$W/seal2.json"
json_assert "$W/seal2.json" 'len(d["envelopes"])' 1 'd["envelopes"][0]["file"]' "$W/json.cms"

step "--root: a recipient of another organisation is refused by name (16)"
expect_refusal 16 "${SEAL[@]}" --name app/db --version 6 --to "$W/a1.crt" \
	--to "$W/x1.crt" --out "$W/x.cms" <"$W/secret.txt"
stderr_has "$W/x1.crt"
assert_absent "$W/x.cms"
expect_refusal 16 "${SEAL[@]}" --name app/db --version 6 --to "$W/a1.crt" \
	--to "$W/x1.crt" --out-dir "$W/xdir" <"$W/secret.txt"
stderr_has "$W/x1.crt"
dir_empty "$W/xdir"

step "--root --crl: a revoked recipient is refused by name (17)"
expect_refusal 17 "${SEAL[@]}" --name app/db --version 6 --to "$W/a1.crt" \
	--to "$W/a3.crt" --out "$W/r.cms" <"$W/secret.txt"
stderr_has "$W/a3.crt"
assert_absent "$W/r.cms"
expect_refusal 17 "${SEAL[@]}" --name app/db --version 6 --to "$W/a2.crt" \
	--to "$W/a3.crt" --out-dir "$W/rdir" <"$W/secret.txt"
stderr_has "$W/a3.crt"
dir_empty "$W/rdir"
# An agent whose enroller was revoked is refused too (the CRL covers the
# whole chain, not just the leaf).
mk_cert enr2 enroller "$W/ca" --perm 'agent.enroll:web'
mk_agent a4 enr2 web
expect_ok coffer ca revoke --ca "$W/ca" --pass-file "$PASS_FILE" --cert "$W/enr2.crt"
expect_refusal 17 "${SEAL[@]}" --name app/db --version 6 --to "$W/a2.crt" \
	--to "$W/a4.crt" --out "$W/r4.cms" <"$W/secret.txt"
stderr_has "$W/a4.crt"
assert_absent "$W/r4.cms"
# Without the CRL the same recipient passes: it is the CRL that refuses.
expect_ok coffer seal --signer-cert "$W/alice.crt" --signer-key "$W/alice.key" \
	--root "$ROOT" --name app/db --version 6 --to "$W/a3.crt" --out "$W/r3.cms" \
	<"$W/secret.txt"

step "seal refuses a signer without secret.write on the name (18)"
expect_refusal 18 "${SEAL[@]}" --name other/db --version 1 --to "$W/a1.crt" \
	--out "$W/perm.cms" <"$W/secret.txt"
assert_absent "$W/perm.cms"

pass
