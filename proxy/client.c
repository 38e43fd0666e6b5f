#include <config.h>

#include "proxy/client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cidr.h"
#include "common/log.h"
#include "common/util.h"
#include "proxy/admin.h"
#include "proxy/cancel.h"
#include "proxy/client_auth.h"
#include "proxy/route.h"
#include "proxy/server.h"
#include "proxy/session.h"
#include "proxy/tls.h"
#include "proxy/txn.h"
#include "proxy/worker.h"

#define LOGIN_BUF_SIZE 512

static const char *const state_names[] = {
#define X_NAME(id, name) name,
        CLIENT_STATE_LIST(X_NAME)
#undef X_NAME
};

const char *client_state_name(enum client_state s)
{
	return (unsigned)s < CLIENT_STATE_COUNT ? state_names[s] : "?";
}

static void format_addr(char *out, size_t n, const struct sockaddr *sa, bool is_unix)
{
	if (is_unix) {
		strlcopy(out, "unix", n);
		return;
	}
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(out, n, "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(out, n, "[%s]:%d", host, port);
	} else {
		strlcopy(out, "?", n);
	}
}

void log_client(const struct client *c, int level, const char *fmt, ...)
{
	if (!log_enabled((enum log_level)level))
		return;
	char addr[96], prefix[320];
	format_addr(addr, sizeof(addr), &c->peer.sa, c->is_unix);
	snprintf(prefix, sizeof(prefix), "C-%llu %s %s/%s: ", (unsigned long long)c->id, addr,
	         c->dbname ? c->dbname : "-", c->user ? c->user : "-");
	va_list ap;
	va_start(ap, fmt);
	log_vmsg((enum log_level)level, prefix, fmt, ap);
	va_end(ap);
}

static bool transition_ok(enum client_state from, enum client_state to)
{
	if (to == CL_CLOSING)
		return from != CL_CLOSING;
	switch (from) {
	case CL_STARTUP:
	case CL_AUTH:
		return to == CL_AUTH || to == CL_IDLE || to == CL_WAITING;
	case CL_IDLE:
		return to == CL_WAITING;
	case CL_WAITING:
		return to == CL_ACTIVE || to == CL_IDLE;
	case CL_ACTIVE:
		return to == CL_WAITING || to == CL_IDLE;
	default:
		return false;
	}
}

void client_set_state(struct client *c, enum client_state state)
{
	if (c->state == state)
		return;
	if (!transition_ok(c->state, state)) {
		log_fatal("client state %s -> %s is not a legal transition",
		          client_state_name(c->state), client_state_name(state));
		abort();
	}
	list_del(&c->node);
	list_append(&c->w->clients[state], &c->node);
	c->state = state;
	c->state_since_usec = now_usec();
}

static void client_read_cb(struct ev_loop *loop, ev_io *io, int revents);
static void client_write_cb(struct ev_loop *loop, ev_io *io, int revents);
static void client_begin(struct client *c);

