/*-------------------------------------------------------------------------
 *
 * sp_apply_refund.c
 *		Refunds: refund.* events and a charge's embedded list.
 *
 * A refund is found by its Stripe id, then by the row id stripe_refund()
 * put in its metadata; a refund made elsewhere (the dashboard) is recorded
 * for the payment it names, once that payment has succeeded here.  Until
 * then it waits (sp_engine_wait), under the lock of the ids it names, so
 * that a payment committing at the same moment cannot miss it.
 * payment_record.amount_refunded counts the refunds that are not FAILED or
 * CANCELED, in one statement, the one stripe_refund() uses too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pure/sp_rules.h"
#include "sp_engine.h"
#include "sp_lock.h"
#include "sp_stmt.h"

#define REFUND_COLUMNS "id, payment_id, order_id, status, event_created, amount, currency"

static SpStmt by_stripe_id = {
	.sql = "SELECT " REFUND_COLUMNS " FROM stripepay.refund WHERE stripe_refund_id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt by_metadata = {
	.sql = "SELECT " REFUND_COLUMNS " FROM stripepay.refund"
	" WHERE id = $1 AND stripe_refund_id IS NULL FOR UPDATE",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt by_id = {
	.sql = "SELECT " REFUND_COLUMNS " FROM stripepay.refund WHERE id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt payment_by_ids = {
	.sql = "SELECT id, order_id, status, currency FROM stripepay.payment_record"
	" WHERE ($1::text IS NOT NULL AND payment_intent_id = $1)"
	"    OR ($2::text IS NOT NULL AND charge_id = $2)"
	" LIMIT 1 FOR UPDATE",
	.nargs = 2, .argtypes = {TEXTOID, TEXTOID}
};
static SpStmt lock_payment = {
	.sql = "SELECT 1 FROM stripepay.payment_record WHERE id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt linked_payment = {
	.sql = "SELECT order_id, id FROM stripepay.payment_record"
	" WHERE payment_intent_id = $1 OR charge_id = $2 LIMIT 1",
	.nargs = 2, .argtypes = {TEXTOID, TEXTOID}
};
static SpStmt record_refund = {
	.sql = "INSERT INTO stripepay.refund"
	"   (id, payment_id, order_id, currency, amount, stripe_refund_id, reason, unclaimed_key,"
	"    created_by)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'stripe')"
	" RETURNING " REFUND_COLUMNS,
	.nargs = 8, .argtypes = {INT8OID, INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID}
};
static SpStmt update_refund = {
	.sql = "UPDATE stripepay.refund SET"
	"   status = CASE WHEN $2 THEN $3 ELSE status END,"
	"   event_created = CASE WHEN $2 THEN $4 ELSE event_created END,"
	"   stripe_refund_id = coalesce(stripe_refund_id, $5),"
	"   failure_reason = CASE WHEN $2 AND $3 = 'FAILED' THEN $6 ELSE failure_reason END,"
	"   updated_at = pg_catalog.now()"
	" WHERE id = $1"
	" RETURNING status",
	.nargs = 6, .argtypes = {INT8OID, BOOLOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID}
};
static SpStmt sum_refunds = {
	.sql = "UPDATE stripepay.payment_record p SET"
	"   amount_refunded = least(p.amount, (SELECT coalesce(sum(r.amount), 0) FROM stripepay.refund r"
	"       WHERE r.payment_id = p.id AND r.status IN ('PENDING', 'SUCCEEDED'))),"
	"   updated_at = pg_catalog.now()"
	" WHERE p.id = $1",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt refund_flow = {
	.sql = "INSERT INTO stripepay.refund_flow"
	"   (id, event_id, event_type, order_id, payment_id, refund_id, refund_status, amount,"
	"    already_processed, currency)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	.nargs = 10, .argtypes = {INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID, INT8OID, BOOLOID, TEXTOID}
};

typedef struct RefundRow
{
	int64		id;
	int64		payment_id;
	int64		order_id;
	char	   *status;
	bool		has_event_created;
	TimestampTz event_created;
	int64		amount;
	char	   *currency;
} RefundRow;

typedef struct PaymentOfRefund
{
	bool		found;
	int64		id;
	int64		order_id;
	char	   *status;
	char	   *currency;
} PaymentOfRefund;

static void
read_refund(const SpRows *rows, RefundRow *row)
{
	bool		isnull;
	Datum		d;

	row->id = sp_rows_int64(rows, 0, 1, NULL);
	row->payment_id = sp_rows_int64(rows, 0, 2, NULL);
	row->order_id = sp_rows_int64(rows, 0, 3, NULL);
	row->status = sp_rows_text(rows, 0, 4);
	d = sp_rows_get(rows, 0, 5, &isnull);
	row->has_event_created = !isnull;
	row->event_created = isnull ? 0 : DatumGetTimestampTz(d);
	row->amount = sp_rows_int64(rows, 0, 6, NULL);
	row->currency = sp_rows_text(rows, 0, 7);
}

static bool
lock_refund(SpStmt *stmt, Datum value, RefundRow *row)
{
	SpRows		rows;

	sp_stmt_run(stmt, &value, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
		return false;
	read_refund(&rows, row);
	return true;
}

static void
find_payment(const char *intent, const char *charge, PaymentOfRefund *p)
{
	Datum		values[2];
	bool		nulls[2];
	SpRows		rows;

	values[0] = sp_text_or_null(intent, &nulls[0]);
	values[1] = sp_text_or_null(charge, &nulls[1]);
	memset(p, 0, sizeof(*p));
	if (nulls[0] && nulls[1])
		return;
	sp_stmt_run(&payment_by_ids, values, nulls, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
		return;
	p->found = true;
	p->id = sp_rows_int64(&rows, 0, 1, NULL);
	p->order_id = sp_rows_int64(&rows, 0, 2, NULL);
	p->status = sp_rows_text(&rows, 0, 3);
	p->currency = sp_rows_text(&rows, 0, 4);
}

static bool
succeeded(const PaymentOfRefund *p)
{
	return p->found && strcmp(p->status, "SUCCESSFUL") == 0;
}

/* One refund, from a refund.* event or from a charge's embedded list. */
static void
apply_one(const SpApply *ap, const SpEvent *ev, const char *refund_id, const char *stripe_status,
		  bool has_amount, long long amount, SpLinks *links)
{
	const char *target = sp_refund_target(stripe_status);
	/* a charge's embedded refunds name it as the event's object */
	const char *charge = ev->charge[0] ? ev->charge
		: strcmp(ev->object_type, "charge") == 0 && ev->object_id[0] ? ev->object_id : NULL;
	const char *intent = ev->payment_intent[0] ? ev->payment_intent : NULL;
	TimestampTz at = sp_engine_event_time(ev);
	RefundRow	row;
	PaymentOfRefund p;
	bool		found = false;
	int64		id;
	int64		order_id;
	char	   *prev;
	bool		moved;
	Datum		values[10];
	bool		nulls[10];
	SpRows		rows;

	memset(&p, 0, sizeof(p));
	if (refund_id[0] != '\0')
		found = lock_refund(&by_stripe_id, CStringGetTextDatum(refund_id), &row);
	if (!found && sp_engine_row_id(ev->metadata_refund_id, &id))
		found = lock_refund(&by_metadata, Int64GetDatum(id), &row);
	if (!found)
	{
		/* a refund made elsewhere (the dashboard): find its payment */
		find_payment(intent, charge, &p);
		if (!succeeded(&p) && has_amount && amount > 0)
		{
			/*
			 * Its payment is unknown, or has not succeeded here yet.  A
			 * payment that succeeds takes these ids' locks before it looks
			 * for waiting refunds (after its row lock, as here): look again
			 * under them, and wait only if it has still not succeeded.
			 */
			const char *ids[2] = {intent, charge};

			sp_lock_ids(ids, 2);
			find_payment(intent, charge, &p);
			if (!succeeded(&p))
			{
				sp_engine_wait(ap, ev, ids, 2);
				if (p.found)
				{
					links->has_order = true;
					links->order_id = p.order_id;
					links->payment_id = p.id;
				}
				else
				{
					links->has_order = sp_engine_row_id(ev->metadata_order_id, &order_id);
					links->order_id = order_id;
				}
				return;
			}
		}
		if (!p.found || !has_amount || amount <= 0)
		{
			links->has_order = sp_engine_row_id(ev->metadata_order_id, &order_id);
			links->order_id = order_id;
			return;
		}
		/* stripe_refund() may have made it while we waited for the lock */
		if (refund_id[0] != '\0')
			found = lock_refund(&by_stripe_id, CStringGetTextDatum(refund_id), &row);
	}
	if (!found)
	{
		/*
		 * Made by stripe_refund() (its metadata says so) in a transaction
		 * that rolled back: a retry of that call claims this refund by its
		 * key instead of making another.
		 */
		memset(nulls, false, sizeof(nulls));
		values[0] = Int64GetDatum(sp_next_id("refund_id_seq"));
		values[1] = Int64GetDatum(p.id);
		values[2] = Int64GetDatum(p.order_id);
		values[3] = CStringGetTextDatum(p.currency);
		values[4] = Int64GetDatum((int64) amount);
		values[5] = sp_text_or_null(refund_id, &nulls[5]);
		values[6] = sp_text_or_null(ev->reason, &nulls[6]);
		values[7] = sp_text_or_null(sp_engine_row_id(ev->metadata_refund_id, &id)
									? ev->metadata_refund_key : NULL, &nulls[7]);
		sp_stmt_run(&record_refund, values, nulls, ap->run_as, 1, &rows);
		read_refund(&rows, &row);
	}

	/* the payment first, then the refund: the order stripe_refund() locks in */
	values[0] = Int64GetDatum(row.payment_id);
	sp_stmt_run(&lock_payment, values, NULL, SP_AS_OWNER, 0, NULL);
	if (!lock_refund(&by_id, Int64GetDatum(row.id), &row))
		elog(ERROR, "stripepay: refund " INT64_FORMAT " vanished", row.id);
	prev = row.status;
	moved = sp_state_advances(SP_KIND_REFUND, row.status, row.has_event_created,
							  row.event_created, target, true, at);
	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(row.id);
	values[1] = BoolGetDatum(moved);
	values[2] = sp_text_or_null(target, &nulls[2]);
	values[3] = TimestampTzGetDatum(at);
	values[4] = sp_text_or_null(refund_id, &nulls[4]);
	values[5] = sp_text_or_null(ev->failure_reason, &nulls[5]);
	sp_stmt_run(&update_refund, values, nulls, ap->run_as, 1, &rows);
	row.status = sp_rows_text(&rows, 0, 1);
	sp_engine_sum_refunds(ap, row.payment_id);

	if (sp_refund_status_final(target))
	{
		memset(nulls, false, sizeof(nulls));
		values[0] = Int64GetDatum(sp_next_id("refund_flow_id_seq"));
		values[1] = CStringGetTextDatum(ev->id);
		values[2] = CStringGetTextDatum(ev->type);
		values[3] = Int64GetDatum(row.order_id);
		values[4] = Int64GetDatum(row.payment_id);
		values[5] = Int64GetDatum(row.id);
		values[6] = CStringGetTextDatum(row.status);
		values[7] = Int64GetDatum(row.amount);
		values[8] = BoolGetDatum(!(moved && strcmp(row.status, target) == 0 &&
								   strcmp(prev, target) != 0));
		values[9] = CStringGetTextDatum(row.currency);
		sp_stmt_run(&refund_flow, values, nulls, ap->run_as, 0, NULL);
	}
	if (moved && strcmp(row.status, prev) != 0)
		sp_engine_notify(ap, "stripepay_refund", ev->id, row.status, true, row.order_id,
						 "refund_id", row.id, "payment_id", row.payment_id);

	links->has_order = true;
	links->order_id = row.order_id;
	links->payment_id = row.payment_id;
	links->refund_id = row.id;
}

