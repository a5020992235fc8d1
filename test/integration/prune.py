"""prune_events under load and from every role: what it deletes while
ingests run, what an event it pruned does when it is delivered again, who
may call it, and that it never makes an ingest wait.

Old events are made by SQL (their `created` weeks ago); events delivered
during the tests are signed as Stripe signs them and go through
stripe_ingest_webhook as the relay's role.  Each test starts from a fresh
database.  The product's batch is 5000 events and no setting changes it:
the tests make enough events for several batches.

Roles: the relay's (a member of stripepay_webhook), an application's
(stripepay_user), an admin that is not a superuser (stripepay_admin), a
role with no grants, and the cluster's superuser."""
import copy
import json
import os
import random
import subprocess
import threading
import time
from collections import Counter

from harness import (TEST_KEY, WEBHOOK_SECRET, check, check_eq, event_bytes, expect_error,
                     fresh_database, psql, run, sign, sql_error)

DB = "sp_prune"
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FIXTURES = os.path.join(ROOT, "test", "fixtures", "events")
RELAY, USER, ADMIN, NOBODY = ("regress_prune_relay", "regress_prune_user", "regress_prune_admin",
                              "regress_prune_nobody")
ROLES = (RELAY, USER, ADMIN, NOBODY)
DAY = 86400
WINDOW = "31 days"


def q(sql, role=None, timeout=300):
    env = dict(os.environ, PGUSER=role) if role else None
    return psql(sql, db=DB, env=env, timeout=timeout)


def one(sql, role=None):
    rows = q(sql, role)
    return rows[0][0] if rows else None


def as_role(role, sql, sqlstate):
    return expect_error(sql, sqlstate, db=DB, role=role)


def prune(role=ADMIN, window=WINDOW):
    """CALL prune_events; returns (deleted, kept, pruned_before, batches)."""
    arg = "" if window is None else f"'{window}'"
    d, k, before, b = q(f"CALL stripepay.prune_events({arg})", role)[0]
    return int(d), int(k), before, int(b)


_fixtures = {}


def event(name, evt_id, created, obj=None, type_=None, prev=None):
    """An event from a fixture: its id and time, data.object updated with obj,
    data.previous_attributes replaced by prev ({} removes it)."""
    if name not in _fixtures:
        with open(os.path.join(FIXTURES, name + ".json")) as f:
            _fixtures[name] = json.load(f)
    e = copy.deepcopy(_fixtures[name])
    e["id"] = evt_id
    e["created"] = int(created)
    if type_:
        e["type"] = type_
    e["data"]["object"].update(obj or {})
    if prev is not None:
        e["data"].pop("previous_attributes", None)
        if prev:
            e["data"]["previous_attributes"] = prev
    return e


def intent_event(kind, evt_id, created, pi, payment_id, order_id, amount=1000):
    """payment_intent.succeeded or .payment_failed of a payment row."""
    ok = kind == "succeeded"
    return event("payment_intent.succeeded" if ok else "payment_intent.payment_failed", evt_id, created,
                 {"id": pi, "amount": amount, "amount_received": amount if ok else 0, "currency": "usd",
                  "latest_charge": "ch_" + pi[3:] if ok else None,
                  "metadata": {"order_id": str(order_id), "stripepay_payment_id": str(payment_id)}})


def plan_event(evt_id, created):
    return event("plan.created", evt_id, created)


def ingest_sql(ev):
    """The statement the relay runs for one delivery, signed now, returning
    (event_id, already_processed, milliseconds the call took)."""
    body = event_bytes(ev) if isinstance(ev, dict) else ev
    return ("SELECT e.event_id, e.already_processed,"
            " round(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)"
            f" FROM stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{sign(body)}', NULL) e;")


def deliver(ev, role=RELAY, settings=""):
    """Delivers one event as the relay; returns (already_processed, ms)."""
    rows = q(settings + ingest_sql(ev), role)
    return rows[-1][1] == "t", float(rows[-1][2])


def deliver_many(events, role=RELAY, lock_timeout="2s"):
    """Delivers events in one session, one statement each, under a lock_timeout
    (an ingest that waits longer for a lock fails); returns [(id, already, ms)]."""
    script = f"SET lock_timeout = '{lock_timeout}';\nSET statement_timeout = '30s';\n"
    script += "\n".join(ingest_sql(e) for e in events)
    env = dict(os.environ, PGUSER=role)
    proc = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                           "-v", "VERBOSITY=verbose", "-d", DB], input=script, capture_output=True,
                          text=True, timeout=120, env=env)
    if proc.returncode != 0:
        raise sql_error(proc.stderr)
    return [(r[0], r[1] == "t", float(r[2])) for r in
            (line.split("\t") for line in proc.stdout.splitlines() if line)]


