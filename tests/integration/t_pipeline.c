/* libpq pipeline mode through transaction pooling: 50 clients queue 100
 * queries at a time through a pool of 5 and every result comes back to the
 * right client in the right order; an error in the middle of a pipeline
 * aborts the queries up to the next Sync only, also when the error reaches
 * the client before the rest of the pipeline is sent, and the connection
 * and the server stay usable. */
#include <config.h>

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/lib/gate.h"
#include "tests/lib/harness.h"

#define CLIENTS 50
#define QUERIES 100 /* queued at a time */
#define ROUNDS 2 /* one Sync after all of them, then one every 10 */
#define POOL 5

#define VALUE_SQL "select $1::int * 1000 + $2::int, $3::text"

struct client {
	int id;
	const char *conninfo;
	struct h_gate *gate;
	pthread_t thread;
	bool connected;
	int right, wrong; /* query results */
	int syncs, bad_syncs;
	char error[256];
};

/* Keeps the first error of a client: `what` about query `idx` (-1: none). */
static void note(struct client *pc, const char *what, int idx, const char *detail)
{
	if (pc->error[0])
		return;
	if (idx >= 0)
		snprintf(pc->error, sizeof pc->error, "client %d, %s %d: %s", pc->id, what, idx,
		         detail);
	else
		snprintf(pc->error, sizeof pc->error, "client %d, %s: %s", pc->id, what, detail);
}

static bool send_query(PGconn *c, int client, int idx)
{
	char a[16], b[16], t[32];
	snprintf(a, sizeof a, "%d", client);
	snprintf(b, sizeof b, "%d", idx);
	snprintf(t, sizeof t, "c%d-q%d", client, idx);
	const char *p[3] = {a, b, t};
	return PQsendQueryParams(c, VALUE_SQL, 3, NULL, p, NULL, NULL, 0);
}

/* The result of query `idx`, then the NULL that ends it. */
static void read_query(PGconn *c, struct client *pc, int idx)
{
	PGresult *r = PQgetResult(c);
	char want_n[16], want_t[32];
	snprintf(want_n, sizeof want_n, "%d", pc->id * 1000 + idx);
	snprintf(want_t, sizeof want_t, "c%d-q%d", pc->id, idx);
	bool right = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	        PQnfields(r) == 2 && strcmp(PQgetvalue(r, 0, 0), want_n) == 0 &&
	        strcmp(PQgetvalue(r, 0, 1), want_t) == 0;
	if (right) {
		pc->right++;
	} else {
		pc->wrong++;
		note(pc, "query", idx, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	}
	PQclear(r);
	r = PQgetResult(c);
	if (r) {
		note(pc, "a second result for query", idx, PQresStatus(PQresultStatus(r)));
		pc->wrong++;
		PQclear(r);
	}
}

static void read_sync(PGconn *c, struct client *pc, int idx)
{
	PGresult *r = PQgetResult(c);
	if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
		pc->syncs++;
	} else {
		note(pc, "Sync after query", idx, r ? PQresStatus(PQresultStatus(r)) : "no result");
		pc->bad_syncs++;
	}
	PQclear(r);
}

/* One round: QUERIES queries queued, a Sync after every `every` of them
 * (and after the last), then every result read and checked. */
static bool round_trip(PGconn *c, struct client *pc, int first, int every)
{
	for (int i = 0; i < QUERIES; i++) {
		if (!send_query(c, pc->id, first + i)) {
			note(pc, "sending query", first + i, PQerrorMessage(c));
			return false;
		}
		if ((i + 1) % every == 0 || i + 1 == QUERIES) {
			if (!PQpipelineSync(c)) {
				note(pc, "sending a Sync after query", first + i,
				     PQerrorMessage(c));
				return false;
			}
		}
	}
	for (int i = 0; i < QUERIES; i++) {
		read_query(c, pc, first + i);
		if ((i + 1) % every == 0 || i + 1 == QUERIES)
			read_sync(c, pc, first + i);
		if (PQstatus(c) != CONNECTION_OK)
			return false;
	}
	return true;
}

