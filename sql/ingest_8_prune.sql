-- prune_events: webhook_event rows older than the window are deleted, in
-- batches each committed on its own, except the events that wait for a
-- payment and those a row's state came from (created at or after that
-- row's event_created).  The window is at least 30 days and the webhook
-- tolerance (SP031).  Times here are relative to now: events are made
-- "days ago".  Then the ingest_* tests clean up after themselves.
\set VERBOSITY default
LOAD 'stripepay';
SET stripepay.api_base = 'http://127.0.0.1:9';	-- nothing here may reach Stripe
SET stripepay.max_retries = 0;
SET stripepay.notify_worker = off;
CALL regress_sp.reset();

-- t (seconds after T0) of a time so many days ago
CREATE FUNCTION pg_temp.ago(days numeric) RETURNS bigint LANGUAGE sql STABLE AS $$
	SELECT extract(epoch FROM now())::bigint - 1793200000 - (days * 86400)::bigint
$$;
CREATE TEMP VIEW events_by_age AS
SELECT e.id, e.type, e.payment_id, e.refund_id, e.recurring_payment_id AS sub_id,
	   round(extract(epoch FROM now() - e.created) / 86400) AS days_ago,
	   EXISTS (SELECT FROM stripepay.waiting_event w WHERE w.event_id = e.id) AS waiting
  FROM stripepay.webhook_event e;

-- A payment (order 801): failed 45 days ago, paid 40 days ago; its state
-- comes from the success.
INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, payment_intent_id, created_by)
VALUES (801, 'usd', 1000, 'payment_intent', 'pi_k1', 'regress_shop') RETURNING id AS k1 \gset
SELECT * FROM regress_sp.ingest(regress_sp.ev('payment_intent.payment_failed', 'evt_k1_failed', pg_temp.ago(45),
	jsonb_build_object('id', 'pi_k1', 'metadata', jsonb_build_object('order_id', '801', 'stripepay_payment_id', :'k1'))));
SELECT * FROM regress_sp.ingest(regress_sp.ev('payment_intent.succeeded', 'evt_k1_paid', pg_temp.ago(40),
	jsonb_build_object('id', 'pi_k1', 'latest_charge', 'ch_k1',
					   'metadata', jsonb_build_object('order_id', '801', 'stripepay_payment_id', :'k1'))));
