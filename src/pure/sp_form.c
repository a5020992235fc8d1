/*-------------------------------------------------------------------------
 *
 * sp_form.c
 *		Build and decode application/x-www-form-urlencoded bodies
 *
 * The unreserved set of RFC 3986 (ALPHA DIGIT - . _ ~) goes out literally,
 * a space becomes '+', every other byte becomes %XX with upper-case hex, so
 * the output is the same whatever the locale and byte-exact on decoding.
 * (stripe-node sends a space as %20; a form decoder reads both the same.)
 * Keys keep '[' and ']' literal because that is Stripe's nesting syntax and
 * stripe-node sends them unencoded too; everything else in a key is encoded
 * exactly like a value, so a key can never smuggle a '&' or '=' into the
 * body.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_form.h"
#include "sp_hex.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char sp_hex_upper[] = "0123456789ABCDEF";

static bool
sp_form_is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') ||
		c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * Shared by keys and values; is_key only widens the literal set by the two
 * bracket characters.
 */
static size_t
sp_form_escape_internal(const char *src, size_t len, char *dst, bool is_key)
{
	size_t		out = 0;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) src[i];

		if (sp_form_is_unreserved(c) || (is_key && (c == '[' || c == ']')))
			dst[out++] = (char) c;
		else if (c == ' ')
			dst[out++] = '+';
		else
		{
			dst[out++] = '%';
			dst[out++] = sp_hex_upper[c >> 4];
			dst[out++] = sp_hex_upper[c & 0x0F];
		}
	}
	return out;
}

size_t
sp_form_escape(const char *src, size_t len, char *dst)
{
	return sp_form_escape_internal(src, len, dst, false);
}

void
sp_form_init(SpForm *form)
{
	form->data = NULL;
	form->len = 0;
	form->cap = 0;
	form->failed = false;
}

void
sp_form_free(SpForm *form)
{
	if (form == NULL)
		return;
	free(form->data);
	sp_form_init(form);
}

/*
 * Makes room for extra more bytes plus the NUL.  Sizes are checked before
 * every addition and multiplication: the lengths come from callers and a
 * wrapped size_t would turn into a heap overflow.
 */
static bool
sp_form_reserve(SpForm *form, size_t extra)
{
	size_t		need;
	size_t		newcap;
	char	   *newdata;

	if (extra > SIZE_MAX - 1 - form->len)
		return false;
	need = form->len + extra + 1;
	if (need <= form->cap)
		return true;

	newcap = form->cap > 0 ? form->cap : 256;
	while (newcap < need)
	{
		if (newcap > SIZE_MAX / 2)
		{
			newcap = need;
			break;
		}
		newcap *= 2;
	}

	newdata = realloc(form->data, newcap);
	if (newdata == NULL)
		return false;
	form->data = newdata;
	form->cap = newcap;
	return true;
}

bool
sp_form_add_len(SpForm *form, const char *key, const char *value,
				size_t value_len)
{
	size_t		key_len;
	size_t		extra;

	if (form == NULL)
		return false;
	if (form->failed)
		return false;

	/* A missing argument is a caller bug; poison the body rather than send it short. */
	if (key == NULL || (value == NULL && value_len > 0))
	{
		form->failed = true;
		return false;
	}

	key_len = strlen(key);

	/* worst case: '&' + 3 bytes per key byte + '=' + 3 bytes per value byte */
	if (key_len > (SIZE_MAX - 2) / 3 ||
		value_len > (SIZE_MAX - 2 - 3 * key_len) / 3)
	{
		form->failed = true;
		return false;
	}
	extra = 2 + 3 * key_len + 3 * value_len;

	if (!sp_form_reserve(form, extra))
	{
		form->failed = true;
		return false;
	}

	if (form->len > 0)
		form->data[form->len++] = '&';
	form->len += sp_form_escape_internal(key, key_len,
										 form->data + form->len, true);
	form->data[form->len++] = '=';
	if (value_len > 0)
		form->len += sp_form_escape_internal(value, value_len,
											 form->data + form->len, false);
	form->data[form->len] = '\0';
	return true;
}

