#!/usr/bin/env python3
"""Contract test: what the extension's C code sends to Stripe and reads from its events, against
the pinned API version's description (stripe_params.json, generated from the stripe npm
package's declarations by extract_params.py).

    python3 test/emulator/contract.py [--src DIR] [--params FILE] [-v]

(a) Every form parameter the C code can send, found in the code itself: calls
    sp_form_add(form, "name", value), sp_form_add_int(form, "name", n), sp_form_add_len(...)
    and sp_form_add_ids(form, "prefix", order_id, "key", id) (which sends prefix[order_id] and
    prefix[key]) in src/*.c and src/pure/*.c, tied to the request that sends that form:
    sp_stripe_call / sp_stripe_send (METHOD, path, form) and sp_stripe_list(path, query) in the
    same function. Forms built by a helper that returns them, names or paths passed down as
    arguments, psprintf("/v1/x/%s", id) paths and `cond ? a : b` choices are followed (both
    sides of a choice go together: checkout ? checkout_form() : payment_intent_form() pairs
    with checkout ? "/v1/checkout/sessions" : "/v1/payment_intents"). Literal values are
    checked too (enum values, booleans, '' only where the parameter can be unset), and so are
    the event types the webhook endpoints subscribe to (the *_events[] arrays) and every
    request's METHOD + path.
(b) Every event field the decoder reads: the "data.object..." / "data.previous_attributes..."
    path strings in src/pure/sp_event.c, with the object type they belong to (from the
    dispatch on data.object.object in sp_event_read() and the calls below it), and whether
    they are read only for events older than an API version (if (sp_event_older_than(ev, X))).
(c) Each parameter against the endpoint's parameters, each field against the object's fields
    in the pinned version. Fields the decoder reads only for old events must be absent now and
    be listed in OLD_FIELDS with the version that removed them.

Prints "ok - ..." / "not ok - ..." per check and ends with "contract: N passed, M failed";
exits 1 when something failed. Standard library only.
"""
import argparse
import itertools
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import stripe_emulator  # noqa: E402  (PINNED_API_VERSION, FIELDS_AFTER_PINNED; nothing is started)

# Fields the decoder reads for events of older API versions, absent from the pinned version:
# (object type, field) -> the version that removed it, and where it went.
OLD_FIELDS = {
    ("payment_intent", "charges"): "2022-11-15 (PaymentIntent.latest_charge instead)",
    ("subscription", "current_period_start"): "2025-03-31.basil (on the items: items.data[].current_period_start)",
    ("subscription", "current_period_end"): "2025-03-31.basil (on the items: items.data[].current_period_end)",
    ("invoice", "subscription"): "2025-03-31.basil (parent.subscription_details.subscription)",
    ("invoice", "payment_intent"): "2025-03-31.basil (the InvoicePayment's payment.payment_intent)",
    ("invoice", "charge"): "2025-03-31.basil (the InvoicePayment's payment.charge)",
    ("invoice", "subscription_details"): "2025-03-31.basil (parent.subscription_details)",
}

# The request helpers: their own bodies pass a caller's path and form along.
SEND = {"sp_stripe_call": (0, 1, 2), "sp_stripe_send": (0, 1, 2),   # (method, path, form) arg index
        "sp_stripe_list": (None, 0, 1), "sp_stripe_fetch_object": (None, 1, None)}
ADD = {"sp_form_add": 1, "sp_form_add_int": 1, "sp_form_add_len": 1}
# Settings (GUCs) whose value the code sends: their default, a macro of the headers.
GUC_DEFAULTS = {"sp_api_version": "SP_DEFAULT_API_VERSION"}
HELPERS = set(SEND) | set(ADD) | {"sp_form_add_ids", "sp_form_create"}

# --------------------------------------------------------------------------------------
# A small C reader: tokens, functions, calls, assignments
# --------------------------------------------------------------------------------------

_TOK = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>/\*.*?\*/|//[^\n]*)
  | (?P<pp>^[ \t]*\#(?:[^\n\\]|\\.)*)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<chr>'(?:[^'\\\n]|\\.)*')
  | (?P<num>\.?[0-9](?:[0-9a-zA-Z_.]|[eEpP][+-])*)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^]=|[{}()\[\];,?:.=<>!~+\-*/%&|^])
