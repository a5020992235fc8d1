-- what a first delivery must write, and nothing else: the event row (payload
-- parsed to jsonb, with its links), the payment moved to SUCCESSFUL, the flow
-- row (which fires the user trigger), in one statement like the ingest's;
-- no signature, no decoding, no look-ups, no rule, no notification.  The
-- ceiling of any implementation that keeps these writes.
\set n :base + :client_id * :per + :i
\set i :i + 1
WITH p AS (
    SELECT id, order_id, payment_intent_id, amount, currency FROM stripepay.payment_record WHERE id = :n
), ev AS (
    INSERT INTO stripepay.webhook_event (id, type, api_version, livemode, created, object_id,
                                         endpoint, order_id, payment_id, payload)
    SELECT e.evt_id, 'payment_intent.succeeded', '2026-10-28.endive', false, now(),
           p.payment_intent_id, 'default', p.order_id, p.id, convert_from(e.body, 'UTF8')::jsonb
      FROM bench_event e JOIN bench_sig s USING (n), p
     WHERE e.n = :n
    RETURNING id, order_id, payment_id
), up AS (
    UPDATE stripepay.payment_record r
       SET status = 'SUCCESSFUL', charge_id = 'ch_3Q' || ev.payment_id, event_created = now(),
           updated_at = now()
      FROM ev
     WHERE r.id = ev.payment_id
    RETURNING r.id
)
INSERT INTO stripepay.payment_flow (event_id, event_type, order_id, payment_id, payment_status,
                                    already_processed, amount, currency)
SELECT ev.id, 'payment_intent.succeeded', ev.order_id, ev.payment_id, 'SUCCESSFUL', false,
       p.amount, p.currency
  FROM ev JOIN up ON up.id = ev.payment_id JOIN p ON p.id = ev.payment_id;
