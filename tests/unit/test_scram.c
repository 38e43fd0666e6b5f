/* SCRAM-SHA-256 and -PLUS: RFC 7677's vector both ways (and with channel
 * binding), round trips, mock users and hostile messages.  Values not in the RFC were computed independently with
 * Python's hashlib/hmac. */
#include <config.h>

#include "auth/scram.h"
#include "tests/lib/tap.h"
#include "tests/unit/scram_vectors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ base64 */

static void test_base64(void)
{
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
	                                  "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	static const char *const bad[] = {"Zg=",  "Zg=a", "Z===", "Zh==",     "Zm9=", "Zm9v\n",
	                                  "Zm 9", "Zm=v", "=Zm9", "Zm9v====", "Zm9-", "Zm9_"};
	char out[64];
	uint8_t dec[64];

	for (size_t i = 0; i < 7; i++) {
		size_t n = b64_encode(u8(plain[i]), strlen(plain[i]), out, sizeof(out));
		is_str(out, enc[i], "b64_encode(\"%s\")", plain[i]);
		is_int((long)n, (long)strlen(enc[i]), "b64_encode length (\"%s\")", plain[i]);
		long d = b64_decode(enc[i], strlen(enc[i]), dec, sizeof(dec));
		ok(d == (long)strlen(plain[i]) && memcmp(dec, plain[i], (size_t)d) == 0,
		   "b64_decode(\"%s\")", enc[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(b64_decode(bad[i], strlen(bad[i]), dec, sizeof(dec)), -1,
		       "b64_decode refuses bad input %zu", i);
	is_int(b64_decode("Zm9vYmFy", 8, dec, 5), -1, "b64_decode: output too small");
	is_int(b64_decode("Zm9vYmE=", 8, dec, 5), 5, "b64_decode: output exactly big enough");
	ok(b64_encode(u8("foo"), 3, out, 4) == 0 && out[0] == '\0',
	   "b64_encode: no room for the NUL");
	is_int(b64_decode("Zm\0v", 4, dec, sizeof(dec)), -1, "b64_decode refuses a NUL");
}

/* ---------------------------------------------------- primitives, secrets */

static void test_primitives(void)
{
	uint8_t salt[16], got[SCRAM_KEY_LEN], want[SCRAM_KEY_LEN];
	struct scram_secret sec, parsed;
	char buf[SCRAM_SECRET_BUFSIZE];

	if (b64_decode(RFC_SALT, strlen(RFC_SALT), salt, sizeof(salt)) != 16)
		tap_bail("RFC salt");
	hex_decode(RFC_SALTED, want, sizeof(want));
	ok(scram_salted_password(RFC_PASSWORD, salt, 16, 4096, got) &&
	           memcmp(got, want, sizeof(want)) == 0,
	   "SaltedPassword of the RFC vector");

	ok(scram_secret_from_password(RFC_PASSWORD, salt, 16, 4096, &sec), "secret from password");
	ok(scram_format_secret(&sec, buf, sizeof(buf)), "format secret");
	is_str(buf, RFC_SECRET, "secret of the RFC vector");
	ok(!scram_format_secret(&sec, buf, strlen(RFC_SECRET)), "format: buffer one short");
	ok(scram_format_secret(&sec, buf, strlen(RFC_SECRET) + 1), "format: buffer just right");

	ok(scram_parse_secret(RFC_SECRET, &parsed), "parse secret");
	ok(parsed.iterations == 4096 && parsed.salt_len == 16 &&
	           memcmp(parsed.salt, salt, 16) == 0 &&
	           memcmp(parsed.stored_key, sec.stored_key, SCRAM_KEY_LEN) == 0 &&
	           memcmp(parsed.server_key, sec.server_key, SCRAM_KEY_LEN) == 0,
	   "parsed secret has the derived fields");

	/* Largest salt and iteration count round trip. */
	memset(&sec, 0, sizeof(sec));
	sec.iterations = 2147483647;
	sec.salt_len = SCRAM_MAX_SALT;
	for (size_t i = 0; i < SCRAM_MAX_SALT; i++)
		sec.salt[i] = (uint8_t)(i * 37 + 1);
	memset(sec.stored_key, 0xab, SCRAM_KEY_LEN);
	memset(sec.server_key, 0xcd, SCRAM_KEY_LEN);
	ok(scram_format_secret(&sec, buf, sizeof(buf)), "format the largest secret");
	ok(scram_parse_secret(buf, &parsed) && parsed.iterations == sec.iterations &&
	           parsed.salt_len == SCRAM_MAX_SALT &&
	           memcmp(parsed.salt, sec.salt, SCRAM_MAX_SALT) == 0 &&
	           memcmp(parsed.server_key, sec.server_key, SCRAM_KEY_LEN) == 0,
	   "largest secret round trip");
	sec.iterations = 0;
	ok(!scram_format_secret(&sec, buf, sizeof(buf)), "format refuses 0 iterations");

	ok(!scram_salted_password(RFC_PASSWORD, salt, 16, 0, got), "0 iterations refused");
	ok(!scram_secret_from_password(RFC_PASSWORD, salt, 0, 4096, &sec), "empty salt refused");
	ok(!scram_secret_from_password(RFC_PASSWORD, salt, SCRAM_MAX_SALT + 1, 4096, &sec),
	   "oversized salt refused");
}

static void test_bad_secrets(void)
{
#define KEY_A "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define KEY_B "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
	static const char *const bad[] = {
	        "",
	        "SCRAM-SHA-256",
	        "SCRAM-SHA-256$",
	        "scram-sha-256$4096:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-1$4096:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$0:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$-1:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$+4096:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$04096:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$4096x:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$2147483648:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$99999999999999999999:" RFC_SALT "$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$4096:$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ!=$" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$4096:" RFC_SALT "$" KEY_A,
	        "SCRAM-SHA-256$4096:" RFC_SALT "$" KEY_A ":",
	        "SCRAM-SHA-256$4096:" RFC_SALT "$:" KEY_B,
	        "SCRAM-SHA-256$4096:" RFC_SALT "$" KEY_A ":" KEY_B "x",
	        "SCRAM-SHA-256$4096:" RFC_SALT "$" KEY_A ":" KEY_B "AAAA",
	        "SCRAM-SHA-256$4096:" RFC_SALT "$" KEY_A ":" KEY_B ":",
	        "SCRAM-SHA-256$4096:" RFC_SALT "$" KEY_A ":" KEY_B " ",
	        "SCRAM-SHA-256$4096:" RFC_SALT
	        "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4q==:" KEY_B,
	        "SCRAM-SHA-256$4096:" RFC_SALT "$" KEY_A
	        ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU",
	        "SCRAM-SHA-256$4096:" RFC_SALT ":" KEY_A ":" KEY_B,
	        "SCRAM-SHA-256$4096$" RFC_SALT "$" KEY_A ":" KEY_B,
	        /* 66-byte salt, over SCRAM_MAX_SALT */
	        "SCRAM-SHA-256$4096:"
	        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	        "AAAAAAAAAAAAAAA$" KEY_A ":" KEY_B,
	        "md532e12f215ba27cb750c9e093ce4b5127",
	};
	struct scram_secret sec;

	ok(scram_is_secret("SCRAM-SHA-256$4096:" RFC_SALT "$" KEY_A ":" KEY_B),
	   "is_secret: the RFC secret (control)");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ok(!scram_is_secret(bad[i]) && !scram_parse_secret(bad[i], &sec),
		   "malformed secret %zu refused: %.60s", i, bad[i]);
	}
	ok(!scram_is_secret(NULL), "is_secret(NULL)");
#undef KEY_A
#undef KEY_B
}

/* A password SASLprep maps must hash like its mapping; one it refuses, like
 * its raw bytes (as PostgreSQL does). */
static void test_saslprep(void)
{
	static const struct {
		const char *password, *salted, *why;
	} cases[] = {
	        {"I\xc2\xadX", "7f9242ed6af1e27160e5480687043cdaec8373483810d3d43b95b01987cd4fdd",
	         "soft hyphen maps to nothing"},
	        {"\xe2\x85\xa8", "7f9242ed6af1e27160e5480687043cdaec8373483810d3d43b95b01987cd4fdd",
	         "roman numeral nine is NFKC-normalised to IX"},
	        {"a\xc2\xa0"
	         "b",
	         "8a975eba3e6468ef211f1339d7ba441aff02f7e4ca1d07492cd0a58f592be8c9",
	         "no-break space maps to a space"},
	        {"e\xcc\x81", "f40b6c2f1cbb896ebeaeef7b718a1e99165a9f9ed8850a21677d53a1b0f30c3b",
	         "e + combining acute is composed"},
	        {"\xff", "fe7b7ddd52825ef7fc4167a1e0c51c18fd097b4ab7a0ce1172c01a385a55071f",
	         "invalid UTF-8: raw bytes"},
	        {"e\xcc\x81\xf0\x9f\x98\x80",
	         "8c4d793909084e0d701c08f85b46c91127449bbccd9c4a267ad9ad8005af46f4",
	         "unassigned code point: raw bytes"},
	        {"a\x01"
	         "b",
	         "4aaee422aac40c9c437692b081e6ff7a18676078e9ed5c1d1c4b2dfa4a384da7",
	         "control character: raw bytes"},
	};
	uint8_t salt[16], got[SCRAM_KEY_LEN], want[SCRAM_KEY_LEN];

	if (b64_decode(RFC_SALT, strlen(RFC_SALT), salt, sizeof(salt)) != 16)
		tap_bail("RFC salt");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hex_decode(cases[i].salted, want, sizeof(want));
		ok(scram_salted_password(cases[i].password, salt, 16, 4096, got) &&
		           memcmp(got, want, sizeof(want)) == 0,
		   "SASLprep: %s", cases[i].why);
	}
}