void client_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
                   bool is_unix)
{
	const struct snapshot *snap = w->snap;
	/* A trusted balancer's connections are checked once its PROXY header
	 * has said whose they are; anyone else's right away, before a byte
	 * is read. */
	bool via_proxy = !is_unix && cidr_list_match(&snap->trusted, sa);
	enum refusal why;
	if (!via_proxy && !client_address_admitted(snap, sa, is_unix, &why)) {
		char addr[96];
		format_addr(addr, sizeof(addr), sa, is_unix);
		w->stats.refused[why]++;
		log_warning("connection from %s refused at accept (%s): %s", addr,
		            refusal_name(why),
		            why == REFUSED_ALLOW ? "the address is not in allow"
		                                 : "no auth_hba_file rule admits the address");
		close(fd);
		return;
	}
	struct client *c = xcalloc(1, sizeof(*c));
	c->proxy_pending = via_proxy;
	c->w = w;
	c->id = ((uint64_t)w->id << 48) | ++w->next_client_id;
	c->is_unix = is_unix;
	if (!is_unix)
		memcpy(&c->peer, sa, MIN((size_t)salen, sizeof(c->peer)));
	c->state = CL_STARTUP;
	c->created_usec = c->state_since_usec = c->last_recv_usec = now_usec();
	list_init(&c->node);
	list_init(&c->waiter.node);
	list_append(&w->clients[CL_STARTUP], &c->node);
	w->n_clients++;
	w->stats.clients_accepted++;
	params_init(&c->params);
	params_init(&c->startup);
	conn_init(&c->conn, fd, client_read_cb, client_write_cb);
	/* Logging in takes a few hundred bytes; a relay buffer comes later. */
	if (!buf_borrow_size(&c->conn.in, &w->bufs, LOGIN_BUF_SIZE)) {
		client_close(c, "out of memory");
		return;
	}
	if (!is_unix) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (w->snap->cfg->tcp_keepalive)
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
	int n = atomic_fetch_add(&w->rt->n_clients, 1) + 1;
	c->counted = true;
	if (n > w->snap->cfg->max_client_conn)
		c->over_limit = true;
	log_client(c, LL_DEBUG, "accepted");
	conn_want_read(w->loop, &c->conn, true);
}

/* --- output --- */

/* Leave the wait queue, give the server back. */
static void client_detach(struct client *c)
{
	if (c->state == CL_WAITING && c->pool)
		pool_waiter_remove(c->pool, &c->waiter);
	if (c->server) {
		struct server *s = c->server;
		c->server = NULL;
		server_release(s);
	}
}

bool client_flush(struct client *c)
{
	enum io_result r = conn_write_pkt(&c->conn);
	if (r == IO_DONE && c->server && c->state == CL_ACTIVE) {
		uint64_t sent = 0;
		r = conn_write_buf(&c->conn, &c->server->conn.in, &sent);
		c->w->stats.bytes_out += sent;
		atomic_fetch_add_explicit(&c->pool->st.sent, sent, memory_order_relaxed);
	}
	if (r == IO_DONE) {
		conn_want_write(c->w->loop, &c->conn, false);
		if (c->state == CL_IDLE)
			pkt_free(&c->conn.out); /* an idle client holds no buffer */
		if (c->closing_after_flush) {
			client_close(c, NULL);
			return false;
		}
		return true;
	}
	if (r == IO_AGAIN) {
		conn_want_write(c->w->loop, &c->conn, true);
		return true;
	}
	client_close(c, r == IO_NOMEM ? "out of memory" : "write to client failed");
	return false;
}

void client_fatal(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_client(c, LL_WARNING, "%s (%s)", msg, sqlstate);
	proto_error(&c->conn.out, "FATAL", sqlstate, "%s", msg);
	c->closing_after_flush = true;
	conn_want_read(c->w->loop, &c->conn, false);
	client_detach(c);
	client_flush(c);
}

/* --- server acquisition --- */

/* ParameterStatus for every parameter a server reports (`reported`), the
 * client's own value where it set one, then its cancel key and
 * ReadyForQuery. */
static void client_welcome(struct client *c, const struct params *reported)
{
	for (size_t i = 0; i < reported->n; i++) {
		const char *mine = params_get(&c->params, reported->v[i].name);
		proto_param_status(&c->conn.out, reported->v[i].name,
		                   mine ? mine : reported->v[i].value);
	}
	proto_backend_key(&c->conn.out, c->cancel_pid, c->cancel_key);
	proto_ready(&c->conn.out, 'I');
	c->welcomed = true;
}

