/*-------------------------------------------------------------------------
 *
 * sp_user_triggers.c
 *		The users' triggers on stripepay's tables, kept through pg_dump.
 *
 * pg_dump writes the rows of an extension's configuration tables but none
 * of their triggers: it dumps a member table's definition to no one, and
 * triggers go with the definition.  The actionflows are such triggers, so
 * a dump restored on another server would take payments and tell no order.
 *
 * Two event triggers keep stripepay.user_trigger, a configuration table,
 * equal to the triggers users made on stripepay's tables (their definition
 * and whether each is enabled), after any DDL that could change them.  When
 * pg_restore loads that table, a row trigger makes each trigger it names
 * that is not there yet: the dump carries the triggers as data.
 *
 * Both run as the extension's owner, the owner of stripepay's tables: the
 * event triggers fire for every role's DDL and only read the catalogs and
 * write stripepay.user_trigger; the row trigger runs what that table holds,
 * which only a superuser can write, and only if it is one CREATE TRIGGER
 * on the table the row names.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_user_triggers_changed);
PG_FUNCTION_INFO_V1(stripepay_user_triggers_record);
PG_FUNCTION_INFO_V1(stripepay_user_trigger_restore);

/*
 * Set while this backend writes stripepay.user_trigger or makes a trigger
 * from it: the row trigger then makes nothing, and the event triggers that
 * the trigger it makes sets off record nothing half-restored.
 */
static bool recording = false;

/*
 * The users' triggers on the extension's tables, and the rows that record
 * them, made equal.  A trigger is the extension's own when its function
 * is.  Rows change only when a trigger changed, so this writes nothing on
 * the DDL of any other table.
 */
static const char *const record_sql =
"WITH ext AS ("
"  SELECT e.oid, e.extnamespace FROM pg_catalog.pg_extension e WHERE e.extname = 'stripepay'),"
" members AS ("
"  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext"
"   WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass"
"     AND d.refobjid = ext.oid AND d.deptype = 'e'),"
" present AS ("
"  SELECT c.relname AS table_name, t.tgname AS trigger_name,"
"         pg_catalog.pg_get_triggerdef(t.oid) AS definition, t.tgenabled::text AS enabled"
"    FROM pg_catalog.pg_trigger t"
"    JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
"    JOIN members m ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND m.objid = c.oid"
"   WHERE NOT t.tgisinternal"
"     AND NOT EXISTS (SELECT 1 FROM members f"
"                      WHERE f.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass"
"                        AND f.objid = t.tgfoid)),"
" gone AS ("
"  DELETE FROM stripepay.user_trigger u"
"   WHERE NOT EXISTS (SELECT 1 FROM present p"
"                      WHERE p.table_name = u.table_name AND p.trigger_name = u.trigger_name))"
" INSERT INTO stripepay.user_trigger AS u (table_name, trigger_name, definition, enabled)"
" SELECT table_name, trigger_name, definition, enabled FROM present"
" ON CONFLICT (table_name, trigger_name) DO UPDATE"
"   SET definition = EXCLUDED.definition, enabled = EXCLUDED.enabled,"
"       recorded_at = pg_catalog.now()"
"   WHERE (u.definition, u.enabled) IS DISTINCT FROM (EXCLUDED.definition, EXCLUDED.enabled)";

/* The extension's owner, who owns its tables: the owner of this function. */
static Oid
function_owner(FunctionCallInfo fcinfo)
{
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "stripepay: cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * The relation stripepay.<name> while the extension is installed, or
 * InvalidOid.  The control file fixes the schema's name.
 */
static Oid
extension_relation(const char *name)
{
	Oid			schema;

	if (!OidIsValid(get_extension_oid("stripepay", true)))
		return InvalidOid;
	schema = get_namespace_oid("stripepay", true);
	return OidIsValid(schema) ? get_relname_relid(name, schema) : InvalidOid;
}

/*
 * Runs work(arg) connected to SPI as the extension's owner, with recording
 * set: what it does sets off no recording nor restoring of its own.
 */
static void
as_owner_recording(FunctionCallInfo fcinfo, void (*work) (void *), void *arg)
{
	Oid			saved_user;
	int			saved_sec;

	GetUserIdAndSecContext(&saved_user, &saved_sec);
	SetUserIdAndSecContext(function_owner(fcinfo), saved_sec | SECURITY_LOCAL_USERID_CHANGE);
	recording = true;
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "stripepay: SPI_connect failed");
		work(arg);
		SPI_finish();
	}
	PG_FINALLY();
	{
		recording = false;
	}
	PG_END_TRY();
	SetUserIdAndSecContext(saved_user, saved_sec);
}

static void
record_user_triggers(void *unused pg_attribute_unused())
{
	if (SPI_execute(record_sql, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "stripepay: recording the users' triggers failed");
}

/*
 * The event triggers: after CREATE, ALTER or DROP TRIGGER, ALTER TABLE
 * (ENABLE, DISABLE, RENAME) and any drop.  They fire for all DDL of the
 * database, so they do nothing while the extension itself is made, updated
 * or dropped, or when its table is not there.
 */
Datum
stripepay_user_triggers_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("stripepay._user_triggers_changed() must be called as an event trigger")));
	if (creating_extension || recording || !OidIsValid(extension_relation("user_trigger")))
		PG_RETURN_VOID();
	as_owner_recording(fcinfo, record_user_triggers, NULL);
	PG_RETURN_VOID();
}

