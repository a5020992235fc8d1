/*-------------------------------------------------------------------------
 *
 * sp_call.c
 *		Entering and leaving a stripepay function: the owner's rights for
 *		stripepay's own statements, the run-as role for the user's code.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "sp_call.h"
#include "stripepay.h"

/* The owner of the function being called, looked up once per call site. */
static Oid
function_owner(FunctionCallInfo fcinfo)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;
	HeapTuple	tuple;
	Oid			owner;

	if (flinfo->fn_extra != NULL)
		return *(Oid *) flinfo->fn_extra;
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(flinfo->fn_oid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "stripepay: cache lookup failed for function %u", flinfo->fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	ReleaseSysCache(tuple);
	flinfo->fn_extra = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(Oid));
	*(Oid *) flinfo->fn_extra = owner;
	return owner;
}

void
sp_call_begin_unchecked(SpCall *call, FunctionCallInfo fcinfo)
{
	GetUserIdAndSecContext(&call->saved_user, &call->saved_sec);
	call->caller = call->saved_user;

	/*
	 * The owner's rights, as SECURITY DEFINER would lend them: SET ROLE
	 * cannot undo this context, and an ERROR leaves it with the
	 * (sub)transaction that raised it.
	 */
	SetUserIdAndSecContext(function_owner(fcinfo), call->saved_sec | SECURITY_LOCAL_USERID_CHANGE);

	sp_settings_check_version();
	sp_settings_load(&call->settings);
	call->run_as = call->caller;
}

void
sp_call_begin(SpCall *call, FunctionCallInfo fcinfo)
{
	Oid			role;

	sp_call_begin_unchecked(call, fcinfo);
	if (call->settings.unrestored_triggers > 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_TRIGGERS_NOT_RESTORED),
				 errmsg("%lld triggers on stripepay's tables are recorded but not made yet",
						(long long) call->settings.unrestored_triggers),
				 errdetail("A restore brought them as rows of stripepay.user_trigger; "
						   "stripepay applies no event without the triggers that act on it."),
				 errhint("A superuser must run SELECT * FROM stripepay.restore_user_triggers().")));
	role = call->settings.flow_role;
	if (!OidIsValid(role))
	{
		/* the calling role runs the user's triggers: never a superuser */
		if (call->settings.user_triggers && superuser_arg(call->caller))
			ereport(ERROR,
					(errcode(ERRCODE_SP_NOT_CONFIGURED),
					 errmsg("stripepay has no flow role, and \"%s\" is a superuser",
							GetUserNameFromId(call->caller, false)),
					 errdetail("Without a flow role, the triggers on stripepay's tables run as the calling role."),
					 errhint("An admin must run SELECT stripepay.configure(flow_role => '<role>').")));
		return;
	}
	if (call->settings.flow_role_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_CONFIGURED),
				 errmsg("the flow role of stripepay (oid %u) no longer exists", role),
				 errhint("An admin must run SELECT stripepay.configure(flow_role => '<role>').")));
	/* it may have become one since it was configured */
	if (superuser_arg(role))
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_CONFIGURED),
				 errmsg("the flow role of stripepay, \"%s\", is a superuser", call->settings.flow_role_name),
				 errdetail("User triggers would run as a superuser."),
				 errhint("Name a role that is not a superuser: SELECT stripepay.configure(flow_role => '<role>').")));
	call->run_as = role;
}

void
sp_call_end(SpCall *call)
{
	SetUserIdAndSecContext(call->saved_user, call->saved_sec);
}

Datum
sp_call_caller_name(const SpCall *call)
{
	/* a C string is not a name: a name parameter is read NAMEDATALEN bytes long */
	return DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(call->caller, false)));
}

void
sp_call_check_owner(const SpCall *call, const char *created_by, const char *did,
					const char *action, int64 id)
{
	Oid			admin = get_role_oid("stripepay_admin", true);

	if (!superuser_arg(call->caller) &&
		!(OidIsValid(admin) && has_privs_of_role(call->caller, admin)) &&
		strcmp(created_by, GetUserNameFromId(call->caller, false)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s " INT64_FORMAT, action, id),
				 errdetail("Only the role that %s (%s) or a member of stripepay_admin may.",
						   did, created_by)));
}
