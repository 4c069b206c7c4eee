#!/usr/bin/env bash
#
# flow.sh - the whole server flow through the real `coffer` binary
# (issue 4, section 8): a PKI, a server on 127.0.0.1 with an ephemeral
# port, join tokens, an agent joining while an enroller approves, put and
# get, the agent reading its envelope through the feed (with curl, not
# coffer) and opening it, ls/history/rm, the audit chain verified and then
# tampered with, a CRL pushed and the revoked operator refused; refusals
# along the way (token reuse, a forged HMAC, permission denials,
# unauthenticated and foreign-root clients).  At the end the database and
# the server's log must not contain any secret value or token secret.
#
# Needs curl and python3's sqlite3 module besides what lib.sh checks.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null 2>&1 || { echo "FAIL [flow]: curl is not installed" >&2; exit 1; }
CURL_BIN=$(command -v curl)
curl() { timeout -k 5 "$E2E_CMD_TIMEOUT" "$CURL_BIN" "$@"; }

JOIN_PID=""
on_exit()
{
	local rc=$?
	[ -z "$JOIN_PID" ] || kill "$JOIN_PID" 2>/dev/null || true
	srv_stop || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

# ---------------------------------------------------------------- PKI
step "PKI"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**' 'secret.read:prod/**'
# audit.read and a second writer, to be revoked later
mk_operator mallory "$W/ca" 'secret.write:prod/**'
mk_operator carol "$W/ca" 'secret.read:prod/**'
mk_operator auditor "$W/ca" 'audit.read:**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
mk_ca "$W/other" Other
mk_operator eve "$W/other" 'secret.write:**' 'secret.read:**'

# --------------------------------------------------------------- server
step "server"
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log"
URL=$SRV_URL
export COFFER_SERVER=$URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt

expect_ok curl -sS --cacert "$W/srv/server.crt" "$URL/v1/health"
json_assert "$OUT" 'd["status"]' ok

# ---------------------------------------------------------------- tokens
step "token create"
expect_ok as bob token create --group web --count 3 --ttl 1h
cp "$OUT" "$W/tokens.txt"
assert_eq "$(wc -l <"$W/tokens.txt")" 3 "token lines"
grep -Evq '^[0-9a-f]{32}\.[A-Za-z0-9_-]{43}$' "$W/tokens.txt" &&
	fail "a token line is not ID.SECRET: $(cat "$W/tokens.txt")"
sed -n 1p "$W/tokens.txt" >"$W/t1"
sed -n 2p "$W/tokens.txt" >"$W/t2"
T3=$(sed -n 3p "$W/tokens.txt")
expect_ok as bob token ls --json
json_assert "$OUT" 'len(d["tokens"])' 3 \
	'sorted(set(t["state"] for t in d["tokens"]))' '["active"]'
# carol holds no token.create
expect_refusal 23 as carol token create --group web

# ------------------------------------------------------------ join + approve
step "agent join"
expect_ok coffer agent join --server "$URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t1" --name web-1 --state-dir "$W/agent1"
grep -q '^pending' "$OUT" || fail "join without --wait did not say pending"
assert_eq "$(stat -c %a "$W/agent1")" 700 "state dir mode"
assert_eq "$(stat -c %a "$W/agent1/agent.key")" 600 "agent key mode"
json_assert "$W/agent1/agent.json" 'd["server"]' "$URL" 'd["name"]' web-1
# the same state dir resumes: no new key, no second use of the token
KEY_SUM=$(sha256sum <"$W/agent1/agent.key")
expect_refusal 27 coffer agent join --state-dir "$W/agent1" --wait 1
assert_eq "$(sha256sum <"$W/agent1/agent.key")" "$KEY_SUM" "key kept"
( "$COFFER" agent join --state-dir "$W/agent1" --wait 60 --root "$W/ca/root.crt" \
	>"$W/join.out" 2>"$W/join.err"; echo $? >"$W/join.rc" ) &
JOIN_PID=$!

step "agent approve"
expect_ok as bob agent approve --all
grep -q '^approved web-1 (group web' "$OUT" || fail "approve did not approve web-1"
wait "$JOIN_PID" || true
JOIN_PID=""
assert_eq "$(cat "$W/join.rc")" 0 "join exit code ($(cat "$W/join.err"))"
[ -s "$W/agent1/agent.crt" ] || fail "no agent.crt"
[ ! -e "$W/agent1/enroll.json" ] || fail "enroll.json left behind"
expect_ok openssl verify -CAfile "$W/ca/root.crt" -untrusted "$W/agent1/agent.crt" \
	"$W/agent1/agent.crt"
expect_ok coffer cert show "$W/agent1/agent.crt" --json
json_assert "$OUT" 'd["kind"]' agent 'd["groups"]' '["web"]'
expect_ok as bob agent ls --json
json_assert "$OUT" '[a["name"] for a in d["agents"]]' '["web-1"]'

step "token reuse and refusals"
expect_refusal 26 coffer agent join --server "$URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t1" --name web-x --state-dir "$W/agentx"
# a second agent with the second token
expect_ok coffer agent join --server "$URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t2" --name web-2 --state-dir "$W/agent2"

# A forged request: the right token hash (as a server would know it) but
# an HMAC made without the SECRET.  The enroller must reject it.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$W/forged.key" -subj /CN=web-forged -out "$W/forged.csr" 2>/dev/null ||
	fail "openssl req failed"
python3 -c 'import hashlib, json, sys
tok, csr = sys.argv[1], open(sys.argv[2]).read()
tid, secret = tok.split(".")
print(json.dumps({"token_id": tid, "token_hash": hashlib.sha256(secret.encode()).hexdigest(),
                  "name": "web-forged", "csr": csr, "hmac": "00" * 32}))' \
	"$T3" "$W/forged.csr" >"$W/forged.json" || fail "python3 failed"
expect_ok curl -sS --fail-with-body --cacert "$W/srv/server.crt" -X POST \
	-H 'Content-Type: application/json' --data-binary "@$W/forged.json" \
	"$URL/v1/enroll"
FORGED_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT")

expect_ok as bob agent approve --all
grep -q '^approved web-2' "$OUT" || fail "web-2 not approved"
grep -q '^rejected web-forged .*HMAC does not match the token' "$OUT" ||
	fail "the forged request was not rejected for its HMAC"
expect_ok curl -sS --cacert "$W/srv/server.crt" "$URL/v1/enroll/$FORGED_ID"
json_assert "$OUT" 'd["status"]' rejected
expect_ok coffer agent join --state-dir "$W/agent2" --wait 30
[ -s "$W/agent2/agent.crt" ] || fail "web-2 got no certificate"

# ---------------------------------------------------------------- secrets
step "put"
SECRET_V1="flow-v1-$(openssl rand -hex 12)"
SECRET_V2="flow-v2-$(openssl rand -hex 12)"
printf '%s' "$SECRET_V1" >"$W/v1"
expect_ok as alice put prod/db/password --to group:web --file "$W/v1" --json
json_assert "$OUT" 'd["version"]' 1 'len(d["recipients"])' 3
printf '%s' "$SECRET_V2" | as alice put prod/db/password --to agent:web-1 >"$OUT" 2>"$ERR" ||
	fail "second put failed: $(cat "$ERR")"
grep -q 'version 2' "$OUT" || fail "second put is not version 2"
# carol may not write; eve's root is not the tenant's
expect_refusal 18 as carol put prod/db/password --to group:web --file "$W/v1"

step "get"
expect_ok as alice get prod/db/password
assert_eq "$(cat "$OUT")" "$SECRET_V2" "alice reads v2"
expect_ok as alice get prod/db/password --version 1
assert_eq "$(cat "$OUT")" "$SECRET_V1" "alice reads v1"
expect_ok coffer get prod/db/password --cert "$W/agent1/agent.crt" --key "$W/agent1/agent.key"
assert_eq "$(cat "$OUT")" "$SECRET_V2" "web-1 reads v2"
# web-2 was left out of version 2
expect_refusal 9 coffer get prod/db/password --cert "$W/agent2/agent.crt" \
	--key "$W/agent2/agent.key"
expect_refusal 9 as carol get prod/db/password

step "agent feed"
expect_ok curl -sS --fail-with-body --cacert "$W/srv/server.crt" \
	--cert "$W/agent1/agent.crt" --key "$W/agent1/agent.key" \
	"$URL/v1/agent/secrets?since=0"
python3 -c 'import base64, json, sys
d = json.load(open(sys.argv[1]))
s = [x for x in d["secrets"] if x["name"] == "prod/db/password"]
assert len(s) == 1 and s[0]["version"] == 2, s
open(sys.argv[2], "wb").write(base64.b64decode(s[0]["envelope"]))' "$OUT" "$W/feed.cms" ||
	fail "the feed does not hold version 2 of prod/db/password"
expect_ok coffer open --name prod/db/password --cert "$W/agent1/agent.crt" \
	--key "$W/agent1/agent.key" --root "$W/ca/root.crt" --in "$W/feed.cms"
assert_eq "$(cat "$OUT")" "$SECRET_V2" "web-1 opens its feed envelope"

step "ls, history, rm"
expect_ok as alice ls prod/ --json
json_assert "$OUT" '[s["name"] for s in d["secrets"]]' '["prod/db/password"]'
expect_ok as carol ls
grep -q 'prod/db/password' "$OUT" || fail "carol (secret.read) cannot list"
expect_ok as alice history prod/db/password --json
json_assert "$OUT" 'sorted(v["version"] for v in d["versions"])' '[1, 2]'
expect_refusal 23 as carol rm prod/db/password
expect_ok as alice rm prod/db/password
expect_ok as alice history prod/db/password --json
json_assert "$OUT" 'max(d["versions"], key=lambda v: v["version"])["deleted"]' true
# a put after rm continues above the tombstone
printf '%s' "$SECRET_V1" | as alice put prod/db/password --to agent:web-1 >"$OUT" 2>"$ERR" ||
	fail "put after rm failed: $(cat "$ERR")"
grep -q 'version 4' "$OUT" || fail "put after rm is not version 4: $(cat "$OUT")"

step "unauthenticated and foreign clients"
expect_ok curl -sS -o /dev/null -w '%{http_code}' --cacert "$W/srv/server.crt" \
	"$URL/v1/secrets?prefix="
assert_eq "$(cat "$OUT")" 401 "no client certificate"
expect_exit 23 as eve ls
expect_refusal 24 coffer ls --cert "$W/alice.crt" --key "$W/alice.key" \
	--server-ca "$W/ca/root.crt"

# ------------------------------------------------------------------ audit
step "audit"
expect_refusal 23 as alice audit
expect_ok as auditor audit --json
json_assert "$OUT" '"secret.read" in [e["action"] for e in d["entries"]]' true
expect_ok as auditor audit verify
grep -q '^audit chain intact: [0-9]* entries, last hash [0-9a-f]\{64\}$' "$OUT" ||
	fail "audit verify said: $(cat "$OUT")"
# The chain of another organisation's root is refused, naming an entry.
expect_refusal 31 as auditor audit verify --root "$W/other/root.crt"
stderr_has "audit entry"

# ------------------------------------------------------------ revocation
step "crl push"
expect_ok as mallory ls
expect_ok coffer ca revoke --ca "$W/ca" --cert "$W/mallory.crt" --pass-file "$PASS_FILE"
expect_ok as alice crl push "$W/ca/crl.pem"
expect_refusal 23 as mallory ls
expect_refusal 22 as alice crl push "$W/ca/crl.pem"
expect_ok as alice ls

step "audit tampering"
# An edit behind the server's back (the database is in WAL mode; this is
# what someone with the file could do), then the chain must break there.
python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
n = db.execute("UPDATE audit SET object = object || ? WHERE seq = 3", ("x",)).rowcount
db.commit()
sys.exit(0 if n == 1 else "no audit entry 3")' "$W/srv/coffer.db" || fail "cannot edit the audit table"
expect_refusal 31 as auditor audit verify
stderr_has "audit entry 3 "

step "no secret at rest"
srv_stop || true
for f in "$W"/srv/coffer.db* "$W/srv.log"; do
	[ -e "$f" ] || continue
	for s in "$SECRET_V1" "$SECRET_V2" $(cut -d. -f2 "$W/tokens.txt"); do
		if grep -qaF -- "$s" "$f"; then
			fail "$(basename "$f") holds a secret value or token secret"
		fi
	done
done

pass
