/*-------------------------------------------------------------------------
 *
 * sp_webhook.c
 *		stripe_ingest_webhook(): a delivery from Stripe, verified, then
 *		handed to the event engine.
 *
 * The entry point believes only Stripe.  Before a byte of the payload is
 * parsed, the signature is checked against the live secrets: a refused
 * body costs the memory it arrived in and a constant, whatever it holds.
 * Every way to fail raises its own SQLSTATE and stores nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "pure/sp_event.h"
#include "pure/sp_formats.h"
#include "pure/sp_signature.h"
#include "sp_call.h"
#include "sp_engine.h"
#include "sp_webhook.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_ingest_webhook_text);
PG_FUNCTION_INFO_V1(stripepay_ingest_webhook_bytea);

static long long
sp_unix_now(void)
{
	return (long long) time(NULL);
}

/* Every way a signature can fail, each with its SQLSTATE. */
static void
sp_raise_signature_error(SpSigResult rc, const SpSigHeader *header, const char *endpoint)
{
	long long	age = sp_unix_now() - header->timestamp;

	switch (rc)
	{
		case SP_SIG_OK:
			return;
		case SP_SIG_NO_HEADER:
			ereport(ERROR,
					(errcode(ERRCODE_SP_NO_SIGNATURE),
					 errmsg("webhook has no Stripe-Signature header"),
					 errhint("Pass the request's Stripe-Signature header, unchanged, as the signature argument.")));
			break;
		case SP_SIG_MALFORMED:
			ereport(ERROR,
					(errcode(ERRCODE_SP_MALFORMED_SIGNATURE),
					 errmsg("malformed Stripe-Signature header"),
					 errdetail("It must look like t=<unix time>,v1=<64 hex digits>[,v1=...].")));
			break;
		case SP_SIG_NO_V1:
			ereport(ERROR,
					(errcode(ERRCODE_SP_NO_V1_SIGNATURE),
					 errmsg("Stripe-Signature header has no v1 signature"),
					 errdetail("Only v1 (HMAC-SHA256) signatures are accepted.")));
			break;
		case SP_SIG_TOO_OLD:
			ereport(ERROR,
					(errcode(ERRCODE_SP_STALE_SIGNATURE),
					 errmsg("webhook signature is too old"),
					 errdetail("It was made %lld seconds ago; stripepay.webhook_tolerance is %d seconds.",
							   age, sp_webhook_tolerance),
					 errhint("A replayed delivery, or a clock that is off: check the server's time.")));
			break;
		case SP_SIG_IN_FUTURE:
			ereport(ERROR,
					(errcode(ERRCODE_SP_FUTURE_SIGNATURE),
					 errmsg("webhook signature is from the future"),
					 errdetail("Its timestamp is %lld seconds ahead; stripepay.webhook_tolerance is %d seconds.",
							   -age, sp_webhook_tolerance),
					 errhint("Check the server's clock.")));
			break;
		case SP_SIG_NO_SECRET:
			if (endpoint)
				ereport(ERROR,
						(errcode(ERRCODE_SP_NO_WEBHOOK_SECRET),
						 errmsg("no live webhook signing secret for endpoint \"%s\"", endpoint),
						 errhint("An admin must run SELECT stripepay.add_webhook_secret('whsec_...', '%s').",
								 endpoint)));
			ereport(ERROR,
					(errcode(ERRCODE_SP_NO_WEBHOOK_SECRET),
					 errmsg("no live webhook signing secret is configured"),
					 errhint("An admin must run SELECT stripepay.add_webhook_secret('whsec_...').")));
			break;
		case SP_SIG_MISMATCH:
			ereport(ERROR,
					(errcode(ERRCODE_SP_BAD_SIGNATURE),
					 errmsg("webhook signature does not match"),
					 errdetail("No v1 signature matches the payload under any live signing secret%s%s%s.",
							   endpoint ? " of endpoint \"" : "", endpoint ? endpoint : "",
							   endpoint ? "\"" : "")));
			break;
		case SP_SIG_INTERNAL_ERROR:
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not compute a webhook signature")));
			break;
	}
}

void
sp_raise_event_error(SpEventResult rc, const SpEvent *ev)
{
	if (rc == SP_EVENT_NOT_JSON)
		ereport(ERROR,
				(errcode(ERRCODE_SP_PAYLOAD_NOT_JSON),
				 errmsg("webhook payload is not valid JSON"),
				 errdetail("It is not one JSON object in UTF-8, or holds what jsonb cannot store.")));
	if (rc == SP_EVENT_NO_MEMORY)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not decode a webhook payload.")));
	ereport(ERROR,
			(errcode(ERRCODE_SP_NOT_AN_EVENT),
			 errmsg("webhook payload is not a Stripe event"),
			 errdetail("%s%s%s.", sp_event_result_name(rc),
					   ev->error_path[0] ? " at " : "", ev->error_path)));
}

void
sp_check_livemode(const SpEvent *ev, const char *key_mode)
{
	if (key_mode != NULL && ev->livemode != (strcmp(key_mode, "live") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_SP_LIVEMODE_MISMATCH),
				 errmsg("webhook event is a %s-mode event, but stripepay is configured with a %s-mode key",
						ev->livemode ? "live" : "test", key_mode),
				 errdetail("Event %s was not stored.", ev->id),
				 errhint("Point each Stripe mode's webhook endpoint at the database that uses that mode's key.")));
}

