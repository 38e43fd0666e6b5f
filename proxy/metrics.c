#include <config.h>

#include "proxy/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/list.h"
#include "common/log.h"
#include "common/util.h"
#include "pool/pool.h"
#include "proxy/client.h"
#include "proxy/health.h"
#include "proxy/httpreq.h"
#include "proxy/server.h"
#include "proxy/worker.h"

_Static_assert(CLIENT_STATE_COUNT <= 8, "worker pub_clients has 8 slots");
_Static_assert(SERVER_STATE_COUNT <= 8, "worker pub_servers has 8 slots");

#define LINGER_TIMEOUT 2.0 /* seconds to drain what a client still sends */
#define ACCEPT_RETRY 1.0 /* seconds without accepting after EMFILE and the like */

/* --- the text ----------------------------------------------------------- */

struct text {
	char *p;
	size_t len, cap;
};

static void text_reserve(struct text *t, size_t n)
{
	if (t->len + n + 1 <= t->cap)
		return;
	size_t cap = t->cap ? t->cap : 4096;
	while (cap < t->len + n + 1)
		cap *= 2;
	t->p = xrealloc(t->p, cap);
	t->cap = cap;
}

static void text_add(struct text *t, const char *s, size_t n)
{
	text_reserve(t, n);
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = '\0';
}

