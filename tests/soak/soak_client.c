/* The soak test's clients: writers and read-your-writes readers (soak.h).
 *
 * A writer's transaction, in one of four ways (simple steps with the
 * extended protocol, named prepared statements, a libpq pipeline, one
 * multi-statement simple query):
 *
 *   BEGIN;
 *   UPDATE counters SET n = n + 1 WHERE k = k1;
 *   UPDATE counters SET n = n + 1 WHERE k = k2;
 *   INSERT INTO ledger SELECT id, ..., k1, <k1's n>, k2, <k2's n>;
 *   COMMIT;
 *
 * so every committed transaction leaves one ledger row carrying the values
 * its counter bumps produced: per key, the ledger's values must be exactly
 * 1..n.  k1 and k2 come in random order, so deadlocks (40P01) happen and
 * are failures like any other.  A few transactions fail on purpose
 * (1/0 before COMMIT, or ROLLBACK instead of COMMIT).
 *
 * What the client concludes:
 * - COMMIT answered with the COMMIT tag: committed;
 * - an error, ROLLBACK, or the connection lost before COMMIT was sent:
 *   failed (the server never got a COMMIT for it);
 * - the connection lost (or a connection-class error, 08xxx/57P0x) after
 *   COMMIT was sent and before its answer: in doubt.
 *
 * When the chaos loop sets kill_req, the client's next transaction drops
 * its connection at a random point (after BEGIN, after a write, after
 * COMMIT was sent) with a TCP reset or a FIN, without a Terminate message. */
#include <config.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/soak/soak.h"

#define SQL_UPD "update counters set n = n + 1 where k = $1::int"
#define SQL_INS                                                                                    \
	"insert into ledger(id, writer, mode, k1, n1, k2, n2) select $1::bigint, $2::int, "        \
	"$3::int, $4::int, (select n from counters where k = $4::int), $5::int, "                  \
	"(select n from counters where k = $5::int)"

enum phase { PH_START, PH_CONNECT, PH_TXN, PH_COMMIT, PH_RESULTS, PH_ROLLBACK, PH_READ, PH_DONE };

static const char *const phase_names[] = {"starting",
                                          "connecting",
                                          "in a transaction",
                                          "waiting for COMMIT",
                                          "reading pipeline results",
                                          "rolling back",
                                          "reading back its row",
                                          "done"};

const char *soak_phase_name(int phase)
{
	if (phase < 0 || phase > PH_DONE)
		return "?";
	return phase_names[phase];
}

long long soak_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* One writer transaction. */
struct tx {
	char id[24], writer[12], mode[4], k1[8], k2[8];
	enum soak_mode how;
	int kill_at; /* -1: none; 0 after BEGIN, 1 after a write, 2 before COMMIT, 3 after it */
	enum soak_kill kill;
	bool fail_error, fail_rollback;
};

static uint32_t rnd(struct soak_client *c)
{
	uint32_t x = c->rand;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	c->rand = x;
	return x;
}

static void set_phase(struct soak_client *c, enum phase p)
{
	atomic_store(&c->phase, (int)p);
}

static void progress(struct soak_client *c)
{
	atomic_store(&c->progress_usec, soak_usec());
}

static void nap_ms(int ms)
{
	struct timespec ts = {0, ms * 1000000L};
	nanosleep(&ts, NULL);
}

/* Errors a chaos event explains: the connection or its backend went away. */
static bool conn_state(const char *state)
{
	return !state || !*state || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0;
}

/* An error answering COMMIT after which the outcome is unknown: the
 * connection went away, or a cancel request raced with the commit. */
static bool end_unknown(const char *state)
{
	return conn_state(state) || strcmp(state, "57014") == 0;
}

/* Errors that are part of the game: lost connections, deadlocks between
 * writers, the deliberate division by zero, and a query canceled on a
 * connection the chaos loop sent a cancel request for. */
