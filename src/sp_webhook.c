/*-------------------------------------------------------------------------
 *
 * sp_webhook.c
 *		stripe_ingest_webhook() and add_webhook_secret().
 *
 * The entry point believes only Stripe: the signature is checked against
 * the live secrets before a single byte of the payload is trusted, and
 * every way to fail raises its own SQLSTATE before anything is stored.  The
 * payload is then decoded (sp_event.c) into facts named alike for every API
 * version, which stripepay._ingest() records once and applies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "sp_apply.h"
#include "sp_event.h"
#include "sp_facts.h"
#include "sp_signature.h"
#include "sp_store.h"
#include "sp_webhook.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_ingest_webhook_text);
PG_FUNCTION_INFO_V1(stripepay_ingest_webhook_bytea);
PG_FUNCTION_INFO_V1(stripepay_add_webhook_secret);

/* facts hold a few metadata values of up to 2 kB each, and a refund list */
#define SP_FACTS_BUFSIZE (64 * 1024)

static SPIPlanPtr secrets_plan = NULL;
static SPIPlanPtr ingest_plan = NULL;
static SPIPlanPtr seen_plan = NULL;

/*
 * The live secrets of one endpoint (or of all, for a NULL endpoint), the
 * mode of the configured API key ("live", "test" or NULL), and whether
 * event_id (if not NULL) is recorded already: one look-up for all three.
 */
static int
sp_load_secrets(const char *endpoint, const char *event_id, char ***secrets, char **key_mode,
				bool *seen)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[3] = {' ', ' ', '\0'};
	bool		isnull;
	Datum		arr;
	Datum	   *elems;
	int			nelems = 0;
	int			i;

	sp_keep_plan(&secrets_plan,
				 "SELECT (SELECT array_agg(secret ORDER BY id DESC) FROM stripepay.webhook_secret"
				 "         WHERE ($1 IS NULL OR endpoint = $1)"
				 "           AND (expires_at IS NULL OR expires_at > now())),"
				 "       (SELECT CASE WHEN secret_key LIKE '%\\_live\\_%' THEN 'live'"
				 "                    WHEN secret_key IS NOT NULL THEN 'test' END"
				 "          FROM stripepay.settings),"
				 "       EXISTS (SELECT FROM stripepay.webhook_event WHERE id = $2)",
				 2, argtypes);
	values[0] = endpoint ? CStringGetTextDatum(endpoint) : (Datum) 0;
	nulls[0] = endpoint ? ' ' : 'n';
	values[1] = event_id ? CStringGetTextDatum(event_id) : (Datum) 0;
	nulls[1] = event_id ? ' ' : 'n';
	if (SPI_execute_plan(secrets_plan, values, nulls, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "stripepay: could not read the webhook secrets");

	*key_mode = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	*seen = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	arr = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*secrets = NULL;
	if (isnull)
		return 0;
	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, NULL, &nelems);
	*secrets = palloc(sizeof(char *) * nelems);
	for (i = 0; i < nelems; i++)
		(*secrets)[i] = TextDatumGetCString(elems[i]);
	return nelems;
}

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

