#!/usr/bin/env bash
# Webhook ingest throughput: events/s of stripepay.stripe_ingest_webhook()
# at 16 concurrent clients with durable commits, against two baselines
# measured on the same throwaway cluster in the same run.  See bench/README.md.
#
#   bash bench/ingest/run.sh
#
# Environment:
#   BENCH_EVENTS=20000       events per phase (rounded up to a multiple of the clients)
#   BENCH_CLIENTS=16         concurrent pgbench clients
#   BENCH_JOBS=2             pgbench threads
#   BENCH_PHASE_TIMEOUT=120  seconds a phase may take before the run fails
#   BENCH_SETS="notify-on notify-direct notify-off writes"
#                            the first-delivery phases, in order: notify-on (sent by
#                            the notifier worker), notify-direct (each ingest sends
#                            its own NOTIFY: stripepay.notify_worker = off) or
#                            notify-off, optionally with -no-trigger (the user
#                            trigger disabled), or writes (writes.sql: the rows a
#                            first delivery writes, in plain SQL, without
#                            stripe_ingest_webhook); each gets its own fresh events
#   BENCH_VARIANTS=1         adds notify-off-no-trigger, and a bare INSERT into a
#                            copy of webhook_event
#   BENCH_PROFILE=1          pg_stat_statements (track = all): where each phase's
#                            time goes (slows every phase down)
#   BENCH_PERF=1             perf record (system-wide, flat) of each phase, top functions
#   BENCH_WAITS=1            sample pg_stat_activity every 20 ms during each phase and
#                            print what the active backends were waiting on
#   BENCH_EXTRA_SQL=file     run file (psql, superuser) after the set-up: a what-if
#                            (say, a changed function) without touching the tree
#   BENCH_STRICT=1           exit 1 when a throughput target is missed
#   SP_KEEP_TMP=1            keep the cluster's directory (server log, pgbench output)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../../test/lib/env.sh"
. "$HERE/../lib.sh"

CLIENTS=${BENCH_CLIENTS:-16}
JOBS=${BENCH_JOBS:-2}
[ "$JOBS" -le "$CLIENTS" ] || JOBS=$CLIENTS
N=${BENCH_EVENTS:-20000}
N=$(((N + CLIENTS - 1) / CLIENTS * CLIENTS))
CAP=${BENCH_PHASE_TIMEOUT:-120}
VARIANTS=${BENCH_VARIANTS:-0}
PROFILE=${BENCH_PROFILE:-0}
PERF=${BENCH_PERF:-0}
WAITS=${BENCH_WAITS:-0}
SECRET="whsec_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
STARTED=$(date +%s)

read -r -a SETS <<<"${BENCH_SETS:-notify-on notify-direct notify-off writes}"
[ "$VARIANTS" = 1 ] && [ -z "${BENCH_SETS:-}" ] && SETS+=(notify-off-no-trigger)
for set in "${SETS[@]}"; do
	[[ $set =~ ^(notify-(on|direct|off)(-no-trigger)?|writes)$ ]] || sp_die "BENCH_SETS: unknown set $set"
