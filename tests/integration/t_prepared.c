/* Protocol-level named prepared statements in transaction pooling: a
 * client's statement names keep working although its transactions run on
 * different server connections.
 *
 * - 100 clients (threads, one PGconn each) over pool_size 5 prepare the same
 *   names for different SQL and execute them many times: every result is the
 *   client's own, and no more than 5 backends are ever used;
 * - pgbench -M prepared, select-only and TPC-B, with zero failures and
 *   consistent data;
 * - PQdescribePrepared on a server other than the one the statement was
 *   prepared on (and a Describe of a statement returning no rows);
 * (Close and re-prepare on the wire, and the errors for names, are in
 * t_prepared_errors.)
 * - max_prepared_statements = 2: five statements cycled through, the
 *   server's count (pg_prepared_statements) never above 2; room made inside
 *   a failed sync block does not lose track of what the server has;
 * - unnamed statements mixed with named ones, also in a pipeline; a 1 MB
 *   parameter in a Bind whose statement name is rewritten;
 * - DISCARD ALL and DEALLOCATE ALL by a client: its statements still work;
 * - pgmoat's server-side names are not the client's: a Bind of one is 26000;
 * - max_prepared_statements = 0: names pass through unchanged, a statement
 *   works inside the transaction that prepared it.
 *
 * PostgreSQL's own behaviour is checked first wherever pgmoat is expected to
 * match it, so a failure shows pgmoat's difference, not a wrong
 * expectation. */
#include <config.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

#define N_CLIENTS 100
#define N_ROUNDS 50 /* each round executes the client's 3 statements */
#define POOL_SIZE 5
#define MAX_PIDS 8
#define THREADS_TIMEOUT 150.0

/* --- small libpq helpers */

static PGresult *exec_1(PGconn *c, const char *name, const char *param)
{
	const char *p[1] = {param};
	return PQexecPrepared(c, name, 1, p, NULL, NULL, 0);
}

static bool value_is(PGresult *r, const char *want)
{
	return PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	        strcmp(PQgetvalue(r, 0, 0), want) == 0;
}

/* Runs `sql`, which returns one value: that value as a number, -1 on error.
 * Main thread only (h_value prints diagnostics). */
static long number(PGconn *c, const char *sql)
{
	char *v = h_value(c, sql);
	long n = v && *v ? strtol(v, NULL, 10) : -1;
	free(v);
	return n;
}

/* --- 1. many clients, colliding names */

struct mclient {
	pthread_t thread;
	int id;
	const char *conninfo;
	double deadline;
	bool connected, prepared;
	int right, wrong;
	int pids[MAX_PIDS];
	int npids;
	char error[256];
};

static atomic_int threads_done;

static void note_error(struct mclient *t, const char *what, const char *detail)
{
	if (!t->error[0])
		snprintf(t->error, sizeof t->error, "client %d: %s: %.150s", t->id, what,
		         detail ? detail : "");
}

static void note_pid(struct mclient *t, int pid)
{
	for (int i = 0; i < t->npids; i++) {
		if (t->pids[i] == pid)
			return;
	}
	if (t->npids < MAX_PIDS)
		t->pids[t->npids++] = pid;
}

/* One check of a result: counted right or wrong (the first wrong noted). */
static void check(struct mclient *t, PGconn *c, PGresult *r, const char *stmt, const char *want)
{
	bool good = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	        strcmp(PQgetvalue(r, 0, 0), want) == 0;
	if (good && PQnfields(r) == 2) /* s2 also returns its backend's pid */
		note_pid(t, atoi(PQgetvalue(r, 0, 1)));
	if (good) {
		t->right++;
	} else {
		t->wrong++;
		char got[160];
		snprintf(got, sizeof got, "wanted %s, got %s%s", want,
		         PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0
		                 ? PQgetvalue(r, 0, 0)
		                 : PQresStatus(PQresultStatus(r)),
		         PQresultStatus(r) == PGRES_TUPLES_OK ? "" : PQerrorMessage(c));
		note_error(t, stmt, got);
	}
	PQclear(r);
}

static bool prepare_ok(struct mclient *t, PGconn *c, const char *name, const char *sql)
{
	PGresult *r = PQprepare(c, name, sql, 0, NULL);
	bool good = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!good)
		note_error(t, name, PQerrorMessage(c));
	PQclear(r);
	return good;
}

/* Every client prepares "s1" and "s2" for SQL of its own and "s3" for SQL
 * all clients share, then executes them N_ROUNDS times. */
