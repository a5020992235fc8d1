"""Least privilege, tried as an attacker would: with the README's examples
installed as written, no role becomes a superuser through a flow, no secret
reaches the server log, no role can hold the extension's locks, a refused
body costs no more than itself, and every refusal has a stripepay SQLSTATE.

Roles: a table owner (app), the flow role, the relay's role (a member of
stripepay_webhook), an application role (stripepay_user), an admin that is
not a superuser, and a role with no grants."""
import json
import os
import re
import subprocess
import time

from harness import (TEST_KEY, WEBHOOK_SECRET, SqlError, check, check_eq, emulator,
                     emulator_events, emulator_reset, event_bytes, expect_error, fresh_database,
                     psql, run, sign)

DB = "sp_security"
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FIXTURES = os.path.join(ROOT, "test", "fixtures", "events")
APP, FLOWS, RELAY, USER, ADMIN, NOBODY = ("regress_sec_app", "shop_flows", "regress_sec_relay",
                                          "regress_sec_user", "regress_sec_admin", "regress_sec_nobody")
ROLES = (APP, FLOWS, RELAY, USER, ADMIN, NOBODY)


def q(sql, role=None, check_errors=True):
    env = dict(os.environ, PGUSER=role) if role else None
    return psql(sql, db=DB, env=env, check=check_errors)


def one(sql, role=None):
    rows = q(sql, role)
    return rows[0][0] if rows else None


def as_role(role, sql, sqlstate):
    return expect_error(sql, sqlstate, db=DB, role=role)


def readme_block(marker):
    """The README's SQL code block that contains marker, as written."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    for block in re.findall(r"```sql\n(.*?)```", text, re.S):
        if marker in block:
            return block
    raise AssertionError(f"no SQL block of the README contains {marker!r}")


def fixture(name, **changes):
    with open(os.path.join(FIXTURES, name + ".json")) as f:
        event = json.load(f)
    for path, value in changes.items():
        node = event
        parts = path.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[parts[-1]] = value
    return event


_seq = [0]


def uid(prefix):
    _seq[0] += 1
    return f"{prefix}_{os.getpid()}x{_seq[0]}"


def deliver(event, role=RELAY, endpoint=None):
    body = event_bytes(event) if isinstance(event, dict) else event
    return _ingest_as(body, sign(body), role, endpoint)


def _ingest_as(body, header, role, endpoint=None):
    ep = "NULL" if endpoint is None else "'" + endpoint.replace("'", "''") + "'"
    rows = q(f"SELECT * FROM stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea,"
             f" '{header}', {ep})", role)
    event_id, event_type, already = rows[0]
    return event_id, event_type, already == "t"


def superusers():
    return [r[0] for r in q("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1")]


def setup():
    fresh_database(DB, TEST_KEY, WEBHOOK_SECRET)
    for r in ROLES:
        psql(f"DROP ROLE IF EXISTS {r}", db="postgres")
    q(f"""
CREATE ROLE {APP} LOGIN;
CREATE ROLE {RELAY} LOGIN IN ROLE stripepay_webhook;
CREATE ROLE {USER} LOGIN IN ROLE stripepay_user;
CREATE ROLE {ADMIN} LOGIN IN ROLE stripepay_admin;
CREATE ROLE {NOBODY} LOGIN;
GRANT CREATE ON SCHEMA public TO {APP};
""")
    # the README's set-up and its four triggers, as written
    q(readme_block("CREATE ROLE shop_flows"))
    for fn in ("mark_order_paid", "mark_order_refunded", "follow_subscription", "renewal_order"):
        q(readme_block(f"CREATE FUNCTION {fn}()"))
    # a non-superuser application owns the orders table, and adds a trigger
    # of its own: it tries to make itself a superuser whenever it runs
    q(f"""
ALTER TABLE orders OWNER TO {APP};
ALTER SEQUENCE orders_id_seq OWNER TO {APP};
CREATE TABLE escalation (who name, super boolean, took boolean, at timestamptz DEFAULT now());
GRANT INSERT ON escalation TO PUBLIC;
""")
    q(f"""
CREATE FUNCTION app_audit() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE took boolean := true;
BEGIN
  BEGIN
    EXECUTE 'ALTER ROLE {APP} SUPERUSER';
  EXCEPTION WHEN OTHERS THEN took := false;
  END;
  INSERT INTO escalation (who, super, took)
  VALUES (current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), took);
  RETURN NEW;
END $$;
CREATE TRIGGER app_audit AFTER UPDATE OR INSERT ON orders FOR EACH ROW EXECUTE FUNCTION app_audit();
""", APP)
    # an audit of who every user trigger on stripepay's own tables runs as
    q("""
