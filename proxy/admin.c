#include <config.h>

#include "proxy/admin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "conf/config.h"
#include "pool/pool.h"
#include "pool/router.h"
#include "proxy/client.h"
#include "proxy/health.h"
#include "proxy/proto.h"
#include "proxy/route.h"
#include "proxy/server.h"
#include "proxy/stats.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

static bool is_disabled(struct runtime *rt, const char *db);

/* The longest command the console reads. */
#define ADMIN_QUERY_MAX 65536

bool admin_db_disabled(struct worker *w, const char *db)
{
	return is_disabled(w->rt, db);
}

bool admin_allowed(const struct worker *w, const char *user)
{
	const struct config *cfg = w->snap->cfg;
	return strlist_contains(&cfg->admin_users, user) ||
	        strlist_contains(&cfg->stats_users, user);
}

static bool is_admin(const struct client *c)
{
	return strlist_contains(&c->w->snap->cfg->admin_users, c->user);
}

/* --- result sets --- */

struct table {
	struct pkt *out;
	int cols;
	long rows;
};

static void table_begin(struct table *t, struct pkt *out, const char *const *names, int n)
{
	t->out = out;
	t->cols = n;
	t->rows = 0;
	pkt_begin(out, 'T');
	pkt_put_u16(out, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		pkt_put_str(out, names[i]);
		pkt_put_u32(out, 0); /* table oid */
		pkt_put_u16(out, 0); /* column */
		pkt_put_u32(out, 25); /* text */
		pkt_put_u16(out, 0xffff); /* -1: variable length */
		pkt_put_u32(out, 0xffffffff); /* typmod -1 */
		pkt_put_u16(out, 0); /* text format */
	}
	pkt_end(out);
}

/* One row: `n` values, NULL for SQL NULL. */
static void row_put(struct pkt *out, const char *const *v, int n)
{
	pkt_begin(out, 'D');
	pkt_put_u16(out, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		if (!v[i]) {
			pkt_put_u32(out, 0xffffffff);
			continue;
		}
		size_t len = strlen(v[i]);
		pkt_put_u32(out, (uint32_t)len);
		pkt_put_bytes(out, v[i], len);
	}
	pkt_end(out);
}

static void table_row(struct table *t, const char *const *v)
{
	row_put(t->out, v, t->cols);
	t->rows++;
}

static void command_complete(struct pkt *out, const char *tag)
{
	pkt_begin(out, 'C');
	pkt_put_str(out, tag);
	pkt_end(out);
}

static void table_end(struct table *t)
{
	command_complete(t->out, "SHOW");
}

/* Formatting into a ring of small buffers, for row values. */
struct cells {
	char buf[32][128];
	int next;
};

static const char *fmt(struct cells *cs, const char *f, ...) __attribute__((format(printf, 2, 3)));
static const char *fmt(struct cells *cs, const char *f, ...)
{
	char *b = cs->buf[cs->next++ % 32];
	va_list ap;
	va_start(ap, f);
	vsnprintf(b, sizeof(cs->buf[0]), f, ap);
	va_end(ap);
	return b;
}

static int pools_do(const char *db, int op);

/* DISABLEd databases (admin console), guarded by rt->override_lock. */
static bool is_disabled(struct runtime *rt, const char *db)
{
	pthread_mutex_lock(&rt->override_lock);
	bool d = strlist_contains(&rt->disabled, db);
	pthread_mutex_unlock(&rt->override_lock);
	return d;
}

/* --- SHOW commands answered on this worker --- */

static void show_help(struct pkt *out)
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
	table_begin(&t, out, names, 1);
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		table_row(&t, &cmds[i]);
	table_end(&t);
}

static void show_version(struct pkt *out)
{
	const char *names[] = {"version"};
	const char *v[] = {"pgmoat " PACKAGE_VERSION};
	struct table t;
	table_begin(&t, out, names, 1);
	table_row(&t, v);
	table_end(&t);
}

