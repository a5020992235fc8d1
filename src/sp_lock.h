/*-------------------------------------------------------------------------
 *
 * sp_lock.h
 *		The extension's own locks: advisory lock tags no SQL function can
 *		take, so that no role can hold them to stall a payment, a sync or an
 *		ingest.
 *
 * pg_advisory_lock() and its kin set the tag's last field to 1 or 2;
 * these use kinds of their own ("SR", "SS", ...), as the notifier's lock
 * does.  All are transaction locks, released at commit or abort.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_LOCK_H
#define SP_LOCK_H

#include "postgres.h"

typedef enum SpLockKind
{
	SP_LOCK_PAY = 0x5352,		/* one order's stripe_pay calls take turns */
	SP_LOCK_SUBSCRIBE = 0x5353, /* one order's stripe_subscribe calls */
	SP_LOCK_SYNC = 0x5354,		/* one sync_events at a time */
	SP_LOCK_WAIT = 0x5355,		/* a payment learning a Stripe id, and an
								 * event that would wait for it */
	SP_LOCK_PRUNE = 0x5356		/* one prune_events at a time */
} SpLockKind;

/* Takes the lock of kind for key, waiting for it (a cancel ends the wait). */
extern void sp_lock(SpLockKind kind, const char *key);
extern void sp_lock_int(SpLockKind kind, int64 key);

/*
 * The SP_LOCK_WAIT locks of several Stripe ids, in one order (byte order,
 * each once, empty and NULL ones skipped), so that no two sessions wait on
 * each other.
 */
extern void sp_lock_ids(const char *const *ids, int nids);

#endif							/* SP_LOCK_H */
