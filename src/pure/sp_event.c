/*-------------------------------------------------------------------------
 *
 * sp_event.c
 *		Stripe event decoding across API versions
 *
 * One pass of sp_jtok over the text per call, into a token array on the
 * stack (or, for an unusually large event, one malloc'd and freed before
 * returning); every field is then copied into the caller's SpEvent.
 * Nothing in here calls back into the caller or can longjmp.
 *
 * Decoding stops at the first problem: the helpers below record the first
 * failure (its code and the field's path) in an SpEventDecoder and turn
 * into no-ops afterwards, so the reading code is a flat list of fields
 * rather than a ladder of error checks.  A value is a token index; -1 is
 * "absent" (a missing member, JSON null, or after a failure).
 *
 *-------------------------------------------------------------------------
 */
#include "sp_event.h"
#include "sp_jtok.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tokens kept on the stack: a large Stripe event has a few hundred */
#define SP_EVENT_STACK_TOKENS 512

typedef struct SpEventDecoder
{
	SpEventResult rc;
	const char *path;			/* of the first failure */
	const SpJtDoc *doc;
} SpEventDecoder;

static bool
sp_event_fail(SpEventDecoder *d, SpEventResult rc, const char *path)
{
	if (d->rc == SP_EVENT_OK)
	{
		d->rc = rc;
		d->path = path;
	}
	return false;
}

static bool
sp_event_is(SpEventDecoder *d, int val, SpJtType type)
{
	return val >= 0 && d->doc->tok[val].type == type;
}

/* obj's member key; -1 when obj is -1, the key absent or JSON null */
static int
sp_event_member(SpEventDecoder *d, int obj, const char *key)
{
	return sp_jt_member(d->doc, obj, key);
}

/*
 * Copies a JSON string into dst[size].  Not a string: bad_type.  Not
 * fitting: TOO_LONG.  (U+0000, which text cannot hold, never gets here:
 * sp_jt_parse() refuses it.)
 */
static bool
sp_event_copy(SpEventDecoder *d, int val, const char *path,
			  char *dst, size_t size, SpEventResult bad_type)
{
	switch (sp_jt_string(d->doc, val, dst, size, false, NULL))
	{
		case SP_JT_STRING_OK:
			return true;
		case SP_JT_STRING_TOO_LONG:
			dst[0] = '\0';
			return sp_event_fail(d, SP_EVENT_TOO_LONG, path);
		default:
			dst[0] = '\0';
			return sp_event_fail(d, bad_type, path);
	}
}

/* An optional string member. */
static void
sp_event_string(SpEventDecoder *d, int obj, const char *key,
				const char *path, char *dst, size_t size)
{
	int			val = sp_event_member(d, obj, key);

	if (d->rc == SP_EVENT_OK && val >= 0)
		sp_event_copy(d, val, path, dst, size, SP_EVENT_INVALID_FIELD);
}

/*
 * Human text: cut at a UTF-8 character boundary rather than refused.
 */
static void
sp_event_text(SpEventDecoder *d, int obj, const char *key,
			  const char *path, char *dst, size_t size)
{
	int			val = sp_event_member(d, obj, key);

	if (d->rc != SP_EVENT_OK || val < 0)
		return;
	if (sp_jt_string(d->doc, val, dst, size, true, NULL) != SP_JT_STRING_OK)
	{
		dst[0] = '\0';
		sp_event_fail(d, SP_EVENT_INVALID_FIELD, path);
	}
}

/* An expandable reference: an id string, or the expanded object's "id". */
static void
sp_event_ref(SpEventDecoder *d, int obj, const char *key,
			 const char *path, char *dst, size_t size)
{
	int			val = sp_event_member(d, obj, key);

	if (d->rc != SP_EVENT_OK || val < 0)
		return;
	if (sp_event_is(d, val, SP_JT_OBJECT))
	{
		val = sp_event_member(d, val, "id");
		if (val < 0)
		{
			sp_event_fail(d, SP_EVENT_INVALID_FIELD, path);
			return;
		}
	}
	sp_event_copy(d, val, path, dst, size, SP_EVENT_INVALID_FIELD);
}

