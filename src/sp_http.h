/*-------------------------------------------------------------------------
 *
 * sp_http.h
 *		The Stripe HTTP client: libcurl, one kept-alive connection per
 *		backend, retries, timeouts and cancellation.  It knows nothing of
 *		tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_HTTP_H
#define SP_HTTP_H

typedef struct SpHttpRequest
{
	const char *method;			/* "GET", "POST" or "DELETE" */
	const char *path;			/* "/v1/checkout/sessions", query included */
	const char *form;			/* x-www-form-urlencoded body, or NULL */
	size_t		form_len;
	const char *api_key;
	const char *idempotency_key;	/* required for POST */
} SpHttpRequest;

typedef struct SpHttpResponse
{
	long		status;			/* HTTP status of the last attempt */
	char	   *body;			/* palloc'd, NUL-terminated */
	size_t		body_len;
	char		request_id[128];	/* Stripe's Request-Id, or "" */
	int			attempts;
	bool		replayed;		/* Idempotent-Replayed: true */
} SpHttpResponse;

/*
 * Sends the request, retrying what Stripe's own SDKs retry.  Returns the
 * final response whatever its status; raises an ERROR only when no response
 * could be had at all (network failure, timeout) or the query was canceled.
 */
extern void sp_http_request(const SpHttpRequest *req, SpHttpResponse *resp);

#endif							/* SP_HTTP_H */
