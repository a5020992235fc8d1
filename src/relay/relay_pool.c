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
 * Under load, requests that wait for a connection are run together: one
 * transaction, a savepoint for each event, one commit for all of them
 * (relay_pool_query).  A batch is answered only after its COMMIT; when the
 * COMMIT or the connection fails, no event of it is answered 200.
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
	PGcancel   *cancel;			/* conn's cancel key, under the pool's lock */
	bool		busy;			/* lent to a request */
} RelaySlot;

struct RelayPool
{
	pthread_mutex_t lock;		/* the slots' busy flags, the queue, the log state */
	struct RelayJob *head;		/* requests waiting for a connection, oldest first */
	struct RelayJob *tail;
	char	   *dsn;
	char		set_timeout[64];	/* SET statement_timeout, run on connect */
	int			size;
	int			timeout_ms;
	int			batch;			/* most events a transaction */
	bool		pipeline;		/* send a batch in libpq's pipeline mode */
	RelaySlot  *slots;
	/* log state, under lock */
	int64_t		last_failure_log_ms;
	bool		failing;		/* the last connection attempt failed */
	bool		connected_once;
	bool		cancelling;		/* relay_pool_cancel ran: free no cancel key */
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

/*
 * The slot's connection is conn now; its cancel key is kept beside it, so
 * that relay_pool_cancel, on another thread, never touches the PGconn.
 */
static void
relay_adopt(RelayPool *pool, RelaySlot *slot, PGconn *conn)
{
	PGcancel   *cancel = PQgetCancel(conn);

	slot->conn = conn;
	pthread_mutex_lock(&pool->lock);
	slot->cancel = cancel;
	pthread_mutex_unlock(&pool->lock);
}

static void
relay_drop(RelayPool *pool, RelaySlot *slot)
{
	PGcancel   *cancel;
	bool		keep;

	pthread_mutex_lock(&pool->lock);
	cancel = slot->cancel;
	slot->cancel = NULL;
	/* relay_pool_cancel may be using it: the process is about to exit */
	keep = pool->cancelling;
	pthread_mutex_unlock(&pool->lock);
	if (cancel != NULL && !keep)
		PQfreeCancel(cancel);
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
		relay_drop(pool, slot);
	}
	for (;;)
	{
		PGconn	   *conn = relay_connect(pool, deadline);
		int64_t		now;

		if (conn != NULL)
		{
			relay_adopt(pool, slot, conn);
			return true;
		}
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
 * One request's statement, from the moment it is queued until its outcome
 * is in.  It lives on the stack of the request's thread, which sleeps on
 * wake until its job is done or it is its turn to run a batch.
 */
typedef struct RelayJob
{
	const RelayQuery *query;
	RelayOutcome *out;
	int64_t		deadline;		/* for a connection to be had */
	pthread_cond_t wake;
	struct RelayJob *next;		/* in the queue, then in its batch */
	bool		taken;			/* a batch has it: it is out of the queue */
	bool		done;
} RelayJob;

/* what a command of a pipelined batch is, to read its result */
typedef enum RelayCmdKind
{
	RELAY_CMD_CONTROL,			/* BEGIN, ROLLBACK TO: a failure fails the batch */
	RELAY_CMD_EVENT,			/* SAVEPOINT, RELEASE: a failure is its event's */
	RELAY_CMD_QUERY,			/* the event's own statement */
	RELAY_CMD_COMMIT,
	RELAY_CMD_SYNC
} RelayCmdKind;

typedef struct RelayCmd
{
	RelayCmdKind kind;
	int			job;			/* index in the batch, for EVENT and QUERY */
} RelayCmd;

#define RELAY_SQL_BEGIN "BEGIN"
#define RELAY_SQL_SAVEPOINT "SAVEPOINT stripepay_relay_event"
#define RELAY_SQL_RELEASE "RELEASE SAVEPOINT stripepay_relay_event"
#define RELAY_SQL_ROLLBACK_TO "ROLLBACK TO SAVEPOINT stripepay_relay_event"
#define RELAY_SQL_COMMIT "COMMIT"

static void
relay_set_message(RelayOutcome *out, const char *message)
{
	relay_first_line(out->message, sizeof(out->message), message);
}

/* records a failed statement's SQLSTATE and message in out; returns its class */
static RelayErrorClass
relay_set_failure(RelayOutcome *out, const PGresult *res, PGconn *conn)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	RelayErrorClass cls = relay_classify_sqlstate(sqlstate);

	if (res == NULL || PQstatus(conn) != CONNECTION_OK)
		cls = RELAY_ERR_CONNECTION;
	snprintf(out->sqlstate, sizeof(out->sqlstate), "%s", sqlstate ? sqlstate : "");
	relay_set_message(out, res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
					  : PQerrorMessage(conn));
	if (out->message[0] == '\0')
		relay_set_message(out, cls == RELAY_ERR_CONNECTION ?
						  "the connection to the database was lost" :
						  "the statement failed");
	out->http_status = relay_error_http_status(cls);
	return cls;
}

/*
 * A statement that runs alone, in its own transaction: as the relay always
 * did, with one more try on a fresh connection after a lost connection or a
 * serialization failure.
 */
static void
relay_run_one(RelayPool *pool, RelaySlot *slot, RelayJob *job)
{
	RelayOutcome *out = job->out;
	int			attempt;

	for (attempt = 0;; attempt++)
	{
		PGresult   *res;
		bool		timed_out;
		RelayErrorClass cls;
		ExecStatusType st;

		if (!relay_ensure(pool, slot, job->deadline))
		{
			out->http_status = 503;
			relay_set_message(out, "the database is unavailable");
			return;
		}
		res = relay_exec(slot->conn, job->query,
						 relay_now_ms() + pool->timeout_ms + RELAY_CLIENT_GRACE_MS,
						 &timed_out);
		if (timed_out)
		{
			/* the connection is mid-statement: it cannot be lent again */
			relay_drop(pool, slot);
			out->http_status = 504;
			relay_set_message(out, "the database did not answer in time");
			return;
		}
		st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		{
			/* a failure before the retry is history now */
			out->sqlstate[0] = '\0';
			out->message[0] = '\0';
			out->result = res;
			out->http_status = 200;
			return;
		}
		cls = relay_set_failure(out, res, slot->conn);
		if (cls == RELAY_ERR_CONNECTION)
		{
			relay_note_failure(pool, "lost the database connection",
							   out->sqlstate[0] ? out->sqlstate : out->message);
			relay_drop(pool, slot);
		}
		PQclear(res);
		if (attempt == 0 && relay_error_retryable(cls))
		{
			out->retried = true;
			continue;
		}
		return;
	}
}

/*
 * The batch as a whole failed (the connection broke, the database did not
 * answer, COMMIT failed): nothing of it was committed, so every event that
 * had not failed on its own is answered with the batch's failure, and Stripe
 * sends it again.
 */
static void
relay_fail_batch(RelayJob **jobs, int n, const RelayOutcome *why)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		RelayOutcome *out = jobs[i]->out;

