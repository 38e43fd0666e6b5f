#include <config.h>

#include "proxy/cancel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/server.h"
#include "proxy/worker.h"

/* An open-hash table of clients by cancel pid (chained through
 * client->cancel_next), per worker. */

void cancel_table_init(struct worker *w)
{
	w->cancel_mask = 255;
	w->cancel_table = xcalloc(w->cancel_mask + 1, sizeof(*w->cancel_table));
	w->cancel_count = 0;
}

void cancel_table_free(struct worker *w)
{
	free(w->cancel_table);
	w->cancel_table = NULL;
}

static uint32_t slot(const struct worker *w, uint32_t pid)
{
	uint32_t h = pid * 2654435761u;
	return (h >> 8) & w->cancel_mask;
}

static struct client *lookup(struct worker *w, uint32_t pid)
{
	for (struct client *c = w->cancel_table[slot(w, pid)]; c; c = c->cancel_next)
		if (c->cancel_pid == pid)
			return c;
	return NULL;
}

static void grow(struct worker *w)
{
	uint32_t old_mask = w->cancel_mask;
	struct client **old = w->cancel_table;
	w->cancel_mask = old_mask * 2 + 1;
	w->cancel_table = xcalloc(w->cancel_mask + 1, sizeof(*w->cancel_table));
	for (uint32_t i = 0; i <= old_mask; i++) {
		struct client *c = old[i];
		while (c) {
			struct client *next = c->cancel_next;
			uint32_t s = slot(w, c->cancel_pid);
			c->cancel_next = w->cancel_table[s];
			w->cancel_table[s] = c;
			c = next;
		}
	}
	free(old);
}

void cancel_register(struct worker *w, struct client *c)
{
	uint32_t r[2];
	do {
		if (!random_bytes(r, sizeof(r))) {
			r[0] = (uint32_t)now_usec();
			r[1] = (uint32_t)(now_usec() >> 7) ^ (uint32_t)c->id;
		}
		c->cancel_pid = ((uint32_t)w->id << CANCEL_WORKER_SHIFT) |
		        (r[0] & ((1u << CANCEL_WORKER_SHIFT) - 1));
	} while (c->cancel_pid == 0 || lookup(w, c->cancel_pid));
	c->cancel_key = r[1];
	if (w->cancel_count + 1 > (w->cancel_mask + 1) * 2)
		grow(w);
	uint32_t s = slot(w, c->cancel_pid);
	c->cancel_next = w->cancel_table[s];
	w->cancel_table[s] = c;
	w->cancel_count++;
}

void cancel_unregister(struct worker *w, struct client *c)
{
	struct client **pp = &w->cancel_table[slot(w, c->cancel_pid)];
	while (*pp) {
		if (*pp == c) {
			*pp = c->cancel_next;
			w->cancel_count--;
			break;
		}
		pp = &(*pp)->cancel_next;
	}
	c->cancel_pid = 0;
	c->cancel_next = NULL;
}

void cancel_request(struct worker *w, uint32_t pid, uint32_t key)
{
	uint32_t owner = pid >> CANCEL_WORKER_SHIFT;
	if (owner == (uint32_t)w->id) {
		cancel_local(w, pid, key);
		return;
	}
	if (owner >= (uint32_t)w->rt->n_workers) {
		log_debug("cancel request for unknown key ignored");
		return;
	}
	struct wmsg *m = xcalloc(1, sizeof(*m));
	m->kind = WMSG_CANCEL;
	m->pid = pid;
	m->key = key;
	worker_post(&w->rt->workers[owner], m);
}

/* A connection that carries one CancelRequest to a backend. */
struct cancel_conn {
	ev_io io;
	int fd;
	struct server *server; /* whose backend it cancels; NULL once closed */
	uint8_t packet[16];
	size_t sent;
	bool connected;
};

/* Until the postmaster has the request, the server is not given to another
 * client: the cancel could hit that client's query. */
static void cancel_conn_done(struct ev_loop *loop, struct cancel_conn *cc)
{
	ev_io_stop(loop, &cc->io);
	close(cc->fd);
	struct server *s = cc->server;
	free(cc);
	if (s) {
		s->cancel = NULL;
		if (s->offer_after_cancel) {
			s->offer_after_cancel = false;
			server_offer(s);
		}
	}
}

void cancel_forget(struct server *s)
{
	if (s->cancel) {
		s->cancel->server = NULL;
		s->cancel = NULL;
	}
}

static void cancel_conn_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct cancel_conn *cc = container_of(io, struct cancel_conn, io);
	(void)revents;
	if (!cc->connected) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(cc->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			log_warning("cancel: could not connect to server: %s",
			            strerror(err ? err : errno));
			cancel_conn_done(loop, cc);
			return;
		}
		cc->connected = true;
	}
	if (revents & EV_WRITE) {
		while (cc->sent < sizeof(cc->packet)) {
			ssize_t n = send(cc->fd, cc->packet + cc->sent,
			                 sizeof(cc->packet) - cc->sent, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return;
				cancel_conn_done(loop, cc);
				return;
			}
			cc->sent += (size_t)n;
		}
		/* Sent: the server closes the connection once it has read it. */
		ev_io_stop(loop, &cc->io);
		ev_io_set(&cc->io, cc->fd, EV_READ);
		ev_io_start(loop, &cc->io);
		return;
	}
	char b[64];
	ssize_t n = recv(cc->fd, b, sizeof(b), 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	cancel_conn_done(loop, cc);
}

void cancel_server(struct worker *w, struct server *s)
{
	if (s->cancel)
		return; /* one is on its way */
	char addr[96];
	int fd = server_open_socket(&s->target, addr, sizeof(addr));
	if (fd < 0) {
		log_warning("cancel request: could not connect to %s: %s", s->addr,
		            strerror(errno));
		return;
	}
	struct cancel_conn *cc = xcalloc(1, sizeof(*cc));
	cc->fd = fd;
	put_u32(cc->packet, 16);
	put_u32(cc->packet + 4, 80877102u);
	put_u32(cc->packet + 8, s->backend_pid);
	put_u32(cc->packet + 12, s->backend_key);
	cc->server = s;
	s->cancel = cc;
	ev_io_init(&cc->io, cancel_conn_cb, fd, EV_WRITE);
	ev_io_start(w->loop, &cc->io);
}

void cancel_local(struct worker *w, uint32_t pid, uint32_t key)
{
	struct client *c = lookup(w, pid);
	if (!c || !ct_equal(&c->cancel_key, &key, sizeof(key))) {
		log_debug("cancel request with an unknown key ignored");
		return;
	}
	if (c->state == CL_WAITING && c->waiter.state == WAITER_QUEUED) {
		client_cancel_wait(c);
		return;
	}
	struct server *s = c->server;
	if (!s || s->state != SV_ACTIVE || server_quiet(s)) {
		log_client(c, LL_DEBUG, "cancel request: nothing running");
		return;
	}
	cancel_server(w, s);
	log_client(c, LL_INFO, "cancel request forwarded to backend pid %u", s->backend_pid);
}
