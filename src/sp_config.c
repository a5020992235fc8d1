/*-------------------------------------------------------------------------
 *
 * sp_config.c
 *		configure(), the config view, add_webhook_secret(), mask_key(), and
 *		what the install script needs done in C.
 *
 * configure() and add_webhook_secret() take secrets as arguments, so the
 * text of their statement holds one.  From the moment they are called, no
 * message of this statement shows that text: not an ERROR of theirs or of
 * anything they call (a lock timeout, a cancel), not the FATAL of a backend
 * terminated while they wait, not a lock wait that log_lock_waits reports,
 * and pg_stat_activity shows a placeholder.  What Postgres logs before the
 * function runs (log_statement) or after it (log_min_duration_statement)
 * is Postgres's: the README says so, and offers the key files instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pure/sp_formats.h"
#include "pure/sp_rules.h"
#include "sp_api.h"
#include "sp_call.h"
#include "sp_prune.h"
#include "sp_stmt.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_configure);
PG_FUNCTION_INFO_V1(stripepay_config);
PG_FUNCTION_INFO_V1(stripepay_add_webhook_secret);
PG_FUNCTION_INFO_V1(stripepay_mask_key);
PG_FUNCTION_INFO_V1(stripepay_install);
PG_FUNCTION_INFO_V1(stripepay_advances);

enum
{
	ARG_SECRET_KEY,
	ARG_PUBLISHABLE_KEY,
	ARG_BRAND_NAME,
	ARG_BRAND_LOGO,
	ARG_BRAND_SLOGAN,
	ARG_SUCCESS_URL,
	ARG_CANCEL_URL,
	ARG_PAYMENT_FLOW,
	ARG_FLOW_ROLE,
	ARG_EVENT_RETENTION,
	NARGS
};

static SpStmt ensure_row = {
	.sql = "INSERT INTO stripepay.settings (singleton) VALUES (true) ON CONFLICT DO NOTHING"
};

/* one (passed?, value) pair a column: only what was passed changes */
static SpStmt update_settings = {
	.sql = "UPDATE stripepay.settings SET"
	"   secret_key = CASE WHEN $1 THEN $2 ELSE secret_key END,"
	"   publishable_key = CASE WHEN $3 THEN $4 ELSE publishable_key END,"
	"   brand_name = CASE WHEN $5 THEN $6 ELSE brand_name END,"
	"   brand_logo = CASE WHEN $7 THEN $8 ELSE brand_logo END,"
	"   brand_slogan = CASE WHEN $9 THEN $10 ELSE brand_slogan END,"
	"   success_url = CASE WHEN $11 THEN $12 ELSE success_url END,"
	"   cancel_url = CASE WHEN $13 THEN $14 ELSE cancel_url END,"
	"   payment_flow = CASE WHEN $15 THEN $16 ELSE payment_flow END,"
	"   flow_role = CASE WHEN $17 THEN $18 ELSE flow_role END,"
	"   event_retention = CASE WHEN $19 THEN $20 ELSE event_retention END,"
	"   updated_at = pg_catalog.now()"
	" RETURNING secret_key, publishable_key",
	.nargs = 20, .argtypes = {BOOLOID, TEXTOID, BOOLOID, TEXTOID, BOOLOID, TEXTOID, BOOLOID, TEXTOID,
		BOOLOID, TEXTOID, BOOLOID, TEXTOID, BOOLOID, TEXTOID, BOOLOID, TEXTOID,
	BOOLOID, REGROLEOID, BOOLOID, INTERVALOID}
};

static SpStmt read_config = {
	.sql = "SELECT * FROM stripepay.config"
};

static SpStmt config_row = {
	.sql = "SELECT secret_key, publishable_key, brand_name, brand_logo, brand_slogan, success_url,"
	"       cancel_url, payment_flow, updated_at, flow_role::pg_catalog.text, event_retention"
	"  FROM stripepay.settings"
};

static SpStmt store_secret = {
	.sql = "INSERT INTO stripepay.webhook_secret (id, secret, endpoint, expires_at)"
	" VALUES ($1, $2, $3, $4)"
	" ON CONFLICT (endpoint, secret) DO UPDATE SET expires_at = EXCLUDED.expires_at"
	" RETURNING id",
	.nargs = 4, .argtypes = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID}
};