		if (out->http_status != 0 && out->http_status != 200)
			continue;
		PQclear(out->result);
		out->result = NULL;
		out->http_status = why->http_status;
		memcpy(out->sqlstate, why->sqlstate, sizeof(out->sqlstate));
		memcpy(out->message, why->message, sizeof(out->message));
	}
}

/* a failure of the batch's own, from a result or the connection */
static void
relay_batch_failure(RelayPool *pool, RelaySlot *slot, const PGresult *res,
					bool timed_out, RelayOutcome *why)
{
	memset(why, 0, sizeof(*why));
	if (timed_out)
	{
		why->http_status = 504;
		relay_set_message(why, "the database did not answer in time");
	}
	else if (relay_set_failure(why, res, slot->conn) == RELAY_ERR_CONNECTION)
		relay_note_failure(pool, "lost the database connection",
						   why->sqlstate[0] ? why->sqlstate : why->message);
	/* mid-transaction or mid-pipeline: the connection cannot be lent again */
	relay_drop(pool, slot);
}

/* an event's statement succeeded for now: it counts once COMMIT has */
static void
relay_event_ran(RelayOutcome *out, PGresult *res)
{
	PQclear(out->result);
	out->result = res;
	out->http_status = 200;
}

/* an event failed on its own: its savepoint is rolled back, the others go on */
static void
relay_event_failed(RelayOutcome *out, PGresult *res, PGconn *conn)
{
	PQclear(out->result);
	out->result = NULL;
	relay_set_failure(out, res, conn);
}

static bool
relay_send(PGconn *conn, const char *sql)
{
	return PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0) == 1;
}

static bool
relay_send_query(PGconn *conn, const RelayQuery *q)
{
	return PQsendQueryParams(conn, q->sql, q->nparams, q->types, q->values,
							 q->lengths, q->formats, 0) == 1;
}

