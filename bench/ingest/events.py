#!/usr/bin/env python3
"""Event bodies and signatures for the ingest benchmark.

  events.py generate PAYMENTS.tsv BODIES.bin COPY.bin
      PAYMENTS.tsv: "payment_id<TAB>order_id<TAB>payment_intent_id<TAB>amount<TAB>currency"
      per line, in payment id order; event n is line n (1-based).  Writes one
      unique payment_intent.succeeded event per payment, about 3 kB, in the
      shape of the pinned API version (test/fixtures/events/
      payment_intent.succeeded.json) padded the way a real shop's events are
      (metadata of a cart, shipping, receipt e-mail, card options), pretty-
      printed like Stripe's.  BODIES.bin keeps the exact bytes for signing;
      COPY.bin is a binary COPY of bench_event (n, evt_id, body).

  events.py sign BODIES.bin SECRET FIRST LAST
      Prints "n<TAB>Stripe-Signature" (COPY text) for events FIRST..LAST,
      signed now: t=<unix time>,v1=HMAC-SHA256(secret, "<t>." + body).

  events.py templates FIXTURES_DIR
      Prints SQL that fills bench_template (slot, type, prefix, obj) with the
      data.object of Stripe event fixtures of the pinned API version, one
      slot in 20 per share of the mix (prefill.sql's input).

Generation is deterministic (seeded by the event number), so a second run
makes the same bytes.
"""
import hashlib
import hmac
import json
import random
import struct
import sys
import time

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
FIRST = ["Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances",
         "Edsger", "Radia", "Niklaus", "Adele", "Donald", "Hedy", "Alan", "Sophie"]
LAST = ["Lovelace", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie",
        "Allen", "Dijkstra", "Perlman", "Wirth", "Goldberg", "Knuth", "Lamarr", "Kay", "Wilson"]
STREETS = ["Rue de la Paix", "Main Street", "Baker Street", "Kurfürstendamm", "Via Roma",
           "Calle Mayor", "Elm Avenue", "Queen Street", "Market Street", "Harbour Road"]
CITIES = [("Paris", "75002", "FR", None), ("Springfield", "62701", "US", "IL"),
          ("London", "NW1 6XE", "GB", None), ("Berlin", "10719", "DE", None),
          ("San Francisco", "94103", "US", "CA"), ("Madrid", "28013", "ES", None),
          ("Toronto", "M5H 2N2", "CA", "ON"), ("Milano", "20121", "IT", "MI")]
CHEESES = [("comte-24m", "Comté 24 months", 2450), ("brie-meaux", "Brie de Meaux", 1290),
           ("roquefort", "Roquefort Papillon", 1575), ("gruyere-aop", "Gruyère AOP", 1980),
           ("manchego", "Manchego curado", 1420), ("stilton", "Colston Bassett Stilton", 1860),
           ("parmigiano", "Parmigiano Reggiano 30m", 2990), ("epoisses", "Époisses", 1650)]


def ident(rng, prefix, n):
    return prefix + "".join(rng.choice(ALNUM) for _ in range(n))


def event(n, payment_id, order_id, pi, amount, currency, created):
    rng = random.Random(n * 7919 + 17)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, postal, country, state = rng.choice(CITIES)
    email = f"{first.lower()}.{last.lower()}{rng.randrange(1000)}@example.com"
    items = [{"sku": s, "name": nm, "qty": rng.randrange(1, 4), "unit_amount": p}
             for s, nm, p in rng.sample(CHEESES, rng.randrange(2, 5))]
    charge = ident(rng, "ch_3Q", 22)
    customer = ident(rng, "cus_", 14)
    pm = ident(rng, "pm_1Q", 22)
    address = {"city": city, "country": country, "line1": f"{rng.randrange(1, 200)} {rng.choice(STREETS)}",
               "line2": rng.choice([None, f"Apt {rng.randrange(1, 60)}", "2nd floor"]),
               "postal_code": postal, "state": state}
    obj = {
        "id": pi,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pi}_secret_{ident(rng, '', 25)}",
        "confirmation_method": "automatic",
        "created": created - rng.randrange(20, 600),
        "currency": currency,
        "customer": customer,
        "description": f"Cheese & Co. order #{order_id} ({len(items)} items)",
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": charge,
        "livemode": False,
        "metadata": {
            "order_id": str(order_id),
            "stripepay_payment_id": str(payment_id),
            "cart_id": ident(rng, "cart_", 16),
            "customer_ref": f"C{rng.randrange(10**7, 10**8)}",
            "customer_email": email,
            "items": json.dumps(items, separators=(",", ":"), ensure_ascii=False)[:500],
            "shipping_method": rng.choice(["colissimo", "ups_express", "dhl_standard", "pickup"]),
            "coupon": rng.choice(["", "WELCOME10", "SUMMER24", "FROMAGE5"]),
            "utm_source": rng.choice(["newsletter", "google", "instagram", "direct"]),
            "utm_campaign": rng.choice(["autumn_cheese_box", "brand_search", "retargeting_q3"]),
            "locale": rng.choice(["fr-FR", "en-US", "en-GB", "de-DE"]),
            "app_version": f"web-{rng.randrange(3, 5)}.{rng.randrange(20)}.{rng.randrange(10)}",
        },
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": pm,
        "payment_method_configuration_details": {"id": ident(rng, "pmc_1Q", 22), "parent": None},
        "payment_method_options": {
            "card": {"installments": None, "mandate_options": None, "network": None,
                     "request_three_d_secure": "automatic"},
            "link": {"persistent_token": None},
        },
        "payment_method_types": ["card", "link"],
        "processing": None,
        "receipt_email": email,
        "review": None,
        "setup_future_usage": None,
        "shipping": {"address": address, "carrier": None, "name": f"{first} {last}",
                     "phone": f"+3361{rng.randrange(10**7, 10**8)}", "tracking_number": None},
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": "CHEESECO",
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": f"group_{pi}",
    }
    evt = {
        "id": ident(rng, "evt_3Q", 22),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "payment_intent.succeeded",
    }
    return evt["id"], json.dumps(evt, indent=2, ensure_ascii=False).encode()


