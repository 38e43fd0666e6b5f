/* Big data through pgmoat: a ~20 MB result of 20,000 rows, one 20 MB value,
 * a 20 MB text parameter and a 20 MB bytea sent and received at once.
 * Checked by md5 against the same data computed on PostgreSQL directly. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"

#define BIG (20 * 1024 * 1024)

/* Deterministic printable filler (an LCG), so a shifted or dropped chunk
 * cannot go unnoticed. */
static void fill(char *buf, size_t n, uint32_t seed, bool printable)
{
	uint32_t x = seed;
	for (size_t i = 0; i < n; i++) {
		x = x * 1664525u + 1013904223u;
		buf[i] = printable ? (char)('a' + (x >> 24) % 26) : (char)(x >> 24);
	}
}

static void test_many_rows(struct h_pg *pg, PGconn *c)
{
	const char *q = "select g, repeat('x', 1000) || g from generate_series(1, 20000) g";
	PGresult *r = PQexec(c, q);
	bool rows_ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 20000;
	ok(rows_ok, "20,000 rows of ~1 kB each received (%s)",
	   rows_ok ? "ok" : PQresultErrorMessage(r));
	char local[33] = "";
	size_t total = 0;
	if (rows_ok) {
		struct h_md5 md;
		h_md5_init(&md);
		for (int i = 0; i < PQntuples(r); i++) {
			h_md5_update(&md, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
			total += (size_t)PQgetlength(r, i, 1);
		}
		h_md5_final(&md, local);
	}
	PQclear(r);
	char *want = h_pg_value(pg,
	                        "select md5(string_agg(repeat('x', 1000) || g, '' order by g))"
	                        " from generate_series(1, 20000) g");
	char *want_len = h_pg_value(pg,
	                            "select sum(length(repeat('x', 1000) || g))"
	                            " from generate_series(1, 20000) g");
	is_str(local, want, "md5 of the rows received equals the md5 computed on the server");
	is_int((long)total, want_len ? atol(want_len) : -1, "total length matches");
	free(want);
	free(want_len);
}

static void test_one_big_value(struct h_pg *pg, PGconn *c)
{
	PGresult *r = PQexec(c, "select repeat('y', 20 * 1024 * 1024)");
	bool got = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	is_int(got ? PQgetlength(r, 0, 0) : -1, BIG, "a single 20 MB value: length");
	bool all_y = got;
	const char *v = got ? PQgetvalue(r, 0, 0) : "";
	for (int i = 0; all_y && i < BIG; i++)
		all_y = v[i] == 'y';
	ok(all_y, "every byte intact");
	PQclear(r);

	/* A value that is not one repeated byte. */
	r = PQexec(
	        c,
	        "select string_agg(md5(g::text), '' order by g) from generate_series(1, 600000) g");
	char local[33] = "";
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		h_md5_hex(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), local);
	PQclear(r);
	char *want = h_pg_value(pg,
	                        "select md5(string_agg(md5(g::text), '' order by g))"
	                        " from generate_series(1, 600000) g");
	is_str(local, want, "a ~19 MB varied value: md5 matches");
	free(want);
}

static void test_big_param(PGconn *c)
{
	char *big = malloc(BIG + 1);
	if (!big)
		h_bail("out of memory");
	fill(big, BIG, 42, true);
	big[BIG] = '\0';
	char local[33];
	h_md5_hex(big, BIG, local);
	const char *params[1] = {big};
	PGresult *r = PQexecParams(c, "select length($1), md5($1)", 1, NULL, params, NULL, NULL, 0);
	bool got = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	if (!got)
		diag("%s", PQresultErrorMessage(r));
	is_str(got ? PQgetvalue(r, 0, 0) : "", "20971520", "a 20 MB text parameter arrives whole");
	is_str(got ? PQgetvalue(r, 0, 1) : "", local, "and its md5 on the server matches");
	PQclear(r);

	/* Simple protocol: the same text inside one 20 MB Query message. */
	char *sql = malloc(BIG + 64);
	if (!sql)
		h_bail("out of memory");
	snprintf(sql, BIG + 64, "select md5('%s')", big);
	char *v = h_value(c, sql);
	is_str(v, local, "a 20 MB simple Query message arrives whole");
	free(v);
	free(sql);

	/* Binary bytea echoed back: 20 MB each way at the same time. */
	fill(big, BIG, 7, false);
	int lens[1] = {BIG}, fmts[1] = {1};
	Oid types[1] = {17}; /* bytea */
	r = PQexecParams(c, "select $1::bytea", 1, types, params, lens, fmts, 1);
	got = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	        PQgetlength(r, 0, 0) == BIG;
	ok(got && memcmp(PQgetvalue(r, 0, 0), big, BIG) == 0,
	   "a 20 MB binary bytea parameter echoed back byte for byte");
	PQclear(r);
	free(big);
}

int main(void)
{
	h_init("t_large", 180);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, NULL, "pool_mode = session\ndefault_pool_size = 4\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	tap_plan(15);
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	if (!ok(h_connected(c), "connected through pgmoat"))
		h_bail("no connection");
	test_many_rows(pg, c);
	test_one_big_value(pg, c);
	test_big_param(c);

	/* A second client meanwhile is not starved or confused. */
	PGconn *c2 = h_moat_connect(m, "app", "app", "app");
	char *v = h_connected(c2) ? h_value(c2, "select 'second'") : NULL;
	is_str(v, "second", "a second client works");
	free(v);
	v = h_value(c, "select 'first still fine'");
	is_str(v, "first still fine", "the first connection is still in step after 100 MB");
	free(v);
	PQfinish(c2);
	PQfinish(c);
	ok(h_moat_alive(m), "pgmoat still running");
	return h_done();
}
