"""Recovery of what webhooks did not bring: sync_events() pages through
Stripe's events and applies those we lack through the webhook path, once and
oldest first; refresh_payment() reads one payment from Stripe.  Actionflows
and NOTIFY are counted, so a second firing cannot hide."""
import datetime
import threading
import time

from harness import (TEST_KEY, WEBHOOK_SECRET, fresh_database, check, check_eq, emulator,
                     emulator_events, emulator_requests, emulator_reset, event_bytes, expect_error,
                     fault, ingest, listen, psql, run, scalar, sign)

DB = "sp_sync"
KEY = TEST_KEY


def q(sql):
    return psql(sql, db=DB)


def one(sql):
    return scalar(sql, db=DB)


def setup():
    fresh_database(DB, webhook_secret=WEBHOOK_SECRET)
    # the README's payment actionflow, and a log of every time it acted
    q("""
CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'new');
CREATE TABLE acted (order_id bigint, status text, event_id text);
CREATE FUNCTION mark_order() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
  IF NOT NEW.already_processed THEN
    UPDATE orders SET status = lower(NEW.payment_status) WHERE id = NEW.order_id;
    INSERT INTO acted VALUES (NEW.order_id, NEW.payment_status, NEW.event_id);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER mark_order AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION mark_order();
""")
    q("DROP ROLE IF EXISTS regress_sp_sync_app; CREATE ROLE regress_sp_sync_app LOGIN IN ROLE stripepay_user;"
      "DROP ROLE IF EXISTS regress_sp_sync_other; CREATE ROLE regress_sp_sync_other LOGIN IN ROLE stripepay_user;"
      "DROP ROLE IF EXISTS regress_sp_sync_boss; CREATE ROLE regress_sp_sync_boss LOGIN IN ROLE stripepay_admin")
    # the README's flow role: the triggers run as it, with the rights they need
    q("DROP ROLE IF EXISTS regress_sp_sync_flow; CREATE ROLE regress_sp_sync_flow;"
      "GRANT SELECT, UPDATE ON orders TO regress_sp_sync_flow;"
      "GRANT INSERT ON acted TO regress_sp_sync_flow;"
      "SELECT 1 FROM stripepay.configure(flow_role => 'regress_sp_sync_flow')")


def teardown():
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    psql("DROP ROLE IF EXISTS regress_sp_sync_app, regress_sp_sync_other, regress_sp_sync_boss,"
         " regress_sp_sync_flow", db="postgres")


_order = [1000]


def pay(outcome="paid", amount=1500, complete=True, role=None):
    """A Checkout payment the buyer completes at the emulator; returns (payment id, order id, session)."""
    _order[0] += 1
    order = _order[0]
    q(f"INSERT INTO orders (id) VALUES ({order})")
    prefix = f"SET ROLE {role};" if role else ""
    pid, sess = q(f"{prefix} SELECT id, checkout_session_id FROM stripepay.stripe_pay({order}, 'usd', {amount})")[0]
    if complete:
        emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": outcome})
    return pid, order, sess


def deliver(event):
    body = event_bytes(event)
    return ingest(body, sign(body), db=DB)


def sync(since=None, role=None):
    arg = "NULL" if since is None else f"'{since}'"
    prefix = f"SET ROLE {role};" if role else ""
    row = q(f"{prefix} SELECT synced_from, fetched, applied, already_had FROM stripepay.sync_events({arg})")[0]
    return {"synced_from": row[0], "fetched": int(row[1]), "applied": int(row[2]), "already_had": int(row[3])}


def held():
    return int(one("SELECT count(*) FROM stripepay.webhook_event"))


def flows(order):
    """The payment flow rows of an order: (status, already_processed, event type)."""
    return q(f"SELECT payment_status, already_processed, event_type FROM stripepay.payment_flow"
             f" WHERE order_id = {order} ORDER BY id")


def acted(order):
    return q(f"SELECT status, event_id FROM acted WHERE order_id = {order}")


