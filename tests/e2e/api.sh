#!/usr/bin/env bash
#
# api.sh - the server's HTTP API (docs/API.md) driven with curl and client
# certificates against a real `coffer server run` on 127.0.0.1 with an
# ephemeral port: identity and directory, join tokens and their refusals,
# enrollment (good, wrong hash, expired, used up, revoked; approvals with
# the wrong name, key or group refused; reject), secrets (put, stale
# version, unknown and duplicate recipients, listing and history filtered
# by permission, an agent reading its envelope and `coffer open`ing it,
# another agent refused, delete), the agent feed with its cursor and a
# long-poll woken by a put, the audit log (and its hash chain, recomputed
# here), and a pushed CRL shutting out a revoked operator.
#
# JSON bodies are built and read by python3, never by coffer; every
# envelope read back is opened by `coffer open` and compared to the value.

. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null 2>&1 || fail "curl is not installed"

SRV=$W/srv
URL=""

# lib.sh's cleanup takes $? first: keep it through our own teardown.
trap 'rc=$?; srv_stop || true; (exit $rc); cleanup' EXIT

curl_() { timeout -k 5 "$E2E_CMD_TIMEOUT" curl "$@"; }

# req WHO METHOD PATH [BODY_FILE]: one request as WHO ("-" for no client
# certificate; else $W/WHO.pem holds the certificate and its chain, and
# $W/WHO.key the key).  The body lands in $RESP, the status in $CODE.
RESP=$W/resp.json
req()
{
	local who=$1 method=$2 path=$3 data=${4:-}
	local args=(-sS -o "$RESP" -w '%{http_code}' --cacert "$SRV/server.crt"
		-X "$method")
	if [ "$who" != "-" ]; then
		args+=(--cert "$W/$who.pem" --key "$W/$who.key")
	fi
	if [ -n "$data" ]; then
		args+=(-H 'Content-Type: application/json' --data-binary "@$data")
	fi
	: >"$RESP"
	set +e
	CODE=$(curl_ "${args[@]}" "$URL$path" 2>"$ERR")
	set -e
	[ -n "$CODE" ] || CODE=000
	cp "$RESP" "$OUT"
	# API_TRANSCRIPT=FILE keeps every exchange (docs/API.md's examples).
	if [ -n "${API_TRANSCRIPT:-}" ]; then
		{
			printf '>>> %s %s as %s\n' "$method" "$path" "$who"
			[ -z "$data" ] || { cat "$data"; echo; }
			printf '<<< %s\n' "$CODE"
			cat "$RESP"
			printf '\n\n'
		} >>"$API_TRANSCRIPT"
	fi
}

# http WANT WHO METHOD PATH [BODY_FILE]: as req, and the status must be
# WANT; an error status must come with a JSON error sentence.
http()
{
	local want=$1
	shift
	req "$@"
	[ "$CODE" = "$want" ] || fail "$2 $3 as $1: HTTP $CODE, want $want"
	if [ "$want" -ge 400 ]; then
		python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
e = d["error"]
assert isinstance(e["code"], str) and e["code"], "no code"
assert isinstance(e["message"], str) and len(e["message"]) > 10, "no sentence"' \
			"$RESP" || fail "$2 $3 as $1: HTTP $CODE without a JSON error"
	fi
}

# jq_ EXPR: a python expression over the last response d, printed.
jq_()
{
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2], {"d": d, "len": len, "sorted": sorted})
print(v if isinstance(v, str) else json.dumps(v))' "$RESP" "$1" ||
		fail "cannot evaluate $1 over the response"
}

# mkjson OUT PYEXPR [ARGS...]: OUT is the JSON of the python expression,
# which may use a (the ARGS), b64(path), text(path), now.
mkjson()
{
	local out=$1 expr=$2
	shift 2
	python3 -c 'import base64, json, sys, time
def b64(p): return base64.b64encode(open(p, "rb").read()).decode()
def text(p): return open(p).read()
a = sys.argv[3:]
now = int(time.time())
json.dump(eval(sys.argv[2]), open(sys.argv[1], "w"))' "$out" "$expr" "$@" ||
		fail "cannot build $out"
}

# pem NAME [CHAIN_NAME...]: $W/NAME.pem = NAME.crt then the chain.
pem()
{
	local name=$1 c
	cat "$W/$name.crt" >"$W/$name.pem"
	shift
	for c in "$@"; do cat "$W/$c.crt" >>"$W/$name.pem"; done
}

# ---------------------------------------------------------------- the PKI

step "PKI: root, admin, enroller, operators, agents"
mk_ca "$W/ca" "Acme"
ROOT=$W/ca/root.crt
ROOT_FP=$(fingerprint "$ROOT")
mk_operator admin "$W/ca" 'admin:**'
mk_cert enr enroller "$W/ca" --perm 'agent.enroll:web*' --perm 'token.create:web*'
mk_operator ops "$W/ca" 'secret.write:prod/**' 'secret.read:prod/**'
mk_operator reader "$W/ca" 'secret.read:prod/db/*'
mk_operator aud "$W/ca" 'audit.read:*'
mk_agent web1 enr web
mk_agent db1 "$W/ca" db
mk_agent web2 enr web
mk_agent stray "$W/ca" db
for n in admin enr ops reader aud db1 stray; do pem "$n"; done
for n in web1 web2; do pem "$n" enr; done
# A client of another organisation.
mk_ca "$W/ca2" "Other"
mk_operator foreign "$W/ca2" 'admin:**'
pem foreign
OPS_FP=$(fingerprint "$W/ops.crt")
WEB1_FP=$(fingerprint "$W/web1.crt")
DB1_FP=$(fingerprint "$W/db1.crt")
ENR_FP=$(fingerprint "$W/enr.crt")

# ---------------------------------------------------------------- server

