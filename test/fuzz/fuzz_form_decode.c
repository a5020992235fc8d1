/*-------------------------------------------------------------------------
 *
 * fuzz_form_decode.c
 *		libFuzzer target: application/x-www-form-urlencoded decoding
 *
 * Any bytes go to sp_form_decode.  When they decode, the pairs are encoded
 * again with sp_form_add_len into a body B1; B1 is decoded and encoded once
 * more into B2.  B1 must equal B2 and hold as many pairs: since encoding is
 * deterministic and injective, that proves the decoder gives back exactly
 * the bytes the encoder was given, for every byte string it can meet.
 * (Keys holding a NUL cannot be passed as C strings and skip the check.)
 *
 *-------------------------------------------------------------------------
 */
#include "sp_form.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Reencoder
{
	SpForm		form;
	int			count;
	bool		skip;			/* a key held a NUL */
} Reencoder;

static void
reencode(const char *key, size_t key_len, const char *value, size_t value_len,
		 void *arg)
{
	Reencoder  *r = arg;

	/* the documented convenience NULs */
	if (key[key_len] != '\0' || value[value_len] != '\0')
		abort();
	r->count++;
	if (memchr(key, '\0', key_len) != NULL)
		r->skip = true;
	else
		sp_form_add_len(&r->form, key, value, value_len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Reencoder	b1;
	Reencoder	b2;
	int			rc;

	memset(&b1, 0, sizeof(b1));
	memset(&b2, 0, sizeof(b2));
	sp_form_init(&b1.form);
	sp_form_init(&b2.form);

	rc = sp_form_decode((const char *) data, size, reencode, &b1);
	if (rc != 0 && rc != -1)
		abort();
	if (rc == 0 && !b1.skip)
	{
		if (b1.form.failed)
			abort();
		if (sp_form_decode(b1.form.data, b1.form.len, reencode, &b2) != 0 ||
			b2.skip || b2.form.failed || b2.count != b1.count ||
			b2.form.len != b1.form.len ||
			(b1.form.len > 0 && memcmp(b1.form.data, b2.form.data, b1.form.len) != 0))
			abort();
	}
	sp_form_free(&b1.form);
	sp_form_free(&b2.form);
	return 0;
}
