#!/usr/bin/env bash
#
# pgtest.sh - runs one command against a private, throwaway PostgreSQL.
#
# usage: pgtest.sh COMMAND [ARGS...]
#        pgtest.sh ctl stop|start|restart     (from inside COMMAND only)
#
# Makes a cluster with initdb in a fresh temp dir, starts it with pg_ctl on
# a free port of 127.0.0.1 (its unix socket in the temp dir), creates the
# role and database "coffer" (scram-sha-256 with a random password over
# TCP, trust over the private socket), then runs COMMAND with
#   COFFER_TEST_STORE_URL  postgresql://coffer:PASSWORD@127.0.0.1:PORT/coffer
#   PGTEST_URL             the same without the password, which is in
#   PGTEST_PASSWORD        (for PGPASSWORD: a command line never holds it)
#   COFFER_TEST_PG_CTL     this script (`$COFFER_TEST_PG_CTL ctl restart`)
#   PGTEST_DIR             the temp dir (data/, sock/, log)
# and finally stops the server BY ITS PID and removes the temp dir, whatever
# happened: COMMAND failing, timing out (PGTEST_TIMEOUT seconds, default
# 100, below ctest's limit), or this script being signalled.  A watchdog in
# its own session also stops the server if this script is SIGKILLed.
#
# PGTEST_STAT_STATEMENTS=1 (opt-in, for bench/store.sh) also loads
# pg_stat_statements (shared_preload_libraries, every statement tracked)
# and creates the extension in the database "coffer", so that a caller
# can count the statements a server sends.  Unset: nothing of it.
#
# initdb and postgres refuse to run as root: as root they run as nobody
# (setpriv), the temp dir being theirs.  The binaries are found with
# pg_config --bindir, /usr/lib/postgresql/*/bin or PGTEST_BINDIR (Debian:
# the postgresql package).  Exit status: COMMAND's, or 1 (with a message)
# if PostgreSQL could not be set up.
set -euo pipefail

say() { echo "pgtest: $*" >&2; }
die() { say "$*"; exit 1; }

bindir()
{
	local d
	if [ -n "${PGTEST_BINDIR:-}" ]; then
		echo "$PGTEST_BINDIR"
		return
	fi
	d=$(pg_config --bindir 2>/dev/null || true)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		echo "$d"
		return
	fi
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
	if [ ! -x "$d/initdb" ]; then
		die "no PostgreSQL server binaries (initdb); install the Debian package postgresql"
	fi
	echo "$d"
}

# as_pg CMD...: CMD as the user that owns the cluster, in the temp dir
# (the caller's directory may be closed to that user).
as_pg()
{
	(
		cd "$PGTEST_DIR"
		if [ "$(id -u)" -eq 0 ]; then
			exec setpriv --reuid=65534 --regid=65534 --clear-groups -- \
				env HOME="$PGTEST_DIR" "$@"
		fi
		exec "$@"
	)
}

# The postmaster's PID, from its lock file ("" if it is not running).
pg_pid()
{
	local pid
	pid=$(head -1 "$PGTEST_DIR/data/postmaster.pid" 2>/dev/null || true)
	case "$pid" in
	'' | *[!0-9]*) return 0 ;;
	esac
	kill -0 "$pid" 2>/dev/null && echo "$pid"
	return 0
}

# Stops the server by PID: fast shutdown, then immediate, then SIGKILL.
pg_stop_pid()
{
	local pid sig
	pid=$(pg_pid)
	[ -n "$pid" ] || return 0
	for sig in INT QUIT KILL; do
		kill "-$sig" "$pid" 2>/dev/null || return 0
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || return 0
			sleep 0.1
		done
	done
}

pg_start()
{
	as_pg "$BIN/pg_ctl" -D "$PGTEST_DIR/data" -l "$PGTEST_DIR/log" -w -t 30 \
		start >/dev/null ||
		{ tail -20 "$PGTEST_DIR/log" >&2 || true; return 1; }
}

# ---- pgtest.sh ctl ... (inside COMMAND) ----------------------------------
if [ "${1:-}" = ctl ]; then
	[ -n "${PGTEST_DIR:-}" ] && [ -d "$PGTEST_DIR/data" ] ||
		die "ctl: PGTEST_DIR is not a pgtest cluster"
	BIN=$(bindir)
	case "${2:-}" in
	stop) as_pg "$BIN/pg_ctl" -D "$PGTEST_DIR/data" -m fast -w -t 30 stop >/dev/null ;;
	start) pg_start ;;
	restart)
		as_pg "$BIN/pg_ctl" -D "$PGTEST_DIR/data" -m fast -w -t 30 stop >/dev/null
		pg_start
		;;
	*) die "ctl: stop, start or restart" ;;
	esac
	exit 0