step "server init, tenant add, run on an ephemeral port"
expect_ok coffer server init --dir "$SRV"
expect_ok coffer server tenant add --dir "$SRV" "$ROOT"
srv_start "$SRV" "$W/server.log"
URL=$SRV_URL
http 200 - GET /v1/health

# ---------------------------------------------------------------- identity

step "whoami, and who is refused"
http 200 ops GET /v1/whoami
[ "$(jq_ 'd["tenant"]')" = "$ROOT_FP" ] || fail "whoami tenant"
[ "$(jq_ 'd["fp"]')" = "$OPS_FP" ] || fail "whoami fp"
[ "$(jq_ 'd["kind"]')" = operator ] || fail "whoami kind"
[ "$(jq_ 'd["name"]')" = ops ] || fail "whoami name"
[ "$(jq_ 'sorted(d["perms"])')" = '["secret.read:prod/**", "secret.write:prod/**"]' ] ||
	fail "whoami perms: $(jq_ 'd["perms"]')"
http 200 web1 GET /v1/whoami
[ "$(jq_ 'd["kind"]+" "+",".join(d["groups"])')" = "agent web" ] || fail "agent whoami"
http 401 - GET /v1/whoami
http 401 foreign GET /v1/whoami
# The agents say hello once, so the directory knows them.
for n in db1 enr admin reader aud; do http 200 "$n" GET /v1/whoami; done

# ---------------------------------------------------------------- directory

step "certificate directory"
http 200 ops GET '/v1/certs?kind=agent'
[ "$(jq_ 'sorted(c["name"] for c in d["certs"])')" = '["db1", "web1"]' ] ||
	fail "agents in the directory: $(jq_ '[c["name"] for c in d["certs"]]')"
[ "$(jq_ '[c for c in d["certs"] if c["name"]=="web1"][0]["issuer"]')" = "$ENR_FP" ] ||
	fail "web1's issuer"
# web1's chain is its enroller, so a client can verify it with the root.
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
c = [c for c in d["certs"] if c["name"] == "web1"][0]
open(sys.argv[2], "w").write(c["cert"])
open(sys.argv[3], "w").write("".join(c["chain"]))' "$RESP" "$W/dir-web1.crt" "$W/dir-web1-chain.crt"
expect_ok openssl verify -CAfile "$ROOT" -untrusted "$W/dir-web1-chain.crt" "$W/dir-web1.crt"
http 200 ops GET "/v1/certs?fp=$DB1_FP"
[ "$(jq_ 'len(d["certs"])')" = 1 ] || fail "fp filter"
[ "$(jq_ 'd["certs"][0]["chain"]')" = '[]' ] || fail "root-issued chain not empty"
http 200 ops GET '/v1/certs?kind=agent&limit=1'
[ "$(jq_ 'len(d["certs"])')" = 1 ] || fail "limit 1"
FIRST=$(jq_ 'd["certs"][0]["name"]')
NEXT=$(jq_ 'd["next"]')
[ "$NEXT" != null ] || fail "no next page"
http 200 ops GET "/v1/certs?kind=agent&limit=1&after=$NEXT"
[ "$(jq_ '[len(d["certs"]), d["next"]]')" = '[1, null]' ] || fail "second page"
[ "$(jq_ 'd["certs"][0]["name"]')" != "$FIRST" ] || fail "second page repeats the first"
http 200 ops GET '/v1/certs?group=web'
[ "$(jq_ '[c["name"] for c in d["certs"]]')" = '["web1"]' ] || fail "group filter"
http 403 web1 GET /v1/certs
http 400 ops GET '/v1/certs?kind=root'
http 400 ops GET '/v1/certs?fp=XYZ'

step "POST /v1/certs: an enroller within its scope, admin beyond"
mkjson "$W/web2.json" '{"cert": text(a[0]), "chain": [text(a[1])]}' "$W/web2.crt" "$W/enr.crt"
http 403 ops POST /v1/certs "$W/web2.json"
http 201 enr POST /v1/certs "$W/web2.json"
[ "$(jq_ 'd["fp"]')" = "$(fingerprint "$W/web2.crt")" ] || fail "fp of web2"
# A forged "enroller" sent along: the real enroller's name and key id,
# a key of its own, any rights.  X509_check_issued alone would take it as
# web2's issuer (names and key ids match) and put it in the directory.
ENR_SKI=$(openssl x509 -in "$W/enr.crt" -noout -ext subjectKeyIdentifier |
	sed -n '2s/[ :]//gp')
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$W/forged.key" -out "$W/forged.crt" -days 30 \
	-subj "$(openssl x509 -in "$W/enr.crt" -noout -subject -nameopt compat |
		sed 's/^subject=//')" \
	-addext "subjectKeyIdentifier=$ENR_SKI" \
	-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
	-addext "2.25.2512399633766132092.5=ASN1:UTF8String:enroller" \
	-addext "2.25.2512399633766132092.1=ASN1:UTF8String:admin:**" 2>/dev/null ||
	fail "openssl could not make the forged enroller"
[ "$(openssl x509 -in "$W/forged.crt" -noout -ext subjectKeyIdentifier | sed -n '2s/[ :]//gp')" = "$ENR_SKI" ] ||
	fail "the forged enroller does not carry the enroller's key id"
openssl x509 -in "$W/web2.crt" -out "$W/web2-only.crt" || fail "openssl x509"
mkjson "$W/forged.json" '{"cert": text(a[0]), "chain": [text(a[1]), text(a[2])]}' \
	"$W/web2-only.crt" "$W/enr.crt" "$W/forged.crt"
