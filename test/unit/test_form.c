/*-------------------------------------------------------------------------
 *
 * test_form.c
 *		Unit tests for sp_form: exact encodings, round trips, bad input
 *
 *-------------------------------------------------------------------------
 */
#include "unit.h"
#include "sp_form.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PAIRS 64

/* decoded pairs, copied out of the decoder's scratch buffer */
typedef struct Pairs
{
	int			n;
	bool		overflow;
	char	   *key[MAX_PAIRS];
	size_t		key_len[MAX_PAIRS];
	char	   *value[MAX_PAIRS];
	size_t		value_len[MAX_PAIRS];
} Pairs;

static char *
memdup_nul(const char *src, size_t len)
{
	char	   *p = malloc(len + 1);

	if (p != NULL)
	{
		memcpy(p, src, len);
		p[len] = '\0';
	}
	return p;
}

static void
collect(const char *key, size_t key_len, const char *value, size_t value_len,
		void *arg)
{
	Pairs	   *p = arg;

	/* the decoder promises NUL-terminated views */
	if (key[key_len] != '\0' || value[value_len] != '\0' || p->n >= MAX_PAIRS)
	{
		p->overflow = true;
		return;
	}
	p->key[p->n] = memdup_nul(key, key_len);
	p->key_len[p->n] = key_len;
	p->value[p->n] = memdup_nul(value, value_len);
	p->value_len[p->n] = value_len;
	p->n++;
}

static void
pairs_free(Pairs *p)
{
	int			i;

	for (i = 0; i < p->n; i++)
	{
		free(p->key[i]);
		free(p->value[i]);
	}
	memset(p, 0, sizeof(*p));
}

/* encodes one pair and returns the malloc'd body (NULL on failure) */
static char *
encode_one(const char *key, const char *value)
{
	SpForm		form;
	char	   *out;

	sp_form_init(&form);
	if (!sp_form_add(&form, key, value))
	{
		sp_form_free(&form);
		return NULL;
	}
	out = form.data;
	form.data = NULL;
	sp_form_free(&form);
	return out;
}

