"""Small helpers for the integration tests: psql sessions, the emulator's
control API, and a runner that prints "<suite>: N passed, M failed".

Standard library only. The environment comes from test/lib/env.sh: PGHOST,
PGPORT, PGUSER name the throwaway cluster, SP_EMULATOR_URL the emulator.
"""
import json
import os
import re
import subprocess
import sys
import time
import traceback
import urllib.request

EMULATOR = os.environ.get("SP_EMULATOR_URL", "")
TEST_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


class SqlError(Exception):
    def __init__(self, sqlstate, message, stderr):
        super().__init__(f"{sqlstate}: {message}")
        self.sqlstate = sqlstate
        self.message = message
        self.stderr = stderr


def psql(sql, db="sp_integration", check=True, timeout=120, env=None):
    """Runs sql in a fresh session; returns stdout rows as lists of fields.

    Errors raise SqlError with the SQLSTATE (psql runs with VERBOSITY verbose).
    """
    cmd = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
           "-v", "VERBOSITY=verbose", "-d", db]
    proc = subprocess.run(cmd, input=sql, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if proc.returncode != 0 and check:
        raise sql_error(proc.stderr)
    return [line.split("\t") for line in proc.stdout.splitlines() if line != ""]


def sql_error(stderr):
    m = re.search(r"ERROR:\s+([0-9A-Z]{5}):\s+(.*)", stderr)
    if m:
        return SqlError(m.group(1), m.group(2), stderr)
    return SqlError("?????", stderr.strip(), stderr)


def expect_error(sql, sqlstate, db="sp_integration", role=None):
    """Runs sql (as role, when given) and returns the SqlError it must raise."""
    who = f" as {role}" if role else ""
    try:
        psql(sql, db=db, env=dict(os.environ, PGUSER=role) if role else None)
    except SqlError as e:
        if e.sqlstate != sqlstate:
            raise AssertionError(f"{sql[:60]!r}{who}: expected SQLSTATE {sqlstate}, "
                                 f"got {e.sqlstate}: {e.stderr}")
        return e
    raise AssertionError(f"{sql[:80]!r}{who}: expected SQLSTATE {sqlstate}, but it succeeded")


# The flow role of the tests' databases: the tests' triggers write their own
# tables, and the flow role may not be a superuser, nor may a superuser
# caller stand in for one.
TEST_FLOW_ROLE = "regress_sp_test_flows"


def test_flow_role():
    psql(f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TEST_FLOW_ROLE}') THEN
            CREATE ROLE {TEST_FLOW_ROLE} IN ROLE pg_read_all_data, pg_write_all_data;
        END IF; END $$""", db="postgres")
    return TEST_FLOW_ROLE


def fresh_database(db, key=TEST_KEY, webhook_secret=None, **settings):
    """Drops and creates db with the extension, configured with key and
    settings (success_url defaults to https://shop.example/ok; flow_role to
    TEST_FLOW_ROLE, which may read and write every table), and
    webhook_secret, when given, as the default endpoint's signing secret."""
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
    psql(f"CREATE DATABASE {db}", db="postgres")
    if "flow_role" not in settings:
        settings["flow_role"] = test_flow_role()
    settings = {"secret_key": key, "success_url": "https://shop.example/ok", **settings}
    args = ", ".join(f"{k} => '{v}'" for k, v in settings.items())
    psql("CREATE EXTENSION stripepay", db=db)
    psql(f"SELECT 1 FROM stripepay.configure({args})", db=db)
    if webhook_secret is not None:
        psql(f"SELECT 1 FROM stripepay.add_webhook_secret('{webhook_secret}')", db=db)


def scalar(sql, db="sp_integration"):
    rows = psql(sql, db=db)
    return rows[0][0] if rows else None


def emulator(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(EMULATOR + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def emulator_reset():
    emulator("POST", "/_emulator/reset")


def emulator_requests(path_prefix="/v1/"):
    return [r for r in emulator("GET", "/_emulator/requests") if r["path"].startswith(path_prefix)]


def fault(mode, count=1, **extra):
    emulator("POST", "/_emulator/faults", dict(mode=mode, count=count, **extra))


def check(cond, message="check failed"):
    if not cond:
        raise AssertionError(message)


def check_eq(actual, expected, what="value"):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def run(suite, tests, teardown=None):
    """Runs each test in order, reporting ok / not ok, then teardown; exits 1
    on a test's failure (a failing teardown is said, and changes no verdict)."""
    passed = failed = 0
    for test in tests:
        name = test.__name__
        started = time.monotonic()
        try:
            note = test()
            passed += 1
            extra = f" ({note})" if note else ""
            print(f"ok - {name} [{time.monotonic() - started:.1f}s]{extra}", flush=True)
        except Exception as e:  # every failure is reported, the suite goes on
            failed += 1
            print(f"not ok - {name}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
    print(f"{suite}: {passed} passed, {failed} failed", flush=True)
    if teardown is not None:
        try:
            teardown()
        except Exception as e:  # the suite's verdict stands; say what was left behind
            print(f"teardown: {e}", flush=True)
    sys.exit(1 if failed else 0)


# --- webhooks -------------------------------------------------------------------

WEBHOOK_SECRET = "whsec_test_5WbX5kEWLlfzsGNjH64I8lOOqUB6e9Hj"


def sign(payload, secret=WEBHOOK_SECRET, timestamp=None, extra=""):
    """A Stripe-Signature header for payload (bytes), as Stripe makes it."""
    import hashlib
    import hmac
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}{extra}"


def ingest(payload, header, endpoint=None, db="sp_integration"):
    """Hands payload (bytes) to stripe_ingest_webhook; returns
    (event_id, event_type, already_processed)."""
    ep = "NULL" if endpoint is None else "'" + endpoint.replace("'", "''") + "'"
    sig = "NULL" if header is None else "'" + header.replace("'", "''") + "'"
    rows = psql(f"SELECT * FROM stripepay.stripe_ingest_webhook('\\x{payload.hex()}'::bytea, {sig}, {ep})", db=db)
    event_id, event_type, already = rows[0]
    return event_id, event_type, already == "t"


def listen(channel, seconds, db="sp_integration"):
    """A real LISTEN connection for `seconds`; returns a function that waits for it
    and returns the JSON payloads it received on channel."""
    proc = subprocess.Popen(["psql", "-X", "-q", "-d", db, "-c", f"LISTEN {channel}",
                             "-c", f"SELECT pg_sleep({seconds})"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if scalar(f"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep({seconds})%'",
                  db=db) != "0":
            break
        time.sleep(0.05)

    def result():
        out, _ = proc.communicate(timeout=seconds + 30)
        payloads = []
        for line in out.splitlines():
            if line.startswith("Asynchronous notification") and f'"{channel}"' in line:
                payloads.append(json.loads(line.split(' with payload "', 1)[1].rsplit('" received', 1)[0]))
        return payloads
    return result


def emulator_events(**query):
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return emulator("GET", "/_emulator/events" + (f"?{qs}" if qs else ""))


def event_bytes(event):
    """An event as Stripe sends it: pretty-printed JSON."""
    return json.dumps(event, indent=2).encode()
