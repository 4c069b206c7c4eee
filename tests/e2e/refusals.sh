#!/usr/bin/env bash
#
# refusals.sh - every refusal of `coffer open` (DESIGN section 3, issue 3):
# each case checks the documented exit code, that nothing at all reached
# stdout, and that stderr holds one sentence starting "coffer: ".  Bad
# envelopes are made with openssl and python3, never with coffer, and
# each case is paired with a control that the same path opens when
# nothing is wrong, so that the refusal is caused by the damage.

. "$(dirname "$0")/lib.sh"

step "PKI: two organisations, writers, agents"
mk_ca "$W/ca" "Acme"
mk_ca "$W/other" "Other"
mk_operator alice "$W/ca" 'secret.write:app/*'
mk_operator bob "$W/ca" 'secret.read:app/*'               # no secret.write
mk_operator carol "$W/ca" 'secret.write:app/*'            # to be revoked
mk_operator mallory "$W/other" 'secret.write:app/*'       # another root
mk_key a1 --pass-file "$PASS_FILE"
expect_ok coffer cert issue --ca "$W/ca" --pass-file "$PASS_FILE" --csr "$W/a1.csr" \
	--out "$W/a1.crt" --kind agent --group db
mk_agent a2 "$W/ca" db
ROOT=$W/ca/root.crt
CRL=$W/ca/crl.pem
ROOT_FP=$(fingerprint "$ROOT")
OTHER_FP=$(fingerprint "$W/other/root.crt")
printf 's3cret-value' >"$W/secret.txt"

open_a1() { coffer open --cert "$W/a1.crt" --key "$W/a1.key" --pass-file "$PASS_FILE" \
	--root "$ROOT" "$@"; }
# seal_as WRITER OUT NAME VERSION [seal options]: WRITER seals secret.txt
# to a1 alone (one recipient info, so offsets found below are a1's).
seal_as()
{
	local writer=$1 out=$2 name=$3 version=$4
	shift 4
	expect_ok coffer seal --name "$name" --version "$version" \
		--signer-cert "$W/$writer.crt" --signer-key "$W/$writer.key" \
		--to "$W/a1.crt" --out "$out" "$@" <"$W/secret.txt"
}

seal_as alice "$W/good.cms" app/db 5 --root "$ROOT"
step "control: the good envelope opens"
expect_ok open_a1 --name app/db --in "$W/good.cms"
same_file "$OUT" "$W/secret.txt"
LEN=$(stat -c %s "$W/good.cms")

# ----------------------------------------------------------------- shape

step "truncated (10)"
for n in $((LEN - 1)) $((LEN / 2)) 100 5 1 0; do
	head -c "$n" "$W/good.cms" >"$W/trunc.cms"
	expect_refusal 10 open_a1 --name app/db --in "$W/trunc.cms"
done
stderr_has 'empty'
# Cut inside or right after the outer header (2 to 4 bytes of
# "30 82 LL LL"): still truncated (this once said "malformed").
for n in 2 3 4; do
	head -c "$n" "$W/good.cms" >"$W/trunc.cms"
	expect_refusal 10 open_a1 --name app/db --in "$W/trunc.cms"
	stderr_has 'truncated'
done
head -c $((LEN / 2)) "$W/good.cms" >"$W/trunc.cms"
expect_refusal 10 open_a1 --name app/db <"$W/trunc.cms"
stderr_has 'truncated'

step "malformed (11): random bytes"
# Random bytes framed as one complete DER SEQUENCE, so that what is wrong
# is the content, not the length (an unframed random header may announce
# more bytes than follow, which is reported as truncated instead).
python3 -c 'import os, sys
body = os.urandom(700)
open(sys.argv[1], "wb").write(b"\x30\x82" + len(body).to_bytes(2, "big") + body)' "$W/random.cms"
expect_refusal 11 open_a1 --name app/db --in "$W/random.cms"
# Text: the envelope in PEM instead of DER.
expect_ok openssl cms -cmsout -inform DER -in "$W/good.cms" -outform PEM -out "$W/good.pem"
expect_refusal 11 open_a1 --name app/db --in "$W/good.pem"
# A good envelope followed by one stray byte.
{ cat "$W/good.cms"; printf 'x'; } >"$W/stray.cms"
expect_refusal 11 open_a1 --name app/db --in "$W/stray.cms"
stderr_has 'stray'

