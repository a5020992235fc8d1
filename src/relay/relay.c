/*-------------------------------------------------------------------------
 *
 * relay.c
 *		The clock and the log every part of stripepay-relay shares, so
 *		that the pool and the HTTP side depend on this file, not on each
 *		other.
 *
 *-------------------------------------------------------------------------
 */
#include "relay.h"
#include "relay_map.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t
relay_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* a line shorter than PIPE_BUF goes out in one write(2): lines never mix */
void
relay_log_raw(const char *line)
{
	size_t		len = strlen(line);

	while (len > 0)
	{
		ssize_t		n = write(STDERR_FILENO, line, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		line += n;
		len -= (size_t) n;
	}
}

void
relay_log(const char *fmt,...)
{
	char		msg[512];
	char		when[40];
	char		line[600];
	struct timespec ts;
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	relay_format_time(when, sizeof(when), &ts);
	snprintf(line, sizeof(line), "%s stripepay-relay: %s\n", when, msg);
	relay_log_raw(line);
}

