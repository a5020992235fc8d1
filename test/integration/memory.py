"""Memory under load, bounded in count and time, on 127.0.0.1 only.

One backend makes 100,000 stripe_pay() calls, every other one failing
(SP007: the api_base of those is a closed port), then ingests 100,000 signed
webhook events (each first delivery followed by a redelivery), one
transaction a call.  stripepay-relay then answers 1,000,000 requests driven
by wrk: first deliveries, duplicates, bad signatures, wrong paths, /healthz.

Each process is sampled at the start, after a warm-up (the first tenth) and
at the end: RSS, private dirty and private anonymous memory, from
/proc/<pid>/smaps_rollup.  The bound is on anonymous memory (malloc and
palloc), which leaves out the shared buffers and mapped files a busy
backend touches; it fails when growth after the warm-up passes the bound.

Needs what test/lib/env.sh sets up (PGHOST, PGPORT, SP_TMP, SP_EMULATOR_URL)
and wrk.  SP_MEMORY_CALLS, SP_MEMORY_EVENTS and SP_MEMORY_REQUESTS shrink
the run for a quick try.  Prints "memory: N passed, M failed".
"""
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from harness import (EMULATOR, WEBHOOK_SECRET, check, check_eq, emulator,  # noqa: E402
                     emulator_reset, fresh_database, ingest, psql, run)

DB = "sp_memory"
ROLE = "sp_memory_webhook"
TMP = os.environ.get("SP_TMP") or "/tmp"
CALLS = int(os.environ.get("SP_MEMORY_CALLS", "100000"))
EVENTS = int(os.environ.get("SP_MEMORY_EVENTS", "100000"))
REQUESTS = int(os.environ.get("SP_MEMORY_REQUESTS", "1000000"))
RELAY = os.path.join(ROOT, "src", "relay", "stripepay-relay")
FIXTURES = os.path.join(ROOT, "test", "fixtures", "events")
LUA = os.path.join(HERE, "memory_relay.lua")
# a port nothing listens on: the failing calls are refused at once
CLOSED = "http://127.0.0.1:9"

# Bounds on the growth of anonymous memory after the warm-up.  A leak of
# 100 bytes a call over the 90,000 measured calls is 8.6 MB; Postgres's own
# caches (catalog, plans) are full after the warm-up, and the measured part
# of the run touches no new relation.
BACKEND_BOUND_KB = 8 * 1024
# The relay: 900,000 measured requests, 80 bytes each would be 69 MB.  glibc
# keeps freed memory in per-thread arenas, which a new connection thread may
# find empty and grow again: a few MB of that is not a leak.
RELAY_BOUND_KB = 8 * 1024

FIGURES = []


def q(sql, **kw):
    return psql(sql, db=DB, **kw)


def smaps(pid):
    """RSS, private dirty and anonymous memory of pid, in kB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[key] = int(parts[0])
    return {"rss": fields["Rss"], "dirty": fields["Private_Dirty"], "anon": fields["Anonymous"]}


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def report(what, samples, bound_kb):
    """Prints the samples; fails when anonymous memory grew past the bound
    after the warm-up."""
    start, warm, end = samples
    growth = end["anon"] - warm["anon"]
    line = (f"{what}: anonymous {mb(start['anon'])} at start, {mb(warm['anon'])} after warm-up, "
            f"{mb(end['anon'])} at end (growth {growth} kB, bound {bound_kb} kB); "
            f"RSS {mb(start['rss'])} / {mb(warm['rss'])} / {mb(end['rss'])}; "
            f"private dirty {mb(start['dirty'])} / {mb(warm['dirty'])} / {mb(end['dirty'])}")
    FIGURES.append(line)
    print("  " + line, flush=True)
    check(growth <= bound_kb, f"{what}: anonymous memory grew {growth} kB after the warm-up "
          f"(bound {bound_kb} kB)")
    return f"growth {growth} kB"


class Session:
    """One psql process, so one backend, for the whole test."""

    def __init__(self):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
             "-d", DB],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.marks = 0

    def run(self, sql, timeout=600):
        """Runs sql; returns its output lines.  An error ends psql: raised,
        as is a statement still running after timeout seconds (psql killed)."""
        self.marks += 1
        mark = f"--memory-mark-{self.marks}--"
        # the ";" ends sql's last statement, or \echo would come first
        self.proc.stdin.write(sql + f"\n;\n\\echo {mark}\n")
        self.proc.stdin.flush()
        lines = []
        watchdog = threading.Timer(timeout, self.proc.kill)
        watchdog.start()
        try:
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                if line == mark:
                    return lines
                lines.append(line)
        finally:
            watchdog.cancel()
        raise AssertionError("psql ended (or was stopped after %d s): %s"
                             % (timeout, "\n".join(lines[-20:])))

    def measured(self, pid, procedure, n):
        """CALL procedure over 1..n: the first tenth as the warm-up, then the
        rest.  Returns pid's samples (start, warm, end), the seconds taken
        and the sums of the procedure's two counts."""
        warm = n // 10
        samples = [smaps(pid)]
        t0 = time.monotonic()
        first = self.run(f"CALL {procedure}(1, {warm})")[0].split("|")
        samples.append(smaps(pid))
        rest = self.run(f"CALL {procedure}({warm + 1}, {n})")[0].split("|")
        seconds = time.monotonic() - t0
        samples.append(smaps(pid))
        return samples, seconds, (int(first[0]) + int(rest[0]), int(first[1]) + int(rest[1]))

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)


