#include <config.h>

#include "proxy/route.h"

#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "pool/pool.h"
#include "pool/prepared.h"
#include "pool/router.h"
#include "proxy/client.h"
#include "proxy/health.h"
#include "proxy/sqlscan.h"
#include "proxy/worker.h"

void route_refresh(struct worker *w)
{
	struct runtime *rt = w->rt;
	uint64_t gen = atomic_load(&rt->health_gen);
	if (gen == w->health_gen)
		return;
	pthread_mutex_lock(&rt->health_lock);
	struct health_view *v = rt->health;
	if (v)
		health_view_ref(v);
	gen = atomic_load(&rt->health_gen);
	pthread_mutex_unlock(&rt->health_lock);
	if (w->health)
		health_view_unref(w->health);
	w->health = v;
	w->health_gen = gen;
}

static enum route_want want_of(int tsa)
{
	switch ((enum tsa)tsa) {
	case TSA_READ_ONLY:
	case TSA_STANDBY:
		return ROUTE_STANDBY;
	case TSA_PREFER_STANDBY:
		return ROUTE_PREFER_STANDBY;
	case TSA_ANY:
		return ROUTE_ANY;
	case TSA_READ_WRITE:
	case TSA_PRIMARY:
	default:
		return ROUTE_PRIMARY;
	}
}

/* splitmix64 */
static uint64_t next_random(struct worker *w)
{
	uint64_t z = (w->rnd += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The SQL that starts the client's request: a Query's, a Parse's, or that
 * of the prepared statement a Bind names; NULL if it has not all arrived or
 * is something else. */
static const char *first_sql(const struct client *c, size_t *len)
{
	const struct buf *b = &c->conn.in;
	if (c->conn.frame.remaining > 0 || buf_unparsed(b) < 5)
		return NULL;
	const uint8_t *m = b->data + b->parsed;
	uint32_t mlen = get_u32(m + 1);
	if (mlen < 4 || buf_unparsed(b) - 1 < mlen)
		return NULL;
	const char *body = (const char *)m + 5, *end = body + (mlen - 4);
	const char *nul = memchr(body, '\0', (size_t)(end - body));
	if (!nul)
		return NULL;
	switch (m[0]) {
	case 'Q':
		*len = (size_t)(nul - body);
		return body;
	case 'P': {
		const char *sql = nul + 1;
		const char *sql_end = sql < end ? memchr(sql, '\0', (size_t)(end - sql)) : NULL;
		if (!sql_end)
			return NULL;
		*len = (size_t)(sql_end - sql);
		return sql;
	}
	case 'B': {
		const char *name = nul + 1;
		const char *name_end = name < end ? memchr(name, '\0', (size_t)(end - name)) : NULL;
		if (!name_end || name_end == name)
			return NULL;
		const struct ps_stmt *st = ps_client_find(&c->ps, name, (size_t)(name_end - name));
		if (!st)
			return NULL;
		const char *sql = (const char *)st->body;
		const char *sql_end = memchr(sql, '\0', st->len);
		if (!sql_end)
			return NULL;
		*len = (size_t)(sql_end - sql);
		return sql;
	}
	default:
		return NULL;
	}
}

/* A database with several hosts: its own function, so that the single-host
 * path keeps a small stack frame (route_client runs inside the relay's call
 * chain, once per transaction). */
static enum route_result __attribute__((noinline))
route_hosts(struct client *c, struct pool *g, int n, char *err, size_t errlen);

enum route_result route_client(struct client *c, char *err, size_t errlen)
{
	struct pool *g = c->pool->group;
	int n = atomic_load(&g->n_members);
	if (n <= 1) {
		c->pool = g;
		c->auto_read = c->on_primary = false;
		return ROUTE_OK;
	}
	return route_hosts(c, g, n, err, errlen);
}

static enum route_result route_hosts(struct client *c, struct pool *g, int n, char *err,
                                     size_t errlen)
{
	struct worker *w = c->w;
	route_refresh(w);
	const struct health_view *v = w->health;
	if (!v)
		return ROUTE_LATER;
	const struct config *cfg = w->snap->cfg;
	struct route_cand cand[DB_MAX_HOSTS];
	for (int i = 0; i < n; i++) {
		struct pool *p = g->members[i];
		const struct host_health *h = health_find(v, atomic_load(&p->host_key));
		cand[i] = (struct route_cand){
		        .known = h && h->known,
		        .up = h && h->up && !p->gone,
		        .primary = h && h->primary,
		        .lsn = h ? h->lsn : 0,
		        .lag_bytes = h ? h->lag_bytes : 0,
		        .lag_seconds = h ? h->lag_seconds : 0,
		        .weight = atomic_load(&p->weight),
		        .load = pool_load(p),
		};
	}
	struct route_limits lim = {.max_lag_seconds = cfg->max_replica_lag,
	                           .max_lag_bytes = (uint64_t)cfg->max_replica_lag_bytes,
	                           .min_lsn = cfg->read_your_writes ? c->ryw_lsn : 0};
	enum route_want want = want_of(atomic_load(&g->tsa));
	/* read_routing = auto: a read-only transaction of a read-write name
	 * may go to a replica (never in session pooling: the session stays). */
	bool auto_read = false;
	size_t sql_len = 0;
	const char *sql;
	if (want == ROUTE_PRIMARY && cfg->read_routing == READ_ROUTING_AUTO &&
	    g->mode != POOL_SESSION && (sql = first_sql(c, &sql_len)) &&
	    sql_read_only(sql, sql_len, &cfg->write_functions)) {
		want = ROUTE_PREFER_STANDBY;
		auto_read = true;
	}
	int i = router_pick(cand, n, want, &lim, next_random(w));
	if (i >= 0) {
		c->pool = g->members[i];
		c->auto_read = auto_read && !cand[i].primary;
		c->on_primary = cand[i].primary;
		return ROUTE_OK;
	}
	snprintf(err, errlen,
	         want == ROUTE_STANDBY ? "no replica of database \"%s\" is available"
	                               : "no primary of database \"%s\" is available",
	         g->name);
	return ROUTE_NONE;
}