static void *client_thread(void *arg)
{
	struct mclient *t = arg;
	PGconn *c = PQconnectdb(t->conninfo);
	if (!c || PQstatus(c) != CONNECTION_OK) {
		note_error(t, "connect", c ? PQerrorMessage(c) : "out of memory");
		goto out;
	}
	t->connected = true;
	char sql1[64], sql2[96];
	snprintf(sql1, sizeof sql1, "select $1::int + %d", t->id);
	snprintf(sql2, sizeof sql2, "select $1::text || '-%d', pg_backend_pid()", t->id);
	if (!prepare_ok(t, c, "s1", sql1) || !prepare_ok(t, c, "s2", sql2) ||
	    !prepare_ok(t, c, "s3", "select $1::int * 2"))
		goto out;
	t->prepared = true;
	for (int i = 0; i < N_ROUNDS && h_now() < t->deadline; i++) {
		char p[16], want[32];
		snprintf(p, sizeof p, "%d", i * 7 + t->id);
		/* The order changes from round to round. */
		for (int k = 0; k < 3; k++) {
			switch ((i + k) % 3) {
			case 0:
				snprintf(want, sizeof want, "%d", i * 7 + 2 * t->id);
				check(t, c, exec_1(c, "s1", p), "s1", want);
				break;
			case 1:
				snprintf(want, sizeof want, "%s-%d", p, t->id);
				check(t, c, exec_1(c, "s2", p), "s2", want);
				break;
			default:
				snprintf(want, sizeof want, "%d", 2 * (i * 7 + t->id));
				check(t, c, exec_1(c, "s3", p), "s3", want);
				break;
			}
		}
	}
out:
	PQfinish(c);
	atomic_fetch_add(&threads_done, 1);
	return NULL;
}

static bool all_threads_done(void *arg)
{
	(void)arg;
	return atomic_load(&threads_done) == N_CLIENTS;
}

static void many_clients(struct h_moat *m)
{
	static struct mclient cl[N_CLIENTS];
	char *ci = h_strdupf("host=127.0.0.1 port=%d dbname=app user=app password=app "
	                     "sslmode=disable gssencmode=disable connect_timeout=60",
	                     m->port);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 1u << 20);
	double t0 = h_now();
	atomic_store(&threads_done, 0);
	for (int i = 0; i < N_CLIENTS; i++) {
		cl[i] = (struct mclient){
		        .id = i + 1, .conninfo = ci, .deadline = t0 + THREADS_TIMEOUT};
		if (pthread_create(&cl[i].thread, &attr, client_thread, &cl[i]) != 0)
			h_bail("pthread_create failed");
	}
	pthread_attr_destroy(&attr);
	/* A thread stuck in libpq is not waited for: the test bails out. */
	if (!h_wait_until(all_threads_done, NULL, THREADS_TIMEOUT + 30))
		h_bail("client threads still running after %.0f s", THREADS_TIMEOUT + 30);
	for (int i = 0; i < N_CLIENTS; i++)
		pthread_join(cl[i].thread, NULL);
	double took = h_now() - t0;

	int connected = 0, prepared = 0, right = 0, wrong = 0, moved = 0, npids = 0;
	int pids[N_CLIENTS * MAX_PIDS];
	const char *first_error = NULL;
	for (int i = 0; i < N_CLIENTS; i++) {
		connected += cl[i].connected;
		prepared += cl[i].prepared;
		right += cl[i].right;
		wrong += cl[i].wrong;
		moved += cl[i].npids > 1;
		for (int k = 0; k < cl[i].npids; k++) {
			bool seen = false;
			for (int j = 0; j < npids && !seen; j++)
				seen = pids[j] == cl[i].pids[k];
			if (!seen)
				pids[npids++] = cl[i].pids[k];
		}
		if (cl[i].error[0] && !first_error)
			first_error = cl[i].error;
	}
	if (first_error)
		diag("first error: %s", first_error);
	diag("%d clients x %d executions in %.1f s", N_CLIENTS, 3 * N_ROUNDS, took);
	is_int(connected, N_CLIENTS, "100 clients connected");
	is_int(prepared, N_CLIENTS, "each prepared s1, s2 (SQL of its own) and s3 (shared SQL)");
	is_int(right, N_CLIENTS * N_ROUNDS * 3, "every execution gave the client's own result");
	is_int(wrong, 0, "no wrong result or error");
	ok(moved > 0, "statements ran on more than one server for %d clients", moved);
	ok(npids >= 1 && npids <= POOL_SIZE, "on at most pool_size backends (%d)", npids);
	free(ci);
}

