/* Transaction pooling: 100 clients share 5 servers, one transaction at a
 * time; servers are handed between workers; a failed transaction, a client
 * leaving mid-transaction and a backend killed mid-transaction leave nothing
 * behind; statement mode refuses transaction blocks with 0A000; COPY (simple
 * and extended protocol) and a Flush without Sync keep the server, and a
 * failed COPY gives it back once it is ready for another client; a client
 * logs in without a free server. */
#include <config.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/gate.h"
#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

/* --- a query on an open connection, collected without blocking --- */

#define Q_VALUES 8

struct q {
	bool done; /* every result arrived */
	int n_values;
	char values[Q_VALUES][64]; /* first column of the first row of each row set */
	char state[6]; /* SQLSTATE of the first error, "none" if it had none */
	char severity[16];
	char message[256];
	char status[32]; /* command status of the last result */
};

static void q_take(struct q *q, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0 && q->n_values < Q_VALUES)
		snprintf(q->values[q->n_values++], sizeof q->values[0], "%s", PQgetvalue(r, 0, 0));
	if ((st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) &&
	    !q->state[0]) {
		const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		snprintf(q->state, sizeof q->state, "%s", s ? s : "none");
		snprintf(q->severity, sizeof q->severity, "%s", sev ? sev : "");
		snprintf(q->message, sizeof q->message, "%s", msg ? msg : PQresultErrorMessage(r));
	}
	snprintf(q->status, sizeof q->status, "%s", PQcmdStatus(r));
}

static void q_send(PGconn *c, const char *sql, struct q *q)
{
	memset(q, 0, sizeof *q);
	if (!PQsendQuery(c, sql)) {
		q->done = true;
		snprintf(q->state, sizeof q->state, "none");
		snprintf(q->message, sizeof q->message, "%s", PQerrorMessage(c));
	}
}

/* Collects the results for up to `timeout` s: true once all arrived. */
static bool q_wait(PGconn *c, struct q *q, double timeout)
{
	double end = h_now() + timeout;
	while (!q->done) {
		PQconsumeInput(c); /* a lost connection shows in the results */
		while (!PQisBusy(c)) {
			PGresult *r = PQgetResult(c);
			if (!r) {
				q->done = true;
				break;
			}
			q_take(q, r);
			PQclear(r);
		}
		if (q->done)
			break;
		double left = end - h_now();
		if (left <= 0 || PQsocket(c) < 0)
			return false;
		struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
		poll(&p, 1, (int)(left * 1000) + 1);
	}
	return true;
}

/* Runs `sql` within `timeout`: true if it completed without an error. */
static bool q_run(PGconn *c, const char *sql, double timeout, struct q *q)
{
	q_send(c, sql, q);
	bool done = q_wait(c, q, timeout);
	if (!done)
		diag("'%s' did not complete within %.0f s", sql, timeout);
	else if (q->state[0])
		diag("'%s' failed: %s %s", sql, q->state, q->message);
	return done && !q->state[0];
}

/* The first value of `sql` (static buffer), "" if it failed or timed out. */
static const char *q_value(PGconn *c, const char *sql, double timeout)
{
	static struct q q;
	if (!q_run(c, sql, timeout, &q) || q.n_values == 0)
		return "";
	return q.values[0];
}

static int q_pid(PGconn *c)
{
	return atoi(q_value(c, "select pg_backend_pid()", 20));
}

static PGconn *connect_moat(const struct h_moat *m)
{
	return h_moat_connect(m, "app", "app", "app");
}

static bool app_count_is(struct h_pg *pg, const char *where, const char *want)
{
	char *v = h_pg_value(
	        pg, "select count(*) from pg_stat_activity where usename = 'app' and %s", where);
	bool same = v && strcmp(v, want) == 0;
	free(v);
	return same;
}

static bool no_idle_in_txn(void *arg)
{
	return app_count_is(arg, "state like 'idle in transaction%'", "0");
}

static bool no_app_backends(void *arg)
{
	return h_pg_count_backends(arg, "app") == 0;
}

struct pid_gone {
	struct h_pg *pg;
	int pid;
};

static bool pid_gone(void *arg)
{
	struct pid_gone *g = arg;
	char where[64];
	snprintf(where, sizeof where, "pid = %d", g->pid);
	return app_count_is(g->pg, where, "0");
}

/* --- 100 clients x 100 transactions through pool_size 5 --- */

#define LOAD_CLIENTS 100
#define LOAD_TXNS 100
#define LOAD_POOL 5

struct load_client {
	int id;
	const char *conninfo;
	struct h_gate *gate;
	pthread_t thread;
	bool connected;
	int committed, failed;
	char error[256];
};

static void load_note(struct load_client *lc, const char *what, PGconn *c, const PGresult *r)
{
	if (!lc->error[0])
		snprintf(lc->error, sizeof lc->error, "client %d, %s: %s", lc->id, what,
		         r ? PQresultErrorMessage(r) : PQerrorMessage(c));
}

