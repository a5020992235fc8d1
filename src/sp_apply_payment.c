/*-------------------------------------------------------------------------
 *
 * sp_apply_payment.c
 *		One-time payments: Checkout Sessions and PaymentIntents.
 *
 * The row is found by Stripe's ids first, then by the id in the metadata
 * (a row whose Stripe ids are not known yet), and otherwise adopted from
 * the event when it names an order: a payment whose creating transaction
 * rolled back, or that was made in the dashboard, is still recorded.  The
 * status moves by the never-regress rule; a final one fires the payment
 * flow, once with already_processed = false; refunds that came first are
 * applied after it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pure/sp_rules.h"
#include "sp_engine.h"
#include "sp_stmt.h"

#define PAYMENT_COLUMNS \
	"id, order_id, status, event_created, amount, currency, payment_intent_id, charge_id"

static SpStmt by_session = {
	.sql = "SELECT " PAYMENT_COLUMNS " FROM stripepay.payment_record"
	" WHERE checkout_session_id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt by_intent = {
	.sql = "SELECT " PAYMENT_COLUMNS " FROM stripepay.payment_record"
	" WHERE payment_intent_id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt by_metadata = {
	.sql = "SELECT " PAYMENT_COLUMNS " FROM stripepay.payment_record"
	" WHERE id = $1 AND order_id = coalesce($2, order_id)"
	"   AND ($3::text IS NULL OR checkout_session_id IS NULL OR checkout_session_id = $3)"
	"   AND ($4::text IS NULL OR payment_intent_id IS NULL OR payment_intent_id = $4)"
	" FOR UPDATE",
	.nargs = 4, .argtypes = {INT8OID, INT8OID, TEXTOID, TEXTOID}
};
static SpStmt by_id = {
	.sql = "SELECT " PAYMENT_COLUMNS " FROM stripepay.payment_record WHERE id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt adopt = {
	.sql = "INSERT INTO stripepay.payment_record"
	"   (id, order_id, currency, amount, flow, checkout_session_id, payment_intent_id,"
	"    livemode, created_by)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'stripe')"
	" ON CONFLICT DO NOTHING"
	" RETURNING " PAYMENT_COLUMNS,
	.nargs = 8, .argtypes = {INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, BOOLOID}
};
static SpStmt adopted_by_other = {
	.sql = "SELECT " PAYMENT_COLUMNS " FROM stripepay.payment_record"
	" WHERE checkout_session_id = $1 OR payment_intent_id = $2 LIMIT 1 FOR UPDATE",
	.nargs = 2, .argtypes = {TEXTOID, TEXTOID}
};
static SpStmt update_payment = {
	.sql = "UPDATE stripepay.payment_record SET"
	"   status = CASE WHEN $2 THEN $3 ELSE status END,"
	"   event_created = CASE WHEN $2 THEN $4 ELSE event_created END,"
	"   checkout_session_id = coalesce(checkout_session_id, $5),"
	"   payment_intent_id = coalesce(payment_intent_id, $6),"
	"   charge_id = CASE WHEN $2 OR $3 = status THEN coalesce($7, charge_id) ELSE charge_id END,"
	"   livemode = coalesce(livemode, $8),"
	"   failure_code = CASE WHEN $2 THEN $9 ELSE failure_code END,"
	"   failure_message = CASE WHEN $2 THEN $10 ELSE failure_message END,"
	"   updated_at = pg_catalog.now()"
	" WHERE id = $1"
	" RETURNING status, payment_intent_id, charge_id",
	.nargs = 10, .argtypes = {INT8OID, BOOLOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID}
};
static SpStmt payment_flow = {
	.sql = "INSERT INTO stripepay.payment_flow"
	"   (id, event_id, event_type, order_id, payment_id, payment_status, already_processed,"
	"    amount, currency)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
	.nargs = 9, .argtypes = {INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, BOOLOID, INT8OID, TEXTOID}
};

static void
read_row(const SpRows *rows, SpPaymentRow *row)
{
	bool		isnull;
	Datum		d;

	row->id = sp_rows_int64(rows, 0, 1, NULL);
	row->order_id = sp_rows_int64(rows, 0, 2, NULL);
	row->status = sp_rows_text(rows, 0, 3);
	d = sp_rows_get(rows, 0, 4, &isnull);
	row->has_event_created = !isnull;
	row->event_created = isnull ? 0 : DatumGetTimestampTz(d);
	row->amount = sp_rows_int64(rows, 0, 5, NULL);
	row->currency = sp_rows_text(rows, 0, 6);
	row->payment_intent = sp_rows_text(rows, 0, 7);
	row->charge = sp_rows_text(rows, 0, 8);
	row->had_intent = row->payment_intent != NULL;
}

static bool
lock_payment(SpStmt *stmt, const Datum *values, const bool *nulls, SpPaymentRow *row)
{
	SpRows		rows;

	sp_stmt_run(stmt, values, nulls, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
		return false;
	read_row(&rows, row);
	return true;
}

/* The Checkout Session and PaymentIntent an event names. */
static void
event_ids(const SpEvent *ev, const char **session, const char **intent)
{
	bool		is_session = strcmp(ev->object_type, "checkout.session") == 0;

	*session = is_session && ev->object_id[0] ? ev->object_id : NULL;
	if (is_session)
		*intent = ev->payment_intent[0] ? ev->payment_intent : NULL;
	else
		*intent = ev->object_id[0] ? ev->object_id : NULL;
}

