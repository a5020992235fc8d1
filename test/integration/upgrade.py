"""ALTER EXTENSION stripepay UPDATE from 0.1.0: the catalog it leaves is the
one CREATE EXTENSION makes, the rows kept stay whole, and the updated
database goes on working (a signed event applies, a refund is made, a sync
runs).  Also: the released 0.1.0 script is never edited, and a library newer
than the installed SQL refuses to run with a hint to update."""
import difflib
import hashlib
import os
import re
import time

from harness import (TEST_KEY, WEBHOOK_SECRET, check, check_eq, emulator,
                     emulator_reset, event_bytes, expect_error, psql, run, sign,
                     test_flow_role)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FRESH, UPDATED = "sp_upgrade_fresh", "sp_upgrade_updated"

# The install scripts of released versions, by their sha256: an update
# script may change what a release made, never the script that made it
# (ALTER EXTENSION ... UPDATE starts from it).  A release adds its line.
RELEASED = os.path.join(ROOT, "sql", "released.sha256")

# Every property of every object the extension owns that a user, pg_dump or
# the library can tell apart, one line each, without OIDs.
CATALOG = r"""
WITH ext AS (SELECT oid, extnamespace FROM pg_extension WHERE extname = 'stripepay'),
members AS (
	SELECT d.classid, d.objid FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
	SELECT c.* FROM pg_class c, ext WHERE c.relnamespace = ext.extnamespace)
SELECT line FROM (
	SELECT 'member ' || pg_describe_object(classid, objid, 0) AS line FROM members
UNION ALL
	SELECT format('function %s kind=%s lang=%s result=%s secdef=%s strict=%s volatile=%s '
				  'parallel=%s leakproof=%s cost=%s rows=%s config=%s acl=%s bin=%s src=%s',
				  p.oid::regprocedure, p.prokind, l.lanname,
				  pg_get_function_result(p.oid), p.prosecdef, p.proisstrict, p.provolatile,
				  p.proparallel, p.proleakproof, p.procost, p.prorows, p.proconfig,
				  p.proacl, p.probin,
				  CASE WHEN l.lanname = 'c' THEN p.prosrc ELSE md5(p.prosrc) END)
	  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang, ext
	 WHERE p.pronamespace = ext.extnamespace
UNION ALL
	SELECT format('function-arguments %s (%s)', p.oid::regprocedure,
				  pg_get_function_arguments(p.oid))
	  FROM pg_proc p, ext WHERE p.pronamespace = ext.extnamespace
UNION ALL
	SELECT format('relation %s kind=%s persistence=%s options=%s acl=%s rls=%s',
				  c.relname, c.relkind, c.relpersistence, c.reloptions, c.relacl,
				  c.relrowsecurity)
	  FROM rels c WHERE c.relkind <> 'i'
UNION ALL
	/* columns in their order, dropped ones left out: an update appends */
	SELECT format('column %s.%s #%s %s notnull=%s default=%s identity=%s generated=%s '
				  'compression=%s storage=%s collation=%s acl=%s',
				  c.relname, a.attname,
				  row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
				  format_type(a.atttypid, a.atttypmod), a.attnotnull,
				  pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
				  a.attcompression, a.attstorage, a.attcollation, a.attacl)
	  FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid
	  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
	 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'p', 'c', 'S')
UNION ALL
	SELECT 'index ' || regexp_replace(pg_get_indexdef(i.indexrelid), ' ON \S+\.', ' ON ')
	  FROM pg_index i JOIN rels c ON c.oid = i.indexrelid
UNION ALL
	SELECT format('constraint %s %s %s', c.relname, k.conname, pg_get_constraintdef(k.oid))
	  FROM pg_constraint k JOIN rels c ON c.oid = k.conrelid
UNION ALL
	SELECT format('trigger %s enabled=%s', pg_get_triggerdef(t.oid), t.tgenabled)
	  FROM pg_trigger t JOIN rels c ON c.oid = t.tgrelid
	 WHERE NOT t.tgisinternal	/* the extension's own, not the shop's */
	   AND t.tgfoid IN (SELECT objid FROM members WHERE classid = 'pg_proc'::regclass)
UNION ALL
	SELECT format('view %s %s', c.relname, pg_get_viewdef(c.oid))
	  FROM rels c WHERE c.relkind = 'v'
UNION ALL
	SELECT format('sequence %s type=%s start=%s inc=%s max=%s min=%s cache=%s cycle=%s owned by %s',
				  c.relname, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmax,
				  s.seqmin, s.seqcache, s.seqcycle,
				  (SELECT pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
					 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
					  AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
	  FROM pg_sequence s JOIN rels c ON c.oid = s.seqrelid
UNION ALL
	SELECT format('type %s type=%s', t.typname, t.typtype)
	  FROM pg_type t, ext WHERE t.typnamespace = ext.extnamespace
UNION ALL
	SELECT format('event trigger %s on %s tags %s enabled=%s function %s', t.evtname, t.evtevent,
				  t.evttags, t.evtenabled, t.evtfoid::regprocedure)
	  FROM pg_event_trigger t JOIN members m
		ON m.classid = 'pg_event_trigger'::regclass AND m.objid = t.oid
UNION ALL
	SELECT format('policy %s %s', c.relname, p.polname)
	  FROM pg_policy p JOIN rels c ON c.oid = p.polrelid
UNION ALL
	SELECT format('comment %s %s', pg_describe_object(d.classoid, d.objoid, d.objsubid),
				  d.description)
	  FROM pg_description d JOIN members m ON m.objid = d.objoid AND m.classid = d.classoid
UNION ALL
	SELECT 'config ' || t.c::regclass::text || ' ' || coalesce(w.cond, '')
	  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS t_(c, cond),
		   LATERAL (SELECT t_.c) t, LATERAL (SELECT t_.cond) w
	 WHERE e.extname = 'stripepay'
UNION ALL
	SELECT format('schema %s acl=%s', n.nspname, n.nspacl)
	  FROM pg_namespace n, ext WHERE n.oid = ext.extnamespace
UNION ALL
	SELECT format('extension relocatable=%s version=%s', e.extrelocatable, e.extversion)
	  FROM pg_extension e WHERE e.extname = 'stripepay'
) all_lines ORDER BY line COLLATE "C"
"""


