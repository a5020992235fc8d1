/*-------------------------------------------------------------------------
 *
 * sp_subscription.c
 *		stripe_subscribe(), stripe_cancel_subscription() and
 *		stripe_resume_subscription().
 *
 * A subscription starts in Checkout (mode=subscription) and from then on
 * follows Stripe's webhooks.  Cancelling and resuming call Stripe, then
 * record the Subscription Stripe answers with through the event engine's
 * rules (sp_engine_subscription_changed), so the subscription flow fires
 * once, whichever arrives first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pure/sp_formats.h"
#include "pure/sp_rules.h"
#include "sp_api.h"
#include "sp_call.h"
#include "sp_engine.h"
#include "sp_lock.h"
#include "sp_stmt.h"
#include "sp_stripe.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_stripe_subscribe);
PG_FUNCTION_INFO_V1(stripepay_stripe_cancel_subscription);
PG_FUNCTION_INFO_V1(stripepay_stripe_resume_subscription);

static SpStmt live_stmt = {
	.sql = "SELECT id, status FROM stripepay.recurring_payment"
	" WHERE order_id = $1 AND subscription_id IS NOT NULL"
	"   AND status NOT IN ('CANCELED', 'INCOMPLETE_EXPIRED') LIMIT 1",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt open_stmt = {
	.sql = "SELECT * FROM stripepay.recurring_payment"
	" WHERE order_id = $1 AND price_id = $2 AND status = 'INCOMPLETE'"
	"   AND subscription_id IS NULL AND expires_at > pg_catalog.now() + interval '10 minutes'"
	" ORDER BY id DESC LIMIT 1",
	.nargs = 2, .argtypes = {INT8OID, TEXTOID}
};
static SpStmt open_ways_stmt = {
	.sql = "SELECT id, checkout_session_id, true, status FROM stripepay.recurring_payment"
	" WHERE order_id = $1 AND status = 'INCOMPLETE' AND subscription_id IS NULL"
	"   AND checkout_session_id IS NOT NULL AND expires_at > pg_catalog.now()"
	" ORDER BY id",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt close_stmt = {
	.sql = "UPDATE stripepay.recurring_payment SET status = 'INCOMPLETE_EXPIRED',"
	"       updated_at = pg_catalog.now()"
	" WHERE id = $1 AND status = 'INCOMPLETE'",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt record_stmt = {
	.sql = "INSERT INTO stripepay.recurring_payment (id, order_id, price_id, created_by)"
	" VALUES ($1, $2, $3, $4)",
	.nargs = 4, .argtypes = {INT8OID, INT8OID, TEXTOID, NAMEOID}
};
static SpStmt session_stmt = {
	.sql = "UPDATE stripepay.recurring_payment SET checkout_session_id = $2, checkout_url = $3,"
	"       expires_at = pg_catalog.to_timestamp($4::pg_catalog.float8),"
	"       livemode = $5::pg_catalog.bool, updated_at = pg_catalog.now()"
	" WHERE id = $1 RETURNING *",
	.nargs = 5, .argtypes = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
};
static SpStmt lock_stmt = {
	.sql = "SELECT subscription_id, status, created_by, checkout_session_id"
	"  FROM stripepay.recurring_payment WHERE id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt row_stmt = {
	.sql = "SELECT * FROM stripepay.recurring_payment WHERE id = $1",
	.nargs = 1, .argtypes = {INT8OID}
};

static void
check_price_id(const char *price_id)
{
	char		shown[80];

	if (sp_price_id_valid(price_id))
		return;
	sp_one_line(shown, sizeof(shown), price_id, 64);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid Stripe price id \"%s\"", shown),
			 errdetail("A price id looks like price_1MoBy5LkdIwHu7ixZhnattbh.")));
}

static Datum
return_row(SpCall *call, int64 rp_id, FunctionCallInfo fcinfo)
{
	Datum		value = Int64GetDatum(rp_id);
	SpRows		rows;

	sp_stmt_run(&row_stmt, &value, NULL, SP_AS_OWNER, 1, &rows);
	sp_call_end(call);
	return sp_rows_composite(&rows, 0, fcinfo);
}

static SpApply
apply_of(const SpCall *call)
{
	SpApply		ap;

	memset(&ap, 0, sizeof(ap));
	ap.run_as = call->run_as;
	ap.source = "webhook";
	return ap;
}

static void
subscription_completed(int64 order_id, int64 rp_id, const char *session_id,
					   bool is_session pg_attribute_unused())
{
	ereport(ERROR,
			(errcode(ERRCODE_SP_ALREADY_SUBSCRIBED),
			 errmsg("order " INT64_FORMAT " is subscribing", order_id),
			 errdetail("The buyer completed Checkout Session %s of subscription " INT64_FORMAT
					   "; the subscription comes by webhook.", session_id, rp_id),
			 errhint("Cancel it with stripepay.stripe_cancel_subscription() once it has arrived.")));
}

static void
refuse_if_subscribed(int64 order_id)
{
	Datum		value = Int64GetDatum(order_id);
	SpRows		rows;

	sp_stmt_run(&live_stmt, &value, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows > 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_ALREADY_SUBSCRIBED),
				 errmsg("order " INT64_FORMAT " already has a subscription", order_id),
				 errdetail("Subscription " INT64_FORMAT " of this order is %s.",
						   sp_rows_int64(&rows, 0, 1, NULL), sp_rows_text(&rows, 0, 2)),
				 errhint("Cancel it with stripepay.stripe_cancel_subscription() first.")));
}

/* Creates the subscription's Checkout Session and records its ids. */
static void
open_checkout(const SpCall *call, int64 order_id, int64 rp_id, const char *price_id, SpRows *rows)
{
	static const char *const paths[] = {"id", "url", "expires_at", "livemode"};
	const char *f[4];
	SpForm	   *form = sp_form_create();
	SpHttpResponse resp;
	Datum		values[5];
	bool		nulls[5];
	int			i;

	sp_form_add(form, "mode", "subscription");
	sp_form_add(form, "line_items[0][price]", price_id);
	sp_form_add_int(form, "line_items[0][quantity]", 1);
	sp_form_add(form, "success_url", call->settings.success_url);
	if (call->settings.cancel_url)
		sp_form_add(form, "cancel_url", call->settings.cancel_url);
	sp_form_add_int(form, "client_reference_id", order_id);
	sp_form_add_ids(form, "metadata", order_id, "stripepay_recurring_payment_id", rp_id);
	sp_form_add_ids(form, "subscription_data[metadata]", order_id, "stripepay_recurring_payment_id", rp_id);
	sp_stripe_call("POST", "/v1/checkout/sessions", form, call->settings.secret_key,
				   sp_idempotency_key("subscribe", psprintf(INT64_FORMAT, rp_id)), &resp);
	sp_stripe_fields(resp.body, resp.body_len, "Checkout Session", paths, 4, f);
	if (f[0] == NULL || f[1] == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The Checkout Session has no %s.", f[0] == NULL ? "id" : "url")));
	values[0] = Int64GetDatum(rp_id);
	nulls[0] = false;
	for (i = 0; i < 4; i++)
		values[i + 1] = sp_text_or_null(f[i], &nulls[i + 1]);
	sp_stmt_run(&session_stmt, values, nulls, call->run_as, 1, rows);
}

/*
 * stripe_subscribe(order_id bigint, price_id text)
 *
 * Records an INCOMPLETE subscription and creates its Checkout Session for a
 * recurring Price.  A second call while that session is open returns it.
 */
Datum
stripepay_stripe_subscribe(PG_FUNCTION_ARGS)
{
	SpCall		call;
	int64		order_id;
	char	   *price_id;
	int64		rp_id;
	Datum		values[4];
	SpRows		rows;

	sp_require_arg(fcinfo, 0, "order_id");
	sp_require_arg(fcinfo, 1, "price_id");
	order_id = PG_GETARG_INT64(0);
	price_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_price_id(price_id);
	sp_require_read_committed("stripe_subscribe");

	sp_call_begin(&call, fcinfo);
	sp_settings_require_key(&call.settings);
	sp_settings_require_success_url(&call.settings);

	sp_lock_int(SP_LOCK_SUBSCRIBE, order_id);
	refuse_if_subscribed(order_id);
	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(price_id);
	sp_stmt_run(&open_stmt, values, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
	{
		sp_close_open_ways_to_pay(call.settings.secret_key, order_id, &open_ways_stmt, &close_stmt,
								  call.run_as, subscription_completed);
		rp_id = sp_next_id("recurring_payment_id_seq");
		values[0] = Int64GetDatum(rp_id);
		values[1] = Int64GetDatum(order_id);
		values[2] = CStringGetTextDatum(price_id);
		values[3] = sp_call_caller_name(&call);
		sp_stmt_run(&record_stmt, values, NULL, call.run_as, 0, NULL);
		open_checkout(&call, order_id, rp_id, price_id, &rows);
	}
	sp_call_end(&call);
	return sp_rows_composite(&rows, 0, fcinfo);
}

typedef struct OwnSubscription
{
	char	   *subscription_id;	/* NULL before Checkout completed */
	char	   *status;
	char	   *session_id;
} OwnSubscription;

/*
 * Locks a subscription row for a change and checks that the caller may make
 * it: the role that subscribed, an admin or a superuser.
 */
static void
lock_own_subscription(const SpCall *call, int64 rp_id, OwnSubscription *s)
{
	Datum		value = Int64GetDatum(rp_id);
	SpRows		rows;

	sp_stmt_run(&lock_stmt, &value, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NO_SUCH_SUBSCRIPTION),
				 errmsg("subscription " INT64_FORMAT " does not exist", rp_id)));
	s->subscription_id = sp_rows_text(&rows, 0, 1);
	s->status = sp_rows_text(&rows, 0, 2);
	s->session_id = sp_rows_text(&rows, 0, 4);
	sp_call_check_owner(call, sp_rows_text(&rows, 0, 3), "subscribed", "change subscription", rp_id);
}

