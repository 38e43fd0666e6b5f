#include <config.h> /* autoconf; <> so that conf/config.h is not picked up */

/* The tables of the configuration file and everything that follows from
 * them: every [pgmoat] setting (one row each), the [databases] and [users]
 * parameters, the value parser of each type, defaults, formatting for SHOW
 * CONFIG and reload, and doc/config.md.  Reading a file into a config is
 * conf/config.c. */

#include "conf/settings.h"
#include "common/cidr.h"
#include "common/util.h"
#include "conf/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TIME_MS (7L * 24 * 3600 * 1000) /* a week */

/* --- enum names ------------------------------------------------------- */

#define X_NAME(id, name) name,
const char *const settings_pool_mode_names[] = {POOL_MODE_LIST(X_NAME) NULL};
static const char *const auth_type_names[] = {AUTH_TYPE_LIST(X_NAME) NULL};
static const char *const guard_mode_names[] = {GUARD_MODE_LIST(X_NAME) NULL};
static const char *const tls_mode_names[] = {TLS_MODE_LIST(X_NAME) NULL};
const char *const settings_tsa_names[] = {TSA_LIST(X_NAME) NULL};
static const char *const read_routing_names[] = {READ_ROUTING_LIST(X_NAME) NULL};
#undef X_NAME

const char *pool_mode_name(enum pool_mode m)
{
	return (unsigned)m < POOL_MODE_COUNT ? settings_pool_mode_names[m] : "unknown";
}

const char *auth_type_name(enum auth_type a)
{
	return (unsigned)a < AUTH_TYPE_COUNT ? auth_type_names[a] : "unknown";
}

const char *tsa_name(enum tsa t)
{
	return (unsigned)t < TSA_COUNT ? settings_tsa_names[t] : "unknown";
}

const char *tls_mode_name(enum tls_mode m)
{
	return (unsigned)m < TLS_MODE_COUNT ? tls_mode_names[m] : "unknown";
}

/* clang-format off */
static const char *const syslog_facilities[] = {
	"auth", "authpriv", "daemon", "user", "local0", "local1", "local2", "local3", "local4",
	"local5", "local6", "local7", NULL,
};
/* clang-format on */

/* "a, b or c" */
void settings_join_names(char *buf, size_t len, const char *const *names)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; names[i] && used < len; i++) {
		const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
		int n = snprintf(buf + used, len - used, "%s%s", sep, names[i]);
		used += n > 0 ? (size_t)n : 0;
	}
}

int settings_find_name(const char *const *names, const char *word)
{
	for (int i = 0; names[i]; i++)
		if (str_ieq(names[i], word))
			return i;
	return -1;
}

/* --- extra checks of single values ------------------------------------ */

static bool is_host_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.')
			return false;
	return true;
}

static bool check_listen_addr(void *field, char *msg, size_t len)
{
	const struct strlist *l = field;
	for (size_t i = 0; i < l->n; i++) {
		const char *a = l->items[i];
		unsigned char bin[16];
		if (strcmp(a, "*") == 0 || inet_pton(AF_INET, a, bin) == 1 ||
		    inet_pton(AF_INET6, a, bin) == 1 || is_host_name(a))
			continue;
		snprintf(msg, len, "expected IP addresses, host names or '*', got '%s'", a);
		return false;
	}
	return true;
}

/* Stored in lower case, as syslog(3)'s names are. */
static bool check_syslog_facility(void *field, char *msg, size_t len)
{
	char **v = field;
	int i = settings_find_name(syslog_facilities, *v);
	if (i >= 0) {
		free(*v);
		*v = xstrdup(syslog_facilities[i]);
		return true;
	}
	char names[256];
	settings_join_names(names, sizeof(names), syslog_facilities);
	snprintf(msg, len, "expected %s, got '%s'", names, *v);
	return false;
}

/* "secure", "all", "legacy" (pgbouncer's words) or a list of tlsv1.0 ..
 * tlsv1.3; stored as the list, lower case, oldest first. */
static bool check_tls_protocols(void *field, char *msg, size_t len)
{
	static const char *const versions[] = {"tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3", NULL};
	char **v = field;
	bool on[4] = {false};
	if (str_ieq(*v, "secure") || str_ieq(*v, "default")) {
		on[2] = on[3] = true;
	} else if (str_ieq(*v, "all") || str_ieq(*v, "legacy")) {
		on[0] = on[1] = on[2] = on[3] = true;
	} else {
		struct strlist l;
		strlist_init(&l);
		strlist_parse_csv(&l, *v);
		bool good = l.n > 0;
		for (size_t i = 0; good && i < l.n; i++) {
			int k = settings_find_name(versions, l.items[i]);
			if (k < 0)
				good = false;
			else
				on[k] = true;
		}
		strlist_free(&l);
		if (!good) {
			snprintf(msg, len,
			         "expected secure, all, or a list of tlsv1.0, tlsv1.1, tlsv1.2 and "
			         "tlsv1.3, got '%s'",
			         *v);
			return false;
		}
	}
	char out[64] = "";
	for (int i = 0; i < 4; i++) {
		if (!on[i])
			continue;
		if (out[0])
			strcat(out, ",");
		strcat(out, versions[i]);
	}
	free(*v);
	*v = xstrdup(out);
	return true;
}