""", re.S | re.M | re.X)


class Tok:
    __slots__ = ("kind", "text", "line")

    def __init__(self, kind, text, line):
        self.kind, self.text, self.line = kind, text, line

    def __repr__(self):
        return self.text


def c_unescape(s):
    return bytes(s[1:-1], "utf-8").decode("unicode_escape")


def tokenize(text, path):
    toks, defines = [], {}
    pos, line = 0, 1
    while pos < len(text):
        m = _TOK.match(text, pos)
        if not m:
            raise SystemExit("%s:%d: cannot read %r" % (path, line, text[pos:pos + 20]))
        kind = m.lastgroup
        if kind == "pp":
            d = re.match(r"\s*#\s*define\s+(\w+)\s+(.*)", m.group())
            if d:
                defines[d.group(1)] = d.group(2).strip()
        elif kind not in ("ws", "comment"):
            toks.append(Tok(kind, m.group(), line))
        line += m.group().count("\n")
        pos = m.end()
    return toks, defines


def split_args(toks):
    """Top-level comma-separated pieces of a token list."""
    out, cur, depth = [], [], 0
    for t in toks:
        if t.text in "([{" and t.kind == "op":
            depth += 1
        elif t.text in ")]}" and t.kind == "op":
            depth -= 1
        if t.text == "," and t.kind == "op" and depth == 0:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur or out:
        out.append(cur)
    return out


def matching(toks, i):
    """Index of the bracket closing toks[i]."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    want, depth = pairs[toks[i].text], 0
    for j in range(i, len(toks)):
        if toks[j].kind != "op":
            continue
        if toks[j].text == toks[i].text:
            depth += 1
        elif toks[j].text == want:
            depth -= 1
            if depth == 0:
                return j
    raise SystemExit("unbalanced %s at line %d" % (toks[i].text, toks[i].line))


class Func:
    def __init__(self, name, params, body, path):
        self.name, self.params, self.body, self.path = name, params, body, path
        self.calls = []          # (name, [arg token lists], token index)
        self.assigns = {}        # variable -> [expression token lists]
        self.returns = []        # expression token lists
        i, n = 0, len(body)
        while i < n:
            t = body[i]
            if t.kind == "id" and i + 1 < n and body[i + 1].text == "(" and \
                    (i == 0 or body[i - 1].text not in (".", "->")):
                end = matching(body, i + 1)
                self.calls.append((t.text, split_args(body[i + 2:end]), i))
            if t.kind == "id" and i + 1 < n and body[i + 1].text == "=" and \
                    (i == 0 or body[i - 1].text not in (".", "->")):
                j = i + 2
                depth = 0
                while j < n and not (depth == 0 and body[j].text in (";", ",")):
                    if body[j].text in "([{":
                        depth += 1
                    elif body[j].text in ")]}":
                        depth -= 1
                        if depth < 0:
                            break
                    j += 1
                self.assigns.setdefault(t.text, []).append(body[i + 2:j])
            if t.kind == "id" and t.text == "return":
                j = i + 1
                while j < n and body[j].text != ";":
                    j += 1
                self.returns.append(body[i + 1:j])
            i += 1

    def where(self):
        return "%s, %s" % (self.name, self.path)


class Source:
    def __init__(self, files, root, headers=()):
        self.funcs = {}
        self.defines = {}
        self.files = {}
        for path in headers:
            with open(path, encoding="utf-8", errors="replace") as f:
                self.defines.update(tokenize(f.read(), path)[1])
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            rel = os.path.relpath(path, root)
            toks, defines = tokenize(text, rel)
            self.defines.update(defines)
            self.files[rel] = toks
            self._functions(toks, rel)

    def _functions(self, toks, rel):
        i, depth = 0, 0
        while i < len(toks):
            t = toks[i]
            if t.text == "{" and t.kind == "op":
                if depth == 0 and i > 0 and toks[i - 1].text == ")":
                    # name ( params ) {
                    k = i - 1
                    d = 0
                    while k >= 0:
                        if toks[k].text == ")":
                            d += 1
                        elif toks[k].text == "(":
                            d -= 1
                            if d == 0:
                                break
                        k -= 1
                    if k > 0 and toks[k - 1].kind == "id":
                        end = matching(toks, i)
                        params = []
                        for a in split_args(toks[k + 1:i - 1]):
                            ids = [x.text for x in a if x.kind == "id"]
                            params.append(ids[-1] if ids else "")
                        name = toks[k - 1].text
                        if name not in self.funcs:      # the first definition wins
                            self.funcs[name] = Func(name, params, toks[i + 1:end], rel)
                        i = end + 1
                        continue
                depth += 1
            elif t.text == "}" and t.kind == "op":
                depth -= 1
            i += 1

    def callers(self, fname):
        for f in self.funcs.values():
            for name, args, _ in f.calls:
                if name == fname:
                    yield f, args


