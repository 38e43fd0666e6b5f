#include <config.h>

#include "proxy/worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "pool/prepared.h"
#include "pool/pool.h"
#include "proxy/admin.h"
#include "proxy/auth_query.h"
#include "proxy/cancel.h"
#include "proxy/client.h"
#include "proxy/health.h"
#include "proxy/listener.h"
#include "proxy/server.h"
#include "proxy/tls.h"

#define SWEEP_INTERVAL 0.1 /* seconds */
#define BUF_CACHE_MAX 64 /* free buffers kept per worker */

static const char *const refusal_names[] = {
#define X_NAME(id, name) name,
        REFUSAL_LIST(X_NAME)
#undef X_NAME
};

const char *refusal_name(enum refusal r)
{
	return (unsigned)r < REFUSAL_COUNT ? refusal_names[r] : "?";
}

struct snapshot *snapshot_new(struct config *cfg, struct userlist *users)
{
	struct snapshot *s = xcalloc(1, sizeof(*s));
	s->cfg = cfg;
	s->users = users;
	atomic_init(&s->refs, 1);
	return s;
}

void snapshot_ref(struct snapshot *s)
{
	atomic_fetch_add(&s->refs, 1);
}

void snapshot_unref(struct snapshot *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
		config_unref(s->cfg);
		userlist_free(s->users);
		tls_ctx_free(s->tls);
		hba_free(s->hba);
		cidr_list_free(&s->allow);
		cidr_list_free(&s->trusted);
		free(s);
	}
}

void runtime_request_shutdown(struct runtime *rt, enum shutdown_mode mode)
{
	atomic_store(&rt->shutdown_request, (int)mode);
	ev_async_send(rt->control_loop, &rt->shutdown_wake);
}

void runtime_set_override(struct runtime *rt, const char *key, const char *value)
{
	pthread_mutex_lock(&rt->override_lock);
	for (size_t i = 0; i + 1 < rt->overrides.n; i += 2) {
		if (strcmp(rt->overrides.items[i], key) == 0) {
			free(rt->overrides.items[i + 1]);
			rt->overrides.items[i + 1] = xstrdup(value);
			goto out;
		}
	}
	strlist_add(&rt->overrides, key);
	strlist_add(&rt->overrides, value);
out:
	pthread_mutex_unlock(&rt->override_lock);
	ev_async_send(rt->control_loop, &rt->override_wake);
}

struct snapshot *runtime_snapshot(struct runtime *rt)
{
	pthread_mutex_lock(&rt->snap_lock);
	struct snapshot *s = rt->snap;
	snapshot_ref(s);
	pthread_mutex_unlock(&rt->snap_lock);
	return s;
}

void worker_post(struct worker *w, struct wmsg *m)
{
	pthread_mutex_lock(&w->inbox_lock);
	list_append(&w->inbox, &m->node);
	pthread_mutex_unlock(&w->inbox_lock);
	ev_async_send(w->loop, &w->wake);
}

void worker_defer_free_client(struct worker *w, struct client *c)
{
	list_del(&c->node);
	list_append(&w->dead_clients, &c->node);
	w->n_clients--;
}

void worker_defer_free_server(struct worker *w, struct server *s)
{
	list_del(&s->node);
	list_append(&w->dead_servers, &s->node);
	w->n_servers--;
}

/* `queued`: things may have changed since it was asked for (the client
 * closed, or already began; the server closed). */
static void step_run(struct worker_step_item it, bool queued)
{
	switch (it.kind) {
	case STEP_CLIENT_BEGIN: {
		struct client *c = it.obj;
		if (!queued || (c->state == CL_IDLE && buf_unparsed(&c->conn.in) > 0))
			client_begin_step(c);
		break;
	}
	case STEP_SERVER_OFFER: {
		struct server *s = it.obj;
		if (queued)
			s->offer_queued = false;
		if (!queued || (s->state != SV_CLOSING && !s->client))
			server_offer_step(s);
		break;
	}
	}
}

