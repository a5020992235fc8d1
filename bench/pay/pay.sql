-- one stripe_pay() for an order of its own (a Checkout Session each), in a
-- transaction of its own so that pgbench -r times the call apart from the
-- commit
\set o :base + :client_id * :per + :i
\set i :i + 1
BEGIN;
SELECT id FROM stripepay.stripe_pay(:o, 'usd', 1999);
END;
