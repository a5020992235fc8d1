/*-------------------------------------------------------------------------
 *
 * sp_apply.c
 *		The ingest's own path for one-time payment events, and the SQL face
 *		of the never-regress rule.
 *
 * Most events a shop receives move one payment it already knows: a
 * PaymentIntent succeeded, a Checkout Session completed.  For those, this
 * file does what stripepay._ingest() and _apply_payment() do, with the
 * same rules (sp_rules.c) and in the same order of effects, but through
 * plans kept for the life of the backend: a PL/pgSQL function sets up its
 * expressions again in every transaction, and an event is a transaction.
 * The event is also written once, with its links, instead of being
 * inserted and then updated.
 *
 * Everything else (a payment the database does not know yet, refunds,
 * subscriptions, invoices, other types) still goes through
 * stripepay._ingest(), which stays the reference.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "sp_apply.h"
#include "sp_notify.h"
#include "sp_rules.h"
#include "sp_store.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_advances);

/* Which row an event names, in the order _apply_payment tries them. */
static SPIPlanPtr by_session_plan = NULL;
static SPIPlanPtr by_intent_plan = NULL;
static SPIPlanPtr by_metadata_plan = NULL;
static SPIPlanPtr record_plan = NULL;
static SPIPlanPtr update_plan = NULL;
static SPIPlanPtr flow_plan = NULL;
static SPIPlanPtr waiting_plan = NULL;

#define PAYMENT_COLUMNS "id, order_id, status, event_created, amount, currency, payment_intent_id"

/* A text parameter, or NULL for an empty or absent value. */
static Datum
text_or_null(const char *value, char *null_flag)
{
	if (value == NULL || value[0] == '\0')
	{
		*null_flag = 'n';
		return (Datum) 0;
	}
	*null_flag = ' ';
	return CStringGetTextDatum(value);
}

typedef struct PaymentRow
{
	int64		id;
	int64		order_id;
	char	   *status;
	bool		has_event_created;
	TimestampTz event_created;
	int64		amount;
	char	   *currency;
	bool		had_intent;		/* before this event */
	char	   *payment_intent;	/* after the update, NULL if unknown */
	char	   *charge;
} PaymentRow;