static bool expected_state(struct soak_client *c, const char *state)
{
	if (strcmp(state, "57014") == 0)
		return atomic_load(&c->cancel_sent);
	return conn_state(state) || strcmp(state, "40P01") == 0 || strcmp(state, "22012") == 0;
}

static const char *state_of(const PGresult *r)
{
	const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

static void note_error(struct soak_client *c, const char *what, const PGresult *r)
{
	const char *state = state_of(r);
	c->canceled += strcmp(state, "57014") == 0;
	if (expected_state(c, state))
		return;
	c->unexpected++;
	if (!c->first_error[0])
		snprintf(c->first_error, sizeof(c->first_error), "%s: %s %s", what, state,
		         r ? PQresultErrorMessage(r) : PQerrorMessage(c->conn));
}

/* A warning that the transaction was not where the client left it (its
 * statements ran outside the transaction it opened) is a pgmoat bug. */
static void on_notice(void *arg, const PGresult *r)
{
	struct soak_client *c = arg;
	const char *state = state_of(r);
	if (strcmp(state, "25P01") != 0 && strcmp(state, "25001") != 0)
		return;
	c->unexpected++;
	if (!c->first_error[0])
		snprintf(c->first_error, sizeof(c->first_error), "warning %s %s", state,
		         PQresultErrorMessage(r));
}

static bool conn_ok(struct soak_client *c)
{
	return c->conn && PQstatus(c->conn) == CONNECTION_OK;
}

static void drop_conn(struct soak_client *c)
{
	pthread_mutex_lock(&c->cancel_lock);
	PQfreeCancel(c->cancel);
	c->cancel = NULL;
	atomic_store(&c->cancel_sent, false);
	pthread_mutex_unlock(&c->cancel_lock);
	PQfinish(c->conn);
	c->conn = NULL;
	c->prepared[0] = c->prepared[1] = false;
}

/* Drops the connection as a crashing client would: no Terminate message.
 * KILL_RST: SO_LINGER 0 and the socket closed (dup2 puts /dev/null in its
 * place, so libpq's descriptor stays valid until PQfinish closes it);
 * KILL_FIN: shutdown() both ways. */
static void kill_conn(struct soak_client *c, enum soak_kill how)
{
	int fd = PQsocket(c->conn);
	if (fd >= 0 && how == KILL_RST) {
		struct linger l = {1, 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, fd);
			close(null);
		}
	} else if (fd >= 0) {
		shutdown(fd, SHUT_RDWR);
	}
	c->killed[how]++;
	drop_conn(c);
}

static bool ensure_conn(struct soak_client *c)
{
	if (conn_ok(c))
		return true;
	drop_conn(c);
	set_phase(c, PH_CONNECT);
	c->connects++;
	c->conn = PQconnectdb(c->conninfo);
	progress(c);
	if (PQstatus(c->conn) != CONNECTION_OK) {
		c->connect_failures++;
		if (!c->first_connect_error[0])
			snprintf(c->first_connect_error, sizeof(c->first_connect_error), "%s",
			         PQerrorMessage(c->conn));
		drop_conn(c);
		nap_ms(50);
		return false;
	}
	PQsetNoticeReceiver(c->conn, on_notice, c);
	pthread_mutex_lock(&c->cancel_lock);
	c->cancel = PQgetCancel(c->conn);
	pthread_mutex_unlock(&c->cancel_lock);
	return true;
}

bool soak_client_cancel(struct soak_client *c)
{
	char err[256];
	bool sent = false;
	pthread_mutex_lock(&c->cancel_lock);
	if (c->cancel) {
		atomic_store(&c->cancel_sent, true);
		sent = PQcancel(c->cancel, err, (int)sizeof(err)) == 1;
	}
	pthread_mutex_unlock(&c->cancel_lock);
	return sent;
}

/* Records a new transaction; returns its seq. */
static size_t new_txn(struct soak_client *c)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 4096;
		unsigned char *p = realloc(c->out, cap);
		if (!p)
			abort();
		memset(p + c->cap, SOAK_NONE, cap - c->cap);
		c->out = p;
		c->cap = cap;
	}
	return c->n++;
}

