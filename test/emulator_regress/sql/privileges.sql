-- who may do what: keys stay with superusers, settings with admins
\set VERBOSITY default
DROP ROLE IF EXISTS regress_sp_app, regress_sp_admin, regress_sp_nobody;
CREATE ROLE regress_sp_app IN ROLE stripepay_user;
CREATE ROLE regress_sp_admin IN ROLE stripepay_admin;
CREATE ROLE regress_sp_nobody;

-- nobody: nothing at all
SET ROLE regress_sp_nobody;
SELECT * FROM stripepay.settings;
SELECT * FROM stripepay.config;
SELECT count(*) FROM stripepay.payment_record;
SELECT stripepay.stripe_pay(1, 'usd', 1000);
SELECT stripepay.configure(brand_name => 'pwned');
RESET ROLE;

-- an application role: pays and reads payments, never keys or settings
SET ROLE regress_sp_app;
SELECT secret_key FROM stripepay.settings;
SELECT * FROM stripepay.config;
-- (a statement refused before stripepay runs is logged by Postgres with its text)
SELECT stripepay.configure(secret_key => 'sk_test_pwned');
SELECT order_id, status FROM stripepay.stripe_pay(900, 'usd', 1000);
SELECT count(*) >= 1 AS can_read_payments FROM stripepay.payment_record;
-- the state tables are read-only: no forged success
UPDATE stripepay.payment_record SET status = 'SUCCESSFUL' WHERE order_id = 900;
INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, created_by, status)
	VALUES (901, 'usd', 1000, 'checkout', 'x', 'SUCCESSFUL');
DELETE FROM stripepay.payment_record;
SELECT nextval('stripepay.payment_record_id_seq');
-- nor a redirect of the key through a search_path trick
CREATE TEMP TABLE settings (secret_key text);
SET search_path = pg_temp, public;
SELECT order_id, created_by FROM stripepay.stripe_pay(902, 'usd', 1000);
RESET search_path;
DROP TABLE pg_temp.settings;
RESET ROLE;

-- an admin: configures, sees the masked key, still cannot read the secret
SET ROLE regress_sp_admin;
SELECT secret_key, brand_name FROM stripepay.configure(brand_name => 'Regress Shop');
SELECT secret_key, mode FROM stripepay.config;
SELECT secret_key FROM stripepay.settings;
RESET ROLE;

SELECT status FROM stripepay.payment_record WHERE order_id = 900;

DROP ROLE regress_sp_app, regress_sp_admin, regress_sp_nobody;
