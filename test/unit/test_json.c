/*-------------------------------------------------------------------------
 *
 * test_json.c
 *		Unit tests for sp_json: Stripe error bodies and path extraction
 *
 * LeakSanitizer runs at exit, so every test here also proves that no
 * json-c object outlives the call that parsed it.
 *
 *-------------------------------------------------------------------------
 */
#include "unit.h"
#include "sp_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Shapes as Stripe's API returns them (ids shortened). */
static const char card_error_body[] =
"{\n"
"  \"error\": {\n"
"    \"charge\": \"ch_3MrVHnLkdIwHu7ix0snN0B15\",\n"
"    \"code\": \"card_declined\",\n"
"    \"decline_code\": \"insufficient_funds\",\n"
"    \"doc_url\": \"https://stripe.com/docs/error-codes/card-declined\",\n"
"    \"message\": \"Your card has insufficient funds.\",\n"
"    \"payment_intent\": {\n"
"      \"id\": \"pi_3MrVHnLkdIwHu7ix0t3kwU3Y\",\n"
"      \"object\": \"payment_intent\",\n"
"      \"amount\": 2000,\n"
"      \"currency\": \"usd\",\n"
"      \"last_payment_error\": {\"code\": \"card_declined\", \"type\": \"card_error\"},\n"
"      \"status\": \"requires_payment_method\"\n"
"    },\n"
"    \"payment_method\": {\"id\": \"pm_1MrVHn\", \"object\": \"payment_method\",\n"
"      \"card\": {\"brand\": \"visa\", \"last4\": \"9995\"}, \"type\": \"card\"},\n"
"    \"request_log_url\": \"https://dashboard.stripe.com/test/logs/req_x?t=1680000000\",\n"
"    \"type\": \"card_error\"\n"
"  }\n"
"}\n";

static const char invalid_request_body[] =
"{\n"
"  \"error\": {\n"
"    \"code\": \"parameter_missing\",\n"
"    \"doc_url\": \"https://stripe.com/docs/error-codes/parameter-missing\",\n"
"    \"message\": \"Missing required param: line_items[0][price_data][currency].\",\n"
"    \"param\": \"line_items[0][price_data][currency]\",\n"
"    \"request_log_url\": \"https://dashboard.stripe.com/test/logs/req_y?t=1680000001\",\n"
"    \"type\": \"invalid_request_error\"\n"
"  }\n"
"}\n";

static const char event_body[] =
"{\"id\":\"evt_1PxYz\",\"object\":\"event\",\"api_version\":\"2025-03-31.basil\","
"\"created\":1700000000,\"livemode\":false,\"pending_webhooks\":1,"
"\"type\":\"customer.subscription.updated\","
"\"data\":{\"object\":{\"id\":\"sub_123\",\"object\":\"subscription\","
"\"cancel_at_period_end\":true,\"canceled_at\":null,\"status\":\"active\","
"\"metadata\":{\"order_id\":\"42\",\"note\":\"a/b \\\"q\\\"\"},"
"\"items\":{\"object\":\"list\",\"data\":["
"{\"id\":\"si_1\",\"current_period_start\":1700000000,\"current_period_end\":1702592000,"
"\"price\":{\"unit_amount\":1050,\"unit_amount_decimal\":\"1050\",\"currency\":\"usd\"}},"
"{\"id\":\"si_2\",\"current_period_end\":1702592001,\"quantity\":2}]},"
"\"rate\":1.50,\"small\":-2.5e-3,\"big\":9007199254740993,\"neg\":-7,"
"\"name\":\"Caf\\u00e9 \\ud83d\\ude00 \\/ \\t\",\"empty\":\"\",\"tags\":[]}},"
"\"request\":{\"id\":null,\"idempotency_key\":null}}";

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

/* valid UTF-8 and no cut-off sequence at the end */
static bool
utf8_complete(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	while (*p)
	{
		int			extra;
		int			i;

		if (*p < 0x80)
			extra = 0;
		else if ((*p & 0xE0) == 0xC0)
			extra = 1;
		else if ((*p & 0xF0) == 0xE0)
			extra = 2;
		else if ((*p & 0xF8) == 0xF0)
			extra = 3;
		else
			return false;
		p++;
		for (i = 0; i < extra; i++, p++)
			if ((*p & 0xC0) != 0x80)
				return false;
	}
	return true;
}

