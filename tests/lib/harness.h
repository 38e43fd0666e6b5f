/* The integration-test harness.
 *
 * A test calls h_init() first.  It makes a temporary directory for the test
 * (under $PGMOAT_BUILDDIR/tests/tmp, or /tmp when the PostgreSQL user cannot
 * reach the build directory) and a short one under /tmp for Unix sockets,
 * arms an overall timeout (SIGALRM) and registers the cleanup: whatever
 * happens, every pgmoat and PostgreSQL the test started is stopped, its logs
 * are printed as TAP diagnostics if the test failed, and the directories are
 * removed (kept with PGMOAT_KEEP_TMP=1).  A test ends with `return h_done();`.
 *
 * PostgreSQL runs as the `postgres` OS user when the test runs as root, as
 * the current user otherwise.  initdb runs once per build directory: the
 * result is cached in tests/tmp/pgtemplate-* (guarded by flock) and copied
 * for every cluster.
 *
 * Environment: PGMOAT_BIN (the pgmoat binary), PGMOAT_SRCDIR,
 * PGMOAT_BUILDDIR, and optionally PGMOAT_PG_BINDIR (PostgreSQL's server
 * binaries), PGMOAT_TEST_TIMEOUT (seconds, overrides the test's own),
 * PGMOAT_KEEP_TMP=1, PGMOAT_TEST_WRAPPER (a command line, split at blanks,
 * that pgmoat is started under, e.g. "valgrind --error-exitcode=99") and
 * PGMOAT_TEST_SLOW (see h_slow()).
 *
 * Functions here are named h_*; the raw wire-protocol client is in wire.h.
 */
#ifndef PGMOAT_TESTS_HARNESS_H
#define PGMOAT_TESTS_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "tests/lib/tap.h"

/* --- test life cycle */

/* Sets up the test named `name` with an overall timeout in seconds. */
void h_init(const char *name, int timeout_s);
/* Ends the test: returns the exit status for main().  If the test started
 * pgmoat, one more test point is added (count it in the plan): every pgmoat
 * still running stops with status 0 on SIGINT, and no pgmoat log holds a
 * sanitizer report (ASan, UBSan, TSan) or a valgrind error. */
int h_done(void);
/* Prints the logs and bails out of the whole test. */
void h_bail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

const char *h_tmpdir(void);
const char *h_pgmoat_bin(void);
const char *h_srcdir(void);
/* How much slower pgmoat runs than plain: PGMOAT_TEST_SLOW if set, else 5
 * under PGMOAT_TEST_WRAPPER, else 1.  The harness stretches by it the
 * test's overall timeout and its own waits on pgmoat (start-up, reload,
 * log lines, exit); a test may stretch its own deadlines with it. */
double h_slow(void);
/* Monotonic time in seconds. */
double h_now(void);
/* Sleeps `secs`: only for pacing a poll loop that has its own deadline. */
void h_nap(double secs);

/* --- small utilities */

/* A diagnostic of `text` (libpq messages, logs), line by line, each line
 * prefixed with `label`. */
void h_diag_text(const char *label, const char *text);

char *h_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool h_write_file(const char *path, const char *text);
/* The whole file, NUL-terminated, or NULL.  `len` may be NULL. */
char *h_read_file(const char *path, size_t *len);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int h_free_port(void);
/* The number (strtol, base 10) right after the first `label` in `text`, -1
 * if `text` is NULL or has no `label`; e.g. pgbench's "number of failed
 * transactions: ". */
long h_number_after(const char *text, const char *label);
/* The number after `label` in /proc/<pid>/<file>, -1 if unknown. */
long h_proc_number(pid_t pid, const char *file, const char *label);
/* A field of /proc/<pid>/status in KiB ("VmRSS:", "VmHWM:"), -1 if unknown. */
long h_proc_kib(pid_t pid, const char *field);
/* Whether something accepts TCP connections on 127.0.0.1:port. */
bool h_tcp_accepts(int port);
/* Polls `cond` every few milliseconds until it holds or `timeout` passes. */
bool h_wait_until(bool (*cond)(void *arg), void *arg, double timeout);

struct h_md5 {
	void *ctx;
};
void h_md5_init(struct h_md5 *m);
void h_md5_update(struct h_md5 *m, const void *data, size_t len);
void h_md5_final(struct h_md5 *m, char hex[33]);
void h_md5_hex(const void *data, size_t len, char hex[33]);

/* Runs a program (PATH is searched) with extra environment entries
 * ("NAME=value", NULL-terminated, may be NULL), stdout and stderr captured
 * together into *output (may be NULL; free it).  Returns the exit status,
 * 128 + signal if it was killed, or -1 if it could not run or exceeded
 * `timeout` seconds (it is then killed). */
int h_run(const char *const argv[], const char *const env[], double timeout, char **output);

/* h_run in a thread of its own, for a program (pgbench) that runs while the
 * test does other things.  The test sets argv, env (may be NULL) and
 * timeout, which must stay valid until h_run_async_wait; `done` turns true
 * once the program has ended; rc and out (the output, free it) are h_run's,
 * to read after h_run_async_wait. */