static void show_config(struct client *c, struct pkt *out)
{
	const struct config *cfg = c->w->snap->cfg;
	struct config *defaults = config_defaults();
	const char *names[] = {"key", "value", "default", "changeable"};
	struct table t;
	table_begin(&t, out, names, 4);
	size_t n;
	const struct setting *s = config_settings(&n);
	for (size_t i = 0; i < n; i++) {
		char value[1024], def[1024];
		config_format(cfg, &s[i], value, sizeof(value));
		config_format(defaults, &s[i], def, sizeof(def));
		const char *v[] = {s[i].name, value, def, s[i].reloadable ? "yes" : "no"};
		table_row(&t, v);
	}
	table_end(&t);
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

static void show_databases(struct client *c, struct pkt *out)
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
	table_begin(&t, out, names, 14);
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
		        fmt(&cs, "%d", db_pool_size(cfg, db)),
		        fmt(&cs, "%d", db_min_pool_size(cfg, db)),
		        fmt(&cs, "%d", db_reserve_pool(cfg, db)),
		        pool_mode_name(db_pool_mode(cfg, db, NULL)),
		        fmt(&cs, "%d", db_max_connections(cfg, db)),
		        fmt(&cs, "%d", pc.servers),
		        pools_do(db->name, 5) > 0 ? "1" : "0",
		        is_disabled(c->w->rt, db->name) ? "1" : "0",
		        tsa_name((enum tsa)db->tsa),
		};
		table_row(&t, v);
	}
	table_end(&t);
}

static void show_users(struct client *c, struct pkt *out)
{
	const struct config *cfg = c->w->snap->cfg;
	const char *names[] = {"name", "pool_mode"};
	struct table t;
	table_begin(&t, out, names, 2);
	for (size_t i = 0; i < cfg->n_users; i++) {
		const struct user_entry *u = &cfg->users[i];
		const char *v[] = {u->name,
		                   u->pool_mode >= 0 ? pool_mode_name(u->pool_mode) : NULL};
		table_row(&t, v);
	}
	table_end(&t);
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
	        fmt(&cs, "%d", atomic_load(&p->group->n_clients) > 0 ? active : 0),
	        fmt(&cs, "%d", p->n_waiting),
	        "0",
	        "0",
	        fmt(&cs, "%d", active < 0 ? 0 : active),
	        "0",
	        "0",
	        fmt(&cs, "%d", idle),
	        "0",
	        "0",
	        fmt(&cs, "%d", p->n_connecting),
	        fmt(&cs, "%" PRIu64, wait / 1000000),
	        fmt(&cs, "%" PRIu64, wait % 1000000),
	        pool_mode_name(p->mode),
	        fmt(&cs, "%s:%d", p->target.host ? p->target.host : "unix", p->target.port),
	        fmt(&cs, "%d", atomic_load(&p->group->n_clients)),
	};
	pthread_mutex_unlock(&p->lock);
	table_row(a->t, v);
}

static void show_pools(struct client *c, struct pkt *out)
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
	table_begin(&t, out, names, 18);
	struct pools_arg a = {&t, now_usec(), c->w->rt->n_workers};
	pool_registry_foreach(pool_row, &a);
	table_end(&t);
}

static void show_hosts(struct client *c, struct pkt *out)
{
	struct worker *w = c->w;
	const struct config *cfg = w->snap->cfg;
	route_refresh(w);
	const struct health_view *view = w->health;
	const char *names[] = {"database",    "host",       "port",       "role",
	                       "state",       "last_probe", "replay_lsn", "lag_bytes",
	                       "lag_seconds", "in_flight",  "share"};
	struct table t;
	table_begin(&t, out, names, 11);
	uint64_t now = now_usec();
	struct route_limits lim = {.max_lag_seconds = cfg->max_replica_lag,
	                           .max_lag_bytes = (uint64_t)cfg->max_replica_lag_bytes};
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		const struct db_entry *db = &cfg->dbs[i];
		if (db->n_hosts < 2)
			continue;
		struct route_cand cand[DB_MAX_HOSTS];
		uint32_t ew[DB_MAX_HOSTS], total = 0;
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
			        fmt(&cs, "%d", db->hosts[h].port),
			        !k->known            ? "unknown"
			                : k->primary ? "primary"
			                             : "replica",
			        k->up ? "up" : "down",
			        hh && hh->probed_usec
			                ? fmt(&cs, "%.3f",
			                      (double)usec_since(now, hh->probed_usec) / 1e6)
			                : NULL,
			        k->known ? fmt(&cs, "%X/%X", (unsigned)(k->lsn >> 32),
			                       (unsigned)k->lsn)
			                 : NULL,
			        fmt(&cs, "%" PRIu64, k->lag_bytes),
			        fmt(&cs, "%.3f", k->lag_seconds),
			        "0",
			        total ? fmt(&cs, "%.3f", (double)ew[h] / total) : "0",
			};
			table_row(&t, v);
		}
	}
	table_end(&t);
}

