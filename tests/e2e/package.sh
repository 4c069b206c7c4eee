#!/usr/bin/env bash
# package.sh - the installation and the Debian package (packaging/,
# docs/DEPLOY.md).
#
# From the build directory that holds $COFFER (or $COFFER_BUILD_DIR):
#   1. `cmake --install BUILD --prefix TMP` puts exactly the expected files
#      there, the units name TMP's binary, and `systemd-analyze verify`
#      accepts both units without a single warning; `systemd-analyze
#      security` scores the agent's sandbox at most 3.0 ("OK") and finds
#      the protections the issue asks for;
#   2. `cpack -G DEB` makes coffer_VERSION_ARCH.deb: its file list (exact),
#      owners and modes, control fields, dependencies (real Debian
#      packages, among them the runtime libraries coffer links), conffiles
#      (every file under /etc, and there are none today), maintainer
#      scripts, and the units inside naming /usr/bin/coffer;
#   3. dpkg installs the .deb into a scratch tree (--instdir, maintainer
#      scripts run chrootless with DPKG_ROOT), reinstalls it (the upgrade
#      path), and purges it: /etc/coffer appears, nothing is enabled,
#      the binary runs, and the purge leaves no file of the package.
# Missing tools (cmake, cpack, dpkg-deb, systemd-analyze: scripts/deps
# installs them) fail the test by name.
#
# cpack first runs the build's "preinstall" target, i.e. `make all` in
# BUILD: a no-op after the build ctest runs on (about a second), but it
# does rebuild a stale tree.  The same steps run for the sanitizer build:
# they take a few seconds there too, so nothing is skipped.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

for tool in cmake cpack dpkg dpkg-deb systemd-analyze; do
	command -v "$tool" >/dev/null 2>&1 ||
		fail "$tool is not installed (scripts/deps installs it: packages cmake, dpkg, systemd)"
done

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${COFFER_BUILD_DIR:-$(dirname "$COFFER")}
if [ ! -f "$BUILD/CMakeCache.txt" ] || [ ! -f "$BUILD/CPackConfig.cmake" ]; then
	fail "$BUILD is not coffer's build directory (no CMakeCache.txt or CPackConfig.cmake); set COFFER_BUILD_DIR"
fi
[ "$(cd "$BUILD" && pwd)/coffer" -ef "$COFFER" ] ||
	fail "\$COFFER ($COFFER) is not the program of build directory $BUILD"

run_bounded() { timeout -k 5 120 "$@"; }

VERSION=$(coffer --version | sed -n 's/^coffer \([0-9][0-9.]*\)$/\1/p')
[ -n "$VERSION" ] || fail "coffer --version printed no version"