static SpStmt read_secret = {
	.sql = "SELECT * FROM stripepay.webhook_secrets WHERE id = $1",
	.nargs = 1, .argtypes = {INT8OID}
};

/*
 * From here on, this statement's text appears in no message: the server
 * log's STATEMENT lines and pg_stat_activity read it from these two places.
 */
static void
sp_hide_statement(const char *shown)
{
	debug_query_string = NULL;
	pgstat_report_activity(STATE_RUNNING, shown);
}

/* Runs body with the statement hidden, and hides it from its ERROR too. */
static Datum
sp_with_statement_hidden(FunctionCallInfo fcinfo, const char *shown,
						 Datum (*body) (FunctionCallInfo))
{
	MemoryContext caller = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	sp_hide_statement(shown);
	PG_TRY();
	{
		result = body(fcinfo);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* reported later, by whoever catches it: the flag goes with it */
		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		edata->hide_stmt = true;
		ReThrowError(edata);
	}
	PG_END_TRY();
	return result;
}

static void
sp_check_text(const char *name, const char *value, size_t maxlen)
{
	if (strlen(value) > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long", name),
				 errdetail("It may have at most %zu bytes.", maxlen)));
}

/*
 * The flow role: the role user triggers run as.  Never a superuser, and
 * only a role the caller could SET ROLE to: otherwise an admin would run
 * code with another role's rights through it.
 */
static Oid
sp_check_flow_role(const SpCall *call, const char *name)
{
	char		shown[NAMEDATALEN * 4 + 8];
	Oid			role = get_role_oid(name, true);

	sp_one_line(shown, sizeof(shown), name, NAMEDATALEN);
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_SP_INVALID_FLOW_ROLE),
				 errmsg("role \"%s\" does not exist", shown)));
	if (superuser_arg(role))
		ereport(ERROR,
				(errcode(ERRCODE_SP_INVALID_FLOW_ROLE),
				 errmsg("a superuser cannot be the flow role"),
				 errdetail("User triggers run as the flow role, and would run as a superuser."),
				 errhint("Name a role with the rights your triggers need; a trigger function may still be SECURITY DEFINER on purpose.")));
	if (!superuser_arg(call->caller) && !SP_MAY_SET_ROLE(call->caller, role))
		ereport(ERROR,
				(errcode(ERRCODE_SP_INVALID_FLOW_ROLE),
				 errmsg("permission denied to make \"%s\" the flow role", shown),
				 errdetail("Only a role that may SET ROLE to \"%s\" may have triggers run as it.", shown)));
	return role;
}

/*
 * configure(secret_key, publishable_key, brand_name, brand_logo,
 *			 brand_slogan, success_url, cancel_url, payment_flow,
 *			 flow_role, event_retention)
 *
 * Every argument is optional: NULL leaves the setting as it is, '' clears
 * it.  Returns the masked settings.
 */