static bool load_exec(struct load_client *lc, PGconn *c, const char *sql, const char *tuples)
{
	PGresult *r = PQexec(c, sql);
	bool good = PQresultStatus(r) == PGRES_COMMAND_OK &&
	        (!tuples || strcmp(PQcmdTuples(r), tuples) == 0);
	if (!good)
		load_note(lc, sql, c, r);
	PQclear(r);
	return good;
}

/* One client: log in, wait for the others, then run its transactions.
 * Nothing here prints: results go to `lc`. */
static void *load_thread(void *arg)
{
	struct load_client *lc = arg;
	PGconn *c = PQconnectdb(lc->conninfo);
	lc->connected = c && PQstatus(c) == CONNECTION_OK;
	if (!lc->connected)
		load_note(lc, "connect", c, NULL);
	h_gate_arrive(lc->gate, false);
	char update[96];
	snprintf(update, sizeof update, "update counters set n = n + 1 where id = %d", lc->id % 10);
	if (lc->connected && h_gate_wait_open(lc->gate)) {
		for (int i = 0; i < LOAD_TXNS && h_now() < lc->gate->deadline; i++) {
			bool good = load_exec(lc, c, "begin", NULL) &&
			        load_exec(lc, c, update, "1") && load_exec(lc, c, "commit", NULL);
			if (good) {
				lc->committed++;
				continue;
			}
			lc->failed++;
			if (PQstatus(c) != CONNECTION_OK)
				break;
			if (PQtransactionStatus(c) != PQTRANS_IDLE)
				PQclear(PQexec(c, "rollback"));
		}
	}
	PQfinish(c);
	h_gate_arrive(lc->gate, true);
	return NULL;
}

struct load_watch {
	struct h_pg *pg;
	struct h_gate *gate;
	int want_arrived;
	int max_backends, samples;
};

/* Samples the backend count; true once the threads are where we wait for. */
static bool load_progress(void *arg)
{
	struct load_watch *lw = arg;
	int n = h_pg_count_backends(lw->pg, "app");
	if (n > lw->max_backends)
		lw->max_backends = n;
	lw->samples++;
	bool there = lw->want_arrived ? h_gate_count(lw->gate, false) >= lw->want_arrived
	                              : h_gate_count(lw->gate, true) >= LOAD_CLIENTS;
	return there;
}

static void load(struct h_moat *m, struct h_pg *pg, PGconn *admin)
{
	static struct load_client lcs[LOAD_CLIENTS];
	struct h_gate gate;
	h_gate_init(&gate, 200);
	char *base = h_moat_conninfo(m, "app", "app", "app");
	char *ci = h_strdupf("%s connect_timeout=60", base);
	free(base);
	int started = 0;
	for (int i = 0; i < LOAD_CLIENTS; i++) {
		lcs[i] = (struct load_client){.id = i, .conninfo = ci, .gate = &gate};
		if (pthread_create(&lcs[i].thread, NULL, load_thread, &lcs[i]) != 0)
			break;
		started++;
	}
	if (started < LOAD_CLIENTS)
		h_bail("could only start %d client threads", started);

	struct load_watch lw = {.pg = pg, .gate = &gate, .want_arrived = LOAD_CLIENTS};
	bool arrived = h_wait_until(load_progress, &lw, 90);
	int connected = 0;
	for (int i = 0; i < LOAD_CLIENTS; i++)
		connected += lcs[i].connected;
	int at_login = h_pg_count_backends(pg, "app");
	ok(arrived && connected == LOAD_CLIENTS && at_login <= LOAD_POOL,
	   "%d of %d clients logged in at once; PostgreSQL has %d backends for them", connected,
	   LOAD_CLIENTS, at_login);

	double t0 = h_now();
	h_gate_open(&gate);
	lw.want_arrived = 0;
	if (!h_wait_until(load_progress, &lw, gate.deadline - h_now() + 30))
		h_bail("the client threads did not finish");
	for (int i = 0; i < LOAD_CLIENTS; i++)
		pthread_join(lcs[i].thread, NULL);
	diag("%d transactions in %.1f s", LOAD_CLIENTS * LOAD_TXNS, h_now() - t0);

	int committed = 0, failed = 0, shown = 0;
	for (int i = 0; i < LOAD_CLIENTS; i++) {
		committed += lcs[i].committed;
		failed += lcs[i].failed;
		if (lcs[i].error[0] && shown++ < 5)
			h_diag_text("  ", lcs[i].error);
	}
	ok(committed == LOAD_CLIENTS * LOAD_TXNS && failed == 0,
	   "%d transactions committed, %d failed", committed, failed);
	char *sum = h_value(admin, "select sum(n) from counters");
	is_str(sum, "10000", "the counters add up to exactly 10000");
	free(sum);
	char *even = h_value(admin, "select count(*) from counters where n = 1000");
	is_str(even, "10", "each of the 10 counters got its 1000 increments");
	free(even);
	ok(lw.max_backends >= 1 && lw.max_backends <= LOAD_POOL,
	   "PostgreSQL never had more than %d backends for app during the run (max %d, %d samples)",
	   LOAD_POOL, lw.max_backends, lw.samples);
	int at_end = h_pg_count_backends(pg, "app");
	ok(at_end >= 1 && at_end <= LOAD_POOL, "nor at the end (%d)", at_end);
	free(ci);
	h_gate_destroy(&gate);
}

