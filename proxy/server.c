#include <config.h>

#include "proxy/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/cancel.h"
#include "proxy/client.h"
#include "proxy/server_login.h"
#include "proxy/session.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

#define DEFAULT_SOCKET_DIR "/var/run/postgresql"

static const char *const state_names[] = {
#define X_NAME(id, name) name,
        SERVER_STATE_LIST(X_NAME)
#undef X_NAME
};

const char *server_state_name(enum server_state s)
{
	return (unsigned)s < SERVER_STATE_COUNT ? state_names[s] : "?";
}

void log_server(const struct server *s, enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char prefix[256];
	snprintf(prefix, sizeof(prefix), "S-%llu %s %s/%s: ", (unsigned long long)s->id, s->addr,
	         s->target.dbname ? s->target.dbname : "?", s->target.user ? s->target.user : "?");
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, prefix, fmt, ap);
	va_end(ap);
}

/* Legal transitions; server_set_state asserts them. */
static bool transition_ok(enum server_state from, enum server_state to)
{
	if (to == SV_CLOSING)
		return from != SV_CLOSING;
	switch (from) {
	case SV_CONNECTING:
		return to == SV_LOGIN;
	case SV_LOGIN:
		return to == SV_IDLE || to == SV_SETUP || to == SV_ACTIVE;
	case SV_IDLE:
		return to == SV_SETUP || to == SV_ACTIVE;
	case SV_SETUP:
		return to == SV_ACTIVE || to == SV_IDLE || to == SV_RESET;
	case SV_ACTIVE:
		return to == SV_RESET || to == SV_IDLE || to == SV_SETUP;
	case SV_RESET:
		return to == SV_IDLE || to == SV_SETUP || to == SV_ACTIVE;
	default:
		return false;
	}
}

void server_set_state(struct server *s, enum server_state state)
{
	if (s->state == state)
		return;
	if (!transition_ok(s->state, state)) {
		log_fatal("server state %s -> %s is not a legal transition",
		          server_state_name(s->state), server_state_name(state));
		abort();
	}
	list_del(&s->node);
	list_append(&s->w->servers[state], &s->node);
	s->state = state;
	s->state_since_usec = now_usec();
}

static void server_read_cb(struct ev_loop *loop, ev_io *io, int revents);
static void server_write_cb(struct ev_loop *loop, ev_io *io, int revents);

/* The connection broke outside the relay: a client that was waiting for it
 * to be set up waits for another; a linked client is told. */
static void server_lost(struct server *s, const char *why)
{
	struct client *c = s->client;
	bool setup = s->state == SV_SETUP;
	server_close(s, why);
	if (!c)
		return;
	if (setup && c->state == CL_WAITING)
		client_retry(c);
	else
		client_server_lost(c, why);
}

bool server_flush_own(struct server *s)
{
	enum io_result r = conn_write_pkt(&s->conn);
	if (r == IO_DONE)
		return true;
	if (r == IO_AGAIN) {
		conn_want_write(s->w->loop, &s->conn, true);
		return true;
	}
	server_lost(s, r == IO_NOMEM ? "out of memory" : "write to server failed");
	return false;
}

/* --- connect --- */

int server_open_socket(const struct pool_target *t, char *addr, size_t addr_len)
{
	const char *host = t->host && *t->host ? t->host : DEFAULT_SOCKET_DIR;
	int fd = -1;
	if (host[0] == '/') {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", host,
		                 t->port);
		snprintf(addr, addr_len, "unix:%s", sun.sun_path);
		if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
			errno = ENAMETOOLONG;
			return -1;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 && errno != EINPROGRESS &&
		    errno != EAGAIN) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		return fd;
	}
	char port[16];
	snprintf(port, sizeof(port), "%d", t->port);
	snprintf(addr, addr_len, "%s:%d", host, t->port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc == EAI_NONAME) {
		/* A host name: resolved here, in the worker (blocking). */
		hints.ai_flags = AI_ADDRCONFIG;
		rc = getaddrinfo(host, port, &hints, &ai);
	}
	if (rc != 0) {
		errno = EHOSTUNREACH;
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			int e = errno;
			close(fd);
			fd = -1;
			errno = e;
		}
	}
	freeaddrinfo(ai);
	return fd;
}

