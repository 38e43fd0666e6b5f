/* pg_hba rules: parsing, first match, @file includes, errors with line
 * numbers, limits, and the accept-time check. */
#include <config.h>

#include "auth/hba.h"
#include "tests/lib/tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A sockaddr for `ip` (NULL gives NULL: a Unix-socket client). */
static const struct sockaddr *sa(struct sockaddr_storage *st, const char *ip)
{
	if (ip == NULL)
		return NULL;
	memset(st, 0, sizeof(*st));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)st;
		s6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
			tap_bail("bad test address %s", ip);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)st;
		s4->sin_family = AF_INET;
		if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
			tap_bail("bad test address %s", ip);
	}
	return (const struct sockaddr *)st;
}

static struct hba *parse_ok(const char *text, const char *what)
{
	struct strlist errors;
	struct hba *h;

	strlist_init(&errors);
	h = hba_parse(text, "t.conf", NULL, &errors);
	for (size_t i = 0; i < errors.n; i++)
		diag("%s", errors.items[i]);
	strlist_free(&errors);
	if (h == NULL)
		tap_bail("%s: does not parse", what);
	return h;
}

/* The one error of parsing `text`. */
static void parse_err(const char *text, const char *want, const char *what)
{
	struct strlist errors;
	struct hba *h;

	strlist_init(&errors);
	h = hba_parse(text, "t.conf", NULL, &errors);
	ok(h == NULL && errors.n == 1, "%s: refused with one error", what);
	is_str(errors.n > 0 ? errors.items[0] : NULL, want, "%s: message", what);
	hba_free(h);
	strlist_free(&errors);
}

struct expect {
	enum hba_conn conn;
	const char *ip; /* NULL: local */
	const char *db, *user;
	int line; /* 0: no rule matches */
	enum hba_method method;
	int cc; /* 0 none, 1 verify-ca, 2 verify-full */
};

static void check(const struct hba *h, const struct expect *e, const char *what)
{
	static const char *const conn_names[] = {"local", "tcp", "tls"};
	struct sockaddr_storage st;
	struct hba_match m = hba_lookup(h, e->conn, sa(&st, e->ip), e->db, e->user);
	bool good;

	if (e->line == 0)
		good = !m.matched;
	else
		good = m.matched && m.line == e->line && m.method == e->method &&
		        m.clientcert == (e->cc > 0) && m.clientcert_full == (e->cc == 2);
	ok(good, "%s: %s %s db=%s user=%s -> %s line %d", what, conn_names[e->conn],
	   e->ip != NULL ? e->ip : "-", e->db != NULL ? e->db : "(null)",
	   e->user != NULL ? e->user : "(null)", e->line ? hba_method_name(e->method) : "none",
	   e->line);
	if (!good)
		diag("  got matched=%d line=%d method=%s clientcert=%d/%d", m.matched, m.line,
		     hba_method_name(m.method), m.clientcert, m.clientcert_full);
}

static void test_methods(void)
{
	is_str(hba_method_name(HBA_TRUST), "trust", "name: trust");
	is_str(hba_method_name(HBA_REJECT), "reject", "name: reject");
	is_str(hba_method_name(HBA_MD5), "md5", "name: md5");
	is_str(hba_method_name(HBA_SCRAM), "scram-sha-256", "name: scram-sha-256");
	is_str(hba_method_name(HBA_PASSWORD), "password", "name: password");
	is_str(hba_method_name(HBA_CERT), "cert", "name: cert");
}