static void link_ready(struct client *c, struct server *s)
{
	server_set_state(s, SV_ACTIVE);
	client_set_state(c, CL_ACTIVE);
	if (s->mode != POOL_SESSION && !txn_trim_statements(s, c->w->snap->cfg)) {
		client_fatal(c, "53200", "out of memory");
		return;
	}
	if (!c->welcomed) {
		client_welcome(c, &s->params);
		log_client(c, LL_INFO, "login: server S-%llu (backend pid %u)",
		           (unsigned long long)s->id, s->backend_pid);
	}
	conn_want_read(c->w->loop, &s->conn, true);
	if (!client_flush(c))
		return;
	conn_want_read(c->w->loop, &c->conn, true);
	if (buf_unparsed(&c->conn.in) > 0)
		client_pump(c);
	else if (c->pool->mode != POOL_SESSION)
		client_server_idle(c); /* nothing to run: the first client of a pool */
}

static void setup_done(struct server *s, bool ok, const struct pg_error *err)
{
	struct client *c = s->client;
	if (!ok && c && strcmp(err->severity, "FATAL") == 0) {
		/* The server died while idle in the pool: not the client's fault. */
		server_close(s, "server connection lost before use");
		client_retry(c);
		return;
	}
	if (!ok) {
		/* A client asking for an invalid setting gets the server's error. */
		if (c)
			client_fatal(c, err->sqlstate[0] ? err->sqlstate : "22023", "%s",
			             err->message);
		else
			server_close(s, "setup failed");
		return;
	}
	if (!c) {
		/* The client left while its settings were applied. */
		server_release(s);
		return;
	}
	params_copy(&s->session, &c->params);
	link_ready(c, s);
}

void client_got_server(struct client *c, struct server *s)
{
	const struct config *cfg = c->w->snap->cfg;
	c->server = s;
	s->client = c;
	s->pending_ready = 0;
	s->unsynced = false;
	s->session_dirty = false;
	s->unit_hold = false;
	s->wrote = false;
	s->mode = c->pool->mode;
	s->copy_in = false;
	s->skip_to_sync = false;
	struct pkt sql;
	pkt_init(&sql);
	uint64_t now = now_usec();
	bool queued = c->queued;
	c->queued = false;
	if (c->state == CL_WAITING && queued) {
		uint64_t waited = usec_since(now, c->state_since_usec);
		atomic_fetch_add_explicit(&c->pool->st.wait_us, waited, memory_order_relaxed);
		atomic_fetch_add_explicit(&c->pool->st.waited, 1, memory_order_relaxed);
		pool_hist_add(c->pool->st.wait_hist, waited);
	}
	s->busy_since_usec = s->quiet_since_usec = s->xact_since_usec = now;
	/* A server idle for long is checked first; a dead one is replaced. */
	bool check = cfg->server_check_query[0] && s->state == SV_IDLE &&
	        usec_since(now, s->state_since_usec) >= cfg->server_check_delay * 1e6;
	if (check) {
		pkt_put_bytes(&sql, cfg->server_check_query, strlen(cfg->server_check_query));
		pkt_put_bytes(&sql, ";", 1);
	}
	if (!session_apply_sql(&c->params, &s->session, &s->params, &sql) && check)
		pkt_put_u8(&sql, 0);
	if (sql.failed) {
		pkt_free(&sql);
		client_fatal(c, "53200", "out of memory");
		return;
	}
	if (sql.len > 0)
		server_query(s, (const char *)sql.data, SV_SETUP, setup_done);
	else
		link_ready(c, s);
	pkt_free(&sql);
}

/* Where the request a waiting client sent ends (its messages up to a
 * Query, Sync or FunctionCall), or 0 if it has not fully arrived. */
static uint32_t request_end(const struct client *c)
{
	const struct buf *b = &c->conn.in;
	if (!c->welcomed || c->conn.frame.remaining > 0)
		return 0;
	uint32_t at = b->parsed;
	while (b->recvd - at >= 5) {
		uint8_t type = b->data[at];
		uint32_t len = get_u32(b->data + at + 1);
		if (len < 4 || b->recvd - at - 1 < len)
			return 0;
		at += 1 + len;
		if (type == 'Q' || type == 'S' || type == 'F')
			return at;
	}
	return 0;
}

