/*-------------------------------------------------------------------------
 *
 * sp_subscription.c
 *		stripe_subscribe(), stripe_cancel_subscription() and
 *		stripe_resume_subscription().
 *
 * A subscription starts in Checkout (mode=subscription) and from then on
 * follows Stripe's webhooks.  Cancelling and resuming call Stripe, then
 * record the outcome through the same state rules as a webhook, so the
 * subscription flow fires once, whichever arrives first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "sp_api.h"
#include "sp_store.h"
#include "sp_stripe.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_stripe_subscribe);
PG_FUNCTION_INFO_V1(stripepay_stripe_cancel_subscription);
PG_FUNCTION_INFO_V1(stripepay_stripe_resume_subscription);

static void
sp_check_price_id(const char *price_id)
{
	size_t		len = strlen(price_id);

	if (len < 7 || len > 255 || strncmp(price_id, "price_", 6) != 0 ||
		strspn(price_id + 6, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != len - 6)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Stripe price id \"%.64s\"", price_id),
				 errdetail("A price id looks like price_1MoBy5LkdIwHu7ixZhnattbh.")));
}

static Datum
sp_return_recurring_payment(int64 rp_id)
{
	return sp_return_row("SELECT * FROM stripepay.recurring_payment WHERE id = $1", rp_id);
}

static void
sp_subscription_completed(int64 order_id, int64 rp_id, const char *session_id,
						  bool is_session pg_attribute_unused())
{
	ereport(ERROR,
			(errcode(ERRCODE_SP_ALREADY_SUBSCRIBED),
			 errmsg("order " INT64_FORMAT " is subscribing", order_id),
			 errdetail("The buyer completed Checkout Session %s of subscription " INT64_FORMAT
					   "; the subscription comes by webhook.", session_id, rp_id),
			 errhint("Cancel it with stripepay.stripe_cancel_subscription() once it has arrived.")));
}

/*
 * An order has one subscription Checkout open at a time, whatever its
 * price: the earlier ones are expired first.
 */
