#!/usr/bin/env bash
# A shop's database dumped on this machine's PostgreSQL (15) and restored on
# 17 and on 18, each in its Debian chroot (test/lib/chroot.sh), with the
# roles from pg_dumpall --roles-only and the database from pg_dump -Fc.
# Needs the cluster and the emulator run-all.sh starts; the chroots reach
# the same emulator, so Stripe knows the restored payments.
#
#   bash test/dump_restore.sh [major...]      default: 17 18
#
# The last line is "dump-restore: N passed, M failed".
set -uo pipefail
. "$(dirname "$0")/lib/env.sh"
. "$(dirname "$0")/lib/chroot.sh"

[ -n "${PGHOST:-}" ] && [ -n "${SP_EMULATOR_URL:-}" ] ||
	sp_die "run it from test/run-all.sh (dump-restore), which starts a cluster and the emulator"
majors=("$@")
[ ${#majors[@]} -eq 0 ] && majors=(17 18)

work=$(mktemp -d "${TMPDIR:-/tmp}/stripepay-dump.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
passed=0
failed=0

for major in "${majors[@]}"; do
	log="$work/restore-$major.log"
	if ! sp_chroot_ensure "$major"; then
		failed=$((failed + 1))
		continue
	fi
	# a dump of its own for each major: the emulator's payments are refunded
	sp_log "a shop on PostgreSQL $(psql -XAtc 'SHOW server_version' postgres), dumped"
	if ! (cd "$SP_ROOT/test/integration" && python3 dump_restore.py make "$work/dump-$major"); then
		failed=$((failed + 1))
		continue
	fi
	sp_log "restored on PostgreSQL $major"
	# shellcheck disable=SC2016 # expanded inside the chroot
	SP_CHROOT_BINDS="$SP_ROOT $work" SP_CHROOT_ENV="CI SP_EMULATOR_URL" \
		sp_chroot_run "$major" bash -c '
		set -euo pipefail
		root=$1 dump=$2
		mkdir -p /tmp/stripepay
		tar -C "$root" --exclude=./.git --exclude=node_modules --exclude="*.o" --exclude="*.bc" \
			--exclude="*.so" --exclude=./results --exclude=./src/relay/stripepay-relay \
			-cf - . | tar -C /tmp/stripepay -xf -
		cd /tmp/stripepay
		. test/lib/env.sh
		sp_build_install
		sp_make_tmp
		sp_cluster_start "$SP_EMULATOR_URL"
		cd test/integration && python3 dump_restore.py check "$dump"
	' dump-restore "$SP_ROOT" "$work/dump-$major" 2>&1 | tee "$log"
	line=$(grep -E '^dump-restore-on-[0-9]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
	if [ -z "$line" ]; then
		failed=$((failed + 1))
		continue
	fi
	passed=$((passed + $(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")))
	failed=$((failed + $(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")))
done

echo "dump-restore: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
