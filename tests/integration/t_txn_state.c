/* Transaction pooling and session state: what a client sets (startup
 * parameters, SET, RESET, RESET ALL, set_config(..., false), SET ROLE) is
 * carried to every server it gets and never seen by another client; values
 * are applied quoted, never as SQL; track_extra_parameters admits more
 * startup parameters; and transaction_mode_guard refuses (error), logs (warn)
 * or lets through (off) SQL whose effect would stay on a shared server.
 *
 * Most checks run on a pool of one server (database app1) shared by the
 * client under test and an observer, B, who runs a transaction between each
 * of the other's and must always see the defaults.  The crowd test runs 20
 * threads against a pool of two (app2).  What RESET gives a client that
 * connected with parameters is compared with PostgreSQL's own answer on a
 * direct connection.  The last section changes settings where pgmoat has to
 * look harder: inside a DO block, through unnamed and named statements. */
#include <config.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

/* What a client's session looks like, and what it is for a client that set
 * nothing. */
#define STATE_SQL                                                                                  \
	"select current_setting('application_name') || '|' || "                                    \
	"current_setting('statement_timeout') || '|' || current_setting('search_path') || '|' "    \
	"|| current_user"
#define DEFAULTS "|0|\"$user\", public|app"
#define ROUNDS 5
#define INJ_APP "x'); drop table victim; --"
#define INJ_SCHEMA "we'ird; drop table victim; --"

/* --- checks that add up over many transactions --- */

struct tally {
	int n, bad;
};

static void expect(struct tally *t, const char *got, const char *want, const char *who)
{
	t->n++;
	if (got && strcmp(got, want) == 0)
		return;
	if (t->bad++ == 0)
		diag("%s: got '%s', want '%s'", who, got ? got : "(error)", want);
}

static void expect_sql(struct tally *t, PGconn *c, const char *sql, const char *want,
                       const char *who)
{
	char *v = h_value(c, sql);
	expect(t, v, want, who);
	free(v);
}

static void expect_state(struct tally *t, PGconn *c, const char *sql, const char *want,
                         const char *who)
{
	char *st = h_error_state(c, sql);
	expect(t, st, want, who);
	free(st);
}

static const char *param(PGconn *c, const char *name)
{
	const char *v = PQparameterStatus(c, name);
	return v ? v : "(none)";
}

/* One transaction of the observer: the defaults, in SQL and in what libpq
 * was told. */
static void observe(struct tally *t, PGconn *b)
{
	expect_sql(t, b, STATE_SQL, DEFAULTS, "B");
	expect(t, param(b, "application_name"), "", "B: ParameterStatus application_name");
	expect(t, param(b, "client_encoding"), "UTF8", "B: ParameterStatus client_encoding");
}

/* The same inside BEGIN ... COMMIT. */
static void expect_txn(struct tally *t, PGconn *c, const char *sql, const char *want,
                       const char *who)
{
	if (!h_exec(c, "begin")) {
		expect(t, NULL, want, who);
		return;
	}
	expect_sql(t, c, sql, want, who);
	if (!h_exec(c, "commit"))
		expect(t, NULL, want, who);
}

static void check_value(PGconn *c, const char *sql, const char *want, const char *what)
{
	char *v = h_value(c, sql);
	is_str(v, want, "%s", what);
	free(v);
}

static void check_state(PGconn *c, const char *sql, const char *want, const char *what)
{
	char *st = h_error_state(c, sql);
	is_str(st, want, "%s", what);
	free(st);
}

static PGconn *connect_db(struct h_moat *m, const char *db, const char *extra)
{
	char *ci = h_moat_conninfo(m, "app", db, NULL);
	char *full = h_strdupf("%s %s", ci, extra ? extra : "");
	PGconn *c = h_connect(full);
	free(ci);
	free(full);
	return c;
}

/* --- SET application_name / client_encoding, names given at connect --- */

