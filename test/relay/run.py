"""stripepay-relay against a live cluster: routing, the HTTP status of every
outcome, the pool, the log, a graceful stop, valgrind, and two fault tests
(Postgres restarted, relay killed) under a sender that retries like Stripe.

Needs what test/lib/env.sh sets up: PGHOST, PGPORT, PGUSER (a superuser) for
a running throwaway cluster, SP_TMP (its data directory is SP_TMP/data).
Standard library only; prints "relay: N passed, M failed".
"""
import http.client
import json
import os
import queue
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
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))

from harness import (TEST_KEY, WEBHOOK_SECRET, SqlError, check, check_eq, psql,  # noqa: E402
                     run, sign)

DB = "sp_relay"
ROLE = "sp_relay_webhook"
PAYMENTS_SECRET = "whsec_relay_payments_Vq0TfX2m9d8Lk4Jr"
# trust authentication ignores it; it must never reach the log all the same
DSN_PASSWORD = "relay-dsn-password-7Hq2"
MARKER = "RELAY-PAYLOAD-MARKER-3141"
BINARY = os.path.join(ROOT, "src", "relay", "stripepay-relay")
FIXTURES = os.path.join(ROOT, "test", "fixtures", "events")
TMP = os.environ.get("SP_TMP") or "/tmp"
PID = os.getpid()

REQUEST_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<method>[A-Z]+) (?P<path>\S+) "
    r"endpoint=(?P<endpoint>\S+) event=(?P<event>\S+) status=(?P<status>\d{3}) "
    r"ms=(?P<ms>\d+)(?: batch=(?P<batch>\d+))?(?: sqlstate=(?P<sqlstate>[0-9A-Z]{5}))?$")
NOTE_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z stripepay-relay: \S")


def q(sql):
    return psql(sql, db=DB)


def one(sql):
    rows = q(sql)
    return rows[0][0] if rows else None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def dsn(**extra):
    parts = dict(host=os.environ["PGHOST"], port=os.environ["PGPORT"], dbname=DB, user=ROLE,
                 password=DSN_PASSWORD)
    parts.update(extra)
    return " ".join(f"{k}={v}" for k, v in parts.items())


# --- events --------------------------------------------------------------------

_seq = [0]


def uid(prefix="evt_relay"):
    _seq[0] += 1
    return f"{prefix}_{PID}x{_seq[0]}"


def fixture(name):
    with open(os.path.join(FIXTURES, name + ".json")) as f:
        return json.load(f)


def plan_event(event_id=None):
    """An event stripepay records and does not act on."""
    e = fixture("plan.created")
    e["id"] = event_id or uid()
    e["created"] = int(time.time())
    e["data"]["object"]["nickname"] = MARKER
    return e


def body_of(event):
    return json.dumps(event, indent=2).encode()


# --- HTTP ----------------------------------------------------------------------

def request(port, method, path, body=None, headers=None, timeout=30):
    """One request on a fresh connection: (status, headers, parsed JSON or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    if hdrs.get("content-type") == "application/json" and data:
        data = json.loads(data)
    return resp.status, hdrs, data


def post_event(port, body, signature, path="/stripe", timeout=30):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return request(port, "POST", path, body, headers, timeout)


def deliver(port, event, secret=WEBHOOK_SECRET, path="/stripe"):
    body = body_of(event)
    return post_event(port, body, sign(body, secret), path)


def raw_status(port, head, chunks=(), timeout=10):
    """Sends a request by hand (headers, then body chunks, stopping when the
    server has answered) and returns the status of the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head)
        for chunk in chunks:
            try:
                s.sendall(chunk)
            except OSError:
                break           # the server answered and closed: read what it said
        data = b""
        while b"\r\n" not in data:
            part = s.recv(4096)
            if not part:
                break
            data += part
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    if not m:
        raise AssertionError(f"no HTTP answer: {data[:80]!r}")
    return int(m.group(1))


# --- the relay process ---------------------------------------------------------

class Relay:
    """A stripepay-relay process on 127.0.0.1, its stderr in a file."""

    def __init__(self, name, args=(), env=None, port=None, use_dsn=True, wrapper=()):
        self.name = name
        self.port = port or free_port()
        self.log_path = os.path.join(TMP, f"relay-{name}.log")
        self.args = list(args)
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("STRIPEPAY_RELAY_"):
                del self.env[k]
        self.env.update(env or {})
        self.use_dsn = use_dsn
        self.wrapper = list(wrapper)
        self.proc = None

    def start(self, wait=15):
        cmd = self.wrapper + [BINARY, "--listen", f"127.0.0.1:{self.port}"]
        if self.use_dsn:
            cmd += ["--dsn", dsn()]
        cmd += self.args
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log, env=self.env)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if "listening on" in self.log()[offset:]:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"relay {self.name} did not start: {self.log()[offset:]}")

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"relay {self.name} did not stop within {timeout} s")


MAIN = Relay("main",
             # the environment configures it, except the pool: a flag beats a bad variable
             args=["--pool", "4"],
             env={"STRIPEPAY_RELAY_DSN": dsn(), "STRIPEPAY_RELAY_POOL": "not-a-number",
                  "STRIPEPAY_RELAY_MAX_BODY": "1M", "STRIPEPAY_RELAY_TIMEOUT_MS": "5000"},
             use_dsn=False)


# --- Postgres ------------------------------------------------------------------

def pg_bindir():
    pg_config = os.environ.get("PG_CONFIG") or shutil.which("pg_config") or "pg_config"
    return subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                          check=True).stdout.strip()


def as_owner(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


def pg_ctl(*args, check_rc=True):
    data = os.path.join(TMP, "data")
    cmd = as_owner([os.path.join(pg_bindir(), "pg_ctl"), "-D", data] + list(args))
    # the server's output goes to its log file, never to a pipe we wait on
    with open(os.path.join(TMP, "relay-pg_ctl.out"), "ab") as out:
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                            timeout=60).returncode
    if check_rc and rc != 0:
        raise AssertionError(f"pg_ctl {' '.join(args)} failed ({rc})")
    return rc


def ensure_cluster_running():
    """Other suites run after this one: leave the cluster up."""
    if pg_ctl("status", check_rc=False) != 0:
        pg_ctl("-l", os.path.join(TMP, "server.log"), "-w", "start")
    for _ in range(100):
        try:
            psql("SELECT 1", db="postgres")
            return
        except (SqlError, subprocess.SubprocessError):
            time.sleep(0.1)
    raise AssertionError("the cluster does not answer")