/* --- 2. pgbench -M prepared */

static int pgbench(int port, const char *const extra[], double timeout, char **out)
{
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%d", port);
	const char *argv[32] = {"pgbench", "-h", "127.0.0.1", "-p", portstr, "-U", "app"};
	size_t n = 7;
	for (size_t i = 0; extra[i] && n < 30; i++)
		argv[n++] = extra[i];
	argv[n++] = "app";
	argv[n] = NULL;
	const char *env[] = {"PGPASSWORD=app", "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=60", NULL};
	return h_run(argv, env, timeout, out);
}

static void pgbench_run(struct h_moat *m, const char *what, const char *const args[], long want)
{
	char *out = NULL;
	int rc = pgbench(m->port, args, 150, &out);
	long failed = h_number_after(out, "number of failed transactions: ");
	long done = h_number_after(out, "number of transactions actually processed: ");
	is_int(rc, 0, "%s: pgbench exits 0", what);
	is_int(failed, 0, "%s: zero failed transactions", what);
	is_int(done, want, "%s: all %ld transactions processed", what, want);
	if (rc != 0 || failed != 0 || done != want) {
		h_diag_text("  pgbench: ", out);
	} else {
		const char *tps = strstr(out, "tps = ");
		diag("%s: %.*s", what, tps ? (int)strcspn(tps, "\n") : 0, tps ? tps : "");
	}
	free(out);
}

static void pgbench_prepared(struct h_pg *pg, struct h_moat *m)
{
	char *out = NULL;
	const char *init[] = {"-i", "-s", "1", "-q", NULL};
	int rc = pgbench(pg->port, init, 120, &out);
	if (rc != 0) {
		h_diag_text("  pgbench -i: ", out);
		h_bail("pgbench -i failed on PostgreSQL");
	}
	free(out);

	const char *sel[] = {"-n", "-S", "-M", "prepared", "-c", "20",
	                     "-j", "2",  "-t", "200",      NULL};
	pgbench_run(m, "select-only, -M prepared, 20 clients", sel, 20 * 200);
	/* -j = -c: pgbench 15 prepares with a blocking PQprepare, which would
	 * wait for a server while another client of the same thread holds one
	 * inside its transaction. */
	const char *tpcb[] = {"-n", "-M", "prepared", "-c", "8", "-j", "8", "-t", "50", NULL};
	pgbench_run(m, "TPC-B, -M prepared, 8 clients", tpcb, 8 * 50);

	PGconn *d = h_pg_connect(pg, "app", "app");
	char *v = h_value(d,
	                  "select (select count(*) from pgbench_history) = 400"
	                  " and (select sum(abalance) from pgbench_accounts)"
	                  " = (select sum(delta) from pgbench_history)"
	                  " and (select sum(bbalance) from pgbench_branches)"
	                  " = (select sum(delta) from pgbench_history)"
	                  " and (select sum(tbalance) from pgbench_tellers)"
	                  " = (select sum(delta) from pgbench_history)");
	is_str(v, "t",
	       "TPC-B: 400 history rows; account, branch and teller balances equal their sum");
	free(v);
	PQfinish(d);
}

/* --- 3. Describe on another server */

static int begin_pid(PGconn *c)
{
	return h_exec(c, "begin") ? h_backend_pid(c) : 0;
}

