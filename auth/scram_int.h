/* What auth/scram.c (primitives, secrets, message parsing, the server side)
 * shares with auth/scram_client.c (the client side).  Internal to auth/. */
#ifndef PGMOAT_AUTH_SCRAM_INT_H
#define PGMOAT_AUTH_SCRAM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/scram.h"

#define SECRET_PREFIX "SCRAM-SHA-256$"
#define NONCE_RAW_LEN 18
#define KEY_B64_LEN 44 /* base64 of SCRAM_KEY_LEN bytes */
#define GS2_HEADER_P "p=" SCRAM_CB_TYPE ",,"
/* The gs2 header and channel binding data behind c=, raw and in base64. */
#define CBIND_MAX (sizeof(GS2_HEADER_P) - 1 + SCRAM_MAX_CB_DATA)
#define CBIND_B64_SIZE ((CBIND_MAX + 2) / 3 * 4 + 1)

/* Exchange steps; STEP_OVER after a failure or the last message. */
enum { STEP_INIT = 0, STEP_FIRST, STEP_FINAL, STEP_OVER };

/* Attributes of a SCRAM message: "a=value" separated by ','. */
struct cursor {
	const char *p, *end;
	bool after_comma; /* a ',' was consumed: another attribute must follow */
};

size_t scram_cbind_input(char flag, const uint8_t *cb_data, size_t cb_len, uint8_t *raw);
void scram_cursor_init(struct cursor *c, const char *p, size_t len);
bool scram_decode_key(const char *s, size_t len, uint8_t out[SCRAM_KEY_LEN]);
char *scram_dup_printf(size_t *out_len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool scram_expect_attr(struct cursor *c, char want, const char **val, size_t *val_len);
void scram_free_secret_string(char *s);
const char *scram_gs2_header(char flag);
bool scram_hmac256(const uint8_t *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[SCRAM_KEY_LEN]);
char *scram_join3(const char *a, size_t a_len, const char *b, size_t b_len, const char *c,
                  size_t c_len, size_t *out_len);
bool scram_keys_from_salted(const uint8_t salted[SCRAM_KEY_LEN], uint8_t client_key[SCRAM_KEY_LEN],
                            uint8_t server_key[SCRAM_KEY_LEN]);
bool scram_message_ok(const uint8_t *in, size_t in_len);
int scram_next_attr(struct cursor *c, char *name, const char **val, size_t *val_len);
bool scram_parse_count(const char *s, size_t len, long max, long *out);
bool scram_random_nonce(char *out, size_t out_len);
bool scram_set_nonce(char *dst, size_t dst_size, const char *nonce);
bool scram_sha256(const void *data, size_t len, uint8_t out[SCRAM_KEY_LEN]);
bool scram_skip_extensions(struct cursor *c);
bool scram_valid_nonce(const char *s, size_t len);

#endif
