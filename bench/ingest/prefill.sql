-- The scale phase's history: events first..last of total, made with SQL (not
-- through the ingest) straight into stripepay.webhook_event, so that a big
-- table costs minutes instead of hours.  Each is a Stripe event of the
-- pinned API version whose data.object is a fixture (bench_template, 20
-- slots, the mix in events.py) with its own ids, times and a cart's metadata,
-- about as long as the bench's own events.  Event ids are random, as
-- Stripe's are to the primary key; created spreads over span_days up to
-- now in the order the rows go in, as a shop's history grows.
-- psql variables: first, last, total, seed (text), span_days.
\set ON_ERROR_STOP on
INSERT INTO stripepay.webhook_event (id, type, api_version, livemode, created, object_id,
                                     endpoint, source, order_id, payment_id, payload, received_at)
SELECT e.id, t.type, '2026-10-28.endive', false, e.created, e.object_id, 'default', 'webhook',
       e.order_id, CASE WHEN t.prefix IN ('pi_3Q', 'cs_test_a1', 'ch_3Q') THEN e.order_id + 7 END,
       jsonb_build_object(
           'id', e.id, 'object', 'event', 'api_version', '2026-10-28.endive',
           'created', extract(epoch FROM e.created)::bigint,
           'data', jsonb_build_object('object', t.obj || jsonb_build_object(
               'id', e.object_id,
               'created', extract(epoch FROM e.created)::bigint - 40 - g % 500,
               'metadata', CASE WHEN t.type = 'refund.created' THEN t.obj -> 'metadata'
                                ELSE coalesce(t.obj -> 'metadata', '{}') || e.cart END)),
           'livemode', false, 'pending_webhooks', 1,
           'request', jsonb_build_object('id', 'req_' || left(e.r2, 14), 'idempotency_key',
                                         'stripepay-' || left(e.r1, 8) || '-pay-' || g),
           'type', t.type),
       e.created + (g % 3 + 1) * interval '1 second'
  FROM generate_series(:first, :last) g
  JOIN bench_template t ON t.slot = g % 20
 CROSS JOIN LATERAL (
    SELECT 'evt_' || (ARRAY['1Q', '3Q'])[1 + g % 2] || left(r.r1, 22) AS id,
           t.prefix || left(r.r2, CASE WHEN t.prefix = 'cs_test_a1' THEN 20 ELSE 22 END)
               || CASE WHEN t.prefix = 'cs_test_a1' THEN r.r1 || r.r2 ELSE '' END AS object_id,
           now() - make_interval(days => :span_days)
               + (g::float8 / :total) * make_interval(days => :span_days)
               + (g % 7) * interval '1 second' AS created,
           1000000 + (g * 7919::bigint) % 9000000 AS order_id,
           jsonb_build_object(
               'order_id', (1000000 + (g * 7919::bigint) % 9000000)::text,
               'stripepay_payment_id', (1000007 + (g * 7919::bigint) % 9000000)::text,
               'cart_id', 'cart_' || left(r.r2, 16),
               'customer_ref', 'C' || (10000000 + (g * 104729::bigint) % 90000000)::text,
               'customer_email', (ARRAY['ada', 'grace', 'linus', 'margaret', 'ken', 'barbara', 'dennis',
                   'frances'])[1 + g % 8] || '.' || (ARRAY['lovelace', 'hopper', 'hamilton', 'liskov',
                   'ritchie', 'allen', 'wirth', 'knuth'])[1 + (g / 8) % 8] || (g % 1000)::text
                   || '@example.com',
               'items', (ARRAY[
                   '[{"sku":"comte-24m","name":"Comté 24 months","qty":2,"unit_amount":2450},{"sku":"brie-meaux","name":"Brie de Meaux","qty":1,"unit_amount":1290}]',
                   '[{"sku":"roquefort","name":"Roquefort Papillon","qty":1,"unit_amount":1575},{"sku":"gruyere-aop","name":"Gruyère AOP","qty":3,"unit_amount":1980},{"sku":"manchego","name":"Manchego curado","qty":1,"unit_amount":1420}]',
                   '[{"sku":"stilton","name":"Colston Bassett Stilton","qty":2,"unit_amount":1860},{"sku":"parmigiano","name":"Parmigiano Reggiano 30m","qty":1,"unit_amount":2990}]',
                   '[{"sku":"epoisses","name":"Époisses","qty":1,"unit_amount":1650},{"sku":"comte-24m","name":"Comté 24 months","qty":1,"unit_amount":2450},{"sku":"stilton","name":"Colston Bassett Stilton","qty":2,"unit_amount":1860},{"sku":"brie-meaux","name":"Brie de Meaux","qty":1,"unit_amount":1290}]'
               ])[1 + (g / 3) % 4],
               'shipping_method', (ARRAY['colissimo', 'ups_express', 'dhl_standard', 'pickup'])[1 + (g / 5) % 4],
               'coupon', (ARRAY['', 'WELCOME10', 'SUMMER24', 'FROMAGE5'])[1 + (g / 7) % 4],
               'utm_source', (ARRAY['newsletter', 'google', 'instagram', 'direct'])[1 + (g / 11) % 4],
               'utm_campaign', (ARRAY['autumn_cheese_box', 'brand_search', 'retargeting_q3'])[1 + (g / 13) % 3],
               'locale', (ARRAY['fr-FR', 'en-US', 'en-GB', 'de-DE'])[1 + (g / 17) % 4],
               'app_version', 'web-' || (3 + g % 2) || '.' || (g % 20) || '.' || (g % 10)) AS cart,
           r.r1, r.r2
      FROM (SELECT translate(rtrim(encode(decode(md5(:'seed' || g), 'hex'), 'base64'), '='), '+/', 'Zq') AS r1,
                   translate(rtrim(encode(decode(md5(g || :'seed'), 'hex'), 'base64'), '='), '+/', 'kD') AS r2) r
 ) e
ON CONFLICT (id) DO NOTHING;
