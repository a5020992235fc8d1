/*-------------------------------------------------------------------------
 *
 * sp_sync.c
 *		sync_events() and refresh_payment(): asking Stripe for what the
 *		webhooks did not bring.
 *
 * Stripe retries a webhook for three days; an endpoint that is down for
 * longer, or an event lost on the way, leaves the tables behind.  Stripe
 * keeps 30 days of events, so sync_events() lists them and feeds every one
 * we lack through the very path a webhook takes (sp_ingest_event), which
 * records it once and applies it under the same never-regress rules.
 * refresh_payment() reads one payment's Checkout Session and PaymentIntent
 * and applies what it finds through stripepay._apply_payment().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "sp_api.h"
#include "sp_event.h"
#include "sp_facts.h"
#include "sp_store.h"
#include "sp_stripe.h"
#include "sp_webhook.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_sync_events);
PG_FUNCTION_INFO_V1(stripepay_refresh_payment);

/* Stripe keeps events this long; with nothing to start from, sync them all */
#define SP_EVENT_RETENTION_DAYS 30

/* the facts of one object: a few short fields (metadata values up to 2 kB) */
#define SP_REFRESH_FACTS_SIZE (64 * 1024)

typedef struct SpSyncCounts
{
	int			fetched;
	int			applied;
	int			already_had;
} SpSyncCounts;

/*
 * Where sync starts by default: the created of the newest event held.  The
 * index on (type, created) answers it one type at a time (a few dozen index
 * probes), where a plain max(created) would read the whole table.
 */
