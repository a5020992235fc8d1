/*-------------------------------------------------------------------------
 *
 * sp_settings.c
 *		The settings, the webhook signing secrets and the key files, read
 *		once and kept until they change.
 *
 * The settings row and the secrets are read by every call (the ingest
 * needs the secrets before it may look at a payload), so each backend
 * keeps a copy.  Their tables carry a trigger (stripepay._settings_changed)
 * that sends a relation cache invalidation for the table when a
 * transaction changes it: at commit every backend drops its copy, and the
 * changing backend does so at the end of its own statement.  The key files
 * are read again whenever their modification time, size or inode changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pure/sp_formats.h"
#include "sp_settings.h"
#include "sp_stmt.h"
#include "sp_user_triggers.h"
#include "stripepay.h"

PG_FUNCTION_INFO_V1(stripepay_settings_changed);

char	   *sp_secret_key_file = NULL;
char	   *sp_webhook_secrets_file = NULL;

#define SP_KEY_FILE_MAX 4096
#define SP_SECRETS_FILE_MAX (64 * 1024)

typedef struct CachedSecret
{
	char	   *endpoint;
	char	   *secret;
	bool		expires;
	TimestampTz expires_at;
} CachedSecret;

typedef struct KeyFile
{
	char	   *path;
	struct stat st;
	char	   *content;		/* in cache_cxt */
} KeyFile;

static MemoryContext cache_cxt = NULL;
static MemoryContext file_cxt = NULL;
static MemoryContext parsed_cxt = NULL;
static bool version_ok = false;
static bool settings_valid = false;
static SpSettings cached;
static int64 cached_retention;
static bool secrets_valid = false;
static CachedSecret *table_secrets = NULL;
static int	ntable_secrets = 0;
static KeyFile key_file;
static KeyFile secrets_file;
static CachedSecret *file_secrets = NULL;
static int	nfile_secrets = 0;

static SpStmt version_stmt = {
	.sql = "SELECT extversion FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'stripepay'"
};
static SpStmt settings_stmt = {
	.sql = "SELECT secret_key, publishable_key, brand_name, brand_logo, brand_slogan,"
	"       success_url, cancel_url, payment_flow, flow_role::pg_catalog.oid,"
	"       pg_catalog.date_part('epoch', event_retention)::pg_catalog.int8"
	"  FROM stripepay.settings"
};
/* what sp_call_begin needs to know of the users' triggers (sp_user_triggers.c) */
static SpStmt user_triggers_stmt = {
	.sql = SP_MEMBERS_CTE
	" SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t JOIN members m"
	"          ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND m.objid = t.tgrelid"
	"         WHERE " SP_USER_TRIGGER_COND "),"
	"        (SELECT pg_catalog.count(*) FROM stripepay.user_trigger u"
	"          WHERE NOT " SP_RECORDED_TRIGGER_EXISTS ")"
};
static SpStmt secrets_stmt = {
	.sql = "SELECT endpoint, secret, expires_at FROM stripepay.webhook_secret ORDER BY id DESC"
};

static void
invalidate(Datum arg pg_attribute_unused(), Oid relid pg_attribute_unused())
{
	/*
	 * Any relation's invalidation may be one of ours (their oids change
	 * when the extension is made again); reading the row again is cheap.
	 */
	version_ok = false;
	settings_valid = false;
	secrets_valid = false;
}

void
sp_settings_init(void)
{
	CacheRegisterRelcacheCallback(invalidate, (Datum) 0);
}

/*
 * stripepay._settings_changed(): AFTER ... FOR EACH STATEMENT on the
 * settings and secrets tables.  The invalidation goes out at commit.
 */
