/*-------------------------------------------------------------------------
 *
 * sp_retry.h
 *		When and how long to wait before retrying a Stripe request: the
 *		policy of Stripe's official SDKs.  Pure C, unit-tested alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_RETRY_H
#define SP_RETRY_H

#include <stdbool.h>

#define SP_RETRY_INITIAL_MS 500
#define SP_RETRY_MAX_MS 5000
/* a longer Retry-After is not honoured: the statement would look hung */
#define SP_RETRY_AFTER_MAX_MS 60000

/*
 * status is 0 when no response arrived (connection error, timeout).
 * should_retry_header is the Stripe-Should-Retry value, or NULL.
 */
extern bool sp_retry_wanted(long status, const char *should_retry_header);

/*
 * Delay before retry number `retry` (0-based), with jitter01 a random number
 * in [0, 1) and retry_after_header the Retry-After value, or NULL.
 */
extern long sp_retry_delay_ms(int retry, double jitter01, const char *retry_after_header);

#endif							/* SP_RETRY_H */
