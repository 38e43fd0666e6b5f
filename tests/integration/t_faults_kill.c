/* Backends that die or freeze under pgmoat (transaction pooling):
 * - the backend of a client inside a transaction, and the backend of a
 *   client in the middle of a large result, killed with SIGKILL: that
 *   client gets 08006 with a message and is closed, the idle clients keep
 *   their connections, PostgreSQL's crash restart ends every backend, and
 *   the pool recovers by itself (new and old clients served, no action);
 * - a backend frozen with SIGSTOP: query_timeout ends its client's query
 *   with 57014 while other clients' queries run on other servers;
 * - a frozen postmaster: a pool that needs a new server gives up after
 *   server_connect_timeout with a clear error (08006), while the pool
 *   with servers keeps serving; all resumed with SIGCONT. */
#include <config.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

#define N_IDLE 6

static struct h_moat *M;
static struct h_pg *PG;

static bool served(void *arg)
{
	const char *db = arg;
	struct h_async a;
	char *ci = h_moat_conninfo(M, "app", db, "app");
	h_async_start(&a, ci, "select 'back'");
	free(ci);
	bool ok = h_async_wait(&a, 5) && h_async_ok(&a) && strcmp(a.value, "back") == 0;
	h_async_close(&a);
	return ok;
}

/* Reads results of `c` in single-row mode until the end or `deadline`. */
static PGresult *next_result(PGconn *c, double deadline)
{
	while (PQisBusy(c) && h_now() < deadline) {
		struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
		if (poll(&p, 1, 200) < 0 || !PQconsumeInput(c))
			break;
	}
	return PQisBusy(c) ? NULL : PQgetResult(c);
}

/* Runs `sql` and reads every result: the first error's SQLSTATE ("none"
 * if libpq made it up: connection lost) and primary message (malloc'd). */
static void first_error(PGconn *c, const char *sql, char **state, char **msg)
{
	*state = *msg = NULL;
	if (!PQsendQuery(c, sql))
		return;
	PGresult *r;
	while ((r = next_result(c, h_now() + 15)) != NULL) {
		ExecStatusType t = PQresultStatus(r);
		if (!*state && t != PGRES_TUPLES_OK && t != PGRES_COMMAND_OK) {
			const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			*state = strdup(s ? s : "none");
			*msg = strdup(m ? m : PQerrorMessage(c));
			(*msg)[strcspn(*msg, "\n")] = '\0';
		}
		PQclear(r);
	}
}

static bool super_back(void *arg)
{
	(void)arg;
	PGresult *r = PQexec(h_pg_super(PG), "select 1");
	bool fine = PQresultStatus(r) == PGRES_TUPLES_OK;
	PQclear(r);
	return fine;
}

static int crash_restarts(void)
{
	char *log = h_read_file(PG->logpath, NULL);
	int n = 0;
	for (const char *p = log; p && (p = strstr(p, "terminated; reinitializing")) != NULL; p++)
		n++;
	free(log);
	return n;
}

static bool crash_seen(void *arg)
{
	return crash_restarts() > *(int *)arg;
}

/* Waits until PostgreSQL has begun its crash restart (its log says so),
 * then until a new client is served again. */
static void await_recovery(const char *what, int restarts_before)
{
	double t0 = h_now();
	ok(h_wait_until(crash_seen, &restarts_before, 10),
	   "%s: PostgreSQL ends all its backends and reinitializes (its log)", what);
	bool back = h_wait_until(served, "app", 30);
	ok(back, "%s: the pool recovers by itself, a new client is served (%.2f s)", what,
	   h_now() - t0);
	/* The test's own superuser connection died in the crash too. */
	if (!h_wait_until(super_back, NULL, 10))
		h_bail("no superuser connection after the crash restart");
}

/* The idle clients (no transaction, so no server) keep their connections
 * and their next query succeeds at the first try. */
static void idle_clients_fine(PGconn *idle[], const char *what)
{
	int fine = 0;
	for (int i = 0; i < N_IDLE; i++) {
		char *v = PQstatus(idle[i]) == CONNECTION_OK ? h_value(idle[i], "select 'still'")
		                                             : NULL;
		fine += v && strcmp(v, "still") == 0;
		free(v);
	}
	is_int(fine, N_IDLE, "%s: all %d idle clients kept their connection and are served", what,
	       N_IDLE);
}