static void record(struct soak_client *c, size_t seq, enum soak_outcome o)
{
	c->out[seq] = (unsigned char)o;
	c->committed += o == SOAK_COMMITTED;
	c->failed += o == SOAK_FAILED;
	c->doubt += o == SOAK_DOUBT;
}

/* After an error before COMMIT: roll back if the connection survived. */
static enum soak_outcome failed(struct soak_client *c)
{
	if (!conn_ok(c)) {
		drop_conn(c);
		return SOAK_FAILED;
	}
	if (PQtransactionStatus(c->conn) != PQTRANS_IDLE) {
		set_phase(c, PH_ROLLBACK);
		PGresult *r = PQexec(c->conn, "rollback");
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			note_error(c, "rollback", r);
		PQclear(r);
	}
	if (!conn_ok(c))
		drop_conn(c);
	return SOAK_FAILED;
}

/* A kill asked for at point `at` of the transaction. */
static bool kill_here(struct soak_client *c, const struct tx *t, int at)
{
	if (t->kill_at != at)
		return false;
	if (at >= 3 || t->how == MODE_PIPELINE)
		PQflush(c->conn);
	kill_conn(c, t->kill);
	return true;
}

static bool exec_ok(struct soak_client *c, const char *what, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!good)
		note_error(c, what, r);
	PQclear(r);
	return good;
}

static bool step_sql(struct soak_client *c, const char *sql)
{
	return exec_ok(c, sql, PQexecParams(c->conn, sql, 0, NULL, NULL, NULL, NULL, 0));
}

static bool step_upd(struct soak_client *c, const struct tx *t, const char *k)
{
	const char *p[1] = {k};
	if (t->how == MODE_PREPARED)
		return exec_ok(c, "update",
		               PQexecPrepared(c->conn, "soak_upd", 1, p, NULL, NULL, 0));
	return exec_ok(c, "update", PQexecParams(c->conn, SQL_UPD, 1, NULL, p, NULL, NULL, 0));
}

static bool step_ins(struct soak_client *c, const struct tx *t)
{
	const char *p[5] = {t->id, t->writer, t->mode, t->k1, t->k2};
	if (t->how == MODE_PREPARED)
		return exec_ok(c, "insert",
		               PQexecPrepared(c->conn, "soak_ins", 5, p, NULL, NULL, 0));
	return exec_ok(c, "insert", PQexecParams(c->conn, SQL_INS, 5, NULL, p, NULL, NULL, 0));
}

/* The answer to COMMIT (or to the deliberate ROLLBACK). */
static enum soak_outcome end_outcome(struct soak_client *c, const struct tx *t, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	enum soak_outcome o;
	if (t->fail_rollback) {
		o = SOAK_FAILED;
		if (st != PGRES_COMMAND_OK)
			note_error(c, "rollback", r);
	} else if (st == PGRES_COMMAND_OK) {
		o = strcmp(PQcmdStatus(r), "COMMIT") == 0 ? SOAK_COMMITTED : SOAK_FAILED;
	} else if (!conn_ok(c) || end_unknown(state_of(r))) {
		note_error(c, "commit", r);
		o = SOAK_DOUBT;
	} else {
		note_error(c, "commit", r);
		o = SOAK_FAILED;
	}
	PQclear(r);
	if (o == SOAK_FAILED)
		return failed(c);
	if (!conn_ok(c))
		drop_conn(c);
	return o;
}