def catalog(db):
    return [row[0] for row in psql(CATALOG, db=db)]


def event(event_id, etype, obj, created=None, previous=None):
    body = {"id": event_id, "object": "event", "api_version": "2026-10-28.endive",
            "created": created or int(time.time()), "livemode": False, "type": etype,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
            "data": {"object": obj}}
    if previous is not None:
        body["data"]["previous_attributes"] = previous
    return body


def ingest_in(db, payload):
    body = event_bytes(payload)
    header = sign(body)
    literal = body.decode().replace("'", "''")
    return psql(f"SELECT event_id, already_processed FROM stripepay.stripe_ingest_webhook("
                f"convert_to('{literal}', 'UTF8'), '{header}')", db=db)[0]


def installed_0_1_0(db):
    """A database with 0.1.0 installed and holding what a shop had: payments
    in each status and a renewal, refunds that succeeded, failed and wait, a
    subscription scheduled to cancel, events, a waiting event, a row of each
    flow, settings and a webhook secret.

    The rows go in by INSERT: the new library refuses the 0.1.0 functions."""
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
    psql(f"CREATE DATABASE {db}", db="postgres")
    psql("CREATE EXTENSION stripepay VERSION '0.1.0'", db=db)
    psql(f"""
INSERT INTO stripepay.settings (secret_key, success_url, cancel_url, payment_flow)
VALUES ('{TEST_KEY}', 'https://shop.example/ok', 'https://shop.example/cancel', 'checkout');
INSERT INTO stripepay.webhook_secret (secret) VALUES ('{WEBHOOK_SECRET}');
INSERT INTO stripepay.recurring_payment (order_id, price_id, status, checkout_session_id,
	subscription_id, customer_id, current_period_start, current_period_end,
	cancel_at_period_end, canceled_at, livemode, event_created, event_changed_from, created_by)
VALUES (500, 'price_1', 'ACTIVE', 'cs_up_sub', 'sub_up_1', 'cus_up',
	'2026-11-01 00:00+00', '2026-12-01 00:00+00', true, '2026-11-10 00:00+00', false,
	'2026-11-10 00:00+00', '{{"status": "active", "cancel_at_period_end": false}}', 'app'),
	(501, 'price_1', 'CANCELED', 'cs_up_sub2', 'sub_up_2', 'cus_up',
	'2026-10-01 00:00+00', '2026-11-01 00:00+00', false, '2026-10-15 00:00+00', false,
	'2026-10-15 00:00+00', NULL, 'app');
INSERT INTO stripepay.payment_record (order_id, status, currency, amount, amount_refunded, flow,
	checkout_session_id, payment_intent_id, charge_id, livemode, event_created, created_by)
VALUES (100, 'SUCCESSFUL', 'usd', 2500, 500, 'checkout', 'cs_up_paid', 'pi_up_paid',
	'ch_up_paid', false, '2026-11-02 00:00+00', 'app'),
	(101, 'PENDING', 'eur', 900, 0, 'checkout', 'cs_up_open', NULL, NULL, false, NULL, 'app'),
	(102, 'FAILED', 'usd', 700, 0, 'payment_intent', NULL, 'pi_up_failed', NULL, false,
	 '2026-11-03 00:00+00', 'app'),
	(103, 'CANCELED', 'usd', 800, 0, 'checkout', 'cs_up_expired', NULL, NULL, false,
	 '2026-11-03 00:00+00', 'app');
INSERT INTO stripepay.payment_record (order_id, kind, recurring_payment_id, status, currency,
	amount, amount_refunded, flow, invoice_id, payment_intent_id, charge_id, livemode,
	event_created, created_by)
SELECT 502, 'RENEWAL', id, 'SUCCESSFUL', 'usd', 1500, 200, 'invoice', 'in_up_renewal', 'pi_up_renewal',
	'ch_up_renewal', false, '2026-11-06 00:00+00', 'app'
  FROM stripepay.recurring_payment WHERE order_id = 500;
INSERT INTO stripepay.refund (payment_id, order_id, currency, amount, status, stripe_refund_id,
	event_created, created_by)
SELECT id, 100, 'usd', 500, 'SUCCEEDED', 're_up_1', '2026-11-04 00:00+00', 'admin'
  FROM stripepay.payment_record WHERE order_id = 100;
INSERT INTO stripepay.refund (payment_id, order_id, currency, amount, status, stripe_refund_id,
	failure_reason, event_created, created_by)
SELECT id, 100, 'usd', 300, 'FAILED', 're_up_failed', 'expired_or_canceled_card',
	'2026-11-04 00:01+00', 'admin'
  FROM stripepay.payment_record WHERE order_id = 100;
INSERT INTO stripepay.refund (payment_id, order_id, currency, amount, status, stripe_refund_id,
	event_created, created_by)
SELECT id, 502, 'usd', 200, 'PENDING', 're_up_pending', NULL, 'admin'
  FROM stripepay.payment_record WHERE order_id = 502;
INSERT INTO stripepay.webhook_event (id, type, api_version, livemode, created, object_id,
	payment_id, order_id, payload)
SELECT 'evt_up_' || g, 'checkout.session.completed', '2026-10-28.endive', false,
	'2026-11-02 00:00+00'::timestamptz + g * interval '1 minute', 'cs_up_paid', p.id, 100,
	jsonb_build_object('id', 'evt_up_' || g, 'n', g)
  FROM stripepay.payment_record p, generate_series(1, 3) g WHERE p.order_id = 100;
INSERT INTO stripepay.webhook_event (id, type, livemode, created, object_id, payload)
VALUES ('evt_up_wait', 'charge.refunded', false, '2026-11-05 00:00+00', 'ch_up_unknown',
	'{{"id": "evt_up_wait"}}');
INSERT INTO stripepay.waiting_event (stripe_id, event_id, facts)
VALUES ('ch_up_unknown', 'evt_up_wait', '{{}}');
INSERT INTO stripepay.payment_flow (payment_id, order_id, event_id, event_type,
	payment_status, already_processed)
SELECT id, 100, 'evt_up_1', 'checkout.session.completed', 'SUCCESSFUL', false FROM stripepay.payment_record WHERE order_id = 100;
INSERT INTO stripepay.refund_flow (refund_id, payment_id, order_id, event_id, event_type,
	refund_status, amount, already_processed)
SELECT r.id, r.payment_id, 100, 'evt_up_2', 'refund.updated', 'SUCCEEDED', 500, false
  FROM stripepay.refund r WHERE r.stripe_refund_id = 're_up_1';
INSERT INTO stripepay.subscription_flow (event_id, event_type, order_id, recurring_payment_id,
	status, previous_status, cancel_at_period_end, already_processed)
SELECT 'evt_up_sub', 'customer.subscription.updated', 500, id, 'ACTIVE', 'ACTIVE', true, false
  FROM stripepay.recurring_payment WHERE order_id = 500;
INSERT INTO stripepay.deduction_flow (event_id, event_type, recurring_payment_id,
	subscription_order_id, payment_id, order_id, invoice_id, currency, amount, already_processed)
SELECT 'evt_up_renewal', 'invoice.paid', p.recurring_payment_id, 500, p.id, 502, 'in_up_renewal',
	'usd', 1500, false FROM stripepay.payment_record p WHERE p.order_id = 502;
CREATE FUNCTION public.shop_paid() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE TRIGGER shop_paid AFTER INSERT ON stripepay.payment_flow
	FOR EACH ROW WHEN (NOT NEW.already_processed) EXECUTE FUNCTION public.shop_paid();
""", db=db)


