"""Refunds and subscriptions against the emulator: limits, concurrency,
rollback-then-retry, webhooks confirming, the subscription lifecycle,
renewals and who may do what; one open way to pay per order, and the
isolation level the Stripe calls need."""
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from harness import (EMULATOR, SqlError, check, check_eq, emulator, emulator_events, emulator_requests,
                     fresh_database,
                     emulator_reset, event_bytes, expect_error, fault, ingest, psql, run,
                     scalar, sign, sql_error, WEBHOOK_SECRET)

DB = "sp_money"
KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


def q(sql):
    return psql(sql, db=DB)


def one(sql):
    return scalar(sql, db=DB)


def deliver_all(since=0):
    """Delivers every emulator event from index `since` on; returns the count."""
    events = emulator_events()
    for e in events[since:]:
        body = event_bytes(e)
        ingest(body, sign(body), db=DB)
    return len(events)


def setup():
    fresh_database(DB, KEY, WEBHOOK_SECRET, cancel_url="https://shop.example/cancel")
    q("DROP ROLE IF EXISTS regress_sp_shop; CREATE ROLE regress_sp_shop LOGIN IN ROLE stripepay_user;"
      "DROP ROLE IF EXISTS regress_sp_other; CREATE ROLE regress_sp_other LOGIN IN ROLE stripepay_user;"
      "DROP ROLE IF EXISTS regress_sp_boss; CREATE ROLE regress_sp_boss LOGIN IN ROLE stripepay_admin")


_order = [3000]


def paid_payment(amount=1000, currency="usd"):
    """A SUCCESSFUL payment, made through Checkout and confirmed by webhooks."""
    emulator_reset()
    _order[0] += 1
    pid, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({_order[0]}, '{currency}', {amount})")[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
    deliver_all()
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL", "payment")
    return pid


def stripe_refunds(pid):
    pi = one(f"SELECT payment_intent_id FROM stripepay.payment_record WHERE id = {pid}")
    return [r for r in emulator_requests("/v1/refunds") if r["method"] == "POST" and r["status"] == 200
            and not r.get("replayed") and r["params"].get("payment_intent") == pi]


def refunds_at_stripe(pid):
    """The Refund objects the emulator holds for the payment's PaymentIntent."""
    pi = one(f"SELECT payment_intent_id FROM stripepay.payment_record WHERE id = {pid}")
    check(pi, f"payment {pid} has no PaymentIntent")
    return [r for r in emulator("GET", "/_emulator/objects").get("refund", []) if r.get("payment_intent") == pi]


# --- refunds ---------------------------------------------------------------------

