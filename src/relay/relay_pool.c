/*-------------------------------------------------------------------------
 *
 * relay_pool.c
 *		A fixed pool of libpq connections for stripepay-relay.
 *
 * Every wait has a deadline: for a free slot, for a connection to be made,
 * for a statement's answer.  libpq is driven in its asynchronous mode and
 * poll(2) is given the time that is left, so a database that is down, slow
 * or unreachable costs a request its timeout and never a hang.
 *
 * A connection that broke (the server restarted, a backend was terminated)
 * is closed and made again on the next use, so the relay rides through a
 * Postgres restart without being restarted itself.  The statement that met
 * the broken connection is tried once more on a fresh one: ingestion is
 * idempotent by event id, and a statement that failed was rolled back, so a
 * second attempt cannot apply an event twice.
 *
 *-------------------------------------------------------------------------
 */
#include "relay_pool.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay.h"
#include "relay_map.h"

/*
 * The server enforces the timeout (statement_timeout) and answers 57014; the
 * client waits this much longer before it gives up on a server that does
 * not answer at all.
 */
#define RELAY_CLIENT_GRACE_MS 2000

/* between two failed connection attempts of one request */
#define RELAY_BACKOFF_MIN_MS 50
#define RELAY_BACKOFF_MAX_MS 1000

/* a database that stays down is reported this often, not once a request */
#define RELAY_FAILURE_LOG_EVERY_MS 5000

typedef struct RelaySlot
{
	PGconn	   *conn;			/* NULL until connected, and after a failure */
	bool		busy;			/* lent to a request */
} RelaySlot;

struct RelayPool
{
	pthread_mutex_t lock;
	pthread_cond_t freed;		/* a slot was given back */
	char	   *dsn;
	char		set_timeout[64];	/* SET statement_timeout, run on connect */
	int			size;
	int			timeout_ms;
	RelaySlot  *slots;
	/* log state, under lock */
	int64_t		last_failure_log_ms;
	bool		failing;		/* the last connection attempt failed */
	bool		connected_once;
};

static void
relay_quiet_notice(void *arg, const char *message)
{
	/*
	 * The server's NOTICEs would go to stderr unformatted; the request log
	 * line already says how each statement ended.
	 */
	(void) arg;
	(void) message;
}