/* metrics_listen: empty, or address:port where the address is IPv4, * or
 * localhost, or IPv6 in brackets (proxy/metrics.c binds it). */
static bool check_metrics_listen(void *field, char *msg, size_t len)
{
	const char *v = *(char **)field;
	if (!*v)
		return true;
	char host[64] = "";
	const char *port = NULL;
	unsigned char bin[16];
	bool good = false;
	const char *colon = strrchr(v, ':');
	if (v[0] == '[') {
		const char *end = strchr(v, ']');
		if (end && end[1] == ':' && (size_t)(end - v - 1) < sizeof(host)) {
			memcpy(host, v + 1, (size_t)(end - v - 1));
			host[end - v - 1] = '\0';
			port = end + 2;
			good = inet_pton(AF_INET6, host, bin) == 1;
		}
	} else if (colon && (size_t)(colon - v) < sizeof(host)) {
		memcpy(host, v, (size_t)(colon - v));
		host[colon - v] = '\0';
		port = colon + 1;
		good = !host[0] || strcmp(host, "*") == 0 || strcmp(host, "localhost") == 0 ||
		        inet_pton(AF_INET, host, bin) == 1;
	}
	if (good) {
		char *end;
		errno = 0;
		long p = strtol(port, &end, 10);
		good = *port >= '0' && *port <= '9' && !*end && !errno && p >= 1 && p <= 65535;
	}
	if (!good)
		snprintf(msg, len,
		         "expected address:port (IPv4, * or localhost; IPv6 as [addr]:port), got "
		         "'%s'",
		         v);
	return good;
}

static bool check_cidrs(void *field, char *msg, size_t len)
{
	const struct strlist *l = field;
	for (size_t i = 0; i < l->n; i++) {
		struct cidr c;
		char err[160];
		if (!cidr_parse(l->items[i], &c, err, sizeof(err))) {
			snprintf(msg, len, "%s", err);
			return false;
		}
	}
	return true;
}

/* --- the settings table ----------------------------------------------- */

/* The field's C type must match the setting type, or this does not compile. */
#define FIELD(n, ctype) (offsetof(struct config, n) + _Generic(((struct config *)0)->n, ctype : 0))
#define RELOAD true
#define RESTART false

/* clang-format off */
#define S_INT(n, dv, rl, lo, hi, text) {.name = #n, .type = SETTING_INT, \
	.offset = FIELD(n, int), .def = dv, .reloadable = rl, .min = lo, .max = hi, .doc = text}
#define S_SIZE(n, dv, rl, lo, hi, text) {.name = #n, .type = SETTING_SIZE, \
	.offset = FIELD(n, int), .def = dv, .reloadable = rl, .min = lo, .max = hi, .doc = text}
#define S_MODE(n, dv, rl, text) {.name = #n, .type = SETTING_MODE, \
	.offset = FIELD(n, int), .def = dv, .reloadable = rl, .min = 0, .max = 0777, .doc = text}
#define S_TIME(n, dv, lo_ms, text) {.name = #n, .type = SETTING_TIME, \
	.offset = FIELD(n, double), .def = dv, .reloadable = RELOAD, .min = lo_ms, \
	.max = MAX_TIME_MS, .doc = text}
#define S_BOOL(n, dv, rl, text) {.name = #n, .type = SETTING_BOOL, \
	.offset = FIELD(n, bool), .def = dv, .reloadable = rl, .doc = text}
#define S_STR(n, t, dv, rl, chk, text) {.name = #n, .type = t, \
	.offset = FIELD(n, char *), .def = dv, .reloadable = rl, .check = chk, .doc = text}
#define S_LIST(n, dv, rl, chk, text) {.name = #n, .type = SETTING_LIST, \
	.offset = FIELD(n, struct strlist), .def = dv, .reloadable = rl, .check = chk, .doc = text}
#define S_ENUM(n, dv, names, text) {.name = #n, .type = SETTING_ENUM, \
	.offset = FIELD(n, int), .def = dv, .reloadable = RELOAD, .enum_names = names, .doc = text}

