-- The webhook state machine, shown by pg_regress: set-up for the ingest_* tests.
--
-- No Stripe, no emulator, no network.  Events come from test/fixtures/events,
-- are given ids, amounts, times and metadata that tell one story per scenario,
-- and are signed here (pgcrypto's hmac, as Stripe signs: t=<now>,v1=<hex>)
-- with a secret stored by add_webhook_secret.  Payments that exist are
-- inserted directly, standing for what stripe_pay or stripe_subscribe would
-- have made.  Triggers on the four flow tables log which flows fired, in
-- which order, with what, and as which role.
--
-- This file makes the helpers (schema regress_sp), the roles and the
-- settings the other ingest_* files use; ingest_8_prune.sql, the last one,
-- removes them.
\set VERBOSITY default
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS regress_sp CASCADE;
DROP ROLE IF EXISTS regress_sp_relay;
DROP ROLE IF EXISTS regress_sp_flows;
DROP ROLE IF EXISTS regress_sp_super;
RESET client_min_messages;

-- the relay's role: may ingest, nothing else
CREATE ROLE regress_sp_relay IN ROLE stripepay_webhook;
-- a role for the user's triggers to run as (configure(flow_role => ...))
CREATE ROLE regress_sp_flows;
-- a superuser, which may not be the flow role
CREATE ROLE regress_sp_super SUPERUSER;

CREATE SCHEMA regress_sp;
GRANT USAGE ON SCHEMA regress_sp TO PUBLIC;
CREATE EXTENSION pgcrypto SCHEMA regress_sp;

-- the settings of this story: a test-mode key (events must be test-mode
-- ones), triggers run as the flow role, secrets of two endpoints
SELECT secret_key, publishable_key, mode, flow_role, event_retention
  FROM stripepay.configure(secret_key => 'sk_test_4eC39HqLyjWDarjtT1zdp7dc', publishable_key => '',
						   flow_role => 'regress_sp_flows', event_retention => '90 days');
DELETE FROM stripepay.webhook_secret;
SELECT endpoint, secret, live FROM stripepay.add_webhook_secret('whsec_regressDefaultSecret0001');
SELECT endpoint, secret, live FROM stripepay.add_webhook_secret('whsec_regressPaymentsSecret001', 'payments');

-- Stripe's signature: HMAC-SHA256 over "<t>.<body>", header t=<t>,v1=<hex>
CREATE FUNCTION regress_sp.sign(body bytea, secret text DEFAULT 'whsec_regressDefaultSecret0001',
								at bigint DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE AS $$
	SELECT format('t=%s,v1=%s', s.t,
				  encode(regress_sp.hmac(convert_to(s.t || '.', 'UTF8') || body,
										 convert_to(secret, 'UTF8'), 'sha256'), 'hex'))
	  FROM (SELECT coalesce(at, extract(epoch FROM now())::bigint) AS t) s
$$;
CREATE FUNCTION regress_sp.sign(body text, secret text DEFAULT 'whsec_regressDefaultSecret0001',
								at bigint DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE AS $$
	SELECT regress_sp.sign(convert_to(body, 'UTF8'), secret, at)
$$;

-- The test secrets by name: a refused ingest's statement is written to the
-- server log, which must never hold a secret, even a test one.
CREATE FUNCTION regress_sp.secret(name text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE name WHEN 'default' THEN 'whsec_regressDefaultSecret0001'
					 WHEN 'payments' THEN 'whsec_regressPaymentsSecret001'
					 WHEN 'expired' THEN 'whsec_regressExpiredSecret0001'
					 WHEN 'other' THEN 'whsec_regressSomeOtherSecret01' END
$$;

-- Times: the story's events are at T0 + t seconds, shown as t.
CREATE FUNCTION regress_sp.t(ts timestamptz) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
	SELECT extract(epoch FROM ts)::bigint - 1793200000
$$;

-- The event fixtures, by name (the file name without .json).
CREATE TABLE regress_sp.fixture (name text PRIMARY KEY, body jsonb NOT NULL);
\set f `cat test/fixtures/events/charge.refunded.json`
INSERT INTO regress_sp.fixture VALUES ('charge.refunded', :'f');
\set f `cat test/fixtures/events/charge.refunded.2022-08-01.json`
INSERT INTO regress_sp.fixture VALUES ('charge.refunded.2022-08-01', :'f');
\set f `cat test/fixtures/events/checkout.session.completed.json`
INSERT INTO regress_sp.fixture VALUES ('checkout.session.completed', :'f');
\set f `cat test/fixtures/events/checkout.session.completed.subscription.json`
INSERT INTO regress_sp.fixture VALUES ('checkout.session.completed.subscription', :'f');
\set f `cat test/fixtures/events/checkout.session.expired.json`
INSERT INTO regress_sp.fixture VALUES ('checkout.session.expired', :'f');
\set f `cat test/fixtures/events/customer.subscription.deleted.json`
INSERT INTO regress_sp.fixture VALUES ('customer.subscription.deleted', :'f');
\set f `cat test/fixtures/events/customer.subscription.updated.json`
INSERT INTO regress_sp.fixture VALUES ('customer.subscription.updated', :'f');
\set f `cat test/fixtures/events/customer.subscription.updated.2024-06-20.json`
INSERT INTO regress_sp.fixture VALUES ('customer.subscription.updated.2024-06-20', :'f');
\set f `cat test/fixtures/events/invoice.paid.json`
INSERT INTO regress_sp.fixture VALUES ('invoice.paid', :'f');
\set f `cat test/fixtures/events/invoice.paid.2024-06-20.json`
INSERT INTO regress_sp.fixture VALUES ('invoice.paid.2024-06-20', :'f');
\set f `cat test/fixtures/events/invoice_payment.paid.json`
INSERT INTO regress_sp.fixture VALUES ('invoice_payment.paid', :'f');
\set f `cat test/fixtures/events/payment_intent.canceled.json`
INSERT INTO regress_sp.fixture VALUES ('payment_intent.canceled', :'f');
\set f `cat test/fixtures/events/payment_intent.payment_failed.json`
INSERT INTO regress_sp.fixture VALUES ('payment_intent.payment_failed', :'f');
\set f `cat test/fixtures/events/payment_intent.succeeded.json`
INSERT INTO regress_sp.fixture VALUES ('payment_intent.succeeded', :'f');
\set f `cat test/fixtures/events/payment_intent.succeeded.2022-08-01.json`
INSERT INTO regress_sp.fixture VALUES ('payment_intent.succeeded.2022-08-01', :'f');
\set f `cat test/fixtures/events/plan.created.json`
INSERT INTO regress_sp.fixture VALUES ('plan.created', :'f');
\set f `cat test/fixtures/events/refund.created.json`
INSERT INTO regress_sp.fixture VALUES ('refund.created', :'f');
\set f `cat test/fixtures/events/refund.failed.json`
INSERT INTO regress_sp.fixture VALUES ('refund.failed', :'f');
GRANT SELECT ON regress_sp.fixture TO PUBLIC;
SELECT name, body->>'type' AS type, body->>'api_version' AS api_version,
	   body #>> '{data,object,object}' AS object
  FROM regress_sp.fixture ORDER BY name;

-- An event made from a fixture: its id, its time (T0 + t), data.object
-- merged with obj (top-level keys replaced), and optionally
-- data.previous_attributes ('null' removes it) and another type.
CREATE FUNCTION regress_sp.ev(fixture text, id text, t bigint, obj jsonb DEFAULT '{}',
							  prev jsonb DEFAULT NULL, type text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
	e jsonb := (SELECT f.body FROM regress_sp.fixture f WHERE f.name = ev.fixture)
			   || jsonb_build_object('id', id, 'created', 1793200000 + t);
BEGIN
	IF e IS NULL THEN
		RAISE EXCEPTION 'no fixture %', fixture;
	END IF;
	IF type IS NOT NULL THEN
		e := e || jsonb_build_object('type', type);
	END IF;
	e := jsonb_set(e, '{data,object}', (e #> '{data,object}') || obj);
	IF prev IS NOT NULL THEN
		e := jsonb_set(e, '{data}', (e -> 'data') - 'previous_attributes'
					   || CASE WHEN prev = 'null' THEN '{}' ELSE jsonb_build_object('previous_attributes', prev) END);
	END IF;
	RETURN e;
END $$;

-- An event of a type no fixture has: the envelope of plan.created around
-- the object given.
CREATE FUNCTION regress_sp.event(id text, type text, t bigint, object jsonb)
RETURNS jsonb LANGUAGE sql STABLE AS $$
	SELECT f.body || jsonb_build_object('id', id, 'type', type, 'created', 1793200000 + t,
										'api_version', '2026-10-28.endive',
										'data', jsonb_build_object('object', object))
	  FROM regress_sp.fixture f WHERE f.name = 'plan.created'
$$;

-- Delivers an event, signed for the endpoint 'default', as the relay does
-- (the body as bytea); returns what stripe_ingest_webhook returns.
CREATE FUNCTION regress_sp.ingest(ev jsonb, endpoint text DEFAULT 'default')
RETURNS TABLE (event_id text, event_type text, already_processed boolean)
LANGUAGE plpgsql AS $$
DECLARE
	body bytea := convert_to(ev::text, 'UTF8');
BEGIN
	RETURN QUERY SELECT * FROM stripepay.stripe_ingest_webhook(body, regress_sp.sign(body), endpoint);
END $$;

-- Which flows fired: one row per flow row, as the triggers saw it.
CREATE TABLE regress_sp.flow_log (
	seq			serial PRIMARY KEY,
	flow		text NOT NULL,
	event_id	text,
	event_type	text,
	order_id	bigint,
	row_id		bigint,			/* payment, refund or recurring_payment id */
	status		text,
	already_processed boolean,
	amount		bigint,
	currency	text,
	detail		text,
	run_as		name NOT NULL DEFAULT current_user
);
GRANT INSERT, SELECT ON regress_sp.flow_log TO PUBLIC;
GRANT USAGE ON SEQUENCE regress_sp.flow_log_seq_seq TO PUBLIC;

CREATE FUNCTION regress_sp.log_payment_flow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_sp.flow_log (flow, event_id, event_type, order_id, row_id, status,
									 already_processed, amount, currency)
	VALUES ('payment', NEW.event_id, NEW.event_type, NEW.order_id, NEW.payment_id,
			NEW.payment_status, NEW.already_processed, NEW.amount, NEW.currency);
	RETURN NEW;
END $$;
CREATE FUNCTION regress_sp.log_refund_flow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_sp.flow_log (flow, event_id, event_type, order_id, row_id, status,
									 already_processed, amount, currency, detail)
	VALUES ('refund', NEW.event_id, NEW.event_type, NEW.order_id, NEW.refund_id,
			NEW.refund_status, NEW.already_processed, NEW.amount, NEW.currency,
			'payment ' || NEW.payment_id);
	RETURN NEW;
END $$;
CREATE FUNCTION regress_sp.log_subscription_flow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_sp.flow_log (flow, event_id, event_type, order_id, row_id, status,
									 already_processed, detail)
	VALUES ('subscription', NEW.event_id, NEW.event_type, NEW.order_id, NEW.recurring_payment_id,
			NEW.status, NEW.already_processed,
			concat_ws(', ', 'from ' || NEW.previous_status,
					  CASE WHEN NEW.cancel_at_period_end THEN 'cancel_at_period_end' END,
					  'cancel_at t=' || regress_sp.t(NEW.cancel_at)));
	RETURN NEW;
END $$;
CREATE FUNCTION regress_sp.log_deduction_flow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_sp.flow_log (flow, event_id, event_type, order_id, row_id, status,
									 already_processed, amount, currency, detail)
	VALUES ('deduction', NEW.event_id, NEW.event_type, NEW.order_id, NEW.payment_id,
			NULL, NEW.already_processed, NEW.amount, NEW.currency,
			format('%s of subscription %s (order %s)', NEW.invoice_id, NEW.recurring_payment_id,
				   NEW.subscription_order_id));
	RETURN NEW;
END $$;

-- The renewal's own order, made by a BEFORE INSERT trigger on deduction_flow
-- (as in the README): its id becomes the renewal payment's order_id.
CREATE TABLE regress_sp.renewal_order (
	id			bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 9001) PRIMARY KEY,
	parent_order bigint NOT NULL,
	invoice_id	text NOT NULL,
	amount		bigint NOT NULL,
	currency	text NOT NULL
);
GRANT INSERT, SELECT ON regress_sp.renewal_order TO PUBLIC;
GRANT USAGE ON SEQUENCE regress_sp.renewal_order_id_seq TO PUBLIC;
CREATE FUNCTION regress_sp.renewal_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_sp.renewal_order (parent_order, invoice_id, amount, currency)
	VALUES (NEW.subscription_order_id, NEW.invoice_id, NEW.amount, NEW.currency)
	RETURNING id INTO NEW.order_id;
	RETURN NEW;
END $$;

CREATE TRIGGER regress_log AFTER INSERT ON stripepay.payment_flow
	FOR EACH ROW EXECUTE FUNCTION regress_sp.log_payment_flow();
CREATE TRIGGER regress_log AFTER INSERT ON stripepay.refund_flow
	FOR EACH ROW EXECUTE FUNCTION regress_sp.log_refund_flow();
CREATE TRIGGER regress_log AFTER INSERT ON stripepay.subscription_flow
	FOR EACH ROW EXECUTE FUNCTION regress_sp.log_subscription_flow();
CREATE TRIGGER regress_log AFTER INSERT ON stripepay.deduction_flow
	FOR EACH ROW EXECUTE FUNCTION regress_sp.log_deduction_flow();
CREATE TRIGGER regress_renewal_order BEFORE INSERT ON stripepay.deduction_flow
	FOR EACH ROW EXECUTE FUNCTION regress_sp.renewal_order();

-- The flows fired since the last call, in order; then forgotten.
CREATE FUNCTION regress_sp.flows()
RETURNS TABLE (flow text, event_id text, event_type text, order_id bigint, id bigint,
			   status text, already_processed boolean, amount text, detail text)
LANGUAGE sql AS $$
	WITH taken AS (DELETE FROM regress_sp.flow_log RETURNING *)
	SELECT flow, event_id, event_type, order_id, row_id, status, already_processed,
		   amount || ' ' || currency, detail
	  FROM taken ORDER BY seq
$$;

-- The rows, deterministic columns only; times as t.
CREATE VIEW regress_sp.payments AS
SELECT id, order_id, kind, status, amount, amount_refunded AS refunded, currency, flow,
	   checkout_session_id AS session, payment_intent_id AS intent, charge_id AS charge,
	   invoice_id AS invoice, recurring_payment_id AS sub, failure_code, failure_message,
	   regress_sp.t(event_created) AS t, created_by
  FROM stripepay.payment_record;
CREATE VIEW regress_sp.refunds AS
SELECT id, payment_id, order_id, status, amount, currency, stripe_refund_id, reason,
	   failure_reason, regress_sp.t(event_created) AS t, created_by, unclaimed_key
  FROM stripepay.refund;
CREATE VIEW regress_sp.subscriptions AS
SELECT id, order_id, status, price_id, subscription_id, customer_id,
	   regress_sp.t(current_period_start) AS period_start, regress_sp.t(current_period_end) AS period_end,
	   cancel_at_period_end, regress_sp.t(cancel_at) AS cancel_at, regress_sp.t(canceled_at) AS canceled_at,
	   changed_from_status, changed_from_cancel_at_period_end AS changed_from_cape,
	   regress_sp.t(event_created) AS t, created_by
  FROM stripepay.recurring_payment;
CREATE VIEW regress_sp.events AS
SELECT id, type, order_id, payment_id, refund_id, recurring_payment_id AS sub_id, object_id,
	   endpoint, source, api_version, regress_sp.t(created) AS t
  FROM stripepay.webhook_event;
CREATE VIEW regress_sp.waiting AS
SELECT stripe_id, event_id FROM stripepay.waiting_event;

-- Every scenario file starts from empty tables, its ids from 1.
CREATE PROCEDURE regress_sp.reset() LANGUAGE sql AS $$
	TRUNCATE stripepay.refund, stripepay.payment_record, stripepay.recurring_payment,
			 stripepay.webhook_event, stripepay.waiting_event, stripepay.payment_flow,
			 stripepay.refund_flow, stripepay.subscription_flow, stripepay.deduction_flow,
			 stripepay.notify_outbox, regress_sp.flow_log, regress_sp.renewal_order
		RESTART IDENTITY;
$$;
CALL regress_sp.reset();

-- the helper signs as Stripe does: the same header for the same second, body and secret
SELECT regress_sp.sign('{"id": "evt_1"}', 'whsec_regressDefaultSecret0001', 1793200000);
SELECT encode(regress_sp.hmac('1793200000.{"id": "evt_1"}', 'whsec_regressDefaultSecret0001', 'sha256'), 'hex');