/* Nothing here prints: results go to `pc`. */
static void *client_thread(void *arg)
{
	struct client *pc = arg;
	PGconn *c = PQconnectdb(pc->conninfo);
	pc->connected = c && PQstatus(c) == CONNECTION_OK;
	if (!pc->connected)
		note(pc, "connect", -1, PQerrorMessage(c));
	h_gate_arrive(pc->gate, false);
	if (pc->connected && h_gate_wait_open(pc->gate)) {
		bool good = PQenterPipelineMode(c);
		for (int round = 0; good && round < ROUNDS; round++)
			good = round_trip(c, pc, round * QUERIES, round == 0 ? QUERIES : 10);
		if (good && !PQexitPipelineMode(c))
			note(pc, "leaving pipeline mode", -1, PQerrorMessage(c));
	}
	PQfinish(c);
	h_gate_arrive(pc->gate, true);
	return NULL;
}

struct watch {
	struct h_pg *pg;
	struct h_gate *gate;
	int want_arrived; /* 0: wait for the threads to finish */
	int max_backends, samples;
};

/* Samples the backend count; true once the threads are where we wait for. */
static bool progress(void *arg)
{
	struct watch *w = arg;
	int n = h_pg_count_backends(w->pg, "app");
	if (n > w->max_backends)
		w->max_backends = n;
	w->samples++;
	bool there = w->want_arrived ? h_gate_count(w->gate, false) >= w->want_arrived
	                             : h_gate_count(w->gate, true) >= CLIENTS;
	return there;
}

static void many_clients(struct h_moat *m, struct h_pg *pg)
{
	static struct client pcs[CLIENTS];
	struct h_gate gate;
	h_gate_init(&gate, 120);
	char *base = h_moat_conninfo(m, "app", "app", "app");
	char *ci = h_strdupf("%s connect_timeout=60", base);
	free(base);
	for (int i = 0; i < CLIENTS; i++) {
		pcs[i] = (struct client){.id = i, .conninfo = ci, .gate = &gate};
		if (pthread_create(&pcs[i].thread, NULL, client_thread, &pcs[i]) != 0)
			h_bail("could not start client thread %d", i);
	}
	struct watch w = {.pg = pg, .gate = &gate, .want_arrived = CLIENTS};
	bool arrived = h_wait_until(progress, &w, 90);
	int connected = 0;
	for (int i = 0; i < CLIENTS; i++)
		connected += pcs[i].connected;
	int at_login = h_pg_count_backends(pg, "app");
	ok(arrived && connected == CLIENTS && at_login <= POOL,
	   "%d of %d clients logged in at once; PostgreSQL has %d backends for them", connected,
	   CLIENTS, at_login);

	double t0 = h_now();
	h_gate_open(&gate);
	w.want_arrived = 0;
	if (!h_wait_until(progress, &w, gate.deadline - h_now() + 30))
		h_bail("the client threads did not finish");
	for (int i = 0; i < CLIENTS; i++)
		pthread_join(pcs[i].thread, NULL);
	diag("%d pipelined queries in %.1f s", CLIENTS * QUERIES * ROUNDS, h_now() - t0);

	int right = 0, wrong = 0, syncs = 0, bad_syncs = 0, errors = 0;
	for (int i = 0; i < CLIENTS; i++) {
		right += pcs[i].right;
		wrong += pcs[i].wrong;
		syncs += pcs[i].syncs;
		bad_syncs += pcs[i].bad_syncs;
		if (pcs[i].error[0] && errors++ < 5)
			h_diag_text("  ", pcs[i].error);
	}
	int want_syncs = CLIENTS * (1 + QUERIES / 10);
	ok(right == CLIENTS * QUERIES * ROUNDS && wrong == 0,
	   "every result is the right one for its client and query (%d right, %d wrong)", right,
	   wrong);
	ok(syncs == want_syncs && bad_syncs == 0 && errors == 0,
	   "every Sync answered in its place (%d of %d), no client saw an error", syncs,
	   want_syncs);
	ok(w.max_backends >= 1 && w.max_backends <= POOL,
	   "PostgreSQL never had more than %d backends for app during the run (max %d, %d "
	   "samples)",
	   POOL, w.max_backends, w.samples);
	int at_end = h_pg_count_backends(pg, "app");
	ok(at_end >= 1 && at_end <= POOL, "nor at the end (%d)", at_end);
	free(ci);
	h_gate_destroy(&gate);
}

/* --- an error in the middle of a pipeline --- */

/* The next result of a pipeline within `timeout` s; NULL at the end of a
 * query's results, and NULL with *late set if nothing came in time. */
