/*-------------------------------------------------------------------------
 *
 * sp_money.c
 *		Currency table, amount parsing and Stripe's amount rules
 *
 * Source for every number in the table: Stripe's "Supported currencies"
 * page, https://docs.stripe.com/currencies (presentment currencies,
 * "Zero-decimal currencies", "Special cases", "Minimum and maximum charge
 * amounts"), and for the three-decimal rule the same page as archived on
 * 2022-12-31 (web.archive.org/web/20221231002856/https://stripe.com/docs/currencies):
 * "these API calls require the least-significant (last) digit to be 0".
 *
 * Facts a reader would otherwise re-derive:
 *
 * - ISK and UGX "transitioned to a zero-decimal currency, but backwards
 *   compatibility requires you to represent it as a two-decimal value, where
 *   the decimal amount is always 00".  So exponent 2, multiple of 100.  UGX
 *   also still appears in the page's zero-decimal list; the special case is
 *   the rule the API enforces ("Currency UGX has become effectively
 *   zero-decimal and charged amounts must be evenly divisible by 100").
 * - HUF and TWD are zero-decimal for payouts only; charges take two-decimal
 *   amounts, so they are ordinary here.
 * - Minimums apply to the settlement currency, after conversion.  The
 *   table's minimum is exact when the charge currency is the account's
 *   settlement currency and a cheap early check otherwise; Stripe still has
 *   the last word.  BGN's 1.00 comes from the page before Bulgaria's move
 *   to the euro and is kept for accounts that still settle in it.
 * - Maximums: "8 digits for all other currencies"; 12 for IDR, 10 for COP,
 *   9 for INR.  Card networks may allow more and sometimes less.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Sorted by code for bsearch; a unit test checks the order.
 * { code, exponent, minimum, multiple_of, maximum }
 */
