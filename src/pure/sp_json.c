/*-------------------------------------------------------------------------
 *
 * sp_json.c
 *		Reading Stripe's API responses through the tokenizer the event
 *		decoder uses (sp_jtok.c): one JSON reader for the whole extension.
 *
 * Every function tokenizes into a stack array (or, for a large body, one
 * malloc'd array freed before returning), copies what the caller asked
 * for into the caller's storage, and never calls anything that can
 * longjmp: nothing outlives a call, so a backend caller cannot leak.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_json.h"
#include "sp_jtok.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Stripe's answers nest about 10 deep */
#define SP_JSON_MAX_DEPTH 32
#define SP_JSON_STACK_TOKENS 256

/* Object keys longer than this in a path are treated as not found. */
#define SP_JSON_MAX_SEGMENT 255

typedef struct SpJsonDoc
{
	SpJtToken	stack[SP_JSON_STACK_TOKENS];
	SpJtToken  *tokens;
	SpJtDoc		doc;
} SpJsonDoc;

static int
sp_json_open(SpJsonDoc *d, const char *json, size_t len)
{
	int			rc;

	d->tokens = d->stack;
	rc = sp_jt_parse(json, len, SP_JSON_MAX_DEPTH, d->tokens, SP_JSON_STACK_TOKENS, &d->doc);
	if (rc == SP_JT_FULL)
	{
		size_t		cap = SP_JT_TOKENS_FOR(len);

		d->tokens = malloc(cap * sizeof(SpJtToken));
		if (d->tokens == NULL)
			return SP_JSON_NO_MEMORY;
		rc = sp_jt_parse(json, len, SP_JSON_MAX_DEPTH, d->tokens, cap, &d->doc);
	}
	return rc == SP_JT_OK ? SP_JSON_OK : SP_JSON_INVALID;
}

static void
sp_json_close(SpJsonDoc *d)
{
	if (d->tokens != d->stack)
		free(d->tokens);
	d->tokens = NULL;
}

static void
sp_error_field(const SpJtDoc *doc, int error, const char *name, char *dst, size_t size)
{
	int			val = sp_jt_member(doc, error, name);

	if (sp_jt_string(doc, val, dst, size, true, NULL) != SP_JT_STRING_OK)
		dst[0] = '\0';
}

bool
sp_stripe_error_parse(const char *body, size_t len, SpStripeError *err)
{
	SpJsonDoc  *d;
	int			error;
	bool		ok = false;

	if (err == NULL)
		return false;
	memset(err, 0, sizeof(*err));
	d = malloc(sizeof(SpJsonDoc));
	if (d == NULL)
		return false;
	if (sp_json_open(d, body, len) == SP_JSON_OK)
	{
		error = sp_jt_member(&d->doc, 0, "error");
		if (error >= 0 && d->doc.tok[error].type == SP_JT_OBJECT)
		{
			sp_error_field(&d->doc, error, "type", err->type, sizeof(err->type));
			sp_error_field(&d->doc, error, "code", err->code, sizeof(err->code));
			sp_error_field(&d->doc, error, "decline_code", err->decline_code,
						   sizeof(err->decline_code));
			sp_error_field(&d->doc, error, "param", err->param, sizeof(err->param));
			sp_error_field(&d->doc, error, "message", err->message, sizeof(err->message));
			sp_error_field(&d->doc, error, "doc_url", err->doc_url, sizeof(err->doc_url));
			err->parsed = true;
			ok = true;
		}
	}
	sp_json_close(d);
	free(d);
	return ok;
}

/* A path segment used on an array: plain decimal digits, no sign. */
static bool
sp_json_index(const char *seg, size_t len, size_t *index)
{
	size_t		value = 0;
	size_t		i;

	if (len == 0 || len > 9)
		return false;
	for (i = 0; i < len; i++)
	{
		if (seg[i] < '0' || seg[i] > '9')
			return false;
		value = value * 10 + (size_t) (seg[i] - '0');
	}
	*index = value;
	return true;
}

/* The token at a dotted path, or -1 (absent, or JSON null). */
static int
sp_json_lookup(const SpJtDoc *doc, const char *path)
{
	int			cur = 0;
	const char *seg = path;

	for (;;)
	{
		const char *dot = strchr(seg, '.');
		size_t		seglen = dot != NULL ? (size_t) (dot - seg) : strlen(seg);

		if (doc->tok[cur].type == SP_JT_OBJECT)
		{
			char		key[SP_JSON_MAX_SEGMENT + 1];

			if (seglen > SP_JSON_MAX_SEGMENT)
				return -1;
			memcpy(key, seg, seglen);
			key[seglen] = '\0';
			cur = sp_jt_member(doc, cur, key);
		}
		else if (doc->tok[cur].type == SP_JT_ARRAY)
		{
			size_t		index;

			if (!sp_json_index(seg, seglen, &index))
				return -1;
			cur = sp_jt_element(doc, cur, index);
		}
		else
			return -1;			/* a scalar has no members */
		if (cur < 0)
			return -1;
		if (dot == NULL)
			return doc->tok[cur].type == SP_JT_NULL ? -1 : cur;
		seg = dot + 1;
	}
}

