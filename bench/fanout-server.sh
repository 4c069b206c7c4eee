#!/bin/bash
#
# fanout-server.sh - bench/fanout-server: `coffer put --to group:web` to
# 10,000 enrolled agents through a real server, end to end, against the
# floor of sealing to the same certificates without a network, measured
# in the same run (issue 6, section 6).
#
#   bench/fanout-server.sh BUILD_DIR [--quick]
#
# BUILD_DIR is a Release build with the benchmarks (bench/fanout,
# bench/fanout-server):
#   cmake -S . -B BUILD_DIR -DCMAKE_BUILD_TYPE=Release -DCOFFER_TESTS=OFF
#   cmake --build BUILD_DIR -j2
#
# What it does, in a fresh temp dir, all traffic on 127.0.0.1:
#   1. PKI made at run time, nothing checked in: a root (`coffer ca
#      init`), an admin operator (the writer), AGENTS agents of group web
#      issued by the root (bench/fanout-server: a key of its own each), a
#      spare agent revoked with a CRL (so the CRL lookup has work to do on
#      both sides);
#   2. `coffer server init`, `tenant add`, `server run` (SQLite, SRV_THREADS
#      threads), `crl push`; the agents enrolled with POST /v1/certs as the
#      admin operator (one request each, `curl --parallel`), untimed;
#   3. REPS times, `coffer put prod/x --to group:web --threads THREADS`
#      timed end to end (wall time of the process: the directory lookup,
#      the verification of every certificate, sealing, the staged upload,
#      the commit), with its peak RSS and CPU time (getrusage of the
#      child) and the server's CPU time over the same interval;
#   4. bench/fanout --certs on the same certificates, root and CRL: whole
#      runs of verify + seal with THREADS threads (the floor), and
#      OpenSSL's own arithmetic for the same (fanout's "floor" column);
#   5. checks: the first and last agents open version REPS with `coffer
#      get`; the server lists AGENTS + 1 recipients (the writer too).
# Prints the medians, the ratio put / floor and PASS/FAIL for the target
# (<= 1.5 with 2 threads).  Exit 0 when everything ran and the checks
# passed, whatever the verdict; 1 otherwise.
#
# Knobs (environment): AGENTS (10000), THREADS (2), SRV_THREADS (2), REPS
# (3), KEEP=1 keeps the temp dir.  --quick: 300 agents, 1 repetition
# (scripts/test's smoke run; its figures mean nothing).

set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [--quick]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
[ $# -eq 1 ] || [ "$2" = --quick ] || usage
BUILD=$(cd "$1" && pwd) || usage
COFFER=$BUILD/coffer
FANOUT=$BUILD/bench/fanout
MAKER=$BUILD/bench/fanout-server
for f in "$COFFER" "$FANOUT" "$MAKER"; do
	[ -x "$f" ] || { echo "fanout-server.sh: $f is missing or not executable" >&2; exit 2; }
done
for tool in curl python3; do
	command -v "$tool" >/dev/null || { echo "fanout-server.sh: needs $tool" >&2; exit 2; }
done

if [ "${2:-}" = --quick ]; then
	AGENTS=${AGENTS:-300} REPS=${REPS:-1}
fi
AGENTS=${AGENTS:-10000}
THREADS=${THREADS:-2}
SRV_THREADS=${SRV_THREADS:-2}
REPS=${REPS:-3}
TARGET=1.5

T=$(mktemp -d "${TMPDIR:-/tmp}/coffer-bench-fanout.XXXXXX")
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
		echo "fanout-server.sh: kept $T"
	else
		rm -rf -- "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$T"

say() { echo "== $*"; }
die() { echo "fanout-server.sh: $*" >&2; exit 1; }
jget() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

say "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); AGENTS=$AGENTS THREADS=$THREADS REPS=$REPS"

# ---------------------------------------------------------------- PKI
say "PKI: root, admin operator, a revoked spare agent"
"$COFFER" ca init --name Bench --dir ca --no-passphrase >/dev/null
mkcert() { # mkcert NAME KIND ARGS...
	local name=$1 kind=$2
	shift 2
	"$COFFER" key new --out "$name.key" --no-passphrase >/dev/null
	"$COFFER" csr new --key "$name.key" --name "$name" --out "$name.csr" >/dev/null
	"$COFFER" cert issue --ca ca --csr "$name.csr" --out "$name.crt" \
		--kind "$kind" "$@" >/dev/null
}
mkcert bench-admin operator --perm 'admin:**'
mkcert spare agent --group web
"$COFFER" ca revoke --ca ca --cert spare.crt >/dev/null

# ---------------------------------------------------------------- server
say "coffer server: init, tenant, run (--threads $SRV_THREADS, SQLite)"
"$COFFER" server init --dir srv >/dev/null
"$COFFER" server tenant add --dir srv ca/root.crt >/dev/null
"$COFFER" server run --dir srv --listen 127.0.0.1:0 --port-file srv/port \
	--threads "$SRV_THREADS" --rate 100000 --log-level warn 2>>server.log &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 1 100); do
	[ -s srv/port ] && curl -sf --cacert srv/server.crt \
		"https://127.0.0.1:$(cat srv/port)/v1/health" >/dev/null && break
	kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited; see $T/server.log"
	sleep 0.1
