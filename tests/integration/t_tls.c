/* TLS on both legs, with certificates made by the test (tests/lib/certs.h):
 * libpq's sslmode=verify-full against pgmoat with the right CA, the wrong
 * CA and the wrong host name; client_tls_sslmode require refusing plain
 * connections with 28000; clear-text bytes sent right after SSLRequest
 * never processed (CVE-2021-23214); client certificates (verify-ca) and
 * cert authentication; certificates replaced on SIGHUP without dropping
 * connections, and a bad file on reload keeping the old ones; large
 * results and COPY over TLS; hostssl rules, SCRAM-SHA-256-PLUS and cert
 * authentication; pgmoat's own TLS to a PostgreSQL with ssl = on in
 * verify-full (with SCRAM-SHA-256-PLUS), refused with the wrong CA. */
#include <config.h>

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/certs.h"
#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

static char *conninfo_tls(const struct h_moat *m, const char *host, const char *user,
                          const char *password, const char *extra)
{
	return h_strdupf("host=%s hostaddr=127.0.0.1 port=%d user=%s dbname=app %s%s "
	                 "connect_timeout=10 %s",
	                 host, m->port, user, password ? "password=" : "", password ? password : "",
	                 extra);
}

/* "ok" when it connected and ran a query over TLS, else libpq's message. */
static char *try_connect(const struct h_moat *m, const char *host, const char *user,
                         const char *password, const char *extra)
{
	char *ci = conninfo_tls(m, host, user, password, extra);
	PGconn *c = PQconnectdb(ci);
	free(ci);
	char *out;
	if (PQstatus(c) != CONNECTION_OK) {
		out = h_strdupf("failed: %s", PQerrorMessage(c));
	} else {
		char *v = h_value(c, "select 'q' || 1");
		out = h_strdupf("%s%s", v && strcmp(v, "q1") == 0 ? "ok" : "query failed",
		                PQsslInUse(c) ? "" : " (no TLS)");
		free(v);
	}
	PQfinish(c);
	return out;
}

static void expect_ok(const struct h_moat *m, const char *user, const char *pw, const char *extra,
                      const char *what)
{
	char *r = try_connect(m, "localhost", user, pw, extra);
	is_str(r, "ok", "%s", what);
	free(r);
}

static void expect_fail(const struct h_moat *m, const char *host, const char *user, const char *pw,
                        const char *extra, const char *needle, const char *what)
{
	char *r = try_connect(m, host, user, pw, extra);
	bool good = strncmp(r, "failed", 6) == 0 && strstr(r, needle) != NULL;
	ok(good, "%s", what);
	if (!good)
		diag("got: %s (wanted a failure with '%s')", r, needle);
	free(r);
}

static struct h_moat *start_moat(struct h_pg *pg, const char *settings)
{
	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_std_ini(m, NULL, settings) || !h_moat_start(m, NULL))
		h_bail("pgmoat did not start with: %s", settings);
	return m;
}

