/*-------------------------------------------------------------------------
 *
 * sp_engine.c
 *		Recording an event once, and handing it to the rules of its object.
 *
 * An event is recorded in webhook_event keyed by Stripe's event id: a
 * second (or concurrent) delivery waits on the first one's insert and then
 * finds it there, and changes nothing.  An event of a payment the database
 * knows locks that payment first and is recorded with its links in one
 * write; the others are recorded, applied, then linked.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "pure/sp_rules.h"
#include "sp_engine.h"
#include "sp_lock.h"
#include "sp_notify.h"
#include "sp_stmt.h"
#include "stripepay.h"

/* Stripe keeps events for 30 days: nothing waits longer */
#define SP_WAIT_DAYS 30

static SpStmt seen_stmt = {
	.sql = "SELECT 1 FROM stripepay.webhook_event WHERE id = $1",
	.nargs = 1, .argtypes = {TEXTOID}
};
static SpStmt record_stmt = {
	.sql = "INSERT INTO stripepay.webhook_event (id, type, api_version, livemode, created, object_id,"
	"   endpoint, source, payload, order_id, payment_id, refund_id, recurring_payment_id)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::pg_catalog.jsonb, $10, $11, $12, $13)"
	" ON CONFLICT (id) DO NOTHING",
	.nargs = 13, .argtypes = {TEXTOID, TEXTOID, TEXTOID, BOOLOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INT8OID, INT8OID, INT8OID, INT8OID}
};
static SpStmt link_stmt = {
	.sql = "UPDATE stripepay.webhook_event SET"
	"   order_id = coalesce($2, order_id), payment_id = coalesce($3, payment_id),"
	"   refund_id = coalesce($4, refund_id),"
	"   recurring_payment_id = coalesce($5, recurring_payment_id)"
	" WHERE id = $1",
	.nargs = 5, .argtypes = {TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID}
};
static SpStmt other_link_stmt = {
	.sql = "SELECT order_id, id FROM stripepay.payment_record"
	" WHERE payment_intent_id = $1 OR charge_id = $2 OR payment_intent_id = $3 OR charge_id = $3"
	" LIMIT 1",
	.nargs = 3, .argtypes = {TEXTOID, TEXTOID, TEXTOID}
};
static SpStmt expire_waiting_stmt = {
	.sql = "DELETE FROM stripepay.waiting_event"
	" WHERE waiting_since < pg_catalog.now() - interval '" CppAsString2(SP_WAIT_DAYS) " days'"
};
static SpStmt wait_stmt = {
	.sql = "INSERT INTO stripepay.waiting_event (stripe_id, event_id)"
	" SELECT DISTINCT i, $2 FROM pg_catalog.unnest($1::text[]) i"
	" ON CONFLICT DO NOTHING",
	.nargs = 2, .argtypes = {TEXTARRAYOID, TEXTOID}
};
static SpStmt any_waiting_stmt = {
	.sql = "SELECT 1 FROM stripepay.waiting_event WHERE stripe_id = ANY ($1) LIMIT 1",
	.nargs = 1, .argtypes = {TEXTARRAYOID}
};
static SpStmt waiting_stmt = {
	.sql = "SELECT e.id, e.payload::text"
	"  FROM (SELECT DISTINCT event_id FROM stripepay.waiting_event WHERE stripe_id = ANY ($1)) w"
	"  JOIN stripepay.webhook_event e ON e.id = w.event_id"
	" ORDER BY e.created, e.id",
	.nargs = 1, .argtypes = {TEXTARRAYOID}
};
static SpStmt unwait_stmt = {
	.sql = "DELETE FROM stripepay.waiting_event WHERE event_id = $1",
	.nargs = 1, .argtypes = {TEXTOID}
};

TimestampTz
sp_engine_event_time(const SpEvent *ev)
{
	return time_t_to_timestamptz((pg_time_t) ev->created);
}

bool
sp_engine_row_id(const char *value, int64 *id)
{
	long long	v;

	if (!sp_parse_row_id(value, &v))
		return false;
	*id = (int64) v;
	return true;
}

static Datum
id_or_null(int64 id, bool *isnull)
{
	*isnull = id == 0;
	return Int64GetDatum(id);
}

/*
 * Records the event with the links known so far; false when it was there
 * already.  Its triggers run as the run-as role.
 */