static void test_lookup(void)
{
	const char *text =
	        "# pgmoat test rules\n" /* 1 */
	        "\n" /* 2 */
	        "local   all             postgres                        trust\n" /* 3 */
	        "local   all             all                             scram-sha-256\n" /* 4 */
	        "host    db1             alice       10.0.0.0/8          md5\n" /* 5 */
	        "host    all             alice       10.0.0.0/8          reject\n" /* 6 */
	        "host    db1,db2 , db3   bob         10.0.0.0/8          password\n" /* 7 */
	        "host    sameuser        all         192.168.0.0/16      scram-sha-256\n" /* 8 */
	        "host    \"all\"           all       172.16.0.0/12       trust # a db named all\n"
	        "host    all             \"all\"     172.16.0.0/12       md5   # a user named all\n"
	        "host    replication     all         172.16.0.0/12       trust\n" /* 11 */
	        "host    \"my db\"         \"o\"\"neil\" 172.16.0.0/12     password\n" /* 12 */
	        "hostssl all             all         10.0.0.0/8          cert\n" /* 13 */
	        "hostnossl all           all         10.0.0.0/8          md5\n" /* 14 */
	        "host    all             all         ::1/128             trust\n" /* 15 */
	        "host    all             all         fd00::/8            scram-sha-256\n" /* 16 */
	        "host    all             all         192.0.2.0   255.255.255.0   password\n" /* 17 */
	        "hostssl all             all         ::/0          md5 clientcert=verify-ca\n" /* 18 */
	        "hostssl all all 198.51.100.0/24 scram-sha-256 clientcert=verify-full\n" /* 19 */
	        "\thost\tall\tall\tall\treject\t\n"; /* 20 */
	static const struct expect cases[] = {
	        {HBA_CONN_LOCAL, NULL, "x", "postgres", 3, HBA_TRUST, 0},
	        {HBA_CONN_LOCAL, NULL, "x", "alice", 4, HBA_SCRAM, 0},
	        {HBA_CONN_TCP_PLAIN, "10.1.2.3", "db1", "alice", 5, HBA_MD5, 0},
	        {HBA_CONN_TCP_TLS, "10.1.2.3", "db1", "alice", 5, HBA_MD5, 0},
	        {HBA_CONN_TCP_PLAIN, "10.1.2.3", "db2", "alice", 6, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "10.1.2.3", "DB1", "alice", 6, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "::ffff:10.1.2.3", "db1", "alice", 5, HBA_MD5, 0},
	        {HBA_CONN_TCP_PLAIN, "10.1.2.3", "db2", "bob", 7, HBA_PASSWORD, 0},
	        {HBA_CONN_TCP_PLAIN, "10.1.2.3", "db3", "bob", 7, HBA_PASSWORD, 0},
	        {HBA_CONN_TCP_PLAIN, "10.1.2.3", "db4", "bob", 14, HBA_MD5, 0},
	        {HBA_CONN_TCP_TLS, "10.1.2.3", "db4", "bob", 13, HBA_CERT, 2},
	        {HBA_CONN_TCP_PLAIN, "11.0.0.1", "db1", "bob", 20, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "192.168.1.1", "carol", "carol", 8, HBA_SCRAM, 0},
	        {HBA_CONN_TCP_PLAIN, "192.168.1.1", "other", "carol", 20, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "172.16.0.1", "all", "x", 9, HBA_TRUST, 0},
	        {HBA_CONN_TCP_PLAIN, "172.16.0.1", "foo", "all", 10, HBA_MD5, 0},
	        {HBA_CONN_TCP_PLAIN, "172.16.0.1", "foo", "x", 20, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "172.16.0.1", "replication", "x", 20, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "172.16.0.1", "my db", "o\"neil", 12, HBA_PASSWORD, 0},
	        {HBA_CONN_TCP_PLAIN, "172.16.0.1", "my", "o\"neil", 20, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "::1", "x", "y", 15, HBA_TRUST, 0},
	        {HBA_CONN_TCP_TLS, "fd00::5", "x", "y", 16, HBA_SCRAM, 0},
	        {HBA_CONN_TCP_PLAIN, "192.0.2.77", "x", "y", 17, HBA_PASSWORD, 0},
	        {HBA_CONN_TCP_PLAIN, "192.0.3.1", "x", "y", 20, HBA_REJECT, 0},
	        {HBA_CONN_TCP_TLS, "2001:db8::1", "x", "y", 18, HBA_MD5, 1},
	        {HBA_CONN_TCP_PLAIN, "2001:db8::1", "x", "y", 20, HBA_REJECT, 0},
	        {HBA_CONN_TCP_TLS, "198.51.100.7", "x", "y", 19, HBA_SCRAM, 2},
	        {HBA_CONN_TCP_PLAIN, "198.51.100.7", "x", "y", 20, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "10.1.2.3", NULL, NULL, 14, HBA_MD5, 0},
	};
	struct hba *h = parse_ok(text, "lookup rules");

	is_int((long)hba_count(h), 18, "lookup rules: 18 rules");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check(h, &cases[i], "lookup");
	hba_free(h);

	/* No rule matches: refused by the caller. */
	h = parse_ok("host all all 10.0.0.0/8 md5\nhostssl all all 0.0.0.0/0 md5\n", "narrow");
	static const struct expect none[] = {
	        {HBA_CONN_TCP_PLAIN, "11.0.0.1", "x", "y", 0, HBA_REJECT, 0},
	        {HBA_CONN_LOCAL, NULL, "x", "y", 0, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "::1", "x", "y", 0, HBA_REJECT, 0},
	        {HBA_CONN_TCP_TLS, "::1", "x", "y", 0, HBA_REJECT, 0},
	        {HBA_CONN_TCP_TLS, "11.0.0.1", "x", "y", 2, HBA_MD5, 0},
	};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
		check(h, &none[i], "narrow");
	hba_free(h);

	struct hba_match m = hba_lookup(NULL, HBA_CONN_LOCAL, NULL, "x", "y");
	ok(!m.matched, "NULL rules match nothing");
	ok(hba_count(NULL) == 0, "NULL rules: count 0");
	hba_free(NULL);
}