static void describe_elsewhere(struct h_moat *m)
{
	/* Pool "two" has 2 servers at most. */
	PGconn *x = h_moat_connect(m, "app", "two", "app");
	PGconn *y1 = h_moat_connect(m, "app", "two", "app");
	PGconn *y2 = h_moat_connect(m, "app", "two", "app");
	int pa = begin_pid(x);
	PGresult *r1 = PQprepare(
	        x, "d1", "select $1::int4 + 1 as n, $2::text as t, $3::numeric as x", 0, NULL);
	PGresult *r2 = PQprepare(x, "d2", "insert into items (id, v) values ($1, $2)", 0, NULL);
	ok(pa > 0 && PQresultStatus(r1) == PGRES_COMMAND_OK &&
	           PQresultStatus(r2) == PGRES_COMMAND_OK && h_exec(x, "commit"),
	   "describe: d1 and d2 prepared in a transaction on backend %d", pa);
	PQclear(r1);
	PQclear(r2);

	/* Another client holds that server, so X's next transaction runs on
	 * the other one. */
	PGconn *pin = y1;
	int pp = begin_pid(y1);
	if (pp != pa) {
		pp = begin_pid(y2);
		h_exec(y1, "commit");
		pin = y2;
	}
	is_int(pp, pa, "describe: another client holds backend %d in a transaction", pa);
	int pb = begin_pid(x);
	ok(pb > 0 && pb != pa, "describe: the client's next transaction runs on backend %d", pb);

	PGresult *r = PQdescribePrepared(x, "d1");
	bool params = PQresultStatus(r) == PGRES_COMMAND_OK && PQnparams(r) == 3 &&
	        PQparamtype(r, 0) == 23 && PQparamtype(r, 1) == 25 && PQparamtype(r, 2) == 1700;
	bool cols = PQresultStatus(r) == PGRES_COMMAND_OK && PQnfields(r) == 3 &&
	        strcmp(PQfname(r, 0), "n") == 0 && PQftype(r, 0) == 23 &&
	        strcmp(PQfname(r, 1), "t") == 0 && PQftype(r, 1) == 25 &&
	        strcmp(PQfname(r, 2), "x") == 0 && PQftype(r, 2) == 1700;
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		h_diag_text("  describe d1: ", PQerrorMessage(x));
	ok(params, "describe d1 there: 3 parameters int4, text, numeric");
	ok(cols, "describe d1 there: columns n int4, t text, x numeric");
	PQclear(r);

	r = PQdescribePrepared(x, "d2");
	ok(PQresultStatus(r) == PGRES_COMMAND_OK && PQnparams(r) == 2 && PQparamtype(r, 0) == 23 &&
	           PQparamtype(r, 1) == 25 && PQnfields(r) == 0,
	   "describe d2 (an INSERT) there: parameters int4, text and no columns");
	PQclear(r);

	const char *p[3] = {"41", "hello", "2.5"};
	r = PQexecPrepared(x, "d1", 3, p, NULL, NULL, 0);
	ok(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	           strcmp(PQgetvalue(r, 0, 0), "42") == 0 &&
	           strcmp(PQgetvalue(r, 0, 1), "hello") == 0 &&
	           strcmp(PQgetvalue(r, 0, 2), "2.5") == 0,
	   "describe: d1 then executes there: 42, hello, 2.5");
	PQclear(r);
	char *names = h_value(x,
	                      "select string_agg(name, ',') from pg_prepared_statements"
	                      " where statement like 'select $1::int4 + 1 as n%'");
	ok(names && strncmp(names, "pgmoat_", 7) == 0 && !strchr(names, ','),
	   "describe: the server has it once, under pgmoat's name ('%s')", names ? names : "?");
	free(names);
	ok(pb == h_backend_pid(x) && h_exec(x, "commit") && h_exec(pin, "commit"),
	   "describe: all of it in one transaction on backend %d", pb);
	PQfinish(x);
	PQfinish(y1);
	PQfinish(y2);
}

/* --- 7. max_prepared_statements = 2 */

static void lru_of_two(struct h_moat *m2)
{
	PGconn *c = h_moat_connect(m2, "app", "app", "app");
	bool prepared = h_connected(c);
	for (int k = 0; k < 5 && prepared; k++) {
		char name[16], sql[48];
		snprintf(name, sizeof name, "m%d", k);
		snprintf(sql, sizeof sql, "select $1::int + %d", k * 1000);
		PGresult *r = PQprepare(c, name, sql, 0, NULL);
		prepared = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
	}
	ok(prepared, "max 2: one client prepared m0..m4");

	int txns = 0, right = 0, max_count = -1;
	double end = h_now() + 90;
	for (int i = 0; i < 100 && h_now() < end; i++) {
		if (!h_exec(c, "begin"))
			break;
		/* Two or three statements per transaction, round and round. */
		int ks[3] = {i % 5, (i + 2) % 5, (i + 4) % 5};
		int nk = i % 2 ? 3 : 2;
		char p[16], want[16];
		snprintf(p, sizeof p, "%d", i);
		for (int j = 0; j < nk; j++) {
			char name[16];
			snprintf(name, sizeof name, "m%d", ks[j]);
			snprintf(want, sizeof want, "%d", i + ks[j] * 1000);
			PGresult *r = exec_1(c, name, p);
			if (value_is(r, want))
				right++;
			else
				diag("max 2: %s(%s) gave %s", name, p, PQresultErrorMessage(r));
			PQclear(r);
		}
		long n = number(c, "select count(*) from pg_prepared_statements");
		if (n > max_count)
			max_count = (int)n;
		if (!h_exec(c, "commit"))
			break;
		txns++;
	}
	is_int(txns, 100, "max 2: 100 transactions cycling through 5 statements");
	is_int(right, 50 * 2 + 50 * 3, "max 2: every execution gave the right result");
	ok(max_count >= 1 && max_count <= 2,
	   "max 2: the server never had more than 2 prepared (at most %d)", max_count);

	/* One pipeline (one implicit transaction, one server): six executions
	 * over five statements, then the server's count. */
	bool sent = PQenterPipelineMode(c);
	static const int order[6] = {0, 1, 2, 3, 4, 0};
	for (int j = 0; j < 6 && sent; j++) {
		char name[16];
		snprintf(name, sizeof name, "m%d", order[j]);
		const char *p[1] = {"5"};
		sent = PQsendQueryPrepared(c, name, 1, p, NULL, NULL, 0);
	}
	sent = sent &&
	        PQsendQueryParams(c, "select count(*) from pg_prepared_statements", 0, NULL, NULL,
	                          NULL, NULL, 0) &&
	        PQpipelineSync(c);
	char got[128] = "";
	for (int j = 0; j < 7 && sent; j++) {
		PGresult *r = PQgetResult(c);
		size_t used = strlen(got);
		snprintf(got + used, sizeof got - used, "%s%s", j ? "," : "",
		         PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "error");
		PQclear(r);
		while ((r = PQgetResult(c)) != NULL) /* the NULL after each result */
			PQclear(r);
	}
	PGresult *r = sent ? PQgetResult(c) : NULL;
	bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
	PQclear(r);
	ok(sent && synced && PQexitPipelineMode(c) && strcmp(got, "5,1005,2005,3005,4005,5,2") == 0,
	   "max 2: a pipeline m0..m4, m0 and the count: %s", got);
	PQfinish(c);
}

