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
 * equal to the triggers users made on stripepay's tables (definition, and
 * whether each is enabled): after DDL that made, renamed, enabled or
 * disabled one, and after a drop of one.  They write only when such DDL
 * touched a stripepay table, and only the rows that changed, so that the
 * DDL of the rest of the database never waits on them.
 *
 * A restore loads the rows, not the triggers.  Making the triggers while
 * pg_restore still loads the tables would fire them over every restored
 * row, as the superuser restoring; so a superuser makes them afterwards,
 * with stripepay.restore_user_triggers(), and until then every stripepay
 * call that could fire a flow refuses (sp_call.c): no event is applied
 * without the triggers that act on it.
 *
 * These functions run as the extension's owner, the owner of its tables.
 * The event triggers fire for every role's DDL, read the catalogs and write
 * stripepay.user_trigger; restore_user_triggers runs what that table holds,
 * which only a superuser can write, and only when it is one CREATE TRIGGER
 * on the table its row names.  Triggers on stripepay.user_trigger and
 * stripepay.notify_outbox, which stripepay writes as the owner, and rules
 * on any stripepay table, whose actions run with the owner's rights, are
 * refused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "sp_user_triggers.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_user_triggers_changed);
PG_FUNCTION_INFO_V1(stripepay_user_triggers_dropped);
PG_FUNCTION_INFO_V1(stripepay_user_triggers_record);
PG_FUNCTION_INFO_V1(stripepay_restore_user_triggers);

/*
 * Set while this backend writes stripepay.user_trigger or makes a trigger
 * from it: the event triggers that sets off have nothing to record.
 */
static bool recording = false;

/*
 * The stripepay tables the current DDL command touched: the table altered,
 * the table of a trigger or rule made or altered.
 */
static const char *const touched_sql =
SP_MEMBERS_CTE
", touched AS ("
"  SELECT CASE d.classid"
"         WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN"
"           (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = d.objid)"
"         WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN"
"           (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid)"
"         WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN d.objid END AS relid"
"    FROM pg_catalog.pg_event_trigger_ddl_commands() d)"
" SELECT DISTINCT t.relid FROM touched t JOIN members m"
"   ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND m.objid = t.relid";

/* what a user may not add to the touched tables: see the file's comment */
static const char *const forbidden_sql =
SP_MEMBERS_CTE
" SELECT 'trigger \"' || t.tgname || '\" on stripepay.' || c.relname, false"
"   FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
"  WHERE t.tgrelid OPERATOR(pg_catalog.=) ANY ($1)"
"    AND c.relname IN ('user_trigger', 'notify_outbox') AND " SP_USER_TRIGGER_COND
" UNION ALL"
" SELECT 'rule \"' || r.rulename || '\" on stripepay.' || c.relname, true"
"   FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class"
"  WHERE r.ev_class OPERATOR(pg_catalog.=) ANY ($1) AND r.rulename <> '_RETURN'"
" LIMIT 1";

/*
 * The users' triggers of the given stripepay tables (all of them when $1 is
 * NULL) recorded where their row is missing or differs; rows that did not
 * change are not touched, and so not locked.
 */
static const char *const record_sql =
SP_MEMBERS_CTE
", present AS ("
"  SELECT c.relname AS table_name, t.tgname AS trigger_name,"
"         pg_catalog.pg_get_triggerdef(t.oid) AS definition, t.tgenabled::text AS enabled"
"    FROM pg_catalog.pg_trigger t"
"    JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
"    JOIN members m ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND m.objid = c.oid"
"   WHERE ($1 IS NULL OR t.tgrelid OPERATOR(pg_catalog.=) ANY ($1)) AND " SP_USER_TRIGGER_COND "),"
" changed AS ("
"  SELECT p.* FROM present p LEFT JOIN stripepay.user_trigger u"
"      ON u.table_name = p.table_name AND u.trigger_name = p.trigger_name"
"   WHERE u.table_name IS NULL"
"      OR (u.definition, u.enabled) IS DISTINCT FROM (p.definition, p.enabled))"
" INSERT INTO stripepay.user_trigger AS u (table_name, trigger_name, definition, enabled)"
" SELECT table_name, trigger_name, definition, enabled FROM changed"
" ON CONFLICT (table_name, trigger_name) DO UPDATE"
"   SET definition = EXCLUDED.definition, enabled = EXCLUDED.enabled,"
"       recorded_at = pg_catalog.now()";

