/* The admin console from psql: SHOW VERSION, CONFIG, DATABASES, USERS,
 * POOLS, CLIENTS (the test's 10 clients with their addresses), SERVERS,
 * HOSTS, LISTS, STATE, HELP; SET of a reloadable key visible in SHOW
 * CONFIG, an invalid value and a restart-only key refused; RELOAD;
 * stats_users may SHOW but not RELOAD, SET or SHUTDOWN; an ordinary user
 * cannot reach the console; a wrong admin password fails; the extended
 * protocol gets an error and the connection stays; SHUTDOWN
 * WAIT_FOR_CLIENTS lets a running transaction finish, then pgmoat exits;
 * in transaction pooling, PAUSE and RESUME under pgbench (zero failed
 * transactions, none running while paused), DISABLE/ENABLE, KILL_CLIENT,
 * KILL, RECONNECT and WAIT_CLOSE. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

static struct h_moat *moat;

/* psql -At on the console as `user`: its output (malloc'd), or NULL with
 * `*rc` set when it failed. */
static char *console(const char *user, const char *pw, const char *cmd, int *rc)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", moat->port);
	const char *argv[] = {"psql", "-X", "-A", "-t", "-F",     "|",  "-h", "127.0.0.1", "-p",
	                      port,   "-U", user, "-d", "pgmoat", "-c", cmd,  NULL};
	char *envpw = h_strdupf("PGPASSWORD=%s", pw);
	const char *env[] = {envpw, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10", NULL};
	char *out = NULL;
	int r = h_run(argv, env, 30, &out);
	free(envpw);
	if (rc)
		*rc = r;
	return out;
}

/* Lines of `text` that contain all of `needles` (NULL-terminated). */
static int lines_with(const char *text, const char *const needles[])
{
	int n = 0;
	for (const char *p = text; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char *line = strndup(p, len);
		bool all = true;
		for (int i = 0; needles[i] && all; i++)
			all = strstr(line, needles[i]) != NULL;
		n += all;
		free(line);
		p = nl ? nl + 1 : p + len;
	}
	return n;
}

static bool has(const char *text, const char *needle)
{
	return text && strstr(text, needle);
}

struct config_wait {
	const char *key, *want;
};

static bool config_is(void *arg)
{
	struct config_wait *cw = arg;
	char *cmd = h_strdupf("show config");
	char *out = console("admin", "adminpw", cmd, NULL);
	char *line = h_strdupf("%s|%s|", cw->key, cw->want);
	bool good = has(out, line);
	free(line);
	free(out);
	free(cmd);
	return good;
}

static char *history(struct h_pg *pg)
{
	PGconn *c = h_pg_connect(pg, "postgres", "app");
	char *v = h_value(c, "select count(*) from pgbench_history");
	PQfinish(c);
	return v;
}

/* The first "C-<id>" on a line of SHOW CLIENTS that has `needle`. */
static char *client_id(const char *show, const char *needle)
{
	for (const char *p = show; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char *line = strndup(p, len);
		char *hit = strstr(line, needle) ? strstr(line, "|C-") : NULL;
		char *id = NULL;
		if (hit) {
			hit++;
			id = strndup(hit, strcspn(hit, "|"));
		}
		free(line);
		if (id)
			return id;
		p = nl ? nl + 1 : p + len;
	}
	return NULL;
}

/* PAUSE/RESUME under pgbench, DISABLE/ENABLE, KILL_CLIENT, KILL,
 * RECONNECT and WAIT_CLOSE, in transaction pooling. */
