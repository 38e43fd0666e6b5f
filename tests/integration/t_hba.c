/* Who may connect: `allow` and `auth_hba_file`, with clients bound to
 * source addresses 127.0.0.2, 127.0.0.3, ... and ::1 to act as different
 * hosts.  allow: an address outside it is closed at accept, before a byte is
 * read (the client gets EOF without having sent anything); the Unix socket
 * is not subject to it; a new list on SIGHUP applies to new connections.
 * hba: the rule's method decides (trust, scram-sha-256, md5; auth_type is
 * ignored), per database and per user, reject with PostgreSQL's 28000
 * message, the first match wins, no match gives "no pg_hba.conf entry", an
 * address no rule can admit is closed at accept, local rules for the Unix
 * socket; a broken file on SIGHUP keeps the old rules and logs path:line, a
 * good one takes effect. */
#include <config.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

static void write_ini(struct h_moat *m, const char *settings)
{
	char *t = h_strdupf("[databases]\n"
	                    "app = host=127.0.0.1 port=@PGPORT@ dbname=app\n"
	                    "app2 = host=127.0.0.1 port=@PGPORT@ dbname=app2\n"
	                    "\n"
	                    "[pgmoat]\n"
	                    "listen_addr = 127.0.0.1, ::1\n"
	                    "listen_port = @PORT@\n"
	                    "unix_socket_dir = @SOCKDIR@\n"
	                    "auth_file = @AUTHFILE@\n"
	                    "workers = 2\n"
	                    "pool_mode = session\n"
	                    "%s",
	                    settings);
	if (!h_moat_write_ini(m, t))
		h_bail("cannot write the configuration");
	free(t);
}

static struct h_moat *start_moat(struct h_pg *pg, const char *settings)
{
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_userlist(m, "\"app\" \"app\"\n\"app2\" \"app2\"\n"))
		h_bail("cannot write the userlist");
	write_ini(m, settings);
	if (!h_moat_start(m, NULL))
		h_bail("pgmoat did not start with: %s", settings);
	return m;
}

/* A client at `src` (NULL: the Unix socket); IPv6 sources go to ::1. */
static int connect_as(const struct h_moat *m, const char *src)
{
	if (!src)
		return wire_connect_unix(m->sockdir, m->port);
	return wire_connect_from(src, strchr(src, ':') ? "::1" : "127.0.0.1", m->port);
}

static int local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Logs in from `src` and asks who it is: "ok user@db", or "SQLSTATE
 * message" of the refusal, or what went wrong (malloc'd).  `code` gets the
 * first authentication request (-1: none). */
static char *login_as(const struct h_moat *m, const char *src, const char *user, const char *db,
                      const char *pw, int *code)
{
	int fd = connect_as(m, src);
	char *out = wire_whoami(fd, user, db, pw, code);
	if (fd >= 0)
		close(fd);
	return out;
}

static void expect_login(const struct h_moat *m, const char *src, const char *user, const char *db,
                         const char *pw, int want_code, const char *what)
{
	int code;
	char *r = login_as(m, src, user, db, pw, &code);
	char *want = h_strdupf("ok %s@%s", user, db);
	bool good = strcmp(r, want) == 0 && code == want_code;
	ok(good, "%s (auth code %d)", what, code);
	if (!good)
		diag("got '%s', auth code %d; wanted '%s', code %d", r, code, want, want_code);
	free(want);
	free(r);
}

static void expect_refusal(const struct h_moat *m, const char *src, const char *user,
                           const char *db, const char *pw, const char *want, const char *what)
{
	char *r = login_as(m, src, user, db, pw, NULL);
	is_str(r, want, "%s", what);
	free(r);
}

/* A client at `src` that sends nothing gets EOF: pgmoat closed it at
 * accept, before reading a byte, and logged it with the client's port. */
static void expect_closed_at_accept(struct h_moat *m, const char *src, const char *check,
                                    const char *what)
{
	int fd = connect_as(m, src);
	int port = fd >= 0 ? local_port(fd) : -1;
	int b = fd >= 0 ? wire_read_byte(fd, 10) : -1;
	if (fd >= 0)
		close(fd);
	ok(b == -2, "%s: EOF without sending a byte (read gave %d)", what, b);
	char *line = h_strdupf(strchr(src, ':') ? "connection from [%s]:%d refused at accept (%s)"
	                                        : "connection from %s:%d refused at accept (%s)",
	                       src, port, check);
	ok(h_moat_log_wait(m, line, 10), "%s: logged \"%s\"", what, line);
	free(line);
}