step "malformed (11): EnvelopedData (AES-CBC) instead of AuthEnvelopedData"
expect_ok openssl cms -decrypt -inform DER -in "$W/good.cms" -recip "$W/a1.crt" \
	-inkey "$W/a1.key" -passin "file:$PASS_FILE" -out "$W/good.sd"
ossl_encrypt "$W/good.sd" "$W/a1.crt" "$W/cbc.cms" aes256
expect_ok openssl asn1parse -inform DER -in "$W/cbc.cms"
grep -q ':pkcs7-envelopedData' "$OUT" || fail "openssl did not make an EnvelopedData"
expect_refusal 11 open_a1 --name app/db --in "$W/cbc.cms"
stderr_has 'AuthEnvelopedData'
# Control: the same SignedData in AES-GCM opens.
ossl_encrypt "$W/good.sd" "$W/a1.crt" "$W/gcm.cms"
expect_ok open_a1 --name app/db --in "$W/gcm.cms"
same_file "$OUT" "$W/secret.txt"

step "malformed (11): weaker AES-GCM than coffer's profile"
# OpenSSL's CMS code would open these; coffer insists on AES-256-GCM with
# a 16-byte tag (a 1-byte tag once opened).
ossl_encrypt "$W/good.sd" "$W/a1.crt" "$W/g128.cms" aes-128-gcm
expect_refusal 11 open_a1 --name app/db --in "$W/g128.cms"
stderr_has 'AES-256-GCM only'
# Cut the mac (the AuthEnvelopedData's last element) to one byte, with
# the DER lengths around it re-encoded.
timeout 30 python3 - "$W/good.cms" "$W/shorttag.cms" <<'PY'
import sys

def header(b, i):
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    return tag, i, n

def children(b):
    out, i = [], 0
    while i < len(b):
        tag, j, n = header(b, i)
        out.append((tag, b[j:j + n]))
        i = j + n
    return out

def tlv(tag, body):
    n = len(body)
    ln = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + \
        n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + ln + body

data = open(sys.argv[1], "rb").read()
_, j, n = header(data, 0)
oid, explicit = children(data[j:j + n])
_, k, m = header(explicit[1], 0)
aed = children(explicit[1][k:k + m])
assert aed[-1][0] == 0x04 and len(aed[-1][1]) == 16, "last element is not the tag"
aed[-1] = (0x04, aed[-1][1][:1])
body = b"".join(tlv(t, c) for t, c in aed)
open(sys.argv[2], "wb").write(tlv(0x30, tlv(*oid) + tlv(0xa0, tlv(0x30, body))))
PY
expect_refusal 11 open_a1 --name app/db --in "$W/shorttag.cms"
stderr_has '16-byte tag'

step "malformed (11): the encrypted content is not a coffer SignedData"
ossl_encrypt "$W/secret.txt" "$W/a1.crt" "$W/raw.cms"        # no signature at all
expect_refusal 11 open_a1 --name app/db --in "$W/raw.cms"
make_record "$W/rec.json" "$ROOT_FP" app/db 5 "$W/secret.txt"
openssl cms -sign -binary -nodetach -md sha256 -outform DER -signer "$W/alice.crt" \
	-inkey "$W/alice.key" -in "$W/rec.json" -out "$W/iddata.sd" ||
	fail "openssl cms -sign failed"                             # eContentType id-data
ossl_encrypt "$W/iddata.sd" "$W/a1.crt" "$W/iddata.cms"
expect_refusal 11 open_a1 --name app/db --in "$W/iddata.cms"
stderr_has "$RECORD_OID"

# ------------------------------------------------------------ decryption

step "not for this recipient (12)"
expect_refusal 12 coffer open --cert "$W/a2.crt" --key "$W/a2.key" --root "$ROOT" \
	--name app/db --in "$W/good.cms"
stderr_has '"a2"'

step "undecryptable (13): a byte of a1's encrypted key flipped"
# The wrapped content-encryption key: the 40-byte OCTET STRING inside the
# KeyAgreeRecipientInfo (AES-256 key wrap of a 32-byte key).
EK=$(asn1_find "$W/good.cms" 5 'OCTET STRING' 40)
for at in 0 17 39; do
	cp "$W/good.cms" "$W/undec.cms"
	flip_byte "$W/undec.cms" $((EK + at))
	expect_refusal 13 open_a1 --name app/db --in "$W/undec.cms"
