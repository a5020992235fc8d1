#!/usr/bin/env python3
"""Self-test of the Stripe emulator: python3 test/emulator/test_emulator.py

Starts the emulator on port 0 in a subprocess and talks HTTP to it; stops it even when a
test fails. Standard library only.
"""
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "stripe_emulator.py")
sys.path.insert(0, HERE)
import stripe_emulator as emu  # noqa: E402  (unit tests of the pure helpers)

KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dcAbCd"
LIVE_KEY = "sk_live_51LiveKeyForTestsOnly0000WXyZ"
PORT = None
PROC = None


def start_emulator(extra=()):
    # stderr is inherited: a pipe nobody reads could fill up and stall the emulator.
    proc = subprocess.Popen([sys.executable, EMULATOR, "--port", "0", *extra],
                            stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    if not ready:
        proc.kill()
        raise RuntimeError("emulator did not start")
    line = proc.stdout.readline()
    m = re.fullmatch(r"stripe-emulator listening on 127\.0\.0\.1:(\d+)\n", line)
    if not m:
        proc.kill()
        raise RuntimeError("unexpected first line: %r" % line)
    return proc, int(m.group(1))


def stop_emulator(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout and not proc.stdout.closed:
        proc.stdout.close()
    return proc.returncode


def setUpModule():
    global PROC, PORT
    PROC, PORT = start_emulator()
    unittest.addModuleCleanup(stop_emulator, PROC)


def encode(params, prefix=""):
    """Stripe SDK style form encoding: nested dicts/lists as bracketed names."""
    pairs = []
    items = params.items() if isinstance(params, dict) else enumerate(params)
    for k, v in items:
        name = "%s[%s]" % (prefix, k) if prefix else str(k)
        if isinstance(v, (dict, list)):
            pairs.extend(encode(v, name))
        else:
            if isinstance(v, bool):
                v = "true" if v else "false"
            pairs.append((name, str(v)))
    return pairs if prefix else urllib.parse.urlencode(pairs)


class Resp:
    def __init__(self, r):
        self.status = r.status
        self.headers = {k.lower(): v for k, v in r.getheaders()}
        self.raw = r.read()
        try:
            self.json = json.loads(self.raw)
        except ValueError:
            self.json = None

    @property
    def error(self):
        return self.json["error"]


def call(method, path, params=None, key=KEY, headers=None, conn=None, body=None, timeout=10):
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    h = dict(headers or {})
    if key is not None:
        h.setdefault("Authorization", "Bearer " + key)
    if body is None and params is not None:
        enc = params if isinstance(params, str) else encode(params)
        if method == "GET":
            path = path + "?" + enc
        else:
            body = enc
    if body is not None:
        h.setdefault("Content-Type", "application/x-www-form-urlencoded")
    try:
        conn.request(method, path, body=body, headers=h)
        return Resp(conn.getresponse())
    finally:
        if own:
            conn.close()


def ctl(method, path, payload=None):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        conn.request(method, "/_emulator/" + path, body=json.dumps(payload) if payload is not None else None,
                     headers={"Content-Type": "application/json"})
        r = Resp(conn.getresponse())
        return r
    finally:
        conn.close()


def session_params(**over):
    p = {"mode": "payment", "success_url": "https://shop.example/ok?cs={CHECKOUT_SESSION_ID}",
         "cancel_url": "https://shop.example/cancel",
         "line_items": [{"price_data": {"currency": "usd", "unit_amount": 1500,
                                        "product_data": {"name": "T-shirt"}}, "quantity": 2}],
         "metadata": {"order_id": "42"}, "payment_intent_data": {"metadata": {"order_id": "42"}}}
    p.update(over)
    return p


class Base(unittest.TestCase):
    def setUp(self):
        self.assertEqual(ctl("POST", "reset").status, 200)

    def assertStripeError(self, r, status, type_="invalid_request_error", code=None, param=None, message=None):
        self.assertEqual(r.status, status, r.raw)
        err = r.error
        self.assertEqual(err["type"], type_, r.raw)
        if code is not None:
            self.assertEqual(err.get("code"), code, r.raw)
        if param is not None:
            self.assertEqual(err.get("param"), param, r.raw)
        if message is not None:
            self.assertEqual(err["message"], message, r.raw)
        self.assertRegex(r.headers["request-id"], r"^req_[A-Za-z0-9]{14}$")

    def objects(self, obj_type):
        return ctl("GET", "objects").json.get(obj_type, [])


class Helpers(unittest.TestCase):
    def test_parse_form_nesting(self):
        p = emu.parse_form("a[][k]=1&a[][j]=2&a[][k]=3&e[]=x&e[]=y&m[o]=1&li[0][p][q][0]=z")
        self.assertEqual(p["a"], [{"k": "1", "j": "2"}, {"k": "3"}])
        self.assertEqual(p["e"], ["x", "y"])
        self.assertEqual(p["m"], {"o": "1"})
        self.assertEqual(emu.listify(p)["li"], [{"p": {"q": ["z"]}}])

    def test_parse_form_decoding(self):
        p = emu.parse_form("k=a+b%2Bc%26d%3De%5Bf%5D%0Ag%C3%BC&%6D%5Bx%5D=1")
        self.assertEqual(p["k"], "a b+c&d=e[f]\ngü")
        self.assertEqual(p["m"], {"x": "1"})
        with self.assertRaises(emu.FormError):
            emu.parse_form("k=%FF")
        with self.assertRaises(emu.FormError):
            emu.parse_form("a=1&a[b]=2")

    def test_masking(self):
        self.assertEqual(emu.mask_key("sk_test_abcdefgh1234"), "sk_test_********1234")
        self.assertNotIn("abcdefgh", emu.mask_authorization("Bearer sk_test_abcdefgh1234"))
        self.assertEqual(emu.mask_authorization("Bearer sk_test_abcdefgh1234"), "Bearer sk_test_****1234")

    def test_spec_loaded_with_overlay(self):
        specs = emu.load_specs()
        cs = specs["POST /v1/checkout/sessions"]["props"]
        self.assertIn("success_url", cs)
        self.assertEqual(cs["ui_mode"]["enum"], ["elements", "embedded_page", "form", "hosted_page"])
        self.assertIn("enum_before", cs["ui_mode"])
        self.assertEqual(cs["payment_method_types"]["before"], "2026-09-30")
        for key, entries in emu.OVERLAY.items():
            self.assertIn(key, specs)
            for dotted, change in entries.items():
                self.assertTrue(change.get("reason"), (key, dotted))
        for method, rx, fn, spec_key in emu.API_ROUTES:
            self.assertIn(spec_key, specs, "route without a parameter spec")

    def test_generated_description_is_the_pinned_package(self):
        api = emu.load_api()
        with open(os.path.join(HERE, "package-lock.json"), encoding="utf-8") as f:
            locked = json.load(f)["packages"]["node_modules/stripe"]["version"]
        self.assertEqual(api["source"]["version"], locked)
        self.assertEqual(json.load(open(os.path.join(HERE, "package.json")))["dependencies"]["stripe"], locked)
        self.assertIn("MIT", api["_notice"])

    def test_declarations_say_what_the_brief_relies_on(self):
        """Facts of the pinned declarations the emulator's behaviour follows."""
        ep = emu.load_api()["endpoints"]
        cs = ep["POST /v1/checkout/sessions"]["params"]["props"]
        pi = ep["POST /v1/payment_intents"]["params"]["props"]
        for props in (cs, pi):
            self.assertNotIn("payment_method_types", props)
            self.assertEqual(props["allowed_payment_method_types"]["type"], "array")
        self.assertIn("form", cs["ui_mode"]["enum"])
        cancel_at = ep["POST /v1/subscriptions/{id}"]["params"]["props"]["cancel_at"]
        self.assertTrue(cancel_at["emptyable"])
        self.assertEqual(cancel_at["anyOf"], [{"enum": ["max_billed_until", "max_period_end", "min_period_end"],
                                              "type": "string"}, {"type": "integer"}])
        self.assertEqual(cs["metadata"], {"type": "map", "values": {"type": "string"}})
        self.assertEqual(cs["subscription_data"]["props"]["metadata"]["type"], "map")
        li = cs["line_items"]["items"]["props"]
        self.assertEqual(li["price_data"]["props"]["currency"], {"type": "string"})
        self.assertEqual(li["price_data"]["required"], ["currency"])
        events = ep["POST /v1/webhook_endpoints"]["params"]["props"]["enabled_events"]["items"]["enum"]
        self.assertTrue({"invoice_payment.paid", "refund.failed", "*"} <= set(events))


class Lifecycle(unittest.TestCase):
    def run_one(self, sig):
        log = tempfile.NamedTemporaryFile(suffix=".log", delete=False)
        log.close()
        self.addCleanup(os.unlink, log.name)
        proc, port = start_emulator(["--log", log.name])
        try:
            self.assertNotEqual(port, 0)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/_emulator/health")
            self.assertEqual(Resp(conn.getresponse()).status, 200)
            conn.request("GET", "/v1/charges/ch_x", headers={"Authorization": "Bearer " + KEY})
            self.assertEqual(Resp(conn.getresponse()).status, 404)
            conn.close()
            # An open idle keep-alive connection must not delay shutdown.
            idle = socket.create_connection(("127.0.0.1", port))
            self.addCleanup(idle.close)
        finally:
            t0 = time.monotonic()
            rc = stop_emulator(proc, sig)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 3)
        with open(log.name, encoding="utf-8") as f:
            self.assertIn("GET /v1/charges/ch_x -> 404", f.read())

    def test_sigint(self):
        self.run_one(signal.SIGINT)

    def test_sigterm(self):
        self.run_one(signal.SIGTERM)


class Auth(Base):
    def test_missing_key(self):
        r = call("GET", "/v1/checkout/sessions/cs_test_x", key=None)
        self.assertStripeError(r, 401)
        self.assertIn("You did not provide an API key", r.error["message"])

    def test_invalid_key_masked(self):
        bad = "sk_test_invalid0123456789abcd"
        r = call("GET", "/v1/checkout/sessions/cs_test_x", key=bad)
        self.assertStripeError(r, 401, message="Invalid API Key provided: sk_test_*****************abcd")
        self.assertNotIn(bad.encode(), r.raw)

    def test_malformed(self):
        for auth in ("Bearer not-a-key", "Basic " + KEY, "Bearer sk_test_", "Bearer sk_prod_abc", "Token x"):
            r = call("GET", "/v1/checkout/sessions/cs_test_x", key=None, headers={"Authorization": auth})
            self.assertStripeError(r, 401)
        r = call("GET", "/v1/checkout/sessions/cs_test_x", key="pk_test_abc123")
        self.assertStripeError(r, 401)

    def test_valid_keys_and_livemode(self):
        r = call("POST", "/v1/checkout/sessions", session_params(), key="rk_test_Restricted123")
        self.assertEqual(r.status, 200, r.raw)
        self.assertFalse(r.json["livemode"])
        self.assertTrue(r.json["id"].startswith("cs_test_"))
        r = call("POST", "/v1/checkout/sessions", session_params(), key=LIVE_KEY)
        self.assertEqual(r.status, 200, r.raw)
        self.assertTrue(r.json["livemode"])
        self.assertTrue(r.json["id"].startswith("cs_live_"))
        # test-mode keys do not see live objects
        r2 = call("GET", "/v1/checkout/sessions/" + r.json["id"])
        self.assertStripeError(r2, 404, code="resource_missing")

    def test_request_log_masks_authorization(self):
        call("GET", "/v1/checkout/sessions/cs_test_x")
        reqs = ctl("GET", "requests").json
        self.assertEqual(reqs[-1]["headers"]["authorization"], "Bearer sk_test_****AbCd")
        self.assertNotIn(KEY, json.dumps(reqs))


class Decoding(Base):
    HOSTILE = {
        "amp": "a&b=c", "brackets": "[x][y]", "plus": "1+1 = 2", "newline": "line1\nline2",
        "utf8": "Grüße, 東京 €", "percent": "100%25 %41", "quote": "it's \"quoted\" <b>",
        "emptyish": " ", "semicolon": "a;b", "hash": "#frag?q=1",
    }

    def test_round_trip_hostile_strings(self):
        md = dict(self.HOSTILE)
        md["key with spaces & [brackets"[:40].replace("[", "(")] = "ok"
        p = session_params(metadata=md, client_reference_id="ref&=[]+\n€")
        p["line_items"][0]["price_data"]["product_data"] = {
            "name": "Tee & \"Co\" [1]", "description": "multi\nline + plus",
            "images": ["https://img.example/a.png?x=1&y=2", "https://img.example/b%20c.png"]}
        r = call("POST", "/v1/checkout/sessions", p)
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.json["metadata"], md)
        self.assertEqual(r.json["client_reference_id"], "ref&=[]+\n€")
        r2 = call("GET", "/v1/checkout/sessions/%s/line_items" % r.json["id"], {"expand": ["data.price.product"]})
        self.assertEqual(r2.status, 200, r2.raw)
        prod = r2.json["data"][0]["price"]["product"]
        self.assertEqual(prod["name"], "Tee & \"Co\" [1]")
        self.assertEqual(prod["description"], "multi\nline + plus")
        self.assertEqual(prod["images"], p["line_items"][0]["price_data"]["product_data"]["images"])
        rec = [q for q in ctl("GET", "requests").json if q["method"] == "POST"][0]
        self.assertEqual(rec["params"]["metadata"], md)
        self.assertEqual(rec["params"]["line_items"][0]["price_data"]["product_data"]["images"][1],
                         "https://img.example/b%20c.png")

    def test_unencoded_brackets_and_array_push(self):
        body = ("mode=payment&success_url=https%3A%2F%2Fx.example%2Fok"
                "&line_items[][price_data][currency]=usd&line_items[][price_data][unit_amount]=700"
                "&line_items[][price_data][product_data][name]=A&line_items[][quantity]=1"
                "&line_items[][price_data][currency]=usd&line_items[][price_data][unit_amount]=300"
                "&line_items[][price_data][product_data][name]=B&line_items[][quantity]=3"
                "&expand[]=line_items")
        r = call("POST", "/v1/checkout/sessions", body=body)
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.json["amount_total"], 1600)
        self.assertEqual([li["description"] for li in r.json["line_items"]["data"]], ["A", "B"])

    def test_non_form_content_type(self):
        r = call("POST", "/v1/payment_intents", body=json.dumps({"amount": 100, "currency": "usd"}),
                 headers={"Content-Type": "application/json"})
        self.assertStripeError(r, 400)
        self.assertIn("unsupported Content-Type application/json", r.error["message"])
        self.assertEqual(self.objects("payment_intent"), [])


