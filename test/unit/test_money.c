/*-------------------------------------------------------------------------
 *
 * test_money.c
 *		Unit tests for sp_money: currency table, amount parsing, Stripe rules
 *
 * The zero-decimal "100 times too much" mistake is the classic failure of
 * payment libraries; several tests below exist only to pin that down.
 *
 *-------------------------------------------------------------------------
 */
#include "unit.h"
#include "sp_money.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const SpCurrency *
cur(const char *code)
{
	return sp_currency_find(code);
}

TEST(money_table_sorted_and_sane)
{
	size_t		n = 0;
	const SpCurrency *table = sp_currency_table(&n);
	size_t		i;

	CHECK(table != NULL);
	CHECK(n >= 135);			/* Stripe: "more than 135 currencies" */
	for (i = 0; i < n; i++)
	{
		const SpCurrency *c = &table[i];

		CHECK_INT_EQ(strlen(c->code), 3);
		CHECK(c->code[0] >= 'a' && c->code[0] <= 'z');
		CHECK(c->code[1] >= 'a' && c->code[1] <= 'z');
		CHECK(c->code[2] >= 'a' && c->code[2] <= 'z');
		if (i > 0)
			CHECK(strcmp(table[i - 1].code, c->code) < 0);	/* bsearch needs it */
		CHECK(c->exponent == 0 || c->exponent == 2 || c->exponent == 3);
		CHECK(c->multiple_of >= 1);
		CHECK(c->minimum >= 0);
		CHECK(c->minimum % c->multiple_of == 0);
		CHECK(c->maximum >= SP_AMOUNT_MAX && c->maximum <= SP_AMOUNT_LIMIT);
		CHECK(c->minimum <= c->maximum);
		CHECK(sp_currency_find(c->code) == c);
	}
}

TEST(money_lookup)
{
	const SpCurrency *usd = cur("usd");

	CHECK(usd != NULL);
	CHECK_STR_EQ(usd->code, "usd");
	CHECK(cur("USD") == usd);
	CHECK(cur("UsD") == usd);
	CHECK(cur("xyz") == NULL);
	CHECK(cur("us") == NULL);
	CHECK(cur("usdd") == NULL);
	CHECK(cur("usd ") == NULL);
	CHECK(cur(" usd") == NULL);
	CHECK(cur("") == NULL);
	CHECK(cur(NULL) == NULL);
	CHECK(cur("u$d") == NULL);
	CHECK(cur("\xc3\xa9ur") == NULL);
	CHECK(cur("hrk") == NULL);	/* Croatia moved to the euro */
	CHECK(cur("eur") != NULL);
	CHECK(cur("ZMW") != NULL);
	CHECK(cur("aed") != NULL);
}

