/* Reads to replicas (doc/routing.md), with a real primary and two streaming
 * replicas made by pg_basebackup:
 * - app_ro (prefer-standby) reaches a replica, both replicas take reads;
 *   app writes reach the primary; read_routing = auto sends plain SELECTs
 *   to replicas and nextval(), FOR UPDATE, writable CTEs and
 *   pgmoat:primary to the primary; BEGIN READ ONLY goes to a replica; a
 *   pipelined write behind a routed read still reaches the primary;
 * - a replica with replay paused and writes past max_replica_lag_bytes
 *   gets no new reads until resumed and caught up;
 * - read-your-writes: with replay paused everywhere, insert-then-select
 *   sees the row 1,000 times in a row, while another client's reads go to
 *   replicas;
 * - the health checker's connections are its own, one per host;
 * - a replica stopped: reads continue with zero failed transactions once
 *   it is marked down; restarted: used again;
 * - a hung replica (SIGSTOP) stalls no worker;
 * - the primary stopped: writes get 08006, reads go on; a replica promoted
 *   becomes the primary and writes flow again, pgmoat untouched; the old
 *   primary rebuilt as a replica is used as one. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"

#define PERIOD 0.2 /* health_check_period, seconds */

static struct h_pg *primary, *rep1, *rep2;

static PGconn *connect_db(struct h_moat *m, const char *db)
{
	return h_moat_connect(m, "app", db, "app");
}

/* The port of the host that ran `sql`'s transaction (inet_server_port). */
static int port_of(PGconn *c)
{
	char *v = h_value(c, "select inet_server_port()");
	int p = v ? atoi(v) : -1;
	free(v);
	return p;
}

struct wait_arg {
	PGconn *c;
	const char *sql;
	const char *want;
};

static bool value_is(void *arg)
{
	struct wait_arg *a = arg;
	PGresult *r = PQexec(a->c, a->sql);
	bool good = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	        strcmp(PQgetvalue(r, 0, 0), a->want) == 0;
	PQclear(r);
	return good;
}

/* Of `n` reads on `c`, how many each replica and the primary served. */
static void count_hosts(PGconn *c, int n, int *on_primary, int *on1, int *on2)
{
	*on_primary = *on1 = *on2 = 0;
	for (int i = 0; i < n; i++) {
		int p = port_of(c);
		*on_primary += p == primary->port;
		*on1 += p == rep1->port;
		*on2 += p == rep2->port;
	}
}

struct spread {
	PGconn *c;
	int port; /* wanted: a read served by this host (or, if negative, none in 30) */
};

static bool served_by(void *arg)
{
	struct spread *s = arg;
	if (s->port > 0)
		return port_of(s->c) == s->port;
	for (int i = 0; i < 30; i++)
		if (port_of(s->c) == -s->port)
			return false;
	return true;
}

