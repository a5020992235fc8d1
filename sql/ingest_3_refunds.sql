-- Refunds: refund.created / .updated / .failed and charge.refunded (the
-- pinned shape, and the 2022-08-01 shape with its embedded refunds); partial
-- and failed refunds and payment_record.amount_refunded; refunds that
-- arrive before their payment's events wait, and are applied when it
-- succeeds.  After each scenario: the refunds, the payment, the flows.
\set VERBOSITY default
LOAD 'stripepay';
SET stripepay.api_base = 'http://127.0.0.1:9';	-- nothing here may reach Stripe
SET stripepay.max_retries = 0;
SET stripepay.notify_worker = off;
CALL regress_sp.reset();


-- A payment as stripe_pay makes it (see ingest_2_payments).
CREATE FUNCTION pg_temp.pay(order_id bigint, flow text, n text, amount bigint DEFAULT 1000)
RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, checkout_session_id,
										  payment_intent_id, created_by)
	VALUES (order_id, 'usd', amount, flow, CASE WHEN flow = 'checkout' THEN 'cs_test_' || n END,
			CASE WHEN flow = 'payment_intent' THEN 'pi_' || n END, 'regress_shop')
	RETURNING id
$$;
-- payment_intent.succeeded of PaymentIntent pi_<n>, charge ch_<n>
CREATE FUNCTION pg_temp.paid(id text, t bigint, n text, order_id bigint, payment_id bigint)
RETURNS jsonb LANGUAGE sql AS $$
	SELECT regress_sp.ev('payment_intent.succeeded', id, t,
		jsonb_build_object('id', 'pi_' || n, 'latest_charge', 'ch_' || n,
						   'metadata', jsonb_build_object('order_id', order_id::text,
														  'stripepay_payment_id', payment_id::text)))
$$;
-- A refund.* event of refund re_<r> of the payment pi_<n> / ch_<n>;
-- metadata as stripe_refund sets it, or none (a dashboard refund).
CREATE FUNCTION pg_temp.refund(type text, id text, t bigint, r text, n text, amount bigint,
							   status text, metadata jsonb DEFAULT '{}', obj jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
	SELECT regress_sp.ev(CASE WHEN type = 'refund.failed' THEN 'refund.failed' ELSE 'refund.created' END,
		id, t,
		jsonb_build_object('id', 're_' || r, 'charge', 'ch_' || n, 'payment_intent', 'pi_' || n,
						   'amount', amount, 'status', status, 'metadata', metadata) || obj,
		CASE WHEN type = 'refund.created' THEN 'null' END::jsonb, type)
$$;
-- The refund row stripe_refund() makes once Stripe answered: PENDING, with
-- Stripe's id, counted in amount_refunded.
CREATE FUNCTION pg_temp.refund_row(p_payment bigint, p_amount bigint, p_stripe_id text)
RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO stripepay.refund (payment_id, order_id, currency, amount, stripe_refund_id, created_by)
	SELECT p.id, p.order_id, p.currency, p_amount, p_stripe_id, 'regress_admin'
	  FROM stripepay.payment_record p WHERE p.id = p_payment;
	UPDATE stripepay.payment_record p SET amount_refunded =
		(SELECT sum(r.amount) FROM stripepay.refund r
		  WHERE r.payment_id = p.id AND r.status IN ('PENDING', 'SUCCEEDED'))
	 WHERE p.id = p_payment;
	SELECT max(id) FROM stripepay.refund;
$$;
CREATE TEMP VIEW pay AS
SELECT id, order_id, status, amount, refunded, intent, charge, t FROM regress_sp.payments;

-- The paid payment most scenarios refund: order 301, 1000 usd.
SELECT pg_temp.pay(301, 'payment_intent', 'r1') AS p1 \gset
SELECT * FROM regress_sp.ingest(pg_temp.paid('evt_r_paid', 10, 'r1', 301, :p1));
SELECT * FROM regress_sp.flows();

-- R1. A refund made by stripe_refund (300): refund.created (pending) keeps
-- it PENDING and fires nothing; refund.updated (succeeded) makes it
-- SUCCEEDED and fires the refund flow; a second delivery changes nothing.
SELECT pg_temp.refund_row(:p1, 300, 're_r1') AS r1 \gset
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.created', 'evt_r1_created', 100, 'r1', 'r1', 300, 'pending',
	jsonb_build_object('stripepay_payment_id', :'p1', 'stripepay_refund_id', :'r1')));
