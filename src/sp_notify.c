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

#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "sp_notify.h"
#include "sp_stmt.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_notify);
PGDLLEXPORT void stripepay_notifier_main(Datum main_arg);

#define NOTIFIER_TYPE "stripepay notifier"
#define NOTIFIER_BATCH 1000
#define NOTIFIER_POLL_MS 1000L
#define NOTIFIER_IDLE_EXIT_MS 10000L
/*
 * After sending, the notifier lets this long pass before it looks again, so
 * that under load one transaction sends what many ingests committed instead
 * of one or two each.  A lone notification is sent at once.
 */
#define NOTIFIER_GATHER_MS 5L
#define NOTIFIER_START_WAIT_MS 1000

/*
 * The lock that keeps one notifier per database: an advisory lock tag whose
 * last field SQL's pg_advisory_lock() never uses (it uses 1 and 2), so no
 * session can take it and stand in for a notifier.
 */
#define NOTIFIER_LOCK_KEY1 0x73747269	/* "stri" */
#define NOTIFIER_LOCK_KEY2 0x70657061	/* "pepa" */
#define NOTIFIER_LOCK_KIND 0x5350		/* "SP" */
#define NOTIFIER_START_LOCK_KIND 0x5351	/* taken by a session starting one */

/* what Async_Notify accepts (async.c's NOTIFY_PAYLOAD_MAX_LENGTH) */
#define NOTIFY_PAYLOAD_LIMIT (BLCKSZ - NAMEDATALEN - 128)

/* this backend's idea of its database's notifier */
static int	notifier_pid = 0;
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

static SpStmt outbox_stmt = {
	.sql = "INSERT INTO stripepay.notify_outbox (id, channel, payload) VALUES ($1, $2, $3)",
	.nargs = 3, .argtypes = {INT8OID, TEXTOID, TEXTOID}
};

/* the oldest first, through the primary key; then a TID scan */
static SpStmt drain_stmt = {
	.sql = "DELETE FROM stripepay.notify_outbox"
	" WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
	"  SELECT ctid FROM stripepay.notify_outbox ORDER BY id LIMIT "
	CppAsString2(NOTIFIER_BATCH) "))"
	" RETURNING id, channel, payload"
};

static bool
start_notifier(pid_t *pid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle = NULL;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/*
	 * Never restarted by the postmaster: a restart would find whatever
	 * then bears the outbox's name.  The next commit that queues a
	 * notification starts a notifier again.
	 */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "stripepay");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "stripepay_notifier_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, NOTIFIER_TYPE " for database %u", MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, NOTIFIER_TYPE);
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = pid ? MyProcPid : 0;

	/* without a handle, nothing is allocated: safe in a commit callback */
	if (!RegisterDynamicBackgroundWorker(&worker, pid ? &handle : NULL))
		return false;
	if (pid == NULL)
		return true;
	return WaitForBackgroundWorkerStartup(handle, pid) == BGWH_STARTED;
}

static void
notifier_locktag(LOCKTAG *tag)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, NOTIFIER_LOCK_KEY1, NOTIFIER_LOCK_KEY2,
						 NOTIFIER_LOCK_KIND);
}

/*
 * Whether a notifier holds the lock.  A notifier leaving releases it before
 * its last drain, so one that still holds it will see what we committed.
 */
static bool
notifier_holds_lock(void)
{
	LOCKTAG		tag;

	/*
	 * Runs after commit, where an error would be a PANIC: a full lock table
	 * answers "not available" here instead of raising, and then a notifier
	 * is assumed (the rows wait for one at worst).
	 */
	notifier_locktag(&tag);
	if (SP_LOCK_ACQUIRE_NOWAIT(&tag, ExclusiveLock, true) == LOCKACQUIRE_NOT_AVAIL)
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
	if (event == XACT_EVENT_PRE_PREPARE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot PREPARE a transaction that has queued stripepay notifications"),
				 errhint("As with NOTIFY: commit it directly, or set stripepay.notify to off.")));
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
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

