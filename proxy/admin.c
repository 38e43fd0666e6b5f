#include <config.h>

#include "proxy/admin.h"

#include <arpa/inet.h>
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
#include "proxy/admin_cmd.h"
#include "proxy/admin_int.h"
#include "proxy/client.h"
#include "proxy/proto.h"
#include "proxy/server.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

/* The longest command the console reads. */
#define ADMIN_QUERY_MAX 65536

bool admin_db_disabled(struct worker *w, const char *db)
{
	return admin_is_disabled(w->rt, db);
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

void admin_table_begin(struct table *t, struct pkt *out, const char *const *names, int n)
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
void admin_row_put(struct pkt *out, const char *const *v, int n)
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

void admin_table_row(struct table *t, const char *const *v)
{
	admin_row_put(t->out, v, t->cols);
	t->rows++;
}

void admin_command_complete(struct pkt *out, const char *tag)
{
	pkt_begin(out, 'C');
	pkt_put_str(out, tag);
	pkt_end(out);
}

void admin_table_end(struct table *t)
{
	admin_command_complete(t->out, "SHOW");
}

const char *admin_fmt(struct cells *cs, const char *f, ...)
{
	char *b = cs->buf[cs->next++ % 32];
	va_list ap;
	va_start(ap, f);
	vsnprintf(b, sizeof(cs->buf[0]), f, ap);
	va_end(ap);
	return b;
}

/* DISABLEd databases (admin console), guarded by rt->override_lock. */
bool admin_is_disabled(struct runtime *rt, const char *db)
{
	pthread_mutex_lock(&rt->override_lock);
	bool d = strlist_contains(&rt->disabled, db);
	pthread_mutex_unlock(&rt->override_lock);
	return d;
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
			        admin_fmt(&cs, "%d", port),
			        NULL,
			        NULL,
			        since,
			        req,
			        admin_fmt(&cs, "%" PRIu64, wait / 1000000),
			        admin_fmt(&cs, "%" PRIu64, wait % 1000000),
			        "0",
			        admin_fmt(&cs, "C-%" PRIu64, c->id),
			        c->server ? admin_fmt(&cs, "S-%" PRIu64, c->server->id) : NULL,
			        "0",
			        c->conn.ssl ? tls_version(&c->conn) : NULL,
			        app ? app : "",
			};
			admin_row_put(out, v, CONN_COLUMNS);
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
			        admin_fmt(&cs, "%d", s->target.port),
			        NULL,
			        NULL,
			        since,
			        req,
			        "0",
			        "0",
			        s->close_on_release ? "1" : "0",
			        admin_fmt(&cs, "S-%" PRIu64, s->id),
			        s->client ? admin_fmt(&cs, "C-%" PRIu64, s->client->id) : NULL,
			        admin_fmt(&cs, "%u", s->backend_pid),
			        s->conn.ssl ? tls_version(&s->conn) : NULL,
			        "",
			};
			admin_row_put(out, v, CONN_COLUMNS);
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
			admin_command_complete(&c->conn.out, "KILL");
		proto_ready(&c->conn.out, 'I');
		c->admin_busy = false;
		if (client_flush(c))
			admin_step(c);
	} else if (c && c->admin_busy) {
		struct table t;
		admin_table_begin(&t, &c->conn.out, conn_columns, CONN_COLUMNS);
		for (int i = 0; i < job->n; i++)
			pkt_put_bytes(&c->conn.out, job->rows[i].data, job->rows[i].len);
		admin_table_end(&t);
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
static void cmd_set(struct client *c, const char *key, const char *value)
{
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
	admin_command_complete(&c->conn.out, "SET");
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

int admin_pools_do(const char *db, int op)
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
		if (admin_pools_do(c->admin_arg, pause ? 3 : 4) > 0)
			continue;
		admin_command_complete(&c->conn.out, pause ? "PAUSE" : "WAIT_CLOSE");
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

/* Run one command; false when its answer comes later (a job). */
static bool run(struct client *c, char *sql)
{
	struct pkt *out = &c->conn.out;
	struct admin_cmd cmd;
	admin_cmd_parse(sql, &cmd);
	const char *p = cmd.text, *q = cmd.arg;
	/* Everything but SHOW changes things: admin_users only. */
	if (!admin_cmd_read_only(cmd.kind) && !is_admin(c)) {
		admin_error(c, "42501",
		            "permission denied: only admin_users may run \"%s\" (stats_users may "
		            "run SHOW commands)",
		            p);
		log_client(c, LL_WARNING, "admin console: refused \"%s\" (not in admin_users)", p);
		return true;
	}
	char *db;
	switch (cmd.kind) {
	case ADMIN_EMPTY:
		pkt_begin(out, 'I'); /* EmptyQueryResponse */
		pkt_end(out);
		break;
	case ADMIN_SHOW_HELP:
		admin_show_help(out);
		break;
	case ADMIN_SHOW_VERSION:
		admin_show_version(out);
		break;
	case ADMIN_SHOW_CONFIG:
		admin_show_config(c, out);
		break;
	case ADMIN_SHOW_DATABASES:
		admin_show_databases(c, out);
		break;
	case ADMIN_SHOW_USERS:
		admin_show_users(c, out);
		break;
	case ADMIN_SHOW_POOLS:
		admin_show_pools(c, out);
		break;
	case ADMIN_SHOW_HOSTS:
		admin_show_hosts(c, out);
		break;
	case ADMIN_SHOW_LISTS:
		admin_show_lists(c, out);
		break;
	case ADMIN_SHOW_STATE:
		admin_show_state(c, out);
		break;
	case ADMIN_SHOW_STATS:
		admin_show_stats(c, out, 0);
		break;
	case ADMIN_SHOW_STATS_TOTALS:
		admin_show_stats(c, out, 1);
		break;
	case ADMIN_SHOW_STATS_AVERAGES:
		admin_show_stats(c, out, 2);
		break;
	case ADMIN_SHOW_MEM:
		admin_show_mem(c, out);
		break;
	case ADMIN_SHOW_CLIENTS:
		start_job(c, JOB_CLIENTS, NULL, 0);
		return false;
	case ADMIN_SHOW_SERVERS:
		start_job(c, JOB_SERVERS, NULL, 0);
		return false;
	case ADMIN_SHOW_UNKNOWN:
		admin_error(c, "42601", "unknown SHOW command: %s (SHOW HELP lists them)", p);
		break;
	case ADMIN_SET:
		cmd_set(c, cmd.key, cmd.value);
		break;
	case ADMIN_RELOAD:
		log_client(c, LL_INFO, "admin console: RELOAD");
		kill(getpid(), SIGHUP);
		admin_command_complete(out, "RELOAD");
		break;
	case ADMIN_PAUSE:
		if (!db_arg(c, q, false, &db))
			return true;
		admin_pools_do(db, 0);
		log_client(c, LL_INFO, "admin console: PAUSE %s", db ? db : "(all)");
		return wait_for(c, WAIT_PAUSE, db);
	case ADMIN_RESUME:
		if (!db_arg(c, q, false, &db))
			return true;
		admin_pools_do(db, 1);
		log_client(c, LL_INFO, "admin console: RESUME %s", db ? db : "(all)");
		free(db);
		admin_command_complete(out, "RESUME");
		break;
	case ADMIN_DISABLE:
	case ADMIN_ENABLE: {
		bool disable = cmd.kind == ADMIN_DISABLE;
		if (!db_arg(c, q, true, &db))
			return true;
		set_disabled(c->w->rt, db, disable);
		log_client(c, LL_INFO, "admin console: %s %s", disable ? "DISABLE" : "ENABLE", db);
		free(db);
		admin_command_complete(out, disable ? "DISABLE" : "ENABLE");
		break;
	}
	case ADMIN_RECONNECT:
		if (!db_arg(c, q, false, &db))
			return true;
		admin_pools_do(db, 2);
		log_client(c, LL_INFO, "admin console: RECONNECT %s", db ? db : "(all)");
		free(db);
		admin_command_complete(out, "RECONNECT");
		break;
	case ADMIN_WAIT_CLOSE:
		if (!db_arg(c, q, false, &db))
			return true;
		return wait_for(c, WAIT_CLOSE, db);
	case ADMIN_KILL_CLIENT:
		log_client(c, LL_INFO, "admin console: KILL_CLIENT C-%llu", cmd.client_id);
		start_job(c, JOB_KILL_CLIENT, NULL, cmd.client_id);
		return false;
	case ADMIN_KILL:
		if (!db_arg(c, q, true, &db))
			return true;
		log_client(c, LL_INFO, "admin console: KILL %s", db);
		start_job(c, JOB_KILL_DB, db, 0);
		free(db);
		return false;
	case ADMIN_SHUTDOWN: {
		static const enum shutdown_mode modes[] = {
		        [ADMIN_SHUTDOWN_FAST] = SHUTDOWN_FAST,
		        [ADMIN_SHUTDOWN_WAIT_CLIENTS] = SHUTDOWN_WAIT_CLIENTS,
		        [ADMIN_SHUTDOWN_WAIT_SERVERS] = SHUTDOWN_GRACEFUL,
		};
		static const char *const names[] = {"", " WAIT_FOR_CLIENTS", " WAIT_FOR_SERVERS"};
		log_client(c, LL_INFO, "admin console: SHUTDOWN%s", names[cmd.shutdown]);
		admin_command_complete(out, "SHUTDOWN");
		runtime_request_shutdown(c->w->rt, modes[cmd.shutdown]);
		break;
	}
	case ADMIN_SYNTAX:
		admin_error(c, "42601", "%s", cmd.error);
		break;
	case ADMIN_UNKNOWN:
		admin_error(c, "42601", "unknown command: %s (SHOW HELP lists them)", p);
		break;
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
