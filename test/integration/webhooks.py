"""Webhook ingestion: signatures, exactly-once, order-proof apply, actionflows
and NOTIFY, against events the emulator emits and Stripe's own samples."""
import copy
import json
import os
import random
import subprocess
import threading
import time

from harness import (EMULATOR, TEST_KEY, WEBHOOK_SECRET, SqlError, check, check_eq, fresh_database,
                     emulator, emulator_events, emulator_reset, event_bytes, expect_error, ingest,
                     psql, run, scalar, sign)
from harness import listen as harness_listen

DB = "sp_webhooks"
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "events")
KEY = TEST_KEY


def q(sql):
    return psql(sql, db=DB)


def one(sql):
    return scalar(sql, db=DB)


def deliver(event, secret=WEBHOOK_SECRET, endpoint=None):
    body = event_bytes(event) if isinstance(event, dict) else event
    return ingest(body, sign(body, secret), endpoint=endpoint, db=DB)


def fixture(name, **changes):
    """A Stripe sample event with changes: keys are dotted paths."""
    with open(os.path.join(FIXTURES, name + ".json")) as f:
        event = json.load(f)
    for path, value in changes.items():
        node = event
        parts = path.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[parts[-1]] = value
    return event


_seq = [0]


def uid(prefix):
    _seq[0] += 1
    return f"{prefix}_{os.getpid()}x{_seq[0]}"


def setup():
    fresh_database(DB, webhook_secret=WEBHOOK_SECRET)
    q("""
CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'new', feature boolean NOT NULL DEFAULT false,
                     parent bigint);
-- the README's payment actionflow: mark the order paid
-- actionflow triggers run inside the ingest, whose search_path is pg_catalog, pg_temp
CREATE FUNCTION mark_order() RETURNS trigger LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
  IF NOT NEW.already_processed THEN
    UPDATE orders SET status = lower(NEW.payment_status) WHERE id = NEW.order_id;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER mark_order AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION mark_order();
""")


def listen(channel, seconds):
    return harness_listen(channel, seconds, db=DB)


def pay_and_complete(order_id, outcome="paid", amount=1500):
    emulator_reset()
    q(f"INSERT INTO orders (id) VALUES ({order_id}) ON CONFLICT DO NOTHING")
    pid, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({order_id}, 'usd', {amount})")[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": outcome})
    return pid, sess, emulator_events()


# --- signatures ------------------------------------------------------------------

def test_every_bad_signature_is_refused_and_stores_nothing():
    body = event_bytes(fixture("payment_intent.succeeded", id="evt_" + uid("sig")))
    now = int(time.time())
    before = one("SELECT count(*) FROM stripepay.webhook_event")
    cases = [
        (None, "SP020"), ("", "SP020"),
        ("t=abc,v1=" + "0" * 64, "SP021"), ("v1=" + "0" * 64, "SP021"),
        (f"t={now},v0=" + "0" * 64, "SP022"),
        (sign(body, timestamp=now - 310), "SP023"),
        (sign(body, timestamp=now + 310), "SP024"),
        (sign(body, secret="whsec_someoneelsessecret00000000"), "SP026"),
        (sign(body + b" "), "SP026"),                       # payload changed after signing
        (sign(body).replace("t=", "t=1", 1), "SP026"),       # timestamp changed
    ]
    good = sign(body)
    sig = good.split("v1=")[1]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    cases.append((good.replace(sig, flipped), "SP026"))       # one hex digit changed
    for header, sqlstate in cases:
        try:
            ingest(body, header, db=DB)
            raise AssertionError(f"{header!r} was accepted")
        except SqlError as e:
            check_eq(e.sqlstate, sqlstate, f"SQLSTATE for {header!r}")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_event"), before, "events stored")
    # unknown schemes are ignored, any matching v1 of several is enough
    ok = sign(body, extra=",v0=abc,v2=zzz,v1=" + "1" * 64)
    check_eq(ingest(body, ok, db=DB)[2], False, "already_processed")


def test_text_payload_is_accepted_byte_for_byte():
    e = fixture("payment_intent.succeeded", id="evt_" + uid("text"))
    e["data"]["object"]["description"] = "Café ☕ — \"quoted\" \\ back\nslash 😀"
    body = event_bytes(e)
    text = body.decode().replace("'", "''")
    rows = q(f"SELECT event_id, already_processed FROM stripepay.stripe_ingest_webhook('{text}', '{sign(body)}')")
    check_eq(rows, [[e["id"], "f"]], "text variant")
    stored = one(f"SELECT encode(convert_to(payload->'data'->'object'->>'description', 'UTF8'), 'hex') "
                 f"FROM stripepay.webhook_event WHERE id = '{e['id']}'")
    check_eq(bytes.fromhex(stored).decode(), e["data"]["object"]["description"], "stored payload")
    # a signature over other bytes than the text's UTF-8 is refused
    expect_error(f"SELECT stripepay.stripe_ingest_webhook('{text} ', '{sign(body)}')", "SP026", db=DB)


def test_payload_must_be_a_stripe_event():
    for body, sqlstate in [(b"not json", "SP027"), (b'{"id": "evt_1"', "SP027"),
                           (b"[]", "SP028"), (b'{"id": "evt_1", "type": "x"}', "SP028"),
                           (b'{"id": "x", "type": "a.b", "created": 1, "livemode": false, "data": {"object": {"object": "charge"}}}', "SP028")] + [
            # JSON that jsonb cannot store, in a field nobody reads: refused as not JSON, at once
            (event_bytes(fixture("charge.refunded")).replace(b'"object": "event"', b'"object": "event", "note": ' + bad), "SP027")
            for bad in (b'"\\ud800"', b'"\\u0000"', b'"tab\there"', b'"\xc0\xaf"', b'NaN', b'012')]:
        try:
            ingest(body, sign(body), db=DB)
            raise AssertionError(f"{body!r} was accepted")
        except SqlError as e:
            check_eq(e.sqlstate, sqlstate, f"SQLSTATE for {body!r}")