TEST(money_zero_decimal_codes)
{
	static const char *const zero[] = {
		"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
		"vnd", "vuv", "xaf", "xof", "xpf",
	};
	size_t		i;

	for (i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
	{
		const SpCurrency *c = cur(zero[i]);
		char		buf[64];

		CHECK(c != NULL);
		CHECK_INT_EQ(c->exponent, 0);
		CHECK_INT_EQ(c->multiple_of, 1);
		/* 500 means 500 whole units, never 5.00 */
		sp_money_format(c, 500, buf, sizeof(buf));
		CHECK(strncmp(buf, "500 ", 4) == 0);
	}

	/* and nothing else is zero-decimal */
	{
		size_t		n;
		const SpCurrency *t = sp_currency_table(&n);
		size_t		zeros = 0;

		for (i = 0; i < n; i++)
			if (t[i].exponent == 0)
				zeros++;
		CHECK_INT_EQ(zeros, sizeof(zero) / sizeof(zero[0]));
	}
}

TEST(money_jpy_not_100x)
{
	long long	amount = 0;
	char		buf[64];

	/* numeric 500 for JPY is 500 yen, and it goes to Stripe as 500 */
	CHECK_INT_EQ(sp_amount_parse("500", &amount), SP_AMOUNT_OK);
	CHECK_INT_EQ(amount, 500);
	CHECK_INT_EQ(sp_money_check(cur("jpy"), amount), SP_MONEY_OK);
	sp_money_format(cur("jpy"), amount, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "500 JPY");
	sp_money_format(cur("krw"), 50, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "50 KRW");
}

TEST(money_whole_unit_two_decimal)
{
	/* ISK and UGX: exponent 2 in the API, fractions refused */
	static const char *const codes[] = {"isk", "ugx"};
	size_t		i;

	for (i = 0; i < 2; i++)
	{
		const SpCurrency *c = cur(codes[i]);

		CHECK(c != NULL);
		CHECK_INT_EQ(c->exponent, 2);
		CHECK_INT_EQ(c->multiple_of, 100);
		CHECK_INT_EQ(sp_money_check(c, 500), SP_MONEY_OK);
		CHECK_INT_EQ(sp_money_check(c, 550), SP_MONEY_NOT_MULTIPLE);
		CHECK_INT_EQ(sp_money_check(c, 5), SP_MONEY_NOT_MULTIPLE);
		CHECK_INT_EQ(sp_money_check(c, 99999900), SP_MONEY_OK);
	}
	{
		char		buf[64];

		sp_money_format(cur("isk"), 500, buf, sizeof(buf));
		CHECK_STR_EQ(buf, "5.00 ISK");
	}
}

TEST(money_huf_twd_charge_two_decimal)
{
	/* the divisible-by-100 rule is for payouts only */
	CHECK(cur("huf") != NULL && cur("twd") != NULL);
	CHECK_INT_EQ(cur("huf")->exponent, 2);
	CHECK_INT_EQ(cur("huf")->multiple_of, 1);
	CHECK_INT_EQ(cur("twd")->exponent, 2);
	CHECK_INT_EQ(cur("twd")->multiple_of, 1);
	CHECK_INT_EQ(sp_money_check(cur("huf"), 17545), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("twd"), 80045), SP_MONEY_OK);
}

TEST(money_three_decimal)
{
	static const char *const codes[] = {"bhd", "jod", "kwd", "omr", "tnd"};
	size_t		i;
	char		buf[64];

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
	{
		const SpCurrency *c = cur(codes[i]);

		CHECK(c != NULL);
		CHECK_INT_EQ(c->exponent, 3);
		CHECK_INT_EQ(c->multiple_of, 10);
	}
	CHECK_INT_EQ(sp_money_check(cur("kwd"), 1235), SP_MONEY_NOT_MULTIPLE);
	CHECK_INT_EQ(sp_money_check(cur("kwd"), 1230), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("bhd"), 10), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("tnd"), 1), SP_MONEY_NOT_MULTIPLE);
	sp_money_format(cur("kwd"), 1230, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "1.230 KWD");
	sp_money_format(cur("omr"), 50, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "0.050 OMR");
}

TEST(money_minimums)
{
	CHECK_INT_EQ(sp_money_check(cur("usd"), 49), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("usd"), 50), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("jpy"), 49), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("jpy"), 50), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("gbp"), 29), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("gbp"), 30), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("eur"), 49), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("hkd"), 399), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("hkd"), 400), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("dkk"), 249), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("nok"), 299), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("sek"), 300), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("mxn"), 999), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("mxn"), 1000), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("huf"), 17499), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("huf"), 17500), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("czk"), 1499), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("thb"), 999), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("thb"), 1000), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("aed"), 199), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("myr"), 200), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("krw"), 49), SP_MONEY_BELOW_MINIMUM);
	/* no published minimum: any positive amount passes */
	CHECK(cur("kwd") != NULL);
	CHECK_INT_EQ(cur("kwd")->minimum, 0);
	CHECK_INT_EQ(sp_money_check(cur("kwd"), 10), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("vnd"), 1), SP_MONEY_OK);
}

TEST(money_not_positive)
{
	CHECK_INT_EQ(sp_money_check(cur("usd"), 0), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("vnd"), 0), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("usd"), -1), SP_MONEY_BELOW_MINIMUM);
	CHECK_INT_EQ(sp_money_check(cur("usd"), LLONG_MIN), SP_MONEY_BELOW_MINIMUM);
	CHECK(sp_money_check(NULL, 100) != SP_MONEY_OK);
}