/* The pid of this database's notifier, from a fresh look at the backends; 0 if none. */
static int
find_notifier(void)
{
	int			n;
	int			i;

	pgstat_clear_backend_activity_snapshot();
	n = pgstat_fetch_stat_numbackends();
	for (i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = SP_LOCAL_BACKEND_STATUS(i);
		PgBackendStatus *be = local ? &local->backendStatus : NULL;
		const char *type;

		if (be == NULL || be->st_backendType != B_BG_WORKER || be->st_databaseid != MyDatabaseId)
			continue;
		type = GetBackgroundWorkerTypeByPid(be->st_procpid);
		if (type != NULL && strcmp(type, NOTIFIER_TYPE) == 0)
			return be->st_procpid;
	}
	return 0;
}

/* Whether this database has a notifier (starting one if need be). */
static bool
notifier_available(void)
{
	LOCKTAG		tag;
	pid_t		pid;
	bool		found;
	int			waited;

	if (notifier_pid != 0 && BackendPidGetProc(notifier_pid) != NULL)
		return true;

	/*
	 * One starter at a time, and a notifier counts once it holds its lock:
	 * a worker is running well before that, and one that cannot take the
	 * lock leaves.  Sessions that find none together wait here for the
	 * first one's, instead of each starting its own.  No other lock is
	 * taken while this one is held, and an error releases it.
	 */
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, NOTIFIER_LOCK_KEY1, NOTIFIER_LOCK_KEY2,
						 NOTIFIER_START_LOCK_KIND);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	found = notifier_holds_lock();
	if (!found && start_notifier(&pid))
	{
		for (waited = 0; waited < NOTIFIER_START_WAIT_MS; waited++)
		{
			if ((found = notifier_holds_lock()))
				break;
			CHECK_FOR_INTERRUPTS();
			pg_usleep(1000L);
		}
	}
	/* for the wake-up at commit; without it the notifier polls each second */
	notifier_pid = found ? find_notifier() : 0;
	LockRelease(&tag, ExclusiveLock, false);
	return found;
}