static void show_lists(struct client *c, struct pkt *out)
{
	const struct config *cfg = c->w->snap->cfg;
	struct cells cs = {.next = 0};
	const char *names[] = {"list", "items"};
	struct table t;
	table_begin(&t, out, names, 2);
	const char *rows[][2] = {
	        {"databases", fmt(&cs, "%zu", cfg->n_dbs)},
	        {"users", fmt(&cs, "%zu", cfg->n_users)},
	        {"used_clients", fmt(&cs, "%d", atomic_load(&c->w->rt->n_clients))},
	        {"workers", fmt(&cs, "%d", c->w->rt->n_workers)},
	};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		table_row(&t, rows[i]);
	table_end(&t);
}

static void show_state(struct client *c, struct pkt *out)
{
	const char *names[] = {"key", "value"};
	struct table t;
	table_begin(&t, out, names, 2);
	bool stopping = atomic_load(&c->w->rt->shutdown) != SHUTDOWN_NONE;
	const char *rows[][2] = {
	        {"active", stopping ? "no" : "yes"},
	        {"paused", pools_do(NULL, 5) > 0 ? "yes" : "no"},
	        {"suspended", "no"},
	        {"shutting_down", stopping ? "yes" : "no"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		table_row(&t, rows[i]);
	table_end(&t);
}

/* SHOW STATS (0), STATS_TOTALS (1), STATS_AVERAGES (2), with PgBouncer's
 * columns; times in microseconds. */
static void show_stats(struct client *c, struct pkt *out, int which)
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
	table_begin(&t, out, which == 0 ? all : part, which == 0 ? 15 : 8);
	for (size_t i = 0; i < n; i++) {
		struct cells cs = {.next = 0};
		const struct db_totals *d = &tot[i];
		struct db_averages a = {.xacts = 0};
		for (size_t j = 0; j < na; j++)
			if (strcmp(avg[j].name, d->name) == 0)
				a = avg[j];
		const char *totals[] = {
		        fmt(&cs, "%" PRIu64, d->xacts),   fmt(&cs, "%" PRIu64, d->queries),
		        fmt(&cs, "%" PRIu64, d->recv),    fmt(&cs, "%" PRIu64, d->sent),
		        fmt(&cs, "%" PRIu64, d->xact_us), fmt(&cs, "%" PRIu64, d->query_us),
		        fmt(&cs, "%" PRIu64, d->wait_us)};
		const char *avgs[] = {fmt(&cs, "%.0f", a.xacts),   fmt(&cs, "%.0f", a.queries),
		                      fmt(&cs, "%.0f", a.recv),    fmt(&cs, "%.0f", a.sent),
		                      fmt(&cs, "%.0f", a.xact_us), fmt(&cs, "%.0f", a.query_us),
		                      fmt(&cs, "%.0f", a.wait_us)};
		const char *v[15] = {d->name};
		for (int k = 0; k < 7; k++) {
			if (which == 0) {
				v[1 + k] = totals[k];
				v[8 + k] = avgs[k];
			} else {
				v[1 + k] = which == 1 ? totals[k] : avgs[k];
			}
		}
		table_row(&t, v);
	}
	table_end(&t);
	free(tot);
	free(avg);
}

static void show_mem(struct client *c, struct pkt *out)
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
	table_begin(&t, out, names, 5);
	const char *rows[][5] = {
	        {"process", fmt(&cs, "%ld", page), fmt(&cs, "%ld", resident), "0",
	         fmt(&cs, "%ld", resident * page)},
	        {"relay_buffer", fmt(&cs, "%d", cfg->pkt_buf), NULL, NULL, NULL},
	        {"client", fmt(&cs, "%zu", sizeof(struct client)),
	         fmt(&cs, "%d", atomic_load(&c->w->rt->n_clients)), NULL,
	         fmt(&cs, "%zu",
	             sizeof(struct client) * (size_t)atomic_load(&c->w->rt->n_clients))},
	        {"server", fmt(&cs, "%zu", sizeof(struct server)), NULL, NULL, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		table_row(&t, rows[i]);
	table_end(&t);
}

/* --- SHOW CLIENTS / SERVERS: rows from every worker --- */

enum job_kind { JOB_CLIENTS, JOB_SERVERS, JOB_KILL_DB, JOB_KILL_CLIENT };

struct admin_job {
	atomic_int pending;
	atomic_int hits; /* connections a KILL closed */
	int home;
	uint64_t client_id;
	enum job_kind kind;
	char *db; /* KILL: the database */
	uint64_t target; /* KILL_CLIENT: the client's id */
	int n;
	struct pkt rows[]; /* one per worker */
};

static const char *const conn_columns[] = {
        "type",         "user",       "database",     "state",        "addr", "port",
        "local_addr",   "local_port", "connect_time", "request_time", "wait", "wait_us",
        "close_needed", "ptr",        "link",         "remote_pid",   "tls",  "application_name"};
#define CONN_COLUMNS 18

static void addr_port(const struct sockaddr *sa, char *addr, size_t n, int *port)
{
	*port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, addr, (socklen_t)n);
		*port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, addr, (socklen_t)n);
		*port = ntohs(in6->sin6_port);
	} else {
		strlcopy(addr, "unix", n);
	}
}