static void test_may_admit(void)
{
	static const struct {
		const char *text, *ip; /* ip NULL: a Unix socket */
		bool want;
		const char *what;
	} cases[] = {
	        {"host all all 127.0.0.3/32 reject\nhost all all 127.0.0.0/8 trust\n"
	         "local all all md5\n",
	         "127.0.0.3", false, "a leading host all all reject hides the rest"},
	        {"host all all 127.0.0.3/32 reject\nhost all all 127.0.0.0/8 trust\n", "127.0.0.4",
	         true, "the reject is for another address"},
	        {"host all all 127.0.0.3/32 reject\nhost all all 127.0.0.0/8 trust\n",
	         "::ffff:127.0.0.3", false, "the reject also covers the v4-mapped address"},
	        {"host all all 127.0.0.3/32 reject\nhost all all 127.0.0.0/8 trust\n", "10.0.0.1",
	         false, "no rule for the address"},
	        {"host all all 127.0.0.3/32 reject\nlocal all all md5\n", NULL, true,
	         "a Unix socket goes by the local rules"},
	        {"host db1 all 127.0.0.3/32 reject\nhost all all 127.0.0.0/8 md5\n", "127.0.0.3",
	         true, "a per-database reject does not hide the rest"},
	        {"host all bob 0.0.0.0/0 reject\nhost all all 0.0.0.0/0 md5\n", "1.2.3.4", true,
	         "a per-user reject does not hide the rest"},
	        {"hostssl all all 0.0.0.0/0 reject\nhost all all 0.0.0.0/0 md5\n", "1.2.3.4", true,
	         "a hostssl reject does not hide plain connections"},
	        {"hostnossl all all 0.0.0.0/0 reject\nhostssl all all 0.0.0.0/0 md5\n", "1.2.3.4",
	         true, "a hostnossl reject does not hide TLS connections"},
	        {"host all all all reject\nhost all all 10.0.0.0/8 trust\n", "10.0.0.1", false,
	         "a reject for every address"},
	        {"host replication all 0.0.0.0/0 trust\n", "1.2.3.4", false,
	         "a replication-only rule admits nobody"},
	        {"host replication,db1 all 0.0.0.0/0 trust\n", "1.2.3.4", true,
	         "replication plus a database"},
	        {"hostnossl all all 10.0.0.0/8 md5\n", "10.9.9.9", true, "hostnossl admits TCP"},
	        {"hostssl all all 10.0.0.0/8 cert\n", "10.9.9.9", true, "hostssl admits TCP"},
	        {"host all all 10.0.0.0/8 md5\n", "::ffff:10.0.0.1", true, "v4-mapped client"},
	        {"host all all 10.0.0.0/8 md5\n", "::1", false, "IPv6 client, IPv4 rule"},
	        {"host all all ::1/128 md5\n", "::1", true, "IPv6 rule"},
	        {"host all all 10.0.0.0/8 md5\n", NULL, false, "Unix socket, only host rules"},
	        {"local all all trust\n", "127.0.0.1", false, "TCP, only local rules"},
	        {"local all all reject\nlocal all all trust\n", NULL, false,
	         "local all all reject hides the local rules"},
	        {"local db1 all reject\nlocal all all trust\n", NULL, true,
	         "a per-database local reject does not"},
	        {"host all all 10.0.0.0/8 reject\n", "10.0.0.1", false, "only a reject"},
	        {"", "10.0.0.1", false, "no rules: TCP"},
	        {"", NULL, false, "no rules: Unix socket"},
	};
	struct sockaddr_storage st;
	struct sockaddr_un sun;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hba *h = parse_ok(cases[i].text, cases[i].what);
		ok(hba_may_admit(h, sa(&st, cases[i].ip)) == cases[i].want, "may_admit: %s",
		   cases[i].what);
		hba_free(h);
	}

	struct hba *h = parse_ok("host all all 0.0.0.0/0 reject\nlocal all all trust\n", "unix");
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ok(hba_may_admit(h, (const struct sockaddr *)&sun), "may_admit: AF_UNIX address is local");
	ok(!hba_may_admit(NULL, NULL), "may_admit: NULL rules admit nothing");
	hba_free(h);
}

