#!/bin/sh
# run.sh BUILD_DIR SECONDS - run every fuzz target of a COFFER_FUZZ build.
#
# Builds nothing.  Generates fresh seeds with BUILD_DIR/tests/fuzz/make_seeds,
# then runs each target for SECONDS (-max_total_time) in turn, keeping its
# growing corpus between runs.  Everything goes under BUILD_DIR/fuzz-run/
# (or $FUZZ_RUN_DIR, so that two runs can share a build):
#   seeds/TARGET    the generated seeds (rewritten on every run)
#   corpus/TARGET   the corpus libFuzzer grows (kept)
#   crashes/TARGET  crash-*, leak-*, timeout-*, oom-* reproducers
#   TARGET.log      the full libFuzzer output
# Exits 1 if any target crashed, leaked, timed out or ran out of memory
# (each such input is listed), 2 on a usage or setup error.
#
# Environment: FUZZ_TARGETS (default: all ten, see below) picks
# targets; COFFER_FUZZ_SECMEM=1 fuzzes with OpenSSL's secure heap (fixture.h).
# To reproduce a finding: BUILD_DIR/tests/fuzz/fuzz_TARGET FILE
set -u

usage() {
	echo "usage: run.sh BUILD_DIR SECONDS" >&2
	exit 2
}
[ $# -eq 2 ] || usage
build=$1
seconds=$2
case $seconds in '' | *[!0-9]*) usage ;; esac
bin=$build/tests/fuzz
here=$(cd "$(dirname "$0")" && pwd)
targets=${FUZZ_TARGETS:-envelope cert record perms token csr audit b64 command agent_config template ack cluster}
out=${FUZZ_RUN_DIR:-$build/fuzz-run}

for t in $targets; do
	if [ ! -x "$bin/fuzz_$t" ]; then
		echo "run.sh: $bin/fuzz_$t is missing; configure with" \
			"-DCOFFER_FUZZ=ON -DCMAKE_C_COMPILER=clang and build" >&2
		exit 2
	fi
done
[ -x "$bin/make_seeds" ] || { echo "run.sh: $bin/make_seeds is missing" >&2; exit 2; }

rm -rf "$out/seeds"
mkdir -p "$out/seeds" || exit 2
touch "$out/seeds"
"$bin/make_seeds" "$out/seeds" || { echo "run.sh: make_seeds failed" >&2; exit 2; }

# UBSan reports are fatal, as in the sanitizer build (the fuzz flags leave
# recovery on); leaks are findings too.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

# Longest input per target: about twice its largest seed, far below the
# parsers' own limits, which only decide a length check the seeds cover.
max_len() {
	case $1 in
	envelope) echo 8192 ;;
	cert) echo 16384 ;;
	record) echo 4096 ;;
	perms) echo 4096 ;;
	token) echo 8192 ;;
	csr) echo 4096 ;;
	audit) echo 16384 ;;
	b64) echo 4096 ;;
	agent_config) echo 8192 ;;
	template) echo 8192 ;;
	command) echo 4096 ;;
	ack) echo 4096 ;;
	cluster) echo 8192 ;;
	esac
}

status=0
for t in $targets; do
	mkdir -p "$out/corpus/$t" "$out/crashes/$t" || exit 2
	dict=
	[ -f "$here/$t.dict" ] && dict=-dict=$here/$t.dict
	echo "== fuzz_$t for ${seconds}s (log: $out/$t.log)"
	# shellcheck disable=SC2086 # $dict is one word or none
	"$bin/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 \
		-max_len="$(max_len "$t")" -timeout=10 -print_final_stats=1 \
		$dict \
		-artifact_prefix="$out/crashes/$t/" \
		"$out/corpus/$t" "$out/seeds/$t" >"$out/$t.log" 2>&1
	rc=$?
	grep -E '^(stat::|#[0-9]+ +DONE)' "$out/$t.log" | tail -n 8
	# Only this run's findings: older ones stay for reproduction.
	found=$(find "$out/crashes/$t" -type f -newer "$out/seeds" 2>/dev/null)
	if [ $rc -ne 0 ] || [ -n "$found" ]; then
		echo "!! fuzz_$t failed (exit $rc):"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$out/$t.log" | head -n 5
		for f in $found; do echo "   $f"; done
		status=1
	fi
done
exit $status