static const struct setting settings[] = {
	S_LIST(listen_addr, "127.0.0.1", RESTART, check_listen_addr,
		"Addresses to accept TCP connections on (IPv4, IPv6 or host names); `*`: every "
		"address; empty: no TCP."),
	S_INT(listen_port, "6432", RESTART, 1, 65535,
		"TCP port to listen on; the unix socket is named `.s.PGSQL.<port>`."),
	S_STR(unix_socket_dir, SETTING_PATH, "/tmp", RESTART, NULL,
		"Directory of the unix socket; empty: no unix socket."),
	S_MODE(unix_socket_mode, "0777", RESTART, "File mode of the unix socket."),
	S_INT(workers, "0", RESTART, 0, MAX_WORKERS,
		"Worker threads, each with its own event loop and listening socket; 0: one per "
		"CPU core."),
	S_ENUM(pool_mode, "session", settings_pool_mode_names,
		"When a server connection returns to the pool: when the client disconnects "
		"(session), when a transaction ends (transaction), or after every statement, "
		"transactions refused (statement). See doc/pooling.md."),
	S_INT(default_pool_size, "20", RELOAD, 1, MAX_POOL,
		"Server connections per (database, user) pool, unless the database sets "
		"`pool_size`."),
	S_INT(min_pool_size, "0", RELOAD, 0, MAX_POOL,
		"Server connections each pool keeps open even when idle."),
	S_INT(reserve_pool_size, "0", RELOAD, 0, MAX_POOL,
		"Extra server connections a pool may open once a client has waited "
		"`reserve_pool_timeout`."),
	S_TIME(reserve_pool_timeout, "5", 0,
		"How long a client waits before the reserve pool is used."),
	S_INT(max_client_conn, "100", RELOAD, 1, MAX_CONNS,
		"Most client connections open at once; more are refused (53300). Each is a file "
		"descriptor: pgmoat raises its soft open-file limit to the hard one at start and "
		"warns below this + 256."),
	S_INT(max_db_connections, "0", RELOAD, 0, MAX_CONNS,
		"Most server connections per database, all pools together; 0: no limit."),
	S_INT(max_user_connections, "0", RELOAD, 0, MAX_CONNS,
		"Most server connections per user, all pools together; 0: no limit."),
	S_ENUM(auth_type, "md5", auth_type_names,
		"How clients prove who they are: trust (no password), md5, scram-sha-256, "
		"plain (cleartext password), cert (a client certificate whose common name is "
		"the user name), or hba (the method of the matching `auth_hba_file` rule). "
		"When `auth_hba_file` is set its rules decide, whatever this says."),
	S_STR(auth_file, SETTING_PATH, "", RELOAD, NULL,
		"Users and their passwords or secrets, in pgbouncer's userlist.txt format."),
	S_LIST(admin_users, "", RELOAD, NULL,
		"Users who may run every admin console command."),
	S_LIST(stats_users, "", RELOAD, NULL,
		"Users who may run the admin console's read-only commands (SHOW ...)."),
	S_STR(logfile, SETTING_PATH, "", RESTART, NULL,
		"File the log is appended to, reopened on SIGHUP; empty: none."),
	S_STR(pidfile, SETTING_PATH, "", RESTART, NULL,
		"File the process id is written to; empty: none."),
	S_BOOL(syslog, "0", RESTART, "Also send the log to syslog."),
	S_STR(syslog_ident, SETTING_STRING, "pgmoat", RESTART, NULL,
		"Program name in syslog messages."),
	S_STR(syslog_facility, SETTING_STRING, "daemon", RESTART, check_syslog_facility,
		"Syslog facility: auth, authpriv, daemon, user or local0 to local7."),
	S_INT(verbose, "0", RELOAD, 0, 2,
		"Extra log detail: 1 adds connection set-up details, 2 per-message ones (like -v, "
		"-vv)."),
	S_STR(server_reset_query, SETTING_STRING, "DISCARD ALL", RELOAD, NULL,
		"Query run on a server connection before it returns to the pool in session "
		"mode; empty: none."),
	S_BOOL(server_reset_query_always, "0", RELOAD,
		"Run `server_reset_query` in transaction and statement mode too."),
	S_TIME(server_lifetime, "3600", 0,
		"Close a server connection that has been open this long when it is next idle; "
		"0: never."),
	S_TIME(server_idle_timeout, "600", 0,
		"Close a server connection that has been idle this long; 0: never."),
	S_TIME(server_connect_timeout, "15", 1,
		"Give up connecting and logging in to a server after this long."),
	S_TIME(server_login_retry, "15", 0,
		"After a server connection failed, wait this long before trying that server "
		"again; meanwhile requests that need a new server fail at once (but see "
		"`server_down_wait`)."),
	S_TIME(server_down_wait, "10", 0,
		"While a database is down for a moment (connection refused, reset or timed out, "
		"starting up or shutting down: SQLSTATE class 08, 57P01-57P03, 53300), requests "
		"that need a new server wait up to this long for it, and pgmoat tries to connect "
		"every 0.25 s (or `server_login_retry`, if shorter); after it they fail with "
		"the last error. A restart then costs only the transactions that were running. "
		"Databases with several hosts leave it to the health checker and routing "
		"(doc/routing.md). 0: fail at once, as for other errors."),
	S_TIME(client_login_timeout, "60", 0,
		"Disconnect a client that has not logged in within this time; 0: never."),
	S_TIME(query_wait_timeout, "120", 0,
		"Disconnect a client that has waited this long for a server connection; "
		"0: never."),
	S_TIME(query_timeout, "0", 0,
		"Cancel a query that has run this long, and disconnect its client with 57014; "
		"0: never."),
	S_TIME(idle_transaction_timeout, "0", 0,
		"Disconnect a client that has been idle inside a transaction this long (its "
		"transaction is rolled back); 0: never."),
	S_TIME(client_idle_timeout, "0", 0,
		"Disconnect a client that has sent nothing for this long while outside a "
		"transaction; 0: never."),
	S_TIME(server_check_delay, "30", 0,
		"Run `server_check_query` on a server that has been idle this long before "
		"giving it to a client; 0: before every use."),
	S_STR(server_check_query, SETTING_STRING, "select 1", RELOAD, NULL,
		"Query that checks an idle server is alive before reuse; empty: no check."),
	S_INT(max_prepared_statements, "200", RELOAD, 0, 100000,
		"Protocol-level named prepared statements kept per server connection in "
		"transaction and statement mode (least recently used are closed); 0: named "
		"statements are passed through unchanged."),
	S_LIST(track_extra_parameters, "", RELOAD, NULL,
		"Startup parameters besides the built-in ones that clients may send and that "
		"are applied on every server the client gets."),
	S_ENUM(transaction_mode_guard, "error", guard_mode_names,
		"In transaction and statement mode, what happens to SQL whose session state "
		"cannot follow the client to another server (LISTEN, session advisory locks, "
		"WITH HOLD cursors, temporary tables, PREPARE): error refuses it, warn runs it "
		"and logs a warning, off runs it silently."),
	S_TIME(shutdown_timeout, "30", 0,
		"On SIGTERM, wait this long for clients to finish before closing them; 0: wait "
		"forever."),
	S_SIZE(pkt_buf, "4096", RESTART, 1024, 16 * 1024 * 1024,
		"Size of a relay buffer; a connection holds one only while it moves data."),
	S_SIZE(max_packet_size, "2147483647", RELOAD, 8192, INT_MAX,
		"Largest protocol message accepted; a bigger one closes the connection."),
	S_LIST(ignore_startup_parameters, "", RELOAD, NULL,
		"Startup parameters clients may send that pgmoat ignores instead of refusing "
		"the connection."),
	S_BOOL(tcp_keepalive, "1", RELOAD,
		"Turn on TCP keepalive, with the system's timings, on client and server "
		"sockets."),
	S_INT(listen_backlog, "128", RESTART, 1, 65535,
		"Length of the queue of not yet accepted connections of each listening "
		"socket."),
	S_BOOL(so_reuseport, "0", RESTART,
		"Let other processes listen on the same address and port (SO_REUSEPORT), for an "
		"upgrade without downtime (doc/operations.md). Off: a port already in use is an "
		"error at start-up. On, a second pgmoat started by mistake shares the port "
		"unnoticed and gets part of the connections."),
	S_INT(peer_id, "0", RESTART, 0, PEER_ID_MAX,
		"This process's id among the `[peers]`; its cancel keys carry it, and cancel "
		"requests for another peer's clients are forwarded to that peer. 0: no peers."),
	S_ENUM(client_tls_sslmode, "disable", tls_mode_names,
		"TLS for clients: disable (refused), allow or prefer (offered), require (plain "
		"connections refused), verify-ca (also a client certificate signed by "
		"`client_tls_ca_file`), verify-full (also its common name equal to the user "
		"name). See doc/security.md."),
	S_STR(client_tls_key_file, SETTING_PATH, "", RELOAD, NULL,
		"Private key of pgmoat's certificate for clients (PEM); reread on SIGHUP."),
	S_STR(client_tls_cert_file, SETTING_PATH, "", RELOAD, NULL,
		"pgmoat's certificate for clients (PEM, chain allowed); reread on SIGHUP."),
	S_STR(client_tls_ca_file, SETTING_PATH, "", RELOAD, NULL,
		"CA certificates that client certificates are checked against (PEM)."),
	S_STR(client_tls_protocols, SETTING_STRING, "tlsv1.2,tlsv1.3", RELOAD, check_tls_protocols,
		"TLS versions offered to clients: secure (TLS 1.2 and 1.3), all, or a list of "
		"tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3."),
	S_STR(client_tls_ciphers, SETTING_STRING, "default", RELOAD, NULL,
		"OpenSSL cipher list for TLS 1.2 and older; default: ECDHE and DHE with AES-GCM "
		"or ChaCha20-Poly1305 only (TLS 1.3 suites are always the AEAD ones)."),
	S_ENUM(server_tls_sslmode, "prefer", tls_mode_names,
		"TLS to PostgreSQL, as libpq's sslmode: disable, allow or prefer (TLS if the "
		"server offers it), require, verify-ca (certificate signed by "
		"`server_tls_ca_file`), verify-full (and issued for the database's host)."),
	S_STR(server_tls_key_file, SETTING_PATH, "", RELOAD, NULL,
		"Private key of the client certificate pgmoat shows PostgreSQL (PEM)."),
	S_STR(server_tls_cert_file, SETTING_PATH, "", RELOAD, NULL,
		"Client certificate pgmoat shows PostgreSQL (PEM); empty: none."),
	S_STR(server_tls_ca_file, SETTING_PATH, "", RELOAD, NULL,
		"CA certificates that PostgreSQL's certificate is checked against (PEM)."),
	S_STR(server_tls_protocols, SETTING_STRING, "tlsv1.2,tlsv1.3", RELOAD, check_tls_protocols,
		"TLS versions used towards PostgreSQL: as `client_tls_protocols`."),
	S_STR(server_tls_ciphers, SETTING_STRING, "default", RELOAD, NULL,
		"OpenSSL cipher list towards PostgreSQL for TLS 1.2: as `client_tls_ciphers`."),
	S_STR(auth_hba_file, SETTING_PATH, "", RELOAD, NULL,
		"Rules in pg_hba.conf format (local, host, hostssl, hostnossl; trust, reject, "
		"md5, scram-sha-256, password, cert): the first rule matching the connection "
		"type, database, user and address decides; no match refuses. Reread on SIGHUP; "
		"a broken file keeps the rules in use. See doc/security.md."),
	S_LIST(allow, "", RELOAD, check_cidrs,
		"Client networks allowed to connect (CIDRs such as 10.0.0.0/8, ::1); any other "
		"address is closed at accept, before a byte is read. Empty: any address."),
	S_LIST(proxy_protocol_trusted, "", RELOAD, check_cidrs,
		"Load balancers (CIDRs) that send a PROXY protocol v1 or v2 header; a "
		"connection from them must start with one and the address it carries is the "
		"client's. A header from any other address is refused."),
	S_INT(login_failure_limit, "10", RELOAD, 0, 1000000,
		"Failed logins from one address within `login_failure_window` after which "
		"that address is refused for `login_failure_cooldown`; 0: no throttling."),
	S_TIME(login_failure_window, "60", 1,
		"Time over which failed logins from one address are counted."),
	S_TIME(login_failure_cooldown, "60", 1,
		"How long an address that reached `login_failure_limit` is refused."),
	S_TIME(login_failure_delay, "1", 0,
		"How long a refused attempt from a throttled address is held before the "
		"error is sent."),
	S_TIME(health_check_period, "1", 100,
		"How often each host of a database with several hosts is probed (reachable, "
		"primary or replica, WAL position, replay lag). See doc/routing.md."),
	S_INT(health_check_failures, "2", RELOAD, 1, 100,
		"Failed probes in a row after which a host is taken as down; one success brings "
		"it back."),
	S_TIME(health_check_timeout, "2", 100,
		"A probe (connect and query) not answered within this time has failed."),
	S_STR(health_check_user, SETTING_STRING, "postgres", RELOAD, NULL,
		"User the probes log in as (its password, if one is needed, from `auth_file`); "
		"any role that may log in will do."),
	S_STR(health_check_dbname, SETTING_STRING, "postgres", RELOAD, NULL,
		"Database the probes connect to."),
	S_ENUM(read_routing, "off", read_routing_names,
		"auto: on a read-write database with replicas, a transaction that begins READ "
		"ONLY, or whose first statement is a plain SELECT calling none of "
		"`write_functions`, goes to a replica; off: all to the primary."),
	S_LIST(write_functions, "nextval, setval, currval, lastval, pg_advisory_lock, "
		"pg_advisory_xact_lock, pg_advisory_lock_shared, pg_advisory_xact_lock_shared, "
		"pg_try_advisory_lock, pg_try_advisory_xact_lock, pg_try_advisory_lock_shared, "
		"pg_try_advisory_xact_lock_shared, pg_advisory_unlock, pg_advisory_unlock_shared, "
		"pg_advisory_unlock_all, lo_*, set_config, txid_current, pg_current_xact_id, "
		"pg_notify, pg_switch_wal, pg_create_restore_point, pg_sleep", RELOAD, NULL,
		"Functions that make a SELECT go to the primary under `read_routing = auto` (a "
		"trailing * matches a prefix)."),
	S_TIME(max_replica_lag, "10", 0,
		"A replica whose replay is further behind than this gets no new reads; 0: no "
		"limit."),
	S_SIZE(max_replica_lag_bytes, "16777216", RELOAD, 0, INT_MAX,
		"A replica whose replay is more WAL bytes behind the primary than this gets no "
		"new reads; 0: no limit."),
	S_BOOL(read_your_writes, "1", RELOAD,
		"After a client's transaction wrote on the primary, its reads go only to replicas "
		"that have replayed that far (else to the primary)."),
	S_TIME(stats_period, "60", 1000,
		"Period over which SHOW STATS_AVERAGES and the metrics' averages are computed, "
		"and of the summary line `log_stats` writes."),
	S_BOOL(log_stats, "1", RELOAD,
		"Log a summary line per database every `stats_period`."),
	S_STR(metrics_listen, SETTING_STRING, "", RELOAD, check_metrics_listen,
		"Address:port (e.g. 127.0.0.1:9127) where Prometheus metrics are served on "
		"/metrics; empty: none. See doc/monitoring.md."),
	S_STR(auth_user, SETTING_STRING, "", RELOAD, NULL,
		"User that runs `auth_query` for users missing from `auth_file` (its password "
		"comes from `auth_file`); empty: no lookup."),
	S_STR(auth_query, SETTING_STRING,
		"SELECT usename, passwd FROM pgmoat.user_lookup($1)", RELOAD, NULL,
		"Query returning the name and password secret of user $1 (see doc/security.md "
		"for the SECURITY DEFINER function it calls); it runs with search_path pinned "
		"to pg_catalog."),
	S_STR(auth_dbname, SETTING_STRING, "", RELOAD, NULL,
		"Database `auth_query` runs in; empty: the one the client asked for."),
};

