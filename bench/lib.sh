# Shared by the benches (sourced after test/lib/env.sh).

# Starts the throwaway cluster with durable commits, as in production
# (env.sh's test cluster runs with fsync off), WAL large enough that no
# checkpoint lands inside a phase, and autovacuum off (each bench vacuums
# between phases instead).  bench_cluster_start <name> [extra conf lines]
bench_cluster_start() {
	local name=$1 extra=${2:-} s
	# shellcheck disable=SC2034  # read by env.sh's sp_cluster_start
	SP_EMULATOR_URL=""		# no Stripe calls: the payments are made with SQL
	sp_cluster_start ""
	BIN=$(sp_pg_bindir)
	cat >>"$SP_TMP/data/postgresql.conf" <<CONF
# $name overrides (later lines win)
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 1GB
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 30min
autovacuum = off
CONF
	[ -n "$extra" ] && printf '%s\n' "$extra" >>"$SP_TMP/data/postgresql.conf"
	sp_as_owner "$BIN/pg_ctl" -D "$SP_TMP/data" -l "$SP_TMP/server.log" -w restart >/dev/null ||
		{ tail -20 "$SP_TMP/server.log" >&2; sp_die "the cluster did not restart with the bench settings"; }
	for s in fsync synchronous_commit; do
		[ "$(psql -X -At -c "SHOW $s")" = on ] || sp_die "$s is not on"
	done
	sp_log "cluster: $(psql -X -At -c "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name)
		FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'shared_buffers',
		'full_page_writes', 'max_wal_size', 'autovacuum')"), $(nproc) CPUs"
}

# check <what> <got> <want>: logs it, or prints it and sets fail=1
check() {
	if [ "$2" = "$3" ]; then
		sp_log "ok: $1 = $2"
	else
		printf 'VERIFICATION FAILED: %s = %s, expected %s\n' "$1" "$2" "$3" >&2
		fail=1
	fi
}

# Points the current database's stripepay functions at a private copy of the
# stripepay.so this run built (or at BENCH_SO): others install their builds
# into the shared library directory at any time, and a backend that loaded
# another build mid-run would run other code, or find a function missing.
# The notifier worker still loads the installed library by name.
bench_pin_module() {
	local so=${BENCH_SO:-$SP_TMP/stripepay.so}
	[ -n "${BENCH_SO:-}" ] || [ -f "$so" ] || install -m 755 "$SP_ROOT/stripepay.so" "$so"
	psql -X -q -At -v ON_ERROR_STOP=1 \
		-c "UPDATE pg_catalog.pg_proc SET probin = '$so' WHERE probin = '\$libdir/stripepay'" >/dev/null
}

# A number from an awk expression, four decimals.
calc() { awk "BEGIN { printf \"%.4f\", $1 }"; }
# psql for the benches' own queries: unaligned, tuples only, stop on error.
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# CPU ticks the cluster has used: the postmaster's reaped children (backends
# that exited) plus every live process of the cluster.
server_cpu() {
	local pm p
	pm=$(head -1 "$SP_TMP/data/postmaster.pid")
	{
		awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat"
		for p in $(pgrep -P "$pm"); do
			awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true
		done
	} | awk '{ s += $1 } END { print s }'
}
