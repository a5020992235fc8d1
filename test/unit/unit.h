/*-------------------------------------------------------------------------
 *
 * unit.h
 *		A tiny header-only test harness for the pure C modules
 *
 * Usage: each test is TEST(name) { ... CHECK(...); ... }, each suite file
 * defines a unit_suite_*() that RUN()s its tests, and exactly one file
 * defines UNIT_IMPLEMENTATION before including this header and calls the
 * suites from main(), returning unit_finish().
 *
 * A failed CHECK records file, line and detail and returns from the test
 * function, so checks after a failure never run on a broken state.  Output
 * is one line per test, "ok - name" or "not ok - name: file:line detail",
 * and a final "unit: N passed, M failed" (CI reads that line); the exit
 * code is 1 if any test failed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdbool.h>
#include <stddef.h>

typedef void (*UnitTestFn) (void);

extern void unit_run(const char *name, UnitTestFn fn);
extern int	unit_finish(void);
extern void unit_fail(const char *file, int line, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
extern bool unit_check_str(const char *file, int line, const char *ea,
						   const char *eb, const char *a, const char *b);
extern bool unit_check_int(const char *file, int line, const char *ea,
						   const char *eb, long long a, long long b);
extern bool unit_check_mem(const char *file, int line, const char *ea,
						   const char *eb, const void *a, size_t alen,
						   const void *b, size_t blen);

/* suites, one per module */
extern void unit_suite_form(void);
extern void unit_suite_money(void);
extern void unit_suite_json(void);
extern void unit_suite_jtok(void);
extern void unit_suite_retry(void);
extern void unit_suite_signature(void);
extern void unit_suite_event(void);
extern void unit_suite_rules(void);

#define TEST(name) static void name(void)
#define RUN(name) unit_run(#name, name)

#define CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			unit_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); \
			return; \
		} \
	} while (0)

/* NULL-safe; both sides are evaluated exactly once */
#define CHECK_STR_EQ(a, b) \
	do { \
		if (!unit_check_str(__FILE__, __LINE__, #a, #b, (a), (b))) \
			return; \
	} while (0)

#define CHECK_INT_EQ(a, b) \
	do { \
		if (!unit_check_int(__FILE__, __LINE__, #a, #b, \
							(long long) (a), (long long) (b))) \
			return; \
	} while (0)

/* byte strings that may hold NULs */
#define CHECK_MEM_EQ(a, alen, b, blen) \
	do { \
		if (!unit_check_mem(__FILE__, __LINE__, #a, #b, (a), (alen), (b), (blen))) \
			return; \
	} while (0)

#ifdef UNIT_IMPLEMENTATION

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int	unit_passed;
static int	unit_failed;
static bool unit_current_failed;
static char unit_detail[1024];

void
unit_fail(const char *file, int line, const char *fmt,...)
{
	va_list		ap;
	int			n;

	/* keep the first failure: later ones are usually its consequences */
	if (unit_current_failed)
		return;
	unit_current_failed = true;
	n = snprintf(unit_detail, sizeof(unit_detail), "%s:%d ", file, line);
	if (n < 0 || (size_t) n >= sizeof(unit_detail))
		return;
	va_start(ap, fmt);
	vsnprintf(unit_detail + n, sizeof(unit_detail) - (size_t) n, fmt, ap);
	va_end(ap);
}

/*
 * Renders bytes as a C literal, so a failure line stays one line whatever
 * the strings hold (newlines, NULs, UTF-8).
 */
static void
unit_quote(char *dst, size_t size, const char *src, size_t len)
{
	size_t		out = 0;
	size_t		i;

	if (src == NULL)
	{
		snprintf(dst, size, "NULL");
		return;
	}
	dst[out++] = '"';
	for (i = 0; i < len && out + 8 < size; i++)
	{
		unsigned char c = (unsigned char) src[i];

		if (c == '"' || c == '\\')
		{
			dst[out++] = '\\';
			dst[out++] = (char) c;
		}
		else if (c == '\n')
		{
			dst[out++] = '\\';
			dst[out++] = 'n';
		}
		else if (c < 0x20 || c >= 0x7f)
			out += (size_t) snprintf(dst + out, size - out, "\\x%02x", c);
		else
			dst[out++] = (char) c;
	}
	if (i < len)
	{
		memcpy(dst + out, "...", 3);
		out += 3;
	}
	dst[out++] = '"';
	dst[out] = '\0';
}

bool
unit_check_mem(const char *file, int line, const char *ea, const char *eb,
			   const void *a, size_t alen, const void *b, size_t blen)
{
	char		qa[200];
	char		qb[200];

	if (a == NULL && b == NULL)
		return true;
	if (a != NULL && b != NULL && alen == blen && memcmp(a, b, alen) == 0)
		return true;
	unit_quote(qa, sizeof(qa), a, a != NULL ? alen : 0);
	unit_quote(qb, sizeof(qb), b, b != NULL ? blen : 0);
	unit_fail(file, line, "%s == %s: %s (%zu bytes) != %s (%zu bytes)",
			  ea, eb, qa, alen, qb, blen);
	return false;
}

bool
unit_check_str(const char *file, int line, const char *ea, const char *eb,
			   const char *a, const char *b)
{
	return unit_check_mem(file, line, ea, eb, a, a != NULL ? strlen(a) : 0,
						  b, b != NULL ? strlen(b) : 0);
}

bool
unit_check_int(const char *file, int line, const char *ea, const char *eb,
			   long long a, long long b)
{
	if (a == b)
		return true;
	unit_fail(file, line, "%s == %s: %lld != %lld", ea, eb, a, b);
	return false;
}

void
unit_run(const char *name, UnitTestFn fn)
{
	unit_current_failed = false;
	unit_detail[0] = '\0';
	fn();
	if (unit_current_failed)
	{
		unit_failed++;
		printf("not ok - %s: %s\n", name, unit_detail);
	}
	else
	{
		unit_passed++;
		printf("ok - %s\n", name);
	}
	fflush(stdout);
}

int
unit_finish(void)
{
	printf("unit: %d passed, %d failed\n", unit_passed, unit_failed);
	fflush(stdout);
	return unit_failed > 0 ? 1 : 0;
}

#endif							/* UNIT_IMPLEMENTATION */

#endif							/* UNIT_H */
