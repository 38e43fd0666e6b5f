/* Logging in to PostgreSQL: the startup packet, the authentication methods
 * (cleartext, md5, SCRAM-SHA-256 with a password or with the keys a
 * client's own SCRAM login proved), and the messages up to the first
 * ReadyForQuery, when the server is offered to its pool. */
#ifndef PGMOAT_PROXY_SERVER_LOGIN_H
#define PGMOAT_PROXY_SERVER_LOGIN_H

#include <stdbool.h>

struct server;

/* Connected: send the startup packet. */
void server_send_startup(struct server *s);
/* Handle the whole login messages received; false once the server is gone
 * or logged in (it may have been handed on). */
bool server_login_step(struct server *s);
/* The connect or login failed: logged, remembered by the pool (its waiters
 * get the error), the server closed. */
void server_login_failed(struct server *s, const char *sqlstate, const char *msg);

#endif
