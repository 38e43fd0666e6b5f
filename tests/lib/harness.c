#include <config.h>

#include "tests/lib/harness.h"
#include "tests/lib/harness_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

struct h_runtime h_rt;

#if defined(__SANITIZE_ADDRESS__)
/* The test programs are not what the sanitizer build checks for leaks. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "detect_leaks=0";
}
#endif

/* --- async-signal-safe pieces (used by the timeout handler too) */

static void xwrite(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, s, n);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return;
		}
		s += r;
		n -= (size_t)r;
	}
}

static void put(const char *s)
{
	xwrite(1, s, strlen(s));
}

double h_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void h_nap(double secs)
{
	struct timespec ts;
	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Waits up to `secs` for child `pid`; true once it is gone. */
bool h_reap_within(pid_t pid, double secs, int *status)
{
	double end = h_now() + secs;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			if (status)
				*status = st;
			return true;
		}
		if (r < 0 && errno != EINTR)
			return true; /* not our child any more */
		if (h_now() >= end)
			return false;
		h_nap(0.01);
	}
}

void h_stop_pid(pid_t pid, int first_sig, double wait1, int *status)
{
	if (pid <= 0)
		return;
	kill(pid, first_sig);
	if (h_reap_within(pid, wait1, status))
		return;
	if (first_sig != SIGQUIT && first_sig != SIGKILL) {
		kill(pid, SIGQUIT);
		if (h_reap_within(pid, 5, status))
			return;
	}
	kill(pid, SIGKILL);
	h_reap_within(pid, 5, status);
}

static void stop_everything(bool hard)
{
	for (int i = 0; i < h_rt.n_moats; i++) {
		struct h_moat *m = h_rt.moats[i];
		if (m->pid > 0) {
			int st = 0;
			h_stop_pid(m->pid, hard ? SIGKILL : SIGINT, 5 * h_rt.slow, &st);
			m->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			m->pid = 0;
		}
	}
	for (int i = 0; i < H_MAX_CHILD; i++) {
		pid_t p = h_rt.children[i];
		if (p > 0) {
			kill(-p, SIGKILL);
			kill(p, SIGKILL);
			h_reap_within(p, 5, NULL);
			h_rt.children[i] = 0;
		}
	}
	for (int i = 0; i < h_rt.n_pgs; i++) {
		struct h_pg *pg = h_rt.pgs[i];
		if (pg->pid > 0) {
			h_stop_pid(pg->pid, hard ? SIGQUIT : SIGINT, hard ? 5 : 30, NULL);
			pg->pid = 0;
		}
	}
}

/* Prints the last `max` bytes of a file as TAP diagnostics. */
static void dump_file(const char *label, const char *path, off_t max)
{
	static char in[4096], out[8192];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t size = lseek(fd, 0, SEEK_END);
	off_t start = size > max ? size - max : 0;
	lseek(fd, start, SEEK_SET);
	put("# ---- ");
	put(label);
	put(" (");
	put(path);
	put(start > 0 ? ", tail)\n" : ")\n");
	bool bol = true, skip = start > 0;
	size_t o = 0;
	ssize_t n;
	while ((n = read(fd, in, sizeof in)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (skip) {
				skip = in[i] != '\n';
				continue;
			}
			if (bol) {
				out[o++] = '#';
				out[o++] = ' ';
			}
			out[o++] = in[i];
			bol = in[i] == '\n';
			if (o > sizeof out - 4) {
				xwrite(1, out, o);
				o = 0;
			}
		}
	}
	if (!bol)
		out[o++] = '\n';
	xwrite(1, out, o);
	close(fd);
}

static void dump_logs(void)
{
	for (int i = 0; i < h_rt.n_moats; i++)
		dump_file("pgmoat log", h_rt.moats[i]->log, 24 * 1024);
	for (int i = 0; i < h_rt.n_pgs; i++)
		dump_file("postgres log", h_rt.pgs[i]->logpath, 8 * 1024);
}