/* With room for 2, a statement needed inside a sync block that has
 * already failed makes pgmoat close the least recently used one first: the
 * server skips that Close, so the statement is still there.  Then the same
 * steps on PostgreSQL directly and through pool "one" of the max 2 pgmoat
 * (one server). */
static char *evict_in_failed_block(PGconn *c)
{
	char out[512] = "";
	size_t used = 0;
#define OUT(...)                                                                                   \
	(used +=                                                                                   \
	 (size_t)snprintf(out + used, used < sizeof out ? sizeof out - used : 0, __VA_ARGS__))
	for (int k = 0; k < 3; k++) {
		char name[16], sql[32];
		snprintf(name, sizeof name, "q%d", k);
		snprintf(sql, sizeof sql, "select %d", 10 + k);
		char *t = h_result_text(c, PQprepare(c, name, sql, 0, NULL));
		OUT("%s,", t);
		free(t);
	}
	for (int k = 0; k < 2; k++) { /* the server's two are q0 and q1 */
		char name[16];
		snprintf(name, sizeof name, "q%d", k);
		char *t = h_result_text(c, PQexecPrepared(c, name, 0, NULL, NULL, NULL, 0));
		OUT("%s,", t);
		free(t);
	}
	bool sent = PQenterPipelineMode(c) &&
	        PQsendQueryPrepared(c, "nosuch", 0, NULL, NULL, NULL, 0) &&
	        PQsendQueryPrepared(c, "q2", 0, NULL, NULL, NULL, 0) && PQpipelineSync(c);
	for (int j = 0; j < 3 && sent; j++) {
		PGresult *r = PQgetResult(c);
		ExecStatusType st = PQresultStatus(r);
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		OUT("%s,",
		    st == PGRES_PIPELINE_ABORTED        ? "aborted"
		            : st == PGRES_PIPELINE_SYNC ? "sync"
		            : st == PGRES_FATAL_ERROR   ? (state ? state : "error")
		                                        : PQresStatus(st));
		PQclear(r);
		if (st != PGRES_PIPELINE_SYNC) {
			while ((r = PQgetResult(c)) != NULL)
				PQclear(r);
		}
	}
	if (!sent || !PQexitPipelineMode(c))
		OUT("pipeline failed: %s,", PQerrorMessage(c));
	for (int k = 0; k < 3; k++) {
		char name[16];
		snprintf(name, sizeof name, "q%d", k);
		char *t = h_result_text(c, PQexecPrepared(c, name, 0, NULL, NULL, NULL, 0));
		OUT("%s%s", k ? "," : "", t);
		free(t);
	}
#undef OUT
	return h_strdupf("%s", out);
}

