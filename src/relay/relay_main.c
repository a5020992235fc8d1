/*-------------------------------------------------------------------------
 *
 * relay_main.c
 *		stripepay-relay: receives Stripe's webhook POSTs and hands each one,
 *		byte for byte, to stripepay.stripe_ingest_webhook().
 *
 * The relay decides nothing about events: the database verifies the
 * signature, records the event once and applies it.  What the relay owns is
 * the HTTP answer, because it tells Stripe whether to resend: 200 when the
 * event is stored (or was already), 400 when resending cannot help (the
 * SP02x errors: bad signature, not an event, ...), and 5xx whenever the
 * event was not stored for a reason that may pass (the database is down, a
 * user trigger failed, a timeout), so that nothing is lost.
 *
 * libmicrohttpd runs one thread per HTTP connection; each request borrows a
 * database connection from a fixed pool (relay_pool.c) for its statement,
 * or shares one transaction with the requests that queued beside it.
 * SIGTERM or SIGINT stops accepting, lets the requests in flight finish,
 * and exits 0; a second signal cancels their statements and exits 0 at
 * once (relay_stop_now).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <libpq-fe.h>

#include "relay.h"
#include "relay_map.h"
#include "relay_pool.h"

#ifndef RELAY_VERSION
#define RELAY_VERSION "unknown"
#endif

/* Postgres type oids of the ingest's arguments (catalog/pg_type_d.h) */
#define RELAY_BYTEAOID 17
#define RELAY_TEXTOID 25

/* an idle keep-alive connection is closed after this many seconds */
#define RELAY_IDLE_TIMEOUT_S 30

/* one thread each: more simultaneous HTTP connections are turned away */
#define RELAY_MAX_CONNECTIONS 256

#define RELAY_INGEST_SQL \
	"SELECT event_id, event_type, already_processed " \
	"FROM stripepay.stripe_ingest_webhook($1, $2, $3)"

typedef struct RelayConfig
{
	const char *listen;
	const char *dsn;
	long		pool;
	long		max_body;
	long		timeout_ms;
	long		batch;
	bool		pipeline;
} RelayConfig;

/* one HTTP request, from its headers to its log line */
typedef struct RelayRequest
{
	int64_t		started_ms;		/* headers in; for the log's ms= only */
	RelayRoute	route;
	char		endpoint[RELAY_ENDPOINT_BUFSIZE];	/* "" for /stripe */
	char		method[16];
	char		path[96];		/* log-safe */
	char	   *body;
	size_t		len;
	size_t		cap;
	int			reject;			/* 404 or 405, answered once the request is in */
	const char *allow;			/* the Allow header of a 405 */
	int			status;			/* as queued; 0 until then */
	char		event_id[96];
	char		sqlstate[6];
	int			batch;			/* events that shared its transaction */
} RelayRequest;

static RelayConfig relay_config;
static __thread bool relay_closing_on_purpose;
static RelayPool *relay_pool;
static atomic_bool relay_stopping;
static atomic_int relay_inflight;
static atomic_int relay_cancelled = -1;	/* statements cancelled; -1 until done */

static void
relay_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char		msg[400];
	size_t		len;

	(void) cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (relay_closing_on_purpose &&
		strncmp(msg, "Application reported internal error", 35) == 0)
	{
		relay_closing_on_purpose = false;
		return;
	}
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		msg[--len] = '\0';
	relay_log("libmicrohttpd: %s", msg);
}

/*
 * libmicrohttpd's unescaper, for the path and the query arguments: %HH is
 * decoded as by its own, but %00 is left encoded, so that a NUL never cuts
 * the path short (relay_unescape_path).
 */
static size_t
relay_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	(void) cls;
	(void) conn;
	return relay_unescape_path(s);
}

/*
 * Queues a JSON answer; json is malloc'd and becomes libmicrohttpd's.
 * allow is the Allow header of a 405; close asks the client to go away.
 */
