/* Unit test of conf/config.c and conf/settings.c: the settings table, every value type, the
 * [databases], [users] and [peers] sections, warnings and errors with file:line, the
 * restart diff, and that doc/config.md, doc/pgmoat.ini.5 and etc/pgmoat.ini
 * match the table.
 *
 *   test_config --write-doc     prints doc/config.md (to regenerate it)
 *   test_config --write-man     prints doc/pgmoat.ini.5 (to regenerate it)
 */
#include <config.h>

#include "conf/config.h"
#include "tests/lib/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The source tree: $PGMOAT_SRCDIR (make check), else found from __FILE__. */
static const char *srcdir(void)
{
	static char dir[4096];
	const char *env = getenv("PGMOAT_SRCDIR");
	if (env && *env)
		return env;
	const char *suffix = "tests/unit/test_config.c";
	const char *file = __FILE__;
	size_t n = strlen(file), s = strlen(suffix);
	if (n > s && strcmp(file + n - s, suffix) == 0)
		snprintf(dir, sizeof(dir), "%.*s", (int)(n - s - 1), file);
	else
		snprintf(dir, sizeof(dir), ".");
	return dir;
}

/* A path under the source tree (a few slots, so several can be live). */
static const char *src_path(const char *rel)
{
	static char paths[4][4096];
	static int next;
	char *p = paths[next++ % 4];
	snprintf(p, 4096, "%.3000s/%s", srcdir(), rel);
	return p;
}

static const char *data(const char *name)
{
	char rel[256];
	snprintf(rel, sizeof(rel), "tests/unit/data/%s", name);
	return src_path(rel);
}

/* Show why a file that should have loaded did not. */
static bool loaded(struct config *c, const struct strlist *errors, const char *what)
{
	ok(c != NULL, "%s", what);
	for (size_t i = 0; c == NULL && i < errors->n; i++)
		diag("%s", errors->items[i]);
	return c != NULL;
}

/* Compare `got` with "path:" + each expected suffix (NULL-terminated). */
static void is_msgs(const struct strlist *got, const char *path, const char *const *want,
                    const char *what)
{
	size_t n = 0;
	while (want[n])
		n++;
	is_int((long)got->n, (long)n, "%s: count", what);
	for (size_t i = 0; i < n; i++) {
		char w[8192];
		snprintf(w, sizeof(w), "%s%s", path, want[i]);
		is_str(i < got->n ? got->items[i] : NULL, w, "%s: %zu", what, i);
	}
	for (size_t i = n; i < got->n; i++)
		diag("unexpected: %s", got->items[i]);
}

static const char *fmt(const struct config *c, const char *name)
{
	static char buf[1024];
	const struct setting *s = config_find_setting(name);
	if (!s)
		return "(no such setting)";
	config_format(c, s, buf, sizeof(buf));
	return buf;
}

static struct config *load(const char *name, struct strlist *errors, struct strlist *warnings)
{
	strlist_init(errors);
	strlist_init(warnings);
	return config_load(data(name), errors, warnings);
}

static int ncores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

static void test_table(void)
{
	size_t n;
	const struct setting *t = config_settings(&n);
	ok(n >= 37, "table has every setting (%zu)", n);
	ok(config_find_setting("listen_port") == config_find_setting("LISTEN_PORT"),
	   "names are case-insensitive");
	ok(config_find_setting("no_such_thing") == NULL, "unknown name: NULL");
	bool docs = true, unique = true;
	for (size_t i = 0; i < n; i++) {
		docs = docs && t[i].doc && t[i].doc[0] && t[i].def;
		unique = unique && config_find_setting(t[i].name) == &t[i];
	}
	ok(docs, "every setting has a default and a description");
	ok(unique, "names are unique");
	is_str(pool_mode_name(POOL_TRANSACTION), "transaction", "pool_mode_name");
	is_str(auth_type_name(AUTH_SCRAM), "scram-sha-256", "auth_type_name");
}

