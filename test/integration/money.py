"""Refunds and subscriptions against the emulator: limits, concurrency,
rollback-then-retry, webhooks confirming, the subscription lifecycle,
renewals and who may do what."""
import re
import threading
import time

from harness import (SqlError, check, check_eq, emulator, emulator_events, emulator_requests,
                     fresh_database,
                     emulator_reset, event_bytes, expect_error, fault, ingest, psql, run,
                     scalar, sign, WEBHOOK_SECRET)

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
    before = q(f"SELECT status, event_created, event_changed_from FROM stripepay.recurring_payment WHERE id = {rp}")[0]
    check_eq(before[0], "ACTIVE", "status before the failed renewal")
    ids = ", ".join(f"'{e['id']}'" for e in evs)
    changed_from = "NULL" if before[2] == "" else "'" + before[2] + "'::jsonb"
    for order in (evs, evs[::-1]):
        q(f"DELETE FROM stripepay.subscription_flow WHERE event_id IN ({ids});"
          f"DELETE FROM stripepay.webhook_event WHERE id IN ({ids});"
          f"UPDATE stripepay.recurring_payment SET status = '{before[0]}', event_created = '{before[1]}',"
          f"  event_changed_from = {changed_from} WHERE id = {rp}")
        for e in order:
            body = event_bytes(e)
            ingest(body, sign(body), db=DB)
        check_eq(one(f"SELECT status FROM stripepay.recurring_payment WHERE id = {rp}"), "PAST_DUE",
                 f"after {[e['data']['object']['status'] for e in order]}")


def test_cancel_at_period_end_resume_and_cancel_now():
    rp, sub, p = subscribed(4004, role="regress_sp_shop")
    row = q(f"SET ROLE regress_sp_shop; SELECT status, cancel_at_period_end FROM stripepay.stripe_cancel_subscription({rp}, true)")
    check_eq(row, [["ACTIVE", "t"]], "cancel at period end")
    row = q(f"SET ROLE regress_sp_shop; SELECT status, cancel_at_period_end FROM stripepay.stripe_resume_subscription({rp})")
    check_eq(row, [["ACTIVE", "f"]], "resumed")
    expect_error(f"SET ROLE regress_sp_other; SELECT stripepay.stripe_cancel_subscription({rp})", "42501", db=DB)
    start = len(emulator_events())
    row = q(f"SET ROLE regress_sp_shop; SELECT status, canceled_at IS NOT NULL FROM stripepay.stripe_cancel_subscription({rp})")
    check_eq(row, [["CANCELED", "t"]], "canceled now")
    r = [x for x in emulator_requests("/v1/subscriptions/") if x["method"] == "DELETE"]
    check_eq(len(r), 1, "DELETE requests")
    deliver_all(start)
    flows = q(f"SELECT status, cancel_at_period_end, already_processed FROM stripepay.subscription_flow "
              f"WHERE recurring_payment_id = {rp} AND event_type IN ('stripe_cancel_subscription', "
              f"'stripe_resume_subscription', 'customer.subscription.deleted') ORDER BY id")
    check_eq(flows, [["ACTIVE", "t", "f"], ["ACTIVE", "f", "f"], ["CANCELED", "f", "f"], ["CANCELED", "f", "t"]],
             "each change fires the flow once; Stripe's event of it is already processed")
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
            test_cancel_at_period_end_resume_and_cancel_now,
            test_cancel_before_checkout_completes_expires_the_session,
        ])
    finally:
        pass
