#include <config.h>

#include "tests/lib/harness.h"
#include "tests/lib/harness_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- PostgreSQL */

static void find_pg_bindir(void)
{
	const char *env = getenv("PGMOAT_PG_BINDIR");
	if (env && *env) {
		h_rt.pg_bindir = strdup(env);
		return;
	}
	for (int v = 30; v >= 12; v--) {
		char *d = h_strdupf("/usr/lib/postgresql/%d/bin", v);
		char *p = h_strdupf("%s/postgres", d);
		bool ok = access(p, X_OK) == 0;
		free(p);
		if (ok) {
			h_rt.pg_bindir = d;
			return;
		}
		free(d);
	}
	const char *path = getenv("PATH");
	char *copy = strdup(path ? path : "/usr/bin:/bin");
	for (char *dir = strtok(copy, ":"); dir; dir = strtok(NULL, ":")) {
		char *p = h_strdupf("%s/initdb", dir);
		bool ok = access(p, X_OK) == 0;
		free(p);
		if (ok) {
			h_rt.pg_bindir = strdup(dir);
			break;
		}
	}
	free(copy);
}

static char *pg_bin(const char *prog)
{
	return h_strdupf("%s/%s", h_rt.pg_bindir, prog);
}

static bool copy_tree(const char *from, const char *to)
{
	const char *argv[] = {"cp", "-a", from, to, NULL};
	char *out = NULL;
	int rc = h_run(argv, NULL, 120, &out);
	if (rc != 0) {
		diag("cp -a %s %s failed (%d):", from, to, rc);
		h_diag_text("  ", out);
	}
	free(out);
	return rc == 0;
}

