#!/usr/bin/env python3
"""Stateful Stripe API emulator for stripepay's tests (Python 3.11 standard library only).

    python3 test/emulator/stripe_emulator.py --port PORT [--host 127.0.0.1] [--log FILE]

It is meant to be honest: a request it accepts must be one real Stripe accepts, so it
validates parameter names against Stripe's own OpenAPI description (stripe_params.json,
produced by extract_params.py) plus a small hand-written overlay for newer parameters,
and mirrors Stripe's error shapes. See README.md for the control API under /_emulator/.

Extending: add a handler with @api(METHOD, regex, spec_key), put the endpoint in
extract_params.ENDPOINTS and regenerate stripe_params.json (or add overlay entries),
and build objects with the make_* helpers so their fields match the fixtures.
"""

import argparse
import contextlib
import copy
import datetime
import decimal
import hashlib
import heapq
import hmac
import http.client
import http.server
import ipaddress
import itertools
import json
import os
import random
import re
import secrets
import signal
import socket
import string
import struct
import sys
import threading
import time
import urllib.parse

PINNED_API_VERSION = "2026-10-28.endive"
HERE = os.path.dirname(os.path.abspath(__file__))
PARAMS_FILE = os.path.join(HERE, "stripe_params.json")
MAX_BODY = 8 * 1024 * 1024

# --------------------------------------------------------------------------------------
# Money facts (Stripe docs: currencies, minimum and maximum charge amounts)
# --------------------------------------------------------------------------------------

CURRENCIES = set("""
usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd
bwp byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp
gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw
kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad
ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek
sgd shp sle sos srd std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst
xaf xcd xof xpf yer zar zmw
""".split())
ZERO_DECIMAL = set("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = set("bhd jod kwd omr tnd".split())
# Smallest unit. Currencies not listed are checked by Stripe via conversion to USD,
# which an emulator cannot do honestly, so they only get the maximum check.
MIN_CHARGE = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50,
    "czk": 1500, "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50,
    "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200,
    "sek": 300, "sgd": 50, "thb": 1000,
}
MAX_AMOUNT = 99999999
SYMBOLS = {"usd": "$", "aud": "$", "cad": "$", "nzd": "$", "sgd": "$", "hkd": "$",
           "mxn": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "chf": "CHF ",
           "brl": "R$"}


def money(amount, cur):
    if cur in ZERO_DECIMAL:
        text = "{:,}".format(amount)
    elif cur in THREE_DECIMAL:
        text = "{:,.3f}".format(amount / 1000)
    else:
        text = "{:,.2f}".format(amount / 100)
    return SYMBOLS.get(cur, "") + text


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------

