/* The metrics endpoint (proxy/metrics.c), scraped with a raw HTTP client
 * and parsed in full by a small Prometheus text-format parser (names,
 * labels and their escapes, values, HELP/TYPE lines, families kept
 * together, histograms cumulative with +Inf equal to _count).  The
 * counters match the work the test did: 5 clients x 20 transactions in
 * transaction pooling, one wrong password (refusal "auth"), one client
 * that waited for the only server of a pool (waits, wait-time histogram,
 * waiting-client gauges), the clients it holds open by state, hosts up and
 * down from the health checker, reloads ok and failed.  HTTP: 404 for
 * another path, 405 for POST, HEAD, a query string, 400 for garbage, 431
 * for an oversized request; a partial request is closed after the read
 * timeout without holding up other scrapes; beyond 16 connections at once
 * a 503; curl scrapes too.  metrics_listen moves on reload, a bad value
 * fails the reload, and an empty one stops the endpoint. */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/prom.h"
#include "tests/lib/wire.h"

#define N_CLIENTS 5
#define N_XACTS 20
#define READ_TIMEOUT 3.0 /* METRICS_READ_TIMEOUT in proxy/metrics.h */
#define MAX_CONNS 16 /* METRICS_MAX_CONNS */

/* --- a raw HTTP client ------------------------------------------------ */

struct http {
	int status; /* 0: no answer */
	char *head; /* status line and headers */
	char *body;
	size_t body_len;
	double took;
};

static void http_free(struct http *h)
{
	free(h->head);
	free(h->body);
	memset(h, 0, sizeof(*h));
}

/* Everything `fd` sends until EOF, within `timeout` (-1 if it did not
 * end).  *out: malloc'd, NUL-terminated. */
static ssize_t read_all(int fd, double timeout, char **out)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	double end = h_now() + timeout;
	for (;;) {
		double left = end - h_now();
		if (left <= 0 || !wire_readable(fd, left)) {
			buf[len] = '\0';
			*out = buf;
			return -1;
		}
		if (cap - len < 4096)
			buf = realloc(buf, cap *= 2);
		ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	return (ssize_t)len;
}

/* Splits a response read in full into h. */
static void http_parse(struct http *h, char *raw, size_t len)
{
	char *sep = strstr(raw, "\r\n\r\n");
	if (strncmp(raw, "HTTP/1.", 7) != 0 || !sep) {
		free(raw);
		return;
	}
	h->status = atoi(raw + 9);
	h->head = strndup(raw, (size_t)(sep - raw) + 2);
	h->body_len = len - (size_t)(sep + 4 - raw);
	h->body = malloc(h->body_len + 1);
	memcpy(h->body, sep + 4, h->body_len);
	h->body[h->body_len] = '\0';
	free(raw);
}

/* Sends `req` as it is and reads the answer until the server closes. */
static bool http_raw(int port, const char *req, size_t len, struct http *h)
{
	memset(h, 0, sizeof(*h));
	double t0 = h_now();
	int fd = wire_connect(port);
	if (fd < 0)
		return false;
	char *raw = NULL;
	ssize_t n = wire_send(fd, req, len) ? read_all(fd, 10, &raw) : -1;
	close(fd);
	h->took = h_now() - t0;
	if (n < 0) {
		free(raw);
		return false;
	}
	http_parse(h, raw, (size_t)n);
	return h->status > 0;
}

static bool http_get(int port, const char *path, struct http *h)
{
	char *req = h_strdupf("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: t_metrics\r\n"
	                      "Accept: text/plain\r\n\r\n",
	                      path, port);
	bool r = http_raw(port, req, strlen(req), h);
	free(req);
	return r;
}

/* Content-Length matches the body. */
static bool length_ok(const struct http *h)
{
	const char *cl = h->head ? strcasestr(h->head, "\r\nContent-Length: ") : NULL;
	return cl && strtoul(cl + 18, NULL, 10) == h->body_len;
}

/* --- the test --------------------------------------------------------- */

static struct h_moat *moat;
static int mport; /* where metrics are served now */
static struct prom_doc D = {.cur = -1}; /* the latest scrape */
static double accepted0; /* clients accepted before the test's (the harness connected once) */

/* GET /metrics and parse it into D; false with a diagnostic if either
 * failed. */
static bool scrape(void)
{
	struct http h;
	bool good = http_get(mport, "/metrics", &h) && h.status == 200;
	if (!good)
		diag("GET /metrics on port %d: status %d", mport, h.status);
	if (good && !prom_parse(&D, h.body, h.body_len)) {
		diag("/metrics does not parse: %s", D.err);
		good = false;
	}
	http_free(&h);
	return good;
}