/* Runs one of the row-locking look-ups; true when it found the row. */
static bool
lock_payment(SPIPlanPtr plan, Datum *values, const char *nulls, PaymentRow *row)
{
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	if (SPI_execute_plan(plan, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "stripepay: could not look up a payment");
	if (SPI_processed == 0)
		return false;
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
	row->order_id = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
	row->status = SPI_getvalue(tuple, desc, 3);
	d = SPI_getbinval(tuple, desc, 4, &isnull);
	row->has_event_created = !isnull;
	row->event_created = isnull ? 0 : DatumGetTimestampTz(d);
	row->amount = DatumGetInt64(SPI_getbinval(tuple, desc, 5, &isnull));
	row->currency = SPI_getvalue(tuple, desc, 6);
	(void) SPI_getbinval(tuple, desc, 7, &isnull);
	row->had_intent = !isnull;
	return true;
}

/*
 * Finds and locks the payment an event is about: by its Checkout Session,
 * by its PaymentIntent, then by the row id in its metadata when that row
 * has no conflicting Stripe ids yet.
 */
static bool
find_payment(const char *session, const char *intent, const SpEvent *ev, PaymentRow *row)
{
	Oid			text_type[1] = {TEXTOID};
	Oid			metadata_types[4] = {INT8OID, INT8OID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4];
	long long	payment_id;
	long long	order_id;

	if (session != NULL)
	{
		sp_keep_plan(&by_session_plan,
				  "SELECT " PAYMENT_COLUMNS " FROM stripepay.payment_record"
				  " WHERE checkout_session_id = $1 FOR UPDATE", 1, text_type);
		values[0] = CStringGetTextDatum(session);
		if (lock_payment(by_session_plan, values, NULL, row))
			return true;
	}
	if (intent != NULL)
	{
		sp_keep_plan(&by_intent_plan,
				  "SELECT " PAYMENT_COLUMNS " FROM stripepay.payment_record"
				  " WHERE payment_intent_id = $1 FOR UPDATE", 1, text_type);
		values[0] = CStringGetTextDatum(intent);
		if (lock_payment(by_intent_plan, values, NULL, row))
			return true;
	}
	if (!sp_parse_row_id(ev->metadata_payment_id, &payment_id))
		return false;
	sp_keep_plan(&by_metadata_plan,
			  "SELECT " PAYMENT_COLUMNS " FROM stripepay.payment_record"
			  " WHERE id = $1 AND order_id = coalesce($2, order_id)"
			  "   AND ($3 IS NULL OR checkout_session_id IS NULL OR checkout_session_id = $3)"
			  "   AND ($4 IS NULL OR payment_intent_id IS NULL OR payment_intent_id = $4)"
			  " FOR UPDATE", 4, metadata_types);
	values[0] = Int64GetDatum(payment_id);
	nulls[0] = ' ';
	if (sp_parse_row_id(ev->metadata_order_id, &order_id))
	{
		values[1] = Int64GetDatum(order_id);
		nulls[1] = ' ';
	}
	else
		nulls[1] = 'n';
	values[2] = text_or_null(session, &nulls[2]);
	values[3] = text_or_null(intent, &nulls[3]);
	return lock_payment(by_metadata_plan, values, nulls, row);
}

/*
 * Records the event with its links.  False when it is already there: a
 * concurrent delivery of the same event committed first (we waited for it
 * on the payment's row lock).
 */
static bool
record_event(const SpEvent *ev, const char *payload, const char *endpoint,
			 const char *source, const PaymentRow *row)
{
	Oid			types[11] = {TEXTOID, TEXTOID, TEXTOID, BOOLOID, TIMESTAMPTZOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[11];
	char		nulls[11];

	sp_keep_plan(&record_plan,
			  "INSERT INTO stripepay.webhook_event (id, type, api_version, livemode, created,"
			  "   object_id, endpoint, source, payload, order_id, payment_id)"
			  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)"
			  " ON CONFLICT (id) DO NOTHING", 11, types);
	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(ev->id);
	values[1] = CStringGetTextDatum(ev->type);
	values[2] = text_or_null(ev->api_version, &nulls[2]);
	values[3] = BoolGetDatum(ev->livemode);
	values[4] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) ev->created));
	values[5] = text_or_null(ev->object_id, &nulls[5]);
	values[6] = text_or_null(endpoint, &nulls[6]);
	values[7] = CStringGetTextDatum(source);
	values[8] = CStringGetTextDatum(payload);
	values[9] = Int64GetDatum(row->order_id);
	values[10] = Int64GetDatum(row->id);
	if (SPI_execute_plan(record_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "stripepay: could not record webhook event %s", ev->id);
	return SPI_processed == 1;
}

