/*-------------------------------------------------------------------------
 *
 * test_jtok.c
 *		Unit tests for sp_jtok: what it accepts, what it refuses, and what
 *		its readers give back
 *
 *-------------------------------------------------------------------------
 */
#include "unit.h"
#include "sp_jtok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static SpJtToken tokens[256];
static SpJtDoc doc;

static int
parse(const char *json)
{
	return sp_jt_parse(json, strlen(json), 64, tokens, 256, &doc);
}

TEST(jtok_accepts_json)
{
	static const char *const valid[] = {
		"0", "-0", "1.5e+10", "-12.0E-3", "true", "false", "null", "\"\"",
		" \t\r\n{}\n", "[]", "[[],{}]", "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
		"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"",
		"\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"",
	};
	size_t		i;

	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		if (parse(valid[i]) != SP_JT_OK)
		{
			unit_fail(__FILE__, __LINE__, "refused: %s", valid[i]);
			return;
		}
}

TEST(jtok_refuses_what_jsonb_refuses)
{
	static const char *const invalid[] = {
		"", " ", "01", "1.", ".5", "-", "+1", "1e", "0x10", "NaN", "tru", "nul",
		"[1,]", "{,}", "{\"a\":1,}", "{\"a\"}", "{a:1}", "[1 2]", "{} {}", "[",
		"\"abc", "'a'", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"",
		"\"tab\there\"", "\"nl\nhere\"", "\"\x01\"",	/* unescaped controls */
		"\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",	/* lone surrogates */
		"\"a\\u0000b\"", "{\"\\u0000\":1}",	/* U+0000, which text cannot hold */
		"\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"",	/* overlong, surrogate */
		"\"\xf4\x90\x80\x80\"", "\"\xff\"", "\"\xc3\"", "\xc3\xa9",
	};
	size_t		i;

	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		if (parse(invalid[i]) != SP_JT_INVALID)
		{
			unit_fail(__FILE__, __LINE__, "accepted: %s", invalid[i]);
			return;
		}
	/* a NUL byte in the text, inside or outside a string */
	CHECK_INT_EQ(sp_jt_parse("\"a\0b\"", 5, 64, tokens, 256, &doc), SP_JT_INVALID);
	CHECK_INT_EQ(sp_jt_parse("1\0", 2, 64, tokens, 256, &doc), SP_JT_INVALID);
}

/* k arrays, holding inner (may be "") */
static int
nested(int k, const char *inner)
{
	char		buf[400];
	size_t		n = 0;
	int			i;

	for (i = 0; i < k; i++)
		buf[n++] = '[';
	memcpy(buf + n, inner, strlen(inner));
	n += strlen(inner);
	for (i = 0; i < k; i++)
		buf[n++] = ']';
	return sp_jt_parse(buf, n, 64, tokens, 256, &doc);
}

TEST(jtok_depth_as_json_c_counts_it)
{
	/* a value 64 containers deep is refused; an empty one 63 deep is not */
	CHECK_INT_EQ(nested(63, "1"), SP_JT_OK);
	CHECK_INT_EQ(nested(64, ""), SP_JT_OK);
	CHECK_INT_EQ(nested(64, "1"), SP_JT_INVALID);
	CHECK_INT_EQ(nested(64, "{}"), SP_JT_INVALID);
	CHECK_INT_EQ(nested(65, ""), SP_JT_INVALID);
	CHECK_INT_EQ(nested(150, ""), SP_JT_INVALID);
}

TEST(jtok_reports_a_full_token_array)
{
	CHECK_INT_EQ(sp_jt_parse("[1,2,3]", 7, 64, tokens, 3, &doc), SP_JT_FULL);
	CHECK_INT_EQ(sp_jt_parse("[1,2,3]", 7, 64, tokens, 4, &doc), SP_JT_OK);
	CHECK_INT_EQ(sp_jt_parse("{\"a\":1}", 7, 64, tokens, 2, &doc), SP_JT_FULL);
	/* SP_JT_TOKENS_FOR(len) always suffices: the densest texts */
	CHECK_INT_EQ(sp_jt_parse("[[[]]]", 6, 64, tokens, SP_JT_TOKENS_FOR(6), &doc), SP_JT_OK);
	CHECK_INT_EQ(sp_jt_parse("[1,1,1]", 7, 64, tokens, SP_JT_TOKENS_FOR(7), &doc), SP_JT_OK);
	CHECK_INT_EQ(sp_jt_parse("{\"\":1}", 6, 64, tokens, SP_JT_TOKENS_FOR(6), &doc), SP_JT_OK);
	CHECK_INT_EQ(sp_jt_parse("1", 1, 64, tokens, SP_JT_TOKENS_FOR(1), &doc), SP_JT_OK);
}

