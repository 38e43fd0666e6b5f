/* Limits on logging in.  Failed-login throttling per source address
 * (login_failure_limit, _window, _cooldown, _delay): 20 wrong passwords
 * from 127.0.0.2 start a cool-down, logged once with the address; then even
 * the right password from there is held for about login_failure_delay and
 * refused with 28000, while 127.0.0.3, 127.0.0.1 and the Unix socket log in
 * as usual; a successful login resets the count (127.0.0.4).
 * client_login_timeout: a slowloris client sending its startup packet one
 * byte per second, a silent client and one that stops in the middle of the
 * md5 exchange are each closed with 08P01 after the timeout, while 50 libpq
 * clients log in and query normally and, logged in for longer than the
 * timeout, are left alone. */
#include <config.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/gate.h"
#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

#define LIMIT 20
#define THROTTLE_MSG "too many failed login attempts from this address: try again later"
#define TIMEOUT_MSG "client_login_timeout: login not completed in time"
#define CROWD 50

/* --- log helpers */

/* The log of `m` past the mark (malloc'd; "" if unreadable). */
static char *log_text(struct h_moat *m)
{
	size_t len = 0;
	char *all = h_read_file(m->log, &len);
	if (!all)
		return strdup("");
	if (m->log_mark <= len)
		memmove(all, all + m->log_mark, len - m->log_mark + 1);
	return all;
}

/* Lines of `m`'s log past the mark holding `needle`. */
static int log_count(struct h_moat *m, const char *needle)
{
	char *text = log_text(m);
	int n = 0;
	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(text);
	return n;
}

/* Whether a line of `m`'s log past the mark holds both `needle` and
 * `also`. */
static bool logged_with(struct h_moat *m, const char *needle, const char *also)
{
	char *text = log_text(m);
	bool found = false;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line && !found;
	     line = strtok_r(NULL, "\n", &save))
		found = strstr(line, needle) && strstr(line, also);
	if (!found)
		diag("no log line with both '%s' and '%s'", needle, also);
	free(text);
	return found;
}

/* --- throttling */

/* A raw login as app from `src`; `took` (may be NULL) gets its duration. */
static bool login_from(struct h_moat *m, const char *src, const char *pw, struct wire_login *out,
                       double *took)
{
	memset(out, 0, sizeof *out);
	out->auth_code = -1;
	double t0 = h_now();
	int fd = wire_connect_from(src, "127.0.0.1", m->port);
	if (fd < 0)
		return false;
	bool in = wire_login(fd, 0, "app", "app", pw, out);
	if (took)
		*took = h_now() - t0;
	close(fd);
	return in;
}

/* `n` wrong passwords from `src`: how many did not get 28P01. */
static int wrong_logins(struct h_moat *m, const char *src, int n)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		struct wire_login l;
		if (login_from(m, src, "not-app", &l, NULL) || strcmp(l.sqlstate, "28P01") != 0) {
			if (bad++ == 0)
				diag("%s, wrong password #%d: ok %d, '%s' %s", src, i + 1, l.ok,
				     l.sqlstate, l.message);
		}
	}
	return bad;
}

/* The right password from `src` is refused by the throttle. */
static void expect_throttled(struct h_moat *m, const char *src)
{
	struct wire_login l;
	double took = 0;
	bool in = login_from(m, src, "app", &l, &took);
	ok(!in && strcmp(l.sqlstate, "28000") == 0 && strcmp(l.message, THROTTLE_MSG) == 0,
	   "%s: the right password is refused with 28000 '%s' (got %s '%s')", src, THROTTLE_MSG,
	   l.sqlstate, l.message);
	ok(took >= 0.4 && l.auth_code == -1,
	   "%s: held %.2f s (login_failure_delay 0.5 s), never asked for a password (code %d)", src,
	   took, l.auth_code);
}

/* The right password from `src` logs in and a query runs. */
static void expect_login(struct h_moat *m, const char *src)
{
	struct wire_login l;
	memset(&l, 0, sizeof l);
	int fd = wire_connect_from(src, "127.0.0.1", m->port);
	double t0 = h_now();
	bool in = fd >= 0 && wire_login(fd, 0, "app", "app", "app", &l);
	double took = h_now() - t0;
	struct wire_result r;
	memset(&r, 0, sizeof r);
	bool ran = in && wire_query(fd, "select 'q' || 42", 10, &r);
	ok(in && l.auth_code == 5 && ran && strcmp(r.value, "q42") == 0,
	   "%s: the right password logs in (md5, %.2f s) and a query runs (%s%s)", src, took,
	   in ? r.value : l.sqlstate, in ? "" : l.message);
	if (fd >= 0)
		close(fd);
}

