/*-------------------------------------------------------------------------
 *
 * sp_jtok.c
 *		A validating JSON tokenizer that reads in place
 *
 * One loop with an explicit stack of open containers, so no input can make
 * it recurse.  Each open container's token collects its count and, when it
 * closes, the index just past its subtree.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_jtok.h"
#include "sp_hex.h"

#include <string.h>

/* the longest string jsonb stores (JENTRY_OFFLENMASK) */
#define SP_JT_MAX_STRING 0x0FFFFFFF

/* the deepest stack sp_jt_parse() keeps; max_depth is capped to it */
#define SP_JT_MAX_STACK 256

static size_t sp_jt_next_char(const unsigned char *s, size_t *i, size_t len,
							  char *ch, bool *is_nul);

typedef struct SpJtScan
{
	const unsigned char *s;
	size_t		len;
	size_t		pos;
} SpJtScan;

static void
sp_jt_skip_ws(SpJtScan *sc)
{
	while (sc->pos < sc->len &&
		   (sc->s[sc->pos] == ' ' || sc->s[sc->pos] == '\t' ||
			sc->s[sc->pos] == '\n' || sc->s[sc->pos] == '\r'))
		sc->pos++;
}

/* the 4 hex digits at s[0..4), or -1 */
static long
sp_jt_hex4(const unsigned char *s)
{
	long		v = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		int			h = sp_hex_digit(s[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/*
 * The length of the well-formed UTF-8 sequence at s[0..avail), or 0
 * (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
 */
static size_t
sp_jt_utf8(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	size_t		n;
	size_t		i;
	unsigned char lo = 0x80;
	unsigned char hi = 0xBF;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	}
	else
		return 0;
	if (avail < n)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return n;
}

/* A string from just after its opening quote; sets t's span and flags. */
static bool
sp_jt_scan_string(SpJtScan *sc, SpJtToken *t)
{
	const unsigned char *s = sc->s;
	size_t		i = sc->pos;

	t->type = SP_JT_STRING;
	t->start = (uint32_t) i;
	for (;;)
	{
		unsigned char c;

		if (i >= sc->len)
			return false;
		c = s[i];
		if (c == '"')
			break;
		if (c < 0x20)
			return false;
		if (c == '\\')
		{
			t->flags |= SP_JT_ESCAPED;
			if (i + 1 >= sc->len)
				return false;
			switch (s[i + 1])
			{
				case '"':
				case '\\':
				case '/':
				case 'b':
				case 'f':
				case 'n':
				case 'r':
				case 't':
					i += 2;
					break;
				case 'u':
					{
						long		u;

						if (sc->len - i < 6 || (u = sp_jt_hex4(s + i + 2)) < 0)
							return false;
						i += 6;
						if (u == 0)
							return false;	/* text cannot hold U+0000: jsonb refuses it */
						if (u >= 0xDC00 && u <= 0xDFFF)
							return false;	/* a low surrogate alone */
						if (u >= 0xD800 && u <= 0xDBFF)
						{
							long		low;

							if (sc->len - i < 6 || s[i] != '\\' || s[i + 1] != 'u' ||
								(low = sp_jt_hex4(s + i + 2)) < 0xDC00 || low > 0xDFFF)
								return false;
							i += 6;
						}
						break;
					}
				default:
					return false;
			}
			continue;
		}
		if (c < 0x80)
		{
			i++;
			continue;
		}
		{
			size_t		n = sp_jt_utf8(s + i, sc->len - i);

			if (n == 0)
				return false;
			i += n;
		}
	}
	t->len = (uint32_t) (i - t->start);
	if (t->len > SP_JT_MAX_STRING)
		return false;			/* jsonb: "string too long to represent" */
	sc->pos = i + 1;
	return true;
}

static bool
sp_jt_digits(SpJtScan *sc)
{
	size_t		from = sc->pos;

	while (sc->pos < sc->len && sc->s[sc->pos] >= '0' && sc->s[sc->pos] <= '9')
		sc->pos++;
	return sc->pos > from;
}

/*
 * numeric's limits (jsonb stores every number as a numeric): at most 16383
 * digits after the decimal point, the first significant digit at most
 * 131071 places before it, an exponent short of INT_MAX / 2 either way.
 */
#define SP_JT_NUMERIC_MAX_SCALE 16383
#define SP_JT_NUMERIC_MAX_WEIGHT 131071
#define SP_JT_NUMERIC_MAX_EXPONENT 1073741823

static bool
sp_jt_scan_number(SpJtScan *sc, SpJtToken *t)
{
	size_t		int_from;
	size_t		int_digits;
	size_t		frac_digits = 0;
	long long	first_weight = 0;	/* of the first nonzero digit */
	bool		nonzero = false;
	long long	exponent = 0;
	size_t		i;

	t->type = SP_JT_NUMBER;
	t->flags |= SP_JT_INTEGER;
	t->start = (uint32_t) sc->pos;
	if (sc->s[sc->pos] == '-')
		sc->pos++;
	int_from = sc->pos;
	if (sc->pos < sc->len && sc->s[sc->pos] == '0')
		sc->pos++;
	else if (!sp_jt_digits(sc))
		return false;
	int_digits = sc->pos - int_from;
	for (i = 0; i < int_digits; i++)
		if (sc->s[int_from + i] != '0')
		{
			nonzero = true;
			first_weight = (long long) (int_digits - 1 - i);
			break;
		}
	if (sc->pos < sc->len && sc->s[sc->pos] == '.')
	{
		size_t		frac_from;

		sc->pos++;
		t->flags &= (uint8_t) ~SP_JT_INTEGER;
		frac_from = sc->pos;
		if (!sp_jt_digits(sc))
			return false;
		frac_digits = sc->pos - frac_from;
		for (i = 0; !nonzero && i < frac_digits; i++)
			if (sc->s[frac_from + i] != '0')
			{
				nonzero = true;
				first_weight = -(long long) (i + 1);
			}
	}
	if (sc->pos < sc->len && (sc->s[sc->pos] == 'e' || sc->s[sc->pos] == 'E'))
	{
		bool		negative = false;

		sc->pos++;
		t->flags &= (uint8_t) ~SP_JT_INTEGER;
		if (sc->pos < sc->len && (sc->s[sc->pos] == '+' || sc->s[sc->pos] == '-'))
			negative = sc->s[sc->pos++] == '-';
		if (sc->pos >= sc->len || sc->s[sc->pos] < '0' || sc->s[sc->pos] > '9')
			return false;
		while (sc->pos < sc->len && sc->s[sc->pos] >= '0' && sc->s[sc->pos] <= '9')
		{
			if (exponent < SP_JT_NUMERIC_MAX_EXPONENT)
				exponent = exponent * 10 + (sc->s[sc->pos] - '0');
			sc->pos++;
		}
		if (exponent >= SP_JT_NUMERIC_MAX_EXPONENT)
			return false;
		if (negative)
			exponent = -exponent;
	}
	if ((long long) frac_digits - exponent > SP_JT_NUMERIC_MAX_SCALE)
		return false;
	if (nonzero && first_weight + exponent > SP_JT_NUMERIC_MAX_WEIGHT)
		return false;
	t->len = (uint32_t) (sc->pos - t->start);
	return true;
}

static bool
sp_jt_scan_literal(SpJtScan *sc, const char *word, SpJtType type, SpJtToken *t)
{
	size_t		n = strlen(word);

	if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, word, n) != 0)
		return false;
	t->type = (uint8_t) type;
	t->start = (uint32_t) sc->pos;
	t->len = (uint32_t) n;
	sc->pos += n;
	return true;
}