static void test_format(void)
{
	struct hba *h;

	/* Continuations: the backslash and newline vanish, even in a word, a
	 * quoted name or a comment; the rule takes its first line's number. */
	h = parse_ok("host all \\\n  all 10.0.0.0/8 \\\n md5\n"
	             "host all all 10.1.0.0/\\\n16 trust\n"
	             "# a comment \\\n"
	             "host all all 0.0.0.0/0 trust\n"
	             "host \"my \\\ndb\" all 0.0.0.0/0 password\n"
	             "local all all trust \\",
	             "continuations");
	is_int((long)hba_count(h), 4, "continuations: 4 rules");
	static const struct expect cont[] = {
	        {HBA_CONN_TCP_PLAIN, "10.1.0.1", "x", "y", 1, HBA_MD5, 0},
	        {HBA_CONN_TCP_PLAIN, "11.1.0.1", "my db", "y", 8, HBA_PASSWORD, 0},
	        {HBA_CONN_TCP_PLAIN, "11.1.0.1", "x", "y", 0, HBA_REJECT, 0},
	        {HBA_CONN_LOCAL, NULL, "x", "y", 10, HBA_TRUST, 0},
	};
	for (size_t i = 0; i < sizeof(cont) / sizeof(cont[0]); i++)
		check(h, &cont[i], "continuations");
	hba_free(h);
	h = parse_ok("host all all 10.1.0.0/\\\n16 trust\n", "c2");
	check(h, &(struct expect){HBA_CONN_TCP_PLAIN, "10.1.200.1", "x", "y", 1, HBA_TRUST, 0},
	      "continuation inside a word: /16");
	check(h, &(struct expect){HBA_CONN_TCP_PLAIN, "10.2.0.1", "x", "y", 0, HBA_REJECT, 0},
	      "continuation inside a word: not /1");
	hba_free(h);

	/* Quotes, comments, CRLF, blanks, no final newline. */
	h = parse_ok("\r\n   \t\r\n"
	             "local \"a b,c#d\",\"@file\",\"sameuser\" all trust#comment\r\n"
	             "local \"replication\" \"+grp\",sameuser md5\r\n"
	             "local x\"y z\"w \"\" password\n"
	             "local \"\" all scram-sha-256",
	             "quotes");
	is_int((long)hba_count(h), 4, "quotes: 4 rules");
	static const struct expect quotes[] = {
	        {HBA_CONN_LOCAL, NULL, "a b,c#d", "u", 3, HBA_TRUST, 0},
	        {HBA_CONN_LOCAL, NULL, "@file", "u", 3, HBA_TRUST, 0},
	        {HBA_CONN_LOCAL, NULL, "sameuser", "u", 3, HBA_TRUST, 0},
	        {HBA_CONN_LOCAL, NULL, "u", "u", 0, HBA_REJECT, 0},
	        {HBA_CONN_LOCAL, NULL, "replication", "+grp", 4, HBA_MD5, 0},
	        {HBA_CONN_LOCAL, NULL, "replication", "sameuser", 4, HBA_MD5, 0},
	        {HBA_CONN_LOCAL, NULL, "xy zw", "", 5, HBA_PASSWORD, 0},
	        {HBA_CONN_LOCAL, NULL, "", "u", 6, HBA_SCRAM, 0},
	};
	for (size_t i = 0; i < sizeof(quotes) / sizeof(quotes[0]); i++)
		check(h, &quotes[i], "quotes");
	hba_free(h);

	/* Empty and comment-only files: valid, no rules, admit nobody. */
	h = parse_ok("", "empty");
	ok(hba_count(h) == 0, "empty file: no rules");
	check(h, &(struct expect){HBA_CONN_LOCAL, NULL, "x", "y", 0, HBA_REJECT, 0}, "empty");
	hba_free(h);
	h = parse_ok("# nothing\n\n   # here \\\n  either\n", "comments only");
	ok(hba_count(h) == 0, "comment-only file: no rules");
	hba_free(h);
	h = hba_parse(NULL, NULL, NULL, NULL);
	ok(h != NULL && hba_count(h) == 0, "NULL text: no rules");
	hba_free(h);
}