static void __attribute__((format(printf, 2, 3))) text_printf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	text_reserve(t, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

/* `name="value"`, the value escaped as the text format wants (backslash,
 * double quote, newline); a comma first unless it is the first label. */
static void text_label(struct text *t, const char *name, const char *value)
{
	if (t->len > 0)
		text_add(t, ",", 1);
	text_printf(t, "%s=\"", name);
	for (const char *s = value; *s; s++) {
		if (*s == '\\')
			text_add(t, "\\\\", 2);
		else if (*s == '"')
			text_add(t, "\\\"", 2);
		else if (*s == '\n')
			text_add(t, "\\n", 2);
		else
			text_add(t, s, 1);
	}
	text_add(t, "\"", 1);
}

/* The label string (malloc'd) of up to three labels; a NULL name ends them. */
static char *labels3(const char *n1, const char *v1, const char *n2, const char *v2, const char *n3,
                     const char *v3)
{
	struct text t = {0};
	text_reserve(&t, 0);
	t.p[0] = '\0';
	if (n1)
		text_label(&t, n1, v1);
	if (n1 && n2)
		text_label(&t, n2, v2);
	if (n1 && n2 && n3)
		text_label(&t, n3, v3);
	return t.p;
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u64(struct text *t, const char *name, const char *labels, uint64_t v)
{
	if (labels && *labels)
		text_printf(t, "%s{%s} %" PRIu64 "\n", name, labels, v);
	else
		text_printf(t, "%s %" PRIu64 "\n", name, v);
}

static void sample_f(struct text *t, const char *name, const char *labels, double v)
{
	if (labels && *labels)
		text_printf(t, "%s{%s} %.6f\n", name, labels, v);
	else
		text_printf(t, "%s %.6f\n", name, v);
}

/* One histogram: cumulative buckets (bounds in seconds), _sum, _count.  The
 * count is the buckets' total, so +Inf always equals it. */
static void histogram(struct text *t, const char *name, const char *labels,
                      const uint64_t b[POOL_HIST_BUCKETS], uint64_t sum_us)
{
	const char *sep = labels && *labels ? "," : "";
	uint64_t cum = 0;
	for (int i = 0; i < POOL_HIST_BUCKETS; i++) {
		cum += b[i];
		if (i < POOL_HIST_BUCKETS - 1)
			text_printf(t, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
			            (double)pool_hist_bounds_us[i] / 1e6, cum);
		else
			text_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels,
			            sep, cum);
	}
	text_printf(t, "%s_sum{%s} %.6f\n", name, labels, (double)sum_us / 1e6);
	text_printf(t, "%s_count{%s} %" PRIu64 "\n", name, labels, cum);
}

/* --- reading the runtime ---------------------------------------------- */

/* What a scrape shows of one pool, copied under its lock. */
struct pool_row {
	char *labels; /* database, user, host */
	char *group_labels; /* database, user: group leaders only, else NULL */
	uint64_t xacts, queries, recv, sent, waited, xact_us, query_us, wait_us;
	uint64_t xact_hist[POOL_HIST_BUCKETS];
	uint64_t query_hist[POOL_HIST_BUCKETS];
	uint64_t wait_hist[POOL_HIST_BUCKETS];
	int active, idle, connecting, waiting, clients;
};

struct pool_rows {
	struct pool_row *v;
	size_t n, cap;
	int n_workers;
};

static uint64_t load(atomic_uint_fast64_t *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

static void load_hist(uint64_t out[POOL_HIST_BUCKETS], atomic_uint_fast64_t *h)
{
	for (int i = 0; i < POOL_HIST_BUCKETS; i++)
		out[i] = load(&h[i]);
}

/* "host:port" as SHOW POOLS shows it ("unix" for the default socket). */
static void host_label(char *out, size_t len, const char *host, int port)
{
	snprintf(out, len, "%s:%d", host ? host : "unix", port);
}

static void collect_pool(struct pool *p, void *arg)
{
	struct pool_rows *rows = arg;
	if (rows->n == rows->cap) {
		rows->cap = rows->cap ? 2 * rows->cap : 16;
		rows->v = xrealloc(rows->v, rows->cap * sizeof(*rows->v));
	}
	struct pool_row *r = &rows->v[rows->n++];
	memset(r, 0, sizeof(*r));
	char host[300];
	pthread_mutex_lock(&p->lock);
	host_label(host, sizeof(host), p->target.host, p->target.port);
	int idle = 0;
	for (int i = 0; i < rows->n_workers; i++)
		idle += p->local[i].n_idle;
	r->idle = idle;
	r->connecting = p->n_connecting;
	r->active = MAX(p->n_servers - p->n_connecting - idle, 0);
	r->waiting = p->n_waiting;
	pthread_mutex_unlock(&p->lock);
	r->labels = labels3("database", p->name, "user", p->user, "host", host);
	if (p->group == p) {
		r->group_labels = labels3("database", p->name, "user", p->user, NULL, NULL);
		r->clients = atomic_load(&p->n_clients);
	}
	r->xacts = load(&p->st.xacts);
	r->queries = load(&p->st.queries);
	r->recv = load(&p->st.recv);
	r->sent = load(&p->st.sent);
	r->waited = load(&p->st.waited);
	r->xact_us = load(&p->st.xact_us);
	r->query_us = load(&p->st.query_us);
	r->wait_us = load(&p->st.wait_us);
	load_hist(r->xact_hist, p->st.xact_hist);
	load_hist(r->query_hist, p->st.query_hist);
	load_hist(r->wait_hist, p->st.wait_hist);
}

static void render_process(struct text *t, struct runtime *rt)
{
	family(t, "pgmoat_up", "gauge", "1 while pgmoat runs.");
	sample_u64(t, "pgmoat_up", NULL, 1);
	family(t, "pgmoat_build_info", "gauge", "The version of pgmoat, as a label; always 1.");
	char *l = labels3("version", PACKAGE_VERSION, NULL, NULL, NULL, NULL);
	sample_u64(t, "pgmoat_build_info", l, 1);
	free(l);
	family(t, "pgmoat_start_time_seconds", "gauge",
	       "When pgmoat started, in seconds since the epoch.");
	uint64_t up = usec_since(now_usec(), rt->start_usec);
	sample_f(t, "pgmoat_start_time_seconds", NULL, (double)(wall_usec() - up) / 1e6);
	family(t, "pgmoat_reloads_total", "counter",
	       "Configuration reloads (SIGHUP, RELOAD, SET), by result.");
	sample_u64(t, "pgmoat_reloads_total", "result=\"ok\"", atomic_load(&rt->reloads_ok));
	sample_u64(t, "pgmoat_reloads_total", "result=\"failed\"",
	           atomic_load(&rt->reloads_failed));
}

static void render_workers(struct text *t, struct runtime *rt)
{
	struct worker_stats sum = {0};
	uint64_t clients[8] = {0}, servers[8] = {0};
	for (int i = 0; i < rt->n_workers; i++) {
		struct worker_stats st;
		int c[8], s[8];
		worker_read_pub(&rt->workers[i], &st, c, s);
		sum.tls_handshakes += st.tls_handshakes;
		sum.clients_accepted += st.clients_accepted;
		sum.servers_opened += st.servers_opened;
		sum.bytes_in += st.bytes_in;
		sum.bytes_out += st.bytes_out;
		for (int r = 0; r < REFUSAL_COUNT; r++)
			sum.refused[r] += st.refused[r];
		for (int k = 0; k < 8; k++) {
			clients[k] += c[k] > 0 ? (uint64_t)c[k] : 0;
			servers[k] += s[k] > 0 ? (uint64_t)s[k] : 0;
		}
	}
	char l[64];
	family(t, "pgmoat_clients", "gauge", "Client connections, by state.");
	for (int k = 0; k < CLIENT_STATE_COUNT; k++) {
		snprintf(l, sizeof(l), "state=\"%s\"", client_state_name((enum client_state)k));
		sample_u64(t, "pgmoat_clients", l, clients[k]);
	}
	family(t, "pgmoat_servers", "gauge", "Server connections, by state.");
	for (int k = 0; k < SERVER_STATE_COUNT; k++) {
		snprintf(l, sizeof(l), "state=\"%s\"", server_state_name((enum server_state)k));
		sample_u64(t, "pgmoat_servers", l, servers[k]);
	}
	family(t, "pgmoat_clients_accepted_total", "counter",
	       "Client connections accepted past the address checks (TCP and Unix socket).");
	sample_u64(t, "pgmoat_clients_accepted_total", NULL, sum.clients_accepted);
	family(t, "pgmoat_servers_opened_total", "counter", "Server connections opened.");
	sample_u64(t, "pgmoat_servers_opened_total", NULL, sum.servers_opened);
	family(t, "pgmoat_tls_handshakes_total", "counter",
	       "TLS handshakes completed, with clients and with servers.");
	sample_u64(t, "pgmoat_tls_handshakes_total", NULL, sum.tls_handshakes);
	family(t, "pgmoat_client_bytes_received_total", "counter",
	       "Bytes received from clients and relayed to servers.");
	sample_u64(t, "pgmoat_client_bytes_received_total", NULL, sum.bytes_in);
	family(t, "pgmoat_client_bytes_sent_total", "counter",
	       "Bytes relayed from servers to clients.");
	sample_u64(t, "pgmoat_client_bytes_sent_total", NULL, sum.bytes_out);
	family(t, "pgmoat_connections_refused_total", "counter",
	       "Connections refused before they logged in, by reason.");
	for (int r = 0; r < REFUSAL_COUNT; r++) {
		snprintf(l, sizeof(l), "reason=\"%s\"", refusal_name((enum refusal)r));
		sample_u64(t, "pgmoat_connections_refused_total", l, sum.refused[r]);
	}
}

static void render_pools(struct text *t, struct runtime *rt)
{
	struct pool_rows rows = {.n_workers = rt->n_workers};
	pool_registry_foreach(collect_pool, &rows);

#define POOL_COUNTER(metric, field, help)                                                          \
	do {                                                                                       \
		family(t, metric, "counter", help);                                                \
		for (size_t i = 0; i < rows.n; i++)                                                \
			sample_u64(t, metric, rows.v[i].labels, rows.v[i].field);                  \
	} while (0)
#define POOL_HISTOGRAM(metric, hist, sum, help)                                                    \
	do {                                                                                       \
		family(t, metric, "histogram", help);                                              \
		for (size_t i = 0; i < rows.n; i++)                                                \
			histogram(t, metric, rows.v[i].labels, rows.v[i].hist, rows.v[i].sum);     \
	} while (0)

	POOL_COUNTER("pgmoat_pool_transactions_total", xacts,
	             "Transactions run through the pool (ReadyForQuery outside a transaction).");
	POOL_COUNTER("pgmoat_pool_queries_total", queries,
	             "Queries run through the pool (each ReadyForQuery).");
	POOL_COUNTER("pgmoat_pool_received_bytes_total", recv,
	             "Bytes the pool's clients sent to its servers.");
	POOL_COUNTER("pgmoat_pool_sent_bytes_total", sent,
	             "Bytes the pool's servers sent to its clients.");
	POOL_COUNTER("pgmoat_pool_waits_total", waited,
	             "Times a client was given a server after being queued for one.");
	POOL_HISTOGRAM("pgmoat_pool_wait_seconds", wait_hist, wait_us,
	               "Time clients waited for a server.");
	POOL_HISTOGRAM("pgmoat_pool_transaction_seconds", xact_hist, xact_us,
	               "Duration of transactions, from the first query to the end.");
	POOL_HISTOGRAM("pgmoat_pool_query_seconds", query_hist, query_us,
	               "Duration of queries, from the request to ReadyForQuery.");
#undef POOL_COUNTER
#undef POOL_HISTOGRAM

	family(t, "pgmoat_pool_servers", "gauge",
	       "Server connections of the pool, by state (active: serving a client).");
	for (size_t i = 0; i < rows.n; i++) {
		const struct pool_row *r = &rows.v[i];
		const char *names[] = {"active", "idle", "connecting"};
		const int v[] = {r->active, r->idle, r->connecting};
		for (size_t k = 0; k < ARRAY_SIZE(names); k++) {
			char *l = xmalloc(strlen(r->labels) + 32);
			sprintf(l, "%s,state=\"%s\"", r->labels, names[k]);
			sample_u64(t, "pgmoat_pool_servers", l, (uint64_t)v[k]);
			free(l);
		}
	}
	family(t, "pgmoat_pool_waiting_clients", "gauge", "Clients waiting for a server now.");
	for (size_t i = 0; i < rows.n; i++)
		sample_u64(t, "pgmoat_pool_waiting_clients", rows.v[i].labels,
		           (uint64_t)MAX(rows.v[i].waiting, 0));
	family(t, "pgmoat_pool_clients", "gauge",
	       "Clients logged in to the database as the user (all hosts of the entry).");
	for (size_t i = 0; i < rows.n; i++)
		if (rows.v[i].group_labels)
			sample_u64(t, "pgmoat_pool_clients", rows.v[i].group_labels,
			           (uint64_t)MAX(rows.v[i].clients, 0));

	for (size_t i = 0; i < rows.n; i++) {
		free(rows.v[i].labels);
		free(rows.v[i].group_labels);
	}
	free(rows.v);
}

static void render_hosts(struct text *t, struct runtime *rt)
{
	pthread_mutex_lock(&rt->health_lock);
	struct health_view *v = rt->health;
	if (v)
		health_view_ref(v);
	pthread_mutex_unlock(&rt->health_lock);
	int n = v ? v->n : 0;
	char **labels = xcalloc(n ? (size_t)n : 1, sizeof(*labels));
	for (int i = 0; i < n; i++) {
		char host[300];
		host_label(host, sizeof(host), v->hosts[i].host, v->hosts[i].port);
		labels[i] = labels3("host", host, NULL, NULL, NULL, NULL);
	}
	uint64_t now = now_usec();

	family(t, "pgmoat_host_up", "gauge",
	       "1 unless the host failed health_check_failures probes in a row.");
	for (int i = 0; i < n; i++)
		sample_u64(t, "pgmoat_host_up", labels[i], v->hosts[i].up);
	family(t, "pgmoat_host_primary", "gauge",
	       "1 if the host's last probe found it out of recovery (a primary).");
	for (int i = 0; i < n; i++)
		sample_u64(t, "pgmoat_host_primary", labels[i],
		           v->hosts[i].known && v->hosts[i].primary);
	family(t, "pgmoat_host_replay_lag_bytes", "gauge",
	       "A replica's WAL replay position behind the primary's, in bytes.");
	for (int i = 0; i < n; i++)
		sample_u64(t, "pgmoat_host_replay_lag_bytes", labels[i], v->hosts[i].lag_bytes);
	family(t, "pgmoat_host_replay_lag_seconds", "gauge",
	       "A replica's replay delay (0 once it replayed all it received).");
	for (int i = 0; i < n; i++)
		sample_f(t, "pgmoat_host_replay_lag_seconds", labels[i], v->hosts[i].lag_seconds);
	family(t, "pgmoat_host_last_probe_age_seconds", "gauge",
	       "Time since the host last answered a probe (hosts that answered once).");
	for (int i = 0; i < n; i++)
		if (v->hosts[i].known)
			sample_f(t, "pgmoat_host_last_probe_age_seconds", labels[i],
			         (double)usec_since(now, v->hosts[i].probed_usec) / 1e6);

	for (int i = 0; i < n; i++)
		free(labels[i]);
	free(labels);
	if (v)
		health_view_unref(v);
}

char *metrics_render(struct runtime *rt, size_t *len)
{
	struct text t = {0};
	text_reserve(&t, 16384);
	t.p[0] = '\0';
	render_process(&t, rt);
	render_workers(&t, rt);
	render_pools(&t, rt);
	render_hosts(&t, rt);
	*len = t.len;
	return t.p;
}

/* --- the HTTP server ---------------------------------------------------- */

enum scrape_phase { SCRAPE_READ, SCRAPE_WRITE, SCRAPE_LINGER };

/* One scrape connection. */
struct scrape {
	struct metrics *m;
	int slot;
	ev_io io;
	ev_timer timer;
	enum scrape_phase phase;
	char *out; /* the response */
	size_t out_len, out_sent;
	size_t req_len;
	char req[METRICS_MAX_REQUEST];
};

struct metrics {
	struct runtime *rt;
	struct ev_loop *loop;
	char *addr; /* the metrics_listen bound now; NULL: not listening */
	ev_io accept_io;
	ev_timer accept_retry; /* after EMFILE and the like */
	struct scrape *conns[METRICS_MAX_CONNS];
	int n_conns;
};

static void scrape_close(struct scrape *c)
{
	struct metrics *m = c->m;
	ev_io_stop(m->loop, &c->io);
	ev_timer_stop(m->loop, &c->timer);
	close(c->io.fd);
	m->conns[c->slot] = NULL;
	m->n_conns--;
	free(c->out);
	free(c);
}

static void scrape_watch(struct scrape *c, int events)
{
	ev_io_stop(c->m->loop, &c->io);
	ev_io_set(&c->io, c->io.fd, events);
	ev_io_start(c->m->loop, &c->io);
}

/* All sent: half-close and read what the client may still send, so that
 * closing does not reset the connection before it read the answer. */
static void scrape_linger(struct scrape *c)
{
	c->phase = SCRAPE_LINGER;
	shutdown(c->io.fd, SHUT_WR);
	scrape_watch(c, EV_READ);
	ev_timer_stop(c->m->loop, &c->timer);
	ev_timer_set(&c->timer, LINGER_TIMEOUT, 0);
	ev_timer_start(c->m->loop, &c->timer);
}

/* Write what the socket takes: the rest when it can take more; once all
 * is sent, linger.  (May free `c`.) */
static void scrape_write(struct scrape *c)
{
	while (c->out_sent < c->out_len) {
		ssize_t n = send(c->io.fd, c->out + c->out_sent, c->out_len - c->out_sent,
		                 MSG_NOSIGNAL);
		if (n > 0) {
			c->out_sent += (size_t)n;
			ev_timer_again(c->m->loop, &c->timer);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			scrape_watch(c, EV_WRITE);
			return;
		}
		scrape_close(c);
		return;
	}
	scrape_linger(c);
}

static const char *status_text(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

/* The whole response to a request answered with `status`. */
static char *response(struct runtime *rt, int status, bool head, size_t *len)
{
	char *body;
	size_t body_len;
	const char *type = "text/plain; charset=utf-8";
	if (status == 200) {
		body = metrics_render(rt, &body_len);
		type = "text/plain; version=0.0.4; charset=utf-8";
	} else {
		const char *msg = "pgmoat: bad request\n";
		if (status == 404)
			msg = "pgmoat: metrics are served on /metrics\n";
		else if (status == 405)
			msg = "pgmoat: only GET and HEAD\n";
		else if (status == 503)
			msg = "pgmoat: too many metrics requests at once\n";
		body = xstrdup(msg);
		body_len = strlen(msg);
	}
	struct text t = {0};
	text_printf(&t,
	            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	            "Connection: close\r\n%s\r\n",
	            status, status_text(status), type, body_len,
	            status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!head)
		text_add(&t, body, body_len);
	free(body);
	*len = t.len;
	return t.p;
}

static void scrape_respond(struct scrape *c, int status, bool head)
{
	log_debug("metrics: request answered with %d", status);
	c->out = response(c->m->rt, status, head, &c->out_len);
	c->phase = SCRAPE_WRITE;
	ev_timer_stop(c->m->loop, &c->timer);
	c->timer.repeat = METRICS_WRITE_TIMEOUT;
	ev_timer_again(c->m->loop, &c->timer);
	scrape_write(c);
}

static void scrape_read(struct scrape *c)
{
	/* Bounded: a client that keeps sending while we linger must not
	 * hold the control thread. */
	for (int k = 0; k < 64; k++) {
		char drain[1024];
		char *to = c->phase == SCRAPE_READ ? c->req + c->req_len : drain;
		size_t room = c->phase == SCRAPE_READ ? sizeof(c->req) - c->req_len : sizeof(drain);
		ssize_t n = recv(c->io.fd, to, room, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			scrape_close(c); /* the client went away, or finished */
			return;
		}
		if (c->phase != SCRAPE_READ)
			continue;
		c->req_len += (size_t)n;
		bool head = false;
		int status = http_request_status(c->req, c->req_len, METRICS_MAX_REQUEST, &head);
		if (status) {
			scrape_respond(c, status, head);
			return;
		}
	}
}

static void scrape_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct scrape *c = container_of(io, struct scrape, io);
	(void)loop;
	if (c->phase == SCRAPE_WRITE) {
		if (revents & EV_WRITE)
			scrape_write(c);
		return;
	}
	scrape_read(c);
}

static void scrape_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct scrape *c = container_of(t, struct scrape, timer);
	(void)loop;
	(void)revents;
	if (c->phase == SCRAPE_READ)
		log_debug("metrics: no complete request within %g s: closing",
		          METRICS_READ_TIMEOUT);
	scrape_close(c);
}

/* More scrapes than METRICS_MAX_CONNS at once: a 503, best effort. */
static void refuse_busy(struct metrics *m, int fd)
{
	size_t len;
	char *out = response(m->rt, 503, false, &len);
	ssize_t n = send(fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)n;
	free(out);
	close(fd);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct metrics *m = container_of(io, struct metrics, accept_io);
	(void)revents;
	for (int k = 0; k < 32; k++) {
		int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* Out of descriptors or memory: pause instead of spinning. */
			log_warning("metrics: accept failed: %s; pausing for %g s", strerror(errno),
			            ACCEPT_RETRY);
			ev_io_stop(loop, io);
			ev_timer_set(&m->accept_retry, ACCEPT_RETRY, 0);
			ev_timer_start(loop, &m->accept_retry);
			return;
		}
		int slot = -1;
		for (int i = 0; i < METRICS_MAX_CONNS && slot < 0; i++)
			if (!m->conns[i])
				slot = i;
		/* All taken: a connection that got its answer makes room. */
		for (int i = 0; i < METRICS_MAX_CONNS && slot < 0; i++)
			if (m->conns[i]->phase == SCRAPE_LINGER) {
				scrape_close(m->conns[i]);
				slot = i;
			}
		if (slot < 0) {
			refuse_busy(m, fd);
			continue;
		}
		struct scrape *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->m = m;
		c->slot = slot;
		c->phase = SCRAPE_READ;
		m->conns[slot] = c;
		m->n_conns++;
		ev_io_init(&c->io, scrape_io_cb, fd, EV_READ);
		ev_io_start(loop, &c->io);
		ev_timer_init(&c->timer, scrape_timer_cb, METRICS_READ_TIMEOUT, 0);
		ev_timer_start(loop, &c->timer);
	}
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct metrics *m = container_of(t, struct metrics, accept_retry);
	(void)revents;
	if (m->addr)
		ev_io_start(loop, &m->accept_io);
}

