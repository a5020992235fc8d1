/*-------------------------------------------------------------------------
 *
 * fuzz_event.c
 *		libFuzzer target: Stripe event decoding
 *
 * Any bytes go to sp_event_decode.  Beyond "no crash, no leak" (ASan and
 * LeakSanitizer), the result must be one of the enum's values, and a
 * successful decode must leave every string terminated inside its buffer
 * with the required envelope fields filled in.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_event.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_terminated(const char *s, size_t size)
{
	if (memchr(s, '\0', size) == NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static SpEvent ev;
	SpEventResult r = sp_event_decode((const char *) data, size, &ev);
	int			i;

	if (r < SP_EVENT_OK || r > SP_EVENT_NO_MEMORY)
		abort();
	check_terminated(ev.error_path, sizeof(ev.error_path));
	if (r != SP_EVENT_OK)
	{
		if (ev.id[0] != '\0' || ev.object_type[0] != '\0')
			abort();
		return 0;
	}
	if (strncmp(ev.id, "evt_", 4) != 0 || ev.type[0] == '\0' ||
		ev.object_type[0] == '\0' || ev.created < 0)
		abort();
	check_terminated(ev.id, sizeof(ev.id));
	check_terminated(ev.type, sizeof(ev.type));
	check_terminated(ev.object_id, sizeof(ev.object_id));
	check_terminated(ev.metadata_order_id, sizeof(ev.metadata_order_id));
	check_terminated(ev.last_payment_error_message,
					 sizeof(ev.last_payment_error_message));
	if (ev.nrefunds < 0 || ev.nrefunds > SP_EVENT_MAX_REFUNDS)
		abort();
	for (i = 0; i < ev.nrefunds; i++)
		check_terminated(ev.refunds[i].id, sizeof(ev.refunds[i].id));
	if ((ev.has_amount && ev.amount < 0) ||
		(ev.has_period_end && ev.period_end < 0))
		abort();
	return 0;
}