def setup():
    psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
    psql(f"CREATE DATABASE {DB}", db="postgres")
    q("CREATE EXTENSION stripepay")
    q(f"SELECT 1 FROM stripepay.configure(secret_key => '{TEST_KEY}')")
    q(f"SELECT 1 FROM stripepay.add_webhook_secret('{WEBHOOK_SECRET}')")
    q(f"SELECT 1 FROM stripepay.add_webhook_secret('{PAYMENTS_SECRET}', 'payments')")
    # the relay's login role: a member of stripepay_webhook and nothing else
    q(f"""DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
              CREATE ROLE {ROLE} LOGIN;
            END IF;
          END $$;
          GRANT stripepay_webhook TO {ROLE};""")
    # ingest made slow on purpose, for events whose id says so
    q("""CREATE FUNCTION public.relay_slow() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.id LIKE 'evt_relayslow%' THEN PERFORM pg_sleep(1.5);
           ELSIF NEW.id LIKE 'evt_relaystuck%' THEN PERFORM pg_sleep(60);
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER relay_slow AFTER INSERT ON stripepay.webhook_event
             FOR EACH ROW EXECUTE FUNCTION public.relay_slow();""")


# --- tests ---------------------------------------------------------------------

def test_unit_map():
    proc = subprocess.run(["make", "-s", "-C", HERE, "check"], capture_output=True, text=True,
                          timeout=120)
    line = (proc.stdout.strip().splitlines() or [""])[-1]
    check(proc.returncode == 0, proc.stdout + proc.stderr)
    return line


def test_help_and_bad_configuration():
    out = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=10)
    check_eq(out.returncode, 0, "--help exit code")
    for word in ["--listen", "--dsn", "--pool", "--max-body", "--timeout-ms", "--batch", "--pipeline",
                 "STRIPEPAY_RELAY_DSN", "STRIPEPAY_RELAY_BATCH", "stripepay_webhook", "/healthz"]:
        check(word in out.stdout, f"--help mentions {word}")
    for args in (["--pool", "0"], ["--timeout-ms", "5"], ["--max-body", "1G"], ["--bogus"],
                 ["--batch", "0"], ["--batch", "1001"], ["--pipeline", "maybe"],
                 ["--dsn", f"password {DSN_PASSWORD}"]):
        bad = subprocess.run([BINARY] + args, capture_output=True, text=True, timeout=10)
        check_eq(bad.returncode, 2, f"exit code for {args}")
        check(DSN_PASSWORD not in bad.stderr, "a bad DSN is not echoed")
    with open(os.path.join(TMP, "relay-busy-port.log"), "ab") as log:
        rc = subprocess.run([BINARY, "--listen", f"127.0.0.1:{MAIN.port}"], stderr=log,
                            timeout=10).returncode
    check_eq(rc, 1, "exit code when the port is taken")


def test_installed_into_bindir():
    path = os.path.join(pg_bindir(), "stripepay-relay")
    check(os.access(path, os.X_OK), f"{path} is installed")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    check(out.stdout.startswith("stripepay-relay "), out.stdout)


def test_signed_event_is_stored():
    e = plan_event()
    status, hdrs, data = deliver(MAIN.port, e)
    check_eq(status, 200, "status")
    check_eq(hdrs.get("content-type"), "application/json", "content type")
    check_eq(data, {"event_id": e["id"], "event_type": "plan.created", "already_processed": False},
             "answer")
    check_eq(q(f"SELECT type, endpoint IS NULL FROM stripepay.webhook_event WHERE id = '{e['id']}'"),
             [["plan.created", "t"]], "stored")


def test_duplicate_is_already_processed():
    e = plan_event()
    check_eq(deliver(MAIN.port, e)[2]["already_processed"], False, "first delivery")
    status, _, data = deliver(MAIN.port, e)
    check_eq((status, data["already_processed"]), (200, True), "second delivery")
    check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE id = '{e['id']}'"), "1", "rows")


def test_named_endpoint_routing():
    e = plan_event()
    status, _, data = deliver(MAIN.port, e, PAYMENTS_SECRET, "/stripe/payments")
    check_eq((status, data["event_id"]), (200, e["id"]), "own secret")
    check_eq(one(f"SELECT endpoint FROM stripepay.webhook_event WHERE id = '{e['id']}'"), "payments",
             "endpoint recorded")
    # another endpoint's secret does not open this one
    status, _, data = deliver(MAIN.port, plan_event(), WEBHOOK_SECRET, "/stripe/payments")
    check_eq((status, data["sqlstate"]), (400, "SP026"), "default's secret on /stripe/payments")
    status, _, data = deliver(MAIN.port, plan_event(), PAYMENTS_SECRET, "/stripe/refunds")
    check_eq((status, data["sqlstate"]), (400, "SP025"), "an endpoint without secrets")
    # plain /stripe takes any live secret; /stripe/default only the default's
    check_eq(deliver(MAIN.port, plan_event(), PAYMENTS_SECRET)[0], 200, "/stripe, payments' secret")
    check_eq(deliver(MAIN.port, plan_event(), WEBHOOK_SECRET, "/stripe/default")[0], 200,
             "/stripe/default")
    # percent-encoding is decoded before the name is checked
    check_eq(deliver(MAIN.port, plan_event(), PAYMENTS_SECRET, "/stripe/pay%6Dents")[0], 200,
             "encoded name")


def test_refused_events_get_400_with_sqlstate():
    e = plan_event()
    body = body_of(e)
    now = int(time.time())
    live = plan_event()
    live["livemode"] = True
    cases = [
        (body, sign(body, "whsec_not_the_secret_at_all_000000"), "SP026", "webhook signature does not match"),
        (body, None, "SP020", "webhook has no Stripe-Signature header"),
        (body, "t=abc", "SP021", None),
        (body, sign(body, timestamp=now - 1000), "SP023", "webhook signature is too old"),
        (b"not json " + MARKER.encode(), None, "SP027", None),
        (b'{"id": "evt_1", "type": "x"}', None, "SP028", None),
        (body_of(live), None, "SP029", None),
    ]
    for payload, header, sqlstate, message in cases:
        if header is None and sqlstate != "SP020":
            header = sign(payload)
        status, _, data = post_event(MAIN.port, payload, header)
        check_eq((status, data.get("sqlstate")), (400, sqlstate), f"answer for {sqlstate}")
        check(isinstance(data.get("error"), str) and data["error"], f"{sqlstate} has a message")
        if message:
            check_eq(data["error"], message, f"message of {sqlstate}")
        check(MARKER not in json.dumps(data) and "whsec_" not in json.dumps(data), "no payload, no secret")
    check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE id IN ('{e['id']}', '{live['id']}')"),
             "0", "nothing stored")


