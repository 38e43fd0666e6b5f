/* Protocol-level named prepared statements in transaction pooling, where
 * they must behave exactly as PostgreSQL's own (the same steps run first on
 * a direct connection, so a failure shows pgmoat's difference):
 *
 * - Close, then the same name prepared for other SQL (raw protocol: libpq 15
 *   has no PQclosePrepared); a Close or Parse after an error in the same
 *   sync block is skipped, as by PostgreSQL;
 * - the errors for names, 42P05 and 26000, and a Parse with a syntax error,
 *   in and out of transaction blocks (25P02 until ROLLBACK). */
#include <config.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

/* --- 4. Close, then the same name for other SQL (raw protocol) */

/* The messages of one round trip, sent in one write (as libpq does). */
struct wbuf {
	char d[1024];
	size_t n, start;
	bool overflow;
};

static void wb_bytes(struct wbuf *b, const void *p, size_t n)
{
	if (b->n + n > sizeof b->d) {
		b->overflow = true;
		return;
	}
	memcpy(b->d + b->n, p, n);
	b->n += n;
}

static void wb_str(struct wbuf *b, const char *s)
{
	wb_bytes(b, s, strlen(s) + 1);
}

static void wb_u16(struct wbuf *b, uint16_t v)
{
	v = htons(v);
	wb_bytes(b, &v, 2);
}

static void wb_begin(struct wbuf *b, char type)
{
	b->start = b->n;
	wb_bytes(b, &type, 1);
	wb_bytes(b, "\0\0\0\0", 4);
}

static void wb_end(struct wbuf *b)
{
	if (b->overflow)
		return;
	uint32_t len = htonl((uint32_t)(b->n - b->start - 1));
	memcpy(b->d + b->start + 1, &len, 4);
}

static bool wb_send(int fd, struct wbuf *b)
{
	bool sent = !b->overflow && wire_send(fd, b->d, b->n);
	b->n = 0;
	b->overflow = false;
	return sent;
}

static void w_parse(struct wbuf *b, const char *name, const char *sql)
{
	wb_begin(b, 'P');
	wb_str(b, name);
	wb_str(b, sql);
	wb_u16(b, 0);
	wb_end(b);
}

/* Bind of `stmt` to the unnamed portal, no parameters, then Execute. */
static void w_bind_execute(struct wbuf *b, const char *stmt)
{
	wb_begin(b, 'B');
	wb_str(b, "");
	wb_str(b, stmt);
	wb_u16(b, 0);
	wb_u16(b, 0);
	wb_u16(b, 0);
	wb_end(b);
	wb_begin(b, 'E');
	wb_str(b, ""); /* unnamed portal */
	wb_bytes(b, "\0\0\0\0", 4); /* no row limit */
	wb_end(b);
}

static void w_close(struct wbuf *b, const char *name)
{
	wb_begin(b, 'C');
	wb_bytes(b, "S", 1);
	wb_str(b, name);
	wb_end(b);
}

/* A message without a body: Sync, Flush. */
static void w_flag(struct wbuf *b, char type)
{
	wb_begin(b, type);
	wb_end(b);
}

struct wreply {
	char types[32]; /* message types up to ReadyForQuery */
	char value[64]; /* first column of the first DataRow */
	char state[6]; /* of the first ErrorResponse */
};

/* Reads up to a message of type `stop` or ReadyForQuery, adding to `r`;
 * "types" ends in '?' on timeout or EOF. */
static void w_read(int fd, struct wreply *r, char stop)
{
	for (size_t i = strlen(r->types); i + 2 < sizeof r->types; i++) {
		struct wire_msg msg;
		if (wire_read_msg(fd, &msg, 30) != 1) {
			r->types[i] = '?';
			return;
		}
		r->types[i] = msg.type;
		if (msg.type == 'D' && !r->value[0] && msg.len >= 6) {
			uint32_t len;
			memcpy(&len, msg.body + 2, 4);
			len = ntohl(len);
			if (len < sizeof r->value && len <= msg.len - 6)
				memcpy(r->value, msg.body + 6, len);
		}
		if (msg.type == 'E' && !r->state[0])
			wire_error_field(&msg, 'C', r->state, sizeof r->state);
		char type = msg.type;
		wire_msg_free(&msg);
		if (type == stop || type == 'Z')
			return;
	}
}

/* One round trip: up to five messages, then Sync.  'P' is Parse of `name`
 * as `sql`, 'B' Bind of statement `name` to the unnamed portal and
 * Execute, 'C' Close of statement `name`, 'H' a Flush after which the
 * replies are read up to an ErrorResponse before anything else is sent. */
