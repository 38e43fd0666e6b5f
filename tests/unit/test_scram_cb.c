/* SCRAM-SHA-256-PLUS (tls-server-end-point channel binding, RFC 5929 and
 * RFC 5802) both ways: fixed vectors computed independently with Python's
 * hashlib/hmac, exchanges, key passthrough, the API's rules and hostile
 * messages. */
#include <config.h>

#include "auth/scram.h"
#include "tests/lib/tap.h"
#include "tests/unit/scram_vectors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ channel binding */

/* tls-server-end-point data: SHA-256 and SHA-512 of "pgmoat test
 * certificate" (any bytes do; the module never sees the certificate). */
#define CB_SHA256 "fc71e7c19867fb0227360a88f308654e7a4aeab39e87bb2a5909306b164a4cd7"
#define CB_SHA512                                                                                  \
	"82c2f5e214f11616b488bb68f9757b269bfb012fa379447353b2de2c38a4f98b89fba3b4d053d28ba67d8432" \
	"c2"                                                                                       \
	"e73279b35144a33f33130e7a20a502b58b5930"
#define CB_HEADER_B64 "cD10bHMtc2VydmVyLWVuZC1wb2ludCws" /* "p=tls-server-end-point,," */

/* RFC 7677's exchange with channel binding, computed independently with
 * Python's hashlib/hmac/base64 (same password, salt, nonces and user). */