CREATE TABLE ran_as (tbl text, who name, super boolean);
GRANT INSERT ON ran_as TO PUBLIC;
CREATE FUNCTION log_ran_as() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO ran_as VALUES (TG_TABLE_NAME, current_user,
                             (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
  RETURN NULL;
END $$;
CREATE TRIGGER ran_as AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION log_ran_as();
CREATE TRIGGER ran_as AFTER INSERT ON stripepay.refund_flow FOR EACH ROW EXECUTE FUNCTION log_ran_as();
CREATE TRIGGER ran_as AFTER INSERT ON stripepay.subscription_flow FOR EACH ROW EXECUTE FUNCTION log_ran_as();
CREATE TRIGGER ran_as AFTER INSERT ON stripepay.deduction_flow FOR EACH ROW EXECUTE FUNCTION log_ran_as();
CREATE TRIGGER ran_as AFTER INSERT ON stripepay.webhook_event FOR EACH ROW EXECUTE FUNCTION log_ran_as();
CREATE TRIGGER ran_as AFTER INSERT OR UPDATE ON stripepay.payment_record FOR EACH ROW EXECUTE FUNCTION log_ran_as();
CREATE TRIGGER ran_as AFTER INSERT OR UPDATE ON stripepay.refund FOR EACH ROW EXECUTE FUNCTION log_ran_as();
CREATE TRIGGER ran_as AFTER INSERT OR UPDATE ON stripepay.recurring_payment FOR EACH ROW EXECUTE FUNCTION log_ran_as();
""")


def teardown():
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    for r in ROLES:
        psql(f"DROP ROLE IF EXISTS {r}", db="postgres")


def no_escalation(where):
    check_eq(superusers(), [r for r in superusers() if r not in ROLES], f"superusers after {where}")
    rows = q("SELECT who, super, took FROM escalation")
    check(all(r[1] == "f" and r[2] == "f" for r in rows), f"app's trigger ran as a superuser: {rows}")
    rows = q("SELECT tbl, who FROM ran_as WHERE super")
    check_eq(rows, [], f"user triggers that ran as a superuser ({where})")


def order(amount=1500, currency="usd"):
    # as the table's owner: a superuser writing it would run app's trigger as one
    return int(one(f"INSERT INTO orders (amount, currency) VALUES ({amount}, '{currency}') RETURNING id", APP))


def deliver_new(since):
    """Delivers the emulator's events from index since on; returns the new count."""
    events = emulator_events()
    for e in events[since:]:
        deliver(e)
    return len(events)


def paid_through_checkout(order_id, amount=1500, role=USER):
    start = len(emulator_events())
    pid, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({order_id}, 'usd', {amount})",
                  role)[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
    deliver_new(start)
    return pid


# --- flows never run as the extension's owner ----------------------------------

def test_a_table_owners_trigger_never_runs_as_a_superuser():
    o = order()
    q("TRUNCATE escalation, ran_as")
    pid = paid_through_checkout(o)
    check_eq(one(f"SELECT status FROM orders WHERE id = {o}"), "paid", "the README's trigger paid the order")
    rows = q("SELECT DISTINCT who, took FROM escalation")
    check_eq(rows, [[FLOWS, "f"]], "app's trigger ran as the flow role, and could not escalate")
    no_escalation("a webhook")
    return f"payment {pid}"


def test_a_temp_table_cannot_take_the_flows_writes():
    o = order()
    emulator_reset()
    _, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({o}, 'usd', 1500)", USER)[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
    statements = []
    for e in emulator_events():
        body = event_bytes(e)
        statements.append(f"SELECT * FROM stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea,"
                          f" '{sign(body)}', NULL);")
    # the relay's session makes a temp "orders" with a trigger of its own, then ingests
    out = q(f"""
CREATE TEMP TABLE orders (id bigint, amount bigint, currency text, status text, refunded bigint,
                          ends_at timestamptz, parent bigint);
INSERT INTO pg_temp.orders VALUES ({o}, 1500, 'usd', 'new', 0, NULL, NULL);
CREATE FUNCTION pg_temp.hijack() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO escalation (who, super, took) VALUES ('hijacked:' || current_user, false, false);
RETURN NEW; END $$;
CREATE TRIGGER hijack AFTER UPDATE ON pg_temp.orders FOR EACH ROW EXECUTE FUNCTION pg_temp.hijack();
{''.join(statements)}
SELECT status FROM pg_temp.orders;
""", RELAY)
    check_eq(out[-1], ["new"], "the temp table was left alone")
    check_eq(one(f"SELECT status FROM public.orders WHERE id = {o}"), "paid", "the real order is paid")
    check_eq(q("SELECT who FROM escalation WHERE who LIKE 'hijacked:%'"), [], "the temp trigger never ran")
    no_escalation("a temp table")


def test_every_path_that_fires_a_flow_runs_as_the_flow_role():
    q("TRUNCATE escalation, ran_as")
    # webhooks: a payment, its refund, a subscription, its renewal
    o = order()
    pid = paid_through_checkout(o)
    start = len(emulator_events())
    q(f"SELECT 1 FROM stripepay.stripe_refund({pid}, 500)", ADMIN)
    deliver_new(start)
    check_eq(one(f"SELECT refunded FROM orders WHERE id = {o}"), "500", "the refund trigger ran")
    price = emulator("POST", "/_emulator/prices", {"currency": "usd", "unit_amount": 900,
                                                   "recurring": {"interval": "month"},
                                                   "product_name": "Cheese club"})["id"]
    so = order(900)
    start = len(emulator_events())
    rp, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_subscribe({so}, '{price}')", USER)[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
    start = deliver_new(start)
    sub = one(f"SELECT subscription_id FROM stripepay.recurring_payment WHERE id = {rp}")
    emulator("POST", f"/_emulator/subscriptions/{sub}/renew", {})
    deliver_new(start)
    check(one(f"SELECT count(*) FROM orders WHERE parent = {so}") == "1", "the renewal made its order")
    # the API: a cancel by the application's role
    q(f"SELECT 1 FROM stripepay.stripe_cancel_subscription({rp}, true)", USER)
    # sync_events by an admin, refresh_payment by the payer
    o2 = order()
    p2, sess2 = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({o2}, 'usd', 1500)", USER)[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess2}/complete", {"outcome": "paid"})
    q(f"SELECT 1 FROM stripepay.refresh_payment({p2})", USER)
    q("SELECT 1 FROM stripepay.sync_events(now() - interval '1 hour')", ADMIN)
    # a refund that waits for its payment, applied when the payment succeeds
    o3 = order()
    start = len(emulator_events())
    p3, sess3 = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({o3}, 'usd', 1500)", USER)[0]
    emulator("POST", f"/_emulator/checkout/sessions/{sess3}/complete", {"outcome": "paid"})
    events = emulator_events()[start:]
    pi = one(f"SELECT payment_intent_id FROM stripepay.payment_record WHERE id = {p3}")
    pi = pi or next(e["data"]["object"].get("payment_intent") for e in events
                    if e["type"] == "checkout.session.completed")
    refund = fixture("refund.created", id="evt_" + uid("wait"))
    refund["data"]["object"].update({"id": "re_" + uid("wait"), "payment_intent": pi, "charge": None,
                                     "amount": 100, "status": "succeeded", "metadata": {}})
    deliver(refund)
    check_eq(one(f"SELECT count(*) FROM stripepay.waiting_event WHERE stripe_id = '{pi}'"), "1", "waiting")
    for e in events:
        deliver(e)
    check_eq(one(f"SELECT refunded FROM orders WHERE id = {o3}"), "100", "the waiting refund was applied")

    rows = q("SELECT DISTINCT tbl, who FROM ran_as ORDER BY 1, 2")
    check(len(rows) >= 8, f"every table's triggers ran: {rows}")
    check_eq(sorted({r[1] for r in rows}), [FLOWS], "who the user triggers ran as")
    no_escalation("every path")


def test_without_a_flow_role_flows_run_as_the_calling_role():
    q("SELECT 1 FROM stripepay.configure(flow_role => '')")
    try:
        check_eq(one("SELECT flow_role FROM stripepay.config"), None, "no flow role")
        q(f"GRANT SELECT, UPDATE ON orders TO {RELAY}", APP)
        q("TRUNCATE ran_as, escalation")
        o = order()
        paid_through_checkout(o)
        rows = q("SELECT DISTINCT tbl, who FROM ran_as ORDER BY 1, 2")
        check_eq(sorted({r[1] for r in rows if r[0] != "payment_record"}), [RELAY],
                 "the webhooks' triggers ran as the relay's role")
        check_eq(sorted({r[1] for r in rows if r[0] == "payment_record"}), [RELAY, USER],
                 "stripe_pay's as the role that paid, the webhooks' as the relay's")
        no_escalation("no flow role")
    finally:
        q(f"REVOKE SELECT, UPDATE ON orders FROM {RELAY}", APP)
        q(f"SELECT 1 FROM stripepay.configure(flow_role => '{FLOWS}')")


def test_the_flow_role_is_never_a_superuser_nor_someone_elses():
    e = expect_error("SELECT stripepay.configure(flow_role => 'postgres')", "SP032", db=DB)
    check("superuser" in e.message, e.message)
    as_role(ADMIN, f"SELECT stripepay.configure(flow_role => '{APP}')", "SP032")
    as_role(ADMIN, "SELECT stripepay.configure(flow_role => 'no_such_role_here')", "SP032")
    check_eq(one("SELECT flow_role FROM stripepay.config"), FLOWS, "unchanged")
    # a flow role that became a superuser since: every call refuses
    q(f"ALTER ROLE {FLOWS} SUPERUSER")
    try:
        body = event_bytes(fixture("plan.created", id="evt_" + uid("su")))
        e = None
        try:
            _ingest_as(body, sign(body), RELAY)
        except SqlError as err:
            e = err
        check(e is not None and e.sqlstate == "SP010", f"refused: {e}")
    finally:
        q(f"ALTER ROLE {FLOWS} NOSUPERUSER")


def test_a_trigger_cannot_leave_the_flow_role():
    q("""
CREATE TABLE leave_attempts (how text, outcome text);
GRANT INSERT ON leave_attempts TO shop_flows;
CREATE FUNCTION try_to_leave() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
  BEGIN SET ROLE postgres; INSERT INTO leave_attempts VALUES ('set role', current_user);
  EXCEPTION WHEN OTHERS THEN INSERT INTO leave_attempts VALUES ('set role', SQLSTATE); END;
  BEGIN RESET ROLE; INSERT INTO leave_attempts VALUES ('reset role', current_user);
  EXCEPTION WHEN OTHERS THEN INSERT INTO leave_attempts VALUES ('reset role', SQLSTATE); END;
  BEGIN SET SESSION AUTHORIZATION postgres; INSERT INTO leave_attempts VALUES ('session', current_user);
  EXCEPTION WHEN OTHERS THEN INSERT INTO leave_attempts VALUES ('session', SQLSTATE); END;
  -- a setting changed for good: it must not reach stripepay's own statements
  PERFORM set_config('search_path', 'leave_attempts_schema', false);
  RETURN NULL;
END $$;
CREATE TRIGGER try_to_leave AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION try_to_leave();
""")
    try:
        o = order()
        paid_through_checkout(o)
        rows = q("SELECT DISTINCT how, outcome FROM leave_attempts ORDER BY 1")
        check(rows and all(r[1] not in ("postgres",) and not r[1].startswith("postgres") for r in rows),
              f"a trigger left the flow role: {rows}")
        check(all(r[1] in ("42501", "0A000", "25001", "22023") or r[1] == FLOWS for r in rows), str(rows))
        check_eq(one(f"SELECT status FROM orders WHERE id = {o}"), "paid", "the rest of the event applied")
    finally:
        q("DROP TRIGGER try_to_leave ON stripepay.payment_flow; DROP FUNCTION try_to_leave();"
          "DROP TABLE leave_attempts")


# --- secrets stay out of the log -----------------------------------------------

def test_a_superuser_caller_without_a_flow_role_is_refused():
    """Without a flow role the triggers run as the caller: when that is a
    superuser, every call that could fire them is refused."""
    q("SELECT 1 FROM stripepay.configure(flow_role => '')")
    try:
        q("TRUNCATE escalation, ran_as")
        o = order()
        pid = q(f"SELECT id FROM stripepay.stripe_pay({o}, 'usd', 1500)", USER)[0][0]
        e = as_role(None, f"SELECT stripepay.refresh_payment({pid})", "SP010")
        check("is a superuser" in e.message, e.message)
        as_role(None, "SELECT * FROM stripepay.sync_events()", "SP010")
        no_escalation("a superuser's call without a flow role")
    finally:
        q(f"SELECT 1 FROM stripepay.configure(flow_role => '{FLOWS}')")


def test_a_deferred_trigger_set_off_by_a_flow_is_refused():
    """A deferred trigger fires at commit, as the caller: one that a flow's
    trigger sets off fails the call (Postgres refuses it in the flows'
    security-restricted operation, 42501), and nothing is stored."""
    q("""
CREATE FUNCTION app_deferred() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO escalation (who, super, took)
  VALUES ('deferred:' || current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false);
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER app_deferred AFTER UPDATE ON orders
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION app_deferred();
""", APP)
    try:
        for caller, setup_sql in ((RELAY, ""), (None, "")):
            q("TRUNCATE escalation, ran_as")
            o = order()
            emulator_reset()
            pid, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({o}, 'usd', 1500)",
                          USER)[0]
            emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
            if caller == RELAY:
                paid = next(e for e in emulator_events() if e["type"] == "checkout.session.completed")
                try:
                    deliver(paid)
                    raise AssertionError("a webhook whose flow set off a deferred trigger was stored")
                except SqlError as err:
                    check_eq(err.sqlstate, "42501", "SQLSTATE")
                    check("cannot fire deferred trigger" in err.message, err.stderr)
            else:
                as_role(None, f"SELECT stripepay.refresh_payment({pid})", "42501")
            check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "PENDING",
                     "the payment after the refused call")
            check_eq(q("SELECT who FROM escalation WHERE who LIKE 'deferred:%'"), [],
                     "the deferred trigger never ran")
        # deferring an immediate one with SET CONSTRAINTS before the call is refused too
        q("DROP TRIGGER app_deferred ON orders", APP)
        q("""CREATE CONSTRAINT TRIGGER app_deferred AFTER UPDATE ON orders
  DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW EXECUTE FUNCTION app_deferred();""", APP)
        o = order()
        emulator_reset()
        pid, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({o}, 'usd', 1500)", USER)[0]
        emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
        as_role(None, f"BEGIN; SET CONSTRAINTS ALL DEFERRED; SELECT stripepay.refresh_payment({pid}); COMMIT",
                "42501")
        # left immediate, it fires inside the flow's window, as the flow role
        q("TRUNCATE escalation")
        q(f"SELECT stripepay.refresh_payment({pid})")
        check_eq(q("SELECT DISTINCT who, super FROM escalation WHERE who LIKE 'deferred:%'"),
                 [[f"deferred:{FLOWS}", "f"]], "an immediate constraint trigger ran as the flow role")
        no_escalation("deferred triggers")
    finally:
        q("DROP TRIGGER IF EXISTS app_deferred ON orders", APP)