static void evict_skipped(struct h_pg *pg, struct h_moat *m2)
{
	static const char want[] = "ok,ok,ok,ok 10,ok 11,26000,aborted,sync,ok 10,ok 11,ok 12";
	PGconn *d = h_pg_connect(pg, "app", "app");
	char *got = evict_in_failed_block(d);
	is_str(got, want, "max 2: PostgreSQL itself: an error, then q2 in a pipeline (direct)");
	free(got);
	PQfinish(d);
	PGconn *c = h_moat_connect(m2, "app", "one", "app");
	got = evict_in_failed_block(c);
	is_str(got, want, "max 2: an error, then q2 needing room in a pipeline: all still work");
	free(got);
	PQfinish(c);
}

/* --- 8. unnamed statements mixed with named ones */

static void unnamed_mixed(struct h_moat *m)
{
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	PGresult *r = PQprepare(c, "u1", "select $1::int * 5", 0, NULL);
	ok(PQresultStatus(r) == PGRES_COMMAND_OK, "unnamed: named u1 prepared");
	PQclear(r);
	int right = 0, total = 0;
	double end = h_now() + 60;
	for (int i = 0; i < 60 && h_now() < end; i++) {
		bool txn = i % 3 == 0;
		if (txn && !h_exec(c, "begin"))
			break;
		char p[16], w1[16], w2[16];
		snprintf(p, sizeof p, "%d", i);
		snprintf(w1, sizeof w1, "%d", i * 3);
		snprintf(w2, sizeof w2, "%d", i * 5);
		const char *pv[1] = {p};
		r = PQexecParams(c, "select $1::int * 3", 1, NULL, pv, NULL, NULL, 0);
		right += value_is(r, w1);
		PQclear(r);
		r = exec_1(c, "u1", p);
		right += value_is(r, w2);
		PQclear(r);
		/* The unnamed statement again, after the named one. */
		r = PQexecParams(c, "select $1::int * 3", 1, NULL, pv, NULL, NULL, 0);
		right += value_is(r, w1);
		PQclear(r);
		total += 3;
		if (txn && !h_exec(c, "commit"))
			break;
	}
	is_int(right, 180, "unnamed: PQexecParams and PQexecPrepared alternated 60 times (%d)",
	       total);

	/* A pipeline: unnamed, a new named statement, the named ones. */
	bool sent = PQenterPipelineMode(c);
	const char *p7[1] = {"7"};
	sent = sent && PQsendQueryParams(c, "select $1::int * 3", 1, NULL, p7, NULL, NULL, 0) &&
	        PQsendPrepare(c, "u2", "select $1::int * 11", 0, NULL) &&
	        PQsendQueryPrepared(c, "u2", 1, p7, NULL, NULL, 0) &&
	        PQsendQueryParams(c, "select $1::int + 1", 1, NULL, p7, NULL, NULL, 0) &&
	        PQsendQueryPrepared(c, "u1", 1, p7, NULL, NULL, 0) && PQpipelineSync(c);
	char got[128] = "";
	for (int j = 0; j < 5 && sent; j++) {
		r = PQgetResult(c);
		size_t used = strlen(got);
		ExecStatusType st = PQresultStatus(r);
		snprintf(got + used, sizeof got - used, "%s%s", j ? "," : "",
		         st == PGRES_TUPLES_OK            ? PQgetvalue(r, 0, 0)
		                 : st == PGRES_COMMAND_OK ? "prepared"
		                                          : "error");
		PQclear(r);
		while ((r = PQgetResult(c)) != NULL)
			PQclear(r);
	}
	r = sent ? PQgetResult(c) : NULL;
	bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
	PQclear(r);
	ok(sent && synced && PQexitPipelineMode(c) && strcmp(got, "21,prepared,77,8,35") == 0,
	   "unnamed: a pipeline mixing unnamed and named statements: %s", got);
	char *v = h_value(c, "select 'still fine'");
	is_str(v, "still fine", "unnamed: the connection works after the pipeline");
	free(v);
	PQfinish(c);
}

/* A Bind whose statement name pgmoat rewrites (a long name to a shorter
 * one) and whose 1 MB parameter spans many reads. */
