/*-------------------------------------------------------------------------
 *
 * sp_sync.c
 *		sync_events() and refresh_payment(): asking Stripe for what the
 *		webhooks did not bring.
 *
 * Stripe retries a webhook for three days; an endpoint that is down for
 * longer, or an event lost on the way, leaves the tables behind.  Stripe
 * keeps 30 days of events, so sync_events() lists them and feeds every one
 * we lack to the event engine, exactly as a webhook would.
 * refresh_payment() reads one payment's Checkout Session and PaymentIntent
 * and applies what it finds as the event that would have brought it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pure/sp_rules.h"
#include "sp_api.h"
#include "sp_call.h"
#include "sp_engine.h"
#include "sp_lock.h"
#include "sp_stmt.h"
#include "sp_stripe.h"
#include "sp_webhook.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_sync_events);
PG_FUNCTION_INFO_V1(stripepay_refresh_payment);

/* Stripe keeps events this long; with nothing to start from, sync them all */
#define SP_EVENT_RETENTION_DAYS 30

/*
 * Where sync starts by default: the created of the newest event held.  The
 * index on (type, created) answers it one type at a time (a few dozen index
 * probes), where a plain max(created) would read the whole table.
 */
static SpStmt newest_stmt = {
	.sql = "WITH RECURSIVE types(t) AS ("
	"    SELECT min(type) FROM stripepay.webhook_event"
	"  UNION ALL"
	"    SELECT (SELECT min(type) FROM stripepay.webhook_event WHERE type > t)"
	"      FROM types WHERE t IS NOT NULL)"
	" SELECT max((SELECT max(created) FROM stripepay.webhook_event WHERE type = t))"
	"   FROM types WHERE t IS NOT NULL"
};
static SpStmt held_stmt = {
	.sql = "SELECT count(*) FROM stripepay.webhook_event WHERE id = ANY ($1)",
	.nargs = 1, .argtypes = {TEXTARRAYOID}
};
static SpStmt payment_stmt = {
	.sql = "SELECT checkout_session_id, payment_intent_id, order_id, created_by"
	"  FROM stripepay.payment_record WHERE id = $1",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt row_stmt = {
	.sql = "SELECT * FROM stripepay.payment_record WHERE id = $1",
	.nargs = 1, .argtypes = {INT8OID}
};

typedef struct SpSyncCounts
{
	int			fetched;
	int			applied;
	int			already_had;
} SpSyncCounts;

static bool
newest_event(TimestampTz *newest)
{
	SpRows		rows;
	bool		isnull;
	Datum		d;

	sp_stmt_run(&newest_stmt, NULL, NULL, SP_AS_OWNER, 1, &rows);
	d = sp_rows_get(&rows, 0, 1, &isnull);
	if (!isnull)
		*newest = DatumGetTimestampTz(d);
	return !isnull;
}

/* How many of a page's events are not in webhook_event yet. */
static int
count_lacking(const SpStripePage *page)
{
	Datum	   *ids;
	Datum		value;
	SpRows		rows;
	int			i;

	if (page->nitems == 0)
		return 0;
	ids = palloc(sizeof(Datum) * page->nitems);
	for (i = 0; i < page->nitems; i++)
		ids[i] = CStringGetTextDatum(page->items[i].id);
	value = PointerGetDatum(construct_array(ids, page->nitems, TEXTOID, -1, false, TYPALIGN_INT));
	sp_stmt_run(&held_stmt, &value, NULL, SP_AS_OWNER, 1, &rows);
	return page->nitems - (int) sp_rows_int64(&rows, 0, 1, NULL);
}

static void
sync_error_context(void *arg)
{
	const SpJsonItem *item = arg;

	errcontext("stripepay.sync_events applying Stripe event %s", item->id);
}

/*
 * Feeds a page's events to the engine, oldest first (Stripe lists newest
 * first), so that actionflows fire in the order things happened.
 */
static void
apply_page(const SpApply *ap, const SpStripePage *page, SpSyncCounts *counts)
{
	MemoryContext event_cxt = AllocSetContextCreate(CurrentMemoryContext, "stripepay sync event",
													ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	int			i;

	for (i = page->nitems - 1; i >= 0; i--)
	{
		ErrorContextCallback errcb;
		SpEvent    *ev;
		SpEventResult rc;
		bool		already;

		CHECK_FOR_INTERRUPTS();
		errcb.callback = sync_error_context;
		errcb.arg = (void *) &page->items[i];
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;

		/* what one event allocates goes with it */
		old = MemoryContextSwitchTo(event_cxt);
		ev = palloc(sizeof(SpEvent));
		rc = sp_event_decode(page->items[i].json, page->items[i].json_len, ev);
		if (rc != SP_EVENT_OK)
			sp_raise_event_error(rc, ev);
		sp_check_livemode(ev, ap->key_mode);
		already = sp_engine_ingest(ap, ev, page->items[i].json, page->items[i].json_len);
		MemoryContextSwitchTo(old);
		MemoryContextReset(event_cxt);

		error_context_stack = errcb.previous;
		counts->fetched++;
		if (already)
			counts->already_had++;
		else
			counts->applied++;
	}
	MemoryContextDelete(event_cxt);
}

/* GET /v1/events, newest first, from `since` on, before or after a cursor. */
static void
list_events(const char *api_key, int64 since, const char *cursor_name, const char *cursor,
			SpStripePage *page)
{
	SpForm	   *query = sp_form_create();

	sp_form_add_int(query, "limit", SP_STRIPE_PAGE_MAX);
	sp_form_add_int(query, "created[gte]", since);
	if (cursor)
		sp_form_add(query, cursor_name, cursor);
	sp_stripe_list("/v1/events", query, api_key, "event list", page);
}

/* Lists a page into pagecxt, which is emptied first. */
static void
list_page(MemoryContext pagecxt, const char *api_key, int64 since, const char *cursor_name,
		  const char *cursor, SpStripePage *page)
{
	MemoryContext old;

	CHECK_FOR_INTERRUPTS();
	MemoryContextReset(pagecxt);
	old = MemoryContextSwitchTo(pagecxt);
	list_events(api_key, since, cursor_name, cursor, page);
	MemoryContextSwitchTo(old);
}

/*
 * sync_events(since timestamptz DEFAULT NULL) → (synced_from, fetched, applied, already_had)
 *
 * Lists Stripe's events created since `since` (default: the newest event
 * held, else 30 days ago) and ingests those we lack, oldest first.
 *
 * Memory stays bounded whatever the backlog: Stripe lists newest first, so
 * a first pass pages back to the oldest page, keeping nothing but a count of
 * the events we lack; a second pass walks forward from that page with
 * ending_before, one page in memory at a time, each page anchored on an
 * event already applied, so no event can fall between two pages (events
 * that arrive meanwhile are simply found at the end).  When the first pass
 * finds nothing lacking, no second pass is made.
 *
 * One call is one transaction: a Stripe error or a failing user trigger
 * rolls back everything it applied, and calling it again is safe.
 */
Datum
stripepay_sync_events(PG_FUNCTION_ARGS)
{
	SpCall		call;
	SpApply		ap;
	TimestampTz since;
	int64		since_unix;
	SpStripePage *page;
	MemoryContext pagecxt;
	char	   *cursor = NULL;
	int			lacking = 0;
	int			listed = 0;
	SpSyncCounts counts = {0, 0, 0};
	TupleDesc	tupdesc;
	Datum		result[4];
	bool		result_nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	sp_call_begin(&call, fcinfo);
	sp_settings_require_key(&call.settings);
	memset(&ap, 0, sizeof(ap));
	ap.run_as = call.run_as;
	ap.source = "sync";
	ap.api_key = call.settings.secret_key;
	ap.key_mode = sp_key_mode(call.settings.secret_key);

	/* one sync at a time: two would wait on each other's events */
	sp_lock_int(SP_LOCK_SYNC, 0);

	if (!PG_ARGISNULL(0))
		since = PG_GETARG_TIMESTAMPTZ(0);
	else if (!newest_event(&since))
		since = TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(),
											-(int64) SP_EVENT_RETENTION_DAYS * 86400 * 1000);
	if (TIMESTAMP_NOT_FINITE(since))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("since must be a finite time")));
	/* created has whole seconds: round down, never skip the second of `since` */
	since_unix = (int64) timestamptz_to_time_t(since);
	if (since % USECS_PER_SEC < 0)
		since_unix--;
	since = time_t_to_timestamptz((pg_time_t) since_unix);

	page = palloc(sizeof(SpStripePage));
	pagecxt = AllocSetContextCreate(CurrentMemoryContext, "stripepay sync page",
									ALLOCSET_DEFAULT_SIZES);

	/* first pass: back to the oldest page, counting what we lack */
	do
	{
		list_page(pagecxt, call.settings.secret_key, since_unix, "starting_after", cursor, page);
		if (page->nitems > 0)
		{
			if (cursor)
				pfree(cursor);
			cursor = pstrdup(page->items[page->nitems - 1].id);
		}
		listed += page->nitems;
		lacking += count_lacking(page);
	} while (page->has_more && page->nitems > 0);

	if (lacking == 0)
		counts.fetched = counts.already_had = listed;
	else
	{
		bool		newest = false;

		/* second pass: the oldest page is at hand; then forward, page by page */
		for (;;)
		{
			apply_page(&ap, page, &counts);
			if (newest || page->nitems == 0)
				break;
			pfree(cursor);
			cursor = pstrdup(page->items[0].id);
			list_page(pagecxt, call.settings.secret_key, since_unix, "ending_before", cursor, page);
			newest = !page->has_more;
		}
	}
	MemoryContextDelete(pagecxt);
	sp_call_end(&call);

	result[0] = TimestampTzGetDatum(since);
	result[1] = Int32GetDatum(counts.fetched);
	result[2] = Int32GetDatum(counts.applied);
	result[3] = Int32GetDatum(counts.already_had);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, result, result_nulls)));
}

