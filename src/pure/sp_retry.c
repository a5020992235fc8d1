/*-------------------------------------------------------------------------
 *
 * sp_retry.c
 *		Retry policy for Stripe requests, after stripe-python's
 *		_should_retry and _sleep_time_seconds.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sp_retry.h"

bool
sp_retry_wanted(long status, const char *should_retry_header)
{
	/* Stripe's own verdict wins over any rule of ours */
	if (should_retry_header != NULL && should_retry_header[0] != '\0')
	{
		if (strcasecmp(should_retry_header, "true") == 0)
			return true;
		if (strcasecmp(should_retry_header, "false") == 0)
			return false;
	}

	if (status == 0)
		return true;			/* connection error or timeout */
	if (status == 409)
		return true;			/* lock contention on the object */
	if (status == 429)
		return true;
	return status >= 500;
}

/* Retry-After as delta-seconds; an HTTP-date is not sent by Stripe. */
static long
parse_retry_after_ms(const char *value)
{
	char	   *end;
	double		seconds;

	if (value == NULL || value[0] == '\0')
		return -1;
	seconds = strtod(value, &end);
	while (*end == ' ' || *end == '\t')
		end++;
	if (end == value || *end != '\0' || !(seconds >= 0))
		return -1;
	if (seconds * 1000.0 > SP_RETRY_AFTER_MAX_MS)
		return -1;
	return (long) (seconds * 1000.0);
}

long
sp_retry_delay_ms(int retry, double jitter01, const char *retry_after_header)
{
	double		delay = SP_RETRY_INITIAL_MS;
	long		retry_after;
	int			i;

	for (i = 0; i < retry && delay < SP_RETRY_MAX_MS; i++)
		delay *= 2;
	if (delay > SP_RETRY_MAX_MS)
		delay = SP_RETRY_MAX_MS;

	/* spread clients that failed together, never below the initial delay */
	if (jitter01 < 0 || jitter01 >= 1)
		jitter01 = 0;
	delay = delay * (0.5 + jitter01 / 2.0);
	if (delay < SP_RETRY_INITIAL_MS)
		delay = SP_RETRY_INITIAL_MS;

	retry_after = parse_retry_after_ms(retry_after_header);
	if (retry_after > delay)
		delay = (double) retry_after;
	return (long) delay;
}
