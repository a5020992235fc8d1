#!/usr/bin/env bash
# Webhook ingest: events/s and server CPU of stripepay.stripe_ingest_webhook()
# at 16 concurrent clients with durable commits, against two baselines
# measured on the same throwaway cluster in the same run.  Beside it, a
# second database of the same cluster whose webhook_event holds BENCH_PREFILL
# events (issue 18): its phases run right after their fresh-table twins, so
# that the machine's drift does not stand between the two.  See bench/README.md.
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
#   BENCH_PREFILL=2000000    events in the scale database's webhook_event, made with
#                            SQL (prefill.sql); 0: no scale database
#   BENCH_PREFILL_JOBS=2     sessions that make them
#   BENCH_PREFILL_TIMEOUT=1200  seconds the prefill may take before the run fails
#   BENCH_SCALE_SETS=notify-on
#                            the first-delivery sets that run on the big table too,
#                            each right after its fresh-table phase; the
#                            duplicates always do
#   BENCH_VARIANTS=1         adds notify-off-no-trigger, and a bare INSERT into a
#                            copy of webhook_event
#   BENCH_SO=path            run the ingest from this build of stripepay.so instead
#                            of the installed one (../breakdown.sh uses it); if it
#                            prints SPTIME lines, each phase's breakdown is shown
#   BENCH_PROFILE=1          pg_stat_statements (track = all): where each phase's
#                            time goes (slows every phase down)
#   BENCH_PERF=1             perf record (system-wide, flat) of each phase, top functions
#   BENCH_WAITS=1            sample pg_stat_activity every 20 ms during each phase and
#                            print what the active backends were waiting on
#   BENCH_EXTRA_SQL=file     run file (psql, superuser) after the set-up of each
#                            database: a what-if (say, a dropped index) without
#                            touching the tree; examples in whatif/
#   BENCH_CONF="lines"       postgresql.conf lines for the cluster (a what-if such
#                            as wal_compression = lz4)
#   BENCH_STRICT=1           exit 1 when a target is missed
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
PREFILL=${BENCH_PREFILL:-2000000}
PREFILL_JOBS=${BENCH_PREFILL_JOBS:-2}
PREFILL_CAP=${BENCH_PREFILL_TIMEOUT:-1200}
SO=${BENCH_SO:-}
SECRET="whsec_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
STARTED=$(date +%s)

read -r -a SETS <<<"${BENCH_SETS:-notify-on notify-direct notify-off writes}"
[ "$VARIANTS" = 1 ] && [ -z "${BENCH_SETS:-}" ] && SETS+=(notify-off-no-trigger)
for set in "${SETS[@]}"; do
	[[ $set =~ ^(notify-(on|direct|off)(-no-trigger)?|writes)$ ]] || sp_die "BENCH_SETS: unknown set $set"
done
SCALE_SETS=()
[ "$PREFILL" -gt 0 ] && read -r -a SCALE_SETS <<<"${BENCH_SCALE_SETS:-notify-on}"
for set in "${SCALE_SETS[@]}"; do
	[[ " ${SETS[*]} " = *" $set "* ]] || sp_die "BENCH_SCALE_SETS: $set is not in BENCH_SETS, so there is no fresh-table figure"
	[ "$set" != writes ] || sp_die "BENCH_SCALE_SETS: writes is not an ingest"
