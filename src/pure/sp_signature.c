/*-------------------------------------------------------------------------
 *
 * sp_signature.c
 *		Stripe-Signature header parsing and HMAC-SHA256 verification
 *
 * The signed bytes are the decimal timestamp, '.', and the body exactly as
 * received.  The timestamp is printed from its parsed value, as the SDKs do
 * (node's parseInt, python's "%d"), so "t=0042" signs as "42.".  The HMAC is
 * streamed through OpenSSL's EVP_MAC in three updates, so the body is never
 * copied and nothing depends on its size.
 *
 * Digests and keys live on the stack only as long as needed and are wiped
 * with OPENSSL_cleanse(); every comparison of a digest with a candidate
 * goes through CRYPTO_memcmp(), whose time does not depend on where the
 * bytes differ.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_signature.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "stripepay needs OpenSSL 3.0 or later (EVP_MAC)"
#endif

static const char sp_hex_lower[] = "0123456789abcdef";

/* Lower-case only: the SDKs compare hex text, so "AB" never matches there. */
static int
sp_sig_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool
sp_sig_decode_hex(const char *src, size_t len, unsigned char *dst)
{
	size_t		i;

	if (len != 2 * SP_SIG_DIGEST_LEN)
		return false;
	for (i = 0; i < SP_SIG_DIGEST_LEN; i++)
	{
		int			hi = sp_sig_hexval((unsigned char) src[2 * i]);
		int			lo = sp_sig_hexval((unsigned char) src[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		dst[i] = (unsigned char) ((hi << 4) | lo);
	}
	return true;
}

/* Plain decimal digits, no sign, no spaces, at most LLONG_MAX. */
static bool
sp_sig_parse_timestamp(const char *src, size_t len, long long *out)
{
	long long	value = 0;
	size_t		i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
	{
		int			d;

		if (src[i] < '0' || src[i] > '9')
			return false;
		d = src[i] - '0';
		if (value > (LLONG_MAX - d) / 10)
			return false;
		value = value * 10 + d;
	}
	*out = value;
	return true;
}

/*
 * The rules, in the order they apply:
 *	- NULL or len 0: SP_SIG_NO_HEADER.
 *	- len > SP_SIG_MAX_HEADER, or any byte outside printable ASCII (0x20 to
 *	  0x7e; NUL, CR, LF, TAB and UTF-8 included): malformed.  No HTTP header
 *	  Stripe sends carries them, and refusing them up front means nothing
 *	  below has to think about them.
 *	- The header is split on ','; every item must be key=value with a
 *	  non-empty key (empty items, as in ",," or a trailing ',', are
 *	  malformed).  The value is everything after the first '='.
 *	- Keys are compared exactly, no trimming: "t", "v1", anything else
 *	  (v0, future schemes, " v1") is ignored whatever its value.
 *	- t: exactly once, decimal digits only, no sign, fits in long long.
 *	- v1: exactly 64 lower-case hex digits each; more than SP_SIG_MAX_V1
 *	  of them is malformed rather than silently cut, so a valid signature
 *	  is never dropped for being ninth.
 *	- No v1 at all: SP_SIG_NO_V1 (checked last, after t).
 */
SpSigResult
sp_sig_parse(const char *header, size_t len, SpSigHeader *out)
{
	bool		have_t = false;
	size_t		pos = 0;
	size_t		i;

	if (out == NULL)
		return SP_SIG_MALFORMED;
	memset(out, 0, sizeof(*out));

	if (header == NULL || len == 0)
		return SP_SIG_NO_HEADER;
	if (len > SP_SIG_MAX_HEADER)
		return SP_SIG_MALFORMED;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) header[i];

		if (c < 0x20 || c > 0x7e)
			return SP_SIG_MALFORMED;
	}

	while (pos <= len)
	{
		const char *item = header + pos;
		const char *comma = memchr(item, ',', len - pos);
		size_t		item_len = comma != NULL ? (size_t) (comma - item) : len - pos;
		const char *eq = memchr(item, '=', item_len);
		size_t		key_len;
		const char *val;
		size_t		val_len;

		if (eq == NULL || eq == item)
			goto malformed;
		key_len = (size_t) (eq - item);
		val = eq + 1;
		val_len = item_len - key_len - 1;

		if (key_len == 1 && item[0] == 't')
		{
			if (have_t || !sp_sig_parse_timestamp(val, val_len, &out->timestamp))
				goto malformed;
			have_t = true;
		}
		else if (key_len == 2 && item[0] == 'v' && item[1] == '1')
		{
			if (out->nv1 >= SP_SIG_MAX_V1 ||
				!sp_sig_decode_hex(val, val_len, out->v1[out->nv1]))
				goto malformed;
			out->nv1++;
		}

		if (comma == NULL)
			break;
		pos += item_len + 1;
	}

	if (!have_t)
		goto malformed;
	if (out->nv1 == 0)
		return SP_SIG_NO_V1;
	return SP_SIG_OK;

malformed:
	memset(out, 0, sizeof(*out));
	return SP_SIG_MALFORMED;
}