/* --------------------------------------------------- RFC vector, both ways */

static void test_rfc_server(void)
{
	struct scram_server s;
	struct scram_secret sec;
	uint8_t want_key[SCRAM_KEY_LEN];
	char *out;
	size_t out_len;

	rfc_secret(&sec);
	scram_server_init(&s, &sec, "user", u8(MOCK_SEED), strlen(MOCK_SEED));
	ok(scram_server_set_nonce(&s, RFC_SNONCE), "server: inject the RFC nonce");
	is_int(scram_server_first(&s, u8(RFC_CLIENT_FIRST), strlen(RFC_CLIENT_FIRST), &out,
	                          &out_len),
	       SCRAM_CONTINUE, "server: RFC client-first accepted");
	is_str(out, RFC_SERVER_FIRST, "server: RFC server-first");
	is_int((long)out_len, (long)strlen(RFC_SERVER_FIRST), "server: server-first length");
	free(out);
	ok(!scram_server_set_nonce(&s, "late"), "server: nonce cannot change mid-exchange");
	is_int(scram_server_final(&s, u8(RFC_CLIENT_FINAL), strlen(RFC_CLIENT_FINAL), &out,
	                          &out_len),
	       SCRAM_DONE, "server: RFC client proof accepted");
	is_str(out, RFC_SERVER_FINAL, "server: RFC server-final");
	free(out);
	hex_decode(RFC_CLIENT_KEY, want_key, sizeof(want_key));
	ok(memcmp(s.client_key, want_key, SCRAM_KEY_LEN) == 0, "server: ClientKey recovered");
	is_int(scram_server_final(&s, u8(RFC_CLIENT_FINAL), strlen(RFC_CLIENT_FINAL), &out,
	                          &out_len),
	       SCRAM_PROTO, "server: no second final");
	ok(out == NULL && out_len == 0, "server: no output on error");
	scram_server_clear(&s);
	ok(s.client_first_bare == NULL && s.client_key[0] == 0 && s.secret.stored_key[0] == 0,
	   "server: clear zeroes the struct");
}