/* Moves the payment (or only fills in the Stripe ids it lacked). */
static void
update_payment(const SpEvent *ev, PaymentRow *row, bool moved, const char *target,
			   const char *session, const char *intent, TimestampTz at)
{
	Oid			types[10] = {INT8OID, BOOLOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID,
	TEXTOID, BOOLOID, TEXTOID, TEXTOID};
	Datum		values[10];
	char		nulls[10];
	bool		failed = moved && strcmp(target, "FAILED") == 0;
	const char *failure_code = ev->last_payment_error_decline_code[0]
		? ev->last_payment_error_decline_code
		: ev->last_payment_error_code[0] ? ev->last_payment_error_code : "payment_failed";

	sp_keep_plan(&update_plan,
			  "UPDATE stripepay.payment_record SET"
			  "   status = CASE WHEN $2 THEN $3 ELSE status END,"
			  "   event_created = CASE WHEN $2 THEN $4 ELSE event_created END,"
			  "   checkout_session_id = coalesce(checkout_session_id, $5),"
			  "   payment_intent_id = coalesce(payment_intent_id, $6),"
			  "   charge_id = coalesce($7, charge_id),"
			  "   livemode = coalesce(livemode, $8),"
			  "   failure_code = CASE WHEN $2 THEN $9 ELSE failure_code END,"
			  "   failure_message = CASE WHEN $2 THEN $10 ELSE failure_message END,"
			  "   updated_at = pg_catalog.now()"
			  " WHERE id = $1"
			  " RETURNING status, payment_intent_id, charge_id", 10, types);
	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(row->id);
	values[1] = BoolGetDatum(moved);
	values[2] = text_or_null(target, &nulls[2]);
	values[3] = TimestampTzGetDatum(at);
	values[4] = text_or_null(session, &nulls[4]);
	values[5] = text_or_null(intent, &nulls[5]);
	values[6] = text_or_null(ev->charge, &nulls[6]);
	values[7] = BoolGetDatum(ev->livemode);
	values[8] = text_or_null(failed ? failure_code : NULL, &nulls[8]);
	values[9] = text_or_null(failed ? ev->last_payment_error_message : NULL, &nulls[9]);
	if (SPI_execute_plan(update_plan, values, nulls, false, 0) != SPI_OK_UPDATE_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "stripepay: could not update payment " INT64_FORMAT, row->id);
	row->status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	row->payment_intent = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	row->charge = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
}

/*
 * The lock _lock_ids() takes for id: a payment that learns an id and a
 * refund that would wait for it take turns, so that the refund cannot wait
 * unseen by the payment's look below (see _apply_one_refund).
 */
static void
lock_id(const char *id)
{
	Datum		key;

	if (id == NULL || id[0] == '\0')
		return;
	key = DirectFunctionCall2Coll(hashtextextended, C_COLLATION_OID,
								  CStringGetTextDatum(psprintf("stripepay.wait:%s", id)),
								  Int64GetDatum(0));
	(void) DirectFunctionCall1(pg_advisory_xact_lock_int8, key);
}

/*
 * Applies the events that waited for the payment's PaymentIntent or charge
 * (a refund that came before the payment's own events), as _apply_payment
 * does; usually there are none, and one index probe says so.
 */
static void
apply_waiting(const PaymentRow *row)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2];
	const char *first = row->payment_intent;
	const char *second = row->charge;

	/*
	 * The ids' locks matter only when the payment learns its PaymentIntent
	 * now: a refund names it, and while the row already had it, the
	 * refund's look-up locks the row and so takes turns with us.
	 */
	if (!row->had_intent)
	{
		/* in _lock_ids()'s order, so that no two sessions wait on each other */
		if (first != NULL && second != NULL && strcmp(first, second) > 0)
		{
			first = row->charge;
			second = row->payment_intent;
		}
		lock_id(first);
		lock_id(second);
	}

	sp_keep_plan(&waiting_plan,
			  "SELECT stripepay._apply_waiting($1, $2)"
			  " WHERE EXISTS (SELECT FROM stripepay.waiting_event WHERE stripe_id IN ($1, $2))",
			  2, types);
	values[0] = text_or_null(row->payment_intent, &nulls[0]);
	values[1] = text_or_null(row->charge, &nulls[1]);
	if (SPI_execute_plan(waiting_plan, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "stripepay: could not apply the events waiting for payment " INT64_FORMAT,
			 row->id);
}