# --------------------------------------------------------------------------------------
# Evaluating the expressions that name a path, a parameter or a form
# --------------------------------------------------------------------------------------
# A value is a list of alternatives (choices, v): choices is a frozenset of (condition text,
# bool) taken to get v; v is a str, None (NULL), ("form", Func, var) or ("unknown", text).

UNKNOWN = "{id}"


def consistent(*choice_sets):
    seen = {}
    for cs in choice_sets:
        for cond, val in cs:
            if seen.setdefault(cond, val) != val:
                return False
    return True


def merge(*choice_sets):
    out = set()
    for cs in choice_sets:
        out |= cs
    return frozenset(out)


def text_of(toks):
    return " ".join(t.text for t in toks)


class Evaluator:
    def __init__(self, src):
        self.src = src

    def eval(self, toks, func, depth=0):
        toks = list(toks)
        while toks and toks[0].text == "(" and matching(toks, 0) == len(toks) - 1:
            toks = toks[1:-1]
        if not toks:
            return [(frozenset(), ("unknown", ""))]
        if depth > 8:
            return [(frozenset(), ("unknown", text_of(toks)))]
        # cond ? a : b
        d = 0
        for i, t in enumerate(toks):
            if t.text in "([{":
                d += 1
            elif t.text in ")]}":
                d -= 1
            elif t.text == "?" and d == 0:
                j, d2 = i + 1, 0
                colon = None
                nested = 0
                for j in range(i + 1, len(toks)):
                    x = toks[j].text
                    if x in "([{":
                        d2 += 1
                    elif x in ")]}":
                        d2 -= 1
                    elif x == "?" and d2 == 0:
                        nested += 1
                    elif x == ":" and d2 == 0:
                        if nested == 0:
                            colon = j
                            break
                        nested -= 1
                cond = text_of(toks[:i])
                out = []
                for cs, v in self.eval(toks[i + 1:colon], func, depth + 1):
                    if consistent(cs, {(cond, True)}):
                        out.append((merge(cs, {(cond, True)}), v))
                for cs, v in self.eval(toks[colon + 1:], func, depth + 1):
                    if consistent(cs, {(cond, False)}):
                        out.append((merge(cs, {(cond, False)}), v))
                return out
        if all(t.kind == "str" for t in toks):
            return [(frozenset(), "".join(c_unescape(t.text) for t in toks))]
        if len(toks) == 1 and toks[0].text == "NULL":
            return [(frozenset(), None)]
        if len(toks) == 1 and toks[0].kind == "id":
            name = toks[0].text
            if name in GUC_DEFAULTS and name not in func.assigns:
                name = GUC_DEFAULTS[name]
            if name in self.src.defines and self.src.defines[name].startswith('"'):
                return [(frozenset(), c_unescape(self.src.defines[name]))]
            if name in func.assigns:
                out = []
                for expr in func.assigns[name]:
                    vals = self.eval(expr, func, depth + 1)
                    for cs, v in vals:
                        out.append((cs, ("form", func, name) if v == "new form" else v))
                return out
            if name in func.params:
                return self.from_callers(func, func.params.index(name), depth + 1)
            return [(frozenset(), ("unknown", name))]
        if toks[0].kind == "id" and len(toks) > 1 and toks[1].text == "(" and matching(toks, 1) == len(toks) - 1:
            name = toks[0].text
            args = split_args(toks[2:-1])
            if name == "sp_form_create":
                return [(frozenset(), "new form")]
            if name in ("psprintf", "pstrdup"):
                return self.format(args, func, depth)
            callee = self.src.funcs.get(name)
            if callee is not None and name not in HELPERS:
                out = []
                for ret in callee.returns:
                    for cs, v in self.eval(ret, callee, depth + 1):
                        out.append((cs, v))
                return out or [(frozenset(), ("unknown", text_of(toks)))]
        return [(frozenset(), ("unknown", text_of(toks)))]

    def format(self, args, func, depth):
        if not args:
            return [(frozenset(), ("unknown", "psprintf()"))]
        fmts = self.eval(args[0], func, depth + 1)
        argvals = [self.eval(a, func, depth + 1) for a in args[1:]]
        out = []
        for fcs, fmt in fmts:
            if not isinstance(fmt, str):
                out.append((fcs, UNKNOWN))
                continue
            for combo in itertools.product(*argvals) if argvals else [()]:
                sets = [fcs] + [cs for cs, _ in combo]
                if not consistent(*sets):
                    continue
                vals = iter(v for _, v in combo)
                text = re.sub(r"%[-0-9.]*l*[sdu]", lambda m: (lambda v: v if isinstance(v, str) else UNKNOWN)(
                    next(vals, None)), fmt)
                out.append((merge(*sets), text))
        return out

    def from_callers(self, func, index, depth):
        out = []
        for caller, args in self.src.callers(func.name):
            if index < len(args):
                out.extend(self.eval(args[index], caller, depth))
        return out or [(frozenset(), ("unknown", func.params[index]))]