static const SpCurrency sp_currencies[] = {
	{"aed", 2, 200, 1, SP_AMOUNT_MAX},
	{"afn", 2, 0, 1, SP_AMOUNT_MAX},
	{"all", 2, 0, 1, SP_AMOUNT_MAX},
	{"amd", 2, 0, 1, SP_AMOUNT_MAX},
	{"ang", 2, 0, 1, SP_AMOUNT_MAX},
	{"aoa", 2, 0, 1, SP_AMOUNT_MAX},
	{"ars", 2, 50, 1, SP_AMOUNT_MAX},
	{"aud", 2, 50, 1, SP_AMOUNT_MAX},
	{"awg", 2, 0, 1, SP_AMOUNT_MAX},
	{"azn", 2, 0, 1, SP_AMOUNT_MAX},
	{"bam", 2, 0, 1, SP_AMOUNT_MAX},
	{"bbd", 2, 0, 1, SP_AMOUNT_MAX},
	{"bdt", 2, 0, 1, SP_AMOUNT_MAX},
	{"bgn", 2, 100, 1, SP_AMOUNT_MAX},
	{"bhd", 3, 0, 10, SP_AMOUNT_MAX},
	{"bif", 0, 0, 1, SP_AMOUNT_MAX},
	{"bmd", 2, 0, 1, SP_AMOUNT_MAX},
	{"bnd", 2, 0, 1, SP_AMOUNT_MAX},
	{"bob", 2, 0, 1, SP_AMOUNT_MAX},
	{"brl", 2, 50, 1, SP_AMOUNT_MAX},
	{"bsd", 2, 0, 1, SP_AMOUNT_MAX},
	{"bwp", 2, 0, 1, SP_AMOUNT_MAX},
	{"byn", 2, 0, 1, SP_AMOUNT_MAX},
	{"bzd", 2, 0, 1, SP_AMOUNT_MAX},
	{"cad", 2, 50, 1, SP_AMOUNT_MAX},
	{"cdf", 2, 0, 1, SP_AMOUNT_MAX},
	{"chf", 2, 50, 1, SP_AMOUNT_MAX},
	{"clp", 0, 0, 1, SP_AMOUNT_MAX},
	{"cny", 2, 0, 1, SP_AMOUNT_MAX},
	{"cop", 2, 50, 1, 9999999999LL},
	{"crc", 2, 0, 1, SP_AMOUNT_MAX},
	{"cve", 2, 0, 1, SP_AMOUNT_MAX},
	{"czk", 2, 1500, 1, SP_AMOUNT_MAX},
	{"djf", 0, 0, 1, SP_AMOUNT_MAX},
	{"dkk", 2, 250, 1, SP_AMOUNT_MAX},
	{"dop", 2, 0, 1, SP_AMOUNT_MAX},
	{"dzd", 2, 0, 1, SP_AMOUNT_MAX},
	{"egp", 2, 0, 1, SP_AMOUNT_MAX},
	{"etb", 2, 0, 1, SP_AMOUNT_MAX},
	{"eur", 2, 50, 1, SP_AMOUNT_MAX},
	{"fjd", 2, 0, 1, SP_AMOUNT_MAX},
	{"fkp", 2, 0, 1, SP_AMOUNT_MAX},
	{"gbp", 2, 30, 1, SP_AMOUNT_MAX},
	{"gel", 2, 0, 1, SP_AMOUNT_MAX},
	{"gip", 2, 0, 1, SP_AMOUNT_MAX},
	{"gmd", 2, 0, 1, SP_AMOUNT_MAX},
	{"gnf", 0, 0, 1, SP_AMOUNT_MAX},
	{"gtq", 2, 0, 1, SP_AMOUNT_MAX},
	{"gyd", 2, 0, 1, SP_AMOUNT_MAX},
	{"hkd", 2, 400, 1, SP_AMOUNT_MAX},
	{"hnl", 2, 0, 1, SP_AMOUNT_MAX},
	{"htg", 2, 0, 1, SP_AMOUNT_MAX},
	{"huf", 2, 17500, 1, SP_AMOUNT_MAX},
	{"idr", 2, 50, 1, 999999999999LL},
	{"ils", 2, 50, 1, SP_AMOUNT_MAX},
	{"inr", 2, 50, 1, 999999999LL},
	{"isk", 2, 0, 100, SP_AMOUNT_MAX},	/* whole units only */
	{"jmd", 2, 0, 1, SP_AMOUNT_MAX},
	{"jod", 3, 0, 10, SP_AMOUNT_MAX},
	{"jpy", 0, 50, 1, SP_AMOUNT_MAX},
	{"kes", 2, 0, 1, SP_AMOUNT_MAX},
	{"kgs", 2, 0, 1, SP_AMOUNT_MAX},
	{"khr", 2, 0, 1, SP_AMOUNT_MAX},
	{"kmf", 0, 0, 1, SP_AMOUNT_MAX},
	{"krw", 0, 50, 1, SP_AMOUNT_MAX},
	{"kwd", 3, 0, 10, SP_AMOUNT_MAX},
	{"kyd", 2, 0, 1, SP_AMOUNT_MAX},
	{"kzt", 2, 0, 1, SP_AMOUNT_MAX},
	{"lak", 2, 0, 1, SP_AMOUNT_MAX},
	{"lbp", 2, 0, 1, SP_AMOUNT_MAX},
	{"lkr", 2, 0, 1, SP_AMOUNT_MAX},
	{"lrd", 2, 0, 1, SP_AMOUNT_MAX},
	{"lsl", 2, 0, 1, SP_AMOUNT_MAX},
	{"mad", 2, 0, 1, SP_AMOUNT_MAX},
	{"mdl", 2, 0, 1, SP_AMOUNT_MAX},
	{"mga", 0, 0, 1, SP_AMOUNT_MAX},
	{"mkd", 2, 0, 1, SP_AMOUNT_MAX},
	{"mmk", 2, 0, 1, SP_AMOUNT_MAX},
	{"mnt", 2, 0, 1, SP_AMOUNT_MAX},
	{"mop", 2, 0, 1, SP_AMOUNT_MAX},
	{"mur", 2, 0, 1, SP_AMOUNT_MAX},
	{"mvr", 2, 0, 1, SP_AMOUNT_MAX},
	{"mwk", 2, 0, 1, SP_AMOUNT_MAX},
	{"mxn", 2, 1000, 1, SP_AMOUNT_MAX},
	{"myr", 2, 200, 1, SP_AMOUNT_MAX},
	{"mzn", 2, 0, 1, SP_AMOUNT_MAX},
	{"nad", 2, 0, 1, SP_AMOUNT_MAX},
	{"ngn", 2, 0, 1, SP_AMOUNT_MAX},
	{"nio", 2, 0, 1, SP_AMOUNT_MAX},
	{"nok", 2, 300, 1, SP_AMOUNT_MAX},
	{"npr", 2, 0, 1, SP_AMOUNT_MAX},
	{"nzd", 2, 50, 1, SP_AMOUNT_MAX},
	{"omr", 3, 0, 10, SP_AMOUNT_MAX},
	{"pab", 2, 0, 1, SP_AMOUNT_MAX},
	{"pen", 2, 0, 1, SP_AMOUNT_MAX},
	{"pgk", 2, 0, 1, SP_AMOUNT_MAX},
	{"php", 2, 50, 1, SP_AMOUNT_MAX},
	{"pkr", 2, 0, 1, SP_AMOUNT_MAX},
	{"pln", 2, 200, 1, SP_AMOUNT_MAX},
	{"pyg", 0, 0, 1, SP_AMOUNT_MAX},
	{"qar", 2, 0, 1, SP_AMOUNT_MAX},
	{"ron", 2, 200, 1, SP_AMOUNT_MAX},
	{"rsd", 2, 0, 1, SP_AMOUNT_MAX},
	{"rub", 2, 50, 1, SP_AMOUNT_MAX},
	{"rwf", 0, 0, 1, SP_AMOUNT_MAX},
	{"sar", 2, 0, 1, SP_AMOUNT_MAX},
	{"sbd", 2, 0, 1, SP_AMOUNT_MAX},
	{"scr", 2, 0, 1, SP_AMOUNT_MAX},
	{"sek", 2, 300, 1, SP_AMOUNT_MAX},
	{"sgd", 2, 50, 1, SP_AMOUNT_MAX},
	{"shp", 2, 0, 1, SP_AMOUNT_MAX},
	{"sle", 2, 0, 1, SP_AMOUNT_MAX},
	{"sos", 2, 0, 1, SP_AMOUNT_MAX},
	{"srd", 2, 0, 1, SP_AMOUNT_MAX},
	{"std", 2, 0, 1, SP_AMOUNT_MAX},
	{"szl", 2, 0, 1, SP_AMOUNT_MAX},
	{"thb", 2, 1000, 1, SP_AMOUNT_MAX},
	{"tjs", 2, 0, 1, SP_AMOUNT_MAX},
	{"tnd", 3, 0, 10, SP_AMOUNT_MAX},
	{"top", 2, 0, 1, SP_AMOUNT_MAX},
	{"try", 2, 0, 1, SP_AMOUNT_MAX},
	{"ttd", 2, 0, 1, SP_AMOUNT_MAX},
	{"twd", 2, 0, 1, SP_AMOUNT_MAX},
	{"tzs", 2, 0, 1, SP_AMOUNT_MAX},
	{"uah", 2, 0, 1, SP_AMOUNT_MAX},
	{"ugx", 2, 0, 100, SP_AMOUNT_MAX},	/* whole units only */
	{"usd", 2, 50, 1, SP_AMOUNT_MAX},
	{"uyu", 2, 0, 1, SP_AMOUNT_MAX},
	{"uzs", 2, 0, 1, SP_AMOUNT_MAX},
	{"vnd", 0, 0, 1, SP_AMOUNT_MAX},
	{"vuv", 0, 0, 1, SP_AMOUNT_MAX},
	{"wst", 2, 0, 1, SP_AMOUNT_MAX},
	{"xaf", 0, 0, 1, SP_AMOUNT_MAX},
	{"xcd", 2, 0, 1, SP_AMOUNT_MAX},
	{"xof", 0, 0, 1, SP_AMOUNT_MAX},
	{"xpf", 0, 0, 1, SP_AMOUNT_MAX},
	{"yer", 2, 0, 1, SP_AMOUNT_MAX},
	{"zar", 2, 50, 1, SP_AMOUNT_MAX},
	{"zmw", 2, 0, 1, SP_AMOUNT_MAX},
};

