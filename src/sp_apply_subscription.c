/*-------------------------------------------------------------------------
 *
 * sp_apply_subscription.c
 *		Subscriptions, the Checkout Sessions that start them, and the
 *		changes the API functions make.
 *
 * The row follows Stripe's status (upper-cased), period, cancel_at,
 * cancel_at_period_end, customer and price by the never-regress rule, and
 * two changes made in the same second by the order previous_attributes
 * gives them (sp_subscription_change_is_older).  The subscription flow
 * fires for every event that brings a status; already_processed is false
 * when the status, cancel_at_period_end or cancel_at moved.
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

#define SUB_COLUMNS \
	"id, order_id, status, event_created, cancel_at_period_end, changed_from_status," \
	" changed_from_cancel_at_period_end, cancel_at, current_period_end, changed_from_cancel_at"

static SpStmt by_subscription = {
	.sql = "SELECT " SUB_COLUMNS " FROM stripepay.recurring_payment"
	" WHERE subscription_id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt by_session = {
	.sql = "SELECT " SUB_COLUMNS " FROM stripepay.recurring_payment"
	" WHERE checkout_session_id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt by_metadata = {
	.sql = "SELECT " SUB_COLUMNS " FROM stripepay.recurring_payment"
	" WHERE id = $1 AND (subscription_id IS NULL OR subscription_id = $2) FOR UPDATE",
	.nargs = 2, .argtypes = {INT8OID, TEXTOID}
};
static SpStmt by_id = {
	.sql = "SELECT " SUB_COLUMNS " FROM stripepay.recurring_payment WHERE id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt adopt = {
	.sql = "INSERT INTO stripepay.recurring_payment"
	"   (id, order_id, price_id, subscription_id, livemode, created_by)"
	" VALUES ($1, $2, $3, $4, $5, 'stripe')"
	" ON CONFLICT (subscription_id) DO NOTHING",
	.nargs = 5, .argtypes = {INT8OID, INT8OID, TEXTOID, TEXTOID, BOOLOID}
};
static SpStmt update_sub = {
	.sql = "UPDATE stripepay.recurring_payment SET"
	"   status = CASE WHEN $2 THEN $3 ELSE status END,"
	"   event_created = CASE WHEN $2 THEN $4 ELSE event_created END,"
	"   changed_from_status = CASE WHEN $2 THEN $5 ELSE changed_from_status END,"
	"   changed_from_cancel_at_period_end = CASE WHEN $2 THEN $6"
	"       ELSE changed_from_cancel_at_period_end END,"
	"   subscription_id = coalesce(subscription_id, $7),"
	"   customer_id = coalesce($8, customer_id),"
	"   price_id = CASE WHEN $2 THEN coalesce($9, price_id) ELSE price_id END,"
	"   current_period_start = CASE WHEN $2 AND $10 IS NOT NULL THEN $10 ELSE current_period_start END,"
	"   current_period_end = CASE WHEN $2 AND $11 IS NOT NULL THEN $11 ELSE current_period_end END,"
	"   cancel_at_period_end = CASE WHEN $2 AND $12 IS NOT NULL THEN $12 ELSE cancel_at_period_end END,"
	"   canceled_at = CASE WHEN $2 AND ($13 IS NOT NULL OR $14) THEN $13 ELSE canceled_at END,"
	"   cancel_at = CASE WHEN $2 AND $14 THEN $15 ELSE cancel_at END,"
	"   changed_from_cancel_at = CASE WHEN $2 THEN $17 ELSE changed_from_cancel_at END,"
	"   livemode = coalesce(livemode, $16),"
	"   updated_at = pg_catalog.now()"
	" WHERE id = $1"
	" RETURNING status, cancel_at_period_end, cancel_at",
	.nargs = 17, .argtypes = {INT8OID, BOOLOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID, TEXTOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID, TIMESTAMPTZOID, BOOLOID, TIMESTAMPTZOID, BOOLOID, TIMESTAMPTZOID}
};
static SpStmt api_change = {
	.sql = "UPDATE stripepay.recurring_payment SET"
	"   status = $2, event_created = $3,"
	"   changed_from_status = CASE WHEN $2 IS DISTINCT FROM status THEN status END,"
	"   changed_from_cancel_at_period_end = CASE WHEN coalesce($4, cancel_at_period_end)"
	"       <> cancel_at_period_end THEN cancel_at_period_end END,"
	"   cancel_at_period_end = coalesce($4, cancel_at_period_end),"
	"   canceled_at = CASE WHEN $6 THEN $5 ELSE coalesce($5, canceled_at) END,"
	"   cancel_at = CASE WHEN $6 THEN $7 ELSE cancel_at END,"
	"   changed_from_cancel_at = CASE WHEN $6 AND $7 IS DISTINCT FROM cancel_at"
	"       THEN coalesce(cancel_at, '-infinity') END,"
	"   updated_at = pg_catalog.now()"
	" WHERE id = $1"
	" RETURNING status, cancel_at_period_end, cancel_at",
	.nargs = 7, .argtypes = {INT8OID, TEXTOID, TIMESTAMPTZOID, BOOLOID, TIMESTAMPTZOID, BOOLOID, TIMESTAMPTZOID}
};
static SpStmt subscription_flow = {
	.sql = "INSERT INTO stripepay.subscription_flow"
	"   (id, event_id, event_type, order_id, recurring_payment_id, status, previous_status,"
	"    cancel_at_period_end, already_processed, cancel_at)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	.nargs = 10, .argtypes = {INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, TEXTOID, BOOLOID, BOOLOID,
	TIMESTAMPTZOID}
};

typedef struct SubRow
{
	int64		id;
	int64		order_id;
	char	   *status;
	char	   *changed_from_status;
	TimestampTz event_created;
	TimestampTz cancel_at;
	TimestampTz period_end;
	TimestampTz changed_from_cancel_at; /* DT_NOBEGIN: from none */
	bool		has_event_created;
	bool		cancel_at_period_end;
	bool		has_changed_from_cape;
	bool		changed_from_cape;
	bool		has_cancel_at;
	bool		has_period_end;
	bool		has_changed_from_cancel_at;
} SubRow;

