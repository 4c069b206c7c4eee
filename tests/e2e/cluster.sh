#!/usr/bin/env bash
#
# cluster.sh - clusters: one key shared by several agents (issue 6,
# section 2; docs/CLUSTERS.md), with a real server and four real agents:
#
#   1. `cluster create cache1 --agent web-1 --agent web-2` by an enroller:
#      the cluster certificate enters the directory, the key reaches both
#      agents as an envelope each, and they keep it (D/cluster.pem);
#   2. `put --to cluster:cache1`: ONE envelope for the cluster (plus the
#      writer's own), both members write the value, and `coffer status`
#      lists them as applied (their signed acknowledgements);
#   3. `cluster export --out F.p12`: AES-256-CBC, PBKDF2 with
#      HMAC-SHA256 and a SHA-256 MAC as openssl reads it; `agent
#      cluster-join --p12` on web-3 makes it a member (it gets the value);
#      a wrong password, a legacy 3DES/SHA-1 file and another cluster's
#      file are refused; a file re-exported by openssl joins as well;
#   4. the shared cache: web-1 puts cluster/cache1/token, web-2 reads it;
#      the server holds it for the cluster key only; web-4 (no member) can
#      neither write it (no proof: 403) nor read it; a record sealed to
#      the cluster but signed by a non-member is refused by the members;
#   5. `cluster add cache1 --agent web-4`: web-4 gets the key and the
#      cluster's secrets; an enroller without a copy of the key cannot add;
#   6. `cluster rotate cache1 --without web-2`: a new key for web-1 and web-4,
#      the cluster's secrets re-sealed to it, the old key's envelopes gone
#      from the database; the next `put --to cluster:cache1` reaches web-1
#      and web-4, not web-2 (nor web-3, which joined by file: documented);
#   7. the cluster's certificate revoked: the server refuses its proof, the
#      members go on without the cluster (their own secrets still come),
#      and `put --to cluster:cache1` refuses rather than seal to an older key.

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

# sql QUERY [ARGS...]: one value from the server's database.
sql()
{
	python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
print(db.execute(sys.argv[2], sys.argv[3:]).fetchone()[0])' "$DB" "$@"
}

