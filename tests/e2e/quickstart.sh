#!/usr/bin/env bash
#
# quickstart.sh - README's first command (issue 5, section 7): `coffer
# quickstart --dir D --json` sets up and runs the whole system (CA,
# operator, enroller, server, two joined agents, a secret to a file and a
# template, a rotation) and stops it again.  The test checks the report
# against the files themselves (what the test reads, not what the report
# says), that every process quickstart started is gone, that neither demo
# value is in the server's files or any log in D, and the refusals around
# D (non-empty without --force; --force empties it).

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

Q=$W/q
R=$W/report.json

step "quickstart --json runs the whole system"
expect_ok coffer quickstart --dir "$Q" --json
cp "$OUT" "$R"
[ -s "$R" ] || fail "no report on stdout"

step "the report: both agents, the rotated value, the template, reloads"
json_assert "$R" \
	'd["dir"]' "$Q" \
	'd["secret"]["name"]' demo/db/password \
	'd["secret"]["versions"]' 2 \
	'd["audit_verified"]' true \
	'd["server"]["exit_status"]' 0 \
	'len(d["agents"])' 2 \
	'[a["exit_status"] for a in d["agents"]]' '[0, 0]' \
	'[a["file"]["holds_rotated_value"] for a in d["agents"]]' '[true, true]' \
	'[a["template"]["rendered"] for a in d["agents"]]' '[true, true]' \
	'[a["file"]["mode"] for a in d["agents"]]' '["0400", "0400"]' \
	'[a["template"]["mode"] for a in d["agents"]]' '["0440", "0440"]' \
	'[a["reloads"]["file"] for a in d["agents"]]' '[2, 2]' \
	'[a["reloads"]["template"] for a in d["agents"]]' '[2, 2]' \
	'all(0 <= a["rotation_ms"] < 30000 for a in d["agents"])' true \
	'd["secret"]["first_value"] != d["secret"]["rotated_value"]' true

# One python run pulls out what the shell needs, one value per line.
python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
print(d["secret"]["first_value"])
print(d["secret"]["rotated_value"])
for a in d["agents"]:
    print(a["file"]["path"]); print(a["template"]["path"])
    print(a["reloads"]["log"])
print(" ".join(str(p) for p in d["pids"]))
print(d["server"]["pid"])' "$R" >"$W/fields" || fail "cannot read $R"
mapfile -t F <"$W/fields"
V1=${F[0]} V2=${F[1]}
if [ ${#V1} -lt 16 ] || [ ${#V2} -lt 16 ]; then
	fail "demo values too short: \"$V1\" \"$V2\""
fi

step "the files hold what the report says"
for n in 0 1; do
	file=${F[2 + 3 * n]} tmpl=${F[3 + 3 * n]} reloads=${F[4 + 3 * n]}
	case "$file" in "$Q"/*) ;; *) fail "file $file is outside $Q" ;; esac
	assert_eq "$(cat "$file")" "$V2" "agent $((n + 1))'s file"
	assert_eq "$(stat -c %a "$file")" 400 "mode of $file"
	grep -qxF "password = $V2" "$tmpl" || fail "$tmpl: no plain use: $(cat "$tmpl")"
	grep -qxF "json = {\"password\": \"$V2\"}" "$tmpl" ||
		fail "$tmpl: no | json use: $(cat "$tmpl")"
	assert_eq "$(grep -cx file "$reloads")" 2 "file reloads in $reloads"
	assert_eq "$(grep -cx template "$reloads")" 2 "template reloads in $reloads"
done
# The pieces the report names exist where it says.
for f in ca/root.crt ca/root.key ca.pass operator.crt enroller.crt \
	server/coffer.db logs/server.log logs/steps.log logs/agent1.log \
	logs/agent2.log agent1/agent.crt agent2/agent.key agent1.conf; do
	[ -e "$Q/$f" ] || fail "$Q/$f is missing"
done
assert_eq "$(stat -c %a "$Q/ca.pass")" 600 "mode of ca.pass"

step "nothing quickstart started is still running"
# shellcheck disable=SC2206  # the PIDs, split on blanks
PIDS=(${F[8]})
[ ${#PIDS[@]} -ge 10 ] || fail "the report lists only ${#PIDS[@]} PIDs"
case " ${F[8]} " in *" ${F[9]} "*) ;; *) fail "the server's pid is not in pids" ;; esac
for p in "${PIDS[@]}"; do
	if kill -0 "$p" 2>/dev/null; then
		# a reused PID would be some other program: say which
		fail "pid $p still runs: $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)"
	fi
done

step "no demo value in the server's files or in any log"
for v in "$V1" "$V2"; do
	if grep -raqF -- "$v" "$Q/server" "$Q/logs"; then
		fail "a demo value is in $(grep -ralF -- "$v" "$Q/server" "$Q/logs" | head -3)"
	fi
	# nor in D's files outside the application's outputs
	if grep -raqlF --exclude=db_password --exclude=app.conf -- "$v" "$Q"; then
		fail "a demo value is in $(grep -ralF --exclude=db_password \
			--exclude=app.conf -- "$v" "$Q" | head -3)"
	fi
done
# the CA passphrase never was on a command line: steps.log lists them
grep -qF -- "$(cat "$Q/ca.pass")" "$Q/logs/steps.log" &&
	fail "the CA passphrase is in steps.log"

step "a non-empty D is refused without --force"
expect_refusal 8 coffer quickstart --dir "$Q"
stderr_has "--force"
[ -s "$Q/app1/db_password" ] || fail "the refusal touched $Q"

step "--force empties D and runs again"
expect_ok coffer quickstart --dir "$Q" --force --json
json_assert "$OUT" '[a["file"]["holds_rotated_value"] for a in d["agents"]]' '[true, true]'
V3=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret"]["rotated_value"])' "$OUT")
assert_eq "$(cat "$Q/app2/db_password")" "$V3" "agent 2's file after --force"
[ "$V3" != "$V2" ] || fail "the second run reused the first run's value"

step "usage"
expect_ok coffer quickstart --help
grep -q 'usage: coffer quickstart' "$OUT" || fail "--help prints no usage"
expect_exit 2 coffer quickstart --dir "$W/x" extra

pass
