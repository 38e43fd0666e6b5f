#include <config.h>

/* The admin console's SHOW commands answered on the console's own worker:
 * from the configuration, the pools, the health view and the statistics. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "conf/config.h"
#include "pool/pool.h"
#include "pool/router.h"
#include "proxy/admin_int.h"
#include "proxy/client.h"
#include "proxy/health.h"
#include "proxy/route.h"
#include "proxy/server.h"
#include "proxy/stats.h"
#include "proxy/worker.h"

/* --- SHOW commands answered on this worker --- */

void admin_show_help(struct pkt *out)
{
	static const char *const cmds[] = {
	        "SHOW HELP|VERSION|CONFIG|DATABASES|USERS|POOLS|CLIENTS|SERVERS|HOSTS|LISTS|STATE",
	        "SHOW STATS|STATS_TOTALS|STATS_AVERAGES|MEM",
	        "SET key = value",
	        "RELOAD",
	        "PAUSE [db]",
	        "RESUME [db]",
	        "DISABLE db",
	        "ENABLE db",
	        "KILL db",
	        "KILL_CLIENT id",
	        "RECONNECT [db]",
	        "WAIT_CLOSE [db]",
	        "SHUTDOWN [WAIT_FOR_CLIENTS | WAIT_FOR_SERVERS]"};
	const char *names[] = {"command"};
	struct table t;
	admin_table_begin(&t, out, names, 1);
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		admin_table_row(&t, &cmds[i]);
	admin_table_end(&t);
}

void admin_show_version(struct pkt *out)
{
	const char *names[] = {"version"};
	const char *v[] = {"pgmoat " PACKAGE_VERSION};
	struct table t;
	admin_table_begin(&t, out, names, 1);
	admin_table_row(&t, v);
	admin_table_end(&t);
}

void admin_show_config(struct client *c, struct pkt *out)
{
	const struct config *cfg = c->w->snap->cfg;
	struct config *defaults = config_defaults();
	const char *names[] = {"key", "value", "default", "changeable"};
	struct table t;
	admin_table_begin(&t, out, names, 4);
	size_t n;
	const struct setting *s = config_settings(&n);
	for (size_t i = 0; i < n; i++) {
		char value[1024], def[1024];
		config_format(cfg, &s[i], value, sizeof(value));
		config_format(defaults, &s[i], def, sizeof(def));
		const char *v[] = {s[i].name, value, def, s[i].reloadable ? "yes" : "no"};
		admin_table_row(&t, v);
	}
	admin_table_end(&t);
	config_unref(defaults);
}

struct pool_count {
	const char *name;
	int servers;
};

static void count_servers(struct pool *p, void *arg)
{
	struct pool_count *pc = arg;
	if (strcmp(p->name, pc->name) != 0)
		return;
	pthread_mutex_lock(&p->lock);
	pc->servers += p->n_servers;
	pthread_mutex_unlock(&p->lock);
}

void admin_show_databases(struct client *c, struct pkt *out)
{
	const struct config *cfg = c->w->snap->cfg;
	const char *names[] = {"name",
	                       "host",
	                       "port",
	                       "database",
	                       "force_user",
	                       "pool_size",
	                       "min_pool_size",
	                       "reserve_pool",
	                       "pool_mode",
	                       "max_connections",
	                       "current_connections",
	                       "paused",
	                       "disabled",
	                       "target_session_attrs"};
	struct table t;
	admin_table_begin(&t, out, names, 14);
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		const struct db_entry *db = &cfg->dbs[i];
		struct cells cs = {.next = 0};
		struct pool_count pc = {db->name, 0};
		pool_registry_foreach(count_servers, &pc);
		const char *v[] = {
		        db->name,
		        db->host,
		        db->ports ? db->ports : "5432",
		        db->dbname ? db->dbname : db->name,
		        db->user,
		        admin_fmt(&cs, "%d", db_pool_size(cfg, db)),
		        admin_fmt(&cs, "%d", db_min_pool_size(cfg, db)),
		        admin_fmt(&cs, "%d", db_reserve_pool(cfg, db)),
		        pool_mode_name(db_pool_mode(cfg, db, NULL)),
		        admin_fmt(&cs, "%d", db_max_connections(cfg, db)),
		        admin_fmt(&cs, "%d", pc.servers),
		        admin_pools_do(db->name, 5) > 0 ? "1" : "0",
		        admin_is_disabled(c->w->rt, db->name) ? "1" : "0",
		        tsa_name((enum tsa)db->tsa),
		};
		admin_table_row(&t, v);
	}
	admin_table_end(&t);
}

