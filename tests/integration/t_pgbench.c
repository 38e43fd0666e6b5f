/* pgbench through pgmoat: initialise, then 50 clients for 10 s (TPC-B-like,
 * simple protocol) and 10 clients for 3 s (select-only, prepared
 * statements), with zero failed transactions and consistent data. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

static int pgbench(struct h_moat *m, const char *const extra[], double timeout, char **out)
{
	char port[16];
	snprintf(port, sizeof port, "%d", m->port);
	const char *argv[32] = {"pgbench", "-h", "127.0.0.1", "-p", port, "-U", "app"};
	size_t n = 7;
	for (size_t i = 0; extra[i] && n < 30; i++)
		argv[n++] = extra[i];
	argv[n++] = "app";
	argv[n] = NULL;
	const char *env[] = {"PGPASSWORD=app", "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=30", NULL};
	return h_run(argv, env, timeout, out);
}

static void run(struct h_moat *m, const char *what, const char *const args[])
{
	char *out = NULL;
	int rc = pgbench(m, args, 90, &out);
	long failed = h_number_after(out, "number of failed transactions: ");
	long done = h_number_after(out, "number of transactions actually processed: ");
	is_int(rc, 0, "%s: pgbench exits 0", what);
	is_int(failed, 0, "%s: zero failed transactions", what);
	ok(done > 0, "%s: %ld transactions processed", what, done);
	if (rc != 0 || failed != 0 || done <= 0)
		h_diag_text("  pgbench: ", out);
	else {
		const char *tps = strstr(out, "tps = ");
		diag("%s: %.*s", what, tps ? (int)strcspn(tps, "\n") : 0, tps ? tps : "");
	}
	free(out);
}

int main(void)
{
	h_init("t_pgbench", 240);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, NULL,
	                          "pool_mode = session\n"
	                          "default_pool_size = 60\n"
	                          "max_client_conn = 200\n"
	                          "query_wait_timeout = 30\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	tap_plan(11);
	char *out = NULL;
	const char *init[] = {"-i", "-s", "1", "-q", NULL};
	int rc = pgbench(m, init, 120, &out);
	is_int(rc, 0, "pgbench -i through pgmoat");
	if (rc != 0)
		h_diag_text("  pgbench -i: ", out);
	free(out);

	const char *tpcb[] = {"-c", "50", "-j", "2", "-T", "10", "-n", NULL};
	run(m, "50 clients, 10 s, TPC-B-like", tpcb);
	const char *sel[] = {"-c", "10", "-j", "2", "-T", "3", "-n", "-S", "-M", "prepared", NULL};
	run(m, "10 clients, 3 s, select-only, prepared", sel);

	/* TPC-B bookkeeping must add up: nothing lost or doubled. */
	ok(h_pgbench_balanced(pg, "app"), "account and branch balances equal the history's sum");
	ok(h_moat_alive(m), "pgmoat still running");
	int n = h_pg_count_backends(pg, "app");
	ok(n >= 0 && n <= 60, "PostgreSQL has at most default_pool_size backends for the pool (%d)",
	   n);
	return h_done();
}