static void test_cb_vectors(void)
{
	static const struct {
		const char *first, *cb_hex, *final, *server_final, *why;
	} cases[] = {
	        {"p=tls-server-end-point,,n=user,r=" RFC_CNONCE, CB_SHA256,
	         "c=" CB_HEADER_B64
	         "/HHnwZhn+wInNgqI8whlTnpK6rOeh7sqWQkwaxZKTNc=,r=" RFC_CNONCE RFC_SNONCE
	         ",p=z25tjDFi93smU0L1KNDtuyDGvdTBYa+VfjJ12FLs4Kg=",
	         "v=hP49ee+HOZKzLQulSCqf4pBq018S1fqK7LmA/sDvm3c=", "32-byte binding"},
	        {"p=tls-server-end-point,,n=user,r=" RFC_CNONCE, CB_SHA512,
	         "c=" CB_HEADER_B64
	         "gsL14hTxFha0iLto+XV7Jpv7AS+jeURzU7LeLDik+YuJ+6O00FPSi6Z9hDLC5zJ5s1FE"
	         "oz8zEw56IKUCtYtZMA==,r=" RFC_CNONCE RFC_SNONCE
	         ",p=8c3iBSXC0lzKZ4wn4Tm7IdMz5Hvzj+tiLwoY4coaFe0=",
	         "v=tA6oUcljxEr5YBMb3Iqo7+ftCuBwMBn0n4PyirtWKGA=", "64-byte binding"},
	        {"y,,n=user,r=" RFC_CNONCE, NULL,
	         "c=eSws,r=" RFC_CNONCE RFC_SNONCE
	         ",p=FoqiHTtQEDE8lz1CdaEe3tK4mS+iMDTl77SPyDS53DY=",
	         "v=dI4KpiQJwBr1+V+K6U1dA6l6I4I9DUNXWND4pcpRU3U=", "gs2 'y' without TLS"},
	};
	uint8_t cb[SCRAM_MAX_CB_DATA], want_key[SCRAM_KEY_LEN];

	hex_decode(RFC_CLIENT_KEY, want_key, sizeof(want_key));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t cb_len = cases[i].cb_hex != NULL ? strlen(cases[i].cb_hex) / 2 : 0;
		const char *mechs[SCRAM_MAX_MECHANISMS];
		struct scram_server s;
		struct scram_client c;
		struct scram_secret sec;
		char *out;
		size_t out_len;

		if (cb_len > 0)
			hex_decode(cases[i].cb_hex, cb, cb_len);

		scram_client_init_password(&c, RFC_PASSWORD);
		ok(scram_client_set_user(&c, "user") && scram_client_set_nonce(&c, RFC_CNONCE) &&
		           (cb_len > 0 ? scram_client_set_channel_binding(&c, cb, cb_len)
		                       : scram_client_set_cb_supported(&c)),
		   "cb vector client (%s): set-up", cases[i].why);
		is_str(scram_client_mechanism(&c),
		       cb_len > 0 ? SCRAM_MECHANISM_PLUS : SCRAM_MECHANISM,
		       "cb vector client (%s): mechanism", cases[i].why);
		ok(scram_client_first(&c, &out, &out_len), "cb vector client (%s): first",
		   cases[i].why);
		is_str(out, cases[i].first, "cb vector client (%s): client-first", cases[i].why);
		free(out);
		is_int(scram_client_final(&c, u8(RFC_SERVER_FIRST), strlen(RFC_SERVER_FIRST), &out,
		                          &out_len),
		       SCRAM_CONTINUE, "cb vector client (%s): server-first accepted",
		       cases[i].why);
		is_str(out, cases[i].final, "cb vector client (%s): client-final", cases[i].why);
		free(out);
		is_int(scram_client_verify(&c, u8(cases[i].server_final),
		                           strlen(cases[i].server_final)),
		       SCRAM_DONE, "cb vector client (%s): server signature", cases[i].why);
		scram_client_clear(&c);
		ok(c.cb_len == 0 && c.cb_data[0] == 0 && c.gs2_flag == 0,
		   "cb vector client (%s): clear zeroes the binding", cases[i].why);

		rfc_secret(&sec);
		scram_server_init(&s, &sec, "user", NULL, 0);
		ok(scram_server_set_nonce(&s, RFC_SNONCE), "cb vector server (%s): nonce",
		   cases[i].why);
		if (cb_len > 0) {
			scram_server_set_channel_binding(&s, cb, cb_len);
			is_int((long)scram_server_mechanisms(&s, mechs), 2,
			       "cb vector server (%s): two mechanisms offered", cases[i].why);
			ok(strcmp(mechs[0], "SCRAM-SHA-256-PLUS") == 0 &&
			           strcmp(mechs[1], "SCRAM-SHA-256") == 0,
			   "cb vector server (%s): -PLUS first", cases[i].why);
			ok(scram_server_set_mechanism(&s, SCRAM_MECHANISM_PLUS),
			   "cb vector server (%s): client chose -PLUS", cases[i].why);
		}
		is_int(scram_server_first(&s, u8(cases[i].first), strlen(cases[i].first), &out,
		                          &out_len),
		       SCRAM_CONTINUE, "cb vector server (%s): client-first accepted",
		       cases[i].why);
		is_str(out, RFC_SERVER_FIRST, "cb vector server (%s): server-first", cases[i].why);
		free(out);
		is_int(scram_server_final(&s, u8(cases[i].final), strlen(cases[i].final), &out,
		                          &out_len),
		       SCRAM_DONE, "cb vector server (%s): client-final accepted", cases[i].why);
		is_str(out, cases[i].server_final, "cb vector server (%s): server-final",
		       cases[i].why);
		free(out);
		ok(s.cb_used == (cb_len > 0), "cb vector server (%s): cb_used recorded",
		   cases[i].why);
		ok(memcmp(s.client_key, want_key, SCRAM_KEY_LEN) == 0,
		   "cb vector server (%s): ClientKey recovered", cases[i].why);
		is_str(scram_server_error(&s), NULL, "cb vector server (%s): no error",
		       cases[i].why);
		scram_server_clear(&s);
		ok(s.cb_len == 0 && s.cb_data[0] == 0 && !s.cb_used,
		   "cb vector server (%s): clear zeroes the binding", cases[i].why);
	}
}

/* Run a whole exchange; returns the first server status that is not
 * SCRAM_CONTINUE and fills the client's verify status. */
static enum scram_status cb_exchange(struct scram_server *s, struct scram_client *c,
                                     enum scram_status *client_st)
{
	char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
	size_t l1, l2, l3, l4;
	enum scram_status st = SCRAM_PROTO;

	*client_st = SCRAM_PROTO;
	if (!scram_client_first(c, &m1, &l1))
		goto out;
	st = scram_server_first(s, u8(m1), l1, &m2, &l2);
	if (st != SCRAM_CONTINUE)
		goto out;
	if (scram_client_final(c, u8(m2), l2, &m3, &l3) != SCRAM_CONTINUE) {
		st = SCRAM_PROTO;
		goto out;
	}
	st = scram_server_final(s, u8(m3), l3, &m4, &l4);
	if (st == SCRAM_DONE)
		*client_st = scram_client_verify(c, u8(m4), l4);
out:
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	return st;
}

/* Which binding data the client has. */
enum { CB_NONE, CB_SAME, CB_FLIPPED, CB_SHORT, CB_LONG };