/*
 * Records the Subscription Stripe answered with through the engine's rules,
 * stamped with this second: the change's own webhook comes later and finds
 * it known.
 */
static void
record_answer(const SpCall *call, int64 rp_id, const SpHttpResponse *resp, const char *cause)
{
	SpEvent    *sub = sp_stripe_decode_object(resp, "Subscription",
											  sp_key_mode(call->settings.secret_key));
	const char *status = sp_subscription_status_of(sub->status);
	SpApply		ap = apply_of(call);
	TimestampTz now = GetCurrentTimestamp();

	if (status == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The Subscription has no status stripepay knows.")));
	sp_engine_subscription_changed(&ap, rp_id, status,
								   sub->has_cancel_at_period_end, sub->cancel_at_period_end,
								   sub->has_canceled_at,
								   time_t_to_timestamptz((pg_time_t) sub->canceled_at),
								   sub->has_cancel_at,
								   time_t_to_timestamptz((pg_time_t) sub->cancel_at),
								   now - now % USECS_PER_SEC, cause);
}

/* Checkout never completed: the session is closed, nothing else exists. */
static void
cancel_checkout(const SpCall *call, int64 rp_id, const OwnSubscription *s)
{
	SpApply		ap = apply_of(call);
	TimestampTz now = GetCurrentTimestamp();

	if (s->session_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NO_SUCH_SUBSCRIPTION),
				 errmsg("subscription " INT64_FORMAT " has nothing to cancel at Stripe", rp_id)));
	if (sp_close_way_to_pay(call->settings.secret_key, s->session_id, true) != SP_CLOSE_CLOSED)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NO_SUCH_SUBSCRIPTION),
				 errmsg("subscription " INT64_FORMAT " cannot be canceled yet", rp_id),
				 errdetail("The buyer completed Checkout Session %s; the subscription comes by webhook.",
						   s->session_id),
				 errhint("Cancel it once its webhook has arrived.")));
	sp_engine_subscription_changed(&ap, rp_id, "INCOMPLETE_EXPIRED", false, false, true, now, false, 0,
								   now - now % USECS_PER_SEC, "stripe_cancel_subscription");
}