/*
 * Sends what libpq holds, reading meanwhile so that the server, answering
 * the first commands of a large pipeline, never blocks on a full socket
 * while we block on ours.  False when the connection broke or at deadline.
 */
static bool
relay_flush(PGconn *conn, int64_t deadline, bool *timed_out)
{
	for (;;)
	{
		int			f = PQflush(conn);
		int			rc;

		if (f == 0)
			return true;
		if (f < 0)
			return false;
		rc = relay_wait(conn, true, true, deadline);
		if (rc == 0)
		{
			*timed_out = true;
			return false;
		}
		if (rc < 0 || !PQconsumeInput(conn))
			return false;
	}
}

/*
 * The next result of a pipeline, skipping the NULL that ends each command's
 * results.  NULL when the connection broke or, with *timed_out, when the
 * server went quiet for longer than the statement timeout and its grace.
 */
static PGresult *
relay_pipeline_result(RelayPool *pool, PGconn *conn, bool *timed_out)
{
	int64_t		deadline = relay_now_ms() + pool->timeout_ms + RELAY_CLIENT_GRACE_MS;
	int			nulls = 0;

	for (;;)
	{
		int			rc;

		while (!PQisBusy(conn))
		{
			PGresult   *r = PQgetResult(conn);

			if (r != NULL)
				return r;
			/* two in a row: libpq expects nothing more */
			if (++nulls > 1 || PQstatus(conn) != CONNECTION_OK)
				return NULL;
		}
		rc = relay_wait(conn, true, false, deadline);
		if (rc == 0)
			*timed_out = true;
		if (rc <= 0 || !PQconsumeInput(conn))
			return NULL;
	}
}

/*
 * Queues the commands of events from..n-1 and, after a failed event, those
 * that put the transaction back as it was before it.  Each event is
 * SAVEPOINT, its statement, RELEASE, then a sync point: an error makes the
 * server skip what follows up to the next sync point, and leaves the
 * transaction aborted, so every later event fails at its SAVEPOINT and
 * COMMIT, which rides with the last event, never runs after a failure.
 */
static bool
relay_queue_round(PGconn *conn, RelayJob **jobs, int from, int n, bool first,
				  RelayCmd *cmds, int *ncmds)
{
	int			k = 0;
	int			i;
	bool		ok = true;

#define RELAY_PUSH(sent, kind_, job_) \
	do { ok = ok && (sent); cmds[k].kind = (kind_); cmds[k].job = (job_); k++; } while (0)

	if (first)
		RELAY_PUSH(relay_send(conn, RELAY_SQL_BEGIN), RELAY_CMD_CONTROL, -1);
	else
	{
		RELAY_PUSH(relay_send(conn, RELAY_SQL_ROLLBACK_TO), RELAY_CMD_CONTROL, -1);
		RELAY_PUSH(relay_send(conn, RELAY_SQL_RELEASE), RELAY_CMD_CONTROL, -1);
		if (from == n)
		{
			RELAY_PUSH(relay_send(conn, RELAY_SQL_COMMIT), RELAY_CMD_COMMIT, -1);
			RELAY_PUSH(PQpipelineSync(conn) == 1, RELAY_CMD_SYNC, -1);
		}
	}
	for (i = from; i < n; i++)
	{
		RELAY_PUSH(relay_send(conn, RELAY_SQL_SAVEPOINT), RELAY_CMD_EVENT, i);
		RELAY_PUSH(relay_send_query(conn, jobs[i]->query), RELAY_CMD_QUERY, i);
		RELAY_PUSH(relay_send(conn, RELAY_SQL_RELEASE), RELAY_CMD_EVENT, i);
		if (i == n - 1)
			RELAY_PUSH(relay_send(conn, RELAY_SQL_COMMIT), RELAY_CMD_COMMIT, -1);
		RELAY_PUSH(PQpipelineSync(conn) == 1, RELAY_CMD_SYNC, -1);
	}
#undef RELAY_PUSH
	*ncmds = k;
	return ok;
}

/*
 * Several events in one transaction, sent in libpq's pipeline mode: one
 * round trip, plus one for each event that failed on its own.
 */