static void test_rfc_client(void)
{
	struct scram_client c;
	char *out;
	size_t out_len;

	scram_client_init_password(&c, RFC_PASSWORD);
	ok(scram_client_set_user(&c, "user"), "client: set user");
	ok(scram_client_set_nonce(&c, RFC_CNONCE), "client: inject the RFC nonce");
	ok(scram_client_first(&c, &out, &out_len), "client: first");
	is_str(out, RFC_CLIENT_FIRST, "client: RFC client-first");
	is_int((long)out_len, (long)strlen(RFC_CLIENT_FIRST), "client: client-first length");
	free(out);
	is_int(scram_client_final(&c, u8(RFC_SERVER_FIRST), strlen(RFC_SERVER_FIRST), &out,
	                          &out_len),
	       SCRAM_CONTINUE, "client: RFC server-first accepted");
	is_str(out, RFC_CLIENT_FINAL, "client: RFC client-final with the RFC proof");
	free(out);
	is_int(scram_client_verify(&c, u8(RFC_SERVER_FINAL), strlen(RFC_SERVER_FINAL)), SCRAM_DONE,
	       "client: RFC server signature verified");
	scram_client_clear(&c);
	ok(c.password == NULL && c.client_key[0] == 0, "client: clear zeroes the struct");

	/* By default the name is empty, as libpq sends it. */
	scram_client_init_password(&c, RFC_PASSWORD);
	ok(scram_client_set_nonce(&c, "abc") && scram_client_first(&c, &out, &out_len),
	   "client: first without a user");
	is_str(out, "n,,n=,r=abc", "client: empty n=");
	free(out);
	scram_client_clear(&c);

	scram_client_init_password(&c, RFC_PASSWORD);
	ok(scram_client_set_user(&c, "a,b=c") && scram_client_set_nonce(&c, "abc") &&
	           scram_client_first(&c, &out, &out_len),
	   "client: first with a user needing escapes");
	is_str(out, "n,,n=a=2Cb=3Dc,r=abc", "client: saslname escaping");
	free(out);
	scram_client_clear(&c);

	scram_client_init_password(&c, RFC_PASSWORD);
	ok(!scram_client_set_nonce(&c, "a,b"), "client: nonce with ',' refused");
	ok(!scram_client_set_nonce(&c, ""), "client: empty nonce refused");
	ok(!scram_client_set_nonce(&c,
	                           "0123456789012345678901234567890123456789012345678901234567"
	                           "890123456789"),
	   "client: oversized nonce refused");
	ok(scram_client_first(&c, &out, &out_len), "client: random nonce");
	ok(strncmp(out, "n,,n=,r=", 8) == 0 && strlen(out) == 8 + 24, "client: 24-char nonce");
	free(out);
	scram_client_clear(&c);
}

/* ----------------------------------------------------------- round trips */