static void
sp_close_open_subscriptions(const SpSettings *settings, int64 order_id)
{
	sp_close_open_ways_to_pay(settings->secret_key, order_id,
							  "SELECT id, checkout_session_id, true, status FROM stripepay.recurring_payment"
							  " WHERE order_id = $1 AND status = 'INCOMPLETE' AND subscription_id IS NULL"
							  "   AND checkout_session_id IS NOT NULL AND expires_at > now()"
							  " ORDER BY id",
							  "UPDATE stripepay.recurring_payment SET status = 'INCOMPLETE_EXPIRED', updated_at = now()"
							  " WHERE id = $1 AND status = 'INCOMPLETE'",
							  sp_subscription_completed);
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
	int64		order_id;
	char	   *price_id;
	SpSettings	settings;
	Oid			argtypes[5];
	Datum		values[5];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', '\0'};
	int64		rp_id;
	SpForm	   *form;
	SpHttpResponse resp;

	sp_require_arg(fcinfo, 0, "order_id");
	sp_require_arg(fcinfo, 1, "price_id");
	order_id = PG_GETARG_INT64(0);
	price_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	sp_check_price_id(price_id);
	sp_require_read_committed("stripe_subscribe");

	SPI_connect();
	sp_settings_load(&settings);
	sp_settings_require_success_url(&settings);

	argtypes[0] = INT8OID;
	values[0] = Int64GetDatum(order_id);
	argtypes[1] = TEXTOID;
	values[1] = CStringGetTextDatum(price_id);
	argtypes[2] = NAMEOID;
	values[2] = sp_caller_name();

	sp_exec("SELECT pg_advisory_xact_lock(hashtextextended('stripepay.subscribe:' || $1::text, 0))",
			1, argtypes, values, NULL, SPI_OK_SELECT);
	if (sp_exec("SELECT id, status FROM stripepay.recurring_payment"
				" WHERE order_id = $1 AND subscription_id IS NOT NULL"
				"   AND status NOT IN ('CANCELED', 'INCOMPLETE_EXPIRED') LIMIT 1",
				1, argtypes, values, NULL, SPI_OK_SELECT) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_ALREADY_SUBSCRIBED),
				 errmsg("order " INT64_FORMAT " already has a subscription", order_id),
				 errdetail("Subscription %s of this order is %s.", sp_result_text(0, 1), sp_result_text(0, 2)),
				 errhint("Cancel it with stripepay.stripe_cancel_subscription() first.")));
	if (sp_exec("SELECT id FROM stripepay.recurring_payment"
				" WHERE order_id = $1 AND price_id = $2 AND status = 'INCOMPLETE'"
				"   AND subscription_id IS NULL AND expires_at > now() + interval '10 minutes'"
				" ORDER BY id DESC LIMIT 1",
				2, argtypes, values, NULL, SPI_OK_SELECT) > 0)
		PG_RETURN_DATUM(sp_return_recurring_payment(pg_strtoint64(sp_result_text(0, 1))));
	sp_close_open_subscriptions(&settings, order_id);

	sp_exec("INSERT INTO stripepay.recurring_payment (order_id, price_id, created_by)"
			" VALUES ($1, $2, $3) RETURNING id",
			3, argtypes, values, NULL, SPI_OK_INSERT_RETURNING);
	rp_id = pg_strtoint64(sp_result_text(0, 1));

	form = sp_form_create();
	sp_form_add(form, "mode", "subscription");
	sp_form_add(form, "line_items[0][price]", price_id);
	sp_form_add_int(form, "line_items[0][quantity]", 1);
	sp_form_add(form, "success_url", settings.success_url);
	if (settings.cancel_url)
		sp_form_add(form, "cancel_url", settings.cancel_url);
	sp_form_add_int(form, "client_reference_id", order_id);
	sp_form_add_ids(form, "metadata", order_id, "stripepay_recurring_payment_id", rp_id);
	sp_form_add_ids(form, "subscription_data[metadata]", order_id, "stripepay_recurring_payment_id", rp_id);
	sp_stripe_call("POST", "/v1/checkout/sessions", form, settings.secret_key,
				   sp_idempotency_key("subscribe", psprintf(INT64_FORMAT, rp_id)), &resp);

	{
		static const char *const paths[] = {"id", "url", "expires_at", "livemode"};
		const char *f[4];

		sp_stripe_fields(resp.body, resp.body_len, "Checkout Session", paths, 4, f);
		if (f[0] == NULL || f[1] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SP_API_ERROR),
					 errmsg("unexpected response from Stripe"),
					 errdetail("The Checkout Session has no %s.", f[0] == NULL ? "id" : "url")));
		argtypes[0] = INT8OID;
		values[0] = Int64GetDatum(rp_id);
		argtypes[1] = TEXTOID;
		values[1] = CStringGetTextDatum(f[0]);
		argtypes[2] = TEXTOID;
		values[2] = CStringGetTextDatum(f[1]);
		argtypes[3] = TEXTOID;
		values[3] = f[2] ? CStringGetTextDatum(f[2]) : (Datum) 0;
		nulls[3] = f[2] ? ' ' : 'n';
		argtypes[4] = BOOLOID;
		values[4] = BoolGetDatum(f[3] != NULL && strcmp(f[3], "true") == 0);
		nulls[4] = f[3] ? ' ' : 'n';
		nulls[5] = '\0';
		sp_exec("UPDATE stripepay.recurring_payment SET checkout_session_id = $2, checkout_url = $3,"
				"       expires_at = to_timestamp($4::double precision), livemode = $5, updated_at = now()"
				" WHERE id = $1",
				5, argtypes, values, nulls, SPI_OK_UPDATE);
	}
	PG_RETURN_DATUM(sp_return_recurring_payment(rp_id));
}

/*
 * Locks a subscription row for a change and checks that the caller may make
 * it: the role that subscribed, an admin or a superuser.  Returns its
 * Stripe subscription id (NULL before Checkout completed) and status.
 */
