/*-------------------------------------------------------------------------
 *
 * fuzz_relay_map.c
 *		libFuzzer target: what stripepay-relay makes of client bytes
 *
 * src/relay/relay_map.c is the relay's whole parsing surface: the request
 * path to a route, client text into log fields and JSON answers, and the
 * option values.  The input, up to its first NUL, goes to every one of
 * them, and each must keep its promise for any bytes:
 *	- relay_route: a webhook route is "/stripe" or "/stripe/<valid name>"
 *	  with that name in endpoint, /healthz is only "/healthz", and a
 *	  rejected path leaves endpoint empty;
 *	- relay_log_safe: at most dst_size - 1 bytes, all of them from the safe
 *	  set, for every dst_size from 1 to 40;
 *	- relay_format_log: one line, its fields separated by single spaces,
 *	  nothing the client sent able to add a field or a line;
 *	- relay_json_error and relay_json_ingested: JSON that json-c parses back
 *	  to exactly the strings given;
 *	- relay_classify_sqlstate: a class whose status is 400, 500, 503 or 504,
 *	  and only 503s are retried;
 *	- relay_parse_long, relay_parse_size, relay_parse_listen: a value in
 *	  range that the same text gives back, and a listen address that
 *	  parses again to itself.
 *
 *-------------------------------------------------------------------------
 */
#include "relay_map.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
log_safe_char(unsigned char c)
{
	return c < 0x80 && (isalnum(c) || strchr("_.:/*-?", c) != NULL);
}

static void
check_route(const char *path)
{
	char		endpoint[RELAY_ENDPOINT_BUFSIZE];
	RelayRoute	r;

	memset(endpoint, 'x', sizeof(endpoint));
	r = relay_route(path, endpoint, sizeof(endpoint));
	if (memchr(endpoint, '\0', sizeof(endpoint)) == NULL)
		abort();
	switch (r)
	{
		case RELAY_ROUTE_WEBHOOK:
			if (endpoint[0] == '\0' ? strcmp(path, "/stripe") != 0
				: (strncmp(path, "/stripe/", 8) != 0 || strcmp(path + 8, endpoint) != 0 ||
				   !relay_endpoint_valid(endpoint, strlen(endpoint))))
				abort();
			break;
		case RELAY_ROUTE_HEALTHZ:
			if (strcmp(path, "/healthz") != 0 || endpoint[0] != '\0')
				abort();
			break;
		case RELAY_ROUTE_NOT_FOUND:
			if (endpoint[0] != '\0' || strcmp(path, "/stripe") == 0 ||
				strcmp(path, "/healthz") == 0)
				abort();
			break;
		default:
			abort();
	}
}

static void
check_log_safe(const char *s)
{
	char		dst[40];
	size_t		size;

	for (size = 1; size <= sizeof(dst); size++)
	{
		size_t		i;
		size_t		len;

		relay_log_safe(dst, size, s);
		len = strnlen(dst, size);
		if (len >= size)
			abort();
		for (i = 0; i < len; i++)
			if (!log_safe_char((unsigned char) dst[i]))
				abort();
	}
}

static void
check_log_line(const char *s, const char *sqlstate)
{
	struct timespec ts = {1700000000, 123000000};
	char		line[512];
	int			spaces = 0;
	size_t		i;
	size_t		len;

	relay_format_log(line, sizeof(line), &ts, s, s, s, s, 200, 7, 3, sqlstate);
	len = strlen(line);
	/* <time> <method> <path> endpoint= event= status= ms= batch=3[ sqlstate=] */
	if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1) != NULL)
		abort();
	for (i = 0; i + 1 < len; i++)
	{
		if (line[i] == ' ')
			spaces++;
		else if (!log_safe_char((unsigned char) line[i]) && line[i] != '=')
			abort();
	}
	if (spaces != (sqlstate[0] ? 8 : 7))
		abort();
}

/* the value of key in the JSON object text, which must parse */
static void
check_json_field(const char *text, const char *key, const char *want)
{
	struct json_object *root = json_tokener_parse(text);
	struct json_object *val;

	if (root == NULL || !json_object_object_get_ex(root, key, &val) ||
		!json_object_is_type(val, json_type_string) ||
		strcmp(json_object_get_string(val), want) != 0 ||
		(size_t) json_object_get_string_len(val) != strlen(want))
		abort();
	json_object_put(root);
}

static void
check_json(const char *s)
{
	char	   *err = relay_json_error(s, "SP020");
	char	   *ok = relay_json_ingested(s, s, true);

	if (err == NULL || ok == NULL)
		abort();
	check_json_field(err, "error", s);
	check_json_field(err, "sqlstate", "SP020");
	check_json_field(ok, "event_id", s);
	check_json_field(ok, "event_type", s);
	free(err);
	free(ok);
}

static void
check_sqlstate(const char *s)
{
	RelayErrorClass cls = relay_classify_sqlstate(s);
	int			status = relay_error_http_status(cls);

	if (status != 400 && status != 500 && status != 503 && status != 504)
		abort();
	if (relay_error_retryable(cls) && status != 503)
		abort();
	if (strncmp(s, "SP02", 4) == 0 && strlen(s) == 5 && status != 400)
		abort();
}

static void
check_numbers(const char *s)
{
	long		v;
	long		again;
	char		text[32];

	if (relay_parse_long(s, 1, 65535, &v))
	{
		snprintf(text, sizeof(text), "%ld", v);
		if (v < 1 || v > 65535 || !relay_parse_long(text, 1, 65535, &again) || again != v)
			abort();
	}
	if (relay_parse_size(s, 1, 64L * 1024 * 1024, &v))
	{
		snprintf(text, sizeof(text), "%ld", v);
		if (v < 1 || v > 64L * 1024 * 1024 ||
			!relay_parse_size(text, 1, 64L * 1024 * 1024, &again) || again != v)
			abort();
	}
}

static void
check_listen(const char *s)
{
	char		host[256];
	char		port[16];
	char		host2[256];
	char		port2[16];
	char		spec[300];
	long		p;

	if (!relay_parse_listen(s, host, sizeof(host), port, sizeof(port)))
		return;
	if (!relay_parse_long(port, 1, 65535, &p))
		abort();
	/* brackets whenever a bare host would read differently */
	snprintf(spec, sizeof(spec),
			 strchr(host, ':') != NULL || host[0] == '[' ? "[%s]:%s" : "%s:%s",
			 host, port);
	if (!relay_parse_listen(spec, host2, sizeof(host2), port2, sizeof(port2)) ||
		strcmp(host, host2) != 0 || strcmp(port, port2) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s = malloc(size + 1);
	char		sqlstate[6];
	size_t		i;

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';

	/* a SQLSTATE comes from the server: five of [0-9A-Z], or none */
	for (i = 0; i < 5 && i < size; i++)
		sqlstate[i] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[data[i] % 36];
	sqlstate[size >= 5 ? 5 : 0] = '\0';

	check_route(s);
	check_log_safe(s);
	check_log_line(s, sqlstate);
	check_json(s);
	check_sqlstate(s);
	check_numbers(s);
	check_listen(s);
	free(s);
	return 0;
}