static PGresult *result_within(PGconn *c, double timeout, bool *late)
{
	double end = h_now() + timeout;
	for (;;) {
		PQconsumeInput(c); /* a lost connection shows in the results */
		if (!PQisBusy(c))
			return PQgetResult(c);
		double left = end - h_now();
		if (left <= 0 || PQsocket(c) < 0) {
			*late = true;
			return NULL;
		}
		struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
		poll(&p, 1, (int)(left * 1000) + 1);
	}
}

#define ABORT_QUERIES 50
#define ABORT_GROUP 10
#define ABORT_FAILS 25

static void aborted_group(struct h_moat *m)
{
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	bool sent = h_connected(c) && PQenterPipelineMode(c);
	for (int i = 0; sent && i < ABORT_QUERIES; i++) {
		char a[16];
		snprintf(a, sizeof a, "%d", i);
		const char *p[2] = {a, i == ABORT_FAILS ? "0" : "1"};
		sent = PQsendQueryParams(c, "select $1::int / $2::int", 2, NULL, p, NULL, NULL, 0);
		if (sent && (i + 1) % ABORT_GROUP == 0)
			sent = PQpipelineSync(c);
	}
	ExecStatusType st[ABORT_QUERIES];
	char state[8] = "";
	int right_values = 0, syncs = 0, extra = 0;
	bool late = false;
	for (int i = 0; sent && i < ABORT_QUERIES; i++) {
		PGresult *r = result_within(c, 20, &late);
		st[i] = PQresultStatus(r);
		if (st[i] == PGRES_TUPLES_OK && PQntuples(r) == 1 && atoi(PQgetvalue(r, 0, 0)) == i)
			right_values++;
		if (i == ABORT_FAILS)
			snprintf(state, sizeof state, "%s", h_result_state(r));
		PQclear(r);
		if ((r = result_within(c, 20, &late)) != NULL) {
			extra++;
			PQclear(r);
		}
		if ((i + 1) % ABORT_GROUP == 0) {
			r = result_within(c, 20, &late);
			syncs += PQresultStatus(r) == PGRES_PIPELINE_SYNC;
			PQclear(r);
		}
		if (PQstatus(c) != CONNECTION_OK || late)
			sent = false;
	}
	int before = 0, aborted = 0, after = 0;
	for (int i = 0; sent && i < ABORT_QUERIES; i++) {
		if (i < ABORT_FAILS)
			before += st[i] == PGRES_TUPLES_OK;
		else if (i > ABORT_FAILS && i < (ABORT_FAILS / ABORT_GROUP + 1) * ABORT_GROUP)
			aborted += st[i] == PGRES_PIPELINE_ABORTED;
		else if (i > ABORT_FAILS)
			after += st[i] == PGRES_TUPLES_OK;
	}
	ok(sent && before == ABORT_FAILS,
	   "pipeline of %d queries, a Sync after every %d: the %d before the failing one succeed",
	   ABORT_QUERIES, ABORT_GROUP, before);
	ok(sent && st[ABORT_FAILS] == PGRES_FATAL_ERROR && strcmp(state, "22012") == 0,
	   "query %d fails with division by zero (%s)", ABORT_FAILS, state);
	ok(aborted == 4,
	   "the rest of its group, up to the Sync, is PGRES_PIPELINE_ABORTED (%d of 4)", aborted);
	ok(after == ABORT_QUERIES - 30 && right_values == ABORT_QUERIES - 5,
	   "the later groups succeed (%d of %d), every value right", after, ABORT_QUERIES - 30);
	ok(syncs == ABORT_QUERIES / ABORT_GROUP && extra == 0, "every Sync answered (%d of %d)",
	   syncs, ABORT_QUERIES / ABORT_GROUP);
	bool usable = sent && PQexitPipelineMode(c);
	char *v = usable ? h_value(c, "select 'after'") : NULL;
	ok(v && strcmp(v, "after") == 0 && PQtransactionStatus(c) == PQTRANS_IDLE,
	   "the connection stays usable, outside a transaction");
	free(v);

	/* pool_size 1: another client gets the server. */
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	struct h_async b;
	h_async_start(&b, ci, "select 'other'");
	free(ci);
	ok(h_async_wait(&b, 20) && h_async_ok(&b), "and another client gets the server");
	h_async_close(&b);
	PQfinish(c);
}