http 201 admin POST /v1/certs "$W/forged.json"
http 200 admin GET "/v1/certs?fp=$(fingerprint "$W/forged.crt")"
[ "$(jq_ 'len(d["certs"])')" = 0 ] || fail "a forged enroller got into the directory"
mkjson "$W/stray.json" '{"cert": text(a[0])}' "$W/stray.crt"
http 403 enr POST /v1/certs "$W/stray.json"
http 201 admin POST /v1/certs "$W/stray.json"
mkjson "$W/foreign.json" '{"cert": text(a[0])}' "$W/foreign.crt"
http 400 admin POST /v1/certs "$W/foreign.json"
mkjson "$W/junk.json" '{"cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}'
http 400 admin POST /v1/certs "$W/junk.json"
printf '{"cert": ' >"$W/broken.json"
http 400 admin POST /v1/certs "$W/broken.json"

# ---------------------------------------------------------------- tokens

# new_token: TOK_ID, TOK_SECRET and TOK_HASH made here (the client's job).
new_token()
{
	TOK_ID=$(openssl rand -hex 16)
	TOK_SECRET=$(openssl rand -hex 32)
	TOK_HASH=$(printf '%s' "$TOK_SECRET" | sha256sum | cut -d' ' -f1)
}
# The token secret's envelope, sealed to the enroller (openssl alone).
printf 'token secret stand-in' >"$W/tok-plain"
openssl cms -encrypt -aes-256-gcm -binary -outform DER -recip "$W/enr.crt" \
	-in "$W/tok-plain" -out "$W/tok-env.der" || fail "openssl cms -encrypt"

# tokens_json OUT GROUP USES EXPIRES_IN ID HASH
tokens_json()
{
	mkjson "$1" '{"tokens": [{"id": a[3], "hash": a[4], "group": a[0],
		"uses": int(a[1]), "expires": now + int(a[2]),
		"envelope": b64(a[5])}]}' "$2" "$3" "$4" "$5" "$6" "$W/tok-env.der"
}

step "token create: permission and validation"
new_token
T1_ID=$TOK_ID T1_SECRET=$TOK_SECRET T1_HASH=$TOK_HASH
tokens_json "$W/t1.json" web 2 3600 "$T1_ID" "$T1_HASH"
http 403 ops POST /v1/tokens "$W/t1.json"
http 403 web1 POST /v1/tokens "$W/t1.json"
tokens_json "$W/tdb.json" db 2 3600 "$T1_ID" "$T1_HASH"
http 403 enr POST /v1/tokens "$W/tdb.json"
tokens_json "$W/tbad.json" web 0 3600 "$T1_ID" "$T1_HASH"
http 400 enr POST /v1/tokens "$W/tbad.json"
tokens_json "$W/tbad.json" web 1 -10 "$T1_ID" "$T1_HASH"
http 400 enr POST /v1/tokens "$W/tbad.json"
tokens_json "$W/tbad.json" web 1 $((400 * 86400)) "$T1_ID" "$T1_HASH"
http 400 enr POST /v1/tokens "$W/tbad.json"
tokens_json "$W/tbad.json" web 1 3600 "${T1_ID^^}" "$T1_HASH"
http 400 enr POST /v1/tokens "$W/tbad.json"
tokens_json "$W/tbad.json" 'web/../x' 1 3600 "$T1_ID" "$T1_HASH"
http 400 enr POST /v1/tokens "$W/tbad.json"
mkjson "$W/tbad.json" '{"tokens": []}'
http 400 enr POST /v1/tokens "$W/tbad.json"
http 201 enr POST /v1/tokens "$W/t1.json"
[ "$(jq_ 'd["tokens"][0]["id"]')" = "$T1_ID" ] || fail "created id"
http 409 enr POST /v1/tokens "$W/t1.json"

step "token list and get: envelope only for the creator"
http 200 enr GET /v1/tokens
[ "$(jq_ '[t["state"] for t in d["tokens"] if t["id"]=="'"$T1_ID"'"]')" = '["active"]' ] ||
	fail "token state"
http 200 ops GET /v1/tokens
[ "$(jq_ 'len(d["tokens"])')" = 0 ] || fail "ops sees tokens it may not create"
http 200 enr GET "/v1/tokens/$T1_ID"
[ "$(jq_ 'd["envelope"]')" = "$(base64 -w0 "$W/tok-env.der")" ] || fail "creator's envelope"
[ "$(jq_ 'd["creator"]')" = "$ENR_FP" ] || fail "creator"
http 200 admin GET "/v1/tokens/$T1_ID"
[ "$(jq_ '"envelope" in d')" = false ] || fail "envelope shown to a non-creator"
http 403 reader GET "/v1/tokens/$T1_ID"
http 404 enr GET "/v1/tokens/0123456789abcdef0123456789abcdef"
http 404 enr GET "/v1/tokens/nothex"

# More tokens: one use, short-lived, to revoke.
new_token; T2_ID=$TOK_ID T2_SECRET=$TOK_SECRET T2_HASH=$TOK_HASH
tokens_json "$W/t2.json" web 1 3600 "$T2_ID" "$T2_HASH"
http 201 enr POST /v1/tokens "$W/t2.json"
new_token; T3_ID=$TOK_ID T3_SECRET=$TOK_SECRET T3_HASH=$TOK_HASH
tokens_json "$W/t3.json" web 1 2 "$T3_ID" "$T3_HASH"
http 201 enr POST /v1/tokens "$W/t3.json"
T3_MADE=$(date +%s)
new_token; T4_ID=$TOK_ID T4_SECRET=$TOK_SECRET T4_HASH=$TOK_HASH
tokens_json "$W/t4.json" web 5 3600 "$T4_ID" "$T4_HASH"
http 201 enr POST /v1/tokens "$W/t4.json"

