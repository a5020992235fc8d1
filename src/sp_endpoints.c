/*-------------------------------------------------------------------------
 *
 * sp_endpoints.c
 *		setup_webhooks() and remove_webhooks(): the four webhook endpoints
 *		of the actionflows, made in the Stripe account, their signing secrets
 *		stored.
 *
 * Each endpoint carries only the events of its own flow: every event Stripe
 * sends is a request the relay and the database answer.  Events of any other
 * type can still be acted on through triggers on webhook_event, with no
 * extra endpoint.  Stripe returns an endpoint's secret only when it is
 * created, so an endpoint whose secret we lack is made anew.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "sp_api.h"
#include "sp_call.h"
#include "sp_stmt.h"
#include "sp_stripe.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_setup_webhooks);
PG_FUNCTION_INFO_V1(stripepay_remove_webhooks);

/* Stripe allows 16 endpoints per account; stripepay needs 4 of them. */
#define SP_STRIPE_MAX_ENDPOINTS 16
#define SP_MAX_FOREIGN_ENDPOINTS (SP_STRIPE_MAX_ENDPOINTS - 4)
#define SP_LIST_MAX 512

typedef struct SpEndpointSpec
{
	const char *name;
	const char *const *events;
} SpEndpointSpec;

static const char *const payment_events[] = {
	"checkout.session.completed", "checkout.session.async_payment_succeeded",
	"checkout.session.async_payment_failed", "checkout.session.expired",
	"payment_intent.succeeded", "payment_intent.payment_failed",
	"payment_intent.canceled", "payment_intent.processing", NULL
};
static const char *const refund_events[] = {
	"refund.created", "refund.updated", "refund.failed", "charge.refunded", NULL
};
static const char *const subscription_events[] = {
	"customer.subscription.created", "customer.subscription.updated",
	"customer.subscription.deleted", "customer.subscription.paused",
	"customer.subscription.resumed", NULL
};
static const char *const deduction_events[] = {
	"invoice.paid", "invoice.payment_failed", "invoice_payment.paid", NULL
};

static const SpEndpointSpec sp_endpoints[] = {
	{"payment", payment_events},
	{"refund", refund_events},
	{"subscription", subscription_events},
	{"deduction", deduction_events},
};

static SpStmt have_secret_stmt = {
	.sql = "SELECT 1 FROM stripepay.webhook_secret WHERE endpoint = $1"
	" AND (expires_at IS NULL OR expires_at > pg_catalog.now())",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt store_secret_stmt = {
	.sql = "INSERT INTO stripepay.webhook_secret (id, secret, endpoint) VALUES ($1, $2, $3)"
	" ON CONFLICT (endpoint, secret) DO UPDATE SET expires_at = NULL",
	.nargs = 3, .argtypes = {INT8OID, TEXTOID, TEXTOID}
};
static SpStmt store_endpoint_stmt = {
	.sql = "INSERT INTO stripepay.webhook_endpoint (name, stripe_id, url, enabled_events, api_version)"
	" VALUES ($1, $2, $3, $4::pg_catalog.text[], $5)"
	" ON CONFLICT (name) DO UPDATE SET stripe_id = EXCLUDED.stripe_id, url = EXCLUDED.url,"
	"   enabled_events = EXCLUDED.enabled_events, api_version = EXCLUDED.api_version",
	.nargs = 5, .argtypes = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
};
static SpStmt expire_secrets_stmt = {
	.sql = "UPDATE stripepay.webhook_secret SET expires_at = pg_catalog.now() + interval '1 hour'"
	" WHERE endpoint IN (SELECT name FROM stripepay.webhook_endpoint)"
	"   AND (expires_at IS NULL OR expires_at > pg_catalog.now() + interval '1 hour')"
};
static SpStmt forget_endpoints_stmt = {
	.sql = "DELETE FROM stripepay.webhook_endpoint"
};

/* One of the account's endpoints, as listed. */
typedef struct SpListedEndpoint
{
	char	   *id;
	char	   *url;
	char	   *ours;			/* metadata.stripepay_endpoint, or NULL */
} SpListedEndpoint;

/* Lists every endpoint of the account, page by page. */
static int
sp_list_endpoints(const char *api_key, SpListedEndpoint *out)
{
	int			n = 0;
	char	   *after = NULL;
	SpStripePage *page = palloc(sizeof(SpStripePage));

	do
	{
		SpForm	   *query = sp_form_create();
		int			i;

		sp_form_add_int(query, "limit", SP_STRIPE_PAGE_MAX);
		if (after)
			sp_form_add(query, "starting_after", after);
		sp_stripe_list("/v1/webhook_endpoints", query, api_key, "endpoint list", page);
		for (i = 0; i < page->nitems; i++)
		{
			static const char *const paths[] = {"url", "metadata.stripepay_endpoint"};
			const char *v[2];

			if (n >= SP_LIST_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_SP_TOO_MANY_ENDPOINTS),
						 errmsg("the Stripe account lists more than %d webhook endpoints", SP_LIST_MAX)));
			sp_stripe_fields(page->items[i].json, page->items[i].json_len, "endpoint", paths, 2, v);
			out[n].id = pstrdup(page->items[i].id);
			out[n].url = v[0] ? pstrdup(v[0]) : NULL;
			out[n].ours = v[1] ? pstrdup(v[1]) : NULL;
			after = out[n].id;
			n++;
		}
	} while (page->has_more && page->nitems > 0);
	return n;
}