static void test_cb_exchanges(void)
{
	static const struct {
		bool tls; /* the server has channel binding data */
		const char *mech; /* chosen by the client; NULL: not set */
		char flag; /* the client's gs2 flag */
		int client_cb;
		enum scram_status want;
		const char *err; /* part of scram_server_error(), or NULL for none */
		const char *why;
	} cases[] = {
	        {true, SCRAM_MECHANISM_PLUS, 'p', CB_SAME, SCRAM_DONE, NULL, "-PLUS with 'p'"},
	        {true, SCRAM_MECHANISM_PLUS, 'p', CB_FLIPPED, SCRAM_FAIL, "channel binding check",
	         "-PLUS, the client's binding data differs in one bit"},
	        {true, SCRAM_MECHANISM_PLUS, 'p', CB_SHORT, SCRAM_FAIL, "channel binding check",
	         "-PLUS, the client's binding data is a prefix of the server's"},
	        {true, SCRAM_MECHANISM_PLUS, 'p', CB_LONG, SCRAM_FAIL, "channel binding check",
	         "-PLUS, the client's binding data extends the server's"},
	        {true, SCRAM_MECHANISM_PLUS, 'y', CB_NONE, SCRAM_FAIL, "thinks the server does not",
	         "-PLUS with 'y'"},
	        {true, SCRAM_MECHANISM_PLUS, 'n', CB_NONE, SCRAM_PROTO, "sent no channel binding",
	         "-PLUS with 'n'"},
	        {true, SCRAM_MECHANISM, 'y', CB_NONE, SCRAM_FAIL, "thinks the server does not",
	         "TLS, 'y': a downgrade"},
	        {true, SCRAM_MECHANISM, 'n', CB_NONE, SCRAM_DONE, NULL,
	         "TLS, 'n': a client without channel binding"},
	        {true, NULL, 'n', CB_NONE, SCRAM_DONE, NULL, "TLS, no mechanism set, 'n'"},
	        {true, NULL, 'y', CB_NONE, SCRAM_FAIL, "thinks the server does not",
	         "TLS, no mechanism set, 'y'"},
	        {true, SCRAM_MECHANISM, 'p', CB_SAME, SCRAM_PROTO, "did not select",
	         "TLS, 'p' with plain SCRAM-SHA-256"},
	        {false, SCRAM_MECHANISM, 'p', CB_SAME, SCRAM_PROTO, "did not select",
	         "no TLS, 'p'"},
	        {false, SCRAM_MECHANISM, 'n', CB_NONE, SCRAM_DONE, NULL, "no TLS, 'n'"},
	        {false, SCRAM_MECHANISM, 'y', CB_NONE, SCRAM_DONE, NULL, "no TLS, 'y'"},
	        {false, NULL, 'y', CB_NONE, SCRAM_DONE, NULL, "no TLS, no mechanism set, 'y'"},
	};
	uint8_t cb[SCRAM_MAX_CB_DATA], other[SCRAM_MAX_CB_DATA], salt[16] = "0123456789abcdef";
	struct scram_secret sec;

	hex_decode(CB_SHA512, cb, SCRAM_MAX_CB_DATA);
	if (!scram_secret_from_password("correct horse", salt, sizeof(salt), 1000, &sec))
		tap_bail("secret");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server s;
		struct scram_client c;
		enum scram_status st, cst;
		const char *err;
		size_t server_len = 32, client_len = 32;
		bool set = true;

		memcpy(other, cb, sizeof(other));
		if (cases[i].client_cb == CB_FLIPPED)
			other[31] ^= 0x10;
		else if (cases[i].client_cb == CB_SHORT)
			client_len = 31;
		else if (cases[i].client_cb == CB_LONG)
			client_len = 33;

		scram_server_init(&s, &sec, "alice", NULL, 0);
		if (cases[i].tls)
			scram_server_set_channel_binding(&s, cb, server_len);
		if (cases[i].mech != NULL)
			set = scram_server_set_mechanism(&s, cases[i].mech);
		scram_client_init_password(&c, "correct horse");
		if (cases[i].flag == 'p')
			set = set && scram_client_set_channel_binding(&c, other, client_len);
		else if (cases[i].flag == 'y')
			set = set && scram_client_set_cb_supported(&c);
		if (!set)
			tap_bail("set-up of the channel binding exchanges");

		st = cb_exchange(&s, &c, &cst);
		is_int(st, cases[i].want, "cb exchange: %s", cases[i].why);
		if (st == SCRAM_DONE) {
			is_int(cst, SCRAM_DONE, "cb exchange: %s: the client verifies the server",
			       cases[i].why);
			ok(s.cb_used == (cases[i].flag == 'p'), "cb exchange: %s: cb_used is %s",
			   cases[i].why, cases[i].flag == 'p' ? "true" : "false");
			ok(memcmp(s.client_key, c.client_key, SCRAM_KEY_LEN) == 0 &&
			           memcmp(s.secret.server_key, c.server_key, SCRAM_KEY_LEN) == 0,
			   "cb exchange: %s: the server has the client's keys", cases[i].why);
		} else {
			ok(!s.cb_used, "cb exchange: %s: cb_used stays false", cases[i].why);
		}
		err = scram_server_error(&s);
		if (cases[i].err == NULL)
			is_str(err, NULL, "cb exchange: %s: no error", cases[i].why);
		else
			ok(err != NULL && strstr(err, cases[i].err) != NULL,
			   "cb exchange: %s: error says \"%s\" (%s)", cases[i].why, cases[i].err,
			   err != NULL ? err : "(null)");
		scram_server_clear(&s);
		scram_client_clear(&c);
	}
}