/* "addr:port", "[v6]:port", "*:port" (every IPv4 address) or
 * "localhost:port"; the same rules as the check in conf/settings.c. */
static bool parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                       size_t errlen)
{
	char host[64];
	const char *port;
	bool v6 = s[0] == '[';
	if (v6) {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host)) {
			snprintf(err, errlen, "expected [IPv6 address]:port, got '%s'", s);
			return false;
		}
		memcpy(host, s + 1, (size_t)(end - s - 1));
		host[end - s - 1] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host) ||
		    memchr(s, ':', (size_t)(colon - s))) {
			snprintf(err, errlen,
			         "expected address:port (an IPv6 address in brackets), got '%s'",
			         s);
			return false;
		}
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
		port = colon + 1;
	}
	char *end;
	errno = 0;
	long p = strtol(port, &end, 10);
	if (port[0] < '0' || port[0] > '9' || *end || errno || p < 1 || p > 65535) {
		snprintf(err, errlen, "expected a port from 1 to 65535, got '%s'", port);
		return false;
	}
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)p);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
			snprintf(err, errlen, "'%s' is not an IPv6 address", host);
			return false;
		}
		*sslen = sizeof(*a);
		return true;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)p);
	if (strcmp(host, "*") == 0 || host[0] == '\0')
		a->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (strcmp(host, "localhost") == 0)
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
		snprintf(err, errlen, "'%s' is not an IPv4 address, * or localhost", host);
		return false;
	}
	*sslen = sizeof(*a);
	return true;
}