static void test_errors(void)
{
	static const struct {
		const char *line, *err;
	} cases[] = {
	        {"hostgssenc all all 0.0.0.0/0 md5",
	         "connection type hostgssenc is not supported by pgmoat"},
	        {"hostnogssenc all all 0.0.0.0/0 md5",
	         "connection type hostnogssenc is not supported by pgmoat"},
	        {"host all +admins 0.0.0.0/0 md5",
	         "groups (+name) are not supported by pgmoat: \"+admins\" (quote it if it is a "
	         "name)"},
	        {"host samerole all 0.0.0.0/0 md5",
	         "groups (+name) are not supported by pgmoat: \"samerole\" (quote it if it is a "
	         "name)"},
	        {"host all samegroup 0.0.0.0/0 md5",
	         "groups (+name) are not supported by pgmoat: \"samegroup\" (quote it if it is a "
	         "name)"},
	        {"host /^db all 0.0.0.0/0 md5",
	         "regular expressions are not supported by pgmoat: \"/^db\" (quote it if it is a "
	         "name)"},
	        {"host all all db.example.com md5",
	         "host names are not supported by pgmoat: \"db.example.com\" (write an IP address "
	         "with a prefix length, e.g. 10.0.0.0/8, or all)"},
	        {"host all all .example.com md5",
	         "host names are not supported by pgmoat: \".example.com\" (write an IP address "
	         "with a prefix length, e.g. 10.0.0.0/8, or all)"},
	        {"host all all \"all\" md5",
	         "host names are not supported by pgmoat: \"all\" (write an IP address with a "
	         "prefix length, e.g. 10.0.0.0/8, or all)"},
	        {"host all all samehost md5",
	         "samehost is not supported by pgmoat; write the networks as CIDR (e.g. "
	         "10.0.0.0/8)"},
	        {"host all all samenet md5",
	         "samenet is not supported by pgmoat; write the networks as CIDR (e.g. "
	         "10.0.0.0/8)"},
	        {"local all all peer", "method peer is not supported by pgmoat"},
	        {"host all all 0.0.0.0/0 ident", "method ident is not supported by pgmoat"},
	        {"host all all 0.0.0.0/0 ldap ldapserver=x",
	         "method ldap is not supported by pgmoat"},
	        {"host all all 0.0.0.0/0 gss", "method gss is not supported by pgmoat"},
	        {"host all all 0.0.0.0/0 sspi", "method sspi is not supported by pgmoat"},
	        {"host all all 0.0.0.0/0 pam", "method pam is not supported by pgmoat"},
	        {"host all all 0.0.0.0/0 radius", "method radius is not supported by pgmoat"},
	        {"local all all bsd", "method bsd is not supported by pgmoat"},
	        {"host all all 0.0.0.0/0 MD5",
	         "invalid authentication method \"MD5\" (expected trust, reject, md5, "
	         "scram-sha-256, password or cert)"},
	        {"host all all 0.0.0.0/0 md5,trust",
	         "the method column takes one method, not a list"},
	        {"hostssl all all 0.0.0.0/0 cert map=foo",
	         "authentication option map is not supported by pgmoat"},
	        {"hostssl all all 0.0.0.0/0 md5 foo=bar",
	         "authentication option foo is not supported by pgmoat"},
	        {"hostssl all all 0.0.0.0/0 md5 noequals",
	         "authentication option \"noequals\" is not in name=value form"},
	        {"hostssl all all 0.0.0.0/0 md5 =x",
	         "authentication option \"=x\" is not in name=value form"},
	        {"host all all 0.0.0.0/0 md5 clientcert=verify-full",
	         "clientcert can only be used on hostssl rules"},
	        {"hostnossl all all 0.0.0.0/0 md5 clientcert=verify-ca",
	         "clientcert can only be used on hostssl rules"},
	        {"hostssl all all 0.0.0.0/0 md5 clientcert=1",
	         "invalid value for clientcert: \"1\" (expected verify-ca or verify-full)"},
	        {"hostssl all all 0.0.0.0/0 cert clientcert=verify-ca",
	         "clientcert=verify-ca cannot be used with method cert, which always verifies the "
	         "full certificate"},
	        {"host all all 0.0.0.0/0 cert", "method cert can only be used on hostssl rules"},
	        {"local all all cert", "method cert can only be used on hostssl rules"},
	        {"host all all 10.0.0.0/33 md5",
	         "invalid address: invalid prefix length \"33\" in \"10.0.0.0/33\" (0 to 32 for "
	         "IPv4)"},
	        {"host all all 10.0.0.1 md5",
	         "address \"10.0.0.1\" has no prefix length and no netmask column follows (write "
	         "e.g. 10.0.0.1/32)"},
	        {"host all all ::1 md5",
	         "address \"::1\" has no prefix length and no netmask column follows (write e.g. "
	         "::1/128)"},
	        {"host all all 10.0.0.1",
	         "address \"10.0.0.1\" has no prefix length and no netmask "
	         "column follows (write e.g. 10.0.0.1/32)"},
	        {"host all all 10.0.0.1 255.0.255.0 md5",
	         "invalid address and netmask: netmask \"255.0.255.0\" is not contiguous"},
	        {"host all all 10.0.0.0 ffff:: md5",
	         "invalid address and netmask: address \"10.0.0.0\" and netmask \"ffff::\" are of "
	         "different families"},
	        {"host all all 10.0.0.0/8,::1 md5",
	         "the address column takes one address, not a list"},
	        {"host all all", "end of line before the address column"},
	        {"host all", "end of line before the user column"},
	        {"local", "end of line before the database column"},
	        {"local all all", "end of line before the authentication method"},
	        {"host all all 10.0.0.0/8", "end of line before the authentication method"},
	        {"hots all all 0.0.0.0/0 md5",
	         "invalid connection type \"hots\" (expected local, host, hostssl or hostnossl)"},
	        {"host,local all all 0.0.0.0/0 md5",
	         "the connection type column takes one type, not a list"},
	        {"include other.conf",
	         "include is not supported by pgmoat (use @file in the database or user column)"},
	        {"include_dir conf.d",
	         "include_dir is not supported by pgmoat (use @file in the database or user "
	         "column)"},
	        {"host \"unterminated all all 0.0.0.0/0 md5", "unterminated quoted string"},
	        {"host db1,,db2 all 0.0.0.0/0 md5", "empty item in a list"},
	        {"host db1, # comment", "a list ends with a comma"},
	        {"host db1,", "a list ends with a comma"},
	        {",host all all 0.0.0.0/0 md5", "a list cannot start with a comma"},
	        {"host all @ 0.0.0.0/0 md5", "@ must be followed by a file name"},
	        {"host all @missing.txt 0.0.0.0/0 md5",
	         "@missing.txt: ./missing.txt: cannot open: No such file or directory"},
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	size_t cap = 64 * 1024, len = 0;
	char *text = malloc(cap), want[1024];
	struct strlist errors;
	struct hba *h;

	/* Each alone... */
	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "t.conf:1: %s", cases[i].err);
		parse_err(cases[i].line, want, cases[i].line);
	}

	/* ... and all in one file, between good lines: every one is reported
	 * with its line, and the file does not load. */
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len, "local all all trust\n%s\n",
		                        cases[i].line);
	strlist_init(&errors);
	h = hba_parse(text, "bad.conf", NULL, &errors);
	ok(h == NULL, "bad file: does not load");
	is_int((long)errors.n, (long)n, "bad file: one error per bad line");
	for (size_t i = 0; i < n && i < errors.n; i++) {
		snprintf(want, sizeof(want), "bad.conf:%zu: %s", 2 * i + 2, cases[i].err);
		is_str(errors.items[i], want, "bad file: error %zu", i);
	}
	strlist_free(&errors);
	ok(hba_parse(text, "bad.conf", NULL, NULL) == NULL, "bad file: NULL error list");
	free(text);

	/* A continued record reports its first line. */
	parse_err("local all all trust\n"
	          "host all \\\n"
	          "  all 10.0.0.0/8 \\\n"
	          "  peer\n"
	          "local all all trust\n",
	          "t.conf:2: method peer is not supported by pgmoat", "continued bad record");

	/* Too many errors: stop after a hundred. */
	cap = 200 * 32;
	text = malloc(cap);
	len = 0;
	for (int i = 0; i < 200; i++)
		len += (size_t)snprintf(text + len, cap - len, "local all all peer\n");
	strlist_init(&errors);
	h = hba_parse(text, "many.conf", NULL, &errors);
	ok(h == NULL && errors.n == 101, "too many errors: 100 and a last word");
	is_str(errors.n == 101 ? errors.items[100] : NULL, "many.conf: too many errors, giving up",
	       "too many errors: message");
	strlist_free(&errors);
	free(text);
}