static double val(const char *name, const char *const *kv)
{
	return prom_value(&D, name, kv);
}

struct want {
	const char *name;
	const char *const *kv;
	double v;
};

/* Scrapes until every metric of `w` (n of them) has its value, up to
 * `timeout` seconds (0: one scrape, no diagnostics); D keeps the last
 * scrape. */
static bool wait_values(const struct want *w, size_t n, double timeout)
{
	double end = h_now() + timeout;
	for (;;) {
		bool all = scrape();
		for (size_t i = 0; i < n && all; i++)
			all = val(w[i].name, w[i].kv) == w[i].v;
		if (all)
			return true;
		if (h_now() > end) {
			for (size_t i = 0; i < n && timeout > 0; i++)
				if (val(w[i].name, w[i].kv) != w[i].v)
					diag("%s: %g, waited for %g", w[i].name,
					     val(w[i].name, w[i].kv), w[i].v);
			return false;
		}
		h_nap(0.05);
	}
}

static bool wait_value(const char *name, const char *const *kv, double v, double timeout)
{
	struct want w = {name, kv, v};
	return wait_values(&w, 1, timeout);
}

static int dead_port;

static void write_ini(const char *metrics_listen, const char *extra)
{
	char *t = h_strdupf("[databases]\n"
	                    "app = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=5\n"
	                    "waitdb = host=127.0.0.1 port=@PGPORT@ dbname=app pool_size=1\n"
	                    "ha = host=127.0.0.1,127.0.0.1 port=@PGPORT@,%d dbname=app\n"
	                    "\n"
	                    "[pgmoat]\n"
	                    "listen_addr = 127.0.0.1\n"
	                    "listen_port = @PORT@\n"
	                    "unix_socket_dir = @SOCKDIR@\n"
	                    "auth_file = @AUTHFILE@\n"
	                    "auth_type = md5\n"
	                    "workers = 2\n"
	                    "pool_mode = transaction\n"
	                    "health_check_period = 200ms\n"
	                    "health_check_failures = 1\n"
	                    "health_check_timeout = 1\n"
	                    "health_check_user = app\n"
	                    "health_check_dbname = app\n"
	                    "metrics_listen = %s\n"
	                    "%s",
	                    dead_port, metrics_listen, extra ? extra : "");
	if (!h_moat_write_ini(moat, t))
		h_bail("cannot write the configuration");
	free(t);
}

static void test_first_scrape(void)
{
	/* The endpoint opens just after the workers listen. */
	for (double end = h_now() + 5; !h_tcp_accepts(mport) && h_now() < end;)
		h_nap(0.02);
	bool parsed = scrape();
	ok(parsed, "GET /metrics: 200, and the whole text parses (%zu samples, %zu families)", D.n,
	   D.nf);
	ok(val("pgmoat_up", NOL) == 1 &&
	           val("pgmoat_build_info", L("version", PACKAGE_VERSION)) == 1,
	   "pgmoat_up 1, pgmoat_build_info{version=\"%s\"} 1", PACKAGE_VERSION);
	double start = val("pgmoat_start_time_seconds", NOL), now = (double)time(NULL);
	ok(start > now - 120 && start <= now + 1,
	   "pgmoat_start_time_seconds is the wall clock (%.0f)", start);
	static const char *const families[] = {
	        "pgmoat_clients",
	        "pgmoat_servers",
	        "pgmoat_clients_accepted_total",
	        "pgmoat_servers_opened_total",
	        "pgmoat_tls_handshakes_total",
	        "pgmoat_client_bytes_received_total",
	        "pgmoat_client_bytes_sent_total",
	        "pgmoat_connections_refused_total",
	        "pgmoat_pool_transactions_total",
	        "pgmoat_pool_queries_total",
	        "pgmoat_pool_received_bytes_total",
	        "pgmoat_pool_sent_bytes_total",
	        "pgmoat_pool_waits_total",
	        "pgmoat_pool_wait_seconds",
	        "pgmoat_pool_transaction_seconds",
	        "pgmoat_pool_query_seconds",
	        "pgmoat_pool_servers",
	        "pgmoat_pool_waiting_clients",
	        "pgmoat_pool_clients",
	        "pgmoat_host_up",
	        "pgmoat_host_primary",
	        "pgmoat_host_replay_lag_bytes",
	        "pgmoat_host_replay_lag_seconds",
	        "pgmoat_host_last_probe_age_seconds",
	        "pgmoat_reloads_total",
	};
	const char *missing = NULL;
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]) && !missing; i++)
		if (prom_family_find(&D, families[i]) < 0)
			missing = families[i];
	ok(!missing, "every metric family is described (missing: %s)", missing ? missing : "none");
	h_nap(0.25); /* workers publish their counters every 100 ms */
	accepted0 = scrape() ? val("pgmoat_clients_accepted_total", NOL) : NAN;
}