static void parameters(struct h_moat *m, PGconn *b)
{
	PGconn *a = connect_db(m, "app1", NULL);
	ok(h_connected(a) && h_connected(b), "A and B connected to a pool of one server");
	int pa = h_backend_pid(a), pb = h_backend_pid(b);
	ok(pa != 0 && pa == pb, "they share it (backend %d, %d)", pa, pb);
	ok(strcmp(param(b, "client_encoding"), "UTF8") == 0 &&
	           strcmp(param(b, "application_name"), "") == 0,
	   "B starts with client_encoding UTF8 and no application_name");

	ok(h_exec(a, "SET application_name = 'client_a'") &&
	           h_exec(a, "SET client_encoding = 'LATIN1'"),
	   "A: SET application_name and client_encoding");
	struct tally ta = {0}, tb = {0}, same = {0};
	for (int i = 0; i < ROUNDS; i++) {
		observe(&tb, b);
		expect_sql(&tb, b, "show application_name", "", "B: SHOW application_name");
		expect_sql(&tb, b, "show client_encoding", "UTF8", "B: SHOW client_encoding");
		expect_sql(&ta, a, "show application_name", "client_a", "A: SHOW application_name");
		expect_sql(&ta, a, "show client_encoding", "LATIN1", "A: SHOW client_encoding");
		expect(&ta, param(a, "application_name"), "client_a",
		       "A: ParameterStatus application_name");
		expect(&ta, param(a, "client_encoding"), "LATIN1",
		       "A: ParameterStatus client_encoding");
		char *w = h_strdupf("%d", pa);
		expect_sql(&same, i % 2 ? a : b, "select pg_backend_pid()", w, "shared backend");
		free(w);
	}
	ok(ta.bad == 0, "A: SHOW and PQparameterStatus keep client_a/LATIN1 (%d checks)", ta.n);
	ok(tb.bad == 0, "B: SHOW and PQparameterStatus never show them (%d checks)", tb.n);
	ok(same.bad == 0, "on the one server they took turns on");

	/* A new client is welcomed with the pool's values, not A's. */
	PGconn *c = connect_db(m, "app1", NULL);
	ok(h_connected(c) && strcmp(param(c, "application_name"), "") == 0 &&
	           strcmp(param(c, "client_encoding"), "UTF8") == 0,
	   "a client logging in afterwards is told application_name '' and UTF8 (got '%s', '%s')",
	   param(c, "application_name"), param(c, "client_encoding"));
	PQfinish(c);

	/* application_name given at connect. */
	PGconn *d = connect_db(m, "app1", "application_name=conn_d");
	PGconn *e = connect_db(m, "app1", "application_name=conn_e");
	ok(h_connected(d) && h_connected(e) &&
	           strcmp(param(d, "application_name"), "conn_d") == 0 &&
	           strcmp(param(e, "application_name"), "conn_e") == 0,
	   "D and E connect with application_name conn_d, conn_e and are told so");
	struct tally td = {0}, te = {0};
	tb = (struct tally){0};
	for (int i = 0; i < ROUNDS; i++) {
		expect_sql(&td, d, "show application_name", "conn_d", "D");
		observe(&tb, b);
		expect_txn(&te, e, "select current_setting('application_name')", "conn_e", "E");
		expect_sql(&ta, a, "show application_name", "client_a", "A");
		expect(&td, param(d, "application_name"), "conn_d", "D: ParameterStatus");
		expect(&te, param(e, "application_name"), "conn_e", "E: ParameterStatus");
	}
	ok(td.bad == 0 && te.bad == 0, "D and E keep their own across transactions (%d checks)",
	   td.n + te.n);
	ok(tb.bad == 0 && ta.bad == 0, "B still sees none of it, A still its own");
	PQfinish(a);
	PQfinish(d);
	PQfinish(e);
}

/* --- the crowd: a client's settings over 50 transactions among 20 others --- */

#define N_OTHERS 20
#define A_TXNS 50
#define OTHER_MAX_TXNS 3000
#define CROWD_SQL                                                                                  \
	"select current_setting('search_path') || '|' || current_setting('statement_timeout') "    \
	"|| '|' || coalesce(to_regclass('only_a')::text, '-') || '|' || pg_backend_pid()"
#define CROWD_DEFAULTS "\"$user\", public|0|-"
#define CROWD_A "a|1s|only_a"

struct crowd {
	atomic_bool a_set, stop;
	double deadline;
};

struct other {
	pthread_t th;
	struct crowd *crowd;
	char *conninfo;
	atomic_bool failed;
	atomic_int txns, txns_after;
	int bad;
	char note[256]; /* the first error or wrong value */
	int pids[8], n_pids;
};

static void note_pid(int *pids, int *n, int cap, int pid)
{
	for (int i = 0; i < *n; i++)
		if (pids[i] == pid)
			return;
	if (*n < cap)
		pids[(*n)++] = pid;
}

/* Runs CROWD_SQL in a transaction of kind `kind` (simple, explicit block,
 * extended protocol); the state part into `got`, the backend pid into *pid.
 * False, with the error in `got`, if it failed. */
static bool crowd_txn(PGconn *c, int kind, char *got, size_t gotlen, int *pid)
{
	PGresult *r = NULL;
	bool ok = false;
	const char *why = "";
	*pid = 0;
	switch (kind % 3) {
	case 0:
		r = PQexec(c, CROWD_SQL);
		break;
	case 1: {
		PGresult *q = PQexec(c, "begin");
		ok = PQresultStatus(q) == PGRES_COMMAND_OK;
		PQclear(q);
		if (!ok) {
			why = "begin failed";
			break;
		}
		r = PQexec(c, CROWD_SQL);
		q = PQexec(c, "commit");
		if (PQresultStatus(q) != PGRES_COMMAND_OK)
			why = "commit failed";
		PQclear(q);
		break;
	}
	default:
		r = PQexecParams(c, CROWD_SQL, 0, NULL, NULL, NULL, NULL, 0);
		break;
	}
	ok = false;
	if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !*why) {
		const char *v = PQgetvalue(r, 0, 0);
		const char *bar = strrchr(v, '|');
		if (bar) {
			snprintf(got, gotlen, "%.*s", (int)(bar - v), v);
			*pid = atoi(bar + 1);
			ok = true;
		}
	}
	if (!ok)
		snprintf(got, gotlen, "%s%s", *why ? why : "",
		         r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	PQclear(r);
	return ok;
}