/* --- hand-off between workers: workers = 2, pool_size 2 --- */

#define HANDOFF_MIN 8
#define HANDOFF_MAX 40

/* The worker that accepted `c`, from pgmoat's log ("C-<id> <addr> ...:
 * login"; the worker number is the top 16 bits of the id), -1 if unknown. */
static int client_worker(const struct h_moat *m, PGconn *c)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	if (getsockname(PQsocket(c), (struct sockaddr *)&a, &alen) != 0)
		return -1;
	char needle[64];
	snprintf(needle, sizeof needle, " 127.0.0.1:%d app/app: login", ntohs(a.sin_port));
	char *log = h_read_file(m->log, NULL);
	const char *hit = NULL;
	for (const char *p = log; p && (p = strstr(p, needle)) != NULL; p++)
		hit = p; /* the last one: ports are reused */
	int w = -1;
	if (hit) {
		const char *p = hit;
		while (p > log && p[-1] != ' ' && p[-1] != '\n')
			p--;
		if (strncmp(p, "C-", 2) == 0)
			w = (int)(strtoull(p + 2, NULL, 10) >> 48);
	}
	free(log);
	return w;
}

/* x and y each open a transaction, x first: both must hold a server at the
 * same time. */
static bool pair_at_once(PGconn *x, PGconn *y)
{
	struct q qx, qy;
	bool good = q_run(x, "begin; select pg_backend_pid()", 20, &qx) &&
	        q_run(y, "begin; select pg_backend_pid()", 20, &qy) && qx.n_values == 1 &&
	        qy.n_values == 1 && strcmp(qx.values[0], qy.values[0]) != 0;
	struct q cx, cy;
	good = q_run(x, "commit", 20, &cx) && good;
	good = q_run(y, "commit", 20, &cy) && good;
	return good;
}

/* Holders h1 (on worker `from`) and h2 hold both servers; waiter w (on the
 * other worker) must wait, then get h1's server when h1 commits. */
static void full_pool_handoff(PGconn *h1, PGconn *h2, PGconn *w, int from)
{
	struct q q1, q2, qw, qc;
	bool held = q_run(h1, "begin; select pg_backend_pid()", 20, &q1) &&
	        q_run(h2, "begin; select pg_backend_pid()", 20, &q2) && q1.n_values == 1;
	q_send(w, "select pg_backend_pid()", &qw);
	ok(held && !q_wait(w, &qw, 0.5),
	   "both servers in transactions: a client on worker %d waits", 1 - from);
	bool released = q_run(h1, "commit", 20, &qc);
	bool served = q_wait(w, &qw, 20) && !qw.state[0] && qw.n_values == 1;
	ok(released && served && strcmp(qw.values[0], q1.values[0]) == 0,
	   "a commit on worker %d hands its server to it (backend %s, got %s)", from,
	   held ? q1.values[0] : "?", served ? qw.values[0] : "none");
	q_run(h2, "commit", 20, &qc);
}

static void handoff(struct h_moat *m, struct h_pg *pg)
{
	PGconn *cl[HANDOFF_MAX];
	int n = 0, count[2] = {0, 0}, pick[2][2] = {{-1, -1}, {-1, -1}};
	while (n < HANDOFF_MAX && (n < HANDOFF_MIN || count[0] < 2 || count[1] < 2)) {
		cl[n] = connect_moat(m);
		int w = h_connected(cl[n]) ? client_worker(m, cl[n]) : -1;
		if (w == 0 || w == 1) {
			if (count[w] < 2)
				pick[w][count[w]] = n;
			count[w]++;
		}
		n++;
	}
	bool spread = count[0] >= 2 && count[1] >= 2;
	ok(spread, "%d clients spread over both workers (%d on worker 0, %d on worker 1)", n,
	   count[0], count[1]);
	if (!spread) {
		for (int i = 0; i < n; i++)
			PQfinish(cl[i]);
		ok(false, "pairs of clients hold transactions at once");
		for (int i = 0; i < 4; i++)
			ok(false, "full pool hand-off between workers");
		ok(false, "backends of the pool of 2");
		return;
	}
	PGconn *a0 = cl[pick[0][0]], *a1 = cl[pick[0][1]];
	PGconn *b0 = cl[pick[1][0]], *b1 = cl[pick[1][1]];

	/* Same worker and different workers, in both orders; servers left
	 * idle on one worker are taken by the other. */
	PGconn *pairs[][2] = {{a0, a1}, {b0, b1}, {a0, b0}, {b1, a1}, {a1, b1}, {b0, a0}};
	int n_pairs = (int)(sizeof pairs / sizeof pairs[0]), good = 0;
	for (int i = 0; i < n_pairs; i++)
		good += pair_at_once(pairs[i][0], pairs[i][1]);
	ok(good == n_pairs,
	   "two clients, on the same or on different workers, hold a transaction at once, each "
	   "on its own server (%d of %d pairs)",
	   good, n_pairs);

	full_pool_handoff(a0, b0, b1, 0);
	full_pool_handoff(b1, a1, a0, 1);
	int backends = h_pg_count_backends(pg, "app");
	ok(backends >= 1 && backends <= 2, "PostgreSQL has %d backends for the pool of 2",
	   backends);
	for (int i = 0; i < n; i++)
		PQfinish(cl[i]);
}