def test_wrong_path_and_method():
    for path in ["/", "/nope", "/stripe/", "/stripe/a/b", "/stripe/" + "a" * 65, "/stripe/bad%20name",
                 "/stripe/caf%C3%A9", "/stripes", "/healthz/x"]:
        status, _, data = request(MAIN.port, "POST", path, b"{}", {"Stripe-Signature": "t=1,v1=00"})
        check_eq((status, data), (404, {"error": "not found"}), f"POST {path}")
    check_eq(request(MAIN.port, "POST", "/stripe/" + "a" * 64, b"x", {"Stripe-Signature": "t=1"})[0], 400,
             "a 64-character endpoint name is a name")
    for method, path, allow in [("GET", "/stripe", "POST"), ("GET", "/stripe/payments", "POST"),
                                ("PUT", "/stripe", "POST"), ("POST", "/healthz", "GET, HEAD"),
                                ("DELETE", "/healthz", "GET, HEAD")]:
        status, hdrs, _ = request(MAIN.port, method, path, b"" if method != "GET" else None)
        check_eq((status, hdrs.get("allow")), (405, allow), f"{method} {path}")


def test_nul_in_path_is_404():
    # libmicrohttpd decodes %00 into the C string the route is read from:
    # "/stripe%00/payments" must not be routed as "/stripe"
    for method, path in [("POST", "/stripe%00/payments"), ("POST", "/stripe/payments%00/../x"),
                         ("POST", "/stripe/payments%00"), ("POST", "/stripe%00"),
                         ("GET", "/healthz%00.html"), ("GET", "/healthz%00"),
                         ("POST", "/stripe%2500")]:
        e = plan_event()
        body = body_of(e) if method == "POST" else None
        headers = {"Stripe-Signature": sign(body, PAYMENTS_SECRET)} if body else {}
        status, _, data = request(MAIN.port, method, path, body, headers)
        check_eq((status, data), (404, {"error": "not found"}), f"{method} {path}")
        if body:
            check_eq(stored([e["id"]]), 0, f"nothing stored for {path}")
    # the rest of the decoding is as before
    check_eq(request(MAIN.port, "GET", "/health%7A")[0], 200, "GET /health%7A")
    check_eq(request(MAIN.port, "GET", "/healthz?probe=%00")[0], 200, "%00 in the query string")
    check_eq(deliver(MAIN.port, plan_event(), PAYMENTS_SECRET, "/stripe/%70ayments")[0], 200,
             "/stripe/%70ayments")


def test_keep_alive():
    conn = http.client.HTTPConnection("127.0.0.1", MAIN.port, timeout=30)
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        sock = conn.sock
        check(sock is not None and not r.will_close, "kept open after /healthz")
        statuses = [r.status]
        for _ in range(3):
            e = plan_event()
            body = body_of(e)
            conn.request("POST", "/stripe", body, {"Stripe-Signature": sign(body)})
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
        conn.request("GET", "/nope")
        r = conn.getresponse()
        r.read()
        statuses.append(r.status)
        check_eq(statuses, [200, 200, 200, 200, 404], "statuses")
        check(conn.sock is sock and not r.will_close, "one connection for all five")
    finally:
        conn.close()


def test_body_cap():
    cap = 1024 * 1024
    # exactly the cap is read and handed over (and refused as not JSON)
    body = b"x" * cap
    status, _, data = post_event(MAIN.port, body, sign(body))
    check_eq((status, data.get("sqlstate")), (400, "SP027"), "a body of exactly the cap")
    # announced too large: answered before the body is sent
    head = (f"POST /stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\n"
            f"Content-Length: {cap + 1}\r\n\r\n").encode()
    check_eq(raw_status(MAIN.port, head), 413, "Content-Length over the cap")
    head100 = (f"POST /stripe/payments HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               f"Content-Length: {50 * cap}\r\n\r\n").encode()
    check_eq(raw_status(MAIN.port, head100), 413, "Expect: 100-continue over the cap")
    # chunked: answered as soon as the cap is passed
    head = b"POST /stripe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"y" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 40
    check_eq(raw_status(MAIN.port, head, chunks), 413, "chunked body over the cap")
    # and the relay carries on
    check_eq(deliver(MAIN.port, plan_event())[0], 200, "next event")


def test_healthz():
    status, hdrs, data = request(MAIN.port, "GET", "/healthz")
    check_eq((status, data), (200, {"status": "ok"}), "GET")
    check_eq(request(MAIN.port, "HEAD", "/healthz")[0], 200, "HEAD")


def test_connects_as_the_webhook_role():
    rows = psql(f"SELECT usename, application_name FROM pg_stat_activity "
                f"WHERE datname = '{DB}' AND application_name = 'stripepay-relay'", db="postgres")
    check(rows, "the relay's connections are visible")
    check_eq({tuple(r) for r in rows}, {(ROLE, "stripepay-relay")}, "role of every connection")
    # which may ingest and nothing else
    env = dict(os.environ, PGUSER=ROLE)
    for sql in ["SELECT count(*) FROM stripepay.payment_record",
                "SELECT count(*) FROM stripepay.webhook_event",
                "SELECT stripepay.add_webhook_secret(NULL)"]:
        proc = subprocess.run(["psql", "-X", "-q", "-d", DB, "-v", "ON_ERROR_STOP=1", "-c", sql],
                              env=env, capture_output=True, text=True, timeout=30)
        check(proc.returncode != 0 and "permission denied" in proc.stderr, f"{ROLE} may not: {sql}")


def test_failing_user_trigger_gets_5xx_and_stores_nothing():
    pi = f"pi_relay_{PID}"
    pay_id = one(f"""INSERT INTO stripepay.payment_record
                       (order_id, currency, amount, flow, payment_intent_id, created_by)
                     VALUES (4711, 'usd', 1000, 'payment_intent', '{pi}', 'postgres') RETURNING id""")
    e = fixture("payment_intent.succeeded")
    e["id"] = uid()
    e["created"] = int(time.time())
    e["data"]["object"]["id"] = pi
    e["data"]["object"]["metadata"] = {"order_id": "4711", "stripepay_payment_id": pay_id}
    q("""CREATE FUNCTION public.relay_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'warehouse is down'; END $$;
         CREATE TRIGGER relay_refuse AFTER INSERT ON stripepay.payment_flow
             FOR EACH ROW EXECUTE FUNCTION public.relay_refuse();""")
    try:
        status, _, data = deliver(MAIN.port, e)
        check_eq((status, data.get("sqlstate")), (500, "P0001"), "answer")
        check("warehouse" not in json.dumps(data), "a trigger's message stays in the database")
        check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE id = '{e['id']}'"), "0", "stored")
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pay_id}"), "PENDING",
                 "payment")
    finally:
        q("DROP TRIGGER relay_refuse ON stripepay.payment_flow; DROP FUNCTION public.relay_refuse()")
    # Stripe resends: now it lands
    status, _, data = deliver(MAIN.port, e)
    check_eq((status, data["already_processed"]), (200, False), "resent")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pay_id}"), "SUCCESSFUL",
             "payment")


