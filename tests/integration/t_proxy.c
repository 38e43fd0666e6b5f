/* The PROXY protocol (HAProxy's doc/proxy-protocol.txt) from a trusted load
 * balancer, 127.0.0.5: v1 and v2 (TCP over IPv4 with a TLV, TCP over IPv6)
 * headers carry the client's address, which then drives allow, the hba
 * rules and the log; v2 LOCAL and v1 UNKNOWN keep the balancer's own
 * address; a missing or malformed header from the balancer and a header from
 * any other address are refused; a header split across writes, or followed
 * by the startup packet in the same write, works; proxy_protocol_trusted and
 * allow change on SIGHUP. */
#include <config.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

#define BALANCER "127.0.0.5"
#define ALLOW_V1 "allow = 10.1.0.0/16, 127.0.0.2/32, 2001:db8:1::/48\n"

/* Refusals happen on the address the header carries. */
#define RULES                                                                                      \
	"host  all  all   10.1.66.0/24      reject\n"                                              \
	"host  all  app2  10.1.0.0/16       reject\n"                                              \
	"host  all  all   10.1.2.3/32       trust\n"                                               \
	"host  all  all   10.1.0.0/16       scram-sha-256\n"                                       \
	"host  all  all   2001:db8:1::/48   md5\n"                                                 \
	"host  all  all   127.0.0.0/8       trust\n"

static void write_ini(struct h_moat *m, const char *hba, const char *trusted, const char *allow)
{
	char *t = h_strdupf("pool_mode = session\nauth_hba_file = %s\n"
	                    "proxy_protocol_trusted = %s\n%s",
	                    hba, trusted, allow);
	if (!h_moat_write_std_ini(m, NULL, t))
		h_bail("cannot write the configuration");
	free(t);
}

static int local_port(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	return getsockname(fd, (struct sockaddr *)&a, &len) == 0 ? ntohs(a.sin_port) : -1;
}

/* --- headers */

struct hdr {
	uint8_t b[256];
	size_t n;
};

static void put(struct hdr *h, const void *p, size_t n)
{
	if (h->n + n > sizeof(h->b))
		h_bail("header too long for the test buffer");
	memcpy(h->b + h->n, p, n);
	h->n += n;
}

static void put_u8(struct hdr *h, uint8_t v)
{
	put(h, &v, 1);
}