static bool
lock_sub(SpStmt *stmt, const Datum *values, const bool *nulls, SubRow *row)
{
	SpRows		rows;
	bool		isnull;
	Datum		d;

	sp_stmt_run(stmt, values, nulls, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
		return false;
	row->id = sp_rows_int64(&rows, 0, 1, NULL);
	row->order_id = sp_rows_int64(&rows, 0, 2, NULL);
	row->status = sp_rows_text(&rows, 0, 3);
	d = sp_rows_get(&rows, 0, 4, &isnull);
	row->has_event_created = !isnull;
	row->event_created = isnull ? 0 : DatumGetTimestampTz(d);
	row->cancel_at_period_end = sp_rows_bool(&rows, 0, 5, NULL);
	row->changed_from_status = sp_rows_text(&rows, 0, 6);
	row->changed_from_cape = sp_rows_bool(&rows, 0, 7, &isnull);
	row->has_changed_from_cape = !isnull;
	d = sp_rows_get(&rows, 0, 8, &isnull);
	row->has_cancel_at = !isnull;
	row->cancel_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = sp_rows_get(&rows, 0, 9, &isnull);
	row->has_period_end = !isnull;
	row->period_end = isnull ? 0 : DatumGetTimestampTz(d);
	d = sp_rows_get(&rows, 0, 10, &isnull);
	row->has_changed_from_cancel_at = !isnull;
	row->changed_from_cancel_at = isnull ? 0 : DatumGetTimestampTz(d);
	return true;
}

/* A cancel_at as the rules take it: DT_NOBEGIN and NULL are "none". */
static SpCancelAt
cancel_at_of(bool has, TimestampTz at)
{
	SpCancelAt	c = {false, 0};

	if (has && at != DT_NOBEGIN)
	{
		c.scheduled = true;
		c.at = (long long) timestamptz_to_time_t(at);
	}
	return c;
}

static SpCancelAt
event_cancel_at(bool set, long long at)
{
	SpCancelAt	c = {set, set ? at : 0};

	return c;
}

static bool
same_time(bool has_a, TimestampTz a, bool has_b, TimestampTz b)
{
	return has_a == has_b && (!has_a || a == b);
}

/* The subscription flow, and the notification when something moved. */
static void
fire(const SpApply *ap, const char *event_id, const char *event_type, const SubRow *row,
	 const char *prev, bool changed)
{
	Datum		values[10];
	bool		nulls[10];
	bool		has_ends;
	TimestampTz ends;

	/* when it will end: Stripe's cancel_at, or the period's end it cancels at */
	has_ends = row->has_cancel_at || (row->cancel_at_period_end && row->has_period_end);
	ends = row->has_cancel_at ? row->cancel_at : row->period_end;

	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(sp_next_id("subscription_flow_id_seq"));
	values[1] = CStringGetTextDatum(event_id);
	values[2] = CStringGetTextDatum(event_type);
	values[3] = Int64GetDatum(row->order_id);
	values[4] = Int64GetDatum(row->id);
	values[5] = CStringGetTextDatum(row->status);
	values[6] = sp_text_or_null(prev, &nulls[6]);
	values[7] = BoolGetDatum(row->cancel_at_period_end);
	values[8] = BoolGetDatum(!changed);
	values[9] = TimestampTzGetDatum(ends);
	nulls[9] = !has_ends;
	sp_stmt_run(&subscription_flow, values, nulls, ap->run_as, 0, NULL);
	if (changed)
		sp_engine_notify(ap, "stripepay_recurring_payment", event_id, row->status, true, row->order_id,
						 "recurring_payment_id", row->id, NULL, 0);
}

/* Applies the row an update RETURNING status, cancel_at_period_end, cancel_at gave. */
static void
returned(const SpRows *rows, SubRow *row)
{
	bool		isnull;
	Datum		d;

	if (rows->nrows != 1)
		elog(ERROR, "stripepay: subscription " INT64_FORMAT " vanished", row->id);
	row->status = sp_rows_text(rows, 0, 1);
	row->cancel_at_period_end = sp_rows_bool(rows, 0, 2, NULL);
	d = sp_rows_get(rows, 0, 3, &isnull);
	row->has_cancel_at = !isnull;
	row->cancel_at = isnull ? 0 : DatumGetTimestampTz(d);
}

static bool
find_or_adopt(const SpApply *ap, const SpEvent *ev, bool is_session, const char *sub, SubRow *row)
{
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	int64		id;
	int64		order_id;

	if (sub != NULL)
	{
		values[0] = CStringGetTextDatum(sub);
		if (lock_sub(&by_subscription, values, NULL, row))
			return true;
	}
	if (is_session && ev->object_id[0])
	{
		values[0] = CStringGetTextDatum(ev->object_id);
		if (lock_sub(&by_session, values, NULL, row))
			return true;
	}
	if (sp_engine_row_id(ev->metadata_recurring_payment_id, &id))
	{
		values[0] = Int64GetDatum(id);
		values[1] = sp_text_or_null(sub, &nulls[1]);
		if (lock_sub(&by_metadata, values, nulls, row))
			return true;
		nulls[1] = false;
	}
	if (is_session || sub == NULL || ev->price_id[0] == '\0' ||
		!sp_engine_row_id(ev->metadata_order_id, &order_id))
		return false;

	/* made elsewhere (the dashboard), for an order: recorded */
	values[0] = Int64GetDatum(sp_next_id("recurring_payment_id_seq"));
	values[1] = Int64GetDatum(order_id);
	values[2] = CStringGetTextDatum(ev->price_id);
	values[3] = CStringGetTextDatum(sub);
	values[4] = BoolGetDatum(ev->livemode);
	sp_stmt_run(&adopt, values, NULL, ap->run_as, 0, NULL);
	values[0] = CStringGetTextDatum(sub);
	return lock_sub(&by_subscription, values, NULL, row);
}

void
sp_engine_apply_subscription(const SpApply *ap, const SpEvent *ev, SpLinks *links)
{
	bool		is_session = strcmp(ev->object_type, "checkout.session") == 0;
	const char *sub = is_session ? (ev->subscription[0] ? ev->subscription : NULL)
		: (ev->object_id[0] ? ev->object_id : NULL);
	const char *target = sp_subscription_target(ev);
	TimestampTz at = sp_engine_event_time(ev);
	SubRow		row;
	char	   *prev;
	bool		prev_cape;
	bool		prev_has_cancel_at;
	TimestampTz prev_cancel_at;
	bool		moved;
	bool		changed;
	Datum		values[17];
	bool		nulls[17];
	SpRows		rows;
	int64		order_id;
	SpSubscriptionState applied;
	SpSubscriptionChange incoming;

	if (!find_or_adopt(ap, ev, is_session, sub, &row))
	{
		links->has_order = sp_engine_row_id(ev->metadata_order_id, &order_id);
		links->order_id = order_id;
		return;
	}

	prev = row.status;
	prev_cape = row.cancel_at_period_end;
	prev_has_cancel_at = row.has_cancel_at;
	prev_cancel_at = row.cancel_at;
	moved = sp_state_advances(SP_KIND_SUBSCRIPTION, row.status, row.has_event_created,
							  row.event_created, target, true, at);

	/*
	 * Stripe's created counts seconds, and a subscription can change twice
	 * in one (a renewal's period, then its declined payment).
	 */
	if (moved && row.has_event_created && row.event_created == at)
	{
		applied.status = row.status;
		applied.cancel_at_period_end = row.cancel_at_period_end;
		applied.changed_from_status = row.changed_from_status;
		applied.has_changed_from_cape = row.has_changed_from_cape;
		applied.changed_from_cape = row.changed_from_cape;
		applied.cancel_at = cancel_at_of(row.has_cancel_at, row.cancel_at);
		applied.has_changed_from_cancel_at = row.has_changed_from_cancel_at;
		applied.changed_from_cancel_at = cancel_at_of(row.has_changed_from_cancel_at,
													  row.changed_from_cancel_at);
		incoming.status = target;
		incoming.has_cape = ev->has_cancel_at_period_end;
		incoming.cape = ev->cancel_at_period_end;
		incoming.has_cancel_at = !is_session;
		incoming.cancel_at = event_cancel_at(ev->has_cancel_at, ev->cancel_at);
		incoming.previous_status = ev->previous_status;
		incoming.has_previous_cape = ev->has_previous_cancel_at_period_end;
		incoming.previous_cape = ev->previous_cancel_at_period_end;
		incoming.has_previous_cancel_at = ev->has_previous_cancel_at;
		incoming.previous_cancel_at = event_cancel_at(ev->previous_cancel_at_set,
													  ev->previous_cancel_at);
		if (sp_subscription_change_is_older(&applied, &incoming))
			moved = false;
	}

	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(row.id);
	values[1] = BoolGetDatum(moved);
	values[2] = sp_text_or_null(target, &nulls[2]);
	values[3] = TimestampTzGetDatum(at);
	values[4] = sp_text_or_null(sp_subscription_status_of(ev->previous_status), &nulls[4]);
	values[5] = BoolGetDatum(ev->previous_cancel_at_period_end);
	nulls[5] = !ev->has_previous_cancel_at_period_end;
	values[6] = sp_text_or_null(sub, &nulls[6]);
	values[7] = sp_text_or_null(ev->customer, &nulls[7]);
	values[8] = sp_text_or_null(ev->price_id, &nulls[8]);
	values[9] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) ev->period_start));
	nulls[9] = !ev->has_period_start;
	values[10] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) ev->period_end));
	nulls[10] = !ev->has_period_end;
	values[11] = BoolGetDatum(ev->cancel_at_period_end);
	nulls[11] = !ev->has_cancel_at_period_end;
	values[12] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) ev->canceled_at));
	nulls[12] = !ev->has_canceled_at;
	/* a Subscription always says its cancel_at, null when none is set */
	values[13] = BoolGetDatum(!is_session);
	values[14] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) ev->cancel_at));
	nulls[14] = !ev->has_cancel_at;
	values[15] = BoolGetDatum(ev->livemode);
	values[16] = TimestampTzGetDatum(ev->previous_cancel_at_set ?
									 time_t_to_timestamptz((pg_time_t) ev->previous_cancel_at) :
									 DT_NOBEGIN);
	nulls[16] = !ev->has_previous_cancel_at;
	sp_stmt_run(&update_sub, values, nulls, ap->run_as, 1, &rows);
	returned(&rows, &row);
	if (moved && ev->has_period_end)
	{
		row.has_period_end = true;
		row.period_end = time_t_to_timestamptz((pg_time_t) ev->period_end);
	}

	if (target != NULL)
	{
		changed = moved && (strcmp(row.status, prev) != 0 || row.cancel_at_period_end != prev_cape ||
							!same_time(row.has_cancel_at, row.cancel_at, prev_has_cancel_at,
									   prev_cancel_at));
		fire(ap, ev->id, ev->type, &row, prev, changed);
	}

	links->has_order = true;
	links->order_id = row.order_id;
	links->recurring_payment_id = row.id;
}