def generate(payments_path, bodies_path, copy_path):
    created = int(time.time())
    sizes = []
    with open(payments_path) as src, open(bodies_path, "wb") as bodies, open(copy_path, "wb") as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))
        for n, line in enumerate(src, 1):
            pid, oid, pi, amount, currency = line.rstrip("\n").split("\t")
            evt_id, body = event(n, int(pid), int(oid), pi, int(amount), currency, created)
            sizes.append(len(body))
            bodies.write(struct.pack("!II", n, len(body)) + body)
            e = evt_id.encode()
            copy.write(struct.pack("!hii", 3, 4, n) + struct.pack("!i", len(e)) + e
                       + struct.pack("!i", len(body)) + body)
        copy.write(struct.pack("!h", -1))
    if not sizes:
        sys.exit("no payments")
    print(f"{len(sizes)} events, {min(sizes)}..{max(sizes)} bytes, mean {sum(sizes) // len(sizes)}")


def signed_bodies(bodies_path, secret, first, last):
    """(n, Stripe-Signature, body) of events first..last, signed now."""
    t = int(time.time())
    key = secret.encode()
    with open(bodies_path, "rb") as f:
        while True:
            head = f.read(8)
            if not head:
                break
            n, size = struct.unpack("!II", head)
            body = f.read(size)
            if first <= n <= last:
                mac = hmac.new(key, b"%d." % t + body, hashlib.sha256).hexdigest()
                yield n, b"t=%d,v1=%s" % (t, mac.encode()), body


def sign(bodies_path, secret, first, last):
    out = sys.stdout.buffer
    for n, signature, _ in signed_bodies(bodies_path, secret, first, last):
        out.write(b"%d\t%s\n" % (n, signature))


# The prefill's mix of types, in twentieths: what a shop taking one-time
# payments and a few subscriptions receives.  (fixture, event type, id prefix)
MIX = [("payment_intent.succeeded", "payment_intent.succeeded", "pi_3Q")] * 5 \
    + [("checkout.session.completed", "checkout.session.completed", "cs_test_a1")] * 4 \
    + [("charge.refunded", "charge.succeeded", "ch_3Q")] * 3 \
    + [("invoice.paid", "invoice.paid", "in_1Q")] * 2 \
    + [("customer.subscription.updated", "customer.subscription.updated", "sub_1Q")] * 2 \
    + [("payment_intent.payment_failed", "payment_intent.payment_failed", "pi_3Q")] \
    + [("checkout.session.expired", "checkout.session.expired", "cs_test_a1")] \
    + [("refund.created", "refund.created", "re_3Q")] \
    + [("customer.subscription.deleted", "customer.subscription.deleted", "sub_1Q")]


def templates(fixtures):
    assert len(MIX) == 20
    out = sys.stdout
    out.write("INSERT INTO bench_template (slot, type, prefix, obj) VALUES\n")
    rows = []
    for slot, (name, typ, prefix) in enumerate(MIX):
        with open(f"{fixtures}/{name}.json", encoding="utf-8") as f:
            obj = json.load(f)["data"]["object"]
        if typ == "charge.succeeded":
            obj.update(amount_refunded=0, refunded=False)
        text = json.dumps(obj, ensure_ascii=False)
        assert "$tpl$" not in text
        rows.append(f"({slot}, '{typ}', '{prefix}', $tpl${text}$tpl$)")
    out.write(",\n".join(rows) + ";\n")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "generate":
        generate(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "templates":
        templates(sys.argv[2])
    elif len(sys.argv) == 6 and sys.argv[1] == "sign":
        sign(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
