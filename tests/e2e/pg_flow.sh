#!/usr/bin/env bash
#
# pg_flow.sh - the server flow on PostgreSQL (issue 8): a private
# PostgreSQL (tests/pg/pgtest.sh), `coffer server init|tenant add|run
# --db postgresql://...`, tokens, an agent joining while an enroller
# approves, put and get, the agent's feed (with curl) opened, the audit
# chain verified; PostgreSQL restarted under the running server, which
# goes on without being restarted; and checks that the data lives in
# PostgreSQL (no coffer.db) and that the password never appears on a
# command line the tests build or in any output or log.
#
# Needs curl, psql (postgresql-client) and the PostgreSQL server binaries
# (Debian postgresql) besides what lib.sh checks.

# Under the harness, which sets PGTEST_DIR and the URLs; it stops
# PostgreSQL by PID whatever happens here.
if [ -z "${PGTEST_DIR:-}" ]; then
	self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
	PGTEST_TIMEOUT=${PGTEST_TIMEOUT:-110} exec bash \
		"$(dirname "$self")/../pg/pgtest.sh" bash "$self" "$@"
fi

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

pg_setup

on_exit()
{
	local rc=$?
	srv_stop || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT


# ---------------------------------------------------------------- PKI
step "PKI"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**' 'secret.read:prod/**'
mk_operator auditor "$W/ca" 'audit.read:**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'

# ------------------------------------------------------------- refusals
step "refusals before init"
# A password on the command line is refused, and not repeated.
expect_exit 2 coffer server init --dir "$W/srv" --db "$COFFER_TEST_STORE_URL"
no_password "$ERR" "$OUT"
stderr_has "PGPASSWORD"
assert_absent "$W/srv"
expect_exit 2 coffer server run --dir "$W/srv" --listen 127.0.0.1:0 \
	--db "$COFFER_TEST_STORE_URL"
no_password "$ERR" "$OUT"
# An empty database is not a coffer database yet.
expect_refusal 9 coffer server tenant ls --dir "$W/srv" --db "$DB"
stderr_has "coffer server init"
# A wrong password: a store error that says so, without any password.
PGPASSWORD=wrong-password
expect_refusal 29 coffer server tenant ls --dir "$W/srv" --db "$DB"
PGPASSWORD=$PGTEST_PASSWORD
stderr_has "password authentication failed"
no_password "$ERR"

# --------------------------------------------------------------- server
step "server init --db"
expect_ok coffer server init --dir "$W/srv" --db "$DB"
grep -q 'PostgreSQL *database, schema version [1-9]' "$OUT" ||
	fail "init does not report the PostgreSQL schema: $(cat "$OUT")"
no_password "$OUT" "$ERR"
assert_absent "$W/srv/coffer.db"
# init again on an initialised database: nothing to migrate, fine.
expect_ok coffer server init --dir "$W/srv2" --db "$DB"
expect_ok coffer server tenant add --dir "$W/srv" --db "$DB" "$W/ca/root.crt"
expect_ok coffer server tenant ls --dir "$W/srv" --db "$DB" --json
json_assert "$OUT" 'len(d)' 1
# the tenant is in PostgreSQL, and only there
assert_eq "$(psql "$DB" -c 'SELECT COUNT(*) FROM tenants')" 1 "tenants in PostgreSQL"
assert_absent "$W/srv/coffer.db"
# the password in a --config file is fine (a file, not argv)
printf '{"db": "%s"}\n' "$COFFER_TEST_STORE_URL" >"$W/srv.json"
chmod 600 "$W/srv.json"
unset PGPASSWORD
srv_start "$W/srv" "$W/srv.log" --config "$W/srv.json" --threads 1
expect_ok curl -sS --cacert "$W/srv/server.crt" "$SRV_URL/v1/health"
json_assert "$OUT" 'd["status"]' ok
srv_stop || fail "the server with a --config URL did not stop cleanly"
export PGPASSWORD=$PGTEST_PASSWORD
# A new port: srv_start (lib.sh) reuses SRV_PORT when set.
# shellcheck disable=SC2034
SRV_PORT=""
srv_start "$W/srv" "$W/srv.log" --db "$DB" --threads 2
URL=$SRV_URL
export COFFER_SERVER=$URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
expect_ok curl -sS --cacert "$W/srv/server.crt" "$URL/v1/health"
json_assert "$OUT" 'd["status"]' ok

# ---------------------------------------------------------- join + approve
step "token create, agent join, approve"
expect_ok as bob token create --group web --count 1 --ttl 1h
cp "$OUT" "$W/t1"
expect_ok coffer agent join --server "$URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t1" --name web-1 --state-dir "$W/agent1"
grep -q '^pending' "$OUT" || fail "join without --wait did not say pending"
expect_ok as bob agent approve --all
grep -q '^approved web-1 (group web' "$OUT" || fail "approve did not approve web-1"
expect_ok coffer agent join --state-dir "$W/agent1" --wait 30
[ -s "$W/agent1/agent.crt" ] || fail "web-1 got no certificate"
# token reuse is refused by the store (uses counted in PostgreSQL)
expect_refusal 26 coffer agent join --server "$URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t1" --name web-x --state-dir "$W/agentx"

# ---------------------------------------------------------------- secrets
step "put, get, feed"
SECRET_V1="pg-v1-$(openssl rand -hex 12)"
SECRET_V2="pg-v2-$(openssl rand -hex 12)"
printf '%s' "$SECRET_V1" >"$W/v1"
expect_ok as alice put prod/db/password --to group:web --file "$W/v1" --json
json_assert "$OUT" 'd["version"]' 1
expect_ok coffer get prod/db/password --cert "$W/agent1/agent.crt" --key "$W/agent1/agent.key"
assert_eq "$(cat "$OUT")" "$SECRET_V1" "web-1 reads v1"
expect_ok curl -sS --fail-with-body --cacert "$W/srv/server.crt" \
	--cert "$W/agent1/agent.crt" --key "$W/agent1/agent.key" \
	"$URL/v1/agent/secrets?since=0"
python3 -c 'import base64, json, sys
d = json.load(open(sys.argv[1]))
s = [x for x in d["secrets"] if x["name"] == "prod/db/password"]
assert len(s) == 1 and s[0]["version"] == 1, s
open(sys.argv[2], "wb").write(base64.b64decode(s[0]["envelope"]))' "$OUT" "$W/feed.cms" ||
	fail "the feed does not hold version 1 of prod/db/password"
expect_ok coffer open --name prod/db/password --cert "$W/agent1/agent.crt" \
	--key "$W/agent1/agent.key" --root "$W/ca/root.crt" --in "$W/feed.cms"
assert_eq "$(cat "$OUT")" "$SECRET_V1" "web-1 opens its feed envelope"
assert_eq "$(psql "$DB" -c "SELECT MAX(version) FROM versions WHERE name = 'prod/db/password'")" 1 \
	"the version row in PostgreSQL"

# ------------------------------------------------- PostgreSQL restarted
step "PostgreSQL restarted under the running server"
bash "$COFFER_TEST_PG_CTL" ctl restart || fail "pgtest.sh ctl restart failed"
# The first requests after the restart find dead connections: each is
# run again on a new one, so nothing fails.
for _ in 1 2 3 4; do
	expect_ok as alice ls prod/ --json
	json_assert "$OUT" '[s["name"] for s in d["secrets"]]' '["prod/db/password"]'
done
printf '%s' "$SECRET_V2" | as alice put prod/db/password --to group:web >"$OUT" 2>"$ERR" ||
	fail "put after the restart failed: $(cat "$ERR")"
grep -q 'version 2' "$OUT" || fail "the put after the restart is not version 2"
expect_ok coffer get prod/db/password --cert "$W/agent1/agent.crt" --key "$W/agent1/agent.key"
assert_eq "$(cat "$OUT")" "$SECRET_V2" "web-1 reads v2 after the restart"
kill -0 "$SRV_PID" 2>/dev/null || fail "the server died with PostgreSQL's restart"
# Nothing failed or was logged as failed (that a call meeting a dead
# connection is run again on a new one is unit_store_pg's to check).
grep -F "lost the connection" "$W/srv.log" &&
	fail "a store call failed over the restart instead of reconnecting"

# ------------------------------------------------------------------ audit
step "audit"
expect_ok as auditor audit verify
grep -q '^audit chain intact: [0-9]* entries, last hash [0-9a-f]\{64\}$' "$OUT" ||
	fail "audit verify said: $(cat "$OUT")"
# Edited behind the server's back: found at that entry.
psql "$DB" -c "UPDATE audit SET object = object || 'x' WHERE seq = 3" ||
	fail "cannot edit the audit table"
expect_refusal 31 as auditor audit verify
stderr_has "audit entry 3 "

step "no secret at rest, no password anywhere"
srv_stop || fail "the server did not stop cleanly"
no_password "$W/srv.log" "$W"/srv/* "$W"/srv2/*
grep -qF "postgresql://" "$W/srv.log" && fail "the server log shows the database URL"
psql "$DB" -c "COPY (SELECT * FROM envelopes) TO STDOUT" >"$W/envelopes.dump" ||
	fail "cannot read the envelopes table"
for s in "$SECRET_V1" "$SECRET_V2"; do
	grep -qaF -- "$s" "$W/envelopes.dump" "$W/srv.log" &&
		fail "a secret value is in the database or the log"
done
assert_absent "$W/srv/coffer.db"

pass
