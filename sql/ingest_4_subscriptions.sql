-- Subscriptions: the Checkout Session that starts one and
-- customer.subscription.created / .updated / .deleted / .paused / .resumed,
-- with cancel_at, cancel_at_period_end and previous_attributes; events out
-- of order; two changes in one second, ordered by previous_attributes; a
-- change and its undoing in one second.  After each scenario: the
-- recurring_payment row and the subscription flows fired.
\set VERBOSITY default
LOAD 'stripepay';
SET stripepay.api_base = 'http://127.0.0.1:9';	-- nothing here may reach Stripe
SET stripepay.max_retries = 0;
SET stripepay.notify_worker = off;
CALL regress_sp.reset();

-- A subscription as stripe_subscribe makes it: INCOMPLETE, with the
-- Checkout Session cs_test_<n>.
CREATE FUNCTION pg_temp.subscribe(order_id bigint, n text) RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO stripepay.recurring_payment (order_id, price_id, checkout_session_id, created_by)
	VALUES (order_id, 'price_1SPayMonthlyPrice00001', 'cs_test_' || n, 'regress_shop')
	RETURNING id
$$;
-- An event of Subscription sub_<n> (customer cus_<n>), whose metadata names
-- the order and the recurring_payment as stripe_subscribe sets them; in its
-- month `period` (30 days from T0: month 1 is t=0 to t=2592000); times as t.
CREATE FUNCTION pg_temp.sub(type text, id text, t bigint, n text, order_id bigint, rp bigint,
							status text, period int DEFAULT 1, cape boolean DEFAULT false,
							cancel_at bigint DEFAULT NULL, canceled_at bigint DEFAULT NULL,
							prev jsonb DEFAULT 'null', obj jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_set(jsonb_set(jsonb_set(
		regress_sp.ev(CASE WHEN type = 'customer.subscription.deleted' THEN type
						   ELSE 'customer.subscription.updated' END, id, t,
			jsonb_build_object('id', 'sub_' || n, 'status', status, 'customer', 'cus_' || n,
							   'cancel_at_period_end', cape,
							   'cancel_at', 1793200000 + cancel_at, 'canceled_at', 1793200000 + canceled_at,
							   'ended_at', CASE WHEN status = 'canceled' THEN 1793200000 + canceled_at END,
							   'metadata', jsonb_strip_nulls(jsonb_build_object(
									'order_id', order_id::text, 'stripepay_recurring_payment_id', rp::text)))
			|| obj, prev, type),
		'{data,object,items,data,0,current_period_start}', to_jsonb(1793200000 + (period - 1) * 2592000)),
		'{data,object,items,data,0,current_period_end}', to_jsonb(1793200000 + period * 2592000)),
		'{data,object,items,data,0,subscription}', to_jsonb('sub_' || n))
$$;
CREATE TEMP VIEW sub AS
SELECT id, order_id, status, subscription_id, customer_id, period_start, period_end,
	   cancel_at_period_end AS cape, cancel_at, canceled_at, changed_from_status, changed_from_cape, t,
	   created_by
  FROM regress_sp.subscriptions;

-- S1. A subscription's life (order 401).  customer.subscription.created
-- comes first, and finds the row by the id in its metadata (INCOMPLETE:
-- the flow fires, nothing changed); the Checkout Session's completion
-- brings the customer and fires nothing (a session has no status).
SELECT pg_temp.subscribe(401, 's1') AS s1 \gset
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.created', 'evt_s1_created', 0, 's1', 401, :s1,
	'incomplete'));
SELECT * FROM regress_sp.ingest(regress_sp.ev('checkout.session.completed.subscription', 'evt_s1_completed', 1,
	jsonb_build_object('id', 'cs_test_s1', 'subscription', 'sub_s1', 'client_reference_id', '401',
					   'customer', '{"id": "cus_s1", "object": "customer"}'::jsonb,
					   'metadata', jsonb_build_object('order_id', '401', 'stripepay_recurring_payment_id', :'s1'))));
SELECT * FROM sub WHERE order_id = 401;
-- the first invoice is paid: active
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s1_active', 2, 's1', 401, :s1,
	'active', prev => '{"status": "incomplete"}'));
SELECT * FROM sub WHERE order_id = 401;
-- canceled at the period's end (cancel_at is then the period's end), and
-- the cancellation undone: cancel_at and canceled_at are null again, as
-- Stripe's Subscription says
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s1_cancel_at_end', 100, 's1', 401, :s1,
	'active', cape => true, cancel_at => 2592000, canceled_at => 100,
	prev => '{"cancel_at_period_end": false, "cancel_at": null, "canceled_at": null}'));
