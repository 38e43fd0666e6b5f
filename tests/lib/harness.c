#include <config.h>

#include "tests/lib/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
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

#define H_MAX_PG 4
#define H_MAX_MOAT 8
#define H_MAX_CHILD 8

/* The harness's one runtime struct.  The cleanup reads it from a signal
 * handler, so it only ever grows while a test runs. */
static struct {
	char name[64];
	const char *bin;
	const char *srcdir;
	const char *builddir;
	char *base;     /* the test's temp dir */
	char *sockbase; /* short dir for Unix sockets */
	pid_t owner;
	bool keep;
	bool done;
	bool failed;
	bool drop;    /* run PostgreSQL as another user */
	bool no_pg_user;
	uid_t pg_uid;
	gid_t pg_gid;
	char *pg_bindir;
	struct h_pg *pgs[H_MAX_PG];
	int n_pgs;
	struct h_moat *moats[H_MAX_MOAT];
	int n_moats;
	volatile pid_t children[H_MAX_CHILD];
	char *rm_argv[5];
	int run_seq;
	int userlist_written;
} H;

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
static bool reap_within(pid_t pid, double secs, int *status)
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

static void stop_pid(pid_t pid, int first_sig, double wait1, int *status)
{
	if (pid <= 0)
		return;
	kill(pid, first_sig);
	if (reap_within(pid, wait1, status))
		return;
	if (first_sig != SIGQUIT && first_sig != SIGKILL) {
		kill(pid, SIGQUIT);
		if (reap_within(pid, 5, status))
			return;
	}
	kill(pid, SIGKILL);
	reap_within(pid, 5, status);
}