/*
 * A JSON integer >= 0 (amounts and timestamps are never negative).
 * INT64_MAX is refused too: no Stripe amount or time comes near it, and
 * json-c (sp_json.c) clamps larger integers to it, so both readers agree.
 */
static bool
sp_event_intval(SpEventDecoder *d, int val, long long *out)
{
	int64_t		v;

	if (!sp_jt_int64(d->doc, val, &v) || v < 0 || v == INT64_MAX)
		return false;
	*out = (long long) v;
	return true;
}

static void
sp_event_int(SpEventDecoder *d, int obj, const char *key,
			 const char *path, long long *out, bool *has)
{
	int			val = sp_event_member(d, obj, key);

	if (d->rc != SP_EVENT_OK || val < 0)
		return;
	if (!sp_event_intval(d, val, out))
	{
		sp_event_fail(d, SP_EVENT_INVALID_FIELD, path);
		return;
	}
	*has = true;
}

/* An integer whose null counts: *has when key is there, *set when not null. */
static void
sp_event_nullable_int(SpEventDecoder *d, int obj, const char *key,
					  const char *path, long long *out, bool *set, bool *has)
{
	int			val = sp_jt_member_or_null(d->doc, obj, key);

	if (d->rc != SP_EVENT_OK || val < 0)
		return;
	if (!sp_event_is(d, val, SP_JT_NULL))
	{
		if (!sp_event_intval(d, val, out))
		{
			sp_event_fail(d, SP_EVENT_INVALID_FIELD, path);
			return;
		}
		*set = true;
	}
	*has = true;
}

static void
sp_event_bool(SpEventDecoder *d, int obj, const char *key,
			  const char *path, bool *out, bool *has)
{
	int			val = sp_event_member(d, obj, key);

	if (d->rc != SP_EVENT_OK || val < 0)
		return;
	if (!sp_event_is(d, val, SP_JT_TRUE) && !sp_event_is(d, val, SP_JT_FALSE))
	{
		sp_event_fail(d, SP_EVENT_INVALID_FIELD, path);
		return;
	}
	*out = sp_event_is(d, val, SP_JT_TRUE);
	*has = true;
}

/* An optional object member; -1 when absent, null, or after a failure. */
static int
sp_event_object(SpEventDecoder *d, int obj, const char *key,
				const char *path)
{
	int			val = sp_event_member(d, obj, key);

	if (d->rc != SP_EVENT_OK || val < 0)
		return -1;
	if (!sp_event_is(d, val, SP_JT_OBJECT))
	{
		sp_event_fail(d, SP_EVENT_INVALID_FIELD, path);
		return -1;
	}
	return val;
}

/*
 * The "data" array of a list object member, e.g. items.data; -1 when the
 * list is absent or has no data.
 */
static int
sp_event_list(SpEventDecoder *d, int obj, const char *key,
			  const char *path)
{
	int			list = sp_event_object(d, obj, key, path);
	int			data = sp_event_member(d, list, "data");

	if (data < 0)
		return -1;
	if (!sp_event_is(d, data, SP_JT_ARRAY))
	{
		sp_event_fail(d, SP_EVENT_INVALID_FIELD, path);
		return -1;
	}
	return data;
}

/* Element i of an array from sp_event_list(), which must be an object. */
static int
sp_event_element(SpEventDecoder *d, int array, size_t i,
				 const char *path)
{
	int			elem;

	if (d->rc != SP_EVENT_OK || array < 0)
		return -1;
	elem = sp_jt_element(d->doc, array, i);
	if (elem < 0)
		return -1;
	if (!sp_event_is(d, elem, SP_JT_OBJECT))
	{
		sp_event_fail(d, SP_EVENT_INVALID_FIELD, path);
		return -1;
	}
	return elem;
}

