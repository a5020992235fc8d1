/*-------------------------------------------------------------------------
 *
 * sp_http.c
 *		The Stripe HTTP client.
 *
 * One easy handle and one multi handle live for the whole backend, so
 * consecutive requests reuse the kept-alive TLS connection.  Transfers run
 * through the multi interface in short polls, so a cancel or a
 * statement_timeout is noticed within ~50 ms instead of at libcurl's next
 * progress callback (which may be a second away).
 *
 * libcurl allocates with malloc and must never be longjmp'd through, so
 * nothing in here calls palloc or ereport from a libcurl callback, and every
 * malloc'd piece of a transfer hangs off a memory-context reset callback that
 * frees it when an ERROR unwinds past us.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "sp_http.h"
#include "pure/sp_retry.h"
#include "stripepay.h"

/* Stripe's largest responses (lists of 100 objects) stay far below this. */
#define SP_MAX_RESPONSE_BYTES (16 * 1024 * 1024)
#define SP_POLL_MS 50

static CURLM *sp_multi = NULL;
static CURL *sp_easy = NULL;
static bool sp_easy_attached = false;

/* The malloc'd state of one attempt, owned by a memory context. */
typedef struct SpTransfer
{
	struct curl_slist *headers;
	char	   *body;
	size_t		len;
	size_t		cap;
	bool		too_large;
	char		request_id[128];
	char		should_retry[16];
	char		retry_after[32];
	bool		replayed;
	char		errbuf[CURL_ERROR_SIZE];
	MemoryContextCallback cb;
} SpTransfer;

static void
sp_detach_easy(void)
{
	if (sp_easy_attached)
	{
		curl_multi_remove_handle(sp_multi, sp_easy);
		sp_easy_attached = false;
	}
}

/* Wipes the Authorization header before libcurl frees it. */
static void
sp_free_headers(struct curl_slist *headers)
{
	struct curl_slist *h;

	for (h = headers; h != NULL; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(headers);
}

/* Runs on normal completion and on ERROR alike: must not throw. */
static void
sp_transfer_release(void *arg)
{
	SpTransfer *t = (SpTransfer *) arg;

	sp_detach_easy();
	if (t->headers)
		sp_free_headers(t->headers);
	t->headers = NULL;
	free(t->body);
	t->body = NULL;
	t->len = t->cap = 0;
}

static size_t
sp_write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	SpTransfer *t = (SpTransfer *) userdata;
	size_t		n = size * nmemb;

	if (t->len + n + 1 > SP_MAX_RESPONSE_BYTES)
	{
		t->too_large = true;
		return 0;				/* makes libcurl fail with CURLE_WRITE_ERROR */
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		newcap = t->cap ? t->cap : 8192;
		char	   *p;

		while (newcap < t->len + n + 1)
			newcap *= 2;
		p = realloc(t->body, newcap);
		if (p == NULL)
			return 0;
		t->body = p;
		t->cap = newcap;
	}
	memcpy(t->body + t->len, data, n);
	t->len += n;
	t->body[t->len] = '\0';
	return n;
}

/* Copies a header's value, trimmed, if the line is "<name>: value". */
static bool
sp_header_value(const char *line, size_t len, const char *name, char *dst, size_t dstsize)
{
	size_t		namelen = strlen(name);
	size_t		start,
				end,
				n;

	if (len <= namelen || pg_strncasecmp(line, name, namelen) != 0 || line[namelen] != ':')
		return false;
	start = namelen + 1;
	end = len;
	while (start < end && (line[start] == ' ' || line[start] == '\t'))
		start++;
	while (end > start && (line[end - 1] == '\r' || line[end - 1] == '\n' ||
						   line[end - 1] == ' ' || line[end - 1] == '\t'))
		end--;
	n = Min(end - start, dstsize - 1);
	memcpy(dst, line + start, n);
	dst[n] = '\0';
	return true;
}

static size_t
sp_header_cb(char *line, size_t size, size_t nitems, void *userdata)
{
	SpTransfer *t = (SpTransfer *) userdata;
	size_t		len = size * nitems;
	char		replayed[16];

	/* a new status line (after a 100 Continue or a retry): forget earlier headers */
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		t->request_id[0] = t->should_retry[0] = t->retry_after[0] = '\0';
		t->replayed = false;
		return len;
	}
	if (sp_header_value(line, len, "Request-Id", t->request_id, sizeof(t->request_id)) ||
		sp_header_value(line, len, "Stripe-Should-Retry", t->should_retry, sizeof(t->should_retry)) ||
		sp_header_value(line, len, "Retry-After", t->retry_after, sizeof(t->retry_after)))
		return len;
	if (sp_header_value(line, len, "Idempotent-Replayed", replayed, sizeof(replayed)))
		t->replayed = (pg_strcasecmp(replayed, "true") == 0);
	return len;
}

