#!/bin/bash
# The Debian packages, built and installed as a user would install them:
#
#  1. dpkg-buildpackage -us -uc -b in a copy of the tree on this host
#     (Debian 12: postgresql-15-stripepay and stripepay-relay), and a look
#     inside the .deb files;
#  2. a clean minimal Debian 12 chroot (debootstrap --variant=minbase, plus
#     postgresql-15 from the mirror; made once, then reused), and in a
#     throwaway overlay of it: apt-get install of the .deb files, a cluster
#     of its own as the postgres user, CREATE EXTENSION and \dx, the relay
#     (--version, GET /healthz against that cluster over its unix socket,
#     SIGTERM), the systemd unit, apt-get purge;
#  3. with --autopkgtest, debian/tests (installcheck: the pg_regress suite
#     through pg_buildext installcheck; relay) run by autopkgtest in another
#     throwaway overlay of the clean chroot;
#  4. the same build in the PostgreSQL 17 (trixie) and 18 (sid) chroots of
#     test/lib/chroot.sh, where they exist (they are not made here).
#
# Prints one "ok - ..." / "not ok - ..." line per check and ends with
# "package: N passed, M failed" (", K skipped" when some were); exits 1 when
# a check failed.  Needs root.  Nothing is left mounted or running, whatever
# happens.
#
# Usage: test/package/run.sh [--fresh] [--autopkgtest] [--no-extra-builds]
#   --fresh            make the clean chroot anew (to time a run from scratch)
#   --autopkgtest      also run debian/tests with autopkgtest (installed on
#                      the host if missing; the testbed downloads
#                      postgresql-server-dev-all for installcheck)
#   --no-extra-builds  skip the builds for 17 and 18
# Variables: SPK_SRC (the tree to package, this one by default; its work not
# yet committed is packaged too), SPK_OUT (packages and logs, /var/tmp/stripepay-packages),
# SPK_CHROOT_DIR (/var/tmp/stripepay-chroots), SPK_EXTRA_MAJORS ("17 18").
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/package/lib.sh
. "$HERE/lib.sh"

fresh=
extra=1
apt_test=
for arg in "$@"; do
	case "$arg" in
	--fresh) fresh=1 ;;
	--no-extra-builds) extra= ;;
	--autopkgtest) apt_test=1 ;;
	-h | --help)
		sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		spk_err "unknown argument $arg"
		exit 2
		;;
	esac
done
if [ "$(id -u)" -ne 0 ]; then
	spk_err "must run as root (dpkg-buildpackage's dependencies, debootstrap, mount, chroot)"
	exit 2
fi

passed=0 failed=0 skipped=0
emit() { # emit <ok|notok|skip> <text> [reason]
	case "$1" in
	ok) echo "ok - $2"; passed=$((passed + 1)) ;;
	skip) echo "ok - $2 # SKIP $3"; skipped=$((skipped + 1)) ;;
	*) echo "not ok - $2${3:+: $3}"; failed=$((failed + 1)) ;;
	esac
}
# Counts and prints the check lines of a file written by in-chroot.sh.
emit_file() {
	local line
	while IFS= read -r line; do
		case "$line" in
		"not ok - "*) echo "$line"; failed=$((failed + 1)) ;;
		"ok - "*" # SKIP "*) echo "$line"; skipped=$((skipped + 1)) ;;
		"ok - "*) echo "$line"; passed=$((passed + 1)) ;;
		esac
	done <"$1"
}

