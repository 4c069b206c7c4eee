# shellcheck shell=bash
#
# lib.sh - shared helpers for the end-to-end scenarios.  Sourced by every
# tests/e2e/*.sh script, which ctest runs with COFFER set to the binary
# under test.
#
# What it guarantees to a scenario:
#   - `set -euo pipefail`, standard input from /dev/null (so nothing can
#     wait on a terminal), no COFFER_PASSPHRASE inherited from the caller;
#   - a private work directory $W, removed on exit whatever happens;
#   - coffer, openssl, certtool and python3 wrapped in `timeout`, so no
#     single command can hang the suite (plain file utilities on regular
#     files cannot block and are left alone);
#   - helpers to build a PKI (mk_ca, mk_cert, ...) and to assert on
#     outcomes (expect_ok, expect_exit, expect_refusal, ...).
# The independent implementations, openssl and GnuTLS certtool, are
# always called directly, never through coffer.

set -euo pipefail
exec </dev/null
unset COFFER_PASSPHRASE

: "${COFFER:?set COFFER to the path of the coffer binary}"
[ -x "$COFFER" ] || { echo "FAIL: COFFER=$COFFER is not executable" >&2; exit 1; }
case "$COFFER" in /*) ;; *) COFFER="$PWD/$COFFER" ;; esac

E2E_NAME=$(basename "$0" .sh)
for tool in timeout openssl certtool python3 awk cmp sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "FAIL [$E2E_NAME]: $tool is not installed (certtool: Debian" \
			"package gnutls-bin)" >&2
		exit 1
	}
done
# One command may take this long; the sanitizer build is the slow one.
E2E_CMD_TIMEOUT=${E2E_CMD_TIMEOUT:-30}
# The secret's size limit (CF_SECRET_MAX_BYTES).
# shellcheck disable=SC2034  # used by the scenarios
MIB=1048576

W=$(mktemp -d "${TMPDIR:-/tmp}/coffer-e2e-$E2E_NAME.XXXXXX")
FAILED=""
cleanup()
{
	local rc=$?
	# `set -e` stopped the script outside any assertion: say where.
	if [ "$rc" -ne 0 ] && [ -z "$FAILED" ]; then
		echo "FAIL [$E2E_NAME${STEP:+: $STEP}]: a command failed (exit $rc);" \
			"run it with bash -x for details" >&2
	fi
	rm -rf -- "$W"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$W"

OUT=$W/.out  # stdout of the last expect_* command
ERR=$W/.err  # its stderr

# ---- bounded commands ---------------------------------------------------

coffer()   { timeout -k 5 "$E2E_CMD_TIMEOUT" "$COFFER" "$@"; }
openssl()  { timeout -k 5 "$E2E_CMD_TIMEOUT" openssl "$@"; }
certtool() { timeout -k 5 "$E2E_CMD_TIMEOUT" certtool "$@"; }
python3()  { timeout -k 5 "$E2E_CMD_TIMEOUT" python3 -I -S "$@"; }

# ---- reporting ----------------------------------------------------------

STEP=""
step() { STEP=$*; echo "--- $E2E_NAME: $STEP"; }

fail()
{
	FAILED=1
	echo "FAIL [$E2E_NAME${STEP:+: $STEP}]: $*" >&2
	if [ -s "$OUT" ]; then
		echo "  last stdout (head):" >&2
		head -c 2000 "$OUT" | sed 's/^/    /' >&2
		echo >&2
	fi
	if [ -s "$ERR" ]; then
		echo "  last stderr (head):" >&2
		head -c 2000 "$ERR" | sed 's/^/    /' >&2
		echo >&2
	fi
	exit 1
}

pass() { echo "PASS: $E2E_NAME"; }

# ---- assertions ---------------------------------------------------------

# run_capture CMD...: run CMD with stdout to $OUT and stderr to $ERR; sets RC.
run_capture()
{
	set +e
	"$@" >"$OUT" 2>"$ERR"
	RC=$?
	set -e
}

# expect_ok CMD...: CMD must exit 0.
expect_ok()
{
	run_capture "$@"
	[ "$RC" -eq 0 ] || fail "expected success, got exit $RC from: $*"
}

# expect_exit CODE CMD...: CMD must exit with CODE; when CODE is not 0 it
# must also print nothing on stdout.
expect_exit()
{
	local want=$1
	shift
	run_capture "$@"
	[ "$RC" -eq "$want" ] || fail "expected exit $want, got $RC from: $*"
	if [ "$want" -ne 0 ] && [ -s "$OUT" ]; then
		fail "exit $want but stdout is not empty ($(wc -c <"$OUT") bytes) from: $*"
	fi
}

# expect_refusal CODE CMD...: as expect_exit, and stderr must be exactly
# one line starting "coffer: " (the one sentence of STYLE.md, "Errors").
expect_refusal()
{
	expect_exit "$@"
	local lines
	lines=$(wc -l <"$ERR")
	[ "$lines" -eq 1 ] || fail "refusal printed $lines lines on stderr, want 1"
	grep -q '^coffer: .' "$ERR" || fail "refusal message does not start with 'coffer: '"
}

# expect_fail CMD...: CMD (an independent tool) must fail.
expect_fail()
{
	run_capture "$@"
	[ "$RC" -ne 0 ] || fail "expected failure, got success from: $*"
	[ "$RC" -lt 124 ] || fail "timed out or killed (exit $RC): $*"
}

# stderr_has TEXT: the last command's stderr contains TEXT (fixed string).
stderr_has()
{
	grep -qF -- "$1" "$ERR" || fail "stderr does not mention \"$1\""
}

# same_file A B: byte-for-byte equal.
same_file() { cmp -s -- "$1" "$2" || fail "$1 and $2 differ"; }

# assert_eq GOT WANT WHAT
assert_eq()
{
	[ "$1" = "$2" ] || fail "$3: got \"$1\", want \"$2\""
}

# assert_absent PATH...: none of them exists.
assert_absent()
{
	local p
	for p in "$@"; do
		[ ! -e "$p" ] || fail "$p exists but should not have been written"
	done
}

# dir_empty DIR: DIR is missing or has no entries at all.
dir_empty()
{
	[ ! -d "$1" ] || [ -z "$(ls -A -- "$1")" ] || fail "$1 is not empty: $(ls -A -- "$1")"
}

# ---- PKI ----------------------------------------------------------------

PASS_FILE=$W/pass
printf 'correct horse battery staple\n' >"$PASS_FILE"
WRONG_PASS_FILE=$W/wrong-pass
printf 'incorrect horse\n' >"$WRONG_PASS_FILE"

# mk_ca DIR NAME: a root CA whose key is encrypted with $PASS_FILE.
mk_ca()
{
	expect_ok coffer ca init --name "$2" --dir "$1" --pass-file "$PASS_FILE"
	if [ ! -s "$1/root.crt" ] || [ ! -s "$1/root.key" ]; then
		fail "ca init wrote no root in $1"
	fi
}

# mk_key NAME [--pass-file F]: NAME.key (unencrypted unless a pass file
# is given) and NAME.csr with CN NAME.
mk_key()
{
	local name=$1
	shift
	if [ $# -eq 0 ]; then
		expect_ok coffer key new --out "$W/$name.key" --no-passphrase
	else
		expect_ok coffer key new --out "$W/$name.key" "$@"
	fi
	expect_ok coffer csr new --key "$W/$name.key" --name "$name" \
		--out "$W/$name.csr" "$@"
}

# issuer_args ISSUER: the `cert issue` options for ISSUER, a CA directory
# (its key decrypted with $PASS_FILE) or the NAME of an enroller made here.
issuer_args()
{
	if [ -d "$1" ]; then
		ISSUER_ARGS=(--ca "$1" --pass-file "$PASS_FILE")
	else
		ISSUER_ARGS=(--issuer-cert "$W/$1.crt" --issuer-key "$W/$1.key")
	fi
}

# mk_cert NAME KIND ISSUER [cert issue options...]: key, CSR and NAME.crt.
mk_cert()
{
	local name=$1 kind=$2 issuer=$3
	shift 3
	mk_key "$name"
	issuer_args "$issuer"
	expect_ok coffer cert issue "${ISSUER_ARGS[@]}" --csr "$W/$name.csr" \
		--out "$W/$name.crt" --kind "$kind" "$@"
	[ -s "$W/$name.crt" ] || fail "cert issue wrote no $name.crt"
}

# mk_operator NAME CA PERM...
mk_operator()
{
	local name=$1 ca=$2 p
	local args=()
	shift 2
	for p in "$@"; do args+=(--perm "$p"); done
	mk_cert "$name" operator "$ca" "${args[@]}"
}

# mk_agent NAME ISSUER GROUP...
mk_agent()
{
	local name=$1 issuer=$2 g
	local args=()
	shift 2
	for g in "$@"; do args+=(--group "$g"); done
	mk_cert "$name" agent "$issuer" "${args[@]}"
}

# fingerprint CERT: hex SHA-256 of the DER of CERT's first certificate,
# computed by openssl, not by coffer.
fingerprint()
{
	openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1
}

# json_assert FILE EXPR WANT [EXPR WANT]...: FILE is JSON, and each python
# expression EXPR over its document d prints as WANT (a string as itself,
# anything else as JSON: true, null, ["a", "b"]).
# One python run for all of them (python3 starts slowly here).
json_assert()
{
	local file=$1
	shift
	python3 -c 'import json,sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit("%s is not JSON: %s" % (sys.argv[1], e))
bad = 0
for expr, want in zip(sys.argv[2::2], sys.argv[3::2]):
    try:
        v = eval(expr, {"d": d, "len": len})
        got = v if isinstance(v, str) else json.dumps(v)
    except Exception as e:
        got = "<%s: %s>" % (type(e).__name__, e)
    if got != want:
        print("  %s: got %s, want %s" % (expr, got, want), file=sys.stderr)
        bad = 1
sys.exit(bad)' "$file" "$@" || fail "unexpected values in $file"
}

# ---- DER surgery ----------------------------------------------------------

# flip_byte FILE OFFSET: XOR the byte at OFFSET with 0x01, in place.
flip_byte()
{
	python3 -c 'import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
if not 0 <= off < len(b):
    sys.exit("offset %d outside %s (%d bytes)" % (off, p, len(b)))
b[off] ^= 1
open(p, "wb").write(bytes(b))' "$1" "$2" || fail "cannot flip byte $2 of $1"
}

# asn1_find FILE DEPTH_MIN KIND LENGTH: the content offset (header offset +
# header length) of the first element found by `openssl asn1parse` whose
# depth is at least DEPTH_MIN, whose description contains KIND (e.g.
# "OCTET STRING", "cont [ 0 ]") and whose length is LENGTH ("-" for any).
# Element lines look like: "  209:d=7  hl=2 l=  40 prim: OCTET STRING ...".
asn1_find()
{
	local file=$1 dmin=$2 kind=$3 len=$4 off
	openssl asn1parse -inform DER -in "$file" >"$W/.asn1" ||
		fail "openssl asn1parse cannot read $file"
	off=$(awk -v dmin="$dmin" -v kind="$kind" -v want="$len" '
		{
			if (!match($0, /^ *[0-9]+:d=[0-9]+ +hl= *[0-9]+ +l= *[0-9]+/))
				next
			head = substr($0, 1, RLENGTH)
			desc = substr($0, RLENGTH + 1)
			gsub(/[:=]/, " ", head)
			split(head, f, " ")  # f: off "d" depth "hl" hl "l" len
			if (f[3] + 0 < dmin + 0 || index(desc, kind) == 0)
				next
			if (want != "-" && f[7] + 0 != want + 0)
				next
			print f[1] + f[5]
			exit
		}' "$W/.asn1")
	[ -n "$off" ] || fail "no $kind (depth >= $dmin, length $len) in $file"
	echo "$off"
}

# asn1_last FILE KIND: the content offset and length of the last element
# whose description contains KIND, as "OFFSET LENGTH".
asn1_last()
{
	openssl asn1parse -inform DER -in "$1" >"$W/.asn1" ||
		fail "openssl asn1parse cannot read $1"
	awk -v kind="$2" '
		match($0, /^ *[0-9]+:d=[0-9]+ +hl= *[0-9]+ +l= *[0-9]+/) {
			head = substr($0, 1, RLENGTH)
			desc = substr($0, RLENGTH + 1)
			gsub(/[:=]/, " ", head)
			split(head, f, " ")
			if (index(desc, kind)) res = (f[1] + f[5]) " " f[7]
		}
		END { if (res == "") exit 1; print res }' "$W/.asn1" ||
		fail "no $2 in $1"
}

# ---- records built without coffer -------------------------------------------

# make_record OUT TENANT NAME VERSION VALUE_FILE [TYPE]: a record JSON
# (docs/FORMAT.md field names) written by python3, not by coffer.
make_record()
{
	python3 -c 'import base64, json, sys, time
out, tenant, name, version, vfile = sys.argv[1:6]
typ = sys.argv[6] if len(sys.argv) > 6 else "text"
rec = {"v": 1, "tenant": tenant, "name": name, "version": int(version),
       "created": int(time.time()), "type": typ,
       "value": base64.b64encode(open(vfile, "rb").read()).decode()}
open(out, "w").write(json.dumps(rec, separators=(",", ":")))' "$@" ||
		fail "cannot write the record $1"
}

RECORD_OID=2.25.2512399633766132092.4

# ossl_sign REC_JSON SIGNER_NAME OUT: CMS SignedData (DER) over the record,
# made by openssl alone.
ossl_sign()
{
	openssl cms -sign -binary -nodetach -econtent_type "$RECORD_OID" \
		-md sha256 -outform DER -signer "$W/$2.crt" -inkey "$W/$2.key" \
		-in "$1" -out "$3" || fail "openssl cms -sign failed"
}

# ossl_encrypt SIGNED_DER RECIPIENT_CRT OUT [CIPHER]: an envelope made by
# openssl alone (AES-256-GCM AuthEnvelopedData unless CIPHER says else).
ossl_encrypt()
{
	openssl cms -encrypt "-${4:-aes-256-gcm}" -binary -inform DER \
		-outform DER -recip "$2" -in "$1" -out "$3" ||
		fail "openssl cms -encrypt failed"
}

# ------------------------------------------------------------ a server
# For the scenarios that run a real coffer server on 127.0.0.1.

# as WHO ARGS...: coffer with WHO's certificate and key ($W/WHO.crt, .key).
as()
{
	local who=$1
	shift
	coffer "$@" --cert "$W/$who.crt" --key "$W/$who.key"
}

# wait_file FILE CONTENT SECONDS LOG: until FILE holds exactly CONTENT
# (an agent's sink); on failure the message shows the end of LOG.
wait_file()
{
	local i
	for i in $(seq 1 $(($3 * 10))); do
		[ "$(cat "$1" 2>/dev/null)" = "$2" ] && return 0
		sleep 0.1
	done
	fail "$1 does not hold \"$2\" after $3 s (holds \"$(cat "$1" 2>/dev/null)\"); log: $(tail -5 "$4")"
}

# count_lines FILE: lines in FILE (0 when missing).
count_lines() { [ -e "$1" ] && wc -l <"$1" || echo 0; }

# run_agent STATE_DIR CONFIG LOG: `coffer agent run` in the background at
# debug level, its PID in AGENT_PID; agent_stop: SIGTERM, which must end
# it with status 0.
AGENT_PID=""
run_agent()
{
	"$COFFER" agent run --state-dir "$1" --config "$2" \
		--log-level debug 2>>"$3" &
	AGENT_PID=$!
}

agent_stop()
{
	kill -TERM "$AGENT_PID"
	local rc=0
	wait "$AGENT_PID" || rc=$?
	AGENT_PID=""
	assert_eq "$rc" 0 "agent exit status after SIGTERM"
}

SRV_PID=""

# srv_start DIR LOG [RUN_OPTIONS...]: `coffer server run --dir DIR` on
# 127.0.0.1, on port $SRV_PORT if set (a restart keeps its clients'
# settings valid), else an ephemeral one, its stderr appended to LOG; waits
# for DIR/port.  Sets SRV_PID, SRV_PORT and SRV_URL.
srv_start()
{
	local dir=$1 log=$2
	shift 2
	rm -f "$dir/port"
	"$COFFER" server run --dir "$dir" --listen "127.0.0.1:${SRV_PORT:-0}" \
		--port-file "$dir/port" "$@" 2>>"$log" &
	SRV_PID=$!
	for _ in $(seq 1 100); do
		[ -s "$dir/port" ] && break
		kill -0 "$SRV_PID" 2>/dev/null ||
			fail "the server exited at start: $(tail -5 "$log")"
		sleep 0.1
	done
	[ -s "$dir/port" ] || fail "the server wrote no port file in 10 s"
	SRV_PORT=$(cat "$dir/port")
	SRV_URL=https://127.0.0.1:$SRV_PORT
}

# srv_stop [SIGNAL]: stops the server by its PID (SIGTERM unless told) and
# waits for it; nothing if none runs.  Returns the server's exit status.
srv_stop()
{
	local rc=0
	if [ -n "$SRV_PID" ]; then
		kill "-${1:-TERM}" "$SRV_PID" 2>/dev/null || true
		wait "$SRV_PID" 2>/dev/null || rc=$?
		SRV_PID=""
	fi
	return "$rc"
}

# ------------------------------------------------- a private PostgreSQL
# For the scripts that run under tests/pg/pgtest.sh (it sets PGTEST_*,
# starts PostgreSQL and stops it by PID).

# pg_setup: curl and psql wrapped in `timeout` (failing by name when
# missing), the password for libpq by its environment only, DB the URL.
pg_setup()
{
	local tool
	for tool in curl psql; do
		command -v "$tool" >/dev/null 2>&1 ||
			{ echo "FAIL [$E2E_NAME]: $tool is not installed" >&2; exit 1; }
	done
	CURL_BIN=$(command -v curl)
	PSQL_BIN=$(command -v psql)
	curl() { timeout -k 5 "$E2E_CMD_TIMEOUT" "$CURL_BIN" "$@"; }
	psql() { timeout -k 5 "$E2E_CMD_TIMEOUT" "$PSQL_BIN" -X -q -At "$@"; }
	export PGPASSWORD=$PGTEST_PASSWORD
	DB=$PGTEST_URL
}

# no_password FILE...: none of them holds the database password.
no_password()
{
	local f
	for f in "$@"; do
		[ -e "$f" ] || continue
		if grep -qaF -- "$PGTEST_PASSWORD" "$f"; then
			fail "$(basename "$f") shows the database password"
		fi
	done
}