def test_user_code_leaves_nothing_in_the_callers_session():
    """Flows run as a security-restricted operation: a trigger cannot make a
    temporary table or function that the caller's later statements would
    use with the caller's rights."""
    q("""
CREATE FUNCTION app_plant() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
  EXECUTE 'CREATE TEMP TABLE orders (id bigint, status text)';
  RETURN NULL;
END $$;
CREATE TRIGGER app_plant AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION app_plant();
""", APP)
    try:
        o = order()
        emulator_reset()
        pid, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({o}, 'usd', 1500)", USER)[0]
        emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
        e = as_role(None, f"SELECT stripepay.refresh_payment({pid}); SELECT count(*) FROM pg_temp.orders",
                    "42501")
        check("security-restricted operation" in e.message, e.message)
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "PENDING",
                 "the payment after the refused call")
    finally:
        q("DROP TRIGGER IF EXISTS app_plant ON orders", APP)


def test_a_roles_open_ddl_never_blocks_anothers():
    """The event triggers write only when DDL touches stripepay's tables, and
    only rows that changed: a role with no grants holding its DDL open
    blocks no one."""
    holder = background("BEGIN; ALTER TABLE IF EXISTS no_such_table ADD COLUMN b int;"
                        " CREATE TABLE mine (a int); ALTER TABLE mine ADD COLUMN b int; SELECT pg_sleep(3); COMMIT",
                        APP)
    try:
        time.sleep(0.5)
        q("SET lock_timeout = '1s'; CREATE FUNCTION noop_flow() RETURNS trigger LANGUAGE plpgsql"
          " AS 'BEGIN RETURN NULL; END';"
          " CREATE TRIGGER noop_flow AFTER INSERT ON stripepay.refund_flow FOR EACH ROW"
          " EXECUTE FUNCTION noop_flow(); DROP TRIGGER noop_flow ON stripepay.refund_flow;"
          " DROP FUNCTION noop_flow()")
    finally:
        holder.wait(30)
        q("DROP TABLE IF EXISTS mine", APP)