/* metadata values are strings; a metadata that is not an object is bad */
static void
sp_event_metadata(SpEventDecoder *d, int obj,
				  const char *path, const char *key, char *dst, size_t size)
{
	sp_event_string(d, sp_event_object(d, obj, "metadata", path), key, path,
					dst, size);
}

/*
 * The API version an event was rendered in, as YYYYMMDD; 0 when it does
 * not say (then it is read as the pinned version).
 */
static long
sp_event_api_date(const SpEvent *ev)
{
	const char *v = ev->api_version;
	long		date = 0;
	int			i;

	for (i = 0; i < 10; i++)
	{
		if (i == 4 || i == 7)
		{
			if (v[i] != '-')
				return 0;
			continue;
		}
		if (v[i] < '0' || v[i] > '9')
			return 0;
		date = date * 10 + (v[i] - '0');
	}
	return date;
}

/* Whether the event was rendered in a version older than date (YYYYMMDD). */
static bool
sp_event_older_than(const SpEvent *ev, long date)
{
	long		d = sp_event_api_date(ev);

	return d != 0 && d < date;
}

/* 2022-11-15: PaymentIntent.charges and Charge.refunds no longer embedded */
#define SP_API_2022_11_15 20221115L
/* 2025-03-31 (basil): periods on subscription items, invoice.parent */
#define SP_API_2025_03_31 20250331L

static void
sp_event_checkout_session(SpEventDecoder *d, int o, SpEvent *ev)
{
	sp_event_string(d, o, "payment_status", "data.object.payment_status",
					ev->payment_status, sizeof(ev->payment_status));
	sp_event_string(d, o, "mode", "data.object.mode", ev->mode,
					sizeof(ev->mode));
	sp_event_ref(d, o, "payment_intent", "data.object.payment_intent",
				 ev->payment_intent, sizeof(ev->payment_intent));
	sp_event_ref(d, o, "subscription", "data.object.subscription",
				 ev->subscription, sizeof(ev->subscription));
	sp_event_string(d, o, "client_reference_id",
					"data.object.client_reference_id",
					ev->client_reference_id, sizeof(ev->client_reference_id));
	sp_event_int(d, o, "amount_total", "data.object.amount_total",
				 &ev->amount_total, &ev->has_amount_total);
	sp_event_int(d, o, "expires_at", "data.object.expires_at",
				 &ev->expires_at, &ev->has_expires_at);
}

static void
sp_event_payment_intent(SpEventDecoder *d, int o, SpEvent *ev)
{
	int			err;

	sp_event_int(d, o, "amount", "data.object.amount", &ev->amount,
				 &ev->has_amount);
	sp_event_int(d, o, "amount_received", "data.object.amount_received",
				 &ev->amount_received, &ev->has_amount_received);

	/* before 2022-11-15: the charges list, newest first */
	if (sp_event_older_than(ev, SP_API_2022_11_15))
		sp_event_string(d, sp_event_element(d, sp_event_list(d, o, "charges", "data.object.charges"),
											0, "data.object.charges.data[0]"),
						"id", "data.object.charges.data[0].id",
						ev->charge, sizeof(ev->charge));
	if (ev->charge[0] == '\0')
		sp_event_ref(d, o, "latest_charge", "data.object.latest_charge",
					 ev->charge, sizeof(ev->charge));

	err = sp_event_object(d, o, "last_payment_error",
						  "data.object.last_payment_error");
	sp_event_string(d, err, "code", "data.object.last_payment_error.code",
					ev->last_payment_error_code,
					sizeof(ev->last_payment_error_code));
	sp_event_string(d, err, "decline_code",
					"data.object.last_payment_error.decline_code",
					ev->last_payment_error_decline_code,
					sizeof(ev->last_payment_error_decline_code));
	sp_event_text(d, err, "message", "data.object.last_payment_error.message",
				  ev->last_payment_error_message,
				  sizeof(ev->last_payment_error_message));
	sp_event_string(d, o, "cancellation_reason",
					"data.object.cancellation_reason",
					ev->cancellation_reason, sizeof(ev->cancellation_reason));
}

