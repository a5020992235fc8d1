/*-------------------------------------------------------------------------
 *
 * sp_notify.c
 *		Notifications that never make an ingest wait for another one.
 *
 * Postgres serializes every committing transaction that has sent a NOTIFY:
 * PreCommit_Notify takes one database-wide lock and holds it through the
 * commit's WAL flush, so notifying transactions cannot share a flush and
 * an ingest that notifies directly runs at the speed of one fsync at a
 * time.  Instead, an ingest appends its notifications to an unlogged outbox
 * (no WAL, no lock), and after its commit wakes this database's notifier, a
 * background worker that sends whatever has been committed to the outbox,
 * many notifications per transaction, and so per lock and flush.
 *
 * Listeners see the same channels and payloads, still only for committed
 * ingests (the worker reads only committed rows), each once (it deletes
 * what it sends in the transaction that sends it), a few milliseconds
 * later.  Like NOTIFY itself, the outbox does not survive a crash.
 *
 * The worker is started on demand, one per database (a session advisory
 * lock keeps it unique), and leaves after some idle seconds, so that it
 * does not stand in the way of DROP DATABASE for long.  When no worker can
 * be started (max_worker_processes reached), or stripepay.notify_worker is
 * off, the ingest sends its NOTIFY itself, as before.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"

#include "sp_notify.h"
#include "sp_store.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_notify);
PGDLLEXPORT void stripepay_notifier_main(Datum main_arg);

#define NOTIFIER_TYPE "stripepay notifier"
#define NOTIFIER_BATCH 1000
#define NOTIFIER_POLL_MS 1000L
#define NOTIFIER_IDLE_EXIT_MS 10000L

/* the advisory lock that keeps one notifier per database: "stripe", 1 */
#define NOTIFIER_LOCK_KEY1 0x73747269
#define NOTIFIER_LOCK_KEY2 1

/* this backend's idea of its database's notifier */
static int	notifier_pid = 0;
static bool wake_at_commit = false;
static bool xact_callback_registered = false;
static SPIPlanPtr outbox_plan = NULL;
static SPIPlanPtr find_plan = NULL;
static SPIPlanPtr drain_plan = NULL;

static bool
start_notifier(pid_t *pid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "stripepay");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "stripepay_notifier_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, NOTIFIER_TYPE " for database %u", MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, NOTIFIER_TYPE);
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = pid ? MyProcPid : 0;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return false;
	if (pid == NULL)
		return true;
	return WaitForBackgroundWorkerStartup(handle, pid) == BGWH_STARTED;
}

static void
notifier_locktag(LOCKTAG *tag)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, NOTIFIER_LOCK_KEY1, NOTIFIER_LOCK_KEY2, 2);
}

/*
 * Whether a notifier holds the lock.  A notifier leaving releases it before
 * its last drain, so one that still holds it will see what we committed.
 */
static bool
notifier_holds_lock(void)
{
	LOCKTAG		tag;

	notifier_locktag(&tag);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, ExclusiveLock, true);
	return false;
}

static void
notify_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	PGPROC	   *proc;

	if (!wake_at_commit)
		return;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		/* a prepared transaction's notifications wait for the next poll */
		wake_at_commit = false;
		return;
	}
	if (event != XACT_EVENT_COMMIT)
		return;
	wake_at_commit = false;

	if (!notifier_holds_lock())
	{
		/*
		 * It left since we looked.  What we committed waits in the outbox
		 * for a new one, which drains it as it starts.
		 */
		notifier_pid = 0;
		(void) start_notifier(NULL);
		return;
	}
	/* a notifier we do not know of polls the outbox every second */
	proc = notifier_pid ? BackendPidGetProc(notifier_pid) : NULL;
	if (proc != NULL)
		SetLatch(&proc->procLatch);
}

/* Whether this database has a notifier (starting one if need be). */
static bool
notifier_available(void)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	bool		isnull;
	pid_t		pid;

	if (notifier_pid != 0 && BackendPidGetProc(notifier_pid) != NULL)
		return true;

	sp_keep_plan(&find_plan, "SELECT pid FROM pg_catalog.pg_stat_activity"
				 " WHERE backend_type = '" NOTIFIER_TYPE "' AND datid = $1"
				 " ORDER BY backend_start LIMIT 1", 1, argtypes);
	values[0] = ObjectIdGetDatum(MyDatabaseId);
	if (SPI_execute_plan(find_plan, values, NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		notifier_pid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull));
		if (BackendPidGetProc(notifier_pid) != NULL)
			return true;
	}
	notifier_pid = 0;
	if (!start_notifier(&pid))
		return false;
	notifier_pid = pid;
	return true;
}

