/* Faults (transaction pooling, pool_size 1):
 * - a client that vanishes (RST) in the middle of a transaction: its work
 *   is rolled back and the next client gets a clean server;
 * - a backend killed (SIGKILL) in the middle of COPY FROM STDIN: the client
 *   gets a clear error, PostgreSQL restarts its backends, and the pool
 *   recovers by itself for new clients;
 * - a client that reads a 200 MB result slowly: pgmoat's memory stays
 *   bounded (backpressure: it stops reading the server), and every byte
 *   arrives in the end.  The bound asserted: RSS grows by less than 8 MB
 *   while the client sits on the result (one relay buffer per connection,
 *   pkt_buf, plus allocator slack), and by less than 8 MB over the whole
 *   200 MB. */
#include <config.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

static bool server_blocked(void *arg)
{
	char *v = h_pg_value(arg,
	                     "select count(*) from pg_stat_activity where wait_event = "
	                     "'ClientWrite' and query like 'select repeat%%'");
	bool yes = v && strcmp(v, "1") == 0;
	free(v);
	return yes;
}

static void test_client_vanishes(struct h_moat *m)
{
	PGconn *setup = h_moat_connect(m, "app", "app", "app");
	ok(h_exec(setup, "create table vanish(v int)"), "a table");
	PQfinish(setup);
	int fd = wire_connect(m->port);
	struct wire_login lg;
	memset(&lg, 0, sizeof(lg));
	bool in = fd >= 0 && wire_login(fd, 0, "app", "app", "app", &lg) && lg.ok;
	struct wire_result r;
	memset(&r, 0, sizeof(r));
	ok(in && wire_query(fd, "begin; insert into vanish values (1)", 10, &r) && r.ok &&
	           r.txn_status == 'T',
	   "a client inside a transaction that wrote");
	h_moat_log_mark(m);
	wire_abort(fd); /* RST */
	ok(h_moat_log_wait(m, "client left in the middle", 10),
	   "pgmoat closes its server: the transaction cannot be reused");
	PGconn *next = h_moat_connect(m, "app", "app", "app");
	char *v = h_value(next, "select count(*) from vanish");
	is_str(v, "0", "the next client sees the vanished client's insert rolled back");
	free(v);
	v = h_value(next, "select pg_current_xact_id_if_assigned() is null");
	is_str(v, "t", "and gets a server outside any transaction");
	free(v);
	PQfinish(next);
}

static void test_kill_mid_copy(struct h_moat *m, struct h_pg *pg)
{
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	ok(h_exec(c, "create table copied(v text)"), "a table for COPY");
	PGresult *res = PQexec(c, "copy copied from stdin");
	bool copying = PQresultStatus(res) == PGRES_COPY_IN;
	PQclear(res);
	ok(copying, "COPY FROM STDIN started");
	for (int i = 0; copying && i < 100; i++)
		PQputCopyData(c, "some row\n", 9);
	PQflush(c);
	int pid = h_pg_wait_active(pg, "copy copied", 10);
	ok(pid > 0, "its backend (pid %d)", pid);
	if (pid > 0)
		kill(pid, SIGKILL);
	/* The client learns it at its next step. */
	int put = 1;
	for (int i = 0; put == 1 && i < 100000; i++)
		put = PQputCopyData(c, "more\n", 5);
	PQputCopyEnd(c, NULL);
	res = PQgetResult(c);
	ok(PQresultStatus(res) != PGRES_COMMAND_OK, "the COPY fails with an error (%s)",
	   PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
	/* PostgreSQL restarts its backends after a crash; new clients get in
	 * again once it is back, with no help. */
	double t0 = h_now();
	bool back = false;
	while (!back && h_now() - t0 < 30) {
		PGconn *n = PQconnectdb(h_moat_conninfo(m, "app", "app", "app"));
		PGresult *q = PQstatus(n) == CONNECTION_OK ? PQexec(n, "select 1") : NULL;
		back = q && PQresultStatus(q) == PGRES_TUPLES_OK;
		PQclear(q);
		PQfinish(n);
		if (!back)
			h_nap(0.2);
	}
	ok(back, "the pool recovers by itself after the crash (%.1f s)", h_now() - t0);
}

static void test_slow_reader(struct h_moat *m)
{
	long before = h_proc_kib(m->pid, "VmRSS:");
	int fd = wire_connect(m->port);
	struct wire_login lg;
	memset(&lg, 0, sizeof(lg));
	ok(fd >= 0 && wire_login(fd, 0, "app", "app", "app", &lg) && lg.ok, "a raw client");
	/* 200 MB of rows. */
	ok(wire_send_query(fd, "select repeat('x', 100000) from generate_series(1, 2000)"),
	   "a query returning 200 MB");
	long got = 0;
	int rows = 0;
	struct wire_msg msg;
	/* Read a little, then let it sit: the server must wait for us. */
	while (rows < 10 && wire_read_msg(fd, &msg, 10) == 1) {
		got += msg.len + 5;
		rows += msg.type == 'D';
		wire_msg_free(&msg);
	}
	/* The backend ends up blocked writing to pgmoat (an unbounded relay
	 * would read all 200 MB instead and the backend would finish). */
	ok(h_wait_until(server_blocked, m->pg, 20),
	   "the server waits for pgmoat to read (wait_event ClientWrite)");
	long during = h_proc_kib(m->pid, "VmRSS:");
	ok(before > 0 && during > 0 && during - before < 8 * 1024,
	   "pgmoat's memory stays bounded while the client reads slowly (RSS %ld -> %ld KiB, "
	   "bound +8192 KiB, %ld bytes read)",
	   before, during, got);
	/* Then everything arrives. */
	bool ready = false;
	while (!ready && wire_read_msg(fd, &msg, 30) == 1) {
		got += msg.len + 5;
		rows += msg.type == 'D';
		ready = msg.type == 'Z';
		wire_msg_free(&msg);
	}
	long after = h_proc_kib(m->pid, "VmRSS:");
	ok(ready && rows == 2000 && got > 200000000,
	   "every row of the result arrives (%d rows, %ld bytes)", rows, got);
	ok(after > 0 && after - before < 8 * 1024,
	   "and pgmoat's memory did not grow with the 200 MB (RSS %ld -> %ld KiB, bound +8192 KiB)",
	   before, after);
	close(fd);
}

int main(void)
{
	h_init("t_faults", 180);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, "pool_size=1",
	                          "auth_type = md5\npool_mode = transaction\nverbose = 1\n"
	                          "server_login_retry = 0.2\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	test_client_vanishes(m);
	test_slow_reader(m);
	test_kill_mid_copy(m, pg);
	return h_done();
}
