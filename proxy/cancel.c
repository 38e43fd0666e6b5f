#include <config.h>

#include "proxy/cancel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "conf/config.h"
#include "pool/pool.h"
#include "proxy/client.h"
#include "proxy/server.h"
#include "proxy/worker.h"

/* An open-hash table of clients by cancel pid (chained through
 * client->cancel_next), per worker. */

/* A forwarded request that has not reached its peer by then is dropped. */
#define FORWARD_TIMEOUT 5.0 /* seconds */

void cancel_table_init(struct worker *w)
{
	/* peer_id needs a restart: the value at start stays. */
	w->cancel_peer_id = w->snap->cfg->peer_id;
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
	if (w->cancel_peer_id > 0)
		c->cancel_key = ((uint32_t)w->cancel_peer_id << CANCEL_PEER_SHIFT) |
		        (r[1] & ((1u << CANCEL_PEER_SHIFT) - 1));
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

/* A connection that carries one CancelRequest to a backend, or to a peer. */
struct cancel_conn {
	ev_io io;
	ev_timer timer; /* to a peer: FORWARD_TIMEOUT */
	int fd;
	struct server *server; /* whose backend it cancels; NULL once closed */
	int peer; /* the peer it goes to, 0 if to a backend */
	uint8_t packet[16];
	size_t sent;
	bool connected;
};

static void cancel_conn_cb(struct ev_loop *loop, ev_io *io, int revents);

static struct cancel_conn *cancel_conn_start(struct worker *w, int fd, uint32_t pid, uint32_t key)
{
	struct cancel_conn *cc = xcalloc(1, sizeof(*cc));
	cc->fd = fd;
	put_u32(cc->packet, 16);
	put_u32(cc->packet + 4, 80877102u);
	put_u32(cc->packet + 8, pid);
	put_u32(cc->packet + 12, key);
	ev_init(&cc->timer, NULL);
	ev_io_init(&cc->io, cancel_conn_cb, fd, EV_WRITE);
	ev_io_start(w->loop, &cc->io);
	return cc;
}

/* Until the postmaster has the request, the server is not given to another
 * client: the cancel could hit that client's query. */
static void cancel_conn_done(struct ev_loop *loop, struct cancel_conn *cc)
{
	ev_io_stop(loop, &cc->io);
	ev_timer_stop(loop, &cc->timer);
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
			if (cc->peer)
				log_warning("cancel: could not connect to peer %d: %s", cc->peer,
				            strerror(err ? err : errno));
			else
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
	struct cancel_conn *cc = cancel_conn_start(w, fd, s->backend_pid, s->backend_key);
	cc->server = s;
	s->cancel = cc;
}

static void forward_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct cancel_conn *cc = container_of(t, struct cancel_conn, timer);
	(void)revents;
	log_warning("cancel: peer %d did not take the request within %g s", cc->peer,
	            FORWARD_TIMEOUT);
	cancel_conn_done(loop, cc);
}

/* Hands the request (`key` with CANCEL_FORWARDED set) to peer `peer`. */
static void forward(struct worker *w, int peer, uint32_t pid, uint32_t key)
{
	const struct peer_entry *p = config_find_peer(w->snap->cfg, peer);
	if (!p) {
		log_debug("cancel request for unknown peer %d ignored", peer);
		return;
	}
	struct pool_target t = {.host = p->host, .port = p->port};
	char addr[128];
	int fd = server_open_socket(&t, addr, sizeof(addr));
	if (fd < 0) {
		log_warning("cancel request for peer %d: could not connect to %s: %s", peer, addr,
		            strerror(errno));
		return;
	}
	struct cancel_conn *cc = cancel_conn_start(w, fd, pid, key);
	cc->peer = peer;
	ev_timer_init(&cc->timer, forward_timeout_cb, FORWARD_TIMEOUT, 0);
	ev_timer_start(w->loop, &cc->timer);
	log_info("cancel request forwarded to peer %d (%s)", peer, addr);
}

void cancel_request(struct worker *w, uint32_t pid, uint32_t key)
{
	int me = w->cancel_peer_id;
	if (me > 0) {
		int peer = (int)((key >> CANCEL_PEER_SHIFT) & CANCEL_PEER_MASK);
		if (peer != me) {
			if (key & CANCEL_FORWARDED)
				log_debug("cancel request forwarded for peer %d dropped: we are "
				          "peer %d (check [peers])",
				          peer, me);
			else
				forward(w, peer, pid, key | CANCEL_FORWARDED);
			return;
		}
		key &= ~CANCEL_FORWARDED;
	}
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