/*
 * HMAC-SHA256(key, "<timestamp>." + payload) into digest, re-keying ctx.
 * Returns false if OpenSSL failed; digest is then wiped.
 */
static bool
sp_sig_hmac(EVP_MAC_CTX *ctx, const char *key, size_t key_len,
			long long timestamp, const char *payload, size_t payload_len,
			unsigned char *digest)
{
	OSSL_PARAM	params[2];
	char		prefix[32];
	int			prefix_len;
	size_t		out_len = 0;
	bool		ok;

	prefix_len = snprintf(prefix, sizeof(prefix), "%lld.", timestamp);
	if (prefix_len < 0 || (size_t) prefix_len >= sizeof(prefix))
		return false;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
												 (char *) "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();

	ok = EVP_MAC_init(ctx, (const unsigned char *) key, key_len, params) == 1 &&
		EVP_MAC_update(ctx, (const unsigned char *) prefix, (size_t) prefix_len) == 1 &&
		(payload_len == 0 ||
		 EVP_MAC_update(ctx, (const unsigned char *) payload, payload_len) == 1) &&
		EVP_MAC_final(ctx, digest, &out_len, SP_SIG_DIGEST_LEN) == 1 &&
		out_len == SP_SIG_DIGEST_LEN;
	if (!ok)
		OPENSSL_cleanse(digest, SP_SIG_DIGEST_LEN);
	return ok;
}

/*
 * One context for every secret of a call.  On failure the OpenSSL error
 * queue is cleared: a stale entry left there makes a later, unrelated TLS
 * call in the same backend (libcurl's) misreport its own outcome.
 */
static EVP_MAC_CTX *
sp_sig_ctx_new(void)
{
	EVP_MAC    *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	EVP_MAC_CTX *ctx = NULL;

	if (mac != NULL)
		ctx = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac);			/* the context holds its own reference */
	if (ctx == NULL)
		ERR_clear_error();
	return ctx;
}

SpSigResult
sp_sig_verify(const SpSigHeader *h, const char *payload, size_t payload_len,
			  const char *const *secrets, int nsecrets, long long now,
			  long long tolerance_seconds, int *matched)
{
	EVP_MAC_CTX *ctx;
	unsigned char digest[SP_SIG_DIGEST_LEN];
	int			found = -1;
	bool		usable = false;
	bool		failed = false;
	unsigned long long tolerance;
	int			s;

	if (matched != NULL)
		*matched = -1;
	if (h == NULL)
		return SP_SIG_NO_HEADER;
	if (h->nv1 <= 0 || h->nv1 > SP_SIG_MAX_V1)
		return SP_SIG_NO_V1;
	if (h->timestamp < 0)
		return SP_SIG_MALFORMED;
	if (payload == NULL && payload_len > 0)
		return SP_SIG_MISMATCH;
	for (s = 0; s < nsecrets && secrets != NULL; s++)
		if (secrets[s] != NULL && secrets[s][0] != '\0')
			usable = true;
	if (!usable)
		return SP_SIG_NO_SECRET;

	ctx = sp_sig_ctx_new();
	if (ctx == NULL)
		return SP_SIG_INTERNAL_ERROR;

	for (s = 0; s < nsecrets && found < 0; s++)
	{
		int			hit = 0;
		int			i;

		if (secrets[s] == NULL || secrets[s][0] == '\0')
			continue;
		if (!sp_sig_hmac(ctx, secrets[s], strlen(secrets[s]), h->timestamp,
						 payload, payload_len, digest))
		{
			failed = true;
			break;
		}
		/* no early exit: every candidate costs the same */
		for (i = 0; i < h->nv1; i++)
			hit |= CRYPTO_memcmp(digest, h->v1[i], SP_SIG_DIGEST_LEN) == 0;
		if (hit)
			found = s;
	}

	OPENSSL_cleanse(digest, sizeof(digest));
	EVP_MAC_CTX_free(ctx);
	if (failed)
	{
		ERR_clear_error();
		return SP_SIG_INTERNAL_ERROR;
	}
	if (found < 0)
		return SP_SIG_MISMATCH;
	if (matched != NULL)
		*matched = found;

	/*
	 * Differences in unsigned arithmetic: now is the caller's and may be
	 * anything, so now - timestamp could overflow a long long.
	 */
	tolerance = tolerance_seconds > 0 ? (unsigned long long) tolerance_seconds : 0;
	if (now >= h->timestamp)
	{
		if ((unsigned long long) now - (unsigned long long) h->timestamp > tolerance)
			return SP_SIG_TOO_OLD;
	}
	else if ((unsigned long long) h->timestamp - (unsigned long long) now > tolerance)
		return SP_SIG_IN_FUTURE;
	return SP_SIG_OK;
}

