/* A request that arrives split, in transaction and statement pooling, over
 * raw sockets: a query followed in the same write by the first 1..N-1 bytes
 * of the next one (the transaction ends while a partial message waits in
 * pgmoat's buffer), then the rest; and an idle client's query cut after
 * 1..N-1 bytes while another client is served on the same worker.  Every
 * query is answered, in order, and pgmoat keeps running.  (pgmoat used to
 * give the server back, take it again for the partial message, find nothing
 * to send and give it back again, without end: a stack overflow, later a
 * worker spinning.) */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

/* A Query message for `sql` into `out` (room for it); its length. */
static size_t query_msg(const char *sql, unsigned char *out)
{
	size_t n = strlen(sql) + 1;
	uint32_t len = (uint32_t)(4 + n);
	out[0] = 'Q';
	out[1] = (unsigned char)(len >> 24);
	out[2] = (unsigned char)(len >> 16);
	out[3] = (unsigned char)(len >> 8);
	out[4] = (unsigned char)len;
	memcpy(out + 5, sql, n);
	return 1 + len;
}

/* Reads up to ReadyForQuery: the first DataRow's value (malloc'd), or NULL
 * on an error, timeout or EOF. */
static char *read_result(int fd)
{
	char *value = NULL;
	bool error = false;
	for (int i = 0; i < 20; i++) {
		struct wire_msg m;
		if (wire_read_msg(fd, &m, 10 * h_slow()) != 1)
			break;
		if (m.type == 'E')
			error = true;
		if (m.type == 'D' && !value && m.len >= 6) {
			uint32_t vlen = (uint32_t)((unsigned char)m.body[2] << 24 |
			                           (unsigned char)m.body[3] << 16 |
			                           (unsigned char)m.body[4] << 8 |
			                           (unsigned char)m.body[5]);
			if (vlen <= m.len - 6)
				value = strndup(m.body + 6, vlen);
		}
		bool ready = m.type == 'Z';
		wire_msg_free(&m);
		if (ready)
			break;
		if (i == 19)
			error = true;
	}
	if (error) {
		free(value);
		return NULL;
	}
	return value;
}

/* One connection: for each split point k of the second query, "select <i>"
 * whole plus k bytes of "select <i+1>", read the first answer, send the
 * rest, read the second. */
static void run_splits(struct h_moat *m, const char *mode)
{
	int fd = wire_connect(m->port);
	struct wire_login login;
	bool in = fd >= 0 && wire_login(fd, WIRE_PROTO_3_0, "app", "app", "app", &login);
	ok(in, "%s: logged in over a raw socket", mode);
	int good = 0, tries = 0;
	for (size_t k = 1; in; k++) {
		unsigned char first[64], second[64], both[128];
		char sql[32];
		snprintf(sql, sizeof sql, "select %zu", 2 * k);
		size_t n1 = query_msg(sql, first);
		snprintf(sql, sizeof sql, "select %zu", 2 * k + 1);
		size_t n2 = query_msg(sql, second);
		if (k >= n2)
			break;
		tries++;
		memcpy(both, first, n1);
		memcpy(both + n1, second, k);
		if (!wire_send(fd, both, n1 + k))
			break;
		char *a = read_result(fd);
		if (!wire_send(fd, second + k, n2 - k)) {
			free(a);
			break;
		}
		char *b = read_result(fd);
		char want_a[32], want_b[32];
		snprintf(want_a, sizeof want_a, "%zu", 2 * k);
		snprintf(want_b, sizeof want_b, "%zu", 2 * k + 1);
		if (a && b && strcmp(a, want_a) == 0 && strcmp(b, want_b) == 0)
			good++;
		else
			diag("%s: split after %zu bytes: got %s and %s", mode, k, a ? a : "nothing",
			     b ? b : "nothing");
		free(a);
		free(b);
		if (!a || !b)
			break;
	}
	ok(tries > 0 && good == tries,
	   "%s: a query, then the next one split after each of its first %d bytes: both answered "
	   "(%d of %d)",
	   mode, tries, good, tries);
	if (fd >= 0)
		close(fd);
	ok(h_moat_alive(m), "%s: pgmoat still running", mode);
}

/* An idle client sends the first k bytes of a query and stops there; a
 * second client is served meanwhile (one worker: it is not stuck); then
 * the rest comes and the first query is answered. */
static void run_idle_partial(struct h_moat *m)
{
	int a = wire_connect(m->port), b = wire_connect(m->port);
	struct wire_login la, lb;
	bool in = a >= 0 && b >= 0 && wire_login(a, WIRE_PROTO_3_0, "app", "app", "app", &la) &&
	        wire_login(b, WIRE_PROTO_3_0, "app", "app", "app", &lb);
	int good = 0, tries = 0;
	for (size_t k = 1; in; k++) {
		unsigned char msg[64], other[64];
		char sql[32];
		snprintf(sql, sizeof sql, "select %zu", 100 + k);
		size_t n = query_msg(sql, msg);
		size_t no = query_msg("select 'b'", other);
		if (k >= n)
			break;
		tries++;
		char *vb = NULL, *va = NULL;
		if (wire_send(a, msg, k) && wire_send(b, other, no))
			vb = read_result(b);
		if (vb && wire_send(a, msg + k, n - k))
			va = read_result(a);
		char want[32];
		snprintf(want, sizeof want, "%zu", 100 + k);
		if (vb && va && strcmp(vb, "b") == 0 && strcmp(va, want) == 0)
			good++;
		else
			diag("idle, first %zu bytes: the other client got %s, this one %s", k,
			     vb ? vb : "nothing", va ? va : "nothing");
		free(va);
		free(vb);
		if (!va || !vb)
			break;
	}
	ok(in && tries > 0 && good == tries,
	   "an idle client's query cut after each of its first %d bytes: another client is served "
	   "meanwhile, then the query is answered (%d of %d)",
	   tries, good, tries);
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
}

int main(void)
{
	h_init("t_split", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *txn = h_moat_new(pg);
	struct h_moat *stmt = h_moat_new(pg);
	struct h_moat *one = h_moat_new(pg);
	if (!h_moat_write_std_ini(txn, "pool_size=1", "pool_mode = transaction\n") ||
	    !h_moat_start(txn, NULL) ||
	    !h_moat_write_std_ini(stmt, "pool_size=1", "pool_mode = statement\n") ||
	    !h_moat_start(stmt, NULL) ||
	    !h_moat_write_std_ini(one, "pool_size=2", "pool_mode = transaction\nworkers = 1\n") ||
	    !h_moat_start(one, NULL))
		h_bail("pgmoat did not start");
	tap_plan(9);
	run_splits(txn, "transaction pooling");
	run_splits(stmt, "statement pooling");
	run_idle_partial(one);
	ok(h_moat_alive(txn) && h_moat_alive(stmt) && h_moat_alive(one),
	   "every pgmoat still running");
	return h_done();
}
