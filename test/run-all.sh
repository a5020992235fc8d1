#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs test suites; ends with
# "N passed, N failed" and a non-zero exit when anything failed.
#
#   bash test/run-all.sh                  every suite on this machine's
#                                         PostgreSQL (15), then the
#                                         extension's own suites on 17 and 18
#   bash test/run-all.sh webhooks money   those suites only
#   bash test/run-all.sh --list           the suites' names
#
# make test runs the first, make test SUITES="webhooks money" the second,
# make test PG=17 the extension's suites on 17 alone (test/matrix.sh).
set -uo pipefail
. "$(dirname "$0")/lib/env.sh"

# The extension's own suites: what runs on every major.
SP_MAJOR_SUITES="pg_regress pg_regress-emulator integration webhooks money sync security prune relay e2e upgrade"
# The rest run on the machine's own major only: tools, fuzzing, the node
# cross-check, memory and valgrind, releases, packaging, the other majors.
SP_ALL_SUITES="unit node-signatures static-analysis fuzz emulator contract $SP_MAJOR_SUITES
	demo dump-restore valgrind-backend memory secrets-in-log package pg17 pg18"

if [ "${1:-}" = --list ]; then
	echo $SP_ALL_SUITES
	exit 0
fi
suites=("$@")
[ ${#suites[@]} -eq 0 ] && read -r -a suites <<<"$(echo $SP_ALL_SUITES)"
for s in "${suites[@]}"; do
	case " $(echo $SP_ALL_SUITES) " in
	*" $s "*) ;;
	*) sp_die "no suite '$s' (bash test/run-all.sh --list names them)" ;;
	esac
done

wants() {
	local s
	for s in "${suites[@]}"; do
		for w in "$@"; do [ "$s" = "$w" ] && return 0; done
	done
	return 1
}

# What the chosen suites need: a build, a cluster, the emulator, the tools.
if wants unit node-signatures static-analysis fuzz valgrind-backend memory; then
	SP_DEBIAN_PACKAGES="$SP_DEBIAN_PACKAGES $SP_CHECK_PACKAGES"
fi
if wants package pg17 pg18; then
	SP_DEBIAN_PACKAGES="$SP_DEBIAN_PACKAGES debootstrap"
fi
sp_install_deps
needs_cluster=false
if wants pg_regress pg_regress-emulator integration webhooks money sync relay e2e upgrade \
	dump-restore valgrind-backend memory secrets-in-log security prune; then
	needs_cluster=true
	sp_build_install
	sp_make_tmp
	sp_emulator_start
	sp_cluster_start
fi

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
	out="${SP_TMP:-${TMPDIR:-/tmp}}/$name.out"
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

# pg_regress with an input directory; counts its ok / not ok lines.
run_regress() {
	local name=$1 out="$SP_TMP/$1.out" total rfailed
	shift
	make -C "$SP_ROOT" -s "$@" PG_CONFIG="$PG_CONFIG" >"$out" 2>&1
	cat "$out"
	total=$(grep -cE '^(ok|not ok) [0-9]+|^test [a-z_0-9]+ +\.\.\. ' "$out")
	rfailed=$(grep -cE '^not ok [0-9]+|^test [a-z_0-9]+ +\.\.\. .*FAILED' "$out")
	if [ "$total" -eq 0 ]; then rfailed=1; fi
	count "$name" $((total - rfailed)) "$rfailed"
	if [ "$rfailed" -gt 0 ]; then
		cat "$SP_ROOT/regression.diffs" "$SP_ROOT/test/emulator_regress/regression.diffs" 2>/dev/null
	fi
}