/* The endpoint argument: NULL, or a name as the relay routes it. */
static char *
sp_endpoint_arg(FunctionCallInfo fcinfo)
{
	text	   *arg;
	char		shown[SP_ENDPOINT_NAME_MAX * 4 + 8];
	char	   *name;

	if (PG_ARGISNULL(2))
		return NULL;
	arg = PG_GETARG_TEXT_PP(2);
	if (sp_endpoint_name_valid(VARDATA_ANY(arg), VARSIZE_ANY_EXHDR(arg)))
		return text_to_cstring(arg);
	name = text_to_cstring(arg);
	sp_one_line(shown, sizeof(shown), name, SP_ENDPOINT_NAME_MAX);
	ereport(ERROR,
			(errcode(ERRCODE_SP_INVALID_ENDPOINT),
			 errmsg("invalid webhook endpoint name \"%s\"", shown),
			 errdetail("An endpoint name has 1 to %d letters, digits, '_', '-' or '.'.",
					   SP_ENDPOINT_NAME_MAX)));
	return NULL;				/* not reached */
}

/*
 * Verifies one delivery, then ingests it.  payload is the request body
 * exactly as Stripe sent it (UTF-8).
 */
static Datum
sp_ingest(FunctionCallInfo fcinfo, const char *payload, size_t len)
{
	char	   *signature = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *endpoint = sp_endpoint_arg(fcinfo);
	SpCall		call;
	SpSecret   *secrets;
	const char **keys;
	int			nsecrets;
	int			i;
	SpSigHeader header;
	SpSigResult sig;
	int			matched;
	SpEvent    *ev;
	SpEventResult decoded;
	SpApply		ap;
	bool		already;
	TupleDesc	tupdesc;
	Datum		result[3];
	bool		result_nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (len > SP_WEBHOOK_MAX_BODY)
		ereport(ERROR,
				(errcode(ERRCODE_SP_PAYLOAD_TOO_LARGE),
				 errmsg("webhook payload is larger than %d MB", SP_WEBHOOK_MAX_BODY / (1024 * 1024)),
				 errdetail("Stripe's events are a few kilobytes.")));

	memset(&header, 0, sizeof(header));
	sig = sp_sig_parse(signature, signature ? strlen(signature) : 0, &header);
	sp_raise_signature_error(sig, &header, endpoint);

	sp_call_begin(&call, fcinfo);
	nsecrets = sp_settings_webhook_secrets(endpoint, &secrets);
	keys = palloc(sizeof(char *) * (nsecrets > 0 ? nsecrets : 1));
	for (i = 0; i < nsecrets; i++)
		keys[i] = secrets[i].secret;
	sig = sp_sig_verify(&header, payload, len, keys, nsecrets, sp_unix_now(), sp_webhook_tolerance,
						&matched);
	sp_raise_signature_error(sig, &header, endpoint);

	/* authentic from here on: only now is the payload read */
	ev = palloc(sizeof(SpEvent));
	decoded = sp_event_decode(payload, len, ev);
	if (decoded != SP_EVENT_OK)
		sp_raise_event_error(decoded, ev);
	sp_check_livemode(ev, sp_key_mode(call.settings.secret_key));

	ap.run_as = call.run_as;
	ap.source = "webhook";
	ap.endpoint = endpoint;
	ap.api_key = call.settings.secret_key;
	ap.key_mode = sp_key_mode(call.settings.secret_key);
	already = sp_engine_ingest(&ap, ev, payload, len);
	sp_call_end(&call);

	result[0] = CStringGetTextDatum(ev->id);
	result[1] = CStringGetTextDatum(ev->type);
	result[2] = BoolGetDatum(already);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), result, result_nulls)));
}

/*
 * stripe_ingest_webhook(payload text, signature text, endpoint text)
 *
 * The text is converted back to UTF-8, the encoding Stripe signed.  In a
 * UTF8 database that is the identity; elsewhere, prefer the bytea variant.
 */
Datum
stripepay_ingest_webhook_text(PG_FUNCTION_ARGS)
{
	text	   *payload;
	char	   *utf8;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_SP_PAYLOAD_NOT_JSON),
				 errmsg("webhook payload must not be null")));
	payload = PG_GETARG_TEXT_PP(0);
	utf8 = pg_server_to_any(VARDATA_ANY(payload), VARSIZE_ANY_EXHDR(payload), PG_UTF8);
	return sp_ingest(fcinfo, utf8, utf8 == VARDATA_ANY(payload)
					 ? VARSIZE_ANY_EXHDR(payload) : strlen(utf8));
}

/* stripe_ingest_webhook(payload bytea, ...): the request body byte for byte */
Datum
stripepay_ingest_webhook_bytea(PG_FUNCTION_ARGS)
{
	bytea	   *payload;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_SP_PAYLOAD_NOT_JSON),
				 errmsg("webhook payload must not be null")));
	payload = PG_GETARG_BYTEA_PP(0);
	return sp_ingest(fcinfo, VARDATA_ANY(payload), VARSIZE_ANY_EXHDR(payload));
}