static void test_round_trips(void)
{
	struct scram_server s, s2;
	struct scram_client c;
	struct scram_secret sec;
	enum scram_status cst;
	uint8_t salt[16] = "0123456789abcdef", ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];

	if (!scram_secret_from_password("correct horse", salt, sizeof(salt), 1000, &sec))
		tap_bail("secret");

	scram_server_init(&s, &sec, "alice", NULL, 0);
	scram_client_init_password(&c, "correct horse");
	is_int(exchange(&s, &c, &cst), SCRAM_DONE, "round trip with the password: server");
	is_int(cst, SCRAM_DONE, "round trip with the password: client verifies the server");
	memcpy(ck, s.client_key, SCRAM_KEY_LEN);
	memcpy(sk, s.secret.server_key, SCRAM_KEY_LEN);
	ok(memcmp(c.client_key, ck, SCRAM_KEY_LEN) == 0,
	   "the server recovered the client's ClientKey");
	scram_server_clear(&s);
	scram_client_clear(&c);

	/* Passthrough: the keys the server recovered log in elsewhere. */
	scram_server_init(&s2, &sec, "alice", NULL, 0);
	scram_client_init_keys(&c, ck, sk);
	is_int(exchange(&s2, &c, &cst), SCRAM_DONE, "passthrough keys: server");
	is_int(cst, SCRAM_DONE, "passthrough keys: client verifies the server");
	scram_server_clear(&s2);
	scram_client_clear(&c);

	ck[0] ^= 1;
	scram_server_init(&s2, &sec, "alice", NULL, 0);
	scram_client_init_keys(&c, ck, sk);
	is_int(exchange(&s2, &c, &cst), SCRAM_FAIL, "passthrough with a wrong ClientKey fails");
	scram_server_clear(&s2);
	scram_client_clear(&c);

	ck[0] ^= 1;
	sk[0] ^= 1;
	scram_server_init(&s2, &sec, "alice", NULL, 0);
	scram_client_init_keys(&c, ck, sk);
	is_int(exchange(&s2, &c, &cst), SCRAM_DONE, "wrong ServerKey: the server accepts");
	is_int(cst, SCRAM_FAIL, "wrong ServerKey: the client refuses the server");
	scram_server_clear(&s2);
	scram_client_clear(&c);

	scram_server_init(&s, &sec, "alice", NULL, 0);
	scram_client_init_password(&c, "correct horsE");
	is_int(exchange(&s, &c, &cst), SCRAM_FAIL, "wrong password fails");
	ok(s.client_key[0] == 0 && memcmp(s.client_key, s.client_key + 1, SCRAM_KEY_LEN - 1) == 0,
	   "no ClientKey kept after a failure");
	scram_server_clear(&s);
	scram_client_clear(&c);

	scram_server_init(&s, &sec, "alice", NULL, 0);
	scram_client_init_password(&c, NULL);
	is_int(exchange(&s, &c, &cst), SCRAM_PROTO, "client without password or keys");
	scram_server_clear(&s);
	scram_client_clear(&c);
}

static void test_mock(void)
{
	struct scram_server s;
	struct scram_client c;
	enum scram_status cst;
	char *out, *first1;
	size_t out_len;
	const char *cf = "n,,n=,r=abcdef";

	scram_server_init(&s, NULL, "ghost", u8(MOCK_SEED), strlen(MOCK_SEED));
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_CONTINUE,
	       "mock: first goes on");
	ok(strncmp(out, "r=abcdef", 8) == 0 &&
	           strlen(out) == strlen("r=abcdef,s=,i=4096") + 24 + 24,
	   "mock: server-first looks like a real one (%s)", out);
	ok(strstr(out, ",s=WlGJ3ekCYBL95MudNn9PGQ==,i=4096") != NULL,
	   "mock: salt is HMAC(seed, user)[0:16]");
	first1 = out;
	scram_server_clear(&s);

	scram_server_init(&s, NULL, "ghost", u8(MOCK_SEED), strlen(MOCK_SEED));
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_CONTINUE,
	       "mock again: first goes on");
	ok(strcmp(strchr(out, ','), strchr(first1, ',')) == 0,
	   "mock: the same salt and iterations every time");
	ok(strcmp(out, first1) != 0, "mock: the server nonce is still random");
	free(out);
	free(first1);
	scram_server_clear(&s);

	scram_server_init(&s, NULL, "ghost2", u8(MOCK_SEED), strlen(MOCK_SEED));
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_CONTINUE,
	       "mock, other user: first goes on");
	ok(strstr(out, ",s=Fb+MtT/xZrtMlsb2/td1vQ==,i=4096") != NULL,
	   "mock: another user gets another salt");
	free(out);
	scram_server_clear(&s);

	scram_server_init(&s, NULL, "ghost", u8(MOCK_SEED), strlen(MOCK_SEED));
	scram_client_init_password(&c, "anything");
	is_int(exchange(&s, &c, &cst), SCRAM_FAIL, "mock: a full exchange fails at the end");
	scram_server_clear(&s);
	scram_client_clear(&c);

	scram_server_init(&s, NULL, "ghost", NULL, 0);
	scram_client_init_password(&c, "anything");
	is_int(exchange(&s, &c, &cst), SCRAM_FAIL, "mock without a seed fails too");
	scram_server_clear(&s);
	scram_client_clear(&c);

	/* A mock fails even when the proof happens to match its keys. */
	scram_server_init(&s, NULL, "user", u8(MOCK_SEED), strlen(MOCK_SEED));
	rfc_secret(&s.secret);
	scram_client_init_password(&c, RFC_PASSWORD);
	is_int(exchange(&s, &c, &cst), SCRAM_FAIL, "mock: a matching proof still fails");
	scram_server_clear(&s);
	scram_client_clear(&c);
}

/* ------------------------------------------------------ hostile messages */