# --------------------------------------------------------------------------------------
# (a) what the extension sends
# --------------------------------------------------------------------------------------

class Sent:
    """One form parameter sent to one endpoint."""

    def __init__(self, method, path, name, value, where):
        self.method, self.path, self.name, self.value, self.where = method, path, name, value, where


def form_adds(src, ev, func, var):
    """(name, value, where) of every parameter added to form variable var in func."""
    out = []
    for name, args, _ in func.calls:
        if name in ADD and args and text_of(args[0]) == var:
            value = None
            if name == "sp_form_add_int":
                value = ("int",)
            elif len(args) > 2:
                vals = ev.eval(args[2], func)
                value = vals[0][1] if len(vals) == 1 and isinstance(vals[0][1], str) else None
                if value is not None and UNKNOWN in value:
                    value = None          # built at run time: only its name is checked
            for _, pname in ev.eval(args[ADD[name]], func):
                out.append((pname, value, func.where()))
        elif name == "sp_form_add_ids" and args and text_of(args[0]) == var and len(args) >= 5:
            for _, prefix in ev.eval(args[1], func):
                for _, key in ev.eval(args[3], func):
                    if isinstance(prefix, str) and isinstance(key, str):
                        out.append(("%s[order_id]" % prefix, ("int",), func.where()))
                        out.append(("%s[%s]" % (prefix, key), ("int",), func.where()))
                    else:
                        out.append((("unknown", text_of(args[1])), None, func.where()))
    return out


def collect_requests(src):
    """[(method, path, [(name, value, where)], where)] for every request the C code makes."""
    ev = Evaluator(src)
    requests = []
    for func in src.funcs.values():
        if func.name in HELPERS:
            continue
        for name, args, _ in func.calls:
            if name not in SEND:
                continue
            mi, pi, fi = SEND[name]
            methods = [(frozenset(), "GET")] if mi is None else ev.eval(args[mi], func)
            paths = ev.eval(args[pi], func)
            forms = [(frozenset(), None)] if fi is None or fi >= len(args) else ev.eval(args[fi], func)
            for (mcs, method), (pcs, path), (fcs, form) in itertools.product(methods, paths, forms):
                if not consistent(mcs, pcs, fcs):
                    continue
                params = []
                if isinstance(form, tuple) and form[0] == "form":
                    params = form_adds(src, ev, form[1], form[2])
                elif isinstance(form, tuple):
                    params = [(("unknown form", form[1]), None, func.where())]
                if isinstance(path, str) and "?" in path:
                    path = path.split("?")[0]
                uniq = []
                for p in params:
                    if p not in uniq:
                        uniq.append(p)
                req = (method, path, uniq, func.where())
                if req not in requests:
                    requests.append(req)
    return requests


def subscribed_events(src):
    """The event types in the static `*_events[]` string arrays (the webhook endpoints' lists)."""
    out = []
    for rel, toks in src.files.items():
        for i, t in enumerate(toks):
            if t.kind == "id" and t.text.endswith("_events") and i + 3 < len(toks) and \
                    toks[i + 1].text == "[" and toks[i + 2].text == "]" and toks[i + 3].text == "=":
                j = i + 4
                if toks[j].text != "{":
                    continue
                end = matching(toks, j)
                for x in toks[j + 1:end]:
                    if x.kind == "str":
                        out.append((c_unescape(x.text), "%s, %s" % (t.text, rel)))
    return out


