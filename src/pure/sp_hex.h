/*-------------------------------------------------------------------------
 *
 * sp_hex.h
 *		One hex digit's value, either case (form decoding, JSON escapes)
 *
 * sp_signature.c keeps its own, lower-case only: the SDKs compare
 * signatures as lower-case hex text.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SP_HEX_H
#define SP_HEX_H

/* 0 to 15, or -1 for anything else */
static inline int
sp_hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

#endif							/* SP_HEX_H */