void server_open(struct worker *w, struct pool *pool)
{
	struct server *s = xcalloc(1, sizeof(*s));
	static atomic_uint_fast64_t next_id = 1;
	s->id = atomic_fetch_add(&next_id, 1);
	s->w = w;
	s->pool = pool;
	s->state = SV_CONNECTING;
	list_init(&s->node);
	list_init(&s->member.node);
	list_append(&w->servers[SV_CONNECTING], &s->node);
	w->n_servers++;
	w->stats.servers_opened++;
	params_init(&s->params);
	s->created_usec = s->state_since_usec = now_usec();
	s->ready_status = 'I';
	ps_server_init(&s->ps, (uint32_t)MAX(1, w->snap->cfg->max_prepared_statements));
	pool_target_copy(pool, &s->target, &s->target_gen);
	conn_init(&s->conn, -1, server_read_cb, server_write_cb);

	int fd = server_open_socket(&s->target, s->addr, sizeof(s->addr));
	if (fd < 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), "could not connect to %s: %s", s->addr, strerror(errno));
		server_login_failed(s, "08006", msg);
		return;
	}
	conn_init(&s->conn, fd, server_read_cb, server_write_cb);
	log_server(s, LL_DEBUG, "connecting");
	conn_want_write(w->loop, &s->conn, true);
}

void server_update_param(struct server *s, const uint8_t *body, uint32_t len)
{
	const char *name, *value;
	if (proto_parse_param_status(body, len, &name, &value))
		params_set(&s->params, name, value);
}

/* --- internal queries (setup, reset) --- */

void server_query(struct server *s, const char *sql, enum server_state state, server_query_cb cb)
{
	server_set_state(s, state);
	s->query_cb = cb;
	s->query_failed = false;
	memset(&s->query_error, 0, sizeof(s->query_error));
	log_server(s, LL_TRACE, "internal query: %s", sql);
	proto_query(&s->conn.out, sql);
	server_flush_own(s);
}

void server_query_rows(struct server *s, const char *sql, enum server_state state,
                       struct params *rows, server_query_cb cb)
{
	params_free(rows);
	server_query(s, sql, state, cb);
	s->query_rows = rows;
}

bool server_quiet(const struct server *s)
{
	return s->mode == POOL_SESSION ? s->pending_ready == 0 : rq_empty(&s->rq);
}

/* A DataRow of two text columns. */
static void query_row(struct server *s, const uint8_t *body, uint32_t len)
{
	const uint8_t *col[2];
	uint32_t n[2];
	if (!s->query_rows || !proto_parse_row2(body, len, col, n))
		return;
	char *name = xstrndup((const char *)col[0], n[0]);
	char *value = xstrndup((const char *)col[1], n[1]);
	params_set(s->query_rows, name, value);
	free(name);
	free(value);
}

static void query_finish(struct server *s, bool ok)
{
	server_query_cb cb = s->query_cb;
	s->query_cb = NULL;
	s->query_rows = NULL;
	if (cb)
		cb(s, ok, &s->query_error);
}

static bool query_step(struct server *s)
{
	struct buf *b = &s->conn.in;
	for (;;) {
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&s->conn.frame, b, b->cap, &type, &len);
		if (fs == FRAME_BAD) {
			server_close(s, "invalid message length from server");
			return false;
		}
		if (fs == FRAME_MORE)
			return true;
		if (!frame_whole(b, len)) {
			if (!frame_fits(b, len)) {
				server_close(s, "reply to an internal query too long");
				return false;
			}
			return true;
		}
		const uint8_t *body = frame_body(b);
		uint32_t blen = len - 4;
		switch (type) {
		case 'S':
			server_update_param(s, body, blen);
			/* A client's settings applied: it is told, as after its own SET. */
			if (s->state == SV_SETUP && s->client && s->client->welcomed)
				pkt_append(&s->client->conn.out, b->data + b->parsed, 1 + len);
			break;
		case 'E':
			s->query_failed = true;
			if (!proto_parse_error(body, blen, &s->query_error))
				strlcopy(s->query_error.message, "malformed error",
				         sizeof(s->query_error.message));
			if (strcmp(s->query_error.severity, "FATAL") == 0 ||
			    strcmp(s->query_error.severity, "PANIC") == 0) {
				query_finish(s, false);
				return false;
			}
			break;
		case 'Z':
			if (blen != 1) {
				server_close(s, "malformed ReadyForQuery from server");
				return false;
			}
			s->ready_status = (char)body[0];
			frame_skip(b, len);
			buf_reset_if_drained(b);
			query_finish(s, !s->query_failed);
			return false;
		case 'D':
			query_row(s, body, blen);
			break;
		case 'C':
		case 'N':
		case 'T':
		case 'I':
			break;
		default:
			s->query_failed = true;
			snprintf(s->query_error.message, sizeof(s->query_error.message),
			         "unexpected message '%c' from server",
			         type >= 32 && type < 127 ? type : '?');
			query_finish(s, false);
			return false;
		}
		frame_skip(b, len);
	}
}