static void
sp_ensure_handles(void)
{
	if (sp_multi == NULL)
	{
		sp_multi = curl_multi_init();
		if (sp_multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not create a libcurl multi handle.")));
	}
	if (sp_easy == NULL)
	{
		sp_easy = curl_easy_init();
		if (sp_easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not create a libcurl handle.")));
	}
	/* a transfer that an ERROR interrupted may still be attached */
	sp_detach_easy();
}

static void
sp_append_header(SpTransfer *t, const char *fmt, const char *value)
{
	char	   *line = psprintf(fmt, value);
	struct curl_slist *next = curl_slist_append(t->headers, line);

	explicit_bzero(line, strlen(line));
	pfree(line);
	if (next == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	t->headers = next;
}

#define SP_SETOPT(opt, val) \
	do { \
		if (curl_easy_setopt(sp_easy, (opt), (val)) != CURLE_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_INTERNAL_ERROR), \
					 errmsg("could not set libcurl option %s", #opt))); \
	} while (0)

static void
sp_prepare(const SpHttpRequest *req, SpTransfer *t, const char *url)
{
	curl_easy_reset(sp_easy);

	sp_append_header(t, "Authorization: Bearer %s", req->api_key);
	sp_append_header(t, "Stripe-Version: %s", sp_api_version);
	if (req->idempotency_key != NULL)
		sp_append_header(t, "Idempotency-Key: %s", req->idempotency_key);
	if (req->form != NULL)
		sp_append_header(t, "Content-Type: %s", "application/x-www-form-urlencoded");
	/* no 100-continue round trip for bodies over 1 kB */
	sp_append_header(t, "Expect:%s", "");

	SP_SETOPT(CURLOPT_URL, url);
	SP_SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SP_SETOPT(CURLOPT_NOSIGNAL, 1L);
	SP_SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	SP_SETOPT(CURLOPT_TIMEOUT_MS, (long) sp_timeout_ms);
	SP_SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long) Min(sp_connect_timeout_ms, sp_timeout_ms));
	SP_SETOPT(CURLOPT_USERAGENT, "stripepay/" STRIPEPAY_VERSION);
	SP_SETOPT(CURLOPT_HTTPHEADER, t->headers);
	SP_SETOPT(CURLOPT_WRITEFUNCTION, sp_write_cb);
	SP_SETOPT(CURLOPT_WRITEDATA, t);
	SP_SETOPT(CURLOPT_HEADERFUNCTION, sp_header_cb);
	SP_SETOPT(CURLOPT_HEADERDATA, t);
	SP_SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
	/* TLS verification is libcurl's default; say so, so no one turns it off */
	SP_SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SP_SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);

	if (strcmp(req->method, "POST") == 0)
	{
		SP_SETOPT(CURLOPT_POST, 1L);
		SP_SETOPT(CURLOPT_POSTFIELDSIZE, (long) (req->form ? req->form_len : 0));
		SP_SETOPT(CURLOPT_POSTFIELDS, req->form ? req->form : "");
	}
	else if (strcmp(req->method, "GET") == 0)
		SP_SETOPT(CURLOPT_HTTPGET, 1L);
	else
		SP_SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
}

/*
 * Runs one attempt to completion.  Interrupts are checked between short
 * polls; if one throws, the reset callback detaches the handle.
 */
static CURLcode
sp_perform(void)
{
	CURLMcode	mc;
	CURLMsg    *msg;
	int			running = 1;
	int			left;
	CURLcode	result = CURLE_OK;

	mc = curl_multi_add_handle(sp_multi, sp_easy);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start a Stripe request"),
				 errdetail_internal("%s", curl_multi_strerror(mc))));
	sp_easy_attached = true;

	for (;;)
	{
		mc = curl_multi_perform(sp_multi, &running);
		if (mc != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not run a Stripe request"),
					 errdetail_internal("%s", curl_multi_strerror(mc))));
		if (running == 0)
			break;

		CHECK_FOR_INTERRUPTS();

		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		mc = curl_multi_poll(sp_multi, NULL, 0, SP_POLL_MS, NULL);
		pgstat_report_wait_end();
		if (mc != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not wait for a Stripe response"),
					 errdetail_internal("%s", curl_multi_strerror(mc))));
	}

	while ((msg = curl_multi_info_read(sp_multi, &left)) != NULL)
	{
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == sp_easy)
			result = msg->data.result;
	}
	sp_detach_easy();
	return result;
}

