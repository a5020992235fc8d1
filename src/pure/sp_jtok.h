/*-------------------------------------------------------------------------
 *
 * sp_jtok.h
 *		A validating JSON tokenizer that reads in place
 *
 * sp_event_decode() reads a dozen fields of a 3 kB webhook event once per
 * delivery.  A tree of allocated objects (json-c) cost more than the rest
 * of the decoding; this instead checks the whole text in one pass and
 * writes one fixed-size token per value into an array the caller gives,
 * pointing back into the text.  Nothing is allocated, nothing is copied
 * until a field is read, and a value's subtree can be stepped over in one
 * move.
 *
 * Strict RFC 8259, with what PostgreSQL's jsonb also refuses: a string may
 * not hold an unescaped control character, a lone surrogate escape or
 * \u0000, nor be longer than 2^28 - 1 bytes; the text must be valid UTF-8
 * (no overlong forms, no surrogates, nothing past U+10FFFF); a number must
 * fit numeric (at most 16383 digits after the point, none significant more
 * than 131071 places before it).  Only whitespace may surround the one
 * value.  What sp_jt_parse() accepts, jsonb stores.
 *
 * Pure C: no PostgreSQL headers, no allocation, nothing that can longjmp.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_JTOK_H
#define SP_JTOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum SpJtType
{
	SP_JT_NULL = 0,
	SP_JT_FALSE,
	SP_JT_TRUE,
	SP_JT_NUMBER,
	SP_JT_STRING,
	SP_JT_ARRAY,
	SP_JT_OBJECT
} SpJtType;

/* SpJtToken.flags */
#define SP_JT_ESCAPED	0x01	/* a string holding a backslash escape */
#define SP_JT_INTEGER	0x02	/* a number without fraction or exponent */

/*
 * One value.  An object's tokens are followed by its members, each a key
 * (a string token) and then the value's tokens; an array's by its elements.
 */
typedef struct SpJtToken
{
	uint32_t	start;			/* string: after its opening quote; number,
								 * literal, object, array: its first byte */
	uint32_t	len;			/* string: raw bytes between the quotes;
								 * others: the length of their whole text */
	uint32_t	next;			/* the token after this value and all it holds */
	uint32_t	count;			/* object: members; array: elements */
	uint8_t		type;			/* SpJtType */
	uint8_t		flags;
} SpJtToken;

typedef struct SpJtDoc
{
	const char *json;
	const SpJtToken *tok;
	size_t		ntok;
} SpJtDoc;

#define SP_JT_OK		0
#define SP_JT_INVALID	(-1)	/* not one valid JSON text, or too deep */
#define SP_JT_FULL		(-2)	/* more values than tokens given */

/*
 * Enough tokens for any valid text of len bytes (a value takes at least one
 * byte and a separator, a container two); a text that fills them is invalid.
 */
#define SP_JT_TOKENS_FOR(len) ((len) / 2 + 2)

/*
 * Tokenizes json[0..len) into tok[0..cap).  A value nested in max_depth or
 * more arrays and objects is refused (json-c's limit: with 64, an empty
 * array may sit 63 deep, anything inside it may not).  On SP_JT_OK, doc
 * describes the text, whose root is token 0.
 */
extern int	sp_jt_parse(const char *json, size_t len, int max_depth,
						SpJtToken *tok, size_t cap, SpJtDoc *doc);

/*
 * Object obj's member key, the last one where a key repeats (as jsonb and
 * json-c keep it); -1 when obj is not an object, the key is absent or its
 * value is null.
 */
extern int	sp_jt_member(const SpJtDoc *doc, int obj, const char *key);

/* The same, but a null value is found: where null says something. */
extern int	sp_jt_member_or_null(const SpJtDoc *doc, int obj, const char *key);

/* Element i of array arr; -1 when arr is not an array or too short. */
extern int	sp_jt_element(const SpJtDoc *doc, int arr, size_t i);

/* What sp_jt_string() found. */
typedef enum SpJtStringResult
{
	SP_JT_STRING_OK = 0,
	SP_JT_STRING_NOT_STRING,	/* the token is not a string */
	SP_JT_STRING_HAS_NUL,		/* holds U+0000, which text cannot (not from
								 * sp_jt_parse(), which refuses it) */
	SP_JT_STRING_TOO_LONG		/* does not fit dst (only when !cut) */
} SpJtStringResult;

/*
 * The string token idx, unescaped, NUL-terminated into dst[size].  When it
 * does not fit: with cut, the longest prefix that ends on a character
 * boundary; otherwise SP_JT_STRING_TOO_LONG.  *len (if not NULL) receives
 * the bytes written.
 */
extern SpJtStringResult sp_jt_string(const SpJtDoc *doc, int idx, char *dst,
									 size_t size, bool cut, size_t *len);

/*
 * An integer number token that fits int64 into *out; false for anything
 * else (a fraction, an exponent, beyond 64 bits, not a number).
 */
extern bool sp_jt_int64(const SpJtDoc *doc, int idx, int64_t *out);

#endif							/* SP_JTOK_H */
