#include <config.h>

#include "proxy/auth_query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/userlist.h"
#include "common/list.h"
#include "common/log.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/pqconn.h"
#include "proxy/worker.h"

/* One connection of a worker to one database, for lookups. */
struct aq_conn {
	struct list node; /* on w->auth_queries */
	struct worker *w;
	struct snapshot *snap; /* the configuration it was opened with */
	char *key; /* host, port and database */
	struct pqconn pc;
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
	pqconn_close(&q->pc);
	list_del(&q->node);
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
	if (!n)
		return; /* idle: pqconn notices the server going away */
	struct aq_wait *wt = container_of(n, struct aq_wait, node);
	const char *user = wt->c ? wt->c->user : "";
	const char *values[1] = {user};
	q->current = wt;
	q->found = false;
	q->since_usec = now_usec();
	pqconn_query(&q->pc, q->snap->cfg->auth_query, 1, values);
}

static void on_result(struct pqconn *pc, PGresult *r)
{
	struct aq_conn *q = pc->arg;
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

/* The lookup is over: its client gets the answer, the next one runs. */
static void on_done(struct pqconn *pc)
{
	struct aq_conn *q = pc->arg;
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
}

static void on_connected(struct pqconn *pc)
{
	struct aq_conn *q = pc->arg;
	log_debug("auth_query (%s): connected", q->key);
	next_query(q);
}

static void on_failed(struct pqconn *pc, const char *why)
{
	conn_fail(pc->arg, why);
}

static const struct pqconn_ops aq_ops = {on_connected, on_result, on_done, on_failed};

static struct aq_conn *conn_new(struct worker *w, const char *key)
{
	struct aq_conn *q = xcalloc(1, sizeof(*q));
	q->w = w;
	q->snap = w->snap;
	snapshot_ref(q->snap);
	q->key = xstrdup(key);
	q->since_usec = now_usec();
	list_init(&q->waiting);
	list_append(&w->auth_queries, &q->node);
	pqconn_init(&q->pc, w->loop, &aq_ops, q, q->key);
	return q;
}

/* The lookup connection: the [databases] entry's address, auth_user with
 * its password from auth_file, the server TLS settings. */
static void conn_start(struct aq_conn *q, const struct db_entry *db, const char *dbname)
{
	const struct config *cfg = q->snap->cfg;
	const char *password = userlist_lookup(q->snap->users, cfg->auth_user);
	struct pqconn_target t = {
	        .host = db->host,
	        .port = db->port,
	        .dbname = dbname,
	        .user = cfg->auth_user,
	        .password = password && secret_kind_of(password) == SECRET_PLAIN ? password : NULL,
	        /* search_path pinned: nothing a client sent reaches this session. */
	        .options = "-c search_path=pg_catalog",
	        .application_name = "pgmoat auth_query",
	        .target_session_attrs = "read-write",
	        .connect_timeout = (int)(cfg->server_connect_timeout + 0.999),
	        .sslmode = cfg->server_tls_sslmode,
	        .sslrootcert = cfg->server_tls_ca_file,
	        .sslcert = cfg->server_tls_cert_file,
	        .sslkey = cfg->server_tls_key_file,
	};
	pqconn_open(&q->pc, &t);
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
		if (x->snap != w->snap && x->pc.state == PQCONN_IDLE && !x->current) {
			conn_free(x);
			continue;
		}
		q = x;
		break;
	}
	bool fresh = !q;
	if (!q)
		q = conn_new(w, key);
	struct aq_wait *wt = xcalloc(1, sizeof(*wt));
	wt->c = c;
	wt->conn = q;
	c->aq = wt;
	list_append(&q->waiting, &wt->node);
	if (fresh)
		conn_start(q, db, dbname);
	else if (q->pc.state == PQCONN_IDLE && !q->current)
		next_query(q);
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
		if (q->pc.state != PQCONN_IDLE && usec_since(now, q->since_usec) > limit * 1e6)
			conn_fail(q,
			          q->pc.state == PQCONN_CONNECTING ? "connect timed out"
			                                           : "query timed out");
	}
}

void auth_query_close_all(struct worker *w)
{
	struct list *n;
	while ((n = list_first(&w->auth_queries)))
		conn_fail(container_of(n, struct aq_conn, node), "pgmoat is stopping");
}