def iso(unix):
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).isoformat()


def test_events_missed_while_the_endpoint_was_down_are_recovered():
    emulator_reset()
    # the endpoint is down for longer than Stripe retries: every delivery is given up
    emulator("POST", "/_emulator/webhook_endpoints", {"url": "http://127.0.0.1:9/stripe"})
    emulator("POST", "/_emulator/webhook_config", {"retry_delays": [0.05], "max_attempts": 2})
    paid = [pay() for _ in range(3)]
    failed = pay("failed")
    left = emulator("POST", "/_emulator/webhooks/flush", {"timeout": 20})
    events = emulator_events()
    check_eq((left["pending"], left["failed"]), (0, len(events)), "deliveries given up")
    check_eq(held(), 0, "events held before sync")

    waiter = listen("stripepay_payment", 4, db=DB)
    r = sync()
    check_eq((r["fetched"], r["applied"], r["already_had"]), (len(events), len(events), 0), "sync counts")
    for pid, order, _ in paid:
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL", "payment")
        check_eq(acted(order), [["SUCCESSFUL", one(f"SELECT event_id FROM stripepay.payment_flow WHERE order_id = {order}"
                                                   " AND NOT already_processed")]], "acted once")
        check_eq([f[1] for f in flows(order)], ["f", "t"], "one first firing, then already_processed")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {failed[0]}"), "FAILED", "failed payment")
    check_eq(acted(failed[1])[0][0], "FAILED", "the failure acted on")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_event WHERE source = 'sync' AND endpoint IS NULL"),
             str(len(events)), "recorded as synced")
    notes = waiter()
    check_eq(sorted(n["payment_id"] for n in notes), sorted(int(p[0]) for p in paid + [failed]),
             "one notification per payment")
    check(all(n["event_id"].startswith("evt_") for n in notes), "notifications name the event")


def test_events_already_ingested_are_not_applied_twice():
    emulator_reset()
    start = held()
    (pid_a, order_a, _), (pid_b, order_b, _) = pay(), pay()
    events = emulator_events()
    # order A arrived whole by webhook; of order B only payment_intent.created did
    for e in events:
        if (e["data"]["object"].get("metadata") or {}).get("order_id") == str(order_a):
            deliver(e)
    a_events = [e for e in events if (e["data"]["object"].get("metadata") or {}).get("order_id") == str(order_a)]
    b_created = [e for e in events if e["type"] == "payment_intent.created"
                 and e["data"]["object"]["metadata"].get("order_id") == str(order_b)]
    deliver(b_created[0])
    before = held() - start
    check_eq(before, len(a_events) + 1, "held by webhook")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid_b}"), "PENDING", "B still pending")
    flows_a = flows(order_a)

    waiter = listen("stripepay_payment", 4, db=DB)
    r = sync(since=iso(events[0]["created"]))
    check_eq((r["fetched"], r["applied"], r["already_had"]), (len(events), len(events) - before, before), "counts")
    check_eq(flows(order_a), flows_a, "nothing more for A")
    check_eq(len(acted(order_a)), 1, "A acted on once")
    check_eq([f[:2] for f in flows(order_b)], [["SUCCESSFUL", "f"], ["SUCCESSFUL", "t"]], "B fired once")
    check_eq(len(acted(order_b)), 1, "B acted on once")
    check_eq([n["payment_id"] for n in waiter()], [int(pid_b)], "only B notified")
    check_eq(held() - start, len(events), "every event held once")


def test_a_second_sync_changes_nothing():
    before = (held(), one("SELECT count(*) FROM stripepay.payment_flow"), one("SELECT count(*) FROM acted"))
    waiter = listen("stripepay_payment", 3, db=DB)
    r = sync()
    check_eq(r["applied"], 0, "applied")
    check_eq(r["fetched"], r["already_had"], "fetched = already had")
    r = sync(since=iso(emulator_events()[0]["created"]))
    check_eq((r["applied"], r["already_had"]), (0, len(emulator_events())), "again with since")
    check_eq((held(), one("SELECT count(*) FROM stripepay.payment_flow"), one("SELECT count(*) FROM acted")),
             before, "tables")
    check_eq(waiter(), [], "notifications")


