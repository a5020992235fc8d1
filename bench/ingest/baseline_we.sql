-- (BENCH_VARIANTS=1) the event's own row alone: a bare INSERT of the same
-- payload into a copy of stripepay.webhook_event (text primary key and the
-- (type, created) index), as the ingest stores it
\set n :base + :client_id * :per + :i
\set i :i + 1
INSERT INTO bench_sink_we (id, type, api_version, livemode, created, object_id, endpoint, payload)
SELECT e.evt_id, 'payment_intent.succeeded', '2026-10-28.endive', false, now(), 'pi_x', 'default',
       convert_from(e.body, 'UTF8')::jsonb
  FROM bench_event e JOIN bench_sig s USING (n) WHERE e.n = :n;