def columns(db, table):
    return [r[0] for r in psql(
        f"SELECT attname FROM pg_attribute WHERE attrelid = 'stripepay.{table}'::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", db=db)]


# --- the catalog ------------------------------------------------------------

def setup():
    psql(f"DROP DATABASE IF EXISTS {FRESH} WITH (FORCE)", db="postgres")
    psql(f"CREATE DATABASE {FRESH}", db="postgres")
    psql("CREATE EXTENSION stripepay", db=FRESH)
    installed_0_1_0(UPDATED)
    # as the README says: the flow role named in the update's transaction
    psql(f"""BEGIN;
ALTER EXTENSION stripepay UPDATE TO '0.2.0';
SELECT 1 FROM stripepay.configure(flow_role => '{test_flow_role()}');
COMMIT;""", db=UPDATED)


def test_updated_catalog_is_the_fresh_one():
    fresh, updated = catalog(FRESH), catalog(UPDATED)
    check(len(fresh) > 300, f"the catalog query saw only {len(fresh)} lines")
    diff = list(difflib.unified_diff(fresh, updated, "CREATE EXTENSION",
                                     "ALTER EXTENSION UPDATE", lineterm="", n=0))
    check(not diff, "the updated catalog differs from a fresh one:\n" + "\n".join(diff[:60]))


