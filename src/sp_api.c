/*-------------------------------------------------------------------------
 *
 * sp_api.c
 *		SQL-callable entry points: argument checks, then the work is handed
 *		to the store and the Stripe client.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "sp_api.h"
#include "sp_form.h"
#include "sp_money.h"
#include "sp_store.h"
#include "sp_stripe.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_configure);
PG_FUNCTION_INFO_V1(stripepay_stripe_pay);
PG_FUNCTION_INFO_V1(stripepay_stripe_refund);

#define SP_MAX_URL_LEN 2048

/*
 * A form whose malloc'd buffer is freed with the current memory context, so
 * an ERROR between building and sending it leaks nothing.
 */
typedef struct SpOwnedForm
{
	SpForm		form;
	MemoryContextCallback cb;
} SpOwnedForm;

static void
sp_owned_form_release(void *arg)
{
	sp_form_free(&((SpOwnedForm *) arg)->form);
}

SpForm *
sp_form_create(void)
{
	SpOwnedForm *owned = palloc0(sizeof(SpOwnedForm));

	sp_form_init(&owned->form);
	owned->cb.func = sp_owned_form_release;
	owned->cb.arg = owned;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &owned->cb);
	return &owned->form;
}

void
sp_require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

void
sp_require_read_committed(const char *function)
{
	/*
	 * The functions that call Stripe check, under a lock, what other
	 * sessions committed (an open session, a paid order, what was refunded)
	 * before they act.  Under REPEATABLE READ or SERIALIZABLE those checks
	 * read the transaction's first snapshot and miss it.
	 */
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("%s must run at isolation level READ COMMITTED", function),
				 errdetail("At a higher level its checks read a snapshot that misses what other sessions "
						   "committed since, so money could move twice."),
				 errhint("Call it in a READ COMMITTED transaction (the default).")));
}

SpCloseResult
sp_close_way_to_pay(const char *api_key, const char *id, bool is_session)
{
	static const char *const paths[] = {"status", "payment_status"};
	const char *what = is_session ? "Checkout Session" : "PaymentIntent";
	const char *base = is_session ? "/v1/checkout/sessions" : "/v1/payment_intents";
	char	   *path = psprintf("%s/%s/%s", base, id, is_session ? "expire" : "cancel");
	SpHttpResponse resp;
	SpHttpResponse state;
	const char *f[2];

	/*
	 * Closing is idempotent in itself, and the answer to an earlier
	 * attempt (a stored 500) must not stand for this one: each call has a
	 * key of its own, shared only by its retries.
	 */
	if (sp_stripe_send("POST", path, NULL, api_key,
					   sp_idempotency_key_for_call(is_session ? "expire" : "cancel", id),
					   &resp))
		return SP_CLOSE_CLOSED;
	if (resp.status < 400 || resp.status >= 500)
		sp_stripe_raise_error("POST", path, &resp);

	/* refused: closed already, or completed by the buyer meanwhile */
	sp_stripe_call("GET", psprintf("%s/%s", base, id), NULL, api_key, NULL, &state);
	sp_stripe_fields(state.body, state.body_len, what, paths, 2, f);
	if (f[0] != NULL && strcmp(f[0], is_session ? "expired" : "canceled") == 0)
		return SP_CLOSE_CLOSED;
	if (f[0] != NULL && is_session && strcmp(f[0], "complete") == 0)
		return f[1] != NULL && strcmp(f[1], "unpaid") == 0 ? SP_CLOSE_COMPLETE_UNPAID : SP_CLOSE_PAID;
	if (f[0] != NULL && !is_session &&
		(strcmp(f[0], "succeeded") == 0 || strcmp(f[0], "processing") == 0 ||
		 strcmp(f[0], "requires_capture") == 0))
		return SP_CLOSE_PAID;
	sp_stripe_raise_error("POST", path, &resp);
	return SP_CLOSE_PAID;		/* not reached */
}

void
sp_check_owner(const char *created_by, const char *did, const char *action, int64 id)
{
	Oid			caller = GetOuterUserId();
	Oid			admin = get_role_oid("stripepay_admin", true);

	if (!superuser_arg(caller) &&
		!(OidIsValid(admin) && has_privs_of_role(caller, admin)) &&
		strcmp(created_by, GetUserNameFromId(caller, false)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s " INT64_FORMAT, action, id),
				 errdetail("Only the role that %s (%s) or a member of stripepay_admin may.",
						   did, created_by)));
}