static PGconn *clients[N_CLIENTS];

static void test_work(int pgport)
{
	int good = 0;
	for (int i = 0; i < N_CLIENTS; i++) {
		clients[i] = h_moat_connect(moat, "app", "app", "app");
		for (int k = 0; k < N_XACTS && h_connected(clients[i]); k++)
			good += h_exec(clients[i], "select 1");
	}
	is_int(good, N_CLIENTS * N_XACTS, "%d clients ran %d transactions each", N_CLIENTS,
	       N_XACTS);
	int fd = wire_connect(moat->port);
	struct wire_login lg = {0};
	bool in = fd >= 0 && wire_login(fd, 0, "app", "app", "wrong", &lg);
	if (fd >= 0)
		close(fd);
	ok(!in && strcmp(lg.sqlstate, "28P01") == 0, "a wrong password is refused (%s)",
	   lg.sqlstate);

	char host[64];
	snprintf(host, sizeof(host), "127.0.0.1:%d", pgport);
	const char *const *app = L("database", "app", "user", "app", "host", host);
	struct want w[] = {
	        {"pgmoat_pool_transactions_total", app, N_CLIENTS * N_XACTS},
	        {"pgmoat_connections_refused_total", L("reason", "auth"), 1},
	        {"pgmoat_clients", L("state", "idle"), N_CLIENTS},
	};
	ok(wait_values(w, 3, 5),
	   "pgmoat_pool_transactions_total{database=\"app\",host=\"%s\"} "
	   "reaches %d",
	   host, N_CLIENTS * N_XACTS);
	is_int((long)val("pgmoat_pool_queries_total", app), N_CLIENTS * N_XACTS,
	       "pgmoat_pool_queries_total of the pool");
	is_int((long)val("pgmoat_pool_transaction_seconds_count", app), N_CLIENTS * N_XACTS,
	       "pgmoat_pool_transaction_seconds_count");
	is_int((long)val("pgmoat_pool_query_seconds_count", app), N_CLIENTS * N_XACTS,
	       "pgmoat_pool_query_seconds_count");
	double xs = val("pgmoat_pool_transaction_seconds_sum", app);
	ok(xs > 0 && xs < 10, "pgmoat_pool_transaction_seconds_sum %.6f s", xs);
	is_int((long)val("pgmoat_connections_refused_total", L("reason", "auth")), 1,
	       "pgmoat_connections_refused_total{reason=\"auth\"} 1");
	double others = 0;
	static const char *const reasons[] = {"allow",          "hba",      "tls",
	                                      "proxy_protocol", "throttle", "login_timeout"};
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		others += val("pgmoat_connections_refused_total", L("reason", reasons[i]));
	is_int((long)others, 0, "no refusals for the other six reasons");
	is_int((long)val("pgmoat_clients", L("state", "idle")), N_CLIENTS,
	       "pgmoat_clients{state=\"idle\"}: the %d clients held open", N_CLIENTS);
	is_int((long)val("pgmoat_pool_clients", L("database", "app", "user", "app")), N_CLIENTS,
	       "pgmoat_pool_clients of app/app");
	is_int((long)(val("pgmoat_clients_accepted_total", NOL) - accepted0), N_CLIENTS + 1,
	       "pgmoat_clients_accepted_total: %d more, the clients and the refused one",
	       N_CLIENTS + 1);
	is_int((long)val("pgmoat_tls_handshakes_total", NOL), 0, "pgmoat_tls_handshakes_total 0");

	/* A server opened for a client that another one's release served
	 * first may still be logging in: awaited. */
	wait_value("pgmoat_pool_servers", L("database", "app", "state", "connecting"), 0, 5);
	wait_value("pgmoat_pool_servers", L("database", "app", "state", "active"), 0, 5);
	double idle = val("pgmoat_pool_servers", L("database", "app", "state", "idle"));
	double busy = val("pgmoat_pool_servers", L("database", "app", "state", "active")) +
	        val("pgmoat_pool_servers", L("database", "app", "state", "connecting"));
	ok(idle >= 1 && idle <= 5 && busy == 0,
	   "pgmoat_pool_servers of app: %g idle (pool_size 5), %g active or connecting", idle,
	   busy);
	ok(wait_value("pgmoat_servers", L("state", "idle"), idle, 3),
	   "pgmoat_servers{state=\"idle\"} equals the pool's idle servers");
	ok(val("pgmoat_servers_opened_total", NOL) >= idle,
	   "pgmoat_servers_opened_total (%g) counts them", val("pgmoat_servers_opened_total", NOL));
	double recv = val("pgmoat_pool_received_bytes_total", app);
	double sent = val("pgmoat_pool_sent_bytes_total", app);
	struct want bytes[] = {
	        {"pgmoat_client_bytes_received_total", NOL, recv},
	        {"pgmoat_client_bytes_sent_total", NOL, sent},
	};
	ok(recv >= N_CLIENTS * N_XACTS * 14 && sent > recv && wait_values(bytes, 2, 3),
	   "bytes: %g in, %g out, pool and process totals agree", recv, sent);
}