/* pgbouncer settings that pgmoat accepts in the file and ignores. */
const char *const settings_unsupported[] = {
	"application_name_add_host", "auth_ident_file",
	"autodb_idle_timeout", "cancel_wait_timeout",
	"client_tls_dheparams", "client_tls_ecdhcurve", "disable_pqexec",
	"dns_max_ttl", "dns_nxdomain_ttl", "dns_zone_check_period",
	"job_name", "log_connections", "log_disconnections", "log_pooler_errors",
	"resolv_conf", "sbuf_loopcnt",
	"server_fast_close", "server_round_robin",
	"suspend_timeout", "tcp_defer_accept", "tcp_keepcnt", "tcp_keepidle",
	"tcp_keepintvl", "tcp_socket_buffer", "tcp_user_timeout",
	"unix_socket_group", "user", NULL,
};
/* clang-format on */

#define N_SETTINGS ARRAY_SIZE(settings)

const struct setting *config_settings(size_t *n)
{
	*n = N_SETTINGS;
	return settings;
}

const struct setting *config_find_setting(const char *name)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (str_ieq(settings[i].name, name) ||
		    (settings[i].alias && str_ieq(settings[i].alias, name)))
			return &settings[i];
	return NULL;
}

/* --- suggestions for misspelt names ----------------------------------- */