/* --- pool_size 1 --- */

static void error_then_rollback(struct h_moat *m)
{
	PGconn *a = connect_moat(m);
	struct q q;
	q_run(a, "begin", 20, &q);
	q_send(a, "select 1/0", &q);
	q_wait(a, &q, 20);
	is_str(q.state, "22012", "an error inside a transaction: division by zero");
	q_send(a, "select 1", &q);
	q_wait(a, &q, 20);
	is_str(q.state, "25P02", "the failed transaction refuses the next statement");
	bool rolled = q_run(a, "rollback", 20, &q);
	ok(rolled && strcmp(q_value(a, "select 'again'", 20), "again") == 0 &&
	           PQtransactionStatus(a) == PQTRANS_IDLE,
	   "after ROLLBACK the same connection works, outside a transaction");
	int pa = q_pid(a);
	PGconn *b = connect_moat(m);
	int pb = q_pid(b);
	ok(pa != 0 && pb == pa,
	   "the next client (the first still connected) runs on the same backend (%d, %d)", pa, pb);
	is_str(q_value(a, "select 'a'", 20), "a", "and the first client still works after it");
	PQfinish(b);
	PQfinish(a);
}

static void disconnect_mid_txn(struct h_moat *m, struct h_pg *pg)
{
	PGconn *c = connect_moat(m);
	struct q q;
	bool began = q_run(c, "begin; insert into rows_t values (1)", 20, &q);
	int pc = q_pid(c);
	ok(began && pc != 0 && PQtransactionStatus(c) == PQTRANS_INTRANS,
	   "a client begins, inserts a row and disconnects inside the transaction");
	PQfinish(c);

	PGconn *d = connect_moat(m);
	is_str(q_value(d, "select count(*) from rows_t", 20), "0",
	       "the next client does not see the uncommitted row");
	ok(strcmp(q_value(d, "select pg_current_xact_id_if_assigned() is null", 20), "t") == 0 &&
	           PQtransactionStatus(d) == PQTRANS_IDLE,
	   "and is not inside the left transaction");
	int pd = q_pid(d);
	struct pid_gone g = {pg, pc};
	ok(pd != 0 && pd != pc && h_wait_until(pid_gone, &g, 20),
	   "the server left inside the transaction was closed, not reused (%d, then %d)", pc, pd);
	ok(h_wait_until(no_idle_in_txn, pg, 20),
	   "pg_stat_activity shows no backend of app idle in transaction");
	PQfinish(d);
}

static void terminate_mid_txn(struct h_moat *m, struct h_pg *pg)
{
	PGconn *e = connect_moat(m);
	struct q q;
	bool began = q_run(e, "begin", 20, &q);
	int pe = q_pid(e);
	ok(began && pe != 0 && h_pg_terminate(pg, pe),
	   "the backend of a client inside a transaction is terminated");
	q_send(e, "select 1", &q);
	bool done = q_wait(e, &q, 20);
	ok(done && (strcmp(q.state, "57P01") == 0 || strcmp(q.state, "08006") == 0),
	   "the client gets an error: '%s' %s", q.state, q.message);
	ok(PQstatus(e) == CONNECTION_BAD, "and its connection is closed");
	PQfinish(e);
	PGconn *f = connect_moat(m);
	int pf = q_pid(f);
	ok(pf != 0 && pf != pe, "a new client then works, on a new backend (%d)", pf);
	PQfinish(f);
}

/* --- raw protocol helpers --- */

static bool wire_extended(int fd, const char *sql)
{
	char parse[256];
	size_t n = strlen(sql);
	parse[0] = '\0'; /* unnamed statement */
	memcpy(parse + 1, sql, n + 1);
	parse[n + 2] = parse[n + 3] = 0; /* no parameter types */
	static const char bind[] = {0, 0, 0, 0, 0, 0, 0, 0}; /* "", "", 0, 0, 0 */
	static const char exec[] = {0, 0, 0, 0, 0}; /* "", no row limit */
	return wire_send_msg(fd, 'P', parse, n + 4) && wire_send_msg(fd, 'B', bind, sizeof bind) &&
	        wire_send_msg(fd, 'E', exec, sizeof exec);
}

