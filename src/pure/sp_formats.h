/*-------------------------------------------------------------------------
 *
 * sp_formats.h
 *		The shapes of what users hand stripepay: Stripe keys, signing
 *		secrets, endpoint names, price ids; and user text made fit for a
 *		one-line message.  Pure C: no Postgres headers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_FORMATS_H
#define SP_FORMATS_H

#include <stdbool.h>
#include <stddef.h>

/* an endpoint name is 1 to 64 of [A-Za-z0-9_.-], as the relay routes it */
#define SP_ENDPOINT_NAME_MAX 64

/*
 * NULL for a secret API key (sk_test_, sk_live_, rk_test_, rk_live_ and at
 * least 8 letters or digits); else a sentence saying what is wrong, which
 * never quotes the key.
 */
extern const char *sp_secret_key_problem(const char *key);

/* pk_test_ or pk_live_ and at least 8 letters or digits */
extern bool sp_publishable_key_valid(const char *key);

/* whsec_ and 16 to 249 of [A-Za-z0-9+/=_-] */
extern bool sp_webhook_secret_valid(const char *secret);

/* name[0..len) is 1 to 64 of [A-Za-z0-9_.-] */
extern bool sp_endpoint_name_valid(const char *name, size_t len);

/* price_ and 1 to 249 of [A-Za-z0-9_] */
extern bool sp_price_id_valid(const char *price_id);

/*
 * "sk_test_…1234": enough to tell keys apart, never enough to use one.
 * A key shorter than 12 characters shows as "…" alone.  dst needs 64 bytes.
 */
#define SP_MASKED_KEY_SIZE 64
extern void sp_mask_key(const char *key, char *dst, size_t size);

/*
 * Copies at most max bytes of src into dst[size] for a one-line message:
 * cut on a UTF-8 character boundary, with "…" added when cut, and every
 * control character (a newline, a tab, an escape) shown as '?'.
 */
extern void sp_one_line(char *dst, size_t size, const char *src, size_t max);

#endif							/* SP_FORMATS_H */
