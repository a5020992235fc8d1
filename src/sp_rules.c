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
