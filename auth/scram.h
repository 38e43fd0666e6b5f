/* SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677), both ways:
 * pgmoat as the server (clients log in to pgmoat) and as the client (pgmoat
 * logs in to PostgreSQL).
 *
 * Channel binding is of type tls-server-end-point only (RFC 5929 section 4),
 * as PostgreSQL implements it: the binding data is the hash of the TLS
 * server's certificate (the caller computes it; this module never sees TLS).
 * The gs2 header is "p=tls-server-end-point,," with SCRAM-SHA-256-PLUS,
 * "n,," (no channel binding) or "y,," (the client could bind but thinks the
 * server cannot); the client-final-message's c= is the base64 of the gs2
 * header followed, with 'p', by the binding data.  An authorization
 * identity (a=) is always refused.
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
#define SCRAM_MECHANISM_PLUS "SCRAM-SHA-256-PLUS"
/* The only channel binding type, and the most mechanisms ever offered. */
#define SCRAM_CB_TYPE "tls-server-end-point"
#define SCRAM_MAX_MECHANISMS 2
/* Channel binding data: a certificate hash, at most SHA-512's 64 bytes. */
#define SCRAM_MAX_CB_DATA 64
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
 * a mock secret), a server that failed to prove itself, channel binding data
 * that does not match or a channel binding downgrade, or an internal failure
 * (out of memory, crypto library error) -- never a success; SCRAM_PROTO:
 * malformed message, a gs2 header the mechanism does not allow, or a call out
 * of order.
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
	bool plus; /* the client chose SCRAM-SHA-256-PLUS */
	uint8_t cb_data[SCRAM_MAX_CB_DATA]; /* tls-server-end-point hash, if TLS */
	size_t cb_len; /* 0: no channel binding offered */
	bool cb_used; /* on SCRAM_DONE: the client proved the channel binding */
	const char *error; /* why SCRAM_FAIL or SCRAM_PROTO, or NULL */
	char gs2_flag; /* 'n', 'y' or 'p', from the client-first-message */
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
/* After init, when the client's connection is TLS: `cb_data` is the
 * tls-server-end-point hash of pgmoat's certificate, 1..SCRAM_MAX_CB_DATA
 * bytes (copied).  This offers SCRAM-SHA-256-PLUS and makes a 'y' gs2 flag a
 * downgrade.  Bad arguments, or a call after scram_server_first(), end the
 * exchange (every later call returns SCRAM_PROTO): never a silent
 * exchange without channel binding. */
void scram_server_set_channel_binding(struct scram_server *s, const uint8_t *cb_data, size_t len);
/* The mechanisms to offer in AuthenticationSASL, best first, into `out`:
 * SCRAM_MECHANISM_PLUS (only with channel binding data) and SCRAM_MECHANISM.
 * Returns how many (1 or 2). */
size_t scram_server_mechanisms(const struct scram_server *s, const char *out[SCRAM_MAX_MECHANISMS]);
/* The mechanism the client chose in SASLInitialResponse (NUL-terminated),
 * before scram_server_first().  Without this call the mechanism is
 * SCRAM-SHA-256.  False (and the exchange is over) for a mechanism that was
 * not offered: anything but the two names, or -PLUS without channel binding
 * data. */
bool scram_server_set_mechanism(struct scram_server *s, const char *mechanism)
        __attribute__((warn_unused_result));
/* client-first-message in, server-first-message out (malloc'd, *out_len).
 * The gs2 header, as PostgreSQL checks it:
 *   "p=tls-server-end-point,,"  only with SCRAM-SHA-256-PLUS (otherwise
 *                               SCRAM_PROTO), which requires it; another
 *                               channel binding type is SCRAM_PROTO;
 *   "y,,"                       SCRAM_FAIL (a downgrade) if channel binding
 *                               data was set, accepted otherwise;
 *   "n,,"                       accepted with SCRAM-SHA-256.
 * An authorization identity is refused.  The n= user name is ignored (the
 * user comes from the startup packet). */
enum scram_status scram_server_first(struct scram_server *s, const uint8_t *in, size_t in_len,
                                     char **out, size_t *out_len);
/* client-final-message in, server-final-message out.  c= must be the
 * base64 of the gs2 header (and, with 'p', the channel binding data,
 * compared in constant time): another header is SCRAM_PROTO, other binding
 * data SCRAM_FAIL.  SCRAM_DONE on a good proof, with s->client_key filled in
 * (with s->secret.server_key, the keys for passthrough to PostgreSQL) and
 * s->cb_used telling whether channel binding was used. */
enum scram_status scram_server_final(struct scram_server *s, const uint8_t *in, size_t in_len,
                                     char **out, size_t *out_len);
/* Why the exchange ended in SCRAM_FAIL or SCRAM_PROTO, for the log (a
 * static string, no secret in it); NULL if it did not. */
const char *scram_server_error(const struct scram_server *s);
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
	char gs2_flag; /* 'n' (default), 'y' or 'p' */
	uint8_t cb_data[SCRAM_MAX_CB_DATA]; /* with 'p' */
	size_t cb_len;
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
/* Optional, before scram_client_first(), on a TLS connection to a server
 * that offered SCRAM-SHA-256-PLUS: `cb_data` is the tls-server-end-point
 * hash of the server's certificate, 1..SCRAM_MAX_CB_DATA bytes (copied).
 * The gs2 header becomes "p=tls-server-end-point,," and the caller sends
 * SCRAM_MECHANISM_PLUS (see scram_client_mechanism()).  False on bad
 * arguments, after scram_client_set_cb_supported(), or too late. */
bool scram_client_set_channel_binding(struct scram_client *c, const uint8_t *cb_data, size_t len)
        __attribute__((warn_unused_result));
/* Optional, before scram_client_first(), on a TLS connection to a server
 * that did not offer SCRAM-SHA-256-PLUS: send the gs2 flag 'y' ("I could
 * bind, I think you cannot"), so a server that does support channel binding
 * detects a downgrade.  False after scram_client_set_channel_binding() or
 * too late. */
bool scram_client_set_cb_supported(struct scram_client *c) __attribute__((warn_unused_result));
/* The mechanism to name in SASLInitialResponse: SCRAM_MECHANISM_PLUS with
 * channel binding data, SCRAM_MECHANISM otherwise. */
const char *scram_client_mechanism(const struct scram_client *c);
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