/* A thread: no TAP calls here, only counts and a note for the main thread. */
static void *other_main(void *arg)
{
	struct other *o = arg;
	PGconn *c = PQconnectdb(o->conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(o->note, sizeof o->note, "connect: %s", PQerrorMessage(c));
		PQfinish(c);
		atomic_store(&o->failed, true);
		return NULL;
	}
	for (int i = 0;
	     i < OTHER_MAX_TXNS && !atomic_load(&o->crowd->stop) && h_now() < o->crowd->deadline;
	     i++) {
		bool after = atomic_load(&o->crowd->a_set);
		char got[256];
		int pid;
		if (!crowd_txn(c, i, got, sizeof got, &pid)) {
			snprintf(o->note, sizeof o->note, "transaction %d failed: %.200s", i, got);
			atomic_store(&o->failed, true);
			break;
		}
		note_pid(o->pids, &o->n_pids, 8, pid);
		if (strcmp(got, CROWD_DEFAULTS) != 0 && o->bad++ == 0)
			snprintf(o->note, sizeof o->note, "transaction %d saw '%.200s'", i, got);
		atomic_fetch_add(&o->txns, 1);
		if (after)
			atomic_fetch_add(&o->txns_after, 1);
	}
	PQfinish(c);
	return NULL;
}

struct crowd_wait {
	struct other *o;
	int min_txns;
	bool after;
};

static bool crowd_progress(void *arg)
{
	struct crowd_wait *w = arg;
	for (int i = 0; i < N_OTHERS; i++) {
		struct other *o = &w->o[i];
		if (atomic_load(&o->failed))
			continue;
		int n = w->after ? atomic_load(&o->txns_after) : atomic_load(&o->txns);
		if (n < w->min_txns)
			return false;
	}
	return true;
}

static void crowd(struct h_moat *m)
{
	static struct other others[N_OTHERS];
	struct crowd cr = {.deadline = h_now() + 150};
	atomic_init(&cr.a_set, false);
	atomic_init(&cr.stop, false);
	char *ci = h_moat_conninfo(m, "app", "app2", NULL);
	int started = 0;
	for (int i = 0; i < N_OTHERS; i++) {
		struct other *o = &others[i];
		o->crowd = &cr;
		o->conninfo = ci;
		atomic_init(&o->failed, false);
		atomic_init(&o->txns, 0);
		atomic_init(&o->txns_after, 0);
		if (pthread_create(&o->th, NULL, other_main, o) != 0)
			break;
		started++;
	}
	PGconn *a = connect_db(m, "app2", NULL);
	struct crowd_wait w1 = {.o = others, .min_txns = 1};
	bool running =
	        started == N_OTHERS && h_connected(a) && h_wait_until(crowd_progress, &w1, 60);
	int n_failed = 0;
	for (int i = 0; i < started; i++)
		if (atomic_load(&others[i].failed)) {
			if (n_failed++ == 0)
				diag("client %d: %s", i, others[i].note);
		}
	ok(running && n_failed == 0, "A and %d other clients connected to a pool of 2, all running",
	   started);

	ok(h_exec(a, "SET search_path = a") && h_exec(a, "SET statement_timeout = '1s'"),
	   "A: SET search_path = a, SET statement_timeout = '1s'");
	atomic_store(&cr.a_set, true);
	struct tally ta = {0};
	int a_pids[8], n_a_pids = 0;
	for (int i = 0; i < A_TXNS; i++) {
		char got[256];
		int pid;
		if (!crowd_txn(a, i, got, sizeof got, &pid)) {
			expect(&ta, NULL, CROWD_A, got);
			continue;
		}
		note_pid(a_pids, &n_a_pids, 8, pid);
		expect(&ta, got, CROWD_A, "A");
	}
	ok(ta.bad == 0 && ta.n == A_TXNS,
	   "A: %d transactions (simple, BEGIN/COMMIT, extended) all had search_path a, "
	   "statement_timeout 1s and a.only_a",
	   ta.n);
	check_state(a, "select pg_sleep(10)", "57014",
	            "A: its statement_timeout cancels pg_sleep(10)");
	check_value(a, "select count(*) from only_a", "3", "A: and it still reads a.only_a");

	/* The others go on for a while after A's last transaction. */
	struct crowd_wait w2 = {.o = others, .min_txns = 3, .after = true};
	bool after = h_wait_until(crowd_progress, &w2, 120);
	atomic_store(&cr.stop, true);
	int total = 0, total_after = 0, min_after = OTHER_MAX_TXNS, bad = 0;
	int all_pids[8], n_all = 0;
	n_failed = 0;
	for (int i = 0; i < started; i++) {
		struct other *o = &others[i];
		pthread_join(o->th, NULL);
		total += atomic_load(&o->txns);
		int na = atomic_load(&o->txns_after);
		total_after += na;
		min_after = na < min_after ? na : min_after;
		bad += o->bad;
		if (atomic_load(&o->failed) || o->bad)
			diag("client %d: %s", i, o->note);
		n_failed += atomic_load(&o->failed) ? 1 : 0;
		for (int k = 0; k < o->n_pids; k++)
			note_pid(all_pids, &n_all, 8, o->pids[k]);
	}
	free(ci);
	ok(bad == 0 && n_failed == 0,
	   "the others saw the defaults in every one of their %d transactions (%d after A's SET)",
	   total, total_after);
	ok(after && min_after >= 3, "each of them ran transactions after A's SET (at least %d)",
	   min_after);
	bool shared = false;
	for (int i = 0; i < n_a_pids; i++)
		for (int k = 0; k < n_all; k++)
			shared = shared || a_pids[i] == all_pids[k];
	ok(shared && n_all <= 2 && n_a_pids <= 2,
	   "A took turns with them on the pool's servers (%d backends, A used %d)", n_all,
	   n_a_pids);
	PQfinish(a);
}

