#!/usr/bin/env bash
# stripe_pay()'s own cost beyond its HTTP round trip: pgbench calls of
# SELECT ... FROM stripepay.stripe_pay(...) against a local stand-in for
# Stripe (fakestripe.c), compared with the round trip alone to the same
# server from libcurl (rawloop.c), at 1 and 16 clients, in the same run.
# See bench/README.md.
#
#   bash bench/pay/run.sh
#
# Environment:
#   BENCH_CALLS=4000          calls a phase at 1 client
#   BENCH_CALLS16=16000       calls a phase at 16 clients (rounded to a multiple of 16)
#   BENCH_CLIENTS=16          the concurrent phase's clients (and rawloop threads)
#   BENCH_JOBS=2              pgbench threads
#   BENCH_SERVER_THREADS=2    fakestripe's threads
#   BENCH_PHASE_TIMEOUT=120   seconds a phase may take before the run fails
#   BENCH_SO=path             call stripe_pay from this build of stripepay.so instead of
#                             the installed one (../breakdown.sh pay uses it); if it
#                             prints SPTIME lines, each phase's breakdown is shown
#   BENCH_STRICT=1            exit 1 when a target is missed
#   SP_KEEP_TMP=1             keep the cluster's directory (server log, outputs)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../../test/lib/env.sh"
. "$HERE/../lib.sh"

CALLS1=${BENCH_CALLS:-4000}
CLIENTS=${BENCH_CLIENTS:-16}
JOBS=${BENCH_JOBS:-2}
[ "$JOBS" -le "$CLIENTS" ] || JOBS=$CLIENTS
CALLS16=${BENCH_CALLS16:-16000}
CALLS16=$(((CALLS16 + CLIENTS - 1) / CLIENTS * CLIENTS))
SERVER_THREADS=${BENCH_SERVER_THREADS:-2}
CAP=${BENCH_PHASE_TIMEOUT:-120}
SO=${BENCH_SO:-}
[ -z "$SO" ] || [ -r "$SO" ] || sp_die "BENCH_SO: cannot read $SO"
STARTED=$(date +%s)


sp_install_deps
sp_build_install
sp_make_tmp

# --- the stand-in for Stripe and the round-trip loop, built in the temp dir -------
sp_log "building fakestripe and rawloop"
# shellcheck disable=SC2046  # pkg-config's flags are words
cc -O2 -Wall -Wextra -Werror -std=gnu11 -pthread -o "$SP_TMP/fakestripe" "$HERE/fakestripe.c" \
	$(pkg-config --cflags --libs libmicrohttpd)
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -Werror -std=gnu11 -pthread -o "$SP_TMP/rawloop" "$HERE/rawloop.c" \
	$(pkg-config --cflags --libs libcurl)

SERVER_PID=""
stop_server() { # prints fakestripe's counts
	if [ -n "$SERVER_PID" ]; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
	fi
}
# shellcheck disable=SC2154  # rc is set in the trap
trap 'rc=$?; set +e; stop_server; (exit $rc); sp_teardown' EXIT
"$SP_TMP/fakestripe" "$SP_TMP/fakestripe.port" "$HERE/checkout_session.json" "$SERVER_THREADS" \
	>"$SP_TMP/fakestripe.out" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
	[ -s "$SP_TMP/fakestripe.port" ] && break
	kill -0 "$SERVER_PID" 2>/dev/null || break
	sleep 0.05
done
[ -s "$SP_TMP/fakestripe.port" ] || { cat "$SP_TMP/fakestripe.out" >&2; sp_die "fakestripe did not start"; }
API="http://127.0.0.1:$(cat "$SP_TMP/fakestripe.port")"
sp_log "fakestripe listening at $API ($SERVER_THREADS threads)"

bench_cluster_start bench/pay "stripepay.api_base = '$API'"
q >/dev/null <<'SQL'
CREATE EXTENSION stripepay;
SELECT 1 FROM stripepay.configure(
    secret_key   => 'sk_test_' || md5(random()::text),
    brand_name   => 'Cheese & Co.',
    brand_slogan => 'Cheese, delivered',
    success_url  => 'https://shop.example/thanks?session={CHECKOUT_SESSION_ID}',
    cancel_url   => 'https://shop.example/cart');
CREATE TABLE public.bench_commit (n bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
SQL
[ "$(q -c "LOAD 'stripepay'" -c "SHOW stripepay.api_base")" = "$API" ] || sp_die "stripepay.api_base is not $API"
bench_pin_module

fake_cpu() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }

