/* Logging in to PostgreSQL: TLS, the startup packet, the authentication methods
 * (cleartext, md5, SCRAM-SHA-256 with a password or with the keys a
 * client's own SCRAM login proved), and the messages up to the first
 * ReadyForQuery, when the server is offered to its pool. */
#ifndef PGMOAT_PROXY_SERVER_LOGIN_H
#define PGMOAT_PROXY_SERVER_LOGIN_H

#include <stdbool.h>

struct server;

/* TLS towards PostgreSQL (server_tls_sslmode): SSLRequest, its answer, the
 * handshake, then the startup packet. */
enum server_tls_step { SV_TLS_NONE, SV_TLS_ASKED, SV_TLS_HANDSHAKE };

/* Connected: ask for TLS, or send the startup packet. */
void server_connected(struct server *s);
/* The answer to SSLRequest arrived (state connecting). */
void server_tls_answer(struct server *s);
/* The socket is ready during the TLS handshake. */
void server_tls_step(struct server *s);
/* Send the startup packet. */
void server_send_startup(struct server *s);
/* Handle the whole login messages received; false once the server is gone
 * or logged in (it may have been handed on). */
bool server_login_step(struct server *s);
/* The connect or login failed: logged, remembered by the pool (its waiters
 * get the error), the server closed. */
void server_login_failed(struct server *s, const char *sqlstate, const char *msg);
/* Whether a login failure with `sqlstate` means the database is down for
 * now (unreachable, starting up, shutting down): worth waiting for. */
bool server_down_error(const char *sqlstate);

#endif