static void test_defaults(void)
{
	struct config *c = config_defaults();
	size_t n;
	const struct setting *t = config_settings(&n);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(t[i].name, "workers") == 0)
			continue;
		is_str(fmt(c, t[i].name), t[i].def, "default %s formats as written in the table",
		       t[i].name);
	}
	is_int(c->workers, ncores(), "workers 0 resolved to the number of cores");
	is_int((long)c->listen_addr.n, 1, "listen_addr: one address");
	is_str(c->listen_addr.items[0], "127.0.0.1", "listen_addr default");
	is_int(c->listen_port, 6432, "listen_port");
	is_str(c->unix_socket_dir, "/tmp", "unix_socket_dir");
	is_int(c->unix_socket_mode, 0777, "unix_socket_mode");
	is_int(c->pool_mode, POOL_SESSION, "pool_mode");
	is_int(c->default_pool_size, 20, "default_pool_size");
	is_int(c->auth_type, AUTH_MD5, "auth_type");
	is_str(c->auth_file, "", "auth_file");
	is_str(c->server_reset_query, "DISCARD ALL", "server_reset_query");
	ok(c->server_lifetime == 3600.0, "server_lifetime");
	ok(c->reserve_pool_timeout == 5.0, "reserve_pool_timeout");
	is_int(c->pkt_buf, 4096, "pkt_buf");
	is_int(c->max_packet_size, 2147483647, "max_packet_size");
	ok(c->tcp_keepalive && !c->syslog, "booleans");
	is_int((long)c->n_dbs, 0, "no databases");
	is_int(atomic_load(&c->refs), 1, "one reference");
	config_ref(c);
	is_int(atomic_load(&c->refs), 2, "config_ref");
	config_unref(c);
	is_int(atomic_load(&c->refs), 1, "config_unref");
	config_unref(c);
	config_unref(NULL);
}

static void test_minimal(void)
{
	struct strlist e, w;
	struct config *c = load("conf_minimal.ini", &e, &w);
	if (!loaded(c, &e, "minimal file loads"))
		return;
	is_int((long)w.n, 0, "no warnings");
	is_int(c->workers, ncores(), "workers = 0 resolved at load");
	is_str(c->path, data("conf_minimal.ini"), "path remembered");
	config_unref(c);
	strlist_free(&e);
	strlist_free(&w);
}

static void test_good_values(void)
{
	struct strlist e, w;
	struct config *c = load("conf_good.ini", &e, &w);
	if (!loaded(c, &e, "every type parses"))
		return;
	ok(w.n == 0, "no warning (%s)", w.n ? w.items[0] : "none");
	is_str(fmt(c, "listen_addr"), "*, ::1, 10.0.0.1, db.example.com", "list");
	is_int(c->listen_port, 7432, "int");
	is_str(c->unix_socket_dir, "", "empty quoted path");
	is_int(c->unix_socket_mode, 0700, "mode");
	is_str(fmt(c, "unix_socket_mode"), "0700", "mode formatted");
	is_int(c->workers, 3, "workers");
	is_int(c->pool_mode, POOL_TRANSACTION, "enum, case-insensitive");
	ok(c->reserve_pool_timeout == 1.5, "time: fractional seconds");
	is_str(fmt(c, "reserve_pool_timeout"), "1500ms", "fractional seconds formatted");
	is_int(c->auth_type, AUTH_SCRAM, "auth_type scram-sha-256");
	char *real = realpath(data("conf_userlist.txt"), NULL);
	is_str(c->auth_file, real, "relative path resolved against the file's directory");
	free(real);
	ok(c->auth_file[0] == '/' && access(c->auth_file, R_OK) == 0, "resolved path exists");
	is_str(fmt(c, "admin_users"), "admin, root", "admin_users");
	is_str(c->pidfile, "/run/pgmoat dir/pgmoat.pid", "quoted value with spaces");
	ok(c->syslog, "bool yes");
	is_str(c->syslog_facility, "local3", "facility: case-insensitive, stored in lower case");
	is_int(c->verbose, 2, "verbose");
	is_str(c->server_reset_query, "SET search_path = \"public\"", "escaped quotes");
	ok(c->server_reset_query_always, "bool on");
	ok(c->server_lifetime == 7200.0, "2h");
	ok(c->server_idle_timeout == 900.0, "15min");
	ok(c->server_connect_timeout == 0.5, "500ms");
	is_str(fmt(c, "server_connect_timeout"), "500ms", "500ms formatted");
	ok(c->server_login_retry == 2.0, "2s");
	ok(c->server_down_wait == 3.0, "server_down_wait 3s");
	ok(c->client_login_timeout == 0.0, "0");
	ok(c->query_wait_timeout == 90.0, "'90 s'");
	ok(c->shutdown_timeout == 0.25, "0.25");
	is_int(c->pkt_buf, 8192, "8kB");
	is_int(c->max_packet_size, 1048576, "1MB");
	is_str(fmt(c, "max_packet_size"), "1048576", "size formatted in bytes");
	is_int((long)c->ignore_startup_parameters.n, 2, "list of two");
	ok(!c->tcp_keepalive, "bool false");
	is_int(c->listen_backlog, 1024, "listen_backlog");
	ok(c->so_reuseport, "so_reuseport");
	is_int(c->peer_id, 7, "peer_id");
	is_int((long)c->n_peers, 2, "[Peers]: two entries, section name case-insensitive");

	/* conf_good.ini must give every setting a value other than its default. */
	struct config *d = config_defaults();
	size_t n;
	const struct setting *t = config_settings(&n);
	for (size_t i = 0; i < n; i++) {
		char a[1024], b[1024];
		config_format(c, &t[i], a, sizeof(a));
		config_format(d, &t[i], b, sizeof(b));
		ok(strcmp(a, b) != 0, "conf_good.ini sets %s", t[i].name);
	}
	char small[8];
	size_t need = config_format(c, config_find_setting("listen_addr"), small, sizeof(small));
	is_int((long)need, (long)strlen("*, ::1, 10.0.0.1, db.example.com"),
	       "format: needed length");
	is_str(small, "*, ::1,", "format: truncated and terminated");
	config_unref(d);
	config_unref(c);
	strlist_free(&e);
	strlist_free(&w);
}