class StripeError(Exception):
    """An error answered in Stripe's JSON shape.

    store=False marks failures before the endpoint starts executing (auth, parameter
    validation): Stripe does not save those under an Idempotency-Key.
    """

    def __init__(self, status, message, type_="invalid_request_error", code=None,
                 param=None, decline_code=None, headers=None, store=True, extra=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.headers = headers or {}
        self.store = store
        self.extra = extra or {}

    def body(self):
        e = {}
        if self.code:
            e["code"] = self.code
        if self.decline_code:
            e["decline_code"] = self.decline_code
        if self.code:
            e["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        e["message"] = self.message
        if self.param is not None:
            e["param"] = self.param
        e.update(self.extra)
        e["type"] = self.type
        return {"error": e}


def invalid(message, param=None, code=None, status=400):
    return StripeError(status, message, param=param, code=code, store=False)


def missing(param):
    return invalid("Missing required param: %s." % param, param=param, code="parameter_missing")


def unknown_param(param):
    return invalid("Received unknown parameter: %s" % param, param=param, code="parameter_unknown")


def exclusive(*params):
    return invalid("You may only specify one of these parameters: %s." % ", ".join(params),
                   param=params[0], code="parameters_exclusive")


def no_such(obj_type, obj_id, param):
    return StripeError(404, "No such %s: '%s'" % (obj_type, obj_id), code="resource_missing",
                       param=param)


def unrecognized_url(method, path):
    return StripeError(404, "Unrecognized request URL (%s: %s). Please see https://stripe.com/docs "
                       "or we can help at https://support.stripe.com/." % (method, path), store=False)


# --------------------------------------------------------------------------------------
# Form decoding (Rack-style bracket nesting, as Stripe's API parses it)
# --------------------------------------------------------------------------------------

class FormError(Exception):
    pass


_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEG_RE = re.compile(r"\[([^\[\]]*)\]")


def _has_path(d, segs):
    # Like Rack's params_hash_has_key?: a path through [] never counts as present.
    if "" in segs:
        return False
    for s in segs:
        if not isinstance(d, dict) or s not in d:
            return False
        d = d[s]
    return True


def _put(container, segs, value, full):
    head, rest = segs[0], segs[1:]
    if not rest:
        if isinstance(container.get(head), (dict, list)):
            raise FormError(full)
        container[head] = value
        return
    if rest[0] == "":
        lst = container.setdefault(head, [])
        if not isinstance(lst, list):
            raise FormError(full)
        child = rest[1:]
        if not child:
            lst.append(value)
            return
        # Rack semantics for a[][k]=..: extend the last element until a key repeats.
        if lst and isinstance(lst[-1], dict) and not _has_path(lst[-1], child):
            _put(lst[-1], child, value, full)
        else:
            d = {}
            lst.append(d)
            _put(d, child, value, full)
        return
    d = container.setdefault(head, {})
    if not isinstance(d, dict):
        raise FormError(full)
    _put(d, rest, value, full)


def _unquote(b):
    return urllib.parse.unquote_to_bytes(b.replace(b"+", b" ")).decode("utf-8")


def parse_form(raw):
    """Decode an x-www-form-urlencoded body (bytes or str) into nested dicts/lists.

    Indexed arrays (a[0][b]) stay dicts with digit keys here; the spec walk turns them
    into lists where the parameter is an array, as Stripe does.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    out = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue
        k, _, v = pair.partition(b"=")
        try:
            key, val = _unquote(k), _unquote(v)
        except UnicodeDecodeError:
            raise FormError("Invalid request: the request body is not valid UTF-8.")
        if key == "":
            continue
        m = _KEY_RE.match(key)
        if not m:
            raise FormError("Invalid request: malformed parameter name %r." % key)
        segs = [m.group(1)] + _SEG_RE.findall(m.group(2))
        try:
            _put(out, segs, val, key)
        except FormError:
            raise FormError("Invalid request: parameter %r conflicts with another parameter "
                            "of a different shape." % key)
    return out


def listify(value, under_map=False):
    """Best-effort view of decoded params for introspection: digit-keyed dicts -> lists."""
    if isinstance(value, dict):
        if value and not under_map and all(k.isdigit() for k in value):
            return [listify(value[k]) for k in sorted(value, key=int)]
        return {k: listify(v, under_map=(k == "metadata")) for k, v in value.items()}
    if isinstance(value, list):
        return [listify(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Parameter specs: Stripe's OpenAPI (2022-11-15) plus an overlay for newer parameters
# --------------------------------------------------------------------------------------

_EMPTYABLE_MESSAGE = {"type": "object", "emptyable": True,
                      "props": {"message": {"type": "string", "maxLength": 1200}},
                      "required": ["message"]}

# Event types Stripe added after 2022-11-15 (webhook endpoints' enabled_events).
NEWER_EVENT_TYPES = ["invoice.overdue", "invoice.will_be_due", "invoice_payment.paid", "refund.failed"]

# Parameters Stripe accepts in API versions newer than the 2022-11-15 description that
# stripe_params.json comes from. Only add what the API reference documents today; the
# path uses "." between properties and "[]" for array items. A node replaces the spec's
# node at that path, except {"enum_add": [...]}, which extends the existing enum.
OVERLAY = {
    "POST /v1/checkout/sessions": {
        # 2023-10-16 added ui_mode; 2025-03-31.basil added "custom"; 2026-03-25.dahlia
        # renamed the values (hosted_page, embedded_page, elements) and removed the old ones.
        "ui_mode": {"type": "string", "enum_by_version": {
            "": ["embedded", "hosted"],
            "2025-03-31": ["custom", "embedded", "hosted"],
            "2026-03-25": ["elements", "embedded_page", "hosted_page"]}},
        "return_url": {"type": "string", "maxLength": 5000},
        "redirect_on_completion": {"type": "string", "enum": ["always", "if_required", "never"]},
        "payment_method_configuration": {"type": "string", "maxLength": 100},
        "adaptive_pricing": {"type": "object", "props": {"enabled": {"type": "boolean"}}},
        "saved_payment_method_options": {"type": "object", "props": {
            "allow_redisplay_filters": {"type": "array", "items": {
                "type": "string", "enum": ["always", "limited", "unspecified"]}},
            "payment_method_save": {"type": "string", "enum": ["disabled", "enabled"]}}},
        "payment_intent_data.description": {"type": "string", "maxLength": 1000},
        "custom_text.after_submit": _EMPTYABLE_MESSAGE,
        "custom_text.terms_of_service_acceptance": _EMPTYABLE_MESSAGE,
    },
    "POST /v1/payment_intents": {
        "automatic_payment_methods.allow_redirects": {"type": "string", "enum": ["always", "never"]},
        "confirmation_token": {"type": "string", "maxLength": 5000},
        "payment_method_configuration": {"type": "string", "maxLength": 100},
    },
    "POST /v1/webhook_endpoints": {"enabled_events[]": {"enum_add": NEWER_EVENT_TYPES}},
    "POST /v1/webhook_endpoints/{webhook_endpoint}": {"enabled_events[]": {"enum_add": NEWER_EVENT_TYPES}},
}


def load_specs(path=PARAMS_FILE):
    with open(path, encoding="utf-8") as f:
        specs = json.load(f)["endpoints"]
    for key, entries in OVERLAY.items():
        root = specs[key]
        for dotted, node in entries.items():
            parts = dotted.split(".")
            cur = root
            for p in parts[:-1]:
                if p.endswith("[]"):
                    cur = cur["props"][p[:-2]]["items"]
                else:
                    cur = cur["props"][p]
            last = parts[-1]
            if "enum_add" in node:
                target = cur["props"][last[:-2]]["items"] if last.endswith("[]") else cur["props"][last]
                target["enum"] = target["enum"] + [v for v in node["enum_add"] if v not in target["enum"]]
            else:
                cur.setdefault("props", {})[last] = copy.deepcopy(node)
    return specs


def version_date(v):
    return v.split(".")[0]


def enum_for(node, api_version):
    if "enum_by_version" in node:
        table = node["enum_by_version"]
        best = max(k for k in table if k <= version_date(api_version))
        return table[best]
    return node.get("enum")


def _join_or(values):
    values = list(values)
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return "%s or %s" % tuple(values)
    return ", ".join(values[:-1]) + ", or " + values[-1]


def _shape_matches(node, value):
    t = node.get("type")
    if isinstance(value, dict):
        return t in ("object", "map") or (t == "array" and all(k.isdigit() for k in value))
    if isinstance(value, list):
        return t == "array"
    return t not in ("object", "map", "array")


def _child(name, key):
    return "%s[%s]" % (name, key) if name else key


def check(node, value, name, api_version):
    """Validate one decoded value against a spec node; return the typed value."""
    if value == "" and (node.get("emptyable") or node.get("type") == "map"):
        return ""
    if "anyOf" in node:
        errors = []
        for variant in node["anyOf"]:
            try:
                return check(variant, value, name, api_version)
            except StripeError as e:
                errors.append((variant, e))
        for variant, e in errors:
            if _shape_matches(variant, value):
                raise e
        raise errors[0][1]
    t = node.get("type")
    if value == "" and t != "any":
        raise invalid("You passed an empty string for '%s'. We assume empty values are an attempt "
                      "to unset a parameter; however '%s' cannot be unset. You should remove '%s' "
                      "from your request or supply a non-empty value." % (name, name, name),
                      param=name, code="parameter_invalid_empty")
    if t == "object":
        if not isinstance(value, dict):
            raise invalid("Invalid hash", param=name)
        props = node.get("props", {})
        for k in value:
            if k not in props:
                raise unknown_param(_child(name, k))
        out = {k: check(props[k], v, _child(name, k), api_version) for k, v in value.items()}
        for r in node.get("required", []):
            if r not in value:
                raise missing(_child(name, r))
        return out
    if t == "map":
        if not isinstance(value, dict):
            raise invalid("Invalid hash", param=name)
        if name == "metadata" or name.endswith("[metadata]"):
            check_metadata(value, name)
        return {k: check(node["values"], v, _child(name, k), api_version) if v != "" else ""
                for k, v in value.items()}
    if t == "array":
        if isinstance(value, dict) and value and all(k.isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=int)]
        if not isinstance(value, list):
            raise invalid("Invalid array", param=name)
        return [check(node["items"], v, "%s[%d]" % (name, i), api_version) for i, v in enumerate(value)]
    if t == "any":
        return value
    if isinstance(value, (dict, list)):
        raise invalid("Invalid %s: %s" % (t, json.dumps(listify(value))), param=name)
    if t == "integer":
        if not re.fullmatch(r"-?[0-9]+", value):
            raise invalid("Invalid integer: %s" % value, param=name, code="parameter_invalid_integer")
        return int(value)
    if t == "number":
        if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value):
            raise invalid("Invalid decimal: %s" % value, param=name)
        return float(value)
    if t == "boolean":
        if value not in ("true", "false"):
            raise invalid("Invalid boolean: %s" % value, param=name)
        return value == "true"
    # string
    allowed = enum_for(node, api_version)
    if allowed is not None and value not in allowed:
        raise invalid("Invalid %s: must be one of %s" % (name, _join_or(allowed)), param=name)
    if "maxLength" in node and len(value) > node["maxLength"]:
        raise invalid("Invalid string: %s...; must be at most %d characters"
                      % (value[:30], node["maxLength"]), param=name)
    return value


def check_metadata(md, name):
    if len(md) > 50:
        raise invalid("Invalid %s: metadata can have at most 50 keys, got %d." % (name, len(md)),
                      param=name)
    for k, v in md.items():
        if len(k) > 40:
            raise invalid("Invalid key: %s must be a string under 40 characters" % k, param=name)
        if not isinstance(v, str) or len(v) > 500:
            shown = v if isinstance(v, str) else json.dumps(listify(v))
            raise invalid("Invalid val: %s must be a string under 500 characters" % shown, param=name)


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits


def rand(n):
    # One read of the OS's random bytes an id, not one a character: ids are
    # made several times a request.  Bytes past the last whole multiple of
    # 62 are dropped, so every character stays equally likely.
    out = ""
    while len(out) < n:
        out += "".join(_ALNUM[b % 62] for b in secrets.token_bytes(n + 8) if b < 248)
    return out[:n]


def new_request_id():
    return "req_" + rand(14)


def mask_key(key):
    """Stripe's style in error messages: prefix, one * per hidden character, last 4."""
    if len(key) > 12:
        return key[:8] + "*" * (len(key) - 12) + key[-4:]
    if len(key) > 4:
        return "*" * (len(key) - 4) + key[-4:]
    return "*" * len(key)


def mask_authorization(value):
    """Short form for the request log: never the whole key."""
    scheme, _, cred = value.partition(" ")
    m = re.match(r"^((?:sk|rk|pk)_(?:test|live)_)(.*)$", cred)
    if m:
        tail = m.group(2)[-4:] if len(m.group(2)) > 4 else ""
        return "%s %s****%s" % (scheme, m.group(1), tail)
    return "%s ****%s" % (scheme, cred[-4:] if len(cred) > 8 else "")


_VERSION_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:\.([a-z]+))?$")


def valid_api_version(v):
    m = _VERSION_RE.match(v)
    if not m:
        return False
    try:
        datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return False
    return True


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_email(value, param):
    if not _EMAIL_RE.match(value):
        raise invalid("Invalid email address: %s" % value, param=param, code="email_invalid")


def check_url(value, param):
    u = urllib.parse.urlsplit(value)
    if u.scheme not in ("http", "https") or not u.netloc or " " in value:
        raise invalid("Not a valid URL", param=param, code="url_invalid")


def check_currency(value, param):
    cur = value.lower()
    if cur not in CURRENCIES:
        raise invalid("Invalid currency: %s. Stripe currently supports these currencies: %s"
                      % (value, ", ".join(sorted(CURRENCIES))), param=param)
    return cur


def check_amount(amount, cur, param, what="Amount"):
    if amount > MAX_AMOUNT:
        raise invalid("%s must be no more than %s" % (what, money(MAX_AMOUNT, cur)),
                      param=param, code="amount_too_large")
    minimum = MIN_CHARGE.get(cur, 1)
    if amount < minimum:
        raise invalid("%s must be at least %s %s" % (what, money(minimum, cur), cur),
                      param=param, code="amount_too_small")
    if cur in THREE_DECIMAL and amount % 10:
        raise invalid("Invalid amount: %s amounts are in thousandths and the last digit must be 0."
                      % cur.upper(), param=param, code="invalid_charge_amount")
    if cur == "isk" and amount % 100:
        raise invalid("Invalid amount: ISK amounts must be whole krónur (a multiple of 100).",
                      param=param, code="invalid_charge_amount")


def check_range(value, lo, hi, param):
    if lo is not None and value < lo:
        raise invalid("This value must be greater than or equal to %d." % lo, param=param)
    if hi is not None and value > hi:
        raise invalid("This value must be less than or equal to %d." % hi, param=param)


# --------------------------------------------------------------------------------------
# Webhook delivery
#
# Every event an emulated action creates is queued, once the request that made it has
# finished, for each enabled endpoint of the same mode that subscribes to its type. Each
# endpoint has its own delivery threads (config "concurrency"); a failed attempt (non-2xx,
# connection error, timeout) is retried after config "retry_delays" until "max_attempts".
# Lock order: State.lock, then Webhooks.cond; delivery threads only ever take the latter.
# --------------------------------------------------------------------------------------

WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
DEFAULT_WEBHOOK_CONFIG = {"retry_delays": [0.2, 0.5, 1, 2, 4], "max_attempts": 8, "shuffle": False,
                          "duplicate": 0.0, "concurrency": 1, "timestamp_offset": 0}
WEBHOOK_ENDPOINT_LIMIT = 16   # per account (and mode)


def webhook_signature(secret_list, payload, timestamp):
    """Stripe-Signature value: one v1 per secret (two while a secret is being rolled)."""
    signed = b"%d." % timestamp + payload
    return "t=%d," % timestamp + ",".join(
        "v1=" + hmac.new(sec.encode("utf-8"), signed, hashlib.sha256).hexdigest() for sec in secret_list)


def is_loopback(host):
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def post_webhook(url, payload, headers, timeout):
    """One delivery attempt: (HTTP status or None, error or None, response bytes, retryable)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        return None, "not sent: the emulator delivers over plain http only", b"", False
    if not is_loopback(u.hostname):
        return None, "not sent: the emulator delivers to loopback addresses only", b"", False
    try:
        port = u.port or 80
    except ValueError:
        return None, "not sent: bad port in url", b"", False
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    conn = http.client.HTTPConnection(u.hostname, port, timeout=timeout)
    try:
        conn.request("POST", path, body=payload, headers=headers)
        resp = conn.getresponse()
        return resp.status, None, resp.read(), True
    except (OSError, http.client.HTTPException) as e:
        return None, "%s: %s" % (type(e).__name__, e), b"", True
    finally:
        conn.close()


class _Job:
    """One event on its way to one endpoint (an original, a duplicate or a redelivery)."""
    __slots__ = ("event", "seq", "attempt", "due", "duplicate", "redelivery")

    def __init__(self, event, seq, duplicate=False, redelivery=False):
        self.event, self.seq, self.duplicate, self.redelivery = event, seq, duplicate, redelivery
        self.attempt = 1
        self.due = 0.0


class _Route:
    """Runtime side of one webhook endpoint: secrets, queues, delivery threads."""

    def __init__(self, endpoint, secret, extra_secrets, timeout, connect, lock):
        self.endpoint = endpoint          # the stored webhook_endpoint object (url, status, ...)
        self.secret = secret
        self.extra_secrets = list(extra_secrets)
        self.timeout = timeout
        self.connect = connect
        self.ready = []                   # heap of (seq, job): due now, oldest event first
        self.waiting = []                 # heap of (due, seq, job): retries not due yet
        self.inflight = 0
        self.workers = 0
        self.closed = False
        self.cond = threading.Condition(lock)   # wakes this endpoint's threads only

    def queued(self):
        return len(self.ready) + len(self.waiting)

    def close(self):
        self.closed = True
        self.ready, self.waiting = [], []
        self.cond.notify_all()


class Webhooks:
    # Requests come first: a delivery thread about to do its CPU work (the pretty-printed
    # body) waits while requests are being handled, but never longer than this.
    YIELD_TO_REQUESTS = 0.05

    def __init__(self):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)   # progress: flush() waits on it
        self.seq = itertools.count(1)
        self.routes = {}
        self.quiet = threading.Condition(threading.Lock())
        self.busy = 0                                  # requests being handled right now
        self.reset()

    def request_started(self):
        with self.quiet:
            self.busy += 1

    def request_ended(self):
        with self.quiet:
            self.busy -= 1
            if self.busy == 0:
                self.quiet.notify_all()

    @contextlib.contextmanager
    def waiting(self):
        """A request that only waits (flush, hang and slow faults) does not hold deliveries up."""
        self.request_ended()
        try:
            yield
        finally:
            self.request_started()

    def _yield_to_requests(self):
        with self.quiet:
            deadline = time.monotonic() + self.YIELD_TO_REQUESTS
            while self.busy > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.quiet.wait(left)

    def reset(self):
        with self.cond:
            for r in self.routes.values():
                r.close()
            self.routes = {}
            self.config = copy.deepcopy(DEFAULT_WEBHOOK_CONFIG)
            self.deliveries = []
            self.outcome = {}    # (event id, endpoint id) -> "pending" | "delivered" | "failed"
            self.payloads = {}   # (event id, api_version) -> body, shared by endpoints and retries
            self.cond.notify_all()

    # -- endpoints --

    def register(self, endpoint, secret, extra_secrets=(), timeout=10, connect=False):
        with self.cond:
            r = _Route(endpoint, secret, extra_secrets, timeout, connect, self.lock)
            self.routes[endpoint["id"]] = r
            self._staff(r)
            return r

    def route(self, endpoint_id):
        return self.routes.get(endpoint_id)

    def remove(self, endpoint_id):
        with self.cond:
            r = self.routes.pop(endpoint_id, None)
            if r is not None:
                r.close()
            self.cond.notify_all()

    def configure(self, changes):
        with self.cond:
            self.config.update(changes)
            for r in self.routes.values():
                self._staff(r)
                r.cond.notify_all()
            self.cond.notify_all()
            return copy.deepcopy(self.config)

    def _staff(self, r):
        while not r.closed and r.workers < self.config["concurrency"]:
            index = r.workers
            r.workers += 1
            threading.Thread(target=self._worker, args=(r, index), daemon=True,
                             name="webhook-%s-%d" % (r.endpoint["id"], index)).start()

    def _wants(self, r, ev):
        ep = r.endpoint
        return (not r.closed and not r.connect and ep["status"] == "enabled"
                and ep["livemode"] == ev["livemode"]
                and ("*" in ep["enabled_events"] or ev["type"] in ep["enabled_events"]))

    # -- queueing --

    def dispatch(self, events, endpoints):
        """Queue new events, in creation order, for every endpoint that wants them."""
        with self.cond:
            routes = [self.routes[ep["id"]] for ep in endpoints if ep["id"] in self.routes]
            for ev in events:
                n = 0
                for r in routes:
                    if not self._wants(r, ev):
                        continue
                    n += 1
                    self.outcome[(ev["id"], r.endpoint["id"])] = "pending"
                    self._enqueue(r, ev)
                    if self.config["duplicate"] and random.random() < self.config["duplicate"]:
                        self._enqueue(r, ev, duplicate=True)
                ev["pending_webhooks"] = n

    def _enqueue(self, r, ev, duplicate=False, redelivery=False):
        job = _Job(ev, next(self.seq), duplicate, redelivery)
        heapq.heappush(r.ready, (job.seq, job))
        r.cond.notify()

    def redeliver(self, ev, endpoint_id=None):
        with self.cond:
            n = 0
            for r in list(self.routes.values()):
                if r.closed or (endpoint_id is not None and r.endpoint["id"] != endpoint_id):
                    continue
                if endpoint_id is None and not self._wants(r, ev):
                    continue
                key = (ev["id"], r.endpoint["id"])
                if self.outcome.get(key) == "failed":
                    self.outcome[key] = "pending"
                self._enqueue(r, ev, redelivery=True)
                n += 1
            return n

    def pending(self):
        """Deliveries queued, waiting for a retry or in flight."""
        with self.cond:
            return sum(r.queued() + r.inflight for r in self.routes.values() if not r.closed)

    def failed(self):
        """(event, endpoint) pairs whose every attempt failed."""
        with self.cond:
            return sum(1 for v in self.outcome.values() if v == "failed")

    def flush(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                n = self.pending()
                left = deadline - time.monotonic()
                if n == 0 or left <= 0:
                    return n
                self.cond.wait(left)

    # -- delivery threads --

    def _next_job(self, r, index):
        while True:
            if r.closed:
                return None
            if index >= self.config["concurrency"]:
                r.workers -= 1
                return None
            now = time.monotonic()
            while r.waiting and r.waiting[0][0] <= now:
                _, seq, job = heapq.heappop(r.waiting)
                heapq.heappush(r.ready, (seq, job))
            if r.ready:
                if self.config["shuffle"]:
                    i = random.randrange(len(r.ready))
                    r.ready[i], r.ready[-1] = r.ready[-1], r.ready[i]
                    job = r.ready.pop()[1]
                    heapq.heapify(r.ready)
                else:
                    job = heapq.heappop(r.ready)[1]
                r.inflight += 1
                return job
            r.cond.wait(r.waiting[0][0] - now if r.waiting else None)

    def _worker(self, r, index):
        while True:
            with self.cond:
                job = self._next_job(r, index)
                if job is None:
                    return
                ep = r.endpoint
                url, api_version = ep["url"], ep["api_version"]
                secret_list = [r.secret] + r.extra_secrets
                timeout = r.timeout
                offset = self.config["timestamp_offset"]
                key = (job.event["id"], api_version or job.event["api_version"])
                payload = self.payloads.get(key)
                ev = dict(job.event, api_version=key[1]) if payload is None else None
            if payload is None:
                self._yield_to_requests()
                payload = json.dumps(ev, indent=2).encode("utf-8")
                with self.cond:
                    payload = self.payloads.setdefault(key, payload)
            signature = webhook_signature(secret_list, payload, int(time.time()) + offset)
            headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": WEBHOOK_USER_AGENT,
                       "Accept": "*/*; q=0.5, application/xml", "Cache-Control": "no-cache",
                       "Stripe-Signature": signature}
            started = time.time()
            status, error, body, retryable = post_webhook(url, payload, headers, timeout)
            with self.cond:
                r.inflight -= 1
                if not r.closed:
                    self._record(r, job, url, status, error, body, started, signature, retryable)
                self.cond.notify_all()

    def _record(self, r, job, url, status, error, body, started, signature, retryable):
        ev = job.event
        key = (ev["id"], r.endpoint["id"])
        ok = status is not None and 200 <= status < 300
        if status is not None and not ok and error is None:
            error = "HTTP %d" % status
        self.deliveries.append({
            "event_id": ev["id"], "type": ev["type"], "endpoint": r.endpoint["id"], "url": url,
            "attempt": job.attempt, "status": status, "error": error, "time": started,
            "duration_ms": round((time.time() - started) * 1000, 1),
            "response_body": body.decode("utf-8", "replace")[:500],
            "duplicate": job.duplicate, "redelivery": job.redelivery, "signature": signature})
        if ok:
            if self.outcome.get(key) in ("pending", "failed"):
                self.outcome[key] = "delivered"
                ev["pending_webhooks"] = max(0, ev["pending_webhooks"] - 1)
        elif retryable and job.attempt < self.config["max_attempts"]:
            delays = self.config["retry_delays"]
            job.due = time.monotonic() + (delays[min(job.attempt - 1, len(delays) - 1)] if delays else 0)
            job.attempt += 1
            heapq.heappush(r.waiting, (job.due, job.seq, job))
        elif self.outcome.get(key) == "pending" and not any(
                q[-1].event is ev for q in itertools.chain(r.ready, r.waiting)):
            self.outcome[key] = "failed"


# --------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------

class State:
    def __init__(self):
        self.lock = threading.RLock()
        self.release = threading.Event()   # wakes hanging requests on reset/shutdown
        self.base_url = "http://127.0.0.1:0"
        self.default_api_version = PINNED_API_VERSION
        self.fault_ids = itertools.count(1)
        self.hooks = Webhooks()
        self.reset()

    def reset(self):
        with self.lock:
            self.release.set()
            self.release = threading.Event()
            self.objects = {}        # object type -> {id: object}, insertion ordered
            self.aux = {}            # id -> emulator-private data (never serialised)
            self.events = []
            self.outbox = []         # events of the running request, handed to self.hooks at its end
            self.requests = []
            self.faults = []
            self.idem = {}
            self.conn_ids = set()
            self.clock_offset = 0
            self.refund_next_status = None
            self.hooks.reset()

    def now(self):
        return int(time.time() + self.clock_offset)

    def advance_to(self, ts):
        """Move the emulator clock forward to ts (never backwards)."""
        if ts > self.now():
            self.clock_offset += ts - self.now()

    def take_outbox(self):
        out, self.outbox = self.outbox, []
        return out

    def deliver_outbox(self):
        """Queue the events the current request made; call with self.lock held."""
        if self.outbox:
            self.hooks.dispatch(self.take_outbox(), self.all("webhook_endpoint"))

    def put(self, obj):
        self.objects.setdefault(obj["object"], {})[obj["id"]] = obj
        return obj

    def get(self, obj_type, obj_id):
        return self.objects.get(obj_type, {}).get(obj_id)

    def find(self, obj_id):
        for objs in self.objects.values():
            if obj_id in objs:
                return objs[obj_id]
        return None

    def all(self, obj_type):
        return list(self.objects.get(obj_type, {}).values())

    def livemode_of(self, obj):
        """Objects without a livemode field (refunds) keep it in aux."""
        if "livemode" in obj:
            return obj["livemode"]
        return self.aux.get(obj["id"], {}).get("livemode", False)

    def take_fault(self, method, path):
        with self.lock:
            for f in self.faults:
                if f["remaining"] <= 0:
                    continue
                if not path.startswith(f["path_prefix"]):
                    continue
                if f.get("method") and f["method"] != method:
                    continue
                if f["after"] > 0:
                    # a failure mid-way: the first `after` matching requests pass
                    f["after"] -= 1
                    continue
                f["remaining"] -= 1
                f["hits"] += 1
                return dict(f)
        return None


STATE = State()


class Ctx:
    """Per-request context handed to API handlers."""

    def __init__(self, state, api_key, api_version, request_id, idem_key):
        self.state = state
        self.api_key = api_key
        self.livemode = "_live_" in api_key
        self.api_version = api_version
        self.request_id = request_id
        self.idem_key = idem_key

    def lookup(self, obj_type, obj_id, param):
        obj = self.state.get(obj_type, obj_id)
        if obj is None:
            raise no_such(obj_type, obj_id, param)
        if self.state.livemode_of(obj) != self.livemode:
            raise StripeError(404, "No such %s: '%s'; a similar object exists in %s mode, but a %s "
                              "mode key was used to make this request."
                              % (obj_type, obj_id, "live" if not self.livemode else "test",
                                 "live" if self.livemode else "test"),
                              code="resource_missing", param=param)
        return obj


# --------------------------------------------------------------------------------------
# Object builders. Field sets follow the stripe-mock fixtures (fixtures/stripe_objects.json);
# the self-test checks that they stay the same.
# --------------------------------------------------------------------------------------

def make_event(state, type_, obj, livemode, request_id=None, idem_key=None, previous=None):
    data = {"object": copy.deepcopy(obj)}
    if previous is not None:
        data["previous_attributes"] = previous
    ev = {
        "api_version": state.default_api_version,
        "created": state.now(),
        "data": data,
        "id": "evt_" + ("1" if not livemode else "3") + rand(23),
        "livemode": livemode,
        "object": "event",
        "pending_webhooks": 0,
        "request": {"id": request_id, "idempotency_key": idem_key},
        "type": type_,
    }
    state.events.append(ev)
    state.outbox.append(ev)
    state.put(ev)
    return ev


def emit(ctx_or_state, type_, obj, previous=None):
    if isinstance(ctx_or_state, Ctx):
        c = ctx_or_state
        return make_event(c.state, type_, obj, c.state.livemode_of(obj), c.request_id, c.idem_key, previous)
    return make_event(ctx_or_state, type_, obj, ctx_or_state.livemode_of(obj), None, None, previous)


def make_product(state, livemode, name, description=None, images=None, metadata=None, tax_code=None):
    now = state.now()
    return state.put({
        "active": False, "created": now, "default_price": None, "description": description,
        "id": "prod_" + rand(14), "images": images or [], "livemode": livemode,
        "marketing_features": [], "metadata": metadata or {}, "name": name, "object": "product",
        "package_dimensions": None, "shippable": None, "statement_descriptor": None,
        "tax_code": tax_code, "type": "service", "unit_label": None, "updated": now, "url": None,
    })


def make_price(state, livemode, currency, product_id, unit_amount=None, unit_amount_decimal=None,
               recurring=None, active=False, metadata=None, tax_behavior="unspecified"):
    if unit_amount_decimal is None and unit_amount is not None:
        unit_amount_decimal = str(unit_amount)
    rec = None
    if recurring:
        rec = {"interval": recurring["interval"], "interval_count": recurring.get("interval_count", 1),
               "meter": None, "trial_period_days": None, "usage_type": "licensed"}
    return state.put({
        "active": active, "billing_scheme": "per_unit", "created": state.now(), "currency": currency,
        "custom_unit_amount": None, "id": "price_1" + rand(23), "livemode": livemode,
        "lookup_key": None, "metadata": metadata or {}, "nickname": None, "object": "price",
        "product": product_id, "recurring": rec, "tax_behavior": tax_behavior or "unspecified",
        "tiers_mode": None, "transform_quantity": None,
        "type": "recurring" if rec else "one_time", "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount_decimal,
    })


def make_payment_intent(state, livemode, amount, currency, metadata=None, description=None, receipt_email=None,
                        capture_method="automatic_async", payment_method_types=None,
                        automatic_payment_methods=None, customer=None, statement_descriptor=None,
                        statement_descriptor_suffix=None, setup_future_usage=None, shipping=None,
                        transfer_group=None):
    pi_id = "pi_3" + rand(23)
    return {
        "amount": amount, "amount_capturable": 0, "amount_details": {"tip": {}},
        "amount_received": 0, "application": None, "application_fee_amount": None,
        "automatic_payment_methods": automatic_payment_methods, "canceled_at": None,
        "cancellation_reason": None, "capture_method": capture_method,
        "client_secret": "%s_secret_%s" % (pi_id, rand(25)), "confirmation_method": "automatic",
        "created": state.now(), "currency": currency, "customer": customer,
        "description": description, "excluded_payment_method_types": None, "id": pi_id,
        "last_payment_error": None, "latest_charge": None, "livemode": livemode,
        "metadata": metadata or {}, "next_action": None, "object": "payment_intent",
        "on_behalf_of": None, "payment_method": None,
        "payment_method_configuration_details": None, "payment_method_options": {},
        "payment_method_types": payment_method_types or ["card"], "processing": None,
        "receipt_email": receipt_email, "review": None, "setup_future_usage": setup_future_usage,
        "shipping": shipping, "source": None, "statement_descriptor": statement_descriptor,
        "statement_descriptor_suffix": statement_descriptor_suffix, "status": "requires_payment_method",
        "transfer_data": None, "transfer_group": transfer_group,
    }


_CARD_DETAILS = {
    "amount_authorized": None, "authorization_code": None, "brand": "visa",
    "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
    "country": "US", "exp_month": 12, "exp_year": 2034, "extended_authorization": {"status": "disabled"},
    "fingerprint": None, "funding": "credit", "incremental_authorization": {"status": "unavailable"},
    "installments": None, "last4": "4242", "mandate": None, "multicapture": {"status": "unavailable"},
    "network": "visa", "network_token": {"used": False}, "network_transaction_id": None,
    "overcapture": {"maximum_amount_capturable": 0, "status": "unavailable"},
    "regulated_status": "unregulated", "three_d_secure": None, "wallet": None,
}
_BANK_DETAILS = {"account_holder_type": "individual", "account_type": "checking",
                 "bank_name": "STRIPE TEST BANK", "fingerprint": None, "last4": "6789",
                 "mandate": None, "payment_reference": None, "routing_number": "110000000"}


def make_charge(state, pi, status, pm_id, pm_type, failure=None):
    ch_id = "ch_3" + rand(23)
    details = copy.deepcopy(_CARD_DETAILS if pm_type == "card" else _BANK_DETAILS)
    if pm_type == "card":
        details["fingerprint"] = "fp" + rand(14)
        if failure and failure.get("last4"):
            details["last4"] = failure["last4"]
    succeeded = status == "succeeded"
    return state.put({
        "amount": pi["amount"], "amount_captured": pi["amount"] if succeeded else 0,
        "amount_refunded": 0, "application": None, "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": ("txn_3" + rand(23)) if succeeded else None,
        "billing_details": {"address": {"city": None, "country": None, "line1": None, "line2": None,
                                        "postal_code": None, "state": None},
                            "email": None, "name": None, "phone": None, "tax_id": None},
        "calculated_statement_descriptor": "STRIPEPAY TEST", "captured": succeeded,
        "created": state.now(), "currency": pi["currency"], "customer": pi["customer"],
        "description": pi["description"], "disputed": False, "failure_balance_transaction": None,
        "failure_code": failure["code"] if failure else None,
        "failure_message": failure["message"] if failure else None, "fraud_details": {},
        "id": ch_id, "livemode": pi["livemode"], "metadata": copy.deepcopy(pi["metadata"]),
        "object": "charge", "on_behalf_of": None,
        "outcome": {
            "advice_code": None, "network_advice_code": None, "network_decline_code": None,
            "network_status": "declined_by_network" if failure else "approved_by_network",
            "reason": failure.get("decline_code") if failure else None,
            "risk_level": "normal", "seller_message": ("The bank did not return any further details with this decline."
                                                       if failure else "Payment complete."),
            "type": "issuer_declined" if failure else "authorized"},
        "paid": succeeded, "payment_intent": pi["id"], "payment_method": pm_id,
        "payment_method_details": {pm_type: details, "type": pm_type},
        "receipt_email": pi["receipt_email"], "receipt_number": None,
        "receipt_url": None, "refunded": False, "review": None, "shipping": pi["shipping"], "source": None, "source_transfer": None,
        "statement_descriptor": pi["statement_descriptor"],
        "statement_descriptor_suffix": pi["statement_descriptor_suffix"], "status": status,
        "transfer_data": None, "transfer_group": pi["transfer_group"],
    })


def make_payment_method(state, livemode, pm_type="card", last4="4242"):
    details = {"card": {"brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2034,
                        "funding": "credit", "last4": last4},
               "us_bank_account": {"bank_name": "STRIPE TEST BANK", "last4": "6789"}}[pm_type]
    return state.put({
        "allow_redisplay": "unspecified",
        "billing_details": {"address": {"city": None, "country": None, "line1": None, "line2": None,
                                        "postal_code": None, "state": None},
                            "email": None, "name": None, "phone": None, "tax_id": None},
        "created": state.now(), "customer": None, "id": "pm_1" + rand(23), "livemode": livemode,
        "metadata": {}, "object": "payment_method", pm_type: details, "type": pm_type,
    })


CARD_DECLINED = {"code": "card_declined", "decline_code": "generic_decline",
                 "message": "Your card was declined."}
TEST_PAYMENT_METHODS = {
    # Stripe's documented test PaymentMethods for server-side confirmation.
    "pm_card_visa": None,
    "pm_card_mastercard": None,
    "pm_card_amex": None,
    "pm_card_chargeDeclined": CARD_DECLINED,
    "pm_card_chargeDeclinedInsufficientFunds": {"code": "card_declined", "decline_code": "insufficient_funds",
                                                "message": "Your card has insufficient funds."},
    "pm_card_visa_chargeDeclined": CARD_DECLINED,
}


def attempt_payment(ctx_or_state, pi, outcome, pm_type="card", failure=None):
    """Run one payment attempt on a PaymentIntent: outcome succeeded | failed | processing.

    Returns the charge. Emits the events Stripe sends for that attempt.
    """
    state = ctx_or_state.state if isinstance(ctx_or_state, Ctx) else ctx_or_state
    pm = make_payment_method(state, pi["livemode"], pm_type)
    failure = failure or CARD_DECLINED
    if outcome == "succeeded":
        ch = make_charge(state, pi, "succeeded", pm["id"], pm_type)
        pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=ch["id"],
                  payment_method=pm["id"], last_payment_error=None, processing=None)
        emit(ctx_or_state, "charge.succeeded", ch)
        emit(ctx_or_state, "payment_intent.succeeded", pi)
    elif outcome == "processing":
        ch = make_charge(state, pi, "pending", pm["id"], pm_type)
        pi.update(status="processing", latest_charge=ch["id"], payment_method=pm["id"],
                  last_payment_error=None,
                  processing={"type": pm_type} if pm_type == "card" else None)
        emit(ctx_or_state, "payment_intent.processing", pi)
        emit(ctx_or_state, "charge.pending", ch)
    else:
        ch = make_charge(state, pi, "failed", pm["id"], pm_type, failure)
        pi.update(status="requires_payment_method", latest_charge=ch["id"], payment_method=None,
                  processing=None,
                  last_payment_error={
                      "charge": ch["id"], "code": failure["code"],
                      "decline_code": failure.get("decline_code"),
                      "doc_url": "https://stripe.com/docs/error-codes/" + failure["code"].replace("_", "-"),
                      "message": failure["message"], "payment_method": copy.deepcopy(pm),
                      "type": "card_error" if pm_type == "card" else "invalid_request_error"})
        emit(ctx_or_state, "charge.failed", ch)
        emit(ctx_or_state, "payment_intent.payment_failed", pi)
    return ch


def settle_async(state, pi, outcome):
    """Finish a processing PaymentIntent (bank debits): succeeded | failed."""
    ch = state.get("charge", pi["latest_charge"])
    if outcome == "succeeded":
        ch.update(status="succeeded", paid=True, captured=True, amount_captured=ch["amount"],
                  balance_transaction="txn_3" + rand(23))
        pi.update(status="succeeded", amount_received=pi["amount"], processing=None)
        emit(state, "charge.succeeded", ch)
        emit(state, "payment_intent.succeeded", pi)
    else:
        pm = state.get("payment_method", ch["payment_method"])
        ch.update(status="failed", failure_code="insufficient_funds",
                  failure_message="The customer's account has insufficient funds to cover this payment.")
        pi.update(status="requires_payment_method", processing=None, payment_method=None,
                  last_payment_error={
                      "charge": ch["id"], "code": "payment_intent_payment_attempt_failed",
                      "doc_url": "https://stripe.com/docs/error-codes/payment-intent-payment-attempt-failed",
                      "message": "The customer's account has insufficient funds to cover this payment.",
                      "payment_method": copy.deepcopy(pm), "type": "invalid_request_error"})
        emit(state, "charge.failed", ch)
        emit(state, "payment_intent.payment_failed", pi)


def make_customer(state, livemode, email=None, name=None):
    return state.put({
        "address": None, "balance": 0, "created": state.now(), "currency": None,
        "default_source": None, "delinquent": False, "description": None, "discount": None,
        "email": email, "id": "cus_" + rand(14), "invoice_prefix": rand(8).upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                             "rendering_options": None},
        "livemode": livemode, "metadata": {}, "name": name, "next_invoice_sequence": 1,
        "object": "customer", "phone": None, "preferred_locales": [], "shipping": None,
        "tax_exempt": "none", "test_clock": None,
    })


def _add_interval(ts, interval, count):
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    if interval == "day":
        d += datetime.timedelta(days=count)
    elif interval == "week":
        d += datetime.timedelta(weeks=count)
    else:
        months = count * (12 if interval == "year" else 1)
        y, m = divmod(d.month - 1 + months, 12)
        y += d.year
        m += 1
        day = min(d.day, [31, 29 if y % 4 == 0 and (y % 100 or y % 400 == 0) else 28,
                          31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1])
        d = d.replace(year=y, month=m, day=day)
    return int(d.timestamp())


def make_subscription(state, livemode, customer_id, line_items, metadata, status):
    """Minimal subscription as of API 2025-03-31+: the current period lives on the items."""
    now = state.now()
    sub_id = "sub_1" + rand(23)
    items = []
    for li in line_items:
        price = li["price"]
        if not price.get("recurring"):
            continue
        end = _add_interval(now, price["recurring"]["interval"], price["recurring"]["interval_count"])
        items.append({"billing_thresholds": None, "created": now, "current_period_end": end,
                      "current_period_start": now, "discounts": [], "id": "si_" + rand(14),
                      "metadata": {}, "object": "subscription_item", "plan": plan_of(price),
                      "price": copy.deepcopy(price), "quantity": li["quantity"],
                      "subscription": sub_id, "tax_rates": []})
    return state.put({
        "application": None, "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now, "billing_cycle_anchor_config": None,
        "billing_mode": {"type": "classic"}, "billing_thresholds": None, "cancel_at": None,
        "cancel_at_period_end": False, "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically", "created": now,
        "currency": line_items[0]["currency"], "customer": customer_id, "days_until_due": None,
        "default_payment_method": None, "default_source": None, "default_tax_rates": [],
        "description": None, "discounts": [], "ended_at": None, "id": sub_id,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {"data": items, "has_more": False, "object": "list",
                  "url": "/v1/subscription_items?subscription=" + sub_id},
        "latest_invoice": None, "livemode": livemode, "metadata": metadata or {},
        "next_pending_invoice_item_invoice": None, "object": "subscription", "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
        "schedule": None, "start_date": now, "status": status, "test_clock": None,
        "transfer_data": None, "trial_end": None, "trial_settings": {
            "end_behavior": {"missing_payment_method": "create_invoice"}}, "trial_start": None,
    })


def plan_of(price):
    """The legacy Plan view of a recurring Price (same id), as Stripe still shows on items."""
    rec = price.get("recurring") or {}
    return {
        "active": price.get("active", True), "amount": price.get("unit_amount"),
        "amount_decimal": price.get("unit_amount_decimal"), "billing_scheme": "per_unit",
        "created": price["created"], "currency": price["currency"], "id": price["id"],
        "interval": rec.get("interval"), "interval_count": rec.get("interval_count"),
        "livemode": price["livemode"], "metadata": copy.deepcopy(price.get("metadata") or {}),
        "meter": None, "nickname": price.get("nickname"), "object": "plan", "product": price["product"],
        "tiers_mode": None, "transform_usage": None, "trial_period_days": None,
        "usage_type": rec.get("usage_type", "licensed"),
    }


# -- refunds --------------------------------------------------------------------------

REFUND_FAILURE_REASONS = ("charge_for_pending_refund_disputed", "declined", "expired_or_canceled_card",
                          "insufficient_funds", "lost_or_stolen_card", "merchant_request", "unknown")


def make_refund(state, ch, amount, reason, metadata, status):
    card = "card" in ch["payment_method_details"]
    re_id = "re_3" + rand(23)
    state.aux[re_id] = {"livemode": ch["livemode"]}   # a Refund has no livemode field
    return state.put({
        "amount": amount, "balance_transaction": "txn_3" + rand(23), "charge": ch["id"],
        "created": state.now(), "currency": ch["currency"],
        "destination_details": ({"card": {"type": "reversal"}, "type": "card"} if card else
                                {"type": "us_bank_transfer",
                                 "us_bank_transfer": {"reference": None, "reference_status": "pending"}}),
        "id": re_id, "metadata": metadata or {}, "object": "refund",
        "payment_intent": ch["payment_intent"], "reason": reason, "receipt_number": None,
        "source_transfer_reversal": None, "status": status, "transfer_reversal": None,
    })


def refund_charge_for(state, livemode, pi_id=None, ch_id=None):
    """The charge a refund request targets, after Stripe's checks (raises StripeError)."""
    if pi_id is None and ch_id is None:
        raise invalid("One of the following params should be provided for this request: payment_intent or "
                      "charge.", code="parameter_missing")
    pi = ch = None
    if pi_id is not None:
        pi = state.get("payment_intent", pi_id)
        if pi is None or pi["livemode"] != livemode:
            raise StripeError(400, "No such payment_intent: '%s'" % pi_id, code="resource_missing",
                              param="payment_intent", store=False)
    if ch_id is not None:
        ch = state.get("charge", ch_id)
        if ch is None or ch["livemode"] != livemode:
            raise StripeError(400, "No such charge: '%s'" % ch_id, code="resource_missing", param="charge",
                              store=False)
        if pi is not None and ch["payment_intent"] != pi["id"]:
            raise invalid("The charge %s does not belong to the PaymentIntent %s." % (ch["id"], pi["id"]),
                          param="charge")
    if ch is None:
        ch = state.get("charge", pi["latest_charge"]) if pi["latest_charge"] else None
    if ch is None or ch["status"] != "succeeded":
        owner = pi["id"] if pi is not None else (ch or {}).get("payment_intent")
        if owner:
            raise StripeError(400, "This PaymentIntent (%s) does not have a successful charge to refund."
                              % owner, param="payment_intent" if pi is not None else "charge")
        raise StripeError(400, "Charge %s has not succeeded and cannot be refunded." % ch["id"], param="charge")
    return ch


def create_refund(origin, state, ch, amount=None, reason=None, metadata=None):
    """Refund `amount` (default: what is left) of a succeeded charge; emits the events."""
    left = ch["amount_captured"] - ch["amount_refunded"]
    if left <= 0:
        raise StripeError(400, "Charge %s has already been refunded." % ch["id"], code="charge_already_refunded")
    if amount is None:
        amount = left
    if amount < 1:
        raise invalid("Invalid positive integer", param="amount", code="parameter_invalid_integer")
    if amount > left:
        raise StripeError(400, "Refund amount (%s) is greater than unrefunded amount on charge (%s)"
                          % (money(amount, ch["currency"]), money(left, ch["currency"])),
                          param="amount", code="amount_too_large")
    # Card refunds succeed at once in test mode; bank-debit refunds start pending.
    status = state.refund_next_status or ("succeeded" if "card" in ch["payment_method_details"] else "pending")
    state.refund_next_status = None
    re_ = make_refund(state, ch, amount, reason, metadata, status)
    prev = {"amount_refunded": ch["amount_refunded"]}
    ch["amount_refunded"] += amount
    if ch["amount_refunded"] == ch["amount_captured"]:
        prev["refunded"] = False
        ch["refunded"] = True
    emit(origin, "refund.created", re_)
    emit(origin, "charge.refunded", ch, previous=prev)
    return re_


def settle_refund(state, re_, outcome, failure_reason="expired_or_canceled_card"):
    """A refund's later fate: succeeded | failed | canceled (failed also after succeeded)."""
    old = re_["status"]
    allowed = {"succeeded": ("pending", "requires_action"), "canceled": ("pending", "requires_action"),
               "failed": ("pending", "requires_action", "succeeded")}[outcome]
    if old not in allowed:
        raise ControlError(400, "refund %s is %s; %s needs one of %s" % (re_["id"], old, outcome, ", ".join(allowed)))
    re_["status"] = outcome
    if outcome in ("failed", "canceled"):
        ch = state.get("charge", re_["charge"])
        ch["amount_refunded"] -= re_["amount"]
        ch["refunded"] = False
    if outcome == "failed":
        re_["failure_reason"] = failure_reason
        re_["failure_balance_transaction"] = "txn_3" + rand(23)
    emit(state, "refund.updated", re_, previous={"status": old})
    if outcome == "failed":
        emit(state, "refund.failed", re_, previous={"status": old})
    return re_


# -- PaymentIntent cancelation ---------------------------------------------------------

PI_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")


def cancel_payment_intent_obj(origin, pi, reason):
    state = origin.state if isinstance(origin, Ctx) else origin
    pi.update(status="canceled", canceled_at=state.now(), cancellation_reason=reason)
    emit(origin, "payment_intent.canceled", pi)


# -- invoices and subscription billing -------------------------------------------------

def _line_amount(price, qty):
    if price.get("unit_amount") is not None:
        return price["unit_amount"] * qty
    return int((decimal.Decimal(price["unit_amount_decimal"]) * qty)
               .quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_EVEN))