LOGS=$SPK_OUT/logs
mkdir -p "$LOGS" || exit 2
RUN=
cleanup() {
	trap - EXIT INT TERM HUP
	# the mounts lived in a namespace, or were undone by spk_clean_run
	if [ -n "$RUN" ]; then
		spk_umount_below "$RUN" >/dev/null 2>&1
		rm -rf --one-file-system "$RUN"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

VERSION=$(spk_extversion)
START=$SECONDS
declare -A took

# check_debs <dir> <major> <label>: what the .deb files must hold.
check_debs() {
	local dir=$1 major=$2 label=$3 ext relay_deb list f name missing=
	ext=$(find "$dir" -maxdepth 1 -name "postgresql-$major-stripepay_*.deb" 2>/dev/null | head -n 1)
	relay_deb=$(find "$dir" -maxdepth 1 -name 'stripepay-relay_*.deb' 2>/dev/null | head -n 1)
	if [ -z "$ext" ] || [ -z "$relay_deb" ]; then
		emit notok "$label: postgresql-$major-stripepay and stripepay-relay built" \
			"found: $(find "$dir" -maxdepth 1 -name '*.deb' -printf '%f ' 2>/dev/null)"
		return
	fi
	emit ok "$label: built ${ext##*/} and ${relay_deb##*/}"
	list=$(dpkg-deb -c "$ext" | awk '{print $6}' | sed 's|^\./|/|')
	for f in "/usr/lib/postgresql/$major/lib/stripepay.so" "/usr/share/postgresql/$major/extension/stripepay.control"; do
		grep -qx "$f" <<<"$list" || missing+=" $f"
	done
	local n=0
	for f in "${SPK_SRC:-$SPK_PROJECT}"/sql/stripepay--*.sql; do
		name=${f##*/}
		n=$((n + 1))
		grep -qx "/usr/share/postgresql/$major/extension/$name" <<<"$list" || missing+=" $name"
	done
	if [ -z "$missing" ]; then
		emit ok "$label: ${ext##*/} has stripepay.so, stripepay.control and the $n sql/stripepay--*.sql scripts"
	else
		emit notok "$label: ${ext##*/} has the module, the control file and every script" "missing$missing"
	fi
	if grep -q '/bin/stripepay-relay$' <<<"$list"; then
		emit notok "$label: no relay in ${ext##*/} (it is in stripepay-relay)"
	else
		emit ok "$label: no relay in ${ext##*/} (it is in stripepay-relay)"
	fi
	list=$(dpkg-deb -c "$relay_deb" | awk '{print $6}' | sed 's|^\./|/|')
	local unit exec_start
	unit=$(grep -E '^(/usr)?/lib/systemd/system/stripepay-relay\.service$' <<<"$list")
	if grep -qx /usr/bin/stripepay-relay <<<"$list" && [ -n "$unit" ]; then
		exec_start=$(dpkg-deb --fsys-tarfile "$relay_deb" | tar -xOf - ".$unit" | sed -n 's/^ExecStart=//p')
		if [ "$exec_start" = /usr/bin/stripepay-relay ]; then
			emit ok "$label: ${relay_deb##*/} has /usr/bin/stripepay-relay and $unit with ExecStart=$exec_start"
		else
			emit notok "$label: the unit's ExecStart is /usr/bin/stripepay-relay" "ExecStart=$exec_start"
		fi
	else
		emit notok "$label: ${relay_deb##*/} has /usr/bin/stripepay-relay and the systemd unit"
	fi
}

# --- 1. build on the host ---
t=$SECONDS
if spk_build_host "$SPK_OUT/host" "$LOGS/build-host.log"; then
	took[build]=$((SECONDS - t))
	emit ok "build: dpkg-buildpackage -us -uc -b on the host in ${took[build]} s"
	check_debs "$SPK_OUT/host" 15 "deb 15"
	if command -v lintian >/dev/null 2>&1; then
		lintian "$SPK_OUT"/host/*.changes >"$LOGS/lintian-host.log" 2>&1
		if grep -q '^E:' "$LOGS/lintian-host.log"; then
			emit notok "lintian: no error" "$(grep -c '^E:' "$LOGS/lintian-host.log") errors, see $LOGS/lintian-host.log"
		else
			emit ok "lintian: no error ($(grep -c '^W:' "$LOGS/lintian-host.log") warnings, in $LOGS/lintian-host.log)"
		fi
	else
		emit skip "lintian: no error" "lintian is not installed"
	fi
else
	took[build]=$((SECONDS - t))
	emit notok "build: dpkg-buildpackage -us -uc -b on the host" "see $LOGS/build-host.log"
fi

# --- 2. install into the clean chroot ---
if ls "$SPK_OUT"/host/*.deb >/dev/null 2>&1; then
	t=$SECONDS
	[ -z "$fresh" ] || spk_clean_remove
	how=reused
	[ -f "$(spk_clean_path)/$SPK_CLEAN_STAMP" ] || how=made
	if spk_clean_ensure; then
		took[chroot]=$((SECONDS - t))
		emit ok "clean chroot: $(spk_clean_path), minbase $SPK_CLEAN_SUITE with $SPK_CLEAN_PACKAGES ($how, ${took[chroot]} s)"
		RUN=$(mktemp -d /var/tmp/stripepay-pkgtest.XXXXXX)
		mkdir -p "$RUN/in/debs"
		cp "$SPK_OUT"/host/*.deb "$RUN/in/debs/" && cp "$HERE/in-chroot.sh" "$RUN/in/"
		t=$SECONDS
		spk_clean_run "$RUN" /bin/bash /tmp/spk/in-chroot.sh "$VERSION" 15 \
			>"$RUN/checks" 2>"$LOGS/install-test.log"
		rc=$?
		took[install]=$((SECONDS - t))
		emit_file "$RUN/checks"
		if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$RUN/checks"; then
			emit notok "install test: ran to its end" "status $rc, see $LOGS/install-test.log"
		fi
		left=$(spk_mounts_below "$RUN")
		if [ -z "$left" ]; then
			emit ok "clean-up: nothing left mounted below the throwaway chroot"
		else
			emit notok "clean-up: nothing left mounted below the throwaway chroot" "$left"
		fi
		cleanup
		RUN=
		trap cleanup EXIT
	else
		took[chroot]=$((SECONDS - t))
		emit notok "clean chroot: debootstrap --variant=minbase $SPK_CLEAN_SUITE and $SPK_CLEAN_PACKAGES" \
			"see ${SPK_CHROOT_DIR%/}/clean-$SPK_CLEAN_SUITE.log"
	fi
else
	emit notok "install test: no packages built to install"
fi

# --- 3. autopkgtest of debian/tests, in another throwaway copy ---
if [ -n "$apt_test" ]; then
	if ! command -v autopkgtest >/dev/null 2>&1; then
		spk_log "installing autopkgtest on the host"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq autopkgtest >/dev/null 2>&1
	fi
	if ! command -v autopkgtest >/dev/null 2>&1; then
		emit notok "autopkgtest: installed on the host"
	elif ! [ -f "$(spk_clean_path)/$SPK_CLEAN_STAMP" ] || ! ls "$SPK_OUT"/host/*.deb >/dev/null 2>&1; then
		emit notok "autopkgtest: a clean chroot and packages to test"
	else
		t=$SECONDS
		RUN=$(mktemp -d /var/tmp/stripepay-pkgtest.XXXXXX)
		spk_copy_tree "$RUN/src/stripepay-$VERSION"
		debs=()
		for f in "$SPK_OUT"/host/*.deb; do
			case "$f" in *-dbgsym_*) ;; *) debs+=("$f") ;; esac
		done
		# shellcheck disable=SC2016 # SPK_MERGED is set by spk_clean_run
		spk_clean_run "$RUN" --host bash -c 'autopkgtest -B "$@" -- chroot "$SPK_MERGED"' \
			autopkgtest "$RUN/src/stripepay-$VERSION" "${debs[@]}" >"$LOGS/autopkgtest.log" 2>&1
		rc=$?
		took[autopkgtest]=$((SECONDS - t))
		results=$(sed -n '/@@@@@@@@ summary/,$p' "$LOGS/autopkgtest.log" | grep -E '^[A-Za-z0-9_.+-]+ +(PASS|FAIL|SKIP|FLAKY)')
		if [ -z "$results" ]; then
			emit notok "autopkgtest: ran debian/tests" "status $rc, see $LOGS/autopkgtest.log"
		fi
		while read -r name verdict reason; do
			[ -n "$name" ] || continue
			case "$verdict" in
			PASS) emit ok "autopkgtest: $name" ;;
			SKIP) emit skip "autopkgtest: $name" "${reason:-skipped}" ;;
			*) emit notok "autopkgtest: $name" "$verdict ${reason:-} (see $LOGS/autopkgtest.log)" ;;
			esac
		done <<<"$results"
		cleanup
		RUN=
		trap cleanup EXIT
	fi
fi

# --- 4. builds for the other majors, in their chroots ---
if [ -n "$extra" ]; then
	for major in ${SPK_EXTRA_MAJORS:-17 18}; do
		t=$SECONDS
		spk_build_chroot "$major" "$SPK_OUT/pg$major" "$LOGS/build-pg$major.log"
		rc=$?
		took[pg$major]=$((SECONDS - t))
		case "$rc" in
		0)
			emit ok "build $major: dpkg-buildpackage -us -uc -b in its chroot in ${took[pg$major]} s"
			check_debs "$SPK_OUT/pg$major" "$major" "deb $major"
			;;
		77) emit skip "build $major: in its chroot" "no chroot for PostgreSQL $major (sp_chroot_ensure $major makes it)" ;;
		*) emit notok "build $major: dpkg-buildpackage -us -uc -b in its chroot" "see $LOGS/build-pg$major.log" ;;
		esac
	done
fi

times="build ${took[build]:-?} s, clean chroot ${took[chroot]:-?} s, install test ${took[install]:-?} s"
[ -z "${took[autopkgtest]:-}" ] || times+=", autopkgtest ${took[autopkgtest]} s"
for major in ${SPK_EXTRA_MAJORS:-17 18}; do
	[ -z "${took[pg$major]:-}" ] || times+=", build $major ${took[pg$major]} s"
done
echo "# time: $times; total $((SECONDS - START)) s"
echo "# packages in $SPK_OUT, logs in $LOGS"
summary="package: $passed passed, $failed failed"
[ "$skipped" -eq 0 ] || summary+=", $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
