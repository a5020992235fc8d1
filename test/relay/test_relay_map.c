/*-------------------------------------------------------------------------
 *
 * test_relay_map.c
 *		Unit tests of src/relay/relay_map.c: routes, the SQLSTATE to HTTP
 *		mapping, JSON bodies, log lines, option parsing and path unescaping.
 *
 * Built under AddressSanitizer and UBSan by test/relay/Makefile; prints one
 * line per check that fails and "relay-unit: N passed, M failed".
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay_map.h"

static int	passed;
static int	failed;

#define CHECK(cond) \
	do { \
		if (cond) \
			passed++; \
		else \
		{ \
			failed++; \
			printf("not ok - %s:%d: %s\n", __FILE__, __LINE__, #cond); \
		} \
	} while (0)

#define CHECK_STR(actual, expected) \
	do { \
		const char *a_ = (actual); \
		const char *e_ = (expected); \
		if (a_ != NULL && strcmp(a_, e_) == 0) \
			passed++; \
		else \
		{ \
			failed++; \
			printf("not ok - %s:%d: got \"%s\", expected \"%s\"\n", \
				   __FILE__, __LINE__, a_ ? a_ : "(null)", e_); \
		} \
	} while (0)

static void
test_routes(void)
{
	char		ep[RELAY_ENDPOINT_BUFSIZE];
	char		long_name[80];
	char		path[100];

	CHECK(relay_route("/stripe", ep, sizeof(ep)) == RELAY_ROUTE_WEBHOOK);
	CHECK_STR(ep, "");
	CHECK(relay_route("/stripe/payments", ep, sizeof(ep)) == RELAY_ROUTE_WEBHOOK);
	CHECK_STR(ep, "payments");
	CHECK(relay_route("/stripe/a-b_c.D9", ep, sizeof(ep)) == RELAY_ROUTE_WEBHOOK);
	CHECK_STR(ep, "a-b_c.D9");
	CHECK(relay_route("/healthz", ep, sizeof(ep)) == RELAY_ROUTE_HEALTHZ);

	CHECK(relay_route("/stripe/", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK_STR(ep, "");
	CHECK(relay_route("/stripe/a/b", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route("/stripe/a b", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route("/stripe/caf\xc3\xa9", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route("/stripe/x'y", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route("/stripes", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route("/Stripe", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route("/stripe/x/", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route("/healthz/", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route("/", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route("", ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	CHECK(relay_route(NULL, ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);

	/* 64 characters is the longest name, 65 is too long */
	memset(long_name, 'a', 64);
	long_name[64] = '\0';
	snprintf(path, sizeof(path), "/stripe/%s", long_name);
	CHECK(relay_route(path, ep, sizeof(ep)) == RELAY_ROUTE_WEBHOOK);
	CHECK_STR(ep, long_name);
	strcat(path, "a");
	CHECK(relay_route(path, ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	/* a buffer too small for a valid name is not overrun */
	CHECK(relay_route("/stripe/payments", ep, 5) == RELAY_ROUTE_NOT_FOUND);

	CHECK(relay_endpoint_valid("x", 1));
	CHECK(!relay_endpoint_valid("", 0));
	CHECK(!relay_endpoint_valid("a\0b", 3));
}

static void
test_sqlstates(void)
{
	static const struct
	{
		const char *sqlstate;
		int			status;
		bool		retry;
	}			cases[] = {
		{"SP020", 400, false},	/* no signature */
		{"SP021", 400, false},
		{"SP022", 400, false},
		{"SP023", 400, false},	/* stale */
		{"SP024", 400, false},
		{"SP025", 400, false},	/* no secret for the endpoint */
		{"SP026", 400, false},	/* bad signature */
		{"SP027", 400, false},	/* not JSON */
		{"SP028", 400, false},	/* not an event */
		{"SP029", 400, false},	/* livemode mismatch */
		{"22021", 400, false},	/* bytes not valid in the encoding */
		{"SP010", 500, false},	/* not configured: the admin must act */
		{"SP001", 500, false},
		{"P0001", 500, false},	/* a user trigger raised */
		{"23505", 500, false},
		{"42883", 500, false},	/* the extension is missing */
		{"42501", 500, false},	/* the role may not ingest */
		{"XX000", 500, false},
		{"08006", 503, true},	/* connection failure */
		{"08000", 503, true},
		{"57P01", 503, true},	/* admin shutdown */
		{"57P02", 503, true},
		{"57P03", 503, true},
		{"40001", 503, true},	/* serialization failure */
		{"40P01", 503, true},	/* deadlock */
		{"53300", 503, false},	/* too many connections */
		{"53100", 503, false},
		{"55P03", 503, false},
		{"58030", 503, false},
		{"57014", 504, false},	/* statement timeout */
	};
	size_t		i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		RelayErrorClass cls = relay_classify_sqlstate(cases[i].sqlstate);

		if (relay_error_http_status(cls) == cases[i].status &&
			relay_error_retryable(cls) == cases[i].retry)
			passed++;
		else
		{
			failed++;
			printf("not ok - %s: got %d%s, expected %d%s\n", cases[i].sqlstate,
				   relay_error_http_status(cls), relay_error_retryable(cls) ? " (retry)" : "",
				   cases[i].status, cases[i].retry ? " (retry)" : "");
		}
	}
	/* no SQLSTATE: libpq lost the server */
	CHECK(relay_classify_sqlstate(NULL) == RELAY_ERR_CONNECTION);
	CHECK(relay_classify_sqlstate("") == RELAY_ERR_CONNECTION);
	CHECK(relay_classify_sqlstate("SP02") == RELAY_ERR_CONNECTION);
	CHECK(relay_classify_sqlstate("SP0200") == RELAY_ERR_CONNECTION);
}

