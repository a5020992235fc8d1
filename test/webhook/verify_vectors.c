/*-------------------------------------------------------------------------
 *
 * verify_vectors.c
 *		Checks sp_signature against headers made by Stripe's node SDK
 *
 * Usage: verify_vectors NODE_VECTORS.jsonl C_VECTORS.jsonl
 *
 * Reads the vectors node_vectors.mjs generated with
 * stripe.webhooks.generateTestHeaderString and, for each:
 *	- sp_sig_check accepts the header with its secret at its timestamp;
 *	- one flipped payload byte, timestamp + 1, one changed signature digit
 *	  and a wrong secret are each refused;
 *	- sp_sig_make_header with the same inputs writes the very same header
 *	  (single-signature vectors).
 * Then writes C_VECTORS.jsonl for the other direction: our headers, and
 * tampered copies, each marked with the verdict node must reach.
 *
 * Prints one "ok - ..." or "not ok - ..." line per check; the Makefile
 * counts them.  A test program: it mallocs freely and exits on I/O errors.
 *
 *-------------------------------------------------------------------------
 */
#include "sp_signature.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

static int	nfailed;

static void
report(bool ok, const char *name, const char *what, SpSigResult r)
{
	if (!ok)
		nfailed++;
	printf("%s - c %s: %s (%s)\n", ok ? "ok" : "not ok", name, what,
		   sp_sig_result_name(r));
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes hex into a malloc'd buffer (with a spare NUL); NULL if bad. */
static char *
unhex(const char *hex, size_t *len)
{
	size_t		n = strlen(hex);
	char	   *out;
	size_t		i;

	if (n % 2 != 0)
		return NULL;
	out = malloc(n / 2 + 1);
	if (out == NULL)
		return NULL;
	for (i = 0; i < n / 2; i++)
	{
		int			hi = hexval((unsigned char) hex[2 * i]);
		int			lo = hexval((unsigned char) hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
		{
			free(out);
			return NULL;
		}
		out[i] = (char) ((hi << 4) | lo);
	}
	out[n / 2] = '\0';
	*len = n / 2;
	return out;
}

static const char *
get_string(struct json_object *obj, const char *key)
{
	struct json_object *val;

	if (!json_object_object_get_ex(obj, key, &val) ||
		!json_object_is_type(val, json_type_string))
		return NULL;
	return json_object_get_string(val);
}

/* One line of C_VECTORS.jsonl; secret and payload as given, in hex. */
static void
emit(FILE *out, const char *name, const char *secret_hex, long long timestamp,
	 const char *payload, size_t payload_len, const char *header,
	 const char *expect)
{
	size_t		i;

	fprintf(out, "{\"name\":\"%s\",\"secret_hex\":\"%s\",\"timestamp\":%lld,"
			"\"payload_hex\":\"", name, secret_hex, timestamp);
	for (i = 0; i < payload_len; i++)
		fprintf(out, "%02x", (unsigned char) payload[i]);
	fprintf(out, "\",\"header\":\"%s\",\"expect\":\"%s\"}\n", header, expect);
}

/* Replaces the first v1 digest's first hex digit with a different one. */
static void
tamper_signature(char *header)
{
	char	   *p = strstr(header, "v1=");

	if (p != NULL)
		p[3] = p[3] == '0' ? '1' : '0';
}

/* "t=<timestamp + 1>,..." */
static void
shift_timestamp(const char *header, long long timestamp, char *dst, size_t size)
{
	const char *rest = strchr(header, ',');

	snprintf(dst, size, "t=%lld%s", timestamp + 1, rest != NULL ? rest : "");
}

static void
check_vector(struct json_object *v, FILE *out)
{
	const char *name = get_string(v, "name");
	const char *secret_hex = get_string(v, "secret_hex");
	const char *payload_hex = get_string(v, "payload_hex");
	const char *header = get_string(v, "header");
	struct json_object *tsobj;
	long long	timestamp;
	size_t		secret_len;
	size_t		payload_len;
	char	   *secret;
	char	   *payload;
	const char *secrets[1];
	static const char *const wrong[] = {"whsec_not_the_secret"};
	char		buf[1024];
	char		ours[SP_SIG_HEADER_BUFSIZE];
	char		name2[512];
	SpSigResult r;
	int			matched;

	if (name == NULL || secret_hex == NULL || payload_hex == NULL ||
		header == NULL || !json_object_object_get_ex(v, "timestamp", &tsobj))
	{
		report(false, "?", "vector lacks a field", SP_SIG_MALFORMED);
		return;
	}
	timestamp = json_object_get_int64(tsobj);
	secret = unhex(secret_hex, &secret_len);
	payload = unhex(payload_hex, &payload_len);
	if (secret == NULL || payload == NULL)
	{
		report(false, name, "bad hex in vector", SP_SIG_MALFORMED);
		free(secret);
		free(payload);
		return;
	}
	secrets[0] = secret;

	r = sp_sig_check(header, strlen(header), payload, payload_len, secrets, 1,
					 timestamp, 300, &matched);
	report(r == SP_SIG_OK && matched == 0, name, "node's header accepted", r);

	if (payload_len > 0)
	{
		payload[payload_len / 2] ^= 0x01;
		r = sp_sig_check(header, strlen(header), payload, payload_len, secrets, 1,
						 timestamp, 300, NULL);
		report(r == SP_SIG_MISMATCH, name, "payload byte flipped, refused", r);
		payload[payload_len / 2] ^= 0x01;
	}

	shift_timestamp(header, timestamp, buf, sizeof(buf));
	r = sp_sig_check(buf, strlen(buf), payload, payload_len, secrets, 1,
					 timestamp, 300, NULL);
	report(r == SP_SIG_MISMATCH, name, "timestamp + 1, refused", r);

	snprintf(buf, sizeof(buf), "%s", header);
	tamper_signature(buf);
	r = sp_sig_check(buf, strlen(buf), payload, payload_len, secrets, 1,
					 timestamp, 300, NULL);
	/* a rolled header still carries the other, untouched digest */
	if (strstr(header, ",v1=") == strrchr(header, ','))
		report(r == SP_SIG_MISMATCH, name, "signature digit changed, refused", r);

	r = sp_sig_check(header, strlen(header), payload, payload_len, wrong, 1,
					 timestamp, 300, NULL);
	report(r == SP_SIG_MISMATCH, name, "wrong secret, refused", r);

	r = sp_sig_check(header, strlen(header), payload, payload_len, secrets, 1,
					 timestamp + 301, 300, NULL);
	report(r == SP_SIG_TOO_OLD, name, "301 s later, too old", r);

	/* the other direction: our header, byte for byte the SDK's */
	if (sp_sig_make_header(secret, timestamp, payload, payload_len, ours,
						   sizeof(ours)) < 0)
		report(false, name, "sp_sig_make_header failed", SP_SIG_INTERNAL_ERROR);
	else
	{
		if (strchr(strchr(header, ',') + 1, ',') == NULL)
			report(strcmp(ours, header) == 0, name,
				   "sp_sig_make_header equals node's header", SP_SIG_OK);

		emit(out, name, secret_hex, timestamp, payload, payload_len, ours, "ok");

		snprintf(name2, sizeof(name2), "%s/payload-flipped", name);
		if (payload_len > 0)
		{
			payload[payload_len / 2] ^= 0x01;
			emit(out, name2, secret_hex, timestamp, payload, payload_len, ours, "fail");
			payload[payload_len / 2] ^= 0x01;
		}

		snprintf(name2, sizeof(name2), "%s/timestamp-shifted", name);
		shift_timestamp(ours, timestamp, buf, sizeof(buf));
		emit(out, name2, secret_hex, timestamp + 1, payload, payload_len, buf, "fail");

		snprintf(name2, sizeof(name2), "%s/signature-changed", name);
		snprintf(buf, sizeof(buf), "%s", ours);
		tamper_signature(buf);
		emit(out, name2, secret_hex, timestamp, payload, payload_len, buf, "fail");
	}

	free(secret);
	free(payload);
}

int
main(int argc, char **argv)
{
	FILE	   *in;
	FILE	   *out;
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		n;
	int			nvectors = 0;

	if (argc != 3)
	{
		fprintf(stderr, "usage: %s NODE_VECTORS.jsonl C_VECTORS.jsonl\n", argv[0]);
		return 2;
	}
	in = fopen(argv[1], "r");
	out = fopen(argv[2], "w");
	if (in == NULL || out == NULL)
	{
		perror("verify_vectors");
		return 2;
	}

	while ((n = getline(&line, &cap, in)) > 0)
	{
		struct json_object *v = json_tokener_parse(line);

		if (v == NULL || !json_object_is_type(v, json_type_object))
		{
			report(false, "?", "unparsable vector line", SP_SIG_MALFORMED);
			json_object_put(v);
			continue;
		}
		check_vector(v, out);
		json_object_put(v);
		nvectors++;
	}
	free(line);
	fclose(in);
	if (fclose(out) != 0)
	{
		perror("verify_vectors");
		return 2;
	}
	if (nvectors == 0)
		report(false, argv[1], "no vectors", SP_SIG_NO_HEADER);
	return nfailed > 0 ? 1 : 0;
}
