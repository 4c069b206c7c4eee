#!/usr/bin/env bash
#
# propagation.sh - bench/propagation (issue 5, section 6): how fast a
# rotation reaches every agent's file, and what an agent costs in memory
# and in idle CPU.
#
#   bench/propagation.sh BUILD_DIR [--quick]
#
# In a fresh temp dir, everything on 127.0.0.1:
#   1. PKI (root, an operator, an enroller), one coffer server (SQLite,
#      --threads 2), and AGENTS+2 agents enrolled as a deployment would:
#      `coffer token create --count`, `coffer agent join` of each without
#      waiting, one `coffer agent approve --all`, then `agent join --wait`
#      of each to fetch its certificate.  AGENTS are in group "bench", one
#      "solo" agent in group "solo" (the baseline), one in group "mem".
#   2. Baseline: the solo agent alone (`coffer agent run`, one [file]
#      sink); ROTATIONS puts of a new value to group:solo, timed by
#      bench/propagation (inotify on the sink directory; see
#      bench/propagation.c) until the file holds it.
#   3. The same with the AGENTS agents of group "bench" running at once,
#      each with one [file] sink for the rotated secret: p50/p99 over the
#      rotations of "every agent's file holds the new value", from the
#      put's start and from its return, and over every (agent, rotation).
#   4. Idle CPU: the AGENTS agents (and the server) parked in their long
#      poll for IDLE s; utime + stime from /proc/PID/stat over the window.
#   5. Memory: the "mem" agent with SECRETS [file] sinks for SECRETS
#      secrets, once it has written them all: VmRSS, VmHWM, VmLck; against
#      the median VmRSS of the one-secret agents of step 3.
# Targets (issue 5): p99 of "all have it" <= 1 s with AGENTS=100; agent
# RSS <= 8 MiB with 100 secrets; idle CPU ~0.
#
# Exit status: 0 when everything was measured (whatever the verdicts);
# 1 when something failed for real (an agent never got a value, a process
# died, a set-up step failed); 2 on a usage error.  Every process it
# starts is stopped by PID on exit, also on failure or interrupt.
#
# Knobs (environment): AGENTS (100), ROTATIONS (20), SECRETS (100),
# IDLE (20 s), GAP (0.5 s between rotations), TIMEOUT (30 s: a rotation
# that has not reached every agent by then is a failure), KEEP=1 keeps
# the temp dir.
# --quick: 5 agents, 3 rotations, 10 secrets, 3 s idle (a smoke test).