done
TOTAL=$((N * ${#SETS[@]}))	# one fresh event, and PENDING payment, per first delivery

# --- helpers --------------------------------------------------------------------
calc() { awk "BEGIN { printf \"%.4f\", $1 }"; }
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# VACUUM ANALYZE of every table that has pages.  Not of the empty ones: an
# empty table, analyzed, has "0 rows", and every plan cached while it is small
# (the ingest's UPDATE of webhook_event by id) then seq-scans it for the rest of
# the session, costing O(rows) an event.  Autovacuum never analyzes an empty
# table, so production does not get there that way; a manual database-wide
# ANALYZE right after CREATE EXTENSION does.
vacuum() {
	q >/dev/null <<'SQL'
SELECT format('VACUUM ANALYZE %s', c.oid::regclass) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname IN ('public', 'stripepay') AND pg_relation_size(c.oid) > 0
 ORDER BY 1 \gexec
SQL
}

# Signs events first..last now (the tolerance is 300 s), replacing bench_sig.
sign() {
	python3 "$HERE/events.py" sign "$SP_TMP/bodies.bin" "$SECRET" "$1" "$2" |
		q -c "TRUNCATE bench_sig" -c "\\copy bench_sig FROM pstdin" -c "ANALYZE bench_sig"
	[ "$(q -c "SELECT count(*) FROM bench_sig")" = $(($2 - $1 + 1)) ] || sp_die "signing failed"
}

set_notify() { # set_notify on|off [worker on|off]
	local worker=${2:-on}
	q -c "LOAD 'stripepay'" -c "ALTER SYSTEM SET stripepay.notify = $1" \
		-c "ALTER SYSTEM SET stripepay.notify_worker = $worker" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 0.2
	[ "$(q -c "LOAD 'stripepay'" -c "SHOW stripepay.notify")" = "$1" ] || sp_die "stripepay.notify is not $1"
	[ "$(q -c "LOAD 'stripepay'" -c "SHOW stripepay.notify_worker")" = "$worker" ] ||
		sp_die "stripepay.notify_worker is not $worker"
}

# Notifications queued for the notifier so far (the outbox's sequence).
queued() { q -c "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM stripepay.notify_outbox_id_seq"; }

# The notifier must have sent everything queued: the outbox drains.
wait_drained() {
	local i
	for i in $(seq 100); do
		[ "$(q -c "SELECT count(*) FROM stripepay.notify_outbox")" = 0 ] && return
		sleep 0.1
	done
	sp_die "the notifier did not drain the outbox"
}

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

declare -A RATE CPU WAL
# samplers (perf, the wait sampler) running during a phase: stopped on any exit
BG=()
stop_bg() {
	local p
	for p in "${BG[@]}"; do		# perf writes its file on SIGINT; psql ends on SIGTERM
		kill -INT "$p" 2>/dev/null || true
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	BG=()
}
KEYS=()
# phase <key> <pgbench script> <first event> <count>: pgbench over events
# first..first+count-1, each client taking its own contiguous slice, one
# event a transaction.
phase() {
	local key=$1 script=$2 first=$3 count=$4 per out t0 rate processed cpu0 cpu1
	local perf_pid="" perf_data waits_pid="" lsn0 lsn1
	[[ $script = /* ]] || script=$HERE/$script
	per=$((count / CLIENTS))
	sign "$first" $((first + count - 1))
	vacuum
	q -c "CHECKPOINT"
	[ "$PROFILE" = 1 ] && q -c "SELECT pg_stat_statements_reset()" >/dev/null
	out="$SP_TMP/pgbench.${key//[^a-z0-9()-]/_}.out"
	if [ "$PERF" = 1 ]; then
		perf_data="$SP_TMP/perf.${key//[^a-z0-9()-]/_}.data"
		perf record -a -q -o "$perf_data" >/dev/null 2>&1 &
		perf_pid=$!
		BG+=("$perf_pid")
	fi
	if [ "$WAITS" = 1 ]; then
		psql -X -q -At >"$out.waits" 2>/dev/null <<'SQL' &
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid() \watch 0.02
SQL
		waits_pid=$!
		BG+=("$waits_pid")
	fi
	sleep 0.3
	lsn0=$(q -c "SELECT pg_current_wal_insert_lsn()")
	cpu0=$(server_cpu)
	t0=$(date +%s.%N)
	if ! timeout "$CAP" "$BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$JOBS" -t "$per" \
		-D base=$((first - 1)) -D per="$per" -D i=1 -f "$script" >"$out" 2>&1; then
		tail -30 "$out" >&2
		sp_die "phase $key failed (or took more than $CAP s)"
	fi
	sleep 0.3		# the postmaster reaps the backends
	cpu1=$(server_cpu)
	lsn1=$(q -c "SELECT pg_current_wal_insert_lsn()")
	stop_bg
	processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\)\/.*/\1/p' "$out")
	[ "$processed" = "$count" ] || { cat "$out" >&2; sp_die "phase $key processed $processed of $count events"; }
	rate=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")
	[ -n "$rate" ] || { cat "$out" >&2; sp_die "no tps in the pgbench output of $key"; }
	RATE[$key]=$rate
	CPU[$key]=$(calc "($cpu1 - $cpu0) * 1000000 / $(getconf CLK_TCK) / $count")
	WAL[$key]=$(q -c "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0') / $count)")
	KEYS+=("$key")
	sp_log "$(printf '%-30s %6.0f events/s  %5.0f us server CPU/event  %5d WAL bytes/event  (%d events, latency avg %s ms, %.1f s)' \
		"$key" "$rate" "${CPU[$key]}" "${WAL[$key]}" "$count" \
		"$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")" \
		"$(calc "$(date +%s.%N) - $t0")")"
	if [ "$PROFILE" = 1 ]; then
		sp_log "pg_stat_statements, $key: top statements by total time (ms a call, calls)"
		q -F ' | ' -c "SELECT round((total_exec_time / calls)::numeric, 3), calls,
			left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
			FROM pg_stat_statements WHERE calls > 0 AND query !~ 'pg_stat_statements_reset'
			ORDER BY total_exec_time DESC LIMIT 14" >&2
	fi
	if [ -n "$waits_pid" ]; then
		sp_log "waits, $key: share of the samples of active client backends"
		grep -v '^$' "$out.waits" | sort | uniq -c | sort -rn |
			awk '{ n[NR] = $1; w[NR] = $2; t += $1 } END { for (i = 1; i <= NR && i <= 8; i++) printf "  %5.1f%%  %s\n", 100 * n[i] / t, w[i] }' >&2
	fi
	if [ -n "$perf_pid" ]; then
		sp_log "perf, $key: top functions (every CPU, idle included)"
		perf report -i "$perf_data" --no-children --sort comm,dso,sym --stdio >"$perf_data.txt" 2>/dev/null || true
		grep -v '^#' "$perf_data.txt" | grep -v '^$' | head -40 >&2 || true
	fi
	return 0
}

# "<webhook_event> <payments SUCCESSFUL> <payment_flow> <payment_flow new SUCCESSFUL> <orders paid> <linked>"
counts() {
	q -F ' ' -c "SELECT (SELECT count(*) FROM stripepay.webhook_event),
		(SELECT count(*) FROM stripepay.payment_record WHERE status = 'SUCCESSFUL'),
		(SELECT count(*) FROM stripepay.payment_flow),
		(SELECT count(DISTINCT event_id) FROM stripepay.payment_flow
		  WHERE NOT already_processed AND payment_status = 'SUCCESSFUL'),
		(SELECT count(*) FROM public.orders WHERE status = 'successful'),
		(SELECT count(*) FROM bench_event b
		   JOIN stripepay.webhook_event w ON w.id = b.evt_id
		   JOIN stripepay.payment_record p ON p.id = w.payment_id
		  WHERE w.type = 'payment_intent.succeeded' AND p.status = 'SUCCESSFUL'
		    AND p.payment_intent_id = w.object_id AND p.order_id = w.order_id)"
}

# --- cluster ---------------------------------------------------------------------
sp_install_deps
sp_build_install
sp_make_tmp
# shellcheck disable=SC2154  # rc is set in the trap
trap 'rc=$?; set +e; stop_bg; (exit $rc); sp_teardown' EXIT
PROFILE_CONF=""
[ "$PROFILE" = 1 ] && PROFILE_CONF="shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.max = 1000"
bench_cluster_start bench/ingest "$PROFILE_CONF"

# --- set-up ----------------------------------------------------------------------
sp_log "set-up: $TOTAL PENDING payments and orders, $TOTAL events"
q -v total="$TOTAL" -v secret="$SECRET" -f "$HERE/setup.sql" >/dev/null
[ "$PROFILE" = 1 ] && q -c "CREATE EXTENSION pg_stat_statements"
if [ -n "${BENCH_EXTRA_SQL:-}" ]; then
	sp_log "what-if: $BENCH_EXTRA_SQL"
	q -f "$BENCH_EXTRA_SQL"
fi
q -c "\\copy (SELECT id, order_id, payment_intent_id, amount, currency FROM stripepay.payment_record ORDER BY id) TO '$SP_TMP/payments.tsv'"
python3 "$HERE/events.py" generate "$SP_TMP/payments.tsv" "$SP_TMP/bodies.bin" "$SP_TMP/bench_event.copy" >&2
q -c "\\copy bench_event (n, evt_id, body) FROM '$SP_TMP/bench_event.copy' WITH (FORMAT binary)"
rm -f "$SP_TMP/bench_event.copy"
[ "$(q -c "SELECT count(*) FROM bench_event")" = "$TOTAL" ] || sp_die "bench_event was not loaded"

# --- the phases --------------------------------------------------------------------
# The baselines bracket the ingest phases (once before, once after); each
# figure is compared with their mean, and their spread is printed.
phase "baseline(a)" baseline_a.sql 1 "$N"
phase "baseline(b)" baseline_b.sql 1 "$N"

i=0
for set in "${SETS[@]}"; do
	key="ingest $set"
	[ -n "${RATE[$key]:-}" ] && key="$key #$((i + 1))"
	case $set in
	notify-on*) set_notify on ;;
	notify-direct*) set_notify on off ;;
	notify-off* | writes) set_notify off ;;
	esac
	[[ $set = *-no-trigger ]] && q -c "ALTER TABLE stripepay.payment_flow DISABLE TRIGGER mark_order_paid"
	queued_before=$(queued)
	script=ingest.sql
	[ "$set" = writes ] && script=writes.sql
	phase "$key" "$script" $((i * N + 1)) "$N"
	wait_drained
	case $set in
	notify-on*) want=$N ;;
	*) want=0 ;;
	esac
	[ $(($(queued) - queued_before)) = "$want" ] ||
		sp_die "$key: $(($(queued) - queued_before)) notifications went through the notifier, expected $want"
	[[ $set = *-no-trigger ]] && q -c "ALTER TABLE stripepay.payment_flow ENABLE TRIGGER mark_order_paid"
	i=$((i + 1))
