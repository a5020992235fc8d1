/*-------------------------------------------------------------------------
 *
 * sp_notify.h
 *		Notifications sent after commit by a per-database worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_NOTIFY_H
#define SP_NOTIFY_H

#include "postgres.h"

/*
 * NOTIFY channel with payload once the current transaction commits (never
 * if it aborts); nothing when stripepay.notify is off.
 */
extern void sp_notify_send(const char *channel, const char *payload);

#endif							/* SP_NOTIFY_H */
