/*-------------------------------------------------------------------------
 *
 * sp_pay.c
 *		stripe_pay(): a payment for an order, through Stripe Checkout or a
 *		PaymentIntent.
 *
 * An order has one open way to pay at a time.  Calls for one order take
 * turns (a lock no SQL can take), so that the checks hold: an order already
 * paid is refused, the open payment of a double click is returned, and the
 * order's other open ways to pay are closed before a new one is opened.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "sp_api.h"
#include "sp_call.h"
#include "sp_lock.h"
#include "sp_stmt.h"
#include "sp_stripe.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_stripe_pay);

static SpStmt paid_stmt = {
	.sql = "SELECT id FROM stripepay.payment_record"
	" WHERE order_id = $1 AND kind = 'ONE_TIME' AND status = 'SUCCESSFUL' LIMIT 1",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt open_stmt = {
	.sql = "SELECT * FROM stripepay.payment_record"
	" WHERE order_id = $1 AND currency = $2 AND amount = $3 AND flow = $4"
	"   AND kind = 'ONE_TIME' AND status = 'PENDING'"
	"   AND (expires_at IS NULL OR expires_at > pg_catalog.now() + interval '10 minutes')"
	" ORDER BY id DESC LIMIT 1",
	.nargs = 4, .argtypes = {INT8OID, TEXTOID, INT8OID, TEXTOID}
};
static SpStmt open_ways_stmt = {
	.sql = "SELECT id, coalesce(checkout_session_id, payment_intent_id),"
	"       checkout_session_id IS NOT NULL, status"
	"  FROM stripepay.payment_record"
	" WHERE order_id = $1 AND kind = 'ONE_TIME' AND status IN ('PENDING', 'FAILED')"
	"   AND (checkout_session_id IS NOT NULL"
	"        OR (flow = 'payment_intent' AND payment_intent_id IS NOT NULL))"
	"   AND (expires_at IS NULL OR expires_at > pg_catalog.now())"
	" ORDER BY id",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt close_stmt = {
	.sql = "UPDATE stripepay.payment_record SET status = 'CANCELED', updated_at = pg_catalog.now()"
	" WHERE id = $1 AND status IN ('PENDING', 'FAILED')",
	.nargs = 1, .argtypes = {INT8OID}
};
/*
 * The payment is written once, with what Stripe answered: its id, taken
 * first, names it in the request's metadata and Idempotency-Key.  No
 * webhook can name it before this transaction commits, since the buyer
 * needs the URL or client secret the call returns.
 */
static SpStmt record_stmt = {
	.sql = "INSERT INTO stripepay.payment_record (id, order_id, currency, amount, flow, created_by,"
	"       checkout_session_id, checkout_url, payment_intent_id, expires_at, livemode, client_secret)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, pg_catalog.to_timestamp($10::pg_catalog.float8),"
	"         $11::pg_catalog.bool, $12)"
	" RETURNING *",
	.nargs = 12, .argtypes = {INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, NAMEOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
};

static SpForm *
checkout_form(const SpSettings *settings, int64 order_id, int64 payment_id,
			  const SpCurrency *currency, int64 amount)
{
	SpForm	   *form = sp_form_create();
	char		name[64];

	sp_form_add(form, "mode", "payment");
	sp_form_add(form, "line_items[0][price_data][currency]", currency->code);
	sp_form_add_int(form, "line_items[0][price_data][unit_amount]", amount);
	if (settings->brand_name)
		sp_form_add(form, "line_items[0][price_data][product_data][name]", settings->brand_name);
	else
	{
		snprintf(name, sizeof(name), "Order " INT64_FORMAT, order_id);
		sp_form_add(form, "line_items[0][price_data][product_data][name]", name);
	}
	if (settings->brand_slogan)
		sp_form_add(form, "line_items[0][price_data][product_data][description]", settings->brand_slogan);
	if (settings->brand_logo)
		sp_form_add(form, "line_items[0][price_data][product_data][images][0]", settings->brand_logo);
	sp_form_add_int(form, "line_items[0][quantity]", 1);
	sp_form_add(form, "success_url", settings->success_url);
	if (settings->cancel_url)
		sp_form_add(form, "cancel_url", settings->cancel_url);
	sp_form_add_int(form, "client_reference_id", order_id);
	sp_form_add_ids(form, "metadata", order_id, "stripepay_payment_id", payment_id);
	sp_form_add_ids(form, "payment_intent_data[metadata]", order_id, "stripepay_payment_id", payment_id);
	return form;
}

static SpForm *
payment_intent_form(const SpSettings *settings, int64 order_id, int64 payment_id,
					const SpCurrency *currency, int64 amount)
{
	SpForm	   *form = sp_form_create();

	sp_form_add_int(form, "amount", amount);
	sp_form_add(form, "currency", currency->code);
	sp_form_add(form, "automatic_payment_methods[enabled]", "true");
	if (settings->brand_name)
		sp_form_add(form, "description", settings->brand_name);
	sp_form_add_ids(form, "metadata", order_id, "stripepay_payment_id", payment_id);
	return form;
}

static void
payment_completed(int64 order_id, int64 payment_id, const char *stripe_id, bool is_session)
{
	ereport(ERROR,
			(errcode(ERRCODE_SP_ALREADY_PAID),
			 errmsg("order " INT64_FORMAT " is being paid", order_id),
			 errdetail("The buyer completed %s %s of payment " INT64_FORMAT "; its outcome comes by webhook.",
					   is_session ? "Checkout Session" : "PaymentIntent", stripe_id, payment_id),
			 errhint("Wait for the payment's webhook, or read it now with stripepay.refresh_payment().")));
}

static void
refuse_if_paid(int64 order_id)
{
	Datum		value = Int64GetDatum(order_id);
	SpRows		rows;

	sp_stmt_run(&paid_stmt, &value, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows > 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_ALREADY_PAID),
				 errmsg("order " INT64_FORMAT " is already paid", order_id),
				 errdetail("Payment " INT64_FORMAT " of this order succeeded.",
						   sp_rows_int64(&rows, 0, 1, NULL)),
				 errhint("Refund it with stripepay.stripe_refund() before charging again.")));
}