/* The waits of waitdb before the test's own: logins may have waited for a
 * new server too. */
struct waits {
	double n, count, sum, fast, all;
};

static struct waits waits_now(void)
{
	const char *const *wdb = L("database", "waitdb");
	return (struct waits){
	        val("pgmoat_pool_waits_total", wdb),
	        val("pgmoat_pool_wait_seconds_count", wdb),
	        val("pgmoat_pool_wait_seconds_sum", wdb),
	        val("pgmoat_pool_wait_seconds_bucket", L("database", "waitdb", "le", "0.1")),
	        val("pgmoat_pool_wait_seconds_bucket", L("database", "waitdb", "le", "+Inf")),
	};
}

static void test_wait(void)
{
	const char *const *wdb = L("database", "waitdb");
	PGconn *a = h_moat_connect(moat, "app", "waitdb", "app");
	bool held = h_exec(a, "begin") && h_exec(a, "select 1");
	held = held &&
	        wait_value("pgmoat_pool_servers", L("database", "waitdb", "state", "active"), 1, 3);
	struct waits w0 = waits_now();
	struct h_async b;
	char *ci = h_moat_conninfo(moat, "app", "waitdb", "app");
	h_async_start(&b, ci, "select 1");
	free(ci);
	struct want w[] = {
	        {"pgmoat_pool_waiting_clients", wdb, 1},
	        {"pgmoat_clients", L("state", "waiting"), 1},
	        {"pgmoat_clients", L("state", "active"), 1},
	        {"pgmoat_pool_servers", L("database", "waitdb", "state", "active"), 1},
	};
	double end = h_now() + 5;
	bool seen = false;
	while (held && !seen && h_now() < end) {
		h_async_wait(&b, 0.05); /* drives B's login */
		seen = wait_values(w, 4, 0);
	}
	ok(seen,
	   "waitdb (pool_size 1): the second client waits: waiting clients 1, a client and "
	   "a server active");
	h_nap(0.3);
	ok(h_exec(a, "commit") && h_async_wait(&b, 5) && h_async_ok(&b),
	   "once the first commits, the waiting client is served");
	h_async_close(&b);
	PQfinish(a);
	struct want done[] = {
	        {"pgmoat_pool_waits_total", wdb, w0.n + 1},
	        {"pgmoat_pool_transactions_total", wdb, 2},
	        {"pgmoat_pool_queries_total", wdb, 4},
	};
	ok(wait_values(done, 3, 5), "waitdb: one more wait (%g before), 2 transactions, 4 queries",
	   w0.n);
	struct waits w1 = waits_now();
	double took = w1.sum - w0.sum;
	ok(w1.count == w1.n && w1.count == w0.count + 1 && took >= 0.25 && took < 10,
	   "pgmoat_pool_wait_seconds: _count is the waits, the wait added %.3f s to _sum", took);
	ok(w1.fast == w0.fast && w1.all == w0.all + 1,
	   "the wait is counted in a bucket above 0.1 s");
	is_int((long)val("pgmoat_pool_waiting_clients", wdb), 0, "nobody waits any more");
}