static void test_operations(struct h_pg *pg)
{
	char pgport[16];
	snprintf(pgport, sizeof(pgport), "%d", pg->port);
	const char *init[] = {"pgbench", "-i", "-q",  "-h",  pg->sockdir, "-p",
	                      pgport,    "-U", "app", "app", NULL};
	if (h_run(init, NULL, 120, NULL) != 0)
		h_bail("pgbench -i failed");
	moat = h_moat_new(pg);
	if (!h_moat_write_userlist(moat, "\"app\" \"app\"\n\"admin\" \"adminpw\"\n") ||
	    !h_moat_write_std_ini(
	            moat, "pool_size=4",
	            "auth_type = md5\nadmin_users = admin\npool_mode = transaction\n") ||
	    !h_moat_start(moat, NULL))
		h_bail("pgmoat did not start");
	char port[16];
	snprintf(port, sizeof(port), "%d", moat->port);
	const char *argv[] = {"pgbench", "-n", "-h", "127.0.0.1", "-p", port,  "-U",
	                      "app",     "-c", "4",  "-T",        "6",  "app", NULL};
	const char *env[] = {"PGPASSWORD=app", "PGSSLMODE=disable", NULL};
	struct h_run_async b = {.argv = argv, .env = env, .timeout = 90};
	h_run_async_start(&b);
	/* Under way: some transactions done. */
	struct h_pg *pgp = pg;
	double t0 = h_now();
	char *n0 = NULL;
	while (h_now() - t0 < 20) {
		free(n0);
		n0 = history(pgp);
		if (n0 && atol(n0) > 50)
			break;
		h_nap(0.05);
	}
	int rc;
	char *out = console("admin", "adminpw", "pause", &rc);
	is_int(rc, 0, "PAUSE returns once running transactions are done");
	free(out);
	char *a = history(pg);
	h_nap(1.0); /* a window in which nothing may run */
	char *bb = history(pg);
	ok(a && bb && strcmp(a, bb) == 0, "no transaction runs while paused (%s, then %s)",
	   a ? a : "?", bb ? bb : "?");
	out = console("admin", "adminpw", "show state", &rc);
	ok(out && strstr(out, "paused|yes"), "SHOW STATE says paused");
	free(out);
	out = console("admin", "adminpw", "resume", &rc);
	is_int(rc, 0, "RESUME");
	free(out);
	is_int(h_run_async_wait(&b), 0, "pgbench exits 0");
	is_int(h_number_after(b.out, "number of failed transactions: "), 0,
	       "zero failed transactions across PAUSE and RESUME");
	char *c = history(pg);
	ok(c && bb && atol(c) > atol(bb), "transactions ran again after RESUME");
	free(n0);
	free(a);
	free(bb);
	free(c);
	free(b.out);

	/* DISABLE / ENABLE */
	out = console("admin", "adminpw", "disable app", &rc);
	is_int(rc, 0, "DISABLE app");
	free(out);
	PGconn *x = PQconnectdb(h_moat_conninfo(moat, "app", "app", "app"));
	ok(PQstatus(x) == CONNECTION_BAD && strstr(PQerrorMessage(x), "disabled"),
	   "a new login to a disabled database is refused");
	PQfinish(x);
	out = console("admin", "adminpw", "enable app", &rc);
	free(out);
	x = h_moat_connect(moat, "app", "app", "app");
	ok(h_connected(x), "ENABLE: logins work again");
	PQfinish(x);

	/* KILL_CLIENT */
	char *ci = h_strdupf("host=127.0.0.1 port=%d user=app dbname=app password=app "
	                     "sslmode=disable application_name=victim",
	                     moat->port);
	PGconn *victim = h_connect(ci);
	free(ci);
	PGconn *bystander = h_moat_connect(moat, "app", "app", "app");
	out = console("admin", "adminpw", "show clients", &rc);
	char *id = client_id(out, "|victim");
	free(out);
	ok(id != NULL, "SHOW CLIENTS shows the client's application_name and id (%s)",
	   id ? id : "?");
	char *cmd = h_strdupf("kill_client %s", id ? id : "C-0");
	out = console("admin", "adminpw", cmd, &rc);
	is_int(rc, 0, "KILL_CLIENT %s", id ? id : "?");
	free(out);
	free(cmd);
	free(id);
	ok(!h_exec(victim, "select 1"), "the killed client's connection is gone");
	ok(h_exec(bystander, "select 1"), "another client is untouched");
	PQfinish(victim);
	out = console("admin", "adminpw", "kill_client C-999999", &rc);
	ok(rc != 0 && out && strstr(out, "no such client"), "KILL_CLIENT of an unknown id: error");
	free(out);

	/* RECONNECT + WAIT_CLOSE: servers replaced, clients stay. */
	char *pid1 = h_value(bystander, "select pg_backend_pid()");
	out = console("admin", "adminpw", "reconnect app", &rc);
	is_int(rc, 0, "RECONNECT app");
	free(out);
	out = console("admin", "adminpw", "wait_close app", &rc);
	is_int(rc, 0, "WAIT_CLOSE app returns once the old servers are closed");
	free(out);
	char *pid2 = h_value(bystander, "select pg_backend_pid()");
	ok(pid1 && pid2 && strcmp(pid1, pid2) != 0, "the client is served by a new server");
	free(pid1);
	free(pid2);

	/* KILL app: every client of app is dropped. */
	out = console("admin", "adminpw", "kill app", &rc);
	is_int(rc, 0, "KILL app");
	free(out);
	ok(!h_exec(bystander, "select 1"), "KILL app: its clients are gone");
	PQfinish(bystander);
	x = h_moat_connect(moat, "app", "app", "app");
	ok(h_connected(x) && h_exec(x, "select 1"), "new clients may log in after KILL");
	PQfinish(x);
	h_moat_stop(moat);
}

