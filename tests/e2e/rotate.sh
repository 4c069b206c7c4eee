#!/usr/bin/env bash
#
# rotate.sh - revocation and rotation, removal that is real (issue 6,
# section 3), with a real server and three real agents of group web:
#
#   1. `ca revoke` + `crl push` of an operator: the server refuses it at
#      once (agents refusing its records is hostile.sh's case 5);
#   2. the same for an agent: the server refuses it, deletes every
#      envelope it held for it at the CRL push, and `put --to group:web`
#      leaves it out (with a note) while the others get the new version;
#   3. `coffer rotate NAME --without FP --generate 24`: a new random value
#      for everyone still a recipient, none for the removed agent, whose
#      envelopes are then gone from the server's database (every version)
#      and which cannot read the new version (404); the revoked agent is
#      left out too, and its envelopes are gone as well;
#   4. `coffer rotate --all` without --generate: new versions with the
#      writer's own values, to the same recipients.

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

# put NAME VALUE: a new version of NAME for group web, as alice.
put()
{
	printf '%s' "$2" >"$W/value"
	expect_ok as alice put "$1" --to group:web --file "$W/value"
	rm -f "$W/value"
}

# envelopes_of FP [NAME]: how many envelopes the server's database holds
# for FP (of NAME only, if given).
envelopes_of()
{
	python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
name = sys.argv[3] if len(sys.argv) > 3 else None
print(db.execute("SELECT COUNT(*) FROM envelopes WHERE recipient = ? "
                 "AND (? IS NULL OR name = ?)",
                 (sys.argv[2], name, name)).fetchone()[0])' "$DB" "$@"
}


step "PKI, server, three agents of group web"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**'
mk_operator mallory "$W/ca" 'secret.write:prod/**'
mk_operator eve "$W/ca" 'secret.read:**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log"
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

[file prod/db]
path = $W/out$n/db

[file prod/api]
path = $W/out$n/api
CONF
	run_agent "$W/a$n" "$W/agent$n.conf" "$W/agent$n.log"
	PIDS+=("$AGENT_PID")
	cp "$W/a$n/agent.crt" "$W/web-$n.crt"
	cp "$W/a$n/agent.key" "$W/web-$n.key"
done
FP2=$(fingerprint "$W/web-2.crt")
FP3=$(fingerprint "$W/web-3.crt")
put prod/db old-db-1
put prod/api api-1
for n in 1 2 3; do
	wait_file "$W/out$n/db" old-db-1 15 "$W/agent$n.log"
	wait_file "$W/out$n/api" api-1 15 "$W/agent$n.log"
done


step "a revoked operator is refused by the server at once"
expect_ok as mallory ls
expect_ok coffer ca revoke --ca "$W/ca" --cert "$W/mallory.crt" --pass-file "$PASS_FILE"
expect_ok as alice crl push "$W/ca/crl.pem"
printf 'evil' >"$W/value"
expect_refusal 23 as mallory put prod/db --to group:web --file "$W/value"


step "a revoked agent: refused by the server, left out by put"
[ "$(envelopes_of "$FP3")" -eq 2 ] || fail "web-3 should hold 2 envelopes, holds $(envelopes_of "$FP3")"
expect_ok coffer ca revoke --ca "$W/ca" --cert "$W/web-3.crt" --pass-file "$PASS_FILE"
expect_ok as alice crl push "$W/ca/crl.pem" --json
json_assert "$OUT" "d['purged']" 2
# What the server held for the revoked web-3 is gone at once.
assert_eq "$(envelopes_of "$FP3")" 0 "the revoked web-3's envelopes left in the database"
expect_refusal 23 as web-3 get prod/db
put prod/db old-db-2
grep -q "skipping.*web-3.*revoked" "$ERR" || fail "put did not say it left web-3 out: $(cat "$ERR")"
wait_file "$W/out1/db" old-db-2 15 "$W/agent1.log"
wait_file "$W/out2/db" old-db-2 15 "$W/agent2.log"
assert_eq "$(cat "$W/out3/db")" old-db-1 "web-3 keeps what it had"