/* Answer a waiting client's request (up to `end`) with an ERROR instead of
 * running it; the client stays, idle. */
static void refuse_request(struct client *c, uint32_t end, const char *sqlstate, const char *msg)
{
	struct buf *b = &c->conn.in;
	b->parsed = b->sent = end;
	buf_reset_if_drained(b);
	proto_error(&c->conn.out, "ERROR", sqlstate, "%s", msg);
	proto_ready(&c->conn.out, 'I');
	client_set_state(c, CL_IDLE);
	if (!client_flush(c))
		return;
	conn_want_read(c->w->loop, &c->conn, true);
	if (buf_unparsed(b) > 0)
		client_begin(c);
}

void client_cancel_wait(struct client *c)
{
	uint32_t end = request_end(c);
	if (!end) {
		log_client(c, LL_DEBUG, "cancel request: its request has not fully arrived");
		return;
	}
	if (!c->route_pending && pool_waiter_remove(c->pool, &c->waiter) != WAITER_QUEUED)
		return; /* a server is on its way: the query runs */
	c->route_pending = false;
	log_client(c, LL_INFO, "cancel request: the query left the queue for a server");
	refuse_request(c, end, "57014",
	               "canceling statement due to user request (it was waiting for a server "
	               "connection)");
}

/* Choose the host for what the client is about to run (each transaction;
 * once per session in session pooling), then ask its pool for a server. */
void client_route_acquire(struct client *c)
{
	/* PAUSE (admin console): new transactions wait for RESUME. */
	if (atomic_load(&c->pool->group->paused)) {
		c->route_pending = true;
		return;
	}
	if (c->routed && c->pool->mode == POOL_SESSION) {
		client_acquire(c, false);
		return;
	}
	char err[256];
	switch (route_client(c, err, sizeof(err))) {
	case ROUTE_OK:
		c->route_pending = false;
		c->routed = true;
		client_acquire(c, false);
		return;
	case ROUTE_LATER:
		c->route_pending = true;
		return;
	case ROUTE_NONE:
		break;
	}
	if (!c->welcomed || c->pool->mode == POOL_SESSION) {
		c->route_pending = false;
		client_fatal(c, "08006", "%s", err);
		return;
	}
	uint32_t end = request_end(c);
	if (!end) {
		c->route_pending = true; /* answered once it has all arrived */
		return;
	}
	c->route_pending = false;
	log_client(c, LL_WARNING, "%s", err);
	refuse_request(c, end, "08006", err);
}

void client_retry(struct client *c)
{
	c->server = NULL;
	if (c->state != CL_WAITING || c->closing_after_flush)
		return;
	client_acquire(c, false);
}

void client_acquire(struct client *c, bool allow_reserve)
{
	struct pool_member *m;
	int steal;
	enum pool_take r =
	        pool_take(c->pool, c->w->id, &c->waiter, allow_reserve, now_usec(), &m, &steal);
	switch (r) {
	case POOL_TAKE_IDLE:
		client_got_server(c, container_of(m, struct server, member));
		break;
	case POOL_TAKE_CONNECT:
		c->queued = true;
		server_open(c->w, c->pool);
		break;
	case POOL_TAKE_WAIT:
		c->queued = true;
		if (steal >= 0) {
			struct wmsg *msg = xcalloc(1, sizeof(*msg));
			msg->kind = WMSG_STEAL;
			msg->pool = c->pool;
			worker_post(&c->w->rt->workers[steal], msg);
		}
		break;
	case POOL_TAKE_FAIL:
		client_pool_failed(c);
		break;
	}
}

