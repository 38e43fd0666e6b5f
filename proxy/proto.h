/* PostgreSQL v3 protocol: building the messages pgmoat sends itself, and
 * parsing the few it reads (startup packets, errors, auth requests).  Every
 * parser takes an explicit length and treats its input as hostile. */
#ifndef PGMOAT_PROXY_PROTO_H
#define PGMOAT_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define PROTO_V3 196608u /* 3.0 */
#define PROTO_MAJOR(v) ((v) >> 16)
#define PROTO_MINOR(v) ((v)&0xffff)
#define PROTO_CANCEL 80877102u
#define PROTO_SSL 80877103u
#define PROTO_GSSENC 80877104u
#define STARTUP_MAX_LEN 10000 /* as PostgreSQL's limit */

/* Authentication request codes ('R'). */
#define AUTH_REQ_OK 0
#define AUTH_REQ_CLEARTEXT 3
#define AUTH_REQ_MD5 5
#define AUTH_REQ_SASL 10
#define AUTH_REQ_SASL_CONTINUE 11
#define AUTH_REQ_SASL_FINAL 12

/* A list of name = value pairs (startup and server parameters).  Names
 * compare case-insensitively, as GUC names do. */
struct param {
	char *name;
	char *value;
};

struct params {
	struct param *v;
	uint32_t n;
	uint32_t cap;
};

void params_init(struct params *p);
void params_free(struct params *p);
void params_set(struct params *p, const char *name, const char *value);
const char *params_get(const struct params *p, const char *name);
/* Replace `dst` with a copy of `src`. */
void params_copy(struct params *dst, const struct params *src);

enum startup_kind {
	STARTUP_NORMAL,
	STARTUP_SSL,
	STARTUP_GSSENC,
	STARTUP_CANCEL,
	STARTUP_BAD, /* error[] and sqlstate[] say why */
};

struct startup {
	enum startup_kind kind;
	uint32_t version;
	char *user;
	char *database;
	struct params params; /* everything else the client sent */
	struct params pq_options; /* _pq_.* options (answered as unrecognized) */
	uint32_t cancel_pid, cancel_key;
	char sqlstate[6];
	char error[128];
};

/* `body` is the packet after its 4-byte length (`len` bytes). */
void proto_parse_startup(const uint8_t *body, size_t len, struct startup *out);
void startup_free(struct startup *s);

/* An ErrorResponse or NoticeResponse body.  Missing fields are empty. */
struct pg_error {
	char severity[16];
	char sqlstate[6];
	char message[256];
};
bool proto_parse_error(const uint8_t *body, size_t len, struct pg_error *out)
        __attribute__((warn_unused_result));

/* An authentication request ('R') from a server: the parts pgmoat uses,
 * pointing into the body. */
struct auth_request {
	uint32_t code; /* AUTH_REQ_*, or a method pgmoat does not support */
	const uint8_t *salt; /* AUTH_REQ_MD5: 4 bytes */
	/* AUTH_REQ_SASL: whether SCRAM_MECHANISM and SCRAM_MECHANISM_PLUS
	 * are among the mechanisms offered */
	bool scram, scram_plus;
	const uint8_t *data; /* AUTH_REQ_SASL_CONTINUE and _FINAL: the SASL data */
	size_t data_len;
};
/* False if the body is malformed: no code (out->code is then UINT32_MAX),
 * an MD5 request without its salt, a SASL mechanism list without its
 * terminator.  Other codes are not looked into. */
bool proto_parse_auth_request(const uint8_t *body, size_t len, struct auth_request *out)
        __attribute__((warn_unused_result));
/* A ParameterStatus body: name and value point into it.  False unless it
 * holds two strings and the name is not empty. */
bool proto_parse_param_status(const uint8_t *body, size_t len, const char **name,
                              const char **value) __attribute__((warn_unused_result));
/* A BackendKeyData body (protocol 3.0: process id and 4-byte key); false
 * if shorter. */
bool proto_parse_backend_key(const uint8_t *body, size_t len, uint32_t *pid, uint32_t *key)
        __attribute__((warn_unused_result));
/* A DataRow body of exactly two non-NULL columns without NUL bytes (rows of
 * pgmoat's own queries); col[i] points into the body, n[i] is its length. */
bool proto_parse_row2(const uint8_t *body, size_t len, const uint8_t *col[2], uint32_t n[2])
        __attribute__((warn_unused_result));

/* A PasswordMessage body: one string filling it.  NULL if malformed. */
const char *proto_parse_password(const uint8_t *body, size_t len);
/* A SASLInitialResponse body: the mechanism's name, then the length and
 * bytes of the client's first message (-1 for none is refused), nothing
 * after.  False if malformed. */
bool proto_parse_sasl_initial(const uint8_t *body, size_t len, const char **mechanism,
                              const uint8_t **data, uint32_t *data_len)
        __attribute__((warn_unused_result));

/* Messages to clients */
void proto_error(struct pkt *p, const char *severity, const char *sqlstate, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void proto_auth(struct pkt *p, uint32_t code, const void *data, size_t len);
void proto_auth_sasl(struct pkt *p, const char *const *mechanisms, size_t n);
void proto_param_status(struct pkt *p, const char *name, const char *value);
void proto_backend_key(struct pkt *p, uint32_t pid, uint32_t key);
void proto_ready(struct pkt *p, char status);
void proto_negotiate_version(struct pkt *p, uint32_t minor, const struct params *unrecognized);

/* Messages to servers */
void proto_startup(struct pkt *p, const struct params *params);
/* SSLRequest (pgmoat asking PostgreSQL for TLS). */
void proto_ssl_request(struct pkt *p);
void proto_cancel(struct pkt *p, uint32_t pid, uint32_t key);
void proto_query(struct pkt *p, const char *sql);
void proto_password(struct pkt *p, const char *data, size_t len);
void proto_sasl_initial(struct pkt *p, const char *mechanism, const char *data, size_t len);
void proto_terminate(struct pkt *p);

/* Append `value` to `p` as a SQL string literal, `name` as a quoted
 * identifier (no terminating NUL; `p` used as a string builder). */
void proto_put_literal(struct pkt *p, const char *value);
void proto_put_ident(struct pkt *p, const char *name);

#endif
