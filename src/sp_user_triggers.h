/*-------------------------------------------------------------------------
 *
 * sp_user_triggers.h
 *		SQL that tells the users' triggers on stripepay's tables, for the
 *		event triggers that record them and for the settings that refuse
 *		calls while a restore's are missing.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_USER_TRIGGERS_H
#define SP_USER_TRIGGERS_H

/* the extension's member objects, as CTE "members" */
#define SP_MEMBERS_CTE \
	"WITH ext AS (" \
	"  SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'stripepay')," \
	" members AS (" \
	"  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext" \
	"   WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass" \
	"     AND d.refobjid = ext.oid AND d.deptype = 'e')"

/* trigger t is a user's: not internal, and its function not the extension's */
#define SP_USER_TRIGGER_COND \
	"NOT t.tgisinternal AND NOT EXISTS (SELECT 1 FROM members f" \
	"  WHERE f.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND f.objid = t.tgfoid)"

/* the trigger that stripepay.user_trigger row u records exists */
#define SP_RECORDED_TRIGGER_EXISTS \
	"EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t" \
	"          JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid" \
	"         WHERE c.relnamespace = 'stripepay'::pg_catalog.regnamespace" \
	"           AND c.relname = u.table_name AND t.tgname = u.trigger_name)"

#endif							/* SP_USER_TRIGGERS_H */