def test_catalog_query_tells_a_change():
    """The comparison sees what an update script could forget: a SECURITY
    clause, a column's default, a grant, a comment."""
    before = catalog(UPDATED)
    changed = [row[0] for row in psql(
        "BEGIN;\n"
        "ALTER FUNCTION stripepay.stripe_refund(bigint, numeric) SECURITY DEFINER;\n"
        "ALTER TABLE stripepay.refund ALTER COLUMN reason SET DEFAULT 'x';\n"
        "GRANT SELECT ON stripepay.refund TO PUBLIC;\n"
        "COMMENT ON COLUMN stripepay.payment_record.amount IS 'changed';\n"
        + CATALOG + ";\nROLLBACK;", db=UPDATED)]
    added = [line for line in changed if line not in before]
    check_eq(len(added), 4, "lines changed:\n" + "\n".join(added))
    check_eq(catalog(UPDATED), before, "the catalog after the rollback")


def test_column_order_is_the_fresh_one():
    for table in ("settings", "recurring_payment", "payment_record", "refund", "webhook_event",
                  "waiting_event", "payment_flow", "refund_flow", "subscription_flow",
                  "deduction_flow", "webhook_secret", "webhook_endpoint", "notify_outbox"):
        check_eq(columns(UPDATED, table), columns(FRESH, table), f"columns of {table}")


# --- the rows kept ----------------------------------------------------------

def test_rows_are_kept():
    counts = "SELECT (SELECT count(*) FROM stripepay.payment_record), " \
             "(SELECT count(*) FROM stripepay.refund), " \
             "(SELECT count(*) FROM stripepay.recurring_payment), " \
             "(SELECT count(*) FROM stripepay.webhook_event), " \
             "(SELECT count(*) FROM stripepay.waiting_event), " \
             "(SELECT count(*) FROM stripepay.payment_flow), " \
             "(SELECT count(*) FROM stripepay.refund_flow), " \
             "(SELECT count(*) FROM stripepay.subscription_flow), " \
             "(SELECT count(*) FROM stripepay.deduction_flow), " \
             "(SELECT count(*) FROM stripepay.webhook_secret)"
    check_eq(psql(counts, db=UPDATED)[0], ["5", "3", "2", "4", "1", "1", "1", "1", "1", "1"],
             "row counts")
    check_eq(psql("SELECT string_agg(status, ',' ORDER BY order_id) FROM stripepay.payment_record",
                  db=UPDATED)[0][0], "SUCCESSFUL,PENDING,FAILED,CANCELED,SUCCESSFUL",
             "a payment in every status")
    check_eq(psql("SELECT kind, recurring_payment_id IS NOT NULL, invoice_id, charge_id "
                  "FROM stripepay.payment_record WHERE order_id = 502", db=UPDATED)[0],
             ["RENEWAL", "t", "in_up_renewal", "ch_up_renewal"], "the renewal")
    check_eq(psql("SELECT string_agg(status || ':' || coalesce(failure_reason, ''), ',' "
                  "ORDER BY stripe_refund_id) FROM stripepay.refund", db=UPDATED)[0][0],
             "SUCCEEDED:,FAILED:expired_or_canceled_card,PENDING:", "refunds in each state")
    row = psql("SELECT status, amount, amount_refunded, currency, charge_id, event_created "
               "FROM stripepay.payment_record WHERE order_id = 100", db=UPDATED)[0]
    check_eq(row, ["SUCCESSFUL", "2500", "500", "usd", "ch_up_paid", "2026-11-02 00:00:00+00"],
             "the paid payment")
    check_eq(psql("SELECT payload->>'n' FROM stripepay.webhook_event WHERE id = 'evt_up_2'",
                  db=UPDATED)[0][0], "2", "an event's payload")


