#!/usr/bin/env bash
#
# agent.sh - the agent for real (issue 5, section 5): a server on
# 127.0.0.1, two agents joined with tokens, secrets put to their group.
# `agent once` writes a file and renders a template and says by its exit
# code whether all is up to date; `agent run` follows rotations, runs each
# reload exactly once per change (never for an unchanged file), re-reads
# its config on SIGHUP, keeps the last good files while the server is
# down, re-makes them from its cache when restarted without a server, and
# recovers when the server returns; `agent exec` hands secrets over in the
# environment and in a memfd.  At the end no secret may be in the
# server's files, and none in the agents' logs.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

on_exit()
{
	local rc=$?
	[ -z "$AGENT_PID" ] || kill "$AGENT_PID" 2>/dev/null || true
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

# wait_for FILE CONTENT [SECONDS]: until FILE holds exactly CONTENT.
wait_for() { wait_file "$1" "$2" "${3:-15}" "$W/agent.log"; }

# wait_log TEXT [SECONDS]: until the agent's log says TEXT.
wait_log()
{
	local i
	for i in $(seq 1 $((${2:-15} * 10))); do
		grep -qF -- "$1" "$W/agent.log" && return 0
		sleep 0.1
	done
	fail "the agent never logged \"$1\": $(tail -5 "$W/agent.log")"
}

agent_start() { run_agent "$W/a1" "$W/agent.conf" "$W/agent.log"; }

# ------------------------------------------------------------ PKI, server
step "PKI and server"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**' 'secret.read:prod/**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log"
export COFFER_SERVER=$SRV_URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt

step "two agents join with tokens"
expect_ok as bob token create --group web --count 2 --ttl 1h
sed -n 1p "$OUT" >"$W/t1"
sed -n 2p "$OUT" >"$W/t2"
for n in 1 2; do
	expect_ok coffer agent join --server "$SRV_URL" --server-ca "$W/srv/server.crt" \
		--token-file "$W/t$n" --name "web-$n" --state-dir "$W/a$n" --root "$W/ca/root.crt"
done
expect_ok as bob agent approve --all
for n in 1 2; do
	expect_ok coffer agent join --state-dir "$W/a$n" --wait 10 --root "$W/ca/root.crt"
	[ -s "$W/a$n/agent.crt" ] && [ -s "$W/a$n/root.crt" ] ||
		fail "join left no agent.crt/root.crt in a$n"
done

step "secrets for group web"
put prod/db/password 'pw-1'
put prod/api/token 'tok "one"\1'
# a backup of the server's database, restored near the end
python3 -c 'import sqlite3, sys
src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2])
src.backup(dst); dst.close()' "$W/srv/coffer.db" "$W/backup.db" || fail "cannot back up the database"

# ------------------------------------------------------------ agent once
mkdir -p "$W/out" "$W/tmpl"
cat >"$W/tmpl/app.conf.tmpl" <<'TMPL'
# app.conf, rendered by coffer
db_password = {{ secret "prod/db/password" }}
{"token": {{ secret "prod/api/token" | json }}}
TMPL
cat >"$W/agent.conf" <<CONF
# agent.sh's agent
[server]
url = $SRV_URL

[agent]
wait = 5

[file prod/db/password]
path = $W/out/db_password
mode = 0440
reload = /bin/sh -c "echo db >>'$W/reloads'"

[template $W/out/app.conf]
source = $W/tmpl/app.conf.tmpl
mode = 0640
reload = /bin/sh -c "echo app >>'$W/reloads'"
CONF

step "agent once: a file and a template, then exit 0"
expect_ok coffer agent once --state-dir "$W/a1" --config "$W/agent.conf"
assert_eq "$(cat "$W/out/db_password")" pw-1 "file sink"
assert_eq "$(stat -c %a "$W/out/db_password")" 440 "file sink mode"
assert_eq "$(stat -c %a "$W/out/app.conf")" 640 "template mode"
grep -qxF 'db_password = pw-1' "$W/out/app.conf" || fail "template: $(cat "$W/out/app.conf")"
python3 -c 'import json,sys
line = open(sys.argv[1]).read().splitlines()[2]
v = json.loads(line)["token"]
sys.exit(0 if v == "tok \"one\"\\1" else "json filter gave %r" % v)' "$W/out/app.conf" ||
	fail "the | json value does not parse back"
assert_eq "$(count_lines "$W/reloads")" 2 "reloads after the first once"
json_assert "$W/a1/state.json" 'd["secrets"]["prod/db/password"]["version"]' 1 \
	'd["secrets"]["prod/api/token"]["version"]' 1
ls "$W"/a1/cache/*.cms >/dev/null 2>&1 || fail "no cached envelopes in a1/cache"

step "agent status: what the last run reported, without the server"
expect_ok coffer agent status --state-dir "$W/a1" --json
json_assert "$OUT" 'len(d["sinks"])' 2 \
	'sorted(x["state"] for x in d["sinks"])' '["ok", "ok"]' \
	'[x["version"] for x in d["sinks"] if x["kind"] == "file"]' '[1]' \
	'd["ok"]' true
expect_ok coffer agent status --state-dir "$W/a1"
grep -qF "$W/out/db_password" "$OUT" || fail "status does not list the file sink"

step "agent once again: nothing changed, no reload"
INODE=$(stat -c %i "$W/out/db_password")
expect_ok coffer agent once --state-dir "$W/a1" --config "$W/agent.conf"
assert_eq "$(count_lines "$W/reloads")" 2 "reloads after an idle once"
assert_eq "$(stat -c %i "$W/out/db_password")" "$INODE" "an unchanged file is not rewritten"

step "agent once: a sink whose secret this agent lacks exits 32"
cp "$W/agent.conf" "$W/bad.conf"
printf '[file prod/missing]\npath = %s/out/missing\n' "$W" >>"$W/bad.conf"
expect_exit 32 coffer agent once --state-dir "$W/a1" --config "$W/bad.conf"
stderr_has "prod/missing"
[ ! -e "$W/out/missing" ] || fail "a sink without its secret was written"

run_capture coffer agent status --state-dir "$W/a1"
assert_eq "$RC" 32 "agent status exit with a failed sink"
grep -q "1 failed" "$OUT" || fail "status does not count the failed sink: $(head -3 "$OUT")"

step "agent once: a config error names file and line"
printf '[server]\nurl = %s\nbogus = 1\n' "$SRV_URL" >"$W/bad2.conf"
expect_refusal 4 coffer agent once --state-dir "$W/a1" --config "$W/bad2.conf"
stderr_has "bad2.conf:3"

# ------------------------------------------------------------ agent run
step "agent run: rotation reaches the file, one reload per change"
agent_start
wait_log "started:"
expect_ok coffer agent status --state-dir "$W/a1" --json
json_assert "$OUT" 'd["agent"]["running"]' true 'd["ok"]' true
put prod/db/password 'pw-2'
wait_for "$W/out/db_password" pw-2
wait_log "reload exited 0"
grep -qxF 'db_password = pw-2' "$W/out/app.conf" || fail "template not re-rendered"
sleep 1
# db_password and app.conf both changed: each reload once
assert_eq "$(count_lines "$W/reloads")" 4 "reloads after one rotation"
assert_eq "$(grep -c db "$W/reloads")" 2 "db reloads"
assert_eq "$(grep -c app "$W/reloads")" 2 "app reloads"

step "a secret no sink uses changes: nothing is rewritten or reloaded"
put prod/other 'unused'
wait_log "accepted prod/other v1"
sleep 0.5
assert_eq "$(count_lines "$W/reloads")" 4 "reloads after an unrelated put"

step "SIGHUP reloads the config"
printf '[file prod/api/token]\npath = %s/out/token\nmode = 0400\n' "$W" >>"$W/agent.conf"
kill -HUP "$AGENT_PID"
wait_for "$W/out/token" 'tok "one"\1'
wait_log "SIGHUP: reloaded"
# a broken config is refused and the old one kept
cp "$W/agent.conf" "$W/agent.conf.good"
printf '[file nonsense\n' >>"$W/agent.conf"
kill -HUP "$AGENT_PID"
wait_log "keeping the configuration already loaded"
cp "$W/agent.conf.good" "$W/agent.conf"
kill -0 "$AGENT_PID" || fail "the agent died on a bad config"

step "the server stops: files stay, the agent retries"
SRV_PORT_KEEP=$SRV_PORT
srv_stop
wait_log "retrying in"
assert_eq "$(cat "$W/out/db_password")" pw-2 "file kept while the server is down"
agent_stop

step "restart with the server down: files re-made from the cache"
rm -f "$W/out/db_password" "$W/out/app.conf" "$W/out/token"
agent_start
wait_for "$W/out/db_password" pw-2
wait_for "$W/out/token" 'tok "one"\1'
grep -qxF 'db_password = pw-2' "$W/out/app.conf" || fail "template not re-made from cache"

step "the server returns: the agent recovers and takes the next rotation"
SRV_PORT=$SRV_PORT_KEEP srv_start "$W/srv" "$W/srv.log"
put prod/db/password 'pw-3'
wait_for "$W/out/db_password" pw-3 40

step "only one process changes a state dir"
expect_exit 22 coffer agent once --state-dir "$W/a1" --config "$W/agent.conf"
stderr_has "uses this state dir"

step "a change that arrives with a broken config on SIGHUP is still applied"
cp "$W/agent.conf" "$W/agent.conf.good"
printf '[file nonsense\n' >>"$W/agent.conf"
put prod/db/password 'pw-4'
kill -HUP "$AGENT_PID"
wait_for "$W/out/db_password" pw-4
cp "$W/agent.conf.good" "$W/agent.conf"

step "a sink whose directory appears later is retried"
printf '[file prod/api/token]\npath = %s/late/token\n' "$W" >>"$W/agent.conf"
kill -HUP "$AGENT_PID"
wait_log "trying again in 5 s"
mkdir "$W/late"
wait_for "$W/late/token" 'tok "one"\1' 20
cp "$W/agent.conf.good" "$W/agent.conf"
kill -HUP "$AGENT_PID"

agent_stop

# ------------------------------------------------------------ agent exec
step "agent exec: --env and --file-env"
expect_ok coffer agent exec --state-dir "$W/a2" --env DBPW=prod/db/password \
	--file-env TOKEN_FILE=prod/api/token -- /bin/sh -c \
	'printf "%s|" "$DBPW"; case "$TOKEN_FILE" in /proc/self/fd/*) ;; *) echo "bad path $TOKEN_FILE"; exit 9;; esac; cat "$TOKEN_FILE"'
assert_eq "$(cat "$OUT")" 'pw-4|tok "one"\1' "exec output"
# the memfd is sealed: the command can read it but not write it
expect_fail coffer agent exec --state-dir "$W/a2" --file-env F=prod/db/password \
	-- /bin/sh -c 'echo x >"$F"'
expect_refusal 9 coffer agent exec --state-dir "$W/a2" --env X=prod/none -- /bin/true
expect_exit 2 coffer agent exec --state-dir "$W/a2" --env 1X=prod/db/password -- /bin/true
# exec only reads the state dir: with no sync there, nothing is cached
expect_refusal 9 coffer agent exec --state-dir "$W/a2" --offline --env V=prod/db/password -- /bin/true
[ -z "$(ls -A "$W/a2/cache" 2>/dev/null)" ] || fail "exec wrote to the cache"
# a sync (no sinks needed) fills the cache; then offline works
printf '[server]\nurl = %s\n' "$SRV_URL" >"$W/a2.conf"
expect_ok coffer agent once --state-dir "$W/a2" --config "$W/a2.conf"
srv_stop
expect_ok coffer agent exec --state-dir "$W/a2" --offline --env V=prod/db/password \
	-- /bin/sh -c 'printf %s "$V"'
assert_eq "$(cat "$OUT")" pw-4 "exec --offline"

step "refusals of the state dir"
chmod 755 "$W/a2"
expect_refusal 2 coffer agent exec --state-dir "$W/a2" --offline --env V=prod/db/password -- /bin/true
stderr_has "chmod 700"
chmod 700 "$W/a2"
# no server CA: refused, not the system's CA store unasked
mv "$W/a2/server-ca.crt" "$W/a2-server-ca.crt"
expect_refusal 2 coffer agent exec --state-dir "$W/a2" --env V=prod/db/password -- /bin/true
stderr_has "ca = system"
mv "$W/a2-server-ca.crt" "$W/a2/server-ca.crt"

step "the root can be installed after joining, only the right one"
mv "$W/a2/root.crt" "$W/a2-root.crt"
expect_refusal 2 coffer agent exec --state-dir "$W/a2" --offline --env V=prod/db/password -- /bin/true
stderr_has "no organisation root"
mk_ca "$W/other" Other
expect_refusal 16 coffer agent join --state-dir "$W/a2" --root "$W/other/root.crt"
[ ! -e "$W/a2/root.crt" ] || fail "a root the certificate does not chain to was installed"
expect_ok coffer agent join --state-dir "$W/a2" --root "$W/ca/root.crt"
grep -q "^installed" "$OUT" || fail "join did not install the root"
same_file "$W/a2/root.crt" "$W/ca/root.crt"
expect_ok coffer agent exec --state-dir "$W/a2" --offline --env V=prod/db/password \
	-- /bin/sh -c 'printf %s "$V"'

step "the server's database is restored from a backup"
agent_start
srv_stop
rm -f "$W/srv/coffer.db-wal" "$W/srv/coffer.db-shm"
cp "$W/backup.db" "$W/srv/coffer.db"
SRV_PORT=$SRV_PORT_KEEP srv_start "$W/srv" "$W/srv.log"
wait_log "feed position went back" 40
# the restored database's version 1 is a rollback for this agent
wait_log "refusing a rollback"
assert_eq "$(cat "$W/out/db_password")" pw-4 "file kept after the restore"
# what is written after the restore reaches the agent again
put prod/fresh 'new after restore'
wait_log "accepted prod/fresh v1"
agent_stop

step "no secret in the server's files or the agents' logs"
for v in pw-1 pw-2 pw-3 pw-4 'tok "one"' 'new after restore'; do
	if grep -aqF -- "$v" "$W"/srv/coffer.db* "$W/srv.log" "$W/agent.log"; then
		fail "secret \"$v\" found in the server's files or the agent's log"
	fi
done

pass