TEST(json_error_card_error)
{
	SpStripeError err;

	CHECK(sp_stripe_error_parse(card_error_body, strlen(card_error_body), &err));
	CHECK(err.parsed);
	CHECK_STR_EQ(err.type, "card_error");
	CHECK_STR_EQ(err.code, "card_declined");
	CHECK_STR_EQ(err.decline_code, "insufficient_funds");
	CHECK_STR_EQ(err.param, "");
	CHECK_STR_EQ(err.message, "Your card has insufficient funds.");
	CHECK_STR_EQ(err.doc_url, "https://stripe.com/docs/error-codes/card-declined");
}

TEST(json_error_invalid_request)
{
	SpStripeError err;

	CHECK(sp_stripe_error_parse(invalid_request_body,
								strlen(invalid_request_body), &err));
	CHECK(err.parsed);
	CHECK_STR_EQ(err.type, "invalid_request_error");
	CHECK_STR_EQ(err.code, "parameter_missing");
	CHECK_STR_EQ(err.decline_code, "");
	CHECK_STR_EQ(err.param, "line_items[0][price_data][currency]");
	CHECK_STR_EQ(err.message,
				 "Missing required param: line_items[0][price_data][currency].");
}

TEST(json_error_odd_fields)
{
	SpStripeError err;
	const char *body = "{\"error\":{\"type\":\"api_error\",\"code\":null,"
		"\"param\":5,\"message\":\"a\\nb\",\"decline_code\":{\"x\":1}}}";
	const char *nul = "{\"error\":{\"type\":\"api_error\",\"message\":\"a\\u0000b\"}}";

	CHECK(sp_stripe_error_parse(body, strlen(body), &err));
	CHECK_STR_EQ(err.type, "api_error");
	CHECK_STR_EQ(err.code, "");
	CHECK_STR_EQ(err.param, "");
	CHECK_STR_EQ(err.message, "a\nb");
	CHECK_STR_EQ(err.decline_code, "");
	/* U+0000, which no text can hold, is not JSON to the one reader */
	CHECK(!sp_stripe_error_parse(nul, strlen(nul), &err));
	CHECK(!err.parsed);

	/* an empty error object still has the shape */
	CHECK(sp_stripe_error_parse("{\"error\":{}}", 12, &err));
	CHECK(err.parsed);
	CHECK_STR_EQ(err.type, "");
}

TEST(json_error_not_error_shape)
{
	static const char *const bodies[] = {
		"{\"id\":\"pi_123\",\"object\":\"payment_intent\"}",
		"{\"error\":\"boom\"}",
		"{\"error\":null}",
		"{\"error\":[]}",
		"[]",
		"[{\"error\":{}}]",
		"\"error\"",
		"null",
		"42",
		"",
		"{",
		"{\"error\":{\"type\":\"api_error\"}",
		"{\"error\":{\"type\":\"api_error\"}} trailing",
		"<html>502 Bad Gateway</html>",
	};
	size_t		i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
	{
		SpStripeError err;

		memset(&err, 'x', sizeof(err));
		CHECK(!sp_stripe_error_parse(bodies[i], strlen(bodies[i]), &err));
		CHECK(!err.parsed);
		CHECK_STR_EQ(err.type, "");
		CHECK_STR_EQ(err.message, "");
	}
	{
		SpStripeError err;

		CHECK(!sp_stripe_error_parse(NULL, 0, &err));
		CHECK(!err.parsed);
		CHECK(!sp_stripe_error_parse("{}", 2, NULL));
	}
}

