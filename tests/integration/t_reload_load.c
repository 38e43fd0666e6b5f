/* Reloads under load: pgbench runs 16 clients through pgmoat (two workers,
 * transaction pooling) while the configuration is reloaded ten times, each
 * time with another pool_size (2 or 6) and another server target
 * (application_name), so the control thread swaps snapshots and refreshes
 * the pools while both workers hand servers around.  Each reload's target
 * replaces every server of the one before under load; the last pool_size
 * (2) bounds the backends; pgbench ends with zero failed transactions and
 * the TPC-B balances add up.  The ThreadSanitizer run of scripts/check runs
 * this test for the reload paths. */
#include <config.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

#define RELOADS 10

static struct h_pg *pg;
static struct h_moat *moat;

static bool write_ini(int gen, int pool_size)
{
	char *params = h_strdupf("application_name=gen%d pool_size=%d", gen, pool_size);
	bool ok = h_moat_write_std_ini(moat, params,
	                               "pool_mode = transaction\n"
	                               "max_client_conn = 100\n"
	                               "query_wait_timeout = 60\n");
	free(params);
	return ok;
}

/* The pids of pgmoat's backends, "pid,pid,..." (malloc'd; "" if none). */
static char *backend_pids(void)
{
	char *v = h_pg_value(pg,
	                     "select coalesce(string_agg(pid::text, ','), '')"
	                     " from pg_stat_activity where usename = 'app'"
	                     " and backend_type = 'client backend'");
	return v ? v : strdup("");
}

static int count_where(const char *cond)
{
	char *v = h_pg_value(pg,
	                     "select count(*) from pg_stat_activity where usename = 'app'"
	                     " and backend_type = 'client backend' and %s",
	                     cond);
	int n = v ? atoi(v) : -1;
	free(v);
	return n;
}

/* None of `pids` is left, and some other backend serves the load. */
static bool replaced(void *arg)
{
	const char *pids = arg;
	char *old = h_strdupf("pid in (%s)", *pids ? pids : "0");
	char *fresh = h_strdupf("pid not in (%s)", *pids ? pids : "0");
	bool done = count_where(old) == 0 && count_where(fresh) > 0;
	free(old);
	free(fresh);
	return done;
}

static bool at_most_two(void *arg)
{
	(void)arg;
	int n = count_where("true");
	return n >= 0 && n <= 2;
}

static bool serving(void *arg)
{
	(void)arg;
	return count_where("true") > 0;
}

int main(void)
{
	h_init("t_reload_load", 180);
	pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	moat = h_moat_new(pg);
	if (!write_ini(0, 6) || !h_moat_start(moat, NULL))
		h_bail("pgmoat did not start");
	tap_plan(10);

	char port[16];
	snprintf(port, sizeof(port), "%d", pg->port);
	const char *init[] = {"pgbench", "-i", "-q", "-s",  "1",   "-h", "127.0.0.1",
	                      "-p",      port, "-U", "app", "app", NULL};
	char *out = NULL;
	int rc = h_run(init, NULL, 120, &out);
	if (rc != 0) {
		h_diag_text("  pgbench -i: ", out);
		h_bail("pgbench -i failed");
	}
	free(out);

	char mport[16];
	snprintf(mport, sizeof(mport), "%d", moat->port);
	const char *argv[] = {"pgbench", "-n", "-h", "127.0.0.1", "-p", mport, "-U",  "app",
	                      "-c",      "16", "-j", "2",         "-T", "12",  "app", NULL};
	const char *env[] = {"PGPASSWORD=app", "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=30", NULL};
	struct h_run_async b = {.argv = argv, .env = env, .timeout = 120 * h_slow()};
	h_run_async_start(&b);
	ok(h_wait_until(serving, NULL, 20 * h_slow()), "pgbench runs through pgmoat");

	/* Ten reloads, each with a new target and pool_size 6, 2, 6, ... 2. */
	int reloaded = 0, swapped = 0;
	for (int gen = 1; gen <= RELOADS; gen++) {
		char *pids = backend_pids();
		if (write_ini(gen, gen % 2 ? 6 : 2) &&
		    h_moat_reload(moat, "configuration reloaded"))
			reloaded++;
		if (h_wait_until(replaced, pids, 20 * h_slow()))
			swapped++;
		else
			diag("reload %d: a server of the old target is still open (of %s)", gen,
			     pids);
		free(pids);
	}
	bool during = !atomic_load(&b.done);
	is_int(reloaded, RELOADS, "every reload under load is logged as done");
	is_int(swapped, RELOADS,
	       "after each reload every server of the old target is replaced, under load");
	ok(during, "all reloads happened while pgbench ran");
	/* Servers the old target opened just before the reload close as they
	 * are released; then the new pool_size holds. */
	bool bounded = h_wait_until(at_most_two, NULL, 20 * h_slow());
	int most = 0;
	for (int i = 0; bounded && i < 20 && !atomic_load(&b.done); i++) {
		int n = count_where("true");
		most = n > most ? n : most;
		h_nap(0.05);
	}
	ok(bounded && most <= 2, "the last pool_size (2) bounds the backends (at most %d)", most);

	h_run_async_wait(&b);
	long failed = h_number_after(b.out, "number of failed transactions: ");
	long done = h_number_after(b.out, "number of transactions actually processed: ");
	is_int(b.rc, 0, "pgbench exits 0");
	is_int(failed, 0, "zero failed transactions");
	ok(done > 0, "%ld transactions processed", done);
	if (b.rc != 0 || failed != 0 || done <= 0)
		h_diag_text("  pgbench: ", b.out);
	free(b.out);

	ok(h_pgbench_balanced(pg, "app"), "account and branch balances equal the history's sum");
	return h_done();
}
