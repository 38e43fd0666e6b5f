#include <config.h>

/* A worker's timers over its clients (every sweep): login, idle, query and
 * transaction timeouts, throttled logins, clients waiting for a server or
 * for the router, console commands waiting for a condition. */

#include <stdio.h>

#include "common/util.h"
#include "pool/pool.h"
#include "proxy/admin.h"
#include "proxy/cancel.h"
#include "proxy/client.h"
#include "proxy/server.h"
#include "proxy/worker.h"

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

/* query_timeout, idle_transaction_timeout, and client_idle_timeout of
 * clients that keep their server (session pooling). */
static void sweep_active(struct worker *w, uint64_t now)
{
	const struct config *cfg = w->snap->cfg;
	uint64_t query = (uint64_t)(cfg->query_timeout * 1e6);
	uint64_t idle_tx = (uint64_t)(cfg->idle_transaction_timeout * 1e6);
	uint64_t idle = (uint64_t)(cfg->client_idle_timeout * 1e6);
	if (!query && !idle_tx && !idle)
		return;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->clients[CL_ACTIVE])
	{
		struct client *c = container_of(pos, struct client, node);
		struct server *s = c->server;
		if (!s || s->state != SV_ACTIVE || c->closing_after_flush)
			continue;
		char msg[160];
		if (!server_quiet(s)) {
			if (!query || usec_since(now, s->busy_since_usec) <= query)
				continue;
			snprintf(msg, sizeof(msg), "query_timeout: query canceled after %g s",
			         cfg->query_timeout);
			cancel_server(w, s);
			server_end_client(s, "57014", msg, "query_timeout");
		} else if (s->ready_status != 'I') {
			if (!idle_tx || usec_since(now, s->quiet_since_usec) <= idle_tx)
				continue;
			snprintf(msg, sizeof(msg),
			         "idle_transaction_timeout: idle in transaction for more than %g s",
			         cfg->idle_transaction_timeout);
			server_end_client(s, "25P03", msg, "idle_transaction_timeout");
		} else if (idle && usec_since(now, c->last_recv_usec) > idle &&
		           usec_since(now, s->quiet_since_usec) > idle) {
			client_fatal(c, "57P05", "client_idle_timeout: no query for more than %g s",
			             cfg->client_idle_timeout);
		}
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
			if (c->closing_after_flush)
				continue;
			if (c->throttle_until_usec && now >= c->throttle_until_usec) {
				client_throttle_expired(c);
			} else if (login_timeout &&
			           usec_since(now, c->created_usec) > login_timeout) {
				w->stats.refused[REFUSED_LOGIN_TIMEOUT]++;
				client_fatal(c, "08P01",
				             "client_login_timeout: login not completed in time");
			}
		}
	}
	admin_sweep(w);
	uint64_t idle_timeout = (uint64_t)(cfg->client_idle_timeout * 1e6);
	if (idle_timeout) {
		list_for_each_safe(pos, tmp, &w->clients[CL_IDLE])
		{
			struct client *c = container_of(pos, struct client, node);
			if (!c->closing_after_flush &&
			    usec_since(now, c->last_recv_usec) > idle_timeout)
				client_fatal(c, "57P05",
				             "client_idle_timeout: no query for more than %g s",
				             cfg->client_idle_timeout);
		}
	}
	sweep_active(w, now);
	uint64_t wait_timeout = (uint64_t)(cfg->query_wait_timeout * 1e6);
	list_for_each_safe(pos, tmp, &w->clients[CL_WAITING])
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->route_pending && !c->closing_after_flush) {
			if (wait_timeout && usec_since(now, c->state_since_usec) > wait_timeout)
				client_fatal(
				        c, "08P01",
				        "query_wait_timeout: no host could be chosen within %g s",
				        cfg->query_wait_timeout);
			else
				client_route_acquire(c);
			continue;
		}
		if (c->waiter.state != WAITER_QUEUED || c->closing_after_flush)
			continue;
		uint64_t waited = usec_since(now, c->waiter.since_usec);
		if (atomic_load(&c->pool->down) &&
		    waited > (uint64_t)(cfg->server_down_wait * 1e6)) {
			/* The database did not come back in time. */
			if (pool_waiter_remove(c->pool, &c->waiter) == WAITER_QUEUED) {
				c->queued = false;
				client_pool_failed(c);
			}
			continue;
		}
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