/* ----------------------------------------------------------------
 * configure
 * ----------------------------------------------------------------
 */

static bool
sp_all_alnum(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

/* "sk_test_", "rk_live_" ...: returns the length of the prefix, or 0. */
static size_t
sp_key_prefix(const char *key, const char *const *kinds)
{
	for (; *kinds; kinds++)
	{
		const char *modes[] = {"test_", "live_"};
		size_t		klen = strlen(*kinds);
		int			i;

		if (strncmp(key, *kinds, klen) != 0)
			continue;
		for (i = 0; i < 2; i++)
			if (strncmp(key + klen, modes[i], 5) == 0)
				return klen + 5;
	}
	return 0;
}

const char *
sp_key_mode(const char *key)
{
	return strstr(key, "_live_") != NULL ? "live" : "test";
}

/*
 * Every error below hides the statement from the server log
 * (errhidestmt): the statement text holds the key being set.
 */
static void
sp_check_secret_key(const char *key)
{
	static const char *const kinds[] = {"sk_", "rk_", NULL};
	size_t		prefix = sp_key_prefix(key, kinds);

	if (prefix > 0 && strlen(key) - prefix >= 8 && sp_all_alnum(key + prefix))
		return;

	if (strncmp(key, "pk_", 3) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Stripe secret key"),
				 errdetail("This is a publishable key (pk_...); pass it as publishable_key."),
				 errhidestmt(true)));
	if (strncmp(key, "whsec_", 6) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Stripe secret key"),
				 errdetail("This is a webhook signing secret (whsec_...), not an API key."),
				 errhidestmt(true)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid Stripe secret key"),
			 errdetail("A secret key starts with sk_test_, sk_live_, rk_test_ or rk_live_, followed by letters and digits."),
			 errhidestmt(true)));
}

static void
sp_check_publishable_key(const char *key)
{
	static const char *const kinds[] = {"pk_", NULL};
	size_t		prefix = sp_key_prefix(key, kinds);

	if (prefix > 0 && strlen(key) - prefix >= 8 && sp_all_alnum(key + prefix))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid Stripe publishable key"),
			 errdetail("A publishable key starts with pk_test_ or pk_live_, followed by letters and digits."),
			 errhidestmt(true)));
}

void
sp_check_url(const char *name, const char *url)
{
	size_t		len = strlen(url);
	const char *host;

	if (strncmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		host = url + 7;
	else
		host = NULL;

	if (host == NULL || *host == '\0' || *host == '/' || len > SP_MAX_URL_LEN ||
		strpbrk(url, " \t\r\n\"<>\\^`|") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s", name),
				 errdetail("It must be an absolute http:// or https:// URL of at most %d characters, without spaces.",
						   SP_MAX_URL_LEN),
				 errhidestmt(true)));
}

static void
sp_check_text(const char *name, const char *value, size_t maxlen)
{
	if (strlen(value) > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long", name),
				 errdetail("It may have at most %zu bytes.", maxlen),
				 errhidestmt(true)));
}

/*
 * configure(secret_key, publishable_key, brand_name, brand_logo,
 *			 brand_slogan, success_url, cancel_url, payment_flow)
 *
 * Every argument is optional: NULL leaves the setting as it is, '' clears
 * it.  Returns the masked settings.
 */
