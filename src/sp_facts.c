/*-------------------------------------------------------------------------
 *
 * sp_facts.c
 *		The normalized facts of a Stripe event, as JSON for the SQL side.
 *
 * The decoder (sp_event.c) has already hidden the differences between API
 * versions; this only names its fields once more, in the words the apply
 * functions of the install script use.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_facts.h"
#include "sp_json.h"
#include "sp_jsonc.h"

#include <string.h>

static void
put_text(struct json_object *o, const char *key, const char *value)
{
	if (value[0] != '\0')
		json_object_object_add(o, key, json_object_new_string(value));
}

static void
put_int(struct json_object *o, const char *key, bool has, long long value)
{
	if (has)
		json_object_object_add(o, key, json_object_new_int64(value));
}

int
sp_facts_json(const SpEvent *ev, char *buf, size_t size)
{
	struct json_object *o = json_object_new_object();
	const char *text;
	size_t		len;
	int			i;

	if (o == NULL)
		return -1;

	put_text(o, "id", ev->id);
	put_text(o, "type", ev->type);
	put_int(o, "created", true, ev->created);
	json_object_object_add(o, "livemode", json_object_new_boolean(ev->livemode));
	put_text(o, "api_version", ev->api_version);
	put_text(o, "object_type", ev->object_type);
	put_text(o, "object_id", ev->object_id);
	put_text(o, "status", ev->status);
	put_text(o, "currency", ev->currency);
	put_text(o, "customer", ev->customer);
	put_text(o, "order_id", ev->metadata_order_id);
	put_text(o, "payment_id", ev->metadata_payment_id);
	put_text(o, "refund_id", ev->metadata_refund_id);
	put_text(o, "refund_key", ev->metadata_refund_key);
	put_text(o, "recurring_payment_id", ev->metadata_recurring_payment_id);
	put_text(o, "payment_intent", ev->payment_intent);
	put_text(o, "charge", ev->charge);
	put_text(o, "subscription", ev->subscription);
	put_text(o, "invoice", ev->invoice);
	put_int(o, "amount", ev->has_amount, ev->amount);
	put_int(o, "amount_total", ev->has_amount_total, ev->amount_total);
	put_int(o, "amount_received", ev->has_amount_received, ev->amount_received);
	put_int(o, "amount_refunded", ev->has_amount_refunded, ev->amount_refunded);
	put_int(o, "amount_paid", ev->has_amount_paid, ev->amount_paid);
	put_int(o, "amount_due", ev->has_amount_due, ev->amount_due);
	put_int(o, "period_start", ev->has_period_start, ev->period_start);
	put_int(o, "period_end", ev->has_period_end, ev->period_end);
	put_text(o, "payment_status", ev->payment_status);
	put_text(o, "mode", ev->mode);
	put_text(o, "client_reference_id", ev->client_reference_id);
	put_int(o, "expires_at", ev->has_expires_at, ev->expires_at);
	put_text(o, "failure_code", ev->last_payment_error_code);
	put_text(o, "decline_code", ev->last_payment_error_decline_code);
	put_text(o, "failure_message", ev->last_payment_error_message);
	put_text(o, "cancellation_reason", ev->cancellation_reason);
	if (ev->has_refunded)
		json_object_object_add(o, "refunded", json_object_new_boolean(ev->refunded));
	if (ev->has_refunds)
	{
		struct json_object *list = json_object_new_array();

		for (i = 0; i < ev->nrefunds; i++)
		{
			struct json_object *r = json_object_new_object();

			put_text(r, "id", ev->refunds[i].id);
			put_int(r, "amount", ev->refunds[i].has_amount, ev->refunds[i].amount);
			put_text(r, "status", ev->refunds[i].status);
			json_object_array_add(list, r);
		}
		json_object_object_add(o, "refunds", list);
	}
	put_text(o, "reason", ev->reason);
	put_text(o, "failure_reason", ev->failure_reason);
	if (ev->has_cancel_at_period_end)
		json_object_object_add(o, "cancel_at_period_end",
							   json_object_new_boolean(ev->cancel_at_period_end));
	put_int(o, "canceled_at", ev->has_canceled_at, ev->canceled_at);
	put_text(o, "previous_status", ev->previous_status);
	if (ev->has_previous_cancel_at_period_end)
		json_object_object_add(o, "previous_cancel_at_period_end",
							   json_object_new_boolean(ev->previous_cancel_at_period_end));
	put_text(o, "price_id", ev->price_id);
	put_text(o, "billing_reason", ev->billing_reason);
	put_text(o, "sub_order_id", ev->sub_metadata_order_id);
	put_text(o, "sub_recurring_payment_id", ev->sub_metadata_recurring_payment_id);

	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	len = text ? strlen(text) : 0;
	if (text == NULL || len + 1 > size)
	{
		json_object_put(o);
		return -1;
	}
	memcpy(buf, text, len + 1);
	json_object_put(o);
	return (int) len;
}