TEST(money_maximums)
{
	CHECK_INT_EQ(sp_money_check(cur("usd"), 99999999), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("usd"), 100000000), SP_MONEY_ABOVE_MAXIMUM);
	CHECK_INT_EQ(sp_money_check(cur("jpy"), 99999999), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("jpy"), 100000000), SP_MONEY_ABOVE_MAXIMUM);
	CHECK_INT_EQ(sp_money_check(cur("usd"), LLONG_MAX), SP_MONEY_ABOVE_MAXIMUM);
	/* the documented exceptions: IDR 12 digits, COP 10, INR 9 */
	CHECK_INT_EQ(sp_money_check(cur("idr"), 999999999999LL), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("idr"), 1000000000000LL), SP_MONEY_ABOVE_MAXIMUM);
	CHECK_INT_EQ(sp_money_check(cur("cop"), 9999999999LL), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("cop"), 10000000000LL), SP_MONEY_ABOVE_MAXIMUM);
	CHECK_INT_EQ(sp_money_check(cur("inr"), 999999999LL), SP_MONEY_OK);
	CHECK_INT_EQ(sp_money_check(cur("inr"), 1000000000LL), SP_MONEY_ABOVE_MAXIMUM);
	CHECK(cur("usd") != NULL);
	CHECK_INT_EQ(cur("usd")->maximum, SP_AMOUNT_MAX);
}

TEST(money_parse)
{
	static const struct
	{
		const char *text;
		SpAmountParse expect;
		long long	amount;
	}			cases[] = {
		{"1000", SP_AMOUNT_OK, 1000},
		{"1000.00", SP_AMOUNT_OK, 1000},
		{"1000.000", SP_AMOUNT_OK, 1000},
		{"1", SP_AMOUNT_OK, 1},
		{"0001", SP_AMOUNT_OK, 1},
		{"99999999", SP_AMOUNT_OK, 99999999},
		{"999999999999", SP_AMOUNT_OK, 999999999999LL},
		{"000000000000000000000999999999999.0000", SP_AMOUNT_OK, 999999999999LL},
		{"1000000000000", SP_AMOUNT_TOO_LARGE, 0},
		{"99999999999999999999999999", SP_AMOUNT_TOO_LARGE, 0},
		{"9223372036854775808", SP_AMOUNT_TOO_LARGE, 0},
		{"Infinity", SP_AMOUNT_TOO_LARGE, 0},
		{"10.5", SP_AMOUNT_NOT_INTEGRAL, 0},
		{"0.5", SP_AMOUNT_NOT_INTEGRAL, 0},
		{"1000.001", SP_AMOUNT_NOT_INTEGRAL, 0},
		{"99999999999999999999999999.5", SP_AMOUNT_NOT_INTEGRAL, 0},
		{"0", SP_AMOUNT_NOT_POSITIVE, 0},
		{"0.000", SP_AMOUNT_NOT_POSITIVE, 0},
		{"-0", SP_AMOUNT_NOT_POSITIVE, 0},
		{"-1", SP_AMOUNT_NOT_POSITIVE, 0},
		{"-5", SP_AMOUNT_NOT_POSITIVE, 0},
		{"-0.5", SP_AMOUNT_NOT_POSITIVE, 0},
		{"-99999999999999999999999999", SP_AMOUNT_NOT_POSITIVE, 0},
		{"-Infinity", SP_AMOUNT_NOT_POSITIVE, 0},
		{"NaN", SP_AMOUNT_SYNTAX, 0},
		{"nan", SP_AMOUNT_SYNTAX, 0},
		{"infinity", SP_AMOUNT_SYNTAX, 0},
		{"1e3", SP_AMOUNT_SYNTAX, 0},
		{"1E3", SP_AMOUNT_SYNTAX, 0},
		{"+5", SP_AMOUNT_SYNTAX, 0},
		{"", SP_AMOUNT_SYNTAX, 0},
		{"-", SP_AMOUNT_SYNTAX, 0},
		{"--1", SP_AMOUNT_SYNTAX, 0},
		{" 5", SP_AMOUNT_SYNTAX, 0},
		{"5 ", SP_AMOUNT_SYNTAX, 0},
		{".5", SP_AMOUNT_SYNTAX, 0},
		{"5.", SP_AMOUNT_SYNTAX, 0},
		{"1.2.3", SP_AMOUNT_SYNTAX, 0},
		{"1,000", SP_AMOUNT_SYNTAX, 0},
		{"0x10", SP_AMOUNT_SYNTAX, 0},
		{"\xd9\xa1", SP_AMOUNT_SYNTAX, 0},	/* ARABIC-INDIC DIGIT ONE */
		{"12\n", SP_AMOUNT_SYNTAX, 0},
	};
	size_t		i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		long long	amount = -42;

		CHECK_INT_EQ(sp_amount_parse(cases[i].text, &amount), cases[i].expect);
		if (cases[i].expect == SP_AMOUNT_OK)
			CHECK_INT_EQ(amount, cases[i].amount);
		else
			CHECK_INT_EQ(amount, -42);	/* untouched on failure */
	}
	CHECK_INT_EQ(sp_amount_parse(NULL, NULL), SP_AMOUNT_SYNTAX);
	CHECK_INT_EQ(sp_amount_parse("7", NULL), SP_AMOUNT_OK);
}