# envelopes_of FP [NAME]: envelopes the database holds for FP (of NAME).
envelopes_of()
{
	if [ $# -eq 2 ]; then
		sql "SELECT COUNT(*) FROM envelopes WHERE recipient = ? AND name = ?" "$1" "$2"
	else
		sql "SELECT COUNT(*) FROM envelopes WHERE recipient = ?" "$1"
	fi
}

# put NAME VALUE TARGET: a new version, as alice.
put()
{
	printf '%s' "$2" >"$W/value"
	expect_ok as alice put "$1" --to "$3" --file "$W/value"
	rm -f "$W/value"
}


step "PKI, server, four agents of group web"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**' 'secret.write:cluster/**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'agent.enroll:cache*' \
	--perm 'token.create:web'
mk_cert carol enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
# dave may enroll into clusters other* only: no rule on group web.
mk_cert dave enroller "$W/ca" --perm 'agent.enroll:other*'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log"
export COFFER_SERVER=$SRV_URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
for n in 1 2 3 4; do
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

[file prod/shared]
path = $W/out$n/shared

[file cluster/cache1/token]
path = $W/out$n/token
CONF
	cp "$W/a$n/agent.crt" "$W/web-$n.crt"
	cp "$W/a$n/agent.key" "$W/web-$n.key"
done
for n in 1 2 4; do
	run_agent "$W/a$n" "$W/agent$n.conf" "$W/agent$n.log"
	PIDS+=("$AGENT_PID")
done


step "cluster create: a cluster certificate, the key delivered to two agents"
expect_exit 2 as bob cluster create
expect_ok as bob cluster create cache1 --agent web-1 --agent web-2 --json
CL1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fp"])' "$OUT")
[[ "$CL1" =~ ^[0-9a-f]{64}$ ]] || fail "cluster create printed no fingerprint: $(cat "$OUT")"
assert_eq "$(sql "SELECT kind FROM certs WHERE fp = ?" "$CL1")" cluster "the directory's kind"
# An enroller whose agent.enroll does not cover the name cannot make one.
expect_refusal 23 as carol cluster create cache2
# A second create of the same name is refused: add and rotate exist.
expect_exit 22 as bob cluster create cache1
for n in 1 2; do
	for _ in $(seq 1 100); do
		[ -s "$W/a$n/cluster.pem" ] && break
		sleep 0.1
	done
	[ -s "$W/a$n/cluster.pem" ] || fail "web-$n keeps no cluster key; log: $(tail -5 "$W/agent$n.log")"
	assert_eq "$(stat -c %a "$W/a$n/cluster.pem")" 600 "mode of web-$n's cluster.pem"
	# The key it holds is the one of the directory's cluster certificate.
	assert_eq "$(fingerprint "$W/a$n/cluster.pem")" "$CL1" "web-$n's cluster certificate"
done
[ ! -e "$W/a4/cluster.pem" ] || fail "web-4 got a cluster key it was not given"


step "put --to cluster:cache1: one envelope, every member opens it"
put prod/shared shared-1 cluster:cache1
assert_eq "$(sql "SELECT COUNT(*) FROM envelopes WHERE name = 'prod/shared'")" 2 \
	"envelopes of prod/shared (the cluster's and alice's)"
assert_eq "$(envelopes_of "$CL1" prod/shared)" 1 "the cluster's envelope of prod/shared"
wait_file "$W/out1/shared" shared-1 15 "$W/agent1.log"
wait_file "$W/out2/shared" shared-1 15 "$W/agent2.log"
sleep 1
[ ! -e "$W/out4/shared" ] || fail "web-4, no member, wrote prod/shared"
# agent exec reads it from the server with the member's proof.
expect_ok coffer agent exec --state-dir "$W/a1" --env SHARED=prod/shared -- \
	sh -c 'printf "%s" "$SHARED"'
assert_eq "$(cat "$OUT")" shared-1 "agent exec of a cluster secret"
if grep -q 'cached' "$ERR"; then fail "exec fell back to the cache: $(cat "$ERR")"; fi
# Rollout status: the members that applied it, by their signed acks.
for _ in $(seq 1 100); do
	expect_ok as alice status prod/shared --json
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
s=d["secrets"][0]; sys.exit(0 if s["counts"]["applied"] == 2 else 1)' "$OUT" && break
	sleep 0.1
done
json_assert "$OUT" "sorted(a['name'] for a in d['secrets'][0]['applied'])" '["web-1", "web-2"]'
# In pages of one entry (the recipients and the members in one order).
cp "$OUT" "$W/status.full"
expect_ok as alice status prod/shared --json --page 1
cmp -s "$OUT" "$W/status.full" || fail "status --page 1 differs: $(diff "$W/status.full" "$OUT")"


step "cluster export: a PKCS#12 of modern algorithms, as openssl reads it"
printf 'p12-password-1\n' >"$W/p12pass"
expect_ok as bob cluster export cache1 --out "$W/cache1.p12" --pass-file "$W/p12pass"
assert_eq "$(stat -c %a "$W/cache1.p12")" 600 "mode of the exported file"
expect_ok openssl pkcs12 -info -noout -in "$W/cache1.p12" -passin "file:$W/p12pass"
grep -q 'MAC: sha256' "$ERR" || fail "the MAC is not SHA-256: $(cat "$ERR")"
grep -q 'PBES2, PBKDF2, AES-256-CBC' "$ERR" || fail "not PBES2/AES-256-CBC: $(cat "$ERR")"
grep -q 'hmacWithSHA256' "$ERR" || fail "PBKDF2 is not HMAC-SHA256: $(cat "$ERR")"
if grep -Eq '3DES|RC2|TripleDES' "$ERR"; then fail "a legacy algorithm in the export: $(cat "$ERR")"; fi
# Refusals: a wrong password, a legacy file, then the real join.
printf 'wrong-password\n' >"$W/badpass"
expect_refusal 6 coffer agent cluster-join --state-dir "$W/a3" --p12 "$W/cache1.p12" \
	--pass-file "$W/badpass"
expect_ok openssl pkcs12 -in "$W/cache1.p12" -passin "file:$W/p12pass" -nodes -out "$W/cache1.pem"
expect_ok openssl pkcs12 -export -in "$W/cache1.pem" -passout "file:$W/p12pass" \
	-keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1 -out "$W/legacy.p12"
expect_refusal 7 coffer agent cluster-join --state-dir "$W/a3" --p12 "$W/legacy.p12" \
	--pass-file "$W/p12pass"
[ ! -e "$W/a3/cluster.pem" ] || fail "a refused file left a cluster key behind"
# openssl's own modern export of the same key joins like ours.
expect_ok openssl pkcs12 -export -in "$W/cache1.pem" -passout "file:$W/p12pass" \
	-keypbe AES-256-CBC -certpbe AES-256-CBC -macalg sha256 -out "$W/ossl.p12"
rm -f "$W/cache1.pem"
expect_ok coffer agent cluster-join --state-dir "$W/a3" --p12 "$W/ossl.p12" --pass-file "$W/p12pass"
grep -q 'joined cluster "cache1"' "$OUT" || fail "cluster-join said: $(cat "$OUT")"
assert_eq "$(fingerprint "$W/a3/cluster.pem")" "$CL1" "web-3's cluster certificate"
run_agent "$W/a3" "$W/agent3.conf" "$W/agent3.log"
PIDS+=("$AGENT_PID")
wait_file "$W/out3/shared" shared-1 15 "$W/agent3.log"


step "the shared cache: members write and read, the server holds ciphertext"
printf 'cache-token-1' >"$W/tok"
expect_ok coffer agent cache put cluster/cache1/token --state-dir "$W/a1" --file "$W/tok" --json
json_assert "$OUT" "d['version']" 1 "d['cluster']" cache1
rm -f "$W/tok"
assert_eq "$(envelopes_of "$CL1" cluster/cache1/token)" 1 "the cluster's envelope of the entry"
assert_eq "$(sql "SELECT COUNT(*) FROM envelopes WHERE name = 'cluster/cache1/token'")" 1 \
	"envelopes of the cache entry (the cluster key only)"
expect_ok coffer agent cache get cluster/cache1/token --state-dir "$W/a2"
assert_eq "$(cat "$OUT")" cache-token-1 "web-2 reads what web-1 wrote"
wait_file "$W/out2/token" cache-token-1 15 "$W/agent2.log"
wait_file "$W/out3/token" cache-token-1 15 "$W/agent3.log"
# The server stores ciphertext: the value is nowhere in the database.
if grep -qa 'cache-token-1' "$DB"; then fail "the cache value is in the server's database"; fi
# A second put is version 2.
printf 'cache-token-2' | expect_ok coffer agent cache put cluster/cache1/token --state-dir "$W/a2"
wait_file "$W/out1/token" cache-token-2 15 "$W/agent1.log"
# web-4 is in no cluster: refused before anything is sent ...
printf 'evil' >"$W/evil"
expect_refusal 2 coffer agent cache put cluster/cache1/token --state-dir "$W/a4" --file "$W/evil"
# ... and the server refuses an agent's cache write without the proof.
cat >"$W/evil.json" <<JSON
{"version":9,"envelopes":[{"recipient":"$CL1","envelope":"AAAA"}]}
JSON
code=$(curl -s -o "$W/curl.out" -w '%{http_code}' --cacert "$W/srv/server.crt" \
	--cert "$W/web-4.crt" --key "$W/web-4.key" -X PUT -H 'Content-Type: application/json' \
	--data-binary "@$W/evil.json" "$SRV_URL/v1/secrets?name=cluster/cache1/token")
assert_eq "$code" 403 "an agent's cache write without a proof"
# A record signed by web-4 (no member) and sealed to the cluster key by
# hand, pushed by alice: the members refuse it (no proof inside).
printf 'forged-value' >"$W/forged.val"
make_record "$W/forged.json" "$(fingerprint "$W/ca/root.crt")" cluster/cache1/token 7 \
	"$W/forged.val"
ossl_sign "$W/forged.json" web-4 "$W/forged.sig"
ossl_encrypt "$W/forged.sig" "$W/a1/cluster.pem" "$W/forged.env"
expect_ok python3 - "$W/forged.env" "$CL1" "$W/forged.body" <<'PY'
import base64, json, sys
env = base64.b64encode(open(sys.argv[1], 'rb').read()).decode()
json.dump({"version": 7, "envelopes": [{"recipient": sys.argv[2], "envelope": env}]},
          open(sys.argv[3], 'w'))
PY
code=$(curl -s -o "$W/curl.out" -w '%{http_code}' --cacert "$W/srv/server.crt" \
	--cert "$W/alice.crt" --key "$W/alice.key" -X PUT -H 'Content-Type: application/json' \
	--data-binary "@$W/forged.body" "$SRV_URL/v1/secrets?name=cluster/cache1/token")
assert_eq "$code" 201 "alice storing a forged entry (the server cannot tell)"
for _ in $(seq 1 50); do
	grep -q 'refused cluster/cache1/token' "$W/agent1.log" && break
	sleep 0.1
done
grep -q 'refused cluster/cache1/token.*web-4' "$W/agent1.log" ||
	fail "web-1 did not refuse the non-member's entry; log: $(tail -5 "$W/agent1.log")"
assert_eq "$(cat "$W/out1/token")" cache-token-2 "web-1 keeps the members' value"


step "what an enroller of another cluster cannot do"
# dave could not have enrolled web-4 (group web): cluster create refuses
# to give it his cluster's key, before anything is made ...
expect_refusal 7 as dave cluster create otherc --agent web-4
expect_ok as dave cluster create otherc --json
OTHER=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fp"])' "$OUT")
# ... and web-4 refuses it when dave seals his key record to it anyway.
expect_ok as dave get cluster-key/otherc --out "$W/otherc.bundle"
expect_ok as dave put cluster-key/otherc --to agent:web-4 --type binary \
	--file "$W/otherc.bundle"
rm -f "$W/otherc.bundle"
for _ in $(seq 1 50); do
	grep -q 'refused cluster-key/otherc.*may not give agent "web-4" a cluster key' \
		"$W/agent4.log" && break
	sleep 0.1
done
grep -q 'refused cluster-key/otherc.*may not give agent "web-4" a cluster key' "$W/agent4.log" ||
	fail "web-4 did not refuse dave's cluster key; log: $(tail -5 "$W/agent4.log")"
[ ! -e "$W/a4/cluster.pem" ] || fail "web-4 took the key of dave's cluster"
# dave cannot add his cluster's key as a recipient of secrets it never
# had (nor of another cluster's key) ...
for target in "prod/shared&version=1" "cluster-key/cache1&version=1"; do
	code=$(curl -s -o "$W/curl.out" -w '%{http_code}' --cacert "$W/srv/server.crt" \
		--cert "$W/dave.crt" --key "$W/dave.key" -X POST -H 'Content-Type: application/json' \
		--data "{\"envelopes\":[{\"recipient\":\"$OTHER\",\"envelope\":\"MAA=\"}]}" \
		"$SRV_URL/v1/secrets/envelopes?name=$target")
	assert_eq "$code" 403 "dave adding an envelope to $target"
done
# ... and bob cannot purge the current key's envelopes (only a key a
# rotation replaced).
code=$(curl -s -o "$W/curl.out" -w '%{http_code}' --cacert "$W/srv/server.crt" \
	--cert "$W/bob.crt" --key "$W/bob.key" -X DELETE \
	"$SRV_URL/v1/secrets/envelopes?recipient=$CL1")
assert_eq "$code" 200 "bob's purge of the current key"
json_assert "$W/curl.out" "d['removed']" 0
[ "$(envelopes_of "$CL1" prod/shared)" -eq 1 ] || fail "the current key lost its envelope"
# A member writes the next version of a cache entry only, never one that
# would push the name out of reach.
TENANT=$(fingerprint "$W/ca/root.crt")
FP1=$(fingerprint "$W/web-1.crt")
PROOF=$(printf 'coffer cluster member v1\n%s\n%s\n%s' "$TENANT" "$CL1" "$FP1" |
	openssl dgst -sha256 -sign "$W/a1/cluster.pem" | base64 -w0)
code=$(curl -s -o "$W/curl.out" -w '%{http_code}' --cacert "$W/srv/server.crt" \
	--cert "$W/web-1.crt" --key "$W/web-1.key" -X PUT -H 'Content-Type: application/json' \
	-H "Coffer-Cluster: $CL1 $PROOF" \
	--data "{\"version\":9007199254740990,\"envelopes\":[{\"recipient\":\"$CL1\",\"envelope\":\"MAA=\"}]}" \
	"$SRV_URL/v1/secrets?name=cluster/cache1/token")
assert_eq "$code" 409 "a member's cache write far above the latest"


step "cluster add web-4: the key reaches it, and with it the cluster's secrets"
expect_ok as bob cluster add cache1 --agent web-4 --json
wait_file "$W/out4/shared" shared-1 15 "$W/agent4.log"
assert_eq "$(fingerprint "$W/a4/cluster.pem")" "$CL1" "web-4's cluster certificate"
# Adding needs the key: carol (no copy, no rule on cache1) cannot.
expect_refusal 23 as carol cluster add cache1 --agent web-3


step "cluster rotate --without web-2: a new key, old envelopes gone"
[ "$(envelopes_of "$CL1")" -gt 0 ] || fail "the old cluster key holds no envelopes before the rotation"
expect_ok as bob cluster rotate cache1 --without web-2 --json
CL2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fp"])' "$OUT")
[[ "$CL2" =~ ^[0-9a-f]{64}$ ]] && [ "$CL2" != "$CL1" ] || fail "rotate made no new key: $(cat "$OUT")"
assert_eq "$(envelopes_of "$CL1")" 0 "envelopes left for the old cluster key"
assert_eq "$(envelopes_of "$CL2" prod/shared)" 1 "prod/shared re-sealed to the new key"
for _ in $(seq 1 100); do
	[ "$(fingerprint "$W/a1/cluster.pem")" = "$CL2" ] && break
	sleep 0.1
done
assert_eq "$(fingerprint "$W/a1/cluster.pem")" "$CL2" "web-1's cluster key after the rotation"
for _ in $(seq 1 100); do
	[ "$(fingerprint "$W/a4/cluster.pem")" = "$CL2" ] && break
	sleep 0.1
done
assert_eq "$(fingerprint "$W/a4/cluster.pem")" "$CL2" "web-4's cluster key after the rotation"
assert_eq "$(fingerprint "$W/a2/cluster.pem")" "$CL1" "web-2 keeps only the old key"
put prod/shared shared-2 cluster:cache1
assert_eq "$(sql "SELECT COUNT(*) FROM envelopes WHERE recipient = ? AND name = 'prod/shared'
	AND version = 2" "$CL2")" 1 "prod/shared v2 for the new key"
wait_file "$W/out1/shared" shared-2 15 "$W/agent1.log"
wait_file "$W/out4/shared" shared-2 15 "$W/agent4.log"
sleep 1
assert_eq "$(cat "$W/out2/shared")" shared-1 "web-2, removed, keeps the old value only"


step "a revoked cluster key: the members go on with their own secrets"
expect_ok coffer ca revoke --ca "$W/ca" --cert "$W/a1/cluster.pem" --pass-file "$PASS_FILE"
expect_ok as alice crl push "$W/ca/crl.pem"
put prod/shared shared-own agent:web-1
wait_file "$W/out1/shared" shared-own 15 "$W/agent1.log"
grep -q 'going on without the cluster' "$W/agent1.log" ||
	fail "web-1 did not say it left the cluster; log: $(tail -5 "$W/agent1.log")"
# And --to cluster:cache1 refuses: its newest certificate is revoked.
printf 'x' >"$W/value"
expect_refusal 17 as alice put prod/shared --to cluster:cache1 --file "$W/value"
pass
