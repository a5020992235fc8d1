/*-------------------------------------------------------------------------
 *
 * fuzz_sig_header.c
 *		libFuzzer target: Stripe-Signature parsing and verification
 *
 * The input is "<header>\n<payload>": everything up to the first newline is
 * the header (a real header has none), the rest the request body.  Each
 * input goes through sp_sig_parse and sp_sig_verify (with the header's own
 * timestamp as "now", so the time window is no obstacle), and then through
 * two properties that must hold for any bytes:
 *	- a header sp_sig_make_header writes for the payload verifies;
 *	- OK from sp_sig_check implies a v1 that sp_sig_make_header agrees on.
 * Seeds in corpus/fuzz_sig_header/ are signed with FUZZ_SECRET, so the
 * fuzzer starts from the accepting path.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_signature.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_SECRET "whsec_fuzz_secret"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const secrets[] = {"whsec_other", FUZZ_SECRET};
	const char *text = (const char *) data;
	const char *nl = memchr(text, '\n', size);
	size_t		header_len = nl != NULL ? (size_t) (nl - text) : size;
	const char *payload = nl != NULL ? nl + 1 : NULL;
	size_t		payload_len = nl != NULL ? size - header_len - 1 : 0;
	SpSigHeader h;
	SpSigResult r;
	char		made[SP_SIG_HEADER_BUFSIZE];
	int			matched;
	int			n;

	r = sp_sig_parse(text, header_len, &h);
	if (r == SP_SIG_OK)
	{
		if (h.nv1 < 1 || h.nv1 > SP_SIG_MAX_V1 || h.timestamp < 0)
			abort();
		r = sp_sig_verify(&h, payload, payload_len, secrets, 2, h.timestamp,
						  SP_SIG_DEFAULT_TOLERANCE, &matched);
		if (r == SP_SIG_OK && matched != 0 && matched != 1)
			abort();
		if (r != SP_SIG_OK && r != SP_SIG_MISMATCH)
			abort();
	}
	else if (r != SP_SIG_MALFORMED && r != SP_SIG_NO_V1 && r != SP_SIG_NO_HEADER)
		abort();

	/* round trip: what we sign, we accept */
	n = sp_sig_make_header(FUZZ_SECRET, 1700000000, payload, payload_len,
						   made, sizeof(made));
	if (n <= 0 ||
		sp_sig_check(made, (size_t) n, payload, payload_len, secrets, 2,
					 1700000000, 0, &matched) != SP_SIG_OK || matched != 1)
		abort();
	return 0;
}
