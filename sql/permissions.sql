-- The permission model as a matrix, from the catalogs: roles x functions and tables
DROP ROLE IF EXISTS regress_sp_plain;
CREATE ROLE regress_sp_plain;

SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS function,
	   has_function_privilege('stripepay_admin', p.oid, 'EXECUTE') AS admin,
	   has_function_privilege('stripepay_user', p.oid, 'EXECUTE') AS "user",
	   has_function_privilege('stripepay_webhook', p.oid, 'EXECUTE') AS webhook,
	   has_function_privilege('regress_sp_plain', p.oid, 'EXECUTE') AS plain
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'stripepay' AND p.proname !~ '^_'
 ORDER BY 1;

SELECT c.relname AS relation,
	   concat_ws(',', CASE WHEN has_table_privilege('stripepay_admin', c.oid, 'SELECT') THEN 'select' END,
				 CASE WHEN has_table_privilege('stripepay_admin', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') THEN 'write' END,
				 CASE WHEN has_table_privilege('stripepay_admin', c.oid, 'TRIGGER') THEN 'trigger' END) AS admin,
	   concat_ws(',', CASE WHEN has_table_privilege('stripepay_user', c.oid, 'SELECT') THEN 'select' END,
				 CASE WHEN has_table_privilege('stripepay_user', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') THEN 'write' END,
				 CASE WHEN has_table_privilege('stripepay_user', c.oid, 'TRIGGER') THEN 'trigger' END) AS "user",
	   concat_ws(',', CASE WHEN has_table_privilege('stripepay_webhook', c.oid, 'SELECT') THEN 'select' END,
				 CASE WHEN has_table_privilege('stripepay_webhook', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') THEN 'write' END) AS webhook,
	   concat_ws(',', CASE WHEN has_table_privilege('regress_sp_plain', c.oid, 'SELECT') THEN 'select' END,
				 CASE WHEN has_table_privilege('regress_sp_plain', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') THEN 'write' END) AS plain
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'stripepay' AND c.relkind IN ('r', 'v')
 ORDER BY 1;

-- no function is SECURITY DEFINER: each takes its owner's rights in C,
-- knowing its caller, and runs users' triggers as the flow role
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'stripepay' AND p.prosecdef;

-- every function is C
SELECT p.proname, l.lanname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
 WHERE n.nspname = 'stripepay' AND l.lanname <> 'c';

-- every one pins its search_path, but those that look nothing up by name
-- (mask_key, _advances, the settings trigger) and prune_events, a procedure
-- that commits, which no SET clause may carry: it sets its own
SELECT p.proname, p.proconfig
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'stripepay'
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
 ORDER BY 1;

-- a plain role cannot refund, even an existing payment, nor sync or refresh
SET ROLE regress_sp_plain;
SELECT stripepay.stripe_refund(1, 100);
SELECT stripepay.sync_events();
SELECT stripepay.refresh_payment(1);
RESET ROLE;
DROP ROLE regress_sp_plain;

-- the catalog documents itself: \df+, \d+ and \dy+ describe every object
-- of the extension, every column of its tables and views included (the
-- schema is not the extension's: DROP EXTENSION leaves it)
SELECT what FROM (
	SELECT 'function ' || p.oid::regprocedure AS what, obj_description(p.oid, 'pg_proc') AS d
	  FROM pg_proc p WHERE p.pronamespace = 'stripepay'::regnamespace
	UNION ALL
	SELECT 'relation ' || c.oid::regclass, obj_description(c.oid, 'pg_class')
	  FROM pg_class c WHERE c.relnamespace = 'stripepay'::regnamespace AND c.relkind IN ('r', 'v')
	UNION ALL
	SELECT 'column ' || c.oid::regclass || '.' || a.attname, col_description(c.oid, a.attnum)
	  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
	 WHERE c.relnamespace = 'stripepay'::regnamespace AND c.relkind IN ('r', 'v')
	   AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT 'event trigger ' || e.evtname, obj_description(e.oid, 'pg_event_trigger')
	  FROM pg_event_trigger e JOIN pg_depend dep ON dep.objid = e.oid
	   AND dep.classid = 'pg_event_trigger'::regclass AND dep.deptype = 'e'
	   AND dep.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stripepay')
) objects WHERE d IS NULL ORDER BY 1;