static char *
error_with_message(const char *unit, size_t repeat)
{
	const char *head = "{\"error\":{\"type\":\"api_error\",\"message\":\"";
	const char *tail = "\"}}";
	size_t		ulen = strlen(unit);
	char	   *body = malloc(strlen(head) + ulen * repeat + strlen(tail) + 1);
	char	   *p = body;
	size_t		i;

	if (body == NULL)
		return NULL;
	memcpy(p, head, strlen(head));
	p += strlen(head);
	for (i = 0; i < repeat; i++, p += ulen)
		memcpy(p, unit, ulen);
	memcpy(p, tail, strlen(tail) + 1);
	return body;
}

TEST(json_error_truncation)
{
	SpStripeError err;
	char	   *body;

	/* ASCII fills the field exactly */
	body = error_with_message("a", 5000);
	CHECK(body != NULL);
	CHECK(sp_stripe_error_parse(body, strlen(body), &err));
	CHECK_INT_EQ(strlen(err.message), sizeof(err.message) - 1);
	free(body);

	/* 2-byte characters: 1023 is odd, so one byte must be dropped */
	body = error_with_message("\xc3\xa9", 1000);
	CHECK(body != NULL);
	CHECK(sp_stripe_error_parse(body, strlen(body), &err));
	CHECK_INT_EQ(strlen(err.message), 1022);
	CHECK(utf8_complete(err.message));
	free(body);

	/* 4-byte emoji: 1023 = 4 * 255 + 3, so three bytes must be dropped */
	body = error_with_message("\xf0\x9f\x98\x80", 1000);
	CHECK(body != NULL);
	CHECK(sp_stripe_error_parse(body, strlen(body), &err));
	CHECK_INT_EQ(strlen(err.message), 1020);
	CHECK(utf8_complete(err.message));
	free(body);

	/* one byte then emoji: cut lands mid-character again */
	body = error_with_message("b\xf0\x9f\x98\x80", 400);
	CHECK(body != NULL);
	CHECK(sp_stripe_error_parse(body, strlen(body), &err));
	CHECK(strlen(err.message) <= 1023 && strlen(err.message) >= 1019);
	CHECK(utf8_complete(err.message));
	free(body);
}

TEST(json_error_invalid_utf8)
{
	SpStripeError err;
	const char *body = "{\"error\":{\"type\":\"api_error\",\"message\":\"\xff\xfe\"}}";

	/* Stripe sends UTF-8; anything else is not a body we understand */
	CHECK(!sp_stripe_error_parse(body, strlen(body), &err));
}

#define NPATHS 24

TEST(json_extract_event)
{
	static const char *const paths[NPATHS] = {
		"id",					/* 0 */
		"data.object.metadata.order_id",	/* 1 */
		"data.object.items.data.0.current_period_end",	/* 2 */
		"livemode",				/* 3 */
		"data.object.cancel_at_period_end",	/* 4 */
		"data.object.canceled_at",	/* 5: null */
		"data.object.missing",	/* 6 */
		"data.object.metadata",	/* 7: object */
		"data.object.items.data.1",	/* 8: object in array */
		"data.object.items.data.2",	/* 9: out of range */
		"data.object.items.data.x",	/* 10: not an index */
		"id.x",					/* 11: member of a string */
		"data.object.rate",		/* 12: double keeps its text */
		"data.object.small",	/* 13 */
		"data.object.big",		/* 14: beyond double precision */
		"data.object.neg",		/* 15 */
		"data.object.name",		/* 16: escapes decoded */
		"data.object.empty",	/* 17 */
		"data.object.tags",		/* 18: empty array */
		"request.id",			/* 19: null */
		"data.object.items.data.0.price.unit_amount",	/* 20 */
		NULL,					/* 21 */
		"data.object.items.data.-1",	/* 22 */
		"",						/* 23: no member named "" */
	};
	const char *values[NPATHS];
	char		arena[4096];

	CHECK_INT_EQ(sp_json_extract(event_body, strlen(event_body), paths, NPATHS,
								 arena, sizeof(arena), values), SP_JSON_OK);
	CHECK_STR_EQ(values[0], "evt_1PxYz");
	CHECK_STR_EQ(values[1], "42");
	CHECK_STR_EQ(values[2], "1702592000");
	CHECK_STR_EQ(values[3], "false");
	CHECK_STR_EQ(values[4], "true");
	CHECK(values[5] == NULL);
	CHECK(values[6] == NULL);
	CHECK_STR_EQ(values[7], "{\"order_id\":\"42\",\"note\":\"a/b \\\"q\\\"\"}");
	CHECK_STR_EQ(values[8], "{\"id\":\"si_2\",\"current_period_end\":1702592001,\"quantity\":2}");
	CHECK(values[9] == NULL);
	CHECK(values[10] == NULL);
	CHECK(values[11] == NULL);
	CHECK_STR_EQ(values[12], "1.50");
	CHECK_STR_EQ(values[13], "-2.5e-3");
	CHECK_STR_EQ(values[14], "9007199254740993");
	CHECK_STR_EQ(values[15], "-7");
	CHECK_STR_EQ(values[16], "Caf\xc3\xa9 \xf0\x9f\x98\x80 / \t");
	CHECK_STR_EQ(values[17], "");
	CHECK_STR_EQ(values[18], "[]");
	CHECK(values[19] == NULL);
	CHECK_STR_EQ(values[20], "1050");
	CHECK(values[21] == NULL);
	CHECK(values[22] == NULL);
	CHECK(values[23] == NULL);

	/* every value lives inside the arena */
	{
		int			i;

		for (i = 0; i < NPATHS; i++)
			if (values[i] != NULL)
				CHECK(values[i] >= arena && values[i] < arena + sizeof(arena));
	}
}

