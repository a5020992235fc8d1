/*-------------------------------------------------------------------------
 *
 * sp_apply_invoice.c
 *		Invoices and InvoicePayments: renewals become payments.
 *
 * A paid renewal (billing_reason subscription_cycle) becomes a new
 * SUCCESSFUL payment record, once per invoice however often Stripe
 * delivers it, and fires the deduction flow.  From API 2025-03-31 an
 * invoice in a webhook names neither the PaymentIntent nor the charge that
 * paid it; its InvoicePayment (invoice_payment.paid) does, and the renewal
 * learns them there, so that it can be refunded.  An InvoicePayment that
 * comes before its invoice.paid waits for it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pure/sp_rules.h"
#include "sp_engine.h"
#include "sp_lock.h"
#include "sp_stmt.h"
#include "sp_stripe.h"

static SpStmt subscription_of_invoice = {
	.sql = "SELECT id, order_id FROM stripepay.recurring_payment"
	" WHERE subscription_id = $1 OR (subscription_id IS NULL AND id = $2)"
	" LIMIT 1 FOR UPDATE",
	.nargs = 2, .argtypes = {TEXTOID, INT8OID}
};
static SpStmt forget_waiting = {
	.sql = "DELETE FROM stripepay.waiting_event WHERE stripe_id = $1",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt renewal = {
	.sql = "INSERT INTO stripepay.payment_record"
	"   (id, order_id, kind, recurring_payment_id, status, currency, amount, flow, invoice_id,"
	"    payment_intent_id, charge_id, livemode, event_created, created_by)"
	" VALUES ($1, $2, 'RENEWAL', $3, 'SUCCESSFUL', $4, $5, 'invoice', $6, $7, $8, $9, $10, 'stripe')"
	" ON CONFLICT (invoice_id) DO NOTHING"
	" RETURNING id, payment_intent_id, charge_id",
	.nargs = 10, .argtypes = {INT8OID, INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, BOOLOID,
	TIMESTAMPTZOID}
};
static SpStmt payment_of_invoice = {
	.sql = "SELECT id, order_id, recurring_payment_id, payment_intent_id, charge_id"
	"  FROM stripepay.payment_record WHERE invoice_id = $1 FOR UPDATE",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt deduction_flow = {
	.sql = "INSERT INTO stripepay.deduction_flow"
	"   (id, event_id, event_type, recurring_payment_id, subscription_order_id, payment_id,"
	"    order_id, invoice_id, currency, amount, already_processed)"
	" VALUES ($1, $2, $3, $4, $5, $6, $5, $7, $8, $9, false)"
	" RETURNING order_id",
	.nargs = 9, .argtypes = {INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID, INT8OID}
};
static SpStmt renewal_order = {
	.sql = "UPDATE stripepay.payment_record SET order_id = $2 WHERE id = $1",
	.nargs = 2, .argtypes = {INT8OID, INT8OID}
};
static SpStmt learn_ids = {
	.sql = "UPDATE stripepay.payment_record SET"
	"   payment_intent_id = coalesce(payment_intent_id, (SELECT $2::text WHERE NOT EXISTS"
	"       (SELECT FROM stripepay.payment_record WHERE payment_intent_id = $2))),"
	"   charge_id = coalesce(charge_id, $3),"
	"   updated_at = pg_catalog.now()"
	" WHERE id = $1"
	" RETURNING payment_intent_id, charge_id",
	.nargs = 3, .argtypes = {INT8OID, TEXTOID, TEXTOID}
};

void
sp_engine_apply_invoice(const SpApply *ap, const SpEvent *ev, SpLinks *links)
{
	Datum		values[10];
	bool		nulls[10];
	SpRows		rows;
	int64		rp_id;
	int64		rp_order;
	int64		payment_id;
	int64		order_id;
	char	   *intent;
	char	   *charge;

	memset(nulls, false, sizeof(nulls));
	values[0] = sp_text_or_null(ev->subscription, &nulls[0]);
	nulls[1] = !sp_engine_row_id(ev->sub_metadata_recurring_payment_id, &rp_id);
	values[1] = Int64GetDatum(nulls[1] ? 0 : rp_id);
	if (nulls[0] && nulls[1])
		rows.nrows = 0;
	else
		sp_stmt_run(&subscription_of_invoice, values, nulls, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
	{
		links->has_order = sp_engine_row_id(ev->sub_metadata_order_id, &order_id) ||
			sp_engine_row_id(ev->metadata_order_id, &order_id);
		links->order_id = order_id;
		return;
	}
	rp_id = sp_rows_int64(&rows, 0, 1, NULL);
	rp_order = sp_rows_int64(&rows, 0, 2, NULL);
	links->has_order = true;
	links->order_id = rp_order;
	links->recurring_payment_id = rp_id;

	if (!sp_invoice_is_renewal(ev))
	{
		if (strcmp(ev->type, "invoice.paid") == 0 && ev->object_id[0])
		{
			/* no payment will learn this invoice: nothing is to wait for it */
			values[0] = CStringGetTextDatum(ev->object_id);
			sp_stmt_run(&forget_waiting, values, NULL, ap->run_as, 0, NULL);
		}
		return;
	}

	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(sp_next_id("payment_record_id_seq"));
	values[1] = Int64GetDatum(rp_order);
	values[2] = Int64GetDatum(rp_id);
	values[3] = CStringGetTextDatum(ev->currency);
	values[4] = Int64GetDatum((int64) ev->amount_paid);
	values[5] = CStringGetTextDatum(ev->object_id);
	values[6] = sp_text_or_null(ev->payment_intent, &nulls[6]);
	values[7] = sp_text_or_null(ev->charge, &nulls[7]);
	values[8] = BoolGetDatum(ev->livemode);
	values[9] = TimestampTzGetDatum(sp_engine_event_time(ev));
	sp_stmt_run(&renewal, values, nulls, ap->run_as, 1, &rows);
	if (rows.nrows == 0)
	{
		/* an invoice already turned into a payment: nothing moves twice */
		values[0] = CStringGetTextDatum(ev->object_id);
		sp_stmt_run(&payment_of_invoice, values, NULL, SP_AS_OWNER, 1, &rows);
		if (rows.nrows == 1)
		{
			links->order_id = sp_rows_int64(&rows, 0, 2, NULL);
			links->payment_id = sp_rows_int64(&rows, 0, 1, NULL);
		}
		return;
	}
	payment_id = sp_rows_int64(&rows, 0, 1, NULL);
	intent = sp_rows_text(&rows, 0, 2);
	charge = sp_rows_text(&rows, 0, 3);

	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(sp_next_id("deduction_flow_id_seq"));
	values[1] = CStringGetTextDatum(ev->id);
	values[2] = CStringGetTextDatum(ev->type);
	values[3] = Int64GetDatum(rp_id);
	values[4] = Int64GetDatum(rp_order);
	values[5] = Int64GetDatum(payment_id);
	values[6] = CStringGetTextDatum(ev->object_id);
	values[7] = CStringGetTextDatum(ev->currency);
	values[8] = Int64GetDatum((int64) ev->amount_paid);
	sp_stmt_run(&deduction_flow, values, nulls, ap->run_as, 1, &rows);
	/* a BEFORE INSERT trigger may have made the renewal's own order */
	order_id = sp_rows_int64(&rows, 0, 1, NULL);
	if (order_id != rp_order)
	{
		values[0] = Int64GetDatum(payment_id);
		values[1] = Int64GetDatum(order_id);
		sp_stmt_run(&renewal_order, values, NULL, ap->run_as, 0, NULL);
	}
	sp_engine_notify(ap, "stripepay_payment", ev->id, "SUCCESSFUL", true, order_id,
					 "payment_id", payment_id, "recurring_payment_id", rp_id);
	{
		const char *ids[3] = {ev->object_id, intent, charge};

		sp_engine_apply_waiting(ap, ids, 3, true);
	}

	links->order_id = order_id;
	links->payment_id = payment_id;
}

