/*-------------------------------------------------------------------------
 *
 * sp_lock.c
 *		Advisory lock tags of the extension's own, out of SQL's reach.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"

#include "sp_lock.h"

static void
sp_lock_key(SpLockKind kind, uint64 key)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key, (uint16) kind);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

void
sp_lock(SpLockKind kind, const char *key)
{
	sp_lock_key(kind, hash_bytes_extended((const unsigned char *) key, (int) strlen(key), 0));
}

void
sp_lock_int(SpLockKind kind, int64 key)
{
	sp_lock_key(kind, (uint64) key);
}

static int
compare_ids(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

void
sp_lock_ids(const char *const *ids, int nids)
{
	const char **sorted = palloc(sizeof(char *) * (nids > 0 ? nids : 1));
	int			n = 0;
	int			i;

	for (i = 0; i < nids; i++)
		if (ids[i] != NULL && ids[i][0] != '\0')
			sorted[n++] = ids[i];
	qsort(sorted, n, sizeof(char *), compare_ids);
	for (i = 0; i < n; i++)
		if (i == 0 || strcmp(sorted[i], sorted[i - 1]) != 0)
			sp_lock(SP_LOCK_WAIT, sorted[i]);
	pfree(sorted);
}
