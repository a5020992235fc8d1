#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs every test suite; ends with
# "N passed, N failed" and a non-zero exit when anything failed.
set -uo pipefail
. "$(dirname "$0")/lib/env.sh"

sp_install_deps
sp_build_install
sp_make_tmp
sp_emulator_start
sp_cluster_start

passed=0
failed=0
failed_suites=()

# count <suite> <passed> <failed>
count() {
	passed=$((passed + $2))
	failed=$((failed + $3))
	[ "$3" -gt 0 ] && failed_suites+=("$1")
	sp_log "$1: $2 passed, $3 failed"
}

# Runs a suite whose output ends in "<word>: N passed, M failed".
run_counted() {
	local name=$1 out rc line
	shift
	out="$SP_TMP/$name.out"
	"$@" >"$out" 2>&1
	rc=$?
	cat "$out"
	line=$(grep -E '^[a-z0-9_-]+: [0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
	if [ -z "$line" ]; then
		count "$name" 0 1
		return
	fi
	local p f
	p=$(sed -E 's/^[^:]+: ([0-9]+) passed.*/\1/' <<<"$line")
	f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	count "$name" "$p" "$f"
}

sp_log "unit tests (AddressSanitizer + UBSan)"
run_counted unit make -s -C "$SP_ROOT/test/unit" check

sp_log "webhook signatures against the official Stripe Node SDK"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
	run_counted node-signatures make -s -C "$SP_ROOT/test/unit" node-check
else
	echo "node and npm (Node.js 20 or later) are needed for the signature cross-check"
	count node-signatures 0 1
fi

sp_log "static analysis (gcc -fanalyzer, cppcheck, clang-tidy)"
run_counted static-analysis bash "$SP_ROOT/test/analyze.sh"

sp_log "fuzzing (libFuzzer, ${FUZZ_SECONDS:-20} s a target)"
run_counted fuzz make -s -C "$SP_ROOT/test/fuzz" run FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

sp_log "emulator self-test"
run_counted emulator python3 "$SP_ROOT/test/emulator/test_emulator.py"

sp_log "pg_regress"
regress_out="$SP_TMP/regress.out"
make -C "$SP_ROOT" -s installcheck PG_CONFIG="$PG_CONFIG" >"$regress_out" 2>&1
cat "$regress_out"
total=$(grep -cE '^(ok|not ok) [0-9]+|^test [a-z_0-9]+ +\.\.\. ' "$regress_out")
rfailed=$(grep -cE '^not ok [0-9]+|^test [a-z_0-9]+ +\.\.\. .*FAILED' "$regress_out")
if [ "$total" -eq 0 ]; then rfailed=1; fi
count pg_regress $((total - rfailed)) "$rfailed"
[ "$rfailed" -gt 0 ] && [ -f "$SP_ROOT/regression.diffs" ] && cat "$SP_ROOT/regression.diffs"

sp_log "integration tests against the emulator"
run_counted integration python3 "$SP_ROOT/test/integration/run.py"

sp_log "webhook ingestion"
run_counted webhooks python3 "$SP_ROOT/test/integration/webhooks.py"

sp_log "refunds and subscriptions"
run_counted money python3 "$SP_ROOT/test/integration/money.py"

sp_log "recovery: sync_events and refresh_payment"
run_counted sync python3 "$SP_ROOT/test/integration/sync.py"

sp_log "stripepay-relay"
run_counted relay python3 "$SP_ROOT/test/relay/run.py"

sp_log "end to end: setup_webhooks, emulator deliveries, relay, triggers, NOTIFY"
run_counted e2e python3 "$SP_ROOT/test/integration/e2e.py"

sp_log "backend under valgrind: failing calls leak nothing"
run_counted valgrind-backend bash "$SP_ROOT/test/integration/valgrind_backend.sh"

sp_log "memory under load: 100,000 stripe_pay, 100,000 ingests, 1,000,000 relay requests"
run_counted memory python3 "$SP_ROOT/test/integration/memory.py"

# No secret may reach the server log, whatever the tests did.
if grep -qE 'sk_(test|live)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9]{8,}' "$SP_SERVER_LOG"; then
	grep -nE 'sk_(test|live)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9]{8,}' "$SP_SERVER_LOG" | head -5
	count secrets-in-log 0 1
else
	count secrets-in-log 1 0
fi

if [ ${#failed_suites[@]} -gt 0 ]; then
	sp_log "failed: ${failed_suites[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
