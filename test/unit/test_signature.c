/*-------------------------------------------------------------------------
 *
 * test_signature.c
 *		Unit tests for sp_signature: Stripe-Signature parsing and checking
 *
 * The expected digests were computed independently while writing the
 * tests (python's hmac module and `openssl dgst -sha256 -hmac`), then
 * hard-coded; test/webhook/ cross-checks against Stripe's node SDK.
 *
 *-------------------------------------------------------------------------
 */
#include "unit.h"
#include "sp_signature.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SECRET		"whsec_test_secret"
#define SECRET2		"whsec_second_secret"
#define T0			1700000000LL
#define PAYLOAD		"{\"id\":\"evt_1\",\"object\":\"event\"}"

/* HMAC-SHA256(SECRET, "1700000000." PAYLOAD) */
#define SIG_A		"0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd"
/* HMAC-SHA256(SECRET2, "1700000000." PAYLOAD) */
#define SIG_B		"2b48914dc1da835a2980311dea8e75bede0d739725dd95e54bda90c6f1cca68e"
/* HMAC-SHA256(SECRET, "1700000000.") */
#define SIG_EMPTY	"316b9ab98c15bfa039d243f3196acee619cf29749a91a634e6a8154e2f7b6727"
/* HMAC-SHA256(SECRET, "42.{\"a\":1}") */
#define SIG_T42		"592455fb20b0ed7be91f280f6223850d9070e7a6c5abc35f0519b7401032bad5"
/* a well-formed signature that matches nothing */
#define SIG_ZERO	"0000000000000000000000000000000000000000000000000000000000000000"

static const char *const one_secret[] = {SECRET};

/* parse + verify of a NUL-terminated header against PAYLOAD, one secret */
static SpSigResult
check(const char *header, long long now)
{
	int			matched;

	return sp_sig_check(header, strlen(header), PAYLOAD, strlen(PAYLOAD),
						one_secret, 1, now, 300, &matched);
}

static SpSigResult
parse(const char *header)
{
	SpSigHeader h;

	return sp_sig_parse(header, strlen(header), &h);
}

TEST(sig_known_vector)
{
	char		buf[SP_SIG_HEADER_BUFSIZE];
	SpSigHeader h;
	int			matched = 99;
	int			n;

	n = sp_sig_make_header(SECRET, T0, PAYLOAD, strlen(PAYLOAD), buf, sizeof(buf));
	CHECK_STR_EQ(buf, "t=1700000000,v1=" SIG_A);
	CHECK_INT_EQ(n, strlen("t=1700000000,v1=" SIG_A));

	CHECK_INT_EQ(sp_sig_parse(buf, (size_t) n, &h), SP_SIG_OK);
	CHECK_INT_EQ(h.timestamp, T0);
	CHECK_INT_EQ(h.nv1, 1);
	CHECK_INT_EQ(h.v1[0][0], 0x0c);
	CHECK_INT_EQ(h.v1[0][31], 0xdd);
	CHECK_INT_EQ(sp_sig_verify(&h, PAYLOAD, strlen(PAYLOAD), one_secret, 1,
							   T0, 300, &matched), SP_SIG_OK);
	CHECK_INT_EQ(matched, 0);
}

TEST(sig_known_vector_empty_payload)
{
	char		buf[SP_SIG_HEADER_BUFSIZE];
	int			matched;

	CHECK(sp_sig_make_header(SECRET, T0, NULL, 0, buf, sizeof(buf)) > 0);
	CHECK_STR_EQ(buf, "t=1700000000,v1=" SIG_EMPTY);
	CHECK_INT_EQ(sp_sig_check(buf, strlen(buf), NULL, 0, one_secret, 1, T0, 300,
							  &matched), SP_SIG_OK);
	CHECK_INT_EQ(sp_sig_check(buf, strlen(buf), "", 0, one_secret, 1, T0, 300,
							  &matched), SP_SIG_OK);
}