struct wread {
	char types[32]; /* of the messages read */
	char value[64]; /* of the last DataRow's first column */
	char state[6]; /* of the first ErrorResponse */
	char status; /* of the ReadyForQuery */
};

/* Reads messages up to one of type `until` (at most 20, 20 s each). */
static bool wire_read_to(int fd, char until, struct wread *w)
{
	memset(w, 0, sizeof *w);
	size_t k = 0;
	for (int i = 0; fd >= 0 && i < 20; i++) {
		struct wire_msg msg;
		if (wire_read_msg(fd, &msg, 20) != 1)
			break;
		if (k + 1 < sizeof w->types)
			w->types[k++] = msg.type;
		if (msg.type == 'D' && msg.len >= 6)
			snprintf(w->value, sizeof w->value, "%.*s", (int)(msg.len - 6),
			         msg.body + 6);
		if (msg.type == 'E' && !w->state[0])
			wire_error_field(&msg, 'C', w->state, sizeof w->state);
		if (msg.type == 'Z' && msg.len == 1)
			w->status = msg.body[0];
		bool last = msg.type == until;
		wire_msg_free(&msg);
		if (last)
			return true;
	}
	return false;
}

static int wire_client(const struct h_moat *m)
{
	int fd = wire_connect(m->port);
	struct wire_login l;
	if (fd >= 0 && !(wire_login(fd, 0, "app", "app", "app", &l) && l.ok)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* --- COPY with pool_size 1 and another client in between --- */

#define COPY_ROWS 20000

static char *copy_data(int from, int n, size_t *len)
{
	size_t cap = (size_t)n * 40 + 1, at = 0;
	char *d = malloc(cap);
	if (!d)
		h_bail("out of memory");
	for (int i = from; i < from + n; i++)
		at += (size_t)snprintf(d + at, cap - at, "%d\tpayload-%d-%d\n", i, i, i * 7);
	*len = at;
	return d;
}

static bool put_copy(PGconn *c, const char *data, size_t len)
{
	for (size_t off = 0; off < len;) {
		size_t n = len - off < 7000 ? len - off : 7000;
		if (PQputCopyData(c, data + off, (int)n) != 1)
			return false;
		off += n;
	}
	return PQflush(c) == 0;
}

/* The result of a COPY after PQputCopyEnd: its command status. */
static void copy_end(PGconn *c, struct q *q)
{
	memset(q, 0, sizeof *q);
	if (PQputCopyEnd(c, NULL) != 1) {
		snprintf(q->state, sizeof q->state, "none");
		return;
	}
	q_wait(c, q, 30);
}

static void copy_in_out(struct h_moat *m)
{
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	PGconn *a = connect_moat(m);
	size_t len;
	char *data = copy_data(1, COPY_ROWS, &len);
	size_t half = len / 2;

	/* COPY FROM STDIN, another client's query in the middle. */
	PGresult *r = PQexec(a, "copy copy_t (id, t) from stdin");
	bool in = PQresultStatus(r) == PGRES_COPY_IN;
	PQclear(r);
	in = in && put_copy(a, data, half);
	struct h_async b;
	h_async_start(&b, ci, "select count(*) from copy_t");
	ok(in && !h_async_wait(&b, 0.5),
	   "COPY FROM STDIN half sent: another client's query waits (pool_size 1)");
	struct q q;
	in = in && put_copy(a, data + half, len - half);
	copy_end(a, &q);
	ok(in && q.done && !q.state[0] && strcmp(q.status, "COPY 20000") == 0,
	   "the COPY completes: '%s' %s", q.status, q.message);
	bool b_done = h_async_wait(&b, 30) && h_async_ok(&b);
	ok(b_done && b.value && strcmp(b.value, "20000") == 0,
	   "then the other client's query runs, after it (count %s)", b.value ? b.value : "none");
	h_async_close(&b);

	/* COPY TO STDOUT, another client's query started half way. */
	char want[33], got[33];
	h_md5_hex(data, len, want);
	r = PQexec(a, "copy (select id, t from copy_t order by id) to stdout");
	bool out = PQresultStatus(r) == PGRES_COPY_OUT;
	PQclear(r);
	struct h_md5 md5;
	h_md5_init(&md5);
	long rows = 0;
	char *buf;
	int n = 0;
	bool b_started = false;
	while (out && (n = PQgetCopyData(a, &buf, 0)) > 0) {
		h_md5_update(&md5, buf, (size_t)n);
		PQfreemem(buf);
		if (++rows == 100) {
			h_async_start(&b, ci, "select 'during copy out'");
			h_async_wait(&b, 0.2);
			b_started = true;
		}
	}
	h_md5_final(&md5, got);
	struct q qo = {0};
	out = out && n == -1 && q_wait(a, &qo, 30) && !qo.state[0];
	ok(out && rows == COPY_ROWS && strcmp(got, want) == 0,
	   "COPY TO STDOUT returns all %ld rows, byte for byte", rows);
	ok(b_started && h_async_wait(&b, 30) && h_async_ok(&b),
	   "the other client's query started during it completes");
	if (b_started)
		h_async_close(&b);

	/* COPY FROM STDIN through the extended protocol: libpq sends a Sync
	 * the server ignores, then another after CopyDone. */
	free(data);
	data = copy_data(COPY_ROWS + 1, 1000, &len);
	r = PQexecParams(a, "copy copy_t (id, t) from stdin", 0, NULL, NULL, NULL, NULL, 0);
	bool ext = PQresultStatus(r) == PGRES_COPY_IN;
	PQclear(r);
	ext = ext && put_copy(a, data, len);
	copy_end(a, &q);
	ok(ext && q.done && !q.state[0] && strcmp(q.status, "COPY 1000") == 0,
	   "COPY FROM STDIN through PQexecParams: '%s' %s", q.status, q.message);
	is_str(q_value(a, "select count(*) from copy_t", 20), "21000",
	       "then a query on the same connection");
	ok(PQtransactionStatus(a) == PQTRANS_IDLE, "which is outside a transaction");
	h_async_start(&b, ci, "select count(*) from copy_t");
	ok(h_async_wait(&b, 20) && h_async_ok(&b) && b.value && strcmp(b.value, "21000") == 0,
	   "and one on another connection");
	h_async_close(&b);

	/* The same with bad data: the server fails the COPY and skips to the
	 * Sync libpq sends after CopyDone. */
	r = PQexecParams(a, "copy copy_t (id, t) from stdin", 0, NULL, NULL, NULL, NULL, 0);
	bool bad = PQresultStatus(r) == PGRES_COPY_IN;
	PQclear(r);
	static const char bad_rows[] = "1\tok\nnot-a-number\tx\n";
	bad = bad && put_copy(a, bad_rows, strlen(bad_rows));
	copy_end(a, &q);
	ok(bad && strcmp(q.state, "22P02") == 0,
	   "a failing COPY through PQexecParams gets the server's error ('%s')", q.state);
	h_async_start(&b, ci, "select count(*) from copy_t");
	ok(strcmp(q_value(a, "select count(*) from copy_t", 20), "21000") == 0 &&
	           h_async_wait(&b, 20) && h_async_ok(&b),
	   "then the same and another connection work");
	h_async_close(&b);
	free(data);
	PQfinish(a);
	free(ci);
}

/* Whether data from the server waits on the client's socket within
 * `timeout` s (without reading it). */
static bool readable(PGconn *c, double timeout)
{
	struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
	return p.fd >= 0 && poll(&p, 1, (int)(timeout * 1000)) == 1;
}

/* A COPY FROM STDIN that fails on its first row while the client goes on
 * sending: PostgreSQL reports the error at once and drops what follows (the
 * rows and CopyDone; with the extended protocol everything up to the next
 * Sync).  The server must go back to the pool, and only once it is ready
 * for another client. */
static void copy_failing(struct h_moat *m)
{
	static const char bad_row[] = "bad\tx\n";
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	size_t len;
	char *more = copy_data(COPY_ROWS + 5001, 1000, &len);
	struct q q;
	struct h_async b;

	/* Simple protocol, raw client: the rest arrives after the server's
	 * ErrorResponse and ReadyForQuery. */
	int fd = wire_client(m);
	struct wread w1, w2;
	bool in = fd >= 0 && wire_send_query(fd, "copy copy_t (id, t) from stdin") &&
	        wire_read_to(fd, 'G', &w1) && wire_send_msg(fd, 'd', bad_row, strlen(bad_row)) &&
	        wire_read_to(fd, 'Z', &w2);
	ok(in && strcmp(w1.types, "G") == 0 && strcmp(w2.types, "EZ") == 0 &&
	           strcmp(w2.state, "22P02") == 0 && w2.status == 'I',
	   "raw client: COPY FROM STDIN, a bad first row: ErrorResponse %s, ReadyForQuery '%c'",
	   w2.state, w2.status ? w2.status : '?');
	bool sent = in;
	for (size_t off = 0; sent && off < len; off += 4000)
		sent = wire_send_msg(fd, 'd', more + off, len - off < 4000 ? len - off : 4000);
	sent = sent && wire_send_msg(fd, 'c', NULL, 0);
	/* Whichever of them pgmoat sees first, the rows or another client's
	 * query, both queries are served. */
	int served = 0;
	for (int i = 0; sent && i < 2; i++) {
		h_async_start(&b, ci, "select 'b'");
		served += h_async_wait(&b, 10) && h_async_ok(&b);
		h_async_close(&b);
	}
	ok(sent && served == 2,
	   "it sends more rows and CopyDone, which PostgreSQL drops, and stays idle: two other "
	   "clients one after the other are served (%d of 2, pool_size 1)",
	   served);
	struct wire_result wr;
	ok(fd >= 0 && wire_query(fd, "select 'a'", 20, &wr) && strcmp(wr.value, "a") == 0,
	   "and the raw client works");
	if (fd >= 0)
		close(fd);

	/* Extended protocol, another client waiting: the server ignores
	 * everything up to the Sync libpq sends after CopyDone. */
	PGconn *a = connect_moat(m);
	PGresult *r =
	        PQexecParams(a, "copy copy_t (id, t) from stdin", 0, NULL, NULL, NULL, NULL, 0);
	in = PQresultStatus(r) == PGRES_COPY_IN;
	PQclear(r);
	h_async_start(&b, ci, "select 'b'");
	bool waits = !h_async_wait(&b, 0.5);
	in = in && put_copy(a, bad_row, strlen(bad_row)) && readable(a, 20) &&
	        put_copy(a, more, len);
	memset(&q, 0, sizeof q);
	if (in && PQputCopyEnd(a, NULL) == 1)
		q_wait(a, &q, 10);
	ok(waits && in && q.done && strcmp(q.state, "22P02") == 0,
	   "COPY FROM STDIN through PQexecParams failing on its first row while another client "
	   "waits: '%s', and its Sync is answered%s",
	   q.state, q.done ? "" : " (it was not)");
	bool b_served = h_async_wait(&b, 10) && h_async_ok(&b);
	ok(b_served, "then the waiting client is served%s",
	   b.state == H_ASYNC_RUNNING ? " (it still has no result)" : "");
	h_async_close(&b);
	if (!q.done)
		q_wait(a, &q, 10);
	ok(q.done && strcmp(q_value(a, "select 'a'", 10), "a") == 0, "and the first client works");
	PQfinish(a);
	free(more);
	free(ci);
}

/* --- Flush without Sync keeps the server --- */

static void flush_keeps_server(struct h_moat *m)
{
	int fd = wire_client(m);
	struct wread w;
	bool got = fd >= 0 && wire_extended(fd, "select 42") && wire_send_msg(fd, 'H', NULL, 0) &&
	        wire_read_to(fd, 'C', &w);
	ok(got && strcmp(w.types, "12DC") == 0 && strcmp(w.value, "42") == 0,
	   "Parse/Bind/Execute/Flush: the results arrive without a Sync ('%s', %s)", w.types,
	   w.value);
	char *ci = h_moat_conninfo(m, "app", "app", "app");
	struct h_async b;
	h_async_start(&b, ci, "select 'b'");
	free(ci);
	ok(!h_async_wait(&b, 0.5), "another client's query waits: no Sync yet, the server is kept");
	bool synced = got && wire_send_msg(fd, 'S', NULL, 0) && wire_read_to(fd, 'Z', &w);
	ok(synced && strcmp(w.types, "Z") == 0 && w.status == 'I', "Sync: ReadyForQuery 'I' ('%s')",
	   w.types);
	ok(h_async_wait(&b, 20) && h_async_ok(&b) && b.value && strcmp(b.value, "b") == 0,
	   "then the other client's query completes");
	h_async_close(&b);
	struct wire_result wr;
	ok(fd >= 0 && wire_query(fd, "select 'still'", 20, &wr) && strcmp(wr.value, "still") == 0,
	   "and the raw client still works");
	if (fd >= 0)
		close(fd);
}

/* --- login without a free server --- */

static void login_without_server(struct h_moat *m)
{
	PGconn *a = connect_moat(m);
	struct q q;
	ok(q_run(a, "begin; insert into rows_t values (77)", 20, &q) &&
	           PQtransactionStatus(a) == PQTRANS_INTRANS,
	   "client A holds the only server inside a transaction");
	double t0 = h_now();
	PGconn *b = connect_moat(m);
	ok(h_connected(b), "client B logs in meanwhile (%.2f s)", h_now() - t0);
	struct q qb;
	q_send(b, "select count(*) from rows_t where x = 77", &qb);
	ok(!q_wait(b, &qb, 0.5), "B's first query waits for the server");
	bool committed = q_run(a, "commit", 20, &q);
	ok(committed && q_wait(b, &qb, 20) && !qb.state[0] && qb.n_values == 1 &&
	           strcmp(qb.values[0], "1") == 0,
	   "after A commits it completes, and sees A's row");
	PQfinish(b);
	PQfinish(a);
}

/* --- statement mode --- */

static bool pipeline_one_sync(PGconn *c)
{
	bool good = PQenterPipelineMode(c);
	for (int i = 1; good && i <= 3; i++) {
		char v[16];
		snprintf(v, sizeof v, "%d", i);
		const char *p[1] = {v};
		good = PQsendQueryParams(c, "select $1::int * 10", 1, NULL, p, NULL, NULL, 0);
	}
	good = good && PQpipelineSync(c);
	int sum = 0, seen = 0;
	for (int i = 0; good && i < 16 && seen < 4; i++) {
		PGresult *r = PQgetResult(c);
		if (!r)
			continue;
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			sum += atoi(PQgetvalue(r, 0, 0));
		else if (PQresultStatus(r) != PGRES_PIPELINE_SYNC)
			good = false;
		seen++;
		PQclear(r);
	}
	return good && seen == 4 && sum == 60 && PQexitPipelineMode(c);
}

static void statement_mode(struct h_moat *m, struct h_pg *pg)
{
	PGconn *s1 = connect_moat(m), *s2 = connect_moat(m);
	struct q q;
	bool autocommit = q_run(s1, "insert into stmt_t values (1)", 20, &q) &&
	        q_run(s2, "insert into stmt_t values (2)", 20, &q);
	int p1 = q_pid(s1), p2 = q_pid(s2);
	ok(autocommit && p1 != 0 && p1 == p2 &&
	           strcmp(q_value(s1, "select count(*) from stmt_t", 20), "2") == 0,
	   "statement mode: autocommit statements of two clients on one backend (pool_size 1)");
	ok(q_run(s1, "select 1; select 2", 20, &q) && q.n_values == 2 &&
	           strcmp(q.values[0], "1") == 0 && strcmp(q.values[1], "2") == 0,
	   "a multi-statement query 'select 1; select 2' works");
	ok(pipeline_one_sync(s1), "an extended-protocol pipeline of three statements, one Sync");

	q_send(s1, "begin", &q);
	q_wait(s1, &q, 20);
	is_str(q.state, "0A000", "BEGIN is refused with 0A000");
	ok(strcmp(q.severity, "FATAL") == 0 &&
	           strstr(q.message,
	                  "transaction blocks are not allowed in statement pooling mode") != NULL,
	   "FATAL: '%s'", q.message);
	PQconsumeInput(s1);
	ok(PQstatus(s1) == CONNECTION_BAD, "and the connection is closed");
	PQfinish(s1);

	ok(strcmp(q_value(s2, "select 'other'", 20), "other") == 0 &&
	           PQtransactionStatus(s2) == PQTRANS_IDLE,
	   "the other client works, outside a transaction");
	PGconn *s3 = connect_moat(m);
	int p3 = q_pid(s3);
	ok(p3 != 0 && p3 != p1 && h_wait_until(no_idle_in_txn, pg, 20),
	   "the next client works on a new backend (%d, not %d); none is idle in transaction", p3,
	   p1);
	PQfinish(s3);
	PQfinish(s2);
}

static struct h_moat *start_moat(struct h_pg *pg, const char *pool_size, const char *mode)
{
	struct h_moat *m = h_moat_new(pg);
	char *settings = h_strdupf("pool_mode = %s\nworkers = 2\nmax_client_conn = 200\n"
	                           "query_wait_timeout = 60\n",
	                           mode);
	bool started = h_moat_write_std_ini(m, pool_size, settings) && h_moat_start(m, NULL);
	free(settings);
	if (!started)
		h_bail("pgmoat did not start");
	return m;
}

int main(void)
{
	h_init("t_txn", 400);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	PGconn *setup = h_pg_connect(pg, "app", "app");
	if (!h_exec(setup, "create table counters (id int primary key, n int not null)") ||
	    !h_exec(setup, "insert into counters select g, 0 from generate_series(0, 9) g") ||
	    !h_exec(setup, "create table rows_t (x int)") ||
	    !h_exec(setup, "create table copy_t (id int, t text)") ||
	    !h_exec(setup, "create table stmt_t (x int)"))
		h_bail("set-up failed");
	PQfinish(setup);
	PGconn *admin = h_pg_connect(pg, "postgres", "app");
	if (!h_connected(admin) || !h_wait_until(no_app_backends, pg, 20))
		h_bail("set-up failed");

	/* One pgmoat per pool size; each opens servers only when used. */
	struct h_moat *m5 = start_moat(pg, "pool_size=5", "transaction");
	struct h_moat *m2 = start_moat(pg, "pool_size=2", "transaction");
	struct h_moat *m1 = start_moat(pg, "pool_size=1", "transaction");
	struct h_moat *ms = start_moat(pg, "pool_size=1", "statement");

	tap_plan(65);
	load(m5, pg, admin);
	/* Its idle servers would count as backends of the next pools. */
	is_int(h_moat_stop(m5), 0, "the first pgmoat stops with status 0");
	ok(h_wait_until(no_app_backends, pg, 20), "and its servers are closed");
	handoff(m2, pg);
	error_then_rollback(m1);
	disconnect_mid_txn(m1, pg);
	terminate_mid_txn(m1, pg);
	copy_in_out(m1);
	copy_failing(m1);
	flush_keeps_server(m1);
	login_without_server(m1);
	statement_mode(ms, pg);
	ok(h_moat_alive(m2) && h_moat_alive(m1) && h_moat_alive(ms), "every pgmoat still running");
	PQfinish(admin);
	return h_done();
}