static void throttle_limit(struct h_moat *m)
{
	h_moat_log_mark(m);
	is_int(wrong_logins(m, "127.0.0.2", LIMIT - 1), 0,
	       "127.0.0.2: %d wrong passwords each get 28P01", LIMIT - 1);
	ok(!h_moat_log_has(m, "login throttle") && !h_moat_log_has(m, "refused (throttle)"),
	   "no cool-down after %d failures", LIMIT - 1);
	is_int(wrong_logins(m, "127.0.0.2", 1), 0, "the %dth wrong password gets 28P01 too", LIMIT);
	ok(h_moat_log_wait(m,
	                   "login throttle: 20 failed logins from this address within 60 s; "
	                   "it is refused for 30 s",
	                   5),
	   "it starts the cool-down, logged");
	ok(logged_with(m, "login throttle:", " 127.0.0.2:"), "with the address 127.0.0.2");

	expect_throttled(m, "127.0.0.2");
	ok(logged_with(m, "connection refused (throttle)", " 127.0.0.2:"),
	   "the refusal is logged with the address 127.0.0.2");
	struct wire_login l;
	login_from(m, "127.0.0.2", "not-app", &l, NULL);
	is_str(l.sqlstate, "28000", "127.0.0.2: a wrong password is refused the same way (%s)",
	       l.message);
	expect_login(m, "127.0.0.3");
	PGconn *c = h_moat_connect(m, "app", "app", "app");
	char *v = h_connected(c) ? h_value(c, "select 'libpq'") : NULL;
	is_str(v, "libpq", "libpq from 127.0.0.1 logs in and runs a query");
	free(v);
	PQfinish(c);
	char *ci = h_moat_conninfo_unix(m, "app", "app", "app");
	c = h_connect(ci);
	v = h_connected(c) ? h_value(c, "select 'unix'") : NULL;
	is_str(v, "unix", "the Unix socket is never throttled");
	free(v);
	free(ci);
	PQfinish(c);
	expect_throttled(m, "127.0.0.2");
	is_int(log_count(m, "login throttle:"), 1,
	       "the cool-down start was logged once; refused attempts do not count");
	is_int(log_count(m, "connection refused (throttle)"), 3,
	       "each of the 3 refused attempts was logged");
}

static void throttle_reset(struct h_moat *m)
{
	h_moat_log_mark(m);
	const int part = 15;
	is_int(wrong_logins(m, "127.0.0.4", part), 0, "127.0.0.4: %d wrong passwords: 28P01", part);
	expect_login(m, "127.0.0.4");
	is_int(wrong_logins(m, "127.0.0.4", part), 0,
	       "after that success, %d more wrong passwords still get 28P01 (%d in all)", part,
	       2 * part);
	ok(!h_moat_log_has(m, "login throttle") && !h_moat_log_has(m, "refused (throttle)"),
	   "no cool-down: the successful login reset the count");
	is_int(wrong_logins(m, "127.0.0.4", LIMIT - part), 0,
	       "%d more wrong passwords: 28P01 (%d since the success)", LIMIT - part, LIMIT);
	ok(h_moat_log_wait(m, "login throttle: 20 failed logins", 5) &&
	           logged_with(m, "login throttle:", " 127.0.0.4:"),
	   "the %dth failure since the success starts a cool-down for 127.0.0.4", LIMIT);
	expect_throttled(m, "127.0.0.4");
}

/* --- client_login_timeout */

struct crowd_client {
	int id;
	const char *conninfo;
	struct h_gate *gate;
	pthread_t thread;
	bool first_ok, second_ok;
	double logged_in_at;
	char error[256];
};

static bool crowd_query(struct crowd_client *cc, PGconn *c, int n)
{
	char sql[64], want[32];
	snprintf(sql, sizeof sql, "select %d", n);
	snprintf(want, sizeof want, "%d", n);
	PGresult *r = PQexec(c, sql);
	bool good = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	        strcmp(PQgetvalue(r, 0, 0), want) == 0;
	if (!good && !cc->error[0])
		snprintf(cc->error, sizeof cc->error, "client %d, %s: %s", cc->id, sql,
		         PQerrorMessage(c));
	PQclear(r);
	return good;
}

