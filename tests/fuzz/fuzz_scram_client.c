/* libFuzzer target: pgmoat as SCRAM client.  Byte 0 chooses the options;
 * the rest is server-first-message '\n' server-final-message.
 *   bit 0: log in with a password (else with RFC 7677's keys, passthrough)
 *   bit 1: channel binding (SCRAM-SHA-256-PLUS)
 *   bit 2: the gs2 flag 'y' (could bind, server cannot)
 *   bit 3: a user name for n=
 * The client nonce is RFC 7677's, so the RFC's server messages pass.  With a
 * password, a server-first asking for more than 4096 iterations is answered
 * with the keys instead: PBKDF2 up to SCRAM_MAX_ITERATIONS would make every
 * such input a timeout. */
#include <config.h>

#include "auth/scram.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_scram.h"

/* Whether any "i=" in the message asks for more than 4096 iterations. */
static bool many_iterations(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (p[i] != 'i' || p[i + 1] != '=')
			continue;
		unsigned long v = 0;
		for (size_t j = i + 2; j < len && p[j] >= '0' && p[j] <= '9'; j++) {
			v = v * 10 + (unsigned long)(p[j] - '0');
			if (v > 4096)
				return true;
		}
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t server_key[SCRAM_KEY_LEN];
	static bool have_key;
	if (!have_key) {
		struct scram_secret sec;
		if (!scram_parse_secret(RFC_SECRET, &sec))
			abort();
		memcpy(server_key, sec.server_key, SCRAM_KEY_LEN);
		have_key = true;
	}
	if (size < 1)
		return 0;
	unsigned opts = data[0];
	struct fuzz_piece first, final;
	fuzz_split(data + 1, size - 1, &first, &final);

	struct scram_client c;
	if ((opts & 1) && !many_iterations(first.p, first.len))
		scram_client_init_password(&c, RFC_PASSWORD);
	else
		scram_client_init_keys(&c, rfc_client_key, server_key);
	if (!scram_client_set_nonce(&c, RFC_CNONCE))
		abort();
	if (opts & 2) {
		bool set = scram_client_set_channel_binding(&c, fuzz_cb_data, sizeof(fuzz_cb_data));
		(void)set;
	}
	if (opts & 4) {
		bool set = scram_client_set_cb_supported(&c);
		(void)set;
	}
	if (opts & 8) {
		bool set = scram_client_set_user(&c, "user");
		(void)set;
	}
	(void)scram_client_mechanism(&c);

	char *out = NULL;
	size_t out_len = 0;
	if (scram_client_first(&c, &out, &out_len)) {
		free(out);
		out = NULL;
		enum scram_status st = scram_client_final(&c, first.p, first.len, &out, &out_len);
		free(out);
		out = NULL;
		if (st == SCRAM_CONTINUE)
			st = scram_client_verify(&c, final.p, final.len);
		(void)scram_status_name(st);
		/* Out of order: must be refused, never crash. */
		(void)scram_client_verify(&c, final.p, final.len);
	}
	scram_client_clear(&c);
	return 0;
}