static void step_push(struct worker *w, struct worker_step_item it)
{
	if (w->steps_head + w->steps_len == w->steps_cap) {
		if (w->steps_head > 0) {
			memmove(w->steps, w->steps + w->steps_head,
			        w->steps_len * sizeof(*w->steps));
			w->steps_head = 0;
		} else {
			w->steps_cap = w->steps_cap ? 2 * w->steps_cap : 64;
			w->steps = xrealloc(w->steps, w->steps_cap * sizeof(*w->steps));
		}
	}
	w->steps[w->steps_head + w->steps_len++] = it;
}

bool worker_steps_hold(struct worker *w)
{
	if (w->stepping)
		return false;
	w->stepping = true;
	return true;
}

void worker_steps_run(struct worker *w)
{
	while (w->steps_len > 0) {
		struct worker_step_item it = w->steps[w->steps_head++];
		w->steps_len--;
		step_run(it, true);
	}
	w->steps_head = 0;
	w->stepping = false;
}

void worker_step(struct worker *w, enum worker_step_kind kind, void *obj)
{
	struct worker_step_item it = {kind, obj};
	if (w->stepping) {
		if (kind == STEP_SERVER_OFFER) {
			struct server *s = obj;
			if (s->offer_queued)
				return;
			s->offer_queued = true;
		}
		step_push(w, it);
		return;
	}
	w->stepping = true;
	step_run(it, false);
	worker_steps_run(w);
}

static void reaper_cb(struct ev_loop *loop, ev_check *chk, int revents)
{
	struct worker *w = container_of(chk, struct worker, reaper);
	(void)loop;
	(void)revents;
	struct list *n;
	while ((n = list_pop(&w->dead_clients)))
		client_free(container_of(n, struct client, node));
	while ((n = list_pop(&w->dead_servers)))
		server_free(container_of(n, struct server, node));
}

static struct client *find_waiting(struct worker *w, uint64_t id)
{
	struct list *pos;
	list_for_each(pos, &w->clients[CL_WAITING])
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->id == id)
			return c;
	}
	return NULL;
}

static void handle_msg(struct worker *w, struct wmsg *m)
{
	switch (m->kind) {
	case WMSG_HANDOFF: {
		struct server *s = m->server;
		server_attach(w, s);
		struct client *c = find_waiting(w, m->client_id);
		if (c && c->waiter.state == WAITER_HANDOFF && !c->closing_after_flush) {
			c->waiter.state = WAITER_NONE;
			client_got_server(c, s);
		} else {
			server_offer(s);
		}
		break;
	}
	case WMSG_STEAL: {
		struct pool_member *pm;
		if (pool_take_idle(m->pool, w->id, &pm))
			server_offer(container_of(pm, struct server, member));
		break;
	}
	case WMSG_KICK:
		client_kick_pool(w, m->pool);
		break;
	case WMSG_CANCEL:
		cancel_local(w, m->pid, m->key);
		break;
	case WMSG_ADMIN_COLLECT:
	case WMSG_ADMIN_DONE:
		admin_handle_msg(w, m);
		break;
	}
}

static void close_all(struct worker *w, bool fast);

static void check_stopped(struct worker *w)
{
	if (!w->stopping || atomic_load(&w->rt->shutdown) == SHUTDOWN_NONE)
		return;
	if (w->n_clients == 0) {
		struct list *pos, *tmp;
		list_for_each_safe(pos, tmp, &w->servers[SV_IDLE])
		{
			server_close(container_of(pos, struct server, node), "shutting down");
		}
	}
	if (w->n_clients == 0 && w->n_servers == 0)
		ev_break(w->loop, EVBREAK_ALL);
}

static void begin_shutdown(struct worker *w)
{
	enum shutdown_mode mode = atomic_load(&w->rt->shutdown);
	/* Closed, not just unwatched: connections to a socket nobody accepts
	 * from would hang in its backlog.  In a graceful stop, those already
	 * queued are accepted first and treated like the clients we have,
	 * rather than reset by the kernel. */
	if (mode != SHUTDOWN_FAST)
		listener_drain(w);
	listener_close(w);
	w->stopping = true;
	close_all(w, mode == SHUTDOWN_FAST);
	check_stopped(w);
}