void client_pool_failed(struct client *c)
{
	char state[6], msg[256];
	pthread_mutex_lock(&c->pool->lock);
	strlcopy(state, c->pool->last_sqlstate[0] ? c->pool->last_sqlstate : "08006",
	         sizeof(state));
	strlcopy(msg, c->pool->last_error, sizeof(msg));
	pthread_mutex_unlock(&c->pool->lock);
	/* Between transactions the client stays: its request fails, once all
	 * of it has arrived (client_read_cb). */
	bool stays = c->pool->mode != POOL_SESSION && c->welcomed;
	uint32_t end = stays ? request_end(c) : 0;
	if (end) {
		log_client(c, LL_WARNING, "%s", msg);
		refuse_request(c, end, state, msg);
	} else if (stays) {
		c->route_pending = true;
	} else {
		client_fatal(c, state, "%s", msg);
	}
}

void client_login(struct client *c, const uint8_t *client_key, const uint8_t *server_key,
                  const char *secret)
{
	const struct config *cfg = c->w->snap->cfg;
	if (strcmp(c->dbname, ADMIN_DBNAME) == 0) {
		client_login_succeeded(c);
		if (!admin_allowed(c->w, c->user)) {
			c->w->stats.refused[REFUSED_AUTH]++;
			client_fatal(
			        c, "28000",
			        "user \"%s\" may not use the admin console (not in admin_users "
			        "or stats_users)",
			        c->user);
			return;
		}
		admin_login(c);
		return;
	}
	const struct db_entry *db = config_find_db(cfg, c->dbname);
	if (!db) {
		client_fatal(c, "3D000", "no such database: %s", c->dbname);
		return;
	}
	client_login_succeeded(c);
	proto_auth(&c->conn.out, AUTH_REQ_OK, NULL, 0);
	c->pool = pool_get(cfg, db, c->dbname, c->user);
	atomic_fetch_add(&c->pool->n_clients, 1);
	/* The pool has the same names (and lives as long as pgmoat). */
	free(c->user);
	free(c->dbname);
	c->user = c->pool->user;
	c->dbname = c->pool->name;
	c->names_shared = true;
	/* Every host's pool logs in to its server with them. */
	int n_members = atomic_load(&c->pool->n_members);
	for (int i = 0; i < n_members; i++) {
		struct pool *p = c->pool->members[i];
		if (client_key && server_key) {
			pthread_mutex_lock(&p->lock);
			memcpy(p->scram_client_key, client_key, SCRAM_KEY_LEN);
			memcpy(p->scram_server_key, server_key, SCRAM_KEY_LEN);
			p->have_scram_keys = true;
			pthread_mutex_unlock(&p->lock);
		}
		if (secret)
			pool_set_secret(p, secret);
	}
	cancel_register(c->w, c);
	c->waiter.client_id = c->id;
	size_t len = 0;
	char *welcome = NULL;
	for (int i = 0; !welcome && i < n_members; i++)
		welcome = pool_welcome(c->pool->members[i], &len);
	if (!welcome) {
		/* The pool's first client: welcomed with its server's parameters. */
		client_set_state(c, CL_WAITING);
		log_client(c, LL_DEBUG, "authenticated");
		if (client_flush(c))
			client_route_acquire(c);
		return;
	}
	struct params reported;
	params_init(&reported);
	for (size_t at = 0; at < len;) {
		const char *name = welcome + at;
		const char *value = name + strlen(name) + 1;
		params_set(&reported, name, value);
		at = (size_t)(value + strlen(value) + 1 - welcome);
	}
	free(welcome);
	client_welcome(c, &reported);
	params_free(&reported);
	client_set_state(c, CL_IDLE);
	log_client(c, LL_INFO, "login");
	if (!client_flush(c))
		return;
	struct buf *b = &c->conn.in;
	buf_reset_if_drained(b);
	if (buf_unparsed(b) > 0)
		client_begin(c);
	else if (b->data && buf_empty(b))
		buf_release(b, &c->w->bufs, false); /* an idle client holds no buffer */
}

