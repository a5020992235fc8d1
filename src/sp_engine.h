/*-------------------------------------------------------------------------
 *
 * sp_engine.h
 *		The event engine: what a Stripe event does to stripepay's tables.
 *
 * One home for every rule of applying an event, shared by the webhook
 * ingest, sync_events (the same events, fetched), refresh_payment (an
 * object read from Stripe, applied as the event that would have brought
 * it), the subscription API functions (a change made here, applied as its
 * webhook will be) and the events that waited for a payment.  The rules
 * that need no table (which status an event brings, never regress, the
 * same-second order of subscription changes) are pure C in sp_rules.c;
 * this is where they meet the rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_ENGINE_H
#define SP_ENGINE_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "pure/sp_event.h"

/* The rows an event names, written to its webhook_event row. */
typedef struct SpLinks
{
	bool		has_order;
	int64		order_id;
	int64		payment_id;		/* 0: none (ids start at 1) */
	int64		refund_id;
	int64		recurring_payment_id;
} SpLinks;

/* One call's way of applying events. */
typedef struct SpApply
{
	Oid			run_as;			/* the role user code runs as (sp_stmt.h) */
	const char *source;			/* "webhook" or "sync" */
	const char *endpoint;		/* the webhook endpoint, or NULL */
	const char *api_key;		/* for the one read a renewal's charge may
								 * need; NULL: none is made */
	const char *key_mode;		/* "live", "test", or NULL: no check */
} SpApply;

/*
 * Records a decoded, authentic event and applies it, once: true when it
 * was recorded already (by an earlier or a concurrent delivery).
 */
extern bool sp_engine_ingest(const SpApply *ap, const SpEvent *ev, const char *payload, size_t len);

/* ---- shared by the engine's files ------------------------------------ */

/* The time of an event, as stored. */
extern TimestampTz sp_engine_event_time(const SpEvent *ev);

/* A metadata value as a row id, or false (metadata is free text). */
extern bool sp_engine_row_id(const char *value, int64 *id);

/* Links the event's row to what applying it found or made. */
extern void sp_engine_link(const SpApply *ap, const char *event_id, const SpLinks *links);

/*
 * Keeps an event until a payment learns one of ids (at most 30 days);
 * nids ids, of which NULL and empty ones are skipped.
 */
extern void sp_engine_wait(const SpApply *ap, const SpEvent *ev, const char *const *ids, int nids);

/*
 * Applies, once each and in the order Stripe made them, the events that
 * waited for one of ids, which a payment (locked by the caller) has just
 * learned.  learned_now: the payment did not have them before, so an
 * event that is starting to wait must be waited for (sp_lock_ids).
 */
extern void sp_engine_apply_waiting(const SpApply *ap, const char *const *ids, int nids,
									bool learned_now);

/* Queues a notification: ids and a status, nothing more. */
extern void sp_engine_notify(const SpApply *ap, const char *channel, const char *event_id, const char *status,
							 bool has_order, int64 order_id, const char *id_name, int64 id,
							 const char *id2_name, int64 id2);

/* ---- payments (sp_apply_payment.c) ---------------------------------- */

/* A payment row, locked. */
typedef struct SpPaymentRow
{
	int64		id;
	int64		order_id;
	char	   *status;
	bool		has_event_created;
	TimestampTz event_created;
	int64		amount;
	char	   *currency;
	char	   *payment_intent;
	char	   *charge;
	bool		had_intent;		/* before this event */
} SpPaymentRow;

/* Whether an event is about a one-time payment. */
extern bool sp_engine_is_payment_event(const SpEvent *ev);

/* Locks a payment by its id; false if there is none. */
extern bool sp_engine_lock_payment(int64 payment_id, SpPaymentRow *row);

/* Finds and locks the payment an event is about; false if none. */
extern bool sp_engine_find_payment(const SpEvent *ev, SpPaymentRow *row);

/*
 * Applies a one-time payment event; row is the locked payment, or NULL
 * when none was found (the payment is then adopted from the event, when
 * its metadata names an order).
 */
extern void sp_engine_apply_payment(const SpApply *ap, const SpEvent *ev, SpPaymentRow *row,
									SpLinks *links);

/* ---- refunds (sp_apply_refund.c) ------------------------------------ */

extern void sp_engine_apply_refunds(const SpApply *ap, const SpEvent *ev, SpLinks *links);

/* payment_record.amount_refunded = the refunds that count */
extern void sp_engine_sum_refunds(const SpApply *ap, int64 payment_id);

/* ---- subscriptions (sp_apply_subscription.c) ------------------------ */

extern void sp_engine_apply_subscription(const SpApply *ap, const SpEvent *ev, SpLinks *links);

/*
 * A change made through the API (cancel, resume): the same rules and the
 * same subscription flow as its webhook, which then finds it known.
 * cause names the function, as the flow row's event id and type.
 */
extern void sp_engine_subscription_changed(const SpApply *ap, int64 recurring_payment_id,
										   const char *status, bool has_cancel_at_period_end,
										   bool cancel_at_period_end, bool has_canceled_at,
										   TimestampTz canceled_at, bool has_cancel_at,
										   TimestampTz cancel_at, TimestampTz at, const char *cause);

/* ---- invoices (sp_apply_invoice.c) ---------------------------------- */

extern void sp_engine_apply_invoice(const SpApply *ap, const SpEvent *ev, SpLinks *links);
extern void sp_engine_apply_invoice_payment(const SpApply *ap, const SpEvent *ev, SpLinks *links);

#endif							/* SP_ENGINE_H */