TEST(json_extract_not_nul_terminated)
{
	size_t		len = strlen(event_body);
	char	   *exact = malloc(len);	/* no room for a NUL: ASan watches */
	const char *paths[] = {"type", "created"};
	const char *values[2];
	char		arena[256];

	CHECK(exact != NULL);
	memcpy(exact, event_body, len);
	CHECK_INT_EQ(sp_json_extract(exact, len, paths, 2, arena, sizeof(arena), values),
				 SP_JSON_OK);
	CHECK_STR_EQ(values[0], "customer.subscription.updated");
	CHECK_STR_EQ(values[1], "1700000000");

	/* a bare number at the very end of the buffer */
	memcpy(exact, "12345", 5);
	CHECK_INT_EQ(sp_json_extract(exact, 5, paths, 2, arena, sizeof(arena), values),
				 SP_JSON_OK);
	CHECK(values[0] == NULL);

	/* a prefix of a valid document is a truncated document */
	CHECK_INT_EQ(sp_json_extract(exact, 3, paths, 0, arena, sizeof(arena), values),
				 SP_JSON_OK);	/* "123" is complete */
	memcpy(exact, event_body, len);
	CHECK_INT_EQ(sp_json_extract(exact, len - 1, paths, 2, arena, sizeof(arena), values),
				 SP_JSON_INVALID);
	CHECK(values[0] == NULL && values[1] == NULL);
	free(exact);
}

TEST(json_extract_invalid)
{
	static const char *const bad[] = {
		"", " ", "{", "}", "{\"a\":1", "{\"a\":1} x", "{\"a\":1}{}", "{\"a\":1},",
		"[1,]", "[1 2]", "{\"a\"}", "{a:1}", "nul", "tru", "{\"a\":tru}", "\"abc",
		"\"\xff\"", "{\"a\":\"\xc3\"}", "/* comment */ {}", "01", "-", ".5", "{\"a\":.5}", "{\"a\":01}",
		"{\"a\":1}\x01",
	};
	const char *paths[] = {"a"};
	const char *values[1];
	char		arena[64];
	size_t		i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		values[0] = "sentinel";
		CHECK_INT_EQ(sp_json_extract(bad[i], strlen(bad[i]), paths, 1,
									 arena, sizeof(arena), values),
					 SP_JSON_INVALID);
		CHECK(values[0] == NULL);
	}

	/* a NUL inside the given length is not whitespace */
	CHECK_INT_EQ(sp_json_extract("{\"a\":1}\0", 8, paths, 1, arena, sizeof(arena), values),
				 SP_JSON_INVALID);
	CHECK_INT_EQ(sp_json_extract("{\"a\":\"x\0y\"}", 11, paths, 1, arena, sizeof(arena), values),
				 SP_JSON_INVALID);
	CHECK_INT_EQ(sp_json_extract(NULL, 0, paths, 1, arena, sizeof(arena), values),
				 SP_JSON_INVALID);
	CHECK_INT_EQ(sp_json_extract("{}", 2, paths, -1, arena, sizeof(arena), values),
				 SP_JSON_INVALID);
	CHECK_INT_EQ(sp_json_extract("{}", 2, NULL, 1, arena, sizeof(arena), values),
				 SP_JSON_INVALID);
}