/* A member's key and its colon, into tok[*n]; leaves sc at the value. */
static int
sp_jt_scan_key(SpJtScan *sc, SpJtToken *tok, size_t cap, size_t *n)
{
	if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
		return SP_JT_INVALID;
	if (*n >= cap)
		return SP_JT_FULL;
	memset(&tok[*n], 0, sizeof(tok[*n]));
	sc->pos++;
	if (!sp_jt_scan_string(sc, &tok[*n]))
		return SP_JT_INVALID;
	tok[*n].next = (uint32_t) (*n + 1);
	(*n)++;
	sp_jt_skip_ws(sc);
	if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
		return SP_JT_INVALID;
	sc->pos++;
	sp_jt_skip_ws(sc);
	return SP_JT_OK;
}

int
sp_jt_parse(const char *json, size_t len, int max_depth,
			SpJtToken *tok, size_t cap, SpJtDoc *doc)
{
	SpJtScan	sc = {(const unsigned char *) json, len, 0};
	uint32_t	stack[SP_JT_MAX_STACK];
	int			depth = 0;
	size_t		n = 0;

	doc->json = json;
	doc->tok = tok;
	doc->ntok = 0;
	if (json == NULL || len >= UINT32_MAX)
		return SP_JT_INVALID;
	if (max_depth > SP_JT_MAX_STACK)
		max_depth = SP_JT_MAX_STACK;

	sp_jt_skip_ws(&sc);
	for (;;)
	{
		SpJtToken  *t;
		unsigned char c;

		/* a value */
		if (depth >= max_depth)
			return SP_JT_INVALID;
		if (sc.pos >= sc.len)
			return SP_JT_INVALID;
		if (n >= cap)
			return SP_JT_FULL;
		t = &tok[n];
		memset(t, 0, sizeof(*t));
		c = sc.s[sc.pos];
		if (c == '{' || c == '[')
		{
			t->type = c == '{' ? SP_JT_OBJECT : SP_JT_ARRAY;
			t->start = (uint32_t) sc.pos;
			sc.pos++;
			stack[depth++] = (uint32_t) n++;
			sp_jt_skip_ws(&sc);
			if (sc.pos < sc.len && sc.s[sc.pos] == (c == '{' ? '}' : ']'))
			{
				sc.pos++;
				t->next = (uint32_t) n;
				t->len = (uint32_t) (sc.pos - t->start);
				depth--;
				/* an empty container is a complete value: fall to the close loop */
			}
			else if (c == '{')
			{
				int			rc = sp_jt_scan_key(&sc, tok, cap, &n);	/* the first */

				if (rc != SP_JT_OK)
					return rc;
				continue;
			}
			else
				continue;		/* the first element */
		}
		else
		{
			bool		ok;

			if (c == '"')
			{
				sc.pos++;
				ok = sp_jt_scan_string(&sc, t);
			}
			else if (c == '-' || (c >= '0' && c <= '9'))
				ok = sp_jt_scan_number(&sc, t);
			else if (c == 't')
				ok = sp_jt_scan_literal(&sc, "true", SP_JT_TRUE, t);
			else if (c == 'f')
				ok = sp_jt_scan_literal(&sc, "false", SP_JT_FALSE, t);
			else if (c == 'n')
				ok = sp_jt_scan_literal(&sc, "null", SP_JT_NULL, t);
			else
				ok = false;
			if (!ok)
				return SP_JT_INVALID;
			n++;
			t->next = (uint32_t) n;
		}

		/* a value is complete: count it, then a comma or the container's end */
		for (;;)
		{
			SpJtToken  *open;

			sp_jt_skip_ws(&sc);
			if (depth == 0)
			{
				if (sc.pos != sc.len)
					return SP_JT_INVALID;
				doc->ntok = n;
				return SP_JT_OK;
			}
			open = &tok[stack[depth - 1]];
			open->count++;
			if (sc.pos >= sc.len)
				return SP_JT_INVALID;
			c = sc.s[sc.pos++];
			if (c == ',')
			{
				sp_jt_skip_ws(&sc);
				if (open->type == SP_JT_OBJECT)
				{
					int			rc = sp_jt_scan_key(&sc, tok, cap, &n);

					if (rc != SP_JT_OK)
						return rc;
				}
				break;			/* to the next value */
			}
			if (c != (open->type == SP_JT_OBJECT ? '}' : ']'))
				return SP_JT_INVALID;
			open->next = (uint32_t) n;
			open->len = (uint32_t) (sc.pos - open->start);
			depth--;
		}
	}
}