def test_paging_across_more_than_100_events_applies_oldest_first():
    emulator_reset()
    start = iso(int(emulator("GET", "/_emulator/clock")["now"]))
    orders = []
    for i in range(30):
        pid, order, _ = pay(amount=1000 + i)
        orders.append(order)
        if i % 10 == 9:
            emulator("POST", "/_emulator/clock", {"advance": 1})
    events = emulator_events()
    check_eq(len(events), 120, "events made")
    t0 = time.monotonic()
    r = sync(since=start)
    took = time.monotonic() - t0
    check_eq((r["fetched"], r["applied"], r["already_had"]), (120, 120, 0), "counts")
    calls = [x for x in emulator_requests("/v1/events")]
    shapes = [(x["params"].get("limit"), "starting_after" in x["params"], "ending_before" in x["params"])
              for x in calls]
    check_eq(shapes, [("100", False, False), ("100", True, False), ("100", False, True)], "requests")
    check(all("gte" in x["params"].get("created", {}) for x in calls), "created[gte] on every page")
    # the flows fired in the order the payments were made, across the page boundary
    fired = [int(r[0]) for r in q("SELECT order_id FROM stripepay.payment_flow"
                                  f" WHERE NOT already_processed AND order_id >= {orders[0]} ORDER BY id")]
    check_eq(fired, orders, "order of the flows")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_event WHERE id = ANY (ARRAY["
                 + ",".join(f"'{e['id']}'" for e in events) + "])"), "120", "recorded")
    return f"120 events in {took:.2f} s, {120 / took:.0f} events/s"


def test_since_is_respected_and_the_default_is_the_newest_event_held():
    emulator_reset()
    _, old_order, _ = pay()
    old_events = emulator_events()
    emulator("POST", "/_emulator/clock", {"advance": 100})
    cut = old_events[-1]["created"] + 50
    pid, new_order, _ = pay()
    new_events = emulator_events()[len(old_events):]
    r = sync(since=iso(cut) .replace("+00:00", ".700+00:00"))
    check_eq((r["fetched"], r["applied"]), (len(new_events), len(new_events)), "only the newer events")
    check_eq(q(f"SELECT extract(epoch FROM '{r['synced_from']}'::timestamptz)::bigint")[0][0], str(cut),
             "since rounded down to its second")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_event WHERE id = ANY (ARRAY["
                 + ",".join(f"'{e['id']}'" for e in old_events) + "])"), "0", "older events left alone")
    check_eq(emulator_requests("/v1/events")[0]["params"]["created"], {"gte": str(cut)}, "created[gte]")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL", "newer payment")
    newest = one("SELECT extract(epoch FROM max(created))::bigint FROM stripepay.webhook_event")
    before = len(emulator_requests("/v1/events"))
    r = sync()
    check_eq(q(f"SELECT extract(epoch FROM '{r['synced_from']}'::timestamptz)::bigint")[0][0], newest,
             "default: the newest event held")
    check_eq(emulator_requests("/v1/events")[before]["params"]["created"], {"gte": newest}, "default created[gte]")
    check_eq(r["applied"], 0, "nothing new")


def _concurrently(first_sql, then):
    """Runs first_sql (which holds its transaction open for a while) in another session, then
    `then` once first_sql is sleeping; returns (first's rows, then's result, seconds then took)."""
    out = {}

    def bg():
        out["rows"] = psql(first_sql, db=DB)
    t = threading.Thread(target=bg)
    t.start()
    for _ in range(200):
        if one("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2.5)%'"
               " AND query NOT LIKE '%pg_stat_activity%'") != "0":
            break
        time.sleep(0.02)
    t0 = time.monotonic()
    result = then()
    took = time.monotonic() - t0
    t.join(30)
    return out.get("rows"), result, took


