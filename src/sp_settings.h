/*-------------------------------------------------------------------------
 *
 * sp_settings.h
 *		The settings row, the signing secrets and the key files, kept in
 *		backend memory until they change.
 *
 * Every call reads them, and an ingest reads the secrets before anything
 * else, so they are cached; a trigger on their tables invalidates every
 * backend's copy when a transaction that changed them commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_SETTINGS_H
#define SP_SETTINGS_H

#include "postgres.h"

#include "datatype/timestamp.h"

typedef struct SpSettings
{
	bool		found;			/* configure() has run */
	char	   *secret_key;		/* NULL when there is none */
	bool		key_from_file;	/* stripepay.secret_key_file */
	char	   *publishable_key;
	char	   *brand_name;
	char	   *brand_logo;
	char	   *brand_slogan;
	char	   *success_url;
	char	   *cancel_url;
	char	   *payment_flow;	/* "checkout" or "payment_intent" */
	Oid			flow_role;		/* InvalidOid: the calling role */
	char	   *flow_role_name;	/* NULL when that role was dropped */
	int64		event_retention_s;	/* prune_events' default window */
	bool		user_triggers;	/* users' triggers on stripepay's tables */
	int64		unrestored_triggers;	/* user_trigger rows without their
										 * trigger: a restore's */
} SpSettings;

/* One live signing secret. */
typedef struct SpSecret
{
	const char *endpoint;
	const char *secret;
} SpSecret;

/*
 * ERROR (SP009) unless the extension installed in this database is of
 * this library's version: SQL objects of another version would be used
 * by code that does not know them.
 */
extern void sp_settings_check_version(void);

/* Copies the settings into *s, in the current memory context. */
extern void sp_settings_load(SpSettings *s);

/* ERROR (SP010) when there is no secret key / no success_url. */
extern void sp_settings_require_key(const SpSettings *s);
extern void sp_settings_require_success_url(const SpSettings *s);

/* "live" or "test": the mode of a Stripe API key; NULL for NULL. */
extern const char *sp_key_mode(const char *key);

/*
 * The signing secrets live now for endpoint (NULL: every endpoint), newest
 * first, from the table and the secrets file; returns how many.
 */
extern int	sp_settings_webhook_secrets(const char *endpoint, SpSecret **secrets);

/* The GUCs naming the key files (stripepay.c defines them). */
extern char *sp_secret_key_file;
extern char *sp_webhook_secrets_file;

/* Registers the cache's invalidation; called once, from _PG_init. */
extern void sp_settings_init(void);

#endif							/* SP_SETTINGS_H */