struct h_run_async {
	const char *const *argv;
	const char *const *env;
	double timeout;
	int rc;
	char *out;
	atomic_bool done;
	pthread_t thread;
};
/* Starts the program's thread; bails if it cannot. */
void h_run_async_start(struct h_run_async *r);
/* Joins the thread: the program's exit status, as h_run's. */
int h_run_async_wait(struct h_run_async *r);

/* Starts a program in the background (output appended to `out_path`); it
 * is killed at cleanup if still running.  -1 if fork failed. */
pid_t h_start_bg(const char *const argv[], const char *out_path);
/* SIGTERM (escalating if needed) and reap. */
void h_stop_bg(pid_t pid);

/* --- PostgreSQL */

struct h_pg_opts {
	const char *auth; /* pg_hba method for TCP: "trust" (default), "md5", "scram-sha-256" */
	const char *password_encryption; /* default "scram-sha-256" */
	const char *hba_lines; /* extra pg_hba.conf lines, placed before the generic ones */
	const char *conf; /* extra postgresql.conf lines */
};

struct h_pg {
	int port; /* TCP on 127.0.0.1, and the Unix socket number */
	char *sockdir; /* Unix socket directory */
	char *datadir;
	char *logpath;
	pid_t pid; /* the postmaster, 0 when stopped */
	PGconn *super;
	int index;
};

/* Starts a cluster copied from the cached template; bails on failure (or
 * skips the whole test when no PostgreSQL server binaries are installed,
 * if no plan was printed yet). */