static void
sp_event_charge(SpEventDecoder *d, int o, SpEvent *ev)
{
	int refunds;
	int data;
	bool		has_more = false;
	bool		has_has_more = false;
	size_t		n;
	size_t		i;

	sp_event_ref(d, o, "payment_intent", "data.object.payment_intent",
				 ev->payment_intent, sizeof(ev->payment_intent));
	sp_event_int(d, o, "amount", "data.object.amount", &ev->amount,
				 &ev->has_amount);
	sp_event_int(d, o, "amount_refunded", "data.object.amount_refunded",
				 &ev->amount_refunded, &ev->has_amount_refunded);
	sp_event_bool(d, o, "refunded", "data.object.refunded", &ev->refunded,
				  &ev->has_refunded);

	/* embedded before 2022-11-15, newer versions only when expanded */
	refunds = sp_event_object(d, o, "refunds", "data.object.refunds");
	data = sp_event_list(d, o, "refunds", "data.object.refunds");
	if (refunds < 0 || data < 0)
		return;
	ev->has_refunds = true;
	sp_event_bool(d, refunds, "has_more", "data.object.refunds.has_more",
				  &has_more, &has_has_more);
	n = d->doc->tok[data].count;
	for (i = 0; i < n && i < SP_EVENT_MAX_REFUNDS; i++)
	{
		int r = sp_event_element(d, data, i,
												 "data.object.refunds.data[]");
		SpEventRefund *out = &ev->refunds[i];

		sp_event_string(d, r, "id", "data.object.refunds.data[].id",
						out->id, sizeof(out->id));
		sp_event_int(d, r, "amount", "data.object.refunds.data[].amount",
					 &out->amount, &out->has_amount);
		sp_event_string(d, r, "status", "data.object.refunds.data[].status",
						out->status, sizeof(out->status));
	}
	ev->nrefunds = (int) i;
	ev->refunds_truncated = n > SP_EVENT_MAX_REFUNDS || has_more;
}

static void
sp_event_refund(SpEventDecoder *d, int o, SpEvent *ev)
{
	sp_event_int(d, o, "amount", "data.object.amount", &ev->amount,
				 &ev->has_amount);
	sp_event_ref(d, o, "payment_intent", "data.object.payment_intent",
				 ev->payment_intent, sizeof(ev->payment_intent));
	sp_event_ref(d, o, "charge", "data.object.charge", ev->charge,
				 sizeof(ev->charge));
	sp_event_string(d, o, "reason", "data.object.reason", ev->reason,
					sizeof(ev->reason));
	sp_event_string(d, o, "failure_reason", "data.object.failure_reason",
					ev->failure_reason, sizeof(ev->failure_reason));
}

/*
 * An InvoicePayment's payment: a PaymentIntent (expanded, its latest_charge
 * names the charge) or a charge.
 */
static void
sp_event_payment_of_invoice(SpEventDecoder *d, int payment, const char *path_pi,
							const char *path_latest, const char *path_charge, SpEvent *ev)
{
	int			intent;

	if (payment < 0)
		return;
	sp_event_ref(d, payment, "payment_intent", path_pi, ev->payment_intent,
				 sizeof(ev->payment_intent));
	intent = sp_event_member(d, payment, "payment_intent");
	if (sp_event_is(d, intent, SP_JT_OBJECT))
		sp_event_ref(d, intent, "latest_charge", path_latest, ev->charge, sizeof(ev->charge));
	if (ev->charge[0] == '\0')
		sp_event_ref(d, payment, "charge", path_charge, ev->charge, sizeof(ev->charge));
}

/*
 * From 2025-03-31 an invoice no longer names its PaymentIntent or charge
 * in webhooks: its InvoicePayment (invoice_payment.paid) is the link.
 */