done
# one fresh event, and PENDING payment, per first delivery, in each database
TOTAL=$((N * ${#SETS[@]}))
TOTAL_SCALE=$((N * ${#SCALE_SETS[@]}))
DB_SCALE=bench_scale
[ -z "$SO" ] || [ -r "$SO" ] || sp_die "BENCH_SO: cannot read $SO"

# --- helpers --------------------------------------------------------------------

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

# in_db <database> <command...>: runs it with that database as the default
in_db() {
	local saved=$PGDATABASE
	export PGDATABASE=$1
	shift
	"$@"
	export PGDATABASE=$saved
}

# Signs events first..last now (the tolerance is 300 s), replacing bench_sig.
sign() {
	python3 "$HERE/events.py" sign "$SP_TMP/bodies.$PGDATABASE.bin" "$SECRET" "$1" "$2" |
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
	for _ in $(seq 100); do
		[ "$(q -c "SELECT count(*) FROM stripepay.notify_outbox")" = 0 ] && return
		sleep 0.1
	done
	sp_die "the notifier did not drain the outbox"
}

# Full-page images written so far: the first change of a page after a
# checkpoint logs the whole page, so a bigger index costs more WAL.
fpi() { q -c "SELECT wal_fpi FROM pg_stat_wal"; }

declare -A RATE CPU WAL FPI
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
# phase <key> <pgbench script> <first event> <count> [<events>]: pgbench
# over count events from first on, each client taking its own contiguous
# slice, one event a transaction; with <events>, event numbers go round
# first..first+events-1 (duplicate.sql: more deliveries than events).
phase() {
	local key=$1 script=$2 first=$3 count=$4 events=${5:-$4} per out t0 rate processed cpu0 cpu1
	local perf_pid="" perf_data waits_pid="" lsn0 lsn1 fpi0 fpi1 log0
	[[ $script = /* ]] || script=$HERE/$script
	per=$((count / CLIENTS))
	sign "$first" $((first + events - 1))
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
	fpi0=$(fpi)
	log0=$(stat -c %s "$SP_TMP/server.log")
	cpu0=$(server_cpu)
	t0=$(date +%s.%N)
	if ! timeout "$CAP" "$BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$JOBS" -t "$per" \
		-D base=$((first - 1)) -D per="$per" -D i=1 -D events="$events" -f "$script" >"$out" 2>&1; then
		tail -30 "$out" >&2
		sp_die "phase $key failed (or took more than $CAP s)"
	fi
	sleep 0.3		# the postmaster reaps the backends; they report their stats
	cpu1=$(server_cpu)
	lsn1=$(q -c "SELECT pg_current_wal_insert_lsn()")
	fpi1=$(fpi)
	stop_bg
	processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\)\/.*/\1/p' "$out")
	[ "$processed" = "$count" ] || { cat "$out" >&2; sp_die "phase $key processed $processed of $count events"; }
	rate=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")
	[ -n "$rate" ] || { cat "$out" >&2; sp_die "no tps in the pgbench output of $key"; }
	RATE[$key]=$rate
	CPU[$key]=$(calc "($cpu1 - $cpu0) * 1000000 / $(getconf CLK_TCK) / $count")
	WAL[$key]=$(q -c "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0') / $count)")
	FPI[$key]=$(calc "($fpi1 - $fpi0) / $count")
	KEYS+=("$key")
	sp_log "$(printf '%-30s %-12s %6.0f events/s  %5.0f us server CPU/event  %5d WAL bytes/event  %4.2f FPI/event  (%d events, latency avg %s ms, %.1f s)' \
		"$key" "($PGDATABASE)" "$rate" "${CPU[$key]}" "${WAL[$key]}" "${FPI[$key]}" "$count" \
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
	if [ -n "$SO" ] && tail -c +$((log0 + 1)) "$SP_TMP/server.log" | grep -q '^SPTIME '; then
		sp_log "breakdown, $key: us an event (instrumented build)"
		tail -c +$((log0 + 1)) "$SP_TMP/server.log" | grep '^SPTIME ' |
			python3 "$HERE/../breakdown.py" "${CPU[$key]}" >&2
	fi
	if [ -n "$perf_pid" ]; then
		sp_log "perf, $key: top functions (every CPU, idle included)"
		perf report -i "$perf_data" --no-children --sort comm,dso,sym --stdio >"$perf_data.txt" 2>/dev/null || true
		grep -v '^#' "$perf_data.txt" | grep -v '^$' | head -40 >&2 || true
	fi
	return 0
}

# "<webhook_event> <payments SUCCESSFUL> <payment_flow> <payment_flow new SUCCESSFUL> <orders paid> <linked>"
# of the default database
counts() {
	q -F ' ' -c "SELECT (SELECT count(*) FROM stripepay.webhook_event),
		(SELECT count(*) FROM stripepay.payment_record WHERE status = 'SUCCESSFUL'),
		(SELECT count(*) FROM stripepay.payment_flow),
		(SELECT count(DISTINCT event_id) FROM stripepay.payment_flow
		  WHERE NOT already_processed AND payment_status = 'SUCCESSFUL'),
		(SELECT count(*) FROM public.orders WHERE status = 'paid'),
		(SELECT count(*) FROM bench_event b
		   JOIN stripepay.webhook_event w ON w.id = b.evt_id
		   JOIN stripepay.payment_record p ON p.id = w.payment_id
		  WHERE w.type = 'payment_intent.succeeded' AND p.status = 'SUCCESSFUL'
		    AND p.payment_intent_id = w.object_id AND p.order_id = w.order_id)"
}

# first_delivery <key> <set> <first event>: N fresh events through <set>,
# and a check that their notifications took the way it asked for
first_delivery() {
	local key=$1 set=$2 first=$3 script=ingest.sql queued_before want
	case $set in
	notify-on*) set_notify on ;;
	notify-direct*) set_notify on off ;;
	notify-off* | writes) set_notify off ;;
	esac
	[[ $set = *-no-trigger ]] && q -c "ALTER TABLE stripepay.payment_flow DISABLE TRIGGER mark_order_paid"
	queued_before=$(queued)
	[ "$set" = writes ] && script=writes.sql
	phase "$key" "$script" "$first" "$N"
	wait_drained
	case $set in
	notify-on*) want=$N ;;
	*) want=0 ;;
	esac
	[ $(($(queued) - queued_before)) = "$want" ] ||
		sp_die "$key: $(($(queued) - queued_before)) notifications went through the notifier, expected $want"
	[[ $set = *-no-trigger ]] && q -c "ALTER TABLE stripepay.payment_flow ENABLE TRIGGER mark_order_paid"
	return 0
}

# load <total>: the default database's shop, total PENDING payments, their
# events (bodies kept for signing) and the bench's tables
load() {
	local total=$1
	q -v total="$total" -v secret="$SECRET" -f "$HERE/setup.sql" >/dev/null
	[ "$PROFILE" = 1 ] && q -c "CREATE EXTENSION pg_stat_statements"
	if [ -n "${BENCH_EXTRA_SQL:-}" ]; then
		sp_log "what-if ($PGDATABASE): $BENCH_EXTRA_SQL"
		q -f "$BENCH_EXTRA_SQL"
	fi
	bench_pin_module
	q -c "\\copy (SELECT id, order_id, payment_intent_id, amount, currency FROM stripepay.payment_record ORDER BY id) TO '$SP_TMP/payments.tsv'"
	python3 "$HERE/events.py" generate "$SP_TMP/payments.tsv" "$SP_TMP/bodies.$PGDATABASE.bin" "$SP_TMP/bench_event.copy" >&2
	q -c "\\copy bench_event (n, evt_id, body) FROM '$SP_TMP/bench_event.copy' WITH (FORMAT binary)"
	rm -f "$SP_TMP/bench_event.copy"
	[ "$(q -c "SELECT count(*) FROM bench_event")" = "$total" ] || sp_die "bench_event was not loaded"
}

# The scale database's history: webhook_event filled up to PREFILL rows with
# SQL, by PREFILL_JOBS sessions at once, then vacuumed as autovacuum would.
prefill() {
	local have want per j first last p pids=() t0
	have=$(q -c "SELECT count(*) FROM stripepay.webhook_event")
	want=$((PREFILL - have))
	[ "$want" -gt 0 ] || return 0
	sp_log "prefill: $want events into $PGDATABASE's webhook_event, with SQL, $PREFILL_JOBS sessions"
	q -c "CREATE TABLE bench_template (slot int PRIMARY KEY, type text NOT NULL, prefix text NOT NULL, obj jsonb NOT NULL)"
	python3 "$HERE/events.py" templates "$SP_ROOT/test/fixtures/events" | q
	t0=$(date +%s)
	per=$(((want + PREFILL_JOBS - 1) / PREFILL_JOBS))
	for ((j = 0; j < PREFILL_JOBS; j++)); do
		first=$((j * per + 1))
		last=$(((j + 1) * per < want ? (j + 1) * per : want))
		[ "$first" -le "$last" ] || continue
		timeout "$PREFILL_CAP" psql -X -q -At -v first="$first" -v last="$last" -v total="$want" \
			-v seed="$SECRET" -v span_days=730 -f "$HERE/prefill.sql" &
		pids+=($!)
		BG+=($!)
	done
	for p in "${pids[@]}"; do
		wait "$p" || sp_die "the prefill failed (or took more than $PREFILL_CAP s)"
	done
	BG=()
	[ "$(q -c "SELECT count(*) FROM stripepay.webhook_event")" = "$PREFILL" ] ||
		sp_die "the prefill made $(q -c "SELECT count(*) FROM stripepay.webhook_event") events, expected $PREFILL"
	q -c "VACUUM ANALYZE stripepay.webhook_event" -c "CHECKPOINT"
	sp_log "prefill: $want events in $(($(date +%s) - t0)) s"
}

# sizes: webhook_event's relations, in all and per million events
sizes() {
	local n
	n=$(q -c "SELECT count(*) FROM stripepay.webhook_event")
	echo "webhook_event of database $PGDATABASE ($n events): MB in all, MB per million events"
	q -c "WITH r (what, bytes) AS (
		SELECT 'heap', pg_relation_size('stripepay.webhook_event')
		UNION ALL SELECT 'TOAST', pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'stripepay.webhook_event'::regclass
		UNION ALL SELECT 'TOAST index', pg_indexes_size(reltoastrelid) FROM pg_class WHERE oid = 'stripepay.webhook_event'::regclass
		UNION ALL SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index
		 WHERE indrelid = 'stripepay.webhook_event'::regclass
		UNION ALL SELECT 'indexes (pg_indexes_size)', pg_indexes_size('stripepay.webhook_event')
		UNION ALL SELECT 'total (pg_total_relation_size)', pg_total_relation_size('stripepay.webhook_event'))
		SELECT format('  %-46s %9s %9s', what, round(bytes / 1048576.0), round(bytes / 1048576.0 * 1000000 / $n)) FROM r"
	q -c "SELECT format('  payloads: events of the ingest %s bytes as text, %s stored; %s',
		(SELECT round(avg(length(w.payload::text))) FROM stripepay.webhook_event w JOIN bench_event b ON b.evt_id = w.id),
		(SELECT round(avg(pg_column_size(w.payload))) FROM stripepay.webhook_event w JOIN bench_event b ON b.evt_id = w.id),
		(SELECT CASE WHEN count(*) = 0 THEN 'none made with SQL'
		             ELSE format('events made with SQL %s bytes as text, %s stored (a sample of %s)',
		                         round(avg(length(payload::text))), round(avg(pg_column_size(payload))), count(*)) END
		   FROM (SELECT payload FROM stripepay.webhook_event w TABLESAMPLE SYSTEM (1)
		          WHERE NOT EXISTS (SELECT FROM bench_event b WHERE b.evt_id = w.id)) s))"
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
bench_cluster_start bench/ingest "$PROFILE_CONF${BENCH_CONF:+
$BENCH_CONF}"

# --- set-up ----------------------------------------------------------------------
sp_log "set-up: $TOTAL PENDING payments and orders, $TOTAL events"
load "$TOTAL"
if [ "$PREFILL" -gt 0 ]; then
	sp_log "set-up of the scale database $DB_SCALE: $TOTAL_SCALE PENDING payments and events, and its history"
	q -c "CREATE DATABASE $DB_SCALE"
	in_db "$DB_SCALE" load "$TOTAL_SCALE"
	in_db "$DB_SCALE" prefill
fi

# --- the phases --------------------------------------------------------------------
# The baselines bracket the ingest phases (once before, once after); each
# figure is compared with their mean, and their spread is printed.  Each
# scale phase runs right after its fresh-table twin.
phase "baseline(a)" baseline_a.sql 1 "$N"
phase "baseline(b)" baseline_b.sql 1 "$N"
next=1
next_scale=1
for set in "${SETS[@]}"; do
	key="ingest $set"
	[ -n "${RATE[$key]:-}" ] && key="$key from $next"
	first_delivery "$key" "$set" "$next"
	next=$((next + N))
	if [[ " ${SCALE_SETS[*]} " = *" $set "* ]] && [ -z "${RATE["scale $set"]:-}" ]; then
		in_db "$DB_SCALE" first_delivery "scale $set" "$set" "$next_scale"
		next_scale=$((next_scale + N))
	fi
done

# Every event once more, freshly signed: each must answer already_processed.
# The scale database has fewer events of its own: they go round, as often.
before=$(counts)
[ "$PREFILL" -gt 0 ] && before_scale=$(in_db "$DB_SCALE" counts)
set_notify on
phase "ingest duplicates" duplicate.sql 1 "$TOTAL"
[ "$PREFILL" -gt 0 ] && in_db "$DB_SCALE" phase "scale duplicates" duplicate.sql 1 "$TOTAL" "$TOTAL_SCALE"
[ "$VARIANTS" = 1 ] && phase "INSERT webhook_event copy" baseline_we.sql 1 "$N"

phase "baseline(a) again" baseline_a.sql $((TOTAL - N + 1)) "$N"
phase "baseline(b) again" baseline_b.sql $((TOTAL - N + 1)) "$N"
after=$(counts)

# --- verification: every event landed exactly once ----------------------------------
read -r we ok flow flow_new paid linked <<<"$after"
expect_trigger=$((N * $(printf '%s\n' "${SETS[@]}" | grep -cv no-trigger || true)))
fail=0
check "webhook_event rows" "$we" "$TOTAL"
check "payment_record rows SUCCESSFUL" "$ok" "$TOTAL"
check "payment_record rows in all" "$(q -c "SELECT count(*) FROM stripepay.payment_record")" "$TOTAL"
check "payment_flow rows" "$flow" "$TOTAL"
check "payment_flow rows, one new SUCCESSFUL per event" "$flow_new" "$TOTAL"
check "orders marked paid by the user trigger" "$paid" "$expect_trigger"
check "events linked to their own payment" "$linked" "$TOTAL"
check "counts unchanged by the duplicates" "$after" "$before"
check "baseline (a) rows" "$(q -c "SELECT count(*) FROM bench_sink_a")" $((2 * N))
check "baseline (b) rows" "$(q -c "SELECT count(*) FROM bench_sink_b")" $((2 * N))
if [ "$PREFILL" -gt 0 ]; then
	read -r we ok flow flow_new paid linked <<<"$(in_db "$DB_SCALE" counts)"
	expect=$((N * $(printf '%s\n' "${SCALE_SETS[@]}" | grep -cv no-trigger || true)))
	check "$DB_SCALE: webhook_event rows" "$we" $((PREFILL + TOTAL_SCALE))
	check "$DB_SCALE: payment_record rows SUCCESSFUL" "$ok" "$TOTAL_SCALE"
	check "$DB_SCALE: payment_flow rows" "$flow" "$TOTAL_SCALE"
	check "$DB_SCALE: payment_flow rows, one new SUCCESSFUL per event" "$flow_new" "$TOTAL_SCALE"
	check "$DB_SCALE: orders marked paid by the user trigger" "$paid" "$expect"
	check "$DB_SCALE: events linked to their own payment" "$linked" "$TOTAL_SCALE"
	check "$DB_SCALE: counts unchanged by the duplicates" "$(in_db "$DB_SCALE" counts)" "$before_scale"
fi

# --- report ---------------------------------------------------------------------
mean() { calc "(${1} + ${2}) / 2"; }
A=$(mean "${RATE["baseline(a)"]}" "${RATE["baseline(a) again"]}")
B=$(mean "${RATE["baseline(b)"]}" "${RATE["baseline(b) again"]}")
A_CPU=$(mean "${CPU["baseline(a)"]}" "${CPU["baseline(a) again"]}")
missed=0
verdict() { # verdict <value> <op> <target>: met or MISSED
	if awk "BEGIN { exit !($1 $2 $3) }"; then echo "target $2 $3: met"; else missed=1; echo "target $2 $3: MISSED"; fi
}
echo
echo "stripepay webhook ingest: $CLIENTS clients, one event a transaction, fsync=on synchronous_commit=on,"
echo "$N events a phase, ~$(q -c "SELECT avg(length(body))::int FROM bench_event") bytes each, $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(uname -r)"
[ "$PROFILE" = 1 ] && echo "(BENCH_PROFILE=1: pg_stat_statements with track = all slows every phase)"
[ -n "${BENCH_EXTRA_SQL:-}" ] && echo "(what-if: $BENCH_EXTRA_SQL)"
[ -n "${BENCH_CONF:-}" ] && echo "(postgresql.conf: ${BENCH_CONF//$'\n'/; })"
[ -n "$SO" ] && echo "(the ingest ran from $SO)"
echo
echo "every phase, in order (server CPU: every process of the cluster; FPI: full-page images in the WAL)"
for key in "${KEYS[@]}"; do
	printf '%-34s %6.0f events/s  %4.0f us server CPU  %5d WAL bytes  %4.2f FPI an event\n' \
		"$key" "${RATE[$key]}" "${CPU[$key]}" "${WAL[$key]}" "${FPI[$key]}"
done
echo
printf 'baseline(a) INSERT jsonb:        %6.0f events/s  (before %.0f, after %.0f), %.0f us server CPU an event (%.0f/%.0f)\n' \
	"$A" "${RATE["baseline(a)"]}" "${RATE["baseline(a) again"]}" "$A_CPU" "${CPU["baseline(a)"]}" "${CPU["baseline(a) again"]}"
printf 'baseline(b) INSERT + pg_notify:  %6.0f events/s  (before %.0f, after %.0f)\n' \
	"$B" "${RATE["baseline(b)"]}" "${RATE["baseline(b) again"]}"
for key in "${KEYS[@]}"; do
	case $key in
	"ingest "*) printf '%-34s = %.2f x (a), %.2f x (b) in events/s; %.2f x (a) in server CPU an event\n' \
		"$key" "$(calc "${RATE[$key]} / $A")" "$(calc "${RATE[$key]} / $B")" "$(calc "${CPU[$key]} / $A_CPU")" ;;
	esac
