-- One-time payments: every Checkout Session and PaymentIntent event, in
-- order and out of order, duplicates, and payments the database does not
-- know.  After each scenario: the payment row and the payment flows fired.
\set VERBOSITY default
LOAD 'stripepay';
SET stripepay.api_base = 'http://127.0.0.1:9';	-- nothing here may reach Stripe
SET stripepay.max_retries = 0;
SET stripepay.notify_worker = off;
CALL regress_sp.reset();


-- A payment as stripe_pay makes it: PENDING, with its Checkout Session
-- cs_test_<n> (flow checkout) or its PaymentIntent pi_<n> (payment_intent).
CREATE FUNCTION pg_temp.pay(order_id bigint, flow text, n text, amount bigint DEFAULT 1000)
RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, checkout_session_id,
										  payment_intent_id, created_by)
	VALUES (order_id, 'usd', amount, flow, CASE WHEN flow = 'checkout' THEN 'cs_test_' || n END,
			CASE WHEN flow = 'payment_intent' THEN 'pi_' || n END, 'regress_shop')
	RETURNING id
$$;
-- An event made from fixture base, of Checkout Session cs_test_<n>
-- (PaymentIntent pi_<n>), whose metadata names the order and the payment
-- as stripe_pay sets them.
CREATE FUNCTION pg_temp.session(base text, id text, t bigint, n text, order_id bigint,
								payment_id bigint, obj jsonb DEFAULT '{}', type text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
	SELECT regress_sp.ev(base, id, t,
		jsonb_build_object('id', 'cs_test_' || n, 'payment_intent', 'pi_' || n,
						   'client_reference_id', order_id::text,
						   'metadata', jsonb_strip_nulls(jsonb_build_object(
								'order_id', order_id::text, 'stripepay_payment_id', payment_id::text)))
		|| obj, NULL, type)
$$;
-- An event of PaymentIntent pi_<n> (charge ch_<n>), metadata as above.
CREATE FUNCTION pg_temp.intent(base text, id text, t bigint, n text, order_id bigint,
							   payment_id bigint, obj jsonb DEFAULT '{}', type text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
	SELECT regress_sp.ev(base, id, t,
		jsonb_build_object('id', 'pi_' || n, 'latest_charge', 'ch_' || n,
						   'metadata', jsonb_strip_nulls(jsonb_build_object(
								'order_id', order_id::text, 'stripepay_payment_id', payment_id::text)))
		|| obj, NULL, type)
$$;
CREATE TEMP VIEW pay AS
SELECT id, order_id, status, amount, session, intent, charge, failure_code, failure_message, t, created_by
  FROM regress_sp.payments;

-- P1. A paid Checkout: checkout.session.completed (paid) makes the payment
-- SUCCESSFUL and fires the flow (already_processed false); the PaymentIntent's
-- own success is a second signal of the same outcome (true), and brings the
-- charge; a second delivery of an event changes nothing and fires nothing.
SELECT pg_temp.pay(101, 'checkout', 'p1') AS p1 \gset
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p1_completed', 100, 'p1', 101, :p1));
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p1_succeeded', 100, 'p1', 101, :p1));
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p1_completed', 100, 'p1', 101, :p1));
SELECT * FROM pay WHERE order_id = 101;
SELECT * FROM regress_sp.flows();

-- P2. An asynchronous method (a bank debit): the completed session is
-- unpaid, the payment stays PENDING and no flow fires; the later
-- checkout.session.async_payment_succeeded makes it SUCCESSFUL.
SELECT pg_temp.pay(102, 'checkout', 'p2') AS p2 \gset
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p2_completed', 100, 'p2', 102, :p2,
	'{"payment_status": "unpaid"}'));
SELECT * FROM pay WHERE order_id = 102;
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p2_async_ok', 200, 'p2', 102, :p2,
	'{"payment_status": "paid"}', 'checkout.session.async_payment_succeeded'));
SELECT * FROM pay WHERE order_id = 102;
SELECT * FROM regress_sp.flows();

-- P3. The asynchronous payment fails: checkout.session.async_payment_failed
-- makes it FAILED (no reason in a session: payment_failed).  Stripe also
-- sends payment_intent.payment_failed for the same failure, which brings
-- its code and message: a second signal of an outcome already known, so
-- its flow row says already_processed (never a second false one).
SELECT pg_temp.pay(103, 'checkout', 'p3') AS p3 \gset
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p3_completed', 100, 'p3', 103, :p3,
	'{"payment_status": "unpaid"}'));
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p3_async_failed', 200, 'p3', 103, :p3,
	'{"payment_status": "unpaid"}', 'checkout.session.async_payment_failed'));
