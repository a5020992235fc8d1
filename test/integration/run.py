"""Integration tests: the extension against the Stripe emulator.

Retries, idempotency keys, timeouts, cancellation, keep-alive, exact form
encoding, leaks over many failing calls, and a pg_dump/pg_restore round trip.
"""
import os
import re
import subprocess
import threading
import time

from harness import (EMULATOR, TEST_KEY, SqlError, check, check_eq, emulator, emulator_requests,
                     emulator_reset, expect_error, fault, fresh_database, psql, run, scalar,
                     test_flow_role)

API_VERSION = "2026-10-28.endive"
DB = "sp_integration"


def setup():
    psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
    psql(f"CREATE DATABASE {DB}", db="postgres")
    psql("CREATE EXTENSION stripepay")
    configure()


def configure(**extra):
    args = dict(secret_key=TEST_KEY, brand_name="Integration Shop",
                success_url="https://shop.example/ok", cancel_url="https://shop.example/cancel",
                payment_flow="checkout", flow_role=test_flow_role())
    args.update(extra)
    sql_args = ", ".join(f"{k} => {quote(v)}" for k, v in args.items())
    psql(f"SELECT 1 FROM stripepay.configure({sql_args})")


def quote(value):
    return "'" + value.replace("'", "''") + "'"


def payments():
    return int(scalar("SELECT count(*) FROM stripepay.payment_record"))


_next_order = [1000]


def order():
    _next_order[0] += 1
    return _next_order[0]


def pay(order_id, amount=1000, currency="usd", settings=""):
    rows = psql(f"{settings} SELECT id, checkout_session_id FROM stripepay.stripe_pay({order_id}, '{currency}', {amount})")
    return rows[-1]


# --- request shape -----------------------------------------------------------

def test_every_request_pins_version_and_key():
    emulator_reset()
    pid, _ = pay(order())
    reqs = emulator_requests()
    check_eq(len(reqs), 1, "requests")
    h = reqs[0]["headers"]
    check_eq(h.get("stripe-version"), API_VERSION, "Stripe-Version")
    check_eq(h.get("content-type"), "application/x-www-form-urlencoded", "Content-Type")
    check(h.get("user-agent", "").startswith("stripepay/"), "User-Agent")
    key = h.get("idempotency-key", "")
    check(re.fullmatch(r"stripepay-\d+-\d+-\d+-pay-" + pid, key), f"Idempotency-Key {key!r}")
    check(len(key) <= 255, "Idempotency-Key length")


def test_checkout_session_parameters():
    emulator_reset()
    oid = order()
    pid, session = pay(oid, 2500, "eur")
    p = emulator_requests()[0]["params"]
    check_eq(p["mode"], "payment", "mode")
    li = p["line_items"][0]
    check_eq(li["price_data"]["currency"], "eur", "currency")
    check_eq(li["price_data"]["unit_amount"], "2500", "unit_amount")
    check_eq(li["quantity"], "1", "quantity")
    check_eq(p["client_reference_id"], str(oid), "client_reference_id")
    for md in (p["metadata"], p["payment_intent_data"]["metadata"]):
        check_eq(md["order_id"], str(oid), "metadata order_id")
        check_eq(md["stripepay_payment_id"], pid, "metadata payment id")
    check_eq(p["success_url"], "https://shop.example/ok", "success_url")
    row = psql(f"SELECT checkout_session_id, checkout_url FROM stripepay.payment_record WHERE id = {pid}")[0]
    check_eq(row[0], session, "stored session id")
    check(row[1].startswith("http"), "stored url")


def test_hostile_brand_round_trips_exactly():
    hostile = "Tom & Jerry = [best] ]x[ 100% +plus+ \"q\" 'a'\nline2\t€ 日本 😀 a=b&c=d"
    slogan = "semi;colon, comma / slash ? question # hash " + "x" * 400
    logo = "https://img.example/logo.png?a=1&b=[2]&c=%20"
    configure(brand_name=hostile, brand_slogan=slogan, brand_logo=logo)
    try:
        emulator_reset()
        pay(order())
        pd = emulator_requests()[0]["params"]["line_items"][0]["price_data"]["product_data"]
        check_eq(pd["name"], hostile, "name")
        check_eq(pd["description"], slogan, "description")
        check_eq(pd["images"][0], logo, "images[0]")
    finally:
        configure(brand_slogan="", brand_logo="")