def test_refund_request_and_webhook_confirmation():
    pid = paid_payment(3000)
    before = len(emulator_events())
    row = q(f"SELECT status, amount, stripe_refund_id LIKE 're_%', created_by FROM stripepay.stripe_refund({pid}, 1200)")
    check_eq(row, [["PENDING", "1200", "t", "postgres"]], "refund row")
    check_eq(one(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {pid}"), "1200", "counted while pending")
    r = [x for x in emulator_requests("/v1/refunds") if x["method"] == "POST"][0]
    order_id = one(f"SELECT order_id FROM stripepay.payment_record WHERE id = {pid}")
    rid = one(f"SELECT id FROM stripepay.refund WHERE payment_id = {pid}")
    check_eq(r["params"]["amount"], "1200", "amount")
    check_eq(r["params"]["metadata"], {"order_id": order_id, "stripepay_payment_id": str(pid),
                                       "stripepay_refund_id": rid, "stripepay_refund_key": f"{pid}-0-1200"},
             "metadata")
    check(re.fullmatch(rf"stripepay-\d+-\d+-\d+-refund-{pid}-0-1200", r["headers"]["idempotency-key"]),
          r["headers"]["idempotency-key"])
    deliver_all(before)
    check_eq(q(f"SELECT status FROM stripepay.refund WHERE id = {rid}"), [["SUCCEEDED"]], "after the webhook")
    check_eq(q(f"SELECT refund_status, already_processed FROM stripepay.refund_flow WHERE refund_id = {rid} ORDER BY id"),
             [["SUCCEEDED", "f"]], "refund flow")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL", "payment stays")


def test_refunds_never_exceed_what_is_left():
    pid = paid_payment(1000)
    q(f"SELECT 1 FROM stripepay.stripe_refund({pid}, 700)")
    count = one("SELECT count(*) FROM stripepay.refund")
    e = expect_error(f"SELECT stripepay.stripe_refund({pid}, 301)", "SP014", db=DB)
    check("300" in e.stderr or "3.00" in e.stderr, e.stderr)
    for sql, state in [(f"SELECT stripepay.stripe_refund({pid}, 0)", "22023"),
                       (f"SELECT stripepay.stripe_refund({pid}, -5)", "22023"),
                       (f"SELECT stripepay.stripe_refund({pid}, 10.5)", "22023"),
                       (f"SELECT stripepay.stripe_refund({pid}, NULL)", "22004"),
                       ("SELECT stripepay.stripe_refund(NULL, 1)", "22004"),
                       ("SELECT stripepay.stripe_refund(987654321, 100)", "SP012")]:
        expect_error(sql, state, db=DB)
    _order[0] += 1
    pending = one(f"SELECT id FROM stripepay.stripe_pay({_order[0]}, 'usd', 1000)")
    expect_error(f"SELECT stripepay.stripe_refund({pending}, 100)", "SP013", db=DB)
    check_eq(one("SELECT count(*) FROM stripepay.refund"), count, "refunds stored by refused calls")
    check_eq(q(f"SELECT amount FROM stripepay.stripe_refund({pid}, 300)"), [["300"]], "the rest")
    check_eq(one(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {pid}"), "1000", "refunded")


def test_concurrent_refunds_cannot_both_pass():
    pid = paid_payment(1000)
    fault("slow", 1, path_prefix="/v1/refunds", seconds=1)
    results = []

    def refund():
        try:
            q(f"SELECT 1 FROM stripepay.stripe_refund({pid}, 600)")
            results.append("ok")
        except SqlError as e:
            results.append(e.sqlstate)

    threads = [threading.Thread(target=refund) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join(60)
    check_eq(sorted(results), ["SP014", "ok"], "two concurrent refunds of 600 on 1000")
    check_eq(len(stripe_refunds(pid)), 1, "refunds made at Stripe")
    check_eq(one(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {pid}"), "600", "refunded")


def test_refund_retried_after_rollback_does_not_refund_twice():
    pid = paid_payment(2000)
    first = q(f"BEGIN; SELECT stripe_refund_id FROM stripepay.stripe_refund({pid}, 500); ROLLBACK;")
    check_eq(one(f"SELECT count(*) FROM stripepay.refund WHERE payment_id = {pid}"), "0", "rolled back")
    check_eq(len(stripe_refunds(pid)), 1, "Stripe made the refund")
    again = q(f"SELECT stripe_refund_id, amount FROM stripepay.stripe_refund({pid}, 500)")
    check_eq(again, [[first[0][0], "500"]], "the retry records the refund Stripe already made")
    check_eq(len(stripe_refunds(pid)), 1, "refunds made at Stripe after the retry")
    pi = one(f"SELECT payment_intent_id FROM stripepay.payment_record WHERE id = {pid}")
    listed = emulator("GET", "/_emulator/objects")
    at_stripe = [r for r in listed.get("refund", {}).values()] if isinstance(listed.get("refund"), dict) \
        else listed.get("refund", [])
    mine = [r for r in at_stripe if r.get("payment_intent") == pi]
    check_eq(len(mine), 1, "refund objects at Stripe")
    # a new refund after that one is a new operation, with a new key
    check_eq(q(f"SELECT amount FROM stripepay.stripe_refund({pid}, 500)"), [["500"]], "a second refund")
    check_eq(len(stripe_refunds(pid)), 2, "refunds at Stripe")


def test_refund_retried_after_its_webhooks_claims_the_refund_they_recorded():
    # Stripe sends the refund's webhooks within seconds, so they usually land
    # before the admin retries a stripe_refund() that rolled back.  They are
    # kept as a refund nobody has claimed yet; the retry's idempotency key
    # used to count that refund as already refunded, so it was a new key and
    # Stripe refunded the customer a second time.
    pid = paid_payment(3000)
    start = len(emulator_events())
    first = q(f"BEGIN; SELECT stripe_refund_id FROM stripepay.stripe_refund({pid}, 1000); ROLLBACK;")[0][0]
    deliver_all(start)
    check_eq(q(f"SELECT stripe_refund_id, amount, unclaimed_key IS NOT NULL, created_by FROM stripepay.refund"
               f" WHERE payment_id = {pid}"), [[first, "1000", "t", "stripe"]], "the refund its webhooks recorded")
    retry = q(f"SET ROLE regress_sp_boss; SELECT id, stripe_refund_id, amount FROM stripepay.stripe_refund({pid}, 1000)")
    check_eq([r[1:] for r in retry], [[first, "1000"]], "the retry returns the refund Stripe made")
    check_eq(q(f"SELECT id, unclaimed_key, created_by FROM stripepay.refund WHERE payment_id = {pid}"),
             [[retry[0][0], "", "regress_sp_boss"]], "the claimed refund")
    check_eq(len(stripe_refunds(pid)), 1, "refunds made at Stripe")
    check_eq(len(refunds_at_stripe(pid)), 1, "refund objects at Stripe")
    check_eq(one(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {pid}"), "1000", "refunded")
    # another amount after that is another operation
    start = len(emulator_events())
    second = q(f"SELECT stripe_refund_id, amount FROM stripepay.stripe_refund({pid}, 500)")
    check(second[0][0] != first and second[0][1] == "500", f"second refund {second}")
    deliver_all(start)
    check_eq(len(refunds_at_stripe(pid)), 2, "refund objects at Stripe after a different amount")
    check_eq(q(f"SELECT amount_refunded, (SELECT count(*) FROM stripepay.refund WHERE payment_id = {pid})"
               f"  FROM stripepay.payment_record WHERE id = {pid}"), [["1500", "2"]], "refunded, refunds")


def test_only_admins_refund():
    pid = paid_payment(1000)
    expect_error(f"SET ROLE regress_sp_shop; SELECT stripepay.stripe_refund({pid}, 100)", "42501", db=DB)
    check_eq(q(f"SET ROLE regress_sp_boss; SELECT amount, created_by FROM stripepay.stripe_refund({pid}, 100)"),
             [["100", "regress_sp_boss"]], "an admin refunds")


def test_hostile_strings_are_refused_cleanly():
    for value in ["usd'; DROP TABLE stripepay.refund; --", "us]d", "x" * 10000, "ùsd"]:
        esc = value.replace("'", "''")
        expect_error(f"SELECT stripepay.stripe_pay(1, '{esc}', 1000)", "22023", db=DB)
    expect_error(f"SELECT stripepay.stripe_subscribe(1, 'price_x&y=z')", "22023", db=DB)
    expect_error(f"SELECT stripepay.stripe_subscribe(1, 'price_' || repeat('a', 10000))", "22023", db=DB)
    expect_error("SELECT stripepay.configure(brand_name => repeat('&=]', 4000))", "22001", db=DB)
    check_eq(one("SELECT count(*) FROM stripepay.refund") is not None, True, "refund table intact")


# --- subscriptions -----------------------------------------------------------------

def price(amount=2000):
    return emulator("POST", "/_emulator/prices", {"currency": "usd", "unit_amount": amount,
                                                 "recurring": {"interval": "month"},
                                                 "product_name": "Cheese club"})["id"]


def subscribed(order_id, role=None):
    emulator_reset()
    p = price()
    prefix = f"SET ROLE {role};" if role else ""
    rp, sess, status = q(f"{prefix} SELECT id, checkout_session_id, status FROM stripepay.stripe_subscribe({order_id}, '{p}')")[0]
    check_eq(status, "INCOMPLETE", "new subscription")
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
    deliver_all()
    sub = one(f"SELECT subscription_id FROM stripepay.recurring_payment WHERE id = {rp}")
    check(sub and sub.startswith("sub_"), f"subscription id {sub}")
    return rp, sub, p


def test_subscribe_request_and_activation():
    emulator_reset()
    p = price()
    rp, url = q(f"SELECT id, checkout_url FROM stripepay.stripe_subscribe(4001, '{p}')")[0]
    check(url.startswith("http"), url)
    again = one(f"SELECT id FROM stripepay.stripe_subscribe(4001, '{p}')")
    check_eq(again, rp, "a second call while the session is open")
    r = [x for x in emulator_requests("/v1/checkout/sessions") if x["method"] == "POST"][0]
    params = r["params"]
    check_eq((params["mode"], params["line_items"][0]["price"], params["line_items"][0]["quantity"]),
             ("subscription", p, "1"), "line item")
    md = {"order_id": "4001", "stripepay_recurring_payment_id": rp}
    check_eq(params["metadata"], md, "session metadata")
    check_eq(params["subscription_data"]["metadata"], md, "subscription metadata")
    check_eq(params["client_reference_id"], "4001", "client_reference_id")
    sess = one(f"SELECT checkout_session_id FROM stripepay.recurring_payment WHERE id = {rp}")
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
    deliver_all()
    row = q(f"SELECT status, customer_id LIKE 'cus_%', current_period_end > now(), price_id "
            f"FROM stripepay.recurring_payment WHERE id = {rp}")
    check_eq(row, [["ACTIVE", "t", "t", p]], "active subscription")
    flows = q(f"SELECT status, already_processed FROM stripepay.subscription_flow WHERE recurring_payment_id = {rp} "
              f"AND NOT already_processed ORDER BY id")
    check_eq(flows[-1], ["ACTIVE", "f"], "subscription flow")
    check_eq(one(f"SELECT count(*) FROM stripepay.payment_record WHERE recurring_payment_id = {rp}"), "0",
             "the first invoice is not a renewal")
    expect_error(f"SELECT stripepay.stripe_subscribe(4001, '{p}')", "SP015", db=DB)


def test_subscribe_refuses_bad_prices_and_stores_nothing():
    emulator_reset()
    count = one("SELECT count(*) FROM stripepay.recurring_payment")
    expect_error("SELECT stripepay.stripe_subscribe(4002, 'plan_123')", "22023", db=DB)
    expect_error("SELECT stripepay.stripe_subscribe(4002, NULL)", "22004", db=DB)
    e = expect_error("SELECT stripepay.stripe_subscribe(4002, 'price_doesnotexist')", "SP002", db=DB)
    check("No such price" in e.stderr, e.stderr)
    once = emulator("POST", "/_emulator/prices", {"currency": "usd", "unit_amount": 500, "product_name": "once"})["id"]
    expect_error(f"SELECT stripepay.stripe_subscribe(4002, '{once}')", "SP002", db=DB)
    check_eq(one("SELECT count(*) FROM stripepay.recurring_payment"), count, "subscriptions stored")


def test_renewals_become_payments_once():
    rp, sub, p = subscribed(4003)
    start = len(emulator_events())
    emulator("POST", f"/_emulator/subscriptions/{sub}/renew", {})
    events = emulator_events()[start:]
    for _ in range(2):
        for e in events:
            body = event_bytes(e)
            ingest(body, sign(body), db=DB)
    rows = q(f"SELECT kind, status, amount, invoice_id LIKE 'in_%' FROM stripepay.payment_record WHERE recurring_payment_id = {rp}")
    check_eq(rows, [["RENEWAL", "SUCCESSFUL", "2000", "t"]], "renewal payments")
    check_eq(one(f"SELECT count(*) FROM stripepay.deduction_flow WHERE recurring_payment_id = {rp}"), "1", "deductions")
    # a failed renewal: recorded, the subscription goes past due
    start = len(emulator_events())
    emulator("POST", f"/_emulator/subscriptions/{sub}/fail_renewal", {})
    deliver_all(start)
    check_eq(one(f"SELECT status FROM stripepay.recurring_payment WHERE id = {rp}"), "PAST_DUE", "after a failed renewal")
    check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE type = 'invoice.payment_failed' "
                 f"AND recurring_payment_id = {rp}"), "1", "the failure is recorded and linked")
    # the renewal payment refunds like any other
    # (invoice.paid names no PaymentIntent in the pinned API version; invoice_payment.paid does)
    renewal = one(f"SELECT id FROM stripepay.payment_record WHERE recurring_payment_id = {rp}")
    check_eq(q(f"SELECT amount FROM stripepay.stripe_refund({renewal}, 2000)"), [["2000"]], "renewal refund")


def test_renewal_learns_its_payment_intent_from_invoice_payment_in_either_order():
    # In the pinned API version invoice.paid names no PaymentIntent: only
    # invoice_payment.paid does.  Without it the renewal payment never knew
    # its PaymentIntent, so a dashboard refund of it matched no payment and
    # stripe_refund() had nothing to refund.
    for n, last in enumerate((False, True)):
        rp, sub, p = subscribed(4010 + n)
        start = len(emulator_events())
        emulator("POST", f"/_emulator/subscriptions/{sub}/renew", {})
        events = emulator_events()[start:]
        inv = next(e for e in events if e["type"] == "invoice.paid")["data"]["object"]
        check_eq(inv.get("payment_intent"), None, "invoice.paid's payment_intent")
        inpay = next(e for e in events if e["type"] == "invoice_payment.paid")
        check_eq(inpay["data"]["object"]["invoice"], inv["id"], "the invoice_payment's invoice")
        pi = inpay["data"]["object"]["payment"]["payment_intent"]
        types = [e["type"] for e in events]
        check(types.index("invoice_payment.paid") < types.index("invoice.paid"), f"emitted order {types}")
        if last:                        # the other order: after invoice.paid and everything else
            events = [e for e in events if e is not inpay] + [inpay]
        for e in events:
            body = event_bytes(e)
            ingest(body, sign(body), db=DB)
        what = "invoice_payment.paid " + ("last" if last else "before invoice.paid")
        check_eq(q(f"SELECT kind, status, invoice_id, payment_intent_id FROM stripepay.payment_record"
                   f" WHERE recurring_payment_id = {rp}"), [["RENEWAL", "SUCCESSFUL", inv["id"], pi]],
                 f"renewal payment, {what}")
        check_eq(one(f"SELECT count(*) FROM stripepay.waiting_event WHERE event_id = '{inpay['id']}'"), "0",
                 f"still waiting, {what}")
        renewal = one(f"SELECT id FROM stripepay.payment_record WHERE recurring_payment_id = {rp}")
        start = len(emulator_events())
        emulator("POST", "/_emulator/refunds", {"payment_intent": pi, "amount": 700})
        refund_events = emulator_events()[start:]
        deliver_all(start)
        at_stripe = next(e for e in refund_events if e["type"] == "charge.refunded")["data"]["object"]["amount_refunded"]
        check_eq(q(f"SELECT amount_refunded, (SELECT count(*) FROM stripepay.refund WHERE payment_id = {renewal})"
                   f"  FROM stripepay.payment_record WHERE id = {renewal}"), [[str(at_stripe), "1"]],
                 f"dashboard refund of the renewal counted, {what}")
        check_eq(q(f"SELECT amount FROM stripepay.stripe_refund({renewal}, 100)"), [["100"]], f"stripe_refund, {what}")
        check_eq(len(stripe_refunds(renewal)), 1, "refunds requested for the renewal's PaymentIntent")
        check_eq(one(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {renewal}"), "800",
                 f"refunded, {what}")


def test_a_cancellation_scheduled_by_date_in_the_dashboard_is_followed():
    # cancel_at was never read: a cancellation set in the dashboard for a date left the row
    # showing nothing pending, and stripe_resume_subscription could not undo it.
    rp, sub, p = subscribed(4020)
    period_end = int(one(f"SELECT extract(epoch FROM current_period_end)::bigint"
                         f"  FROM stripepay.recurring_payment WHERE id = {rp}"))
    date = period_end - 7 * 86400
    start = len(emulator_events())
    emulator("POST", f"/_emulator/subscriptions/{sub}/update", {"cancel_at": date})
    deliver_all(start)
    check_eq(q(f"SELECT status, cancel_at_period_end, extract(epoch FROM cancel_at)::bigint"
               f"  FROM stripepay.recurring_payment WHERE id = {rp}"), [["ACTIVE", "f", str(date)]],
             "the row after the signed update")
    check_eq(q(f"SELECT event_type, status, extract(epoch FROM cancel_at)::bigint, already_processed"
               f"  FROM stripepay.subscription_flow WHERE recurring_payment_id = {rp} ORDER BY id DESC LIMIT 1"),
             [["customer.subscription.updated", "ACTIVE", str(date), "f"]], "the flow says when it ends")
    # resumed from here: cleared at Stripe and here, and Stripe's webhook of it changes nothing
    start = len(emulator_events())
    check_eq(q(f"SELECT cancel_at IS NULL FROM stripepay.stripe_resume_subscription({rp})"), [["t"]], "resumed")
    check_eq(stripe_object("subscription", sub)["cancel_at"], None, "cancel_at at Stripe")
    deliver_all(start)
    check_eq(one(f"SELECT cancel_at IS NULL FROM stripepay.recurring_payment WHERE id = {rp}"), "t",
             "after Stripe's webhook of the resume")
    # scheduled again, and the date comes: the subscription ends then
    start = len(emulator_events())
    emulator("POST", f"/_emulator/subscriptions/{sub}/update", {"cancel_at": date})
    emulator("POST", "/_emulator/clock", {"advance": date - int(emulator("GET", "/_emulator/clock")["now"]) + 60})
    deliver_all(start)
    check_eq(q(f"SELECT status, extract(epoch FROM cancel_at)::bigint FROM stripepay.recurring_payment"
               f" WHERE id = {rp}"), [["CANCELED", str(date)]], "ended at its date")


def test_a_renewal_learns_its_charge_in_each_shape_stripe_sends():
    # invoice_payment.paid names the charge only when it has no PaymentIntent: a renewal
    # paid through a PaymentIntent got no charge_id.  Its latest_charge is read from the
    # event when expanded, else fetched once.
    for n, shape in enumerate(("payment_intent", "payment_intent_expanded", "charge")):
        rp, sub, p = subscribed(4030 + n)
        emulator("POST", "/_emulator/invoice_payments/config", {"payment": shape})
        start = len(emulator_events())
        emulator("POST", f"/_emulator/subscriptions/{sub}/renew", {})
        events = emulator_events()[start:]
        inpay = next(e for e in events if e["type"] == "invoice_payment.paid")["data"]["object"]
        fetched_before = len([r for r in emulator_requests("/v1/payment_intents/") if r["method"] == "GET"])
        deliver_all(start)
        fetches = len([r for r in emulator_requests("/v1/payment_intents/") if r["method"] == "GET"]) - fetched_before
        charge = one(f"SELECT charge_id FROM stripepay.payment_record WHERE recurring_payment_id = {rp}"
                     f" AND kind = 'RENEWAL'")
        check(charge and charge.startswith("ch_"), f"{shape}: renewal charge_id {charge!r}")
        if shape == "charge":
            check_eq(charge, inpay["payment"]["charge"], f"{shape}: the charge named")
        check_eq(fetches, 1 if shape == "payment_intent" else 0, f"{shape}: PaymentIntents fetched")
        check_eq(one(f"SELECT count(*) FROM stripepay.payment_record WHERE recurring_payment_id = {rp}"
                     f" AND kind = 'RENEWAL' AND status = 'SUCCESSFUL'"), "1", f"{shape}: one renewal payment")


def test_two_subscription_changes_in_one_second_end_in_stripes_state():
    # A declined renewal: Stripe moves the subscription to the new period
    # (still active), then to past_due, both stamped with the same second.
    # Neither status outranks the other, so the second event looked no newer
    # than the first, and delivered the other way round the subscription
    # ended ACTIVE.  past_due's previous_attributes say which came first.
    rp, sub, p = subscribed(4012)
    start = len(emulator_events())
    emulator("POST", f"/_emulator/subscriptions/{sub}/fail_renewal", {})
    evs = [e for e in emulator_events()[start:] if e["type"].startswith("customer.subscription.")]
    check_eq([(e["data"]["object"]["status"], e["created"] - evs[0]["created"],
               e["data"].get("previous_attributes", {}).get("status")) for e in evs],
             [("active", 0, None), ("past_due", 0, "active")], "the emulator's pair")
    before = q(f"SELECT status, event_created, changed_from_status, changed_from_cancel_at_period_end"
               f"  FROM stripepay.recurring_payment WHERE id = {rp}")[0]
    check_eq(before[0], "ACTIVE", "status before the failed renewal")
    ids = ", ".join(f"'{e['id']}'" for e in evs)

    def sql_or_null(v):
        return "NULL" if v == "" else "'" + v + "'"
    for order in (evs, evs[::-1]):
        q(f"DELETE FROM stripepay.subscription_flow WHERE event_id IN ({ids});"
          f"DELETE FROM stripepay.webhook_event WHERE id IN ({ids});"
          f"UPDATE stripepay.recurring_payment SET status = '{before[0]}', event_created = '{before[1]}',"
          f"  changed_from_status = {sql_or_null(before[2])},"
          f"  changed_from_cancel_at_period_end = {sql_or_null(before[3])} WHERE id = {rp}")
        for e in order:
            body = event_bytes(e)
            ingest(body, sign(body), db=DB)
        check_eq(one(f"SELECT status FROM stripepay.recurring_payment WHERE id = {rp}"), "PAST_DUE",
                 f"after {[e['data']['object']['status'] for e in order]}")


def test_cancel_at_period_end_resume_and_cancel_now():
    rp, sub, p = subscribed(4004, role="regress_sp_shop")
    # the pinned API schedules it with cancel_at=min_period_end: cancel_at_period_end stays false
    row = q(f"SET ROLE regress_sp_shop; SELECT status, cancel_at_period_end, cancel_at = current_period_end"
            f" FROM stripepay.stripe_cancel_subscription({rp}, true)")
    check_eq(row, [["ACTIVE", "f", "t"]], "cancel at period end")
    sent = [r["params"] for r in emulator_requests(f"/v1/subscriptions/{sub}") if r["method"] == "POST"]
    check_eq(sent[-1].get("cancel_at"), "min_period_end", "cancel_at sent")
    check("cancel_at_period_end" not in sent[-1], f"cancel_at_period_end sent: {sent[-1]}")
    check_eq(stripe_object("subscription", sub)["cancel_at"] is not None, True, "cancel_at at Stripe")
    row = q(f"SET ROLE regress_sp_shop; SELECT status, cancel_at_period_end, cancel_at IS NULL"
            f" FROM stripepay.stripe_resume_subscription({rp})")
    check_eq(row, [["ACTIVE", "f", "t"]], "resumed")
    sent = [r["params"] for r in emulator_requests(f"/v1/subscriptions/{sub}") if r["method"] == "POST"]
    check_eq((sent[-1].get("cancel_at"), sent[-1].get("cancel_at_period_end")), ("", "false"),
             "resume clears both kinds of scheduled cancellation")
    check_eq(stripe_object("subscription", sub)["cancel_at"], None, "cancel_at at Stripe")
    expect_error(f"SET ROLE regress_sp_other; SELECT stripepay.stripe_cancel_subscription({rp})", "42501", db=DB)
    start = len(emulator_events())
    row = q(f"SET ROLE regress_sp_shop; SELECT status, canceled_at IS NOT NULL FROM stripepay.stripe_cancel_subscription({rp})")
    check_eq(row, [["CANCELED", "t"]], "canceled now")
    r = [x for x in emulator_requests("/v1/subscriptions/") if x["method"] == "DELETE"]
    check_eq(len(r), 1, "DELETE requests")
    deliver_all(start)
    flows = q(f"SELECT status, cancel_at IS NOT NULL, already_processed FROM stripepay.subscription_flow "
              f"WHERE recurring_payment_id = {rp} AND event_type IN ('stripe_cancel_subscription', "
              f"'stripe_resume_subscription', 'customer.subscription.deleted') ORDER BY id")
    check_eq(flows, [["ACTIVE", "t", "f"], ["ACTIVE", "f", "f"], ["CANCELED", "f", "f"], ["CANCELED", "f", "t"]],
             "each change fires the flow once, saying when it ends; Stripe's event of it is already processed")
    out = subprocess_notice(f"SELECT status FROM stripepay.stripe_cancel_subscription({rp})")
    check("already canceled" in out, out)
    check_eq(len([x for x in emulator_requests("/v1/subscriptions/") if x["method"] == "DELETE"]), 1,
             "nothing sent for a second cancel")
    expect_error(f"SELECT stripepay.stripe_resume_subscription({rp})", "SP017", db=DB)
    expect_error("SELECT stripepay.stripe_cancel_subscription(987654321)", "SP016", db=DB)


def subprocess_notice(sql):
    import subprocess
    p = subprocess.run(["psql", "-X", "-d", DB, "-c", sql], capture_output=True, text=True)
    return p.stdout + p.stderr


def test_cancel_before_checkout_completes_expires_the_session():
    emulator_reset()
    p = price()
    rp = one(f"SELECT id FROM stripepay.stripe_subscribe(4005, '{p}')")
    check_eq(q(f"SELECT status FROM stripepay.stripe_cancel_subscription({rp})"), [["INCOMPLETE_EXPIRED"]], "expired")
    check(any(x["path"].endswith("/expire") for x in emulator_requests("/v1/checkout/sessions")), "session expired")


# --- helpers for what only Stripe knows yet -----------------------------------------

def stripe_api(method, path, form=None):
    """A /v1 request made outside the database, as the dashboard makes it; no webhook is ingested."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(EMULATOR + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + KEY})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def stripe_object(kind, oid):
    return next((o for o in emulator("GET", "/_emulator/objects").get(kind, []) if o["id"] == oid), None)


def buyer_completes(session, outcome="paid"):
    """The buyer's try on a Checkout page; returns the emulator's HTTP status (400: not open)."""
    try:
        emulator("POST", f"/_emulator/checkout/sessions/{session}/complete", {"outcome": outcome})
        return 200
    except urllib.error.HTTPError as e:
        return e.code


def q_notices(sql):
    """Runs sql like q(); returns (rows, stderr) so that NOTICEs can be read."""
    proc = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                           "-v", "VERBOSITY=verbose", "-d", DB], input=sql, capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        raise sql_error(proc.stderr)
    return [line.split("\t") for line in proc.stdout.splitlines() if line], proc.stderr


def session_creations():
    return [r for r in emulator_requests("/v1/checkout/sessions")
            if r["method"] == "POST" and r["path"] == "/v1/checkout/sessions"]


# --- isolation level --------------------------------------------------------------------

def test_stripe_calls_refuse_a_transaction_snapshot():
    # Under REPEATABLE READ the checks for an open session, a paid order or what was refunded
    # read a snapshot from before another session committed: two sessions paid one order.
    pid = paid_payment(1000)
    rp, sub, p = subscribed(7501)
    seen = len(emulator_requests())
    counts = ("SELECT (SELECT count(*) FROM stripepay.payment_record), (SELECT count(*) FROM stripepay.refund),"
              " (SELECT count(*) FROM stripepay.recurring_payment), (SELECT count(*) FROM stripepay.subscription_flow),"
              f" (SELECT status || cancel_at_period_end::text FROM stripepay.recurring_payment WHERE id = {rp})")
    before = q(counts)
    calls = [("stripe_pay", "stripe_pay(7502, 'usd', 1000)"),
             ("stripe_refund", f"stripe_refund({pid}, 100)"),
             ("stripe_subscribe", f"stripe_subscribe(7503, '{p}')"),
             ("stripe_cancel_subscription", f"stripe_cancel_subscription({rp}, true)"),
             ("stripe_cancel_subscription", f"stripe_cancel_subscription({rp})"),
             ("stripe_resume_subscription", f"stripe_resume_subscription({rp})")]
    for level in ("REPEATABLE READ", "SERIALIZABLE"):
        for name, call in calls:
            e = expect_error(f"BEGIN ISOLATION LEVEL {level}; SELECT 1 FROM stripepay.{call}; COMMIT", "25000", db=DB)
            check_eq(e.message, f"{name} must run at isolation level READ COMMITTED", f"{call} at {level}")
    check_eq(emulator_requests()[seen:], [], "requests sent to Stripe")
    check_eq(q(counts), before, "rows stored")
    check_eq(q(f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT cancel_at IS NOT NULL"
               f"  FROM stripepay.stripe_cancel_subscription({rp}, true); COMMIT"), [["t"]], "READ COMMITTED")


# --- one open way to pay ------------------------------------------------------------------

def test_a_second_stripe_pay_expires_the_open_session():
    # Checkout keeps a session open after a declined card, and one near its end or for an old
    # amount was not reused: the buyer could pay both and the order was charged twice.
    day = 24 * 3600
    for case, order_id in (("last 10 minutes", 7401), ("declined card", 7402), ("other amount", 7403)):
        emulator_reset()
        pid1, s1 = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({order_id}, 'usd', 1999)")[0]
        amount = 1999
        if case == "last 10 minutes":
            # the emulator's clock moves on 23 h 51 min; the database's cannot, so its expiry moves back
            emulator("POST", "/_emulator/clock", {"advance": day - 9 * 60})
            q(f"UPDATE stripepay.payment_record SET expires_at = expires_at - interval '{day - 9 * 60} seconds'"
              f" WHERE id = {pid1}")
        elif case == "declined card":
            check_eq(buyer_completes(s1, "failed"), 200, "a declined card")
            deliver_all()
            check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid1}"), "FAILED", case)
            check_eq(stripe_object("checkout.session", s1)["status"], "open", f"{case}: session before")
        else:
            amount = 2999
        pid2, s2, status = q(f"SELECT id, checkout_session_id, status FROM stripepay.stripe_pay({order_id}, 'usd', {amount})")[0]
        check(pid2 != pid1 and s2 != s1, f"{case}: a new payment {pid2} and session")
        check_eq(status, "PENDING", f"{case}: new payment")
        check_eq(stripe_object("checkout.session", s1)["status"], "expired", f"{case}: earlier session at Stripe")
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid1}"), "CANCELED", f"{case}: earlier payment")
        check_eq(buyer_completes(s1), 400, f"{case}: paying the earlier session")
        check_eq(buyer_completes(s2), 200, f"{case}: paying the new session")
        deliver_all()
        check_eq(q(f"SELECT id, status, amount FROM stripepay.payment_record WHERE order_id = {order_id} ORDER BY id"),
                 [[pid1, "CANCELED", "1999"], [pid2, "SUCCESSFUL", str(amount)]], f"{case}: the order's payments")


def test_a_second_stripe_pay_after_the_buyer_completed_the_first_opens_nothing():
    # The buyer paid the open session and its webhook has not come: a new session would be a
    # second charge, so the call must fail rather than expire what was paid.
    emulator_reset()
    pid1, s1 = q("SELECT id, checkout_session_id FROM stripepay.stripe_pay(7404, 'usd', 1999)")[0]
    check_eq(buyer_completes(s1), 200, "the buyer pays")
    e = expect_error("SELECT stripepay.stripe_pay(7404, 'usd', 2999)", "SP011", db=DB)
    check_eq(e.message, "order 7404 is being paid", "message")
    check_eq(len(session_creations()), 1, "Checkout Sessions created")
    check_eq(q("SELECT id, status FROM stripepay.payment_record WHERE order_id = 7404"), [[pid1, "PENDING"]], "rows")
    deliver_all()
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid1}"), "SUCCESSFUL", "after its webhook")


def test_an_order_whose_async_payment_failed_can_be_paid_again():
    # A failed bank payment leaves its Checkout Session complete and unpaid at Stripe, which was
    # taken for a payment under way: the order could not be paid again until the session expired
    # (SP011 "is being paid").
    for order_id, amount in ((7406, 3000), (7407, 3100)):
        emulator_reset()
        pid1, s1 = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({order_id}, 'usd', 3000)")[0]
        check_eq(buyer_completes(s1, "async_pending"), 200, "a bank payment")
        emulator("POST", f"/_emulator/checkout/sessions/{s1}/async_payment", {"outcome": "failed"})
        check("checkout.session.async_payment_failed" in [e["type"] for e in emulator_events()], "emitted")
        deliver_all()
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid1}"), "FAILED", "after the failure")
        session = stripe_object("checkout.session", s1)
        check_eq((session["status"], session["payment_status"]), ("complete", "unpaid"), "the session at Stripe")
        pid2, s2, status = q(f"SELECT id, checkout_session_id, status FROM stripepay.stripe_pay({order_id}, 'usd', {amount})")[0]
        check(pid2 != pid1 and s2 != s1, f"amount {amount}: a new payment {pid2} and session")
        check_eq(status, "PENDING", f"amount {amount}: new payment")
        check_eq(buyer_completes(s2), 200, f"amount {amount}: paying the new session")
        deliver_all()
        check_eq(q(f"SELECT id, status, amount FROM stripepay.payment_record WHERE order_id = {order_id} ORDER BY id"),
                 [[pid1, "FAILED", "3000"], [pid2, "SUCCESSFUL", str(amount)]], f"amount {amount}: the order's payments")


def test_a_stored_error_on_expire_fails_only_that_stripe_pay():
    # The expire's Idempotency-Key named the session, so Stripe replayed one stored 500 to every
    # later stripe_pay for the order for 24 hours (SP005 each time) while the session stayed payable.
    emulator_reset()
    pid1, s1 = q("SELECT id, checkout_session_id FROM stripepay.stripe_pay(7408, 'usd', 3000)")[0]
    expire = f"/v1/checkout/sessions/{s1}/expire"
    fault("500", count=1, store=True, path_prefix=expire)
    expect_error("SELECT stripepay.stripe_pay(7408, 'usd', 4000)", "SP005", db=DB)
    failed = [r for r in emulator_requests(expire) if r["method"] == "POST"]
    check(failed and all(r["status"] == 500 for r in failed), f"the failing call's expires {failed}")
    check_eq(stripe_object("checkout.session", s1)["status"], "open", "the session after the failed call")
    check_eq(q("SELECT id, status FROM stripepay.payment_record WHERE order_id = 7408"), [[pid1, "PENDING"]], "rows")
    pid2, s2, status = q("SELECT id, checkout_session_id, status FROM stripepay.stripe_pay(7408, 'usd', 4000)")[0]
    check(pid2 != pid1 and s2 != s1 and status == "PENDING", f"a new payment {pid2}, {status}")
    reqs = [r for r in emulator_requests(expire) if r["method"] == "POST"]
    last = reqs[-1]
    check_eq((last["status"], bool(last.get("replayed"))), (200, False), "the last expire")
    keys = [r["headers"]["idempotency-key"] for r in reqs]
    check(keys[-1] not in keys[:len(failed)], f"the last expire reused the failed call's key: {keys}")
    check_eq(len(set(keys)), 2, f"Idempotency-Keys, one per stripe_pay's close attempt, of {keys}")
    check_eq(stripe_object("checkout.session", s1)["status"], "expired", "the earlier session at Stripe")
    check_eq(q("SELECT id, status FROM stripepay.payment_record WHERE order_id = 7408 ORDER BY id"),
             [[pid1, "CANCELED"], [pid2, "PENDING"]], "the order's payments")

def test_a_second_payment_intent_cancels_the_first():
    # With the payment_intent flow the app's page could still confirm the earlier PaymentIntent.
    q("SELECT 1 FROM stripepay.configure(payment_flow => 'payment_intent')")
    try:
        emulator_reset()
        pid1, pi1 = q("SELECT id, payment_intent_id FROM stripepay.stripe_pay(7405, 'usd', 1000)")[0]
        pid2, pi2, status = q("SELECT id, payment_intent_id, status FROM stripepay.stripe_pay(7405, 'usd', 2000)")[0]
        check(pi2 != pi1, "a new PaymentIntent")
        check_eq(status, "PENDING", "new payment")
        check_eq(stripe_object("payment_intent", pi1)["status"], "canceled", "earlier PaymentIntent at Stripe")
        check_eq(stripe_object("payment_intent", pi2)["status"], "requires_payment_method", "new PaymentIntent")
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid1}"), "CANCELED", "earlier payment")
    finally:
        q("SELECT 1 FROM stripepay.configure(payment_flow => 'checkout')")


def test_a_second_stripe_subscribe_expires_the_open_checkout():
    # Two open subscription Checkouts for one order could both be completed: two subscriptions billed.
    emulator_reset()
    p1, p2 = price(2000), price(3000)
    rp1, s1 = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_subscribe(7301, '{p1}')")[0]
    rp2, s2, status = q(f"SELECT id, checkout_session_id, status FROM stripepay.stripe_subscribe(7301, '{p2}')")[0]
    check(rp2 != rp1 and s2 != s1, "a new subscription Checkout")
    check_eq(status, "INCOMPLETE", "new subscription")
    check_eq(stripe_object("checkout.session", s1)["status"], "expired", "earlier session at Stripe")
    check_eq(one(f"SELECT status FROM stripepay.recurring_payment WHERE id = {rp1}"), "INCOMPLETE_EXPIRED", "earlier row")
    check_eq(buyer_completes(s1), 400, "completing the earlier Checkout")
    check_eq(buyer_completes(s2), 200, "completing the new Checkout")
    deliver_all()
    check_eq(len(emulator("GET", "/_emulator/objects").get("subscription", [])), 1, "subscriptions at Stripe")
    check_eq(q("SELECT id, status, price_id FROM stripepay.recurring_payment WHERE order_id = 7301 ORDER BY id"),
             [[rp1, "INCOMPLETE_EXPIRED", p1], [rp2, "ACTIVE", p2]], "the order's subscriptions")
    # completed but not yet known here: refused, nothing new opened
    rp3, s3 = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_subscribe(7302, '{p1}')")[0]
    check_eq(buyer_completes(s3), 200, "the buyer subscribes")
    expect_error(f"SELECT stripepay.stripe_subscribe(7302, '{p2}')", "SP015", db=DB)
    check_eq(q("SELECT id, status FROM stripepay.recurring_payment WHERE order_id = 7302"), [[rp3, "INCOMPLETE"]], "rows")


# --- cancel and resume --------------------------------------------------------------------

def test_cancel_resume_cancel_in_one_second_each_reach_stripe():
    # The key named the second of the call: the third call replayed the first, Stripe stayed
    # resumed while the database said canceling, and the renewal was charged.
    rp, sub, p = subscribed(7601)
    while time.time() % 1 > 0.2:            # all three well inside one wall-clock second
        time.sleep(0.01)
    rows = q(f"SELECT cancel_at IS NOT NULL FROM stripepay.stripe_cancel_subscription({rp}, true);"
             f"SELECT cancel_at IS NOT NULL FROM stripepay.stripe_resume_subscription({rp});"
             f"SELECT cancel_at IS NOT NULL FROM stripepay.stripe_cancel_subscription({rp}, true);")
    check_eq(rows, [["t"], ["f"], ["t"]], "returned")
    reqs = [r for r in emulator_requests(f"/v1/subscriptions/{sub}") if r["method"] == "POST"]
    check_eq([(r["params"].get("cancel_at"), r["status"], bool(r.get("replayed"))) for r in reqs],
             [("min_period_end", 200, False), ("", 200, False), ("min_period_end", 200, False)],
             "requests at Stripe")
    check_eq(len({r["headers"]["idempotency-key"] for r in reqs}), 3, "distinct Idempotency-Keys")
    at_stripe = stripe_object("subscription", sub)["cancel_at"]
    check(at_stripe is not None, "a cancellation scheduled at Stripe")
    here = f"SELECT extract(epoch FROM cancel_at)::bigint FROM stripepay.recurring_payment WHERE id = {rp}"
    check_eq(one(here), str(at_stripe), "here")
    deliver_all()
    check_eq(one(here), str(at_stripe), "after Stripe's webhooks")


def test_cancel_of_a_subscription_stripe_already_canceled_is_recorded():
    # Canceled in the dashboard (or by a request whose answer was lost) before its webhook:
    # the DELETE's 404 made the cancel fail for good.
    for at_period_end in (False, True):
        rp, sub, p = subscribed(7602 + at_period_end)
        stripe_api("DELETE", f"/v1/subscriptions/{sub}")
        rows, notices = q_notices(f"SELECT status, canceled_at IS NOT NULL FROM"
                                  f" stripepay.stripe_cancel_subscription({rp}, {str(at_period_end).lower()})")
        what = "at period end" if at_period_end else "now"
        check_eq(rows, [["CANCELED", "t"]], f"cancel {what}")
        check(f"NOTICE:  00000: subscription {rp} was already canceled at Stripe" in notices, notices)
        check_eq(one(f"SELECT status FROM stripepay.recurring_payment WHERE id = {rp}"), "CANCELED", f"row, {what}")
        check_eq(q(f"SELECT status FROM stripepay.subscription_flow WHERE recurring_payment_id = {rp}"
                   f" AND event_type = 'stripe_cancel_subscription'"), [["CANCELED"]], f"flow, {what}")


def test_cancel_of_an_incomplete_subscription_learns_what_its_checkout_did():
    # The session expired at Stripe unseen: expiring it again was refused and the cancel failed.
    # The buyer completed it unseen: expiring must not be taken for a cancel.
    emulator_reset()
    p = price()
    rp, s = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_subscribe(7201, '{p}')")[0]
    emulator("POST", "/_emulator/clock", {"advance": 25 * 3600})
    check_eq(q(f"SELECT status FROM stripepay.stripe_cancel_subscription({rp})"), [["INCOMPLETE_EXPIRED"]], "expired")
    check_eq(one(f"SELECT status FROM stripepay.recurring_payment WHERE id = {rp}"), "INCOMPLETE_EXPIRED", "row")
    emulator_reset()
    p = price()
    rp, s = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_subscribe(7202, '{p}')")[0]
    check_eq(buyer_completes(s), 200, "the buyer subscribes")
    e = expect_error(f"SELECT stripepay.stripe_cancel_subscription({rp})", "SP016", db=DB)
    check_eq(e.message, f"subscription {rp} cannot be canceled yet", "message")
    check_eq(one(f"SELECT status FROM stripepay.recurring_payment WHERE id = {rp}"), "INCOMPLETE", "row")
    check_eq([x["status"] for x in emulator("GET", "/_emulator/objects").get("subscription", [])], ["active"],
             "the subscription at Stripe")


def test_cancel_in_a_transaction_older_than_a_webhook_is_recorded():
    # The change was stamped with the transaction's start, older than a webhook applied
    # meanwhile, so the database kept cancel_at_period_end false although Stripe had it true.
    rp, sub, p = subscribed(7604)
    start = len(emulator_events())
    q("DROP TABLE IF EXISTS public.sp_gate; CREATE TABLE public.sp_gate ()")
    proc = subprocess.Popen(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DB], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("SET application_name = 'sp_old_xact'; BEGIN; SELECT 1;\n"
                     "DO $$ BEGIN FOR i IN 1..600 LOOP EXIT WHEN EXISTS (SELECT FROM public.sp_gate);"
                     " PERFORM pg_sleep(0.05); END LOOP; END $$;\n"
                     f"SELECT status, cancel_at IS NOT NULL FROM stripepay.stripe_cancel_subscription({rp}, true);\n"
                     "COMMIT;\n")
    proc.stdin.close()
    began = None
    for _ in range(200):
        began = one("SELECT extract(epoch FROM xact_start) FROM pg_stat_activity"
                    " WHERE application_name = 'sp_old_xact' AND xact_start IS NOT NULL")
        if began:
            break
        time.sleep(0.05)
    check(began, "the transaction did not begin")
    # the webhook's created (whole seconds) must be later than the transaction's start
    time.sleep(max(0.0, int(float(began)) + 1.05 - time.time()))
    stripe_api("POST", f"/v1/subscriptions/{sub}", {"metadata[note]": "changed elsewhere"})
    deliver_all(start)
    check(one(f"SELECT event_created > to_timestamp({began}) FROM stripepay.recurring_payment WHERE id = {rp}") == "t",
          "the webhook is newer than the transaction")
    q("INSERT INTO public.sp_gate DEFAULT VALUES")
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(60)
    q("DROP TABLE public.sp_gate")
    check(proc.returncode == 0, err)
    check_eq(out.split(), ["1", "ACTIVE|t"], "returned")
    check(stripe_object("subscription", sub)["cancel_at"] is not None, "cancel_at at Stripe")
    check_eq(one(f"SELECT cancel_at IS NOT NULL FROM stripepay.recurring_payment WHERE id = {rp}"), "t", "here")
    check_eq(q(f"SELECT cancel_at IS NOT NULL FROM stripepay.subscription_flow WHERE recurring_payment_id = {rp}"
               f" AND event_id = 'stripe_cancel_subscription'"), [["t"]], "the flow of the change")


if __name__ == "__main__":
    setup()
    try:
        run("money", [
            test_refund_request_and_webhook_confirmation,
            test_refunds_never_exceed_what_is_left,
            test_concurrent_refunds_cannot_both_pass,
            test_refund_retried_after_rollback_does_not_refund_twice,
            test_refund_retried_after_its_webhooks_claims_the_refund_they_recorded,
            test_only_admins_refund,
            test_hostile_strings_are_refused_cleanly,
            test_subscribe_request_and_activation,
            test_subscribe_refuses_bad_prices_and_stores_nothing,
            test_renewals_become_payments_once,
            test_renewal_learns_its_payment_intent_from_invoice_payment_in_either_order,
            test_two_subscription_changes_in_one_second_end_in_stripes_state,
            test_a_cancellation_scheduled_by_date_in_the_dashboard_is_followed,
            test_a_renewal_learns_its_charge_in_each_shape_stripe_sends,
            test_cancel_at_period_end_resume_and_cancel_now,
            test_cancel_before_checkout_completes_expires_the_session,
            test_stripe_calls_refuse_a_transaction_snapshot,
            test_a_second_stripe_pay_expires_the_open_session,
            test_a_second_stripe_pay_after_the_buyer_completed_the_first_opens_nothing,
            test_an_order_whose_async_payment_failed_can_be_paid_again,
            test_a_stored_error_on_expire_fails_only_that_stripe_pay,
            test_a_second_payment_intent_cancels_the_first,
            test_a_second_stripe_subscribe_expires_the_open_checkout,
            test_cancel_resume_cancel_in_one_second_each_reach_stripe,
            test_cancel_of_a_subscription_stripe_already_canceled_is_recorded,
            test_cancel_of_an_incomplete_subscription_learns_what_its_checkout_did,
            test_cancel_in_a_transaction_older_than_a_webhook_is_recorded,
        ])
    finally:
        pass
