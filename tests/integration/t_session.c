/* Session pooling: a client keeps its server and all its session state;
 * the next client on the same server starts clean (server_reset_query ran),
 * an open or failed transaction left behind is not inherited, concurrent
 * clients are isolated, and SIGINT shuts down fast with 57P01. */
#include <config.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

static void check_value(PGconn *c, const char *sql, const char *want, const char *what)
{
	char *v = h_value(c, sql);
	is_str(v, want, "%s", what);
	free(v);
}

static void check_state(PGconn *c, const char *sql, const char *want, const char *what)
{
	char *st = h_error_state(c, sql);
	is_str(st, want, "%s", what);
	free(st);
}

static PGresult *exec_prepared(PGconn *c, const char *name)
{
	const char *p[1] = {"7"};
	return PQexecPrepared(c, name, 1, p, NULL, NULL, 0);
}

/* Client A builds up session state; it must survive across queries. */
static int session_a(struct h_moat *m)
{
	PGconn *a = h_moat_connect(m, "app", "app", "app");
	if (!ok(h_connected(a), "client A connected"))
		h_bail("no connection");
	int pid = h_backend_pid(a);
	bool setup = h_exec(a, "set myapp.marker = 'client-a'") &&
	        h_exec(a, "set statement_timeout = '12345ms'") &&
	        h_exec(a, "create temp table tt (x int)") &&
	        h_exec(a, "insert into tt values (1), (2), (3)") &&
	        h_exec(a, "prepare sql_stmt as select 40 + 2");
	PGresult *r = PQprepare(a, "proto_stmt", "select $1::int * 6", 1, NULL);
	setup = setup && PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	ok(setup, "A: SET, temp table, PREPARE and a protocol-level statement");

	/* Unrelated traffic in between. */
	for (int i = 0; i < 20; i++)
		h_exec(a, "select 1");
	check_value(a, "select current_setting('myapp.marker')", "client-a", "A: SET value kept");
	check_value(a, "show statement_timeout", "12345ms", "A: statement_timeout kept");
	check_value(a, "select count(*) from tt", "3", "A: temp table kept");
	check_value(a, "execute sql_stmt", "42", "A: SQL prepared statement kept");
	r = exec_prepared(a, "proto_stmt");
	ok(PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "42") == 0,
	   "A: protocol-level prepared statement kept");
	PQclear(r);
	is_int(h_backend_pid(a), pid, "A: same backend for the whole session");
	PQfinish(a);
	return pid;
}

/* Client B gets the same server (pool_size=1) but none of A's state. */
static void session_b(struct h_moat *m, int pid_a)
{
	PGconn *b = h_moat_connect(m, "app", "app", "app");
	if (!ok(h_connected(b), "client B connected"))
		h_bail("no connection");
	is_int(h_backend_pid(b), pid_a, "B: reuses A's server connection (pool_size=1)");
	check_value(b, "select coalesce(current_setting('myapp.marker', true), '')", "",
	            "B: A's SET value is gone");
	check_value(b, "select current_setting('statement_timeout') = '0'", "t",
	            "B: statement_timeout back to its default");
	check_state(b, "select count(*) from tt", "42P01", "B: A's temp table is gone (42P01)");
	check_state(b, "execute sql_stmt", "26000", "B: A's SQL prepared statement is gone");
	PGresult *r = exec_prepared(b, "proto_stmt");
	is_str(h_result_state(r), "26000", "B: A's protocol-level statement is gone");
	PQclear(r);

	/* B leaves an open transaction with an uncommitted row. */
	ok(h_exec(b, "begin") && h_exec(b, "insert into rows_t values (1)"),
	   "B: begins a transaction and inserts a row");
	PQfinish(b);
}

static void session_after_txn(struct h_moat *m, struct h_pg *pg)
{
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	ok(h_connected(c), "client C connected after B left mid-transaction");
	check_value(c, "select count(*) from rows_t", "0", "C: B's uncommitted row is not there");
	ok(PQtransactionStatus(c) == PQTRANS_IDLE && h_exec(c, "begin") && h_exec(c, "commit"),
	   "C: not inside B's transaction");

	/* C leaves a failed transaction. */
	h_exec(c, "begin");
	char *st = h_error_state(c, "select 1/0");
	free(st);
	PQfinish(c);

	PGconn *d = h_moat_connect(m, "app", "app", "app");
	check_value(d, "select 'clean'", "clean", "D: works after C left a failed transaction");
	PQfinish(d);

	char *v = h_pg_value(pg,
	                     "select count(*) from pg_stat_activity where usename = 'app'"
	                     " and state like 'idle in transaction%%'");
	is_str(v, "0", "no server connection is left idle in transaction");
	free(v);
}

