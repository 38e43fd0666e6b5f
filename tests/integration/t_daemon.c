/* -d: pgmoat forks into the background once it is ready, writes its pid
 * file, serves clients, reloads on SIGHUP, and on SIGTERM exits and removes
 * the pid file.  A second instance with the same pid file refuses to start,
 * and a daemon whose start-up fails makes the starting command fail. */
#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/harness.h"

static pid_t daemon_pid;

static void kill_daemon(void)
{
	if (daemon_pid > 0 && kill(daemon_pid, 0) == 0)
		kill(daemon_pid, SIGKILL);
}

static bool gone(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	return kill(pid, 0) < 0 && errno == ESRCH;
}

static bool file_gone(void *arg)
{
	return access(arg, F_OK) < 0;
}

static int run_pgmoat(const char *a1, const char *a2, char **out)
{
	const char *argv[] = {h_pgmoat_bin(), a1, a2, NULL};
	return h_run(argv, NULL, 30, out);
}

int main(void)
{
	h_init("t_daemon", 120);
	tap_plan(14);
	struct h_pg *pg = h_pg_start(NULL);
	h_pg_create_app(pg, "app", "app", "app");
	struct h_moat *m = h_moat_new(pg);
	char *pidfile = h_strdupf("%s/pgmoat.pid", h_tmpdir());
	char *logfile = h_strdupf("%s/daemon.log", h_tmpdir());
	char *settings = h_strdupf("pidfile = %s\nlogfile = %s\n", pidfile, logfile);
	if (!h_moat_write_std_ini(m, NULL, settings))
		h_bail("cannot write the configuration");
	atexit(kill_daemon);

	char *out = NULL;
	int rc = run_pgmoat("-d", m->ini, &out);
	is_int(rc, 0, "pgmoat -d returns 0 once the daemon is ready");
	free(out);
	char *text = h_read_file(pidfile, NULL);
	daemon_pid = text ? (pid_t)atol(text) : 0;
	free(text);
	ok(daemon_pid > 0 && kill(daemon_pid, 0) == 0, "the pid file names a live process");

	PGconn *c = h_moat_connect(m, "app", "app", "app");
	char *v = h_connected(c) ? h_value(c, "select 'through the daemon'") : NULL;
	is_str(v, "through the daemon", "the daemon serves clients");
	free(v);

	out = NULL;
	rc = run_pgmoat("-d", m->ini, &out);
	is_int(rc, 1, "a second pgmoat -d with the same pid file fails");
	ok(out && strstr(out, "already running"), "and says pgmoat is already running");
	free(out);

	/* Another pgmoat on the same port (no pid file to stop it): listening
	 * sockets use SO_REUSEPORT, which must not let it share the port. */
	struct h_moat *twin = h_moat_new(pg);
	char *twin_ini = h_strdupf("[databases]\napp = host=127.0.0.1 port=@PGPORT@\n[pgmoat]\n"
	                           "listen_addr = 127.0.0.1\nlisten_port = %d\nauth_type = trust\n"
	                           "unix_socket_dir =\n",
	                           m->port);
	if (!h_moat_write_ini(twin, twin_ini))
		h_bail("cannot write the configuration");
	out = NULL;
	rc = run_pgmoat(twin->ini, NULL, &out);
	ok(rc == 1 && out && strstr(out, "Address already in use"),
	   "a second pgmoat on the daemon's port refuses to start (exit %d)", rc);
	free(out);
	free(twin_ini);

	char *log = h_read_file(logfile, NULL);
	ok(log && strstr(log, "started"), "the daemon logs to logfile");
	free(log);
	kill(daemon_pid, SIGHUP);
	bool reloaded = false;
	for (double t0 = h_now(); !reloaded && h_now() - t0 < 10; h_nap(0.02)) {
		log = h_read_file(logfile, NULL);
		reloaded = log && strstr(log, "configuration reloaded");
		free(log);
	}
	ok(reloaded, "SIGHUP reloads");
	v = h_connected(c) ? h_value(c, "select 'still here'") : NULL;
	is_str(v, "still here", "the client stays connected across the reload");
	free(v);
	PQfinish(c);

	kill(daemon_pid, SIGTERM);
	ok(h_wait_until(gone, &daemon_pid, 20), "SIGTERM stops the daemon");
	ok(h_wait_until(file_gone, pidfile, 5), "and its pid file is removed");
	daemon_pid = 0;

	/* Start-up failure: the port is taken by someone else. */
	struct h_moat *m2 = h_moat_new(pg);
	char *busy = h_strdupf("[databases]\napp = host=127.0.0.1 port=@PGPORT@\n[pgmoat]\n"
	                       "listen_addr = 127.0.0.1\nlisten_port = %d\nauth_type = trust\n"
	                       "unix_socket_dir =\npidfile = %s\n",
	                       pg->port, pidfile);
	if (!h_moat_write_ini(m2, busy))
		h_bail("cannot write the configuration");
	out = NULL;
	rc = run_pgmoat("-d", m2->ini, &out);
	is_int(rc, 1, "pgmoat -d on a port in use exits 1");
	ok(out && strstr(out, "Address already in use"), "and says why on stderr");
	free(out);
	free(busy);
	free(settings);
	free(pidfile);
	free(logfile);
	return h_done();
}