static bool
sp_have_secret(const char *name)
{
	Datum		value = CStringGetTextDatum(name);
	SpRows		rows;

	sp_stmt_run(&have_secret_stmt, &value, NULL, SP_AS_OWNER, 1, &rows);
	return rows.nrows > 0;
}

static void
sp_delete_endpoint(const char *api_key, const char *id)
{
	char	   *path = psprintf("/v1/webhook_endpoints/%s", id);
	SpHttpResponse resp;

	/* gone already is as good as deleted */
	if (!sp_stripe_send("DELETE", path, NULL, api_key, NULL, &resp) && resp.status != 404)
		sp_stripe_raise_error("DELETE", path, &resp);
}

/*
 * setup_webhooks(base_url text) → (endpoint, stripe_id, url, created)
 *
 * Idempotent: endpoints already there, at the same URL and with their
 * secret stored, are kept; a second run creates nothing.
 */
Datum
stripepay_setup_webhooks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *base_url;
	SpCall		call;
	SpListedEndpoint *listed;
	int			nlisted;
	int			foreign = 0;
	int			i,
				e;

	sp_require_arg(fcinfo, 0, "base_url");
	base_url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	sp_check_url("base_url", base_url);
	if (base_url[strlen(base_url) - 1] == '/')
		base_url[strlen(base_url) - 1] = '\0';

	InitMaterializedSRF(fcinfo, 0);

	sp_call_begin(&call, fcinfo);
	sp_settings_require_key(&call.settings);
	listed = palloc(sizeof(SpListedEndpoint) * SP_LIST_MAX);
	nlisted = sp_list_endpoints(call.settings.secret_key, listed);
	for (i = 0; i < nlisted; i++)
		if (listed[i].ours == NULL)
			foreign++;
	if (foreign > SP_MAX_FOREIGN_ENDPOINTS)
		ereport(ERROR,
				(errcode(ERRCODE_SP_TOO_MANY_ENDPOINTS),
				 errmsg("the Stripe account already has %d webhook endpoints", foreign),
				 errdetail("Stripe allows %d per account and stripepay needs 4; at most %d may be others'.",
						   SP_STRIPE_MAX_ENDPOINTS, SP_MAX_FOREIGN_ENDPOINTS),
				 errhint("Delete unused endpoints in the Stripe dashboard, then run setup_webhooks again.")));

	for (e = 0; e < (int) lengthof(sp_endpoints); e++)
	{
		const SpEndpointSpec *spec = &sp_endpoints[e];
		char	   *url = psprintf("%s/stripe/%s", base_url, spec->name);
		char	   *stripe_id = NULL;
		bool		created = false;
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		/* keep ours at the right URL when we can still verify it; drop the rest */
		for (i = 0; i < nlisted; i++)
		{
			if (listed[i].ours == NULL || strcmp(listed[i].ours, spec->name) != 0)
				continue;
			if (stripe_id == NULL && listed[i].url && strcmp(listed[i].url, url) == 0 &&
				sp_have_secret(spec->name))
				stripe_id = listed[i].id;
			else
				sp_delete_endpoint(call.settings.secret_key, listed[i].id);
		}

		if (stripe_id == NULL)
		{
			SpForm	   *form = sp_form_create();
			SpHttpResponse resp;
			static const char *const paths[] = {"id", "secret", "livemode"};
			const char *v[3];
			const char *const *ev;
			Datum		args[3];

			sp_form_add(form, "url", url);
			for (ev = spec->events; *ev; ev++)
				sp_form_add(form, "enabled_events[]", *ev);
			sp_form_add(form, "api_version", sp_api_version);
			sp_form_add(form, "description", psprintf("stripepay %s flow", spec->name));
			sp_form_add(form, "metadata[stripepay_endpoint]", spec->name);
			sp_stripe_call("POST", "/v1/webhook_endpoints", form, call.settings.secret_key,
						   sp_idempotency_key("webhook-endpoint", psprintf("%s-%s", spec->name, url)),
						   &resp);
			sp_stripe_fields(resp.body, resp.body_len, "WebhookEndpoint", paths, 3, v);
			if (v[0] == NULL || v[1] == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_SP_API_ERROR),
						 errmsg("unexpected response from Stripe"),
						 errdetail("The new webhook endpoint has no %s.", v[0] ? "secret" : "id")));
			stripe_id = pstrdup(v[0]);
			created = true;

			args[0] = Int64GetDatum(sp_next_id("webhook_secret_id_seq"));
			args[1] = CStringGetTextDatum(v[1]);
			args[2] = CStringGetTextDatum(spec->name);
			sp_stmt_run(&store_secret_stmt, args, NULL, call.run_as, 0, NULL);
		}

		{
			Datum		args[5];
			StringInfoData events;
			const char *const *ev;

			initStringInfo(&events);
			appendStringInfoChar(&events, '{');
			for (ev = spec->events; *ev; ev++)
				appendStringInfo(&events, "%s%s", ev == spec->events ? "" : ",", *ev);
			appendStringInfoChar(&events, '}');
			args[0] = CStringGetTextDatum(spec->name);
			args[1] = CStringGetTextDatum(stripe_id);
			args[2] = CStringGetTextDatum(url);
			args[3] = CStringGetTextDatum(events.data);
			args[4] = CStringGetTextDatum(sp_api_version);
			sp_stmt_run(&store_endpoint_stmt, args, NULL, call.run_as, 0, NULL);
		}

		values[0] = CStringGetTextDatum(spec->name);
		values[1] = CStringGetTextDatum(stripe_id);
		values[2] = CStringGetTextDatum(url);
		values[3] = BoolGetDatum(created);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	sp_call_end(&call);
	return (Datum) 0;
}

/*
 * remove_webhooks() → number of endpoints deleted
 *
 * Deletes stripepay's endpoints from the account.  Their secrets stay live
 * for an hour, for deliveries already on their way.
 */
Datum
stripepay_remove_webhooks(PG_FUNCTION_ARGS)
{
	SpCall		call;
	SpListedEndpoint *listed;
	int			nlisted;
	int			removed = 0;
	int			i;

	sp_call_begin(&call, fcinfo);
	sp_settings_require_key(&call.settings);
	listed = palloc(sizeof(SpListedEndpoint) * SP_LIST_MAX);
	nlisted = sp_list_endpoints(call.settings.secret_key, listed);
	for (i = 0; i < nlisted; i++)
	{
		if (listed[i].ours == NULL)
			continue;
		sp_delete_endpoint(call.settings.secret_key, listed[i].id);
		removed++;
	}
	sp_stmt_run(&expire_secrets_stmt, NULL, NULL, call.run_as, 0, NULL);
	sp_stmt_run(&forget_endpoints_stmt, NULL, NULL, call.run_as, 0, NULL);
	sp_call_end(&call);
	PG_RETURN_INT32(removed);
}