SELECT * FROM regress_sp.refunds ORDER BY id;
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.updated', 'evt_r1_updated', 110, 'r1', 'r1', 300, 'succeeded',
	jsonb_build_object('stripepay_payment_id', :'p1', 'stripepay_refund_id', :'r1')));
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.updated', 'evt_r1_updated', 110, 'r1', 'r1', 300, 'succeeded',
	jsonb_build_object('stripepay_payment_id', :'p1', 'stripepay_refund_id', :'r1')));
SELECT * FROM regress_sp.refunds ORDER BY id;
SELECT * FROM pay WHERE id = :p1;
SELECT * FROM regress_sp.flows();

-- R2. A refund made in the dashboard (200, no metadata): recorded for the
-- payment it names (created_by stripe), SUCCEEDED, counted.
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.created', 'evt_r2_created', 120, 'r2', 'r1', 200, 'succeeded'));
SELECT * FROM regress_sp.refunds ORDER BY id;
SELECT * FROM pay WHERE id = :p1;
SELECT * FROM regress_sp.flows();

-- R3. Out of order: a dashboard refund's failure (t=140) arrives before its
-- success (t=130).  FAILED is final: the success does not bring it back,
-- and fires the flow with already_processed true.  It never counts.
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.failed', 'evt_r3_failed', 140, 'r3', 'r1', 100, 'failed'));
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.updated', 'evt_r3_updated', 130, 'r3', 'r1', 100, 'succeeded'));
SELECT * FROM regress_sp.refunds ORDER BY id;
SELECT * FROM pay WHERE id = :p1;
SELECT * FROM regress_sp.flows();

-- R4. A refund that succeeded fails later (refund.failed): FAILED, the
-- refund flow fires again, and it no longer counts.
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.failed', 'evt_r1_failed', 200, 'r1', 'r1', 300, 'failed',
	jsonb_build_object('stripepay_payment_id', :'p1', 'stripepay_refund_id', :'r1')));
SELECT * FROM regress_sp.refunds ORDER BY id;
SELECT * FROM pay WHERE id = :p1;
SELECT * FROM regress_sp.flows();

-- R5. A refund that needs the buyer's action, then is canceled: PENDING
-- (counted while it may still go through), then CANCELED (not counted).
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.created', 'evt_r5_created', 300, 'r5', 'r1', 250, 'requires_action'));
SELECT * FROM pay WHERE id = :p1;
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.updated', 'evt_r5_canceled', 310, 'r5', 'r1', 250, 'canceled'));
SELECT * FROM regress_sp.refunds ORDER BY id;
SELECT * FROM pay WHERE id = :p1;
SELECT * FROM regress_sp.flows();

-- R6. Made by a stripe_refund call whose transaction rolled back after
-- Stripe made the refund: its metadata names a refund row that does not
-- exist.  It is recorded, with its call's key kept in unclaimed_key for
-- the retry of that call to claim.
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.created', 'evt_r6_created', 320, 'r6', 'r1', 150, 'succeeded',
	jsonb_build_object('stripepay_payment_id', :'p1', 'stripepay_refund_id', '77',
					   'stripepay_refund_key', 'stripepay-1-2-3-refund-1-200-150')));
SELECT * FROM regress_sp.refunds WHERE stripe_refund_id = 're_r6';
SELECT * FROM pay WHERE id = :p1;
SELECT * FROM regress_sp.flows();

-- R7. A refund row that does not know its Stripe id yet is found by the
-- id stripe_refund put in the refund's metadata, and learns it.
SELECT pg_temp.refund_row(:p1, 100, NULL) AS r7 \gset
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.created', 'evt_r7_created', 330, 'r7', 'r1', 100, 'succeeded',
	jsonb_build_object('stripepay_payment_id', :'p1', 'stripepay_refund_id', :'r7')));
SELECT * FROM regress_sp.refunds WHERE id = :r7;
SELECT * FROM pay WHERE id = :p1;
SELECT * FROM regress_sp.flows();

-- R8. charge.refunded in the pinned shape names no refund: it is recorded
-- and linked to the payment, and changes nothing.
SELECT * FROM regress_sp.ingest(regress_sp.ev('charge.refunded', 'evt_r8_charge_refunded', 340,
	'{"id": "ch_r1", "payment_intent": "pi_r1", "amount_refunded": 650, "metadata": {}}'));
SELECT * FROM pay WHERE id = :p1;
SELECT * FROM regress_sp.flows();