/* --- idle --- */

static bool idle_step(struct server *s)
{
	struct buf *b = &s->conn.in;
	for (;;) {
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&s->conn.frame, b, b->cap, &type, &len);
		if (fs == FRAME_MORE)
			return true;
		if (fs == FRAME_BAD || !frame_fits(b, len)) {
			server_close(s, "unexpected data from idle server");
			return false;
		}
		if (!frame_whole(b, len))
			return true;
		if (type == 'S') {
			server_update_param(s, frame_body(b), len - 4);
		} else if (type == 'E') {
			struct pg_error e;
			bool ok = proto_parse_error(frame_body(b), len - 4, &e);
			char why[300];
			snprintf(why, sizeof(why), "idle server sent an error: %s",
			         ok ? e.message : "(malformed)");
			server_close(s, why);
			return false;
		} else if (type != 'N') {
			server_close(s, "unexpected message from idle server");
			return false;
		}
		frame_skip(b, len);
	}
}

/* --- relay server -> client --- */

/* The linked server is gone or unusable: the client still gets the whole
 * messages that arrived before, then an error; a client cut off in the
 * middle of a message can only be closed. */
void server_end_client(struct server *s, const char *sqlstate, const char *msg, const char *why)
{
	struct client *c = s->client;
	struct buf *b = &s->conn.in;
	bool mid_message = s->conn.frame.remaining > 0;
	if (c && !mid_message && buf_unsent(b) > 0)
		pkt_append(&c->conn.out, b->data + b->sent, buf_unsent(b));
	server_close(s, why);
	if (!c)
		return;
	if (mid_message)
		client_close(c, "server connection lost in the middle of a message");
	else
		client_fatal(c, sqlstate, "%s", msg);
}

void server_fail_client(struct server *s, const char *sqlstate, const char *why)
{
	char msg[300];
	snprintf(msg, sizeof(msg), "server connection lost: %s", why);
	server_end_client(s, sqlstate, msg, why);
}

/* Parse what the server sent as far as possible; returns false if the server
 * or client was closed. */
void server_ready_seen(struct server *s, char status)
{
	struct pool *p = s->pool;
	if (p) {
		uint64_t now = now_usec();
		uint64_t q = usec_since(now, s->busy_since_usec);
		atomic_fetch_add_explicit(&p->st.queries, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&p->st.query_us, q, memory_order_relaxed);
		pool_hist_add(p->st.query_hist, q);
		if (status == 'I') {
			uint64_t x = usec_since(now, s->xact_since_usec);
			atomic_fetch_add_explicit(&p->st.xacts, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&p->st.xact_us, x, memory_order_relaxed);
			pool_hist_add(p->st.xact_hist, x);
		}
	}
	s->ready_status = status;
}

static bool parse_s2c(struct server *s)
{
	if (s->mode != POOL_SESSION)
		return txn_server_messages(s);
	struct buf *b = &s->conn.in;
	for (;;) {
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&s->conn.frame, b, UINT32_MAX >> 1, &type, &len);
		if (fs == FRAME_MORE)
			return true;
		if (fs == FRAME_BAD) {
			server_fail_client(s, "08P01",
			                   "server sent a message with an invalid length");
			return false;
		}
		if (type == 'Z' && len != 5) {
			server_fail_client(s, "08P01", "server sent a malformed ReadyForQuery");
			return false;
		}
		/* Session pooling looks at ReadyForQuery and ParameterStatus only. */
		if (type == 'Z' || type == 'S') {
			if (!frame_whole(b, len)) {
				if (frame_fits(b, len))
					return true; /* wait for the rest */
				/* A ParameterStatus too long to look at is passed on. */
			} else if (type == 'Z') {
				server_ready_seen(s, (char)frame_body(b)[0]);
				if (s->pending_ready > 0)
					s->pending_ready--;
			} else {
				server_update_param(s, frame_body(b), len - 4);
			}
		}
		frame_pass(&s->conn.frame, b, len);
	}
}