/* One client: log in and run a query, wait at the gate, run another.
 * Nothing here prints: results go to `cc`. */
static void *crowd_thread(void *arg)
{
	struct crowd_client *cc = arg;
	PGconn *c = PQconnectdb(cc->conninfo);
	if (PQstatus(c) == CONNECTION_OK) {
		cc->logged_in_at = h_now();
		cc->first_ok = crowd_query(cc, c, cc->id);
	} else {
		snprintf(cc->error, sizeof cc->error, "client %d, connect: %s", cc->id,
		         PQerrorMessage(c));
	}
	h_gate_arrive(cc->gate, false);
	if (cc->first_ok && h_gate_wait_open(cc->gate))
		cc->second_ok = crowd_query(cc, c, 1000 + cc->id);
	PQfinish(c);
	h_gate_arrive(cc->gate, true);
	return NULL;
}

struct gate_wait {
	struct h_gate *gate;
	bool finished;
};

static bool crowd_there(void *arg)
{
	struct gate_wait *gw = arg;
	return h_gate_count(gw->gate, gw->finished) >= CROWD;
}

/* A StartupMessage for app/app in `pkt`; its length. */
static size_t startup_bytes(uint8_t *pkt)
{
	static const char params[] = "user\0app\0database\0app\0";
	uint32_t len = htonl((uint32_t)(8 + sizeof params)), ver = htonl(WIRE_PROTO_3_0);
	memcpy(pkt, &len, 4);
	memcpy(pkt + 4, &ver, 4);
	memcpy(pkt + 8, params, sizeof params); /* with the final NUL */
	return 8 + sizeof params;
}

/* Reads the error that should end a client stuck in login, then EOF. */
static void expect_timeout_error(int fd, const char *what, double since)
{
	struct wire_msg msg;
	char state[8] = "", text[256] = "";
	int r = wire_read_msg(fd, &msg, 10);
	double took = h_now() - since;
	if (r == 1 && msg.type == 'E') {
		wire_error_field(&msg, 'C', state, sizeof state);
		wire_error_field(&msg, 'M', text, sizeof text);
	}
	if (r == 1)
		wire_msg_free(&msg);
	ok(r == 1 && strcmp(state, "08P01") == 0 && strcmp(text, TIMEOUT_MSG) == 0,
	   "%s: closed with 08P01 '%s' (got %d, %s '%s')", what, TIMEOUT_MSG, r, state, text);
	ok(took >= 1.9 && took < 6, "%s: %.1f s after it connected (client_login_timeout 2 s)",
	   what, took);
	ok(wire_wait_eof(fd, 5, NULL, 0), "%s: then EOF", what);
}