static void
relay_sleep_ms(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * Waits until conn's socket is ready, at most until deadline.  Returns 1
 * when ready, 0 at the deadline, -1 when there is no socket to wait on.
 */
static int
relay_wait(PGconn *conn, bool for_read, bool for_write, int64_t deadline)
{
	int			sock = PQsocket(conn);

	if (sock < 0)
		return -1;
	for (;;)
	{
		struct pollfd pfd;
		int64_t		left = deadline - relay_now_ms();
		int			rc;

		if (left <= 0)
			return 0;
		pfd.fd = sock;
		pfd.events = (short) ((for_read ? POLLIN : 0) | (for_write ? POLLOUT : 0));
		pfd.revents = 0;
		rc = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int) left);
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

/* the first line of libpq's message: a log line stays one line */
static void
relay_first_line(char *dst, size_t size, const char *msg)
{
	size_t		n = 0;

	if (msg == NULL)
		msg = "";
	while (msg[n] != '\0' && msg[n] != '\n' && n + 1 < size)
	{
		dst[n] = msg[n];
		n++;
	}
	dst[n] = '\0';
}

static void
relay_note_failure(RelayPool *pool, const char *what, const char *detail)
{
	char		line[256];
	int64_t		now = relay_now_ms();
	bool		report;

	relay_first_line(line, sizeof(line), detail);
	pthread_mutex_lock(&pool->lock);
	report = !pool->failing || now - pool->last_failure_log_ms >= RELAY_FAILURE_LOG_EVERY_MS;
	if (report)
		pool->last_failure_log_ms = now;
	pool->failing = true;
	pthread_mutex_unlock(&pool->lock);
	if (report)
		relay_log("%s: %s", what, line);
}

static void
relay_note_success(RelayPool *pool, PGconn *conn)
{
	bool		was_failing;
	bool		first;

	pthread_mutex_lock(&pool->lock);
	was_failing = pool->failing;
	first = !pool->connected_once;
	pool->failing = false;
	pool->connected_once = true;
	pthread_mutex_unlock(&pool->lock);
	if (first || was_failing)
		relay_log("connected to database \"%s\" as role \"%s\"%s",
				  PQdb(conn), PQuser(conn), was_failing ? " again" : "");
}

/*
 * Runs one statement on conn, waiting at most until deadline.  Returns the
 * last result, or NULL with *timed_out set at the deadline, or NULL when
 * the connection broke before a result could be read; the caller closes
 * the connection after a NULL.
 */
static PGresult *
relay_exec(PGconn *conn, const RelayQuery *q, int64_t deadline, bool *timed_out)
{
	PGresult   *last = NULL;
	PGresult   *r;
	int			rc;

	*timed_out = false;
	if (!PQsendQueryParams(conn, q->sql, q->nparams, q->types, q->values,
						   q->lengths, q->formats, 0))
		return NULL;
	/* a 1 MiB body does not fit the socket buffer at once */
	for (;;)
	{
		int			f = PQflush(conn);

		if (f <= 0)
			break;
		rc = relay_wait(conn, true, true, deadline);
		if (rc == 0)
		{
			*timed_out = true;
			return NULL;
		}
		if (rc < 0 || !PQconsumeInput(conn))
			break;
	}
	while (PQisBusy(conn))
	{
		rc = relay_wait(conn, true, false, deadline);
		if (rc == 0)
		{
			*timed_out = true;
			return NULL;
		}
		if (rc < 0 || !PQconsumeInput(conn))
			break;
	}
	/* PQgetResult would block on a live socket that has not answered */
	if (PQisBusy(conn) && PQstatus(conn) == CONNECTION_OK)
		return NULL;
	while ((r = PQgetResult(conn)) != NULL)
	{
		PQclear(last);
		last = r;
	}
	return last;
}

/*
 * Makes a connection, at most until deadline, and sets its statement
 * timeout.  The DSN comes first and may override the application name;
 * client_encoding comes after it, because JSON bodies are UTF-8.
 */
static PGconn *
relay_connect(RelayPool *pool, int64_t deadline)
{
	const char *const keywords[] = {"fallback_application_name", "dbname", "client_encoding", NULL};
	const char *const values[] = {"stripepay-relay", pool->dsn, "UTF8", NULL};
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	PGconn	   *conn;
	PGresult   *res;
	RelayQuery	q = {0};
	bool		timed_out;

	conn = PQconnectStartParams(keywords, values, 1);
	if (conn == NULL)
	{
		relay_note_failure(pool, "could not connect to the database", "out of memory");
		return NULL;
	}
	if (PQstatus(conn) == CONNECTION_BAD)
		st = PGRES_POLLING_FAILED;
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED)
	{
		int			rc = relay_wait(conn, st == PGRES_POLLING_READING,
									st != PGRES_POLLING_READING, deadline);

		if (rc <= 0)
		{
			relay_note_failure(pool, "could not connect to the database",
							   rc == 0 ? "timed out" : PQerrorMessage(conn));
			PQfinish(conn);
			return NULL;
		}
		st = PQconnectPoll(conn);
	}
	if (st == PGRES_POLLING_FAILED)
	{
		relay_note_failure(pool, "could not connect to the database", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, relay_quiet_notice, NULL);
	if (PQsetnonblocking(conn, 1) != 0)
	{
		relay_note_failure(pool, "could not set up the connection", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}

	/* a fresh connection answers at once: give it a full timeout */
	q.sql = pool->set_timeout;
	res = relay_exec(conn, &q, relay_now_ms() + pool->timeout_ms, &timed_out);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		relay_note_failure(pool, "could not set statement_timeout",
						   res ? PQresultErrorMessage(res) :
						   timed_out ? "timed out" : PQerrorMessage(conn));
		PQclear(res);
		PQfinish(conn);
		return NULL;
	}
	PQclear(res);
	relay_note_success(pool, conn);
	return conn;
}

static void
relay_drop(RelaySlot *slot)
{
	if (slot->conn != NULL)
		PQfinish(slot->conn);
	slot->conn = NULL;
}

/*
 * A usable connection in slot, made anew when it is missing or broken,
 * retrying with backoff until deadline.  An idle connection whose server
 * went away is noticed here, before a statement is sent on it: the server
 * said why (57P01) and closed the socket, which PQconsumeInput reads.
 */
static bool
relay_ensure(RelayPool *pool, RelaySlot *slot, int64_t deadline)
{
	int64_t		backoff = RELAY_BACKOFF_MIN_MS;

	if (slot->conn != NULL)
	{
		if (PQstatus(slot->conn) == CONNECTION_OK &&
			PQconsumeInput(slot->conn) &&
			PQstatus(slot->conn) == CONNECTION_OK &&
			!PQisBusy(slot->conn) &&
			PQtransactionStatus(slot->conn) == PQTRANS_IDLE)
			return true;
		relay_drop(slot);
	}
	for (;;)
	{
		int64_t		now;

		slot->conn = relay_connect(pool, deadline);
		if (slot->conn != NULL)
			return true;
		now = relay_now_ms();
		if (now >= deadline)
			return false;
		relay_sleep_ms(backoff < deadline - now ? backoff : deadline - now);
		if (relay_now_ms() >= deadline)
			return false;
		backoff = backoff * 2 < RELAY_BACKOFF_MAX_MS ? backoff * 2 : RELAY_BACKOFF_MAX_MS;
	}
}

/*
 * Lends a slot, preferring one with a connection; waits for one to be
 * given back until deadline.  NULL means none became free in time.
 */
static RelaySlot *
relay_take(RelayPool *pool, int64_t deadline)
{
	RelaySlot  *found = NULL;

	pthread_mutex_lock(&pool->lock);
	for (;;)
	{
		int			i;
		struct timespec until;

		for (i = 0; i < pool->size; i++)
		{
			RelaySlot  *s = &pool->slots[i];

			if (s->busy)
				continue;
			if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK)
			{
				found = s;
				break;
			}
			if (found == NULL)
				found = s;
		}
		if (found != NULL)
		{
			found->busy = true;
			break;
		}
		if (relay_now_ms() >= deadline)
			break;
		until.tv_sec = deadline / 1000;
		until.tv_nsec = (deadline % 1000) * 1000000;
		pthread_cond_timedwait(&pool->freed, &pool->lock, &until);
	}
	pthread_mutex_unlock(&pool->lock);
	return found;
}