static void remove_dirs(void)
{
	if (h_rt.keep || !h_rt.rm_argv[0])
		return;
	pid_t pid = fork();
	if (pid == 0) {
		execv(h_rt.rm_argv[0], h_rt.rm_argv);
		_exit(127);
	}
	if (pid > 0)
		h_reap_within(pid, 30, NULL);
}

static void on_fatal_signal(int sig)
{
	if (getpid() != h_rt.owner)
		_exit(255);
	put("Bail out! ");
	put(h_rt.name);
	put(sig == SIGALRM ? ": overall test timeout reached\n" : ": interrupted\n");
	stop_everything(true);
	dump_logs();
	remove_dirs();
	_exit(255);
}

static void at_exit(void)
{
	if (getpid() != h_rt.owner)
		return;
	alarm(0);
	for (int i = 0; i < h_rt.n_pgs; i++) {
		if (h_rt.pgs[i]->super) {
			PQfinish(h_rt.pgs[i]->super);
			h_rt.pgs[i]->super = NULL;
		}
	}
	fflush(stdout);
	stop_everything(false);
	if (!h_rt.done || h_rt.failed)
		dump_logs();
	remove_dirs();
}

/* --- utilities */

void h_diag_text(const char *label, const char *text)
{
	const char *p = text ? text : "(null)";
	do {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);
		if (n > 0 || !nl)
			diag("%s%.*s", label, n, p);
		p = nl ? nl + 1 : NULL;
	} while (p && *p);
}

char *h_strdupf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		h_bail("out of memory");
	return s;
}

bool h_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		diag("cannot write %s: %s", path, strerror(errno));
		return false;
	}
	size_t n = strlen(text);
	bool ok = fwrite(text, 1, n, f) == n;
	if (fclose(f) != 0)
		ok = false;
	if (!ok)
		diag("cannot write %s: %s", path, strerror(errno));
	return ok;
}

char *h_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	size_t r;
	while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (cap - n < 2) {
			cap *= 2;
			char *nb = realloc(buf, cap);
			if (!nb)
				free(buf);
			buf = nb;
		}
	}
	fclose(f);
	if (!buf)
		h_bail("out of memory");
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

long h_number_after(const char *text, const char *label)
{
	const char *p = text ? strstr(text, label) : NULL;
	return p ? strtol(p + strlen(label), NULL, 10) : -1;
}

long h_proc_number(pid_t pid, const char *file, const char *label)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	char *text = h_read_file(path, NULL);
	long n = h_number_after(text, label);
	free(text);
	return n;
}

long h_proc_kib(pid_t pid, const char *field)
{
	return h_proc_number(pid, "status", field);
}

int h_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	socklen_t alen = sizeof a;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
		h_bail("cannot find a free port: %s", strerror(errno));
	close(fd);
	return ntohs(a.sin_port);
}