/* The payment a double click opened, still open for a while: reused. */
static bool
find_open_payment(int64 order_id, const SpCurrency *currency, int64 amount,
				  const char *payment_flow, SpRows *rows)
{
	Datum		values[4];

	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(currency->code);
	values[2] = Int64GetDatum(amount);
	values[3] = CStringGetTextDatum(payment_flow);
	sp_stmt_run(&open_stmt, values, NULL, SP_AS_OWNER, 1, rows);
	return rows->nrows > 0;
}

/*
 * Creates the Checkout Session or PaymentIntent of a new payment, and
 * records the PENDING payment with its ids.
 */
static void
open_at_stripe(const SpCall *call, bool checkout, int64 order_id, const SpCurrency *currency,
			   int64 amount, SpRows *rows)
{
	static const char *const paths[] = {
		"id", "url", "payment_intent", "expires_at", "livemode", "client_secret"
	};
	const char *f[lengthof(paths)];
	const char *what = checkout ? "Checkout Session" : "PaymentIntent";
	int64		payment_id = sp_next_id("payment_record_id_seq");
	SpForm	   *form;
	SpHttpResponse resp;
	Datum		values[12];
	bool		nulls[12];

	form = checkout
		? checkout_form(&call->settings, order_id, payment_id, currency, amount)
		: payment_intent_form(&call->settings, order_id, payment_id, currency, amount);
	sp_stripe_call("POST", checkout ? "/v1/checkout/sessions" : "/v1/payment_intents",
				   form, call->settings.secret_key,
				   sp_idempotency_key("pay", psprintf(INT64_FORMAT, payment_id)), &resp);
	sp_stripe_fields(resp.body, resp.body_len, what, paths, lengthof(paths), f);
	if (f[0] == NULL || (checkout && f[1] == NULL) || (!checkout && f[5] == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The %s has no %s.", what,
						   f[0] == NULL ? "id" : checkout ? "url" : "client_secret"),
				 errcontext("Stripe request POST, Request-Id %s", resp.request_id)));

	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(payment_id);
	values[1] = Int64GetDatum(order_id);
	values[2] = CStringGetTextDatum(currency->code);
	values[3] = Int64GetDatum(amount);
	values[4] = CStringGetTextDatum(call->settings.payment_flow);
	values[5] = sp_call_caller_name(call);
	values[6] = sp_text_or_null(checkout ? f[0] : NULL, &nulls[6]);
	values[7] = sp_text_or_null(checkout ? f[1] : NULL, &nulls[7]);
	values[8] = sp_text_or_null(checkout ? f[2] : f[0], &nulls[8]);
	values[9] = sp_text_or_null(checkout ? f[3] : NULL, &nulls[9]);
	values[10] = sp_text_or_null(f[4], &nulls[10]);
	values[11] = sp_text_or_null(checkout ? NULL : f[5], &nulls[11]);
	sp_stmt_run(&record_stmt, values, nulls, call->run_as, 1, rows);
}

/*
 * stripe_pay(order_id bigint, currency text, amount numeric)
 *
 * Creates a Checkout Session (or PaymentIntent) for the order and records
 * it as a PENDING payment, returning the payment_record row; or returns the
 * order's open payment for the same amount.
 */
Datum
stripepay_stripe_pay(PG_FUNCTION_ARGS)
{
	SpCall		call;
	int64		order_id;
	const SpCurrency *currency;
	int64		amount;
	bool		checkout;
	SpRows		rows;

	sp_require_arg(fcinfo, 0, "order_id");
	sp_require_arg(fcinfo, 1, "currency");
	sp_require_arg(fcinfo, 2, "amount");
	order_id = PG_GETARG_INT64(0);
	currency = sp_check_currency(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	amount = sp_check_amount(currency, PG_GETARG_NUMERIC(2), true);
	sp_require_read_committed("stripe_pay");

	sp_call_begin(&call, fcinfo);
	sp_settings_require_key(&call.settings);
	checkout = strcmp(call.settings.payment_flow, "checkout") == 0;
	if (checkout)
		sp_settings_require_success_url(&call.settings);

	/* concurrent calls for one order take turns, so the checks below hold */
	sp_lock_int(SP_LOCK_PAY, order_id);
	refuse_if_paid(order_id);
	if (!find_open_payment(order_id, currency, amount, call.settings.payment_flow, &rows))
	{
		sp_close_open_ways_to_pay(call.settings.secret_key, order_id, &open_ways_stmt, &close_stmt,
								  call.run_as, payment_completed);
		open_at_stripe(&call, checkout, order_id, currency, amount, &rows);
	}
	sp_call_end(&call);
	return sp_rows_composite(&rows, 0, fcinfo);
}