/* --- set_config, RESET, RESET ALL, transactions, SET LOCAL, SET ROLE --- */

static void set_config_empty(struct h_moat *m, PGconn *b)
{
	PGconn *p = connect_db(m, "app1", NULL);
	check_value(p, "select set_config('search_path', '', false)", "",
	            "P: select set_config('search_path', '', false), as pg_dump does");
	char *mine = h_value(p, "select current_setting('search_path')");
	struct tally tp = {0}, tb = {0};
	for (int i = 0; i < ROUNDS; i++) {
		observe(&tb, b);
		expect_state(&tb, b, "select count(*) from victim", "", "B: victim");
		expect_sql(&tp, p, "select current_setting('search_path')", mine ? mine : "?", "P");
		expect_state(&tp, p, "select count(*) from victim", "42P01", "P: victim");
		expect_sql(&tp, p, "select count(*) from public.victim", "1", "P: public.victim");
	}
	ok(mine && tp.bad == 0,
	   "P: keeps the empty search_path ('%s'): unqualified names are not found (%d checks)",
	   mine ? mine : "?", tp.n);
	ok(tb.bad == 0, "B: has its default search_path and finds victim");
	free(mine);
	PQfinish(p);
}

static void rounds(PGconn *b, PGconn *e, const char *want, struct tally *tb, struct tally *te)
{
	for (int i = 0; i < ROUNDS; i++) {
		observe(tb, b);
		expect_sql(te, e, STATE_SQL, want, "E");
	}
}

static void resets(struct h_moat *m, PGconn *b)
{
	PGconn *e = connect_db(m, "app1", NULL);
	struct tally tb = {0}, te = {0};
	ok(h_exec(e, "SET application_name = 'e1'") && h_exec(e, "SET statement_timeout = '7s'") &&
	           h_exec(e, "SET search_path = a, public"),
	   "E: SET application_name, statement_timeout, search_path");
	rounds(b, e, "e1|7s|a, public|app", &tb, &te);
	ok(te.bad == 0, "E: all three kept");

	te = (struct tally){0};
	ok(h_exec(e, "RESET statement_timeout"), "E: RESET statement_timeout");
	rounds(b, e, "e1|0|a, public|app", &tb, &te);
	ok(te.bad == 0, "E: statement_timeout back to 0, the others kept");

	te = (struct tally){0};
	ok(h_exec(e, "SET statement_timeout = '8s'") && h_exec(e, "RESET ALL"),
	   "E: SET statement_timeout again, then RESET ALL");
	rounds(b, e, DEFAULTS, &tb, &te);
	expect(&te, param(e, "application_name"), "", "E: ParameterStatus application_name");
	ok(te.bad == 0, "E: all back to the defaults, and told application_name ''");

	te = (struct tally){0};
	ok(h_exec(e, "BEGIN") && h_exec(e, "SET application_name = 'rolled_back'") &&
	           h_exec(e, "SET statement_timeout = '3s'") && h_exec(e, "ROLLBACK"),
	   "E: SET inside a transaction, then ROLLBACK");
	rounds(b, e, DEFAULTS, &tb, &te);
	expect(&te, param(e, "application_name"), "", "E: ParameterStatus application_name");
	ok(te.bad == 0, "E: the rolled back SETs are not kept");

	te = (struct tally){0};
	ok(h_exec(e, "BEGIN") && h_exec(e, "SET statement_timeout = '5s'") &&
	           h_exec(e, "select 1") && h_exec(e, "COMMIT"),
	   "E: SET inside a transaction, then COMMIT");
	rounds(b, e, "|5s|\"$user\", public|app", &tb, &te);
	ok(te.bad == 0, "E: the committed SET is kept");

	te = (struct tally){0};
	ok(h_exec(e, "BEGIN") && h_exec(e, "SET LOCAL statement_timeout = '3s'") &&
	           h_exec(e, "SET LOCAL search_path = a"),
	   "E: SET LOCAL inside a transaction");
	expect_sql(&te, e, STATE_SQL, "|3s|a|app", "E in the transaction");
	ok(te.bad == 0 && h_exec(e, "COMMIT"), "E: it applies until COMMIT");
	te = (struct tally){0};
	rounds(b, e, "|5s|\"$user\", public|app", &tb, &te);
	ok(te.bad == 0, "E: SET LOCAL is not kept after it, the earlier SET is");

	te = (struct tally){0};
	ok(h_exec(e, "BEGIN") &&
	           h_exec(e,
	                  "select set_config('statement_timeout', '4s', true), "
	                  "set_config('application_name', 'local_e', true)") &&
	           h_exec(e, "COMMIT"),
	   "E: set_config(..., true) inside a transaction");
	rounds(b, e, "|5s|\"$user\", public|app", &tb, &te);
	ok(te.bad == 0, "E: set_config(..., true) is not kept either");
	ok(tb.bad == 0, "B: saw the defaults between every one of E's transactions (%d checks)",
	   tb.n);
	PQfinish(e);
}