/* Fills pg->datadir from the template, running initdb when there is none. */
static void pg_make_datadir(struct h_pg *pg)
{
	char *postgres = pg_bin("postgres");
	const char *vargv[] = {postgres, "-V", NULL};
	char *vout = NULL;
	h_run(vargv, NULL, 30, &vout);
	char ver[32] = "";
	size_t n = 0;
	/* "postgres (PostgreSQL) 15.4 (Debian ...)": the first number. */
	const char *p = vout ? strpbrk(vout, "0123456789") : NULL;
	while (p && ((*p >= '0' && *p <= '9') || *p == '.') && n < sizeof ver - 1)
		ver[n++] = *p++;
	ver[n] = '\0';
	free(vout);
	free(postgres);

	char *tmpl = h_strdupf("%s/tests/tmp/pgtemplate-%s-%u", h_rt.builddir, ver,
	                       (unsigned)h_rt.pg_uid);
	char *lockpath = h_strdupf("%s.lock", tmpl);
	char *marker = h_strdupf("%s/PG_VERSION", tmpl);
	int lock = open(lockpath, O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	if (lock >= 0)
		while (flock(lock, LOCK_EX) < 0 && errno == EINTR)
			;
	if (access(marker, R_OK) == 0) {
		if (lock >= 0)
			close(lock);
		if (!copy_tree(tmpl, pg->datadir))
			h_bail("cannot copy the template cluster");
	} else {
		char *initdb = pg_bin("initdb");
		const char *argv[] = {initdb, "-D",       pg->datadir,  "-N",
		                      "-U",   "postgres", "-A",         "trust",
		                      "-E",   "UTF8",     "--locale=C", "--no-instructions",
		                      NULL};
		const char *env[] = {"LC_ALL=C", NULL};
		char *out = NULL;
		int rc = h_run_as(argv, env, 120, &out, true, h_rt.base);
		if (rc != 0) {
			diag("initdb failed (%d):", rc);
			h_diag_text("  ", out);
			h_bail("initdb failed");
		}
		free(out);
		free(initdb);
		if (lock >= 0) {
			char *part = h_strdupf("%s.part.%d", tmpl, (int)getpid());
			if (copy_tree(pg->datadir, part) && rename(part, tmpl) == 0) {
				/* cached */
			} else {
				const char *rm[] = {"rm", "-rf", part, NULL};
				h_run(rm, NULL, 60, NULL);
			}
			free(part);
			close(lock);
		}
	}
	free(tmpl);
	free(lockpath);
	free(marker);
}

static bool pg_write_conf(struct h_pg *pg, const struct h_pg_opts *o)
{
	const char *auth = o && o->auth ? o->auth : "trust";
	char *hba = h_strdupf("local all all trust\n"
	                      "%s\n"
	                      "host all all 127.0.0.1/32 %s\n"
	                      "host all all ::1/128 %s\n",
	                      o && o->hba_lines ? o->hba_lines : "", auth, auth);
	char *hba_path = h_strdupf("%s/pg_hba.conf", pg->datadir);
	bool ok = h_write_file(hba_path, hba);
	char *conf_path = h_strdupf("%s/postgresql.conf", pg->datadir);
	FILE *f = fopen(conf_path, "a");
	if (f) {
		fprintf(f,
		        "\n# pgmoat test harness\n"
		        "fsync = off\n"
		        "synchronous_commit = off\n"
		        "full_page_writes = off\n"
		        "shared_buffers = 32MB\n"
		        "max_connections = 150\n"
		        "huge_pages = off\n"
		        "unix_socket_permissions = 0777\n"
		        "log_line_prefix = '%%m [%%p] %%q%%u@%%d '\n"
		        "log_min_messages = warning\n"
		        "password_encryption = '%s'\n"
		        "%s\n",
		        o && o->password_encryption ? o->password_encryption : "scram-sha-256",
		        o && o->conf ? o->conf : "");
		if (fclose(f) != 0)
			ok = false;
	} else {
		ok = false;
	}
	/* Readable by the cluster's user. */
	if (h_rt.drop &&
	    (chown(hba_path, h_rt.pg_uid, h_rt.pg_gid) < 0 ||
	     chown(conf_path, h_rt.pg_uid, h_rt.pg_gid) < 0))
		ok = false;
	free(hba);
	free(hba_path);
	free(conf_path);
	return ok;
}

static bool pg_launch(struct h_pg *pg)
{
	char *postgres = pg_bin("postgres");
	char port[16];
	snprintf(port, sizeof port, "%d", pg->port);
	const char *argv[] = {postgres,    "-D", pg->datadir,
	                      "-p",        port, "-k",
	                      pg->sockdir, "-c", "listen_addresses=127.0.0.1",
	                      NULL};
	const char *env[] = {"LC_ALL=C", NULL};
	size_t log_start = 0;
	struct stat st;
	if (stat(pg->logpath, &st) == 0)
		log_start = (size_t)st.st_size;
	pg->pid = h_spawn(argv, env, pg->logpath, true, h_rt.base);
	free(postgres);
	if (pg->pid < 0) {
		pg->pid = 0;
		return false;
	}
	char *ping = h_strdupf("host=%s port=%d user=postgres dbname=postgres connect_timeout=5",
	                       pg->sockdir, pg->port);
	double end = h_now() + 60;
	bool ok = false;
	while (h_now() < end) {
		if (PQping(ping) == PQPING_OK) {
			ok = true;
			break;
		}
		int wst;
		if (waitpid(pg->pid, &wst, WNOHANG) == pg->pid) {
			pg->pid = 0;
			break;
		}
		h_nap(0.02);
	}
	free(ping);
	if (!ok) {
		char *log = h_read_file(pg->logpath, NULL);
		diag("PostgreSQL did not start on port %d:", pg->port);
		h_diag_text("  | ", log && strlen(log) > log_start ? log + log_start : "(no log)");
		free(log);
		if (pg->pid > 0)
			h_stop_pid(pg->pid, SIGQUIT, 5, NULL);
		pg->pid = 0;
	}
	return ok;
}

struct h_pg *h_pg_start(const struct h_pg_opts *opts)
{
	if (h_rt.no_pg_user)
		tap_skip_all(
		        "running as root and there is no 'postgres' OS user to run PostgreSQL");
	if (!h_rt.pg_bindir)
		find_pg_bindir();
	if (!h_rt.pg_bindir)
		tap_skip_all("PostgreSQL server binaries not found (set PGMOAT_PG_BINDIR)");
	if (h_rt.n_pgs >= H_MAX_PG)
		h_bail("too many clusters");
	struct h_pg *pg = calloc(1, sizeof *pg);
	pg->index = h_rt.n_pgs;
	pg->datadir = h_strdupf("%s/pg%d", h_rt.base, pg->index);
	pg->logpath = h_strdupf("%s/pg%d.log", h_rt.base, pg->index);
	pg->sockdir = h_strdupf("%s/pg%d", h_rt.sockbase, pg->index);
	if (mkdir(pg->sockdir, 0700) < 0 ||
	    (h_rt.drop && chown(pg->sockdir, h_rt.pg_uid, h_rt.pg_gid) < 0))
		h_bail("cannot make %s: %s", pg->sockdir, strerror(errno));
	h_rt.pgs[h_rt.n_pgs++] = pg;

	pg_make_datadir(pg);
	if (!pg_write_conf(pg, opts))
		h_bail("cannot write the cluster's configuration");
	for (int attempt = 0; attempt < 3; attempt++) {
		pg->port = h_free_port();
		if (pg_launch(pg))
			return pg;
	}
	h_bail("PostgreSQL did not start");
}

bool h_pg_stop(struct h_pg *pg, bool immediate)
{
	if (pg->super) {
		PQfinish(pg->super);
		pg->super = NULL;
	}
	if (pg->pid <= 0)
		return true;
	h_stop_pid(pg->pid, immediate ? SIGQUIT : SIGINT, 30, NULL);
	pg->pid = 0;
	return true;
}

bool h_pg_restart(struct h_pg *pg)
{
	if (pg->pid > 0)
		h_pg_stop(pg, false);
	return pg_launch(pg);
}

PGconn *h_pg_super(struct h_pg *pg)
{
	if (pg->super && PQstatus(pg->super) == CONNECTION_OK)
		return pg->super;
	if (pg->super)
		PQfinish(pg->super);
	char *ci =
	        h_strdupf("host=%s port=%d user=postgres dbname=postgres", pg->sockdir, pg->port);
	pg->super = PQconnectdb(ci);
	free(ci);
	if (PQstatus(pg->super) != CONNECTION_OK)
		h_diag_text("superuser connection failed: ", PQerrorMessage(pg->super));
	return pg->super;
}

PGconn *h_pg_connect(struct h_pg *pg, const char *user, const char *db)
{
	char *ci = h_strdupf("host=%s port=%d user=%s dbname=%s", pg->sockdir, pg->port, user, db);
	PGconn *c = h_connect(ci);
	free(ci);
	return c;
}

void h_pg_sql(struct h_pg *pg, const char *fmt, ...)
{
	char *sql;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&sql, fmt, ap) < 0)
		h_bail("out of memory");
	va_end(ap);
	if (!h_exec(h_pg_super(pg), sql))
		h_bail("set-up SQL failed: %s", sql);
	free(sql);
}