void
sp_notify_send(const char *channel, const char *payload, Oid run_as)
{
	Datum		values[3];

	if (!sp_notify)
		return;

	/* refused here, as NOTIFY would, rather than stalling the notifier */
	if (strlen(channel) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("channel name too long")));
	if (strlen(payload) >= NOTIFY_PAYLOAD_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payload string too long")));

	if (!sp_notify_worker || !notifier_available())
	{
		Async_Notify(channel, payload);
		return;
	}

	values[0] = Int64GetDatum(sp_next_id("notify_outbox_id_seq"));
	values[1] = CStringGetTextDatum(channel);
	values[2] = CStringGetTextDatum(payload);
	sp_stmt_run(&outbox_stmt, values, NULL, run_as, 0, NULL);

	if (!xact_callback_registered)
	{
		RegisterXactCallback(notify_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

/*
 * stripepay._notify(channel, payload): a notification through the same
 * path, for the notifier's tests; superusers only.
 */
Datum
stripepay_notify(PG_FUNCTION_ARGS)
{
	sp_notify_send(text_to_cstring(PG_GETARG_TEXT_PP(0)), text_to_cstring(PG_GETARG_TEXT_PP(1)),
				   GetUserId());
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

/*
 * Whether stripepay.notify_outbox is the extension's own, with no trigger
 * and no rule: the worker deletes from it as a superuser, and a table that
 * someone made under that name after the extension was dropped, or a
 * trigger on it, would run their code with those rights.  The lock taken
 * is held to the end of the transaction, so the table checked is the table
 * drained.
 */
static bool
outbox_is_ours(void)
{
	Oid			ext = get_extension_oid("stripepay", true);
	Oid			schema = get_namespace_oid("stripepay", true);
	Oid			relid;
	Relation	rel;
	bool		ours;

	if (!OidIsValid(ext) || !OidIsValid(schema))
		return false;
	relid = get_relname_relid("notify_outbox", schema);
	if (!OidIsValid(relid) || getExtensionOfObject(RelationRelationId, relid) != ext)
		return false;
	rel = table_open(relid, AccessShareLock);
	ours = rel->trigdesc == NULL && rel->rd_rules == NULL;
	table_close(rel, NoLock);
	return ours;
}

/*
 * Sends one batch of committed notifications, in outbox order; returns how
 * many, or -1 when the outbox is not stripepay's (anymore).
 */
static int64
drain_outbox(void)
{
	SpRows		rows;
	int			i;
	Outgoing   *out;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!outbox_is_ours())
	{
		CommitTransactionCommand();
		return -1;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "sending notifications");

	sp_stmt_run(&drain_stmt, NULL, NULL, SP_AS_OWNER, NOTIFIER_BATCH, &rows);
	out = palloc(sizeof(Outgoing) * (rows.nrows ? rows.nrows : 1));
	for (i = 0; i < rows.nrows; i++)
	{
		out[i].id = sp_rows_int64(&rows, i, 1, NULL);
		out[i].channel = sp_rows_text(&rows, i, 2);
		out[i].payload = sp_rows_text(&rows, i, 3);
	}
	qsort(out, rows.nrows, sizeof(Outgoing), outgoing_cmp);
	for (i = 0; i < rows.nrows; i++)
		Async_Notify(out[i].channel, out[i].payload);

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return rows.nrows;
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


/*
 * The worker runs as the bootstrap superuser, with settings that neither the
 * database's nor a role's defaults can change: its statements name nothing
 * that a search_path could redirect, and no timeout or isolation level is
 * imposed on it.
 */
static void
notifier_settings(void)
{
	static const char *const settings[][2] = {
		{"search_path", "pg_catalog, pg_temp"},
		/* a notification does not outlive a crash: no need to wait for a flush */
		{"synchronous_commit", "off"},
		{"default_transaction_isolation", "read committed"},
		{"default_transaction_read_only", "off"},
		{"statement_timeout", "0"},
		{"lock_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
		/*
		 * The drain's plan is made once, usually while the outbox is nearly
		 * empty, when a sequential scan looks cheapest; but between two
		 * vacuums the outbox's heap fills with deleted rows, and a scan of it
		 * would cost more with every notification sent.  The primary key and
		 * the row addresses it gives reach only the rows to send.
		 */
		{"enable_seqscan", "off"},
	};
	size_t		i;

	for (i = 0; i < lengthof(settings); i++)
		SetConfigOption(settings[i][0], settings[i][1], PGC_SUSET, PGC_S_OVERRIDE);
}

void
stripepay_notifier_main(Datum main_arg)
{
	long		idle_ms = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), InvalidOid, 0);
	notifier_settings();

	/* another notifier serves this database already */
	if (!take_notifier_lock())
		proc_exit(0);

	for (;;)
	{
		int			rc;
		int64		sent;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			notifier_settings();
		}
		/* reset before looking: a commit after this sets it again */
		ResetLatch(MyLatch);
		sent = drain_outbox();
		if (sent < 0)
			proc_exit(0);		/* the extension was dropped, or its outbox is not its own */
		if (sent > 0)
			idle_ms = 0;
		if (sent == NOTIFIER_BATCH)
			continue;
		if (sent > 0)
		{
			/*
			 * Committing backends set the latch meanwhile; it is not waited
			 * on here, so they need not wake this process each time.  A
			 * SIGTERM is seen when the wait ends.
			 */
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 NOTIFIER_GATHER_MS, PG_WAIT_EXTENSION);
			continue;
		}
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   NOTIFIER_POLL_MS, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
			idle_ms = 0;
		else if ((idle_ms += NOTIFIER_POLL_MS) >= NOTIFIER_IDLE_EXIT_MS)
		{
			/*
			 * Leave: release the lock first, then drain until empty.  A
			 * backend that commits a notification after the release finds
			 * the lock free and starts a new notifier; what was committed
			 * before it is sent here.
			 */
			release_notifier_lock();
			while (drain_outbox() == NOTIFIER_BATCH)
				;
			proc_exit(0);
		}
	}
}