static void test_bad_values(void)
{
	struct strlist e, w;
	struct config *c = load("conf_bad_values.ini", &e, &w);
	ok(c == NULL, "bad values: not loaded");
	const char *dur = "(seconds, or a number with unit ms, s, min or h)";
	const char *sz = "(bytes, or a number with unit kB, MB or GB)";
	char l9[256], l10[256], l11[256], l12[256], l13[256], l14[256], l19[256], l20[256];
	snprintf(l9, sizeof(l9),
	         ":9: server_lifetime: expected a duration between 0s and 168h %s, got '-1'", dur);
	snprintf(l10, sizeof(l10),
	         ":10: server_lifetime: expected a duration between 0s and 168h %s, got '10d'",
	         dur);
	snprintf(
	        l11, sizeof(l11),
	        ":11: server_connect_timeout: expected a duration between 1ms and 168h %s, got '0'",
	        dur);
	snprintf(l12, sizeof(l12),
	         ":12: pkt_buf: expected a size between 1kB and 16MB %s, got '512'", sz);
	snprintf(l13, sizeof(l13),
	         ":13: pkt_buf: expected a size between 1kB and 16MB %s, got '32MB'", sz);
	snprintf(l14, sizeof(l14),
	         ":14: max_packet_size: expected a size between 8kB and 2147483647 %s, got '4kB'",
	         sz);
	snprintf(
	        l19, sizeof(l19),
	        ":19: query_wait_timeout: expected a duration between 0s and 168h %s, got '2 days'",
	        dur);
	snprintf(l20, sizeof(l20),
	         ":20: max_packet_size: expected a size between 8kB and 2147483647 %s, got '3GB'",
	         sz);
	const char *want[] = {
	        ":3: listen_port: expected an integer between 1 and 65535, got 'abc'",
	        ":4: listen_port: expected an integer between 1 and 65535, got '0'",
	        ":5: workers: expected an integer between 0 and 256, got '257'",
	        ":6: syslog: expected a boolean (1/0, yes/no, on/off, true/false), got 'maybe'",
	        ":7: pool_mode: expected session, transaction or statement, got 'sometimes'",
	        ":8: auth_type: expected trust, md5, scram-sha-256, plain, cert or hba, got 'ldap'",
	        l9,
	        l10,
	        l11,
	        l12,
	        l13,
	        l14,
	        ":15: unix_socket_mode: expected an octal file mode such as 0700, got '0999'",
	        ":16: listen_addr: expected IP addresses, host names or '*', got 'not an address!'",
	        ":17: syslog_facility: expected auth, authpriv, daemon, user, local0, local1, "
	        "local2, "
	        "local3, local4, local5, local6 or local7, got 'local9'",
	        ":18: verbose: expected an integer between 0 and 2, got '3'",
	        l19,
	        l20,
	        ":21: default_pool_size: expected an integer between 1 and 100000, got '1.5'",
	        ":22: peer_id: expected an integer between 0 and 16383, got '16384'",
	        NULL};
	is_msgs(&e, data("conf_bad_values.ini"), want, "bad values");
	strlist_free(&e);
	strlist_free(&w);
}