def test_payment_intent_flow():
    configure(payment_flow="payment_intent")
    try:
        emulator_reset()
        oid = order()
        row = psql(f"SELECT payment_intent_id, client_secret, flow FROM stripepay.stripe_pay({oid}, 'jpy', 500)")[0]
        check(row[0].startswith("pi_"), "payment intent id")
        check(row[1].startswith(row[0] + "_secret_"), "client secret")
        check_eq(row[2], "payment_intent", "flow")
        r = emulator_requests()[0]
        check_eq(r["path"], "/v1/payment_intents", "path")
        check_eq(r["params"]["amount"], "500", "amount: zero-decimal currencies are not multiplied")
        check_eq(r["params"]["currency"], "jpy", "currency")
        check_eq(r["params"]["metadata"]["order_id"], str(oid), "metadata")
    finally:
        configure(payment_flow="checkout")


def test_reinstalled_extension_sends_new_idempotency_keys():
    # Payment ids start again after DROP/CREATE EXTENSION: the same keys made Stripe replay an
    # old, paid session as the new payment's, and other parameters got SP006, for 24 hours.
    db = "sp_reinstall"
    emulator_reset()
    fresh_database(db)
    pid, paid = psql("SELECT id, checkout_session_id FROM stripepay.stripe_pay(42, 'usd', 1999)", db=db)[0]
    emulator("POST", f"/_emulator/checkout/sessions/{paid}/complete", {"outcome": "paid"})
    psql("SELECT 1 FROM stripepay.stripe_pay(43, 'usd', 500)", db=db)
    old_ext = scalar("SELECT oid FROM pg_extension WHERE extname = 'stripepay'", db=db)
    psql("DROP EXTENSION stripepay CASCADE; CREATE EXTENSION stripepay;"
         f"SELECT 1 FROM stripepay.configure(secret_key => '{TEST_KEY}', success_url => 'https://shop.example/ok')",
         db=db)
    ext, sysid, dboid = psql("SELECT (SELECT oid FROM pg_extension WHERE extname = 'stripepay'),"
                             " (SELECT system_identifier FROM pg_control_system()),"
                             " (SELECT oid FROM pg_database WHERE datname = current_database())", db=db)[0]
    check(ext != old_ext, "a new extension oid")
    seen = len(emulator_requests())
    again, session, status = psql("SELECT id, checkout_session_id, status FROM stripepay.stripe_pay(42, 'usd', 1999)",
                                  db=db)[0]
    check_eq(again, pid, "payment ids start again")
    check(session != paid, "the new payment got the old, paid Checkout Session")
    check_eq(status, "PENDING", "status")
    other = psql("SELECT id, status FROM stripepay.stripe_pay(77, 'usd', 999)", db=db)[0]
    check_eq(other[1], "PENDING", "another order (SP006 on a reused key)")
    reqs = emulator_requests()[seen:]
    check_eq(len(reqs), 2, "requests")
    for r, payment in zip(reqs, (again, other[0])):
        check_eq(r["headers"]["idempotency-key"], f"stripepay-{sysid}-{dboid}-{ext}-pay-{payment}", "Idempotency-Key")
        check(r["status"] == 200 and not r["replayed"], f"request {r['status']} replayed={r['replayed']}")
    psql(f"DROP DATABASE {db}", db="postgres")


# --- connection reuse ----------------------------------------------------------

def test_consecutive_calls_reuse_one_connection():
    emulator_reset()
    sql = "".join(f"SELECT 1 FROM stripepay.stripe_pay({order()}, 'usd', 1000);\n" for _ in range(20))
    psql(sql)
    stats = emulator("GET", "/_emulator/stats")
    check_eq(stats["requests"], 20, "requests")
    check_eq(stats["connections"], 1, "TCP connections for 20 calls in one backend")


# --- retries -------------------------------------------------------------------