/* The SDKs sign the parsed number, so leading zeros do not count. */
TEST(sig_timestamp_signed_as_parsed_number)
{
	const char *hdr = "t=0042,v1=" SIG_T42;
	int			matched;

	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), "{\"a\":1}", 7, one_secret, 1,
							  42, 0, &matched), SP_SIG_OK);
	CHECK_INT_EQ(matched, 0);
}

TEST(sig_no_header)
{
	SpSigHeader h;
	int			matched = 5;

	CHECK_INT_EQ(sp_sig_parse(NULL, 10, &h), SP_SIG_NO_HEADER);
	CHECK_INT_EQ(sp_sig_parse("t=1", 0, &h), SP_SIG_NO_HEADER);
	CHECK_INT_EQ(sp_sig_parse("", 0, &h), SP_SIG_NO_HEADER);
	CHECK_INT_EQ(sp_sig_check(NULL, 0, PAYLOAD, strlen(PAYLOAD), one_secret, 1,
							  T0, 300, &matched), SP_SIG_NO_HEADER);
	CHECK_INT_EQ(matched, -1);
	CHECK_INT_EQ(sp_sig_verify(NULL, PAYLOAD, 1, one_secret, 1, T0, 300, &matched),
				 SP_SIG_NO_HEADER);
	CHECK_INT_EQ(sp_sig_parse("t=1,v1=" SIG_A, 7 + 64, NULL), SP_SIG_MALFORMED);
}

TEST(sig_malformed_headers)
{
	static const char *const bad[] = {
		"t=",
		"t=abc",
		"t=abc,v1=" SIG_A,
		"t",
		",,,",
		",",
		"v1=zz",
		"t=1,v1=zz",
		"=",
		"=x,t=1,v1=" SIG_A,
		"t=1,novalue,v1=" SIG_A,
		"t=1,,v1=" SIG_A,
		",t=1,v1=" SIG_A,
		"t=1,v1=" SIG_A ",",
		"v1=" SIG_A,			/* no t */
		"t=-1,v1=" SIG_A,
		"t=+1,v1=" SIG_A,
		"t= 1,v1=" SIG_A,
		"t=1 ,v1=" SIG_A,
		"t=0x10,v1=" SIG_A,
		"t=1.5,v1=" SIG_A,
		"t=1,t=1,v1=" SIG_A,	/* duplicate t: the SDKs disagree */
		"t=1,v1=" SIG_A ",t=2",
		"t=9223372036854775808,v1=" SIG_A,	/* LLONG_MAX + 1 */
		"t=99999999999999999999999,v1=" SIG_A,
		"t=1,v1=" SIG_A "0",	/* 65 digits */
		"t=1,v1=0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6ed",
		"t=1,v1=0C8670ED117751CC551A20E35839447075C42800EA3CF3E8A2FBDA99CD1E6EDD",
		"t=1,v1=" SIG_A " ",
		"t=1,v1= " SIG_A,
		"t=1,v1=" SIG_A "=",
		"t=1,v1=",
		"t=1,v1=g000000000000000000000000000000000000000000000000000000000000000",
		"t=1, v1=" SIG_A "\r\n",
		"\tt=1,v1=" SIG_A,
		"t=1,v1=" SIG_A ",x=\xc3\xa9",	/* non-ASCII, even in an ignored pair */
		"t=1,v1=" SIG_A ",x=\x7f",
	};
	size_t		i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		SpSigHeader h;
		SpSigResult r;

		memset(&h, 0xAB, sizeof(h));
		r = sp_sig_parse(bad[i], strlen(bad[i]), &h);
		if (r != SP_SIG_MALFORMED)
		{
			unit_fail(__FILE__, __LINE__, "header %zu \"%s\": %s", i, bad[i],
					  sp_sig_result_name(r));
			return;
		}
		/* nothing half-parsed is left behind */
		CHECK_INT_EQ(h.timestamp, 0);
		CHECK_INT_EQ(h.nv1, 0);
		CHECK_INT_EQ(h.v1[0][0], 0);
	}
}

