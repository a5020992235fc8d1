/*-------------------------------------------------------------------------
 *
 * sp_store.h
 *		The extension's tables, through SPI.  Callers are connected to SPI.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_STORE_H
#define SP_STORE_H

#include "postgres.h"

#include "executor/spi.h"

typedef struct SpSettings
{
	bool		found;
	char	   *secret_key;
	char	   *brand_name;
	char	   *brand_logo;
	char	   *brand_slogan;
	char	   *success_url;
	char	   *cancel_url;
	char	   *payment_flow;
} SpSettings;

/* Loads the settings row; ERROR when there is no secret key yet. */
extern void sp_settings_load(SpSettings *settings);

/* ERROR unless a success_url is configured: Checkout needs one. */
extern void sp_settings_require_success_url(const SpSettings *settings);

/*
 * Runs one statement with $n parameters.  nulls follows SPI's convention
 * (' ' or 'n'), NULL for none.  Returns SPI_processed.
 */
extern uint64 sp_exec(const char *sql, int nargs, Oid *argtypes, Datum *values,
					  const char *nulls, int expected_ret);

/*
 * The one row `select_by_id` (a SELECT * with $1 = id) finds, as a
 * function's composite result; ends the SPI connection.
 */
extern Datum sp_return_row(const char *select_by_id, int64 id);

/* Text of column `col` (1-based) of row `row` of the last result, or NULL. */
extern char *sp_result_text(uint64 row, int col);

/* A plan prepared once and kept in *cache for the backend's life. */
extern SPIPlanPtr sp_keep_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes);

/* The calling role's name as a name Datum (NAMEDATALEN bytes), for created_by. */
extern Datum sp_caller_name(void);

#endif							/* SP_STORE_H */