/* With channel binding, the keys the server recovers log in elsewhere, with
 * that connection's own binding (passthrough). */
static void test_cb_passthrough(void)
{
	struct scram_server s;
	struct scram_client c;
	struct scram_secret sec;
	enum scram_status cst;
	uint8_t cb1[32], cb2[64], salt[16] = "fedcba9876543210", ck[SCRAM_KEY_LEN],
	                          sk[SCRAM_KEY_LEN];

	hex_decode(CB_SHA256, cb1, sizeof(cb1));
	hex_decode(CB_SHA512, cb2, sizeof(cb2));
	if (!scram_secret_from_password("battery staple", salt, sizeof(salt), 1000, &sec))
		tap_bail("secret");

	scram_server_init(&s, &sec, "bob", NULL, 0);
	scram_server_set_channel_binding(&s, cb1, sizeof(cb1));
	scram_client_init_password(&c, "battery staple");
	if (!scram_server_set_mechanism(&s, SCRAM_MECHANISM_PLUS) ||
	    !scram_client_set_channel_binding(&c, cb1, sizeof(cb1)))
		tap_bail("passthrough set-up");
	is_int(cb_exchange(&s, &c, &cst), SCRAM_DONE, "cb passthrough: the client logs in");
	ok(s.cb_used, "cb passthrough: with channel binding");
	ok(memcmp(s.client_key, c.client_key, SCRAM_KEY_LEN) == 0,
	   "cb passthrough: ClientKey recovered from the proof");
	ok(memcmp(s.secret.server_key, c.server_key, SCRAM_KEY_LEN) == 0,
	   "cb passthrough: ServerKey is the client's");
	memcpy(ck, s.client_key, SCRAM_KEY_LEN);
	memcpy(sk, s.secret.server_key, SCRAM_KEY_LEN);
	scram_server_clear(&s);
	scram_client_clear(&c);

	/* The keys, over another TLS connection with another certificate. */
	scram_server_init(&s, &sec, "bob", NULL, 0);
	scram_server_set_channel_binding(&s, cb2, sizeof(cb2));
	scram_client_init_keys(&c, ck, sk);
	if (!scram_server_set_mechanism(&s, SCRAM_MECHANISM_PLUS) ||
	    !scram_client_set_channel_binding(&c, cb2, sizeof(cb2)))
		tap_bail("passthrough set-up");
	is_int(cb_exchange(&s, &c, &cst), SCRAM_DONE, "cb passthrough: the keys log in with -PLUS");
	is_int(cst, SCRAM_DONE, "cb passthrough: the client verifies the server");
	ok(s.cb_used, "cb passthrough: the second login is bound too");
	scram_server_clear(&s);
	scram_client_clear(&c);

	/* The keys with the first connection's binding: refused. */
	scram_server_init(&s, &sec, "bob", NULL, 0);
	scram_server_set_channel_binding(&s, cb2, sizeof(cb2));
	scram_client_init_keys(&c, ck, sk);
	if (!scram_server_set_mechanism(&s, SCRAM_MECHANISM_PLUS) ||
	    !scram_client_set_channel_binding(&c, cb1, sizeof(cb1)))
		tap_bail("passthrough set-up");
	is_int(cb_exchange(&s, &c, &cst), SCRAM_FAIL,
	       "cb passthrough: another connection's binding fails");
	scram_server_clear(&s);
	scram_client_clear(&c);

	/* The keys to a server without TLS, 'y'. */
	scram_server_init(&s, &sec, "bob", NULL, 0);
	scram_client_init_keys(&c, ck, sk);
	if (!scram_client_set_cb_supported(&c))
		tap_bail("passthrough set-up");
	is_int(cb_exchange(&s, &c, &cst), SCRAM_DONE, "cb passthrough: the keys log in with 'y'");
	is_int(cst, SCRAM_DONE, "cb passthrough: 'y': the client verifies the server");
	scram_server_clear(&s);
	scram_client_clear(&c);
}

