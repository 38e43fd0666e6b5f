/* The soak test (scripts/soak; doc/reliability.md, section Soak).
 *
 * A PostgreSQL primary and a streaming replica, pgmoat in front of both
 * (transaction pooling, several workers, read_routing = auto with
 * read_your_writes), and for the given time:
 * - writers (soak_client.c) running transactions that insert a
 *   uniquely-keyed ledger row and bump two counters, in four ways
 *   (statement by statement, prepared, pipelined, one simple query), each
 *   recording whether it saw the transaction commit, fail, or neither (in
 *   doubt: the connection was lost after COMMIT was sent);
 * - readers inserting a row and reading it back at once through the
 *   routed name (read-your-writes);
 * - chaos, at bounded rates: clients dropping their connection mid
 *   transaction (TCP reset or FIN), backends terminated on both clusters
 *   (pg_terminate_backend), pgmoat reloaded (SIGHUP, with settings
 *   changed), replay paused and resumed on the replica.
 * Then, with chaos and clients stopped, against the primary: every
 * transaction seen committed is there exactly once; none seen failed is
 * there; an in-doubt one is whole or absent; per key, the ledger holds
 * exactly the counter values 1..n (no half-done or doubled transaction);
 * no row nobody wrote; every read-your-writes read saw its row; no
 * unexpected error; and the replica converges to the primary.
 *
 * Usage: soak [SECONDS] (default 60; PGMOAT_SOAK_WRITERS and
 * PGMOAT_SOAK_READERS set the client counts, default 24 and 4).  Prints
 * TAP; exits non-zero on any violation. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/harness.h"
#include "tests/soak/soak.h"

#define HANG_S 30 /* a client without progress this long is stuck */
#define TICK 0.05 /* the chaos loop's period, seconds */

/* Chaos rates, events per second. */
#define RATE_KILL 4.0
#define RATE_TERMINATE 2.0
#define RATE_RELOAD 0.2
#define RATE_PAUSE 0.2
#define RATE_CANCEL 1.0

enum event {
	EV_KILL_RST,
	EV_KILL_FIN,
	EV_TERM_PRIMARY,
	EV_TERM_REPLICA,
	EV_RELOAD,
	EV_PAUSE,
	EV_CANCEL,
	EV_N
};

static const char *const event_names[EV_N] = {"client connections reset (RST) mid-transaction",
                                              "client connections closed (FIN) mid-transaction",
                                              "backends terminated on the primary",
                                              "backends terminated on the replica",
                                              "pgmoat reloads (SIGHUP, settings changed)",
                                              "replay pauses on the replica (0.5-3 s)",
                                              "cancel requests (PQcancel) for a client's query"};

struct soak {
	struct h_pg *primary, *replica;
	struct h_moat *moat;
	struct soak_client *clients;
	int n_writers, n_readers, n;
	atomic_bool stop;
	double seconds;
	long events[EV_N];
	long reload_failures;
	bool paused;
	double resume_at;
	int flip;
	uint32_t rand;
};

static double chance(struct soak *s)
{
	s->rand ^= s->rand << 13;
	s->rand ^= s->rand >> 17;
	s->rand ^= s->rand << 5;
	return (double)(s->rand % 1000000) / 1000000.0;
}

static bool write_ini(struct soak *s)
{
	/* Reloads alternate pool sizes and lag limits. */
	int pool = s->flip ? 10 : 6, lag = s->flip ? 30 : 5;
	char *tmpl = h_strdupf("[databases]\n"
	                       "app = host=127.0.0.1,127.0.0.1 port=%d,%d dbname=app\n"
	                       "[pgmoat]\n"
	                       "listen_addr = 127.0.0.1\nlisten_port = @PORT@\n"
	                       "unix_socket_dir = @SOCKDIR@\nauth_file = @AUTHFILE@\n"
	                       "auth_type = md5\nworkers = 3\npool_mode = transaction\n"
	                       "default_pool_size = %d\nmax_client_conn = 300\n"
	                       "server_connect_timeout = 2\nserver_login_retry = 0.2\n"
	                       "query_wait_timeout = 20\n"
	                       "health_check_period = 200ms\nhealth_check_failures = 2\n"
	                       "health_check_timeout = 1\nread_routing = auto\n"
	                       "read_your_writes = on\nmax_replica_lag = %d\n",
	                       s->primary->port, s->replica->port, pool, lag);
	bool good = h_moat_write_ini(s->moat, tmpl);
	free(tmpl);
	return good;
}