TEST(sig_no_v1)
{
	CHECK_INT_EQ(parse("t=1"), SP_SIG_NO_V1);
	CHECK_INT_EQ(parse("t=1700000000,v0=" SIG_A), SP_SIG_NO_V1);
	/* not trimmed, as in the SDKs: " v1" and "V1" are other schemes */
	CHECK_INT_EQ(parse("t=1700000000, v1=" SIG_A), SP_SIG_NO_V1);
	CHECK_INT_EQ(parse("t=1700000000,V1=" SIG_A), SP_SIG_NO_V1);
	CHECK_INT_EQ(parse("t=1700000000,v2=" SIG_A), SP_SIG_NO_V1);
	CHECK_INT_EQ(check("t=1700000000,v0=" SIG_A, T0), SP_SIG_NO_V1);
}

TEST(sig_no_v1_keeps_timestamp)
{
	SpSigHeader h;
	SpSigHeader empty;
	int			matched;

	CHECK_INT_EQ(sp_sig_parse("t=77,v0=x", 9, &h), SP_SIG_NO_V1);
	CHECK_INT_EQ(h.timestamp, 77);
	CHECK_INT_EQ(h.nv1, 0);
	memset(&empty, 0, sizeof(empty));
	CHECK_INT_EQ(sp_sig_verify(&empty, PAYLOAD, strlen(PAYLOAD), one_secret, 1,
							   0, 300, &matched), SP_SIG_NO_V1);
}

TEST(sig_timestamp_range)
{
	SpSigHeader h;
	const char *max = "t=9223372036854775807,v1=" SIG_A;
	const char *zero = "t=0,v1=" SIG_A;

	CHECK_INT_EQ(sp_sig_parse(max, strlen(max), &h), SP_SIG_OK);
	CHECK_INT_EQ(h.timestamp, LLONG_MAX);
	CHECK_INT_EQ(sp_sig_parse(zero, strlen(zero), &h), SP_SIG_OK);
	CHECK_INT_EQ(h.timestamp, 0);
}

TEST(sig_several_v1_one_matches)
{
	int			matched;
	const char *hdr = "t=1700000000,v1=" SIG_ZERO ",v1=" SIG_B ",v1=" SIG_A;

	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0, 300, &matched), SP_SIG_OK);
	CHECK_INT_EQ(matched, 0);
}

TEST(sig_v0_and_unknown_schemes_ignored)
{
	/* the right digest under v0 does not count ... */
	CHECK_INT_EQ(check("t=1700000000,v1=" SIG_ZERO ",v0=" SIG_A, T0),
				 SP_SIG_MISMATCH);
	/* ... and anything else around a good v1 does not hurt */
	CHECK_INT_EQ(check("v0=" SIG_ZERO ",t=1700000000,foo=bar,empty=,v1=" SIG_A
					   ",v0=whatever,future_scheme=a=b", T0), SP_SIG_OK);
	CHECK_INT_EQ(check("t=1700000000,v1=" SIG_A ",v0=" SIG_ZERO, T0), SP_SIG_OK);
}

TEST(sig_max_v1)
{
	char		hdr[1024];
	SpSigHeader h;
	int			i;

	/* eight: the last one matches */
	strcpy(hdr, "t=1700000000");
	for (i = 0; i < SP_SIG_MAX_V1 - 1; i++)
		strcat(hdr, ",v1=" SIG_ZERO);
	strcat(hdr, ",v1=" SIG_A);
	CHECK_INT_EQ(sp_sig_parse(hdr, strlen(hdr), &h), SP_SIG_OK);
	CHECK_INT_EQ(h.nv1, SP_SIG_MAX_V1);
	CHECK_INT_EQ(check(hdr, T0), SP_SIG_OK);

	/* nine: refused as a whole, not cut to eight */
	strcat(hdr, ",v1=" SIG_ZERO);
	CHECK_INT_EQ(sp_sig_parse(hdr, strlen(hdr), &h), SP_SIG_MALFORMED);
	CHECK_INT_EQ(check(hdr, T0), SP_SIG_MALFORMED);
}