static bool
record_event(const SpApply *ap, const SpEvent *ev, const char *payload, size_t len,
			 const SpLinks *links)
{
	Datum		values[13];
	bool		nulls[13];
	char	   *converted;
	text	   *payload_text;
	SpRows		rows;

	/* Stripe sends UTF-8; the payload column is in the database's encoding */
	converted = pg_any_to_server(payload, (int) len, PG_UTF8);
	payload_text = converted == payload ? cstring_to_text_with_len(payload, (int) len)
		: cstring_to_text(converted);

	memset(nulls, false, sizeof(nulls));
	values[0] = CStringGetTextDatum(ev->id);
	values[1] = CStringGetTextDatum(ev->type);
	values[2] = sp_text_or_null(ev->api_version, &nulls[2]);
	values[3] = BoolGetDatum(ev->livemode);
	values[4] = TimestampTzGetDatum(sp_engine_event_time(ev));
	values[5] = sp_text_or_null(ev->object_id, &nulls[5]);
	values[6] = sp_text_or_null(ap->endpoint, &nulls[6]);
	values[7] = CStringGetTextDatum(ap->source);
	values[8] = PointerGetDatum(payload_text);
	values[9] = Int64GetDatum(links->order_id);
	nulls[9] = !links->has_order;
	values[10] = id_or_null(links->payment_id, &nulls[10]);
	values[11] = id_or_null(links->refund_id, &nulls[11]);
	values[12] = id_or_null(links->recurring_payment_id, &nulls[12]);
	sp_stmt_run(&record_stmt, values, nulls, ap->run_as, 0, &rows);
	pfree(payload_text);
	return rows.processed == 1;
}

void
sp_engine_link(const SpApply *ap, const char *event_id, const SpLinks *links)
{
	Datum		values[5];
	bool		nulls[5];

	if (!links->has_order && links->payment_id == 0 && links->refund_id == 0 &&
		links->recurring_payment_id == 0)
		return;
	nulls[0] = false;
	values[0] = CStringGetTextDatum(event_id);
	values[1] = Int64GetDatum(links->order_id);
	nulls[1] = !links->has_order;
	values[2] = id_or_null(links->payment_id, &nulls[2]);
	values[3] = id_or_null(links->refund_id, &nulls[3]);
	values[4] = id_or_null(links->recurring_payment_id, &nulls[4]);
	sp_stmt_run(&link_stmt, values, nulls, ap->run_as, 0, NULL);
}

/*
 * An event stripepay does not act on (charge.failed, a dispute, ...): it is
 * linked to the payment it names by a PaymentIntent or charge, or to the
 * order its metadata names.
 */
static void
link_other(const SpEvent *ev, SpLinks *links)
{
	Datum		values[3];
	bool		nulls[3];
	SpRows		rows;
	int64		order_id;

	values[0] = sp_text_or_null(ev->payment_intent, &nulls[0]);
	values[1] = sp_text_or_null(ev->charge, &nulls[1]);
	values[2] = sp_text_or_null(ev->object_id, &nulls[2]);
	if (!(nulls[0] && nulls[1] && nulls[2]))
	{
		sp_stmt_run(&other_link_stmt, values, nulls, SP_AS_OWNER, 1, &rows);
		if (rows.nrows == 1)
		{
			links->has_order = true;
			links->order_id = sp_rows_int64(&rows, 0, 1, NULL);
			links->payment_id = sp_rows_int64(&rows, 0, 2, NULL);
			return;
		}
	}
	if (sp_engine_row_id(ev->metadata_order_id, &order_id) ||
		sp_engine_row_id(ev->sub_metadata_order_id, &order_id))
	{
		links->has_order = true;
		links->order_id = order_id;
	}
}

/* What one event does to the tables, by its object. */
static void
dispatch(const SpApply *ap, const SpEvent *ev, SpLinks *links)
{
	switch (sp_event_family(ev))
	{
		case SP_FAMILY_PAYMENT:
			{
				SpPaymentRow row;

				sp_engine_apply_payment(ap, ev, sp_engine_find_payment(ev, &row) ? &row : NULL, links);
				break;
			}
		case SP_FAMILY_REFUND:
			sp_engine_apply_refunds(ap, ev, links);
			break;
		case SP_FAMILY_SUBSCRIPTION:
			sp_engine_apply_subscription(ap, ev, links);
			break;
		case SP_FAMILY_INVOICE:
			sp_engine_apply_invoice(ap, ev, links);
			break;
		case SP_FAMILY_INVOICE_PAYMENT:
			sp_engine_apply_invoice_payment(ap, ev, links);
			break;
		case SP_FAMILY_SETUP:
			break;
		case SP_FAMILY_OTHER:
			link_other(ev, links);
			break;
	}
}