static Datum
sp_configure(FunctionCallInfo fcinfo)
{
	SpCall		call;
	char	   *val[NARGS];
	Datum		values[20];
	bool		nulls[20];
	Oid			flow_role = InvalidOid;
	SpRows		rows;
	int			i;

	for (i = 0; i < ARG_EVENT_RETENTION; i++)
		val[i] = PG_ARGISNULL(i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(i));
	/* payment_flow cannot be empty: '' means back to the default */
	if (val[ARG_PAYMENT_FLOW] && val[ARG_PAYMENT_FLOW][0] == '\0')
		val[ARG_PAYMENT_FLOW] = "checkout";

	sp_call_begin_unchecked(&call, fcinfo);

	/* validate everything before changing anything */
	if (val[ARG_SECRET_KEY] && sp_secret_key_file != NULL && sp_secret_key_file[0] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_SP_KEY_FROM_FILE),
				 errmsg("the secret key comes from stripepay.secret_key_file"),
				 errdetail("stripepay.secret_key_file is set to \"%s\".", sp_secret_key_file),
				 errhint("Change the file, or have a superuser reset stripepay.secret_key_file first.")));
	if (val[ARG_SECRET_KEY] && val[ARG_SECRET_KEY][0] &&
		sp_secret_key_problem(val[ARG_SECRET_KEY]) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Stripe secret key"),
				 errdetail("%s", sp_secret_key_problem(val[ARG_SECRET_KEY]))));
	if (val[ARG_PUBLISHABLE_KEY] && val[ARG_PUBLISHABLE_KEY][0] &&
		!sp_publishable_key_valid(val[ARG_PUBLISHABLE_KEY]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Stripe publishable key"),
				 errdetail("A publishable key starts with pk_test_ or pk_live_, followed by letters and digits.")));
	if (val[ARG_BRAND_NAME])
		sp_check_text("brand_name", val[ARG_BRAND_NAME], 250);
	if (val[ARG_BRAND_LOGO] && val[ARG_BRAND_LOGO][0])
		sp_check_url("brand_logo", val[ARG_BRAND_LOGO]);
	if (val[ARG_BRAND_SLOGAN])
		sp_check_text("brand_slogan", val[ARG_BRAND_SLOGAN], 500);
	if (val[ARG_SUCCESS_URL] && val[ARG_SUCCESS_URL][0])
		sp_check_url("success_url", val[ARG_SUCCESS_URL]);
	if (val[ARG_CANCEL_URL] && val[ARG_CANCEL_URL][0])
		sp_check_url("cancel_url", val[ARG_CANCEL_URL]);
	if (val[ARG_PAYMENT_FLOW] && strcmp(val[ARG_PAYMENT_FLOW], "checkout") != 0 &&
		strcmp(val[ARG_PAYMENT_FLOW], "payment_intent") != 0)
	{
		char		shown[64];

		sp_one_line(shown, sizeof(shown), val[ARG_PAYMENT_FLOW], 32);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid payment_flow \"%s\"", shown),
				 errdetail("It must be 'checkout' (Stripe Checkout pages) or 'payment_intent' (a client_secret for Stripe Elements).")));
	}
	if (val[ARG_FLOW_ROLE] && val[ARG_FLOW_ROLE][0])
		flow_role = sp_check_flow_role(&call, val[ARG_FLOW_ROLE]);
	if (!PG_ARGISNULL(ARG_EVENT_RETENTION))
		sp_prune_check_window(PG_GETARG_INTERVAL_P(ARG_EVENT_RETENTION), "event_retention");

	sp_stmt_run(&ensure_row, NULL, NULL, call.run_as, 0, NULL);
	for (i = 0; i < ARG_FLOW_ROLE; i++)
	{
		bool		passed = val[i] != NULL;

		values[2 * i] = BoolGetDatum(passed);
		nulls[2 * i] = false;
		values[2 * i + 1] = sp_text_or_null(val[i], &nulls[2 * i + 1]);
	}
	values[16] = BoolGetDatum(val[ARG_FLOW_ROLE] != NULL);
	nulls[16] = false;
	values[17] = ObjectIdGetDatum(flow_role);
	nulls[17] = !OidIsValid(flow_role);
	values[18] = BoolGetDatum(!PG_ARGISNULL(ARG_EVENT_RETENTION));
	nulls[18] = false;
	values[19] = PG_ARGISNULL(ARG_EVENT_RETENTION) ? (Datum) 0 : PG_GETARG_DATUM(ARG_EVENT_RETENTION);
	nulls[19] = PG_ARGISNULL(ARG_EVENT_RETENTION);
	sp_stmt_run(&update_settings, values, nulls, call.run_as, 1, &rows);

	/* a test key beside a live publishable key means a misconfigured shop */
	{
		char	   *sk = sp_rows_text(&rows, 0, 1);
		char	   *pk = sp_rows_text(&rows, 0, 2);

		if (sk == NULL && sp_secret_key_file != NULL && sp_secret_key_file[0] != '\0')
		{
			SpSettings	now;

			sp_settings_load(&now);
			sk = now.secret_key;
		}
		if (sk && pk && strcmp(sp_key_mode(sk), sp_key_mode(pk)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("secret key and publishable key belong to different modes"),
					 errdetail("The secret key is a %s-mode key, the publishable key a %s-mode key.",
							   sp_key_mode(sk), sp_key_mode(pk))));
	}

	sp_stmt_run(&read_config, NULL, NULL, SP_AS_OWNER, 1, &rows);
	sp_call_end(&call);
	return sp_rows_composite(&rows, 0, fcinfo);
}