static void test_cross_checks(void)
{
	struct strlist e, w;
	struct config *c = load("conf_cross.ini", &e, &w);
	ok(c == NULL, "cross-setting errors: not loaded");
	const char *want[] = {
	        ":4: min_pool_size (11) must not exceed default_pool_size (10)",
	        ":2: auth_type md5 needs an auth_file (without one nobody can log in)",
	        ":5: listen_addr and unix_socket_dir are both empty: nothing to listen on",
	        ":8: database 'small': min_pool_size (3) must not exceed pool_size (2)", NULL};
	is_msgs(&e, data("conf_cross.ini"), want, "cross checks");
	strlist_free(&e);
	strlist_free(&w);

	c = load("conf_noauth.ini", &e, &w);
	ok(c == NULL, "default auth_type without auth_file: not loaded");
	const char *want2[] = {": auth_type md5 needs an auth_file (without one nobody can log in)",
	                       NULL};
	is_msgs(&e, data("conf_noauth.ini"), want2, "error without a line when nothing was set");
	strlist_free(&e);
	strlist_free(&w);

	strlist_init(&e);
	c = config_load("/nonexistent/pgmoat.ini", &e, NULL);
	ok(c == NULL, "missing file: NULL");
	const char *want3[] = {": cannot open: No such file or directory", NULL};
	is_msgs(&e, "/nonexistent/pgmoat.ini", want3, "missing file");
	strlist_free(&e);
}

static void test_pgbouncer_ini(void)
{
	struct strlist e, w;
	struct config *c = load("conf_pgbouncer.ini", &e, &w);
	if (!loaded(c, &e, "[pgbouncer] is read as [pgmoat]"))
		return;
	is_int(c->listen_port, 6433, "listen_port from [pgbouncer]");
	is_int(c->listen_backlog, 64, "upper-case key");
	is_int(c->auth_type, AUTH_TRUST, "auth_type");
	const char *want[] = {
	        ":9: 'client_tls_dheparams' is not supported by pgmoat, ignored",
	        ":10: 'tcp_defer_accept' is not supported by pgmoat, ignored",
	        ":11: unknown setting 'listen_prot' (did you mean 'listen_port'?)",
	        ":12: unknown setting 'max_clien_conn' (did you mean 'max_client_conn'?)",
	        ":13: unknown setting 'completely_unrelated'",
	        NULL};
	is_msgs(&w, data("conf_pgbouncer.ini"), want, "warnings");
	is_int((long)e.n, 0, "no errors");
	ok(config_find_db(c, "app") != NULL, "app found");
	ok(config_find_db(c, "other") == NULL, "no '*': unknown name not found");
	config_unref(c);
	strlist_free(&e);
	strlist_free(&w);
}