TEST(json_extract_whitespace_and_scalars)
{
	const char *paths[] = {"a"};
	const char *values[1];
	char		arena[64];

	const char *spaced = " \r\n\t{\"a\" : 1 }\n\r\t ";

	CHECK_INT_EQ(sp_json_extract(spaced, strlen(spaced), paths, 1,
								 arena, sizeof(arena), values), SP_JSON_OK);
	CHECK_STR_EQ(values[0], "1");
	CHECK_INT_EQ(sp_json_extract("null", 4, paths, 1, arena, sizeof(arena), values),
				 SP_JSON_OK);
	CHECK(values[0] == NULL);
	CHECK_INT_EQ(sp_json_extract("\"s\"", 3, paths, 1, arena, sizeof(arena), values),
				 SP_JSON_OK);
	CHECK(values[0] == NULL);
	CHECK_INT_EQ(sp_json_extract("[{\"a\":2}]", 9, paths, 1, arena, sizeof(arena), values),
				 SP_JSON_OK);
	CHECK(values[0] == NULL);	/* "a" is not an index */

	/* zero paths just validates */
	CHECK_INT_EQ(sp_json_extract("{}", 2, NULL, 0, NULL, 0, NULL), SP_JSON_OK);

	/* duplicate members: json-c keeps the last, as most parsers do */
	CHECK_INT_EQ(sp_json_extract("{\"a\":1,\"a\":2}", 13, paths, 1, arena, sizeof(arena), values),
				 SP_JSON_OK);
	CHECK_STR_EQ(values[0], "2");
}

TEST(json_extract_arena)
{
	const char *paths[] = {"a", "b"};
	const char *values[2];
	char		arena[16];
	const char *doc = "{\"a\":\"hello\",\"b\":\"world!\"}";

	/* "hello\0world!\0" needs 13 bytes */
	CHECK_INT_EQ(sp_json_extract(doc, strlen(doc), paths, 2, arena, 13, values),
				 SP_JSON_OK);
	CHECK_STR_EQ(values[0], "hello");
	CHECK_STR_EQ(values[1], "world!");

	values[0] = values[1] = "sentinel";
	CHECK_INT_EQ(sp_json_extract(doc, strlen(doc), paths, 2, arena, 12, values),
				 SP_JSON_ARENA_FULL);
	CHECK(values[0] == NULL && values[1] == NULL);

	CHECK_INT_EQ(sp_json_extract(doc, strlen(doc), paths, 2, arena, 5, values),
				 SP_JSON_ARENA_FULL);
	CHECK_INT_EQ(sp_json_extract(doc, strlen(doc), paths, 2, arena, 0, values),
				 SP_JSON_ARENA_FULL);
	CHECK_INT_EQ(sp_json_extract(doc, strlen(doc), paths, 2, NULL, 0, values),
				 SP_JSON_ARENA_FULL);

	/* nulls and missing members take no room */
	CHECK_INT_EQ(sp_json_extract("{\"a\":null}", 10, paths, 2, arena, 0, values),
				 SP_JSON_OK);
	CHECK(values[0] == NULL && values[1] == NULL);

	/* an empty string needs its NUL */
	CHECK_INT_EQ(sp_json_extract("{\"a\":\"\"}", 8, paths, 1, arena, 1, values),
				 SP_JSON_OK);
	CHECK_STR_EQ(values[0], "");
}