Datum
stripepay_settings_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("stripepay._settings_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

static MemoryContext
sp_cache_cxt(void)
{
	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(CacheMemoryContext, "stripepay settings",
										  ALLOCSET_SMALL_SIZES);
	return cache_cxt;
}

void
sp_settings_check_version(void)
{
	SpRows		rows;
	char	   *installed;

	if (version_ok)
		return;
	sp_stmt_run(&version_stmt, NULL, NULL, SP_AS_OWNER, 1, &rows);
	installed = rows.nrows > 0 ? sp_rows_text(&rows, 0, 1) : NULL;
	if (installed == NULL || strcmp(installed, STRIPEPAY_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SP_VERSION_MISMATCH),
				 errmsg("the stripepay library is version %s, but the extension in this database is version %s",
						STRIPEPAY_VERSION, installed ? installed : "missing"),
				 errhint("Run ALTER EXTENSION stripepay UPDATE in this database.")));
	version_ok = true;
}

static char *
cache_strdup(const char *s)
{
	return s ? MemoryContextStrdup(sp_cache_cxt(), s) : NULL;
}

/*
 * Reads a key file if it changed since it was last read.  Like
 * ssl_key_file: a regular file owned by the server's user without group or
 * other access, or owned by root and readable by the group at most.
 * Messages name the file, never what is in it.
 */
static const char *
read_key_file(KeyFile *kf, const char *path, const char *guc, size_t max, bool *changed)
{
	struct stat st;
	FILE	   *f;
	char	   *buf;
	size_t		n;

	*changed = false;
	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read the file %s names, \"%s\": %m", guc, path)));
	if (kf->content != NULL && kf->path != NULL && strcmp(kf->path, path) == 0 &&
		kf->st.st_mtime == st.st_mtime && kf->st.st_size == st.st_size &&
		kf->st.st_ino == st.st_ino && kf->st.st_ctime == st.st_ctime)
		return kf->content;

	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" is not a regular file", guc, path)));
	if (st.st_uid != geteuid() && st.st_uid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" must be owned by the database server's user or by root", guc, path)));
	if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
		(st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" has group or world access", guc, path),
				 errdetail("It must be u=rw (0600) or less if owned by the server's user, "
						   "or u=rw,g=r (0640) or less if owned by root."),
				 errhint("chmod 0600 \"%s\"", path)));
	if ((size_t) st.st_size > max)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" is larger than %zu bytes", guc, path, max)));

	f = AllocateFile(path, "r");
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the file %s names, \"%s\": %m", guc, path)));
	if (file_cxt == NULL)
		file_cxt = AllocSetContextCreate(CacheMemoryContext, "stripepay key files",
										 ALLOCSET_SMALL_SIZES);
	buf = MemoryContextAllocZero(file_cxt, max + 1);
	n = fread(buf, 1, max, f);
	if (ferror(f))
	{
		FreeFile(f);
		explicit_bzero(buf, max + 1);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read the file %s names, \"%s\": %m", guc, path)));
	}
	FreeFile(f);
	buf[n] = '\0';

	if (kf->content != NULL)
	{
		explicit_bzero(kf->content, strlen(kf->content));
		pfree(kf->content);
	}
	if (kf->path != NULL)
		pfree(kf->path);
	kf->content = buf;
	kf->path = MemoryContextStrdup(file_cxt, path);
	kf->st = st;
	*changed = true;
	return buf;
}

/* The API key in stripepay.secret_key_file: its first line, trimmed. */
static char *
key_from_file(void)
{
	bool		changed;
	const char *content = read_key_file(&key_file, sp_secret_key_file, "stripepay.secret_key_file",
										SP_KEY_FILE_MAX, &changed);
	size_t		len = strcspn(content, "\r\n");
	char	   *key;

	while (len > 0 && (content[len - 1] == ' ' || content[len - 1] == '\t'))
		len--;
	key = pnstrdup(content, len);
	if (sp_secret_key_problem(key) != NULL)
	{
		explicit_bzero(key, len);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("stripepay.secret_key_file \"%s\" holds no valid Stripe secret key",
						sp_secret_key_file),
				 errdetail("Its first line must be the key alone: sk_test_…, sk_live_…, rk_test_… or rk_live_….")));
	}
	return key;
}

/*
 * The secrets in stripepay.webhook_secrets_file: one a line, "whsec_…" (the
 * endpoint "default") or "<endpoint> whsec_…"; # starts a comment.
 */
