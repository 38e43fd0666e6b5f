#include <config.h>

#include "auth/scram.h"
#include "auth/scram_int.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stringprep.h>

const char *scram_status_name(enum scram_status st)
{
	switch (st) {
#define SCRAM_STATUS_NAME(name)                                                                    \
	case name:                                                                                 \
		return #name;
		SCRAM_STATUS_LIST(SCRAM_STATUS_NAME)
#undef SCRAM_STATUS_NAME
	}
	return "SCRAM_?";
}

/* ---------------------------------------------------------------- base64 */

static const char b64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t b64_encode(const uint8_t *in, size_t len, char *out, size_t out_len)
{
	size_t need, o = 0;

	if (len > (SIZE_MAX / 4 - 1) * 3) {
		if (out_len > 0)
			out[0] = '\0';
		return 0;
	}
	need = (len + 2) / 3 * 4;
	if (out_len < need + 1) {
		if (out_len > 0)
			out[0] = '\0';
		return 0;
	}
	for (size_t i = 0; i < len; i += 3) {
		uint32_t n = (uint32_t)in[i] << 16;
		size_t rest = len - i;
		if (rest > 1)
			n |= (uint32_t)in[i + 1] << 8;
		if (rest > 2)
			n |= in[i + 2];
		out[o++] = b64_alphabet[(n >> 18) & 63];
		out[o++] = b64_alphabet[(n >> 12) & 63];
		out[o++] = rest > 1 ? b64_alphabet[(n >> 6) & 63] : '=';
		out[o++] = rest > 2 ? b64_alphabet[n & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long b64_decode(const char *in, size_t len, uint8_t *out, size_t out_len)
{
	size_t pad = 0, dlen, o = 0;

	if (len % 4 != 0 || len / 4 * 3 > (size_t)LONG_MAX)
		return -1;
	if (len == 0)
		return 0;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	dlen = len / 4 * 3 - pad;
	if (dlen > out_len)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];
		for (size_t j = 0; j < 4; j++) {
			if (last && j >= 4 - pad) {
				v[j] = 0; /* padding, checked above */
				continue;
			}
			v[j] = b64_value(in[i + j]);
			if (v[j] < 0)
				return -1;
		}
		/* Canonical form: the bits padding drops must be zero. */
		if (last && pad == 1 && (v[2] & 3) != 0)
			return -1;
		if (last && pad == 2 && (v[1] & 15) != 0)
			return -1;
		uint32_t n = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		        (uint32_t)v[3];
		size_t nbytes = last ? 3 - pad : 3;
		out[o++] = (uint8_t)(n >> 16);
		if (nbytes > 1)
			out[o++] = (uint8_t)(n >> 8);
		if (nbytes > 2)
			out[o++] = (uint8_t)n;
	}
	return (long)o;
}

/* ------------------------------------------------------------ primitives */

bool scram_sha256(const void *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int n = 0;
	return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == SCRAM_KEY_LEN;
}

bool scram_hmac256(const uint8_t *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[SCRAM_KEY_LEN])
{
	static const uint8_t empty_key[1];
	unsigned int n = 0;

	if (key_len > INT_MAX)
		return false;
	if (key == NULL || key_len == 0)
		key = empty_key;
	return HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n) != NULL &&
	        n == SCRAM_KEY_LEN;
}

/* The password as SCRAM hashes it: SASLprep'd (RFC 4013), or the raw bytes
 * when SASLprep refuses it (invalid UTF-8, prohibited or unassigned code
 * points), as PostgreSQL does.  ASCII needs no preparation, and skipping
 * libidn then keeps the password out of its unzeroed buffers.  malloc'd;
 * NULL when out of memory. */
static char *prep_password(const char *password)
{
	for (const char *p = password; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80) {
			char *prepped = NULL;
			if (stringprep_profile(password, &prepped, "SASLprep",
			                       STRINGPREP_NO_UNASSIGNED) == STRINGPREP_OK &&
			    prepped != NULL)
				return prepped;
			free(prepped);
			break;
		}
	}
	return strdup(password);
}