TEST(json_extract_unfaithful_values)
{
	const char *paths[] = {"a"};
	const char *values[1];
	char		arena[128];
	static const struct
	{
		const char *doc;
		int			rc;
		const char *value;
	}			cases[] = {
		{"{\"a\":9223372036854775807}", SP_JSON_OK, "9223372036854775807"},
		{"{\"a\":18446744073709551614}", SP_JSON_OK, "18446744073709551614"},
		{"{\"a\":-9223372036854775807}", SP_JSON_OK, "-9223372036854775807"},
		/* numbers keep their text, whatever their size: the caller parses it */
		{"{\"a\":123456789012345678901234567890}", SP_JSON_OK, "123456789012345678901234567890"},
		{"{\"a\":-99999999999999999999}", SP_JSON_OK, "-99999999999999999999"},
		{"{\"a\":[1,{\"b\":99999999999999999999999}]}", SP_JSON_OK,
		"[1,{\"b\":99999999999999999999999}]"},
		/* json-c extensions that are not JSON */
		{"{\"a\":NaN}", SP_JSON_INVALID, NULL},
		{"{\"a\":-Infinity}", SP_JSON_INVALID, NULL},
		{"{\"a\":{\"b\":[Infinity]}}", SP_JSON_INVALID, NULL},
		{"{\"a\":1.}", SP_JSON_INVALID, NULL},
		{"{\"a\":[2.]}", SP_JSON_INVALID, NULL},
		{"{\"a\":1.e5}", SP_JSON_INVALID, NULL},
		{"{\"a\":-0.0e+00}", SP_JSON_OK, "-0.0e+00"},
		{"{\"a\":1E-7}", SP_JSON_OK, "1E-7"},
		/* what numeric (and so jsonb) can hold keeps its text; past it is not JSON to us */
		{"{\"a\":1e999}", SP_JSON_OK, "1e999"},
		{"{\"a\":1e999999}", SP_JSON_INVALID, NULL},
		/* U+0000 cannot live in a PostgreSQL text, anywhere in the document */
		{"{\"a\":\"x\\u0000y\"}", SP_JSON_INVALID, NULL},
		{"{\"a\":[\"x\\u0000y\"]}", SP_JSON_INVALID, NULL},
		/* unselected oddities are refused too: the whole text is checked */
		{"{\"a\":1,\"b\":NaN}", SP_JSON_INVALID, NULL},
	};
	size_t		i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		CHECK_INT_EQ(sp_json_extract(cases[i].doc, strlen(cases[i].doc), paths, 1,
									 arena, sizeof(arena), values), cases[i].rc);
		CHECK_STR_EQ(values[0], cases[i].value);
	}
}

TEST(json_extract_depth)
{
	const char *paths[] = {"0"};
	const char *values[1];
	char		arena[256];
	static char doc[2 * 100000];
	int			depth;

	/* shallow nesting works, deep nesting is refused, absurd nesting too */
	for (depth = 1; depth <= 100000; depth *= 10)
	{
		memset(doc, '[', (size_t) depth);
		memset(doc + depth, ']', (size_t) depth);
		CHECK_INT_EQ(sp_json_extract(doc, 2 * (size_t) depth, paths, 1,
									 arena, sizeof(arena), values),
					 depth <= 10 ? SP_JSON_OK : SP_JSON_INVALID);
	}
	/* an unbalanced deep prefix */
	memset(doc, '[', sizeof(doc));
	CHECK_INT_EQ(sp_json_extract(doc, sizeof(doc), paths, 1, arena, sizeof(arena), values),
				 SP_JSON_INVALID);
}

/*
 * Mutated and truncated documents: every outcome is one of the documented
 * codes, errors leave no value behind, successes point into the arena.
 */