static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	struct worker *w = container_of(a, struct worker, wake);
	(void)loop;
	(void)revents;
	if (atomic_exchange(&w->reload_pending, false)) {
		struct snapshot *old = w->snap;
		w->snap = runtime_snapshot(w->rt);
		snapshot_unref(old);
	}
	struct list batch;
	list_init(&batch);
	pthread_mutex_lock(&w->inbox_lock);
	if (!list_empty(&w->inbox)) {
		batch = w->inbox;
		batch.next->prev = &batch;
		batch.prev->next = &batch;
		list_init(&w->inbox);
	}
	pthread_mutex_unlock(&w->inbox_lock);
	struct list *n;
	while ((n = list_pop(&batch))) {
		struct wmsg *m = container_of(n, struct wmsg, node);
		handle_msg(w, m);
		free(m);
	}
	if (atomic_exchange(&w->stop_pending, false))
		begin_shutdown(w);
}

/* Close what can be closed now: in a graceful shutdown, clients that are not
 * inside a transaction or query; in a fast one, everything. */
static void close_all(struct worker *w, bool fast)
{
	struct list *pos, *tmp;
	if (atomic_load(&w->rt->shutdown) == SHUTDOWN_WAIT_CLIENTS)
		return; /* they leave by themselves */
	for (int st = CL_STARTUP; st < CL_CLOSING; st++) {
		list_for_each_safe(pos, tmp, &w->clients[st])
		{
			struct client *c = container_of(pos, struct client, node);
			if (c->closing_after_flush)
				continue;
			bool busy = st == CL_ACTIVE && c->server &&
			        (!server_quiet(c->server) || c->server->ready_status != 'I');
			if (fast || !busy)
				client_fatal(c, "57P01", "pgmoat is shutting down");
		}
	}
	if (fast) {
		/* Clients whose error could not be written yet go now. */
		for (int st = CL_STARTUP; st < CL_CLOSING; st++)
			list_for_each_safe(pos, tmp, &w->clients[st]) client_close(
			        container_of(pos, struct client, node), "shutting down");
		for (int st = SV_CONNECTING; st < SV_CLOSING; st++)
			list_for_each_safe(pos, tmp, &w->servers[st]) server_close(
			        container_of(pos, struct server, node), "shutting down");
	}
}

static void min_pool_cb(struct pool *p, void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 16 && pool_reserve_slot(p); i++)
		server_open(w, p);
}

static void publish_stats(struct worker *w)
{
	int clients[8] = {0}, servers[8] = {0};
	for (int i = 0; i < 8; i++) {
		struct list *pos;
		list_for_each(pos, &w->clients[i]) clients[i]++;
		list_for_each(pos, &w->servers[i]) servers[i]++;
	}
	pthread_mutex_lock(&w->pub_lock);
	w->pub = w->stats;
	memcpy(w->pub_clients, clients, sizeof(clients));
	memcpy(w->pub_servers, servers, sizeof(servers));
	pthread_mutex_unlock(&w->pub_lock);
}

void worker_read_pub(struct worker *w, struct worker_stats *st, int clients[8], int servers[8])
{
	pthread_mutex_lock(&w->pub_lock);
	*st = w->pub;
	memcpy(clients, w->pub_clients, sizeof(w->pub_clients));
	memcpy(servers, w->pub_servers, sizeof(w->pub_servers));
	pthread_mutex_unlock(&w->pub_lock);
}

static void sweep_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = container_of(t, struct worker, sweep);
	(void)loop;
	(void)revents;
	uint64_t now = now_usec();
	/* What the sweeps start runs after them: a step could otherwise move
	 * other connections between the lists they walk. */
	bool held = worker_steps_hold(w);
	client_sweep(w, now);
	server_sweep(w, now);
	if (held)
		worker_steps_run(w);
	publish_stats(w);
	auth_query_sweep(w, now);
	if (w->id == 0 && atomic_load(&w->rt->shutdown) == SHUTDOWN_NONE)
		pool_registry_foreach(min_pool_cb, w);
	if (w->stopping) {
		close_all(w, atomic_load(&w->rt->shutdown) == SHUTDOWN_FAST);
		check_stopped(w);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	ev_run(w->loop, 0);
	atomic_fetch_add(&w->rt->workers_done, 1);
	ev_async_send(w->rt->control_loop, &w->rt->control_wake);
	return NULL;
}