def terminate_relay_backends(application_name="stripepay-relay"):
    return psql(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE datname = '{DB}' AND usename = '{ROLE}' "
                f"AND application_name = '{application_name}'", db="postgres")[0][0]


def test_terminated_connections_are_replaced():
    # fill the pool, then kill every connection in it
    threads = [threading.Thread(target=deliver, args=(MAIN.port, plan_event())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    killed = int(terminate_relay_backends())
    check(killed >= 1, "connections to terminate")
    time.sleep(0.2)
    results = []
    threads = [threading.Thread(target=lambda: results.append(deliver(MAIN.port, plan_event())[0]))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    check_eq(results, [200] * 6, "after the backends were terminated")
    # and a connection lost in the middle of a statement is retried once
    slow = plan_event(uid("evt_relayslow"))
    got = []
    t = threading.Thread(target=lambda: got.append(deliver(MAIN.port, slow)))
    t.start()
    wait_for_sleeping_ingest()
    terminate_relay_backends()
    t.join(30)
    check_eq(got[0][0], 200, "status after losing the connection mid-statement")
    check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE id = '{slow['id']}'"), "1", "stored")
    return f"{killed} connections terminated"


def wait_for_sleeping_ingest(count=1, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{ROLE}' "
                 f"AND wait_event = 'PgSleep'", db="postgres")[0][0]
        if int(n) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("the slow ingest did not start")


def test_no_database_gets_503_not_a_hang():
    relay = Relay("nodb", args=["--dsn", f"host={TMP}/no-such-dir port=1 dbname=x user={ROLE}",
                                "--timeout-ms", "500"], use_dsn=False).start()
    try:
        for path, method in [("/stripe", "POST"), ("/healthz", "GET")]:
            started = time.monotonic()
            if method == "POST":
                status, _, data = deliver(relay.port, plan_event())
            else:
                status, _, data = request(relay.port, "GET", path)
            took = time.monotonic() - started
            check_eq(status, 503, f"{method} {path}")
            check(0.4 <= took < 3, f"{method} {path} took {took:.2f} s")
    finally:
        check_eq(relay.stop(), 0, "exit code")
    check("could not connect to the database" in relay.log(), "the failure is logged")


def test_silent_database_is_not_a_hang():
    # a server that takes the connection and never says a word
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    relay = Relay("silent", args=["--dsn", f"host=127.0.0.1 port={silent.getsockname()[1]} dbname=x",
                                  "--timeout-ms", "500"], use_dsn=False).start()
    try:
        started = time.monotonic()
        status = deliver(relay.port, plan_event())[0]
        took = time.monotonic() - started
        check_eq(status, 503, "a server that does not answer the startup")
        check(took < 3, f"took {took:.2f} s")
    finally:
        check_eq(relay.stop(), 0, "exit code")
        silent.close()
    # a backend that stops answering in the middle of a statement: no
    # statement_timeout can fire, the relay's own deadline must
    relay = Relay("stopped", args=["--dsn", dsn(application_name="relay-stopped"), "--pool", "1",
                                   "--timeout-ms", "500"], use_dsn=False).start()
    try:
        check_eq(deliver(relay.port, plan_event())[0], 200, "first event")
        pid = int(psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'relay-stopped'",
                       db="postgres")[0][0])
        try:
            os.kill(pid, signal.SIGSTOP)
        except PermissionError:
            return "backend stop skipped: not allowed to signal the postgres user's processes"
        try:
            started = time.monotonic()
            status = deliver(relay.port, plan_event())[0]
            took = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        check_eq(status, 504, "a backend that stopped answering")
        check(2 <= took < 5, f"took {took:.2f} s (timeout 0.5 s + 2 s of grace)")
        check_eq(deliver(relay.port, plan_event())[0], 200, "next event, on a fresh connection")
    finally:
        check_eq(relay.stop(), 0, "exit code")


def test_pool_exhausted_gets_503():
    # one at a time, as without batching: the third waits longer than the timeout
    relay = Relay("pool1", args=["--pool", "1", "--timeout-ms", "700", "--batch", "1"]).start()
    results = []

    def slow():
        started = time.monotonic()
        status = deliver(relay.port, plan_event(uid("evt_relayslow")))[0]
        results.append((status, time.monotonic() - started))
    try:
        threads = [threading.Thread(target=slow) for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join(30)
    finally:
        check_eq(relay.stop(), 0, "exit code")
    statuses = sorted(s for s, _ in results)
    check(all(s >= 500 for s in statuses), f"all 5xx: {statuses}")
    check(503 in statuses, f"one found no free connection: {statuses}")
    check(504 in statuses, f"statement_timeout answers 504: {statuses}")
    check(max(t for _, t in results) < 4, f"no hang: {results}")
    return f"statuses {statuses}"


def test_slow_upload_is_not_a_wait_for_a_connection():
    # the wait for a pooled connection starts when the body is in: a body
    # that takes longer than --timeout-ms to arrive, on an idle pool, lands
    relay = Relay("slow-upload", args=["--pool", "1", "--timeout-ms", "300"]).start()
    try:
        check_eq(request(relay.port, "GET", "/healthz")[0], 200, "the pool is connected")
        e = plan_event()
        body = body_of(e)
        head = (f"POST /stripe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Stripe-Signature: {sign(body)}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        pieces = [body[i * len(body) // 6:(i + 1) * len(body) // 6] for i in range(6)]
        s = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
        try:
            started = time.monotonic()
            s.sendall(head)
            for piece in pieces:
                time.sleep(0.2)     # 1.2 s for the body, four times the timeout
                s.sendall(piece)
            answer = b""
            while True:
                part = s.recv(65536)
                if not part:
                    break
                answer += part
            took = time.monotonic() - started
        finally:
            s.close()
        m = re.match(rb"HTTP/1\.1 (\d{3})", answer)
        check(m is not None, f"an HTTP answer: {answer[:80]!r}")
        check_eq(int(m.group(1)), 200, f"status of a slow upload: {answer[-200:]!r}")
        check(took < 5, f"took {took:.2f} s")
        check_eq(stored([e["id"]]), 1, "stored")
    finally:
        check_eq(relay.stop(), 0, "exit code")
    # the log's ms= still counts from the headers
    ms = [int(m["ms"]) for m in map(REQUEST_LINE.match, relay.log().splitlines())
          if m and m["event"] == e["id"]]
    check(len(ms) == 1 and ms[0] >= 1000, f"the log line's ms= covers the upload: {ms}")


def test_log_lines():
    log = MAIN.log()
    lines = log.splitlines()
    requests = []
    for line in lines:
        m = REQUEST_LINE.match(line)
        if m:
            requests.append(m.groupdict())
        else:
            check(NOTE_LINE.match(line), f"unexpected log line {line!r}")
    check(len(requests) > 30, f"{len(requests)} request lines")
    check(any(r["endpoint"] == "*" and r["event"].startswith("evt_relay_") and r["status"] == "200"
              for r in requests), "an ingested event on /stripe")
    check(any(r["endpoint"] == "payments" and r["path"] == "/stripe/payments" and r["status"] == "200"
              for r in requests), "an ingested event on /stripe/payments")
    check(any(r["status"] == "400" and r["sqlstate"] == "SP026" for r in requests), "a refused one")
    check(any(r["status"] == "500" and r["sqlstate"] == "P0001" for r in requests), "a failed one")
    check(any(r["status"] == "404" and r["endpoint"] == "-" for r in requests), "a 404")
    check(any(r["status"] == "413" for r in requests), "a 413")
    for secret in [WEBHOOK_SECRET, PAYMENTS_SECRET, "whsec_", TEST_KEY, "sk_test", DSN_PASSWORD,
                   "password", MARKER, "{", "warehouse"]:
        check(secret not in log, f"{secret!r} is not in the log")


# --- batches -------------------------------------------------------------------

def log_batches(relay, event_ids=None):
    """{event id: batch size} of the relay's request lines (1 when alone), for
    the given events, or every event."""
    sizes = {}
    for line in relay.log().splitlines():
        m = REQUEST_LINE.match(line)
        if m and m["event"] != "-" and (event_ids is None or m["event"] in event_ids):
            sizes[m["event"]] = int(m["batch"] or 1)
    return sizes


def as_one_batch(relay, deliveries):
    """Sends deliveries [(body, signature)] while the relay's only connection
    runs a slow event, so that they queue and run together once it is free.
    Returns [(status, answer)] in their order."""
    slow = plan_event(uid("evt_relayslow"))
    got = {}

    def send(key, body, signature):
        status, _, data = post_event(relay.port, body, signature)
        got[key] = (status, data)
    first = threading.Thread(target=send, args=("slow", body_of(slow), sign(body_of(slow))))
    first.start()
    wait_for_sleeping_ingest()
    threads = [threading.Thread(target=send, args=(i, body, signature))
               for i, (body, signature) in enumerate(deliveries)]
    for t in threads:
        t.start()
    for t in threads + [first]:
        t.join(30)
    check_eq(got.get("slow", (None,))[0], 200, "the slow event that held the connection")
    return [got.get(i, (None, None)) for i in range(len(deliveries))]


def batch_relay(name, pipeline):
    return Relay(f"{name}-{pipeline}", args=["--pool", "1", "--batch", "32", "--timeout-ms", "5000",
                                             "--pipeline", pipeline]).start()


def pending_payment(order_id):
    pi = f"pi_relay_{PID}_{order_id}"
    pay_id = one(f"""INSERT INTO stripepay.payment_record
                       (order_id, currency, amount, flow, payment_intent_id, created_by)
                     VALUES ({order_id}, 'usd', 1000, 'payment_intent', '{pi}', 'postgres') RETURNING id""")
    e = fixture("payment_intent.succeeded")
    e["id"] = uid()
    e["created"] = int(time.time())
    e["data"]["object"]["id"] = pi
    e["data"]["object"]["metadata"] = {"order_id": str(order_id), "stripepay_payment_id": pay_id}
    return pay_id, e


def signed(event, secret=WEBHOOK_SECRET):
    body = body_of(event)
    return body, sign(body, secret)


def stored(event_ids):
    ids = ", ".join(f"'{i}'" for i in event_ids)
    return int(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE id IN ({ids})"))


def check_batched(relay, event_ids, size):
    sizes = log_batches(relay, set(event_ids))
    check_eq(sorted(sizes.values()), [size] * len(event_ids), "batch size in each event's log line")


def batch_with_failing_trigger(pipeline):
    base = 4800 if pipeline == "on" else 4900
    bad_pay, bad = pending_payment(base + 1)
    good_pay, good = pending_payment(base + 2)
    plans = [plan_event() for _ in range(4)]
    # the failing event in the middle, and one more after it
    events = [plans[0], plans[1], bad, plans[2], good, plans[3]]
    q(f"""CREATE FUNCTION public.relay_refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            IF NEW.order_id = {base + 1} THEN RAISE EXCEPTION 'warehouse is down'; END IF;
            RETURN NEW;
          END $$;
          CREATE TRIGGER relay_refuse_one AFTER INSERT ON stripepay.payment_flow
              FOR EACH ROW EXECUTE FUNCTION public.relay_refuse_one();""")
    relay = batch_relay("batch-trigger", pipeline)
    try:
        got = as_one_batch(relay, [signed(e) for e in events])
    finally:
        q("DROP TRIGGER relay_refuse_one ON stripepay.payment_flow; DROP FUNCTION public.relay_refuse_one()")
        check_eq(relay.stop(), 0, "exit code")
    for e, (status, data) in zip(events, got):
        if e is bad:
            check_eq((status, data.get("sqlstate")), (500, "P0001"), "the event whose trigger failed")
        else:
            check_eq((status, data), (200, {"event_id": e["id"], "event_type": e["type"],
                                            "already_processed": False}), f"{e['type']} beside it")
    check_eq(stored([bad["id"]]), 0, "the failed event is not stored")
    check_eq(stored([e["id"] for e in events if e is not bad]), 5, "the others are stored")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {bad_pay}"), "PENDING", "its payment")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {good_pay}"), "SUCCESSFUL",
             "the other payment")
    # the failed event's line has no event id: the database never returned it
    check_batched(relay, [e["id"] for e in events if e is not bad], len(events))
    check(any(m and m["status"] == "500" and m["batch"] == str(len(events))
              for m in map(REQUEST_LINE.match, relay.log().splitlines())), "its own line, in the batch")


def test_batch_one_failing_trigger_pipelined():
    batch_with_failing_trigger("on")


def test_batch_one_failing_trigger_unpipelined():
    batch_with_failing_trigger("off")


def batch_with_bad_signatures(pipeline):
    events = [plan_event() for _ in range(6)]
    wrong = "whsec_not_the_secret_at_all_000000"
    deliveries = [signed(e, wrong if i in (0, 3, 5) else WEBHOOK_SECRET) for i, e in enumerate(events)]
    relay = batch_relay("batch-signature", pipeline)
    try:
        got = as_one_batch(relay, deliveries)
    finally:
        check_eq(relay.stop(), 0, "exit code")
    check_eq([(status, data.get("sqlstate")) for status, data in got],
             [(400, "SP026"), (200, None), (200, None), (400, "SP026"), (200, None), (400, "SP026")],
             "answers")
    check_eq(stored([events[i]["id"] for i in (1, 2, 4)]), 3, "the well signed are stored")
    check_eq(stored([events[i]["id"] for i in (0, 3, 5)]), 0, "the badly signed are not")
    check_batched(relay, [events[i]["id"] for i in (1, 2, 4)], len(events))


def test_batch_bad_signatures_among_good_pipelined():
    batch_with_bad_signatures("on")


def test_batch_bad_signatures_among_good_unpipelined():
    batch_with_bad_signatures("off")


def test_batch_duplicates_processed_once():
    dup = plan_event()
    other = plan_event()
    deliveries = [signed(dup) for _ in range(7)]
    deliveries.insert(3, signed(other))
    relay = batch_relay("batch-duplicates", "on")
    try:
        got = as_one_batch(relay, deliveries)
        # and the same event again, in batches of their own, concurrently
        more = []
        threads = [threading.Thread(target=lambda: more.append(deliver(relay.port, dup)))
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        check_eq(relay.stop(), 0, "exit code")
    answers = [data for _, data in got] + [data for _, _, data in more]
    check_eq([status for status, _ in got] + [status for status, _, _ in more], [200] * 14, "statuses")
    firsts = [a for a in answers if a["event_id"] == dup["id"] and not a["already_processed"]]
    check_eq(len(firsts), 1, "exactly one delivery of the duplicate processed it")
    check_eq(stored([dup["id"]]), 1, "stored once")
    check_eq(log_batches(relay, {other["id"]}), {other["id"]: len(deliveries)}, "one batch")


def test_a_batch_whose_connection_breaks_answers_5xx_to_all():
    """Nothing of a batch is stored unless its COMMIT is: a connection lost
    in the middle of a batch (here while its fourth event runs) answers
    every event of the batch 5xx, and Stripe's resend then lands them."""
    events = [plan_event() for _ in range(3)] + [plan_event(uid("evt_relayslow"))] + [plan_event()]
    relay = batch_relay("batch-broken", "on")
    try:
        first_slow = plan_event(uid("evt_relayslow"))
        got = {}

        def send(key, body, signature):
            status, _, data = post_event(relay.port, body, signature)
            got[key] = (status, data)
        first = threading.Thread(target=send, args=("first", body_of(first_slow), sign(body_of(first_slow))))
        first.start()
        wait_for_sleeping_ingest()
        threads = [threading.Thread(target=send, args=(i, body, signature))
                   for i, (body, signature) in enumerate(signed(e) for e in events)]
        for t in threads:
            t.start()
        first.join(30)
        check_eq(got.get("first", (None,))[0], 200, "the event that held the connection")
        wait_for_sleeping_ingest()          # the batch's own slow event
        terminate_relay_backends()
        for t in threads:
            t.join(30)
        statuses = [got.get(i, (None, {}))[0] for i in range(len(events))]
        check(all(s is not None and s >= 500 for s in statuses), f"every event of the batch: {statuses}")
        check_eq(stored([e["id"] for e in events]), 0, "nothing of the batch is stored")
        # Stripe resends; now they land
        resent = as_one_batch(relay, [signed(e) for e in events])
        check_eq([(s, d.get("already_processed")) for s, d in resent], [(200, False)] * 5, "resent")
        check_eq(stored([e["id"] for e in events]), 5, "stored")
        check_eq(relay.proc.poll(), None, "the relay kept running")
    finally:
        check_eq(relay.stop(), 0, "exit code")


def test_batches_form_under_concurrency():
    relay = Relay("batch-load", args=["--pool", "2"]).start()
    prefix = f"evt_rb_{PID}_"
    events = [plan_event(f"{prefix}{i}") for i in range(400)]
    # which backends stored them: a batch must leave its connection usable;
    # batches form only while requests queue
    q(f"""CREATE TABLE public.relay_backends (pid int);
          CREATE FUNCTION public.relay_note_backend() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            IF NEW.id LIKE '{prefix}%' THEN
              INSERT INTO public.relay_backends VALUES (pg_backend_pid());
              -- each event holds its connection a little, so that 16 senders
              -- queue behind 2 connections however fast the machine is
              PERFORM pg_sleep(0.005);
            END IF;
            RETURN NULL;
          END $$;
          CREATE TRIGGER relay_note_backend AFTER INSERT ON stripepay.webhook_event
              FOR EACH ROW EXECUTE FUNCTION public.relay_note_backend();
          GRANT INSERT ON public.relay_backends TO stripepay_webhook;""")
    try:
        before = one(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{DB}'")
        sender = Sender(relay.port, events, threads=16, pace=0).start()
        sender.join(90)
        check_all_landed_once(prefix, sender)
        check_eq(one("SELECT count(DISTINCT pid) <= 2 FROM public.relay_backends"), "t",
                 "the events were stored by the pool's two connections")
    finally:
        check_eq(relay.stop(), 0, "exit code")
        q("DROP TRIGGER relay_note_backend ON stripepay.webhook_event; "
          "DROP FUNCTION public.relay_note_backend(); DROP TABLE public.relay_backends")
    sizes = log_batches(relay, {e["id"] for e in events})
    check_eq(len(sizes), len(events), "a log line for each event")
    shared = sum(1 for n in sizes.values() if n > 1)
    check(shared > len(events) // 4, f"{shared} of {len(events)} events shared a commit")
    time.sleep(0.6)     # the statistics are flushed every half second or so
    after = one(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{DB}'")
    commits = int(after) - int(before)
    return (f"{shared} of {len(events)} events in batches, largest {max(sizes.values())}; "
            f"{commits} commits in the database for {len(events)} events")


def test_sigterm_finishes_in_flight():
    relay = Relay("sigterm", args=["--pool", "2", "--timeout-ms", "5000"]).start()
    idle = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
    try:
        idle.request("GET", "/healthz")
        check_eq(idle.getresponse().read(), b'{"status": "ok"}\n', "keep-alive connection")
        slow = plan_event(uid("evt_relayslow"))
        got = []
        t = threading.Thread(target=lambda: got.append(deliver(relay.port, slow)))
        t.start()
        wait_for_sleeping_ingest()
        relay.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        # a new connection is refused at once
        try:
            status = request(relay.port, "GET", "/healthz", timeout=3)[0]
        except ConnectionRefusedError:
            status = "refused"
        check_eq(status, "refused", "a new connection")
        # a request on a connection that was already open is turned away
        try:
            idle.request("GET", "/healthz")
            r = idle.getresponse()
            r.read()
            check_eq((r.status, r.will_close), (503, True), "a new request on an open connection")
        except (http.client.RemoteDisconnected, ConnectionError):
            pass
        t.join(15)
        check(got, "the request in flight was answered")
        check_eq((got[0][0], got[0][2]["event_id"]), (200, slow["id"]), "the request in flight")
        check_eq(relay.proc.wait(15), 0, "exit code")
    finally:
        idle.close()
        relay.stop()
    check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event WHERE id = '{slow['id']}'"), "1", "stored")
    check("SIGTERM: finishing 1 request(s) in flight" in relay.log(), "the stop is logged")


def test_second_signal_stops_at_once():
    # a statement that would run for a minute: the first SIGTERM waits for
    # it, the second stops the relay at once and cancels it
    app = "relay-second-signal"
    relay = Relay("second-signal", args=["--dsn", dsn(application_name=app), "--pool", "2",
                                         "--timeout-ms", "120000"], use_dsn=False).start()
    stuck = plan_event(uid("evt_relaystuck"))
    got = []

    def send():
        try:
            got.append(deliver(relay.port, stuck)[0])
        except (OSError, http.client.HTTPException) as err:
            got.append(type(err).__name__)
    t = threading.Thread(target=send, daemon=True)
    try:
        t.start()
        wait_for_sleeping_ingest()
        relay.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        check_eq(relay.proc.poll(), None, "still draining after the first signal")
        relay.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            rc = relay.proc.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - started
        check(rc is not None and took < 2, f"stopped {took:.2f} s after the second signal (rc {rc})")
        check_eq(rc, 0, "exit code")
        t.join(10)
        check(got and got[0] != 200, f"the abandoned request was not answered 200: {got}")
        # its statement was cancelled: no backend of the relay sleeps on
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            left = one(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' "
                       f"AND wait_event = 'PgSleep'")
            if left == "0":
                break
            time.sleep(0.05)
        check_eq(left, "0", "backends still running the abandoned statement")
        check_eq(stored([stuck["id"]]), 0, "the cancelled event is not stored")
    finally:
        relay.stop(signal.SIGKILL)
        terminate_relay_backends(app)
    log = relay.log()
    check("second signal (SIGTERM): stopping now" in log, "the stop is logged")
    check("cancelled 1 statement(s)" in log, "the cancel is logged")
    return f"stopped {took:.2f} s after the second signal"


def test_valgrind_clean():
    if shutil.which("valgrind") is None:
        raise AssertionError("valgrind is not installed")
    vg_log = os.path.join(TMP, "relay-valgrind.vg")
    # the empty default DSN: libpq's PG* variables choose the database and role
    relay = Relay("valgrind", args=["--pool", "2", "--max-body", "64k"], use_dsn=False,
                  env={"PGDATABASE": DB, "PGUSER": ROLE, "PGAPPNAME": "relay-valgrind"},
                  wrapper=["valgrind", "--error-exitcode=99", "--leak-check=full",
                           "--errors-for-leak-kinds=definite,indirect",
                           "--show-leak-kinds=definite,indirect", f"--log-file={vg_log}"])
    relay.start(wait=60)
    try:
        e = plan_event()
        check_eq(request(relay.port, "GET", "/healthz")[0], 200, "healthz")
        check_eq(deliver(relay.port, e)[0], 200, "event")
        check_eq(deliver(relay.port, e)[2]["already_processed"], True, "duplicate")
        check_eq(deliver(relay.port, plan_event(), "whsec_wrong_secret_000000000000")[0], 400, "bad signature")
        check_eq(request(relay.port, "GET", "/nope")[0], 404, "404")
        check_eq(request(relay.port, "GET", "/stripe")[0], 405, "405")
        check_eq(raw_status(relay.port, b"POST /stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"),
                 413, "413")
        check_eq(raw_status(relay.port, b"POST /stripe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                            [b"8000\r\n" + b"z" * 0x8000 + b"\r\n"] * 4), 413, "413 chunked")
        # a burst: two slow events hold both connections, so the rest queue
        # and run in batches
        slow = [plan_event(uid("evt_relayslow")) for _ in range(2)]
        burst = [plan_event() for _ in range(10)]
        statuses = []
        threads = [threading.Thread(target=lambda e=e: statuses.append(deliver(relay.port, e)[0]))
                   for e in slow]
        for t in threads:
            t.start()
        for _ in range(200):
            if one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'relay-valgrind'"
                   "   AND wait_event = 'PgSleep'") == "2":
                break
            time.sleep(0.05)
        burst_threads = [threading.Thread(target=lambda e=e: statuses.append(deliver(relay.port, e)[0]))
                         for e in burst]
        for t in burst_threads:
            t.start()
        threads += burst_threads
        for t in threads:
            t.join(60)
        burst += slow
        check_eq(statuses, [200] * len(burst), "a burst of events")
        check(max(log_batches(relay, {e["id"] for e in burst}).values()) > 1, "the burst ran in batches")
        terminate_relay_backends("relay-valgrind")
        check_eq(deliver(relay.port, plan_event())[0], 200, "after the connections were terminated")
    finally:
        rc = relay.stop(timeout=60)
    with open(vg_log) as f:
        report = f.read()
    check_eq(rc, 0, f"exit code under valgrind (99: errors or leaks)\n{report[-3000:]}")
    check("ERROR SUMMARY: 0 errors" in report, f"valgrind reported:\n{report[-3000:]}")
    lost = re.findall(r"(definitely|indirectly) lost: ([0-9,]+) bytes", report)
    check(all(n == "0" for _, n in lost), f"leaks: {lost}")
    allocs = re.search(r"total heap usage: ([0-9,]+) allocs", report)
    return f"{allocs.group(1) if allocs else '?'} allocations, none lost"


class Sender:
    """Delivers events like Stripe: each until a 2xx, resending after any
    other answer or a broken connection, with a small backoff."""

    def __init__(self, port, events, threads=8, pace=0.02, give_up=60):
        self.port = port
        self.todo = queue.Queue()
        for e in events:
            self.todo.put(e)
        self.total = len(events)
        self.delivered = {}
        self.failures = {}
        self.lock = threading.Lock()
        self.pace = pace
        self.give_up = give_up
        self.threads = [threading.Thread(target=self.work, daemon=True) for _ in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def done(self):
        with self.lock:
            return len(self.delivered)

    def wait_for(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while self.done() < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def join(self, timeout=90):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def work(self):
        while True:
            try:
                e = self.todo.get_nowait()
            except queue.Empty:
                return
            body = body_of(e)
            delay = 0.05
            give_up = time.monotonic() + self.give_up
            while True:
                try:
                    status = post_event(self.port, body, sign(body), timeout=20)[0]
                except (OSError, http.client.HTTPException) as err:
                    status = type(err).__name__
                if isinstance(status, int) and 200 <= status < 300:
                    with self.lock:
                        self.delivered[e["id"]] = status
                    break
                with self.lock:
                    self.failures[status] = self.failures.get(status, 0) + 1
                if time.monotonic() > give_up:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            time.sleep(self.pace)


def check_all_landed_once(prefix, sender):
    check_eq(len(sender.delivered), sender.total, f"events answered 2xx (failures: {sender.failures})")
    rows = q(f"SELECT count(*), count(DISTINCT id) FROM stripepay.webhook_event WHERE id LIKE '{prefix}%'")
    check_eq(rows, [[str(sender.total), str(sender.total)]], "events stored, each once")


def test_fault_postgres_restart():
    relay = Relay("restart", args=["--pool", "4", "--timeout-ms", "10000"]).start()
    prefix = f"evt_rf1_{PID}_"
    sender = Sender(relay.port, [plan_event(f"{prefix}{i}") for i in range(300)]).start()
    try:
        sender.wait_for(80)
        check(sender.done() < 300, "the restart happens under load")
        pg_ctl("-l", os.path.join(TMP, "server.log"), "-m", "fast", "-w", "restart")
        sender.join(90)
    finally:
        ensure_cluster_running()
    try:
        check_all_landed_once(prefix, sender)
        check(relay.proc.poll() is None, "the relay kept running")
        status, _, data = request(relay.port, "GET", "/healthz")
        check_eq((status, data), (200, {"status": "ok"}), "healthz after the restart")
    finally:
        check_eq(relay.stop(), 0, "exit code")
    return (f"non-2xx answers seen by the sender: {sender.failures or 'none'}; "
            f"largest batch {max(log_batches(relay).values())}")


def test_fault_relay_killed():
    relay = Relay("killed", args=["--pool", "4"]).start()
    prefix = f"evt_rf2_{PID}_"
    sender = Sender(relay.port, [plan_event(f"{prefix}{i}") for i in range(300)]).start()
    try:
        sender.wait_for(80)
        check(sender.done() < 300, "the kill happens under load")
        relay.proc.kill()
        relay.proc.wait(10)
        time.sleep(0.3)
        relay.start()
        sender.join(90)
        check_all_landed_once(prefix, sender)
    finally:
        relay.stop()
    return (f"failed attempts seen by the sender: {sender.failures or 'none'}; "
            f"largest batch {max(log_batches(relay).values())}")


SERVER_LOG = os.environ.get("SP_SERVER_LOG") or os.path.join(TMP, "server.log")
SERVER_LOG_START = [0]


def test_no_secret_in_server_log():
    with open(SERVER_LOG, "rb") as f:
        f.seek(SERVER_LOG_START[0])
        text = f.read().decode("utf-8", errors="replace")
    ours = [line for line in text.splitlines() if f"@{DB} " in line]
    check(ours, "this suite's server log lines")
    leaks = [line for line in ours
             if re.search(r"sk_(test|live)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9]{8,}", line)
             or DSN_PASSWORD in line or MARKER in line]
    check_eq(leaks, [], "server log lines with a secret or a payload")


def test_main_relay_stops_cleanly():
    check_eq(MAIN.stop(), 0, "exit code")
    check("stripepay-relay: stopped" in MAIN.log(), "logged")


def main():
    if not os.access(BINARY, os.X_OK):
        print(f"not ok - {BINARY} is not built (run make)")
        print("relay: 0 passed, 1 failed")
        sys.exit(1)
    for name in os.listdir(TMP):
        if name.startswith("relay-") and name.endswith((".log", ".vg")):
            os.remove(os.path.join(TMP, name))
    if os.path.exists(SERVER_LOG):
        SERVER_LOG_START[0] = os.path.getsize(SERVER_LOG)
    setup()
    MAIN.start()
    try:
        run("relay", [
            test_unit_map,
            test_help_and_bad_configuration,
            test_installed_into_bindir,
            test_signed_event_is_stored,
            test_duplicate_is_already_processed,
            test_named_endpoint_routing,
            test_refused_events_get_400_with_sqlstate,
            test_wrong_path_and_method,
            test_nul_in_path_is_404,
            test_keep_alive,
            test_body_cap,
            test_healthz,
            test_connects_as_the_webhook_role,
            test_failing_user_trigger_gets_5xx_and_stores_nothing,
            test_terminated_connections_are_replaced,
            test_log_lines,
            test_no_database_gets_503_not_a_hang,
            test_silent_database_is_not_a_hang,
            test_pool_exhausted_gets_503,
            test_slow_upload_is_not_a_wait_for_a_connection,
            test_batch_one_failing_trigger_pipelined,
            test_batch_one_failing_trigger_unpipelined,
            test_batch_bad_signatures_among_good_pipelined,
            test_batch_bad_signatures_among_good_unpipelined,
            test_batch_duplicates_processed_once,
            test_a_batch_whose_connection_breaks_answers_5xx_to_all,
            test_batches_form_under_concurrency,
            test_sigterm_finishes_in_flight,
            test_second_signal_stops_at_once,
            test_valgrind_clean,
            test_fault_postgres_restart,
            test_fault_relay_killed,
            test_no_secret_in_server_log,
            test_main_relay_stops_cleanly,
        ])
    finally:
        MAIN.stop(signal.SIGKILL) if MAIN.proc and MAIN.proc.poll() is None else None
        ensure_cluster_running()


if __name__ == "__main__":
    main()