set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [--quick]" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
BUILD=$(cd "$1" && pwd) || usage
QUICK=0
if [ $# -eq 2 ]; then
	[ "$2" = --quick ] || usage
	QUICK=1
fi
COFFER=$BUILD/coffer
PROP=$BUILD/bench/propagation
for f in "$COFFER" "$PROP"; do
	[ -x "$f" ] || { echo "propagation.sh: $f is missing or not executable" >&2; exit 2; }
done
for tool in jq awk; do
	command -v "$tool" >/dev/null || { echo "propagation.sh: needs $tool" >&2; exit 2; }
done

if [ "$QUICK" = 1 ]; then
	AGENTS=${AGENTS:-5} ROTATIONS=${ROTATIONS:-3} SECRETS=${SECRETS:-10}
	IDLE=${IDLE:-3} GAP=${GAP:-0.2}
fi
AGENTS=${AGENTS:-100}
ROTATIONS=${ROTATIONS:-20}
SECRETS=${SECRETS:-100}
IDLE=${IDLE:-20}
GAP=${GAP:-0.5}
TIMEOUT=${TIMEOUT:-30}
P99_TARGET_MS=1000
RSS_TARGET_KIB=$((8 * 1024))

T=$(mktemp -d "${TMPDIR:-/tmp}/coffer-prop.XXXXXX")
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
		echo "propagation.sh: kept $T"
	else
		rm -rf -- "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$T"

say() { echo "== $*"; }
die() { echo "propagation.sh: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# cpu_ns PID...: the on-CPU time of the given processes (all their live
# threads) in nanoseconds (schedstat: exact, unlike the clock ticks of
# /proc/PID/stat)
cpu_ns()
{
	local p
	for p in "$@"; do cat "/proc/$p"/task/*/schedstat 2>/dev/null || true; done |
		awk '{ t += $1 } END { printf "%.0f\n", t }'
}
# wakeups PID...: voluntary context switches (each sleep that ended) of
# all their threads
wakeups()
{
	local p
	for p in "$@"; do cat "/proc/$p"/task/*/status 2>/dev/null || true; done |
		awk '$1 == "voluntary_ctxt_switches:" { t += $2 } END { print t + 0 }'
}
ms_of() { awk -v a="$1" -v b="$2" -v d="${3:-1}" 'BEGIN { printf "%.2f", (b - a) / 1e6 / d }'; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# alive PID...: dies naming the first process that is gone
alive()
{
	local p
	for p in "$@"; do
		kill -0 "$p" 2>/dev/null || die "process $p died (logs in $T; KEEP=1 keeps them)"
	done
}

# ---------------------------------------------------------------- PKI
START=$(now)
say "PKI, server; $AGENTS agents + 1 baseline + 1 memory agent enrolled with tokens"
"$COFFER" ca init --name PropBench --dir ca --no-passphrase >/dev/null
issue() # issue NAME KIND PERM...
{
	local name=$1 kind=$2 p args=()
	shift 2
	for p in "$@"; do args+=(--perm "$p"); done
	"$COFFER" key new --out "$name.key" --no-passphrase >/dev/null
	"$COFFER" csr new --key "$name.key" --name "$name" --out "$name.csr" >/dev/null
	"$COFFER" cert issue --ca ca --csr "$name.csr" --out "$name.crt" \
		--kind "$kind" "${args[@]}" >/dev/null
}
issue op operator 'secret.write:bench/**' 'secret.read:bench/**'
issue enr enroller 'agent.enroll:bench' 'agent.enroll:solo' 'agent.enroll:mem' \
	'token.create:bench' 'token.create:solo' 'token.create:mem'

# Bench settings beyond the defaults: the unauthenticated rate limit (the
# joins) out of the way; every agent is 127.0.0.1.
"$COFFER" server init --dir srv >/dev/null
"$COFFER" server tenant add --dir srv ca/root.crt >/dev/null
"$COFFER" server run --dir srv --listen 127.0.0.1:0 --port-file srv/port \
	--threads 2 --rate 100000 --max-conns-per-ip $((AGENTS + 100)) \
	2>>server.log &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 1 100); do
	[ -s srv/port ] && break
	alive "$SERVER_PID"
	sleep 0.1
done
[ -s srv/port ] || die "the server wrote no port file in 10 s; see $T/server.log"
URL=https://127.0.0.1:$(cat srv/port)
export COFFER_SERVER=$URL COFFER_SERVER_CA=$T/srv/server.crt COFFER_ROOT=$T/ca/root.crt

as() { local who=$1; shift; "$COFFER" "$@" --cert "$who.crt" --key "$who.key"; }

# Agent names: bench-1..bench-AGENTS, solo, mem; state dirs st/NAME.
mkdir -p st tok out/bench out/solo out/mem conf logs
mktokens() # mktokens GROUP COUNT PREFIX
{
	as enr token create --group "$1" --count "$2" --ttl 1h >"tok/$1.all" ||
		die "token create --group $1 failed"
	[ "$(wc -l <"tok/$1.all")" -eq "$2" ] || die "token create gave $(wc -l <"tok/$1.all") tokens, not $2"
	split -l 1 -d -a 5 "tok/$1.all" "tok/$3"
}
mktokens bench "$AGENTS" bench-
mktokens solo 1 solo-
mktokens mem 1 mem-
NAMES=()
for i in $(seq 1 "$AGENTS"); do NAMES+=("bench-$i"); done
NAMES+=(solo mem)
tokfile() # the token file of agent NAME
{
	case $1 in
	bench-*) printf 'tok/bench-%05d' $((${1#bench-} - 1)) ;;
	*) echo "tok/$1-00000" ;;
	esac
}

t=$(now)
# Four at a time: each join makes a key (CPU) and a request (a round trip).
join_one()
{
	"$COFFER" agent join --server "$URL" --server-ca srv/server.crt \
		--token-file "$(tokfile "$1")" --name "$1" --state-dir "st/$1" \
		--root ca/root.crt >"logs/join-$1.log" 2>&1
}
batch=()
for a in "${NAMES[@]}"; do
	join_one "$a" &
	batch+=("$!:$a")
	if [ "${#batch[@]}" -eq 4 ] || [ "$a" = "${NAMES[-1]}" ]; then
		for b in "${batch[@]}"; do
			wait "${b%%:*}" || die "agent join of ${b#*:} failed: $(tail -3 "logs/join-${b#*:}.log")"
		done
		batch=()
	fi
done
echo "   ${#NAMES[@]} join requests in $(since "$t") s"
t=$(now)
as enr agent approve --all >approve.log 2>&1 || die "agent approve --all failed: $(tail -3 approve.log)"
echo "   approve --all in $(since "$t") s"
t=$(now)
for a in "${NAMES[@]}"; do
	"$COFFER" agent join --state-dir "st/$a" --wait 30 --root ca/root.crt \
		>>"logs/join-$a.log" 2>&1 || die "agent join --wait of $a failed: $(tail -3 "logs/join-$a.log")"
	[ -s "st/$a/agent.crt" ] || die "join left no st/$a/agent.crt"
done
echo "   ${#NAMES[@]} certificates fetched in $(since "$t") s"

# conf NAME SECRET=PATH...: a config with one [file] sink per pair
conf()
{
	local name=$1 pair
	shift
	{
		printf '[server]\nurl = %s\n' "$URL"
		for pair in "$@"; do
			printf '\n[file %s]\npath = %s\nmode = 0600\n' "${pair%%=*}" "${pair#*=}"
		done
	} >"conf/$name.conf"
}

# start_agent NAME: `coffer agent run`; its PID in AGENT_PID
start_agent()
{
	"$COFFER" agent run --state-dir "st/$1" --config "conf/$1.conf" \
		2>>"logs/$1.log" &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
}
# wait_started NAME...: until each agent's log says "started:"
wait_started()
{
	local a i
	for a in "$@"; do
		for i in $(seq 1 300); do
			grep -q 'started:' "logs/$a.log" 2>/dev/null && break
			[ "$i" -lt 300 ] || die "agent $a did not start in 30 s: $(tail -3 "logs/$a.log")"
			sleep 0.1
		done
	done
}
stop_agents() # PID...: SIGTERM, then wait; a non-zero exit is a failure
{
	local p q rc=0 keep=()
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" || rc=$?; done
	# forget them, so the exit trap never signals a reused PID
	for q in "${PIDS[@]}"; do
		for p in "$@"; do [ "$q" = "$p" ] && continue 2; done
		keep+=("$q")
	done
	PIDS=("${keep[@]}")
	[ "$rc" -eq 0 ] || die "an agent exited $rc on SIGTERM"
}

PUT=("$COFFER" put --cert "$T/op.crt" --key "$T/op.key" --file "$T/value")
echo "   set-up: $(since "$START") s"

# ---------------------------------------------------------------- baseline
echo
say "baseline: 1 agent, $ROTATIONS rotations (+1 warm-up) of bench/solo"
conf solo "bench/solo=$T/out/solo/agent-1"
start_agent solo
SOLO_PID=$AGENT_PID
wait_started solo
a0=$(cpu_ns "$SOLO_PID") v0=$(cpu_ns "$SERVER_PID")
"$PROP" --dir out/solo --value-file "$T/value" --prefix agent- --agents 1 --rotations "$ROTATIONS" \
	--gap "$GAP" --timeout "$TIMEOUT" --json -- "${PUT[@]}" bench/solo --to group:solo \
	>solo.json 2>solo.err || { cat solo.err >&2; die "the baseline failed"; }
sed 's/^/   /' solo.err
alive "$SERVER_PID" "$SOLO_PID"
SOLO_AGENT_CPU=$(ms_of "$a0" "$(cpu_ns "$SOLO_PID")" $((ROTATIONS + 1)))
SOLO_SERVER_CPU=$(ms_of "$v0" "$(cpu_ns "$SERVER_PID")" $((ROTATIONS + 1)))
echo "   CPU per rotation: the agent $SOLO_AGENT_CPU ms, the server $SOLO_SERVER_CPU ms, the put $(jq -r '.put_cpu_ms * 100 | round / 100' solo.json) ms"
stop_agents "$SOLO_PID"

# ---------------------------------------------------------------- N agents
echo
say "$AGENTS agents, $ROTATIONS rotations (+1 warm-up) of bench/rot to group:bench"
BENCH_PIDS=()
for i in $(seq 1 "$AGENTS"); do
	conf "bench-$i" "bench/rot=$T/out/bench/agent-$i"
	start_agent "bench-$i"
	BENCH_PIDS+=("$AGENT_PID")
done
t=$(now)
wait_started "${NAMES[@]:0:$AGENTS}"
echo "   $AGENTS agents started in $(since "$t") s"
sleep 1
a0=$(cpu_ns "${BENCH_PIDS[@]}") v0=$(cpu_ns "$SERVER_PID")
"$PROP" --dir out/bench --value-file "$T/value" --prefix agent- --agents "$AGENTS" --rotations "$ROTATIONS" \
	--gap "$GAP" --timeout "$TIMEOUT" --json -- "${PUT[@]}" bench/rot --to group:bench \
	>bench.json 2>bench.err || { cat bench.err >&2; die "the $AGENTS-agent run failed"; }
sed 's/^/   /' bench.err
alive "$SERVER_PID" "${BENCH_PIDS[@]}"
AGENTS_CPU=$(ms_of "$a0" "$(cpu_ns "${BENCH_PIDS[@]}")" $((ROTATIONS + 1)))
SERVER_CPU=$(ms_of "$v0" "$(cpu_ns "$SERVER_PID")" $((ROTATIONS + 1)))
echo "   CPU per rotation: the $AGENTS agents $AGENTS_CPU ms ($(awk -v a="$AGENTS_CPU" -v n="$AGENTS" 'BEGIN { printf "%.2f", a / n }') ms each), the server $SERVER_CPU ms, the put $(jq -r '.put_cpu_ms * 100 | round / 100' bench.json) ms"

# ---------------------------------------------------------------- idle CPU
echo
say "idle: $AGENTS agents in their long poll for $IDLE s"
sleep 1
c0=$(cpu_ns "${BENCH_PIDS[@]}") s0=$(cpu_ns "$SERVER_PID") w0=$(wakeups "${BENCH_PIDS[@]}")
t=$(now)
sleep "$IDLE"
c1=$(cpu_ns "${BENCH_PIDS[@]}") s1=$(cpu_ns "$SERVER_PID") w1=$(wakeups "${BENCH_PIDS[@]}")
idle_s=$(since "$t")
alive "$SERVER_PID" "${BENCH_PIDS[@]}"
IDLE_TOTAL_MS=$(ms_of "$c0" "$c1")
IDLE_PER_AGENT=$(awk -v c="$IDLE_TOTAL_MS" -v n="$AGENTS" -v s="$idle_s" 'BEGIN { printf "%.3f", c / n / s * 60 }')
IDLE_WAKES=$(awk -v w=$((w1 - w0)) -v n="$AGENTS" -v s="$idle_s" 'BEGIN { printf "%.1f", w / n / s * 60 }')
IDLE_SERVER=$(awk -v c="$(ms_of "$s0" "$s1")" -v s="$idle_s" 'BEGIN { printf "%.2f", c / s * 60 }')
echo "   agents: $IDLE_TOTAL_MS ms CPU in all over $idle_s s = $IDLE_PER_AGENT ms/min per agent, $IDLE_WAKES wake-ups/min per agent; server $IDLE_SERVER ms/min"

# One-secret agents' memory, the baseline for the memory case
rss_list=()
for p in "${BENCH_PIDS[@]}"; do rss_list+=("$(status_kib "$p" VmRSS)"); done
RSS1=$(printf '%s\n' "${rss_list[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "   one-secret agents: VmRSS median $RSS1 KiB"
stop_agents "${BENCH_PIDS[@]}"

# ---------------------------------------------------------------- memory
echo
say "memory: 1 agent with $SECRETS secrets, one [file] sink each"
t=$(now)
MEM_SECRETS=()
for i in $(seq 1 "$SECRETS"); do
	MEM_SECRETS+=("bench/mem/s$i=$T/out/mem/s$i")
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >value
	"${PUT[@]}" "bench/mem/s$i" --to group:mem >/dev/null 2>>put.log ||
		die "put bench/mem/s$i failed: $(tail -3 put.log)"
done
echo "   $SECRETS puts in $(since "$t") s"
conf mem "${MEM_SECRETS[@]}"
t=$(now)
start_agent mem
MEM_PID=$AGENT_PID
wait_started mem
for i in $(seq 1 300); do
	n=$(find out/mem -maxdepth 1 -type f -name 's*' | wc -l)
	[ "$n" -ge "$SECRETS" ] && grep -q 'wrote .*/s'"$SECRETS"' ' "logs/mem.log" && break
	alive "$MEM_PID"
	[ "$i" -lt 300 ] || die "the memory agent wrote $n of $SECRETS files in 30 s: $(tail -3 logs/mem.log)"
	sleep 0.1
done
echo "   all $SECRETS files written $(since "$t") s after the start"
sleep 1
alive "$MEM_PID"
RSS=$(status_kib "$MEM_PID" VmRSS)
HWM=$(status_kib "$MEM_PID" VmHWM)
LCK=$(status_kib "$MEM_PID" VmLck)
ANON=$(status_kib "$MEM_PID" RssAnon)
FILE=$(status_kib "$MEM_PID" RssFile)
PSS=$(awk '$1 == "Pss:" { print $2 }' "/proc/$MEM_PID/smaps_rollup")
LOCKED=$(awk '$1 == "Locked:" { print $2 }' "/proc/$MEM_PID/smaps_rollup")
echo "   VmRSS $RSS KiB = RssAnon $ANON + RssFile $FILE (+ shmem); VmHWM $HWM KiB; Pss $PSS KiB"
echo "   VmLck $LCK KiB (the locked mappings' size), of it resident: $LOCKED KiB (RLIMIT_MEMLOCK $(ulimit -l) KiB)"
grep -q 'secret memory is not locked' logs/mem.log &&
	echo "   (the agent says its secure heap is not locked)"
# Resident KiB per mapped file (shared libraries) and anonymous memory
awk '/^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6 ? $6 : "[anonymous]"); sub(".*/", "", name) }
	$1 == "Rss:" { rss[name] += $2 }
	END { for (n in rss) if (rss[n] > 0) printf "%d %s\n", rss[n], n }' "/proc/$MEM_PID/smaps" |
	sort -rn | head -12 | awk '{ printf "%s%s %d", (NR > 1 ? ", " : "   resident by mapping (KiB): "), $2, $1 } END { print "" }'
stop_agents "$MEM_PID"

# ---------------------------------------------------------------- report
FAILS=0
verdict() # verdict VALUE TARGET: PASS when VALUE <= TARGET
{
	if awk -v v="$1" -v t="$2" 'BEGIN { exit !(v <= t) }'; then
		echo PASS
	else
		echo FAIL
	fi
}
j() { jq -r "$2" "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

P99=$(j bench.json .all_from_start.p99_ms)
V_P99=$(verdict "$P99" "$P99_TARGET_MS")
V_RSS=$(verdict "$RSS" "$RSS_TARGET_KIB")
# "~0": under 10 ms of CPU per agent per minute idle
V_IDLE=$(verdict "$IDLE_PER_AGENT" 10)
for v in "$V_P99" "$V_RSS" "$V_IDLE"; do [ "$v" = PASS ] || FAILS=$((FAILS + 1)); done

echo
say "results ($AGENTS agents, $ROTATIONS rotations; baseline: 1 agent alone, same run)"
printf '   %-44s %9s %9s %9s %9s  %s\n' "ms" "p50" "p99" "max" "p50 ratio" "(1 agent: p50, p99)"
row()
{
	local label=$1 key=$2
	printf '   %-44s %9.1f %9.1f %9.1f %9s  (%.1f, %.1f)\n' "$label" \
		"$(j bench.json ".$key.p50_ms")" "$(j bench.json ".$key.p99_ms")" \
		"$(j bench.json ".$key.max_ms")" \
		"$(ratio "$(j bench.json ".$key.p50_ms")" "$(j solo.json ".$key.p50_ms")")" \
		"$(j solo.json ".$key.p50_ms")" "$(j solo.json ".$key.p99_ms")"
}
row "all agents have it, from the put's start" all_from_start
row "all agents have it, from the put's return" all_from_return
row "each (agent, rotation), from the put's start" each_from_start
row "the coffer put alone" put
echo
printf '   %-44s %s\n' "p99 all agents have it (target <= 1000 ms)" "$(printf %.1f "$P99") ms  $V_P99"
printf '   %-44s %s\n' "agent VmRSS with $SECRETS secrets (<= 8 MiB)" "$RSS KiB (anon $ANON, file $FILE; Pss $PSS; VmHWM $HWM; 1 secret: $RSS1)  $V_RSS"
printf '   %-44s %s\n' "idle CPU per agent (~0: <= 10 ms/min)" "$IDLE_PER_AGENT ms/min, $IDLE_WAKES wake-ups/min ($IDLE_TOTAL_MS ms for $AGENTS agents in $idle_s s; server $IDLE_SERVER ms/min)  $V_IDLE"
echo "   total run time $(since "$START") s"
if [ "$FAILS" -eq 0 ]; then say "all targets met"; else say "$FAILS target(s) missed"; fi
exit 0
