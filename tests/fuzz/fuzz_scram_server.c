/* libFuzzer target: pgmoat as SCRAM server.  Byte 0 chooses the options;
 * the rest is client-first-message '\n' client-final-message.
 *   bit 0: TLS: channel binding data is set (SCRAM-SHA-256-PLUS offered)
 *   bit 1: the client names SCRAM-SHA-256-PLUS (else SCRAM-SHA-256)
 *   bit 2: unknown user: a mock secret
 *   bit 3: skip scram_server_set_mechanism() (the default mechanism)
 * The server nonce is RFC 7677's, so the RFC's client-final passes. */
#include <config.h>

#include "auth/scram.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct scram_secret secret;
	static bool have_secret;
	if (!have_secret) {
		if (!scram_parse_secret(RFC_SECRET, &secret))
			abort();
		have_secret = true;
	}
	if (size < 1)
		return 0;
	unsigned opts = data[0];
	struct fuzz_piece first, final;
	fuzz_split(data + 1, size - 1, &first, &final);

	struct scram_server s;
	static const uint8_t seed[] = "fuzz-mock-seed";
	scram_server_init(&s, (opts & 4) ? NULL : &secret, "user", seed, sizeof(seed) - 1);
	if (!scram_server_set_nonce(&s, RFC_SNONCE))
		abort();
	if (opts & 1)
		scram_server_set_channel_binding(&s, fuzz_cb_data, sizeof(fuzz_cb_data));
	const char *mechs[SCRAM_MAX_MECHANISMS];
	(void)scram_server_mechanisms(&s, mechs);
	if (!(opts & 8)) {
		bool set = scram_server_set_mechanism(
		        &s, (opts & 2) ? SCRAM_MECHANISM_PLUS : SCRAM_MECHANISM);
		(void)set;
	}

	char *out = NULL;
	size_t out_len = 0;
	enum scram_status st = scram_server_first(&s, first.p, first.len, &out, &out_len);
	free(out);
	out = NULL;
	if (st == SCRAM_CONTINUE) {
		st = scram_server_final(&s, final.p, final.len, &out, &out_len);
		free(out);
		out = NULL;
	}
	(void)scram_status_name(st);
	(void)scram_server_error(&s);
	/* Out of order: must be refused, never crash. */
	st = scram_server_final(&s, final.p, final.len, &out, &out_len);
	free(out);
	scram_server_clear(&s);
	return 0;
}
