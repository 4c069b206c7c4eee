#!/usr/bin/env bash
#
# pass.sh - a password manager pushes, coffer never pulls (issue 6,
# section 5; docs/INTEGRATIONS.md): `pass insert` of a new value reaches
# an agent's file through contrib/password-managers/pass-post-commit, with
# a narrow operator certificate of the hook's own.  A real gpg key (made
# here, in a private GNUPGHOME), a real pass store with git, a real
# server and a real `coffer agent run`.
#
#   1. a new entry under coffer/ reaches the agent's file (first line only);
#   2. an edit (a new value) reaches it again, as the next version;
#   3. an entry outside coffer/ is not pushed, and one the hook's
#      certificate may not write is reported by the hook and not stored;
#   4. the value is nowhere on the server (database, WAL, log).

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v pass >/dev/null || fail "pass is not installed (Debian package pass)"
command -v git >/dev/null || fail "git is not installed"

export GNUPGHOME=$W/gnupg
on_exit()
{
	local rc=$? pid
	[ -z "$AGENT_PID" ] || kill "$AGENT_PID" 2>/dev/null || true
	srv_stop || true
	# gpg-agent daemonizes itself: stop it, then make sure by PID.
	gpgconf --kill gpg-agent 2>/dev/null || true
	for pid in $(pgrep -f "gpg-agent.*$GNUPGHOME" 2>/dev/null); do
		kill "$pid" 2>/dev/null || true
	done
	(exit "$rc")
	cleanup
}
trap on_exit EXIT

HOOK=$(cd "$(dirname "$0")/../.." && pwd)/contrib/password-managers/pass-post-commit
LOG=$W/agent.log
export PASSWORD_STORE_DIR=$W/store
export GIT_AUTHOR_NAME=coffer-test GIT_AUTHOR_EMAIL=test@coffer.invalid
export GIT_COMMITTER_NAME=coffer-test GIT_COMMITTER_EMAIL=test@coffer.invalid

# pw ARGS...: the password manager (lib.sh's pass() reports success).
pw() { command pass "$@"; }

# insert ENTRY VALUE...: `pass insert -m -f` of the lines given.
insert()
{
	local entry=$1
	shift
	printf '%s\n' "$@" | pw insert -m -f "$entry" >"$W/insert.out" 2>"$W/insert.err" ||
		fail "pass insert $entry failed: $(cat "$W/insert.err")"
}


step "PKI, server, an agent of group web"
mk_ca "$W/ca" Acme
mk_operator passhook "$W/ca" 'secret.write:prod/**'
mk_cert bob enroller "$W/ca" --perm 'agent.enroll:web' --perm 'token.create:web'
expect_ok coffer server init --dir "$W/srv"
expect_ok coffer server tenant add --dir "$W/srv" "$W/ca/root.crt"
srv_start "$W/srv" "$W/srv.log"
export COFFER_SERVER=$SRV_URL COFFER_SERVER_CA=$W/srv/server.crt COFFER_ROOT=$W/ca/root.crt
expect_ok as bob token create --group web --ttl 1h
cp "$OUT" "$W/token"
expect_ok coffer agent join --server "$SRV_URL" --server-ca "$W/srv/server.crt" \
	--token-file "$W/token" --name web-1 --state-dir "$W/a1" --root "$W/ca/root.crt"
expect_ok as bob agent approve --all
expect_ok coffer agent join --state-dir "$W/a1" --wait 10 --root "$W/ca/root.crt"
mkdir -p "$W/out"
cat >"$W/agent.conf" <<CONF
[server]
url = $SRV_URL

[file prod/db/password]
path = $W/out/password
CONF
run_agent "$W/a1" "$W/agent.conf" "$LOG"


step "a gpg key, a pass store with git, the hook"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --pinentry-mode loopback --passphrase '' --quick-gen-key \
	'coffer test <test@coffer.invalid>' default default never 2>"$W/gpg.err" ||
	fail "gpg could not make a key: $(cat "$W/gpg.err")"
KEY=$(gpg --list-keys --with-colons 'test@coffer.invalid' | awk -F: '/^fpr/ { print $10; exit }')
[ -n "$KEY" ] || fail "no gpg key fingerprint"
pw init "$KEY" >/dev/null 2>&1 || fail "pass init failed"
pw git init >/dev/null 2>&1 || fail "pass git init failed"
install -m 755 "$HOOK" "$PASSWORD_STORE_DIR/.git/hooks/post-commit"
mkdir -p "$W/conf"
cat >"$W/conf/pass-hook.env" <<ENV
COFFER_BIN=$COFFER
COFFER_SERVER=$SRV_URL
COFFER_SERVER_CA=$W/srv/server.crt
COFFER_CERT=$W/passhook.crt
COFFER_KEY=$W/passhook.key
COFFER_ROOT=$W/ca/root.crt
COFFER_PASS_TO="group:web"
COFFER_PASS_PREFIX=coffer/
ENV
chmod 600 "$W/conf/pass-hook.env"
export COFFER_PASS_HOOK_ENV=$W/conf/pass-hook.env


step "pass insert reaches the agent's file"
insert coffer/prod/db/password 'correct-Horse-7' 'user: app' 'url: db.internal'
grep -q "pushed coffer/prod/db/password as prod/db/password" "$W/insert.err" ||
	fail "the hook did not push: $(cat "$W/insert.err")"
wait_file "$W/out/password" 'correct-Horse-7' 15 "$LOG"

step "an edit is the next version"
insert coffer/prod/db/password 'battery-Staple-8'
wait_file "$W/out/password" 'battery-Staple-8' 15 "$LOG"
expect_ok as passhook history prod/db/password --json
json_assert "$OUT" "d['versions'][0]['version']" 2 "len(d['versions'])" 2


step "outside coffer/ nothing is pushed; beyond the hook's rights nothing is stored"
insert personal/mail 'not-for-machines-9'
grep -q "pushed" "$W/insert.err" && fail "an entry outside coffer/ was pushed"
insert coffer/staging/db 'wrong-scope-3'
grep -q "could not push coffer/staging/db" "$W/insert.err" ||
	fail "a refused push was not reported: $(cat "$W/insert.err")"
expect_ok as passhook ls
grep -q "staging/db\|personal" "$OUT" && fail "a secret was stored that should not be: $(cat "$OUT")"
# The store is intact: pass committed every entry whatever the hook said.
assert_eq "$(pw git log --oneline | grep -c 'Add given password')" 4 \
	"pass commits of an insert"


step "the values are nowhere on the server"
agent_stop
srv_stop
for f in "$W"/srv/coffer.db* "$W/srv.log" "$LOG"; do
	[ -e "$f" ] || continue
	for v in correct-Horse-7 battery-Staple-8 wrong-scope-3 not-for-machines-9; do
		! grep -qaF "$v" "$f" || fail "$f holds the value $v"
	done
done

pass