static void test_basic_routing(struct h_moat *m)
{
	PGconn *ro = connect_db(m, "app_ro");
	struct wait_arg w = {ro, "select pg_is_in_recovery()", "t"};
	ok(h_wait_until(value_is, &w, 20), "app_ro (prefer-standby) reaches a replica");
	PGconn *rw = connect_db(m, "app");
	ok(h_exec(rw, "create table t(id serial primary key, v text)"),
	   "app: DDL reaches the primary");
	ok(h_exec(rw, "insert into t(v) values ('one')"), "app: an INSERT reaches the primary");
	int p, a, b;
	count_hosts(ro, 60, &p, &a, &b);
	ok(a > 0 && b > 0 && p == 0,
	   "app_ro reads are spread over both replicas (%d, %d; primary %d)", a, b, p);

	/* read_routing = auto */
	struct wait_arg w2 = {rw, "select pg_is_in_recovery()", "t"};
	ok(h_wait_until(value_is, &w2, 10), "auto: a plain SELECT on app goes to a replica");
	char *v = h_value(rw, "select nextval('t_id_seq') > 0");
	is_str(v, "t", "auto: SELECT nextval(...) goes to the primary (it ran)");
	free(v);
	v = h_value(rw, "select v from t where id = 1 for update");
	is_str(v, "one", "auto: SELECT ... FOR UPDATE goes to the primary (it ran)");
	free(v);
	v = h_value(rw,
	            "with x as (insert into t(v) values ('cte') returning id) select count(*) "
	            "from x");
	is_str(v, "1", "auto: a writable CTE goes to the primary (it ran)");
	free(v);
	v = h_value(rw, "select /* pgmoat:primary */ pg_is_in_recovery()");
	is_str(v, "f", "auto: /* pgmoat:primary */ forces the primary");
	free(v);
	ok(h_exec(rw, "begin read only"), "BEGIN READ ONLY");
	v = h_value(rw, "select pg_is_in_recovery()");
	is_str(v, "t", "auto: a READ ONLY transaction runs on a replica");
	free(v);
	ok(h_exec(rw, "commit"), "COMMIT");
	ok(h_exec(rw, "begin"), "BEGIN (read write)");
	v = h_value(rw, "select pg_is_in_recovery()");
	is_str(v, "f", "auto: a plain BEGIN stays on the primary");
	free(v);
	ok(h_exec(rw, "commit"), "COMMIT");

	/* A write pipelined behind a routed read reaches the primary. */
	ok(PQenterPipelineMode(rw) == 1, "pipeline mode");
	PQsendQueryParams(rw, "select pg_is_in_recovery()", 0, NULL, NULL, NULL, NULL, 0);
	PQpipelineSync(rw);
	PQsendQueryParams(rw, "insert into t(v) values ('piped') returning pg_is_in_recovery()", 0,
	                  NULL, NULL, NULL, NULL, 0);
	PQpipelineSync(rw);
	char got[2][8] = {"?", "?"};
	int k = 0;
	for (int i = 0; i < 8 && k < 2; i++) {
		PGresult *r = PQgetResult(rw);
		if (!r)
			continue;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK && PQntuples(r) == 1)
			snprintf(got[k++], sizeof(got[0]), "%s", PQgetvalue(r, 0, 0));
		else if (st == PGRES_FATAL_ERROR)
			snprintf(got[k++], sizeof(got[0]), "E");
		PQclear(r);
	}
	while (PQgetResult(rw) || PQisBusy(rw)) {
		PGresult *r = PQgetResult(rw);
		if (!r)
			break;
		PQclear(r);
	}
	PQexitPipelineMode(rw);
	ok(strcmp(got[1], "f") == 0,
	   "a pipelined INSERT behind a routed SELECT runs on the primary (read %s, insert %s)",
	   got[0], got[1]);
	PQfinish(ro);
	PQfinish(rw);
}

static void test_lag(struct h_moat *m)
{
	PGconn *ro = connect_db(m, "app_ro");
	PGconn *r1 = h_pg_connect(rep1, "postgres", "postgres");
	ok(h_exec(r1, "select pg_wal_replay_pause()"), "replica 1: replay paused");
	/* Past max_replica_lag_bytes (1 MB). */
	h_pg_sql(primary,
	         "create table big as select g, repeat('x', 200) as pad from "
	         "generate_series(1, 20000) g");
	struct spread s = {ro, -rep1->port};
	ok(h_wait_until(served_by, &s, 10),
	   "replica 1 behind past max_replica_lag_bytes: 30 reads in a row without it");
	ok(h_exec(r1, "select pg_wal_replay_resume()"), "replica 1: replay resumed");
	s.port = rep1->port;
	ok(h_wait_until(served_by, &s, 10), "caught up: replica 1 takes reads again");
	PQfinish(r1);
	PQfinish(ro);
}

/* SHOW HOSTS: whether replica `port` shows replay position `lsn`. */
static bool shows_replay(struct h_moat *m, int port, const char *lsn)
{
	PGconn *a = h_moat_connect(m, "app", "pgmoat", "app");
	PGresult *r = h_connected(a) ? PQexec(a, "SHOW HOSTS") : NULL;
	bool seen = false;
	if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
		int pc = PQfnumber(r, "port"), lc = PQfnumber(r, "replay_lsn");
		for (int i = 0; pc >= 0 && lc >= 0 && i < PQntuples(r); i++)
			seen = seen ||
			        (atoi(PQgetvalue(r, i, pc)) == port &&
			         strcmp(PQgetvalue(r, i, lc), lsn) == 0);
	}
	PQclear(r);
	PQfinish(a);
	return seen;
}

struct replay_seen {
	struct h_moat *m;
	char lsn[2][32];
};

static bool replicas_seen(void *arg)
{
	struct replay_seen *rs = arg;
	return shows_replay(rs->m, rep1->port, rs->lsn[0]) &&
	        shows_replay(rs->m, rep2->port, rs->lsn[1]);
}

/* A commit that is not written out yet (synchronous_commit off, the WAL
 * writer asleep) while both replicas, paused, have replayed everything
 * written: the client's next read must not go to them.  Before pgmoat took
 * the primary's insert position, it took the write position, which the
 * paused replicas had reached, and the read went to a replica without the
 * row (t_routing's read-your-writes loop saw it about once in ten runs). */