static void test_hosts(int pgport)
{
	char up[64], down[64];
	snprintf(up, sizeof(up), "127.0.0.1:%d", pgport);
	snprintf(down, sizeof(down), "127.0.0.1:%d", dead_port);
	struct want w[] = {
	        {"pgmoat_host_up", L("host", up), 1},
	        {"pgmoat_host_primary", L("host", up), 1},
	        {"pgmoat_host_up", L("host", down), 0},
	        {"pgmoat_host_primary", L("host", down), 0},
	};
	ok(wait_values(w, 4, 10), "hosts of [databases] ha: %s up and primary, %s down", up, down);
	double age = val("pgmoat_host_last_probe_age_seconds", L("host", up));
	ok(age >= 0 && age < 3 &&
	           isnan(val("pgmoat_host_last_probe_age_seconds", L("host", down))) &&
	           val("pgmoat_host_replay_lag_bytes", L("host", up)) == 0 &&
	           val("pgmoat_host_replay_lag_seconds", L("host", up)) == 0,
	   "probe age %.2f s, no lag; no age for a host that never answered", age);
}

static bool send_str(int fd, const char *s)
{
	return wire_send(fd, s, strlen(s));
}

static void test_http(void)
{
	struct http h;
	ok(http_get(mport, "/nothing", &h) && h.status == 404 && length_ok(&h),
	   "GET /nothing: 404");
	http_free(&h);
	const char *post = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
	ok(http_raw(mport, post, strlen(post), &h) && h.status == 405 &&
	           strstr(h.head, "\r\nAllow: GET, HEAD\r\n"),
	   "POST /metrics: 405 with Allow");
	http_free(&h);
	const char *head = "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	ok(http_raw(mport, head, strlen(head), &h) && h.status == 200 && h.body_len == 0 &&
	           strstr(h.head, "Content-Type: text/plain; version=0.0.4"),
	   "HEAD /metrics: 200, the content type, no body");
	http_free(&h);
	const char *q = "GET /metrics?x=1 HTTP/1.0\n\n";
	ok(http_raw(mport, q, strlen(q), &h) && h.status == 200 && length_ok(&h) &&
	           prom_parse(&D, h.body, h.body_len) && strstr(h.head, "Connection: close\r\n"),
	   "HTTP/1.0, bare newlines and a query string: 200, Connection: close, parses");
	http_free(&h);

	const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n";
	ok(http_raw(mport, garbage, sizeof(garbage) - 1, &h) && h.status == 400,
	   "a TLS ClientHello-like request: 400");
	http_free(&h);
	const char *bad_line = "GET metrics\r\n\r\n";
	ok(http_raw(mport, bad_line, strlen(bad_line), &h) && h.status == 400,
	   "a malformed request line: 400");
	http_free(&h);
	size_t big_len = 9000;
	char *big = malloc(big_len + 1);
	memset(big, 'a', big_len);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX-Big: ", 30);
	big[big_len] = '\0';
	ok(http_raw(mport, big, big_len, &h) && h.status == 431,
	   "9000 bytes of headers: 431, closed");
	http_free(&h);
	free(big);
	ok(scrape(), "the endpoint still answers after the bad requests");

	/* A partial request waits for its timeout; it holds nobody up. */
	double t0 = h_now();
	int slow = wire_connect(mport);
	bool sent = slow >= 0 && send_str(slow, "GET /metr");
	double t1 = h_now();
	bool quick = scrape() && h_now() - t1 < 1.5;
	ok(sent && quick, "a scrape is served while a partial request is open (%.2f s)",
	   h_now() - t1);
	int held[MAX_CONNS - 1];
	int n_held = 0;
	for (int i = 0; i < MAX_CONNS - 1; i++) {
		held[i] = wire_connect(mport);
		n_held += held[i] >= 0 && send_str(held[i], "GET /");
	}
	h_nap(0.2); /* let the server accept them all */
	int extra = wire_connect(mport);
	char *raw = NULL;
	ssize_t n = extra >= 0 ? read_all(extra, 5, &raw) : -1;
	ok(n_held == MAX_CONNS - 1 && n > 0 && strncmp(raw, "HTTP/1.1 503 ", 13) == 0,
	   "with %d requests open, one more gets a 503", MAX_CONNS);
	free(raw);
	if (extra >= 0)
		close(extra);
	char *rest = NULL;
	n = slow >= 0 ? read_all(slow, READ_TIMEOUT + 3, &rest) : -1;
	double took = h_now() - t0;
	ok(n == 0 && took > READ_TIMEOUT - 0.5 && took < READ_TIMEOUT + 2.5,
	   "the partial request is closed without an answer after %.1f s (read timeout %g s)", took,
	   READ_TIMEOUT);
	free(rest);
	int closed = 0;
	for (int i = 0; i < MAX_CONNS - 1; i++) {
		char *r = NULL;
		closed += held[i] >= 0 && read_all(held[i], 3, &r) == 0;
		free(r);
		if (held[i] >= 0)
			close(held[i]);
	}
	if (slow >= 0)
		close(slow);
	is_int(closed, MAX_CONNS - 1, "the other partial requests are closed too");
	ok(scrape(), "scrapes are served again");
}