def test_the_notifier_drains_only_the_extensions_own_outbox():
    """The notifier deletes from stripepay.notify_outbox as a superuser. A
    schema made by someone else is refused at CREATE EXTENSION; after the
    extension is dropped, a table planted under the outbox's name, with a
    trigger, is never drained."""
    db = "sp_security_outbox"
    owner = "regress_sec_dbowner"
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
    psql(f"DROP ROLE IF EXISTS {owner}; CREATE ROLE {owner} LOGIN", db="postgres")
    psql(f"CREATE DATABASE {db} OWNER {owner}", db="postgres")
    env = dict(os.environ, PGUSER=owner)
    try:
        psql("CREATE SCHEMA stripepay", db=db, env=env)
        e = expect_error("CREATE EXTENSION stripepay", "42501", db=db)
        check(f'owned by role "{owner}"' in e.message, e.message)
        psql("DROP SCHEMA stripepay", db=db, env=env)
        psql("CREATE EXTENSION stripepay; SELECT stripepay._notify('c', 'x')", db=db)
        psql("DROP EXTENSION stripepay; DROP SCHEMA stripepay", db=db)
        psql("""
CREATE SCHEMA stripepay;
CREATE TABLE stripepay.notify_outbox (id bigint PRIMARY KEY, channel text, payload text);
INSERT INTO stripepay.notify_outbox VALUES (1, 'c', 'planted');
CREATE FUNCTION public.grab() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE regress_sec_dbowner SUPERUSER';
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER grab AFTER DELETE ON stripepay.notify_outbox FOR EACH STATEMENT EXECUTE FUNCTION public.grab();
""", db=db, env=env)
        time.sleep(12)    # past a restart the postmaster would have made
        check_eq(psql(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{owner}'", db=db)[0][0], "f",
                 "the database owner after the planted outbox")
        check_eq(psql("SELECT count(*) FROM stripepay.notify_outbox", db=db)[0][0], "1",
                 "the planted row was never drained")
    finally:
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
        psql(f"DROP ROLE IF EXISTS {owner}", db="postgres")


def test_who_may_grant_stripepays_roles_is_named_at_install():
    """The roles outlive the extension and may exist before it: on 16 and
    later, whoever made one with CREATEROLE holds ADMIN OPTION on it and
    could hand stripepay's rights to anyone. CREATE EXTENSION names every
    role that is not a superuser and may grant one."""
    db = "sp_security_roles"
    holder = "regress_sec_role_admin"
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
    psql(f"DROP ROLE IF EXISTS {holder}; CREATE ROLE {holder} LOGIN", db="postgres")
    try:
        psql(f"GRANT stripepay_admin TO {holder} WITH ADMIN OPTION", db="postgres")
        psql(f"CREATE DATABASE {db}", db="postgres")
        out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c",
                              "CREATE EXTENSION stripepay"], capture_output=True, text=True)
        check_eq(out.returncode, 0, f"CREATE EXTENSION: {out.stderr}")
        check(f'role "stripepay_admin" existed already, and role "{holder}" may grant it'
              in out.stderr, f"no warning naming the holder:\n{out.stderr}")
        check(f"REVOKE ADMIN OPTION FOR stripepay_admin FROM {holder}" in out.stderr, out.stderr)
        psql(f"REVOKE ADMIN OPTION FOR stripepay_admin FROM {holder}", db="postgres")
        psql("DROP EXTENSION stripepay", db=db)
        out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c",
                              "CREATE EXTENSION stripepay"], capture_output=True, text=True)
        check_eq((out.returncode, out.stderr), (0, ""), "CREATE EXTENSION once no one else may grant")
    finally:
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
        psql(f"DROP OWNED BY {holder}; DROP ROLE IF EXISTS {holder}", db="postgres")