static void test_ryw_unwritten_commit(struct h_moat *m)
{
	h_pg_sql(primary, "alter system set wal_writer_delay = '10s'");
	h_pg_sql(primary, "select pg_reload_conf()");
	bool caught_up = h_pg_wait_replay(rep1, primary, 20) && h_pg_wait_replay(rep2, primary, 20);
	PGconn *r1 = h_pg_connect(rep1, "postgres", "postgres");
	PGconn *r2 = h_pg_connect(rep2, "postgres", "postgres");
	bool paused = h_exec(r1, "select pg_wal_replay_pause()") &&
	        h_exec(r2, "select pg_wal_replay_pause()");
	struct replay_seen rs = {m, {"", ""}};
	char *v1 = h_value(r1, "select pg_last_wal_replay_lsn()");
	char *v2 = h_value(r2, "select pg_last_wal_replay_lsn()");
	snprintf(rs.lsn[0], sizeof(rs.lsn[0]), "%s", v1 ? v1 : "?");
	snprintf(rs.lsn[1], sizeof(rs.lsn[1]), "%s", v2 ? v2 : "?");
	free(v1);
	free(v2);
	ok(caught_up && paused && h_wait_until(replicas_seen, &rs, 10),
	   "both replicas caught up and paused, and pgmoat's health view shows them there "
	   "(%s, %s)",
	   rs.lsn[0], rs.lsn[1]);
	PGconn *writer = connect_db(m, "app");
	char *id = h_value(writer, "insert into t(v) values ('unwritten') returning id");
	char *written =
	        h_pg_value(primary, "select pg_current_wal_lsn() <= '%s'::pg_lsn", rs.lsn[0]);
	const char *params[1] = {id ? id : "0"};
	PGresult *r = PQexecParams(writer, "select v from t where id = $1::int", 1, NULL, params,
	                           NULL, NULL, 0);
	ok(id && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1,
	   "the write's commit not written out yet (replicas at the write position: %s): the "
	   "read sees the row (%d rows)",
	   written ? written : "?", PQntuples(r));
	PQclear(r);
	free(id);
	free(written);
	PQfinish(writer);
	ok(h_exec(r1, "select pg_wal_replay_resume()") &&
	           h_exec(r2, "select pg_wal_replay_resume()"),
	   "replay resumed");
	PQfinish(r1);
	PQfinish(r2);
	h_pg_sql(primary, "alter system reset wal_writer_delay");
	h_pg_sql(primary, "select pg_reload_conf()");
}

static void test_read_your_writes(struct h_moat *m)
{
	PGconn *r1 = h_pg_connect(rep1, "postgres", "postgres");
	PGconn *r2 = h_pg_connect(rep2, "postgres", "postgres");
	ok(h_exec(r1, "select pg_wal_replay_pause()") && h_exec(r2, "select pg_wal_replay_pause()"),
	   "replay paused on both replicas");
	PGconn *writer = connect_db(m, "app");
	PGconn *other = connect_db(m, "app");
	int seen = 0, i;
	double t0 = h_now();
	for (i = 0; i < 1000; i++) {
		char *id = h_value(writer, "insert into t(v) values ('ryw') returning id");
		if (!id)
			break;
		const char *params[1] = {id};
		PGresult *r = PQexecParams(writer, "select v from t where id = $1::int", 1, NULL,
		                           params, NULL, NULL, 0);
		bool good = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
		if (!good) {
			diag("pair %d: the select of row %s: %s, %d rows %s", i, id,
			     PQresStatus(PQresultStatus(r)), PQntuples(r), PQresultErrorMessage(r));
			char *where = h_value(writer, "select inet_server_port()");
			diag("the next read ran on port %s (primary %d, replicas %d and %d)",
			     where ? where : "?", primary->port, rep1->port, rep2->port);
			free(where);
		}
		PQclear(r);
		free(id);
		if (!good)
			break;
		seen++;
	}
	is_int(seen, 1000,
	       "read-your-writes: insert then select sees the row 1,000 times in a row");
	diag("1,000 insert+select pairs in %.2f s", h_now() - t0);
	char *v = h_value(other, "select pg_is_in_recovery()");
	is_str(v, "t", "a client that did not write is served by a replica meanwhile");
	free(v);
	ok(h_exec(r1, "select pg_wal_replay_resume()") &&
	           h_exec(r2, "select pg_wal_replay_resume()"),
	   "replay resumed");
	PQfinish(writer);
	PQfinish(other);
	PQfinish(r1);
	PQfinish(r2);
}

