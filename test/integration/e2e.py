"""End to end: setup_webhooks() wires the emulator's account to a running
stripepay-relay; the emulator's buyer pays, refunds and renewals happen, and
Stripe's own signed deliveries travel relay -> ingest -> user trigger ->
NOTIFY.  Also: setup_webhooks is idempotent and refuses a crowded account."""
import json
import os
import socket
import subprocess
import time
import urllib.request

from harness import (check, check_eq, emulator, emulator_reset, expect_error, psql, run, scalar)

DB = "sp_e2e"
KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RELAY = os.path.join(ROOT, "src", "relay", "stripepay-relay")
state = {}


def q(sql):
    return psql(sql, db=DB)


def one(sql):
    return scalar(sql, db=DB)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def setup():
    psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
    psql(f"CREATE DATABASE {DB}", db="postgres")
    q("CREATE EXTENSION stripepay")
    q(f"SELECT 1 FROM stripepay.configure(secret_key => '{KEY}', success_url => 'https://shop.example/ok')")
    # the relay's role can ingest and nothing else; the triggers run as the
    # flow role, which has what they need (the README's set-up)
    q("DROP ROLE IF EXISTS regress_sp_e2e_relay; CREATE ROLE regress_sp_e2e_relay LOGIN IN ROLE stripepay_webhook;"
      "DROP ROLE IF EXISTS regress_sp_e2e_shop; CREATE ROLE regress_sp_e2e_shop")
    q("""CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'new', refunded bigint NOT NULL DEFAULT 0,
                             parent bigint);
         CREATE SEQUENCE renewal_orders START 500000;
         CREATE FUNCTION paid() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
         BEGIN IF NOT NEW.already_processed THEN UPDATE orders SET status = lower(NEW.payment_status) WHERE id = NEW.order_id; END IF; RETURN NEW; END $$;
         CREATE TRIGGER paid AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION paid();
         CREATE FUNCTION refunded() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
         BEGIN IF NOT NEW.already_processed AND NEW.refund_status = 'SUCCEEDED' THEN
           UPDATE orders SET refunded = refunded + NEW.amount WHERE id = NEW.order_id; END IF; RETURN NEW; END $$;
         CREATE TRIGGER refunded AFTER INSERT ON stripepay.refund_flow FOR EACH ROW EXECUTE FUNCTION refunded();
         CREATE FUNCTION renewal() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
         BEGIN INSERT INTO orders (id, status, parent) VALUES (nextval('renewal_orders'), 'paid', NEW.subscription_order_id)
           RETURNING id INTO NEW.order_id; RETURN NEW; END $$;
         CREATE TRIGGER renewal BEFORE INSERT ON stripepay.deduction_flow FOR EACH ROW EXECUTE FUNCTION renewal();
         GRANT SELECT, INSERT, UPDATE ON orders TO regress_sp_e2e_shop;
         GRANT USAGE ON SEQUENCE renewal_orders TO regress_sp_e2e_shop;""")
    q("SELECT 1 FROM stripepay.configure(flow_role => 'regress_sp_e2e_shop')")
    port = free_port()
    env = dict(os.environ, PGDATABASE=DB, PGUSER="regress_sp_e2e_relay")
    state["log"] = open(os.path.join(os.environ["SP_TMP"], "e2e-relay.log"), "w")
    state["relay"] = subprocess.Popen([RELAY, "--listen", f"127.0.0.1:{port}", "--pool", "4"], env=env,
                                      stdin=subprocess.DEVNULL, stdout=state["log"], stderr=state["log"])
    state["url"] = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(state["url"] + "/healthz", timeout=1)
            break
        except Exception:
            time.sleep(0.05)
    emulator_reset()
    emulator("POST", "/_emulator/webhook_config", {"retry_delays": [0.1, 0.2, 0.5], "max_attempts": 6})


def teardown():
    if "relay" in state:
        state["relay"].terminate()
        state["relay"].wait(20)
    q("DROP OWNED BY regress_sp_e2e_relay, regress_sp_e2e_shop")
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    psql("DROP ROLE IF EXISTS regress_sp_e2e_relay, regress_sp_e2e_shop", db="postgres")


def flush():
    left = emulator("POST", "/_emulator/webhooks/flush", {"timeout": 20})
    check_eq(left["pending"], 0, "deliveries still pending")