/* For the update script: records the triggers made before it. */
Datum
stripepay_user_triggers_record(PG_FUNCTION_ARGS)
{
	as_owner_recording(fcinfo, record_user_triggers, NULL);
	PG_RETURN_VOID();
}

/*
 * The one CREATE TRIGGER of definition, on stripepay.<table_name>, named
 * trigger_name; ERROR for anything else.
 */
static void
check_definition(const char *definition, const char *table_name, const char *trigger_name)
{
	List	   *parsed = raw_parser(definition, RAW_PARSE_DEFAULT);
	CreateTrigStmt *stmt;

	if (list_length(parsed) != 1 ||
		!IsA(linitial_node(RawStmt, parsed)->stmt, CreateTrigStmt))
		ereport(ERROR,
				(errcode(ERRCODE_SP_BAD_USER_TRIGGER),
				 errmsg("stripepay.user_trigger holds something other than one CREATE TRIGGER for trigger \"%s\"",
						trigger_name)));
	stmt = (CreateTrigStmt *) linitial_node(RawStmt, parsed)->stmt;
	if (stmt->relation->schemaname == NULL ||
		strcmp(stmt->relation->schemaname, "stripepay") != 0 ||
		strcmp(stmt->relation->relname, table_name) != 0 ||
		strcmp(stmt->trigname, trigger_name) != 0 ||
		stmt->replace)
		ereport(ERROR,
				(errcode(ERRCODE_SP_BAD_USER_TRIGGER),
				 errmsg("the definition of trigger \"%s\" in stripepay.user_trigger is not of that trigger on stripepay.%s",
						trigger_name, table_name)));
}

static bool
trigger_exists(Oid relid, const char *trigger_name)
{
	Relation	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	bool		found;

	ScanKeyInit(&keys[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(trigger_name));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 2, keys);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return found;
}

static const char *
enable_clause(char enabled)
{
	switch (enabled)
	{
		case TRIGGER_DISABLED:
			return "DISABLE TRIGGER";
		case TRIGGER_FIRES_ON_REPLICA:
			return "ENABLE REPLICA TRIGGER";
		case TRIGGER_FIRES_ALWAYS:
			return "ENABLE ALWAYS TRIGGER";
		default:
			return NULL;
	}
}

typedef struct RecordedTrigger
{
	const char *table_name;
	const char *trigger_name;
	const char *definition;
	char		enabled;
} RecordedTrigger;

static void
make_trigger(void *arg)
{
	RecordedTrigger *trigger = arg;
	const char *clause = enable_clause(trigger->enabled);

	if (SPI_execute(trigger->definition, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "stripepay: making trigger \"%s\" failed", trigger->trigger_name);
	if (clause != NULL &&
		SPI_execute(psprintf("ALTER TABLE stripepay.%s %s %s", quote_identifier(trigger->table_name),
							 clause, quote_identifier(trigger->trigger_name)),
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "stripepay: setting trigger \"%s\" %s failed", trigger->trigger_name, clause);
}

/*
 * AFTER INSERT on stripepay.user_trigger, as pg_restore loads it: makes the
 * trigger a row names when its table has none of that name.
 */
Datum
stripepay_user_trigger_restore(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	row;
	char	   *table_name;
	char	   *trigger_name;
	char	   *definition;
	char	   *enabled;
	Oid			relid;
	RecordedTrigger trigger;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("stripepay._user_trigger_restore() must be called as a row trigger on insert")));
	if (recording)
		return PointerGetDatum(NULL);

	desc = RelationGetDescr(trigdata->tg_relation);
	row = trigdata->tg_trigtuple;
	table_name = SPI_getvalue(row, desc, SPI_fnumber(desc, "table_name"));
	trigger_name = SPI_getvalue(row, desc, SPI_fnumber(desc, "trigger_name"));
	definition = SPI_getvalue(row, desc, SPI_fnumber(desc, "definition"));
	enabled = SPI_getvalue(row, desc, SPI_fnumber(desc, "enabled"));
	if (table_name == NULL || trigger_name == NULL || definition == NULL || enabled == NULL)
		elog(ERROR, "stripepay: a row of stripepay.user_trigger has a NULL");

	relid = extension_relation(table_name);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_SP_BAD_USER_TRIGGER),
				 errmsg("stripepay has no table \"%s\" for trigger \"%s\"", table_name, trigger_name)));
	if (trigger_exists(relid, trigger_name))
		return PointerGetDatum(NULL);
	check_definition(definition, table_name, trigger_name);

	trigger.table_name = table_name;
	trigger.trigger_name = trigger_name;
	trigger.definition = definition;
	trigger.enabled = enabled[0];
	as_owner_recording(fcinfo, make_trigger, &trigger);
	ereport(LOG,
			(errmsg("stripepay: made trigger \"%s\" on stripepay.%s from stripepay.user_trigger",
					trigger_name, table_name)));
	return PointerGetDatum(NULL);
}
