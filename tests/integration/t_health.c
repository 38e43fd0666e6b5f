/* The health checker (proxy/health.c) driven directly on a libev loop,
 * against a real primary and two streaming replicas: the first view names
 * the primary and both replicas up; a replica whose replay is paused lags
 * (bytes and seconds) while the other keeps up, and catches up once
 * resumed; a stopped replica is down within about (failures + 1) periods
 * and up again once restarted; after the primary stops and a replica is
 * promoted, the new primary shows within two periods; two primaries at
 * once are warned about once; a host that hangs (a SIGSTOPped cluster, a
 * port whose socket never accepts) times out and goes down while views of
 * the others keep coming every period; a reload keeps the state of the
 * hosts that stay and drops the others.  The probes log in with a password
 * from the userlist (scram-sha-256 over TCP). */
#include <config.h>

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/userlist.h"
#include "common/log.h"
#include "conf/config.h"
#include "proxy/health.h"
#include "tests/lib/harness.h"

#define PERIOD 0.2
#define FAILURES 2
#define TIMEOUT 1.0
#define MB (1024 * 1024)

/* Failed test points, so the checker's log is printed when there are any. */
static int n_failed;
static bool count_failure(bool cond)
{
	n_failed += !cond;
	return cond;
}
#undef ok
#undef is_int
#define ok(...) count_failure(tap_ok(__VA_ARGS__))
#define is_int(...) count_failure(tap_is_int(__VA_ARGS__))

struct seen {
	struct health_view *v;
	double at;
};

/* Every view published, in order, with when it came. */
static struct {
	struct ev_loop *loop;
	struct seen *views;
	int n, cap;
	uint64_t kp, kr1, kr2, khole; /* health_key of each host */
} T;

static void on_publish(struct health_view *v, void *arg)
{
	(void)arg;
	if (T.n == T.cap) {
		T.cap = T.cap ? 2 * T.cap : 64;
		T.views = realloc(T.views, (size_t)T.cap * sizeof(*T.views));
		if (!T.views)
			h_bail("out of memory");
	}
	T.views[T.n++] = (struct seen){v, h_now()};
}

static void wake_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
}

typedef bool view_pred(const struct health_view *v);

/* The last view, as diagnostics (after a wait that failed). */
static void diag_last_view(void)
{
	if (T.n == 0) {
		diag("no view was published");
		return;
	}
	const struct health_view *v = T.views[T.n - 1].v;
	diag("view %llu (%d views so far):", (unsigned long long)v->gen, T.n);
	for (int i = 0; i < v->n; i++) {
		const struct host_health *x = &v->hosts[i];
		diag("  %s:%d known=%d up=%d primary=%d lsn=%llu lag_bytes=%llu lag_seconds=%.3f",
		     x->host ? x->host : "(unix)", x->port, x->known, x->up, x->primary,
		     (unsigned long long)x->lsn, (unsigned long long)x->lag_bytes, x->lag_seconds);
	}
}

/* Runs the loop until a view published from now on satisfies `pred`;
 * its index, or -1 (and the last view as diagnostics) after `timeout`. */
static int wait_view(view_pred *pred, double timeout)
{
	int from = T.n;
	double end = h_now() + timeout;
	for (;;) {
		for (; from < T.n; from++)
			if (!pred || pred(T.views[from].v))
				return from;
		if (h_now() >= end) {
			diag_last_view();
			return -1;
		}
		ev_run(T.loop, EVRUN_ONCE);
	}
}

/* Runs the loop for `secs`. */
static void run_for(double secs)
{
	double end = h_now() + secs;
	while (h_now() < end)
		ev_run(T.loop, EVRUN_ONCE);
}

static const struct host_health *H(const struct health_view *v, uint64_t key)
{
	return health_find(v, key);
}

static bool is_down(const struct health_view *v, uint64_t key)
{
	const struct host_health *x = H(v, key);
	return x && !x->up;
}

static bool is_primary(const struct health_view *v, uint64_t key)
{
	const struct host_health *x = H(v, key);
	return x && x->known && x->up && x->primary;
}

