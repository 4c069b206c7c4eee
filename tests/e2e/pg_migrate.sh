#!/usr/bin/env bash
#
# pg_migrate.sh - `coffer server migrate` (issue 8): an installation on
# SQLite, with a full flow behind it (a tenant, join tokens, an agent
# enrolled and approved, secrets with several versions, a deletion, an
# audit log), copied into a private PostgreSQL (tests/pg/pgtest.sh) and
# verified; then `coffer server run --db postgresql://...` serves the
# same agent: its feed goes on from its cursor without sending anything
# again or losing anything, its certificate and token are still known,
# `audit verify` passes with the same last hash as before the move, and
# new versions are numbered after the old ones.  Also: a non-empty
# target is refused and left as it was, a password on the command line
# is refused (and never printed), the copy goes back to a new SQLite
# file, and a copy changed behind migrate's back is not called verified.
#
# Needs curl, psql (postgresql-client) and the PostgreSQL server binaries
# (Debian postgresql) besides what lib.sh checks.

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


# feed SINCE OUTFILE: web-1's feed after SINCE, as the agent asks it.
feed()
{
	expect_ok curl -sS --fail-with-body --cacert "$W/srv/server.crt" \
		--cert "$W/agent1/agent.crt" --key "$W/agent1/agent.key" \
		"$URL/v1/agent/secrets?since=$1"
	cp "$OUT" "$2"
}