/* A listening socket on `spec`, or -1 (logged). */
static int listen_on(const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[200];
	if (!parse_addr(spec, &ss, &len, err, sizeof(err))) {
		log_error("metrics_listen: %s: not serving metrics", err);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("metrics_listen %s: socket: %s", spec, strerror(errno));
		return -1;
	}
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0) {
		log_error("metrics_listen %s: cannot listen: %s; not serving metrics", spec,
		          strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void stop_listening(struct metrics *m)
{
	if (!m->addr)
		return;
	ev_io_stop(m->loop, &m->accept_io);
	ev_timer_stop(m->loop, &m->accept_retry);
	close(m->accept_io.fd);
	free(m->addr);
	m->addr = NULL;
}

struct metrics *metrics_new(struct runtime *rt)
{
	struct metrics *m = xcalloc(1, sizeof(*m));
	m->rt = rt;
	m->loop = rt->control_loop;
	ev_io_init(&m->accept_io, accept_cb, -1, EV_READ);
	ev_init(&m->accept_retry, accept_retry_cb);
	return m;
}

void metrics_configure(struct metrics *m, const struct config *cfg)
{
	const char *want = cfg->metrics_listen ? cfg->metrics_listen : "";
	if (m->addr ? strcmp(m->addr, want) == 0 : !*want)
		return;
	if (m->addr)
		log_info("metrics: no longer serving on %s", m->addr);
	stop_listening(m);
	if (!*want)
		return;
	int fd = listen_on(want);
	if (fd < 0)
		return; /* tried again at the next reload */
	ev_io_set(&m->accept_io, fd, EV_READ);
	ev_io_start(m->loop, &m->accept_io);
	m->addr = xstrdup(want);
	log_info("metrics: serving http://%s/metrics", want);
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	stop_listening(m);
	for (int i = 0; i < METRICS_MAX_CONNS; i++)
		if (m->conns[i])
			scrape_close(m->conns[i]);
	free(m);
}