static Datum
sp_configure(FunctionCallInfo fcinfo)
{
	static const char *const columns[] = {
		"secret_key", "publishable_key", "brand_name", "brand_logo",
		"brand_slogan", "success_url", "cancel_url", "payment_flow"
	};
	const int	ncols = lengthof(columns);
	char	   *val[8];
	Oid			argtypes[16];
	Datum		values[16];
	char		nulls[17];
	StringInfoData sql;
	Datum		result;
	int			i;

	for (i = 0; i < ncols; i++)
		val[i] = PG_ARGISNULL(i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(i));
	/* payment_flow cannot be empty: '' means back to the default */
	if (val[7] && val[7][0] == '\0')
		val[7] = "checkout";

	/* validate everything before changing anything */
	if (val[0] && val[0][0])
		sp_check_secret_key(val[0]);
	if (val[1] && val[1][0])
		sp_check_publishable_key(val[1]);
	if (val[2])
		sp_check_text("brand_name", val[2], 250);
	if (val[3] && val[3][0])
		sp_check_url("brand_logo", val[3]);
	if (val[4])
		sp_check_text("brand_slogan", val[4], 500);
	if (val[5] && val[5][0])
		sp_check_url("success_url", val[5]);
	if (val[6] && val[6][0])
		sp_check_url("cancel_url", val[6]);
	if (val[7] && strcmp(val[7], "checkout") != 0 && strcmp(val[7], "payment_intent") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid payment_flow \"%s\"", val[7]),
				 errdetail("It must be 'checkout' (Stripe Checkout pages) or 'payment_intent' (a client_secret for Stripe Elements)."),
				 errhidestmt(true)));

	SPI_connect();

	/*
	 * One UPDATE with a (passed?, value) pair per column, so only what was
	 * passed changes.
	 */
	sp_exec("INSERT INTO stripepay.settings (singleton) VALUES (true) ON CONFLICT DO NOTHING",
			0, NULL, NULL, NULL, SPI_OK_INSERT);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "UPDATE stripepay.settings SET updated_at = pg_catalog.now()");
	for (i = 0; i < ncols; i++)
	{
		bool		passed = (val[i] != NULL);
		bool		clear = passed && val[i][0] == '\0';

		argtypes[2 * i] = BOOLOID;
		values[2 * i] = BoolGetDatum(passed);
		nulls[2 * i] = ' ';
		argtypes[2 * i + 1] = TEXTOID;
		values[2 * i + 1] = clear || !passed ? (Datum) 0 : CStringGetTextDatum(val[i]);
		nulls[2 * i + 1] = clear || !passed ? 'n' : ' ';
		appendStringInfo(&sql, ", %s = CASE WHEN $%d THEN $%d ELSE %s END",
						 columns[i], 2 * i + 1, 2 * i + 2, columns[i]);
	}
	nulls[2 * ncols] = '\0';
	appendStringInfoString(&sql, " RETURNING secret_key, publishable_key");
	sp_exec(sql.data, 2 * ncols, argtypes, values, nulls, SPI_OK_UPDATE_RETURNING);

	/* a test key beside a live publishable key means a misconfigured shop */
	{
		char	   *sk = sp_result_text(0, 1);
		char	   *pk = sp_result_text(0, 2);

		if (sk && pk && strcmp(sp_key_mode(sk), sp_key_mode(pk)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("secret key and publishable key belong to different modes"),
					 errdetail("The secret key is a %s-mode key, the publishable key a %s-mode key.",
							   sp_key_mode(sk), sp_key_mode(pk)),
					 errhidestmt(true)));
	}

	sp_exec("SELECT * FROM stripepay.config", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	PG_RETURN_DATUM(result);
}

Datum
stripepay_configure(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	/*
	 * The statement holds the key being set: whatever fails inside (a lock
	 * timeout, a cancel, a constraint), the server log must not show it.
	 */
	PG_TRY();
	{
		result = sp_configure(fcinfo);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		edata->hide_stmt = true;
		ReThrowError(edata);
	}
	PG_END_TRY();
	return result;
}

/* ----------------------------------------------------------------
 * stripe_pay
 * ----------------------------------------------------------------
 */

static const SpCurrency *
sp_check_currency(const char *code)
{
	const SpCurrency *currency = sp_currency_find(code);

	if (currency == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unsupported currency \"%.16s\"", code),
				 errdetail("Stripe charges in three-letter ISO 4217 currencies such as usd, eur or jpy.")));
	return currency;
}

/*
 * An amount in the smallest unit, checked against Stripe's rules; Stripe's
 * minimum applies to charges, not to refunds.
 */