bool h_tcp_accepts(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

bool h_wait_until(bool (*cond)(void *arg), void *arg, double timeout)
{
	double end = h_now() + timeout;
	for (;;) {
		if (cond(arg))
			return true;
		if (h_now() >= end)
			return false;
		h_nap(0.02);
	}
}

void h_md5_init(struct h_md5 *m)
{
	m->ctx = EVP_MD_CTX_new();
	if (!m->ctx || !EVP_DigestInit_ex(m->ctx, EVP_md5(), NULL))
		h_bail("EVP md5 unavailable");
}

void h_md5_update(struct h_md5 *m, const void *data, size_t len)
{
	EVP_DigestUpdate(m->ctx, data, len);
}

void h_md5_final(struct h_md5 *m, char hex[33])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_DigestFinal_ex(m->ctx, d, &n);
	EVP_MD_CTX_free(m->ctx);
	m->ctx = NULL;
	for (unsigned int i = 0; i < n && i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	hex[32] = '\0';
}

void h_md5_hex(const void *data, size_t len, char hex[33])
{
	struct h_md5 m;
	h_md5_init(&m);
	h_md5_update(&m, data, len);
	h_md5_final(&m, hex);
}

/* --- processes */

static void track_child(pid_t pid, bool add)
{
	for (int i = 0; i < H_MAX_CHILD; i++) {
		pid_t expect = add ? 0 : pid;
		if (atomic_compare_exchange_strong(&h_rt.children[i], &expect, add ? pid : 0))
			return;
	}
}

/* fork + exec with output appended to `out_path`, stdin from /dev/null, in
 * its own process group, as the PostgreSQL user if `as_pg`. */
pid_t h_spawn(const char *const argv[], const char *const env[], const char *out_path, bool as_pg,
              const char *cwd)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	setpgid(0, 0);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGALRM, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	int in = open("/dev/null", O_RDONLY);
	int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (in < 0 || out < 0)
		_exit(126);
	dup2(in, 0);
	dup2(out, 1);
	dup2(out, 2);
	if (close_range(3, ~0U, 0) < 0) {
		for (int fd = 3; fd < 4096; fd++)
			close(fd);
	}
	if (cwd && chdir(cwd) < 0)
		_exit(126);
	if (as_pg && h_rt.drop) {
		if (setgroups(1, &h_rt.pg_gid) < 0 || setgid(h_rt.pg_gid) < 0 ||
		    setuid(h_rt.pg_uid) < 0)
			_exit(126);
	}
	for (int i = 0; env && env[i]; i++)
		putenv((char *)env[i]);
	if (strchr(argv[0], '/'))
		execv(argv[0], (char *const *)argv);
	else
		execvp(argv[0], (char *const *)argv);
	dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

pid_t h_start_bg(const char *const argv[], const char *out_path)
{
	pid_t pid = h_spawn(argv, NULL, out_path, false, NULL);
	if (pid > 0)
		track_child(pid, true);
	return pid;
}

void h_stop_bg(pid_t pid)
{
	if (pid <= 0)
		return;
	h_stop_pid(pid, SIGTERM, 5, NULL);
	track_child(pid, false);
}

int h_status_code(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int h_run_as(const char *const argv[], const char *const env[], double timeout, char **output,
             bool as_pg, const char *cwd)
{
	char *out = h_strdupf("%s/run.%d.out", h_rt.base, atomic_fetch_add(&h_rt.run_seq, 1));
	pid_t pid = h_spawn(argv, env, out, as_pg, cwd);
	int rc = -1, st;
	if (pid < 0) {
		diag("fork: %s", strerror(errno));
	} else {
		track_child(pid, true);
		if (h_reap_within(pid, timeout, &st)) {
			rc = h_status_code(st);
		} else {
			diag("%s did not finish within %.0f s; killed", argv[0], timeout);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			h_reap_within(pid, 5, NULL);
		}
		track_child(pid, false);
	}
	if (output) {
		*output = h_read_file(out, NULL);
		if (!*output)
			*output = strdup("");
	}
	unlink(out);
	free(out);
	return rc;
}

int h_run(const char *const argv[], const char *const env[], double timeout, char **output)
{
	return h_run_as(argv, env, timeout, output, false, NULL);
}

static void *run_async_main(void *arg)
{
	struct h_run_async *r = arg;
	r->rc = h_run(r->argv, r->env, r->timeout, &r->out);
	atomic_store(&r->done, true);
	return NULL;
}

void h_run_async_start(struct h_run_async *r)
{
	r->rc = -1;
	r->out = NULL;
	atomic_init(&r->done, false);
	int err = pthread_create(&r->thread, NULL, run_async_main, r);
	if (err != 0)
		h_bail("pthread_create for %s: %s", r->argv[0], strerror(err));
}

int h_run_async_wait(struct h_run_async *r)
{
	pthread_join(r->thread, NULL);
	return r->rc;
}

/* --- set-up */

const char *h_tmpdir(void)
{
	return h_rt.base;
}

const char *h_pgmoat_bin(void)
{
	return h_rt.bin;
}

const char *h_srcdir(void)
{
	return h_rt.srcdir;
}

double h_slow(void)
{
	return h_rt.slow >= 1 ? h_rt.slow : 1;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && *v ? v : def;
}

/* Whether the PostgreSQL user can write into `dir`. */
static bool pg_user_can_use(const char *dir)
{
	if (!h_rt.drop)
		return true;
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(1, &h_rt.pg_gid) < 0 || setgid(h_rt.pg_gid) < 0 ||
		    setuid(h_rt.pg_uid) < 0)
			_exit(1);
		_exit(access(dir, R_OK | W_OK | X_OK) == 0 ? 0 : 1);
	}
	int st = 1;
	if (pid < 0 || !h_reap_within(pid, 10, &st))
		return false;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void make_dirs(void)
{
	char *root = h_strdupf("%s/tests/tmp", h_rt.builddir);
	char *tests = h_strdupf("%s/tests", h_rt.builddir);
	mkdir(tests, 0755);
	mkdir(root, 0755);
	char *base = h_strdupf("%s/%s.XXXXXX", root, h_rt.name);
	if (mkdtemp(base) && chmod(base, 0755) == 0 &&
	    (!h_rt.drop || chown(base, h_rt.pg_uid, h_rt.pg_gid) == 0) && pg_user_can_use(base)) {
		h_rt.base = base;
	} else {
		rmdir(base);
		free(base);
		base = h_strdupf("/tmp/pgmoat-%s.XXXXXX", h_rt.name);
		if (!mkdtemp(base) || chmod(base, 0755) < 0 ||
		    (h_rt.drop && chown(base, h_rt.pg_uid, h_rt.pg_gid) < 0))
			h_bail("cannot make a temp dir: %s", strerror(errno));
		h_rt.base = base;
	}
	h_rt.sockbase = strdup("/tmp/pgmoat-s.XXXXXX");
	if (!mkdtemp(h_rt.sockbase) || chmod(h_rt.sockbase, 0755) < 0)
		h_bail("cannot make a socket dir: %s", strerror(errno));
	h_rt.rm_argv[0] = "/bin/rm";
	h_rt.rm_argv[1] = "-rf";
	h_rt.rm_argv[2] = h_rt.base;
	h_rt.rm_argv[3] = h_rt.sockbase;
	h_rt.rm_argv[4] = NULL;
	free(root);
	free(tests);
}

/* PGMOAT_TEST_WRAPPER split at blanks into h_rt.wrapper (no quoting). */
static void parse_wrapper(const char *text)
{
	char *copy = strdup(text);
	size_t n = 0;
	for (char *save = NULL, *w = strtok_r(copy, " \t\n", &save); w;
	     w = strtok_r(NULL, " \t\n", &save)) {
		if (n + 1 >= sizeof h_rt.wrapper / sizeof h_rt.wrapper[0]) {
			fprintf(stderr, "PGMOAT_TEST_WRAPPER: more than %zu words\n", n);
			exit(99);
		}
		h_rt.wrapper[n++] = w;
	}
	h_rt.wrapper[n] = NULL;
}

void h_init(const char *name, int timeout_s)
{
	snprintf(h_rt.name, sizeof h_rt.name, "%s", name);
	h_rt.owner = getpid();
	h_rt.builddir = env_or("PGMOAT_BUILDDIR", ".");
	h_rt.srcdir = env_or("PGMOAT_SRCDIR", ".");
	h_rt.bin = env_or("PGMOAT_BIN", NULL);
	if (!h_rt.bin)
		h_rt.bin = h_strdupf("%s/pgmoat", h_rt.builddir);
	h_rt.keep = getenv("PGMOAT_KEEP_TMP") && strcmp(getenv("PGMOAT_KEEP_TMP"), "0") != 0;
	parse_wrapper(env_or("PGMOAT_TEST_WRAPPER", ""));
	h_rt.slow = atof(env_or("PGMOAT_TEST_SLOW", h_rt.wrapper[0] ? "5" : "1"));
	if (!(h_rt.slow >= 1 && h_rt.slow <= 1000))
		h_rt.slow = 1;
	timeout_s = (int)(timeout_s * h_rt.slow);
	int t = atoi(env_or("PGMOAT_TEST_TIMEOUT", "0"));
	if (t > 0)
		timeout_s = t;
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");
		if (pw) {
			h_rt.drop = true;
			h_rt.pg_uid = pw->pw_uid;
			h_rt.pg_gid = pw->pw_gid;
		} else {
			h_rt.no_pg_user = true;
		}
	} else {
		h_rt.pg_uid = geteuid();
		h_rt.pg_gid = getegid();
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_fatal_signal;
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	make_dirs();
	atexit(at_exit);
	alarm((unsigned)timeout_s);
	if (access(h_rt.bin, X_OK) != 0)
		h_bail("pgmoat binary '%s' not found (set PGMOAT_BIN, or run through make check)",
		       h_rt.bin);
}

/* Whether pgmoat's log holds a sanitizer report (ASan, UBSan, TSan) or a
 * valgrind error: "ERROR SUMMARY: N errors" with N > 0 at exit, or an error
 * marker (scripts/check runs valgrind with
 * --error-markers=VALGRIND-ERROR-BEGIN,VALGRIND-ERROR-END, so an error
 * counts even when pgmoat never gets to its summary). */
static bool sanitizer_report(const char *log)
{
	char *text = h_read_file(log, NULL);
	if (!text)
		return false;
	bool found = strstr(text, "Sanitizer") || strstr(text, "runtime error:") ||
	        strstr(text, "VALGRIND-ERROR-BEGIN");
	for (const char *p = text; !found && (p = strstr(p, "ERROR SUMMARY: ")); p++)
		found = p[15] >= '1' && p[15] <= '9';
	free(text);
	return found;
}

int h_done(void)
{
	bool clean = true;
	for (int i = 0; i < h_rt.n_moats; i++) {
		struct h_moat *m = h_rt.moats[i];
		if (m->pid > 0) {
			int st = h_moat_stop(m);
			if (st != 0) {
				diag("pgmoat%d exited with status %d on SIGINT", i, st);
				clean = false;
			}
		}
		if (sanitizer_report(m->log)) {
			diag("pgmoat%d logged a sanitizer report", i);
			clean = false;
		}
	}
	if (h_rt.n_moats > 0)
		ok(clean,
		   "every pgmoat stops cleanly on SIGINT and logged no sanitizer or valgrind "
		   "report");
	int rc = tap_done();
	h_rt.done = true;
	h_rt.failed = rc != 0;
	return rc;
}

void h_bail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fflush(stdout);
	alarm(0);
	stop_everything(false);
	dump_logs();
	h_rt.done = true;
	h_rt.failed = false; /* logs already printed */
	tap_bail("%s: %s", h_rt.name, msg);
}

