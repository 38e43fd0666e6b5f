/* Networks: parsing, masks, matching (IPv4, IPv6, v4-mapped), lists. */
#include <config.h>

#include "common/cidr.h"
#include "tests/lib/tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* A sockaddr for `ip` in `st`; bails out on a typo in the test itself. */
static const struct sockaddr *sa(struct sockaddr_storage *st, const char *ip)
{
	memset(st, 0, sizeof(*st));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)st;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(5432);
		if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
			tap_bail("bad test address %s", ip);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)st;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(5432);
		if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
			tap_bail("bad test address %s", ip);
	}
	return (const struct sockaddr *)st;
}

static void test_parse_good(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	        {"10.0.0.0/8", "10.0.0.0/8"},
	        {"127.0.0.1", "127.0.0.1/32"},
	        {"127.0.0.1/32", "127.0.0.1/32"},
	        {"0.0.0.0/0", "0.0.0.0/0"},
	        {"1.2.3.4/0", "0.0.0.0/0"},
	        {"10.0.0.1/8", "10.0.0.0/8"},
	        {"192.168.37.255/23", "192.168.36.0/23"},
	        {"172.16.5.4/12", "172.16.0.0/12"},
	        {"255.255.255.255/31", "255.255.255.254/31"},
	        {"::1", "::1/128"},
	        {"::1/128", "::1/128"},
	        {"::/0", "::/0"},
	        {"fd00::/8", "fd00::/8"},
	        {"fdff:1234::1/8", "fd00::/8"},
	        {"2001:db8::/32", "2001:db8::/32"},
	        {"2001:db8:ffff:1::/33", "2001:db8:8000::/33"},
	        {"::ffff:10.1.2.3/120", "::ffff:10.1.2.0/120"},
	        {"10.0.0.0/008", "10.0.0.0/8"},
	};
	char out[64], err[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		bool okp = cidr_parse(cases[i].in, &c, err, sizeof(err));
		if (!okp)
			diag("%s", err);
		cidr_format(&c, out, sizeof(out));
		is_str(okp ? out : NULL, cases[i].want, "parse %s", cases[i].in);
	}

	struct cidr c;
	ok(cidr_parse("10.0.0.0/8", &c, NULL, 0) && c.family == AF_INET && c.bits == 8 &&
	           c.addr[0] == 10 && c.addr[1] == 0 && c.addr[4] == 0,
	   "parse: family, bits, bytes");
	ok(cidr_parse("::1", &c, NULL, 0) && c.family == AF_INET6 && c.bits == 128 &&
	           c.addr[15] == 1,
	   "parse: IPv6 family, bits, bytes");
	cidr_format(&c, out, 4);
	is_str(out, "::1", "format truncates to the buffer");
}

