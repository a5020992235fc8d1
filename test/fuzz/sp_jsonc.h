/*-------------------------------------------------------------------------
 *
 * sp_jsonc.h
 *		The one JSON parser of the pure modules that use json-c directly
 *		(sp_json.c, sp_event.c).  Never include it beside Postgres headers:
 *		json-c's json_object clashes with fmgrprotos.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_JSONC_H
#define SP_JSONC_H

#include <stddef.h>

#include <json-c/json.h>

/* json-c's own default nesting limit */
#define SP_JSON_MAX_DEPTH 32

/*
 * Parses exactly one JSON value from json[0..len), strictly (valid UTF-8, no
 * trailing text), nested at most max_depth deep.  On success *out is the
 * value, which is NULL for a JSON null; the caller must json_object_put()
 * it.  Returns SP_JSON_OK, SP_JSON_INVALID or SP_JSON_NO_MEMORY.
 */
extern int	sp_json_parse(const char *json, size_t len, int max_depth,
						  struct json_object **out);

#endif							/* SP_JSONC_H */
