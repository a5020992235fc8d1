/*
 * The HTTP round trip alone: what stripe_pay()'s request to Stripe costs
 * without stripe_pay, for bench/pay to subtract.  THREADS threads, each
 * with its own libcurl handle kept alive, send COUNT requests each, as
 * stripepay sends them (POST, a form of the same fields, the same headers,
 * a new Idempotency-Key each), one at a time, and time each answer.
 *
 *   rawloop URL THREADS COUNT [SECONDS]
 *
 * Prints "RAW requests=... errors=... seconds=... rate=... avg_ms=...
 * p50_ms=... p99_ms=... max_ms=...".  Stops after COUNT requests a thread,
 * or SECONDS (default 120), whichever comes first.
 */
#define _GNU_SOURCE				/* memmem */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct worker
{
	pthread_t	thread;
	int			no;
	long		count;
	long		done;
	long		errors;
	double	   *lat_us;
};

static const char *url;
static double deadline;

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* every answer must be a Checkout Session */
static size_t
sink(char *data, size_t size, size_t nmemb, void *userdata)
{
	int		   *ok = userdata;

	if (memmem(data, size * nmemb, "\"cs_test_a1", 11) != NULL)
		*ok = 1;
	return size * nmemb;
}

static void *
run(void *arg)
{
	struct worker *w = arg;
	CURL	   *h = curl_easy_init();
	char		form[2048];
	char		key[96];
	long		i;

	if (h == NULL)
	{
		w->errors = w->count;
		return NULL;
	}
	for (i = 0; i < w->count && now_us() < deadline; i++)
	{
		struct curl_slist *headers = NULL;
		long		order = 100000000L + w->no * 1000000L + i;
		long		status = 0;
		int			ok = 0;
		double		t0;
		CURLcode	rc;

		snprintf(form, sizeof(form),
				 "mode=payment&line_items%%5B0%%5D%%5Bprice_data%%5D%%5Bcurrency%%5D=usd"
				 "&line_items%%5B0%%5D%%5Bprice_data%%5D%%5Bunit_amount%%5D=1999"
				 "&line_items%%5B0%%5D%%5Bprice_data%%5D%%5Bproduct_data%%5D%%5Bname%%5D=Cheese+%%26+Co."
				 "&line_items%%5B0%%5D%%5Bprice_data%%5D%%5Bproduct_data%%5D%%5Bdescription%%5D=Cheese%%2C+delivered"
				 "&line_items%%5B0%%5D%%5Bquantity%%5D=1"
				 "&success_url=https%%3A%%2F%%2Fshop.example%%2Fthanks%%3Fsession%%3D%%7BCHECKOUT_SESSION_ID%%7D"
				 "&cancel_url=https%%3A%%2F%%2Fshop.example%%2Fcart&client_reference_id=%ld"
				 "&metadata%%5Border_id%%5D=%ld&metadata%%5Bstripepay_payment_id%%5D=%ld"
				 "&payment_intent_data%%5Bmetadata%%5D%%5Border_id%%5D=%ld"
				 "&payment_intent_data%%5Bmetadata%%5D%%5Bstripepay_payment_id%%5D=%ld",
				 order, order, order, order, order);
		snprintf(key, sizeof(key), "Idempotency-Key: stripepay-bench-raw-%d-%ld", w->no, i);
		headers = curl_slist_append(headers, "Authorization: Bearer sk_test_bench_raw_loop_0000000000");
		headers = curl_slist_append(headers, "Stripe-Version: 2026-10-28.endive");
		headers = curl_slist_append(headers, key);
		headers = curl_slist_append(headers, "Content-Type: application/x-www-form-urlencoded");
		headers = curl_slist_append(headers, "Expect:");
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
		curl_easy_setopt(h, CURLOPT_USERAGENT, "stripepay-bench-rawloop");
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long) strlen(form));
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &ok);

		t0 = now_us();
		rc = curl_easy_perform(h);
		w->lat_us[w->done] = now_us() - t0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_slist_free_all(headers);
		if (rc != CURLE_OK || status != 200 || !ok)
			w->errors++;
		w->done++;
	}
	curl_easy_cleanup(h);
	return NULL;
}

static int
cmp(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	int			nthreads;
	long		count;
	double		t0;
	double		secs;
	double		sum = 0;
	double	   *all;
	long		n = 0;
	long		errors = 0;
	struct worker *w;
	int			i;

	if (argc < 4)
	{
		fprintf(stderr, "usage: rawloop URL THREADS COUNT [SECONDS]\n");
		return 2;
	}
	url = argv[1];
	nthreads = atoi(argv[2]);
	count = atol(argv[3]);
	if (nthreads < 1 || count < 1)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	w = calloc((size_t) nthreads, sizeof(*w));
	t0 = now_us();
	deadline = t0 + (argc > 4 ? atof(argv[4]) : 120.0) * 1e6;
	for (i = 0; i < nthreads; i++)
	{
		w[i].no = i;
		w[i].count = count;
		w[i].lat_us = calloc((size_t) count, sizeof(double));
		pthread_create(&w[i].thread, NULL, run, &w[i]);
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(w[i].thread, NULL);
	secs = (now_us() - t0) / 1e6;
	all = calloc((size_t) nthreads * (size_t) count, sizeof(double));
	for (i = 0; i < nthreads; i++)
	{
		memcpy(all + n, w[i].lat_us, sizeof(double) * (size_t) w[i].done);
		n += w[i].done;
		errors += w[i].errors;
	}
	for (i = 0; i < n; i++)
		sum += all[i];
	qsort(all, (size_t) n, sizeof(double), cmp);
	printf("RAW requests=%ld errors=%ld seconds=%.3f rate=%.1f avg_ms=%.4f p50_ms=%.4f p99_ms=%.4f max_ms=%.4f\n",
		   n, errors, secs, n / secs, n ? sum / n / 1000 : 0, n ? all[n / 2] / 1000 : 0,
		   n ? all[(long) (n * 0.99)] / 1000 : 0, n ? all[n - 1] / 1000 : 0);
	curl_global_cleanup();
	return errors > 0 || n < (long) nthreads * count;
}