static void test_parse_bad(void)
{
	static const struct {
		const char *in, *err;
	} cases[] = {
	        {"", "empty network address"},
	        {"garbage", "\"garbage\" is not a valid IPv4 or IPv6 address"},
	        {"10.0.0.0/33",
	         "invalid prefix length \"33\" in \"10.0.0.0/33\" (0 to 32 for IPv4)"},
	        {"::/129", "invalid prefix length \"129\" in \"::/129\" (0 to 128 for IPv6)"},
	        {"10.0.0.0/", "invalid prefix length \"\" in \"10.0.0.0/\" (0 to 32 for IPv4)"},
	        {"10.0.0.0/-1",
	         "invalid prefix length \"-1\" in \"10.0.0.0/-1\" (0 to 32 for IPv4)"},
	        {"10.0.0.0/+8",
	         "invalid prefix length \"+8\" in \"10.0.0.0/+8\" (0 to 32 for IPv4)"},
	        {"10.0.0.0/8x",
	         "invalid prefix length \"8x\" in \"10.0.0.0/8x\" (0 to 32 for IPv4)"},
	        {"10.0.0.0/8/8",
	         "invalid prefix length \"8/8\" in \"10.0.0.0/8/8\" (0 to 32 for IPv4)"},
	        {"10.0.0.0/0008",
	         "invalid prefix length \"0008\" in \"10.0.0.0/0008\" (0 to 32 for IPv4)"},
	        {"10.0.0.0/ 8",
	         "invalid prefix length \" 8\" in \"10.0.0.0/ 8\" (0 to 32 for IPv4)"},
	        {"/8", "\"\" is not a valid IPv4 or IPv6 address"},
	        {"10.0.0/8", "\"10.0.0\" is not a valid IPv4 or IPv6 address"},
	        {"256.0.0.0/8", "\"256.0.0.0\" is not a valid IPv4 or IPv6 address"},
	        {" 10.0.0.0/8", "\" 10.0.0.0\" is not a valid IPv4 or IPv6 address"},
	        {"10.0.0.0 /8", "\"10.0.0.0 \" is not a valid IPv4 or IPv6 address"},
	        {"fe80::1%eth0", "\"fe80::1%eth0\" is not a valid IPv4 or IPv6 address"},
	        {":::1", "\":::1\" is not a valid IPv4 or IPv6 address"},
	        {"localhost", "\"localhost\" is not a valid IPv4 or IPv6 address"},
	        {"1111:2222:3333:4444:5555:6666:7777:8888:9999/64",
	         "\"1111:2222:3333:4444:5555:6666:7777:8888:9999\" is not a valid IPv4 or IPv6 "
	         "address"},
	};
	char err[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		memset(err, 0, sizeof(err));
		bool okp = cidr_parse(cases[i].in, &c, err, sizeof(err));
		ok(!okp, "reject \"%s\"", cases[i].in);
		is_str(err, cases[i].err, "message for \"%s\"", cases[i].in);
	}

	struct cidr c;
	ok(!cidr_parse(NULL, &c, err, sizeof(err)), "reject NULL");
	ok(!cidr_parse("nope", &c, NULL, 0), "NULL error buffer");
	ok(!cidr_parse("nope", &c, err, 1) && err[0] == '\0', "one-byte error buffer");
}

static void test_mask(void)
{
	static const struct {
		const char *addr, *mask, *want;
	} good[] = {
	        {"10.1.2.3", "255.255.0.0", "10.1.0.0/16"},
	        {"10.1.2.3", "255.255.255.255", "10.1.2.3/32"},
	        {"10.1.2.3", "0.0.0.0", "0.0.0.0/0"},
	        {"192.168.1.0", "255.255.255.128", "192.168.1.0/25"},
	        {"192.168.1.0", "255.255.254.0", "192.168.0.0/23"},
	        {"2001:db8::1", "ffff:ffff::", "2001:db8::/32"},
	        {"::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::1/128"},
	        {"fd00::", "fe00::", "fc00::/7"},
	};
	static const struct {
		const char *addr, *mask, *err;
	} bad[] = {
	        {"10.1.2.3", "255.0.255.0", "netmask \"255.0.255.0\" is not contiguous"},
	        {"10.1.2.3", "255.255.255.1", "netmask \"255.255.255.1\" is not contiguous"},
	        {"10.1.2.3", "0.255.255.255", "netmask \"0.255.255.255\" is not contiguous"},
	        {"10.1.2.3", "255.254.255.0", "netmask \"255.254.255.0\" is not contiguous"},
	        {"10.1.2.3", "ffff::",
	         "address \"10.1.2.3\" and netmask \"ffff::\" are of "
	         "different families"},
	        {"::1", "255.0.0.0",
	         "address \"::1\" and netmask \"255.0.0.0\" are of different "
	         "families"},
	        {"10.1.2.3", "16", "\"16\" is not a valid netmask"},
	        {"10.1.2.3", "md5", "\"md5\" is not a valid netmask"},
	        {"10.0.0.0/8", "255.0.0.0", "\"10.0.0.0/8\" is not a valid IPv4 or IPv6 address"},
	        {"host", "255.0.0.0", "\"host\" is not a valid IPv4 or IPv6 address"},
	        {"", "255.0.0.0", "empty network address"},
	        {"10.0.0.0", "", "empty netmask"},
	};
	char out[64], err[160];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct cidr c;
		bool okp = cidr_parse_mask(good[i].addr, good[i].mask, &c, err, sizeof(err));
		if (!okp)
			diag("%s", err);
		cidr_format(&c, out, sizeof(out));
		is_str(okp ? out : NULL, good[i].want, "mask %s %s", good[i].addr, good[i].mask);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cidr c;
		memset(err, 0, sizeof(err));
		bool okp = cidr_parse_mask(bad[i].addr, bad[i].mask, &c, err, sizeof(err));
		ok(!okp, "reject mask %s %s", bad[i].addr, bad[i].mask);
		is_str(err, bad[i].err, "message for %s %s", bad[i].addr, bad[i].mask);
	}
}

