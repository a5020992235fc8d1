#!/usr/bin/env python3
"""Self-test of the Stripe emulator: python3 test/emulator/test_emulator.py

Starts the emulator on port 0 in a subprocess and talks HTTP to it; stops it even when a
test fails. Standard library only.
"""
import http.client
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
        self.assertIn("ui_mode", cs)
        for key in emu.OVERLAY:
            self.assertIn(key, specs)
        for method, rx, fn, spec_key in emu.API_ROUTES:
            self.assertIn(spec_key, specs, "route without a parameter spec")


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

    def test_bad_fault_rejected(self):
        self.assertEqual(ctl("POST", "faults", {"mode": "404"}).status, 400)
        self.assertEqual(ctl("POST", "faults", {"mode": "429", "path_prefix": "/_emulator"}).status, 400)


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


class Shapes(Base):
    """Emulated objects carry the same fields as Stripe's own samples."""

    def test_fields_match_fixtures(self):
        with open(os.path.join(HERE, "fixtures", "stripe_objects.json"), encoding="utf-8") as f:
            fx = json.load(f)["resources"]
        s = call("POST", "/v1/checkout/sessions", session_params()).json
        s = ctl("POST", "checkout/sessions/%s/complete" % s["id"], {"outcome": "paid"}).json
        pi = call("GET", "/v1/payment_intents/" + s["payment_intent"]).json
        objs = ctl("GET", "objects").json
        samples = {"checkout.session": s, "payment_intent": pi, "charge": objs["charge"][0],
                   "event": ctl("GET", "events").json[0], "price": objs["price"][0],
                   "product": objs["product"][0],
                   "item": call("GET", "/v1/checkout/sessions/%s/line_items" % s["id"]).json["data"][0]}
        for name, obj in samples.items():
            self.assertEqual(set(obj), set(fx[name]), name)


if __name__ == "__main__":
    # the closing "emulator: N passed, M failed" line is what test/run-all.sh counts
    result = unittest.main(verbosity=2, exit=False).result
    bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    print(f"emulator: {result.testsRun - bad - len(result.skipped)} passed, {bad} failed")
    sys.exit(1 if bad else 0)
