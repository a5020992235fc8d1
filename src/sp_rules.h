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

#endif							/* SP_RULES_H */