static void
sp_event_invoice_payment(SpEventDecoder *d, int o, SpEvent *ev)
{
	sp_event_ref(d, o, "invoice", "data.object.invoice", ev->invoice,
				 sizeof(ev->invoice));
	sp_event_int(d, o, "amount_paid", "data.object.amount_paid",
				 &ev->amount_paid, &ev->has_amount_paid);
	sp_event_bool(d, o, "is_default", "data.object.is_default", &ev->is_default,
				  &ev->has_is_default);
	sp_event_payment_of_invoice(d, sp_event_object(d, o, "payment", "data.object.payment"),
								"data.object.payment.payment_intent",
								"data.object.payment.payment_intent.latest_charge",
								"data.object.payment.charge", ev);
}

static void
sp_event_subscription(SpEventDecoder *d, int o, SpEvent *ev)
{
	int			item;
	bool		older = sp_event_older_than(ev, SP_API_2025_03_31);

	sp_event_bool(d, o, "cancel_at_period_end",
				  "data.object.cancel_at_period_end",
				  &ev->cancel_at_period_end, &ev->has_cancel_at_period_end);
	sp_event_int(d, o, "canceled_at", "data.object.canceled_at",
				 &ev->canceled_at, &ev->has_canceled_at);
	sp_event_int(d, o, "cancel_at", "data.object.cancel_at",
				 &ev->cancel_at, &ev->has_cancel_at);

	/* before 2025-03-31 the period is on the subscription itself */
	if (older)
	{
		sp_event_int(d, o, "current_period_start",
					 "data.object.current_period_start",
					 &ev->period_start, &ev->has_period_start);
		sp_event_int(d, o, "current_period_end", "data.object.current_period_end",
					 &ev->period_end, &ev->has_period_end);
	}

	item = sp_event_element(d, sp_event_list(d, o, "items", "data.object.items"),
							0, "data.object.items.data[0]");
	if (item < 0)
		return;
	if (!ev->has_period_start)
		sp_event_int(d, item, "current_period_start",
					 "data.object.items.data[0].current_period_start",
					 &ev->period_start, &ev->has_period_start);
	if (!ev->has_period_end)
		sp_event_int(d, item, "current_period_end",
					 "data.object.items.data[0].current_period_end",
					 &ev->period_end, &ev->has_period_end);
	sp_event_ref(d, item, "price", "data.object.items.data[0].price",
				 ev->price_id, sizeof(ev->price_id));
	if (ev->price_id[0] == '\0')
		sp_event_ref(d, item, "plan", "data.object.items.data[0].plan",
					 ev->price_id, sizeof(ev->price_id));
}

/*
 * The invoice's payments list, when expanded: the default one that is
 * paid, else the first that is paid.
 */
static int
sp_event_paid_payment(SpEventDecoder *d, int o)
{
	int			list = sp_event_list(d, o, "payments", "data.object.payments");
	int			chosen = -1;
	size_t		n;
	size_t		i;

	if (list < 0)
		return -1;
	n = d->doc->tok[list].count;
	for (i = 0; i < n && d->rc == SP_EVENT_OK; i++)
	{
		int			entry = sp_event_element(d, list, i, "data.object.payments.data[]");
		char		status[SP_EVENT_WORD_SIZE] = "";
		bool		is_default = false;
		bool		has_default = false;

		sp_event_string(d, entry, "status", "data.object.payments.data[].status",
						status, sizeof(status));
		sp_event_bool(d, entry, "is_default", "data.object.payments.data[].is_default",
					  &is_default, &has_default);
		if (strcmp(status, "paid") != 0)
			continue;
		if (is_default)
			return entry;
		if (chosen < 0)
			chosen = entry;
	}
	return chosen;
}

/* before 2025-03-31: top level subscription, payment_intent, charge, subscription_details */
static void
sp_event_invoice_before_basil(SpEventDecoder *d, int o, SpEvent *ev)
{
	int			details;

	sp_event_ref(d, o, "subscription", "data.object.subscription",
				 ev->subscription, sizeof(ev->subscription));
	sp_event_ref(d, o, "payment_intent", "data.object.payment_intent",
				 ev->payment_intent, sizeof(ev->payment_intent));
	sp_event_ref(d, o, "charge", "data.object.charge", ev->charge,
				 sizeof(ev->charge));
	details = sp_event_object(d, o, "subscription_details",
							  "data.object.subscription_details");
	sp_event_metadata(d, details, "data.object.subscription_details.metadata",
					  "order_id", ev->sub_metadata_order_id,
					  sizeof(ev->sub_metadata_order_id));
	sp_event_metadata(d, details, "data.object.subscription_details.metadata",
					  "stripepay_recurring_payment_id",
					  ev->sub_metadata_recurring_payment_id,
					  sizeof(ev->sub_metadata_recurring_payment_id));
}