void admin_show_users(struct client *c, struct pkt *out)
{
	const struct config *cfg = c->w->snap->cfg;
	const char *names[] = {"name", "pool_mode"};
	struct table t;
	admin_table_begin(&t, out, names, 2);
	for (size_t i = 0; i < cfg->n_users; i++) {
		const struct user_entry *u = &cfg->users[i];
		const char *v[] = {u->name,
		                   u->pool_mode >= 0 ? pool_mode_name(u->pool_mode) : NULL};
		admin_table_row(&t, v);
	}
	admin_table_end(&t);
}

struct pools_arg {
	struct table *t;
	uint64_t now;
	int n_workers;
};

static void pool_row(struct pool *p, void *arg)
{
	struct pools_arg *a = arg;
	struct cells cs = {.next = 0};
	pthread_mutex_lock(&p->lock);
	int idle = 0;
	uint64_t oldest = 0;
	for (int i = 0; i < a->n_workers; i++) {
		idle += p->local[i].n_idle;
		struct list *n = list_first(&p->local[i].waiting);
		if (n) {
			struct pool_waiter *wt = container_of(n, struct pool_waiter, node);
			if (!oldest || wt->since_usec < oldest)
				oldest = wt->since_usec;
		}
	}
	int active = p->n_servers - p->n_connecting - idle;
	uint64_t wait = oldest ? usec_since(a->now, oldest) : 0;
	const char *v[] = {
	        p->name,
	        p->user,
	        admin_fmt(&cs, "%d", atomic_load(&p->group->n_clients) > 0 ? active : 0),
	        admin_fmt(&cs, "%d", p->n_waiting),
	        "0",
	        "0",
	        admin_fmt(&cs, "%d", active < 0 ? 0 : active),
	        "0",
	        "0",
	        admin_fmt(&cs, "%d", idle),
	        "0",
	        "0",
	        admin_fmt(&cs, "%d", p->n_connecting),
	        admin_fmt(&cs, "%" PRIu64, wait / 1000000),
	        admin_fmt(&cs, "%" PRIu64, wait % 1000000),
	        pool_mode_name(p->mode),
	        admin_fmt(&cs, "%s:%d", p->target.host ? p->target.host : "unix", p->target.port),
	        admin_fmt(&cs, "%d", atomic_load(&p->group->n_clients)),
	};
	pthread_mutex_unlock(&p->lock);
	admin_table_row(a->t, v);
}

void admin_show_pools(struct client *c, struct pkt *out)
{
	const char *names[] = {"database",
	                       "user",
	                       "cl_active",
	                       "cl_waiting",
	                       "cl_active_cancel_req",
	                       "cl_waiting_cancel_req",
	                       "sv_active",
	                       "sv_active_cancel",
	                       "sv_being_canceled",
	                       "sv_idle",
	                       "sv_used",
	                       "sv_tested",
	                       "sv_login",
	                       "maxwait",
	                       "maxwait_us",
	                       "pool_mode",
	                       "host",
	                       "cl_logged_in"};
	struct table t;
	admin_table_begin(&t, out, names, 18);
	struct pools_arg a = {&t, now_usec(), c->w->rt->n_workers};
	pool_registry_foreach(pool_row, &a);
	admin_table_end(&t);
}

struct host_load {
	const char *db;
	int load[DB_MAX_HOSTS];
};

static void add_host_load(struct pool *p, void *arg)
{
	struct host_load *hl = arg;
	if (strcmp(p->name, hl->db) == 0 && p->host >= 0 && p->host < DB_MAX_HOSTS)
		hl->load[p->host] += pool_active_servers(p);
}

