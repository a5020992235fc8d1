-- stripe_ingest_webhook believes only Stripe: every way a delivery is
-- refused, each with its own SQLSTATE, and none stores anything.
\set VERBOSITY default
LOAD 'stripepay';
SET stripepay.api_base = 'http://127.0.0.1:9';	-- nothing here may reach Stripe
SET stripepay.max_retries = 0;
SET stripepay.notify_worker = off;
CALL regress_sp.reset();

-- the body used throughout: a well-formed event, and its good signature
SELECT regress_sp.ev('payment_intent.succeeded', 'evt_refusal_body', 10)::text AS body \gset
SELECT regress_sp.sign(:'body') AS sig \gset

-- SP020: no Stripe-Signature header
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), NULL, 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), '', 'default');
\echo :LAST_ERROR_SQLSTATE

-- SP021: a header that is not t=<unix time>,v1=<64 lower-case hex digits>
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), 'garbage', 'default');
\echo :LAST_ERROR_SQLSTATE
-- no t
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), regexp_replace(:'sig', '^t=[0-9]+,', ''), 'default');
\echo :LAST_ERROR_SQLSTATE
-- t not a number
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), regexp_replace(:'sig', '^t=', 't=x'), 'default');
\echo :LAST_ERROR_SQLSTATE
-- t twice
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), 't=1,' || :'sig', 'default');
\echo :LAST_ERROR_SQLSTATE
-- upper-case hex (Stripe's SDKs compare the hex text: it never matches there)
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), split_part(:'sig', ',', 1) || ',v1=' || upper(split_part(:'sig', 'v1=', 2)), 'default');
\echo :LAST_ERROR_SQLSTATE
-- a v1 cut short, a trailing comma, a line break
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), left(:'sig', -1), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig' || ',', 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), replace(:'sig', ',', E',\n'), 'default');
\echo :LAST_ERROR_SQLSTATE

-- SP022: no v1 signature (other schemes are ignored)
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), split_part(:'sig', ',', 1), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), replace(:'sig', 'v1=', 'v0='), 'default');
\echo :LAST_ERROR_SQLSTATE

-- SP023, SP024: a good signature made more than stripepay.webhook_tolerance
-- (300 s) ago, or ahead (terse: the detail counts the seconds)
\set VERBOSITY terse
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'),
	regress_sp.sign(:'body', at => extract(epoch FROM now())::bigint - 400), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'),
	regress_sp.sign(:'body', at => extract(epoch FROM now())::bigint + 400), 'default');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- SP025: no live secret for the endpoint named, even with a good signature
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig', 'refunds');
\echo :LAST_ERROR_SQLSTATE
-- an expired secret is not live
SELECT endpoint, secret, live FROM stripepay.add_webhook_secret('whsec_regressExpiredSecret0001', 'expired', now() - interval '1 hour');
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'),
	regress_sp.sign(:'body', regress_sp.secret('expired')), 'expired');
\echo :LAST_ERROR_SQLSTATE

-- with no live secret at all, whatever the endpoint
DELETE FROM stripepay.webhook_secret WHERE endpoint IN ('default', 'payments');
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT endpoint, secret, live FROM stripepay.add_webhook_secret('whsec_regressDefaultSecret0001');
SELECT endpoint, secret, live FROM stripepay.add_webhook_secret('whsec_regressPaymentsSecret001', 'payments');

-- SP026: the signature does not match
-- made with another secret
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'),
	regress_sp.sign(:'body', regress_sp.secret('other')), 'default');
\echo :LAST_ERROR_SQLSTATE
-- a body changed after it was signed (one space added)
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body' || ' ', 'UTF8'), :'sig', 'default');
\echo :LAST_ERROR_SQLSTATE
-- a good signature from another time
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'),
	regexp_replace(:'sig', '^t=[0-9]+', 't=' || (extract(epoch FROM now())::bigint - 1)), 'default');
\echo :LAST_ERROR_SQLSTATE
-- signed for the endpoint 'payments', delivered to 'default'; and the reverse
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'),
	regress_sp.sign(:'body', regress_sp.secret('payments')), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig', 'payments');
\echo :LAST_ERROR_SQLSTATE
-- the expired secret does not count when any live secret may (endpoint NULL)
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'),
	regress_sp.sign(:'body', regress_sp.secret('expired')), NULL);
\echo :LAST_ERROR_SQLSTATE

