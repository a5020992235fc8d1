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
 * if it aborts); nothing when stripepay.notify is off.  The outbox row is
 * written as run_as (sp_stmt.h).
 */
extern void sp_notify_send(const char *channel, const char *payload, Oid run_as);

#endif							/* SP_NOTIFY_H */
