/*-------------------------------------------------------------------------
 *
 * sp_store.c
 *		Reading and writing the extension's tables through SPI.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "sp_store.h"
#include "stripepay.h"

uint64
sp_exec(const char *sql, int nargs, Oid *argtypes, Datum *values,
		const char *nulls, int expected_ret)
{
	int			ret;

	ret = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);
	if (ret != expected_ret)
		elog(ERROR, "stripepay: SPI_execute_with_args returned %s for \"%s\"",
			 SPI_result_code_string(ret), sql);
	return SPI_processed;
}

Datum
sp_return_row(const char *select_by_id, int64 id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	Datum		result;

	values[0] = Int64GetDatum(id);
	if (sp_exec(select_by_id, 1, argtypes, values, NULL, SPI_OK_SELECT) != 1)
		elog(ERROR, "stripepay: \"%s\" found no row " INT64_FORMAT, select_by_id, id);
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	return result;
}

char *
sp_result_text(uint64 row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

void
sp_settings_load(SpSettings *settings)
{
	memset(settings, 0, sizeof(*settings));
	if (sp_exec("SELECT secret_key, brand_name, brand_logo, brand_slogan,"
				"       success_url, cancel_url, payment_flow"
				"  FROM stripepay.settings",
				0, NULL, NULL, NULL, SPI_OK_SELECT) == 1)
	{
		settings->found = true;
		settings->secret_key = sp_result_text(0, 1);
		settings->brand_name = sp_result_text(0, 2);
		settings->brand_logo = sp_result_text(0, 3);
		settings->brand_slogan = sp_result_text(0, 4);
		settings->success_url = sp_result_text(0, 5);
		settings->cancel_url = sp_result_text(0, 6);
		settings->payment_flow = sp_result_text(0, 7);
	}

	if (settings->secret_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_CONFIGURED),
				 errmsg("stripepay has no Stripe secret key"),
				 errhint("An admin must first run SELECT stripepay.configure(secret_key => 'sk_test_...').")));
}

void
sp_settings_require_success_url(const SpSettings *settings)
{
	if (settings->success_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_CONFIGURED),
				 errmsg("stripepay has no success_url for Checkout"),
				 errhint("An admin must run SELECT stripepay.configure(success_url => 'https://...').")));
}

/*
 * The plan for sql, prepared on first use and kept for the backend's life in
 * *cache: the ingest's statements run once an event, and an event is a
 * transaction.
 */
SPIPlanPtr
sp_keep_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "stripepay: SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*cache = plan;
	}
	return *cache;
}

Datum
sp_caller_name(void)
{
	/* a C string is not a name: a name parameter is read NAMEDATALEN bytes long */
	return DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false)));
}