# What the install must hold, relative to the prefix.
expected_files()
{
	echo bin/coffer
	echo lib/systemd/system/coffer-agent.service
	echo lib/systemd/system/coffer-server.service
	echo share/doc/coffer/README.md
	for md in "$SRC"/docs/*.md; do
		echo "share/doc/coffer/$(basename "$md")"
	done
	echo share/doc/coffer/examples/agent.conf
	echo share/doc/coffer/examples/app.conf.tmpl
}
expected_files | LC_ALL=C sort >"$W/expected"
grep -qx share/doc/coffer/DEPLOY.md "$W/expected" ||
	fail "docs/DEPLOY.md is missing from the source tree"

# The protections the agent's unit must keep (issue 5, section 1).
agent_must_have=(
	"Type=exec"
	"ExecReload=/bin/kill -HUP \$MAINPID"
	"Restart=on-failure"
	"NoNewPrivileges=yes"
	"ProtectSystem=strict"
	"ReadWritePaths=/var/lib/coffer-agent /run/coffer"
	"StateDirectory=coffer-agent"
	"StateDirectoryMode=0700"
	"PrivateTmp=yes"
	"MemoryDenyWriteExecute=yes"
	"LimitCORE=0"
	"LimitMEMLOCK=64M"
	"ProtectHome=yes"
	"UMask=0077"
	"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"
	"SystemCallArchitectures=native"
	"CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE CAP_KILL"
)

# check_units DIR BINDIR: both units in DIR, ExecStart on BINDIR/coffer.
check_units()
{
	local dir=$1 bindir=$2 u
	for u in coffer-agent coffer-server; do
		[ -f "$dir/$u.service" ] || fail "$dir/$u.service is missing"
		! grep -q '@[A-Z_]*@' "$dir/$u.service" ||
			fail "$u.service has an unsubstituted @VARIABLE@"
	done
	grep -qxF "ExecStart=$bindir/coffer agent run --state-dir /var/lib/coffer-agent --config /etc/coffer/agent.conf" \
		"$dir/coffer-agent.service" ||
		fail "coffer-agent.service does not run $bindir/coffer agent run"
	grep -qE "^ExecStart=$bindir/coffer server run --dir /var/lib/coffer-server --listen " \
		"$dir/coffer-server.service" ||
		fail "coffer-server.service does not run $bindir/coffer server run"
	local line
	for line in "${agent_must_have[@]}"; do
		grep -qxF -- "$line" "$dir/coffer-agent.service" ||
			fail "coffer-agent.service lacks the line '$line'"
	done
	for line in "DynamicUser=yes" "StateDirectory=coffer-server" \
		"NoNewPrivileges=yes" "ProtectSystem=strict" "LimitNOFILE=65536"; do
		grep -qxF -- "$line" "$dir/coffer-server.service" ||
			fail "coffer-server.service lacks the line '$line'"
	done
}

# ---- 1. cmake --install -------------------------------------------------

step "cmake --install to a scratch prefix"
P=$W/prefix
expect_ok run_bounded cmake --install "$BUILD" --prefix "$P"
(cd "$P" && find . -type f -o -type l) | sed 's|^\./||' | LC_ALL=C sort >"$W/got"
diff -u "$W/expected" "$W/got" >"$W/diff" ||
	fail "installed files differ from the expected list: $(cat "$W/diff")"
cmp -s "$COFFER" "$P/bin/coffer" || fail "installed bin/coffer is not the built program"
[ -x "$P/bin/coffer" ] || fail "installed bin/coffer is not executable"
for f in "$SRC"/docs/*.md "$SRC/README.md"; do
	same_file "$f" "$P/share/doc/coffer/$(basename "$f")"
done
same_file "$SRC/packaging/examples/agent.conf" "$P/share/doc/coffer/examples/agent.conf"
check_units "$P/lib/systemd/system" "$P/bin"
grep -qF "Documentation=file:$P/share/doc/coffer/DEPLOY.md" \
	"$P/lib/systemd/system/coffer-agent.service" ||
	fail "coffer-agent.service's Documentation= does not point into the prefix"

step "systemd-analyze verify: both units, no warning"
# verify exits 0 on unknown keys and bad values ("ignoring"): any output
# about our units is a failure.  It also checks ExecStart's program
# exists, which the prefix's bin/coffer does.
expect_ok run_bounded systemd-analyze verify \
	"$P/lib/systemd/system/coffer-agent.service" \
	"$P/lib/systemd/system/coffer-server.service"
if grep -q . "$OUT" "$ERR"; then
	fail "systemd-analyze verify warns: $(cat "$OUT" "$ERR")"
fi

step "systemd-analyze security: the agent's exposure"
expect_ok run_bounded systemd-analyze security --offline=yes --no-pager \
	"$P/lib/systemd/system/coffer-agent.service"
score=$(sed -n 's/.*Overall exposure level for coffer-agent.service: \([0-9.]*\).*/\1/p' "$OUT")
[ -n "$score" ] || fail "systemd-analyze security printed no overall exposure"
echo "    agent exposure: $score (0 = fully sandboxed, 10 = exposed)"
awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' ||
	fail "the agent's exposure is $score, above 3.0: a protection was lost"
# A few findings that must stay green (a check mark) whatever else moves.
for want in 'NoNewPrivileges=' 'MemoryDenyWriteExecute=' 'ProtectKernelModules=' \
	'RestrictSUIDSGID=' 'LockPersonality=' 'CapabilityBoundingSet=~CAP_SYS_ADMIN' \
	'CapabilityBoundingSet=~CAP_SYS_PTRACE' 'CapabilityBoundingSet=~CAP_NET_ADMIN'; do
	grep -F -- "$want" "$OUT" | grep -q '✓' ||
		fail "systemd-analyze security does not find $want protected"
done

# ---- 2. cpack -G DEB ----------------------------------------------------

step "cpack -G DEB"
D=$W/deb
expect_ok run_bounded cpack --config "$BUILD/CPackConfig.cmake" -G DEB -B "$D"
ARCH=$(dpkg --print-architecture)
DEB=$D/coffer_${VERSION}_$ARCH.deb
[ -f "$DEB" ] || fail "cpack made no $(basename "$DEB"): $(ls "$D")"

step "dpkg-deb -I: control fields and dependencies"
field() { dpkg-deb -f "$DEB" "$1"; }
assert_eq "$(field Package)" coffer "Package"
assert_eq "$(field Version)" "$VERSION" "Version"
assert_eq "$(field Architecture)" "$ARCH" "Architecture"
assert_eq "$(field Section)" admin "Section"
[ -n "$(field Maintainer)" ] || fail "the package has no Maintainer"
[ -n "$(field Description)" ] || fail "the package has no Description"
depends=$(field Depends)
echo "    Depends: $depends"
# The runtime libraries of Debian 12 that coffer links.
for lib in libc6 libssl3 libevent-2.1-7 libevent-openssl-2.1-7 \
	libevent-pthreads-2.1-7 libcurl4 libjansson4 libsqlite3-0; do
	grep -qE "(^|, )$lib( |,|$)" <<<"$depends" ||
		fail "Depends lacks $lib: $depends"
done
# Every dependency is a real package (the build machine has them all:
# coffer was just linked against them).
for pkg in $(tr ',|' '\n' <<<"$depends" | sed 's/(.*//; s/:any//' | awk 'NF { print $1 }'); do
	dpkg-query -W "$pkg" >/dev/null 2>&1 ||
		fail "Depends names $pkg, which is no installed package here"
done

step "dpkg-deb -c: contents, owners, modes"
dpkg-deb -c "$DEB" >"$W/contents"
awk '$1 !~ /^d/ { print $6 }' "$W/contents" | sed 's|^\./usr/||' |
	LC_ALL=C sort >"$W/deb-files"
diff -u "$W/expected" "$W/deb-files" >"$W/diff" ||
	fail ".deb files differ from the expected list: $(cat "$W/diff")"
awk '$2 != "root/root" { bad = bad " " $6 } END { if (bad != "") { print bad; exit 1 } }' \
	"$W/contents" >"$W/bad" || fail "not owned by root/root in the .deb:$(cat "$W/bad")"
grep -q '^-rwxr-xr-x .* \./usr/bin/coffer$' "$W/contents" || fail "/usr/bin/coffer is not 0755"
for u in coffer-agent coffer-server; do
	grep -q "^-rw-r--r-- .* \./usr/lib/systemd/system/$u.service$" "$W/contents" ||
		fail "$u.service is not 0644 in the .deb"
done

step "conffiles and maintainer scripts"
C=$W/control
mkdir "$C"
dpkg-deb -e "$DEB" "$C"
# Every file under /etc is a conffile, and every conffile is such a file.
awk '$1 !~ /^d/ && $6 ~ /^\.\/etc\// { print substr($6, 2) }' "$W/contents" |
	LC_ALL=C sort >"$W/etc-files"
if [ -f "$C/conffiles" ]; then
	LC_ALL=C sort "$C/conffiles" >"$W/conffiles"
else
	: >"$W/conffiles"
fi
diff -u "$W/etc-files" "$W/conffiles" >"$W/diff" ||
	fail "conffiles do not match the files under /etc: $(cat "$W/diff")"
for s in postinst prerm postrm; do
	[ -x "$C/$s" ] || fail "the .deb has no executable $s"
	sh -n "$C/$s" || fail "$s is not valid sh"
	same_file "$SRC/packaging/debian/$s" "$C/$s"
done
[ ! -e "$C/preinst" ] || fail "the .deb has an unexpected preinst"
# Nothing is enabled or started by the package.
! grep -qE 'systemctl( [a-z-]+)* (enable|start|restart) ' "$C/postinst" ||
	fail "postinst enables or starts a unit"

step "the units inside the .deb run /usr/bin/coffer"
U=$W/deb-tree
mkdir "$U"
dpkg-deb -x "$DEB" "$U"
check_units "$U/usr/lib/systemd/system" /usr/bin
"$U/usr/bin/coffer" --version >"$OUT" 2>"$ERR" ||
	fail "the packaged coffer does not run"
assert_eq "$(cat "$OUT")" "coffer $VERSION" "the packaged coffer --version"

# ---- 3. dpkg: install, upgrade, purge in a scratch tree ------------------

step "dpkg -i into a scratch tree (chrootless maintainer scripts)"
R=$W/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers"
: >"$R/var/lib/dpkg/status"
dpkg_r()
{
	run_bounded dpkg --instdir="$R" --admindir="$R/var/lib/dpkg" \
		--force-script-chrootless --force-not-root --force-depends \
		--log=/dev/null "$@"
}
expect_ok dpkg_r -i "$DEB"
[ -d "$R/etc/coffer" ] || fail "postinst did not make /etc/coffer"
assert_eq "$(stat -c %a "$R/etc/coffer")" 755 "mode of /etc/coffer"
[ -z "$(ls -A "$R/etc/coffer")" ] || fail "/etc/coffer is not empty after install"
[ ! -e "$R/etc/systemd" ] || fail "the install enabled a unit: $(find "$R/etc/systemd")"
"$R/usr/bin/coffer" --version >/dev/null || fail "the installed coffer does not run"
assert_eq "$(dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${Status}' coffer)" \
	"install ok installed" "dpkg status of coffer"

step "dpkg -i again (the upgrade path), then --purge"
expect_ok dpkg_r -i "$DEB"
expect_ok dpkg_r --purge coffer
left=$(cd "$R" && find . -path ./var -prune -o \( -type f -o -type l \) -print)
[ -z "$left" ] || fail "files left after purge: $left"
[ ! -e "$R/etc/coffer" ] || fail "purge left the empty /etc/coffer"
[ ! -e "$R/usr" ] || fail "purge left $R/usr"

pass