done

# Every event once more, freshly signed: each must answer already_processed.
before=$(counts)
set_notify on
phase "ingest duplicates" duplicate.sql 1 "$TOTAL"
[ "$VARIANTS" = 1 ] && phase "INSERT webhook_event copy" baseline_we.sql 1 "$N"

phase "baseline(a) again" baseline_a.sql $((TOTAL - N + 1)) "$N"
phase "baseline(b) again" baseline_b.sql $((TOTAL - N + 1)) "$N"

# --- verification: every event landed exactly once ----------------------------------
after=$(counts)
read -r we ok flow flow_new paid linked <<<"$after"
expect_trigger=$((N * $(printf '%s\n' "${SETS[@]}" | grep -cv no-trigger || true)))
fail=0
check "webhook_event rows" "$we" "$TOTAL"
check "payment_record rows SUCCESSFUL" "$ok" "$TOTAL"
check "payment_record rows in all" "$(q -c "SELECT count(*) FROM stripepay.payment_record")" "$TOTAL"
check "payment_flow rows" "$flow" "$TOTAL"
check "payment_flow rows, one new SUCCESSFUL per event" "$flow_new" "$TOTAL"
check "orders marked successful by the user trigger" "$paid" "$expect_trigger"
check "events linked to their own payment" "$linked" "$TOTAL"
check "counts unchanged by the duplicates" "$after" "$before"
check "baseline (a) rows" "$(q -c "SELECT count(*) FROM bench_sink_a")" $((2 * N))
check "baseline (b) rows" "$(q -c "SELECT count(*) FROM bench_sink_b")" $((2 * N))

