/*-------------------------------------------------------------------------
 *
 * test_event.c
 *		Unit tests for sp_event: decoding Stripe events of every API shape
 *
 * The fixture files (test/fixtures/events/) are read from disk and handed
 * to the decoder in a buffer of exactly their size, without a NUL, so
 * AddressSanitizer catches any read past the given length.
 *
 *-------------------------------------------------------------------------
 */
#include "unit.h"
#include "sp_event.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SP_EVENT_FIXTURES
#define SP_EVENT_FIXTURES "../fixtures/events"
#endif

#define PI		"pi_3SPayPaymentIntent00000001"
#define CH		"ch_3SPayCharge0000000000001"
#define SUB		"sub_1SPaySubscription000001"
#define CUS		"cus_SPayCustomer01"
#define PRICE	"price_1SPayMonthlyPrice00001"
#define NEW_VERSION "2026-10-28.endive"
#define T_NEW	1793200000LL

/* 25 kB: static rather than on the test's stack */
static SpEvent ev;

/* Decodes exactly len bytes from a private copy without a terminator. */
static SpEventResult
decode_len(const char *json, size_t len)
{
	char	   *copy = malloc(len > 0 ? len : 1);
	SpEventResult r;

	if (copy == NULL)
		return SP_EVENT_NO_MEMORY;
	memcpy(copy, json, len);
	r = sp_event_decode(copy, len, &ev);
	free(copy);
	return r;
}

static SpEventResult
decode(const char *json)
{
	return decode_len(json, strlen(json));
}

/* Reads a fixture; the caller frees.  NULL (and a test failure) if absent. */
static char *
read_fixture(const char *name, size_t *len)
{
	char		path[512];
	FILE	   *f;
	char	   *buf;
	long		size;

	snprintf(path, sizeof(path), "%s/%s", SP_EVENT_FIXTURES, name);
	f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
		fseek(f, 0, SEEK_SET) != 0)
	{
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t) size + 1);
	if (buf != NULL && fread(buf, 1, (size_t) size, f) != (size_t) size)
	{
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = (size_t) size;
	return buf;
}

static SpEventResult
decode_fixture(const char *name)
{
	size_t		len = 0;
	char	   *buf = read_fixture(name, &len);
	SpEventResult r;

	if (buf == NULL)
	{
		fprintf(stderr, "cannot read fixture %s/%s\n", SP_EVENT_FIXTURES, name);
		return (SpEventResult) -1;
	}
	r = decode_len(buf, len);
	free(buf);
	return r;
}

/*
 * An event around a data.object text.  The buffer is static and large
 * enough for every inline case below.
 */
static const char *
wrap_version(const char *type, const char *api_version, const char *object)
{
	static char buf[16384];
	int			n;

	n = snprintf(buf, sizeof(buf),
				 "{\"id\":\"evt_test\",\"object\":\"event\","
				 "\"api_version\":\"%s\",\"created\":1700000000,"
				 "\"livemode\":false,\"type\":\"%s\",\"data\":{\"object\":%s}}",
				 api_version, type, object);
	if (n < 0 || (size_t) n >= sizeof(buf))
		return "";
	return buf;
}

/* An event of the pinned version. */
static const char *
wrap(const char *type, const char *object)
{
	return wrap_version(type, NEW_VERSION, object);
}