static void
relay_run_pipelined(RelayPool *pool, RelaySlot *slot, RelayJob **jobs, int n)
{
	PGconn	   *conn = slot->conn;
	RelayCmd   *cmds = malloc(sizeof(RelayCmd) * (size_t) (4 * n + 6));
	RelayOutcome why;
	int			from = 0;
	bool		first = true;
	bool		committed = false;

	if (cmds == NULL || PQenterPipelineMode(conn) != 1)
	{
		free(cmds);
		memset(&why, 0, sizeof(why));
		why.http_status = 503;
		relay_set_message(&why, cmds ? PQerrorMessage(conn) : "out of memory");
		relay_fail_batch(jobs, n, &why);
		return;
	}
	while (!committed)
	{
		bool		timed_out = false;
		PGresult   *bad = NULL;
		int			failed_at = -1;
		int			ncmds;
		int			c;

		if (!relay_queue_round(conn, jobs, from, n, first, cmds, &ncmds) ||
			!relay_flush(conn, relay_now_ms() + pool->timeout_ms + RELAY_CLIENT_GRACE_MS,
						 &timed_out))
		{
			relay_batch_failure(pool, slot, NULL, timed_out, &why);
			break;
		}
		for (c = 0; c < ncmds && bad == NULL; c++)
		{
			PGresult   *r = relay_pipeline_result(pool, conn, &timed_out);
			ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
			bool		failed = st == PGRES_FATAL_ERROR;

			if (r == NULL)
				break;
			switch (cmds[c].kind)
			{
				case RELAY_CMD_QUERY:
					if (failed && failed_at < 0)
					{
						failed_at = cmds[c].job;
						relay_event_failed(jobs[failed_at]->out, r, conn);
					}
					else if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
					{
						relay_event_ran(jobs[cmds[c].job]->out, r);
						r = NULL;
					}
					break;
				case RELAY_CMD_EVENT:
					if (failed && failed_at < 0)
					{
						failed_at = cmds[c].job;
						relay_event_failed(jobs[failed_at]->out, r, conn);
					}
					break;
				case RELAY_CMD_COMMIT:
					/* an aborted transaction "commits" as ROLLBACK: not a commit */
					if (st == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0)
						committed = true;
					else if (failed_at < 0 && st != PGRES_PIPELINE_ABORTED)
						bad = r;
					break;
				case RELAY_CMD_CONTROL:
					if (failed)
						bad = r;
					break;
				case RELAY_CMD_SYNC:
					if (st != PGRES_PIPELINE_SYNC)
						bad = r;
					break;
			}
			if (r != bad)
				PQclear(r);
		}
		if (bad != NULL || c < ncmds || PQstatus(conn) != CONNECTION_OK ||
			(!committed && failed_at < 0))
		{
			relay_batch_failure(pool, slot, bad, timed_out, &why);
			PQclear(bad);
			break;
		}
		from = failed_at + 1;
		first = false;
	}
	free(cmds);
	if (!committed)
		relay_fail_batch(jobs, n, &why);
	else if (PQexitPipelineMode(conn) != 1)
		relay_drop(pool, slot);
}

/* one statement of a batch sent without pipelining: NULL when it broke */
static PGresult *
relay_batch_exec(RelayPool *pool, PGconn *conn, const RelayQuery *q, bool *timed_out)
{
	return relay_exec(conn, q, relay_now_ms() + pool->timeout_ms + RELAY_CLIENT_GRACE_MS,
					  timed_out);
}

static bool
relay_batch_command(RelayPool *pool, PGconn *conn, const char *sql, bool *timed_out,
					PGresult **bad)
{
	RelayQuery	q = {0};
	PGresult   *r;

	q.sql = sql;
	r = relay_batch_exec(pool, conn, &q, timed_out);
	if (r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK &&
		(strcmp(sql, RELAY_SQL_COMMIT) != 0 || strcmp(PQcmdStatus(r), "COMMIT") == 0))
	{
		PQclear(r);
		return true;
	}
	*bad = r;
	return false;
}

/*
 * The same transaction as relay_run_pipelined, one statement at a time:
 * four round trips an event.  Kept for servers or proxies that do not
 * take pipelines, and to measure what pipelining saves.
 */
