/*-------------------------------------------------------------------------
 *
 * sp_refund.c
 *		stripe_refund(): part or all of a SUCCESSFUL payment, never more
 *		than is left, never twice.
 *
 * The check of what is left and the new refund's row happen under the
 * payment's row lock, so two concurrent refunds cannot both pass.  The
 * Idempotency-Key names the payment, what was refunded before and the
 * amount: a retry after the calling transaction rolled back reaches the
 * refund Stripe already made, and claims it instead of refunding again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "sp_api.h"
#include "sp_call.h"
#include "sp_engine.h"
#include "sp_stmt.h"
#include "sp_stripe.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_stripe_refund);

static SpStmt lock_payment = {
	.sql = "SELECT id FROM stripepay.payment_record WHERE id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {INT8OID}
};
/* a later statement: under READ COMMITTED only it sees a refund committed while we waited */
static SpStmt payment_state = {
	.sql = "SELECT status, currency, amount, order_id, payment_intent_id, charge_id,"
	"       (SELECT coalesce(sum(r.amount), 0) FROM stripepay.refund r"
	"         WHERE r.payment_id = p.id AND r.status NOT IN ('FAILED', 'CANCELED')),"
	"       (SELECT coalesce(sum(r.amount), 0) FROM stripepay.refund r"
	"         WHERE r.payment_id = p.id AND r.status NOT IN ('FAILED', 'CANCELED')"
	"           AND r.unclaimed_key IS NOT NULL)"
	"  FROM stripepay.payment_record p WHERE id = $1",
	.nargs = 1, .argtypes = {INT8OID}
};
static SpStmt claim = {
	.sql = "UPDATE stripepay.refund SET unclaimed_key = NULL, created_by = $3, updated_at = pg_catalog.now()"
	" WHERE id = (SELECT id FROM stripepay.refund"
	"              WHERE payment_id = $1 AND unclaimed_key = $2 ORDER BY id LIMIT 1)"
	" RETURNING *",
	.nargs = 3, .argtypes = {INT8OID, TEXTOID, NAMEOID}
};
static SpStmt record_refund = {
	.sql = "INSERT INTO stripepay.refund (id, payment_id, order_id, currency, amount, created_by)"
	" VALUES ($1, $2, $3, $4, $5, $6)",
	.nargs = 6, .argtypes = {INT8OID, INT8OID, INT8OID, TEXTOID, INT8OID, NAMEOID}
};
static SpStmt refund_made = {
	.sql = "UPDATE stripepay.refund SET stripe_refund_id = $2, updated_at = pg_catalog.now()"
	" WHERE id = $1 RETURNING *",
	.nargs = 2, .argtypes = {INT8OID, TEXTOID}
};
static SpStmt refund_row = {
	.sql = "SELECT * FROM stripepay.refund WHERE id = $1",
	.nargs = 1, .argtypes = {INT8OID}
};

typedef struct PaymentState
{
	int64		id;
	char	   *status;
	const SpCurrency *currency;
	int64		paid;
	int64		order_id;
	char	   *payment_intent;
	char	   *charge;
	int64		counted;		/* refunds that stand or are pending */
	int64		unclaimed;		/* of which a rolled-back call made */
} PaymentState;

static void
lock_and_read_payment(int64 payment_id, PaymentState *p)
{
	Datum		value = Int64GetDatum(payment_id);
	SpRows		rows;

	sp_stmt_run(&lock_payment, &value, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows > 0)
		sp_stmt_run(&payment_state, &value, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NO_SUCH_PAYMENT),
				 errmsg("payment " INT64_FORMAT " does not exist", payment_id)));
	p->id = payment_id;
	p->status = sp_rows_text(&rows, 0, 1);
	p->currency = sp_currency_find(sp_rows_text(&rows, 0, 2));
	p->paid = sp_rows_int64(&rows, 0, 3, NULL);
	p->order_id = sp_rows_int64(&rows, 0, 4, NULL);
	p->payment_intent = sp_rows_text(&rows, 0, 5);
	p->charge = sp_rows_text(&rows, 0, 6);
	p->counted = DatumGetInt64(DirectFunctionCall1(numeric_int8, sp_rows_get(&rows, 0, 7, NULL)));
	p->unclaimed = DatumGetInt64(DirectFunctionCall1(numeric_int8, sp_rows_get(&rows, 0, 8, NULL)));
	if (strcmp(p->status, "SUCCESSFUL") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_REFUNDABLE),
				 errmsg("payment " INT64_FORMAT " cannot be refunded", payment_id),
				 errdetail("Its status is %s; only a SUCCESSFUL payment can be refunded.", p->status)));
	if (p->currency == NULL)
		elog(ERROR, "stripepay: payment " INT64_FORMAT " has an unknown currency", payment_id);
}

static void
refuse_beyond_what_is_left(const PaymentState *p, int64 amount)
{
	char		shown[64];
	char		left[64];

	if (amount <= p->paid - p->counted)
		return;
	sp_money_format(p->currency, amount, shown, sizeof(shown));
	sp_money_format(p->currency, p->paid - p->counted, left, sizeof(left));
	ereport(ERROR,
			(errcode(ERRCODE_SP_REFUND_TOO_LARGE),
			 errmsg("refund of %s exceeds what is left to refund", shown),
			 errdetail("Payment " INT64_FORMAT " has %s left to refund (" INT64_FORMAT " of " INT64_FORMAT
					   " is refunded or being refunded).", p->id, left, p->counted, p->paid)));
}