static enum MHD_Result
relay_respond(struct MHD_Connection *conn, RelayRequest *req, int status,
			  char *json, const char *allow, bool close)
{
	static char no_memory[] = "{\"error\": \"out of memory\"}\n";
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (json != NULL)
	{
		resp = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
		if (resp == NULL)
			free(json);
	}
	else
		resp = MHD_create_response_from_buffer(strlen(no_memory), no_memory,
											   MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	if (close)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	ret = MHD_queue_response(conn, (unsigned int) status, resp);
	MHD_destroy_response(resp);
	req->status = status;
	return ret;
}

/* 404 or 405, once the request is in */
static enum MHD_Result
relay_reject(struct MHD_Connection *conn, RelayRequest *req)
{
	return relay_respond(conn, req, req->reject,
						 relay_json_error(req->reject == 404 ? "not found" : "method not allowed",
										  NULL),
						 req->allow, false);
}

/* a body announced too large, answered before a byte of it is read */
static enum MHD_Result
relay_too_large(struct MHD_Connection *conn, RelayRequest *req)
{
	char		msg[96];

	snprintf(msg, sizeof(msg), "request body is larger than %ld bytes",
			 relay_config.max_body);
	return relay_respond(conn, req, 413, relay_json_error(msg, NULL), NULL, true);
}

/*
 * A body that passed the cap while it was being read (chunked, or longer
 * than announced).  libmicrohttpd 0.9.75 takes a response only before the
 * body is read or after all of it, and the rest of the body may never end;
 * so the 413 is written to the socket here and the connection is closed.
 * In thread-per-connection mode no other thread writes to this socket.
 */
static enum MHD_Result
relay_too_large_now(struct MHD_Connection *conn, RelayRequest *req)
{
	const union MHD_ConnectionInfo *info;
	char		body[128];
	char		answer[384];
	int			len;

	free(req->body);
	req->body = NULL;
	req->len = req->cap = 0;
	req->status = 413;
	snprintf(body, sizeof(body), "{\"error\": \"request body is larger than %ld bytes\"}\n",
			 relay_config.max_body);
	len = snprintf(answer, sizeof(answer),
				   "HTTP/1.1 413 Payload Too Large\r\n"
				   "Content-Type: application/json\r\n"
				   "Cache-Control: no-store\r\n"
				   "Connection: close\r\n"
				   "Content-Length: %zu\r\n\r\n%s",
				   strlen(body), body);
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (info != NULL && len > 0 && (size_t) len < sizeof(answer))
		(void) send(info->connect_fd, answer, (size_t) len, MSG_NOSIGNAL);
	/* libmicrohttpd logs the close as an application error: it is not one */
	relay_closing_on_purpose = true;
	return MHD_NO;
}

/*
 * The text of a failure for Stripe's dashboard.  A 400 carries the
 * server's primary message (the SP02x messages name no secret and quote no
 * payload); a 5xx only says what kind of failure it was, since a user
 * trigger's message is the user's own business.  The server log has it.
 */
static const char *
relay_failure_text(const RelayOutcome *out)
{
	if (out->http_status == 400 || out->sqlstate[0] == '\0')
		return out->message;
	switch (out->http_status)
	{
		case 503:
			return "the database is unavailable; the event was not stored";
		case 504:
			return "the database did not answer in time; the event was not stored";
		default:
			return "the database could not store the event";
	}
}

static enum MHD_Result
relay_ingest(struct MHD_Connection *conn, RelayRequest *req)
{
	static const Oid types[3] = {RELAY_BYTEAOID, RELAY_TEXTOID, RELAY_TEXTOID};
	static const int formats[3] = {1, 0, 0};	/* the body goes in binary */
	const char *values[3];
	int			lengths[3] = {0, 0, 0};
	RelayQuery	q;
	RelayOutcome out;
	char	   *json;

	/* an empty body is an empty bytea, not NULL */
	values[0] = req->body ? req->body : "";
	lengths[0] = (int) req->len;
	/* a missing header is NULL, which the ingest refuses with SP020 */
	values[1] = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Stripe-Signature");
	values[2] = req->endpoint[0] ? req->endpoint : NULL;
	q.sql = RELAY_INGEST_SQL;
	q.nparams = 3;
	q.types = types;
	q.values = values;
	q.lengths = lengths;
	q.formats = formats;

	relay_pool_query(relay_pool, &q, &out);
	free(req->body);
	req->body = NULL;
	memcpy(req->sqlstate, out.sqlstate, sizeof(req->sqlstate));
	req->batch = out.batch;

	if (out.http_status == 200)
	{
		PGresult   *res = out.result;
		int			status = 200;

		if (PQntuples(res) == 1 && PQnfields(res) == 3)
		{
			snprintf(req->event_id, sizeof(req->event_id), "%s", PQgetvalue(res, 0, 0));
			json = relay_json_ingested(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
									   PQgetvalue(res, 0, 2)[0] == 't');
		}
		else
		{
			status = 500;
			json = relay_json_error("unexpected answer from stripe_ingest_webhook", NULL);
		}
		PQclear(res);
		return relay_respond(conn, req, status, json, NULL, false);
	}
	json = relay_json_error(relay_failure_text(&out), out.sqlstate);
	return relay_respond(conn, req, out.http_status, json, NULL, false);
}

static enum MHD_Result
relay_health(struct MHD_Connection *conn, RelayRequest *req)
{
	RelayQuery	q = {0};
	RelayOutcome out;

	q.sql = "SELECT 1";
	relay_pool_query(relay_pool, &q, &out);
	memcpy(req->sqlstate, out.sqlstate, sizeof(req->sqlstate));
	req->batch = out.batch;
	if (out.http_status == 200)
	{
		PQclear(out.result);
		return relay_respond(conn, req, 200, strdup("{\"status\": \"ok\"}\n"), NULL, false);
	}
	/* whatever went wrong, the database did not answer: unavailable */
	return relay_respond(conn, req, 503,
						 relay_json_error(out.sqlstate[0] ? "the database answered with an error"
										  : out.message, out.sqlstate),
						 NULL, false);
}

/*
 * Checks a request as soon as its headers are in.  An announced body that
 * is too large is answered at once, before a byte of it is read.  A wrong
 * path or method is answered once the request is in, so that the
 * connection stays open for the next one.
 */
static enum MHD_Result
relay_begin(struct MHD_Connection *conn, RelayRequest *req, const char *url,
			const char *method)
{
	const char *cl;

	req->started_ms = relay_now_ms();
	snprintf(req->method, sizeof(req->method), "%s", method);
	relay_log_safe(req->path, sizeof(req->path), url);
	req->route = relay_route(url, req->endpoint, sizeof(req->endpoint));

	if (atomic_load(&relay_stopping))
		return relay_respond(conn, req, 503,
							 relay_json_error("stripepay-relay is stopping", NULL), NULL, true);
	switch (req->route)
	{
		case RELAY_ROUTE_NOT_FOUND:
			req->reject = 404;
			return MHD_YES;
		case RELAY_ROUTE_HEALTHZ:
			if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
				strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
			{
				req->reject = 405;
				req->allow = "GET, HEAD";
			}
			return MHD_YES;
		case RELAY_ROUTE_WEBHOOK:
			if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
			{
				req->reject = 405;
				req->allow = "POST";
				return MHD_YES;
			}
			break;
	}

	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl != NULL)
	{
		char	   *end;
		unsigned long long n;

		errno = 0;
		n = strtoull(cl, &end, 10);
		if (errno != 0 || n > (unsigned long long) relay_config.max_body)
			return relay_too_large(conn, req);
		if (n > 0 && end != cl)
		{
			req->body = malloc((size_t) n);
			if (req->body == NULL)
				return MHD_NO;
			req->cap = (size_t) n;
		}
	}
	return MHD_YES;
}

