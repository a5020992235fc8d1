/*-------------------------------------------------------------------------
 *
 * sp_rules.c
 *		The never-regress rule, and the status each payment event brings.
 *
 * One implementation for both the C ingest path and the SQL apply
 * functions (stripepay._advances is this code), so the two can never
 * disagree about which event wins.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_rules.h"

#include <stddef.h>
#include <string.h>

SpStateKind
sp_state_kind(const char *name)
{
	if (name == NULL)
		return SP_KIND_UNKNOWN;
	if (strcmp(name, "payment") == 0)
		return SP_KIND_PAYMENT;
	if (strcmp(name, "refund") == 0)
		return SP_KIND_REFUND;
	if (strcmp(name, "subscription") == 0)
		return SP_KIND_SUBSCRIPTION;
	return SP_KIND_UNKNOWN;
}

static bool
is(const char *status, const char *word)
{
	return strcmp(status, word) == 0;
}

int
sp_state_rank(SpStateKind kind, const char *status)
{
	if (status == NULL)
		return -1;
	switch (kind)
	{
		case SP_KIND_PAYMENT:
			if (is(status, "PENDING"))
				return 0;
			if (is(status, "FAILED"))
				return 1;
			if (is(status, "CANCELED"))
				return 2;
			if (is(status, "SUCCESSFUL"))
				return 3;
			return -1;
		case SP_KIND_REFUND:
			if (is(status, "PENDING"))
				return 0;
			if (is(status, "SUCCEEDED"))
				return 1;
			if (is(status, "CANCELED") || is(status, "FAILED"))
				return 2;
			return -1;
		case SP_KIND_SUBSCRIPTION:
			/* every status Stripe may add later sits with the live ones */
			if (is(status, "INCOMPLETE"))
				return 0;
			if (is(status, "CANCELED") || is(status, "INCOMPLETE_EXPIRED"))
				return 2;
			return 1;
		case SP_KIND_UNKNOWN:
			break;
	}
	return -1;
}

bool
sp_state_terminal(SpStateKind kind, const char *status)
{
	if (status == NULL)
		return false;
	switch (kind)
	{
		case SP_KIND_PAYMENT:
			return is(status, "SUCCESSFUL") || is(status, "CANCELED");
		case SP_KIND_REFUND:
			return is(status, "FAILED") || is(status, "CANCELED");
		case SP_KIND_SUBSCRIPTION:
			return is(status, "CANCELED") || is(status, "INCOMPLETE_EXPIRED");
		case SP_KIND_UNKNOWN:
			break;
	}
	return false;
}

bool
sp_state_advances(SpStateKind kind, const char *cur_status, bool has_cur_at,
				  long long cur_at, const char *new_status, bool has_new_at,
				  long long new_at)
{
	if (new_status == NULL)
		return false;
	if (cur_status == NULL || !has_cur_at)
		return true;
	if (sp_state_terminal(kind, cur_status))
		return sp_state_rank(kind, new_status) > sp_state_rank(kind, cur_status);
	if (sp_state_terminal(kind, new_status))
		return true;
	if (!has_new_at)
		return false;
	if (new_at != cur_at)
		return new_at > cur_at;
	return sp_state_rank(kind, new_status) >= sp_state_rank(kind, cur_status);
}

const char *
sp_payment_target(const char *event_type, const char *payment_status)
{
	static const struct
	{
		const char *type;
		const char *status;
	}			targets[] = {
		{"checkout.session.async_payment_succeeded", "SUCCESSFUL"},
		{"checkout.session.async_payment_failed", "FAILED"},
		{"checkout.session.expired", "CANCELED"},
		{"payment_intent.succeeded", "SUCCESSFUL"},
		{"payment_intent.payment_failed", "FAILED"},
		{"payment_intent.canceled", "CANCELED"},
		{"payment_intent.processing", "PENDING"},
	};
	size_t		i;

	if (event_type == NULL)
		return NULL;
	if (strcmp(event_type, "checkout.session.completed") == 0)
	{
		/* unpaid: an async method (a bank debit) that settles later */
		if (payment_status != NULL &&
			(is(payment_status, "paid") || is(payment_status, "no_payment_required")))
			return "SUCCESSFUL";
		return "PENDING";
	}
	for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
		if (strcmp(event_type, targets[i].type) == 0)
			return targets[i].status;
	return NULL;
}

bool
sp_payment_status_final(const char *status)
{
	return status != NULL &&
		(is(status, "SUCCESSFUL") || is(status, "FAILED") || is(status, "CANCELED"));
}

bool
sp_parse_row_id(const char *value, long long *id)
{
	long long	n = 0;
	int			digits = 0;

	if (value == NULL)
		return false;
	for (; *value; value++)
	{
		if (*value < '0' || *value > '9' || ++digits > 18)
			return false;
		n = n * 10 + (*value - '0');
	}
	if (digits == 0)
		return false;
	*id = n;
	return true;
}

SpEventFamily
sp_event_family(const SpEvent *ev)
{
	if (strcmp(ev->object_type, "checkout.session") == 0)
	{
		if (strcmp(ev->mode, "subscription") == 0)
			return SP_FAMILY_SUBSCRIPTION;
		if (strcmp(ev->mode, "setup") == 0)
			return SP_FAMILY_SETUP;
		return SP_FAMILY_PAYMENT;
	}
	if (strcmp(ev->object_type, "payment_intent") == 0)
		return SP_FAMILY_PAYMENT;
	if (strcmp(ev->object_type, "refund") == 0 || strcmp(ev->type, "charge.refunded") == 0)
		return SP_FAMILY_REFUND;
	if (strcmp(ev->object_type, "subscription") == 0)
		return SP_FAMILY_SUBSCRIPTION;
	if (strcmp(ev->object_type, "invoice") == 0)
		return SP_FAMILY_INVOICE;
	if (strcmp(ev->object_type, "invoice_payment") == 0)
		return SP_FAMILY_INVOICE_PAYMENT;
	return SP_FAMILY_OTHER;
}