done
# The originator's ephemeral public key altered: same refusal.
EPK=$(asn1_find "$W/good.cms" 5 'BIT STRING' 66)
cp "$W/good.cms" "$W/undec.cms"
flip_byte "$W/undec.cms" $((EPK + 40))
expect_refusal 13 open_a1 --name app/db --in "$W/undec.cms"

step "tampered (14): GCM ciphertext, tag and nonce"
CT=$(asn1_find "$W/good.cms" 3 'prim: cont [ 0 ]' -)
for at in 0 100 400; do
	cp "$W/good.cms" "$W/tamp.cms"
	flip_byte "$W/tamp.cms" $((CT + at))
	expect_refusal 14 open_a1 --name app/db --in "$W/tamp.cms"
done
read -r MAC MAC_LEN <<<"$(asn1_last "$W/good.cms" 'OCTET STRING')"
assert_eq "$MAC_LEN" 16 "length of the GCM tag (last OCTET STRING)"
for at in 0 15; do
	cp "$W/good.cms" "$W/tamp.cms"
	flip_byte "$W/tamp.cms" $((MAC + at))
	expect_refusal 14 open_a1 --name app/db --in "$W/tamp.cms"
done
NONCE=$(asn1_find "$W/good.cms" 5 'OCTET STRING' 12)
cp "$W/good.cms" "$W/tamp.cms"
flip_byte "$W/tamp.cms" $((NONCE + 3))
expect_refusal 14 open_a1 --name app/db --in "$W/tamp.cms"
stderr_has 'authentication'

# ------------------------------------------------------------- signature

step "bad signature (15): the record changed after signing"
make_record "$W/rec.json" "$ROOT_FP" app/db 5 "$W/secret.txt"
ossl_sign "$W/rec.json" alice "$W/signed.sd"
# Control: unaltered, it opens.
ossl_encrypt "$W/signed.sd" "$W/a1.crt" "$W/signed.cms"
expect_ok open_a1 --name app/db --in "$W/signed.cms"
same_file "$OUT" "$W/secret.txt"
# Patch the signed bytes: version 5 -> 6, still a valid record.
python3 -c 'import sys
p = sys.argv[1]
b = open(p, "rb").read()
old = b"\"version\":5,"
if b.count(old) != 1:
    sys.exit("record not found exactly once in the SignedData")
open(p, "wb").write(b.replace(old, b"\"version\":6,"))' "$W/signed.sd" ||
	fail "cannot patch the signed record"
expect_fail openssl cms -verify -inform DER -in "$W/signed.sd" -CAfile "$ROOT" -out /dev/null
ossl_encrypt "$W/signed.sd" "$W/a1.crt" "$W/badsig.cms"
expect_refusal 15 open_a1 --name app/db --in "$W/badsig.cms"
# The signature value itself altered (last byte of the ECDSA signature,
# the last OCTET STRING of the SignedData).
ossl_sign "$W/rec.json" alice "$W/signed2.sd"
read -r SIG SIG_LEN <<<"$(asn1_last "$W/signed2.sd" 'OCTET STRING')"
flip_byte "$W/signed2.sd" $((SIG + SIG_LEN - 1))
ossl_encrypt "$W/signed2.sd" "$W/a1.crt" "$W/badsig2.cms"
expect_refusal 15 open_a1 --name app/db --in "$W/badsig2.cms"

# ------------------------------------------------------------- the signer

step "signer from another root (16)"
seal_as mallory "$W/foreign.cms" app/db 5 --tenant "$ROOT_FP"
expect_refusal 16 open_a1 --name app/db --in "$W/foreign.cms"
# Likewise made by openssl.
ossl_sign "$W/rec.json" mallory "$W/foreign.sd"
ossl_encrypt "$W/foreign.sd" "$W/a1.crt" "$W/foreign2.cms"
expect_refusal 16 open_a1 --name app/db --in "$W/foreign2.cms"

step "revoked signer (17)"
seal_as carol "$W/carol.cms" app/db 5 --root "$ROOT"
expect_ok open_a1 --name app/db --in "$W/carol.cms"          # control: before the CRL
expect_ok coffer ca revoke --ca "$W/ca" --pass-file "$PASS_FILE" --cert "$W/carol.crt"
expect_refusal 17 open_a1 --name app/db --crl "$CRL" --in "$W/carol.cms"
stderr_has '"carol"'
expect_ok open_a1 --name app/db --crl "$CRL" --in "$W/good.cms"  # alice is not revoked
same_file "$OUT" "$W/secret.txt"