static void
sp_lock_own_subscription(int64 rp_id, char **subscription_id, char **status, char **session_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	char	   *created_by;

	values[0] = Int64GetDatum(rp_id);
	if (sp_exec("SELECT subscription_id, status, created_by, checkout_session_id"
				"  FROM stripepay.recurring_payment WHERE id = $1 FOR UPDATE",
				1, argtypes, values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NO_SUCH_SUBSCRIPTION),
				 errmsg("subscription " INT64_FORMAT " does not exist", rp_id)));
	*subscription_id = sp_result_text(0, 1);
	*status = sp_result_text(0, 2);
	created_by = sp_result_text(0, 3);
	*session_id = sp_result_text(0, 4);

	sp_check_owner(created_by, "subscribed", "change subscription", rp_id);
}

/* Records Stripe's answer about a subscription through the state rules. */
static void
sp_record_subscription(int64 rp_id, const SpHttpResponse *resp, const char *cause)
{
	static const char *const paths[] = {"status", "cancel_at_period_end", "canceled_at"};
	const char *f[3];
	Oid			argtypes[5] = {INT8OID, TEXTOID, BOOLOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', '\0'};
	char	   *status;
	char	   *p;

	sp_stripe_fields(resp->body, resp->body_len, "Subscription", paths, 3, f);
	if (f[0] == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The Subscription has no status.")));
	status = pstrdup(f[0]);
	for (p = status; *p; p++)
		*p = pg_toupper((unsigned char) *p);

	values[0] = Int64GetDatum(rp_id);
	values[1] = CStringGetTextDatum(status);
	values[2] = BoolGetDatum(f[1] != NULL && strcmp(f[1], "true") == 0);
	nulls[2] = f[1] ? ' ' : 'n';
	values[3] = f[2] ? CStringGetTextDatum(f[2]) : (Datum) 0;
	nulls[3] = f[2] ? ' ' : 'n';
	values[4] = CStringGetTextDatum(cause);
	sp_exec("SELECT stripepay._subscription_changed($1, $2, $3, to_timestamp($4::double precision),"
			"       date_trunc('second', clock_timestamp()), $5)",
			5, argtypes, values, nulls, SPI_OK_SELECT);
}

/* Whether a Subscription Stripe answered with is canceled. */
static bool
sp_subscription_is_canceled(const SpHttpResponse *resp)
{
	static const char *const paths[] = {"status"};
	const char *f[1];

	sp_stripe_fields(resp->body, resp->body_len, "Subscription", paths, 1, f);
	return f[0] != NULL && strcmp(f[0], "canceled") == 0;
}

/*
 * stripe_cancel_subscription(recurring_payment_id bigint, at_period_end boolean)
 *
 * Cancels now (DELETE) or at the end of the period.  Cancelling what is
 * already canceled is a notice, not an error.
 */
Datum
stripepay_stripe_cancel_subscription(PG_FUNCTION_ARGS)
{
	int64		rp_id;
	bool		at_period_end;
	SpSettings	settings;
	char	   *subscription_id;
	char	   *status;
	char	   *session_id;
	SpHttpResponse resp;
	char	   *path;
	bool		sent;

	sp_require_arg(fcinfo, 0, "recurring_payment_id");
	rp_id = PG_GETARG_INT64(0);
	at_period_end = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	sp_require_read_committed("stripe_cancel_subscription");

	SPI_connect();
	sp_settings_load(&settings);
	sp_lock_own_subscription(rp_id, &subscription_id, &status, &session_id);

	if (strcmp(status, "CANCELED") == 0 || strcmp(status, "INCOMPLETE_EXPIRED") == 0)
	{
		ereport(NOTICE,
				(errmsg("subscription " INT64_FORMAT " is already %s", rp_id,
						strcmp(status, "CANCELED") == 0 ? "canceled" : "expired"),
				 errdetail("Nothing was sent to Stripe.")));
		PG_RETURN_DATUM(sp_return_recurring_payment(rp_id));
	}

	if (subscription_id == NULL)
	{
		/* Checkout never completed: close the session, nothing else exists */
		if (session_id == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SP_NO_SUCH_SUBSCRIPTION),
					 errmsg("subscription " INT64_FORMAT " has nothing to cancel at Stripe", rp_id)));
		if (sp_close_way_to_pay(settings.secret_key, session_id, true) != SP_CLOSE_CLOSED)
			ereport(ERROR,
					(errcode(ERRCODE_SP_NO_SUCH_SUBSCRIPTION),
					 errmsg("subscription " INT64_FORMAT " cannot be canceled yet", rp_id),
					 errdetail("The buyer completed Checkout Session %s; the subscription comes by webhook.",
							   session_id),
					 errhint("Cancel it once its webhook has arrived.")));
		{
			Oid			argtypes[2] = {INT8OID, TEXTOID};
			Datum		values[2];

			values[0] = Int64GetDatum(rp_id);
			values[1] = CStringGetTextDatum("stripe_cancel_subscription");
			sp_exec("SELECT stripepay._subscription_changed($1, 'INCOMPLETE_EXPIRED', NULL, now(),"
					"       date_trunc('second', clock_timestamp()), $2)",
					2, argtypes, values, NULL, SPI_OK_SELECT);
		}
		PG_RETURN_DATUM(sp_return_recurring_payment(rp_id));
	}

	/*
	 * Setting cancel_at_period_end is idempotent in itself: each call gets
	 * a key of its own, shared only by its retries.  A key naming the
	 * second of the call made a cancel, resume and cancel in one second
	 * replay the first answer and change nothing at Stripe.
	 */
	path = psprintf("/v1/subscriptions/%s", subscription_id);
	if (at_period_end)
	{
		SpForm	   *form = sp_form_create();

		sp_form_add(form, "cancel_at_period_end", "true");
		sent = sp_stripe_send("POST", path, form, settings.secret_key,
							  sp_idempotency_key_for_call("cancel-at-period-end",
														  psprintf(INT64_FORMAT, rp_id)),
							  &resp);
	}
	else
		sent = sp_stripe_send("DELETE", path, NULL, settings.secret_key, NULL, &resp);
	if (!sent)
	{
		SpHttpResponse now;

		/*
		 * Refused: canceled already, from the dashboard or by this very
		 * request whose answer was lost (its retry finds nothing to delete)?
		 * Then that is what the database learns, as its webhook would say.
		 */
		if (resp.status < 400 || resp.status >= 500 ||
			!sp_stripe_send("GET", path, NULL, settings.secret_key, NULL, &now) ||
			!sp_subscription_is_canceled(&now))
			sp_stripe_raise_error(at_period_end ? "POST" : "DELETE", path, &resp);
		ereport(NOTICE,
				(errmsg("subscription " INT64_FORMAT " was already canceled at Stripe", rp_id)));
		resp = now;
	}
	sp_record_subscription(rp_id, &resp, "stripe_cancel_subscription");
	PG_RETURN_DATUM(sp_return_recurring_payment(rp_id));
}

