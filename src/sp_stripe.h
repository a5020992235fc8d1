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

#include "pure/sp_event.h"
#include "sp_compat.h"
#include "pure/sp_form.h"
#include "pure/sp_json.h"
#include "sp_http.h"

/* Stripe's largest page: limit=100 */
#define SP_STRIPE_PAGE_MAX 100

/* One page of a Stripe list; items point into memory of the caller's context. */
typedef struct SpStripePage
{
	int			nitems;
	SpJsonItem	items[SP_STRIPE_PAGE_MAX];
	bool		has_more;
} SpStripePage;

/*
 * Sends a request and returns the 2xx response body; any other outcome is
 * an ERROR carrying Stripe's error type, code, message and Request-Id.
 * form may be NULL (GET, DELETE).
 */
extern char *sp_stripe_call(const char *method, const char *path, const SpForm *form,
							const char *api_key, const char *idempotency_key,
							SpHttpResponse *resp);

/*
 * Like sp_stripe_call, but a Stripe error (non-2xx) is returned, not
 * raised: true for 2xx.  Network failures still raise.
 */
extern bool sp_stripe_send(const char *method, const char *path, const SpForm *form,
						   const char *api_key, const char *idempotency_key,
						   SpHttpResponse *resp);

/* Raises the ERROR for a non-2xx response. */
pg_noreturn extern void sp_stripe_raise_error(const char *method, const char *path,
											  const SpHttpResponse *resp);

/* Whether a non-2xx response is Stripe's idempotency_error. */
extern bool sp_stripe_is_idempotency_error(const SpHttpResponse *resp);

/*
 * An Idempotency-Key for one logical operation, named by `what` (a row id,
 * or what makes the operation itself).  It names the cluster and database,
 * so two databases sharing a Stripe account (or a restored copy of one)
 * never collide on "pay 1".
 */
extern char *sp_idempotency_key(const char *operation, const char *what);

/*
 * A key for one call only, shared by its retries: for requests idempotent
 * in themselves (setting a flag, expiring a session), where a key a later
 * call could send again would replay an older answer.
 */
extern char *sp_idempotency_key_for_call(const char *operation, const char *what);

/* Reads scalar fields of a 2xx JSON body; ERROR if it is not JSON. */
extern void sp_stripe_fields(const char *body, size_t len, const char *what,
							 const char *const *paths, int npaths, const char **values);

/*
 * GETs one page of a Stripe list, path plus query (a form, or NULL), and
 * splits it into its items; any Stripe error, or a body that is not a list,
 * is an ERROR.  what names the objects for messages ("event list").
 */
extern void sp_stripe_list(const char *path, const SpForm *query, const char *api_key,
						   const char *what, SpStripePage *page);

/*
 * A Stripe object from a 2xx answer, read by the event decoder as the
 * data.object of an event in the pinned API version, so its fields read
 * exactly as a webhook's would; ERROR (SP005) if it cannot be.  key_mode
 * ("live", "test") is the event's livemode.
 */
extern SpEvent *sp_stripe_decode_object(const SpHttpResponse *resp, const char *what,
										const char *key_mode);

/* GETs one object (path) and decodes it as above. */
extern SpEvent *sp_stripe_fetch_object(const char *api_key, const char *path, const char *what,
									   const char *key_mode);

/* The latest charge of a PaymentIntent, read from Stripe; NULL if it has none. */
extern char *sp_stripe_latest_charge(const char *api_key, const char *key_mode,
									 const char *payment_intent);

#endif							/* SP_STRIPE_H */
