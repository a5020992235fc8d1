#!/usr/bin/env bash
# Runs a single-user backend under valgrind through 600 failing stripe_pay()
# calls (Stripe errors and connection failures, each an ERROR longjmp'ing past
# libcurl and json-c) and fails on any valgrind error or lost block whose
# stack passes through stripepay, libcurl or json-c.  Postgres's own startup
# allocations are valgrind noise and are not counted.
# Needs SP_TMP and SP_EMULATOR_URL (test/lib/env.sh).
set -uo pipefail
. "$(dirname "$0")/../lib/env.sh"

calls=${SP_VALGRIND_CALLS:-300}
dir="$SP_TMP/valgrind"
mkdir -p "$dir"
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
bindir=$(sp_pg_bindir)
sp_as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -N >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; exit 1; }
echo "stripepay.api_base = '$SP_EMULATOR_URL'" >>"$dir/data/postgresql.conf"

cat >"$dir/script.sql" <<SQL
CREATE EXTENSION stripepay;
SELECT stripepay.configure(secret_key => 'sk_test_invalidkey00000000', success_url => 'https://shop.example/ok');
SET stripepay.max_retries = 0;
CREATE PROCEDURE fail_many(n int, base text) LANGUAGE plpgsql AS \$\$ BEGIN PERFORM set_config('stripepay.api_base', base, false); FOR i IN 1..n LOOP BEGIN PERFORM stripepay.stripe_pay(5000000 + i, 'usd', 1000); RAISE EXCEPTION 'unexpected success'; EXCEPTION WHEN sqlstate 'SP003' OR sqlstate 'SP007' THEN NULL; END; END LOOP; END \$\$;
CALL fail_many($calls, '$SP_EMULATOR_URL');
CALL fail_many($calls, 'http://127.0.0.1:9');
SQL

python3 - "$SP_EMULATOR_URL" <<'PY'
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/_emulator/reset", data=b"{}", method="POST"), timeout=10)
PY

sp_as_owner valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible \
	--num-callers=40 --log-file="$dir/valgrind.log" \
	"$bindir/postgres" --single -D "$dir/data" postgres <"$dir/script.sql" >"$dir/backend.out" 2>&1

passed=0
failed=0
report() { if [ "$2" = ok ]; then passed=$((passed + 1)); echo "ok - $1"; else failed=$((failed + 1)); echo "not ok - $1"; fi; }

made=$(python3 - "$SP_EMULATOR_URL" <<'PY'
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/_emulator/stats", timeout=10))["requests"])
PY
)
if grep -q "ERROR" "$dir/backend.out"; then
	grep "ERROR" "$dir/backend.out" | head -5
	report "the failing calls ran ($made Stripe requests)" fail
elif [ "$made" -eq "$calls" ]; then
	report "the failing calls ran ($made Stripe requests, $calls connection failures)" ok
else
	report "the failing calls ran (expected $calls Stripe requests, saw $made)" fail
fi

if ours=$(python3 "$(dirname "$0")/valgrind_ours.py" "$dir/valgrind.log"); then
	report "no valgrind error or leak in stripepay, libcurl or json-c ($(grep -c 'lost in loss record' "$dir/valgrind.log") loss records, all Postgres's own)" ok
else
	printf '%s\n' "$ours" | head -80
	report "no valgrind error or leak in stripepay, libcurl or json-c" fail
fi
echo "valgrind-backend: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
