#!/usr/bin/env python3
"""A copy of stripepay's sources that times each step of a first delivery
(stripe_ingest_webhook) and of a payment (stripe_pay).

  instrument.py REPO SCRATCH

Copies REPO's Makefile, control file, sql/ and src/ into SCRATCH and puts
clock_gettime() between the steps of the two functions, and around the
commit of their transactions (an XactCallback).  Each backend that called
one prints a "SPTIME" line on stderr (the server log) when it exits;
breakdown.py adds them up.  Nothing is installed: the benches' BENCH_SO
points one throwaway cluster's catalog at SCRATCH/stripepay.so
(breakdown.sh does it all).

The edits are made at fixed lines of the sources.  When one is no longer
there (the code changed), the script says which and stops: update its anchor
below.  A step costs two reads of the clock, well under a microsecond.
"""
import os
import shutil
import sys

# Every step, in the order of the SPTIME line.  Each SPT(step) adds the time
# since the previous SPT to step.
STEPS = [
    # stripe_ingest_webhook
    "entry", "call_begin", "secrets", "hmac", "decode", "livemode", "seen", "find", "record",
    "update", "flow", "notify", "waiting", "apply_rest", "ingest_rest",
    # stripe_pay
    "pay_args", "pay_call_begin", "pay_lock", "pay_paid", "pay_open", "pay_close", "pay_record",
    "pay_form", "pay_key", "http_setup", "http_perform", "http_rest", "pay_stripe_rest",
    "pay_fields", "pay_session",
    # both
    "end", "fn_cpu", "commit_wall", "commit_cpu",
]

HEADER = """/* added by bench/instrument.py: the time of each step of a call */
#ifndef SP_TTIME_H
#define SP_TTIME_H
#include <time.h>
enum { %s, T_N };
extern double sp_tacc[T_N];
extern double sp_tlast;
extern void sp_tcall_begin(const char *kind);
extern void sp_tcall_end(void);
static inline double
sp_tnow(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}
#define SPT(k) do { double n_ = sp_tnow(); sp_tacc[k] += n_ - sp_tlast; sp_tlast = n_; } while (0)
#endif
""" % ", ".join("T_" + s.upper() for s in STEPS)

SOURCE = r'''/* added by bench/instrument.py: the clocks and their report */
#include "postgres.h"

#include <sys/resource.h>
#include <unistd.h>

#include "access/xact.h"
#include "storage/ipc.h"

#include "sp_ttime.h"

double		sp_tacc[T_N];
double		sp_tlast;
static long sp_tcalls;
static const char *sp_tkind = "?";
static bool sp_tinit;
static bool sp_tin_xact;
static double sp_tpre_wall,
			sp_tpre_cpu,
			sp_tcpu0;

static double
sp_tcpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void
sp_texit(int code, Datum arg)
{
	struct rusage ru;
	char		line[4096];
	int			len;
	int			i;

	(void) code;
	(void) arg;
	if (sp_tcalls == 0)
		return;
	getrusage(RUSAGE_SELF, &ru);
	len = snprintf(line, sizeof(line), "SPTIME kind=%s calls=%ld backend_cpu_us=%.1f", sp_tkind, sp_tcalls,
				   (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	for (i = 0; i < T_N && len < (int) sizeof(line) - 32; i++)
		len += snprintf(line + len, sizeof(line) - len, " t%d=%.1f", i, sp_tacc[i]);
	line[len++] = '\n';
	/* one write: backends that exit together must not interleave their lines */
	if (write(2, line, len) != len)
		return;
}

/* the commit of a transaction that made a call: WAL record, flush, end */
static void
sp_txact(XactEvent event, void *arg)
{
	(void) arg;
	if (!sp_tin_xact)
		return;
	if (event == XACT_EVENT_PRE_COMMIT)
	{
		sp_tpre_wall = sp_tnow();
		sp_tpre_cpu = sp_tcpu();
	}
	else if (event == XACT_EVENT_COMMIT)
	{
		sp_tacc[T_COMMIT_WALL] += sp_tnow() - sp_tpre_wall;
		sp_tacc[T_COMMIT_CPU] += sp_tcpu() - sp_tpre_cpu;
		sp_tin_xact = false;
	}
	else if (event == XACT_EVENT_ABORT)
		sp_tin_xact = false;
}

void
sp_tcall_begin(const char *kind)
{
	if (!sp_tinit)
	{
		on_proc_exit(sp_texit, 0);
		RegisterXactCallback(sp_txact, NULL);
		sp_tinit = true;
	}
	sp_tkind = kind;
	sp_tcalls++;
	sp_tin_xact = true;
	sp_tcpu0 = sp_tcpu();
	sp_tlast = sp_tnow();
}

void
sp_tcall_end(void)
{
	SPT(T_END);
	sp_tacc[T_FN_CPU] += sp_tcpu() - sp_tcpu0;
}
'''