#define SP_NCURRENCIES (sizeof(sp_currencies) / sizeof(sp_currencies[0]))

static int
sp_currency_cmp(const void *key, const void *elem)
{
	return strcmp((const char *) key, ((const SpCurrency *) elem)->code);
}

const SpCurrency *
sp_currency_find(const char *code)
{
	char		key[4];
	int			i;

	if (code == NULL)
		return NULL;

	/* ASCII only: tolower() would consult the locale */
	for (i = 0; i < 3; i++)
	{
		char		c = code[i];

		if (c >= 'A' && c <= 'Z')
			c = (char) (c - 'A' + 'a');
		else if (!(c >= 'a' && c <= 'z'))
			return NULL;		/* also stops at a NUL: "us" */
		key[i] = c;
	}
	if (code[3] != '\0')
		return NULL;
	key[3] = '\0';

	return bsearch(key, sp_currencies, SP_NCURRENCIES, sizeof(SpCurrency),
				   sp_currency_cmp);
}

const SpCurrency *
sp_currency_table(size_t *count)
{
	if (count != NULL)
		*count = SP_NCURRENCIES;
	return sp_currencies;
}

static bool
sp_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * numeric_out never writes a '+', an exponent, blanks or a bare '.', so
 * anything of that kind means the text did not come from numeric and is
 * refused rather than guessed at.  The digit string can be far longer than
 * any integer type: magnitude is judged by counting significant digits
 * before converting, so nothing can overflow.
 */