/* An idle client sent something: it needs a server.  Its request may be
 * over before this returns (refused, or answered by pgmoat), and the next
 * one begun: worker_step keeps that from nesting. */
static void client_begin(struct client *c)
{
	if (c->admin) {
		admin_step(c);
		return;
	}
	worker_step(c->w, STEP_CLIENT_BEGIN, c);
}

void client_begin_step(struct client *c)
{
	const struct buf *b = &c->conn.in;
	if (c->conn.frame.remaining == 0 && buf_unparsed(b) > 0 && b->data[b->parsed] == 'X') {
		client_close(c, "client disconnected");
		return;
	}
	client_set_state(c, CL_WAITING);
	client_route_acquire(c);
}

/* --- relay client -> server --- */

/* Session pooling: only the header of each message is looked at; false if
 * the client was closed, *terminate at its Terminate. */
static bool session_messages(struct client *c, struct server *s, bool *terminate)
{
	struct buf *b = &c->conn.in;
	uint32_t max = (uint32_t)c->w->snap->cfg->max_packet_size;
	for (;;) {
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&c->conn.frame, b, max, &type, &len);
		if (fs == FRAME_MORE)
			return true;
		if (fs == FRAME_BAD) {
			client_fatal(c, "08P01",
			             "invalid message length %u from client (max_packet_size %u)",
			             len, max);
			return false;
		}
		if (type == 'X') {
			*terminate = true;
			return true;
		}
		switch (type) {
		case 'Q':
		case 'F':
			s->pending_ready++;
			break;
		case 'S':
			s->pending_ready++;
			s->unsynced = false;
			break;
		case 'P':
		case 'B':
		case 'E':
		case 'D':
		case 'C':
		case 'H':
			s->unsynced = true;
			break;
		}
		frame_pass(&c->conn.frame, b, len);
	}
}

void client_pump(struct client *c)
{
	struct server *s = c->server;
	struct buf *b = &c->conn.in;
	/* Terminate is not forwarded: the server stays for the next client.
	 * What came before it is flushed first. */
	bool terminate = false;
	bool was_quiet = server_quiet(s);
	uint32_t unparsed = buf_unparsed(b);
	if (s->mode == POOL_SESSION) {
		if (!session_messages(c, s, &terminate))
			return;
	} else {
		enum txn_c2s t = txn_client_messages(c, s);
		if (t == TXN_C2S_CLOSED)
			return;
		terminate = t == TXN_C2S_TERMINATE;
		/* Replies pgmoat gave itself. */
		if (pkt_unsent(&c->conn.out) > 0 && !client_flush(c))
			return;
	}
	if (was_quiet && !server_quiet(s)) {
		s->busy_since_usec = now_usec();
		if (s->ready_status == 'I')
			s->xact_since_usec = s->busy_since_usec;
	}
	/* pgmoat's own messages in the stream go first, then the client's. */
	enum io_result r = conn_write_pkt(&s->conn);
	uint64_t sent = 0;
	if (r == IO_DONE)
		r = conn_write_buf(&s->conn, b, &sent);
	c->w->stats.bytes_in += sent;
	atomic_fetch_add_explicit(&c->pool->st.recv, sent, memory_order_relaxed);
	if (r == IO_AGAIN) {
		/* The server is slow: stop reading the client until it drains. */
		conn_want_read(c->w->loop, &c->conn, false);
		conn_want_write(c->w->loop, &s->conn, true);
		return;
	}
	if (r != IO_DONE) {
		server_close(s, "write to server failed");
		client_server_lost(c, "write to server failed");
		return;
	}
	conn_want_write(c->w->loop, &s->conn, false);
	if (terminate) {
		client_close(c, "client disconnected");
		return;
	}
	buf_reset_if_drained(b);
	if (b->data && buf_empty(b))
		buf_release(b, &c->w->bufs, false);
	conn_want_read(c->w->loop, &c->conn, true);
	/* Messages that get no reply (CopyData after a failed COPY, which the
	 * server drops) leave the transaction over.  Only a message that moved
	 * does: the start of one that has not all arrived keeps the server
	 * until the rest comes (giving the server back would begin the same
	 * request again at once, without end). */
	bool moved = sent > 0 || buf_unparsed(b) < unparsed;
	if (s->mode != POOL_SESSION && s->ready_status == 'I' && server_quiet(s) && moved)
		client_server_idle(c);
}

