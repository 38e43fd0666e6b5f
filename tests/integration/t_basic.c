/* Queries through pgmoat: simple and extended protocol, multi-statement
 * strings, pipelines, errors, notices, transactions, TCP and the Unix
 * socket, and a clean SIGTERM at the end. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <arpa/inet.h>

#include "tests/lib/harness.h"

static char notice[256];

static void on_notice(void *arg, const PGresult *r)
{
	(void)arg;
	snprintf(notice, sizeof notice, "%s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
}

static void test_simple(PGconn *c)
{
	char *v = h_value(c, "select 40 + 2");
	is_str(v, "42", "simple query");
	free(v);
	ok(PQparameterStatus(c, "server_version") != NULL &&
	           strncmp(PQparameterStatus(c, "server_version"), "15", 2) == 0,
	   "client received the server's ParameterStatus (server_version %s)",
	   PQparameterStatus(c, "server_version") ? PQparameterStatus(c, "server_version") : "-");
	ok(PQparameterStatus(c, "client_encoding") != NULL, "client_encoding reported");

	PGresult *r = PQexec(c, "select g, repeat('r', g) from generate_series(1, 10000) g");
	ok(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 10000 &&
	           strlen(PQgetvalue(r, 9999, 1)) == 10000,
	   "10000-row result, last row intact");
	PQclear(r);

	r = PQexec(c, "");
	is_int(PQresultStatus(r), PGRES_EMPTY_QUERY, "empty query string");
	PQclear(r);
}

static void test_extended(PGconn *c)
{
	const char *params[2] = {"21", "abc"};
	PGresult *r =
	        PQexecParams(c, "select $1::int * 2, upper($2)", 2, NULL, params, NULL, NULL, 0);
	ok(PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "42") == 0 &&
	           strcmp(PQgetvalue(r, 0, 1), "ABC") == 0,
	   "PQexecParams with two parameters");
	PQclear(r);

	/* Binary parameter and result. */
	uint32_t be = htonl(0x01020304);
	const char *bparams[1] = {(const char *)&be};
	int lens[1] = {4}, fmts[1] = {1};
	Oid types[1] = {23}; /* int4 */
	r = PQexecParams(c, "select $1::int4 + 1", 1, types, bparams, lens, fmts, 1);
	uint32_t got = 0;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQgetlength(r, 0, 0) == 4)
		memcpy(&got, PQgetvalue(r, 0, 0), 4);
	is_int((long)ntohl(got), 0x01020305, "binary parameter and binary result");
	PQclear(r);

	r = PQprepare(c, "s1", "select $1::text || '-x'", 1, NULL);
	is_int(PQresultStatus(r), PGRES_COMMAND_OK, "PQprepare of a named statement");
	PQclear(r);
	r = PQdescribePrepared(c, "s1");
	ok(PQresultStatus(r) == PGRES_COMMAND_OK && PQnparams(r) == 1 && PQnfields(r) == 1,
	   "PQdescribePrepared: 1 parameter, 1 column");
	PQclear(r);
	const char *a[1] = {"a"}, *b[1] = {"b"};
	PGresult *r1 = PQexecPrepared(c, "s1", 1, a, NULL, NULL, 0);
	PGresult *r2 = PQexecPrepared(c, "s1", 1, b, NULL, NULL, 0);
	ok(PQresultStatus(r1) == PGRES_TUPLES_OK && PQresultStatus(r2) == PGRES_TUPLES_OK &&
	           strcmp(PQgetvalue(r1, 0, 0), "a-x") == 0 &&
	           strcmp(PQgetvalue(r2, 0, 0), "b-x") == 0,
	   "named statement executed twice");
	PQclear(r1);
	PQclear(r2);

	r = PQexecParams(c, "select * from no_such_table where x = $1", 1, NULL, a, NULL, NULL, 0);
	is_str(h_result_state(r), "42P01", "extended-protocol error gives 42P01");
	PQclear(r);
	char *v = h_value(c, "select 'after extended error'");
	is_str(v, "after extended error", "connection usable after the extended-protocol error");
	free(v);
}