SpAmountParse
sp_amount_parse(const char *numeric_text, long long *amount)
{
	const char *p = numeric_text;
	const char *int_start;
	const char *int_end;
	const char *frac_start = NULL;
	const char *frac_end = NULL;
	const char *q;
	bool		negative = false;
	bool		nonzero_int = false;
	bool		nonzero_frac = false;
	long long	value = 0;

	if (p == NULL)
		return SP_AMOUNT_SYNTAX;
	if (strcmp(p, "NaN") == 0)
		return SP_AMOUNT_SYNTAX;
	if (strcmp(p, "Infinity") == 0)
		return SP_AMOUNT_TOO_LARGE;
	if (strcmp(p, "-Infinity") == 0)
		return SP_AMOUNT_NOT_POSITIVE;

	if (*p == '-')
	{
		negative = true;
		p++;
	}
	int_start = p;
	while (sp_is_digit(*p))
	{
		if (*p != '0')
			nonzero_int = true;
		p++;
	}
	int_end = p;
	if (int_end == int_start)
		return SP_AMOUNT_SYNTAX;

	if (*p == '.')
	{
		p++;
		frac_start = p;
		while (sp_is_digit(*p))
		{
			if (*p != '0')
				nonzero_frac = true;
			p++;
		}
		frac_end = p;
		if (frac_end == frac_start)
			return SP_AMOUNT_SYNTAX;
	}
	if (*p != '\0')
		return SP_AMOUNT_SYNTAX;

	if (negative || (!nonzero_int && !nonzero_frac))
		return SP_AMOUNT_NOT_POSITIVE;
	if (nonzero_frac)
		return SP_AMOUNT_NOT_INTEGRAL;

	/* skip leading zeros, then at most 12 significant digits fit the limit */
	q = int_start;
	while (q < int_end && *q == '0')
		q++;
	if (int_end - q > 12)
		return SP_AMOUNT_TOO_LARGE;
	for (; q < int_end; q++)
		value = value * 10 + (*q - '0');
	if (value > SP_AMOUNT_LIMIT)
		return SP_AMOUNT_TOO_LARGE;

	if (amount != NULL)
		*amount = value;
	return SP_AMOUNT_OK;
}

SpMoneyCheck
sp_money_check(const SpCurrency *currency, long long amount)
{
	if (amount <= 0)
		return SP_MONEY_BELOW_MINIMUM;
	if (currency == NULL)
		return SP_MONEY_NOT_MULTIPLE;	/* no currency, no valid amount */
	if (amount < currency->minimum)
		return SP_MONEY_BELOW_MINIMUM;
	if (amount > currency->maximum)
		return SP_MONEY_ABOVE_MAXIMUM;
	if (currency->multiple_of > 1 && amount % currency->multiple_of != 0)
		return SP_MONEY_NOT_MULTIPLE;
	return SP_MONEY_OK;
}

int
sp_money_format(const SpCurrency *currency, long long amount, char *buf,
				size_t size)
{
	char		upper[4];
	const char *sign = amount < 0 ? "-" : "";
	unsigned long long magnitude;
	unsigned long long divisor = 1;
	int			i;

	if (buf == NULL)
		size = 0;
	if (currency == NULL)
		return snprintf(buf, size, "%lld", amount);

	/* -(amount + 1) + 1 keeps LLONG_MIN defined */
	magnitude = amount < 0 ? (unsigned long long) (-(amount + 1)) + 1
		: (unsigned long long) amount;

	for (i = 0; i < 3; i++)
	{
		char		c = currency->code[i];

		upper[i] = (c >= 'a' && c <= 'z') ? (char) (c - 'a' + 'A') : c;
	}
	upper[3] = '\0';

	if (currency->exponent <= 0)
		return snprintf(buf, size, "%s%llu %s", sign, magnitude, upper);

	for (i = 0; i < currency->exponent; i++)
		divisor *= 10;
	return snprintf(buf, size, "%s%llu.%0*llu %s", sign,
					magnitude / divisor, currency->exponent,
					magnitude % divisor, upper);
}