struct wop {
	char op;
	const char *name;
	const char *sql;
};

struct wstep {
	struct wop ops[5];
	const char *want; /* reply types, first value, SQLSTATE of the error */
	const char *what;
	bool fresh; /* on a new connection */
};

static const struct wstep wsteps[] = {
        {{{'P', "c1", "select 'first'::text"}, {'B', "c1", NULL}},
         "12DCZ first",
         "Parse c1, Bind, Execute",
         false},
        {{{'C', "c1", NULL}}, "3Z", "Close c1: CloseComplete", false},
        {{{'B', "c1", NULL}}, "EZ 26000", "Bind of c1 after its Close", false},
        {{{'P', "c1", "select 'second'::text"}, {'B', "c1", NULL}},
         "12DCZ second",
         "c1 prepared again for other SQL gives the new result",
         false},
        {{{'C', "c1", NULL}, {'P', "c1", "select 'third'::text"}, {'B', "c1", NULL}},
         "312DCZ third",
         "Close, Parse of c1 for other SQL, Bind, Execute in one round trip",
         false},
        {{{'C', "c1", NULL}, {'P', "c1", "select 'second'::text"}, {'B', "c1", NULL}},
         "312DCZ second",
         "the same, back to SQL c1 had before",
         false},
        {{{'C', "never_defined", NULL}}, "3Z", "Close of a name never defined is no error", false},
        /* After an error the server skips everything up to Sync: a Close or
         * Parse there does nothing. */
        {{{'B', "nosuch", NULL}, {'C', "c1", NULL}}, "EZ 26000", "error, then Close c1", false},
        {{{'B', "c1", NULL}}, "2DCZ second", "c1 is still there: the Close was skipped", false},
        {{{'B', "nosuch", NULL}, {'P', "c9", "select 'ninth'::text"}},
         "EZ 26000",
         "error, then Parse c9",
         false},
        {{{'B', "c9", NULL}}, "EZ 26000", "c9 is not there: the Parse was skipped", false},
        /* The same, with the error read before the rest is sent; each on
         * a new connection (a lost one would fail the steps after it). */
        {{{'P', "c1", "select 'second'::text"}, {'B', "c1", NULL}},
         "12DCZ second",
         "new connection: c1 prepared",
         true},
        {{{'B', "nosuch", NULL},
          {'H', NULL, NULL},
          {'P', "c9", "select 'ninth'::text"},
          {'B', "c9", NULL}},
         "EZ 26000",
         "error read after a Flush, then Parse c9, Bind, Execute: skipped",
         false},
        {{{'B', "c9", NULL}}, "EZ 26000", "c9 is not there", false},
        {{{'P', "c1", "select 'second'::text"}, {'B', "c1", NULL}},
         "12DCZ second",
         "new connection: c1 prepared",
         true},
        {{{'B', "nosuch", NULL},
          {'H', NULL, NULL},
          {'P', "c10", "select 'second'::text"},
          {'B', "c10", NULL}},
         "EZ 26000",
         "error read after a Flush, then Parse c10 as SQL the server has: skipped",
         false},
        {{{'B', "c10", NULL}}, "EZ 26000", "c10 is not there", false},
        {{{'P', "c1", "select 'second'::text"}, {'B', "c1", NULL}},
         "12DCZ second",
         "new connection: c1 prepared",
         true},
        {{{'B', "nosuch", NULL}, {'H', NULL, NULL}, {'C', "c1", NULL}},
         "EZ 26000",
         "error read after a Flush, then Close c1: skipped",
         false},
        {{{'B', "c1", NULL}}, "2DCZ second", "c1 is still there", false},
};

#define N_WSTEPS (sizeof wsteps / sizeof wsteps[0])

/* Runs one round trip; its replies as "types value state" (malloc'd). */
static char *wire_step(int fd, const struct wstep *st)
{
	struct wreply r;
	struct wbuf b;
	memset(&r, 0, sizeof r);
	memset(&b, 0, sizeof b);
	for (size_t i = 0; i < 5 && st->ops[i].op; i++) {
		const struct wop *o = &st->ops[i];
		if (o->op == 'P') {
			w_parse(&b, o->name, o->sql);
		} else if (o->op == 'B') {
			w_bind_execute(&b, o->name);
		} else if (o->op == 'C') {
			w_close(&b, o->name);
		} else {
			w_flag(&b, 'H');
			wb_send(fd, &b);
			w_read(fd, &r, 'E');
		}
	}
	w_flag(&b, 'S');
	wb_send(fd, &b);
	w_read(fd, &r, 'Z');
	return h_strdupf("%s%s%s%s%s", r.types, r.value[0] ? " " : "", r.value,
	                 r.state[0] ? " " : "", r.state);
}

