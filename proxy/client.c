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

#include "common/log.h"
#include "common/util.h"
#include "proxy/cancel.h"
#include "proxy/client_auth.h"
#include "proxy/server.h"
#include "proxy/worker.h"

/* Startup parameters a client may set; they are applied on whichever server
 * it gets (SET), and reported back as the server reports them. */
static const char *const tracked_params[] = {
        "client_encoding",
        "DateStyle",
        "TimeZone",
        "IntervalStyle",
        "standard_conforming_strings",
        "application_name",
        "extra_float_digits",
        "search_path",
};

/* Of the tracked ones, those PostgreSQL does not report with
 * ParameterStatus: remembered as pgmoat set them. */
static bool reported_param(const char *name)
{
	return strcasecmp(name, "extra_float_digits") != 0 && strcasecmp(name, "search_path") != 0;
}

static const char *tracked_name(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(tracked_params); i++)
		if (strcasecmp(tracked_params[i], name) == 0)
			return tracked_params[i];
	return NULL;
}

static const char *const state_names[] = {
#define X_NAME(id, name) name,
        CLIENT_STATE_LIST(X_NAME)
#undef X_NAME
};

const char *client_state_name(enum client_state s)
{
	return (unsigned)s < CLIENT_STATE_COUNT ? state_names[s] : "?";
}