bool
sp_engine_is_payment_event(const SpEvent *ev)
{
	return sp_event_family(ev) == SP_FAMILY_PAYMENT;
}

bool
sp_engine_lock_payment(int64 payment_id, SpPaymentRow *row)
{
	Datum		value = Int64GetDatum(payment_id);

	return lock_payment(&by_id, &value, NULL, row);
}

bool
sp_engine_find_payment(const SpEvent *ev, SpPaymentRow *row)
{
	const char *session;
	const char *intent;
	int64		payment_id;
	int64		order_id;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	event_ids(ev, &session, &intent);
	if (session != NULL)
	{
		values[0] = CStringGetTextDatum(session);
		if (lock_payment(&by_session, values, NULL, row))
			return true;
	}
	if (intent != NULL)
	{
		values[0] = CStringGetTextDatum(intent);
		if (lock_payment(&by_intent, values, NULL, row))
			return true;
	}
	if (!sp_engine_row_id(ev->metadata_payment_id, &payment_id))
		return false;
	values[0] = Int64GetDatum(payment_id);
	nulls[1] = !sp_engine_row_id(ev->metadata_order_id, &order_id);
	values[1] = nulls[1] ? (Datum) 0 : Int64GetDatum(order_id);
	values[2] = sp_text_or_null(session, &nulls[2]);
	values[3] = sp_text_or_null(intent, &nulls[3]);
	return lock_payment(&by_metadata, values, nulls, row);
}

/*
 * A payment the database does not know, recorded from its event when the
 * metadata names an order and the event a valid amount and currency; false
 * when it cannot be.
 */
static bool
adopt_payment(const SpApply *ap, const SpEvent *ev, SpPaymentRow *row)
{
	const char *session;
	const char *intent;
	int64		order_id;
	long long	amount;
	Datum		values[8];
	bool		nulls[8] = {false, false, false, false, false, false, false, false};
	SpRows		rows;

	if (!sp_event_payment_amount(ev, &amount) || amount <= 0 ||
		!sp_engine_row_id(ev->metadata_order_id, &order_id) || !sp_currency_code_valid(ev->currency))
		return false;
	event_ids(ev, &session, &intent);
	values[0] = Int64GetDatum(sp_next_id("payment_record_id_seq"));
	values[1] = Int64GetDatum(order_id);
	values[2] = CStringGetTextDatum(ev->currency);
	values[3] = Int64GetDatum((int64) amount);
	values[4] = CStringGetTextDatum(session != NULL ? "checkout" : "payment_intent");
	values[5] = sp_text_or_null(session, &nulls[5]);
	values[6] = sp_text_or_null(intent, &nulls[6]);
	values[7] = BoolGetDatum(ev->livemode);
	sp_stmt_run(&adopt, values, nulls, ap->run_as, 1, &rows);
	if (rows.nrows == 1)
	{
		read_row(&rows, row);
		return true;
	}

	/*
	 * Another event of this payment adopted it first (there was no row to
	 * lock, so nothing kept us apart): apply to its row.
	 */
	values[0] = sp_text_or_null(session, &nulls[0]);
	values[1] = sp_text_or_null(intent, &nulls[1]);
	if (!lock_payment(&adopted_by_other, values, nulls, row))
		elog(ERROR, "stripepay: the payment of event %s vanished", ev->id);
	return true;
}

