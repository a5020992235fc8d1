"""A dump of one major restored on another, as a DBA moves a shop: the
roles with pg_dumpall --roles-only, the database with pg_dump -Fc.

    python3 dump_restore.py make DIR    on the source cluster: a shop's rows
                                        made through the emulator, then the
                                        roles, the dump and what they hold
    python3 dump_restore.py check DIR   on the target cluster: restore, the
                                        rows compared, then a new signed
                                        event, a refund and a re-delivery

Both talk to the same emulator (SP_EMULATOR_URL), so the restored payments
are the ones Stripe knows.  test/dump_restore.sh runs make on 15 and check
on 17 and 18."""
import json
import os
import subprocess
import sys

os.environ["PGTZ"] = "UTC"  # the rows are compared as text

from harness import (WEBHOOK_SECRET, check, check_eq, emulator, emulator_events,  # noqa: E402
                     emulator_reset, event_bytes, expect_error, fresh_database, ingest, psql, run, sign)

DB = "sp_dumped"
KEY = "sk_test_51DumpRestoreKey0000000000000000"
FLOWS = "regress_dump_flows"
SHOP = "regress_dump_shop"
SECOND_SECRET = "whsec_dump_second_9c3bb1f0a2d44e"
TABLES = ("settings", "webhook_secret", "webhook_endpoint", "payment_record", "refund",
          "recurring_payment", "webhook_event", "waiting_event", "payment_flow", "refund_flow",
          "subscription_flow", "deduction_flow")
SEQUENCES = ("payment_record_id_seq", "refund_id_seq", "recurring_payment_id_seq",
             "payment_flow_id_seq", "refund_flow_id_seq", "subscription_flow_id_seq",
             "deduction_flow_id_seq", "webhook_secret_id_seq")


def q(sql, role=None):
    env = dict(os.environ, PGUSER=role) if role else None
    return psql(sql, db=DB, env=env)


def one(sql, role=None):
    rows = q(sql, role)
    return rows[0][0] if rows else None


def deliver(events):
    """Delivers events as Stripe would, signed; returns already_processed of each."""
    seen = []
    for e in events:
        body = event_bytes(e)
        seen.append("t" if ingest(body, sign(body), db=DB)[2] else "f")
    return seen


def held():
    """What the database holds, table by table, as digests of its rows."""
    held = {t: one(f"SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' "
                   f"ORDER BY t::text)), '') FROM stripepay.{t} t") for t in TABLES}
    for s in SEQUENCES:
        held[s] = one(f"SELECT last_value || ' ' || is_called FROM stripepay.{s}")
    held["shop_log"] = one("SELECT count(*) || ' ' || md5(coalesce(string_agg(l::text, E'\\n' "
                           "ORDER BY l::text), '')) FROM public.shop_log l")
    return held


# --- make: on the source -------------------------------------------------------