static void
test_json(void)
{
	char	   *s;

	s = relay_json_ingested("evt_1", "payment_intent.succeeded", false);
	CHECK_STR(s, "{\"event_id\": \"evt_1\", \"event_type\": \"payment_intent.succeeded\", "
			  "\"already_processed\": false}\n");
	free(s);
	s = relay_json_ingested("evt_\"x\\", "a", true);
	CHECK_STR(s, "{\"event_id\": \"evt_\\\"x\\\\\", \"event_type\": \"a\", "
			  "\"already_processed\": true}\n");
	free(s);
	s = relay_json_error("webhook signature does not match", "SP026");
	CHECK_STR(s, "{\"error\": \"webhook signature does not match\", \"sqlstate\": \"SP026\"}\n");
	free(s);
	s = relay_json_error("not found", NULL);
	CHECK_STR(s, "{\"error\": \"not found\"}\n");
	free(s);
	s = relay_json_error("a\nb\tc\x01\x7f caf\xc3\xa9", "");
	CHECK_STR(s, "{\"error\": \"a\\nb\\tc\\u0001\\u007f caf\xc3\xa9\"}\n");
	free(s);

	/* growth across many appends */
	{
		RelayBuf	buf = {0};
		int			i;

		for (i = 0; i < 1000; i++)
			relay_buf_puts(&buf, "0123456789");
		s = relay_buf_finish(&buf);
		CHECK(s != NULL && strlen(s) == 10000);
		free(s);
	}
}

static void
test_log(void)
{
	char		out[256];
	char		small[8];
	struct timespec ts = {1764180600, 123456789};	/* 2025-11-26T18:10:00.123Z */

	relay_format_time(out, sizeof(out), &ts);
	CHECK_STR(out, "2025-11-26T18:10:00.123Z");

	relay_format_log(out, sizeof(out), &ts, "POST", "/stripe/payments", "payments",
					 "evt_1", 200, 12, 1, "");
	CHECK_STR(out, "2025-11-26T18:10:00.123Z POST /stripe/payments endpoint=payments "
			  "event=evt_1 status=200 ms=12\n");
	relay_format_log(out, sizeof(out), &ts, "POST", "/stripe", "*", NULL, 400, 3, 0, "SP026");
	CHECK_STR(out, "2025-11-26T18:10:00.123Z POST /stripe endpoint=* event=- status=400 "
			  "ms=3 sqlstate=SP026\n");

	/* what a client sent cannot forge a line or a field */
	relay_format_log(out, sizeof(out), &ts, "GET", "/x y\nstatus=200 {\"a\"}", "-",
					 "evt\n1", 404, 0, 1, NULL);
	CHECK_STR(out, "2025-11-26T18:10:00.123Z GET /x?y?status?200???a?? endpoint=- "
			  "event=evt?1 status=404 ms=0\n");

	/* an event committed with others says how many shared the commit */
	relay_format_log(out, sizeof(out), &ts, "POST", "/stripe", "*", "evt_2", 200, 4, 17, "");
	CHECK_STR(out, "2025-11-26T18:10:00.123Z POST /stripe endpoint=* event=evt_2 status=200 "
			  "ms=4 batch=17\n");
	relay_format_log(out, sizeof(out), &ts, "POST", "/stripe", "*", NULL, 500, 4, 2, "P0001");
	CHECK_STR(out, "2025-11-26T18:10:00.123Z POST /stripe endpoint=* event=- status=500 "
			  "ms=4 batch=2 sqlstate=P0001\n");

	relay_log_safe(small, sizeof(small), "/abcdefghij");
	CHECK_STR(small, "/abc...");
	relay_log_safe(small, sizeof(small), "/abcdef");
	CHECK_STR(small, "/abcdef");
	relay_log_safe(small, sizeof(small), "");
	CHECK_STR(small, "-");
}