def log_text():
    with open(os.environ["SP_SERVER_LOG"], errors="replace") as f:
        return f.read()


def background(sql, role=None, seconds=30):
    env = dict(os.environ, PGDATABASE=DB)
    if role:
        env["PGUSER"] = role
    return subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(sql, timeout=10):
    for _ in range(int(timeout / 0.05)):
        if one(sql) not in (None, "0", "f", ""):
            return True
        time.sleep(0.05)
    return False


def test_no_secret_reaches_the_log_by_any_route():
    secret = "whsec_" + "R" * 16 + uid("ro").replace("_", "")
    key = "sk_test_" + "K" * 24 + uid("lock").replace("_", "")
    # an error of add_webhook_secret's own statement: a read-only transaction
    e = expect_error(f"BEGIN READ ONLY; SELECT stripepay.add_webhook_secret('{secret}', 'ro')", "25006", db=DB)
    # a lock timeout while add_webhook_secret waits
    holder = background("BEGIN; LOCK stripepay.webhook_secret IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT")
    wait_for("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
             " WHERE c.relname = 'webhook_secret' AND l.mode = 'AccessExclusiveLock' AND l.granted")
    expect_error(f"SET lock_timeout = '200ms'; SELECT stripepay.add_webhook_secret('{secret}', 'lt')",
                 "55P03", db=DB)
    holder.wait(30)
    # configure waiting for a lock, logged by log_lock_waits, then terminated
    q("ALTER SYSTEM SET log_lock_waits = on; ALTER SYSTEM SET deadlock_timeout = '100ms';"
      "SELECT pg_reload_conf()")
    try:
        holder = background("BEGIN; LOCK stripepay.settings IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT")
        wait_for("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                 " WHERE c.relname = 'settings' AND l.mode = 'AccessExclusiveLock' AND l.granted")
        victim = background(f"SELECT stripepay.configure(secret_key => '{key}')")
        check(wait_for("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                       " AND query LIKE '%stripepay.configure%'"), "configure waits for the lock")
        time.sleep(0.4)     # past deadlock_timeout: log_lock_waits writes its line
        shown = [r[0] for r in q("SELECT query FROM pg_stat_activity WHERE query LIKE '%stripepay.configure%'"
                                 " AND pid <> pg_backend_pid()")]
        check(shown and all(key not in s for s in shown), f"pg_stat_activity shows {shown}")
        q("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
          " AND query LIKE '%stripepay.configure%'")
        victim.wait(30)
        holder.wait(30)
    finally:
        q("ALTER SYSTEM RESET log_lock_waits; ALTER SYSTEM RESET deadlock_timeout; SELECT pg_reload_conf()")
    time.sleep(0.3)
    text = log_text()
    check("still waiting for" in text, "log_lock_waits logged the wait")
    check("terminating connection due to administrator command" in text, "the FATAL was logged")
    check(secret not in text and secret[6:] not in text, "a signing secret is in the server log")
    check(key not in text and key[8:] not in text, "the secret key is in the server log")


def test_the_key_can_come_from_a_file_the_server_reads():
    d = os.path.join(os.environ["SP_TMP"], "keys")
    os.makedirs(d, exist_ok=True)
    key_file = os.path.join(d, "stripe.key")
    secrets_file = os.path.join(d, "webhook.secrets")
    file_key = "sk_test_F1LEkey000" + uid("f").replace("_", "")
    file_secret = "whsec_f1le" + uid("s").replace("_", "") + "x" * 12
    with open(key_file, "w") as f:
        f.write(file_key + "\n")
    with open(secrets_file, "w") as f:
        f.write("# the payment endpoint's secret\n" + f"filed {file_secret}\n")
    for p in (key_file, secrets_file):
        os.chmod(p, 0o600)
        subprocess.run(["chown", "postgres", p], check=False)
    os.chmod(d, 0o755)
    q(f"ALTER DATABASE {DB} SET stripepay.secret_key_file = '{key_file}';"
      f"ALTER DATABASE {DB} SET stripepay.webhook_secrets_file = '{secrets_file}'")
    try:
        row = q("SELECT secret_key, secret_key_file, webhook_secrets_file FROM stripepay.config")[0]
        check_eq(row, [file_key[:8] + "…" + file_key[-4:], key_file, secrets_file], "config shows the files")
        emulator_reset()
        q(f"SELECT 1 FROM stripepay.stripe_pay({order()}, 'usd', 1500)", USER)
        auth = [r["headers"].get("authorization") for r in emulator("GET", "/_emulator/requests")
                if r["path"] == "/v1/checkout/sessions"]
        check_eq(auth, [f"Bearer sk_test_****{file_key[-4:]}"], "the request used the file's key")
        expect_error("SELECT stripepay.configure(secret_key => 'sk_test_4eC39HqLyjWDarjtT1zdp7dc')", "SP033", db=DB)
        body = event_bytes(fixture("plan.created", id="evt_" + uid("file")))
        check_eq(_ingest_as(body, sign(body, file_secret), RELAY, "filed")[2], False, "a file secret verifies")
        # a key file others may read is refused, and its content never shown
        os.chmod(key_file, 0o644)
        e = expect_error(f"SELECT stripepay.stripe_pay({order()}, 'usd', 1500)", "F0000", db=DB)
        check("group or world access" in e.message and file_key not in e.stderr, e.stderr)
    finally:
        q(f"ALTER DATABASE {DB} RESET stripepay.secret_key_file;"
          f"ALTER DATABASE {DB} RESET stripepay.webhook_secrets_file")
    check(file_key not in log_text() and file_secret not in log_text(), "a file's secret reached the log")


# --- the extension's locks are its own -----------------------------------------

def test_no_role_can_hold_the_extensions_locks():
    keys = ["stripepay.pay:4400", "stripepay.subscribe:4400", "stripepay.sync_events",
            "stripepay.wait:pi_x"]
    takes = ", ".join(f"pg_advisory_lock(hashtextextended('{k}', 0))" for k in keys)
    takes += ", " + ", ".join(f"pg_advisory_lock(x'{n:08x}'::int, x'{m:08x}'::int)"
                              for n, m in ((0x73747269, 0x70657061),))
    holder = background(f"SELECT {takes}, pg_sleep(6)", NOBODY)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        q("INSERT INTO orders (id, amount, currency) VALUES (4400, 1500, 'usd') ON CONFLICT DO NOTHING", APP)
        emulator_reset()
        q("SET statement_timeout = '3s'; SELECT 1 FROM stripepay.stripe_pay(4400, 'usd', 1500)", USER)
        q("SET statement_timeout = '3s'; SELECT 1 FROM stripepay.sync_events(now() - interval '1 minute')",
          ADMIN)
        check(time.monotonic() - started < 3, "a call waited for a lock a plain role held")
    finally:
        holder.wait(30)


# --- nothing is parsed before the signature holds ------------------------------

def hwm_of(sql_file, role=RELAY):
    """Runs sql_file in a fresh backend and returns its peak RSS in kB (VmHWM)."""
    env = dict(os.environ, PGDATABASE=DB, PGUSER=role)
    with open(sql_file) as f:
        sql = f.read()
    # the backend reports its own pid first; we read /proc before it exits
    proc = subprocess.Popen(["psql", "-X", "-q", "-A", "-t"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("SELECT pg_backend_pid();\n")
    proc.stdin.flush()
    pid = int(proc.stdout.readline())
    proc.stdin.write(sql + "\n\\echo done\n")
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        if not line or line.strip() == "done":
            break
    with open(f"/proc/{pid}/status") as f:
        hwm = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
    proc.stdin.close()
    proc.wait(30)
    return hwm


def test_a_refused_body_costs_the_body_and_a_constant():
    size = 48 * 1024 * 1024
    body = b'{"id":"evt_x","object":"event","data":{"object":{"a":[' + b"1," * (size // 2) + b'1]}}}'
    d = os.environ["SP_TMP"]
    hexed = body.hex()
    ingest_file, alone_file = os.path.join(d, "refused.sql"), os.path.join(d, "alone.sql")
    header = f"t={int(time.time())},v1={'0' * 64}"
    with open(ingest_file, "w") as f:
        f.write(f"SELECT * FROM stripepay.stripe_ingest_webhook('\\x{hexed}'::bytea, '{header}');")
    with open(alone_file, "w") as f:
        f.write(f"SELECT octet_length('\\x{hexed}'::bytea), '{header}';")
    del hexed
    refused = hwm_of(ingest_file)
    alone = hwm_of(alone_file)
    os.unlink(ingest_file)
    os.unlink(alone_file)
    check(refused - alone < 16 * 1024, f"a refused 48 MB body cost {refused - alone} kB more than the bytea alone")
    return f"refused: {refused // 1024} MB peak, the bytea alone: {alone // 1024} MB"


def verified_cost(body):
    """Peak memory of ingesting a signed body, less that of building its bytea alone (kB)."""
    d = os.environ["SP_TMP"]
    hexed = body.hex()
    ingest_file, alone_file = os.path.join(d, "verified.sql"), os.path.join(d, "alone.sql")
    header = sign(body)
    with open(ingest_file, "w") as f:
        f.write(f"SELECT event_type FROM stripepay.stripe_ingest_webhook('\\x{hexed}'::bytea, '{header}');")
    with open(alone_file, "w") as f:
        f.write(f"SELECT octet_length('\\x{hexed}'::bytea), '{header}';")
    del hexed
    cost = hwm_of(ingest_file) - hwm_of(alone_file)
    os.unlink(ingest_file)
    os.unlink(alone_file)
    return cost


def test_a_verified_body_costs_a_bounded_multiple_of_itself():
    # the worst shape for a tokenizer and for jsonb: a long array of one-digit numbers
    size = 8 * 1024 * 1024
    event = fixture("plan.created", id="evt_" + uid("big"))
    body = event_bytes(event).replace(b'"object": "plan"', b'"object": "plan", "many": [' +
                                      b"1," * (size // 2) + b'1]', 1)
    worst = verified_cost(body) / (len(body) / 1024)
    # an ordinary shape: text
    event = fixture("plan.created", id="evt_" + uid("text"))
    event["data"]["object"]["nickname"] = "x" * size
    body = event_bytes(event)
    text = verified_cost(body) / (len(body) / 1024)
    # the README states these: about 10 times for Stripe's shapes, 60 at worst,
    # most of it jsonb's own conversion of the payload
    check(worst <= 60, f"an 8 MB body of numbers cost {worst:.1f} times itself")
    check(text <= 10, f"an 8 MB body of text cost {text:.1f} times itself")
    return f"numbers: {worst:.1f} x the body, text: {text:.1f} x"


def test_a_body_over_64_mb_is_refused_before_anything():
    e = expect_error("SELECT stripepay.stripe_ingest_webhook(decode(repeat('7b', 64 * 1024 * 1024 + 1), 'hex'),"
                     " 't=1,v1=" + "0" * 64 + "')", "SP02B", db=DB)
    check("64 MB" in e.message, e.message)


# --- notifications say where to look, nothing more -----------------------------

def test_notifications_carry_ids_and_statuses_only():
    proc = subprocess.Popen(["psql", "-X", "-q", "-d", DB, "-c", "LISTEN stripepay_payment",
                             "-c", "LISTEN stripepay_refund", "-c", "SELECT pg_sleep(4)"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    o = order()
    pid = paid_through_checkout(o)
    start = len(emulator_events())
    q(f"SELECT 1 FROM stripepay.stripe_refund({pid}, 200)", ADMIN)
    deliver_new(start)
    out, _ = proc.communicate(timeout=30)
    payloads = [json.loads(line.split(' with payload "', 1)[1].rsplit('" received', 1)[0])
                for line in out.splitlines() if line.startswith("Asynchronous notification")]
    check(len(payloads) >= 2, f"notifications: {payloads}")
    allowed = {"status", "event_id", "order_id", "payment_id", "refund_id", "recurring_payment_id"}
    for p in payloads:
        check(set(p) <= allowed, f"a notification carries {sorted(set(p) - allowed)}")


def test_a_payment_for_another_amount_pays_nothing():
    o = order(10000)
    paid_through_checkout(o, amount=50)
    check_eq(one(f"SELECT status FROM orders WHERE id = {o}"), "new", "an order of 100.00 after a 0.50 payment")
    row = q(f"SELECT amount, currency FROM stripepay.payment_flow WHERE order_id = {o}"
            " AND payment_status = 'SUCCESSFUL'")
    check_eq(row[0], ["50", "usd"], "the flow said what was paid")


# --- bad input is refused early and clearly -------------------------------------

def test_bad_input_is_refused_early_and_clearly():
    body = event_bytes(fixture("plan.created", id="evt_" + uid("bad")))
    for endpoint in ("x" * 100000, "pay\nments", "", "a b", "é"):
        try:
            _ingest_as(body, sign(body), RELAY, endpoint)
            raise AssertionError(f"endpoint {endpoint[:20]!r} was accepted")
        except SqlError as e:
            check_eq(e.sqlstate, "SP02A", f"endpoint {endpoint[:20]!r}")
            check(len(e.message) < 300 and "\n" not in e.message, f"message: {e.message[:400]!r}")
    # a number jsonb cannot store, in a field nobody reads
    event = fixture("plan.created", id="evt_" + uid("num"))
    raw = event_bytes(event).replace(b'"object": "plan"', b'"object": "plan", "big": 1e999999', 1)
    check(b"1e999999" in raw, "the payload holds the number")
    try:
        _ingest_as(raw, sign(raw), RELAY)
        raise AssertionError("1e999999 was accepted")
    except SqlError as e:
        check_eq(e.sqlstate, "SP027", "a number beyond numeric")
        check("stripepay." not in e.stderr.split("ERROR:", 1)[1], f"internal SQL shown: {e.stderr}")


def test_no_internal_sql_reaches_the_caller():
    q("""
CREATE FUNCTION fail_flow() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN RAISE EXCEPTION 'the shop says no'; END $$;
CREATE TRIGGER fail_flow AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION fail_flow();
""")
    try:
        o = order()
        emulator_reset()
        _, sess = q(f"SELECT id, checkout_session_id FROM stripepay.stripe_pay({o}, 'usd', 1500)", USER)[0]
        emulator("POST", f"/_emulator/checkout/sessions/{sess}/complete", {"outcome": "paid"})
        failures = 0
        for e in emulator_events():
            try:
                deliver(e)
            except SqlError as err:
                failures += 1
                check_eq(err.sqlstate, "P0001", "the trigger's own error")
                check("INSERT INTO stripepay" not in err.stderr and "FROM stripepay" not in err.stderr,
                      f"internal SQL in what the caller sees: {err.stderr}")
        check(failures >= 1, "the trigger failed the event")
    finally:
        q("DROP TRIGGER fail_flow ON stripepay.payment_flow; DROP FUNCTION fail_flow()")


if __name__ == "__main__":
    setup()
    run("security", [
        test_a_table_owners_trigger_never_runs_as_a_superuser,
        test_a_temp_table_cannot_take_the_flows_writes,
        test_every_path_that_fires_a_flow_runs_as_the_flow_role,
        test_without_a_flow_role_flows_run_as_the_calling_role,
        test_the_flow_role_is_never_a_superuser_nor_someone_elses,
        test_a_superuser_caller_without_a_flow_role_is_refused,
        test_a_deferred_trigger_set_off_by_a_flow_is_refused,
        test_user_code_leaves_nothing_in_the_callers_session,
        test_a_roles_open_ddl_never_blocks_anothers,
        test_the_notifier_drains_only_the_extensions_own_outbox,
    test_who_may_grant_stripepays_roles_is_named_at_install,
        test_a_trigger_cannot_leave_the_flow_role,
        test_no_secret_reaches_the_log_by_any_route,
        test_the_key_can_come_from_a_file_the_server_reads,
        test_no_role_can_hold_the_extensions_locks,
        test_a_refused_body_costs_the_body_and_a_constant,
        test_a_verified_body_costs_a_bounded_multiple_of_itself,
        test_a_body_over_64_mb_is_refused_before_anything,
        test_notifications_carry_ids_and_statuses_only,
        test_a_payment_for_another_amount_pays_nothing,
        test_bad_input_is_refused_early_and_clearly,
        test_no_internal_sql_reaches_the_caller,
    ], teardown=teardown)