SELECT * FROM sub WHERE order_id = 401;
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s1_resume', 200, 's1', 401, :s1,
	'active', prev => jsonb_build_object('cancel_at_period_end', true, 'cancel_at', 1793200000 + 2592000,
										 'canceled_at', 1793200000 + 100)));
SELECT * FROM sub WHERE order_id = 401;
-- canceled at a date (cancel_at without cancel_at_period_end)
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s1_cancel_at_date', 300, 's1', 401, :s1,
	'active', cancel_at => 1000000, canceled_at => 300, prev => '{"cancel_at": null, "canceled_at": null}'));
SELECT * FROM sub WHERE order_id = 401;
-- paused, resumed
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.paused', 'evt_s1_paused', 400, 's1', 401, :s1,
	'paused', cancel_at => 1000000, canceled_at => 300, prev => '{"status": "active"}'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.resumed', 'evt_s1_resumed', 500, 's1', 401, :s1,
	'active', cancel_at => 1000000, canceled_at => 300, prev => '{"status": "paused"}'));
SELECT * FROM sub WHERE order_id = 401;
-- deleted: CANCELED, final; a second delivery changes nothing, and an older
-- update that arrives afterwards does not bring it back (its flow row says
-- already_processed)
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.deleted', 'evt_s1_deleted', 600, 's1', 401, :s1,
	'canceled', canceled_at => 600));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.deleted', 'evt_s1_deleted', 600, 's1', 401, :s1,
	'canceled', canceled_at => 600));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s1_late_update', 550, 's1', 401, :s1,
	'active', cancel_at => 1000000, canceled_at => 300, prev => '{"cancel_at": null}'));
SELECT * FROM sub WHERE order_id = 401;
SELECT * FROM regress_sp.flows();

-- S2. The Checkout Session that would have started a subscription expires:
-- INCOMPLETE_EXPIRED, final.
SELECT pg_temp.subscribe(402, 's2') AS s2 \gset
SELECT * FROM regress_sp.ingest(regress_sp.ev('checkout.session.expired', 'evt_s2_expired', 100,
	jsonb_build_object('id', 'cs_test_s2', 'mode', 'subscription', 'client_reference_id', '402',
					   'metadata', jsonb_build_object('order_id', '402', 'stripepay_recurring_payment_id', :'s2'))));
SELECT * FROM sub WHERE order_id = 402;
SELECT * FROM regress_sp.flows();

-- S3. An older update after a newer one: past_due (t=300) arrives first,
-- then the update of t=200 (active): the newer state stands; then the
-- payment goes through (t=400): active.
SELECT pg_temp.subscribe(403, 's3') AS s3 \gset
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.created', 'evt_s3_created', 100, 's3', 403, :s3,
	'active'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s3_past_due', 300, 's3', 403, :s3,
	'past_due', prev => '{"status": "active"}'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s3_older', 200, 's3', 403, :s3,
	'active', prev => '{"default_payment_method": null}'));
SELECT * FROM sub WHERE order_id = 403;
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s3_recovered', 400, 's3', 403, :s3,
	'active', prev => '{"status": "past_due"}'));
SELECT * FROM sub WHERE order_id = 403;
SELECT * FROM regress_sp.flows();

-- S4. Two changes in one second: at the renewal Stripe moves the period
-- (status still active; previous_attributes name the period), then the
-- renewal's payment is declined (past_due; previous_attributes status
-- active).  Whatever order they arrive in, the subscription ends past_due
-- in the new period: the change whose state the other one changed from
-- (active) is the older.
-- S4a: in the order they were made (order 404)
SELECT pg_temp.subscribe(404, 's4a') AS s4a \gset
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.created', 'evt_s4a_created', 100, 's4a', 404, :s4a,
	'active'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s4a_period', 2592000, 's4a', 404, :s4a,
	'active', period => 2,
	prev => jsonb_build_object('items', jsonb_build_object('data', jsonb_build_array(jsonb_build_object(
		'current_period_start', 1793200000, 'current_period_end', 1793200000 + 2592000)))),
	obj => '{"latest_invoice": "in_s4a_2"}'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s4a_past_due', 2592000, 's4a', 404, :s4a,
	'past_due', period => 2, prev => '{"status": "active"}', obj => '{"latest_invoice": "in_s4a_2"}'));