def setup():
    fresh_database(DB, webhook_secret=WEBHOOK_SECRET)
    # every call its own transaction, as an application makes them
    q(f"""CREATE PROCEDURE mem_pay(first int, last int, INOUT ok int DEFAULT 0,
                                   INOUT refused int DEFAULT 0)
          LANGUAGE plpgsql AS $$
          BEGIN
            FOR i IN first..last LOOP
              PERFORM set_config('stripepay.api_base',
                                 CASE WHEN i % 2 = 0 THEN '{EMULATOR}' ELSE '{CLOSED}' END, false);
              BEGIN
                PERFORM stripepay.stripe_pay(1000000 + i, 'usd', 500 + i % 1000);
                ok := ok + 1;
              EXCEPTION WHEN sqlstate 'SP007' THEN
                refused := refused + 1;
              END;
              COMMIT;
            END LOOP;
          END $$""")
    q("""CREATE TABLE mem_event (n int PRIMARY KEY, body bytea NOT NULL, sig text NOT NULL)""")
    q("""CREATE PROCEDURE mem_ingest(first int, last int, INOUT fresh int DEFAULT 0,
                                      INOUT again int DEFAULT 0)
         LANGUAGE plpgsql AS $$
         DECLARE
           e mem_event;
           done bool;
         BEGIN
           FOR i IN first..last LOOP
             -- event n, then its redelivery
             SELECT * INTO STRICT e FROM mem_event WHERE n = (i + 1) / 2;
             SELECT already_processed INTO done
               FROM stripepay.stripe_ingest_webhook(e.body, e.sig, 'default');
             IF done THEN again := again + 1; ELSE fresh := fresh + 1; END IF;
             COMMIT;
           END LOOP;
         END $$""")


def completed_events():
    """A checkout.session.completed event for each payment stripe_pay made,
    signed now: COPY text lines for mem_event."""
    with open(os.path.join(FIXTURES, "checkout.session.completed.json")) as f:
        template = json.load(f)
    rows = q("SELECT id, order_id, checkout_session_id, amount, currency "
             "FROM stripepay.payment_record WHERE checkout_session_id IS NOT NULL ORDER BY id")
    t = int(time.time())
    key = WEBHOOK_SECRET.encode()
    lines = []
    for n, (pid, order_id, sess, amount, currency) in enumerate(rows, 1):
        obj = template["data"]["object"]
        obj.update(id=sess, amount_total=int(amount), amount_subtotal=int(amount),
                   currency=currency, client_reference_id=order_id,
                   payment_intent=f"pi_3Mem{int(pid):022d}",
                   metadata={"order_id": order_id, "stripepay_payment_id": pid})
        template.update(id=f"evt_1Mem{int(pid):022d}", created=t)
        body = json.dumps(template, separators=(",", ":")).encode()
        mac = hmac.new(key, b"%d." % t + body, hashlib.sha256).hexdigest()
        lines.append(f"{n}\t\\\\x{body.hex()}\tt={t},v1={mac}\n")
    return lines


