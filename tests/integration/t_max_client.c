/* max_client_conn: with a limit of 3, the 4th client (TCP or Unix socket)
 * is refused with SQLSTATE 53300 and closed; the clients already in are not
 * affected; slots are given back when clients leave. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

/* The SQLSTATE with which pgmoat refuses a new connection on `fd` ("" if
 * it let the client log in).  Whether pgmoat answers on accept or after the
 * startup packet, the ErrorResponse is read. */
static void refusal(int fd, char state[8], char *message, size_t mlen, bool *closed)
{
	state[0] = '\0';
	message[0] = '\0';
	*closed = false;
	if (fd < 0)
		return;
	struct wire_login l;
	memset(&l, 0, sizeof l);
	if (wire_readable(fd, 0.3)) {
		struct wire_msg m;
		if (wire_read_msg(fd, &m, 5) == 1) {
			if (m.type == 'E') {
				wire_error_field(&m, 'C', state, 8);
				wire_error_field(&m, 'M', message, mlen);
			}
			wire_msg_free(&m);
		}
	} else if (!wire_login(fd, 0, "app", "app", "app", &l)) {
		snprintf(state, 8, "%s", l.sqlstate);
		snprintf(message, mlen, "%s", l.message);
	}
	*closed = wire_wait_eof(fd, 5, NULL, 0);
}

static bool connect_works(struct h_moat *m)
{
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	PGconn *c = PQconnectdb(ci);
	free(ci);
	bool ok = PQstatus(c) == CONNECTION_OK;
	if (ok) {
		PGresult *r = PQexec(c, "select 1");
		ok = PQresultStatus(r) == PGRES_TUPLES_OK;
		PQclear(r);
	}
	PQfinish(c);
	return ok;
}

static bool connect_works_cb(void *arg)
{
	return connect_works(arg);
}

static struct h_moat *moat;

/* Connects into the free slot, keeping the connection in *arg. */
static bool take_slot(void *arg)
{
	PGconn **c = arg;
	char *ci = h_moat_conninfo(moat, "app", "app", "app");
	*c = PQconnectdb(ci);
	free(ci);
	if (PQstatus(*c) == CONNECTION_OK)
		return true;
	PQfinish(*c);
	*c = NULL;
	return false;
}

int main(void)
{
	h_init("t_max_client", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	moat = m;
	if (!h_moat_write_std_ini(
	            m, NULL,
	            "pool_mode = session\nmax_client_conn = 3\ndefault_pool_size = 10\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	tap_plan(15);
	PGconn *c[3];
	bool all = true;
	for (int i = 0; i < 3; i++) {
		c[i] = h_moat_connect(m, "app", "app", "app");
		all = all && h_connected(c[i]) && h_exec(c[i], "select 1");
	}
	ok(all, "3 clients connected and ran a query");

	char state[8], msg[512];
	bool closed;
	int fd = wire_connect(m->port);
	refusal(fd, state, msg, sizeof msg, &closed);
	is_str(state, "53300", "the 4th client gets SQLSTATE 53300");
	ok(msg[0] != '\0', "with a message: '%s'", msg);
	ok(closed, "and is disconnected");
	if (fd >= 0)
		close(fd);

	char *ci = h_moat_conninfo(m, "app", "app", "app");
	PGconn *extra = PQconnectdb(ci);
	free(ci);
	ok(PQstatus(extra) == CONNECTION_BAD, "libpq's 4th connection fails too");
	h_diag_text("  libpq: ", PQerrorMessage(extra));
	PQfinish(extra);

	fd = wire_connect_unix(m->sockdir, m->port);
	refusal(fd, state, msg, sizeof msg, &closed);
	is_str(state, "53300", "a 4th client on the Unix socket is refused the same way");
	if (fd >= 0)
		close(fd);

	all = true;
	for (int i = 0; i < 3; i++) {
		char *v = h_value(c[i], "select 'still here'");
		all = all && v && strcmp(v, "still here") == 0;
		free(v);
	}
	ok(all, "the 3 connected clients are unaffected");

	PQfinish(c[2]);
	ok(h_wait_until(connect_works_cb, m, 5), "a slot is free again once a client leaves");

	/* Churn: the slot is returned every time.  pgmoat handles a
	 * disconnect asynchronously, so each cycle may have to retry for a
	 * moment, but never for long. */
	int good = 0;
	for (int i = 0; i < 20; i++)
		good += h_wait_until(connect_works_cb, m, 5);
	is_int(good, 20, "20 connect/disconnect cycles through the free slot all succeed");

	/* Refused clients do not leak slots either. */
	for (int i = 0; i < 10; i++) {
		if (!h_wait_until(take_slot, &c[2], 5)) {
			snprintf(state, sizeof state, "noslot");
			break;
		}
		fd = wire_connect(m->port);
		refusal(fd, state, msg, sizeof msg, &closed);
		if (fd >= 0)
			close(fd);
		PQfinish(c[2]);
		if (strcmp(state, "53300") != 0)
			break;
	}
	is_str(state, "53300", "ten rounds of full-then-refused keep refusing with 53300");
	ok(h_wait_until(connect_works_cb, m, 5), "and the slot comes back after them");

	ok(h_wait_until(take_slot, &c[2], 5), "3 clients again");
	fd = wire_connect(m->port);
	refusal(fd, state, msg, sizeof msg, &closed);
	is_str(state, "53300", "and the 4th is still refused: the count is exact");
	if (fd >= 0)
		close(fd);

	for (int i = 0; i < 3; i++)
		PQfinish(c[i]);
	ok(h_moat_alive(m), "pgmoat still running");
	return h_done();
}