TEST(json_extract_mutations)
{
	static const char special[] = "{}[]\":,\\0123456789eE.-+ntfu\x00\xff\xc3";
	static const char *const paths[] = {
		"id", "data.object.metadata", "data.object.items.data.0.price",
		"data.object.name", "created", "data.object.items.data.1.quantity",
	};
	const int	npaths = (int) (sizeof(paths) / sizeof(paths[0]));
	size_t		len = strlen(event_body);
	char	   *doc = malloc(len);
	uint32_t	seed = 0x0badf00du;
	int			iter;

	CHECK(doc != NULL);
	for (iter = 0; iter < 4000; iter++)
	{
		const char *values[6];
		char		arena[512];
		size_t		arena_size = (iter % 3 == 0) ? 40 : sizeof(arena);
		size_t		dlen = len;
		int			nmut = 1 + (int) (rng_next(&seed) % 4);
		int			m;
		int			rc;
		int			i;
		SpStripeError err;

		memcpy(doc, event_body, len);
		for (m = 0; m < nmut; m++)
		{
			size_t		at = rng_next(&seed) % len;

			doc[at] = (rng_next(&seed) & 1) ? (char) rng_next(&seed)
				: special[rng_next(&seed) % (sizeof(special) - 1)];
		}
		if (iter % 5 == 0)
			dlen = rng_next(&seed) % (len + 1);

		rc = sp_json_extract(doc, dlen, paths, npaths, arena, arena_size, values);
		CHECK(rc == SP_JSON_OK || rc == SP_JSON_INVALID || rc == SP_JSON_ARENA_FULL);
		for (i = 0; i < npaths; i++)
		{
			if (rc != SP_JSON_OK)
				CHECK(values[i] == NULL);
			else if (values[i] != NULL)
			{
				CHECK(values[i] >= arena && values[i] < arena + arena_size);
				CHECK(memchr(values[i], '\0', (size_t) (arena + arena_size - values[i])) != NULL);
			}
		}
		sp_stripe_error_parse(doc, dlen, &err);
	}
	free(doc);
}

TEST(json_random_bytes)
{
	uint32_t	seed = 0xfeedbeefu;
	int			iter;

	for (iter = 0; iter < 3000; iter++)
	{
		size_t		len = rng_next(&seed) % 64;
		char	   *buf = malloc(len > 0 ? len : 1);
		const char *paths[] = {"a", "a.0.b"};
		const char *values[2];
		char		arena[64];
		size_t		i;
		int			rc;
		SpStripeError err;
		SpJsonItem	items[2];
		bool		more;
		int			nlist;

		CHECK(buf != NULL);
		for (i = 0; i < len; i++)
			buf[i] = (iter & 1) ? (char) rng_next(&seed)
				: "{}[]\":,0a1 \\e"[rng_next(&seed) % 13];

		rc = sp_json_extract(buf, len, paths, 2, arena, sizeof(arena), values);
		sp_stripe_error_parse(buf, len, &err);
		nlist = sp_json_list(buf, len, items, 2, &more, arena, sizeof(arena));
		free(buf);
		CHECK(rc == SP_JSON_OK || rc == SP_JSON_INVALID || rc == SP_JSON_ARENA_FULL);
		CHECK((nlist >= 0 && nlist <= 2) || nlist == SP_JSON_INVALID || nlist == SP_JSON_ARENA_FULL);
	}
}

/* GET /v1/events as Stripe answers it, pretty-printed, newest first */
static const char event_list_body[] =
"{\n"
"  \"object\": \"list\",\n"
"  \"data\": [\n"
"    {\"id\": \"evt_2\", \"object\": \"event\", \"created\": 1700000001,\n"
"     \"data\": {\"object\": {\"id\": \"pi_1\", \"note\": \"caf\\u00e9 a/b \\\"q\\\"\", \"n\": 1.50}}},\n"
"    {\"id\": \"evt_1\", \"object\": \"event\", \"created\": 1700000000, \"data\": {\"object\": {}}}\n"
"  ],\n"
"  \"has_more\": true,\n"
"  \"url\": \"/v1/events\"\n"
"}\n";