static void test_bad_client_first(void)
{
	static const struct {
		const char *msg;
		size_t len;
		enum scram_status want;
		const char *why;
	} cases[] = {
	        {MSG("n,,n=,r=abc"), SCRAM_CONTINUE, "control: well formed"},
	        {MSG("y,,n=,r=abc"), SCRAM_CONTINUE, "gs2 'y' accepted"},
	        {MSG("n,,n=user,r=abc"), SCRAM_CONTINUE, "a user name is accepted (ignored)"},
	        {MSG("n,,n=,r=abc,x=ext"), SCRAM_CONTINUE, "an unknown extension is ignored"},
	        {MSG("\0"), SCRAM_PROTO, "a lone NUL"},
	        {MSG("n"), SCRAM_PROTO, "truncated: gs2 flag only"},
	        {MSG("n,"), SCRAM_PROTO, "truncated: one comma"},
	        {MSG("n,,"), SCRAM_PROTO, "truncated: gs2 header only"},
	        {MSG("n,,n="), SCRAM_PROTO, "missing r="},
	        {MSG("n,,n=,"), SCRAM_PROTO, "missing r= after a comma"},
	        {MSG("n,,n=,r="), SCRAM_PROTO, "empty nonce"},
	        {MSG("n,,r=abc"), SCRAM_PROTO, "missing n="},
	        {MSG("n,,r=abc,n="), SCRAM_PROTO, "fields out of order"},
	        {MSG("p=tls-server-end-point,,n=,r=abc"), SCRAM_PROTO, "channel binding refused"},
	        {MSG("n,a=admin,n=,r=abc"), SCRAM_PROTO, "authzid refused"},
	        {MSG("x,,n=,r=abc"), SCRAM_PROTO, "unknown gs2 flag"},
	        {MSG("N,,n=,r=abc"), SCRAM_PROTO, "gs2 flag is case-sensitive"},
	        {MSG("n,,m=ext,n=,r=abc"), SCRAM_PROTO, "reserved m= extension"},
	        {MSG("n,,n=,r=abc,m=ext"), SCRAM_PROTO, "m= after the nonce"},
	        {MSG("n,,n=,r=abc,"), SCRAM_PROTO, "trailing comma"},
	        {MSG("n,,n=,r=abc,,"), SCRAM_PROTO, "empty attribute"},
	        {MSG("n,,n=,r=abc,junk"), SCRAM_PROTO, "attribute without '='"},
	        {MSG("n,,n=,r=abc,1=x"), SCRAM_PROTO, "attribute name not a letter"},
	        {MSG("n,,n=,r=a b"), SCRAM_PROTO, "space in the nonce"},
	        {MSG("n,,n=,r=ab\x7f"), SCRAM_PROTO, "DEL in the nonce"},
	        {MSG("n,,n=,r=ab\xc3\xa9"), SCRAM_PROTO, "non-ASCII in the nonce"},
	        {MSG("n,,n=,r=abc\0def"), SCRAM_PROTO, "embedded NUL"},
	        {MSG("n,,n=\0,r=abc"), SCRAM_PROTO, "NUL in the user name"},
	        {MSG("n,,n=,r=abc\0"), SCRAM_PROTO, "trailing NUL"},
	        {MSG("n,,n=,r="
	             "0123456789012345678901234567890123456789012345678901234567890123456789"
	             "012345678901234567890123456789012345678901234567890123456789"),
	         SCRAM_PROTO, "nonce of 130 characters"},
	};
	char *huge;
	size_t huge_len = SCRAM_MAX_MESSAGE + 1;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server s;
		char *out = (char *)1;
		size_t out_len = 99;
		enum scram_status st;

		scram_server_init(&s, NULL, "u", NULL, 0);
		st = scram_server_first(&s, u8(cases[i].msg), cases[i].len, &out, &out_len);
		is_int(st, cases[i].want, "client-first: %s", cases[i].why);
		if (st != SCRAM_CONTINUE)
			ok(out == NULL && out_len == 0, "client-first: no output (%s)",
			   cases[i].why);
		free(st == SCRAM_CONTINUE ? out : NULL);
		scram_server_clear(&s);
	}

	/* A message with no end in sight. */
	huge = malloc(huge_len);
	memcpy(huge, "n,,n=,r=", 8);
	memset(huge + 8, 'a', huge_len - 8);
	{
		struct scram_server s;
		char *out;
		size_t out_len;
		scram_server_init(&s, NULL, "u", NULL, 0);
		is_int(scram_server_first(&s, u8(huge), huge_len, &out, &out_len), SCRAM_PROTO,
		       "client-first: over SCRAM_MAX_MESSAGE");
		scram_server_clear(&s);
		scram_server_init(&s, NULL, "u", NULL, 0);
		is_int(scram_server_first(&s, NULL, 0, &out, &out_len), SCRAM_PROTO,
		       "client-first: no message at all");
		scram_server_clear(&s);
	}
	free(huge);
}

/* Replace "{N}" with `nonce`, "{M}" with `nonce` with its last character
 * changed, and "{P}" with `proof` in `tmpl`. */