static bool worker_init(struct runtime *rt, struct worker *w, int id)
{
	w->id = id;
	w->rt = rt;
	w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!w->loop) {
		log_error("could not create an event loop");
		return false;
	}
	w->snap = runtime_snapshot(rt);
	pthread_mutex_init(&w->inbox_lock, NULL);
	pthread_mutex_init(&w->pub_lock, NULL);
	list_init(&w->inbox);
	list_init(&w->dead_clients);
	list_init(&w->auth_queries);
	if (!random_bytes(&w->rnd, sizeof(w->rnd)))
		w->rnd = now_usec() ^ (uint64_t)w->id;
	list_init(&w->dead_servers);
	for (size_t i = 0; i < ARRAY_SIZE(w->clients); i++)
		list_init(&w->clients[i]);
	for (size_t i = 0; i < ARRAY_SIZE(w->servers); i++)
		list_init(&w->servers[i]);
	buf_cache_init(&w->bufs, (uint32_t)w->snap->cfg->pkt_buf, BUF_CACHE_MAX);
	cancel_table_init(w);
	w->ps = ps_registry_new();
	if (!w->ps) {
		log_error("out of memory");
		return false;
	}
	ev_async_init(&w->wake, wake_cb);
	ev_async_start(w->loop, &w->wake);
	ev_check_init(&w->reaper, reaper_cb);
	ev_check_start(w->loop, &w->reaper);
	ev_timer_init(&w->sweep, sweep_cb, SWEEP_INTERVAL, SWEEP_INTERVAL);
	ev_timer_start(w->loop, &w->sweep);
	if (!listener_open_tcp(w, w->snap->cfg))
		return false;
	listener_start(w);
	return true;
}

bool workers_start(struct runtime *rt)
{
	rt->workers = xcalloc((size_t)rt->n_workers, sizeof(*rt->workers));
	for (int i = 0; i < rt->n_workers; i++)
		if (!worker_init(rt, &rt->workers[i], i))
			return false;
	for (int i = 0; i < rt->n_workers; i++) {
		int rc = pthread_create(&rt->workers[i].thread, NULL, worker_main, &rt->workers[i]);
		if (rc != 0) {
			log_error("could not start worker thread: %s", strerror(rc));
			return false;
		}
	}
	return true;
}

static void worker_destroy(struct worker *w)
{
	reaper_cb(w->loop, &w->reaper, 0);
	listener_close(w);
	struct list *n;
	while ((n = list_pop(&w->inbox))) {
		struct wmsg *m = container_of(n, struct wmsg, node);
		if (m->kind == WMSG_HANDOFF && m->server) {
			tls_close(&m->server->conn);
			pkt_free(&m->server->conn.out);
			if (m->server->conn.fd >= 0)
				close(m->server->conn.fd);
			server_free(m->server);
		}
		free(m);
	}
	auth_query_close_all(w);
	cancel_table_free(w);
	free(w->steps);
	ps_registry_free(w->ps);
	buf_cache_destroy(&w->bufs);
	snapshot_unref(w->snap);
	if (w->health)
		health_view_unref(w->health);
	ev_loop_destroy(w->loop);
	pthread_mutex_destroy(&w->inbox_lock);
	pthread_mutex_destroy(&w->pub_lock);
}

void workers_join(struct runtime *rt)
{
	for (int i = 0; i < rt->n_workers; i++)
		pthread_join(rt->workers[i].thread, NULL);
	for (int i = 0; i < rt->n_workers; i++)
		worker_destroy(&rt->workers[i]);
	free(rt->workers);
	rt->workers = NULL;
}

void workers_reload(struct runtime *rt)
{
	for (int i = 0; i < rt->n_workers; i++) {
		atomic_store(&rt->workers[i].reload_pending, true);
		ev_async_send(rt->workers[i].loop, &rt->workers[i].wake);
	}
}

void workers_shutdown(struct runtime *rt)
{
	for (int i = 0; i < rt->n_workers; i++) {
		atomic_store(&rt->workers[i].stop_pending, true);
		ev_async_send(rt->workers[i].loop, &rt->workers[i].wake);
	}
}