/* Edit distance counting an adjacent swap as one edit; case-insensitive.
 * Only distances up to `max` are computed exactly (cells further than `max`
 * from the diagonal are never looked at): anything greater is max + 1. */
static size_t edit_distance(const char *a, const char *b, size_t max)
{
	enum { M = 64 };
	size_t la = strlen(a), lb = strlen(b);
	if (la >= M || lb >= M || max >= M)
		return SIZE_MAX;
	if ((la > lb ? la - lb : lb - la) > max)
		return max + 1;
	const unsigned short far = (unsigned short)(max + 1);
	unsigned short d[M + 1][M + 2];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (unsigned short)MIN(i, max + 1);
	for (size_t j = 0; j <= lb + 1; j++)
		d[0][j] = (unsigned short)MIN(j, max + 1);
	for (size_t i = 1; i <= la; i++) {
		size_t lo = i > max ? i - max : 1, hi = MIN(lb, i + max);
		if (lo > 1)
			d[i][lo - 1] = far;
		unsigned row_min = lo == 1 ? d[i][0] : far;
		for (size_t j = lo; j <= hi; j++) {
			int ca = tolower((unsigned char)a[i - 1]),
			    cb = tolower((unsigned char)b[j - 1]);
			unsigned v = d[i - 1][j - 1] + (ca != cb);
			v = MIN(v, d[i - 1][j] + 1u);
			v = MIN(v, d[i][j - 1] + 1u);
			if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == cb)
				v = MIN(v, d[i - 2][j - 2] + 1u);
			v = MIN(v, (unsigned)far);
			d[i][j] = (unsigned short)v;
			row_min = MIN(row_min, v);
		}
		d[i][hi + 1] = far;
		if (row_min > max)
			return max + 1; /* every path from here only grows */
	}
	return d[la][lb];
}

