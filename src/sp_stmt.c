/*-------------------------------------------------------------------------
 *
 * sp_stmt.c
 *		Kept statements, run through the executor with privileges checked
 *		as the extension's owner and user code run as the call's run-as role.
 *
 * SPI checks privileges and fires triggers as one user.  A statement that
 * appends a flow row must pass the privilege check as the extension's
 * owner (no other role may write stripepay's tables) while the user's
 * triggers it fires must not run as that owner.  So the statement is
 * started (ExecutorStart checks every table's privileges) as the owner,
 * and run and finished (where BEFORE and AFTER triggers fire) as the
 * run-as role, in the security context a SECURITY DEFINER function uses,
 * which SET ROLE cannot leave, and as a security-restricted operation, as
 * Postgres runs an index's functions: user code can leave no temporary
 * object, cursor or role behind in the caller's session.  It runs in a GUC
 * nest level of its own, so that nothing a trigger sets outlives it.
 *
 * A deferred trigger that user code sets off would fire at commit, as the
 * caller, outside all of this: in a security-restricted operation Postgres
 * refuses to queue one (42501).  A statement's own expressions must
 * then need no privilege at run time: ids come from sp_next_id(), taken as
 * the owner, never from a column default calling nextval().
 *
 * Snapshots and the command counter are handled as a non-read-only SPI
 * call handles them, so each statement sees what was committed before it
 * and everything this transaction did.  No SPI error context is pushed:
 * an error names no internal statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "tcop/dest.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/snapmgr.h"

#include "sp_compat.h"
#include "sp_stmt.h"

/* Collects up to max rows a statement returns into the caller's context. */
typedef struct SpCollector
{
	DestReceiver pub;
	MemoryContext cxt;
	int			max;
	int			n;
	int			capacity;
	TupleDesc	desc;
	HeapTuple  *rows;
} SpCollector;

static bool
collector_receive(TupleTableSlot *slot, DestReceiver *self)
{
	SpCollector *c = (SpCollector *) self;

	if (c->n < c->max)
	{
		MemoryContext old = MemoryContextSwitchTo(c->cxt);

		if (c->n == c->capacity)
		{
			c->capacity = c->capacity == 0 ? Min(c->max, 8) : Min(c->max, c->capacity * 2);
			c->rows = c->rows ? repalloc(c->rows, sizeof(HeapTuple) * c->capacity)
				: palloc(sizeof(HeapTuple) * c->capacity);
		}
		c->rows[c->n++] = ExecCopySlotHeapTuple(slot);
		MemoryContextSwitchTo(old);
	}
	return true;
}

static void
collector_startup(DestReceiver *self, int operation pg_attribute_unused(), TupleDesc typeinfo)
{
	SpCollector *c = (SpCollector *) self;
	MemoryContext old = MemoryContextSwitchTo(c->cxt);

	c->desc = CreateTupleDescCopy(typeinfo);
	MemoryContextSwitchTo(old);
}

static void
collector_shutdown(DestReceiver *self pg_attribute_unused())
{
}

static void
collector_destroy(DestReceiver *self pg_attribute_unused())
{
}

static CachedPlanSource *
sp_stmt_source(SpStmt *stmt)
{
	if (stmt->plan == NULL)
	{
		SPIPlanPtr	plan;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "stripepay: could not connect to SPI");
		plan = SPI_prepare(stmt->sql, stmt->nargs, stmt->argtypes);
		if (plan == NULL)
			elog(ERROR, "stripepay: could not prepare a statement: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "stripepay: could not keep a statement's plan");
		SPI_finish();
		stmt->plan = plan;
	}
	return (CachedPlanSource *) linitial(SPI_plan_get_plan_sources(stmt->plan));
}

/* Where user code runs: the run-as role, and settings of its own. */
typedef struct SpUserCode
{
	Oid			saved_user;
	int			saved_sec;
	int			nestlevel;
} SpUserCode;