step "rotate --without web-2 --generate 24: a new value, web-2's envelopes gone"
[ "$(envelopes_of "$FP2")" -gt 0 ] || fail "web-2 has no envelopes before the rotation"
expect_ok as alice rotate prod/db --without "$FP2" --generate 24 --json
json_assert "$OUT" "d['rotated'][0]['name']" prod/db \
	"d['rotated'][0]['version']" 3 "d['rotated'][0]['recipients']" 2 \
	"d['rotated'][0]['generated']" true \
	"d['rotated'][0]['purged'][0]['recipient']" "$FP2" \
	"d['rotated'][0]['purged'][0]['removed']" 2 "len(d['rotated'][0]['purged'])" 1
for _ in $(seq 1 100); do
	new=$(cat "$W/out1/db")
	[ "$new" != old-db-2 ] && break
	sleep 0.1
done
[ "$new" != old-db-2 ] || fail "web-1 did not get the rotated value"
[[ "$new" =~ ^[A-Za-z0-9]{24}$ ]] || fail "the generated value is not 24 alphanumerics: $new"
assert_eq "$(envelopes_of "$FP2" prod/db)" 0 "web-2's envelopes of prod/db left in the database"
# Only the rotated name: prod/api was not rotated, web-2 keeps it.
assert_eq "$(envelopes_of "$FP2" prod/api)" 1 "web-2's envelopes of prod/api"
expect_exit 9 as web-2 get prod/db
assert_eq "$(cat "$W/out2/db")" old-db-2 "web-2 keeps only what it already had"


step "rotate --all: the writer's own values, the targets signed in each record"
expect_ok as alice rotate --all
grep -q "rotated prod/api: version 2" "$OUT" || fail "prod/api not rotated: $(cat "$OUT")"
grep -q "rotated prod/db: version 4" "$OUT" || fail "prod/db not rotated: $(cat "$OUT")"
wait_file "$W/out1/db" "$new" 15 "$W/agent1.log"
# prod/db's record carries web-2 as left out: it stays out (alice, web-1);
# prod/api never left anybody out: web-2 is still a member of group:web.
expect_ok as alice history prod/db --json
json_assert "$OUT" "d['versions'][0]['version']" 4 "d['versions'][0]['recipients']" 2
expect_ok as alice history prod/api --json
json_assert "$OUT" "d['versions'][0]['recipients']" 3
expect_exit 9 as web-2 get prod/db
expect_ok as web-2 get prod/api


step "a hostile server cannot widen a rotation"
# The server's directory answers and its recipient lists are not where the
# recipients come from: a fingerprint the server adds to a version's
# envelopes (here: eve's, a valid operator of the same root) is not sealed
# to at the next rotation, because the signed record names group:web.
expect_ok as eve ls
FPM=$(fingerprint "$W/eve.crt")
python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
v = db.execute("SELECT MAX(version) FROM versions WHERE name = ?", ("prod/api",)).fetchone()[0]
seq = db.execute("SELECT MAX(seq) FROM envelopes").fetchone()[0] + 1
db.execute("INSERT INTO envelopes (tenant, name, version, recipient, seq, der) "
           "SELECT tenant, name, version, ?, ?, der FROM envelopes WHERE name = ? "
           "AND version = ? LIMIT 1", (sys.argv[2], seq, "prod/api", v))
db.commit()' "$DB" "$FPM" || fail "cannot edit the database"
expect_ok as alice rotate prod/api --generate 16
assert_eq "$(envelopes_of "$FPM" prod/api)" 1 "envelopes for eve after the rotation (only the planted one)"
expect_exit 2 as alice rotate --all prod/db
expect_refusal 2 as alice rotate prod/db --without "$(fingerprint "$W/alice.crt")"

pass
