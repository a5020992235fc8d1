-- stripe_pay(): every bad call is refused before Stripe is called, and changes nothing
\set VERBOSITY default
SELECT count(*) AS payments_before FROM stripepay.payment_record \gset

SELECT stripepay.stripe_pay(NULL, 'usd', 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, NULL, 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'usd', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'xyz', 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'dollars', 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'usd', 10.5);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'usd', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'usd', -100);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'usd', 'NaN');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'usd', 'Infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'usd', 100000000);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'usd', 1e30);
\echo :LAST_ERROR_SQLSTATE
-- Stripe's minimum charge, per currency
SELECT stripepay.stripe_pay(1, 'usd', 49);
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.stripe_pay(1, 'gbp', 29);
\echo :LAST_ERROR_SQLSTATE
-- zero-decimal: 49 JPY is ¥49, not ¥0.49
SELECT stripepay.stripe_pay(1, 'jpy', 49);
\echo :LAST_ERROR_SQLSTATE
-- three-decimal: the last digit must be 0
SELECT stripepay.stripe_pay(1, 'kwd', 1235);
\echo :LAST_ERROR_SQLSTATE
-- ISK: whole krónur only
SELECT stripepay.stripe_pay(1, 'isk', 10050);
\echo :LAST_ERROR_SQLSTATE

SELECT count(*) = :payments_before AS nothing_stored FROM stripepay.payment_record;