static void test_databases(void)
{
	struct strlist e, w;
	struct config *c = load("conf_databases.ini", &e, &w);
	if (!loaded(c, &e, "databases load"))
		return;
	is_int((long)c->n_dbs, 7, "seven entries (dup once)");
	const struct db_entry *app = config_find_db(c, "app");
	ok(app && strcmp(app->name, "app") == 0, "app");
	if (app) {
		is_str(app->host, "db1.example.com,db2.example.com", "host list");
		is_int(app->port, 5433, "port");
		ok(app->n_hosts == 2 && strcmp(app->hosts[1].host, "db2.example.com") == 0 &&
		           app->hosts[0].port == 5433 && app->hosts[1].port == 5433,
		   "two hosts, one port for both");
		is_int(app->tsa, TSA_READ_WRITE, "target_session_attrs defaults to read-write");
		is_str(app->dbname, "appdb", "dbname");
		is_str(app->user, "app", "user");
		is_str(app->password, "se cr'et", "single-quoted password with escape");
		is_int(app->pool_size, 30, "pool_size");
		is_int(app->pool_mode, POOL_TRANSACTION, "pool_mode");
		is_int(app->line, 2, "line");
		is_str(app->client_encoding, NULL, "unset string is NULL");
	}
	const struct db_entry *rep = config_find_db(c, "reports");
	ok(rep != NULL, "reports");
	if (rep) {
		is_str(rep->host, "10.0.0.5", "spaces around =");
		is_str(rep->dbname, "reporting db", "quoted value with a space");
		is_int(rep->port, 5432, "default port");
		is_int(rep->pool_size, -1, "pool_size unset");
		is_int(db_pool_size(c, rep), 25, "effective pool_size: global");
		is_int(db_min_pool_size(c, rep), 2, "min_pool_size");
		is_int(db_reserve_pool(c, rep), 3, "reserve_pool");
		is_int(db_max_connections(c, rep), 40, "max_db_connections");
		is_int(db_pool_mode(c, rep, NULL), POOL_STATEMENT, "global pool_mode");
	}
	const struct db_entry *my = config_find_db(c, "My DB");
	ok(my != NULL, "quoted name with a space");
	if (my) {
		is_str(my->datestyle, "ISO, MDY", "datestyle");
		is_str(my->client_encoding, "UTF8", "client_encoding");
		is_str(my->timezone, "UTC", "timezone");
		is_str(my->application_name, "moat", "application_name");
		is_str(my->host, NULL, "no host: unix socket");
	}
	const struct db_entry *star = config_find_db(c, "anything");
	ok(star && strcmp(star->name, "*") == 0, "fallback '*'");
	const struct db_entry *other = config_find_db(c, "APP");
	ok(other && strcmp(other->name, "*") == 0, "database names are case-sensitive");
	const struct db_entry *dup = config_find_db(c, "dup");
	ok(dup && dup->port == 2 && dup->host == NULL && dup->line == 7, "last definition wins");
	if (app) {
		is_int(db_pool_size(c, app), 30, "own pool_size");
		is_int(db_reserve_pool(c, app), 0, "global reserve_pool_size");
		is_int(db_max_connections(c, app), 0, "global max_db_connections");
	}

	is_int((long)c->n_users, 2, "two users");
	const struct user_entry *alice = config_find_user(c, "alice");
	ok(alice && alice->pool_mode == POOL_SESSION && alice->max_user_connections == 5, "alice");
	const struct user_entry *bob = config_find_user(c, "bob");
	ok(bob && bob->pool_mode == -1 && bob->max_user_connections == 0, "bob");
	ok(config_find_user(c, "carol") == NULL, "unknown user");
	is_int(db_pool_mode(c, app, alice), POOL_SESSION, "user pool_mode wins");
	is_int(db_pool_mode(c, app, bob), POOL_TRANSACTION, "then the database's");
	is_int(db_pool_mode(c, NULL, NULL), POOL_STATEMENT, "then the global one");
	const struct db_entry *ha = config_find_db(c, "ha");
	ok(ha && ha->n_hosts == 3 && strcmp(ha->hosts[2].host, "10.0.0.3") == 0 &&
	           ha->hosts[0].port == 5432 && ha->hosts[2].port == 5434 &&
	           ha->hosts[1].weight == 2 && ha->tsa == TSA_PREFER_STANDBY,
	   "three hosts, a port and a weight each, prefer-standby");
	const struct db_entry *ha2 = config_find_db(c, "ha2");
	ok(ha2 && ha2->n_hosts == 2 && ha2->hosts[1].port == 6000 && ha2->hosts[1].weight == 7,
	   "one port and one weight for all hosts");
	const struct db_entry *rep2 = config_find_db(c, "reports");
	ok(rep2 && rep2->n_hosts == 1 && strcmp(rep2->hosts[0].host, "10.0.0.5") == 0 &&
	           rep2->hosts[0].port == 5432,
	   "one host, the default port");
	ok(my && my->n_hosts == 1 && my->hosts[0].host == NULL, "no host: the unix socket");
	config_unref(c);
	strlist_free(&e);
	strlist_free(&w);
}

