#!/usr/bin/env bash
# Webhook throughput through stripepay-relay, one event a transaction
# (--batch 1) and batched (--batch N), against stripe-sync-engine's webhook
# handler, driven by wrk over the same signed events at the same number of
# connections, on the same throwaway cluster in the same run.  See
# bench/README.md.
#
#   bash bench/relay/run.sh
#
# Environment:
#   BENCH_EVENTS=20000       events per phase
#   BENCH_CONNECTIONS=16     wrk connections
#   BENCH_POOL=4             the relay's --pool
#   BENCH_BATCH=32           the relay's --batch in the batched phases
#   BENCH_SSE_POOL=10        stripe-sync-engine's poolConfig.max (its default)
#   BENCH_PHASES="sse relay-batch1 relay-batch relay-batch-nopipeline"
#                            phases in order; also relay-batch-notify-off
#   BENCH_PHASE_TIMEOUT=120  seconds a phase may take before the run fails
#   BENCH_STRICT=1           exit 1 when a target is missed
#   SP_KEEP_TMP=1            keep the cluster's directory (logs, wrk output)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../../test/lib/env.sh"
. "$HERE/../lib.sh"
INGEST=$HERE/../ingest

N=${BENCH_EVENTS:-20000}
CONNS=${BENCH_CONNECTIONS:-16}
POOL=${BENCH_POOL:-4}
BATCH=${BENCH_BATCH:-32}
SSE_POOL=${BENCH_SSE_POOL:-10}
CAP=${BENCH_PHASE_TIMEOUT:-120}
read -r -a PHASES <<<"${BENCH_PHASES:-sse relay-batch1 relay-batch relay-batch-nopipeline}"
SECRET="whsec_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
RELAY_ROLE=bench_relay

n_relay=0
for p in "${PHASES[@]}"; do
	case $p in
	sse) ;;
	relay-batch1 | relay-batch | relay-batch-nopipeline | relay-batch-notify-off) n_relay=$((n_relay + 1)) ;;
	*) sp_die "BENCH_PHASES: unknown phase $p" ;;
	esac
done
TOTAL=$((N * (n_relay > 0 ? n_relay : 1)))	# a fresh event and PENDING payment per relay phase


