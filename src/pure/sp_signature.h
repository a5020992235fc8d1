/*-------------------------------------------------------------------------
 *
 * sp_signature.h
 *		Parse and verify Stripe-Signature webhook headers
 *
 * Stripe signs each webhook delivery with HMAC-SHA256 over "<t>.<body>",
 * keyed with the endpoint's whole signing secret ("whsec_..."), and sends
 * "t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]".  During a secret
 * roll several v1 entries appear, one per live secret.
 *
 * Pure C over OpenSSL's libcrypto: no PostgreSQL headers, nothing that can
 * longjmp, and nothing allocated that outlives a call, so a backend caller
 * may ereport() right after any function here returns.
 *
 * Parsing is as strict as Stripe's own SDKs, which split on ',' and '='
 * without trimming: whitespace is never skipped, so " v1=..." is an unknown
 * scheme and "t= 1" is malformed.  Where the SDKs disagree (python takes the
 * first of two "t=", node the last) the header is refused instead.  The
 * exact rules are in sp_signature.c above sp_sig_parse().
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_SIGNATURE_H
#define SP_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>

/* More v1 entries than this make the header malformed. */
#define SP_SIG_MAX_V1			8

/* Longer headers are malformed: a real one is about 150 bytes. */
#define SP_SIG_MAX_HEADER		4096

/* A HMAC-SHA256 digest */
#define SP_SIG_DIGEST_LEN		32

/* Stripe's default, also the SDKs' */
#define SP_SIG_DEFAULT_TOLERANCE 300

/*
 * Room sp_sig_make_header() needs: "t=" + 19 digits + ",v1=" + 64 hex + NUL.
 */
#define SP_SIG_HEADER_BUFSIZE	96

typedef struct SpSigHeader
{
	long long	timestamp;		/* seconds since the epoch, >= 0 */
	int			nv1;			/* entries used in v1[] */
	unsigned char v1[SP_SIG_MAX_V1][SP_SIG_DIGEST_LEN];
} SpSigHeader;

typedef enum SpSigResult
{
	SP_SIG_OK = 0,
	SP_SIG_NO_HEADER,			/* NULL or empty header */
	SP_SIG_MALFORMED,			/* no or bad t=, two t=, a pair without '=',
								 * an empty pair or key, a v1 that is not 64
								 * lower-case hex digits, more than
								 * SP_SIG_MAX_V1 v1, a control or non-ASCII
								 * byte, longer than SP_SIG_MAX_HEADER */
	SP_SIG_NO_V1,				/* well-formed, but no v1 entry */
	SP_SIG_TOO_OLD,				/* authentic, but t is more than tolerance
								 * seconds before now: a replay or a very
								 * late delivery */
	SP_SIG_IN_FUTURE,			/* authentic, but t is more than tolerance
								 * seconds after now: clock skew */
	SP_SIG_NO_SECRET,			/* no usable (non-NULL, non-empty) secret */
	SP_SIG_MISMATCH,			/* no v1 matches any secret */
	SP_SIG_INTERNAL_ERROR		/* OpenSSL failed (out of memory): nothing
								 * was verified */
} SpSigResult;

/*
 * Parses header[0..len); the header need not be NUL-terminated, and a NUL
 * inside len is a malformed header.  On any result other than SP_SIG_OK
 * *out is zeroed.  SP_SIG_NO_V1 is returned for a header that is otherwise
 * well-formed, with out->timestamp set.
 */
extern SpSigResult sp_sig_parse(const char *header, size_t len,
								SpSigHeader *out);

/*
 * Checks a parsed header against the raw request body.
 *
 * secrets[0..nsecrets) are the candidate signing secrets; NULL or empty
 * entries are skipped (an empty HMAC key is no secret at all).  The first
 * secret, in array order, for which some v1 matches wins.
 *
 * The signature is checked before the timestamp, as the SDKs do, so
 * SP_SIG_TOO_OLD and SP_SIG_IN_FUTURE mean "authentic but outside the
 * window" and can never be provoked by an unsigned request.  The window is
 * |now - timestamp| <= tolerance_seconds, both ends included; a negative
 * tolerance counts as 0.  There is no way to switch the check off.
 *
 * *matched (if matched is not NULL) is set to the index of the secret that
 * verified, whenever one did (so also with TOO_OLD / IN_FUTURE), else -1.
 *
 * payload may be NULL only with payload_len 0.
 */
extern SpSigResult sp_sig_verify(const SpSigHeader *h,
								 const char *payload, size_t payload_len,
								 const char *const *secrets, int nsecrets,
								 long long now, long long tolerance_seconds,
								 int *matched);

/*
 * Convenience: sp_sig_parse() then sp_sig_verify().  *matched is -1 when
 * parsing fails.
 */
extern SpSigResult sp_sig_check(const char *header, size_t header_len,
								const char *payload, size_t payload_len,
								const char *const *secrets, int nsecrets,
								long long now, long long tolerance_seconds,
								int *matched);

/*
 * Writes "t=<timestamp>,v1=<64 hex>" and a NUL into buf, the header Stripe
 * would send for payload signed with secret at timestamp.  For tests, the
 * emulator-side tools and benchmarks.  Returns the length without the NUL,
 * or -1 (with buf emptied when size > 0) if secret is NULL or empty, the
 * timestamp is negative, payload is NULL with a non-zero length, or size is
 * too small (SP_SIG_HEADER_BUFSIZE is always enough).
 */
extern int	sp_sig_make_header(const char *secret, long long timestamp,
							   const char *payload, size_t payload_len,
							   char *buf, size_t size);

/* "ok", "no_header", "malformed", ...: stable, for logs and SQL results */
extern const char *sp_sig_result_name(SpSigResult r);

#endif							/* SP_SIGNATURE_H */