static uint32_t
rng_next(uint32_t *state)
{
	uint32_t	x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

TEST(form_exact_nested_key)
{
	char	   *body = encode_one("line_items[0][price_data][product_data][name]",
								  "Tom & Jerry = [best]\n");

	CHECK_STR_EQ(body,
				 "line_items[0][price_data][product_data][name]="
				 "Tom+%26+Jerry+%3D+%5Bbest%5D%0A");
	free(body);
}

TEST(form_exact_value_alphabet)
{
	char	   *body;

	/* unreserved stays literal, space is '+', all else upper-case %XX */
	body = encode_one("k", "AZaz09-._~ +%*/!'()?#,;:@$\"<>\\^`{|}");
	CHECK_STR_EQ(body,
				 "k=AZaz09-._~+%2B%25%2A%2F%21%27%28%29%3F%23%2C%3B%3A%40%24"
				 "%22%3C%3E%5C%5E%60%7B%7C%7D");
	free(body);

	/* brackets are literal only in keys */
	body = encode_one("expand[]", "[x]");
	CHECK_STR_EQ(body, "expand[]=%5Bx%5D");
	free(body);
}

TEST(form_exact_utf8_and_controls)
{
	char	   *body = encode_one("name", "\xc3\xa9\xf0\x9f\x98\x80\r\n\t\x7f\xff");

	CHECK_STR_EQ(body, "name=%C3%A9%F0%9F%98%80%0D%0A%09%7F%FF");
	free(body);
}

TEST(form_exact_hostile_key)
{
	/* a key cannot inject '&' or '=' into the body */
	char	   *body = encode_one("metadata[a&b=c d+e%]", "v");

	CHECK_STR_EQ(body, "metadata[a%26b%3Dc+d%2Be%25]=v");
	free(body);
}

TEST(form_several_pairs)
{
	SpForm		form;

	sp_form_init(&form);
	CHECK(sp_form_add(&form, "mode", "payment"));
	CHECK(sp_form_add_int(&form, "line_items[0][quantity]", 1));
	CHECK(sp_form_add(&form, "metadata[order_id]", "42"));
	CHECK(sp_form_add(&form, "empty", ""));
	CHECK(!form.failed);
	CHECK_STR_EQ(form.data,
				 "mode=payment&line_items[0][quantity]=1&metadata[order_id]=42&empty=");
	CHECK_INT_EQ(form.len, strlen(form.data));
	sp_form_free(&form);
}

TEST(form_add_int_values)
{
	SpForm		form;

	sp_form_init(&form);
	CHECK(sp_form_add_int(&form, "a", 0));
	CHECK(sp_form_add_int(&form, "b", -5));
	CHECK(sp_form_add_int(&form, "c", 99999999));
	CHECK(sp_form_add_int(&form, "d", INT64_MIN));
	CHECK(sp_form_add_int(&form, "e", INT64_MAX));
	CHECK_STR_EQ(form.data,
				 "a=0&b=-5&c=99999999&d=-9223372036854775808&e=9223372036854775807");
	sp_form_free(&form);
}

TEST(form_add_len_exact_bytes)
{
	SpForm		form;

	sp_form_init(&form);
	CHECK(sp_form_add_len(&form, "v", "a\0b", 3));
	CHECK(sp_form_add_len(&form, "w", "abcdef", 2));
	CHECK(sp_form_add_len(&form, "x", NULL, 0));
	CHECK_STR_EQ(form.data, "v=a%00b&w=ab&x=");
	sp_form_free(&form);
}

TEST(form_escape_function)
{
	char		dst[3 * 6 + 4];
	size_t		n;

	memset(dst, '#', sizeof(dst));
	n = sp_form_escape("a b&[]", 6, dst);
	CHECK_MEM_EQ(dst, n, "a+b%26%5B%5D", strlen("a+b%26%5B%5D"));
	CHECK(dst[n] == '#');		/* no NUL written */

	/* worst case really is 3 bytes per input byte */
	n = sp_form_escape("\x01\x02", 2, dst);
	CHECK_INT_EQ(n, 6);
	CHECK_INT_EQ(sp_form_escape("", 0, dst), 0);
}

TEST(form_free_idempotent)
{
	SpForm		zeroed;
	SpForm		form;

	memset(&zeroed, 0, sizeof(zeroed));
	sp_form_free(&zeroed);
	sp_form_free(&zeroed);
	sp_form_free(NULL);

	sp_form_init(&form);
	CHECK(sp_form_add(&form, "a", "b"));
	sp_form_free(&form);
	CHECK(form.data == NULL);
	CHECK_INT_EQ(form.len, 0);
	CHECK_INT_EQ(form.cap, 0);
	sp_form_free(&form);

	/* usable again after free */
	CHECK(sp_form_add(&form, "c", "d"));
	CHECK_STR_EQ(form.data, "c=d");
	sp_form_free(&form);
}

TEST(form_failure_poisons)
{
	SpForm		form;

	sp_form_init(&form);
	CHECK(sp_form_add(&form, "a", "1"));
	CHECK(!sp_form_add(&form, NULL, "x"));
	CHECK(form.failed);
	CHECK(!sp_form_add(&form, "b", "2"));
	CHECK(!sp_form_add_int(&form, "c", 3));
	CHECK_STR_EQ(form.data, "a=1");
	sp_form_free(&form);
	CHECK(!form.failed);

	sp_form_init(&form);
	CHECK(!sp_form_add(&form, "a", NULL));
	CHECK(form.failed);
	sp_form_free(&form);

	/*
	 * A length whose encoded size overflows size_t must fail before
	 * touching the value (which is far shorter than claimed here).
	 */
	sp_form_init(&form);
	CHECK(!sp_form_add_len(&form, "k", "x", SIZE_MAX / 2));
	CHECK(form.failed);
	CHECK(form.data == NULL);
	sp_form_free(&form);

	CHECK(!sp_form_add(NULL, "a", "b"));
}

static const char *const hostile[] = {
	"&", "=", "[", "]", "+", "%", "%25", "%%", "%G1", "a&b=c", "k[x]=y&z",
	"[]", "]]][[[", "\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80",
	"\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9", "\n", "\r", "\t", "\r\n",
	"", " ", "  two  spaces  ", "~-._", "a+b c", "100%", "\x7f", "\xff\xfe",
	"line1\nline2\rline3", "'\"<>\\", "?#/:@",
};

TEST(form_roundtrip_hostile)
{
	size_t		count = sizeof(hostile) / sizeof(hostile[0]);
	size_t		i;
	SpForm		form;
	Pairs		pairs;

	memset(&pairs, 0, sizeof(pairs));
	sp_form_init(&form);
	for (i = 0; i < count; i++)
		CHECK(sp_form_add(&form, hostile[i], hostile[count - 1 - i]));
	CHECK_INT_EQ(sp_form_decode(form.data, form.len, collect, &pairs), 0);
	CHECK(!pairs.overflow);
	CHECK_INT_EQ(pairs.n, count);
	for (i = 0; i < count; i++)
	{
		CHECK_STR_EQ(pairs.key[i], hostile[i]);
		CHECK_STR_EQ(pairs.value[i], hostile[count - 1 - i]);
	}
	pairs_free(&pairs);
	sp_form_free(&form);
}

TEST(form_roundtrip_10kb)
{
	size_t		len = 10 * 1024;
	char	   *big = malloc(len);
	char	   *key = malloc(len + 1);
	size_t		i;
	SpForm		form;
	Pairs		pairs;

	CHECK(big != NULL && key != NULL);
	for (i = 0; i < len; i++)
	{
		big[i] = (char) (i % 256);	/* every byte value, NUL included */
		key[i] = "a[]&= %+\xc3\xa9"[i % 10];
	}
	key[len] = '\0';

	memset(&pairs, 0, sizeof(pairs));
	sp_form_init(&form);
	CHECK(sp_form_add_len(&form, key, big, len));
	CHECK(sp_form_add(&form, "after", "x"));
	CHECK_INT_EQ(sp_form_decode(form.data, form.len, collect, &pairs), 0);
	CHECK_INT_EQ(pairs.n, 2);
	CHECK_MEM_EQ(pairs.key[0], pairs.key_len[0], key, len);
	CHECK_MEM_EQ(pairs.value[0], pairs.value_len[0], big, len);
	CHECK_STR_EQ(pairs.value[1], "x");
	pairs_free(&pairs);
	sp_form_free(&form);
	free(big);
	free(key);
}

TEST(form_decode_malformed)
{
	static const char *const bad[] = {
		"%G1", "a=%G1", "a=%", "a=%4", "%", "%4", "a=b%2", "a%zz=b",
		"ok=1&bad=%x", "a=%%", "a=%4%41", "%-1=x",
	};
	size_t		i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		Pairs		pairs;

		memset(&pairs, 0, sizeof(pairs));
		CHECK_INT_EQ(sp_form_decode(bad[i], strlen(bad[i]), collect, &pairs), -1);
		/* nothing is delivered from a body that is bad anywhere */
		CHECK_INT_EQ(pairs.n, 0);
	}

	/* a '%' whose hex digits lie beyond len is truncated, not read past */
	{
		char	   *buf = malloc(3);
		Pairs		pairs;

		CHECK(buf != NULL);
		memcpy(buf, "a=%", 3);
		memset(&pairs, 0, sizeof(pairs));
		CHECK_INT_EQ(sp_form_decode(buf, 3, collect, &pairs), -1);
		free(buf);
	}
}