/* ----------------------------------------------------------------
 * refresh_payment
 * ----------------------------------------------------------------
 */

/*
 * A payment's outcome as Stripe shows it now, as the event that would have
 * brought it, in rising precedence: money that moved beats an expiry, which
 * beats a failed attempt (as the never-regress rule ranks them).
 */
typedef enum SpFound
{
	SP_FOUND_NOTHING,
	SP_FOUND_FAILED,			/* PaymentIntent: a failed attempt */
	SP_FOUND_CANCELED,			/* PaymentIntent canceled */
	SP_FOUND_EXPIRED,			/* Checkout Session expired */
	SP_FOUND_SESSION_PAID,		/* Checkout Session complete and paid */
	SP_FOUND_SUCCEEDED			/* PaymentIntent succeeded */
} SpFound;

static const char *const sp_found_event[] = {
	[SP_FOUND_NOTHING] = NULL,
	[SP_FOUND_FAILED] = "payment_intent.payment_failed",
	[SP_FOUND_CANCELED] = "payment_intent.canceled",
	[SP_FOUND_EXPIRED] = "checkout.session.expired",
	[SP_FOUND_SESSION_PAID] = "checkout.session.completed",
	[SP_FOUND_SUCCEEDED] = "payment_intent.succeeded",
};

static SpFound
session_outcome(const SpEvent *session)
{
	if (strcmp(session->status, "expired") == 0)
		return SP_FOUND_EXPIRED;
	if (strcmp(session->status, "complete") == 0 &&
		(strcmp(session->payment_status, "paid") == 0 ||
		 strcmp(session->payment_status, "no_payment_required") == 0))
		return SP_FOUND_SESSION_PAID;
	return SP_FOUND_NOTHING;
}