-- its refund: pending 39 days ago, succeeded 38 days ago; the refund's
-- state comes from the success (the pending event is newer than the
-- payment's state, and linked to the payment too)
SELECT * FROM regress_sp.ingest(regress_sp.ev('refund.created', 'evt_k1_refund_pending', pg_temp.ago(39),
	'{"id": "re_k1", "charge": "ch_k1", "payment_intent": "pi_k1", "amount": 100, "status": "pending", "metadata": {}}'));
SELECT * FROM regress_sp.ingest(regress_sp.ev('refund.created', 'evt_k1_refund_ok', pg_temp.ago(38),
	'{"id": "re_k1", "charge": "ch_k1", "payment_intent": "pi_k1", "amount": 100, "status": "succeeded", "metadata": {}}',
	NULL, 'refund.updated'));
-- A subscription (order 802): created 50 days ago, past_due 45 days ago.
INSERT INTO stripepay.recurring_payment (order_id, price_id, created_by)
VALUES (802, 'price_1SPayMonthlyPrice00001', 'regress_shop') RETURNING id AS k2 \gset
SELECT * FROM regress_sp.ingest(regress_sp.ev('customer.subscription.updated', 'evt_k2_created', pg_temp.ago(50),
	jsonb_build_object('id', 'sub_k2', 'status', 'active', 'cancel_at_period_end', false, 'cancel_at', null,
					   'metadata', jsonb_build_object('order_id', '802', 'stripepay_recurring_payment_id', :'k2')),
	'null', 'customer.subscription.created'));
SELECT * FROM regress_sp.ingest(regress_sp.ev('customer.subscription.updated', 'evt_k2_past_due', pg_temp.ago(45),
	jsonb_build_object('id', 'sub_k2', 'status', 'past_due', 'cancel_at_period_end', false, 'cancel_at', null,
					   'metadata', jsonb_build_object('order_id', '802', 'stripepay_recurring_payment_id', :'k2')),
	'{"status": "active"}'));
-- A refund 40 days ago of a payment the database never learnt of: it waits.
SELECT * FROM regress_sp.ingest(regress_sp.ev('refund.created', 'evt_k3_waiting', pg_temp.ago(40),
	'{"id": "re_k3", "charge": "ch_k3", "payment_intent": "pi_k3", "amount": 100, "status": "succeeded", "metadata": {}}'));
-- Events of no row: 40 days old, and (inserted directly) 95 and 100 days old.
SELECT * FROM regress_sp.ingest(regress_sp.ev('plan.created', 'evt_k4_plan', pg_temp.ago(40)));
INSERT INTO stripepay.webhook_event (id, type, livemode, created, payload)
VALUES ('evt_k4_customer', 'customer.created', false, now() - interval '95 days', '{}'),
	   ('evt_k4_product', 'product.created', false, now() - interval '100 days', '{}');
-- And a recent one.
SELECT * FROM regress_sp.ingest(regress_sp.ev('plan.created', 'evt_k5_recent', pg_temp.ago(1)));
SELECT * FROM events_by_age ORDER BY days_ago DESC, id;

-- K1. The window may not be shorter than 30 days and the webhook tolerance
-- (300 s): Stripe may still deliver or list such an event, which would be
-- applied as new.  The event_retention setting follows the same rule.
CALL stripepay.prune_events('29 days');
\echo :LAST_ERROR_SQLSTATE
CALL stripepay.prune_events('30 days');
\echo :LAST_ERROR_SQLSTATE
SELECT event_retention FROM stripepay.configure(event_retention => '10 days');
\echo :LAST_ERROR_SQLSTATE
-- it commits after each batch: not inside a transaction block
BEGIN;
CALL stripepay.prune_events('31 days');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- and it is for admins
SET ROLE regress_sp_relay;
CALL stripepay.prune_events('31 days');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS events FROM stripepay.webhook_event;

-- K2. By default the window is event_retention, 90 days: the two events
-- of no row older than that go.
SELECT event_retention FROM stripepay.config;
CALL stripepay.prune_events() \gset
SELECT :deleted AS deleted, :kept AS kept, :batches AS batches,
	   round(extract(epoch FROM now() - :'pruned_before'::timestamptz) / 86400) AS pruned_before_days_ago;
SELECT * FROM events_by_age ORDER BY days_ago DESC, id;

-- K3. A window of 31 days: the payment's failure (older than its state)
-- and the subscription's creation go, and the plan of no row; the rest
-- stays: the events the payment's, the refund's and the subscription's
-- states came from, the one that waits, and the recent one.
CALL stripepay.prune_events('31 days') \gset
SELECT :deleted AS deleted, :kept AS kept, :batches AS batches,
	   round(extract(epoch FROM now() - :'pruned_before'::timestamptz) / 86400) AS pruned_before_days_ago;
SELECT * FROM events_by_age ORDER BY days_ago DESC, id;
-- a second run deletes nothing
CALL stripepay.prune_events('31 days') \gset
SELECT :deleted AS deleted, :kept AS kept;

-- K4. event_retention sets the default window.
SELECT event_retention FROM stripepay.configure(event_retention => '37 days');
CALL stripepay.prune_events() \gset
SELECT :deleted AS deleted, :kept AS kept;
SELECT * FROM events_by_age ORDER BY days_ago DESC, id;
SELECT event_retention FROM stripepay.configure(event_retention => '90 days');

-- The rows whose state the kept events show are intact.
SELECT id, order_id, status, refunded, intent, charge FROM regress_sp.payments ORDER BY id;
SELECT id, payment_id, status FROM regress_sp.refunds ORDER BY id;
SELECT id, order_id, status FROM regress_sp.subscriptions ORDER BY id;

-- Clean-up of the ingest_* tests: their rows, triggers, helpers, settings
-- and roles.
CALL regress_sp.reset();
SELECT flow_role FROM stripepay.configure(flow_role => '');
DELETE FROM stripepay.webhook_secret WHERE endpoint IN ('default', 'payments')
	AND secret IN ('whsec_regressDefaultSecret0001', 'whsec_regressPaymentsSecret001');
SET client_min_messages = warning;
DROP SCHEMA regress_sp CASCADE;
DROP ROLE IF EXISTS regress_sp_relay;
DROP ROLE IF EXISTS regress_sp_flows;
DROP ROLE IF EXISTS regress_sp_super;
RESET client_min_messages;
SELECT tgname FROM pg_trigger
 WHERE tgrelid IN ('stripepay.payment_flow'::regclass, 'stripepay.refund_flow'::regclass,
				   'stripepay.subscription_flow'::regclass, 'stripepay.deduction_flow'::regclass,
				   'stripepay.webhook_event'::regclass)
   AND NOT tgisinternal;
SELECT count(*) AS roles_left FROM pg_roles
 WHERE rolname IN ('regress_sp_relay', 'regress_sp_flows', 'regress_sp_super');