def test_sync_and_a_webhook_of_the_same_event_apply_it_once():
    emulator_reset()
    pid, order, _ = pay()
    events = emulator_events()
    succeeded = next(e for e in events if e["type"] == "payment_intent.succeeded")
    body = event_bytes(succeeded)
    webhook_sql = (f"SELECT already_processed FROM stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea,"
                   f" '{sign(body)}')")
    since = iso(events[0]["created"])

    # a webhook in flight when sync comes: sync waits for it, then finds the event held
    rows, r, took = _concurrently(f"BEGIN; {webhook_sql}; SELECT pg_sleep(2.5); COMMIT;", lambda: sync(since))
    check_eq(rows[0], ["f"], "the webhook applied it")
    check_eq((r["applied"], r["already_had"]), (len(events) - 1, 1), "sync found it held")
    check(took > 1.0, f"sync waited for the webhook ({took:.2f} s)")
    check_eq([f[:2] for f in flows(order)], [["SUCCESSFUL", "f"], ["SUCCESSFUL", "t"]], "fired once")

    # sync in flight when the webhook comes: the webhook waits, then answers already_processed
    emulator_reset()
    pid, order, _ = pay()
    events = emulator_events()
    succeeded = next(e for e in events if e["type"] == "payment_intent.succeeded")
    rows, result, took = _concurrently(
        f"BEGIN; SELECT applied FROM stripepay.sync_events('{iso(events[0]['created'])}'); SELECT pg_sleep(2.5); COMMIT;",
        lambda: deliver(succeeded))
    check_eq(rows[0], [str(len(events))], "sync applied every event")
    check_eq(result[2], True, "the webhook found it processed")
    check(took > 1.0, f"the webhook waited for sync ({took:.2f} s)")
    check_eq([f[:2] for f in flows(order)], [["SUCCESSFUL", "f"], ["SUCCESSFUL", "t"]], "fired once")
    check_eq(len(acted(order)), 1, "acted once")


def test_a_failing_trigger_fails_the_whole_sync_naming_the_event():
    emulator_reset()
    _, good_order, _ = pay()
    _, bad_order, _ = pay()
    bad_event = next(e for e in emulator_events() if e["type"] == "payment_intent.succeeded"
                     and e["data"]["object"]["metadata"]["order_id"] == str(bad_order))
    q(f"""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN IF NEW.order_id = {bad_order} THEN RAISE EXCEPTION 'order {bad_order} is locked'; END IF;
          RETURN NEW; END $$;
          CREATE TRIGGER refuse AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION refuse();""")
    try:
        before = (held(), one("SELECT count(*) FROM stripepay.payment_flow"))
        waiter = listen("stripepay_payment", 3, db=DB)
        e = expect_error(f"SELECT * FROM stripepay.sync_events('{iso(emulator_events()[0]['created'])}')",
                         "P0001", db=DB)
        check(f"order {bad_order} is locked" in e.message, e.message)
        check(f"stripepay.sync_events applying Stripe event {bad_event['id']}" in e.stderr, e.stderr)
        check_eq((held(), one("SELECT count(*) FROM stripepay.payment_flow")), before, "nothing kept")
        check_eq(acted(good_order), [], "the good order was rolled back too")
        check_eq(waiter(), [], "no notification")
    finally:
        q("DROP TRIGGER refuse ON stripepay.payment_flow; DROP FUNCTION refuse()")
    r = sync(since=iso(emulator_events()[0]["created"]))
    check_eq(r["applied"], len(emulator_events()), "all applied once the trigger is fixed")
    check_eq(len(acted(bad_order)), 1, "acted once")


