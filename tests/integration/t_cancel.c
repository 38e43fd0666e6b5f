/* Cancel in transaction pooling: a CancelRequest reaches the backend running
 * that client's query and no other, while 20 other clients keep running
 * queries; a cancel for a client queued for a server takes it out of the
 * queue with 57014; forged and stale keys are ignored. */
#include <config.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

#define N_OTHERS 20

struct other {
	char *conninfo;
	atomic_bool *stop;
	long queries;
	long errors;
	char first_error[200];
};

static void *other_main(void *arg)
{
	struct other *o = arg;
	PGconn *c = PQconnectdb(o->conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		o->errors++;
		snprintf(o->first_error, sizeof(o->first_error), "%s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	/* Each query is in progress a while, so a misrouted cancel would hit one. */
	for (int i = 0; i < 100000 && !atomic_load(o->stop); i++) {
		PGresult *r = PQexec(c, "select pg_sleep(0.02), 7");
		if (PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 1), "7") == 0) {
			o->queries++;
		} else {
			if (!o->errors)
				snprintf(o->first_error, sizeof(o->first_error), "%s",
				         PQerrorMessage(c));
			o->errors++;
		}
		PQclear(r);
	}
	PQfinish(c);
	return NULL;
}

/* Reads up to ReadyForQuery: the SQLSTATE of an error ("" if none). */
static bool read_result(int fd, double timeout, char state[6])
{
	state[0] = '\0';
	double end = h_now() + timeout;
	for (;;) {
		struct wire_msg m;
		double left = end - h_now();
		if (left <= 0 || wire_read_msg(fd, &m, left) != 1)
			return false;
		if (m.type == 'E' && !state[0])
			wire_error_field(&m, 'C', state, 6);
		char type = m.type;
		wire_msg_free(&m);
		if (type == 'Z')
			return true;
	}
}

static int login(struct h_moat *m, struct wire_login *l)
{
	int fd = wire_connect(m->port);
	if (fd < 0 || !wire_login(fd, WIRE_PROTO_3_0, "app", "app", "app", l) || !l->have_key)
		h_bail("wire login failed");
	return fd;
}

static bool send_cancel(struct h_moat *m, uint32_t pid, uint32_t secret)
{
	int fd = wire_connect(m->port);
	if (fd < 0)
		return false;
	bool ok = wire_send_cancel(fd, pid, secret);
	/* pgmoat closes the connection once it has read the request. */
	wire_wait_eof(fd, 5, NULL, 0);
	wire_abort(fd);
	return ok;
}

static void cancel_running(struct h_moat *m, struct h_pg *pg)
{
	atomic_bool stop = false;
	struct other others[N_OTHERS];
	pthread_t th[N_OTHERS];
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	for (int i = 0; i < N_OTHERS; i++) {
		others[i] = (struct other){.conninfo = ci, .stop = &stop};
		pthread_create(&th[i], NULL, other_main, &others[i]);
	}

	struct wire_login l;
	int a = login(m, &l);
	ok(wire_send_query(a, "select pg_sleep(30)") &&
	           h_pg_wait_active(pg, "select pg_sleep(30)", 20) > 0,
	   "A runs pg_sleep(30) while 20 clients run queries");
	double t0 = h_now();
	ok(send_cancel(m, l.key_pid, l.key_secret), "cancel request sent with A's key");
	char state[6];
	bool done = read_result(a, 25, state);
	double took = h_now() - t0;
	is_str(done ? state : "(no result)", "57014", "A's query is canceled (57014)");
	ok(took < 1.0, "within 1 s (%.3f s)", took);
	struct wire_result r;
	ok(wire_query(a, "select 41 + 1", 10, &r) && strcmp(r.value, "42") == 0,
	   "A's connection keeps working");
	wire_abort(a);

	atomic_store(&stop, true);
	long queries = 0, errors = 0;
	const char *first = "";
	for (int i = 0; i < N_OTHERS; i++) {
		pthread_join(th[i], NULL);
		queries += others[i].queries;
		errors += others[i].errors;
		if (others[i].errors && !first[0])
			first = others[i].first_error;
	}
	free(ci);
	is_int(errors, 0, "the 20 other clients had no error (%ld queries) %s", queries, first);
}

static void forged_and_stale(struct h_moat *m, struct h_pg *pg)
{
	/* A stale key: a client that has left. */
	struct wire_login gone;
	int g = login(m, &gone);
	wire_abort(g);

	struct wire_login l;
	int a = login(m, &l);
	ok(wire_send_query(a, "select pg_sleep(1.5), 'finished'") &&
	           h_pg_wait_active(pg, "select pg_sleep(1.5)", 20) > 0,
	   "A runs pg_sleep(1.5)");
	ok(send_cancel(m, l.key_pid, l.key_secret ^ 1u), "a cancel with a forged secret");
	ok(send_cancel(m, l.key_pid ^ 0x55u, l.key_secret), "a cancel for an unknown pid");
	ok(send_cancel(m, gone.key_pid, gone.key_secret), "a cancel with a departed client's key");
	char state[6];
	ok(read_result(a, 20, state) && state[0] == '\0', "A's query is not canceled (%s)", state);
	wire_abort(a);
}

static void cancel_queued(struct h_pg *pg)
{
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, "pool_size=1", "pool_mode = transaction\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	PGconn *h = h_moat_connect(m, "app", "app", "app");
	ok(h_exec(h, "begin") && h_exec(h, "select 1"), "H holds the pool's one server");

	struct wire_login l;
	int q = login(m, &l);
	ok(wire_send_query(q, "select 'ran'") && !wire_readable(q, 0.5),
	   "Q's query waits for a server");
	double t0 = h_now();
	ok(send_cancel(m, l.key_pid, l.key_secret), "cancel request for Q");
	char state[6];
	bool done = read_result(q, 10, state);
	is_str(done ? state : "(no result)", "57014", "Q's query fails with 57014");
	ok(h_now() - t0 < 5, "at once, not when a server frees up");
	ok(h_moat_log_wait(m, "left the queue", 5), "pgmoat logs that it left the queue");
	ok(h_exec(h, "commit"), "H's transaction is untouched and commits");
	struct wire_result r;
	ok(wire_query(q, "select 'next'", 10, &r) && strcmp(r.value, "next") == 0,
	   "Q's next query runs");
	wire_abort(q);
	PQfinish(h);
}

int main(void)
{
	h_init("t_cancel", 180);
	tap_plan(20);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, "pool_size=5",
	                          "pool_mode = transaction\nmax_client_conn = 200\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	cancel_running(m, pg);
	forged_and_stale(m, pg);
	cancel_queued(pg);
	return h_done();
}