static void test_curl(void)
{
	char *url = h_strdupf("http://127.0.0.1:%d/metrics", mport);
	const char *argv[] = {"curl", "-sS", "-f", "--max-time", "10", url, NULL};
	char *out = NULL;
	int rc = h_run(argv, NULL, 20, &out);
	if (rc == 127 || (rc != 0 && out && strstr(out, "No such file"))) {
		ok(true, "# SKIP curl is not installed");
	} else {
		struct prom_doc d = {.cur = -1};
		bool parsed = rc == 0 && out && prom_parse(&d, out, strlen(out));
		ok(parsed && prom_value(&d, "pgmoat_up", NOL) == 1, "curl %s: parses (rc %d%s%s)",
		   url, rc, parsed ? "" : ": ", parsed ? "" : d.err);
		prom_doc_free(&d);
	}
	free(out);
	free(url);
}

static void test_reload(void)
{
	char *where = h_strdupf("127.0.0.1:%d", mport);
	ok(scrape(), "scrape before the reloads");
	double r0 = val("pgmoat_reloads_total", L("result", "ok"));
	double f0 = val("pgmoat_reloads_total", L("result", "failed"));
	ok(r0 == 0 && f0 == 0, "no reloads yet");
	write_ini(where, NULL);
	bool done = h_moat_reload(moat, "configuration reloaded") && scrape();
	double r1 = val("pgmoat_reloads_total", L("result", "ok"));
	ok(done && r1 == r0 + 1, "SIGHUP: pgmoat_reloads_total{result=\"ok\"} is now %g", r1);
	write_ini(where, "default_pool_size = lots\n");
	done = h_moat_reload(moat, "reload failed") && scrape();
	double f1 = val("pgmoat_reloads_total", L("result", "failed"));
	ok(done && f1 == f0 + 1,
	   "a broken file: pgmoat_reloads_total{result=\"failed\"} is now %g, still served", f1);

	int old = mport, moved = h_free_port();
	char *next = h_strdupf("127.0.0.1:%d", moved);
	write_ini(next, NULL);
	ok(h_moat_reload(moat, "configuration reloaded"), "reload with metrics_listen = %s", next);
	mport = moved;
	ok(scrape() && val("pgmoat_reloads_total", L("result", "ok")) == r0 + 2,
	   "metrics moved to the new port");
	ok(!h_tcp_accepts(old), "nothing listens on the old port");

	write_ini("127.0.0.1:99999", NULL);
	ok(h_moat_reload(moat, "reload failed") && h_moat_log_has(moat, "metrics_listen") &&
	           scrape() && val("pgmoat_reloads_total", L("result", "failed")) == f0 + 2,
	   "metrics_listen = 127.0.0.1:99999 fails the reload (logged); still served");
	write_ini("::1:9127", NULL);
	ok(h_moat_reload(moat, "reload failed"), "an IPv6 address without brackets is refused");
	write_ini("", NULL);
	ok(h_moat_reload(moat, "configuration reloaded") && !h_tcp_accepts(mport),
	   "an empty metrics_listen stops the endpoint");
	write_ini(next, NULL);
	ok(h_moat_reload(moat, "configuration reloaded") && scrape(), "set again: served again");
	free(where);
	free(next);
}

int main(void)
{
	h_init("t_metrics", 120);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	moat = h_moat_new(pg);
	dead_port = h_free_port();
	mport = h_free_port();
	if (!h_moat_write_userlist(moat, "\"app\" \"app\"\n"))
		h_bail("cannot write the userlist");
	char *where = h_strdupf("127.0.0.1:%d", mport);
	write_ini(where, NULL);
	free(where);
	if (!h_moat_start(moat, NULL))
		h_bail("pgmoat did not start");

	tap_plan(55);
	test_first_scrape();
	test_work(pg->port);
	test_wait();
	test_hosts(pg->port);
	test_http();
	test_curl();
	test_reload();
	for (int i = 0; i < N_CLIENTS; i++)
		PQfinish(clients[i]);
	prom_doc_free(&D);
	return h_done();
}