static bool is_replica(const struct health_view *v, uint64_t key)
{
	const struct host_health *x = H(v, key);
	return x && x->known && x->up && !x->primary;
}

static uint64_t lag_bytes(const struct health_view *v, uint64_t key)
{
	const struct host_health *x = H(v, key);
	return x ? x->lag_bytes : UINT64_MAX;
}

static double lag_seconds(const struct health_view *v, uint64_t key)
{
	const struct host_health *x = H(v, key);
	return x ? x->lag_seconds : -1;
}

static bool r1_lags(const struct health_view *v)
{
	return is_replica(v, T.kr1) && lag_bytes(v, T.kr1) > MB && lag_seconds(v, T.kr1) > 0;
}

static bool r1_lags_r2_not(const struct health_view *v)
{
	return r1_lags(v) && is_replica(v, T.kr2) && lag_bytes(v, T.kr2) == 0 &&
	        lag_seconds(v, T.kr2) == 0;
}

static bool r1_caught_up(const struct health_view *v)
{
	return is_replica(v, T.kr1) && lag_bytes(v, T.kr1) == 0 && lag_seconds(v, T.kr1) == 0;
}

static bool r2_down(const struct health_view *v)
{
	return is_down(v, T.kr2);
}

static bool r2_up(const struct health_view *v)
{
	return is_replica(v, T.kr2);
}

static bool r1_primary(const struct health_view *v)
{
	return is_primary(v, T.kr1);
}

static bool p_down(const struct health_view *v)
{
	return is_down(v, T.kp);
}

static bool two_primaries(const struct health_view *v)
{
	return is_primary(v, T.kp) && is_primary(v, T.kr1);
}

static bool hole_down(const struct health_view *v)
{
	return is_down(v, T.khole);
}

static bool two_hosts(const struct health_view *v)
{
	return v->n == 2;
}

/* Whether every view in [from, to] has `key` up (and primary or replica as
 * `primary` says). */
static bool all_views(int from, int to, uint64_t key, bool primary)
{
	for (int i = from; i <= to && i < T.n; i++) {
		const struct health_view *v = T.views[i].v;
		if (primary ? !is_primary(v, key) : !is_replica(v, key)) {
			diag("view %llu: host with key %llx not %s", (unsigned long long)v->gen,
			     (unsigned long long)key, primary ? "the primary" : "an up replica");
			return false;
		}
	}
	return true;
}

/* Whether views [from, to] came at about one a period since `t0`: no gap
 * longer than 2.5 periods (a round that waited for a probe hanging until
 * its 1 s timeout, or a loop blocked by it, would leave a gap of 5), and
 * at least 3 views for every 4 periods. */
static bool steady(double t0, int from, int to, double *gap)
{
	double prev = t0;
	*gap = 0;
	for (int i = from; i <= to && i < T.n; i++) {
		if (T.views[i].at - prev > *gap)
			*gap = T.views[i].at - prev;
		prev = T.views[i].at;
	}
	int count = to - from + 1;
	bool ok = *gap <= 2.5 * PERIOD && count >= 0.75 * (prev - t0) / PERIOD;
	if (!ok)
		for (int i = from; i <= to && i < T.n; i++)
			diag("view %llu at +%.3f s", (unsigned long long)T.views[i].v->gen,
			     T.views[i].at - t0);
	return ok;
}

static int count_in_log(const char *path, const char *needle)
{
	char *text = h_read_file(path, NULL);
	int n = 0;
	for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(text);
	return n;
}