def test_changed_from_moves_into_columns():
    rows = psql("SELECT order_id, changed_from_status, changed_from_cancel_at_period_end, "
                "cancel_at FROM stripepay.recurring_payment ORDER BY order_id", db=UPDATED)
    check_eq(rows, [["500", "ACTIVE", "f", "2026-12-01 00:00:00+00"], ["501", "", "", ""]],
             "what the newest events changed from, and the scheduled cancellation")


def test_flow_rows_gain_amount_and_currency():
    check_eq(psql("SELECT amount, currency FROM stripepay.payment_flow", db=UPDATED),
             [["2500", "usd"]], "payment_flow")
    check_eq(psql("SELECT amount, currency FROM stripepay.refund_flow", db=UPDATED),
             [["500", "usd"]], "refund_flow")


def test_settings_survive_and_new_ones_default():
    row = psql("SELECT mode, success_url, flow_role, event_retention, "
               "secret_key = stripepay.mask_key(%s) FROM stripepay.config" % (
                   "'" + TEST_KEY + "'"), db=UPDATED)[0]
    check_eq(row, ["test", "https://shop.example/ok", test_flow_role(), "90 days", "t"], "config")


def test_triggers_made_before_are_recorded():
    check_eq(psql("SELECT table_name, trigger_name, enabled FROM stripepay.user_trigger", db=UPDATED),
             [["payment_flow", "shop_paid", "O"]], "stripepay.user_trigger after the update")


# --- the updated database works ------------------------------------------------

def test_signed_event_applies_after_update():
    obj = {"id": "cs_up_open", "object": "checkout.session", "status": "complete",
           "payment_status": "paid", "payment_intent": "pi_up_open", "amount_total": 900,
           "currency": "eur", "client_reference_id": "101", "livemode": False,
           "metadata": {}, "mode": "payment"}
    got = ingest_in(UPDATED, event("evt_up_after", "checkout.session.completed", obj))
    check_eq(got, ["evt_up_after", "f"], "ingest")
    check_eq(psql("SELECT status, payment_intent_id FROM stripepay.payment_record "
                  "WHERE order_id = 101", db=UPDATED)[0], ["SUCCESSFUL", "pi_up_open"],
             "the payment the event is about")
    check_eq(psql("SELECT payment_status, amount, currency, already_processed "
                  "FROM stripepay.payment_flow WHERE event_id = 'evt_up_after'", db=UPDATED),
             [["SUCCESSFUL", "900", "eur", "f"]], "its payment_flow row")


def test_pay_sync_and_refund_after_update():
    """A payment made, learnt by sync_events, refunded, and the refund
    learnt: every path of the library on the updated schema."""
    emulator_reset()
    pid, session = psql("SELECT id, checkout_session_id FROM stripepay.stripe_pay(200, 'usd', 1500)",
                        db=UPDATED)[0]
    emulator("POST", f"/_emulator/checkout/sessions/{session}/complete", {"outcome": "paid"})
    fetched, applied = psql("SELECT fetched, applied FROM stripepay.sync_events(now() - '1 day'::interval)",
                            db=UPDATED)[0]
    check(int(fetched) > 0 and int(applied) > 0, f"sync fetched {fetched}, applied {applied}")
    check_eq(psql(f"SELECT status FROM stripepay.payment_record WHERE id = {pid}", db=UPDATED)[0][0],
             "SUCCESSFUL", "the payment after the sync")
    check_eq(psql(f"SELECT status, amount FROM stripepay.stripe_refund({pid}, 300)", db=UPDATED),
             [["PENDING", "300"]], "the refund")
    expect_error(f"SELECT stripepay.stripe_refund({pid}, 1201)", "SP014", db=UPDATED)
    psql("SELECT 1 FROM stripepay.sync_events(now() - '1 day'::interval)", db=UPDATED)
    check_eq(psql(f"SELECT status FROM stripepay.refund WHERE payment_id = {pid}", db=UPDATED),
             [["SUCCEEDED"]], "the refund after the second sync")
    check_eq(psql(f"SELECT amount_refunded FROM stripepay.payment_record WHERE id = {pid}",
                  db=UPDATED)[0][0], "300", "amount_refunded")
    # the renewal kept from 0.1.0: its pending refund still counts
    renewal = psql("SELECT id FROM stripepay.payment_record WHERE order_id = 502", db=UPDATED)[0][0]
    expect_error(f"SELECT stripepay.stripe_refund({renewal}, 1301)", "SP014", db=UPDATED)