void scram_free_secret_string(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

bool scram_salted_password(const char *password, const uint8_t *salt, size_t salt_len,
                           int iterations, uint8_t out[SCRAM_KEY_LEN])
{
	char *prepped;
	bool ok;

	if (password == NULL || salt == NULL || salt_len == 0 || salt_len > INT_MAX ||
	    iterations < 1)
		return false;
	prepped = prep_password(password);
	if (prepped == NULL)
		return false;
	size_t plen = strlen(prepped);
	ok = plen <= INT_MAX &&
	        PKCS5_PBKDF2_HMAC(prepped, (int)plen, salt, (int)salt_len, iterations, EVP_sha256(),
	                          SCRAM_KEY_LEN, out) == 1;
	scram_free_secret_string(prepped);
	return ok;
}

/* ClientKey and ServerKey from SaltedPassword. */
bool scram_keys_from_salted(const uint8_t salted[SCRAM_KEY_LEN], uint8_t client_key[SCRAM_KEY_LEN],
                            uint8_t server_key[SCRAM_KEY_LEN])
{
	return scram_hmac256(salted, SCRAM_KEY_LEN, "Client Key", 10, client_key) &&
	        scram_hmac256(salted, SCRAM_KEY_LEN, "Server Key", 10, server_key);
}

/* ---------------------------------------------------------------- secrets */

bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
                                int iterations, struct scram_secret *out)
{
	uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	struct scram_secret tmp;
	bool ok = false;

	memset(&tmp, 0, sizeof(tmp));
	if (salt == NULL || salt_len == 0 || salt_len > SCRAM_MAX_SALT || iterations < 1)
		return false;
	if (!scram_salted_password(password, salt, salt_len, iterations, salted))
		goto out;
	if (!scram_keys_from_salted(salted, client_key, tmp.server_key) ||
	    !scram_sha256(client_key, SCRAM_KEY_LEN, tmp.stored_key))
		goto out;
	tmp.iterations = iterations;
	memcpy(tmp.salt, salt, salt_len);
	tmp.salt_len = salt_len;
	*out = tmp;
	ok = true;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&tmp, sizeof(tmp));
	return ok;
}

