/* Zero-downtime upgrade: pgmoat A (so_reuseport, peer_id 1) serves
 * `pgbench -C` (a new connection per transaction); pgmoat B (peer_id 2)
 * starts on the same port; a cancel request sent to B for a session on A
 * cancels it (forwarded once, never in a loop; unknown peers ignored);
 * then A gets SHUTDOWN WAIT_FOR_CLIENTS on its own unix socket and exits
 * while pgbench keeps running on B: zero failed transactions, every one in
 * pgbench_history.
 *
 * The test runs in a network namespace of its own (root only), where it
 * turns on net.ipv4.tcp_migrate_req: connections queued on A's listening
 * sockets when A closes them go to B's instead of being reset.  The
 * machine's own setting is not touched. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/cancel.h"
#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

/* A new network namespace with `lo` up and tcp_migrate_req = 1 (a
 * per-namespace setting); every process the test starts inherits it. */
static void own_netns(void)
{
	if (geteuid() != 0)
		tap_skip_all("needs root, for a network namespace of its own");
	if (unshare(CLONE_NEWNET) < 0) {
		char why[160];
		snprintf(why, sizeof why, "unshare(CLONE_NEWNET): %s", strerror(errno));
		tap_skip_all(why);
	}
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	bool up = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
	ifr.ifr_flags |= IFF_UP;
	up = up && ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
	if (s >= 0)
		close(s);
	if (!up)
		tap_bail("cannot bring up lo in the new network namespace: %s", strerror(errno));
	int fd = open("/proc/sys/net/ipv4/tcp_migrate_req", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		tap_skip_all("no net.ipv4.tcp_migrate_req (Linux 5.14 or later needed)");
	bool set = write(fd, "1", 1) == 1;
	close(fd);
	if (!set)
		tap_bail("cannot set tcp_migrate_req: %s", strerror(errno));
}

static void write_ini(struct h_moat *m, int id, struct h_moat *a, struct h_moat *b)
{
	/* Peer 3 is a mistake on purpose: each process sends it to the other. */
	char *t = h_strdupf("[databases]\n"
	                    "app = host=127.0.0.1 port=@PGPORT@ dbname=app\n"
	                    "\n"
	                    "[pgmoat]\n"
	                    "listen_addr = 127.0.0.1\n"
	                    "listen_port = @PORT@\n"
	                    "unix_socket_dir = @SOCKDIR@\n"
	                    "auth_type = trust\n"
	                    "auth_file = @AUTHFILE@\n"
	                    "admin_users = admin\n"
	                    "workers = 2\n"
	                    "pool_mode = transaction\n"
	                    "default_pool_size = 10\n"
	                    "max_client_conn = 200\n"
	                    "verbose = 1\n"
	                    "so_reuseport = on\n"
	                    "peer_id = %d\n"
	                    "\n"
	                    "[peers]\n"
	                    "1 = host=%s port=@PORT@\n"
	                    "2 = host=%s port=@PORT@\n"
	                    "3 = host=%s port=@PORT@\n",
	                    id, a->sockdir, b->sockdir, id == 1 ? b->sockdir : a->sockdir);
	if (!h_moat_write_ini(m, t))
		h_bail("cannot write the configuration");
	free(t);
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

/* A CancelRequest to the unix socket in `dir`, or to the TCP port if NULL. */
static bool send_cancel(const char *dir, int port, uint32_t pid, uint32_t secret)
{
	int fd = dir ? wire_connect_unix(dir, port) : wire_connect(port);
	if (fd < 0)
		return false;
	bool sent = wire_send_cancel(fd, pid, secret);
	/* pgmoat closes the connection once it has read the request. */
	wire_wait_eof(fd, 5, NULL, 0);
	wire_abort(fd);
	return sent;
}

/* `pid`/`secret` sent through `dir` (NULL: the shared TCP port) cancel the
 * pg_sleep(30) that session `fd` starts: within 2 s. */
static void cancel_through(struct h_pg *pg, int fd, const char *dir, int port, uint32_t pid,
                           uint32_t secret, const char *what)
{
	bool running = wire_send_query(fd, "select pg_sleep(30)") &&
	        h_pg_wait_active(pg, "select pg_sleep(30)", 20) > 0;
	double t0 = h_now();
	bool sent = running && send_cancel(dir, port, pid, secret);
	char state[6];
	bool done = sent && read_result(fd, 10, state);
	double took = h_now() - t0;
	is_str(done ? state : "(no result)", "57014", "%s: the query on A is canceled", what);
	ok(done && took < 2, "%s: within 2 s (%.3f s)", what, took);
}

/* How many times `needle` is in `m`'s log. */
static int log_count(struct h_moat *m, const char *needle)
{
	char *text = h_read_file(m->log, NULL);
	int n = 0;
	for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(text);
	return n;
}

static void cancels(struct h_pg *pg, struct h_moat *a, struct h_moat *b)
{
	struct wire_login l;
	int fd = wire_connect_unix(a->sockdir, a->port);
	if (fd < 0 || !wire_login(fd, WIRE_PROTO_3_0, "app", "app", NULL, &l) || !l.have_key)
		h_bail("cannot log in on A's unix socket");
	is_int((long)((l.key_secret >> CANCEL_PEER_SHIFT) & CANCEL_PEER_MASK), 1,
	       "the cancel key A hands out carries its peer_id");
	ok(!(l.key_secret & CANCEL_FORWARDED), "without the forwarded bit");

	cancel_through(pg, fd, b->sockdir, b->port, l.key_pid, l.key_secret, "cancel sent to B");
	ok(h_moat_log_has(b, "cancel request forwarded to peer 1"), "B forwarded it to peer 1");
	for (int i = 1; i <= 3; i++) {
		char what[64];
		snprintf(what, sizeof what, "cancel %d through the shared port", i);
		cancel_through(pg, fd, NULL, a->port, l.key_pid, l.key_secret, what);
	}

	/* Peer 3 is B in A's [peers] and A in B's: forwarded once, then
	 * dropped.  Peer 9 is nobody. */
	uint32_t secret3 = (l.key_secret & ~(CANCEL_PEER_MASK << CANCEL_PEER_SHIFT)) |
	        (3u << CANCEL_PEER_SHIFT);
	uint32_t secret9 = (l.key_secret & ~(CANCEL_PEER_MASK << CANCEL_PEER_SHIFT)) |
	        (9u << CANCEL_PEER_SHIFT);
	ok(wire_send_query(fd, "select pg_sleep(1), 'finished'") &&
	           h_pg_wait_active(pg, "select pg_sleep(1)", 20) > 0,
	   "A's session runs pg_sleep(1)");
	ok(send_cancel(a->sockdir, a->port, l.key_pid, secret3) &&
	           send_cancel(b->sockdir, b->port, l.key_pid, secret9),
	   "cancel requests for peer 3 (to A) and for peer 9 (to B)");
	ok(h_moat_log_wait(b, "forwarded for peer 3 dropped", 5),
	   "B drops the request A forwarded for peer 3");
	ok(h_moat_log_wait(b, "unknown peer 9 ignored", 5), "B ignores the one for peer 9");
	char state[6];
	ok(read_result(fd, 10, state) && state[0] == '\0', "A's query is not canceled (%s)", state);
	is_int(log_count(a, "forwarded to peer 3") + log_count(b, "forwarded to peer 3"), 1,
	       "the request for peer 3 was forwarded once, not back and forth");
	wire_abort(fd);
}

/* psql on `m`'s admin console, through its own unix socket. */
static int console(struct h_moat *m, const char *cmd)
{
	char port[16];
	snprintf(port, sizeof port, "%d", m->port);
	const char *argv[] = {"psql", "-X",    "-A", "-t",     "-h", m->sockdir, "-p", port,
	                      "-U",   "admin", "-d", "pgmoat", "-c", cmd,        NULL};
	char *out = NULL;
	int rc = h_run(argv, NULL, 30, &out);
	if (rc != 0)
		h_diag_text("  psql: ", out);
	free(out);
	return rc;
}

int main(void)
{
	own_netns();
	h_init("t_upgrade", 180);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *a = h_moat_new(pg), *b = h_moat_new(pg);
	h_moat_write_userlist(a, "\"app\" \"app\"\n");
	h_moat_write_userlist(b, "\"app\" \"app\"\n");
	write_ini(a, 1, a, b);
	if (!h_moat_start(a, NULL))
		h_bail("pgmoat A did not start");
	b->port = a->port;
	write_ini(b, 2, a, b);

	tap_plan(30);
	char port[16];
	snprintf(port, sizeof port, "%d", a->port);
	const char *init[] = {"pgbench", "-i", "-q",  "-h",  "127.0.0.1", "-p",
	                      port,      "-U", "app", "app", NULL};
	is_int(h_run(init, NULL, 120, NULL), 0, "pgbench -i through A");

	const char *argv[] = {"pgbench", "-C", "-c",     "4",   "-j", "2",         "-T",
	                      "12",      "-M", "simple", "-n",  "-h", "127.0.0.1", "-p",
	                      port,      "-U", "app",    "app", NULL};
	const char *env[] = {"PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10", NULL};
	struct h_run_async bench = {.argv = argv, .env = env, .timeout = 60};
	h_run_async_start(&bench);
	h_nap(2);
	ok(h_moat_start_log(b, NULL, " started"), "B starts on A's port while pgbench runs");
	struct wire_login l;
	int fd = wire_connect_unix(b->sockdir, b->port);
	ok(fd >= 0 && wire_login(fd, WIRE_PROTO_3_0, "app", "app", NULL, &l) &&
	           ((l.key_secret >> CANCEL_PEER_SHIFT) & CANCEL_PEER_MASK) == 2,
	   "B accepts on its own unix socket, with its peer_id in the cancel key");
	if (fd >= 0)
		wire_abort(fd);

	cancels(pg, a, b);

	h_moat_log_mark(a);
	is_int(console(a, "shutdown wait_for_clients"), 0,
	       "SHUTDOWN WAIT_FOR_CLIENTS on A's own unix socket");
	int rc = h_moat_wait_exit(a, 30);
	bool running = !atomic_load(&bench.done);
	is_int(rc, 0, "A exits with status 0");
	ok(running, "while pgbench is still running");

	h_run_async_wait(&bench);
	long failed = h_number_after(bench.out, "number of failed transactions: ");
	long done = h_number_after(bench.out, "number of transactions actually processed: ");
	is_int(bench.rc, 0, "pgbench -C exits 0");
	is_int(failed, 0, "zero failed transactions");
	ok(done > 0, "%ld transactions processed", done);
	const char *tps = bench.out ? strstr(bench.out, "tps = ") : NULL;
	if (bench.rc != 0 || failed != 0 || done <= 0)
		h_diag_text("  pgbench: ", bench.out);
	else if (tps)
		diag("pgbench: %.*s", (int)strcspn(tps, "\n"), tps);

	/* Nothing lost or doubled: every counted transaction is in the history,
	 * and the balances add up. */
	PGconn *direct = h_pg_connect(pg, "app", "app");
	char *n = h_value(direct, "select count(*) from pgbench_history");
	is_int(n ? atol(n) : -1, done, "pgbench_history holds every transaction pgbench counted");
	free(n);
	PQfinish(direct);
	ok(h_pgbench_balanced(pg, "app"), "account and branch balances equal the history's sum");

	PGconn *c = h_moat_connect(b, "app", "app", NULL);
	char *v = h_connected(c) ? h_value(c, "select 'on B'") : NULL;
	is_str(v, "on B", "the shared port is served by B alone now");
	free(v);
	PQfinish(c);
	free(bench.out);
	return h_done();
}