TEST(event_checkout_session_completed)
{
	CHECK_INT_EQ(decode_fixture("checkout.session.completed.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.id, "evt_1SPayCheckoutCompleted001");
	CHECK_STR_EQ(ev.type, "checkout.session.completed");
	CHECK_INT_EQ(ev.created, T_NEW);
	CHECK(!ev.livemode);
	CHECK_STR_EQ(ev.api_version, NEW_VERSION);
	CHECK_STR_EQ(ev.object_type, "checkout.session");
	CHECK_STR_EQ(ev.object_id,
				 "cs_test_a1SPayCheckoutSession0000000000000000000000000000000000001");
	CHECK_STR_EQ(ev.status, "complete");
	CHECK_STR_EQ(ev.currency, "usd");
	CHECK_STR_EQ(ev.customer, "");
	CHECK_STR_EQ(ev.metadata_order_id, "42");
	CHECK_STR_EQ(ev.metadata_payment_id, "7");
	CHECK_STR_EQ(ev.metadata_refund_id, "");
	CHECK_STR_EQ(ev.metadata_recurring_payment_id, "");
	CHECK_STR_EQ(ev.payment_status, "paid");
	CHECK_STR_EQ(ev.mode, "payment");
	CHECK_STR_EQ(ev.payment_intent, PI);
	CHECK_STR_EQ(ev.subscription, "");
	CHECK_STR_EQ(ev.client_reference_id, "42");
	CHECK(ev.has_amount_total);
	CHECK_INT_EQ(ev.amount_total, 1000);
	CHECK(ev.has_expires_at);
	CHECK_INT_EQ(ev.expires_at, T_NEW + 86340);
	/* other types' fields stay empty */
	CHECK(!ev.has_amount);
	CHECK(!ev.has_period_start);
	CHECK_STR_EQ(ev.charge, "");
	CHECK_STR_EQ(ev.error_path, "");
}

TEST(event_checkout_session_subscription)
{
	CHECK_INT_EQ(decode_fixture("checkout.session.completed.subscription.json"),
				 SP_EVENT_OK);
	CHECK_STR_EQ(ev.mode, "subscription");
	CHECK_STR_EQ(ev.subscription, SUB);
	CHECK_STR_EQ(ev.payment_intent, "");
	/* the customer is expanded in this fixture */
	CHECK_STR_EQ(ev.customer, CUS);
	CHECK_STR_EQ(ev.metadata_order_id, "43");
	CHECK_STR_EQ(ev.metadata_recurring_payment_id, "3");
	CHECK_INT_EQ(ev.amount_total, 2000);
}

TEST(event_checkout_session_expired)
{
	CHECK_INT_EQ(decode_fixture("checkout.session.expired.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.type, "checkout.session.expired");
	CHECK_STR_EQ(ev.status, "expired");
	CHECK_STR_EQ(ev.payment_status, "unpaid");
	CHECK_STR_EQ(ev.payment_intent, "");
}

TEST(event_payment_intent_succeeded)
{
	CHECK_INT_EQ(decode_fixture("payment_intent.succeeded.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.object_type, "payment_intent");
	CHECK_STR_EQ(ev.object_id, PI);
	CHECK_STR_EQ(ev.status, "succeeded");
	CHECK(ev.has_amount);
	CHECK_INT_EQ(ev.amount, 1000);
	CHECK(ev.has_amount_received);
	CHECK_INT_EQ(ev.amount_received, 1000);
	CHECK_STR_EQ(ev.charge, CH);
	CHECK_STR_EQ(ev.metadata_order_id, "42");
	CHECK_STR_EQ(ev.metadata_payment_id, "7");
	CHECK_STR_EQ(ev.last_payment_error_code, "");
	CHECK_STR_EQ(ev.cancellation_reason, "");
}

TEST(event_payment_intent_succeeded_2022)
{
	CHECK_INT_EQ(decode_fixture("payment_intent.succeeded.2022-08-01.json"),
				 SP_EVENT_OK);
	CHECK_STR_EQ(ev.api_version, "2022-08-01");
	CHECK_STR_EQ(ev.status, "succeeded");
	CHECK_INT_EQ(ev.amount_received, 1000);
	/* no latest_charge then: charges.data[0] */
	CHECK_STR_EQ(ev.charge, CH);
}

TEST(event_payment_intent_failed)
{
	CHECK_INT_EQ(decode_fixture("payment_intent.payment_failed.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.status, "requires_payment_method");
	CHECK_INT_EQ(ev.amount_received, 0);
	CHECK(ev.has_amount_received);
	/* latest_charge is expanded in this fixture */
	CHECK_STR_EQ(ev.charge, CH);
	CHECK_STR_EQ(ev.last_payment_error_code, "card_declined");
	CHECK_STR_EQ(ev.last_payment_error_decline_code, "insufficient_funds");
	CHECK_STR_EQ(ev.last_payment_error_message, "Your card has insufficient funds.");
}

TEST(event_payment_intent_canceled)
{
	CHECK_INT_EQ(decode_fixture("payment_intent.canceled.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.status, "canceled");
	CHECK_STR_EQ(ev.cancellation_reason, "abandoned");
	CHECK_STR_EQ(ev.charge, "");
}

TEST(event_charge_refunded)
{
	CHECK_INT_EQ(decode_fixture("charge.refunded.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.object_type, "charge");
	CHECK_STR_EQ(ev.object_id, CH);
	CHECK_STR_EQ(ev.payment_intent, PI);
	CHECK_INT_EQ(ev.amount, 1000);
	CHECK(ev.has_amount_refunded);
	CHECK_INT_EQ(ev.amount_refunded, 500);
	CHECK(ev.has_refunded);
	CHECK(!ev.refunded);
	/* newer versions do not embed the refunds */
	CHECK(!ev.has_refunds);
	CHECK_INT_EQ(ev.nrefunds, 0);
}

TEST(event_charge_refunded_2022)
{
	CHECK_INT_EQ(decode_fixture("charge.refunded.2022-08-01.json"), SP_EVENT_OK);
	CHECK(ev.refunded);
	CHECK_INT_EQ(ev.amount_refunded, 1000);
	CHECK(ev.has_refunds);
	CHECK(!ev.refunds_truncated);
	CHECK_INT_EQ(ev.nrefunds, 2);
	CHECK_STR_EQ(ev.refunds[0].id, "re_3SPayRefund00000000000002");
	CHECK_STR_EQ(ev.refunds[0].status, "pending");
	CHECK(ev.refunds[0].has_amount);
	CHECK_INT_EQ(ev.refunds[0].amount, 500);
	CHECK_STR_EQ(ev.refunds[1].id, "re_3SPayRefund00000000000001");
	CHECK_STR_EQ(ev.refunds[1].status, "succeeded");
}

TEST(event_refund_created)
{
	CHECK_INT_EQ(decode_fixture("refund.created.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.object_type, "refund");
	CHECK_STR_EQ(ev.object_id, "re_3SPayRefund00000000000001");
	CHECK_STR_EQ(ev.status, "succeeded");
	CHECK_INT_EQ(ev.amount, 500);
	CHECK_STR_EQ(ev.currency, "usd");
	CHECK_STR_EQ(ev.payment_intent, PI);
	CHECK_STR_EQ(ev.charge, CH);
	CHECK_STR_EQ(ev.reason, "requested_by_customer");
	CHECK_STR_EQ(ev.failure_reason, "");
	CHECK_STR_EQ(ev.metadata_refund_id, "5");
	CHECK_STR_EQ(ev.metadata_refund_key, "7-0-500");
	CHECK_STR_EQ(ev.metadata_payment_id, "7");
}

/* the one place the pinned version names a renewal's PaymentIntent */
TEST(event_invoice_payment_paid)
{
	CHECK_INT_EQ(decode_fixture("invoice_payment.paid.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.object_type, "invoice_payment");
	CHECK_STR_EQ(ev.invoice, "in_1SPayInvoice000000000001");
	CHECK_STR_EQ(ev.payment_intent, "pi_3SPayRenewalIntent0000001");
	CHECK_STR_EQ(ev.charge, "");
	CHECK_STR_EQ(ev.status, "paid");
	CHECK(ev.has_amount_paid);
	CHECK_INT_EQ(ev.amount_paid, 2000);

	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"invoice_payment.paid\",\"created\":1,"
						"\"livemode\":false,\"data\":{\"object\":{\"object\":\"invoice_payment\","
						"\"invoice\":{\"id\":\"in_2\"},\"payment\":{\"type\":\"charge\","
						"\"charge\":\"ch_2\"}}}}"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.invoice, "in_2");
	CHECK_STR_EQ(ev.charge, "ch_2");
	CHECK_STR_EQ(ev.payment_intent, "");

	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"invoice_payment.paid\",\"created\":1,"
						"\"livemode\":false,\"data\":{\"object\":{\"object\":\"invoice_payment\","
						"\"payment\":\"pi_1\"}}}"), SP_EVENT_INVALID_FIELD);
	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"invoice.paid\",\"created\":1,"
						"\"livemode\":false,\"data\":{\"object\":{\"object\":\"invoice\","
						"\"invoice\":\"in_9\"}}}"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.invoice, "");
}

TEST(event_refund_failed)
{
	CHECK_INT_EQ(decode_fixture("refund.failed.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.status, "failed");
	CHECK_STR_EQ(ev.failure_reason, "expired_or_canceled_card");
}

TEST(event_subscription_updated)
{
	CHECK_INT_EQ(decode_fixture("customer.subscription.updated.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.object_type, "subscription");
	CHECK_STR_EQ(ev.object_id, SUB);
	CHECK_STR_EQ(ev.status, "active");
	CHECK_STR_EQ(ev.customer, CUS);
	CHECK_STR_EQ(ev.metadata_order_id, "43");
	CHECK_STR_EQ(ev.metadata_recurring_payment_id, "3");
	CHECK(ev.has_cancel_at_period_end);
	CHECK(ev.cancel_at_period_end);
	CHECK(ev.has_canceled_at);
	CHECK_INT_EQ(ev.canceled_at, T_NEW);
	/* from items.data[0] */
	CHECK(ev.has_period_start);
	CHECK_INT_EQ(ev.period_start, T_NEW - 60);
	CHECK(ev.has_period_end);
	CHECK_INT_EQ(ev.period_end, T_NEW - 60 + 2678400);
	CHECK_STR_EQ(ev.price_id, PRICE);
}

/* what a change was from orders two changes made in the same second */
TEST(event_subscription_previous_attributes)
{
	CHECK_INT_EQ(decode_fixture("customer.subscription.updated.json"), SP_EVENT_OK);
	CHECK(ev.has_previous_cancel_at_period_end);
	CHECK(!ev.previous_cancel_at_period_end);
	CHECK_STR_EQ(ev.previous_status, "");

	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"customer.subscription.updated\","
						"\"created\":1,\"livemode\":false,\"data\":{\"object\":"
						"{\"object\":\"subscription\",\"status\":\"past_due\"},"
						"\"previous_attributes\":{\"status\":\"active\"}}}"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.previous_status, "active");
	CHECK(!ev.has_previous_cancel_at_period_end);
	CHECK(!ev.has_previous_cancel_at);

	/* cancel_at: null in previous_attributes says none was scheduled */
	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"customer.subscription.updated\","
						"\"created\":1,\"livemode\":false,\"data\":{\"object\":"
						"{\"object\":\"subscription\",\"cancel_at\":1798675200},"
						"\"previous_attributes\":{\"cancel_at\":null}}}"), SP_EVENT_OK);
	CHECK(ev.has_previous_cancel_at);
	CHECK(!ev.previous_cancel_at_set);
	CHECK(ev.has_cancel_at);
	CHECK_INT_EQ(ev.cancel_at, 1798675200);
	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"customer.subscription.updated\","
						"\"created\":1,\"livemode\":false,\"data\":{\"object\":"
						"{\"object\":\"subscription\",\"cancel_at\":null},"
						"\"previous_attributes\":{\"cancel_at\":1798675200}}}"), SP_EVENT_OK);
	CHECK(ev.has_previous_cancel_at);
	CHECK(ev.previous_cancel_at_set);
	CHECK_INT_EQ(ev.previous_cancel_at, 1798675200);
	CHECK(!ev.has_cancel_at);
	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"customer.subscription.updated\","
						"\"created\":1,\"livemode\":false,\"data\":{\"object\":"
						"{\"object\":\"subscription\"},"
						"\"previous_attributes\":{\"cancel_at\":\"soon\"}}}"), SP_EVENT_INVALID_FIELD);

	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"customer.subscription.updated\","
						"\"created\":1,\"livemode\":false,\"data\":{\"object\":"
						"{\"object\":\"subscription\"},\"previous_attributes\":[]}}"),
				 SP_EVENT_INVALID_FIELD);
	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"customer.subscription.updated\","
						"\"created\":1,\"livemode\":false,\"data\":{\"object\":"
						"{\"object\":\"subscription\"},\"previous_attributes\":"
						"{\"status\":7}}}"), SP_EVENT_INVALID_FIELD);
	/* only a subscription's are read */
	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"payment_intent.succeeded\","
						"\"created\":1,\"livemode\":false,\"data\":{\"object\":"
						"{\"object\":\"payment_intent\"},\"previous_attributes\":"
						"{\"status\":\"processing\"}}}"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.previous_status, "");
}

TEST(event_subscription_updated_2024)
{
	CHECK_INT_EQ(decode_fixture("customer.subscription.updated.2024-06-20.json"),
				 SP_EVENT_OK);
	CHECK_STR_EQ(ev.api_version, "2024-06-20");
	/* from the top level */
	CHECK_INT_EQ(ev.period_start, 1719000000LL - 60);
	CHECK_INT_EQ(ev.period_end, 1719000000LL - 60 + 2592000);
	CHECK_STR_EQ(ev.price_id, PRICE);
	CHECK(ev.cancel_at_period_end);
}

TEST(event_subscription_deleted)
{
	CHECK_INT_EQ(decode_fixture("customer.subscription.deleted.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.status, "canceled");
	CHECK(!ev.cancel_at_period_end);
	CHECK(ev.has_cancel_at_period_end);
	CHECK_INT_EQ(ev.canceled_at, T_NEW + 20);
}

TEST(event_invoice_paid)
{
	CHECK_INT_EQ(decode_fixture("invoice.paid.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.object_type, "invoice");
	CHECK_STR_EQ(ev.object_id, "in_1SPayInvoice000000000001");
	CHECK_STR_EQ(ev.status, "paid");
	CHECK_STR_EQ(ev.billing_reason, "subscription_cycle");
	CHECK_INT_EQ(ev.amount_paid, 2000);
	CHECK_INT_EQ(ev.amount_due, 2000);
	CHECK_STR_EQ(ev.customer, CUS);
	/* parent.subscription_details */
	CHECK_STR_EQ(ev.subscription, SUB);
	CHECK_STR_EQ(ev.sub_metadata_order_id, "43");
	CHECK_STR_EQ(ev.sub_metadata_recurring_payment_id, "3");
	/* payments is not expanded in webhook events */
	CHECK_STR_EQ(ev.payment_intent, "");
	CHECK_STR_EQ(ev.charge, "");
	/* the service period billed, from the line */
	CHECK_INT_EQ(ev.period_start, T_NEW + 2678400);
	CHECK_INT_EQ(ev.period_end, T_NEW + 2 * 2678400);
}

TEST(event_invoice_paid_2024)
{
	CHECK_INT_EQ(decode_fixture("invoice.paid.2024-06-20.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.subscription, SUB);
	CHECK_STR_EQ(ev.sub_metadata_order_id, "43");
	CHECK_STR_EQ(ev.sub_metadata_recurring_payment_id, "3");
	CHECK_STR_EQ(ev.payment_intent, "pi_3SPayRenewalIntent000001");
	CHECK_STR_EQ(ev.charge, "ch_3SPayRenewalCharge000001");
	CHECK_INT_EQ(ev.period_start, 1719000000LL + 2592000);
	CHECK_INT_EQ(ev.period_end, 1719000000LL + 2 * 2592000);
}

TEST(event_unhandled_type)
{
	CHECK_INT_EQ(decode_fixture("plan.created.json"), SP_EVENT_OK);
	CHECK_STR_EQ(ev.type, "plan.created");
	CHECK_STR_EQ(ev.id, "evt_1Pgc76B7WZ01zgkWwyRHS12y");
	CHECK_STR_EQ(ev.api_version, "");
	CHECK_STR_EQ(ev.object_type, "plan");
	CHECK_STR_EQ(ev.object_id, "price_1PgafmB7WZ01zgkW6dKueIc5");
	CHECK_STR_EQ(ev.currency, "usd");
	/* plan.amount is not read for a plan */
	CHECK(!ev.has_amount);
}

TEST(event_minimal)
{
	CHECK_INT_EQ(decode(" \n{\"id\":\"evt_1\",\"type\":\"x.y\",\"created\":0,"
						"\"livemode\":true,\"data\":{\"object\":{\"object\":\"balance\"}}}\r\n\t"),
				 SP_EVENT_OK);
	CHECK_STR_EQ(ev.id, "evt_1");
	CHECK(ev.livemode);
	CHECK_INT_EQ(ev.created, 0);
	CHECK_STR_EQ(ev.object_type, "balance");
	CHECK_STR_EQ(ev.object_id, "");
}

TEST(event_nulls_are_absent)
{
	CHECK_INT_EQ(decode(wrap("payment_intent.created",
							 "{\"object\":\"payment_intent\",\"id\":\"pi_1\","
							 "\"amount\":null,\"amount_received\":null,\"status\":null,"
							 "\"latest_charge\":null,\"charges\":null,\"metadata\":null,"
							 "\"customer\":null,\"last_payment_error\":null}")),
				 SP_EVENT_OK);
	CHECK(!ev.has_amount);
	CHECK(!ev.has_amount_received);
	CHECK_STR_EQ(ev.status, "");
	CHECK_STR_EQ(ev.charge, "");
	CHECK_STR_EQ(ev.metadata_order_id, "");
	CHECK_INT_EQ(decode("{\"id\":\"evt_1\",\"type\":\"x\",\"created\":1,\"livemode\":false,"
						"\"api_version\":null,\"data\":{\"object\":{\"object\":\"x\",\"id\":null}}}"),
				 SP_EVENT_OK);
	CHECK_STR_EQ(ev.api_version, "");
	CHECK_INT_EQ(ev.amount, 0);
}

TEST(event_subscription_period_by_api_version)
{
	/* the pinned version (or none said): the items' period decides */
	CHECK_INT_EQ(decode(wrap("customer.subscription.updated",
							 "{\"object\":\"subscription\",\"id\":\"sub_1\","
							 "\"current_period_start\":100,\"current_period_end\":200,"
							 "\"items\":{\"object\":\"list\",\"data\":[{\"id\":\"si_1\","
							 "\"current_period_start\":300,\"current_period_end\":400,"
							 "\"price\":{\"id\":\"price_A\"},\"plan\":{\"id\":\"plan_B\"}}]}}")),
				 SP_EVENT_OK);
	CHECK_INT_EQ(ev.period_start, 300);
	CHECK_INT_EQ(ev.period_end, 400);
	CHECK_STR_EQ(ev.price_id, "price_A");

	/* an event of a version before 2025-03-31: its top-level period */
	CHECK_INT_EQ(decode(wrap_version("customer.subscription.updated", "2024-06-20",
							 "{\"object\":\"subscription\",\"id\":\"sub_1\","
							 "\"current_period_start\":100,\"current_period_end\":200,"
							 "\"items\":{\"object\":\"list\",\"data\":[{\"id\":\"si_1\","
							 "\"current_period_start\":300,\"current_period_end\":400,"
							 "\"price\":{\"id\":\"price_A\"},\"plan\":{\"id\":\"plan_B\"}}]}}")),
				 SP_EVENT_OK);
	CHECK_INT_EQ(ev.period_start, 100);
	CHECK_INT_EQ(ev.period_end, 200);
	CHECK_STR_EQ(ev.price_id, "price_A");

	/* half and half: each end falls back on its own */
	CHECK_INT_EQ(decode(wrap_version("customer.subscription.updated", "2024-06-20",
							 "{\"object\":\"subscription\",\"current_period_start\":null,"
							 "\"current_period_end\":200,\"items\":{\"data\":[{"
							 "\"current_period_start\":300,\"current_period_end\":400,"
							 "\"plan\":{\"id\":\"plan_B\"}}]}}")),
				 SP_EVENT_OK);
	CHECK_INT_EQ(ev.period_start, 300);
	CHECK_INT_EQ(ev.period_end, 200);
	CHECK_STR_EQ(ev.price_id, "plan_B");

	/* price as a bare id, empty items */
	CHECK_INT_EQ(decode(wrap("customer.subscription.updated",
							 "{\"object\":\"subscription\",\"items\":{\"data\":[{"
							 "\"price\":\"price_C\"}]}}")), SP_EVENT_OK);
	CHECK_STR_EQ(ev.price_id, "price_C");
	CHECK(!ev.has_period_start);
	CHECK_INT_EQ(decode(wrap("customer.subscription.updated",
							 "{\"object\":\"subscription\",\"items\":{\"data\":[]}}")),
				 SP_EVENT_OK);
	CHECK_STR_EQ(ev.price_id, "");
}

TEST(event_invoice_newer_payments_and_top_period)
{
	CHECK_INT_EQ(decode(wrap("invoice.paid",
							 "{\"object\":\"invoice\",\"id\":\"in_1\",\"period_start\":10,"
							 "\"period_end\":20,\"parent\":{\"subscription_details\":{"
							 "\"subscription\":{\"id\":\"sub_X\",\"object\":\"subscription\"},"
							 "\"metadata\":{\"order_id\":\"9\"}}},"
							 "\"payments\":{\"object\":\"list\",\"data\":[{\"object\":\"invoice_payment\","
							 "\"status\":\"open\",\"payment\":{\"payment_intent\":\"pi_OPEN\"}},"
							 "{\"object\":\"invoice_payment\",\"status\":\"paid\",\"is_default\":true,"
							 "\"payment\":{\"type\":\"payment_intent\",\"payment_intent\":\"pi_X\","
							 "\"charge\":{\"id\":\"ch_X\"}}}]},"
							 "\"lines\":{\"data\":[]}}")),
				 SP_EVENT_OK);
	CHECK_STR_EQ(ev.subscription, "sub_X");
	CHECK_STR_EQ(ev.sub_metadata_order_id, "9");
	CHECK_STR_EQ(ev.sub_metadata_recurring_payment_id, "");
	CHECK_STR_EQ(ev.payment_intent, "pi_X");
	CHECK_STR_EQ(ev.charge, "ch_X");
	CHECK_INT_EQ(ev.period_start, 10);
	CHECK_INT_EQ(ev.period_end, 20);

	/* both shapes at once: the pinned version's shape decides */
#define BOTH_SHAPES \
	"{\"object\":\"invoice\",\"subscription\":\"sub_OLD\"," \
	"\"payment_intent\":\"pi_OLD\"," \
	"\"subscription_details\":{\"metadata\":{\"order_id\":\"1\"}}," \
	"\"parent\":{\"subscription_details\":{\"subscription\":\"sub_NEW\"," \
	"\"metadata\":{\"order_id\":\"2\"}}}," \
	"\"payments\":{\"data\":[{\"status\":\"paid\",\"payment\":{\"payment_intent\":\"pi_NEW\"}}]}}"
	CHECK_INT_EQ(decode(wrap("invoice.paid", BOTH_SHAPES)), SP_EVENT_OK);
	CHECK_STR_EQ(ev.subscription, "sub_NEW");
	CHECK_STR_EQ(ev.payment_intent, "pi_NEW");
	CHECK_STR_EQ(ev.sub_metadata_order_id, "2");

	/* an event of an older version falls back on its own shape first */
	CHECK_INT_EQ(decode(wrap_version("invoice.paid", "2024-06-20", BOTH_SHAPES)), SP_EVENT_OK);
	CHECK_STR_EQ(ev.subscription, "sub_OLD");
	CHECK_STR_EQ(ev.payment_intent, "pi_OLD");
	CHECK_STR_EQ(ev.sub_metadata_order_id, "1");

	/* a payment that is not paid names no PaymentIntent */
	CHECK_INT_EQ(decode(wrap("invoice.paid",
							 "{\"object\":\"invoice\",\"payments\":{\"data\":[{\"status\":\"open\","
							 "\"payment\":{\"payment_intent\":\"pi_OPEN\"}}]}}")), SP_EVENT_OK);
	CHECK_STR_EQ(ev.payment_intent, "");
}

TEST(event_refunds_truncated)
{
	char		obj[8192];
	size_t		n;
	int			i;

	n = (size_t) snprintf(obj, sizeof(obj),
						  "{\"object\":\"charge\",\"refunds\":{\"object\":\"list\",\"data\":[");
	for (i = 0; i < 20; i++)
		n += (size_t) snprintf(obj + n, sizeof(obj) - n,
							   "%s{\"id\":\"re_%d\",\"amount\":%d,\"status\":\"succeeded\"}",
							   i > 0 ? "," : "", i, i * 10);
	snprintf(obj + n, sizeof(obj) - n, "],\"has_more\":false}}");
	CHECK_INT_EQ(decode(wrap("charge.refunded", obj)), SP_EVENT_OK);
	CHECK(ev.has_refunds);
	CHECK_INT_EQ(ev.nrefunds, SP_EVENT_MAX_REFUNDS);
	CHECK(ev.refunds_truncated);
	CHECK_STR_EQ(ev.refunds[15].id, "re_15");
	CHECK_INT_EQ(ev.refunds[15].amount, 150);

	/* a short page with more on the server is truncated too */
	CHECK_INT_EQ(decode(wrap("charge.refunded",
							 "{\"object\":\"charge\",\"refunds\":{\"data\":[{\"id\":\"re_1\"}],"
							 "\"has_more\":true}}")), SP_EVENT_OK);
	CHECK_INT_EQ(ev.nrefunds, 1);
	CHECK(!ev.refunds[0].has_amount);
	CHECK(ev.refunds_truncated);

	/* an empty embedded list is still "embedded" */
	CHECK_INT_EQ(decode(wrap("charge.refunded",
							 "{\"object\":\"charge\",\"refunds\":{\"data\":[],\"has_more\":false}}")),
				 SP_EVENT_OK);
	CHECK(ev.has_refunds);
	CHECK_INT_EQ(ev.nrefunds, 0);
	CHECK(!ev.refunds_truncated);
}

TEST(event_not_json)
{
	static const char *const bad[] = {
		"", " ", "{", "}", "{\"id\":", "nul", "{} x", "{}{}", "{\"a\":1,}",
		"{'id':'evt_1'}x", "\xff", "{\"a\":\"\xc3\x28\"}", "{\"a\":NaN}x",
	};
	size_t		i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		SpEventResult r = decode(bad[i]);

		if (r != SP_EVENT_NOT_JSON)
		{
			unit_fail(__FILE__, __LINE__, "input %zu: %s", i, sp_event_result_name(r));
			return;
		}
	}
	/* text after a NUL byte that json-c would stop at */
	CHECK_INT_EQ(decode_len("{}\0{}", 5), SP_EVENT_NOT_JSON);
	CHECK_INT_EQ(decode_len("{}\0", 3), SP_EVENT_NOT_JSON);
	CHECK_INT_EQ(sp_event_decode(NULL, 0, &ev), SP_EVENT_NOT_JSON);
	CHECK_INT_EQ(sp_event_decode("{}", 2, NULL), SP_EVENT_NO_MEMORY);
}

TEST(event_not_object)
{
	CHECK_INT_EQ(decode("[]"), SP_EVENT_NOT_OBJECT);
	CHECK_INT_EQ(decode("null"), SP_EVENT_NOT_OBJECT);
	CHECK_INT_EQ(decode("1"), SP_EVENT_NOT_OBJECT);
	CHECK_INT_EQ(decode("\"evt_1\""), SP_EVENT_NOT_OBJECT);
	CHECK_INT_EQ(decode("true"), SP_EVENT_NOT_OBJECT);
}

/*
 * One required envelope member replaced: each gets its own code and the
 * error path names it.
 */
typedef struct EnvelopeCase
{
	const char *id;
	const char *type;
	const char *created;
	const char *livemode;
	const char *data;
	SpEventResult expect;
	const char *path;
} EnvelopeCase;

#define OK_ID		"\"id\":\"evt_1\","
#define OK_TYPE		"\"type\":\"t\","
#define OK_CREATED	"\"created\":1,"
#define OK_LIVE		"\"livemode\":false,"
#define OK_DATA		"\"data\":{\"object\":{\"object\":\"x\"}}"

TEST(event_envelope_errors)
{
	static const EnvelopeCase cases[] = {
		{"", OK_TYPE, OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_ID, "id"},
		{"\"id\":null,", OK_TYPE, OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_ID, "id"},
		{"\"id\":123,", OK_TYPE, OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_ID, "id"},
		{"\"id\":\"ch_1\",", OK_TYPE, OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_ID, "id"},
		{"\"id\":\"evt_\",", OK_TYPE, OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_ID, "id"},
		{"\"id\":\"EVT_1\",", OK_TYPE, OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_ID, "id"},
		{"\"id\":\"evt_\\u0000x\",", OK_TYPE, OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NOT_JSON, ""},
		{"\"id\":[\"evt_1\"],", OK_TYPE, OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_ID, "id"},
		{OK_ID, "", OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_TYPE, "type"},
		{OK_ID, "\"type\":\"\",", OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_TYPE, "type"},
		{OK_ID, "\"type\":5,", OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_TYPE, "type"},
		{OK_ID, "\"type\":null,", OK_CREATED, OK_LIVE, OK_DATA, SP_EVENT_NO_TYPE, "type"},
		{OK_ID, OK_TYPE, "", OK_LIVE, OK_DATA, SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, "\"created\":\"1\",", OK_LIVE, OK_DATA, SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, "\"created\":1.5,", OK_LIVE, OK_DATA, SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, "\"created\":1.0,", OK_LIVE, OK_DATA, SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, "\"created\":1e3,", OK_LIVE, OK_DATA, SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, "\"created\":-1,", OK_LIVE, OK_DATA, SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, "\"created\":99999999999999999999,", OK_LIVE, OK_DATA,
		SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, "\"created\":9223372036854775807,", OK_LIVE, OK_DATA,
		SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, "\"created\":null,", OK_LIVE, OK_DATA, SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, "\"created\":253402300800,", OK_LIVE, OK_DATA,
		SP_EVENT_NO_CREATED, "created"},
		{OK_ID, OK_TYPE, OK_CREATED, "", OK_DATA, SP_EVENT_NO_LIVEMODE, "livemode"},
		{OK_ID, OK_TYPE, OK_CREATED, "\"livemode\":\"false\",", OK_DATA,
		SP_EVENT_NO_LIVEMODE, "livemode"},
		{OK_ID, OK_TYPE, OK_CREATED, "\"livemode\":0,", OK_DATA, SP_EVENT_NO_LIVEMODE, "livemode"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"x\":1", SP_EVENT_NO_DATA, "data"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"data\":[]", SP_EVENT_NO_DATA, "data"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"data\":null", SP_EVENT_NO_DATA, "data"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"data\":{}", SP_EVENT_NO_OBJECT, "data.object"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"data\":{\"object\":\"pi_1\"}",
		SP_EVENT_NO_OBJECT, "data.object"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"data\":{\"object\":null}",
		SP_EVENT_NO_OBJECT, "data.object"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"data\":{\"object\":{}}",
		SP_EVENT_NO_OBJECT_TYPE, "data.object.object"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"data\":{\"object\":{\"object\":7}}",
		SP_EVENT_NO_OBJECT_TYPE, "data.object.object"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"data\":{\"object\":{\"object\":\"\"}}",
		SP_EVENT_NO_OBJECT_TYPE, "data.object.object"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE,
			"\"data\":{\"object\":{\"object\":\"x\",\"id\":5}}",
		SP_EVENT_INVALID_FIELD, "data.object.id"},
		{OK_ID, OK_TYPE, OK_CREATED, OK_LIVE, "\"api_version\":1," OK_DATA,
		SP_EVENT_INVALID_FIELD, "api_version"},
		/* the first problem wins */
		{"\"id\":1", "", "", "", "", SP_EVENT_NO_ID, "id"},
	};
	size_t		i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		const EnvelopeCase *c = &cases[i];
		char		json[512];
		SpEventResult r;

		snprintf(json, sizeof(json), "{%s%s%s%s%s}", c->id, c->type, c->created,
				 c->livemode, c->data);
		r = decode(json);
		if (r != c->expect || strcmp(ev.error_path, c->path) != 0)
		{
			unit_fail(__FILE__, __LINE__, "case %zu %s: %s at \"%s\", expected %s at \"%s\"",
					  i, json, sp_event_result_name(r), ev.error_path,
					  sp_event_result_name(c->expect), c->path);
			return;
		}
		/* nothing from before the failure is left */
		CHECK_STR_EQ(ev.id, "");
		CHECK_STR_EQ(ev.type, "");
	}
}

typedef struct FieldCase
{
	const char *type;
	const char *object;
	const char *path;
} FieldCase;

/*
 * Wrong types on fields we read: INVALID_FIELD, naming the field.  In an
 * event of an old version, both the old shapes and the pinned ones are read.
 */
TEST(event_invalid_fields)
{
	static const FieldCase cases[] = {
		{"x", "{\"object\":\"x\",\"status\":1}", "data.object.status"},
		{"x", "{\"object\":\"x\",\"currency\":[\"usd\"]}", "data.object.currency"},
		{"x", "{\"object\":\"x\",\"customer\":123}", "data.object.customer"},
		{"x", "{\"object\":\"x\",\"customer\":{\"object\":\"customer\"}}", "data.object.customer"},
		{"x", "{\"object\":\"x\",\"customer\":{\"id\":5}}", "data.object.customer"},
		{"x", "{\"object\":\"x\",\"metadata\":[]}", "data.object.metadata"},
		{"x", "{\"object\":\"x\",\"metadata\":\"order_id=1\"}", "data.object.metadata"},
		{"x", "{\"object\":\"x\",\"metadata\":{\"order_id\":42}}", "data.object.metadata"},
		{"x", "{\"object\":\"x\",\"metadata\":{\"stripepay_refund_id\":true}}", "data.object.metadata"},
		{"c", "{\"object\":\"checkout.session\",\"amount_total\":\"1000\"}", "data.object.amount_total"},
		{"c", "{\"object\":\"checkout.session\",\"amount_total\":10.5}", "data.object.amount_total"},
		{"c", "{\"object\":\"checkout.session\",\"amount_total\":-1}", "data.object.amount_total"},
		{"c", "{\"object\":\"checkout.session\",\"expires_at\":true}", "data.object.expires_at"},
		{"c", "{\"object\":\"checkout.session\",\"payment_intent\":[]}", "data.object.payment_intent"},
		{"c", "{\"object\":\"checkout.session\",\"mode\":{}}", "data.object.mode"},
		{"c", "{\"object\":\"checkout.session\",\"client_reference_id\":42}",
		"data.object.client_reference_id"},
		{"p", "{\"object\":\"payment_intent\",\"amount\":1e3}", "data.object.amount"},
		{"p", "{\"object\":\"payment_intent\",\"amount_received\":99999999999999999999}",
		"data.object.amount_received"},
		{"p", "{\"object\":\"payment_intent\",\"charges\":{\"data\":{}}}", "data.object.charges"},
		{"p", "{\"object\":\"payment_intent\",\"charges\":[]}", "data.object.charges"},
		{"p", "{\"object\":\"payment_intent\",\"charges\":{\"data\":[\"ch_1\"]}}",
		"data.object.charges.data[0]"},
		{"p", "{\"object\":\"payment_intent\",\"charges\":{\"data\":[{\"id\":1}]}}",
		"data.object.charges.data[0].id"},
		{"p", "{\"object\":\"payment_intent\",\"last_payment_error\":\"declined\"}",
		"data.object.last_payment_error"},
		{"p", "{\"object\":\"payment_intent\",\"last_payment_error\":{\"message\":1}}",
		"data.object.last_payment_error.message"},
		{"p", "{\"object\":\"payment_intent\",\"last_payment_error\":{\"code\":false}}",
		"data.object.last_payment_error.code"},
		{"h", "{\"object\":\"charge\",\"refunded\":\"true\"}", "data.object.refunded"},
		{"h", "{\"object\":\"charge\",\"refunded\":1}", "data.object.refunded"},
		{"h", "{\"object\":\"charge\",\"refunds\":{\"data\":[1]}}", "data.object.refunds.data[]"},
		{"h", "{\"object\":\"charge\",\"refunds\":{\"data\":[{\"amount\":\"5\"}]}}",
		"data.object.refunds.data[].amount"},
		{"h", "{\"object\":\"charge\",\"refunds\":{\"data\":[],\"has_more\":\"no\"}}",
		"data.object.refunds.has_more"},
		{"r", "{\"object\":\"refund\",\"charge\":{\"id\":null}}", "data.object.charge"},
		{"r", "{\"object\":\"refund\",\"failure_reason\":0}", "data.object.failure_reason"},
		{"s", "{\"object\":\"subscription\",\"cancel_at_period_end\":\"false\"}",
		"data.object.cancel_at_period_end"},
		{"s", "{\"object\":\"subscription\",\"current_period_end\":1.5}",
		"data.object.current_period_end"},
		{"s", "{\"object\":\"subscription\",\"items\":{\"data\":[{\"current_period_start\":\"1\"}]}}",
		"data.object.items.data[0].current_period_start"},
		{"s", "{\"object\":\"subscription\",\"items\":{\"data\":[{\"price\":7}]}}",
		"data.object.items.data[0].price"},
		{"s", "{\"object\":\"subscription\",\"items\":{\"data\":[null]}}",
		"data.object.items.data[0]"},
		{"s", "{\"object\":\"subscription\",\"items\":\"si_1\"}", "data.object.items"},
		{"i", "{\"object\":\"invoice\",\"amount_paid\":-5}", "data.object.amount_paid"},
		{"i", "{\"object\":\"invoice\",\"parent\":[]}", "data.object.parent"},
		{"i", "{\"object\":\"invoice\",\"parent\":{\"subscription_details\":{\"subscription\":1}}}",
		"data.object.parent.subscription_details.subscription"},
		{"i", "{\"object\":\"invoice\",\"subscription_details\":{\"metadata\":{\"order_id\":1}}}",
		"data.object.subscription_details.metadata"},
		{"i", "{\"object\":\"invoice\",\"payments\":{\"data\":[{\"status\":\"paid\",\"payment\":\"x\"}]}}",
		"data.object.payments.data[].payment"},
		{"i", "{\"object\":\"invoice\",\"payments\":{\"data\":[{\"status\":1}]}}",
		"data.object.payments.data[].status"},
		{"i", "{\"object\":\"invoice\",\"lines\":{\"data\":[{\"period\":{\"start\":\"1\"}}]}}",
		"data.object.lines.data[0].period.start"},
		{"i", "{\"object\":\"invoice\",\"period_end\":{}}", "data.object.period_end"},
	};
	size_t		i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SpEventResult r = decode(wrap_version(cases[i].type, "2022-08-01", cases[i].object));

		if (r != SP_EVENT_INVALID_FIELD || strcmp(ev.error_path, cases[i].path) != 0)
		{
			unit_fail(__FILE__, __LINE__, "case %zu %s: %s at \"%s\"", i,
					  cases[i].object, sp_event_result_name(r), ev.error_path);
			return;
		}
		CHECK_STR_EQ(ev.object_type, "");
	}
}

/* A field of another type's section is not read, so not judged either. */
TEST(event_other_sections_not_read)
{
	CHECK_INT_EQ(decode(wrap("x", "{\"object\":\"customer\",\"amount\":\"lots\","
							 "\"items\":7,\"refunds\":\"none\"}")), SP_EVENT_OK);
	CHECK(!ev.has_amount);
}

/* A string of n copies of c, in a static buffer. */
static const char *
repeat(char c, size_t n)
{
	static char buf[4096];

	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	memset(buf, c, n);
	buf[n] = '\0';
	return buf;
}

TEST(event_too_long)
{
	char		json[8192];
	char		obj[6000];

	/* id: 255 bytes fit, 256 do not */
	snprintf(json, sizeof(json), "{\"id\":\"evt_%s\",\"type\":\"t\",\"created\":1,"
			 "\"livemode\":false," OK_DATA "}", repeat('a', 251));
	CHECK_INT_EQ(decode(json), SP_EVENT_OK);
	CHECK_INT_EQ(strlen(ev.id), 255);
	snprintf(json, sizeof(json), "{\"id\":\"evt_%s\",\"type\":\"t\",\"created\":1,"
			 "\"livemode\":false," OK_DATA "}", repeat('a', 252));
	CHECK_INT_EQ(decode(json), SP_EVENT_TOO_LONG);
	CHECK_STR_EQ(ev.error_path, "id");

	snprintf(json, sizeof(json), "{" OK_ID "\"type\":\"%s\"," OK_CREATED OK_LIVE OK_DATA "}",
			 repeat('t', SP_EVENT_TYPE_SIZE));
	CHECK_INT_EQ(decode(json), SP_EVENT_TOO_LONG);
	CHECK_STR_EQ(ev.error_path, "type");

	snprintf(obj, sizeof(obj), "{\"object\":\"%s\"}", repeat('o', SP_EVENT_WORD_SIZE));
	CHECK_INT_EQ(decode(wrap("x", obj)), SP_EVENT_TOO_LONG);
	CHECK_STR_EQ(ev.error_path, "data.object.object");

	snprintf(obj, sizeof(obj), "{\"object\":\"x\",\"id\":\"%s\"}", repeat('i', SP_EVENT_ID_SIZE));
	CHECK_INT_EQ(decode(wrap("x", obj)), SP_EVENT_TOO_LONG);
	CHECK_STR_EQ(ev.error_path, "data.object.id");

	snprintf(obj, sizeof(obj), "{\"object\":\"refund\",\"charge\":{\"id\":\"%s\"}}",
			 repeat('c', SP_EVENT_ID_SIZE));
	CHECK_INT_EQ(decode(wrap("x", obj)), SP_EVENT_TOO_LONG);
	CHECK_STR_EQ(ev.error_path, "data.object.charge");

	snprintf(obj, sizeof(obj), "{\"object\":\"x\",\"currency\":\"%s\"}",
			 repeat('u', SP_EVENT_CURRENCY_SIZE));
	CHECK_INT_EQ(decode(wrap("x", obj)), SP_EVENT_TOO_LONG);

	/* metadata: Stripe's 500 characters of 4-byte UTF-8 fit */
	{
		size_t		n = (size_t) snprintf(obj, sizeof(obj),
										  "{\"object\":\"x\",\"metadata\":{\"order_id\":\"");
		int			k;

		for (k = 0; k < 500; k++)
		{
			memcpy(obj + n, "\xf0\x9f\x98\x80", 4);
			n += 4;
		}
		snprintf(obj + n, sizeof(obj) - n, "\"}}");
		CHECK_INT_EQ(decode(wrap("x", obj)), SP_EVENT_OK);
		CHECK_INT_EQ(strlen(ev.metadata_order_id), 2000);
		/* one byte more does not */
		memmove(obj + n + 1, obj + n, strlen(obj + n) + 1);
		obj[n] = 'x';
		CHECK_INT_EQ(decode(wrap("x", obj)), SP_EVENT_TOO_LONG);
		CHECK_STR_EQ(ev.error_path, "data.object.metadata");
	}
}

/* Human text is cut, at a character boundary, instead of refused. */
TEST(event_message_cut_at_utf8_boundary)
{
	char		obj[4096];
	size_t		n;
	int			k;

	n = (size_t) snprintf(obj, sizeof(obj),
						  "{\"object\":\"payment_intent\",\"last_payment_error\":{\"message\":\"");
	for (k = 0; k < 700; k++)
	{
		memcpy(obj + n, "\xc3\xa9", 2);
		n += 2;
	}
	snprintf(obj + n, sizeof(obj) - n, "\"}}");
	CHECK_INT_EQ(decode(wrap("payment_intent.payment_failed", obj)), SP_EVENT_OK);
	/* 511 whole characters: a 1023rd byte would split the 512th */
	CHECK_INT_EQ(strlen(ev.last_payment_error_message), 2 * 511);
	CHECK_INT_EQ((unsigned char) ev.last_payment_error_message[1021], 0xa9);
}

TEST(event_unicode_kept)
{
	CHECK_INT_EQ(decode(wrap("checkout.session.completed",
							 "{\"object\":\"checkout.session\",\"client_reference_id\":"
							 "\"caf\\u00e9 \\ud83d\\ude00 \xe2\x82\xac\"}")), SP_EVENT_OK);
	CHECK_STR_EQ(ev.client_reference_id, "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac");
}

/* An event with an extra member nested in `arrays` arrays. */
static SpEventResult
decode_nested(size_t arrays)
{
	char	   *json = malloc(2 * arrays + 200);
	size_t		n;
	size_t		i;
	SpEventResult r;

	if (json == NULL)
		return SP_EVENT_NO_MEMORY;
	n = (size_t) sprintf(json, "{" OK_ID OK_TYPE OK_CREATED OK_LIVE OK_DATA ",\"x\":");
	for (i = 0; i < arrays; i++)
		json[n++] = '[';
	for (i = 0; i < arrays; i++)
		json[n++] = ']';
	json[n++] = '}';
	r = decode_len(json, n);
	free(json);
	return r;
}

/* What jsonb cannot store is not JSON to us, in a field we read or not. */
TEST(event_what_jsonb_refuses)
{
	static const char *const objects[] = {
		"{\"object\":\"x\",\"status\":\"a\\u0000b\"}",
		"{\"object\":\"x\",\"note\":\"a\\u0000b\"}",
		"{\"object\":\"x\",\"note\":\"\\ud800\"}",
		"{\"object\":\"x\",\"note\":\"tab\there\"}",
		"{\"object\":\"x\",\"note\":\"\xc0\xaf\"}",
	};
	size_t		i;

	for (i = 0; i < sizeof(objects) / sizeof(objects[0]); i++)
	{
		CHECK_INT_EQ(decode(wrap("x", objects[i])), SP_EVENT_NOT_JSON);
		CHECK_STR_EQ(ev.error_path, "");
	}
}

TEST(event_deep_json)
{
	/* far too deep: refused without recursion trouble */
	CHECK_INT_EQ(decode_nested(100000), SP_EVENT_NOT_JSON);

	/* exactly SP_EVENT_MAX_DEPTH levels (the event object is one) pass */
	CHECK_INT_EQ(decode_nested(SP_EVENT_MAX_DEPTH - 1), SP_EVENT_OK);
	CHECK_INT_EQ(decode_nested(SP_EVENT_MAX_DEPTH), SP_EVENT_NOT_JSON);
}

TEST(event_huge_json)
{
	size_t		items = 400000;
	char	   *json = malloc(items * 12 + 1024);
	size_t		n;
	size_t		i;
	SpEventResult r;

	CHECK(json != NULL);
	n = (size_t) sprintf(json, "{" OK_ID OK_TYPE OK_CREATED OK_LIVE
						 "\"data\":{\"object\":{\"object\":\"charge\",\"amount\":5,"
						 "\"big\":[");
	for (i = 0; i < items; i++)
		n += (size_t) sprintf(json + n, "%s\"%07zu\"", i > 0 ? "," : "", i);
	n += (size_t) sprintf(json + n, "]}}}");
	r = decode_len(json, n);
	free(json);
	CHECK_INT_EQ(r, SP_EVENT_OK);
	CHECK_INT_EQ(ev.amount, 5);
}

static uint32_t
event_rng(uint32_t *state)
{
	uint32_t	x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

/* Byte-level damage to real events: any result, but no crash or leak. */
TEST(event_mutated_fixtures)
{
	static const char *const names[] = {
		"invoice.paid.json", "charge.refunded.2022-08-01.json",
		"customer.subscription.updated.2024-06-20.json",
		"payment_intent.payment_failed.json",
	};
	static const char junk[] = "{}[]\",:0-9.enutl\\ \x00\xff";
	uint32_t	state = 0xC0FFEEu;
	size_t		f;

	for (f = 0; f < sizeof(names) / sizeof(names[0]); f++)
	{
		size_t		len = 0;
		char	   *orig = read_fixture(names[f], &len);
		char	   *buf;
		int			iter;

		CHECK(orig != NULL);
		buf = malloc(len);
		if (buf == NULL)
		{
			free(orig);
			CHECK(buf != NULL);
		}
		for (iter = 0; iter < 400; iter++)
		{
			int			k;
			SpEventResult r;

			memcpy(buf, orig, len);
			for (k = 0; k < 3; k++)
				buf[event_rng(&state) % len] =
					junk[event_rng(&state) % (sizeof(junk) - 1)];
			r = sp_event_decode(buf, event_rng(&state) % 8 == 0 ?
								event_rng(&state) % len : len, &ev);
			if (r < SP_EVENT_OK || r > SP_EVENT_NO_MEMORY)
			{
				free(buf);
				free(orig);
				CHECK(!"result out of range");
			}
		}
		free(buf);
		free(orig);
	}
}

TEST(event_result_names)
{
	int			r;
	int			s;

	CHECK_STR_EQ(sp_event_result_name(SP_EVENT_OK), "ok");
	CHECK_STR_EQ(sp_event_result_name(SP_EVENT_NO_OBJECT), "no_object");
	CHECK_STR_EQ(sp_event_result_name((SpEventResult) 999), "unknown");
	for (r = SP_EVENT_OK; r <= SP_EVENT_NO_MEMORY; r++)
	{
		CHECK(strcmp(sp_event_result_name((SpEventResult) r), "unknown") != 0);
		for (s = SP_EVENT_OK; s < r; s++)
			CHECK(strcmp(sp_event_result_name((SpEventResult) r),
						 sp_event_result_name((SpEventResult) s)) != 0);
	}
}

void
unit_suite_event(void)
{
	RUN(event_checkout_session_completed);
	RUN(event_checkout_session_subscription);
	RUN(event_checkout_session_expired);
	RUN(event_payment_intent_succeeded);
	RUN(event_payment_intent_succeeded_2022);
	RUN(event_payment_intent_failed);
	RUN(event_payment_intent_canceled);
	RUN(event_charge_refunded);
	RUN(event_charge_refunded_2022);
	RUN(event_refund_created);
	RUN(event_refund_failed);
	RUN(event_subscription_updated);
	RUN(event_subscription_updated_2024);
	RUN(event_subscription_deleted);
	RUN(event_invoice_paid);
	RUN(event_invoice_payment_paid);
	RUN(event_subscription_previous_attributes);
	RUN(event_invoice_paid_2024);
	RUN(event_unhandled_type);
	RUN(event_minimal);
	RUN(event_nulls_are_absent);
	RUN(event_subscription_period_by_api_version);
	RUN(event_invoice_newer_payments_and_top_period);
	RUN(event_refunds_truncated);
	RUN(event_not_json);
	RUN(event_not_object);
	RUN(event_envelope_errors);
	RUN(event_invalid_fields);
	RUN(event_other_sections_not_read);
	RUN(event_too_long);
	RUN(event_message_cut_at_utf8_boundary);
	RUN(event_unicode_kept);
	RUN(event_what_jsonb_refuses);
	RUN(event_deep_json);
	RUN(event_huge_json);
	RUN(event_mutated_fixtures);
	RUN(event_result_names);
}