class Validation(Base):
    def test_unknown_parameters(self):
        r = call("POST", "/v1/checkout/sessions", session_params(foo="bar"))
        self.assertStripeError(r, 400, code="parameter_unknown", param="foo",
                               message="Received unknown parameter: foo")
        p = session_params()
        p["line_items"][0]["price_data"]["product_data"]["colour"] = "red"
        r = call("POST", "/v1/checkout/sessions", p)
        self.assertStripeError(r, 400, code="parameter_unknown",
                               param="line_items[0][price_data][product_data][colour]")
        r = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd", "automatic_payment_methods": {
            "enabled": True, "allow_redirects": "never", "x": "1"}})
        self.assertStripeError(r, 400, code="parameter_unknown", param="automatic_payment_methods[x]")
        r = call("GET", "/v1/checkout/sessions/cs_test_x", {"bogus": "1"})
        self.assertStripeError(r, 400, code="parameter_unknown", param="bogus")

    def test_missing_parameters(self):
        p = session_params()
        del p["mode"]
        self.assertStripeError(call("POST", "/v1/checkout/sessions", p), 400, code="parameter_missing",
                               param="mode", message="Missing required param: mode.")
        p = session_params()
        del p["line_items"][0]["price_data"]["currency"]
        self.assertStripeError(call("POST", "/v1/checkout/sessions", p), 400, code="parameter_missing",
                               param="line_items[0][price_data][currency]")
        self.assertStripeError(call("POST", "/v1/payment_intents", {"currency": "usd"}), 400,
                               code="parameter_missing", param="amount")
        p = session_params()
        del p["success_url"]
        self.assertStripeError(call("POST", "/v1/checkout/sessions", p), 400, code="parameter_missing",
                               param="success_url")

    def test_bad_values(self):
        self.assertStripeError(call("POST", "/v1/payment_intents", {"amount": "12.50", "currency": "usd"}), 400,
                               code="parameter_invalid_integer", param="amount",
                               message="Invalid integer: 12.50")
        r = call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usx"})
        self.assertStripeError(r, 400, param="currency")
        self.assertTrue(r.error["message"].startswith("Invalid currency: usx."))
        self.assertStripeError(call("POST", "/v1/checkout/sessions", session_params(mode="donation")), 400,
                               param="mode", message="Invalid mode: must be one of payment, setup, or subscription")
        self.assertStripeError(call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd",
                                                                    "confirm": "yes"}), 400, param="confirm")
        self.assertStripeError(call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd",
                                                                    "description": ""}), 400,
                               code="parameter_invalid_empty", param="description")
        self.assertStripeError(call("POST", "/v1/checkout/sessions", session_params(success_url="not a url")),
                               400, code="url_invalid", param="success_url")
        self.assertStripeError(call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd",
                                                                    "metadata": "x"}), 400, param="metadata")

    def test_ui_mode_follows_api_version(self):
        r = call("POST", "/v1/checkout/sessions", session_params(ui_mode="hosted"))
        self.assertStripeError(r, 400, param="ui_mode")
        r = call("POST", "/v1/checkout/sessions", session_params(ui_mode="hosted_page"))
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.json["ui_mode"], "hosted_page")
        r = call("POST", "/v1/checkout/sessions", session_params(ui_mode="hosted"),
                 headers={"Stripe-Version": "2025-03-31.basil"})
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.headers["stripe-version"], "2025-03-31.basil")

    def test_payment_method_types_removed_allowed_payment_method_types_accepted(self):
        for path, params in (("/v1/checkout/sessions", session_params(payment_method_types=["card"])),
                             ("/v1/payment_intents", {"amount": 1000, "currency": "usd",
                                                      "payment_method_types": ["card"]})):
            r = call("POST", path, params)
            self.assertStripeError(r, 400, code="parameter_unknown", param="payment_method_types",
                                   message="Received unknown parameter: payment_method_types")
            self.assertEqual(r.error["doc_url"], "https://stripe.com/docs/error-codes/parameter-unknown")
            # a request of a version before 2026-09-30.endive still may
            old = call("POST", path, params, headers={"Stripe-Version": "2026-08-26.dahlia"})
            self.assertEqual(old.status, 200, old.raw)
            self.assertEqual(old.json["payment_method_types"], ["card"])
        self.assertEqual(len(self.objects("checkout.session")), 1)
        s = call("POST", "/v1/checkout/sessions", session_params(allowed_payment_method_types=["card", "link"]))
        self.assertEqual(s.status, 200, s.raw)
        self.assertEqual((s.json["allowed_payment_method_types"], s.json["payment_method_types"]),
                         (["card", "link"], ["card", "link"]))
        done = ctl("POST", "checkout/sessions/%s/complete" % s.json["id"], {"outcome": "paid"}).json
        pi = call("GET", "/v1/payment_intents/" + done["payment_intent"]).json
        self.assertEqual(pi["allowed_payment_method_types"], ["card", "link"])
        pi = call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd",
                                                  "allowed_payment_method_types": ["card"]})
        self.assertEqual(pi.status, 200, pi.raw)
        self.assertEqual((pi.json["allowed_payment_method_types"], pi.json["automatic_payment_methods"]),
                         (["card"], {"allow_redirects": "always", "enabled": True}))
        r = call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd",
                                                 "allowed_payment_method_types": ["cheque"]})
        self.assertStripeError(r, 400, param="allowed_payment_method_types[0]")
        plain = call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd"}).json
        self.assertEqual((plain["allowed_payment_method_types"], plain["payment_method_types"]), (None, ["card"]))

    def test_ui_modes_of_the_pinned_version(self):
        form = call("POST", "/v1/checkout/sessions", session_params(ui_mode="form"))
        self.assertEqual(form.status, 200, form.raw)
        self.assertEqual((form.json["ui_mode"], form.json["url"], form.json["client_secret"]), ("form", None, None))
        p = session_params(ui_mode="elements", return_url="https://shop.example/back")
        del p["success_url"], p["cancel_url"]
        el = call("POST", "/v1/checkout/sessions", p)
        self.assertEqual(el.status, 200, el.raw)
        self.assertTrue(el.json["client_secret"].startswith(el.json["id"] + "_secret_"))
        self.assertStripeError(call("POST", "/v1/checkout/sessions", session_params(ui_mode="elements")), 400,
                               param="success_url")
        self.assertStripeError(call("POST", "/v1/checkout/sessions", session_params(ui_mode="custom")), 400,
                               param="ui_mode", message="Invalid ui_mode: must be one of elements, embedded_page, "
                                                        "form, or hosted_page")

    def test_enabled_events_of_the_pinned_version(self):
        ok = call("POST", "/v1/webhook_endpoints", {"url": "https://shop.example/h", "enabled_events": [
            "invoice_payment.paid", "refund.failed", "three_d_secure.authentication.succeeded"]})
        self.assertEqual(ok.status, 200, ok.raw)
        r = call("POST", "/v1/webhook_endpoints", {"url": "https://shop.example/h", "enabled_events": [
            "invoice.paid", "invoice.payment.paid"]})
        self.assertStripeError(r, 400, param="enabled_events[1]")
        r = call("POST", "/v1/webhook_endpoints/" + ok.json["id"], {"enabled_events": ["charge.nope"]})
        self.assertStripeError(r, 400, param="enabled_events[0]")
        r = call("POST", "/v1/webhook_endpoints", {"url": "https://shop.example/h", "enabled_events": ["*"],
                                                   "api_version": "2026-10-28.endive"})
        self.assertEqual(r.json["api_version"], "2026-10-28.endive")
        r = call("POST", "/v1/webhook_endpoints", {"url": "https://shop.example/h", "enabled_events": ["*"],
                                                   "api_version": "2026-10-29.endive"})
        self.assertStripeError(r, 400, param="api_version")

    def test_unmodelled_parameters_refused(self):
        r = call("POST", "/v1/checkout/sessions", session_params(customer_account="acct_1"))
        self.assertStripeError(r, 400, param="customer_account")
        r = call("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd", "customer_account": "acct_1"})
        self.assertStripeError(r, 400, param="customer_account")
        r = call("POST", "/v1/checkout/sessions", session_params(managed_payments={"enabled": True}))
        self.assertStripeError(r, 400, param="managed_payments[enabled]")
        s = call("POST", "/v1/checkout/sessions", session_params(managed_payments={"enabled": False},
                                                                 integration_identifier="shop-v2")).json
        self.assertEqual((s["managed_payments"], s["integration_identifier"], s["customer_account"]),
                         ({"enabled": False}, "shop-v2", None))

    def test_metadata_limits(self):
        ok = {"k%02d" % i: "v" * 500 for i in range(50)}
        ok["x" * 40] = ok.pop("k00")
        self.assertEqual(call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd",
                                                              "metadata": ok}).status, 200)
        too_many = {"k%02d" % i: "v" for i in range(51)}
        for md in (too_many, {"y" * 41: "v"}, {"k": "v" * 501}):
            r = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd", "metadata": md})
            self.assertStripeError(r, 400, param="metadata")
        r = call("POST", "/v1/checkout/sessions", session_params(payment_intent_data={"metadata": {"k": "v" * 501}}))
        self.assertStripeError(r, 400, param="payment_intent_data[metadata]")

    def test_amount_limits(self):
        cases = [("usd", 49, "amount_too_small"), ("usd", 50, None), ("gbp", 29, "amount_too_small"),
                 ("jpy", 50, None), ("jpy", 49, "amount_too_small"), ("usd", 99999999, None),
                 ("usd", 100000000, "amount_too_large"), ("kwd", 1005, "invalid_charge_amount"),
                 ("kwd", 1000, None)]
        for cur, amount, code in cases:
            r = call("POST", "/v1/payment_intents", {"amount": amount, "currency": cur})
            if code is None:
                self.assertEqual(r.status, 200, (cur, amount, r.raw))
                self.assertEqual(r.json["status"], "requires_payment_method")
                self.assertRegex(r.json["client_secret"], r"^%s_secret_\w+$" % r.json["id"])
            else:
                self.assertStripeError(r, 400, code=code, param="amount")
        p = session_params()
        p["line_items"][0]["price_data"]["unit_amount"] = 20
        self.assertStripeError(call("POST", "/v1/checkout/sessions", p), 400, code="amount_too_small")
        self.assertEqual(len(self.objects("payment_intent")), 4)

    def test_unknown_objects_and_routes(self):
        self.assertStripeError(call("GET", "/v1/checkout/sessions/cs_x"), 404, code="resource_missing",
                               message="No such checkout.session: 'cs_x'", param="session")
        self.assertStripeError(call("GET", "/v1/payment_intents/pi_x"), 404, code="resource_missing",
                               message="No such payment_intent: 'pi_x'")
        r = call("POST", "/v1/foo")
        self.assertStripeError(r, 404)
        self.assertTrue(r.error["message"].startswith("Unrecognized request URL (POST: /v1/foo)."))

    def test_stripe_version_header(self):
        for bad in ("2020-13-45", "latest", "2020-08-27;link_beta=v1"):
            r = call("GET", "/v1/checkout/sessions/cs_x", headers={"Stripe-Version": bad})
            self.assertStripeError(r, 400, message="Invalid Stripe API version: " + bad)
        call("GET", "/v1/checkout/sessions/cs_x", headers={"Stripe-Version": emu.PINNED_API_VERSION})
        self.assertEqual(ctl("GET", "requests").json[-1]["headers"]["stripe-version"], emu.PINNED_API_VERSION)


class Idempotency(Base):
    def test_replay(self):
        h = {"Idempotency-Key": "order-42-attempt"}
        r1 = call("POST", "/v1/checkout/sessions", session_params(), headers=h)
        r2 = call("POST", "/v1/checkout/sessions", session_params(), headers=h)
        self.assertEqual(r1.status, 200)
        self.assertEqual((r2.status, r2.json), (r1.status, r1.json))
        self.assertEqual(r2.headers.get("idempotent-replayed"), "true")
        self.assertNotIn("idempotent-replayed", r1.headers)
        self.assertEqual(len(self.objects("checkout.session")), 1)
        self.assertEqual([q["replayed"] for q in ctl("GET", "requests").json], [False, True])
        # the key is scoped to the API key
        r3 = call("POST", "/v1/checkout/sessions", session_params(), headers=h, key="sk_test_Other1")
        self.assertNotEqual(r3.json["id"], r1.json["id"])

    def test_mismatch(self):
        h = {"Idempotency-Key": "k1"}
        self.assertEqual(call("POST", "/v1/checkout/sessions", session_params(), headers=h).status, 200)
        r = call("POST", "/v1/checkout/sessions", session_params(client_reference_id="other"), headers=h)
        self.assertStripeError(r, 400, type_="idempotency_error", message=(
            "Keys for idempotent requests can only be used with the same parameters they were first used "
            "with. Try using a key other than 'k1' if you meant to execute a different request."))
        r = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}, headers=h)
        self.assertStripeError(r, 400, type_="idempotency_error")

    def test_validation_errors_not_stored_and_key_length(self):
        h = {"Idempotency-Key": "k2"}
        r = call("POST", "/v1/payment_intents", {"amount": 10, "currency": "usd"}, headers=h)
        self.assertStripeError(r, 400, code="amount_too_small")
        r = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}, headers=h)
        self.assertEqual(r.status, 200, r.raw)
        self.assertNotIn("idempotent-replayed", r.headers)
        r = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"},
                 headers={"Idempotency-Key": "x" * 256})
        self.assertStripeError(r, 400)
        self.assertIn("1-255 characters", r.error["message"])
        self.assertEqual(call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"},
                              headers={"Idempotency-Key": "x" * 255}).status, 200)


class InFlight(Base):
    def test_concurrent_same_key_conflicts(self):
        ctl("POST", "faults", {"mode": "slow", "count": 1, "seconds": 0.8})
        h = {"Idempotency-Key": "busy"}
        out = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "first", call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}, headers=h)))
        t.start()
        time.sleep(0.3)
        r = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}, headers=h)
        t.join(5)
        self.assertStripeError(r, 409, type_="idempotency_error", code="idempotency_key_in_use")
        self.assertEqual(out["first"].status, 200)
        r = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}, headers=h)
        self.assertEqual(r.headers.get("idempotent-replayed"), "true")
        self.assertEqual(r.json["id"], out["first"].json["id"])
        self.assertEqual(len(self.objects("payment_intent")), 1)