static void slowloris(struct h_moat *m)
{
	h_moat_log_mark(m);
	uint8_t pkt[64];
	size_t pktlen = startup_bytes(pkt);
	int fd = wire_connect_from("127.0.0.6", "127.0.0.1", m->port);
	if (fd < 0)
		h_bail("could not connect from 127.0.0.6");
	double t0 = h_now();

	static struct crowd_client ccs[CROWD];
	struct h_gate gate;
	h_gate_init(&gate, 40);
	char *base = h_moat_conninfo(m, "app", "app", "app");
	char *ci = h_strdupf("%s connect_timeout=20", base);
	free(base);
	for (int i = 0; i < CROWD; i++) {
		ccs[i] = (struct crowd_client){.id = i + 1, .conninfo = ci, .gate = &gate};
		if (pthread_create(&ccs[i].thread, NULL, crowd_thread, &ccs[i]) != 0)
			h_bail("could not start client thread %d", i);
	}

	/* One byte a second, 15 at most (the packet is longer): pgmoat has
	 * answered when the socket turns readable. */
	size_t sent = 0;
	bool answered = false;
	while (sent < 15 && sent < pktlen && !answered) {
		if (!wire_send(fd, pkt + sent, 1))
			break;
		sent++;
		answered = wire_readable(fd, 1.0);
	}
	int crowd_in = h_gate_count(&gate, false);
	diag("slowloris: %zu bytes sent; %d of %d clients had logged in by then", sent, crowd_in,
	     CROWD);
	ok(answered && sent < 15, "the slowloris client (1 byte/s) gets an answer after %zu bytes",
	   sent);
	expect_timeout_error(fd, "slowloris from 127.0.0.6", t0);
	close(fd);
	ok(logged_with(m, TIMEOUT_MSG, " 127.0.0.6:"), "pgmoat logs it with the address");

	struct gate_wait gw = {.gate = &gate, .finished = false};
	bool arrived = h_wait_until(crowd_there, &gw, 30);
	int first = 0;
	double last_login = 0;
	for (int i = 0; i < CROWD; i++) {
		first += ccs[i].first_ok;
		if (ccs[i].logged_in_at > last_login)
			last_login = ccs[i].logged_in_at;
	}
	ok(arrived && first == CROWD,
	   "meanwhile %d of %d libpq clients logged in and ran a query (the last %.1f s after "
	   "the slowloris connected)",
	   first, CROWD, last_login - t0);

	/* Now a client that sends nothing, and one that stops in the middle of
	 * the md5 exchange. */
	int silent = wire_connect_from("127.0.0.7", "127.0.0.1", m->port);
	double t_silent = h_now();
	int stuck = wire_connect_from("127.0.0.8", "127.0.0.1", m->port);
	double t_stuck = h_now();
	if (silent < 0 || stuck < 0)
		h_bail("could not connect from 127.0.0.7 or 127.0.0.8");
	struct wire_msg msg;
	int code = -1;
	if (wire_send(stuck, pkt, pktlen) && wire_read_msg(stuck, &msg, 10) == 1) {
		uint32_t be;
		if (msg.type == 'R' && msg.len >= 4) {
			memcpy(&be, msg.body, 4);
			code = (int)ntohl(be);
		}
		wire_msg_free(&msg);
	}
	is_int(code, 5, "127.0.0.8 sends its startup packet and is asked for an md5 password");
	expect_timeout_error(silent, "silent client from 127.0.0.7", t_silent);
	expect_timeout_error(stuck, "client stuck in md5 auth from 127.0.0.8", t_stuck);
	close(silent);
	close(stuck);
	ok(logged_with(m, TIMEOUT_MSG, " 127.0.0.7:") && logged_with(m, TIMEOUT_MSG, " 127.0.0.8:"),
	   "both are logged with their addresses");

	diag("the gate opens %.1f s after the last client logged in", h_now() - last_login);
	h_gate_open(&gate);
	gw.finished = true;
	if (!h_wait_until(crowd_there, &gw, gate.deadline - h_now() + 10))
		h_bail("the client threads did not finish");
	int second = 0, shown = 0;
	for (int i = 0; i < CROWD; i++) {
		pthread_join(ccs[i].thread, NULL);
		second += ccs[i].second_ok;
		if (ccs[i].error[0] && shown++ < 3)
			diag("%s", ccs[i].error);
	}
	is_int(second, CROWD,
	       "all logged-in clients, connected longer than client_login_timeout, run "
	       "another query");
	is_int(log_count(m, TIMEOUT_MSG), 3, "only the three stalled clients hit the timeout");
	h_gate_destroy(&gate);
	free(ci);
}

static struct h_moat *start_moat(struct h_pg *pg, const char *db_params, const char *settings)
{
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, db_params, settings) || !h_moat_start(m, NULL))
		h_bail("pgmoat did not start with: %s", settings);
	return m;
}

int main(void)
{
	h_init("t_login_limits", 90);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *mt = start_moat(pg, NULL,
	                               "auth_type = md5\n"
	                               "login_failure_limit = 20\n"
	                               "login_failure_window = 60\n"
	                               "login_failure_cooldown = 30\n"
	                               "login_failure_delay = 0.5\n");
	struct h_moat *ml = start_moat(pg, "pool_size=10",
	                               "auth_type = md5\n"
	                               "pool_mode = transaction\n"
	                               "client_login_timeout = 2\n"
	                               "login_failure_limit = 0\n");
	tap_plan(42);
	throttle_limit(mt);
	throttle_reset(mt);
	slowloris(ml);
	ok(h_moat_alive(mt) && h_moat_alive(ml), "both pgmoats still running");
	return h_done();
}