static enum soak_outcome tx_steps(struct soak_client *c, const struct tx *t)
{
	/* Each statement once per connection: one that failed (canceled, say)
	 * is prepared again, one that exists is not. */
	static const char *const names[2] = {"soak_upd", "soak_ins"},
	                         *const sqls[2] = {SQL_UPD, SQL_INS};
	for (int i = 0; t->how == MODE_PREPARED && i < 2; i++) {
		if (c->prepared[i])
			continue;
		if (!exec_ok(c, "prepare", PQprepare(c->conn, names[i], sqls[i], 0, NULL)))
			return failed(c);
		c->prepared[i] = true;
	}
	if (!step_sql(c, "begin"))
		return failed(c);
	if (kill_here(c, t, 0))
		return SOAK_FAILED;
	if (!step_upd(c, t, t->k1))
		return failed(c);
	if (kill_here(c, t, 1))
		return SOAK_FAILED;
	if (!step_upd(c, t, t->k2) || !step_ins(c, t))
		return failed(c);
	if (t->fail_error) {
		step_sql(c, "select 1/0");
		return failed(c);
	}
	if (kill_here(c, t, 2))
		return SOAK_FAILED;
	const char *end = t->fail_rollback ? "rollback" : "commit";
	set_phase(c, PH_COMMIT);
	if (t->kill_at == 3) {
		PQsendQueryParams(c->conn, end, 0, NULL, NULL, NULL, NULL, 0);
		kill_here(c, t, 3);
		return t->fail_rollback ? SOAK_FAILED : SOAK_DOUBT;
	}
	return end_outcome(c, t, PQexecParams(c->conn, end, 0, NULL, NULL, NULL, NULL, 0));
}

/* Everything queued at once, one Sync. */
static enum soak_outcome tx_pipeline(struct soak_client *c, const struct tx *t)
{
	PGconn *pc = c->conn;
	if (!PQenterPipelineMode(pc))
		return failed(c);
	const char *pu1[1] = {t->k1}, *pu2[1] = {t->k2};
	const char *pi[5] = {t->id, t->writer, t->mode, t->k1, t->k2};
	int n = 0;
	bool sent = PQsendQueryParams(pc, "begin", 0, NULL, NULL, NULL, NULL, 0) &&
	        PQsendQueryParams(pc, SQL_UPD, 1, NULL, pu1, NULL, NULL, 0) &&
	        PQsendQueryParams(pc, SQL_UPD, 1, NULL, pu2, NULL, NULL, 0) &&
	        PQsendQueryParams(pc, SQL_INS, 5, NULL, pi, NULL, NULL, 0);
	n = 4;
	if (sent && t->fail_error) {
		sent = PQsendQueryParams(pc, "select 1/0", 0, NULL, NULL, NULL, NULL, 0);
		n++;
	}
	/* Points 0 to 2: the writes reached the server, COMMIT did not. */
	if (sent && t->kill_at >= 0 && t->kill_at < 3) {
		kill_here(c, t, t->kill_at);
		return SOAK_FAILED;
	}
	const char *end = t->fail_rollback ? "rollback" : "commit";
	sent = sent && PQsendQueryParams(pc, end, 0, NULL, NULL, NULL, NULL, 0) &&
	        PQpipelineSync(pc);
	n++;
	if (!sent) {
		drop_conn(c);
		return t->fail_rollback ? SOAK_FAILED : SOAK_DOUBT;
	}
	if (kill_here(c, t, 3))
		return t->fail_rollback ? SOAK_FAILED : SOAK_DOUBT;
	set_phase(c, PH_RESULTS);
	bool aborted = false, lost = false, committed = false, end_seen = false;
	for (int i = 0; i < n && !lost; i++) {
		PGresult *r = PQgetResult(pc);
		ExecStatusType st = PQresultStatus(r);
		if (!r) {
			lost = true;
		} else if (st == PGRES_FATAL_ERROR) {
			if (conn_state(state_of(r)) || (i == n - 1 && end_unknown(state_of(r))))
				lost = true;
			else
				aborted = true;
			note_error(c, "pipeline", r);
		} else if (st == PGRES_PIPELINE_ABORTED) {
			aborted = true;
		} else if (i == n - 1) {
			end_seen = true;
			committed = st == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
		}
		bool more = r != NULL;
		PQclear(r);
		/* Each query's results end with NULL. */
		for (int k = 0; more && k < 4 && (r = PQgetResult(pc)) != NULL; k++)
			PQclear(r);
		lost = lost || PQstatus(pc) != CONNECTION_OK;
	}
	if (!lost) {
		PGresult *r = PQgetResult(pc);
		if (PQresultStatus(r) != PGRES_PIPELINE_SYNC)
			lost = true;
		PQclear(r);
	}
	if (lost || !conn_ok(c)) {
		drop_conn(c);
		/* An error the server gave before COMMIT means COMMIT was skipped. */
		if (aborted || t->fail_rollback)
			return SOAK_FAILED;
		if (end_seen)
			return committed ? SOAK_COMMITTED : SOAK_FAILED;
		return SOAK_DOUBT;
	}
	PQexitPipelineMode(pc);
	if (committed && !aborted && !t->fail_rollback)
		return SOAK_COMMITTED;
	return failed(c);
}