/* The first value of `sql` as superuser on `pg`, or NULL (no rows, error). */
static char *super_value(struct h_pg *pg, const char *sql)
{
	PGresult *r = PQexec(h_pg_super(pg), sql);
	char *v = NULL;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
		v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

static void setup(struct soak *s)
{
	struct h_pg_opts o = {.conf = "deadlock_timeout = 50ms\nsynchronous_commit = on\n"};
	s->primary = h_pg_start(&o);
	h_pg_create_app(s->primary, "app", "app", "app");
	PGconn *c = h_pg_connect(s->primary, "app", "app");
	if (!h_exec(c,
	            "create table ledger(id bigint not null, writer int, mode int, k1 int, "
	            "n1 bigint, k2 int, n2 bigint)") ||
	    !h_exec(c, "create index on ledger(id)") ||
	    !h_exec(c, "create table counters(k int primary key, n bigint not null)") ||
	    !h_exec(c, "insert into counters select g, 0 from generate_series(0, 15) g") ||
	    !h_exec(c, "create table ryw(id bigint not null, reader int)") ||
	    !h_exec(c, "create index on ryw(id)"))
		h_bail("cannot create the tables");
	PQfinish(c);
	s->replica = h_pg_start_replica(s->primary);
	if (!h_pg_wait_replay(s->replica, s->primary, 60))
		h_bail("the replica does not replay");
	s->moat = h_moat_new(s->primary);
	if (!h_moat_write_userlist(s->moat, "\"app\" \"app\"\n") || !write_ini(s) ||
	    !h_moat_start(s->moat, NULL))
		h_bail("pgmoat did not start");
	diag("primary on port %d, replica on %d, pgmoat on %d", s->primary->port, s->replica->port,
	     s->moat->port);
}

static void start_clients(struct soak *s)
{
	char *conninfo = h_strdupf("host=127.0.0.1 port=%d user=app password=app dbname=app "
	                           "sslmode=disable connect_timeout=10",
	                           s->moat->port);
	s->n = s->n_writers + s->n_readers;
	s->clients = calloc((size_t)s->n, sizeof(*s->clients));
	if (!s->clients)
		h_bail("out of memory");
	for (int i = 0; i < s->n; i++) {
		struct soak_client *c = &s->clients[i];
		c->index = i;
		c->reader = i >= s->n_writers;
		c->conninfo = conninfo;
		c->stop = &s->stop;
		pthread_mutex_init(&c->cancel_lock, NULL);
		atomic_store(&c->progress_usec, soak_usec());
		if (pthread_create(&c->thread, NULL, soak_client_run, c) != 0)
			h_bail("cannot start client thread %d", i);
	}
}

/* A stuck client (or pgmoat gone) ends the run at once: the logs tell. */
static void watchdog(struct soak *s)
{
	long long now = soak_usec();
	for (int i = 0; i < s->n; i++) {
		struct soak_client *c = &s->clients[i];
		long long idle = now - atomic_load(&c->progress_usec);
		if (!atomic_load(&c->finished) && idle > HANG_S * 1000000LL) {
			ok(false, "client %d (%s) made no progress for %lld s, %s", i,
			   c->reader ? "reader" : "writer", idle / 1000000,
			   soak_phase_name(atomic_load(&c->phase)));
			char *act =
			        super_value(s->primary,
			                    "select string_agg(pid || ' ' || state || ' ' || "
			                    "left(query, 60), E'\\n') from pg_stat_activity where "
			                    "usename = 'app'");
			h_diag_text("primary backends: ", act ? act : "(none)");
			free(act);
			h_bail("a client is stuck: violation");
		}
	}
	if (!h_moat_alive(s->moat)) {
		ok(false, "pgmoat is running");
		h_bail("pgmoat exited during the soak: violation");
	}
}

static void terminate_one(struct soak *s, bool on_replica)
{
	char *v = super_value(on_replica ? s->replica : s->primary,
	                      "select pg_terminate_backend(pid) from pg_stat_activity where "
	                      "usename = 'app' and backend_type = 'client backend' order by "
	                      "random() limit 1");
	if (v && strcmp(v, "t") == 0)
		s->events[on_replica ? EV_TERM_REPLICA : EV_TERM_PRIMARY]++;
	free(v);
}

static void set_replay(struct soak *s, bool pause)
{
	PGresult *r =
	        PQexec(h_pg_super(s->replica),
	               pause ? "select pg_wal_replay_pause()" : "select pg_wal_replay_resume()");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		h_diag_text("replay pause/resume: ", PQresultErrorMessage(r));
	PQclear(r);
	s->paused = pause;
}

static void chaos_tick(struct soak *s)
{
	double now = h_now();
	if (chance(s) < RATE_KILL * TICK) {
		int i = (int)(chance(s) * s->n);
		enum soak_kill how = chance(s) < 0.5 ? KILL_RST : KILL_FIN;
		int none = KILL_NONE;
		if (atomic_compare_exchange_strong(&s->clients[i].kill_req, &none, (int)how))
			s->events[how == KILL_RST ? EV_KILL_RST : EV_KILL_FIN]++;
	}
	if (chance(s) < RATE_CANCEL * TICK &&
	    soak_client_cancel(&s->clients[(int)(chance(s) * s->n)]))
		s->events[EV_CANCEL]++;
	if (chance(s) < RATE_TERMINATE * TICK)
		terminate_one(s, chance(s) < 0.25);
	if (chance(s) < RATE_RELOAD * TICK) {
		s->flip = !s->flip;
		if (write_ini(s) && h_moat_reload(s->moat, "configuration reloaded"))
			s->events[EV_RELOAD]++;
		else
			s->reload_failures++;
	}
	if (s->paused && now >= s->resume_at) {
		set_replay(s, false);
	} else if (!s->paused && chance(s) < RATE_PAUSE * TICK) {
		set_replay(s, true);
		s->resume_at = now + 0.5 + 2.5 * chance(s);
		s->events[EV_PAUSE]++;
	}
}

static void stop_clients(struct soak *s)
{
	atomic_store(&s->stop, true);
	if (s->paused)
		set_replay(s, false);
	double end = h_now() + HANG_S + 5;
	for (;;) {
		int running = 0;
		for (int i = 0; i < s->n; i++)
			running += !atomic_load(&s->clients[i].finished);
		if (running == 0)
			break;
		if (h_now() > end)
			watchdog(s); /* bails with the stuck client */
		h_nap(TICK);
	}
	for (int i = 0; i < s->n; i++)
		pthread_join(s->clients[i].thread, NULL);
}

/* Per transaction: how many rows the database holds of it. */
struct tally {
	long committed, failed, doubt, doubt_there, doubt_absent;
	long lost, doubled, failed_there, unknown, rows;
	char first[200];
};

static void note(struct tally *t, const char *what, long long id, int count)
{
	if (!t->first[0])
		snprintf(t->first, sizeof(t->first), "txn %lld (client %lld, #%lld) %s: %d row(s)",
		         id, id >> 32, id & 0xffffffffLL, what, count);
}

/* Reads `sql` (id, count) row by row and checks it against the outcomes
 * of clients [from, to). */
static void check_rows(struct soak *s, PGconn *db, const char *sql, int from, int to,
                       struct tally *t)
{
	unsigned char **seen = calloc((size_t)s->n, sizeof(*seen));
	for (int i = from; i < to; i++)
		seen[i] = calloc(s->clients[i].n + 1, 1);
	if (!PQsendQuery(db, sql) || !PQsetSingleRowMode(db))
		h_bail("cannot read the rows back: %s", PQerrorMessage(db));
	PGresult *r;
	while ((r = PQgetResult(db)) != NULL) {
		if (PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
			long long id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
			int count = atoi(PQgetvalue(r, 0, 1));
			int who = (int)(id >> 32);
			size_t seq = (size_t)(id & 0xffffffffLL);
			t->rows += count;
			if (who < from || who >= to || seq >= s->clients[who].n ||
			    s->clients[who].out[seq] == SOAK_NONE) {
				t->unknown++;
				note(t, "was never written", id, count);
			} else {
				seen[who][seq] = (unsigned char)(count > 200 ? 200 : count);
			}
		} else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			h_bail("reading the rows back: %s", PQresultErrorMessage(r));
		}
		PQclear(r);
	}
	for (int i = from; i < to; i++) {
		struct soak_client *c = &s->clients[i];
		for (size_t q = 0; q < c->n; q++) {
			int n = seen[i][q];
			long long id = ((long long)i << 32) | (long long)q;
			switch (c->out[q]) {
			case SOAK_COMMITTED:
				t->committed++;
				if (n == 0) {
					t->lost++;
					note(t, "committed, not there", id, n);
				}
				break;
			case SOAK_FAILED:
				t->failed++;
				if (n > 0) {
					t->failed_there++;
					note(t, "failed, yet there", id, n);
				}
				break;
			case SOAK_DOUBT:
				t->doubt++;
				t->doubt_there += n == 1;
				t->doubt_absent += n == 0;
				break;
			default:
				break;
			}
			if (n > 1) {
				t->doubled++;
				note(t, "is there more than once", id, n);
			}
		}
		free(seen[i]);
	}
	free(seen);
}