-- R9. A refund before its payment's events: the payment (order 302) knows
-- only its Checkout Session, so the refund, which names the PaymentIntent
-- and the charge, waits.  When checkout.session.completed makes the
-- payment SUCCESSFUL and tells its PaymentIntent, the refund is applied in
-- the same transaction, after the payment's own flow.
SELECT pg_temp.pay(302, 'checkout', 'r9') AS p9 \gset
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.created', 'evt_r9_created', 100, 'r9', 'r9', 400, 'succeeded'));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT count(*) AS refunds_of_302 FROM stripepay.refund WHERE order_id = 302;
SELECT * FROM regress_sp.ingest(regress_sp.ev('checkout.session.completed', 'evt_r9_completed', 90,
	jsonb_build_object('id', 'cs_test_r9', 'payment_intent', 'pi_r9', 'client_reference_id', '302',
					   'metadata', jsonb_build_object('order_id', '302', 'stripepay_payment_id', :'p9'))));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT * FROM regress_sp.refunds WHERE order_id = 302;
SELECT * FROM pay WHERE id = :p9;
SELECT * FROM regress_sp.flows();
-- the PaymentIntent's success then brings the charge; the refund is not applied twice
SELECT * FROM regress_sp.ingest(pg_temp.paid('evt_r9_paid', 91, 'r9', 302, :p9));
SELECT * FROM regress_sp.refunds WHERE order_id = 302;
SELECT * FROM pay WHERE id = :p9;
SELECT * FROM regress_sp.flows();

-- R10. A refund of a payment that is known but has not succeeded here yet
-- (PENDING, its PaymentIntent known) waits too, and is applied by the
-- payment's success.
SELECT pg_temp.pay(303, 'payment_intent', 'r10') AS p10 \gset
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.created', 'evt_r10_created', 100, 'r10', 'r10', 300, 'succeeded'));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT * FROM regress_sp.ingest(pg_temp.paid('evt_r10_paid', 90, 'r10', 303, :p10));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT * FROM regress_sp.refunds WHERE order_id = 303;
SELECT * FROM pay WHERE id = :p10;
SELECT * FROM regress_sp.flows();

-- R11. A charge.refunded (pinned shape) before its payment's events: the
-- payment knows only its Checkout Session, so the event waits, and is
-- linked once the payment has learnt its PaymentIntent and succeeded.
SELECT pg_temp.pay(304, 'checkout', 'r11') AS p11 \gset
SELECT * FROM regress_sp.ingest(regress_sp.ev('charge.refunded', 'evt_r11_charge_refunded', 100,
	'{"id": "ch_r11", "payment_intent": "pi_r11", "metadata": {}}'));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT * FROM regress_sp.ingest(regress_sp.ev('checkout.session.completed', 'evt_r11_completed', 90,
	jsonb_build_object('id', 'cs_test_r11', 'payment_intent', 'pi_r11', 'client_reference_id', '304',
					   'metadata', jsonb_build_object('order_id', '304', 'stripepay_payment_id', :'p11'))));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT id, type, order_id, payment_id, refund_id FROM regress_sp.events WHERE id LIKE 'evt_r11%' ORDER BY id;
SELECT * FROM regress_sp.flows();

-- R12. charge.refunded in the 2022-08-01 shape embeds the charge's refunds:
-- each is applied (one pending, one succeeded; 500 + 500 of 1000); the
-- pending one's later success is known by its id.
SELECT pg_temp.pay(305, 'payment_intent', 'r12') AS p12 \gset
SELECT * FROM regress_sp.ingest(pg_temp.paid('evt_r12_paid', 10, 'r12', 305, :p12));
SELECT regress_sp.ev('charge.refunded.2022-08-01', 'evt_r12_charge_refunded', 100,
	'{"id": "ch_r12", "payment_intent": "pi_r12", "metadata": {"order_id": "305"}}') AS ev \gset
SELECT jsonb_set(jsonb_set(jsonb_set(jsonb_set(:'ev'::jsonb,
	'{data,object,refunds,data,0,id}', '"re_r12a"'), '{data,object,refunds,data,1,id}', '"re_r12b"'),
	'{data,object,refunds,data,0,metadata}', '{}'), '{data,object,refunds,data,1,metadata}', '{}') AS ev \gset
SELECT * FROM regress_sp.ingest(:'ev');
SELECT * FROM regress_sp.refunds WHERE order_id = 305 ORDER BY id;
SELECT * FROM pay WHERE id = :p12;
SELECT * FROM regress_sp.ingest(pg_temp.refund('refund.updated', 'evt_r12a_updated', 110, 'r12a', 'r12', 500, 'succeeded'));
SELECT * FROM regress_sp.refunds WHERE order_id = 305 ORDER BY id;
SELECT * FROM pay WHERE id = :p12;
SELECT * FROM regress_sp.flows();

-- Every event recorded once, linked to its refund, payment and order.
SELECT id, type, order_id, payment_id, refund_id, object_id, t FROM regress_sp.events ORDER BY id;
