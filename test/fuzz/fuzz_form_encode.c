/*-------------------------------------------------------------------------
 *
 * fuzz_form_encode.c
 *		libFuzzer target: building form bodies with sp_form_add*
 *
 * The input is a list of records, each
 *		<op> <key length> <value length, 2 bytes big-endian> <key> <value>
 * (lengths are cut to what is left of the input).  op % 4 picks the call:
 *	0  sp_form_add_len(key, value, value length): the value may hold NULs
 *	1  sp_form_add(key, value): the value ends at its first NUL
 *	2  sp_form_add_int(key, n): n is the value's first 8 bytes, big-endian
 *	3  sp_form_add_len(NULL, ...): a caller bug, which must poison the form
 * The key always ends at its first NUL, as a C string does.
 *
 * A model of the pairs the form should hold is kept beside it, and after
 * every call:
 *	- an add returns true until the form is poisoned, false ever after, and
 *	  a poisoned form keeps the body it had (a short body is never sent);
 *	- the body is NUL-terminated at len and holds no other NUL;
 *	- each pair is exactly what an independent reference encoder writes
 *	  for it (unreserved bytes literal, '[' ']' literal in keys, space as
 *	  '+', anything else %XX in upper case), joined by '&', so no key or
 *	  value can smuggle a '&' or '=' into the body;
 * and at the end sp_form_decode gives back every pair, byte for byte.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_form.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PAIRS 256

typedef struct Pair
{
	const char *key;			/* NUL-terminated copy owned by Model */
	size_t		key_len;
	const char *value;			/* points into the input or num */
	size_t		value_len;
	char		num[32];
} Pair;

typedef struct Model
{
	Pair		pairs[MAX_PAIRS];
	int			n;
	int			next;			/* next pair the decoder must deliver */
	bool		mismatch;
} Model;

static bool
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

/* the encoding sp_form.h documents, written out again independently */
static size_t
reference_escape(const char *src, size_t len, bool is_key, char *dst)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		out = 0;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) src[i];

		if (unreserved(c) || (is_key && (c == '[' || c == ']')))
			dst[out++] = (char) c;
		else if (c == ' ')
			dst[out++] = '+';
		else
		{
			dst[out++] = '%';
			dst[out++] = hex[c >> 4];
			dst[out++] = hex[c & 0x0F];
		}
	}
	return out;
}

/* the body every pair of the model encodes to, malloc'd; *len receives its length */
static char *
reference_body(const Model *m, size_t *len)
{
	size_t		cap = 1;
	size_t		out = 0;
	char	   *body;
	int			i;

	for (i = 0; i < m->n; i++)
		cap += 2 + 3 * m->pairs[i].key_len + 3 * m->pairs[i].value_len;
	body = malloc(cap);
	if (body == NULL)
		abort();
	for (i = 0; i < m->n; i++)
	{
		if (i > 0)
			body[out++] = '&';
		out += reference_escape(m->pairs[i].key, m->pairs[i].key_len, true, body + out);
		body[out++] = '=';
		out += reference_escape(m->pairs[i].value, m->pairs[i].value_len, false, body + out);
	}
	body[out] = '\0';
	*len = out;
	return body;
}

static void
check_body(const SpForm *form, const Model *m)
{
	size_t		len;
	char	   *want = reference_body(m, &len);

	if (m->n == 0)
	{
		if (form->len != 0)
			abort();
	}
	else if (form->data == NULL || form->len != len || form->data[len] != '\0' ||
			 memcmp(form->data, want, len) != 0 || form->len >= form->cap)
		abort();
	free(want);
}

static void
collect(const char *key, size_t key_len, const char *value, size_t value_len,
		void *arg)
{
	Model	   *m = arg;
	const Pair *p;

	if (m->next >= m->n)
	{
		m->mismatch = true;
		return;
	}
	p = &m->pairs[m->next++];
	if (key_len != p->key_len || value_len != p->value_len ||
		memcmp(key, p->key, key_len) != 0 ||
		(value_len > 0 && memcmp(value, p->value, value_len) != 0))
		m->mismatch = true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static Model m;
	char	   *keys[MAX_PAIRS];
	SpForm		form;
	bool		poisoned = false;
	size_t		pos = 0;
	int			nkeys = 0;
	int			i;

	memset(&m, 0, sizeof(m));
	sp_form_init(&form);

	while (pos + 4 <= size && nkeys < MAX_PAIRS)
	{
		int			op = data[pos] % 4;
		size_t		klen = data[pos + 1];
		size_t		vlen = ((size_t) data[pos + 2] << 8) | data[pos + 3];
		const char *kraw;
		const char *vraw;
		Pair	   *p = &m.pairs[m.n];
		bool		ok;

		pos += 4;
		if (klen > size - pos)
			klen = size - pos;
		kraw = (const char *) data + pos;
		pos += klen;
		if (vlen > size - pos)
			vlen = size - pos;
		vraw = (const char *) data + pos;
		pos += vlen;

		keys[nkeys] = malloc(klen + 1);
		if (keys[nkeys] == NULL)
			abort();
		memcpy(keys[nkeys], kraw, klen);
		keys[nkeys][klen] = '\0';
		p->key = keys[nkeys];
		p->key_len = strlen(p->key);
		nkeys++;

		switch (op)
		{
			case 0:
				p->value = vraw;
				p->value_len = vlen;
				ok = sp_form_add_len(&form, p->key, vraw, vlen);
				break;
			case 1:
				{
					/* sp_form_add needs a C string: the value up to its NUL */
					char	   *v = malloc(vlen + 1);

					if (v == NULL)
						abort();
					memcpy(v, vraw, vlen);
					v[vlen] = '\0';
					p->value = vraw;
					p->value_len = strlen(v);
					ok = sp_form_add(&form, p->key, v);
					free(v);
				}
				break;
			case 2:
				{
					uint64_t	u = 0;
					size_t		j;

					for (j = 0; j < 8; j++)
						u = (u << 8) | (j < vlen ? (unsigned char) vraw[j] : 0);
					p->value_len = (size_t) snprintf(p->num, sizeof(p->num), "%lld",
													 (long long) u);
					p->value = p->num;
					ok = sp_form_add_int(&form, p->key, (long long) u);
				}
				break;
			default:
				ok = sp_form_add_len(&form, NULL, vraw, vlen);
				if (ok || !form.failed)
					abort();
				poisoned = true;
				break;
		}
		if (op != 3)
		{
			if (ok == poisoned || form.failed != poisoned)
				abort();
			if (!poisoned)
				m.n++;
		}
		check_body(&form, &m);
	}

	if (!poisoned && m.n > 0)
	{
		if (sp_form_decode(form.data, form.len, collect, &m) != 0 ||
			m.mismatch || m.next != m.n)
			abort();
	}

	sp_form_free(&form);
	if (form.data != NULL || form.len != 0 || form.failed)
		abort();
	for (i = 0; i < nkeys; i++)
		free(keys[i]);
	return 0;
}
