-- Renewals: invoice.paid of a subscription_cycle becomes a RENEWAL payment,
-- once per invoice, and fires the deduction flow, whose BEFORE INSERT
-- trigger (ingest_0_setup) makes the renewal's own order; the first
-- invoice (subscription_create) is not a renewal; invoice_payment.paid
-- tells the renewal its PaymentIntent and charge (from 2025-03-31 the
-- invoice does not), before or after its invoice.paid; a refund of a
-- renewal; invoice.payment_failed.  No event here makes stripepay call
-- Stripe.  After each scenario: the payments, the flows, what waits.
\set VERBOSITY default
LOAD 'stripepay';
SET stripepay.api_base = 'http://127.0.0.1:9';	-- nothing here may reach Stripe
SET stripepay.max_retries = 0;
SET stripepay.notify_worker = off;
CALL regress_sp.reset();

-- An invoice event of invoice in_<inv>, of subscription sub_<n> (whose
-- metadata names order 501 and the recurring_payment :n1), pinned shape.
CREATE FUNCTION pg_temp.invoice(type text, id text, t bigint, inv text, n text, rp bigint,
								reason text, amount bigint DEFAULT 2000, obj jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_set(jsonb_set(regress_sp.ev('invoice.paid', id, t,
		jsonb_build_object('id', 'in_' || inv, 'billing_reason', reason, 'amount_paid', amount,
						   'amount_due', amount, 'total', amount, 'subtotal', amount,
						   'status', CASE WHEN type = 'invoice.paid' THEN 'paid' ELSE 'open' END,
						   'customer', 'cus_' || n,
						   'parent', jsonb_build_object('type', 'subscription_details',
								'subscription_details', jsonb_build_object('subscription', 'sub_' || n,
									'metadata', jsonb_build_object('order_id', '501',
																   'stripepay_recurring_payment_id', rp::text))))
		|| obj, NULL, type),
		'{data,object,lines,data,0,invoice}', to_jsonb('in_' || inv)),
		'{data,object,lines,data,0,parent,subscription_item_details,subscription}', to_jsonb('sub_' || n))
$$;
-- invoice_payment.paid of invoice in_<inv>: its payment, as given
CREATE FUNCTION pg_temp.invoice_payment(id text, t bigint, inv text, payment jsonb)
RETURNS jsonb LANGUAGE sql AS $$
	SELECT regress_sp.ev('invoice_payment.paid', id, t,
		jsonb_build_object('id', 'inpay_' || inv, 'invoice', 'in_' || inv, 'payment', payment))
$$;
CREATE TEMP VIEW pay AS
SELECT id, order_id, kind, status, amount, refunded, flow, intent, charge, invoice, sub, t, created_by
  FROM regress_sp.payments;

-- The subscription: order 501, active since t=100 (as its webhooks would
-- have left it).
INSERT INTO stripepay.recurring_payment (order_id, price_id, status, subscription_id, customer_id,
										 current_period_start, current_period_end, event_created, created_by)
VALUES (501, 'price_1SPayMonthlyPrice00001', 'ACTIVE', 'sub_n1', 'cus_n1', to_timestamp(1793200000),
		to_timestamp(1793200000 + 2592000), to_timestamp(1793200100), 'regress_shop')
RETURNING id AS n1 \gset

-- N1. The first invoice (billing_reason subscription_create) is not a
-- renewal: no payment, no deduction flow; the event is linked to the
-- subscription.  Its invoice_payment.paid, which came first and waited for
-- a payment to learn the invoice, stops waiting: none will.
SELECT * FROM regress_sp.ingest(pg_temp.invoice_payment('evt_n1_inpay', 10, 'n1_1',
	'{"type": "payment_intent", "payment_intent": "pi_n1_1", "charge": "ch_n1_1"}'));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n1_paid', 11, 'n1_1', 'n1', :n1,
	'subscription_create'));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT count(*) AS payments FROM stripepay.payment_record;
