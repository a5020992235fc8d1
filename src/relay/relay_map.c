/*-------------------------------------------------------------------------
 *
 * relay_map.c
 *		Routes, SQLSTATE to HTTP mapping, JSON bodies, log lines and option
 *		parsing for stripepay-relay.
 *
 * The mapping decides whether Stripe resends an event, so it is kept here,
 * apart from the sockets, where a unit test can pin every row of it.
 *
 *-------------------------------------------------------------------------
 */
#include "../pure/sp_hex.h"
#include "relay_map.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * The name rule matches what add_webhook_secret() accepts, and keeps log
 * lines and SQL arguments free of anything that needs quoting.
 */
bool
relay_endpoint_valid(const char *name, size_t len)
{
	size_t		i;

	if (len < 1 || len > RELAY_ENDPOINT_MAX)
		return false;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (!(isalnum(c) || c == '_' || c == '.' || c == '-') || c >= 0x80)
			return false;
	}
	return true;
}

/*
 * Decodes %HH in s, in place, as libmicrohttpd's own unescaper does, except
 * that %00 stays as it is: a decoded NUL would end the C string the route
 * is read from, so that "/stripe%00/payments" would be routed as "/stripe".
 * Left encoded, it matches no route: such a path is 404.  A '%' that does
 * not start two hex digits stays too.  Returns the new length; s never
 * grows.
 */
size_t
relay_unescape_path(char *s)
{
	size_t		r = 0;
	size_t		w = 0;

	while (s[r] != '\0')
	{
		if (s[r] == '%')
		{
			int			hi = sp_hex_digit((unsigned char) s[r + 1]);
			int			lo = hi < 0 ? -1 : sp_hex_digit((unsigned char) s[r + 2]);

			if (hi >= 0 && lo >= 0 && (hi | lo) != 0)
			{
				s[w++] = (char) (hi * 16 + lo);
				r += 3;
				continue;
			}
		}
		s[w++] = s[r++];
	}
	s[w] = '\0';
	return w;
}

/*
 * Maps a request path (already percent-decoded, without its query string)
 * to a route.  For a webhook, endpoint receives the endpoint name, or the
 * empty string for plain /stripe, which means "any live secret" (NULL).
 */
RelayRoute
relay_route(const char *path, char *endpoint, size_t endpoint_size)
{
	const char *name;
	size_t		len;

	if (endpoint_size > 0)
		endpoint[0] = '\0';
	if (path == NULL)
		return RELAY_ROUTE_NOT_FOUND;
	if (strcmp(path, "/healthz") == 0)
		return RELAY_ROUTE_HEALTHZ;
	if (strcmp(path, "/stripe") == 0)
		return RELAY_ROUTE_WEBHOOK;
	if (strncmp(path, "/stripe/", 8) != 0)
		return RELAY_ROUTE_NOT_FOUND;
	name = path + 8;
	len = strlen(name);
	if (!relay_endpoint_valid(name, len) || len >= endpoint_size)
		return RELAY_ROUTE_NOT_FOUND;
	memcpy(endpoint, name, len + 1);
	return RELAY_ROUTE_WEBHOOK;
}

/*
 * Sorts a SQLSTATE by what Stripe should do.  Only SP02x (and text that is
 * not valid in the database encoding, which no resend can fix) is refused
 * for good; every other failure must make Stripe resend, because the event
 * was not stored.  No SQLSTATE at all means libpq lost the server.
 */
RelayErrorClass
relay_classify_sqlstate(const char *sqlstate)
{
	if (sqlstate == NULL || strlen(sqlstate) != 5)
		return RELAY_ERR_CONNECTION;
	if (strncmp(sqlstate, "SP02", 4) == 0)
		return RELAY_ERR_REJECT;
	if (strcmp(sqlstate, "22021") == 0)
		return RELAY_ERR_REJECT;
	if (strncmp(sqlstate, "08", 2) == 0 ||
		strcmp(sqlstate, "57P01") == 0 ||	/* admin_shutdown */
		strcmp(sqlstate, "57P02") == 0 ||	/* crash_shutdown */
		strcmp(sqlstate, "57P03") == 0)		/* cannot_connect_now */
		return RELAY_ERR_CONNECTION;
	if (strcmp(sqlstate, "40001") == 0 ||	/* serialization_failure */
		strcmp(sqlstate, "40P01") == 0)		/* deadlock_detected */
		return RELAY_ERR_TRANSIENT;
	if (strncmp(sqlstate, "53", 2) == 0 ||	/* insufficient resources */
		strncmp(sqlstate, "58", 2) == 0 ||	/* system error (I/O) */
		strcmp(sqlstate, "55P03") == 0)		/* lock_not_available */
		return RELAY_ERR_UNAVAILABLE;
	if (strcmp(sqlstate, "57014") == 0)		/* query_canceled: the timeout */
		return RELAY_ERR_TIMEOUT;
	return RELAY_ERR_FAILED;
}

