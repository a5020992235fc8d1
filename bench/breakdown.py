#!/usr/bin/env python3
"""Adds up the SPTIME lines of an instrumented build (instrument.py) over one
phase's backends and prints where a call's time went.

  ... | breakdown.py SERVER_CPU_US

stdin: the SPTIME lines the phase's backends printed as they exited.
SERVER_CPU_US: the phase's server CPU a call (every process of the
cluster), as the bench measured it, to show what ran outside the backends.

The steps are wall-clock time: with one client nothing waits inside the
function but a transfer, so they are CPU but for that.  The function's own
CPU clock is printed beside their sum, and the commit both ways (its WAL
flush waits).
"""
import sys

from instrument import STEPS

LABELS = {
    "ingest": {
        "entry": "arguments, Stripe-Signature parsed",
        "call_begin": "owner's rights, settings (cached)",
        "secrets": "signing secrets (cached)",
        "hmac": "HMAC-SHA256 of the body, compared",
        "decode": "JSON decoded (sp_event_decode)",
        "livemode": "livemode check",
        "seen": "duplicate check (SELECT webhook_event by id)",
        "find": "payment found and locked (SELECT ... FOR UPDATE)",
        "record": "webhook_event INSERT (jsonb, TOAST, 2 indexes)",
        "apply_rest": "the rule, links, bookkeeping",
        "update": "payment_record UPDATE",
        "flow": "payment_flow INSERT + the user's trigger",
        "notify": "notification queued (outbox INSERT)",
        "waiting": "waiting events probed (SELECT waiting_event)",
        "ingest_rest": "leaving the engine",
        "end": "result row, leaving the function",
    },
    "pay": {
        "pay_args": "arguments checked (currency, amount)",
        "pay_call_begin": "owner's rights, settings (cached)",
        "pay_lock": "the order's lock",
        "pay_paid": "paid already? (SELECT payment_record by order)",
        "pay_open": "an open payment to reuse? (SELECT)",
        "pay_close": "earlier ways to pay to close? (SELECT)",
        "pay_record": "payment_record INSERT (id from its sequence)",
        "pay_form": "request form built",
        "pay_key": "Idempotency-Key made",
        "http_setup": "libcurl handle and headers set up",
        "http_perform": "HTTP request and answer (libcurl multi)",
        "http_rest": "answer copied, request freed",
        "pay_stripe_rest": "status checked",
        "pay_fields": "answer's fields read (JSON)",
        "pay_session": "payment_record UPDATE with the session",
        "end": "result row, leaving the function",
    },
}


def main(server_cpu):
    tot = {}
    bad = 0
    for line in sys.stdin:
        try:
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            float(fields["backend_cpu_us"])
            [float(fields[f"t{i}"]) for i in range(len(STEPS))]
        except (ValueError, KeyError):
            bad += 1
            continue
        kind = fields["kind"]
        t = tot.setdefault(kind, {"calls": 0, "backend": 0.0, "steps": [0.0] * len(STEPS)})
        t["calls"] += int(fields["calls"])
        t["backend"] += float(fields["backend_cpu_us"])
        for i in range(len(STEPS)):
            t["steps"][i] += float(fields.get(f"t{i}", 0))
    if bad:
        print(f"  ({bad} garbled SPTIME lines left out)")
    for kind, t in tot.items():
        calls = t["calls"]
        per = {s: t["steps"][i] / calls for i, s in enumerate(STEPS)}
        labels = LABELS[kind]
        inside = sum(per[s] for s in labels)
        for s, label in labels.items():
            if per[s] >= 0.05:
                print(f"  {per[s]:7.1f}  {label}")
        print(f"  {inside:7.1f}  = inside the function (its own CPU clock: {per['fn_cpu']:.1f})")
        b = t["backend"] / calls
        print(f"  {per['commit_cpu']:7.1f}  commit: WAL record, flush, end of transaction "
              f"(CPU; {per['commit_wall']:.1f} wall)")
        print(f"  {b - per['fn_cpu'] - per['commit_cpu']:7.1f}  rest of the backend's CPU: protocol, "
              f"the calling statement, start and end of the transaction")
        print(f"  {b:7.1f}  = the backends' CPU ({calls} calls)")
        print(f"  {server_cpu - b:7.1f}  other processes of the cluster (WAL writer, notifier, "
              f"checkpointer, ...)")
        print(f"  {server_cpu:7.1f}  = server CPU a call")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(float(sys.argv[1]))