def make(out):
    fresh_database(DB, KEY, WEBHOOK_SECRET, cancel_url="https://shop.example/cancel")
    # the README's way: a flow role, and a trigger of the shop's on each flow
    q(f"""
DROP ROLE IF EXISTS {FLOWS}; CREATE ROLE {FLOWS} NOLOGIN;
DROP ROLE IF EXISTS {SHOP}; CREATE ROLE {SHOP} LOGIN IN ROLE stripepay_user;
CREATE TABLE public.shop_log (event_id text, what text, amount bigint, as_role name);
GRANT INSERT ON public.shop_log TO {FLOWS};
CREATE FUNCTION public.shop_log_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.shop_log VALUES (NEW.event_id, NEW.payment_status, NEW.amount, current_user);
	RETURN NULL;
END $$;
CREATE FUNCTION public.shop_log_refund() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.shop_log VALUES (NEW.event_id, 'refund ' || NEW.refund_status, NEW.amount,
		current_user);
	RETURN NULL;
END $$;
CREATE TRIGGER shop_log AFTER INSERT ON stripepay.payment_flow
	FOR EACH ROW WHEN (NOT NEW.already_processed) EXECUTE FUNCTION public.shop_log_payment();
CREATE TRIGGER shop_log AFTER INSERT ON stripepay.refund_flow
	FOR EACH ROW WHEN (NOT NEW.already_processed) EXECUTE FUNCTION public.shop_log_refund();
SELECT 1 FROM stripepay.configure(flow_role => '{FLOWS}', event_retention => '120 days');
SELECT 1 FROM stripepay.add_webhook_secret('{SECOND_SECRET}', 'payment', now() + interval '1 day');
""")
    emulator_reset()
    delivered = 0

    def deliver_new():
        nonlocal delivered
        events = emulator_events()
        deliver(events[delivered:])
        delivered = len(events)

    # two payments paid, one open; a partial refund; a subscription and a renewal
    paid = []
    for order_id, amount in ((7001, 2500), (7002, 1200)):
        pid, session = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({order_id}, "
                         f"'usd', {amount})", SHOP)[0]
        emulator("POST", f"/_emulator/checkout/sessions/{session}/complete", {"outcome": "paid"})
        paid.append(int(pid))
    q("SELECT 1 FROM stripepay.stripe_pay(7003, 'eur', 990)", SHOP)
    deliver_new()
    q(f"SELECT 1 FROM stripepay.stripe_refund({paid[0]}, 400)")
    deliver_new()
    price = emulator("POST", "/_emulator/prices", {"currency": "usd", "unit_amount": 1500,
                                                   "recurring": {"interval": "month"},
                                                   "product_name": "dump"})["id"]
    session = one(f"SELECT checkout_session_id FROM stripepay.stripe_subscribe(7004, '{price}')",
                  SHOP)
    emulator("POST", f"/_emulator/checkout/sessions/{session}/complete", {"outcome": "paid"})
    deliver_new()
    subscription = one("SELECT subscription_id FROM stripepay.recurring_payment WHERE order_id = 7004")
    emulator("POST", f"/_emulator/subscriptions/{subscription}/renew", {})
    deliver_new()

    check_eq(one("SELECT string_agg(status, ',' ORDER BY order_id) FROM stripepay.payment_record"),
             "SUCCESSFUL,SUCCESSFUL,PENDING,SUCCESSFUL", "the payments made (the last a renewal)")
    check_eq(one("SELECT status FROM stripepay.refund"), "SUCCEEDED", "the refund")
    check_eq(one("SELECT status FROM stripepay.recurring_payment"), "ACTIVE", "the subscription")

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "roles.sql"), "w") as f:
        subprocess.run(["pg_dumpall", "--roles-only"], stdout=f, check=True)
    subprocess.run(["pg_dump", "-Fc", "-f", os.path.join(out, "shop.dump"), DB], check=True)
    with open(os.path.join(out, "held.json"), "w") as f:
        json.dump({"held": held(), "delivered": delivered, "paid": paid,
                   "major": one("SHOW server_version_num")}, f, indent=1)
    os.chmod(out, 0o755)
    for name in os.listdir(out):
        os.chmod(os.path.join(out, name), 0o644)
    print(f"made a dump of {len(TABLES)} tables in {out}", flush=True)


# --- check: on the target -------------------------------------------------------

SOURCE = {}


def restore(src):
    with open(os.path.join(src, "held.json")) as f:
        SOURCE.update(json.load(f))
    # "role postgres already exists" is the one error expected: it is the cluster's own
    roles = subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-f", os.path.join(src, "roles.sql")],
                           capture_output=True, text=True)
    errors = [line for line in roles.stderr.splitlines()
              if "ERROR" in line and 'role "postgres" already exists' not in line]
    check(not errors, "restoring the roles:\n" + "\n".join(errors))
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    psql(f"CREATE DATABASE {DB}", db="postgres")
    restored = subprocess.run(["pg_restore", "--exit-on-error", "-d", DB,
                               os.path.join(src, "shop.dump")], capture_output=True, text=True)
    check(restored.returncode == 0, f"pg_restore: {restored.stderr}")


def test_every_row_and_sequence_is_restored():
    check(SOURCE["major"] != one("SHOW server_version_num"), "source and target are one major")
    now = held()
    for name, digest in SOURCE["held"].items():
        check_eq(now[name], digest, f"{name} after the restore")


