/*-------------------------------------------------------------------------
 *
 * sp_rules.h
 *		The never-regress rule of webhook ingestion, and which payment
 *		status each event brings.  Pure C: no Postgres headers.
 *
 * Events arrive in any order and an event's `created` has one-second
 * resolution, so a state moves only forward in its lifecycle: a terminal
 * state is never left (except for a better terminal one: money that moved
 * beats an expiry), a terminal state beats any other whatever its time,
 * and between the others the newer event wins, a tie going to the state
 * further along.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_RULES_H
#define SP_RULES_H

#include <stdbool.h>

#include "sp_event.h"

typedef enum SpStateKind
{
	SP_KIND_PAYMENT,			/* PENDING, FAILED, CANCELED, SUCCESSFUL */
	SP_KIND_REFUND,				/* PENDING, SUCCEEDED, CANCELED, FAILED */
	SP_KIND_SUBSCRIPTION,		/* Stripe's statuses, upper-cased */
	SP_KIND_UNKNOWN
} SpStateKind;

/* "payment", "refund", "subscription"; SP_KIND_UNKNOWN otherwise */
extern SpStateKind sp_state_kind(const char *name);

/* How far along its lifecycle a status is; -1 for a status not of kind. */
extern int	sp_state_rank(SpStateKind kind, const char *status);

/* Whether a status is never left for a lower-ranked one. */
extern bool sp_state_terminal(SpStateKind kind, const char *status);

/*
 * Whether an event of time new_at bringing new_status may replace the
 * current state (cur_status NULL, or has_cur_at false: no state yet).
 * A NULL new_status never moves anything; an event of unknown time
 * (has_new_at false) never wins on time alone.
 */
extern bool sp_state_advances(SpStateKind kind, const char *cur_status, bool has_cur_at,
							  long long cur_at, const char *new_status, bool has_new_at,
							  long long new_at);

/*
 * The payment status a one-time payment event brings, or NULL for an event
 * that brings none.  payment_status is the Checkout Session's.
 */
extern const char *sp_payment_target(const char *event_type, const char *payment_status);

/* Whether a payment status fires the payment actionflow. */
extern bool sp_payment_status_final(const char *status);

/*
 * A metadata value as a row id: 1 to 18 ASCII digits, nothing else
 * (metadata is free text).  Returns false for anything else.
 */
extern bool sp_parse_row_id(const char *value, long long *id);

/* What an event is about, and so which rules apply it. */
typedef enum SpEventFamily
{
	SP_FAMILY_PAYMENT,			/* a PaymentIntent, a Checkout Session in
								 * payment mode */
	SP_FAMILY_SUBSCRIPTION,		/* a Subscription, a Checkout Session in
								 * subscription mode */
	SP_FAMILY_SETUP,			/* a Checkout Session in setup mode: nothing */
	SP_FAMILY_REFUND,			/* a Refund, charge.refunded */
	SP_FAMILY_INVOICE,
	SP_FAMILY_INVOICE_PAYMENT,
	SP_FAMILY_OTHER				/* recorded and linked, nothing applied */
} SpEventFamily;

extern SpEventFamily sp_event_family(const SpEvent *ev);

/*
 * What a one-time payment event says the payment is for: a Checkout
 * Session's amount_total, a PaymentIntent's amount.  False when absent.
 */
extern bool sp_event_payment_amount(const SpEvent *ev, long long *amount);

/* Why a payment failed: the decline code, the error code, or payment_failed. */
extern const char *sp_payment_failure_code(const SpEvent *ev);

/* Three lower-case letters, as Stripe writes a currency. */
extern bool sp_currency_code_valid(const char *code);

/* A refund's status from Stripe's (pending, requires_action, succeeded, ...). */
extern const char *sp_refund_target(const char *stripe_status);

/* Whether a refund status fires the refund actionflow. */
extern bool sp_refund_status_final(const char *status);

/* A subscription status from Stripe's, upper-cased; NULL if unknown. */
extern const char *sp_subscription_status_of(const char *stripe_status);

/*
 * The status a subscription event brings: the Subscription's own, or
 * INCOMPLETE_EXPIRED for the expiry of the Checkout Session that would
 * have started it; NULL for none.
 */
extern const char *sp_subscription_target(const SpEvent *ev);

/* Stripe's cancel_at: when a scheduled cancellation takes effect, if any. */
typedef struct SpCancelAt
{
	bool		scheduled;
	long long	at;				/* Unix seconds, when scheduled */
} SpCancelAt;

/* The subscription as the last event applied left it. */
typedef struct SpSubscriptionState
{
	const char *status;
	bool		cancel_at_period_end;
	SpCancelAt	cancel_at;
	/* what the applied event changed from (its previous_attributes) */
	const char *changed_from_status;	/* NULL: not the status */
	bool		has_changed_from_cape;	/* false: not cancel_at_period_end */
	bool		changed_from_cape;
	bool		has_changed_from_cancel_at; /* false: not cancel_at */
	SpCancelAt	changed_from_cancel_at;
} SpSubscriptionState;

/* An event the never-regress rule would apply, from the same second. */
typedef struct SpSubscriptionChange
{
	const char *status;			/* what it brings */
	bool		has_cape;
	bool		cape;
	bool		has_cancel_at;	/* a Subscription always says it */
	SpCancelAt	cancel_at;
	const char *previous_status;	/* its previous_attributes: Stripe's */
	bool		has_previous_cape;	/* lower-case status, "" when absent */
	bool		previous_cape;
	bool		has_previous_cancel_at;
	SpCancelAt	previous_cancel_at;
} SpSubscriptionChange;

/*
 * Whether a change from the same second as the applied one is in fact the
 * older of the two.  created counts seconds, and a subscription can change
 * twice in one (a renewal's period, then its declined payment): of two
 * such changes, the one in the state the applied change came from is
 * older, unless it changed from the applied one's state in turn: a change
 * and its undoing (cancel, then resume) say nothing of their order, and
 * the later arrival wins.
 */
extern bool sp_subscription_change_is_older(const SpSubscriptionState *applied,
											 const SpSubscriptionChange *incoming);

/* invoice.paid of a subscription's renewal, for an amount: a new payment */
extern bool sp_invoice_is_renewal(const SpEvent *ev);

/*
 * invoice_payment.paid of an invoice, whose InvoicePayment is paid (or
 * does not say): it names the PaymentIntent and charge that paid.
 */
extern bool sp_invoice_payment_counts(const SpEvent *ev);

#endif							/* SP_RULES_H */