bool
sp_event_payment_amount(const SpEvent *ev, long long *amount)
{
	if (ev->has_amount_total)
		*amount = ev->amount_total;
	else if (ev->has_amount)
		*amount = ev->amount;
	else
		return false;
	return true;
}

const char *
sp_payment_failure_code(const SpEvent *ev)
{
	if (ev->last_payment_error_decline_code[0])
		return ev->last_payment_error_decline_code;
	if (ev->last_payment_error_code[0])
		return ev->last_payment_error_code;
	return "payment_failed";
}

bool
sp_currency_code_valid(const char *code)
{
	return code != NULL && strlen(code) == 3 &&
		code[0] >= 'a' && code[0] <= 'z' && code[1] >= 'a' && code[1] <= 'z' &&
		code[2] >= 'a' && code[2] <= 'z';
}

const char *
sp_refund_target(const char *stripe_status)
{
	if (stripe_status == NULL)
		return NULL;
	if (is(stripe_status, "pending") || is(stripe_status, "requires_action"))
		return "PENDING";
	if (is(stripe_status, "succeeded"))
		return "SUCCEEDED";
	if (is(stripe_status, "failed"))
		return "FAILED";
	if (is(stripe_status, "canceled"))
		return "CANCELED";
	return NULL;
}

bool
sp_refund_status_final(const char *status)
{
	return status != NULL &&
		(is(status, "SUCCEEDED") || is(status, "FAILED") || is(status, "CANCELED"));
}

const char *
sp_subscription_status_of(const char *stripe_status)
{
	static const char *const statuses[][2] = {
		{"incomplete", "INCOMPLETE"}, {"incomplete_expired", "INCOMPLETE_EXPIRED"},
		{"trialing", "TRIALING"}, {"active", "ACTIVE"}, {"past_due", "PAST_DUE"},
		{"canceled", "CANCELED"}, {"unpaid", "UNPAID"}, {"paused", "PAUSED"},
	};
	size_t		i;

	if (stripe_status == NULL)
		return NULL;
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (is(stripe_status, statuses[i][0]))
			return statuses[i][1];
	return NULL;				/* a status newer than this version knows */
}

const char *
sp_subscription_target(const SpEvent *ev)
{
	if (strcmp(ev->object_type, "checkout.session") == 0)
		return is(ev->type, "checkout.session.expired") ? "INCOMPLETE_EXPIRED" : NULL;
	return sp_subscription_status_of(ev->status);
}

static bool
same_cancel_at(SpCancelAt a, SpCancelAt b)
{
	return a.scheduled == b.scheduled && (!a.scheduled || a.at == b.at);
}

bool
sp_subscription_change_is_older(const SpSubscriptionState *applied,
								const SpSubscriptionChange *incoming)
{
	const char *from_status;
	bool		from_cape;
	SpCancelAt	from_cancel_at;
	bool		incoming_cape;
	SpCancelAt	incoming_cancel_at;
	const char *previous;

	if (incoming->status == NULL ||
		(applied->changed_from_status == NULL && !applied->has_changed_from_cape &&
		 !applied->has_changed_from_cancel_at))
		return false;

	/* the state the applied change came from */
	from_status = applied->changed_from_status ? applied->changed_from_status : applied->status;
	from_cape = applied->has_changed_from_cape ? applied->changed_from_cape
		: applied->cancel_at_period_end;
	from_cancel_at = applied->has_changed_from_cancel_at ? applied->changed_from_cancel_at
		: applied->cancel_at;
	incoming_cape = incoming->has_cape ? incoming->cape : applied->cancel_at_period_end;
	incoming_cancel_at = incoming->has_cancel_at ? incoming->cancel_at : applied->cancel_at;

	/* the incoming one is in that state, and is not the applied one's */
	if (!is(incoming->status, from_status) || incoming_cape != from_cape ||
		!same_cancel_at(incoming_cancel_at, from_cancel_at))
		return false;
	if (is(incoming->status, applied->status) && incoming_cape == applied->cancel_at_period_end &&
		same_cancel_at(incoming_cancel_at, applied->cancel_at))
		return false;

	/* and did not change from the applied state: then it is its undoing */
	previous = sp_subscription_status_of(incoming->previous_status);
	if (previous != NULL && is(previous, applied->status))
		return false;
	if (incoming->has_previous_cape && incoming->previous_cape == applied->cancel_at_period_end)
		return false;
	if (incoming->has_previous_cancel_at &&
		same_cancel_at(incoming->previous_cancel_at, applied->cancel_at))
		return false;
	return true;
}

bool
sp_invoice_is_renewal(const SpEvent *ev)
{
	return is(ev->type, "invoice.paid") && is(ev->billing_reason, "subscription_cycle") &&
		ev->has_amount_paid && ev->amount_paid > 0;
}

bool
sp_invoice_payment_counts(const SpEvent *ev)
{
	return is(ev->type, "invoice_payment.paid") && ev->invoice[0] != '\0' &&
		(ev->status[0] == '\0' || is(ev->status, "paid"));
}