static void
relay_run_sequential(RelayPool *pool, RelaySlot *slot, RelayJob **jobs, int n)
{
	PGconn	   *conn = slot->conn;
	RelayOutcome why;
	PGresult   *bad = NULL;
	bool		timed_out = false;
	int			i;

	if (!relay_batch_command(pool, conn, RELAY_SQL_BEGIN, &timed_out, &bad))
		goto failed;
	for (i = 0; i < n; i++)
	{
		PGresult   *r;
		ExecStatusType st;

		if (!relay_batch_command(pool, conn, RELAY_SQL_SAVEPOINT, &timed_out, &bad))
			goto failed;
		r = relay_batch_exec(pool, conn, jobs[i]->query, &timed_out);
		if (r == NULL)
			goto failed;
		st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
			relay_event_ran(jobs[i]->out, r);
		else
		{
			relay_event_failed(jobs[i]->out, r, conn);
			PQclear(r);
			if (PQstatus(conn) != CONNECTION_OK ||
				!relay_batch_command(pool, conn, RELAY_SQL_ROLLBACK_TO, &timed_out, &bad))
				goto failed;
		}
		if (!relay_batch_command(pool, conn, RELAY_SQL_RELEASE, &timed_out, &bad))
			goto failed;
	}
	if (relay_batch_command(pool, conn, RELAY_SQL_COMMIT, &timed_out, &bad))
		return;
failed:
	relay_batch_failure(pool, slot, bad, timed_out, &why);
	PQclear(bad);
	relay_fail_batch(jobs, n, &why);
}

/* runs a batch taken from the queue on slot; every job has its outcome after */
static void
relay_run(RelayPool *pool, RelaySlot *slot, RelayJob *batch, int n)
{
	RelayJob   *jobs[RELAY_BATCH_MAX];
	RelayJob   *j;
	int			taken = 0;

	/* the list is what counts; n is what the caller meant to take */
	for (j = batch; j != NULL && taken < RELAY_BATCH_MAX; j = j->next)
		jobs[taken++] = j;
	if (taken == 0)
		return;
	n = taken;
	for (taken = 0; taken < n; taken++)
		jobs[taken]->out->batch = n;
	if (n == 1)
	{
		relay_run_one(pool, slot, jobs[0]);
		return;
	}
	/* the oldest job is first: its deadline is the batch's */
	if (!relay_ensure(pool, slot, jobs[0]->deadline))
	{
		RelayOutcome why = {0};

		why.http_status = 503;
		relay_set_message(&why, "the database is unavailable");
		relay_fail_batch(jobs, n, &why);
		return;
	}
	if (pool->pipeline)
		relay_run_pipelined(pool, slot, jobs, n);
	else
		relay_run_sequential(pool, slot, jobs, n);
}

/* a free slot, marked busy, preferring one that is connected; NULL if none */
static RelaySlot *
relay_free_slot(RelayPool *pool)
{
	RelaySlot  *found = NULL;
	int			i;

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
		found->busy = true;
	return found;
}

/* the head of the queue gets a free slot, if there is one: its turn to lead */
static void
relay_wake_head(RelayPool *pool)
{
	int			i;

	if (pool->head == NULL)
		return;
	for (i = 0; i < pool->size; i++)
	{
		if (!pool->slots[i].busy)
		{
			pthread_cond_signal(&pool->head->wake);
			return;
		}
	}
}

/*
 * Takes up to max jobs off the head of the queue, as a list; returns how
 * many.  A job that waited past its deadline is answered 503 instead, as it
 * would have been had its own thread woken first.
 */
static int
relay_dequeue(RelayPool *pool, int max, RelayJob **batch)
{
	RelayJob  **link = batch;
	int64_t		now = relay_now_ms();
	int			n = 0;

	*batch = NULL;
	while (pool->head != NULL && n < max)
	{
		RelayJob   *j = pool->head;

		pool->head = j->next;
		j->next = NULL;
		j->taken = true;
		if (now >= j->deadline)
		{
			j->out->http_status = 503;
			relay_set_message(j->out, "no database connection became free in time");
			j->done = true;
			pthread_cond_signal(&j->wake);
			continue;
		}
		*link = j;
		link = &j->next;
		n++;
	}
	if (pool->head == NULL)
		pool->tail = NULL;
	return n;
}

static void
relay_unqueue(RelayPool *pool, RelayJob *job)
{
	RelayJob  **p = &pool->head;
	RelayJob   *prev = NULL;

	while (*p != NULL && *p != job)
	{
		prev = *p;
		p = &(*p)->next;
	}
	if (*p == NULL)
		return;
	*p = job->next;
	if (pool->tail == job)
		pool->tail = prev;
}

/*
 * Runs query on a pooled connection: a connection must be had within the
 * timeout, counted from this call (the time the request's body took to
 * arrive is not a wait for a connection), and each statement then has the
 * timeout of its own (statement_timeout).
 *
 * Requests queue; whichever request's thread finds a connection free takes
 * what is queued at that moment, up to the batch size, and runs it as one
 * transaction (or alone, when it is alone).  Nobody waits for a batch to
 * fill: under light load every event commits by itself, as soon as it
 * comes; under load, the events that queued while every connection was
 * busy share one commit, which is what the commit lock of NOTIFY and the
 * WAL flush make expensive.
 */
