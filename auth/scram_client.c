#include <config.h>

/* SCRAM-SHA-256 as a client: pgmoat logging in to PostgreSQL (with a
 * password, or with the keys a client proved), with or without channel
 * binding. */

#include "auth/scram.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/scram_int.h"

/* ---------------------------------------------------------- client side */

void scram_client_init_password(struct scram_client *c, const char *password)
{
	memset(c, 0, sizeof(*c));
	c->step = STEP_INIT;
	c->gs2_flag = 'n';
	/* Out of memory leaves no password: scram_client_first() then fails. */
	if (password != NULL)
		c->password = strdup(password);
}

void scram_client_init_keys(struct scram_client *c, const uint8_t client_key[SCRAM_KEY_LEN],
                            const uint8_t server_key[SCRAM_KEY_LEN])
{
	memset(c, 0, sizeof(*c));
	c->step = STEP_INIT;
	c->gs2_flag = 'n';
	memcpy(c->client_key, client_key, SCRAM_KEY_LEN);
	memcpy(c->server_key, server_key, SCRAM_KEY_LEN);
	c->have_keys = true;
}

bool scram_client_set_nonce(struct scram_client *c, const char *nonce)
{
	return c->step == STEP_INIT &&
	        scram_set_nonce(c->client_nonce, sizeof(c->client_nonce), nonce);
}

bool scram_client_set_user(struct scram_client *c, const char *user)
{
	size_t len = 0;
	char *e;

	if (c->step != STEP_INIT || user == NULL || strlen(user) > SCRAM_MAX_MESSAGE / 8)
		return false;
	/* saslname: ',' is written "=2C" and '=' "=3D" (RFC 5802 section 5.1). */
	e = malloc(strlen(user) * 3 + 1);
	if (e == NULL)
		return false;
	for (const char *p = user; *p != '\0'; p++) {
		if (*p == ',' || *p == '=') {
			memcpy(e + len, *p == ',' ? "=2C" : "=3D", 3);
			len += 3;
		} else {
			e[len++] = *p;
		}
	}
	e[len] = '\0';
	free(c->user);
	c->user = e;
	return true;
}

bool scram_client_set_channel_binding(struct scram_client *c, const uint8_t *cb_data, size_t len)
{
	if (c->step != STEP_INIT || c->gs2_flag == 'y' || cb_data == NULL || len == 0 ||
	    len > SCRAM_MAX_CB_DATA)
		return false;
	memcpy(c->cb_data, cb_data, len);
	c->cb_len = len;
	c->gs2_flag = 'p';
	return true;
}

bool scram_client_set_cb_supported(struct scram_client *c)
{
	if (c->step != STEP_INIT || c->gs2_flag == 'p')
		return false;
	c->gs2_flag = 'y';
	return true;
}

const char *scram_client_mechanism(const struct scram_client *c)
{
	return c->gs2_flag == 'p' ? SCRAM_MECHANISM_PLUS : SCRAM_MECHANISM;
}

static enum scram_status client_over(struct scram_client *c, enum scram_status st)
{
	c->step = STEP_OVER;
	return st;
}

bool scram_client_first(struct scram_client *c, char **out, size_t *out_len)
{
	size_t bare_len = 0;

	*out = NULL;
	*out_len = 0;
	if (c->step != STEP_INIT || (c->password == NULL && !c->have_keys)) {
		c->step = STEP_OVER;
		return false;
	}
	if (c->client_nonce[0] == '\0' &&
	    !scram_random_nonce(c->client_nonce, sizeof(c->client_nonce))) {
		c->step = STEP_OVER;
		return false;
	}
	c->client_first_bare = scram_dup_printf(&bare_len, "n=%s,r=%s",
	                                        c->user != NULL ? c->user : "", c->client_nonce);
	if (c->client_first_bare == NULL) {
		c->step = STEP_OVER;
		return false;
	}
	*out = scram_dup_printf(out_len, "%s%s", scram_gs2_header(c->gs2_flag),
	                        c->client_first_bare);
	if (*out == NULL) {
		*out_len = 0;
		c->step = STEP_OVER;
		return false;
	}
	c->step = STEP_FIRST;
	return true;
}

