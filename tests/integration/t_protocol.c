/* The wire protocol at pgmoat's front door, over raw sockets: SSLRequest and
 * GSSENCRequest refused with 'N', oversized, malformed and unknown-version
 * startup packets refused with 08P01, protocol 3.2 negotiated down to 3.0,
 * packets split into single bytes, pgmoat's own BackendKeyData, cancel
 * requests (right key cancels, wrong key does not), clients vanishing
 * mid-query or mid-message, and client_login_timeout. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

static struct h_moat *moat;
static struct h_pg *cluster;

/* Sends `bytes` on a fresh connection and returns the SQLSTATE of the
 * ErrorResponse that comes back; *closed tells whether pgmoat then closed. */
static void refused(const void *bytes, size_t len, char state[8], bool *closed)
{
	state[0] = '\0';
	*closed = false;
	int fd = wire_connect(moat->port);
	if (fd < 0)
		return;
	wire_send(fd, bytes, len);
	struct wire_msg m;
	if (wire_read_msg(fd, &m, 10) == 1) {
		if (m.type == 'E')
			wire_error_field(&m, 'C', state, 8);
		else
			snprintf(state, 8, "'%c'", m.type);
		wire_msg_free(&m);
	}
	*closed = wire_wait_eof(fd, 10, NULL, 0);
	close(fd);
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void test_bad_startups(void)
{
	char st[8];
	bool closed;
	static unsigned char big[2048];
	put32(big, 100000);
	put32(big + 4, WIRE_PROTO_3_0);
	memcpy(big + 8, "user", 5);
	memset(big + 13, 'u', sizeof big - 13);
	refused(big, sizeof big, st, &closed);
	ok(strcmp(st, "08P01") == 0 && closed,
	   "startup packet of 100000 bytes: 08P01 (%s) and close", st);

	/* Larger than pkt_buf (4096) but within PostgreSQL's 10000: served. */
	static char filler[6000];
	memset(filler, 'f', sizeof filler - 1);
	const char *params[] = {"user", "app", "database", "app", "filler", filler, NULL};
	int lfd = wire_connect(moat->port);
	struct wire_login big_login;
	memset(&big_login, 0, sizeof big_login);
	bool big_in = lfd >= 0 && wire_send_startup(lfd, WIRE_PROTO_3_0, params) &&
	        wire_finish_login(lfd, "app", "app", &big_login) && big_login.ok;
	ok(big_in, "startup packet of 6 kB (over pkt_buf): logged in (%s)", big_login.message);
	if (lfd >= 0)
		close(lfd);

	const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	refused(http, sizeof http - 1, st, &closed);
	ok(strcmp(st, "08P01") == 0 && closed, "HTTP garbage: 08P01 (%s) and close", st);

	unsigned char tiny[8];
	put32(tiny, 3);
	put32(tiny + 4, 0);
	refused(tiny, sizeof tiny, st, &closed);
	ok(strcmp(st, "08P01") == 0 && closed, "length field below the minimum: 08P01 (%s)", st);

	unsigned char v4[32];
	put32(v4, sizeof v4);
	put32(v4 + 4, 4u << 16);
	memcpy(v4 + 8, "user\0app\0database\0app\0\0", 23);
	refused(v4, sizeof v4, st, &closed);
	ok(strcmp(st, "08P01") == 0 && closed, "protocol version 4.0: 08P01 (%s) and close", st);

	int fd = wire_connect(moat->port);
	const char *no_user[] = {"database", "app", NULL};
	struct wire_login l;
	memset(&l, 0, sizeof l);
	l.auth_code = -1;
	bool in = fd >= 0 && wire_send_startup(fd, WIRE_PROTO_3_0, no_user) &&
	        wire_finish_login(fd, "", NULL, &l);
	ok(!in && (strcmp(l.sqlstate, "28000") == 0 || strcmp(l.sqlstate, "08P01") == 0),
	   "startup without a user name is refused (%s)", l.sqlstate);
	if (fd >= 0)
		close(fd);
}

static void test_requests(void)
{
	int fd = wire_connect(moat->port);
	int answer =
	        fd >= 0 && wire_send_request(fd, WIRE_SSL_REQUEST) ? wire_read_byte(fd, 10) : -1;
	is_int(answer, 'N', "SSLRequest answered 'N'");
	struct wire_login l;
	struct wire_result r;
	ok(wire_login(fd, 0, "app", "app", "app", &l) && wire_query(fd, "select 'ssl-n'", 10, &r) &&
	           strcmp(r.value, "ssl-n") == 0,
	   "then a normal startup on the same connection works");
	close(fd);

	fd = wire_connect(moat->port);
	answer =
	        fd >= 0 && wire_send_request(fd, WIRE_GSSENC_REQUEST) ? wire_read_byte(fd, 10) : -1;
	is_int(answer, 'N', "GSSENCRequest answered 'N'");
	ok(wire_login(fd, 0, "app", "app", "app", &l) && wire_query(fd, "select 1", 10, &r),
	   "then a normal startup works");
	close(fd);

	fd = wire_connect(moat->port);
	bool in = fd >= 0 && wire_login(fd, WIRE_PROTO_3_2, "app", "app", "app", &l);
	is_int(l.negotiated_minor, 0, "protocol 3.2: NegotiateProtocolVersion offers 3.0");
	ok(in && wire_query(fd, "select 'three-oh'", 10, &r) && strcmp(r.value, "three-oh") == 0,
	   "and the session works as 3.0");
	close(fd);

	/* Every packet split into single bytes. */
	fd = wire_connect(moat->port);
	unsigned char pkt[64];
	const char params[] = "user\0app\0database\0app\0";
	size_t n = 8 + sizeof params;
	put32(pkt, (uint32_t)n);
	put32(pkt + 4, WIRE_PROTO_3_0);
	memcpy(pkt + 8, params, sizeof params);
	bool sent = fd >= 0;
	for (size_t i = 0; sent && i < n; i++)
		sent = wire_send(fd, pkt + i, 1);
	memset(&l, 0, sizeof l);
	in = sent && wire_finish_login(fd, "app", "app", &l);
	const char q[] = "Q\0\0\0\023select 'split'"; /* length 19 */
	for (size_t i = 0; in && i < sizeof q; i++)
		in = wire_send(fd, q + i, 1);
	bool got = false;
	struct wire_msg m;
	while (in && wire_read_msg(fd, &m, 10) == 1) {
		got |= m.type == 'D' && strstr(m.body + 6, "split") != NULL;
		char t = m.type;
		wire_msg_free(&m);
		if (t == 'Z')
			break;
	}
	ok(in && got, "startup and query sent one byte at a time");
	if (fd >= 0)
		close(fd);
}

static void test_keys_and_cancel(void)
{
	int fd = wire_connect(moat->port);
	struct wire_login l;
	struct wire_result r;
	bool in = fd >= 0 && wire_login(fd, 0, "app", "app", "app", &l);
	ok(in && l.have_key && l.n_params >= 3, "BackendKeyData and %d ParameterStatus received",
	   l.n_params);
	wire_query(fd, "select pg_backend_pid()", 10, &r);
	int real = atoi(r.value);
	ok(real > 0 && l.key_pid != (uint32_t)real,
	   "the key's process id (%u) is pgmoat's own, not the backend's (%d)", l.key_pid, real);

	/* Wrong secret: nothing is cancelled. */
	wire_send_query(fd, "select pg_sleep(1.5), 'slept'");
	int active = h_pg_wait_active(cluster, "select pg_sleep(1.5)", 10);
	int cfd = wire_connect(moat->port);
	bool closed = cfd >= 0 && wire_send_cancel(cfd, l.key_pid, l.key_secret ^ 0x5a5a5a5au) &&
	        wire_wait_eof(cfd, 5, NULL, 0);
	if (cfd >= 0)
		close(cfd);
	ok(active > 0 && closed, "a CancelRequest with a wrong secret is closed without reply");
	struct wire_msg m;
	char state[8] = "";
	bool finished = false, slept = false;
	while (wire_read_msg(fd, &m, 10) == 1) {
		if (m.type == 'E')
			wire_error_field(&m, 'C', state, sizeof state);
		slept |= m.type == 'D' && memmem(m.body, m.len, "slept", 5) != NULL;
		finished = m.type == 'Z';
		wire_msg_free(&m);
		if (finished)
			break;
	}
	ok(finished && slept && state[0] == '\0', "and the query runs to completion ('%s')", state);

	/* Right key: the running query is cancelled. */
	wire_send_query(fd, "select pg_sleep(30)");
	active = h_pg_wait_active(cluster, "select pg_sleep(30)", 10);
	cfd = wire_connect(moat->port);
	double t0 = h_now();
	if (cfd >= 0 && active > 0)
		wire_send_cancel(cfd, l.key_pid, l.key_secret);
	state[0] = '\0';
	while (wire_read_msg(fd, &m, 15) == 1) {
		if (m.type == 'E')
			wire_error_field(&m, 'C', state, sizeof state);
		finished = m.type == 'Z';
		wire_msg_free(&m);
		if (finished)
			break;
	}
	is_str(state, "57014", "CancelRequest with pgmoat's key cancels the query (%.1f s)",
	       h_now() - t0);
	if (cfd >= 0)
		close(cfd);
	ok(wire_query(fd, "select 'after cancel'", 10, &r) && strcmp(r.value, "after cancel") == 0,
	   "the session goes on after the cancel");
	close(fd);

	/* libpq's own cancel. */
	PGconn *c = h_moat_connect(moat, "app", "app", "app");
	ok(h_connected(c) && PQbackendPID(c) != h_backend_pid(c),
	   "libpq: PQbackendPID is not the real pid");
	PQsendQuery(c, "select pg_sleep(30)");
	active = h_pg_wait_active(cluster, "select pg_sleep(30)", 10);
	PGcancel *cancel = PQgetCancel(c);
	char err[256] = "";
	ok(active > 0 && cancel && PQcancel(cancel, err, sizeof err), "PQcancel sent %s", err);
	PQfreeCancel(cancel);
	PGresult *res = PQgetResult(c);
	is_str(h_result_state(res), "57014", "libpq: the query fails with 57014");
	PQclear(res);
	while ((res = PQgetResult(c)) != NULL)
		PQclear(res);
	/* PostgreSQL signals a canceled backend twice (its pid, then its
	 * process group): on a loaded machine the second signal can land
	 * after the first error, on the next query, which then fails with
	 * 57014 too (it would on a direct connection as well).  The
	 * connection stays usable either way: one retry, on 57014 only. */
	res = PQexec(c, "select 'ok'");
	if (PQresultStatus(res) == PGRES_FATAL_ERROR && strcmp(h_result_state(res), "57014") == 0) {
		diag("the next query was canceled too (PostgreSQL's second cancel signal)");
		PQclear(res);
		res = PQexec(c, "select 'ok'");
	}
	is_str(PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0) : NULL, "ok",
	       "libpq: connection usable afterwards");
	PQclear(res);
	PQfinish(c);
}