void client_server_lost(struct client *c, const char *why)
{
	c->server = NULL;
	if (c->state == CL_CLOSING)
		return;
	client_fatal(c, "08006", "server connection lost: %s", why);
}

/* The transaction is over: the server goes back to the pool. */
static void client_release(struct client *c)
{
	struct server *s = c->server;
	c->server = NULL;
	client_set_state(c, CL_IDLE);
	if (pkt_unsent(&c->conn.out) == 0)
		pkt_free(&c->conn.out);
	server_release(s);
	if (c->state == CL_IDLE && buf_unparsed(&c->conn.in) > 0)
		client_begin(c);
}

static void capture_done(struct server *s, bool ok, const struct pg_error *err)
{
	struct client *c = s->client;
	if (!ok) {
		if (c)
			log_client(c, LL_WARNING,
			           "could not read the session's settings back (%s): they are not "
			           "carried to the next transaction",
			           err->message);
		server_close(s, "reading session settings failed");
		if (c && c->state == CL_ACTIVE) {
			c->server = NULL;
			client_set_state(c, CL_IDLE);
			if (buf_unparsed(&c->conn.in) > 0)
				client_begin(c);
		}
		return;
	}
	if (!c) {
		server_release(s);
		return;
	}
	/* What it RESET goes back to its startup value, as on a direct
	 * connection (applied on its next server). */
	params_copy(&c->params, &s->session);
	for (size_t i = 0; i < c->startup.n; i++)
		if (!params_get(&c->params, c->startup.v[i].name))
			params_set(&c->params, c->startup.v[i].name, c->startup.v[i].value);
	client_release(c);
}

/* The primary's WAL position after the client's write: its next reads go
 * only to replicas that have replayed that far. */
static void lsn_done(struct server *s, bool ok, const struct pg_error *err)
{
	struct client *c = s->client;
	const char *v = ok ? params_get(&s->rows, "lsn") : NULL;
	if (!v) {
		if (c)
			log_client(c, LL_WARNING,
			           "could not read the primary's WAL position (%s): the client's "
			           "reads go to the primary",
			           ok ? "no row" : err->message);
		if (c)
			c->ryw_lsn = UINT64_MAX;
		server_close(s, "reading the WAL position failed");
		if (c && c->state == CL_ACTIVE) {
			c->server = NULL;
			client_set_state(c, CL_IDLE);
			if (buf_unparsed(&c->conn.in) > 0)
				client_begin(c);
		}
		return;
	}
	uint64_t lsn = strtoull(v, NULL, 10);
	params_free(&s->rows);
	if (!c) {
		server_release(s);
		return;
	}
	if (lsn > c->ryw_lsn || c->ryw_lsn == UINT64_MAX)
		c->ryw_lsn = lsn;
	server_set_state(s, SV_ACTIVE);
	client_server_idle(c);
}