class Faults(Base):
    def test_429_headers_and_nothing_created(self):
        f = ctl("POST", "faults", {"mode": "429", "count": 2, "retry_after": 2, "should_retry": "true"})
        self.assertEqual(f.status, 200, f.raw)
        h = {"Idempotency-Key": "same"}
        for _ in range(2):
            r = call("POST", "/v1/checkout/sessions", session_params(), headers=h)
            self.assertStripeError(r, 429, code="rate_limit")
            self.assertEqual(r.headers["retry-after"], "2")
            self.assertEqual(r.headers["stripe-should-retry"], "true")
        self.assertEqual(self.objects("checkout.session"), [])
        r = call("POST", "/v1/checkout/sessions", session_params(), headers=h)
        self.assertEqual(r.status, 200, r.raw)
        self.assertNotIn("idempotent-replayed", r.headers)
        self.assertEqual(len(self.objects("checkout.session")), 1)
        self.assertEqual([q["fault"] for q in ctl("GET", "requests").json], ["429", "429", None])

    def test_500_and_503(self):
        ctl("POST", "faults", {"mode": "500", "count": 1, "should_retry": False})
        r = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"})
        self.assertStripeError(r, 500, type_="api_error")
        self.assertEqual(r.headers["stripe-should-retry"], "false")
        ctl("POST", "faults", {"mode": "503", "count": 1})
        self.assertStripeError(call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}), 503,
                               type_="api_error")
        self.assertEqual(self.objects("payment_intent"), [])
        self.assertEqual(call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}).status, 200)

    def test_stored_500_is_replayed(self):
        ctl("POST", "faults", {"mode": "500", "count": 1, "store": True})
        h = {"Idempotency-Key": "k500"}
        r1 = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}, headers=h)
        r2 = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}, headers=h)
        self.assertEqual((r1.status, r2.status), (500, 500))
        self.assertEqual(r2.headers.get("idempotent-replayed"), "true")
        self.assertEqual(self.objects("payment_intent"), [])

    def test_path_prefix(self):
        ctl("POST", "faults", {"mode": "503", "count": 1, "path_prefix": "/v1/payment_intents"})
        self.assertEqual(call("POST", "/v1/checkout/sessions", session_params()).status, 200)
        self.assertEqual(call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}).status, 503)

    def test_reset(self):
        ctl("POST", "faults", {"mode": "reset", "count": 1})
        with self.assertRaises((ConnectionResetError, http.client.RemoteDisconnected)) as cm:
            call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"})
        self.assertIsInstance(cm.exception, ConnectionResetError)
        self.assertEqual(self.objects("payment_intent"), [])
        self.assertEqual(call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}).status, 200)

    def test_hang(self):
        ctl("POST", "faults", {"mode": "hang", "count": 1, "seconds": 1})
        t0 = time.monotonic()
        with self.assertRaises(socket.timeout):
            call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}, timeout=0.4)
        t0 = time.monotonic()
        ctl("POST", "faults", {"mode": "hang", "count": 1, "seconds": 0.8})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError)):
            call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}, timeout=5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.7)
        self.assertEqual(self.objects("payment_intent"), [])

    def test_slow(self):
        ctl("POST", "faults", {"mode": "slow", "count": 1, "seconds": 0.6})
        t0 = time.monotonic()
        r = call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"})
        self.assertEqual(r.status, 200, r.raw)
        self.assertGreaterEqual(time.monotonic() - t0, 0.55)

    def test_after_lets_the_first_requests_pass(self):
        ctl("POST", "faults", {"mode": "500", "count": 1, "after": 2, "path_prefix": "/v1/events"})
        call("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"})   # not matching
        self.assertEqual([call("GET", "/v1/events").status for _ in range(4)], [200, 200, 500, 200])
        self.assertEqual([f["hits"] for f in ctl("GET", "faults").json], [1])

    def test_bad_fault_rejected(self):
        self.assertEqual(ctl("POST", "faults", {"mode": "404"}).status, 400)
        self.assertEqual(ctl("POST", "faults", {"mode": "429", "path_prefix": "/_emulator"}).status, 400)
        for after in (-1, "2", True):
            self.assertEqual(ctl("POST", "faults", {"mode": "500", "after": after}).status, 400)


class KeepAlive(Base):
    def test_twenty_calls_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        try:
            ids = []
            for i in range(20):
                if i % 2:
                    r = call("POST", "/v1/payment_intents", {"amount": 100 + i, "currency": "usd"}, conn=conn)
                    ids.append(r.json["id"])
                else:
                    r = call("GET", "/v1/checkout/sessions/cs_missing", conn=conn)
                    self.assertEqual(r.status, 404)
        finally:
            conn.close()
        self.assertEqual(ctl("GET", "stats").json, {"connections": 1, "requests": 20})
        self.assertEqual(len({q["connection_id"] for q in ctl("GET", "requests").json}), 1)


class Buyer(Base):
    def create(self, **over):
        r = call("POST", "/v1/checkout/sessions", session_params(**over))
        self.assertEqual(r.status, 200, r.raw)
        s = r.json
        self.assertEqual((s["status"], s["payment_status"], s["payment_intent"]), ("open", "unpaid", None))
        self.assertEqual(s["url"], "http://127.0.0.1:%d/pay/%s" % (PORT, s["id"]))
        self.assertAlmostEqual(s["expires_at"], s["created"] + 86400, delta=2)
        return s

    def test_paid(self):
        s = self.create(client_reference_id="order-42")
        self.assertEqual((s["amount_total"], s["currency"], s["metadata"]), (3000, "usd", {"order_id": "42"}))
        r = ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "paid"})
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual((r.json["status"], r.json["payment_status"]), ("complete", "paid"))
        pi = call("GET", "/v1/payment_intents/" + r.json["payment_intent"], {"expand": ["latest_charge"]}).json
        self.assertEqual((pi["status"], pi["amount"], pi["metadata"]), ("succeeded", 3000, {"order_id": "42"}))
        self.assertEqual(pi["latest_charge"]["status"], "succeeded")
        self.assertEqual(pi["latest_charge"]["payment_intent"], pi["id"])
        types = [e["type"] for e in ctl("GET", "events").json]
        self.assertEqual(types, ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded",
                                 "checkout.session.completed"])
        ev = ctl("GET", "events").json[-1]
        self.assertEqual(ev["data"]["object"]["client_reference_id"], "order-42")
        self.assertEqual(ev["api_version"], emu.PINNED_API_VERSION)
        listed = call("GET", "/v1/events", {"type": "checkout.session.*"}).json["data"]
        self.assertEqual([e["id"] for e in listed], [ev["id"]])
        self.assertEqual(ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "paid"}).status, 400)

    def test_failed_then_paid(self):
        s = self.create()
        r = ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "failed"})
        self.assertEqual(r.json["status"], "open")
        pi = call("GET", "/v1/payment_intents/" + r.json["payment_intent"]).json
        self.assertEqual(pi["status"], "requires_payment_method")
        self.assertEqual(pi["last_payment_error"]["code"], "card_declined")
        r = ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "paid"})
        self.assertEqual(r.json["payment_status"], "paid")
        self.assertEqual(r.json["payment_intent"], pi["id"])
        self.assertEqual(len(self.objects("charge")), 2)

    def test_async_pending(self):
        s = self.create()
        r = ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "async_pending"})
        self.assertEqual((r.json["status"], r.json["payment_status"]), ("complete", "unpaid"))
        pi = call("GET", "/v1/payment_intents/" + r.json["payment_intent"]).json
        self.assertEqual(pi["status"], "processing")
        r = ctl("POST", "checkout/sessions/%s/async_payment" % s["id"], {"outcome": "succeeded"})
        self.assertEqual(r.json["payment_status"], "paid")
        self.assertIn("checkout.session.async_payment_succeeded", [e["type"] for e in ctl("GET", "events").json])

    def test_expire(self):
        s = self.create()
        r = call("POST", "/v1/checkout/sessions/%s/expire" % s["id"])
        self.assertEqual((r.json["status"], r.json["url"]), ("expired", None))
        self.assertStripeError(call("POST", "/v1/checkout/sessions/%s/expire" % s["id"]), 400)
        self.assertEqual(ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "paid"}).status, 400)
        s2 = self.create()
        ctl("POST", "clock", {"advance": 86401})
        self.assertEqual(call("GET", "/v1/checkout/sessions/" + s2["id"]).json["status"], "expired")

    def test_subscription_mode(self):
        price = ctl("POST", "prices", {"currency": "eur", "unit_amount": 900,
                                       "recurring": {"interval": "month"}}).json
        r = call("POST", "/v1/checkout/sessions", {
            "mode": "subscription", "success_url": "https://x.example/ok",
            "line_items": [{"price": price["id"], "quantity": 1}],
            "subscription_data": {"metadata": {"order_id": "7"}}})
        self.assertEqual(r.status, 200, r.raw)
        r = ctl("POST", "checkout/sessions/%s/complete" % r.json["id"], {"outcome": "paid"})
        sub = self.objects("subscription")[0]
        self.assertEqual((sub["status"], sub["metadata"], r.json["subscription"]), ("active", {"order_id": "7"},
                                                                                     sub["id"]))
        bad = call("POST", "/v1/checkout/sessions", {
            "mode": "payment", "success_url": "https://x.example/ok",
            "line_items": [{"price": price["id"], "quantity": 1}]})
        self.assertStripeError(bad, 400, param="mode")
        bad = call("POST", "/v1/checkout/sessions", session_params(subscription_data={"metadata": {"a": "b"}}))
        self.assertStripeError(bad, 400, param="subscription_data")

    def test_payment_intent_confirm(self):
        pi = call("POST", "/v1/payment_intents", {"amount": 2500, "currency": "eur", "metadata": {"o": "1"},
                                                  "automatic_payment_methods": {"enabled": True}}).json
        self.assertEqual(pi["automatic_payment_methods"], {"allow_redirects": "always", "enabled": True})
        r = ctl("POST", "payment_intents/%s/confirm" % pi["id"], {"outcome": "failed"})
        self.assertEqual(r.json["last_payment_error"]["type"], "card_error")
        r = ctl("POST", "payment_intents/%s/confirm" % pi["id"], {"outcome": "succeeded"})
        self.assertEqual((r.json["status"], r.json["amount_received"]), ("succeeded", 2500))
        ok = call("POST", "/v1/payment_intents", {"amount": 2500, "currency": "usd", "confirm": True,
                                                  "payment_method": "pm_card_visa",
                                                  "return_url": "https://x.example/back"})
        self.assertEqual(ok.json["status"], "succeeded", ok.raw)
        declined = call("POST", "/v1/payment_intents", {"amount": 2500, "currency": "usd", "confirm": True,
                                                        "payment_method": "pm_card_chargeDeclined",
                                                        "return_url": "https://x.example/back"})
        self.assertStripeError(declined, 402, type_="card_error", code="card_declined")


API = emu.load_api()          # stripe_params.json: generated from the stripe package's declarations
OBJECTS = API["objects"]
PYTYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict,
           "map": dict, "array": list}

# Top-level fields the declarations mark optional (`?`) that the emulator leaves out, each with
# its reason. Every other field of the pinned version's interface must be in the emulator's
# object. (Optional fields of nested objects may be absent: they are one-of members such as
# payment_method_details.<type>.)
ABSENT_OPTIONAL = {
    "checkout.session": {
        "branding_settings": "only on sessions created with branding_settings (not emulated)",
        "excluded_payment_method_types": "only when the request excluded some",
        "line_items": "includable: only when expanded (expand[]=line_items)",
        "name_collection": "only on sessions created with name_collection (not emulated)",
        "optional_items": "only on sessions created with optional_items (not emulated)",
        "presentment_details": "only with Adaptive Pricing conversions (not emulated)",
        "redirect_on_completion": "embedded_page and elements sessions only",
        "return_url": "embedded_page and elements sessions, and form sessions that set it",
        "tax_id_collection": "only on sessions created with tax_id_collection (not emulated)"},
    "payment_intent": {
        "hooks": "only for PaymentIntents with hooks (not emulated)",
        "payment_details": "only when the request sent payment_details (not emulated)",
        "presentment_details": "only with Adaptive Pricing conversions (not emulated)",
        "transfer_data": "Connect destination charges only (not emulated)"},
    "charge": {
        "authorization_code": "card-present charges only",
        "level3": "only for charges with Level III data",
        "presentment_details": "only with Adaptive Pricing conversions (not emulated)",
        "radar_options": "only when the request sent radar_options",
        "refunds": "includable: only when expanded (expand[]=refunds) since 2022-11-15",
        "transfer": "Connect destination charges only (not emulated)"},
    "invoice": {
        "amount_paid_off_stripe": "only for invoices paid out of band",
        "confirmation_secret": "includable: only when expanded",
        "payments": "includable: only when expanded (expand[]=payments)",
        "status_details": "only for invoices with status details",
        "threshold_reason": "only for billing-threshold invoices"},
    "subscription": {
        "presentment_details": "only with Adaptive Pricing conversions (not emulated)",
        "status_details": "only for subscriptions with status details"},
    "refund": {
        "description": "legacy: only on refunds that have one",
        "failure_balance_transaction": "only on failed refunds",
        "failure_reason": "only on failed refunds",
        "instructions_email": "customer-balance refunds only (not emulated)",
        "next_action": "refunds that need an action only",
        "pending_reason": "only on pending refunds with a reason",
        "presentment_details": "only with Adaptive Pricing conversions (not emulated)"},
    "customer": {
        "business_name": "only when set",
        "cash_balance": "includable: only when expanded",
        "individual_name": "only when set",
        "invoice_credit_balance": "includable: only when expanded",
        "sources": "includable: only when expanded",
        "subscriptions": "includable: only when expanded", "tax": "includable: only when expanded",
        "tax_ids": "includable: only when expanded"},
    "item": {"discounts": "only when the line item has discounts",
             "taxes": "only when the line item has taxes"},
    "price": {"currency_options": "includable: only when expanded", "tiers": "includable: only when expanded"},
    "webhook_endpoint": {"secret": "only in the response that creates the endpoint"},
    "event": {"account": "Connect events only (not emulated)",
              "context": "events of another account's context only (not emulated)"},
    "plan": {"tiers": "includable: only when expanded"},
    "subscription_item": {"billed_until": "billing schedules (prebilling) only (not emulated)"},
    "payment_method": {"radar_options": "only when the request sent radar_options"},
}
# Besides: an optional field named after one of the values of the object's `type` (a
# PaymentMethod's card, us_bank_account, ...) is there only for that type.


