/*-------------------------------------------------------------------------
 *
 * sp_money.h
 *		Currencies Stripe charges in, and the rules an amount must meet
 *
 * Stripe amounts are integers in the currency's smallest unit as Stripe's
 * API counts it, which is not always ISO 4217's: ISK and UGX are whole
 * units on paper but the API wants them x100.  Getting this wrong charges
 * a customer 100 times too much or too little, so every rule lives here,
 * in one table, with tests.
 *
 * Pure C: no PostgreSQL headers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_MONEY_H
#define SP_MONEY_H

#include <stdbool.h>
#include <stddef.h>

/* Stripe's general maximum: eight digits in the smallest unit. */
#define SP_AMOUNT_MAX 99999999LL

/*
 * The largest amount Stripe accepts in any currency (12 digits, IDR).
 * sp_amount_parse() refuses anything above it; the per-currency maximum is
 * sp_money_check()'s job.
 */
#define SP_AMOUNT_LIMIT 999999999999LL

typedef struct SpCurrency
{
	char		code[4];		/* lower-case ISO 4217, as Stripe wants it */
	int			exponent;		/* 0, 2 or 3: digits of the smallest unit
								 * as Stripe's API counts them */
	long long	minimum;		/* Stripe's minimum charge in the smallest
								 * unit; 0 when Stripe publishes none */
	long long	multiple_of;	/* the amount must be a multiple of this */
	long long	maximum;		/* largest amount Stripe accepts */
} SpCurrency;

/*
 * Case-insensitive lookup; code must be exactly three ASCII letters.
 * Returns NULL if Stripe does not charge in that currency.
 */
extern const SpCurrency *sp_currency_find(const char *code);

/* The whole table, sorted by code (for listings and tests). */
extern const SpCurrency *sp_currency_table(size_t *count);

typedef enum SpAmountParse
{
	SP_AMOUNT_OK,
	SP_AMOUNT_SYNTAX,			/* not PostgreSQL numeric output, or NaN */
	SP_AMOUNT_NOT_INTEGRAL,		/* has a non-zero fraction */
	SP_AMOUNT_NOT_POSITIVE,		/* zero, negative, or -Infinity */
	SP_AMOUNT_TOO_LARGE			/* above SP_AMOUNT_LIMIT, or Infinity */
} SpAmountParse;

/*
 * Parses the text output of PostgreSQL's numeric type ("1000", "1000.00",
 * "-5", "NaN", "Infinity", arbitrarily long digit strings) into an amount in
 * the smallest unit.  Only sets *amount on SP_AMOUNT_OK.
 */
extern SpAmountParse sp_amount_parse(const char *numeric_text, long long *amount);

typedef enum SpMoneyCheck
{
	SP_MONEY_OK,
	SP_MONEY_BELOW_MINIMUM,		/* below Stripe's minimum, or not positive */
	SP_MONEY_ABOVE_MAXIMUM,
	SP_MONEY_NOT_MULTIPLE		/* e.g. fractions of ISK, last digit of KWD */
} SpMoneyCheck;

extern SpMoneyCheck sp_money_check(const SpCurrency *currency, long long amount);

/*
 * Human text for messages: "10.50 USD", "500 JPY", "1.230 KWD".  Returns the
 * length snprintf would, so a short buffer can be detected.
 */
extern int	sp_money_format(const SpCurrency *currency, long long amount,
							char *buf, size_t size);

#endif							/* SP_MONEY_H */