char *h_pg_value(struct h_pg *pg, const char *fmt, ...)
{
	char *sql;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&sql, fmt, ap) < 0)
		h_bail("out of memory");
	va_end(ap);
	char *v = h_value(h_pg_super(pg), sql);
	free(sql);
	return v;
}

void h_pg_create_app(struct h_pg *pg, const char *role, const char *password, const char *db)
{
	h_pg_sql(pg, "create role \"%s\" login password '%s'", role, password);
	if (db)
		h_pg_sql(pg, "create database \"%s\" owner \"%s\"", db, role);
}

struct backend_gone {
	struct h_pg *pg;
	int pid;
};

static bool backend_gone(void *arg)
{
	struct backend_gone *b = arg;
	char *v = h_pg_value(b->pg, "select count(*) from pg_stat_activity where pid = %d", b->pid);
	bool gone = v && strcmp(v, "0") == 0;
	free(v);
	return gone;
}

bool h_pg_terminate(struct h_pg *pg, int pid)
{
	char *v = h_pg_value(pg, "select pg_terminate_backend(%d)", pid);
	bool ok = v && strcmp(v, "t") == 0;
	free(v);
	struct backend_gone b = {pg, pid};
	return ok && h_wait_until(backend_gone, &b, 10);
}

int h_pg_wait_active(struct h_pg *pg, const char *prefix, double timeout)
{
	double end = h_now() + timeout;
	const char *params[1] = {prefix};
	for (;;) {
		PGresult *r = PQexecParams(h_pg_super(pg),
		                           "select pid from pg_stat_activity where state = 'active'"
		                           " and pid <> pg_backend_pid() and starts_with(query, $1)"
		                           " order by backend_start limit 1",
		                           1, NULL, params, NULL, NULL, 0);
		int pid = 0;
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
			pid = atoi(PQgetvalue(r, 0, 0));
		PQclear(r);
		if (pid > 0)
			return pid;
		if (h_now() >= end)
			return 0;
		h_nap(0.02);
	}
}