int
relay_error_http_status(RelayErrorClass cls)
{
	switch (cls)
	{
		case RELAY_ERR_REJECT:
			return 400;
		case RELAY_ERR_CONNECTION:
		case RELAY_ERR_TRANSIENT:
		case RELAY_ERR_UNAVAILABLE:
			return 503;
		case RELAY_ERR_TIMEOUT:
			return 504;
		case RELAY_ERR_FAILED:
			break;
	}
	return 500;
}

/*
 * Ingestion is idempotent by event id and a failed statement rolled back,
 * so trying once more cannot apply an event twice.
 */
bool
relay_error_retryable(RelayErrorClass cls)
{
	return cls == RELAY_ERR_CONNECTION || cls == RELAY_ERR_TRANSIENT;
}

void
relay_buf_append(RelayBuf *buf, const char *s, size_t len)
{
	if (buf->failed)
		return;
	if (buf->len + len + 1 > buf->cap)
	{
		size_t		cap = buf->cap ? buf->cap : 64;
		char	   *data;

		while (cap < buf->len + len + 1)
			cap *= 2;
		data = realloc(buf->data, cap);
		if (data == NULL)
		{
			buf->failed = true;
			return;
		}
		buf->data = data;
		buf->cap = cap;
	}
	memcpy(buf->data + buf->len, s, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
}

void
relay_buf_puts(RelayBuf *buf, const char *s)
{
	relay_buf_append(buf, s, strlen(s));
}

/* a JSON string literal; bytes from 0x80 up pass as they are (UTF-8) */
void
relay_buf_json_string(RelayBuf *buf, const char *s)
{
	const unsigned char *p;

	relay_buf_append(buf, "\"", 1);
	for (p = (const unsigned char *) s; *p; p++)
	{
		char		esc[8];

		switch (*p)
		{
			case '"':
				relay_buf_append(buf, "\\\"", 2);
				break;
			case '\\':
				relay_buf_append(buf, "\\\\", 2);
				break;
			case '\n':
				relay_buf_append(buf, "\\n", 2);
				break;
			case '\r':
				relay_buf_append(buf, "\\r", 2);
				break;
			case '\t':
				relay_buf_append(buf, "\\t", 2);
				break;
			default:
				if (*p < 0x20 || *p == 0x7f)
				{
					snprintf(esc, sizeof(esc), "\\u%04x", *p);
					relay_buf_append(buf, esc, 6);
				}
				else
					relay_buf_append(buf, (const char *) p, 1);
		}
	}
	relay_buf_append(buf, "\"", 1);
}

/* the malloc'd string, or NULL when memory ran out on the way */
char *
relay_buf_finish(RelayBuf *buf)
{
	if (buf->failed || buf->data == NULL)
	{
		free(buf->data);
		buf->data = NULL;
		return NULL;
	}
	return buf->data;
}

char *
relay_json_ingested(const char *event_id, const char *event_type,
					bool already_processed)
{
	RelayBuf	buf = {0};

	relay_buf_puts(&buf, "{\"event_id\": ");
	relay_buf_json_string(&buf, event_id ? event_id : "");
	relay_buf_puts(&buf, ", \"event_type\": ");
	relay_buf_json_string(&buf, event_type ? event_type : "");
	relay_buf_puts(&buf, already_processed ? ", \"already_processed\": true}\n"
				   : ", \"already_processed\": false}\n");
	return relay_buf_finish(&buf);
}

/* {"error": message, "sqlstate": sqlstate}; sqlstate is left out when NULL */
char *
relay_json_error(const char *message, const char *sqlstate)
{
	RelayBuf	buf = {0};

	relay_buf_puts(&buf, "{\"error\": ");
	relay_buf_json_string(&buf, message ? message : "");
	if (sqlstate != NULL && sqlstate[0] != '\0')
	{
		relay_buf_puts(&buf, ", \"sqlstate\": ");
		relay_buf_json_string(&buf, sqlstate);
	}
	relay_buf_puts(&buf, "}\n");
	return relay_buf_finish(&buf);
}

/*
 * Copies what a client sent (a path, an event id) into a log field: at most
 * dst_size - 1 bytes, every byte but letters, digits, slash and "_.:-*" made
 * a "?", so a request can neither forge a log line nor smuggle a body into it.
 */
void
relay_log_safe(char *dst, size_t dst_size, const char *src)
{
	size_t		i = 0;

	if (dst_size == 0)
		return;
	if (src == NULL || src[0] == '\0')
		src = "-";
	for (; src[i] != '\0' && i + 1 < dst_size; i++)
	{
		unsigned char c = (unsigned char) src[i];

		dst[i] = (c < 0x80 && (isalnum(c) || strchr("_.:/*-", c) != NULL)) ? (char) c : '?';
	}
	dst[i] = '\0';
	/* a cut field says so, rather than passing for a whole one */
	if (src[i] != '\0' && dst_size >= 4)
		memcpy(dst + dst_size - 4, "...", 4);
}

/* ISO 8601, UTC, milliseconds: 2025-11-26T18:10:00.123Z */
void
relay_format_time(char *dst, size_t dst_size, const struct timespec *ts)
{
	struct tm	tm;
	char		secs[32];
	time_t		t = ts->tv_sec;

	if (gmtime_r(&t, &tm) == NULL ||
		strftime(secs, sizeof(secs), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		snprintf(secs, sizeof(secs), "%lld", (long long) t);
	snprintf(dst, dst_size, "%s.%03ldZ", secs, (long) (ts->tv_nsec / 1000000));
}

/*
 * One request, one line:
 *   <time> <method> <path> endpoint=<name|*|-> event=<id|-> status=<n> ms=<n>[ sqlstate=<s>]
 * endpoint "*" is plain /stripe (any endpoint's secret), "-" a non-webhook path.
 */
void
relay_format_log(char *dst, size_t dst_size, const struct timespec *ts,
				 const char *method, const char *path,
				 const char *endpoint, const char *event_id,
				 int status, long ms, int batch, const char *sqlstate)
{
	char		when[40];
	char		b[24] = "";
	char		m[16];
	char		p[96];
	char		e[RELAY_ENDPOINT_BUFSIZE];
	char		id[96];

	relay_format_time(when, sizeof(when), ts);
	relay_log_safe(m, sizeof(m), method);
	relay_log_safe(p, sizeof(p), path);
	relay_log_safe(e, sizeof(e), endpoint);
	relay_log_safe(id, sizeof(id), event_id);
	/* a request committed alone is the usual case and says nothing more */
	if (batch > 1)
		snprintf(b, sizeof(b), " batch=%d", batch);
	snprintf(dst, dst_size, "%s %s %s endpoint=%s event=%s status=%d ms=%ld%s%s%s\n",
			 when, m, p, e, id, status, ms, b,
			 (sqlstate && sqlstate[0]) ? " sqlstate=" : "",
			 (sqlstate && sqlstate[0]) ? sqlstate : "");
}

/*
 * "host:port", "[v6 address]:port" or ":port" (every interface).  The port
 * must be numeric, 1-65535.
 */
bool
relay_parse_listen(const char *spec, char *host, size_t host_size,
				   char *port, size_t port_size)
{
	const char *colon;
	const char *h;
	size_t		hlen;
	long		portnum;

	if (spec == NULL)
		return false;
	if (spec[0] == '[')
	{
		const char *close = strchr(spec, ']');

		if (close == NULL || close[1] != ':')
			return false;
		h = spec + 1;
		hlen = (size_t) (close - h);
		colon = close + 1;
		if (hlen == 0)
			return false;
	}
	else
	{
		colon = strrchr(spec, ':');
		if (colon == NULL)
			return false;
		h = spec;
		hlen = (size_t) (colon - spec);
		if (memchr(h, ':', hlen) != NULL)
			return false;		/* a bare IPv6 address needs brackets */
	}
	if (!relay_parse_long(colon + 1, 1, 65535, &portnum))
		return false;
	if (hlen >= host_size || strlen(colon + 1) >= port_size)
		return false;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	snprintf(port, port_size, "%ld", portnum);
	return true;
}

/* a decimal integer in [min, max], nothing before or after it */
bool
relay_parse_long(const char *s, long min, long max, long *out)
{
	char	   *end;
	long		v;

	if (s == NULL || !isdigit((unsigned char) s[0]))
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* on/off, true/false, yes/no, 1/0, as Postgres spells a boolean setting */
bool
relay_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"on", "true", "yes", "1"};
	static const char *const no[] = {"off", "false", "no", "0"};
	size_t		i;

	if (s == NULL)
		return false;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
	{
		if (strcasecmp(s, yes[i]) == 0)
		{
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0)
		{
			*out = false;
			return true;
		}
	}
	return false;
}

/* a byte count: digits, optionally followed by k or M (KiB, MiB) */
bool
relay_parse_size(const char *s, long min, long max, long *out)
{
	char		digits[32];
	size_t		len;
	long		unit = 1;
	long		v;

	if (s == NULL)
		return false;
	len = strlen(s);
	if (len == 0 || len >= sizeof(digits))
		return false;
	memcpy(digits, s, len + 1);
	if (digits[len - 1] == 'k' || digits[len - 1] == 'K')
		unit = 1024;
	else if (digits[len - 1] == 'm' || digits[len - 1] == 'M')
		unit = 1024 * 1024;
	if (unit != 1)
		digits[len - 1] = '\0';
	if (!relay_parse_long(digits, 0, LONG_MAX / unit, &v))
		return false;
	v *= unit;
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}