static bool
sp_newest_event(TimestampTz *newest)
{
	bool		isnull;
	Datum		d;

	sp_exec("WITH RECURSIVE types(t) AS ("
			"    SELECT min(type) FROM stripepay.webhook_event"
			"  UNION ALL"
			"    SELECT (SELECT min(type) FROM stripepay.webhook_event WHERE type > t)"
			"      FROM types WHERE t IS NOT NULL)"
			" SELECT max((SELECT max(created) FROM stripepay.webhook_event WHERE type = t))"
			"   FROM types WHERE t IS NOT NULL",
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		*newest = DatumGetTimestampTz(d);
	return !isnull;
}

/* How many of a page's events are not in webhook_event yet. */
static int
sp_count_lacking(const SpStripePage *page)
{
	Datum	   *ids;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		values[1];
	int			held;
	int			i;

	if (page->nitems == 0)
		return 0;
	ids = palloc(sizeof(Datum) * page->nitems);
	for (i = 0; i < page->nitems; i++)
		ids[i] = CStringGetTextDatum(page->items[i].id);
	values[0] = PointerGetDatum(construct_array(ids, page->nitems, TEXTOID, -1, false, TYPALIGN_INT));
	sp_exec("SELECT count(*) FROM stripepay.webhook_event WHERE id = ANY ($1)",
			1, argtypes, values, NULL, SPI_OK_SELECT);
	held = (int) pg_strtoint64(sp_result_text(0, 1));
	SPI_freetuptable(SPI_tuptable);
	return page->nitems - held;
}

static void
sp_sync_error_context(void *arg)
{
	const SpJsonItem *item = arg;

	errcontext("stripepay.sync_events applying Stripe event %s", item->id);
}

/*
 * Feeds a page's events through the webhook path, oldest first (Stripe
 * lists newest first), so that actionflows fire in the order things
 * happened.
 */
static void
sp_sync_apply_page(const SpStripePage *page, const char *key_mode, SpSyncCounts *counts)
{
	int			i;

	for (i = page->nitems - 1; i >= 0; i--)
	{
		ErrorContextCallback errcb;
		SpEvent    *ev;
		bool		already;

		CHECK_FOR_INTERRUPTS();
		errcb.callback = sp_sync_error_context;
		errcb.arg = (void *) &page->items[i];
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;

		/* a level of SPI of its own: what one event allocates goes with it */
		SPI_connect();
		already = sp_ingest_event(page->items[i].json, page->items[i].json_len, NULL,
								  "sync", key_mode, &ev);
		SPI_finish();

		error_context_stack = errcb.previous;
		counts->fetched++;
		if (already)
			counts->already_had++;
		else
			counts->applied++;
	}
}

/* GET /v1/events, newest first, from `since` on, before or after a cursor. */
static void
sp_list_events(const char *api_key, int64 since, const char *cursor_name, const char *cursor,
			   SpStripePage *page)
{
	SpForm	   *query = sp_form_create();

	sp_form_add_int(query, "limit", SP_STRIPE_PAGE_MAX);
	sp_form_add_int(query, "created[gte]", since);
	if (cursor)
		sp_form_add(query, cursor_name, cursor);
	sp_stripe_list("/v1/events", query, api_key, "event list", page);
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
	SpSettings	settings;
	const char *key_mode;
	TimestampTz since;
	int64		since_unix;
	SpStripePage *page;
	MemoryContext pagecxt;
	MemoryContext oldcxt;
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

	SPI_connect();
	sp_settings_load(&settings);
	key_mode = sp_key_mode(settings.secret_key);

	/* one sync at a time: two would wait on each other's events */
	sp_exec("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('stripepay.sync_events', 0))",
			0, NULL, NULL, NULL, SPI_OK_SELECT);

	if (!PG_ARGISNULL(0))
		since = PG_GETARG_TIMESTAMPTZ(0);
	else if (!sp_newest_event(&since))
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
		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(pagecxt);
		oldcxt = MemoryContextSwitchTo(pagecxt);
		sp_list_events(settings.secret_key, since_unix, "starting_after", cursor, page);
		MemoryContextSwitchTo(oldcxt);
		if (page->nitems > 0)
		{
			if (cursor)
				pfree(cursor);
			cursor = pstrdup(page->items[page->nitems - 1].id);
		}
		listed += page->nitems;
		lacking += sp_count_lacking(page);
	} while (page->has_more && page->nitems > 0);

	if (lacking == 0)
	{
		counts.fetched = counts.already_had = listed;
	}
	else
	{
		bool		newest = false;

		/* second pass: the oldest page is at hand; then forward, page by page */
		for (;;)
		{
			sp_sync_apply_page(page, key_mode, &counts);
			if (newest || page->nitems == 0)
				break;
			pfree(cursor);
			cursor = pstrdup(page->items[0].id);

			CHECK_FOR_INTERRUPTS();
			MemoryContextReset(pagecxt);
			oldcxt = MemoryContextSwitchTo(pagecxt);
			sp_list_events(settings.secret_key, since_unix, "ending_before", cursor, page);
			MemoryContextSwitchTo(oldcxt);
			newest = !page->has_more;
		}
	}
	MemoryContextDelete(pagecxt);
	SPI_finish();

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
 * beats a failed attempt (as stripepay._rank orders them).
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

static const struct
{
	const char *event_type;
	const char *status;			/* what _apply_payment makes of it */
}			sp_found[] = {
	[SP_FOUND_NOTHING] = {NULL, NULL},
	[SP_FOUND_FAILED] = {"payment_intent.payment_failed", "FAILED"},
	[SP_FOUND_CANCELED] = {"payment_intent.canceled", "CANCELED"},
	[SP_FOUND_EXPIRED] = {"checkout.session.expired", "CANCELED"},
	[SP_FOUND_SESSION_PAID] = {"checkout.session.completed", "SUCCESSFUL"},
	[SP_FOUND_SUCCEEDED] = {"payment_intent.succeeded", "SUCCESSFUL"},
};

/*
 * GETs one Stripe object and decodes it with the webhook decoder, as the
 * data.object of an event, so its fields read exactly as a webhook's would.
 */
static SpEvent *
sp_fetch_object(const char *api_key, const char *path, const char *key_mode)
{
	SpHttpResponse resp;
	StringInfoData wrapped;
	SpEvent    *ev = palloc(sizeof(SpEvent));
	SpEventResult rc;

	sp_stripe_call("GET", path, NULL, api_key, NULL, &resp);
	initStringInfo(&wrapped);
	appendStringInfo(&wrapped,
					 "{\"id\":\"evt_refresh\",\"object\":\"event\",\"type\":\"refresh\","
					 "\"created\":0,\"livemode\":%s,\"data\":{\"object\":",
					 strcmp(key_mode, "live") == 0 ? "true" : "false");
	appendBinaryStringInfo(&wrapped, resp.body, resp.body_len);
	appendStringInfoString(&wrapped, "}}");
	rc = sp_event_decode(wrapped.data, wrapped.len, ev);
	if (rc != SP_EVENT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The object Stripe returned cannot be read: %s%s%s.", sp_event_result_name(rc),
						   ev->error_path[0] ? " at " : "", ev->error_path),
				 errcontext("Stripe request GET %s, Request-Id %s", path,
							resp.request_id[0] ? resp.request_id : "none")));
	return ev;
}

