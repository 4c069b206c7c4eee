#!/usr/bin/env bash
#
# commands.sh - operator-to-agent commands (issue 9, docs/COMMANDS.md)
# with a real server and two real agents (`agent run`) of group web:
#
#   1. a configured action runs on both agents and both verified answers
#      arrive (text and --json); the built-ins status and refresh answer;
#   2. arguments: refused under `args = none`, matched in full under a
#      REGEX, refused when they do not match; an action the agent does
#      not configure is refused; nothing runs for a refusal;
#   3. a hostile server (the test writes the server's SQLite database
#      directly, with python3's sqlite3, and builds records with openssl
#      alone): a command by an operator without agent.manage on the
#      group, an expired command, and a replayed command (the same record
#      delivered again) are each refused by the agent and nothing runs;
#      posting an existing id through the API is refused (409);
#   4. a result altered in the database is rejected by `cmd show` (exit 35);
#   5. the server's database, its WAL and its log hold no argument and no
#      output text.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

AGENT2_PID=""
on_exit()
{
	local rc=$?
	[ -z "$AGENT_PID" ] || kill "$AGENT_PID" 2>/dev/null || true
	[ -z "$AGENT2_PID" ] || kill "$AGENT2_PID" 2>/dev/null || true
	srv_stop || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

DB=$W/srv/coffer.db
COMMAND_OID=2.25.2512399633766132092.6
ARG_TEXT=argmark-5b1c9e
OUT_TEXT=OUTPUT-MARK-7d1f

# expect_rc CODE CMD...: CMD must exit with CODE; unlike expect_exit its
# stdout may hold the answers that explain the status.
expect_rc()
{
	local want=$1
	shift
	run_capture "$@"
	[ "$RC" -eq "$want" ] || fail "expected exit $want, got $RC from: $*: $(cat "$OUT" "$ERR")"
}

# marks N: how many times web-N's `mark` action ran.
marks() { count_lines "$W/marks-$1"; }

# wait_answer WHO ID: until `cmd show ID` (as WHO) has web-1's answer, in
# $W/show.json (one JSON object per agent and line).
wait_answer()
{
	for _ in $(seq 1 100); do
		as "$1" cmd show "$2" --json >"$W/show.json" 2>/dev/null || true
		grep -q '"agent":"web-1"' "$W/show.json" &&
			! grep -q '"status":"no answer"' "$W/show.json" && return 0
		sleep 0.1
	done
	fail "no answer to command $2 after 10 s: $(tail -5 "$W/agent1.log")"
}

# agent_conf N: web-N's configuration, with its actions.
agent_conf()
{
	cat >"$W/agent$1.conf" <<CONF
[server]
url = $SRV_URL

[action hello]
run = /bin/sh -c "echo hello from web-$1 $OUT_TEXT; echo to-stderr >&2"

[action mark]
run = /bin/sh -c "echo ran >>'$W/marks-$1'"

[action echo]
run = /bin/echo
args = [a-z0-9][a-z0-9-]*

[action fail]
run = /bin/sh -c "echo failing; exit 3"
CONF
}

# sql STATEMENT [PARAMS...]: runs one statement on the server's database
# (python3's sqlite3: the test as the attacker, coffer not involved);
# prints the rows of a SELECT, one per line, columns tab-separated.
sql()
{
	python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
rows = db.execute(sys.argv[2], sys.argv[3:]).fetchall()
db.commit()
for r in rows:
    print("\t".join(str(c) for c in r))' "$DB" "$@" || fail "sql failed: $1"
}

# inject ID SENDER_FP RECIPIENT_FP EXPIRES ENVELOPE_FILE: a mailbox entry
# written straight into the database, as a hostile server would.
inject()
{
	python3 -c 'import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
tenant, cid, sender, rcpt, expires, path = sys.argv[2:8]
db.execute("INSERT OR IGNORE INTO commands (tenant, id, sender, created, "
           "expires, recipients, bytes) VALUES (?, ?, ?, ?, ?, 1, 0)",
           (tenant, cid, sender, int(time.time()), int(expires)))
db.execute("INSERT INTO command_mail (tenant, id, recipient, expires, "
           "envelope) VALUES (?, ?, ?, ?, ?)",
           (tenant, cid, rcpt, int(expires), open(path, "rb").read()))
db.commit()' "$DB" "$TENANT" "$@" || fail "cannot inject command $1"
}

# ossl_command OUT SIGNER ACTION ISSUED EXPIRES TARGET: a command record
# signed by SIGNER ($W/SIGNER.crt/.key) and sealed to web-1, made with
# python3 and openssl alone.  Prints the command id.
ossl_command()
{
	local out=$1 signer=$2 action=$3 issued=$4 expires=$5 target=$6 id
	id=$(openssl rand -hex 16)
	python3 -c 'import json, sys
out, tenant, cid, action, issued, expires, target = sys.argv[1:8]
rec = {"v": 1, "tenant": tenant, "id": cid, "action": action, "args": [],
       "issued": int(issued), "expires": int(expires), "targets": [target]}
open(out, "w").write(json.dumps(rec, separators=(",", ":")))' \
		"$out.json" "$TENANT" "$id" "$action" "$issued" "$expires" \
		"$target" || fail "cannot write a command record"
	openssl cms -sign -binary -nodetach -econtent_type "$COMMAND_OID" \
		-md sha256 -outform DER -signer "$W/$signer.crt" \
		-inkey "$W/$signer.key" -in "$out.json" -out "$out.signed" ||
		fail "openssl cms -sign failed"
	ossl_encrypt "$out.signed" "$W/a1/agent.crt" "$out"
	echo "$id"
}

# wake: a secret put to web-1, so that its long-poll returns at once and
# reads its mailbox (a direct database write wakes nobody).
WAKES=0
wake()
{
	WAKES=$((WAKES + 1))
	printf 'w%s' "$WAKES" >"$W/value"
	expect_ok as tech put prod/wake --to agent:web-1 --file "$W/value"
}


step "PKI, server, two agents of group web"
mk_ca "$W/ca" Acme
mk_operator tech "$W/ca" 'agent.manage:web' 'secret.write:prod/**'
mk_operator intern "$W/ca" 'agent.manage:db' 'secret.write:prod/**'
mk_operator reader "$W/ca" 'secret.read:**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log"
export COFFER_SERVER=$SRV_URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
TENANT=$(fingerprint "$W/ca/root.crt")
for n in 1 2; do
	expect_ok as bob token create --group web --ttl 1h
	cp "$OUT" "$W/t$n"
	expect_ok coffer agent join --server "$SRV_URL" --server-ca "$W/srv/server.crt" \
		--token-file "$W/t$n" --name "web-$n" --state-dir "$W/a$n" --root "$W/ca/root.crt"
	expect_ok as bob agent approve --all
	expect_ok coffer agent join --state-dir "$W/a$n" --wait 10 --root "$W/ca/root.crt"
	agent_conf "$n"
done
FP1=$(fingerprint "$W/a1/agent.crt")
TECH_FP=$(fingerprint "$W/tech.crt")
INTERN_FP=$(fingerprint "$W/intern.crt")
run_agent "$W/a1" "$W/agent1.conf" "$W/agent1.log"
A1=$AGENT_PID
run_agent "$W/a2" "$W/agent2.conf" "$W/agent2.log"
AGENT2_PID=$AGENT_PID
AGENT_PID=$A1


step "an action runs on both agents of the group; both answers arrive"
expect_ok as tech cmd run --to group:web hello --timeout 20s
grep -q "== web-1: ok (exit 0" "$OUT" || fail "no ok answer of web-1: $(cat "$OUT")"
grep -q "== web-2: ok (exit 0" "$OUT" || fail "no ok answer of web-2: $(cat "$OUT")"
grep -q "| hello from web-1 $OUT_TEXT" "$OUT" || fail "web-1's output missing: $(cat "$OUT")"
grep -q "| hello from web-2 $OUT_TEXT" "$OUT" || fail "web-2's output missing"
grep -q "| to-stderr" "$OUT" || fail "stderr missing"
grep -q "hello (command [0-9a-f]*) on 2 agent(s): 2 ok, 0 failed, 0 refused, 0 rejected, 0 no answer" \
	"$OUT" || fail "no summary line: $(cat "$OUT")"

expect_ok as tech cmd run --to group:web mark --json
python3 -c 'import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
got = sorted((l["agent"], l["status"], l["exit"]) for l in lines)
assert got == [("web-1", "ok", 0), ("web-2", "ok", 0)], got' "$OUT" ||
	fail "--json answers are not one ok object per agent: $(cat "$OUT")"
assert_eq "$(marks 1)" 1 "web-1 ran mark once"
assert_eq "$(marks 2)" 1 "web-2 ran mark once"

# A failing action is reported as failed, with its exit status: exit 35.
expect_rc 35 as tech cmd run --to agent:web-2 fail
grep -q "== web-2: failed (exit 3" "$OUT" || fail "failure not reported: $(cat "$OUT")"

# The built-ins.
expect_ok as tech cmd run --to agent:web-1 status
grep -q "== web-1: ok" "$OUT" || fail "status did not answer: $(cat "$OUT")"
expect_ok as tech cmd run --to agent:web-1 refresh
grep -q "== web-1: ok" "$OUT" || fail "refresh did not answer: $(cat "$OUT")"


step "arguments: none, a REGEX in full, an unconfigured action"
expect_rc 35 as tech cmd run --to agent:web-1 mark extra
grep -q "== web-1: refused (CF_ERR_PERMISSION)" "$OUT" ||
	fail "an argument to an args = none action was not refused: $(cat "$OUT")"
expect_ok as tech cmd run --to agent:web-1 echo "$ARG_TEXT"
grep -q "| $ARG_TEXT" "$OUT" || fail "echo did not answer its argument: $(cat "$OUT")"
expect_rc 35 as tech cmd run --to agent:web-1 echo 'abc;rm'
grep -q "== web-1: refused" "$OUT" || fail "a non-matching argument ran: $(cat "$OUT")"
expect_rc 35 as tech cmd run --to agent:web-1 echo 'UPPER'
grep -q "== web-1: refused" "$OUT" || fail "a partial match ran: $(cat "$OUT")"
# An option for the action's program: the pattern starts with [a-z0-9].
expect_rc 35 coffer cmd run --cert "$W/tech.crt" --key "$W/tech.key" --to agent:web-1 echo -- -n
grep -q "== web-1: refused" "$OUT" || fail "an option passed the pattern: $(cat "$OUT")"
expect_rc 35 as tech cmd run --to agent:web-1 reboot
grep -q "== web-1: refused" "$OUT" || fail "an unconfigured action ran: $(cat "$OUT")"
assert_eq "$(marks 1)" 1 "nothing ran for the refusals"


step "who may send: the CLI and the server refuse an operator without agent.manage"
expect_exit 18 as intern cmd run --to group:web mark
expect_exit 18 as reader cmd run --to agent:web-1 mark
expect_exit 9 as tech cmd run --to agent:nobody mark
# Straight to the API: 403 from the server for intern's envelope to web-1.
ID=$(ossl_command "$W/intern.cms" intern mark "$(date +%s)" $(( $(date +%s) + 60 )) group:web)
python3 -c 'import base64, json, sys
print(json.dumps({"id": sys.argv[1], "expires": int(sys.argv[2]),
  "envelopes": [{"recipient": sys.argv[3],
                 "envelope": base64.b64encode(open(sys.argv[4], "rb").read()).decode()}]}))' \
	"$ID" $(( $(date +%s) + 60 )) "$FP1" "$W/intern.cms" >"$W/body.json"
code=$(curl -s -o "$W/resp.json" -w '%{http_code}' --cacert "$W/srv/server.crt" \
	--cert "$W/intern.crt" --key "$W/intern.key" -H 'Content-Type: application/json' \
	--data-binary @"$W/body.json" "$SRV_URL/v1/commands")
assert_eq "$code" 403 "POST /v1/commands by an operator without agent.manage on web"


step "a hostile server: intern's command inserted in the database is refused by the agent"
inject "$ID" "$INTERN_FP" "$FP1" $(( $(date +%s) + 60 )) "$W/intern.cms"
wake
wait_answer intern "$ID"
grep -q '"status":"refused"' "$W/show.json" || fail "no refusal answered: $(cat "$W/show.json")"
grep -q '"code":"CF_ERR_PERMISSION"' "$W/show.json" || fail "not refused for agent.manage: $(cat "$W/show.json")"
assert_eq "$(marks 1)" 1 "intern's command did not run"


step "a hostile server: an expired command is refused"
NOW=$(date +%s)
ID=$(ossl_command "$W/old.cms" tech mark $((NOW - 120)) $((NOW - 60)) group:web)
inject "$ID" "$TECH_FP" "$FP1" $((NOW + 60)) "$W/old.cms"
wake
wait_answer tech "$ID"
grep -q '"code":"CF_ERR_EXPIRED"' "$W/show.json" || fail "expired command not refused: $(cat "$W/show.json")"
assert_eq "$(marks 1)" 1 "the expired command did not run"


step "a replayed command: delivered again, refused; posted again, 409"
expect_ok as tech cmd run --to agent:web-1 mark
assert_eq "$(marks 1)" 2 "mark ran"
ID=$(sed -n 's/^command \([0-9a-f]*\):.*/\1/p' "$OUT" | head -1)
[ -n "$ID" ] || fail "no command id in: $(cat "$OUT")"
sql "SELECT envelope FROM command_mail WHERE id = ? AND recipient = ?" "$ID" "$FP1" >/dev/null
python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
row = db.execute("SELECT envelope, expires FROM command_mail WHERE id = ? AND recipient = ?",
                 sys.argv[2:4]).fetchone()
open(sys.argv[4], "wb").write(row[0])
# The same record, delivered again under a fresh mailbox number.
db.execute("DELETE FROM command_mail WHERE id = ? AND recipient = ?", sys.argv[2:4])
db.execute("INSERT INTO command_mail (tenant, id, recipient, expires, envelope) "
           "VALUES (?, ?, ?, ?, ?)", (sys.argv[5], sys.argv[2], sys.argv[3], row[1], row[0]))
db.commit()' "$DB" "$ID" "$FP1" "$W/replay.cms" "$TENANT" || fail "cannot replay"
wake
wait_answer tech "$ID"
grep -q '"code":"CF_ERR_REPLAY"' "$W/show.json" || fail "replay not refused: $(cat "$W/show.json")"
assert_eq "$(marks 1)" 2 "the replayed command did not run again"
python3 -c 'import base64, json, sys
print(json.dumps({"id": sys.argv[1], "expires": int(sys.argv[2]),
  "envelopes": [{"recipient": sys.argv[3],
                 "envelope": base64.b64encode(open(sys.argv[4], "rb").read()).decode()}]}))' \
	"$ID" $(( $(date +%s) + 60 )) "$FP1" "$W/replay.cms" >"$W/body.json"
code=$(curl -s -o "$W/resp.json" -w '%{http_code}' --cacert "$W/srv/server.crt" \
	--cert "$W/tech.crt" --key "$W/tech.key" -H 'Content-Type: application/json' \
	--data-binary @"$W/body.json" "$SRV_URL/v1/commands")
assert_eq "$code" 409 "POST /v1/commands with an id that exists"


step "a result altered in the database is rejected"
expect_ok as tech cmd run --to group:web hello
ID=$(sed -n 's/^command \([0-9a-f]*\):.*/\1/p' "$OUT" | head -1)
FP2=$(fingerprint "$W/a2/agent.crt")
python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
res = bytearray(db.execute("SELECT result FROM command_mail WHERE id = ? AND recipient = ?",
                           sys.argv[2:4]).fetchone()[0])
res[len(res) - 30] ^= 1
db.execute("UPDATE command_mail SET result = ? WHERE id = ? AND recipient = ?",
           (bytes(res), sys.argv[2], sys.argv[3]))
db.commit()' "$DB" "$ID" "$FP2" || fail "cannot alter a result"
expect_rc 35 as tech cmd show "$ID"
grep -q "== web-1: ok" "$OUT" || fail "web-1's intact answer not shown: $(cat "$OUT")"
grep -q "== web-2: result rejected" "$OUT" || fail "the altered answer was believed: $(cat "$OUT")"
# The other way round: web-1's answer copied over web-2's is refused too.
sql "UPDATE command_mail SET result = (SELECT result FROM command_mail WHERE id = ?1 AND recipient = ?2) WHERE id = ?1 AND recipient = ?3" \
	"$ID" "$FP1" "$FP2"
expect_rc 35 as tech cmd show "$ID"
grep -q "== web-2: result rejected: .*not by the agent the command was sent to" "$OUT" ||
	fail "a swapped answer was believed: $(cat "$OUT")"
expect_ok as tech cmd ls
grep -q "$ID" "$OUT" || fail "cmd ls does not list $ID"


step "no argument or output text on the server"
srv_stop
for f in "$W"/srv/coffer.db* "$W/srv.log"; do
	[ -e "$f" ] || continue
	! grep -qaF "$ARG_TEXT" "$f" || fail "$f holds an argument's text"
	! grep -qaF "$OUT_TEXT" "$f" || fail "$f holds an output's text"
done
grep -qaF "$ARG_TEXT" "$W/agent1.log" && fail "the agent logged an argument"
grep -qaF "$OUT_TEXT" "$W/agent1.log" && fail "the agent logged an output"

pass