static void wall_time(uint64_t mono_then, uint64_t mono_now, uint64_t wall_now, char *out, size_t n)
{
	time_t t = (time_t)((wall_now - usec_since(mono_now, mono_then)) / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void client_rows(struct worker *w, struct pkt *out)
{
	uint64_t now = now_usec(), wall = wall_usec();
	for (int st = CL_STARTUP; st < CL_CLOSING; st++) {
		struct list *pos;
		list_for_each(pos, &w->clients[st])
		{
			struct client *c = container_of(pos, struct client, node);
			struct cells cs = {.next = 0};
			char addr[64], since[40], req[40];
			int port;
			addr_port(&c->peer.sa, addr, sizeof(addr), &port);
			if (c->is_unix)
				strlcopy(addr, "unix", sizeof(addr));
			wall_time(c->created_usec, now, wall, since, sizeof(since));
			wall_time(c->state_since_usec, now, wall, req, sizeof(req));
			uint64_t wait = st == CL_WAITING ? usec_since(now, c->state_since_usec) : 0;
			const char *app = params_get(&c->params, "application_name");
			const char *v[CONN_COLUMNS] = {
			        "C",
			        c->user,
			        c->dbname,
			        client_state_name((enum client_state)st),
			        addr,
			        fmt(&cs, "%d", port),
			        NULL,
			        NULL,
			        since,
			        req,
			        fmt(&cs, "%" PRIu64, wait / 1000000),
			        fmt(&cs, "%" PRIu64, wait % 1000000),
			        "0",
			        fmt(&cs, "C-%" PRIu64, c->id),
			        c->server ? fmt(&cs, "S-%" PRIu64, c->server->id) : NULL,
			        "0",
			        c->conn.ssl ? tls_version(&c->conn) : NULL,
			        app ? app : "",
			};
			row_put(out, v, CONN_COLUMNS);
		}
	}
}

static void server_rows(struct worker *w, struct pkt *out)
{
	uint64_t now = now_usec(), wall = wall_usec();
	for (int st = SV_CONNECTING; st < SV_CLOSING; st++) {
		struct list *pos;
		list_for_each(pos, &w->servers[st])
		{
			struct server *s = container_of(pos, struct server, node);
			struct cells cs = {.next = 0};
			char since[40], req[40], host[96];
			wall_time(s->created_usec, now, wall, since, sizeof(since));
			wall_time(s->state_since_usec, now, wall, req, sizeof(req));
			strlcopy(host, s->target.host ? s->target.host : "unix", sizeof(host));
			const char *v[CONN_COLUMNS] = {
			        "S",
			        s->target.user,
			        s->target.dbname,
			        server_state_name((enum server_state)st),
			        host,
			        fmt(&cs, "%d", s->target.port),
			        NULL,
			        NULL,
			        since,
			        req,
			        "0",
			        "0",
			        s->close_on_release ? "1" : "0",
			        fmt(&cs, "S-%" PRIu64, s->id),
			        s->client ? fmt(&cs, "C-%" PRIu64, s->client->id) : NULL,
			        fmt(&cs, "%u", s->backend_pid),
			        s->conn.ssl ? tls_version(&s->conn) : NULL,
			        "",
			};
			row_put(out, v, CONN_COLUMNS);
		}
	}
}

static struct client *find_console(struct worker *w, uint64_t id)
{
	struct list *pos;
	list_for_each(pos, &w->clients[CL_IDLE])
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->id == id)
			return c;
	}
	return NULL;
}

/* KILL db / KILL_CLIENT id on this worker. */
static void kill_rows(struct worker *w, struct admin_job *job)
{
	for (int st = CL_STARTUP; st < CL_CLOSING; st++) {
		struct list *pos, *tmp;
		list_for_each_safe(pos, tmp, &w->clients[st])
		{
			struct client *c = container_of(pos, struct client, node);
			bool hit = job->kind == JOB_KILL_CLIENT
			        ? c->id == job->target
			        : c->dbname && !c->admin && strcmp(c->dbname, job->db) == 0;
			if (!hit || c->closing_after_flush)
				continue;
			atomic_fetch_add(&job->hits, 1);
			client_fatal(c, "57P01", "terminated by the admin console (%s)",
			             job->kind == JOB_KILL_CLIENT ? "KILL_CLIENT" : "KILL");
		}
	}
	if (job->kind != JOB_KILL_DB)
		return;
	for (int st = SV_CONNECTING; st < SV_CLOSING; st++) {
		struct list *pos, *tmp;
		list_for_each_safe(pos, tmp, &w->servers[st])
		{
			struct server *s = container_of(pos, struct server, node);
			if (s->pool && strcmp(s->pool->name, job->db) == 0)
				server_close(s, "KILL from the admin console");
		}
	}
}