static void test_allow(struct h_pg *pg)
{
	struct h_moat *m = start_moat(pg, "auth_type = trust\nallow = 127.0.0.2/32, ::1/128\n");
	expect_login(m, "127.0.0.2", "app", "app", NULL, 0, "allow: 127.0.0.2 (allowed) logs in");
	expect_closed_at_accept(m, "127.0.0.3", "allow", "allow: 127.0.0.3 (not allowed)");
	ok(h_moat_log_has(m, "the address is not in allow"), "allow: the log says why");
	expect_login(m, "::1", "app", "app", NULL, 0, "allow: ::1 (allowed) logs in over IPv6");
	expect_login(m, NULL, "app", "app", NULL, 0, "allow: the Unix socket is not subject to it");

	/* A connection made now outlives its address leaving allow. */
	int held = connect_as(m, "127.0.0.2");
	struct wire_login l;
	ok(held >= 0 && wire_login(held, 0, "app", "app", NULL, &l), "allow: a held connection");

	const char *settings = "auth_type = trust\nallow = 127.0.0.3/32\n";
	write_ini(m, settings);
	ok(h_moat_reload(m, "configuration reloaded"), "allow = 127.0.0.3/32 on SIGHUP: reloaded");
	expect_login(m, "127.0.0.3", "app", "app", NULL, 0, "after the reload 127.0.0.3 logs in");
	expect_closed_at_accept(m, "127.0.0.2", "allow", "after the reload 127.0.0.2");
	expect_closed_at_accept(m, "::1", "allow", "after the reload ::1 (IPv6 not allowed)");
	expect_login(m, NULL, "app", "app", NULL, 0,
	             "after the reload the Unix socket still works");
	struct wire_result r;
	bool still = wire_query(held, "select 'still here'", 10, &r);
	ok(still && strcmp(r.value, "still here") == 0,
	   "the connection from 127.0.0.2 made before the reload still works (%s)",
	   r.ok ? r.value : r.message);
	close(held);
	is_int(h_moat_stop(m), 0, "pgmoat stops with status 0");
}

#define RULES_V1                                                                                   \
	"# t_hba: by address, database and user\n"                                                 \
	"local   all    app2                    reject\n"                                          \
	"local   app    all                     md5\n"                                             \
	"host    all    all     127.0.0.3/32    reject\n"                                          \
	"host    all    app2    127.0.0.0/8     reject\n"                                          \
	"host    all    all     127.0.0.2/32    trust\n"                                           \
	"host    all    all     127.0.0.4/32    scram-sha-256\n"                                   \
	"host    app2   all     127.0.0.5/32    md5\n"                                             \
	"host    app    all     127.0.0.5/32    scram-sha-256\n"                                   \
	"host    app2   app     127.0.0.6/32    trust\n"                                           \
	"host    all    app2    ::1/128         md5\n"                                             \
	"host    all    all     ::1/128         scram-sha-256\n"
#define RULES_V1_APP2_REJECT_LINE 5

/* Every line but the third is fine: loaded, it would admit 127.0.0.3. */
#define RULES_BROKEN                                                                               \
	"host    all    all     127.0.0.3/32    trust\n"                                           \
	"host    all    all     127.0.0.2/32    trust\n"                                           \
	"host    all    app2    127.0.0.2/32    ident\n"

#define RULES_V2                                                                                   \
	"local   all    all                     trust\n"                                           \
	"host    all    all     127.0.0.2/32    reject\n"                                          \
	"host    all    all     127.0.0.3/32    trust\n"