# --- report ---------------------------------------------------------------------
A=$(calc "(${RATE["baseline(a)"]} + ${RATE["baseline(a) again"]}) / 2")
B=$(calc "(${RATE["baseline(b)"]} + ${RATE["baseline(b) again"]}) / 2")
echo
echo "stripepay webhook ingest: $CLIENTS clients, one event a transaction, fsync=on synchronous_commit=on,"
echo "$N events a phase, ~$(q -c "SELECT avg(length(body))::int FROM bench_event") bytes each, $(nproc) CPUs, $(uname -r)"
[ "$PROFILE" = 1 ] && echo "(BENCH_PROFILE=1: pg_stat_statements with track = all slows every phase)"
[ -n "${BENCH_EXTRA_SQL:-}" ] && echo "(what-if: $BENCH_EXTRA_SQL)"
printf 'baseline(a) INSERT jsonb:        %6.0f events/s  (before %.0f, after %.0f; %.0f/%.0f us server CPU, %d WAL bytes an event)\n' \
	"$A" "${RATE["baseline(a)"]}" "${RATE["baseline(a) again"]}" "${CPU["baseline(a)"]}" "${CPU["baseline(a) again"]}" "${WAL["baseline(a)"]}"
printf 'baseline(b) INSERT + pg_notify:  %6.0f events/s  (before %.0f, after %.0f; %.0f/%.0f us server CPU, %d WAL bytes an event)\n' \
	"$B" "${RATE["baseline(b)"]}" "${RATE["baseline(b) again"]}" "${CPU["baseline(b)"]}" "${CPU["baseline(b) again"]}" "${WAL["baseline(b)"]}"