int h_pg_count_backends(struct h_pg *pg, const char *user)
{
	char *v = h_pg_value(pg,
	                     "select count(*) from pg_stat_activity where usename = '%s'"
	                     " and backend_type = 'client backend'",
	                     user);
	int n = v ? atoi(v) : -1;
	free(v);
	return n;
}

bool h_pgbench_balanced(struct h_pg *pg, const char *db)
{
	PGconn *c = h_pg_connect(pg, "postgres", db);
	PGresult *r = PQexec(c,
	                     "select (select sum(abalance) from pgbench_accounts),"
	                     " (select sum(bbalance) from pgbench_branches),"
	                     " (select coalesce(sum(delta), 0) from pgbench_history)");
	bool got = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	bool balanced = got && !PQgetisnull(r, 0, 0) && !PQgetisnull(r, 0, 1) &&
	        strcmp(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 2)) == 0 &&
	        strcmp(PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2)) == 0;
	if (!got)
		h_diag_text("  pgbench balances: ", PQerrorMessage(c));
	else if (!balanced)
		diag("  pgbench balances: accounts %s, branches %s, history %s",
		     PQgetisnull(r, 0, 0) ? "NULL" : PQgetvalue(r, 0, 0),
		     PQgetisnull(r, 0, 1) ? "NULL" : PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
	PQclear(r);
	PQfinish(c);
	return balanced;
}

/* --- pgmoat */

struct h_moat *h_moat_new(struct h_pg *pg)
{
	if (h_rt.n_moats >= H_MAX_MOAT)
		h_bail("too many pgmoat instances");
	struct h_moat *m = calloc(1, sizeof *m);
	m->index = h_rt.n_moats;
	m->pg = pg;
	m->port = h_free_port();
	m->ini = h_strdupf("%s/pgmoat%d.ini", h_rt.base, m->index);
	m->log = h_strdupf("%s/pgmoat%d.log", h_rt.base, m->index);
	m->authfile = h_strdupf("%s/userlist%d.txt", h_rt.base, m->index);
	m->sockdir = h_strdupf("%s/moat%d", h_rt.sockbase, m->index);
	if (mkdir(m->sockdir, 0755) < 0)
		h_bail("cannot make %s: %s", m->sockdir, strerror(errno));
	h_rt.moats[h_rt.n_moats++] = m;
	return m;
}

static char *substitute(const struct h_moat *m, const char *tmpl)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		h_bail("out of memory");
	for (const char *p = tmpl; *p; p++) {
		if (*p != '@') {
			fputc(*p, f);
			continue;
		}
		if (strncmp(p, "@PORT@", 6) == 0) {
			fprintf(f, "%d", m->port);
			p += 5;
		} else if (strncmp(p, "@PGPORT@", 8) == 0) {
			fprintf(f, "%d", m->pg ? m->pg->port : 5432);
			p += 7;
		} else if (strncmp(p, "@PGSOCK@", 8) == 0) {
			fputs(m->pg ? m->pg->sockdir : "/tmp", f);
			p += 7;
		} else if (strncmp(p, "@SOCKDIR@", 9) == 0) {
			fputs(m->sockdir, f);
			p += 8;
		} else if (strncmp(p, "@AUTHFILE@", 10) == 0) {
			fputs(m->authfile, f);
			p += 9;
		} else if (strncmp(p, "@TMPDIR@", 8) == 0) {
			fputs(h_rt.base, f);
			p += 7;
		} else {
			fputc(*p, f);
		}
	}
	fclose(f);
	return out;
}