static void test_bad_databases(void)
{
	struct strlist e, w;
	struct config *c = load("conf_bad_databases.ini", &e, &w);
	ok(c == NULL, "bad databases: not loaded");
	const char *want[] = {
	        ":2: database 'a': unknown parameter 'prot' (did you mean 'port'?)",
	        ":3: database 'b': 'auth_user' is not supported by pgmoat",
	        ":4: database 'c': port: expected an integer between 1 and 65535, got 'abc'",
	        ":4: database 'c': pool_mode: expected session, transaction or statement, got "
	        "'fast'",
	        ":5: database 'd': host: unterminated quoted value",
	        ":6: database 'e': expected name=value after the 'host' parameter",
	        ":7: database name 'pgmoat' is reserved for the admin console",
	        ":8: database 'f': pool_size: expected an integer between 0 and 100000, got '-1'",
	        ":9: database name "
	        "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' "
	        "is longer than 63 bytes",
	        ":10: database 'g': port: expected one value or one per host (3), got '1,2'",
	        ":11: database 'h': target_session_attrs: expected read-write, primary, "
	        "read-only, standby, prefer-standby or any, got 'sometimes'",
	        ":12: database 'i': host: empty host name in 'a,,b'",
	        ":13: database 'j': weight: expected an integer between 1 and 100, got '0'",
	        ":15: user 'u': 'pool_size' is not supported by pgmoat",
	        ":16: user 'v': max_user_connections: expected an integer between 0 and 1000000, "
	        "got "
	        "'many'",
	        ":19: unknown section [nosuch] (expected [pgmoat], [databases], [users] or "
	        "[peers])",
	        NULL};
	is_msgs(&e, data("conf_bad_databases.ini"), want, "database errors");
	strlist_free(&e);
	strlist_free(&w);
}

static void test_peers(void)
{
	struct strlist e, w;
	struct config *c = load("conf_peers.ini", &e, &w);
	if (!loaded(c, &e, "[peers] loads"))
		return;
	is_int((long)w.n, 0, "no warnings (%s)", w.n ? w.items[0] : "none");
	is_int(c->peer_id, 2, "peer_id");
	is_int((long)c->n_peers, 4, "four peers (3 defined twice)");
	const struct peer_entry *p1 = config_find_peer(c, 1);
	ok(p1 && strcmp(p1->host, "/run/pgmoat/a") == 0 && p1->port == 6432 && p1->line == 5,
	   "peer 1: a unix socket directory and a port");
	const struct peer_entry *p2 = config_find_peer(c, 2);
	ok(p2 && strcmp(p2->host, "/run/pgmoat/b") == 0 && p2->port == 6432,
	   "peer 2, our own id: allowed, port 6432 by default");
	const struct peer_entry *p3 = config_find_peer(c, 3);
	ok(p3 && strcmp(p3->host, "10.0.0.33") == 0 && p3->port == 7000 && p3->line == 8,
	   "peer 3 defined again: the last definition wins");
	const struct peer_entry *p4 = config_find_peer(c, 16383);
	ok(p4 && strcmp(p4->host, "h 4") == 0 && p4->pool_size == 5,
	   "peer 16383: quoted host, pgbouncer's pool_size accepted");
	ok(config_find_peer(c, 4) == NULL && config_find_peer(c, 0) == NULL, "unknown ids: NULL");
	config_unref(c);
	strlist_free(&e);
	strlist_free(&w);

	c = load("conf_bad_peers.ini", &e, &w);
	ok(c == NULL, "bad peers: not loaded");
	const char *want[] = {
	        ":5: peer id '0': expected an integer between 1 and 16383",
	        ":6: peer id '16384': expected an integer between 1 and 16383",
	        ":7: peer id 'x1': expected an integer between 1 and 16383",
	        ":8: peer 2: host is required (a host name, an IP address or a unix socket "
	        "directory)",
	        ":9: peer 3: port: expected an integer between 1 and 65535, got '0'",
	        ":10: peer 4: unknown parameter 'dbname'",
	        ":11: peer 5: unknown parameter 'prot' (did you mean 'port'?)",
	        ":12: peer 6: host: unterminated quoted value",
	        ":13: peer 7: host is required (a host name, an IP address or a unix socket "
	        "directory)",
	        ":14: peer 8: pool_size: expected an integer between 0 and 100000, got '-1'",
	        NULL};
	is_msgs(&e, data("conf_bad_peers.ini"), want, "peer errors");
	strlist_free(&e);
	strlist_free(&w);

	c = load("conf_peers_noid.ini", &e, &w);
	if (!loaded(c, &e, "[peers] without peer_id loads"))
		return;
	const char *warn[] = {
	        ":4: [peers] is ignored while peer_id is 0 (cancel requests are not forwarded)",
	        NULL};
	is_msgs(&w, data("conf_peers_noid.ini"), warn, "[peers] without peer_id: a warning");
	config_unref(c);
	strlist_free(&e);
	strlist_free(&w);
}

