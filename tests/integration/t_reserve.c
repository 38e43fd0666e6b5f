/* reserve_pool: a client that has waited reserve_pool_timeout gets one of
 * reserve_pool extra servers; past pool_size + reserve_pool clients wait and
 * time out.  The extra server is opened from the worker's timer, which once
 * counted its own connect time as negative (wrapping to "timed out"). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

int main(void)
{
	h_init("t_reserve", 120);
	tap_plan(7);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, "pool_size=1 reserve_pool=1",
	                          "pool_mode = session\nreserve_pool_timeout = 0.5\n"
	                          "query_wait_timeout = 2\nworkers = 1\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	PGconn *a = h_moat_connect(m, "app", "app", "app");
	int pid_a = h_connected(a) ? h_backend_pid(a) : 0;
	ok(pid_a > 0, "A holds the pool's one server");

	/* Clients log in at once; their first query waits for a server. */
	double t0 = h_now();
	PGconn *b = h_moat_connect(m, "app", "app", "app");
	int pid_b = h_connected(b) ? h_backend_pid(b) : 0;
	double waited = h_now() - t0;
	ok(pid_b > 0 && pid_b != pid_a, "B gets a reserve server of its own");
	ok(waited >= 0.4 && waited < 5, "after about reserve_pool_timeout (%.2f s)", waited);
	ok(!h_moat_log_has(m, "server_connect_timeout"),
	   "the reserve server's login did not time out");

	t0 = h_now();
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	PGresult *r = PQexec(c, "select 1");
	waited = h_now() - t0;
	ok(PQresultStatus(r) != PGRES_TUPLES_OK && strstr(PQerrorMessage(c), "query_wait_timeout"),
	   "C, past pool_size + reserve_pool, gets query_wait_timeout");
	PQclear(r);
	ok(waited >= 1.5 && waited < 8, "after about query_wait_timeout (%.2f s)", waited);
	PQfinish(c);
	PQfinish(a);
	PQfinish(b);
	return h_done();
}