TEST(sig_one_byte_changes_refused)
{
	char		payload[] = PAYLOAD;
	char		hdr[] = "t=1700000000,v1=" SIG_A;
	size_t		sig_at = strlen("t=1700000000,v1=");
	size_t		i;
	int			matched;

	CHECK_INT_EQ(check(hdr, T0), SP_SIG_OK);

	/* every byte of the payload, every bit */
	for (i = 0; i < sizeof(payload) - 1; i++)
	{
		int			bit;

		for (bit = 0; bit < 8; bit++)
		{
			payload[i] ^= (char) (1 << bit);
			CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), payload, strlen(PAYLOAD),
									  one_secret, 1, T0, 300, &matched),
						 SP_SIG_MISMATCH);
			CHECK_INT_EQ(matched, -1);
			payload[i] ^= (char) (1 << bit);
		}
	}

	/* a byte more or less */
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD) - 1,
							  one_secret, 1, T0, 300, &matched), SP_SIG_MISMATCH);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD "\n", strlen(PAYLOAD) + 1,
							  one_secret, 1, T0, 300, &matched), SP_SIG_MISMATCH);

	/* every digit of the timestamp */
	for (i = 2; i < strlen("t=1700000000"); i++)
	{
		char		saved = hdr[i];

		hdr[i] = saved == '9' ? '8' : (char) (saved + 1);
		CHECK_INT_EQ(check(hdr, T0), SP_SIG_MISMATCH);
		hdr[i] = saved;
	}

	/* every hex digit of the signature */
	for (i = sig_at; i < strlen(hdr); i++)
	{
		char		saved = hdr[i];

		hdr[i] = saved == 'f' ? '0' : (saved == '9' ? 'a' : (char) (saved + 1));
		CHECK_INT_EQ(check(hdr, T0), SP_SIG_MISMATCH);
		hdr[i] = saved;
	}
	CHECK_INT_EQ(check(hdr, T0), SP_SIG_OK);
}

TEST(sig_binary_payload)
{
	static const char payload[] = "a\0b\r\n\xff\x00";
	char		buf[SP_SIG_HEADER_BUFSIZE];
	int			matched;
	int			n;

	n = sp_sig_make_header(SECRET, T0, payload, sizeof(payload), buf, sizeof(buf));
	CHECK(n > 0);
	CHECK_INT_EQ(sp_sig_check(buf, (size_t) n, payload, sizeof(payload),
							  one_secret, 1, T0, 300, &matched), SP_SIG_OK);
	/* stopping at the first NUL would have been a different message */
	CHECK_INT_EQ(sp_sig_check(buf, (size_t) n, payload, 1,
							  one_secret, 1, T0, 300, &matched), SP_SIG_MISMATCH);
}

TEST(sig_tolerance_edges)
{
	const char *hdr = "t=1700000000,v1=" SIG_A;
	int			matched = 7;

	CHECK_INT_EQ(check(hdr, T0), SP_SIG_OK);
	CHECK_INT_EQ(check(hdr, T0 + 300), SP_SIG_OK);
	CHECK_INT_EQ(check(hdr, T0 + 301), SP_SIG_TOO_OLD);
	CHECK_INT_EQ(check(hdr, T0 - 300), SP_SIG_OK);
	CHECK_INT_EQ(check(hdr, T0 - 301), SP_SIG_IN_FUTURE);
	CHECK_INT_EQ(check(hdr, LLONG_MAX), SP_SIG_TOO_OLD);
	CHECK_INT_EQ(check(hdr, LLONG_MIN), SP_SIG_IN_FUTURE);
	CHECK_INT_EQ(check(hdr, 0), SP_SIG_IN_FUTURE);

	/* authentic but stale still says which secret signed it */
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0 + 3600, 300, &matched),
				 SP_SIG_TOO_OLD);
	CHECK_INT_EQ(matched, 0);

	/* tolerance 0: only the same second; negative counts as 0 */
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0, 0, &matched), SP_SIG_OK);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0 + 1, 0, &matched), SP_SIG_TOO_OLD);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0 - 1, -5, &matched), SP_SIG_IN_FUTURE);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0, LLONG_MIN, &matched), SP_SIG_OK);
	/* huge values do not wrap around: the true distance counts */
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, 0, LLONG_MAX, &matched), SP_SIG_OK);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, LLONG_MIN, LLONG_MAX, &matched),
				 SP_SIG_IN_FUTURE);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0 - LLONG_MAX, LLONG_MAX, &matched),
				 SP_SIG_OK);
}