/* One Query message holding the whole transaction. */
static enum soak_outcome tx_simple(struct soak_client *c, const struct tx *t)
{
	char sql[640];
	snprintf(sql, sizeof(sql),
	         "begin; update counters set n = n + 1 where k = %s; update counters set n = n + "
	         "1 where k = %s; insert into ledger(id, writer, mode, k1, n1, k2, n2) select %s, "
	         "%s, %s, %s, (select n from counters where k = %s), %s, (select n from counters "
	         "where k = %s);%s %s",
	         t->k1, t->k2, t->id, t->writer, t->mode, t->k1, t->k1, t->k2, t->k2,
	         t->fail_error ? " select 1/0;" : "", t->fail_rollback ? "rollback" : "commit");
	set_phase(c, PH_COMMIT);
	if (!PQsendQuery(c->conn, sql)) {
		drop_conn(c);
		return t->fail_rollback ? SOAK_FAILED : SOAK_DOUBT;
	}
	if (kill_here(c, t, 3))
		return t->fail_rollback ? SOAK_FAILED : SOAK_DOUBT;
	bool error = false, lost = false, committed = false;
	int last = t->fail_error ? 5 : 4; /* COMMIT's result */
	PGresult *r;
	for (int i = 0; i < 12 && (r = PQgetResult(c->conn)) != NULL; i++) {
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_FATAL_ERROR) {
			if (conn_state(state_of(r)) || (i == last && end_unknown(state_of(r))))
				lost = true;
			else
				error = true;
			note_error(c, "simple", r);
		} else if (st == PGRES_COMMAND_OK) {
			committed = strcmp(PQcmdStatus(r), "COMMIT") == 0;
		}
		PQclear(r);
	}
	if (t->fail_rollback || (error && !lost))
		return failed(c);
	if (lost || !conn_ok(c)) {
		drop_conn(c);
		if (committed && !error)
			return SOAK_COMMITTED;
		return error ? SOAK_FAILED : SOAK_DOUBT;
	}
	return committed && !error ? SOAK_COMMITTED : failed(c);
}

static void writer_step(struct soak_client *c)
{
	if (!ensure_conn(c))
		return;
	struct tx t;
	memset(&t, 0, sizeof(t));
	size_t seq = new_txn(c);
	snprintf(t.id, sizeof(t.id), "%lld", ((long long)c->index << 32) | (long long)seq);
	snprintf(t.writer, sizeof(t.writer), "%d", c->index);
	t.how = (enum soak_mode)(rnd(c) % MODE_COUNT);
	snprintf(t.mode, sizeof(t.mode), "%d", (int)t.how);
	int k1 = (int)(rnd(c) % SOAK_KEYS), k2 = (int)(rnd(c) % (SOAK_KEYS - 1));
	k2 += k2 >= k1;
	snprintf(t.k1, sizeof(t.k1), "%d", k1);
	snprintf(t.k2, sizeof(t.k2), "%d", k2);
	uint32_t dice = rnd(c) % 100;
	t.fail_error = dice < 3;
	t.fail_rollback = dice >= 3 && dice < 6;
	c->deliberate += t.fail_error || t.fail_rollback;
	t.kill = (enum soak_kill)atomic_exchange(&c->kill_req, KILL_NONE);
	t.kill_at = -1;
	if (t.kill != KILL_NONE)
		t.kill_at = t.how == MODE_SIMPLE ? 3 : (int)(rnd(c) % 4);
	c->by_mode[t.how]++;
	set_phase(c, PH_TXN);
	enum soak_outcome o;
	switch (t.how) {
	case MODE_PIPELINE:
		o = tx_pipeline(c, &t);
		break;
	case MODE_SIMPLE:
		o = tx_simple(c, &t);
		break;
	default:
		o = tx_steps(c, &t);
		break;
	}
	record(c, seq, o);
	progress(c);
}