def shape_problems(value, node, path, out, top=False, root=None, rel=""):
    """Where value differs from the declarations' node: missing fields, fields the pinned
    version does not have, wrong types, values outside the enum. root and rel: the enclosing
    object's type and the dotted path in it (for FIELDS_AFTER_PINNED)."""
    if value is None:
        if not node.get("nullable"):
            out.append("%s: null, but the field is not nullable" % path)
        return
    if "expandable" in node and not isinstance(value, str):
        if isinstance(value, dict) and value.get("object"):
            kind = ("deleted_" if value.get("deleted") else "") + value["object"]
            if kind in OBJECTS:
                shape_problems(value, OBJECTS[kind], path, out, top=True)
            return
        out.append("%s: an id or an expanded object expected, got %r" % (path, value))
        return
    if "expandable" in node:
        return
    if "ref" in node:
        if not isinstance(value, dict):
            out.append("%s: an embedded %s object expected" % (path, node["ref"]))
        elif value.get("object") in OBJECTS:
            shape_problems(value, OBJECTS[value["object"]], path, out, top=True)
        return
    types = node.get("type", "any").split("|")
    if "any" not in types and not any(
            isinstance(value, PYTYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
            for t in types if t in PYTYPES):
        out.append("%s: %s expected, got %r" % (path, node.get("type"), value))
        return
    if "enum" in node and isinstance(value, (str, bool)) and value not in node["enum"]:
        out.append("%s: %r is not one of %s" % (path, value, node["enum"]))
    if isinstance(value, list) and "items" in node:
        for v in value:
            shape_problems(v, node["items"], path + "[]", out, root=root, rel=rel + "[]")
    if not isinstance(value, dict) or "fields" not in node:
        return
    fields = node["fields"]
    kind = value.get("object") if top else None
    if top:
        root, rel = kind, ""
    absent_ok = ABSENT_OPTIONAL.get(kind, {}) if top else {}
    if top and "type" in fields:
        absent_ok = dict(absent_ok, **{t: "one of by type" for t in fields["type"].get("enum", [])})
    for k, f in fields.items():
        newer = (root, (rel + "." + k).lstrip(".")) in emu.FIELDS_AFTER_PINNED
        if k in value and newer:
            out.append("%s.%s: added after the pinned version" % (path, k))
        if k not in value and not newer:
            if not f.get("optional"):
                out.append("%s.%s: missing (the pinned version always has it)" % (path, k))
            elif top and k not in absent_ok:
                out.append("%s.%s: optional field absent and not in ABSENT_OPTIONAL" % (path, k))
    for k, v in value.items():
        if k not in fields:
            out.append("%s.%s: not a field of the pinned version" % (path, k))
        elif kind == "event" and k == "data":
            event_data_problems(value, v, path + ".data", out)
        else:
            shape_problems(v, fields[k], path + "." + k, out, root=root, rel=(rel + "." + k).lstrip("."))


def event_data_problems(event, data, path, out):
    """data.object is the object the event type carries; previous_attributes only its fields."""
    want = API["event_types"].get(event["type"])
    obj = data.get("object") or {}
    if want is None:
        out.append("%s: event type %s is not in the pinned version" % (path, event["type"]))
        return
    if obj.get("object") != want.split(".")[-1] and obj.get("object") != want:
        out.append("%s.object: a %s expected for %s, got %s" % (path, want, event["type"], obj.get("object")))
    if want in OBJECTS:
        shape_problems(obj, OBJECTS[want], path + ".object", out, top=True)
        for k in data.get("previous_attributes") or {}:
            if k not in OBJECTS[want]["fields"]:
                out.append("%s.previous_attributes.%s: not a field of %s" % (path, k, want))
    for k in data:
        if k not in ("object", "previous_attributes"):
            out.append("%s.%s: not a field of the pinned version" % (path, k))


def many_objects(test):
    """Most of what the emulator makes: payments (paid, declined, bank), refunds (pending, failed),
    subscriptions (renewed, past due, paused, scheduled to cancel, canceled), endpoints, prices."""
    s = call("POST", "/v1/checkout/sessions", session_params(client_reference_id="7")).json
    ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "failed"})
    ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "paid"})
    bank = call("POST", "/v1/checkout/sessions", session_params()).json
    ctl("POST", "checkout/sessions/%s/complete" % bank["id"], {"outcome": "async_pending"})
    ctl("POST", "checkout/sessions/%s/async_payment" % bank["id"], {"outcome": "succeeded"})
    call("POST", "/v1/checkout/sessions/%s/expire" % call("POST", "/v1/checkout/sessions", session_params()).json["id"])
    pi = call("POST", "/v1/payment_intents", {"amount": 2500, "currency": "eur",
                                              "allowed_payment_method_types": ["card"]}).json
    ctl("POST", "payment_intents/%s/confirm" % pi["id"], {"outcome": "succeeded"})
    paid_pi = call("GET", "/v1/checkout/sessions/" + s["id"]).json["payment_intent"]
    call("POST", "/v1/refunds", {"payment_intent": paid_pi, "amount": 100, "metadata": {"k": "v"}})
    ctl("POST", "refunds/next_status", {"status": "pending"})
    re_ = ctl("POST", "refunds", {"payment_intent": paid_pi, "amount": 200}).json
    ctl("POST", "refunds/%s/settle" % re_["id"], {"outcome": "failed"})
    call("POST", "/v1/refunds", {"payment_intent": call("GET", "/v1/checkout/sessions/" + bank["id"]).json[
        "payment_intent"]})
    ep = call("POST", "/v1/webhook_endpoints", {"url": "https://shop.example/hook", "enabled_events": ["*"]}).json
    sub = subscribe(test)
    ctl("POST", "subscriptions/%s/renew" % sub["id"])
    ctl("POST", "subscriptions/%s/fail_renewal" % sub["id"])
    ctl("POST", "subscriptions/%s/renew" % sub["id"])
    call("POST", "/v1/subscriptions/" + sub["id"], {"cancel_at": "min_period_end", "metadata": {"a": "b"}})
    ctl("POST", "subscriptions/%s/pause" % sub["id"])
    ctl("POST", "subscriptions/%s/resume" % sub["id"])
    other = subscribe(test)
    call("POST", "/v1/subscriptions/" + other["id"], {"cancel_at_period_end": True})
    ctl("POST", "subscriptions/%s/renew" % other["id"])
    return {"session": s, "endpoint": ep, "subscription": sub}


class Shapes(Base):
    """Emulated objects and events have exactly the fields of the pinned API version."""

    def assertShape(self, obj, kind):
        out = []
        shape_problems(obj, OBJECTS[kind], kind, out, top=True)
        return out

    def test_objects_and_events_match_the_declarations(self):
        made = many_objects(self)
        problems = []
        objs = ctl("GET", "objects").json
        for kind, items in objs.items():
            if kind not in OBJECTS:
                problems.append("%s: no interface for this object type" % kind)
                continue
            for o in items:
                problems += self.assertShape(o, kind)
        for ev in ctl("GET", "events").json:
            problems += self.assertShape(ev, "event")
        # answers that are not stored objects: expanded fields, lists, the deleted endpoint
        ep = made["endpoint"]
        self.assertTrue(ep["secret"].startswith("whsec_"))
        problems += self.assertShape(ep, "webhook_endpoint")
        problems += self.assertShape(call("DELETE", "/v1/webhook_endpoints/" + ep["id"]).json,
                                     "deleted_webhook_endpoint")
        inv = call("GET", "/v1/invoices/" + made["subscription"]["latest_invoice"],
                   {"expand": ["payments", "customer"]}).json
        problems += self.assertShape(inv, "invoice")
        s = call("GET", "/v1/checkout/sessions/" + made["session"]["id"], {"expand": ["line_items"]}).json
        problems += self.assertShape(s, "checkout.session")
        ch = objs["charge"][0]
        problems += self.assertShape(call("GET", "/v1/charges/" + ch["id"], {"expand": ["refunds"]}).json, "charge")
        for path, kind in (("/v1/events", "event"), ("/v1/refunds", "refund"), ("/v1/payment_intents", "payment_intent"),
                           ("/v1/checkout/sessions", "checkout.session")):
            for o in call("GET", path, {"limit": 100}).json["data"]:
                problems += self.assertShape(o, kind)
        self.assertEqual(sorted(set(problems)), [])

    def test_every_route_answers_the_declared_object(self):
        """Each endpoint's `returns` (from the SDK method's return type) names what the route answers."""
        for method, rx, fn, key in emu.API_ROUTES:
            self.assertIn(key, API["endpoints"])
            self.assertTrue(API["endpoints"][key]["returns"], key)

    def test_absent_list_names_real_optional_fields(self):
        for kind, fields in ABSENT_OPTIONAL.items():
            for k in fields:
                self.assertIn(k, OBJECTS[kind]["fields"], (kind, k))
                self.assertTrue(OBJECTS[kind]["fields"][k].get("optional"), (kind, k))
        for (kind, dotted), why in emu.FIELDS_AFTER_PINNED.items():
            node = OBJECTS[kind]
            for part in dotted.split("."):
                name = part.replace("[]", "")
                node = node["fields"][name]
                if part.endswith("[]"):
                    node = node["items"]
            self.assertTrue(why, (kind, dotted))

    def test_parameters_after_the_pinned_version(self):
        p = session_params(automatic_tax={"enabled": False, "address_collection_precision": "full"})
        self.assertStripeError(call("POST", "/v1/checkout/sessions", p), 400, code="parameter_unknown",
                               param="automatic_tax[address_collection_precision]")
        r = call("POST", "/v1/checkout/sessions", p, headers={"Stripe-Version": "2026-11-18.endive"})
        self.assertEqual(r.status, 200, r.raw)

    # Fields in stripe-mock's samples (fixtures/stripe_objects.json, November 2025) that the
    # pinned version no longer has, with the version that removed them.
    REMOVED_SINCE_FIXTURES = {("invoice", "subscription"): "2025-03-31.basil (parent.subscription_details)"}

    def test_declarations_cover_stripe_mock_samples(self):
        """A check of the generator: every field of Stripe's own samples is in its output."""
        with open(os.path.join(HERE, "fixtures", "stripe_objects.json"), encoding="utf-8") as f:
            fx = json.load(f)["resources"]
        missing = [(name, k) for name, sample in fx.items() for k in sample
                   if k not in OBJECTS[name]["fields"] and (name, k) not in self.REMOVED_SINCE_FIXTURES]
        self.assertEqual(missing, [])


# --------------------------------------------------------------------------------------
# Webhook endpoints and delivery
# --------------------------------------------------------------------------------------

class Receiver:
    """A local webhook endpoint recording every delivery. respond(event, n) -> HTTP status,
    where n counts earlier deliveries of the same event id."""

    def __init__(self, respond=None, delay=0.0):
        self.deliveries = []
        self.lock = threading.Lock()
        self.respond = respond or (lambda ev, n: 200)
        self.delay = delay
        self.active = self.max_active = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    if outer.delay:
                        time.sleep(outer.delay)
                    ev = json.loads(body)
                    with outer.lock:
                        n = sum(1 for d in outer.deliveries if d["event"]["id"] == ev["id"])
                    status = outer.respond(ev, n)
                    with outer.lock:
                        outer.deliveries.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                                 "body": body, "event": ev, "status": status,
                                                 "path": self.path})
                finally:
                    with outer.lock:
                        outer.active -= 1
                out = b'{"received": true}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = "http://127.0.0.1:%d/stripe/webhook" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def types(self):
        return [d["event"]["type"] for d in self.deliveries]


def verify_signature(header, body, secret, tolerance=300):
    """What a receiver does (Stripe's SDKs): any v1 over "<t>.<body>" with the secret, in time."""
    parts = [p.split("=", 1) for p in header.split(",")]
    t = int(dict(parts)["t"])
    expected = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return abs(time.time() - t) <= tolerance and any(
        hmac.compare_digest(expected, v) for k, v in parts if k == "v1")


def flush(timeout=10):
    r = ctl("POST", "webhooks/flush", {"timeout": timeout})
    assert r.status == 200, r.raw
    return r.json


def pay_session(**over):
    s = call("POST", "/v1/checkout/sessions", session_params(**over)).json
    return ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "paid"}).json


def types_of(events):
    return [e["type"] for e in events]


class WebhookBase(Base):
    SECRET = "whsec_test_5WbX5kEWLlfzsGNjH64I8lOOqUB6e9Hj"

    def receiver(self, **kw):
        r = Receiver(**kw)
        self.addCleanup(r.close)
        return r

    def endpoint(self, url, **kw):
        r = ctl("POST", "webhook_endpoints", dict({"url": url, "secret": self.SECRET}, **kw))
        self.assertEqual(r.status, 200, r.raw)
        return r.json

    def fast(self, **kw):
        cfg = dict({"retry_delays": [0.02, 0.05], "max_attempts": 4}, **kw)
        self.assertEqual(ctl("POST", "webhook_config", cfg).status, 200)