static int64
sp_check_amount(const SpCurrency *currency, Numeric amount, bool is_charge)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(amount)));
	long long	units = 0;
	char		shown[64];
	char		limit[64];

	switch (sp_amount_parse(text, &units))
	{
		case SP_AMOUNT_OK:
			break;
		case SP_AMOUNT_NOT_INTEGRAL:
			sp_money_format(currency, 1050, shown, sizeof(shown));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("amount must be a whole number of the currency's smallest unit"),
					 errdetail("%.40s was given.", text),
					 errhint("Amounts count the smallest unit: for %s, 1050 means %s.",
							 currency->code, shown)));
			break;
		case SP_AMOUNT_NOT_POSITIVE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("amount must be greater than zero"),
					 errdetail("%.40s was given.", text)));
			break;
		case SP_AMOUNT_TOO_LARGE:
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("amount exceeds Stripe's maximum for %s", currency->code),
					 errdetail("%.40s was given; the maximum is %lld.", text, currency->maximum)));
			break;
		case SP_AMOUNT_SYNTAX:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("amount must be a finite number"),
					 errdetail("%.40s was given.", text)));
			break;
	}

	sp_money_format(currency, units, shown, sizeof(shown));
	switch (sp_money_check(currency, units))
	{
		case SP_MONEY_OK:
			break;
		case SP_MONEY_BELOW_MINIMUM:
			if (!is_charge && units > 0)
				break;
			sp_money_format(currency, currency->minimum, limit, sizeof(limit));
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("amount is below Stripe's minimum charge for %s", currency->code),
					 errdetail("%lld is %s; the minimum is %s (%lld).",
							   units, shown, limit, currency->minimum),
					 currency->exponent == 0 ?
					 errhint("%s is a zero-decimal currency: amounts are whole units.", currency->code) : 0));
			break;
		case SP_MONEY_ABOVE_MAXIMUM:
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("amount exceeds Stripe's maximum for %s", currency->code),
					 errdetail("%lld was given; the maximum is %lld.", units, currency->maximum)));
			break;
		case SP_MONEY_NOT_MULTIPLE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("amount %lld is not a valid %s amount", units, currency->code),
					 errdetail("Stripe takes %s amounts only in multiples of %lld in the smallest unit.",
							   currency->code, currency->multiple_of)));
			break;
	}
	return (int64) units;
}

/*
 * The ids that tie a Stripe object back to our rows, under prefix:
 * "metadata[order_id]" and "metadata[<id_key>]".
 */
void
sp_form_add_ids(SpForm *form, const char *prefix, int64 order_id, const char *id_key, int64 id)
{
	char		key[128];

	snprintf(key, sizeof(key), "%s[order_id]", prefix);
	sp_form_add_int(form, key, order_id);
	snprintf(key, sizeof(key), "%s[%s]", prefix, id_key);
	sp_form_add_int(form, key, id);
}