def make_invoice(state, sub, billing_reason, period_start, period_end):
    """A draft invoice for the subscription's current item periods (shape of API 2025-03-31+)."""
    cust = state.get("customer", sub["customer"])
    now = state.now()
    in_id = "in_1" + rand(23)
    lines = []
    for it in sub["items"]["data"]:
        price = it["price"]
        amount = _line_amount(price, it["quantity"])
        product = state.get("product", price["product"]) or {"name": "Subscription"}
        rec = price.get("recurring") or {}
        lines.append({
            "amount": amount, "currency": sub["currency"],
            "description": "%d × %s (at %s / %s)" % (it["quantity"], product["name"],
                                                      money(price.get("unit_amount") or 0, sub["currency"]),
                                                      rec.get("interval", "month")),
            "discount_amounts": [], "discountable": True, "discounts": [], "id": "il_1" + rand(23),
            "invoice": in_id, "livemode": sub["livemode"], "metadata": copy.deepcopy(sub["metadata"]),
            "object": "line_item",
            "parent": {"invoice_item_details": None, "subscription_item_details": {
                "invoice_item": None, "proration": False, "proration_details": {"credited_items": None},
                "subscription": sub["id"], "subscription_item": it["id"]}, "type": "subscription_item_details"},
            "period": {"end": it["current_period_end"], "start": it["current_period_start"]},
            "pretax_credit_amounts": [],
            "pricing": {"price_details": {"price": price["id"], "product": price["product"]},
                        "type": "price_details", "unit_amount_decimal": price["unit_amount_decimal"]},
            "quantity": it["quantity"], "subscription": None, "taxes": [],
        })
    total = sum(li["amount"] for li in lines)
    return state.put({
        "account_country": "US", "account_name": None, "account_tax_ids": None, "amount_due": total,
        "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": total, "amount_shipping": 0,
        "application": None, "attempt_count": 0, "attempted": False, "auto_advance": True,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                          "status": None},
        "automatically_finalizes_at": now + 3600 if billing_reason == "subscription_cycle" else None,
        "billing_reason": billing_reason, "collection_method": "charge_automatically", "created": now,
        "currency": sub["currency"], "custom_fields": None, "customer": cust["id"],
        "customer_address": cust["address"], "customer_email": cust["email"], "customer_name": cust["name"],
        "customer_phone": cust["phone"], "customer_shipping": cust["shipping"],
        "customer_tax_exempt": cust["tax_exempt"], "customer_tax_ids": [], "default_payment_method": None,
        "default_source": None, "default_tax_rates": [], "description": None, "discounts": [],
        "due_date": None, "effective_at": None, "ending_balance": None, "footer": None, "from_invoice": None,
        "hosted_invoice_url": None, "id": in_id, "invoice_pdf": None, "issuer": {"type": "self"},
        "last_finalization_error": None, "latest_revision": None,
        "lines": {"data": lines, "has_more": False, "object": "list", "url": "/v1/invoices/%s/lines" % in_id},
        "livemode": sub["livemode"], "metadata": {}, "next_payment_attempt": None, "number": None,
        "object": "invoice", "on_behalf_of": None,
        "parent": {"quote_details": None, "subscription_details": {
            "metadata": copy.deepcopy(sub["metadata"]), "subscription": sub["id"]},
            "type": "subscription_details"},
        "payment_settings": {"default_mandate": None, "payment_method_options": None,
                             "payment_method_types": None},
        "period_end": period_end, "period_start": period_start, "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0, "receipt_number": None,
        "rendering": {"amount_tax_display": None, "pdf": {"page_size": "auto"}, "template": None,
                      "template_version": None},
        "shipping_cost": None, "shipping_details": None, "starting_balance": 0, "statement_descriptor": None,
        "status": "draft", "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None,
                                                  "paid_at": None, "voided_at": None},
        "subscription": None, "subtotal": total, "subtotal_excluding_tax": total, "test_clock": None,
        "total": total, "total_discount_amounts": [], "total_excluding_tax": total,
        "total_pretax_credit_amounts": [], "total_taxes": [], "webhooks_delivered_at": None,
    })