TEST(json_list_splits_a_page)
{
	SpJsonItem	items[4];
	bool		more = false;
	char		arena[1024];
	int			n = sp_json_list(event_list_body, strlen(event_list_body), items, 4, &more,
								 arena, sizeof(arena));

	CHECK_INT_EQ(n, 2);
	CHECK(more);
	CHECK_STR_EQ(items[0].id, "evt_2");
	CHECK_STR_EQ(items[1].id, "evt_1");
	/* each item's text exactly as it stands in the page */
	CHECK_STR_EQ(items[0].json,
				 "{\"id\": \"evt_2\", \"object\": \"event\", \"created\": 1700000001,\n"
				 "     \"data\": {\"object\": {\"id\": \"pi_1\", \"note\": \"caf\\u00e9 a/b \\\"q\\\"\", \"n\": 1.50}}}");
	CHECK_INT_EQ((long long) items[0].json_len, (long long) strlen(items[0].json));
	CHECK_STR_EQ(items[1].json,
				 "{\"id\": \"evt_1\", \"object\": \"event\", \"created\": 1700000000, \"data\": {\"object\": {}}}");
	CHECK(items[0].json >= arena && items[1].json < arena + sizeof(arena));
}

TEST(json_list_empty_and_last_page)
{
	static const char empty[] = "{\"object\":\"list\",\"data\":[],\"has_more\":false}";
	static const char no_more[] = "{\"object\":\"list\",\"data\":[{\"id\":\"we_1\"}]}";
	SpJsonItem	items[1];
	bool		more = true;
	char		arena[64];

	CHECK_INT_EQ(sp_json_list(empty, strlen(empty), items, 1, &more, arena, sizeof(arena)), 0);
	CHECK(!more);
	more = true;
	CHECK_INT_EQ(sp_json_list(no_more, strlen(no_more), items, 1, &more, arena, sizeof(arena)), 1);
	CHECK(!more);
	CHECK_STR_EQ(items[0].id, "we_1");
}

TEST(json_list_refuses_what_is_not_a_list)
{
	static const char *const bad[] = {
		"[]", "{}", "{\"data\":{}}", "{\"data\":[1]}", "{\"data\":[{}]}",
		"{\"data\":[{\"id\":7}]}", "{\"data\":[{\"id\":null}]}",
		"{\"data\":[{\"id\":\"a\\u0000b\"}]}", "{\"data\":[],\"has_more\":\"yes\"}",
		"{\"data\":[{\"id\":\"x\",\"n\":1e999999}]}",
		"{\"data\":[{\"id\":\"a\"},{\"id\":\"b\"}]}",	/* more than max_items */
		"{\"data\":[", "not json",
	};
	size_t		i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		SpJsonItem	items[1];
		bool		more = true;
		char		arena[256];
		int			rc = sp_json_list(bad[i], strlen(bad[i]), items, 1, &more, arena, sizeof(arena));

		if (rc != SP_JSON_INVALID || more)
		{
			unit_fail(__FILE__, __LINE__, "case %zu (%s): rc %d", i, bad[i], rc);
			return;
		}
	}
}

TEST(json_list_arena_full)
{
	SpJsonItem	items[2];
	bool		more = true;
	char		arena[40];

	CHECK_INT_EQ(sp_json_list(event_list_body, strlen(event_list_body), items, 2, &more,
							  arena, sizeof(arena)), SP_JSON_ARENA_FULL);
	CHECK(!more);
	CHECK_INT_EQ(sp_json_list(event_list_body, strlen(event_list_body), items, 2, &more,
							  NULL, 0), SP_JSON_ARENA_FULL);
}

void
unit_suite_json(void)
{
	RUN(json_error_card_error);
	RUN(json_error_invalid_request);
	RUN(json_error_odd_fields);
	RUN(json_error_not_error_shape);
	RUN(json_error_truncation);
	RUN(json_error_invalid_utf8);
	RUN(json_extract_event);
	RUN(json_extract_not_nul_terminated);
	RUN(json_extract_invalid);
	RUN(json_extract_whitespace_and_scalars);
	RUN(json_extract_arena);
	RUN(json_extract_unfaithful_values);
	RUN(json_extract_depth);
	RUN(json_extract_mutations);
	RUN(json_random_bytes);
	RUN(json_list_splits_a_page);
	RUN(json_list_empty_and_last_page);
	RUN(json_list_refuses_what_is_not_a_list);
	RUN(json_list_arena_full);
}