/* An unsigned request never learns anything about the time window. */
TEST(sig_signature_checked_before_time)
{
	CHECK_INT_EQ(check("t=1,v1=" SIG_A, T0), SP_SIG_MISMATCH);
	CHECK_INT_EQ(check("t=9999999999,v1=" SIG_A, T0), SP_SIG_MISMATCH);
}

TEST(sig_far_timestamps)
{
	char		buf[SP_SIG_HEADER_BUFSIZE];
	int			matched;
	int			n;

	n = sp_sig_make_header(SECRET, LLONG_MAX, PAYLOAD, strlen(PAYLOAD), buf,
						   sizeof(buf));
	CHECK(n > 0);
	CHECK_INT_EQ(sp_sig_check(buf, (size_t) n, PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0, 300, &matched), SP_SIG_IN_FUTURE);
	CHECK_INT_EQ(matched, 0);
	CHECK_INT_EQ(sp_sig_check(buf, (size_t) n, PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, LLONG_MAX, 0, &matched), SP_SIG_OK);
	n = sp_sig_make_header(SECRET, 0, PAYLOAD, strlen(PAYLOAD), buf, sizeof(buf));
	CHECK(n > 0);
	CHECK_INT_EQ(sp_sig_check(buf, (size_t) n, PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0, 300, &matched), SP_SIG_TOO_OLD);
}

TEST(sig_secrets)
{
	static const char *const second[] = {"whsec_wrong", SECRET};
	static const char *const skipped[] = {NULL, "", SECRET};
	static const char *const none[] = {NULL, ""};
	static const char *const both[] = {SECRET2, SECRET};
	static const char *const wrong[] = {"whsec_wrong", "whsec_also_wrong"};
	const char *hdr = "t=1700000000,v1=" SIG_A;
	const char *rolled = "t=1700000000,v1=" SIG_A ",v1=" SIG_B;
	int			matched = 9;

	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  second, 2, T0, 300, &matched), SP_SIG_OK);
	CHECK_INT_EQ(matched, 1);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  skipped, 3, T0, 300, &matched), SP_SIG_OK);
	CHECK_INT_EQ(matched, 2);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  wrong, 2, T0, 300, &matched), SP_SIG_MISMATCH);
	CHECK_INT_EQ(matched, -1);

	/* during a roll Stripe signs with both; the first listed secret wins */
	CHECK_INT_EQ(sp_sig_check(rolled, strlen(rolled), PAYLOAD, strlen(PAYLOAD),
							  both, 2, T0, 300, &matched), SP_SIG_OK);
	CHECK_INT_EQ(matched, 0);
	CHECK_INT_EQ(sp_sig_check(rolled, strlen(rolled), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0, 300, &matched), SP_SIG_OK);
	CHECK_INT_EQ(matched, 0);

	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  none, 2, T0, 300, &matched), SP_SIG_NO_SECRET);
	CHECK_INT_EQ(matched, -1);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  NULL, 3, T0, 300, &matched), SP_SIG_NO_SECRET);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 0, T0, 300, &matched), SP_SIG_NO_SECRET);
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, -1, T0, 300, NULL), SP_SIG_NO_SECRET);
	/* matched is optional */
	CHECK_INT_EQ(sp_sig_check(hdr, strlen(hdr), PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0, 300, NULL), SP_SIG_OK);
}

