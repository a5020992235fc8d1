-- The users' triggers on stripepay's tables are recorded in
-- stripepay.user_trigger after each DDL, so that a dump carries them
CREATE TABLE regress_flow_log (event_id text, payment_status text);
CREATE FUNCTION regress_log_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_flow_log VALUES (NEW.event_id, NEW.payment_status);
	RETURN NULL;
END $$;

CREATE TRIGGER mark_order_paid AFTER INSERT ON stripepay.payment_flow
	FOR EACH ROW WHEN (NOT NEW.already_processed) EXECUTE FUNCTION regress_log_payment();
CREATE TRIGGER renewal_order BEFORE INSERT ON stripepay.deduction_flow
	FOR EACH ROW EXECUTE FUNCTION regress_log_payment();
SELECT table_name, trigger_name, enabled, definition FROM stripepay.user_trigger ORDER BY 1, 2;

-- enabling, disabling and renaming are recorded; other tables' DDL is not
ALTER TABLE stripepay.deduction_flow DISABLE TRIGGER renewal_order;
ALTER TABLE stripepay.payment_flow ENABLE ALWAYS TRIGGER mark_order_paid;
ALTER TRIGGER renewal_order ON stripepay.deduction_flow RENAME TO renewal_order_v2;
CREATE TABLE regress_other (a int);
CREATE TRIGGER other AFTER INSERT ON regress_other FOR EACH ROW EXECUTE FUNCTION regress_log_payment();
ALTER TABLE regress_other ADD COLUMN b int;
SELECT table_name, trigger_name, enabled FROM stripepay.user_trigger ORDER BY 1, 2;

-- dropped, by DROP TRIGGER or with its function
DROP TRIGGER renewal_order_v2 ON stripepay.deduction_flow;
DROP TABLE regress_other;
SELECT table_name, trigger_name FROM stripepay.user_trigger ORDER BY 1, 2;

-- the extension's own triggers are not the users'
SELECT count(*) AS own_triggers FROM pg_trigger
 WHERE tgrelid IN ('stripepay.settings'::regclass, 'stripepay.webhook_secret'::regclass,
				   'stripepay.user_trigger'::regclass) AND NOT tgisinternal;

-- stripepay writes user_trigger and notify_outbox as the extension's owner,
-- and a rule's actions run with the owner's rights: refused (SP034)
\set VERBOSITY sqlstate
CREATE TRIGGER evil AFTER INSERT ON stripepay.notify_outbox
	FOR EACH ROW EXECUTE FUNCTION regress_log_payment();
CREATE TRIGGER evil BEFORE INSERT ON stripepay.user_trigger
	FOR EACH ROW EXECUTE FUNCTION regress_log_payment();
CREATE RULE evil AS ON INSERT TO stripepay.payment_flow DO ALSO SELECT 1;
\set VERBOSITY default
SELECT count(*) AS refused_objects FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'stripepay'::regnamespace AND t.tgname = 'evil';

-- A restore brings rows, not triggers: until a superuser makes them, every
-- call that could fire a flow refuses (SP035), whoever calls
INSERT INTO stripepay.user_trigger (table_name, trigger_name, definition, enabled)
VALUES ('refund_flow', 'restored', 'CREATE TRIGGER restored AFTER INSERT ON stripepay.refund_flow FOR EACH ROW EXECUTE FUNCTION public.regress_log_payment()', 'D');
\set VERBOSITY sqlstate
SELECT * FROM stripepay.stripe_ingest_webhook('{}',
	't=1,v1=0000000000000000000000000000000000000000000000000000000000000000', 'default');
