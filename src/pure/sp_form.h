/*-------------------------------------------------------------------------
 *
 * sp_form.h
 *		application/x-www-form-urlencoded bodies with Stripe's bracketed keys
 *
 * Stripe takes POST parameters as a form body whose keys spell nesting
 * with brackets: metadata[order_id]=42, line_items[0][quantity]=1,
 * expand[]=x.  This module builds such bodies and decodes them again (for
 * tests, fuzzing and the webhook relay).
 *
 * Pure C: no PostgreSQL headers, memory comes from malloc.  A caller
 * inside the backend must make sure sp_form_free() runs on every path,
 * including ERROR (a memory-context reset callback is the usual owner).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_FORM_H
#define SP_FORM_H

#include <stdbool.h>
#include <stddef.h>

/*
 * A form body under construction.  data is malloc-owned and NUL-terminated
 * whenever it is non-NULL; len excludes the NUL.  Once failed is set (out of
 * memory, or a NULL argument) every later add is a no-op returning false, so
 * callers may add all parameters and test the outcome once: a body missing
 * a parameter must never be sent.
 */
typedef struct SpForm
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;
} SpForm;

extern void sp_form_init(SpForm *form);

/* Appends key=value, preceded by '&' unless it is the first pair. */
extern bool sp_form_add(SpForm *form, const char *key, const char *value);

/* As sp_form_add, but encodes exactly value_len bytes (NULs included). */
extern bool sp_form_add_len(SpForm *form, const char *key,
							const char *value, size_t value_len);

extern bool sp_form_add_int(SpForm *form, const char *key, long long value);

/* Idempotent; safe on a zeroed struct.  Leaves the form re-initialised. */
extern void sp_form_free(SpForm *form);

/*
 * Percent-encodes len bytes of src as a form value into dst, which must hold
 * 3 * len bytes.  Returns the number of bytes written; no NUL is added.
 */
extern size_t sp_form_escape(const char *src, size_t len, char *dst);

/*
 * Called once per pair with the percent-decoded key and value.  Both are
 * NUL-terminated for convenience but may contain NUL bytes (from %00), so
 * trust the lengths.  They live in a scratch buffer owned by the decoder and
 * are valid only during the call.
 */
typedef void (*SpFormDecodeCallback) (const char *key, size_t key_len,
									  const char *value, size_t value_len,
									  void *arg);

/*
 * Decodes a form body.  Pairs are separated by '&'; a pair without '=' has
 * an empty value; empty pairs ("a=1&&b=2") are skipped; '+' decodes to a
 * space.  The whole body is validated before the first callback, so a
 * malformed body (a '%' not followed by two hex digits) delivers nothing.
 *
 * Returns 0 on success, -1 on malformed input, -2 if the scratch buffer
 * could not be allocated.
 */
extern int	sp_form_decode(const char *body, size_t len,
						   SpFormDecodeCallback cb, void *arg);

#endif							/* SP_FORM_H */