static SpFound
intent_outcome(const SpEvent *intent)
{
	if (strcmp(intent->status, "succeeded") == 0)
		return SP_FOUND_SUCCEEDED;
	if (strcmp(intent->status, "canceled") == 0)
		return SP_FOUND_CANCELED;
	if (strcmp(intent->status, "requires_payment_method") == 0 &&
		(intent->last_payment_error_code[0] || intent->last_payment_error_decline_code[0] ||
		 intent->last_payment_error_message[0]))
		return SP_FOUND_FAILED;
	return SP_FOUND_NOTHING;
}

static Datum
return_payment(SpCall *call, int64 payment_id, FunctionCallInfo fcinfo)
{
	Datum		value = Int64GetDatum(payment_id);
	SpRows		rows;

	sp_stmt_run(&row_stmt, &value, NULL, SP_AS_OWNER, 1, &rows);
	sp_call_end(call);
	return sp_rows_composite(&rows, 0, fcinfo);
}

/*
 * refresh_payment(payment_id bigint) → stripepay.payment_record
 *
 * Reads the payment's Checkout Session and PaymentIntent from Stripe and
 * applies the outcome found, as a webhook would have: the same rules, the
 * payment flow fired once if the status moves (a late webhook for the same
 * outcome then finds it known).  The flow row's event_id is
 * 'refresh_payment'.
 */