done
echo
echo "targets"
for set in notify-on notify-off; do
	key="ingest $set"
	[ -n "${RATE[$key]:-}" ] || continue
	r=$(calc "${CPU[$key]} / $A_CPU")
	printf 'first delivery (%s): %.0f us server CPU = %.2f x baseline(a) %.0f us  [%s]\n' \
		"$set" "${CPU[$key]}" "$r" "$A_CPU" "$(verdict "$r" '<=' 2)"
done
r=$(calc "${RATE["ingest duplicates"]} / $A")
printf 'duplicates: %.0f events/s = %.2f x baseline(a) %.0f events/s  [%s]  (%.0f us server CPU)\n' \
	"${RATE["ingest duplicates"]}" "$r" "$A" "$(verdict "$r" '>=' 1.8)" "${CPU["ingest duplicates"]}"
if [ "$PREFILL" -gt 0 ]; then
	for set in "${SCALE_SETS[@]}"; do
		r=$(calc "${RATE["scale $set"]} / ${RATE["ingest $set"]}")
		printf 'first delivery (%s), %d events in webhook_event: %.0f events/s = %.2f x fresh table %.0f  [%s]\n  server CPU %.0f vs %.0f us (%.2f x), WAL %d vs %d bytes, FPI %.2f vs %.2f an event\n' \
			"$set" "$PREFILL" "${RATE["scale $set"]}" "$r" "${RATE["ingest $set"]}" "$(verdict "$r" '>=' 0.9)" \
			"${CPU["scale $set"]}" "${CPU["ingest $set"]}" "$(calc "${CPU["scale $set"]} / ${CPU["ingest $set"]}")" \
			"${WAL["scale $set"]}" "${WAL["ingest $set"]}" "${FPI["scale $set"]}" "${FPI["ingest $set"]}"
	done
	r=$(calc "${RATE["scale duplicates"]} / ${RATE["ingest duplicates"]}")
	printf 'duplicates, %d events in webhook_event: %.0f events/s = %.2f x fresh table %.0f  [%s]\n  server CPU %.0f vs %.0f us (%.2f x)\n' \
		"$PREFILL" "${RATE["scale duplicates"]}" "$r" "${RATE["ingest duplicates"]}" "$(verdict "$r" '>=' 0.9)" \
		"${CPU["scale duplicates"]}" "${CPU["ingest duplicates"]}" "$(calc "${CPU["scale duplicates"]} / ${CPU["ingest duplicates"]}")"
fi
echo
sizes
[ "$PREFILL" -gt 0 ] && in_db "$DB_SCALE" sizes
echo "run took $(($(date +%s) - STARTED)) s"

[ "$fail" = 0 ] || sp_die "verification failed: see above"
scale_note=""
[ "$PREFILL" -gt 0 ] && scale_note="; in $DB_SCALE, $TOTAL_SCALE of each"
echo "verified: every event landed exactly once ($TOTAL events, $TOTAL SUCCESSFUL payments and payment_flow rows," \
	"$expect_trigger orders paid by the trigger$scale_note); the duplicates changed nothing"
if [ "$missed" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
	sp_die "a target was missed (BENCH_STRICT=1)"
fi
exit 0
