/* SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding, both ways:
 * pgmoat as the server (clients log in to pgmoat) and as the client (pgmoat
 * logs in to PostgreSQL).
 *
 * All inputs from the network come with explicit lengths and are parsed as
 * hostile.  Secrets are zeroed by scram_*_clear().
 */
#ifndef PGMOAT_AUTH_SCRAM_H
#define PGMOAT_AUTH_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_MAX_SALT 64
#define SCRAM_DEFAULT_ITERATIONS 4096
#define SCRAM_MECHANISM "SCRAM-SHA-256"
/* The most iterations pgmoat computes as a client (a server asking for more
 * is refused as malformed, to bound the CPU a server can make us spend). */
#define SCRAM_MAX_ITERATIONS 10000000
/* Longer SCRAM messages are refused as malformed. */
#define SCRAM_MAX_MESSAGE 4096
/* Enough for any verifier scram_format_secret() writes, with its NUL. */
#define SCRAM_SECRET_BUFSIZE 256

/* A stored verifier:  SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64> */
struct scram_secret {
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* Parsing is strict: iterations 1..INT_MAX without sign or leading zero,
 * salt 1..SCRAM_MAX_SALT bytes and keys of exactly SCRAM_KEY_LEN bytes, all
 * in canonical padded base64. */
bool scram_is_secret(const char *s);
bool scram_parse_secret(const char *s, struct scram_secret *out)
        __attribute__((warn_unused_result));
/* Derive a verifier from a plain password (SASLprep applied). */
bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
                                int iterations, struct scram_secret *out)
        __attribute__((warn_unused_result));
/* Format `s` as a verifier string into `out` (SCRAM_SECRET_BUFSIZE is
 * always enough).  False if `s` is invalid or `out` too small. */
bool scram_format_secret(const struct scram_secret *s, char *out, size_t out_len);

/* Statuses.  SCRAM_CONTINUE: send the output and wait for the next message;
 * SCRAM_DONE: authenticated; SCRAM_FAIL: wrong password (or unknown user with
 * a mock secret), a server that failed to prove itself, or an internal
 * failure (out of memory, crypto library error) -- never a success;
 * SCRAM_PROTO: malformed message or call out of order.
 * After SCRAM_FAIL or SCRAM_PROTO the exchange is over: every later call
 * returns SCRAM_PROTO.  Except on SCRAM_CONTINUE (and SCRAM_DONE from
 * scram_server_final), *out is NULL and *out_len 0. */
#define SCRAM_STATUS_LIST(X)                                                                       \
	X(SCRAM_CONTINUE)                                                                          \
	X(SCRAM_DONE)                                                                              \
	X(SCRAM_FAIL)                                                                              \
	X(SCRAM_PROTO)

enum scram_status {
#define SCRAM_STATUS_ENUM(name) name,
	SCRAM_STATUS_LIST(SCRAM_STATUS_ENUM)
#undef SCRAM_STATUS_ENUM
};

const char *scram_status_name(enum scram_status st);

/* --- pgmoat as SCRAM server (verifying a client) --- */
struct scram_server {
	int step;
	struct scram_secret secret;
	bool mock; /* unknown user: run the exchange, fail at the end */
	char gs2_flag; /* 'n' or 'y', from the client-first-message */
	char *client_first_bare;
	char *server_first;
	char client_nonce[128];
	char server_nonce[64]; /* generated, or set by scram_server_set_nonce() */
	char nonce[256]; /* client nonce + server nonce */
	uint8_t client_key[SCRAM_KEY_LEN]; /* recovered from the proof on success */
};

/* Start an exchange.  `secret` NULL means the user is unknown: a mock
 * verifier derived from `mock_seed` and the user name is used so the
 * exchange looks the same, and it fails at the end.  The mock salt is
 * HMAC-SHA-256(mock_seed, user)[0:16], so `mock_seed` should be secret and
 * stable (kept across restarts): a known seed would let anyone tell mock
 * salts from real ones, a changing one would show as a changing salt. */
