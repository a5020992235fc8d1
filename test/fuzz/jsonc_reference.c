/*-------------------------------------------------------------------------
 *
 * jsonc_reference.c
 *		json-c's strict parse, the reference fuzz_jtok checks sp_jtok
 *		against.  Test code only: the extension reads JSON with sp_jtok
 *		alone.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_json.h"
#include "sp_jsonc.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

/* UTF-8 validation and json_tokener_get_parse_end() arrived in 0.15 */
#ifndef JSON_TOKENER_VALIDATE_UTF8
#error "the fuzz targets need json-c 0.15 or later"
#endif

int
sp_json_parse(const char *json, size_t len, int max_depth, struct json_object **out)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t		end;
	size_t		i;

	*out = NULL;
	if (json == NULL || len >= (size_t) INT_MAX)
		return SP_JSON_INVALID;

	tok = json_tokener_new_ex(max_depth);
	if (tok == NULL)
		return SP_JSON_NO_MEMORY;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);

	obj = json_tokener_parse_ex(tok, json, (int) len);
	jerr = json_tokener_get_error(tok);
	if (obj == NULL && jerr == json_tokener_continue)
	{
		/*
		 * Either the input is truncated, or it is a bare scalar such as 123
		 * that has no closing token.  A NUL tells json-c the input is over:
		 * the scalar completes, the truncated text fails.
		 */
		obj = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		end = len;
	}
	else
		end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);

	/* a JSON null parses to NULL with success */
	if (jerr != json_tokener_success)
	{
		json_object_put(obj);
		return SP_JSON_INVALID;
	}

	/* strict mode refuses trailing text itself, but stops at a NUL byte */
	for (i = end; i < len; i++)
	{
		char		c = json[i];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
		{
			json_object_put(obj);
			return SP_JSON_INVALID;
		}
	}

	*out = obj;
	return SP_JSON_OK;
}