static void set_role(struct h_moat *m, PGconn *b)
{
	PGconn *f = connect_db(m, "app1", NULL);
	ok(h_exec(f, "SET ROLE r2"), "F: SET ROLE r2");
	struct tally tf = {0}, tb = {0};
	for (int i = 0; i < ROUNDS; i++) {
		expect_sql(&tf, f, "select current_user || '/' || session_user", "r2/app", "F");
		observe(&tb, b);
		expect_sql(&tb, b, "select current_user || '/' || session_user", "app/app", "B");
	}
	ok(tf.bad == 0, "F: current_user stays r2 across transactions");
	ok(tb.bad == 0, "B: current_user is app every time");
	tf = (struct tally){0};
	ok(h_exec(f, "RESET ROLE"), "F: RESET ROLE");
	for (int i = 0; i < ROUNDS; i++) {
		observe(&tb, b);
		expect_sql(&tf, f, "select current_user", "app", "F");
	}
	ok(tf.bad == 0 && tb.bad == 0, "F: back to app, and B still app");
	PQfinish(f);
}

/* --- RESET of what was given at connect --- */

#define ENC_APP_SQL                                                                                \
	"select current_setting('application_name') || ' ' || current_setting('client_encoding')"

/* Connects with `conninfo`, runs `reset`, then `rounds` more transactions
 * with one of B's before each; returns application_name and client_encoding
 * as the last one saw them and as libpq was last told. */
static char *after_reset(const char *conninfo, const char *reset, PGconn *b, int rounds,
                         struct tally *tb)
{
	PGconn *c = h_connect(conninfo);
	char *v = NULL;
	if (h_connected(c) && h_exec(c, reset)) {
		for (int i = 0; i <= rounds; i++) {
			free(v);
			char *sql = h_value(c, ENC_APP_SQL);
			v = h_strdupf("%s / %s %s", sql ? sql : "(error)",
			              param(c, "application_name"), param(c, "client_encoding"));
			free(sql);
			if (b && i < rounds)
				observe(tb, b);
		}
	}
	PQfinish(c);
	return v;
}

/* On PostgreSQL, RESET goes back to the value the connection was opened
 * with (the startup packet sets the reset value); a client must find the
 * same through pgmoat. */
static void startup_reset(struct h_moat *m, struct h_pg *pg, PGconn *b)
{
	static const char *const resets[] = {"RESET application_name", "RESET client_encoding",
	                                     "RESET ALL", "DISCARD ALL"};
	char *moat_ci = h_moat_conninfo(m, "app", "app1", NULL);
	char *pg_ci =
	        h_strdupf("host=127.0.0.1 port=%d dbname=app user=app sslmode=disable", pg->port);
	struct tally tb = {0};
	for (size_t i = 0; i < sizeof resets / sizeof resets[0]; i++) {
		const char *extra = "application_name=conn_q client_encoding=LATIN1";
		char *ci_direct = h_strdupf("%s %s", pg_ci, extra);
		char *ci_moat = h_strdupf("%s %s", moat_ci, extra);
		char *direct = after_reset(ci_direct, resets[i], NULL, 0, NULL);
		char *moat = after_reset(ci_moat, resets[i], b, 3, &tb);
		ok(direct && moat && strcmp(direct, moat) == 0,
		   "connected with application_name conn_q, client_encoding LATIN1, then %s: "
		   "'%s' through pgmoat, '%s' on PostgreSQL directly",
		   resets[i], moat ? moat : "(error)", direct ? direct : "(error)");
		free(direct);
		free(moat);
		free(ci_direct);
		free(ci_moat);
	}
	ok(tb.bad == 0, "B: saw the defaults in between (%d checks)", tb.n);
	free(moat_ci);
	free(pg_ci);
}

/* --- values with quotes and semicolons --- */

static size_t file_len(const char *path)
{
	size_t n = 0;
	char *t = h_read_file(path, &n);
	free(t);
	return t ? n : 0;
}

static void injection(struct h_moat *m, struct h_pg *pg, PGconn *b)
{
	size_t log_from = file_len(pg->logpath);
	PGconn *g = connect_db(m, "app1", NULL);
	ok(h_exec(g, "SET application_name = 'x''); drop table victim; --'") &&
	           h_exec(g, "SET search_path = \"we'ird; drop table victim; --\", public"),
	   "G: SET application_name and search_path to values with quotes and semicolons");
	struct tally tg = {0}, tb = {0};
	for (int i = 0; i < ROUNDS; i++) {
		observe(&tb, b);
		expect_state(&tb, b, "select count(*) from inj_t", "42P01", "B: inj_t");
		expect_sql(&tg, g, "select current_setting('application_name')", INJ_APP, "G");
		expect(&tg, param(g, "application_name"), INJ_APP, "G: ParameterStatus");
		expect_sql(&tg, g, "select current_setting('search_path')",
		           "\"" INJ_SCHEMA "\", public", "G: search_path");
		expect_sql(&tg, g, "select count(*) from inj_t", "1", "G: inj_t");
	}
	ok(tg.bad == 0, "G: both kept literally across transactions, inj_t found in the schema");
	ok(tb.bad == 0, "B: sees none of it");
	PQfinish(g);
	PGconn *s = h_pg_connect(pg, "postgres", "app");
	check_value(s, "select count(*) || ':' || coalesce(string_agg(what, ','), '') from drops",
	            "0:", "nothing was dropped (sql_drop event trigger)");
	check_value(s, "select count(*) from public.victim", "1",
	            "table victim still exists with its row");
	PQfinish(s);
	char *log = h_read_file(pg->logpath, NULL);
	const char *since = log && strlen(log) >= log_from ? log + log_from : "";
	ok(log && strstr(since, "syntax error") == NULL && strstr(since, "drop table") == NULL,
	   "PostgreSQL logged no syntax error and no statement with the values");
	if (log && (strstr(since, "syntax error") || strstr(since, "drop table")))
		h_diag_text("  pg| ", since);
	free(log);
}