void
sp_engine_subscription_changed(const SpApply *ap, int64 recurring_payment_id, const char *status,
							   bool has_cancel_at_period_end, bool cancel_at_period_end,
							   bool has_canceled_at, TimestampTz canceled_at, bool has_cancel_at,
							   TimestampTz cancel_at, TimestampTz at, const char *cause)
{
	SubRow		row;
	char	   *prev;
	bool		prev_cape;
	bool		prev_has_cancel_at;
	TimestampTz prev_cancel_at;
	Datum		values[7];
	bool		nulls[7];
	SpRows		rows;

	values[0] = Int64GetDatum(recurring_payment_id);
	if (!lock_sub(&by_id, values, NULL, &row))
		elog(ERROR, "stripepay: subscription " INT64_FORMAT " vanished", recurring_payment_id);
	prev = row.status;
	prev_cape = row.cancel_at_period_end;
	prev_has_cancel_at = row.has_cancel_at;
	prev_cancel_at = row.cancel_at;
	if (!sp_state_advances(SP_KIND_SUBSCRIPTION, row.status, row.has_event_created,
						   row.event_created, status, true, at))
		return;

	memset(nulls, false, sizeof(nulls));
	values[1] = CStringGetTextDatum(status);
	values[2] = TimestampTzGetDatum(at);
	values[3] = BoolGetDatum(cancel_at_period_end);
	nulls[3] = !has_cancel_at_period_end;
	values[4] = TimestampTzGetDatum(canceled_at);
	nulls[4] = !has_canceled_at;
	values[5] = BoolGetDatum(has_cancel_at || has_cancel_at_period_end);
	values[6] = TimestampTzGetDatum(cancel_at);
	nulls[6] = !has_cancel_at;
	sp_stmt_run(&api_change, values, nulls, ap->run_as, 1, &rows);
	returned(&rows, &row);
	if (strcmp(row.status, prev) == 0 && row.cancel_at_period_end == prev_cape &&
		same_time(row.has_cancel_at, row.cancel_at, prev_has_cancel_at, prev_cancel_at))
		return;
	fire(ap, cause, cause, &row, prev, true);
}