/* appends a piece of the body: 1, or 0 past the cap, or -1 out of memory */
static int
relay_append(RelayRequest *req, const char *data, size_t n)
{
	size_t		max = (size_t) relay_config.max_body;

	if (n > max - req->len)
		return 0;
	if (req->len + n > req->cap)
	{
		size_t		cap = req->cap ? req->cap : 16384;
		char	   *body;

		while (cap < req->len + n)
			cap *= 2;
		if (cap > max)
			cap = max;
		body = realloc(req->body, cap);
		if (body == NULL)
			return -1;
		req->body = body;
		req->cap = cap;
	}
	memcpy(req->body + req->len, data, n);
	req->len += n;
	return 1;
}

static enum MHD_Result
relay_handle(void *cls, struct MHD_Connection *conn, const char *url,
			 const char *method, const char *version, const char *upload_data,
			 size_t *upload_data_size, void **con_cls)
{
	RelayRequest *req = *con_cls;

	(void) cls;
	(void) version;
	if (req == NULL)
	{
		req = calloc(1, sizeof(RelayRequest));
		if (req == NULL)
			return MHD_NO;
		*con_cls = req;
		atomic_fetch_add(&relay_inflight, 1);
		return relay_begin(conn, req, url, method);
	}
	if (*upload_data_size > 0)
	{
		size_t		n = *upload_data_size;

		*upload_data_size = 0;
		if (req->reject != 0 || req->route != RELAY_ROUTE_WEBHOOK)
		{
			/* a body that is not wanted is counted and dropped, up to the cap */
			if (n > (size_t) relay_config.max_body - req->len)
				return relay_too_large_now(conn, req);
			req->len += n;
			return MHD_YES;
		}
		switch (relay_append(req, upload_data, n))
		{
			case 0:
				return relay_too_large_now(conn, req);
			case -1:
				return MHD_NO;	/* out of memory: the sender will retry */
		}
		return MHD_YES;
	}
	if (req->reject != 0)
		return relay_reject(conn, req);
	if (req->route == RELAY_ROUTE_HEALTHZ)
		return relay_health(conn, req);
	return relay_ingest(conn, req);
}