struct h_pg *h_pg_start(const struct h_pg_opts *opts);
/* Fast shutdown (SIGINT), or immediate (SIGQUIT).  True once it exited. */
bool h_pg_stop(struct h_pg *pg, bool immediate);
/* Starts a stopped cluster again on the same port. */
bool h_pg_restart(struct h_pg *pg);
/* The superuser connection (Unix socket, trust), reconnected if needed. */
PGconn *h_pg_super(struct h_pg *pg);
/* A new direct connection (Unix socket, trust) as `user` to `db`. */
PGconn *h_pg_connect(struct h_pg *pg, const char *user, const char *db);
/* Runs SQL as superuser; bails on failure (for set-up). */
void h_pg_sql(struct h_pg *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* First column of the first row as superuser (malloc'd; "" for NULL), or
 * NULL with a diagnostic. */
char *h_pg_value(struct h_pg *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Creates role `role` (LOGIN, PASSWORD) and database `db` owned by it. */
void h_pg_create_app(struct h_pg *pg, const char *role, const char *password, const char *db);
/* pg_terminate_backend(pid), then waits until the backend is gone. */
bool h_pg_terminate(struct h_pg *pg, int pid);
/* Waits for an active backend whose query starts with `prefix` and returns
 * its pid, or 0 after `timeout`. */
int h_pg_wait_active(struct h_pg *pg, const char *prefix, double timeout);
/* Number of backends of user `user` (client backends only). */
int h_pg_count_backends(struct h_pg *pg, const char *user);
/* pgbench's TPC-B bookkeeping in database `db` adds up: the sums of the
 * accounts' and of the branches' balances both equal the sum of
 * pgbench_history's deltas (nothing lost or doubled).  A diagnostic with
 * the sums when not. */
bool h_pgbench_balanced(struct h_pg *pg, const char *db);

/* A streaming replica of `primary` (pg_basebackup -R -c fast -X stream),
 * on its own port and socket directory, started and streaming; bails on
 * failure.  The primary's pg_hba.conf gets replication lines (trust, Unix
 * socket and 127.0.0.1) if it has none, and is reloaded. */
struct h_pg *h_pg_start_replica(struct h_pg *primary);
/* pg_ctl promote, then waits until `pg` is out of recovery. */
/* Makes stopped (or running) cluster `pg` a new streaming replica of
 * `primary`, on its old port and directories (an old primary coming back as
 * a replica); bails on failure. */
void h_pg_rebuild_replica(struct h_pg *pg, struct h_pg *primary);
bool h_pg_promote(struct h_pg *pg);
/* Waits until `replica` has replayed `primary`'s current WAL position
 * (every transaction committed so far: it commits one synchronously first). */
bool h_pg_wait_replay(struct h_pg *replica, struct h_pg *primary, double timeout);
/* SIGSTOP (`stop`) or SIGCONT the postmaster and every process it forked,
 * so the whole cluster hangs: connections are queued by the kernel and
 * never answered.  Resume it before the test ends. */
void h_pg_pause(struct h_pg *pg, bool stop);

/* --- pgmoat */

struct h_moat {
	struct h_pg *pg; /* may be NULL */
	int port;
	char *ini;
	char *log;
	char *authfile;
	char *sockdir;
	char *tmpl; /* the last INI template written */
	pid_t pid; /* 0 when not running */
	int status; /* last exit status (see h_moat_wait_exit) */
	size_t log_mark;
	int index;
};

/* A pgmoat instance: paths under the test's temp dir and a free port. */
struct h_moat *h_moat_new(struct h_pg *pg);
/* Writes the INI file from `tmpl`, replacing @PORT@ (pgmoat's port),
 * @PGPORT@, @PGSOCK@ (the cluster's port and socket dir), @SOCKDIR@
 * (pgmoat's unix_socket_dir), @AUTHFILE@ and @TMPDIR@. */
bool h_moat_write_ini(struct h_moat *m, const char *tmpl);
/* The usual INI: [databases] app = host=127.0.0.1 port=@PGPORT@ dbname=app
 * <db_params>; [pgmoat] listen_addr, listen_port, unix_socket_dir,
 * auth_file, plus auth_type = trust and workers = 2 unless `settings` (more
 * lines for [pgmoat], may be NULL) sets them.  Writes a userlist with
 * "app" "app" if none was written. */
bool h_moat_write_std_ini(struct h_moat *m, const char *db_params, const char *settings);
bool h_moat_write_userlist(struct h_moat *m, const char *text);
/* Starts `$PGMOAT_BIN [args...] <ini>` and waits until it accepts TCP
 * connections.  False (with diagnostics) if it exited or timed out. */
bool h_moat_start(struct h_moat *m, const char *const args[]);
/* Starts pgmoat like h_moat_start, but waits until its log says `ready`
 * (past the start): for a pgmoat whose port is already served by another
 * (so_reuseport).  False (with diagnostics) if it exited or timed out. */
bool h_moat_start_log(struct h_moat *m, const char *const args[], const char *ready);
void h_moat_signal(struct h_moat *m, int sig);
bool h_moat_alive(struct h_moat *m);
/* Waits for pgmoat to exit: its exit status, 128 + signal if killed by
 * one, or -1 if still running after `timeout` (times h_slow()). */
int h_moat_wait_exit(struct h_moat *m, double timeout);
/* SIGINT, then SIGKILL after 10 s (times h_slow()).  Returns the exit
 * status. */
int h_moat_stop(struct h_moat *m);
/* Log searches look only past the mark (set at each start and here). */
void h_moat_log_mark(struct h_moat *m);
bool h_moat_log_has(struct h_moat *m, const char *needle); /* case-insensitive */
/* Waits up to `timeout` (times h_slow()) for `needle` past the mark. */
bool h_moat_log_wait(struct h_moat *m, const char *needle, double timeout);
/* SIGHUP, then waits (10 s) for `expect` in the log past a new mark, e.g.
 * "configuration reloaded" or "reload failed". */
bool h_moat_reload(struct h_moat *m, const char *expect);
/* Prints the log since the mark as diagnostics. */
void h_moat_log_diag(struct h_moat *m);

/* Conninfo strings (malloc'd) for TCP and the Unix socket; `password` may be
 * NULL. */
char *h_moat_conninfo(const struct h_moat *m, const char *user, const char *db,
                      const char *password);
char *h_moat_conninfo_unix(const struct h_moat *m, const char *user, const char *db,
                           const char *password);
PGconn *h_moat_connect(const struct h_moat *m, const char *user, const char *db,
                       const char *password);

/* --- libpq helpers */

/* PQconnectdb; prints a diagnostic on failure.  Never NULL. */
PGconn *h_connect(const char *conninfo);
bool h_connected(const PGconn *c);
/* Runs a command; true on success, a diagnostic otherwise. */
bool h_exec(PGconn *c, const char *sql);
/* First column of the first row (malloc'd; "" for NULL), or NULL with a
 * diagnostic. */
char *h_value(PGconn *c, const char *sql);
/* `r` (cleared) as text: "ok", "ok <first value>" or "<SQLSTATE> <primary
 * message>" (malloc'd), for comparing outcomes. */
char *h_result_text(PGconn *c, PGresult *r);
/* Runs `sql`: "" if it succeeded, else the SQLSTATE, or "none" for a
 * failure without one (connection lost).  malloc'd. */
char *h_error_state(PGconn *c, const char *sql);
/* SQLSTATE of a result, "" if none. */
const char *h_result_state(const PGresult *r);
/* pg_backend_pid() through `c`, 0 on failure. */
int h_backend_pid(PGconn *c);

/* A libpq connection driven without blocking: connect, send one query,
 * collect its result. */
enum h_async_state { H_ASYNC_CONNECTING, H_ASYNC_RUNNING, H_ASYNC_DONE, H_ASYNC_FAILED };

struct h_async {
	PGconn *conn;
	enum h_async_state state;
	int poll; /* last PostgresPollingStatusType */
	char *query;
	char *value; /* first column of the first row, if any */
	char sqlstate[6]; /* of the first error, "" if none */
	char *error; /* connection or query error message, NULL if none */
	double started, finished;
};

void h_async_start(struct h_async *a, const char *conninfo, const char *query);
/* Drives `a` for up to `timeout` seconds; true once it is DONE or FAILED. */
bool h_async_wait(struct h_async *a, double timeout);
/* True if it finished with a query result and no error. */
bool h_async_ok(const struct h_async *a);
void h_async_close(struct h_async *a);

#endif