static void kill_mid_transaction(PGconn *idle[])
{
	PGconn *c = h_moat_connect(M, "app", "app", "app");
	ok(h_exec(c, "create table killed(v int)"), "a table");
	bool in = h_exec(c, "begin") && h_exec(c, "insert into killed values (1)");
	char *pid = in ? h_value(c, "select pg_backend_pid()") : NULL;
	ok(pid != NULL, "a client inside a transaction that wrote, on backend %s", pid ? pid : "?");
	int bpid = pid ? atoi(pid) : 0;
	free(pid);
	int restarts = crash_restarts();
	ok(bpid > 0 && kill(bpid, SIGKILL) == 0, "its backend is killed with SIGKILL");
	char *st = NULL, *msg = NULL;
	first_error(c, "insert into killed values (2)", &st, &msg);
	ok(st && strcmp(st, "08006") == 0 && strstr(msg, "server connection lost"),
	   "its next statement fails with 08006 and a message (%s: %s)", st ? st : "no error",
	   msg ? msg : "");
	free(st);
	free(msg);
	PQconsumeInput(c);
	ok(PQstatus(c) == CONNECTION_BAD, "and pgmoat closes that client");
	PQfinish(c);
	await_recovery("SIGKILL mid-transaction", restarts);
	idle_clients_fine(idle, "SIGKILL mid-transaction");
	PGconn *direct = h_pg_connect(PG, "app", "app");
	char *n = h_value(direct, "select count(*) from killed");
	is_str(n, "0", "the killed transaction's insert is not there");
	free(n);
	PQfinish(direct);
}

static void kill_mid_result(PGconn *idle[])
{
	PGconn *c = h_moat_connect(M, "app", "app", "app");
	h_moat_log_mark(M);
	/* 200,000 rows of 1 kB: far more than the socket buffers hold. */
	const char *q = "select g, repeat('r', 1000) from generate_series(1, 200000) g";
	bool sent = PQsendQuery(c, q) && PQsetSingleRowMode(c);
	long rows = 0;
	double deadline = h_now() + 30;
	PGresult *r = NULL;
	while (sent && rows < 1000 && (r = next_result(c, deadline)) != NULL &&
	       PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
		rows++;
		PQclear(r);
		r = NULL;
	}
	PQclear(r);
	ok(rows == 1000, "a client is reading a 200 MB result (%ld rows read)", rows);
	int bpid = h_pg_wait_active(PG, "select g, repeat", 10);
	int restarts = crash_restarts();
	ok(bpid > 0 && kill(bpid, SIGKILL) == 0, "its backend (%d) is killed with SIGKILL", bpid);
	char *state = NULL, *msg = NULL;
	while ((r = next_result(c, deadline)) != NULL) {
		if (PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
			rows++;
		} else if (!state) {
			const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			state = strdup(s ? s : "none");
			msg = strdup(m ? m : PQerrorMessage(c));
			msg[strcspn(msg, "\n")] = '\0';
		}
		PQclear(r);
	}
	/* The server's last bytes end in the middle of a DataRow (PostgreSQL
	 * sends 8 kB blocks): nothing can follow a partial message, so the
	 * client is closed; at a message boundary it would get 08006. */
	bool cut = state && strcmp(state, "none") == 0 &&
	        strstr(msg, "server closed the connection unexpectedly");
	bool clean = state && strcmp(state, "08006") == 0 && strstr(msg, "server connection lost");
	ok(cut || clean,
	   "the rows relayed so far arrive, then the client learns the connection is lost "
	   "(%s: %s)",
	   state ? state : "no error", msg ? msg : "");
	ok(h_moat_log_wait(M,
	                   cut ? "server connection lost in the middle of a message"
	                       : "server connection lost",
	                   10),
	   "pgmoat logs why");
	ok(rows < 200000, "the result is cut short (%ld rows of 200000)", rows);
	free(state);
	free(msg);
	PQfinish(c);
	await_recovery("SIGKILL mid-result", restarts);
	idle_clients_fine(idle, "SIGKILL mid-result");
}

static bool backend_gone(void *arg)
{
	char *v =
	        h_pg_value(PG, "select count(*) from pg_stat_activity where pid = %d", *(int *)arg);
	bool gone = v && strcmp(v, "0") == 0;
	free(v);
	return gone;
}

/* Runs `rounds` queries on each of `others`; the slowest one's seconds, or
 * -1 if one failed. */
static double others_run(PGconn *others[], int n, int rounds)
{
	double worst = 0;
	for (int k = 0; k < rounds; k++) {
		for (int i = 0; i < n; i++) {
			double t0 = h_now();
			char *v = h_value(others[i], "select 'other'");
			bool fine = v && strcmp(v, "other") == 0;
			free(v);
			if (!fine)
				return -1;
			if (h_now() - t0 > worst)
				worst = h_now() - t0;
		}
	}
	return worst;
}