/* Setters, mechanism list and mechanism choice. */
static void test_cb_api(void)
{
	struct scram_server s;
	struct scram_client c;
	const char *mechs[SCRAM_MAX_MECHANISMS], *cf = "n,,n=,r=abc";
	uint8_t cb[SCRAM_MAX_CB_DATA + 1];
	char *out;
	size_t out_len;

	memset(cb, 0x5a, sizeof(cb));
	scram_server_init(&s, NULL, "u", NULL, 0);
	ok(scram_server_mechanisms(&s, mechs) == 1 && strcmp(mechs[0], SCRAM_MECHANISM) == 0,
	   "server without TLS offers SCRAM-SHA-256 only");
	ok(!scram_server_set_mechanism(&s, SCRAM_MECHANISM_PLUS),
	   "server without TLS: -PLUS refused");
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_PROTO,
	       "server: the exchange is over after a refused mechanism");
	is_str(scram_server_error(&s), "client selected a SASL mechanism that was not offered",
	       "server: error for a refused mechanism");
	scram_server_clear(&s);

	static const char *const bad_mechs[] = {"SCRAM-SHA-1",
	                                        "scram-sha-256",
	                                        "SCRAM-SHA-256-plus",
	                                        "SCRAM-SHA-256-PLUS ",
	                                        "",
	                                        "SCRAM-SHA-256-PLUSX"};
	for (size_t i = 0; i < sizeof(bad_mechs) / sizeof(bad_mechs[0]); i++) {
		scram_server_init(&s, NULL, "u", NULL, 0);
		scram_server_set_channel_binding(&s, cb, 32);
		ok(!scram_server_set_mechanism(&s, bad_mechs[i]),
		   "server: mechanism \"%s\" refused", bad_mechs[i]);
		scram_server_clear(&s);
	}

	scram_server_init(&s, NULL, "u", NULL, 0);
	scram_server_set_channel_binding(&s, cb, SCRAM_MAX_CB_DATA);
	ok(scram_server_mechanisms(&s, mechs) == 2, "server: %d bytes of binding data accepted",
	   SCRAM_MAX_CB_DATA);
	ok(scram_server_set_mechanism(&s, SCRAM_MECHANISM) &&
	           scram_server_set_mechanism(&s, SCRAM_MECHANISM_PLUS) && s.plus,
	   "server: the mechanism can be set again before the first message");
	scram_server_clear(&s);

	static const size_t bad_lens[] = {0, SCRAM_MAX_CB_DATA + 1};
	for (size_t i = 0; i < 2; i++) {
		scram_server_init(&s, NULL, "u", NULL, 0);
		scram_server_set_channel_binding(&s, cb, bad_lens[i]);
		is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_PROTO,
		       "server: %zu bytes of binding data end the exchange", bad_lens[i]);
		is_str(scram_server_error(&s), "invalid channel binding data from the caller",
		       "server: error for %zu bytes of binding data", bad_lens[i]);
		scram_server_clear(&s);
	}
	scram_server_init(&s, NULL, "u", NULL, 0);
	scram_server_set_channel_binding(&s, NULL, 32);
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_PROTO,
	       "server: NULL binding data ends the exchange");
	scram_server_clear(&s);

	scram_server_init(&s, NULL, "u", NULL, 0);
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_CONTINUE,
	       "server: first");
	free(out);
	scram_server_set_channel_binding(&s, cb, 32);
	is_int(scram_server_final(&s, u8("c=biws"), 6, &out, &out_len), SCRAM_PROTO,
	       "server: binding data after the first message ends the exchange");
	scram_server_clear(&s);

	scram_server_init(&s, NULL, "u", NULL, 0);
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_CONTINUE,
	       "server: first");
	free(out);
	ok(!scram_server_set_mechanism(&s, SCRAM_MECHANISM),
	   "server: no mechanism after the first message");
	scram_server_clear(&s);

	scram_client_init_password(&c, "pw");
	is_str(scram_client_mechanism(&c), SCRAM_MECHANISM, "client: SCRAM-SHA-256 by default");
	ok(!scram_client_set_channel_binding(&c, cb, 0), "client: empty binding data refused");
	ok(!scram_client_set_channel_binding(&c, cb, SCRAM_MAX_CB_DATA + 1),
	   "client: oversized binding data refused");
	ok(!scram_client_set_channel_binding(&c, NULL, 32), "client: NULL binding data refused");
	ok(scram_client_set_channel_binding(&c, cb, SCRAM_MAX_CB_DATA),
	   "client: %d bytes of binding data", SCRAM_MAX_CB_DATA);
	ok(!scram_client_set_cb_supported(&c), "client: 'y' refused after binding data");
	is_str(scram_client_mechanism(&c), SCRAM_MECHANISM_PLUS, "client: -PLUS with binding data");
	ok(scram_client_set_nonce(&c, "abc") && scram_client_first(&c, &out, &out_len),
	   "client: first with binding data");
	is_str(out, "p=tls-server-end-point,,n=,r=abc", "client: gs2 header 'p'");
	free(out);
	ok(!scram_client_set_channel_binding(&c, cb, 32), "client: binding data too late");
	scram_client_clear(&c);

	scram_client_init_password(&c, "pw");
	ok(scram_client_set_cb_supported(&c), "client: 'y'");
	ok(!scram_client_set_channel_binding(&c, cb, 32), "client: binding data refused after 'y'");
	is_str(scram_client_mechanism(&c), SCRAM_MECHANISM, "client: 'y' names SCRAM-SHA-256");
	ok(scram_client_set_nonce(&c, "abc") && scram_client_first(&c, &out, &out_len),
	   "client: first with 'y'");
	is_str(out, "y,,n=,r=abc", "client: gs2 header 'y'");
	free(out);
	ok(!scram_client_set_cb_supported(&c), "client: 'y' too late");
	scram_client_clear(&c);
}

