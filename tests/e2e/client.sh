#!/usr/bin/env bash
#
# client.sh - the operator client against a HOSTILE server: `openssl
# s_server -WWW` plays a coffer server whose directory (GET /v1/certs)
# answers every question with a certificate of its choosing.  Each
# certificate is a valid, root-signed one of the organisation, so only the
# client's own check that the answer matches the question stands between
# the secret and the wrong recipient:
#   - `--to agent:db-1` answered with agent "evil"'s certificate;
#   - `--to group:web` answered with an agent outside the group;
#   - `--to fp:FP` answered with another certificate;
#   - `--to agent:db-1` answered with the writer's own certificate (which
#     must not pass as a harmless duplicate, silently leaving db-1 out).
# All are refused (exit 16) before any upload, naming the mismatch; the
# control (the right certificate) gets past that check.
# Also: `--server-ca` pins the server's CA (a server certificate from
# another CA is refused, exit 24).

. "$(dirname "$0")/lib.sh"

SS_PID=""
on_exit()
{
	local rc=$?
	[ -z "$SS_PID" ] || kill "$SS_PID" 2>/dev/null || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

step "an organisation: root, operator alice, agents db-1, evil (each in its own group), web-1"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:**'
mk_agent db-1 "$W/ca" db
mk_agent evil "$W/ca" other
mk_agent web-1 "$W/ca" web

step "a hostile server (openssl s_server -WWW) with a canned directory"
expect_ok coffer server init --dir "$W/srv"
mkdir -p "$W/www/v1"
printf '{}' >"$W/www/v1/crl"
# certs_answer FILE CERT: {"certs":[{"cert": PEM of CERT, ...}]}
certs_answer()
{
	python3 - "$2" "$(fingerprint "$2")" >"$W/www/v1/$1" <<'EOF'
import json, sys
pem = open(sys.argv[1]).read()
print(json.dumps({"certs": [{"name": "x", "fp": sys.argv[2], "cert": pem,
                             "chain": []}]}))
EOF
}
FP_DB1=$(fingerprint "$W/db-1.crt")
certs_answer 'certs?kind=agent&name=db-1&limit=500' "$W/evil.crt"
certs_answer 'certs?kind=agent&group=web&limit=500' "$W/evil.crt"
certs_answer "certs?fp=$FP_DB1&limit=500" "$W/evil.crt"
certs_answer 'certs?kind=agent&name=me&limit=500' "$W/alice.crt"
certs_answer 'certs?kind=agent&name=web-1&limit=500' "$W/web-1.crt"
(cd "$W/www" && exec openssl s_server -WWW -cert "$W/srv/server.crt" \
	-key "$W/srv/server.key" -accept 127.0.0.1:0 >"$W/ss.out" 2>&1) &
SS_PID=$!
for _ in $(seq 1 50); do
	grep -q '^ACCEPT' "$W/ss.out" 2>/dev/null && break
	sleep 0.1
done
PORT=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$W/ss.out")
[ -n "$PORT" ] || fail "s_server did not start: $(cat "$W/ss.out")"
export COFFER_SERVER=https://127.0.0.1:$PORT
export COFFER_SERVER_CA=$W/srv/server.crt
export COFFER_CERT=$W/alice.crt COFFER_KEY=$W/alice.key
export COFFER_ROOT=$W/ca/root.crt
printf 's3cret-client-sh' >"$W/value"

step "put --to agent:db-1 answered with evil's certificate: refused"
expect_refusal 16 coffer put app/x --to agent:db-1 --file "$W/value"
stderr_has 'has another name'
stderr_has 'evil'

step "put --to group:web answered with an agent outside web: refused"
expect_refusal 16 coffer put app/x --to group:web --file "$W/value"
stderr_has 'is not in that group'

step "put --to fp:FP answered with another certificate: refused"
expect_refusal 16 coffer put app/x --to "fp:$FP_DB1" --file "$W/value"
stderr_has 'another fingerprint'

step "put --to agent:me answered with the writer's own certificate: refused"
expect_refusal 16 coffer put app/x --to agent:me --file "$W/value"
stderr_has 'not an agent certificate'

step "control: the right certificate passes the check (then s_server is no API)"
run_capture coffer put app/x --to agent:web-1 --file "$W/value"
[ "$RC" -ne 0 ] || fail "s_server cannot have stored a secret"
[ "$RC" -ne 16 ] || fail "the matching certificate was refused: $(cat "$ERR")"
if grep -q 'not sealing' "$ERR"; then fail "control refused: $(cat "$ERR")"; fi

step "--server-ca pins the server's CA: a server cert from another CA is refused"
expect_ok coffer server init --dir "$W/srv2"
expect_refusal 24 coffer put app/x --to agent:web-1 --file "$W/value" \
	--server-ca "$W/srv2/server.crt"
stderr_has 'cannot verify the server'

if grep -rqF 's3cret-client-sh' "$W/www" "$W/ss.out"; then
	fail "the secret value reached the hostile server"
fi
pass
