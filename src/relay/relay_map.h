/*-------------------------------------------------------------------------
 *
 * relay_map.h
 *		The parts of stripepay-relay that need no network: routes, the
 *		SQLSTATE to HTTP status mapping, JSON bodies, log lines and
 *		option parsing.
 *
 * Nothing here includes libpq or libmicrohttpd, so test/relay can unit-test
 * it alone under AddressSanitizer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RELAY_MAP_H
#define RELAY_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* an endpoint name is 1-64 of [A-Za-z0-9_.-]; the buffer holds the NUL too */
#define RELAY_ENDPOINT_MAX 64
#define RELAY_ENDPOINT_BUFSIZE (RELAY_ENDPOINT_MAX + 1)

typedef enum RelayRoute
{
	RELAY_ROUTE_NOT_FOUND,
	RELAY_ROUTE_WEBHOOK,		/* POST /stripe or /stripe/<endpoint> */
	RELAY_ROUTE_HEALTHZ			/* GET /healthz */
} RelayRoute;

/*
 * What a failed statement means for Stripe: whether it should resend, and
 * whether the relay itself may try once more first.
 */
typedef enum RelayErrorClass
{
	RELAY_ERR_REJECT,			/* 400: resending cannot help (SP02x) */
	RELAY_ERR_CONNECTION,		/* 503: connection lost; retry once */
	RELAY_ERR_TRANSIENT,		/* 503: serialization failure; retry once */
	RELAY_ERR_UNAVAILABLE,		/* 503: server short of resources */
	RELAY_ERR_TIMEOUT,			/* 504: statement_timeout */
	RELAY_ERR_FAILED			/* 500: anything else, e.g. a user trigger */
} RelayErrorClass;

/* percent-decodes a request path in place, leaving %00 encoded */
extern size_t relay_unescape_path(char *s);
extern RelayRoute relay_route(const char *path, char *endpoint, size_t endpoint_size);
extern bool relay_endpoint_valid(const char *name, size_t len);

extern RelayErrorClass relay_classify_sqlstate(const char *sqlstate);
extern int	relay_error_http_status(RelayErrorClass cls);
extern bool relay_error_retryable(RelayErrorClass cls);

/* a growable NUL-terminated buffer; on allocation failure it stays failed */
typedef struct RelayBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;
} RelayBuf;

extern void relay_buf_append(RelayBuf *buf, const char *s, size_t len);
extern void relay_buf_puts(RelayBuf *buf, const char *s);
extern void relay_buf_json_string(RelayBuf *buf, const char *s);
extern char *relay_buf_finish(RelayBuf *buf);

extern char *relay_json_ingested(const char *event_id, const char *event_type,
								 bool already_processed);
extern char *relay_json_error(const char *message, const char *sqlstate);

extern void relay_log_safe(char *dst, size_t dst_size, const char *src);
extern void relay_format_time(char *dst, size_t dst_size, const struct timespec *ts);
extern void relay_format_log(char *dst, size_t dst_size, const struct timespec *ts,
							 const char *method, const char *path,
							 const char *endpoint, const char *event_id,
							 int status, long ms, int batch, const char *sqlstate);

extern bool relay_parse_listen(const char *spec, char *host, size_t host_size,
							   char *port, size_t port_size);
extern bool relay_parse_long(const char *s, long min, long max, long *out);
extern bool relay_parse_bool(const char *s, bool *out);
extern bool relay_parse_size(const char *s, long min, long max, long *out);

#endif							/* RELAY_MAP_H */