SELECT * FROM pay WHERE order_id = 103;
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.payment_failed', 'evt_p3_pi_failed', 200, 'p3', 103, :p3,
	'{"last_payment_error": {"code": "payment_intent_payment_attempt_failed", "decline_code": null, "message": "The bank declined the debit."}}'));
SELECT * FROM pay WHERE order_id = 103;
SELECT * FROM regress_sp.flows();

-- P4. The buyer never paid: checkout.session.expired makes it CANCELED;
-- the PaymentIntent's cancellation that follows is the same outcome.
SELECT pg_temp.pay(104, 'checkout', 'p4') AS p4 \gset
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.expired', 'evt_p4_expired', 100, 'p4', 104, :p4));
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.canceled', 'evt_p4_pi_canceled', 101, 'p4', 104, :p4));
SELECT * FROM pay WHERE order_id = 104;
SELECT * FROM regress_sp.flows();

-- P5. The payment_intent flow (Stripe Elements): processing keeps it
-- PENDING; a declined card makes it FAILED with the decline code and
-- message; a retry with another card is processing again (PENDING, the
-- failure cleared), then succeeds.
SELECT pg_temp.pay(105, 'payment_intent', 'p5') AS p5 \gset
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p5_processing', 100, 'p5', 105, :p5,
	'{"status": "processing"}', 'payment_intent.processing'));
SELECT * FROM pay WHERE order_id = 105;
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.payment_failed', 'evt_p5_failed', 110, 'p5', 105, :p5));
SELECT * FROM pay WHERE order_id = 105;
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p5_processing2', 120, 'p5', 105, :p5,
	'{"status": "processing"}', 'payment_intent.processing'));
SELECT * FROM pay WHERE order_id = 105;
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p5_succeeded', 130, 'p5', 105, :p5));
SELECT * FROM pay WHERE order_id = 105;
SELECT * FROM regress_sp.flows();

-- P6. payment_intent.canceled: CANCELED.
SELECT pg_temp.pay(106, 'payment_intent', 'p6') AS p6 \gset
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.canceled', 'evt_p6_canceled', 100, 'p6', 106, :p6));
SELECT * FROM pay WHERE order_id = 106;
SELECT * FROM regress_sp.flows();

-- P7. Out of order: the success arrives first, then an older failure (of
-- an earlier attempt, with its own declined charge) and an older
-- processing: SUCCESSFUL is never left, and the charge stays the one that
-- paid.  The failure still fires the flow, with the status that stands
-- and already_processed true.
SELECT pg_temp.pay(107, 'payment_intent', 'p7') AS p7 \gset
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p7_succeeded', 200, 'p7', 107, :p7));
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.payment_failed', 'evt_p7_failed', 100, 'p7', 107, :p7,
	'{"latest_charge": "ch_p7_declined"}'));
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p7_processing', 50, 'p7', 107, :p7,
	'{"status": "processing", "latest_charge": null}', 'payment_intent.processing'));
SELECT * FROM pay WHERE order_id = 107;
SELECT * FROM regress_sp.flows();

-- P8. In order: failed (a declined charge), then succeeded with another
-- card (another charge): SUCCESSFUL, the failure cleared.
SELECT pg_temp.pay(108, 'payment_intent', 'p8') AS p8 \gset
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.payment_failed', 'evt_p8_failed', 100, 'p8', 108, :p8,
	'{"latest_charge": "ch_p8_declined"}'));
SELECT * FROM pay WHERE order_id = 108;
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p8_succeeded', 200, 'p8', 108, :p8));
SELECT * FROM pay WHERE order_id = 108;
SELECT * FROM regress_sp.flows();

-- P9. A failure and a success in the same second, the success first: the
-- state further along wins.
SELECT pg_temp.pay(109, 'payment_intent', 'p9') AS p9 \gset
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p9_succeeded', 100, 'p9', 109, :p9));
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.payment_failed', 'evt_p9_failed', 100, 'p9', 109, :p9));
SELECT * FROM pay WHERE order_id = 109;
SELECT * FROM regress_sp.flows();

-- P10. A payment that succeeded after its session expired: CANCELED gives
-- way to the better outcome, SUCCESSFUL, which is never left.
SELECT pg_temp.pay(110, 'checkout', 'p10') AS p10 \gset
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.expired', 'evt_p10_expired', 100, 'p10', 110, :p10));
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p10_async_ok', 200, 'p10', 110, :p10,
	'{"payment_status": "paid"}', 'checkout.session.async_payment_succeeded'));
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.expired', 'evt_p10_expired_again', 300, 'p10', 110, :p10));
SELECT * FROM pay WHERE order_id = 110;
SELECT * FROM regress_sp.flows();