/* --- libpq helpers */

PGconn *h_connect(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	if (!c)
		h_bail("out of memory");
	if (PQstatus(c) != CONNECTION_OK)
		h_diag_text("connection failed: ", PQerrorMessage(c));
	return c;
}

bool h_connected(const PGconn *c)
{
	return c && PQstatus(c) == CONNECTION_OK;
}

const char *h_result_state(const PGresult *r)
{
	const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

bool h_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
	if (!ok) {
		diag("'%s' failed:", sql);
		h_diag_text("  ", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	}
	PQclear(r);
	return ok;
}

char *h_value(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	char *v = NULL;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0)
		v = strdup(PQgetvalue(r, 0, 0));
	else if (PQresultStatus(r) == PGRES_TUPLES_OK)
		diag("'%s' returned no rows", sql);
	else {
		diag("'%s' failed:", sql);
		h_diag_text("  ", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	}
	PQclear(r);
	return v;
}

char *h_error_state(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	char *s;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY)
		s = strdup("");
	else if (*h_result_state(r))
		s = strdup(h_result_state(r));
	else
		s = strdup("none");
	PQclear(r);
	/* Drain anything left (multi-statement strings). */
	while ((r = PQgetResult(c)) != NULL)
		PQclear(r);
	return s;
}

int h_backend_pid(PGconn *c)
{
	char *v = h_value(c, "select pg_backend_pid()");
	int pid = v ? atoi(v) : 0;
	free(v);
	return pid;
}