-- SP027: authentic, but not JSON, or JSON that jsonb cannot store
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to('hello', 'UTF8'), regress_sp.sign('hello'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(left(:'body', -1), 'UTF8'), regress_sp.sign(left(:'body', -1)), 'default');
\echo :LAST_ERROR_SQLSTATE
-- two objects
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body' || '{}', 'UTF8'), regress_sp.sign(:'body' || '{}'), 'default');
\echo :LAST_ERROR_SQLSTATE
-- bytes that are not UTF-8 (the bytea variant is checked byte for byte)
SELECT * FROM stripepay.stripe_ingest_webhook('\x7b22696422fe7d'::bytea, regress_sp.sign('\x7b22696422fe7d'::bytea), 'default');
\echo :LAST_ERROR_SQLSTATE
-- \u0000 in a string, which jsonb cannot store, in a field stripepay does not read
SELECT replace(:'body', '"description": null', '"description": "a\u0000b"') AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
-- a number jsonb cannot store (1e999999 overflows numeric), in a field stripepay does not read
SELECT replace(:'body', '"pending_webhooks": 1', '"pending_webhooks": 1e999999') AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
-- nested deeper than any Stripe object (64 levels)
SELECT replace(:'body', '"description": null', '"description": ' || repeat('[', 70) || repeat(']', 70)) AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
-- no payload at all
SELECT * FROM stripepay.stripe_ingest_webhook(NULL::bytea, :'sig', 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(NULL::text, :'sig', 'default');
\echo :LAST_ERROR_SQLSTATE

-- SP028: JSON, but not a Stripe event; the detail names what is missing and where
\set bad '[1, 2]'
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT (:'body'::jsonb - 'id')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT (:'body'::jsonb || '{"id": "pi_not_an_event"}')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT (:'body'::jsonb || '{"type": ""}')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT (:'body'::jsonb || '{"created": "yesterday"}')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT (:'body'::jsonb || '{"created": -1}')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT (:'body'::jsonb - 'livemode')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT (:'body'::jsonb #- '{data,object}')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT (:'body'::jsonb #- '{data,object,object}')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
-- a field stripepay reads, of the wrong type: garbage never becomes 0
SELECT jsonb_set(:'body'::jsonb, '{data,object,amount}', '"1000"')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT jsonb_set(:'body'::jsonb, '{data,object,amount}', '10.5')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
-- an id longer than Stripe's 255 characters
SELECT jsonb_set(:'body'::jsonb, '{data,object,id}', to_jsonb('pi_' || repeat('x', 300)))::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE

-- SP029: a live-mode event, with a test-mode key configured; and a
-- test-mode event with a live-mode key
SELECT (:'body'::jsonb || '{"livemode": true}')::text AS bad \gset
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'bad', 'UTF8'), regress_sp.sign(:'bad'), 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT mode FROM stripepay.configure(secret_key => 'sk_live_4eC39HqLyjWDarjtT1zdp7dc');
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig', 'default');
\echo :LAST_ERROR_SQLSTATE
SELECT mode FROM stripepay.configure(secret_key => 'sk_test_4eC39HqLyjWDarjtT1zdp7dc');

-- SP02A: an endpoint name that is not 1 to 64 of [A-Za-z0-9_.-]; the
-- message is one line, cut at 64 characters, whatever was passed
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig', E'pay\nments');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig', repeat('x', 65) || E'\nERROR:  forged');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig', '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig', '../default');
\echo :LAST_ERROR_SQLSTATE
-- add_webhook_secret refuses such names the same way
SELECT * FROM stripepay.add_webhook_secret('whsec_regressDefaultSecret0001', E'a\tb');
\echo :LAST_ERROR_SQLSTATE

-- none of the refusals stored anything
SELECT (SELECT count(*) FROM stripepay.webhook_event) AS events,
	   (SELECT count(*) FROM stripepay.waiting_event) AS waiting,
	   (SELECT count(*) FROM stripepay.payment_record) AS payments,
	   (SELECT count(*) FROM regress_sp.flow_log) AS flows;

-- The same body and signature are accepted: bytea, then text (a UTF8
-- database); the second delivery is a duplicate.  The payment is unknown
-- and its metadata names order 42: it is adopted.
SELECT * FROM stripepay.stripe_ingest_webhook(convert_to(:'body', 'UTF8'), :'sig', 'default');
SELECT * FROM stripepay.stripe_ingest_webhook(:'body', :'sig', 'default');
-- several v1 signatures (a secret being rolled), unknown schemes ignored:
-- one that matches is enough
SELECT regress_sp.ev('payment_intent.succeeded', 'evt_refusal_rolled', 11)::text AS body2 \gset
SELECT * FROM stripepay.stripe_ingest_webhook(:'body2',
	replace(regress_sp.sign(:'body2'), ',v1=', ',v0=abc,v1=' || repeat('0', 64) || ',v1=') || ',v2=zz', 'default');
-- with no endpoint named, any live secret counts; named, only that one's
SELECT regress_sp.ev('payment_intent.succeeded', 'evt_refusal_any', 12)::text AS body3 \gset
SELECT * FROM stripepay.stripe_ingest_webhook(:'body3', regress_sp.sign(:'body3', 'whsec_regressPaymentsSecret001'), NULL);
SELECT regress_sp.ev('payment_intent.succeeded', 'evt_refusal_named', 13)::text AS body4 \gset
SELECT * FROM stripepay.stripe_ingest_webhook(:'body4', regress_sp.sign(:'body4', 'whsec_regressPaymentsSecret001'), 'payments');
-- a time at the edge of the tolerance is accepted
SELECT regress_sp.ev('payment_intent.succeeded', 'evt_refusal_edge', 14)::text AS body5 \gset
SELECT * FROM stripepay.stripe_ingest_webhook(:'body5',
	regress_sp.sign(:'body5', at => extract(epoch FROM now())::bigint - 290), 'default');
SELECT * FROM regress_sp.events ORDER BY id;
-- the payload is stored as Stripe sent it
SELECT payload = :'body'::jsonb AS payload_kept FROM stripepay.webhook_event WHERE id = 'evt_refusal_body';
SELECT id, order_id, status, amount, intent, charge, t, created_by FROM regress_sp.payments ORDER BY id;
SELECT * FROM regress_sp.flows();

DELETE FROM stripepay.webhook_secret WHERE endpoint = 'expired';