static char *fill(const char *tmpl, const char *nonce, const char *proof)
{
	char *out = malloc(strlen(tmpl) + 4 * 256), *o = out;
	for (const char *p = tmpl; *p != '\0';) {
		if (p[0] == '{' && (p[1] == 'N' || p[1] == 'M' || p[1] == 'P') && p[2] == '}') {
			const char *v = p[1] == 'P' ? proof : nonce;
			memcpy(o, v, strlen(v));
			o += strlen(v);
			if (p[1] == 'M')
				o[-1] = o[-1] == 'A' ? 'B' : 'A';
			p += 3;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

static void test_bad_client_final(void)
{
	static const struct {
		const char *tmpl;
		enum scram_status want;
		const char *why;
	} cases[] = {
	        {"c=biws,r={N},p={P}", SCRAM_DONE, "control: the real client-final"},
	        {"c=biws,r={N},x=1,p={P}", SCRAM_FAIL,
	         "extension: parsed, proof no longer matches"},
	        {"c=biws", SCRAM_PROTO, "truncated after c="},
	        {"c=biws,r={N}", SCRAM_PROTO, "missing p="},
	        {"c=biws,r={N},", SCRAM_PROTO, "truncated after a comma"},
	        {"c=biws,r={N},p=", SCRAM_PROTO, "empty proof"},
	        {"c=biws,r={N},p=!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", SCRAM_PROTO,
	         "proof not base64"},
	        {"c=biws,r={N},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndV", SCRAM_PROTO,
	         "proof of 31 bytes, unpadded"},
	        {"c=biws,r={N},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=AAAA", SCRAM_PROTO,
	         "proof of 35 bytes"},
	        {"c=biws,r={N},p={P},", SCRAM_PROTO, "trailing comma after the proof"},
	        {"c=biws,r={N},p={P},x=1", SCRAM_PROTO, "proof not last"},
	        {"c=biws,r={N},m=1,p={P}", SCRAM_PROTO, "reserved m= extension"},
	        {"c=biws,r={N}x,p={P}", SCRAM_PROTO, "nonce with an extra character"},
	        {"c=biws,r=abc,p={P}", SCRAM_PROTO, "only the client's part of the nonce"},
	        {"c=biws,r={M},p={P}", SCRAM_PROTO, "nonce of the right length, one character off"},
	        {"c=biws,r=,p={P}", SCRAM_PROTO, "empty nonce"},
	        {"c=eSws,r={N},p={P}", SCRAM_PROTO, "c= does not match the gs2 header"},
	        {"c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r={N},p={P}", SCRAM_PROTO,
	         "channel binding data"},
	        {"c=biws=,r={N},p={P}", SCRAM_PROTO, "c= with extra characters"},
	        {"r={N},p={P}", SCRAM_PROTO, "missing c="},
	        {"r={N},c=biws,p={P}", SCRAM_PROTO, "fields out of order"},
	        {"p={P}", SCRAM_PROTO, "proof only"},
	        {"C=biws,r={N},p={P}", SCRAM_PROTO, "attribute names are case-sensitive"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server s;
		struct scram_client c;
		struct scram_secret sec;
		char *m1, *m2, *m3, *m4 = (char *)1, *msg, *proof;
		size_t l1, l2, l3, l4 = 99;
		enum scram_status st;

		rfc_secret(&sec);
		scram_server_init(&s, &sec, "user", NULL, 0);
		scram_client_init_password(&c, RFC_PASSWORD);
		if (!scram_client_set_nonce(&c, "abc") || !scram_client_first(&c, &m1, &l1) ||
		    scram_server_first(&s, u8(m1), l1, &m2, &l2) != SCRAM_CONTINUE ||
		    scram_client_final(&c, u8(m2), l2, &m3, &l3) != SCRAM_CONTINUE)
			tap_bail("set-up of the client-final cases");
		proof = strstr(m3, ",p=") + 3;
		msg = fill(cases[i].tmpl, s.nonce, proof);
		st = scram_server_final(&s, u8(msg), strlen(msg), &m4, &l4);
		is_int(st, cases[i].want, "client-final: %s", cases[i].why);
		if (st != SCRAM_DONE)
			ok(m4 == NULL && l4 == 0, "client-final: no output (%s)", cases[i].why);
		else
			free(m4);
		free(msg);
		free(m1);
		free(m2);
		free(m3);
		scram_server_clear(&s);
		scram_client_clear(&c);
	}

	/* Embedded NUL inside an otherwise right message. */
	{
		struct scram_server s;
		struct scram_client c;
		struct scram_secret sec;
		char *m1, *m2, *m3, *m4;
		size_t l1, l2, l3, l4;

		rfc_secret(&sec);
		scram_server_init(&s, &sec, "user", NULL, 0);
		scram_client_init_password(&c, RFC_PASSWORD);
		if (!scram_client_first(&c, &m1, &l1) ||
		    scram_server_first(&s, u8(m1), l1, &m2, &l2) != SCRAM_CONTINUE ||
		    scram_client_final(&c, u8(m2), l2, &m3, &l3) != SCRAM_CONTINUE)
			tap_bail("set-up of the NUL case");
		m3[l3 - 5] = '\0';
		is_int(scram_server_final(&s, u8(m3), l3, &m4, &l4), SCRAM_PROTO,
		       "client-final: embedded NUL in the proof");
		is_int(scram_server_final(&s, u8(m3), l3 - 5, &m4, &l4), SCRAM_PROTO,
		       "client-final: nothing more after a refusal");
		free(m1);
		free(m2);
		free(m3);
		scram_server_clear(&s);
		scram_client_clear(&c);
	}
}

static void test_bad_server_first(void)
{
	static const struct {
		const char *msg;
		size_t len;
		enum scram_status want;
		const char *why;
	} cases[] = {
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=1"), SCRAM_CONTINUE, "control: well formed"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=1,x=ext"), SCRAM_CONTINUE, "extension ignored"},
	        {MSG("\0"), SCRAM_PROTO, "a lone NUL"},
	        {MSG("r=abc"), SCRAM_PROTO, "truncated after our nonce"},
	        {MSG("r=abc,s=" RFC_SALT ",i=1"), SCRAM_PROTO, "server added nothing to the nonce"},
	        {MSG("r=abcSRV"), SCRAM_PROTO, "truncated: missing s="},
	        {MSG("r=abcSRV,s=" RFC_SALT), SCRAM_PROTO, "truncated: missing i="},
	        {MSG("r=abcSRV,s=" RFC_SALT ","), SCRAM_PROTO, "truncated after a comma"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i="), SCRAM_PROTO, "empty iteration count"},
	        {MSG("r=xyzSRV,s=" RFC_SALT ",i=1"), SCRAM_PROTO, "nonce does not start with ours"},
	        {MSG("r=abSRV,s=" RFC_SALT ",i=1"), SCRAM_PROTO, "nonce shorter than ours"},
	        {MSG("r=abc SRV,s=" RFC_SALT ",i=1"), SCRAM_PROTO, "space in the nonce"},
	        {MSG("r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=1"), SCRAM_PROTO, "bad base64 salt"},
	        {MSG("r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6g%==,i=1"), SCRAM_PROTO, "salt with '%'"},
	        {MSG("r=abcSRV,s=,i=1"), SCRAM_PROTO, "empty salt"},
	        {MSG("r=abcSRV,s="
	             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	             "AAAAAAAAAAAAAAAAAAAA,i=1"),
	         SCRAM_PROTO, "salt of 69 bytes"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=0"), SCRAM_PROTO, "zero iterations"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=-1"), SCRAM_PROTO, "negative iterations"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=+1"), SCRAM_PROTO, "signed iterations"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=01"), SCRAM_PROTO, "leading zero"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=1x"), SCRAM_PROTO, "trailing junk in i="},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i= 1"), SCRAM_PROTO, "space in i="},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=10000001"), SCRAM_PROTO, "huge iteration count"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=99999999999999999999999"), SCRAM_PROTO,
	         "iteration count overflowing"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=1,m=x"), SCRAM_PROTO, "reserved m= extension"},
	        {MSG("m=x,r=abcSRV,s=" RFC_SALT ",i=1"), SCRAM_PROTO, "reserved m= first"},
	        {MSG("s=" RFC_SALT ",r=abcSRV,i=1"), SCRAM_PROTO, "fields out of order"},
	        {MSG("e=other-error"), SCRAM_PROTO, "server error in server-first"},
	        {MSG("r=abcSRV,s=" RFC_SALT ",i=1\0"), SCRAM_PROTO, "trailing NUL"},
	        {MSG("r=abc\0SRV,s=" RFC_SALT ",i=1"), SCRAM_PROTO, "NUL in the nonce"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_client c;
		char *out = (char *)1;
		size_t out_len = 99;
		enum scram_status st;

		scram_client_init_password(&c, "pw");
		if (!scram_client_set_nonce(&c, "abc") || !scram_client_first(&c, &out, &out_len))
			tap_bail("client set-up");
		free(out);
		st = scram_client_final(&c, u8(cases[i].msg), cases[i].len, &out, &out_len);
		is_int(st, cases[i].want, "server-first: %s", cases[i].why);
		if (st == SCRAM_CONTINUE)
			free(out);
		else
			ok(out == NULL && out_len == 0, "server-first: no output (%s)",
			   cases[i].why);
		scram_client_clear(&c);
	}
}