class WebhookDelivery(WebhookBase):
    def test_signed_delivery_in_order(self):
        rcv = self.receiver()
        ep = self.endpoint(rcv.url)
        self.assertEqual((ep["secret"], ep["enabled_events"], ep["object"]), (self.SECRET, ["*"], "webhook_endpoint"))
        pay_session()
        self.assertEqual(flush(), {"pending": 0, "failed": 0})
        events = ctl("GET", "events").json
        self.assertEqual(rcv.types(), types_of(events))
        for d, ev in zip(rcv.deliveries, events):
            h = d["headers"]
            self.assertTrue(verify_signature(h["stripe-signature"], d["body"], self.SECRET), h["stripe-signature"])
            self.assertFalse(verify_signature(h["stripe-signature"], d["body"] + b" ", self.SECRET))
            self.assertFalse(verify_signature(h["stripe-signature"], d["body"], "whsec_other"))
            self.assertRegex(h["stripe-signature"], r"^t=\d+,v1=[0-9a-f]{64}$")
            self.assertEqual(h["content-type"], "application/json; charset=utf-8")
            self.assertEqual(h["user-agent"], "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            self.assertEqual(d["path"], "/stripe/webhook")
            self.assertEqual(d["body"], json.dumps(d["event"], indent=2).encode())   # Stripe's formatting
            self.assertEqual(d["event"]["id"], ev["id"])
            self.assertEqual(d["event"]["data"], ev["data"])
            self.assertEqual(d["event"]["api_version"], emu.PINNED_API_VERSION)
            self.assertEqual(d["event"]["request"], {"id": None, "idempotency_key": None})
            self.assertFalse(d["event"]["livemode"])
        # every attempt is on record, and every event is delivered: pending_webhooks is 0 again
        log = ctl("GET", "deliveries").json
        self.assertEqual([(x["event_id"], x["attempt"], x["status"], x["endpoint"]) for x in log],
                         [(e["id"], 1, 200, ep["id"]) for e in events])
        self.assertEqual(log[0]["response_body"], '{"received": true}')
        self.assertEqual(ctl("GET", "deliveries?event_id=" + events[1]["id"]).json, [log[1]])
        self.assertEqual(call("GET", "/v1/events/" + events[0]["id"]).json["pending_webhooks"], 0)

    def test_api_version_request_and_secret_roll(self):
        rcv = self.receiver()
        self.endpoint(rcv.url, api_version="2024-06-20", extra_secrets=["whsec_old_secret_still_valid"])
        h = {"Idempotency-Key": "pi-1"}
        r = call("POST", "/v1/payment_intents", {"amount": 500, "currency": "usd"}, headers=h)
        flush()
        (d,) = rcv.deliveries
        self.assertEqual(d["event"]["api_version"], "2024-06-20")
        self.assertEqual(d["event"]["request"], {"id": r.headers["request-id"], "idempotency_key": "pi-1"})
        self.assertEqual(d["headers"]["stripe-signature"].count("v1="), 2)
        self.assertTrue(verify_signature(d["headers"]["stripe-signature"], d["body"], self.SECRET))
        self.assertTrue(verify_signature(d["headers"]["stripe-signature"], d["body"], "whsec_old_secret_still_valid"))
        # the stored event keeps the account's version
        self.assertEqual(call("GET", "/v1/events/" + d["event"]["id"]).json["api_version"], emu.PINNED_API_VERSION)
        # a replayed request makes no second event
        call("POST", "/v1/payment_intents", {"amount": 500, "currency": "usd"}, headers=h)
        flush()
        self.assertEqual(len(rcv.deliveries), 1)

    def test_generated_secret_and_stale_timestamp(self):
        rcv = self.receiver()
        ep = ctl("POST", "webhook_endpoints", {"url": rcv.url}).json
        self.assertRegex(ep["secret"], r"^whsec_[A-Za-z0-9]{32}$")
        ctl("POST", "webhook_config", {"timestamp_offset": -400})
        call("POST", "/v1/payment_intents", {"amount": 500, "currency": "usd"})
        flush()
        (d,) = rcv.deliveries
        sig = d["headers"]["stripe-signature"]
        self.assertTrue(verify_signature(sig, d["body"], ep["secret"], tolerance=500))
        self.assertFalse(verify_signature(sig, d["body"], ep["secret"]))

    def test_retries_until_2xx(self):
        self.fast()
        rcv = self.receiver(respond=lambda ev, n: 500 if n < 2 else 204)
        self.endpoint(rcv.url)
        pi = call("POST", "/v1/payment_intents", {"amount": 500, "currency": "usd"}).json
        ev = ctl("GET", "events").json[0]
        self.assertEqual(call("GET", "/v1/events/" + ev["id"]).json["pending_webhooks"], 1)
        self.assertEqual(flush(), {"pending": 0, "failed": 0})
        self.assertEqual([d["status"] for d in rcv.deliveries], [500, 500, 204])
        for d in rcv.deliveries:   # each attempt is signed anew
            self.assertTrue(verify_signature(d["headers"]["stripe-signature"], d["body"], self.SECRET))
        log = ctl("GET", "deliveries").json
        self.assertEqual([(x["attempt"], x["status"]) for x in log], [(1, 500), (2, 500), (3, 204)])
        self.assertEqual(log[0]["error"], "HTTP 500")
        self.assertGreaterEqual(log[2]["time"] - log[0]["time"], 0.06)
        self.assertEqual(call("GET", "/v1/events/" + ev["id"]).json["pending_webhooks"], 0)
        self.assertEqual(pi["id"], ev["data"]["object"]["id"])

    def test_gives_up_then_redelivery_and_delivery_success(self):
        self.fast(max_attempts=2)
        state = {"up": False}
        rcv = self.receiver(respond=lambda ev, n: 200 if state["up"] else 503)
        self.endpoint(rcv.url)
        pay_session()
        self.assertEqual(flush(), {"pending": 0, "failed": 4})
        self.assertEqual(len(rcv.deliveries), 8)
        failed = call("GET", "/v1/events", {"delivery_success": False}).json["data"]
        self.assertEqual(types_of(failed), ["checkout.session.completed", "payment_intent.succeeded",
                                            "charge.succeeded", "payment_intent.created"])
        self.assertEqual({e["pending_webhooks"] for e in failed}, {1})
        self.assertEqual(call("GET", "/v1/events", {"delivery_success": True}).json["data"], [])
        state["up"] = True
        for e in failed[:2]:
            self.assertEqual(ctl("POST", "events/%s/redeliver" % e["id"]).json, {"queued": 1})
        self.assertEqual(flush(), {"pending": 0, "failed": 2})
        self.assertEqual(len(call("GET", "/v1/events", {"delivery_success": False}).json["data"]), 2)
        self.assertTrue(ctl("GET", "deliveries?event_id=" + failed[0]["id"]).json[-1]["redelivery"])
        self.assertEqual(ctl("POST", "events/evt_nope/redeliver").status, 404)

    def test_connection_refused_and_timeout(self):
        self.fast(max_attempts=2)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        dead = "http://127.0.0.1:%d/hook" % sock.getsockname()[1]
        sock.close()
        ep = self.endpoint(dead)
        slow = self.receiver(delay=0.5)
        self.endpoint(slow.url, timeout=0.1)
        call("POST", "/v1/payment_intents", {"amount": 500, "currency": "usd"})
        self.assertEqual(flush(), {"pending": 0, "failed": 2})
        log = ctl("GET", "deliveries").json
        self.assertEqual(len(log), 4)
        self.assertTrue(all(x["status"] is None for x in log))
        refused = [x for x in log if x["endpoint"] == ep["id"]]
        self.assertIn("ConnectionRefused", refused[0]["error"])
        self.assertIn("timed out", [x for x in log if x["endpoint"] != ep["id"]][0]["error"])
        # non-loopback endpoints are never contacted
        ctl("POST", "reset")
        self.endpoint("http://example.com/hook")
        call("POST", "/v1/payment_intents", {"amount": 500, "currency": "usd"})
        self.assertEqual(flush(), {"pending": 0, "failed": 1})
        self.assertIn("loopback", ctl("GET", "deliveries").json[0]["error"])

    def test_shuffle_duplicate_concurrency(self):
        ctl("POST", "webhook_config", {"shuffle": True, "duplicate": 1.0})
        rcv = self.receiver()
        self.endpoint(rcv.url)
        for _ in range(3):
            pay_session()
        flush()
        events = ctl("GET", "events").json
        self.assertEqual(len(rcv.deliveries), 2 * len(events))
        got = [d["event"]["id"] for d in rcv.deliveries]
        self.assertEqual(sorted(set(got)), sorted(e["id"] for e in events))
        self.assertNotEqual(got, [e["id"] for e in events for _ in (0, 1)])   # 24 deliveries, not in order
        self.assertEqual(sum(1 for x in ctl("GET", "deliveries").json if x["duplicate"]), len(events))
        self.assertEqual({e["pending_webhooks"] for e in call("GET", "/v1/events", {"limit": 100}).json["data"]}, {0})
        # several deliveries to one endpoint at once
        ctl("POST", "reset")
        ctl("POST", "webhook_config", {"concurrency": 4})
        slow = self.receiver(delay=0.15)
        self.endpoint(slow.url)
        pay_session()
        flush()
        self.assertEqual(len(slow.deliveries), 4)
        self.assertGreaterEqual(slow.max_active, 2)

    def test_routing(self):
        a, b, c = self.receiver(), self.receiver(), self.receiver()
        self.endpoint(a.url, enabled_events=["checkout.session.completed", "charge.succeeded"])
        off = self.endpoint(b.url)
        ctl("POST", "webhook_endpoints/" + off["id"], {"disabled": True})
        self.endpoint(c.url, livemode=True)
        pay_session()
        s = call("POST", "/v1/checkout/sessions", session_params(), key=LIVE_KEY).json
        ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "paid"})
        flush()
        self.assertEqual(a.types(), ["charge.succeeded", "checkout.session.completed"])
        self.assertEqual(b.deliveries, [])
        self.assertEqual(len(c.deliveries), 4)
        self.assertTrue(all(d["event"]["livemode"] for d in c.deliveries))
        self.assertTrue(all(d["event"]["id"].startswith("evt_3") for d in c.deliveries))

    def test_control_validation(self):
        self.assertEqual(ctl("POST", "webhook_endpoints", {"secret": "whsec_x"}).status, 400)
        self.assertEqual(ctl("POST", "webhook_endpoints", {"url": "http://127.0.0.1:1/", "enabled_events": []}).status, 400)
        self.assertEqual(ctl("POST", "webhook_config", {"max_attempts": 0}).status, 400)
        self.assertEqual(ctl("POST", "webhook_config", {"duplicate": 2}).status, 400)
        self.assertEqual(ctl("POST", "webhook_config", {"retry": [1]}).status, 400)
        cfg = ctl("POST", "webhook_config", {"retry_delays": [0.1], "concurrency": 2}).json
        self.assertEqual((cfg["retry_delays"], cfg["concurrency"], cfg["max_attempts"]), ([0.1], 2, 8))
        ctl("POST", "reset")
        self.assertEqual(ctl("GET", "webhook_config").json, emu.DEFAULT_WEBHOOK_CONFIG)
        self.assertEqual(ctl("GET", "deliveries/pending").json, {"pending": 0, "failed": 0})


class WebhookEndpointsAPI(Base):
    def create(self, **over):
        p = dict({"url": "https://shop.example/stripe", "enabled_events": ["checkout.session.completed"]}, **over)
        return call("POST", "/v1/webhook_endpoints", p)

    def test_crud_and_secret_only_on_create(self):
        r = self.create(description="orders", metadata={"env": "ci"}, api_version="2026-10-28.endive",
                        enabled_events=["charge.refunded", "refund.failed", "invoice.paid"])
        self.assertEqual(r.status, 200, r.raw)
        ep = r.json
        self.assertRegex(ep["secret"], r"^whsec_[A-Za-z0-9]+$")
        self.assertRegex(ep["id"], r"^we_[A-Za-z0-9]+$")
        self.assertEqual((ep["status"], ep["api_version"], ep["description"], ep["metadata"], ep["livemode"]),
                         ("enabled", "2026-10-28.endive", "orders", {"env": "ci"}, False))
        got = call("GET", "/v1/webhook_endpoints/" + ep["id"]).json
        self.assertNotIn("secret", got)
        self.assertEqual(got, {k: v for k, v in ep.items() if k != "secret"})
        self.assertNotIn("secret", call("GET", "/v1/webhook_endpoints").json["data"][0])
        r = call("POST", "/v1/webhook_endpoints/" + ep["id"], {
            "url": "https://shop.example/v2", "enabled_events": ["*"], "disabled": True,
            "metadata": {"env": "", "team": "pay"}, "description": "new"})
        self.assertEqual(r.status, 200, r.raw)
        self.assertNotIn("secret", r.json)
        self.assertEqual((r.json["url"], r.json["enabled_events"], r.json["status"], r.json["metadata"],
                          r.json["description"]), ("https://shop.example/v2", ["*"], "disabled", {"team": "pay"}, "new"))
        self.assertEqual(call("POST", "/v1/webhook_endpoints/" + ep["id"], {"disabled": False}).json["status"], "enabled")
        r = call("DELETE", "/v1/webhook_endpoints/" + ep["id"])
        self.assertEqual(r.json, {"deleted": True, "id": ep["id"], "object": "webhook_endpoint"})
        self.assertStripeError(call("GET", "/v1/webhook_endpoints/" + ep["id"]), 404, code="resource_missing")
        self.assertStripeError(call("DELETE", "/v1/webhook_endpoints/" + ep["id"]), 404)

    def test_validation(self):
        self.assertStripeError(call("POST", "/v1/webhook_endpoints", {"url": "https://x.example/h"}), 400,
                               code="parameter_missing", param="enabled_events")
        self.assertStripeError(self.create(enabled_events=["charge.exploded"]), 400, param="enabled_events[0]")
        self.assertStripeError(self.create(url="not a url"), 400, param="url")
        self.assertStripeError(self.create(api_version="yesterday"), 400, param="api_version")
        self.assertStripeError(self.create(colour="red"), 400, code="parameter_unknown", param="colour")
        self.assertEqual(call("GET", "/v1/webhook_endpoints").json["data"], [])

    def test_pagination_and_limit_of_16(self):
        ctl("POST", "webhook_endpoints", {"url": "http://127.0.0.1:9/control"})
        ids = [self.create(description=str(i)).json["id"] for i in range(15)]
        r = self.create()
        self.assertStripeError(r, 400)
        self.assertIn("maximum of 16 webhook endpoints", r.error["message"])
        # a live-mode key has its own 16
        self.assertEqual(call("POST", "/v1/webhook_endpoints", {"url": "https://x.example/h",
                                                                "enabled_events": ["*"]}, key=LIVE_KEY).status, 200)
        all_ids = [e["id"] for e in call("GET", "/v1/webhook_endpoints", {"limit": 100}).json["data"]]
        self.assertEqual(len(all_ids), 16)
        self.assertEqual(all_ids[:15], ids[::-1])   # newest first, the control one last
        page = call("GET", "/v1/webhook_endpoints", {"limit": 5}).json
        self.assertEqual(([e["id"] for e in page["data"]], page["has_more"]), (all_ids[:5], True))
        page = call("GET", "/v1/webhook_endpoints", {"limit": 10, "starting_after": all_ids[9]}).json
        self.assertEqual(([e["id"] for e in page["data"]], page["has_more"]), (all_ids[10:], False))
        page = call("GET", "/v1/webhook_endpoints", {"limit": 3, "ending_before": all_ids[5]}).json
        self.assertEqual(([e["id"] for e in page["data"]], page["has_more"]), (all_ids[2:5], True))
        self.assertStripeError(call("GET", "/v1/webhook_endpoints", {"limit": 101}), 400, param="limit")
        call("DELETE", "/v1/webhook_endpoints/" + ids[0])
        self.assertEqual(self.create().status, 200)
        self.assertEqual(ctl("POST", "webhook_endpoints", {"url": "http://127.0.0.1:9/x"}).status, 400)


class EventsList(Base):
    def test_newest_first_and_filters(self):
        pay_session()
        ctl("POST", "clock", {"advance": 5})
        call("POST", "/v1/payment_intents", {"amount": 500, "currency": "usd"})
        evs = ctl("GET", "events").json
        listed = call("GET", "/v1/events", {"limit": 100}).json
        self.assertEqual([e["id"] for e in listed["data"]], [e["id"] for e in evs[::-1]])
        page = call("GET", "/v1/events", {"limit": 2}).json
        self.assertEqual(([e["id"] for e in page["data"]], page["has_more"]), ([evs[4]["id"], evs[3]["id"]], True))
        page = call("GET", "/v1/events", {"limit": 2, "starting_after": evs[3]["id"]}).json
        self.assertEqual([e["id"] for e in page["data"]], [evs[2]["id"], evs[1]["id"]])
        newer = call("GET", "/v1/events", {"created": {"gte": evs[-1]["created"]}}).json["data"]
        self.assertEqual([e["id"] for e in newer], [evs[-1]["id"]])
        self.assertEqual(types_of(call("GET", "/v1/events", {"type": "charge.succeeded"}).json["data"]),
                         ["charge.succeeded"])
        for e in evs:
            self.assertIsInstance(e["created"], int)
        self.assertEqual(call("GET", "/v1/events", {"limit": 100}, key=LIVE_KEY).json["data"], [])

    def test_walk_back_then_forward(self):
        """What sync_events relies on: page back to the oldest page with starting_after, then
        forward with ending_before (the closest newer page, has_more for newer still), under
        created[gte]; an event made meanwhile shows up at the newest end."""
        for amount in range(100, 107):
            call("POST", "/v1/payment_intents", {"amount": amount, "currency": "usd"})
        ctl("POST", "clock", {"advance": 3})
        for amount in range(200, 205):
            call("POST", "/v1/payment_intents", {"amount": amount, "currency": "usd"})
        evs = ctl("GET", "events").json                     # oldest first
        since = evs[7]["created"]
        newer = [e["id"] for e in evs if e["created"] >= since]
        self.assertEqual(len(newer), 5)
        q = {"limit": 2, "created": {"gte": since}}
        back, page = [], call("GET", "/v1/events", q).json
        while True:
            back.append([e["id"] for e in page["data"]])
            if not page["has_more"]:
                break
            page = call("GET", "/v1/events", dict(q, starting_after=back[-1][-1])).json
        self.assertEqual(back, [newer[:2:-1], newer[2:0:-1], newer[:1]])
        call("POST", "/v1/payment_intents", {"amount": 300, "currency": "usd"})
        forward, cursor = [], newer[0]
        while True:
            page = call("GET", "/v1/events", dict(q, ending_before=cursor)).json
            forward.append([e["id"] for e in page["data"]])
            if not page["has_more"]:
                break
            cursor = page["data"][0]["id"]
        latest = ctl("GET", "events").json[-1]["id"]
        self.assertEqual(forward, [newer[2:0:-1], newer[4:2:-1], [latest]])


# --------------------------------------------------------------------------------------
# Payments: what the buyer actions emit
# --------------------------------------------------------------------------------------

