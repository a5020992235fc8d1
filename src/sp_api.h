/*-------------------------------------------------------------------------
 *
 * sp_api.h
 *		Helpers shared by the SQL-callable entry points.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_API_H
#define SP_API_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/numeric.h"

#include "pure/sp_form.h"
#include "pure/sp_money.h"
#include "sp_stmt.h"

/* A form freed with the current memory context, ERROR or not. */
extern SpForm *sp_form_create(void);

/* ERROR (22004) when argument argno is NULL. */
extern void sp_require_arg(FunctionCallInfo fcinfo, int argno, const char *name);

/* ERROR (25000) unless the transaction reads each statement's own snapshot. */
extern void sp_require_read_committed(const char *function);

/* ERROR (22023) unless url is an absolute http(s) URL. */
extern void sp_check_url(const char *name, const char *url);

/* ERROR (22023) unless Stripe charges in code. */
extern const SpCurrency *sp_check_currency(const char *code);

/*
 * An amount in the smallest unit, checked against Stripe's rules; Stripe's
 * minimum applies to charges, not to refunds.
 */
extern int64 sp_check_amount(const SpCurrency *currency, Numeric amount, bool is_charge);

typedef enum SpCloseResult
{
	SP_CLOSE_CLOSED,			/* expired or canceled, now or before */
	SP_CLOSE_PAID,				/* the buyer paid, or the payment is under way */
	SP_CLOSE_COMPLETE_UNPAID	/* a Checkout completed without money: an
								 * async payment, under way or failed */
} SpCloseResult;

/*
 * Expires an open Checkout Session (or cancels a PaymentIntent, for
 * is_session false) so that it can no longer be paid, and says what became
 * of it.
 */
extern SpCloseResult sp_close_way_to_pay(const char *api_key, const char *id, bool is_session);

/* Raises the ERROR for a way to pay the buyer completed. */
typedef void (*SpCompletedReport) (int64 order_id, int64 row_id, const char *stripe_id,
								   bool is_session);

/*
 * Closes an order's open ways to pay, as select_open ($1 the order; id,
 * Stripe id, is a session, status) lists them, marking each with
 * mark_closed ($1 its id, run as run_as), so that the order never has two:
 * a completed one is reported, unless the row says its payment failed (a
 * completed Checkout whose async payment failed can be paid no more).
 */
extern void sp_close_open_ways_to_pay(const char *api_key, int64 order_id, SpStmt *select_open,
									  SpStmt *mark_closed, Oid run_as, SpCompletedReport completed);

/* metadata[order_id] and metadata[<id_key>] under prefix */
extern void sp_form_add_ids(SpForm *form, const char *prefix, int64 order_id,
							const char *id_key, int64 id);

#endif							/* SP_API_H */