static void stop_everything(bool hard)
{
	for (int i = 0; i < H.n_moats; i++) {
		struct h_moat *m = H.moats[i];
		if (m->pid > 0) {
			int st = 0;
			stop_pid(m->pid, hard ? SIGKILL : SIGINT, 5, &st);
			m->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			m->pid = 0;
		}
	}
	for (int i = 0; i < H_MAX_CHILD; i++) {
		pid_t p = H.children[i];
		if (p > 0) {
			kill(-p, SIGKILL);
			kill(p, SIGKILL);
			reap_within(p, 5, NULL);
			H.children[i] = 0;
		}
	}
	for (int i = 0; i < H.n_pgs; i++) {
		struct h_pg *pg = H.pgs[i];
		if (pg->pid > 0) {
			stop_pid(pg->pid, hard ? SIGQUIT : SIGINT, hard ? 5 : 30, NULL);
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
	for (int i = 0; i < H.n_moats; i++)
		dump_file("pgmoat log", H.moats[i]->log, 24 * 1024);
	for (int i = 0; i < H.n_pgs; i++)
		dump_file("postgres log", H.pgs[i]->logpath, 8 * 1024);
}

static void remove_dirs(void)
{
	if (H.keep || !H.rm_argv[0])
		return;
	pid_t pid = fork();
	if (pid == 0) {
		execv(H.rm_argv[0], H.rm_argv);
		_exit(127);
	}
	if (pid > 0)
		reap_within(pid, 30, NULL);
}

static void on_fatal_signal(int sig)
{
	if (getpid() != H.owner)
		_exit(255);
	put("Bail out! ");
	put(H.name);
	put(sig == SIGALRM ? ": overall test timeout reached\n" : ": interrupted\n");
	stop_everything(true);
	dump_logs();
	remove_dirs();
	_exit(255);
}

static void at_exit(void)
{
	if (getpid() != H.owner)
		return;
	alarm(0);
	for (int i = 0; i < H.n_pgs; i++) {
		if (H.pgs[i]->super) {
			PQfinish(H.pgs[i]->super);
			H.pgs[i]->super = NULL;
		}
	}
	fflush(stdout);
	stop_everything(false);
	if (!H.done || H.failed)
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
		if (add ? H.children[i] == 0 : H.children[i] == pid) {
			H.children[i] = add ? pid : 0;
			return;
		}
	}
}

/* fork + exec with output appended to `out_path`, stdin from /dev/null, in
 * its own process group, as the PostgreSQL user if `as_pg`. */
static pid_t spawn(const char *const argv[], const char *const env[], const char *out_path,
		   bool as_pg, const char *cwd)
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
	if (as_pg && H.drop) {
		if (setgroups(1, &H.pg_gid) < 0 || setgid(H.pg_gid) < 0 || setuid(H.pg_uid) < 0)
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

static int status_code(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run_as(const char *const argv[], const char *const env[], double timeout,
		  char **output, bool as_pg, const char *cwd)
{
	char *out = h_strdupf("%s/run.%d.out", H.base, H.run_seq++);
	pid_t pid = spawn(argv, env, out, as_pg, cwd);
	int rc = -1, st;
	if (pid < 0) {
		diag("fork: %s", strerror(errno));
	} else {
		track_child(pid, true);
		if (reap_within(pid, timeout, &st)) {
			rc = status_code(st);
		} else {
			diag("%s did not finish within %.0f s; killed", argv[0], timeout);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			reap_within(pid, 5, NULL);
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
	return run_as(argv, env, timeout, output, false, NULL);
}

/* --- set-up */

const char *h_tmpdir(void)
{
	return H.base;
}

const char *h_pgmoat_bin(void)
{
	return H.bin;
}

const char *h_srcdir(void)
{
	return H.srcdir;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && *v ? v : def;
}

/* Whether the PostgreSQL user can write into `dir`. */
static bool pg_user_can_use(const char *dir)
{
	if (!H.drop)
		return true;
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(1, &H.pg_gid) < 0 || setgid(H.pg_gid) < 0 || setuid(H.pg_uid) < 0)
			_exit(1);
		_exit(access(dir, R_OK | W_OK | X_OK) == 0 ? 0 : 1);
	}
	int st = 1;
	if (pid < 0 || !reap_within(pid, 10, &st))
		return false;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void make_dirs(void)
{
	char *root = h_strdupf("%s/tests/tmp", H.builddir);
	char *tests = h_strdupf("%s/tests", H.builddir);
	mkdir(tests, 0755);
	mkdir(root, 0755);
	char *base = h_strdupf("%s/%s.XXXXXX", root, H.name);
	if (mkdtemp(base) && chmod(base, 0755) == 0 &&
	    (!H.drop || chown(base, H.pg_uid, H.pg_gid) == 0) && pg_user_can_use(base)) {
		H.base = base;
	} else {
		rmdir(base);
		free(base);
		base = h_strdupf("/tmp/pgmoat-%s.XXXXXX", H.name);
		if (!mkdtemp(base) || chmod(base, 0755) < 0 ||
		    (H.drop && chown(base, H.pg_uid, H.pg_gid) < 0))
			h_bail("cannot make a temp dir: %s", strerror(errno));
		H.base = base;
	}
	H.sockbase = strdup("/tmp/pgmoat-s.XXXXXX");
	if (!mkdtemp(H.sockbase) || chmod(H.sockbase, 0755) < 0)
		h_bail("cannot make a socket dir: %s", strerror(errno));
	H.rm_argv[0] = "/bin/rm";
	H.rm_argv[1] = "-rf";
	H.rm_argv[2] = H.base;
	H.rm_argv[3] = H.sockbase;
	H.rm_argv[4] = NULL;
	free(root);
	free(tests);
}

void h_init(const char *name, int timeout_s)
{
	snprintf(H.name, sizeof H.name, "%s", name);
	H.owner = getpid();
	H.builddir = env_or("PGMOAT_BUILDDIR", ".");
	H.srcdir = env_or("PGMOAT_SRCDIR", ".");
	H.bin = env_or("PGMOAT_BIN", NULL);
	if (!H.bin)
		H.bin = h_strdupf("%s/pgmoat", H.builddir);
	H.keep = getenv("PGMOAT_KEEP_TMP") && strcmp(getenv("PGMOAT_KEEP_TMP"), "0") != 0;
	int t = atoi(env_or("PGMOAT_TEST_TIMEOUT", "0"));
	if (t > 0)
		timeout_s = t;
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");
		if (pw) {
			H.drop = true;
			H.pg_uid = pw->pw_uid;
			H.pg_gid = pw->pw_gid;
		} else {
			H.no_pg_user = true;
		}
	} else {
		H.pg_uid = geteuid();
		H.pg_gid = getegid();
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
	if (access(H.bin, X_OK) != 0)
		h_bail("pgmoat binary '%s' not found (set PGMOAT_BIN, or run through make check)",
		       H.bin);
}

int h_done(void)
{
	int rc = tap_done();
	H.done = true;
	H.failed = rc != 0;
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
	H.done = true;
	H.failed = false; /* logs already printed */
	tap_bail("%s: %s", H.name, msg);
}

/* --- PostgreSQL */

static void find_pg_bindir(void)
{
	const char *env = getenv("PGMOAT_PG_BINDIR");
	if (env && *env) {
		H.pg_bindir = strdup(env);
		return;
	}
	for (int v = 30; v >= 12; v--) {
		char *d = h_strdupf("/usr/lib/postgresql/%d/bin", v);
		char *p = h_strdupf("%s/postgres", d);
		bool ok = access(p, X_OK) == 0;
		free(p);
		if (ok) {
			H.pg_bindir = d;
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
			H.pg_bindir = strdup(dir);
			break;
		}
	}
	free(copy);
}

static char *pg_bin(const char *prog)
{
	return h_strdupf("%s/%s", H.pg_bindir, prog);
}

static bool copy_tree(const char *from, const char *to)
{
	const char *argv[] = {"cp", "-a", from, to, NULL};
	char *out = NULL;
	int rc = h_run(argv, NULL, 120, &out);
	if (rc != 0)
	{
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

	char *tmpl = h_strdupf("%s/tests/tmp/pgtemplate-%s-%u", H.builddir, ver, (unsigned)H.pg_uid);
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
		const char *argv[] = {initdb, "-D", pg->datadir, "-N", "-U", "postgres", "-A", "trust",
				      "-E", "UTF8", "--locale=C", "--no-instructions", NULL};
		const char *env[] = {"LC_ALL=C", NULL};
		char *out = NULL;
		int rc = run_as(argv, env, 120, &out, true, H.base);
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
	if (H.drop && (chown(hba_path, H.pg_uid, H.pg_gid) < 0 || chown(conf_path, H.pg_uid, H.pg_gid) < 0))
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
	const char *argv[] = {postgres,   "-D", pg->datadir, "-p", port, "-k", pg->sockdir, "-c",
			      "listen_addresses=127.0.0.1", NULL};
	const char *env[] = {"LC_ALL=C", NULL};
	size_t log_start = 0;
	struct stat st;
	if (stat(pg->logpath, &st) == 0)
		log_start = (size_t)st.st_size;
	pg->pid = spawn(argv, env, pg->logpath, true, H.base);
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
			stop_pid(pg->pid, SIGQUIT, 5, NULL);
		pg->pid = 0;
	}
	return ok;
}

struct h_pg *h_pg_start(const struct h_pg_opts *opts)
{
	if (H.no_pg_user)
		tap_skip_all("running as root and there is no 'postgres' OS user to run PostgreSQL");
	if (!H.pg_bindir)
		find_pg_bindir();
	if (!H.pg_bindir)
		tap_skip_all("PostgreSQL server binaries not found (set PGMOAT_PG_BINDIR)");
	if (H.n_pgs >= H_MAX_PG)
		h_bail("too many clusters");
	struct h_pg *pg = calloc(1, sizeof *pg);
	pg->index = H.n_pgs;
	pg->datadir = h_strdupf("%s/pg%d", H.base, pg->index);
	pg->logpath = h_strdupf("%s/pg%d.log", H.base, pg->index);
	pg->sockdir = h_strdupf("%s/pg%d", H.sockbase, pg->index);
	if (mkdir(pg->sockdir, 0700) < 0 || (H.drop && chown(pg->sockdir, H.pg_uid, H.pg_gid) < 0))
		h_bail("cannot make %s: %s", pg->sockdir, strerror(errno));
	H.pgs[H.n_pgs++] = pg;

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
	stop_pid(pg->pid, immediate ? SIGQUIT : SIGINT, 30, NULL);
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
	char *ci = h_strdupf("host=%s port=%d user=postgres dbname=postgres", pg->sockdir, pg->port);
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

/* --- pgmoat */

struct h_moat *h_moat_new(struct h_pg *pg)
{
	if (H.n_moats >= H_MAX_MOAT)
		h_bail("too many pgmoat instances");
	struct h_moat *m = calloc(1, sizeof *m);
	m->index = H.n_moats;
	m->pg = pg;
	m->port = h_free_port();
	m->ini = h_strdupf("%s/pgmoat%d.ini", H.base, m->index);
	m->log = h_strdupf("%s/pgmoat%d.log", H.base, m->index);
	m->authfile = h_strdupf("%s/userlist%d.txt", H.base, m->index);
	m->sockdir = h_strdupf("%s/moat%d", H.sockbase, m->index);
	if (mkdir(m->sockdir, 0755) < 0)
		h_bail("cannot make %s: %s", m->sockdir, strerror(errno));
	H.moats[H.n_moats++] = m;
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
			fputs(H.base, f);
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
	H.userlist_written |= 1 << m->index;
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
	if (ok && !(H.userlist_written & (1 << m->index)))
		ok = h_moat_write_userlist(m, "\"app\" \"app\"\n");
	return ok;
}

static size_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
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
	double end = h_now() + timeout;
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

bool h_moat_start(struct h_moat *m, const char *const args[])
{
	const char *argv[16];
	for (int attempt = 0; attempt < 3; attempt++) {
		size_t n = 0;
		argv[n++] = H.bin;
		for (size_t i = 0; args && args[i] && n < 14; i++)
			argv[n++] = args[i];
		argv[n++] = m->ini;
		argv[n] = NULL;
		h_moat_log_mark(m);
		m->pid = spawn(argv, NULL, m->log, false, NULL);
		if (m->pid < 0) {
			m->pid = 0;
			diag("fork: %s", strerror(errno));
			return false;
		}
		double end = h_now() + 20;
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
				diag("pgmoat does not accept connections on port %d after 20 s", m->port);
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
	m->status = r == m->pid ? status_code(st) : -1;
	m->pid = 0;
	return false;
}

int h_moat_wait_exit(struct h_moat *m, double timeout)
{
	if (m->pid <= 0)
		return m->status;
	int st;
	if (!reap_within(m->pid, timeout, &st))
		return -1;
	m->status = status_code(st);
	m->pid = 0;
	return m->status;
}

int h_moat_stop(struct h_moat *m)
{
	if (m->pid <= 0)
		return m->status;
	int st = 0;
	stop_pid(m->pid, SIGINT, 10, &st);
	m->status = status_code(st);
	m->pid = 0;
	return m->status;
}

static char *conninfo(const char *host, int port, const char *user, const char *db,
		      const char *password)
{
	return h_strdupf("host=%s port=%d dbname=%s user=%s%s%s sslmode=disable gssencmode=disable"
			 " connect_timeout=10",
			 host, port, db, user, password ? " password=" : "", password ? password : "");
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
			if (st == PGRES_TUPLES_OK && !a->value && PQntuples(r) > 0 && PQnfields(r) > 0)
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