/* Anyone can compute an empty-key HMAC: it must never authenticate. */
TEST(sig_empty_secret_never_verifies)
{
	static const char *const empty[] = {""};
	static const char *const empty_then_real[] = {"", SECRET};
	/* HMAC-SHA256("", "1700000000." PAYLOAD) */
	const char *forged = "t=1700000000,v1="
		"0d17fe88d3c7334149a7322db918de47cc9f5bd15de2bd0a2de56250f2ed247b";
	char		hdr[SP_SIG_HEADER_BUFSIZE];
	int			matched;

	CHECK_INT_EQ(sp_sig_make_header("", T0, PAYLOAD, strlen(PAYLOAD), hdr,
									sizeof(hdr)), -1);
	CHECK_INT_EQ(sp_sig_check(forged, strlen(forged), PAYLOAD, strlen(PAYLOAD),
							  empty, 1, T0, 300, &matched), SP_SIG_NO_SECRET);
	CHECK_INT_EQ(sp_sig_check(forged, strlen(forged), PAYLOAD, strlen(PAYLOAD),
							  empty_then_real, 2, T0, 300, &matched),
				 SP_SIG_MISMATCH);
	CHECK_INT_EQ(matched, -1);
}

TEST(sig_payload_null_with_length)
{
	SpSigHeader h;
	const char *hdr = "t=1700000000,v1=" SIG_A;
	int			matched;

	CHECK_INT_EQ(sp_sig_parse(hdr, strlen(hdr), &h), SP_SIG_OK);
	CHECK_INT_EQ(sp_sig_verify(&h, NULL, 5, one_secret, 1, T0, 300, &matched),
				 SP_SIG_MISMATCH);
}

TEST(sig_make_header_errors)
{
	char		buf[SP_SIG_HEADER_BUFSIZE];
	size_t		need = strlen("t=1700000000,v1=" SIG_A) + 1;

	CHECK_INT_EQ(sp_sig_make_header(NULL, T0, "x", 1, buf, sizeof(buf)), -1);
	CHECK_STR_EQ(buf, "");
	CHECK_INT_EQ(sp_sig_make_header(SECRET, -1, "x", 1, buf, sizeof(buf)), -1);
	CHECK_INT_EQ(sp_sig_make_header(SECRET, T0, NULL, 1, buf, sizeof(buf)), -1);
	CHECK_INT_EQ(sp_sig_make_header(SECRET, T0, "x", 1, NULL, 100), -1);
	CHECK_INT_EQ(sp_sig_make_header(SECRET, T0, "x", 1, buf, 0), -1);

	memset(buf, 'x', sizeof(buf));
	CHECK_INT_EQ(sp_sig_make_header(SECRET, T0, PAYLOAD, strlen(PAYLOAD), buf,
									need - 1), -1);
	CHECK_STR_EQ(buf, "");
	CHECK_INT_EQ(sp_sig_make_header(SECRET, T0, PAYLOAD, strlen(PAYLOAD), buf,
									need), (long long) need - 1);
	CHECK_STR_EQ(buf, "t=1700000000,v1=" SIG_A);
}