SELECT * FROM regress_sp.flows();

-- N2. A renewal: a new SUCCESSFUL RENEWAL payment of the invoice; the
-- deduction flow's BEFORE INSERT trigger made order 9001, which becomes the
-- payment's order.  The same event again, and another event of the same
-- invoice (Stripe delivers renewals more than once), make no second payment
-- and fire nothing; the other event is linked to the renewal payment and
-- its order, as the first one is.
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n2_paid', 2592000, 'n1_2', 'n1', :n1,
	'subscription_cycle'));
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n2_paid', 2592000, 'n1_2', 'n1', :n1,
	'subscription_cycle'));
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n2_paid_again', 2592001, 'n1_2', 'n1', :n1,
	'subscription_cycle'));
SELECT * FROM pay ORDER BY id;
SELECT * FROM regress_sp.renewal_order ORDER BY id;
SELECT * FROM regress_sp.flows();

-- N3. Its invoice_payment.paid names the PaymentIntent and the charge
-- (payment.charge): the renewal learns them, and can be refunded.
SELECT * FROM regress_sp.ingest(pg_temp.invoice_payment('evt_n3_inpay', 2592002, 'n1_2',
	'{"type": "payment_intent", "payment_intent": "pi_n1_2", "charge": "ch_n1_2"}'));
SELECT * FROM pay ORDER BY id;
SELECT * FROM regress_sp.flows();

-- N4. A refund of the renewal: recorded for the renewal's payment and order.
SELECT * FROM regress_sp.ingest(regress_sp.ev('refund.created', 'evt_n4_refund', 2592100,
	'{"id": "re_n4", "charge": "ch_n1_2", "payment_intent": "pi_n1_2", "amount": 700, "status": "succeeded", "metadata": {}}'));
SELECT * FROM pay ORDER BY id;
SELECT id, payment_id, order_id, status, amount FROM regress_sp.refunds ORDER BY id;
SELECT * FROM regress_sp.flows();

-- N5. The next renewal's invoice_payment.paid comes before its invoice.paid:
-- it waits for the invoice; the renewal is made, then learns its
-- PaymentIntent and, from the expanded PaymentIntent's latest_charge, its
-- charge.
SELECT * FROM regress_sp.ingest(pg_temp.invoice_payment('evt_n5_inpay', 5184001, 'n1_3',
	'{"type": "payment_intent", "payment_intent": {"id": "pi_n1_3", "object": "payment_intent", "latest_charge": "ch_n1_3"}}'));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n5_paid', 5184000, 'n1_3', 'n1', :n1,
	'subscription_cycle'));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT * FROM pay WHERE invoice = 'in_n1_3';
SELECT * FROM regress_sp.flows();

-- N6. An invoice_payment.paid that names only the PaymentIntent (no
-- charge): stripepay would read the charge from Stripe; with no secret key
-- configured it does not, and the renewal learns the PaymentIntent alone.
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n6_paid', 7776000, 'n1_4', 'n1', :n1,
	'subscription_cycle'));
SELECT secret_key FROM stripepay.configure(secret_key => '');
SELECT * FROM regress_sp.ingest(pg_temp.invoice_payment('evt_n6_inpay', 7776001, 'n1_4',
	'{"type": "payment_intent", "payment_intent": "pi_n1_4"}'));
SELECT secret_key FROM stripepay.configure(secret_key => 'sk_test_4eC39HqLyjWDarjtT1zdp7dc');
SELECT * FROM pay WHERE invoice = 'in_n1_4';
SELECT * FROM regress_sp.flows();

-- N7. A refund of a renewal before the renewal knows its charge: it waits,
-- and is applied when invoice_payment.paid tells the renewal its
-- PaymentIntent and charge.
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n7_paid', 10368000, 'n1_5', 'n1', :n1,
	'subscription_cycle'));
