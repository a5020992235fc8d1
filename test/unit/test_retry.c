/*-------------------------------------------------------------------------
 *
 * test_retry.c
 *		Unit tests of the retry policy (sp_retry.c)
 *
 *-------------------------------------------------------------------------
 */
#include "sp_retry.h"
#include "unit.h"

TEST(retry_what_the_sdks_retry)
{
	CHECK(sp_retry_wanted(0, NULL));	/* no response at all */
	CHECK(sp_retry_wanted(409, NULL));
	CHECK(sp_retry_wanted(429, NULL));
	CHECK(sp_retry_wanted(500, NULL));
	CHECK(sp_retry_wanted(502, NULL));
	CHECK(sp_retry_wanted(503, NULL));
}

TEST(retry_never_card_or_validation_errors)
{
	CHECK(!sp_retry_wanted(400, NULL));
	CHECK(!sp_retry_wanted(401, NULL));
	CHECK(!sp_retry_wanted(402, NULL));
	CHECK(!sp_retry_wanted(403, NULL));
	CHECK(!sp_retry_wanted(404, NULL));
	CHECK(!sp_retry_wanted(200, NULL));
}

TEST(retry_stripe_should_retry_wins)
{
	CHECK(!sp_retry_wanted(500, "false"));
	CHECK(!sp_retry_wanted(429, "False"));
	CHECK(sp_retry_wanted(400, "true"));
	CHECK(sp_retry_wanted(402, "TRUE"));
	/* anything else is no verdict: fall back to the status */
	CHECK(sp_retry_wanted(500, "maybe"));
	CHECK(!sp_retry_wanted(400, ""));
}

TEST(retry_delay_doubles_and_caps)
{
	/* jitter 0.999.. gives the top of [delay/2, delay) */
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, NULL), 500);	/* floor at 0.5 s */
	CHECK(sp_retry_delay_ms(1, 0.9999, NULL) > 990);
	CHECK(sp_retry_delay_ms(1, 0.9999, NULL) <= 1000);
	CHECK(sp_retry_delay_ms(2, 0.9999, NULL) <= 2000);
	CHECK(sp_retry_delay_ms(2, 0.0, NULL) == 1000);
	CHECK(sp_retry_delay_ms(10, 0.9999, NULL) <= 5000);
	CHECK(sp_retry_delay_ms(10, 0.0, NULL) == 2500);
	CHECK(sp_retry_delay_ms(1000, 0.5, NULL) <= 5000);
	/* out-of-range jitter is ignored, not trusted */
	CHECK_INT_EQ(sp_retry_delay_ms(2, 7.0, NULL), 1000);
	CHECK_INT_EQ(sp_retry_delay_ms(2, -1.0, NULL), 1000);
}

TEST(retry_after_is_honoured_within_bounds)
{
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, "3"), 3000);
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, "1.5"), 1500);
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, " 2 "), 2000);	/* white space around is fine */
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, "2 "), 2000);
	/* shorter than our own backoff: ours wins */
	CHECK_INT_EQ(sp_retry_delay_ms(3, 0.0, "1"), 2000);
	/* absurd, negative or malformed values are ignored */
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, "3600"), 500);
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, "-5"), 500);
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, "Wed, 21 Oct 2015 07:28:00 GMT"), 500);
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, "nan"), 500);
	CHECK_INT_EQ(sp_retry_delay_ms(0, 0.0, ""), 500);
}

void
unit_suite_retry(void)
{
	RUN(retry_what_the_sdks_retry);
	RUN(retry_never_card_or_validation_errors);
	RUN(retry_stripe_should_retry_wins);
	RUN(retry_delay_doubles_and_caps);
	RUN(retry_after_is_honoured_within_bounds);
}