bool h_moat_write_ini(struct h_moat *m, const char *tmpl)
{
	if (m->tmpl != tmpl) {
		free(m->tmpl);
		m->tmpl = strdup(tmpl);
	}
	char *text = substitute(m, m->tmpl);
	bool ok = h_write_file(m->ini, text);
	free(text);
	return ok;
}

bool h_moat_write_userlist(struct h_moat *m, const char *text)
{
	h_rt.userlist_written |= 1 << m->index;
	return h_write_file(m->authfile, text);
}

bool h_moat_write_std_ini(struct h_moat *m, const char *db_params, const char *settings)
{
	const char *s = settings ? settings : "";
	char *tmpl = h_strdupf("[databases]\n"
	                       "app = host=127.0.0.1 port=@PGPORT@ dbname=app %s\n"
	                       "\n"
	                       "[pgmoat]\n"
	                       "listen_addr = 127.0.0.1\n"
	                       "listen_port = @PORT@\n"
	                       "unix_socket_dir = @SOCKDIR@\n"
	                       "auth_file = @AUTHFILE@\n"
	                       "%s%s%s\n",
	                       db_params ? db_params : "",
	                       strstr(s, "auth_type") ? "" : "auth_type = trust\n",
	                       strstr(s, "workers") ? "" : "workers = 2\n", s);
	bool ok = h_moat_write_ini(m, tmpl);
	free(tmpl);
	if (ok && !(h_rt.userlist_written & (1 << m->index)))
		ok = h_moat_write_userlist(m, "\"app\" \"app\"\n");
	return ok;
}

static size_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

bool h_moat_reload(struct h_moat *m, const char *expect)
{
	h_moat_log_mark(m);
	h_moat_signal(m, SIGHUP);
	return h_moat_log_wait(m, expect, 10);
}

void h_moat_log_mark(struct h_moat *m)
{
	m->log_mark = file_size(m->log);
}

static char *log_since_mark(struct h_moat *m)
{
	size_t len = 0;
	char *all = h_read_file(m->log, &len);
	if (!all)
		return strdup("");
	if (m->log_mark > 0 && m->log_mark <= len)
		memmove(all, all + m->log_mark, len - m->log_mark + 1);
	return all;
}

bool h_moat_log_has(struct h_moat *m, const char *needle)
{
	char *text = log_since_mark(m);
	bool found = strcasestr(text, needle) != NULL;
	free(text);
	return found;
}

bool h_moat_log_wait(struct h_moat *m, const char *needle, double timeout)
{
	double end = h_now() + timeout * h_slow();
	for (;;) {
		if (h_moat_log_has(m, needle))
			return true;
		if (h_now() >= end)
			return false;
		h_nap(0.02);
	}
}

void h_moat_log_diag(struct h_moat *m)
{
	char *text = log_since_mark(m);
	h_diag_text("  | ", text);
	free(text);
}

/* ThreadSanitizer's options for pgmoat, unless TSAN_OPTIONS is set: keep
 * going after a report (every race of the run lands in the log, which
 * h_done() checks), exit with 66 if there was one, and the suppressions of
 * tests/tsan.supp (third-party libraries only).  Harmless without TSan. */
static char *tsan_env(void)
{
	if (getenv("TSAN_OPTIONS"))
		return NULL;
	char *supp = h_strdupf("%s/tests/tsan.supp", h_rt.srcdir);
	char *env =
	        h_strdupf("TSAN_OPTIONS=halt_on_error=0 exitcode=66 second_deadlock_stack=1%s%s",
	                  access(supp, R_OK) == 0 ? " suppressions=" : "",
	                  access(supp, R_OK) == 0 ? supp : "");
	free(supp);
	return env;
}

/* Starts `[$PGMOAT_TEST_WRAPPER] $PGMOAT_BIN [args...] <ini>` with a log
 * mark; false if fork failed.  Under a wrapper (valgrind) the pid is still
 * pgmoat's: valgrind runs the program in its own process. */