static void collect(const struct setting *s, void *arg)
{
	strlist_add(arg, s->name);
}

static void test_restart_keys(void)
{
	struct strlist e, w, e2, w2, keys;
	struct config *a = load("conf_restart_a.ini", &e, &w);
	struct config *b = load("conf_restart_b.ini", &e2, &w2);
	ok(a && b, "both load");
	if (!a || !b)
		return;
	strlist_init(&keys);
	config_changed_restart_keys(a, b, collect, &keys);
	is_int((long)keys.n, 3, "three restart settings changed");
	const char *want[] = {"listen_port", "unix_socket_dir", "pidfile"};
	for (size_t i = 0; i < 3; i++)
		is_str(i < keys.n ? keys.items[i] : NULL, want[i], "needs a restart: %s", want[i]);
	strlist_free(&keys);
	config_changed_restart_keys(a, a, collect, &keys);
	is_int((long)keys.n, 0, "same config: nothing");
	strlist_free(&keys);
	config_unref(a);
	config_unref(b);
	strlist_free(&e);
	strlist_free(&w);
	strlist_free(&e2);
	strlist_free(&w2);
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0, r;
	char *buf = malloc(cap);
	while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (n + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_doc_in_sync(void)
{
	char *doc = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&doc, &len);
	config_write_doc(f);
	fclose(f);
	char *file = read_all(src_path("doc/config.md"));
	ok(file != NULL, "doc/config.md readable");
	bool same = file && strcmp(file, doc) == 0;
	ok(same, "doc/config.md is what config_write_doc() writes");
	if (!same)
		diag("regenerate: tests/unit/test_config --write-doc > doc/config.md");
	size_t n;
	const struct setting *t = config_settings(&n);
	bool all = true;
	for (size_t i = 0; i < n; i++) {
		char needle[128];
		snprintf(needle, sizeof(needle), "| `%s` |", t[i].name);
		if (!strstr(doc, needle)) {
			all = false;
			diag("%s missing from the doc", t[i].name);
		}
	}
	ok(all, "every setting is documented");
	free(file);
	free(doc);
}

/* The text between `from` and the next `to` (or the end), in a new string;
 * NULL if `from` is missing. */
static char *section_of(const char *text, const char *from, const char *to)
{
	const char *a = strstr(text, from);
	if (!a)
		return NULL;
	a += strlen(from);
	const char *b = strstr(a, to);
	size_t n = b ? (size_t)(b - a) : strlen(a);
	char *s = malloc(n + 1);
	memcpy(s, a, n);
	s[n] = '\0';
	return s;
}

/* Every parameter of the table in doc/config.md's section `md_section` (rows
 * "| `name` | ...", from the same table) is an item (".B name") of the man
 * page's section `man_section`. */
static void check_man_params(const char *doc, const char *man, const char *what,
                             const char *md_section, const char *man_section)
{
	char *rows = section_of(doc, md_section, "\n## ");
	char *items = section_of(man, man_section, "\n.SH ");
	ok(rows && items, "%s: a section in doc/config.md and in the man page", what);
	if (!rows || !items) {
		free(rows);
		free(items);
		return;
	}
	int count = 0;
	bool all = true;
	for (const char *p = strstr(rows, "\n| `"); p; p = strstr(p + 1, "\n| `")) {
		const char *name = p + 4, *end = strchr(name, '`');
		if (!end)
			break;
		char needle[128];
		snprintf(needle, sizeof(needle), "\n.TP\n.B %.*s\n", (int)(end - name), name);
		count++;
		if (!strstr(items, needle)) {
			all = false;
			diag("%.*s missing from the man page's %s", (int)(end - name), name, what);
		}
	}
	ok(all && count > 0, "%s: the man page lists every parameter (%d)", what, count);
	free(rows);
	free(items);
}

static void test_man_in_sync(void)
{
	char *man = NULL, *doc = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&man, &len);
	config_write_man(f);
	fclose(f);
	f = open_memstream(&doc, &len);
	config_write_doc(f);
	fclose(f);
	char *file = read_all(src_path("doc/pgmoat.ini.5"));
	ok(file != NULL, "doc/pgmoat.ini.5 readable");
	bool same = file && strcmp(file, man) == 0;
	ok(same, "doc/pgmoat.ini.5 is what config_write_man() writes");
	if (!same)
		diag("regenerate: tests/unit/test_config --write-man > doc/pgmoat.ini.5");

	/* Every setting of the table is an item of the [pgmoat] section. */
	char *items = section_of(man, "\n.SH \"[pgmoat] SETTINGS\"\n", "\n.SH ");
	ok(items != NULL, "the man page has a [pgmoat] SETTINGS section");
	size_t n;
	const struct setting *t = config_settings(&n);
	bool all = items != NULL;
	for (size_t i = 0; items && i < n; i++) {
		char needle[128];
		snprintf(needle, sizeof(needle), "\n.TP\n.B %s\n", t[i].name);
		if (!strstr(items, needle)) {
			all = false;
			diag("%s missing from the man page", t[i].name);
		}
	}
	ok(all, "the generated pgmoat.ini(5) lists every setting in the table (%zu)", n);
	free(items);
	check_man_params(doc, man, "[databases]", "\n## [databases]\n",
	                 "\n.SH \"[databases] PARAMETERS\"\n");
	check_man_params(doc, man, "[users]", "\n## [users]\n", "\n.SH \"[users] PARAMETERS\"\n");
	check_man_params(doc, man, "[peers]", "\n## [peers]\n", "\n.SH \"[peers] PARAMETERS\"\n");
	const char *parts[] = {".SH NAME\n",   ".SH SYNOPSIS\n", ".SH DESCRIPTION\n",
	                       ".SH SYNTAX\n", ".SH FILES\n",    ".SH SEE ALSO\n"};
	bool complete = true;
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (!strstr(man, parts[i])) {
			complete = false;
			diag("no %s", parts[i]);
		}
	}
	ok(complete, "the man page has NAME, SYNOPSIS, DESCRIPTION, SYNTAX, FILES and SEE ALSO");
	free(file);
	free(man);
	free(doc);
}

