-- baseline (a): a bare INSERT of the same ~3 kB payload into a jsonb table,
-- one statement per transaction, fetched the same way as the ingest's
\set n :base + :client_id * :per + :i
\set i :i + 1
INSERT INTO bench_sink_a (payload)
SELECT convert_from(e.body, 'UTF8')::jsonb FROM bench_event e JOIN bench_sig s USING (n) WHERE e.n = :n;
