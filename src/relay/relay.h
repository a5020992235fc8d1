/*-------------------------------------------------------------------------
 *
 * relay.h
 *		What every part of stripepay-relay shares: the clock and the log.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RELAY_H
#define RELAY_H

#include <stdint.h>

/* milliseconds on the monotonic clock: deadlines survive clock changes */
extern int64_t relay_now_ms(void);

/* one line to stderr, with time and program name; never a secret or a body */
extern void relay_log(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/* a ready-made line (ending in a newline), written whole */
extern void relay_log_raw(const char *line);

#endif							/* RELAY_H */
