/*-------------------------------------------------------------------------
 *
 * sp_prune.c
 *		prune_events(): removes events that can never arrive again, in
 *		batches, each committed on its own.
 *
 * An event older than the window can no longer be delivered or listed by
 * Stripe, so its row serves only the record.  Kept whatever their age:
 * events that wait for a payment (their payload is applied later), and for
 * every payment, refund and subscription the events its current state
 * came from (created at or after its event_created), so that each row
 * keeps the evidence of its state.  Everything else older than the window
 * is deleted, row and payload.
 *
 * Events are walked one type at a time through the (type, created) index,
 * in created order, each batch starting after the last one seen, so kept
 * events are read once and no index is added for pruning.  A batch is one
 * short transaction: ingests go on meanwhile, and a delivery of an event
 * being pruned either finds it (already processed) or comes after its
 * deletion and is applied as new, which the never-regress rules make
 * harmless.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "sp_call.h"
#include "sp_lock.h"
#include "sp_prune.h"
#include "sp_stmt.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_prune_events);

#define SP_PRUNE_BATCH 5000

static SpStmt next_type = {
	.sql = "SELECT min(type) FROM stripepay.webhook_event WHERE type > $1",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt candidates = {
	.sql = "SELECT id, created FROM stripepay.webhook_event"
	" WHERE type = $1 AND created < $2 AND (created, id) > ($3, $4)"
	" ORDER BY created, id LIMIT " CppAsString2(SP_PRUNE_BATCH),
	.nargs = 4, .argtypes = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID}
};
static SpStmt prune = {
	.sql = "DELETE FROM stripepay.webhook_event e"
	" WHERE e.id = ANY ($1) AND e.created < $2"
	"   AND NOT EXISTS (SELECT FROM stripepay.waiting_event w WHERE w.event_id = e.id)"
	"   AND NOT EXISTS (SELECT FROM stripepay.payment_record p"
	"                    WHERE p.id = e.payment_id AND p.event_created <= e.created)"
	"   AND NOT EXISTS (SELECT FROM stripepay.refund r"
	"                    WHERE r.id = e.refund_id AND r.event_created <= e.created)"
	"   AND NOT EXISTS (SELECT FROM stripepay.recurring_payment s"
	"                    WHERE s.id = e.recurring_payment_id AND s.event_created <= e.created)",
	.nargs = 2, .argtypes = {TEXTARRAYOID, TIMESTAMPTZOID}
};

/* window in seconds, a month counted as 30 days, as intervals compare */
static double
sp_interval_seconds(const Interval *iv)
{
	return (double) iv->month * DAYS_PER_MONTH * SECS_PER_DAY +
		(double) iv->day * SECS_PER_DAY + (double) iv->time / USECS_PER_SEC;
}

void
sp_prune_check_window(const Interval *window, const char *what)
{
	double		min = (double) SP_PRUNE_MIN_DAYS * SECS_PER_DAY + sp_webhook_tolerance;

	if (sp_interval_seconds(window) < min)
		ereport(ERROR,
				(errcode(ERRCODE_SP_WINDOW_TOO_SHORT),
				 errmsg("%s must be at least %d days and %d seconds", what, SP_PRUNE_MIN_DAYS,
						sp_webhook_tolerance),
				 errdetail("Stripe lists an event for %d days, and a delivery may be signed up to "
						   "stripepay.webhook_tolerance (%d s) later: an event pruned sooner could "
						   "arrive again and be applied as new.", SP_PRUNE_MIN_DAYS,
						   sp_webhook_tolerance)));
}

/* What one transaction of prune_events works in. */
typedef struct SpPruneBatch
{
	SpCall		call;
	int			nestlevel;
} SpPruneBatch;

/*
 * A procedure that commits cannot carry SET clauses, and a commit ends
 * every GUC nest level: each batch sets the search_path its statements are
 * planned with, and takes the owner's rights, anew.
 */
static void
batch_begin(SpPruneBatch *b, FunctionCallInfo fcinfo)
{
	b->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	sp_call_begin(&b->call, fcinfo);
	/* one prune at a time: two would read the same batches */
	sp_lock_int(SP_LOCK_PRUNE, 0);
}

static void
batch_end(SpPruneBatch *b)
{
	sp_call_end(&b->call);
	AtEOXact_GUC(false, b->nestlevel);
	SPI_commit();
}

/*
 * prune_events(older_than interval DEFAULT NULL, INOUT deleted, INOUT kept,
 *				INOUT pruned_before, INOUT batches)
 *
 * A procedure, so that each batch commits: CALL it outside a transaction
 * block.  NULL: the event_retention setting (90 days unless configured).
 */