/* ALTER TRIGGER ... RENAME: the row follows the trigger */
static const char *const rename_sql =
"UPDATE stripepay.user_trigger SET trigger_name = $3, recorded_at = pg_catalog.now()"
" WHERE table_name = $1 AND trigger_name = $2";

/* the rows of the triggers a drop removed from stripepay's tables */
static const char *const forget_sql =
"DELETE FROM stripepay.user_trigger u"
" USING pg_catalog.pg_event_trigger_dropped_objects() o"
" WHERE o.object_type = 'trigger' AND o.address_names[1] = 'stripepay'"
"   AND u.table_name = o.address_names[2] AND u.trigger_name = o.address_names[3]";

/* rows whose trigger is not there: a restore's, until they are made */
static const char *const missing_sql =
"SELECT u.table_name, u.trigger_name, u.definition, u.enabled"
"  FROM stripepay.user_trigger u"
" WHERE NOT " SP_RECORDED_TRIGGER_EXISTS
" ORDER BY u.table_name, u.trigger_name";

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

/* Whether stripepay.user_trigger is there: not while the extension is dropped. */
static bool
installed(void)
{
	Oid			schema;

	if (!OidIsValid(get_extension_oid("stripepay", true)))
		return false;
	/* the control file fixes the schema's name */
	schema = get_namespace_oid("stripepay", true);
	return OidIsValid(schema) && OidIsValid(get_relname_relid("user_trigger", schema));
}

/*
 * Runs work(arg) connected to SPI as the extension's owner, with recording
 * set.  Errors keep a context of their own: the statements are the
 * extension's, and no caller needs to see them.
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
run(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expected)
{
	int			rc = nargs > 0 ? SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0)
		: SPI_execute(sql, false, 0);

	if (rc != expected)
		elog(ERROR, "stripepay: recording the users' triggers failed (%s)", SPI_result_code_string(rc));
}

static void
record_tables(Datum relids, bool all)
{
	Oid			type = OIDARRAYOID;

	run(record_sql, 1, &type, &relids, all ? "n" : " ", SPI_OK_INSERT);
}

typedef struct DdlEnd
{
	Node	   *parsetree;
} DdlEnd;

static void
after_ddl(void *arg)
{
	DdlEnd	   *ddl = arg;
	Datum	   *elems;
	ArrayType  *relids;
	Oid			type = OIDARRAYOID;
	Datum		value;
	uint64		i;

	/* not read-only: the snapshot must see what this command made */
	if (SPI_execute(touched_sql, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "stripepay: reading the DDL's objects failed");
	if (SPI_processed == 0)
		return;
	elems = palloc(sizeof(Datum) * SPI_processed);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		elems[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
	}
	relids = construct_array(elems, (int) SPI_processed, OIDOID, sizeof(Oid), true, TYPALIGN_INT);
	value = PointerGetDatum(relids);

	if (SPI_execute_with_args(forbidden_sql, 1, &type, &value, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "stripepay: reading the DDL's objects failed");
	if (SPI_processed > 0)
	{
		bool		isnull;
		bool		is_rule = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
														 2, &isnull));

		ereport(ERROR,
				(errcode(ERRCODE_SP_BAD_USER_TRIGGER),
				 errmsg("stripepay does not allow %s",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 is_rule ?
				 errdetail("A rule's actions run with the rights of the table's owner, the extension's owner.") :
				 errdetail("stripepay writes that table as the extension's owner: the trigger would run as that owner."),
				 errhint("Attach actionflow triggers to payment_flow, refund_flow, subscription_flow, "
						 "deduction_flow or webhook_event.")));
	}

	if (IsA(ddl->parsetree, RenameStmt) &&
		((RenameStmt *) ddl->parsetree)->renameType == OBJECT_TRIGGER)
	{
		RenameStmt *stmt = (RenameStmt *) ddl->parsetree;
		Oid			types[3] = {NAMEOID, NAMEOID, NAMEOID};
		Datum		values[3];

		values[0] = DirectFunctionCall1(namein, CStringGetDatum(stmt->relation->relname));
		values[1] = DirectFunctionCall1(namein, CStringGetDatum(stmt->subname));
		values[2] = DirectFunctionCall1(namein, CStringGetDatum(stmt->newname));
		run(rename_sql, 3, types, values, NULL, SPI_OK_UPDATE);
	}
	record_tables(value, false);
}

static void
after_drop(void *arg pg_attribute_unused())
{
	run(forget_sql, 0, NULL, NULL, NULL, SPI_OK_DELETE);
}

