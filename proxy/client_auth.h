/* Client authentication: trust, cleartext, md5, SCRAM-SHA-256 (-PLUS over
 * TLS) against the auth file or auth_query, and client certificates.  A wrong password and an unknown user fail the same way. */
#ifndef PGMOAT_PROXY_CLIENT_AUTH_H
#define PGMOAT_PROXY_CLIENT_AUTH_H

#include <stdbool.h>
#include <stdint.h>

struct client;

/* Start authenticating a client whose startup packet was accepted. */
void client_auth_begin(struct client *c);
/* Handle what the client sent during authentication. */
void client_auth_step(struct client *c);
/* Free the exchange state (and zero its secrets). */
void client_auth_clear(struct client *c);

/* Implemented by client.c: authentication succeeded.  `client_key` and
 * `server_key` are the SCRAM keys a client proved, or NULL; `secret` an md5
 * hash auth_query found, or NULL: the pool logs in to PostgreSQL with
 * them. */
void client_login(struct client *c, const uint8_t *client_key, const uint8_t *server_key,
                  const char *secret);

#endif