missed=0
report() { # report <label> <key> <baseline letter> [<target ratio>]
	local r=${RATE[$2]} base ratio verdict=""
	if [ "$3" = a ]; then base=$A; else base=$B; fi
	ratio=$(calc "$r / $base")
	if [ -n "${4:-}" ]; then
		if awk "BEGIN { exit !($ratio >= $4) }"; then
			verdict="  [target >= $4: met]"
		else
			verdict="  [target >= $4: MISSED]"
			missed=1
		fi
	fi
	printf '%s: %.0f events/s = %.2f x baseline(%s) %.0f events/s%s  (%.2f x (a), %.2f x (b); %.0f us server CPU, %d WAL bytes an event)\n' \
		"$1" "$r" "$ratio" "$3" "$base" "$verdict" "$(calc "$r / $A")" "$(calc "$r / $B")" "${CPU[$2]}" "${WAL[$2]}"
}
[ -n "${RATE["ingest notify-on"]:-}" ] && report "ingest notify=on" "ingest notify-on" b 0.9
[ -n "${RATE["ingest notify-direct"]:-}" ] && report "ingest notify=on, notify_worker=off" "ingest notify-direct" b
[ -n "${RATE["ingest notify-off"]:-}" ] && report "ingest notify=off" "ingest notify-off" a 0.8
report "ingest duplicates" "ingest duplicates" a 1.0
for key in "${KEYS[@]}"; do
	case $key in
	"ingest notify-on" | "ingest notify-direct" | "ingest notify-off" | "ingest duplicates" | baseline*) ;;
	"ingest writes") report "the writes alone (no verification, decoding or rule; the ceiling)" "$key" a ;;
	*) report "$key" "$key" a ;;
	esac
done
echo "run took $(($(date +%s) - STARTED)) s"

[ "$fail" = 0 ] || sp_die "verification failed: see above"
echo "verified: every event landed exactly once ($TOTAL webhook_event rows, $TOTAL SUCCESSFUL payments," \
	"$TOTAL payment_flow rows, $expect_trigger orders paid by the trigger); $TOTAL duplicates changed nothing"
if [ "$missed" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
	sp_die "a throughput target was missed (BENCH_STRICT=1)"
fi
exit 0
