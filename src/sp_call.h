/*-------------------------------------------------------------------------
 *
 * sp_call.h
 *		Whose rights each part of a call runs with.
 *
 * stripepay's SQL functions are declared SECURITY INVOKER, so that
 * Postgres checks EXECUTE against the caller and stripepay knows exactly
 * which role called (also from inside another SECURITY DEFINER function).
 * Each entry point then borrows the rights of the function's owner, the
 * extension's owner, for its own statements, in the security context
 * SECURITY DEFINER uses: stripepay's tables are readable and writable by
 * that owner alone, and the secret key must be read to call Stripe.  What
 * a user wrote (triggers, and all they set off) runs as the run-as role
 * instead (sp_stmt.h): the flow role an admin configured, or else the
 * calling role.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_CALL_H
#define SP_CALL_H

#include "postgres.h"

#include "fmgr.h"

#include "sp_settings.h"

typedef struct SpCall
{
	Oid			caller;			/* who called: checks, created_by */
	Oid			run_as;			/* who user code runs as */
	Oid			saved_user;
	int			saved_sec;
	SpSettings	settings;		/* loaded by sp_call_begin */
} SpCall;

/*
 * Enters a stripepay function: checks that the installed SQL objects are of
 * this library's version, loads the settings, takes the owner's rights and
 * decides the run-as role.
 */
extern void sp_call_begin(SpCall *call, FunctionCallInfo fcinfo);

/*
 * The same, for the functions that set or show the settings: a flow role
 * that was dropped, or became a superuser, is not refused, and the call's
 * own writes run as the caller.
 */
extern void sp_call_begin_unchecked(SpCall *call, FunctionCallInfo fcinfo);

/* Back to the caller's rights (an ERROR restores them by itself). */
extern void sp_call_end(SpCall *call);

/* The caller's name as a name Datum, for created_by. */
extern Datum sp_call_caller_name(const SpCall *call);

/*
 * ERROR (42501) unless the caller is created_by (the role that made the
 * row, which `did`), a member of stripepay_admin, or a superuser.
 */
extern void sp_call_check_owner(const SpCall *call, const char *created_by, const char *did,
								const char *action, int64 id);

#endif							/* SP_CALL_H */