\set VERBOSITY default
-- DDL meanwhile (as pg_restore's own) forgets no row
ALTER TABLE stripepay.refund_flow ENABLE TRIGGER ALL;
ALTER TABLE stripepay.user_trigger ENABLE TRIGGER ALL;
SELECT table_name, trigger_name FROM stripepay.user_trigger ORDER BY 1, 2;
-- only a superuser makes them
SET ROLE stripepay_admin;
SELECT * FROM stripepay.restore_user_triggers();
RESET ROLE;
SELECT * FROM stripepay.restore_user_triggers();
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'stripepay.refund_flow'::regclass AND NOT tgisinternal;
-- made once: a second call has nothing to make
SELECT * FROM stripepay.restore_user_triggers();

-- a row that is anything but that one CREATE TRIGGER is refused when made,
-- and nothing of it runs
\set VERBOSITY sqlstate
INSERT INTO stripepay.user_trigger VALUES ('refund_flow', 'evil', 'DROP TABLE stripepay.refund', 'O');
SELECT * FROM stripepay.restore_user_triggers();
UPDATE stripepay.user_trigger SET definition = 'CREATE TRIGGER evil AFTER INSERT ON stripepay.refund_flow FOR EACH ROW EXECUTE FUNCTION public.regress_log_payment(); DROP TABLE stripepay.refund' WHERE trigger_name = 'evil';
SELECT * FROM stripepay.restore_user_triggers();
UPDATE stripepay.user_trigger SET definition = 'CREATE TRIGGER evil AFTER INSERT ON stripepay.refund FOR EACH ROW EXECUTE FUNCTION public.regress_log_payment()' WHERE trigger_name = 'evil';
SELECT * FROM stripepay.restore_user_triggers();
UPDATE stripepay.user_trigger SET definition = 'CREATE TRIGGER evil AFTER INSERT ON refund_flow FOR EACH ROW EXECUTE FUNCTION public.regress_log_payment()' WHERE trigger_name = 'evil';
SELECT * FROM stripepay.restore_user_triggers();
UPDATE stripepay.user_trigger SET definition = 'CREATE TRIGGER other AFTER INSERT ON stripepay.refund_flow FOR EACH ROW EXECUTE FUNCTION public.regress_log_payment()' WHERE trigger_name = 'evil';
SELECT * FROM stripepay.restore_user_triggers();
UPDATE stripepay.user_trigger SET table_name = 'notify_outbox', definition = 'CREATE TRIGGER evil AFTER INSERT ON stripepay.notify_outbox FOR EACH ROW EXECUTE FUNCTION public.regress_log_payment()' WHERE trigger_name = 'evil';
SELECT * FROM stripepay.restore_user_triggers();
UPDATE stripepay.user_trigger SET table_name = 'no_such_table', definition = 'CREATE TRIGGER evil AFTER INSERT ON stripepay.no_such_table FOR EACH ROW EXECUTE FUNCTION public.regress_log_payment()' WHERE trigger_name = 'evil';
SELECT * FROM stripepay.restore_user_triggers();
\set VERBOSITY default
SELECT to_regclass('stripepay.refund') IS NOT NULL AS refund_table_kept;
DELETE FROM stripepay.user_trigger WHERE trigger_name = 'evil';

-- roles without grants: their DDL goes on as ever, and the table is not theirs
DROP ROLE IF EXISTS regress_sp_ddl;
CREATE ROLE regress_sp_ddl;
GRANT CREATE ON SCHEMA public TO regress_sp_ddl;
SET ROLE regress_sp_ddl;
CREATE TABLE regress_mine (a int);
CREATE FUNCTION regress_noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE TRIGGER mine AFTER INSERT ON regress_mine FOR EACH ROW EXECUTE FUNCTION regress_noop();
ALTER TABLE regress_mine DISABLE TRIGGER mine;
DROP TABLE regress_mine;
CREATE TRIGGER sneaky AFTER INSERT ON stripepay.payment_flow FOR EACH ROW EXECUTE FUNCTION regress_noop();
SELECT * FROM stripepay.user_trigger;
SELECT * FROM stripepay.restore_user_triggers();
INSERT INTO stripepay.user_trigger VALUES ('refund_flow', 'x', 'CREATE TRIGGER x AFTER INSERT ON stripepay.refund_flow FOR EACH ROW EXECUTE FUNCTION public.regress_noop()', 'O');
RESET ROLE;
DROP FUNCTION regress_noop();
REVOKE CREATE ON SCHEMA public FROM regress_sp_ddl;
DROP ROLE regress_sp_ddl;

DROP TRIGGER restored ON stripepay.refund_flow;
DROP TRIGGER mark_order_paid ON stripepay.payment_flow;
DROP FUNCTION regress_log_payment();
DROP TABLE regress_flow_log;
SELECT count(*) AS left_recorded FROM stripepay.user_trigger;