step "token revoke"
http 403 ops DELETE "/v1/tokens/$T4_ID"
http 200 enr DELETE "/v1/tokens/$T4_ID"
[ "$(jq_ 'd["revoked"]')" = true ] || fail "revoked flag"
http 200 enr GET "/v1/tokens/$T4_ID"
[ "$(jq_ 'd["state"]')" = revoked ] || fail "revoked state"

# ---------------------------------------------------------------- enrollment

# enroll_json OUT TOKEN_ID TOKEN_HASH SECRET NAME CSR: the agent's request,
# with the HMAC of the CSR's DER keyed with the token secret.
enroll_json()
{
	openssl req -in "$6" -outform DER -out "$W/.csr.der" || fail "CSR to DER"
	python3 -c 'import hashlib, hmac, json, sys
out, tid, th, secret, name, csr, der = sys.argv[1:8]
mac = hmac.new(secret.encode(), open(der, "rb").read(), hashlib.sha256).hexdigest()
json.dump({"token_id": tid, "token_hash": th, "name": name,
           "csr": open(csr).read(), "hmac": mac}, open(out, "w"))' \
		"$1" "$2" "$3" "$4" "$5" "$6" "$W/.csr.der" || fail "enroll JSON"
}

step "enroll: a good token queues the request"
mk_key web3
enroll_json "$W/e1.json" "$T1_ID" "$T1_HASH" "$T1_SECRET" web3 "$W/web3.csr"
http 202 - POST /v1/enroll "$W/e1.json"
E1=$(jq_ 'd["id"]')
[ "$(jq_ 'd["status"]')" = pending ] || fail "status of a new request"
http 200 - GET "/v1/enroll/$E1"
[ "$(jq_ 'd["status"]')" = pending ] || fail "poll status"

step "enroll: refused tokens answer 410"
WRONG_HASH=$(printf 'nope' | sha256sum | cut -d' ' -f1)
enroll_json "$W/ebad.json" "$T1_ID" "$WRONG_HASH" "$T1_SECRET" web3 "$W/web3.csr"
http 410 - POST /v1/enroll "$W/ebad.json"
MSG_WRONG=$(jq_ 'd["error"]["message"]')
enroll_json "$W/ebad.json" "$(openssl rand -hex 16)" "$T1_HASH" "$T1_SECRET" web3 "$W/web3.csr"
http 410 - POST /v1/enroll "$W/ebad.json"
[ "$(jq_ 'd["error"]["message"]')" = "$MSG_WRONG" ] ||
	fail "unknown id and wrong hash answer differently"
mk_key web4
enroll_json "$W/e2.json" "$T2_ID" "$T2_HASH" "$T2_SECRET" web4 "$W/web4.csr"
http 202 - POST /v1/enroll "$W/e2.json"
E2=$(jq_ 'd["id"]')
http 410 - POST /v1/enroll "$W/e2.json"
enroll_json "$W/ebad.json" "$T4_ID" "$T4_HASH" "$T4_SECRET" web4 "$W/web4.csr"
http 410 - POST /v1/enroll "$W/ebad.json"
# T3 lived 2 s.
while [ $(($(date +%s) - T3_MADE)) -lt 3 ]; do sleep 0.5; done
enroll_json "$W/ebad.json" "$T3_ID" "$T3_HASH" "$T3_SECRET" web4 "$W/web4.csr"
http 410 - POST /v1/enroll "$W/ebad.json"
http 200 enr GET "/v1/tokens/$T2_ID"
[ "$(jq_ 'd["state"]+" "+str(d["used"])')" = "used 1" ] || fail "T2 not used up"
http 200 enr GET "/v1/tokens/$T3_ID"
[ "$(jq_ 'd["state"]')" = expired ] || fail "T3 not expired"

step "enroll: bad requests answer 400"
enroll_json "$W/ebad.json" "$T1_ID" "$T1_HASH" "$T1_SECRET" notweb3 "$W/web3.csr"
http 400 - POST /v1/enroll "$W/ebad.json"
mkjson "$W/ebad.json" '{"token_id": a[0], "token_hash": a[1], "name": "x",
	"csr": "not a csr", "hmac": "00" * 32}' "$T1_ID" "$T1_HASH"
http 400 - POST /v1/enroll "$W/ebad.json"
http 404 - GET "/v1/enroll/0123456789abcdef0123456789abcdef"

step "enrollments: listed for enrollers only"
http 200 enr GET '/v1/enrollments?status=pending'
[ "$(jq_ 'sorted(e["name"] for e in d["enrollments"])')" = '["web3", "web4"]' ] ||
	fail "pending list"
[ "$(jq_ '[e["hmac"] for e in d["enrollments"] if e["id"]=="'"$E1"'"][0]')" = \
	"$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hmac"])' "$W/e1.json")" ] ||
	fail "hmac not listed as sent"
http 200 ops GET '/v1/enrollments?status=pending'
[ "$(jq_ 'len(d["enrollments"])')" = 0 ] || fail "ops sees enrollments"
http 403 web1 GET /v1/enrollments
http 400 enr GET '/v1/enrollments?status=maybe'