/* Per key: the ledger holds exactly the values 1..n the bumps produced. */
static long check_counters(PGconn *db, long *bumps)
{
	PGresult *r = PQexec(db,
	                     "with e as (select k1 as k, n1 as v from ledger union all "
	                     "select k2, n2 from ledger) "
	                     "select c.k, c.n, count(e.v), count(distinct e.v), "
	                     "coalesce(min(e.v), 0), coalesce(max(e.v), 0) "
	                     "from counters c left join e on e.k = c.k "
	                     "group by c.k, c.n order by c.k");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		h_bail("reading the counters: %s", PQresultErrorMessage(r));
	long bad = 0;
	*bumps = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		long n = atol(PQgetvalue(r, i, 1)), cnt = atol(PQgetvalue(r, i, 2));
		long distinct = atol(PQgetvalue(r, i, 3)), lo = atol(PQgetvalue(r, i, 4));
		long hi = atol(PQgetvalue(r, i, 5));
		*bumps += n;
		if (cnt != n || distinct != n || (n > 0 && (lo != 1 || hi != n))) {
			bad++;
			diag("key %s: counter %ld, ledger holds %ld values (%ld distinct, "
			     "%ld..%ld)",
			     PQgetvalue(r, i, 0), n, cnt, distinct, lo, hi);
		}
	}
	PQclear(r);
	return bad;
}

