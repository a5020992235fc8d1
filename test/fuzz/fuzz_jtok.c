/*-------------------------------------------------------------------------
 *
 * fuzz_jtok.c
 *		libFuzzer target: sp_jtok against json-c, the parser it replaced
 *		in the event decoder
 *
 * The same bytes go to both (json-c strictly, validating UTF-8, at the same
 * depth limit).  sp_jtok may refuse what json-c takes only where jsonb
 * refuses it as well (jsonb_refuses() below).  It must never take what json-c refuses.  When both
 * take a text, every value must read the same through sp_jtok's readers:
 * types, integers, strings byte for byte, array lengths, and each member
 * json-c keeps (the last of a repeated key).
 *
 *-------------------------------------------------------------------------
 */
#include "sp_json.h"
#include "sp_jsonc.h"
#include "sp_jtok.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEPTH 64

/*
 * json-c decodes some surrogate pairs wrongly ("\ud837\ude40" gives U+FFFD,
 * not U+1DE40): where the text has a surrogate escape, strings and keys are
 * not compared, only shapes (test_jtok.c checks pairs against known UTF-8).
 */
static bool surrogates;

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
				char	   *buf;
				size_t		len;

				if (tok->type != SP_JT_STRING)
					abort();
				if (surrogates)
					break;
				buf = malloc(jlen + 1);
				if (buf == NULL)
					abort();
				/* sp_jtok refuses \u0000, so a string both take has none */
				if (sp_jt_string(doc, t, buf, jlen + 1, false, &len) != SP_JT_STRING_OK ||
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
				if (surrogates)
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

/*
 * A well-formed number's text against numeric's limits, as jsonb stores
 * it: at most 16383 digits after the point, the first significant one at
 * most 131071 places before it, an exponent short of INT_MAX / 2.
 */
static bool
number_fits_numeric(const uint8_t *s, size_t n)
{
	size_t		i = s[0] == '-' ? 1 : 0;
	size_t		int_from = i;
	long long	int_digits;
	long long	frac_digits = 0;
	long long	weight = 0;
	bool		nonzero = false;
	long long	exponent = 0;
	bool		negative = false;
	size_t		k;

	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	int_digits = (long long) (i - int_from);
	for (k = 0; k < (size_t) int_digits && !nonzero; k++)
		if (s[int_from + k] != '0')
		{
			nonzero = true;
			weight = int_digits - 1 - (long long) k;
		}
	if (i < n && s[i] == '.')
	{
		size_t		frac_from = ++i;

		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		frac_digits = (long long) (i - frac_from);
		for (k = 0; k < (size_t) frac_digits && !nonzero; k++)
			if (s[frac_from + k] != '0')
			{
				nonzero = true;
				weight = -(long long) k - 1;
			}
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E'))
	{
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			negative = s[i++] == '-';
		for (; i < n; i++)
			if (exponent < 2000000000LL)
				exponent = exponent * 10 + (s[i] - '0');
		if (exponent >= 1073741823LL)
			return false;
		if (negative)
			exponent = -exponent;
	}
	if (frac_digits - exponent > 16383)
		return false;
	return !nonzero || weight + exponent <= 131071;
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
 * \u0000, a surrogate escape (sp_jtok takes the pairs, json-c lone ones too), or
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
				if (!number_well_formed(data + i, n) || !number_fits_numeric(data + i, n))
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
			if (data[i + 1] == 'u' && i + 5 < size && memcmp(data + i + 2, "0000", 4) == 0)
				return true;	/* U+0000 */
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
	size_t		i;

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
	surrogates = false;
	for (i = 0; i + 2 < size; i++)
		if (data[i] == '\\' && data[i + 1] == 'u' && (data[i + 2] | 0x20) == 'd')
			surrogates = true;
	if (rj == SP_JSON_OK && rt == SP_JT_OK)
		same(&doc, root, 0);
	json_object_put(root);
	return 0;
}
