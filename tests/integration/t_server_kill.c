/* A server connection dies under a client: the client gets 08006 and is
 * closed, the dead connection is never handed out again and the pool
 * recovers; the same when PostgreSQL itself restarts. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

static bool client_works(void *arg)
{
	struct h_moat *m = arg;
	struct h_async a;
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	h_async_start(&a, ci, "select 'back'");
	free(ci);
	bool ok = h_async_wait(&a, 8) && h_async_ok(&a) && strcmp(a.value, "back") == 0;
	h_async_close(&a);
	return ok;
}

/* The backend of an idle client is terminated. */
static int idle_kill(struct h_moat *m, struct h_pg *pg)
{
	int fd = wire_connect(m->port);
	struct wire_login l;
	struct wire_result r;
	memset(&r, 0, sizeof r);
	bool in = fd >= 0 && wire_login(fd, 0, "app", "app", "app", &l) &&
	        wire_query(fd, "select pg_backend_pid()", 10, &r);
	int pid = atoi(r.value);
	ok(in && pid > 0, "client A logged in; its backend is %d", pid);
	ok(pid > 0 && h_pg_terminate(pg, pid), "superuser terminates A's backend");

	/* Whether pgmoat tells A at once or on its next query, A must get an
	 * ErrorResponse 08006 and then be disconnected. */
	wire_send_query(fd, "select 1");
	char states[64] = "";
	bool eof = wire_wait_eof(fd, 10, states, sizeof states);
	ok(strstr(states, "08006") != NULL, "A receives an ErrorResponse 08006 (errors seen: '%s')",
	   states);
	ok(eof, "A is disconnected");
	if (fd >= 0)
		close(fd);
	return pid;
}

/* The backend is terminated while it runs the client's query. */
static int busy_kill(struct h_moat *m, struct h_pg *pg, int dead)
{
	PGconn *b = h_moat_connect(m, "app", "app", "app");
	int pid = h_connected(b) ? h_backend_pid(b) : 0;
	ok(pid > 0 && pid != dead, "client B gets a new server, not the dead one (%d vs %d)", pid,
	   dead);
	bool sent = PQsendQuery(b, "select pg_sleep(30)");
	int active = sent ? h_pg_wait_active(pg, "select pg_sleep(30)", 10) : 0;
	ok(active > 0 && active == pid, "B's query is running on backend %d", active);
	ok(active > 0 && h_pg_terminate(pg, active), "superuser terminates it mid-query");
	PGresult *res = PQgetResult(b);
	const char *st = h_result_state(res);
	ok(res && PQresultStatus(res) == PGRES_FATAL_ERROR &&
	           (strcmp(st, "08006") == 0 || strcmp(st, "57P01") == 0),
	   "B's query fails with 08006 or the server's 57P01 (got '%s')", st);
	if (res)
		h_diag_text("  B: ", PQresultErrorMessage(res));
	PQclear(res);
	while ((res = PQgetResult(b)) != NULL)
		PQclear(res);
	char *after = h_error_state(b, "select 1");
	ok(strcmp(after, "") != 0, "B's session is over (next query: '%s')", after);
	free(after);
	PQfinish(b);
	return pid;
}

int main(void)
{
	h_init("t_server_kill", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, "pool_size=1",
	                          "pool_mode = session\n"
	                          "server_login_retry = 1\n"
	                          "server_connect_timeout = 2\n"
	                          "query_wait_timeout = 5\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	tap_plan(17);
	int pid_a = idle_kill(m, pg);
	int pid_b = busy_kill(m, pg, pid_a);

	PGconn *c = h_moat_connect(m, "app", "app", "app");
	int pid_c = h_connected(c) ? h_backend_pid(c) : 0;
	ok(pid_c > 0 && pid_c != pid_a && pid_c != pid_b,
	   "the pool recovered: client C works on a fresh server (%d)", pid_c);
	PQfinish(c);

	/* PostgreSQL goes away and comes back. */
	h_pg_stop(pg, false);
	struct h_async d;
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	h_async_start(&d, ci, "select 1");
	free(ci);
	bool finished = h_async_wait(&d, 20);
	ok(finished && !h_async_ok(&d), "with PostgreSQL down a client gets an error, not a hang");
	if (d.error)
		h_diag_text("  D: ", d.error);
	h_async_close(&d);
	ok(h_moat_alive(m), "pgmoat keeps running while PostgreSQL is down");

	ok(h_pg_restart(pg), "PostgreSQL restarted on the same port");
	ok(h_wait_until(client_works, m, 20), "clients are served again without restarting pgmoat");
	ok(h_moat_alive(m), "pgmoat still running");
	int n = h_pg_count_backends(pg, "app");
	ok(n >= 0 && n <= 1, "PostgreSQL has at most pool_size=1 backend for the pool (%d)", n);
	return h_done();
}