void client_server_idle(struct client *c)
{
	if (atomic_load(&c->w->rt->shutdown) == SHUTDOWN_GRACEFUL) {
		client_fatal(c, "57P01", "pgmoat is shutting down");
		return;
	}
	struct server *s = c->server;
	if (c->pool->mode == POOL_SESSION || !s || s->state != SV_ACTIVE)
		return;
	/* Not while anything the client sent is unanswered or unsent. */
	if (s->unsynced || !server_quiet(s) || c->conn.frame.remaining > 0 ||
	    buf_unsent(&c->conn.in) > 0)
		return;
	if (s->wrote && c->on_primary && c->w->snap->cfg->read_your_writes &&
	    c->w->snap->cfg->read_routing == READ_ROUTING_AUTO) {
		/* Read-your-writes: where the primary's WAL is now.  The insert
		 * position, not pg_current_wal_lsn(): with synchronous_commit
		 * off the commit record may not be written out yet, and a
		 * replica at the write position would not have it. */
		s->wrote = false;
		server_query_rows(
		        s, "SELECT 'lsn', (pg_catalog.pg_current_wal_insert_lsn() - '0/0')::text",
		        SV_SETUP, &s->rows, lsn_done);
		return;
	}
	if (s->session_dirty) {
		/* The transaction may have changed session settings: read them
		 * back, to carry them to the client's next server. */
		s->session_dirty = false;
		server_query_rows(s, session_capture_sql, SV_SETUP, &s->session, capture_done);
		return;
	}
	client_release(c);
}

/* --- callbacks --- */

static void client_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct client *c = container_of(io, struct client, conn.rio);
	(void)loop;
	(void)revents;
	if (c->tls_handshake) {
		client_tls_step(c);
		return;
	}
	enum io_result r = conn_read(&c->conn, &c->w->bufs);
	if (r == IO_AGAIN) {
		if (buf_room(&c->conn.in) == 0 &&
		    (c->state != CL_ACTIVE || c->server->state != SV_ACTIVE))
			conn_want_read(c->w->loop, &c->conn, false);
		return;
	}
	c->last_recv_usec = now_usec();
	if (r != IO_DONE) {
		client_close(c,
		             r == IO_EOF             ? "client closed the connection"
		                     : r == IO_NOMEM ? "out of memory"
		                                     : strerror(errno));
		return;
	}
	switch (c->state) {
	case CL_STARTUP:
		client_startup_step(c);
		break;
	case CL_AUTH:
		client_auth_step(c);
		break;
	case CL_IDLE:
		client_begin(c);
		break;
	case CL_WAITING:
		/* Kept until a server is there; a full buffer stops reading.  A
		 * request to be refused is, once it is all there. */
		if (c->route_pending && request_end(c))
			client_route_acquire(c);
		break;
	case CL_ACTIVE:
		/* Not while pgmoat runs a query of its own on the server. */
		if (c->server->state == SV_ACTIVE)
			client_pump(c);
		break;
	default:
		break;
	}
}

static void client_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct client *c = container_of(io, struct client, conn.wio);
	(void)loop;
	(void)revents;
	if (c->tls_handshake) {
		client_tls_step(c);
		return;
	}
	if (!client_flush(c))
		return;
	if (c->server && c->state == CL_ACTIVE && c->server->state == SV_ACTIVE &&
	    buf_unsent(&c->server->conn.in) == 0)
		server_pump(c->server);
}

void client_close(struct client *c, const char *why)
{
	if (c->state == CL_CLOSING)
		return;
	struct worker *w = c->w;
	if (why)
		log_client(c, c->welcomed ? LL_INFO : LL_DEBUG, "closing: %s", why);
	client_detach(c);
	if (c->pool && c->names_shared)
		atomic_fetch_sub(&c->pool->group->n_clients, 1);
	if (c->cancel_pid)
		cancel_unregister(w, c);
	client_auth_clear(c);
	ps_client_clear(&c->ps, w->ps);
	if (c->counted) {
		atomic_fetch_sub(&w->rt->n_clients, 1);
		c->counted = false;
	}
	client_set_state(c, CL_CLOSING);
	conn_close(w->loop, &c->conn, &w->bufs);
	worker_defer_free_client(w, c);
}

void client_free(struct client *c)
{
	if (!c->names_shared) {
		free(c->user);
		free(c->dbname);
	}
	params_free(&c->params);
	params_free(&c->startup);
	free(c->admin_arg);
	free(c);
}