/*
 * stripe_cancel_subscription(recurring_payment_id bigint, at_period_end boolean)
 *
 * Cancels now (DELETE), or at the end of the current period (cancel_at =
 * min_period_end: the earliest period end of its items, resolved to a
 * time at once).  Cancelling what is already canceled is a notice.
 */
Datum
stripepay_stripe_cancel_subscription(PG_FUNCTION_ARGS)
{
	SpCall		call;
	int64		rp_id;
	bool		at_period_end;
	OwnSubscription s;
	SpHttpResponse resp;
	char	   *path;
	bool		sent;

	sp_require_arg(fcinfo, 0, "recurring_payment_id");
	rp_id = PG_GETARG_INT64(0);
	at_period_end = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	sp_require_read_committed("stripe_cancel_subscription");

	sp_call_begin(&call, fcinfo);
	sp_settings_require_key(&call.settings);
	lock_own_subscription(&call, rp_id, &s);

	if (strcmp(s.status, "CANCELED") == 0 || strcmp(s.status, "INCOMPLETE_EXPIRED") == 0)
	{
		ereport(NOTICE,
				(errmsg("subscription " INT64_FORMAT " is already %s", rp_id,
						strcmp(s.status, "CANCELED") == 0 ? "canceled" : "expired"),
				 errdetail("Nothing was sent to Stripe.")));
		return return_row(&call, rp_id, fcinfo);
	}
	if (s.subscription_id == NULL)
	{
		cancel_checkout(&call, rp_id, &s);
		return return_row(&call, rp_id, fcinfo);
	}

	/*
	 * Scheduling a cancel is idempotent in itself: each call gets a key of
	 * its own, shared only by its retries.  A key naming the second of the
	 * call made a cancel, resume and cancel in one second replay the first
	 * answer and change nothing at Stripe.
	 */
	path = psprintf("/v1/subscriptions/%s", s.subscription_id);
	if (at_period_end)
	{
		SpForm	   *form = sp_form_create();

		sp_form_add(form, "cancel_at", "min_period_end");
		sent = sp_stripe_send("POST", path, form, call.settings.secret_key,
							  sp_idempotency_key_for_call("cancel-at-period-end",
														  psprintf(INT64_FORMAT, rp_id)),
							  &resp);
	}
	else
		sent = sp_stripe_send("DELETE", path, NULL, call.settings.secret_key, NULL, &resp);
	if (!sent)
	{
		SpHttpResponse now;

		/*
		 * Refused: canceled already, from the dashboard or by this very
		 * request whose answer was lost (its retry finds nothing to delete)?
		 * Then that is what the database learns, as its webhook would say.
		 */
		if (resp.status < 400 || resp.status >= 500 ||
			!sp_stripe_send("GET", path, NULL, call.settings.secret_key, NULL, &now) ||
			strcmp(sp_stripe_decode_object(&now, "Subscription", NULL)->status, "canceled") != 0)
			sp_stripe_raise_error(at_period_end ? "POST" : "DELETE", path, &resp);
		ereport(NOTICE,
				(errmsg("subscription " INT64_FORMAT " was already canceled at Stripe", rp_id)));
		resp = now;
	}
	record_answer(&call, rp_id, &resp, "stripe_cancel_subscription");
	return return_row(&call, rp_id, fcinfo);
}

