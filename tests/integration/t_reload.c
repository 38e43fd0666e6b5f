/* SIGHUP reload while a client stays connected: reloadable keys
 * (query_wait_timeout, default_pool_size) take effect, the client keeps its
 * connection and server; a broken file keeps the old configuration and
 * logs file:line; a non-reloadable change (listen_port) is logged as
 * needing a restart.  Then SIGTERM: no new clients, the running
 * transaction may finish, exit 0. */
#include <config.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

#define POOL_LINE 13 /* line of default_pool_size in the file below */

static void write_ini(struct h_moat *m, const char *pool, const char *wait, int port)
{
	char portbuf[16];
	snprintf(portbuf, sizeof portbuf, "%d", port);
	char *t = h_strdupf("[databases]\n"
	                    "app = host=127.0.0.1 port=@PGPORT@ dbname=app\n"
	                    "\n"
	                    "[pgmoat]\n"
	                    "listen_addr = 127.0.0.1\n"
	                    "listen_port = %s\n"
	                    "unix_socket_dir = @SOCKDIR@\n"
	                    "auth_type = trust\n"
	                    "auth_file = @AUTHFILE@\n"
	                    "workers = 2\n"
	                    "pool_mode = session\n"
	                    "shutdown_timeout = 10\n"
	                    "default_pool_size = %s\n"
	                    "query_wait_timeout = %s\n",
	                    port ? portbuf : "@PORT@", pool, wait);
	if (!h_moat_write_ini(m, t))
		h_bail("cannot write the configuration");
	free(t);
}

/* A new client that wants a server: how it ended. */
static void try_client(struct h_moat *m, struct h_async *a)
{
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	h_async_start(a, ci, "select pg_backend_pid()");
	free(ci);
}

static void check_a(PGconn *a, int pid, const char *when)
{
	is_int(h_backend_pid(a), pid, "client A still connected to the same server %s", when);
}

int main(void)
{
	h_init("t_reload", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	h_moat_write_userlist(m, "\"app\" \"app\"\n");
	write_ini(m, "1", "60", 0);
	if (!h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	tap_plan(25);
	PGconn *a = h_moat_connect(m, "app", "app", "app");
	int pid_a = h_connected(a) ? h_backend_pid(a) : 0;
	if (!ok(pid_a > 0, "client A connected and holds the only server"))
		h_bail("no connection");

	/* query_wait_timeout 60 -> 1 */
	write_ini(m, "1", "1", m->port);
	ok(h_moat_reload(m, "reloaded"), "SIGHUP: the log says the configuration was reloaded");
	check_a(a, pid_a, "after the reload");
	struct h_async w;
	try_client(m, &w);
	bool done = h_async_wait(&w, 10);
	double took = w.finished - w.started;
	ok(done && !h_async_ok(&w) && took < 6,
	   "new query_wait_timeout=1 applies: a waiting client gives up after %.1f s", took);
	h_async_close(&w);

	/* default_pool_size 1 -> 2 */
	write_ini(m, "2", "1", m->port);
	ok(h_moat_reload(m, "reloaded"), "second reload logged");
	struct h_async d;
	try_client(m, &d);
	ok(h_async_wait(&d, 5) && h_async_ok(&d),
	   "new default_pool_size=2 applies: a 2nd client is served");
	ok(d.value && atoi(d.value) != pid_a, "on a server of its own");
	check_a(a, pid_a, "after the pool grew");

	/* A broken file: the old configuration stays. */
	write_ini(m, "lots", "1", m->port);
	char *where = h_strdupf("%s:%d", m->ini, POOL_LINE);
	ok(h_moat_reload(m, where), "broken file on SIGHUP: the error is logged as file:line");
	ok(!h_moat_log_has(m, "configuration reloaded"), "and nothing is reloaded");
	h_moat_log_diag(m);
	free(where);
	ok(h_moat_alive(m), "pgmoat keeps running");
	check_a(a, pid_a, "after the failed reload");
	struct h_async e;
	try_client(m, &e);
	done = h_async_wait(&e, 10);
	took = e.finished - e.started;
	ok(done && !h_async_ok(&e) && took < 6,
	   "old settings still in force: pool of 2 full, a 3rd client times out after %.1f s",
	   took);
	h_async_close(&e);
	h_async_close(&d);
	PGconn *n = h_moat_connect(m, "app", "app", "app");
	char *v = h_connected(n) ? h_value(n, "select 'new'") : NULL;
	is_str(v, "new", "new connections still work");
	free(v);
	PQfinish(n);

	/* listen_port cannot change without a restart. */
	int other = h_free_port();
	write_ini(m, "2", "1", other);
	ok(h_moat_reload(m, "listen_port"), "changing listen_port on SIGHUP is logged");
	ok(h_moat_log_has(m, "restart"), "as needing a restart");
	ok(h_tcp_accepts(m->port), "the old port still accepts connections");
	ok(!h_tcp_accepts(other), "the new port is not opened");
	check_a(a, pid_a, "after the listen_port change");
	write_ini(m, "2", "1", m->port);
	ok(h_moat_reload(m, "reloaded"), "back to the original file");

	/* SIGTERM: stop accepting, let A's transaction finish, exit 0. */
	ok(h_exec(a, "begin") && h_exec(a, "create temp table t (x int)"), "A opens a transaction");
	h_moat_signal(m, SIGTERM);
	PGconn *late = NULL;
	for (int i = 0; i < 20; i++) {
		char *ci = h_moat_conninfo(m, "app", "app", "app");
		late = PQconnectdb(ci);
		free(ci);
		bool in = PQstatus(late) == CONNECTION_OK;
		PQfinish(late);
		if (!in)
			break;
		h_nap(0.05);
	}
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	late = PQconnectdb(ci);
	free(ci);
	ok(PQstatus(late) != CONNECTION_OK, "after SIGTERM new clients are not served");
	PQfinish(late);
	ok(h_exec(a, "insert into t values (1)") && h_exec(a, "commit"),
	   "A's running transaction can still finish");
	int rc = h_moat_wait_exit(m, 20);
	is_int(rc, 0, "pgmoat exits with status 0 within shutdown_timeout");
	PQfinish(a);
	return h_done();
}
