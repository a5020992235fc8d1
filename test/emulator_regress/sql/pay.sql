-- stripe_pay() against the Stripe emulator that stripepay.api_base points at
\set VERBOSITY default
-- the Request-Id in the CONTEXT line differs per run
\set SHOW_CONTEXT never
SELECT secret_key FROM stripepay.configure(
	secret_key => 'sk_test_4eC39HqLyjWDarjtT1zdp7dc',
	brand_name => 'Regress Shop', success_url => 'https://shop.example/ok',
	cancel_url => 'https://shop.example/cancel', payment_flow => 'checkout');

SELECT order_id, kind, status, currency, amount, amount_refunded, flow,
	   checkout_session_id LIKE 'cs_test_%' AS has_session,
	   checkout_url LIKE 'http%' AS has_url,
	   expires_at > now() AS open, livemode, client_secret IS NULL AS no_secret,
	   created_by
  FROM stripepay.stripe_pay(42, 'USD', 1000);

-- a second call for the same open payment returns it: no second session
SELECT (SELECT id FROM stripepay.stripe_pay(42, 'usd', 1000)) =
	   (SELECT max(id) FROM stripepay.payment_record WHERE order_id = 42) AS same_payment;
SELECT count(*) FROM stripepay.payment_record WHERE order_id = 42;
-- a different amount is a different payment
SELECT amount FROM stripepay.stripe_pay(42, 'usd', 1500);

-- zero- and three-decimal currencies go through as given
SELECT currency, amount FROM stripepay.stripe_pay(43, 'jpy', 500);
SELECT currency, amount FROM stripepay.stripe_pay(44, 'kwd', 1230);
SELECT currency, amount FROM stripepay.stripe_pay(45, 'eur', 1000.000);

-- PaymentIntent flow: a client_secret for Stripe Elements
SELECT payment_flow FROM stripepay.configure(payment_flow => 'payment_intent');
SELECT status, flow, checkout_url IS NULL AS no_url, payment_intent_id LIKE 'pi_%' AS has_intent,
	   client_secret LIKE 'pi_%_secret_%' AS has_client_secret
  FROM stripepay.stripe_pay(46, 'usd', 2000);
SELECT payment_flow FROM stripepay.configure(payment_flow => 'checkout');

-- an order that is paid cannot be charged again
UPDATE stripepay.payment_record SET status = 'SUCCESSFUL' WHERE order_id = 43;
SELECT stripepay.stripe_pay(43, 'jpy', 500);
\echo :LAST_ERROR_SQLSTATE

-- Stripe's own errors come back with their SQLSTATE, and nothing is stored
SELECT count(*) AS payments_before FROM stripepay.payment_record;
SELECT secret_key FROM stripepay.configure(secret_key => 'sk_test_invalidkey1234');
SELECT stripepay.stripe_pay(47, 'usd', 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS payments_after FROM stripepay.payment_record;

-- no key configured at all
SELECT secret_key FROM stripepay.configure(secret_key => '');
SELECT stripepay.stripe_pay(47, 'usd', 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT secret_key FROM stripepay.configure(secret_key => 'sk_test_4eC39HqLyjWDarjtT1zdp7dc');

-- Checkout needs a success_url
SELECT success_url FROM stripepay.configure(success_url => '');
SELECT stripepay.stripe_pay(47, 'usd', 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT success_url FROM stripepay.configure(success_url => 'https://shop.example/ok');