/* --- track_extra_parameters --- */

static int raw_login(struct h_moat *m, const char *const params[], struct wire_login *l)
{
	memset(l, 0, sizeof *l);
	l->auth_code = -1;
	l->negotiated_minor = -1;
	int fd = wire_connect(m->port);
	if (fd < 0)
		return -1;
	if (!wire_send_startup(fd, WIRE_PROTO_3_0, params) ||
	    !wire_finish_login(fd, "app", NULL, l)) {
		if (!l->sqlstate[0])
			diag("raw login: %s", l->message);
	}
	return fd;
}

static void extra_params(struct h_moat *m, struct h_moat *m2, PGconn *b)
{
	static const char *const params[] = {"user",     "app", "database", "app1",
	                                     "work_mem", "8MB", NULL};
	struct wire_login l;
	int fd = raw_login(m, params, &l);
	ok(fd >= 0 && l.ok,
	   "track_extra_parameters = work_mem: a raw client logs in with work_mem=8MB");
	struct tally tw = {0}, tb = {0};
	for (int i = 0; i < ROUNDS && fd >= 0 && l.ok; i++) {
		struct wire_result r;
		if (!wire_query(fd, i % 2 ? "begin; show work_mem; commit" : "show work_mem", 20,
		                &r))
			expect(&tw, NULL, "8MB", r.message);
		else
			expect(&tw, r.value, "8MB", "raw client");
		observe(&tb, b);
		expect_sql(&tb, b, "show work_mem", "4MB", "B: work_mem");
	}
	ok(tw.n == ROUNDS && tw.bad == 0, "SHOW work_mem says 8MB in each of its transactions");
	ok(tb.bad == 0, "B: work_mem stays 4MB");
	if (fd >= 0)
		close(fd);

	fd = raw_login(m2, params, &l);
	ok(fd >= 0 && !l.ok && strstr(l.message, "work_mem") != NULL,
	   "without the setting the startup parameter is refused: %s '%s'", l.sqlstate, l.message);
	if (fd >= 0)
		close(fd);
}

/* --- transaction_mode_guard --- */

static const struct guarded {
	const char *sql, *name;
} guarded[] = {
        {"select pg_advisory_lock(1)", "pg_advisory_lock"},
        {"select pg_try_advisory_lock(2)", "pg_try_advisory_lock"},
        {"select pg_catalog.pg_advisory_lock_shared(3)", "pg_advisory_lock_shared"},
        {"LISTEN x", "LISTEN"},
        {"PREPARE p AS select 1", "PREPARE"},
        {"DECLARE c CURSOR WITH HOLD FOR select 1", "WITH HOLD"},
        {"CREATE TEMP TABLE t (x int)", "CREATE TEMP TABLE"},
};

/* Runs `sql` (extended protocol if `ext`); the SQLSTATE and primary
 * message of its error into `state` and `msg`. */
static void run_guarded(PGconn *c, const char *sql, bool ext, char *state, char *msg, size_t n)
{
	PGresult *r = ext ? PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) : PQexec(c, sql);
	const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *mp = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	snprintf(state, 6, "%s", st ? st : "");
	snprintf(msg, n, "%s", mp ? mp : "");
	PQclear(r);
}

