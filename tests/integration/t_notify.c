/* systemd's notification protocol: with NOTIFY_SOCKET pointing at a
 * datagram socket of the test's, pgmoat sends READY=1 once it accepts
 * connections (from its own pid, as NotifyAccess=main wants), RELOADING=1
 * with MONOTONIC_USEC then READY=1 around a reload (a failed one too),
 * STOPPING=1 on SIGTERM.  An abstract socket name (@...) works, and a
 * socket that is not there does not stop pgmoat.  No PostgreSQL is needed:
 * no client logs in. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/harness.h"

struct note {
	char text[4096];
	pid_t sender;
};

/* A datagram socket bound to `name` (a path, or '@' for an abstract name)
 * that receives the sender's credentials. */
static int notify_socket(const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(name);
	if (n >= sizeof(sa.sun_path))
		h_bail("socket name too long: %s", name);
	memcpy(sa.sun_path, name, n);
	if (name[0] == '@')
		sa.sun_path[0] = '\0';
	else
		unlink(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int on = 1;
	if (fd < 0 ||
	    bind(fd, (struct sockaddr *)&sa,
	         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) < 0)
		h_bail("notify socket %s: %s", name, strerror(errno));
	return fd;
}

/* The next message within `timeout` seconds; false if none came. */
static bool next_note(int fd, double timeout, struct note *out)
{
	memset(out, 0, sizeof(*out));
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;
	do {
		r = poll(&p, 1, (int)(timeout * 1000));
	} while (r < 0 && errno == EINTR);
	if (r <= 0)
		return false;
	union {
		char buf[CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = out->text, .iov_len = sizeof(out->text) - 1};
	struct msghdr mh = {
	        .msg_iov = &iov,
	        .msg_iovlen = 1,
	        .msg_control = control.buf,
	        .msg_controllen = sizeof(control.buf),
	};
	ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0)
		return false;
	out->text[n] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred cred;
			memcpy(&cred, CMSG_DATA(c), sizeof(cred));
			out->sender = cred.pid;
		}
	}
	return true;
}

/* The value of `name` in a message ("NAME=value" lines), or NULL; valid
 * until the next call. */
static const char *note_value(const struct note *n, const char *name)
{
	static char value[1024];
	size_t len = strlen(name);
	for (const char *p = n->text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, len) == 0 && p[len] == '=') {
			const char *v = p + len + 1, *end = strchr(v, '\n');
			size_t vl = end ? (size_t)(end - v) : strlen(v);
			snprintf(value, sizeof(value), "%.*s", (int)vl, v);
			return value;
		}
	}
	return NULL;
}

static bool note_is(const struct note *n, const char *name, const char *want)
{
	const char *v = note_value(n, name);
	return v && strcmp(v, want) == 0;
}

static void show(const char *what, const struct note *n)
{
	if (!n->text[0])
		diag("%s: no message", what);
	else
		h_diag_text("  | ", n->text);
}

static unsigned long long monotonic_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL +
	        (unsigned long long)ts.tv_nsec / 1000ULL;
}

