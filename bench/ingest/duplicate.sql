-- a second delivery of an event already ingested: must answer
-- already_processed = true.  Event numbers go round :events of them, so a
-- database with fewer events gets as many deliveries.
\set n :base + 1 + (:client_id * :per + :i - 1) % :events
\set i :i + 1
SELECT w.already_processed::int AS ap
  FROM bench_event e JOIN bench_sig s USING (n),
       LATERAL stripepay.stripe_ingest_webhook(e.body, s.sig, 'default') w
 WHERE e.n = :n \gset
-- division by zero (the client aborts, the run fails) if it was new
\set ok 1 / :ap