void admin_show_hosts(struct client *c, struct pkt *out)
{
	struct worker *w = c->w;
	const struct config *cfg = w->snap->cfg;
	route_refresh(w);
	const struct health_view *view = w->health;
	const char *names[] = {"database",    "host",       "port",       "role",
	                       "state",       "last_probe", "replay_lsn", "lag_bytes",
	                       "lag_seconds", "in_flight",  "share"};
	struct table t;
	admin_table_begin(&t, out, names, 11);
	uint64_t now = now_usec();
	struct route_limits lim = {.max_lag_seconds = cfg->max_replica_lag,
	                           .max_lag_bytes = (uint64_t)cfg->max_replica_lag_bytes};
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		const struct db_entry *db = &cfg->dbs[i];
		if (db->n_hosts < 2)
			continue;
		struct route_cand cand[DB_MAX_HOSTS];
		uint32_t ew[DB_MAX_HOSTS], total = 0;
		struct host_load hl = {.db = db->name};
		pool_registry_foreach(add_host_load, &hl);
		for (int h = 0; h < db->n_hosts; h++) {
			const struct host_health *hh = view
			        ? health_find(view,
			                      health_key(db->hosts[h].host, db->hosts[h].port))
			        : NULL;
			cand[h] = (struct route_cand){.known = hh && hh->known,
			                              .up = hh && hh->up,
			                              .primary = hh && hh->primary,
			                              .lsn = hh ? hh->lsn : 0,
			                              .lag_bytes = hh ? hh->lag_bytes : 0,
			                              .lag_seconds = hh ? hh->lag_seconds : 0,
			                              .weight = db->hosts[h].weight};
			ew[h] = router_replica_eligible(&cand[h], &lim)
			        ? router_effective_weight(&cand[h], &lim)
			        : 0;
			total += ew[h];
		}
		for (int h = 0; h < db->n_hosts; h++) {
			struct cells cs = {.next = 0};
			const struct route_cand *k = &cand[h];
			const struct host_health *hh = view
			        ? health_find(view,
			                      health_key(db->hosts[h].host, db->hosts[h].port))
			        : NULL;
			const char *v[] = {
			        db->name,
			        db->hosts[h].host ? db->hosts[h].host : "unix",
			        admin_fmt(&cs, "%d", db->hosts[h].port),
			        !k->known            ? "unknown"
			                : k->primary ? "primary"
			                             : "replica",
			        k->up ? "up" : "down",
			        hh && hh->probed_usec
			                ? admin_fmt(&cs, "%.3f",
			                            (double)usec_since(now, hh->probed_usec) / 1e6)
			                : NULL,
			        k->known ? admin_fmt(&cs, "%X/%X", (unsigned)(k->lsn >> 32),
			                             (unsigned)k->lsn)
			                 : NULL,
			        admin_fmt(&cs, "%" PRIu64, k->lag_bytes),
			        admin_fmt(&cs, "%.3f", k->lag_seconds),
			        admin_fmt(&cs, "%d", hl.load[h]),
			        total ? admin_fmt(&cs, "%.3f", (double)ew[h] / total) : "0",
			};
			admin_table_row(&t, v);
		}
	}
	admin_table_end(&t);
}

void admin_show_lists(struct client *c, struct pkt *out)
{
	const struct config *cfg = c->w->snap->cfg;
	struct cells cs = {.next = 0};
	const char *names[] = {"list", "items"};
	struct table t;
	admin_table_begin(&t, out, names, 2);
	const char *rows[][2] = {
	        {"databases", admin_fmt(&cs, "%zu", cfg->n_dbs)},
	        {"users", admin_fmt(&cs, "%zu", cfg->n_users)},
	        {"used_clients", admin_fmt(&cs, "%d", atomic_load(&c->w->rt->n_clients))},
	        {"workers", admin_fmt(&cs, "%d", c->w->rt->n_workers)},
	};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		admin_table_row(&t, rows[i]);
	admin_table_end(&t);
}