static void test_bad_server_final(void)
{
	static const struct {
		const char *msg;
		size_t len;
		enum scram_status want;
		const char *why;
	} cases[] = {
	        {NULL, 0, SCRAM_DONE, "control: the real server-final"},
	        {MSG("e=invalid-proof"), SCRAM_FAIL, "server error"},
	        {MSG("e="), SCRAM_FAIL, "empty server error"},
	        {MSG("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), SCRAM_FAIL,
	         "another exchange's signature"},
	        {MSG("\0"), SCRAM_PROTO, "a lone NUL"},
	        {MSG("v="), SCRAM_PROTO, "empty signature"},
	        {MSG("v"), SCRAM_PROTO, "no '='"},
	        {MSG("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4"), SCRAM_PROTO, "unpadded"},
	        {MSG("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,"), SCRAM_PROTO,
	         "trailing comma"},
	        {MSG("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,m=1"), SCRAM_PROTO,
	         "reserved m= extension"},
	        {MSG("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=AAAA"), SCRAM_PROTO,
	         "signature too long"},
	        {MSG("x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), SCRAM_PROTO,
	         "unknown attribute"},
	        {MSG("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=\0"), SCRAM_PROTO,
	         "trailing NUL"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server s;
		struct scram_client c;
		struct scram_secret sec;
		char *m1, *m2, *m3, *m4;
		size_t l1, l2, l3, l4;
		enum scram_status st;

		rfc_secret(&sec);
		scram_server_init(&s, &sec, "user", NULL, 0);
		scram_client_init_password(&c, RFC_PASSWORD);
		if (!scram_client_first(&c, &m1, &l1) ||
		    scram_server_first(&s, u8(m1), l1, &m2, &l2) != SCRAM_CONTINUE ||
		    scram_client_final(&c, u8(m2), l2, &m3, &l3) != SCRAM_CONTINUE ||
		    scram_server_final(&s, u8(m3), l3, &m4, &l4) != SCRAM_DONE)
			tap_bail("set-up of the server-final cases");
		if (cases[i].msg != NULL)
			st = scram_client_verify(&c, u8(cases[i].msg), cases[i].len);
		else
			st = scram_client_verify(&c, u8(m4), l4);
		is_int(st, cases[i].want, "server-final: %s", cases[i].why);
		free(m1);
		free(m2);
		free(m3);
		free(m4);
		scram_server_clear(&s);
		scram_client_clear(&c);
	}
}

/* A signature changed in one character is refused. */
static void test_tampered_signature(void)
{
	struct scram_server s;
	struct scram_client c;
	struct scram_secret sec;
	char *m1, *m2, *m3, *m4;
	size_t l1, l2, l3, l4;

	rfc_secret(&sec);
	scram_server_init(&s, &sec, "user", NULL, 0);
	scram_client_init_password(&c, RFC_PASSWORD);
	if (!scram_client_first(&c, &m1, &l1) ||
	    scram_server_first(&s, u8(m1), l1, &m2, &l2) != SCRAM_CONTINUE ||
	    scram_client_final(&c, u8(m2), l2, &m3, &l3) != SCRAM_CONTINUE ||
	    scram_server_final(&s, u8(m3), l3, &m4, &l4) != SCRAM_DONE)
		tap_bail("set-up of the tampered signature");
	m4[5] = m4[5] == 'A' ? 'B' : 'A';
	is_int(scram_client_verify(&c, u8(m4), l4), SCRAM_FAIL, "server-final: tampered signature");
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	scram_server_clear(&s);
	scram_client_clear(&c);
}

/* gs2 'y': the client-final must carry c=eSws (base64 of "y,,"). */
static void test_gs2_y(void)
{
	static const struct {
		const char *cbind;
		enum scram_status want;
		const char *why;
	} cases[] = {
	        {"eSws", SCRAM_FAIL, "c=eSws accepted after 'y' (then the made-up proof fails)"},
	        {"biws", SCRAM_PROTO, "c=biws refused after 'y'"},
	};
	const char *cf = "y,,n=,r=abc";

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server s;
		struct scram_secret sec;
		char *out, msg[512];
		size_t out_len;

		rfc_secret(&sec);
		scram_server_init(&s, &sec, "user", NULL, 0);
		if (scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len) != SCRAM_CONTINUE)
			tap_bail("gs2 y set-up");
		free(out);
		snprintf(msg, sizeof(msg), "c=%s,r=%s,p=%s", cases[i].cbind, s.nonce,
		         "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
		is_int(scram_server_final(&s, u8(msg), strlen(msg), &out, &out_len), cases[i].want,
		       "gs2 y: %s", cases[i].why);
		scram_server_clear(&s);
	}
}

static void test_out_of_order(void)
{
	struct scram_server s;
	struct scram_client c;
	char *out;
	size_t out_len;
	const char *cf = "n,,n=,r=abc";

	scram_server_init(&s, NULL, "u", NULL, 0);
	is_int(scram_server_final(&s, u8("c=biws"), 6, &out, &out_len), SCRAM_PROTO,
	       "server: final before first");
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_PROTO,
	       "server: nothing after a refusal");
	scram_server_clear(&s);

	scram_server_init(&s, NULL, "u", NULL, 0);
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_CONTINUE,
	       "server: first");
	free(out);
	is_int(scram_server_first(&s, u8(cf), strlen(cf), &out, &out_len), SCRAM_PROTO,
	       "server: first twice");
	scram_server_clear(&s);

	scram_client_init_password(&c, "pw");
	is_int(scram_client_final(&c, u8(cf), strlen(cf), &out, &out_len), SCRAM_PROTO,
	       "client: final before first");
	is_int(scram_client_verify(&c, u8("e=x"), 3), SCRAM_PROTO, "client: then nothing");
	ok(!scram_client_first(&c, &out, &out_len), "client: not even first");
	scram_client_clear(&c);

	scram_client_init_password(&c, "pw");
	ok(scram_client_set_nonce(&c, "abc") && scram_client_first(&c, &out, &out_len),
	   "client: first");
	free(out);
	is_int(scram_client_verify(&c, u8("e=x"), 3), SCRAM_PROTO, "client: verify before final");
	ok(!scram_client_first(&c, &out, &out_len), "client: first twice");
	scram_client_clear(&c);
}

int main(void)
{
	test_base64();
	test_primitives();
	test_bad_secrets();
	test_saslprep();
	test_rfc_server();
	test_rfc_client();
	test_round_trips();
	test_mock();
	test_bad_client_first();
	test_bad_client_final();
	test_bad_server_first();
	test_bad_server_final();
	test_tampered_signature();
	test_gs2_y();
	test_out_of_order();
	is_str(scram_status_name(SCRAM_DONE), "SCRAM_DONE", "status name");
	is_str(scram_status_name(SCRAM_PROTO), "SCRAM_PROTO", "status name");
	return tap_done();
}