def finalize_invoice(state, inv):
    cust = state.get("customer", inv["customer"])
    now = state.now()
    inv.update(status="open", number="%s-%04d" % (cust["invoice_prefix"], cust["next_invoice_sequence"]),
               effective_at=now, automatically_finalizes_at=None, webhooks_delivered_at=now)
    inv["status_transitions"]["finalized_at"] = now
    cust["next_invoice_sequence"] += 1
    emit(state, "invoice.finalized", inv)


def charge_invoice(state, inv, outcome):
    """Pay an open invoice through a PaymentIntent: succeeded | failed | processing."""
    if inv["amount_due"] == 0:
        invoice_paid(state, inv)
        return None
    pi = make_payment_intent(state, inv["livemode"], inv["amount_due"], inv["currency"], customer=inv["customer"],
                             description=("Subscription creation" if inv["billing_reason"] == "subscription_create"
                                          else "Subscription update"))
    state.put(pi)
    pay = state.put({
        "amount_paid": None, "amount_requested": inv["amount_due"], "created": state.now(),
        "currency": inv["currency"], "id": "inpay_1" + rand(23), "invoice": inv["id"], "is_default": True,
        "livemode": inv["livemode"], "object": "invoice_payment",
        "payment": {"payment_intent": pi["id"], "type": "payment_intent"}, "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None}})
    state.aux[inv["id"]] = {"payment_intent": pi["id"], "invoice_payment": pay["id"]}
    emit(state, "payment_intent.created", pi)
    attempt_payment(state, pi, outcome, pm_type="us_bank_account" if outcome == "processing" else "card")
    inv.update(attempted=True, attempt_count=inv["attempt_count"] + 1)
    if outcome == "succeeded":
        invoice_paid(state, inv)
    elif outcome == "failed":
        invoice_payment_failed(state, inv)
    return pi


def invoice_paid(state, inv):
    now = state.now()
    inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0, auto_advance=False,
               next_payment_attempt=None, attempted=True)
    inv["status_transitions"]["paid_at"] = now
    pay = state.get("invoice_payment", state.aux.get(inv["id"], {}).get("invoice_payment"))
    if pay is not None:
        pay.update(status="paid", amount_paid=pay["amount_requested"])
        pay["status_transitions"]["paid_at"] = now
        emit(state, "invoice_payment.paid", pay)
    emit(state, "invoice.paid", inv)
    emit(state, "invoice.payment_succeeded", inv)


def invoice_payment_failed(state, inv):
    inv["next_payment_attempt"] = state.now() + 3 * 86400
    emit(state, "invoice.payment_failed", inv)


def invoice_payments_list(ctx, in_id):
    pays = [p for p in ctx.state.all("invoice_payment") if p["invoice"] == in_id]
    return {"data": copy.deepcopy(pays), "has_more": False, "object": "list",
            "url": "/v1/invoice_payments?invoice=%s" % in_id}


def charge_refunds_list(ctx, ch_id):
    res = [r for r in ctx.state.all("refund") if r["charge"] == ch_id][::-1]
    return {"data": copy.deepcopy(res), "has_more": False, "object": "list",
            "url": "/v1/charges/%s/refunds" % ch_id}


def sub_period(sub):
    it = sub["items"]["data"][0]
    return it["current_period_start"], it["current_period_end"]


def start_next_period(sub, start):
    """Move every item to the period that begins at start; returns the old items list."""
    old = copy.deepcopy(sub["items"])
    for it in sub["items"]["data"]:
        rec = it["price"]["recurring"]
        it["current_period_start"] = start
        it["current_period_end"] = _add_interval(start, rec["interval"], rec["interval_count"])
    return old


def sub_set_status(state, sub, status, extra_prev=None):
    prev = dict(extra_prev or {})
    if sub["status"] != status:
        prev["status"] = sub["status"]
        sub["status"] = status
    if prev:
        emit(state, "customer.subscription.updated", sub, previous=prev)


def cancel_subscription_now(origin, sub, details=None, at=None):
    state = origin.state if isinstance(origin, Ctx) else origin
    now = at or state.now()
    sub.update(status="canceled", ended_at=now, canceled_at=sub["canceled_at"] or now, cancel_at=None)
    sub["cancellation_details"] = {"comment": (details or {}).get("comment"),
                                   "feedback": (details or {}).get("feedback"),
                                   "reason": "cancellation_requested"}
    emit(origin, "customer.subscription.deleted", sub)


def renew_subscription(state, sub, outcome):
    """The period ends: bill the next one (outcome succeeded | failed) or end a canceling one."""
    start, end = sub_period(sub)
    state.advance_to(end)
    if sub["cancel_at_period_end"] or (sub["cancel_at"] is not None and sub["cancel_at"] <= end):
        cancel_subscription_now(state, sub, sub["cancellation_details"], at=end)
        return None
    old_items = start_next_period(sub, end)
    inv = make_invoice(state, sub, "subscription_cycle", start, end)
    prev = {"items": old_items, "latest_invoice": sub["latest_invoice"]}
    sub["latest_invoice"] = inv["id"]
    emit(state, "customer.subscription.updated", sub, previous=prev)
    emit(state, "invoice.created", inv)
    finalize_invoice(state, inv)
    charge_invoice(state, inv, outcome)
    sub_set_status(state, sub, "active" if outcome == "succeeded" else "past_due")
    return inv


def resume_subscription(origin, sub, anchor="now"):
    """A paused subscription resumes; billing_cycle_anchor=now starts and bills a new period."""
    state = origin.state if isinstance(origin, Ctx) else origin
    prev = {"status": sub["status"], "pause_collection": sub["pause_collection"]}
    sub.update(status="active", pause_collection=None)
    inv = None
    if anchor == "now":
        prev["items"] = start_next_period(sub, state.now())
        prev["billing_cycle_anchor"] = sub["billing_cycle_anchor"]
        prev["latest_invoice"] = sub["latest_invoice"]
        sub["billing_cycle_anchor"] = state.now()
        s, e = sub_period(sub)
        inv = make_invoice(state, sub, "subscription_update", s, s)
        sub["latest_invoice"] = inv["id"]
    emit(origin, "customer.subscription.resumed", sub)
    emit(origin, "customer.subscription.updated", sub, previous=prev)
    if inv is not None:
        emit(origin, "invoice.created", inv)
        finalize_invoice(state, inv)
        charge_invoice(state, inv, "succeeded")
    return sub


# --------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------

API_ROUTES = []       # (method, compiled regex, handler, spec key)
CONTROL_ROUTES = []   # (method, compiled regex, handler)


def api(method, pattern, spec_key):
    def deco(fn):
        API_ROUTES.append((method, re.compile("^" + pattern + "$"), fn, spec_key))
        return fn
    return deco


def control(method, pattern, lock=True):
    """A control route. lock=False for handlers that wait (they take State.lock themselves)."""
    def deco(fn):
        CONTROL_ROUTES.append((method, re.compile("^" + pattern + "$"), fn, lock))
        return fn
    return deco


ID = r"([A-Za-z0-9_]+)"

# Fields Stripe can expand, per object type (the subset whose targets the emulator stores).
EXPANDABLE = {
    "checkout.session": {"customer", "payment_intent", "subscription", "line_items", "invoice",
                         "payment_link", "setup_intent"},
    "payment_intent": {"customer", "latest_charge", "payment_method", "application", "on_behalf_of",
                       "review"},
    "charge": {"customer", "payment_intent", "payment_method", "balance_transaction", "application",
               "application_fee", "review", "on_behalf_of", "source_transfer", "transfer", "refunds"},
    "item": {"price"},
    "price": {"product"},
    "plan": {"product"},
    "event": set(),
    "refund": {"charge", "payment_intent", "balance_transaction", "failure_balance_transaction",
               "source_transfer_reversal", "transfer_reversal"},
    "subscription": {"customer", "latest_invoice", "default_payment_method", "default_source",
                     "pending_setup_intent", "schedule", "application", "on_behalf_of", "test_clock"},
    "subscription_item": {"price", "plan"},
    "invoice": {"customer", "payments", "default_payment_method", "default_source", "latest_revision",
                "on_behalf_of", "application", "test_clock", "account_tax_ids"},
    "invoice_payment": {"invoice"},
    "webhook_endpoint": set(),
}


def _includable(fn_name):
    return lambda ctx, obj: globals()[fn_name](ctx, obj["id"])


# Fields that are absent unless expanded (Stripe's "includable" fields), built on demand.
INCLUDABLE = {
    ("checkout.session", "line_items"): _includable("line_items_list"),
    ("invoice", "payments"): _includable("invoice_payments_list"),
    ("charge", "refunds"): _includable("charge_refunds_list"),
}


def expand(ctx, obj, paths):
    obj = copy.deepcopy(obj)
    for path in paths:
        _expand_one(ctx, obj, path.split("."), path, 0)
    return obj


def _expand_one(ctx, obj, parts, full, depth):
    if depth >= 4:
        raise invalid("You cannot expand more than 4 levels of a property. Property: %s" % full,
                      param="expand")
    if isinstance(obj, list):
        for o in obj:
            _expand_one(ctx, o, parts, full, depth)
        return
    if not isinstance(obj, dict):
        return
    head, rest = parts[0], parts[1:]
    otype = obj.get("object")
    if otype == "list" and head == "data":
        _expand_one(ctx, obj["data"], rest, full, depth) if rest else None
        return
    if otype == "list":
        raise invalid("This property cannot be expanded (%s). You may want to try expanding 'data.%s' "
                      "instead." % (head, full), param="expand")
    if head not in EXPANDABLE.get(otype, set()):
        raise invalid("This property cannot be expanded (%s)." % head, param="expand")
    if (otype, head) in INCLUDABLE:
        obj[head] = INCLUDABLE[(otype, head)](ctx, obj)
    else:
        val = obj.get(head)
        if isinstance(val, str):
            target = ctx.state.find(val)
            if target is not None:
                obj[head] = copy.deepcopy(target)
    if rest:
        _expand_one(ctx, obj.get(head), rest, full, depth + 1)


def paginate(ctx, objs, params, url, id_param_type, presorted=False):
    """Stripe list object; objs newest first unless presorted (then taken as given)."""
    limit = params.get("limit", 10)
    check_range(limit, 1, 100, "limit")
    if not presorted:
        objs = [o for _, o in sorted(enumerate(objs), key=lambda io: (io[1]["created"], io[0]),
                                     reverse=True)]
    ids = [o["id"] for o in objs]
    if "starting_after" in params and "ending_before" in params:
        raise exclusive("starting_after", "ending_before")
    if "starting_after" in params:
        sid = params["starting_after"]
        if sid not in ids:
            raise no_such(id_param_type, sid, "starting_after")
        objs = objs[ids.index(sid) + 1:]
        page = objs[:limit]
        more = len(objs) > limit
    elif "ending_before" in params:
        eid = params["ending_before"]
        if eid not in ids:
            raise no_such(id_param_type, eid, "ending_before")
        objs = objs[:ids.index(eid)]
        page = objs[-limit:]
        more = len(objs) > limit
    else:
        page = objs[:limit]
        more = len(objs) > limit
    # No copies: responses are serialised under State.lock, and expand() copies before it changes.
    return {"object": "list", "data": list(page), "has_more": more, "url": url}


def filter_created(objs, created):
    if created is None:
        return objs
    if isinstance(created, int):
        return [o for o in objs if o["created"] == created]
    ops = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
           "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
    for k, v in created.items():
        objs = [o for o in objs if ops[k](o["created"], v)]
    return objs


# --------------------------------------------------------------------------------------
# Checkout Sessions
# --------------------------------------------------------------------------------------

def _hosted(ui_mode):
    return ui_mode in ("hosted", "hosted_page")


def _build_line_items(ctx, p, mode):
    items = []
    currency = None
    for i, li in enumerate(p.get("line_items") or []):
        name = "line_items[%d]" % i
        if "price" in li and "price_data" in li:
            raise exclusive(name + "[price]", name + "[price_data]")
        if "price" not in li and "price_data" not in li:
            raise invalid("You must specify either `price` or `price_data` in `%s`." % name,
                          param=name, code="parameter_missing")
        if "quantity" not in li:
            raise missing(name + "[quantity]")
        qty = li["quantity"]
        check_range(qty, 1, 999999, name + "[quantity]")
        if "price" in li:
            price = ctx.state.get("price", li["price"])
            if price is None or price["livemode"] != ctx.livemode:
                raise StripeError(400, "No such price: '%s'" % li["price"], code="resource_missing",
                                  param=name + "[price]", store=False)
            price = copy.deepcopy(price)
            product = ctx.state.get("product", price["product"])
        else:
            pd = li["price_data"]
            pdn = name + "[price_data]"
            cur = check_currency(pd["currency"], pdn + "[currency]")
            if "unit_amount" in pd and "unit_amount_decimal" in pd:
                raise exclusive(pdn + "[unit_amount]", pdn + "[unit_amount_decimal]")
            if "unit_amount" not in pd and "unit_amount_decimal" not in pd:
                raise missing(pdn + "[unit_amount]")
            if "product" in pd and "product_data" in pd:
                raise exclusive(pdn + "[product]", pdn + "[product_data]")
            if "product" in pd:
                product = ctx.state.get("product", pd["product"])
                if product is None:
                    raise StripeError(400, "No such product: '%s'" % pd["product"],
                                      code="resource_missing", param=pdn + "[product]", store=False)
            elif "product_data" in pd:
                prd = pd["product_data"]
                for j, url in enumerate(prd.get("images", [])):
                    check_url(url, "%s[product_data][images][%d]" % (pdn, j))
                product = None  # created below, once every check has passed
            else:
                raise missing(pdn + "[product_data]")
            ua, uad = pd.get("unit_amount"), pd.get("unit_amount_decimal")
            if ua is not None:
                check_range(ua, 0, MAX_AMOUNT, pdn + "[unit_amount]")
            else:
                try:
                    dec = decimal.Decimal(uad)
                except decimal.InvalidOperation:
                    raise invalid("Invalid decimal: %s" % uad, param=pdn + "[unit_amount_decimal]")
                if dec < 0 or dec > MAX_AMOUNT or -dec.as_tuple().exponent > 12:
                    raise invalid("Invalid decimal: %s" % uad, param=pdn + "[unit_amount_decimal]")
            price = {"_price_data": pd, "currency": cur, "unit_amount": ua, "unit_amount_decimal": uad,
                     "recurring": pd.get("recurring")}
        cur = price["currency"]
        if currency is None:
            currency = cur
        elif cur != currency:
            raise invalid("All line items must use the same currency; got %s and %s."
                          % (currency, cur), param=name)
        if price.get("unit_amount") is not None:
            subtotal = price["unit_amount"] * qty
        else:
            subtotal = int((decimal.Decimal(price["unit_amount_decimal"]) * qty)
                           .quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_EVEN))
        items.append({"li": li, "price": price, "product": product, "quantity": qty,
                      "currency": cur, "subtotal": subtotal, "recurring": bool(price.get("recurring"))})
    return items, currency