done
URL=https://127.0.0.1:$(cat srv/port)
export COFFER_SERVER=$URL COFFER_SERVER_CA=$T/srv/server.crt \
	COFFER_ROOT=$T/ca/root.crt COFFER_CERT=$T/bench-admin.crt \
	COFFER_KEY=$T/bench-admin.key
"$COFFER" crl push ca/crl.pem >/dev/null

say "$AGENTS agents of group web: issued, then enrolled (POST /v1/certs)"
mkdir agents
"$MAKER" --ca ca --n "$AGENTS" --group web --out agents --url "$URL" \
	--cacert srv/server.crt --cert bench-admin.crt --key bench-admin.key
start=$(date +%s.%N)
curl -s --no-progress-meter --parallel --parallel-max 4 -K agents/certs.curl \
	>enroll.codes 2>enroll.err || die "curl failed: $(tail -3 enroll.err)"
ok=$(grep -c '^201$' enroll.codes || true)
[ "$ok" = "$AGENTS" ] || die "$ok of $AGENTS enrolled; answers: $(sort enroll.codes | uniq -c | tr '\n' ' ')"
printf '   enrolled in %.1f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"

# ---------------------------------------------------------------- puts
# run_timed OUT ERR CMD...: the child's wall s, user+sys s and peak RSS
# KiB (getrusage of the one child), as "wall cpu maxrss" on stdout.
run_timed()
{
	python3 - "$@" <<'EOF'
import resource, subprocess, sys, time
out, err = open(sys.argv[1], "wb"), open(sys.argv[2], "wb")
t = time.monotonic()
r = subprocess.run(sys.argv[3:], stdout=out, stderr=err)
wall = time.monotonic() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
if r.returncode != 0:
    sys.exit("exit %d" % r.returncode)
print("%.4f %.4f %d" % (wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss))
EOF
}

say "coffer put prod/x --to group:web --threads $THREADS, $REPS times"
WALLS=() CPUS=() RSSES=() SRVS=()
for r in $(seq 1 "$REPS"); do
	head -c 32 /dev/urandom | base64 >"value-$r"
	s0=$(cpu_ticks "$SERVER_PID")
	line=$(run_timed "put-$r.out" "put-$r.err" "$COFFER" put prod/x \
		--to group:web --threads "$THREADS" --file "value-$r") ||
		die "put $r failed: $(tail -3 "put-$r.err")"
	s1=$(cpu_ticks "$SERVER_PID")
	read -r wall cpu rss <<<"$line"
	srv=$(python3 -c "print('%.3f' % (($s1 - $s0) / $CLK_TCK))")
	WALLS+=("$wall") CPUS+=("$cpu") RSSES+=("$rss") SRVS+=("$srv")
	printf '   put %d: %.3f s wall, %.3f s CPU, peak RSS %d KiB; server CPU %.3f s\n' \
		"$r" "$wall" "$cpu" "$rss" "$srv"
	grep -q "for $((AGENTS + 1)) recipient" "put-$r.out" ||
		die "put $r: not $((AGENTS + 1)) recipients: $(head -2 "put-$r.out")"