/*
 * stripe_resume_subscription(recurring_payment_id bigint)
 *
 * Undoes a pending cancel at the period's end.
 */
Datum
stripepay_stripe_resume_subscription(PG_FUNCTION_ARGS)
{
	int64		rp_id;
	SpSettings	settings;
	char	   *subscription_id;
	char	   *status;
	char	   *session_id;
	SpHttpResponse resp;
	SpForm	   *form;

	sp_require_arg(fcinfo, 0, "recurring_payment_id");
	rp_id = PG_GETARG_INT64(0);
	sp_require_read_committed("stripe_resume_subscription");

	SPI_connect();
	sp_settings_load(&settings);
	sp_lock_own_subscription(rp_id, &subscription_id, &status, &session_id);
	if (subscription_id == NULL || strcmp(status, "CANCELED") == 0 ||
		strcmp(status, "INCOMPLETE_EXPIRED") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_RESUMABLE),
				 errmsg("subscription " INT64_FORMAT " cannot be resumed", rp_id),
				 errdetail("Its status is %s; only a subscription set to cancel at the period's end can be.",
						   status)));

	form = sp_form_create();
	sp_form_add(form, "cancel_at_period_end", "false");
	sp_stripe_call("POST", psprintf("/v1/subscriptions/%s", subscription_id), form,
				   settings.secret_key,
				   sp_idempotency_key_for_call("resume", psprintf(INT64_FORMAT, rp_id)),
				   &resp);
	sp_record_subscription(rp_id, &resp, "stripe_resume_subscription");
	PG_RETURN_DATUM(sp_return_recurring_payment(rp_id));
}