static void
sp_raise_event_error(SpEventResult rc, const SpEvent *ev)
{
	if (rc == SP_EVENT_NOT_JSON)
		ereport(ERROR,
				(errcode(ERRCODE_SP_PAYLOAD_NOT_JSON),
				 errmsg("webhook payload is not valid JSON")));
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

static bool sp_record_and_apply(const SpEvent *ev, const char *payload, size_t len,
								const char *endpoint, const char *source);

/* An event of the other mode than the configured key's is refused. */
static void
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

/*
 * Decodes, records and applies one authentic event, once.  The caller is
 * connected to SPI and has established that the payload comes from Stripe
 * (a verified signature, or Stripe's API); key_mode ("live", "test" or NULL
 * for no check) is the mode of the configured key.
 */
bool
sp_ingest_event(const char *payload, size_t len, const char *endpoint, const char *source,
				const char *key_mode, SpEvent **ev_out)
{
	SpEvent    *ev;
	SpEventResult decoded;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	ev = palloc(sizeof(SpEvent));
	*ev_out = ev;
	decoded = sp_event_decode(payload, len, ev);
	if (decoded != SP_EVENT_OK)
		sp_raise_event_error(decoded, ev);
	sp_check_livemode(ev, key_mode);

	/*
	 * A redelivery is answered without building facts or parsing the payload
	 * again; a concurrent first delivery is still caught when the event is
	 * recorded.
	 */
	sp_keep_plan(&seen_plan, "SELECT 1 FROM stripepay.webhook_event WHERE id = $1", 1, argtypes);
	values[0] = CStringGetTextDatum(ev->id);
	if (SPI_execute_plan(seen_plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "stripepay: could not look up webhook event %s", ev->id);
	if (SPI_processed > 0)
		return true;
	return sp_record_and_apply(ev, payload, len, endpoint, source);
}

/*
 * Records and applies a decoded event that was not recorded when looked
 * up; true when a concurrent delivery recorded it first.
 */
static bool
sp_record_and_apply(const SpEvent *ev, const char *payload, size_t len, const char *endpoint,
					const char *source)
{
	char	   *facts;
	char	   *payload_text;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[5] = {' ', ' ', ' ', ' ', '\0'};
	bool		isnull;
	Datum		already;

	/* Stripe sends UTF-8; the payload column is in the database's encoding */
	payload_text = pg_any_to_server(payload, (int) len, PG_UTF8);
	if (payload_text == payload)
		payload_text = pnstrdup(payload, len);	/* unconverted bytes lack a NUL */

	if (sp_apply_is_payment_event(ev))
	{
		SpApplyResult applied = sp_apply_payment_event(ev, payload_text, endpoint, source);

		if (applied != SP_APPLY_NOT_HANDLED)
			return applied == SP_APPLY_ALREADY_PROCESSED;
	}

	facts = palloc(SP_FACTS_BUFSIZE);
	if (sp_facts_json(ev, facts, SP_FACTS_BUFSIZE) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("webhook event %s is too large to apply", ev->id)));

	sp_keep_plan(&ingest_plan, "SELECT stripepay._ingest($1::jsonb, $2, $3, $4)", 4, argtypes);
	values[0] = CStringGetTextDatum(facts);
	values[1] = CStringGetTextDatum(payload_text);
	values[2] = endpoint ? CStringGetTextDatum(endpoint) : (Datum) 0;
	nulls[2] = endpoint ? ' ' : 'n';
	values[3] = CStringGetTextDatum(source);
	if (SPI_execute_plan(ingest_plan, values, nulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "stripepay: could not record webhook event %s", ev->id);

	already = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return DatumGetBool(already);
}

/*
 * Verifies one delivery, then ingests it.  payload is the request body
 * exactly as Stripe sent it (UTF-8).
 */
static Datum
sp_ingest(FunctionCallInfo fcinfo, const char *payload, size_t len)
{
	char	   *signature = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *endpoint = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	  **secrets;
	int			nsecrets;
	char	   *key_mode;
	SpSigHeader header;
	SpSigResult sig;
	int			matched;
	SpEvent    *ev;
	SpEventResult decoded;
	bool		seen;
	bool		already;
	TupleDesc	tupdesc;
	Datum		result[3];
	bool		result_nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	memset(&header, 0, sizeof(header));
	sig = sp_sig_parse(signature, signature ? strlen(signature) : 0, &header);
	sp_raise_signature_error(sig, &header, endpoint);

	/*
	 * Decoded before it is verified, so that the secrets and whether the
	 * event is known take one look-up; nothing is believed, and no decoding
	 * error is raised, before the signature has matched.
	 */
	ev = palloc(sizeof(SpEvent));
	decoded = sp_event_decode(payload, len, ev);

	SPI_connect();
	nsecrets = sp_load_secrets(endpoint, decoded == SP_EVENT_OK ? ev->id : NULL,
							   &secrets, &key_mode, &seen);
	sig = sp_sig_verify(&header, payload, len, (const char *const *) secrets, nsecrets,
						sp_unix_now(), sp_webhook_tolerance, &matched);
	sp_raise_signature_error(sig, &header, endpoint);

	/* authentic from here on */
	if (decoded != SP_EVENT_OK)
		sp_raise_event_error(decoded, ev);
	sp_check_livemode(ev, key_mode);
	already = seen || sp_record_and_apply(ev, payload, len, endpoint, "webhook");
	SPI_finish();

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

/*
 * add_webhook_secret(secret, endpoint, expires_at)
 *
 * Adds a signing secret, or sets the expiry of one already known: rotate by
 * adding the new secret, then giving the old one an expiry.  Errors hide the
 * statement from the log, since it holds the secret.
 */
Datum
stripepay_add_webhook_secret(PG_FUNCTION_ARGS)
{
	char	   *secret;
	char	   *endpoint;
	const char *p;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3];
	char		nulls[4] = {' ', ' ', ' ', '\0'};
	Datum		result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("secret must not be null")));
	secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	endpoint = PG_ARGISNULL(1) ? "default" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (strncmp(secret, "whsec_", 6) != 0 || strlen(secret) < 6 + 16 || strlen(secret) > 255 ||
		strspn(secret + 6, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")
		!= strlen(secret + 6))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid webhook signing secret"),
				 errdetail("A signing secret starts with whsec_, as the Stripe dashboard shows it."),
				 errhidestmt(true)));
	for (p = endpoint; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			  *p == '_' || *p == '-' || *p == '.'))
			break;
	if (*p != '\0' || p == endpoint || p - endpoint > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid endpoint name \"%.64s\"", endpoint),
				 errdetail("An endpoint name has 1 to 64 letters, digits, '_', '-' or '.'."),
				 errhidestmt(true)));

	values[0] = CStringGetTextDatum(secret);
	values[1] = CStringGetTextDatum(endpoint);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';

	SPI_connect();
	sp_exec("INSERT INTO stripepay.webhook_secret (secret, endpoint, expires_at)"
			" VALUES ($1, $2, $3)"
			" ON CONFLICT (endpoint, secret) DO UPDATE SET expires_at = EXCLUDED.expires_at"
			" RETURNING id",
			3, argtypes, values, nulls, SPI_OK_INSERT_RETURNING);
	values[0] = DirectFunctionCall1(int8in, CStringGetDatum(sp_result_text(0, 1)));
	argtypes[0] = INT8OID;
	sp_exec("SELECT * FROM stripepay.webhook_secrets WHERE id = $1",
			1, argtypes, values, NULL, SPI_OK_SELECT);
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	PG_RETURN_DATUM(result);
}