TEST(form_decode_shapes)
{
	Pairs		pairs;
	const char *body;

	memset(&pairs, 0, sizeof(pairs));
	CHECK_INT_EQ(sp_form_decode("", 0, collect, &pairs), 0);
	CHECK_INT_EQ(pairs.n, 0);
	CHECK_INT_EQ(sp_form_decode(NULL, 0, collect, &pairs), 0);
	CHECK_INT_EQ(sp_form_decode(NULL, 1, collect, &pairs), -1);

	body = "a&b=&=c&&d=1=2&e+f=g+h&%5b%5D=%2b%2B&";
	CHECK_INT_EQ(sp_form_decode(body, strlen(body), collect, &pairs), 0);
	CHECK_INT_EQ(pairs.n, 6);
	CHECK_STR_EQ(pairs.key[0], "a");
	CHECK_STR_EQ(pairs.value[0], "");
	CHECK_STR_EQ(pairs.key[1], "b");
	CHECK_STR_EQ(pairs.value[1], "");
	CHECK_STR_EQ(pairs.key[2], "");
	CHECK_STR_EQ(pairs.value[2], "c");
	CHECK_STR_EQ(pairs.key[3], "d");
	CHECK_STR_EQ(pairs.value[3], "1=2");
	CHECK_STR_EQ(pairs.key[4], "e f");
	CHECK_STR_EQ(pairs.value[4], "g h");
	CHECK_STR_EQ(pairs.key[5], "[]");
	CHECK_STR_EQ(pairs.value[5], "++");
	pairs_free(&pairs);

	/* %00 decodes to a real NUL; lengths carry it */
	CHECK_INT_EQ(sp_form_decode("%00=a%00b", 9, collect, &pairs), 0);
	CHECK_INT_EQ(pairs.n, 1);
	CHECK_MEM_EQ(pairs.key[0], pairs.key_len[0], "\0", 1);
	CHECK_MEM_EQ(pairs.value[0], pairs.value_len[0], "a\0b", 3);
	pairs_free(&pairs);

	/* a NULL callback only validates */
	CHECK_INT_EQ(sp_form_decode("a=1", 3, NULL, NULL), 0);
	CHECK_INT_EQ(sp_form_decode("a=%", 3, NULL, NULL), -1);
}