@api("POST", r"/v1/checkout/sessions", "POST /v1/checkout/sessions")
def create_checkout_session(ctx, p):
    st = ctx.state
    if "mode" not in p:
        raise missing("mode")
    mode = p["mode"]
    new_names = version_date(ctx.api_version) >= "2026-03-25"
    ui_mode = p.get("ui_mode", "hosted_page" if new_names else "hosted")
    hosted = _hosted(ui_mode)
    if hosted:
        # Required for hosted pages in every version we know of; stricter is the safe side.
        if "success_url" not in p:
            raise missing("success_url")
        if "return_url" in p:
            raise invalid("`return_url` cannot be used with `ui_mode: %s`." % ui_mode, param="return_url")
    else:
        for k in ("success_url", "cancel_url"):
            if k in p:
                raise invalid("`%s` cannot be used with `ui_mode: %s`." % (k, ui_mode), param=k)
        if "return_url" not in p and p.get("redirect_on_completion") != "never":
            raise missing("return_url")
    for k in ("success_url", "cancel_url", "return_url"):
        if k in p:
            check_url(p[k], k)
    if "customer" in p and "customer_email" in p:
        raise exclusive("customer", "customer_email")
    if "customer_email" in p:
        check_email(p["customer_email"], "customer_email")
    if "customer" in p:
        ctx.lookup("customer", p["customer"], "customer")
    if mode != "payment" and "payment_intent_data" in p:
        raise invalid("You can not pass `payment_intent_data` in `%s` mode." % mode, param="payment_intent_data")
    if mode != "subscription" and "subscription_data" in p:
        raise invalid("You can not pass `subscription_data` in `%s` mode." % mode, param="subscription_data")
    pid = p.get("payment_intent_data", {})
    if "receipt_email" in pid:
        check_email(pid["receipt_email"], "payment_intent_data[receipt_email]")
    now = st.now()
    expires_at = p.get("expires_at", now + 24 * 3600)
    if expires_at > now + 24 * 3600:
        raise invalid("The `expires_at` timestamp must be less than 24 hours from Checkout Session "
                      "creation.", param="expires_at")
    if expires_at < now + 30 * 60:
        raise invalid("The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
                      "creation.", param="expires_at")
    if mode == "setup":
        if p.get("line_items"):
            raise invalid("You cannot pass `line_items` in `setup` mode.", param="line_items")
        if "currency" not in p and "payment_method_types" not in p:
            raise missing("currency")
        items, currency = [], None
    else:
        if not p.get("line_items"):
            raise missing("line_items")
        items, currency = _build_line_items(ctx, p, mode)
        if mode == "payment" and any(it["recurring"] for it in items):
            raise invalid("You specified `payment` mode but passed a recurring price. Either switch to "
                          "`subscription` mode or use only one-time prices.", param="mode")
        if mode == "subscription" and not any(it["recurring"] for it in items):
            raise invalid("You must provide at least one recurring price in `subscription` mode when "
                          "using prices.", param="mode")
    if "currency" in p:
        top = check_currency(p["currency"], "currency")
        if currency is not None and top != currency:
            raise invalid("The currency provided (%s) does not match the line items' currency (%s)."
                          % (top, currency), param="currency")
        currency = top
    total = sum(it["subtotal"] for it in items)
    if mode == "payment":
        if total > MAX_AMOUNT:
            raise invalid("The Checkout Session's total amount due must be no more than %s %s."
                          % (money(MAX_AMOUNT, currency), currency), param="line_items",
                          code="amount_too_large")
        minimum = MIN_CHARGE.get(currency, 1)
        if total < minimum:
            raise invalid("The Checkout Session's total amount due must add up to at least %s %s"
                          % (money(minimum, currency), currency), param="line_items",
                          code="amount_too_small")

    # Every check passed: from here on the request executes and creates objects.
    line_items = []
    for it in items:
        price = it["price"]
        if "_price_data" in price:
            pd = price["_price_data"]
            product = it["product"]
            if product is None and "product_data" in pd:
                prd = pd["product_data"]
                product = make_product(st, ctx.livemode, prd["name"], prd.get("description"),
                                       prd.get("images"), prd.get("metadata") or None, prd.get("tax_code"))
            price = make_price(st, ctx.livemode, price["currency"], product["id"],
                               price["unit_amount"], price["unit_amount_decimal"], pd.get("recurring"),
                               tax_behavior=pd.get("tax_behavior"))
            price = copy.deepcopy(price)
        line_items.append({
            "amount_discount": 0, "amount_subtotal": it["subtotal"], "amount_tax": 0,
            "amount_total": it["subtotal"], "currency": it["currency"],
            "description": (it["product"] or st.get("product", price["product"]) or {}).get("name"),
            "id": "li_1" + rand(23), "object": "item", "price": price, "quantity": it["quantity"],
        })
    live = "live" if ctx.livemode else "test"
    cs_id = "cs_%s_a1%s" % (live, rand(56))
    metadata = {k: v for k, v in p.get("metadata", {}).items() if v != ""} if p.get("metadata") else {}
    session = {
        "adaptive_pricing": {"enabled": bool(p.get("adaptive_pricing", {}).get("enabled", False))},
        "after_expiration": None, "allow_promotion_codes": p.get("allow_promotion_codes"),
        "amount_subtotal": total if mode != "setup" else None,
        "amount_total": total if mode != "setup" else None,
        "automatic_tax": {"enabled": bool(p.get("automatic_tax", {}).get("enabled", False)),
                          "liability": None, "provider": None, "status": None},
        "billing_address_collection": p.get("billing_address_collection"),
        "cancel_url": p.get("cancel_url"), "client_reference_id": p.get("client_reference_id"),
        "client_secret": None if hosted else "%s_secret_%s" % (cs_id, rand(24)),
        "collected_information": None, "consent": None, "consent_collection": None,
        "created": now, "currency": currency, "currency_conversion": None, "custom_fields": [],
        "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                        "terms_of_service_acceptance": None},
        "customer": p.get("customer"),
        "customer_creation": p.get("customer_creation", "if_required") if mode == "payment" else None,
        "customer_details": None, "customer_email": p.get("customer_email"), "discounts": [],
        "expires_at": expires_at, "id": cs_id, "invoice": None,
        "invoice_creation": ({"enabled": False, "invoice_data": {
            "account_tax_ids": None, "custom_fields": None, "description": None, "footer": None,
            "issuer": None, "metadata": {}, "rendering_options": None}} if mode == "payment" else None),
        "livemode": ctx.livemode, "locale": p.get("locale"), "metadata": metadata, "mode": mode,
        "object": "checkout.session", "origin_context": None, "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": ("if_required" if mode == "payment" else "always"),
        "payment_method_configuration_details": None, "payment_method_options": {},
        "payment_method_types": p.get("payment_method_types", ["card"]),
        "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": bool(p.get("phone_number_collection", {}).get("enabled", False))},
        "recovered_from": None, "saved_payment_method_options": None, "setup_intent": None,
        "shipping_address_collection": p.get("shipping_address_collection"), "shipping_cost": None,
        "shipping_options": [], "status": "open", "submit_type": p.get("submit_type"),
        "subscription": None, "success_url": p.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": ui_mode, "url": ("%s/pay/%s" % (st.base_url, cs_id)) if hosted else None,
        "wallet_options": None,
    }
    if not hosted:
        session["return_url"] = p.get("return_url")
        session["redirect_on_completion"] = p.get("redirect_on_completion", "always")
    st.put(session)
    st.aux[cs_id] = {"line_items": line_items, "payment_intent_data": pid,
                     "subscription_data": p.get("subscription_data", {})}
    return 200, session


def _session_expire_lazily(st, session):
    if session["status"] == "open" and st.now() >= session["expires_at"]:
        expire_session(st, session, None)


def expire_session(st, session, ctx):
    # A PaymentIntent left behind by a failed attempt is canceled with the session.
    pi = st.get("payment_intent", session["payment_intent"]) if session.get("payment_intent") else None
    if pi is not None and pi["status"] in PI_CANCELABLE:
        cancel_payment_intent_obj(ctx or st, pi, "automatic")
    session.update(status="expired", url=None)
    emit(ctx or st, "checkout.session.expired", session)


def line_items_list(ctx, cs_id):
    items = ctx.state.aux.get(cs_id, {}).get("line_items", [])
    return {"data": copy.deepcopy(items), "has_more": False, "object": "list",
            "url": "/v1/checkout/sessions/%s/line_items" % cs_id}


@api("GET", r"/v1/checkout/sessions/" + ID, "GET /v1/checkout/sessions/{session}")
def get_checkout_session(ctx, p, cs_id):
    s = ctx.lookup("checkout.session", cs_id, "session")
    _session_expire_lazily(ctx.state, s)
    return 200, s


@api("POST", r"/v1/checkout/sessions/" + ID + r"/expire", "POST /v1/checkout/sessions/{session}/expire")
def expire_checkout_session(ctx, p, cs_id):
    s = ctx.lookup("checkout.session", cs_id, "session")
    _session_expire_lazily(ctx.state, s)
    if s["status"] != "open":
        raise StripeError(400, 'Only Checkout Sessions with a status in ["open"] can be expired. This '
                          'Checkout Session has a status of "%s".' % s["status"])
    expire_session(ctx.state, s, ctx)
    return 200, s


@api("GET", r"/v1/checkout/sessions/" + ID + r"/line_items", "GET /v1/checkout/sessions/{session}/line_items")
def get_checkout_session_line_items(ctx, p, cs_id):
    ctx.lookup("checkout.session", cs_id, "session")
    items = ctx.state.aux.get(cs_id, {}).get("line_items", [])
    return 200, paginate(ctx, items, p, "/v1/checkout/sessions/%s/line_items" % cs_id, "item",
                         presorted=True)


@api("GET", r"/v1/checkout/sessions", "GET /v1/checkout/sessions")
def list_checkout_sessions(ctx, p):
    objs = [s for s in ctx.state.all("checkout.session") if s["livemode"] == ctx.livemode]
    for s in objs:
        _session_expire_lazily(ctx.state, s)
    for k in ("payment_intent", "subscription", "customer", "payment_link", "status"):
        if k in p:
            objs = [s for s in objs if s.get(k) == p[k]]
    if "customer_details" in p:
        objs = [s for s in objs if (s.get("customer_details") or {}).get("email") == p["customer_details"]["email"]]
    objs = filter_created(objs, p.get("created"))
    return 200, paginate(ctx, objs, p, "/v1/checkout/sessions", "checkout.session")


# --------------------------------------------------------------------------------------
# PaymentIntents, Charges, Events
# --------------------------------------------------------------------------------------

@api("POST", r"/v1/payment_intents", "POST /v1/payment_intents")
def create_payment_intent(ctx, p):
    st = ctx.state
    cur = check_currency(p["currency"], "currency")
    check_amount(p["amount"], cur, "amount")
    if "payment_method_types" in p and "automatic_payment_methods" in p:
        raise exclusive("automatic_payment_methods", "payment_method_types")
    if "receipt_email" in p:
        check_email(p["receipt_email"], "receipt_email")
    if "customer" in p:
        ctx.lookup("customer", p["customer"], "customer")
    if "return_url" in p:
        check_url(p["return_url"], "return_url")
    if "return_url" in p and not p.get("confirm"):
        raise invalid("You cannot provide a `return_url` without confirming the PaymentIntent. Provide "
                      "`confirm=true` in your request or remove `return_url`.", param="return_url")
    apm = None
    if "payment_method_types" not in p:
        # Since 2023-08-16 automatic payment methods are on unless payment_method_types is given.
        given = p.get("automatic_payment_methods", {"enabled": True})
        apm = {"allow_redirects": given.get("allow_redirects", "always"), "enabled": given["enabled"]}
        if not apm["enabled"]:
            apm = None
    pm = p.get("payment_method")
    outcome = None
    if p.get("confirm"):
        if pm is None and "confirmation_token" not in p:
            raise invalid("You cannot confirm this PaymentIntent because it's missing a payment method. "
                          "To confirm the PaymentIntent, pass a `payment_method` or `confirmation_token`.",
                          param="payment_method", code="payment_intent_unexpected_state")
        if pm is None:
            raise StripeError(400, "No such confirmationtoken: '%s'" % p["confirmation_token"],
                              code="resource_missing", param="confirmation_token", store=False)
        if pm not in TEST_PAYMENT_METHODS:
            raise StripeError(400, "No such PaymentMethod: '%s'" % pm, code="resource_missing",
                              param="payment_method", store=False)
        if apm and apm["allow_redirects"] == "always" and "return_url" not in p:
            raise invalid("This PaymentIntent is configured to accept payment methods enabled in your "
                          "Dashboard, some of which may require a full page redirect to succeed. If you do "
                          "not want to accept redirect-based payment methods, set "
                          "`automatic_payment_methods[enabled]` to `true` and "
                          "`automatic_payment_methods[allow_redirects]` to `never` when creating Setup "
                          "Intents and Payment Intents.", param="return_url")
        outcome = TEST_PAYMENT_METHODS[pm]
    elif pm is not None and pm not in TEST_PAYMENT_METHODS:
        raise StripeError(400, "No such PaymentMethod: '%s'" % pm, code="resource_missing",
                          param="payment_method", store=False)
    metadata = {k: v for k, v in p.get("metadata", {}).items() if v != ""} if p.get("metadata") else {}
    pi = make_payment_intent(
        st, ctx.livemode, p["amount"], cur, metadata=metadata, description=p.get("description"),
        receipt_email=p.get("receipt_email"), capture_method=p.get("capture_method", "automatic_async"),
        payment_method_types=p.get("payment_method_types"), automatic_payment_methods=apm,
        customer=p.get("customer"), statement_descriptor=p.get("statement_descriptor"),
        statement_descriptor_suffix=p.get("statement_descriptor_suffix"),
        setup_future_usage=p.get("setup_future_usage"), shipping=p.get("shipping"),
        transfer_group=p.get("transfer_group"))
    st.put(pi)
    emit(ctx, "payment_intent.created", pi)
    if p.get("confirm"):
        if outcome is None:
            attempt_payment(ctx, pi, "succeeded")
        else:
            attempt_payment(ctx, pi, "failed", failure=outcome)
            err = pi["last_payment_error"]
            raise StripeError(402, err["message"], type_="card_error", code=err["code"],
                              decline_code=err.get("decline_code"), param=None,
                              extra={"charge": err["charge"], "payment_intent": copy.deepcopy(pi),
                                     "payment_method": copy.deepcopy(err["payment_method"])})
    return 200, pi


@api("GET", r"/v1/payment_intents/" + ID, "GET /v1/payment_intents/{intent}")
def get_payment_intent(ctx, p, pi_id):
    pi = ctx.lookup("payment_intent", pi_id, "intent")
    if "client_secret" in p and p["client_secret"] != pi["client_secret"]:
        raise invalid("The client_secret provided does not match the client_secret associated with the "
                      "PaymentIntent.", param="client_secret")
    return 200, pi


@api("GET", r"/v1/payment_intents", "GET /v1/payment_intents")
def list_payment_intents(ctx, p):
    objs = [o for o in ctx.state.all("payment_intent") if o["livemode"] == ctx.livemode]
    if "customer" in p:
        objs = [o for o in objs if o["customer"] == p["customer"]]
    objs = filter_created(objs, p.get("created"))
    return 200, paginate(ctx, objs, p, "/v1/payment_intents", "payment_intent")