/* Whether string token t, unescaped, equals key[0..keylen). */
static bool
sp_jt_key_equals(const SpJtDoc *doc, const SpJtToken *t, const char *key, size_t keylen)
{
	const unsigned char *s = (const unsigned char *) doc->json + t->start;
	size_t		i = 0;
	size_t		o = 0;

	if (!(t->flags & SP_JT_ESCAPED))
		return t->len == keylen && memcmp(s, key, keylen) == 0;
	while (i < t->len)
	{
		char		ch[4];
		bool		is_nul;
		size_t		n = sp_jt_next_char(s, &i, t->len, ch, &is_nul);

		if (o + n > keylen || memcmp(key + o, ch, n) != 0)
			return false;
		o += n;
	}
	return o == keylen;
}

int
sp_jt_member(const SpJtDoc *doc, int obj, const char *key)
{
	int			found = sp_jt_member_or_null(doc, obj, key);

	return found >= 0 && doc->tok[found].type == SP_JT_NULL ? -1 : found;
}

int
sp_jt_member_or_null(const SpJtDoc *doc, int obj, const char *key)
{
	size_t		keylen = strlen(key);
	uint32_t	i;
	uint32_t	k;
	int			found = -1;

	if (obj < 0 || (size_t) obj >= doc->ntok || doc->tok[obj].type != SP_JT_OBJECT)
		return -1;
	i = (uint32_t) obj + 1;
	for (k = 0; k < doc->tok[obj].count; k++)
	{
		if (sp_jt_key_equals(doc, &doc->tok[i], key, keylen))
			found = (int) i + 1;
		i = doc->tok[i + 1].next;
	}
	return found;
}