TEST(money_parse_huge_digit_string)
{
	size_t		len = 100000;
	char	   *text = malloc(len + 1);
	long long	amount = -42;

	CHECK(text != NULL);
	memset(text, '9', len);
	text[len] = '\0';
	CHECK_INT_EQ(sp_amount_parse(text, &amount), SP_AMOUNT_TOO_LARGE);

	/* a huge number of leading zeros is still the small number it is */
	memset(text, '0', len);
	text[len - 1] = '7';
	CHECK_INT_EQ(sp_amount_parse(text, &amount), SP_AMOUNT_OK);
	CHECK_INT_EQ(amount, 7);
	free(text);
}

TEST(money_format)
{
	char		buf[64];
	char		small[4];
	int			n;

	CHECK_INT_EQ(sp_money_format(cur("usd"), 1050, buf, sizeof(buf)), 9);
	CHECK_STR_EQ(buf, "10.50 USD");
	sp_money_format(cur("usd"), 5, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "0.05 USD");
	sp_money_format(cur("usd"), 99999999, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "999999.99 USD");
	sp_money_format(cur("eur"), -1050, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "-10.50 EUR");
	sp_money_format(cur("jpy"), 500, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "500 JPY");
	sp_money_format(cur("kwd"), 1230, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "1.230 KWD");
	sp_money_format(cur("usd"), 0, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "0.00 USD");
	sp_money_format(cur("usd"), LLONG_MIN, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "-92233720368547758.08 USD");
	sp_money_format(cur("usd"), LLONG_MAX, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "92233720368547758.07 USD");
	sp_money_format(NULL, 1050, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "1050");

	/* snprintf semantics: truncated, NUL-terminated, full length returned */
	n = sp_money_format(cur("usd"), 1050, small, sizeof(small));
	CHECK_INT_EQ(n, 9);
	CHECK_STR_EQ(small, "10.");
	CHECK_INT_EQ(sp_money_format(cur("usd"), 1050, NULL, 0), 9);
	CHECK_INT_EQ(sp_money_format(cur("usd"), 1050, NULL, 10), 9);
}

void
unit_suite_money(void)
{
	RUN(money_table_sorted_and_sane);
	RUN(money_lookup);
	RUN(money_zero_decimal_codes);
	RUN(money_jpy_not_100x);
	RUN(money_whole_unit_two_decimal);
	RUN(money_huf_twd_charge_two_decimal);
	RUN(money_three_decimal);
	RUN(money_minimums);
	RUN(money_not_positive);
	RUN(money_maximums);
	RUN(money_parse);
	RUN(money_parse_huge_digit_string);
	RUN(money_format);
}