enum scram_status scram_client_final(struct scram_client *c, const uint8_t *in, size_t in_len,
                                     char **out, size_t *out_len)
{
	const char *msg = (const char *)in, *nonce, *val;
	uint8_t salt[SCRAM_MAX_SALT], salted[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN],
	        sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	uint8_t cbind[CBIND_MAX];
	char proof_b64[KEY_B64_LEN + 1], cbind_b64[CBIND_B64_SIZE];
	char *without_proof = NULL, *auth_message = NULL;
	size_t nonce_len, val_len, wp_len = 0, am_len = 0, cn_len = strlen(c->client_nonce);
	enum scram_status st = SCRAM_FAIL;
	struct cursor cur;
	long salt_len, iterations;

	*out = NULL;
	*out_len = 0;
	if (c->step != STEP_FIRST || !scram_message_ok(in, in_len))
		return client_over(c, SCRAM_PROTO);
	c->step = STEP_OVER;

	/* r=<our nonce + server's>,s=<salt>,i=<iterations>[,extensions] */
	scram_cursor_init(&cur, msg, in_len);
	if (!scram_expect_attr(&cur, 'r', &nonce, &nonce_len) || nonce_len <= cn_len ||
	    !scram_valid_nonce(nonce, nonce_len) || memcmp(nonce, c->client_nonce, cn_len) != 0)
		return SCRAM_PROTO;
	if (!scram_expect_attr(&cur, 's', &val, &val_len))
		return SCRAM_PROTO;
	salt_len = b64_decode(val, val_len, salt, sizeof(salt));
	if (salt_len < 1)
		return SCRAM_PROTO;
	if (!scram_expect_attr(&cur, 'i', &val, &val_len) ||
	    !scram_parse_count(val, val_len, SCRAM_MAX_ITERATIONS, &iterations) ||
	    !scram_skip_extensions(&cur))
		return SCRAM_PROTO;

	if (!c->have_keys) {
		if (!scram_salted_password(c->password, salt, (size_t)salt_len, (int)iterations,
		                           salted) ||
		    !scram_keys_from_salted(salted, c->client_key, c->server_key))
			goto out;
	}
	if (b64_encode(cbind, scram_cbind_input(c->gs2_flag, c->cb_data, c->cb_len, cbind),
	               cbind_b64, sizeof(cbind_b64)) == 0)
		goto out;
	without_proof = scram_dup_printf(&wp_len, "c=%s,r=%.*s", cbind_b64, (int)nonce_len, nonce);
	if (without_proof == NULL)
		goto out;
	auth_message = scram_join3(c->client_first_bare, strlen(c->client_first_bare), msg, in_len,
	                           without_proof, wp_len, &am_len);
	if (auth_message == NULL || !scram_sha256(c->client_key, SCRAM_KEY_LEN, stored) ||
	    !scram_hmac256(stored, SCRAM_KEY_LEN, auth_message, am_len, sig) ||
	    !scram_hmac256(c->server_key, SCRAM_KEY_LEN, auth_message, am_len,
	                   c->expected_server_signature))
		goto out;
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = c->client_key[i] ^ sig[i];
	if (b64_encode(proof, SCRAM_KEY_LEN, proof_b64, sizeof(proof_b64)) == 0)
		goto out;
	*out = scram_dup_printf(out_len, "%s,p=%s", without_proof, proof_b64);
	if (*out == NULL) {
		*out_len = 0;
		goto out;
	}
	c->step = STEP_FINAL;
	st = SCRAM_CONTINUE;
out:
	free(without_proof);
	free(auth_message);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(proof_b64, sizeof(proof_b64));
	return st;
}

enum scram_status scram_client_verify(struct scram_client *c, const uint8_t *in, size_t in_len)
{
	uint8_t sig[SCRAM_KEY_LEN];
	const char *val;
	size_t val_len;
	struct cursor cur;
	char name;
	bool match;

	if (c->step != STEP_FINAL || !scram_message_ok(in, in_len))
		return client_over(c, SCRAM_PROTO);
	c->step = STEP_OVER;

	/* (e=<error> / v=<signature>)[,extensions] */
	scram_cursor_init(&cur, (const char *)in, in_len);
	if (scram_next_attr(&cur, &name, &val, &val_len) != 1)
		return SCRAM_PROTO;
	if (name == 'e')
		return SCRAM_FAIL;
	if (name != 'v' || !scram_decode_key(val, val_len, sig) || !scram_skip_extensions(&cur))
		return SCRAM_PROTO;
	match = CRYPTO_memcmp(sig, c->expected_server_signature, SCRAM_KEY_LEN) == 0;
	OPENSSL_cleanse(sig, sizeof(sig));
	return match ? SCRAM_DONE : SCRAM_FAIL;
}

void scram_client_clear(struct scram_client *c)
{
	scram_free_secret_string(c->password);
	free(c->user);
	free(c->client_first_bare);
	OPENSSL_cleanse(c, sizeof(*c));
}
