#!/usr/bin/env bash
#
# uploads.sh - staged uploads (docs/API.md "Staged uploads") against a
# real `coffer server run` with a small --max-body (64 KiB): `coffer put`
# of a secret whose envelopes do not fit one request goes through begin,
# chunks and commit; every recipient then opens its own envelope with
# `coffer get`, and a recipient's parked long-poll is woken by the
# commit.  Then the API directly, with curl: a chunk from another
# operator (403), a recipient twice across chunks (400), an unknown
# upload (404), a commit that lost the race to another writer (409 with
# "latest", the upload dropped), abort, and nothing staged visible before
# the commit.

. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null 2>&1 || fail "curl is not installed"
CURL_BIN=$(command -v curl)
curl_() { timeout -k 5 "$E2E_CMD_TIMEOUT" "$CURL_BIN" "$@"; }

POLL_PID=""
on_exit()
{
	local rc=$?
	[ -z "$POLL_PID" ] || kill "$POLL_PID" 2>/dev/null || true
	srv_stop || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

# req WANT WHO METHOD PATH [BODY_FILE]: the answer in $RESP, status WANT.
RESP=$W/resp.json
req()
{
	local want=$1 who=$2 method=$3 path=$4 data=${5:-} code
	local args=(-sS -o "$RESP" -w '%{http_code}' --cacert "$W/srv/server.crt"
		-X "$method" --cert "$W/$who.crt" --key "$W/$who.key")
	[ -z "$data" ] || args+=(-H 'Content-Type: application/json' --data-binary "@$data")
	: >"$RESP"
	code=$(curl_ "${args[@]}" "$URL$path" 2>"$ERR") || true
	cp "$RESP" "$OUT"
	[ "$code" = "$want" ] || fail "$method $path as $who: HTTP $code, want $want: $(head -c 300 "$RESP")"
}
jq_()
{
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2], {"d": d, "len": len})
print(v if isinstance(v, str) else json.dumps(v))' "$RESP" "$1"
}

# ---------------------------------------------------------------- setup
step "PKI and a server with a 64 KiB body limit"
mk_ca "$W/ca" Acme
mk_operator ops "$W/ca" 'secret.write:prod/**' 'secret.read:prod/**'
mk_operator ops2 "$W/ca" 'secret.write:prod/**'
for a in a1 a2 a3; do mk_agent "$a" "$W/ca" web; done
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log" --max-body 65536
URL=$SRV_URL
export COFFER_SERVER=$URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
for n in ops ops2 a1 a2 a3; do req 200 "$n" GET /v1/whoami; done
A1_FP=$(fingerprint "$W/a1.crt")
A2_FP=$(fingerprint "$W/a2.crt")

# ------------------------------------------------------- coffer put, staged
step "put: 4 envelopes of ~40 KiB each cannot share one 64 KiB body"
# 20 KiB of text: each envelope's base64 is ~40 KiB, so only one fits a body.
openssl rand -hex 10240 >"$W/big"
req 200 a1 GET '/v1/agent/secrets?since=0'
CURSOR=$(jq_ 'd["cursor"]')
curl_ -sS -o "$W/poll.json" --cacert "$W/srv/server.crt" --cert "$W/a1.crt" \
	--key "$W/a1.key" "$URL/v1/agent/secrets?since=$CURSOR&wait=25" &
POLL_PID=$!
sleep 1
START=$(date +%s%N)
expect_ok as ops put prod/big --to group:web --file "$W/big"
grep -q 'version 1 ' "$OUT" || fail "put did not store version 1: $(cat "$OUT")"
wait "$POLL_PID" || fail "the long-poll failed"
POLL_PID=""
ELAPSED_MS=$((($(date +%s%N) - START) / 1000000))
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert [s["name"] for s in d["secrets"]] == ["prod/big"], d' "$W/poll.json" ||
	fail "the woken long-poll does not carry prod/big"
[ "$ELAPSED_MS" -lt 20000 ] || fail "the long-poll was not woken by the commit"
for a in a1 a2 a3; do
	expect_ok as "$a" get prod/big
	same_file "$OUT" "$W/big"
done
req 200 ops GET '/v1/secrets/history?name=prod/big'
[ "$(jq_ '[(v["version"], v["recipients"]) for v in d["versions"]]')" = '[[1, 4]]' ] ||
	fail "history: $(cat "$RESP")"
# The staged path is what carried it: one PUT of it is refused.
mkdir -p "$W/sealed"
expect_ok coffer seal --name prod/big --version 2 --signer-cert "$W/ops.crt" \
	--signer-key "$W/ops.key" --root "$W/ca/root.crt" --in "$W/big" \
	--to "$W/a1.crt" --to "$W/a2.crt" --out-dir "$W/sealed"
python3 -c 'import base64, json, os, sys
d = sys.argv[1]
envs = [{"recipient": f[:-4], "envelope": base64.b64encode(open(os.path.join(d, f), "rb").read()).decode()}
        for f in sorted(os.listdir(d))]
