#include <config.h>

#include "proxy/health.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/list.h"
#include "common/log.h"
#include "common/util.h"
#include "pool/pool.h"
#include "proxy/pqconn.h"

/* One statement: in recovery, WAL position in bytes (replayed on a
 * replica, current on a primary) and a replica's replay delay (0 once it
 * replayed all it received).  Everything schema-qualified, every type
 * explicit: the probe user's search_path must not matter. */
static const char probe_sql[] =
        "SELECT s.r, "
        "(COALESCE(CASE WHEN s.r THEN pg_catalog.pg_last_wal_replay_lsn() "
        "ELSE pg_catalog.pg_current_wal_lsn() END, '0/0'::pg_catalog.pg_lsn) "
        "OPERATOR(pg_catalog.-) '0/0'::pg_catalog.pg_lsn)::pg_catalog.numeric(20,0), "
        "(CASE WHEN NOT s.r THEN 0::pg_catalog.numeric "
        "WHEN pg_catalog.pg_last_wal_receive_lsn() IS NULL "
        "OR pg_catalog.pg_last_wal_receive_lsn() OPERATOR(pg_catalog.=) "
        "pg_catalog.pg_last_wal_replay_lsn() THEN 0::pg_catalog.numeric "
        "ELSE COALESCE(EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) "
        "pg_catalog.pg_last_xact_replay_timestamp())::pg_catalog.numeric, "
        "0::pg_catalog.numeric) END)::pg_catalog.float8 "
        "FROM (SELECT pg_catalog.pg_is_in_recovery() AS r) AS s";

/* How the probes log in; a change reopens the connections. */
struct probe_params {
	char *user;
	char *dbname;
	char *password; /* NULL: none */
	int sslmode; /* enum tls_mode */
	char *sslrootcert, *sslcert, *sslkey; /* "" : none */
	int connect_timeout; /* seconds */
};

/* One host, probed over one connection kept open between probes. */
struct probe {
	struct health *h;
	char *host; /* NULL: the default unix socket directory */
	int port;
	uint64_t key;
	char *label; /* "host:port", for logs */
	bool listed; /* seen by the health_configure() that is running */
	struct pqconn pc;
	unsigned conn_gen; /* h->conn_gen when it was opened */
	ev_timer deadline; /* the running probe's health_check_timeout */
	bool busy; /* a probe is running */
	uint64_t round; /* the round it belongs to */
	/* What the running probe got. */
	bool got_row;
	bool r_primary;
	uint64_t r_lsn;
	double r_lag;
	char *error; /* the query's error, NULL if none */
	int fails; /* failed probes in a row */
	bool split_warned; /* in a set of primaries already warned about */
	struct host_health st; /* host and lag_bytes are filled in per view */
};

/* The hosts of one [databases] entry: lag is measured against, and two
 * primaries are looked for among, the hosts of the same entry. */
struct probe_group {
	int n;
	struct probe *p[DB_MAX_HOSTS];
};

struct health {
	struct ev_loop *loop;
	void (*publish)(struct health_view *v, void *arg);
	void *arg;
	ev_timer tick; /* every health_check_period: a round */
	ev_timer round_end; /* half a period into a round: it ends */
	struct probe **probes;
	int n;
	struct probe_group *groups;
	int n_groups;
	double period, timeout;
	int failures;
	struct probe_params params;
	unsigned conn_gen;
	uint64_t round; /* the latest round started */
	uint64_t published_round; /* the latest round a view went out for */
	uint64_t gen; /* of the latest view */
	bool starting; /* start_round() runs: no round ends meanwhile */
};

uint64_t health_key(const char *host, int port)
{
	return pool_host_key(host, port); /* the pools' key for the same pair */
}

const struct host_health *health_find(const struct health_view *v, uint64_t key)
{
	if (!v)
		return NULL;
	for (int i = 0; i < v->n; i++)
		if (v->hosts[i].key == key)
			return &v->hosts[i];
	return NULL;
}

void health_view_ref(struct health_view *v)
{
	atomic_fetch_add(&v->refs, 1);
}

void health_view_unref(struct health_view *v)
{
	if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
		return;
	for (int i = 0; i < v->n; i++)
		free(v->hosts[i].host);
	free(v);
}

/* --- views */

/* The highest WAL position of a primary that is up and shares an entry
 * with `p`; false if there is none. */