static const char *const SUMMARY =
        "select (select count(*) || ' ' || coalesce(sum(id), 0) || ' ' || "
        "coalesce(sum(n1 + n2), 0) from ledger) || ' / ' || (select string_agg(k || '=' || "
        "n, ',' order by k) from counters) || ' / ' || (select count(*) || ' ' || "
        "coalesce(sum(id), 0) from ryw)";

static bool replica_converged(struct soak *s)
{
	if (!h_pg_wait_replay(s->replica, s->primary, 60))
		return false;
	PGconn *p = h_pg_connect(s->primary, "postgres", "app");
	PGconn *r = h_pg_connect(s->replica, "postgres", "app");
	char *a = h_value(p, SUMMARY), *b = h_value(r, SUMMARY);
	bool same = a && b && strcmp(a, b) == 0;
	if (!same) {
		diag("primary: %s", a ? a : "?");
		diag("replica: %s", b ? b : "?");
	}
	free(a);
	free(b);
	PQfinish(p);
	PQfinish(r);
	return same;
}

static int verify(struct soak *s, double ran)
{
	PGconn *db = h_pg_connect(s->primary, "postgres", "app");
	struct tally w, rd;
	memset(&w, 0, sizeof(w));
	memset(&rd, 0, sizeof(rd));
	check_rows(s, db, "select id, count(*) from ledger group by id", 0, s->n_writers, &w);
	check_rows(s, db, "select id, count(*) from ryw group by id", s->n_writers, s->n, &rd);
	long bumps = 0, bad_keys = check_counters(db, &bumps);
	PQfinish(db);

	long canceled = 0, unexpected = 0, connects = 0, connect_failures = 0, deliberate = 0;
	long ryw_checked = 0, ryw_missed = 0, ryw_unchecked = 0, on_replica = 0;
	long modes[MODE_COUNT] = {0}, killed[3] = {0};
	const char *first_error = NULL, *first_connect = NULL, *ryw_detail = NULL;
	for (int i = 0; i < s->n; i++) {
		struct soak_client *c = &s->clients[i];
		unexpected += c->unexpected;
		canceled += c->canceled;
		connects += c->connects;
		connect_failures += c->connect_failures;
		deliberate += c->deliberate;
		ryw_checked += c->ryw_checked;
		ryw_missed += c->ryw_missed;
		ryw_unchecked += c->ryw_unchecked;
		on_replica += c->reads_on_replica;
		for (int m = 0; m < MODE_COUNT; m++)
			modes[m] += c->by_mode[m];
		killed[KILL_RST] += c->killed[KILL_RST];
		killed[KILL_FIN] += c->killed[KILL_FIN];
		if (!first_error && c->first_error[0])
			first_error = c->first_error;
		if (!first_connect && c->first_connect_error[0])
			first_connect = c->first_connect_error;
		if (!ryw_detail && c->ryw_detail[0])
			ryw_detail = c->ryw_detail;
	}

	ok(w.committed + rd.committed > 0 && w.lost + rd.lost == 0 && w.doubled + rd.doubled == 0,
	   "every transaction a client saw commit is there exactly once (%ld)",
	   w.committed + rd.committed);
	ok(w.failed_there + rd.failed_there == 0, "no transaction a client saw fail is there (%ld)",
	   w.failed + rd.failed);
	ok(w.doubled + rd.doubled == 0,
	   "in-doubt transactions are whole or absent, never twice (%ld: %ld there, %ld absent)",
	   w.doubt + rd.doubt, w.doubt_there + rd.doubt_there, w.doubt_absent + rd.doubt_absent);
	ok(w.unknown + rd.unknown == 0, "no row that no client wrote");
	if (w.first[0])
		diag("ledger: %s", w.first);
	if (rd.first[0])
		diag("ryw: %s", rd.first);
	ok(bad_keys == 0,
	   "counters match the ledger key by key, values 1..n: no half-done transaction "
	   "(%d keys, %ld bumps)",
	   SOAK_KEYS, bumps);
	ok(ryw_checked > 0 && ryw_missed == 0,
	   "read-your-writes: %ld reads of a row just committed (%ld on the replica), %ld missed",
	   ryw_checked, on_replica, ryw_missed);
	if (ryw_detail)
		diag("first miss: %s", ryw_detail);
	ok(unexpected == 0, "no unexpected error or transaction warning (%ld)", unexpected);
	if (first_error)
		diag("first: %s", first_error);
	bool converged = replica_converged(s);
	ok(converged, "the replica converges to the primary");
	ok(s->reload_failures == 0, "every reload confirmed in pgmoat's log (%ld failed)",
	   s->reload_failures);
	bool chaos = killed[KILL_RST] > 0 && killed[KILL_FIN] > 0 &&
	        s->events[EV_TERM_PRIMARY] > 0 && s->events[EV_RELOAD] > 0 &&
	        s->events[EV_PAUSE] > 0 && s->events[EV_CANCEL] > 0;
	ok(chaos, "chaos of every kind happened");

	long violations = w.lost + rd.lost + w.doubled + rd.doubled + w.failed_there +
	        rd.failed_there + w.unknown + rd.unknown + bad_keys + ryw_missed + unexpected +
	        !converged + s->reload_failures;
	diag("---- soak figures: %.0f s, %d writers, %d readers ----", ran, s->n_writers,
	     s->n_readers);
	diag("writer transactions: %ld committed, %ld failed (%ld on purpose), %ld in doubt "
	     "(%ld there, %ld absent); %.0f committed/s",
	     w.committed, w.failed, deliberate, w.doubt, w.doubt_there, w.doubt_absent,
	     w.committed / ran);
	diag("  by mode: %ld step, %ld prepared, %ld pipeline, %ld simple query", modes[MODE_STEP],
	     modes[MODE_PREPARED], modes[MODE_PIPELINE], modes[MODE_SIMPLE]);
	diag("reader inserts: %ld committed, %ld failed, %ld in doubt; read-your-writes reads: "
	     "%ld checked (%ld on the replica), %ld missed, %ld not answered",
	     rd.committed, rd.failed, rd.doubt, ryw_checked, on_replica, ryw_missed, ryw_unchecked);
	diag("queries canceled (57014): %ld", canceled);
	diag("connections: %ld opened, %ld failed%s%s", connects, connect_failures,
	     first_connect ? "; first: " : "", first_connect ? first_connect : "");
	diag("chaos: %ld + %ld kill requests carried out (%ld RST, %ld FIN)",
	     s->events[EV_KILL_RST], s->events[EV_KILL_FIN], killed[KILL_RST], killed[KILL_FIN]);
	for (int e = EV_TERM_PRIMARY; e < EV_N; e++)
		diag("  %ld %s", s->events[e], event_names[e]);
	diag("rows checked: %ld ledger, %ld ryw; counter bumps %ld", w.rows, rd.rows, bumps);
	diag("violations: %ld", violations);
	return (int)violations;
}