/* The name closest to `word` among `n` structs of `stride` bytes whose first
 * member is the name, if it is close enough to be a likely typo. */
const char *settings_closest_name(const char *word, const void *base, size_t n, size_t stride)
{
	size_t len = strlen(word);
	size_t limit = len <= 3 ? 1 : len <= 8 ? 2 : 3;
	const char *best = NULL;
	size_t best_d = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		const char *name = *(const char *const *)((const char *)base + i * stride);
		size_t dist = edit_distance(word, name, limit);
		if (dist < best_d) {
			best_d = dist;
			best = name;
		}
	}
	return best_d <= limit ? best : NULL;
}

void settings_unknown(const char *key, char *msg, size_t len)
{
	const char *hint = settings_closest_name(key, settings, N_SETTINGS, sizeof(settings[0]));
	if (settings_find_name(settings_unsupported, key) >= 0)
		snprintf(msg, len, "'%s' is not supported by pgmoat, ignored", key);
	else if (hint)
		snprintf(msg, len, "unknown setting '%s' (did you mean '%s'?)", key, hint);
	else
		snprintf(msg, len, "unknown setting '%s'", key);
}

/* --- parsing values --------------------------------------------------- */

bool settings_parse_long(const char *v, long *out)
{
	if (!isdigit((unsigned char)v[0]) && !(v[0] == '-' && isdigit((unsigned char)v[1])))
		return false;
	errno = 0;
	char *end;
	long x = strtol(v, &end, 10);
	if (errno || *end)
		return false;
	*out = x;
	return true;
}