def listen(channel, seconds):
    proc = subprocess.Popen(["psql", "-X", "-q", "-d", DB, "-c", f"LISTEN {channel}", "-c", f"SELECT pg_sleep({seconds})"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    return lambda: [json.loads(line.split(' with payload "', 1)[1].rsplit('" received', 1)[0])
                    for line in proc.communicate(timeout=seconds + 20)[0].splitlines()
                    if line.startswith("Asynchronous notification")]


def test_setup_webhooks_creates_four_endpoints_once():
    rows = q(f"SELECT endpoint, url, created FROM stripepay.setup_webhooks('{state['url']}')")
    check_eq(rows, [[n, f"{state['url']}/stripe/{n}", "t"] for n in ("payment", "refund", "subscription", "deduction")],
             "endpoints")
    listed = emulator("GET", "/_emulator/webhook_endpoints")
    listed = listed.get("data", listed) if isinstance(listed, dict) else listed
    ours = {e["metadata"]["stripepay_endpoint"]: e for e in listed if e.get("metadata", {}).get("stripepay_endpoint")}
    check_eq(sorted(ours), ["deduction", "payment", "refund", "subscription"], "endpoints at Stripe")
    check_eq(sorted(ours["deduction"]["enabled_events"]), ["invoice.paid", "invoice.payment_failed", "invoice_payment.paid"], "deduction events")
    check("payment_intent.succeeded" in ours["payment"]["enabled_events"], "payment events")
    check(all(e["api_version"] == "2026-10-28.endive" for e in ours.values()), "pinned api_version")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_secrets WHERE live"), "4", "secrets stored")
    again = q(f"SELECT endpoint, created FROM stripepay.setup_webhooks('{state['url']}')")
    check_eq([r[1] for r in again], ["f"] * 4, "a second run creates nothing")


def test_paid_checkout_flows_through_the_relay():
    q("INSERT INTO orders (id) VALUES (1)")
    waiter = listen("stripepay_payment", 5)
    pid, sess = q("SELECT id, checkout_session_id FROM stripepay.stripe_pay(1, 'usd', 2500)")[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
    flush()
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL", "payment")
    check_eq(one("SELECT status FROM orders WHERE id = 1"), "successful", "order")
    notes = [n for n in waiter() if n.get("payment_id") == int(pid)]
    check_eq(len(notes), 1, "notifications")
    check_eq(one("SELECT count(DISTINCT endpoint) FROM stripepay.webhook_event WHERE endpoint IS NOT NULL"), "1",
             "delivered to the payment endpoint")
    state["payment"] = pid


def test_refund_flows_through_the_relay():
    pid = state["payment"]
    q(f"SELECT 1 FROM stripepay.stripe_refund({pid}, 1000)")
    flush()
    check_eq(one(f"SELECT status FROM stripepay.refund WHERE payment_id = {pid}"), "SUCCEEDED", "refund")
    check_eq(one("SELECT refunded FROM orders WHERE id = 1"), "1000", "order refunded")


def test_renewal_flows_through_the_relay():
    price = emulator("POST", "/_emulator/prices", {"currency": "usd", "unit_amount": 900,
                                                  "recurring": {"interval": "month"}, "product_name": "club"})["id"]
    q("INSERT INTO orders (id) VALUES (2)")
    rp, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_subscribe(2, '{price}')")[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
    flush()
    check_eq(one(f"SELECT status FROM stripepay.recurring_payment WHERE id = {rp}"), "ACTIVE", "subscription")
    sub = one(f"SELECT subscription_id FROM stripepay.recurring_payment WHERE id = {rp}")
    emulator("POST", f"/_emulator/subscriptions/{sub}/renew", {})
    flush()
    rows = q(f"SELECT kind, status, amount, order_id >= 500000 FROM stripepay.payment_record WHERE recurring_payment_id = {rp}")
    check_eq(rows, [["RENEWAL", "SUCCESSFUL", "900", "t"]], "renewal")
    check_eq(one("SELECT parent FROM orders WHERE id >= 500000"), "2", "the renewal's order")


def test_remove_webhooks_cleans_up_and_a_crowded_account_is_refused():
    check_eq(one("SELECT stripepay.remove_webhooks()"), "4", "removed")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_endpoint"), "0", "endpoint rows")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_secrets WHERE expires_at IS NULL"), "0",
             "secrets set to expire")
    for i in range(13):
        emulator("POST", "/_emulator/webhook_endpoints", {"url": f"http://127.0.0.1:9/other{i}"})
    e = expect_error(f"SELECT * FROM stripepay.setup_webhooks('{state['url']}')", "SP030", db=DB)
    check("13" in e.message, e.message)
    expect_error("SELECT stripepay.setup_webhooks('not a url')", "22023", db=DB)

if __name__ == "__main__":
    setup()
    run("e2e", [
        test_setup_webhooks_creates_four_endpoints_once,
        test_paid_checkout_flows_through_the_relay,
        test_refund_flows_through_the_relay,
        test_renewal_flows_through_the_relay,
        test_remove_webhooks_cleans_up_and_a_crowded_account_is_refused,
    ], teardown=teardown)