static void put_u16(struct hdr *h, uint16_t v)
{
	uint8_t be[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put(h, be, 2);
}

static struct hdr v1(const char *line)
{
	struct hdr h = {.n = 0};
	put(&h, line, strlen(line));
	return h;
}

#define V2_PROXY 0x21 /* version 2, command PROXY */
#define V2_LOCAL 0x20
#define V2_TCP4 0x11
#define V2_TCP6 0x21
#define PP2_TYPE_AUTHORITY 0x02

/* A v2 header: the 12-byte signature, version and command, family and
 * transport, the length of what follows, the addresses, the ports and, if
 * `authority` is not NULL, a PP2_TYPE_AUTHORITY TLV. */
static struct hdr v2(uint8_t ver_cmd, uint8_t fam, const char *src, const char *dst, uint16_t sport,
                     uint16_t dport, const char *authority)
{
	static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
	                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
	struct hdr h = {.n = 0};
	put(&h, sig, sizeof(sig));
	put_u8(&h, ver_cmd);
	put_u8(&h, fam);
	uint8_t addrs[32];
	size_t alen = 0;
	if (fam == V2_TCP4 || fam == V2_TCP6) {
		int af = fam == V2_TCP4 ? AF_INET : AF_INET6;
		alen = af == AF_INET ? 4 : 16;
		if (inet_pton(af, src, addrs) != 1 || inet_pton(af, dst, addrs + alen) != 1)
			h_bail("bad address %s or %s", src, dst);
	}
	size_t tlv = authority ? 3 + strlen(authority) : 0;
	put_u16(&h, (uint16_t)(alen ? 2 * alen + 4 + tlv : tlv));
	if (alen) {
		put(&h, addrs, 2 * alen);
		put_u16(&h, sport);
		put_u16(&h, dport);
	}
	if (authority) {
		put_u8(&h, PP2_TYPE_AUTHORITY);
		put_u16(&h, (uint16_t)strlen(authority));
		put(&h, authority, strlen(authority));
	}
	return h;
}

/* A StartupMessage for app/app, to send in one write with a header. */
static void put_startup(struct hdr *h, const char *user)
{
	struct hdr body = {.n = 0};
	uint8_t ver[4] = {0, 3, 0, 0};
	put(&body, ver, 4);
	put(&body, "user", 5);
	put(&body, user, strlen(user) + 1);
	put(&body, "database\0app\0", 13);
	put_u8(&body, 0);
	uint32_t len = htonl((uint32_t)(4 + body.n));
	put(h, &len, 4);
	put(h, body.b, body.n);
}

/* --- clients */

/* Connects from `from`, sends `h` (may be NULL), logs in to app and asks
 * who it is: "ok user@db", the refusal's "SQLSTATE message", or what went
 * wrong (malloc'd).  `code` gets the first authentication request, `port`
 * the connection's own port (both may be NULL). */
static char *login_via(const struct h_moat *m, const char *from, const struct hdr *h,
                       const char *user, const char *pw, int *code, int *port)
{
	int fd = wire_connect_from(from, "127.0.0.1", m->port);
	if (port)
		*port = fd >= 0 ? local_port(fd) : -1;
	char *out;
	if (fd >= 0 && h && !wire_send(fd, h->b, h->n)) {
		out = strdup("could not send the header");
		if (code)
			*code = -1;
	} else {
		out = wire_whoami(fd, user, "app", pw, code);
	}
	if (fd >= 0)
		close(fd);
	return out;
}

/* Logs in through the header; the log line of the login has `logged`
 * ("10.1.2.3:5000", the client's address and port as the header says). */
static void expect_login(struct h_moat *m, const char *from, const struct hdr *h, const char *user,
                         const char *pw, int want_code, const char *logged, const char *what)
{
	int code, port;
	h_moat_log_mark(m);
	char *r = login_via(m, from, h, user, pw, &code, &port);
	char *want = h_strdupf("ok %s@app", user);
	bool good = strcmp(r, want) == 0 && code == want_code;
	ok(good, "%s (auth code %d)", what, code);
	if (!good)
		diag("got '%s', auth code %d; wanted '%s', code %d", r, code, want, want_code);
	char *line = logged ? h_strdupf("%s %s/app: login", logged, user)
	                    : h_strdupf("%s:%d %s/app: login", from, port, user);
	ok(h_moat_log_wait(m, line, 10), "%s: the log has \"%s\"", what, line);
	free(line);
	free(want);
	free(r);
}

/* Sends `h` from `from` and nothing else: the connection must be closed
 * without a byte from pgmoat, and the log must have `logged` followed by
 * "connection refused (`check`)"; `logged` NULL stands for the connection's
 * own address and port. */
static void expect_refused(struct h_moat *m, const char *from, const struct hdr *h,
                           const char *logged, const char *check, const char *what)
{
	h_moat_log_mark(m);
	int fd = wire_connect_from(from, "127.0.0.1", m->port);
	int port = fd >= 0 ? local_port(fd) : -1;
	bool sent = fd >= 0 && wire_send(fd, h->b, h->n);
	int b = sent ? wire_read_byte(fd, 10) : -1;
	if (fd >= 0)
		close(fd);
	ok(b == -2, "%s: closed without an answer (read gave %d)", what, b);
	char *line = logged ? h_strdupf("%s -/-: connection refused (%s)", logged, check)
	                    : h_strdupf("%s:%d -/-: connection refused (%s)", from, port, check);
	ok(h_moat_log_wait(m, line, 10), "%s: the log has \"%s\"", what, line);
	free(line);
}

/* The header in pieces, pgmoat given the time to read each one: it waits
 * for the rest (the connection stays open and silent), then the login
 * works. */
static void expect_split_login(struct h_moat *m, const struct hdr *h, const size_t *cuts, int ncuts,
                               int want_code, const char *pw, const char *what)
{
	int fd = wire_connect_from(BALANCER, "127.0.0.1", m->port);
	bool silent = fd >= 0;
	size_t at = 0;
	for (int i = 0; silent && i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : h->n;
		silent = wire_send(fd, h->b + at, end - at);
		at = end;
		if (silent && i < ncuts)
			silent = !wire_readable(fd, 0.1);
	}
	ok(silent, "%s: pgmoat waits for the rest of the header", what);
	struct wire_login l;
	bool in = silent && wire_login(fd, 0, "app", "app", pw, &l);
	ok(in && l.auth_code == want_code, "%s: then the login works (auth code %d, %s)", what,
	   in ? l.auth_code : -1, in ? "ok" : l.message);
	if (fd >= 0)
		close(fd);
}

static void test_headers(struct h_moat *m)
{
	/* v1 */
	struct hdr h = v1("PROXY TCP4 10.1.2.3 127.0.0.1 5000 6432\r\n");
	expect_login(m, BALANCER, &h, "app", NULL, 0, "10.1.2.3:5000",
	             "v1 with 10.1.2.3 (allowed, trusted by hba)");
	h = v1("PROXY TCP4 10.1.2.3 127.0.0.1 5000 6432\r\n");
	char *r = login_via(m, BALANCER, &h, "app2", "app2", NULL, NULL);
	is_str(r,
	       "28000 pg_hba.conf rejects connection for host \"10.1.2.3\", user \"app2\", "
	       "database \"app\", no encryption",
	       "v1 with 10.1.2.3: the hba message names the carried address");
	free(r);
	h = v1("PROXY TCP4 10.2.0.1 127.0.0.1 5001 6432\r\n");
	expect_refused(m, BALANCER, &h, "10.2.0.1:5001", "allow",
	               "v1 with 10.2.0.1 (not in allow)");
	h = v1("PROXY TCP4 10.1.66.1 127.0.0.1 5002 6432\r\n");
	expect_refused(m, BALANCER, &h, "10.1.66.1:5002", "hba",
	               "v1 with 10.1.66.1 (allowed, but a leading hba reject)");
	h = v1("PROXY TCP6 2001:db8:1::7 ::1 5003 6432\r\n");
	expect_login(m, BALANCER, &h, "app", "app", 5, "[2001:db8:1::7]:5003",
	             "v1 TCP6 with 2001:db8:1::7 (md5 by hba)");
	h = v1("PROXY TCP6 2001:db8:2::7 ::1 5004 6432\r\n");
	expect_refused(m, BALANCER, &h, "[2001:db8:2::7]:5004", "allow",
	               "v1 TCP6 with 2001:db8:2::7 (not in allow)");
	h = v1("PROXY UNKNOWN\r\n");
	expect_refused(m, BALANCER, &h, NULL, "allow",
	               "v1 UNKNOWN keeps " BALANCER ", which is not in allow");

	/* The startup packet in the same write as the header. */
	h = v1("PROXY TCP4 10.1.2.3 127.0.0.1 5005 6432\r\n");
	put_startup(&h, "app");
	int fd = wire_connect_from(BALANCER, "127.0.0.1", m->port);
	struct wire_login l;
	memset(&l, 0, sizeof(l));
	bool in = fd >= 0 && wire_send(fd, h.b, h.n) && wire_finish_login(fd, "app", NULL, &l);
	ok(in && l.auth_code == 0, "v1 header and startup packet in one write: login (%s)",
	   in ? "ok" : l.message);
	if (fd >= 0)
		close(fd);

	/* v2 */
	h = v2(V2_PROXY, V2_TCP4, "10.1.2.4", "127.0.0.1", 40000, 6432, "db.example.com");
	expect_login(m, BALANCER, &h, "app", "app", 10, "10.1.2.4:40000",
	             "v2 TCP4 + TLV with 10.1.2.4 (scram-sha-256 by hba)");
	h = v2(V2_PROXY, V2_TCP4, "10.9.9.9", "127.0.0.1", 40001, 6432, "db.example.com");
	expect_refused(m, BALANCER, &h, "10.9.9.9:40001", "allow",
	               "v2 TCP4 with 10.9.9.9 (not in allow)");
	h = v2(V2_PROXY, V2_TCP6, "2001:db8:1::8", "::1", 40002, 6432, NULL);
	expect_login(m, BALANCER, &h, "app", "app", 5, "[2001:db8:1::8]:40002",
	             "v2 TCP6 with 2001:db8:1::8 (md5 by hba)");
	h = v2(V2_PROXY, V2_TCP6, "2001:db8:9::8", "::1", 40003, 6432, "x");
	expect_refused(m, BALANCER, &h, "[2001:db8:9::8]:40003", "allow",
	               "v2 TCP6 with 2001:db8:9::8 (not in allow)");
	h = v2(V2_LOCAL, 0x00, NULL, NULL, 0, 0, NULL);
	expect_refused(m, BALANCER, &h, NULL, "allow",
	               "v2 LOCAL keeps " BALANCER ", which is not in allow");

	/* Split across writes: inside the v1 text, inside the v2 signature
	 * and inside its address block. */
	h = v1("PROXY TCP4 10.1.2.3 127.0.0.1 5006 6432\r\n");
	size_t cuts1[] = {1, 9, h.n - 1};
	expect_split_login(m, &h, cuts1, 3, 0, NULL, "v1 in four writes");
	h = v2(V2_PROXY, V2_TCP4, "10.1.2.4", "127.0.0.1", 40004, 6432, "db.example.com");
	size_t cuts2[] = {1, 7, 15, 22, h.n - 2};
	expect_split_login(m, &h, cuts2, 5, 10, "app", "v2 in six writes");
}

static void test_bad_headers(struct h_moat *m)
{
	/* From the balancer a header is required, and must be well formed. */
	struct hdr h = {.n = 0};
	put_startup(&h, "app");
	expect_refused(m, BALANCER, &h, NULL, "proxy_protocol",
	               "a plain startup packet from the balancer");
	struct {
		const char *text;
		const char *what;
	} bad[] = {
	        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP instead of a header"},
	        {"PROXY TCP4 10.1.2.3 127.0.0.1 5000\r\n", "v1 without the destination port"},
	        {"PROXY TCP4 2001:db8:1::7 127.0.0.1 5000 6432\r\n",
	         "v1 TCP4 with an IPv6 address"},
	        {"PROXY TCP4 10.1.2.3 127.0.0.1 5000 65536\r\n", "v1 with port 65536"},
	        {"PROXY TCP4 10.1.2.3 127.0.0.1 5000 6432\n", "v1 ending in a lone LF"},
	        {"PROXY UNKNOWN "
	         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
	         "v1 UNKNOWN longer than 107 bytes"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = v1(bad[i].text);
		expect_refused(m, BALANCER, &h, NULL, "proxy_protocol", bad[i].what);
	}
	h = v2(V2_PROXY, 0x12, NULL, NULL, 0, 0, NULL); /* UDP over IPv4 */
	expect_refused(m, BALANCER, &h, NULL, "proxy_protocol", "v2 with a datagram transport");
	h = v2(0x11, V2_TCP4, "10.1.2.4", "127.0.0.1", 40000, 6432, NULL); /* version 1 */
	expect_refused(m, BALANCER, &h, NULL, "proxy_protocol", "v2 signature with version 1");
	h = v2(V2_PROXY, V2_TCP4, "10.1.2.4", "127.0.0.1", 40000, 6432, NULL);
	h.b[15] = 8; /* an address block too short for IPv4 */
	h.n = 16 + 8;
	expect_refused(m, BALANCER, &h, NULL, "proxy_protocol", "v2 with a short address block");

	/* From any other address, even an allowed one, a header is refused. */
	h = v1("PROXY TCP4 10.1.2.3 127.0.0.1 5000 6432\r\n");
	expect_refused(m, "127.0.0.2", &h, NULL, "proxy_protocol",
	               "the v1 header from 127.0.0.2 (allowed, not trusted)");
	ok(h_moat_log_has(m,
	                  "a PROXY protocol header from an address not in "
	                  "proxy_protocol_trusted"),
	   "the log says the sender is not trusted");
	h = v2(V2_PROXY, V2_TCP4, "10.1.2.4", "127.0.0.1", 40000, 6432, "db.example.com");
	expect_refused(m, "127.0.0.2", &h, NULL, "proxy_protocol",
	               "a v2 header from 127.0.0.2 (allowed, not trusted)");
	ok(h_moat_log_has(m,
	                  "a PROXY protocol header from an address not in "
	                  "proxy_protocol_trusted"),
	   "the log says the sender is not trusted");
	expect_login(m, "127.0.0.2", NULL, "app", NULL, 0, NULL,
	             "a plain login from 127.0.0.2 works");

	/* From an address neither trusted nor allowed it is never read. */
	int fd = wire_connect_from("127.0.0.3", "127.0.0.1", m->port);
	int port = fd >= 0 ? local_port(fd) : -1;
	int b = fd >= 0 ? wire_read_byte(fd, 10) : -1;
	if (fd >= 0)
		close(fd);
	ok(b == -2,
	   "a balancer at 127.0.0.3 (not trusted, not allowed): EOF before it sends "
	   "its header (read gave %d)",
	   b);
	char *line = h_strdupf("connection from 127.0.0.3:%d refused at accept (allow)", port);
	ok(h_moat_log_wait(m, line, 10), "the log has \"%s\"", line);
	free(line);
}

int main(void)
{
	h_init("t_proxy", 90);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	h_pg_sql(pg, "create role app2 login password 'app2'");
	char *hba = h_strdupf("%s/pg_hba.conf", h_tmpdir());
	if (!h_write_file(hba, RULES))
		h_bail("cannot write %s", hba);
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_userlist(m, "\"app\" \"app\"\n\"app2\" \"app2\"\n"))
		h_bail("cannot write the userlist");
	write_ini(m, hba, BALANCER "/32", ALLOW_V1);
	if (!h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	test_headers(m);
	test_bad_headers(m);

	/* The balancer allowed: LOCAL and UNKNOWN log in as the balancer, a
	 * header is still required. */
	write_ini(m, hba, BALANCER "/32", "allow = 10.1.0.0/16, 127.0.0.2/32, 127.0.0.5/32\n");
	ok(h_moat_reload(m, "configuration reloaded"), "SIGHUP: allow gets " BALANCER);
	struct hdr h = v2(V2_LOCAL, 0x00, NULL, NULL, 0, 0, NULL);
	expect_login(m, BALANCER, &h, "app", NULL, 0, NULL, "v2 LOCAL logs in as " BALANCER);
	h = v1("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
	expect_login(m, BALANCER, &h, "app", NULL, 0, NULL, "v1 UNKNOWN logs in as " BALANCER);
	h = (struct hdr){.n = 0};
	put_startup(&h, "app");
	expect_refused(m, BALANCER, &h, NULL, "proxy_protocol",
	               "a plain startup packet from the balancer is still refused");

	/* No longer trusted: a plain login works, a header is refused. */
	write_ini(m, hba, "127.0.0.6/32", "allow = 10.1.0.0/16, 127.0.0.2/32, 127.0.0.5/32\n");
	ok(h_moat_reload(m, "configuration reloaded"),
	   "SIGHUP: proxy_protocol_trusted is 127.0.0.6/32");
	expect_login(m, BALANCER, NULL, "app", NULL, 0, NULL,
	             BALANCER " untrusted: a plain login works");
	h = v1("PROXY TCP4 10.1.2.3 127.0.0.1 5000 6432\r\n");
	expect_refused(m, BALANCER, &h, NULL, "proxy_protocol",
	               BALANCER " untrusted: its v1 header is refused");

	is_int(h_moat_stop(m), 0, "pgmoat stops with status 0");
	free(hba);
	return h_done();
}