static void
sp_event_invoice(SpEventDecoder *d, int o, SpEvent *ev)
{
	int			details;
	int			line;
	int			period;

	sp_event_string(d, o, "billing_reason", "data.object.billing_reason",
					ev->billing_reason, sizeof(ev->billing_reason));
	sp_event_int(d, o, "amount_paid", "data.object.amount_paid",
				 &ev->amount_paid, &ev->has_amount_paid);
	sp_event_int(d, o, "amount_due", "data.object.amount_due",
				 &ev->amount_due, &ev->has_amount_due);

	if (sp_event_older_than(ev, SP_API_2025_03_31))
		sp_event_invoice_before_basil(d, o, ev);

	/* from 2025-03-31: parent.subscription_details, payments (expanded) */
	details = sp_event_object(d, sp_event_object(d, o, "parent",
												 "data.object.parent"),
							  "subscription_details",
							  "data.object.parent.subscription_details");
	if (ev->subscription[0] == '\0')
		sp_event_ref(d, details, "subscription",
					 "data.object.parent.subscription_details.subscription",
					 ev->subscription, sizeof(ev->subscription));
	if (ev->sub_metadata_order_id[0] == '\0' &&
		ev->sub_metadata_recurring_payment_id[0] == '\0')
	{
		sp_event_metadata(d, details,
						  "data.object.parent.subscription_details.metadata",
						  "order_id", ev->sub_metadata_order_id,
						  sizeof(ev->sub_metadata_order_id));
		sp_event_metadata(d, details,
						  "data.object.parent.subscription_details.metadata",
						  "stripepay_recurring_payment_id",
						  ev->sub_metadata_recurring_payment_id,
						  sizeof(ev->sub_metadata_recurring_payment_id));
	}
	if (ev->payment_intent[0] == '\0' && ev->charge[0] == '\0')
		sp_event_payment_of_invoice(d,
									sp_event_object(d, sp_event_paid_payment(d, o), "payment",
													"data.object.payments.data[].payment"),
									"data.object.payments.data[].payment.payment_intent",
									"data.object.payments.data[].payment.payment_intent.latest_charge",
									"data.object.payments.data[].payment.charge", ev);

	/* the service period billed, else the invoice's own period */
	line = sp_event_element(d, sp_event_list(d, o, "lines", "data.object.lines"),
							0, "data.object.lines.data[0]");
	period = sp_event_object(d, line, "period",
							 "data.object.lines.data[0].period");
	sp_event_int(d, period, "start", "data.object.lines.data[0].period.start",
				 &ev->period_start, &ev->has_period_start);
	sp_event_int(d, period, "end", "data.object.lines.data[0].period.end",
				 &ev->period_end, &ev->has_period_end);
	if (!ev->has_period_start)
		sp_event_int(d, o, "period_start", "data.object.period_start",
					 &ev->period_start, &ev->has_period_start);
	if (!ev->has_period_end)
		sp_event_int(d, o, "period_end", "data.object.period_end",
					 &ev->period_end, &ev->has_period_end);
}

/*
 * The envelope's required members, each with its own result code so the
 * caller can say exactly what was wrong with a rejected delivery.
 */