int main(void)
{
	h_init("t_notify", 90);
	tap_plan(19);
	struct note n;

	/* A socket path under the short socket directory. */
	struct h_moat *m = h_moat_new(NULL);
	if (!h_moat_write_std_ini(m, NULL, NULL))
		h_bail("cannot write the configuration");
	char *path = h_strdupf("%s/notify", m->sockdir);
	int fd = notify_socket(path);
	setenv("NOTIFY_SOCKET", path, 1);
	if (!h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	bool got = next_note(fd, 10, &n);
	ok(got && note_is(&n, "READY", "1"), "READY=1 after start-up");
	if (!got || !note_is(&n, "READY", "1"))
		show("start-up", &n);
	ok(h_tcp_accepts(m->port), "pgmoat accepts connections once READY=1 is sent");
	is_int(n.sender, m->pid, "sent by pgmoat's main process (NotifyAccess=main)");
	char *pid = h_strdupf("%d", (int)m->pid);
	ok(note_is(&n, "MAINPID", pid), "MAINPID is its pid");
	free(pid);
	ok(note_value(&n, "STATUS") != NULL, "with a STATUS line (%s)",
	   note_value(&n, "STATUS") ? note_value(&n, "STATUS") : "none");

	/* A reload: RELOADING=1 with the monotonic clock, then READY=1. */
	unsigned long long before = monotonic_usec();
	h_moat_log_mark(m);
	h_moat_signal(m, SIGHUP);
	got = next_note(fd, 10, &n);
	unsigned long long after = monotonic_usec();
	ok(got && note_is(&n, "RELOADING", "1"), "SIGHUP: RELOADING=1");
	if (!got || !note_is(&n, "RELOADING", "1"))
		show("reload", &n);
	const char *usec = note_value(&n, "MONOTONIC_USEC");
	unsigned long long t = usec ? strtoull(usec, NULL, 10) : 0;
	ok(t >= before && t <= after, "MONOTONIC_USEC is CLOCK_MONOTONIC when the reload began");
	got = next_note(fd, 10, &n);
	ok(got && note_is(&n, "READY", "1"), "READY=1 once the reload is done");
	if (!got || !note_is(&n, "READY", "1"))
		show("after the reload", &n);
	ok(h_moat_log_has(m, "configuration reloaded"), "and the configuration was reloaded");

	/* A reload that fails still ends with READY=1: pgmoat runs on. */
	if (!h_moat_write_ini(m, "[pgmoat]\nlisten_port = not a port\n"))
		h_bail("cannot write the configuration");
	h_moat_signal(m, SIGHUP);
	got = next_note(fd, 10, &n);
	ok(got && note_is(&n, "RELOADING", "1"), "a broken file: RELOADING=1");
	got = next_note(fd, 10, &n);
	bool ready = got && note_is(&n, "READY", "1");
	const char *status = note_value(&n, "STATUS"); /* until the next note_value() */
	bool failed = status && strstr(status, "reload failed");
	ok(ready && failed, "then READY=1 with STATUS saying the reload failed");
	if (!ready || !failed)
		show("failed reload", &n);

	/* SIGTERM: STOPPING=1, then pgmoat exits. */
	h_moat_signal(m, SIGTERM);
	got = next_note(fd, 10, &n);
	ok(got && note_is(&n, "STOPPING", "1"), "SIGTERM: STOPPING=1");
	if (!got || !note_is(&n, "STOPPING", "1"))
		show("stop", &n);
	is_int(h_moat_wait_exit(m, 20), 0, "and pgmoat exits with status 0");
	ok(!next_note(fd, 0.2, &n), "nothing more is sent");
	close(fd);
	unlink(path);
	free(path);

	/* An abstract socket name. */
	struct h_moat *a = h_moat_new(NULL);
	if (!h_moat_write_std_ini(a, NULL, NULL))
		h_bail("cannot write the configuration");
	char *abstract = h_strdupf("@pgmoat-t_notify-%d", (int)getpid());
	fd = notify_socket(abstract);
	setenv("NOTIFY_SOCKET", abstract, 1);
	ok(h_moat_start(a, NULL), "pgmoat starts with an abstract NOTIFY_SOCKET");
	got = next_note(fd, 10, &n);
	ok(got && note_is(&n, "READY", "1") && n.sender == a->pid,
	   "READY=1 arrives on the abstract socket");
	if (!got)
		show("abstract", &n);
	h_moat_stop(a);
	close(fd);
	free(abstract);

	/* Nobody listening, or no socket name at all: pgmoat starts anyway. */
	struct h_moat *b = h_moat_new(NULL);
	if (!h_moat_write_std_ini(b, NULL, NULL))
		h_bail("cannot write the configuration");
	char *missing = h_strdupf("%s/no-such-dir/notify", h_tmpdir());
	setenv("NOTIFY_SOCKET", missing, 1);
	ok(h_moat_start(b, NULL), "a NOTIFY_SOCKET that is not there does not stop pgmoat");
	h_moat_stop(b);
	free(missing);
	struct h_moat *c = h_moat_new(NULL);
	if (!h_moat_write_std_ini(c, NULL, NULL))
		h_bail("cannot write the configuration");
	setenv("NOTIFY_SOCKET", "relative/name", 1);
	ok(h_moat_start(c, NULL), "nor does one that is no socket name");
	unsetenv("NOTIFY_SOCKET");
	return h_done();
}