/* one log line a request, when its answer went out (or the client left) */
static void
relay_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				enum MHD_RequestTerminationCode toe)
{
	RelayRequest *req = *con_cls;
	struct timespec now;
	char		line[512];
	const char *endpoint;

	(void) cls;
	(void) conn;
	(void) toe;
	if (req == NULL)
		return;
	*con_cls = NULL;
	if (req->route != RELAY_ROUTE_WEBHOOK)
		endpoint = "-";
	else
		endpoint = req->endpoint[0] ? req->endpoint : "*";
	clock_gettime(CLOCK_REALTIME, &now);
	relay_format_log(line, sizeof(line), &now, req->method, req->path, endpoint,
					 req->event_id, req->status, (long) (relay_now_ms() - req->started_ms),
					 req->batch, req->sqlstate);
	relay_log_raw(line);
	free(req->body);
	free(req);
	atomic_fetch_sub(&relay_inflight, 1);
}

/* the listening socket is ours, so that stopping can close it at once */
static int
relay_listen_socket(const char *spec, int *family)
{
	char		host[256];
	char		port[16];
	struct addrinfo hints;
	struct addrinfo *res;
	struct addrinfo *ai;
	int			fd = -1;
	int			err = 0;
	int			rc;

	if (!relay_parse_listen(spec, host, sizeof(host), port, sizeof(port)))
	{
		relay_log("invalid listen address \"%s\" (expected host:port)", spec);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0)
	{
		relay_log("cannot resolve listen address \"%s\": %s", spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
	{
		int			one = 1;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
					ai->ai_protocol);
		if (fd < 0)
		{
			err = errno;
			continue;
		}
		/* a restarted relay must get its port back at once */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
		{
			*family = ai->ai_family;
			break;
		}
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		relay_log("cannot listen on %s: %s", spec, strerror(err));
	return fd;
}

static void
relay_usage(FILE *out)
{
	fprintf(out,
			"Usage: stripepay-relay [OPTION]...\n"
			"Receives Stripe webhook events over HTTP and hands each one, byte for byte,\n"
			"to stripepay.stripe_ingest_webhook() in PostgreSQL.\n"
			"\n"
			"  POST /stripe              an event for any endpoint's signing secret\n"
			"  POST /stripe/<endpoint>   an event for that endpoint's secrets only\n"
			"  GET  /healthz             200 when the database answers SELECT 1\n"
			"\n"
			"Options (each may also be set by the environment variable shown):\n"
			"  --listen HOST:PORT    address to listen on            STRIPEPAY_RELAY_LISTEN\n"
			"                        (default 127.0.0.1:8787; [::1]:PORT for IPv6)\n"
			"  --dsn CONNINFO        libpq connection string         STRIPEPAY_RELAY_DSN\n"
			"                        (default empty: PGHOST, PGUSER, ... apply)\n"
			"  --pool N              database connections, 1-100     STRIPEPAY_RELAY_POOL\n"
			"                        (default 4)\n"
			"  --max-body BYTES      largest body accepted; k and M  STRIPEPAY_RELAY_MAX_BODY\n"
			"                        suffixes allowed (default 1M)\n"
			"  --timeout-ms MS       wait for a connection, and the  STRIPEPAY_RELAY_TIMEOUT_MS\n"
			"                        statement_timeout (default 10000)\n"
			"  --batch N             most events one transaction     STRIPEPAY_RELAY_BATCH\n"
			"                        commits, 1-1000 (default 32; 1: each alone)\n"
			"  --pipeline on|off     send a batch in one round trip  STRIPEPAY_RELAY_PIPELINE\n"
			"                        (libpq pipeline mode; default on)\n"
			"  --help                show this help and exit\n"
			"  --version             show the version and exit\n"
			"\n"
			"Connect as a login role that is a member of stripepay_webhook, which may do\n"
			"nothing but ingest.  Keep passwords out of the command line: use the\n"
			"environment, PGPASSFILE or peer authentication.  SIGTERM or SIGINT stops\n"
			"taking requests, finishes those in flight and exits 0; a second signal\n"
			"cancels their statements and exits 0 at once.\n");
}

/* flags override the environment, which overrides the defaults */
static int
relay_configure(int argc, char **argv)
{
	static const struct option options[] = {
		{"listen", required_argument, NULL, 'l'},
		{"dsn", required_argument, NULL, 'd'},
		{"pool", required_argument, NULL, 'p'},
		{"max-body", required_argument, NULL, 'm'},
		{"timeout-ms", required_argument, NULL, 't'},
		{"batch", required_argument, NULL, 'b'},
		{"pipeline", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	const char *pool = getenv("STRIPEPAY_RELAY_POOL");
	const char *max_body = getenv("STRIPEPAY_RELAY_MAX_BODY");
	const char *timeout = getenv("STRIPEPAY_RELAY_TIMEOUT_MS");
	const char *pool_src = "STRIPEPAY_RELAY_POOL";
	const char *max_body_src = "STRIPEPAY_RELAY_MAX_BODY";
	const char *timeout_src = "STRIPEPAY_RELAY_TIMEOUT_MS";
	const char *batch = getenv("STRIPEPAY_RELAY_BATCH");
	const char *batch_src = "STRIPEPAY_RELAY_BATCH";
	const char *pipeline = getenv("STRIPEPAY_RELAY_PIPELINE");
	const char *pipeline_src = "STRIPEPAY_RELAY_PIPELINE";
	char	   *errmsg = NULL;
	PQconninfoOption *parsed;
	int			c;

	relay_config.listen = getenv("STRIPEPAY_RELAY_LISTEN");
	relay_config.dsn = getenv("STRIPEPAY_RELAY_DSN");
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1)
	{
		switch (c)
		{
			case 'l':
				relay_config.listen = optarg;
				break;
			case 'd':
				relay_config.dsn = optarg;
				break;
			case 'p':
				pool = optarg;
				pool_src = "--pool";
				break;
			case 'm':
				max_body = optarg;
				max_body_src = "--max-body";
				break;
			case 't':
				timeout = optarg;
				timeout_src = "--timeout-ms";
				break;
			case 'b':
				batch = optarg;
				batch_src = "--batch";
				break;
			case 'P':
				pipeline = optarg;
				pipeline_src = "--pipeline";
				break;
			case 'h':
				relay_usage(stdout);
				exit(0);
			case 'V':
				printf("stripepay-relay %s\n", RELAY_VERSION);
				exit(0);
			default:
				fprintf(stderr, "Try \"stripepay-relay --help\" for more information.\n");
				return -1;
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "stripepay-relay: unexpected argument \"%s\"\n", argv[optind]);
		return -1;
	}
	if (relay_config.listen == NULL || relay_config.listen[0] == '\0')
		relay_config.listen = "127.0.0.1:8787";
	if (relay_config.dsn == NULL)
		relay_config.dsn = "";
	relay_config.pool = 4;
	relay_config.max_body = 1024 * 1024;
	relay_config.timeout_ms = 10000;
	relay_config.batch = 32;
	relay_config.pipeline = true;
	if (pool != NULL && !relay_parse_long(pool, 1, 100, &relay_config.pool))
	{
		fprintf(stderr, "stripepay-relay: %s must be an integer from 1 to 100\n", pool_src);
		return -1;
	}
	if (max_body != NULL &&
		!relay_parse_size(max_body, 1, 64L * 1024 * 1024, &relay_config.max_body))
	{
		fprintf(stderr, "stripepay-relay: %s must be a byte count from 1 to 64M\n", max_body_src);
		return -1;
	}
	if (timeout != NULL && !relay_parse_long(timeout, 100, 600000, &relay_config.timeout_ms))
	{
		fprintf(stderr, "stripepay-relay: %s must be milliseconds from 100 to 600000\n",
				timeout_src);
		return -1;
	}

	if (batch != NULL && !relay_parse_long(batch, 1, RELAY_BATCH_MAX, &relay_config.batch))
	{
		fprintf(stderr, "stripepay-relay: %s must be an integer from 1 to %d\n", batch_src,
				RELAY_BATCH_MAX);
		return -1;
	}
	if (pipeline != NULL && !relay_parse_bool(pipeline, &relay_config.pipeline))
	{
		fprintf(stderr, "stripepay-relay: %s must be on or off\n", pipeline_src);
		return -1;
	}

	/*
	 * libpq's parse error quotes the string, which may hold a password: say
	 * only that it is wrong.
	 */
	parsed = PQconninfoParse(relay_config.dsn, &errmsg);
	if (parsed == NULL)
	{
		PQfreemem(errmsg);
		fprintf(stderr, "stripepay-relay: the connection string (--dsn or STRIPEPAY_RELAY_DSN) "
				"is not valid libpq conninfo\n");
		return -1;
	}
	PQconninfoFree(parsed);
	return 0;
}

static void *
relay_cancel_all(void *arg)
{
	(void) arg;
	atomic_store(&relay_cancelled, relay_pool_cancel(relay_pool));
	return NULL;
}

/*
 * Stops now, without waiting for the requests in flight: libmicrohttpd
 * would join their threads, and a thread inside relay_pool_query may wait
 * for a connection and then for its statement, the timeout each.  Their
 * statements are cancelled, for at most a second (PQcancel may block on a
 * server that does not answer), and the process exits at once.  What they
 * did is rolled back by Postgres, or was committed; either is safe, since
 * Stripe resends what was not answered 200 and ingestion is idempotent.
 */
static void
relay_stop_now(const char *why)
{
	pthread_t	thread;

	relay_log("%s: stopping now, abandoning %d request(s) in flight", why,
			  atomic_load(&relay_inflight));
	if (pthread_create(&thread, NULL, relay_cancel_all, NULL) == 0)
	{
		int64_t		until = relay_now_ms() + 1000;
		struct timespec tick = {0, 10 * 1000000};

		while (atomic_load(&relay_cancelled) < 0 && relay_now_ms() < until)
			nanosleep(&tick, NULL);
		if (atomic_load(&relay_cancelled) > 0)
			relay_log("cancelled %d statement(s) in progress", atomic_load(&relay_cancelled));
	}
	relay_log("stopped");
	_exit(0);
}

int
main(int argc, char **argv)
{
	sigset_t	stop_signals;
	struct MHD_Daemon *daemon;
	MHD_socket	lfd;
	int			family = AF_INET;
	int			sig;
	unsigned int flags;
	int64_t		drain_deadline;

	if (relay_configure(argc, argv) != 0)
		return 2;

	/*
	 * Block the stop signals before any thread exists, so that every thread
	 * inherits the mask and only sigwait() below ever sees them.
	 */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	lfd = relay_listen_socket(relay_config.listen, &family);
	if (lfd < 0)
		return 1;
	relay_pool = relay_pool_create(relay_config.dsn, (int) relay_config.pool,
								   (int) relay_config.timeout_ms, (int) relay_config.batch,
								   relay_config.pipeline);
	if (relay_pool == NULL)
	{
		relay_log("out of memory");
		close(lfd);
		return 1;
	}

	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
		MHD_USE_ITC | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	if (family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* the logger comes first, or libmicrohttpd logs the options on its own */
	daemon = MHD_start_daemon(flags, 0, NULL, NULL, relay_handle, NULL,
							  MHD_OPTION_EXTERNAL_LOGGER, relay_mhd_log, NULL,
							  MHD_OPTION_LISTEN_SOCKET, lfd,
							  MHD_OPTION_NOTIFY_COMPLETED, relay_completed, NULL,
							  MHD_OPTION_UNESCAPE_CALLBACK, relay_unescape, NULL,
							  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) RELAY_IDLE_TIMEOUT_S,
							  MHD_OPTION_CONNECTION_LIMIT, (unsigned int) RELAY_MAX_CONNECTIONS,
							  MHD_OPTION_END);
	if (daemon == NULL)
	{
		relay_log("could not start the HTTP server on %s", relay_config.listen);
		close(lfd);
		relay_pool_destroy(relay_pool);
		return 1;
	}
	relay_log("listening on %s (pool %ld, batch %ld, pipeline %s, max body %ld bytes, "
			  "timeout %ld ms)",
			  relay_config.listen, relay_config.pool, relay_config.batch,
			  relay_config.pipeline ? "on" : "off", relay_config.max_body,
			  relay_config.timeout_ms);

	while (sigwait(&stop_signals, &sig) != 0)
		;
	relay_log("%s: finishing %d request(s) in flight, refusing new ones",
			  sig == SIGTERM ? "SIGTERM" : "SIGINT", atomic_load(&relay_inflight));
	atomic_store(&relay_stopping, true);

	/*
	 * Stop accepting.  libmicrohttpd hands the listening socket back but
	 * asks that its descriptor stay valid until MHD_stop_daemon(); putting
	 * /dev/null in its place closes the socket, so that new connections are
	 * refused now instead of waiting in the backlog.
	 */
	lfd = MHD_quiesce_daemon(daemon);
	if (lfd != MHD_INVALID_SOCKET)
	{
		int			devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (devnull >= 0)
		{
			dup2(devnull, lfd);
			close(devnull);
		}
	}

	/*
	 * A request waits at most the timeout for a connection, and its
	 * statement the timeout again: past that, something is stuck, and the
	 * relay stops as on a second signal, which stops it at once.
	 */
	drain_deadline = relay_now_ms() + 2 * relay_config.timeout_ms + 5000;
	while (atomic_load(&relay_inflight) > 0)
	{
		struct timespec tick = {0, 50 * 1000000};

		if (relay_now_ms() >= drain_deadline)
			relay_stop_now("requests still in flight at the drain deadline");
		sig = sigtimedwait(&stop_signals, NULL, &tick);
		if (sig == SIGTERM || sig == SIGINT)
			relay_stop_now(sig == SIGTERM ? "second signal (SIGTERM)" : "second signal (SIGINT)");
	}
	MHD_stop_daemon(daemon);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	relay_pool_destroy(relay_pool);
	relay_log("stopped");
	return 0;
}