TEST(sig_hostile_headers)
{
	static char big[10 * 1024 + 1];
	char		withnul[] = "t=1700000000,v1=" SIG_A;
	SpSigHeader h;
	size_t		i;

	/* 10 kB of plausible text: over the cap, refused before any work */
	for (i = 0; i < sizeof(big) - 1; i++)
		big[i] = "t=1,v1=0"[i % 8];
	big[sizeof(big) - 1] = '\0';
	CHECK_INT_EQ(sp_sig_parse(big, sizeof(big) - 1, &h), SP_SIG_MALFORMED);
	CHECK_INT_EQ(sp_sig_parse(big, SP_SIG_MAX_HEADER + 1, &h), SP_SIG_MALFORMED);

	/* exactly at the cap is parsed (and padded with an ignored pair) */
	memcpy(big, "t=1700000000,v1=" SIG_A ",x=", 83);
	memset(big + 83, 'y', SP_SIG_MAX_HEADER - 83);
	CHECK_INT_EQ(sp_sig_parse(big, SP_SIG_MAX_HEADER, &h), SP_SIG_OK);
	CHECK_INT_EQ(sp_sig_check(big, SP_SIG_MAX_HEADER, PAYLOAD, strlen(PAYLOAD),
							  one_secret, 1, T0, 300, NULL), SP_SIG_OK);

	/* an embedded NUL, visible only through len */
	withnul[12] = '\0';
	CHECK_INT_EQ(sp_sig_parse(withnul, sizeof(withnul) - 1, &h), SP_SIG_MALFORMED);
	/* and len stops exactly where told: no read past it */
	CHECK_INT_EQ(sp_sig_parse("t=12,v1=" SIG_A, 4, &h), SP_SIG_NO_V1);
	CHECK_INT_EQ(h.timestamp, 12);
}

static uint32_t
sig_rng(uint32_t *state)
{
	uint32_t	x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

/* Random strings over the header's own alphabet: no crash, a known result. */
TEST(sig_random_headers)
{
	static const char alphabet[] = "t=v10,a9f ,==,v1=t=0\x01";
	uint32_t	state = 0x12345u;
	char		buf[200];
	int			iter;

	for (iter = 0; iter < 20000; iter++)
	{
		size_t		len = sig_rng(&state) % sizeof(buf);
		size_t		i;
		SpSigResult r;

		for (i = 0; i < len; i++)
			buf[i] = alphabet[sig_rng(&state) % (sizeof(alphabet) - 1)];
		r = sp_sig_check(buf, len, PAYLOAD, strlen(PAYLOAD), one_secret, 1,
						 T0, 300, NULL);
		CHECK(r >= SP_SIG_OK && r <= SP_SIG_INTERNAL_ERROR);
		CHECK(r != SP_SIG_OK);
	}
}

TEST(sig_result_names)
{
	int			r;
	int			s;

	CHECK_STR_EQ(sp_sig_result_name(SP_SIG_OK), "ok");
	CHECK_STR_EQ(sp_sig_result_name(SP_SIG_TOO_OLD), "too_old");
	CHECK_STR_EQ(sp_sig_result_name((SpSigResult) 1234), "unknown");
	for (r = SP_SIG_OK; r <= SP_SIG_INTERNAL_ERROR; r++)
	{
		CHECK(strcmp(sp_sig_result_name((SpSigResult) r), "unknown") != 0);
		for (s = SP_SIG_OK; s < r; s++)
			CHECK(strcmp(sp_sig_result_name((SpSigResult) r),
						 sp_sig_result_name((SpSigResult) s)) != 0);
	}
}

void
unit_suite_signature(void)
{
	RUN(sig_known_vector);
	RUN(sig_known_vector_empty_payload);
	RUN(sig_timestamp_signed_as_parsed_number);
	RUN(sig_no_header);
	RUN(sig_malformed_headers);
	RUN(sig_no_v1);
	RUN(sig_no_v1_keeps_timestamp);
	RUN(sig_timestamp_range);
	RUN(sig_several_v1_one_matches);
	RUN(sig_v0_and_unknown_schemes_ignored);
	RUN(sig_max_v1);
	RUN(sig_one_byte_changes_refused);
	RUN(sig_binary_payload);
	RUN(sig_tolerance_edges);
	RUN(sig_signature_checked_before_time);
	RUN(sig_far_timestamps);
	RUN(sig_secrets);
	RUN(sig_empty_secret_never_verifies);
	RUN(sig_payload_null_with_length);
	RUN(sig_make_header_errors);
	RUN(sig_hostile_headers);
	RUN(sig_random_headers);
	RUN(sig_result_names);
}