TEST(jtok_members_elements_and_skipping)
{
	char		buf[64];
	int			a;
	int			b;
	int64_t		v;

	CHECK_INT_EQ(parse("{\"a\":{\"x\":[1,[2,3],{\"y\":4}]},\"b\":[10,20,{\"c\":\"z\"}],"
					   "\"n\":null,\"a\\u0062\":\"escaped key\",\"d\":1,\"d\":2}"), SP_JT_OK);
	a = sp_jt_member(&doc, 0, "a");
	CHECK(a > 0);
	CHECK_INT_EQ(tokens[a].type, SP_JT_OBJECT);
	b = sp_jt_member(&doc, 0, "b");
	CHECK_INT_EQ(tokens[b].count, 3);
	CHECK(sp_jt_int64(&doc, sp_jt_element(&doc, b, 1), &v));
	CHECK_INT_EQ(v, 20);
	CHECK_INT_EQ(sp_jt_string(&doc, sp_jt_member(&doc, sp_jt_element(&doc, b, 2), "c"),
							  buf, sizeof(buf), false, NULL), SP_JT_STRING_OK);
	CHECK_STR_EQ(buf, "z");
	CHECK_INT_EQ(sp_jt_element(&doc, b, 3), -1);
	/* an inner object's member is not the outer one's */
	CHECK_INT_EQ(sp_jt_member(&doc, 0, "y"), -1);
	CHECK_INT_EQ(sp_jt_member(&doc, 0, "n"), -1);	/* null reads as absent */
	CHECK_INT_EQ(sp_jt_member(&doc, 0, "missing"), -1);
	CHECK_INT_EQ(sp_jt_member(&doc, b, "c"), -1);	/* not an object */
	/* a key is compared unescaped; a repeated key gives its last value */
	CHECK_INT_EQ(sp_jt_string(&doc, sp_jt_member(&doc, 0, "ab"), buf, sizeof(buf), false, NULL),
				 SP_JT_STRING_OK);
	CHECK_STR_EQ(buf, "escaped key");
	CHECK(sp_jt_int64(&doc, sp_jt_member(&doc, 0, "d"), &v));
	CHECK_INT_EQ(v, 2);
}

TEST(jtok_long_escaped_keys)
{
	char		json[700];
	char		key[301];

	/* a 300-byte key written with an escape matches its unescaped form */
	memset(key, 'k', 300);
	key[300] = '\0';
	snprintf(json, sizeof(json), "{\"\\u006b%s\":1,\"%s\":2}", key + 1, "short");
	CHECK_INT_EQ(parse(json), SP_JT_OK);
	CHECK_INT_EQ(sp_jt_member(&doc, 0, key), 2);
	key[299] = '\0';
	CHECK_INT_EQ(sp_jt_member(&doc, 0, key), -1);
}

TEST(jtok_strings)
{
	char		wide[16];
	char		buf[8];
	size_t		len;

	CHECK_INT_EQ(parse("[\"caf\\u00e9\\ud83d\\ude00\", \"a\\u0001b\", \"\\u20ac\\u20ac\\u20ac\", 7]"),
				 SP_JT_OK);
	CHECK_INT_EQ(sp_jt_string(&doc, 1, wide, sizeof(wide), false, &len), SP_JT_STRING_OK);
	CHECK_STR_EQ(wide, "caf\xc3\xa9\xf0\x9f\x98\x80");
	CHECK_INT_EQ(len, 9);
	CHECK_INT_EQ(sp_jt_string(&doc, 1, buf, sizeof(buf), false, NULL), SP_JT_STRING_TOO_LONG);
	CHECK_INT_EQ(sp_jt_string(&doc, 2, buf, sizeof(buf), false, &len), SP_JT_STRING_OK);
	CHECK_MEM_EQ(buf, len, "a\x01" "b", 3);
	/* 9 bytes into 8: refused, or cut after the second euro sign */
	CHECK_INT_EQ(sp_jt_string(&doc, 3, buf, sizeof(buf), false, NULL), SP_JT_STRING_TOO_LONG);
	CHECK_INT_EQ(sp_jt_string(&doc, 3, buf, sizeof(buf), true, &len), SP_JT_STRING_OK);
	CHECK_STR_EQ(buf, "\xe2\x82\xac\xe2\x82\xac");
	CHECK_INT_EQ(sp_jt_string(&doc, 4, buf, sizeof(buf), false, NULL), SP_JT_STRING_NOT_STRING);
	/* a pair json-c decodes to U+FFFD, in upper-case hex */
	CHECK_INT_EQ(parse("\"\\ud837\\uDE40\""), SP_JT_OK);
	CHECK_INT_EQ(sp_jt_string(&doc, 0, buf, sizeof(buf), false, NULL), SP_JT_STRING_OK);
	CHECK_STR_EQ(buf, "\xf0\x9d\xb9\x80");
	CHECK_INT_EQ(sp_jt_string(&doc, 99, buf, sizeof(buf), false, NULL), SP_JT_STRING_NOT_STRING);
}

TEST(jtok_integers)
{
	int64_t		v = 0;

	CHECK_INT_EQ(parse("[9223372036854775807, -9223372036854775808, 9223372036854775808,"
					   " -9223372036854775809, 1.0, 1e3, -0, \"1\"]"), SP_JT_OK);
	CHECK(sp_jt_int64(&doc, sp_jt_element(&doc, 0, 0), &v));
	CHECK(v == INT64_MAX);
	CHECK(sp_jt_int64(&doc, sp_jt_element(&doc, 0, 1), &v));
	CHECK(v == INT64_MIN);
	CHECK(!sp_jt_int64(&doc, sp_jt_element(&doc, 0, 2), &v));
	CHECK(!sp_jt_int64(&doc, sp_jt_element(&doc, 0, 3), &v));
	CHECK(!sp_jt_int64(&doc, sp_jt_element(&doc, 0, 4), &v));
	CHECK(!sp_jt_int64(&doc, sp_jt_element(&doc, 0, 5), &v));
	CHECK(sp_jt_int64(&doc, sp_jt_element(&doc, 0, 6), &v));
	CHECK_INT_EQ(v, 0);
	CHECK(!sp_jt_int64(&doc, sp_jt_element(&doc, 0, 7), &v));
}

void
unit_suite_jtok(void)
{
	RUN(jtok_accepts_json);
	RUN(jtok_refuses_what_jsonb_refuses);
	RUN(jtok_depth_as_json_c_counts_it);
	RUN(jtok_reports_a_full_token_array);
	RUN(jtok_members_elements_and_skipping);
	RUN(jtok_long_escaped_keys);
	RUN(jtok_strings);
	RUN(jtok_integers);
}
