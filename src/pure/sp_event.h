/*-------------------------------------------------------------------------
 *
 * sp_event.h
 *		Decode one Stripe webhook event into a fixed, normalized struct
 *
 * An event's data.object is rendered in the API version of the endpoint
 * that received it, and Stripe has moved the fields stripepay acts on
 * between versions: a subscription's current period went onto its items
 * (2025-03-31), an invoice's subscription under parent.subscription_details
 * (2025-03-31), a PaymentIntent's charges list became latest_charge and a
 * charge's refunds list disappeared (2022-11-15).  sp_event_decode() reads
 * every known shape and hands out one set of fields, so the code above it
 * never looks at an API version.
 *
 * Pure C over sp_jtok: no PostgreSQL headers, nothing that can longjmp,
 * and nothing allocated survives a call.  Results go into the caller's SpEvent,
 * which is large (about 25 kB): a backend caller should palloc it.
 *
 * Field rules:
 *	- Absent and JSON null read the same: "" for strings, 0 and has_x false
 *	  for numbers and booleans.
 *	- A field we read that has the wrong JSON type, a negative or
 *	  fractional number where an integer is expected, or a number beyond 64
 *	  bits fails the whole decode with SP_EVENT_INVALID_FIELD: garbage
 *	  never becomes 0 or "" silently.  A \u0000 anywhere is SP_EVENT_NOT_JSON
 *	  (jsonb could not store the payload).
 *	- A string that does not fit its buffer fails with SP_EVENT_TOO_LONG.
 *	  The buffers hold the longest value Stripe allows (ids 255 characters,
 *	  metadata values 500, client_reference_id 200, at 4 bytes each where a
 *	  value may be UTF-8), so only a forged event can hit it.  The one
 *	  exception is last_payment_error_message, human text that is cut at a
 *	  UTF-8 character boundary.
 *	- References to other objects (customer, payment_intent, charge,
 *	  subscription, price) may be an id string or the expanded object; both
 *	  give the id.
 *	- Fields of a type-specific section are read only for that object
 *	  type; for other types they stay empty.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_EVENT_H
#define SP_EVENT_H

#include <stdbool.h>
#include <stddef.h>

#define SP_EVENT_ID_SIZE		256 /* Stripe ids: at most 255 characters */
#define SP_EVENT_TYPE_SIZE		128 /* "customer.subscription.updated" */
#define SP_EVENT_WORD_SIZE		128 /* enum-like: status, codes, reasons */
#define SP_EVENT_CURRENCY_SIZE	16
#define SP_EVENT_TEXT_SIZE		2001	/* metadata values, references */
#define SP_EVENT_MESSAGE_SIZE	1024	/* cut, not refused */
#define SP_EVENT_PATH_SIZE		96
#define SP_EVENT_MAX_REFUNDS	16

/* Inputs nested deeper than this are not JSON to us (Stripe's reach ~10) */
#define SP_EVENT_MAX_DEPTH		64

/* 9999-12-31 23:59:59 UTC: any later "created" is not a real event's */
#define SP_EVENT_MAX_CREATED 253402300799LL

typedef enum SpEventResult
{
	SP_EVENT_OK = 0,
	SP_EVENT_NOT_JSON,			/* not one valid JSON text, invalid UTF-8,
								 * what jsonb refuses (sp_jtok.h), nested
								 * deeper than SP_EVENT_MAX_DEPTH */
	SP_EVENT_NOT_OBJECT,		/* valid JSON, but not an object */
	SP_EVENT_NO_ID,				/* "id" missing, not a string, not "evt_..." */
	SP_EVENT_NO_TYPE,			/* "type" missing, not a string, or empty */
	SP_EVENT_NO_CREATED,		/* "created" missing, not an integer >= 0,
								 * or after SP_EVENT_MAX_CREATED */
	SP_EVENT_NO_LIVEMODE,		/* "livemode" missing or not a boolean */
	SP_EVENT_NO_DATA,			/* "data" missing or not an object */
	SP_EVENT_NO_OBJECT,			/* "data.object" missing or not an object */
	SP_EVENT_NO_OBJECT_TYPE,	/* "data.object.object" missing, not a
								 * string, or empty */
	SP_EVENT_INVALID_FIELD,		/* a field we read has the wrong type */
	SP_EVENT_TOO_LONG,			/* a string we read does not fit */
	SP_EVENT_NO_MEMORY			/* no memory for a very large event's tokens */
} SpEventResult;

/* One entry of a charge's embedded refunds list (API before 2022-11-15) */
typedef struct SpEventRefund
{
	char		id[SP_EVENT_ID_SIZE];
	long long	amount;
	bool		has_amount;
	char		status[SP_EVENT_WORD_SIZE];
} SpEventRefund;

