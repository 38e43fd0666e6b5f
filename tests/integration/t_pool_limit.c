/* Pool limits in session mode: with pool_size=2 a third client waits, gets
 * a server as soon as one is released, waiters are served first come first
 * served, and a client that waits longer than query_wait_timeout gets an
 * error instead of hanging. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

#define PID_QUERY "select pg_backend_pid()"

static PGconn *holder(struct h_moat *m, int *pid)
{
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	*pid = h_connected(c) ? h_backend_pid(c) : 0;
	return c;
}

static void start_waiter(struct h_async *a, struct h_moat *m)
{
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	h_async_start(a, ci, PID_QUERY);
	free(ci);
}

static int async_pid(const struct h_async *a)
{
	return a->value ? atoi(a->value) : 0;
}

static void wait_and_handoff(struct h_moat *m, struct h_pg *pg)
{
	int p1, p2;
	PGconn *h1 = holder(m, &p1), *h2 = holder(m, &p2);
	ok(p1 && p2 && p1 != p2, "two clients hold the pool's two servers");

	struct h_async w;
	start_waiter(&w, m);
	ok(!h_async_wait(&w, 1.0), "a third client waits while the pool is full");
	is_int(h_pg_count_backends(pg, "app"), 2, "PostgreSQL has 2 backends for the pool, not 3");

	double released = h_now();
	PQfinish(h1);
	ok(h_async_wait(&w, 5) && h_async_ok(&w), "the waiter is served once a server is released");
	is_int(async_pid(&w), p1, "it got the released server");
	diag("waiter served %.3f s after the release", w.finished - released);

	/* FIFO: two waiters, the first to arrive is served first. */
	struct h_async first, second;
	start_waiter(&first, m);
	ok(!h_async_wait(&first, 0.5), "waiter 1 queued");
	start_waiter(&second, m);
	ok(!h_async_wait(&second, 0.5) && !h_async_wait(&first, 0.01), "waiter 2 queued behind it");
	h_async_close(&w); /* releases p1 */
	ok(h_async_wait(&first, 5) && h_async_ok(&first), "the release goes to waiter 1");
	ok(!h_async_wait(&second, 0.5), "waiter 2 keeps waiting");
	PQfinish(h2); /* releases p2 */
	ok(h_async_wait(&second, 5) && h_async_ok(&second), "the next release goes to waiter 2");
	ok(async_pid(&first) == p1 && async_pid(&second) == p2,
	   "each got the server that was released for it");
	ok(h_pg_count_backends(pg, "app") <= 2, "never more than 2 backends");
	h_async_close(&first);
	h_async_close(&second);
}

static void wait_timeout(struct h_moat *m)
{
	int p1, p2;
	PGconn *h1 = holder(m, &p1), *h2 = holder(m, &p2);
	ok(p1 && p2, "query_wait_timeout=1: two clients hold the pool");

	struct h_async w;
	start_waiter(&w, m);
	bool finished = h_async_wait(&w, 10);
	double took = w.finished - w.started;
	ok(finished && w.error != NULL, "a third client gets an error instead of a server");
	ok(w.error && strcasestr(w.error, "timeout") != NULL, "the message says timeout");
	if (w.error)
		h_diag_text("  error: ", w.error);
	ok(finished && took >= 0.8 && took < 6, "after about query_wait_timeout (%.2f s)", took);
	h_async_close(&w);

	/* The exact refusal on the wire: an ErrorResponse, then close. */
	int fd = wire_connect(m->port);
	struct wire_login l;
	struct wire_result r;
	memset(&l, 0, sizeof l);
	char state[8] = "", message[512] = "";
	if (fd >= 0 && wire_login(fd, 0, "app", "app", "app", &l)) {
		wire_query(fd, PID_QUERY, 10, &r);
		snprintf(state, sizeof state, "%s", r.sqlstate);
		snprintf(message, sizeof message, "%s", r.message);
	} else {
		snprintf(state, sizeof state, "%s", l.sqlstate);
		snprintf(message, sizeof message, "%s", l.message);
	}
	ok(state[0] != '\0' && strcasestr(message, "timeout") != NULL,
	   "raw client: ErrorResponse %s '%s'", state, message);
	ok(fd >= 0 && wire_wait_eof(fd, 5, NULL, 0), "and the connection is closed");
	if (fd >= 0)
		close(fd);

	char *v1 = h_value(h1, "select 'h1'"), *v2 = h_value(h2, "select 'h2'");
	ok(v1 && v2 && strcmp(v1, "h1") == 0 && strcmp(v2, "h2") == 0,
	   "the clients holding servers are unaffected");
	free(v1);
	free(v2);
	PQfinish(h1);
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	char *v = h_connected(c) ? h_value(c, "select 'served'") : NULL;
	is_str(v, "served", "after a release a new client is served at once");
	free(v);
	PQfinish(c);
	PQfinish(h2);
}

int main(void)
{
	h_init("t_pool_limit", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");

	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, "pool_size=2",
	                          "pool_mode = session\nquery_wait_timeout = 30\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	struct h_moat *m2 = h_moat_new(pg);
	if (!h_moat_write_std_ini(m2, "pool_size=2",
	                          "pool_mode = session\nquery_wait_timeout = 1\n") ||
	    !h_moat_start(m2, NULL))
		h_bail("second pgmoat did not start");

	tap_plan(22);
	wait_and_handoff(m, pg);
	wait_timeout(m2);
	ok(h_moat_alive(m) && h_moat_alive(m2), "both pgmoat instances still running");
	return h_done();
}