static SpForm *
sp_checkout_form(const SpSettings *settings, int64 order_id, int64 payment_id,
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
sp_payment_intent_form(const SpSettings *settings, int64 order_id, int64 payment_id,
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

void
sp_close_open_ways_to_pay(const char *api_key, int64 order_id, const char *select_open,
						  const char *mark_closed, SpCompletedReport completed)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	uint64		n;
	uint64		i;
	int64	   *ids;
	char	  **stripe_ids;
	bool	   *sessions;
	bool	   *failed;

	values[0] = Int64GetDatum(order_id);
	n = sp_exec(select_open, 1, argtypes, values, NULL, SPI_OK_SELECT);
	/* the SPI result is gone after the next statement: keep what it said */
	ids = palloc(sizeof(int64) * (n + 1));
	stripe_ids = palloc(sizeof(char *) * (n + 1));
	sessions = palloc(sizeof(bool) * (n + 1));
	failed = palloc(sizeof(bool) * (n + 1));
	for (i = 0; i < n; i++)
	{
		ids[i] = pg_strtoint64(sp_result_text(i, 1));
		stripe_ids[i] = sp_result_text(i, 2);
		sessions[i] = strcmp(sp_result_text(i, 3), "t") == 0;
		failed[i] = strcmp(sp_result_text(i, 4), "FAILED") == 0;
	}
	for (i = 0; i < n; i++)
	{
		SpCloseResult closed = sp_close_way_to_pay(api_key, stripe_ids[i], sessions[i]);

		if (closed == SP_CLOSE_COMPLETE_UNPAID && failed[i])
			continue;			/* its async payment failed: it is over */
		if (closed != SP_CLOSE_CLOSED)
			completed(order_id, ids[i], stripe_ids[i], sessions[i]);
		values[0] = Int64GetDatum(ids[i]);
		sp_exec(mark_closed, 1, argtypes, values, NULL, SPI_OK_UPDATE);
	}
}

static void
sp_payment_completed(int64 order_id, int64 payment_id, const char *stripe_id, bool is_session)
{
	ereport(ERROR,
			(errcode(ERRCODE_SP_ALREADY_PAID),
			 errmsg("order " INT64_FORMAT " is being paid", order_id),
			 errdetail("The buyer completed %s %s of payment " INT64_FORMAT "; its outcome comes by webhook.",
					   is_session ? "Checkout Session" : "PaymentIntent", stripe_id, payment_id),
			 errhint("Wait for the payment's webhook, or read it now with stripepay.refresh_payment().")));
}

/*
 * Before an order gets a new way to pay, its earlier ones that a buyer
 * could still pay are closed: a Checkout Session stays open after a
 * declined card, and one near its expiry, or for another amount, is not
 * reused.
 */
static void
sp_close_open_payments(const SpSettings *settings, int64 order_id)
{
	sp_close_open_ways_to_pay(settings->secret_key, order_id,
							  "SELECT id, coalesce(checkout_session_id, payment_intent_id),"
							  "       checkout_session_id IS NOT NULL, status"
							  "  FROM stripepay.payment_record"
							  " WHERE order_id = $1 AND kind = 'ONE_TIME' AND status IN ('PENDING', 'FAILED')"
							  "   AND (checkout_session_id IS NOT NULL"
							  "        OR (flow = 'payment_intent' AND payment_intent_id IS NOT NULL))"
							  "   AND (expires_at IS NULL OR expires_at > pg_catalog.now())"
							  " ORDER BY id",
							  "UPDATE stripepay.payment_record SET status = 'CANCELED', updated_at = pg_catalog.now()"
							  " WHERE id = $1 AND status IN ('PENDING', 'FAILED')",
							  sp_payment_completed);
}

/*
 * stripe_pay(order_id bigint, currency text, amount numeric)
 *
 * Records a PENDING payment and creates its Checkout Session (or
 * PaymentIntent), returning the payment_record row.  A second call for the
 * same order, currency and amount while the first is still open returns the
 * first: a double click must not open two ways to pay.
 */
Datum
stripepay_stripe_pay(PG_FUNCTION_ARGS)
{
	int64		order_id;
	char	   *currency_code;
	const SpCurrency *currency;
	int64		amount;
	SpSettings	settings;
	bool		checkout;
	int64		payment_id;
	SpForm	   *form;
	SpHttpResponse resp;
	char	   *key;
	Oid			argtypes[8];
	Datum		values[8];
	char		nulls[9];
	Datum		result;

	sp_require_arg(fcinfo, 0, "order_id");
	sp_require_arg(fcinfo, 1, "currency");
	sp_require_arg(fcinfo, 2, "amount");
	order_id = PG_GETARG_INT64(0);
	currency_code = text_to_cstring(PG_GETARG_TEXT_PP(1));
	currency = sp_check_currency(currency_code);
	amount = sp_check_amount(currency, PG_GETARG_NUMERIC(2), true);
	sp_require_read_committed("stripe_pay");

	SPI_connect();
	sp_settings_load(&settings);
	checkout = strcmp(settings.payment_flow, "checkout") == 0;
	if (checkout)
		sp_settings_require_success_url(&settings);

	argtypes[0] = INT8OID;
	values[0] = Int64GetDatum(order_id);
	argtypes[1] = TEXTOID;
	values[1] = CStringGetTextDatum(currency->code);
	argtypes[2] = INT8OID;
	values[2] = Int64GetDatum(amount);
	argtypes[3] = TEXTOID;
	values[3] = CStringGetTextDatum(settings.payment_flow);
	argtypes[4] = NAMEOID;
	values[4] = sp_caller_name();

	/* concurrent calls for one order take turns, so the checks below hold */
	sp_exec("SELECT pg_catalog.pg_advisory_xact_lock("
			"pg_catalog.hashtextextended('stripepay.pay:' || $1::text, 0))",
			1, argtypes, values, NULL, SPI_OK_SELECT);

	if (sp_exec("SELECT id FROM stripepay.payment_record"
				" WHERE order_id = $1 AND kind = 'ONE_TIME'"
				"   AND status = 'SUCCESSFUL' LIMIT 1",
				1, argtypes, values, NULL, SPI_OK_SELECT) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_ALREADY_PAID),
				 errmsg("order " INT64_FORMAT " is already paid", order_id),
				 errdetail("Payment %s of this order succeeded.", sp_result_text(0, 1)),
				 errhint("Refund it with stripepay.stripe_refund() before charging again.")));

	if (sp_exec("SELECT * FROM stripepay.payment_record"
				" WHERE order_id = $1 AND currency = $2"
				"   AND amount = $3 AND flow = $4"
				"   AND kind = 'ONE_TIME' AND status = 'PENDING'"
				"   AND (expires_at IS NULL OR expires_at >"
				"        pg_catalog.now() + interval '10 minutes')"
				" ORDER BY id DESC LIMIT 1",
				4, argtypes, values, NULL, SPI_OK_SELECT) > 0)
	{
		result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
		SPI_finish();
		PG_RETURN_DATUM(result);
	}

	sp_close_open_payments(&settings, order_id);

	sp_exec("INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, created_by)"
			" VALUES ($1, $2, $3, $4, $5) RETURNING id",
			5, argtypes, values, NULL, SPI_OK_INSERT_RETURNING);
	payment_id = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(sp_result_text(0, 1))));

	form = checkout
		? sp_checkout_form(&settings, order_id, payment_id, currency, amount)
		: sp_payment_intent_form(&settings, order_id, payment_id, currency, amount);
	key = sp_idempotency_key("pay", psprintf(INT64_FORMAT, payment_id));
	sp_stripe_call("POST", checkout ? "/v1/checkout/sessions" : "/v1/payment_intents",
				   form, settings.secret_key, key, &resp);

	{
		static const char *const paths[] = {
			"id", "url", "payment_intent", "expires_at", "livemode", "client_secret"
		};
		const char *f[lengthof(paths)];

		sp_stripe_fields(resp.body, resp.body_len,
						 checkout ? "Checkout Session" : "PaymentIntent",
						 paths, lengthof(paths), f);
		if (f[0] == NULL || (checkout && f[1] == NULL) || (!checkout && f[5] == NULL))
			ereport(ERROR,
					(errcode(ERRCODE_SP_API_ERROR),
					 errmsg("unexpected response from Stripe"),
					 errdetail("The %s has no %s.", checkout ? "Checkout Session" : "PaymentIntent",
							   f[0] == NULL ? "id" : checkout ? "url" : "client_secret"),
					 errcontext("Stripe request POST, Request-Id %s", resp.request_id)));

		argtypes[0] = INT8OID;
		values[0] = Int64GetDatum(payment_id);
		for (int i = 0; i < 6; i++)
		{
			argtypes[i + 1] = TEXTOID;
			values[i + 1] = f[i] ? CStringGetTextDatum(f[i]) : (Datum) 0;
			nulls[i + 1] = f[i] ? ' ' : 'n';
		}
		nulls[0] = ' ';
		nulls[7] = '\0';
	}

	if (checkout)
		sp_exec("UPDATE stripepay.payment_record SET checkout_session_id = $2, checkout_url = $3,"
				"       payment_intent_id = $4,"
				"       expires_at = pg_catalog.to_timestamp($5::double precision),"
				"       livemode = $6::boolean, updated_at = pg_catalog.now()"
				" WHERE id = $1 RETURNING *",
				6, argtypes, values, nulls, SPI_OK_UPDATE_RETURNING);
	else
		sp_exec("UPDATE stripepay.payment_record SET payment_intent_id = $2,"
				"       livemode = $6::boolean, client_secret = $7, updated_at = pg_catalog.now()"
				" WHERE id = $1 RETURNING *",
				7, argtypes, values, nulls, SPI_OK_UPDATE_RETURNING);

	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* ----------------------------------------------------------------
 * stripe_refund
 * ----------------------------------------------------------------
 */