@api("GET", r"/v1/charges/" + ID, "GET /v1/charges/{charge}")
def get_charge(ctx, p, ch_id):
    return 200, ctx.lookup("charge", ch_id, "charge")


@api("GET", r"/v1/events/" + ID, "GET /v1/events/{id}")
def get_event(ctx, p, ev_id):
    return 200, ctx.lookup("event", ev_id, "id")


@api("GET", r"/v1/events", "GET /v1/events")
def list_events(ctx, p):
    st = ctx.state
    # st.events is in creation order and the clock never goes back: newest first without a sort
    cutoff = st.now() - 30 * 86400
    objs = [e for e in reversed(st.events) if e["livemode"] == ctx.livemode and e["created"] >= cutoff]
    if "type" in p and "types" in p:
        raise exclusive("type", "types")
    if "type" in p:
        pat = re.compile("^" + re.escape(p["type"]).replace(r"\*", "[^ ]*") + "$")
        objs = [e for e in objs if pat.match(e["type"])]
    if "types" in p:
        objs = [e for e in objs if e["type"] in set(p["types"])]
    if "delivery_success" in p:
        # false: some endpoint has not answered 2xx yet (still retrying or given up).
        objs = [e for e in objs if (e["pending_webhooks"] == 0) == p["delivery_success"]]
    objs = filter_created(objs, p.get("created"))
    return 200, paginate(ctx, objs, p, "/v1/events", "event", presorted=True)


@api("POST", r"/v1/payment_intents/" + ID + r"/cancel", "POST /v1/payment_intents/{intent}/cancel")
def cancel_payment_intent(ctx, p, pi_id):
    pi = ctx.lookup("payment_intent", pi_id, "intent")
    if pi["status"] not in PI_CANCELABLE:
        raise StripeError(400, "You cannot cancel this PaymentIntent because it has a status of %s. Only a "
                          "PaymentIntent with one of the following statuses may be canceled: %s."
                          % (pi["status"], ", ".join(PI_CANCELABLE)),
                          code="payment_intent_unexpected_state", extra={"payment_intent": copy.deepcopy(pi)})
    cancel_payment_intent_obj(ctx, pi, p.get("cancellation_reason"))
    return 200, pi


def merge_metadata(old, new):
    """Stripe's update semantics: "" clears all, a key set to "" is removed."""
    if new == "":
        return {}
    out = dict(old)
    for k, v in new.items():
        if v == "":
            out.pop(k, None)
        else:
            out[k] = v
    return out


def clean_metadata(md):
    return {k: v for k, v in md.items() if v != ""} if md else {}


# --------------------------------------------------------------------------------------
# Refunds
# --------------------------------------------------------------------------------------

@api("POST", r"/v1/refunds", "POST /v1/refunds")
def create_refund_api(ctx, p):
    for k in ("customer", "origin", "instructions_email", "currency"):
        if k in p:   # customer-balance refunds: no such balance in the emulator
            raise invalid("The emulator only refunds charges: `%s` is not supported." % k, param=k)
    if "amount" in p:
        check_range(p["amount"], 1, None, "amount")
    ch = refund_charge_for(ctx.state, ctx.livemode, p.get("payment_intent"), p.get("charge"))
    return 200, create_refund(ctx, ctx.state, ch, p.get("amount"), p.get("reason"), clean_metadata(p.get("metadata")))


@api("GET", r"/v1/refunds/" + ID, "GET /v1/refunds/{refund}")
def get_refund(ctx, p, re_id):
    return 200, ctx.lookup("refund", re_id, "refund")


@api("GET", r"/v1/refunds", "GET /v1/refunds")
def list_refunds(ctx, p):
    objs = [r for r in ctx.state.all("refund") if ctx.state.livemode_of(r) == ctx.livemode]
    for k in ("payment_intent", "charge"):
        if k in p:
            objs = [r for r in objs if r[k] == p[k]]
    objs = filter_created(objs, p.get("created"))
    return 200, paginate(ctx, objs, p, "/v1/refunds", "refund")


# --------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------

MAX_INTERVAL_COUNT = {"day": 365, "week": 52, "month": 12, "year": 1}


@api("POST", r"/v1/prices", "POST /v1/prices")
def create_price_api(ctx, p):
    st = ctx.state
    cur = check_currency(p["currency"], "currency")
    for k in ("tiers", "tiers_mode", "custom_unit_amount", "currency_options", "transform_quantity"):
        if k in p:
            raise invalid("The emulator supports per-unit prices only: `%s` is not supported." % k, param=k)
    if p.get("billing_scheme") == "tiered":
        raise invalid("The emulator supports per-unit prices only.", param="billing_scheme")
    if "product" in p and "product_data" in p:
        raise exclusive("product", "product_data")
    if "product" not in p and "product_data" not in p:
        raise missing("product")
    if "unit_amount" in p and "unit_amount_decimal" in p:
        raise exclusive("unit_amount", "unit_amount_decimal")
    if "unit_amount" not in p and "unit_amount_decimal" not in p:
        raise missing("unit_amount")
    ua, uad = p.get("unit_amount"), p.get("unit_amount_decimal")
    if ua is not None:
        check_range(ua, 0, MAX_AMOUNT, "unit_amount")
    else:
        try:
            dec = decimal.Decimal(uad)
        except decimal.InvalidOperation:
            raise invalid("Invalid decimal: %s" % uad, param="unit_amount_decimal")
        if not dec.is_finite() or dec < 0 or dec > MAX_AMOUNT or -dec.as_tuple().exponent > 12:
            raise invalid("Invalid decimal: %s" % uad, param="unit_amount_decimal")
    rec = p.get("recurring")
    if rec:
        count = rec.get("interval_count", 1)
        if count < 1 or count > MAX_INTERVAL_COUNT[rec["interval"]]:
            raise invalid("Invalid recurring[interval_count]: the maximum billing interval is one year "
                          "(1 year, 12 months, 52 weeks or 365 days).", param="recurring[interval_count]")
        if rec.get("usage_type", "licensed") != "licensed" or "aggregate_usage" in rec:
            raise invalid("The emulator supports licensed prices only.", param="recurring[usage_type]")
    if "product" in p:
        product = st.get("product", p["product"])
        if product is None or product["livemode"] != ctx.livemode:
            raise StripeError(400, "No such product: '%s'" % p["product"], code="resource_missing",
                              param="product", store=False)
    else:
        pd = p["product_data"]
        if "id" in pd and st.get("product", pd["id"]) is not None:
            raise invalid("Product already exists.", param="product_data[id]", code="resource_already_exists")
        product = make_product(st, ctx.livemode, pd["name"], metadata=clean_metadata(pd.get("metadata")),
                               tax_code=pd.get("tax_code"))
        if "id" in pd:
            st.objects["product"].pop(product["id"])
            product["id"] = pd["id"]
            st.put(product)
        product.update(active=pd.get("active", True), statement_descriptor=pd.get("statement_descriptor"),
                       unit_label=pd.get("unit_label"))
        emit(ctx, "product.created", product)
    price = make_price(st, ctx.livemode, cur, product["id"], ua, uad, rec, active=p.get("active", True),
                       metadata=clean_metadata(p.get("metadata")), tax_behavior=p.get("tax_behavior"))
    price.update(nickname=p.get("nickname"), lookup_key=p.get("lookup_key"))
    if rec:
        emit(ctx, "plan.created", plan_of(price))
    emit(ctx, "price.created", price)
    return 200, price


@api("GET", r"/v1/prices/" + ID, "GET /v1/prices/{price}")
def get_price(ctx, p, price_id):
    return 200, ctx.lookup("price", price_id, "price")


# --------------------------------------------------------------------------------------
# Subscriptions and invoices
# --------------------------------------------------------------------------------------

SUB_ENDED = ("canceled", "incomplete_expired")
# Accepted by Stripe on update but not emulated: rejected explicitly rather than ignored.
SUB_UPDATE_SUPPORTED = {"cancel_at_period_end", "cancel_at", "metadata", "pause_collection",
                        "cancellation_details", "description", "expand", "proration_behavior",
                        "payment_behavior", "off_session"}


@api("GET", r"/v1/subscriptions/" + ID, "GET /v1/subscriptions/{subscription_exposed_id}")
def get_subscription(ctx, p, sub_id):
    return 200, ctx.lookup("subscription", sub_id, "subscription_exposed_id")


@api("POST", r"/v1/subscriptions/" + ID, "POST /v1/subscriptions/{subscription_exposed_id}")
def update_subscription(ctx, p, sub_id):
    sub = ctx.lookup("subscription", sub_id, "subscription_exposed_id")
    if sub["status"] in SUB_ENDED and set(p) - {"metadata", "cancellation_details", "expand"}:
        raise invalid("A canceled subscription can only update its cancellation_details and metadata.")
    for k in p:
        if k not in SUB_UPDATE_SUPPORTED:
            raise invalid("The emulator does not implement `%s` on subscription updates." % k, param=k)
    if "cancel_at" in p and p.get("cancel_at_period_end"):
        raise exclusive("cancel_at", "cancel_at_period_end")
    now = ctx.state.now()
    prev = {}

    def change(key, value):
        if sub[key] != value:
            prev.setdefault(key, copy.deepcopy(sub[key]))
            sub[key] = value

    _, period_end = sub_period(sub)
    details = dict(sub["cancellation_details"])
    if "cancellation_details" in p and p["cancellation_details"] != "":
        for k in ("comment", "feedback"):
            if k in p["cancellation_details"]:
                details[k] = p["cancellation_details"][k] or None
    if "cancel_at_period_end" in p or "cancel_at" in p:
        if p.get("cancel_at_period_end") or p.get("cancel_at", "") != "":
            at = period_end if p.get("cancel_at_period_end") else p["cancel_at"]
            if at < now:
                raise invalid("cancel_at must be in the future.", param="cancel_at")
            change("cancel_at_period_end", bool(p.get("cancel_at_period_end")))
            change("cancel_at", at)
            change("canceled_at", sub["canceled_at"] or now)
            details["reason"] = "cancellation_requested"
        else:
            change("cancel_at_period_end", False)
            change("cancel_at", None)
            change("canceled_at", None)
            details["reason"] = None
    change("cancellation_details", details)
    if "metadata" in p:
        new = merge_metadata(sub["metadata"], p["metadata"])
        if new != sub["metadata"]:
            prev["metadata"] = {k: sub["metadata"].get(k) for k in set(new) | set(sub["metadata"])
                                if new.get(k) != sub["metadata"].get(k)}
            sub["metadata"] = new
    if "pause_collection" in p:
        pc = p["pause_collection"]
        change("pause_collection", None if pc == "" else {"behavior": pc["behavior"],
                                                           "resumes_at": pc.get("resumes_at")})
    if "description" in p:
        change("description", p["description"] or None)
    if prev:
        emit(ctx, "customer.subscription.updated", sub, previous=prev)
    return 200, sub


@api("DELETE", r"/v1/subscriptions/" + ID, "DELETE /v1/subscriptions/{subscription_exposed_id}")
def cancel_subscription(ctx, p, sub_id):
    sub = ctx.lookup("subscription", sub_id, "subscription_exposed_id")
    if sub["status"] in SUB_ENDED:
        # What Stripe answers for a subscription that has already ended (stripe-go#1887).
        raise no_such("subscription", sub_id, "subscription_exposed_id")
    cancel_subscription_now(ctx, sub, p.get("cancellation_details") or None)
    return 200, sub


@api("POST", r"/v1/subscriptions/" + ID + r"/resume", "POST /v1/subscriptions/{subscription}/resume")
def resume_subscription_api(ctx, p, sub_id):
    sub = ctx.lookup("subscription", sub_id, "subscription")
    if sub["status"] != "paused":
        raise invalid("Only subscriptions with `status=paused` can be resumed; subscription %s is %s."
                      % (sub_id, sub["status"]), param="subscription")
    resume_subscription(ctx, sub, p.get("billing_cycle_anchor", "now"))
    return 200, sub


@api("GET", r"/v1/invoices/" + ID, "GET /v1/invoices/{invoice}")
def get_invoice(ctx, p, in_id):
    return 200, ctx.lookup("invoice", in_id, "invoice")


# --------------------------------------------------------------------------------------
# Webhook endpoints
# --------------------------------------------------------------------------------------

def new_webhook_endpoint(st, livemode, url, enabled_events, api_version=None, description=None,
                         metadata=None, connect=False, secret=None, extra_secrets=(), timeout=10):
    """Create an endpoint (both APIs); returns (endpoint, secret). Caller checks the limit."""
    ep = st.put({
        "api_version": api_version, "application": None, "created": st.now(), "description": description,
        "enabled_events": list(enabled_events), "id": "we_1" + rand(23), "livemode": livemode,
        "metadata": metadata or {}, "object": "webhook_endpoint", "status": "enabled", "url": url,
    })
    secret = secret or "whsec_" + rand(32)
    st.hooks.register(ep, secret, extra_secrets, timeout, connect)
    return ep, secret


def endpoint_count(st, livemode):
    return sum(1 for e in st.all("webhook_endpoint") if e["livemode"] == livemode)


def with_secret(ep, secret):
    out = copy.deepcopy(ep)
    out["secret"] = secret
    return out


def _check_enabled_events(events):
    if not events:
        raise invalid("You must specify at least one event in enabled_events.", param="enabled_events")


@api("POST", r"/v1/webhook_endpoints", "POST /v1/webhook_endpoints")
def create_webhook_endpoint(ctx, p):
    check_url(p["url"], "url")
    _check_enabled_events(p["enabled_events"])
    if "api_version" in p and not valid_api_version(p["api_version"]):
        raise invalid("Invalid API version: %s" % p["api_version"], param="api_version")
    if endpoint_count(ctx.state, ctx.livemode) >= WEBHOOK_ENDPOINT_LIMIT:
        raise StripeError(400, "You have reached the maximum of %d webhook endpoints in %s mode."
                          % (WEBHOOK_ENDPOINT_LIMIT, "live" if ctx.livemode else "test"))
    ep, secret = new_webhook_endpoint(ctx.state, ctx.livemode, p["url"], p["enabled_events"],
                                      p.get("api_version"), p.get("description"),
                                      clean_metadata(p.get("metadata")), p.get("connect", False))
    return 200, with_secret(ep, secret)   # the only response that shows the secret


@api("GET", r"/v1/webhook_endpoints/" + ID, "GET /v1/webhook_endpoints/{webhook_endpoint}")
def get_webhook_endpoint(ctx, p, we_id):
    return 200, ctx.lookup("webhook_endpoint", we_id, "webhook_endpoint")


@api("POST", r"/v1/webhook_endpoints/" + ID, "POST /v1/webhook_endpoints/{webhook_endpoint}")
def update_webhook_endpoint(ctx, p, we_id):
    ep = ctx.lookup("webhook_endpoint", we_id, "webhook_endpoint")
    if "url" in p:
        check_url(p["url"], "url")
    if "enabled_events" in p:
        _check_enabled_events(p["enabled_events"])
    with ctx.state.hooks.cond:   # delivery threads read these fields
        if "url" in p:
            ep["url"] = p["url"]
        if "enabled_events" in p:
            ep["enabled_events"] = list(p["enabled_events"])
        if "disabled" in p:
            ep["status"] = "disabled" if p["disabled"] else "enabled"
        if "description" in p:
            ep["description"] = p["description"] or None
        if "metadata" in p:
            ep["metadata"] = merge_metadata(ep["metadata"], p["metadata"])
    return 200, ep


@api("DELETE", r"/v1/webhook_endpoints/" + ID, "DELETE /v1/webhook_endpoints/{webhook_endpoint}")
def delete_webhook_endpoint(ctx, p, we_id):
    ctx.lookup("webhook_endpoint", we_id, "webhook_endpoint")
    del ctx.state.objects["webhook_endpoint"][we_id]
    ctx.state.hooks.remove(we_id)
    return 200, {"deleted": True, "id": we_id, "object": "webhook_endpoint"}


@api("GET", r"/v1/webhook_endpoints", "GET /v1/webhook_endpoints")
def list_webhook_endpoints(ctx, p):
    objs = [e for e in ctx.state.all("webhook_endpoint") if e["livemode"] == ctx.livemode]
    return 200, paginate(ctx, objs, p, "/v1/webhook_endpoints", "webhook_endpoint")


# --------------------------------------------------------------------------------------
# Control API (/_emulator/...): no auth, JSON bodies
# --------------------------------------------------------------------------------------

class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


FAULT_MODES = ("429", "500", "503", "hang", "reset", "slow")


@control("GET", r"/_emulator/health")
def c_health(st, body, q):
    return 200, {"ok": True, "api_version": st.default_api_version}


@control("POST", r"/_emulator/reset")
def c_reset(st, body, q):
    st.reset()
    return 200, {"ok": True}


@control("GET", r"/_emulator/requests")
def c_requests(st, body, q):
    reqs = st.requests
    if "path_prefix" in q:
        reqs = [r for r in reqs if r["path"].startswith(q["path_prefix"])]
    return 200, reqs


@control("GET", r"/_emulator/stats")
def c_stats(st, body, q):
    return 200, {"connections": len(st.conn_ids), "requests": len(st.requests)}


@control("GET", r"/_emulator/events")
def c_events(st, body, q):
    evs = st.events
    if "type" in q:
        evs = [e for e in evs if e["type"] == q["type"]]
    return 200, evs


