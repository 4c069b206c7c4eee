#!/usr/bin/env bash
#
# hostile.sh - the agent against a hostile server (issue 5, sections 4
# and 5).  A real server on 127.0.0.1 and two real agents: web-1 under
# `agent run`, web-2 synced with `agent once` (exit 32 when it refused
# something).  The test then plays the server's attacker by editing the
# server's SQLite database directly (python3's sqlite3, never coffer):
#
#   1. the feed serves an OLDER version of a secret as if it were new
#      (the feed row re-pointed at the old envelope with a fresh seq);
#   2. the envelopes of two secrets are swapped;
#   3. an envelope signed by an operator without secret.write on the name
#      is inserted, and one signed by an operator of another root;
#   4. the agent's certificate in the directory is replaced by one of
#      another root (same CN, same group): `put --to group:web` must
#      refuse that recipient by name instead of sealing to it;
#   5. an envelope of a revoked operator, for a higher version, after the
#      CRL was pushed;
#   6. after all of it a legit put still reaches the files, and no log
#      holds a secret value;
#   7. a reader looping on the sink file while 40 rotations land only
#      ever sees complete values.
# Each refusal must be logged with its reason, and leave the files (bytes,
# inode, mtime), the highest version seen and the reload count as they
# were.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

READER_PID=""
on_exit()
{
	local rc=$?
	[ -z "$READER_PID" ] || kill "$READER_PID" 2>/dev/null || true
	[ -z "$AGENT_PID" ] || kill "$AGENT_PID" 2>/dev/null || true
	srv_stop || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

A=prod/db/password
B=prod/api/token
LOG=$W/agent.log      # web-1's `agent run`
LOG2=$W/once.log      # every `agent once` of web-2, appended
DB=$W/srv/coffer.db

# put NAME VALUE: a new version of NAME for group web, as alice.
put()
{
	printf '%s' "$2" >"$W/value"
	expect_ok as alice put "$1" --to group:web --file "$W/value"
	rm -f "$W/value"
}

# wait_for FILE CONTENT [SECONDS]: until FILE holds exactly CONTENT.
wait_for() { wait_file "$1" "$2" "${3:-15}" "$LOG"; }

# log_mark: the current length of web-1's log, for log_since.
log_mark() { MARK=$(wc -l <"$LOG"); }

# wait_log_since TEXT [SECONDS]: web-1's log, after the last log_mark,
# gets a line containing TEXT.
wait_log_since()
{
	local i
	for i in $(seq 1 $((${2:-15} * 10))); do
		tail -n "+$((MARK + 1))" "$LOG" | grep -qF -- "$1" && return 0
		sleep 0.1
	done
	fail "the agent never logged \"$1\": $(tail -n "+$((MARK + 1))" "$LOG" | tail -5)"
}

# log_since_has TEXT...: one line of web-1's log after the mark holds
# every TEXT.
log_since_has()
{
	local lines
	lines=$(tail -n "+$((MARK + 1))" "$LOG")
	local t
	for t in "$@"; do
		lines=$(printf '%s\n' "$lines" | grep -F -- "$t" || true)
	done
	[ -n "$lines" ] || fail "no line of the agent's log holds all of: $*"
}

agent_start() { run_agent "$W/a1" "$W/a1.conf" "$LOG"; }

agent_alive() { kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent died: $(tail -5 "$LOG")"; }

# snap: everything a refusal must leave alone: each sink file's bytes,
# inode and mtime (ns), both reload counters, the versions in both state
# files.
snap()
{
	local f
	for f in "$W"/out1/db_password "$W"/out1/token "$W"/out2/db_password "$W"/out2/token; do
		printf '%s %s %s\n' "$f" "$(sha256sum <"$f" | cut -c1-16)" \
			"$(stat -c '%i %.9Y' "$f" 2>/dev/null || stat -c '%i %Y' "$f")"
	done
	printf 'reloads1 %s reloads2 %s\n' "$(count_lines "$W/reloads1")" \
		"$(count_lines "$W/reloads2")"
	python3 -c 'import json, sys
for p in sys.argv[1:]:
    d = json.load(open(p))["secrets"]
    print(p, sorted((k, v["version"]) for k, v in d.items()))' \
		"$W/a1/state.json" "$W/a2/state.json"
}

# unchanged BEFORE: snap is as BEFORE.
unchanged()
{
	local now
	now=$(snap)
	[ "$now" = "$1" ] || fail "a refusal changed something:
--- before
$1
--- after
$now"
}

# once_refuses TEXT...: web-2's `agent once` exits 32 (something was
# refused) and its stderr says TEXT.
once_refuses()
{
	local t
	expect_exit 32 coffer agent once --state-dir "$W/a2" --config "$W/a2.conf"
	cat "$ERR" >>"$LOG2"
	for t in "$@"; do stderr_has "$t"; done
	stderr_has "envelope(s) from the server were refused"
}

once_ok()
{
	expect_ok coffer agent once --state-dir "$W/a2" --config "$W/a2.conf"
	cat "$ERR" >>"$LOG2"
}

# ------------------------------------------------------------ the attacker's tool
# db OP ARGS...: one edit of the server's database, as a hostile server
# (or whoever owns its disk) would make it.  Recipients are certificate
# fingerprints (the feed's `recipient`).
cat >"$W/db.py" <<'PY'
import sqlite3, sys, time

db, op, args = sys.argv[1], sys.argv[2], sys.argv[3:]
con = sqlite3.connect(db, timeout=10, isolation_level=None)
con.execute("PRAGMA busy_timeout = 10000")
tenant = con.execute("SELECT id FROM tenants").fetchone()[0]

def feed_row(rcpt, name):
    r = con.execute("SELECT version, writer FROM feed WHERE tenant = ? AND "
                    "recipient = ? AND name = ?", (tenant, rcpt, name)).fetchone()
    if r is None:
        sys.exit("no feed row for %s / %s" % (rcpt, name))
    return r

def latest(name):
    """The newest real version of name and its writer."""
    r = con.execute("SELECT version, writer FROM versions WHERE tenant = ? "
                    "AND name = ? ORDER BY version DESC LIMIT 1",
                    (tenant, name)).fetchone()
    if r is None:
        sys.exit("no version of %s" % name)
    return r

def serve(rcpt, name, version, writer):
    """The feed row of (rcpt, name) re-made at `version` with a new seq:
    what the agent's next poll delivers as a fresh change."""
    con.execute("DELETE FROM feed WHERE tenant = ? AND recipient = ? AND "
                "name = ?", (tenant, rcpt, name))
    cur = con.execute("INSERT INTO feed (tenant, recipient, name, version, "
                      "deleted, writer, created) VALUES (?, ?, ?, ?, 0, ?, ?)",
                      (tenant, rcpt, name, version, writer, int(time.time())))
    return cur.lastrowid

def envelope(rcpt, name, version):
    r = con.execute("SELECT der FROM envelopes WHERE tenant = ? AND name = ? "
                    "AND recipient = ? AND version = ?",
                    (tenant, name, rcpt, version)).fetchone()
    if r is None:
        sys.exit("no envelope %s v%s for %s" % (name, version, rcpt))
    return r[0]

con.execute("BEGIN IMMEDIATE")
if op == "tenant":
    print(tenant)
elif op == "rollback":            # RCPT NAME OLD_VERSION
    rcpt, name, old = args[0], args[1], int(args[2])
    cur, writer = feed_row(rcpt, name)
    if old >= cur:
        sys.exit("version %d is not older than the served %d" % (old, cur))
    envelope(rcpt, name, old)      # it must exist: the real old envelope
    serve(rcpt, name, old, writer)
elif op == "swap":                 # RCPT NAME1 NAME2, at their latest versions
    rcpt, n1, n2 = args
    (v1, w1), (v2, w2) = latest(n1), latest(n2)
    d1, d2 = envelope(rcpt, n1, v1), envelope(rcpt, n2, v2)
    for name, ver, der in ((n1, v1, d2), (n2, v2, d1)):
        con.execute("UPDATE envelopes SET der = ? WHERE tenant = ? AND "
                    "name = ? AND recipient = ? AND version = ?",
                    (der, tenant, name, rcpt, ver))
    serve(rcpt, n1, v1, w1)
    serve(rcpt, n2, v2, w2)
elif op == "insert":               # RCPT NAME VERSION DER_FILE
    rcpt, name, ver, path = args[0], args[1], int(args[2]), args[3]
    der = open(path, "rb").read()
    seq = serve(rcpt, name, ver, "0" * 64)
    con.execute("DELETE FROM envelopes WHERE tenant = ? AND name = ? AND "
                "recipient = ? AND version = ?", (tenant, name, rcpt, ver))
    con.execute("INSERT INTO envelopes (tenant, name, version, recipient, "
                "seq, der) VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, name, ver, rcpt, seq, der))
elif op == "get-cert":             # FP OUT: the directory's PEM of FP
    r = con.execute("SELECT pem FROM certs WHERE tenant = ? AND fp = ?",
                    (tenant, args[0])).fetchone()
    if r is None:
        sys.exit("no certificate %s in the directory" % args[0])
    open(args[1], "w").write(r[0])
elif op == "set-cert":             # FP PEM_FILE: the directory now serves it
    n = con.execute("UPDATE certs SET pem = ? WHERE tenant = ? AND fp = ?",
                    (open(args[1]).read(), tenant, args[0])).rowcount
    if n != 1:
        sys.exit("no certificate %s in the directory" % args[0])
elif op == "max-version":          # NAME
    print(con.execute("SELECT COALESCE(MAX(version), 0) FROM versions WHERE "
                      "tenant = ? AND name = ?", (tenant, args[0])).fetchone()[0])
else:
    sys.exit("unknown op " + op)
con.execute("COMMIT")
PY
db() { python3 "$W/db.py" "$DB" "$@" || fail "db $*: the database edit failed"; }

# tamper OP ARGS...: the same edit in both agents' feeds (web-1, web-2).
tamper()
{
	local op=$1
	shift
	db "$op" "$FP1" "$@"
	db "$op" "$FP2" "$@"
}

# forge SIGNER NAME VERSION VALUE: SIGNER's record, signed and encrypted
# by openssl alone (no coffer check on the way), one envelope per agent
# in $W/forged-1.cms and $W/forged-2.cms.
forge()
{
	printf '%s' "$4" >"$W/forged.value"
	make_record "$W/forged.json" "$TENANT" "$2" "$3" "$W/forged.value"
	rm -f "$W/forged.value"
	ossl_sign "$W/forged.json" "$1" "$W/forged.signed"
	ossl_encrypt "$W/forged.signed" "$W/a1/agent.crt" "$W/forged-1.cms"
	ossl_encrypt "$W/forged.signed" "$W/a2/agent.crt" "$W/forged-2.cms"
	rm -f "$W/forged.json" "$W/forged.signed"
}

# insert_forged NAME VERSION: the forged envelopes into both feeds.
insert_forged()
{
	db insert "$FP1" "$1" "$2" "$W/forged-1.cms"
	db insert "$FP2" "$1" "$2" "$W/forged-2.cms"
}

# ------------------------------------------------------------ PKI, server
step "PKI and server"
mk_ca "$W/ca" Acme
mk_operator alice "$W/ca" 'secret.write:prod/**' 'secret.read:prod/**'
mk_operator mallory "$W/ca" 'secret.write:other/**'
mk_operator carol "$W/ca" 'secret.write:prod/**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
# another organisation: an operator with the same rights, and an agent
# certificate named like ours, in our group
mk_ca "$W/evil" Evil
mk_operator eve "$W/evil" 'secret.write:prod/**'
expect_ok coffer key new --out "$W/evil-web-1.key" --no-passphrase
expect_ok coffer csr new --key "$W/evil-web-1.key" --name web-1 --out "$W/evil-web-1.csr"
expect_ok coffer cert issue --ca "$W/evil" --pass-file "$PASS_FILE" \
	--csr "$W/evil-web-1.csr" --out "$W/evil-web-1.crt" --kind agent --group web
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log"
export COFFER_SERVER=$SRV_URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
[ -s "$DB" ] || fail "the server has no database at $DB"

step "two agents join with tokens"
expect_ok as bob token create --group web --count 2 --ttl 1h
sed -n 1p "$OUT" >"$W/t1"
sed -n 2p "$OUT" >"$W/t2"
for n in 1 2; do
	expect_ok coffer agent join --server "$SRV_URL" --server-ca "$W/srv/server.crt" \
		--token-file "$W/t$n" --name "web-$n" --state-dir "$W/a$n" --root "$W/ca/root.crt"
done
expect_ok as bob agent approve --all
for n in 1 2; do
	expect_ok coffer agent join --state-dir "$W/a$n" --wait 10 --root "$W/ca/root.crt"
	[ -s "$W/a$n/agent.crt" ] || fail "join left no agent.crt in a$n"
done
FP1=$(fingerprint "$W/a1/agent.crt")
FP2=$(fingerprint "$W/a2/agent.crt")
TENANT=$(db tenant)
assert_eq "$TENANT" "$(fingerprint "$W/ca/root.crt")" "the tenant id"

step "two versions of two secrets"
put "$A" pw-1
put "$B" tok-1
put "$A" pw-2
put "$B" tok-2

mkdir -p "$W/out1" "$W/out2"
for n in 1 2; do
	cat >"$W/a$n.conf" <<CONF
[server]
url = $SRV_URL

[agent]
wait = 1
reload_timeout = 10

[file $A]
path = $W/out$n/db_password
mode = 0400
reload = /bin/sh -c "echo db >>'$W/reloads$n'"

[file $B]
path = $W/out$n/token
mode = 0400
reload = /bin/sh -c "echo tok >>'$W/reloads$n'"
CONF
done

step "web-1 runs, web-2 syncs once: both hold version 2"
: >"$LOG"
agent_start
log_mark
wait_for "$W/out1/db_password" pw-2
wait_for "$W/out1/token" tok-2
once_ok
assert_eq "$(cat "$W/out2/db_password")" pw-2 "web-2's file"
assert_eq "$(cat "$W/out2/token")" tok-2 "web-2's file"
json_assert "$W/a1/state.json" "d['secrets']['$A']['version']" 2 \
	"d['secrets']['$B']['version']" 2
# both reload commands ran once on each agent
for _ in $(seq 1 50); do
	[ "$(count_lines "$W/reloads1")" -ge 2 ] && break
	sleep 0.1
done
sleep 0.3
assert_eq "$(count_lines "$W/reloads1")" 2 "web-1's reloads"
assert_eq "$(count_lines "$W/reloads2")" 2 "web-2's reloads"

step "control: an envelope inserted the same way, by a rightful writer, is taken"
# Proves the forging and inserting below reach the agents, so that each
# refusal is the agent's verdict and not a broken attack.
forge alice prod/control 1 control-value
log_mark
insert_forged prod/control 1
wait_log_since "accepted prod/control v1"
once_ok
json_assert "$W/a2/state.json" "d['secrets']['prod/control']['version']" 1

# ------------------------------------------------------------ 1. rollback
step "1. the feed serves version 1 again as a new change: rollback refused"
BEFORE=$(snap)
log_mark
tamper rollback "$A" 1
wait_log_since "refused $A from the server (version 1)"
log_since_has "refused $A from the server (version 1)" \
	"holds version 1 of \"$A\", below the minimum 2: refusing a rollback" \
	"keeping version 2"
once_refuses "refused $A from the server (version 1)" "refusing a rollback"
agent_alive
unchanged "$BEFORE"

# ------------------------------------------------------------ 2. swap
step "2. the envelopes of two secrets swapped: refused (name)"
log_mark
tamper swap "$A" "$B"
wait_log_since "refused $B from the server"
wait_log_since "refused $A from the server"
log_since_has "refused $A from the server (version 2)" \
	"the envelope holds secret \"$B\", not \"$A\": it was swapped"
log_since_has "refused $B from the server (version 2)" \
	"the envelope holds secret \"$A\", not \"$B\": it was swapped"
once_refuses "the envelope holds secret \"$B\", not \"$A\"" \
	"the envelope holds secret \"$A\", not \"$B\""
agent_alive
unchanged "$BEFORE"

# ------------------------------------------------------------ 3. no permission
step "3a. an operator without secret.write on the name: refused (permission)"
# coffer itself will not make it ...
printf 'evil-mallory' >"$W/value"
expect_refusal 18 coffer seal --name "$A" --version 99 --signer-cert "$W/mallory.crt" \
	--signer-key "$W/mallory.key" --tenant "$TENANT" --to "$W/a1/agent.crt" \
	--in "$W/value" --out "$W/mallory.cms"
rm -f "$W/value"
assert_absent "$W/mallory.cms"
# ... so openssl does
forge mallory "$A" 99 evil-mallory
log_mark
insert_forged "$A" 99
wait_log_since "refused $A from the server (version 99)"
log_since_has "refused $A from the server (version 99)" \
	"signer \"mallory\" does not hold secret.write on \"$A\"" "keeping version 2"
once_refuses "signer \"mallory\" does not hold secret.write on \"$A\""
agent_alive
unchanged "$BEFORE"

step "3b. an operator of another root: refused (untrusted)"
printf 'evil-eve' >"$W/value"
# `seal --tenant` checks nothing but secret.write, which eve holds
expect_ok coffer seal --name "$B" --version 99 --signer-cert "$W/eve.crt" \
	--signer-key "$W/eve.key" --tenant "$TENANT" --to "$W/a1/agent.crt" \
	--in "$W/value" --out "$W/forged-1.cms"
expect_ok coffer seal --name "$B" --version 99 --signer-cert "$W/eve.crt" \
	--signer-key "$W/eve.key" --tenant "$TENANT" --to "$W/a2/agent.crt" \
	--in "$W/value" --out "$W/forged-2.cms"
rm -f "$W/value"
log_mark
insert_forged "$B" 99
wait_log_since "refused $B from the server (version 99)"
log_since_has "refused $B from the server (version 99)" \
	"the record's signer (\"eve\") is not trusted by this organisation's root" \
	"keeping version 2"
once_refuses "(\"eve\") is not trusted by this organisation's root"
agent_alive
unchanged "$BEFORE"

# ------------------------------------------------------------ 4. directory
step "4. the directory serves another root's certificate as web-1: put refuses it"
db get-cert "$FP1" "$W/web-1.dir.pem"
assert_eq "$(fingerprint "$W/web-1.dir.pem")" "$FP1" "the directory's web-1"
db set-cert "$FP1" "$W/evil-web-1.crt"
V_BEFORE=$(db max-version "$A")
log_mark
printf 'pw-for-the-attacker' >"$W/value"
expect_refusal 16 as alice put "$A" --to group:web --file "$W/value"
stderr_has 'recipient "web-1" (group:web'
stderr_has "is not trusted by this organisation's root"
expect_refusal 16 as alice put "$A" --to agent:web-1 --file "$W/value"
stderr_has 'recipient "web-1" (agent:web-1'
rm -f "$W/value"
assert_eq "$(db max-version "$A")" "$V_BEFORE" "versions of $A after the refused puts"
# two feed rounds (wait = 1): nothing may arrive
sleep 2.5
agent_alive
once_ok
unchanged "$BEFORE"
db set-cert "$FP1" "$W/web-1.dir.pem"

# ------------------------------------------------------------ 5. revoked
step "5. a revoked operator's envelope of a higher version: refused (revoked)"
expect_ok coffer ca revoke --ca "$W/ca" --cert "$W/carol.crt" --pass-file "$PASS_FILE"
expect_ok as alice crl push "$W/ca/crl.pem"
# the running agent reads the CRL at start and every 300 s: restart it
agent_stop
log_mark
agent_start
wait_log_since "took the organisation's newer CRL"
wait_log_since "started:"
forge carol "$A" 100 evil-carol
log_mark
insert_forged "$A" 100
wait_log_since "refused $A from the server (version 100)"
log_since_has "refused $A from the server (version 100)" \
	"the record's signer (\"carol\") is revoked by the organisation's CRL" \
	"keeping version 2"
once_refuses "(\"carol\") is revoked by the organisation's CRL"
agent_alive
unchanged "$BEFORE"

# ------------------------------------------------------------ 6. still alive
step "6. a legit put still reaches both agents' files, one reload each"
log_mark
put "$A" pw-3
wait_for "$W/out1/db_password" pw-3
wait_log_since "accepted $A v3"
wait_log_since "reload exited 0"
once_ok
assert_eq "$(cat "$W/out2/db_password")" pw-3 "web-2's file after the legit put"
sleep 0.3
assert_eq "$(count_lines "$W/reloads1")" 3 "web-1's reloads"
assert_eq "$(count_lines "$W/reloads2")" 3 "web-2's reloads"
json_assert "$W/a1/state.json" "d['secrets']['$A']['version']" 3 \
	"d['secrets']['$B']['version']" 2
assert_eq "$(cat "$W/out1/token")" tok-2 "web-1's other file"

# ------------------------------------------------------------ 7. reader loop
step "7. a reader looping on the file during 40 rotations sees only whole values"
# 'v-NNN-' then 4000 x: a torn read shows as a shorter or mixed value
val() { printf 'v-%03d-%s' "$1" "$X4000"; }
X4000=$(printf '%4000s' '' | tr ' ' x)
put "$A" "$(val 0)"
wait_for "$W/out1/db_password" "$(val 0)"
# The file is written before its reload runs: wait for that reload, so
# that it is not counted as one of the rotations'.
for _ in $(seq 1 100); do
	[ "$(grep -c db "$W/reloads1")" -ge "$(grep -cF "wrote $W/out1/db_password" "$LOG")" ] && break
	sleep 0.1
done
RELOADS0=$(grep -c db "$W/reloads1")
log_mark
rm -f "$W/reader.out" "$W/reader.stop"
# unbounded by lib.sh's timeout on purpose: it has its own deadline
"$(type -P python3)" -I -S -c 'import re, sys, time
path, stop, out = sys.argv[1:4]
good = re.compile(rb"v-(\d{3})-x{4000}\Z")
reads = bad = 0
seen = set()
first_bad = b""
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        data = ("<%s>" % e).encode()
    reads += 1
    m = good.match(data)
    if m:
        seen.add(int(m.group(1)))
    else:
        bad += 1
        if not first_bad:
            first_bad = data[:80] + (b"... (%d bytes)" % len(data))
    if reads % 64 == 0:
        import os
        if os.path.exists(stop):
            break
with open(out, "w") as f:
    f.write("%d %d %d %d %r\n" % (reads, bad, len(seen), max(seen or [-1]), first_bad))
' "$W/out1/db_password" "$W/reader.stop" "$W/reader.out" &
READER_PID=$!
for i in $(seq 1 40); do
	put "$A" "$(val "$i")"
done
wait_for "$W/out1/db_password" "$(val 40)" 30
: >"$W/reader.stop"
rc=0
wait "$READER_PID" || rc=$?
READER_PID=""
assert_eq "$rc" 0 "the reader's exit status"
[ -s "$W/reader.out" ] || fail "the reader wrote no result"
read -r READS BAD DISTINCT LAST FIRST_BAD <"$W/reader.out"
echo "    reader: $READS reads, $DISTINCT distinct values, last v-$LAST, $BAD partial"
[ "$READS" -gt 0 ] || fail "the reader never read the file"
assert_eq "$BAD" 0 "reads that saw a partial or missing file (first: $FIRST_BAD)"
[ "$DISTINCT" -ge 2 ] || fail "the reader saw only $DISTINCT value(s)"
assert_eq "$LAST" 40 "the last value the reader saw"
agent_alive
# one reload per rewrite of the file, never more
sleep 0.5
WROTE=$(tail -n "+$((MARK + 1))" "$LOG" | grep -cF "wrote $W/out1/db_password" || true)
assert_eq "$(($(grep -c db "$W/reloads1") - RELOADS0))" "$WROTE" \
	"db reloads during the rotations vs rewrites of the file"
[ "$WROTE" -ge 1 ] || fail "the agent logged no rewrite during the rotations"
json_assert "$W/a1/state.json" "d['secrets']['$A']['version']" 44
agent_stop

# ------------------------------------------------------------ no secret in logs
step "no secret value in the agents' logs"
for v in pw-1 pw-2 pw-3 tok-1 tok-2 control-value evil-mallory evil-eve evil-carol \
	pw-for-the-attacker xxxxxxxxxxxxxxxxxxxx; do
	if grep -aqF -- "$v" "$LOG" "$LOG2"; then
		fail "secret \"$v\" found in an agent's log"
	fi
done
for v in pw-1 pw-2 pw-3 tok-1 tok-2; do
	if grep -aqF -- "$v" "$W"/srv/coffer.db* "$W/srv.log"; then
		fail "secret \"$v\" found in the server's files"
	fi
done

pass
