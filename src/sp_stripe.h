/*-------------------------------------------------------------------------
 *
 * sp_stripe.h
 *		Stripe API calls: idempotency keys, and Stripe's errors turned into
 *		ERRORs with their own SQLSTATEs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_STRIPE_H
#define SP_STRIPE_H

#include "sp_form.h"
#include "sp_http.h"

/*
 * Sends a request and returns the 2xx response body; any other outcome is
 * an ERROR carrying Stripe's error type, code, message and Request-Id.
 * form may be NULL (GET, DELETE).
 */
extern char *sp_stripe_call(const char *method, const char *path, const SpForm *form,
							const char *api_key, const char *idempotency_key,
							SpHttpResponse *resp);

/*
 * An Idempotency-Key for one logical operation on one of our rows.  It names
 * the cluster and database, so two databases sharing a Stripe account (or a
 * restored copy of one) never collide on "pay 1".
 */
extern char *sp_idempotency_key(const char *operation, int64 id);

/* Reads scalar fields of a 2xx JSON body; ERROR if it is not JSON. */
extern void sp_stripe_fields(const char *body, size_t len, const char *what,
							 const char *const *paths, int npaths, const char **values);

#endif							/* SP_STRIPE_H */