/* Sleeps, waking for interrupts: a retry wait can be canceled at once. */
static void
sp_sleep_ms(long ms)
{
	TimestampTz deadline = GetCurrentTimestamp() + ms * 1000L;

	for (;;)
	{
		long		remaining;

		CHECK_FOR_INTERRUPTS();
		remaining = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		if (remaining <= 0)
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 remaining, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

static void
sp_raise_transport_error(const SpHttpRequest *req, CURLcode rc, const SpTransfer *t, int attempts)
{
	const char *why = t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc);

	if (rc == CURLE_OPERATION_TIMEDOUT)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NETWORK),
				 errmsg("request to Stripe timed out"),
				 errdetail_internal("%s (after %d attempt%s)", why, attempts, attempts == 1 ? "" : "s"),
				 errhint("stripepay.timeout_ms is %d ms.", sp_timeout_ms),
				 errcontext("Stripe request %s %s", req->method, req->path)));
	if (t->too_large)
		ereport(ERROR,
				(errcode(ERRCODE_SP_API_ERROR),
				 errmsg("response from Stripe is too large"),
				 errdetail("The response exceeded %d bytes.", SP_MAX_RESPONSE_BYTES),
				 errcontext("Stripe request %s %s", req->method, req->path)));
	ereport(ERROR,
			(errcode(ERRCODE_SP_NETWORK),
			 errmsg("could not reach Stripe"),
			 errdetail_internal("%s (after %d attempt%s)", why, attempts, attempts == 1 ? "" : "s"),
			 errhint("Check stripepay.api_base and outbound network access."),
			 errcontext("Stripe request %s %s", req->method, req->path)));
}

void
sp_http_request(const SpHttpRequest *req, SpHttpResponse *resp)
{
	MemoryContext callercxt = CurrentMemoryContext;
	char	   *url;
	int			retry = 0;

	Assert(strcmp(req->method, "POST") != 0 || req->idempotency_key != NULL);
	sp_ensure_handles();
	url = psprintf("%s%s", sp_api_base, req->path);

	for (;;)
	{
		MemoryContext reqcxt;
		SpTransfer *t;
		CURLcode	rc;
		long		status = 0;
		bool		retry_wanted;

		reqcxt = AllocSetContextCreate(callercxt, "stripepay request",
									   ALLOCSET_SMALL_SIZES);
		MemoryContextSwitchTo(reqcxt);
		t = palloc0(sizeof(SpTransfer));
		/* registered before the first malloc, so an ERROR frees it all */
		t->cb.func = sp_transfer_release;
		t->cb.arg = t;
		MemoryContextRegisterResetCallback(reqcxt, &t->cb);

		sp_prepare(req, t, url);
		rc = sp_perform();
		if (rc == CURLE_OK)
			curl_easy_getinfo(sp_easy, CURLINFO_RESPONSE_CODE, &status);

		retry_wanted = (retry < sp_max_retries) &&
			sp_retry_wanted(rc == CURLE_OK ? status : 0,
							rc == CURLE_OK ? t->should_retry : NULL) &&
			!t->too_large;

		if (!retry_wanted)
		{
			MemoryContextSwitchTo(callercxt);
			if (rc != CURLE_OK)
				sp_raise_transport_error(req, rc, t, retry + 1);

			resp->status = status;
			resp->body = palloc(t->len + 1);
			if (t->len > 0)
				memcpy(resp->body, t->body, t->len);
			resp->body[t->len] = '\0';
			resp->body_len = t->len;
			strlcpy(resp->request_id, t->request_id, sizeof(resp->request_id));
			resp->attempts = retry + 1;
			resp->replayed = t->replayed;
			MemoryContextDelete(reqcxt);
			pfree(url);
			return;
		}

		{
			long		delay = sp_retry_delay_ms(retry,
												  pg_prng_double(&pg_global_prng_state),
												  t->retry_after[0] ? t->retry_after : NULL);

			MemoryContextSwitchTo(callercxt);
			MemoryContextDelete(reqcxt);
			elog(DEBUG1, "stripepay: retrying %s %s in %ld ms (attempt %d, status %ld, %s)",
				 req->method, req->path, delay, retry + 1, status,
				 rc == CURLE_OK ? "response" : curl_easy_strerror(rc));
			sp_sleep_ms(delay);
		}
		retry++;
	}
}