def test_stripe_errors_fail_the_call_and_keep_nothing():
    emulator_reset()
    for _ in range(30):
        pay()
    since = iso(emulator_events()[0]["created"])
    before = (held(), one("SELECT count(*) FROM stripepay.payment_flow"))
    # the third events request fails: both pages listed, the oldest already applied
    fault("500", count=3, after=2, path_prefix="/v1/events")
    e = expect_error(f"SELECT * FROM stripepay.sync_events('{since}')", "SP005", db=DB)
    check(e.message == "error on Stripe's side", e.message)
    check("Request-Id req_" in e.stderr and "GET /v1/events?" in e.stderr, e.stderr)
    check_eq((held(), one("SELECT count(*) FROM stripepay.payment_flow")), before, "nothing kept")
    r = sync(since)
    check_eq((r["applied"], r["already_had"]), (120, 0), "a second run applies it all")

    q("SELECT 1 FROM stripepay.configure(secret_key => 'sk_test_invalid000000000')")
    try:
        e = expect_error("SELECT * FROM stripepay.sync_events()", "SP003", db=DB)
        check("Request-Id req_" in e.stderr, e.stderr)
        check("sk_test_invalid" not in e.stderr, "the key stays out of the error")
    finally:
        q(f"SELECT 1 FROM stripepay.configure(secret_key => '{KEY}')")
    expect_error("SELECT * FROM stripepay.sync_events('infinity')", "22023", db=DB)


def test_refresh_moves_a_payment_whose_webhook_was_lost():
    emulator_reset()
    pid, order, _ = pay()
    created = next(e for e in emulator_events() if e["type"] == "payment_intent.created")
    deliver(created)            # everything after it was lost
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "PENDING", "before")

    waiter = listen("stripepay_payment", 4, db=DB)
    row = q(f"SELECT status, payment_intent_id IS NOT NULL, charge_id IS NOT NULL"
            f" FROM stripepay.refresh_payment({pid})")[0]
    check_eq(row, ["SUCCESSFUL", "t", "t"], "refreshed row")
    check_eq(q(f"SELECT event_id, event_type, already_processed FROM stripepay.payment_flow WHERE order_id = {order}"),
             [["refresh_payment", "payment_intent.succeeded", "f"]], "the flow fired")
    check_eq(acted(order), [["SUCCESSFUL", "refresh_payment"]], "acted")
    # the late webhooks find the outcome known: no second firing, no second notification
    for e in emulator_events():
        if e["type"] in ("payment_intent.succeeded", "checkout.session.completed"):
            deliver(e)
    check_eq([f[1] for f in flows(order)], ["f", "t", "t"], "late webhooks are already_processed")
    check_eq(len(acted(order)), 1, "acted once")
    notes = waiter()
    check_eq([(n["payment_id"], n["event_id"]) for n in notes], [(int(pid), "refresh_payment")], "one notification")
    q(f"SELECT 1 FROM stripepay.refresh_payment({pid})")
    check_eq(len(flows(order)), 3, "refreshing again fires nothing")


def test_refresh_follows_failure_then_expiry_and_payment_intents():
    emulator_reset()
    pid, order, sess = pay("failed")
    check_eq(q(f"SELECT status, failure_code FROM stripepay.refresh_payment({pid})"),
             [["FAILED", "generic_decline"]], "failed")
    q(f"SELECT 1 FROM stripepay.refresh_payment({pid})")
    check_eq(flows(order), [["FAILED", "f", "payment_intent.payment_failed"]], "a failure seen again is no news")
    emulator("POST", "/_emulator/clock", {"advance": 25 * 3600})     # the session expires
    check_eq(one(f"SELECT status FROM stripepay.refresh_payment({pid})"), "CANCELED", "expired")
    check_eq([f[0] for f in flows(order)], ["FAILED", "CANCELED"], "flows")
    check_eq(one(f"SELECT payment_intent_id FROM stripepay.payment_record WHERE id = {pid}") is not None, True,
             "the session's PaymentIntent recorded")

    # a PaymentIntent payment (Stripe Elements) whose confirmation never came back
    q("SELECT 1 FROM stripepay.configure(payment_flow => 'payment_intent')")
    try:
        _order[0] += 1
        q(f"INSERT INTO orders (id) VALUES ({_order[0]})")
        pid, pi = q(f"SELECT id, payment_intent_id FROM stripepay.stripe_pay({_order[0]}, 'usd', 900)")[0]
        check_eq(one(f"SELECT status FROM stripepay.refresh_payment({pid})"), "PENDING", "not paid yet")
        emulator("POST", f"/_emulator/payment_intents/{pi}/confirm", {"outcome": "succeeded"})
        check_eq(one(f"SELECT status FROM stripepay.refresh_payment({pid})"), "SUCCESSFUL", "paid")
        check_eq(acted(_order[0]), [["SUCCESSFUL", "refresh_payment"]], "acted")
    finally:
        q("SELECT 1 FROM stripepay.configure(payment_flow => 'checkout')")


