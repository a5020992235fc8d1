-- Whose rights the user's triggers run with: the role that called
-- stripe_ingest_webhook, or the flow role configure(flow_role => ...)
-- names, which may not be a superuser (SP032).  A trigger that fails rolls
-- the whole event back.
\set VERBOSITY default
LOAD 'stripepay';
SET stripepay.api_base = 'http://127.0.0.1:9';	-- nothing here may reach Stripe
SET stripepay.max_retries = 0;
SET stripepay.notify_worker = off;
CALL regress_sp.reset();

-- the ingest, its failure shown as SQLSTATE and message (no context)
CREATE FUNCTION pg_temp.try_ingest(ev jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM regress_sp.ingest(ev);
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'oid [0-9]+', 'oid N');
END $$;
-- payment_intent.succeeded of pi_<n>, for order <order_id>, adopted
CREATE FUNCTION pg_temp.paid(id text, t bigint, n text, order_id bigint) RETURNS jsonb LANGUAGE sql AS $$
	SELECT regress_sp.ev('payment_intent.succeeded', id, t,
		jsonb_build_object('id', 'pi_' || n, 'latest_charge', 'ch_' || n,
						   'metadata', jsonb_build_object('order_id', order_id::text)))
$$;
CREATE TEMP VIEW flows_as AS
SELECT flow, event_id, order_id, status, already_processed,
	   CASE WHEN run_as = session_user THEN '(session user)' ELSE run_as END AS run_as
  FROM regress_sp.flow_log;

-- F1. No flow role: the triggers run as the role that called the ingest,
-- here the relay's (a member of stripepay_webhook, nothing else).
SELECT flow_role FROM stripepay.configure(flow_role => '');
SET ROLE regress_sp_relay;
SELECT * FROM regress_sp.ingest(pg_temp.paid('evt_f1_paid', 10, 'f1', 701));
-- the relay's role may ingest, and read nothing
SELECT count(*) FROM stripepay.payment_record;
RESET ROLE;
SELECT * FROM flows_as ORDER BY event_id;
DELETE FROM regress_sp.flow_log;

-- F2. A flow role: the triggers run as it, whoever calls.
SELECT flow_role FROM stripepay.configure(flow_role => 'regress_sp_flows');
SET ROLE regress_sp_relay;
SELECT * FROM regress_sp.ingest(pg_temp.paid('evt_f2_paid', 20, 'f2', 702));
RESET ROLE;
SELECT * FROM regress_sp.ingest(pg_temp.paid('evt_f2_paid_su', 21, 'f2b', 703));
SELECT * FROM flows_as ORDER BY event_id;
DELETE FROM regress_sp.flow_log;

-- F3. A superuser cannot be the flow role, nor can a role that does not
-- exist (SP032); the flow role stays as it was.
SELECT flow_role FROM stripepay.configure(flow_role => 'regress_sp_super');
\echo :LAST_ERROR_SQLSTATE
SELECT flow_role FROM stripepay.configure(flow_role => 'regress_sp_nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT flow_role FROM stripepay.config;

-- F4. A flow role that has become a superuser since, or no longer exists:
-- the ingest refuses (SP010) and stores nothing.
ALTER ROLE regress_sp_flows SUPERUSER;
SELECT pg_temp.try_ingest(pg_temp.paid('evt_f4_paid', 40, 'f4', 704));
ALTER ROLE regress_sp_flows NOSUPERUSER;
DROP ROLE regress_sp_flows;
SELECT pg_temp.try_ingest(pg_temp.paid('evt_f4_paid', 40, 'f4', 704));
SELECT count(*) AS stored FROM stripepay.webhook_event WHERE id = 'evt_f4_paid';
-- '' clears it: the triggers run as the caller again, unless the caller
-- is a superuser: then the ingest refuses (SP010) and stores nothing
SELECT flow_role FROM stripepay.configure(flow_role => '');
SELECT pg_temp.try_ingest(pg_temp.paid('evt_f4_paid', 40, 'f4', 704));
SELECT count(*) AS stored FROM stripepay.webhook_event WHERE id = 'evt_f4_paid';
SET ROLE regress_sp_relay;
SELECT * FROM regress_sp.ingest(pg_temp.paid('evt_f4_paid', 40, 'f4', 704));
RESET ROLE;
SELECT * FROM flows_as ORDER BY event_id;
DELETE FROM regress_sp.flow_log;
-- the story goes on with a flow role
CREATE ROLE regress_sp_flows;
SELECT flow_role FROM stripepay.configure(flow_role => 'regress_sp_flows');

-- F5. A trigger that fails rolls the whole event back: no event, no
-- payment, no flow row; Stripe delivers it again, and once the trigger
-- is fixed the delivery is applied.
CREATE FUNCTION regress_sp.refuse_order_799() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.order_id = 799 THEN
		RAISE EXCEPTION 'order 799 is locked';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER regress_refuse AFTER INSERT ON stripepay.payment_flow
	FOR EACH ROW EXECUTE FUNCTION regress_sp.refuse_order_799();
SELECT pg_temp.try_ingest(pg_temp.paid('evt_f5_paid', 50, 'f5', 799));
SELECT (SELECT count(*) FROM stripepay.webhook_event WHERE id = 'evt_f5_paid') AS events,
	   (SELECT count(*) FROM stripepay.payment_record WHERE order_id = 799) AS payments,
	   (SELECT count(*) FROM stripepay.payment_flow WHERE order_id = 799) AS flow_rows,
	   (SELECT count(*) FROM regress_sp.flow_log) AS logged;
DROP TRIGGER regress_refuse ON stripepay.payment_flow;
DROP FUNCTION regress_sp.refuse_order_799();
SELECT pg_temp.try_ingest(pg_temp.paid('evt_f5_paid', 50, 'f5', 799));
SELECT id, order_id, status, intent, created_by FROM regress_sp.payments ORDER BY id;
SELECT * FROM flows_as ORDER BY event_id;
DELETE FROM regress_sp.flow_log;