void server_pump(struct server *s)
{
	struct client *c = s->client;
	bool was_quiet = server_quiet(s);
	if (!parse_s2c(s))
		return;
	if (!was_quiet && server_quiet(s))
		s->quiet_since_usec = now_usec();
	if (!client_flush(c))
		return;
	struct buf *b = &s->conn.in;
	if (buf_unsent(b) > 0 || pkt_unsent(&c->conn.out) > 0) {
		/* The client is slow: stop reading the server until it drains. */
		conn_want_read(s->w->loop, &s->conn, false);
		return;
	}
	buf_reset_if_drained(b);
	if (b->data && buf_empty(b))
		buf_release(b, &s->w->bufs, false);
	conn_want_read(s->w->loop, &s->conn, true);
	if (s->ready_status == 'I' && server_quiet(s)) {
		client_server_idle(c);
	} else if (s->unit_hold && server_quiet(s)) {
		/* A replica's read-only transaction goes on: its next request. */
		s->unit_hold = false;
		client_pump(c);
	}
}

/* --- callbacks --- */

static void server_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct server *s = container_of(io, struct server, conn.rio);
	(void)loop;
	(void)revents;
	if (s->tls_step == SV_TLS_HANDSHAKE) {
		server_tls_step(s);
		return;
	}
	enum io_result r = conn_read(&s->conn, &s->w->bufs);
	if (r == IO_AGAIN) {
		if (buf_room(&s->conn.in) == 0 && s->state != SV_ACTIVE) {
			server_close(s, "server sent too much");
		}
		return;
	}
	if (r != IO_DONE) {
		const char *why = r == IO_EOF ? "server closed the connection"
		        : r == IO_NOMEM       ? "out of memory"
		                              : strerror(errno);
		if (s->state == SV_LOGIN || s->state == SV_CONNECTING) {
			char msg[160];
			snprintf(msg, sizeof(msg), "connection lost during login: %s", why);
			server_login_failed(s, "08006", msg);
			return;
		}
		if (s->client && s->state == SV_ACTIVE) {
			if (parse_s2c(s))
				server_fail_client(s, "08006", why);
			return;
		}
		server_lost(s, why);
		return;
	}
	switch (s->state) {
	case SV_CONNECTING:
		server_tls_answer(s);
		break;
	case SV_LOGIN:
		server_login_step(s);
		break;
	case SV_IDLE:
		idle_step(s);
		break;
	case SV_SETUP:
	case SV_RESET:
		query_step(s);
		break;
	case SV_ACTIVE:
		server_pump(s);
		break;
	default:
		server_close(s, "unexpected data");
		break;
	}
}

static void server_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct server *s = container_of(io, struct server, conn.wio);
	(void)revents;
	if (s->tls_step == SV_TLS_HANDSHAKE) {
		server_tls_step(s);
		return;
	}
	if (s->state == SV_CONNECTING && s->tls_step == SV_TLS_NONE) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(s->conn.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		conn_want_write(loop, &s->conn, false);
		if (err) {
			char msg[200];
			snprintf(msg, sizeof(msg), "could not connect to %s: %s", s->addr,
			         strerror(err));
			server_login_failed(s, "08006", msg);
			return;
		}
		if (s->tls_step == SV_TLS_NONE) {
			server_connected(s);
			return;
		}
	}
	enum io_result r = conn_write_pkt(&s->conn);
	if (r == IO_AGAIN)
		return;
	if (r != IO_DONE) {
		server_lost(s, "write to server failed");
		return;
	}
	if (s->state == SV_ACTIVE && s->client) {
		/* The client's bytes wait in the client's buffer. */
		client_pump(s->client);
		return;
	}
	conn_want_write(loop, &s->conn, false);
}

/* --- hand-off, release, close --- */

void server_offer(struct server *s)
{
	worker_step(s->w, STEP_SERVER_OFFER, s);
}

