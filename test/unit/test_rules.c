/*-------------------------------------------------------------------------
 *
 * test_rules.c
 *		Unit tests of the never-regress rule and payment targets (sp_rules.c)
 *
 *-------------------------------------------------------------------------
 */
#include <stddef.h>

#include "sp_rules.h"
#include "unit.h"

/*
 * The truth table of sql/webhook_rules.sql: the current state was set by an
 * event at t=10; the new one comes 10 s earlier, at the same second, or
 * 10 s later.
 */
static const struct
{
	const char *kind;
	const char *cur;
	const char *new;
	const char *earlier_same_later;
}			truth[] = {
	{"payment", "CANCELED", "SUCCESSFUL", "ttt"},
	{"payment", "FAILED", "PENDING", "fft"},
	{"payment", "PENDING", "SUCCESSFUL", "ttt"},
	{"payment", "SUCCESSFUL", "CANCELED", "fff"},
	{"payment", "SUCCESSFUL", "FAILED", "fff"},
	{"payment", "SUCCESSFUL", "PENDING", "fff"},
	{"payment", "PENDING", "FAILED", "ftt"},
	{"payment", "FAILED", "SUCCESSFUL", "ttt"},
	{"refund", "FAILED", "SUCCEEDED", "fff"},
	{"refund", "PENDING", "SUCCEEDED", "ftt"},
	{"refund", "SUCCEEDED", "FAILED", "ttt"},
	{"refund", "SUCCEEDED", "PENDING", "fft"},
	{"subscription", "ACTIVE", "CANCELED", "ttt"},
	{"subscription", "ACTIVE", "INCOMPLETE", "fft"},
	{"subscription", "ACTIVE", "PAST_DUE", "ftt"},
	{"subscription", "CANCELED", "ACTIVE", "fff"},
	{"subscription", "INCOMPLETE", "ACTIVE", "ftt"},
	{"subscription", "PAST_DUE", "ACTIVE", "ftt"},
	{"subscription", "ACTIVE", "SOME_NEW_STATUS", "ftt"},
};

TEST(rules_truth_table)
{
	size_t		i;
	int			d;

	for (i = 0; i < sizeof(truth) / sizeof(truth[0]); i++)
		for (d = 0; d < 3; d++)
		{
			SpStateKind kind = sp_state_kind(truth[i].kind);
			bool		want = truth[i].earlier_same_later[d] == 't';
			bool		got = sp_state_advances(kind, truth[i].cur, true, 10,
												truth[i].new, true, d * 10);

			if (got != want)
				unit_fail(__FILE__, __LINE__, "%s %s -> %s at %d: got %d, want %d",
						  truth[i].kind, truth[i].cur, truth[i].new, d * 10, got, want);
		}
}

TEST(rules_no_state_yet_or_no_new_state)
{
	CHECK(sp_state_advances(SP_KIND_PAYMENT, NULL, false, 0, "PENDING", true, 5));
	CHECK(sp_state_advances(SP_KIND_PAYMENT, "SUCCESSFUL", false, 0, "PENDING", true, 5));
	CHECK(!sp_state_advances(SP_KIND_PAYMENT, "PENDING", true, 5, NULL, true, 5));
	CHECK(!sp_state_advances(SP_KIND_PAYMENT, NULL, false, 0, NULL, true, 5));
	/* unknown time: only the lifecycle decides */
	CHECK(!sp_state_advances(SP_KIND_PAYMENT, "PENDING", true, 5, "FAILED", false, 0));
	CHECK(sp_state_advances(SP_KIND_PAYMENT, "PENDING", true, 5, "SUCCESSFUL", false, 0));
	CHECK(sp_state_advances(SP_KIND_PAYMENT, "CANCELED", true, 5, "SUCCESSFUL", false, 0));
	CHECK(!sp_state_advances(SP_KIND_PAYMENT, "SUCCESSFUL", true, 5, "CANCELED", false, 0));
}