static void test_verify_full(struct h_pg *pg)
{
	const struct h_certs *k = h_certs();
	char *settings = h_strdupf("client_tls_sslmode = require\n"
	                           "client_tls_cert_file = %s\nclient_tls_key_file = %s\n",
	                           k->server_crt, k->server_key);
	struct h_moat *m = start_moat(pg, settings);
	free(settings);
	char *extra = h_strdupf("sslmode=verify-full sslrootcert=%s", k->ca_crt);
	expect_ok(m, "app", NULL, extra, "verify-full with the right CA and host name: query runs");
	char *r = try_connect(m, "127.0.0.1", "app", NULL, extra);
	is_str(r, "ok", "verify-full to the IP address in the certificate: query runs");
	free(r);
	expect_fail(m, "wrong.example", "app", NULL, extra, "does not match host name",
	            "verify-full with a host name the certificate is not for: refused by libpq");
	free(extra);
	extra = h_strdupf("sslmode=verify-full sslrootcert=%s", k->other_ca_crt);
	expect_fail(m, "localhost", "app", NULL, extra, "certificate verify failed",
	            "verify-full with the wrong CA: refused by libpq");
	free(extra);

	/* Plain connections are refused with 28000. */
	char *ci = conninfo_tls(m, "localhost", "app", NULL, "sslmode=disable");
	PGconn *c = PQconnectdb(ci);
	free(ci);
	ok(PQstatus(c) == CONNECTION_BAD && strstr(PQerrorMessage(c), "SSL required"),
	   "sslmode=disable under client_tls_sslmode = require: refused (%s)", PQerrorMessage(c));
	PQfinish(c);
	struct wire_login lg;
	int fd = wire_connect(m->port);
	memset(&lg, 0, sizeof(lg));
	wire_login(fd, 0, "app", "app", NULL, &lg);
	close(fd);
	is_str(lg.sqlstate, "28000", "plain startup under require: SQLSTATE 28000");
	ok(h_moat_log_has(m, "SSL required"), "the refusal is logged");

	/* CVE-2021-23214: a startup packet sent in clear text right behind
	 * SSLRequest must not log anyone in. */
	h_moat_log_mark(m);
	fd = wire_connect(m->port);
	uint8_t pkt[256];
	size_t n = 0;
	const uint32_t ssl_req[2] = {htonl(8), htonl(80877103)};
	memcpy(pkt, ssl_req, 8);
	n = 8;
	const char params[] = "user\0app\0database\0app\0\0";
	uint32_t len = htonl((uint32_t)(8 + sizeof(params) - 1)), ver = htonl(196608);
	memcpy(pkt + n, &len, 4);
	memcpy(pkt + n + 4, &ver, 4);
	memcpy(pkt + n + 8, params, sizeof(params) - 1);
	n += 8 + sizeof(params) - 1;
	ok(wire_send(fd, pkt, n), "SSLRequest and a clear-text startup packet sent in one write");
	int first = wire_read_byte(fd, 10);
	ok(first != 'S', "pgmoat does not answer 'S' to it (got %d)", first);
	char states[64] = "";
	bool eof = wire_wait_eof(fd, 10, states, sizeof(states));
	ok(eof && first == 'E', "the connection gets an error and is closed (first byte %d)",
	   first);
	close(fd);
	ok(h_moat_log_wait(m, "unencrypted data after SSL request", 10),
	   "the log says why: unencrypted data after SSL request");
	ok(!h_moat_log_has(m, "login"), "nobody logged in");

	/* Large results and COPY both ways over TLS (records bigger than the
	 * relay buffer, partial writes). */
	extra = h_strdupf("sslmode=verify-full sslrootcert=%s", k->ca_crt);
	ci = conninfo_tls(m, "localhost", "app", NULL, extra);
	c = h_connect(ci);
	free(ci);
	free(extra);
	char *v = h_value(c,
	                  "select length(string_agg(md5(g::text), '')) from "
	                  "generate_series(1, 200000) g");
	is_str(v, "6400000", "a 6.4 MB aggregate over TLS");
	free(v);
	PGresult *res =
	        PQexec(c, "select repeat(md5(g::text), 100) from generate_series(1, 3000) g");
	ok(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 3000 &&
	           strlen(PQgetvalue(res, 2999, 0)) == 3200,
	   "9.6 MB of rows over TLS arrive whole");
	PQclear(res);
	ok(h_exec(c, "create temp table big(t text)"), "temp table for COPY");
	res = PQexec(c, "copy big from stdin");
	bool copy_ok = PQresultStatus(res) == PGRES_COPY_IN;
	PQclear(res);
	char line[3300];
	memset(line, 'x', 3200);
	line[3200] = '\n';
	for (int i = 0; copy_ok && i < 2000; i++)
		copy_ok = PQputCopyData(c, line, 3201) == 1;
	copy_ok = copy_ok && PQputCopyEnd(c, NULL) == 1;
	res = PQgetResult(c);
	copy_ok = copy_ok && PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	v = h_value(c, "select count(*) || ' ' || sum(length(t)) from big");
	ok(copy_ok && v && strcmp(v, "2000 6400000") == 0,
	   "COPY FROM STDIN of 6.4 MB over TLS (%s)", v ? v : "?");
	free(v);
	PQfinish(c);
	h_moat_stop(m);
}

/* Certificates replaced on SIGHUP: connections stay, new ones see the new
 * certificate; a bad file keeps the old ones. */
