#include <config.h>

#include "proxy/relay.h"

#include "proxy/tls.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t plain_read(struct conn *c, void *buf, size_t n)
{
	for (;;) {
		ssize_t r = recv(c->fd, buf, n, 0);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : -2;
	}
}

static ssize_t plain_write(struct conn *c, const void *buf, size_t n)
{
	for (;;) {
		ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : -2;
	}
}

const struct transport transport_plain = {"plain", plain_read, plain_write};

void conn_init(struct conn *c, int fd, void (*rcb)(struct ev_loop *, ev_io *, int),
               void (*wcb)(struct ev_loop *, ev_io *, int))
{
	c->fd = fd;
	c->io = &transport_plain;
	c->ssl = NULL;
	ev_io_init(&c->rio, rcb, fd, EV_READ);
	ev_io_init(&c->wio, wcb, fd, EV_WRITE);
	memset(&c->in, 0, sizeof(c->in));
	pkt_init(&c->out);
	frame_init(&c->frame);
}

void conn_close(struct ev_loop *loop, struct conn *c, struct buf_cache *bufs)
{
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	tls_close(c);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_release(&c->in, bufs, true);
	pkt_free(&c->out);
}

/* Make room in c->in before a read: compact when worthwhile. */
static void conn_prepare_read(struct conn *c)
{
	struct buf *b = &c->in;
	buf_reset_if_drained(b);
	if (b->sent > 0 && buf_room(b) < b->cap / 2)
		buf_compact(b);
}

enum io_result conn_read(struct conn *c, struct buf_cache *bufs)
{
	if (!buf_borrow(&c->in, bufs))
		return IO_NOMEM;
	conn_prepare_read(c);
	uint32_t room = buf_room(&c->in);
	if (room == 0)
		return IO_AGAIN;
	ssize_t r = c->io->read(c, c->in.data + c->in.recvd, room);
	if (r > 0) {
		c->in.recvd += (uint32_t)r;
		return IO_DONE;
	}
	if (r == 0)
		return IO_EOF;
	return r == -1 ? IO_AGAIN : IO_ERROR;
}

/* Over TLS, written means on the socket, not only encrypted. */
static enum io_result conn_flushed(struct conn *c)
{
	if (!c->ssl || tls_flush(c))
		return IO_DONE;
	return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
}

enum io_result conn_write_pkt(struct conn *c)
{
	struct pkt *p = &c->out;
	if (p->failed)
		return IO_NOMEM;
	while (pkt_unsent(p) > 0) {
		ssize_t r = c->io->write(c, p->data + p->sent, pkt_unsent(p));
		if (r < 0)
			return r == -1 ? IO_AGAIN : IO_ERROR;
		p->sent += (size_t)r;
	}
	pkt_reset(p);
	return conn_flushed(c);
}

enum io_result conn_write_buf(struct conn *c, struct buf *b, uint64_t *counter)
{
	while (buf_unsent(b) > 0) {
		ssize_t r = c->io->write(c, b->data + b->sent, buf_unsent(b));
		if (r < 0)
			return r == -1 ? IO_AGAIN : IO_ERROR;
		b->sent += (uint32_t)r;
		if (counter)
			*counter += (uint64_t)r;
	}
	return conn_flushed(c);
}