static void job_finish(struct worker *w, struct admin_job *job)
{
	struct client *c = find_console(w, job->client_id);
	if (c && c->admin_busy && (job->kind == JOB_KILL_DB || job->kind == JOB_KILL_CLIENT)) {
		if (job->kind == JOB_KILL_CLIENT && atomic_load(&job->hits) == 0)
			proto_error(&c->conn.out, "ERROR", "42704", "no such client: C-%" PRIu64,
			            job->target);
		else
			command_complete(&c->conn.out, "KILL");
		proto_ready(&c->conn.out, 'I');
		c->admin_busy = false;
		if (client_flush(c))
			admin_step(c);
	} else if (c && c->admin_busy) {
		struct table t;
		table_begin(&t, &c->conn.out, conn_columns, CONN_COLUMNS);
		for (int i = 0; i < job->n; i++)
			pkt_put_bytes(&c->conn.out, job->rows[i].data, job->rows[i].len);
		table_end(&t);
		proto_ready(&c->conn.out, 'I');
		c->admin_busy = false;
		if (client_flush(c))
			admin_step(c);
	}
	for (int i = 0; i < job->n; i++)
		pkt_free(&job->rows[i]);
	free(job->db);
	free(job);
}

void admin_handle_msg(struct worker *w, struct wmsg *m)
{
	struct admin_job *job = m->job;
	if (m->kind == WMSG_ADMIN_DONE) {
		job_finish(w, job);
		return;
	}
	if (job->kind == JOB_CLIENTS)
		client_rows(w, &job->rows[w->id]);
	else if (job->kind == JOB_SERVERS)
		server_rows(w, &job->rows[w->id]);
	else
		kill_rows(w, job);
	if (atomic_fetch_sub(&job->pending, 1) == 1) {
		if (job->home == w->id) {
			job_finish(w, job);
		} else {
			struct wmsg *done = xcalloc(1, sizeof(*done));
			done->kind = WMSG_ADMIN_DONE;
			done->job = job;
			worker_post(&w->rt->workers[job->home], done);
		}
	}
}

static struct admin_job *start_job(struct client *c, enum job_kind kind, const char *db,
                                   uint64_t target)
{
	struct runtime *rt = c->w->rt;
	struct admin_job *job =
	        xcalloc(1, sizeof(*job) + (size_t)rt->n_workers * sizeof(job->rows[0]));
	atomic_init(&job->pending, rt->n_workers);
	job->home = c->w->id;
	job->client_id = c->id;
	job->kind = kind;
	job->db = db ? xstrdup(db) : NULL;
	job->target = target;
	job->n = rt->n_workers;
	for (int i = 0; i < job->n; i++)
		pkt_init(&job->rows[i]);
	c->admin_busy = true;
	for (int i = 0; i < rt->n_workers; i++) {
		struct wmsg *m = xcalloc(1, sizeof(*m));
		m->kind = WMSG_ADMIN_COLLECT;
		m->job = job;
		worker_post(&rt->workers[i], m);
	}
	return job;
}

/* --- commands that change things --- */

static void admin_error(struct client *c, const char *sqlstate, const char *fmt_, ...)
        __attribute__((format(printf, 3, 4)));
static void admin_error(struct client *c, const char *sqlstate, const char *fmt_, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt_);
	vsnprintf(msg, sizeof(msg), fmt_, ap);
	va_end(ap);
	proto_error(&c->conn.out, "ERROR", sqlstate, "%s", msg);
}

/* SET key = value: checked here, applied by the control thread as a reload
 * with the value on top of the file (proxy/main.c). */