# --------------------------------------------------------------------------------------
# (b) what the decoder reads
# --------------------------------------------------------------------------------------

_PATH = re.compile(r"^data\.(object|previous_attributes)(\.[A-Za-z0-9_.\[\]]+)?$")


def older_spans(func, defines):
    """(start, end, date) token spans of func's body read only for events older than date."""
    body, spans = func.body, []
    flags = {}
    for name, exprs in func.assigns.items():
        for e in exprs:
            m = re.search(r"sp_event_older_than \( ev , (\w+) \)", text_of(e))
            if m:
                flags[name] = m.group(1)
    i = 0
    while i < len(body):
        if body[i].text == "if" and i + 1 < len(body) and body[i + 1].text == "(":
            close = matching(body, i + 1)
            cond = text_of(body[i + 2:close])
            m = re.search(r"sp_event_older_than \( ev , (\w+) \)", cond)
            macro = m.group(1) if m else next((flags[w] for w in cond.split() if w in flags), None)
            if macro and "!" not in cond:
                j = close + 1
                if body[j].text == "{":
                    end = matching(body, j)
                else:
                    end = j
                    while body[end].text != ";":
                        end += 1
                date = defines.get(macro, macro).rstrip("L")
                spans.append((j, end, "%s-%s-%s" % (date[:4], date[4:6], date[6:8])))
        i += 1
    return spans


def decoder_reads(src, rel="src/pure/sp_event.c"):
    """[(object type or '*', path, older-than date or None, where)] from the event decoder."""
    funcs = [f for f in src.funcs.values() if f.path == rel]
    if not funcs:
        return [], []
    read = src.funcs.get("sp_event_read")
    if read is None:
        raise SystemExit("%s: no sp_event_read()" % rel)
    # the dispatch: if (strcmp(ev->object_type, "x") == 0) <statement>
    body = read.body
    branches = []       # (start, end, type)
    for i in range(len(body) - 6):
        if body[i].text == "strcmp" and text_of(body[i + 1:i + 6]) == "( ev -> object_type ,":
            otype = c_unescape(body[i + 6].text)
            k = i
            while body[k].text != "if":
                k -= 1
            close = matching(body, k + 1)
            j = close + 1
            if body[j].text == "{":
                end = matching(body, j)
            else:
                end = j
                while body[end].text != ";":
                    end += 1
            branches.append((j, end, otype))
    all_types = sorted({b[2] for b in branches})
    # which types each function serves: the dispatch, then whatever those functions call
    serves = {f.name: set() for f in funcs}
    for name, _, at in read.calls:
        if name in serves:
            hit = [otype for start, end, otype in branches if start <= at <= end]
            serves[name] |= set(hit or ["*"])
    # functions called under an "older than" guard inherit the date
    older_funcs = {}
    changed = True
    while changed:
        changed = False
        for f in funcs:
            spans = older_spans(f, src.defines)
            for name, _, at in f.calls:
                if name not in serves:
                    continue
                if not serves[f.name] <= serves[name] and f.name != "sp_event_read":
                    serves[name] |= serves[f.name]
                    changed = True
                date = next((d for s, e, d in spans if s <= at <= e), None) or older_funcs.get(f.name)
                if date and older_funcs.get(name) != date and all(
                        next((d for s, e, d in older_spans(c, src.defines) if s <= a <= e), None) or
                        older_funcs.get(c.name) for c, a in _call_sites(funcs, name)):
                    older_funcs[name] = date
                    changed = True
    out = []
    for f in funcs:
        spans = older_spans(f, src.defines)
        for i, t in enumerate(f.body):
            if t.kind != "str":
                continue
            s = c_unescape(t.text)
            if not _PATH.match(s):
                continue
            if f.name == "sp_event_read":
                types = [b[2] for b in branches if b[0] <= i <= b[1]] or ["*"]
            else:
                types = ["*"] if "*" in serves.get(f.name, ()) else sorted(serves.get(f.name) or [])
            date = next((d for a, b, d in spans if a <= i <= b), None) or older_funcs.get(f.name)
            for ty in types:
                out.append((ty, s, date, f.name))
    seen, uniq = set(), []
    for r in out:
        if r[:3] not in seen:
            seen.add(r[:3])
            uniq.append(r)
    return uniq, all_types