static bool primary_lsn_for(const struct health *h, const struct probe *p, uint64_t *lsn)
{
	bool found = false;
	for (int g = 0; g < h->n_groups; g++) {
		const struct probe_group *grp = &h->groups[g];
		bool member = false;
		for (int i = 0; i < grp->n && !member; i++)
			member = grp->p[i] == p;
		if (!member)
			continue;
		for (int i = 0; i < grp->n; i++) {
			const struct probe *q = grp->p[i];
			if (q == p || !q->st.known || !q->st.up || !q->st.primary)
				continue;
			if (!found || q->st.lsn > *lsn)
				*lsn = q->st.lsn;
			found = true;
		}
	}
	return found;
}

/* Whether `p` answered as the primary to its last probe (a primary that
 * just failed a probe, still up for a few more, does not count: it is
 * likely the one that was stopped before its replica was promoted). */
static bool answers_primary(const struct probe *p)
{
	return p->st.known && p->st.up && p->st.primary && p->fails == 0;
}

/* Two hosts of one entry both answering as the primary: warned about once
 * for as long as it lasts. */
static void check_primaries(struct health *h)
{
	for (int i = 0; i < h->n; i++) {
		struct probe *p = h->probes[i];
		if (!p->st.known || !p->st.up || !p->st.primary)
			p->split_warned = false;
	}
	for (int g = 0; g < h->n_groups; g++) {
		const struct probe_group *grp = &h->groups[g];
		int count = 0;
		bool fresh = false;
		char names[1024] = "";
		size_t len = 0;
		for (int i = 0; i < grp->n; i++) {
			const struct probe *q = grp->p[i];
			if (!answers_primary(q))
				continue;
			count++;
			fresh |= !q->split_warned;
			int w = snprintf(names + len, sizeof(names) - len, "%s%s", len ? ", " : "",
			                 q->label);
			if (w > 0 && (size_t)w < sizeof(names) - len)
				len += (size_t)w;
		}
		if (count < 2 || !fresh)
			continue;
		log_warning("health: %d hosts of one database report being the primary: %s", count,
		            names);
		for (int i = 0; i < grp->n; i++) {
			struct probe *q = grp->p[i];
			if (answers_primary(q))
				q->split_warned = true;
		}
	}
}

static void publish_view(struct health *h)
{
	check_primaries(h);
	struct health_view *v = xcalloc(1, sizeof(*v) + (size_t)h->n * sizeof(v->hosts[0]));
	atomic_init(&v->refs, 1);
	v->gen = ++h->gen;
	v->n = h->n;
	for (int i = 0; i < h->n; i++) {
		struct probe *p = h->probes[i];
		uint64_t prim = 0;
		p->st.lag_bytes = 0;
		if (p->st.known && !p->st.primary && primary_lsn_for(h, p, &prim) &&
		    prim > p->st.lsn)
			p->st.lag_bytes = prim - p->st.lsn;
		v->hosts[i] = p->st;
		v->hosts[i].host = p->host ? xstrdup(p->host) : NULL;
	}
	if (h->publish)
		h->publish(v, h->arg);
	else
		health_view_unref(v);
}

/* A round ends, and a view goes out, when none of its probes runs any
 * more, or half a period after it began: a host that hangs (its probe runs
 * until health_check_timeout, maybe several periods) delays neither the
 * views nor the news of the other hosts.  What a late probe finds goes out
 * with the next view.  The first round is waited for whole, so that the
 * first view has heard from every host (or seen it time out). */
static void round_check(struct health *h, uint64_t round)
{
	if (h->starting || round <= h->published_round)
		return;
	for (int i = 0; i < h->n; i++)
		if (h->probes[i]->busy && h->probes[i]->round == round)
			return;
	h->published_round = round;
	ev_timer_stop(h->loop, &h->round_end);
	publish_view(h);
}

/* --- one probe */

static void record_failure(struct probe *p, const char *why)
{
	struct health *h = p->h;
	p->fails++;
	if (p->st.up && p->fails >= h->failures) {
		p->st.up = false;
		log_warning("health: %s is down: %s", p->label, why);
	} else {
		log_debug("health: %s: probe failed (%d in a row): %s", p->label, p->fails, why);
	}
}

static void record_success(struct probe *p)
{
	if (!p->st.up)
		log_info("health: %s is %s", p->label, p->st.known ? "back up" : "up");
	if (!p->st.known || p->st.primary != p->r_primary)
		log_info("health: %s is now %s", p->label,
		         p->r_primary ? "the primary" : "a replica");
	p->fails = 0;
	p->st.up = true;
	p->st.known = true;
	p->st.primary = p->r_primary;
	p->st.lsn = p->r_lsn;
	p->st.lag_seconds = p->r_primary || p->r_lag < 0 ? 0 : p->r_lag;
	p->st.probed_usec = now_usec();
}