static void cmd_set(struct client *c, const char *args)
{
	const char *eq = strchr(args, '=');
	if (!eq) {
		admin_error(c, "42601", "syntax: SET key = value");
		return;
	}
	char key[128];
	size_t klen = (size_t)(eq - args);
	while (klen > 0 && isspace((unsigned char)args[klen - 1]))
		klen--;
	if (klen == 0 || klen >= sizeof(key)) {
		admin_error(c, "42601", "syntax: SET key = value");
		return;
	}
	memcpy(key, args, klen);
	key[klen] = '\0';
	const char *v = eq + 1;
	while (isspace((unsigned char)*v))
		v++;
	char value[1024];
	strlcopy(value, v, sizeof(value));
	size_t vl = strlen(value);
	while (vl > 0 && (isspace((unsigned char)value[vl - 1]) || value[vl - 1] == ';'))
		value[--vl] = '\0';
	if (vl >= 2 && (value[0] == '\'' || value[0] == '"') && value[vl - 1] == value[0]) {
		memmove(value, value + 1, vl - 2);
		value[vl - 2] = '\0';
	}
	const struct setting *s = config_find_setting(key);
	if (!s) {
		admin_error(c, "42704", "unknown setting: %s", key);
		return;
	}
	if (!s->reloadable) {
		admin_error(c, "55P02", "%s can only be changed by a restart", s->name);
		return;
	}
	char err[256];
	if (!config_check_value(s, value, err, sizeof(err))) {
		admin_error(c, "22023", "invalid value for %s: %s", s->name, err);
		return;
	}
	runtime_set_override(c->w->rt, s->name, value);
	log_client(c, LL_INFO, "admin console: SET %s = %s", s->name, value);
	command_complete(&c->conn.out, "SET");
}

/* --- PAUSE, RESUME, DISABLE, ENABLE, RECONNECT, WAIT_CLOSE --- */

enum admin_wait { WAIT_NONE, WAIT_PAUSE, WAIT_CLOSE };

struct pool_op {
	const char *db; /* NULL: every database */
	int op; /* 0 pause, 1 resume, 2 reconnect, 3 count active, 4 count stale */
	int count;
	int matched;
};

static void pool_op_cb(struct pool *p, void *arg)
{
	struct pool_op *o = arg;
	if (o->db && strcmp(p->name, o->db) != 0)
		return;
	o->matched++;
	switch (o->op) {
	case 0:
		atomic_store(&p->group->paused, true);
		break;
	case 1:
		atomic_store(&p->group->paused, false);
		break;
	case 2:
		pool_reconnect(p);
		break;
	case 3:
		o->count += pool_active_servers(p);
		break;
	case 4:
		o->count += pool_stale_servers(p);
		break;
	case 5:
		o->count += atomic_load(&p->group->paused) ? 1 : 0;
		break;
	}
}

static int pools_do(const char *db, int op)
{
	struct pool_op o = {.db = db, .op = op};
	pool_registry_foreach(pool_op_cb, &o);
	return op >= 3 ? o.count : o.matched;
}

/* The database argument of a command: NULL (all) or a known name. */
static bool db_arg(struct client *c, const char *q, bool required, char **out)
{
	*out = NULL;
	if (!*q) {
		if (required)
			admin_error(c, "42601", "a database name is needed");
		return !required;
	}
	if (!config_find_db(c->w->snap->cfg, q)) {
		admin_error(c, "3D000", "no such database: %s", q);
		return false;
	}
	*out = xstrdup(q);
	return true;
}

/* Answered once its condition holds (admin_sweep). */
static bool wait_for(struct client *c, enum admin_wait what, char *db)
{
	c->admin_wait = (uint8_t)what;
	free(c->admin_arg);
	c->admin_arg = db;
	c->admin_busy = true;
	return false;
}

void admin_sweep(struct worker *w)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->clients[CL_IDLE])
	{
		struct client *c = container_of(pos, struct client, node);
		if (!c->admin || !c->admin_busy || c->admin_wait == WAIT_NONE)
			continue;
		bool pause = c->admin_wait == WAIT_PAUSE;
		if (pools_do(c->admin_arg, pause ? 3 : 4) > 0)
			continue;
		command_complete(&c->conn.out, pause ? "PAUSE" : "WAIT_CLOSE");
		proto_ready(&c->conn.out, 'I');
		c->admin_wait = WAIT_NONE;
		c->admin_busy = false;
		if (client_flush(c))
			admin_step(c);
	}
}

static void set_disabled(struct runtime *rt, const char *db, bool on)
{
	pthread_mutex_lock(&rt->override_lock);
	bool there = strlist_contains(&rt->disabled, db);
	if (on && !there) {
		strlist_add(&rt->disabled, db);
	} else if (!on && there) {
		struct strlist keep;
		strlist_init(&keep);
		for (size_t i = 0; i < rt->disabled.n; i++)
			if (strcmp(rt->disabled.items[i], db) != 0)
				strlist_add(&keep, rt->disabled.items[i]);
		strlist_free(&rt->disabled);
		rt->disabled = keep;
	}
	pthread_mutex_unlock(&rt->override_lock);
}