void server_offer_step(struct server *s)
{
	struct worker *w = s->w;
	if (s->cancel) {
		/* A cancel for its last client's query is still on its way. */
		s->offer_after_cancel = true;
		if (s->state != SV_IDLE)
			server_set_state(s, SV_IDLE);
		return;
	}
	struct pool_give g = pool_give(s->pool, w->id, &s->member, now_usec());
	switch (g.kind) {
	case POOL_GIVE_LOCAL: {
		struct client *c = container_of(g.waiter, struct client, waiter);
		client_got_server(c, s);
		break;
	}
	case POOL_GIVE_REMOTE: {
		server_detach(s);
		struct wmsg *m = xcalloc(1, sizeof(*m));
		m->kind = WMSG_HANDOFF;
		m->pool = s->pool;
		m->server = s;
		m->client_id = g.client_id;
		worker_post(&w->rt->workers[g.worker], m);
		break;
	}
	case POOL_GIVE_IDLE:
		if (s->state != SV_IDLE)
			server_set_state(s, SV_IDLE);
		/* Watch for the server closing while idle. */
		conn_want_read(w->loop, &s->conn, true);
		if (w->rt->shutdown != SHUTDOWN_NONE && w->n_clients == 0)
			server_close(s, "shutting down");
		break;
	}
}

static void capture_done(struct server *s, bool ok, const struct pg_error *err)
{
	if (!ok) {
		char why[300];
		snprintf(why, sizeof(why), "reading session settings failed: %s", err->message);
		server_close(s, why);
		return;
	}
	server_offer(s);
}

/* Then the session state the reset left is read back. */
static void reset_done(struct server *s, bool ok, const struct pg_error *err)
{
	if (!ok) {
		char why[300];
		snprintf(why, sizeof(why), "reset query failed: %s", err->message);
		server_close(s, why);
		return;
	}
	server_query_rows(s, session_capture_sql, SV_RESET, &s->session, capture_done);
}

void server_release(struct server *s)
{
	const struct config *cfg = s->w->snap->cfg;
	s->client = NULL;
	if (s->query_cb) {
		/* An internal query is running: its callback releases the server. */
		return;
	}
	conn_want_write(s->w->loop, &s->conn, false);
	uint64_t now = now_usec();
	/* After an error in an extended-protocol sequence the server ignores
	 * everything up to a Sync, the reset query included: such a server,
	 * like one inside a transaction or a query, is not reused. */
	if (!server_quiet(s) || s->ready_status != 'I' || s->unsynced ||
	    buf_pending(&s->conn.in) > 0 || s->conn.frame.remaining > 0) {
		server_close(s, "client left in the middle of a query or transaction");
		return;
	}
	if (s->target_gen != s->pool->target_gen) {
		server_close(s, "database settings changed");
		return;
	}
	if (s->close_on_release) {
		server_close(s, "a client deallocated prepared statements on it");
		return;
	}
	if (cfg->server_lifetime > 0 &&
	    usec_since(now, s->created_usec) > cfg->server_lifetime * 1e6) {
		server_close(s, "server_lifetime reached");
		return;
	}
	buf_release(&s->conn.in, &s->w->bufs, false);
	const char *reset = cfg->server_reset_query;
	if (reset && *reset && (s->pool->mode == POOL_SESSION || cfg->server_reset_query_always)) {
		ps_server_clear(&s->ps); /* a reset may deallocate them */
		server_query(s, reset, SV_RESET, reset_done);
		return;
	}
	if (s->state != SV_IDLE)
		server_set_state(s, SV_IDLE);
	server_offer(s);
}

void server_detach(struct server *s)
{
	struct worker *w = s->w;
	conn_want_read(w->loop, &s->conn, false);
	conn_want_write(w->loop, &s->conn, false);
	buf_release(&s->conn.in, &w->bufs, true);
	list_del(&s->node);
	w->n_servers--;
	s->w = NULL;
}

void server_attach(struct worker *w, struct server *s)
{
	s->w = w;
	tls_set_loop(&s->conn, w->loop);
	list_append(&w->servers[s->state], &s->node);
	w->n_servers++;
	conn_want_read(w->loop, &s->conn, true);
}

