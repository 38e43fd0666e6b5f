/* Server connection upkeep: server_idle_timeout closes idle servers,
 * server_lifetime retires old ones once released (never under a session),
 * min_pool_size keeps a floor of servers open.  Each instance has its own
 * user, so PostgreSQL's backends can be counted per instance. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

struct count {
	struct h_pg *pg;
	const char *user;
	int want;
	bool at_least;
};

static bool count_is(void *arg)
{
	struct count *c = arg;
	int n = h_pg_count_backends(c->pg, c->user);
	return c->at_least ? n >= c->want : n == c->want;
}

static struct h_moat *start(struct h_pg *pg, const char *settings)
{
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_userlist(m, "\"u1\" \"pw\"\n\"u2\" \"pw\"\n\"u3\" \"pw\"\n") ||
	    !h_moat_write_std_ini(m, NULL, settings) || !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	return m;
}

static int session_pid(struct h_moat *m, const char *user)
{
	PGconn *c = h_moat_connect(m, user, "app", "pw");
	int pid = h_connected(c) ? h_backend_pid(c) : 0;
	PQfinish(c);
	return pid;
}

static void idle_timeout(struct h_pg *pg)
{
	struct h_moat *m = start(pg,
	                         "pool_mode = session\nserver_idle_timeout = 1\n"
	                         "server_lifetime = 0\nmin_pool_size = 0\n");
	struct count c = {pg, "u1", 1, false};
	ok(session_pid(m, "u1") > 0 && h_wait_until(count_is, &c, 5),
	   "idle timeout: after the client leaves its server stays in the pool");
	double t0 = h_now();
	c.want = 0;
	bool closed = h_wait_until(count_is, &c, 10);
	ok(closed, "and is closed once idle longer than server_idle_timeout (%.1f s)",
	   h_now() - t0);
	h_moat_stop(m);
}

static void lifetime(struct h_pg *pg)
{
	struct h_moat *m = start(pg,
	                         "pool_mode = session\nserver_lifetime = 1\n"
	                         "server_idle_timeout = 0\nmin_pool_size = 0\n");
	PGconn *b = h_moat_connect(m, "u2", "app", "pw");
	int pid = h_connected(b) ? h_backend_pid(b) : 0;
	/* Keep the session busy past the server's lifetime. */
	double end = h_now() + 2.5;
	bool same = pid > 0;
	while (same && h_now() < end) {
		same = h_backend_pid(b) == pid;
		h_nap(0.1);
	}
	ok(same, "a session outlives server_lifetime on the same server");
	PQfinish(b);
	int next = session_pid(m, "u2");
	ok(next > 0 && next != pid,
	   "once released, a server past its lifetime is not reused (%d, %d)", pid, next);
	struct count c = {pg, "u2", 1, false};
	ok(h_wait_until(count_is, &c, 10), "the retired server is closed (one backend left)");
	h_moat_stop(m);
}

static void min_pool(struct h_pg *pg)
{
	struct h_moat *m = start(pg,
	                         "pool_mode = session\nmin_pool_size = 2\n"
	                         "server_idle_timeout = 1\nserver_lifetime = 0\n");
	struct count c = {pg, "u3", 2, true};
	ok(session_pid(m, "u3") > 0 && h_wait_until(count_is, &c, 10),
	   "min_pool_size=2: two servers are opened for the pool");
	double end = h_now() + 3;
	bool kept = true;
	while (kept && h_now() < end) {
		kept = count_is(&c);
		h_nap(0.1);
	}
	ok(kept, "and kept although idle longer than server_idle_timeout");
	h_moat_stop(m);
	c.want = 0;
	c.at_least = false;
	ok(h_wait_until(count_is, &c, 10), "they are closed when pgmoat stops");
}

int main(void)
{
	h_init("t_lifetime", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "u1", "pw", "app");
	h_pg_create_app(pg, "u2", "pw", NULL);
	h_pg_create_app(pg, "u3", "pw", NULL);
	tap_plan(9);
	idle_timeout(pg);
	lifetime(pg);
	min_pool(pg);
	return h_done();
}