static void test_match(void)
{
	static const struct {
		const char *net, *ip;
		bool want;
	} cases[] = {
	        {"10.0.0.0/8", "10.0.0.0", true},
	        {"10.0.0.0/8", "10.0.0.1", true},
	        {"10.0.0.0/8", "10.255.255.255", true},
	        {"10.0.0.0/8", "11.0.0.0", false},
	        {"10.0.0.0/8", "9.255.255.255", false},
	        {"10.0.0.0/8", "::ffff:10.9.8.7", true},
	        {"10.0.0.0/8", "::ffff:11.9.8.7", false},
	        {"10.0.0.0/8", "::10.9.8.7", false}, /* IPv4-compatible, not mapped */
	        {"10.0.0.0/8", "a00::", false},
	        {"127.0.0.1", "127.0.0.1", true},
	        {"127.0.0.1", "127.0.0.2", false},
	        {"127.0.0.1/32", "::ffff:127.0.0.1", true},
	        {"0.0.0.0/0", "1.2.3.4", true},
	        {"0.0.0.0/0", "255.255.255.255", true},
	        {"0.0.0.0/0", "::ffff:1.2.3.4", true},
	        {"0.0.0.0/0", "::1", false},
	        {"192.168.36.0/23", "192.168.37.200", true},
	        {"192.168.36.0/23", "192.168.38.0", false},
	        {"192.168.36.0/23", "192.168.35.255", false},
	        {"172.16.0.0/12", "172.31.255.255", true},
	        {"172.16.0.0/12", "172.32.0.0", false},
	        {"10.0.0.128/25", "10.0.0.127", false},
	        {"10.0.0.128/25", "10.0.0.128", true},
	        {"10.0.0.1/31", "10.0.0.0", true},
	        {"10.0.0.1/31", "10.0.0.2", false},
	        {"::1", "::1", true},
	        {"::1", "::2", false},
	        {"::1", "127.0.0.1", false},
	        {"::1/128", "::ffff:127.0.0.1", false},
	        {"::/0", "::1", true},
	        {"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
	        {"::/0", "1.2.3.4", false},
	        {"fd00::/8", "fd12:3456::1", true},
	        {"fd00::/8", "fc00::1", false},
	        {"fd00::/8", "fe00::", false},
	        {"2001:db8::/32", "2001:db8:ffff:ffff::1", true},
	        {"2001:db8::/32", "2001:db9::", false},
	        {"2001:db8::/33", "2001:db8:7fff::1", true},
	        {"2001:db8::/33", "2001:db8:8000::", false},
	        {"::ffff:10.0.0.0/104", "::ffff:10.1.1.1", true},
	        {"::ffff:10.0.0.0/104", "10.1.1.1", false},
	};
	struct sockaddr_storage st;
	char err[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		if (!cidr_parse(cases[i].net, &c, err, sizeof(err)))
			tap_bail("%s", err);
		ok(cidr_match(&c, sa(&st, cases[i].ip)) == cases[i].want, "%s %s %s", cases[i].net,
		   cases[i].want ? "contains" : "does not contain", cases[i].ip);
	}

	/* Not an IP socket, or nothing at all. */
	struct cidr all4, all6;
	struct sockaddr_un sun;
	struct sockaddr_storage unspec;
	if (!cidr_parse("0.0.0.0/0", &all4, NULL, 0) || !cidr_parse("::/0", &all6, NULL, 0))
		tap_bail("cannot parse /0");
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, "/tmp/.s.PGSQL.6432");
	memset(&unspec, 0, sizeof(unspec));
	ok(!cidr_match(&all4, (const struct sockaddr *)&sun) &&
	           !cidr_match(&all6, (const struct sockaddr *)&sun),
	   "AF_UNIX never matches");
	ok(!cidr_match(&all4, (const struct sockaddr *)&unspec) &&
	           !cidr_match(&all6, (const struct sockaddr *)&unspec),
	   "AF_UNSPEC never matches");
	ok(!cidr_match(&all4, NULL) && !cidr_match(NULL, sa(&st, "1.2.3.4")), "NULL never matches");

	/* The "address mask" form matches like the prefix form. */
	struct cidr m;
	if (!cidr_parse_mask("10.1.0.0", "255.255.0.0", &m, err, sizeof(err)))
		tap_bail("%s", err);
	ok(cidr_match(&m, sa(&st, "10.1.255.1")), "mask form: inside");
	ok(!cidr_match(&m, sa(&st, "10.2.0.1")), "mask form: outside");
}