int main(void)
{
	h_init("t_admin", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	moat = h_moat_new(pg);
	if (!h_moat_write_userlist(moat,
	                           "\"app\" \"app\"\n\"admin\" \"adminpw\"\n"
	                           "\"stats\" \"statspw\"\n") ||
	    !h_moat_write_std_ini(moat, NULL,
	                          "auth_type = scram-sha-256\nadmin_users = admin\n"
	                          "stats_users = stats\npool_mode = session\n") ||
	    !h_moat_start(moat, NULL))
		h_bail("pgmoat did not start");

	int rc;
	char *out = console("admin", "adminpw", "show version", &rc);
	ok(rc == 0 && has(out, "pgmoat "), "SHOW VERSION (%s)", out ? out : "?");
	free(out);

	/* Ten clients, from the test's address, each ran a query. */
	PGconn *cl[10];
	for (int i = 0; i < 10; i++) {
		cl[i] = h_moat_connect(moat, "app", "app", "app");
		h_exec(cl[i], "select 1");
	}
	out = console("admin", "adminpw", "show clients", &rc);
	const char *app_clients[] = {"C|app|app|", "|127.0.0.1|", NULL};
	is_int(lines_with(out, app_clients), 10,
	       "SHOW CLIENTS lists the 10 clients of app with their address");
	const char *me[] = {"C|admin|pgmoat|", NULL};
	is_int(lines_with(out, me), 1, "and the console's own connection");
	free(out);
	out = console("admin", "adminpw", "show servers", &rc);
	const char *servers[] = {"S|app|app|active|", NULL};
	is_int(lines_with(out, servers), 10,
	       "SHOW SERVERS: 10 active server connections (session)");
	free(out);
	out = console("admin", "adminpw", "show stats_totals", &rc);
	ok(has(out, "app|10|10|"), "SHOW STATS_TOTALS: the 10 transactions and 10 queries (%s)",
	   out ? out : "?");
	free(out);
	out = console("admin", "adminpw", "show stats", &rc);
	ok(rc == 0 && has(out, "app|10|10|"), "SHOW STATS: the same totals");
	free(out);
	const char *const more[] = {"show stats_averages", "show mem"};
	for (size_t i = 0; i < 2; i++) {
		out = console("admin", "adminpw", more[i], &rc);
		is_int(rc, 0, "%s runs", more[i]);
		free(out);
	}
	out = console("admin", "adminpw", "show pools", &rc);
	const char *pool[] = {"app|app|", "|session|", NULL};
	ok(lines_with(out, pool) == 1 && has(out, "|10\n"),
	   "SHOW POOLS: the app pool in session mode with 10 clients logged in");
	free(out);
	out = console("admin", "adminpw", "show databases", &rc);
	const char *db[] = {"app|127.0.0.1|", "|read-write", NULL};
	is_int(lines_with(out, db), 1, "SHOW DATABASES: app");
	free(out);
	out = console("admin", "adminpw", "show config", &rc);
	char *port_line = h_strdupf("listen_port|%d|6432|no", moat->port);
	ok(has(out, port_line), "SHOW CONFIG: listen_port, its value, default and changeable");
	free(port_line);
	free(out);
	const char *const simple[] = {"show users", "show hosts", "show lists", "show state",
	                              "show help"};
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
		out = console("admin", "adminpw", simple[i], &rc);
		is_int(rc, 0, "%s runs", simple[i]);
		free(out);
	}
	out = console("admin", "adminpw", "show state", &rc);
	ok(has(out, "active|yes"), "SHOW STATE: active");
	free(out);
	out = console("admin", "adminpw", "show nonsense", &rc);
	ok(rc != 0 && has(out, "unknown SHOW command"), "an unknown SHOW is an error");
	free(out);
	for (int i = 0; i < 10; i++)
		PQfinish(cl[i]);

	/* SET */
	out = console("admin", "adminpw", "set default_pool_size = 7", &rc);
	is_int(rc, 0, "SET default_pool_size = 7");
	free(out);
	struct config_wait cw = {"default_pool_size", "7"};
	ok(h_wait_until(config_is, &cw, 10), "the new value shows in SHOW CONFIG");
	out = console("admin", "adminpw", "set default_pool_size = many", &rc);
	ok(rc != 0 && has(out, "invalid value"), "an invalid value is refused (%s)",
	   out ? out : "");
	free(out);
	out = console("admin", "adminpw", "set listen_port = 7777", &rc);
	ok(rc != 0 && has(out, "restart"), "a restart-only setting is refused");
	free(out);
	out = console("admin", "adminpw", "set no_such_thing = 1", &rc);
	ok(rc != 0 && has(out, "unknown setting"), "an unknown setting is refused");
	free(out);
	h_moat_log_mark(moat);
	out = console("admin", "adminpw", "reload", &rc);
	is_int(rc, 0, "RELOAD");
	free(out);
	ok(h_moat_log_wait(moat, "configuration reloaded", 10), "the configuration was reloaded");
	struct config_wait back = {"default_pool_size", "20"};
	ok(h_wait_until(config_is, &back, 10), "RELOAD rereads the file: the SET value is gone");

	/* Privileges: each command checks its own. */
	out = console("stats", "statspw", "show pools", &rc);
	is_int(rc, 0, "stats_users may SHOW");
	free(out);
	const char *const forbidden[] = {"reload",          "set default_pool_size = 5",
	                                 "shutdown",        "kill app",
	                                 "kill_client C-1", "pause",
	                                 "resume",          "disable app",
	                                 "reconnect"};
	for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
		out = console("stats", "statspw", forbidden[i], &rc);
		ok(rc != 0 && has(out, "permission denied"), "stats_users may not %s",
		   forbidden[i]);
		free(out);
	}
	ok(h_moat_alive(moat), "pgmoat still runs");
	out = console("app", "app", "show pools", &rc);
	ok(rc != 0 && has(out, "may not use the admin console"),
	   "an ordinary user cannot reach the console");
	free(out);
	out = console("admin", "wrong", "show pools", &rc);
	ok(rc != 0 && has(out, "password authentication failed"), "a wrong admin password fails");
	free(out);

	/* The extended protocol: an error, and the connection stays. */
	char *ci = h_strdupf("host=127.0.0.1 port=%d user=admin dbname=pgmoat password=adminpw "
	                     "sslmode=disable",
	                     moat->port);
	PGconn *c = h_connect(ci);
	free(ci);
	PGresult *r = PQexecParams(c, "show version", 0, NULL, NULL, NULL, NULL, 0);
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	ok(PQresultStatus(r) == PGRES_FATAL_ERROR && state && strcmp(state, "0A000") == 0,
	   "the extended protocol gets 0A000");
	PQclear(r);
	r = PQexec(c, "show version");
	ok(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1,
	   "and the same connection answers a simple query after it");
	PQclear(r);
	PQfinish(c);

	/* SHUTDOWN WAIT_FOR_CLIENTS: pgmoat exits once its clients are gone. */
	PGconn *last = h_moat_connect(moat, "app", "app", "app");
	ok(h_exec(last, "begin") && h_exec(last, "select 1"), "a client inside a transaction");
	out = console("admin", "adminpw", "shutdown wait_for_clients", &rc);
	free(out);
	ok(h_exec(last, "select 2") && h_exec(last, "commit"),
	   "SHUTDOWN WAIT_FOR_CLIENTS lets its transaction finish");
	PQfinish(last);
	is_int(h_moat_wait_exit(moat, 20), 0, "then pgmoat exits with status 0");
	test_operations(pg);
	return h_done();
}
