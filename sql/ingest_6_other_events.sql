-- Events stripepay does not act on are recorded, with their payload, and
-- linked to a payment by its PaymentIntent or charge, or to an order by the
-- order_id in their metadata; a trigger on webhook_event (as in the
-- README's "Other events") sees each one as it is recorded.
\set VERBOSITY default
LOAD 'stripepay';
SET stripepay.api_base = 'http://127.0.0.1:9';	-- nothing here may reach Stripe
SET stripepay.max_retries = 0;
SET stripepay.notify_worker = off;
CALL regress_sp.reset();

-- every event as an AFTER INSERT trigger on webhook_event sees it: for the
-- types stripepay acts on, the links are filled in after the insert
CREATE FUNCTION regress_sp.log_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_sp.flow_log (flow, event_id, event_type, order_id, row_id, detail)
	VALUES ('webhook_event', NEW.id, NEW.type, NEW.order_id, NEW.payment_id,
			'object ' || (NEW.payload #>> '{data,object,id}'));
	RETURN NEW;
END $$;
CREATE TRIGGER regress_log_event AFTER INSERT ON stripepay.webhook_event
	FOR EACH ROW EXECUTE FUNCTION regress_sp.log_event();

-- a paid payment, order 601: PaymentIntent pi_o1, charge ch_o1
INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, payment_intent_id, created_by)
VALUES (601, 'usd', 1000, 'payment_intent', 'pi_o1', 'regress_shop') RETURNING id AS o1 \gset
SELECT * FROM regress_sp.ingest(regress_sp.ev('payment_intent.succeeded', 'evt_o1_paid', 10,
	jsonb_build_object('id', 'pi_o1', 'latest_charge', 'ch_o1',
					   'metadata', jsonb_build_object('order_id', '601', 'stripepay_payment_id', :'o1'))));

-- O1. Stripe's own sample event (plan.created), exactly as the file holds
-- it, through the text variant: recorded, linked to nothing.
\set plan_created `cat test/fixtures/events/plan.created.json`
SELECT * FROM stripepay.stripe_ingest_webhook(:'plan_created', regress_sp.sign(:'plan_created'), 'default');

-- O2. Charge events name their PaymentIntent (charge.succeeded), or are the
-- charge the payment knows (charge.failed of a charge whose PaymentIntent
-- is not given): linked to the payment and its order.
SELECT * FROM regress_sp.ingest(regress_sp.ev('charge.refunded', 'evt_o2_charge_succeeded', 20,
	'{"id": "ch_o1", "payment_intent": "pi_o1", "refunded": false, "amount_refunded": 0, "metadata": {}}',
	'null', 'charge.succeeded'));
SELECT * FROM regress_sp.ingest(regress_sp.ev('charge.refunded', 'evt_o2_charge_failed', 21,
	'{"id": "ch_o1", "payment_intent": null, "refunded": false, "amount_refunded": 0, "status": "failed", "metadata": {}}',
	'null', 'charge.failed'));

-- O3. A dispute names the charge and the PaymentIntent, but is linked only
-- by an order_id in its metadata (the trigger reads the rest from the
-- payload).
SELECT * FROM regress_sp.ingest(regress_sp.event('evt_o3_dispute', 'charge.dispute.created', 30,
	'{"id": "dp_o3", "object": "dispute", "amount": 1000, "currency": "usd", "charge": "ch_o1",
	  "payment_intent": "pi_o1", "reason": "fraudulent", "status": "needs_response", "metadata": {}}'));
SELECT * FROM regress_sp.ingest(regress_sp.event('evt_o3_dispute_meta', 'charge.dispute.updated', 31,
	'{"id": "dp_o3", "object": "dispute", "amount": 1000, "currency": "usd", "charge": "ch_o1",
	  "payment_intent": "pi_o1", "reason": "fraudulent", "status": "under_review",
	  "metadata": {"order_id": "601"}}'));

-- O4. Events of a payment's objects that bring no status
-- (payment_intent.created, .requires_action): recorded and linked, the
-- payment unchanged, no flow.
SELECT * FROM regress_sp.ingest(regress_sp.ev('payment_intent.succeeded', 'evt_o4_created', 5,
	'{"id": "pi_o1", "status": "requires_payment_method", "latest_charge": null, "metadata": {"order_id": "601"}}',
	NULL, 'payment_intent.created'));
SELECT * FROM regress_sp.ingest(regress_sp.ev('payment_intent.succeeded', 'evt_o4_requires_action', 40,
	'{"id": "pi_o1", "status": "requires_action", "latest_charge": "ch_o1", "metadata": {"order_id": "601"}}',
	NULL, 'payment_intent.requires_action'));
SELECT id, order_id, status, intent, charge, t FROM regress_sp.payments ORDER BY id;

-- O5. A Checkout Session in setup mode (saving a card): nothing to apply.
SELECT * FROM regress_sp.ingest(regress_sp.ev('checkout.session.completed', 'evt_o5_setup', 50,
	'{"id": "cs_test_o5", "mode": "setup", "payment_intent": null, "setup_intent": "seti_o5",
	  "amount_total": null, "metadata": {"order_id": "605"}}'));

-- O6. Objects of other kinds (a customer, an invoice being drafted): an
-- invoice is linked to its subscription's order by its metadata.
SELECT * FROM regress_sp.ingest(regress_sp.event('evt_o6_customer', 'customer.created', 60,
	'{"id": "cus_o6", "object": "customer", "email": "buyer@example.com", "metadata": {}}'));
SELECT * FROM regress_sp.ingest(regress_sp.ev('invoice.paid', 'evt_o6_invoice_created', 61,
	'{"id": "in_o6", "status": "draft", "billing_reason": "subscription_cycle", "amount_paid": 0}',
	NULL, 'invoice.created'));

-- O7. Payment events of a payment the database does not know, naming no
-- order: recorded, linked to nothing, adopted by no one.
SELECT * FROM regress_sp.ingest(regress_sp.ev('payment_intent.payment_failed', 'evt_o7_failed', 70,
	'{"id": "pi_o7", "metadata": {}}'));

SELECT id, type, order_id, payment_id, refund_id, sub_id, object_id, api_version, t
  FROM regress_sp.events ORDER BY id;
SELECT count(*) AS payments, count(*) FILTER (WHERE created_by = 'stripe') AS adopted
  FROM stripepay.payment_record;
-- what the trigger on webhook_event saw, in order (row_id: payment_id)
SELECT * FROM regress_sp.flows();

DROP TRIGGER regress_log_event ON stripepay.webhook_event;
DROP FUNCTION regress_sp.log_event();