static void
test_parsing(void)
{
	char		host[64];
	char		port[8];
	long		v;

	CHECK(relay_parse_listen("127.0.0.1:8787", host, sizeof(host), port, sizeof(port)));
	CHECK_STR(host, "127.0.0.1");
	CHECK_STR(port, "8787");
	CHECK(relay_parse_listen("[::1]:80", host, sizeof(host), port, sizeof(port)));
	CHECK_STR(host, "::1");
	CHECK_STR(port, "80");
	CHECK(relay_parse_listen(":9000", host, sizeof(host), port, sizeof(port)));
	CHECK_STR(host, "");
	CHECK(relay_parse_listen("localhost:1", host, sizeof(host), port, sizeof(port)));
	CHECK_STR(host, "localhost");
	CHECK(!relay_parse_listen("127.0.0.1", host, sizeof(host), port, sizeof(port)));
	CHECK(!relay_parse_listen("127.0.0.1:", host, sizeof(host), port, sizeof(port)));
	CHECK(!relay_parse_listen("127.0.0.1:0", host, sizeof(host), port, sizeof(port)));
	CHECK(!relay_parse_listen("127.0.0.1:65536", host, sizeof(host), port, sizeof(port)));
	CHECK(!relay_parse_listen("127.0.0.1:80x", host, sizeof(host), port, sizeof(port)));
	CHECK(!relay_parse_listen("::1:80", host, sizeof(host), port, sizeof(port)));
	CHECK(!relay_parse_listen("[::1]80", host, sizeof(host), port, sizeof(port)));
	CHECK(!relay_parse_listen("[]:80", host, sizeof(host), port, sizeof(port)));
	CHECK(!relay_parse_listen(NULL, host, sizeof(host), port, sizeof(port)));

	CHECK(relay_parse_long("4", 1, 100, &v) && v == 4);
	CHECK(!relay_parse_long("0", 1, 100, &v));
	CHECK(!relay_parse_long("101", 1, 100, &v));
	CHECK(!relay_parse_long("-1", -5, 100, &v));
	CHECK(!relay_parse_long(" 4", 1, 100, &v));
	CHECK(!relay_parse_long("4 ", 1, 100, &v));
	CHECK(!relay_parse_long("", 1, 100, &v));
	CHECK(!relay_parse_long("99999999999999999999999", 1, 100, &v));

	{
		bool		b = false;

		CHECK(relay_parse_bool("on", &b) && b);
		CHECK(relay_parse_bool("OFF", &b) && !b);
		CHECK(relay_parse_bool("true", &b) && b);
		CHECK(relay_parse_bool("0", &b) && !b);
		CHECK(relay_parse_bool("yes", &b) && b);
		CHECK(!relay_parse_bool("", &b));
		CHECK(!relay_parse_bool("onn", &b));
		CHECK(!relay_parse_bool("2", &b));
		CHECK(!relay_parse_bool(NULL, &b));
	}

	CHECK(relay_parse_size("1048576", 1, 1 << 26, &v) && v == 1048576);
	CHECK(relay_parse_size("1M", 1, 1 << 26, &v) && v == 1048576);
	CHECK(relay_parse_size("64k", 1, 1 << 26, &v) && v == 65536);
	CHECK(!relay_parse_size("65M", 1, 1 << 26, &v));
	CHECK(!relay_parse_size("M", 1, 1 << 26, &v));
	CHECK(!relay_parse_size("1G", 1, 1 << 26, &v));
	CHECK(!relay_parse_size("0", 1, 1 << 26, &v));
	CHECK(!relay_parse_size("", 1, 1 << 26, &v));
}

static void
test_unescape(void)
{
	char		s[64];
	char		ep[RELAY_ENDPOINT_BUFSIZE];

	strcpy(s, "/stripe/%70ayments%2F%2fx");
	CHECK(relay_unescape_path(s) == strlen("/stripe/payments//x"));
	CHECK_STR(s, "/stripe/payments//x");
	/* a decoded NUL would cut the route short: it stays encoded */
	strcpy(s, "/stripe%00/payments");
	relay_unescape_path(s);
	CHECK_STR(s, "/stripe%00/payments");
	CHECK(relay_route(s, ep, sizeof(ep)) == RELAY_ROUTE_NOT_FOUND);
	/* a '%' without two hex digits stays, even at the end */
	strcpy(s, "/a%zz%4%");
	relay_unescape_path(s);
	CHECK_STR(s, "/a%zz%4%");
	strcpy(s, "%e2%82%ac");
	relay_unescape_path(s);
	CHECK_STR(s, "\xe2\x82\xac");
	strcpy(s, "");
	CHECK(relay_unescape_path(s) == 0);
}

int
main(void)
{
	test_routes();
	test_sqlstates();
	test_json();
	test_log();
	test_parsing();
	test_unescape();
	printf("relay-unit: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