class PaymentEvents(Base):
    def test_failed_and_async(self):
        s = call("POST", "/v1/checkout/sessions", session_params()).json
        ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "failed"})
        self.assertEqual(types_of(ctl("GET", "events").json),
                         ["payment_intent.created", "charge.failed", "payment_intent.payment_failed"])
        failed = ctl("GET", "events?type=payment_intent.payment_failed").json[0]["data"]["object"]
        self.assertEqual(failed["metadata"], {"order_id": "42"})
        self.assertEqual(failed["last_payment_error"]["code"], "card_declined")
        ctl("POST", "reset")
        s = call("POST", "/v1/checkout/sessions", session_params()).json
        ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "async_pending"})
        ctl("POST", "checkout/sessions/%s/async_payment" % s["id"], {"outcome": "failed"})
        evs = ctl("GET", "events").json
        self.assertEqual(types_of(evs), [
            "payment_intent.created", "payment_intent.processing", "charge.pending", "checkout.session.completed",
            "charge.failed", "payment_intent.payment_failed", "checkout.session.async_payment_failed"])
        self.assertEqual(evs[3]["data"]["object"]["payment_status"], "unpaid")

    def test_expire_cancels_payment_intent(self):
        s = call("POST", "/v1/checkout/sessions", session_params()).json
        ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "failed"})
        call("POST", "/v1/checkout/sessions/%s/expire" % s["id"])
        evs = ctl("GET", "events").json
        self.assertEqual(types_of(evs)[-2:], ["payment_intent.canceled", "checkout.session.expired"])
        self.assertEqual(evs[-2]["data"]["object"]["status"], "canceled")
        self.assertIsNotNone(evs[-2]["data"]["object"]["canceled_at"])
        s2 = call("POST", "/v1/checkout/sessions", session_params()).json
        call("POST", "/v1/checkout/sessions/%s/expire" % s2["id"])
        self.assertEqual(types_of(ctl("GET", "events").json)[-1], "checkout.session.expired")

    def test_payment_intent_cancel(self):
        pi = call("POST", "/v1/payment_intents", {"amount": 900, "currency": "usd", "metadata": {"o": "9"}}).json
        r = call("POST", "/v1/payment_intents/%s/cancel" % pi["id"], {"cancellation_reason": "requested_by_customer"})
        self.assertEqual((r.json["status"], r.json["cancellation_reason"]), ("canceled", "requested_by_customer"))
        ev = ctl("GET", "events").json[-1]
        self.assertEqual((ev["type"], ev["data"]["object"]["metadata"]), ("payment_intent.canceled", {"o": "9"}))
        r = call("POST", "/v1/payment_intents/%s/cancel" % pi["id"])
        self.assertStripeError(r, 400, code="payment_intent_unexpected_state")
        ok = pay_session()
        self.assertStripeError(call("POST", "/v1/payment_intents/%s/cancel" % ok["payment_intent"]), 400,
                               code="payment_intent_unexpected_state")
        self.assertStripeError(call("POST", "/v1/payment_intents/pi_nope/cancel"), 404)


# --------------------------------------------------------------------------------------
# Refunds
# --------------------------------------------------------------------------------------