/* A client leaves after an extended-protocol error without sending Sync:
 * the server ignores everything until a Sync, the reset query too, so it
 * must not be reset and reused; the next client gets a working server at
 * once (not after a timeout). */
static void unsynced_error(struct h_moat *m)
{
	int fd = wire_connect(m->port);
	struct wire_login l;
	bool in = fd >= 0 && wire_login(fd, 0, "app", "app", "app", &l) && l.ok;
	static const char parse[] = "\0selec 1\0\0"; /* unnamed, bad SQL, no params */
	struct wire_msg msg;
	char state[6] = "";
	if (in && wire_send_msg(fd, 'P', parse, sizeof(parse)) && wire_send_msg(fd, 'H', NULL, 0) &&
	    wire_read_msg(fd, &msg, 10) == 1) {
		if (msg.type == 'E')
			wire_error_field(&msg, 'C', state, sizeof(state));
		wire_msg_free(&msg);
	}
	is_str(state, "42601", "unsynced: Parse of bad SQL, no Sync, gets the syntax error");
	if (fd >= 0)
		close(fd);
	double t0 = h_now();
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	check_value(c, "select 'next'", "next", "unsynced: the next client is served");
	ok(h_now() - t0 < 5, "unsynced: at once (%.1f s), not after a timeout", h_now() - t0);
	PQfinish(c);
}

/* Two clients at once through a pool of 2: separate servers and state. */
static void concurrent(struct h_moat *m)
{
	PGconn *e = h_moat_connect(m, "app", "app2", "app");
	PGconn *f = h_moat_connect(m, "app", "app2", "app");
	ok(h_connected(e) && h_connected(f), "two concurrent clients on a pool of 2");
	h_exec(e, "set myapp.marker = 'e'");
	h_exec(f, "set myapp.marker = 'f'");
	int pe = h_backend_pid(e), pf = h_backend_pid(f);
	ok(pe != 0 && pf != 0 && pe != pf, "they have different servers");
	char *ve = h_value(e, "select current_setting('myapp.marker')");
	char *vf = h_value(f, "select current_setting('myapp.marker')");
	ok(ve && vf && strcmp(ve, "e") == 0 && strcmp(vf, "f") == 0,
	   "and each sees only its own SET");
	free(ve);
	free(vf);
	PQfinish(e);
	PQfinish(f);
}

static bool no_app_backends(void *arg)
{
	return h_pg_count_backends(arg, "app") == 0;
}

int main(void)
{
	h_init("t_session", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	PGconn *direct = h_pg_connect(pg, "app", "app");
	if (!h_exec(direct, "create table rows_t (x int)"))
		h_bail("set-up failed");
	PQfinish(direct);

	struct h_moat *m = h_moat_new(pg);
	const char *ini = "[databases]\n"
	                  "app = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=1\n"
	                  "app2 = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=2\n"
	                  "\n"
	                  "[pgmoat]\n"
	                  "listen_addr = 127.0.0.1\n"
	                  "listen_port = @PORT@\n"
	                  "unix_socket_dir = @SOCKDIR@\n"
	                  "auth_type = trust\n"
	                  "auth_file = @AUTHFILE@\n"
	                  "workers = 2\n"
	                  "pool_mode = session\n"
	                  "server_reset_query = DISCARD ALL\n"
	                  "query_wait_timeout = 20\n";
	if (!h_moat_write_userlist(m, "\"app\" \"app\"\n") || !h_moat_write_ini(m, ini) ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	tap_plan(33);
	int pid_a = session_a(m);
	session_b(m, pid_a);
	session_after_txn(m, pg);
	unsynced_error(m);
	concurrent(m);

	/* SIGINT: fast shutdown.  An idle client is told (57P01) and closed. */
	int fd = wire_connect(m->port);
	struct wire_login l;
	ok(fd >= 0 && wire_login(fd, 0, "app", "app", "app", &l), "a raw client logged in");
	struct wire_result wr;
	wire_query(fd, "select 1", 10, &wr);
	h_moat_signal(m, SIGINT);
	char states[64] = "";
	ok(wire_wait_eof(fd, 10, states, sizeof states), "SIGINT: pgmoat closes the client");
	ok(strstr(states, "57P01") != NULL, "with an ErrorResponse 57P01 first (got '%s')", states);
	if (fd >= 0)
		close(fd);
	is_int(h_moat_wait_exit(m, 10), 0, "pgmoat exits with status 0 after SIGINT");
	ok(h_wait_until(no_app_backends, pg, 10), "no server connection left behind");
	return h_done();
}