/*
 * When a refund's transaction rolled back after Stripe made the refund, a
 * retry sends the same Idempotency-Key with another refund id in the
 * metadata, and Stripe refuses it.  The refund is then found among the
 * payment's refunds by the key we put in its metadata.
 */
static bool
find_refund_by_key(const char *api_key, const char *payment_intent, const char *key,
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

/* Asks Stripe for the refund; returns its id. */
static const char *
refund_at_stripe(const SpCall *call, const PaymentState *p, int64 refund_id, int64 amount,
				 const char *key_body)
{
	SpForm	   *form = sp_form_create();
	SpHttpResponse resp;
	const char *stripe_refund_id = NULL;

	if (p->payment_intent)
		sp_form_add(form, "payment_intent", p->payment_intent);
	else
		sp_form_add(form, "charge", p->charge);
	sp_form_add_int(form, "amount", amount);
	sp_form_add_ids(form, "metadata", p->order_id, "stripepay_payment_id", p->id);
	sp_form_add_int(form, "metadata[stripepay_refund_id]", refund_id);
	sp_form_add(form, "metadata[stripepay_refund_key]", key_body);

	if (sp_stripe_send("POST", "/v1/refunds", form, call->settings.secret_key,
					   sp_idempotency_key("refund", key_body), &resp))
	{
		const char *paths[1] = {"id"};

		sp_stripe_fields(resp.body, resp.body_len, "Refund", paths, 1, &stripe_refund_id);
	}
	else
	{
		if (!sp_stripe_is_idempotency_error(&resp) || p->payment_intent == NULL)
			sp_stripe_raise_error("POST", "/v1/refunds", &resp);
		/* made before, by a transaction that rolled back: adopt it */
		if (!find_refund_by_key(call->settings.secret_key, p->payment_intent, key_body,
								&stripe_refund_id))
			ereport(ERROR,
					(errcode(ERRCODE_SP_IDEMPOTENCY),
					 errmsg("idempotency key was refused by Stripe"),
					 errdetail("No refund of payment " INT64_FORMAT " carries the key %s.", p->id, key_body)));
	}
	if (stripe_refund_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The Refund has no id.")));
	return stripe_refund_id;
}

/*
 * stripe_refund(payment_id bigint, refund_amount numeric)
 *
 * Refunds a SUCCESSFUL payment in whole or in part.  The refund row stays
 * PENDING until Stripe's webhook confirms it.
 */
Datum
stripepay_stripe_refund(PG_FUNCTION_ARGS)
{
	SpCall		call;
	SpApply		ap;
	PaymentState p;
	int64		amount;
	char	   *key_body;
	int64		refund_id;
	const char *stripe_refund_id;
	Datum		values[6];
	SpRows		rows;

	sp_require_arg(fcinfo, 0, "payment_id");
	sp_require_arg(fcinfo, 1, "refund_amount");
	sp_require_read_committed("stripe_refund");
	sp_call_begin(&call, fcinfo);
	sp_settings_require_key(&call.settings);

	lock_and_read_payment(PG_GETARG_INT64(0), &p);
	amount = sp_check_amount(p.currency, PG_GETARG_NUMERIC(1), false);

	/*
	 * The logical operation: this payment, after what was refunded before,
	 * refunds `amount`.  A refund whose call rolled back is left out of
	 * "before" until a retry claims it, so the retry's key is the same
	 * whether that refund's webhook came first or not.
	 */
	key_body = psprintf(INT64_FORMAT "-" INT64_FORMAT "-" INT64_FORMAT, p.id,
						p.counted - p.unclaimed, amount);
	values[0] = Int64GetDatum(p.id);
	values[1] = CStringGetTextDatum(key_body);
	values[2] = sp_call_caller_name(&call);
	sp_stmt_run(&claim, values, NULL, call.run_as, 1, &rows);
	if (rows.nrows > 0)
	{
		/* the retry of a call that rolled back after Stripe made its refund */
		sp_call_end(&call);
		return sp_rows_composite(&rows, 0, fcinfo);
	}

	refuse_beyond_what_is_left(&p, amount);
	if (p.payment_intent == NULL && p.charge == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_REFUNDABLE),
				 errmsg("payment " INT64_FORMAT " cannot be refunded yet", p.id),
				 errdetail("Stripe has not yet told stripepay which PaymentIntent or charge paid it."),
				 errhint("Wait for the payment's webhook events.")));

	refund_id = sp_next_id("refund_id_seq");
	values[0] = Int64GetDatum(refund_id);
	values[1] = Int64GetDatum(p.id);
	values[2] = Int64GetDatum(p.order_id);
	values[3] = CStringGetTextDatum(p.currency->code);
	values[4] = Int64GetDatum(amount);
	values[5] = sp_call_caller_name(&call);
	sp_stmt_run(&record_refund, values, NULL, call.run_as, 0, NULL);

	stripe_refund_id = refund_at_stripe(&call, &p, refund_id, amount, key_body);

	/*
	 * No row of this Stripe refund can exist yet: its webhook waits for the
	 * payment's lock, which this call holds.
	 */
	values[0] = Int64GetDatum(refund_id);
	values[1] = CStringGetTextDatum(stripe_refund_id);
	sp_stmt_run(&refund_made, values, NULL, call.run_as, 0, NULL);
	memset(&ap, 0, sizeof(ap));
	ap.run_as = call.run_as;
	sp_engine_sum_refunds(&ap, p.id);
	values[0] = Int64GetDatum(refund_id);
	sp_stmt_run(&refund_row, values, NULL, SP_AS_OWNER, 1, &rows);
	sp_call_end(&call);
	return sp_rows_composite(&rows, 0, fcinfo);
}