class Refunds(Base):
    def paid_pi(self):
        return call("GET", "/v1/payment_intents/" + pay_session()["payment_intent"]).json

    def test_partial_full_and_limits(self):
        pi = self.paid_pi()
        before = len(ctl("GET", "events").json)
        r = call("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1000, "reason": "requested_by_customer",
                                         "metadata": {"stripepay_refund_id": "5"}})
        self.assertEqual(r.status, 200, r.raw)
        re1 = r.json
        self.assertEqual((re1["status"], re1["amount"], re1["charge"], re1["payment_intent"], re1["metadata"],
                          re1["currency"], re1["reason"]),
                         ("succeeded", 1000, pi["latest_charge"], pi["id"], {"stripepay_refund_id": "5"}, "usd",
                          "requested_by_customer"))
        evs = ctl("GET", "events").json[before:]
        self.assertEqual(types_of(evs), ["refund.created", "charge.refunded"])
        ch = evs[1]["data"]["object"]
        self.assertEqual((ch["amount_refunded"], ch["refunded"], evs[1]["data"]["previous_attributes"]),
                         (1000, False, {"amount_refunded": 0}))
        self.assertNotIn("refunds", ch)   # pinned version: not embedded
        self.assertEqual(evs[1]["request"]["id"], r.headers["request-id"])
        r = call("POST", "/v1/refunds", {"charge": pi["latest_charge"], "amount": 2001})
        self.assertStripeError(r, 400, code="amount_too_large", param="amount",
                               message="Refund amount ($20.01) is greater than unrefunded amount on charge ($20.00)")
        re2 = call("POST", "/v1/refunds", {"payment_intent": pi["id"]}).json   # the rest
        self.assertEqual(re2["amount"], 2000)
        ch = call("GET", "/v1/charges/" + pi["latest_charge"]).json
        self.assertEqual((ch["amount_refunded"], ch["refunded"]), (3000, True))
        self.assertEqual(ctl("GET", "events").json[-1]["data"]["previous_attributes"],
                         {"amount_refunded": 1000, "refunded": False})
        r = call("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1})
        self.assertStripeError(r, 400, code="charge_already_refunded",
                               message="Charge %s has already been refunded." % ch["id"])
        listed = call("GET", "/v1/refunds", {"payment_intent": pi["id"], "limit": 100}).json
        self.assertEqual([x["id"] for x in listed["data"]], [re2["id"], re1["id"]])
        self.assertEqual(call("GET", "/v1/refunds/" + re1["id"]).json, re1)
        expanded = call("GET", "/v1/charges/" + ch["id"], {"expand": ["refunds"]}).json
        self.assertEqual([x["id"] for x in expanded["refunds"]["data"]], [re2["id"], re1["id"]])
        self.assertStripeError(call("GET", "/v1/refunds/re_nope"), 404, code="resource_missing")

    def test_unrefundable(self):
        pi = call("POST", "/v1/payment_intents", {"amount": 900, "currency": "usd"}).json
        r = call("POST", "/v1/refunds", {"payment_intent": pi["id"]})
        self.assertStripeError(r, 400, message="This PaymentIntent (%s) does not have a successful charge to "
                                               "refund." % pi["id"])
        self.assertStripeError(call("POST", "/v1/refunds", {"payment_intent": "pi_nope"}), 400,
                               code="resource_missing", param="payment_intent")
        self.assertStripeError(call("POST", "/v1/refunds", {"amount": 100}), 400, code="parameter_missing")
        paid = self.paid_pi()
        self.assertStripeError(call("POST", "/v1/refunds", {"payment_intent": paid["id"], "amount": 0}), 400,
                               param="amount")
        self.assertStripeError(call("POST", "/v1/refunds", {"payment_intent": paid["id"], "reason": "bored"}), 400,
                               param="reason")
        self.assertStripeError(call("POST", "/v1/refunds", {"payment_intent": paid["id"]}, key=LIVE_KEY), 400,
                               code="resource_missing")
        self.assertEqual(self.objects("refund"), [])

    def test_pending_settle_and_failure_after_success(self):
        pi = self.paid_pi()
        self.assertEqual(ctl("POST", "refunds/next_status", {"status": "pending"}).status, 200)
        pending = call("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 500}).json
        self.assertEqual(pending["status"], "pending")
        self.assertEqual(call("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 500}).json["status"],
                         "succeeded")   # next_status is for one refund
        n = len(ctl("GET", "events").json)
        r = ctl("POST", "refunds/%s/settle" % pending["id"], {"outcome": "succeeded"})
        self.assertEqual(r.json["status"], "succeeded")
        evs = ctl("GET", "events").json[n:]
        self.assertEqual([(e["type"], e["data"]["previous_attributes"]) for e in evs],
                         [("refund.updated", {"status": "pending"})])
        # a refund that had succeeded fails later: the money is back on the charge
        n = len(ctl("GET", "events").json)
        r = ctl("POST", "refunds/%s/settle" % pending["id"], {"outcome": "failed"})
        self.assertEqual((r.json["status"], r.json["failure_reason"]), ("failed", "expired_or_canceled_card"))
        self.assertTrue(r.json["failure_balance_transaction"].startswith("txn_"))
        evs = ctl("GET", "events").json[n:]
        self.assertEqual(types_of(evs), ["refund.updated", "refund.failed"])
        self.assertEqual(evs[1]["data"]["previous_attributes"], {"status": "succeeded"})
        self.assertEqual(call("GET", "/v1/charges/" + pi["latest_charge"]).json["amount_refunded"], 500)
        self.assertEqual(ctl("POST", "refunds/%s/settle" % pending["id"], {"outcome": "succeeded"}).status, 400)
        ctl("POST", "refunds/next_status", {"status": "pending"})
        p2 = call("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 2500}).json
        self.assertEqual(call("GET", "/v1/charges/" + pi["latest_charge"]).json["amount_refunded"], 3000)
        ctl("POST", "refunds/%s/settle" % p2["id"], {"outcome": "canceled"})
        self.assertEqual(call("GET", "/v1/charges/" + pi["latest_charge"]).json["amount_refunded"], 500)
        self.assertEqual(ctl("POST", "refunds/%s/settle" % p2["id"], {"outcome": "bogus"}).status, 400)
        self.assertEqual(ctl("POST", "refunds/re_nope/settle", {"outcome": "failed"}).status, 404)

    def test_idempotency(self):
        pi = self.paid_pi()
        h = {"Idempotency-Key": "refund-7-0-1000"}
        p = {"payment_intent": pi["id"], "amount": 1000, "metadata": {"stripepay_refund_id": "5"}}
        r1 = call("POST", "/v1/refunds", p, headers=h)
        r2 = call("POST", "/v1/refunds", p, headers=h)
        self.assertEqual((r2.json, r2.headers.get("idempotent-replayed")), (r1.json, "true"))
        p["metadata"] = {"stripepay_refund_id": "6"}
        self.assertStripeError(call("POST", "/v1/refunds", p, headers=h), 400, type_="idempotency_error")
        self.assertEqual(len(self.objects("refund")), 1)
        self.assertEqual(types_of(ctl("GET", "events").json).count("refund.created"), 1)

    def test_bank_debit_refund_starts_pending(self):
        s = call("POST", "/v1/checkout/sessions", session_params()).json
        ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "async_pending"})
        ctl("POST", "checkout/sessions/%s/async_payment" % s["id"], {"outcome": "succeeded"})
        pi = call("GET", "/v1/checkout/sessions/" + s["id"]).json["payment_intent"]
        re_ = call("POST", "/v1/refunds", {"payment_intent": pi}).json
        self.assertEqual((re_["status"], re_["destination_details"]["type"]), ("pending", "us_bank_transfer"))

    def test_dashboard_refund(self):
        pi = self.paid_pi()
        r = ctl("POST", "refunds", {"payment_intent": pi["id"], "amount": 700})
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual((r.json["amount"], r.json["metadata"], r.json["status"]), (700, {}, "succeeded"))
        evs = ctl("GET", "events").json[-2:]
        self.assertEqual(types_of(evs), ["refund.created", "charge.refunded"])
        self.assertEqual(evs[0]["request"], {"id": None, "idempotency_key": None})
        r = ctl("POST", "refunds", {"payment_intent": pi["id"], "amount": 5000})
        self.assertEqual(r.status, 400)
        self.assertIn("greater than unrefunded amount", r.json["error"])


# --------------------------------------------------------------------------------------
# Prices and subscriptions
# --------------------------------------------------------------------------------------

def monthly_price(test, amount=2000, **over):
    p = dict({"currency": "usd", "unit_amount": amount, "recurring": {"interval": "month"},
              "product_data": {"name": "Monthly plan"}}, **over)
    r = call("POST", "/v1/prices", p)
    test.assertEqual(r.status, 200, r.raw)
    return r.json


def subscribe(test, outcome="paid", metadata=None, price=None):
    price = price or monthly_price(test)
    r = call("POST", "/v1/checkout/sessions", {
        "mode": "subscription", "success_url": "https://shop.example/ok", "client_reference_id": "43",
        "line_items": [{"price": price["id"], "quantity": 1}], "metadata": {"order_id": "43"},
        "subscription_data": {"metadata": metadata or {"order_id": "43", "stripepay_recurring_payment_id": "3"}}})
    test.assertEqual(r.status, 200, r.raw)
    done = ctl("POST", "checkout/sessions/%s/complete" % r.json["id"], {"outcome": outcome})
    test.assertEqual(done.status, 200, done.raw)
    return call("GET", "/v1/subscriptions/" + done.json["subscription"]).json


class Prices(Base):
    def test_create_and_get(self):
        price = monthly_price(self, metadata={"plan": "m"}, nickname="Monthly")
        self.assertEqual((price["type"], price["recurring"]["interval"], price["recurring"]["interval_count"],
                          price["active"], price["unit_amount"], price["metadata"], price["nickname"]),
                         ("recurring", "month", 1, True, 2000, {"plan": "m"}, "Monthly"))
        self.assertEqual(types_of(ctl("GET", "events").json), ["product.created", "plan.created", "price.created"])
        self.assertEqual(call("GET", "/v1/prices/" + price["id"]).json, price)
        one = call("POST", "/v1/prices", {"currency": "eur", "unit_amount": 500, "product": price["product"]}).json
        self.assertEqual((one["type"], one["recurring"], one["product"]), ("one_time", None, price["product"]))
        prod = call("GET", "/v1/prices/" + one["id"], {"expand": ["product"]}).json["product"]
        self.assertEqual(prod["name"], "Monthly plan")

    def test_validation(self):
        self.assertStripeError(call("POST", "/v1/prices", {"currency": "usd", "unit_amount": 5}), 400,
                               code="parameter_missing", param="product")
        self.assertStripeError(call("POST", "/v1/prices", {"currency": "usd", "unit_amount": 5, "product": "prod_x"}),
                               400, code="resource_missing", param="product")
        self.assertStripeError(call("POST", "/v1/prices", {"currency": "usd", "product_data": {"name": "x"}}), 400,
                               code="parameter_missing", param="unit_amount")
        self.assertStripeError(call("POST", "/v1/prices", {"currency": "usd", "unit_amount": 5, "product_data": {
            "name": "x"}, "recurring": {"interval": "month", "interval_count": 13}}), 400,
                               param="recurring[interval_count]")
        self.assertStripeError(call("POST", "/v1/prices", {"currency": "usd", "unit_amount": 5, "product_data": {
            "name": "x"}, "recurring": {"interval": "fortnight"}}), 400, param="recurring[interval]")
        self.assertStripeError(call("POST", "/v1/prices", {"currency": "usd", "product_data": {"name": "x"},
                                                           "billing_scheme": "tiered", "tiers_mode": "graduated"}), 400)
        self.assertStripeError(call("GET", "/v1/prices/price_nope"), 404, code="resource_missing")

    def test_checkout_subscription_mode_needs_recurring_price(self):
        base = {"mode": "subscription", "success_url": "https://x.example/ok"}
        r = call("POST", "/v1/checkout/sessions", dict(base, line_items=[{"price": "price_x", "quantity": 1}]))
        self.assertStripeError(r, 400, code="resource_missing", message="No such price: 'price_x'")
        price = monthly_price(self)
        one = call("POST", "/v1/prices", {"currency": "usd", "unit_amount": 500, "product": price["product"]}).json
        r = call("POST", "/v1/checkout/sessions", dict(base, line_items=[{"price": one["id"], "quantity": 1}]))
        self.assertStripeError(r, 400, message="You must provide at least one recurring price in `subscription` "
                                               "mode when using prices.")
        self.assertEqual(self.objects("checkout.session"), [])


class Subscriptions(Base):
    CREATE_EVENTS = ["customer.created", "customer.subscription.created", "invoice.created", "invoice.finalized",
                     "payment_intent.created", "charge.succeeded", "payment_intent.succeeded",
                     "invoice_payment.paid", "invoice.paid", "invoice.payment_succeeded",
                     "checkout.session.completed", "customer.subscription.updated"]
    CYCLE_EVENTS = ["customer.subscription.updated", "invoice.created", "invoice.finalized", "payment_intent.created",
                    "charge.succeeded", "payment_intent.succeeded", "invoice_payment.paid", "invoice.paid",
                    "invoice.payment_succeeded"]

    def new_events(self, since):
        return ctl("GET", "events").json[since:]

    def test_checkout_creates_subscription(self):
        price = monthly_price(self)
        n = len(ctl("GET", "events").json)
        sub = subscribe(self, price=price)
        evs = self.new_events(n)
        self.assertEqual(types_of(evs), self.CREATE_EVENTS)
        by = {e["type"]: e["data"] for e in evs}
        md = {"order_id": "43", "stripepay_recurring_payment_id": "3"}
        self.assertEqual((sub["status"], sub["metadata"], sub["latest_invoice"]), ("active", md,
                                                                                  by["invoice.paid"]["object"]["id"]))
        self.assertEqual(by["customer.subscription.created"]["object"]["status"], "incomplete")
        self.assertEqual(by["customer.subscription.updated"]["previous_attributes"], {"status": "incomplete"})
        item = sub["items"]["data"][0]
        self.assertEqual((item["price"]["id"], item["quantity"], item["plan"]["id"]), (price["id"], 1, price["id"]))
        self.assertGreater(item["current_period_end"], item["current_period_start"])
        self.assertNotIn("current_period_end", sub)   # pinned: the period is on the items
        inv = by["invoice.paid"]["object"]
        self.assertEqual((inv["billing_reason"], inv["status"], inv["amount_paid"], inv["amount_due"],
                          inv["amount_remaining"], inv["currency"], inv["customer"]),
                         ("subscription_create", "paid", 2000, 2000, 0, "usd", sub["customer"]))
        self.assertEqual(inv["parent"], {"quote_details": None, "type": "subscription_details",
                                         "subscription_details": {"metadata": md, "subscription": sub["id"]}})
        for gone in ("subscription", "payment_intent", "charge", "subscription_details"):
            self.assertNotIn(gone, inv)     # the pinned version: parent and InvoicePayments instead
        self.assertNotIn("payments", inv)
        self.assertIsNone(inv["customer_account"])
        self.assertEqual(sub["billing_mode"], {"flexible": {"proration_discounts": "included"}, "type": "flexible"})
        self.assertIsNone(sub["customer_account"])
        line = inv["lines"]["data"][0]
        self.assertEqual(line["period"], {"start": item["current_period_start"], "end": item["current_period_end"]})
        self.assertEqual(line["parent"]["subscription_item_details"]["subscription"], sub["id"])
        self.assertEqual(line["pricing"]["price_details"]["price"], price["id"])
        self.assertEqual(by["invoice.created"]["object"]["status"], "draft")
        self.assertEqual(by["invoice.finalized"]["object"]["status"], "open")
        self.assertRegex(by["invoice.finalized"]["object"]["number"], r"^[A-Z0-9]+-0001$")
        session = by["checkout.session.completed"]["object"]
        self.assertEqual((session["mode"], session["subscription"], session["payment_status"], session["customer"],
                          session["payment_intent"]), ("subscription", sub["id"], "paid", sub["customer"], None))
        pays = call("GET", "/v1/invoices/" + inv["id"], {"expand": ["payments"]}).json["payments"]["data"]
        pi_id = by["payment_intent.succeeded"]["object"]["id"]
        self.assertEqual([(p["payment"], p["status"], p["amount_paid"]) for p in pays],
                         [({"payment_intent": pi_id, "type": "payment_intent"}, "paid", 2000)])
        self.assertEqual(by["payment_intent.succeeded"]["object"]["customer"], sub["customer"])
        self.assertEqual(call("GET", "/v1/subscriptions/" + sub["id"], {"expand": ["latest_invoice"]}).json[
            "latest_invoice"]["id"], inv["id"])
        cust = by["customer.created"]["object"]
        self.assertEqual((cust["id"], cust["email"]), (sub["customer"], "buyer@example.com"))

    def test_async_first_payment(self):
        n = len(ctl("GET", "events").json)
        sub = subscribe(self, outcome="async_pending")
        self.assertEqual(sub["status"], "incomplete")
        self.assertEqual(types_of(self.new_events(n))[-4:], ["payment_intent.created", "payment_intent.processing",
                                                             "charge.pending", "checkout.session.completed"])
        cs = self.objects("checkout.session")[0]
        n = len(ctl("GET", "events").json)
        ctl("POST", "checkout/sessions/%s/async_payment" % cs["id"], {"outcome": "succeeded"})
        self.assertEqual(types_of(self.new_events(n)), [
            "charge.succeeded", "payment_intent.succeeded", "invoice_payment.paid", "invoice.paid", "invoice.payment_succeeded",
            "customer.subscription.updated", "checkout.session.async_payment_succeeded"])
        self.assertEqual(call("GET", "/v1/subscriptions/" + sub["id"]).json["status"], "active")

    def test_renewals(self):
        sub = subscribe(self)
        start, end = sub["items"]["data"][0]["current_period_start"], sub["items"]["data"][0]["current_period_end"]
        n = len(ctl("GET", "events").json)
        r = ctl("POST", "subscriptions/%s/renew" % sub["id"])
        self.assertEqual(r.status, 200, r.raw)
        self.assertGreaterEqual(ctl("GET", "clock").json["now"], end)
        evs = self.new_events(n)
        self.assertEqual(types_of(evs), self.CYCLE_EVENTS)
        item = r.json["items"]["data"][0]
        self.assertEqual(item["current_period_start"], end)
        self.assertGreater(item["current_period_end"], end)
        upd = evs[0]["data"]
        self.assertEqual(upd["previous_attributes"]["items"]["data"][0]["current_period_start"], start)
        self.assertEqual(upd["previous_attributes"]["latest_invoice"], sub["latest_invoice"])
        inv = evs[7]["data"]["object"]
        self.assertEqual((inv["billing_reason"], inv["amount_paid"], inv["period_start"], inv["period_end"]),
                         ("subscription_cycle", 2000, start, end))
        self.assertEqual(inv["lines"]["data"][0]["period"], {"start": end, "end": item["current_period_end"]})
        self.assertGreaterEqual(evs[0]["created"], end)
        self.assertRegex(evs[2]["data"]["object"]["number"], r"-0002$")
        # a declined renewal: past_due
        n = len(ctl("GET", "events").json)
        r = ctl("POST", "subscriptions/%s/fail_renewal" % sub["id"])
        evs = self.new_events(n)
        self.assertEqual(types_of(evs), [
            "customer.subscription.updated", "invoice.created", "invoice.finalized", "payment_intent.created",
            "charge.failed", "payment_intent.payment_failed", "invoice.payment_failed", "customer.subscription.updated"])
        self.assertEqual((r.json["status"], evs[-1]["data"]["previous_attributes"]), ("past_due", {"status": "active"}))
        failed_inv = evs[6]["data"]["object"]
        self.assertEqual((failed_inv["status"], failed_inv["amount_paid"], failed_inv["attempt_count"]), ("open", 0, 1))
        self.assertIsNotNone(failed_inv["next_payment_attempt"])
        # the next renewal is paid: active again
        r = ctl("POST", "subscriptions/%s/renew" % sub["id"])
        self.assertEqual(r.json["status"], "active")
        self.assertEqual(ctl("GET", "events").json[-1]["data"]["previous_attributes"], {"status": "past_due"})

    def test_cancel_at_period_end(self):
        sub = subscribe(self)
        end = sub["items"]["data"][0]["current_period_end"]
        n = len(ctl("GET", "events").json)
        r = call("POST", "/v1/subscriptions/" + sub["id"], {"cancel_at_period_end": True})
        self.assertEqual((r.json["status"], r.json["cancel_at_period_end"], r.json["cancel_at"]), ("active", True, end))
        self.assertIsNotNone(r.json["canceled_at"])
        (ev,) = self.new_events(n)
        self.assertEqual(ev["type"], "customer.subscription.updated")
        self.assertEqual({k: ev["data"]["previous_attributes"][k] for k in ("cancel_at_period_end", "cancel_at",
                                                                           "canceled_at")},
                         {"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None})
        r = call("POST", "/v1/subscriptions/" + sub["id"], {"cancel_at_period_end": False})
        self.assertEqual((r.json["cancel_at_period_end"], r.json["cancel_at"], r.json["canceled_at"]), (False, None, None))
        n = len(ctl("GET", "events").json)
        call("POST", "/v1/subscriptions/" + sub["id"], {"cancel_at_period_end": False, "metadata": {"a": "b"}})
        self.assertEqual(self.new_events(n)[0]["data"]["previous_attributes"], {"metadata": {"a": None}})
        call("POST", "/v1/subscriptions/" + sub["id"], {"cancel_at_period_end": True})
        n = len(ctl("GET", "events").json)
        r = ctl("POST", "subscriptions/%s/renew" % sub["id"])
        self.assertEqual((r.json["status"], r.json["ended_at"]), ("canceled", end))
        self.assertEqual(types_of(self.new_events(n)), ["customer.subscription.deleted"])
        r = call("DELETE", "/v1/subscriptions/" + sub["id"])
        self.assertStripeError(r, 404, code="resource_missing", message="No such subscription: '%s'" % sub["id"])
        r = call("POST", "/v1/subscriptions/" + sub["id"], {"cancel_at_period_end": False})
        self.assertStripeError(r, 400, message="A canceled subscription can only update its cancellation_details "
                                               "and metadata.")
        self.assertEqual(call("POST", "/v1/subscriptions/" + sub["id"], {"metadata": {"x": "y"}}).status, 200)
        self.assertEqual(ctl("POST", "subscriptions/%s/renew" % sub["id"]).status, 400)

    def update(self, sub, params, status=200):
        n = len(ctl("GET", "events").json)
        r = call("POST", "/v1/subscriptions/" + sub["id"], params)
        self.assertEqual(r.status, status, r.raw)
        return r.json, self.new_events(n)

    def test_cancel_at_forms(self):
        sub = subscribe(self)
        end = sub["items"]["data"][0]["current_period_end"]
        now = ctl("GET", "clock").json["now"]
        for value in ("min_period_end", "max_period_end", "max_billed_until"):
            s, evs = self.update(sub, {"cancel_at": value})
            self.assertEqual((s["cancel_at"], s["cancel_at_period_end"], s["status"]), (end, False, "active"))
            self.assertEqual(s["cancellation_details"]["reason"], "cancellation_requested")
            if value == "min_period_end":
                (ev,) = evs
                self.assertEqual(ev["type"], "customer.subscription.updated")
                prev = ev["data"]["previous_attributes"]
                self.assertEqual((prev["cancel_at"], prev["canceled_at"]), (None, None))
                self.assertNotIn("cancel_at_period_end", prev)   # it stays false
                self.assertIsNotNone(ev["request"]["id"])
            else:
                self.assertEqual(evs, [])                          # nothing changed
        s, (ev,) = self.update(sub, {"cancel_at": now + 3 * 86400})
        self.assertEqual((s["cancel_at"], ev["data"]["previous_attributes"]["cancel_at"]), (now + 3 * 86400, end))
        s, (ev,) = self.update(sub, {"cancel_at": ""})
        self.assertEqual((s["cancel_at"], s["canceled_at"], s["cancel_at_period_end"]), (None, None, False))
        self.assertEqual(ev["data"]["previous_attributes"]["cancel_at"], now + 3 * 86400)
        self.assertIsNone(s["cancellation_details"]["reason"])
        # cancel_at_period_end=true: cancel_at is the period end as well
        s, (ev,) = self.update(sub, {"cancel_at_period_end": True})
        self.assertEqual((s["cancel_at"], s["cancel_at_period_end"]), (end, True))
        self.assertEqual({k: ev["data"]["previous_attributes"][k] for k in ("cancel_at", "cancel_at_period_end")},
                         {"cancel_at": None, "cancel_at_period_end": False})
        # a date instead: cancel_at_period_end goes false
        s, (ev,) = self.update(sub, {"cancel_at": now + 86400})
        self.assertEqual((s["cancel_at"], s["cancel_at_period_end"]), (now + 86400, False))
        self.assertEqual(ev["data"]["previous_attributes"]["cancel_at_period_end"], True)
        # cancel_at_period_end=false alone leaves a dated cancel alone
        s, evs = self.update(sub, {"cancel_at_period_end": False})
        self.assertEqual((s["cancel_at"], evs), (now + 86400, []))
        for bad, param in (({"cancel_at": "period_end"}, "cancel_at"), ({"cancel_at": now - 10}, "cancel_at"),
                           ({"cancel_at": "12.5"}, "cancel_at")):
            self.assertStripeError(call("POST", "/v1/subscriptions/" + sub["id"], bad), 400, param=param)
        self.assertStripeError(call("POST", "/v1/subscriptions/" + sub["id"], {
            "cancel_at": "min_period_end", "cancel_at_period_end": True}), 400, code="parameters_exclusive")

    def test_resume_clears_either_schedule(self):
        """What stripe_resume_subscription sends: cancel_at_period_end=false and cancel_at=."""
        sub = subscribe(self)
        end = sub["items"]["data"][0]["current_period_end"]
        resume = "cancel_at_period_end=false&cancel_at="
        self.update(sub, {"cancel_at_period_end": True})
        s, (ev,) = self.update(sub, resume)
        self.assertEqual((s["cancel_at"], s["cancel_at_period_end"], s["canceled_at"]), (None, False, None))
        prev = ev["data"]["previous_attributes"]
        self.assertEqual((prev["cancel_at"], prev["cancel_at_period_end"]), (end, True))
        self.update(sub, {"cancel_at": "min_period_end"})
        s, (ev,) = self.update(sub, resume)
        self.assertEqual((s["cancel_at"], s["cancel_at_period_end"]), (None, False))
        self.assertEqual(ev["data"]["previous_attributes"]["cancel_at"], end)
        self.assertNotIn("cancel_at_period_end", ev["data"]["previous_attributes"])
        s, evs = self.update(sub, resume)
        self.assertEqual(evs, [])                                  # nothing to undo
        self.assertEqual(ctl("GET", "requests").json[-1]["params"], {"cancel_at_period_end": "false", "cancel_at": ""})

    def test_cancel_at_date_ends_it_when_the_clock_passes(self):
        sub = subscribe(self)
        start, end = sub["items"]["data"][0]["current_period_start"], sub["items"]["data"][0]["current_period_end"]
        at = start + 86400
        self.update(sub, {"cancel_at": at})
        n = len(ctl("GET", "events").json)
        ctl("POST", "clock", {"advance": 3600})
        self.assertEqual(self.new_events(n), [])
        ctl("POST", "clock", {"advance": 86400})
        (ev,) = self.new_events(n)
        self.assertEqual(ev["type"], "customer.subscription.deleted")
        self.assertEqual(ev["request"], {"id": None, "idempotency_key": None})
        obj = ev["data"]["object"]
        self.assertEqual((obj["status"], obj["ended_at"], obj["cancel_at"]), ("canceled", at, at))
        self.assertEqual(obj["cancellation_details"]["reason"], "cancellation_requested")
        self.assertEqual(ctl("POST", "subscriptions/%s/renew" % sub["id"]).status, 400)
        # a date after the period end: the renewal is billed, then it ends when the clock gets there
        sub = subscribe(self)
        end = sub["items"]["data"][0]["current_period_end"]
        self.update(sub, {"cancel_at": end + 86400})
        n = len(ctl("GET", "events").json)
        ctl("POST", "subscriptions/%s/renew" % sub["id"])
        self.assertEqual(types_of(self.new_events(n)), self.CYCLE_EVENTS)
        n = len(ctl("GET", "events").json)
        ctl("POST", "clock", {"advance": 86400})
        self.assertEqual(types_of(self.new_events(n)), ["customer.subscription.deleted"])
        # also found on the next API request, with no clock call in between
        sub = subscribe(self)
        self.update(sub, {"cancel_at": ctl("GET", "clock").json["now"] + 2})
        time.sleep(2.2)
        self.assertEqual(call("GET", "/v1/subscriptions/" + sub["id"]).json["status"], "canceled")

    def test_dashboard_schedules_a_date_cancel(self):
        sub = subscribe(self)
        now = ctl("GET", "clock").json["now"]
        n = len(ctl("GET", "events").json)
        r = ctl("POST", "subscriptions/%s/update" % sub["id"], {"cancel_at": now + 7 * 86400,
                                                                "cancellation_details": {"comment": "moving"}})
        self.assertEqual(r.status, 200, r.raw)
        (ev,) = self.new_events(n)
        self.assertEqual((ev["type"], ev["request"]["id"]), ("customer.subscription.updated", None))
        prev = ev["data"]["previous_attributes"]
        self.assertEqual((prev["cancel_at"], prev["canceled_at"]), (None, None))
        self.assertEqual(prev["cancellation_details"]["comment"], None)
        self.assertEqual((r.json["cancel_at"], r.json["cancellation_details"]["comment"]), (now + 7 * 86400, "moving"))
        self.assertEqual(ctl("GET", "requests").json[-1]["path"], "/v1/subscriptions/" + sub["id"])  # none of ours
        r = ctl("POST", "subscriptions/%s/update" % sub["id"], {"cancel_at": None})
        self.assertIsNone(r.json["cancel_at"])
        self.assertEqual(ctl("GET", "events").json[-1]["data"]["previous_attributes"]["cancel_at"], now + 7 * 86400)
        r = ctl("POST", "subscriptions/%s/update" % sub["id"], {"cancel_at_period_end": True})
        self.assertEqual(r.json["cancel_at"], sub["items"]["data"][0]["current_period_end"])
        self.assertEqual(ctl("POST", "subscriptions/%s/update" % sub["id"], {"cancel_at": "someday"}).status, 400)
        self.assertEqual(ctl("POST", "subscriptions/%s/update" % sub["id"], {"items": []}).status, 400)
        self.assertEqual(ctl("POST", "subscriptions/sub_nope/update", {"cancel_at": None}).status, 404)

    def test_renewal_invoice_payment(self):
        sub = subscribe(self)
        n = len(ctl("GET", "events").json)
        ctl("POST", "subscriptions/%s/renew" % sub["id"])
        evs = self.new_events(n)
        by = {e["type"]: e["data"]["object"] for e in evs}
        inv, pay = by["invoice.paid"], by["invoice_payment.paid"]
        for gone in ("payment_intent", "charge", "subscription"):
            self.assertNotIn(gone, inv)
        self.assertEqual(inv["parent"]["subscription_details"]["subscription"], sub["id"])
        pi_id = by["payment_intent.succeeded"]["id"]
        self.assertEqual((pay["status"], pay["is_default"], pay["invoice"], pay["amount_paid"], pay["payment"]),
                         ("paid", True, inv["id"], 2000, {"payment_intent": pi_id, "type": "payment_intent"}))
        pi = call("GET", "/v1/payment_intents/" + pi_id).json
        self.assertRegex(pi["latest_charge"], r"^ch_")
        self.assertEqual(pi["latest_charge"], by["charge.succeeded"]["id"])
        # the knob: payment.charge directly ...
        self.assertEqual(ctl("POST", "invoice_payments/config", {"payment": "charge"}).status, 200)
        n = len(ctl("GET", "events").json)
        ctl("POST", "subscriptions/%s/renew" % sub["id"])
        by = {e["type"]: e["data"]["object"] for e in self.new_events(n)}
        self.assertEqual(by["invoice_payment.paid"]["payment"], {"charge": by["charge.succeeded"]["id"], "type": "charge"})
        # ... or the PaymentIntent expanded, with its latest_charge
        ctl("POST", "invoice_payments/config", {"payment": "payment_intent_expanded"})
        n = len(ctl("GET", "events").json)
        ctl("POST", "subscriptions/%s/renew" % sub["id"])
        by = {e["type"]: e["data"]["object"] for e in self.new_events(n)}
        payment = by["invoice_payment.paid"]["payment"]
        self.assertEqual((payment["type"], payment["payment_intent"]["object"], payment["payment_intent"]["latest_charge"]),
                         ("payment_intent", "payment_intent", by["charge.succeeded"]["id"]))
        stored = call("GET", "/v1/invoices/" + by["invoice.paid"]["id"], {"expand": ["payments"]}).json
        self.assertEqual(stored["payments"]["data"][0]["payment"]["payment_intent"], payment["payment_intent"]["id"])
        self.assertEqual(ctl("GET", "invoice_payments/config").json, {"payment": "payment_intent_expanded"})
        self.assertEqual(ctl("POST", "invoice_payments/config", {"payment": "x"}).status, 400)
        ctl("POST", "reset")
        self.assertEqual(ctl("GET", "invoice_payments/config").json, {"payment": "payment_intent"})

    def test_cancel_now_pause_resume(self):
        sub = subscribe(self)
        r = call("POST", "/v1/subscriptions/" + sub["id"], {"pause_collection": {"behavior": "void"}})
        self.assertEqual((r.json["status"], r.json["pause_collection"]), ("active", {"behavior": "void",
                                                                                    "resumes_at": None}))
        self.assertEqual(ctl("GET", "events").json[-1]["data"]["previous_attributes"], {"pause_collection": None})
        call("POST", "/v1/subscriptions/" + sub["id"], {"pause_collection": ""})
        self.assertStripeError(call("POST", "/v1/subscriptions/%s/resume" % sub["id"]), 400)
        n = len(ctl("GET", "events").json)
        r = ctl("POST", "subscriptions/%s/pause" % sub["id"])
        self.assertEqual(r.json["status"], "paused")
        self.assertEqual(types_of(self.new_events(n)), ["customer.subscription.paused", "customer.subscription.updated"])
        n = len(ctl("GET", "events").json)
        r = call("POST", "/v1/subscriptions/%s/resume" % sub["id"])
        self.assertEqual(r.json["status"], "active")
        evs = self.new_events(n)
        self.assertEqual(types_of(evs)[:3], ["customer.subscription.resumed", "customer.subscription.updated",
                                             "invoice.created"])
        self.assertEqual(evs[-2]["data"]["object"]["billing_reason"], "subscription_update")
        ctl("POST", "subscriptions/%s/pause" % sub["id"])
        n = len(ctl("GET", "events").json)
        r = ctl("POST", "subscriptions/%s/resume" % sub["id"], {"billing_cycle_anchor": "unchanged"})
        self.assertEqual(types_of(self.new_events(n)), ["customer.subscription.resumed", "customer.subscription.updated"])
        n = len(ctl("GET", "events").json)
        r = call("DELETE", "/v1/subscriptions/" + sub["id"], {"cancellation_details": {"comment": "moving"}})
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual((r.json["status"], r.json["cancellation_details"]["comment"]), ("canceled", "moving"))
        self.assertIsNotNone(r.json["canceled_at"])
        self.assertEqual(r.json["ended_at"], r.json["canceled_at"])
        self.assertEqual(types_of(self.new_events(n)), ["customer.subscription.deleted"])
        self.assertStripeError(call("POST", "/v1/subscriptions/" + sub["id"], {"items": [{"price": "p"}]}), 400)
        self.assertStripeError(call("GET", "/v1/subscriptions/sub_nope"), 404, code="resource_missing")
        self.assertEqual(ctl("POST", "subscriptions/sub_nope/renew").status, 404)

    def test_unsupported_update_rejected(self):
        sub = subscribe(self)
        r = call("POST", "/v1/subscriptions/" + sub["id"], {"trial_end": "now"})
        self.assertStripeError(r, 400, param="trial_end")
        self.assertStripeError(call("POST", "/v1/subscriptions/" + sub["id"], {"bogus": "1"}), 400,
                               code="parameter_unknown")


CONTRACT_C = r"""
#include "stripepay.h"
static SpForm *
session_form(int64 order_id)
{
	SpForm	   *form = sp_form_create();

	sp_form_add(form, "mode", "payment");
	sp_form_add_int(form, "line_items[0][quantity]", 1);
	sp_form_add_ids(form, "payment_intent_data[metadata]", order_id, "stripepay_payment_id", 2);
	sp_form_add(form, "payment_method_types[]", "card");	/* removed in 2026-09-30 */
	return form;
}

static SpForm *
intent_form(int64 order_id)
{
	SpForm	   *form = sp_form_create();

	sp_form_add_int(form, "amount", 100);
	sp_form_add(form, "automatic_payment_methods[enabled]", "true");
	return form;
}

static void
list_events(const char *cursor_name, const char *cursor)
{
	SpForm	   *query = sp_form_create();

	sp_form_add(query, cursor_name, cursor);
	sp_stripe_list("/v1/events", query, key, "event list", page);
}

void
pay(bool checkout, const char *sub)
{
	SpForm	   *form = checkout ? session_form(1) : intent_form(1);
	SpForm	   *cancel = sp_form_create();
	char	   *path = psprintf("/v1/subscriptions/%s", sub);

	sp_stripe_call("POST", checkout ? "/v1/checkout/sessions" : "/v1/payment_intents", form, key, NULL, &resp);
	sp_form_add(cancel, "cancel_at", "min_period_end");
	sp_form_add(cancel, "cancel_at_period_end", "maybe");
	sp_stripe_send("POST", path, cancel, key, NULL, &resp);
	sp_stripe_send("GET", "/v1/nowhere", NULL, key, NULL, &resp);
	list_events("starting_after", "evt_1");
	list_events("after", "evt_1");
}

static const char *const some_events[] = {"invoice_payment.paid", "invoice.payment_paid", NULL};
"""

CONTRACT_EVENT_C = r"""
#define SP_API_2025_03_31 20250331L
static void
sp_event_invoice(SpEventDecoder *d, int o, SpEvent *ev)
{
	if (sp_event_older_than(ev, SP_API_2025_03_31))
		sp_event_ref(d, o, "subscription", "data.object.subscription", ev->subscription, 64);
	sp_event_ref(d, o, "charge", "data.object.charge", ev->charge, 64);
	sp_event_ref(d, o, "subscription", "data.object.parent.subscription_details.subscription", ev->s, 64);
}

static SpEventResult
sp_event_read(const SpJtDoc *doc, SpEvent *ev)
{
	sp_event_string(&d, o, "status", "data.object.status", ev->status, 32);
	if (strcmp(ev->object_type, "invoice") == 0)
		sp_event_invoice(&d, o, ev);
	return d.rc;
}
"""


class Contract(unittest.TestCase):
    """contract.py finds what C code sends and reads, and fails on what the pinned API lacks."""

    def test_findings_on_a_small_extension(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "src")
            os.makedirs(os.path.join(src, "pure"))
            with open(os.path.join(src, "stripepay.h"), "w") as f:
                f.write('#define SP_DEFAULT_API_VERSION "%s"\n' % emu.PINNED_API_VERSION)
            with open(os.path.join(src, "sp_pay.c"), "w") as f:
                f.write(CONTRACT_C)
            with open(os.path.join(src, "pure", "sp_event.c"), "w") as f:
                f.write(CONTRACT_EVENT_C)
            r = subprocess.run([sys.executable, os.path.join(HERE, "contract.py"), "--src", src],
                               capture_output=True, text=True, timeout=60)
        lines = r.stdout.splitlines()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        bad = sorted(re.sub(r" \(.*", "", l[len("not ok - "):]) for l in lines if l.startswith("not ok"))
        self.assertEqual(bad, [
            "GET /v1/events after",
            "GET /v1/nowhere",
            "POST /v1/checkout/sessions payment_method_types[]=card",
            "POST /v1/subscriptions/{id} cancel_at_period_end=maybe",
            "enabled_events[] invoice.payment_paid",
            "invoice data.object.charge"])
        good = [l for l in lines if l.startswith("ok - ")]
        for want in ("POST /v1/checkout/sessions payment_intent_data[metadata][order_id]",
                     "POST /v1/checkout/sessions payment_intent_data[metadata][stripepay_payment_id]",
                     "POST /v1/checkout/sessions line_items[0][quantity]",
                     "POST /v1/payment_intents automatic_payment_methods[enabled]=true",
                     "POST /v1/subscriptions/{id} cancel_at=min_period_end",
                     "GET /v1/events starting_after",
                     "enabled_events[] invoice_payment.paid",
                     "invoice data.object.subscription",
                     "invoice data.object.parent.subscription_details.subscription",
                     "every object data.object.status"):
            self.assertTrue(any(l.startswith("ok - " + want + " ") for l in good), (want, lines))
        # the session's parameters went to the session, not to the PaymentIntent
        self.assertFalse(any("POST /v1/payment_intents mode" in l or "POST /v1/payment_intents line_items" in l
                             for l in lines), lines)
        self.assertRegex(lines[-1], r"^contract: \d+ passed, 6 failed$")


class Speed(Base):
    def test_requests_stay_fast_with_webhooks(self):
        ctl("POST", "webhook_endpoints", {"url": "http://127.0.0.1:9/never"})
        ctl("POST", "webhook_config", {"retry_delays": [30]})
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        try:
            t0 = time.perf_counter()
            for i in range(100):
                r = call("POST", "/v1/payment_intents", {"amount": 100 + i, "currency": "usd"}, conn=conn)
                self.assertEqual(r.status, 200)
            per_request = (time.perf_counter() - t0) / 100
        finally:
            conn.close()
        self.assertLess(per_request, 0.02)   # a loaded CI machine; typically ~1.5 ms round trip


if __name__ == "__main__":
    # the closing "emulator: N passed, M failed" line is what test/run-all.sh counts
    result = unittest.main(verbosity=2, exit=False).result
    bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    print(f"emulator: {result.testsRun - bad - len(result.skipped)} passed, {bad} failed")
    sys.exit(1 if bad else 0)
