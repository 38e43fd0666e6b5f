/* The configuration: one immutable object per loaded file.
 *
 * Every [pgmoat] setting is one row of the settings table (conf/settings.c):
 * name, type, offset into struct config, default, reloadable or not, and a
 * one-line description.  Parsing, validation, defaults, `--check`, SHOW
 * CONFIG and doc/config.md all come from that table.
 *
 * Reload is parse -> validate -> swap: config_load() builds a new object and
 * reports every error; the caller swaps pointers only when it succeeded.
 * Readers hold a reference (config_ref/config_unref, atomic) so a config is
 * freed when the last worker has moved on.
 */
#ifndef PGMOAT_CONF_CONFIG_H
#define PGMOAT_CONF_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common/util.h"

#define POOL_MODE_LIST(X)                                                                          \
	X(POOL_SESSION, "session")                                                                 \
	X(POOL_TRANSACTION, "transaction")                                                         \
	X(POOL_STATEMENT, "statement")

#define AUTH_TYPE_LIST(X)                                                                          \
	X(AUTH_TRUST, "trust")                                                                     \
	X(AUTH_MD5, "md5")                                                                         \
	X(AUTH_SCRAM, "scram-sha-256")                                                             \
	X(AUTH_PLAIN, "plain")                                                                     \
	X(AUTH_CERT, "cert")                                                                       \
	X(AUTH_HBA, "hba")

/* client_tls_sslmode and server_tls_sslmode, weakest first. */
#define TLS_MODE_LIST(X)                                                                           \
	X(TLS_DISABLE, "disable")                                                                  \
	X(TLS_ALLOW, "allow")                                                                      \
	X(TLS_PREFER, "prefer")                                                                    \
	X(TLS_REQUIRE, "require")                                                                  \
	X(TLS_VERIFY_CA, "verify-ca")                                                              \
	X(TLS_VERIFY_FULL, "verify-full")

/* What transaction pooling does with SQL that leaves session state it
 * cannot carry to the client's next server (LISTEN, session advisory locks,
 * WITH HOLD cursors, temporary tables, SQL-level PREPARE). */
#define GUARD_MODE_LIST(X)                                                                         \
	X(GUARD_ERROR, "error")                                                                    \
	X(GUARD_WARN, "warn")                                                                      \
	X(GUARD_OFF, "off")

/* Which host of a database's list a session or transaction goes to, in
 * libpq's vocabulary (doc/routing.md). */
#define TSA_LIST(X)                                                                                \
	X(TSA_READ_WRITE, "read-write")                                                            \
	X(TSA_PRIMARY, "primary")                                                                  \
	X(TSA_READ_ONLY, "read-only")                                                              \
	X(TSA_STANDBY, "standby")                                                                  \
	X(TSA_PREFER_STANDBY, "prefer-standby")                                                    \
	X(TSA_ANY, "any")

#define READ_ROUTING_LIST(X)                                                                       \
	X(READ_ROUTING_OFF, "off")                                                                 \
	X(READ_ROUTING_AUTO, "auto")

#define X_ENUM(id, name) id,
enum tsa { TSA_LIST(X_ENUM) TSA_COUNT };
enum read_routing { READ_ROUTING_LIST(X_ENUM) READ_ROUTING_COUNT };
enum pool_mode { POOL_MODE_LIST(X_ENUM) POOL_MODE_COUNT };
enum guard_mode { GUARD_MODE_LIST(X_ENUM) GUARD_MODE_COUNT };
enum auth_type { AUTH_TYPE_LIST(X_ENUM) AUTH_TYPE_COUNT };
enum tls_mode { TLS_MODE_LIST(X_ENUM) TLS_MODE_COUNT };
#undef X_ENUM

const char *pool_mode_name(enum pool_mode m);
const char *auth_type_name(enum auth_type a);
const char *tls_mode_name(enum tls_mode m);
const char *tsa_name(enum tsa t);

/* The most hosts one [databases] entry may list. */
#define DB_MAX_HOSTS 16

/* One host of a [databases] entry. */
struct db_host {
	char *host; /* NULL: unix socket in the default directory */
	int port;
	int weight; /* share of reads among replicas, 1..100 */
};

/* One [databases] entry, pgbouncer syntax:
 *   name = host=H port=P dbname=D user=U password=S pool_size=N pool_mode=M
 *          min_pool_size=N reserve_pool=N max_db_connections=N
 *          client_encoding=E datestyle=D timezone=T application_name=A
 * `*` is the fallback for names not listed (dbname defaults to the name the
 * client asked for). */