def test_500_is_retried_with_the_same_key():
    emulator_reset()
    fault("500", 2)
    before = payments()
    pid, _ = pay(order())
    reqs = emulator_requests()
    check_eq(len(reqs), 3, "attempts")
    keys = {r["headers"]["idempotency-key"] for r in reqs}
    check_eq(len(keys), 1, "distinct idempotency keys across retries")
    check_eq(payments(), before + 1, "payments")


def test_429_honours_retry_after():
    emulator_reset()
    fault("429", 1, retry_after=1)
    started = time.monotonic()
    pay(order())
    elapsed = time.monotonic() - started
    check_eq(len(emulator_requests()), 2, "attempts")
    check(elapsed >= 1.0, f"waited only {elapsed:.2f}s despite Retry-After: 1")
    return f"{elapsed:.2f}s"


def test_connection_reset_is_retried():
    emulator_reset()
    fault("reset", 1)
    pay(order())
    check_eq(len(emulator_requests()), 2, "attempts")


def test_should_retry_false_is_obeyed():
    emulator_reset()
    fault("500", 1, should_retry="false")
    before = payments()
    expect_error(f"SELECT stripepay.stripe_pay({order()}, 'usd', 1000)", "SP005")
    check_eq(len(emulator_requests()), 1, "attempts")
    check_eq(payments(), before, "payments after a failed call")


def test_retries_stop_at_max_retries():
    emulator_reset()
    fault("503", 10)
    before = payments()
    expect_error(f"SET stripepay.max_retries = 1; SELECT stripepay.stripe_pay({order()}, 'usd', 1000)", "SP005")
    check_eq(len(emulator_requests()), 2, "attempts with max_retries = 1")
    check_eq(payments(), before, "payments")
    emulator_reset()


def test_4xx_is_never_retried():
    emulator_reset()
    configure(secret_key="sk_test_invalidkey00000000")
    try:
        e = expect_error(f"SELECT stripepay.stripe_pay({order()}, 'usd', 1000)", "SP003")
        check_eq(len(emulator_requests()), 1, "attempts")
        check("sk_test_invalidkey00000000" not in e.stderr, "the full key appears in the error")
        check("Request-Id req_" in e.stderr, "Request-Id in the error context")
        check("Invalid API Key" in e.stderr, "Stripe's message in the detail")
    finally:
        configure()


# --- timeouts and cancellation -------------------------------------------------

def baseline_psql_seconds():
    started = time.monotonic()
    psql("SELECT 1")
    return time.monotonic() - started


def test_timeout_ms_bounds_a_hung_request():
    emulator_reset()
    fault("hang", 1, seconds=20)
    started = time.monotonic()
    e = expect_error("SET stripepay.timeout_ms = 500; SET stripepay.max_retries = 0;"
                     f"SELECT stripepay.stripe_pay({order()}, 'usd', 1000)", "SP007")
    elapsed = time.monotonic() - started
    check("timed out" in e.message, e.message)
    check(elapsed < 3, f"took {elapsed:.2f}s")
    emulator_reset()
    return f"{elapsed:.2f}s"


def test_statement_timeout_interrupts_within_200ms():
    emulator_reset()
    fault("hang", 1, seconds=20)
    base = baseline_psql_seconds()
    started = time.monotonic()
    expect_error("SET statement_timeout = 300;"
                 f"SELECT stripepay.stripe_pay({order()}, 'usd', 1000)", "57014")
    late = time.monotonic() - started - base - 0.300
    check(late < 0.200, f"interrupted {late * 1000:.0f} ms after statement_timeout")
    emulator_reset()
    return f"{late * 1000:.0f} ms after the timeout"


def test_pg_cancel_backend_interrupts_within_200ms():
    emulator_reset()
    fault("hang", 1, seconds=30)
    result = {}

    def victim():
        try:
            psql(f"SET application_name = 'sp_cancel_victim'; SELECT stripepay.stripe_pay({order()}, 'usd', 1000)")
        except SqlError as e:
            result["sqlstate"] = e.sqlstate
        result["ended"] = time.monotonic()

    t = threading.Thread(target=victim)
    t.start()
    pid = None
    for _ in range(100):
        pid = scalar("SELECT pid FROM pg_stat_activity WHERE application_name = 'sp_cancel_victim' AND state = 'active'")
        if pid:
            break
        time.sleep(0.05)
    check(pid, "victim backend not found")
    time.sleep(0.3)
    canceled = time.monotonic()
    psql(f"SELECT pg_cancel_backend({pid})")
    t.join(10)
    check_eq(result.get("sqlstate"), "57014", "SQLSTATE")
    late = result["ended"] - canceled
    check(late < 0.200, f"ended {late * 1000:.0f} ms after pg_cancel_backend")
    emulator_reset()
    return f"{late * 1000:.0f} ms"