-- P11. The unpaid completion arrives after the asynchronous success it
-- preceded: the payment stays SUCCESSFUL and nothing fires.
SELECT pg_temp.pay(111, 'checkout', 'p11') AS p11 \gset
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p11_async_ok', 200, 'p11', 111, :p11,
	'{"payment_status": "paid"}', 'checkout.session.async_payment_succeeded'));
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p11_completed', 100, 'p11', 111, :p11,
	'{"payment_status": "unpaid"}'));
SELECT * FROM pay WHERE order_id = 111;
SELECT * FROM regress_sp.flows();

-- P12. The PaymentIntent's success before the session's completion: the
-- payment, which knows only its session, is found by the id in the
-- metadata and learns its PaymentIntent; the completion is then known.
SELECT pg_temp.pay(112, 'checkout', 'p12') AS p12 \gset
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p12_succeeded', 100, 'p12', 112, :p12));
SELECT * FROM pay WHERE order_id = 112;
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p12_completed', 100, 'p12', 112, :p12));
SELECT * FROM pay WHERE order_id = 112;
SELECT * FROM regress_sp.flows();

-- P13. The flow carries what Stripe says was paid, for the trigger to
-- check against the order: here 500 for a payment of 1000.
SELECT pg_temp.pay(113, 'checkout', 'p13') AS p13 \gset
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p13_completed', 100, 'p13', 113, :p13,
	'{"amount_total": 500, "amount_subtotal": 500}'));
SELECT * FROM pay WHERE order_id = 113;
SELECT * FROM regress_sp.flows();

-- P14. The 2022-08-01 shape of a PaymentIntent: the charge is the first of
-- its embedded charges list.
SELECT pg_temp.pay(114, 'payment_intent', 'p14') AS p14 \gset
SELECT jsonb_set(pg_temp.intent('payment_intent.succeeded.2022-08-01', 'evt_p14_succeeded', 100, 'p14', 114, :p14)
					#- '{data,object,latest_charge}',
				 '{data,object,charges,data,0,id}', '"ch_p14"') AS ev \gset
SELECT * FROM regress_sp.ingest(:'ev');
SELECT * FROM pay WHERE order_id = 114;
SELECT * FROM regress_sp.flows();

-- P15. Payments the database does not know (their creating transaction
-- rolled back, or they were made in the dashboard) are recorded from the
-- event when its metadata names an order (created_by stripe), and their
-- later events find them.  Without an order, or with an order that is not
-- a row id, the event is recorded and nothing else.
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p15_completed', 100, 'p15', 115, NULL));
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p15_succeeded', 100, 'p15', 115, NULL));
-- metadata naming a payment row that does not exist: adopted as a new one
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p15b_succeeded', 100, 'p15b', 116, 9999));
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p15c_succeeded', 100, 'p15c', NULL, NULL));
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p15d_succeeded', 100, 'p15d', NULL, NULL,
	'{"metadata": {"order_id": "order-117"}}'));
SELECT * FROM pay WHERE order_id IN (115, 116, 117) OR created_by = 'stripe' ORDER BY id;
SELECT * FROM regress_sp.flows();

-- P16. An event whose metadata names a payment of another order is not
-- applied to that payment.
SELECT pg_temp.pay(118, 'payment_intent', 'p16') AS p16 \gset
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p16_succeeded', 100, 'p16x', 119, :p16));
SELECT * FROM pay WHERE order_id IN (118, 119) ORDER BY id;
SELECT * FROM regress_sp.flows();

-- P17. A declined attempt, then the session paid with another card: the
-- PaymentIntent's success that follows (a second signal, moving nothing)
-- still tells the charge that paid.
SELECT pg_temp.pay(120, 'checkout', 'p17') AS p17 \gset
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.payment_failed', 'evt_p17_failed', 100, 'p17', 120, :p17,
	'{"latest_charge": "ch_p17_declined"}'));
SELECT * FROM regress_sp.ingest(pg_temp.session('checkout.session.completed', 'evt_p17_completed', 200, 'p17', 120, :p17));
SELECT * FROM regress_sp.ingest(pg_temp.intent('payment_intent.succeeded', 'evt_p17_succeeded', 200, 'p17', 120, :p17));
SELECT * FROM pay WHERE order_id = 120;
SELECT * FROM regress_sp.flows();

-- Every event was recorded once, linked to its payment and order.
SELECT id, type, order_id, payment_id, object_id, t FROM regress_sp.events ORDER BY id;
SELECT count(*) AS waiting FROM stripepay.waiting_event;