static void test_list(void)
{
	struct cidr_list l;
	struct sockaddr_storage st;
	char err[160], out[64];

	ok(cidr_list_parse("10.0.0.0/8, 127.0.0.2, ::1", &l, err, sizeof(err)), "list: parse");
	is_int((long)l.n, 3, "list: three networks");
	cidr_format(&l.v[1], out, sizeof(out));
	is_str(out, "127.0.0.2/32", "list: second network");
	ok(cidr_list_match(&l, sa(&st, "10.200.0.1")), "list: first matches");
	ok(cidr_list_match(&l, sa(&st, "127.0.0.2")), "list: second matches");
	ok(!cidr_list_match(&l, sa(&st, "127.0.0.1")), "list: neighbour does not");
	ok(cidr_list_match(&l, sa(&st, "::1")), "list: IPv6 matches");
	ok(cidr_list_match(&l, sa(&st, "::ffff:10.0.0.1")), "list: v4-mapped matches");
	ok(!cidr_list_match(&l, sa(&st, "::2")), "list: other IPv6 does not");
	cidr_list_free(&l);
	ok(l.v == NULL && l.n == 0, "list: freed");

	ok(cidr_list_parse("  10.0.0.0/8\t192.168.0.0/16,,\n::1 , fd00::/8 ,", &l, err,
	                   sizeof(err)) &&
	           l.n == 4,
	   "list: commas and white space in any mix");
	cidr_list_free(&l);

	ok(cidr_list_parse("", &l, err, sizeof(err)) && l.n == 0 && l.v == NULL, "list: empty");
	ok(!cidr_list_match(&l, sa(&st, "1.2.3.4")), "list: empty matches nothing");
	cidr_list_free(&l);
	ok(cidr_list_parse(" , ", &l, err, sizeof(err)) && l.n == 0, "list: only separators");
	cidr_list_free(&l);
	ok(cidr_list_parse(NULL, &l, err, sizeof(err)) && l.n == 0, "list: NULL");
	ok(!cidr_list_match(NULL, sa(&st, "1.2.3.4")), "list: NULL matches nothing");

	l.v = (struct cidr *)&st; /* must be reset on failure */
	l.n = 9;
	ok(!cidr_list_parse("10.0.0.0/8, 10.0.0.0/40, ::1", &l, err, sizeof(err)),
	   "list: one bad network fails the list");
	ok(l.v == NULL && l.n == 0, "list: empty after failure");
	is_str(err, "invalid prefix length \"40\" in \"10.0.0.0/40\" (0 to 32 for IPv4)",
	       "list: message names the bad network");
	ok(!cidr_list_parse("10.0.0.0/8 localhost", &l, err, sizeof(err)), "list: host name");
	is_str(err, "\"localhost\" is not a valid IPv4 or IPv6 address", "list: host name message");

	char longtok[200];
	memset(longtok, '1', sizeof(longtok) - 1);
	longtok[sizeof(longtok) - 1] = '\0';
	ok(!cidr_list_parse(longtok, &l, err, sizeof(err)), "list: overlong item");
	ok(strstr(err, "is too long for a network address") != NULL, "list: overlong message");

	/* Many networks. */
	char big[20000];
	size_t len = 0;
	for (int i = 0; i < 1000; i++)
		len += (size_t)snprintf(big + len, sizeof(big) - len, "10.%d.%d.0/24 ", i / 256,
		                        i % 256);
	ok(cidr_list_parse(big, &l, err, sizeof(err)) && l.n == 1000, "list: 1000 networks");
	ok(cidr_list_match(&l, sa(&st, "10.3.231.9")), "list: the last one matches");
	ok(!cidr_list_match(&l, sa(&st, "10.3.232.9")), "list: one past the last does not");
	cidr_list_free(&l);
	cidr_list_free(NULL);
}

int main(void)
{
	test_parse_good();
	test_parse_bad();
	test_mask();
	test_match();
	test_list();
	return tap_done();
}