/* --- asynchronous libpq client */

void h_async_start(struct h_async *a, const char *conninfo, const char *query)
{
	memset(a, 0, sizeof *a);
	a->query = strdup(query);
	a->started = h_now();
	a->conn = PQconnectStart(conninfo);
	a->poll = PGRES_POLLING_WRITING;
	a->state = H_ASYNC_CONNECTING;
	if (!a->conn || PQstatus(a->conn) == CONNECTION_BAD) {
		a->state = H_ASYNC_FAILED;
		a->error = strdup(a->conn ? PQerrorMessage(a->conn) : "out of memory");
		a->finished = h_now();
	}
}

static void async_fail(struct h_async *a, const char *msg)
{
	a->state = H_ASYNC_FAILED;
	if (!a->error)
		a->error = strdup(msg);
	a->finished = h_now();
}

/* Waits until the socket is ready for `events` or `end`; true if ready. */
static bool wait_fd(int fd, short events, double end)
{
	double left = end - h_now();
	if (left < 0)
		left = 0;
	struct pollfd p = {.fd = fd, .events = events};
	int r = poll(&p, 1, (int)(left * 1000));
	return r > 0;
}

bool h_async_wait(struct h_async *a, double timeout)
{
	double end = h_now() + timeout;
	for (;;) {
		if (a->state == H_ASYNC_DONE || a->state == H_ASYNC_FAILED)
			return true;
		if (a->state == H_ASYNC_CONNECTING) {
			if (a->poll == PGRES_POLLING_OK) {
				if (!PQsendQuery(a->conn, a->query)) {
					async_fail(a, PQerrorMessage(a->conn));
					continue;
				}
				a->state = H_ASYNC_RUNNING;
				continue;
			}
			if (a->poll == PGRES_POLLING_FAILED) {
				async_fail(a, PQerrorMessage(a->conn));
				continue;
			}
			short ev = a->poll == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			if (wait_fd(PQsocket(a->conn), ev, end))
				a->poll = PQconnectPoll(a->conn);
			else if (h_now() >= end)
				return false;
			continue;
		}
		/* RUNNING */
		if (!PQconsumeInput(a->conn)) {
			async_fail(a, PQerrorMessage(a->conn));
			continue;
		}
		while (a->state == H_ASYNC_RUNNING && !PQisBusy(a->conn)) {
			PGresult *r = PQgetResult(a->conn);
			if (!r) {
				a->state = H_ASYNC_DONE;
				a->finished = h_now();
				break;
			}
			ExecStatusType st = PQresultStatus(r);
			if (st == PGRES_TUPLES_OK && !a->value && PQntuples(r) > 0 &&
			    PQnfields(r) > 0)
				a->value = strdup(PQgetvalue(r, 0, 0));
			if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR ||
			    st == PGRES_BAD_RESPONSE) {
				if (!a->error) {
					a->error = strdup(PQresultErrorMessage(r));
					snprintf(a->sqlstate, sizeof a->sqlstate, "%s",
					         h_result_state(r));
				}
			}
			PQclear(r);
		}
		if (a->state != H_ASYNC_RUNNING)
			continue;
		if (!wait_fd(PQsocket(a->conn), POLLIN, end) && h_now() >= end)
			return false;
	}
}

bool h_async_ok(const struct h_async *a)
{
	return a->state == H_ASYNC_DONE && !a->error;
}

void h_async_close(struct h_async *a)
{
	if (a->conn)
		PQfinish(a->conn);
	free(a->query);
	free(a->value);
	free(a->error);
	memset(a, 0, sizeof *a);
}

char *h_result_text(PGconn *c, PGresult *r)
{
	char *out;
	switch (PQresultStatus(r)) {
	case PGRES_COMMAND_OK:
		out = h_strdupf("ok");
		break;
	case PGRES_TUPLES_OK:
		out = h_strdupf("ok %s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "(no rows)");
		break;
	default: {
		const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		out = h_strdupf("%s %s", st ? st : "none", msg ? msg : PQerrorMessage(c));
		break;
	}
	}
	PQclear(r);
	return out;
}