void server_close(struct server *s, const char *why)
{
	if (s->state == SV_CLOSING)
		return;
	struct worker *w = s->w;
	log_server(s, s->state == SV_IDLE || s->state == SV_RESET ? LL_DEBUG : LL_INFO,
	           "closing server connection: %s", why);
	if (s->conn.fd >= 0 && (s->state == SV_IDLE || s->state == SV_RESET)) {
		/* Say goodbye to the backend; best effort. */
		pkt_reset(&s->conn.out);
		proto_terminate(&s->conn.out);
		(void)conn_write_pkt(&s->conn);
	}
	if (s->client) {
		s->client->server = NULL;
		s->client = NULL;
	}
	cancel_forget(s);
	rq_free(&s->rq, w->ps);
	server_set_state(s, SV_CLOSING);
	conn_close(w->loop, &s->conn, &w->bufs);
	if (s->pool) {
		int k = pool_server_closed(s->pool, &s->member, s->target_gen);
		if (k >= 0) {
			struct wmsg *m = xcalloc(1, sizeof(*m));
			m->kind = WMSG_KICK;
			m->pool = s->pool;
			worker_post(&w->rt->workers[k], m);
		}
		s->pool = NULL;
	}
	worker_defer_free_server(w, s);
}

void server_free(struct server *s)
{
	params_free(&s->params);
	params_free(&s->session);
	params_free(&s->rows);
	rq_free(&s->rq, NULL);
	ps_server_free(&s->ps);
	pool_target_free(&s->target);
	if (s->scram_started)
		scram_client_clear(&s->scram);
	pkt_free(&s->conn.out);
	free(s);
}

/* --- timers --- */

void server_sweep(struct worker *w, uint64_t now)
{
	const struct config *cfg = w->snap->cfg;
	struct list *pos, *tmp;
	uint64_t connect_timeout = (uint64_t)(cfg->server_connect_timeout * 1e6);
	for (int st = SV_CONNECTING; st <= SV_LOGIN; st++) {
		list_for_each_safe(pos, tmp, &w->servers[st])
		{
			struct server *s = container_of(pos, struct server, node);
			if (connect_timeout && usec_since(now, s->created_usec) > connect_timeout)
				server_login_failed(s, "08006", "server_connect_timeout reached");
		}
	}
	/* An internal query (settings for a client, the reset query) that gets
	 * no answer within server_connect_timeout: the server is not used. */
	static const enum server_state querying[] = {SV_SETUP, SV_RESET};
	for (size_t i = 0; i < ARRAY_SIZE(querying); i++) {
		list_for_each_safe(pos, tmp, &w->servers[querying[i]])
		{
			struct server *s = container_of(pos, struct server, node);
			if (!s->query_cb || !connect_timeout ||
			    usec_since(now, s->state_since_usec) <= connect_timeout)
				continue;
			struct client *c = s->client;
			bool check = s->state == SV_SETUP && c && c->state == CL_WAITING;
			server_close(s, "no answer to an internal query");
			if (check)
				client_retry(c); /* another server will do */
			else if (c)
				client_fatal(c, "08006", "server did not answer in time");
		}
	}
	uint64_t idle_timeout = (uint64_t)(cfg->server_idle_timeout * 1e6);
	uint64_t lifetime = (uint64_t)(cfg->server_lifetime * 1e6);
	bool stopping = atomic_load(&w->rt->shutdown) != SHUTDOWN_NONE;
	list_for_each_safe(pos, tmp, &w->servers[SV_IDLE])
	{
		struct server *s = container_of(pos, struct server, node);
		if (s->offer_after_cancel && connect_timeout &&
		    usec_since(now, s->state_since_usec) > connect_timeout) {
			server_close(s, "cancel request not delivered in time");
			continue;
		}
		if (!s->member.idle)
			continue;
		struct pool *p = s->pool;
		const char *why = NULL;
		if (stopping && w->n_clients == 0)
			why = "shutting down";
		else if (s->target_gen != p->target_gen || p->gone)
			why = "database settings changed";
		else if (lifetime && usec_since(now, s->created_usec) > lifetime)
			why = "server_lifetime reached";
		else if (p->n_servers > p->pool_size + p->reserve_pool)
			why = "pool is over its size";
		else if (idle_timeout && usec_since(now, s->state_since_usec) > idle_timeout &&
		         p->n_servers > p->min_pool_size)
			why = "server_idle_timeout reached";
		if (why)
			server_close(s, why);
	}
}
