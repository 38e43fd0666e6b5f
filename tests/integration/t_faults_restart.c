/* PostgreSQL restarted under load through pgmoat (transaction pooling):
 * 16 client threads run short write transactions (BEGIN; INSERT; COMMIT,
 * three round trips each) without pause while PostgreSQL is restarted
 * twice, first with a fast shutdown (SIGINT, what pg_ctl restart -m fast
 * sends), then with an immediate one (SIGQUIT, -m immediate, so crash
 * recovery at start).  Every failure is recorded with its SQLSTATE and
 * message and classed by when its transaction began:
 * - begun before PostgreSQL had stopped (in flight, or begun while it was
 *   shutting down, on a server that is going): at most one per client;
 * - begun while PostgreSQL is down: none, they wait for it to come back
 *   (server_down_wait, 10 s by default);
 * - begun once PostgreSQL is back: none.
 * Then the same restarts with server_down_wait = 0: transactions begun
 * once the stop was asked for are refused at once with the server's error
 * (the pool fails for server_login_retry, as PgBouncer does).
 * Every failure carries a SQLSTATE and a message; every committed
 * transaction's row is there; every client keeps going after each
 * restart, with no action on pgmoat. */
#include <config.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

#define N_CLIENTS 16
#define MAX_FAIL 20000
#define RETRY 0.2 /* server_login_retry */

struct failure {
	double begun;
	int client;
	bool at_commit; /* BEGIN and INSERT had succeeded */
	char state[6];
	char msg[160];
};

static struct {
	pthread_mutex_t lock;
	char *conninfo;
	atomic_int stop;
	long ok_total;
	long reconnects;
	int n_fail;
	bool overflow;
	struct failure fail[MAX_FAIL];
	double last_ok[N_CLIENTS]; /* when each client last committed */
	long ok_after[N_CLIENTS]; /* commits begun after `mark` */
	double mark;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void record_failure(int client, double begun, bool at_commit, PGconn *c, PGresult *r)
{
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	pthread_mutex_lock(&S.lock);
	if (S.n_fail >= MAX_FAIL)
		S.overflow = true;
	if (S.n_fail < MAX_FAIL) {
		struct failure *f = &S.fail[S.n_fail++];
		f->begun = begun;
		f->client = client;
		f->at_commit = at_commit;
		snprintf(f->state, sizeof f->state, "%s", st ? st : "");
		snprintf(f->msg, sizeof f->msg, "%s", m ? m : PQerrorMessage(c));
		f->msg[strcspn(f->msg, "\n")] = '\0';
	}
	pthread_mutex_unlock(&S.lock);
}

/* One step of a transaction: true on success, else the failure is
 * recorded.  Every result is read (PQexec would keep only the last one,
 * libpq's own "connection lost" after pgmoat's ErrorResponse). */
static bool step(PGconn *c, const char *sql, int id, double begun, bool at_commit)
{
	bool fine = PQsendQuery(c, sql), seen = false;
	PGresult *r;
	if (!fine) {
		record_failure(id, begun, at_commit, c, NULL);
		return false;
	}
	while ((r = PQgetResult(c)) != NULL) {
		ExecStatusType t = PQresultStatus(r);
		if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
			fine = false;
			if (!seen)
				record_failure(id, begun, at_commit, c, r);
			seen = true;
		}
		PQclear(r);
	}
	return fine;
}

static void *client_main(void *arg)
{
	int id = (int)(long)arg;
	PGconn *c = PQconnectdb(S.conninfo);
	long seq = 0;
	/* Bounded by the stop flag and by a count far above what a run does. */
	for (long n = 0; n < 10000000 && !atomic_load(&S.stop); n++) {
		if (PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = PQconnectdb(S.conninfo);
			pthread_mutex_lock(&S.lock);
			S.reconnects++;
			pthread_mutex_unlock(&S.lock);
			if (PQstatus(c) != CONNECTION_OK)
				h_nap(0.01); /* pacing the reconnect loop */
			continue;
		}
		double begun = h_now();
		char insert[96];
		snprintf(insert, sizeof insert, "insert into churn values (%d, %ld)", id, ++seq);
		bool fine = step(c, "begin", id, begun, false) &&
		        step(c, insert, id, begun, false) && step(c, "commit", id, begun, true);
		if (!fine) {
			/* A failed transaction block is ended before the next. */
			if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
				PQclear(PQexec(c, "rollback"));
			h_nap(0.01); /* an application's pause before retrying */
			continue;
		}
		pthread_mutex_lock(&S.lock);
		S.ok_total++;
		S.last_ok[id] = h_now();
		if (begun > S.mark)
			S.ok_after[id]++;
		pthread_mutex_unlock(&S.lock);
	}
	PQfinish(c);
	return NULL;
}