/* --- dispatch --- */

static bool word_is(const char **p, const char *w)
{
	size_t n = strlen(w);
	if (strncasecmp(*p, w, n) != 0 || (isalnum((unsigned char)(*p)[n]) || (*p)[n] == '_'))
		return false;
	*p += n;
	while (isspace((unsigned char)**p))
		(*p)++;
	return true;
}

/* Run one command; false when its answer comes later (a job). */
static bool run(struct client *c, char *sql)
{
	struct pkt *out = &c->conn.out;
	char *p = sql;
	while (isspace((unsigned char)*p))
		p++;
	size_t n = strlen(p);
	while (n > 0 && (isspace((unsigned char)p[n - 1]) || p[n - 1] == ';'))
		p[--n] = '\0';
	const char *q = p;
	if (!*q) {
		pkt_begin(out, 'I'); /* EmptyQueryResponse */
		pkt_end(out);
		return true;
	}
	if (word_is(&q, "SHOW")) {
		if (word_is(&q, "HELP") && !*q)
			show_help(out);
		else if (word_is(&q, "VERSION") && !*q)
			show_version(out);
		else if (word_is(&q, "CONFIG") && !*q)
			show_config(c, out);
		else if (word_is(&q, "DATABASES") && !*q)
			show_databases(c, out);
		else if (word_is(&q, "USERS") && !*q)
			show_users(c, out);
		else if (word_is(&q, "POOLS") && !*q)
			show_pools(c, out);
		else if (word_is(&q, "HOSTS") && !*q)
			show_hosts(c, out);
		else if (word_is(&q, "LISTS") && !*q)
			show_lists(c, out);
		else if (word_is(&q, "STATE") && !*q)
			show_state(c, out);
		else if (word_is(&q, "STATS") && !*q)
			show_stats(c, out, 0);
		else if (word_is(&q, "STATS_TOTALS") && !*q)
			show_stats(c, out, 1);
		else if (word_is(&q, "STATS_AVERAGES") && !*q)
			show_stats(c, out, 2);
		else if (word_is(&q, "MEM") && !*q)
			show_mem(c, out);
		else if (word_is(&q, "CLIENTS") && !*q) {
			start_job(c, JOB_CLIENTS, NULL, 0);
			return false;
		} else if (word_is(&q, "SERVERS") && !*q) {
			start_job(c, JOB_SERVERS, NULL, 0);
			return false;
		} else
			admin_error(c, "42601", "unknown SHOW command: %s (SHOW HELP lists them)",
			            p);
		return true;
	}
	/* Everything else changes things: admin_users only. */
	if (!is_admin(c)) {
		admin_error(c, "42501",
		            "permission denied: only admin_users may run \"%s\" (stats_users may "
		            "run SHOW commands)",
		            p);
		log_client(c, LL_WARNING, "admin console: refused \"%s\" (not in admin_users)", p);
		return true;
	}
	if (word_is(&q, "SET")) {
		cmd_set(c, q);
	} else if (word_is(&q, "RELOAD") && !*q) {
		log_client(c, LL_INFO, "admin console: RELOAD");
		kill(getpid(), SIGHUP);
		command_complete(out, "RELOAD");
	} else if (word_is(&q, "PAUSE")) {
		char *db;
		if (!db_arg(c, q, false, &db))
			return true;
		pools_do(db, 0);
		log_client(c, LL_INFO, "admin console: PAUSE %s", db ? db : "(all)");
		return wait_for(c, WAIT_PAUSE, db);
	} else if (word_is(&q, "RESUME")) {
		char *db;
		if (!db_arg(c, q, false, &db))
			return true;
		pools_do(db, 1);
		log_client(c, LL_INFO, "admin console: RESUME %s", db ? db : "(all)");
		free(db);
		command_complete(out, "RESUME");
	} else if (word_is(&q, "DISABLE") || word_is(&q, "ENABLE")) {
		bool disable = toupper((unsigned char)p[0]) == 'D';
		char *db;
		if (!db_arg(c, q, true, &db))
			return true;
		set_disabled(c->w->rt, db, disable);
		log_client(c, LL_INFO, "admin console: %s %s", disable ? "DISABLE" : "ENABLE", db);
		free(db);
		command_complete(out, disable ? "DISABLE" : "ENABLE");
	} else if (word_is(&q, "RECONNECT")) {
		char *db;
		if (!db_arg(c, q, false, &db))
			return true;
		pools_do(db, 2);
		log_client(c, LL_INFO, "admin console: RECONNECT %s", db ? db : "(all)");
		free(db);
		command_complete(out, "RECONNECT");
	} else if (word_is(&q, "WAIT_CLOSE")) {
		char *db;
		if (!db_arg(c, q, false, &db))
			return true;
		return wait_for(c, WAIT_CLOSE, db);
	} else if (word_is(&q, "KILL_CLIENT")) {
		const char *id = q;
		if (strncasecmp(id, "C-", 2) == 0)
			id += 2;
		char *end;
		unsigned long long num = strtoull(id, &end, 10);
		if (!*id || *end) {
			admin_error(c, "42601", "syntax: KILL_CLIENT C-<id> (from SHOW CLIENTS)");
			return true;
		}
		log_client(c, LL_INFO, "admin console: KILL_CLIENT C-%llu", num);
		start_job(c, JOB_KILL_CLIENT, NULL, num);
		return false;
	} else if (word_is(&q, "KILL")) {
		char *db;
		if (!db_arg(c, q, true, &db))
			return true;
		log_client(c, LL_INFO, "admin console: KILL %s", db);
		start_job(c, JOB_KILL_DB, db, 0);
		free(db);
		return false;
	} else if (word_is(&q, "SHUTDOWN")) {
		bool wait = word_is(&q, "WAIT_FOR_CLIENTS") || word_is(&q, "WAIT_FOR_SERVERS");
		if (*q) {
			admin_error(c, "42601",
			            "syntax: SHUTDOWN [WAIT_FOR_CLIENTS | WAIT_FOR_SERVERS]");
			return true;
		}
		log_client(c, LL_INFO, "admin console: SHUTDOWN%s",
		           wait ? " (waiting for clients)" : "");
		command_complete(out, "SHUTDOWN");
		kill(getpid(), wait ? SIGTERM : SIGINT);
	} else {
		admin_error(c, "42601", "unknown command: %s (SHOW HELP lists them)", p);
	}
	return true;
}