def test_the_triggers_are_made_after_the_restore_and_calls_wait_for_them():
    """pg_restore brings the shop's triggers as rows of user_trigger; until a
    superuser makes them, calls that would fire flows are refused (SP035),
    and nothing ran them over the restored rows."""
    check_eq(one("SELECT count(*) FROM pg_trigger WHERE tgname = 'shop_log'"), "0",
             "triggers made by the restore itself")
    body = event_bytes({"id": "evt_before_triggers", "object": "event"})
    e = expect_error(f"SELECT * FROM stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea,"
                     f" '{sign(body)}', NULL)", "SP035", db=DB)
    check("restore_user_triggers" in e.stderr, e.stderr)
    check_eq(q("SELECT * FROM stripepay.restore_user_triggers() ORDER BY 1"),
             [["payment_flow", "shop_log"], ["refund_flow", "shop_log"]], "triggers made")
    check_eq(one("SELECT count(*) FROM pg_trigger WHERE tgname = 'shop_log'"), "2", "triggers now")
    check_eq(one("SELECT count(*) || ' ' || md5(coalesce(string_agg(l::text, E'\\n' ORDER BY l::text), ''))"
                 " FROM public.shop_log l"), SOURCE["held"]["shop_log"],
             "the shop's log: no restored row fired a trigger")


def test_settings_and_secrets_are_restored():
    check_eq(q("SELECT mode, flow_role, event_retention FROM stripepay.config"),
             [["test", FLOWS, "120 days"]], "the config view")
    check_eq(one("SELECT count(*) FILTER (WHERE live) FROM stripepay.webhook_secrets"), "2",
             "live webhook secrets")


def test_a_new_payment_continues_the_ids_and_its_signed_event_applies():
    before = len(emulator_events())
    pid, session = q("SELECT id, checkout_session_id FROM stripepay.stripe_pay(7101, 'usd', 800)",
                     SHOP)[0]
    check(int(pid) > max(int(p) for p in SOURCE["paid"]) + 1, f"new payment id {pid}")
    emulator("POST", f"/_emulator/checkout/sessions/{session}/complete", {"outcome": "paid"})
    check_eq(set(deliver(emulator_events()[before:])), {"f"}, "already_processed of new events")
    check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL",
             "the new payment")
    check_eq(q("SELECT what, amount, as_role FROM public.shop_log WHERE event_id = "
               f"(SELECT event_id FROM stripepay.payment_flow WHERE payment_id = {pid} "
               "AND NOT already_processed)"),
             [["SUCCESSFUL", "800", FLOWS]], "the shop's trigger, as the flow role")


def test_a_restored_payment_is_refunded_once():
    paid = SOURCE["paid"][0]
    before = len(emulator_events())
    check_eq(q(f"SELECT status, amount FROM stripepay.stripe_refund({paid}, 2100)"),
             [["PENDING", "2100"]], "the refund of a restored payment")
    expect_error(f"SELECT stripepay.stripe_refund({paid}, 1)", "SP014", db=DB)
    deliver(emulator_events()[before:])
    check_eq(one(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {paid}"), "2500",
             "amount_refunded")
    check_eq(q(f"SELECT status, amount FROM stripepay.refund WHERE payment_id = {paid} ORDER BY id"),
             [["SUCCEEDED", "400"], ["SUCCEEDED", "2100"]], "the refunds")
    check_eq(one("SELECT count(*) FROM public.shop_log WHERE what = 'refund SUCCEEDED' "
                 f"AND amount = 2100 AND as_role = '{FLOWS}'"), "1", "the refund flow's trigger")


def test_events_from_before_the_dump_are_already_processed():
    old = emulator_events()[:SOURCE["delivered"]]
    check_eq(set(deliver(old)), {"t"}, "already_processed of re-delivered events")
    check_eq(one("SELECT sum(amount_refunded) FROM stripepay.payment_record"), "2500",
             "amount_refunded after the re-deliveries")


if __name__ == "__main__":
    mode, where = sys.argv[1], sys.argv[2]
    if mode == "make":
        make(where)
    elif mode == "check":
        restore(where)
        run(f"dump-restore-on-{one('SHOW server_version_num')[:2]}", [
            test_every_row_and_sequence_is_restored,
            test_the_triggers_are_made_after_the_restore_and_calls_wait_for_them,
            test_settings_and_secrets_are_restored,
            test_a_new_payment_continues_the_ids_and_its_signed_event_applies,
            test_a_restored_payment_is_refunded_once,
            test_events_from_before_the_dump_are_already_processed,
        ])
    else:
        raise SystemExit("usage: dump_restore.py make|check DIR")