json.dump({"version": 2, "envelopes": envs}, open(sys.argv[2], "w"))' "$W/sealed" "$W/put2.json"
req 413 ops PUT '/v1/secrets?name=prod/big' "$W/put2.json"

# ------------------------------------------------------------ the API, directly
step "API: begin, chunks, refusals"
# small envelopes for a1 and a2, made by coffer seal
rm -rf "$W/sealed" && mkdir -p "$W/sealed"
printf 'small value' >"$W/small"
expect_ok coffer seal --name prod/x --version 1 --signer-cert "$W/ops.crt" \
	--signer-key "$W/ops.key" --root "$W/ca/root.crt" --in "$W/small" \
	--to "$W/a1.crt" --to "$W/a2.crt" --out-dir "$W/sealed"
chunk() # OUT FP...
{
	local out=$1
	shift
	python3 -c 'import base64, json, sys
d, out = sys.argv[1], sys.argv[2]
json.dump({"envelopes": [{"recipient": fp, "envelope": base64.b64encode(
    open("%s/%s.cms" % (d, fp), "rb").read()).decode()} for fp in sys.argv[3:]]},
    open(out, "w"))' "$W/sealed" "$out" "$@"
}
chunk "$W/c1.json" "$A1_FP"
chunk "$W/c2.json" "$A2_FP"
chunk "$W/c12.json" "$A2_FP" "$A1_FP"
printf '{"name": "prod/x", "version": 1}' >"$W/begin.json"
req 201 ops POST /v1/secrets/uploads "$W/begin.json"
UP=$(jq_ 'd["upload"]')
[ "$(jq_ '[d["name"], d["version"], d["max_body"], len(d["upload"])]')" = '["prod/x", 1, 65536, 32]' ] ||
	fail "begin answer: $(cat "$RESP")"
req 200 ops POST "/v1/secrets/uploads/$UP" "$W/c1.json"
[ "$(jq_ 'd["received"]')" = 1 ] || fail "received after chunk 1"
req 403 ops2 POST "/v1/secrets/uploads/$UP" "$W/c2.json"
req 403 ops2 POST "/v1/secrets/uploads/$UP/commit"
req 400 ops POST "/v1/secrets/uploads/$UP" "$W/c12.json"
grep -q "$A1_FP" "$RESP" || fail "the duplicate is not named"
req 404 ops POST /v1/secrets/uploads/0123456789abcdef0123456789abcdef "$W/c2.json"
req 404 ops POST /v1/secrets/uploads/nothex "$W/c2.json"
req 403 a1 POST /v1/secrets/uploads "$W/begin.json"
# staged but not committed: nobody sees it
req 404 a1 GET '/v1/secrets/envelope?name=prod/x'
req 404 ops GET '/v1/secrets/history?name=prod/x'
req 200 ops POST "/v1/secrets/uploads/$UP" "$W/c2.json"
[ "$(jq_ 'd["received"]')" = 2 ] || fail "received after chunk 2"

step "API: a commit that lost the race is 409 and dropped"
req 201 ops2 POST /v1/secrets/uploads "$W/begin.json"
UP2=$(jq_ 'd["upload"]')
req 200 ops2 POST "/v1/secrets/uploads/$UP2" "$W/c1.json"
req 201 ops2 POST "/v1/secrets/uploads/$UP2/commit"
[ "$(jq_ '[d["name"], d["version"], d["recipients"]]')" = '["prod/x", 1, 1]' ] ||
	fail "commit answer: $(cat "$RESP")"
req 409 ops POST "/v1/secrets/uploads/$UP/commit"
[ "$(jq_ 'd["latest"]')" = 1 ] || fail "409 without latest"
req 404 ops POST "/v1/secrets/uploads/$UP/commit"
req 409 ops POST /v1/secrets/uploads "$W/begin.json"
req 200 a1 GET '/v1/secrets/envelope?name=prod/x'
req 404 a2 GET '/v1/secrets/envelope?name=prod/x'

step "API: abort"
printf '{"name": "prod/x", "version": 2}' >"$W/begin2.json"
req 201 ops POST /v1/secrets/uploads "$W/begin2.json"
UP3=$(jq_ 'd["upload"]')
req 200 ops POST "/v1/secrets/uploads/$UP3" "$W/c2.json"
req 403 ops2 DELETE "/v1/secrets/uploads/$UP3"
req 200 ops DELETE "/v1/secrets/uploads/$UP3"
[ "$(jq_ '[d["upload"], d["aborted"]]')" = "[\"$UP3\", true]" ] || fail "abort answer"
req 404 ops DELETE "/v1/secrets/uploads/$UP3"
req 404 ops POST "/v1/secrets/uploads/$UP3/commit"
req 200 ops GET '/v1/secrets/history?name=prod/x'
[ "$(jq_ '[v["version"] for v in d["versions"]]')" = '[1]' ] || fail "abort stored something"

pass
