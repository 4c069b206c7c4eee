#!/usr/bin/env bash
#
# status.sh - rollout status (issue 6 section 4, docs/CLIENT.md
# "coffer status"): a real server and three real agents of group web
# that acknowledge what they applied, and `coffer status` reading it.
#
#   1. after a put every agent applies it: 3 applied, exit 0 (--json too);
#   2. a sink that cannot be written (its path lies under a regular file)
#      on web-3: failed, with the agent's reason; the agents that use the
#      secret nowhere acknowledge it anyway;
#   3. web-2 stopped, a new version put: web-2 behind, exit 32; `agent
#      once` catches it up and acknowledges too: exit 0 again;
#   4. /metrics counts up to date / behind / failed agents and exposed
#      secrets as the acknowledgements say;
#   5. web-2 revoked (`ca revoke` + `crl push`, which deletes its
#      envelopes): the secrets whose current value it acknowledged are
#      listed as exposed, with the version;
#   6. an acknowledgement altered in the server's database (python3
#      sqlite3, the test as a hostile server) is shown as unverified, and
#      a plain field the server lies about changes nothing;
#   7. the acks on the server hold no secret value.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

PIDS=()
on_exit()
{
	local rc=$? pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	srv_stop || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

DB=$W/srv/coffer.db
VALUE_MARK=statusvalue-4c2e9a

put()
{
	printf '%s-%s' "$VALUE_MARK" "$2" >"$W/value"
	expect_ok as ops put "$1" --to group:web --file "$W/value"
	rm -f "$W/value"
}

# wait_status ARGS... -- PYTHON: until `coffer status ARGS --json` (as
# ops) satisfies the python3 expression over d (its document); the last
# answer stays in $OUT.
wait_status()
{
	local args=() cond
	while [ "$1" != "--" ]; do args+=("$1"); shift; done
	cond=$2
	for _ in $(seq 1 150); do
		run_capture as ops status "${args[@]}" --json
		if python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$OUT" "$cond" 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	fail "status ${args[*]} never satisfied: $cond; last: $(cat "$OUT" "$ERR"); logs: $(tail -3 "$W"/agent*.log)"
}

# expect_rc CODE CMD...: CMD must exit with CODE (stdout may hold the
# report that explains it).
expect_rc()
{
	local want=$1
	shift
	run_capture "$@"
	[ "$RC" -eq "$want" ] || fail "expected exit $want, got $RC from: $*: $(cat "$OUT" "$ERR")"
}

# names D LIST: the agent names of one list of the first secret of d.
NAMES='lambda d, k: sorted(a["name"] for a in d["secrets"][0][k])'

metric()
{
	curl -s --cacert "$W/srv/server.crt" "$SRV_URL/metrics" |
		awk -v m="$1" '$1 == m { print $2 }'
}


step "PKI, server, three agents of group web"
mk_ca "$W/ca" Acme
mk_operator ops "$W/ca" 'secret.write:app/**'
mk_operator outsider "$W/ca" 'secret.write:other/**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log" --metrics-every 0
export COFFER_SERVER=$SRV_URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
for n in 1 2 3; do
	expect_ok as bob token create --group web --ttl 1h
	cp "$OUT" "$W/t$n"
	expect_ok coffer agent join --server "$SRV_URL" --server-ca "$W/srv/server.crt" \
		--token-file "$W/t$n" --name "web-$n" --state-dir "$W/a$n" --root "$W/ca/root.crt"
	expect_ok as bob agent approve --all
	expect_ok coffer agent join --state-dir "$W/a$n" --wait 10 --root "$W/ca/root.crt"
	mkdir -p "$W/out$n"
	cat >"$W/agent$n.conf" <<CONF
[server]
url = $SRV_URL

[file app/db]
path = $W/out$n/db
CONF
done
# web-3 also writes app/cfg, to a path that cannot be: under a regular file.
printf 'not a directory' >"$W/out3/blocker"
cat >>"$W/agent3.conf" <<CONF

[file app/cfg]
path = $W/out3/blocker/cfg
CONF
for n in 1 2 3; do
	run_agent "$W/a$n" "$W/agent$n.conf" "$W/agent$n.log"
	PIDS+=("$AGENT_PID")
done
A2_PID=${PIDS[1]}
FP1=$(fingerprint "$W/a1/agent.crt")
FP2=$(fingerprint "$W/a2/agent.crt")
FP3=$(fingerprint "$W/a3/agent.crt")


step "a put reaches every agent: 3 applied, exit 0"
put app/db 1
for n in 1 2 3; do wait_file "$W/out$n/db" "$VALUE_MARK-1" 15 "$W/agent$n.log"; done
wait_status app/db -- "d['secrets'][0]['counts']['applied'] == 3"
json_assert "$OUT" "d['ok']" true "d['secrets'][0]['version']" 1 \
	"($NAMES)(d, 'applied')" '["web-1", "web-2", "web-3"]' \
	"d['secrets'][0]['behind']" "[]" "d['secrets'][0]['exposed']" "[]"
expect_ok as ops status app/db
grep -q "app/db  v1: 3 applied, 0 behind, 0 failed, 0 no ack yet" "$OUT" ||
	fail "no summary line: $(cat "$OUT")"
# Nobody else's business: an operator without rights on app/ sees nothing.
expect_refusal 23 as outsider status app/db
expect_ok as outsider status --prefix app/
grep -q "no secret matches" "$OUT" || fail "outsider saw: $(cat "$OUT")"


step "a sink that cannot be written: failed, with the agent's reason"
put app/cfg 1
wait_status app/cfg -- "d['secrets'][0]['counts']['failed'] == 1 and d['secrets'][0]['counts']['applied'] == 2"
json_assert "$OUT" "d['secrets'][0]['failed'][0]['name']" web-3 \
	"d['secrets'][0]['failed'][0]['version']" 1 \
	"'Not a directory' in d['secrets'][0]['failed'][0]['reason']" true \
	"d['ok']" false
expect_rc 32 as ops status app/cfg
grep -q "web-3.*v1 failed.*Not a directory" "$OUT" || fail "the reason is not shown: $(cat "$OUT")"
# --group narrows to the group's agents; every agent here is in web.
expect_rc 32 as ops status --group web
grep -q "^app/db  v1: 3 applied" "$OUT" || fail "--group web: $(cat "$OUT")"
grep -q "^app/cfg  v1: 2 applied, 0 behind, 1 failed" "$OUT" || fail "--group web: $(cat "$OUT")"
expect_ok as ops status --group db
grep -q "no secret matches" "$OUT" || fail "--group db: $(cat "$OUT")"


step "web-2 stopped, a new version: web-2 behind, exit 32"
kill -TERM "$A2_PID"
wait "$A2_PID" || fail "web-2 did not stop cleanly"
PIDS=("${PIDS[0]}" "${PIDS[2]}")
put app/db 2
wait_file "$W/out1/db" "$VALUE_MARK-2" 15 "$W/agent1.log"
wait_file "$W/out3/db" "$VALUE_MARK-2" 15 "$W/agent3.log"
wait_status app/db -- "d['secrets'][0]['counts']['applied'] == 2"
json_assert "$OUT" "d['secrets'][0]['version']" 2 \
	"($NAMES)(d, 'applied')" '["web-1", "web-3"]' \
	"d['secrets'][0]['behind'][0]['name']" web-2 \
	"d['secrets'][0]['behind'][0]['version']" 1
expect_rc 32 as ops status app/db
grep -q "app/db  v2: 2 applied, 1 behind" "$OUT" || fail "not behind: $(cat "$OUT")"


step "agent once catches web-2 up and acknowledges it"
expect_ok coffer agent once --state-dir "$W/a2" --config "$W/agent2.conf"
assert_eq "$(cat "$W/out2/db")" "$VALUE_MARK-2" "web-2's file after agent once"
wait_status app/db -- "d['secrets'][0]['counts']['applied'] == 3"
expect_ok as ops status app/db
put app/db 3
wait_file "$W/out1/db" "$VALUE_MARK-3" 15 "$W/agent1.log"
wait_file "$W/out3/db" "$VALUE_MARK-3" 15 "$W/agent3.log"
wait_status app/db -- "d['secrets'][0]['counts']['applied'] == 2 and d['secrets'][0]['counts']['behind'] == 1"


step "/metrics: up to date, behind, failed; nothing exposed yet"
# app/db v3: web-1, web-3 up to date, web-2 behind; app/cfg v1: web-1 and
# web-2 (no sink uses it) up to date, web-3 failed.
assert_eq "$(metric 'coffer_rollout_agents{state="up_to_date"}')" 4 "up to date"
assert_eq "$(metric 'coffer_rollout_agents{state="behind"}')" 1 "behind"
assert_eq "$(metric 'coffer_rollout_agents{state="failed"}')" 1 "failed"
assert_eq "$(metric coffer_secrets_exposed)" 0 "exposed before the revocation"


step "web-2 revoked: the secrets it holds are listed as exposed"
# web-2 catches up once more: it holds the current values when revoked.
# `crl push` deletes its envelopes on the server; its acknowledgements
# say what it read all the same.
expect_ok coffer agent once --state-dir "$W/a2" --config "$W/agent2.conf"
wait_status app/db -- "d['secrets'][0]['counts']['applied'] == 3"
expect_ok coffer ca revoke --ca "$W/ca" --cert "$W/a2/agent.crt" --pass-file "$PASS_FILE"
expect_ok as ops crl push "$W/ca/crl.pem"
run_capture as ops status app/db --json
assert_eq "$RC" 32 "status exit with an exposed secret"
json_assert "$OUT" "d['secrets'][0]['exposed'][0]['fp']" "$FP2" \
	"d['secrets'][0]['exposed'][0]['name']" web-2 \
	"d['secrets'][0]['exposed'][0]['via']" ack \
	"d['secrets'][0]['exposed'][0]['versions']" "[3]" \
	"($NAMES)(d, 'applied')" '["web-1", "web-3"]' \
	"d['secrets'][0]['counts']['behind']" 0 \
	"d['secrets'][0]['counts']['exposed']" 1
# The same read in pages of one recipient (a large fleet's way): the
# same document, and the server's pages move forward.
cp "$OUT" "$W/status.full"
run_capture as ops status app/db --json --page 1
assert_eq "$RC" 32 "status exit, paged"
cmp -s "$OUT" "$W/status.full" || fail "status --page 1 differs: $(diff "$W/status.full" "$OUT")"
code=$(curl -s -o "$W/page.json" -w '%{http_code}' --cacert "$W/srv/server.crt" \
	--cert "$W/ops.crt" --key "$W/ops.key" "$SRV_URL/v1/status?name=app/db&limit=1")
assert_eq "$code" 200 "GET /v1/status with limit=1"
json_assert "$W/page.json" "len(d['secrets'][0]['recipients'])" 1 \
	"d['secrets'][0]['recipients_more']" true \
	"d['secrets'][0]['recipients_after'] == d['secrets'][0]['recipients'][0]['fp']" true
code=$(curl -s -o "$W/page.json" -w '%{http_code}' --cacert "$W/srv/server.crt" \
	--cert "$W/ops.crt" --key "$W/ops.key" "$SRV_URL/v1/status?prefix=app/&limit=1")
assert_eq "$code" 400 "limit without name"
expect_rc 32 as ops status app/db
grep -q "EXPOSED: agent \"web-2\" (${FP2:0:16}...), revoked, acknowledged the current value, version 3" "$OUT" ||
	fail "exposure not shown: $(cat "$OUT")"
grep -q "coffer rotate app/db" "$OUT" || fail "no rotate hint: $(cat "$OUT")"
assert_eq "$(metric coffer_secrets_exposed)" 2 "exposed secrets (app/db, app/cfg)"
# A rotation (a new version without web-2) ends app/db's exposure.
put app/db 4
run_capture as ops status app/db --json
json_assert "$OUT" "d['secrets'][0]['exposed']" "[]"
assert_eq "$(metric coffer_secrets_exposed)" 1 "exposed secrets after app/db's new version"


step "a hostile server: an altered ack is unverified, a lying field ignored"
python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
der = bytearray(db.execute("SELECT der FROM acks WHERE agent = ? AND name = ?",
                           (sys.argv[2], "app/db")).fetchone()[0])
i = bytes(der).find(b"\"result\":\"ok\"")
assert i > 0
der[i + 11] ^= 0x01
db.execute("UPDATE acks SET der = ? WHERE agent = ? AND name = ?",
           (bytes(der), sys.argv[2], "app/db"))
# The plain columns say web-3 applied app/cfg; its signed ack says failed.
db.execute("UPDATE acks SET result = ?, version = 99, reason = ? "
           "WHERE agent = ? AND name = ?", ("ok", "", sys.argv[3], "app/cfg"))
db.commit()' "$DB" "$FP1" "$FP3" || fail "cannot alter the acks"
run_capture as ops status app/db --json
assert_eq "$RC" 32 "status exit with an unverified ack"
json_assert "$OUT" "d['secrets'][0]['unverified'][0]['name']" web-1 \
	"($NAMES)(d, 'applied')" '["web-3"]'
expect_rc 32 as ops status app/db
grep -q "unverified:" "$OUT" || fail "no unverified list: $(cat "$OUT")"
run_capture as ops status app/cfg --json
json_assert "$OUT" "d['secrets'][0]['failed'][0]['name']" web-3 \
	"d['secrets'][0]['failed'][0]['version']" 1


step "the acks hold no secret value"
python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
for der, reason in db.execute("SELECT der, reason FROM acks"):
    assert sys.argv[2].encode() not in der and sys.argv[2] not in reason
n = db.execute("SELECT COUNT(*) FROM acks").fetchone()[0]
assert n >= 6, n' "$DB" "$VALUE_MARK" || fail "an ack holds a value, or acks are missing"
grep -q "secret.ack" <(python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
for (a,) in db.execute("SELECT action FROM audit"): print(a)' "$DB") ||
	fail "no secret.ack audit entry"


step "read but never acknowledged: still exposed once its envelopes are gone"
# A thief with an agent's key fetches the current value and acknowledges
# nothing; the CRL push deletes its envelopes.  What the server deleted
# is remembered: the secret stays exposed until a new version.
expect_ok as bob token create --group web --ttl 1h
cp "$OUT" "$W/t4"
expect_ok coffer agent join --server "$SRV_URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t4" --name web-4 --state-dir "$W/a4" --root "$W/ca/root.crt"
expect_ok as bob agent approve --all
expect_ok coffer agent join --state-dir "$W/a4" --wait 10 --root "$W/ca/root.crt"
cp "$W/a4/agent.crt" "$W/web-4.crt"
cp "$W/a4/agent.key" "$W/web-4.key"
FP4=$(fingerprint "$W/web-4.crt")
put app/key 1
expect_ok as web-4 get app/key
expect_ok coffer ca revoke --ca "$W/ca" --cert "$W/web-4.crt" --pass-file "$PASS_FILE"
expect_ok as ops crl push "$W/ca/crl.pem"
run_capture as ops status app/key --json
assert_eq "$RC" 32 "status exit with a secret read before a revocation"
json_assert "$OUT" "[x['fp'] for x in d['secrets'][0]['exposed']]" "[\"$FP4\"]" \
	"d['secrets'][0]['exposed'][0]['via']" purged \
	"d['secrets'][0]['exposed'][0]['versions']" "[1]"
expect_rc 32 as ops status app/key
grep -q "EXPOSED: agent \"web-4\" (${FP4:0:16}...), revoked, held the current value until its envelopes were deleted, version 1" "$OUT" ||
	fail "exposure by deleted envelopes not shown: $(cat "$OUT")"
put app/key 2
wait_status app/key -- "d['secrets'][0]['exposed'] == []"

pass