void
sp_engine_apply_payment(const SpApply *ap, const SpEvent *ev, SpPaymentRow *found, SpLinks *links)
{
	SpPaymentRow adopted;
	SpPaymentRow *row = found;
	const char *session;
	const char *intent;
	const char *target = sp_payment_target(ev->type, ev->payment_status);
	TimestampTz at = sp_engine_event_time(ev);
	bool		moved;
	bool		changed;
	bool		failed;
	char	   *prev;
	Datum		values[10];
	bool		nulls[10];
	SpRows		rows;
	int64		order_id;

	if (row == NULL)
	{
		if (!adopt_payment(ap, ev, &adopted))
		{
			/* recorded, linked by its order if it names one */
			links->has_order = sp_engine_row_id(ev->metadata_order_id, &order_id);
			links->order_id = order_id;
			return;
		}
		row = &adopted;
	}
	event_ids(ev, &session, &intent);

	prev = pstrdup(row->status);
	moved = sp_state_advances(SP_KIND_PAYMENT, row->status, row->has_event_created,
							  row->event_created, target, true, at);
	failed = moved && strcmp(target, "FAILED") == 0;
	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(row->id);
	values[1] = BoolGetDatum(moved);
	values[2] = sp_text_or_null(target, &nulls[2]);
	values[3] = TimestampTzGetDatum(at);
	values[4] = sp_text_or_null(session, &nulls[4]);
	values[5] = sp_text_or_null(intent, &nulls[5]);
	values[6] = sp_text_or_null(ev->charge, &nulls[6]);
	values[7] = BoolGetDatum(ev->livemode);
	values[8] = sp_text_or_null(failed ? sp_payment_failure_code(ev) : NULL, &nulls[8]);
	values[9] = sp_text_or_null(failed ? ev->last_payment_error_message : NULL, &nulls[9]);
	sp_stmt_run(&update_payment, values, nulls, ap->run_as, 1, &rows);
	if (rows.nrows != 1)
		elog(ERROR, "stripepay: payment " INT64_FORMAT " vanished", row->id);
	row->status = sp_rows_text(&rows, 0, 1);
	row->payment_intent = sp_rows_text(&rows, 0, 2);
	row->charge = sp_rows_text(&rows, 0, 3);
	/* a second signal of a known outcome tells nobody anything new */
	changed = moved && strcmp(prev, row->status) != 0;

	if (sp_payment_status_final(target))
	{
		long long	paid;

		/* what Stripe says the payment is for, so a trigger can check it */
		if (!sp_event_payment_amount(ev, &paid))
			paid = row->amount;
		memset(nulls, false, sizeof(nulls));
		values[0] = Int64GetDatum(sp_next_id("payment_flow_id_seq"));
		values[1] = CStringGetTextDatum(ev->id);
		values[2] = CStringGetTextDatum(ev->type);
		values[3] = Int64GetDatum(row->order_id);
		values[4] = Int64GetDatum(row->id);
		values[5] = CStringGetTextDatum(row->status);
		values[6] = BoolGetDatum(!(changed && strcmp(row->status, target) == 0));
		values[7] = Int64GetDatum((int64) paid);
		values[8] = CStringGetTextDatum(ev->currency[0] ? ev->currency : row->currency);
		sp_stmt_run(&payment_flow, values, nulls, ap->run_as, 0, NULL);
	}
	if (changed)
		sp_engine_notify(ap, "stripepay_payment", ev->id, row->status, true, row->order_id,
						 "payment_id", row->id, NULL, 0);

	/*
	 * Refunds that came first are applied once the payment has succeeded,
	 * after its own flow: a trigger sees the order paid, then refunded.
	 */
	if (strcmp(row->status, "SUCCESSFUL") == 0)
	{
		const char *ids[2] = {row->payment_intent, row->charge};

		sp_engine_apply_waiting(ap, ids, 2, !row->had_intent);
	}

	links->has_order = true;
	links->order_id = row->order_id;
	links->payment_id = row->id;
}