/* The `small` pool has one server: after each vanished client the next one
 * must get a clean server. */
static bool small_works(void *arg)
{
	(void)arg;
	struct h_async a;
	char *ci = h_moat_conninfo(moat, "app", "small", "app");
	h_async_start(&a, ci, "select 'fresh'");
	free(ci);
	bool ok = h_async_wait(&a, 5) && h_async_ok(&a) && strcmp(a.value, "fresh") == 0;
	h_async_close(&a);
	return ok;
}

static void test_vanishing_clients(void)
{
	PGconn *other = h_moat_connect(moat, "app", "app", "app");

	int fd = wire_connect(moat->port);
	struct wire_login l;
	bool in = fd >= 0 && wire_login(fd, 0, "app", "small", "app", &l);
	wire_send_query(fd, "select repeat('x', 1000) from generate_series(1, 100000)");
	int b = wire_read_byte(fd, 10);
	if (fd >= 0)
		wire_abort(fd);
	ok(in && b >= 0, "a client reading a 100 MB result resets its connection");
	ok(h_wait_until(small_works, NULL, 20), "the next client of that pool gets a clean server");

	fd = wire_connect(moat->port);
	in = fd >= 0 && wire_login(fd, 0, "app", "small", "app", &l);
	wire_send_query(fd, "select pg_sleep(3)");
	h_pg_wait_active(cluster, "select pg_sleep(3)", 10);
	if (fd >= 0)
		close(fd);
	ok(in && h_wait_until(small_works, NULL, 20), "same after a client leaves mid-query");

	fd = wire_connect(moat->port);
	in = fd >= 0 && wire_login(fd, 0, "app", "small", "app", &l);
	const char partial[] = "Q\0\0\0\144select";
	wire_send(fd, partial, sizeof partial - 1);
	if (fd >= 0)
		close(fd);
	ok(in && h_wait_until(small_works, NULL, 20), "same after a client leaves mid-message");

	char *v = h_connected(other) ? h_value(other, "select 'unaffected'") : NULL;
	is_str(v, "unaffected", "a client of another pool was not disturbed");
	free(v);
	PQfinish(other);
}

