/*-------------------------------------------------------------------------
 *
 * sp_stripe.c
 *		Stripe requests on top of the HTTP client, and Stripe's error JSON
 *		turned into ereport(ERROR).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "pure/sp_json.h"
#include "sp_stripe.h"
#include "stripepay.h"

/*
 * The cluster, the database and this installation of the extension: ids
 * of payments and refunds start again after DROP EXTENSION, and a key of
 * the earlier installation would make Stripe replay its answer (an old,
 * paid Checkout Session for another order) for up to 24 hours.
 */
char *
sp_idempotency_key(const char *operation, const char *what)
{
	return psprintf("stripepay-" UINT64_FORMAT "-%u-%u-%s-%s",
					GetSystemIdentifier(), MyDatabaseId,
					get_extension_oid("stripepay", false), operation, what);
}

char *
sp_idempotency_key_for_call(const char *operation, const char *what)
{
	return sp_idempotency_key(operation, psprintf("%s-" INT64_FORMAT, what, (int64) GetCurrentTimestamp()));
}

/* One SQLSTATE per kind of failure, after Stripe's error types. */
static int
sp_error_sqlstate(long status, const SpStripeError *err)
{
	const char *type = err->parsed ? err->type : "";

	if (strcmp(type, "card_error") == 0 || status == 402)
		return ERRCODE_SP_CARD_ERROR;
	if (strcmp(type, "idempotency_error") == 0)
		return ERRCODE_SP_IDEMPOTENCY;
	if (status == 401 || status == 403 || strcmp(type, "authentication_error") == 0)
		return ERRCODE_SP_AUTHENTICATION;
	if (status == 429 || strcmp(type, "rate_limit_error") == 0)
		return ERRCODE_SP_RATE_LIMIT;
	if (status >= 500 || strcmp(type, "api_error") == 0)
		return ERRCODE_SP_API_ERROR;
	return ERRCODE_SP_INVALID_REQUEST;
}

static const char *
sp_error_summary(int sqlstate)
{
	switch (sqlstate)
	{
		case ERRCODE_SP_CARD_ERROR:
			return "card was declined by Stripe";
		case ERRCODE_SP_IDEMPOTENCY:
			return "idempotency key was refused by Stripe";
		case ERRCODE_SP_AUTHENTICATION:
			return "authentication with Stripe failed";
		case ERRCODE_SP_RATE_LIMIT:
			return "too many requests to Stripe";
		case ERRCODE_SP_API_ERROR:
			return "error on Stripe's side";
		default:
			return "request rejected by Stripe";
	}
}

/* "type card_error, code card_declined, decline code insufficient_funds" */
static char *
sp_error_fields(const SpStripeError *err, long status)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "HTTP %ld", status);
	if (err->type[0])
		appendStringInfo(&buf, ", type %s", err->type);
	if (err->code[0])
		appendStringInfo(&buf, ", code %s", err->code);
	if (err->decline_code[0])
		appendStringInfo(&buf, ", decline code %s", err->decline_code);
	if (err->param[0])
		appendStringInfo(&buf, ", param %s", err->param);
	return buf.data;
}

void
sp_stripe_raise_error(const char *method, const char *path, const SpHttpResponse *resp)
{
	SpStripeError err;
	int			sqlstate;
	const char *request_id = resp->request_id[0] ? resp->request_id : "none";

	sp_stripe_error_parse(resp->body, resp->body_len, &err);
	sqlstate = sp_error_sqlstate(resp->status, &err);

	if (!err.parsed)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("%s", sp_error_summary(sqlstate)),
				 errdetail("Stripe answered HTTP %ld without an error object.", resp->status),
				 errcontext("Stripe request %s %s, Request-Id %s", method, path, request_id)));

	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("%s", sp_error_summary(sqlstate)),
			 errdetail_internal("%s (%s)", err.message[0] ? err.message : "Stripe gave no message",
								sp_error_fields(&err, resp->status)),
			 err.doc_url[0] ? errhint("See %s", err.doc_url) : 0,
			 errcontext("Stripe request %s %s, Request-Id %s", method, path, request_id)));
}

bool
sp_stripe_is_idempotency_error(const SpHttpResponse *resp)
{
	SpStripeError err;

	return sp_stripe_error_parse(resp->body, resp->body_len, &err) &&
		strcmp(err.type, "idempotency_error") == 0;
}

char *
sp_stripe_call(const char *method, const char *path, const SpForm *form,
			   const char *api_key, const char *idempotency_key,
			   SpHttpResponse *resp)
{
	if (!sp_stripe_send(method, path, form, api_key, idempotency_key, resp))
		sp_stripe_raise_error(method, path, resp);
	return resp->body;
}