/* The running probe ended: `why` NULL on success.  Ends its round if it
 * was the last of it. */
static void probe_done(struct probe *p, const char *why)
{
	struct health *h = p->h;
	ev_timer_stop(h->loop, &p->deadline);
	p->busy = false;
	free(p->error);
	p->error = NULL;
	if (why) {
		char msg[512];
		pqconn_one_line(msg, sizeof(msg), why);
		pqconn_close(&p->pc);
		record_failure(p, msg[0] ? msg : "failed");
	} else {
		record_success(p);
	}
	round_check(h, p->round);
}

static void send_probe(struct probe *p)
{
	p->got_row = false;
	pqconn_query(&p->pc, probe_sql, 0, NULL);
}

static void on_result(struct pqconn *pc, PGresult *r)
{
	struct probe *p = pc->arg;
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_TUPLES_OK) {
		if (PQntuples(r) != 1 || PQnfields(r) != 3 || PQgetisnull(r, 0, 0) ||
		    PQgetisnull(r, 0, 1) || PQgetisnull(r, 0, 2)) {
			if (!p->error)
				p->error = xstrdup("unexpected answer to the probe");
			return;
		}
		const char *rec = PQgetvalue(r, 0, 0);
		const char *lsn = PQgetvalue(r, 0, 1);
		const char *lag = PQgetvalue(r, 0, 2);
		char *end1, *end2;
		unsigned long long l = strtoull(lsn, &end1, 10);
		double d = strtod(lag, &end2);
		if ((strcmp(rec, "t") != 0 && strcmp(rec, "f") != 0) || end1 == lsn || *end1 ||
		    lsn[0] == '-' || end2 == lag || *end2) {
			if (!p->error)
				p->error = xstrdup("unexpected answer to the probe");
			return;
		}
		p->got_row = true;
		p->r_primary = rec[0] == 'f';
		p->r_lsn = (uint64_t)l;
		p->r_lag = d;
	} else if (!p->error) {
		const char *msg = PQresultErrorMessage(r);
		p->error = xstrdup(msg && *msg ? msg : PQresStatus(st));
	}
}

/* The probe's answer is complete. */
static void on_done(struct pqconn *pc)
{
	struct probe *p = pc->arg;
	if (p->error) {
		char *e = p->error;
		p->error = NULL;
		probe_done(p, e);
		free(e);
	} else if (!p->got_row) {
		probe_done(p, "no answer to the probe");
	} else {
		probe_done(p, NULL);
	}
}

static void on_connected(struct pqconn *pc)
{
	struct probe *p = pc->arg;
	log_debug("health: %s: connected", p->label);
	send_probe(p);
}

static void on_failed(struct pqconn *pc, const char *why)
{
	struct probe *p = pc->arg;
	if (p->busy)
		probe_done(p, why);
	else
		log_debug("health: %s: connection lost between probes (%s)", p->label, why);
}

static const struct pqconn_ops probe_ops = {on_connected, on_result, on_done, on_failed};

static void probe_connect(struct probe *p)
{
	const struct probe_params *pp = &p->h->params;
	struct pqconn_target t = {
	        .host = p->host,
	        .port = p->port,
	        .dbname = pp->dbname,
	        .user = pp->user,
	        .password = pp->password,
	        .application_name = "pgmoat health",
	        .connect_timeout = pp->connect_timeout,
	        .sslmode = pp->sslmode,
	        .sslrootcert = pp->sslrootcert,
	        .sslcert = pp->sslcert,
	        .sslkey = pp->sslkey,
	};
	p->conn_gen = p->h->conn_gen;
	pqconn_open(&p->pc, &t);
}

/* The deadline passed.  The loop may have been held up (a long callback
 * elsewhere on the control thread) while the answer was already waiting:
 * take what the socket has before calling it a failure. */
