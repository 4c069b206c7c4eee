#!/bin/bash
#
# server.sh - bench/server: the coffer server against nginx, same client,
# same mutual-TLS setup, same machine, same run (issue 4, section 9).
#
#   bench/server.sh BUILD_DIR
#
# BUILD_DIR is a Release build with the benchmarks:
#   cmake -S . -B BUILD_DIR -DCMAKE_BUILD_TYPE=Release -DCOFFER_TESTS=OFF
#   cmake --build BUILD_DIR -j2
#
# What it does, all in a fresh temp dir, all traffic on 127.0.0.1:
#   1. a PKI: root (coffer ca init), an admin operator, AGENTS agents
#      (coffer key new / csr new / cert issue, group "bench", issued by the
#      root so that nginx verifies them with depth 1 like coffer does);
#   2. coffer server init + tenant add + server run (THREADS threads;
#      connection and rate limits raised for the bench, see SERVER_OPTS);
#      the agents are put in the directory with POST /v1/certs (as the
#      admin operator) and one secret, sealed to all of them (coffer seal
#      --out-dir), is uploaded with PUT /v1/secrets;
#   3. nginx (Debian's /usr/sbin/nginx) with its own config in the temp
#      dir: TLS 1.3, the coffer server's own certificate and key,
#      ssl_verify_client on with the tenant root as client CA, THREADS
#      worker processes, serving one static file: the bytes of an agent's
#      real feed response;
#   4. loadgen (same settings against both, REPS rounds, coffer and nginx
#      interleaved in each round):
#        a. keep-alive: GET /v1/agent/secrets?since=0, CONNS connections,
#           NCERTS agent certificates in turn, DURATION s after WARMUP s;
#        b. new handshake per request, same endpoint (authenticated, so not
#           rate limited), CONNS concurrent handshakes;
#      each run also reads the server's CPU time from /proc, so the
#      report has CPU per request besides requests/s;
#   5. memory: a freshly started server, then IDLE connections each parked
#      on GET /v1/agent/secrets?since=CURSOR&wait=60 (CURSOR up to date),
#      held HOLD s; VmRSS sampled every half second and VmHWM at the end.
# Then it prints the medians, the spread, the ratios coffer/nginx and
# PASS/FAIL for each target (keep-alive >= 0.5, handshakes >= 0.8 of
# nginx; RSS <= 200 MiB with 10,000 idle long-polls).
#
# Every process it starts is stopped by PID on exit.  Set KEEP=1 to keep
# the temp dir (logs, configs).  The figures mean something only on a
# quiet machine; bench/README.md has the ones measured so far.