static void large_bind(struct h_moat *m)
{
	static const char name[] = "a_statement_name_much_longer_than_pgmoat_s_own_names_61_chars";
	size_t n = 1u << 20;
	char *big = malloc(n + 1);
	if (!big)
		h_bail("out of memory");
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + (i * 7 + i / 1000) % 26);
	big[n] = '\0';
	char md5[33], want[64];
	h_md5_hex(big, n, md5);
	snprintf(want, sizeof want, "%zu %s", n, md5);
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	PGresult *r =
	        PQprepare(c, name, "select length($1::text) || ' ' || md5($1::text)", 0, NULL);
	bool prepared = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	int right = 0;
	for (int i = 0; i < 4 && prepared; i++) {
		const char *p[1] = {big};
		r = PQexecPrepared(c, name, 1, p, NULL, NULL, 0);
		if (value_is(r, want))
			right++;
		else
			diag("large: %s", PQresultErrorMessage(r));
		PQclear(r);
	}
	ok(prepared && right == 4,
	   "large: a 1 MB parameter to a statement with a 61-character name");
	free(big);
	PQfinish(c);
}

/* --- 9. DISCARD ALL, DEALLOCATE ALL */

static bool exec_is(PGconn *c, const char *name, const char *param, const char *want)
{
	PGresult *r = exec_1(c, name, param);
	bool good = value_is(r, want);
	if (!good)
		diag("%s(%s): %s", name, param, PQresultErrorMessage(r));
	PQclear(r);
	return good;
}

static void discard_all(struct h_moat *m)
{
	/* Pool "one" has one server: every transaction runs on it. */
	PGconn *a = h_moat_connect(m, "app", "one", "app");
	PGconn *b = h_moat_connect(m, "app", "one", "app");
	PGresult *r1 = PQprepare(a, "k1", "select $1::int + 500", 0, NULL);
	PGresult *r2 = PQprepare(b, "kb", "select $1::int + 500", 0, NULL);
	ok(PQresultStatus(r1) == PGRES_COMMAND_OK && PQresultStatus(r2) == PGRES_COMMAND_OK &&
	           exec_is(a, "k1", "1", "501") && exec_is(b, "kb", "2", "502"),
	   "discard: two clients prepared the same SQL and ran it");
	PQclear(r1);
	PQclear(r2);
	ok(h_exec(a, "discard all"), "discard: client A runs DISCARD ALL");
	is_int(number(a, "select count(*) from pg_prepared_statements"), 0,
	       "discard: the server has no prepared statement left");
	ok(exec_is(a, "k1", "3", "503") && exec_is(a, "k1", "4", "504"),
	   "discard: A's statement still works (prepared again)");
	ok(exec_is(b, "kb", "5", "505"), "discard: so does B's, with the same SQL");
	ok(h_exec(b, "deallocate all"), "discard: client B runs DEALLOCATE ALL");
	is_int(number(b, "select count(*) from pg_prepared_statements"), 0,
	       "discard: the server has no prepared statement left");
	ok(exec_is(b, "kb", "6", "506") && exec_is(a, "k1", "7", "507"),
	   "discard: both statements still work");
	/* Once per worker thread that has the SQL (workers = 2). */
	bool began = h_exec(a, "begin") && exec_is(a, "k1", "8", "508");
	long n = number(a, "select count(*) from pg_prepared_statements");
	ok(began && n >= 1 && n <= 2 && h_exec(a, "commit"),
	   "discard: the server has the statement again (%ld)", n);
	PQfinish(a);
	PQfinish(b);
}

/* pgmoat's server-side statements belong to pgmoat: a client that names
 * one in a Bind gets 26000, whether it has statements of its own or not.
 * Pool "one" has one server. */
static void server_names_hidden(struct h_moat *m)
{
	PGconn *a = h_moat_connect(m, "app", "one", "app");
	char *name = NULL;
	PGresult *r = PQprepare(a, "h1", "select $1::int + 500", 0, NULL);
	PQclear(r);
	if (h_exec(a, "begin") && exec_is(a, "h1", "1", "501"))
		name = h_value(a,
		               "select name from pg_prepared_statements"
		               " where statement = 'select $1::int + 500' order by name limit 1");
	if (!h_exec(a, "commit") || !name || strncmp(name, "pgmoat_", 7) != 0)
		h_bail("no server-side statement name found");
	char *want = h_strdupf("26000 prepared statement \"%s\" does not exist", name);

	PGconn *fresh = h_moat_connect(m, "app", "one", "app");
	char *got = h_result_text(fresh, exec_1(fresh, name, "1"));
	is_str(got, want, "hidden: a client without statements: Bind of \"%s\"", name);
	free(got);
	r = PQprepare(fresh, "f1", "select 1", 0, NULL);
	PQclear(r);
	got = h_result_text(fresh, exec_1(fresh, name, "1"));
	is_str(got, want, "hidden: a client with a statement of its own: Bind of \"%s\"", name);
	free(got);
	free(want);
	free(name);
	PQfinish(fresh);
	PQfinish(a);
}