static bool moat_spawn(struct h_moat *m, const char *const args[])
{
	const char *argv[40];
	size_t n = 0;
	for (size_t i = 0; h_rt.wrapper[i]; i++)
		argv[n++] = h_rt.wrapper[i];
	argv[n++] = h_rt.bin;
	for (size_t i = 0; args && args[i] && n < 38; i++)
		argv[n++] = args[i];
	argv[n++] = m->ini;
	argv[n] = NULL;
	h_moat_log_mark(m);
	char *tsan = tsan_env();
	const char *env[] = {tsan, NULL};
	m->pid = h_spawn(argv, env, m->log, false, NULL);
	free(tsan);
	if (m->pid < 0) {
		m->pid = 0;
		diag("fork: %s", strerror(errno));
		return false;
	}
	return true;
}

bool h_moat_start_log(struct h_moat *m, const char *const args[], const char *ready)
{
	if (!moat_spawn(m, args))
		return false;
	double end = h_now() + 20 * h_slow();
	while (h_now() < end) {
		if (h_moat_log_has(m, ready))
			return true;
		if (!h_moat_alive(m)) {
			diag("pgmoat exited during start-up with status %d", m->status);
			h_moat_log_diag(m);
			return false;
		}
		h_nap(0.01);
	}
	diag("pgmoat did not log '%s' within %.0f s", ready, 20 * h_slow());
	return false;
}

bool h_moat_start(struct h_moat *m, const char *const args[])
{
	for (int attempt = 0; attempt < 3; attempt++) {
		if (!moat_spawn(m, args))
			return false;
		double end = h_now() + 20 * h_slow();
		bool retry = false;
		while (h_now() < end) {
			if (h_tcp_accepts(m->port))
				return true;
			if (!h_moat_alive(m)) {
				retry = m->tmpl && h_moat_log_has(m, "in use");
				diag("pgmoat exited during start-up with status %d", m->status);
				h_moat_log_diag(m);
				break;
			}
			h_nap(0.01);
		}
		if (!retry) {
			if (m->pid > 0)
				diag("pgmoat does not accept connections on port %d after %.0f s",
				     m->port, 20 * h_slow());
			return false;
		}
		m->port = h_free_port();
		if (!h_moat_write_ini(m, m->tmpl))
			return false;
	}
	return false;
}

void h_moat_signal(struct h_moat *m, int sig)
{
	if (m->pid > 0)
		kill(m->pid, sig);
}

bool h_moat_alive(struct h_moat *m)
{
	if (m->pid <= 0)
		return false;
	int st;
	pid_t r = waitpid(m->pid, &st, WNOHANG);
	if (r == 0)
		return true;
	m->status = r == m->pid ? h_status_code(st) : -1;
	m->pid = 0;
	return false;
}

int h_moat_wait_exit(struct h_moat *m, double timeout)
{
	if (m->pid <= 0)
		return m->status;
	int st;
	if (!h_reap_within(m->pid, timeout * h_slow(), &st))
		return -1;
	m->status = h_status_code(st);
	m->pid = 0;
	return m->status;
}

int h_moat_stop(struct h_moat *m)
{
	if (m->pid <= 0)
		return m->status;
	int st = 0;
	h_stop_pid(m->pid, SIGINT, 10 * h_slow(), &st);
	m->status = h_status_code(st);
	m->pid = 0;
	return m->status;
}

static char *conninfo(const char *host, int port, const char *user, const char *db,
                      const char *password)
{
	return h_strdupf("host=%s port=%d dbname=%s user=%s%s%s sslmode=disable gssencmode=disable"
	                 " connect_timeout=10",
	                 host, port, db, user, password ? " password=" : "",
	                 password ? password : "");
}

char *h_moat_conninfo(const struct h_moat *m, const char *user, const char *db,
                      const char *password)
{
	return conninfo("127.0.0.1", m->port, user, db, password);
}

char *h_moat_conninfo_unix(const struct h_moat *m, const char *user, const char *db,
                           const char *password)
{
	return conninfo(m->sockdir, m->port, user, db, password);
}

PGconn *h_moat_connect(const struct h_moat *m, const char *user, const char *db,
                       const char *password)
{
	char *ci = h_moat_conninfo(m, user, db, password);
	PGconn *c = h_connect(ci);
	free(ci);
	return c;
}

/* --- streaming replicas */

/* Lets `pg` take replication connections (Unix socket and 127.0.0.1,
 * trust), unless its pg_hba.conf already mentions replication. */