def test_backend_pay_and_ingest():
    half = CALLS // 2
    setup()
    emulator_reset()
    s = Session()
    try:
        pid = int(s.run("SELECT pg_backend_pid()")[0])
        s.run("SET stripepay.max_retries = 0")
        pay, pay_s, (ok, refused) = s.measured(pid, "mem_pay", CALLS)
        stats = emulator("GET", "/_emulator/stats")
        FIGURES.append(f"{CALLS} stripe_pay calls ({ok} created, {refused} refused) in {pay_s:.1f} s; "
                       f"{stats['requests']} requests to the emulator on {stats['connections']} "
                       "connection(s)")
        print("  " + FIGURES[-1], flush=True)
        check_eq((ok, refused), (half, CALLS - half), "(created, refused)")
        check_eq(stats["connections"], 1, "connections to the emulator (keep-alive)")
        check_eq(stats["requests"], half, "requests to the emulator")
        report(f"backend, {CALLS} stripe_pay", pay, BACKEND_BOUND_KB)

        # the events come in through another session: this backend only ingests
        events = completed_events()
        check_eq(len(events), half, "payments with a checkout session")
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB, "-c",
                        "COPY mem_event FROM STDIN"], input="".join(events), text=True, check=True)
        del events
        s.run("SET stripepay.webhook_tolerance = 3600")
        n = min(EVENTS, 2 * half)
        ingest_samples, ingest_s, (fresh, again) = s.measured(pid, "mem_ingest", n)
        FIGURES.append(f"{n} webhook events ({fresh} first deliveries, {again} redeliveries) "
                       f"in {ingest_s:.1f} s")
        print("  " + FIGURES[-1], flush=True)
        check_eq((fresh, again), ((n + 1) // 2, n // 2), "(first deliveries, redeliveries)")
        check_eq(q("SELECT count(*) FROM stripepay.payment_record WHERE status = 'SUCCESSFUL'")[0][0],
                 str((n + 1) // 2), "payments the events marked SUCCESSFUL")
        return report(f"backend, {n} webhook ingests", ingest_samples, BACKEND_BOUND_KB)
    finally:
        s.close()
        emulator_reset()


# --- stripepay-relay -------------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plan_event(n, t):
    """An event stripepay records and does not act on, signed at t."""
    with open(os.path.join(FIXTURES, "plan.created.json")) as f:
        event = json.load(f)
    event["id"] = f"evt_1MemRelay{n:018d}"
    event["created"] = t
    body = json.dumps(event, indent=2).encode()
    mac = hmac.new(WEBHOOK_SECRET.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={mac}"


def http_post(port, path, body, sig):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nStripe-Signature: {sig}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def http_get(port, path):
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def write_requests(path, requests):
    """NUL-separated raw requests, for memory_relay.lua (bodies hold no NUL)."""
    with open(path, "wb") as f:
        f.write(b"\0".join(requests))


STATUS = re.compile(r" status=(\d{3}) ")
CONNECTIONS = 8


def wrk(port, total, firsts_file, threads=2, connections=CONNECTIONS, cap_s=300):
    """Runs wrk until total requests are answered; returns the counts its
    script prints."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{cap_s}s",
           "-s", LUA, f"http://127.0.0.1:{port}", "--", str(total), TMP, firsts_file, str(threads)]
    done = [os.path.join(TMP, f"memory-wrk-{i}.done") for i in range(threads)]
    for path in done:
        if os.path.exists(path):
            os.unlink(path)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # wrk waits out its -d whatever its threads do: interrupt it (it then
    # reports) once every thread has had its answers
    while proc.poll() is None and not all(os.path.exists(p) for p in done):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    m = re.search(r"^memory-relay: (.*)$", out, re.M)
    if proc.returncode != 0 or m is None:
        raise AssertionError(f"wrk failed ({proc.returncode}): {out}")
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def test_relay_million_requests():
    q(f"DROP ROLE IF EXISTS {ROLE}; CREATE ROLE {ROLE} LOGIN IN ROLE stripepay_webhook")
    port = free_port()
    t = int(time.time())
    # one first delivery in a hundred requests (memory_relay.lua's cycle)
    nfirst = REQUESTS // 100
    firsts = [plan_event(n, t) for n in range(1, nfirst + 1)]
    dup_body, dup_sig = plan_event(0, t)
    split = nfirst // 10
    write_requests(os.path.join(TMP, "memory-firsts-warm.req"),
                   [http_post(port, "/stripe", b, s) for b, s in firsts[:split]])
    write_requests(os.path.join(TMP, "memory-firsts.req"),
                   [http_post(port, "/stripe", b, s) for b, s in firsts[split:]])
    write_requests(os.path.join(TMP, "memory-dup.req"), [http_post(port, "/stripe", dup_body, dup_sig)])
    write_requests(os.path.join(TMP, "memory-badsig.req"), [
        http_post(port, "/stripe", dup_body, dup_sig[:-4] + "0000"),
        http_post(port, "/stripe/default", dup_body, f"t={t},v1={'ab' * 32}"),
        http_post(port, "/stripe", dup_body, "v1=" + "00" * 32)])
    write_requests(os.path.join(TMP, "memory-404.req"), [
        http_get(port, "/"), http_get(port, "/favicon.ico"), http_get(port, "/stripe/no%20such"),
        http_post(port, "/stripe/../healthz", dup_body, dup_sig),
        http_post(port, "/Stripe", dup_body, dup_sig), http_get(port, "/healthz/x")])
    write_requests(os.path.join(TMP, "memory-healthz.req"), [http_get(port, "/healthz")])
    del firsts

    dsn = f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} dbname={DB} user={ROLE}"
    log_path = os.path.join(TMP, "relay-memory.log")
    with open(log_path, "wb") as log:
        relay = subprocess.Popen([RELAY, "--listen", f"127.0.0.1:{port}", "--dsn", dsn, "--pool", "4"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while "listening on" not in open(log_path, errors="replace").read():
            check(relay.poll() is None and time.monotonic() < deadline, "the relay did not start")
            time.sleep(0.05)
        # stored before the first request: every copy sent is a duplicate
        ingest(dup_body, dup_sig, db=DB)
        samples = [smaps(relay.pid)]
        t0 = time.monotonic()
        warm = wrk(port, REQUESTS // 10, "memory-firsts-warm.req")
        samples.append(smaps(relay.pid))
        rest = wrk(port, REQUESTS - REQUESTS // 10, "memory-firsts.req")
        elapsed = time.monotonic() - t0
        samples.append(smaps(relay.pid))
        counts = {k: warm.get(k, 0) + rest.get(k, 0) for k in set(warm) | set(rest)}
        FIGURES.append(f"relay: {counts['requests']} requests in {elapsed:.1f} s "
                       f"({counts['requests'] / elapsed:.0f}/s): "
                       + ", ".join(f"{counts.get(k, 0)} {k}" for k in
                                   ("first", "duplicate", "badsig", "notfound", "healthz"))
                       + "; answers " + ", ".join(f"{v} x {k[1:]}" for k, v in sorted(counts.items())
                                                  if k.startswith("s")))
        print("  " + FIGURES[-1], flush=True)
        check_eq(counts["requests"], REQUESTS, "requests answered")
        check_eq(counts["first"], nfirst, "first deliveries sent")
        # the relay's own account, one log line a request: the answers wrk
        # counted, and the few it left in flight when it stopped
        statuses = {}
        with open(log_path, errors="replace") as f:
            for line in f:
                m = STATUS.search(line)
                if m:
                    statuses[m.group(1)] = statuses.get(m.group(1), 0) + 1
        logged = sum(statuses.values())
        FIGURES.append("relay log: " + ", ".join(f"{v} x {k}" for k, v in sorted(statuses.items())))
        print("  " + FIGURES[-1], flush=True)
        check(set(statuses) <= {"200", "400", "404"}, f"statuses the relay answered: {statuses}")
        check(REQUESTS <= logged <= REQUESTS + 2 * CONNECTIONS,
              f"the relay logged {logged} requests for {REQUESTS} answered")
        stored = int(q("SELECT count(*) FROM stripepay.webhook_event WHERE id LIKE 'evt_1MemRelay%'")[0][0])
        check_eq(stored, nfirst + 1, "events stored (the duplicate once, each first delivery once)")
        note = report(f"relay, {REQUESTS} requests", samples, RELAY_BOUND_KB)
        os.unlink(log_path)  # a line a request: kept only when something failed
        return note
    finally:
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(30)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()
        for name in ("memory-firsts-warm.req", "memory-firsts.req", "memory-dup.req",
                     "memory-badsig.req", "memory-404.req", "memory-healthz.req"):
            try:
                os.unlink(os.path.join(TMP, name))
            except FileNotFoundError:
                pass


def main():
    if shutil.which("wrk") is None:
        print("not ok - wrk is needed (Debian package wrk)")
        print("memory: 0 passed, 1 failed")
        sys.exit(1)
    try:
        run("memory", [test_backend_pay_and_ingest, test_relay_million_requests])
    finally:
        psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres", check=False)


if __name__ == "__main__":
    main()