static bool all_clients_after(void *arg)
{
	long want = *(long *)arg;
	pthread_mutex_lock(&S.lock);
	bool all = true;
	for (int i = 0; i < N_CLIENTS; i++)
		all = all && S.ok_after[i] >= want;
	pthread_mutex_unlock(&S.lock);
	return all;
}

/* Restarts PostgreSQL under the load and checks the failures it caused. */
static void restart(struct h_pg *pg, bool immediate, bool wait, int *fail_from)
{
	const char *how = immediate ? (wait ? "immediate" : "immediate, no wait")
	                            : (wait ? "fast" : "fast, no wait");
	long want = 20;
	pthread_mutex_lock(&S.lock);
	S.mark = h_now();
	memset(S.ok_after, 0, sizeof S.ok_after);
	pthread_mutex_unlock(&S.lock);
	ok(h_wait_until(all_clients_after, &want, 20), "%s: all %d clients are committing", how,
	   N_CLIENTS);
	double t_stop = h_now();
	h_pg_stop(pg, immediate);
	double t_down = h_now();
	bool up = h_pg_restart(pg);
	double t_up = h_now();
	ok(up, "%s: PostgreSQL stopped (%.2f s) and started again (%.2f s)", how, t_down - t_stop,
	   t_up - t_down);
	pthread_mutex_lock(&S.lock);
	S.mark = t_up + RETRY + 0.05;
	memset(S.ok_after, 0, sizeof S.ok_after);
	pthread_mutex_unlock(&S.lock);
	ok(h_wait_until(all_clients_after, &want, 20),
	   "%s: every client commits %ld more transactions after the restart, no action on pgmoat",
	   how, want);
	pthread_mutex_lock(&S.lock);
	int in_flight = 0, down = 0, after = 0, no_state = 0, lost = 0, per_client[N_CLIENTS] = {0};
	int worst = 0;
	for (int i = *fail_from; i < S.n_fail; i++) {
		struct failure *f = &S.fail[i];
		/* Waiting, a transaction begun while PostgreSQL stops can only
		 * fail on a server that is going: as one in flight. */
		if (f->begun < (wait ? t_down : t_stop)) {
			in_flight++;
			if (++per_client[f->client] > worst)
				worst = per_client[f->client];
		} else if (f->begun < t_up + RETRY + 0.05) {
			down++;
		} else {
			after++;
		}
		/* libpq's own message when the connection was gone before
		 * pgmoat's ErrorResponse could be read (seen about once in ten
		 * runs under load, fast shutdown only). */
		if (!f->state[0])
			lost += strstr(f->msg, "server closed the connection unexpectedly") != NULL;
		if ((!f->state[0] &&
		     !strstr(f->msg, "server closed the connection unexpectedly")) ||
		    !f->msg[0])
			no_state++;
		if (i - *fail_from < 3 || (f->begun >= t_stop && down == 1) || !f->state[0])
			diag("%s: client %d: %s %s (begun %+.3f s from the stop)", how, f->client,
			     f->state, f->msg, f->begun - t_stop);
	}
	*fail_from = S.n_fail;
	pthread_mutex_unlock(&S.lock);
	ok(worst <= 1,
	   "%s: %d transactions begun before PostgreSQL %s failed, at most one per client (%d "
	   "clients)",
	   how, in_flight, wait ? "had stopped" : "was told to stop", N_CLIENTS);
	if (wait)
		is_int(down, 0,
		       "%s: no transaction begun while PostgreSQL was down failed: they "
		       "waited for it",
		       how);
	else
		ok(down > 0,
		   "%s: %d transactions begun while PostgreSQL was down were refused at once", how,
		   down);
	is_int(after, 0, "%s: no transaction begun after PostgreSQL was back failed", how);
	is_int(no_state, 0,
	       "%s: every failure carries a SQLSTATE and a message (%d: connection lost, "
	       "libpq's own message)",
	       how, lost);
}

