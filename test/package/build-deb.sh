#!/bin/bash
# Builds the Debian packages (dpkg-buildpackage -us -uc -b) in a copy of the
# tree, never in the work tree itself.
#
# Usage: test/package/build-deb.sh [host | MAJOR]...
#   host    on this machine, for the majors pg_buildext supports here (15 on
#           Debian 12); build dependencies it lacks are installed
#   MAJOR   in the chroot of test/lib/chroot.sh for that PostgreSQL major
#           (15 bookworm, 17 trixie, 18 sid), which must exist; debhelper
#           and postgresql-server-dev-all are added to it
# With no argument: host, then every major whose chroot exists.  Packages go
# to $SPK_OUT/<host|pgMAJOR>/ (SPK_OUT=/var/tmp/stripepay-packages), logs to
# $SPK_OUT/logs/.  Exits non-zero when a build failed or a chroot is missing.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/package/lib.sh
. "$HERE/lib.sh"

[ "$(id -u)" -eq 0 ] || { spk_err "must run as root"; exit 2; }
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	targets=(host)
	for major in 15 17 18; do
		case $major in 15) suite=bookworm ;; 17) suite=trixie ;; 18) suite=sid ;; esac
		[ ! -f "${SPK_CHROOT_DIR%/}/$suite/.stripepay-chroot-complete" ] || targets+=("$major")
	done
fi
mkdir -p "$SPK_OUT/logs" || exit 2
status=0
for t in "${targets[@]}"; do
	start=$SECONDS
	if [ "$t" = host ]; then
		out=$SPK_OUT/host
		spk_build_host "$out" "$SPK_OUT/logs/build-host.log"
	else
		out=$SPK_OUT/pg$t
		spk_build_chroot "$t" "$out" "$SPK_OUT/logs/build-pg$t.log"
	fi
	rc=$?
	case $rc in
	0) echo "built ($t, $((SECONDS - start)) s): $(cd "$out" && printf '%s ' *.deb)" ;;
	77) echo "no chroot for PostgreSQL $t (make it with: . test/lib/chroot.sh; sp_chroot_ensure $t)"; status=1 ;;
	*) echo "build failed ($t): see $SPK_OUT/logs/"; status=1 ;;
	esac
done
exit "$status"
