#!/usr/bin/env bash
#
# sync.sh - groups that change (issue 6, section 1), with a real server
# and real agents: `coffer sync` extends what a writer put to group:web
# to members that joined since (the same version, the writer's own signed
# record sealed again), gives nothing to a member that was revoked, adds
# nothing the second time, loses and duplicates nothing when two syncs
# run at once, and `sync --watch` follows an enrollment as it happens.

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

# join N: agent web-N enrolled in group web (state dir $W/aN).
join()
{
	expect_ok as bob token create --group web --ttl 1h
	cp "$OUT" "$W/t$1"
	expect_ok coffer agent join --server "$SRV_URL" --server-ca "$W/srv/server.crt" \
		--token-file "$W/t$1" --name "web-$1" --state-dir "$W/a$1" --root "$W/ca/root.crt"
	expect_ok as bob agent approve --all
	expect_ok coffer agent join --state-dir "$W/a$1" --wait 10 --root "$W/ca/root.crt"
	cp "$W/a$1/agent.crt" "$W/web-$1.crt"
	cp "$W/a$1/agent.key" "$W/web-$1.key"
}

# envelopes NAME VERSION FP: envelopes of that version held for FP.
envelopes()
{
	python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
print(db.execute("SELECT COUNT(*) FROM envelopes WHERE name = ? AND version = ? "
                 "AND recipient = ?", sys.argv[2:5]).fetchone()[0])' "$DB" "$@"
}


step "PKI, server, web-1, a secret put to group:web"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log"
export COFFER_SERVER=$SRV_URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
join 1
printf 'db-secret-1' >"$W/value"
expect_ok as alice put prod/db --to group:web --file "$W/value"
printf 'other-1' >"$W/value"
expect_ok as alice put prod/other --to agent:web-1 --file "$W/value"
expect_ok as web-1 get prod/db
assert_eq "$(cat "$OUT")" db-secret-1 "web-1's value"
expect_ok as alice sync
assert_eq "$(cat "$OUT")" "" "a sync with nothing to do prints nothing"
stderr_has "0 envelope(s) added"


step "a member that joined after the put gets the same version at sync"
join 2
expect_exit 9 as web-2 get prod/db
mkdir -p "$W/out2"
cat >"$W/agent2.conf" <<CONF
[server]
url = $SRV_URL

[file prod/db]
path = $W/out2/db
CONF
run_agent "$W/a2" "$W/agent2.conf" "$W/agent2.log"
PIDS+=("$AGENT_PID")
expect_ok as alice sync
grep -q "synced prod/db version 1: 1 new member(s) (web-2)" "$OUT" ||
	fail "sync did not extend prod/db to web-2: $(cat "$OUT")"
grep -q "prod/other" "$OUT" && fail "prod/other was written to agent:web-1 only"
wait_file "$W/out2/db" db-secret-1 15 "$W/agent2.log"
expect_ok as alice history prod/db --json
json_assert "$OUT" "len(d['versions'])" 1 "d['versions'][0]['recipients']" 3
expect_ok as alice sync
stderr_has "0 envelope(s) added"


step "a revoked member gets nothing new"
expect_ok coffer ca revoke --ca "$W/ca" --cert "$W/web-2.crt" --pass-file "$PASS_FILE"
expect_ok as alice crl push "$W/ca/crl.pem"
printf 'db-secret-2' >"$W/value"
expect_ok as alice put prod/db --to group:web --file "$W/value"
join 3
expect_ok as alice sync
grep -q "synced prod/db version 2: 1 new member(s) (web-3)" "$OUT" ||
	fail "sync did not extend prod/db v2 to web-3 alone: $(cat "$OUT")"
assert_eq "$(envelopes prod/db 2 "$(fingerprint "$W/web-2.crt")")" 0 \
	"envelopes of v2 for the revoked web-2"
expect_ok as web-3 get prod/db
assert_eq "$(cat "$OUT")" db-secret-2 "web-3's value"


step "two syncs at once: one envelope each, none lost, none twice"
join 4
join 5
as alice sync >"$W/s1.out" 2>"$W/s1.err" &
S1=$!
as alice sync >"$W/s2.out" 2>"$W/s2.err" &
S2=$!
wait "$S1" || fail "the first sync failed: $(cat "$W/s1.err")"
wait "$S2" || fail "the second sync failed: $(cat "$W/s2.err")"
for n in 4 5; do
	assert_eq "$(envelopes prod/db 2 "$(fingerprint "$W/web-$n.crt")")" 1 \
		"envelopes of v2 for web-$n"
	expect_ok as "web-$n" get prod/db
	assert_eq "$(cat "$OUT")" db-secret-2 "web-$n's value"
done
added=$(cat "$W/s1.err" "$W/s2.err" | sed -n 's/.*sync: \([0-9]*\) envelope(s) added/\1/p' |
	awk '{ s += $1 } END { print s }')
assert_eq "$added" 2 "envelopes added by the two syncs together"


step "sync --watch follows an enrollment"
"$COFFER" sync --watch --interval 1s --cert "$W/alice.crt" --key "$W/alice.key" \
	>"$W/watch.out" 2>"$W/watch.err" &
WATCH=$!
PIDS+=("$WATCH")
join 6
for _ in $(seq 1 100); do
	grep -q "(web-6)" "$W/watch.out" && break
	sleep 0.1
done
grep -q "synced prod/db version 2: 1 new member(s) (web-6)" "$W/watch.out" ||
	fail "sync --watch did not extend prod/db to web-6: $(cat "$W/watch.out" "$W/watch.err")"
kill -TERM "$WATCH"
rc=0
wait "$WATCH" || rc=$?
assert_eq "$rc" 0 "sync --watch exit status after SIGTERM"
expect_ok as web-6 get prod/db

pass