declare -A LAT P50 P99 RATE PGCPU FAKECPU STMT END
KEYS=()
record() { # record <key> <latency ms> <p50> <p99> <rate> <count> <pg ticks> <fake ticks>
	local hz
	hz=$(getconf CLK_TCK)
	LAT[$1]=$2 P50[$1]=$3 P99[$1]=$4 RATE[$1]=$5
	PGCPU[$1]=$(calc "$7 * 1000000 / $hz / $6")
	FAKECPU[$1]=$(calc "$8 * 1000000 / $hz / $6")
	KEYS+=("$1")
	sp_log "$(printf '%-18s %8.3f ms a call (p50 %s, p99 %s)  %7.0f calls/s  %4.0f us Postgres CPU, %3.0f us fakestripe CPU a call' \
		"$1" "$2" "${3:--}" "${4:--}" "$5" "${PGCPU[$1]}" "${FAKECPU[$1]}")"
}

# raw <key> <threads> <count a thread>: the round trip alone
raw() {
	local out="$SP_TMP/raw.$1.out" c0 f0 line
	c0=$(server_cpu)
	f0=$(fake_cpu)
	timeout $((CAP + 10)) "$SP_TMP/rawloop" "$API/v1/checkout/sessions" "$2" "$3" "$CAP" >"$out" 2>&1 ||
		{ cat "$out" >&2; sp_die "rawloop failed in $1"; }
	line=$(grep '^RAW ' "$out")
	field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
	[ "$(field requests)" = $(($2 * $3)) ] && [ "$(field errors)" = 0 ] ||
		{ cat "$out" >&2; sp_die "$1: $(field requests) requests, $(field errors) errors"; }
	record "$1" "$(field avg_ms)" "$(field p50_ms)" "$(field p99_ms)" "$(field rate)" $(($2 * $3)) \
		$(($(server_cpu) - c0)) $(($(fake_cpu) - f0))
}

# sql <key> <clients> <calls> <script> [-D var=value...]: pgbench, prepared
# statements, -r: the call's statement and the commit (END) timed apart
sql() {
	local key=$1 clients=$2 calls=$3 script=$4 out c0 f0 per lat rate processed log0
	shift 4
	out="$SP_TMP/pgbench.${key//[^a-zA-Z0-9]/_}.out"
	per=$((calls / clients))
	q -c "CHECKPOINT"
	sleep 0.2
	log0=$(stat -c %s "$SP_TMP/server.log")
	c0=$(server_cpu)
	f0=$(fake_cpu)
	timeout "$CAP" "$BIN/pgbench" -n -r -M prepared -c "$clients" -j $((clients < JOBS ? clients : JOBS)) -t "$per" \
		-D per="$per" -D i=1 "$@" -f "$HERE/$script" >"$out" 2>&1 ||
		{ tail -30 "$out" >&2; sp_die "phase $key failed (or took more than $CAP s)"; }
	sleep 0.3		# the backends exit and are reaped
	processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\)\/.*/\1/p' "$out")
	[ "$processed" = "$calls" ] || { cat "$out" >&2; sp_die "$key: $processed of $calls calls"; }
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")
	rate=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")
	# "   0.512   0  SELECT id FROM ..." : the statement that is not BEGIN, END or \set
	STMT[$key]=$(awk '/^statement latencies/ { on = 1; next } on && $3 != "BEGIN;" && $3 != "END;" && $3 !~ /^\\/ { print $1; exit }' "$out")
	END[$key]=$(awk '/^statement latencies/ { on = 1; next } on && $3 == "END;" { print $1; exit }' "$out")
	record "$key" "$lat" "" "" "$rate" "$calls" $(($(server_cpu) - c0)) $(($(fake_cpu) - f0))
	if [ -n "$SO" ] && tail -c +$((log0 + 1)) "$SP_TMP/server.log" | grep -q '^SPTIME '; then
		sp_log "breakdown, $key: us a call (instrumented build)"
		tail -c +$((log0 + 1)) "$SP_TMP/server.log" | grep '^SPTIME ' |
			python3 "$HERE/../breakdown.py" "${PGCPU[$key]}" >&2
	fi
}

# --- the phases: each stripe_pay phase between two measurements of the round trip ---
n1=$((CALLS1))
raw "raw 1" 1 "$CALLS1"
sql "stripe_pay 1" 1 "$CALLS1" pay.sql -D base=0
sql "SELECT 1, 1" 1 "$CALLS1" select1.sql
sql "INSERT commit, 1" 1 "$CALLS1" commit.sql -D base=0
raw "raw 1 again" 1 "$CALLS1"
raw "raw $CLIENTS" "$CLIENTS" $((CALLS16 / CLIENTS))
sql "stripe_pay $CLIENTS" "$CLIENTS" "$CALLS16" pay.sql -D base="$n1"
sql "SELECT 1, $CLIENTS" "$CLIENTS" "$CALLS16" select1.sql
sql "INSERT commit, $CLIENTS" "$CLIENTS" "$CALLS16" commit.sql -D base="$n1"
raw "raw $CLIENTS again" "$CLIENTS" $((CALLS16 / CLIENTS))