set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR   (a Release build with bench/loadgen)" >&2; exit 2; }
[ $# -eq 1 ] || usage
BUILD=$(cd "$1" && pwd) || usage
COFFER=$BUILD/coffer
LOADGEN=$BUILD/bench/loadgen
NGINX=${NGINX:-/usr/sbin/nginx}
for f in "$COFFER" "$LOADGEN" "$NGINX"; do
	[ -x "$f" ] || { echo "server.sh: $f is missing or not executable" >&2; exit 2; }
done
for tool in curl jq openssl awk python3 base64; do
	command -v "$tool" >/dev/null || { echo "server.sh: needs $tool" >&2; exit 2; }
done

AGENTS=${AGENTS:-1000}       # agents issued and registered
NCERTS=${NCERTS:-16}         # of which loadgen uses this many in turn
CONNS=${CONNS:-32}           # loadgen connections / concurrent handshakes
DURATION=${DURATION:-10}     # seconds measured per run
WARMUP=${WARMUP:-1}          # seconds before measuring
REPS=${REPS:-3}              # rounds (coffer, nginx interleaved)
THREADS=${THREADS:-2}        # server threads = nginx workers = loadgen threads
IDLE=${IDLE:-10000}          # idle long-poll connections for the memory test
HOLD=${HOLD:-20}             # seconds they are held (< 60, the long-poll wait)
MEM_TARGET_MIB=200

# Raise the descriptor limit for everything started from here: the server
# and loadgen each hold IDLE sockets in the memory test.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE + 1000)) ]; then
	echo "server.sh: the descriptor limit $(ulimit -n) is too low for IDLE=$IDLE" >&2
	exit 2
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/coffer-bench.XXXXXX")
PIDS=()
cleanup()
{
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [ "${KEEP:-0}" = 1 ]; then
		echo "server.sh: kept $T"
	else
		rm -rf -- "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$T"

say() { echo "== $*"; }
die() { echo "server.sh: $*" >&2; exit 1; }

# The given PID's CPU time (user + system) in clock ticks, with children
# for nginx's master (its workers are its children, still running, so
# they are summed one by one).
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks()
{
	local total=0 p f
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || continue
		# fields after the ")" of the command name: utime is 14, stime 15
		f=$(sed 's/^.*) //' "/proc/$p/stat")
		total=$((total + $(echo "$f" | awk '{print $12 + $13}')))
	done
	echo "$total"
}
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- PKI
say "PKI: root, admin operator, $AGENTS agents"
"$COFFER" ca init --name Bench --dir ca --no-passphrase >/dev/null
"$COFFER" key new --out op.key --no-passphrase >/dev/null
"$COFFER" csr new --key op.key --name bench-admin --out op.csr >/dev/null
"$COFFER" cert issue --ca ca --csr op.csr --out op.crt --kind operator \
	--perm 'admin:**' >/dev/null
mkdir agents
start=$(date +%s)
for i in $(seq 1 "$AGENTS"); do
	a=agents/agent-$i
	"$COFFER" key new --out "$a.key" --no-passphrase >/dev/null
	"$COFFER" csr new --key "$a.key" --name "agent-$i" --out "$a.csr" >/dev/null
	"$COFFER" cert issue --ca ca --csr "$a.csr" --out "$a.crt" --kind agent \
		--group bench >/dev/null
	rm "$a.csr"
done
echo "   $AGENTS agent certificates in $(( $(date +%s) - start )) s"

# ---------------------------------------------------------------- server
# Bench settings, beyond the defaults: the per-address and total
# connection limits above IDLE (every client here is 127.0.0.1), the
# unauthenticated rate limit out of the way, a body limit that fits one
# upload of AGENTS envelopes.
SERVER_OPTS=(--threads "$THREADS" --max-conns-per-ip $((IDLE + 500))
	--max-conns $((IDLE + 1000)) --rate 100000 --max-body 67108864)
say "coffer server: init, tenant, run (${SERVER_OPTS[*]})"
"$COFFER" server init --dir srv >/dev/null
"$COFFER" server tenant add --dir srv ca/root.crt >/dev/null

SERVER_PID=""
start_server()
{
	rm -f srv/port
	"$COFFER" server run --dir srv --listen 127.0.0.1:0 --port-file srv/port \
		"${SERVER_OPTS[@]}" 2>>server.log &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	local i
	for i in $(seq 1 100); do
		if [ -s srv/port ]; then
			PORT=$(cat srv/port)
			if curl -sf --cacert srv/server.crt "https://127.0.0.1:$PORT/v1/health" \
				>/dev/null; then
				return 0
			fi
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited; see $T/server.log"
		sleep 0.1
	done
	die "the server did not answer /v1/health within 10 s; see $T/server.log"
}
stop_server()
{
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
}
start_server
BASE=https://127.0.0.1:$PORT
OPCURL=(curl -s --cacert srv/server.crt --cert op.crt --key op.key)

say "registering $AGENTS agents (POST /v1/certs as the admin operator)"
# One curl process, one connection: a config file of AGENTS requests.
: >certs.curl
for i in $(seq 1 "$AGENTS"); do
	jq -n --rawfile c "agents/agent-$i.crt" '{cert: $c, chain: []}' \
		>"agents/agent-$i.json"
	{
		echo "url = \"$BASE/v1/certs\""
		echo "data-binary = \"@agents/agent-$i.json\""
		echo "header = \"Content-Type: application/json\""
		echo "output = /dev/null"
		echo "write-out = \"%{http_code}\\n\""
		echo "cacert = srv/server.crt"
		echo "cert = op.crt"
		echo "key = op.key"
		echo "silent"
		[ "$i" -lt "$AGENTS" ] && echo "next"
	} >>certs.curl
done
curl -K certs.curl >certs.codes
ok=$(grep -c '^201$' certs.codes || true)
[ "$ok" -eq "$AGENTS" ] || die "POST /v1/certs: $ok of $AGENTS answered 201 ($(sort certs.codes | uniq -c | tr '\n' ' '))"

say "sealing one secret to all $AGENTS agents and uploading it"
TO=()
for i in $(seq 1 "$AGENTS"); do TO+=(--to "agents/agent-$i.crt"); done
head -c 48 /dev/urandom | base64 >secret.txt
"$COFFER" seal --name bench/secret --version 1 --signer-cert op.crt \
	--signer-key op.key --root ca/root.crt "${TO[@]}" --out-dir env \
	--in secret.txt >/dev/null
rm secret.txt
for f in env/*.cms; do
	printf '%s %s\n' "$(basename "$f" .cms)" "$(base64 -w0 "$f")"
done | jq -R -s '{version: 1, envelopes: (split("\n") | map(select(length > 0)
	| split(" ") | {recipient: .[0], envelope: .[1]}))}' >put.json
code=$("${OPCURL[@]}" -o put.out -w '%{http_code}' -X PUT \
	-H 'Content-Type: application/json' --data-binary @put.json \
	"$BASE/v1/secrets?name=bench/secret")
[ "$code" = 201 ] || die "PUT /v1/secrets: HTTP $code: $(head -c 300 put.out)"
echo "   $(jq -r '"version \(.version), \(.recipients) recipients, \(.bytes) bytes"' put.out)"

FEED="/v1/agent/secrets?since=0"
AGCURL=(curl -s --cacert srv/server.crt --cert agents/agent-1.crt --key agents/agent-1.key)
"${AGCURL[@]}" -o feed.json -w '%{http_code}' "$BASE$FEED" >feed.code
[ "$(cat feed.code)" = 200 ] || die "GET $FEED: HTTP $(cat feed.code): $(head -c 300 feed.json)"
n=$(jq '.secrets | length' feed.json)
[ "$n" = 1 ] || die "GET $FEED: $n secrets in the feed of agent-1, expected 1"
FEED_BYTES=$(stat -c %s feed.json)
# The cursor that parks every loadgen agent: cursors are one sequence per
# tenant, so the highest of the NCERTS agents' is up to date for all.
CURSOR=0
for i in $(seq 1 "$NCERTS"); do
	c=$(curl -s --cacert srv/server.crt --cert "agents/agent-$i.crt" \
		--key "agents/agent-$i.key" "$BASE$FEED" | jq -r .cursor)
	[ "$c" -gt "$CURSOR" ] && CURSOR=$c
done
echo "   agent-1's feed: $FEED_BYTES bytes; up-to-date cursor of agents 1..$NCERTS: $CURSOR"

# ---------------------------------------------------------------- nginx
NPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p ng/logs ng/tmp ng/www
cp feed.json ng/www/feed.json
# nginx's workers drop root for "nobody": let them reach the one file
chmod 755 "$T" ng ng/www
chmod 644 ng/www/feed.json
cat >ng/nginx.conf <<EOF
# bench/server.sh: nginx with the same certificate, client CA and TLS 1.3
daemon off;
worker_processes $THREADS;
worker_rlimit_nofile $(ulimit -n);
pid $T/ng/nginx.pid;
error_log $T/ng/logs/error.log warn;
events { worker_connections $((IDLE + 1000)); }
http {
	access_log off;
	client_body_temp_path $T/ng/tmp/body;
	proxy_temp_path $T/ng/tmp/proxy;
	fastcgi_temp_path $T/ng/tmp/fastcgi;
	uwsgi_temp_path $T/ng/tmp/uwsgi;
	scgi_temp_path $T/ng/tmp/scgi;
	keepalive_requests 100000000;
	server {
		listen 127.0.0.1:$NPORT ssl;
		ssl_protocols TLSv1.3;
		ssl_certificate $T/srv/server.crt;
		ssl_certificate_key $T/srv/server.key;
		ssl_verify_client on;
		ssl_client_certificate $T/ca/root.crt;
		ssl_verify_depth 1;
		root $T/ng/www;
		location / {
			default_type application/json;
			try_files /feed.json =404;
		}
	}
}
EOF
say "nginx on 127.0.0.1:$NPORT ($("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $THREADS workers)"
"$NGINX" -p "$T/ng" -c "$T/ng/nginx.conf" -e "$T/ng/logs/error.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for i in $(seq 1 50); do
	curl -sf --cacert srv/server.crt --cert agents/agent-1.crt \
		--key agents/agent-1.key -o /dev/null "https://127.0.0.1:$NPORT$FEED" && break
	kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(cat ng/logs/error.log)"
	sleep 0.1
done
# NGINX_PIDS: the master and its workers, for the CPU time
NGINX_PIDS=("$NGINX_PID")
mapfile -t -O 1 NGINX_PIDS < <(pgrep -P "$NGINX_PID" || true)

# ---------------------------------------------------------------- load
LGCERTS=()
for i in $(seq 1 "$NCERTS"); do
	LGCERTS+=(--cert "agents/agent-$i.crt" --key "agents/agent-$i.key")
done

# run NAME MODE URL PIDS...: one loadgen run; appends "NAME MODE RATE
# CPU_US_PER_REQ" to results and prints loadgen's summary line.
: >results
run()
{
	local name=$1 mode=$2 url=$3
	shift 3
	local extra=()
	[ "$mode" = handshake ] && extra=(--new-handshake)
	local c0 c1 out rate reqs cpu_us
	c0=$(cpu_ticks "$@")
	out=$("$LOADGEN" --url "$url" --cacert srv/server.crt "${LGCERTS[@]}" \
		--connections "$CONNS" --duration "$DURATION" --warmup "$WARMUP" \
		--threads "$THREADS" --expect-status 200 "${extra[@]}" --json) ||
		die "loadgen against $name failed: $out"
	c1=$(cpu_ticks "$@")
	echo "$out" >>loadgen.jsonl
	rate=$(echo "$out" | jq .rate)
	reqs=$(echo "$out" | jq .requests)
	# CPU over the whole run (warm-up included) per request counted
	cpu_us=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" \
		-v w="$WARMUP" -v t="$DURATION" \
		'BEGIN { printf "%.0f", (n ? d / hz * 1e6 / (n * (w + t) / t) : 0) }')
	echo "$name $mode $rate $cpu_us" >>results
	printf '   %-6s %-10s %9.1f req/s  p50 %6.2f ms  p99 %6.2f ms  server CPU %5s us/req  errors %s\n' \
		"$name" "$mode" "$rate" "$(echo "$out" | jq .p50_ms)" "$(echo "$out" | jq .p99_ms)" \
		"$cpu_us" "$(echo "$out" | jq -c '[.errors.connect, .errors.tls, .errors.timeout, .errors.closed, (.errors.status | add // 0)] | add')"
	echo "$out" | jq -e '(.errors.status | length) == 0 and .errors.tls == 0 and .errors.connect == 0' >/dev/null ||
		echo "   ($name $mode errors: $(echo "$out" | jq -c .errors))"
}

say "load: $CONNS connections, $DURATION s (+$WARMUP s warm-up), $THREADS loadgen threads, $NCERTS agent certs, $REPS rounds"
for r in $(seq 1 "$REPS"); do
	echo "   round $r"
	run coffer keepalive "$BASE$FEED" "$SERVER_PID"
	run nginx keepalive "https://127.0.0.1:$NPORT$FEED" "${NGINX_PIDS[@]}"
	run coffer handshake "$BASE$FEED" "$SERVER_PID"
	run nginx handshake "https://127.0.0.1:$NPORT$FEED" "${NGINX_PIDS[@]}"
done
kill "$NGINX_PID" 2>/dev/null || true
wait "$NGINX_PID" 2>/dev/null || true

# median / min / max of column 3 (rate) or 4 (cpu) for NAME MODE
stat_of()
{
	awk -v n="$1" -v m="$2" -v c="$3" '$1 == n && $2 == m { print $c }' results |
		sort -g | awk '{ v[NR] = $1 } END {
			if (NR == 0) { print "0 0 0"; exit }
			med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.1f %.1f %.1f\n", med, v[1], v[NR] }'
}

FAILS=0
V=""
verdict()   # ratio target: sets V to PASS or FAIL
{
	if awk -v r="$1" -v t="$2" 'BEGIN { exit !(r >= t) }'; then
		V=PASS
	else
		V=FAIL
		FAILS=$((FAILS + 1))
	fi
}

echo
say "results (median of $REPS; min..max)"
for mode in keepalive handshake; do
	read -r cm cmin cmax <<<"$(stat_of coffer $mode 3)"
	read -r nm nmin nmax <<<"$(stat_of nginx $mode 3)"
	read -r ccpu _ _ <<<"$(stat_of coffer $mode 4)"
	read -r ncpu _ _ <<<"$(stat_of nginx $mode 4)"
	ratio=$(awk -v a="$cm" -v b="$nm" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
	cratio=$(awk -v a="$ccpu" -v b="$ncpu" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')
	target=0.5
	[ "$mode" = handshake ] && target=0.8
	verdict "$ratio" "$target"
	v=$V
	printf '   %-10s coffer %9.1f req/s (%s..%s)  nginx %9.1f req/s (%s..%s)\n' \
		"$mode" "$cm" "$cmin" "$cmax" "$nm" "$nmin" "$nmax"
	printf '   %-10s ratio coffer/nginx %s (target >= %s) %s;  server CPU per request: coffer %s us, nginx %s us (nginx/coffer %s)\n' \
		"" "$ratio" "$target" "$v" "$ccpu" "$ncpu" "$cratio"
done

# ---------------------------------------------------------------- memory
echo
say "memory: $IDLE idle long-polls (GET /v1/agent/secrets?since=$CURSOR&wait=60), held $HOLD s, fresh server"
stop_server
start_server
BASE=https://127.0.0.1:$PORT
sleep 1
rss0=$(status_kib "$SERVER_PID" VmRSS)
echo "   server RSS before: $((rss0 / 1024)) MiB ($rss0 KiB)"
"$LOADGEN" --url "$BASE/v1/agent/secrets?since=$CURSOR&wait=60" --cacert srv/server.crt \
	"${LGCERTS[@]}" --idle "$IDLE" --duration "$HOLD" --threads "$THREADS" --json \
	>idle.json 2>idle.err &
LG_PID=$!
PIDS+=("$LG_PID")
max_rss=0
while kill -0 "$LG_PID" 2>/dev/null; do
	if grep -q holding idle.err; then
		rss=$(status_kib "$SERVER_PID" VmRSS)
		[ "${rss:-0}" -gt "$max_rss" ] && max_rss=$rss
	fi
	kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during the idle test; see $T/server.log"
	sleep 0.5
done
wait "$LG_PID" || true
hwm=$(status_kib "$SERVER_PID" VmHWM)
grep holding idle.err | sed 's/^/   /' || true
held=$(jq .held idle.json 2>/dev/null || echo 0)
echo "   loadgen: $(jq -c '{open, held, answered, failed, errors}' idle.json 2>/dev/null || cat idle.json)"
echo "   server RSS while held: max $((max_rss / 1024)) MiB ($max_rss KiB); VmHWM $((hwm / 1024)) MiB"
per_conn=$(awk -v a="$max_rss" -v b="$rss0" -v n="$held" 'BEGIN { printf "%.1f", (n > 0 ? (a - b) / n : 0) }')
echo "   growth per held connection: $per_conn KiB"
mem_ok=$(awk -v m="$max_rss" -v t=$((MEM_TARGET_MIB * 1024)) -v h="$held" -v n="$IDLE" \
	'BEGIN { exit !(m <= t && h >= n) }' && echo PASS || echo FAIL)
[ "$mem_ok" = PASS ] || FAILS=$((FAILS + 1))
echo "   memory: $held of $IDLE held, RSS $((max_rss / 1024)) MiB (target <= $MEM_TARGET_MIB MiB with all $IDLE held) $mem_ok"
stop_server

echo
if [ "$FAILS" -eq 0 ]; then say "all targets met"; else say "$FAILS target(s) missed"; fi
exit 0