TEST(rules_unknown_statuses_never_win_over_terminal)
{
	CHECK(!sp_state_advances(SP_KIND_PAYMENT, "SUCCESSFUL", true, 0, "BOGUS", true, 100));
	CHECK(!sp_state_advances(SP_KIND_REFUND, "FAILED", true, 0, "BOGUS", true, 100));
	CHECK_INT_EQ(sp_state_rank(SP_KIND_UNKNOWN, "PENDING"), -1);
	CHECK(!sp_state_terminal(SP_KIND_UNKNOWN, "CANCELED"));
	CHECK_INT_EQ(sp_state_kind("nonsense"), SP_KIND_UNKNOWN);
	CHECK_INT_EQ(sp_state_kind(NULL), SP_KIND_UNKNOWN);
}

TEST(rules_payment_targets)
{
	CHECK_STR_EQ(sp_payment_target("checkout.session.completed", "paid"), "SUCCESSFUL");
	CHECK_STR_EQ(sp_payment_target("checkout.session.completed", "no_payment_required"), "SUCCESSFUL");
	CHECK_STR_EQ(sp_payment_target("checkout.session.completed", "unpaid"), "PENDING");
	CHECK_STR_EQ(sp_payment_target("checkout.session.completed", NULL), "PENDING");
	CHECK_STR_EQ(sp_payment_target("checkout.session.async_payment_succeeded", ""), "SUCCESSFUL");
	CHECK_STR_EQ(sp_payment_target("checkout.session.async_payment_failed", ""), "FAILED");
	CHECK_STR_EQ(sp_payment_target("checkout.session.expired", ""), "CANCELED");
	CHECK_STR_EQ(sp_payment_target("payment_intent.succeeded", ""), "SUCCESSFUL");
	CHECK_STR_EQ(sp_payment_target("payment_intent.payment_failed", ""), "FAILED");
	CHECK_STR_EQ(sp_payment_target("payment_intent.canceled", ""), "CANCELED");
	CHECK_STR_EQ(sp_payment_target("payment_intent.processing", ""), "PENDING");
	CHECK(sp_payment_target("payment_intent.created", "") == NULL);
	CHECK(sp_payment_target("charge.succeeded", "") == NULL);
	CHECK(sp_payment_target(NULL, NULL) == NULL);
}

TEST(rules_final_statuses_fire_the_flow)
{
	CHECK(sp_payment_status_final("SUCCESSFUL"));
	CHECK(sp_payment_status_final("FAILED"));
	CHECK(sp_payment_status_final("CANCELED"));
	CHECK(!sp_payment_status_final("PENDING"));
	CHECK(!sp_payment_status_final(NULL));
}

TEST(rules_row_ids_from_metadata)
{
	long long	id = -1;

	CHECK(sp_parse_row_id("42", &id));
	CHECK_INT_EQ(id, 42);
	CHECK(sp_parse_row_id("000000000000000007", &id));
	CHECK_INT_EQ(id, 7);
	CHECK(sp_parse_row_id("999999999999999999", &id));
	CHECK_INT_EQ(id, 999999999999999999LL);
	id = -1;
	CHECK(!sp_parse_row_id("1234567890123456789", &id));	/* 19 digits */
	CHECK(!sp_parse_row_id("", &id));
	CHECK(!sp_parse_row_id(NULL, &id));
	CHECK(!sp_parse_row_id("-5", &id));
	CHECK(!sp_parse_row_id("5 ", &id));
	CHECK(!sp_parse_row_id("order-5", &id));
	CHECK(!sp_parse_row_id("\xd9\xa3", &id));	/* Arabic-Indic three */
	CHECK_INT_EQ(id, -1);
}

void
unit_suite_rules(void)
{
	RUN(rules_truth_table);
	RUN(rules_no_state_yet_or_no_new_state);
	RUN(rules_unknown_statuses_never_win_over_terminal);
	RUN(rules_payment_targets);
	RUN(rules_final_statuses_fire_the_flow);
	RUN(rules_row_ids_from_metadata);
}
