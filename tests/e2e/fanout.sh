#!/usr/bin/env bash
#
# fanout.sh - `coffer put --threads N` (issue 6, section 1, large
# fan-out): the envelopes are the same whatever the number of threads.
# A group of 50 agents, a server with a 64 KiB body limit (so the
# envelopes go as a staged upload in several chunks, sent while the
# workers seal); `put --to group:web` with --threads 1, then with
# --threads 4: after each, every agent opens the new version with
# `coffer get` (its envelope went to it: the order of the envelopes
# matched the order of the recipients), and the server lists exactly one
# envelope per recipient (50 agents + the writer).  Then --threads
# refusals, and --help documenting it.

. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null 2>&1 || fail "curl is not installed"
CURL_BIN=$(command -v curl)
N=50

on_exit()
{
	local rc=$?
	srv_stop || true
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

step "PKI: a root, an operator, $N agents of group web (one key, $N certificates)"
mk_ca "$W/ca" Acme
mk_operator ops "$W/ca" 'admin:**'
expect_ok coffer key new --out "$W/agent.key" --no-passphrase
for i in $(seq 1 "$N"); do
	expect_ok coffer csr new --key "$W/agent.key" --name "web-$i" --out "$W/web.csr"
	expect_ok coffer cert issue --ca "$W/ca" --pass-file "$PASS_FILE" \
		--csr "$W/web.csr" --out "$W/web-$i.crt" --kind agent --group web
done

step "a server with a 64 KiB body limit; the agents enrolled with POST /v1/certs"
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log" --max-body 65536
export COFFER_SERVER=$SRV_URL COFFER_SERVER_CA=$W/srv/server.crt \
	COFFER_ROOT=$W/ca/root.crt
: >"$W/certs.curl"
for i in $(seq 1 "$N"); do
	python3 -c 'import json, sys; print(json.dumps({"cert": open(sys.argv[1]).read(), "chain": []}))' \
		"$W/web-$i.crt" >"$W/web-$i.json"
	{
		echo "url = \"$SRV_URL/v1/certs\""
		echo "data-binary = \"@$W/web-$i.json\""
		echo "header = \"Content-Type: application/json\""
		echo "cacert = \"$W/srv/server.crt\""
		echo "cert = \"$W/ops.crt\""
		echo "key = \"$W/ops.key\""
		echo "output = /dev/null"
		echo "write-out = \"%{http_code}\\n\""
		echo "silent"
		[ "$i" -lt "$N" ] && echo "next"
	} >>"$W/certs.curl"
done
timeout -k 5 "$E2E_CMD_TIMEOUT" "$CURL_BIN" -K "$W/certs.curl" >"$W/codes" ||
	fail "enrolling the agents failed"
[ "$(grep -c '^201$' "$W/codes")" = "$N" ] ||
	fail "not every agent was enrolled: $(sort "$W/codes" | uniq -c | tr '\n' ' ')"

# check VERSION VALUE_FILE: every agent opens VERSION to VALUE; the server
# lists N + 1 recipients (one envelope each) for it.
check()
{
	local version=$1 value=$2 i
	for i in $(seq 1 "$N"); do
		expect_ok coffer get prod/x --cert "$W/web-$i.crt" --key "$W/agent.key" \
			--out "$W/got"
		same_file "$W/got" "$value"
	done
	expect_ok as ops history prod/x --json
	python3 - "$OUT" "$version" "$((N + 1))" <<'EOF' || fail "the server does not hold one envelope per recipient: $(cat "$OUT")"
import json, sys
d = json.load(open(sys.argv[1]))
v = [x for x in d["versions"] if x["version"] == int(sys.argv[2])]
if len(v) != 1 or v[0]["recipients"] != int(sys.argv[3]):
    sys.exit("version %s: %s" % (sys.argv[2], v))
EOF
	expect_ok as ops ls prod/ --json
	python3 - "$OUT" "$version" "$((N + 1))" <<'EOF' || fail "ls does not show version $version for $((N + 1)): $(cat "$OUT")"
import json, sys
d = json.load(open(sys.argv[1]))
s = [x for x in d["secrets"] if x["name"] == "prod/x"]
if len(s) != 1 or s[0]["version"] != int(sys.argv[2]) or s[0]["recipients"] != int(sys.argv[3]):
    sys.exit(1)
EOF
}

step "put --threads 1: a staged upload; every agent opens its envelope"
# 4 KiB of text: each envelope's base64 is ~8 KiB, so a 64 KiB body holds
# a handful and the 51 envelopes need several chunks.
openssl rand -hex 2048 >"$W/v1"
expect_ok as ops put prod/x --to group:web --threads 1 --file "$W/v1" --json
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["version"] == 1 and len(d["recipients"]) == 51, d' \
	"$OUT" || fail "put --threads 1 --json: $(head -c 300 "$OUT")"
cp "$OUT" "$W/put1.json"
check 1 "$W/v1"

step "put --threads 4: the same recipients, every agent opens the new version"
openssl rand -hex 2048 >"$W/v2"
expect_ok as ops put prod/x --to group:web --threads 4 --file "$W/v2" --json
cp "$OUT" "$W/put4.json"
python3 - "$W/put1.json" "$W/put4.json" <<'EOF' || fail "--threads 4 reported other recipients than --threads 1"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert b["version"] == 2 and a["recipients"] == b["recipients"], (a, b)
EOF
check 2 "$W/v2"

step "put --threads: refusals and --help"
for bad in 0 65 lots; do
	expect_exit 2 as ops put prod/x --to group:web --threads "$bad" --file "$W/v2"
	grep -q -- '--threads \(must be a whole number from 1 to 64\|needs a positive whole number\)' "$ERR" ||
		fail "--threads $bad: $(cat "$ERR")"
done
expect_ok coffer put --help
grep -q -- '--threads N' "$OUT" || fail "put --help does not document --threads"

pass