SELECT * FROM regress_sp.ingest(regress_sp.ev('refund.created', 'evt_n7_refund', 10368100,
	'{"id": "re_n7", "charge": "ch_n1_5", "payment_intent": "pi_n1_5", "amount": 2000, "status": "succeeded", "metadata": {}}'));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT * FROM regress_sp.ingest(pg_temp.invoice_payment('evt_n7_inpay', 10368001, 'n1_5',
	'{"type": "payment_intent", "payment_intent": "pi_n1_5", "charge": "ch_n1_5"}'));
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
SELECT * FROM pay WHERE invoice = 'in_n1_5';
SELECT id, payment_id, order_id, status, amount FROM regress_sp.refunds ORDER BY id;
SELECT * FROM regress_sp.flows();

-- N8. invoice.payment_failed: recorded and linked to the subscription; no
-- payment, no flow (the subscription's own update says past_due).
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.payment_failed', 'evt_n8_failed', 12960000, 'n1_6', 'n1', :n1,
	'subscription_cycle', 2000, '{"amount_paid": 0, "attempted": true, "status_transitions": {"paid_at": null}}'));
SELECT count(*) AS payments_of_n1_6 FROM stripepay.payment_record WHERE invoice_id = 'in_n1_6';
SELECT * FROM regress_sp.flows();

-- N9. The 2024-06-20 shape: the invoice names its subscription, its
-- subscription's metadata, its PaymentIntent and its charge at the top
-- level; the renewal knows them at once.
SELECT * FROM regress_sp.ingest(regress_sp.ev('invoice.paid.2024-06-20', 'evt_n9_paid', 15552000,
	jsonb_build_object('id', 'in_n1_7', 'subscription', 'sub_n1', 'payment_intent', 'pi_n1_7',
					   'charge', 'ch_n1_7', 'customer', 'cus_n1',
					   'subscription_details', jsonb_build_object('metadata', jsonb_build_object(
							'order_id', '501', 'stripepay_recurring_payment_id', :'n1')))));
SELECT * FROM pay WHERE invoice = 'in_n1_7';
SELECT * FROM regress_sp.flows();

-- N10. An invoice.paid whose expanded payments list names the PaymentIntent
-- and its latest charge: the renewal knows them at once.
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n10_paid', 18144000, 'n1_8', 'n1', :n1,
	'subscription_cycle', 2000, '{"payments": {"object": "list", "has_more": false, "data": [
		{"object": "invoice_payment", "status": "canceled", "is_default": false,
		 "payment": {"type": "payment_intent", "payment_intent": "pi_n1_8_old"}},
		{"object": "invoice_payment", "status": "paid", "is_default": true,
		 "payment": {"type": "payment_intent", "payment_intent": {"id": "pi_n1_8", "object": "payment_intent", "latest_charge": "ch_n1_8"}}}]}}'));
SELECT * FROM pay WHERE invoice = 'in_n1_8';
SELECT * FROM regress_sp.flows();

-- N11. Not renewals: a renewal invoice for nothing (amount_paid 0, a free
-- period), and the renewal of a subscription the database does not know:
-- recorded, linked to what they name, no payment.
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n11_free', 20736000, 'n1_9', 'n1', :n1,
	'subscription_cycle', 0));
SELECT * FROM regress_sp.ingest(pg_temp.invoice('invoice.paid', 'evt_n11_unknown', 20736000, 'x_1', 'x', NULL,
	'subscription_cycle'));
SELECT count(*) AS payments FROM stripepay.payment_record WHERE invoice_id IN ('in_n1_9', 'in_x_1');
SELECT * FROM regress_sp.flows();

-- Every event recorded once, linked to its payment, subscription and order.
SELECT id, type, order_id, payment_id, refund_id, sub_id, object_id FROM regress_sp.events ORDER BY id;
SELECT * FROM regress_sp.waiting ORDER BY 1, 2;
