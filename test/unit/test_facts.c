/*-------------------------------------------------------------------------
 *
 * test_facts.c
 *		Unit tests of the facts JSON handed to the SQL side (sp_facts.c)
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "sp_event.h"
#include "sp_facts.h"
#include "sp_json.h"
#include "unit.h"

static const char invoice_event[] =
"{\"id\": \"evt_1\", \"object\": \"event\", \"type\": \"invoice.paid\", \"created\": 1795878460,"
" \"livemode\": false, \"api_version\": \"2026-10-28.endive\","
" \"data\": {\"object\": {\"id\": \"in_1\", \"object\": \"invoice\", \"status\": \"paid\","
"  \"currency\": \"usd\", \"customer\": \"cus_1\", \"billing_reason\": \"subscription_cycle\","
"  \"amount_paid\": 2000, \"amount_due\": 2000, \"metadata\": {},"
"  \"parent\": {\"type\": \"subscription_details\", \"subscription_details\":"
"   {\"subscription\": \"sub_1\", \"metadata\": {\"order_id\": \"43\", \"stripepay_recurring_payment_id\": \"3\"}}},"
"  \"lines\": {\"object\": \"list\", \"data\": [{\"period\": {\"start\": 1795878400, \"end\": 1798470400}}]}}}}";

static const char refunded_charge[] =
"{\"id\": \"evt_2\", \"type\": \"charge.refunded\", \"created\": 1, \"livemode\": true, \"api_version\": null,"
" \"data\": {\"object\": {\"id\": \"ch_1\", \"object\": \"charge\", \"payment_intent\": \"pi_1\","
"  \"amount\": 1000, \"amount_refunded\": 300, \"refunded\": false, \"currency\": \"eur\","
"  \"metadata\": {\"order_id\": \"Tom \\\"&\\\" Jerry\\n\"},"
"  \"refunds\": {\"object\": \"list\", \"has_more\": false, \"data\": ["
"   {\"id\": \"re_1\", \"object\": \"refund\", \"amount\": 300, \"status\": \"succeeded\"}]}}}}";

static bool
facts_of(const char *json, char *buf, size_t size)
{
	SpEvent    *ev = malloc(sizeof(SpEvent));
	bool		ok;

	ok = ev != NULL && sp_event_decode(json, strlen(json), ev) == SP_EVENT_OK &&
		sp_facts_json(ev, buf, size) > 0;
	free(ev);
	return ok;
}

TEST(facts_name_the_invoice_fields_alike_for_every_version)
{
	static const char *const paths[] = {
		"id", "type", "created", "livemode", "object_type", "object_id", "subscription",
		"sub_order_id", "sub_recurring_payment_id", "billing_reason", "amount_paid",
		"period_start", "payment_intent", "order_id"
	};
	const char *v[14];
	char		facts[8192];
	char		arena[8192];

	CHECK(facts_of(invoice_event, facts, sizeof(facts)));
	CHECK_INT_EQ(sp_json_extract(facts, strlen(facts), paths, 14, arena, sizeof(arena), v), SP_JSON_OK);
	CHECK_STR_EQ(v[0], "evt_1");
	CHECK_STR_EQ(v[1], "invoice.paid");
	CHECK_STR_EQ(v[2], "1795878460");
	CHECK_STR_EQ(v[3], "false");
	CHECK_STR_EQ(v[4], "invoice");
	CHECK_STR_EQ(v[5], "in_1");
	CHECK_STR_EQ(v[6], "sub_1");
	CHECK_STR_EQ(v[7], "43");
	CHECK_STR_EQ(v[8], "3");
	CHECK_STR_EQ(v[9], "subscription_cycle");
	CHECK_STR_EQ(v[10], "2000");
	CHECK_STR_EQ(v[11], "1795878400");
	CHECK(v[12] == NULL);		/* absent facts are left out, not "" */
	CHECK(v[13] == NULL);
}

TEST(facts_carry_embedded_refunds_and_escape_text)
{
	static const char *const paths[] = {
		"refunds.0.id", "refunds.0.amount", "refunds.0.status", "order_id", "livemode",
		"amount_refunded", "refunded", "api_version"
	};
	const char *v[8];
	char		facts[8192];
	char		arena[8192];

	CHECK(facts_of(refunded_charge, facts, sizeof(facts)));
	CHECK_INT_EQ(sp_json_extract(facts, strlen(facts), paths, 8, arena, sizeof(arena), v), SP_JSON_OK);
	CHECK_STR_EQ(v[0], "re_1");
	CHECK_STR_EQ(v[1], "300");
	CHECK_STR_EQ(v[2], "succeeded");
	CHECK_STR_EQ(v[3], "Tom \"&\" Jerry\n");
	CHECK_STR_EQ(v[4], "true");
	CHECK_STR_EQ(v[5], "300");
	CHECK_STR_EQ(v[6], "false");
	CHECK(v[7] == NULL);
}

TEST(facts_refuse_a_buffer_too_small)
{
	SpEvent    *ev = malloc(sizeof(SpEvent));
	char		small[16];

	CHECK(ev != NULL);
	if (sp_event_decode(invoice_event, strlen(invoice_event), ev) != SP_EVENT_OK)
	{
		free(ev);
		CHECK(false);
	}
	CHECK_INT_EQ(sp_facts_json(ev, small, sizeof(small)), -1);
	free(ev);
}

void
unit_suite_facts(void)
{
	RUN(facts_name_the_invoice_fields_alike_for_every_version);
	RUN(facts_carry_embedded_refunds_and_escape_text);
	RUN(facts_refuse_a_buffer_too_small);
}