static void test_reload(struct h_pg *pg)
{
	const struct h_certs *k = h_certs();
	char *crt = h_strdupf("%s/live.crt", h_tmpdir());
	char *key = h_strdupf("%s/live.key", h_tmpdir());
	char *text = h_read_file(k->server_crt, NULL);
	h_write_file(crt, text);
	free(text);
	text = h_read_file(k->server_key, NULL);
	h_write_file(key, text);
	free(text);
	char *settings = h_strdupf("client_tls_sslmode = require\n"
	                           "client_tls_cert_file = %s\nclient_tls_key_file = %s\n",
	                           crt, key);
	struct h_moat *m = start_moat(pg, settings);
	free(settings);
	char *ca = h_strdupf("sslmode=verify-full sslrootcert=%s", k->ca_crt);
	char *other = h_strdupf("sslmode=verify-full sslrootcert=%s", k->other_ca_crt);
	char *ci = conninfo_tls(m, "localhost", "app", NULL, ca);
	PGconn *held = h_connect(ci);
	free(ci);
	ok(h_exec(held, "select 1"), "a TLS connection before the reload");

	char *crt2, *key2;
	h_cert_server("server_other", true, &crt2, &key2);
	text = h_read_file(crt2, NULL);
	h_write_file(crt, text);
	free(text);
	text = h_read_file(key2, NULL);
	h_write_file(key, text);
	free(text);
	h_moat_log_mark(m);
	h_moat_signal(m, SIGHUP);
	ok(h_moat_log_wait(m, "configuration reloaded", 10), "SIGHUP with a new certificate");
	ok(h_exec(held, "select 2"), "the connection made before the reload still works");
	expect_fail(m, "localhost", "app", NULL, ca, "certificate verify failed",
	            "after the reload new connections get the new certificate (old CA fails)");
	expect_ok(m, "app", NULL, other, "and the new CA verifies it");

	/* A broken key file: the reload fails and the certificate in use stays. */
	h_write_file(key, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
	h_moat_log_mark(m);
	h_moat_signal(m, SIGHUP);
	ok(h_moat_log_wait(m, "reload failed", 10), "SIGHUP with a broken key file: reload failed");
	ok(h_moat_log_has(m, "client_tls_key_file"), "the log names the setting and the file");
	expect_ok(m, "app", NULL, other, "the certificate in use stays");
	ok(h_exec(held, "select 3"), "the old connection still works");
	PQfinish(held);
	free(ca);
	free(other);
	free(crt);
	free(key);
	free(crt2);
	free(key2);
	h_moat_stop(m);
}

/* verify-ca: a client certificate signed by the CA is required. */
static void test_client_certs(struct h_pg *pg)
{
	const struct h_certs *k = h_certs();
	char *settings = h_strdupf("client_tls_sslmode = verify-ca\n"
	                           "client_tls_cert_file = %s\nclient_tls_key_file = %s\n"
	                           "client_tls_ca_file = %s\n",
	                           k->server_crt, k->server_key, k->ca_crt);
	struct h_moat *m = start_moat(pg, settings);
	free(settings);
	char *crt, *key, *bad_crt, *bad_key;
	h_cert_client("app", false, &crt, &key);
	h_cert_client("app", true, &bad_crt, &bad_key);
	char *extra = h_strdupf("sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s",
	                        k->ca_crt, crt, key);
	expect_ok(m, "app", NULL, extra, "verify-ca: a client certificate from the CA logs in");
	free(extra);
	extra = h_strdupf("sslmode=verify-full sslrootcert=%s sslcert=/nonexistent "
	                  "sslkey=/nonexistent",
	                  k->ca_crt);
	h_moat_log_mark(m);
	expect_fail(m, "localhost", "app", NULL, extra, "",
	            "verify-ca: no client certificate, no connection");
	ok(h_moat_log_wait(m, "TLS handshake failed", 10), "the failed handshake is logged");
	free(extra);
	extra = h_strdupf("sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s", k->ca_crt,
	                  bad_crt, bad_key);
	expect_fail(m, "localhost", "app", NULL, extra, "",
	            "verify-ca: a client certificate from another CA is refused");
	free(extra);
	free(crt);
	free(key);
	free(bad_crt);
	free(bad_key);
	h_moat_stop(m);
}

/* hostssl rules, SCRAM-SHA-256-PLUS (libpq channel_binding=require) and
 * cert authentication through auth_hba_file. */
static void test_auth_methods(struct h_pg *pg)
{
	const struct h_certs *k = h_certs();
	h_pg_sql(pg, "create role certuser login");
	char *hba = h_strdupf("%s/tls_hba.conf", h_tmpdir());
	h_write_file(hba,
	             "# TLS only\n"
	             "hostssl all certuser 127.0.0.1/32 cert\n"
	             "hostssl all all      127.0.0.1/32 scram-sha-256\n");
	char *settings = h_strdupf("client_tls_sslmode = prefer\n"
	                           "client_tls_cert_file = %s\nclient_tls_key_file = %s\n"
	                           "client_tls_ca_file = %s\nauth_hba_file = %s\n",
	                           k->server_crt, k->server_key, k->ca_crt, hba);
	struct h_moat *m = start_moat(pg, settings);
	free(settings);

	char *ci = conninfo_tls(m, "localhost", "app", "app", "sslmode=disable");
	PGconn *c = PQconnectdb(ci);
	free(ci);
	ok(PQstatus(c) == CONNECTION_BAD &&
	           strstr(PQerrorMessage(c),
	                  "no pg_hba.conf entry for host \"127.0.0.1\", user "
	                  "\"app\", database \"app\", no encryption"),
	   "sslmode=disable under hostssl-only rules: refused (%s)", PQerrorMessage(c));
	PQfinish(c);
	int fd = wire_connect(m->port);
	struct wire_login lg;
	memset(&lg, 0, sizeof(lg));
	wire_login(fd, 0, "app", "app", "app", &lg);
	close(fd);
	is_str(lg.sqlstate, "28000", "plain connection under hostssl-only rules: SQLSTATE 28000");

	char *extra =
	        h_strdupf("sslmode=verify-full sslrootcert=%s channel_binding=require", k->ca_crt);
	expect_ok(m, "app", "app", extra,
	          "SCRAM with channel_binding=require: SCRAM-SHA-256-PLUS logs in");
	expect_fail(m, "localhost", "app", "wrong", extra, "password authentication failed",
	            "channel_binding=require with a wrong password: 28P01");
	free(extra);
	extra = h_strdupf("sslmode=verify-full sslrootcert=%s channel_binding=disable", k->ca_crt);
	expect_ok(m, "app", "app", extra, "SCRAM without channel binding still logs in over TLS");
	free(extra);

	char *crt, *key, *app_crt, *app_key;
	h_cert_client("certuser", false, &crt, &key);
	h_cert_client("app", false, &app_crt, &app_key);
	extra = h_strdupf("sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s", k->ca_crt, crt,
	                  key);
	ci = conninfo_tls(m, "localhost", "certuser", NULL, extra);
	c = h_connect(ci);
	free(ci);
	char *who = h_connected(c) ? h_value(c, "select current_user") : NULL;
	is_str(who, "certuser", "cert auth: the certificate's common name logs in as that user");
	free(who);
	PQfinish(c);
	free(extra);
	extra = h_strdupf("sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s", k->ca_crt,
	                  app_crt, app_key);
	h_moat_log_mark(m);
	expect_fail(m, "localhost", "certuser", NULL, extra, "certificate authentication failed",
	            "cert auth with another user's certificate: refused");
	ok(h_moat_log_has(m, "common name is another user's"), "the log says why");
	free(extra);
	extra = h_strdupf("sslmode=verify-full sslrootcert=%s sslcert=/nonexistent "
	                  "sslkey=/nonexistent",
	                  k->ca_crt);
	expect_fail(m, "localhost", "certuser", NULL, extra, "certificate authentication failed",
	            "cert auth without a client certificate: refused");
	free(extra);
	free(crt);
	free(key);
	free(app_crt);
	free(app_key);
	free(hba);
	h_moat_stop(m);
}

/* A pgmoat whose database is reached by name, as the certificate has it. */
static struct h_moat *server_tls_moat(struct h_pg *pg, const char *settings)
{
	struct h_moat *m = h_moat_new(pg);
	char *tmpl = h_strdupf("[databases]\napp = host=localhost port=@PGPORT@ dbname=app\n"
	                       "[pgmoat]\nlisten_addr = 127.0.0.1\nlisten_port = @PORT@\n"
	                       "unix_socket_dir = @SOCKDIR@\nauth_file = @AUTHFILE@\n"
	                       "auth_type = trust\nworkers = 2\n%s",
	                       settings);
	if (!h_moat_write_userlist(m, "\"app\" \"app\"\n") || !h_moat_write_ini(m, tmpl) ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start with: %s", settings);
	free(tmpl);
	return m;
}

/* pgmoat's own TLS to PostgreSQL. */
static void test_server_tls(void)
{
	const struct h_certs *k = h_certs();
	char *crt, *key;
	h_certs_for_pg(&crt, &key);
	char *conf = h_strdupf("ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n"
	                       "ssl_ca_file = '%s'\n",
	                       crt, key, k->ca_crt);
	struct h_pg_opts o = {.conf = conf,
	                      .auth = "scram-sha-256",
	                      .hba_lines = "hostssl all certapp 127.0.0.1/32 cert\n"};
	struct h_pg *pg = h_pg_start(&o);
	h_pg_create_app(pg, "app", "app", "app");
	h_pg_sql(pg, "create role certapp login");
	char *settings = h_strdupf(
	        "server_tls_sslmode = verify-full\nserver_tls_ca_file = %s\nverbose = 1\n",
	        k->ca_crt);
	struct h_moat *m = server_tls_moat(pg, settings);
	free(settings);
	PGconn *c = h_moat_connect(m, "app", "app", NULL);
	char *v = h_connected(c) ? h_value(c,
	                                   "select ssl::text || ' ' || version from pg_stat_ssl "
	                                   "where pid = pg_backend_pid()")
	                         : NULL;
	ok(v && strncmp(v, "true TLSv1.", 11) == 0,
	   "server_tls_sslmode = verify-full: pgmoat's backend uses TLS (%s)", v ? v : "?");
	free(v);
	PQfinish(c);
	ok(h_moat_log_has(m, "logging in with SCRAM-SHA-256-PLUS"),
	   "pgmoat logs in to PostgreSQL with SCRAM-SHA-256-PLUS (channel binding)");
	h_moat_stop(m);

	/* A client certificate for PostgreSQL's cert method. */
	char *ccrt, *ckey;
	h_cert_client("certapp", false, &ccrt, &ckey);
	settings = h_strdupf("server_tls_sslmode = verify-full\nserver_tls_ca_file = %s\n"
	                     "server_tls_cert_file = %s\nserver_tls_key_file = %s\n",
	                     k->ca_crt, ccrt, ckey);
	m = server_tls_moat(pg, settings);
	free(settings);
	c = h_moat_connect(m, "certapp", "app", NULL);
	v = h_connected(c) ? h_value(c,
	                             "select current_user || ' ' || client_dn from pg_stat_ssl "
	                             "where pid = pg_backend_pid()")
	                   : NULL;
	is_str(v, "certapp /CN=certapp",
	       "server_tls_cert_file: PostgreSQL's cert method logs pgmoat in with it");
	free(v);
	PQfinish(c);
	h_moat_stop(m);

	/* The wrong CA: pgmoat cannot log in, the client gets an error. */
	settings = h_strdupf("server_tls_sslmode = verify-full\nserver_tls_ca_file = %s\n",
	                     k->other_ca_crt);
	m = server_tls_moat(pg, settings);
	c = h_moat_connect(m, "app", "app", NULL);
	bool refused = !h_connected(c) || !h_exec(c, "select 1");
	ok(refused, "server TLS with the wrong CA: the client gets an error");
	PQfinish(c);
	ok(h_moat_log_wait(m, "certificate verify failed", 10),
	   "the log says the server's certificate did not verify");
	h_moat_stop(m);

	/* require against a server without TLS: refused, not downgraded. */
	struct h_pg *plain = h_pg_start(NULL);
	h_pg_create_app(plain, "app", "app", "app");
	m = server_tls_moat(plain, "server_tls_sslmode = require\n");
	c = h_moat_connect(m, "app", "app", NULL);
	refused = !h_connected(c) || !h_exec(c, "select 1");
	ok(refused, "server_tls_sslmode = require and a server without TLS: no connection");
	PQfinish(c);
	ok(h_moat_log_wait(m, "does not support TLS", 10), "the log says the server has no TLS");
	h_moat_stop(m);
	free(settings);
	free(ccrt);
	free(ckey);
	free(conf);
	free(crt);
	free(key);
}

int main(void)
{
	h_init("t_tls", 240);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	test_verify_full(pg);
	test_reload(pg);
	test_client_certs(pg);
	test_auth_methods(pg);
	test_server_tls();
	return h_done();
}