static bool pg_allow_replication(struct h_pg *pg)
{
	char *path = h_strdupf("%s/pg_hba.conf", pg->datadir);
	char *hba = h_read_file(path, NULL);
	bool ok = hba != NULL;
	if (ok && !strstr(hba, "replication")) {
		FILE *f = fopen(path, "a");
		ok = f &&
		        fputs("local replication all trust\n"
		              "host replication all 127.0.0.1/32 trust\n",
		              f) >= 0;
		if (f && fclose(f) != 0)
			ok = false;
		char *v = ok ? h_pg_value(pg, "select pg_reload_conf()") : NULL;
		ok = v && strcmp(v, "t") == 0;
		free(v);
		/* The postmaster rereads the file on SIGHUP: give it a moment
		 * (pg_basebackup is retried anyway). */
		h_nap(0.2);
	}
	free(hba);
	free(path);
	return ok;
}

struct h_pg_query_is {
	struct h_pg *pg;
	const char *sql;
	const char *want;
};

static bool query_is(void *arg)
{
	struct h_pg_query_is *q = arg;
	PGresult *r = PQexec(h_pg_super(q->pg), q->sql);
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 &&
	        strcmp(PQgetvalue(r, 0, 0), q->want) == 0;
	PQclear(r);
	return ok;
}

/* pg->datadir: a copy of `primary` set up to stream from it. */
static void base_backup(struct h_pg *pg, struct h_pg *primary)
{
	char *basebackup = pg_bin("pg_basebackup");
	char port[16];
	snprintf(port, sizeof port, "%d", primary->port);
	const char *argv[] = {
	        basebackup, "-D", pg->datadir, "-h", primary->sockdir, "-p", port, "-U", "postgres",
	        "-R",       "-c", "fast",      "-X", "stream",         "-w", NULL};
	const char *env[] = {"LC_ALL=C", NULL};
	bool copied = false;
	for (int attempt = 0; attempt < 3 && !copied; attempt++) {
		char *out = NULL;
		int rc = h_run_as(argv, env, 120, &out, true, h_rt.base);
		copied = rc == 0;
		if (!copied) {
			diag("pg_basebackup failed (%d):", rc);
			h_diag_text("  ", out);
			const char *rm[] = {"rm", "-rf", pg->datadir, NULL};
			h_run(rm, NULL, 60, NULL);
			h_nap(0.5);
		}
		free(out);
	}
	free(basebackup);
	if (!copied)
		h_bail("pg_basebackup failed");
}

/* Waits until `pg` is in recovery and streams from `primary`. */
static void wait_streaming(struct h_pg *pg, struct h_pg *primary)
{
	struct h_pg_query_is rec = {pg, "select pg_is_in_recovery()", "t"};
	struct h_pg_query_is streaming = {
	        pg, "select count(*) from pg_stat_wal_receiver where status = 'streaming'", "1"};
	if (!h_wait_until(query_is, &rec, 30) || !h_wait_until(query_is, &streaming, 30))
		h_bail("the replica on port %d does not stream from port %d", pg->port,
		       primary->port);
}

struct h_pg *h_pg_start_replica(struct h_pg *primary)
{
	if (h_rt.n_pgs >= H_MAX_PG)
		h_bail("too many clusters");
	if (!pg_allow_replication(primary))
		h_bail("cannot let cluster %d take replication connections", primary->index);
	struct h_pg *pg = calloc(1, sizeof *pg);
	pg->index = h_rt.n_pgs;
	pg->datadir = h_strdupf("%s/pg%d", h_rt.base, pg->index);
	pg->logpath = h_strdupf("%s/pg%d.log", h_rt.base, pg->index);
	pg->sockdir = h_strdupf("%s/pg%d", h_rt.sockbase, pg->index);
	if (mkdir(pg->sockdir, 0700) < 0 ||
	    (h_rt.drop && chown(pg->sockdir, h_rt.pg_uid, h_rt.pg_gid) < 0))
		h_bail("cannot make %s: %s", pg->sockdir, strerror(errno));
	h_rt.pgs[h_rt.n_pgs++] = pg;

	base_backup(pg, primary);