static void
user_code_begin(SpUserCode *uc, Oid run_as)
{
	GetUserIdAndSecContext(&uc->saved_user, &uc->saved_sec);
	uc->nestlevel = NewGUCNestLevel();
	SetUserIdAndSecContext(run_as, uc->saved_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

static void
user_code_end(SpUserCode *uc)
{
	/* as after an index function: whatever the triggers set is undone */
	AtEOXact_GUC(false, uc->nestlevel);
	SetUserIdAndSecContext(uc->saved_user, uc->saved_sec);
}

void
sp_stmt_run(SpStmt *stmt, const Datum *values, const bool *nulls, Oid run_as,
			int max_rows, SpRows *out)
{
	CachedPlanSource *source = sp_stmt_source(stmt);
	ParamListInfo params = NULL;
	CachedPlan *cplan;
	PlannedStmt *pstmt;
	QueryDesc  *qd;
	SpCollector collector;
	SpUserCode	uc;
	int			i;

	if (stmt->nargs > 0)
	{
		params = makeParamList(stmt->nargs);
		for (i = 0; i < stmt->nargs; i++)
		{
			ParamExternData *p = &params->params[i];

			p->value = values[i];
			p->isnull = nulls != NULL && nulls[i];
			p->pflags = PARAM_FLAG_CONST;
			p->ptype = stmt->argtypes[i];
		}
	}

	memset(&collector, 0, sizeof(collector));
	collector.pub.receiveSlot = collector_receive;
	collector.pub.rStartup = collector_startup;
	collector.pub.rShutdown = collector_shutdown;
	collector.pub.rDestroy = collector_destroy;
	collector.pub.mydest = DestNone;
	collector.cxt = CurrentMemoryContext;
	collector.max = out != NULL ? max_rows : 0;

	/* as a non-read-only SPI call: a new snapshot that sees our last command */
	PushActiveSnapshot(GetTransactionSnapshot());
	CommandCounterIncrement();
	UpdateActiveSnapshotCommandId();

	cplan = GetCachedPlan(source, params, CurrentResourceOwner, NULL);
	if (list_length(cplan->stmt_list) != 1)
		elog(ERROR, "stripepay: a statement became %d statements", list_length(cplan->stmt_list));
	pstmt = linitial_node(PlannedStmt, cplan->stmt_list);
	qd = CreateQueryDesc(pstmt, source->query_string, GetActiveSnapshot(), InvalidSnapshot,
						 (DestReceiver *) &collector, params, NULL, 0);

	/* privileges are checked here, as the owner */
	ExecutorStart(qd, 0);
	if (OidIsValid(run_as))
		user_code_begin(&uc, run_as);
	SP_EXECUTOR_RUN(qd);
	ExecutorFinish(qd);			/* AFTER triggers */
	if (OidIsValid(run_as))
		user_code_end(&uc);

	if (out != NULL)
	{
		out->processed = qd->estate->es_processed;
		out->nrows = collector.n;
		out->desc = collector.desc;
		out->rows = collector.rows;
	}
	ExecutorEnd(qd);
	FreeQueryDesc(qd);
	ReleaseCachedPlan(cplan, CurrentResourceOwner);

	PopActiveSnapshot();
	CommandCounterIncrement();
}

Datum
sp_rows_get(const SpRows *rows, int row, int col, bool *isnull)
{
	bool		n;
	Datum		d;

	if (row >= rows->nrows || col < 1 || col > rows->desc->natts)
		elog(ERROR, "stripepay: no column %d of row %d in a statement's result", col, row);
	d = heap_getattr(rows->rows[row], col, rows->desc, &n);
	if (isnull)
		*isnull = n;
	return d;
}

int64
sp_rows_int64(const SpRows *rows, int row, int col, bool *isnull)
{
	bool		n;
	Datum		d = sp_rows_get(rows, row, col, &n);

	if (isnull)
		*isnull = n;
	return n ? 0 : DatumGetInt64(d);
}

bool
sp_rows_bool(const SpRows *rows, int row, int col, bool *isnull)
{
	bool		n;
	Datum		d = sp_rows_get(rows, row, col, &n);

	if (isnull)
		*isnull = n;
	return n ? false : DatumGetBool(d);
}

char *
sp_rows_text(const SpRows *rows, int row, int col)
{
	bool		n;
	Datum		d = sp_rows_get(rows, row, col, &n);
	Oid			typoutput;
	bool		varlena;

	if (n)
		return NULL;
	getTypeOutputInfo(TupleDescAttr(rows->desc, col - 1)->atttypid, &typoutput, &varlena);
	return OidOutputFunctionCall(typoutput, d);
}

Datum
sp_rows_composite(const SpRows *rows, int row, FunctionCallInfo fcinfo)
{
	TupleDesc	result;
	Datum	   *values;
	bool	   *nulls;
	int			i;
	int			j;

	if (get_call_result_type(fcinfo, NULL, &result) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "stripepay: return type must be a row type");
	if (row >= rows->nrows)
		elog(ERROR, "stripepay: a statement returned no row to return");
	values = palloc0(sizeof(Datum) * result->natts);
	nulls = palloc(sizeof(bool) * result->natts);
	for (i = 0; i < result->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(result, i);

		nulls[i] = true;
		if (attr->attisdropped)
			continue;
		for (j = 0; j < rows->desc->natts; j++)
		{
			Form_pg_attribute src = TupleDescAttr(rows->desc, j);

			if (!src->attisdropped && namestrcmp(&src->attname, NameStr(attr->attname)) == 0)
			{
				values[i] = heap_getattr(rows->rows[row], j + 1, rows->desc, &nulls[i]);
				break;
			}
		}
	}
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result), values, nulls));
}

Oid
sp_schema_oid(void)
{
	return get_namespace_oid("stripepay", false);
}

int64
sp_next_id(const char *sequence)
{
	Oid			seq = get_relname_relid(sequence, sp_schema_oid());

	if (!OidIsValid(seq))
		elog(ERROR, "stripepay: sequence %s is missing", sequence);
	return DatumGetInt64(DirectFunctionCall1(nextval_oid, ObjectIdGetDatum(seq)));
}

Datum
sp_text_or_null(const char *value, bool *isnull)
{
	*isnull = value == NULL || value[0] == '\0';
	return *isnull ? (Datum) 0 : CStringGetTextDatum(value);
}