static void test_example_ini(void)
{
	const char *path = src_path("etc/pgmoat.ini");
	char *text = read_all(path);
	ok(text != NULL, "etc/pgmoat.ini readable");
	if (!text)
		return;
	size_t n;
	const struct setting *t = config_settings(&n);
	for (size_t i = 0; i < n; i++) {
		/* "name = value" or ";name = value" at the start of a line */
		const char *found = NULL, *p = text;
		bool commented = false;
		size_t nl = strlen(t[i].name);
		for (; p && *p && !found; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
			bool semi = *p == ';';
			const char *q = p + semi;
			if (strncmp(q, t[i].name, nl) == 0 && strncmp(q + nl, " =", 2) == 0) {
				found = q + nl + 2;
				commented = semi;
			}
		}
		ok(found != NULL, "etc/pgmoat.ini has %s", t[i].name);
		if (found && commented) {
			const char *v = found + (*found == ' ');
			size_t vl = strcspn(v, "\n");
			ok(strlen(t[i].def) == vl && strncmp(v, t[i].def, vl) == 0,
			   "etc/pgmoat.ini shows the default of %s", t[i].name);
		}
	}
	free(text);
	struct strlist e, w;
	strlist_init(&e);
	strlist_init(&w);
	struct config *c = config_load(path, &e, &w);
	ok(c != NULL, "etc/pgmoat.ini loads");
	for (size_t i = 0; i < e.n; i++)
		diag("%s", e.items[i]);
	is_int((long)w.n, 0, "without warnings");
	ok(c && access(c->auth_file, R_OK) == 0, "its auth_file (etc/userlist.txt) exists");
	config_unref(c);
	strlist_free(&e);
	strlist_free(&w);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--write-doc") == 0) {
		config_write_doc(stdout);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--write-man") == 0) {
		config_write_man(stdout);
		return 0;
	}
	test_table();
	test_defaults();
	test_minimal();
	test_good_values();
	test_bad_values();
	test_cross_checks();
	test_pgbouncer_ini();
	test_databases();
	test_bad_databases();
	test_peers();
	test_restart_keys();
	test_doc_in_sync();
	test_man_in_sync();
	test_example_ini();
	return tap_done();
}