/* The payment actionflow: a row for the user's triggers. */
static void
fire_payment_flow(const SpEvent *ev, const PaymentRow *row, bool already_processed)
{
	Oid			types[6] = {TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, BOOLOID};
	Datum		values[6];

	sp_keep_plan(&flow_plan,
			  "INSERT INTO stripepay.payment_flow"
			  "   (event_id, event_type, order_id, payment_id, payment_status, already_processed)"
			  " VALUES ($1, $2, $3, $4, $5, $6)", 6, types);
	values[0] = CStringGetTextDatum(ev->id);
	values[1] = CStringGetTextDatum(ev->type);
	values[2] = Int64GetDatum(row->order_id);
	values[3] = Int64GetDatum(row->id);
	values[4] = CStringGetTextDatum(row->status);
	values[5] = BoolGetDatum(already_processed);
	if (SPI_execute_plan(flow_plan, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "stripepay: could not fire the payment flow for event %s", ev->id);
}

/*
 * The notification of stripepay._notify('stripepay_payment', ...), text for
 * text: keys in jsonb's order, so listeners see one format whichever path
 * applied the event.
 */
static void
notify_payment(const SpEvent *ev, const PaymentRow *row)
{
	StringInfoData buf;

	if (!sp_notify)
		return;				/* not even the text */
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"amount\": " INT64_FORMAT ", \"status\": ", row->amount);
	escape_json(&buf, row->status);
	appendStringInfoString(&buf, ", \"currency\": ");
	escape_json(&buf, row->currency);
	appendStringInfoString(&buf, ", \"event_id\": ");
	escape_json(&buf, ev->id);
	appendStringInfo(&buf, ", \"order_id\": " INT64_FORMAT ", \"payment_id\": " INT64_FORMAT "}",
					 row->order_id, row->id);
	sp_notify_send("stripepay_payment", buf.data);
}

bool
sp_apply_is_payment_event(const SpEvent *ev)
{
	if (strcmp(ev->object_type, "payment_intent") == 0)
		return true;
	return strcmp(ev->object_type, "checkout.session") == 0 &&
		strcmp(ev->mode, "subscription") != 0 && strcmp(ev->mode, "setup") != 0;
}

SpApplyResult
sp_apply_payment_event(const SpEvent *ev, const char *payload, const char *endpoint,
					   const char *source)
{
	bool		is_session = strcmp(ev->object_type, "checkout.session") == 0;
	const char *session = is_session && ev->object_id[0] ? ev->object_id : NULL;
	const char *intent = is_session
		? (ev->payment_intent[0] ? ev->payment_intent : NULL)
		: (ev->object_id[0] ? ev->object_id : NULL);
	const char *target = sp_payment_target(ev->type, ev->payment_status);
	TimestampTz at = time_t_to_timestamptz((pg_time_t) ev->created);
	PaymentRow	row;
	bool		moved;

	if (!find_payment(session, intent, ev, &row))
		return SP_APPLY_NOT_HANDLED;
	if (!record_event(ev, payload, endpoint, source, &row))
		return SP_APPLY_ALREADY_PROCESSED;

	moved = sp_state_advances(SP_KIND_PAYMENT, row.status, row.has_event_created,
							  row.event_created, target, true, at);
	update_payment(ev, &row, moved, target, session, intent, at);
	if (sp_payment_status_final(target))
		fire_payment_flow(ev, &row, !moved);
	if (moved)
		notify_payment(ev, &row);
	/*
	 * Refunds that came first are applied once the payment has succeeded,
	 * after its own flow: a trigger sees the order paid, then refunded.
	 */
	if (strcmp(row.status, "SUCCESSFUL") == 0)
		apply_waiting(&row);
	return SP_APPLY_APPLIED;
}

/*
 * stripepay._advances(kind, cur_status, cur_at, new_status, new_at): the
 * rule for the SQL apply functions.
 */
Datum
stripepay_advances(PG_FUNCTION_ARGS)
{
	char	   *kind;
	char	   *cur_status = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *new_status = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	PG_RETURN_BOOL(sp_state_advances(sp_state_kind(kind), cur_status, !PG_ARGISNULL(2),
									 PG_ARGISNULL(2) ? 0 : PG_GETARG_TIMESTAMPTZ(2),
									 new_status, !PG_ARGISNULL(4),
									 PG_ARGISNULL(4) ? 0 : PG_GETARG_TIMESTAMPTZ(4)));
}
