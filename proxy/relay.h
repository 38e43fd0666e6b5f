/* Socket I/O shared by client and server connections, and the relay of
 * messages between a paired client and server.
 *
 * One transport table (struct transport) does the reads and writes, so TLS
 * can take the place of plain sockets without touching the relay. */
#ifndef PGMOAT_PROXY_RELAY_H
#define PGMOAT_PROXY_RELAY_H

#include <ev.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/buf.h"
#include "proxy/frame.h"

struct conn;

struct transport {
	const char *name;
	/* >0 bytes, 0 end of stream, -1 would block, -2 error (errno set) */
	ssize_t (*read)(struct conn *c, void *buf, size_t n);
	ssize_t (*write)(struct conn *c, const void *buf, size_t n);
};

extern const struct transport transport_plain;

struct ssl_st;

struct conn {
	int fd;
	const struct transport *io;
	struct ssl_st *ssl; /* TLS (proxy/tls.h), or NULL */
	ev_io rio;
	ev_io wio;
	struct buf in; /* what this side sent us */
	struct pkt out; /* what pgmoat composed for this side */
	struct frame frame;
};

void conn_init(struct conn *c, int fd, void (*rcb)(struct ev_loop *, ev_io *, int),
               void (*wcb)(struct ev_loop *, ev_io *, int));
void conn_close(struct ev_loop *loop, struct conn *c, struct buf_cache *bufs);

/* Decrypted bytes wait inside OpenSSL: make the read watcher fire. */
void tls_kick(struct ev_loop *loop, struct conn *c);

static inline void conn_want_read(struct ev_loop *loop, struct conn *c, bool on)
{
	if (on) {
		ev_io_start(loop, &c->rio);
		if (c->ssl)
			tls_kick(loop, c);
	} else
		ev_io_stop(loop, &c->rio);
}

static inline void conn_want_write(struct ev_loop *loop, struct conn *c, bool on)
{
	if (on)
		ev_io_start(loop, &c->wio);
	else
		ev_io_stop(loop, &c->wio);
}

enum io_result {
	IO_DONE, /* read something / wrote everything */
	IO_AGAIN, /* would block */
	IO_EOF, /* the peer closed */
	IO_ERROR, /* errno says why */
	IO_NOMEM,
};

/* Read what is there into c->in (borrowing a buffer first). */
enum io_result conn_read(struct conn *c, struct buf_cache *bufs);
/* Write c->out's unsent bytes (and, over TLS, all that was encrypted). */
enum io_result conn_write_pkt(struct conn *c);
/* Write [sent, parsed) of `b` (the peer's input) to c. */
enum io_result conn_write_buf(struct conn *c, struct buf *b, uint64_t *counter);

#endif