	bool started = false;
	for (int attempt = 0; attempt < 3 && !started; attempt++) {
		pg->port = h_free_port();
		started = pg_launch(pg);
	}
	if (!started)
		h_bail("the replica did not start");
	wait_streaming(pg, primary);
	return pg;
}

void h_pg_rebuild_replica(struct h_pg *pg, struct h_pg *primary)
{
	if (pg->pid > 0)
		h_pg_stop(pg, true);
	if (!pg_allow_replication(primary))
		h_bail("cannot let cluster %d take replication connections", primary->index);
	if (pg->super) {
		PQfinish(pg->super);
		pg->super = NULL;
	}
	const char *rm[] = {"rm", "-rf", pg->datadir, NULL};
	h_run(rm, NULL, 60, NULL);
	base_backup(pg, primary);
	if (!pg_launch(pg))
		h_bail("the rebuilt replica did not start on port %d", pg->port);
	wait_streaming(pg, primary);
}

bool h_pg_promote(struct h_pg *pg)
{
	char *pg_ctl = pg_bin("pg_ctl");
	const char *argv[] = {pg_ctl, "promote", "-w", "-t", "60", "-D", pg->datadir, NULL};
	const char *env[] = {"LC_ALL=C", NULL};
	char *out = NULL;
	int rc = h_run_as(argv, env, 90, &out, true, h_rt.base);
	if (rc != 0) {
		diag("pg_ctl promote failed (%d):", rc);
		h_diag_text("  ", out);
	}
	free(out);
	free(pg_ctl);
	struct h_pg_query_is q = {pg, "select pg_is_in_recovery()", "f"};
	return rc == 0 && h_wait_until(query_is, &q, 30);
}

bool h_pg_wait_replay(struct h_pg *replica, struct h_pg *primary, double timeout)
{
	/* The harness runs with synchronous_commit = off: a commit may still
	 * sit in the WAL buffers, behind pg_current_wal_lsn().  A transaction
	 * that writes WAL and commits synchronously writes out everything
	 * before it (and gives the replica a commit to replay). */
	if (!h_exec(h_pg_super(primary),
	            "begin; set local synchronous_commit = on;"
	            " select pg_catalog.pg_logical_emit_message(true, 'h_pg_wait_replay', ''); "
	            "commit"))
		return false;
	char *lsn = h_pg_value(primary, "select pg_current_wal_lsn()");
	if (!lsn)
		return false;
	char *sql =
	        h_strdupf("select coalesce(pg_last_wal_replay_lsn() >= '%s'::pg_lsn, false)", lsn);
	struct h_pg_query_is q = {replica, sql, "t"};
	bool ok = h_wait_until(query_is, &q, timeout);
	if (!ok)
		diag("the replica on port %d did not replay up to %s within %.0f s", replica->port,
		     lsn, timeout);
	free(sql);
	free(lsn);
	return ok;
}

/* The children of `parent`, from /proc; returns how many were stored. */
static int child_pids(pid_t parent, pid_t *out, int max)
{
	int n = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		char path[64], buf[512];
		snprintf(path, sizeof path, "/proc/%ld/stat", pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t r = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (r <= 0)
			continue;
		buf[r] = '\0';
		/* "pid (comm) state ppid ...": comm may hold spaces and ')'. */
		const char *p = strrchr(buf, ')');
		char state;
		long ppid;
		if (p && sscanf(p + 1, " %c %ld", &state, &ppid) == 2 && ppid == (long)parent)
			out[n++] = (pid_t)pid;
	}
	closedir(d);
	return n;
}

void h_pg_pause(struct h_pg *pg, bool stop)
{
	if (pg->pid <= 0)
		return;
	/* Every backend is its own process group (PostgreSQL calls setsid()
	 * in each child), so the postmaster and its children one by one; the
	 * postmaster first, so it forks no new child meanwhile. */
	pid_t kids[512];
	if (stop)
		kill(pg->pid, SIGSTOP);
	int n = child_pids(pg->pid, kids, (int)(sizeof kids / sizeof kids[0]));
	for (int i = 0; i < n; i++)
		kill(kids[i], stop ? SIGSTOP : SIGCONT);
	if (!stop)
		kill(pg->pid, SIGCONT);
}