def background(sql, role=ADMIN):
    env = dict(os.environ, PGDATABASE=DB, PGUSER=role)
    return subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                             "-v", "VERBOSITY=verbose", "-c", sql], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(sql, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if one(sql) not in (None, "0", "f", ""):
            return True
        time.sleep(0.02)
    return False


def server_log():
    path = os.environ.get("SP_SERVER_LOG")
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()


def now_epoch():
    return int(one("SELECT extract(epoch FROM now())::bigint"))


# the keep rule, as the README's and sp_prune.c's words say it
KEPT_BY_RULE = """
  EXISTS (SELECT FROM stripepay.waiting_event w WHERE w.event_id = e.id)
  OR EXISTS (SELECT FROM stripepay.payment_record p WHERE p.id = e.payment_id AND p.event_created <= e.created)
  OR EXISTS (SELECT FROM stripepay.refund r WHERE r.id = e.refund_id AND r.event_created <= e.created)
  OR EXISTS (SELECT FROM stripepay.recurring_payment s
              WHERE s.id = e.recurring_payment_id AND s.event_created <= e.created)"""


def setup():
    for r in ROLES:
        psql(f"DROP ROLE IF EXISTS {r}", db="postgres")
    fresh_database(DB, TEST_KEY, WEBHOOK_SECRET)
    q(f"""
CREATE ROLE {RELAY} LOGIN IN ROLE stripepay_webhook;
CREATE ROLE {USER} LOGIN IN ROLE stripepay_user;
CREATE ROLE {ADMIN} LOGIN IN ROLE stripepay_admin;
CREATE ROLE {NOBODY} LOGIN;
""")


def fresh():
    fresh_database(DB, TEST_KEY, WEBHOOK_SECRET)


def teardown():
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    for r in ROLES:
        psql(f"DROP ROLE IF EXISTS {r}", db="postgres")


# --- who may prune ---------------------------------------------------------------

def test_only_admins_and_superusers_may_prune():
    fresh()
    now = now_epoch()
    q(f"""
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload)
SELECT 'evt_perm_' || g, 'plan.created', false, to_timestamp({now} - 40 * {DAY} - g), '{{}}'
  FROM generate_series(1, 10) g""")
    # the application's role, the relay's role, a role with no grants
    for role in (USER, RELAY, NOBODY):
        e = as_role(role, f"CALL stripepay.prune_events('{WINDOW}')", "42501")
        check("prune_events" in e.message or "schema stripepay" in e.message, e.message)
        as_role(role, "CALL stripepay.prune_events()", "42501")
    # nor may they delete events, nor set the retention
    for role in (USER, RELAY, NOBODY):
        as_role(role, "DELETE FROM stripepay.webhook_event", "42501")
        as_role(role, "SELECT stripepay.configure(event_retention => '45 days')", "42501")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_event"), "10", "nothing was deleted")
    # an admin prunes only through prune_events: it may read the events, not delete them
    as_role(ADMIN, "DELETE FROM stripepay.webhook_event", "42501")
    as_role(ADMIN, "CALL stripepay.prune_events('29 days')", "SP031")
    as_role(ADMIN, "SELECT stripepay.configure(event_retention => '10 days')", "SP031")
    as_role(ADMIN, f"BEGIN; CALL stripepay.prune_events('{WINDOW}'); COMMIT", "25001")
    # with the default window (90 days) nothing of 40 days goes; with the
    # retention an admin sets (45 days) neither; with 31 days all
    check_eq(prune(ADMIN, None)[:2], (0, 0), "deleted, kept with the default 90 days")
    q("SELECT 1 FROM stripepay.configure(event_retention => '45 days')", ADMIN)
    d, k, before, _ = prune(ADMIN, None)
    check_eq((d, k), (0, 0), "deleted, kept with a retention of 45 days")
    check_eq(one(f"SELECT round(extract(epoch FROM now() - '{before}'::timestamptz) / {DAY})"), "45",
             "pruned_before, in days ago")
    d, k, _, b = prune(ADMIN)
    check_eq((d, k, b), (10, 0, 1), "deleted, kept, batches as an admin")
    # the superuser too; nothing is superuser-only
    q(f"INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload)"
      f" VALUES ('evt_perm_su', 'plan.created', false, to_timestamp({now} - 40 * {DAY}), '{{}}')")
    check_eq(prune(None)[:2], (1, 0), "deleted, kept as the superuser")
    q("SELECT 1 FROM stripepay.configure(event_retention => '90 days')", ADMIN)


# --- an event pruned, then delivered again -------------------------------------

def test_a_pruned_event_delivered_again_changes_nothing_known():
    fresh()
    now = now_epoch()
    pid = int(one("INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, payment_intent_id,"
                  " created_by) VALUES (9001, 'usd', 1000, 'payment_intent', 'pi_replay1', 'shop') RETURNING id"))
    sid = int(one("INSERT INTO stripepay.recurring_payment (order_id, price_id, created_by)"
                  " VALUES (9002, 'price_1SPayMonthlyPrice00001', 'shop') RETURNING id"))

    def sub_event(evt_id, t, status, type_, prev):
        return event("customer.subscription.updated", evt_id, t,
                     {"id": "sub_replay1", "status": status, "cancel_at_period_end": False, "cancel_at": None,
                      "canceled_at": None,
                      "metadata": {"order_id": "9002", "stripepay_recurring_payment_id": str(sid)}},
                     type_=type_, prev=prev)

    def refund_event(evt_id, t, status, type_):
        return event("refund.created", evt_id, t,
                     {"id": "re_replay1", "status": status, "amount": 300, "payment_intent": "pi_replay1",
                      "charge": "ch_replay1", "metadata": {}}, type_=type_)

    events = {
        # the payment failed 45 days ago, succeeded 40 days ago; a second
        # success signal made 41 days ago came after the first
        "fail45": intent_event("failed", "evt_replay_fail45", now - 45 * DAY, "pi_replay1", pid, 9001),
        "ok40": intent_event("succeeded", "evt_replay_ok40", now - 40 * DAY, "pi_replay1", pid, 9001),
        "ok41": intent_event("succeeded", "evt_replay_ok41", now - 41 * DAY, "pi_replay1", pid, 9001),
        # a refund of it: pending 39 days ago, succeeded 38 days ago
        "refund39": refund_event("evt_replay_refund39", now - 39 * DAY, "pending", "refund.created"),
        "refund38": refund_event("evt_replay_refund38", now - 38 * DAY, "succeeded", "refund.updated"),
        # a subscription: created 50 days ago, past due 45 days ago
        "sub50": sub_event("evt_replay_sub50", now - 50 * DAY, "active", "customer.subscription.created", {}),
        "sub45": sub_event("evt_replay_sub45", now - 45 * DAY, "past_due", None, {"status": "active"}),
    }
    for name in ("fail45", "ok40", "ok41", "refund39", "refund38", "sub50", "sub45"):
        already, _ = deliver(events[name])
        check_eq(already, False, f"first delivery of {name}")
    state_sql = f"""
SELECT p.status, p.event_created = to_timestamp({now - 40 * DAY}), p.amount_refunded, p.failure_code,
       r.status, s.status, s.event_created = to_timestamp({now - 45 * DAY})
  FROM stripepay.payment_record p, stripepay.refund r, stripepay.recurring_payment s
 WHERE p.id = {pid} AND r.payment_id = p.id AND s.id = {sid}"""
    state = q(state_sql)
    check_eq(state, [["SUCCESSFUL", "t", "300", "", "SUCCEEDED", "PAST_DUE", "t"]], "the rows before pruning")
    flows_sql = """
SELECT 'payment', event_id, payment_status, already_processed FROM stripepay.payment_flow
UNION ALL SELECT 'refund', event_id, refund_status, already_processed FROM stripepay.refund_flow
UNION ALL SELECT 'subscription', event_id, status, already_processed FROM stripepay.subscription_flow
ORDER BY 1, 2"""
    flows = q(flows_sql)
    news = sorted((f[0], f[1]) for f in flows if f[3] == "f")
    check_eq(news, [("payment", "evt_replay_fail45"), ("payment", "evt_replay_ok40"),
                    ("refund", "evt_replay_refund38"),
                    ("subscription", "evt_replay_sub45"), ("subscription", "evt_replay_sub50")],
             "the flows that told the shop something new")

    # 31 days: the failure and the late second signal (older than the
    # payment's state) go, and the subscription's creation; the success, the
    # refund's events (not older than the payment's state) and the past_due stay
    d, k, _, _ = prune()
    check_eq((d, k), (3, 4), "deleted, kept")
    check_eq([r[0] for r in q("SELECT id FROM stripepay.webhook_event ORDER BY id")],
             ["evt_replay_ok40", "evt_replay_refund38", "evt_replay_refund39", "evt_replay_sub45"],
             "the events kept")

    # Delivered again, signed anew (Stripe would not, a replay could): the
    # ingest no longer knows them, records them as new and applies them; the
    # never-regress rule leaves every row as it was, and every flow they fire
    # says already_processed
    answers = {}
    for name, ev in events.items():
        answers[name] = deliver(ev)[0]
    check_eq(sorted(n for n, a in answers.items() if not a), ["fail45", "ok41", "sub50"],
             "the deliveries answered as new (the pruned ones)")
    check_eq(q(state_sql), state, "the rows after the pruned events came again")
    flows_after = q(flows_sql)
    added = Counter(map(tuple, flows_after)) - Counter(map(tuple, flows))
    check_eq(sorted(map(list, added.elements())), [
        ["payment", "evt_replay_fail45", "SUCCESSFUL", "t"],
        ["payment", "evt_replay_ok41", "SUCCESSFUL", "t"],
        ["subscription", "evt_replay_sub50", "PAST_DUE", "t"],
    ], "the flows the replays fired")
    check_eq(one(f"SELECT count(*) FROM stripepay.payment_flow WHERE payment_id = {pid}"
                 " AND payment_status = 'SUCCESSFUL' AND NOT already_processed"), "1",
             "times the shop was told to ship")
    # recorded again, with their links, until the next prune takes them again
    check_eq(q("SELECT id, payment_id IS NOT NULL OR recurring_payment_id IS NOT NULL,"
               " received_at > now() - interval '5 min' FROM stripepay.webhook_event"
               " WHERE id IN ('evt_replay_fail45', 'evt_replay_ok41', 'evt_replay_sub50') ORDER BY id"),
             [["evt_replay_fail45", "t", "t"], ["evt_replay_ok41", "t", "t"], ["evt_replay_sub50", "t", "t"]],
             "the replays' rows")
    # a third delivery is a duplicate again
    for name, ev in events.items():
        check_eq(deliver(ev)[0], True, f"third delivery of {name}")
    check_eq(q(flows_sql), flows_after, "flows after the third deliveries")
    check_eq(prune()[:2], (3, 4), "the next prune takes the replays again")
    return "a pruned event comes back as new, changes no row, fires flows with already_processed"


# --- locks: a batch makes no ingest wait ---------------------------------------

def test_a_batch_in_progress_makes_no_ingest_wait():
    fresh()
    now = now_epoch()
    n_old = 12000           # three batches of customer.created, then one of the payment's events
    q(f"""
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload)
SELECT 'evt_lock_' || lpad(g::text, 6, '0'), 'customer.created', false, to_timestamp({now} - 40 * {DAY} + g), '{{}}'
  FROM generate_series(1, {n_old}) g""")
    pid = int(one("INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, payment_intent_id,"
                  " status, event_created, created_by)"
                  f" VALUES (9100, 'usd', 1000, 'payment_intent', 'pi_lock1', 'FAILED', to_timestamp({now} - 40 * {DAY}),"
                  " 'shop') RETURNING id"))
    # the payment's state, and a failure before it, 40 and 45 days old
    q(f"""
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload, order_id, payment_id)
VALUES ('evt_lock_pay_state', 'payment_intent.payment_failed', false, to_timestamp({now} - 40 * {DAY}), '{{}}', 9100, {pid}),
       ('evt_lock_pay_before', 'payment_intent.payment_failed', false, to_timestamp({now} - 45 * {DAY}), '{{}}', 9100, {pid})""")
    # each batch sleeps after its DELETE, holding its row locks
    q("""
CREATE FUNCTION public.slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
CREATE TRIGGER slow_batch AFTER DELETE ON stripepay.webhook_event
  FOR EACH STATEMENT EXECUTE FUNCTION public.slow_batch();""")
    oldest = event("plan.created", "evt_lock_000001", now - 40 * DAY + 1, type_="customer.created")
    try:
        started = time.monotonic()
        pruner = background(f"CALL stripepay.prune_events('{WINDOW}')")
        in_batch = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                    " AND query LIKE 'CALL stripepay.prune_events%'")
        check(wait_for(in_batch), "the first batch sleeps")
        # a second prune waits for the first, and gives up at its lock_timeout
        as_role(ADMIN, f"SET lock_timeout = '100ms'; CALL stripepay.prune_events('{WINDOW}')", "55P03")
        # what the batch holds: row locks, and no table lock beyond a DELETE's
        modes = q("SELECT DISTINCT l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                  " WHERE a.query LIKE 'CALL stripepay.prune_events%' AND l.locktype = 'relation'"
                  " ORDER BY 1")
        check(set(m[0] for m in modes) <= {"AccessShareLock", "RowExclusiveLock"}, f"table locks: {modes}")
        # the oldest 5000 are being deleted: one of them delivered again is
        # still there (answered already_processed, so the batch had not
        # committed); a new event, and a payment linked to old events, go
        # through; with lock_timeout 100 ms, any wait for a lock fails
        timed = []
        for ev, expect in ((oldest, True),
                           (plan_event("evt_lock_new1", now - 10), False),
                           (intent_event("succeeded", "evt_lock_pay_ok", now - 5, "pi_lock1", pid, 9100), False)):
            already, ms = deliver(ev, settings="SET lock_timeout = '100ms';")
            check_eq(already, expect, f"already_processed of {ev['id']} during a batch")
            timed.append(ms)
        out, err = pruner.communicate(timeout=120)
        check_eq(pruner.returncode, 0, f"the prune: {err}")
        d, k, _, b = out.strip().split("\t")
        # the payment succeeded before its events' batch: its former state goes too
        check_eq((int(d), int(k), int(b)), (n_old + 2, 0, 4), "deleted, kept, batches")
        check_eq(one(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}"), "SUCCESSFUL", "the payment")
        # the one delivered again during its batch is gone now; delivered
        # once more, it is new
        check_eq(deliver(oldest)[0], False, "already_processed of a pruned event")
        return (f"ingests during a batch: {', '.join(f'{ms:.0f} ms' for ms in timed)}; "
                f"prune {time.monotonic() - started:.1f} s")
    finally:
        q("DROP TRIGGER IF EXISTS slow_batch ON stripepay.webhook_event; DROP FUNCTION IF EXISTS public.slow_batch()")


# --- what a batch sees: its snapshot, and what commits around it -----------------

def test_a_batch_keeps_what_its_snapshot_shows_waiting_or_a_state():
    """Each batch's DELETE decides on one snapshot (READ COMMITTED).  Three
    interleavings, made certain by a BEFORE DELETE trigger that sleeps once
    the snapshot is taken: a payment whose state event is being judged
    succeeds meanwhile; a payment succeeds meanwhile and applies a refund
    that waited (its event, judged waiting, becomes the refund's state);
    an ingest that applied a waiting refund is still open when the batch
    runs.  None of them may lose a waiting event or a row's state event,
    and neither side waits for the other."""
    fresh()
    now = now_epoch()
    ids = {}
    for name, pi, status in (("p1", "pi_snap1", "PENDING"), ("p2", "pi_snap2", "PENDING"),
                             ("p3", "pi_snap3", "FAILED")):
        ids[name] = int(one(
            "INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, payment_intent_id, status,"
            f" event_created, created_by) VALUES (9200, 'usd', 1000, 'payment_intent', '{pi}', '{status}',"
            f" {f'to_timestamp({now} - 40 * {DAY})' if status == 'FAILED' else 'NULL'}, 'shop') RETURNING id"))
    # p3 failed 45 and 40 days ago; refunds of p1 and p2 wait since 40 days
    q(f"""
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload, order_id, payment_id)
VALUES ('evt_snap_p3_state', 'payment_intent.payment_failed', false, to_timestamp({now} - 40 * {DAY}), '{{}}', 9200, {ids['p3']}),
       ('evt_snap_p3_before', 'payment_intent.payment_failed', false, to_timestamp({now} - 45 * {DAY}), '{{}}', 9200, {ids['p3']})""")
    for n in ("1", "2"):
        w = event("refund.created", f"evt_snap_w{n}", now - 40 * DAY,
                  {"id": f"re_snap{n}", "status": "succeeded", "amount": 100, "payment_intent": f"pi_snap{n}",
                   "charge": f"ch_snap{n}", "metadata": {}})
        body = json.dumps(w).replace("'", "''")
        q(f"""
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload)
VALUES ('evt_snap_w{n}', 'refund.created', false, to_timestamp({now} - 40 * {DAY}), '{body}');
INSERT INTO stripepay.waiting_event (stripe_id, event_id)
VALUES ('pi_snap{n}', 'evt_snap_w{n}'), ('ch_snap{n}', 'evt_snap_w{n}')""")
    # each batch's DELETE counts itself, then sleeps with its snapshot taken
    q("""
CREATE SEQUENCE public.batch_no;
GRANT USAGE ON SEQUENCE public.batch_no TO PUBLIC;
CREATE FUNCTION public.slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM nextval('public.batch_no'); PERFORM pg_sleep(2); RETURN NULL; END $$;
CREATE TRIGGER slow_batch BEFORE DELETE ON stripepay.webhook_event
  FOR EACH STATEMENT EXECUTE FUNCTION public.slow_batch();""")

    def ok(n):
        return intent_event("succeeded", f"evt_snap_p{n}_ok", now - 5, f"pi_snap{n}", ids[f"p{n}"], 9200)

    def batch_sleeps(n):
        return f"SELECT is_called AND last_value = {n} FROM public.batch_no"

    try:
        # p2's success applies its waiting refund in a transaction that stays open
        open_ingest = background("BEGIN; " + ingest_sql(ok(2)) + " SELECT pg_sleep(8); COMMIT;", RELAY)
        check(wait_for("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                       f" AND usename = '{RELAY}'"), "the open ingest sleeps")
        pruner = background(f"CALL stripepay.prune_events('{WINDOW}')")
        # batch 1, payment_intent.payment_failed: p3 succeeds meanwhile
        check(wait_for(batch_sleeps(1)), "batch 1 sleeps")
        check_eq(deliver(ok(3), settings="SET lock_timeout = '100ms';")[0], False, "p3's success, during batch 1")
        # batch 2, refund.created: p1 succeeds meanwhile and applies its refund
        check(wait_for(batch_sleeps(2)), "batch 2 sleeps")
        check_eq(deliver(ok(1), settings="SET lock_timeout = '100ms';")[0], False, "p1's success, during batch 2")
        out, err = pruner.communicate(timeout=60)
        check_eq(pruner.returncode, 0, f"the prune: {err}")
        check(open_ingest.poll() is None, "the prune ended while the open ingest was still open")
        d, k, _, b = out.strip().split("\t")
        # batch 1 saw p3 failed 40 days ago: its state stays, the failure before it goes;
        # batch 2 saw both refunds waiting
        check_eq((int(d), int(k), int(b)), (1, 3, 2), "deleted, kept, batches")
        out, err = open_ingest.communicate(timeout=60)
        check_eq(open_ingest.returncode, 0, f"the open ingest: {err}")
    finally:
        q("DROP TRIGGER IF EXISTS slow_batch ON stripepay.webhook_event;"
          " DROP FUNCTION IF EXISTS public.slow_batch(); DROP SEQUENCE IF EXISTS public.batch_no")
    check_eq([r[0] for r in q("SELECT id FROM stripepay.webhook_event WHERE created < now() - interval '20 days'"
                               " ORDER BY id")],
             ["evt_snap_p3_state", "evt_snap_w1", "evt_snap_w2"], "old events after the prune")
    # the refunds were applied, once, and their events are now their states
    check_eq(q("SELECT e.id, r.status, r.event_created = e.created FROM stripepay.refund r"
               " JOIN stripepay.webhook_event e ON e.refund_id = r.id ORDER BY 1"),
             [["evt_snap_w1", "SUCCEEDED", "t"], ["evt_snap_w2", "SUCCEEDED", "t"]], "refunds and their events")
    check_eq(one("SELECT count(*) FROM stripepay.refund_flow WHERE NOT already_processed"), "2", "refund flows")
    check_eq(one("SELECT count(*) FROM stripepay.waiting_event"), "0", "events still waiting")
    # alone, the next prune takes p3's former state, and keeps the refunds'
    check_eq(prune()[:2], (1, 2), "deleted, kept by the next prune")


# --- prune while ingests run -----------------------------------------------------

OLD_TYPES = ["charge.succeeded", "customer.updated", "invoice.finalized", "payment_intent.created",
             "plan.created", "product.updated", "setup_intent.created"]
N_OLD = 150000
N_RECENT = 5000
N_PAID, N_FAILED, N_WAITING, N_APPLIED, N_NEW = 100, 100, 50, 50, 300
WORKERS = 4


def old_created(now, g):
    return now - 35 * DAY - (g * 7919) % (150 * DAY)


def recent_created(now, g):
    return now - DAY - (g * 7919) % (9 * DAY)


def test_prune_while_ingests_run():
    fresh()
    now = now_epoch()
    types = "ARRAY[" + ", ".join(f"'{t}'" for t in OLD_TYPES) + "]"
    plan_i = OLD_TYPES.index("plan.created")
    applied = [event("refund.created", f"evt_applied_{g}", now - 40 * DAY - g,
                     {"id": f"re_wait_{g}", "status": "succeeded", "amount": 100, "payment_intent": f"pi_wait_{g}",
                      "charge": f"ch_wait_{g}", "metadata": {}}) for g in range(1, N_APPLIED + 1)]
    applied_json = json.dumps(applied).replace("'", "''")
    q(f"""
-- 150,000 events 35 to 185 days old, of seven types, and 5,000 of the last ten days
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload)
SELECT 'evt_old_' || g, ({types})[g % {len(OLD_TYPES)} + 1], false,
       to_timestamp({now} - 35 * {DAY} - (g * 7919) % (150 * {DAY})),
       jsonb_build_object('id', 'evt_old_' || g, 'object', 'event')
  FROM generate_series(1, {N_OLD}) g;
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload)
SELECT 'evt_recent_' || g, ({types})[g % {len(OLD_TYPES)} + 1], false,
       to_timestamp({now} - {DAY} - (g * 7919) % (9 * {DAY})),
       jsonb_build_object('id', 'evt_recent_' || g, 'object', 'event')
  FROM generate_series(1, {N_RECENT}) g;
-- paid 40 days ago, after a failure 45 days ago
INSERT INTO stripepay.payment_record (id, order_id, currency, amount, flow, payment_intent_id, status,
                                      event_created, created_by)
SELECT 100000 + g, 500000 + g, 'usd', 1000, 'payment_intent', 'pi_paid_' || g, 'SUCCESSFUL',
       to_timestamp({now} - 40 * {DAY} - g), 'shop' FROM generate_series(1, {N_PAID}) g;
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload, order_id, payment_id)
SELECT 'evt_paid_ok_' || g, 'payment_intent.succeeded', false, to_timestamp({now} - 40 * {DAY} - g), '{{}}'::jsonb,
       500000 + g, 100000 + g FROM generate_series(1, {N_PAID}) g
UNION ALL
SELECT 'evt_paid_fail_' || g, 'payment_intent.payment_failed', false, to_timestamp({now} - 45 * {DAY} - g), '{{}}'::jsonb,
       500000 + g, 100000 + g FROM generate_series(1, {N_PAID}) g;
-- failed 40 days ago and 45 days ago: they succeed during the prune
INSERT INTO stripepay.payment_record (id, order_id, currency, amount, flow, payment_intent_id, status,
                                      event_created, created_by)
SELECT 110000 + g, 510000 + g, 'usd', 1000, 'payment_intent', 'pi_failed_' || g, 'FAILED',
       to_timestamp({now} - 40 * {DAY} - g), 'shop' FROM generate_series(1, {N_FAILED}) g;
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload, order_id, payment_id)
SELECT 'evt_failed_state_' || g, 'payment_intent.payment_failed', false, to_timestamp({now} - 40 * {DAY} - g),
       '{{}}'::jsonb, 510000 + g, 110000 + g FROM generate_series(1, {N_FAILED}) g
UNION ALL
SELECT 'evt_failed_before_' || g, 'payment_intent.payment_failed', false, to_timestamp({now} - 45 * {DAY} - g),
       '{{}}'::jsonb, 510000 + g, 110000 + g FROM generate_series(1, {N_FAILED}) g;
-- refunds 40 days old that wait for a payment nobody knows
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload)
SELECT 'evt_waiting_' || g, 'refund.created', false, to_timestamp({now} - 40 * {DAY} - g), '{{}}'::jsonb
  FROM generate_series(1, {N_WAITING}) g;
INSERT INTO stripepay.waiting_event (stripe_id, event_id, waiting_since)
SELECT 'pi_unknown_' || g, 'evt_waiting_' || g, now() - interval '1 day' FROM generate_series(1, {N_WAITING}) g;
-- payments that the deliveries make successful for the first time, and
-- payments whose success applies a refund that has waited for it since 40 days
INSERT INTO stripepay.payment_record (id, order_id, currency, amount, flow, payment_intent_id, created_by)
SELECT 200000 + g, 600000 + g, 'usd', 1000, 'payment_intent', 'pi_new_' || g, 'shop'
  FROM generate_series(1, {N_NEW}) g
UNION ALL
SELECT 120000 + g, 520000 + g, 'usd', 1000, 'payment_intent', 'pi_wait_' || g, 'shop'
  FROM generate_series(1, {N_APPLIED}) g;
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload)
SELECT e->>'id', 'refund.created', false, to_timestamp((e->>'created')::bigint), e
  FROM jsonb_array_elements('{applied_json}'::jsonb) e;
INSERT INTO stripepay.waiting_event (stripe_id, event_id, waiting_since)
SELECT i || g, 'evt_applied_' || g, now() - interval '1 day'
  FROM generate_series(1, {N_APPLIED}) g, unnest(ARRAY['pi_wait_', 'ch_wait_']) i;
ANALYZE stripepay.webhook_event, stripepay.payment_record, stripepay.waiting_event;
""")
    old_before = int(one("SELECT count(*) FROM stripepay.webhook_event WHERE created < now() - interval '20 days'"))
    check_eq(old_before, N_OLD + 2 * N_PAID + 2 * N_FAILED + N_WAITING + N_APPLIED, "old events")

    # What the relay's sessions deliver, in a random order: first deliveries
    # (each twice, by two sessions), duplicates of recent events, and
    # duplicates of old events that the prune is deleting
    rng = random.Random(18)
    first = ([intent_event("succeeded", f"evt_new_ok_{g}", now - 5, f"pi_new_{g}", 200000 + g, 600000 + g)
              for g in range(1, N_NEW + 1)] +
             [intent_event("succeeded", f"evt_failed_ok_{g}", now - 5, f"pi_failed_{g}", 110000 + g, 510000 + g)
              for g in range(1, N_FAILED + 1)] +
             [intent_event("succeeded", f"evt_wait_ok_{g}", now - 5, f"pi_wait_{g}", 120000 + g, 520000 + g)
              for g in range(1, N_APPLIED + 1)] +
             [plan_event(f"evt_new_plan_{g}", now - 5) for g in range(1, N_NEW + 1)])
    recent_plans = [g for g in range(1, N_RECENT + 1) if g % len(OLD_TYPES) == plan_i]
    recent_dups = [plan_event(f"evt_recent_{g}", recent_created(now, g)) for g in rng.sample(recent_plans, 300)]
    old_plans = [g for g in range(1, N_OLD + 1) if g % len(OLD_TYPES) == plan_i]
    old_dups = ([plan_event(f"evt_old_{g}", old_created(now, g)) for g in rng.sample(old_plans, 300)] +
                [intent_event("failed", f"evt_paid_fail_{g}", now - 45 * DAY - g, f"pi_paid_{g}", 100000 + g,
                              500000 + g) for g in range(1, N_PAID + 1)] +
                [intent_event("succeeded", f"evt_paid_ok_{g}", now - 40 * DAY - g, f"pi_paid_{g}", 100000 + g,
                              500000 + g) for g in range(1, N_PAID + 1)] +
                [intent_event("failed", f"evt_failed_before_{g}", now - 45 * DAY - g, f"pi_failed_{g}",
                              110000 + g, 510000 + g) for g in range(1, N_FAILED + 1)] +
                applied)
    kinds = {}
    for e in first:
        kinds[e["id"]] = "first"
    for e in recent_dups:
        kinds[e["id"]] = "recent"
    for e in old_dups:
        kinds[e["id"]] = "old"
    plans = [[] for _ in range(WORKERS)]
    for i, e in enumerate(first):
        a = i % WORKERS
        plans[a].append(e)
        plans[(a + 1 + rng.randrange(WORKERS - 1)) % WORKERS].append(e)
    for i, e in enumerate(recent_dups + old_dups):
        plans[rng.randrange(WORKERS)].append(e)
        if kinds[e["id"]] == "old" and rng.random() < 0.5:
            plans[rng.randrange(WORKERS)].append(e)
    for p in plans:
        rng.shuffle(p)

    answers = []            # (event id, already_processed, ms, finished at)
    errors = []
    lock = threading.Lock()
    prune_done = threading.Event()
    deadline = time.monotonic() + 180

    def worker(n, todo):
        extra = 0
        try:
            while todo and time.monotonic() < deadline:
                chunk, todo = todo[:20], todo[20:]
                rows = deliver_many(chunk)
                at = time.monotonic()
                with lock:
                    answers.extend((r[0], r[1], r[2], at) for r in rows)
                # while the prune goes on, more new events (at most 2000 a session)
                if not todo and not prune_done.is_set() and extra < 2000:
                    more = [plan_event(f"evt_more_{n}_{extra + i}", now - 5) for i in range(20)]
                    for e in more:
                        kinds[e["id"]] = "first"
                    extra += len(more)
                    todo = more
        except Exception as e:  # reported below
            with lock:
                errors.append(f"session {n}: {e}")

    deadlocks_before = server_log().count("deadlock detected")
    pruner = background(f"CALL stripepay.prune_events('{WINDOW}')")
    check(wait_for("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CALL stripepay.prune_events%'"),
          "the prune started")
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n, plans[n])) for n in range(WORKERS)]
    for t in threads:
        t.start()
    try:
        out, err = pruner.communicate(timeout=240)
    finally:
        prune_done.set()
        prune_ended = time.monotonic()
        for t in threads:
            t.join(240)
    check_eq(errors, [], "errors of the ingesting sessions")
    check_eq(pruner.returncode, 0, f"the prune: {err}")
    deleted, kept, _, batches = out.strip().split("\t")
    deleted, kept, batches = int(deleted), int(kept), int(batches)
    check_eq(server_log().count("deadlock detected") - deadlocks_before, 0, "deadlocks in the server log")
    during = sum(1 for a in answers if started <= a[3] <= prune_ended)
    check(during > 0, "no ingest finished while the prune ran")

    # every answer: a first delivery is new exactly once, a recent duplicate
    # never, an old duplicate at most once (when it came after its deletion)
    by_id = {}
    for eid, already, _, _ in answers:
        by_id.setdefault(eid, []).append(already)
    firsts = [i for i, k in kinds.items() if k == "first"]
    check_eq(sorted(set(by_id) - set(kinds)), [], "answers about events never sent")
    bad = [i for i in firsts if i in by_id and by_id[i].count(False) != 1]
    check_eq(bad[:5], [], "first deliveries not answered new exactly once")
    check_eq([i for i, k in kinds.items() if k == "recent" and False in by_id.get(i, [])], [],
             "recent duplicates answered as new")
    check_eq([i for i, k in kinds.items() if k == "old" and by_id.get(i, []).count(False) > 1], [],
             "old duplicates answered as new twice")
    recorded_again = sorted(i for i, k in kinds.items() if k == "old" and False in by_id.get(i, []))

    # the counts: what was examined is what was deleted and kept, and what
    # remains of it is what was kept and what was recorded again after its deletion
    check_eq(deleted + kept, old_before, "deleted + kept")
    old_after = int(one("SELECT count(*) FROM stripepay.webhook_event WHERE created < now() - interval '20 days'"))
    check_eq(old_after, kept + len(recorded_again), "old events left (kept + recorded again)")
    check(batches >= N_OLD // 5000, f"batches: {batches}")
    # nothing lost: every recent event, every first delivery
    sent_first = [i for i in firsts if i in by_id]
    check_eq(one("SELECT count(*) FROM stripepay.webhook_event WHERE created >= now() - interval '20 days'"),
             str(N_RECENT + len(sent_first)), "recent events")
    missing = q("SELECT count(*) FROM unnest(%s::text[]) i WHERE NOT EXISTS"
                " (SELECT FROM stripepay.webhook_event e WHERE e.id = i)"
                % ("ARRAY[" + ",".join(f"'{i}'" for i in sent_first + recorded_again) + "]"))
    check_eq(missing, [["0"]], "first deliveries and replays recorded")
    # the waiting events and the states of the rows nobody moved are kept
    check_eq(one("SELECT count(*) FROM stripepay.webhook_event e JOIN stripepay.waiting_event w ON w.event_id = e.id"),
             str(N_WAITING), "waiting events")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_event e JOIN stripepay.payment_record p"
                 " ON p.id = e.payment_id AND p.event_created = e.created WHERE e.id LIKE 'evt_paid_ok_%'"),
             str(N_PAID), "the events the paid payments' states came from")
    # the refunds that waited were applied when their payments succeeded, and
    # their events kept, now as the refunds' states
    check_eq(q("SELECT count(*), count(DISTINCT e.id) FROM stripepay.refund r JOIN stripepay.webhook_event e"
               " ON e.refund_id = r.id AND e.created = r.event_created AND e.id LIKE 'evt_applied_%'"
               " WHERE r.status = 'SUCCEEDED'"), [[str(N_APPLIED), str(N_APPLIED)]],
             "refunds applied from waiting events, and those events")
    check_eq(q("SELECT count(*), count(DISTINCT refund_id) FROM stripepay.refund_flow WHERE NOT already_processed"),
             [[str(N_APPLIED), str(N_APPLIED)]], "refunds the shop was told about")
    check_eq(one("SELECT count(*) FROM stripepay.payment_record WHERE id > 120000 AND id < 130000"
                 " AND amount_refunded = 100"), str(N_APPLIED), "payments refunded")
    # applied once: each new payment and each failed one succeeded, told the
    # shop once; the paid ones told it nothing new
    told = q("SELECT payment_id / 10000, count(*), count(DISTINCT payment_id) FROM stripepay.payment_flow"
             " WHERE NOT already_processed GROUP BY 1 ORDER BY 1")
    check_eq(told, [["11", str(N_FAILED), str(N_FAILED)], ["12", str(N_APPLIED), str(N_APPLIED)],
                    ["20", str(N_NEW), str(N_NEW)]],
             "payments the shop was told about, by group (payment_id / 10000)")
    check_eq(q("SELECT status, count(*) FROM stripepay.payment_record GROUP BY 1"),
             [["SUCCESSFUL", str(N_PAID + N_FAILED + N_APPLIED + N_NEW)]], "payments")
    check_eq(one("SELECT count(*) FROM stripepay.payment_record p WHERE id > 110000 AND id < 120000"
                 " AND event_created = (SELECT created FROM stripepay.webhook_event WHERE id = 'evt_failed_ok_'"
                 " || (p.id - 110000))"), str(N_FAILED), "the failed payments' states come from their successes")

    # A second prune, alone: exactly what the rule keeps remains
    d2, k2, _, _ = prune()
    check_eq(k2, N_PAID + N_WAITING + N_APPLIED,
             "kept by the second prune (the states of the paid payments and of the refunds, the waiting)")
    check_eq(one(f"SELECT count(*) FROM stripepay.webhook_event e WHERE created < now() - interval '{WINDOW}'"
                 f" AND NOT ({KEPT_BY_RULE})"), "0", "old events the rule does not keep, left")
    check_eq(one("SELECT count(*) FROM stripepay.webhook_event WHERE created < now() - interval '20 days'"),
             str(N_PAID + N_WAITING + N_APPLIED), "old events after the second prune")
    ms = sorted(a[2] for a in answers)
    return (f"{len(answers)} deliveries, {during} during the prune ({prune_ended - started:.1f} s, "
            f"{batches} batches: {deleted} deleted, {kept} kept); {len(recorded_again)} pruned events "
            f"delivered again; ingest max {ms[-1]:.0f} ms, p99 {ms[int(len(ms) * 0.99)]:.0f} ms; "
            f"second prune {d2} deleted")


if __name__ == "__main__":
    setup()
    run("prune", [
        test_only_admins_and_superusers_may_prune,
        test_a_pruned_event_delivered_again_changes_nothing_known,
        test_a_batch_in_progress_makes_no_ingest_wait,
        test_a_batch_keeps_what_its_snapshot_shows_waiting_or_a_state,
        test_prune_while_ingests_run,
    ], teardown=teardown)