INCLUDE = ('#include "stripepay.h"\n', '#include "stripepay.h"\n#include "sp_ttime.h"\n')

EDITS = {
    "src/sp_webhook.c": [
        INCLUDE,
        ('''static Datum
sp_ingest(FunctionCallInfo fcinfo, const char *payload, size_t len)
{''', '''static Datum
sp_ingest_inner(FunctionCallInfo fcinfo, const char *payload, size_t len);

static Datum
sp_ingest(FunctionCallInfo fcinfo, const char *payload, size_t len)
{
	Datum		d;

	sp_tcall_begin("ingest");
	d = sp_ingest_inner(fcinfo, payload, len);
	sp_tcall_end();
	return d;
}

static Datum
sp_ingest_inner(FunctionCallInfo fcinfo, const char *payload, size_t len)
{'''),
        ('''	sp_raise_signature_error(sig, &header, endpoint);

	sp_call_begin(&call, fcinfo);
	nsecrets = sp_settings_webhook_secrets(endpoint, &secrets);''', '''	sp_raise_signature_error(sig, &header, endpoint);
	SPT(T_ENTRY);

	sp_call_begin(&call, fcinfo);
	SPT(T_CALL_BEGIN);
	nsecrets = sp_settings_webhook_secrets(endpoint, &secrets);
	SPT(T_SECRETS);'''),
        ('''	sp_raise_signature_error(sig, &header, endpoint);

	/* authentic''', '''	sp_raise_signature_error(sig, &header, endpoint);
	SPT(T_HMAC);

	/* authentic'''),
        ('''		sp_raise_event_error(decoded, ev);
	sp_check_livemode(ev, sp_key_mode(call.settings.secret_key));''', '''		sp_raise_event_error(decoded, ev);
	SPT(T_DECODE);
	sp_check_livemode(ev, sp_key_mode(call.settings.secret_key));'''),
        ('''	already = sp_engine_ingest(&ap, ev, payload, len);''', '''	SPT(T_LIVEMODE);
	already = sp_engine_ingest(&ap, ev, payload, len);
	SPT(T_INGEST_REST);'''),
    ],
    "src/sp_engine.c": [
        INCLUDE,
        ('''	sp_stmt_run(&seen_stmt, &id, NULL, SP_AS_OWNER, 1, &rows);
	if (rows.nrows > 0)''', '''	sp_stmt_run(&seen_stmt, &id, NULL, SP_AS_OWNER, 1, &rows);
	SPT(T_SEEN);
	if (rows.nrows > 0)'''),
        ('''		if (sp_engine_find_payment(ev, &row))
		{
			links.has_order = true;
			links.order_id = row.order_id;
			links.payment_id = row.id;
			if (!record_event(ap, ev, payload, len, &links))
				return true;
			sp_engine_apply_payment(ap, ev, &row, &links);''', '''		bool		found = sp_engine_find_payment(ev, &row);

		SPT(T_FIND);
		if (found)
		{
			links.has_order = true;
			links.order_id = row.order_id;
			links.payment_id = row.id;
			if (!record_event(ap, ev, payload, len, &links))
				return true;
			SPT(T_RECORD);
			sp_engine_apply_payment(ap, ev, &row, &links);
			SPT(T_APPLY_REST);'''),
    ],
    "src/sp_apply_payment.c": [
        ('#include "sp_stmt.h"\n', '#include "sp_stmt.h"\n#include "sp_ttime.h"\n'),
        ('''	sp_stmt_run(&update_payment, values, nulls, ap->run_as, 1, &rows);''', '''	SPT(T_APPLY_REST);
	sp_stmt_run(&update_payment, values, nulls, ap->run_as, 1, &rows);
	SPT(T_UPDATE);'''),
        ('''		sp_stmt_run(&payment_flow, values, nulls, ap->run_as, 0, NULL);
	}''', '''		sp_stmt_run(&payment_flow, values, nulls, ap->run_as, 0, NULL);
		SPT(T_FLOW);
	}'''),
        ('''						 "payment_id", row->id, NULL, 0);
''', '''						 "payment_id", row->id, NULL, 0);
	SPT(T_NOTIFY);
'''),
        ('''		sp_engine_apply_waiting(ap, ids, 2, !row->had_intent);
	}
''', '''		sp_engine_apply_waiting(ap, ids, 2, !row->had_intent);
	}
	SPT(T_WAITING);
'''),
    ],
    "src/sp_pay.c": [
        INCLUDE,
        ('''	sp_stripe_call("POST", checkout ? "/v1/checkout/sessions" : "/v1/payment_intents",
				   form, call->settings.secret_key,
				   sp_idempotency_key("pay", psprintf(INT64_FORMAT, payment_id)), &resp);
	sp_stripe_fields(resp.body, resp.body_len, what, paths, lengthof(paths), f);''', '''	SPT(T_PAY_FORM);
	{
		char	   *key = sp_idempotency_key("pay", psprintf(INT64_FORMAT, payment_id));

		SPT(T_PAY_KEY);
		sp_stripe_call("POST", checkout ? "/v1/checkout/sessions" : "/v1/payment_intents",
					   form, call->settings.secret_key, key, &resp);
	}
	SPT(T_PAY_STRIPE_REST);
	sp_stripe_fields(resp.body, resp.body_len, what, paths, lengthof(paths), f);
	SPT(T_PAY_FIELDS);'''),
        ('''Datum
stripepay_stripe_pay(PG_FUNCTION_ARGS)
{''', '''static Datum stripepay_stripe_pay_inner(PG_FUNCTION_ARGS);

Datum
stripepay_stripe_pay(PG_FUNCTION_ARGS)
{
	Datum		d;

	sp_tcall_begin("pay");
	d = stripepay_stripe_pay_inner(fcinfo);
	sp_tcall_end();
	return d;
}

static Datum
stripepay_stripe_pay_inner(PG_FUNCTION_ARGS)
{'''),
        ('''	sp_require_read_committed("stripe_pay");

	sp_call_begin(&call, fcinfo);''', '''	sp_require_read_committed("stripe_pay");
	SPT(T_PAY_ARGS);

	sp_call_begin(&call, fcinfo);'''),
        ('''	sp_lock_int(SP_LOCK_PAY, order_id);
	refuse_if_paid(order_id);
	if (!find_open_payment(order_id, currency, amount, call.settings.payment_flow, &rows))
	{
		sp_close_open_ways_to_pay(call.settings.secret_key, order_id, &open_ways_stmt, &close_stmt,
								  call.run_as, payment_completed);
		payment_id = record_payment(&call, order_id, currency, amount);
		open_at_stripe(&call, checkout, order_id, payment_id, currency, amount, &rows);
	}''', '''	SPT(T_PAY_CALL_BEGIN);
	sp_lock_int(SP_LOCK_PAY, order_id);
	SPT(T_PAY_LOCK);
	refuse_if_paid(order_id);
	SPT(T_PAY_PAID);
	if (!find_open_payment(order_id, currency, amount, call.settings.payment_flow, &rows))
	{
		SPT(T_PAY_OPEN);
		sp_close_open_ways_to_pay(call.settings.secret_key, order_id, &open_ways_stmt, &close_stmt,
								  call.run_as, payment_completed);
		SPT(T_PAY_CLOSE);
		payment_id = record_payment(&call, order_id, currency, amount);
		SPT(T_PAY_RECORD);
		open_at_stripe(&call, checkout, order_id, payment_id, currency, amount, &rows);
		SPT(T_PAY_SESSION);
	}'''),
    ],
    "src/sp_http.c": [
        INCLUDE,
        ('''		sp_prepare(req, t, url);
		rc = sp_perform();''', '''		sp_prepare(req, t, url);
		SPT(T_HTTP_SETUP);
		rc = sp_perform();
		SPT(T_HTTP_PERFORM);'''),
        ('''			MemoryContextDelete(reqcxt);
			pfree(url);
			return;''', '''			MemoryContextDelete(reqcxt);
			pfree(url);
			SPT(T_HTTP_REST);
			return;'''),
    ],
}