static void
load_secrets_file(void)
{
	const char *content;
	const char *line;
	int			lineno = 0;
	int			cap = 8;
	bool		changed;
	MemoryContext old;

	if (sp_webhook_secrets_file == NULL || sp_webhook_secrets_file[0] == '\0')
	{
		nfile_secrets = 0;
		return;
	}
	content = read_key_file(&secrets_file, sp_webhook_secrets_file, "stripepay.webhook_secrets_file",
							SP_SECRETS_FILE_MAX, &changed);
	if (!changed && parsed_cxt != NULL)
		return;
	nfile_secrets = 0;
	if (parsed_cxt == NULL)
		parsed_cxt = AllocSetContextCreate(CacheMemoryContext, "stripepay secrets file",
										   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(parsed_cxt);
	old = MemoryContextSwitchTo(parsed_cxt);
	file_secrets = palloc(sizeof(CachedSecret) * cap);
	for (line = content; *line; )
	{
		size_t		len = strcspn(line, "\n");
		char	   *text = pnstrdup(line, len);
		char	   *fields[3];
		int			nfields = 0;
		char	   *tok;
		char	   *save = NULL;

		lineno++;
		line += len + (line[len] == '\n' ? 1 : 0);
		if ((tok = strchr(text, '#')) != NULL)
			*tok = '\0';
		for (tok = strtok_r(text, " \t\r", &save); tok && nfields < 3; tok = strtok_r(NULL, " \t\r", &save))
			fields[nfields++] = tok;
		if (nfields == 0)
			continue;
		if (nfields > 2 ||
			(nfields == 2 && !sp_endpoint_name_valid(fields[0], strlen(fields[0]))) ||
			!sp_webhook_secret_valid(fields[nfields - 1]))
		{
			MemoryContextSwitchTo(old);
			MemoryContextReset(parsed_cxt);
			nfile_secrets = 0;
			/* read and refused again next time, until the file is fixed */
			secrets_file.st.st_mtime = 0;
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("line %d of stripepay.webhook_secrets_file \"%s\" is not \"[endpoint] whsec_…\"",
							lineno, sp_webhook_secrets_file)));
		}
		if (nfile_secrets == cap)
		{
			cap *= 2;
			file_secrets = repalloc(file_secrets, sizeof(CachedSecret) * cap);
		}
		file_secrets[nfile_secrets].endpoint = nfields == 2 ? fields[0] : "default";
		file_secrets[nfile_secrets].secret = fields[nfields - 1];
		file_secrets[nfile_secrets].expires = false;
		nfile_secrets++;
	}
	MemoryContextSwitchTo(old);
}

void
sp_settings_load(SpSettings *s)
{
	if (!settings_valid)
	{
		SpRows		rows;
		bool		isnull;

		MemoryContextReset(sp_cache_cxt());
		table_secrets = NULL;
		secrets_valid = false;
		memset(&cached, 0, sizeof(cached));
		cached_retention = 90 * SECS_PER_DAY;
		sp_stmt_run(&settings_stmt, NULL, NULL, SP_AS_OWNER, 1, &rows);
		if (rows.nrows > 0)
		{
			Oid			role;

			cached.found = true;
			cached.secret_key = cache_strdup(sp_rows_text(&rows, 0, 1));
			cached.publishable_key = cache_strdup(sp_rows_text(&rows, 0, 2));
			cached.brand_name = cache_strdup(sp_rows_text(&rows, 0, 3));
			cached.brand_logo = cache_strdup(sp_rows_text(&rows, 0, 4));
			cached.brand_slogan = cache_strdup(sp_rows_text(&rows, 0, 5));
			cached.success_url = cache_strdup(sp_rows_text(&rows, 0, 6));
			cached.cancel_url = cache_strdup(sp_rows_text(&rows, 0, 7));
			cached.payment_flow = cache_strdup(sp_rows_text(&rows, 0, 8));
			role = DatumGetObjectId(sp_rows_get(&rows, 0, 9, &isnull));
			cached.flow_role = isnull ? InvalidOid : role;
			cached_retention = sp_rows_int64(&rows, 0, 10, &isnull);
			if (isnull)
				cached_retention = 90 * SECS_PER_DAY;
		}
		if (cached.payment_flow == NULL)
			cached.payment_flow = cache_strdup("checkout");
		sp_stmt_run(&user_triggers_stmt, NULL, NULL, SP_AS_OWNER, 1, &rows);
		cached.user_triggers = sp_rows_bool(&rows, 0, 1, NULL);
		cached.unrestored_triggers = sp_rows_int64(&rows, 0, 2, NULL);
		settings_valid = true;
	}

	*s = cached;
	s->event_retention_s = cached_retention;
	s->key_from_file = false;
	if (sp_secret_key_file != NULL && sp_secret_key_file[0] != '\0')
	{
		s->secret_key = key_from_file();
		s->key_from_file = true;
	}
	else if (s->secret_key != NULL)
		s->secret_key = pstrdup(s->secret_key);

	s->flow_role_name = NULL;
	if (OidIsValid(s->flow_role))
	{
		HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(s->flow_role));

		if (HeapTupleIsValid(tuple))
		{
			s->flow_role_name = pstrdup(NameStr(((Form_pg_authid) GETSTRUCT(tuple))->rolname));
			ReleaseSysCache(tuple);
		}
	}
}

