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

#include "sp_form.h"

/* A form freed with the current memory context, ERROR or not. */
extern SpForm *sp_form_create(void);

/* ERROR (22004) when argument argno is NULL. */
extern void sp_require_arg(FunctionCallInfo fcinfo, int argno, const char *name);

/* ERROR (25000) unless the transaction reads each statement's own snapshot. */
extern void sp_require_read_committed(const char *function);

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
 * mark_closed ($1 its id), so that the order never has two: a completed one
 * is reported, unless the row says its payment failed (a completed Checkout
 * whose async payment failed can be paid no more).
 */
extern void sp_close_open_ways_to_pay(const char *api_key, int64 order_id, const char *select_open,
									  const char *mark_closed, SpCompletedReport completed);

/* metadata[order_id] and metadata[<id_key>] under prefix */
extern void sp_form_add_ids(SpForm *form, const char *prefix, int64 order_id,
							const char *id_key, int64 id);

/* ERROR (22023) unless url is an absolute http(s) URL; hides the statement. */
extern void sp_check_url(const char *name, const char *url);

/* "live" or "test": the mode of a Stripe API key. */
extern const char *sp_key_mode(const char *key);

/*
 * ERROR (42501) unless the caller is created_by (the role that made the row,
 * which `did`), a member of stripepay_admin, or a superuser.  action and id
 * name the row: "change subscription", 3.
 */
extern void sp_check_owner(const char *created_by, const char *did,
						   const char *action, int64 id);

#endif							/* SP_API_H */