/* SHOW HOSTS on the admin console: roles and states as the test set them. */
static void test_show_hosts(struct h_moat *m)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", m->port);
	const char *argv[] = {"psql", "-X",        "-A", "-t",         "-F", "|",
	                      "-h",   "127.0.0.1", "-p", port,         "-U", "app",
	                      "-d",   "pgmoat",    "-c", "show hosts", NULL};
	const char *env[] = {"PGPASSWORD=app", "PGSSLMODE=disable", NULL};
	char *out = NULL;
	int rc = h_run(argv, env, 30, &out);
	char *p = h_strdupf("app|127.0.0.1|%d|primary|up|", primary->port);
	char *r1 = h_strdupf("app|127.0.0.1|%d|replica|up|", rep1->port);
	char *r2 = h_strdupf("app|127.0.0.1|%d|replica|up|", rep2->port);
	ok(rc == 0 && out && strstr(out, p) && strstr(out, r1) && strstr(out, r2),
	   "SHOW HOSTS: the primary and both replicas, up");
	if (!(out && strstr(out, p)))
		h_diag_text("show hosts: ", out ? out : "");
	free(p);
	free(r1);
	free(r2);
	free(out);
}

static void test_probes(void)
{
	char *n = h_pg_value(primary,
	                     "select count(*) from pg_stat_activity where "
	                     "application_name = 'pgmoat health'");
	is_str(n, "1", "one health probe connection on the primary, its own (not in the pools)");
	free(n);
	n = h_pg_value(primary,
	               "select count(*) from pg_stat_activity where usename = "
	               "'postgres' and application_name = 'pgmoat health'");
	is_str(n, "1", "logged in as health_check_user");
	free(n);
}

static int pgbench_ro(struct h_moat *m, double secs, long *failed, long *done)
{
	char port[16], t[16];
	snprintf(port, sizeof(port), "%d", m->port);
	snprintf(t, sizeof(t), "%d", (int)secs);
	const char *argv[] = {"pgbench", "-h", "127.0.0.1", "-p", port, "-U",     "app", "-n",
	                      "-S",      "-c", "4",         "-T", t,    "app_ro", NULL};
	const char *env[] = {"PGPASSWORD=app", "PGSSLMODE=disable", NULL};
	char *out = NULL;
	int rc = h_run(argv, env, secs + 60, &out);
	*failed = h_number_after(out, "number of failed transactions: ");
	*done = h_number_after(out, "number of transactions actually processed: ");
	if (rc != 0 || *failed != 0)
		h_diag_text("pgbench: ", out ? out : "");
	free(out);
	return rc;
}

static void test_replica_down(struct h_moat *m)
{
	char pgport[16];
	snprintf(pgport, sizeof(pgport), "%d", primary->port);
	const char *init[] = {"pgbench", "-i",  "-q",  "-h", primary->sockdir, "-p", pgport,
	                      "-U",      "app", "app", NULL};
	char *out = NULL;
	if (h_run(init, NULL, 120, &out) != 0) {
		h_diag_text("pgbench -i: ", out ? out : "");
		h_bail("pgbench -i failed");
	}
	free(out);
	h_pg_wait_replay(rep1, primary, 20);
	h_pg_wait_replay(rep2, primary, 20);
	h_moat_log_mark(m);
	ok(h_pg_stop(rep2, true), "replica 2 stopped (immediate)");
	ok(h_moat_log_wait(m, "is down", 10), "the health checker marks it down");
	long failed, done;
	int rc = pgbench_ro(m, 3, &failed, &done);
	ok(rc == 0 && failed == 0 && done > 0,
	   "pgbench -S on app_ro for 3 s: zero failed transactions (%ld done)", done);
	h_moat_log_mark(m);
	ok(h_pg_restart(rep2), "replica 2 restarted");
	ok(h_moat_log_wait(m, "is back up", 20), "the health checker sees it up again");
	PGconn *ro = connect_db(m, "app_ro");
	struct spread s = {ro, rep2->port};
	ok(h_wait_until(served_by, &s, 20), "replica 2 takes reads again");
	PQfinish(ro);
}