static bool log_has(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool log_has(const char *path, const char *fmt, ...)
{
	char needle[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(needle, sizeof needle, fmt, ap);
	va_end(ap);
	bool found = count_in_log(path, needle) > 0;
	if (!found)
		diag("no '%s' in the log", needle);
	return found;
}

static struct config *load(const char *path, const char *hosts, const char *ports)
{
	char *ini = h_strdupf("[databases]\n"
	                      "app = host=%s port=%s dbname=postgres\n"
	                      "single = host=127.0.0.1 port=1\n"
	                      "\n"
	                      "[pgmoat]\n"
	                      "listen_addr = 127.0.0.1\n"
	                      "listen_port = %d\n"
	                      "unix_socket_dir =\n"
	                      "auth_type = trust\n"
	                      "health_check_period = 200ms\n"
	                      "health_check_failures = %d\n"
	                      "health_check_timeout = 1s\n"
	                      "health_check_user = postgres\n"
	                      "health_check_dbname = postgres\n",
	                      hosts, ports, h_free_port(), FAILURES);
	if (!h_write_file(path, ini))
		h_bail("cannot write %s", path);
	free(ini);
	struct strlist errors;
	strlist_init(&errors);
	struct config *cfg = config_load(path, &errors, NULL);
	for (size_t i = 0; i < errors.n; i++)
		diag("config: %s", errors.items[i]);
	strlist_free(&errors);
	if (!cfg)
		h_bail("config_load failed");
	return cfg;
}

/* A TCP port on 127.0.0.1 that takes connections into its backlog and
 * never accepts them: a host that hangs. */
static int black_hole(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	socklen_t alen = sizeof a;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
		h_bail("cannot make a listening socket");
	*port = ntohs(a.sin_port);
	return fd;
}

int main(void)
{
	h_init("t_health", 300);
	struct h_pg_opts po = {.auth = "scram-sha-256"};
	struct h_pg *pp = h_pg_start(&po);
	h_pg_sql(pp, "alter role postgres password 'probe secret'");
	h_pg_sql(pp, "create table warm(i int)");
	struct h_pg *r1 = h_pg_start_replica(pp);
	struct h_pg *r2 = h_pg_start_replica(pp);
	tap_plan(38);

	/* A commit the replicas replayed, so a paused one has a replay delay. */
	h_pg_sql(pp, "insert into warm values (1)");
	ok(h_pg_wait_replay(r1, pp, 30) && h_pg_wait_replay(r2, pp, 30),
	   "both replicas stream from the primary");

	char *logpath = h_strdupf("%s/health.log", h_tmpdir());
	if (!log_open(logpath, false, NULL, false))
		h_bail("cannot open %s", logpath);
	log_set_level(LL_INFO);

	T.loop = ev_loop_new(EVFLAG_AUTO);
	ev_timer wake;
	ev_timer_init(&wake, wake_cb, 0.05, 0.05);
	ev_timer_start(T.loop, &wake);
	T.kp = health_key("127.0.0.1", pp->port);
	T.kr1 = health_key("127.0.0.1", r1->port);
	T.kr2 = health_key("127.0.0.1", r2->port);

	char *ini = h_strdupf("%s/health.ini", h_tmpdir());
	char *ports = h_strdupf("%d,%d,%d", pp->port, r1->port, r2->port);
	struct config *cfg = load(ini, "127.0.0.1,127.0.0.1,127.0.0.1", ports);
	struct strlist errors;
	strlist_init(&errors);
	struct userlist *users =
	        userlist_parse_string("userlist", "\"postgres\" \"probe secret\"\n", &errors);
	strlist_free(&errors);
	if (!users)
		h_bail("userlist_parse_string failed");

	struct health *h = health_new(T.loop, on_publish, NULL);
	health_configure(h, cfg, users);

	/* --- the first round */
	int i = wait_view(NULL, 15);
	ok(i >= 0, "a view is published after the first round");
	if (i < 0)
		h_bail("no view");
	const struct health_view *v = T.views[i].v;
	is_int(v->n, 3, "it lists the three hosts (the one-host entry is not probed)");
	ok(is_primary(v, T.kp), "the primary is up and not in recovery");
	ok(is_replica(v, T.kr1) && is_replica(v, T.kr2), "both replicas are up, in recovery");
	const struct host_health *x = H(v, T.kp);
	ok(x && x->lsn > 0 && x->probed_usec > 0 && x->lag_bytes == 0,
	   "the primary's WAL position is known, with no lag");
	ok(lag_bytes(v, T.kr1) < MB && lag_bytes(v, T.kr2) < MB,
	   "the replicas are close behind (%llu, %llu bytes)",
	   (unsigned long long)lag_bytes(v, T.kr1), (unsigned long long)lag_bytes(v, T.kr2));
	ok(log_has(logpath, "health: 127.0.0.1:%d is now the primary", pp->port) &&
	           log_has(logpath, "health: 127.0.0.1:%d is now a replica", r1->port),
	   "the roles found are logged");

	/* --- replay paused on replica 1 while the primary writes */
	h_pg_sql(r1, "select pg_wal_replay_pause()");
	h_pg_sql(pp,
	         "create table big as select g as i, repeat('x', 100) as pad"
	         " from generate_series(1, 100000) g");
	i = wait_view(r1_lags, 20);
	ok(i >= 0,
	   "replica 1, paused, lags by more than 1 MB and a replay delay (%llu bytes, %.3f s)",
	   i >= 0 ? (unsigned long long)lag_bytes(T.views[i].v, T.kr1) : 0ULL,
	   i >= 0 ? lag_seconds(T.views[i].v, T.kr1) : 0.);
	i = wait_view(r1_lags_r2_not, 20);
	ok(i >= 0, "meanwhile replica 2 has caught up (no lag in bytes or seconds)");
	h_pg_sql(r1, "select pg_wal_replay_resume()");
	i = wait_view(r1_caught_up, 30);
	ok(i >= 0, "replica 1, resumed, catches up");

	/* --- replica 2 stops, then comes back */
	double t0 = h_now();
	int first = T.n;
	h_pg_stop(r2, true);
	i = wait_view(r2_down, 10);
	ok(i >= 0, "replica 2, stopped, is down");
	double took = i >= 0 ? T.views[i].at - t0 : -1;
	ok(i >= 0 && took <= (FAILURES + 1) * PERIOD + 0.6,
	   "within about (failures + 1) periods (%.2f s)", took);
	ok(i >= 0 && all_views(first, i, T.kp, true) && all_views(first, i, T.kr1, false),
	   "the others stay up meanwhile");
	ok(log_has(logpath, "health: 127.0.0.1:%d is down: ", r2->port), "the change is logged");
	if (!h_pg_restart(r2))
		h_bail("replica 2 did not restart");
	i = wait_view(r2_up, 15);
	ok(i >= 0, "restarted, it is up again, a replica");
	ok(log_has(logpath, "health: 127.0.0.1:%d is back up", r2->port), "which is logged");

	/* --- replica 2 hangs: every process of the cluster stopped */
	run_for(3 * PERIOD);
	h_pg_pause(r2, true);
	t0 = h_now();
	first = T.n;
	i = wait_view(r2_down, 15);
	took = i >= 0 ? T.views[i].at - t0 : -1;
	double gap = -1;
	bool regular = i >= 0 && steady(t0, first, i, &gap);
	int during = i >= 0 ? i - first + 1 : 0;
	bool others =
	        i >= 0 && all_views(first, i, T.kp, true) && all_views(first, i, T.kr1, false);
	h_pg_pause(r2, false);
	ok(i >= 0, "a replica that hangs is down once its probes time out (%.2f s)", took);
	ok(took >= FAILURES * TIMEOUT - 0.1 && took <= FAILURES * (TIMEOUT + PERIOD) + 1.0,
	   "after %d timeouts of %.0f s", FAILURES, TIMEOUT);
	ok(regular,
	   "views kept coming meanwhile (%d views in %.2f s, longest gap %.2f s): the loop never "
	   "blocked",
	   during, took, gap);
	ok(others, "and they show the other hosts up");
	i = wait_view(r2_up, 15);
	ok(i >= 0, "resumed, it is up again");

	/* --- failover: the primary stops, replica 1 is promoted */
	h_pg_stop(pp, false);
	if (!h_pg_promote(r1))
		h_bail("replica 1 was not promoted");
	double tp = h_now();
	i = wait_view(r1_primary, 10);
	took = i >= 0 ? T.views[i].at - tp : -1;
	ok(i >= 0 && took <= 2 * PERIOD + 0.1,
	   "the promoted replica is the primary in a view within two periods (%.2f s)", took);
	ok(i >= 0 && wait_view(p_down, 10) >= 0, "the old primary is down");
	ok(log_has(logpath, "health: 127.0.0.1:%d is now the primary", r1->port),
	   "the new primary is logged");
	int split = count_in_log(logpath, "report being the primary");
	is_int(split, 0, "no warning about two primaries so far");

	/* --- the old primary comes back as a primary too */
	if (!h_pg_restart(pp))
		h_bail("the old primary did not restart");
	i = wait_view(two_primaries, 15);
	ok(i >= 0, "the old primary, restarted on its own, answers as a primary too");
	run_for(5 * PERIOD);
	is_int(count_in_log(logpath, "report being the primary"), 1,
	       "two primaries at once: warned about once");
	h_pg_stop(pp, true);
	ok(wait_view(p_down, 10) >= 0, "stopped again, it is down");

	/* --- reload: a host that never answers is added */
	int hole_port;
	int hole = black_hole(&hole_port);
	T.khole = health_key("127.0.0.1", hole_port);
	free(ports);
	ports = h_strdupf("%d,%d,%d,%d", pp->port, r1->port, r2->port, hole_port);
	struct config *cfg2 = load(ini, "127.0.0.1,127.0.0.1,127.0.0.1,127.0.0.1", ports);
	uint64_t gen_before = T.n ? T.views[T.n - 1].v->gen : 0;
	first = T.n;
	health_configure(h, cfg2, users);
	config_unref(cfg);
	cfg = cfg2;
	t0 = h_now();
	i = wait_view(NULL, 5);
	v = i >= 0 ? T.views[i].v : NULL;
	ok(v && v->n == 4 && v->gen > gen_before, "after a reload the view lists the new host");
	ok(v && is_primary(v, T.kr1) && is_replica(v, T.kr2) && is_down(v, T.kp),
	   "and the hosts that stay keep their state");
	x = v ? H(v, T.khole) : NULL;
	ok(x && !x->known, "the new host has not answered");
	i = wait_view(hole_down, 15);
	took = i >= 0 ? T.views[i].at - t0 : -1;
	regular = i >= 0 && steady(t0, first, i, &gap);
	ok(i >= 0 && took >= FAILURES * TIMEOUT - 0.1,
	   "a port that never accepts: its probes time out, it is down (%.2f s)", took);
	ok(regular, "views of the others kept coming (%d views, longest gap %.2f s)",
	   i >= 0 ? i - first + 1 : 0, gap);
	ok(i >= 0 && all_views(first, i, T.kr1, true) && all_views(first, i, T.kr2, false),
	   "showing them up all along");

	/* --- reload: two hosts left */
	free(ports);
	ports = h_strdupf("%d,%d", r1->port, r2->port);
	cfg2 = load(ini, "127.0.0.1,127.0.0.1", ports);
	health_configure(h, cfg2, users);
	config_unref(cfg);
	cfg = cfg2;
	i = wait_view(two_hosts, 5);
	v = i >= 0 ? T.views[i].v : NULL;
	ok(v && !H(v, T.kp) && !H(v, T.khole) && is_primary(v, T.kr1) && is_replica(v, T.kr2),
	   "hosts no longer listed are dropped, the others kept");
	ok(count_in_log(logpath, "is no longer probed") == 2, "the dropped hosts are logged");

	health_free(h);
	close(hole);
	ok(health_key(NULL, 5432) == health_key("", 5432) &&
	           health_key("a", 5432) != health_key("a", 5433) &&
	           health_key("10.0.0.1", 5432) != health_key("10.0.0.2", 5432),
	   "health_key: NULL and \"\" alike, host and port both count");
	for (int k = 0; k < T.n; k++)
		health_view_unref(T.views[k].v);
	free(T.views);
	config_unref(cfg);
	userlist_free(users);
	ev_timer_stop(T.loop, &wake);
	ev_loop_destroy(T.loop);
	log_close();
	if (n_failed) {
		char *text = h_read_file(logpath, NULL);
		h_diag_text("  health log| ", text);
		free(text);
	}
	free(logpath);
	free(ports);
	free(ini);
	return h_done();
}
