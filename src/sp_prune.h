/*-------------------------------------------------------------------------
 *
 * sp_prune.h
 *		prune_events(): how long webhook_event keeps events.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_PRUNE_H
#define SP_PRUNE_H

#include "postgres.h"

#include "datatype/timestamp.h"

/*
 * Stripe delivers an event again for 3 days and lists it in its Events API
 * for 30: a shorter window than that, plus the signature tolerance, could
 * drop an event that may still arrive, and it would then be applied again.
 */
#define SP_PRUNE_MIN_DAYS 30

/* ERROR (SP031) when window is shorter than 30 days plus the tolerance. */
extern void sp_prune_check_window(const Interval *window, const char *what);

#endif							/* SP_PRUNE_H */