/* digits [. digits]; returns the end or NULL. */
static const char *scan_decimal(const char *p, double *out)
{
	double v = 0, scale = 1;
	bool digits = false;
	for (; isdigit((unsigned char)*p); p++, digits = true)
		v = v * 10 + (*p - '0');
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++, digits = true)
			v += (*p - '0') * (scale /= 10);
	*out = v;
	return digits ? p : NULL;
}

static const char *skip_spaces(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Seconds, or a number with unit ms, s, min or h; result in milliseconds. */
static bool parse_time_ms(const char *v, long min, long max, long *ms)
{
	static const struct {
		const char *unit;
		double ms;
	} units[] = {{"", 1000}, {"s", 1000}, {"ms", 1}, {"min", 60000}, {"h", 3600000}};
	double x;
	const char *p = scan_decimal(v, &x);
	if (!p)
		return false;
	p = skip_spaces(p);
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(p, units[i].unit) == 0) {
			double r = x * units[i].ms + 0.5;
			if (r < (double)min || r >= (double)max + 1)
				return false;
			*ms = (long)r;
			return true;
		}
	}
	return false;
}

/* Bytes, or a whole number with unit B, kB, MB or GB (any case). */
static bool parse_size(const char *v, long min, long max, long *out)
{
	static const struct {
		const char *unit;
		unsigned long long mult;
	} units[] = {
	        {"", 1}, {"b", 1}, {"kb", 1024}, {"mb", 1024 * 1024}, {"gb", 1024 * 1024 * 1024}};
	if (!isdigit((unsigned char)*v))
		return false;
	errno = 0;
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno)
		return false;
	const char *p = skip_spaces(end);
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (str_ieq(p, units[i].unit)) {
			if (x > (unsigned long long)max / units[i].mult)
				return false;
			x *= units[i].mult;
			if (x < (unsigned long long)min)
				return false;
			*out = (long)x;
			return true;
		}
	}
	return false;
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"1", "yes", "on", "true", NULL};
	static const char *const no[] = {"0", "no", "off", "false", NULL};
	if (settings_find_name(yes, v) >= 0)
		*out = true;
	else if (settings_find_name(no, v) >= 0)
		*out = false;
	else
		return false;
	return true;
}

/* "ms" as the shortest of Nh, Nmin, Ns or Nms. */
void settings_format_ms(char *buf, size_t len, long ms)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, len, "%ldh", ms / 3600000);
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, len, "%ldmin", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%lds", ms / 1000);
	else
		snprintf(buf, len, "%ldms", ms);
}

void settings_format_bytes(char *buf, size_t len, long b)
{
	if (b != 0 && b % (1024L * 1024 * 1024) == 0)
		snprintf(buf, len, "%ldGB", b / (1024L * 1024 * 1024));
	else if (b != 0 && b % (1024L * 1024) == 0)
		snprintf(buf, len, "%ldMB", b / (1024L * 1024));
	else if (b != 0 && b % 1024 == 0)
		snprintf(buf, len, "%ldkB", b / 1024);
	else
		snprintf(buf, len, "%ld", b);
}

/* A relative path made absolute against the directory of `file`. */
static char *absolute_path(const char *file, const char *value)
{
	if (value[0] == '\0' || value[0] == '/' || !file)
		return xstrdup(value);
	const char *slash = strrchr(file, '/');
	char *dir = slash ? xstrndup(file, (size_t)(slash - file) + (slash == file)) : xstrdup(".");
	char *real = realpath(dir, NULL);
	const char *base = real ? real : dir;
	size_t n = strlen(base) + strlen(value) + 2;
	char *p = xmalloc(n);
	snprintf(p, n, "%s%s%s", base, strcmp(base, "/") == 0 ? "" : "/", value);
	free(real);
	free(dir);
	return p;
}

