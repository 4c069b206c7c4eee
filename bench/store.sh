#!/bin/bash
#
# store.sh - bench/store: the same workload on SQLite and on PostgreSQL,
# and servers on both (issue 8, section 4).
#
#   bench/store.sh BUILD_DIR [--quick]
#
# BUILD_DIR is a build with the benchmarks (bench/store, bench/loadgen);
# a Release build for figures:
#   cmake -S . -B BUILD_DIR -DCMAKE_BUILD_TYPE=Release -DCOFFER_TESTS=OFF
#   cmake --build BUILD_DIR -j2
#
# It runs itself under tests/pg/pgtest.sh with PGTEST_STAT_STATEMENTS=1:
# a private PostgreSQL on 127.0.0.1 (initdb in a temp dir, fsync off, as
# for the tests), with pg_stat_statements to count what the servers ask.
# Then, in a fresh temp dir:
#   1. the store alone (bench/store): N agents (10,000) issued by a root
#      made at run time and put in the directory; a put of one version
#      to all N; the feeds of A agents (1,000) from 0 and from their
#      cursor; on a new SQLite file and on a new PostgreSQL database;
#      both figures and their ratio PostgreSQL / SQLite;
#   then `coffer server migrate` of the SQLite database into a new
#      PostgreSQL database, for the time a copy of that size takes;
#   2. servers on those databases (coffer server run, THREADS threads),
#      loadgen as NCERTS of those agents, keep-alive, CONNS connections:
#        a. GET /v1/agent/secrets?since=0 on the SQLite server;
#        b. the same on one PostgreSQL node, and the statements it sent
#           (pg_stat_statements calls on the bench database) per request;
#        c. ?since=CURSOR (up to date, nothing to send) on that node, and
#           its statements per request;
#        d. two nodes on the one PostgreSQL, a loadgen on each at once:
#           the feed rate through both;
#   3. idle long-polls: the two nodes with nothing parked for HOLD s
#      (their own background statements), then IDLE long-polls
#      (?since=CURSOR&wait=60, half on each node) held HOLD s: the
#      statements of that window, less the baseline, per minute.
# Every process it starts is stopped by PID on exit; KEEP=1 keeps the
# temp dir.  Knobs (environment): N, A, REPS, NCERTS, CONNS, DURATION,
# WARMUP, THREADS, IDLE, HOLD.  --quick: a smoke run of a few seconds
# (scripts/test), figures meaningless.  Exit 0 when everything ran.