SELECT * FROM sub WHERE order_id = 404;
SELECT * FROM regress_sp.flows();
-- S4b: the decline first (order 405)
SELECT pg_temp.subscribe(405, 's4b') AS s4b \gset
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.created', 'evt_s4b_created', 100, 's4b', 405, :s4b,
	'active'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s4b_past_due', 2592000, 's4b', 405, :s4b,
	'past_due', period => 2, prev => '{"status": "active"}', obj => '{"latest_invoice": "in_s4b_2"}'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s4b_period', 2592000, 's4b', 405, :s4b,
	'active', period => 2,
	prev => jsonb_build_object('items', jsonb_build_object('data', jsonb_build_array(jsonb_build_object(
		'current_period_start', 1793200000, 'current_period_end', 1793200000 + 2592000)))),
	obj => '{"latest_invoice": "in_s4b_2"}'));
SELECT * FROM sub WHERE order_id = 405;
SELECT * FROM regress_sp.flows();

-- S5. A change and its undoing in one second (cancel at the period's end,
-- then resume): nothing tells which came first, and the later arrival wins.
-- S5a: cancel, then resume (order 406): not canceling
SELECT pg_temp.subscribe(406, 's5a') AS s5a \gset
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.created', 'evt_s5a_created', 100, 's5a', 406, :s5a,
	'active'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s5a_cancel', 200, 's5a', 406, :s5a,
	'active', cape => true, cancel_at => 2592000, canceled_at => 200,
	prev => '{"cancel_at_period_end": false, "cancel_at": null, "canceled_at": null}'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s5a_resume', 200, 's5a', 406, :s5a,
	'active', prev => jsonb_build_object('cancel_at_period_end', true, 'cancel_at', 1793200000 + 2592000,
										 'canceled_at', 1793200000 + 200)));
SELECT * FROM sub WHERE order_id = 406;
SELECT * FROM regress_sp.flows();
-- S5b: resume, then cancel (order 407): canceling at the period's end
SELECT pg_temp.subscribe(407, 's5b') AS s5b \gset
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.created', 'evt_s5b_created', 100, 's5b', 407, :s5b,
	'active'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s5b_resume', 200, 's5b', 407, :s5b,
	'active', prev => jsonb_build_object('cancel_at_period_end', true, 'cancel_at', 1793200000 + 2592000,
										 'canceled_at', 1793200000 + 200)));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s5b_cancel', 200, 's5b', 407, :s5b,
	'active', cape => true, cancel_at => 2592000, canceled_at => 200,
	prev => '{"cancel_at_period_end": false, "cancel_at": null, "canceled_at": null}'));
SELECT * FROM sub WHERE order_id = 407;
SELECT * FROM regress_sp.flows();

-- S6. A subscription made elsewhere (the dashboard) for an order: recorded
-- from its event (created_by stripe), with its price; without an order in
-- its metadata it is recorded as an event only.
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.created', 'evt_s6_created', 100, 's6', 408, NULL,
	'trialing'));
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.created', 'evt_s6b_created', 100, 's6b', NULL, NULL,
	'active'));
SELECT id, order_id, status, price_id, subscription_id, customer_id, period_start, period_end, created_by
  FROM regress_sp.subscriptions WHERE created_by = 'stripe';
SELECT * FROM regress_sp.flows();

-- S7. The 2024-06-20 shape: the period at the top level, the price as plan.
SELECT pg_temp.subscribe(409, 's7') AS s7 \gset
SELECT regress_sp.ev('customer.subscription.updated.2024-06-20', 'evt_s7_updated', 100,
	jsonb_build_object('id', 'sub_s7', 'customer', 'cus_s7', 'cancel_at_period_end', false,
					   'cancel_at', null, 'canceled_at', null,
					   'current_period_start', 1793200000, 'current_period_end', 1793200000 + 2592000,
					   'metadata', jsonb_build_object('order_id', '409', 'stripepay_recurring_payment_id', :'s7')),
	'{"status": "incomplete"}') AS ev \gset
SELECT * FROM regress_sp.ingest(:'ev');
SELECT * FROM sub WHERE order_id = 409;
SELECT price_id FROM stripepay.recurring_payment WHERE order_id = 409;
SELECT * FROM regress_sp.flows();

-- S8. A status newer than this version knows: the event is recorded and
-- linked, and changes nothing, nor fires anything.
SELECT * FROM regress_sp.ingest(pg_temp.sub('customer.subscription.updated', 'evt_s3_unknown', 500, 's3', 403, :s3,
	'suspended_for_review', prev => '{"status": "active"}'));
SELECT * FROM sub WHERE order_id = 403;
SELECT * FROM regress_sp.flows();

-- Every event recorded once, linked to its subscription and order.
SELECT id, type, order_id, sub_id, object_id, t FROM regress_sp.events ORDER BY id;
