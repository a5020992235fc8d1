#!/usr/bin/env bash
# The extension's own suites on another PostgreSQL major, in a Debian chroot
# that has it (test/lib/chroot.sh: 17 from trixie, 18 from sid):
#
#   bash test/matrix.sh 17                  every suite the extension has
#   bash test/matrix.sh 18 webhooks money   those only
#
# The tree is copied into the chroot's own /tmp and built there, so objects
# built against one major never mix with another's.  The last line is
# "pg<N>: N passed, M failed".
set -uo pipefail
. "$(dirname "$0")/lib/env.sh"
. "$(dirname "$0")/lib/chroot.sh"

major=${1:-}
[ -n "$major" ] || sp_die "usage: bash test/matrix.sh <major> [suite...]"
shift
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
	# the extension's own suites, as run-all.sh lists them
	read -r -a suites <<<"$(sed -n 's/^SP_MAJOR_SUITES="\(.*\)"$/\1/p' "$SP_ROOT/test/run-all.sh")"
fi

log="${TMPDIR:-/tmp}/stripepay-matrix-$major.log"
started=$(date +%s)
if ! sp_chroot_ensure "$major"; then
	echo "pg$major: 0 passed, 1 failed"
	exit 1
fi

# shellcheck disable=SC2016 # expanded inside the chroot
sp_chroot_run "$major" bash -c '
	set -uo pipefail
	root=$1
	shift
	mkdir -p /tmp/stripepay
	tar -C "$root" --exclude=./.git --exclude=node_modules --exclude="*.o" --exclude="*.bc" \
		--exclude="*.so" --exclude=./results --exclude=./regression.diffs \
		--exclude=./src/relay/stripepay-relay -cf - . | tar -C /tmp/stripepay -xf -
	cd /tmp/stripepay && bash test/run-all.sh "$@"
' matrix "$SP_ROOT" "${suites[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"${line:-0 passed, 1 failed}")
f=$(sed -E 's/.* ([0-9]+) failed/\1/' <<<"${line:-0 passed, 1 failed}")
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
sp_log "PostgreSQL $major: $(($(date +%s) - started)) s"
echo "pg$major: $p passed, $f failed"
[ "$f" -eq 0 ]