# --- memory ----------------------------------------------------------------------

def test_failing_calls_do_not_leak():
    """10,000 failing calls in one backend: 5,000 Stripe errors, 5,000
    connection failures.  Each one ERRORs through libcurl and json-c state."""
    emulator_reset()
    configure(secret_key="sk_test_invalidkey00000000")
    try:
        sql = """
SET stripepay.max_retries = 0;
CREATE TEMP TABLE rss (label text, kb bigint);
CREATE FUNCTION pg_temp.rss_kb() RETURNS bigint LANGUAGE sql AS
 $$ SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmRSS:\\s+(\\d+)'))[1]::bigint $$;
CREATE PROCEDURE pg_temp.fail_many(n int, base text) LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('stripepay.api_base', base, false);
  FOR i IN 1..n LOOP
    BEGIN
      PERFORM stripepay.stripe_pay(5000000 + i, 'usd', 1000);
      RAISE EXCEPTION 'call % unexpectedly succeeded', i;
    EXCEPTION WHEN sqlstate 'SP003' OR sqlstate 'SP007' THEN
      NULL;
    END;
  END LOOP;
END $$;
CALL pg_temp.fail_many(500, '""" + EMULATOR + """');
CALL pg_temp.fail_many(500, 'http://127.0.0.1:9');
INSERT INTO rss VALUES ('warm', pg_temp.rss_kb());
CALL pg_temp.fail_many(5000, '""" + EMULATOR + """');
CALL pg_temp.fail_many(5000, 'http://127.0.0.1:9');
INSERT INTO rss VALUES ('after', pg_temp.rss_kb());
SELECT (SELECT kb FROM rss WHERE label = 'warm'), (SELECT kb FROM rss WHERE label = 'after');
"""
        rows = psql(sql, timeout=600)
        warm, after = int(rows[-1][0]), int(rows[-1][1])
        growth = after - warm
        # RSS also moves with allocator fragmentation; the exact proof that
        # nothing leaks is test/integration/valgrind_backend.sh
        check(growth < 16384, f"RSS grew by {growth} kB over 10,000 failing calls")
        check_eq(len(emulator_requests()), 5500, "Stripe requests made")
        return f"RSS {warm} kB -> {after} kB ({growth:+d} kB) over 10,000 failing calls"
    finally:
        configure()
        emulator_reset()


# --- security --------------------------------------------------------------------

def test_plain_role_placeholder_cannot_redirect_api_base():
    """A non-superuser SETs stripepay.api_base before the library is loaded
    (a placeholder): loading the library must drop it."""
    psql("DROP ROLE IF EXISTS regress_sp_sneaky; CREATE ROLE regress_sp_sneaky LOGIN IN ROLE stripepay_user")
    try:
        emulator_reset()
        out = subprocess.run(
            ["psql", "-X", "-A", "-t", "-U", "regress_sp_sneaky", "-d", DB, "-c",
             "SET stripepay.api_base = 'http://127.0.0.1:9';"
             f"SELECT status FROM stripepay.stripe_pay({order()}, 'usd', 1000);"
             "SHOW stripepay.api_base"],
            capture_output=True, text=True, timeout=60)
        check(out.returncode == 0, out.stderr)
        check_eq(len(emulator_requests()), 1, "requests that reached the configured api_base")
        check("127.0.0.1:9" not in out.stdout, f"api_base was redirected: {out.stdout}")
    finally:
        psql("DROP OWNED BY regress_sp_sneaky; DROP ROLE regress_sp_sneaky")