bool settings_parse(struct config *c, const struct setting *s, const char *v, const char *file,
                    char *msg, size_t len)
{
	void *f = (char *)c + s->offset;
	long x;
	char lo[32], hi[32];
	switch (s->type) {
	case SETTING_INT:
		if (!settings_parse_long(v, &x) || x < s->min || x > s->max) {
			snprintf(msg, len, "expected an integer between %ld and %ld, got '%s'",
			         s->min, s->max, v);
			return false;
		}
		*(int *)f = (int)x;
		break;
	case SETTING_SIZE:
		if (!parse_size(v, s->min, s->max, &x)) {
			settings_format_bytes(lo, sizeof(lo), s->min);
			settings_format_bytes(hi, sizeof(hi), s->max);
			snprintf(msg, len,
			         "expected a size between %s and %s (bytes, or a number with unit "
			         "kB, MB or GB), got '%s'",
			         lo, hi, v);
			return false;
		}
		*(int *)f = (int)x;
		break;
	case SETTING_TIME:
		if (!parse_time_ms(v, s->min, s->max, &x)) {
			settings_format_ms(lo, sizeof(lo), s->min);
			settings_format_ms(hi, sizeof(hi), s->max);
			snprintf(msg, len,
			         "expected a duration between %s and %s (seconds, or a number with "
			         "unit ms, s, min or h), got '%s'",
			         lo, hi, v);
			return false;
		}
		*(double *)f = (double)x / 1000.0;
		break;
	case SETTING_BOOL:
		if (!parse_bool(v, f)) {
			snprintf(msg, len,
			         "expected a boolean (1/0, yes/no, on/off, true/false), got '%s'",
			         v);
			return false;
		}
		break;
	case SETTING_ENUM: {
		int i = settings_find_name(s->enum_names, v);
		if (i < 0) {
			char names[256];
			settings_join_names(names, sizeof(names), s->enum_names);
			snprintf(msg, len, "expected %s, got '%s'", names, v);
			return false;
		}
		*(int *)f = i;
		break;
	}
	case SETTING_MODE: {
		char *end;
		errno = 0;
		x = (*v >= '0' && *v <= '7') ? strtol(v, &end, 8) : -1;
		if (x < 0 || errno || *end || x < s->min || x > s->max) {
			snprintf(msg, len, "expected an octal file mode such as 0700, got '%s'", v);
			return false;
		}
		*(int *)f = (int)x;
		break;
	}
	case SETTING_STRING:
	case SETTING_PATH: {
		char **p = f;
		char *nv = s->type == SETTING_PATH ? absolute_path(file, v) : xstrdup(v);
		if (s->check && !s->check(&nv, msg, len)) {
			free(nv);
			return false;
		}
		free(*p);
		*p = nv;
		return true;
	}
	case SETTING_LIST: {
		struct strlist l;
		strlist_init(&l);
		strlist_parse_csv(&l, v);
		if (s->check && !s->check(&l, msg, len)) {
			strlist_free(&l);
			return false;
		}
		strlist_free(f);
		*(struct strlist *)f = l;
		return true;
	}
	}
	return s->check ? s->check(f, msg, len) : true;
}

/* --- defaults and freeing --------------------------------------------- */

void settings_init(struct config *c)
{
	for (size_t i = 0; i < N_SETTINGS; i++) {
		char msg[256];
		if (!settings_parse(c, &settings[i], settings[i].def, NULL, msg, sizeof(msg))) {
			fprintf(stderr, "pgmoat: bad default of %s: %s\n", settings[i].name, msg);
			abort();
		}
	}
}

void settings_free(struct config *c)
{
	for (size_t i = 0; i < N_SETTINGS; i++) {
		void *f = (char *)c + settings[i].offset;
		if (settings[i].type == SETTING_STRING || settings[i].type == SETTING_PATH)
			free(*(char **)f);
		else if (settings[i].type == SETTING_LIST)
			strlist_free(f);
	}
}

/* --- formatting ------------------------------------------------------- */

struct out {
	char *buf;
	size_t len, used;
};

static void out_add(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_add(struct out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t room = o->used < o->len ? o->len - o->used : 0;
	int n = vsnprintf(room ? o->buf + o->used : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used += (size_t)n;
}

size_t config_format(const struct config *c, const struct setting *s, char *buf, size_t len)
{
	const void *f = (const char *)c + s->offset;
	struct out o = {buf, len, 0};
	if (len)
		buf[0] = '\0';
	switch (s->type) {
	case SETTING_INT:
	case SETTING_SIZE:
		out_add(&o, "%d", *(const int *)f);
		break;
	case SETTING_MODE:
		out_add(&o, "%04o", (unsigned)*(const int *)f);
		break;
	case SETTING_BOOL:
		out_add(&o, "%d", *(const bool *)f ? 1 : 0);
		break;
	case SETTING_ENUM:
		out_add(&o, "%s", s->enum_names[*(const int *)f]);
		break;
	case SETTING_TIME: {
		long ms = (long)(*(const double *)f * 1000.0 + 0.5);
		if (ms % 1000 == 0)
			out_add(&o, "%ld", ms / 1000);
		else
			out_add(&o, "%ldms", ms);
		break;
	}
	case SETTING_STRING:
	case SETTING_PATH: {
		const char *v = *(char *const *)f;
		out_add(&o, "%s", v ? v : "");
		break;
	}
	case SETTING_LIST: {
		const struct strlist *l = f;
		for (size_t i = 0; i < l->n; i++)
			out_add(&o, "%s%s", i ? ", " : "", l->items[i]);
		break;
	}
	}
	return o.used;
}

static char *format_alloc(const struct config *c, const struct setting *s)
{
	size_t n = config_format(c, s, NULL, 0);
	char *buf = xmalloc(n + 1);
	config_format(c, s, buf, n + 1);
	return buf;
}

void config_changed_restart_keys(const struct config *old, const struct config *new,
                                 void (*fn)(const struct setting *s, void *arg), void *arg)
{
	for (size_t i = 0; i < N_SETTINGS; i++) {
		if (settings[i].reloadable)
			continue;
		char *a = format_alloc(old, &settings[i]), *b = format_alloc(new, &settings[i]);
		if (strcmp(a, b) != 0)
			fn(&settings[i], arg);
		free(a);
		free(b);
	}
}