set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [--quick]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
[ $# -eq 1 ] || [ "$2" = --quick ] || usage

if [ -z "${PGTEST_DIR:-}" ]; then
	self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
	PGTEST_STAT_STATEMENTS=1 PGTEST_TIMEOUT=${PGTEST_TIMEOUT:-1800} exec bash \
		"$(dirname "$self")/../tests/pg/pgtest.sh" bash "$self" "$@"
fi

BUILD=$(cd "$1" && pwd) || usage
COFFER=$BUILD/coffer
LOADGEN=$BUILD/bench/loadgen
STORE=$BUILD/bench/store
for f in "$COFFER" "$LOADGEN" "$STORE"; do
	[ -x "$f" ] || { echo "store.sh: $f is missing or not executable" >&2; exit 2; }
done
for tool in curl psql python3; do
	command -v "$tool" >/dev/null || { echo "store.sh: needs $tool" >&2; exit 2; }
done

if [ "${2:-}" = --quick ]; then
	N=${N:-300} A=${A:-100} REPS=${REPS:-1} NCERTS=${NCERTS:-4} CONNS=${CONNS:-8}
	DURATION=${DURATION:-1} WARMUP=${WARMUP:-0} IDLE=${IDLE:-20} HOLD=${HOLD:-2}
fi
N=${N:-10000}            # agents in the directory, recipients of the put
A=${A:-1000}             # agents whose feeds are read
REPS=${REPS:-3}          # store-level repetitions (median)
NCERTS=${NCERTS:-64}     # agents loadgen sends requests as
CONNS=${CONNS:-32}       # loadgen connections (split over two nodes in d)
DURATION=${DURATION:-10} # seconds measured per loadgen run
WARMUP=${WARMUP:-1}
THREADS=${THREADS:-2}    # server threads per node
IDLE=${IDLE:-1000}       # parked long-polls in 3
HOLD=${HOLD:-30}         # seconds each idle window lasts
[ "$NCERTS" -le "$A" ] || NCERTS=$A

ulimit -n "$(ulimit -Hn)"
T=$(mktemp -d "${TMPDIR:-/tmp}/coffer-bench-store.XXXXXX")
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
		echo "store.sh: kept $T"
	else
		rm -rf -- "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$T"

say() { echo "== $*"; }
die() { echo "store.sh: $*" >&2; exit 1; }

export PGPASSWORD=$PGTEST_PASSWORD
PSQL_BIN=$(command -v psql)
pq() { "$PSQL_BIN" -X -q -At -h 127.0.0.1 -p "$PGTEST_PORT" -U coffer -d coffer "$@"; }
pq -c "CREATE DATABASE bench" >/dev/null
PGDB="postgresql://coffer@127.0.0.1:$PGTEST_PORT/bench"

# Statements the bench database has run (pg_stat_statements), and its
# transactions (pg_stat_database, flushed lazily: read after a pause).
calls() {
	pq -c "SELECT COALESCE(SUM(s.calls), 0) FROM pg_stat_statements s
		JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'bench'"
}
calls_reset() { pq -c "SELECT pg_stat_statements_reset()" >/dev/null; }
xacts() {
	pq -c "SELECT pg_stat_force_next_flush()" >/dev/null 2>&1 || true
	pq -c "SELECT xact_commit + xact_rollback FROM pg_stat_database
		WHERE datname = 'bench'"
}
jget() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
fdiv() { python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print("%.2f" % (a / b) if b else "n/a")' "$1" "$2"; }

say "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); N=$N A=$A REPS=$REPS"

# ------------------------------------------------------------ 1. the store
mkdir sq pg
say "store alone, SQLite"
"$STORE" --db "sqlite:$T/sq/coffer.db" --recipients "$N" --agents "$A" \
	--reps "$REPS" --out "$T/sq" | tee sq.out
say "store alone, PostgreSQL"
"$STORE" --db "$PGDB" --recipients "$N" --agents "$A" --reps "$REPS" \
	--out "$T/pg" | tee pg.out
SQJ=$(sed -n 's/^json //p' sq.out)
PGJ=$(sed -n 's/^json //p' pg.out)
for k in put_ms feed_us empty_us; do
	eval "SQ_$k=$(jget "$SQJ" "$k")"
	eval "PG_$k=$(jget "$PGJ" "$k")"
done
SQ_CURSOR=$(jget "$SQJ" cursor)
PG_CURSOR=$(jget "$PGJ" cursor)

# ------------------------------------------------- migrate, for its time
say "coffer server migrate: the SQLite database into a new PostgreSQL one"
pq -c "CREATE DATABASE bench_copy" >/dev/null
"$COFFER" server migrate --from "sqlite:$T/sq/coffer.db" \
	--to "postgresql://coffer@127.0.0.1:$PGTEST_PORT/bench_copy" | tee migrate.out
MIGRATE_S=$(sed -n 's/^copied .* in \([0-9.]*\) s, and verified the copy$/\1/p' migrate.out)
MIGRATE_ROWS=$(awk '$1 == "total" {print $2}' migrate.out)
MIGRATE_BYTES=$(awk '$1 == "total" {print $3}' migrate.out)

# ------------------------------------------------------------ 2. servers
SERVER_OPTS=(--threads "$THREADS" --max-conns-per-ip $((IDLE + 500))
	--max-conns $((IDLE + 1000)) --rate 100000 --log-level warn)
"$COFFER" server init --dir "$T/sq" >/dev/null
"$COFFER" server init --dir "$T/pg" --db "$PGDB" >/dev/null

# start_node DIR NAME [--db URL]: sets NODE_PID and NODE_URL.
start_node()
{
	local dir=$1 name=$2
	shift 2
	rm -f "$dir/$name.port"
	"$COFFER" server run --dir "$dir" --listen 127.0.0.1:0 \
		--port-file "$dir/$name.port" "${SERVER_OPTS[@]}" "$@" 2>>"$name.log" &
	NODE_PID=$!
	PIDS+=("$NODE_PID")
	for _ in $(seq 1 100); do
		if [ -s "$dir/$name.port" ]; then
			NODE_URL=https://127.0.0.1:$(cat "$dir/$name.port")
			curl -sf --cacert "$dir/server.crt" "$NODE_URL/v1/health" \
				>/dev/null && return 0
		fi
		kill -0 "$NODE_PID" 2>/dev/null || die "node $name exited; see $T/$name.log"
		sleep 0.1
	done
	die "node $name did not answer within 10 s"
}
stop_node() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# load NAME DIR URL QUERY CONNS THREADS: keep-alive loadgen as NCERTS
# agents of DIR; its JSON in NAME.json.
load()
{
	local name=$1 dir=$2 url=$3 query=$4 conns=$5 threads=$6 i certs=()
	for i in $(seq 0 $((NCERTS - 1))); do
		certs+=(--cert "$dir/agent-$i.crt" --key "$dir/agent.key")
	done
	"$LOADGEN" --url "$url/v1/agent/secrets?$query" --cacert "$dir/server.crt" \
		"${certs[@]}" --connections "$conns" --threads "$threads" \
		--duration "$DURATION" --warmup "$WARMUP" --expect-status 200 --json \
		>"$name.json" 2>"$name.err" || die "loadgen $name failed: $(tail -3 "$name.err")"
	python3 - "$name.json" <<'EOF' || die "loadgen $1 had errors"
import json, sys
d = json.load(open(sys.argv[1]))
bad = {k: v for k, v in d.get("errors", {}).items() if v}
if bad or d["requests"] == 0:
    sys.exit("errors: %s" % bad)
EOF
}
rate() { jget "$(cat "$1.json")" rate; }
reqs() { jget "$(cat "$1.json")" requests; }

say "a. one node on SQLite: feed from 0"
start_node "$T/sq" sqnode
load sq_feed "$T/sq" "$NODE_URL" since=0 "$CONNS" "$THREADS"
stop_node "$NODE_PID"

say "b. one node on PostgreSQL: feed from 0, statements per request"
start_node "$T/pg" nodeA --db "$PGDB"
A_PID=$NODE_PID A_URL=$NODE_URL
# Counted with no warm-up, so that every request counted is one sent.
WARMUP_SAVED=$WARMUP
WARMUP=0
calls_reset
x0=$(xacts)
load pg_feed "$T/pg" "$A_URL" since=0 "$CONNS" "$THREADS"
sleep 0.5
PG_FEED_CALLS=$(calls)
PG_FEED_XACTS=$(( $(xacts) - x0 ))

say "c. the same node, up to date (?since=CURSOR): statements per request"
calls_reset
load pg_empty "$T/pg" "$A_URL" "since=$PG_CURSOR" "$CONNS" "$THREADS"
sleep 0.5
PG_EMPTY_CALLS=$(calls)
WARMUP=$WARMUP_SAVED

say "d. two nodes on the one PostgreSQL: feed from 0 through both"
start_node "$T/pg" nodeB --db "$PGDB"
B_PID=$NODE_PID B_URL=$NODE_URL
half=$(( (CONNS + 1) / 2 ))
load two_a "$T/pg" "$A_URL" since=0 "$half" 1 &
la=$!
load two_b "$T/pg" "$B_URL" since=0 "$half" 1 &
lb=$!
wait "$la" || die "loadgen on node A failed"
wait "$lb" || die "loadgen on node B failed"
load one_ref "$T/pg" "$A_URL" since=0 "$half" 1

# ------------------------------------------------------------ 3. idle
say "idle: two nodes, nothing parked, $HOLD s"
calls_reset
sleep "$HOLD"
IDLE_BASE=$(calls)
say "idle: $IDLE long-polls parked (half on each node), $HOLD s"
park()
{
	local name=$1 url=$2 n=$3 i certs=()
	for i in $(seq 0 $((NCERTS - 1))); do
		certs+=(--cert "$T/pg/agent-$i.crt" --key "$T/pg/agent.key")
	done
	"$LOADGEN" --url "$url/v1/agent/secrets?since=$PG_CURSOR&wait=60" \
		--cacert "$T/pg/server.crt" "${certs[@]}" --idle "$n" \
		--duration $((HOLD + 10)) --threads 1 --json >"$name.json" 2>"$name.err" &
	PARK_PID=$!
	PIDS+=("$PARK_PID")
}
park idle_a "$A_URL" $((IDLE / 2))
pa=$PARK_PID
park idle_b "$B_URL" $((IDLE - IDLE / 2))
pb=$PARK_PID
for _ in $(seq 1 600); do
	grep -q holding idle_a.err 2>/dev/null && grep -q holding idle_b.err 2>/dev/null && break
	kill -0 "$pa" 2>/dev/null || die "loadgen idle_a exited: $(tail -3 idle_a.err)"
	kill -0 "$pb" 2>/dev/null || die "loadgen idle_b exited: $(tail -3 idle_b.err)"
	sleep 0.1
done
grep -h holding idle_a.err idle_b.err | sed 's/^/   /'
# "holding" means sent, not yet answered: let the nodes read every
# long-poll's feed once (the counter stops moving) before counting.
prev=-1
for _ in $(seq 1 40); do
	now=$(calls)
	[ "$now" = "$prev" ] && break
	prev=$now
	sleep 0.5
done
calls_reset
sleep "$HOLD"
IDLE_PARKED=$(calls)
kill "$pa" "$pb" 2>/dev/null || true
wait "$pa" 2>/dev/null || true
wait "$pb" 2>/dev/null || true
stop_node "$A_PID"
stop_node "$B_PID"

# ------------------------------------------------------------ report
R_SQ=$(rate sq_feed) R_PG=$(rate pg_feed) R_EMPTY=$(rate pg_empty)
R_A=$(rate two_a) R_B=$(rate two_b) R_REF=$(rate one_ref)
R_TWO=$(python3 -c "print('%.1f' % ($R_A + $R_B))")
echo
echo "bench/store: N=$N recipients, A=$A agents, $(nproc) CPUs (client, servers and PostgreSQL share them)"
printf '%-44s %12s %12s %10s\n' "store alone (median of $REPS)" SQLite PostgreSQL "PG/SQLite"
printf '%-44s %12.1f %12.1f %10s\n' "put of one version to $N, ms" "$SQ_put_ms" "$PG_put_ms" "$(fdiv "$PG_put_ms" "$SQ_put_ms")"
printf '%-44s %12.1f %12.1f %10s\n' "feed from 0, us per feed ($A agents)" "$SQ_feed_us" "$PG_feed_us" "$(fdiv "$PG_feed_us" "$SQ_feed_us")"
printf '%-44s %12.1f %12.1f %10s\n' "feed from the cursor, us per feed" "$SQ_empty_us" "$PG_empty_us" "$(fdiv "$PG_empty_us" "$SQ_empty_us")"
printf '%-44s %12s %12s %10s\n' "servers, keep-alive, $CONNS conns, req/s" SQLite PostgreSQL "PG/SQLite"
printf '%-44s %12.1f %12.1f %10s\n' "feed from 0, one node" "$R_SQ" "$R_PG" "$(fdiv "$R_PG" "$R_SQ")"
printf '%-44s %12s %12.1f\n' "feed up to date (?since=CURSOR), one node" - "$R_EMPTY"
printf '%-44s %12s %12.1f   (A %s + B %s; one node, same client: %s)\n' \
	"feed from 0, two nodes at once" - "$R_TWO" "$R_A" "$R_B" "$R_REF"
printf '%-44s %s s for %s rows, %s bytes (then verified)\n' \
	"migrate SQLite -> PostgreSQL (copy)" "$MIGRATE_S" "$MIGRATE_ROWS" "$MIGRATE_BYTES"
echo "PostgreSQL statements (pg_stat_statements, bench database):"
printf '  per feed request from 0:        %s  (%s statements, %s transactions, %s requests)\n' \
	"$(fdiv "$PG_FEED_CALLS" "$(reqs pg_feed)")" "$PG_FEED_CALLS" "$PG_FEED_XACTS" "$(reqs pg_feed)"
printf '  per up-to-date feed request:    %s  (%s statements, %s requests)\n' \
	"$(fdiv "$PG_EMPTY_CALLS" "$(reqs pg_empty)")" "$PG_EMPTY_CALLS" "$(reqs pg_empty)"
printf '  two idle nodes, nothing parked: %s per minute\n' \
	"$(python3 -c "print('%.1f' % ($IDLE_BASE * 60 / $HOLD))")"
printf '  the same with %s long-polls parked: %s per minute; the long-polls'"'"' share: %s per minute\n' \
	"$IDLE" "$(python3 -c "print('%.1f' % ($IDLE_PARKED * 60 / $HOLD))")" \
	"$(python3 -c "print('%.1f' % (($IDLE_PARKED - $IDLE_BASE) * 60 / $HOLD))")"