void admin_show_state(struct client *c, struct pkt *out)
{
	const char *names[] = {"key", "value"};
	struct table t;
	admin_table_begin(&t, out, names, 2);
	bool stopping = atomic_load(&c->w->rt->shutdown) != SHUTDOWN_NONE;
	const char *rows[][2] = {
	        {"active", stopping ? "no" : "yes"},
	        {"paused", admin_pools_do(NULL, 5) > 0 ? "yes" : "no"},
	        {"suspended", "no"},
	        {"shutting_down", stopping ? "yes" : "no"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		admin_table_row(&t, rows[i]);
	admin_table_end(&t);
}

/* SHOW STATS (0), STATS_TOTALS (1), STATS_AVERAGES (2), with PgBouncer's
 * columns; times in microseconds. */
void admin_show_stats(struct client *c, struct pkt *out, int which)
{
	static const char *const all[] = {
	        "database",       "total_xact_count", "total_query_count", "total_received",
	        "total_sent",     "total_xact_time",  "total_query_time",  "total_wait_time",
	        "avg_xact_count", "avg_query_count",  "avg_recv",          "avg_sent",
	        "avg_xact_time",  "avg_query_time",   "avg_wait_time"};
	static const char *const part[] = {"database",       "xact_count", "query_count",
	                                   "bytes_received", "bytes_sent", "xact_time",
	                                   "query_time",     "wait_time"};
	size_t n, na;
	struct db_totals *tot = stats_totals(&n);
	struct db_averages *avg = stats_averages(c->w->rt->stats, &na);
	struct table t;
	admin_table_begin(&t, out, which == 0 ? all : part, which == 0 ? 15 : 8);
	for (size_t i = 0; i < n; i++) {
		struct cells cs = {.next = 0};
		const struct db_totals *d = &tot[i];
		struct db_averages a = {.xacts = 0};
		for (size_t j = 0; j < na; j++)
			if (strcmp(avg[j].name, d->name) == 0)
				a = avg[j];
		const char *totals[] = {admin_fmt(&cs, "%" PRIu64, d->xacts),
		                        admin_fmt(&cs, "%" PRIu64, d->queries),
		                        admin_fmt(&cs, "%" PRIu64, d->recv),
		                        admin_fmt(&cs, "%" PRIu64, d->sent),
		                        admin_fmt(&cs, "%" PRIu64, d->xact_us),
		                        admin_fmt(&cs, "%" PRIu64, d->query_us),
		                        admin_fmt(&cs, "%" PRIu64, d->wait_us)};
		const char *avgs[] = {
		        admin_fmt(&cs, "%.0f", a.xacts),   admin_fmt(&cs, "%.0f", a.queries),
		        admin_fmt(&cs, "%.0f", a.recv),    admin_fmt(&cs, "%.0f", a.sent),
		        admin_fmt(&cs, "%.0f", a.xact_us), admin_fmt(&cs, "%.0f", a.query_us),
		        admin_fmt(&cs, "%.0f", a.wait_us)};
		const char *v[15] = {d->name};
		for (int k = 0; k < 7; k++) {
			if (which == 0) {
				v[1 + k] = totals[k];
				v[8 + k] = avgs[k];
			} else {
				v[1 + k] = which == 1 ? totals[k] : avgs[k];
			}
		}
		admin_table_row(&t, v);
	}
	admin_table_end(&t);
	free(tot);
	free(avg);
}

void admin_show_mem(struct client *c, struct pkt *out)
{
	const struct config *cfg = c->w->snap->cfg;
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			pages = resident = 0;
		fclose(f);
	}
	long page = sysconf(_SC_PAGESIZE);
	struct cells cs = {.next = 0};
	const char *names[] = {"name", "size", "used", "free", "memtotal"};
	struct table t;
	admin_table_begin(&t, out, names, 5);
	const char *rows[][5] = {
	        {"process", admin_fmt(&cs, "%ld", page), admin_fmt(&cs, "%ld", resident), "0",
	         admin_fmt(&cs, "%ld", resident * page)},
	        {"relay_buffer", admin_fmt(&cs, "%d", cfg->pkt_buf), NULL, NULL, NULL},
	        {"client", admin_fmt(&cs, "%zu", sizeof(struct client)),
	         admin_fmt(&cs, "%d", atomic_load(&c->w->rt->n_clients)), NULL,
	         admin_fmt(&cs, "%zu",
	                   sizeof(struct client) * (size_t)atomic_load(&c->w->rt->n_clients))},
	        {"server", admin_fmt(&cs, "%zu", sizeof(struct server)), NULL, NULL, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		admin_table_row(&t, rows[i]);
	admin_table_end(&t);
}