static int wire_client(int port, const char *db)
{
	int fd = wire_connect(port);
	struct wire_login l;
	if (fd < 0 || !wire_login(fd, 0, "app", db, "app", &l) || !l.ok)
		h_bail("no raw connection to port %d", port);
	return fd;
}

/* libpq 15 has no PQclosePrepared: the raw client sends Close.  Through
 * pool "one" (one server), so a statement prepared once is there for the
 * next round trips. */
static void close_reprepare(struct h_pg *pg, struct h_moat *m)
{
	int direct = -1, fd = -1;
	int direct_bad = 0;
	for (size_t i = 0; i < N_WSTEPS; i++) {
		if (direct < 0 || wsteps[i].fresh) {
			if (direct >= 0)
				close(direct);
			direct = wire_client(pg->port, "app");
		}
		char *d = wire_step(direct, &wsteps[i]);
		if (strcmp(d, wsteps[i].want) != 0) {
			diag("PostgreSQL itself, close step %zu (%s): '%s'", i + 1, wsteps[i].what,
			     d);
			direct_bad++;
		}
		free(d);
	}
	is_int(direct_bad, 0, "close: PostgreSQL itself gives the expected replies (direct)");
	for (size_t i = 0; i < N_WSTEPS; i++) {
		if (fd < 0 || wsteps[i].fresh) {
			if (fd >= 0)
				close(fd);
			fd = wire_client(m->port, "one");
		}
		char *got = wire_step(fd, &wsteps[i]);
		is_str(got, wsteps[i].want, "close %zu: %s", i + 1, wsteps[i].what);
		free(got);
	}
	close(direct);
	close(fd);
}

/* --- 5 and 6. errors for names, syntax errors: as PostgreSQL */

enum step_kind { ST_PREP, ST_EXEC, ST_DESC, ST_SQL, ST_STATUS };

struct step {
	enum step_kind kind;
	const char *name;
	const char *sql;
	const char *want;
};

#define ABORTED                                                                                    \
	"25P02 current transaction is aborted, commands ignored until end of transaction block"

static const struct step steps[] = {
        {ST_PREP, "e1", "select 1", "ok"},
        {ST_PREP, "e1", "select 2", "42P05 prepared statement \"e1\" already exists"},
        {ST_PREP, "e1", "select 1", "42P05 prepared statement \"e1\" already exists"},
        {ST_EXEC, "e1", NULL, "ok 1"},
        {ST_EXEC, "nosuch", NULL, "26000 prepared statement \"nosuch\" does not exist"},
        {ST_DESC, "nosuch", NULL, "26000 prepared statement \"nosuch\" does not exist"},
        {ST_SQL, NULL, "select 'alive'", "ok alive"},
        {ST_SQL, NULL, "begin", "ok"},
        {ST_EXEC, "e1", NULL, "ok 1"},
        {ST_PREP, "e1", "select 2", "42P05 prepared statement \"e1\" already exists"},
        {ST_STATUS, NULL, NULL, "in failed transaction"},
        {ST_SQL, NULL, "select 1", ABORTED},
        {ST_EXEC, "e1", NULL, ABORTED},
        {ST_PREP, "e2", "select 1", ABORTED}, /* SQL the server has (e1's) */
        {ST_PREP, "e3", "select 3", ABORTED},
        {ST_DESC, "e1", NULL, ABORTED},
        {ST_SQL, NULL, "rollback", "ok"},
        {ST_STATUS, NULL, NULL, "idle"},
        {ST_PREP, "e2", "select 1", "ok"},
        {ST_PREP, "e3", "select 3", "ok"},
        {ST_EXEC, "e2", NULL, "ok 1"},
        {ST_EXEC, "e3", NULL, "ok 3"},
        {ST_SQL, NULL, "begin", "ok"},
        {ST_EXEC, "nosuch", NULL, "26000 prepared statement \"nosuch\" does not exist"},
        {ST_STATUS, NULL, NULL, "in failed transaction"},
        {ST_SQL, NULL, "select 1", ABORTED},
        {ST_EXEC, "e1", NULL, ABORTED},
        {ST_SQL, NULL, "rollback", "ok"},
        {ST_EXEC, "e1", NULL, "ok 1"},
        /* A Parse that fails does not define the name. */
        {ST_PREP, "bad", "selec 1", "42601 syntax error at or near \"selec\""},
        {ST_EXEC, "bad", NULL, "26000 prepared statement \"bad\" does not exist"},
        {ST_PREP, "bad", "select 7", "ok"},
        {ST_EXEC, "bad", NULL, "ok 7"},
        {ST_SQL, NULL, "begin", "ok"},
        {ST_PREP, "bad2", "selec 8", "42601 syntax error at or near \"selec\""},
        {ST_SQL, NULL, "select 1", ABORTED},
        {ST_SQL, NULL, "rollback", "ok"},
        {ST_PREP, "bad2", "select 8", "ok"},
        {ST_EXEC, "bad2", NULL, "ok 8"},
        {ST_SQL, NULL, "select 'alive'", "ok alive"},
};

