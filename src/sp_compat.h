/*-------------------------------------------------------------------------
 *
 * sp_compat.h
 *		The few places where PostgreSQL's server API differs between the
 *		majors stripepay supports (15, 17, 18).  Each guard names the change.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_COMPAT_H
#define SP_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "stripepay needs PostgreSQL 15 or later"
#endif

/*
 * 18 replaced the postfix pg_attribute_noreturn() with a prefix
 * pg_noreturn; GCC and Clang take the attribute in front on every major.
 */
#ifndef pg_noreturn
#define pg_noreturn __attribute__((noreturn))
#endif

/* 18 dropped ExecutorRun's execute_once argument */
#if PG_VERSION_NUM >= 180000
#define SP_EXECUTOR_RUN(qd) ExecutorRun((qd), ForwardScanDirection, 0)
#else
#define SP_EXECUTOR_RUN(qd) ExecutorRun((qd), ForwardScanDirection, 0, true)
#endif

/* 16 renamed pgstat_fetch_stat_local_beentry (the index is 1-based in both) */
#if PG_VERSION_NUM >= 160000
#define SP_LOCAL_BACKEND_STATUS(i) pgstat_get_local_beentry_by_index(i)
#else
#define SP_LOCAL_BACKEND_STATUS(i) pgstat_fetch_stat_local_beentry(i)
#endif

/* 18 added LockAcquireExtended's logLockFailure argument */
#if PG_VERSION_NUM >= 180000
#define SP_LOCK_ACQUIRE_NOWAIT(tag, mode, session) \
	LockAcquireExtended((tag), (mode), (session), true, false, NULL, false)
#else
#define SP_LOCK_ACQUIRE_NOWAIT(tag, mode, session) \
	LockAcquireExtended((tag), (mode), (session), true, false, NULL)
#endif

/*
 * 16 split role membership into INHERIT and SET options: a role the caller
 * may SET ROLE to is one it could act as anyway.
 */
#if PG_VERSION_NUM >= 160000
#define SP_MAY_SET_ROLE(member, role) member_can_set_role((member), (role))
#else
#define SP_MAY_SET_ROLE(member, role) is_member_of_role((member), (role))
#endif

#endif							/* SP_COMPAT_H */