static void guard_error(struct h_moat *m, struct h_pg *pg)
{
	PGconn *c = connect_db(m, "app1", NULL);
	char state[6], msg[512];
	for (int ext = 0; ext < 2; ext++) {
		for (size_t i = 0; i < sizeof guarded / sizeof guarded[0]; i++) {
			const struct guarded *g = &guarded[i];
			run_guarded(c, g->sql, ext, state, msg, sizeof msg);
			ok(strcmp(state, "0A000") == 0 && strstr(msg, g->name) &&
			           strstr(msg, "transaction_mode_guard"),
			   "guard error, %s: %s -> %s '%s'", ext ? "extended" : "simple", g->sql,
			   state, msg);
		}
		const char *p[1] = {"4"};
		PGresult *r = PQexecParams(c, "select pg_advisory_lock($1::bigint)", 1, NULL, p,
		                           NULL, NULL, 0);
		is_str(h_result_state(r), "0A000",
		       "guard error, extended: pg_advisory_lock($1) with a parameter");
		PQclear(r);
	}

	/* Inside a transaction: it is aborted like by any error. */
	for (int ext = 0; ext < 2; ext++) {
		const char *how = ext ? "extended" : "simple";
		ok(h_exec(c, "begin"), "%s: BEGIN", how);
		run_guarded(c, "select pg_advisory_lock(5)", ext, state, msg, sizeof msg);
		is_str(state, "0A000", "%s: pg_advisory_lock inside it -> 0A000", how);
		run_guarded(c, "select 1", ext, state, msg, sizeof msg);
		ok(strcmp(state, "25P02") == 0 && PQtransactionStatus(c) == PQTRANS_INERROR,
		   "%s: the next command gets 25P02 (got '%s')", how, state);
		run_guarded(c, "select 2", ext, state, msg, sizeof msg);
		is_str(state, "25P02", "%s: and the one after it too", how);
		ok(h_exec(c, "rollback") && PQtransactionStatus(c) == PQTRANS_IDLE, "%s: ROLLBACK",
		   how);
	}
	check_value(c, "select 'usable'", "usable", "the connection is usable after all that");

	/* A named statement is refused at its Parse and never exists. */
	PGresult *r = PQprepare(c, "lk", "select pg_advisory_lock($1::bigint)", 1, NULL);
	is_str(h_result_state(r), "0A000",
	       "PQprepare of a named pg_advisory_lock statement -> 0A000");
	PQclear(r);
	const char *p6[1] = {"6"};
	r = PQexecPrepared(c, "lk", 1, p6, NULL, NULL, 0);
	is_str(h_result_state(r), "26000", "and executing it finds no such statement (26000)");
	PQclear(r);

	/* The same words where they are not statements, and a cursor without
	 * HOLD, are let through. */
	check_value(c,
	            "select 'pg_advisory_lock(1); LISTEN x' /* PREPARE p AS select 1 */ "
	            "-- CREATE TEMP TABLE t (x int)\n"
	            "|| $$DECLARE c CURSOR WITH HOLD$$",
	            "pg_advisory_lock(1); LISTEN xDECLARE c CURSOR WITH HOLD",
	            "the guarded words inside strings and comments do not trip the guard");
	ok(h_exec(c, "begin") && h_exec(c, "DECLARE c CURSOR FOR select 7") &&
	           h_exec(c, "FETCH c") && h_exec(c, "commit"),
	   "DECLARE c CURSOR without HOLD inside a transaction runs");

	ok(h_exec(c, "begin") && h_exec(c, "select pg_advisory_xact_lock(1)"),
	   "pg_advisory_xact_lock(1) inside a transaction runs");
	char *v = h_pg_value(pg, "select count(*) from pg_locks where locktype = 'advisory'");
	is_str(v, "1", "pg_locks has it while the transaction is open");
	free(v);
	ok(h_exec(c, "commit"), "COMMIT");
	ok(h_exec(c, "begin") && h_exec(c, "CREATE TEMP TABLE t2 (x int) ON COMMIT DROP") &&
	           h_exec(c, "insert into t2 values (1), (2)"),
	   "CREATE TEMP TABLE t2 (x int) ON COMMIT DROP inside a transaction runs");
	check_value(c, "select count(*) from t2", "2", "t2 is there until COMMIT");
	ok(h_exec(c, "commit"), "COMMIT");
	v = h_pg_value(pg, "select count(*) from pg_locks where locktype = 'advisory'");
	is_str(v, "0", "no advisory lock is held on any backend");
	free(v);
	PGconn *s = h_pg_connect(pg, "postgres", "app");
	check_value(s,
	            "select count(*) from pg_class where relpersistence = 't' and relname in "
	            "('t', 't2')",
	            "0", "no temporary table t or t2 exists in any session");
	PQfinish(s);
	PQfinish(c);
}

static void guard_warn_off(struct h_moat *m2, struct h_moat *m3)
{
	PGconn *c = connect_db(m2, "app1", NULL);
	h_moat_log_mark(m2);
	ok(h_exec(c, "LISTEN x"), "guard warn: LISTEN x runs");
	ok(h_moat_log_wait(m2, "transaction_mode_guard = warn", 20) &&
	           h_moat_log_has(m2, "LISTEN is not allowed") && h_moat_log_has(m2, "WARNING"),
	   "and pgmoat logs a warning naming LISTEN");
	check_value(c, "select 'after'", "after", "the connection goes on");
	PQfinish(c);

	c = connect_db(m3, "app1", NULL);
	h_moat_log_mark(m3);
	ok(h_exec(c, "LISTEN x"), "guard off: LISTEN x runs");
	check_value(c, "select 'after'", "after", "the connection goes on");
	ok(!h_moat_log_has(m3, "transaction_mode_guard") && !h_moat_log_has(m3, "LISTEN"),
	   "and pgmoat logs nothing about it");
	PQfinish(c);
}

/* --- session changes pgmoat has to notice in less obvious places --- */

