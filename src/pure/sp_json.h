/*-------------------------------------------------------------------------
 *
 * sp_json.h
 *		Read Stripe's API responses: an error body, fields at dotted paths,
 *		the items of a list.
 *
 * The callers are backend functions that may ereport() (longjmp) at any
 * point, so each function parses, copies what it needs into storage the
 * caller provides, releases everything and only then returns.  Nothing here
 * can throw, so nothing here can leak.  Parsing is sp_jtok's: strict JSON,
 * and only what jsonb could store.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_JSON_H
#define SP_JSON_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Stripe's {"error": {...}} body.  Missing or non-string fields are "".
 * Over-long fields are cut at a UTF-8 character boundary.
 */
typedef struct SpStripeError
{
	bool		parsed;
	char		type[64];
	char		code[128];
	char		decline_code[128];
	char		param[256];
	char		message[1024];
	char		doc_url[256];
} SpStripeError;

/*
 * Returns true and sets err->parsed if body is a JSON object whose "error"
 * member is an object; otherwise returns false with err->parsed false and
 * every field "".
 */
extern bool sp_stripe_error_parse(const char *body, size_t len,
								  SpStripeError *err);

#define SP_JSON_OK				0
#define SP_JSON_INVALID			(-1)	/* not one valid JSON text */
#define SP_JSON_ARENA_FULL		(-2)	/* arena_size too small */
#define SP_JSON_NO_MEMORY		(-3)	/* no memory for a large body's tokens */

/*
 * Extracts scalars at dotted paths: "id", "metadata.order_id",
 * "items.data.0.current_period_end".  A segment names an object member, or
 * on an array a decimal index.
 *
 * values[i] receives a NUL-terminated copy inside arena:
 *	- strings as-is (decoded);
 *	- numbers as their JSON text ("1700000000", "1.50");
 *	- booleans as "true" / "false";
 *	- objects and arrays as their JSON text, as it stands in the input;
 *	- NULL for JSON null, a missing member, or a NULL path.
 *
 * The input need not be NUL-terminated.  It must be exactly one JSON value
 * (surrounding whitespace allowed), valid UTF-8, nested at most 32 deep,
 * with nothing jsonb refuses (sp_jtok.h), U+0000 included.
 *
 * Returns SP_JSON_OK, or a negative SP_JSON_* code; on any error every
 * values[i] is NULL.
 */
extern int	sp_json_extract(const char *json, size_t len,
							const char *const *paths, int npaths,
							char *arena, size_t arena_size,
							const char **values);

/* One element of a Stripe list's data array. */
typedef struct SpJsonItem
{
	const char *id;				/* its "id" */
	const char *json;			/* the element's JSON text, as it stands */
	size_t		json_len;
} SpJsonItem;

/*
 * Splits a Stripe list object ({"object": "list", "data": [...],
 * "has_more": ...}) into its elements, in the order Stripe sent them.  Each
 * element must be an object with a string "id"; its JSON and id are copied
 * into arena (the input's size, and a little more, suffices).
 *
 * Returns the number of elements (0 to max_items) and sets *has_more, or a
 * negative SP_JSON_* code: SP_JSON_INVALID also when the body is not such a
 * list, an element lacks its id, or there are more than max_items elements.
 */
extern int	sp_json_list(const char *json, size_t len, SpJsonItem *items,
						 int max_items, bool *has_more,
						 char *arena, size_t arena_size);

#endif							/* SP_JSON_H */
