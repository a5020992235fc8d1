/*-------------------------------------------------------------------------
 *
 * sp_api.c
 *		What the SQL entry points share: argument checks, request bodies
 *		freed on ERROR, and closing an order's earlier ways to pay.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "pure/sp_money.h"
#include "sp_api.h"
#include "sp_stmt.h"
#include "sp_stripe.h"
#include "stripepay.h"

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
sp_close_open_ways_to_pay(const char *api_key, int64 order_id, SpStmt *select_open,
						  SpStmt *mark_closed, Oid run_as, SpCompletedReport completed)
{
	Datum		value = Int64GetDatum(order_id);
	SpRows		rows;
	int			i;

	sp_stmt_run(select_open, &value, NULL, SP_AS_OWNER, INT_MAX, &rows);
	for (i = 0; i < rows.nrows; i++)
	{
		int64		id = sp_rows_int64(&rows, i, 1, NULL);
		char	   *stripe_id = sp_rows_text(&rows, i, 2);
		bool		is_session = sp_rows_bool(&rows, i, 3, NULL);
		char	   *status = sp_rows_text(&rows, i, 4);
		SpCloseResult closed = sp_close_way_to_pay(api_key, stripe_id, is_session);

		if (closed == SP_CLOSE_COMPLETE_UNPAID && strcmp(status, "FAILED") == 0)
			continue;			/* its async payment failed: it is over */
		if (closed != SP_CLOSE_CLOSED)
			completed(order_id, id, stripe_id, is_session);
		value = Int64GetDatum(id);
		sp_stmt_run(mark_closed, &value, NULL, run_as, 0, NULL);
	}
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
						   SP_MAX_URL_LEN)));
}

const SpCurrency *
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
int64
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