done

say "checks: the first and last agents open version $REPS; the server's recipient count"
for who in first last; do
	"$COFFER" get prod/x --cert "agents/$who.crt" --key "agents/$who.key" \
		>"got-$who" || die "agent $who cannot open prod/x"
	cmp -s "got-$who" "value-$REPS" || die "agent $who opened another value"
done
"$COFFER" ls prod/ --json >ls.json
python3 - "$AGENTS" "$REPS" <<'EOF' || die "the server does not hold one envelope per recipient"
import json, sys
want, version = int(sys.argv[1]) + 1, int(sys.argv[2])
s = [x for x in json.load(open("ls.json"))["secrets"] if x["name"] == "prod/x"][0]
if s["version"] != version or s["recipients"] != want:
    sys.exit("version %s with %s recipients, want %d with %d" % (s["version"], s["recipients"], version, want))
EOF

# ---------------------------------------------------------------- floor
say "the floor: bench/fanout --certs (same certificates, root and CRL), no network"
"$FANOUT" --certs agents/agents.pem --root ca/root.crt --crl ca/crl.pem \
	--key agents/first.key --threads "1,$THREADS" --threads-only \
	--reps "$REPS" | tee fanout.out
FJ=$(sed -n 's/^json //p' fanout.out)
read -r FLOOR_MS OSSL_MS FLOOR1_MS PARSE_MS <<<"$(python3 - "$FJ" "$THREADS" <<'EOF'
import json, sys
d, t = json.loads(sys.argv[1]), int(sys.argv[2])
runs = {r["threads"]: r for r in d["runs"]}
print(runs[t]["coffer_ms"], runs[t]["floor_ms"], runs[1]["coffer_ms"], runs[t]["parse_ms"])
EOF
)"

# ---------------------------------------------------------------- report
python3 - "$AGENTS" "$THREADS" "$FLOOR_MS" "$OSSL_MS" "$FLOOR1_MS" "$PARSE_MS" "$TARGET" \
	"${WALLS[*]}" "${CPUS[*]}" "${RSSES[*]}" "${SRVS[*]}" <<'EOF'
import statistics as st, sys
n, t = int(sys.argv[1]), int(sys.argv[2])
floor, ossl, floor1, parse, target = (float(x) for x in sys.argv[3:8])
walls, cpus, rss, srv = ([float(x) for x in a.split()] for a in sys.argv[8:12])
wall = st.median(walls) * 1000
print()
print("bench/fanout-server: coffer put --to group:web, %d agents, --threads %d" % (n, t))
print("  put, end to end (wall, median of %d)   %9.1f ms  (%s)" % (len(walls), wall, ", ".join("%.0f" % (w * 1000) for w in walls)))
print("  put CPU time (user + sys)              %9.1f ms" % (st.median(cpus) * 1000))
print("  server CPU time during the put         %9.1f ms" % (st.median(srv) * 1000))
print("  put peak RSS                           %9.1f MiB" % (max(rss) / 1024))
print("  floor: verify + seal, %d thread(s)     %9.1f ms  (1 thread: %.1f ms)" % (t, floor, floor1))
print("  OpenSSL arithmetic, %d thread(s)        %9.1f ms" % (t, ossl))
print("  parsing the certificates, %d thread(s)  %9.1f ms  (d2i_X509; not in the floor)" % (t, parse))
r = wall / floor
print("  ratio put / floor                      %9.2f   target <= %.1f: %s" % (r, target, "PASS" if r <= target else "FAIL"))
print("  ratio put / (floor + parsing)          %9.2f" % (wall / (floor + parse)))
print("  ratio put / OpenSSL arithmetic         %9.2f" % (wall / ossl))
EOF