bool
sp_engine_ingest(const SpApply *ap, const SpEvent *ev, const char *payload, size_t len)
{
	SpLinks		links;
	SpRows		rows;
	Datum		id;

	/*
	 * A redelivery is answered without converting the payload to jsonb; a
	 * concurrent first delivery is still caught when the event is recorded.
	 */
	id = CStringGetTextDatum(ev->id);
	sp_stmt_run(&seen_stmt, &id, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows > 0)
		return true;

	memset(&links, 0, sizeof(links));
	if (sp_event_family(ev) == SP_FAMILY_PAYMENT)
	{
		SpPaymentRow row;

		/*
		 * The payment's row lock before the event's: a concurrent delivery
		 * of the same event waits here, then finds it recorded.
		 */
		if (sp_engine_find_payment(ev, &row))
		{
			links.has_order = true;
			links.order_id = row.order_id;
			links.payment_id = row.id;
			if (!record_event(ap, ev, payload, len, &links))
				return true;
			sp_engine_apply_payment(ap, ev, &row, &links);
			return false;
		}
	}
	else if (sp_event_family(ev) == SP_FAMILY_OTHER)
	{
		/* nothing to apply: recorded with its links in one write */
		link_other(ev, &links);
		return !record_event(ap, ev, payload, len, &links);
	}

	if (!record_event(ap, ev, payload, len, &links))
		return true;
	dispatch(ap, ev, &links);
	sp_engine_link(ap, ev->id, &links);
	return false;
}

static Datum
text_array(const char *const *ids, int nids)
{
	Datum	   *elems = palloc(sizeof(Datum) * (nids > 0 ? nids : 1));
	int			n = 0;
	int			i;

	for (i = 0; i < nids; i++)
		if (ids[i] != NULL && ids[i][0] != '\0')
			elems[n++] = CStringGetTextDatum(ids[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

void
sp_engine_wait(const SpApply *ap, const SpEvent *ev, const char *const *ids, int nids)
{
	Datum		values[2];

	sp_stmt_run(&expire_waiting_stmt, NULL, NULL, ap->run_as, 0, NULL);
	values[0] = text_array(ids, nids);
	values[1] = CStringGetTextDatum(ev->id);
	sp_stmt_run(&wait_stmt, values, NULL, ap->run_as, 0, NULL);
}

void
sp_engine_apply_waiting(const SpApply *ap, const char *const *ids, int nids, bool learned_now)
{
	Datum		array = text_array(ids, nids);
	SpRows		rows;
	int			i;

	/*
	 * The ids' locks matter only when the payment learns an id now: while
	 * the row already had it, an event that would wait looks the row up
	 * under its lock and so takes turns with us.
	 */
	if (learned_now)
		sp_lock_ids(ids, nids);
	else
	{
		sp_stmt_run(&any_waiting_stmt, &array, NULL, SP_AS_OWNER, 1, &rows);
		if (rows.nrows == 0)
			return;
		sp_lock_ids(ids, nids);
	}

	/* in the order Stripe made them, so that the flows fire in that order */
	sp_stmt_run(&waiting_stmt, &array, NULL, SP_AS_OWNER, INT_MAX, &rows);
	for (i = 0; i < rows.nrows; i++)
	{
		char	   *event_id = sp_rows_text(&rows, i, 1);
		char	   *payload = sp_rows_text(&rows, i, 2);
		Datum		id = CStringGetTextDatum(event_id);
		SpRows		deleted;
		SpEvent    *ev;
		SpEventResult rc;
		SpLinks		links;

		sp_stmt_run(&unwait_stmt, &id, NULL, ap->run_as, 0, &deleted);
		if (deleted.processed == 0)
			continue;			/* applied by a transaction we waited for */
		ev = palloc(sizeof(SpEvent));
		rc = sp_event_decode(payload, strlen(payload), ev);
		if (rc != SP_EVENT_OK)
			elog(ERROR, "stripepay: the waiting event %s cannot be read again: %s",
				 event_id, sp_event_result_name(rc));
		memset(&links, 0, sizeof(links));
		dispatch(ap, ev, &links);
		sp_engine_link(ap, ev->id, &links);
		pfree(ev);
	}
}

void
sp_engine_notify(const SpApply *ap, const char *channel, const char *event_id, const char *status,
				 bool has_order, int64 order_id, const char *id_name, int64 id,
				 const char *id2_name, int64 id2)
{
	StringInfoData buf;

	if (!sp_notify)
		return;					/* not even the text */
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"status\": ");
	escape_json(&buf, status);
	appendStringInfoString(&buf, ", \"event_id\": ");
	escape_json(&buf, event_id);
	if (has_order)
		appendStringInfo(&buf, ", \"order_id\": " INT64_FORMAT, order_id);
	if (id_name != NULL)
		appendStringInfo(&buf, ", \"%s\": " INT64_FORMAT, id_name, id);
	if (id2_name != NULL)
		appendStringInfo(&buf, ", \"%s\": " INT64_FORMAT, id2_name, id2);
	appendStringInfoChar(&buf, '}');
	sp_notify_send(channel, buf.data, ap->run_as);
}
