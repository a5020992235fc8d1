-- the floor of a call that writes: one small row and its durable commit,
-- timed apart as pay.sql's are
\set n :base + :client_id * :per + :i
\set i :i + 1
BEGIN;
INSERT INTO public.bench_commit (n) VALUES (:n);
END;
