/*-------------------------------------------------------------------------
 *
 * relay_pool.h
 *		A fixed pool of libpq connections with deadlines, reconnection,
 *		one retry on connection loss, and events batched into one
 *		transaction under load.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RELAY_POOL_H
#define RELAY_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

typedef struct RelayPool RelayPool;

/* one parameterized statement, as PQsendQueryParams takes it */
typedef struct RelayQuery
{
	const char *sql;
	int			nparams;
	const Oid  *types;
	const char *const *values;
	const int  *lengths;
	const int  *formats;
} RelayQuery;

/* what became of a statement */
typedef struct RelayOutcome
{
	PGresult   *result;			/* on success (http_status 200): the caller's
								 * to PQclear */
	int			http_status;	/* 200, or what the failure maps to */
	char		sqlstate[6];	/* of the failure, "" when there was none */
	char		message[256];	/* the server's primary message, for a 400 */
	bool		retried;		/* a second attempt was made */
	int			batch;			/* events in its transaction, 1 when alone */
} RelayOutcome;

/* the most events one transaction takes (--batch) */
#define RELAY_BATCH_MAX 1000

extern RelayPool *relay_pool_create(const char *dsn, int size, int timeout_ms,
									int batch, bool pipeline);
extern void relay_pool_destroy(RelayPool *pool);
extern int	relay_pool_cancel(RelayPool *pool);
extern void relay_pool_query(RelayPool *pool, const RelayQuery *query,
							 RelayOutcome *out);

#endif							/* RELAY_POOL_H */