step "signer without secret.write (18)"
ossl_sign "$W/rec.json" bob "$W/bob.sd"
ossl_encrypt "$W/bob.sd" "$W/a1.crt" "$W/bob.cms"
expect_refusal 18 open_a1 --name app/db --in "$W/bob.cms"
# An agent's certificate may not write at all.
ossl_sign "$W/rec.json" a2 "$W/agent.sd"
ossl_encrypt "$W/agent.sd" "$W/a1.crt" "$W/agent.cms"
expect_refusal 18 open_a1 --name app/db --in "$W/agent.cms"
# alice may write app/*, not other/*.
make_record "$W/rec-other.json" "$ROOT_FP" other/db 5 "$W/secret.txt"
ossl_sign "$W/rec-other.json" alice "$W/other.sd"
ossl_encrypt "$W/other.sd" "$W/a1.crt" "$W/other.cms"
expect_refusal 18 open_a1 --name other/db --in "$W/other.cms"

# ------------------------------------------------------------- the record

step "name mismatch (19)"
expect_refusal 19 open_a1 --name app/web --in "$W/good.cms"
stderr_has '"app/db"'

step "version below --min-version (20)"
expect_ok open_a1 --name app/db --min-version 5 --in "$W/good.cms"  # equal is fine
expect_refusal 20 open_a1 --name app/db --min-version 6 --in "$W/good.cms"
expect_refusal 20 open_a1 --name app/db --min-version 9007199254740991 --in "$W/good.cms"

step "record of another tenant (21)"
seal_as alice "$W/tenant.cms" app/db 5 --tenant "$OTHER_FP"
expect_refusal 21 open_a1 --name app/db --in "$W/tenant.cms"
# Control: the same path with the right tenant opens.
seal_as alice "$W/tenant-ok.cms" app/db 5 --tenant "$ROOT_FP"
expect_ok open_a1 --name app/db --in "$W/tenant-ok.cms"
same_file "$OUT" "$W/secret.txt"

step "a record that is not a valid v1 record (21)"
# Signed correctly by alice, so only the record's content is at fault.
bad_record()
{
	printf '%s' "$1" >"$W/bad.json"
	ossl_sign "$W/bad.json" alice "$W/bad.sd"
	ossl_encrypt "$W/bad.sd" "$W/a1.crt" "$W/bad.cms"
	expect_refusal 21 open_a1 --name app/db --in "$W/bad.cms"
}
# RECORD V TAIL: a record with format version V and TAIL after "type".
RECORD_FMT='{"v":%s,"tenant":"%s","name":"app/db","version":5,"created":%s,"type":"text"%s}'
# shellcheck disable=SC2059  # the format is ours, a constant
record() { printf "$RECORD_FMT" "$1" "$ROOT_FP" "$(date +%s)" "$2"; }
bad_record "$(record 1 ',"value":"dg==","extra":1')"        # unknown field
bad_record "$(record 2 ',"value":"dg=="')"                   # format v2
bad_record "$(record 1 ',"value":"d!=="')"                   # not base64
bad_record "$(record 1 '')"                                  # no value
bad_record "$(record 1 ',"value":"dg==","name":"app/db"')"   # duplicate key
bad_record "not json at all"
# Broken JSON inside the value: the refusal must not quote the secret's
# base64 (jansson's own message does, "near '...'").
bad_record "$(record 1 ',"value":"U0VDUkVUU0VDUkVU'"$(printf '\001')"'U0VDUkVU"')"
grep -q 'U0VDUkVU' "$ERR" && fail "the refusal quotes the secret's base64"
# Control: the same path with a valid record opens.
record 1 ',"value":"dg=="' >"$W/fine.json"
ossl_sign "$W/fine.json" alice "$W/fine.sd"
ossl_encrypt "$W/fine.sd" "$W/a1.crt" "$W/fine.cms"
expect_ok open_a1 --name app/db --in "$W/fine.cms"
assert_eq "$(cat "$OUT")" v "value of the valid record"

# ------------------------------------------------------------ the agent key

step "wrong passphrase for the agent key (6)"
expect_refusal 6 coffer open --cert "$W/a1.crt" --key "$W/a1.key" --pass-file "$WRONG_PASS_FILE" \
	--root "$ROOT" --name app/db --in "$W/good.cms"
expect_refusal 6 coffer open --cert "$W/a1.crt" --key "$W/a1.key" \
	--root "$ROOT" --name app/db --in "$W/good.cms"

pass
