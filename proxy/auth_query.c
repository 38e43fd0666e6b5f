#include <config.h>

#include "proxy/auth_query.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/userlist.h"
#include "common/list.h"
#include "common/log.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/worker.h"

enum aq_state { AQ_CONNECTING, AQ_IDLE, AQ_BUSY };

/* One connection of a worker to one database, for lookups. */
struct aq_conn {
	struct list node; /* on w->auth_queries */
	struct worker *w;
	struct snapshot *snap; /* the configuration it was opened with */
	char *key; /* host, port and database */
	PGconn *pg;
	ev_io io;
	int io_fd;
	enum aq_state state;
	uint64_t since_usec;
	struct list waiting; /* struct aq_wait, oldest first */
	struct aq_wait *current; /* whose query runs */
	bool found; /* the running query returned the user's row */
	char *secret;
};

/* A client waiting for its lookup. */
struct aq_wait {
	struct list node;
	struct client *c; /* NULL once it left */
	struct aq_conn *conn;
	bool failed; /* the query raised an error */
};

static void aq_cb(struct ev_loop *loop, ev_io *io, int revents);

static void watch(struct aq_conn *q, bool rd, bool wr)
{
	struct ev_loop *loop = q->w->loop;
	int fd = PQsocket(q->pg);
	int events = (rd ? EV_READ : 0) | (wr ? EV_WRITE : 0);
	if (ev_is_active(&q->io) &&
	    (q->io_fd != fd || (q->io.events & (EV_READ | EV_WRITE)) != events))
		ev_io_stop(loop, &q->io);
	if (fd < 0 || !events)
		return;
	if (!ev_is_active(&q->io)) {
		ev_io_init(&q->io, aq_cb, fd, events);
		q->io.data = q;
		q->io_fd = fd;
		ev_io_start(loop, &q->io);
	}
}

static void deliver(struct aq_wait *wt, const char *secret, bool failed)
{
	struct client *c = wt->c;
	list_del(&wt->node);
	free(wt);
	if (c) {
		c->aq = NULL;
		client_auth_looked_up(c, secret, failed);
	}
}

static void conn_free(struct aq_conn *q)
{
	if (ev_is_active(&q->io))
		ev_io_stop(q->w->loop, &q->io);
	list_del(&q->node);
	PQfinish(q->pg);
	snapshot_unref(q->snap);
	free(q->key);
	if (q->secret) {
		secure_zero(q->secret, strlen(q->secret));
		free(q->secret);
	}
	free(q);
}

/* The connection failed: every waiting login fails, the connection goes. */
static void conn_fail(struct aq_conn *q, const char *why)
{
	log_warning("auth_query (%s): %s", q->key, why);
	struct list *n;
	while ((n = list_first(&q->waiting)))
		deliver(container_of(n, struct aq_wait, node), NULL, true);
	q->current = NULL;
	conn_free(q);
}

static void next_query(struct aq_conn *q)
{
	struct list *n = list_first(&q->waiting);
	if (!n) {
		q->state = AQ_IDLE;
		watch(q, true, false); /* notice the server going away */
		return;
	}
	struct aq_wait *wt = container_of(n, struct aq_wait, node);
	const char *user = wt->c ? wt->c->user : "";
	const char *values[1] = {user};
	q->current = wt;
	q->found = false;
	q->state = AQ_BUSY;
	q->since_usec = now_usec();
	if (!PQsendQueryParams(q->pg, q->snap->cfg->auth_query, 1, NULL, values, NULL, NULL, 0)) {
		conn_fail(q, PQerrorMessage(q->pg));
		return;
	}
	int f = PQflush(q->pg);
	if (f < 0) {
		conn_fail(q, PQerrorMessage(q->pg));
		return;
	}
	watch(q, true, f == 1);
}