@control("GET", r"/_emulator/objects")
def c_objects(st, body, q):
    return 200, {t: list(objs.values()) for t, objs in st.objects.items() if t != "event"}


@control("POST", r"/_emulator/faults")
def c_add_fault(st, body, q):
    mode = str(body.get("mode", ""))
    if mode not in FAULT_MODES:
        raise ControlError(400, "mode must be one of %s" % ", ".join(FAULT_MODES))
    count = body.get("count", 1)
    if not isinstance(count, int) or count < 1:
        raise ControlError(400, "count must be a positive integer")
    prefix = body.get("path_prefix", "/v1/")
    if not isinstance(prefix, str) or not prefix.startswith("/v1"):
        raise ControlError(400, "path_prefix must start with /v1")
    seconds = body.get("seconds", 30)
    if not isinstance(seconds, (int, float)) or seconds < 0:
        raise ControlError(400, "seconds must be a non-negative number")
    after = body.get("after", 0)
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ControlError(400, "after must be a non-negative integer")
    f = {"id": "fault_%d" % next(st.fault_ids), "mode": mode, "count": count, "remaining": count,
         "hits": 0, "path_prefix": prefix, "seconds": seconds, "after": after,
         "method": body.get("method"),
         "store": mode in ("500", "503") and bool(body.get("store", False))}
    if "retry_after" in body:
        if not isinstance(body["retry_after"], (int, float)) or body["retry_after"] < 0:
            raise ControlError(400, "retry_after must be a non-negative number")
        f["retry_after"] = body["retry_after"]
    if "should_retry" in body:
        sr = body["should_retry"]
        if sr not in (True, False, "true", "false"):
            raise ControlError(400, "should_retry must be true or false")
        f["should_retry"] = "true" if sr in (True, "true") else "false"
    if "code" in body:
        if body["code"] not in ("rate_limit", "lock_timeout"):
            raise ControlError(400, "code must be rate_limit or lock_timeout")
        f["code"] = body["code"]
    st.faults.append(f)
    return 200, f


@control("GET", r"/_emulator/faults")
def c_list_faults(st, body, q):
    return 200, st.faults


@control("DELETE", r"/_emulator/faults")
def c_clear_faults(st, body, q):
    st.faults = []
    return 200, {"ok": True}


@control("GET", r"/_emulator/clock")
def c_clock(st, body, q):
    return 200, {"now": st.now(), "offset": st.clock_offset}


@control("POST", r"/_emulator/clock")
def c_clock_advance(st, body, q):
    adv = body.get("advance", 0)
    if not isinstance(adv, (int, float)) or adv < 0:
        raise ControlError(400, "advance must be a non-negative number of seconds")
    st.clock_offset += adv
    return 200, {"now": st.now(), "offset": st.clock_offset}


@control("POST", r"/_emulator/prices")
def c_seed_price(st, body, q):
    """Seed a Price (and its Product) until /v1/prices exists in the emulator."""
    cur = str(body.get("currency", "usd")).lower()
    if cur not in CURRENCIES:
        raise ControlError(400, "unknown currency")
    ua = body.get("unit_amount")
    if not isinstance(ua, int) or ua < 0:
        raise ControlError(400, "unit_amount must be a non-negative integer")
    rec = body.get("recurring")
    if rec is not None:
        if not isinstance(rec, dict) or rec.get("interval") not in ("day", "week", "month", "year"):
            raise ControlError(400, "recurring.interval must be day, week, month or year")
        rec = {"interval": rec["interval"], "interval_count": int(rec.get("interval_count", 1))}
    live = bool(body.get("livemode", False))
    prod = make_product(st, live, body.get("product_name", "Emulated product"))
    prod["active"] = True
    price = make_price(st, live, cur, prod["id"], ua, recurring=rec, active=True,
                       metadata=body.get("metadata") or {})
    prod["default_price"] = price["id"]
    return 200, price


def _outcome(body, allowed):
    o = body.get("outcome")
    if o not in allowed:
        raise ControlError(400, "outcome must be one of %s" % ", ".join(allowed))
    return o


def _session_or_404(st, cs_id):
    s = st.get("checkout.session", cs_id)
    if s is None:
        raise ControlError(404, "no such checkout.session: %s" % cs_id)
    _session_expire_lazily(st, s)
    return s


def _customer_details(st, s, body):
    email = body.get("email") or s["customer_email"] or "buyer@example.com"
    return {"address": {"city": None, "country": "US", "line1": None, "line2": None,
                        "postal_code": "94103", "state": None},
            "business_name": None, "email": email, "individual_name": None,
            "name": body.get("name", "Jenny Rosen"), "phone": None, "tax_exempt": "none", "tax_ids": []}


@control("POST", r"/_emulator/checkout/sessions/" + ID + r"/complete")
def c_complete_session(st, body, q, cs_id):
    """The buyer pays on the hosted page: outcome paid | failed | async_pending."""
    outcome = _outcome(body, ("paid", "failed", "async_pending"))
    s = _session_or_404(st, cs_id)
    if s["status"] != "open":
        raise ControlError(400, "checkout session %s is %s, not open" % (cs_id, s["status"]))
    aux = st.aux.setdefault(cs_id, {})
    if s["mode"] == "setup":
        if outcome == "failed":
            return 200, s
        s.update(status="complete", payment_status="no_payment_required", url=None,
                 setup_intent="seti_1" + rand(23), customer_details=_customer_details(st, s, body))
        emit(st, "checkout.session.completed", s)
        return 200, s
    if s["mode"] == "subscription":
        if outcome == "failed":
            return 200, s
        cust = st.get("customer", s["customer"]) if s["customer"] else None
        if cust is None:
            details = _customer_details(st, s, body)
            cust = make_customer(st, s["livemode"], details["email"], details["name"])
            emit(st, "customer.created", cust)
        sub = make_subscription(st, s["livemode"], cust["id"], aux.get("line_items", []),
                                clean_metadata(aux.get("subscription_data", {}).get("metadata")), "incomplete")
        start, _ = sub_period(sub)
        inv = make_invoice(st, sub, "subscription_create", start, start)
        sub["latest_invoice"] = inv["id"]
        aux["invoice"] = inv["id"]
        emit(st, "customer.subscription.created", sub)
        emit(st, "invoice.created", inv)
        finalize_invoice(st, inv)
        charge_invoice(st, inv, "succeeded" if outcome == "paid" else "processing")
        s.update(status="complete", payment_status="paid" if outcome == "paid" else "unpaid",
                 customer=cust["id"], subscription=sub["id"], url=None,
                 customer_details=_customer_details(st, s, body))
        emit(st, "checkout.session.completed", s)
        if outcome == "paid":
            sub_set_status(st, sub, "active")
        return 200, s
    pid = aux.get("payment_intent_data", {})
    pi = st.get("payment_intent", s["payment_intent"]) if s["payment_intent"] else None
    if pi is None:
        metadata = {k: v for k, v in (pid.get("metadata") or {}).items() if v != ""}
        pi = make_payment_intent(
            st, s["livemode"], s["amount_total"], s["currency"], metadata=metadata,
            description=pid.get("description"), receipt_email=pid.get("receipt_email"),
            capture_method=pid.get("capture_method", "automatic_async"),
            automatic_payment_methods=None, customer=s["customer"],
            statement_descriptor=pid.get("statement_descriptor"),
            statement_descriptor_suffix=pid.get("statement_descriptor_suffix"),
            setup_future_usage=pid.get("setup_future_usage"), shipping=pid.get("shipping"),
            transfer_group=pid.get("transfer_group"))
        pi["payment_method_types"] = list(s["payment_method_types"])
        st.put(pi)
        s["payment_intent"] = pi["id"]
        emit(st, "payment_intent.created", pi)
    if outcome == "failed":
        attempt_payment(st, pi, "failed")
        return 200, s
    details = _customer_details(st, s, body)
    if outcome == "paid":
        attempt_payment(st, pi, "succeeded")
        s.update(status="complete", payment_status="paid", url=None, customer_details=details)
    else:
        attempt_payment(st, pi, "processing", pm_type="us_bank_account")
        s.update(status="complete", payment_status="unpaid", url=None, customer_details=details)
    emit(st, "checkout.session.completed", s)
    return 200, s


@control("POST", r"/_emulator/checkout/sessions/" + ID + r"/async_payment")
def c_session_async(st, body, q, cs_id):
    """A delayed (bank) payment of a completed session settles: outcome succeeded | failed."""
    outcome = _outcome(body, ("succeeded", "failed"))
    s = _session_or_404(st, cs_id)
    inv = st.get("invoice", st.aux.get(cs_id, {}).get("invoice"))
    pi_id = s["payment_intent"] or (st.aux.get(inv["id"], {}).get("payment_intent") if inv else None)
    pi = st.get("payment_intent", pi_id) if pi_id else None
    if s["status"] != "complete" or pi is None or pi["status"] != "processing":
        raise ControlError(400, "checkout session %s has no payment in processing" % cs_id)
    settle_async(st, pi, outcome)
    if inv is not None:
        if outcome == "succeeded":
            invoice_paid(st, inv)
            sub_set_status(st, st.get("subscription", s["subscription"]), "active")
        else:
            invoice_payment_failed(st, inv)
    if outcome == "succeeded":
        s["payment_status"] = "paid"
        emit(st, "checkout.session.async_payment_succeeded", s)
    else:
        emit(st, "checkout.session.async_payment_failed", s)
    return 200, s


@control("POST", r"/_emulator/payment_intents/" + ID + r"/confirm")
def c_confirm_pi(st, body, q, pi_id):
    """The buyer confirms a PaymentIntent client-side: outcome succeeded | failed | processing."""
    outcome = _outcome(body, ("succeeded", "failed", "processing"))
    pi = st.get("payment_intent", pi_id)
    if pi is None:
        raise ControlError(404, "no such payment_intent: %s" % pi_id)
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise ControlError(400, "payment_intent %s is %s and cannot be confirmed" % (pi_id, pi["status"]))
    attempt_payment(st, pi, outcome, pm_type="card" if outcome != "processing" else "us_bank_account")
    return 200, pi


@control("POST", r"/_emulator/payment_intents/" + ID + r"/settle")
def c_settle_pi(st, body, q, pi_id):
    outcome = _outcome(body, ("succeeded", "failed"))
    pi = st.get("payment_intent", pi_id)
    if pi is None:
        raise ControlError(404, "no such payment_intent: %s" % pi_id)
    if pi["status"] != "processing":
        raise ControlError(400, "payment_intent %s is %s, not processing" % (pi_id, pi["status"]))
    settle_async(st, pi, outcome)
    return 200, pi


# -- webhooks ---------------------------------------------------------------------------

def _number(body, key, lo, hi, integer=False):
    v = body[key]
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) or not lo <= v <= hi:
        raise ControlError(400, "%s must be %s between %s and %s" % (key, "an integer" if integer else "a number",
                                                                     lo, hi))
    return v


def _endpoint_settings(body, partial):
    """Validated control-API endpoint fields (url, secret, extra_secrets, timeout, ...)."""
    out = {}
    if "url" in body or not partial:
        url = body.get("url")
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ControlError(400, "url must be an http(s) URL")
        out["url"] = url
    if "secret" in body:
        if not isinstance(body["secret"], str) or not body["secret"]:
            raise ControlError(400, "secret must be a non-empty string")
        out["secret"] = body["secret"]
    if "extra_secrets" in body:
        es = body["extra_secrets"]
        if not isinstance(es, list) or not all(isinstance(x, str) and x for x in es):
            raise ControlError(400, "extra_secrets must be a list of strings")
        out["extra_secrets"] = es
    if "enabled_events" in body or not partial:
        ev = body.get("enabled_events", ["*"])
        if not isinstance(ev, list) or not ev or not all(isinstance(x, str) for x in ev):
            raise ControlError(400, "enabled_events must be a non-empty list of event types")
        out["enabled_events"] = ev
    if "api_version" in body:
        if body["api_version"] is not None and not valid_api_version(str(body["api_version"])):
            raise ControlError(400, "api_version must look like YYYY-MM-DD[.name]")
        out["api_version"] = body["api_version"]
    if "timeout" in body:
        out["timeout"] = _number(body, "timeout", 0.001, 600)
    if "disabled" in body:
        out["status"] = "disabled" if body["disabled"] else "enabled"
    for k in ("description",):
        if k in body:
            out[k] = body[k]
    return out


def _endpoint_view(st, ep):
    r = st.hooks.route(ep["id"])
    out = with_secret(ep, r.secret if r else None)
    out["extra_secrets"] = list(r.extra_secrets) if r else []
    out["timeout"] = r.timeout if r else None
    return out


@control("POST", r"/_emulator/webhook_endpoints")
def c_add_endpoint(st, body, q):
    """An endpoint as the dashboard makes it; the same object /v1/webhook_endpoints lists."""
    conf = _endpoint_settings(body, partial=False)
    live = bool(body.get("livemode", False))
    if endpoint_count(st, live) >= WEBHOOK_ENDPOINT_LIMIT:
        raise ControlError(400, "the account already has %d webhook endpoints" % WEBHOOK_ENDPOINT_LIMIT)
    ep, _ = new_webhook_endpoint(st, live, conf["url"], conf["enabled_events"], conf.get("api_version"),
                                 conf.get("description"), None, False, conf.get("secret"),
                                 conf.get("extra_secrets", ()), conf.get("timeout", 10))
    if conf.get("status"):
        ep["status"] = conf["status"]
    return 200, _endpoint_view(st, ep)


@control("GET", r"/_emulator/webhook_endpoints")
def c_list_endpoints(st, body, q):
    return 200, [_endpoint_view(st, ep) for ep in st.all("webhook_endpoint")]


@control("POST", r"/_emulator/webhook_endpoints/" + ID)
def c_update_endpoint(st, body, q, we_id):
    """Change an endpoint, including what the API cannot: secret, extra_secrets, timeout."""
    ep = st.get("webhook_endpoint", we_id)
    r = st.hooks.route(we_id)
    if ep is None or r is None:
        raise ControlError(404, "no such webhook_endpoint: %s" % we_id)
    conf = _endpoint_settings(body, partial=True)
    with st.hooks.cond:
        for k in ("url", "enabled_events", "api_version", "status", "description"):
            if k in conf:
                ep[k] = conf[k]
        r.secret = conf.get("secret", r.secret)
        r.extra_secrets = conf.get("extra_secrets", r.extra_secrets)
        r.timeout = conf.get("timeout", r.timeout)
    return 200, _endpoint_view(st, ep)


@control("GET", r"/_emulator/webhook_config")
def c_get_webhook_config(st, body, q):
    with st.hooks.cond:
        return 200, copy.deepcopy(st.hooks.config)


@control("POST", r"/_emulator/webhook_config")
def c_webhook_config(st, body, q):
    changes = {}
    for k in body:
        if k not in DEFAULT_WEBHOOK_CONFIG:
            raise ControlError(400, "unknown setting %s; known: %s" % (k, ", ".join(DEFAULT_WEBHOOK_CONFIG)))
    if "retry_delays" in body:
        d = body["retry_delays"]
        if (not isinstance(d, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                               and 0 <= x <= 3600 for x in d)):
            raise ControlError(400, "retry_delays must be a list of seconds (0 to 3600)")
        changes["retry_delays"] = d
    if "max_attempts" in body:
        changes["max_attempts"] = _number(body, "max_attempts", 1, 1000, integer=True)
    if "shuffle" in body:
        if not isinstance(body["shuffle"], bool):
            raise ControlError(400, "shuffle must be true or false")
        changes["shuffle"] = body["shuffle"]
    if "duplicate" in body:
        changes["duplicate"] = _number(body, "duplicate", 0, 1)
    if "concurrency" in body:
        changes["concurrency"] = _number(body, "concurrency", 1, 32, integer=True)
    if "timestamp_offset" in body:
        changes["timestamp_offset"] = _number(body, "timestamp_offset", -10 ** 9, 10 ** 9, integer=True)
    return 200, st.hooks.configure(changes)


@control("GET", r"/_emulator/deliveries")
def c_deliveries(st, body, q):
    with st.hooks.cond:
        out = [dict(d) for d in st.hooks.deliveries]
    if "event_id" in q:
        out = [d for d in out if d["event_id"] == q["event_id"]]
    if "endpoint" in q:
        out = [d for d in out if d["endpoint"] == q["endpoint"]]
    return 200, out


@control("GET", r"/_emulator/deliveries/pending")
def c_deliveries_pending(st, body, q):
    return 200, {"pending": st.hooks.pending(), "failed": st.hooks.failed()}


@control("POST", r"/_emulator/events/" + ID + r"/redeliver")
def c_redeliver(st, body, q, ev_id):
    ev = st.get("event", ev_id)
    if ev is None:
        raise ControlError(404, "no such event: %s" % ev_id)
    ep_id = body.get("endpoint")
    if ep_id is not None and st.hooks.route(ep_id) is None:
        raise ControlError(404, "no such webhook_endpoint: %s" % ep_id)
    return 200, {"queued": st.hooks.redeliver(ev, ep_id)}


@control("POST", r"/_emulator/webhooks/flush", lock=False)
def c_flush(st, body, q):
    """Wait (without the state lock) until no delivery is queued or in flight."""
    timeout = _number(body, "timeout", 0, 600) if "timeout" in body else 10
    left = st.hooks.flush(timeout)
    return 200, {"pending": left, "failed": st.hooks.failed()}


# -- refunds ----------------------------------------------------------------------------

