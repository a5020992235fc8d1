/*-------------------------------------------------------------------------
 *
 * test_main.c
 *		Runs every unit suite of the pure modules in one binary
 *
 * One binary, so one closing "unit: N passed, M failed" line.
 *
 *-------------------------------------------------------------------------
 */
#define UNIT_IMPLEMENTATION
#include "unit.h"

int
main(void)
{
	unit_suite_form();
	unit_suite_money();
	unit_suite_json();
	unit_suite_jtok();
	unit_suite_retry();
	unit_suite_signature();
	unit_suite_event();
	unit_suite_rules();
	return unit_finish();
}