static void
relay_give_back(RelayPool *pool, RelaySlot *slot)
{
	pthread_mutex_lock(&pool->lock);
	slot->busy = false;
	pthread_cond_signal(&pool->freed);
	pthread_mutex_unlock(&pool->lock);
}

static void
relay_set_message(RelayOutcome *out, const char *message)
{
	relay_first_line(out->message, sizeof(out->message), message);
}

/*
 * Runs query on a pooled connection, for a request that started at
 * started_ms: a slot and a connection must be had within the timeout, and
 * the statement then has the timeout of its own (statement_timeout).
 */
void
relay_pool_query(RelayPool *pool, const RelayQuery *query, int64_t started_ms,
				 RelayOutcome *out)
{
	int64_t		deadline = started_ms + pool->timeout_ms;
	RelaySlot  *slot;
	int			attempt;

	memset(out, 0, sizeof(*out));
	slot = relay_take(pool, deadline);
	if (slot == NULL)
	{
		out->http_status = 503;
		relay_set_message(out, "no database connection became free in time");
		return;
	}
	for (attempt = 0;; attempt++)
	{
		PGresult   *res;
		bool		timed_out;
		const char *sqlstate;
		RelayErrorClass cls;
		ExecStatusType st;

		if (!relay_ensure(pool, slot, deadline))
		{
			out->http_status = 503;
			relay_set_message(out, "the database is unavailable");
			break;
		}
		res = relay_exec(slot->conn, query,
						 relay_now_ms() + pool->timeout_ms + RELAY_CLIENT_GRACE_MS,
						 &timed_out);
		if (timed_out)
		{
			/* the connection is mid-statement: it cannot be lent again */
			relay_drop(slot);
			out->http_status = 504;
			relay_set_message(out, "the database did not answer in time");
			break;
		}
		st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		{
			/* a failure before the retry is history now */
			out->sqlstate[0] = '\0';
			out->message[0] = '\0';
			out->result = res;
			out->http_status = 200;
			break;
		}

		sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		cls = relay_classify_sqlstate(sqlstate);
		if (res == NULL || PQstatus(slot->conn) != CONNECTION_OK)
			cls = RELAY_ERR_CONNECTION;
		snprintf(out->sqlstate, sizeof(out->sqlstate), "%s", sqlstate ? sqlstate : "");
		relay_set_message(out, res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
						  : PQerrorMessage(slot->conn));
		if (out->message[0] == '\0')
			relay_set_message(out, cls == RELAY_ERR_CONNECTION ?
							  "the connection to the database was lost" :
							  "the statement failed");
		if (cls == RELAY_ERR_CONNECTION)
		{
			relay_note_failure(pool, "lost the database connection",
							   out->sqlstate[0] ? out->sqlstate : out->message);
			relay_drop(slot);
		}
		PQclear(res);
		if (attempt == 0 && relay_error_retryable(cls))
		{
			out->retried = true;
			continue;
		}
		out->http_status = relay_error_http_status(cls);
		break;
	}
	relay_give_back(pool, slot);
}

RelayPool *
relay_pool_create(const char *dsn, int size, int timeout_ms)
{
	RelayPool  *pool = calloc(1, sizeof(RelayPool));
	pthread_condattr_t attr;

	if (pool == NULL)
		return NULL;
	pool->dsn = strdup(dsn ? dsn : "");
	pool->slots = calloc((size_t) size, sizeof(RelaySlot));
	if (pool->dsn == NULL || pool->slots == NULL)
	{
		free(pool->dsn);
		free(pool->slots);
		free(pool);
		return NULL;
	}
	pool->size = size;
	pool->timeout_ms = timeout_ms;
	snprintf(pool->set_timeout, sizeof(pool->set_timeout),
			 "SET statement_timeout = %d", timeout_ms);
	pthread_mutex_init(&pool->lock, NULL);
	/* deadlines are on the monotonic clock, and so is the wait for a slot */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->freed, &attr);
	pthread_condattr_destroy(&attr);
	return pool;
}

void
relay_pool_destroy(RelayPool *pool)
{
	int			i;

	if (pool == NULL)
		return;
	for (i = 0; i < pool->size; i++)
		relay_drop(&pool->slots[i]);
	pthread_cond_destroy(&pool->freed);
	pthread_mutex_destroy(&pool->lock);
	free(pool->slots);
	free(pool->dsn);
	free(pool);
}