int
sp_jt_element(const SpJtDoc *doc, int arr, size_t i)
{
	uint32_t	at;
	size_t		k;

	if (arr < 0 || (size_t) arr >= doc->ntok || doc->tok[arr].type != SP_JT_ARRAY ||
		i >= doc->tok[arr].count)
		return -1;
	at = (uint32_t) arr + 1;
	for (k = 0; k < i; k++)
		at = doc->tok[at].next;
	return (int) at;
}

/* code point cp as UTF-8 into out; returns its length */
static size_t
sp_jt_put_utf8(unsigned long cp, char *out)
{
	if (cp < 0x80)
	{
		out[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		out[0] = (char) (0xC0 | (cp >> 6));
		out[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		out[0] = (char) (0xE0 | (cp >> 12));
		out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char) (0xF0 | (cp >> 18));
	out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/*
 * The character of a tokenized string's raw text s[*i..len) as UTF-8 into
 * ch (1 to 4 bytes, returned), escapes decoded; advances *i past it.
 */
static size_t
sp_jt_next_char(const unsigned char *s, size_t *i, size_t len, char *ch, bool *is_nul)
{
	unsigned long cp;
	size_t		n;

	*is_nul = false;
	if (s[*i] != '\\')
	{
		/* one UTF-8 character, kept whole */
		n = 1;
		while (*i + n < len && (s[*i + n] & 0xC0) == 0x80)
			n++;
		memcpy(ch, s + *i, n);
		*i += n;
		return n;
	}
	switch (s[*i + 1])
	{
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			cp = (unsigned long) sp_jt_hex4(s + *i + 2);
			if (cp >= 0xD800 && cp <= 0xDBFF)
			{
				cp = 0x10000 + ((cp - 0xD800) << 10) +
					((unsigned long) sp_jt_hex4(s + *i + 8) - 0xDC00);
				*i += 6;
			}
			*i += 4;
			break;
		default:				/* " \ / */
			cp = s[*i + 1];
			break;
	}
	*i += 2;
	*is_nul = cp == 0;
	return sp_jt_put_utf8(cp, ch);
}

SpJtStringResult
sp_jt_string(const SpJtDoc *doc, int idx, char *dst, size_t size, bool cut, size_t *len)
{
	const SpJtToken *t;
	const unsigned char *s;
	size_t		i = 0;
	size_t		o = 0;
	bool		full = false;
	bool		nul = false;

	if (len)
		*len = 0;
	if (size > 0)
		dst[0] = '\0';
	if (idx < 0 || (size_t) idx >= doc->ntok || doc->tok[idx].type != SP_JT_STRING)
		return SP_JT_STRING_NOT_STRING;
	if (size == 0)
		return SP_JT_STRING_TOO_LONG;
	t = &doc->tok[idx];
	s = (const unsigned char *) doc->json + t->start;

	/* the tokenizer checked the syntax: escapes are complete and paired */
	while (i < t->len)
	{
		char		ch[4];
		bool		is_nul;
		size_t		n = sp_jt_next_char(s, &i, t->len, ch, &is_nul);

		nul |= is_nul;
		if (full)
			continue;			/* only looking for U+0000 now */
		if (o + n > size - 1)
		{
			if (!cut)
			{
				dst[0] = '\0';
				return SP_JT_STRING_TOO_LONG;
			}
			full = true;
			continue;
		}
		memcpy(dst + o, ch, n);
		o += n;
	}
	dst[o] = '\0';
	if (len)
		*len = o;
	return nul ? SP_JT_STRING_HAS_NUL : SP_JT_STRING_OK;
}

bool
sp_jt_int64(const SpJtDoc *doc, int idx, int64_t *out)
{
	const SpJtToken *t;
	const char *s;
	size_t		i = 0;
	bool		neg = false;
	uint64_t	v = 0;
	uint64_t	limit;

	if (idx < 0 || (size_t) idx >= doc->ntok || doc->tok[idx].type != SP_JT_NUMBER ||
		!(doc->tok[idx].flags & SP_JT_INTEGER))
		return false;
	t = &doc->tok[idx];
	s = doc->json + t->start;
	if (s[0] == '-')
	{
		neg = true;
		i = 1;
	}
	limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
	for (; i < t->len; i++)
	{
		unsigned	d = (unsigned) (s[i] - '0');

		if (v > (limit - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg)
		*out = v == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) v;
	else
		*out = (int64_t) v;
	return true;
}