static void
sp_event_envelope(SpEventDecoder *d, int root, SpEvent *ev, int *object)
{
	int			val;
	int			data;

	*object = -1;

	val = sp_event_member(d, root, "id");
	if (val < 0 ||
		(sp_event_copy(d, val, "id", ev->id, sizeof(ev->id), SP_EVENT_NO_ID) &&
		 (strncmp(ev->id, "evt_", 4) != 0 || ev->id[4] == '\0')))
		sp_event_fail(d, SP_EVENT_NO_ID, "id");

	val = sp_event_member(d, root, "type");
	if (val < 0 ||
		(sp_event_copy(d, val, "type", ev->type, sizeof(ev->type),
					   SP_EVENT_NO_TYPE) && ev->type[0] == '\0'))
		sp_event_fail(d, SP_EVENT_NO_TYPE, "type");

	val = sp_event_member(d, root, "created");
	if (val < 0 || !sp_event_intval(d, val, &ev->created) || ev->created > SP_EVENT_MAX_CREATED)
		sp_event_fail(d, SP_EVENT_NO_CREATED, "created");

	val = sp_event_member(d, root, "livemode");
	if (!sp_event_is(d, val, SP_JT_TRUE) && !sp_event_is(d, val, SP_JT_FALSE))
		sp_event_fail(d, SP_EVENT_NO_LIVEMODE, "livemode");
	else
		ev->livemode = sp_event_is(d, val, SP_JT_TRUE);

	sp_event_string(d, root, "api_version", "api_version", ev->api_version,
					sizeof(ev->api_version));

	data = sp_event_member(d, root, "data");
	if (!sp_event_is(d, data, SP_JT_OBJECT))
	{
		sp_event_fail(d, SP_EVENT_NO_DATA, "data");
		return;
	}
	val = sp_event_member(d, data, "object");
	if (!sp_event_is(d, val, SP_JT_OBJECT))
	{
		sp_event_fail(d, SP_EVENT_NO_OBJECT, "data.object");
		return;
	}
	*object = val;

	val = sp_event_member(d, *object, "object");
	if (val < 0 ||
		(sp_event_copy(d, val, "data.object.object", ev->object_type,
					   sizeof(ev->object_type), SP_EVENT_NO_OBJECT_TYPE) &&
		 ev->object_type[0] == '\0'))
		sp_event_fail(d, SP_EVENT_NO_OBJECT_TYPE, "data.object.object");
	sp_event_string(d, *object, "id", "data.object.id", ev->object_id,
					sizeof(ev->object_id));
}

/* Everything after the tokenizing: the envelope, then the object's fields. */
static SpEventResult
sp_event_read(const SpJtDoc *doc, SpEvent *ev)
{
	SpEventDecoder d = {SP_EVENT_OK, "", doc};
	int			o;

	if (doc->tok[0].type != SP_JT_OBJECT)
		return SP_EVENT_NOT_OBJECT;

	sp_event_envelope(&d, 0, ev, &o);

	if (d.rc == SP_EVENT_OK)
	{
		sp_event_string(&d, o, "status", "data.object.status", ev->status,
						sizeof(ev->status));
		sp_event_string(&d, o, "currency", "data.object.currency",
						ev->currency, sizeof(ev->currency));
		sp_event_ref(&d, o, "customer", "data.object.customer", ev->customer,
					 sizeof(ev->customer));
		sp_event_metadata(&d, o, "data.object.metadata", "order_id",
						  ev->metadata_order_id, sizeof(ev->metadata_order_id));
		sp_event_metadata(&d, o, "data.object.metadata", "stripepay_payment_id",
						  ev->metadata_payment_id,
						  sizeof(ev->metadata_payment_id));
		sp_event_metadata(&d, o, "data.object.metadata", "stripepay_refund_id",
						  ev->metadata_refund_id, sizeof(ev->metadata_refund_id));
		sp_event_metadata(&d, o, "data.object.metadata", "stripepay_refund_key",
						  ev->metadata_refund_key, sizeof(ev->metadata_refund_key));
		sp_event_metadata(&d, o, "data.object.metadata",
						  "stripepay_recurring_payment_id",
						  ev->metadata_recurring_payment_id,
						  sizeof(ev->metadata_recurring_payment_id));

		if (strcmp(ev->object_type, "checkout.session") == 0)
			sp_event_checkout_session(&d, o, ev);
		else if (strcmp(ev->object_type, "payment_intent") == 0)
			sp_event_payment_intent(&d, o, ev);
		else if (strcmp(ev->object_type, "charge") == 0)
			sp_event_charge(&d, o, ev);
		else if (strcmp(ev->object_type, "refund") == 0)
			sp_event_refund(&d, o, ev);
		else if (strcmp(ev->object_type, "subscription") == 0)
		{
			int			previous = sp_event_object(&d, sp_event_member(&d, 0, "data"),
												   "previous_attributes",
												   "data.previous_attributes");

			sp_event_subscription(&d, o, ev);
			sp_event_string(&d, previous, "status", "data.previous_attributes.status",
							ev->previous_status, sizeof(ev->previous_status));
			sp_event_bool(&d, previous, "cancel_at_period_end",
						  "data.previous_attributes.cancel_at_period_end",
						  &ev->previous_cancel_at_period_end,
						  &ev->has_previous_cancel_at_period_end);
			sp_event_nullable_int(&d, previous, "cancel_at", "data.previous_attributes.cancel_at",
								  &ev->previous_cancel_at, &ev->previous_cancel_at_set,
								  &ev->has_previous_cancel_at);
		}
		else if (strcmp(ev->object_type, "invoice") == 0)
			sp_event_invoice(&d, o, ev);
		else if (strcmp(ev->object_type, "invoice_payment") == 0)
			sp_event_invoice_payment(&d, o, ev);
	}

	if (d.rc != SP_EVENT_OK)
	{
		memset(ev, 0, sizeof(*ev));
		snprintf(ev->error_path, sizeof(ev->error_path), "%s", d.path);
	}
	return d.rc;
}