def test_livemode_must_match_the_key():
    e = fixture("payment_intent.succeeded", id="evt_" + uid("live"), livemode=True)
    try:
        deliver(e)
        raise AssertionError("a live event was accepted with a test key")
    except SqlError as err:
        check_eq(err.sqlstate, "SP029", "SQLSTATE")
    check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE id = '{e['id']}'"), "0", "stored")


def test_endpoint_secrets_and_rotation():
    new = "whsec_rotated0000000000000000000000"
    old = "whsec_retiring000000000000000000000"
    q(f"SELECT 1 FROM stripepay.add_webhook_secret('{new}', 'payments')")
    q(f"SELECT 1 FROM stripepay.add_webhook_secret('{old}', 'payments', now() + interval '1 hour')")
    e = fixture("payment_intent.succeeded", id="evt_" + uid("rot"))
    body = event_bytes(e)
    check_eq(ingest(body, sign(body, old), endpoint="payments", db=DB)[2], False, "old secret, still live")
    e["id"] = "evt_" + uid("rot")
    body = event_bytes(e)
    # during a roll Stripe signs with both
    both = sign(body, new) + ",v1=" + sign(body, old).split("v1=")[1]
    check_eq(ingest(body, both, endpoint="payments", db=DB)[2], False, "two v1 signatures")
    # an endpoint only takes its own secrets; NULL takes any live one
    expect_error(f"SELECT stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body, new)}', 'refunds')",
                 "SP025", db=DB)
    expect_error(f"SELECT stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body)}', 'payments')",
                 "SP026", db=DB)
    # the old secret expires
    q(f"SELECT 1 FROM stripepay.add_webhook_secret('{old}', 'payments', now() - interval '1 second')")
    e["id"] = "evt_" + uid("rot")
    body = event_bytes(e)
    expect_error(f"SELECT stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body, old)}', 'payments')",
                 "SP026", db=DB)
    check_eq(q("SELECT endpoint, secret, live FROM stripepay.webhook_secrets WHERE endpoint = 'payments' ORDER BY id"),
             [["payments", "whsec_…0000", "t"], ["payments", "whsec_…0000", "f"]], "masked secrets")
    expect_error("SELECT stripepay.add_webhook_secret('sk_test_notawebhooksecret')", "22023", db=DB)


# --- the payment loop -------------------------------------------------------------

def test_paid_checkout_turns_successful_fires_the_flow_and_notifies_once():
    oid = 7001
    waiter = listen("stripepay_payment", 4)
    pid, sess, events = pay_and_complete(oid)
    types = [e["type"] for e in events]
    check("checkout.session.completed" in types and "payment_intent.succeeded" in types, types)
    for e in events:
        check_eq(deliver(e)[2], False, f"already_processed for {e['type']}")
    row = q(f"SELECT status, payment_intent_id IS NOT NULL, charge_id IS NOT NULL, event_created IS NOT NULL"
            f"  FROM stripepay.payment_record WHERE id = {pid}")[0]
    check_eq(row, ["SUCCESSFUL", "t", "t", "t"], "payment row")
    check_eq(one(f"SELECT status FROM orders WHERE id = {oid}"), "successful", "order marked by the user trigger")
    flows = q(f"SELECT payment_status, already_processed FROM stripepay.payment_flow WHERE payment_id = {pid} ORDER BY id")
    check_eq(flows[0], ["SUCCESSFUL", "f"], "first flow")
    check(all(f == ["SUCCESSFUL", "t"] for f in flows[1:]), f"later flows {flows}")
    notes = waiter()
    mine = [n for n in notes if n.get("payment_id") == int(pid)]
    check_eq(len(mine), 1, f"notifications for the payment: {notes}")
    check_eq((mine[0]["order_id"], mine[0]["status"]), (oid, "SUCCESSFUL"), "notification")
    check(len(json.dumps(mine[0])) < 8000 and "sk_" not in json.dumps(mine[0]), "small, secret-free payload")
    linked = one(f"SELECT count(*) FROM stripepay.webhook_event WHERE payment_id = {pid}")
    check(int(linked) >= 3, f"events linked to the payment: {linked}")


def test_duplicates_report_already_processed_and_change_nothing():
    pid, sess, events = pay_and_complete(7002)
    for e in events:
        deliver(e)
    snapshot = q("SELECT * FROM stripepay.payment_record ORDER BY id")
    counts = q("SELECT (SELECT count(*) FROM stripepay.webhook_event), (SELECT count(*) FROM stripepay.payment_flow)")
    for e in events + events:
        check_eq(deliver(e)[2], True, "already_processed")
    check_eq(q("SELECT * FROM stripepay.payment_record ORDER BY id"), snapshot, "payments after duplicates")
    check_eq(q("SELECT (SELECT count(*) FROM stripepay.webhook_event), (SELECT count(*) FROM stripepay.payment_flow)"),
             counts, "events and flows after duplicates")


def test_concurrent_deliveries_process_once():
    pid, sess, events = pay_and_complete(7003)
    e = next(x for x in events if x["type"] == "payment_intent.succeeded")
    body = event_bytes(e)
    header = sign(body)
    results, errors = [], []
    barrier = threading.Barrier(12)

    def worker():
        barrier.wait()
        try:
            results.append(ingest(body, header, db=DB)[2])
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check_eq(errors, [], "errors")
    check_eq(sorted(results), [False] + [True] * 11, "already_processed over 12 concurrent deliveries")
    check_eq(one(f"SELECT count(*) FROM stripepay.payment_flow WHERE event_id = '{e['id']}'"), "1", "flows")


