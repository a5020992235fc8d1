/*-------------------------------------------------------------------------
 *
 * sp_stmt.h
 *		The extension's SQL statements: each prepared once and kept for the
 *		backend's life, run through the executor directly.
 *
 * Privileges are always checked as the extension's owner (the role the
 * entry point switched to, see sp_call.h).  A statement that changes a
 * table runs, with every trigger it fires, as the call's run-as role
 * instead: the flow role, or the role that called stripepay.  No code a
 * user wrote ever runs as the extension's owner, and no role needs a grant
 * on stripepay's tables for its flows to run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_STMT_H
#define SP_STMT_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/spi.h"

#define SP_STMT_MAX_ARGS 24

typedef struct SpStmt
{
	const char *sql;
	int			nargs;
	Oid			argtypes[SP_STMT_MAX_ARGS];
	SPIPlanPtr	plan;			/* prepared on first use, then kept */
} SpStmt;

/* What a statement returned. */
typedef struct SpRows
{
	uint64		processed;		/* rows returned, inserted, updated or deleted */
	int			nrows;			/* rows kept in rows[] (at most what was asked) */
	TupleDesc	desc;
	HeapTuple  *rows;
} SpRows;

/* run_as for statements that change nothing: no user code can run */
#define SP_AS_OWNER InvalidOid

/*
 * Runs stmt with the given parameters (nulls may be NULL: none is null),
 * keeping up to max_rows of the rows it returns in out (which may be NULL).
 * A statement that changes a table passes the role its triggers run as.
 * Like a non-read-only SPI call: a fresh snapshot, and the command counter
 * advanced before and after.
 */
extern void sp_stmt_run(SpStmt *stmt, const Datum *values, const bool *nulls, Oid run_as,
						int max_rows, SpRows *out);

/* Column col (1-based) of row `row`, and whether it is null. */
extern Datum sp_rows_get(const SpRows *rows, int row, int col, bool *isnull);
extern int64 sp_rows_int64(const SpRows *rows, int row, int col, bool *isnull);
extern char *sp_rows_text(const SpRows *rows, int row, int col);	/* NULL for null */
extern bool sp_rows_bool(const SpRows *rows, int row, int col, bool *isnull);

/*
 * Row `row` as a value of the function's composite result type, column by
 * column by name (a table's row type may hold dropped columns).
 */
extern Datum sp_rows_composite(const SpRows *rows, int row, FunctionCallInfo fcinfo);

/* The next value of one of the extension's sequences, taken as its owner. */
extern int64 sp_next_id(const char *sequence);

/* The oid of the schema stripepay's objects live in. */
extern Oid	sp_schema_oid(void);

/* A text Datum, or null for NULL or "". */
extern Datum sp_text_or_null(const char *value, bool *isnull);

#endif							/* SP_STMT_H */