/* random bytes through encode then decode come back unchanged */
TEST(form_roundtrip_random)
{
	uint32_t	seed = 0x5eed1234u;
	int			iter;

	for (iter = 0; iter < 2000; iter++)
	{
		char		value[64];
		size_t		len = rng_next(&seed) % sizeof(value);
		size_t		i;
		SpForm		form;
		Pairs		pairs;

		for (i = 0; i < len; i++)
			value[i] = (char) rng_next(&seed);
		memset(&pairs, 0, sizeof(pairs));
		sp_form_init(&form);
		CHECK(sp_form_add_len(&form, "k[0]", value, len));
		CHECK_INT_EQ(sp_form_decode(form.data, form.len, collect, &pairs), 0);
		CHECK_INT_EQ(pairs.n, 1);
		CHECK_STR_EQ(pairs.key[0], "k[0]");
		CHECK_MEM_EQ(pairs.value[0], pairs.value_len[0], value, len);
		pairs_free(&pairs);
		sp_form_free(&form);
	}
}

/* arbitrary input never crashes and always yields 0 or -1 */
TEST(form_decode_random)
{
	static const char alphabet[] = "%%%&&==+aF0919zG[]\x00\xff";
	uint32_t	seed = 0xdecade01u;
	int			iter;

	for (iter = 0; iter < 5000; iter++)
	{
		size_t		len = rng_next(&seed) % 40;
		char	   *buf = malloc(len > 0 ? len : 1);
		size_t		i;
		int			rc;
		Pairs		pairs;

		CHECK(buf != NULL);
		for (i = 0; i < len; i++)
			buf[i] = (iter & 1) ? (char) rng_next(&seed)
				: alphabet[rng_next(&seed) % (sizeof(alphabet) - 1)];
		memset(&pairs, 0, sizeof(pairs));
		rc = sp_form_decode(buf, len, collect, &pairs);
		free(buf);
		CHECK(rc == 0 || rc == -1);
		CHECK(!pairs.overflow);
		if (rc == -1)
			CHECK_INT_EQ(pairs.n, 0);
		pairs_free(&pairs);
	}
}

void
unit_suite_form(void)
{
	RUN(form_exact_nested_key);
	RUN(form_exact_value_alphabet);
	RUN(form_exact_utf8_and_controls);
	RUN(form_exact_hostile_key);
	RUN(form_several_pairs);
	RUN(form_add_int_values);
	RUN(form_add_len_exact_bytes);
	RUN(form_escape_function);
	RUN(form_free_idempotent);
	RUN(form_failure_poisons);
	RUN(form_roundtrip_hostile);
	RUN(form_roundtrip_10kb);
	RUN(form_decode_malformed);
	RUN(form_decode_shapes);
	RUN(form_roundtrip_random);
	RUN(form_decode_random);
}
