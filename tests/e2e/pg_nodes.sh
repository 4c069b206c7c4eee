#!/usr/bin/env bash
#
# pg_nodes.sh - several server nodes on one PostgreSQL (issue 8, section
# 2): two `coffer server run --db postgresql://...` processes (A and B,
# one server certificate) on a private PostgreSQL (tests/pg/pgtest.sh),
# and nginx's `stream` module in front of them as a TCP load balancer, so
# that mutual TLS still ends at coffer.  Checks, with measured times:
#   - a put through B reaches an agent long-polling A within 1 s (from
#     the put's start to the agent's file; LISTEN/NOTIFY, not the
#     long-poll's 30 s timeout);
#   - a CRL pushed through B refuses the revoked client on A at once;
#   - two writers, one on each node, rotating one secret concurrently get
#     strictly increasing versions and lose none (history 1..N without a
#     gap, N = the successful puts), and `coffer audit verify` passes;
#   - PostgreSQL restarted under both nodes: requests go on through both,
#     both listeners come back, and a put through B again wakes the agent
#     on A within 1 s;
#   - node A killed with SIGKILL: an agent connected through nginx goes on
#     through B.
# Every process started here (nodes, agents, nginx) is stopped by its PID.
#
# Needs curl, nginx with its stream module (Debian nginx and
# libnginx-mod-stream) and the PostgreSQL server binaries (Debian
# postgresql) besides what lib.sh checks.

# Under the harness, which sets PGTEST_DIR and the URLs; it stops
# PostgreSQL by PID whatever happens here.
if [ -z "${PGTEST_DIR:-}" ]; then
	self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
	PGTEST_TIMEOUT=${PGTEST_TIMEOUT:-110} exec bash \
		"$(dirname "$self")/../pg/pgtest.sh" bash "$self" "$@"
fi

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
STREAM_MODULE=${COFFER_TEST_NGINX_STREAM:-/usr/lib/nginx/modules/ngx_stream_module.so}
[ -x "$NGINX_BIN" ] ||
	{ echo "FAIL [pg_nodes]: nginx is not installed (Debian nginx)" >&2; exit 1; }
[ -f "$STREAM_MODULE" ] || {
	echo "FAIL [pg_nodes]: no $STREAM_MODULE (Debian libnginx-mod-stream)" >&2
	exit 1
}
pg_setup

PID_A="" PID_B="" NGINX_PID="" AGENT1_PID="" AGENT2_PID=""