void
sp_settings_require_key(const SpSettings *s)
{
	if (s->secret_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_CONFIGURED),
				 errmsg("stripepay has no Stripe secret key"),
				 errhint("An admin must first run SELECT stripepay.configure(secret_key => 'sk_test_...'), "
						 "or a superuser set stripepay.secret_key_file.")));
}

void
sp_settings_require_success_url(const SpSettings *s)
{
	if (s->success_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SP_NOT_CONFIGURED),
				 errmsg("stripepay has no success_url for Checkout"),
				 errhint("An admin must run SELECT stripepay.configure(success_url => 'https://...').")));
}

const char *
sp_key_mode(const char *key)
{
	if (key == NULL)
		return NULL;
	return strstr(key, "_live_") != NULL ? "live" : "test";
}

static void
load_table_secrets(void)
{
	SpRows		rows;
	int			i;
	MemoryContext old;

	sp_stmt_run(&secrets_stmt, NULL, NULL, SP_AS_OWNER, INT_MAX, &rows);
	old = MemoryContextSwitchTo(sp_cache_cxt());
	table_secrets = palloc(sizeof(CachedSecret) * (rows.nrows > 0 ? rows.nrows : 1));
	for (i = 0; i < rows.nrows; i++)
	{
		bool		isnull;
		Datum		exp = sp_rows_get(&rows, i, 3, &isnull);

		table_secrets[i].endpoint = pstrdup(sp_rows_text(&rows, i, 1));
		table_secrets[i].secret = pstrdup(sp_rows_text(&rows, i, 2));
		table_secrets[i].expires = !isnull;
		table_secrets[i].expires_at = isnull ? 0 : DatumGetTimestampTz(exp);
	}
	ntable_secrets = rows.nrows;
	MemoryContextSwitchTo(old);
	secrets_valid = true;
}

int
sp_settings_webhook_secrets(const char *endpoint, SpSecret **secrets)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;
	int			i;

	if (!settings_valid)
	{
		SpSettings	ignored;

		sp_settings_load(&ignored);
	}
	if (!secrets_valid)
		load_table_secrets();
	load_secrets_file();

	*secrets = palloc(sizeof(SpSecret) * (ntable_secrets + nfile_secrets + 1));
	for (i = 0; i < ntable_secrets; i++)
	{
		const CachedSecret *c = &table_secrets[i];

		if ((endpoint == NULL || strcmp(c->endpoint, endpoint) == 0) &&
			(!c->expires || c->expires_at > now))
		{
			(*secrets)[n].endpoint = c->endpoint;
			(*secrets)[n].secret = c->secret;
			n++;
		}
	}
	for (i = 0; i < nfile_secrets; i++)
	{
		if (endpoint == NULL || strcmp(file_secrets[i].endpoint, endpoint) == 0)
		{
			(*secrets)[n].endpoint = file_secrets[i].endpoint;
			(*secrets)[n].secret = file_secrets[i].secret;
			n++;
		}
	}
	return n;
}