/*
 * stripe_resume_subscription(recurring_payment_id bigint)
 *
 * Undoes a scheduled cancel, whichever way it was scheduled: at the
 * period's end, or at a date (cancel_at), from here or from the dashboard.
 */
Datum
stripepay_stripe_resume_subscription(PG_FUNCTION_ARGS)
{
	SpCall		call;
	int64		rp_id;
	OwnSubscription s;
	SpHttpResponse resp;
	SpForm	   *form;

	sp_require_arg(fcinfo, 0, "recurring_payment_id");
	rp_id = PG_GETARG_INT64(0);
	sp_require_read_committed("stripe_resume_subscription");

	sp_call_begin(&call, fcinfo);
	sp_settings_require_key(&call.settings);
	lock_own_subscription(&call, rp_id, &s);
	if (s.subscription_id == NULL || strcmp(s.status, "CANCELED") == 0 ||
		strcmp(s.status, "INCOMPLETE_EXPIRED") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_RESUMABLE),
				 errmsg("subscription " INT64_FORMAT " cannot be resumed", rp_id),
				 errdetail("Its status is %s; only a subscription set to cancel later can be.",
						   s.status)));

	form = sp_form_create();
	sp_form_add(form, "cancel_at_period_end", "false");
	sp_form_add(form, "cancel_at", "");
	sp_stripe_call("POST", psprintf("/v1/subscriptions/%s", s.subscription_id), form,
				   call.settings.secret_key,
				   sp_idempotency_key_for_call("resume", psprintf(INT64_FORMAT, rp_id)),
				   &resp);
	record_answer(&call, rp_id, &resp, "stripe_resume_subscription");
	return return_row(&call, rp_id, fcinfo);
}
