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

/*
 * Two changes of one subscription in one second (created counts seconds).
 * The applied state is what the row holds after the first to arrive.
 */
static const SpCancelAt none = {false, 0};
static const SpCancelAt dec31 = {true, 1798675200};

TEST(rules_same_second_renewal_then_decline)
{
	/* applied: active -> past_due; incoming: the renewal's update, still active */
	SpSubscriptionState applied = {.status = "PAST_DUE", .cancel_at = none,
	.changed_from_status = "ACTIVE"};
	SpSubscriptionChange renewal = {.status = "ACTIVE", .has_cancel_at = true, .cancel_at = none};
	SpSubscriptionChange again = {.status = "PAST_DUE", .has_cancel_at = true, .cancel_at = none,
	.previous_status = "active"};

	CHECK(sp_subscription_change_is_older(&applied, &renewal));
	CHECK(!sp_subscription_change_is_older(&applied, &again));
}

TEST(rules_same_second_decline_seen_after_a_schedule)
{
	/* applied: a cancellation scheduled by date, none -> dec31 */
	SpSubscriptionState applied = {.status = "ACTIVE", .cancel_at = dec31,
	.has_changed_from_cancel_at = true, .changed_from_cancel_at = none};
	/* incoming: a decline that already carries the date: the newer one */
	SpSubscriptionChange decline = {.status = "PAST_DUE", .has_cancel_at = true, .cancel_at = dec31,
	.previous_status = "active"};
	/* incoming: a change in the state the schedule came from: the older one */
	SpSubscriptionChange before = {.status = "ACTIVE", .has_cancel_at = true, .cancel_at = none};

	CHECK(!sp_subscription_change_is_older(&applied, &decline));
	CHECK(sp_subscription_change_is_older(&applied, &before));
}

TEST(rules_same_second_schedule_seen_after_a_later_change)
{
	/* applied: active -> past_due with the date already set by the first change */
	SpSubscriptionState applied = {.status = "PAST_DUE", .cancel_at = dec31,
	.changed_from_status = "ACTIVE"};
	/* incoming: the schedule (none -> dec31), in the state the decline came from */
	SpSubscriptionChange schedule = {.status = "ACTIVE", .has_cancel_at = true, .cancel_at = dec31,
	.has_previous_cancel_at = true, .previous_cancel_at = none};

	CHECK(sp_subscription_change_is_older(&applied, &schedule));
}

TEST(rules_same_second_change_and_its_undoing_later_arrival_wins)
{
	/* resume arrived first: dec31 -> none; then the cancellation, none -> dec31 */
	SpSubscriptionState resumed = {.status = "ACTIVE", .cancel_at = none,
	.has_changed_from_cancel_at = true, .changed_from_cancel_at = dec31};
	SpSubscriptionChange cancel = {.status = "ACTIVE", .has_cancel_at = true, .cancel_at = dec31,
	.has_previous_cancel_at = true, .previous_cancel_at = none};
	/* the same with cancel_at_period_end, as older API versions do it */
	SpSubscriptionState resumed_cape = {.status = "ACTIVE", .cancel_at_period_end = false,
	.has_changed_from_cape = true, .changed_from_cape = true};
	SpSubscriptionChange cancel_cape = {.status = "ACTIVE", .has_cape = true, .cape = true,
	.has_previous_cape = true, .previous_cape = false};

	CHECK(!sp_subscription_change_is_older(&resumed, &cancel));
	CHECK(!sp_subscription_change_is_older(&resumed_cape, &cancel_cape));
}

TEST(rules_same_second_nothing_known_of_the_applied_change)
{
	SpSubscriptionState applied = {.status = "ACTIVE", .cancel_at = dec31};
	SpSubscriptionChange incoming = {.status = "ACTIVE", .has_cancel_at = true, .cancel_at = none};

	CHECK(!sp_subscription_change_is_older(&applied, &incoming));
	incoming.status = NULL;
	applied.changed_from_status = "TRIALING";
	CHECK(!sp_subscription_change_is_older(&applied, &incoming));
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
	RUN(rules_same_second_renewal_then_decline);
	RUN(rules_same_second_decline_seen_after_a_schedule);
	RUN(rules_same_second_schedule_seen_after_a_later_change);
	RUN(rules_same_second_change_and_its_undoing_later_arrival_wins);
	RUN(rules_same_second_nothing_known_of_the_applied_change);
}