static void test_hung_replica(struct h_moat *m)
{
	PGconn *rw = connect_db(m, "app");
	h_pg_pause(rep2, true);
	double t0 = h_now();
	int good = 0;
	for (int i = 0; i < 20; i++)
		good += h_exec(rw, "insert into t(v) values ('while hung')");
	double took = h_now() - t0;
	is_int(good, 20, "with a replica hung (SIGSTOP), 20 writes through pgmoat succeed");
	ok(took < 10, "and take %.2f s: no worker waits on the hung host", took);
	ok(h_moat_log_wait(m, "is down", 10), "the hung replica is marked down");
	h_pg_pause(rep2, false);
	PQfinish(rw);
}

static bool write_works(void *arg)
{
	PGconn **c = arg;
	if (PQstatus(*c) != CONNECTION_OK) {
		PQreset(*c);
		if (PQstatus(*c) != CONNECTION_OK)
			return false;
	}
	PGresult *r = PQexec(*c, "insert into t(v) values ('after failover')");
	bool good = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	return good;
}

static void test_failover(struct h_moat *m)
{
	PGconn *rw = connect_db(m, "app");
	PGconn *ro = connect_db(m, "app_ro");
	h_moat_log_mark(m);
	ok(h_pg_stop(primary, true), "the primary stopped (immediate)");
	ok(h_moat_log_wait(m, "is down", 10), "the health checker marks it down");
	PGresult *r = PQexec(rw, "insert into t(v) values ('no primary')");
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	ok(PQresultStatus(r) == PGRES_FATAL_ERROR && state &&
	           (strcmp(state, "08006") == 0 || strcmp(state, "57P01") == 0),
	   "a write without a primary gets a clear error (%s: %s)", state ? state : "none",
	   PQresultErrorMessage(r));
	PQclear(r);
	char *v = h_value(ro, "select count(*) > 0 from t");
	is_str(v, "t", "reads keep going to the replicas");
	free(v);
	double t0 = h_now();
	ok(h_pg_promote(rep1), "replica 1 promoted (pg_ctl promote)");
	ok(h_wait_until(write_works, &rw, 10), "writes succeed again, pgmoat untouched");
	diag("writes flowed %.2f s after the promotion (health_check_period %.1f s)", h_now() - t0,
	     PERIOD);
	ok(h_moat_log_has(m, "is now the primary"), "the role change is logged");

	/* The old primary comes back as a replica of the new one. */
	h_moat_log_mark(m);
	h_pg_rebuild_replica(primary, rep1);
	ok(h_moat_log_wait(m, "is now a replica", 20), "the old primary is back, as a replica");
	struct spread s = {ro, primary->port};
	ok(h_wait_until(served_by, &s, 20), "and takes reads");
	ok(write_works(&rw), "writes still go to the new primary");
	PQfinish(rw);
	PQfinish(ro);
}

int main(void)
{
	h_init("t_routing", 300);
	primary = h_pg_start(NULL);
	h_pg_create_app(primary, "app", "app", "app");
	rep1 = h_pg_start_replica(primary);
	rep2 = h_pg_start_replica(primary);
	struct h_moat *m = h_moat_new(primary);
	char *hosts = h_strdupf("host=127.0.0.1,127.0.0.1,127.0.0.1 port=%d,%d,%d dbname=app",
	                        primary->port, rep1->port, rep2->port);
	char *tmpl = h_strdupf("[databases]\n"
	                       "app = %s\n"
	                       "app_ro = %s target_session_attrs=prefer-standby\n"
	                       "[pgmoat]\n"
	                       "listen_addr = 127.0.0.1\nlisten_port = @PORT@\n"
	                       "unix_socket_dir = @SOCKDIR@\nauth_file = @AUTHFILE@\n"
	                       "auth_type = md5\nworkers = 2\npool_mode = transaction\n"
	                       "default_pool_size = 4\nserver_connect_timeout = 2\n"
	                       "server_login_retry = 0.2\n"
	                       "health_check_period = 200ms\nhealth_check_failures = 2\n"
	                       "health_check_timeout = 1\nread_routing = auto\n"
	                       "max_replica_lag = 120\nmax_replica_lag_bytes = 1MB\n"
	                       "admin_users = app\n",
	                       hosts, hosts);
	if (!h_moat_write_userlist(m, "\"app\" \"app\"\n") || !h_moat_write_ini(m, tmpl) ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	free(hosts);
	free(tmpl);
	test_basic_routing(m);
	test_lag(m);
	test_read_your_writes(m);
	test_ryw_unwritten_commit(m);
	test_probes();
	test_show_hosts(m);
	test_replica_down(m);
	test_hung_replica(m);
	test_failover(m);
	return h_done();
}