/* Hostile gs2 headers, with and without -PLUS and TLS. */
static void test_cb_bad_client_first(void)
{
	static const struct {
		bool tls, plus;
		const char *msg;
		size_t len;
		enum scram_status want;
		const char *why;
	} cases[] = {
	        {true, true, MSG("p=tls-server-end-point,,n=,r=abc"), SCRAM_CONTINUE,
	         "control: -PLUS, 'p'"},
	        {true, true, MSG("p=tls-server-end-point,,n=user,r=abc,x=ext"), SCRAM_CONTINUE,
	         "-PLUS, 'p', user and extension"},
	        {true, true, MSG("p=tls-unique,,n=,r=abc"), SCRAM_PROTO, "tls-unique"},
	        {true, true, MSG("p=tls-exporter,,n=,r=abc"), SCRAM_PROTO, "tls-exporter"},
	        {true, true, MSG("p=tls-server-end-point-x,,n=,r=abc"), SCRAM_PROTO,
	         "cb name with a suffix"},
	        {true, true, MSG("p=tls-server-end-poin,,n=,r=abc"), SCRAM_PROTO,
	         "cb name one character short"},
	        {true, true, MSG("p=TLS-SERVER-END-POINT,,n=,r=abc"), SCRAM_PROTO,
	         "cb name is case-sensitive"},
	        {true, true, MSG("p=,,n=,r=abc"), SCRAM_PROTO, "empty cb name"},
	        {true, true, MSG("p,,n=,r=abc"), SCRAM_PROTO, "'p' without '='"},
	        {true, true, MSG("p"), SCRAM_PROTO, "'p' alone"},
	        {true, true, MSG("p="), SCRAM_PROTO, "'p=' alone"},
	        {true, true, MSG("p=tls-server-end-point"), SCRAM_PROTO, "truncated after cb name"},
	        {true, true, MSG("p=tls-server-end-point,"), SCRAM_PROTO,
	         "truncated after a comma"},
	        {true, true, MSG("p=tls-server-end-point,,"), SCRAM_PROTO, "gs2 header only"},
	        {true, true, MSG("p=tls-server-end-point,a=admin,n=,r=abc"), SCRAM_PROTO,
	         "authzid refused with 'p'"},
	        {true, true, MSG("p=tls-server-end-point,x,n=,r=abc"), SCRAM_PROTO,
	         "junk instead of authzid"},
	        {true, true, MSG("p=tls-server-end-point\0,,n=,r=abc"), SCRAM_PROTO,
	         "NUL in the cb name"},
	        {true, true, MSG("p=tls-server-end-point,,n=,r=abc\0"), SCRAM_PROTO,
	         "trailing NUL"},
	        {true, true, MSG("n,,n=,r=abc"), SCRAM_PROTO, "-PLUS with 'n'"},
	        {true, true, MSG("y,,n=,r=abc"), SCRAM_FAIL, "-PLUS with 'y'"},
	        {true, false, MSG("p=tls-server-end-point,,n=,r=abc"), SCRAM_PROTO,
	         "plain mechanism with 'p'"},
	        {true, false, MSG("p=tls-unique,,n=,r=abc"), SCRAM_PROTO,
	         "plain mechanism with 'p=tls-unique'"},
	        {true, false, MSG("n,,n=,r=abc"), SCRAM_CONTINUE, "TLS, plain mechanism, 'n'"},
	        {true, false, MSG("y,,n=,r=abc"), SCRAM_FAIL, "TLS, plain mechanism, 'y'"},
	        {true, false, MSG("y,a=admin,n=,r=abc"), SCRAM_PROTO, "authzid before a downgrade"},
	        {false, false, MSG("p=tls-server-end-point,,n=,r=abc"), SCRAM_PROTO,
	         "no TLS with 'p'"},
	        {false, false, MSG("y,,n=,r=abc"), SCRAM_CONTINUE, "no TLS with 'y'"},
	        {false, false, MSG("y,"), SCRAM_PROTO, "'y' truncated"},
	};
	uint8_t cb[32];

	hex_decode(CB_SHA256, cb, sizeof(cb));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server s;
		char *out = (char *)1;
		size_t out_len = 99;
		enum scram_status st;

		scram_server_init(&s, NULL, "u", NULL, 0);
		if (cases[i].tls)
			scram_server_set_channel_binding(&s, cb, sizeof(cb));
		if (!scram_server_set_mechanism(
		            &s, cases[i].plus ? SCRAM_MECHANISM_PLUS : SCRAM_MECHANISM))
			tap_bail("cb client-first set-up");
		st = scram_server_first(&s, u8(cases[i].msg), cases[i].len, &out, &out_len);
		is_int(st, cases[i].want, "cb client-first: %s", cases[i].why);
		if (st != SCRAM_CONTINUE)
			ok(out == NULL && out_len == 0 && scram_server_error(&s) != NULL,
			   "cb client-first: no output, an error (%s)", cases[i].why);
		free(st == SCRAM_CONTINUE ? out : NULL);
		scram_server_clear(&s);
	}
}