int main(void)
{
	h_init("t_faults_restart", 180);
	struct h_pg_opts o = {.conf = "synchronous_commit = on\n"};
	struct h_pg *pg = h_pg_start(&o);
	h_pg_create_app(pg, "app", "app", "app");
	PGconn *d = h_pg_connect(pg, "app", "app");
	if (!h_exec(d, "create table churn(client int, seq bigint, primary key (client, seq))"))
		h_bail("set-up failed");
	PQfinish(d);
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, "pool_size=8",
	                          "auth_type = md5\npool_mode = transaction\n"
	                          "server_login_retry = 0.2\nserver_connect_timeout = 5\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	S.conninfo = h_moat_conninfo(m, "app", "app", "app");
	pthread_t th[N_CLIENTS];
	for (long i = 0; i < N_CLIENTS; i++)
		if (pthread_create(&th[i], NULL, client_main, (void *)i) != 0)
			h_bail("pthread_create failed");
	int fail_from = 0;
	restart(pg, false, true, &fail_from);
	restart(pg, true, true, &fail_from);
	ok(h_moat_write_std_ini(m, "pool_size=8",
	                        "auth_type = md5\npool_mode = transaction\n"
	                        "server_login_retry = 0.2\nserver_connect_timeout = 5\n"
	                        "server_down_wait = 0\n") &&
	           h_moat_reload(m, "configuration reloaded"),
	   "server_down_wait = 0 by a reload");
	restart(pg, false, false, &fail_from);
	restart(pg, true, false, &fail_from);
	atomic_store(&S.stop, 1);
	for (int i = 0; i < N_CLIENTS; i++)
		pthread_join(th[i], NULL);
	/* A database that stays down: the request fails after server_down_wait
	 * with the last error, and the client stays. */
	ok(h_moat_write_std_ini(m, "pool_size=8",
	                        "auth_type = md5\npool_mode = transaction\n"
	                        "server_login_retry = 0.2\nserver_connect_timeout = 5\n"
	                        "server_down_wait = 1\n") &&
	           h_moat_reload(m, "configuration reloaded"),
	   "server_down_wait = 1 by a reload");
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	char *v = h_value(c, "select 1");
	ok(v && strcmp(v, "1") == 0, "a client connected");
	free(v);
	h_pg_stop(pg, false);
	PQclear(PQexec(c, "select 1")); /* may have met its server going away */
	double t0 = h_now();
	PGresult *r = PQexec(c, "select 2");
	double waited = h_now() - t0;
	const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	ok(PQresultStatus(r) == PGRES_FATAL_ERROR && st && strncmp(st, "08", 2) == 0 &&
	           waited >= 0.9 && waited < 5,
	   "PostgreSQL stays down: the query fails after %.2f s with %s %s", waited, st ? st : "-",
	   PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
	PQclear(r);
	ok(h_pg_restart(pg), "PostgreSQL started again");
	v = h_value(c, "select 3");
	ok(v && strcmp(v, "3") == 0, "the same client's next query runs");
	free(v);
	PQfinish(c);

	int commit_failures = 0;
	for (int i = 0; i < S.n_fail; i++)
		commit_failures += S.fail[i].at_commit;
	d = h_pg_connect(pg, "app", "app");
	char *n = h_value(d, "select count(*) from churn");
	long rows = n ? atol(n) : -1;
	free(n);
	PQfinish(d);
	ok(!S.overflow, "every failure was recorded (%d)", S.n_fail);
	ok(rows >= S.ok_total && rows <= S.ok_total + commit_failures,
	   "every committed transaction's row is there (%ld rows, %ld commits, %d failed COMMITs "
	   "whose outcome the client cannot know)",
	   rows, S.ok_total, commit_failures);
	diag("%ld transactions committed, %d failed, %ld reconnections", S.ok_total, S.n_fail,
	     S.reconnects);
	free(S.conninfo);
	return h_done();
}
