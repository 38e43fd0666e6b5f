/* Scale-out for real (doc/scale-out.md): HAProxy in TCP mode with
 * send-proxy-v2 in front of two pgmoat instances.  Clients bound to an
 * allowed and a forbidden source address get the same verdicts through
 * HAProxy as without it (the PROXY header carries their address to the
 * allowlist); both instances take clients; pgbench through HAProxy runs
 * 10 s with zero failed transactions.  Skipped when haproxy is not
 * installed (scripts/check installs it). */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

/* Logs in from `src` through port `port`: true when a query ran. */
static bool login_from(const char *src, int port, char *sqlstate, size_t n)
{
	int fd = wire_connect_from(src, "127.0.0.1", port);
	if (fd < 0)
		return false;
	struct wire_login lg;
	memset(&lg, 0, sizeof(lg));
	bool in = wire_login(fd, 0, "app", "app", "app", &lg) && lg.ok;
	struct wire_result r;
	memset(&r, 0, sizeof(r));
	bool ran = in && wire_query(fd, "select 1", 10, &r) && r.ok;
	snprintf(sqlstate, n, "%s", lg.sqlstate);
	close(fd);
	return ran;
}

static bool haproxy_up(void *arg)
{
	return h_tcp_accepts(*(int *)arg);
}

int main(void)
{
	h_init("t_haproxy", 180);
	const char *which[] = {"haproxy", "-v", NULL};
	if (h_run(which, NULL, 10, NULL) != 0) {
		tap_skip_all("haproxy is not installed");
		return 0;
	}
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	const char *settings = "auth_type = md5\npool_mode = transaction\n"
	                       "allow = 127.0.0.1/32, 127.0.0.2/32\n"
	                       "proxy_protocol_trusted = 127.0.0.1/32\nlog_connections = 1\n";
	struct h_moat *m[2];
	for (int i = 0; i < 2; i++) {
		m[i] = h_moat_new(pg);
		if (!h_moat_write_std_ini(m[i], "pool_size=10", settings) ||
		    !h_moat_start(m[i], NULL))
			h_bail("pgmoat %d did not start", i);
	}

	/* Without HAProxy: the verdicts to compare with (a direct client
	 * from 127.0.0.2 has no PROXY header to give, so it is checked on
	 * an instance without proxy_protocol_trusted). */
	struct h_moat *direct = h_moat_new(pg);
	if (!h_moat_write_std_ini(direct, NULL,
	                          "auth_type = md5\nallow = 127.0.0.1/32, 127.0.0.2/32\n") ||
	    !h_moat_start(direct, NULL))
		h_bail("pgmoat without PROXY did not start");
	char st[8];
	bool direct_ok = login_from("127.0.0.2", direct->port, st, sizeof(st));
	bool direct_bad = login_from("127.0.0.3", direct->port, st, sizeof(st));
	ok(direct_ok && !direct_bad, "without HAProxy: 127.0.0.2 is admitted, 127.0.0.3 is not");
	h_moat_stop(direct);

	int port = h_free_port();
	char *cfg = h_strdupf("%s/haproxy.cfg", h_tmpdir());
	char *text = h_strdupf("global\n  maxconn 2000\n"
	                       "defaults\n  mode tcp\n  timeout connect 5s\n"
	                       "  timeout client 120s\n  timeout server 120s\n"
	                       "frontend pg\n  bind 127.0.0.1:%d\n  default_backend moats\n"
	                       "backend moats\n  balance roundrobin\n"
	                       "  server moat1 127.0.0.1:%d send-proxy-v2\n"
	                       "  server moat2 127.0.0.1:%d send-proxy-v2\n",
	                       port, m[0]->port, m[1]->port);
	h_write_file(cfg, text);
	free(text);
	char *out = h_strdupf("%s/haproxy.log", h_tmpdir());
	const char *argv[] = {"haproxy", "-db", "-f", cfg, NULL};
	pid_t hp = h_start_bg(argv, out);
	if (!h_wait_until(haproxy_up, &port, 20)) {
		char *log = h_read_file(out, NULL);
		h_diag_text("haproxy: ", log ? log : "");
		free(log);
		h_bail("haproxy did not start");
	}

	int admitted = 0, refused = 0;
	/* Round robin: two in a row from each address reach both instances. */
	for (int i = 0; i < 4; i++)
		admitted += login_from("127.0.0.2", port, st, sizeof(st));
	for (int i = 0; i < 4; i++)
		refused += !login_from("127.0.0.3", port, st, sizeof(st));
	is_int(admitted, 4, "through HAProxy: 127.0.0.2 is admitted every time (4 of 4)");
	is_int(refused, 4, "through HAProxy: 127.0.0.3 is refused every time (4 of 4)");
	for (int i = 0; i < 2; i++) {
		ok(h_moat_log_has(m[i], "127.0.0.3") && h_moat_log_has(m[i], "refused"),
		   "instance %d refused 127.0.0.3 by its carried address (logged)", i + 1);
		ok(h_moat_log_has(m[i], "127.0.0.2"), "instance %d served 127.0.0.2", i + 1);
	}

	/* pgbench through HAProxy. */
	char pgport[16], hport[16];
	snprintf(pgport, sizeof(pgport), "%d", pg->port);
	snprintf(hport, sizeof(hport), "%d", port);
	const char *init[] = {"pgbench", "-i",   "-q", "-s",  "2",   "-h", pg->sockdir,
	                      "-p",      pgport, "-U", "app", "app", NULL};
	char *o = NULL;
	int rc = h_run(init, NULL, 120, &o);
	is_int(rc, 0, "pgbench -i on the database");
	free(o);
	const char *bench[] = {"pgbench", "-h", "127.0.0.1", "-p",  hport, "-U",
	                       "app",     "-c", "16",        "-j",  "2",   "-T",
	                       "10",      "-M", "simple",    "app", NULL};
	const char *env[] = {"PGPASSWORD=app", "PGSSLMODE=disable", NULL};
	o = NULL;
	rc = h_run(bench, env, 90, &o);
	long failed = h_number_after(o, "number of failed transactions: ");
	long done = h_number_after(o, "number of transactions actually processed: ");
	is_int(rc, 0, "pgbench through HAProxy for 10 s exits 0");
	is_int(failed, 0, "zero failed transactions");
	ok(done > 0, "%ld transactions processed", done);
	if (rc != 0 || failed != 0)
		h_diag_text("pgbench: ", o ? o : "");
	free(o);
	h_stop_bg(hp);
	free(cfg);
	free(out);
	return h_done();
}