void scram_server_init(struct scram_server *s, const struct scram_secret *secret, const char *user,
                       const uint8_t *mock_seed, size_t mock_seed_len);
/* client-first-message in, server-first-message out (malloc'd, *out_len).
 * The gs2 header must be "n,," or "y,,": channel binding ('p') and an
 * authorization identity are refused.  The n= user name is ignored (the
 * user comes from the startup packet). */
enum scram_status scram_server_first(struct scram_server *s, const uint8_t *in, size_t in_len,
                                     char **out, size_t *out_len);
/* client-final-message in, server-final-message out.  SCRAM_DONE on a good
 * proof, with s->client_key filled in (with s->secret.server_key, the keys
 * for passthrough to PostgreSQL). */
enum scram_status scram_server_final(struct scram_server *s, const uint8_t *in, size_t in_len,
                                     char **out, size_t *out_len);
void scram_server_clear(struct scram_server *s);

/* --- pgmoat as SCRAM client (logging in to PostgreSQL) --- */
struct scram_client {
	int step;
	/* Either a password, or the keys proven by a client (passthrough). */
	char *password;
	bool have_keys;
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
	char *user; /* escaped saslname for n=, NULL for the empty name */
	char client_nonce[64];
	char *client_first_bare;
	uint8_t expected_server_signature[SCRAM_KEY_LEN];
};

void scram_client_init_password(struct scram_client *c, const char *password);
void scram_client_init_keys(struct scram_client *c, const uint8_t client_key[SCRAM_KEY_LEN],
                            const uint8_t server_key[SCRAM_KEY_LEN]);
/* Optional, before scram_client_first(): the name sent as n=.  PostgreSQL
 * ignores it, so by default it is empty ("n,,n=,r=...", as libpq sends). */
bool scram_client_set_user(struct scram_client *c, const char *user)
        __attribute__((warn_unused_result));
/* client-first-message (malloc'd). */
bool scram_client_first(struct scram_client *c, char **out, size_t *out_len)
        __attribute__((warn_unused_result));
/* server-first in, client-final out.  With keys (passthrough), the server's
 * salt and iterations are not needed; with a password they are used to
 * derive the keys (then also left in c->client_key and c->server_key).
 * The server's nonce must extend ours, the salt be 1..SCRAM_MAX_SALT bytes
 * and the iterations 1..SCRAM_MAX_ITERATIONS. */
enum scram_status scram_client_final(struct scram_client *c, const uint8_t *in, size_t in_len,
                                     char **out, size_t *out_len);
/* server-final in: SCRAM_DONE if the server proved it knows the verifier,
 * SCRAM_FAIL on a wrong signature or an "e=" error. */
enum scram_status scram_client_verify(struct scram_client *c, const uint8_t *in, size_t in_len);
void scram_client_clear(struct scram_client *c);

/* For tests: fix the nonce part that would otherwise be random.  Call after
 * init and before the first message; `nonce` must be printable ASCII
 * without ',' and fit the struct's buffer.  False if it does not. */
bool scram_server_set_nonce(struct scram_server *s, const char *nonce)
        __attribute__((warn_unused_result));
bool scram_client_set_nonce(struct scram_client *c, const char *nonce)
        __attribute__((warn_unused_result));

/* Primitives, exposed for the unit tests against RFC 7677's vector. */
bool scram_salted_password(const char *password, const uint8_t *salt, size_t salt_len,
                           int iterations, uint8_t out[SCRAM_KEY_LEN]);
/* Standard padded base64 into `out`, NUL-terminated.  Returns the encoded
 * length, or 0 (and "" if out_len > 0) if `out` is too small. */
size_t b64_encode(const uint8_t *in, size_t len, char *out, size_t out_len);
/* Strict: padded, canonical, no whitespace.  Returns the decoded length, or
 * -1 on malformed input or overflow. */
long b64_decode(const char *in, size_t len, uint8_t *out, size_t out_len);

#endif