static void deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct probe *p = container_of(t, struct probe, deadline);
	struct pqconn *pc = &p->pc;
	for (int i = 0; i < 32 && p->busy && pc->pg && ev_is_active(&pc->io); i++) {
		struct pollfd pfd = {.fd = pc->io_fd, .events = 0};
		if (pc->io.events & EV_READ)
			pfd.events |= POLLIN;
		if (pc->io.events & EV_WRITE)
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, 0) != 1)
			break;
		int revents_io = 0;
		if (pfd.revents & (POLLIN | POLLERR | POLLHUP))
			revents_io |= pc->io.events & EV_READ ? EV_READ : 0;
		if (pfd.revents & (POLLOUT | POLLERR | POLLHUP))
			revents_io |= pc->io.events & EV_WRITE ? EV_WRITE : 0;
		if (!revents_io)
			break;
		pqconn_step(pc, revents_io);
	}
	if (!p->busy)
		return;
	char why[64];
	snprintf(why, sizeof(why), "%s timed out after %.3g s",
	         pc->state == PQCONN_CONNECTING ? "connection" : "probe", p->h->timeout);
	probe_done(p, why);
}

/* Starts a probe of round `round`, unless one is still running. */
static void probe_start(struct probe *p, uint64_t round)
{
	struct health *h = p->h;
	if (p->busy)
		return;
	p->busy = true;
	p->round = round;
	free(p->error);
	p->error = NULL;
	ev_timer_set(&p->deadline, h->timeout, 0.);
	ev_timer_start(h->loop, &p->deadline);
	if (p->pc.state != PQCONN_CLOSED && p->conn_gen != h->conn_gen)
		pqconn_close(&p->pc); /* opened with settings a reload changed */
	if (p->pc.state == PQCONN_IDLE && PQstatus(p->pc.pg) == CONNECTION_OK) {
		send_probe(p);
		return;
	}
	probe_connect(p);
}

static struct probe *probe_new(struct health *h, const char *host, int port)
{
	struct probe *p = xcalloc(1, sizeof(*p));
	p->h = h;
	p->host = host ? xstrdup(host) : NULL;
	p->port = port;
	p->key = health_key(host, port);
	size_t len = strlen(host ? host : PQCONN_SOCKDIR) + 16;
	p->label = xmalloc(len);
	snprintf(p->label, len, "%s:%d", host ? host : PQCONN_SOCKDIR, port);
	pqconn_init(&p->pc, h->loop, &probe_ops, p, p->label);
	ev_timer_init(&p->deadline, deadline_cb, 0., 0.);
	p->st.key = p->key;
	p->st.port = port;
	p->st.up = true; /* no failed probe yet */
	return p;
}

static void probe_free(struct probe *p)
{
	ev_timer_stop(p->h->loop, &p->deadline);
	pqconn_close(&p->pc);
	free(p->error);
	free(p->host);
	free(p->label);
	free(p);
}

/* --- rounds */

static void start_round(struct health *h)
{
	ev_timer_stop(h->loop, &h->round_end);
	if (h->published_round < h->round) {
		/* The last round is not over (a reload came): it ends now. */
		h->published_round = h->round;
		publish_view(h);
	}
	uint64_t round = ++h->round;
	h->starting = true;
	for (int i = 0; i < h->n; i++)
		probe_start(h->probes[i], round);
	h->starting = false;
	if (round > 1) {
		ev_timer_set(&h->round_end, h->period / 2, 0.);
		ev_timer_start(h->loop, &h->round_end);
	}
	round_check(h, round);
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct health *h = container_of(t, struct health, tick);
	if (h->round == 1 && h->published_round == 0)
		return; /* the first round is waited for whole */
	start_round(h);
}

static void round_end_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct health *h = container_of(t, struct health, round_end);
	if (h->published_round < h->round) {
		h->published_round = h->round;
		publish_view(h);
	}
}

