/* A raw PostgreSQL wire-protocol client for the integration tests: exact
 * SQLSTATEs of refused connections (libpq does not expose them), malformed
 * and special startup packets, and a login that speaks cleartext, md5 and
 * SCRAM-SHA-256 itself.
 *
 * Every read takes a timeout in seconds; sockets are blocking, CLOEXEC and
 * TCP_NODELAY. */
#ifndef PGMOAT_TESTS_WIRE_H
#define PGMOAT_TESTS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_PROTO_3_0 196608u
#define WIRE_PROTO_3_2 196610u
#define WIRE_SSL_REQUEST 80877103u
#define WIRE_GSSENC_REQUEST 80877104u
#define WIRE_CANCEL_REQUEST 80877102u

/* Connected socket, or -1 (with a diagnostic). */
int wire_connect(int port);
/* From source address `src` (e.g. "127.0.0.2", "::1") to `dst`:port:
 * how tests act as different hosts. */
int wire_connect_from(const char *src, const char *dst, int port);
int wire_connect_unix(const char *dir, int port);
/* Closes with an RST instead of a FIN. */
void wire_abort(int fd);

bool wire_send(int fd, const void *buf, size_t len);
/* StartupMessage: `params` is NULL-terminated name, value, name, value... */
bool wire_send_startup(int fd, uint32_t version, const char *const params[]);
/* An 8-byte request (SSLRequest, GSSENCRequest). */
bool wire_send_request(int fd, uint32_t code);
bool wire_send_cancel(int fd, uint32_t pid, uint32_t secret);
bool wire_send_msg(int fd, char type, const void *body, size_t len);
bool wire_send_query(int fd, const char *sql);

/* One byte: 0..255, -1 on timeout or error, -2 on EOF. */
int wire_read_byte(int fd, double timeout);

struct wire_msg {
	char type;
	uint32_t len; /* of the body */
	char *body; /* malloc'd, NUL-terminated for convenience */
};

/* 1: a message, 0: EOF (or reset), -1: timeout, error or an absurd length. */
int wire_read_msg(int fd, struct wire_msg *m, double timeout);
void wire_msg_free(struct wire_msg *m);
/* A field of an ErrorResponse/NoticeResponse, "" if absent. */
void wire_error_field(const struct wire_msg *m, char code, char *out, size_t outlen);
/* Reads and drops messages until EOF: true if EOF came within `timeout`.
 * The SQLSTATEs of ErrorResponses seen on the way are appended to
 * `states` (comma-separated) if it is not NULL. */
bool wire_wait_eof(int fd, double timeout, char *states, size_t stateslen);
/* Whether the socket has data (or EOF) within `timeout`. */
bool wire_readable(int fd, double timeout);

struct wire_login {
	bool ok; /* reached ReadyForQuery */
	int auth_code; /* first AuthenticationRequest code, -1 if none */
	char sqlstate[6]; /* of the ErrorResponse that ended it, "" if none */
	char message[512];
	bool have_key;
	uint32_t key_pid, key_secret;
	int negotiated_minor; /* from NegotiateProtocolVersion, -1 if none */
	int n_unsupported; /* options listed in it */
	int n_params; /* ParameterStatus messages */
	bool server_final_ok; /* SCRAM server signature verified */
	char txn_status; /* from ReadyForQuery */
};

/* Sends a StartupMessage for user/database (version 3.0 unless told) and
 * authenticates with `password` (may be NULL).  Fills `out`; true when the
 * login completed. */
bool wire_login(int fd, uint32_t version, const char *user, const char *db, const char *password,
                struct wire_login *out);
/* Same, on an already sent startup (after SSLRequest, say). */
bool wire_finish_login(int fd, const char *user, const char *password, struct wire_login *out);

struct wire_result {
	bool ok; /* ReadyForQuery reached and no error */
	bool got_ready;
	char sqlstate[6]; /* of the first error */
	char message[256];
	char value[256]; /* first column of the first row */
	long rows;
	char txn_status;
};

/* Sends a simple Query and reads up to ReadyForQuery (or EOF/timeout). */
bool wire_query(int fd, const char *sql, double timeout, struct wire_result *r);

/* Logs in on `fd` (-1: "no connection") and asks who it is: "ok user@db",
 * a refusal's "SQLSTATE message", or what went wrong (malloc'd).
 * `auth_code` (may be NULL) gets the first authentication request, -1 if
 * none. */
char *wire_whoami(int fd, const char *user, const char *db, const char *password, int *auth_code);

#endif