# --- dependencies: wrk (Debian), node and the pinned stripe-sync-engine (npm) ---
sp_install_deps
bench_deps=()
command -v wrk >/dev/null || bench_deps+=(wrk)
command -v node >/dev/null || bench_deps+=(nodejs)
command -v npm >/dev/null || bench_deps+=(npm)
if [ ${#bench_deps[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || sp_die "missing: ${bench_deps[*]} (install them as root, or run this as root)"
	sp_log "installing ${bench_deps[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${bench_deps[@]}" >/dev/null
fi
if [[ " ${PHASES[*]} " = *" sse "* ]] &&
	{ [ ! -f "$HERE/sse/node_modules/.installed" ] ||
		[ "$HERE/sse/package-lock.json" -nt "$HERE/sse/node_modules/.installed" ]; }; then
	sp_log "installing stripe-sync-engine as package-lock.json pins it"
	(cd "$HERE/sse" && npm ci --no-audit --no-fund --prefer-offline >/dev/null && touch node_modules/.installed)
fi
sp_build_install

# --- processes, stopped on any exit --------------------------------------------
sp_make_tmp
SERVER_PID=""
stop_server() {
	if [ -n "$SERVER_PID" ]; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
	fi
}
# shellcheck disable=SC2154  # rc is set in the trap
trap 'rc=$?; set +e; stop_server; (exit $rc); sp_teardown' EXIT
bench_cluster_start bench/relay

# --- set-up: bench/ingest's shop, payments and events -----------------------------
sp_log "set-up: $TOTAL PENDING payments and orders, $TOTAL events"
q -v total="$TOTAL" -v secret="$SECRET" -f "$INGEST/setup.sql" >/dev/null
q -c "CREATE ROLE $RELAY_ROLE LOGIN IN ROLE stripepay_webhook" >/dev/null
bench_pin_module
q -c "\\copy (SELECT id, order_id, payment_intent_id, amount, currency FROM stripepay.payment_record ORDER BY id) TO '$SP_TMP/payments.tsv'"
python3 "$INGEST/events.py" generate "$SP_TMP/payments.tsv" "$SP_TMP/bodies.bin" "$SP_TMP/bench_event.copy" >&2
q -c "\\copy bench_event (n, evt_id, body) FROM '$SP_TMP/bench_event.copy' WITH (FORMAT binary)"
rm -f "$SP_TMP/bench_event.copy"
# VACUUM ANALYZE only tables with pages (bench/ingest/run.sh says why)
q >/dev/null <<'SQL'
SELECT format('VACUUM ANALYZE %s', c.oid::regclass) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname IN ('public', 'stripepay') AND pg_relation_size(c.oid) > 0
 ORDER BY 1 \gexec
SQL

wait_for_log() { # wait_for_log <file> <text>
	for _ in $(seq 1 300); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$1" >&2
	sp_die "the server did not start"
}

start_relay() { # start_relay <log> <relay flags...>
	local log=$1
	shift
	RELAY_PORT=$(sp_free_port)
	"$SP_ROOT/src/relay/stripepay-relay" --listen "127.0.0.1:$RELAY_PORT" \
		--dsn "host=$SP_TMP port=$PGPORT dbname=postgres user=$RELAY_ROLE" "$@" 2>"$log" &
	SERVER_PID=$!
	wait_for_log "$log" "listening on"
	URL="http://127.0.0.1:$RELAY_PORT/stripe"
}

start_sse() { # start_sse <log>
	SSE_PORT=$(sp_free_port)
	SSE_DATABASE_URL="postgresql://postgres@localhost/postgres?host=$SP_TMP&port=$PGPORT" \
		SSE_WEBHOOK_SECRET="$SECRET" SSE_PORT=$SSE_PORT SSE_POOL_MAX=$SSE_POOL \
		node "$HERE/sse/server.mjs" 2>"$1" &
	SERVER_PID=$!
	wait_for_log "$1" "listening on"
	[ "$(q -c "SELECT to_regclass('stripe.payment_intents') IS NOT NULL")" = t ] ||
		{ cat "$1" >&2; sp_die "stripe-sync-engine's migrations did not create stripe.payment_intents"; }
	URL="http://127.0.0.1:$SSE_PORT/webhooks"
}

set_notify() {
	q -c "LOAD 'stripepay'" -c "ALTER SYSTEM SET stripepay.notify = $1" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 0.2
	[ "$(q -c "LOAD 'stripepay'" -c "SHOW stripepay.notify")" = "$1" ] || sp_die "stripepay.notify is not $1"
}

declare -A RATE P50 P99 COMMITS
KEYS=()
# phase <key> <first event> : wrk sends events first..first+N-1, signed now,
# each once, over CONNS connections, to URL.
phase() {
	local key=$1 first=$2 out x0 x1 line
	out="$SP_TMP/wrk.$key.out"
	python3 "$HERE/signed.py" "$SP_TMP/bodies.bin" "$SECRET" "$first" $((first + N - 1)) "$SP_TMP/signed.bin"
	q -c "CHECKPOINT"
	sleep 0.3
	x0=$(q -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
	if ! BENCH_SIGNED="$SP_TMP/signed.bin" BENCH_COUNT=$N timeout $((CAP + 30)) \
		wrk -t1 -c"$CONNS" -d"${CAP}s" --timeout 10s -s "$HERE/load.lua" "$URL" >"$out" 2>&1; then
		cat "$out" >&2
		sp_die "wrk failed in phase $key"
	fi
	# the server's backends report their commits when they exit
	stop_server
	sleep 0.5
	x1=$(q -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
	line=$(grep '^BENCH ' "$out") || { cat "$out" >&2; sp_die "no figures from wrk in phase $key"; }
	field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
	[ "$(field answered)" = "$N" ] || { cat "$out" >&2; sp_die "phase $key: $(field answered) of $N events answered"; }
	[ "$(field not_ok)" = 0 ] || { cat "$out" >&2; sp_die "phase $key: $(field not_ok) events not answered 200"; }
	[ "$(field errors)" = 0 ] || { cat "$out" >&2; sp_die "phase $key: socket errors or timeouts"; }
	RATE[$key]=$(field rate)
	P50[$key]=$(field p50_ms)
	P99[$key]=$(field p99_ms)
	COMMITS[$key]=$((x1 - x0))
	KEYS+=("$key")
	sp_log "$(printf '%-26s %7.0f events/s  p50 %6.2f ms  p99 %6.2f ms  max %7.2f ms  %6d commits  (%d events, %s s, wrk counted %s requests)' \
		"$key" "${RATE[$key]}" "${P50[$key]}" "${P99[$key]}" "$(field max_ms)" "${COMMITS[$key]}" "$N" \
		"$(field seconds)" "$(field requests)")"
}

# --- the phases --------------------------------------------------------------------
next=1
sse_first=""
for p in "${PHASES[@]}"; do
	case $p in
	sse)
		# the events of the first relay phase: the same bytes, in its own schema
		sse_first=1
		start_sse "$SP_TMP/sse.log"
		phase sse 1
		;;
	relay-batch1 | relay-batch | relay-batch-nopipeline | relay-batch-notify-off)
		flags=(--pool "$POOL" --batch "$BATCH" --pipeline on)
		[ "$p" = relay-batch1 ] && flags=(--pool "$POOL" --batch 1)
		[ "$p" = relay-batch-nopipeline ] && flags=(--pool "$POOL" --batch "$BATCH" --pipeline off)
		if [ "$p" = relay-batch-notify-off ]; then set_notify off; else set_notify on; fi
		start_relay "$SP_TMP/$p.log" "${flags[@]}"
		phase "$p" "$next"
		next=$((next + N))
		;;
	esac
	stop_server
done
set_notify on

# --- verification: every event landed exactly once -------------------------------
fail=0
if [ "$n_relay" -gt 0 ]; then
	R=$((next - 1))
	check "stripepay webhook_event rows" "$(q -c "SELECT count(*) FROM stripepay.webhook_event")" "$R"
	check "stripepay events of the bench, each once" \
		"$(q -c "SELECT count(*) FROM bench_event b JOIN stripepay.webhook_event w ON w.id = b.evt_id WHERE b.n <= $R")" "$R"
	check "payments SUCCESSFUL" "$(q -c "SELECT count(*) FROM stripepay.payment_record WHERE status = 'SUCCESSFUL'")" "$R"
	check "payment_flow rows, one new SUCCESSFUL per event" \
		"$(q -c "SELECT count(DISTINCT event_id) FROM stripepay.payment_flow WHERE NOT already_processed AND payment_status = 'SUCCESSFUL'")" "$R"
	check "payment_flow rows in all" "$(q -c "SELECT count(*) FROM stripepay.payment_flow")" "$R"
	check "orders marked paid by the user trigger" \
		"$(q -c "SELECT count(*) FROM public.orders WHERE status = 'paid'")" "$R"
fi
if [ -n "$sse_first" ]; then
	check "stripe-sync-engine payment_intents rows" "$(q -c "SELECT count(*) FROM stripe.payment_intents")" "$N"
	check "stripe-sync-engine payment_intents of the bench, succeeded" \
		"$(q -c "SELECT count(*) FROM stripe.payment_intents i JOIN stripepay.payment_record p
			ON p.payment_intent_id = i.id WHERE i.status = 'succeeded' AND p.id <= $N")" "$N"
fi

# --- report ---------------------------------------------------------------------
echo
echo "webhooks through HTTP: wrk, $CONNS connections, one thread; $N unique signed events a phase,"
echo "~$(q -c "SELECT avg(length(body))::int FROM bench_event") bytes each (payment_intent.succeeded, each for its own PENDING payment);"
echo "fsync=on synchronous_commit=on; relay --pool $POOL; stripe-sync-engine pool max $SSE_POOL; $(nproc) CPUs shared by"
echo "Postgres, wrk and the server under test, $(uname -r)"
for k in "${KEYS[@]}"; do
	printf '%-26s %7.0f events/s  p50 %6.2f ms  p99 %6.2f ms  %6d commits\n' "$k" "${RATE[$k]}" "${P50[$k]}" "${P99[$k]}" "${COMMITS[$k]}"
done
missed=0
verdict() { # verdict <met?>
	if [ "$1" = 1 ]; then echo met; else missed=1; echo MISSED; fi
}
best=""
[ -n "${RATE[relay-batch]:-}" ] && best=relay-batch
if [ -n "$best" ] && [ -n "${RATE[sse]:-}" ]; then
	ratio=$(calc "${RATE[$best]} / ${RATE[sse]}")
	printf 'stripepay (relay --batch %s) %.0f events/s = %.2f x stripe-sync-engine %.0f events/s  [target >= 2: %s]\n' \
		"$BATCH" "${RATE[$best]}" "$ratio" "${RATE[sse]}" "$(verdict "$(awk "BEGIN { print ($ratio >= 2) }")")"
	[ -n "${RATE[relay-batch1]:-}" ] &&
		printf 'stripepay (relay --batch 1)  %.0f events/s = %.2f x stripe-sync-engine\n' \
			"${RATE[relay-batch1]}" "$(calc "${RATE[relay-batch1]} / ${RATE[sse]}")"
	printf 'p50/p99: stripepay %.2f/%.2f ms, stripe-sync-engine %.2f/%.2f ms\n' \
		"${P50[$best]}" "${P99[$best]}" "${P50[sse]}" "${P99[sse]}"
fi
if [ -n "$best" ]; then
	printf 'stripepay p99 %.2f ms  [target <= 10 ms: %s]\n' "${P99[$best]}" \
		"$(verdict "$(awk "BEGIN { print (${P99[$best]} <= 10) }")")"
fi
[ "$fail" = 0 ] || sp_die "the events did not land exactly once"
if [ "$missed" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
	exit 1
fi
exit 0
