/*-------------------------------------------------------------------------
 *
 * sp_webhook.h
 *		One path for every event that reaches the database, whether Stripe
 *		delivered it (a signed webhook) or it was fetched from Stripe's API.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_WEBHOOK_H
#define SP_WEBHOOK_H

#include "postgres.h"

#include "sp_event.h"

/*
 * Decodes, records and applies one authentic event once; true when it was
 * already processed.  Caller is connected to SPI.  source is "webhook" or
 * "sync"; key_mode is "live", "test", or NULL to skip the livemode check.
 * *ev_out is the decoded event (its id and type).
 */
extern bool sp_ingest_event(const char *payload, size_t len, const char *endpoint,
							const char *source, const char *key_mode, SpEvent **ev_out);

#endif							/* SP_WEBHOOK_H */