def test_prune_is_there_after_update():
    rows = psql("CALL stripepay.prune_events('400 days')", db=UPDATED)
    check_eq(rows[0][0], "0", "nothing older than 400 days to delete")


# --- the scripts and the library ----------------------------------------------

def test_released_scripts_are_unchanged():
    with open(RELEASED) as f:
        released = [line.split() for line in f if line.strip()]
    check(released, "sql/released.sha256 lists no script")
    for digest, name in released:
        with open(os.path.join(ROOT, "sql", name), "rb") as f:
            check_eq(hashlib.sha256(f.read()).hexdigest(), digest, f"sha256 of sql/{name}")


def test_every_version_reaches_the_default_one():
    """Each released version has a path of update scripts to default_version,
    and the fresh script of default_version is not a released one: changing
    it then needs no upgrade script, and test_updated_catalog_is_the_fresh_one
    holds the update script to it."""
    with open(os.path.join(ROOT, "stripepay.control")) as f:
        default = re.search(r"default_version\s*=\s*'([^']+)'", f.read()).group(1)
    with open(RELEASED) as f:
        versions = [re.match(r"stripepay--(.+)\.sql$", line.split()[1]).group(1) for line in f
                    if line.strip()]
    check(default not in versions, f"default_version {default} is released: make a new version")
    updates = {tuple(re.match(r"stripepay--(.+)--(.+)\.sql$", n).groups())
               for n in os.listdir(os.path.join(ROOT, "sql")) if re.match(r"stripepay--.+--.+\.sql$", n)}
    for v in versions:
        reached, frontier = {v}, [v]
        while frontier:
            step = frontier.pop()
            for a, b in updates:
                if a == step and b not in reached:
                    reached.add(b)
                    frontier.append(b)
        check(default in reached, f"no update path from {v} to {default}")
    rows = psql("SELECT version FROM pg_available_extension_versions WHERE name = 'stripepay' "
                "ORDER BY version", db="postgres")
    check_eq(sorted(r[0] for r in rows), sorted(set(versions) | {default}), "versions installed")


def test_library_refuses_an_older_schema():
    db = "sp_upgrade_old"
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
    psql(f"CREATE DATABASE {db}", db="postgres")
    psql("CREATE EXTENSION stripepay VERSION '0.1.0'", db=db)
    err = expect_error("SELECT * FROM stripepay.stripe_pay(1, 'usd', 100)", "SP009", db=db)
    check("ALTER EXTENSION stripepay UPDATE" in err.stderr, f"no hint to update:\n{err.stderr}")
    check_eq(psql("SELECT count(*) FROM stripepay.payment_record", db=db)[0][0], "0",
             "rows made by the refused call")
    psql(f"DROP DATABASE {db} WITH (FORCE)", db="postgres")


if __name__ == "__main__":
    setup()
    # in this order: the rows are looked at before the updated database works on
    run("upgrade", [
        test_updated_catalog_is_the_fresh_one,
        test_catalog_query_tells_a_change,
        test_column_order_is_the_fresh_one,
        test_rows_are_kept,
        test_changed_from_moves_into_columns,
        test_flow_rows_gain_amount_and_currency,
        test_settings_survive_and_new_ones_default,
        test_triggers_made_before_are_recorded,
        test_signed_event_applies_after_update,
        test_pay_sync_and_refund_after_update,
        test_prune_is_there_after_update,
        test_released_scripts_are_unchanged,
        test_every_version_reaches_the_default_one,
        test_library_refuses_an_older_schema,
    ])
