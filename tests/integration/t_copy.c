/* COPY through pgmoat: 100,000 rows in (sent in chunks that split rows and
 * messages at odd places) and out again, checked by md5 on both sides;
 * a COPY that fails half-way and one the client aborts leave the
 * connection usable. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

#define ROWS 100000

/* The COPY text of all rows, as PostgreSQL itself would print it. */
static char *make_rows(size_t *len)
{
	size_t cap = (size_t)ROWS * 64, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		h_bail("out of memory");
	for (int i = 1; i <= ROWS; i++) {
		/* A tab and a backslash inside the payload exercise the escapes. */
		n += (size_t)snprintf(buf + n, cap - n, "%d\tpayload %d\\\\x\\t%08x\n", i, i,
		                      (unsigned)i * 2654435761u);
	}
	*len = n;
	return buf;
}

static bool copy_in(PGconn *c, const char *data, size_t len)
{
	PGresult *r = PQexec(c, "copy items (id, payload) from stdin");
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		diag("COPY FROM STDIN: %s", PQresultErrorMessage(r));
		PQclear(r);
		return false;
	}
	PQclear(r);
	/* Chunk sizes cycle through awkward values so rows and CopyData
	 * messages are split everywhere. */
	static const size_t sizes[] = {1, 7, 4096, 65536, 13, 100000, 511, 3};
	size_t off = 0;
	for (int i = 0; off < len; i++) {
		size_t n = sizes[i % 8];
		if (n > len - off)
			n = len - off;
		if (PQputCopyData(c, data + off, (int)n) != 1) {
			diag("PQputCopyData: %s", PQerrorMessage(c));
			return false;
		}
		off += n;
	}
	if (PQputCopyEnd(c, NULL) != 1)
		return false;
	r = PQgetResult(c);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "100000") == 0;
	if (!ok)
		diag("COPY end: %s (%s rows)", PQresultErrorMessage(r), PQcmdTuples(r));
	PQclear(r);
	while ((r = PQgetResult(c)) != NULL)
		PQclear(r);
	return ok;
}

static bool copy_out(PGconn *c, char md5[33], size_t *bytes, long *rows)
{
	PGresult *r = PQexec(c, "copy (select id, payload from items order by id) to stdout");
	if (PQresultStatus(r) != PGRES_COPY_OUT) {
		diag("COPY TO STDOUT: %s", PQresultErrorMessage(r));
		PQclear(r);
		return false;
	}
	PQclear(r);
	struct h_md5 m;
	h_md5_init(&m);
	*bytes = 0;
	*rows = 0;
	char *buf;
	int n;
	while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
		h_md5_update(&m, buf, (size_t)n);
		*bytes += (size_t)n;
		(*rows)++;
		PQfreemem(buf);
	}
	h_md5_final(&m, md5);
	r = PQgetResult(c);
	bool ok = n == -1 && PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		diag("COPY OUT end: %s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	PQclear(r);
	while ((r = PQgetResult(c)) != NULL)
		PQclear(r);
	return ok;
}

int main(void)
{
	h_init("t_copy", 180);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	/* Direct connection to the database, to check what pgmoat delivered. */
	PGconn *direct = h_pg_connect(pg, "app", "app");
	if (!h_exec(direct, "create table items (id int primary key, payload text not null)"))
		h_bail("cannot create the table");

	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, NULL, "pool_mode = session\ndefault_pool_size = 4\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	tap_plan(14);
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	if (!ok(h_connected(c), "connected through pgmoat"))
		h_bail("no connection");

	size_t len;
	char *data = make_rows(&len);
	char sent_md5[33];
	h_md5_hex(data, len, sent_md5);

	ok(copy_in(c, data, len), "COPY FROM STDIN of 100,000 rows, reported as COPY 100000");
	char *n = h_value(direct, "select count(*) from items");
	is_str(n, "100000", "100,000 rows on the server");
	free(n);
	char *server_md5 =
	        h_value(direct,
	                "select md5(string_agg(id || E'\\t' || replace(replace(payload,"
	                " E'\\\\', E'\\\\\\\\'), E'\\t', E'\\\\t') || E'\\n', '' order by id))"
	                " from items");
	is_str(server_md5, sent_md5, "md5 of the data sent equals md5 of the table's contents");
	free(server_md5);

	char got_md5[33];
	size_t bytes = 0;
	long rows = 0;
	ok(copy_out(c, got_md5, &bytes, &rows), "COPY TO STDOUT completes");
	is_int(rows, ROWS, "100,000 CopyData rows received");
	is_int((long)bytes, (long)len, "as many bytes as were sent");
	is_str(got_md5, sent_md5, "md5 of the bytes received equals md5 of the bytes sent");

	/* A COPY that fails half-way: the server's error reaches the client
	 * and the connection is usable afterwards. */
	PGresult *r = PQexec(c, "copy items (id, payload) from stdin");
	bool started = PQresultStatus(r) == PGRES_COPY_IN;
	PQclear(r);
	const char bad[] = "200001\tfine\nnot-a-number\tbad\n200003\tnever\n";
	if (started) {
		PQputCopyData(c, bad, (int)strlen(bad));
		PQputCopyEnd(c, NULL);
	}
	r = PQgetResult(c);
	is_str(started ? h_result_state(r) : "no copy", "22P02",
	       "a bad row fails the COPY with 22P02");
	PQclear(r);
	while ((r = PQgetResult(c)) != NULL)
		PQclear(r);
	char *v = h_value(c, "select count(*) from items where id > 100000");
	is_str(v, "0", "connection usable after the failed COPY; nothing was inserted");
	free(v);

	/* The client aborts its own COPY (CopyFail). */
	r = PQexec(c, "copy items (id, payload) from stdin");
	started = PQresultStatus(r) == PGRES_COPY_IN;
	PQclear(r);
	if (started) {
		PQputCopyData(c, "300001\tx\n", 9);
		PQputCopyEnd(c, "client gave up");
	}
	r = PQgetResult(c);
	is_str(started ? h_result_state(r) : "no copy", "57014",
	       "CopyFail from the client ends the COPY with 57014");
	PQclear(r);
	while ((r = PQgetResult(c)) != NULL)
		PQclear(r);
	v = h_value(c, "select count(*) from items");
	is_str(v, "100000", "connection usable after CopyFail");
	free(v);

	/* psql's \copy through pgmoat. */
	char *out = NULL;
	char port[16];
	snprintf(port, sizeof port, "%d", m->port);
	const char *argv[] = {
	        "psql",      "-X",  "-q",
	        "-A",        "-t",  "-h",
	        "127.0.0.1", "-p",  port,
	        "-U",        "app", "-d",
	        "app",       "-c",  "\\copy (select id from items where id <= 1000) to stdout",
	        NULL};
	const char *env[] = {"PGPASSWORD=app", "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10", NULL};
	int rc = h_run(argv, env, 60, &out);
	long lines = 0;
	for (const char *p = out; p && *p; p++)
		lines += *p == '\n';
	ok(rc == 0 && lines == 1000, "psql \\copy through pgmoat (exit %d, %ld lines)", rc, lines);
	free(out);

	free(data);
	PQfinish(c);
	PQfinish(direct);
	return h_done();
}