# stop_pid PID [SIGNAL]: signal one process we started and reap it.
stop_pid()
{
	[ -n "$1" ] || return 0
	kill "-${2:-TERM}" "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

on_exit()
{
	local rc=$?
	stop_pid "$AGENT1_PID"
	stop_pid "$AGENT2_PID"
	stop_pid "$NGINX_PID" QUIT
	stop_pid "$PID_A"
	stop_pid "$PID_B"
	(exit "$rc")
	cleanup
}
trap on_exit EXIT


now_ms() { date +%s%3N; }

free_port()
{
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# node_start NAME DIR DB: `coffer server run` of node NAME in the
# background; sets PID_NAME and URL_NAME.
node_start()
{
	local name=$1 dir=$2 db=$3 pid
	rm -f "$dir/port"
	"$COFFER" server run --dir "$dir" --db "$db" --listen 127.0.0.1:0 \
		--port-file "$dir/port" --threads 2 2>>"$W/node-$name.log" &
	pid=$!
	for _ in $(seq 1 100); do
		[ -s "$dir/port" ] && break
		kill -0 "$pid" 2>/dev/null ||
			fail "node $name exited at start: $(tail -5 "$W/node-$name.log")"
		sleep 0.1
	done
	[ -s "$dir/port" ] || fail "node $name wrote no port file in 10 s"
	printf -v "PID_$name" '%s' "$pid"
	printf -v "URL_$name" 'https://127.0.0.1:%s' "$(cat "$dir/port")"
}

# wait_log FILE TEXT SECONDS: until FILE holds TEXT (fixed string).
wait_log()
{
	for _ in $(seq 1 $(($3 * 20))); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	fail "$(basename "$1") never said \"$2\" in $3 s: $(tail -3 "$1")"
}

# parked URL: the node's count of parked long-polls (/metrics).
parked()
{
	curl -sS --cacert "$W/srv-a/server.crt" "$1/metrics" |
		awk '$1 == "coffer_requests_parked" { print $2 }'
}

# wait_parked URL N: until the node holds at least N parked long-polls.
wait_parked()
{
	for _ in $(seq 1 100); do
		[ "$(parked "$1")" -ge "$2" ] 2>/dev/null && return 0
		sleep 0.1
	done
	fail "$1 holds $(parked "$1") parked long-polls after 10 s, want $2"
}

# wait_value FILE CONTENT SECONDS: until FILE holds CONTENT, polling every
# 10 ms; sets GOT_MS to the wall clock then.
wait_value()
{
	local deadline=$(($(now_ms) + $3 * 1000))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		if [ "$(cat "$1" 2>/dev/null)" = "$2" ]; then
			GOT_MS=$(now_ms)
			return 0
		fi
		sleep 0.01
	done
	fail "$1 does not hold \"$2\" after $3 s (holds \"$(cat "$1" 2>/dev/null)\")"
}

# put_via URL VALUE: a new version of prod/db/password for group web, as
# alice, through that node.
put_via()
{
	printf '%s' "$2" >"$W/value"
	COFFER_SERVER=$1 as alice put prod/db/password --to group:web \
		--file "$W/value" >"$OUT" 2>"$ERR" ||
		fail "put through $1 failed: $(cat "$ERR")"
}

# cross_wake WHAT VALUE: a put through B must reach agent 1, parked on A,
# within 1 s of the put's start; prints and records the times.
cross_wake()
{
	local t0 t_put
	wait_parked "$URL_A" 1
	t0=$(now_ms)
	put_via "$URL_B" "$2"
	t_put=$(now_ms)
	wait_value "$W/out1/db_password" "$2" 10
	echo "pg_nodes: $1: put through B took $((t_put - t0)) ms; the agent on" \
		"A had the value $((GOT_MS - t0)) ms after the put started" \
		"($((GOT_MS - t_put)) ms after it returned)"
	[ $((GOT_MS - t0)) -lt 1000 ] ||
		fail "$1: the agent on A got B's put after $((GOT_MS - t0)) ms, not within 1 s"
}

# ---------------------------------------------------------------- PKI
step "PKI, database, two nodes"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**' 'secret.read:prod/**'
mk_operator auditor "$W/ca" 'audit.read:**'
mk_operator carol "$W/ca" 'secret.read:prod/**'
mk_operator tech "$W/ca" 'agent.manage:web'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
expect_ok coffer server init --dir "$W/srv-a" --db "$DB"
expect_ok coffer server tenant add --dir "$W/srv-a" --db "$DB" "$W/ca/root.crt"
# Node B: the same server certificate and key, a directory of its own.
mkdir -m 700 "$W/srv-b"
cp -p "$W/srv-a/server.crt" "$W/srv-a/server.key" "$W/srv-b/"
node_start A "$W/srv-a" "$DB"
# B's URL is what follows a primary (docs/OPERATIONS.md): a list of hosts
# with target_session_attrs=read-write, the first of which is down.
DEAD_PORT=$(free_port)
node_start B "$W/srv-b" \
	"postgresql://coffer@127.0.0.1:$DEAD_PORT,127.0.0.1:$PGTEST_PORT/coffer?target_session_attrs=read-write"
for n in A B; do
	wait_log "$W/node-$n.log" "listening for other nodes' wake-ups" 10
done
export COFFER_SERVER_CA=$W/srv-a/server.crt COFFER_ROOT=$W/ca/root.crt
export COFFER_SERVER=$URL_A

# nginx in front: TCP only (mutual TLS ends at coffer).  B is A's backup
# so that an agent's connection is on A until A dies, whatever the order
# of connections; docs/OPERATIONS.md shows the usual least_conn pool.
step "nginx stream in front of both nodes"
PORT_N=$(free_port)
mkdir "$W/nginx"
cat >"$W/nginx/nginx.conf" <<EOF
load_module $STREAM_MODULE;
daemon off;
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log info;
events { worker_connections 256; }
stream {
	upstream coffer {
		server ${URL_A#https://} max_fails=1 fail_timeout=30s;
		server ${URL_B#https://} backup;
	}
	server {
		listen 127.0.0.1:$PORT_N;
		proxy_pass coffer;
		proxy_connect_timeout 2s;
		proxy_timeout 10m;
	}
}
EOF
"$NGINX_BIN" -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" \
	2>>"$W/nginx/error.log" &
NGINX_PID=$!
URL_N=https://127.0.0.1:$PORT_N
for _ in $(seq 1 50); do
	curl -sS --cacert "$W/srv-a/server.crt" -o /dev/null "$URL_N/v1/health" \
		2>/dev/null && break
	kill -0 "$NGINX_PID" 2>/dev/null ||
		fail "nginx exited at start: $(tail -5 "$W/nginx/error.log")"
	sleep 0.1
done
expect_ok curl -sS --cacert "$W/srv-a/server.crt" "$URL_N/v1/health"
json_assert "$OUT" 'd["status"]' ok

# ------------------------------------------------------------- agents
step "two agents join through nginx; agent 1 runs on A, agent 2 through nginx"
expect_ok as bob token create --group web --count 2 --ttl 1h
sed -n 1p "$OUT" >"$W/t1"
sed -n 2p "$OUT" >"$W/t2"
for n in 1 2; do
	expect_ok coffer agent join --server "$URL_N" --server-ca "$W/srv-a/server.crt" \
		--token-file "$W/t$n" --name "web-$n" --state-dir "$W/a$n" --root "$W/ca/root.crt"
done
COFFER_SERVER=$URL_B expect_ok as bob agent approve --all
for n in 1 2; do
	expect_ok coffer agent join --state-dir "$W/a$n" --wait 20 --root "$W/ca/root.crt"
	[ -s "$W/a$n/agent.crt" ] || fail "web-$n got no certificate"
done
put_via "$URL_A" v1
mkdir -p "$W/out1" "$W/out2"
for n in 1 2; do
	if [ "$n" = 1 ]; then url=$URL_A; else url=$URL_N; fi
	cat >"$W/agent$n.conf" <<EOF
[server]
url = $url

[agent]
wait = 30

[file prod/db/password]
path = $W/out$n/db_password
mode = 0600
EOF
done
run_agent "$W/a1" "$W/agent1.conf" "$W/agent1.log"
AGENT1_PID=$AGENT_PID
run_agent "$W/a2" "$W/agent2.conf" "$W/agent2.log"
AGENT2_PID=$AGENT_PID
AGENT_PID=""
wait_value "$W/out1/db_password" v1 15
wait_value "$W/out2/db_password" v1 15

# -------------------------------------------------------- across nodes
step "a put through B wakes the agent long-polling A"
cross_wake "wake-up across nodes" "v2-$(openssl rand -hex 6)"
# The agent through nginx (on A) too.
wait_value "$W/out2/db_password" "$(cat "$W/value")" 5

step "a CRL pushed through B refuses the revoked client on A at once"
expect_ok curl -sS --fail-with-body --cacert "$W/srv-a/server.crt" \
	--cert "$W/carol.crt" --key "$W/carol.key" "$URL_A/v1/whoami"
expect_ok coffer ca revoke --ca "$W/ca" --cert "$W/carol.crt" --pass-file "$PASS_FILE"
t0=$(now_ms)
COFFER_SERVER=$URL_B expect_ok as alice crl push "$W/ca/crl.pem"
code=""
while [ $(($(now_ms) - t0)) -lt 1000 ]; do
	code=$(curl -sS --cacert "$W/srv-a/server.crt" --cert "$W/carol.crt" \
		--key "$W/carol.key" -o "$W/whoami.json" -w '%{http_code}' \
		"$URL_A/v1/whoami" || true)
	[ "$code" = 401 ] && break
	sleep 0.02
done
assert_eq "$code" 401 "carol on A within 1 s of the CRL pushed through B"
grep -q revoked "$W/whoami.json" || fail "A's 401 does not say revoked: $(cat "$W/whoami.json")"
echo "pg_nodes: CRL pushed through B refused on A $(($(now_ms) - t0)) ms after the push started"

step "a command sent through B to the agent on A; its answer wakes B"
# Both ways across: B's post wakes the agent's long-poll on A, the
# agent's answer (posted to A) wakes the sender's long-poll on B.
t0=$(now_ms)
COFFER_SERVER=$URL_B expect_ok as tech cmd run --to agent:web-1 status --timeout 20s
t1=$(now_ms)
grep -q "== web-1: ok" "$OUT" || fail "status did not answer: $(cat "$OUT")"
echo "pg_nodes: a command through B to the agent on A answered in $((t1 - t0)) ms"
[ $((t1 - t0)) -lt 3000 ] ||
	fail "the command took $((t1 - t0)) ms: a wake-up did not cross the nodes"

# ------------------------------------------------- concurrent writers
step "two writers on two nodes rotate one secret concurrently"
# writer TAG URL: 20 puts of prod/rotate through URL; each exit status in
# W/rc-TAG, each version stored in W/ver-TAG.
writer()
{
	local tag=$1 url=$2 i rc
	: >"$W/rc-$tag"
	: >"$W/ver-$tag"
	for i in $(seq 1 20); do
		printf '%s-%s' "$tag" "$i" >"$W/value-$tag"
		rc=0
		COFFER_SERVER=$url coffer put prod/rotate --to agent:web-2 \
			--file "$W/value-$tag" --json --cert "$W/alice.crt" \
			--key "$W/alice.key" >"$W/put-$tag.out" 2>"$W/put-$tag.err" || rc=$?
		echo "$rc" >>"$W/rc-$tag"
		if [ "$rc" -eq 0 ]; then
			python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' \
				"$W/put-$tag.out" >>"$W/ver-$tag"
		elif [ "$rc" -ne 22 ]; then
			cp "$W/put-$tag.err" "$W/put-$tag.failed"
		fi
	done
}
t0=$(now_ms)
writer a "$URL_A" &
WA=$!
writer b "$URL_B" &
WB=$!
wait "$WA" || fail "writer a failed"
wait "$WB" || fail "writer b failed"
for tag in a b; do
	[ ! -e "$W/put-$tag.failed" ] ||
		fail "a put of writer $tag failed otherwise than by a conflict: $(cat "$W/put-$tag.failed")"
done
# The writers did race: 409s answered by the nodes (put retries once).
CONFLICTS=0
for url in "$URL_A" "$URL_B"; do
	c=$(curl -sS --cacert "$W/srv-a/server.crt" "$url/metrics" | awk '
		index($0, "coffer_requests_total{method=\"PUT\",route=\"/v1/secrets\",class=\"4xx\"}") == 1 { n += $2 }
		END { print n + 0 }')
	CONFLICTS=$((CONFLICTS + c))
done
OK_A=$(grep -cx 0 "$W/rc-a" || true)
OK_B=$(grep -cx 0 "$W/rc-b" || true)
echo "pg_nodes: 2 x 20 concurrent puts in $(($(now_ms) - t0)) ms: $OK_A through A," \
	"$OK_B through B, $((40 - OK_A - OK_B)) refused with 409 twice;" \
	"$CONFLICTS answers 409 (stale version, retried) from the nodes"
python3 -c 'import sys
a = [int(x) for x in open(sys.argv[1]).read().split()]
b = [int(x) for x in open(sys.argv[2]).read().split()]
for tag, v in (("a", a), ("b", b)):
    if any(x >= y for x, y in zip(v, v[1:])):
        sys.exit("writer %s got versions that do not increase: %s" % (tag, v))
both = sorted(a + b)
if both != list(range(1, len(both) + 1)):
    sys.exit("versions given out are not 1..%d: %s" % (len(both), both))' \
	"$W/ver-a" "$W/ver-b" || fail "versions of the concurrent puts"
expect_ok as alice history prod/rotate --json
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
rows = d["versions"] if isinstance(d, dict) else d
v = sorted(r["version"] for r in rows)
n = int(sys.argv[2])
if v != list(range(1, n + 1)):
    sys.exit("history holds %s, want 1..%d" % (v, n))' "$OUT" $((OK_A + OK_B)) ||
	fail "history of prod/rotate after the concurrent puts: $(head -c 600 "$OUT")"
[ $((OK_A + OK_B)) -ge 20 ] || fail "only $((OK_A + OK_B)) of 40 puts succeeded"

step "audit verify after the concurrent run, through each node"
for url in "$URL_A" "$URL_B"; do
	COFFER_SERVER=$url expect_ok as auditor audit verify
	grep -q '^audit chain intact: [0-9]* entries, last hash [0-9a-f]\{64\}$' "$OUT" ||
		fail "audit verify through $url said: $(cat "$OUT")"
done

# ------------------------------------------------ PostgreSQL restarted
step "PostgreSQL restarted under both nodes"
t0=$(now_ms)
bash "$COFFER_TEST_PG_CTL" ctl restart || fail "pgtest.sh ctl restart failed"
t_up=$(now_ms)
for url in "$URL_A" "$URL_B"; do
	COFFER_SERVER=$url expect_ok as alice ls prod/ --json
	json_assert "$OUT" '[s["name"] for s in d["secrets"]]' '["prod/db/password", "prod/rotate"]'
done
for n in A B; do
	wait_log "$W/node-$n.log" "listening for other nodes' wake-ups again" 10
	kill -0 "$(eval echo "\$PID_$n")" 2>/dev/null || fail "node $n died with PostgreSQL's restart"
done
echo "pg_nodes: PostgreSQL restart took $((t_up - t0)) ms; both listeners" \
	"back $(($(now_ms) - t_up)) ms after it was up again"
cross_wake "wake-up across nodes after the restart" "v3-$(openssl rand -hex 6)"
wait_value "$W/out2/db_password" "$(cat "$W/value")" 5

# ---------------------------------------------------- node A killed
step "node A killed with SIGKILL: the agent behind nginx goes on through B"
stop_pid "$AGENT1_PID"
AGENT1_PID=""
wait_parked "$URL_A" 1
stop_pid "$PID_A" KILL
PID_A=""
t0=$(now_ms)
V4="v4-$(openssl rand -hex 6)"
put_via "$URL_B" "$V4"
wait_value "$W/out2/db_password" "$V4" 15
echo "pg_nodes: after A's SIGKILL the agent behind nginx had B's put" \
	"$((GOT_MS - t0)) ms later"
grep -q 'upstream\|connect() failed\|Connection refused' "$W/nginx/error.log" ||
	fail "nginx never found A gone: $(tail -3 "$W/nginx/error.log")"
COFFER_SERVER=$URL_N expect_ok as auditor audit verify
grep -q '^audit chain intact' "$OUT" || fail "audit verify through nginx said: $(cat "$OUT")"

step "stop, and no password in any log"
stop_pid "$AGENT2_PID"
AGENT2_PID=""
kill -TERM "$PID_B"
rc=0
wait "$PID_B" || rc=$?
PID_B=""
assert_eq "$rc" 0 "node B's exit status after SIGTERM"
stop_pid "$NGINX_PID" QUIT
NGINX_PID=""
for f in "$W"/node-*.log "$W"/agent*.log; do
	if grep -qaF -- "$PGTEST_PASSWORD" "$f"; then
		fail "$(basename "$f") shows the database password"
	fi
done
if grep -E 'AddressSanitizer|LeakSanitizer|runtime error' "$W"/node-*.log; then
	fail "a node logged a sanitizer report"
fi

pass