bool
sp_form_add(SpForm *form, const char *key, const char *value)
{
	if (form != NULL && !form->failed && value == NULL)
	{
		form->failed = true;
		return false;
	}
	return sp_form_add_len(form, key, value, value != NULL ? strlen(value) : 0);
}

bool
sp_form_add_int(SpForm *form, const char *key, long long value)
{
	char		buf[32];
	int			n;

	n = snprintf(buf, sizeof(buf), "%lld", value);
	if (n < 0 || (size_t) n >= sizeof(buf))
	{
		if (form != NULL)
			form->failed = true;
		return false;
	}
	return sp_form_add_len(form, key, buf, (size_t) n);
}

/*
 * Decodes src[0..len) into dst, which must hold len bytes.  Returns the
 * decoded length, or -1 for a bad escape.  With dst == NULL it only
 * validates, which lets sp_form_decode reject a body before any callback.
 */
static long long
sp_form_unescape(const char *src, size_t len, char *dst)
{
	size_t		in = 0;
	size_t		out = 0;

	while (in < len)
	{
		unsigned char c = (unsigned char) src[in];

		if (c == '%')
		{
			int			hi;
			int			lo;

			if (len - in < 3)
				return -1;
			hi = sp_hex_digit((unsigned char) src[in + 1]);
			lo = sp_hex_digit((unsigned char) src[in + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			if (dst != NULL)
				dst[out] = (char) ((hi << 4) | lo);
			out++;
			in += 3;
		}
		else
		{
			if (dst != NULL)
				dst[out] = (c == '+') ? ' ' : (char) c;
			out++;
			in++;
		}
	}
	return (long long) out;
}

int
sp_form_decode(const char *body, size_t len, SpFormDecodeCallback cb,
			   void *arg)
{
	char	   *scratch;
	size_t		pos;
	int			pass;

	if (body == NULL)
		return len == 0 ? 0 : -1;

	/*
	 * Decoded text is never longer than its source; +2 leaves room for the
	 * NULs after key and value, whose sum is at most the pair length minus
	 * the '='.
	 */
	if (len > SIZE_MAX - 2)
		return -2;
	scratch = malloc(len + 2);
	if (scratch == NULL)
		return -2;

	/* pass 0 validates everything, pass 1 delivers */
	for (pass = 0; pass < 2; pass++)
	{
		pos = 0;
		while (pos < len)
		{
			const char *pair = body + pos;
			const char *amp = memchr(pair, '&', len - pos);
			size_t		pair_len = amp != NULL ? (size_t) (amp - pair) : len - pos;
			const char *eq = memchr(pair, '=', pair_len);
			size_t		key_raw = eq != NULL ? (size_t) (eq - pair) : pair_len;
			const char *val = eq != NULL ? eq + 1 : pair + pair_len;
			size_t		val_raw = pair_len - key_raw - (eq != NULL ? 1 : 0);

			pos += pair_len + (amp != NULL ? 1 : 0);
			if (pair_len == 0)
				continue;

			if (pass == 0)
			{
				if (sp_form_unescape(pair, key_raw, NULL) < 0 ||
					sp_form_unescape(val, val_raw, NULL) < 0)
				{
					free(scratch);
					return -1;
				}
			}
			else if (cb != NULL)
			{
				size_t		klen = (size_t) sp_form_unescape(pair, key_raw, scratch);
				char	   *vdst = scratch + klen + 1;
				size_t		vlen;

				scratch[klen] = '\0';
				vlen = (size_t) sp_form_unescape(val, val_raw, vdst);
				vdst[vlen] = '\0';
				cb(scratch, klen, vdst, vlen, arg);
			}
		}
	}

	free(scratch);
	return 0;
}