int main(int argc, char **argv)
{
	struct soak s;
	memset(&s, 0, sizeof(s));
	s.seconds = argc > 1 ? atof(argv[1]) : 60;
	if (s.seconds <= 0 || s.seconds > 7 * 24 * 3600) {
		fprintf(stderr, "usage: soak [SECONDS]\n");
		return 2;
	}
	s.n_writers = getenv("PGMOAT_SOAK_WRITERS") ? atoi(getenv("PGMOAT_SOAK_WRITERS")) : 24;
	s.n_readers = getenv("PGMOAT_SOAK_READERS") ? atoi(getenv("PGMOAT_SOAK_READERS")) : 4;
	if (s.n_writers < 1 || s.n_writers > 200 || s.n_readers < 1 || s.n_readers > 50) {
		fprintf(stderr, "soak: 1..200 writers and 1..50 readers\n");
		return 2;
	}
	s.rand = 88172645u;
	h_init("soak", (int)s.seconds + 600);
	setup(&s);
	start_clients(&s);
	double t0 = h_now(), end = t0 + s.seconds;
	long rss_start = -1;
	while (h_now() < end) {
		h_nap(TICK);
		watchdog(&s);
		chaos_tick(&s);
		/* pgmoat's memory once the pools and caches are warm. */
		if (rss_start < 0 && h_now() - t0 >= 10)
			rss_start = h_proc_kib(s.moat->pid, "VmRSS:");
	}
	long rss_end = h_proc_kib(s.moat->pid, "VmRSS:"), hwm = h_proc_kib(s.moat->pid, "VmHWM:");
	stop_clients(&s);
	double ran = h_now() - t0;
	ok(h_moat_alive(s.moat), "pgmoat ran %.0f s under chaos: no crash, no client stuck %d s",
	   ran, HANG_S);
	verify(&s, ran);
	diag("pgmoat RSS: %ld KiB after 10 s, %ld KiB at the end, peak %ld KiB", rss_start, rss_end,
	     hwm);
	return h_done();
}