def _call_sites(funcs, name):
    for f in funcs:
        for n, _, at in f.calls:
            if n == name:
                yield f, at


# --------------------------------------------------------------------------------------
# (c) checks against the description
# --------------------------------------------------------------------------------------

class Report:
    def __init__(self, verbose):
        self.passed = self.failed = 0
        self.verbose = verbose

    def ok(self, text):
        self.passed += 1
        print("ok - " + text)

    def not_ok(self, text):
        self.failed += 1
        print("not ok - " + text)


def endpoint_key(api, method, path):
    for key in api["endpoints"]:
        m, tmpl = key.split(" ", 1)
        if m != method:
            continue
        rx = "^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(tmpl)) + "$"
        if re.match(rx, path.replace(UNKNOWN, "X")):
            return key
    return None


def param_node(node, segs):
    """The spec node a bracketed parameter name reaches, or (None, why)."""
    for i, seg in enumerate(segs):
        if "anyOf" in node:
            for v in node["anyOf"]:
                got, why = param_node(v, segs[i:])
                if got is not None:
                    return got, None
            return None, "no variant of %s takes [%s]" % (segs[i - 1] if i else "it", seg)
        t = node.get("type")
        if t == "object":
            name = "".join(["%s" % segs[0]] + ["[%s]" % s for s in segs[1:i + 1]])
            if seg not in node.get("props", {}):
                return None, "unknown parameter %s" % name
            node = node["props"][seg]
            if not stripe_emulator.available(node, stripe_emulator.PINNED_API_VERSION):
                return None, "%s is not in the pinned version (%s)" % (
                    name, "removed in %s" % node["before"] if "before" in node else "added in %s" % node["since"])
        elif t == "array":
            if seg != "" and not seg.isdigit():
                return None, "%s is a list: [%s] is not an index" % (segs[i - 1], seg)
            node = node["items"]
        elif t == "map":
            node = node["values"]
        else:
            return None, "%s is a %s, not a hash" % (segs[i - 1], t)
    return node, None


def describe(node):
    if "anyOf" in node:
        return " | ".join(describe(v) for v in node["anyOf"]) + (" | ''" if node.get("emptyable") else "")
    t = node.get("type", "?")
    if "enum" in node and len(node["enum"]) > 8:
        t += " (one of %d values)" % len(node["enum"])
    elif "enum" in node:
        t += " (%s)" % ", ".join(map(str, node["enum"]))
    if node.get("emptyable"):
        t += " | ''"
    return t


def value_problem(node, value):
    """Why a literal value does not fit node, else None."""
    if value is None:
        return None
    if value == ("int",):
        if "anyOf" in node:
            return None if any(value_problem(v, value) is None for v in node["anyOf"]) else "not an integer"
        if node.get("type") in ("integer", "number", "string", "any") and "enum" not in node:
            return None
        if node.get("type") == "map":
            return None if node["values"].get("type") in ("string", "integer") else "not an integer"
        return "an integer does not fit %s" % describe(node)
    if value == "":
        return None if node.get("emptyable") or node.get("type") == "map" else "cannot be unset with ''"
    if "anyOf" in node:
        return None if any(value_problem(v, value) is None for v in node["anyOf"]) else \
            "%r fits none of %s" % (value, describe(node))
    t = node.get("type")
    if t == "boolean" and value not in ("true", "false"):
        return "%r is not a boolean" % value
    if t == "integer" and not re.fullmatch(r"-?[0-9]+", value):
        return "%r is not an integer" % value
    if t == "string" and "enum" in node and value not in node["enum"]:
        return "%r is not one of %s" % (value, ", ".join(node["enum"]))
    if t in ("object", "array"):
        return "%s takes a %s, not a value" % (value, t)
    return None


def split_name(name):
    m = re.match(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$", name)
    if not m:
        return None
    return [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))