struct db_entry {
	char *name;
	char *host; /* NULL: unix socket in the default directory */
	int port; /* default 5432 */
	char *dbname; /* NULL: same as the name the client used */
	char *user; /* forced server user, NULL: the client's user */
	char *password; /* password for the forced or client user, may be NULL */
	int pool_size; /* -1: default_pool_size */
	int min_pool_size; /* -1: global min_pool_size */
	int reserve_pool; /* -1: global reserve_pool_size */
	int max_db_connections; /* -1: global max_db_connections */
	int pool_mode; /* -1: global pool_mode, else enum pool_mode */
	char *client_encoding; /* startup parameters sent to the server, may be NULL */
	char *datestyle;
	char *timezone;
	char *application_name;
	char *ports; /* the port parameter as written: "5432" or "5432,5433" */
	char *weights; /* the weight parameter as written, or NULL */
	int tsa; /* enum tsa */
	/* host, port and weight split into one entry per host (at least one). */
	struct db_host *hosts;
	int n_hosts;
	int line; /* where it was defined, for messages */
};

/* The highest peer_id and [peers] id (PgBouncer's limit too). */
#define PEER_ID_MAX 16383

/* One [peers] entry, pgbouncer syntax:  id = host=H port=P
 * Another pgmoat process sharing listen_port (so_reuseport): cancel
 * requests for its clients are forwarded to host:port. */
struct peer_entry {
	int id; /* 1..PEER_ID_MAX */
	char *host; /* host name, IP address, or a directory: its unix socket */
	int port; /* default 6432 */
	int pool_size; /* accepted for pgbouncer.ini's sake, unused */
	int line;
};

/* One [users] entry:  name = pool_mode=M max_user_connections=N */
struct user_entry {
	char *name;
	int pool_mode; /* -1: unset */
	int max_user_connections; /* -1: unset */
	int line;
};

struct config {
	/* [pgmoat] settings; keep in step with the table in settings.c */
	struct strlist listen_addr;
	int listen_port;
	char *unix_socket_dir; /* "" disables the unix socket */
	int unix_socket_mode;
	int workers; /* 0 in the file means: number of cores (resolved at load) */
	int pool_mode; /* enum pool_mode */
	int default_pool_size;
	int min_pool_size;
	int reserve_pool_size;
	double reserve_pool_timeout;
	int max_client_conn;
	int max_db_connections; /* 0: unlimited */
	int max_user_connections; /* 0: unlimited */
	int auth_type; /* enum auth_type */
	char *auth_file;
	struct strlist admin_users;
	struct strlist stats_users;
	char *logfile;
	char *pidfile;
	bool syslog;
	char *syslog_ident;
	char *syslog_facility;
	int verbose;
	char *server_reset_query;
	bool server_reset_query_always;
	double server_lifetime; /* seconds; 0 disables */
	double server_idle_timeout; /* seconds; 0 disables */
	double server_connect_timeout; /* seconds */
	double server_login_retry; /* seconds */
	double server_down_wait; /* seconds */
	double client_login_timeout; /* seconds; 0 disables */
	double query_wait_timeout; /* seconds; 0 disables */
	double query_timeout; /* seconds; 0 disables */
	double idle_transaction_timeout; /* seconds; 0 disables */
	double client_idle_timeout; /* seconds; 0 disables */
	double server_check_delay; /* seconds; 0: check every time */
	char *server_check_query; /* "" disables */
	int max_prepared_statements; /* per server connection; 0 disables */
	struct strlist track_extra_parameters;
	int transaction_mode_guard; /* enum guard_mode */
	double shutdown_timeout; /* seconds; 0: wait forever */
	int pkt_buf; /* bytes */
	int max_packet_size; /* bytes */
	struct strlist ignore_startup_parameters;
	bool tcp_keepalive;
	int listen_backlog;
	bool so_reuseport; /* skip the exclusive first bind (proxy/listener.c) */
	int peer_id; /* 0: no peers; else ours among [peers] (proxy/cancel.h) */

	/* TLS (proxy/tls.h) */
	int client_tls_sslmode; /* enum tls_mode */
	char *client_tls_key_file;
	char *client_tls_cert_file;
	char *client_tls_ca_file;
	char *client_tls_protocols; /* normalised: "tlsv1.2,tlsv1.3" */
	char *client_tls_ciphers;
	int server_tls_sslmode; /* enum tls_mode */
	char *server_tls_key_file;
	char *server_tls_cert_file;
	char *server_tls_ca_file;
	char *server_tls_protocols;
	char *server_tls_ciphers;

	/* who may connect (auth/hba.h, common/cidr.h) */
	char *auth_hba_file; /* "" : none */
	struct strlist allow; /* CIDRs; empty: any address */
	struct strlist proxy_protocol_trusted; /* CIDRs that must send a PROXY header */
	int login_failure_limit; /* 0 disables throttling */
	double login_failure_window;
	double login_failure_cooldown;
	double login_failure_delay;

	/* routing to replicas (pool/router.h, proxy/health.h) */
	double health_check_period;
	int health_check_failures;
	double health_check_timeout;
	char *health_check_user;
	char *health_check_dbname;
	int read_routing; /* enum read_routing */
	struct strlist write_functions;
	double max_replica_lag; /* seconds; 0: no limit */
	int max_replica_lag_bytes; /* 0: no limit */
	bool read_your_writes;

	/* statistics and metrics (proxy/stats.h, proxy/metrics.h) */
	double stats_period;
	bool log_stats;
	char *metrics_listen; /* "" : none */