void admin_login(struct client *c)
{
	static const char *const params[][2] = {
	        {"server_version", "15.0 (pgmoat " PACKAGE_VERSION ")"},
	        {"server_encoding", "UTF8"},
	        {"client_encoding", "UTF8"},
	        {"DateStyle", "ISO, MDY"},
	        {"integer_datetimes", "on"},
	        {"standard_conforming_strings", "on"},
	        {"application_name", "pgmoat"},
	};
	c->admin = true;
	proto_auth(&c->conn.out, AUTH_REQ_OK, NULL, 0);
	for (size_t i = 0; i < ARRAY_SIZE(params); i++)
		proto_param_status(&c->conn.out, params[i][0], params[i][1]);
	proto_backend_key(&c->conn.out, 0, 0);
	proto_ready(&c->conn.out, 'I');
	c->welcomed = true;
	client_set_state(c, CL_IDLE);
	log_client(c, LL_INFO, "login to the admin console (%s)",
	           is_admin(c) ? "admin_users" : "stats_users");
	client_flush(c);
}

void admin_step(struct client *c)
{
	struct buf *b = &c->conn.in;
	while (!c->admin_busy && !c->closing_after_flush && c->state == CL_IDLE) {
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&c->conn.frame, b, ADMIN_QUERY_MAX, &type, &len);
		if (fs == FRAME_MORE)
			break;
		if (fs == FRAME_BAD) {
			client_fatal(c, "08P01", "admin console: message too long or malformed");
			return;
		}
		if (!frame_whole(b, len)) {
			if (!frame_fits(b, len) && !buf_grow(b, &c->w->bufs, len + 1)) {
				client_fatal(c, "53200", "out of memory");
				return;
			}
			if (len + 1 > b->cap - b->parsed)
				buf_compact(b);
			break;
		}
		if (type == 'X') {
			client_close(c, "client disconnected");
			return;
		}
		bool answered = true;
		if (type == 'Q') {
			char *sql = xstrndup((const char *)frame_body(b), len - 4);
			frame_skip(b, len);
			answered = run(c, sql);
			free(sql);
			if (answered)
				proto_ready(&c->conn.out, 'I');
		} else if (type == 'S') {
			frame_skip(b, len);
			c->admin_ext_error = false;
			proto_ready(&c->conn.out, 'I');
		} else {
			frame_skip(b, len);
			if (!c->admin_ext_error) {
				admin_error(c, "0A000",
				            "the admin console supports only the simple query "
				            "protocol");
				c->admin_ext_error = true;
			}
		}
		if (answered && !client_flush(c))
			return;
	}
	buf_reset_if_drained(b);
}