/* Returns the refreshed row, and ends the SPI connection. */
static Datum
sp_return_payment(int64 payment_id)
{
	return sp_return_row("SELECT * FROM stripepay.payment_record WHERE id = $1", payment_id);
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
	int64		payment_id;
	SpSettings	settings;
	const char *key_mode;
	char	   *session_id;
	char	   *intent_id;
	char	   *order_id;
	SpEvent    *session = NULL;
	SpEvent    *intent = NULL;
	SpEvent    *outcome;
	SpFound		found = SP_FOUND_NOTHING;
	char	   *facts;
	TimestampTz at;
	Oid			argtypes[3] = {INT8OID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3];

	sp_require_arg(fcinfo, 0, "payment_id");
	payment_id = PG_GETARG_INT64(0);

	SPI_connect();
	sp_settings_load(&settings);
	key_mode = sp_key_mode(settings.secret_key);

	values[0] = Int64GetDatum(payment_id);
	if (sp_exec("SELECT checkout_session_id, payment_intent_id, order_id, created_by"
				"  FROM stripepay.payment_record WHERE id = $1",
				1, argtypes, values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NO_SUCH_PAYMENT),
				 errmsg("payment " INT64_FORMAT " does not exist", payment_id)));
	session_id = sp_result_text(0, 1);
	intent_id = sp_result_text(0, 2);
	order_id = sp_result_text(0, 3);
	sp_check_owner(sp_result_text(0, 4), "made it", "refresh payment", payment_id);
	if (session_id == NULL && intent_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_AT_STRIPE),
				 errmsg("payment " INT64_FORMAT " has no Stripe object to read", payment_id),
				 errdetail("It has neither a Checkout Session nor a PaymentIntent id.")));

	/* no row lock while Stripe answers: webhooks for this payment go on */
	if (session_id != NULL)
	{
		session = sp_fetch_object(settings.secret_key,
								  psprintf("/v1/checkout/sessions/%s", session_id), key_mode);
		if (strcmp(session->status, "expired") == 0)
			found = SP_FOUND_EXPIRED;
		else if (strcmp(session->status, "complete") == 0 &&
				 (strcmp(session->payment_status, "paid") == 0 ||
				  strcmp(session->payment_status, "no_payment_required") == 0))
			found = SP_FOUND_SESSION_PAID;
		if (intent_id == NULL && session->payment_intent[0] != '\0')
			intent_id = session->payment_intent;
	}
	if (intent_id != NULL)
	{
		SpFound		pi_found = SP_FOUND_NOTHING;

		intent = sp_fetch_object(settings.secret_key,
								 psprintf("/v1/payment_intents/%s", intent_id), key_mode);
		if (strcmp(intent->status, "succeeded") == 0)
			pi_found = SP_FOUND_SUCCEEDED;
		else if (strcmp(intent->status, "canceled") == 0)
			pi_found = SP_FOUND_CANCELED;
		else if (strcmp(intent->status, "requires_payment_method") == 0 &&
				 (intent->last_payment_error_code[0] || intent->last_payment_error_decline_code[0] ||
				  intent->last_payment_error_message[0]))
			pi_found = SP_FOUND_FAILED;
		if (pi_found > found)
			found = pi_found;
	}
	if (found == SP_FOUND_NOTHING)
		PG_RETURN_DATUM(sp_return_payment(payment_id));

	/*
	 * Stamped with the time Stripe was read, after the request: an event
	 * about this outcome was created before it, so it cannot move it again.
	 */
	at = GetCurrentTimestamp();

	/*
	 * Only a move is news.  An outcome the row already has, seen again,
	 * fires nothing (a FAILED payment found FAILED later is not a second
	 * failure), nor does one the rules would not take.
	 */
	argtypes[1] = TEXTOID;
	values[1] = CStringGetTextDatum(sp_found[found].status);
	values[2] = TimestampTzGetDatum(at);
	if (sp_exec("SELECT 1 FROM stripepay.payment_record"
				" WHERE id = $1 AND status <> $2"
				"   AND stripepay._advances('payment', status, event_created, $2, $3)"
				" FOR UPDATE",
				3, argtypes, values, NULL, SPI_OK_SELECT) == 0)
		PG_RETURN_DATUM(sp_return_payment(payment_id));

	outcome = (found == SP_FOUND_EXPIRED || found == SP_FOUND_SESSION_PAID) ? session : intent;
	strlcpy(outcome->id, "refresh_payment", sizeof(outcome->id));
	strlcpy(outcome->type, sp_found[found].event_type, sizeof(outcome->type));
	/* the facts name this row, whatever the object's metadata says */
	snprintf(outcome->metadata_payment_id, sizeof(outcome->metadata_payment_id), INT64_FORMAT, payment_id);
	strlcpy(outcome->metadata_order_id, order_id, sizeof(outcome->metadata_order_id));
	facts = palloc(SP_REFRESH_FACTS_SIZE);
	if (sp_facts_json(outcome, facts, SP_REFRESH_FACTS_SIZE) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the Stripe object of payment " INT64_FORMAT " is too large to apply", payment_id)));

	argtypes[1] = TEXTOID;
	values[1] = CStringGetTextDatum(facts);
	sp_exec("SELECT (stripepay._apply_payment($2::jsonb, $3)).payment_id",
			3, argtypes, values, NULL, SPI_OK_SELECT);
	if (sp_result_text(0, 1) == NULL || pg_strtoint64(sp_result_text(0, 1)) != payment_id)
		elog(ERROR, "stripepay: the Stripe object of payment " INT64_FORMAT " applied to payment %s",
			 payment_id, sp_result_text(0, 1) ? sp_result_text(0, 1) : "none");
	PG_RETURN_DATUM(sp_return_payment(payment_id));
}
