-- configure(): validation, partial updates, masking
\set VERBOSITY default
SELECT count(*) AS settings_rows FROM stripepay.settings;

-- a key of the wrong shape is refused, and nothing is stored
SELECT stripepay.configure(secret_key => 'not-a-key');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(secret_key => 'pk_test_abcdefghijkl');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(secret_key => 'whsec_abcdefghijkl');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(secret_key => 'sk_test_short');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(secret_key => 'sk_prod_abcdefghijkl');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(secret_key => 'sk_test_abc def ghij kl');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(publishable_key => 'sk_test_abcdefghijkl');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(success_url => 'javascript:alert(1)');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(success_url => 'https://');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(cancel_url => 'https://shop.example/a b');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(brand_logo => 'ftp://shop.example/logo.png');
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(brand_name => repeat('x', 251));
\echo :LAST_ERROR_SQLSTATE
SELECT stripepay.configure(payment_flow => 'invoice');
\echo :LAST_ERROR_SQLSTATE
-- a valid key beside an invalid URL: the whole call changes nothing
SELECT stripepay.configure(secret_key => 'sk_test_4eC39HqLyjWDarjtT1zdp7dc', success_url => 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS settings_rows FROM stripepay.settings;

-- valid settings; the returned row masks the key
SELECT secret_key, publishable_key, mode, brand_name, brand_logo, brand_slogan, success_url, cancel_url, payment_flow
  FROM stripepay.configure(
	secret_key => 'sk_test_4eC39HqLyjWDarjtT1zdp7dc',
	publishable_key => 'pk_test_TYooMQauvdEDq54NiTphI7jx',
	brand_name => 'Tom & Jerry = [best]',
	brand_logo => 'https://shop.example/logo.png',
	brand_slogan => 'Cheese, delivered',
	success_url => 'https://shop.example/paid?session={CHECKOUT_SESSION_ID}',
	cancel_url => 'https://shop.example/cart');

-- only what is passed changes
SELECT secret_key, brand_name, brand_slogan, payment_flow
  FROM stripepay.configure(brand_slogan => 'New slogan');
SELECT secret_key, brand_name, brand_slogan, payment_flow
  FROM stripepay.configure(payment_flow => 'payment_intent');
-- '' clears a setting (payment_flow goes back to its default)
SELECT brand_slogan, payment_flow
  FROM stripepay.configure(brand_slogan => '', payment_flow => '');

-- test and live keys do not mix
SELECT stripepay.configure(publishable_key => 'pk_live_TYooMQauvdEDq54NiTphI7jx');
\echo :LAST_ERROR_SQLSTATE
SELECT publishable_key FROM stripepay.config;

-- restricted keys are accepted; the view shows the mode
SELECT secret_key, mode FROM stripepay.configure(secret_key => 'rk_test_51Habcdefghijklmnop', publishable_key => '');
SELECT stripepay.mask_key('sk_live_51HxYzAbCdEfGh1234'), stripepay.mask_key('short');

-- back to the key the other tests use
SELECT secret_key FROM stripepay.configure(secret_key => 'sk_test_4eC39HqLyjWDarjtT1zdp7dc',
	brand_slogan => 'Cheese, delivered', publishable_key => 'pk_test_TYooMQauvdEDq54NiTphI7jx');