	/* auth_query (proxy/auth_query.h) */
	char *auth_user; /* "" : no auth_query */
	char *auth_query;
	char *auth_dbname; /* "" : the client's database */

	/* [databases], [users] and [peers] */
	struct db_entry *dbs;
	size_t n_dbs;
	struct user_entry *users;
	size_t n_users;
	struct peer_entry *peers; /* in the order of the file */
	size_t n_peers;

	char *path; /* the file it was read from */
	atomic_int refs; /* see config_ref */
};

enum setting_type {
	SETTING_INT,
	SETTING_BOOL,
	SETTING_STRING,
	SETTING_ENUM, /* value is an int; `enum_names` gives the words */
	SETTING_TIME, /* seconds as a double; accepts "10", "1.5", "500ms", "2s", "1min", "1h" */
	SETTING_SIZE, /* bytes as an int; accepts "4096", "8kB", "1MB" */
	SETTING_LIST, /* comma-separated, struct strlist */
	SETTING_MODE, /* octal file mode, int */
	/* A file or directory name, char *; a relative one is made absolute
	 * against the directory of the file that set it. */
	SETTING_PATH,
};

struct setting {
	const char *name;
	enum setting_type type;
	size_t offset; /* into struct config */
	const char *def; /* default, as it would be written in the file */
	bool reloadable;
	const char *doc; /* one line */
	const char *const *enum_names; /* SETTING_ENUM: NULL-terminated */
	/* Bounds (inclusive): SETTING_INT/SIZE/MODE as is, SETTING_TIME in ms. */
	long min, max;
	const char *alias; /* pgbouncer's name for it, if different, or NULL */
	/* Extra check of a parsed value (`field` points to a value of the
	 * field's type); may normalise it; on failure writes what was expected
	 * into `msg`.  May be NULL. */
	bool (*check)(void *field, char *msg, size_t msglen);
};

/* The settings table. */
const struct setting *config_settings(size_t *n);
const struct setting *config_find_setting(const char *name);

/* Load and validate `path`.  On success returns a config with one reference;
 * warnings ("file:line: unknown setting 'x' (did you mean 'y'?)", pgbouncer
 * settings pgmoat ignores) are appended to `warnings`.  On failure returns
 * NULL and appends every error, each "file:line: message" (or "file:
 * message" when no line is to blame), to `errors`.  Either list may be NULL.
 * Checks across settings (min_pool_size <= pool size, auth_file needed,
 * something to listen on) run once every line is valid.  workers = 0 is
 * resolved to the number of cores. */
struct config *config_load(const char *path, struct strlist *errors, struct strlist *warnings)
        __attribute__((warn_unused_result));

/* A config with every default and no databases (tests, --help); workers is
 * resolved to the number of cores, path is NULL. */
struct config *config_defaults(void);

void config_ref(struct config *c);
void config_unref(struct config *c);

/* doc/config.md: every setting, [databases], [users] and [peers] parameter, in
 * Markdown, generated from the tables (a unit test keeps the file in step). */
void config_write_doc(FILE *f);

/* doc/pgmoat.ini.5, the pgmoat.ini(5) man page: the file's syntax, every
 * setting, [databases], [users] and [peers] parameter, generated from the same
 * tables (a unit test keeps the file in step). */
void config_write_man(FILE *f);

/* The value of setting `s` in `c`, formatted as it would be written in the
 * file.  Returns the length that was needed (like snprintf). */
size_t config_format(const struct config *c, const struct setting *s, char *buf, size_t len);

/* Calls `fn` for every non-reloadable setting whose value differs between
 * `old` and `new` (reload names them as needing a restart). */
void config_changed_restart_keys(const struct config *old, const struct config *new,
                                 void (*fn)(const struct setting *s, void *arg), void *arg);

/* Would `value` parse for setting `s`?  If not, `err` says why. */
bool config_check_value(const struct setting *s, const char *value, char *err, size_t errlen);
/* Set `key` to `value` in `c` (a config not yet shared: the admin
 * console's SET, applied on top of a freshly loaded file). */
bool config_override(struct config *c, const char *key, const char *value, char *err,
                     size_t errlen);

/* The [databases] entry for `name`, else the `*` entry, else NULL. */
const struct db_entry *config_find_db(const struct config *c, const char *name);
const struct user_entry *config_find_user(const struct config *c, const char *name);
/* The [peers] entry with id `id`, or NULL. */
const struct peer_entry *config_find_peer(const struct config *c, int id);

/* Effective per-database values (entry's own value, else the global one);
 * `db` and `user` may be NULL. */
int db_pool_size(const struct config *c, const struct db_entry *db);
int db_min_pool_size(const struct config *c, const struct db_entry *db);
int db_reserve_pool(const struct config *c, const struct db_entry *db);
int db_max_connections(const struct config *c, const struct db_entry *db);
enum pool_mode db_pool_mode(const struct config *c, const struct db_entry *db,
                            const struct user_entry *user);

#endif