def main(repo, scratch):
    so = os.path.join(os.path.abspath(scratch), "stripepay.so")
    for name in ("Makefile", "stripepay.control"):
        shutil.copy(os.path.join(repo, name), scratch)
    for name in ("src", "sql"):
        shutil.copytree(os.path.join(repo, name), os.path.join(scratch, name), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.o", "*.bc", "*.so", "stripepay-relay"))
    with open(os.path.join(scratch, "src", "sp_ttime.h"), "w") as f:
        f.write(HEADER)
    with open(os.path.join(scratch, "src", "sp_ttime.c"), "w") as f:
        f.write(SOURCE)
    edits = dict(EDITS)
    # the notifier too: its worker must load this build, not the installed one
    edits["src/sp_notify.c"] = [
        ('snprintf(worker.bgw_library_name, BGW_MAXLEN, "stripepay");',
         'snprintf(worker.bgw_library_name, BGW_MAXLEN, "%s");' % so)]
    for path, changes in edits.items():
        full = os.path.join(scratch, path)
        with open(full) as f:
            text = f.read()
        for anchor, replacement in changes:
            if text.count(anchor) != 1:
                sys.exit(f"instrument.py: {path} no longer has this exactly once:\n{anchor}")
            text = text.replace(anchor, replacement)
        with open(full, "w") as f:
            f.write(text)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