void
sp_engine_apply_invoice_payment(const SpApply *ap, const SpEvent *ev, SpLinks *links)
{
	Datum		values[3];
	bool		nulls[3];
	SpRows		rows;
	int64		payment_id;
	bool		had_intent;
	bool		isnull;
	char	   *intent;
	char	   *charge;

	if (!sp_invoice_payment_counts(ev))
		return;
	values[0] = CStringGetTextDatum(ev->invoice);
	sp_stmt_run(&payment_of_invoice, values, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 0)
	{
		const char *ids[1] = {ev->invoice};

		/* sp_engine_apply_invoice takes the invoice's lock before it looks for us */
		sp_lock_ids(ids, 1);
		sp_stmt_run(&payment_of_invoice, values, NULL, SP_AS_OWNER, 1, &rows);
		if (rows.nrows == 0)
		{
			sp_engine_wait(ap, ev, ids, 1);
			return;
		}
	}
	payment_id = sp_rows_int64(&rows, 0, 1, NULL);
	links->has_order = true;
	links->order_id = sp_rows_int64(&rows, 0, 2, NULL);
	links->payment_id = payment_id;
	links->recurring_payment_id = sp_rows_int64(&rows, 0, 3, &isnull);
	had_intent = sp_rows_text(&rows, 0, 4) != NULL;
	charge = sp_rows_text(&rows, 0, 5);

	/*
	 * The charge: from the event when it names it, else, once, from the
	 * PaymentIntent's latest_charge.  A PaymentIntent or charge another row
	 * holds stays with it.
	 */
	charge = charge != NULL ? charge : ev->charge[0] ? pstrdup(ev->charge) : NULL;
	if (charge == NULL && ev->payment_intent[0] && ap->api_key != NULL)
		charge = sp_stripe_latest_charge(ap->api_key, ap->key_mode, ev->payment_intent);

	values[0] = Int64GetDatum(payment_id);
	values[1] = sp_text_or_null(ev->payment_intent, &nulls[1]);
	values[2] = sp_text_or_null(charge, &nulls[2]);
	nulls[0] = false;
	sp_stmt_run(&learn_ids, values, nulls, ap->run_as, 1, &rows);
	intent = sp_rows_text(&rows, 0, 1);
	charge = sp_rows_text(&rows, 0, 2);
	{
		const char *ids[2] = {intent, charge};

		sp_engine_apply_waiting(ap, ids, 2, !had_intent);
	}
}
