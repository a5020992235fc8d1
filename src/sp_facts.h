/*-------------------------------------------------------------------------
 *
 * sp_facts.h
 *		A decoded event's facts as a small JSON object: what the SQL side
 *		(stripepay._ingest) reads, named the same whatever the API version
 *		the event was rendered in.  Pure C.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_FACTS_H
#define SP_FACTS_H

#include <stddef.h>

#include "sp_event.h"

/*
 * Writes the facts of ev into buf as one JSON object, NUL-terminated.
 * Empty strings and absent numbers are left out.  Returns the length, or
 * -1 when buf is too small or memory ran out.
 */
extern int	sp_facts_json(const SpEvent *ev, char *buf, size_t size);

#endif							/* SP_FACTS_H */