struct health *health_new(struct ev_loop *loop, void (*publish)(struct health_view *v, void *arg),
                          void *arg)
{
	struct health *h = xcalloc(1, sizeof(*h));
	h->loop = loop;
	h->publish = publish;
	h->arg = arg;
	ev_timer_init(&h->tick, tick_cb, 1., 1.);
	ev_timer_init(&h->round_end, round_end_cb, 0.5, 0.);
	h->period = 1;
	h->timeout = 2;
	h->failures = 2;
	return h;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void params_free(struct probe_params *pp)
{
	free(pp->user);
	free(pp->dbname);
	if (pp->password) {
		secure_zero(pp->password, strlen(pp->password));
		free(pp->password);
	}
	free(pp->sslrootcert);
	free(pp->sslcert);
	free(pp->sslkey);
	memset(pp, 0, sizeof(*pp));
}

static bool params_equal(const struct probe_params *a, const struct probe_params *b)
{
	return same_str(a->user, b->user) && same_str(a->dbname, b->dbname) &&
	        same_str(a->password, b->password) && a->sslmode == b->sslmode &&
	        same_str(a->sslrootcert, b->sslrootcert) && same_str(a->sslcert, b->sslcert) &&
	        same_str(a->sslkey, b->sslkey) && a->connect_timeout == b->connect_timeout;
}

static struct probe *find_probe(struct health *h, const char *host, int port)
{
	for (int i = 0; i < h->n; i++)
		if (h->probes[i]->port == port && same_str(h->probes[i]->host, host))
			return h->probes[i];
	return NULL;
}

void health_configure(struct health *h, const struct config *cfg, const struct userlist *users)
{
	/* Called outside the loop's callbacks too (start-up, reload): timers
	 * set now must count from now. */
	ev_now_update(h->loop);
	h->period = cfg->health_check_period > 0 ? cfg->health_check_period : 1;
	h->timeout = cfg->health_check_timeout > 0 ? cfg->health_check_timeout : 2;
	h->failures = cfg->health_check_failures > 0 ? cfg->health_check_failures : 1;

	struct probe_params np = {0};
	const char *user = cfg->health_check_user ? cfg->health_check_user : "postgres";
	const char *secret = userlist_lookup(users, user);
	np.user = xstrdup(user);
	np.dbname = xstrdup(cfg->health_check_dbname ? cfg->health_check_dbname : "postgres");
	np.password = secret && secret_kind_of(secret) == SECRET_PLAIN ? xstrdup(secret) : NULL;
	np.sslmode = cfg->server_tls_sslmode;
	np.sslrootcert = xstrdup(cfg->server_tls_ca_file ? cfg->server_tls_ca_file : "");
	np.sslcert = xstrdup(cfg->server_tls_cert_file ? cfg->server_tls_cert_file : "");
	np.sslkey = xstrdup(cfg->server_tls_key_file ? cfg->server_tls_key_file : "");
	np.connect_timeout = (int)(h->timeout + 0.999);
	if (np.connect_timeout < 2)
		np.connect_timeout = 2; /* libpq's minimum */
	if (params_equal(&np, &h->params)) {
		params_free(&np);
	} else {
		params_free(&h->params);
		h->params = np;
		h->conn_gen++;
	}

	/* The hosts of every entry with several, each once. */
	for (int i = 0; i < h->n; i++)
		h->probes[i]->listed = false;
	free(h->groups);
	h->groups = NULL;
	h->n_groups = 0;
	size_t n_multi = 0;
	for (size_t d = 0; d < cfg->n_dbs; d++)
		n_multi += cfg->dbs[d].n_hosts > 1;
	if (n_multi)
		h->groups = xcalloc(n_multi, sizeof(*h->groups));
	for (size_t d = 0; d < cfg->n_dbs; d++) {
		const struct db_entry *db = &cfg->dbs[d];
		if (db->n_hosts <= 1)
			continue;
		struct probe_group *grp = &h->groups[h->n_groups++];
		for (int i = 0; i < db->n_hosts && i < DB_MAX_HOSTS; i++) {
			const char *host = db->hosts[i].host;
			int port = db->hosts[i].port > 0 ? db->hosts[i].port : 5432;
			struct probe *p = find_probe(h, host, port);
			if (!p) {
				h->probes = xrealloc(h->probes,
				                     (size_t)(h->n + 1) * sizeof(*h->probes));
				p = h->probes[h->n++] = probe_new(h, host, port);
			}
			p->listed = true;
			bool dup = false;
			for (int j = 0; j < grp->n && !dup; j++)
				dup = grp->p[j] == p;
			if (!dup)
				grp->p[grp->n++] = p;
		}
	}
	int kept = 0;
	for (int i = 0; i < h->n; i++) {
		struct probe *p = h->probes[i];
		if (p->listed) {
			h->probes[kept++] = p;
		} else {
			log_info("health: %s is no longer probed", p->label);
			probe_free(p);
		}
	}
	h->n = kept;

	ev_timer_stop(h->loop, &h->tick);
	if (h->n > 0) {
		ev_timer_set(&h->tick, h->period, h->period);
		ev_timer_start(h->loop, &h->tick);
	}
	/* New hosts are probed at once (and the others with them); with no
	 * host at all, one empty view says so. */
	start_round(h);
}

void health_free(struct health *h)
{
	if (!h)
		return;
	ev_timer_stop(h->loop, &h->tick);
	ev_timer_stop(h->loop, &h->round_end);
	for (int i = 0; i < h->n; i++)
		probe_free(h->probes[i]);
	free(h->probes);
	free(h->groups);
	params_free(&h->params);
	free(h);
}