for suite in "${suites[@]}"; do
	case $suite in
	unit)
		sp_log "unit tests (AddressSanitizer + UBSan)"
		run_counted unit make -s -C "$SP_ROOT/test/unit" check ;;
	node-signatures)
		sp_log "webhook signatures against the official Stripe Node SDK"
		if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
			run_counted node-signatures make -s -C "$SP_ROOT/test/unit" node-check
		else
			echo "node and npm (Node.js 20 or later) are needed for the signature cross-check"
			count node-signatures 0 1
		fi ;;
	static-analysis)
		sp_log "static analysis (gcc -fanalyzer, cppcheck, clang-tidy)"
		run_counted static-analysis bash "$SP_ROOT/test/analyze.sh" ;;
	fuzz)
		sp_log "fuzzing (libFuzzer, ${FUZZ_SECONDS:-20} s a target)"
		run_counted fuzz make -s -C "$SP_ROOT/test/fuzz" run FUZZ_SECONDS="${FUZZ_SECONDS:-20}" ;;
	emulator)
		sp_log "emulator self-test"
		run_counted emulator python3 "$SP_ROOT/test/emulator/test_emulator.py" ;;
	contract)
		sp_log "contract: what the extension sends and reads exists in the pinned API"
		run_counted contract python3 "$SP_ROOT/test/emulator/contract.py" ;;
	pg_regress)
		sp_log "pg_regress: the state machine, with no network"
		run_regress pg_regress installcheck ;;
	pg_regress-emulator)
		sp_log "pg_regress against the emulator"
		run_regress pg_regress-emulator installcheck-emulator ;;
	integration)
		sp_log "integration tests against the emulator"
		run_counted integration python3 "$SP_ROOT/test/integration/run.py" ;;
	webhooks)
		sp_log "webhook ingestion"
		run_counted webhooks python3 "$SP_ROOT/test/integration/webhooks.py" ;;
	money)
		sp_log "refunds and subscriptions"
		run_counted money python3 "$SP_ROOT/test/integration/money.py" ;;
	sync)
		sp_log "recovery: sync_events and refresh_payment"
		run_counted sync python3 "$SP_ROOT/test/integration/sync.py" ;;
	security)
		sp_log "least privilege, tried as an attacker would"
		run_counted security python3 "$SP_ROOT/test/integration/security.py" ;;
	prune)
		sp_log "prune_events: while ingests run, pruned events delivered again, roles, locks"
		run_counted prune python3 "$SP_ROOT/test/integration/prune.py" ;;
	relay)
		sp_log "stripepay-relay"
		run_counted relay python3 "$SP_ROOT/test/relay/run.py" ;;
	e2e)
		sp_log "end to end: setup_webhooks, emulator deliveries, relay, triggers, NOTIFY"
		run_counted e2e python3 "$SP_ROOT/test/integration/e2e.py" ;;
	upgrade)
		sp_log "0.1.0 filled, then ALTER EXTENSION UPDATE: the catalog of a fresh install, the data kept"
		run_counted upgrade python3 "$SP_ROOT/test/integration/upgrade.py" ;;
	demo)
		# the README's first command, on a cluster of its own: it fails unless the loop completes
		sp_log "make demo: the whole loop against the emulator"
		run_counted demo bash -c 'bash "$1/test/demo.sh" && echo "demo: 1 passed, 0 failed" ||
			{ echo "demo: 0 passed, 1 failed"; exit 1; }' demo "$SP_ROOT" ;;
	dump-restore)
		sp_log "a dump of 15 restored on 17 and 18"
		run_counted dump-restore bash "$SP_ROOT/test/dump_restore.sh" ;;
	valgrind-backend)
		sp_log "backend under valgrind: failing calls leak nothing"
		run_counted valgrind-backend bash "$SP_ROOT/test/integration/valgrind_backend.sh" ;;
	memory)
		sp_log "memory under load: 100,000 stripe_pay, 100,000 ingests, 1,000,000 relay requests"
		run_counted memory python3 "$SP_ROOT/test/integration/memory.py" ;;
	secrets-in-log)
		# No secret may reach the server log, whatever the tests did.
		if grep -qE 'sk_(test|live)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9]{8,}' "$SP_SERVER_LOG"; then
			grep -nE 'sk_(test|live)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9]{8,}' "$SP_SERVER_LOG" | head -5
			count secrets-in-log 0 1
		else
			count secrets-in-log 1 0
		fi ;;
	package)
		sp_log "the Debian package, installed into a clean Debian 12"
		run_counted package bash "$SP_ROOT/test/package/run.sh"
		run_counted meta python3 "$SP_ROOT/test/package/validate_meta.py" ;;
	pg17 | pg18)
		sp_log "the extension's suites on PostgreSQL ${suite#pg}"
		run_counted "$suite" bash "$SP_ROOT/test/matrix.sh" "${suite#pg}" ;;
	esac
done

if [ ${#failed_suites[@]} -gt 0 ]; then
	sp_log "failed: ${failed_suites[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