Datum
stripepay_refresh_payment(PG_FUNCTION_ARGS)
{
	SpCall		call;
	SpApply		ap;
	int64		payment_id;
	const char *key_mode;
	char	   *session_id;
	char	   *intent_id;
	SpEvent    *session = NULL;
	SpEvent    *intent = NULL;
	SpEvent    *outcome;
	SpFound		found = SP_FOUND_NOTHING;
	const char *target;
	SpPaymentRow row;
	SpLinks		links;
	Datum		value;
	SpRows		rows;

	sp_require_arg(fcinfo, 0, "payment_id");
	payment_id = PG_GETARG_INT64(0);
	sp_call_begin(&call, fcinfo);
	sp_settings_require_key(&call.settings);
	key_mode = sp_key_mode(call.settings.secret_key);

	value = Int64GetDatum(payment_id);
	sp_stmt_run(&payment_stmt, &value, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NO_SUCH_PAYMENT),
				 errmsg("payment " INT64_FORMAT " does not exist", payment_id)));
	session_id = sp_rows_text(&rows, 0, 1);
	intent_id = sp_rows_text(&rows, 0, 2);
	sp_call_check_owner(&call, sp_rows_text(&rows, 0, 4), "made it", "refresh payment", payment_id);
	if (session_id == NULL && intent_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_AT_STRIPE),
				 errmsg("payment " INT64_FORMAT " has no Stripe object to read", payment_id),
				 errdetail("It has neither a Checkout Session nor a PaymentIntent id.")));

	/* no row lock while Stripe answers: webhooks for this payment go on */
	if (session_id != NULL)
	{
		session = sp_stripe_fetch_object(call.settings.secret_key,
										 psprintf("/v1/checkout/sessions/%s", session_id),
										 "Checkout Session", key_mode);
		found = session_outcome(session);
		if (intent_id == NULL && session->payment_intent[0] != '\0')
			intent_id = session->payment_intent;
	}
	if (intent_id != NULL)
	{
		SpFound		pi_found;

		intent = sp_stripe_fetch_object(call.settings.secret_key,
										psprintf("/v1/payment_intents/%s", intent_id),
										"PaymentIntent", key_mode);
		pi_found = intent_outcome(intent);
		if (pi_found > found)
			found = pi_found;
	}
	if (found == SP_FOUND_NOTHING)
		return return_payment(&call, payment_id, fcinfo);

	outcome = (found == SP_FOUND_EXPIRED || found == SP_FOUND_SESSION_PAID) ? session : intent;
	strlcpy(outcome->id, "refresh_payment", sizeof(outcome->id));
	strlcpy(outcome->type, sp_found_event[found], sizeof(outcome->type));
	target = sp_payment_target(outcome->type, outcome->payment_status);

	/*
	 * Stamped with the time Stripe was read, after the request: an event
	 * about this outcome was created before it, so it cannot move it again.
	 * Only a move is news: an outcome the row already has, seen again,
	 * fires nothing, nor does one the rules would not take.
	 */
	outcome->created = (long long) timestamptz_to_time_t(GetCurrentTimestamp()) + 1;
	if (!sp_engine_lock_payment(payment_id, &row) || strcmp(row.status, target) == 0 ||
		!sp_state_advances(SP_KIND_PAYMENT, row.status, row.has_event_created, row.event_created,
						   target, true, sp_engine_event_time(outcome)))
		return return_payment(&call, payment_id, fcinfo);

	memset(&ap, 0, sizeof(ap));
	ap.run_as = call.run_as;
	ap.source = "webhook";
	memset(&links, 0, sizeof(links));
	sp_engine_apply_payment(&ap, outcome, &row, &links);
	return return_payment(&call, payment_id, fcinfo);
}