Datum
stripepay_prune_events(PG_FUNCTION_ARGS)
{
	CallContext *ctx = (CallContext *) fcinfo->context;
	bool		nonatomic = ctx != NULL && IsA(ctx, CallContext) && !ctx->atomic;
	SpPruneBatch batch;
	Interval	window;
	TimestampTz cutoff;
	char	   *type;
	bool		more_of_type = false;
	TimestampTz last_created = DT_NOBEGIN;
	char	   *last_id;
	int64		deleted = 0;
	int64		kept = 0;
	int32		batches = 0;
	MemoryContext proc_cxt;
	MemoryContext batch_cxt;
	TupleDesc	tupdesc;
	Datum		result[4];
	bool		result_nulls[4] = {false, false, false, false};

	if (!nonatomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("prune_events commits after each batch and cannot run inside a transaction block"),
				 errhint("CALL stripepay.prune_events() on its own, as pg_cron and psql's autocommit do.")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "stripepay: could not connect to SPI");
	/* the procedure's context: it outlives the commits */
	proc_cxt = CurrentMemoryContext;
	batch_cxt = AllocSetContextCreate(proc_cxt, "stripepay prune batch", ALLOCSET_DEFAULT_SIZES);
	type = MemoryContextStrdup(proc_cxt, "");
	last_id = MemoryContextStrdup(proc_cxt, "");

	batch_begin(&batch, fcinfo);
	if (PG_ARGISNULL(0))
	{
		memset(&window, 0, sizeof(window));
		window.time = batch.call.settings.event_retention_s * USECS_PER_SEC;
	}
	else
		window = *PG_GETARG_INTERVAL_P(0);
	sp_prune_check_window(&window, "older_than");
	cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(GetCurrentTimestamp()),
													 IntervalPGetDatum(&window)));

	for (;;)
	{
		SpRows		rows;
		SpRows		gone;
		Datum		values[4];
		Datum	   *ids;
		bool		isnull;
		int			i;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(batch_cxt);
		MemoryContextSwitchTo(batch_cxt);
		if (!more_of_type)
		{
			char	   *next;

			/* the next type, through the (type, created) index */
			values[0] = CStringGetTextDatum(type);
			sp_stmt_run(&next_type, values, NULL, SP_AS_OWNER, 1, &rows);
			next = sp_rows_text(&rows, 0, 1);
			if (next == NULL)
				break;
			type = MemoryContextStrdup(proc_cxt, next);
			last_created = DT_NOBEGIN;
			last_id = MemoryContextStrdup(proc_cxt, "");
		}

		values[0] = CStringGetTextDatum(type);
		values[1] = TimestampTzGetDatum(cutoff);
		values[2] = TimestampTzGetDatum(last_created);
		values[3] = CStringGetTextDatum(last_id);
		sp_stmt_run(&candidates, values, NULL, SP_AS_OWNER, SP_PRUNE_BATCH, &rows);
		more_of_type = rows.nrows == SP_PRUNE_BATCH;
		if (rows.nrows == 0)
			continue;
		ids = palloc(sizeof(Datum) * rows.nrows);
		for (i = 0; i < rows.nrows; i++)
			ids[i] = sp_rows_get(&rows, i, 1, &isnull);
		last_created = DatumGetTimestampTz(sp_rows_get(&rows, rows.nrows - 1, 2, &isnull));
		last_id = MemoryContextStrdup(proc_cxt, sp_rows_text(&rows, rows.nrows - 1, 1));

		values[0] = PointerGetDatum(construct_array(ids, rows.nrows, TEXTOID, -1, false, TYPALIGN_INT));
		values[1] = TimestampTzGetDatum(cutoff);
		sp_stmt_run(&prune, values, NULL, batch.call.run_as, 0, &gone);
		deleted += (int64) gone.processed;
		kept += rows.nrows - (int64) gone.processed;
		batches++;

		MemoryContextSwitchTo(proc_cxt);
		batch_end(&batch);
		batch_begin(&batch, fcinfo);
	}
	MemoryContextSwitchTo(proc_cxt);
	sp_call_end(&batch.call);
	AtEOXact_GUC(false, batch.nestlevel);
	SPI_finish();

	result[0] = Int64GetDatum(deleted);
	result[1] = Int64GetDatum(kept);
	result[2] = TimestampTzGetDatum(cutoff);
	result[3] = Int32GetDatum(batches);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, result, result_nulls)));
}