step "approve: wrong name, key, group, issuer refused"
issue_enr() # issue_enr CSR OUT GROUP...
{
	local csr=$1 out=$2 g
	local args=()
	shift 2
	for g in "$@"; do args+=(--group "$g"); done
	expect_ok coffer cert issue --issuer-cert "$W/enr.crt" --issuer-key "$W/enr.key" \
		--csr "$csr" --out "$out" --kind agent "${args[@]}"
}
approve_json() { mkjson "$2" '{"cert": text(a[0])}' "$1"; }
# Wrong name: web4's CSR for web3's request.
issue_enr "$W/web4.csr" "$W/x-name.crt" web
approve_json "$W/x-name.crt" "$W/a.json"
http 400 enr POST "/v1/enrollments/$E1/approve" "$W/a.json"
# Wrong key: a CSR with the right name and another key.
expect_ok coffer key new --out "$W/other.key" --no-passphrase
expect_ok coffer csr new --key "$W/other.key" --name web3 --out "$W/other.csr"
issue_enr "$W/other.csr" "$W/x-key.crt" web
approve_json "$W/x-key.crt" "$W/a.json"
http 400 enr POST "/v1/enrollments/$E1/approve" "$W/a.json"
# Wrong group: webx is the enroller's to give, but not the token's.
issue_enr "$W/web3.csr" "$W/x-group.crt" webx
approve_json "$W/x-group.crt" "$W/a.json"
http 400 enr POST "/v1/enrollments/$E1/approve" "$W/a.json"
issue_enr "$W/web3.csr" "$W/x-group2.crt" web webx
approve_json "$W/x-group2.crt" "$W/a.json"
http 400 enr POST "/v1/enrollments/$E1/approve" "$W/a.json"
# Another organisation's certificate.
expect_ok coffer cert issue --ca "$W/ca2" --pass-file "$PASS_FILE" --csr "$W/web3.csr" \
	--out "$W/x-foreign.crt" --kind agent --group web
approve_json "$W/x-foreign.crt" "$W/a.json"
http 400 enr POST "/v1/enrollments/$E1/approve" "$W/a.json"
# The right certificate, from someone without agent.enroll on web.
issue_enr "$W/web3.csr" "$W/web3.crt" web
approve_json "$W/web3.crt" "$W/a.json"
http 403 ops POST "/v1/enrollments/$E1/approve" "$W/a.json"
http 404 enr POST "/v1/enrollments/$E1/bless" "$W/a.json"
http 200 - GET "/v1/enroll/$E1"
[ "$(jq_ 'd["status"]')" = pending ] || fail "refused approvals changed the request"

step "approve, then poll for the certificate"
http 200 enr POST "/v1/enrollments/$E1/approve" "$W/a.json"
[ "$(jq_ 'd["fp"]')" = "$(fingerprint "$W/web3.crt")" ] || fail "approved fp"
http 409 enr POST "/v1/enrollments/$E1/approve" "$W/a.json"
http 200 - GET "/v1/enroll/$E1"
[ "$(jq_ 'd["status"]')" = approved ] || fail "poll after approval"
jq_ 'd["cert"]' >"$W/web3-polled.crt"
jq_ '"".join(d["chain"])' >"$W/web3-chain.crt"
expect_ok openssl verify -CAfile "$ROOT" -untrusted "$W/web3-chain.crt" "$W/web3-polled.crt"
[ "$(fingerprint "$W/web3-polled.crt")" = "$(fingerprint "$W/web3.crt")" ] ||
	fail "polled certificate differs"
pem web3 enr
http 200 web3 GET /v1/whoami
[ "$(jq_ 'd["name"]')" = web3 ] || fail "the enrolled agent's whoami"

step "reject"
mkjson "$W/r.json" '{"reason": "not one of ours"}'
http 403 ops POST "/v1/enrollments/$E2/reject" "$W/r.json"
http 200 enr POST "/v1/enrollments/$E2/reject" "$W/r.json"
http 409 enr POST "/v1/enrollments/$E2/reject" "$W/r.json"
http 200 - GET "/v1/enroll/$E2"
[ "$(jq_ 'd["status"]+": "+d["reason"]')" = "rejected: not one of ours" ] ||
	fail "poll after rejection"

# ---------------------------------------------------------------- secrets

# seal_json OUT NAME VERSION VALUE_FILE SIGNER RECIPIENT...: envelopes made
# by `coffer seal --out-dir`, as a PUT body.
seal_json()
{
	local out=$1 name=$2 version=$3 value=$4 signer=$5 d=$W/.sealed r
	local to=()
	shift 5
	for r in "$@"; do to+=(--to "$W/$r.crt"); done
	rm -rf "$d"
	expect_ok coffer seal --name "$name" --version "$version" \
		--signer-cert "$W/$signer.crt" --signer-key "$W/$signer.key" \
		--root "$ROOT" --in "$value" "${to[@]}" --out-dir "$d"
	python3 -c 'import base64, json, os, sys
out, version, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
envs = [{"recipient": f[:-4],
         "envelope": base64.b64encode(open(os.path.join(d, f), "rb").read()).decode()}
        for f in sorted(os.listdir(d))]
json.dump({"version": version, "envelopes": envs}, open(out, "w"))' \
		"$out" "$version" "$d" || fail "PUT body"
}
SECRET_V1="db password one $(openssl rand -hex 8)"
SECRET_V2="db password two $(openssl rand -hex 8)"
printf '%s' "$SECRET_V1" >"$W/v1"
printf '%s' "$SECRET_V2" >"$W/v2"
printf 'web key' >"$W/wk"