static void take_result(struct aq_conn *q, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	const char *user = q->current && q->current->c ? q->current->c->user : NULL;
	if (st == PGRES_TUPLES_OK) {
		/* The row must be the user's, with a secret. */
		if (user && PQntuples(r) == 1 && PQnfields(r) >= 2 && !PQgetisnull(r, 0, 0) &&
		    !PQgetisnull(r, 0, 1) && strcmp(PQgetvalue(r, 0, 0), user) == 0 &&
		    *PQgetvalue(r, 0, 1)) {
			q->found = true;
			q->secret = xstrdup(PQgetvalue(r, 0, 1));
			/* The result's copy goes with PQclear: zero it first. */
			secure_zero(PQgetvalue(r, 0, 1), strlen(q->secret));
		} else if (PQntuples(r) > 1) {
			log_warning(
			        "auth_query returned %d rows for user \"%s\": treated as unknown",
			        PQntuples(r), user ? user : "?");
		}
	} else if (st != PGRES_COMMAND_OK) {
		const char *msg = PQresultErrorMessage(r);
		log_warning("auth_query failed: %s", msg && *msg ? msg : PQresStatus(st));
		q->found = false;
		if (q->current)
			q->current->failed = true;
	}
}

static void read_results(struct aq_conn *q)
{
	if (!PQconsumeInput(q->pg)) {
		conn_fail(q, PQerrorMessage(q->pg));
		return;
	}
	if (q->state != AQ_BUSY) {
		/* Idle: only an error or a notice can arrive; a closed
		 * connection shows as a failed PQconsumeInput above or here. */
		if (PQstatus(q->pg) != CONNECTION_OK)
			conn_fail(q, "connection lost");
		return;
	}
	while (!PQisBusy(q->pg)) {
		PGresult *r = PQgetResult(q->pg);
		if (!r) {
			struct aq_wait *wt = q->current;
			bool failed = wt && wt->failed;
			q->current = NULL;
			if (wt)
				deliver(wt, q->found ? q->secret : NULL, failed);
			if (q->secret) {
				secure_zero(q->secret, strlen(q->secret));
				free(q->secret);
				q->secret = NULL;
			}
			next_query(q);
			return;
		}
		take_result(q, r);
		PQclear(r);
	}
	watch(q, true, false);
}

static void connect_step(struct aq_conn *q)
{
	switch (PQconnectPoll(q->pg)) {
	case PGRES_POLLING_READING:
		watch(q, true, false);
		return;
	case PGRES_POLLING_WRITING:
		watch(q, false, true);
		return;
	case PGRES_POLLING_FAILED: {
		char why[512];
		snprintf(why, sizeof(why), "could not connect: %s", PQerrorMessage(q->pg));
		/* libpq's messages end with a newline */
		size_t n = strlen(why);
		while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
			why[--n] = '\0';
		conn_fail(q, why);
		return;
	}
	default:
		break;
	}
	if (PQsetnonblocking(q->pg, 1) != 0) {
		conn_fail(q, "could not make the connection non-blocking");
		return;
	}
	log_debug("auth_query (%s): connected", q->key);
	next_query(q);
}

static void aq_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct aq_conn *q = io->data;
	(void)loop;
	if (q->state == AQ_CONNECTING) {
		connect_step(q);
		return;
	}
	if (revents & EV_WRITE) {
		int f = PQflush(q->pg);
		if (f < 0) {
			conn_fail(q, PQerrorMessage(q->pg));
			return;
		}
		watch(q, true, f == 1);
	}
	if (revents & EV_READ)
		read_results(q);
}

/* libpq keywords for the lookup connection, from the [databases] entry
 * and auth_user's password in auth_file. */