#define N_STEPS (sizeof steps / sizeof steps[0])

static char *run_step(PGconn *c, const struct step *s)
{
	switch (s->kind) {
	case ST_PREP:
		return h_result_text(c, PQprepare(c, s->name, s->sql, 0, NULL));
	case ST_EXEC:
		return h_result_text(c, PQexecPrepared(c, s->name, 0, NULL, NULL, NULL, 0));
	case ST_DESC:
		return h_result_text(c, PQdescribePrepared(c, s->name));
	case ST_SQL:
		return h_result_text(c, PQexec(c, s->sql));
	case ST_STATUS:
		break;
	}
	switch (PQtransactionStatus(c)) {
	case PQTRANS_IDLE:
		return h_strdupf("idle");
	case PQTRANS_INTRANS:
		return h_strdupf("in transaction");
	case PQTRANS_INERROR:
		return h_strdupf("in failed transaction");
	default:
		return h_strdupf("status %d", (int)PQtransactionStatus(c));
	}
}

static const char *step_label(const struct step *s, char *buf, size_t n)
{
	switch (s->kind) {
	case ST_PREP:
		snprintf(buf, n, "PQprepare %s as '%s'", s->name, s->sql);
		break;
	case ST_EXEC:
		snprintf(buf, n, "PQexecPrepared %s", s->name);
		break;
	case ST_DESC:
		snprintf(buf, n, "PQdescribePrepared %s", s->name);
		break;
	case ST_SQL:
		snprintf(buf, n, "%s", s->sql);
		break;
	case ST_STATUS:
		snprintf(buf, n, "transaction status");
		break;
	}
	return buf;
}

static void errors_as_postgresql(struct h_pg *pg, struct h_moat *m)
{
	PGconn *direct = h_pg_connect(pg, "app", "app");
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	if (!h_connected(direct) || !h_connected(c))
		h_bail("no connection for the error steps");
	char *got[N_STEPS];
	int direct_bad = 0;
	for (size_t i = 0; i < N_STEPS; i++) {
		char *d = run_step(direct, &steps[i]);
		if (strcmp(d, steps[i].want) != 0) {
			char label[128];
			diag("PostgreSQL itself, step %zu (%s): '%s'", i + 1,
			     step_label(&steps[i], label, sizeof label), d);
			direct_bad++;
		}
		free(d);
	}
	is_int(direct_bad, 0, "errors: PostgreSQL itself gives the expected results (direct)");
	for (size_t i = 0; i < N_STEPS; i++)
		got[i] = run_step(c, &steps[i]);
	for (size_t i = 0; i < N_STEPS; i++) {
		char label[128];
		is_str(got[i], steps[i].want, "errors %zu: %s", i + 1,
		       step_label(&steps[i], label, sizeof label));
		free(got[i]);
	}
	PQfinish(direct);
	PQfinish(c);
}

int main(void)
{
	h_init("t_prepared_errors", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	const char *ini = "[databases]\n"
	                  "app = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=5\n"
	                  "one = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=1\n"
	                  "\n"
	                  "[pgmoat]\n"
	                  "listen_addr = 127.0.0.1\n"
	                  "listen_port = @PORT@\n"
	                  "unix_socket_dir = @SOCKDIR@\n"
	                  "auth_type = trust\n"
	                  "auth_file = @AUTHFILE@\n"
	                  "workers = 2\n"
	                  "pool_mode = transaction\n";
	if (!h_moat_write_userlist(m, "\"app\" \"app\"\n") || !h_moat_write_ini(m, ini) ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");
	tap_plan(1 + (int)N_WSTEPS /* close */ + 1 + (int)N_STEPS /* errors */ + 1 /* alive */ +
	         1 /* h_done */);
	close_reprepare(pg, m);
	errors_as_postgresql(pg, m);
	ok(h_moat_alive(m), "pgmoat still running");
	return h_done();
}
