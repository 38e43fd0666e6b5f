/* Timeouts of transaction pooling, each ending the right connection with the
 * right error and a log line: query_timeout (57014, the backend's query is
 * canceled), idle_transaction_timeout (25P03, the transaction rolled back),
 * client_idle_timeout (57P05, a busy client is left alone), and
 * server_check_query run on a server idle past server_check_delay, which
 * replaces a server that does not answer. */
#include <config.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

static struct h_moat *moat(struct h_pg *pg, const char *settings)
{
	struct h_moat *m = h_moat_new(pg);
	char *all = h_strdupf("pool_mode = transaction\nworkers = 1\n%s", settings);
	if (!h_moat_write_std_ini(m, "pool_size=2", all) || !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	free(all);
	return m;
}

/* The error of running `sql` on `c`, "" on success (malloc'd message). */
static char *error_of(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	char *msg =
	        strdup(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK
	                       ? ""
	                       : PQerrorMessage(c));
	PQclear(r);
	return msg;
}

static bool no_sleeper(void *arg)
{
	char *n = h_pg_value(arg,
	                     "select count(*) from pg_stat_activity "
	                     "where query = 'select pg_sleep(20)' and state = 'active'");
	bool none = n && strcmp(n, "0") == 0;
	free(n);
	return none;
}

static void query_timeout(struct h_pg *pg)
{
	struct h_moat *m = moat(pg, "query_timeout = 1\n");
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	double t0 = h_now();
	char *err = error_of(c, "select pg_sleep(20)");
	double took = h_now() - t0;
	ok(strstr(err, "query_timeout") != NULL, "query_timeout: the client gets the error (%s)",
	   err);
	ok(took < 15, "long before the query would end (%.1f s)", took);
	ok(PQstatus(c) == CONNECTION_BAD, "and is disconnected");
	ok(h_moat_log_has(m, "query_timeout: query canceled") && h_moat_log_wait(m, "57014", 10),
	   "pgmoat logs why, with 57014");
	ok(h_wait_until(no_sleeper, pg, 10), "the backend's query was canceled");
	free(err);
	PQfinish(c);
	PGconn *d = h_moat_connect(m, "app", "app", "app");
	char *v = h_value(d, "select 'short'");
	is_str(v, "short", "short queries still run");
	free(v);
	PQfinish(d);
	h_moat_stop(m);
}

static void idle_transaction_timeout(struct h_pg *pg)
{
	PGconn *direct = h_pg_connect(pg, "app", "app");
	if (!h_exec(direct, "create table itt (x int)"))
		h_bail("set-up failed");
	struct h_moat *m = moat(pg, "idle_transaction_timeout = 1\n");
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	ok(h_exec(c, "begin") && h_exec(c, "insert into itt values (1)"),
	   "a client opens a transaction and goes idle");
	ok(h_moat_log_wait(m, "idle_transaction_timeout", 10), "pgmoat ends it and logs why");
	ok(h_moat_log_wait(m, "25P03", 10), "with 25P03");
	char *err = error_of(c, "commit");
	ok(err[0] && PQstatus(c) == CONNECTION_BAD, "the client was disconnected (%s)", err);
	free(err);
	PQfinish(c);
	char *n = h_value(direct, "select count(*) from itt");
	is_str(n, "0", "its transaction was rolled back");
	free(n);
	PQfinish(direct);
	PGconn *busy = h_moat_connect(m, "app", "app", "app");
	bool fine = h_exec(busy, "begin");
	for (int i = 0; i < 3 && fine; i++) {
		char *v = h_value(busy, "select pg_sleep(0.6), 1");
		fine = v != NULL;
		free(v);
	}
	ok(fine && h_exec(busy, "commit"),
	   "a transaction busy longer than the timeout, never idle that long, is left alone");
	PQfinish(busy);
	h_moat_stop(m);
}

static void client_idle_timeout(struct h_pg *pg)
{
	struct h_moat *m = moat(pg, "client_idle_timeout = 1\n");
	PGconn *idle = h_moat_connect(m, "app", "app", "app");
	PGconn *busy = h_moat_connect(m, "app", "app", "app");
	ok(h_exec(idle, "select 1") && h_exec(busy, "select 1"), "two clients ran a query");
	bool fine = true;
	for (int i = 0; i < 12 && fine; i++) {
		fine = h_exec(busy, "select 2");
		h_nap(0.25); /* paces the busy client: a query every 0.25 s for 3 s */
	}
	ok(fine, "the client that keeps sending queries is not closed");
	ok(h_moat_log_has(m, "client_idle_timeout") && h_moat_log_wait(m, "57P05", 10),
	   "pgmoat logs why the idle one was closed, with 57P05");
	char *err = error_of(idle, "select 1");
	ok(err[0] && PQstatus(idle) == CONNECTION_BAD, "the idle client was disconnected (%s)",
	   err);
	free(err);
	PQfinish(idle);
	PQfinish(busy);
	h_moat_stop(m);
}

static void server_check(struct h_pg *pg)
{
	struct h_moat *m = moat(pg,
	                        "server_check_delay = 0\nserver_check_query = select 'moat-check'\n"
	                        "server_connect_timeout = 1\n");
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	char *pid = h_value(c, "select pg_backend_pid()");
	ok(pid && atoi(pid) > 0, "a client used a server");
	char *again = h_value(c, "select pg_backend_pid()");
	is_str(again, pid, "the next transaction gets the same server back");
	free(again);
	char *log = h_read_file(pg->logpath, NULL);
	ok(log && strstr(log, "statement: select 'moat-check'"),
	   "server_check_query ran before the server was reused (PostgreSQL's log)");
	free(log);
	/* A backend that stops answering: its connection looks alive. */
	int bpid = pid ? atoi(pid) : 0;
	ok(bpid > 0 && kill(bpid, SIGSTOP) == 0, "the server's backend stops answering");
	double t0 = h_now();
	char *v = h_value(c, "select 'served'");
	is_str(v, "served", "the client's query is served by another server");
	ok(h_now() - t0 < 10, "after the check gave up (%.1f s)", h_now() - t0);
	ok(h_moat_log_has(m, "no answer to an internal query"), "pgmoat logs why it closed it");
	free(v);
	if (bpid > 0)
		kill(bpid, SIGCONT);
	free(pid);
	PQfinish(c);
	h_moat_stop(m);
}

int main(void)
{
	h_init("t_timeouts", 180);
	tap_plan(24);
	struct h_pg_opts o = {.conf = "log_statement = 'all'\n"};
	struct h_pg *pg = h_pg_start(&o);
	h_pg_create_app(pg, "app", "app", "app");
	query_timeout(pg);
	idle_transaction_timeout(pg);
	client_idle_timeout(pg);
	server_check(pg);
	return h_done();
}