typedef struct SpEvent
{
	/* the event itself */
	char		id[SP_EVENT_ID_SIZE];	/* "evt_..." */
	char		type[SP_EVENT_TYPE_SIZE];
	long long	created;
	bool		livemode;
	char		api_version[SP_EVENT_WORD_SIZE];	/* "" when null */
	char		object_type[SP_EVENT_WORD_SIZE];	/* data.object.object */
	char		object_id[SP_EVENT_ID_SIZE];	/* data.object.id; "" for
												 * objects without one */

	/* data.object, whatever its type */
	char		status[SP_EVENT_WORD_SIZE];
	char		currency[SP_EVENT_CURRENCY_SIZE];
	char		customer[SP_EVENT_ID_SIZE];

	/*
	 * metadata values of the keys order_id, stripepay_payment_id,
	 * stripepay_refund_id, stripepay_refund_key and
	 * stripepay_recurring_payment_id
	 */
	char		metadata_order_id[SP_EVENT_TEXT_SIZE];
	char		metadata_payment_id[SP_EVENT_TEXT_SIZE];
	char		metadata_refund_id[SP_EVENT_TEXT_SIZE];
	char		metadata_refund_key[SP_EVENT_TEXT_SIZE];
	char		metadata_recurring_payment_id[SP_EVENT_TEXT_SIZE];

	/*
	 * References shared by several types.  payment_intent: checkout.session,
	 * charge, refund, invoice (top level; from 2025-03-31
	 * payments.data[0].payment.payment_intent when expanded),
	 * invoice_payment (payment.payment_intent).  charge: payment_intent
	 * (latest_charge; before 2022-11-15 charges.data[0].id), refund, invoice
	 * (top level, or payments.data[0].payment.charge), invoice_payment
	 * (payment.charge).
	 * subscription: checkout.session, invoice (top level; from 2025-03-31
	 * parent.subscription_details.subscription).
	 */
	char		payment_intent[SP_EVENT_ID_SIZE];
	char		charge[SP_EVENT_ID_SIZE];
	char		subscription[SP_EVENT_ID_SIZE];
	char		invoice[SP_EVENT_ID_SIZE];	/* invoice_payment */
	bool		is_default;		/* invoice_payment */
	bool		has_is_default;

	/*
	 * amount: payment_intent, charge, refund.  The others belong to one
	 * type each: amount_total (checkout.session), amount_received
	 * (payment_intent), amount_refunded (charge), amount_paid and amount_due
	 * (invoice).
	 */
	long long	amount;
	bool		has_amount;
	long long	amount_total;
	bool		has_amount_total;
	long long	amount_received;
	bool		has_amount_received;
	long long	amount_refunded;
	bool		has_amount_refunded;
	long long	amount_paid;
	bool		has_amount_paid;
	long long	amount_due;
	bool		has_amount_due;

	/*
	 * The period paid for.  subscription: current_period_start/end, top
	 * level (before 2025-03-31) preferred over items.data[0].  invoice:
	 * lines.data[0].period.start/end (the service period being billed)
	 * preferred over top-level period_start/end (for a renewal those name
	 * the period that just ended).
	 */
	long long	period_start;
	bool		has_period_start;
	long long	period_end;
	bool		has_period_end;

	/* checkout.session */
	char		payment_status[SP_EVENT_WORD_SIZE];
	char		mode[SP_EVENT_WORD_SIZE];
	char		client_reference_id[SP_EVENT_TEXT_SIZE];
	long long	expires_at;
	bool		has_expires_at;

	/* payment_intent */
	char		last_payment_error_code[SP_EVENT_WORD_SIZE];
	char		last_payment_error_decline_code[SP_EVENT_WORD_SIZE];
	char		last_payment_error_message[SP_EVENT_MESSAGE_SIZE];
	char		cancellation_reason[SP_EVENT_WORD_SIZE];

	/* charge */
	bool		refunded;
	bool		has_refunded;
	bool		has_refunds;	/* the refunds list was embedded */
	bool		refunds_truncated;	/* more than SP_EVENT_MAX_REFUNDS, or
									 * the list's has_more was true */
	int			nrefunds;
	SpEventRefund refunds[SP_EVENT_MAX_REFUNDS];

	/* refund (status is in the common section) */
	char		reason[SP_EVENT_WORD_SIZE];
	char		failure_reason[SP_EVENT_WORD_SIZE];

	/* subscription */
	bool		cancel_at_period_end;
	bool		has_cancel_at_period_end;
	long long	canceled_at;
	bool		has_canceled_at;
	long long	cancel_at;		/* when a scheduled cancellation takes effect */
	bool		has_cancel_at;
	/*
	 * data.previous_attributes of an update: what the change was from, which
	 * orders two changes made in the same second
	 */
	char		previous_status[SP_EVENT_WORD_SIZE];
	bool		previous_cancel_at_period_end;
	bool		has_previous_cancel_at_period_end;
	bool		has_previous_cancel_at; /* the change moved cancel_at, */
	bool		previous_cancel_at_set; /* from this (false: from null) */
	long long	previous_cancel_at;
	char		price_id[SP_EVENT_ID_SIZE]; /* items.data[0].price.id, older
											 * items.data[0].plan.id */

	/*
	 * invoice.  The subscription's metadata: subscription_details.metadata
	 * (before 2025-03-31) or parent.subscription_details.metadata.
	 */
	char		billing_reason[SP_EVENT_WORD_SIZE];
	char		sub_metadata_order_id[SP_EVENT_TEXT_SIZE];
	char		sub_metadata_recurring_payment_id[SP_EVENT_TEXT_SIZE];

	/*
	 * Set on failure: the dotted path of the offending field, e.g.
	 * "data.object.amount" ("" for NOT_JSON / NOT_OBJECT).  Every other
	 * field is then zeroed.
	 */
	char		error_path[SP_EVENT_PATH_SIZE];
} SpEvent;

/*
 * Decodes json[0..len), which need not be NUL-terminated, into *ev.  The
 * text must be exactly one JSON object (surrounding whitespace allowed),
 * valid UTF-8.
 */
extern SpEventResult sp_event_decode(const char *json, size_t len,
									 SpEvent *ev);

/* "ok", "not_json", "no_id", ...: stable, for logs and SQL results */
extern const char *sp_event_result_name(SpEventResult r);

#endif							/* SP_EVENT_H */