@control("POST", r"/_emulator/refunds")
def c_dashboard_refund(st, body, q):
    """A refund made in the dashboard: no metadata, no API request of ours; same events."""
    livemode = bool(body.get("livemode", False))
    amount = body.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise ControlError(400, "amount must be an integer")
    reason = body.get("reason")
    if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
        raise ControlError(400, "reason must be duplicate, fraudulent or requested_by_customer")
    try:
        ch = refund_charge_for(st, livemode, body.get("payment_intent"), body.get("charge"))
        return 200, create_refund(st, st, ch, amount, reason, {})
    except StripeError as e:
        raise ControlError(e.status, e.message)


@control("POST", r"/_emulator/refunds/next_status")
def c_refund_next_status(st, body, q):
    status = body.get("status")
    if status not in ("succeeded", "pending", "requires_action"):
        raise ControlError(400, "status must be succeeded, pending or requires_action")
    st.refund_next_status = status
    return 200, {"next_status": status}


@control("POST", r"/_emulator/refunds/" + ID + r"/settle")
def c_settle_refund(st, body, q, re_id):
    outcome = _outcome(body, ("succeeded", "failed", "canceled"))
    re_ = st.get("refund", re_id)
    if re_ is None:
        raise ControlError(404, "no such refund: %s" % re_id)
    reason = body.get("failure_reason", "expired_or_canceled_card")
    if reason not in REFUND_FAILURE_REASONS:
        raise ControlError(400, "failure_reason must be one of %s" % ", ".join(REFUND_FAILURE_REASONS))
    return 200, settle_refund(st, re_, outcome, reason)


# -- subscriptions ----------------------------------------------------------------------

def _subscription_or_404(st, sub_id, allowed):
    sub = st.get("subscription", sub_id)
    if sub is None:
        raise ControlError(404, "no such subscription: %s" % sub_id)
    if sub["status"] not in allowed:
        raise ControlError(400, "subscription %s is %s; this needs one of %s" % (sub_id, sub["status"],
                                                                                 ", ".join(allowed)))
    return sub


@control("POST", r"/_emulator/subscriptions/" + ID + r"/renew")
def c_renew(st, body, q, sub_id):
    """The clock reaches the period end: the next period is billed and paid (or the sub ends)."""
    sub = _subscription_or_404(st, sub_id, ("active", "past_due", "trialing"))
    renew_subscription(st, sub, "succeeded")
    return 200, sub


@control("POST", r"/_emulator/subscriptions/" + ID + r"/fail_renewal")
def c_fail_renewal(st, body, q, sub_id):
    """The clock reaches the period end and the renewal payment is declined: past_due."""
    sub = _subscription_or_404(st, sub_id, ("active", "past_due", "trialing"))
    renew_subscription(st, sub, "failed")
    return 200, sub


@control("POST", r"/_emulator/subscriptions/" + ID + r"/pause")
def c_pause(st, body, q, sub_id):
    """Status paused (as when a trial ends without a payment method)."""
    sub = _subscription_or_404(st, sub_id, ("active", "past_due", "trialing"))
    prev = {"status": sub["status"]}
    sub["status"] = "paused"
    emit(st, "customer.subscription.paused", sub)
    emit(st, "customer.subscription.updated", sub, previous=prev)
    return 200, sub


@control("POST", r"/_emulator/subscriptions/" + ID + r"/resume")
def c_resume(st, body, q, sub_id):
    sub = _subscription_or_404(st, sub_id, ("paused",))
    anchor = body.get("billing_cycle_anchor", "now")
    if anchor not in ("now", "unchanged"):
        raise ControlError(400, "billing_cycle_anchor must be now or unchanged")
    resume_subscription(st, sub, anchor)
    return 200, sub


# --------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------

_conn_counter = itertools.count(1)
LOG = None
LOG_LOCK = threading.Lock()
SPECS = {}


def log_line(text):
    if LOG is None:
        return
    with LOG_LOCK:
        LOG.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), text))
        LOG.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stripe-emulator"
    sys_version = ""

    def setup(self):
        super().setup()
        # headers and body go out in separate writes: without TCP_NODELAY,
        # Nagle holds the body back for the client's delayed ACK (~40 ms)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_id = next(_conn_counter)

    def version_string(self):
        return "stripe-emulator"

    def log_request(self, code="-", size="-"):
        pass  # dispatch() logs one line per request with timing

    def log_message(self, fmt, *args):
        log_line("conn=%s %s" % (getattr(self, "conn_id", "?"), fmt % args))

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    # -- plumbing --

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if te.lower() == "chunked":
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(n) if n else b""

    def send(self, status, obj, headers=None, request_id=None, raw=None, ctype="application/json"):
        if raw is None:
            raw = (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Request-Id", request_id or new_request_id())
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)
        self.wfile.flush()

    def dispatch(self):
        STATE.hooks.request_started()
        try:
            self._dispatch()
        finally:
            STATE.hooks.request_ended()

    def _dispatch(self):
        started = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, url.query
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.send(400, StripeError(400, "Invalid request: could not read the request body.").body())
            return
        if path == "/v1" or path.startswith("/v1/"):
            status = self.handle_api(path, query, body)
        elif path.startswith("/_emulator/"):
            status = self.handle_control(path, query, body)
        elif path.startswith("/pay/"):
            status = self.handle_pay_page(path, body)
        else:
            err = unrecognized_url(self.command, path)
            self.send(err.status, err.body())
            status = err.status
        log_line("conn=%s %s %s -> %s %.0fms" % (self.conn_id, self.command, self.path, status,
                                                 (time.monotonic() - started) * 1000))

    # -- /v1 --

    def handle_api(self, path, query, body):
        st = STATE
        method = self.command
        request_id = new_request_id()
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        log_headers = dict(hdrs)
        if "authorization" in log_headers:
            log_headers["authorization"] = mask_authorization(log_headers["authorization"])
        # parsed once: the params of the record and of the call below
        try:
            parsed = parse_form(body if method != "GET" else query)
            logged_params = listify(parsed)
        except FormError as e:
            parsed, logged_params = e, None
        record = {"method": method, "path": path, "query": query, "headers": log_headers,
                  "raw_body": body.decode("utf-8", "replace"), "params": logged_params,
                  "status": None, "connection_id": self.conn_id, "replayed": False,
                  "request_id": request_id, "fault": None, "time": time.time()}
        with st.lock:
            st.requests.append(record)
            st.conn_ids.add(self.conn_id)
        slow_until = None
        release = st.release

        def respond(status, obj, headers=None):
            if slow_until is not None:
                with st.hooks.waiting():
                    release.wait(max(0.0, slow_until - time.monotonic()))
            record["status"] = status
            h = {"Stripe-Version": api_version} if api_version else {}
            h.update(headers or {})
            self.send(status, obj, h, request_id)
            return status

        api_version = None
        fault = st.take_fault(method, path)
        if fault:
            record["fault"] = fault["mode"]
            mode = fault["mode"]
            if mode in ("reset", "hang"):
                if mode == "hang":
                    with st.hooks.waiting():
                        release.wait(fault["seconds"])
                self.abort_connection(rst=(mode == "reset"))
                return "-"
            if mode == "slow":
                slow_until = time.monotonic() + fault["seconds"]
            elif not fault["store"]:
                return respond(*self.fault_response(fault))

        idem_slot = None
        try:
            api_key = self.authenticate(hdrs)
            api_version = hdrs.get("stripe-version", st.default_api_version)
            if not valid_api_version(api_version):
                bad, api_version = api_version, None
                raise invalid("Invalid Stripe API version: %s" % bad)
            if method == "POST":
                ctype = hdrs.get("content-type", "")
                if (body or ctype) and ctype.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
                    raise invalid("Invalid request: unsupported Content-Type %s. If error persists and you "
                                  "need assistance, please contact support@stripe.com." % ctype)
            try:
                raw_params = {} if method == "GET" or not query else parse_form(query)
                if isinstance(parsed, FormError):
                    raise parsed
                raw_params.update(parsed)
            except FormError as e:
                raise invalid(str(e))
            route = None
            for m, rx, fn, spec_key in API_ROUTES:
                mt = rx.match(path)
                if mt and m == method:
                    route = (fn, spec_key, mt.groups())
                    break
            if route is None:
                raise unrecognized_url(method, path)
            fn, spec_key, groups = route

            idem_key = hdrs.get("idempotency-key") if method == "POST" else None
            if idem_key is not None:
                if not 1 <= len(idem_key) <= 255:
                    raise invalid("Idempotent key length is %d, which is outside accepted lengths. "
                                  "Idempotent Keys must be 1-255 characters long. If you're looking for "
                                  "a decent generator, try using a UUID defined by IETF RFC 4122."
                                  % len(idem_key))
                fp = json.dumps([method, path, raw_params], sort_keys=True)
                slot = (api_key, idem_key)
                with st.lock:
                    entry = st.idem.get(slot)
                    if entry is None:
                        st.idem[slot] = {"fp": fp, "in_flight": True}
                        idem_slot = slot
                if entry is not None:
                    if entry["fp"] != fp:
                        raise StripeError(400, "Keys for idempotent requests can only be used with the same "
                                          "parameters they were first used with. Try using a key other than "
                                          "'%s' if you meant to execute a different request." % idem_key,
                                          type_="idempotency_error", store=False)
                    if entry["in_flight"]:
                        raise StripeError(409, "There is currently another in-progress request using this "
                                          "Idempotent Key (that probably means you submitted twice, and the "
                                          "other request is still going through): %s. Please try again later."
                                          % idem_key, type_="idempotency_error", code="idempotency_key_in_use",
                                          store=False, headers={"Stripe-Should-Retry": "true"})
                    record["replayed"] = True
                    return respond(entry["status"], json.loads(entry["body"]),
                                   {"Idempotent-Replayed": "true", "Original-Request": entry["request_id"],
                                    "Idempotency-Key": idem_key})
            if slow_until is not None:
                with st.hooks.waiting():
                    release.wait(max(0.0, slow_until - time.monotonic()))
            if fault and fault["store"]:
                status, obj, headers = self.fault_response(fault)
                raise StripeError(status, obj["error"]["message"], type_=obj["error"]["type"],
                                  code=obj["error"].get("code"), headers=headers, store=True)

            spec = SPECS.get(spec_key)
            if spec is None:
                raise RuntimeError("no parameter spec for %s" % spec_key)
            with st.lock:
                try:
                    params = check(spec, raw_params, "", api_version)
                    ctx = Ctx(st, api_key, api_version, request_id, idem_key)
                    status, obj = fn(ctx, params, *groups)
                    if params.get("expand"):
                        obj = expand(ctx, obj, params["expand"])
                finally:
                    st.deliver_outbox()   # events are sent even when the request ends in an error
                body_json = json.dumps(obj, sort_keys=False)
                if idem_slot:
                    st.idem[idem_slot].update(in_flight=False, status=status, body=body_json,
                                              request_id=request_id)
                    idem_slot = None
            extra = {"Idempotency-Key": idem_key} if idem_key else {}
            return respond(status, json.loads(body_json), extra)
        except StripeError as e:
            headers = dict(e.headers)
            if idem_slot:
                with st.lock:
                    if e.store:
                        st.idem[idem_slot].update(in_flight=False, status=e.status,
                                                  body=json.dumps(e.body()), request_id=request_id)
                    else:
                        st.idem.pop(idem_slot, None)
                idem_slot = None
            return respond(e.status, e.body(), headers)
        except Exception as e:  # an emulator bug must not hang the client
            if idem_slot:
                with st.lock:
                    st.idem.pop(idem_slot, None)
            sys.stderr.write("stripe-emulator: internal error on %s %s: %r\n" % (method, path, e))
            import traceback
            traceback.print_exc()
            return respond(500, {"error": {"message": "Emulator internal error: %r" % e, "type": "api_error"}})

    def fault_response(self, fault):
        mode = fault["mode"]
        headers = {}
        if "retry_after" in fault:
            headers["Retry-After"] = str(fault["retry_after"])
        if "should_retry" in fault:
            headers["Stripe-Should-Retry"] = fault["should_retry"]
        if mode == "429":
            if fault.get("code") == "lock_timeout":
                err = StripeError(429, "This object cannot be accessed right now because another API request "
                                  "or Stripe process is currently accessing it. If you see this error "
                                  "intermittently, retry the request. If you see this error frequently and are "
                                  "making multiple concurrent requests to a single object, make your requests "
                                  "serially or at a lower rate. See https://stripe.com/docs/rate-limits for "
                                  "more information.", code="lock_timeout")
            else:
                err = StripeError(429, "Request rate limit exceeded. You can learn more about rate limits here "
                                  "https://stripe.com/docs/rate-limits.", code="rate_limit")
        elif mode == "500":
            err = StripeError(500, "An unknown error occurred", type_="api_error")
        else:
            err = StripeError(503, "Stripe is temporarily unavailable. Please try again later.",
                              type_="api_error")
        return err.status, err.body(), headers

    def authenticate(self, hdrs):
        auth = hdrs.get("authorization")
        if not auth:
            raise StripeError(401, "You did not provide an API key. You need to provide your API key in the "
                              "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                              "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                              "or we can help at https://support.stripe.com/.", store=False)
        scheme, _, key = auth.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer":
            raise StripeError(401, "Invalid API Key provided: %s" % mask_key(auth.strip()), store=False)
        if not key:
            raise StripeError(401, "You did not provide an API key. You need to provide your API key in the "
                              "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                              "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                              "or we can help at https://support.stripe.com/.", store=False)
        if re.match(r"^pk_(test|live)_", key):
            raise StripeError(401, "This API call cannot be made with a publishable API key. Please use a "
                              "secret API key. You can find a list of your API keys at "
                              "https://dashboard.stripe.com/account/apikeys.", store=False)
        if not re.fullmatch(r"(sk|rk)_(test|live)_[A-Za-z0-9]+", key) or "invalid" in key:
            raise StripeError(401, "Invalid API Key provided: %s" % mask_key(key), store=False)
        return key

    def abort_connection(self, rst):
        self.close_connection = True
        try:
            if rst:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    # -- /_emulator --

    def handle_control(self, path, query, body):
        st = STATE
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        try:
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            self.send(400, {"error": "body must be a JSON object"})
            return 400
        for m, rx, fn, lock in CONTROL_ROUTES:
            mt = rx.match(path)
            if mt and m == self.command:
                try:
                    if lock:
                        with st.lock:
                            try:
                                status, obj = fn(st, data, q, *mt.groups())
                            finally:
                                st.deliver_outbox()
                            raw = (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
                    else:
                        with st.hooks.waiting():
                            status, obj = fn(st, data, q, *mt.groups())
                        raw = (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
                except ControlError as e:
                    status, raw = e.status, (json.dumps({"error": e.message}) + "\n").encode("utf-8")
                self.send(status, None, raw=raw)
                return status
        self.send(404, {"error": "no control route %s %s" % (self.command, path)})
        return 404

    # -- hosted page stand-in --

    def handle_pay_page(self, path, body):
        cs_id = path[len("/pay/"):]
        with STATE.lock:
            s = STATE.get("checkout.session", cs_id)
            if s is not None and self.command == "POST":
                outcome = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("outcome", ["paid"])[-1]
                try:
                    c_complete_session(STATE, {"outcome": outcome}, {}, cs_id)
                except ControlError:
                    pass
                finally:
                    STATE.deliver_outbox()
            page = ("<!doctype html><title>Emulated Checkout</title><h1>%s</h1><p>status: %s, payment_status: "
                    "%s, amount_total: %s %s</p>" % (cs_id, s["status"], s["payment_status"], s["amount_total"],
                                                      s["currency"])) if s else "<h1>No such session</h1>"
        if s is not None and s["status"] == "open":
            page += ("<form method=post><button name=outcome value=paid>Pay</button>"
                     "<button name=outcome value=failed>Decline</button></form>")
        self.send(200 if s else 404, None, raw=page.encode("utf-8"), ctype="text/html; charset=utf-8")
        return 200 if s else 404


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        # Clients that drop connections (timeouts, our own resets) are expected in tests.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def main(argv=None):
    global LOG, SPECS
    ap = argparse.ArgumentParser(description="Stripe API emulator for stripepay tests")
    ap.add_argument("--port", type=int, required=True, help="TCP port, 0 picks a free one")
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    ap.add_argument("--log", help="append one line per request to this file")
    ap.add_argument("--api-version", default=PINNED_API_VERSION,
                    help="account default API version (default %(default)s)")
    args = ap.parse_args(argv)
    if args.host not in LOOPBACK_HOSTS and not args.host.startswith("127."):
        ap.error("--host must be a loopback address")
    if not valid_api_version(args.api_version):
        ap.error("--api-version must look like YYYY-MM-DD[.name]")
    SPECS = load_specs()
    # Delivery threads run Python code (the event bodies are pretty-printed JSON); a short
    # switch interval keeps them from holding requests up for the default 5 ms.
    sys.setswitchinterval(0.0005)
    if args.log:
        LOG = open(args.log, "a", encoding="utf-8")
    if ":" in args.host:
        Server.address_family = socket.AF_INET6
    server = Server((args.host, args.port), Handler)
    host, port = server.server_address[:2]
    STATE.base_url = "http://%s:%d" % (("[%s]" % host) if ":" in host else host, port)
    STATE.default_api_version = args.api_version

    def stop(signum, frame):
        STATE.release.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write("stripe-emulator listening on %s:%d\n" % (host, port))
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if LOG:
            LOG.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