def check_requests(api, requests, events, report):
    # the generated parameters with the emulator's OVERLAY: parameters removed before or added
    # after the pinned version are marked, and refused here
    specs = stripe_emulator.load_specs(api=api)
    for method, path, params, where in sorted(requests, key=lambda r: (r[1] if isinstance(r[1], str) else "", r[0])):
        if not isinstance(path, str) or not isinstance(method, str):
            report.not_ok("%s %s (%s): cannot tell the request's path from the code" % (method, path, where))
            continue
        key = endpoint_key(api, method, path)
        if key is None:
            report.not_ok("%s %s (%s): not an endpoint in stripe_params.json (the emulator does not serve it, "
                          "or the pinned API has no such endpoint)" % (method, path, where))
            continue
        report.ok("%s %s (%s): endpoint %s" % (method, path, where, key))
        spec = specs[key]
        for name, value, pwhere in params:
            if not isinstance(name, str):
                report.not_ok("%s: a parameter name the contract cannot follow: %s (%s)" % (key, name[1], pwhere))
                continue
            segs = split_name(name)
            node, why = param_node(spec, segs) if segs else (None, "malformed name")
            label = "%s %s" % (key, name) + ("=%s" % value if isinstance(value, str) else "")
            if node is None:
                report.not_ok("%s (%s): %s" % (label, pwhere, why))
                continue
            problem = value_problem(node, value)
            if problem:
                report.not_ok("%s (%s): %s" % (label, pwhere, problem))
            else:
                report.ok("%s (%s): %s" % (label, pwhere, describe(node)))
    if events:
        hook = api["endpoints"].get("POST /v1/webhook_endpoints", {}).get("params", {})
        allowed = set(param_node(hook, ["enabled_events", ""])[0].get("enum", [])) if hook else set()
        for etype, where in events:
            obj = api["event_types"].get(etype)
            if etype in allowed and obj:
                report.ok("enabled_events[] %s (%s): an event type of the pinned version, carrying a %s"
                          % (etype, where, obj))
            else:
                report.not_ok("enabled_events[] %s (%s): not an event type of the pinned version" % (etype, where))


def field_node(api, otype, segs):
    """Walk an object's field tree along segs; returns (node, notes) or (None, why)."""
    objects = api["objects"]
    if otype not in objects:
        return None, "no description of %s objects" % otype
    node = objects[otype]
    notes = []
    for i, seg in enumerate(segs):
        idx = re.match(r"^([^\[]*)((?:\[[0-9]*\])*)$", seg)
        name, brackets = idx.group(1), idx.group(2)
        if name:
            if "expandable" in node or ("ref" in node and "fields" not in node):
                target = (node.get("expandable") or node.get("ref"))
                target = [t for t in target if t in objects]
                if not target:
                    return None, "%s is a reference to %s, not described here" % (segs[i - 1], node.get("expandable"))
                if "expandable" in node:
                    notes.append("%s: expanded" % segs[i - 1])
                node = objects[target[0]]
            if "fields" not in node:
                return None, "%s has no fields" % (segs[i - 1] if i else otype)
            if name not in node["fields"]:
                return None, "no field %s" % ".".join(segs[:i + 1])
            node = node["fields"][name]
            if node.get("optional"):
                notes.append("%s: optional" % name)
        for _ in re.findall(r"\[[0-9]*\]", brackets):
            if node.get("type") != "array":
                return None, "%s is not a list" % ".".join(segs[:i + 1])
            node = node["items"]
    return node, notes