static bool send_div(PGconn *c, int a, int b)
{
	char x[16], y[16];
	snprintf(x, sizeof x, "%d", a);
	snprintf(y, sizeof y, "%d", b);
	const char *p[2] = {x, y};
	return PQsendQueryParams(c, "select $1::int / $2::int", 2, NULL, p, NULL, NULL, 0);
}

/* Reads `n` query results (each ended by NULL) and a Sync; counts those
 * with `want` status (and value first + i for PGRES_TUPLES_OK). */
static int read_group(PGconn *c, int n, ExecStatusType want, int first, bool *synced, bool *late)
{
	int good = 0;
	for (int i = 0; i < n; i++) {
		PGresult *r = result_within(c, 20, late);
		if (PQresultStatus(r) == want &&
		    (want != PGRES_TUPLES_OK || atoi(PQgetvalue(r, 0, 0)) == first + i))
			good++;
		else if (r)
			diag("query %d of the group: %s %s", i, PQresStatus(PQresultStatus(r)),
			     PQresultErrorMessage(r));
		PQclear(r);
		if ((r = result_within(c, 20, late)) != NULL) {
			good--;
			PQclear(r);
		}
	}
	PGresult *r = result_within(c, 20, late);
	*synced = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
	if (!*synced && r)
		diag("instead of the Sync: %s %s", PQresStatus(PQresultStatus(r)),
		     PQresultErrorMessage(r));
	PQclear(r);
	return good;
}

/* The error of a pipelined query reaches the client (a Flush request asks
 * for it) before the client has sent the rest of the group and its Sync:
 * PostgreSQL skips those, and answers the Sync. */
static void error_before_rest(struct h_moat *m)
{
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	bool late = false;
	bool sent = h_connected(c) && PQenterPipelineMode(c) && send_div(c, 1, 0) &&
	        PQsendFlushRequest(c) && PQflush(c) == 0;
	PGresult *r = sent ? result_within(c, 20, &late) : NULL;
	bool failed =
	        PQresultStatus(r) == PGRES_FATAL_ERROR && strcmp(h_result_state(r), "22012") == 0;
	PQclear(r);
	if (sent && (r = result_within(c, 20, &late)) != NULL) {
		failed = false;
		PQclear(r);
	}
	ok(sent && failed && !late,
	   "a pipelined query fails and its error reaches the client before the rest of the "
	   "group is sent (Flush request)");

	bool synced = false;
	for (int i = 0; sent && i < 3; i++)
		sent = send_div(c, 2 + i, 1);
	sent = sent && PQpipelineSync(c);
	int aborted = sent ? read_group(c, 3, PGRES_PIPELINE_ABORTED, 0, &synced, &late) : 0;
	ok(aborted == 3, "the queries sent after the error are PGRES_PIPELINE_ABORTED (%d of 3)",
	   aborted);
	ok(synced, "the Sync that follows them is answered");

	bool next_synced = false;
	for (int i = 0; sent && i < 3; i++)
		sent = send_div(c, 10 + i, 1);
	sent = sent && PQpipelineSync(c);
	int right = sent ? read_group(c, 3, PGRES_TUPLES_OK, 10, &next_synced, &late) : 0;
	bool usable = sent && next_synced && right == 3 && PQexitPipelineMode(c);
	char *v = usable ? h_value(c, "select 'after'") : NULL;
	ok(v && strcmp(v, "after") == 0 && PQtransactionStatus(c) == PQTRANS_IDLE,
	   "the next group succeeds (%d of 3) and the connection stays usable", right);
	if (late)
		diag("a result did not come within 20 s");
	free(v);
	PQfinish(c);
}

static struct h_moat *start_moat(struct h_pg *pg, const char *pool_size)
{
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(
	            m, pool_size,
	            "pool_mode = transaction\nworkers = 2\nquery_wait_timeout = 60\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	return m;
}

int main(void)
{
	h_init("t_pipeline", 240);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m5 = start_moat(pg, "pool_size=5");
	struct h_moat *m1 = start_moat(pg, "pool_size=1");

	tap_plan(18);
	many_clients(m5, pg);
	aborted_group(m1);
	error_before_rest(m1);
	ok(h_moat_alive(m5) && h_moat_alive(m1), "both pgmoat instances still running");
	return h_done();
}