/* A positive decimal without sign or leading zero, at most `max`. */
bool scram_parse_count(const char *s, size_t len, long max, long *out)
{
	long v = 0;

	if (len == 0 || s[0] == '0')
		return false;
	for (size_t i = 0; i < len; i++) {
		int d = s[i] - '0';
		if (d < 0 || d > 9 || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* Decode exactly one key. */
bool scram_decode_key(const char *s, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	return len == KEY_B64_LEN && b64_decode(s, len, out, SCRAM_KEY_LEN) == SCRAM_KEY_LEN;
}

bool scram_parse_secret(const char *s, struct scram_secret *out)
{
	struct scram_secret tmp;
	const char *p, *colon, *dollar;
	long iter, n;
	bool ok = false;

	if (s == NULL || strncmp(s, SECRET_PREFIX, strlen(SECRET_PREFIX)) != 0)
		return false;
	memset(&tmp, 0, sizeof(tmp));
	p = s + strlen(SECRET_PREFIX);
	colon = strchr(p, ':');
	if (colon == NULL || !scram_parse_count(p, (size_t)(colon - p), INT_MAX, &iter))
		goto out;
	tmp.iterations = (int)iter;
	p = colon + 1;
	dollar = strchr(p, '$');
	if (dollar == NULL)
		goto out;
	n = b64_decode(p, (size_t)(dollar - p), tmp.salt, sizeof(tmp.salt));
	if (n < 1)
		goto out;
	tmp.salt_len = (size_t)n;
	p = dollar + 1;
	colon = strchr(p, ':');
	if (colon == NULL || !scram_decode_key(p, (size_t)(colon - p), tmp.stored_key))
		goto out;
	p = colon + 1;
	if (!scram_decode_key(p, strlen(p), tmp.server_key))
		goto out;
	*out = tmp;
	ok = true;
out:
	OPENSSL_cleanse(&tmp, sizeof(tmp));
	return ok;
}

bool scram_is_secret(const char *s)
{
	struct scram_secret tmp;
	bool ok = scram_parse_secret(s, &tmp);
	OPENSSL_cleanse(&tmp, sizeof(tmp));
	return ok;
}

bool scram_format_secret(const struct scram_secret *s, char *out, size_t out_len)
{
	char salt[SCRAM_MAX_SALT / 3 * 4 + 8], stored[KEY_B64_LEN + 1], server[KEY_B64_LEN + 1];
	bool ok = false;
	int n;

	if (out_len > 0)
		out[0] = '\0';
	if (s->iterations < 1 || s->salt_len < 1 || s->salt_len > SCRAM_MAX_SALT)
		return false;
	if (b64_encode(s->salt, s->salt_len, salt, sizeof(salt)) == 0 ||
	    b64_encode(s->stored_key, SCRAM_KEY_LEN, stored, sizeof(stored)) == 0 ||
	    b64_encode(s->server_key, SCRAM_KEY_LEN, server, sizeof(server)) == 0)
		goto out;
	n = snprintf(out, out_len, SECRET_PREFIX "%d:%s$%s:%s", s->iterations, salt, stored,
	             server);
	ok = n > 0 && (size_t)n < out_len;
	if (!ok && out_len > 0)
		OPENSSL_cleanse(out, out_len);
out:
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	return ok;
}

/* --------------------------------------------------------- message parsing */

void scram_cursor_init(struct cursor *c, const char *p, size_t len)
{
	c->p = p;
	c->end = p + len;
	c->after_comma = false;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* 1: an attribute was read; 0: clean end of message; -1: malformed. */
int scram_next_attr(struct cursor *c, char *name, const char **val, size_t *val_len)
{
	const char *start = c->p, *comma;
	size_t len;

	if (start == c->end)
		return c->after_comma ? -1 : 0;
	comma = memchr(start, ',', (size_t)(c->end - start));
	len = (size_t)((comma != NULL ? comma : c->end) - start);
	if (len < 2 || !is_alpha(start[0]) || start[1] != '=')
		return -1;
	*name = start[0];
	*val = start + 2;
	*val_len = len - 2;
	c->after_comma = comma != NULL;
	c->p = comma != NULL ? comma + 1 : c->end;
	return 1;
}

/* Read the attribute `want`; false if it is something else or missing. */
bool scram_expect_attr(struct cursor *c, char want, const char **val, size_t *val_len)
{
	char name;
	return scram_next_attr(c, &name, val, val_len) == 1 && name == want;
}

/* Skip extensions to the end of the message.  "m=" (reserved, RFC 5802
 * section 5.1) makes the message malformed; other ones are ignored. */
bool scram_skip_extensions(struct cursor *c)
{
	char name;
	const char *val;
	size_t len;
	int r;

	while ((r = scram_next_attr(c, &name, &val, &len)) == 1)
		if (name == 'm')
			return false;
	return r == 0;
}

/* A nonce: printable ASCII except ','. */
bool scram_valid_nonce(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

/* A message: bounded, no NUL bytes (they have no place in SCRAM text). */
bool scram_message_ok(const uint8_t *in, size_t in_len)
{
	return in != NULL && in_len > 0 && in_len <= SCRAM_MAX_MESSAGE &&
	        memchr(in, '\0', in_len) == NULL;
}

bool scram_random_nonce(char *out, size_t out_len)
{
	uint8_t raw[NONCE_RAW_LEN];
	bool ok =
	        RAND_bytes(raw, sizeof(raw)) == 1 && b64_encode(raw, sizeof(raw), out, out_len) > 0;
	OPENSSL_cleanse(raw, sizeof(raw));
	return ok;
}

bool scram_set_nonce(char *dst, size_t dst_size, const char *nonce)
{
	size_t len = nonce != NULL ? strlen(nonce) : 0;
	if (len == 0 || len >= dst_size || !scram_valid_nonce(nonce, len))
		return false;
	memcpy(dst, nonce, len + 1);
	return true;
}

/* malloc'd a "," b "," c, NUL-terminated, for the AuthMessage. */
char *scram_join3(const char *a, size_t a_len, const char *b, size_t b_len, const char *c,
                  size_t c_len, size_t *out_len)
{
	size_t len = a_len + 1 + b_len + 1 + c_len;
	char *s = malloc(len + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, a, a_len);
	s[a_len] = ',';
	memcpy(s + a_len + 1, b, b_len);
	s[a_len + 1 + b_len] = ',';
	memcpy(s + a_len + 2 + b_len, c, c_len);
	s[len] = '\0';
	*out_len = len;
	return s;
}

/* malloc'd copy of a formatted string; NULL when out of memory. */
char *scram_dup_printf(size_t *out_len, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (s == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	*out_len = (size_t)n;
	return s;
}

/* The gs2 header for a gs2-cbind-flag (no authzid). */
const char *scram_gs2_header(char flag)
{
	return flag == 'p' ? GS2_HEADER_P : flag == 'y' ? "y,," : "n,,";
}

/* The c= value: gs2 header, then the binding data with 'p'.  Returns the raw
 * length written to `raw` (CBIND_MAX bytes). */
size_t scram_cbind_input(char flag, const uint8_t *cb_data, size_t cb_len, uint8_t *raw)
{
	const char *hdr = scram_gs2_header(flag);
	size_t len = strlen(hdr);

	memcpy(raw, hdr, len);
	if (flag == 'p') {
		memcpy(raw + len, cb_data, cb_len);
		len += cb_len;
	}
	return len;
}

/* ---------------------------------------------------------- server side */

void scram_server_init(struct scram_server *s, const struct scram_secret *secret, const char *user,
                       const uint8_t *mock_seed, size_t mock_seed_len)
{
	uint8_t mac[SCRAM_KEY_LEN];

	memset(s, 0, sizeof(*s));
	s->step = STEP_INIT;
	if (secret != NULL) {
		s->secret = *secret;
		return;
	}
	/* Unknown user: the salt must be the same at every attempt (or probing
	 * would tell unknown users from known ones), the keys need not be. */
	s->mock = true;
	s->secret.iterations = SCRAM_DEFAULT_ITERATIONS;
	s->secret.salt_len = 16;
	if (user == NULL)
		user = "";
	if (scram_hmac256(mock_seed, mock_seed_len, user, strlen(user), mac))
		memcpy(s->secret.salt, mac, s->secret.salt_len);
	/* A failed RAND_bytes leaves zero keys: the mock still fails. */
	if (RAND_bytes(s->secret.stored_key, SCRAM_KEY_LEN) != 1 ||
	    RAND_bytes(s->secret.server_key, SCRAM_KEY_LEN) != 1)
		memset(s->secret.stored_key, 0, SCRAM_KEY_LEN);
	OPENSSL_cleanse(mac, sizeof(mac));
}

bool scram_server_set_nonce(struct scram_server *s, const char *nonce)
{
	return s->step == STEP_INIT &&
	        scram_set_nonce(s->server_nonce, sizeof(s->server_nonce), nonce);
}

/* End the exchange with `st`, keeping the first reason. */
static enum scram_status server_over(struct scram_server *s, enum scram_status st, const char *why)
{
	s->step = STEP_OVER;
	if (s->error == NULL)
		s->error = why;
	return st;
}

void scram_server_set_channel_binding(struct scram_server *s, const uint8_t *cb_data, size_t len)
{
	if (s->step != STEP_INIT || cb_data == NULL || len == 0 || len > SCRAM_MAX_CB_DATA) {
		server_over(s, SCRAM_PROTO, "invalid channel binding data from the caller");
		return;
	}
	memcpy(s->cb_data, cb_data, len);
	s->cb_len = len;
}

size_t scram_server_mechanisms(const struct scram_server *s, const char *out[SCRAM_MAX_MECHANISMS])
{
	size_t n = 0;

	if (s->cb_len > 0)
		out[n++] = SCRAM_MECHANISM_PLUS;
	out[n++] = SCRAM_MECHANISM;
	return n;
}

bool scram_server_set_mechanism(struct scram_server *s, const char *mechanism)
{
	if (s->step != STEP_INIT || mechanism == NULL) {
		server_over(s, SCRAM_PROTO, "SASL mechanism chosen out of order");
		return false;
	}
	if (strcmp(mechanism, SCRAM_MECHANISM) == 0) {
		s->plus = false;
		return true;
	}
	if (strcmp(mechanism, SCRAM_MECHANISM_PLUS) == 0 && s->cb_len > 0) {
		s->plus = true;
		return true;
	}
	server_over(s, SCRAM_PROTO, "client selected a SASL mechanism that was not offered");
	return false;
}

const char *scram_server_error(const struct scram_server *s)
{
	return s->error;
}

/* The gs2 header at the start of a client-first-message, checked as
 * PostgreSQL does: sets s->gs2_flag and *bare (after the header), or ends
 * the exchange. */
static enum scram_status server_gs2_header(struct scram_server *s, const char *p, const char *end,
                                           const char **bare)
{
	const char *name, *comma;
	char flag = p[0];

	switch (flag) {
	case 'n':
	case 'y':
		p++;
		break;
	case 'p':
		if (end - p < 2 || p[1] != '=')
			return server_over(s, SCRAM_PROTO, "malformed gs2 header");
		if (!s->plus)
			return server_over(s, SCRAM_PROTO,
			                   "client sent channel binding data but did not "
			                   "select " SCRAM_MECHANISM_PLUS);
		name = p + 2;
		comma = memchr(name, ',', (size_t)(end - name));
		if (comma == NULL)
			return server_over(s, SCRAM_PROTO, "malformed gs2 header");
		if ((size_t)(comma - name) != strlen(SCRAM_CB_TYPE) ||
		    memcmp(name, SCRAM_CB_TYPE, strlen(SCRAM_CB_TYPE)) != 0)
			return server_over(s, SCRAM_PROTO, "unsupported channel binding type");
		p = comma;
		break;
	default:
		return server_over(s, SCRAM_PROTO,
		                   "malformed gs2 header: unknown channel binding flag");
	}
	/* "," [authzid] "," with an empty authzid. */
	if (p == end || *p != ',')
		return server_over(s, SCRAM_PROTO, "malformed gs2 header");
	p++;
	if (p < end && *p == 'a')
		return server_over(s, SCRAM_PROTO, "authorization identity not supported");
	if (p == end || *p != ',')
		return server_over(s, SCRAM_PROTO, "malformed gs2 header");
	if (flag == 'y' && s->cb_len > 0)
		return server_over(s, SCRAM_FAIL,
		                   "channel binding downgrade: the client supports "
		                   "channel binding but thinks the server does not");
	if (s->plus && flag != 'p')
		return server_over(s, SCRAM_PROTO,
		                   "client selected " SCRAM_MECHANISM_PLUS
		                   " but sent no channel binding data");
	s->gs2_flag = flag;
	*bare = p + 1;
	return SCRAM_CONTINUE;
}

/* The c= value of a client-final-message: the base64 of the gs2 header and,
 * with 'p', of the channel binding data. */
static enum scram_status server_check_cbind(struct scram_server *s, const char *val, size_t len)
{
	uint8_t want[CBIND_MAX], got[CBIND_MAX];
	size_t hdr_len = strlen(scram_gs2_header(s->gs2_flag));
	size_t want_len = scram_cbind_input(s->gs2_flag, s->cb_data, s->cb_len, want);
	long n = b64_decode(val, len, got, sizeof(got));

	if (n < (long)hdr_len || memcmp(got, want, hdr_len) != 0)
		return server_over(s, SCRAM_PROTO, "c= does not match the gs2 header");
	if ((size_t)n != want_len ||
	    CRYPTO_memcmp(got + hdr_len, want + hdr_len, want_len - hdr_len) != 0)
		return s->gs2_flag == 'p'
		        ? server_over(s, SCRAM_FAIL, "channel binding check failed")
		        : server_over(s, SCRAM_PROTO, "c= does not match the gs2 header");
	return SCRAM_CONTINUE;
}

enum scram_status scram_server_first(struct scram_server *s, const uint8_t *in, size_t in_len,
                                     char **out, size_t *out_len)
{
	const char *p = (const char *)in, *end, *val;
	char salt_b64[SCRAM_MAX_SALT / 3 * 4 + 8];
	enum scram_status st;
	struct cursor c;
	size_t val_len, cn_len, sn_len;
	char name;

	*out = NULL;
	*out_len = 0;
	if (s->step != STEP_INIT)
		return server_over(s, SCRAM_PROTO, "client-first-message out of order");
	if (!scram_message_ok(in, in_len))
		return server_over(s, SCRAM_PROTO, "malformed client-first-message");
	end = p + in_len;

	/* gs2-header: "n,,", "y,," or "p=tls-server-end-point,," */
	st = server_gs2_header(s, p, end, &p);
	if (st != SCRAM_CONTINUE)
		return st;

	/* client-first-message-bare: [m=...,] n=user,r=nonce[,extensions] */
	scram_cursor_init(&c, p, (size_t)(end - p));
	if (scram_next_attr(&c, &name, &val, &val_len) != 1 || name != 'n') /* includes "m=" */
		return server_over(s, SCRAM_PROTO, "malformed client-first-message");
	if (!scram_expect_attr(&c, 'r', &val, &val_len) || !scram_valid_nonce(val, val_len) ||
	    val_len >= sizeof(s->client_nonce) || !scram_skip_extensions(&c))
		return server_over(s, SCRAM_PROTO, "malformed client-first-message");
	memcpy(s->client_nonce, val, val_len);
	s->client_nonce[val_len] = '\0';
	cn_len = val_len;

	if (s->server_nonce[0] == '\0' &&
	    !scram_random_nonce(s->server_nonce, sizeof(s->server_nonce)))
		return server_over(s, SCRAM_FAIL, "could not generate a nonce");
	sn_len = strlen(s->server_nonce);
	if (cn_len + sn_len >= sizeof(s->nonce))
		return server_over(s, SCRAM_PROTO, "malformed client-first-message");
	memcpy(s->nonce, s->client_nonce, cn_len);
	memcpy(s->nonce + cn_len, s->server_nonce, sn_len + 1);

	if (s->secret.salt_len < 1 || s->secret.salt_len > SCRAM_MAX_SALT ||
	    b64_encode(s->secret.salt, s->secret.salt_len, salt_b64, sizeof(salt_b64)) == 0)
		return server_over(s, SCRAM_FAIL, "invalid secret");
	s->client_first_bare = malloc((size_t)(end - p) + 1);
	if (s->client_first_bare == NULL)
		return server_over(s, SCRAM_FAIL, "out of memory");
	memcpy(s->client_first_bare, p, (size_t)(end - p));
	s->client_first_bare[end - p] = '\0';

	size_t sf_len = 0;
	s->server_first = scram_dup_printf(&sf_len, "r=%s,s=%s,i=%d", s->nonce, salt_b64,
	                                   s->secret.iterations);
	if (s->server_first == NULL)
		return server_over(s, SCRAM_FAIL, "out of memory");
	*out = malloc(sf_len + 1);
	if (*out == NULL)
		return server_over(s, SCRAM_FAIL, "out of memory");
	memcpy(*out, s->server_first, sf_len + 1);
	*out_len = sf_len;
	s->step = STEP_FIRST;
	return SCRAM_CONTINUE;
}

enum scram_status scram_server_final(struct scram_server *s, const uint8_t *in, size_t in_len,
                                     char **out, size_t *out_len)
{
	const char *msg = (const char *)in, *val, *proof_b64 = NULL;
	uint8_t proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN],
	        stored[SCRAM_KEY_LEN], server_sig[SCRAM_KEY_LEN];
	char sig_b64[KEY_B64_LEN + 1];
	size_t val_len, proof_len = 0, without_proof_len = 0, am_len = 0;
	enum scram_status st = SCRAM_PROTO;
	struct cursor c;
	char *auth_message = NULL;
	const char *why = NULL;
	char name;
	int r;

	*out = NULL;
	*out_len = 0;
	if (s->step != STEP_FIRST)
		return server_over(s, SCRAM_PROTO, "client-final-message out of order");
	if (!scram_message_ok(in, in_len))
		return server_over(s, SCRAM_PROTO, "malformed client-final-message");
	s->step = STEP_OVER;

	/* c=<cbind>,r=<nonce>[,extensions],p=<proof> */
	scram_cursor_init(&c, msg, in_len);
	if (!scram_expect_attr(&c, 'c', &val, &val_len))
		return server_over(s, SCRAM_PROTO, "malformed client-final-message");
	st = server_check_cbind(s, val, val_len);
	if (st != SCRAM_CONTINUE)
		return st;
	if (!scram_expect_attr(&c, 'r', &val, &val_len) || val_len != strlen(s->nonce) ||
	    memcmp(val, s->nonce, val_len) != 0)
		return server_over(s, SCRAM_PROTO, "wrong nonce in client-final-message");
	while ((r = scram_next_attr(&c, &name, &val, &val_len)) == 1) {
		if (name == 'm')
			return server_over(s, SCRAM_PROTO, "malformed client-final-message");
		if (name == 'p') {
			proof_b64 = val;
			proof_len = val_len;
			without_proof_len = (size_t)(val - 3 - msg); /* before ",p=" */
			break;
		}
	}
	/* The proof is last, and decodes to exactly one key. */
	if (proof_b64 == NULL || scram_next_attr(&c, &name, &val, &val_len) != 0 ||
	    !scram_decode_key(proof_b64, proof_len, proof))
		return server_over(s, SCRAM_PROTO, "malformed client proof");

	st = SCRAM_FAIL;
	why = "out of memory or crypto library error";
	auth_message =
	        scram_join3(s->client_first_bare, strlen(s->client_first_bare), s->server_first,
	                    strlen(s->server_first), msg, without_proof_len, &am_len);
	if (auth_message == NULL ||
	    !scram_hmac256(s->secret.stored_key, SCRAM_KEY_LEN, auth_message, am_len, sig))
		goto out;
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ sig[i];
	if (!scram_sha256(client_key, SCRAM_KEY_LEN, stored) ||
	    !scram_hmac256(s->secret.server_key, SCRAM_KEY_LEN, auth_message, am_len, server_sig))
		goto out;
	/* Compare whatever the secret, so a mock costs the same. */
	bool match = CRYPTO_memcmp(stored, s->secret.stored_key, SCRAM_KEY_LEN) == 0;
	if (!match || s->mock) {
		why = "invalid client proof";
		goto out;
	}
	if (b64_encode(server_sig, SCRAM_KEY_LEN, sig_b64, sizeof(sig_b64)) == 0)
		goto out;
	*out = scram_dup_printf(out_len, "v=%s", sig_b64);
	if (*out == NULL) {
		*out_len = 0;
		goto out;
	}
	memcpy(s->client_key, client_key, SCRAM_KEY_LEN);
	s->cb_used = s->gs2_flag == 'p';
	st = SCRAM_DONE;
out:
	if (st != SCRAM_DONE)
		server_over(s, st, why);
	free(auth_message);
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server_sig, sizeof(server_sig));
	OPENSSL_cleanse(sig_b64, sizeof(sig_b64));
	return st;
}

void scram_server_clear(struct scram_server *s)
{
	free(s->client_first_bare);
	free(s->server_first);
	OPENSSL_cleanse(s, sizeof(*s));
}
