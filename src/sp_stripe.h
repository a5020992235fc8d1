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
#include "sp_json.h"

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
extern void sp_stripe_raise_error(const char *method, const char *path,
								  const SpHttpResponse *resp) pg_attribute_noreturn();

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

#endif							/* SP_STRIPE_H */