void log_client(const struct client *c, int level, const char *fmt, ...)
{
	if (!log_enabled((enum log_level)level))
		return;
	char prefix[320];
	snprintf(prefix, sizeof(prefix), "C-%llu %s %s/%s: ", (unsigned long long)c->id, c->addr,
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
		return to == CL_AUTH || to == CL_WAITING;
	case CL_AUTH:
		return to == CL_WAITING;
	case CL_WAITING:
		return to == CL_ACTIVE;
	case CL_ACTIVE:
		return to == CL_WAITING;
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

void client_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
                   bool is_unix)
{
	(void)salen;
	struct client *c = xcalloc(1, sizeof(*c));
	c->w = w;
	c->id = ((uint64_t)w->id << 48) | ++w->next_client_id;
	c->is_unix = is_unix;
	format_addr(c->addr, sizeof(c->addr), sa, is_unix);
	c->state = CL_STARTUP;
	c->created_usec = c->state_since_usec = now_usec();
	list_init(&c->node);
	list_init(&c->waiter.node);
	list_append(&w->clients[CL_STARTUP], &c->node);
	w->n_clients++;
	w->stats.clients_accepted++;
	params_init(&c->params);
	conn_init(&c->conn, fd, client_read_cb, client_write_cb);
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
	if (r == IO_DONE && c->server && c->state == CL_ACTIVE)
		r = conn_write_buf(&c->conn, &c->server->conn.in, &c->w->stats.bytes_out);
	if (r == IO_DONE) {
		conn_want_write(c->w->loop, &c->conn, false);
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

/* --- startup --- */

static bool accept_params(struct client *c, const struct startup *st)
{
	const struct config *cfg = c->w->snap->cfg;
	for (size_t i = 0; i < st->params.n; i++) {
		const char *name = st->params.v[i].name;
		const char *canon = tracked_name(name);
		if (canon) {
			params_set(&c->params, canon, st->params.v[i].value);
		} else if (!strlist_contains_ci(&cfg->ignore_startup_parameters, name)) {
			client_fatal(c, "08P01", "unsupported startup parameter: %s", name);
			return false;
		}
	}
	return true;
}

static void handle_startup(struct client *c, const uint8_t *body, uint32_t len)
{
	struct startup st;
	proto_parse_startup(body, len, &st);
	switch (st.kind) {
	case STARTUP_SSL:
	case STARTUP_GSSENC:
		/* No encryption yet: answer 'N' and read the real startup. */
		pkt_put_u8(&c->conn.out, 'N');
		client_flush(c);
		break;
	case STARTUP_CANCEL:
		cancel_request(c->w, st.cancel_pid, st.cancel_key);
		client_close(c, NULL);
		break;
	case STARTUP_BAD:
		client_fatal(c, st.sqlstate, "%s", st.error);
		break;
	case STARTUP_NORMAL: {
		c->user = xstrdup(st.user);
		c->dbname = xstrdup(st.database);
		if (c->over_limit) {
			client_fatal(c, "53300", "no more connections allowed (max_client_conn)");
			break;
		}
		if (atomic_load(&c->w->rt->shutdown) != SHUTDOWN_NONE) {
			client_fatal(c, "57P01", "pgmoat is shutting down");
			break;
		}
		if (PROTO_MINOR(st.version) > 0 || st.pq_options.n > 0)
			proto_negotiate_version(&c->conn.out, 0, &st.pq_options);
		if (!accept_params(c, &st))
			break;
		if (!config_find_db(c->w->snap->cfg, c->dbname)) {
			client_fatal(c, "3D000", "no such database: %s", c->dbname);
			break;
		}
		client_set_state(c, CL_AUTH);
		client_auth_begin(c);
		break;
	}
	}
	startup_free(&st);
}

static void startup_step(struct client *c)
{
	struct buf *b = &c->conn.in;
	while (c->state == CL_STARTUP && !c->closing_after_flush) {
		if (buf_unparsed(b) < 4)
			return;
		uint32_t len = get_u32(b->data + b->parsed);
		if (len < 8 || len > STARTUP_MAX_LEN) {
			client_fatal(c, "08P01", "invalid length of startup packet");
			return;
		}
		if (buf_unparsed(b) < len) {
			/* PostgreSQL takes startup packets up to STARTUP_MAX_LEN,
			 * whatever pkt_buf is. */
			if (len > b->cap && !buf_grow(b, &c->w->bufs, STARTUP_MAX_LEN)) {
				client_fatal(c, "53200", "out of memory");
				return;
			}
			if (len > b->cap - b->parsed)
				buf_compact(b);
			return;
		}
		const uint8_t *body = b->data + b->parsed + 4;
		b->parsed += len;
		b->sent = b->parsed;
		handle_startup(c, body, len - 4);
	}
}

/* --- server acquisition --- */

static void link_ready(struct client *c, struct server *s)
{
	server_set_state(s, SV_ACTIVE);
	client_set_state(c, CL_ACTIVE);
	if (!c->welcomed) {
		for (size_t i = 0; i < s->params.n; i++)
			proto_param_status(&c->conn.out, s->params.v[i].name, s->params.v[i].value);
		proto_backend_key(&c->conn.out, c->cancel_pid, c->cancel_key);
		proto_ready(&c->conn.out, 'I');
		c->welcomed = true;
		log_client(c, LL_INFO, "login: server S-%llu (backend pid %u)",
		           (unsigned long long)s->id, s->backend_pid);
	}
	conn_want_read(c->w->loop, &s->conn, true);
	if (!client_flush(c))
		return;
	conn_want_read(c->w->loop, &c->conn, true);
	if (buf_unparsed(&c->conn.in) > 0)
		client_pump(c);
}

static void setup_done(struct server *s, bool ok, const struct pg_error *err)
{
	struct client *c = s->client;
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
	for (size_t i = 0; c && i < c->params.n; i++)
		if (!reported_param(c->params.v[i].name))
			params_set(&s->params, c->params.v[i].name, c->params.v[i].value);
	if (c)
		link_ready(c, s);
}

void client_got_server(struct client *c, struct server *s)
{
	c->server = s;
	s->client = c;
	s->pending_ready = 0;
	s->unsynced = false;
	char sql[4096] = "";
	size_t used = 0;
	for (size_t i = 0; i < c->params.n; i++) {
		const char *name = c->params.v[i].name;
		const char *want = c->params.v[i].value;
		const char *have = params_get(&s->params, name);
		if (have && strcmp(have, want) == 0)
			continue;
		char stmt[1024];
		snprintf(stmt, sizeof(stmt), "SET %s TO ", name);
		if (!proto_quote_literal(stmt, sizeof(stmt) - 1, want) ||
		    used + strlen(stmt) + 2 >= sizeof(sql)) {
			client_fatal(c, "22023", "startup parameter %s is too long", name);
			return;
		}
		strcat(stmt, ";");
		strcat(sql, stmt);
		used += strlen(stmt);
	}
	if (used > 0)
		server_query(s, sql, SV_SETUP, setup_done);
	else
		link_ready(c, s);
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
		server_open(c->w, c->pool);
		break;
	case POOL_TAKE_WAIT:
		if (steal >= 0) {
			struct wmsg *msg = xcalloc(1, sizeof(*msg));
			msg->kind = WMSG_STEAL;
			msg->pool = c->pool;
			worker_post(&c->w->rt->workers[steal], msg);
		}
		break;
	case POOL_TAKE_FAIL: {
		char state[6], msg[256];
		pthread_mutex_lock(&c->pool->lock);
		strlcopy(state, c->pool->last_sqlstate[0] ? c->pool->last_sqlstate : "08006",
		         sizeof(state));
		strlcopy(msg, c->pool->last_error, sizeof(msg));
		pthread_mutex_unlock(&c->pool->lock);
		client_fatal(c, state, "%s", msg);
		break;
	}
	}
}

void client_login(struct client *c, const uint8_t *client_key, const uint8_t *server_key)
{
	const struct config *cfg = c->w->snap->cfg;
	const struct db_entry *db = config_find_db(cfg, c->dbname);
	if (!db) {
		client_fatal(c, "3D000", "no such database: %s", c->dbname);
		return;
	}
	proto_auth(&c->conn.out, AUTH_REQ_OK, NULL, 0);
	c->pool = pool_get(cfg, db, c->dbname, c->user);
	if (client_key && server_key) {
		pthread_mutex_lock(&c->pool->lock);
		memcpy(c->pool->scram_client_key, client_key, SCRAM_KEY_LEN);
		memcpy(c->pool->scram_server_key, server_key, SCRAM_KEY_LEN);
		c->pool->have_scram_keys = true;
		pthread_mutex_unlock(&c->pool->lock);
	}
	cancel_register(c->w, c);
	c->waiter.client_id = c->id;
	client_set_state(c, CL_WAITING);
	log_client(c, LL_DEBUG, "authenticated");
	if (!client_flush(c))
		return;
	client_acquire(c, false);
}

/* --- relay client -> server --- */

void client_pump(struct client *c)
{
	struct server *s = c->server;
	struct buf *b = &c->conn.in;
	uint32_t max = (uint32_t)c->w->snap->cfg->max_packet_size;
	bool terminate = false;
	for (;;) {
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&c->conn.frame, b, max, &type, &len);
		if (fs == FRAME_MORE)
			break;
		if (fs == FRAME_BAD) {
			client_fatal(c, "08P01",
			             "invalid message length %u from client (max_packet_size %u)",
			             len, max);
			return;
		}
		if (type == 'X') {
			/* Not forwarded: the server stays for the next client.  What
			 * came before it is flushed first. */
			terminate = true;
			break;
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
	enum io_result r = conn_write_buf(&s->conn, b, &c->w->stats.bytes_in);
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
}

void client_server_lost(struct client *c, const char *why)
{
	c->server = NULL;
	if (c->state == CL_CLOSING)
		return;
	client_fatal(c, "08006", "server connection lost: %s", why);
}

void client_server_idle(struct client *c)
{
	if (atomic_load(&c->w->rt->shutdown) == SHUTDOWN_GRACEFUL)
		client_fatal(c, "57P01", "pgmoat is shutting down");
}

/* --- callbacks --- */

static void client_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct client *c = container_of(io, struct client, conn.rio);
	(void)loop;
	(void)revents;
	enum io_result r = conn_read(&c->conn, &c->w->bufs);
	if (r == IO_AGAIN) {
		if (buf_room(&c->conn.in) == 0 && c->state != CL_ACTIVE)
			conn_want_read(c->w->loop, &c->conn, false);
		return;
	}
	if (r != IO_DONE) {
		client_close(c,
		             r == IO_EOF             ? "client closed the connection"
		                     : r == IO_NOMEM ? "out of memory"
		                                     : strerror(errno));
		return;
	}
	switch (c->state) {
	case CL_STARTUP:
		startup_step(c);
		break;
	case CL_AUTH:
		client_auth_step(c);
		break;
	case CL_WAITING:
		/* Kept until a server is there; a full buffer stops reading. */
		break;
	case CL_ACTIVE:
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
	if (!client_flush(c))
		return;
	if (c->server && c->state == CL_ACTIVE && buf_unsent(&c->server->conn.in) == 0)
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
	if (c->cancel_pid)
		cancel_unregister(w, c);
	client_auth_clear(c);
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
	free(c->user);
	free(c->dbname);
	params_free(&c->params);
	free(c);
}

/* --- timers --- */

void client_kick_pool(struct worker *w, struct pool *p)
{
	for (int i = 0; i < 64; i++) {
		struct pool_waiter *wt = pool_first_waiter(p, w->id);
		if (!wt)
			return;
		struct client *c = container_of(wt, struct client, waiter);
		client_acquire(c, false);
		if (c->waiter.state == WAITER_QUEUED && pool_first_waiter(p, w->id) == wt)
			return;
	}
}

void client_sweep(struct worker *w, uint64_t now)
{
	const struct config *cfg = w->snap->cfg;
	struct list *pos, *tmp;
	uint64_t login_timeout = (uint64_t)(cfg->client_login_timeout * 1e6);
	for (int st = CL_STARTUP; st <= CL_AUTH; st++) {
		list_for_each_safe(pos, tmp, &w->clients[st])
		{
			struct client *c = container_of(pos, struct client, node);
			if (login_timeout && !c->closing_after_flush &&
			    usec_since(now, c->created_usec) > login_timeout)
				client_fatal(c, "08P01",
				             "client_login_timeout: login not completed in time");
		}
	}
	uint64_t wait_timeout = (uint64_t)(cfg->query_wait_timeout * 1e6);
	list_for_each_safe(pos, tmp, &w->clients[CL_WAITING])
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->waiter.state != WAITER_QUEUED || c->closing_after_flush)
			continue;
		uint64_t waited = usec_since(now, c->waiter.since_usec);
		if (wait_timeout && waited > wait_timeout) {
			if (pool_waiter_remove(c->pool, &c->waiter) == WAITER_QUEUED) {
				client_fatal(c, "08P01",
				             "query_wait_timeout: no server connection became free "
				             "within %g s",
				             cfg->query_wait_timeout);
			}
			continue;
		}
		if (pool_first_waiter(c->pool, w->id) == &c->waiter) {
			bool reserve = c->pool->reserve_pool > 0 &&
			        waited > (uint64_t)(c->pool->reserve_pool_timeout * 1e6);
			client_acquire(c, reserve);
		}
	}
}