static bool
nothing_to_do(FunctionCallInfo fcinfo)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("a stripepay event trigger function must be called as an event trigger")));
	/* the extension's own scripts, our own statements, a dropped extension */
	return creating_extension || recording || !installed();
}

/* ddl_command_end of CREATE, ALTER TRIGGER, ALTER TABLE, CREATE RULE */
Datum
stripepay_user_triggers_changed(PG_FUNCTION_ARGS)
{
	DdlEnd		ddl;

	if (nothing_to_do(fcinfo))
		PG_RETURN_VOID();
	ddl.parsetree = ((EventTriggerData *) fcinfo->context)->parsetree;
	as_owner_recording(fcinfo, after_ddl, &ddl);
	PG_RETURN_VOID();
}

/* sql_drop of anything: the rows of the triggers it dropped go */
Datum
stripepay_user_triggers_dropped(PG_FUNCTION_ARGS)
{
	if (nothing_to_do(fcinfo))
		PG_RETURN_VOID();
	as_owner_recording(fcinfo, after_drop, NULL);
	PG_RETURN_VOID();
}

static void
record_all(void *arg pg_attribute_unused())
{
	record_tables((Datum) 0, true);
}

/* For the update script: records the triggers made before it. */
Datum
stripepay_user_triggers_record(PG_FUNCTION_ARGS)
{
	as_owner_recording(fcinfo, record_all, NULL);
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
		stmt->replace ||
		strcmp(table_name, "user_trigger") == 0 || strcmp(table_name, "notify_outbox") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_BAD_USER_TRIGGER),
				 errmsg("the definition of trigger \"%s\" in stripepay.user_trigger is not of that trigger on stripepay.%s",
						trigger_name, table_name)));
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

typedef struct Restored
{
	MemoryContext cxt;			/* the caller's: SPI's goes at SPI_finish */
	List	   *made;			/* of char *[2]: table, trigger */
} Restored;

static void
make_missing(void *arg)
{
	Restored   *restored = arg;
	SPITupleTable *missing;
	uint64		n;
	uint64		i;

	if (SPI_execute(missing_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "stripepay: reading stripepay.user_trigger failed");
	missing = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		HeapTuple	row = missing->vals[i];
		TupleDesc	desc = missing->tupdesc;
		char	   *table_name = SPI_getvalue(row, desc, 1);
		char	   *trigger_name = SPI_getvalue(row, desc, 2);
		char	   *definition = SPI_getvalue(row, desc, 3);
		char	   *enabled = SPI_getvalue(row, desc, 4);
		const char *clause;
		char	  **pair;

		if (!OidIsValid(get_relname_relid(table_name, get_namespace_oid("stripepay", false))))
			ereport(ERROR,
					(errcode(ERRCODE_SP_BAD_USER_TRIGGER),
					 errmsg("stripepay has no table \"%s\" for trigger \"%s\"", table_name, trigger_name)));
		check_definition(definition, table_name, trigger_name);
		if (SPI_execute(definition, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "stripepay: making trigger \"%s\" failed", trigger_name);
		clause = enable_clause(enabled[0]);
		if (clause != NULL &&
			SPI_execute(psprintf("ALTER TABLE stripepay.%s %s %s", quote_identifier(table_name),
								 clause, quote_identifier(trigger_name)),
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "stripepay: setting trigger \"%s\" %s failed", trigger_name, clause);
		ereport(LOG,
				(errmsg("stripepay: made trigger \"%s\" on stripepay.%s from stripepay.user_trigger",
						trigger_name, table_name)));
		{
			MemoryContext spi_cxt = MemoryContextSwitchTo(restored->cxt);

			pair = palloc(sizeof(char *) * 2);
			pair[0] = pstrdup(table_name);
			pair[1] = pstrdup(trigger_name);
			restored->made = lappend(restored->made, pair);
			MemoryContextSwitchTo(spi_cxt);
		}
	}
}

/*
 * stripepay.restore_user_triggers(): after pg_restore, makes the triggers
 * whose rows the dump brought, in their state; returns those it made.
 */
Datum
stripepay_restore_user_triggers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Restored	restored = {CurrentMemoryContext, NIL};
	ListCell   *lc;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may make the triggers of a restore")));
	InitMaterializedSRF(fcinfo, 0);
	as_owner_recording(fcinfo, make_missing, &restored);
	foreach(lc, restored.made)
	{
		char	  **pair = lfirst(lc);
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = DirectFunctionCall1(namein, CStringGetDatum(pair[0]));
		values[1] = DirectFunctionCall1(namein, CStringGetDatum(pair[1]));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
