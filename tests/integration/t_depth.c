/* A long chain of requests that end without waiting for the network must
 * not grow the stack.  pgmoat runs here with 256 KiB stacks (RLIMIT_STACK,
 * which its worker threads inherit) and a 64 KiB input buffer; one client
 * pipelines 20,000 queries that are all refused at once (its database was
 * dropped: the pool's server login failed, and until the pool retries it
 * refuses requests without connecting).  Every one gets its error and
 * ReadyForQuery, in order, and the client stays.
 * - Before the steps were queued (proxy/worker.c worker_step), each refused
 *   request nested a few calls deeper: pgmoat died of a stack overflow
 *   after about 400 of them.
 * - A request cut by the end of the input buffer got FATAL instead of its
 *   ERROR (its end had not arrived yet): now it waits for the rest. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

#define REQUESTS 20000
#define STACK_KIB 256

static const char *ini = "[databases]\n"
                         "gone = host=127.0.0.1 port=@PGPORT@ dbname=gonedb\n"
                         "\n"
                         "[pgmoat]\n"
                         "listen_addr = 127.0.0.1\n"
                         "listen_port = @PORT@\n"
                         "unix_socket_dir = @SOCKDIR@\n"
                         "auth_file = @AUTHFILE@\n"
                         "auth_type = trust\n"
                         "admin_users = app\n"
                         "workers = 1\n"
                         "pool_mode = transaction\n"
                         "default_pool_size = 1\n"
                         "pkt_buf = 65536\n";

/* A column of SHOW POOLS for database `db`, -1 if not there. */
static int pool_column(struct h_moat *m, const char *db, const char *column)
{
	PGconn *a = h_moat_connect(m, "app", "pgmoat", NULL);
	PGresult *r = h_connected(a) ? PQexec(a, "SHOW POOLS") : NULL;
	int v = -1;
	if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
		int dcol = PQfnumber(r, "database"), col = PQfnumber(r, column);
		for (int i = 0; col >= 0 && i < PQntuples(r); i++)
			if (strcmp(PQgetvalue(r, i, dcol), db) == 0)
				v = atoi(PQgetvalue(r, i, col));
	}
	PQclear(r);
	PQfinish(a);
	return v;
}

static bool no_server(void *arg)
{
	struct h_moat *m = arg;
	return pool_column(m, "gone", "sv_idle") == 0 && pool_column(m, "gone", "sv_active") == 0;
}

static void test_refused_pipeline(struct h_moat *m)
{
	int fd = wire_connect(m->port);
	struct wire_login lg;
	memset(&lg, 0, sizeof(lg));
	bool in = fd >= 0 && wire_login(fd, 0, "app", "gone", NULL, &lg) && lg.ok;
	struct wire_result r;
	memset(&r, 0, sizeof(r));
	ok(in && wire_query(fd, "select 1", 10, &r) && r.ok, "a client of database gone");
	h_pg_sql(m->pg, "drop database gonedb with (force)");
	ok(h_wait_until(no_server, m, 20), "its database is dropped, its server gone");

	/* Every request in one write: pgmoat finds thousands in its buffer. */
	const char *sql = "select 1";
	size_t one = 1 + 4 + strlen(sql) + 1;
	char *batch = malloc(one * REQUESTS);
	for (int i = 0; i < REQUESTS; i++) {
		char *p = batch + (size_t)i * one;
		uint32_t len = (uint32_t)(4 + strlen(sql) + 1);
		p[0] = 'Q';
		p[1] = (char)(len >> 24);
		p[2] = (char)(len >> 16);
		p[3] = (char)(len >> 8);
		p[4] = (char)len;
		memcpy(p + 5, sql, strlen(sql) + 1);
	}
	double t0 = h_now();
	bool sent = in && wire_send(fd, batch, one * REQUESTS);
	free(batch);
	ok(sent, "%d pipelined queries sent in one write (%zu bytes)", REQUESTS, one * REQUESTS);

	int errors = 0, readies = 0, other = 0;
	char first_state[6] = "", first_msg[256] = "";
	while (sent && readies < REQUESTS) {
		struct wire_msg msg;
		if (wire_read_msg(fd, &msg, 20) != 1)
			break;
		if (msg.type == 'E') {
			if (errors++ == 0) {
				wire_error_field(&msg, 'C', first_state, sizeof(first_state));
				wire_error_field(&msg, 'M', first_msg, sizeof(first_msg));
			}
		} else if (msg.type == 'Z') {
			readies++;
		} else {
			other++;
		}
		wire_msg_free(&msg);
	}
	diag("%d errors, %d ReadyForQuery, %d other messages in %.2f s", errors, readies, other,
	     h_now() - t0);
	is_int(readies, REQUESTS, "every request gets its ReadyForQuery");
	is_int(errors, REQUESTS, "and its error");
	is_str(first_state, "3D000", "the error is 3D000");
	ok(strstr(first_msg, "gonedb") != NULL, "naming the dropped database (%s)", first_msg);
	if (sent)
		wire_query(fd, "select 1", 10, &r);
	ok(sent && r.got_ready && strcmp(r.sqlstate, "3D000") == 0,
	   "the client stays: its next query gets its error too (%s %s)", r.sqlstate, r.message);
	ok(h_moat_alive(m), "pgmoat is alive");
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	h_init("t_depth", 240);
	tap_plan(12);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	h_moat_write_userlist(m, "\"app\" \"app\"\n");
	h_pg_sql(pg, "create database gonedb owner app");
	bool ready = h_moat_write_ini(m, ini);
	/* pgmoat (and its threads) get small stacks. */
	struct rlimit old, small = {STACK_KIB * 1024, STACK_KIB * 1024};
	getrlimit(RLIMIT_STACK, &old);
	small.rlim_max = old.rlim_max;
	bool limited = setrlimit(RLIMIT_STACK, &small) == 0;
	ready = ready && h_moat_start(m, NULL);
	setrlimit(RLIMIT_STACK, &old);
	if (!ok(ready && limited, "pgmoat runs with %d KiB stacks", STACK_KIB))
		h_bail("pgmoat did not start");

	test_refused_pipeline(m);

	is_int(h_moat_stop(m), 0, "pgmoat exits cleanly");
	return h_done();
}
