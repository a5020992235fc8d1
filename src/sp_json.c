/*-------------------------------------------------------------------------
 *
 * sp_json.c
 *		json-c decoding that leaves nothing allocated behind
 *
 * Every exported function owns its json-c objects from parse to
 * json_object_put() within a single call and never calls anything that can
 * longjmp, so a backend caller cannot leak them whatever happens after we
 * return.  Keep it that way: no callbacks, no json-c types in the header.
 *
 * json-c is laxer than RFC 8259 even with JSON_TOKENER_STRICT: it accepts
 * NaN, Infinity and "1." as numbers and single-quoted strings, and clamps
 * integers beyond 64 bits.  Values we hand out are checked for the numeric
 * cases (see sp_json_value_exact); single quotes remain accepted, harmlessly.
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
#error "stripepay needs json-c 0.15 or later"
#endif

/* Object keys longer than this in a path are treated as not found. */
#define SP_JSON_MAX_SEGMENT 255

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

/*
 * Copies src[0..len) into dst[size] with a NUL, cutting at a UTF-8
 * character boundary when it does not fit.  json-c validated the UTF-8, so
 * backing up over continuation bytes lands on the start of the character
 * that would have been split.
 */
static void
sp_copy_utf8(char *dst, size_t size, const char *src, size_t len)
{
	size_t		n = len;

	if (size == 0)
		return;
	if (n > size - 1)
	{
		n = size - 1;
		while (n > 0 && (((unsigned char) src[n]) & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void
sp_error_field(struct json_object *error, const char *name, char *dst,
			   size_t size)
{
	struct json_object *val;
	const char *s;
	const char *nul;
	size_t		len;

	if (!json_object_object_get_ex(error, name, &val) ||
		!json_object_is_type(val, json_type_string))
		return;
	s = json_object_get_string(val);
	len = (size_t) json_object_get_string_len(val);

	/* the caller gets a C string: stop at an embedded U+0000 */
	nul = memchr(s, '\0', len);
	if (nul != NULL)
		len = (size_t) (nul - s);
	sp_copy_utf8(dst, size, s, len);
}

bool
sp_stripe_error_parse(const char *body, size_t len, SpStripeError *err)
{
	struct json_object *root;
	struct json_object *error;
	bool		ok = false;

	if (err == NULL)
		return false;
	memset(err, 0, sizeof(*err));

	if (sp_json_parse(body, len, SP_JSON_MAX_DEPTH, &root) != SP_JSON_OK)
		return false;

	if (json_object_is_type(root, json_type_object) &&
		json_object_object_get_ex(root, "error", &error) &&
		json_object_is_type(error, json_type_object))
	{
		sp_error_field(error, "type", err->type, sizeof(err->type));
		sp_error_field(error, "code", err->code, sizeof(err->code));
		sp_error_field(error, "decline_code", err->decline_code,
					   sizeof(err->decline_code));
		sp_error_field(error, "param", err->param, sizeof(err->param));
		sp_error_field(error, "message", err->message, sizeof(err->message));
		sp_error_field(error, "doc_url", err->doc_url, sizeof(err->doc_url));
		err->parsed = true;
		ok = true;
	}

	json_object_put(root);
	return ok;
}

/* A path segment used on an array: plain decimal digits, no sign. */
static bool
sp_json_index(const char *seg, size_t len, size_t *index)
{
	size_t		value = 0;
	size_t		i;

	if (len == 0 || len > 9)
		return false;
	for (i = 0; i < len; i++)
	{
		if (seg[i] < '0' || seg[i] > '9')
			return false;
		value = value * 10 + (size_t) (seg[i] - '0');
	}
	*index = value;
	return true;
}

static struct json_object *
sp_json_lookup(struct json_object *root, const char *path)
{
	struct json_object *cur = root;
	const char *seg = path;

	for (;;)
	{
		const char *dot = strchr(seg, '.');
		size_t		seglen = dot != NULL ? (size_t) (dot - seg) : strlen(seg);

		if (json_object_is_type(cur, json_type_object))
		{
			char		key[SP_JSON_MAX_SEGMENT + 1];

			if (seglen > SP_JSON_MAX_SEGMENT)
				return NULL;
			memcpy(key, seg, seglen);
			key[seglen] = '\0';
			if (!json_object_object_get_ex(cur, key, &cur))
				return NULL;
		}
		else if (json_object_is_type(cur, json_type_array))
		{
			size_t		index;

			if (!sp_json_index(seg, seglen, &index) ||
				index >= json_object_array_length(cur))
				return NULL;
			cur = json_object_array_get_idx(cur, index);
		}
		else
			return NULL;		/* a scalar or null has no members */

		if (dot == NULL)
			return cur;
		seg = dot + 1;
	}
}

static bool
sp_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * RFC 8259's number grammar.  json-c keeps a double's source text but also
 * accepts things JSON does not: NaN, Infinity, "1.".
 */
static bool
sp_json_number_ok(const char *p)
{
	if (p == NULL)
		return false;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (sp_is_digit(*p))
			p++;
	else
		return false;
	if (*p == '.')
	{
		p++;
		if (!sp_is_digit(*p))
			return false;
		while (sp_is_digit(*p))
			p++;
	}
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!sp_is_digit(*p))
			return false;
		while (sp_is_digit(*p))
			p++;
	}
	return *p == '\0';
}

/*
 * False if the value, or anything inside it, would come out different from
 * the input: an integer json-c clamped to its 64-bit bounds, or a number
 * such as NaN that no JSON consumer (jsonb included) would accept.
 * Recursion is bounded by the tokener's depth limit.
 */
static bool
sp_json_value_exact(struct json_object *obj)
{
	switch (json_object_get_type(obj))
	{
		case json_type_int:
			return json_object_get_int64(obj) != INT64_MIN &&
				json_object_get_uint64(obj) != UINT64_MAX;
		case json_type_double:
			return sp_json_number_ok(json_object_to_json_string(obj));
		case json_type_array:
			{
				size_t		n = json_object_array_length(obj);
				size_t		i;

				for (i = 0; i < n; i++)
					if (!sp_json_value_exact(json_object_array_get_idx(obj, i)))
						return false;
				return true;
			}
		case json_type_object:
			{
				struct json_object_iterator it = json_object_iter_begin(obj);
				struct json_object_iterator end = json_object_iter_end(obj);

				while (!json_object_iter_equal(&it, &end))
				{
					if (!sp_json_value_exact(json_object_iter_peek_value(&it)))
						return false;
					json_object_iter_next(&it);
				}
				return true;
			}
		case json_type_null:
		case json_type_boolean:
		case json_type_string:
			return true;
	}
	return true;
}

/*
 * Text of one selected value, borrowed from json-c (valid until the root is
 * released).  *text = NULL for JSON null.
 */
static int
sp_json_value_text(struct json_object *obj, const char **text, size_t *len)
{
	*text = NULL;
	*len = 0;

	switch (json_object_get_type(obj))
	{
		case json_type_null:
			return SP_JSON_OK;
		case json_type_string:
			*text = json_object_get_string(obj);
			*len = (size_t) json_object_get_string_len(obj);
			/* PostgreSQL text cannot hold NUL; truncating would lie */
			if (memchr(*text, '\0', *len) != NULL)
			{
				*text = NULL;
				*len = 0;
				return SP_JSON_INVALID;
			}
			return SP_JSON_OK;
		case json_type_boolean:
			*text = json_object_get_boolean(obj) ? "true" : "false";
			*len = strlen(*text);
			return SP_JSON_OK;
		case json_type_int:
		case json_type_double:
		case json_type_array:
		case json_type_object:
			if (!sp_json_value_exact(obj))
				return SP_JSON_INVALID;

			/*
			 * Doubles keep their source text; integers print the same digits
			 * back (-0 becomes 0).
			 */
			*text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
												   JSON_C_TO_STRING_NOSLASHESCAPE);
			if (*text == NULL)
				return SP_JSON_NO_MEMORY;
			*len = strlen(*text);
			return SP_JSON_OK;
	}
	return SP_JSON_INVALID;
}

/* Copies len bytes and a NUL into the arena; NULL when it is full. */
static const char *
sp_arena_copy(char *arena, size_t arena_size, size_t *used, const char *text, size_t len)
{
	char	   *dst;

	if (arena == NULL || text == NULL || len >= arena_size - *used)
		return NULL;
	dst = arena + *used;
	memcpy(dst, text, len);
	dst[len] = '\0';
	*used += len + 1;
	return dst;
}

int
sp_json_extract(const char *json, size_t len, const char *const *paths,
				int npaths, char *arena, size_t arena_size,
				const char **values)
{
	struct json_object *root;
	size_t		used = 0;
	int			rc;
	int			i;

	if (npaths < 0 || (npaths > 0 && (paths == NULL || values == NULL)))
		return SP_JSON_INVALID;
	for (i = 0; i < npaths; i++)
		values[i] = NULL;

	rc = sp_json_parse(json, len, SP_JSON_MAX_DEPTH, &root);
	if (rc != SP_JSON_OK)
		return rc;

	for (i = 0; i < npaths; i++)
	{
		struct json_object *obj;
		const char *text;
		size_t		tlen;

		if (paths[i] == NULL)
			continue;
		obj = sp_json_lookup(root, paths[i]);
		rc = sp_json_value_text(obj, &text, &tlen);
		if (rc != SP_JSON_OK)
			break;
		if (text == NULL)
			continue;
		values[i] = sp_arena_copy(arena, arena_size, &used, text, tlen);
		if (values[i] == NULL)
		{
			rc = SP_JSON_ARENA_FULL;
			break;
		}
	}

	json_object_put(root);

	if (rc != SP_JSON_OK)
		for (i = 0; i < npaths; i++)
			values[i] = NULL;
	return rc;
}

int
sp_json_list(const char *json, size_t len, SpJsonItem *items, int max_items,
			 bool *has_more, char *arena, size_t arena_size)
{
	struct json_object *root;
	struct json_object *data;
	struct json_object *more;
	size_t		used = 0;
	size_t		n;
	size_t		i;
	int			rc;

	*has_more = false;
	if (items == NULL || max_items < 0)
		return SP_JSON_INVALID;
	rc = sp_json_parse(json, len, SP_JSON_MAX_DEPTH, &root);
	if (rc != SP_JSON_OK)
		return rc;

	if (!json_object_is_type(root, json_type_object) ||
		!json_object_object_get_ex(root, "data", &data) ||
		!json_object_is_type(data, json_type_array) ||
		(json_object_object_get_ex(root, "has_more", &more) &&
		 !json_object_is_type(more, json_type_boolean)) ||
		json_object_array_length(data) > (size_t) max_items)
	{
		json_object_put(root);
		return SP_JSON_INVALID;
	}
	*has_more = json_object_object_get_ex(root, "has_more", &more) &&
		json_object_get_boolean(more);

	n = json_object_array_length(data);
	for (i = 0; i < n && rc == SP_JSON_OK; i++)
	{
		struct json_object *item = json_object_array_get_idx(data, i);
		struct json_object *id;
		const char *text;
		size_t		tlen;

		if (!json_object_is_type(item, json_type_object) ||
			!json_object_object_get_ex(item, "id", &id) ||
			!json_object_is_type(id, json_type_string))
		{
			rc = SP_JSON_INVALID;
			break;
		}
		rc = sp_json_value_text(id, &text, &tlen);
		if (rc != SP_JSON_OK)
			break;
		items[i].id = sp_arena_copy(arena, arena_size, &used, text, tlen);
		rc = sp_json_value_text(item, &text, &tlen);
		if (rc != SP_JSON_OK)
			break;
		items[i].json = sp_arena_copy(arena, arena_size, &used, text, tlen);
		items[i].json_len = tlen;
		if (items[i].id == NULL || items[i].json == NULL)
			rc = SP_JSON_ARENA_FULL;
	}
	json_object_put(root);

	if (rc != SP_JSON_OK)
	{
		*has_more = false;
		return rc;
	}
	return (int) n;
}