SpSigResult
sp_sig_check(const char *header, size_t header_len, const char *payload,
			 size_t payload_len, const char *const *secrets, int nsecrets,
			 long long now, long long tolerance_seconds, int *matched)
{
	SpSigHeader h;
	SpSigResult r;

	if (matched != NULL)
		*matched = -1;
	r = sp_sig_parse(header, header_len, &h);
	if (r == SP_SIG_OK)
		r = sp_sig_verify(&h, payload, payload_len, secrets, nsecrets, now,
						  tolerance_seconds, matched);
	OPENSSL_cleanse(&h, sizeof(h));
	return r;
}

int
sp_sig_make_header(const char *secret, long long timestamp,
				   const char *payload, size_t payload_len, char *buf,
				   size_t size)
{
	EVP_MAC_CTX *ctx;
	unsigned char digest[SP_SIG_DIGEST_LEN];
	char		hex[2 * SP_SIG_DIGEST_LEN + 1];
	bool		ok;
	int			n;
	int			i;

	if (buf == NULL)
		return -1;
	if (size > 0)
		buf[0] = '\0';
	if (secret == NULL || secret[0] == '\0' || timestamp < 0 ||
		(payload == NULL && payload_len > 0))
		return -1;

	ctx = sp_sig_ctx_new();
	if (ctx == NULL)
		return -1;
	ok = sp_sig_hmac(ctx, secret, strlen(secret), timestamp, payload,
					 payload_len, digest);
	EVP_MAC_CTX_free(ctx);
	if (!ok)
	{
		ERR_clear_error();
		return -1;
	}

	for (i = 0; i < SP_SIG_DIGEST_LEN; i++)
	{
		hex[2 * i] = sp_hex_lower[digest[i] >> 4];
		hex[2 * i + 1] = sp_hex_lower[digest[i] & 0x0F];
	}
	hex[2 * SP_SIG_DIGEST_LEN] = '\0';
	OPENSSL_cleanse(digest, sizeof(digest));

	n = snprintf(buf, size, "t=%lld,v1=%s", timestamp, hex);
	if (n < 0 || (size_t) n >= size)
	{
		if (size > 0)
			buf[0] = '\0';
		return -1;
	}
	return n;
}

const char *
sp_sig_result_name(SpSigResult r)
{
	switch (r)
	{
		case SP_SIG_OK:
			return "ok";
		case SP_SIG_NO_HEADER:
			return "no_header";
		case SP_SIG_MALFORMED:
			return "malformed";
		case SP_SIG_NO_V1:
			return "no_v1";
		case SP_SIG_TOO_OLD:
			return "too_old";
		case SP_SIG_IN_FUTURE:
			return "in_future";
		case SP_SIG_NO_SECRET:
			return "no_secret";
		case SP_SIG_MISMATCH:
			return "mismatch";
		case SP_SIG_INTERNAL_ERROR:
			return "internal_error";
	}
	return "unknown";
}