step "put: permission, validation, stale version"
seal_json "$W/p1.json" prod/db/password 1 "$W/v1" ops ops web1 web3
http 403 reader PUT '/v1/secrets?name=prod/db/password' "$W/p1.json"
http 403 web1 PUT '/v1/secrets?name=prod/db/password' "$W/p1.json"
http 400 ops PUT '/v1/secrets?name=prod/../x' "$W/p1.json"
http 400 ops PUT '/v1/secrets' "$W/p1.json"
# A recipient the directory does not know.
mk_agent ghost "$W/ca" web
seal_json "$W/pg.json" prod/db/password 1 "$W/v1" ops ops ghost
http 400 ops PUT '/v1/secrets?name=prod/db/password' "$W/pg.json"
# The same recipient twice; not DER; not base64.
python3 -c 'import json, sys
d = json.load(open(sys.argv[1])); d["envelopes"].append(d["envelopes"][0])
json.dump(d, open(sys.argv[2], "w"))' "$W/p1.json" "$W/pd.json"
http 400 ops PUT '/v1/secrets?name=prod/db/password' "$W/pd.json"
mkjson "$W/pn.json" '{"version": 1, "envelopes": [{"recipient": a[0], "envelope": "AAAA"}]}' "$OPS_FP"
http 400 ops PUT '/v1/secrets?name=prod/db/password' "$W/pn.json"
mkjson "$W/pn.json" '{"version": 1, "envelopes": [{"recipient": a[0], "envelope": "MA=!"}]}' "$OPS_FP"
http 400 ops PUT '/v1/secrets?name=prod/db/password' "$W/pn.json"
mkjson "$W/pn.json" '{"version": 0, "envelopes": [{"recipient": a[0], "envelope": "MAA="}]}' "$OPS_FP"
http 400 ops PUT '/v1/secrets?name=prod/db/password' "$W/pn.json"
http 404 ops GET '/v1/secrets/history?name=prod/db/password'
http 201 ops PUT '/v1/secrets?name=prod/db/password' "$W/p1.json"
[ "$(jq_ '[d["name"], d["version"], d["recipients"]]')" = '["prod/db/password", 1, 3]' ] ||
	fail "put answer"
http 409 ops PUT '/v1/secrets?name=prod/db/password' "$W/p1.json"
[ "$(jq_ 'd["latest"]')" = 1 ] || fail "409 without latest"
seal_json "$W/pw.json" prod/web/key 1 "$W/wk" ops ops web1
http 201 ops PUT '/v1/secrets?name=prod/web/key' "$W/pw.json"

step "list and history, filtered by permission"
http 200 ops GET /v1/secrets
[ "$(jq_ 'sorted(s["name"] for s in d["secrets"])')" = '["prod/db/password", "prod/web/key"]' ] ||
	fail "ops list"
http 200 reader GET '/v1/secrets?prefix=prod/'
[ "$(jq_ '[s["name"] for s in d["secrets"]]')" = '["prod/db/password"]' ] ||
	fail "reader list not filtered"
http 403 web1 GET /v1/secrets
http 200 reader GET '/v1/secrets/history?name=prod/db/password'
[ "$(jq_ '[(v["version"], v["writer"]) for v in d["versions"]]')" = "[[1, \"$OPS_FP\"]]" ] ||
	fail "history"
http 403 reader GET '/v1/secrets/history?name=prod/web/key'
http 403 enr GET '/v1/secrets/history?name=prod/db/password'

step "envelope: the agent reads its own and opens it"
http 200 web1 GET '/v1/secrets/envelope?name=prod/db/password'
jq_ 'd["envelope"]' | base64 -d >"$W/web1-v1.der"
expect_ok coffer open --name prod/db/password --cert "$W/web1.crt" --key "$W/web1.key" \
	--root "$ROOT" --in "$W/web1-v1.der"
[ "$(cat "$OUT")" = "$SECRET_V1" ] || fail "opened value differs"
http 404 db1 GET '/v1/secrets/envelope?name=prod/db/password'
http 404 reader GET '/v1/secrets/envelope?name=prod/db/password'
http 403 enr GET '/v1/secrets/envelope?name=prod/db/password'
http 200 ops GET '/v1/secrets/envelope?name=prod/db/password&version=1'
http 404 ops GET '/v1/secrets/envelope?name=prod/db/password&version=7'

# ---------------------------------------------------------------- feed

step "feed: everything, then the cursor, then a page"
http 200 web1 GET '/v1/agent/secrets?since=0'
[ "$(jq_ 'sorted(s["name"] for s in d["secrets"])')" = '["prod/db/password", "prod/web/key"]' ] ||
	fail "web1's feed"
[ "$(jq_ 'd["more"]')" = false ] || fail "more on a full feed"
CURSOR=$(jq_ 'd["cursor"]')
python3 -c 'import base64, json, sys
d = json.load(open(sys.argv[1]))
s = [s for s in d["secrets"] if s["name"] == "prod/web/key"][0]
open(sys.argv[2], "wb").write(base64.b64decode(s["envelope"]))' "$RESP" "$W/wk.der"
expect_ok coffer open --name prod/web/key --cert "$W/web1.crt" --key "$W/web1.key" \
	--root "$ROOT" --in "$W/wk.der"
[ "$(cat "$OUT")" = "web key" ] || fail "feed envelope opened to the wrong value"
http 200 web1 "GET" "/v1/agent/secrets?since=$CURSOR"
[ "$(jq_ '[d["cursor"], d["secrets"], d["more"]]')" = "[$CURSOR, [], false]" ] ||
	fail "feed after the cursor"
http 200 web1 GET '/v1/agent/secrets?since=0&limit=1'
[ "$(jq_ '[len(d["secrets"]), d["more"]]')" = '[1, true]' ] || fail "limit 1"
http 200 db1 GET '/v1/agent/secrets?since=0'
[ "$(jq_ 'd["secrets"]')" = '[]' ] || fail "db1 sees others' envelopes"
http 400 web1 GET '/v1/agent/secrets?since=-1'

step "feed: a long-poll woken by a put"
seal_json "$W/p2.json" prod/db/password 2 "$W/v2" ops ops web1 web3
START=$(date +%s%N)
curl_ -sS -o "$W/poll.json" --cacert "$SRV/server.crt" --cert "$W/web1.pem" \
	--key "$W/web1.key" "$URL/v1/agent/secrets?since=$CURSOR&wait=20" &
POLL_PID=$!
sleep 1
http 201 ops PUT '/v1/secrets?name=prod/db/password' "$W/p2.json"
wait "$POLL_PID" || fail "the long-poll failed"
ELAPSED_MS=$((($(date +%s%N) - START) / 1000000))
[ "$ELAPSED_MS" -lt 8000 ] || fail "the long-poll took $ELAPSED_MS ms: not woken by the put"
cp "$W/poll.json" "$RESP"
[ "$(jq_ '[(s["name"], s["version"]) for s in d["secrets"]]')" = '[["prod/db/password", 2]]' ] ||
	fail "woken poll: $(cat "$RESP" | head -c 300)"