SpEventResult
sp_event_decode(const char *json, size_t len, SpEvent *ev)
{
	SpJtToken	stack_tokens[SP_EVENT_STACK_TOKENS];
	SpJtToken  *tokens = stack_tokens;
	SpJtDoc		doc;
	SpEventResult r;
	int			rc;

	if (ev == NULL)
		return SP_EVENT_NO_MEMORY;
	memset(ev, 0, sizeof(*ev));

	/*
	 * Deeper than sp_json's limit: refusing a genuine event for its depth
	 * would make Stripe retry it until it gives up.
	 */
	rc = sp_jt_parse(json, len, SP_EVENT_MAX_DEPTH, tokens, SP_EVENT_STACK_TOKENS, &doc);
	if (rc == SP_JT_FULL)
	{
		size_t		cap = SP_JT_TOKENS_FOR(len);

		tokens = malloc(cap * sizeof(SpJtToken));
		if (tokens == NULL)
			return SP_EVENT_NO_MEMORY;
		rc = sp_jt_parse(json, len, SP_EVENT_MAX_DEPTH, tokens, cap, &doc);
	}
	r = rc == SP_JT_OK ? sp_event_read(&doc, ev) : SP_EVENT_NOT_JSON;
	if (tokens != stack_tokens)
		free(tokens);
	return r;
}

const char *
sp_event_result_name(SpEventResult r)
{
	switch (r)
	{
		case SP_EVENT_OK:
			return "ok";
		case SP_EVENT_NOT_JSON:
			return "not_json";
		case SP_EVENT_NOT_OBJECT:
			return "not_object";
		case SP_EVENT_NO_ID:
			return "no_id";
		case SP_EVENT_NO_TYPE:
			return "no_type";
		case SP_EVENT_NO_CREATED:
			return "no_created";
		case SP_EVENT_NO_LIVEMODE:
			return "no_livemode";
		case SP_EVENT_NO_DATA:
			return "no_data";
		case SP_EVENT_NO_OBJECT:
			return "no_object";
		case SP_EVENT_NO_OBJECT_TYPE:
			return "no_object_type";
		case SP_EVENT_INVALID_FIELD:
			return "invalid_field";
		case SP_EVENT_TOO_LONG:
			return "too_long";
		case SP_EVENT_NO_MEMORY:
			return "no_memory";
	}
	return "unknown";
}