bool
sp_stripe_send(const char *method, const char *path, const SpForm *form,
			   const char *api_key, const char *idempotency_key,
			   SpHttpResponse *resp)
{
	SpHttpRequest req;

	if (form != NULL && form->failed)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not build the request body for Stripe.")));

	memset(&req, 0, sizeof(req));
	req.method = method;
	req.path = path;
	req.form = form ? form->data : NULL;
	req.form_len = form ? form->len : 0;
	req.api_key = api_key;
	req.idempotency_key = idempotency_key;

	memset(resp, 0, sizeof(*resp));
	sp_http_request(&req, resp);
	return resp->status >= 200 && resp->status <= 299;
}

void
sp_stripe_fields(const char *body, size_t len, const char *what,
				 const char *const *paths, int npaths, const char **values)
{
	size_t		arena_size = len * 2 + 128 * (size_t) npaths + 1;
	char	   *arena = palloc(arena_size);
	int			rc = sp_json_extract(body, len, paths, npaths, arena, arena_size, values);

	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The %s Stripe returned is not valid JSON.", what)));
}

void
sp_stripe_list(const char *path, const SpForm *query, const char *api_key,
			   const char *what, SpStripePage *page)
{
	char	   *url = query && query->len > 0 ? psprintf("%s?%s", path, query->data) : pstrdup(path);
	SpHttpResponse resp;
	size_t		arena_size;
	char	   *arena;
	int			n;

	if (query != NULL && query->failed)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not build the query for Stripe.")));
	sp_stripe_call("GET", url, NULL, api_key, NULL, &resp);

	/*
	 * Compact copies of the items and their ids fit in twice the body, but
	 * for bytes json-c escapes that Stripe did not (at most six bytes each).
	 */
	arena_size = resp.body_len * 2 + 64;
	arena = palloc(arena_size);
	n = sp_json_list(resp.body, resp.body_len, page->items, SP_STRIPE_PAGE_MAX, &page->has_more,
					 arena, arena_size);
	if (n == SP_JSON_ARENA_FULL)
	{
		pfree(arena);
		arena_size = resp.body_len * 12 + 64;
		arena = palloc(arena_size);
		n = sp_json_list(resp.body, resp.body_len, page->items, SP_STRIPE_PAGE_MAX,
						 &page->has_more, arena, arena_size);
	}
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The %s Stripe returned is not a list of objects with ids.", what),
				 errcontext("Stripe request GET %s, Request-Id %s", url,
							resp.request_id[0] ? resp.request_id : "none")));
	page->nitems = n;
	pfree(resp.body);
}

SpEvent *
sp_stripe_decode_object(const SpHttpResponse *resp, const char *what, const char *key_mode)
{
	StringInfoData wrapped;
	SpEvent    *ev = palloc(sizeof(SpEvent));
	SpEventResult rc;

	initStringInfo(&wrapped);
	appendStringInfo(&wrapped,
					 "{\"id\":\"evt_object\",\"object\":\"event\",\"type\":\"object\","
					 "\"api_version\":\"%s\",\"created\":0,\"livemode\":%s,\"data\":{\"object\":",
					 sp_api_version,
					 key_mode != NULL && strcmp(key_mode, "live") == 0 ? "true" : "false");
	appendBinaryStringInfo(&wrapped, resp->body, resp->body_len);
	appendStringInfoString(&wrapped, "}}");
	rc = sp_event_decode(wrapped.data, wrapped.len, ev);
	pfree(wrapped.data);
	if (rc != SP_EVENT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("unexpected response from Stripe"),
				 errdetail("The %s Stripe returned cannot be read: %s%s%s.", what,
						   sp_event_result_name(rc), ev->error_path[0] ? " at " : "",
						   ev->error_path),
				 errcontext("Stripe request, Request-Id %s",
							resp->request_id[0] ? resp->request_id : "none")));
	return ev;
}

SpEvent *
sp_stripe_fetch_object(const char *api_key, const char *path, const char *what,
					   const char *key_mode)
{
	SpHttpResponse resp;

	sp_stripe_call("GET", path, NULL, api_key, NULL, &resp);
	return sp_stripe_decode_object(&resp, what, key_mode);
}

char *
sp_stripe_latest_charge(const char *api_key, const char *key_mode, const char *payment_intent)
{
	SpEvent    *pi = sp_stripe_fetch_object(api_key, psprintf("/v1/payment_intents/%s", payment_intent),
											"PaymentIntent", key_mode);

	return pi->charge[0] ? pstrdup(pi->charge) : NULL;
}