/*
 * When a refund's transaction rolled back after Stripe made the refund, a
 * retry sends the same Idempotency-Key with another refund id in the
 * metadata, and Stripe refuses it.  The refund is then found among the
 * payment's refunds by the key we put in its metadata.
 */
static bool
sp_find_refund_by_key(const char *api_key, const char *payment_intent, const char *key,
					  const char **refund_id)
{
	SpForm	   *query = sp_form_create();
	SpStripePage *page = palloc(sizeof(SpStripePage));
	int			i;

	sp_form_add(query, "payment_intent", payment_intent);
	sp_form_add_int(query, "limit", SP_STRIPE_PAGE_MAX);
	sp_stripe_list("/v1/refunds", query, api_key, "refund list", page);
	for (i = 0; i < page->nitems; i++)
	{
		static const char *const paths[] = {"metadata.stripepay_refund_key"};
		const char *v[1];

		sp_stripe_fields(page->items[i].json, page->items[i].json_len, "refund", paths, 1, v);
		if (v[0] != NULL && strcmp(v[0], key) == 0)
		{
			*refund_id = pstrdup(page->items[i].id);
			return true;
		}
	}
	return false;
}

/*
 * stripe_refund(payment_id bigint, refund_amount numeric)
 *
 * Refunds a SUCCESSFUL payment in whole or in part, never beyond what is
 * left: the check and the insert happen under the payment's row lock.  The
 * Idempotency-Key names the payment, what was refunded before and the
 * amount, so a retry after a rollback cannot refund twice.  The refund row
 * stays PENDING until Stripe's webhook confirms it.
 */
