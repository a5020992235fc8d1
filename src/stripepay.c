/*-------------------------------------------------------------------------
 *
 * stripepay.c
 *		Module magic, settings (GUCs) and process-wide initialisation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "sp_settings.h"
#include "stripepay.h"

#ifdef PG_MODULE_MAGIC_EXT
PG_MODULE_MAGIC_EXT(.name = "stripepay",.version = STRIPEPAY_VERSION);
#else
PG_MODULE_MAGIC;
#endif

char	   *sp_api_base = NULL;
char	   *sp_api_version = NULL;
int			sp_timeout_ms = 30000;
int			sp_connect_timeout_ms = 10000;
int			sp_max_retries = 2;
int			sp_webhook_tolerance = 300;
bool		sp_notify = true;
bool		sp_notify_worker = true;

/* the name is Postgres's, which calls it on load */
void		_PG_init(void);		/* NOLINT(bugprone-reserved-identifier) */

/*
 * Only http and https, and the URL must look like one: a base URL is joined
 * with "/v1/..." paths, so a trailing slash or a query would corrupt them.
 */
static bool
check_api_base(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	size_t		len;

	(void) extra;
	(void) source;
	if (v == NULL)
		return false;
	len = strlen(v);
	if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
	{
		GUC_check_errdetail("The Stripe API base URL must start with https:// or http://.");
		return false;
	}
	if (len > 0 && v[len - 1] == '/')
	{
		GUC_check_errdetail("The Stripe API base URL must not end with a slash.");
		return false;
	}
	if (strpbrk(v, "?# \t\r\n") != NULL)
	{
		GUC_check_errdetail("The Stripe API base URL must not contain a query, a fragment or white space.");
		return false;
	}
	return true;
}

static bool
check_api_version(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	int			i;

	(void) extra;
	(void) source;
	if (v == NULL || strlen(v) < 10)
	{
		GUC_check_errdetail("A Stripe API version looks like \"%s\".", SP_DEFAULT_API_VERSION);
		return false;
	}
	/* YYYY-MM-DD, then optionally a release name: it goes into a header */
	for (i = 0; v[i]; i++)
	{
		char		c = v[i];

		if (i < 10 ? !((c >= '0' && c <= '9') || ((i == 4 || i == 7) && c == '-'))
			: !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_'))
		{
			GUC_check_errdetail("A Stripe API version looks like \"%s\".", SP_DEFAULT_API_VERSION);
			return false;
		}
	}
	return true;
}

void
_PG_init(void)
{
	/*
	 * Superuser-only: whoever controls the base URL receives the secret key
	 * in the Authorization header.
	 */
	DefineCustomStringVariable("stripepay.api_base",
							   "Base URL of the Stripe API.",
							   "Only superusers may change it, since requests carry the secret key.",
							   &sp_api_base,
							   SP_DEFAULT_API_BASE,
							   PGC_SUSET,
							   0,
							   check_api_base, NULL, NULL);

	DefineCustomStringVariable("stripepay.api_version",
							   "Stripe API version sent as Stripe-Version on every request.",
							   "Event payloads and responses are read in the shapes of this version.",
							   &sp_api_version,
							   SP_DEFAULT_API_VERSION,
							   PGC_SUSET,
							   0,
							   check_api_version, NULL, NULL);

	DefineCustomIntVariable("stripepay.timeout_ms",
							"Maximum duration of one attempt of a Stripe request.",
							NULL,
							&sp_timeout_ms,
							30000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stripepay.connect_timeout_ms",
							"Maximum time to establish a connection to Stripe.",
							NULL,
							&sp_connect_timeout_ms,
							10000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stripepay.max_retries",
							"Retries of a Stripe request after a network error, 409, 429 or 5xx.",
							NULL,
							&sp_max_retries,
							2, 0, 10,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	/*
	 * Superuser-only: a wider window lets a captured delivery be replayed
	 * for longer.
	 */
	DefineCustomIntVariable("stripepay.webhook_tolerance",
							"Largest difference between a webhook's signed timestamp and now.",
							"Older and further-future signatures are refused.",
							&sp_webhook_tolerance,
							300, 0, 365 * 24 * 3600,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("stripepay.notify",
							 "Sends NOTIFY stripepay_payment, stripepay_refund and stripepay_recurring_payment.",
							 "Off saves the commit-time serialization NOTIFY costs when no one listens.",
							 &sp_notify,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("stripepay.notify_worker",
							 "Sends notifications from a background worker, after the ingest commits.",
							 "Off: each ingest sends its own NOTIFY, and notifying commits wait for one another.",
							 &sp_notify_worker,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * Superuser-only: a path to a file the server reads, as ssl_key_file
	 * is, so that no statement ever carries the key.  Per database with
	 * ALTER DATABASE ... SET.
	 */
	DefineCustomStringVariable("stripepay.secret_key_file",
							   "File holding the Stripe secret key; overrides configure(secret_key).",
							   "Owned by the server's user with no group or other access (0600), or by root (0640).",
							   &sp_secret_key_file,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("stripepay.webhook_secrets_file",
							   "File holding webhook signing secrets, one a line: [endpoint] whsec_...",
							   "Read beside those add_webhook_secret() stored; same permissions as stripepay.secret_key_file.",
							   &sp_webhook_secrets_file,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("stripepay");
	sp_settings_init();

	/* once per process, before any handle exists */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
}