static void test_limits(void)
{
	char *text = malloc(4 * HBA_MAX_LINE);
	struct strlist errors;
	struct hba *h;
	size_t len;

	/* A line of exactly the limit is fine; one byte more is not. */
	len = (size_t)snprintf(text, 4 * HBA_MAX_LINE, "local all all trust #");
	memset(text + len, 'x', HBA_MAX_LINE - len);
	text[HBA_MAX_LINE] = '\0';
	h = parse_ok(text, "longest line");
	ok(hba_count(h) == 1, "a line of %d bytes", HBA_MAX_LINE);
	hba_free(h);
	text[HBA_MAX_LINE] = 'x';
	strcpy(text + HBA_MAX_LINE + 1, "\nlocal all all peer\n");
	strlist_init(&errors);
	h = hba_parse(text, "long.conf", NULL, &errors);
	ok(h == NULL && errors.n == 2, "a line too long, and the next line still read");
	is_str(errors.n > 0 ? errors.items[0] : NULL,
	       "long.conf:1: line too long (the limit is 8192 bytes)", "line too long: message");
	is_str(errors.n > 1 ? errors.items[1] : NULL,
	       "long.conf:2: method peer is not supported by pgmoat", "line after: its own number");
	strlist_free(&errors);

	/* Continued lines count together; the line numbers after stay right. */
	len = (size_t)snprintf(text, 4 * HBA_MAX_LINE, "local all all trust #");
	memset(text + len, 'x', 5000);
	len += 5000;
	len += (size_t)snprintf(text + len, 4 * HBA_MAX_LINE - len, "\\\n");
	memset(text + len, 'y', 5000);
	len += 5000;
	snprintf(text + len, 4 * HBA_MAX_LINE - len, "\nlocal all all bsd\n");
	strlist_init(&errors);
	h = hba_parse(text, "cont.conf", NULL, &errors);
	ok(h == NULL && errors.n == 2, "a continued line too long");
	is_str(errors.n > 0 ? errors.items[0] : NULL,
	       "cont.conf:1: line too long (the limit is 8192 bytes)", "continued: message");
	is_str(errors.n > 1 ? errors.items[1] : NULL,
	       "cont.conf:3: method bsd is not supported by pgmoat", "continued: next line number");
	strlist_free(&errors);

	/* A long list of names within the limit. */
	len = (size_t)snprintf(text, 4 * HBA_MAX_LINE, "host ");
	for (int i = 0; i < 800; i++)
		len += (size_t)snprintf(text + len, 4 * HBA_MAX_LINE - len, "%sd%04d", i ? "," : "",
		                        i);
	snprintf(text + len, 4 * HBA_MAX_LINE - len, " all 0.0.0.0/0 md5\n");
	h = parse_ok(text, "800 names");
	check(h, &(struct expect){HBA_CONN_TCP_PLAIN, "1.1.1.1", "d0799", "u", 1, HBA_MD5, 0},
	      "800 names: the last");
	check(h, &(struct expect){HBA_CONN_TCP_PLAIN, "1.1.1.1", "d0800", "u", 0, HBA_REJECT, 0},
	      "800 names: one past");
	hba_free(h);
	free(text);

	/* Many rules; then one too many. */
	size_t cap = (size_t)(HBA_MAX_RULES + 1) * 24 + 64;
	text = malloc(cap);
	len = 0;
	for (int i = 0; i < 2000; i++)
		len += (size_t)snprintf(text + len, cap - len, "host db%d all 10.0.0.0/8 md5\n", i);
	h = parse_ok(text, "2000 rules");
	ok(hba_count(h) == 2000, "2000 rules");
	check(h, &(struct expect){HBA_CONN_TCP_PLAIN, "10.0.0.1", "db1999", "u", 2000, HBA_MD5, 0},
	      "2000 rules: the last");
	hba_free(h);
	len = 0;
	for (int i = 0; i <= HBA_MAX_RULES; i++)
		len += (size_t)snprintf(text + len, cap - len, "local all all trust\n");
	strlist_init(&errors);
	h = hba_parse(text, "huge.conf", NULL, &errors);
	ok(h == NULL && errors.n == 1, "more than %d rules: refused", HBA_MAX_RULES);
	is_str(errors.n > 0 ? errors.items[0] : NULL,
	       "huge.conf:100001: too many rules (the limit is 100000)", "too many rules: message");
	strlist_free(&errors);
	free(text);
}

static char tmpdir[4096];

static void write_file(const char *name, const char *text, size_t len)
{
	char path[8192];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0)
		tap_bail("write %s: %s", path, strerror(errno));
}