void
sp_notify_send(const char *channel, const char *payload)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	if (!sp_notify)
		return;

	SPI_connect();
	if (!sp_notify_worker || !notifier_available())
	{
		SPI_finish();
		Async_Notify(channel, payload);
		return;
	}

	sp_keep_plan(&outbox_plan, "INSERT INTO stripepay.notify_outbox (channel, payload)"
				 " VALUES ($1, $2)", 2, argtypes);
	values[0] = CStringGetTextDatum(channel);
	values[1] = CStringGetTextDatum(payload);
	if (SPI_execute_plan(outbox_plan, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "stripepay: could not queue a notification");
	SPI_finish();

	if (!xact_callback_registered)
	{
		RegisterXactCallback(notify_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

/* stripepay._notify(channel, payload jsonb), for the SQL apply functions */
Datum
stripepay_notify(PG_FUNCTION_ARGS)
{
	Jsonb	   *payload = PG_GETARG_JSONB_P(1);
	char	   *channel = text_to_cstring(PG_GETARG_TEXT_PP(0));

	sp_notify_send(channel, JsonbToCString(NULL, &payload->root, VARSIZE(payload)));
	PG_RETURN_VOID();
}

/* --- the worker ------------------------------------------------------------ */

typedef struct Outgoing
{
	int64		id;
	char	   *channel;
	char	   *payload;
} Outgoing;

static int
outgoing_cmp(const void *a, const void *b)
{
	int64		x = ((const Outgoing *) a)->id;
	int64		y = ((const Outgoing *) b)->id;

	return x < y ? -1 : x > y;
}

/* Sends one batch of committed notifications, in outbox order. */
static uint64
drain_outbox(void)
{
	uint64		n;
	uint64		i;
	Outgoing   *out;
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "sending notifications");

	/* a TID scan: no sort, no join, whatever the outbox's size */
	sp_keep_plan(&drain_plan, "DELETE FROM stripepay.notify_outbox WHERE ctid = ANY (ARRAY("
				 "  SELECT ctid FROM stripepay.notify_outbox LIMIT "
				 CppAsString2(NOTIFIER_BATCH) "))"
				 " RETURNING id, channel, payload", 0, NULL);
	if (SPI_execute_plan(drain_plan, NULL, NULL, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "stripepay notifier: could not read the outbox");
	n = SPI_processed;
	out = palloc(sizeof(Outgoing) * (n ? n : 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];

		out[i].id = DatumGetInt64(SPI_getbinval(t, SPI_tuptable->tupdesc, 1, &isnull));
		out[i].channel = SPI_getvalue(t, SPI_tuptable->tupdesc, 2);
		out[i].payload = SPI_getvalue(t, SPI_tuptable->tupdesc, 3);
	}
	qsort(out, n, sizeof(Outgoing), outgoing_cmp);
	for (i = 0; i < n; i++)
		Async_Notify(out[i].channel, out[i].payload);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

static bool
take_notifier_lock(void)
{
	LOCKTAG		tag;
	bool		taken;

	StartTransactionCommand();
	notifier_locktag(&tag);
	taken = LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
	CommitTransactionCommand();
	return taken;
}

static void
release_notifier_lock(void)
{
	LOCKTAG		tag;

	notifier_locktag(&tag);
	LockRelease(&tag, ExclusiveLock, true);
}

void
stripepay_notifier_main(Datum main_arg)
{
	long		idle_ms = 0;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), InvalidOid, 0);

	/*
	 * A notification does not outlive a crash anyway, so its sending
	 * transaction need not wait for a WAL flush, nor hold the notify lock
	 * through one.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/* another notifier serves this database already */
	if (!take_notifier_lock())
		proc_exit(0);

	for (;;)
	{
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (drain_outbox() == NOTIFIER_BATCH)
		{
			idle_ms = 0;
			continue;
		}
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   NOTIFIER_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (rc & WL_LATCH_SET)
			idle_ms = 0;
		else if ((idle_ms += NOTIFIER_POLL_MS) >= NOTIFIER_IDLE_EXIT_MS)
		{
			/*
			 * Leave: release the lock first, then drain.  A backend that
			 * commits a notification after the release finds the lock free
			 * and starts a new notifier; one that committed before it is
			 * drained here.
			 */
			release_notifier_lock();
			(void) drain_outbox();
			proc_exit(0);
		}
	}
}