static void hidden_changes(struct h_moat *m, PGconn *b)
{
	PGconn *x = connect_db(m, "app1", NULL);
	struct tally tx = {0}, tb = {0};
	ok(h_exec(x, "DO $$BEGIN PERFORM set_config('search_path', 'a', false); END$$"),
	   "X: set_config('search_path', 'a', false) inside a DO block");
	for (int i = 0; i < ROUNDS; i++) {
		expect_sql(&tx, x, "select current_setting('search_path')", "a", "X");
		observe(&tb, b);
	}
	ok(tx.bad == 0, "X: keeps search_path a");
	ok(tb.bad == 0, "B: does not get it");
	ok(h_exec(x, "RESET search_path"), "X: RESET search_path");

	/* Unnamed statements: the set_config is in every Parse. */
	const char *pa[1] = {"a"};
	tx = (struct tally){0};
	tb = (struct tally){0};
	PGresult *u = PQexecParams(x, "select set_config('search_path', $1, false)", 1, NULL, pa,
	                           NULL, NULL, 0);
	ok(PQresultStatus(u) == PGRES_TUPLES_OK,
	   "X: select set_config('search_path', $1, false) with $1 = 'a' (extended protocol)");
	PQclear(u);
	for (int i = 0; i < ROUNDS; i++) {
		observe(&tb, b);
		expect_sql(&tx, x, "select current_setting('search_path')", "a", "X");
	}
	ok(tx.bad == 0 && tb.bad == 0, "X: keeps search_path a, B does not get it");
	ok(h_exec(x, "RESET search_path"), "X: RESET search_path");

	/* A protocol-level statement prepared once and executed later: the
	 * transactions that change the setting send only Bind and Execute. */
	PGresult *r = PQprepare(x, "sc", "select set_config('search_path', $1, false)", 1, NULL);
	ok(PQresultStatus(r) == PGRES_COMMAND_OK,
	   "X: prepares select set_config('search_path', $1, false)");
	PQclear(r);
	observe(&tb, b);
	const char *p[1] = {"a"};
	r = PQexecPrepared(x, "sc", 1, p, NULL, NULL, 0);
	ok(PQresultStatus(r) == PGRES_TUPLES_OK, "X: executes it with 'a' in a later transaction");
	PQclear(r);
	tx = (struct tally){0};
	tb = (struct tally){0};
	for (int i = 0; i < ROUNDS; i++) {
		observe(&tb, b);
		expect_sql(&tx, x, "select current_setting('search_path')", "a", "X");
	}
	ok(tx.bad == 0, "X: keeps search_path a");
	ok(tb.bad == 0, "B: does not get it");
	PQfinish(x);
}

int main(void)
{
	h_init("t_txn_state", 240);
	/* The defaults the observer expects are libpq's own. */
	unsetenv("PGAPPNAME");
	unsetenv("PGCLIENTENCODING");
	unsetenv("PGOPTIONS");
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	h_pg_sql(pg, "create role r2 nologin");
	h_pg_sql(pg, "grant r2 to app");
	PGconn *s = h_pg_connect(pg, "postgres", "app");
	if (!h_exec(s, "create schema a authorization app") ||
	    !h_exec(s,
	            "create table a.only_a (x int); insert into a.only_a values (1), (2), (3)") ||
	    !h_exec(s,
	            "create table public.victim (x int); insert into public.victim values (1)") ||
	    !h_exec(s, "grant all on public.victim to app") ||
	    !h_exec(s, "create schema \"" INJ_SCHEMA "\" authorization app") ||
	    !h_exec(s, "create table \"" INJ_SCHEMA "\".inj_t (x int)") ||
	    !h_exec(s, "insert into \"" INJ_SCHEMA "\".inj_t values (1)") ||
	    !h_exec(s, "grant all on all tables in schema a, \"" INJ_SCHEMA "\" to app") ||
	    !h_exec(s,
	            "create table public.drops (what text); grant insert on public.drops to "
	            "public") ||
	    !h_exec(s,
	            "create function public.note_drop() returns event_trigger language plpgsql as "
	            "$$BEGIN INSERT INTO public.drops SELECT object_identity FROM "
	            "pg_catalog.pg_event_trigger_dropped_objects(); END$$") ||
	    !h_exec(s,
	            "create event trigger note_drops on sql_drop execute function "
	            "public.note_drop()"))
		h_bail("set-up failed");
	PQfinish(s);

	const char *dbs = "[databases]\n"
	                  "app1 = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=1\n"
	                  "app2 = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=2\n"
	                  "\n"
	                  "[pgmoat]\n"
	                  "listen_addr = 127.0.0.1\n"
	                  "listen_port = @PORT@\n"
	                  "unix_socket_dir = @SOCKDIR@\n"
	                  "auth_type = trust\n"
	                  "auth_file = @AUTHFILE@\n"
	                  "workers = 2\n"
	                  "pool_mode = transaction\n"
	                  "query_wait_timeout = 90\n";
	struct h_moat *ms[3];
	const char *extra[3] = {"track_extra_parameters = work_mem\n",
	                        "transaction_mode_guard = warn\n",
	                        "transaction_mode_guard = off\n"};
	for (int i = 0; i < 3; i++) {
		ms[i] = h_moat_new(pg);
		char *ini = h_strdupf("%s%s", dbs, extra[i]);
		bool started = h_moat_write_userlist(ms[i], "\"app\" \"app\"\n") &&
		        h_moat_write_ini(ms[i], ini) && h_moat_start(ms[i], NULL);
		free(ini);
		if (!started)
			h_bail("pgmoat %d did not start", i);
	}

	tap_plan(116);
	PGconn *b = connect_db(ms[0], "app1", NULL);
	if (!h_connected(b))
		h_bail("observer did not connect");
	parameters(ms[0], b);
	crowd(ms[0]);
	set_config_empty(ms[0], b);
	resets(ms[0], b);
	startup_reset(ms[0], pg, b);
	set_role(ms[0], b);
	injection(ms[0], pg, b);
	extra_params(ms[0], ms[1], b);
	guard_error(ms[0], pg);
	guard_warn_off(ms[1], ms[2]);
	hidden_changes(ms[0], b);
	PQfinish(b);
	ok(h_moat_alive(ms[0]) && h_moat_alive(ms[1]) && h_moat_alive(ms[2]),
	   "all three pgmoat instances still running");
	return h_done();
}