/* Copies the text of token idx, with a NUL, into the arena; NULL when full. */
static const char *
sp_arena_value(const SpJtDoc *doc, int idx, char *arena, size_t arena_size, size_t *used,
			   size_t *len_out)
{
	const SpJtToken *t = &doc->tok[idx];
	char	   *dst;
	size_t		len;

	if (arena == NULL || *used >= arena_size)
		return NULL;
	dst = arena + *used;
	if (t->type == SP_JT_STRING)
	{
		/* unescaped text is never longer than its raw form */
		if (t->len >= arena_size - *used ||
			sp_jt_string(doc, idx, dst, arena_size - *used, false, &len) != SP_JT_STRING_OK)
			return NULL;
	}
	else
	{
		len = t->len;
		if (len >= arena_size - *used)
			return NULL;
		memcpy(dst, doc->json + t->start, len);
		dst[len] = '\0';
	}
	*used += len + 1;
	if (len_out)
		*len_out = len;
	return dst;
}

int
sp_json_extract(const char *json, size_t len, const char *const *paths,
				int npaths, char *arena, size_t arena_size,
				const char **values)
{
	SpJsonDoc  *d;
	size_t		used = 0;
	int			rc;
	int			i;

	if (npaths < 0 || (npaths > 0 && (paths == NULL || values == NULL)))
		return SP_JSON_INVALID;
	for (i = 0; i < npaths; i++)
		values[i] = NULL;
	d = malloc(sizeof(SpJsonDoc));
	if (d == NULL)
		return SP_JSON_NO_MEMORY;
	rc = sp_json_open(d, json, len);
	for (i = 0; rc == SP_JSON_OK && i < npaths; i++)
	{
		int			idx;

		if (paths[i] == NULL || (idx = sp_json_lookup(&d->doc, paths[i])) < 0)
			continue;
		values[i] = sp_arena_value(&d->doc, idx, arena, arena_size, &used, NULL);
		if (values[i] == NULL)
			rc = SP_JSON_ARENA_FULL;
	}
	sp_json_close(d);
	free(d);
	if (rc != SP_JSON_OK)
		for (i = 0; i < npaths; i++)
			values[i] = NULL;
	return rc;
}

int
sp_json_list(const char *json, size_t len, SpJsonItem *items, int max_items,
			 bool *has_more, char *arena, size_t arena_size)
{
	SpJsonDoc  *d;
	const SpJtDoc *doc;
	int			data;
	int			more;
	size_t		used = 0;
	size_t		n = 0;
	size_t		i;
	int			rc;

	*has_more = false;
	if (items == NULL || max_items < 0)
		return SP_JSON_INVALID;
	d = malloc(sizeof(SpJsonDoc));
	if (d == NULL)
		return SP_JSON_NO_MEMORY;
	rc = sp_json_open(d, json, len);
	doc = &d->doc;
	if (rc == SP_JSON_OK)
	{
		data = sp_jt_member(doc, 0, "data");
		more = sp_jt_member(doc, 0, "has_more");
		if (doc->tok[0].type != SP_JT_OBJECT || data < 0 || doc->tok[data].type != SP_JT_ARRAY ||
			(more >= 0 && doc->tok[more].type != SP_JT_TRUE && doc->tok[more].type != SP_JT_FALSE) ||
			doc->tok[data].count > (uint32_t) max_items)
			rc = SP_JSON_INVALID;
		else
		{
			*has_more = more >= 0 && doc->tok[more].type == SP_JT_TRUE;
			n = doc->tok[data].count;
		}
	}
	for (i = 0; rc == SP_JSON_OK && i < n; i++)
	{
		int			item = sp_jt_element(doc, data, i);
		int			id = sp_jt_member(doc, item, "id");

		if (doc->tok[item].type != SP_JT_OBJECT || id < 0 || doc->tok[id].type != SP_JT_STRING)
		{
			rc = SP_JSON_INVALID;
			break;
		}
		items[i].id = sp_arena_value(doc, id, arena, arena_size, &used, NULL);
		items[i].json = sp_arena_value(doc, item, arena, arena_size, &used, &items[i].json_len);
		if (items[i].id == NULL || items[i].json == NULL)
			rc = SP_JSON_ARENA_FULL;
	}
	sp_json_close(d);
	free(d);
	if (rc != SP_JSON_OK)
	{
		*has_more = false;
		return rc;
	}
	return (int) n;
}