Datum
stripepay_stripe_refund(PG_FUNCTION_ARGS)
{
	int64		payment_id;
	SpSettings	settings;
	const SpCurrency *currency;
	int64		amount;
	int64		paid;
	int64		counted;
	int64		unclaimed;
	int64		order_id;
	char	   *payment_intent;
	char	   *charge;
	char	   *key;
	char	   *key_body;
	SpForm	   *form;
	SpHttpResponse resp;
	const char *stripe_refund_id = NULL;
	int64		refund_id;
	Oid			argtypes[5];
	Datum		values[5];
	char		shown[64];
	char		left[64];
	Datum		result;

	sp_require_arg(fcinfo, 0, "payment_id");
	sp_require_arg(fcinfo, 1, "refund_amount");
	payment_id = PG_GETARG_INT64(0);
	sp_require_read_committed("stripe_refund");

	SPI_connect();
	sp_settings_load(&settings);

	argtypes[0] = INT8OID;
	values[0] = Int64GetDatum(payment_id);
	/*
	 * The lock that makes concurrent refunds of one payment take turns.  The
	 * sum of refunds is read by a later statement: under READ COMMITTED only
	 * a new snapshot sees the refund a transaction we waited for committed.
	 */
	if (sp_exec("SELECT id FROM stripepay.payment_record WHERE id = $1 FOR UPDATE",
				1, argtypes, values, NULL, SPI_OK_SELECT) == 0 ||
		sp_exec("SELECT status, currency, amount, order_id, payment_intent_id, charge_id,"
				"       (SELECT coalesce(sum(r.amount), 0) FROM stripepay.refund r"
				"         WHERE r.payment_id = p.id AND r.status NOT IN ('FAILED', 'CANCELED')),"
				"       (SELECT coalesce(sum(r.amount), 0) FROM stripepay.refund r"
				"         WHERE r.payment_id = p.id AND r.status NOT IN ('FAILED', 'CANCELED')"
				"           AND r.unclaimed_key IS NOT NULL)"
				"  FROM stripepay.payment_record p WHERE id = $1",
				1, argtypes, values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NO_SUCH_PAYMENT),
				 errmsg("payment " INT64_FORMAT " does not exist", payment_id)));
	if (strcmp(sp_result_text(0, 1), "SUCCESSFUL") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_REFUNDABLE),
				 errmsg("payment " INT64_FORMAT " cannot be refunded", payment_id),
				 errdetail("Its status is %s; only a SUCCESSFUL payment can be refunded.",
						   sp_result_text(0, 1))));
	currency = sp_currency_find(sp_result_text(0, 2));
	if (currency == NULL)
		elog(ERROR, "stripepay: payment " INT64_FORMAT " has an unknown currency", payment_id);
	paid = pg_strtoint64(sp_result_text(0, 3));
	order_id = pg_strtoint64(sp_result_text(0, 4));
	payment_intent = sp_result_text(0, 5);
	charge = sp_result_text(0, 6);
	counted = pg_strtoint64(sp_result_text(0, 7));
	unclaimed = pg_strtoint64(sp_result_text(0, 8));

	amount = sp_check_amount(currency, PG_GETARG_NUMERIC(1), false);

	/*
	 * The logical operation: this payment, after what was refunded before,
	 * refunds `amount`.  A refund whose call rolled back is left out of
	 * "before" until a retry claims it, so the retry's key is the same
	 * whether that refund's webhook came first or not.
	 */
	key_body = psprintf(INT64_FORMAT "-" INT64_FORMAT "-" INT64_FORMAT, payment_id,
						counted - unclaimed, amount);
	argtypes[1] = TEXTOID;
	values[1] = CStringGetTextDatum(key_body);
	argtypes[2] = NAMEOID;
	values[2] = sp_caller_name();
	if (sp_exec("UPDATE stripepay.refund SET unclaimed_key = NULL, created_by = $3, updated_at = now()"
				" WHERE id = (SELECT id FROM stripepay.refund"
				"              WHERE payment_id = $1 AND unclaimed_key = $2 ORDER BY id LIMIT 1)"
				" RETURNING *", 3, argtypes, values, NULL, SPI_OK_UPDATE_RETURNING) > 0)
	{
		/* the retry of a call that rolled back after Stripe made its refund */
		result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
		SPI_finish();
		PG_RETURN_DATUM(result);
	}

	if (amount > paid - counted)
	{
		sp_money_format(currency, amount, shown, sizeof(shown));
		sp_money_format(currency, paid - counted, left, sizeof(left));
		ereport(ERROR,
				(errcode(ERRCODE_SP_REFUND_TOO_LARGE),
				 errmsg("refund of %s exceeds what is left to refund", shown),
				 errdetail("Payment " INT64_FORMAT " has %s left to refund (" INT64_FORMAT " of " INT64_FORMAT
						   " is refunded or being refunded).", payment_id, left, counted, paid)));
	}
	if (payment_intent == NULL && charge == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_REFUNDABLE),
				 errmsg("payment " INT64_FORMAT " cannot be refunded yet", payment_id),
				 errdetail("Stripe has not yet told stripepay which PaymentIntent or charge paid it."),
				 errhint("Wait for the payment's webhook events.")));

	argtypes[0] = INT8OID;
	values[0] = Int64GetDatum(payment_id);
	argtypes[1] = INT8OID;
	values[1] = Int64GetDatum(order_id);
	argtypes[2] = TEXTOID;
	values[2] = CStringGetTextDatum(currency->code);
	argtypes[3] = INT8OID;
	values[3] = Int64GetDatum(amount);
	argtypes[4] = NAMEOID;
	values[4] = sp_caller_name();
	sp_exec("INSERT INTO stripepay.refund (payment_id, order_id, currency, amount, created_by)"
			" VALUES ($1, $2, $3, $4, $5) RETURNING id",
			5, argtypes, values, NULL, SPI_OK_INSERT_RETURNING);
	refund_id = pg_strtoint64(sp_result_text(0, 1));

	key = sp_idempotency_key("refund", key_body);

	form = sp_form_create();
	if (payment_intent)
		sp_form_add(form, "payment_intent", payment_intent);
	else
		sp_form_add(form, "charge", charge);
	sp_form_add_int(form, "amount", amount);
	sp_form_add_ids(form, "metadata", order_id, "stripepay_payment_id", payment_id);
	sp_form_add_int(form, "metadata[stripepay_refund_id]", refund_id);
	sp_form_add(form, "metadata[stripepay_refund_key]", key_body);

	if (!sp_stripe_send("POST", "/v1/refunds", form, settings.secret_key, key, &resp))
	{
		if (!sp_stripe_is_idempotency_error(&resp) || payment_intent == NULL)
			sp_stripe_raise_error("POST", "/v1/refunds", &resp);
		resp.body = NULL;
	}

	if (resp.body == NULL)
	{
		/* made before, by a transaction that rolled back: adopt it */
		if (!sp_find_refund_by_key(settings.secret_key, payment_intent, key_body, &stripe_refund_id))
			ereport(ERROR,
					(errcode(ERRCODE_SP_IDEMPOTENCY),
					 errmsg("idempotency key was refused by Stripe"),
					 errdetail("No refund of payment " INT64_FORMAT " carries the key %s.", payment_id, key_body)));
	}
	else
	{
		const char *paths[1] = {"id"};
		const char *v[1];

		sp_stripe_fields(resp.body, resp.body_len, "Refund", paths, 1, v);
		stripe_refund_id = v[0];
	}
	if (stripe_refund_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The Refund has no id.")));

	argtypes[0] = INT8OID;
	values[0] = Int64GetDatum(refund_id);
	argtypes[1] = TEXTOID;
	values[1] = CStringGetTextDatum(stripe_refund_id);
	argtypes[2] = INT8OID;
	values[2] = Int64GetDatum(payment_id);
	/*
	 * No row of this Stripe refund can exist yet: its webhook waits for the
	 * payment's lock, which this call holds.
	 */
	sp_exec("UPDATE stripepay.refund SET stripe_refund_id = $2, updated_at = now() WHERE id = $1",
			2, argtypes, values, NULL, SPI_OK_UPDATE);
	sp_exec("SELECT stripepay._sum_refunds($3)", 3, argtypes, values, NULL, SPI_OK_SELECT);
	sp_exec("SELECT * FROM stripepay.refund WHERE id = $1", 1, argtypes, values, NULL, SPI_OK_SELECT);
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	PG_RETURN_DATUM(result);
}