static void test_multi(PGconn *c)
{
	int n = 0;
	char got[64] = "";
	if (PQsendQuery(c, "select 1; select 2; select 3")) {
		PGresult *r;
		while ((r = PQgetResult(c)) != NULL) {
			if (PQresultStatus(r) == PGRES_TUPLES_OK && n < 3) {
				strcat(got, PQgetvalue(r, 0, 0));
				n++;
			}
			PQclear(r);
		}
	}
	is_str(got, "123", "multi-statement simple query: three results in order");

	/* An error in the middle stops the rest of the string. */
	int results = 0;
	const char *state = "";
	char state_buf[6] = "";
	if (PQsendQuery(c, "select 1; select 1/0; select 3")) {
		PGresult *r;
		while ((r = PQgetResult(c)) != NULL) {
			results++;
			if (PQresultStatus(r) == PGRES_FATAL_ERROR) {
				snprintf(state_buf, sizeof state_buf, "%s", h_result_state(r));
				state = state_buf;
			}
			PQclear(r);
		}
	}
	ok(strcmp(state, "22012") == 0 && results == 2,
	   "error inside a multi-statement string: 22012 and the rest skipped (%d results)",
	   results);
}

static void test_pipeline(PGconn *c)
{
	bool ok_all = PQenterPipelineMode(c);
	for (int i = 1; ok_all && i <= 3; i++) {
		char n[16];
		snprintf(n, sizeof n, "%d", i);
		const char *p[1] = {n};
		ok_all = PQsendQueryParams(c, "select $1::int * 10", 1, NULL, p, NULL, NULL, 0);
	}
	ok_all = ok_all && PQpipelineSync(c);
	int sum = 0, seen = 0;
	while (ok_all && seen < 4) {
		PGresult *r = PQgetResult(c);
		if (!r)
			continue; /* end of one query's results */
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK) {
			sum += atoi(PQgetvalue(r, 0, 0));
			seen++;
		} else if (st == PGRES_PIPELINE_SYNC) {
			seen++;
		} else {
			diag("pipeline: %s", PQresultErrorMessage(r));
			ok_all = false;
		}
		PQclear(r);
	}
	ok_all = ok_all && PQexitPipelineMode(c);
	ok(ok_all && sum == 60, "pipeline of three queries and a Sync (sum %d)", sum);
}

static void test_errors_and_notices(PGconn *c)
{
	char *st = h_error_state(c, "select * from no_such_table");
	is_str(st, "42P01", "undefined table gives SQLSTATE 42P01");
	free(st);
	char *v = h_value(c, "select 'alive'");
	is_str(v, "alive", "connection keeps working after an error");
	free(v);

	PQsetNoticeReceiver(c, on_notice, NULL);
	ok(h_exec(c, "do $$ begin raise notice 'hello %', 42; end $$") &&
	           strcmp(notice, "hello 42") == 0,
	   "NOTICE relayed to the client ('%s')", notice);

	ok(h_exec(c, "begin") && PQtransactionStatus(c) == PQTRANS_INTRANS,
	   "BEGIN: client sees in-transaction status");
	st = h_error_state(c, "select 1/0");
	ok(strcmp(st, "22012") == 0 && PQtransactionStatus(c) == PQTRANS_INERROR,
	   "error inside a transaction: 22012 and failed-transaction status");
	free(st);
	st = h_error_state(c, "select 1");
	is_str(st, "25P02", "commands refused in a failed transaction (25P02)");
	free(st);
	ok(h_exec(c, "rollback") && PQtransactionStatus(c) == PQTRANS_IDLE, "ROLLBACK: idle again");

	ok(h_exec(c, "create temp table t(x int)") && h_exec(c, "begin") &&
	           h_exec(c, "insert into t select generate_series(1, 5)") && h_exec(c, "commit"),
	   "a committed transaction");
	v = h_value(c, "select sum(x) from t");
	is_str(v, "15", "its rows are there");
	free(v);
}

int main(void)
{
	h_init("t_basic", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, NULL, "pool_mode = session\ndefault_pool_size = 5\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	tap_plan(31);
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	if (!ok(h_connected(c), "connect through pgmoat over TCP"))
		h_bail("cannot go on without a connection");
	ok(PQbackendPID(c) != 0, "BackendKeyData received");

	test_simple(c);
	test_extended(c);
	test_multi(c);
	test_pipeline(c);
	test_errors_and_notices(c);

	char *ci = h_moat_conninfo_unix(m, "app", "app", "app");
	PGconn *u = h_connect(ci);
	free(ci);
	ok(h_connected(u), "connect through pgmoat's Unix socket");
	char *v = h_value(u, "select current_user || '@' || current_database()");
	is_str(v, "app@app", "query over the Unix socket");
	free(v);
	PQfinish(u);

	v = h_value(c, "select 'still here'");
	is_str(v, "still here", "first client unaffected by the second");
	free(v);
	PQfinish(c);

	h_moat_signal(m, SIGTERM);
	is_int(h_moat_wait_exit(m, 15), 0, "SIGTERM with no clients: pgmoat exits with status 0");
	return h_done();
}