jq_ 'd["secrets"][0]["envelope"]' | base64 -d >"$W/web1-v2.der"
expect_ok coffer open --name prod/db/password --cert "$W/web1.crt" --key "$W/web1.key" \
	--root "$ROOT" --min-version 2 --in "$W/web1-v2.der"
[ "$(cat "$OUT")" = "$SECRET_V2" ] || fail "v2 opened to the wrong value"
CURSOR2=$(jq_ 'd["cursor"]')
# Nothing new: the wait ends empty, with the same cursor.
START=$(date +%s%N)
http 200 web1 GET "/v1/agent/secrets?since=$CURSOR2&wait=1"
ELAPSED_MS=$((($(date +%s%N) - START) / 1000000))
[ "$(jq_ '[d["cursor"], d["secrets"]]')" = "[$CURSOR2, []]" ] || fail "empty wait"
[ "$ELAPSED_MS" -ge 900 ] || fail "wait=1 answered after $ELAPSED_MS ms"

step "delete"
http 403 reader DELETE '/v1/secrets?name=prod/web/key'
http 200 ops DELETE '/v1/secrets?name=prod/web/key'
[ "$(jq_ '[d["deleted"], d["version"]]')" = '[true, 2]' ] || fail "delete answer"
http 404 web1 GET '/v1/secrets/envelope?name=prod/web/key'
http 200 web1 GET "/v1/agent/secrets?since=$CURSOR2"
[ "$(jq_ 'd["secrets"]')" = '[{"name": "prod/web/key", "version": 2, "deleted": true}]' ] ||
	fail "deletion in the feed"
http 200 ops GET '/v1/secrets'
[ "$(jq_ '[s["name"] for s in d["secrets"]]')" = '["prod/db/password"]' ] ||
	fail "deleted name still listed"
http 404 ops DELETE '/v1/secrets?name=prod/web/key'

# ---------------------------------------------------------------- audit

step "audit: read, filter, and the hash chain"
http 403 ops GET /v1/audit
http 200 aud GET '/v1/audit?limit=1000'
python3 -c 'import hashlib, json, sys
d = json.load(open(sys.argv[1]))
es = d["entries"]
assert es and es[0]["seq"] == 1, "the log does not start at 1"
prev = "0" * 64
def ns(v):
    b = str(v).encode()
    return str(len(b)).encode() + b":" + b + b","
for e in es:
    assert e["prev"] == prev, "entry %d: prev does not link" % e["seq"]
    h = hashlib.sha256(b"".join(ns(e[k]) for k in ("seq", "time", "tenant",
        "actor", "subject", "source", "action", "object", "bytes", "prev"))).hexdigest()
    assert e["hash"] == h, "entry %d: hash does not match its fields" % e["seq"]
    prev = e["hash"]
acts = set(e["action"] for e in es)
for a in ("cert.add", "token.create", "token.revoke", "enroll.request",
          "enroll.approve", "enroll.reject", "secret.put", "secret.read",
          "secret.delete"):
    assert a in acts, "no %s entry" % a
' "$RESP" || fail "audit log"
http 200 aud GET "/v1/audit?action=secret.read&actor=$WEB1_FP"
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
es = d["entries"]
assert es and all(e["action"] == "secret.read" and e["actor"] == sys.argv[2] for e in es)
assert any("prod/db/password" in e["object"] and e["bytes"] > 0 for e in es)
' "$RESP" "$WEB1_FP" || fail "filtered audit"
http 200 aud GET '/v1/audit?limit=2'
[ "$(jq_ '[len(d["entries"]), d["more"]]')" = '[2, true]' ] || fail "audit page"
LAST=$(jq_ 'd["entries"][-1]["seq"]')
http 200 aud GET "/v1/audit?after=$LAST&limit=1"
[ "$(jq_ 'd["entries"][0]["seq"]')" = $((LAST + 1)) ] || fail "audit after"

# ---------------------------------------------------------------- hostile input