Datum
stripepay_configure(PG_FUNCTION_ARGS)
{
	return sp_with_statement_hidden(fcinfo, "SELECT stripepay.configure(...)", sp_configure);
}

/*
 * stripepay._config(): the settings as the config view shows them, with
 * the secret key masked, from the table or from stripepay.secret_key_file.
 */
Datum
stripepay_config(PG_FUNCTION_ARGS)
{
	SpCall		call;
	SpRows		rows;
	TupleDesc	tupdesc;
	Datum		values[14];
	bool		nulls[14];
	char		masked[SP_MASKED_KEY_SIZE];
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	sp_call_begin_unchecked(&call, fcinfo);
	sp_stmt_run(&config_row, NULL, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows == 1)
	{
		ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
		const char *key = call.settings.secret_key;

		tupdesc = rsinfo->setDesc;
		memset(nulls, false, sizeof(nulls));
		if (key != NULL)
		{
			sp_mask_key(key, masked, sizeof(masked));
			values[0] = CStringGetTextDatum(masked);
			values[2] = CStringGetTextDatum(sp_key_mode(key));
		}
		nulls[0] = nulls[2] = key == NULL;
		values[1] = sp_rows_get(&rows, 0, 2, &nulls[1]);
		for (i = 3; i <= 8; i++)
			values[i] = sp_rows_get(&rows, 0, i, &nulls[i]);
		values[9] = sp_rows_get(&rows, 0, 9, &nulls[9]);
		values[10] = sp_rows_get(&rows, 0, 10, &nulls[10]);
		values[11] = sp_rows_get(&rows, 0, 11, &nulls[11]);
		values[12] = sp_text_or_null(sp_secret_key_file, &nulls[12]);
		values[13] = sp_text_or_null(sp_webhook_secrets_file, &nulls[13]);
		tuplestore_putvalues(rsinfo->setResult, tupdesc, values, nulls);
	}
	sp_call_end(&call);
	return (Datum) 0;
}

/*
 * add_webhook_secret(secret, endpoint, expires_at)
 *
 * Adds a signing secret, or sets the expiry of one already known: rotate by
 * adding the new secret, then giving the old one an expiry.
 */
static Datum
sp_add_webhook_secret(FunctionCallInfo fcinfo)
{
	SpCall		call;
	char	   *secret;
	char	   *endpoint;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	SpRows		rows;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("secret must not be null")));
	secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	endpoint = PG_ARGISNULL(1) ? "default" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (!sp_webhook_secret_valid(secret))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid webhook signing secret"),
				 errdetail("A signing secret starts with whsec_, as the Stripe dashboard shows it.")));
	if (!sp_endpoint_name_valid(endpoint, strlen(endpoint)))
	{
		char		shown[SP_ENDPOINT_NAME_MAX * 4 + 8];

		sp_one_line(shown, sizeof(shown), endpoint, SP_ENDPOINT_NAME_MAX);
		ereport(ERROR,
				(errcode(ERRCODE_SP_INVALID_ENDPOINT),
				 errmsg("invalid webhook endpoint name \"%s\"", shown),
				 errdetail("An endpoint name has 1 to %d letters, digits, '_', '-' or '.'.",
						   SP_ENDPOINT_NAME_MAX)));
	}

	sp_call_begin_unchecked(&call, fcinfo);
	values[0] = Int64GetDatum(sp_next_id("webhook_secret_id_seq"));
	values[1] = CStringGetTextDatum(secret);
	values[2] = CStringGetTextDatum(endpoint);
	values[3] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[3] = PG_ARGISNULL(2);
	sp_stmt_run(&store_secret, values, nulls, call.run_as, 1, &rows);
	values[0] = sp_rows_get(&rows, 0, 1, &nulls[0]);
	sp_stmt_run(&read_secret, values, NULL, SP_AS_OWNER, 1, &rows);
	sp_call_end(&call);
	return sp_rows_composite(&rows, 0, fcinfo);
}

Datum
stripepay_add_webhook_secret(PG_FUNCTION_ARGS)
{
	return sp_with_statement_hidden(fcinfo, "SELECT stripepay.add_webhook_secret(...)",
									sp_add_webhook_secret);
}

