/*-------------------------------------------------------------------------
 *
 * sp_webhook.h
 *		What the webhook ingest shares with sync_events and refresh_payment,
 *		which apply events and objects fetched from Stripe.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_WEBHOOK_H
#define SP_WEBHOOK_H

#include "postgres.h"

#include "pure/sp_event.h"
#include "sp_compat.h"

/* the relay's largest --max-body: Stripe's events are a few kilobytes */
#define SP_WEBHOOK_MAX_BODY (64 * 1024 * 1024)

/* ERROR (SP027, SP028) for a payload the decoder refused. */
pg_noreturn extern void sp_raise_event_error(SpEventResult rc, const SpEvent *ev);

/* ERROR (SP029) for an event of the other mode than key_mode's (NULL: none). */
extern void sp_check_livemode(const SpEvent *ev, const char *key_mode);

#endif							/* SP_WEBHOOK_H */