def test_failing_user_trigger_rolls_the_event_back():
    pid, sess, events = pay_and_complete(7004)
    q("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'warehouse is down'; END $$;
         CREATE TRIGGER refuse AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION refuse();""")
    try:
        waiter = listen("stripepay_payment", 2)
        e = next(x for x in events if x["type"] == "payment_intent.succeeded")
        try:
            deliver(e)
            raise AssertionError("the failing trigger did not fail the ingest")
        except SqlError as err:
            check("warehouse is down" in err.message, err.message)
        check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE id = '{e['id']}'"), "0", "event kept")
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "PENDING", "status")
        check_eq([n for n in waiter() if n.get("payment_id") == int(pid)], [], "notifications")
    finally:
        q("DROP TRIGGER refuse ON stripepay.payment_flow; DROP FUNCTION refuse()")
    # Stripe delivers again: now it lands, once
    check_eq(deliver(e)[2], False, "redelivery processed")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL", "status")


def test_rolled_back_ingest_sends_no_notification():
    pid, sess, events = pay_and_complete(7005)
    e = next(x for x in events if x["type"] == "payment_intent.succeeded")
    body = event_bytes(e)
    waiter = listen("stripepay_payment", 2)
    q(f"BEGIN; SELECT stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body)}'); ROLLBACK;")
    check_eq([n for n in waiter() if n.get("payment_id") == int(pid)], [], "notifications after ROLLBACK")
    waiter = listen("stripepay_payment", 2)
    q("SET stripepay.notify = off;" f"SELECT stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body)}')")
    check_eq([n for n in waiter() if n.get("payment_id") == int(pid)], [], "notifications with stripepay.notify = off")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL", "applied all the same")


def test_failed_then_paid_in_any_order_ends_successful():
    emulator_reset()
    oid = 7006
    q(f"INSERT INTO orders (id) VALUES ({oid})")
    pid, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({oid}, 'usd', 2500)")[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "failed"})
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
    events = emulator_events()
    rng = random.Random(7006)
    for i in range(25):
        q(f"DELETE FROM stripepay.webhook_event WHERE payment_id = {pid} OR order_id = {oid};"
          f"UPDATE stripepay.payment_record SET status = 'PENDING', event_created = NULL WHERE id = {pid}")
        order = events[:]
        rng.shuffle(order)
        for e in order:
            deliver(e)
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL",
                 f"final status after order {[x['type'] for x in order]}")
    return "25 shuffles"


def sub_event(sub_id, rp_id, status, created, kind="updated", n=[0], **changes):
    n[0] += 1
    e = fixture("customer.subscription.updated", id=f"evt_sub{sub_id}x{n[0]}", type=f"customer.subscription.{kind}",
                created=created, **{"data.object.id": sub_id, "data.object.status": status,
                                    "data.object.metadata": {"order_id": "8001", "stripepay_recurring_payment_id": str(rp_id)}})
    for path, value in changes.items():
        node = e["data"]["object"]
        parts = path.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[parts[-1]] = value
    return e


def test_subscription_events_in_any_order_end_in_the_newest_state():
    sub = "sub_" + uid("order")
    t = 1_800_000_000
    seq = [sub_event(sub, 0, "incomplete", t, "created"),
           sub_event(sub, 0, "active", t),                 # same second: further along wins
           sub_event(sub, 0, "past_due", t + 60),
           sub_event(sub, 0, "active", t + 120),
           sub_event(sub, 0, "canceled", t + 100, "deleted")]   # terminal, though not the newest
    rng = random.Random(8001)
    for i in range(30):
        q(f"DELETE FROM stripepay.subscription_flow WHERE recurring_payment_id IN (SELECT id FROM stripepay.recurring_payment WHERE subscription_id = '{sub}');"
          f"DELETE FROM stripepay.webhook_event WHERE object_id = '{sub}';"
          f"DELETE FROM stripepay.recurring_payment WHERE subscription_id = '{sub}'")
        order = seq[:]
        rng.shuffle(order)
        for e in order:
            deliver(e)
        check_eq(q(f"SELECT status, order_id FROM stripepay.recurring_payment WHERE subscription_id = '{sub}'"),
                 [["CANCELED", "8001"]], f"after {[x['data']['object']['status'] for x in order]}")
    # without the cancel, the newest state wins
    for i in range(30):
        q(f"DELETE FROM stripepay.subscription_flow WHERE recurring_payment_id IN (SELECT id FROM stripepay.recurring_payment WHERE subscription_id = '{sub}');"
          f"DELETE FROM stripepay.webhook_event WHERE object_id = '{sub}';"
          f"DELETE FROM stripepay.recurring_payment WHERE subscription_id = '{sub}'")
        order = seq[:4]
        rng.shuffle(order)
        for e in order:
            deliver(e)
        check_eq(one(f"SELECT status FROM stripepay.recurring_payment WHERE subscription_id = '{sub}'"), "ACTIVE",
                 f"after {[(x['created'] - t, x['data']['object']['status']) for x in order]}")
    return "60 shuffles"


def test_subscription_period_in_both_api_shapes():
    new = fixture("customer.subscription.updated", id="evt_" + uid("shape"))
    old = fixture("customer.subscription.updated.2024-06-20", id="evt_" + uid("shape"))
    for e in (new, old):
        sub = "sub_" + uid("shape")
        e["data"]["object"]["id"] = sub
        e["data"]["object"]["metadata"] = {"order_id": "8100"}
        deliver(e)
        row = q(f"SELECT status, current_period_end IS NOT NULL, price_id LIKE 'price_%', customer_id "
                f"FROM stripepay.recurring_payment WHERE subscription_id = '{sub}'")
        check_eq(row, [["ACTIVE", "t", "t", e["data"]["object"]["customer"]]], f"row for {e['api_version']}")


def test_renewal_makes_one_payment_and_the_deduction_flow_links_a_new_order():
    sub = "sub_" + uid("renew")
    deliver(sub_event(sub, 0, "active", 1_800_000_000, "created"))
    rp = one(f"SELECT id FROM stripepay.recurring_payment WHERE subscription_id = '{sub}'")
    q("""CREATE SEQUENCE IF NOT EXISTS renewal_orders START 900000;
         CREATE OR REPLACE FUNCTION new_renewal_order() RETURNS trigger LANGUAGE plpgsql
         SET search_path = public AS $$
         BEGIN
           INSERT INTO orders (id, parent) VALUES (nextval('renewal_orders'), NEW.subscription_order_id)
           RETURNING id INTO NEW.order_id;
           RETURN NEW;
         END $$;
         CREATE TRIGGER new_renewal_order BEFORE INSERT ON stripepay.deduction_flow
           FOR EACH ROW EXECUTE FUNCTION new_renewal_order();""")
    try:
        inv = fixture("invoice.paid", id="evt_" + uid("inv"), **{"data.object.id": "in_" + uid("inv")})
        inv["data"]["object"]["parent"]["subscription_details"]["subscription"] = sub
        for _ in range(3):
            deliver(inv)
        inv2 = copy.deepcopy(inv)
        inv2["id"] = "evt_" + uid("inv")              # the same invoice, in another event
        deliver(inv2)
        rows = q(f"SELECT kind, status, amount, order_id >= 900000, invoice_id FROM stripepay.payment_record "
                 f"WHERE recurring_payment_id = {rp}")
        check_eq(rows, [["RENEWAL", "SUCCESSFUL", "2000", "t", inv["data"]["object"]["id"]]], "renewal payments")
        check_eq(one(f"SELECT count(*) FROM stripepay.deduction_flow WHERE recurring_payment_id = {rp}"), "1", "flows")
        check_eq(one(f"SELECT parent FROM orders WHERE id = (SELECT order_id FROM stripepay.payment_record "
                     f"WHERE recurring_payment_id = {rp})"), "8001", "new order's parent")
        # the first invoice of a subscription is not a renewal
        first = fixture("invoice.paid", id="evt_" + uid("inv"), **{"data.object.id": "in_" + uid("inv"),
                                                                  "data.object.billing_reason": "subscription_create"})
        first["data"]["object"]["parent"]["subscription_details"]["subscription"] = sub
        deliver(first)
        check_eq(one(f"SELECT count(*) FROM stripepay.payment_record WHERE recurring_payment_id = {rp}"), "1", "payments")
    finally:
        q("DROP TRIGGER new_renewal_order ON stripepay.deduction_flow")


def test_refund_lifecycle_in_any_order_counts_only_what_stands():
    pid, sess, events = pay_and_complete(7007, amount=3000)
    for e in events:
        deliver(e)
    pi = one(f"SELECT payment_intent_id FROM stripepay.payment_record WHERE id = {pid}")
    rid = "re_" + uid("ref")
    t = int(time.time()) - 100

    def refund_event(kind, status, created, n=[0]):
        n[0] += 1
        name = "refund.failed" if kind == "failed" else "refund.created"
        return fixture(name, id=f"evt_{rid}x{n[0]}", type=f"refund.{kind}", created=created,
                       **{"data.object.id": rid, "data.object.status": status, "data.object.amount": 1000,
                          "data.object.payment_intent": pi, "data.object.charge": None,
                          "data.object.metadata": {}})

    seq = [refund_event("created", "pending", t), refund_event("updated", "succeeded", t + 5),
           refund_event("failed", "failed", t + 60)]
    rng = random.Random(7007)
    for i in range(12):
        q(f"DELETE FROM stripepay.refund_flow WHERE payment_id = {pid}; DELETE FROM stripepay.webhook_event WHERE object_id = '{rid}';"
          f"DELETE FROM stripepay.refund WHERE payment_id = {pid}; UPDATE stripepay.payment_record SET amount_refunded = 0 WHERE id = {pid}")
        order = seq[:2]
        rng.shuffle(order)
        for e in order:
            deliver(e)
        check_eq(q(f"SELECT status, amount, created_by FROM stripepay.refund WHERE stripe_refund_id = '{rid}'"),
                 [["SUCCEEDED", "1000", "stripe"]], "a dashboard refund is recorded")
        check_eq(one(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {pid}"), "1000", "refunded")
        deliver(seq[2])
        check_eq(one(f"SELECT status FROM stripepay.refund WHERE stripe_refund_id = '{rid}'"), "FAILED", "failed later")
        check_eq(one(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {pid}"), "0",
                 "a failed refund no longer counts")
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL", "payment status")
    flows = q(f"SELECT refund_status, already_processed FROM stripepay.refund_flow WHERE payment_id = {pid} ORDER BY id")
    check_eq(flows, [["SUCCEEDED", "f"], ["FAILED", "f"]], "refund flows of the last round")


def test_a_refund_before_its_payments_events_waits_and_counts_once():
    # A dashboard refund's events can beat the payment's own (Stripe retries
    # checkout.session.completed after a 5xx): the row has no PaymentIntent
    # or charge id yet, so the refund names nothing we know.  It used to be
    # dropped, leaving amount_refunded at 0 for good; it must wait instead.
    pid, sess, events = pay_and_complete(7009, amount=3000)
    pi = next(e for e in events if e["type"] == "payment_intent.succeeded")["data"]["object"]["id"]
    emulator("POST", "/_emulator/refunds", {"payment_intent": pi, "amount": 1000})
    events = emulator_events()
    stripe_refunded = next(e for e in events if e["type"] == "charge.refunded")["data"]["object"]["amount_refunded"]
    check_eq(stripe_refunded, 1000, "Stripe's charge.amount_refunded")
    is_refund = lambda e: e["type"] in ("refund.created", "refund.updated", "charge.refunded")
    ids = "ARRAY[" + ", ".join(f"'{e['id']}'" for e in events) + "]"

    def reset():
        q(f"DELETE FROM stripepay.refund_flow WHERE payment_id = {pid}; DELETE FROM stripepay.payment_flow WHERE payment_id = {pid};"
          f"DELETE FROM stripepay.waiting_event WHERE event_id = ANY ({ids}); DELETE FROM stripepay.webhook_event WHERE id = ANY ({ids});"
          f"DELETE FROM stripepay.refund WHERE payment_id = {pid};"
          f"UPDATE stripepay.payment_record SET status = 'PENDING', event_created = NULL, payment_intent_id = NULL,"
          f"  charge_id = NULL, amount_refunded = 0 WHERE id = {pid}")

    def settled(what):
        check_eq(q(f"SELECT status, amount_refunded, (SELECT count(*) FROM stripepay.refund WHERE payment_id = {pid}),"
                   f"       (SELECT count(*) FROM stripepay.waiting_event WHERE event_id = ANY ({ids}))"
                   f"  FROM stripepay.payment_record WHERE id = {pid}"),
                 [["SUCCESSFUL", str(stripe_refunded), "1", "0"]],
                 f"status, amount_refunded, refunds, waiting events after {what}")

    # every refund event first: they wait, counted only once the payment learns its ids
    reset()
    for e in [e for e in events if is_refund(e)]:
        deliver(e)
    check(int(one(f"SELECT count(*) FROM stripepay.waiting_event WHERE event_id = ANY ({ids})")) > 0, "nothing waits")
    check_eq(one(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {pid}"), "0", "counted early")
    # a shop's triggers must see the order paid before they see it refunded
    q("CREATE TABLE public.flow_order (n bigserial, flow text);"
      "CREATE FUNCTION public.log_flow() RETURNS trigger LANGUAGE plpgsql AS"
      "  $$ BEGIN INSERT INTO public.flow_order (flow) VALUES (TG_TABLE_NAME); RETURN NEW; END $$;"
      "CREATE TRIGGER log_flow AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION public.log_flow();"
      "CREATE TRIGGER log_flow AFTER INSERT ON stripepay.refund_flow FOR EACH ROW EXECUTE FUNCTION public.log_flow()")
    for e in [e for e in events if not is_refund(e)]:
        deliver(e)
    flows = [r[0] for r in q("SELECT flow FROM public.flow_order ORDER BY n")]
    q("DROP TRIGGER log_flow ON stripepay.payment_flow; DROP TRIGGER log_flow ON stripepay.refund_flow;"
      "DROP FUNCTION public.log_flow(); DROP TABLE public.flow_order")
    check(flows[:1] == ["payment_flow"] and "refund_flow" in flows, f"flows fired in the order {flows}")
    settled("the refund's events, then the payment's")
    check_eq(q(f"SELECT type FROM stripepay.webhook_event WHERE id = ANY ({ids})"
               f"   AND ((type LIKE 'refund.%' AND (payment_id IS DISTINCT FROM {pid} OR refund_id IS NULL))"
               f"     OR (type = 'charge.refunded' AND payment_id IS DISTINCT FROM {pid}))"),
             [], "waited refund events not linked to the payment (and refund)")
    for e in events:                   # Stripe's retries change nothing
        check_eq(deliver(e)[2], True, f"already_processed for {e['type']}")
    settled("redelivery")
    rng = random.Random(7009)
    early = 0
    for _ in range(20):
        reset()
        order = events[:]
        rng.shuffle(order)
        types = [e["type"] for e in order]
        # the old code lost the refund when refund.created came before every event giving the payment its ids
        early += types.index("refund.created") < min(
            i for i, t in enumerate(types) if t.startswith(("payment_intent.", "checkout.session.")))
        for e in order:
            deliver(e)
        settled(types)
    check(early >= 3, f"only {early} of 20 shuffles put the refund before the payment's ids")
    return f"20 shuffles, {early} with the refund before the payment's ids"



def test_a_refund_waiting_while_its_payment_commits_is_applied():
    # The refund's ingest found no payment and decided to wait, but committed only after the
    # payment's ingest had learned its ids and looked for waiting refunds: it waited for ever and
    # amount_refunded stayed 0.  A gate holds the refund's transaction open at that instant.
    pid, sess, events = pay_and_complete(7010, amount=3000)
    pi = next(e for e in events if e["type"] == "payment_intent.succeeded")["data"]["object"]["id"]
    emulator("POST", "/_emulator/refunds", {"payment_intent": pi, "amount": 1000})
    events = emulator_events()
    created = next(e for e in events if e["type"] == "refund.created")
    stripe_refunded = next(e for e in events if e["type"] == "charge.refunded")["data"]["object"]["amount_refunded"]
    payment_events = [e for e in events if e["type"] in
                      ("checkout.session.completed", "payment_intent.succeeded", "charge.succeeded")]
    gate = 70107010                     # an advisory lock the test holds; the refund's wait takes it
    holder = subprocess.Popen(["psql", "-X", "-q", "-d", DB], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    holder.stdin.write(f"SELECT pg_advisory_lock({gate});\n")
    holder.stdin.flush()

    def at_gate(granted):
        return one(f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0"
                   f"   AND objid = {gate} AND objsubid = 1 AND {'' if granted else 'NOT'} granted")
    results, errors = {}, []

    def worker(name, evs):
        try:
            results[name] = [deliver(e)[2] for e in evs]
        except Exception as err:  # reported below
            errors.append(f"{name}: {err}")

    refund = threading.Thread(target=worker, args=("refund", [created]))
    payment = threading.Thread(target=worker, args=("payment", payment_events))
    try:
        for _ in range(100):
            if at_gate(True) == "1":
                break
            time.sleep(0.05)
        check_eq(at_gate(True), "1", "the gate closed")
        q(f"CREATE FUNCTION public.sp_gate() RETURNS trigger LANGUAGE plpgsql AS"
          f"  $$ BEGIN PERFORM pg_advisory_xact_lock({gate}); RETURN NEW; END $$;"
          f"CREATE TRIGGER sp_gate AFTER INSERT ON stripepay.waiting_event FOR EACH ROW"
          f"  WHEN (NEW.event_id = '{created['id']}') EXECUTE FUNCTION public.sp_gate()")
        refund.start()
        for _ in range(200):            # the refund has decided to wait, and is held there
            if at_gate(False) == "1":
                break
            time.sleep(0.05)
        check_eq(at_gate(False), "1", "the refund's ingest held at the gate")
        payment.start()
        for _ in range(200):            # committed, or held by the refund's locks
            if not payment.is_alive() or one(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE l.locktype = 'advisory' AND NOT l.granted"
                    "   AND a.query LIKE '%stripe_ingest_webhook%'") == "2":
                break
            time.sleep(0.05)
        held = payment.is_alive()
    finally:
        holder.stdin.close()            # the gate opens: the refund commits
        holder.wait(30)
        for th in (refund, payment):
            if th.ident is not None:
                th.join(60)
        q("DROP TRIGGER IF EXISTS sp_gate ON stripepay.waiting_event; DROP FUNCTION IF EXISTS public.sp_gate()")
    check_eq(errors, [], "errors")
    check_eq(results, {"refund": [False], "payment": [False] * len(payment_events)}, "already_processed")
    check_eq(q(f"SELECT status, amount_refunded, (SELECT count(*) FROM stripepay.refund WHERE payment_id = {pid}),"
               f"       (SELECT count(*) FROM stripepay.waiting_event WHERE event_id = '{created['id']}')"
               f"  FROM stripepay.payment_record WHERE id = {pid}"),
             [["SUCCESSFUL", str(stripe_refunded), "1", "0"]], "status, amount_refunded, refunds, waiting rows")
    return "the payment's ingest " + ("waited for the refund's commit" if held else "committed first")


def test_a_change_and_its_undoing_in_one_second_end_in_the_later_state():
    # Cancel at period end, then resume, stamped with one second: each changed from the other's
    # state, so the same-second rule for a renewal took the resume for the older and dropped it;
    # the row said canceling while Stripe would renew (and charge).
    sub = "sub_" + uid("undo")
    t = 1_800_000_000

    def change(created, cape, previous):
        e = sub_event(sub, 0, "active", created, cancel_at_period_end=cape)
        e["data"]["previous_attributes"] = previous
        return e

    deliver(change(t, False, {"status": "incomplete"}))
    deliver(change(t + 50, True, {"cancel_at_period_end": False}))
    check_eq(one(f"SELECT cancel_at_period_end FROM stripepay.recurring_payment WHERE subscription_id = '{sub}'"),
             "t", "after the cancel")
    deliver(change(t + 50, False, {"cancel_at_period_end": True}))
    check_eq(q(f"SELECT status, cancel_at_period_end FROM stripepay.recurring_payment WHERE subscription_id = '{sub}'"),
             [["ACTIVE", "f"]], "after the resume in the same second")


def test_an_invoice_payment_of_a_first_invoice_waits_until_its_invoice_paid():
    # invoice_payment.paid of an invoice that is no renewal (a subscription's first) waits for a
    # renewal payment that never comes: it stayed in waiting_event for ever.  Its invoice.paid
    # clears it, and a row older than Stripe keeps events (30 days) goes with the next wait.
    sub = "sub_" + uid("first")
    deliver(sub_event(sub, 0, "active", 1_800_000_000, "created"))

    def invoice_payment(invoice):
        return fixture("invoice_payment.paid", id="evt_" + uid("inpay"),
                       **{"data.object.id": "inpay_" + uid("inpay"), "data.object.invoice": invoice})

    def waiting(e):
        return q(f"SELECT stripe_id, waiting_since > now() - interval '1 minute' FROM stripepay.waiting_event"
                 f" WHERE event_id = '{e['id']}'")

    first = "in_" + uid("first")
    e = invoice_payment(first)
    deliver(e)
    check_eq(waiting(e), [[first, "t"]], "waits for its invoice")
    paid = fixture("invoice.paid", id="evt_" + uid("inv"), **{"data.object.id": first,
                                                             "data.object.billing_reason": "subscription_create"})
    paid["data"]["object"]["parent"]["subscription_details"]["subscription"] = sub
    deliver(paid)
    check_eq(waiting(e), [], "waiting after the invoice's invoice.paid")
    check_eq(one(f"SELECT count(*) FROM stripepay.payment_record WHERE invoice_id = '{first}'"), "0", "payments")
    # an invoice whose invoice.paid never comes: gone after 30 days, by the next event that waits
    old, young, late = (invoice_payment("in_" + uid("first")) for _ in range(3))
    deliver(old)
    deliver(young)
    q(f"UPDATE stripepay.waiting_event SET waiting_since = now() - interval '31 days' WHERE event_id = '{old['id']}';"
      f"UPDATE stripepay.waiting_event SET waiting_since = now() - interval '29 days' WHERE event_id = '{young['id']}'")
    deliver(late)
    check_eq(q(f"SELECT event_id FROM stripepay.waiting_event WHERE event_id IN ('{old['id']}', '{young['id']}',"
               f" '{late['id']}') ORDER BY waiting_since"), [[young["id"]], [late["id"]]], "waiting events")

def test_events_we_do_not_act_on_are_recorded_and_linked():
    pid, sess, events = pay_and_complete(7008)
    for e in events:
        deliver(e)
    pi = one(f"SELECT payment_intent_id FROM stripepay.payment_record WHERE id = {pid}")
    e = fixture("payment_intent.succeeded", id="evt_" + uid("other"), type="charge.failed")
    e["data"]["object"] = {"id": "ch_" + uid("x"), "object": "charge", "payment_intent": pi, "status": "failed",
                           "amount": 1500, "currency": "usd", "metadata": {}}
    check_eq(deliver(e)[2], False, "already_processed")
    check_eq(q(f"SELECT type, payment_id, payload->'data'->'object'->>'status' FROM stripepay.webhook_event "
               f"WHERE id = '{e['id']}'"), [["charge.failed", pid, "failed"]], "recorded event")
    plan = fixture("plan.created")
    plan["id"] = "evt_" + uid("plan")
    plan["livemode"] = False
    check_eq(deliver(plan)[2], False, "an event of a kind stripepay has no table for")


def test_an_unknown_payment_is_adopted_from_its_metadata():
    e = fixture("payment_intent.succeeded", id="evt_" + uid("adopt"))
    o = e["data"]["object"]
    o["id"] = "pi_" + uid("adopt")
    o["metadata"] = {"order_id": "7999", "stripepay_payment_id": "987654321"}
    q("INSERT INTO orders (id) VALUES (7999)")
    deliver(e)
    check_eq(q(f"SELECT order_id, status, amount, currency, created_by FROM stripepay.payment_record "
               f"WHERE payment_intent_id = '{o['id']}'"),
             [["7999", "SUCCESSFUL", str(o["amount"]), o["currency"], "stripe"]], "adopted payment")
    check_eq(one("SELECT status FROM orders WHERE id = 7999"), "successful", "the flow fired for it")
    # without an order in the metadata it is still kept, with its payload
    e2 = fixture("payment_intent.succeeded", id="evt_" + uid("adopt"))
    e2["data"]["object"]["id"] = "pi_" + uid("adopt")
    e2["data"]["object"]["metadata"] = {}
    deliver(e2)
    check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE id = '{e2['id']}'"), "1", "kept")


def test_concurrent_events_of_an_unknown_payment_adopt_it_once():
    # Stripe sends a payment's events at once, from several connections.  For
    # a payment we have no row for (its stripe_pay() rolled back, or it was
    # made in the dashboard) there was no row to lock, so every session
    # inserted one and all but the first failed on a unique violation.
    errors, trials = [], 5
    for trial in range(trials):
        oid = 7300 + trial
        q(f"INSERT INTO orders (id) VALUES ({oid})")
        pi, cs, ch = "pi_" + uid("race"), "cs_test_" + uid("race"), "ch_" + uid("race")
        md = {"order_id": str(oid), "stripepay_payment_id": "987654322"}
        t = int(time.time())
        succeeded = fixture("payment_intent.succeeded", id="evt_" + uid("race"), created=t)
        succeeded["data"]["object"].update(id=pi, metadata=md, latest_charge=ch, amount=1500,
                                           amount_received=1500, currency="usd")
        processing = copy.deepcopy(succeeded)
        processing.update(id="evt_" + uid("race"), type="payment_intent.processing", created=t - 1)
        processing["data"]["object"]["status"] = "processing"
        completed = fixture("checkout.session.completed", id="evt_" + uid("race"), created=t)
        completed["data"]["object"].update(id=cs, payment_intent=pi, metadata=md, amount_total=1500,
                                           currency="usd")
        bodies = [event_bytes(e) for e in (succeeded, processing, completed)]
        # connected first, then all three at the same instant
        at = one("SELECT (clock_timestamp() + interval '0.8 s')::text")

        def worker(body):
            try:
                q(f"SELECT pg_sleep_until('{at}'::timestamptz);"
                  f"SELECT stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body)}')")
            except Exception as err:  # reported below
                errors.append(f"trial {trial}: {err}")

        threads = [threading.Thread(target=worker, args=(b,)) for b in bodies]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        check_eq(errors, [], "errors of concurrent deliveries")
        check_eq(q(f"SELECT status, checkout_session_id, payment_intent_id, created_by FROM stripepay.payment_record"
                   f" WHERE order_id = {oid}"), [["SUCCESSFUL", cs, pi, "stripe"]], f"trial {trial}: payments")
        check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE payment_id = "
                     f"(SELECT id FROM stripepay.payment_record WHERE order_id = {oid})"), "3",
                 f"trial {trial}: events linked to the payment")
    return f"{trials} trials"


def test_only_the_webhook_role_and_admins_may_ingest():
    q("DROP ROLE IF EXISTS regress_sp_relay; CREATE ROLE regress_sp_relay LOGIN IN ROLE stripepay_webhook;"
      "DROP ROLE IF EXISTS regress_sp_app; CREATE ROLE regress_sp_app LOGIN IN ROLE stripepay_user")
    try:
        e = fixture("payment_intent.succeeded", id="evt_" + uid("role"))
        body = event_bytes(e)
        sql = f"SELECT already_processed FROM stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body)}')"
        expect_error("SET ROLE regress_sp_app;" + sql, "42501", db=DB)
        check_eq(psql("SET ROLE regress_sp_relay;" + sql, db=DB), [["f"]], "relay role ingests")
        expect_error("SET ROLE regress_sp_relay; SELECT count(*) FROM stripepay.payment_record", "42501", db=DB)
        expect_error("SET ROLE regress_sp_relay; SELECT stripepay.stripe_pay(1, 'usd', 1000)", "42501", db=DB)
        expect_error("SET ROLE regress_sp_app; SELECT * FROM stripepay.webhook_secrets", "42501", db=DB)
    finally:
        q("DROP ROLE regress_sp_relay; DROP ROLE regress_sp_app")


def notifier_pids():
    return q(f"SELECT pid FROM pg_stat_activity WHERE backend_type = 'stripepay notifier'"
             f"   AND datname = current_database()")


def stop_notifier():
    for row in notifier_pids():
        q(f"SELECT pg_terminate_backend({row[0]})")
    for _ in range(100):
        if not notifier_pids():
            break
        time.sleep(0.05)


def test_notifier_sends_each_notification_once_after_commit():
    paid = [pay_and_complete(7100 + i) for i in range(10)]
    waiter = listen("stripepay_payment", 5)
    bodies = [event_bytes(next(x for x in events if x["type"] == "payment_intent.succeeded"))
              for _, _, events in paid]
    errors = []

    def worker(chunk):
        try:
            for body in chunk:
                ingest(body, sign(body), db=DB)
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(bodies[i::5],)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check_eq(errors, [], "errors")
    check_eq(len(notifier_pids()), 1, "one notifier for the database")
    notes = waiter()
    for pid, _, _ in paid:
        check_eq(len([n for n in notes if n.get("payment_id") == int(pid)]), 1,
                 f"notifications for payment {pid}")
    check_eq(one("SELECT count(*) FROM stripepay.notify_outbox"), "0", "outbox drained")


def test_a_notifier_that_left_is_replaced_and_direct_notify_still_works():
    stop_notifier()
    check_eq(notifier_pids(), [], "notifier gone")
    pid, _, events = pay_and_complete(7120)
    body = event_bytes(next(x for x in events if x["type"] == "payment_intent.succeeded"))
    waiter = listen("stripepay_payment", 3)
    ingest(body, sign(body), db=DB)
    check_eq(len([n for n in waiter() if n.get("payment_id") == int(pid)]), 1, "notification via a new notifier")
    check_eq(len(notifier_pids()), 1, "a new notifier")

    pid, _, events = pay_and_complete(7121)
    body = event_bytes(next(x for x in events if x["type"] == "payment_intent.succeeded"))
    waiter = listen("stripepay_payment", 2)
    q(f"SET stripepay.notify_worker = off;"
      f"SELECT stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body)}')")
    check_eq(len([n for n in waiter() if n.get("payment_id") == int(pid)]), 1,
             "notification sent directly with stripepay.notify_worker = off")
    check_eq(one("SELECT count(*) FROM stripepay.notify_outbox"), "0", "nothing queued")


def test_sessions_starting_the_notifier_at_once_all_queue_through_it():
    # no notifier, and every session finds none at the same instant: one
    # starts it, the others wait for that and use it, none NOTIFYs by itself
    stop_notifier()
    paid = [pay_and_complete(7140 + i) for i in range(12)]
    bodies = [event_bytes(next(x for x in events if x["type"] == "payment_intent.succeeded"))
              for _, _, events in paid]
    queued = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM stripepay.notify_outbox_id_seq"
    before = int(one(queued))
    waiter = listen("stripepay_payment", 6)
    # connected first, then all at the same instant
    at = one("SELECT (clock_timestamp() + interval '1.5 s')::text")
    errors = []

    def worker(body):
        try:
            q(f"SELECT pg_sleep_until('{at}'::timestamptz);"
              f"SELECT stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body)}')")
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check_eq(errors, [], "errors")
    check_eq(int(one(queued)) - before, len(bodies), "notifications queued for the notifier")
    notes = waiter()
    for pid, _, _ in paid:
        check_eq(len([n for n in notes if n.get("payment_id") == int(pid)]), 1,
                 f"notifications for payment {pid}")
    check_eq(len(notifier_pids()), 1, "one notifier for the database")


def test_a_session_starts_one_notifier_only():
    # the postmaster logs each worker a session registers at DEBUG1; a
    # notifier counts once it holds its lock, so neither the starting
    # session's commit nor the sessions behind it may register a second one
    # (the postmaster's own restart, 10 s after stop_notifier() terminated
    # one, registers nothing: it starts the same worker again, which leaves)
    log = os.environ["SP_SERVER_LOG"]

    def started():
        with open(log, errors="replace") as f:
            return f.read().count('registering background worker "stripepay notifier')

    psql("ALTER SYSTEM SET log_min_messages = 'debug1'; SELECT pg_reload_conf()", db=DB)
    try:
        time.sleep(0.3)
        for _ in range(3):
            stop_notifier()
            before = started()
            q("BEGIN; SELECT stripepay._notify('sp_test', '{}'); COMMIT;")
            threads = [threading.Thread(target=q, args=("SELECT stripepay._notify('sp_test', '{}')",))
                       for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            time.sleep(0.5)
            check_eq(started() - before, 1, "notifier workers started")
    finally:
        psql("ALTER SYSTEM RESET log_min_messages; SELECT pg_reload_conf()", db=DB)


def test_a_sessions_advisory_lock_cannot_stand_in_for_the_notifier():
    # the notifier's keys, as SQL can take them: they must not block it
    holder = subprocess.Popen(["psql", "-X", "-q", "-d", DB, "-c",
                               "SELECT pg_advisory_lock(x'73747269'::int, x'70657061'::int),"
                               " pg_advisory_lock((x'73747269'::bigint << 32) | x'70657061'::bigint),"
                               " pg_sleep(8)"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # until the session holds both
            if one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                   "   AND objsubid IN (1, 2)") == "2":
                break
            time.sleep(0.05)
        for row in notifier_pids():
            q(f"SELECT pg_terminate_backend({row[0]})")
        pid, _, events = pay_and_complete(7130)
        body = event_bytes(next(x for x in events if x["type"] == "payment_intent.succeeded"))
        waiter = listen("stripepay_payment", 3)
        ingest(body, sign(body), db=DB)
        check_eq(len([n for n in waiter() if n.get("payment_id") == int(pid)]), 1,
                 "notification while a session holds the same keys")
    finally:
        holder.kill()
        holder.wait()


def test_a_transaction_with_queued_notifications_cannot_be_prepared():
    pid, _, events = pay_and_complete(7131)
    body = event_bytes(next(x for x in events if x["type"] == "payment_intent.succeeded"))
    err = expect_error(f"BEGIN; SELECT stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body)}');"
                       " PREPARE TRANSACTION 'sp_prepared';", "0A000", db=DB)
    check("queued stripepay notifications" in err.message, err.message)
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "PENDING", "nothing applied")

if __name__ == "__main__":
    setup()
    run("webhooks", [
        test_every_bad_signature_is_refused_and_stores_nothing,
        test_text_payload_is_accepted_byte_for_byte,
        test_payload_must_be_a_stripe_event,
        test_livemode_must_match_the_key,
        test_endpoint_secrets_and_rotation,
        test_paid_checkout_turns_successful_fires_the_flow_and_notifies_once,
        test_duplicates_report_already_processed_and_change_nothing,
        test_concurrent_deliveries_process_once,
        test_failing_user_trigger_rolls_the_event_back,
        test_rolled_back_ingest_sends_no_notification,
        test_notifier_sends_each_notification_once_after_commit,
        test_a_notifier_that_left_is_replaced_and_direct_notify_still_works,
        test_sessions_starting_the_notifier_at_once_all_queue_through_it,
        test_a_session_starts_one_notifier_only,
        test_a_sessions_advisory_lock_cannot_stand_in_for_the_notifier,
        test_a_transaction_with_queued_notifications_cannot_be_prepared,
        test_failed_then_paid_in_any_order_ends_successful,
        test_subscription_events_in_any_order_end_in_the_newest_state,
        test_subscription_period_in_both_api_shapes,
        test_renewal_makes_one_payment_and_the_deduction_flow_links_a_new_order,
        test_refund_lifecycle_in_any_order_counts_only_what_stands,
        test_a_refund_before_its_payments_events_waits_and_counts_once,
        test_a_refund_waiting_while_its_payment_commits_is_applied,
        test_a_change_and_its_undoing_in_one_second_end_in_the_later_state,
        test_an_invoice_payment_of_a_first_invoice_waits_until_its_invoice_paid,
        test_events_we_do_not_act_on_are_recorded_and_linked,
        test_an_unknown_payment_is_adopted_from_its_metadata,
        test_concurrent_events_of_an_unknown_payment_adopt_it_once,
        test_only_the_webhook_role_and_admins_may_ingest,
    ])