/* mask_key(key text) */
Datum
stripepay_mask_key(PG_FUNCTION_ARGS)
{
	char		masked[SP_MASKED_KEY_SIZE];

	sp_mask_key(text_to_cstring(PG_GETARG_TEXT_PP(0)), masked, sizeof(masked));
	PG_RETURN_TEXT_P(cstring_to_text(masked));
}

/*
 * A role that existed before this install may be managed by someone who is
 * not a superuser: from PostgreSQL 16 on, whoever made it with CREATEROLE
 * holds ADMIN OPTION on it, and so could hand stripepay's rights (refunds,
 * settings, every event) to any role once they are granted.  A superuser
 * may also have delegated that on purpose, so this warns rather than
 * refuses, and names each non-superuser holder.
 */
static void
warn_of_role_admins(const char *role, Oid role_oid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	uint64		row;

	values[0] = ObjectIdGetDatum(role_oid);
	if (SPI_execute_with_args("SELECT m.rolname::pg_catalog.text"
							  "  FROM pg_catalog.pg_auth_members a"
							  "  JOIN pg_catalog.pg_roles m ON m.oid = a.member"
							  " WHERE a.roleid = $1 AND a.admin_option AND NOT m.rolsuper"
							  " ORDER BY 1",
							  1, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "stripepay: could not read the members of role %s", role);
	for (row = 0; row < SPI_processed; row++)
	{
		char	   *holder = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1);

		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("role \"%s\" existed already, and role \"%s\" may grant it", role, holder),
				 errdetail("Whoever may grant %s can give stripepay's rights to any role.", role),
				 errhint("Unless that is intended: REVOKE ADMIN OPTION FOR %s FROM %s;",
						 role, quote_identifier(holder))));
	}
}

/*
 * stripepay._install(): run once by the install script, then dropped.  The
 * roles are cluster-wide and outlive the extension, so they are made only
 * when absent: a second database's CREATE EXTENSION must not fail.  lz4
 * compresses a payload several times faster than pglz, where the server
 * has it.
 */
Datum
stripepay_install(PG_FUNCTION_ARGS)
{
	static const char *const roles[] = {"stripepay_admin", "stripepay_user", "stripepay_webhook"};
	size_t		i;
	HeapTuple	tuple;
	Oid			schema_owner;

	/*
	 * CREATE EXTENSION uses a schema stripepay that exists already.  Its
	 * owner could drop stripepay's tables, or put tables of its own under
	 * their names for the notifier to write as a superuser.
	 */
	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(get_namespace_oid("stripepay", false)));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "stripepay: cache lookup failed for schema stripepay");
	schema_owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);
	if (!superuser_arg(schema_owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("schema \"stripepay\" is owned by role \"%s\", which is not a superuser",
						GetUserNameFromId(schema_owner, false)),
				 errdetail("Its owner could drop or replace stripepay's tables."),
				 errhint("Drop that schema, or make a superuser its owner, then CREATE EXTENSION stripepay.")));

	SPI_connect();
	for (i = 0; i < lengthof(roles); i++)
	{
		Oid			existing = get_role_oid(roles[i], true);

		if (OidIsValid(existing))
			warn_of_role_admins(roles[i], existing);
		else
			SPI_execute(psprintf("CREATE ROLE %s NOLOGIN", roles[i]), false, 0);
	}
#ifdef USE_LZ4
	SPI_execute("ALTER TABLE stripepay.webhook_event ALTER COLUMN payload SET COMPRESSION lz4",
				false, 0);
#endif
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * stripepay._advances(kind, cur_status, cur_at, new_status, new_at): the
 * never-regress rule, for the regression tests' truth table.
 */
Datum
stripepay_advances(PG_FUNCTION_ARGS)
{
	char	   *kind;
	char	   *cur_status = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *new_status = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	PG_RETURN_BOOL(sp_state_advances(sp_state_kind(kind), cur_status, !PG_ARGISNULL(2),
									 PG_ARGISNULL(2) ? 0 : PG_GETARG_TIMESTAMPTZ(2),
									 new_status, !PG_ARGISNULL(4),
									 PG_ARGISNULL(4) ? 0 : PG_GETARG_TIMESTAMPTZ(4)));
}
