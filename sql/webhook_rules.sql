-- The never-regress rule of webhook ingestion, as a truth table
SELECT kind, cur, new, stripepay._advances(kind, cur, timestamptz '2026-01-01 00:00:10', new, timestamptz '2026-01-01 00:00:00' + d * interval '10 s') AS advances, (d - 1) * 10 AS seconds_later
FROM (VALUES
	('payment', 'PENDING', 'SUCCESSFUL'), ('payment', 'SUCCESSFUL', 'PENDING'),
	('payment', 'SUCCESSFUL', 'FAILED'), ('payment', 'FAILED', 'PENDING'),
	('payment', 'CANCELED', 'SUCCESSFUL'), ('payment', 'SUCCESSFUL', 'CANCELED'),
	('refund', 'PENDING', 'SUCCEEDED'), ('refund', 'SUCCEEDED', 'FAILED'),
	('refund', 'FAILED', 'SUCCEEDED'), ('refund', 'SUCCEEDED', 'PENDING'),
	('subscription', 'INCOMPLETE', 'ACTIVE'), ('subscription', 'ACTIVE', 'PAST_DUE'),
	('subscription', 'PAST_DUE', 'ACTIVE'), ('subscription', 'ACTIVE', 'INCOMPLETE'),
	('subscription', 'CANCELED', 'ACTIVE'), ('subscription', 'ACTIVE', 'CANCELED'))
	AS t(kind, cur, new),
	(VALUES (0), (1), (2)) AS s(d)
ORDER BY kind, cur, new, d;

-- no state yet: anything goes; no new state: nothing moves
SELECT stripepay._advances('payment', NULL, NULL, 'PENDING', now()),
	   stripepay._advances('payment', 'PENDING', now(), NULL, now());
