/*-------------------------------------------------------------------------
 *
 * sp_apply.h
 *		The ingest's own path for one-time payment events.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_APPLY_H
#define SP_APPLY_H

#include "postgres.h"

#include "sp_event.h"

typedef enum SpApplyResult
{
	SP_APPLY_APPLIED,			/* recorded and applied */
	SP_APPLY_ALREADY_PROCESSED, /* a concurrent delivery recorded it first */
	SP_APPLY_NOT_HANDLED		/* no known payment: stripepay._ingest() must */
} SpApplyResult;

/* Whether an event is about a one-time payment (stripepay._apply_payment's). */
extern bool sp_apply_is_payment_event(const SpEvent *ev);

/*
 * Records and applies a one-time payment event for a payment the database
 * knows, holding the payment's row lock.  payload is in the server's
 * encoding.  Caller is connected to SPI and has checked that the event is
 * not recorded yet.
 */
extern SpApplyResult sp_apply_payment_event(const SpEvent *ev, const char *payload,
											const char *endpoint, const char *source);

#endif							/* SP_APPLY_H */