void
sp_engine_sum_refunds(const SpApply *ap, int64 payment_id)
{
	Datum		value = Int64GetDatum(payment_id);

	sp_stmt_run(&sum_refunds, &value, NULL, ap->run_as, 0, NULL);
}

void
sp_engine_apply_refunds(const SpApply *ap, const SpEvent *ev, SpLinks *links)
{
	Datum		values[2];
	bool		nulls[2];
	SpRows		rows;
	int			i;

	if (strcmp(ev->object_type, "refund") == 0)
	{
		apply_one(ap, ev, ev->object_id, ev->status, ev->has_amount, ev->amount, links);
		return;
	}

	/* charge.refunded: API versions before 2022-11-15 embed the refunds */
	for (i = 0; i < ev->nrefunds; i++)
	{
		SpLinks		one;

		memset(&one, 0, sizeof(one));
		apply_one(ap, ev, ev->refunds[i].id, ev->refunds[i].status, ev->refunds[i].has_amount,
				  ev->refunds[i].amount, &one);
		if (!links->has_order && one.has_order)
		{
			links->has_order = true;
			links->order_id = one.order_id;
		}
		if (links->payment_id == 0)
			links->payment_id = one.payment_id;
		if (links->refund_id == 0)
			links->refund_id = one.refund_id;
	}
	if (links->payment_id != 0)
		return;

	values[0] = sp_text_or_null(ev->payment_intent, &nulls[0]);
	values[1] = sp_text_or_null(ev->object_id, &nulls[1]);
	sp_stmt_run(&linked_payment, values, nulls, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
	{
		/* to be linked to its payment once that is known (see apply_one) */
		const char *ids[2] = {ev->payment_intent, ev->object_id};

		sp_lock_ids(ids, 2);
		sp_stmt_run(&linked_payment, values, nulls, SP_AS_OWNER, 1, &rows);
		if (rows.nrows == 0)
		{
			sp_engine_wait(ap, ev, ids, 2);
			return;
		}
	}
	links->has_order = true;
	links->order_id = sp_rows_int64(&rows, 0, 1, NULL);
	links->payment_id = sp_rows_int64(&rows, 0, 2, NULL);
}