# --- verification: one Checkout Session a call, each recorded once ---------------
PAYS=$((CALLS1 + CALLS16))
RAWS=$((2 * CALLS1 + 2 * CALLS16))
fail=0
check "PENDING payments with their Checkout Session" \
	"$(q -c "SELECT count(*) FROM stripepay.payment_record WHERE status = 'PENDING'
		AND checkout_session_id LIKE 'cs_test_a1%' AND checkout_url LIKE 'https://checkout.stripe.com/c/pay/cs_test_a1%'
		AND expires_at > now()")" "$PAYS"
check "distinct orders" "$(q -c "SELECT count(DISTINCT order_id) FROM stripepay.payment_record")" "$PAYS"
stop_server
check "requests fakestripe answered" "$(sed -n 's/^answered=\([0-9]*\) .*/\1/p' "$SP_TMP/fakestripe.out")" \
	"$((PAYS + RAWS))"
check "requests fakestripe refused" "$(sed -n 's/.* refused=\([0-9]*\) .*/\1/p' "$SP_TMP/fakestripe.out")" 0
# kept alive: one connection for each rawloop thread and each pgbench backend
check "connections fakestripe accepted" "$(sed -n 's/.* connections=\([0-9]*\)$/\1/p' "$SP_TMP/fakestripe.out")" \
	$((2 + 2 * CLIENTS + 1 + CLIENTS))

# --- report -------------------------------------------------------------------------
echo
echo "stripe_pay (Checkout) against a local stand-in for Stripe over HTTP/1.1 keep-alive (plain HTTP on"
echo "127.0.0.1); pgbench -M prepared, one call a transaction, fsync=on; $CALLS1 calls at 1 client,"
echo "$CALLS16 at $CLIENTS; $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)) shared by Postgres, pgbench, the server and the loop"
printf '%-20s %9s %9s %9s %9s %10s %14s\n' "" "ms a call" "statement" "commit" "calls/s" "Postgres CPU" "fakestripe CPU"
for k in "${KEYS[@]}"; do
	printf '%-20s %9.3f %9s %9s %9.0f %9.0f us %11.0f us\n' "$k" "${LAT[$k]}" "${STMT[$k]:--}" "${END[$k]:--}" \
		"${RATE[$k]}" "${PGCPU[$k]}" "${FAKECPU[$k]}"
done
for k in "${KEYS[@]}"; do
	[ -n "${P50[$k]}" ] && printf '%-20s p50 %.3f ms, p99 %.3f ms (rawloop'"'"'s own percentiles)\n' "$k" "${P50[$k]}" "${P99[$k]}"
done
echo "(a call: the transaction's whole latency; statement: the stripe_pay SELECT (or the INSERT, or SELECT 1)"
echo " alone, as pgbench -r times it; commit: its END, the durable commit; CPU: a call's share of every process)"
echo
missed=0
own() { # own <clients>
	local c=$1 rawlat stmt r ok
	rawlat=$(calc "(${LAT["raw $c"]} + ${LAT["raw $c again"]}) / 2")
	stmt=${STMT["stripe_pay $c"]}
	r=$(calc "$stmt - $rawlat")
	if awk "BEGIN { exit !($r <= 0.25) }"; then ok=met; else ok=MISSED; missed=1; fi
	printf 'stripe_pay at %d client(s): the call %.3f ms - the raw round trip %.3f ms (%.3f before, %.3f after) = %.3f ms of its own  [target <= 0.25 ms: %s]\n' \
		"$c" "$stmt" "$rawlat" "${LAT["raw $c"]}" "${LAT["raw $c again"]}" "$r" "$ok"
	printf '  less the floor of any statement (SELECT 1 through pgbench, %.3f ms): %.3f ms\n' \
		"${STMT["SELECT 1, $c"]}" "$(calc "$r - ${STMT["SELECT 1, $c"]}")"
	printf '  its commit %.3f ms (a one-row INSERT'"'"'s: %.3f ms); the whole transaction %.3f ms = %.3f ms over the round trip\n' \
		"${END["stripe_pay $c"]}" "${END["INSERT commit, $c"]}" "${LAT["stripe_pay $c"]}" "$(calc "${LAT["stripe_pay $c"]} - $rawlat")"
	printf '  Postgres CPU a call %.0f us (a one-row INSERT and commit: %.0f us; SELECT 1: %.0f us)\n' \
		"${PGCPU["stripe_pay $c"]}" "${PGCPU["INSERT commit, $c"]}" "${PGCPU["SELECT 1, $c"]}"
}
own 1
own "$CLIENTS"
[ -n "$SO" ] && echo "(stripe_pay ran from $SO)"
echo "run took $(($(date +%s) - STARTED)) s"
[ "$fail" = 0 ] || sp_die "verification failed: see above"
echo "verified: $PAYS calls, each made one Checkout Session and one PENDING payment; the server refused nothing"
if [ "$missed" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
	sp_die "a target was missed (BENCH_STRICT=1)"
fi
exit 0