def test_interrupted_configure_keeps_the_key_out_of_the_server_log():
    # An error inside configure() (a lock timeout on the settings row, a statement_timeout)
    # logged the statement, and with it the secret key being set.
    secret = "sk_test_ROTATEDkeyNOTforTHElog0042"
    log = os.environ["SP_SERVER_LOG"]
    start = os.path.getsize(log)
    holder = subprocess.Popen(["psql", "-X", "-q", "-d", DB, "-c", "SET application_name = 'sp_settings_holder'",
                               "-c", "BEGIN", "-c", "SELECT 1 FROM stripepay.configure(brand_name => 'Integration Shop')",
                               "-c", "SELECT pg_sleep(30)", "-c", "COMMIT"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sp_settings_holder'"
                      " AND query = 'SELECT pg_sleep(30)'") == "1":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the settings row is not held")
        expect_error(f"SET lock_timeout = '200ms'; SELECT stripepay.configure(secret_key => '{secret}')", "55P03")
        expect_error(f"SET statement_timeout = '300ms'; SELECT stripepay.configure(secret_key => '{secret}')", "57014")
    finally:
        psql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'sp_settings_holder'")
        holder.communicate(timeout=30)
    with open(log, errors="replace") as f:
        f.seek(start)
        text = f.read()
    check("canceling statement due to lock timeout" in text, "the lock timeout is not in the log")
    check("canceling statement due to statement timeout" in text, "the statement timeout is not in the log")
    leaked = [line for line in text.splitlines() if "ROTATEDkey" in line]
    check_eq(leaked, [], "log lines with the key")
    check(psql("SELECT secret_key LIKE '%0042' FROM stripepay.settings")[0][0] == "f", "the key was set")


def test_dump_and_restore_keep_payments_and_settings():
    tmp = os.environ["SP_TMP"]
    dump = os.path.join(tmp, "sp.dump")
    before = psql("SELECT id, order_id, status, amount, checkout_session_id FROM stripepay.payment_record ORDER BY id")
    settings = psql("SELECT secret_key, brand_name, success_url, payment_flow FROM stripepay.settings")
    check(len(before) > 0, "no payments to dump")
    subprocess.run(["pg_dump", "-Fc", "-f", dump, DB], check=True, capture_output=True)
    psql("DROP DATABASE IF EXISTS sp_restored", db="postgres")
    psql("CREATE DATABASE sp_restored", db="postgres")
    r = subprocess.run(["pg_restore", "--exit-on-error", "-d", "sp_restored", dump],
                       capture_output=True, text=True)
    check(r.returncode == 0, r.stderr)
    after = psql("SELECT id, order_id, status, amount, checkout_session_id FROM stripepay.payment_record ORDER BY id",
                 db="sp_restored")
    check_eq(after, before, "payments after restore")
    check_eq(psql("SELECT secret_key, brand_name, success_url, payment_flow FROM stripepay.settings",
                  db="sp_restored"), settings, "settings after restore")
    # the sequence moved on too: a new payment does not reuse an id
    emulator_reset()
    new_id = int(psql(f"SELECT id FROM stripepay.stripe_pay({order()}, 'usd', 1000)", db="sp_restored")[0][0])
    check(new_id > max(int(r[0]) for r in before), "new payment id collides with a restored one")
    psql("DROP DATABASE sp_restored", db="postgres")
    return f"{len(before)} payments"


if __name__ == "__main__":
    setup()
    run("integration", [
        test_every_request_pins_version_and_key,
        test_checkout_session_parameters,
        test_hostile_brand_round_trips_exactly,
        test_payment_intent_flow,
        test_reinstalled_extension_sends_new_idempotency_keys,
        test_consecutive_calls_reuse_one_connection,
        test_500_is_retried_with_the_same_key,
        test_429_honours_retry_after,
        test_connection_reset_is_retried,
        test_should_retry_false_is_obeyed,
        test_retries_stop_at_max_retries,
        test_4xx_is_never_retried,
        test_timeout_ms_bounds_a_hung_request,
        test_statement_timeout_interrupts_within_200ms,
        test_pg_cancel_backend_interrupts_within_200ms,
        test_failing_calls_do_not_leak,
        test_plain_role_placeholder_cannot_redirect_api_base,
        test_interrupted_configure_keeps_the_key_out_of_the_server_log,
        test_dump_and_restore_keep_payments_and_settings,
    ])