# ------------------------------------------------------ SQLite server
step "PKI and a SQLite server"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**' 'secret.read:prod/**'
mk_operator auditor "$W/ca" 'audit.read:**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log" --threads 2
URL=$SRV_URL
export COFFER_SERVER=$URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt

step "tokens, an agent joins, bob approves"
expect_ok as bob token create --group web --count 2 --ttl 1h --uses 1
awk 'NR == 1' "$OUT" >"$W/t1"
awk 'NR == 2' "$OUT" >"$W/t2"
[ -s "$W/t2" ] || fail "token create did not print two tokens: $(cat "$OUT")"
expect_ok coffer agent join --server "$URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t1" --name web-1 --state-dir "$W/agent1"
expect_ok as bob agent approve --all
expect_ok coffer agent join --state-dir "$W/agent1" --wait 30
[ -s "$W/agent1/agent.crt" ] || fail "web-1 got no certificate"

step "versions, a deletion, the agent's feed"
for v in 1 2 3; do
	printf 'db-v%s-%s' "$v" "$(openssl rand -hex 8)" >"$W/db$v"
	expect_ok as alice put prod/db/password --to group:web --file "$W/db$v"
done
printf 'api-%s' "$(openssl rand -hex 8)" >"$W/api"
expect_ok as alice put prod/api/key --to group:web --file "$W/api"
printf 'old-%s' "$(openssl rand -hex 8)" >"$W/old"
expect_ok as alice put prod/old --to group:web --file "$W/old"
expect_ok as alice rm prod/old
feed 0 "$W/feed-before.json"
CURSOR=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cursor"])' \
	"$W/feed-before.json")
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
got = sorted((s["name"], s["version"], bool(s.get("deleted"))) for s in d["secrets"])
want = [("prod/api/key", 1, False), ("prod/db/password", 3, False), ("prod/old", 2, True)]
assert got == want, got' "$W/feed-before.json" ||
	fail "the feed before the move is not what was put: $(cat "$W/feed-before.json")"
expect_ok as auditor audit verify
grep -q '^audit chain intact: ' "$OUT" || fail "audit verify said: $(cat "$OUT")"
AUDIT_BEFORE=$(cat "$OUT")
LAST_HASH=$(sed -n 's/.*last hash \([0-9a-f]\{64\}\)$/\1/p' "$OUT")
[ -n "$LAST_HASH" ] || fail "no last hash in: $AUDIT_BEFORE"
srv_stop || fail "the SQLite server did not stop cleanly"

# --------------------------------------------------------------- refusals
step "refusals"
expect_exit 2 coffer server migrate --dir "$W/srv" --to "$COFFER_TEST_STORE_URL"
no_password "$OUT" "$ERR"
stderr_has "PGPASSWORD"
expect_exit 2 coffer server migrate --dir "$W/srv"
expect_exit 2 coffer server migrate --to "$DB"
assert_eq "$(psql "$DB" -c "SELECT to_regclass('tenants') IS NULL")" t \
	"nothing written by a refused migrate"

# ----------------------------------------------------------------- migrate
step "migrate SQLite -> PostgreSQL"
expect_ok coffer server migrate --dir "$W/srv" --to "$DB"
cp "$OUT" "$W/migrate.out"
no_password "$OUT" "$ERR"
grep -q '^copied SQLite .* to PostgreSQL in [0-9.]* s, and verified the copy$' "$OUT" ||
	fail "migrate's summary: $(cat "$OUT")"
grep -q '^row counts and SHA-256 digests equal in all [0-9]* tables$' "$OUT" ||
	fail "migrate did not report equal digests"
grep -q '^audit chains intact on the target: 1 chain(s)' "$OUT" ||
	fail "migrate did not report the audit chain"
# its counts are PostgreSQL's
for t in tenants certs tokens enrollments versions envelopes feed audit; do
	want=$(awk -v t="$t" '$1 == t && NF == 3 {print $2}' "$OUT")
	assert_eq "$(psql "$DB" -c "SELECT COUNT(*) FROM $t")" "$want" "rows of $t in PostgreSQL"
done
assert_eq "$(psql "$DB" -c "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")" \
	"$LAST_HASH" "the last audit hash in PostgreSQL"

step "a second migrate into the same database is refused"
expect_refusal 8 coffer server migrate --dir "$W/srv" --to "$DB"
stderr_has "not empty"
stderr_has "createdb"
assert_eq "$(psql "$DB" -c "SELECT COUNT(*) FROM versions")" \
	"$(awk '$1 == "versions" && NF == 3 {print $2}' "$W/migrate.out")" "versions after the refusal"

# ------------------------------------------------------ PostgreSQL server
step "the same agent on the PostgreSQL server"
mv "$W/srv/coffer.db" "$W/old.db"
rm -f "$W/srv/coffer.db-wal" "$W/srv/coffer.db-shm"
SRV_PORT=""
srv_start "$W/srv" "$W/srv-pg.log" --db "$DB" --threads 2
URL=$SRV_URL
export COFFER_SERVER=$URL
assert_absent "$W/srv/coffer.db"
# Before anything new is logged: the same chain, the same last hash.
expect_ok as auditor audit verify
assert_eq "$(cat "$OUT")" "$AUDIT_BEFORE" "audit verify on PostgreSQL"
# From its cursor: nothing again.
feed "$CURSOR" "$W/feed-after.json"
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["secrets"] == [] and d["cursor"] == int(sys.argv[2]), d' \
	"$W/feed-after.json" "$CURSOR" ||
	fail "the feed from the cursor is not empty: $(cat "$W/feed-after.json")"
# From 0: everything, with the same sequence numbers.
feed 0 "$W/feed-all.json"
python3 -c 'import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
assert a == b, (a, b)' "$W/feed-before.json" "$W/feed-all.json" ||
	fail "the full feed differs after the move"
expect_ok coffer get prod/db/password --cert "$W/agent1/agent.crt" --key "$W/agent1/agent.key"
assert_eq "$(cat "$OUT")" "$(cat "$W/db3")" "web-1 reads v3 on PostgreSQL"

step "and goes on"
printf 'db-v4-%s' "$(openssl rand -hex 8)" >"$W/db4"
expect_ok as alice put prod/db/password --to group:web --file "$W/db4" --json
json_assert "$OUT" 'd["version"]' 4
feed "$CURSOR" "$W/feed-new.json"
python3 -c 'import base64, json, sys
d = json.load(open(sys.argv[1]))
s = d["secrets"]
assert len(s) == 1 and s[0]["name"] == "prod/db/password" and s[0]["version"] == 4, s
assert d["cursor"] > int(sys.argv[2]), d["cursor"]
open(sys.argv[3], "wb").write(base64.b64decode(s[0]["envelope"]))' \
	"$W/feed-new.json" "$CURSOR" "$W/v4.cms" ||
	fail "after the move the feed does not bring exactly v4: $(cat "$W/feed-new.json")"
expect_ok coffer open --name prod/db/password --cert "$W/agent1/agent.crt" \
	--key "$W/agent1/agent.key" --root "$W/ca/root.crt" --in "$W/v4.cms"
assert_eq "$(cat "$OUT")" "$(cat "$W/db4")" "web-1 opens v4"
# The token's one use was spent before the move: still spent.
expect_refusal 26 coffer agent join --server "$URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t1" --name web-x --state-dir "$W/agentx"
# The second token still works.
expect_ok coffer agent join --server "$URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/t2" --name web-2 --state-dir "$W/agent2"
expect_ok as auditor audit verify
grep -q '^audit chain intact: ' "$OUT" || fail "audit verify after new changes: $(cat "$OUT")"
srv_stop || fail "the PostgreSQL server did not stop cleanly"
no_password "$W/srv-pg.log" "$W/migrate.out"

# ---------------------------------------------------------------- and back
step "migrate PostgreSQL -> a new SQLite file"
expect_ok coffer server migrate --from "$DB" --to "sqlite:$W/back.db"
grep -q '^copied PostgreSQL to SQLite .*back.db in [0-9.]* s, and verified the copy$' "$OUT" ||
	fail "migrate back: $(cat "$OUT")"
expect_ok coffer server tenant ls --dir "$W/srv" --db "sqlite:$W/back.db" --json
json_assert "$OUT" 'len(d)' 1

step "a copy changed during migrate is not verified"
# A trigger changes every envelope the copy writes: the digest differs.
psql "$DB" -c "CREATE SCHEMA other" >/dev/null
psql "$DB" -c "CREATE FUNCTION other.flip() RETURNS trigger LANGUAGE plpgsql AS
	\$\$BEGIN NEW.der := '\\x00'::bytea; RETURN NEW; END\$\$" >/dev/null
OTHER="$DB?options=-c%20search_path%3Dother"
expect_ok coffer server init --dir "$W/srv3" --db "$OTHER"
psql "$DB" -c "CREATE TRIGGER flip BEFORE INSERT ON other.envelopes
	FOR EACH ROW EXECUTE FUNCTION other.flip()" >/dev/null
expect_refusal 29 coffer server migrate --from "sqlite:$W/back.db" --to "$OTHER"
stderr_has "envelopes"
grep -q "verified" "$OUT" && fail "a differing copy was called verified"

pass
