-- the floor of a call through pgbench: a round trip with nothing in it
SELECT 1;