static void frozen_backend(PGconn *others[])
{
	PGconn *c = h_moat_connect(M, "app", "app", "app");
	char *pid = h_exec(c, "begin") ? h_value(c, "select pg_backend_pid()") : NULL;
	ok(pid != NULL, "a client in a transaction on backend %s", pid ? pid : "?");
	int bpid = pid ? atoi(pid) : 0;
	free(pid);
	ok(bpid > 0 && kill(bpid, SIGSTOP) == 0, "its backend is frozen with SIGSTOP");
	h_moat_log_mark(M);
	double t0 = h_now();
	bool sent = PQsendQuery(c, "select 'never'");
	/* Meanwhile the others run on the other servers. */
	double worst = others_run(others, 3, 20);
	double others_took = h_now() - t0;
	ok(worst >= 0 && worst < 1.0 && others_took < 2.0,
	   "meanwhile 3 other clients ran 60 queries on other servers (%.2f s, slowest %.3f s)",
	   others_took, worst);
	PGresult *r = NULL;
	char *text = NULL;
	while (sent && (r = next_result(c, t0 + 15)) != NULL) {
		if (!text)
			text = h_result_text(c, r);
		else
			PQclear(r);
	}
	double took = h_now() - t0;
	ok(text && strncmp(text, "57014 query_timeout", 19) == 0,
	   "query_timeout ends the frozen client's query with 57014 (%s)", text ? text : "none");
	ok(took >= 1.9 && took < 5, "after query_timeout = 2 s (%.2f s)", took);
	ok(h_moat_log_has(M, "query_timeout"), "pgmoat logs why");
	free(text);
	PQfinish(c);
	ok(bpid > 0 && kill(bpid, SIGCONT) == 0, "the backend is resumed (SIGCONT)");
	ok(h_wait_until(backend_gone, &bpid, 10),
	   "and its connection, never reused, ends (the backend exits)");
	ok(others_run(others, 3, 5) >= 0, "the other clients are still served");
}

static void frozen_postmaster(PGconn *others[])
{
	PGconn *direct = h_pg_super(PG); /* opened before the freeze */
	ok(PQstatus(direct) == CONNECTION_OK, "a superuser connection (for later)");
	kill(PG->pid, SIGSTOP);
	h_moat_log_mark(M);
	/* Pool app_new has no server yet: a login to PostgreSQL is needed. */
	double t0 = h_now();
	int fd = wire_connect(M->port);
	struct wire_login lg;
	memset(&lg, 0, sizeof(lg));
	bool in = fd >= 0 && wire_login(fd, 0, "app", "app_new", "app", &lg);
	struct wire_result wr;
	memset(&wr, 0, sizeof(wr));
	if (in) /* pgmoat may answer the login itself, then the query waits */
		wire_query(fd, "select 1", 15, &wr);
	const char *st = in ? wr.sqlstate : lg.sqlstate;
	const char *msg = in ? wr.message : lg.message;
	double took = h_now() - t0;
	ok(strcmp(st, "08006") == 0 && strstr(msg, "server_connect_timeout"),
	   "a client of a pool that must log in to the frozen PostgreSQL gets 08006 (%s: %s)", st,
	   msg);
	ok(took >= 1.9 && took < 6, "after server_connect_timeout = 2 s (%.2f s)", took);
	ok(h_moat_log_has(M, "server_connect_timeout"), "pgmoat logs why");
	if (fd >= 0)
		close(fd);
	/* The pool that has servers is not held up by the frozen login. */
	double worst = others_run(others, 3, 10);
	ok(worst >= 0 && worst < 1.0,
	   "clients of the pool with servers are served (slowest %.3f s)", worst);
	kill(PG->pid, SIGCONT);
	double t1 = h_now();
	ok(h_wait_until(served, "app_new", 20),
	   "resumed (SIGCONT), the pool logs in again by itself (%.2f s)", h_now() - t1);
}

int main(void)
{
	h_init("t_faults_kill", 240);
	/* Commits must survive the crash restarts (the harness's default is
	 * synchronous_commit = off). */
	struct h_pg_opts o = {.conf = "synchronous_commit = on\n"};
	PG = h_pg_start(&o);
	h_pg_create_app(PG, "app", "app", "app");
	M = h_moat_new(PG);
	if (!h_moat_write_std_ini(M,
	                          "pool_size=4\n"
	                          "app_new = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=1",
	                          "auth_type = md5\npool_mode = transaction\n"
	                          "query_timeout = 2\nserver_connect_timeout = 2\n"
	                          "server_login_retry = 0.2\n"
	                          /* the frozen login fails at once, not after
	                           * waiting for the database to come back */
	                          "server_down_wait = 0\n") ||
	    !h_moat_start(M, NULL))
		h_bail("pgmoat did not start");
	PGconn *idle[N_IDLE];
	int in = 0;
	for (int i = 0; i < N_IDLE; i++) {
		idle[i] = h_moat_connect(M, "app", "app", "app");
		in += h_exec(idle[i], "select 1");
	}
	is_int(in, N_IDLE, "%d clients logged in, idle between transactions", N_IDLE);
	kill_mid_transaction(idle);
	kill_mid_result(idle);
	frozen_backend(idle);
	frozen_postmaster(idle);
	for (int i = 0; i < N_IDLE; i++)
		PQfinish(idle[i]);
	return h_done();
}