def check_reads(api, reads, all_types, report):
    for otype, path, older, where in sorted(reads, key=lambda r: (r[0], r[1])):
        kind, rest = path.split(".", 2)[1], path.split(".", 2)[2:] if path.count(".") >= 2 else []
        segs = rest[0].split(".") if rest else []
        types = all_types if otype == "*" else [otype]
        results = {}
        for ty in types:
            results[ty] = field_node(api, ty, segs) if segs else (api["objects"].get(ty), [])
        present = [ty for ty in types if results[ty][0] is not None]
        head = segs[0] if segs else ""
        label = "%s %s" % ("every object" if otype == "*" else otype, path)
        if older:
            old = [ty for ty in types if (ty, head) in OLD_FIELDS]
            if present and not old:
                report.ok("%s (%s): read for events older than %s; the pinned version still has it"
                          % (label, where, older))
            elif old and not present:
                report.ok("%s (%s): read for events older than %s; absent from the pinned version as expected "
                          "(removed in %s)" % (label, where, older, OLD_FIELDS[(old[0], head)]))
            elif old and present:
                report.not_ok("%s (%s): OLD_FIELDS says %s was removed, but the pinned version has it"
                              % (label, where, head))
            else:
                report.not_ok("%s (%s): read for events older than %s, absent from the pinned version and not "
                              "in OLD_FIELDS: %s" % (label, where, older, results[types[0]][1]))
            continue
        if not present:
            why = "; ".join(sorted({str(results[ty][1]) for ty in types}))
            report.not_ok("%s (%s): not in the pinned version: %s" % (label, where, why))
            continue
        dotted = re.sub(r"\[[0-9]*\]", "[]", ".".join(segs))
        newer = [(ty, p) for ty in present for p in stripe_emulator.FIELDS_AFTER_PINNED
                 if p[0] == ty and (dotted == p[1] or dotted.startswith(p[1] + ".") or dotted.startswith(p[1] + "["))]
        if newer:
            report.not_ok("%s (%s): added after the pinned version: %s" % (
                label, where, stripe_emulator.FIELDS_AFTER_PINNED[newer[0][1]]))
            continue
        notes = sorted({n for ty in present for n in results[ty][1]})
        missing = [ty for ty in types if ty not in present]
        extra = ("; " + ", ".join(notes)) if notes else ""
        if missing:
            extra += "; not on %s (read as optional)" % ", ".join(missing)
        kind = describe(results[present[0]][0]) if segs else "object"
        if otype == "*":
            kind = "on %s" % ", ".join(present)
        report.ok("%s (%s): %s%s" % (label, where, kind, extra))


def check_pinned_version(api, src, report):
    """The version the extension pins is one the package knows, and the emulator's default."""
    macro = src.defines.get("SP_DEFAULT_API_VERSION")
    if macro is None:
        report.not_ok("no SP_DEFAULT_API_VERSION in the headers: cannot tell the pinned API version")
        return
    pinned = c_unescape(macro)
    versions = param_node(api["endpoints"]["POST /v1/webhook_endpoints"]["params"], ["api_version"])[0]
    if pinned in versions.get("enum", []):
        report.ok("the extension pins %s (SP_DEFAULT_API_VERSION): a version of the package's list "
                  "(WebhookEndpointCreateParams.api_version); the declarations are of %s"
                  % (pinned, api["source"]["api_version"]))
    else:
        report.not_ok("the extension pins %s, which the stripe package does not list" % pinned)
    if stripe_emulator.PINNED_API_VERSION == pinned:
        report.ok("the emulator's default API version is the pinned %s" % pinned)
    else:
        report.not_ok("the emulator's default API version %s is not the pinned %s"
                      % (stripe_emulator.PINNED_API_VERSION, pinned))


# --------------------------------------------------------------------------------------

def source_files(src_dir):
    out = []
    for d in (src_dir, os.path.join(src_dir, "pure")):
        if os.path.isdir(d):
            out += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".c"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=os.path.join(ROOT, "src"), help="the extension's src/ (default: this checkout's)")
    ap.add_argument("--params", default=os.path.join(HERE, "stripe_params.json"))
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    with open(args.params, encoding="utf-8") as f:
        api = json.load(f)
    files = source_files(args.src)
    if not files:
        print("not ok - no C files under %s" % args.src)
        print("contract: 0 passed, 1 failed")
        return 1
    headers = [os.path.join(args.src, f) for f in sorted(os.listdir(args.src)) if f.endswith(".h")]
    src = Source(files, os.path.dirname(os.path.abspath(args.src)), headers)
    report = Report(args.verbose)
    print("# against %s (stripe@%s, API %s); extension src %s" % (
        os.path.relpath(args.params), api["source"]["version"], api["source"]["api_version"], args.src))
    check_pinned_version(api, src, report)
    requests = collect_requests(src)
    if not requests:
        report.not_ok("found no request in the C code (sp_stripe_call/sp_stripe_send/sp_stripe_list)")
    check_requests(api, requests, subscribed_events(src), report)
    rel = next((os.path.relpath(p, os.path.dirname(os.path.abspath(args.src))) for p in files
                if p.endswith(os.path.join("pure", "sp_event.c"))), None)
    if rel is None:
        report.not_ok("no src/pure/sp_event.c: the decoder's reads cannot be checked")
    else:
        reads, all_types = decoder_reads(src, rel)
        if not reads:
            report.not_ok("found no data.object path in %s" % rel)
        check_reads(api, reads, all_types, report)
    print("contract: %d passed, %d failed" % (report.passed, report.failed))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
