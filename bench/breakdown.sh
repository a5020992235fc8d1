#!/usr/bin/env bash
# Where the microseconds of a call go: builds a copy of the extension that
# times each step (instrument.py) in a temporary directory, and runs one of
# the benches with it on its throwaway cluster; each phase then prints its
# breakdown.  The installed extension is left as it is.  See bench/README.md.
#
#   bash bench/breakdown.sh ingest    # one client by default: nothing waits on a lock
#   bash bench/breakdown.sh pay
#
# Environment: as the bench's run.sh.  For ingest the defaults here are
# BENCH_CLIENTS=1, BENCH_EVENTS=3000, BENCH_SETS="notify-on notify-off
# notify-off-no-trigger writes", BENCH_PREFILL=0.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../test/lib/env.sh"

case ${1:-} in
ingest | pay) ;;
*) sp_die "usage: bash bench/breakdown.sh ingest|pay" ;;
esac
sp_install_deps
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/stripepay-breakdown.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
chmod 755 "$SCRATCH"
python3 "$HERE/instrument.py" "$SP_ROOT" "$SCRATCH"
sp_log "building the instrumented copy"
make -C "$SCRATCH" -s PG_CONFIG="${PG_CONFIG:-$(sp_pg_bindir)/pg_config}" stripepay.so >/dev/null
chmod -R a+rX "$SCRATCH"

export BENCH_SO="$SCRATCH/stripepay.so"
if [ "$1" = ingest ]; then
	export BENCH_CLIENTS=${BENCH_CLIENTS:-1}
	export BENCH_EVENTS=${BENCH_EVENTS:-3000}
	export BENCH_SETS=${BENCH_SETS:-"notify-on notify-off notify-off-no-trigger writes"}
	export BENCH_PREFILL=${BENCH_PREFILL:-0}
fi
bash "$HERE/$1/run.sh"