def test_refresh_errors():
    emulator_reset()
    pid, order, _ = pay()
    expect_error("SELECT * FROM stripepay.refresh_payment(987654)", "SP012", db=DB)
    expect_error("SELECT * FROM stripepay.refresh_payment(NULL)", "22004", db=DB)
    lonely = one("INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, created_by)"
                 " VALUES (1, 'usd', 1000, 'checkout', 'postgres') RETURNING id")
    expect_error(f"SELECT * FROM stripepay.refresh_payment({lonely})", "SP018", db=DB)
    ghost = one("INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, payment_intent_id, created_by)"
                " VALUES (2, 'usd', 1000, 'payment_intent', 'pi_doesnotexist', 'postgres') RETURNING id")
    e = expect_error(f"SELECT * FROM stripepay.refresh_payment({ghost})", "SP002", db=DB)
    check("No such payment_intent" in e.stderr and "Request-Id req_" in e.stderr, e.stderr)
    fault("500", count=3, path_prefix="/v1/checkout/sessions")
    expect_error(f"SELECT * FROM stripepay.refresh_payment({pid})", "SP005", db=DB)
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "PENDING", "unchanged")
    check_eq(flows(order), [], "nothing fired")


def test_who_may_sync_and_refresh():
    emulator_reset()
    pid, order, _ = pay(role="regress_sp_sync_app")
    e = expect_error(f"SET ROLE regress_sp_sync_other; SELECT * FROM stripepay.refresh_payment({pid})",
                     "42501", db=DB)
    check("regress_sp_sync_app" in e.stderr, e.stderr)
    check_eq(one(f"SET ROLE regress_sp_sync_app; SELECT status FROM stripepay.refresh_payment({pid})"),
             "SUCCESSFUL", "the payer")
    check_eq(one(f"SET ROLE regress_sp_sync_boss; SELECT status FROM stripepay.refresh_payment({pid})"),
             "SUCCESSFUL", "an admin")
    expect_error("SET ROLE regress_sp_sync_app; SELECT * FROM stripepay.sync_events()", "42501", db=DB)
    check_eq(sync(role="regress_sp_sync_boss")["applied"] >= 0, True, "an admin syncs")


if __name__ == "__main__":
    setup()
    run("sync", [
        test_events_missed_while_the_endpoint_was_down_are_recovered,
        test_events_already_ingested_are_not_applied_twice,
        test_a_second_sync_changes_nothing,
        test_paging_across_more_than_100_events_applies_oldest_first,
        test_since_is_respected_and_the_default_is_the_newest_event_held,
        test_sync_and_a_webhook_of_the_same_event_apply_it_once,
        test_a_failing_trigger_fails_the_whole_sync_naming_the_event,
        test_stripe_errors_fail_the_call_and_keep_nothing,
        test_refresh_moves_a_payment_whose_webhook_was_lost,
        test_refresh_follows_failure_then_expiry_and_payment_intents,
        test_refresh_errors,
        test_who_may_sync_and_refresh,
    ], teardown=teardown)
