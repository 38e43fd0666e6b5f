/* TLS on both legs: pgmoat as a TLS server for clients and as a TLS client
 * towards PostgreSQL (OpenSSL 3).
 *
 * The contexts are built from the configuration when it is loaded and live
 * in the snapshot (proxy/runtime.h): a reload builds new ones, a bad file
 * fails the reload and the old ones stay; connections keep the context they
 * started with.
 *
 * A TLS connection reads through a socket BIO and writes into a memory BIO
 * that pgmoat flushes to the socket itself (tls_flush): OpenSSL never holds
 * a half-written record that a retry with other bytes would complete, and
 * the relay's buffers can move or change between writes.  Bytes OpenSSL
 * decrypted but pgmoat has not read yet do not make the socket readable, so
 * the read watcher is fed by hand while there are any (tls_kick).
 */
#ifndef PGMOAT_PROXY_TLS_H
#define PGMOAT_PROXY_TLS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "conf/config.h"

struct conn;

/* tls-server-end-point (RFC 5929) hashes are at most SHA-512 long. */
#define TLS_CB_MAX 64

struct tls_ctx {
	struct ssl_ctx_st *accept; /* for clients; NULL: client_tls_sslmode = disable */
	struct ssl_ctx_st *connect; /* towards PostgreSQL; NULL: server_tls_sslmode = disable */
	int client_mode; /* enum tls_mode */
	int server_mode;
	/* Channel binding data of pgmoat's own certificate (SCRAM-SHA-256-PLUS). */
	uint8_t cb[TLS_CB_MAX];
	size_t cb_len;
};

/* Contexts for `cfg`; NULL with every problem (file names included) in
 * `errors`. */
struct tls_ctx *tls_ctx_new(const struct config *cfg, struct strlist *errors);
void tls_ctx_free(struct tls_ctx *t);

extern const struct transport transport_tls;

/* Turn `c` into a TLS connection, as the server side (a client of pgmoat)
 * or the client side (towards PostgreSQL; `host` is checked against the
 * certificate in verify-full, and sent as SNI when it is a name).  The
 * handshake is driven by tls_handshake.  False if OpenSSL failed. */
bool tls_start_accept(struct conn *c, const struct tls_ctx *t, struct ev_loop *loop);
bool tls_start_connect(struct conn *c, const struct tls_ctx *t, const char *host,
                       struct ev_loop *loop);

enum tls_step { TLS_STEP_DONE, TLS_STEP_READ, TLS_STEP_WRITE, TLS_STEP_FAIL };
/* One step of the handshake; on TLS_STEP_FAIL `err` says why. */
enum tls_step tls_handshake(struct conn *c, char *err, size_t errlen);
/* Write what OpenSSL produced to the socket: true when nothing is left,
 * false when the socket is full (or failed: errno then is not EAGAIN). */
bool tls_flush(struct conn *c);
/* The connection's event loop changed (a server moved to another worker). */
void tls_set_loop(struct conn *c, struct ev_loop *loop);
/* tls_kick() is declared in proxy/relay.h, for conn_want_read(). */
/* Send close_notify (best effort) and free the TLS state. */
void tls_close(struct conn *c);

/* After the handshake. */
const char *tls_version(const struct conn *c);
const char *tls_cipher(const struct conn *c);
/* The peer sent a certificate that verified against the CA file. */
bool tls_peer_verified(const struct conn *c);
/* The common name of the peer's verified certificate, or false. */
bool tls_peer_cn(const struct conn *c, char *out, size_t n);
/* tls-server-end-point data of the server's certificate as seen by the
 * client side of `c` (towards PostgreSQL); 0 if none. */
size_t tls_peer_end_point(const struct conn *c, uint8_t out[TLS_CB_MAX]);

#endif
