#!/usr/bin/env bash
#
# crash.sh - a committed change survives a kill -9 of the server (issue 4,
# section 4; DESIGN 7.5).  Puts a secret, kills the server with SIGKILL as
# soon as the upload was acknowledged, restarts it on the same directory,
# and reads the secret back; then a second version and a second kill, in
# the middle of a stream of uploads, after which every acknowledged
# version is there, versions are consecutive, and the audit chain is
# intact.  The database is never left in a state the server refuses.
#
# Needs curl besides what lib.sh checks.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

on_exit()
{
	local rc=$?
	srv_stop KILL || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

start_server()
{
	srv_start "$W/srv" "$W/srv.log"
	export COFFER_SERVER=$SRV_URL
}

kill9_server()
{
	kill -0 "$SRV_PID" 2>/dev/null || fail "the server was not running"
	srv_stop KILL || true
}

as_alice() { coffer "$@" --cert "$W/alice.crt" --key "$W/alice.key"; }

step "PKI and server"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:app/**' 'secret.read:app/**' 'audit.read:**'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
export COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
start_server

step "put, kill -9 at once, restart, get"
printf 'first-value-%s' "$RANDOM$RANDOM" >"$W/v1"
expect_ok as_alice put app/db --to "fp:$(fingerprint "$W/alice.crt")" --file "$W/v1"
kill9_server
start_server
expect_ok as_alice get app/db
assert_eq "$(cat "$OUT")" "$(cat "$W/v1")" "value after kill -9"

step "a stream of uploads, killed in the middle"
# Each acknowledged version is recorded; the kill lands while uploads are
# in flight, so the last one may or may not be committed, but every
# acknowledged one must be.
: >"$W/acked"
(
	for i in $(seq 2 40); do
		printf 'value-%s' "$i" >"$W/in.$i"
		if "$COFFER" put app/db --to "fp:$(fingerprint "$W/alice.crt")" \
			--file "$W/in.$i" --cert "$W/alice.crt" --key "$W/alice.key" \
			>/dev/null 2>&1; then
			echo "$i" >>"$W/acked"
		else
			break
		fi
	done
) &
LOOP_PID=$!
for _ in $(seq 1 100); do
	[ "$(wc -l <"$W/acked")" -ge 5 ] && break
	sleep 0.05
done
kill9_server
wait "$LOOP_PID" || true
ACKED=$(wc -l <"$W/acked")
[ "$ACKED" -ge 5 ] || fail "only $ACKED uploads were acknowledged before the kill"
LAST=$(tail -1 "$W/acked")
start_server

step "every acknowledged version survived"
expect_ok as_alice history app/db --json
json_assert "$OUT" \
	"max(v['version'] for v in d['versions']) >= $LAST" true \
	"sorted(v['version'] for v in d['versions']) == list(range(1, len(d['versions']) + 1))" true
expect_ok as_alice get app/db --version "$LAST"
assert_eq "$(cat "$OUT")" "value-$LAST" "last acknowledged value"
expect_ok as_alice audit verify

step "the restarted server serves on"
printf 'after-restart' >"$W/v9"
expect_ok as_alice put app/db --to "fp:$(fingerprint "$W/alice.crt")" --file "$W/v9"
expect_ok as_alice get app/db
assert_eq "$(cat "$OUT")" "after-restart" "value after restart"
pass