static struct aq_conn *conn_open(struct worker *w, const struct db_entry *db, const char *dbname,
                                 const char *key)
{
	const struct config *cfg = w->snap->cfg;
	const char *password = userlist_lookup(w->snap->users, cfg->auth_user);
	char port[16], timeout[16];
	snprintf(port, sizeof(port), "%d", db->port > 0 ? db->port : 5432);
	snprintf(timeout, sizeof(timeout), "%d", (int)(cfg->server_connect_timeout + 0.999));
	static const char *const modes[] = {"disable", "allow",     "prefer",
	                                    "require", "verify-ca", "verify-full"};
	const char *keys[16], *vals[16];
	int n = 0;
#define KV(k, v)                                                                                   \
	do {                                                                                       \
		keys[n] = (k);                                                                     \
		vals[n] = (v);                                                                     \
		n++;                                                                               \
	} while (0)
	KV("host", db->host && *db->host ? db->host : "/var/run/postgresql");
	KV("port", port);
	KV("dbname", dbname);
	KV("user", cfg->auth_user);
	if (password && secret_kind_of(password) == SECRET_PLAIN)
		KV("password", password);
	/* search_path pinned: nothing a client sent reaches this session. */
	KV("options", "-c search_path=pg_catalog");
	KV("application_name", "pgmoat auth_query");
	KV("connect_timeout", timeout);
	KV("target_session_attrs", "read-write");
	KV("sslmode", modes[cfg->server_tls_sslmode]);
	if (cfg->server_tls_ca_file[0])
		KV("sslrootcert", cfg->server_tls_ca_file);
	if (cfg->server_tls_cert_file[0]) {
		KV("sslcert", cfg->server_tls_cert_file);
		KV("sslkey", cfg->server_tls_key_file);
	}
	KV(NULL, NULL);
#undef KV
	struct aq_conn *q = xcalloc(1, sizeof(*q));
	q->w = w;
	q->snap = w->snap;
	snapshot_ref(q->snap);
	q->key = xstrdup(key);
	q->state = AQ_CONNECTING;
	q->since_usec = now_usec();
	q->io_fd = -1;
	list_init(&q->waiting);
	list_append(&w->auth_queries, &q->node);
	q->pg = PQconnectStartParams(keys, vals, 0);
	return q;
}

void auth_query_lookup(struct client *c)
{
	struct worker *w = c->w;
	const struct config *cfg = w->snap->cfg;
	const char *name = cfg->auth_dbname[0] ? cfg->auth_dbname : c->dbname;
	const struct db_entry *db = config_find_db(cfg, name);
	if (!db) {
		log_client(c, LL_WARNING, "auth_query: no [databases] entry for %s", name);
		client_auth_looked_up(c, NULL, true);
		return;
	}
	const char *dbname = db->dbname ? db->dbname : name;
	char key[512];
	snprintf(key, sizeof(key), "%s:%d/%s", db->host ? db->host : "unix",
	         db->port > 0 ? db->port : 5432, dbname);
	struct aq_conn *q = NULL;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->auth_queries)
	{
		struct aq_conn *x = container_of(pos, struct aq_conn, node);
		if (strcmp(x->key, key) != 0)
			continue;
		/* Opened with an older configuration: replaced when idle. */
		if (x->snap != w->snap && x->state == AQ_IDLE) {
			conn_free(x);
			continue;
		}
		q = x;
		break;
	}
	bool fresh = !q;
	if (!q)
		q = conn_open(w, db, dbname, key);
	struct aq_wait *wt = xcalloc(1, sizeof(*wt));
	wt->c = c;
	wt->conn = q;
	c->aq = wt;
	list_append(&q->waiting, &wt->node);
	if (fresh) {
		if (!q->pg || PQstatus(q->pg) == CONNECTION_BAD) {
			conn_fail(q, q->pg ? PQerrorMessage(q->pg) : "out of memory");
			return;
		}
		connect_step(q);
	} else if (q->state == AQ_IDLE) {
		next_query(q);
	}
}

void auth_query_cancel(struct client *c)
{
	struct aq_wait *wt = c->aq;
	if (!wt)
		return;
	c->aq = NULL;
	wt->c = NULL;
	struct aq_conn *q = wt->conn;
	/* A query in flight finishes and is dropped; a queued one goes now. */
	if (q && q->current != wt) {
		list_del(&wt->node);
		free(wt);
	}
}

void auth_query_sweep(struct worker *w, uint64_t now)
{
	double limit = w->snap->cfg->server_connect_timeout;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &w->auth_queries)
	{
		struct aq_conn *q = container_of(pos, struct aq_conn, node);
		if (q->state != AQ_IDLE && usec_since(now, q->since_usec) > limit * 1e6)
			conn_fail(q,
			          q->state == AQ_CONNECTING ? "connect timed out"
			                                    : "query timed out");
	}
}

void auth_query_close_all(struct worker *w)
{
	struct list *n;
	while ((n = list_first(&w->auth_queries)))
		conn_fail(container_of(n, struct aq_conn, node), "pgmoat is stopping");
}