/* One read of row `id` that must see it. */
static void read_back(struct soak_client *c, const char *id)
{
	const char *p[1] = {id};
	PGresult *r = PQexecParams(
	        c->conn, "select count(*), pg_is_in_recovery() from ryw where id = $1::bigint", 1,
	        NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		bool replica = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
		c->ryw_checked++;
		c->reads_on_replica += replica;
		if (strcmp(PQgetvalue(r, 0, 0), "1") != 0) {
			c->ryw_missed++;
			if (!c->ryw_detail[0])
				snprintf(c->ryw_detail, sizeof(c->ryw_detail),
				         "row %s: count %s, read on %s", id, PQgetvalue(r, 0, 0),
				         replica ? "the replica" : "the primary");
		}
	} else {
		c->ryw_unchecked++;
		note_error(c, "read back", r);
	}
	PQclear(r);
}

/* Insert a row, then read it back on the same connection. */
static void reader_step(struct soak_client *c)
{
	if (!ensure_conn(c))
		return;
	size_t seq = new_txn(c);
	char id[24], reader[12];
	snprintf(id, sizeof(id), "%lld", ((long long)c->index << 32) | (long long)seq);
	snprintf(reader, sizeof(reader), "%d", c->index);
	const char *p[2] = {id, reader};
	const char *ins = "insert into ryw(id, reader) values ($1::bigint, $2::int)";
	set_phase(c, PH_COMMIT);
	enum soak_kill kill = (enum soak_kill)atomic_exchange(&c->kill_req, KILL_NONE);
	if (kill != KILL_NONE) {
		PQsendQueryParams(c->conn, ins, 2, NULL, p, NULL, NULL, 0);
		PQflush(c->conn);
		kill_conn(c, kill);
		record(c, seq, SOAK_DOUBT);
		progress(c);
		return;
	}
	PGresult *r = PQexecParams(c->conn, ins, 2, NULL, p, NULL, NULL, 0);
	enum soak_outcome o;
	if (PQresultStatus(r) == PGRES_COMMAND_OK)
		o = SOAK_COMMITTED;
	else if (!conn_ok(c) || end_unknown(state_of(r)))
		o = SOAK_DOUBT;
	else
		o = SOAK_FAILED;
	if (o != SOAK_COMMITTED)
		note_error(c, "insert", r);
	PQclear(r);
	record(c, seq, o);
	/* Reads for up to about half a second after the write: the first ones
	 * go to the primary, later ones to the replica once its probed replay
	 * position has passed the write (never while replay is paused). */
	int reads = o == SOAK_COMMITTED ? 1 + (int)(rnd(c) % 8) : 0;
	for (int i = 0; i < reads && conn_ok(c); i++) {
		if (i > 0)
			nap_ms((int)(rnd(c) % 120));
		set_phase(c, PH_READ);
		read_back(c, p[0]);
		progress(c);
	}
	if (!conn_ok(c))
		drop_conn(c);
	progress(c);
}

void *soak_client_run(void *arg)
{
	struct soak_client *c = arg;
	c->rand = 2463534242u + 7919u * (uint32_t)c->index;
	progress(c);
	while (!atomic_load(c->stop)) {
		if (c->reader)
			reader_step(c);
		else
			writer_step(c);
	}
	if (c->conn && !c->reader && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
		failed(c);
	drop_conn(c);
	set_phase(c, PH_DONE);
	atomic_store(&c->finished, true);
	return NULL;
}