static void test_login_timeout(void)
{
	int fd = wire_connect(moat->port);
	double t0 = h_now();
	bool closed = fd >= 0 && wire_wait_eof(fd, 10, NULL, 0);
	double took = h_now() - t0;
	ok(closed && took > 1 && took < 8,
	   "a client that sends nothing is closed after client_login_timeout (%.1f s)", took);
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	h_init("t_protocol", 150);
	cluster = h_pg_start(NULL);
	h_pg_create_app(cluster, "app", "app", "app");
	moat = h_moat_new(cluster);
	const char *ini = "[databases]\n"
	                  "app = host=127.0.0.1 port=@PGPORT@ dbname=app\n"
	                  "small = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=1\n"
	                  "\n"
	                  "[pgmoat]\n"
	                  "listen_addr = 127.0.0.1\n"
	                  "listen_port = @PORT@\n"
	                  "unix_socket_dir = @SOCKDIR@\n"
	                  "auth_type = md5\n"
	                  "auth_file = @AUTHFILE@\n"
	                  "workers = 2\n"
	                  "pool_mode = session\n"
	                  "client_login_timeout = 2\n"
	                  "ignore_startup_parameters = filler\n"
	                  "query_wait_timeout = 30\n";
	if (!h_moat_write_userlist(moat, "\"app\" \"app\"\n") || !h_moat_write_ini(moat, ini) ||
	    !h_moat_start(moat, NULL))
		h_bail("pgmoat did not start");

	tap_plan(31);
	test_bad_startups();
	test_requests();
	test_keys_and_cancel();
	test_vanishing_clients();
	test_login_timeout();
	ok(h_moat_alive(moat), "pgmoat survived all of it");
	return h_done();
}
