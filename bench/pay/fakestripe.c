/*
 * A stand-in for Stripe's POST /v1/checkout/sessions that answers as fast
 * as it can, so that bench/pay measures stripe_pay() and not the server.
 *
 *   fakestripe PORT_FILE TEMPLATE [THREADS]
 *
 * Listens on 127.0.0.1 on a free port, which it writes to PORT_FILE once it
 * is ready.  Each request with a test key, an Idempotency-Key and a form body
 * gets TEMPLATE (a Checkout Session recorded from test/emulator) with a new
 * session id and the current times, over HTTP/1.1 keep-alive, with the
 * Request-Id and Stripe-Version headers Stripe sends.  Anything else gets a
 * Stripe error, so a request stripepay should not make fails the bench.
 * SIGTERM or SIGINT: prints "answered=N refused=M connections=C" and exits.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PARTS 16

/* the template cut at its {{placeholders}}, kept in order */
static const char *part[MAX_PARTS];
static size_t part_len[MAX_PARTS];
static char field[MAX_PARTS][16];
static int nparts;
static char run_tag[41];
static atomic_ulong answered;
static atomic_ulong refused;
static atomic_ulong connections;
static volatile sig_atomic_t stop;

struct request
{
	size_t		body_len;
};

static void
on_signal(int sig)
{
	(void) sig;
	stop = 1;
}

static int
load_template(const char *path)
{
	FILE	   *f = fopen(path, "rb");
	static char buf[65536];
	size_t		n;
	char	   *p;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = buf;
	while (nparts < MAX_PARTS - 1)
	{
		char	   *open = strstr(p, "{{");
		char	   *close = open ? strstr(open, "}}") : NULL;

		if (open == NULL || close == NULL || close - open - 2 >= (long) sizeof(field[0]))
			break;
		part[nparts] = p;
		part_len[nparts] = (size_t) (open - p);
		memcpy(field[nparts], open + 2, (size_t) (close - open - 2));
		field[nparts][close - open - 2] = '\0';
		nparts++;
		p = close + 2;
	}
	part[nparts] = p;
	part_len[nparts] = strlen(p);
	field[nparts][0] = '\0';
	nparts++;
	return 0;
}

static enum MHD_Result
refuse(struct MHD_Connection *c, unsigned int status, const char *type, const char *message)
{
	char		body[512];
	struct MHD_Response *r;
	enum MHD_Result rc;
	int			n = snprintf(body, sizeof(body),
							 "{\n  \"error\": {\n    \"message\": \"%s\",\n    \"type\": \"%s\"\n  }\n}\n",
							 message, type);

	atomic_fetch_add(&refused, 1);
	r = MHD_create_response_from_buffer((size_t) n, body, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Request-Id", "req_benchrefused");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result
answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct request *req = *con_cls;
	const char *auth;
	const char *key;
	const char *ctype;
	char		body[65536 + 256];
	char		id[80];
	char		request_id[40];
	char		num[32];
	size_t		len = 0;
	unsigned long seq;
	time_t		now;
	int			i;
	struct MHD_Response *r;
	enum MHD_Result rc;

	(void) cls;
	(void) version;
	if (req == NULL)
	{
		req = calloc(1, sizeof(*req));
		if (req == NULL)
			return MHD_NO;
		*con_cls = req;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		(void) upload_data;
		req->body_len += *upload_data_size;
		*upload_data_size = 0;
		return MHD_YES;
	}

	if (strcmp(method, "POST") != 0 || strcmp(url, "/v1/checkout/sessions") != 0)
		return refuse(c, 404, "invalid_request_error", "Unrecognized request URL.");
	auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
	ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	if (auth == NULL || strncmp(auth, "Bearer sk_test_", 15) != 0)
		return refuse(c, 401, "invalid_request_error", "Invalid API Key provided.");
	if (key == NULL || ctype == NULL || strncmp(ctype, "application/x-www-form-urlencoded", 33) != 0 ||
		req->body_len == 0)
		return refuse(c, 400, "invalid_request_error", "A form body and an Idempotency-Key are required.");

	seq = atomic_fetch_add(&answered, 1) + 1;
	now = time(NULL);
	/* cs_test_a1 and 56 characters, as Stripe's; unique in the run */
	snprintf(id, sizeof(id), "cs_test_a1%.40s%016lu", run_tag, seq);
	snprintf(request_id, sizeof(request_id), "req_%014lu", seq);
	for (i = 0; i < nparts; i++)
	{
		const char *v = "";

		memcpy(body + len, part[i], part_len[i]);
		len += part_len[i];
		if (strcmp(field[i], "id") == 0)
			v = id;
		else if (strcmp(field[i], "created") == 0)
			v = (snprintf(num, sizeof(num), "%ld", (long) now), num);
		else if (strcmp(field[i], "expires_at") == 0)
			v = (snprintf(num, sizeof(num), "%ld", (long) now + 86400), num);
		memcpy(body + len, v, strlen(v));
		len += strlen(v);
	}
	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Request-Id", request_id);
	MHD_add_response_header(r, "Stripe-Version", "2026-10-28.endive");
	MHD_add_response_header(r, "Idempotency-Key", key);
	rc = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return rc;
}

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void) cls;
	(void) c;
	(void) toe;
	free(*con_cls);
	*con_cls = NULL;
}

/* counted, so that the bench can tell kept-alive connections from new ones */
static void
connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
	(void) cls;
	(void) c;
	(void) socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add(&connections, 1);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in addr;
	socklen_t	alen = sizeof(addr);
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	unsigned int threads = argc > 3 ? (unsigned int) atoi(argv[3]) : 2;
	FILE	   *f;
	int			i;
	const char	alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

	if (argc < 3)
	{
		fprintf(stderr, "usage: fakestripe PORT_FILE TEMPLATE [THREADS]\n");
		return 2;
	}
	if (load_template(argv[2]) != 0)
	{
		perror(argv[2]);
		return 1;
	}
	srand((unsigned int) time(NULL) ^ (unsigned int) getpid());
	for (i = 0; i < 40; i++)
		run_tag[i] = alnum[rand() % 62];

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = 0;
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
						 answer, NULL,
						 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
						 MHD_OPTION_THREAD_POOL_SIZE, threads,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 256,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 120,
						 MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
						 MHD_OPTION_NOTIFY_CONNECTION, connection, NULL,
						 MHD_OPTION_END);
	if (d == NULL)
	{
		fprintf(stderr, "fakestripe: could not start the server\n");
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
	if (info == NULL || getsockname(info->listen_fd, (struct sockaddr *) &addr, &alen) != 0)
	{
		fprintf(stderr, "fakestripe: no listening port\n");
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	f = fopen(argv[1], "w");
	if (f == NULL)
	{
		perror(argv[1]);
		return 1;
	}
	fprintf(f, "%d\n", ntohs(addr.sin_port));
	fclose(f);
	while (!stop)
		sleep(1);				/* a signal cuts it short */
	MHD_stop_daemon(d);
	printf("answered=%lu refused=%lu connections=%lu\n", atomic_load(&answered), atomic_load(&refused),
		   atomic_load(&connections));
	return 0;
}