/* --- 10. max_prepared_statements = 0 */

/* With max_prepared_statements = 0 pgmoat passes named statements through
 * unchanged: the Parse reaches the server under the client's own name and
 * exists only on that server connection, so a client can use it only
 * inside the transaction that prepared it. */
static void pass_through(struct h_moat *m3)
{
	PGconn *c = h_moat_connect(m3, "app", "app", "app");
	bool began = h_exec(c, "begin");
	int pid = h_backend_pid(c);
	PGresult *r = PQprepare(c, "z1", "select $1::int + 100", 0, NULL);
	ok(began && PQresultStatus(r) == PGRES_COMMAND_OK,
	   "max 0: z1 prepared inside a transaction");
	PQclear(r);
	ok(exec_is(c, "z1", "5", "105") && exec_is(c, "z1", "6", "106"),
	   "max 0: z1 executed in the same transaction");
	r = PQdescribePrepared(c, "z1");
	ok(PQresultStatus(r) == PGRES_COMMAND_OK && PQnparams(r) == 1 && PQnfields(r) == 1,
	   "max 0: and described");
	PQclear(r);
	char *names = h_value(c, "select string_agg(name, ',') from pg_prepared_statements");
	is_str(names, "z1", "max 0: the server has it under the client's own name");
	free(names);
	ok(h_backend_pid(c) == pid && h_exec(c, "commit"), "max 0: all on one server, committed");
	PQfinish(c);
}

int main(void)
{
	h_init("t_prepared", 240);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	PGconn *direct = h_pg_connect(pg, "app", "app");
	if (!h_exec(direct, "create table items (id int, v text)"))
		h_bail("set-up failed");
	PQfinish(direct);

	struct h_moat *m = h_moat_new(pg);
	const char *ini = "[databases]\n"
	                  "app = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=5\n"
	                  "two = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=2\n"
	                  "one = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=1\n"
	                  "\n"
	                  "[pgmoat]\n"
	                  "listen_addr = 127.0.0.1\n"
	                  "listen_port = @PORT@\n"
	                  "unix_socket_dir = @SOCKDIR@\n"
	                  "auth_type = trust\n"
	                  "auth_file = @AUTHFILE@\n"
	                  "workers = 2\n"
	                  "pool_mode = transaction\n"
	                  "max_client_conn = 300\n"
	                  "query_wait_timeout = 120\n";
	if (!h_moat_write_userlist(m, "\"app\" \"app\"\n") || !h_moat_write_ini(m, ini) ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	struct h_moat *m2 = h_moat_new(pg);
	const char *ini2 = "[databases]\n"
	                   "app = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=2\n"
	                   "one = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=1\n"
	                   "\n"
	                   "[pgmoat]\n"
	                   "listen_addr = 127.0.0.1\n"
	                   "listen_port = @PORT@\n"
	                   "unix_socket_dir = @SOCKDIR@\n"
	                   "auth_type = trust\n"
	                   "auth_file = @AUTHFILE@\n"
	                   "workers = 2\n"
	                   "pool_mode = transaction\n"
	                   "max_prepared_statements = 2\n"
	                   "query_wait_timeout = 120\n";
	if (!h_moat_write_userlist(m2, "\"app\" \"app\"\n") || !h_moat_write_ini(m2, ini2) ||
	    !h_moat_start(m2, NULL))
		h_bail("second pgmoat did not start");
	struct h_moat *m3 = h_moat_new(pg);
	if (!h_moat_write_std_ini(m3, "pool_size=2",
	                          "pool_mode = transaction\n"
	                          "max_prepared_statements = 0\n"
	                          "query_wait_timeout = 120\n") ||
	    !h_moat_start(m3, NULL))
		h_bail("third pgmoat did not start");

	tap_plan(6 /* many clients */ + 7 /* pgbench */ + 9 /* describe */ + 5 + 2 /* max 2 */ + 4 +
	         1 /* unnamed, large */ + 9 /* discard */ + 2 /* hidden */ + 5 /* max 0 */ +
	         1 /* alive */ + 1 /* h_done */);
	many_clients(m);
	pgbench_prepared(pg, m);
	describe_elsewhere(m);
	lru_of_two(m2);
	evict_skipped(pg, m2);
	unnamed_mixed(m);
	large_bind(m);
	discard_all(m);
	server_names_hidden(m);
	pass_through(m3);
	ok(h_moat_alive(m) && h_moat_alive(m2) && h_moat_alive(m3),
	   "all three pgmoat instances still running");
	return h_done();
}