void
relay_pool_query(RelayPool *pool, const RelayQuery *query, RelayOutcome *out)
{
	RelayJob	job;
	pthread_condattr_t attr;

	memset(out, 0, sizeof(*out));
	memset(&job, 0, sizeof(job));
	job.query = query;
	job.out = out;
	job.deadline = relay_now_ms() + pool->timeout_ms;
	/* deadlines are on the monotonic clock, and so is the wait for a slot */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&job.wake, &attr);
	pthread_condattr_destroy(&attr);

	/*
	 * The job lives on this stack while it is queued: this function returns
	 * only once it is done, and whoever took it off the queue has let go.
	 */
	pthread_mutex_lock(&pool->lock);
	if (pool->tail != NULL)
		pool->tail->next = &job;
	else
		pool->head = &job;	/* cppcheck-suppress autoVariables */
	pool->tail = &job;		/* cppcheck-suppress autoVariables */
	while (!job.done)
	{
		RelaySlot  *slot;
		RelayJob   *batch;
		struct timespec until;

		if (job.taken)
		{
			/* a batch that has it always finishes: its waits have deadlines */
			pthread_cond_wait(&job.wake, &pool->lock);
			continue;
		}
		slot = relay_free_slot(pool);
		if (slot != NULL)
		{
			int			n = relay_dequeue(pool, pool->batch, &batch);
			RelayJob   *j;

			relay_wake_head(pool);
			pthread_mutex_unlock(&pool->lock);
			if (n > 0)
				relay_run(pool, slot, batch, n);
			pthread_mutex_lock(&pool->lock);
			for (j = batch; j != NULL; j = j->next)
			{
				j->done = true;
				pthread_cond_signal(&j->wake);
			}
			slot->busy = false;
			relay_wake_head(pool);
			continue;
		}
		if (relay_now_ms() >= job.deadline)
		{
			relay_unqueue(pool, &job);
			out->http_status = 503;
			relay_set_message(out, "no database connection became free in time");
			break;
		}
		until.tv_sec = job.deadline / 1000;
		until.tv_nsec = (job.deadline % 1000) * 1000000;
		pthread_cond_timedwait(&job.wake, &pool->lock, &until);
	}
	pthread_mutex_unlock(&pool->lock);
	pthread_cond_destroy(&job.wake);
}

/*
 * Asks the server to cancel the statements running on every busy
 * connection, for a relay that stops at once: what they did is rolled back,
 * or was committed, and either is safe, since Stripe resends what was not
 * answered 200 and ingestion is idempotent.  Afterwards no cancel key is
 * freed (the threads that own them go on): call it only before exiting.
 * PQcancel makes a connection of its own and may block on an unreachable
 * server.  Returns how many cancel requests were sent.
 */
int
relay_pool_cancel(RelayPool *pool)
{
	PGcancel  **cancels = calloc((size_t) pool->size, sizeof(PGcancel *));
	int			n = 0;
	int			sent = 0;
	int			i;

	pthread_mutex_lock(&pool->lock);
	pool->cancelling = true;
	for (i = 0; cancels != NULL && i < pool->size; i++)
	{
		if (pool->slots[i].busy && pool->slots[i].cancel != NULL)
			cancels[n++] = pool->slots[i].cancel;
	}
	pthread_mutex_unlock(&pool->lock);
	for (i = 0; i < n; i++)
	{
		char		errbuf[256];

		if (PQcancel(cancels[i], errbuf, (int) sizeof(errbuf)))
			sent++;
	}
	free(cancels);
	return sent;
}

RelayPool *
relay_pool_create(const char *dsn, int size, int timeout_ms, int batch, bool pipeline)
{
	RelayPool  *pool = calloc(1, sizeof(RelayPool));

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
	pool->batch = batch < 1 ? 1 : batch > RELAY_BATCH_MAX ? RELAY_BATCH_MAX : batch;
	pool->pipeline = pipeline;
	snprintf(pool->set_timeout, sizeof(pool->set_timeout),
			 "SET statement_timeout = %d", timeout_ms);
	pthread_mutex_init(&pool->lock, NULL);
	return pool;
}

void
relay_pool_destroy(RelayPool *pool)
{
	int			i;

	if (pool == NULL)
		return;
	for (i = 0; i < pool->size; i++)
		relay_drop(pool, &pool->slots[i]);
	pthread_mutex_destroy(&pool->lock);
	free(pool->slots);
	free(pool->dsn);
	free(pool);
}
