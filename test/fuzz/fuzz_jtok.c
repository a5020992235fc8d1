/*-------------------------------------------------------------------------
 *
 * fuzz_jtok.c
 *		libFuzzer target: sp_jtok against json-c, the parser it replaced
 *		in the event decoder
 *
 * The same bytes go to both (json-c strictly, validating UTF-8, at the same
 * depth limit).  sp_jtok may refuse what json-c takes only where jsonb
 * refuses it as well: an unescaped control character in a string, or a
 * surrogate escape.  It must never take what json-c refuses.  When both
 * take a text, every value must read the same through sp_jtok's readers:
 * types, integers, strings byte for byte, array lengths, and each member
 * json-c keeps (the last of a repeated key).
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* memmem */
#endif
#include "sp_json.h"
#include "sp_jsonc.h"
#include "sp_jtok.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEPTH 64

/* json-c cuts keys at U+0000: members are not compared when one has it */
static bool nul_escape;

static void
same(const SpJtDoc *doc, struct json_object *j, int t)
{
	const SpJtToken *tok = &doc->tok[t];

	switch (json_object_get_type(j))
	{
		case json_type_null:
			if (tok->type != SP_JT_NULL)
				abort();
			break;
		case json_type_boolean:
			if (tok->type != (json_object_get_boolean(j) ? SP_JT_TRUE : SP_JT_FALSE))
				abort();
			break;
		case json_type_int:
		case json_type_double:
			{
				int64_t		v;
				bool		integer = json_object_is_type(j, json_type_int);

				if (tok->type != SP_JT_NUMBER || integer != ((tok->flags & SP_JT_INTEGER) != 0))
					abort();
				/* json-c clamps what does not fit; sp_jtok refuses it */
				if (sp_jt_int64(doc, t, &v) && v != json_object_get_int64(j))
					abort();
				break;
			}
		case json_type_string:
			{
				size_t		jlen = (size_t) json_object_get_string_len(j);
				char	   *buf = malloc(jlen + 1);
				size_t		len;
				SpJtStringResult r;

				if (buf == NULL)
					abort();
				r = sp_jt_string(doc, t, buf, jlen + 1, false, &len);
				if ((r != SP_JT_STRING_OK && r != SP_JT_STRING_HAS_NUL) ||
					(r == SP_JT_STRING_HAS_NUL) != (memchr(json_object_get_string(j), '\0', jlen) != NULL) ||
					len != jlen || memcmp(buf, json_object_get_string(j), jlen) != 0)
					abort();
				free(buf);
				break;
			}
		case json_type_array:
			{
				size_t		n = json_object_array_length(j);
				size_t		i;

				if (tok->type != SP_JT_ARRAY || tok->count != n)
					abort();
				for (i = 0; i < n; i++)
					same(doc, json_object_array_get_idx(j, i), sp_jt_element(doc, t, i));
				break;
			}
		case json_type_object:
			{
				struct lh_entry *e;

				if (tok->type != SP_JT_OBJECT)
					abort();
				if (nul_escape)
					break;
				for (e = json_object_get_object(j)->head; e != NULL; e = e->next)
				{
					struct json_object *val = (struct json_object *) lh_entry_v(e);
					int			m = sp_jt_member(doc, t, (const char *) lh_entry_k(e));

					if (val == NULL)
					{
						if (m != -1)
							abort();
						continue;
					}
					if (m < 0)
						abort();
					same(doc, val, m);
				}
				break;
			}
	}
}

/* RFC 3629, decoded the long way round: independent of sp_jtok's check */
static bool
utf8_well_formed(const uint8_t *s, size_t size)
{
	size_t		i = 0;

	while (i < size)
	{
		uint32_t	cp;
		size_t		n;
		size_t		k;

		if (s[i] < 0x80)
		{
			i++;
			continue;
		}
		if ((s[i] & 0xE0) == 0xC0)
			n = 2, cp = s[i] & 0x1F;
		else if ((s[i] & 0xF0) == 0xE0)
			n = 3, cp = s[i] & 0x0F;
		else if ((s[i] & 0xF8) == 0xF0)
			n = 4, cp = s[i] & 0x07;
		else
			return false;
		if (i + n > size)
			return false;
		for (k = 1; k < n; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
			(cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
			return false;
		i += n;
	}
	return true;
}

/* one number's text against RFC 8259's grammar */
static bool
number_well_formed(const uint8_t *s, size_t n)
{
	size_t		i = 0;
	size_t		d;

	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else
	{
		for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return false;
	}
	if (i < n && s[i] == '.')
	{
		for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return false;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E'))
	{
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return false;
	}
	return i == n;
}

/*
 * What jsonb refuses and json-c takes: inside a string, a control character,
 * a surrogate escape (sp_jtok takes the pairs, json-c lone ones too), or
 * ill-formed UTF-8 (json-c lets overlong forms, surrogates and code points
 * past U+10FFFF through); outside strings, a number off RFC 8259's grammar
 * (json-c takes "00e9") or a word but true, false and null (json-c takes NaN).
 */
static bool
jsonb_refuses(const uint8_t *data, size_t size)
{
	bool		in_string = false;
	size_t		i;

	if (!utf8_well_formed(data, size))
		return true;

	for (i = 0; i < size; i++)
	{
		if (!in_string)
		{
			size_t		n = 0;

			while (i + n < size && strchr("-+.0123456789eE", data[i + n]) != NULL &&
				   data[i + n] != '\0')
				n++;
			if (n > 0)
			{
				if (!number_well_formed(data + i, n))
					return true;
				i += n - 1;
				continue;
			}
			while (i + n < size && ((data[i + n] | 0x20) >= 'a' && (data[i + n] | 0x20) <= 'z'))
				n++;
			if (n > 0)
			{
				if (!((n == 4 && memcmp(data + i, "true", 4) == 0) ||
					  (n == 5 && memcmp(data + i, "false", 5) == 0) ||
					  (n == 4 && memcmp(data + i, "null", 4) == 0)))
					return true;
				i += n - 1;
				continue;
			}
			in_string = data[i] == '"';
			continue;
		}
		if (data[i] < 0x20)
			return true;
		if (data[i] == '"')
			in_string = false;
		else if (data[i] == '\\' && i + 1 < size)
		{
			if (data[i + 1] == 'u' && i + 3 < size &&
				(data[i + 2] == 'd' || data[i + 2] == 'D') && data[i + 3] != '\0' &&
				strchr("89abcdefABCDEF", data[i + 3]) != NULL)
				return true;
			i++;
		}
	}
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static SpJtToken tokens[SP_JT_TOKENS_FOR(1 << 16)];
	SpJtDoc		doc;
	struct json_object *root = NULL;
	int			rt;
	int			rj;

	if (size > (1 << 16))
		return 0;
	rt = sp_jt_parse((const char *) data, size, DEPTH, tokens, SP_JT_TOKENS_FOR(size), &doc);
	rj = sp_json_parse((const char *) data, size, DEPTH, &root);
	if (rj == SP_JSON_NO_MEMORY)
		return 0;
	if (rt == SP_JT_FULL && rj == SP_JSON_OK)
		abort();				/* SP_JT_TOKENS_FOR() suffices for valid text */
	if (rj != SP_JSON_OK && rt == SP_JT_OK)
		abort();
	if (rj == SP_JSON_OK && rt != SP_JT_OK && !jsonb_refuses(data, size))
		abort();
	nul_escape = memmem(data, size, "\\u0000", 6) != NULL;
	if (rj == SP_JSON_OK && rt == SP_JT_OK)
		same(&doc, root, 0);
	json_object_put(root);
	return 0;
}