static void put(const char *name, const char *text)
{
	write_file(name, text, strlen(text));
}

/* Load `name` from the temp dir; its errors into `errors`. */
static struct hba *load(const char *name, struct strlist *errors)
{
	char path[8192];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return hba_load(path, errors);
}

static void remove_tmpdir(void)
{
	static const char *const names[] = {
	        "hba.conf",  "dbs.txt",   "more.txt", "users.txt", "sub/u2.txt", "sub/extra.txt",
	        "empty.txt", "bad.txt",   "loop.txt", "e.conf",    "bad.conf",   "loop.conf",
	        "nul.conf",  "miss.conf", "kw.txt",   "kw.conf",
	};
	char path[8192];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/sub", tmpdir);
	rmdir(path);
	if (rmdir(tmpdir) != 0)
		diag("rmdir %s: %s", tmpdir, strerror(errno));
}

static void test_files(void)
{
	const char *t = getenv("TMPDIR");
	char path[8192], want[8400], sub[8192];
	struct strlist errors;
	struct hba *h;

	snprintf(tmpdir, sizeof(tmpdir), "%s/pgmoat_test_hba_XXXXXX",
	         t != NULL && t[0] != '\0' ? t : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		tap_bail("mkdtemp: %s", strerror(errno));
	snprintf(sub, sizeof(sub), "%s/sub", tmpdir);
	if (mkdir(sub, 0700) != 0)
		tap_bail("mkdir %s: %s", sub, strerror(errno));

	put("dbs.txt", "# databases\ndb1, db2\n  db3 \"my db\" # more below\n@more.txt\n");
	put("more.txt", "db4");
	put("users.txt", "alice\tbob\n");
	put("sub/u2.txt", "carol @extra.txt\n"); /* relative to sub/ */
	put("sub/extra.txt", "dave\n");
	put("empty.txt", "# nobody\n");
	put("hba.conf",
	    "host @dbs.txt @users.txt 10.0.0.0/8 md5\n"
	    "host all @sub/u2.txt 10.0.0.0/8 trust\n"
	    "host all @empty.txt 10.0.0.0/8 password\n"
	    "host @empty.txt all 10.0.0.0/8 password\n"
	    "host all \"@users.txt\" 10.0.0.0/8 scram-sha-256\n"
	    "host all all 10.0.0.0/8 reject\n");
	strlist_init(&errors);
	h = load("hba.conf", &errors);
	for (size_t i = 0; i < errors.n; i++)
		diag("%s", errors.items[i]);
	ok(h != NULL && errors.n == 0, "@file: loads");
	strlist_free(&errors);
	if (h == NULL)
		tap_bail("cannot go on");
	is_int((long)hba_count(h), 6, "@file: 6 rules");
	static const struct expect inc[] = {
	        {HBA_CONN_TCP_PLAIN, "10.0.0.1", "db1", "alice", 1, HBA_MD5, 0},
	        {HBA_CONN_TCP_PLAIN, "10.0.0.1", "db3", "bob", 1, HBA_MD5, 0},
	        {HBA_CONN_TCP_PLAIN, "10.0.0.1", "my db", "bob", 1, HBA_MD5, 0},
	        {HBA_CONN_TCP_PLAIN, "10.0.0.1", "db4", "alice", 1, HBA_MD5, 0},
	        {HBA_CONN_TCP_PLAIN, "10.0.0.1", "db5", "alice", 6, HBA_REJECT, 0},
	        {HBA_CONN_TCP_PLAIN, "10.0.0.1", "db5", "carol", 2, HBA_TRUST, 0},
	        {HBA_CONN_TCP_PLAIN, "10.0.0.1", "db1", "dave", 2, HBA_TRUST, 0},
	        {HBA_CONN_TCP_PLAIN, "10.0.0.1", "x", "@users.txt", 5, HBA_SCRAM, 0},
	        {HBA_CONN_TCP_PLAIN, "10.0.0.1", "x", "nobody", 6, HBA_REJECT, 0},
	};
	for (size_t i = 0; i < sizeof(inc) / sizeof(inc[0]); i++)
		check(h, &inc[i], "@file");
	hba_free(h);

	/* Keywords keep their meaning inside an @file. */
	put("kw.txt", "all\n");
	put("kw.conf", "local @kw.txt alice trust\n");
	h = load("kw.conf", NULL);
	check(h, &(struct expect){HBA_CONN_LOCAL, NULL, "anydb", "alice", 1, HBA_TRUST, 0},
	      "@file: all in an @file");
	hba_free(h);

	/* An absolute @file, from hba_parse with no directory. */
	snprintf(path, sizeof(path), "local all @%s/users.txt trust\n", tmpdir);
	h = parse_ok(path, "absolute @file");
	check(h, &(struct expect){HBA_CONN_LOCAL, NULL, "x", "bob", 1, HBA_TRUST, 0},
	      "@file: absolute path");
	hba_free(h);
	/* ... and a relative one from hba_parse with a directory. */
	h = hba_parse("local all @users.txt md5\n", "x.conf", tmpdir, NULL);
	ok(h != NULL, "hba_parse with a directory for @file");
	check(h, &(struct expect){HBA_CONN_LOCAL, NULL, "x", "alice", 1, HBA_MD5, 0},
	      "@file: relative to the given directory");
	hba_free(h);

	/* Errors inside an @file name the hba line and the @file line. */
	put("bad.txt", "alice\n\"unterminated\n");
	put("bad.conf", "local all all trust\nlocal all @bad.txt md5\n");
	strlist_init(&errors);
	h = load("bad.conf", &errors);
	ok(h == NULL && errors.n == 1, "@file with an error: does not load");
	snprintf(want, sizeof(want), "%s/bad.conf:2: %s/bad.txt:2: unterminated quoted string",
	         tmpdir, tmpdir);
	is_str(errors.n > 0 ? errors.items[0] : NULL, want, "@file with an error: message");
	strlist_free(&errors);

	put("bad.txt", "alice +admins\n");
	strlist_init(&errors);
	h = load("bad.conf", &errors);
	snprintf(want, sizeof(want),
	         "%s/bad.conf:2: %s/bad.txt:1: groups (+name) are not supported by pgmoat: "
	         "\"+admins\" (quote it if it is a name)",
	         tmpdir, tmpdir);
	is_str(errors.n > 0 ? errors.items[0] : NULL, want, "@file with a group: message");
	hba_free(h);
	strlist_free(&errors);

	put("loop.txt", "a @loop.txt\n");
	put("loop.conf", "local @loop.txt all trust\n");
	strlist_init(&errors);
	h = load("loop.conf", &errors);
	ok(h == NULL && errors.n == 1, "@file including itself: refused");
	ok(errors.n > 0 &&
	           strstr(errors.items[0],
	                  "@file nested more than 8 deep (does a file "
	                  "include itself?)") != NULL,
	   "@file including itself: message");
	strlist_free(&errors);

	/* An @file named a thousand times over: the reads are bounded. */
	size_t cap = 1200 * 12, len = 0;
	char *fan = malloc(cap);
	len += (size_t)snprintf(fan, cap, "local all ");
	for (int i = 0; i < 1001; i++)
		len += (size_t)snprintf(fan + len, cap - len, "%s@kw.txt", i ? "," : "");
	snprintf(fan + len, cap - len, " trust\n");
	strlist_init(&errors);
	h = hba_parse(fan, "fan.conf", tmpdir, &errors);
	ok(h == NULL && errors.n == 1, "a thousand and one @file reads: refused");
	is_str(errors.n > 0 ? errors.items[0] : NULL,
	       "fan.conf:1: too many @file includes (the limit is 1000)", "too many @file reads");
	strlist_free(&errors);
	fan[len] = '\0';
	strcpy(strrchr(fan, ','), " trust\n");
	h = hba_parse(fan, "fan.conf", tmpdir, NULL);
	ok(h != NULL && hba_count(h) == 1, "a thousand @file reads: fine");
	hba_free(h);
	free(fan);

	put("miss.conf", "\n\nlocal all @nothere.txt trust\n");
	strlist_init(&errors);
	h = load("miss.conf", &errors);
	snprintf(want, sizeof(want),
	         "%s/miss.conf:3: @nothere.txt: %s/nothere.txt: cannot open: No such file or "
	         "directory",
	         tmpdir, tmpdir);
	is_str(errors.n > 0 ? errors.items[0] : NULL, want, "missing @file: message");
	ok(h == NULL, "missing @file: does not load");
	strlist_free(&errors);

	/* The hba file itself. */
	strlist_init(&errors);
	h = hba_load("/nonexistent/pgmoat/hba.conf", &errors);
	ok(h == NULL, "missing file: does not load");
	is_str(errors.n > 0 ? errors.items[0] : NULL,
	       "/nonexistent/pgmoat/hba.conf: cannot open: No such file or directory",
	       "missing file: message");
	strlist_free(&errors);

	strlist_init(&errors);
	h = hba_load(tmpdir, &errors);
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory", tmpdir);
	ok(h == NULL, "a directory: does not load");
	is_str(errors.n > 0 ? errors.items[0] : NULL, want, "a directory: message");
	strlist_free(&errors);

	strlist_init(&errors);
	ok(hba_load("", &errors) == NULL && errors.n == 1, "empty path: error");
	strlist_free(&errors);

	static const char nul[] = "local all all trust\nlocal all\0 all trust\nlocal all all md5\n";
	write_file("nul.conf", nul, sizeof(nul) - 1);
	strlist_init(&errors);
	h = load("nul.conf", &errors);
	snprintf(want, sizeof(want), "%s/nul.conf:2: NUL byte in line", tmpdir);
	ok(h == NULL && errors.n == 1, "NUL byte: does not load");
	is_str(errors.n > 0 ? errors.items[0] : NULL, want, "NUL byte: message");
	strlist_free(&errors);

	put("e.conf", "");
	h = load("e.conf", NULL);
	ok(h != NULL && hba_count(h) == 0, "empty file: loads with no rules");
	ok(!hba_may_admit(h, NULL), "empty file: admits nobody");
	hba_free(h);

	remove_tmpdir();
}

int main(void)
{
	test_methods();
	test_lookup();
	test_may_admit();
	test_format();
	test_errors();
	test_limits();
	test_files();
	return tap_done();
}