/* The rules of RULES_V1, then SIGHUP with a broken file and a good one. */
static void test_hba(struct h_pg *pg)
{
	char *path = h_strdupf("%s/pg_hba.conf", h_tmpdir());
	if (!h_write_file(path, RULES_V1))
		h_bail("cannot write %s", path);
	/* auth_type says md5: the rules decide instead. */
	char *settings = h_strdupf("auth_type = md5\nauth_hba_file = %s\n", path);
	struct h_moat *m = start_moat(pg, settings);
	free(settings);

	expect_login(m, "127.0.0.2", "app", "app", NULL, 0,
	             "trust rule for 127.0.0.2: AuthenticationOk without a password");
	expect_login(m, "127.0.0.2", "app", "app2", NULL, 0, "trust rule: database app2 as well");
	expect_login(m, "127.0.0.4", "app", "app", "app", 10,
	             "scram-sha-256 rule for 127.0.0.4: SASL, the right password logs in");
	char *r = login_as(m, "127.0.0.4", "app", "app", "wrong", NULL);
	ok(strncmp(r, "28P01 ", 6) == 0, "scram-sha-256 rule: a wrong password gives 28P01 (%s)",
	   r);
	free(r);
	expect_login(m, "127.0.0.5", "app", "app2", "app", 5,
	             "per database: md5 for app2 from 127.0.0.5");
	expect_login(m, "127.0.0.5", "app", "app", "app", 10,
	             "per database: scram-sha-256 for app from 127.0.0.5");

	/* Per-user reject; the first match wins over the trust rule after it. */
	h_moat_log_mark(m);
	expect_refusal(m, "127.0.0.2", "app2", "app", "app2",
	               "28000 pg_hba.conf rejects connection for host \"127.0.0.2\", user "
	               "\"app2\", database \"app\", no encryption",
	               "per-user reject for app2 on 127.0.0.0/8 comes first: 28000");
	char *line = h_strdupf("connection refused (hba): rule at line %d rejects it",
	                       RULES_V1_APP2_REJECT_LINE);
	ok(h_moat_log_wait(m, line, 10), "the log names the rule: %s", line);
	free(line);
	expect_login(
	        m, "::1", "app2", "app", "app2", 5,
	        "over ::1 the 127.0.0.0/8 reject does not match: a later md5 rule admits app2");
	expect_login(m, "::1", "app", "app", "app", 10, "::1: scram-sha-256 for app");

	/* No rule for this database and user. */
	expect_login(m, "127.0.0.6", "app", "app2", NULL, 0, "127.0.0.6: app to app2 is trusted");
	h_moat_log_mark(m);
	expect_refusal(m, "127.0.0.6", "app", "app", "app",
	               "28000 no pg_hba.conf entry for host \"127.0.0.6\", user \"app\", database "
	               "\"app\", no encryption",
	               "127.0.0.6: app to app matches no rule: 28000 no pg_hba.conf entry");
	ok(h_moat_log_wait(m, "connection refused (hba): no rule matches", 10), "no match: logged");

	/* Addresses no rule can admit never get to send a byte. */
	expect_closed_at_accept(m, "127.0.0.3", "hba", "a leading reject for 127.0.0.3");
	expect_closed_at_accept(m, "127.0.0.7", "hba", "127.0.0.7, which no rule mentions");

	/* local rules for the Unix socket. */
	expect_login(m, NULL, "app", "app", "app", 5, "Unix socket: local md5 rule");
	expect_refusal(m, NULL, "app2", "app", "app2",
	               "28000 pg_hba.conf rejects connection for host \"[local]\", user \"app2\", "
	               "database \"app\", no encryption",
	               "Unix socket: local reject for app2, in PostgreSQL's words");
	expect_refusal(m, NULL, "app", "app2", "app",
	               "28000 no pg_hba.conf entry for host \"[local]\", user \"app\", database "
	               "\"app2\", no encryption",
	               "Unix socket: no local rule for database app2");

	int held = connect_as(m, "127.0.0.2");
	struct wire_login l;
	ok(held >= 0 && wire_login(held, 0, "app", "app", NULL, &l),
	   "a connection from 127.0.0.2 held across the reloads");

	/* A broken file keeps the rules in use. */
	if (!h_write_file(path, RULES_BROKEN))
		h_bail("cannot write %s", path);
	ok(h_moat_reload(m, "reload failed"), "SIGHUP with a broken hba file: reload failed");
	char *where = h_strdupf("%s:3: method ident is not supported", path);
	ok(h_moat_log_has(m, where), "the log has the error as path:line (%s)", where);
	free(where);
	expect_login(m, "127.0.0.2", "app", "app", NULL, 0, "after it 127.0.0.2 is still trusted");
	expect_refusal(m, "127.0.0.2", "app2", "app", "app2",
	               "28000 pg_hba.conf rejects connection for host \"127.0.0.2\", user "
	               "\"app2\", database \"app\", no encryption",
	               "app2 from 127.0.0.2 is still rejected");
	expect_closed_at_accept(m, "127.0.0.3", "hba", "127.0.0.3 is still closed at accept");
	expect_login(m, "127.0.0.4", "app", "app", "app", 10, "127.0.0.4 still gets scram-sha-256");

	/* A good file takes effect for new connections. */
	if (!h_write_file(path, RULES_V2))
		h_bail("cannot write %s", path);
	ok(h_moat_reload(m, "configuration reloaded"), "SIGHUP with a good hba file: reloaded");
	expect_login(m, "127.0.0.3", "app", "app", NULL, 0, "new rules: 127.0.0.3 is trusted");
	expect_closed_at_accept(m, "127.0.0.2", "hba", "new rules: 127.0.0.2 (leading reject)");
	expect_closed_at_accept(m, "::1", "hba", "new rules: ::1 (no rule)");
	expect_login(m, NULL, "app2", "app", NULL, 0, "new rules: local trust for app2");
	struct wire_result res;
	bool still = wire_query(held, "select 'still here'", 10, &res);
	ok(still && strcmp(res.value, "still here") == 0,
	   "the connection made before the reloads still works (%s)",
	   res.ok ? res.value : res.message);
	close(held);
	is_int(h_moat_stop(m), 0, "pgmoat stops with status 0");
	free(path);
}

int main(void)
{
	h_init("t_hba", 90);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	h_pg_create_app(pg, "app2", "app2", "app2");
	test_allow(pg);
	test_hba(pg);
	return h_done();
}