fi

[ $# -ge 1 ] || die "usage: pgtest.sh COMMAND [ARGS...]"
BIN=$(bindir)
for tool in setpriv python3 timeout; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done

PGTEST_DIR=$(mktemp -d "/tmp/coffer-pg.XXXXXX")
export PGTEST_DIR
WATCHDOG=""
cleanup()
{
	local rc=$?
	pg_stop_pid
	[ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null || true
	rm -rf -- "$PGTEST_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" -ne 0 ] || chown 65534:65534 "$PGTEST_DIR"
chmod 700 "$PGTEST_DIR"
as_pg test -w "$PGTEST_DIR" ||
	die "$PGTEST_DIR is not writable by the cluster's user (nobody)"

# A password the URL carries (tests check it is never printed).
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
printf '%s\n' "$PASSWORD" >"$PGTEST_DIR/pw"
[ "$(id -u)" -ne 0 ] || chown 65534:65534 "$PGTEST_DIR/pw"
as_pg "$BIN/initdb" -D "$PGTEST_DIR/data" -U coffer --pwfile="$PGTEST_DIR/pw" \
	--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C \
	--no-sync >"$PGTEST_DIR/initdb.log" 2>&1 ||
	{ cat "$PGTEST_DIR/initdb.log" >&2; die "initdb failed"; }
rm -f "$PGTEST_DIR/pw"
as_pg mkdir -m 700 "$PGTEST_DIR/sock"

free_port()
{
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# A free port can be taken between the probe and the start: try again.
started=""
for attempt in 1 2 3; do
	PORT=$(free_port)
	# Settings for a throwaway cluster: nothing here must survive a
	# power loss, so no fsync.  Later lines of postgresql.conf win.
	as_pg tee -a "$PGTEST_DIR/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$PGTEST_DIR/sock'
fsync = off
full_page_writes = off
max_connections = 100
log_min_messages = warning
EOF
	if [ "${PGTEST_STAT_STATEMENTS:-0}" = 1 ]; then
		as_pg tee -a "$PGTEST_DIR/data/postgresql.conf" >/dev/null <<EOF
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_utility = on
EOF
	fi
	if pg_start; then
		started=1
		break
	fi
	say "start on port $PORT failed (attempt $attempt)"
done
[ -n "$started" ] || die "PostgreSQL did not start"

# Stops the server should this script die without running its trap.
WATCHDOG_SCRIPT='
while kill -0 "$1" 2>/dev/null; do sleep 1; done
pid=$(head -1 "$2/data/postmaster.pid" 2>/dev/null || true)
case "$pid" in ""|*[!0-9]*) ;; *)
	if grep -qF "$2" "/proc/$pid/cmdline" 2>/dev/null; then
		kill -QUIT "$pid" 2>/dev/null; sleep 2; kill -KILL "$pid" 2>/dev/null
	fi ;;
esac
rm -rf -- "$2"'
setsid bash -c "$WATCHDOG_SCRIPT" pgtest-watchdog "$$" "$PGTEST_DIR" \
	</dev/null >/dev/null 2>&1 &
WATCHDOG=$!

as_pg "$BIN/createdb" -h "$PGTEST_DIR/sock" -p "$PORT" -U coffer coffer ||
	die "createdb failed"
if [ "${PGTEST_STAT_STATEMENTS:-0}" = 1 ]; then
	as_pg "$BIN/psql" -X -q -h "$PGTEST_DIR/sock" -p "$PORT" -U coffer \
		-c 'CREATE EXTENSION pg_stat_statements' coffer ||
		die "cannot create the extension pg_stat_statements"
fi

export COFFER_TEST_STORE_URL="postgresql://coffer:$PASSWORD@127.0.0.1:$PORT/coffer"
export PGTEST_URL="postgresql://coffer@127.0.0.1:$PORT/coffer"
export PGTEST_PASSWORD=$PASSWORD
export COFFER_TEST_PG_CTL
COFFER_TEST_PG_CTL=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
export PGTEST_PORT=$PORT PGTEST_SOCKET=$PGTEST_DIR/sock

rc=0
timeout -k 5 "${PGTEST_TIMEOUT:-100}" "$@" || rc=$?
[ "$rc" -ne 124 ] || say "the command timed out after ${PGTEST_TIMEOUT:-100} s: $*"
exit "$rc"