step "malformed input: 4xx, nothing changed, server alive"
http 200 aud GET '/v1/audit?limit=1000'
AUDIT_BEFORE=$(jq_ 'len(d["entries"])')
# bad CASE...: each case is METHOD PATH WHO JSON (a python expression).
python3 -c 'import json, sys
big = "A" * 70000
cases = [
  ("POST", "/v1/tokens", "enr", {}),
  ("POST", "/v1/tokens", "enr", {"tokens": "x"}),
  ("POST", "/v1/tokens", "enr", {"tokens": [1]}),
  ("POST", "/v1/tokens", "enr", {"tokens": [{}]}),
  ("POST", "/v1/tokens", "enr", {"tokens": [{"id": None}]}),
  ("POST", "/v1/tokens", "enr", {"tokens": [{"id": "a" * 32, "hash": "b" * 64,
     "group": "web", "uses": 10**30, "expires": 1, "envelope": "MAA="}]}),
  ("POST", "/v1/tokens", "enr", {"tokens": [{"id": "a" * 32, "hash": "b" * 64,
     "group": "web", "uses": 1, "expires": int(sys.argv[1]) + 60, "envelope": big}]}),
  ("POST", "/v1/tokens", "enr", {"tokens": [{"id": "a" * 32, "hash": "b" * 64,
     "group": "web", "uses": 1, "expires": int(sys.argv[1]) + 60, "envelope": 7}]}),
  ("POST", "/v1/tokens", "enr", {"tokens": [{"id": "a" * 32, "hash": "b" * 64,
     "group": "web", "uses": 1, "expires": int(sys.argv[1]) + 60, "envelope": "QUFB"}]}),
  ("POST", "/v1/enroll", "-", {}),
  ("POST", "/v1/enroll", "-", {"token_id": 1}),
  ("POST", "/v1/enroll", "-", {"token_id": "a" * 32, "token_hash": "b" * 64,
     "name": "n", "csr": "C" * 300000, "hmac": "c" * 64}),
  ("POST", "/v1/enroll", "-", {"token_id": "a" * 32, "token_hash": "b" * 64,
     "name": "bad name!", "csr": "x", "hmac": "c" * 64}),
  ("PUT", "/v1/secrets?name=prod/x", "ops", {"version": "1"}),
  ("PUT", "/v1/secrets?name=prod/x", "ops", {"version": 1, "envelopes": {}}),
  ("PUT", "/v1/secrets?name=prod/x", "ops", {"version": 1, "envelopes": [{"recipient": "x"}]}),
  ("PUT", "/v1/secrets?name=prod/x", "ops", {"version": 2**60, "envelopes": []}),
  ("PUT", "/v1/secrets?name=prod/x", "ops", {"version": 1, "envelopes": [None]}),
  ("PUT", "/v1/crl", "admin", {"crl": "garbage"}),
  ("PUT", "/v1/crl", "admin", {"crl": 5}),
  ("POST", "/v1/certs", "admin", {"cert": "x", "chain": "y"}),
  ("POST", "/v1/certs", "admin", {"cert": "x", "chain": [1, 2]}),
  ("POST", "/v1/enrollments/" + "0" * 32 + "/approve", "enr", {"cert": 5}),
  ("POST", "/v1/enrollments/" + "0" * 32 + "/reject", "enr", {"reason": "a\nb"}),
  ("POST", "/v1/enrollments/zz/approve", "enr", {}),
]
for i, (m, p, who, body) in enumerate(cases):
    json.dump(body, open("hostile-%d.json" % i, "w"))
    print(m, p, who, "hostile-%d.json" % i)' "$(date +%s)" >"$W/hostile.txt" ||
	fail "cannot write the hostile cases"
while read -r m p who f; do
	req "$who" "$m" "$p" "$W/$f"
	case "$CODE" in
	400 | 403 | 404 | 413) ;;
	*) fail "$m $p with $(head -c 200 "$W/$f"): HTTP $CODE, want 4xx" ;;
	esac
done <"$W/hostile.txt"
printf '[1, 2]' >"$W/array.json"
http 400 enr POST /v1/tokens "$W/array.json"
for q in 'since=abc' 'limit=0' 'since=99999999999999999999' 'wait=-1'; do
	http 400 web1 GET "/v1/agent/secrets?$q"
done
http 400 aud GET '/v1/audit?action=DROP%20TABLE'
http 400 aud GET '/v1/audit?actor=nothex'
http 400 ops GET '/v1/secrets?prefix=%2A'
http 200 aud GET '/v1/audit?limit=1000'
[ "$(jq_ 'len(d["entries"])')" = "$AUDIT_BEFORE" ] || fail "refused requests changed the audit log"
kill -0 "$SRV_PID" || fail "the server died on malformed input"

# ---------------------------------------------------------------- CRL

step "CRL: push, stale push, revoked operator shut out"
http 200 ops GET /v1/crl
[ "$(jq_ '[d["crl"], d["number"]]')" = '[null, -1]' ] || fail "no CRL yet"
expect_ok coffer ca revoke --ca "$W/ca" --pass-file "$PASS_FILE" --cert "$W/ops.crt"
cp "$W/ca/crl.pem" "$W/crl1.pem"
mkjson "$W/crl.json" '{"crl": text(a[0])}' "$W/crl1.pem"
http 403 web1 PUT /v1/crl "$W/crl.json"
expect_ok coffer ca revoke --ca "$W/ca2" --pass-file "$PASS_FILE" --cert "$W/foreign.crt"
mkjson "$W/crl-foreign.json" '{"crl": text(a[0])}' "$W/ca2/crl.pem"
http 400 admin PUT /v1/crl "$W/crl-foreign.json"
http 200 admin PUT /v1/crl "$W/crl.json"
NUM=$(jq_ 'd["number"]')
http 409 admin PUT /v1/crl "$W/crl.json"
http 401 ops GET /v1/whoami
http 200 admin GET /v1/crl
[ "$(jq_ 'd["number"]')" = "$NUM" ] || fail "stored CRL number"
# A revoked recipient is refused.
seal_json "$W/p3.json" prod/db/password 3 "$W/v2" admin admin ops
http 400 admin PUT '/v1/secrets?name=prod/db/password' "$W/p3.json"
http 200 aud GET '/v1/audit?action=crl.'
[ "$(jq_ '[e["object"] for e in d["entries"]]')" = "[\"$NUM\"]" ] || fail "crl.push entry"

step "the server is still well"
http 200 - GET /v1/health
kill -0 "$SRV_PID" || fail "the server died"
# SIGTERM drains it; it exits 0 (under ASan: without a leak report).
SRV_RC=0
srv_stop || SRV_RC=$?
if [ "$SRV_RC" -ne 0 ]; then
	tail -n 40 "$W/server.log" >&2
	fail "the server exited $SRV_RC after SIGTERM"
fi
grep -q 'ERROR: \(Address\|Leak\|Undefined\)Sanitizer\|runtime error:' "$W/server.log" &&
	fail "a sanitizer complained: $(grep -m1 -A5 Sanitizer "$W/server.log")"
if grep -qF -e "$SECRET_V1" -e "$SECRET_V2" "$W/server.log" "$SRV"/* 2>/dev/null; then
	fail "a secret value is in the server's files or log"
fi
pass
