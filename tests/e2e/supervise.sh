#!/usr/bin/env bash
#
# supervise.sh - `coffer agent exec` as a supervisor (issue 7, sections 1
# and 6), with a real server on 127.0.0.1 and an enrolled agent.  The
# command is a small shell script that records each start (with the
# secrets it was given), each SIGHUP (with what its memfd holds then) and
# SIGTERM.  Checked: the command's exit status becomes exec's (128+N for
# a signal, 3 when it cannot be started); SIGTERM to exec reaches the
# command and exec exits with its status; --on-change restart restarts
# exactly once per change, and not on unchanged long polls, a put of
# another secret, or a new version with the same value; signal:HUP
# sends HUP after the memfd holds the new value, without a restart.  No
# secret in exec's log.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

EXEC_PID=""
on_exit()
{
	local rc=$?
	[ -z "$EXEC_PID" ] || kill -KILL "$EXEC_PID" 2>/dev/null || true
	srv_stop || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

# put NAME VALUE: a new version of NAME for group web, as alice.
put()
{
	printf '%s' "$2" >"$W/value"
	expect_ok as alice put "$1" --to group:web --file "$W/value"
	rm -f "$W/value"
}

# count PATTERN FILE: lines of FILE matching PATTERN (0 when missing).
count()
{
	local n=0
	[ ! -e "$2" ] || n=$(grep -c -- "$1" "$2" || true)
	echo "$n"
}

# wait_count PATTERN FILE N [SECONDS]: until FILE has N lines matching.
wait_count()
{
	for _ in $(seq 1 $((${4:-15} * 10))); do
		[ "$(count "$1" "$2")" -ge "$3" ] && break
		sleep 0.1
	done
	[ "$(count "$1" "$2")" -eq "$3" ] ||
		fail "$2 has $(count "$1" "$2") line(s) matching \"$1\", want $3:" \
			"$(cat "$2" 2>/dev/null); log: $(tail -5 "$W/exec.log")"
}

# wait_log TEXT [SECONDS]: until exec's log says TEXT.
wait_log()
{
	for _ in $(seq 1 $((${2:-15} * 10))); do
		grep -qF -- "$1" "$W/exec.log" && return 0
		sleep 0.1
	done
	fail "exec never logged \"$1\": $(tail -5 "$W/exec.log")"
}

# exec_start EVENTS EXEC-OPTIONS...: exec in the background running
# cmd.sh EVENTS with DBPW and TOKFILE; waits for the command's start.
exec_start()
{
	local ev=$1
	shift
	"$COFFER" agent exec --state-dir "$W/a1" --wait 1 --log-level debug "$@" \
		--env DBPW=prod/db/password --file-env TOKFILE=prod/api/token \
		-- "$W/cmd.sh" "$ev" 2>>"$W/exec.log" &
	EXEC_PID=$!
	wait_count '^start' "$ev" 1
}

# exec_stop WANT: SIGTERM to exec, which must exit WANT.
exec_stop()
{
	local rc=0
	kill -TERM "$EXEC_PID"
	wait "$EXEC_PID" || rc=$?
	EXEC_PID=""
	assert_eq "$rc" "$1" "exec's exit status after SIGTERM"
}

# ------------------------------------------------------------ setup
step "PKI, server, an enrolled agent"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**' 'secret.read:prod/**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log"
export COFFER_SERVER=$SRV_URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
expect_ok as bob token create --group web --count 1 --ttl 1h
cp "$OUT" "$W/t1"
expect_ok coffer agent join --server "$SRV_URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t1" --name web-1 --state-dir "$W/a1" --root "$W/ca/root.crt"
expect_ok as bob agent approve --all
expect_ok coffer agent join --state-dir "$W/a1" --wait 10 --root "$W/ca/root.crt"
put prod/db/password 'pw-1'
put prod/api/token 'tok-1'

cat >"$W/cmd.sh" <<'SH'
#!/bin/sh
# cmd.sh EVENTS: one line per start, SIGHUP and SIGTERM.
ev=$1
printf 'start %s %s\n' "$DBPW" "$(cat "$TOKFILE")" >>"$ev"
trap 'printf "hup %s\n" "$(cat "$TOKFILE")" >>"$ev"' HUP
trap 'echo term >>"$ev"; exit 5' TERM
while :; do sleep 0.1; done
SH
chmod 755 "$W/cmd.sh"

# ------------------------------------------------------------ exit status
step "the command's exit status is exec's"
expect_exit 7 coffer agent exec --state-dir "$W/a1" --env X=prod/db/password \
	-- /bin/sh -c '[ "$X" = pw-1 ] && exit 7; exit 1'
expect_exit 137 coffer agent exec --state-dir "$W/a1" --env X=prod/db/password \
	-- /bin/sh -c 'kill -KILL $$'
expect_refusal 3 coffer agent exec --state-dir "$W/a1" --env X=prod/db/password \
	-- no-such-program-here
stderr_has "no-such-program-here"

step "SIGTERM to exec reaches the command; exec exits with its status"
exec_start "$W/ev0" --on-change none
exec_stop 5
assert_eq "$(tail -1 "$W/ev0")" term "the command's last event"
# without a trap the command dies of SIGTERM: 128+15
"$COFFER" agent exec --state-dir "$W/a1" -- /bin/sh -c 'echo up >"$0"; exec sleep 30' \
	"$W/up" 2>>"$W/exec.log" &
EXEC_PID=$!
wait_file "$W/up" up 10 "$W/exec.log"
exec_stop 143

# ------------------------------------------------------------ restart
step "restart: not on unchanged long polls"
exec_start "$W/ev1" --grace 3
assert_eq "$(head -1 "$W/ev1")" "start pw-1 tok-1" "first start"
sleep 3.5
# the feed was asked again and again (wait 1 s) with nothing new
polls=$(count 'feed: 0 entries' "$W/exec.log")
[ "$polls" -ge 2 ] || fail "only $polls empty long poll(s) in 3.5 s: $(cat "$W/exec.log")"
assert_eq "$(count '^start' "$W/ev1")" 1 "starts after idle polls"

step "restart: not on a put of another secret"
put prod/other 'unused'
wait_log "prod/other v1: not given to the command"
sleep 1.5
assert_eq "$(count '^start' "$W/ev1")" 1 "starts after another secret's put"

step "restart: exactly once per change"
put prod/db/password 'pw-2'
wait_count '^start' "$W/ev1" 2
assert_eq "$(tail -1 "$W/ev1")" "start pw-2 tok-1" "second start"
assert_eq "$(count '^term' "$W/ev1")" 1 "stop signals"
sleep 2.5
assert_eq "$(count '^start' "$W/ev1")" 2 "starts after one change"

step "restart: not on a new version with the same value"
put prod/db/password 'pw-2'
wait_log "prod/db/password v3 holds the same value as v2"
sleep 1.5
assert_eq "$(count '^start' "$W/ev1")" 2 "starts after a same-value put"

step "restart: a --file-env secret changes"
put prod/api/token 'tok-2'
wait_count '^start' "$W/ev1" 3
assert_eq "$(tail -1 "$W/ev1")" "start pw-2 tok-2" "third start"
exec_stop 5

# ------------------------------------------------------------ signal
step "signal:HUP: the memfd holds the new value when HUP arrives"
exec_start "$W/ev2" --on-change signal:HUP
assert_eq "$(head -1 "$W/ev2")" "start pw-2 tok-2" "start in signal mode"
put prod/api/token 'tok-3'
wait_count '^hup' "$W/ev2" 1
assert_eq "$(tail -1 "$W/ev2")" "hup tok-3" "what the command read on HUP"
put prod/api/token 'a longer token, value 4'
wait_count '^hup' "$W/ev2" 2
assert_eq "$(tail -1 "$W/ev2")" "hup a longer token, value 4" "a longer value"
put prod/api/token 'tok-5'
wait_count '^hup' "$W/ev2" 3
assert_eq "$(tail -1 "$W/ev2")" "hup tok-5" "a shorter value"
step "signal:HUP: an --env secret cannot change in a running command"
put prod/db/password 'pw-3'
wait_log "environment variable DBPW cannot change"
sleep 1
assert_eq "$(count '^hup' "$W/ev2")" 3 "HUPs after an --env change"
assert_eq "$(count '^start' "$W/ev2")" 1 "starts in signal mode"
exec_stop 5

step "no secret in exec's log"
for v in pw-1 pw-2 pw-3 tok-1 tok-2 tok-3 'value 4' tok-5 unused; do
	if grep -qF -- "$v" "$W/exec.log"; then
		fail "secret \"$v\" found in exec's log"
	fi
done

pass
