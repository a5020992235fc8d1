-- baseline (b): baseline (a) plus a pg_notify with a small payload (the
-- size of stripepay's), in the same transaction, in one statement
\set n :base + :client_id * :per + :i
\set i :i + 1
WITH ins AS (
    INSERT INTO bench_sink_b (payload)
    SELECT convert_from(e.body, 'UTF8')::jsonb FROM bench_event e JOIN bench_sig s USING (n) WHERE e.n = :n
    RETURNING 1)
SELECT pg_notify('x', '{"amount": 1999, "status": "SUCCESSFUL", "currency": "usd", "event_id": "evt_bench", "order_id": '
                      || :n || ', "payment_id": ' || :n || '}') FROM ins;
