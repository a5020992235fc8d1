/*-------------------------------------------------------------------------
 *
 * sp_formats.c
 *		Stripe keys, signing secrets, endpoint names and price ids, checked
 *		before anything is stored or sent; user text bounded for messages.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_formats.h"

#include <stdio.h>
#include <string.h>

static bool
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool
all_of(const char *s, size_t len, const char *extra)
{
	size_t		i;

	for (i = 0; i < len; i++)
		if (!is_alnum(s[i]) && (extra == NULL || s[i] == '\0' || strchr(extra, s[i]) == NULL))
			return false;
	return true;
}

/* "sk_test_", "rk_live_" ...: the length of the prefix, or 0 */
static size_t
key_prefix(const char *key, const char *const *kinds)
{
	for (; *kinds; kinds++)
	{
		size_t		klen = strlen(*kinds);

		if (strncmp(key, *kinds, klen) == 0 &&
			(strncmp(key + klen, "test_", 5) == 0 || strncmp(key + klen, "live_", 5) == 0))
			return klen + 5;
	}
	return 0;
}

static bool
key_valid(const char *key, const char *const *kinds)
{
	size_t		prefix = key_prefix(key, kinds);
	size_t		rest = prefix ? strlen(key + prefix) : 0;

	return prefix > 0 && rest >= 8 && rest <= 247 && all_of(key + prefix, rest, NULL);
}

const char *
sp_secret_key_problem(const char *key)
{
	static const char *const kinds[] = {"sk_", "rk_", NULL};

	if (key_valid(key, kinds))
		return NULL;
	if (strncmp(key, "pk_", 3) == 0)
		return "This is a publishable key (pk_...); pass it as publishable_key.";
	if (strncmp(key, "whsec_", 6) == 0)
		return "This is a webhook signing secret (whsec_...), not an API key.";
	return "A secret key starts with sk_test_, sk_live_, rk_test_ or rk_live_, followed by letters and digits.";
}

bool
sp_publishable_key_valid(const char *key)
{
	static const char *const kinds[] = {"pk_", NULL};

	return key_valid(key, kinds);
}

bool
sp_webhook_secret_valid(const char *secret)
{
	size_t		len = strlen(secret);

	return strncmp(secret, "whsec_", 6) == 0 && len >= 6 + 16 && len <= 255 &&
		all_of(secret + 6, len - 6, "+/=_-");
}

bool
sp_endpoint_name_valid(const char *name, size_t len)
{
	return len >= 1 && len <= SP_ENDPOINT_NAME_MAX && all_of(name, len, "_.-");
}

bool
sp_price_id_valid(const char *price_id)
{
	size_t		len = strlen(price_id);

	return len >= 7 && len <= 255 && strncmp(price_id, "price_", 6) == 0 &&
		all_of(price_id + 6, len - 6, "_");
}

void
sp_one_line(char *dst, size_t size, const char *src, size_t max)
{
	static const char ellipsis[] = "\xE2\x80\xA6";	/* … */
	size_t		len = strlen(src);
	size_t		n;
	size_t		i;
	bool		cut = false;

	if (size == 0)
		return;
	if (len > max)
	{
		len = max;
		cut = true;
	}
	if (cut && len + sizeof(ellipsis) > size)
		len = size > sizeof(ellipsis) ? size - sizeof(ellipsis) : 0;
	else if (len + 1 > size)
	{
		len = size - 1;
		cut = false;
	}
	/* back to the start of a character */
	while (len > 0 && len < strlen(src) && ((unsigned char) src[len] & 0xC0) == 0x80)
		len--;
	for (n = 0, i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) src[i];

		dst[n++] = (c < 0x20 || c == 0x7F) ? '?' : (char) c;
	}
	if (cut && n + sizeof(ellipsis) <= size)
	{
		memcpy(dst + n, ellipsis, sizeof(ellipsis) - 1);
		n += sizeof(ellipsis) - 1;
	}
	dst[n] = '\0';
}

void
sp_mask_key(const char *key, char *dst, size_t size)
{
	static const char ellipsis[] = "\xE2\x80\xA6";	/* … */
	size_t		len = strlen(key);
	size_t		prefix = 0;

	if (size == 0)
		return;
	if (len < 12)
	{
		snprintf(dst, size, "%s", ellipsis);
		return;
	}
	/* the kind ("sk_", "whsec_") and the mode ("test_", "live_"), if any */
	while (prefix < len && key[prefix] >= 'a' && key[prefix] <= 'z')
		prefix++;
	if (prefix > 0 && prefix < 16 && key[prefix] == '_')
	{
		prefix++;
		if (strncmp(key + prefix, "test_", 5) == 0 || strncmp(key + prefix, "live_", 5) == 0)
			prefix += 5;
	}
	else
		prefix = 0;
	snprintf(dst, size, "%.*s%s%s", (int) prefix, key, ellipsis, key + len - 4);
}