/* Hostile c= values after a good "p=tls-server-end-point,," first message. */
static void test_cb_bad_client_final(void)
{
	enum { RAW, B64 };
	uint8_t cb[32], raw[256];
	size_t hdr = strlen("p=tls-server-end-point,,");
	char b64[512];

	hex_decode(CB_SHA256, cb, sizeof(cb));
	memcpy(raw, "p=tls-server-end-point,,", hdr);
	memcpy(raw + hdr, cb, sizeof(cb));

	for (int i = 0; i < 19; i++) {
		struct scram_server s;
		struct scram_client c;
		struct scram_secret sec;
		char *m1, *m2, *m3, *m4 = (char *)1, *msg, *proof, *cval = b64;
		size_t l1, l2, l3, l4 = 99, n = hdr + sizeof(cb);
		enum scram_status want = SCRAM_PROTO, st;
		const char *why;
		uint8_t tmp[320];

		memcpy(tmp, raw, n);
		b64[0] = '\0';
		switch (i) {
		case 0:
			want = SCRAM_DONE;
			why = "control: the real c=";
			break;
		case 1:
			tmp[n - 1] ^= 1;
			want = SCRAM_FAIL;
			why = "last bit of the binding flipped";
			break;
		case 2:
			tmp[hdr] ^= 0x80;
			want = SCRAM_FAIL;
			why = "first bit of the binding flipped";
			break;
		case 3:
			n = hdr;
			want = SCRAM_FAIL;
			why = "the header without binding data";
			break;
		case 4:
			n--;
			want = SCRAM_FAIL;
			why = "binding data one byte short";
			break;
		case 5:
			tmp[n++] = 0;
			want = SCRAM_FAIL;
			why = "binding data with an extra byte";
			break;
		case 6:
			memset(tmp + hdr, 0, 64);
			n = hdr + 64;
			want = SCRAM_FAIL;
			why = "64 bytes of zeros as binding data";
			break;
		case 7:
			cval = "biws";
			why = "c= of \"n,,\"";
			break;
		case 8:
			cval = "eSws";
			why = "c= of \"y,,\"";
			break;
		case 9:
			cval = "";
			why = "empty c=";
			break;
		case 10:
			memcpy(tmp, "p=tls-unique,,", 14);
			memcpy(tmp + 14, cb, 32);
			n = 46;
			why = "c= with another cb name";
			break;
		case 11:
			memcpy(tmp, "n,,", 3);
			memcpy(tmp + 3, cb, 32);
			n = 35;
			why = "c= of \"n,,\" and the binding data";
			break;
		case 12:
			memcpy(tmp, "p=tls-server-end-point,a=x,", 27);
			memcpy(tmp + 27, cb, 32);
			n = 59;
			why = "c= with an authzid";
			break;
		case 13:
			cval = "cD10bHMtc2VydmVyLWVuZC1wb2ludCws!!!!";
			why = "c= not base64";
			break;
		case 14:
			cval = CB_HEADER_B64 "/HHnwZhn+wInNgqI8whlTnpK6rOeh7sqWQkwaxZKTNc";
			why = "c= unpadded";
			break;
		case 15:
			cval = CB_HEADER_B64 "/HHnwZhn+wInNgqI8whlTnpK6rOeh7sqWQkwaxZKTNc= ";
			why = "c= with a trailing space";
			break;
		case 16:
			/* 300 bytes: more than any header and binding data. */
			memset(tmp + hdr, 'x', 300 - hdr);
			n = 300;
			why = "c= of 300 bytes";
			break;
		case 17:
			cval = NULL;
			why = "c= of 3,000 characters";
			break;
		default:
			cval = NULL;
			why = "c= making the message over SCRAM_MAX_MESSAGE";
			break;
		}
		if (cval == b64 && b64_encode(tmp, n, b64, sizeof(b64)) == 0)
			tap_bail("c= encoding");

		rfc_secret(&sec);
		scram_server_init(&s, &sec, "user", NULL, 0);
		scram_server_set_channel_binding(&s, cb, sizeof(cb));
		scram_client_init_password(&c, RFC_PASSWORD);
		if (!scram_server_set_mechanism(&s, SCRAM_MECHANISM_PLUS) ||
		    !scram_client_set_channel_binding(&c, cb, sizeof(cb)) ||
		    !scram_client_first(&c, &m1, &l1) ||
		    scram_server_first(&s, u8(m1), l1, &m2, &l2) != SCRAM_CONTINUE ||
		    scram_client_final(&c, u8(m2), l2, &m3, &l3) != SCRAM_CONTINUE)
			tap_bail("set-up of the cb client-final cases");
		proof = strstr(m3, ",p=") + 3;
		if (cval != NULL) {
			msg = malloc(strlen(cval) + strlen(s.nonce) + strlen(proof) + 16);
			sprintf(msg, "c=%s,r=%s,p=%s", cval, s.nonce, proof);
		} else {
			size_t len = i == 17 ? 3000 : SCRAM_MAX_MESSAGE;
			msg = malloc(len + strlen(s.nonce) + strlen(proof) + 16);
			memcpy(msg, "c=", 2);
			memset(msg + 2, 'A', len);
			sprintf(msg + 2 + len, ",r=%s,p=%s", s.nonce, proof);
		}
		st = scram_server_final(&s, u8(msg), strlen(msg), &m4, &l4);
		is_int(st, want, "cb client-final: %s", why);
		if (st == SCRAM_DONE) {
			ok(s.cb_used, "cb client-final: %s: channel binding used", why);
			free(m4);
		} else {
			ok(m4 == NULL && l4 == 0 && !s.cb_used && scram_server_error(&s) != NULL,
			   "cb client-final: %s: no output, an error", why);
		}
		free(msg);
		free(m1);
		free(m2);
		free(m3);
		scram_server_clear(&s);
		scram_client_clear(&c);
	}
}

int main(void)
{
	test_cb_vectors();
	test_cb_exchanges();
	test_cb_passthrough();
	test_cb_api();
	test_cb_bad_client_first();
	test_cb_bad_client_final();
	return tap_done();
}
