/* pgmoat: command line, start-up, and the control thread (signals, reload,
 * shutdown). */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "auth/hba.h"
#include "auth/userlist.h"
#include "common/cidr.h"
#include "common/log.h"
#include "common/util.h"
#include "conf/config.h"
#include "pool/pool.h"
#include "proxy/health.h"
#include "proxy/listener.h"
#include "proxy/metrics.h"
#include "proxy/notify.h"
#include "proxy/process.h"
#include "proxy/runtime.h"
#include "proxy/stats.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

static const char usage[] =
        "pgmoat " PACKAGE_VERSION " - PostgreSQL connection pooler and proxy\n"
        "\n"
        "Usage: pgmoat [OPTION]... CONFIG\n"
        "\n"
        "  -d, --daemon     run in the background (writes pidfile if set)\n"
        "  -v, --verbose    more log output (repeat for more)\n"
        "  -q, --quiet      log nothing to stderr but warnings and errors\n"
        "      --check      validate CONFIG and its auth_file, list every error, exit\n"
        "  -V, --version    print the version and exit\n"
        "  -h, --help       print this help and exit\n"
        "\n"
        "Signals: SIGHUP reloads CONFIG and reopens the log file; SIGTERM stops\n"
        "accepting and lets running transactions finish (up to shutdown_timeout);\n"
        "SIGINT closes every connection at once.\n";

struct control {
	struct runtime rt;
	struct health *health;
	struct metrics *metrics;
	const char *config_path;
	int verbose_flags;
	bool quiet;
	ev_signal sighup, sigterm, sigint;
	ev_timer shutdown_timer;
	char *pidfile;
};

static enum log_level level_for(const struct config *cfg, int flags, bool quiet)
{
	if (quiet)
		return LL_WARNING;
	int l = LL_INFO + cfg->verbose + flags;
	return l > LL_TRACE ? LL_TRACE : (enum log_level)l;
}

/* The networks of a list setting (checked when the file was read). */
static bool cidrs_of(const struct strlist *l, struct cidr_list *out, const char *name,
                     struct strlist *errors)
{
	out->v = xcalloc(l->n ? l->n : 1, sizeof(*out->v));
	out->n = 0;
	for (size_t i = 0; i < l->n; i++) {
		char err[160];
		if (!cidr_parse(l->items[i], &out->v[out->n], err, sizeof(err))) {
			strlist_addf(errors, "%s: %s", name, err);
			return false;
		}
		out->n++;
	}
	return true;
}

/* Load CONFIG and what goes with it (auth file, TLS certificates, hba
 * rules); on failure every error was logged. */
static struct snapshot *load_snapshot(const char *path, bool to_stderr,
                                      const struct strlist *overrides)
{
	struct strlist errors, warnings;
	strlist_init(&errors);
	strlist_init(&warnings);
	struct config *cfg = config_load(path, &errors, &warnings);
	struct snapshot *snap = NULL;
	/* The admin console's SETs, on top of the file. */
	for (size_t i = 0; cfg && overrides && i + 1 < overrides->n; i += 2) {
		char err[256];
		if (!config_override(cfg, overrides->items[i], overrides->items[i + 1], err,
		                     sizeof(err)))
			strlist_addf(&errors, "SET %s: %s", overrides->items[i], err);
	}
	if (cfg) {
		snap = snapshot_new(cfg, userlist_load(cfg->auth_file, &errors));
		snap->tls = tls_ctx_new(cfg, &errors);
		if (cfg->auth_hba_file[0])
			snap->hba = hba_load(cfg->auth_hba_file, &errors);
		bool ok = snap->users && snap->tls && (snap->hba || !cfg->auth_hba_file[0]) &&
		        cidrs_of(&cfg->allow, &snap->allow, "allow", &errors) &&
		        cidrs_of(&cfg->proxy_protocol_trusted, &snap->trusted,
		                 "proxy_protocol_trusted", &errors);
		if (!ok) {
			snapshot_unref(snap);
			snap = NULL;
		}
	}
	for (size_t i = 0; i < warnings.n; i++) {
		if (to_stderr)
			fprintf(stderr, "%s\n", warnings.items[i]);
		else
			log_warning("%s", warnings.items[i]);
	}
	for (size_t i = 0; i < errors.n; i++) {
		if (to_stderr)
			fprintf(stderr, "%s\n", errors.items[i]);
		else
			log_error("%s", errors.items[i]);
	}
	strlist_free(&errors);
	strlist_free(&warnings);
	return snap;
}

static void restart_key(const struct setting *s, void *arg)
{
	(void)arg;
	log_warning("setting %s changed: it takes effect only after a restart", s->name);
}

static void reload(struct control *ctl)
{
	notify_reloading();
	log_reopen();
	log_info("reloading %s", ctl->config_path);
	struct runtime *rt0 = &ctl->rt;
	struct strlist overrides;
	pthread_mutex_lock(&rt0->override_lock);
	strlist_copy(&overrides, &rt0->overrides);
	pthread_mutex_unlock(&rt0->override_lock);
	struct snapshot *next = load_snapshot(ctl->config_path, false, &overrides);
	strlist_free(&overrides);
	if (!next) {
		log_error("reload failed: keeping the configuration in use");
		atomic_fetch_add(&ctl->rt.reloads_failed, 1);
		notify_ready("reload failed: keeping the configuration in use");
		return;
	}
	struct runtime *rt = &ctl->rt;
	pthread_mutex_lock(&rt->snap_lock);
	struct snapshot *old = rt->snap;
	rt->snap = next;
	pthread_mutex_unlock(&rt->snap_lock);
	config_changed_restart_keys(old->cfg, next->cfg, restart_key, NULL);
	log_set_level(level_for(next->cfg, ctl->verbose_flags, ctl->quiet));
	pool_registry_reload(next->cfg);
	health_configure(ctl->health, next->cfg, next->users);
	if (rt->stats)
		stats_reconfigure(rt->stats, next->cfg);
	if (ctl->metrics)
		metrics_configure(ctl->metrics, next->cfg);
	workers_reload(rt);
	snapshot_unref(old);
	log_info("configuration reloaded");
	atomic_fetch_add(&rt->reloads_ok, 1);
	notify_ready("configuration reloaded");
}

/* The health checker finished a round: workers pick the view up. */
static void publish_health(struct health_view *v, void *arg)
{
	struct runtime *rt = arg;
	pthread_mutex_lock(&rt->health_lock);
	struct health_view *old = rt->health;
	rt->health = v;
	atomic_fetch_add(&rt->health_gen, 1);
	pthread_mutex_unlock(&rt->health_lock);
	if (old)
		health_view_unref(old);
}

static void begin_shutdown(struct control *ctl, enum shutdown_mode mode)
{
	struct runtime *rt = &ctl->rt;
	int cur = atomic_load(&rt->shutdown);
	if (cur >= (int)mode)
		return;
	atomic_store(&rt->shutdown, (int)mode);
	notify_stopping(mode == SHUTDOWN_WAIT_CLIENTS ? "stopping: waiting for clients to leave"
	                        : mode == SHUTDOWN_GRACEFUL
	                        ? "stopping: waiting for running transactions"
	                        : "stopping: closing every connection");
	/* New clients find no socket; workers close their TCP listeners. */
	if (rt->unix_path[0])
		unlink(rt->unix_path);
	if (mode != SHUTDOWN_FAST) {
		double t = rt->snap->cfg->shutdown_timeout;
		if (mode == SHUTDOWN_WAIT_CLIENTS)
			log_info("SHUTDOWN WAIT_FOR_CLIENTS: no new connections; serving the "
			         "clients "
			         "connected until they leave (up to %g s)",
			         t);
		else
			log_info(
			        "SIGTERM: no new connections; waiting for running transactions (up "
			        "to %g s)",
			        t);
		if (t > 0) {
			ev_timer_set(&ctl->shutdown_timer, t, 0);
			ev_timer_start(rt->control_loop, &ctl->shutdown_timer);
		}
	} else {
		log_info("fast shutdown: closing every connection");
	}
	workers_shutdown(rt);
}

/* The admin console's SHUTDOWN. */
static void shutdown_request_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	struct control *ctl = a->data;
	(void)loop;
	(void)revents;
	begin_shutdown(ctl, (enum shutdown_mode)atomic_load(&ctl->rt.shutdown_request));
}

/* The admin console's SET: reload with it on top of the file. */
static void override_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	(void)loop;
	(void)revents;
	reload(a->data);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct control *ctl = w->data;
	(void)loop;
	(void)revents;
	switch (w->signum) {
	case SIGHUP:
		/* The file is reread as it is: the console's SETs are dropped. */
		pthread_mutex_lock(&ctl->rt.override_lock);
		strlist_free(&ctl->rt.overrides);
		strlist_init(&ctl->rt.overrides);
		pthread_mutex_unlock(&ctl->rt.override_lock);
		reload(ctl);
		break;
	case SIGTERM:
		begin_shutdown(ctl, SHUTDOWN_GRACEFUL);
		break;
	case SIGINT:
		begin_shutdown(ctl, SHUTDOWN_FAST);
		break;
	}
}

static void shutdown_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct control *ctl = t->data;
	(void)loop;
	(void)revents;
	log_info("shutdown_timeout reached: closing the remaining connections");
	begin_shutdown(ctl, SHUTDOWN_FAST);
}

static void worker_done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	struct runtime *rt = container_of(a, struct runtime, control_wake);
	(void)revents;
	if (atomic_load(&rt->workers_done) == rt->n_workers)
		ev_break(loop, EVBREAK_ALL);
}

static int check_config(const char *path)
{
	struct snapshot *s = load_snapshot(path, true, NULL);
	if (!s) {
		fprintf(stderr, "%s: configuration is not valid\n", path);
		return 1;
	}
	printf("%s: configuration is valid (%zu database entries, %zu users in the auth file)\n",
	       path, s->cfg->n_dbs, userlist_count(s->users));
	snapshot_unref(s);
	return 0;
}

/* Descriptors pgmoat may hold besides its clients' (servers, listeners,
 * the console, logs): a margin for the check below, not a limit. */
#define FD_MARGIN 256

/* Every client costs a descriptor: the soft open-file limit is raised to
 * the hard one, and a limit still below max_client_conn plus a margin is
 * warned about (such clients would wait in the kernel's accept queue). */
static void raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t before = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			rl.rlim_cur = before;
	}
	if (rl.rlim_cur != before)
		log_info("open-file limit raised from %llu to %llu", (unsigned long long)before,
		         (unsigned long long)rl.rlim_cur);
	unsigned long long need = (unsigned long long)cfg->max_client_conn + FD_MARGIN;
	if (rl.rlim_cur != RLIM_INFINITY && (unsigned long long)rl.rlim_cur < need)
		log_warning("open-file limit %llu is below max_client_conn (%d) + %d: raise it "
		            "(ulimit -n, LimitNOFILE=)",
		            (unsigned long long)rl.rlim_cur, cfg->max_client_conn, FD_MARGIN);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"daemon", no_argument, NULL, 'd'},
	        {"verbose", no_argument, NULL, 'v'},
	        {"quiet", no_argument, NULL, 'q'},
	        {"check", no_argument, NULL, 'c'},
	        {"version", no_argument, NULL, 'V'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	bool daemon = false, check = false;
	static struct control ctl;
	int opt;
	while ((opt = getopt_long(argc, argv, "dvqVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			daemon = true;
			break;
		case 'v':
			ctl.verbose_flags++;
			break;
		case 'q':
			ctl.quiet = true;
			break;
		case 'c':
			check = true;
			break;
		case 'V':
			printf("pgmoat %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs("Try 'pgmoat --help'.\n", stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fputs("pgmoat: exactly one configuration file is needed\nTry 'pgmoat --help'.\n",
		      stderr);
		return 2;
	}
	/* Absolute: a daemon moves to / and reloads later from there. */
	char abs_path[PATH_MAX];
	ctl.config_path = realpath(argv[optind], abs_path) ? abs_path : argv[optind];
	if (check)
		return check_config(ctl.config_path);

	signal(SIGPIPE, SIG_IGN);
	struct runtime *rt = &ctl.rt;
	pthread_mutex_init(&rt->snap_lock, NULL);
	pthread_mutex_init(&rt->health_lock, NULL);
	pthread_mutex_init(&rt->override_lock, NULL);
	strlist_init(&rt->overrides);
	strlist_init(&rt->disabled);
	rt->unix_fd = -1;
	rt->start_usec = now_usec();
	rt->snap = load_snapshot(ctl.config_path, true, NULL);
	if (!rt->snap)
		return 1;
	rt->throttle = throttle_new(65536);
	const struct config *cfg = rt->snap->cfg;
	log_set_level(level_for(cfg, ctl.verbose_flags, ctl.quiet));
	if (daemon && !process_daemonize())
		return 1;
	if (!log_open(cfg->logfile, cfg->syslog, cfg->syslog_ident, true)) {
		process_ready(false);
		return 1;
	}
	if (!process_write_pidfile(cfg->pidfile)) {
		process_ready(false);
		return 1;
	}
	ctl.pidfile = cfg->pidfile ? xstrdup(cfg->pidfile) : NULL;
	raise_fd_limit(cfg);

	rt->control_loop = ev_default_loop(EVFLAG_AUTO);
	ev_async_init(&rt->control_wake, worker_done_cb);
	ev_async_start(rt->control_loop, &rt->control_wake);
	ev_async_init(&rt->shutdown_wake, shutdown_request_cb);
	rt->shutdown_wake.data = &ctl;
	ev_async_start(rt->control_loop, &rt->shutdown_wake);
	ev_async_init(&rt->override_wake, override_cb);
	rt->override_wake.data = &ctl;
	ev_async_start(rt->control_loop, &rt->override_wake);
	ev_signal_init(&ctl.sighup, signal_cb, SIGHUP);
	ev_signal_init(&ctl.sigterm, signal_cb, SIGTERM);
	ev_signal_init(&ctl.sigint, signal_cb, SIGINT);
	ctl.sighup.data = ctl.sigterm.data = ctl.sigint.data = &ctl;
	ev_signal_start(rt->control_loop, &ctl.sighup);
	ev_signal_start(rt->control_loop, &ctl.sigterm);
	ev_signal_start(rt->control_loop, &ctl.sigint);
	ev_init(&ctl.shutdown_timer, shutdown_timer_cb);
	ctl.shutdown_timer.data = &ctl;

	/* Worker threads must not take the process's signals. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);

	rt->n_workers = cfg->workers;
	pool_registry_init(rt->n_workers);
	/* Before the workers start: SHOW STATS reads it from any worker. */
	rt->stats = stats_new(rt->control_loop, rt->snap->cfg);
	rt->unix_fd = listener_open_unix(cfg, rt->unix_path, sizeof(rt->unix_path));
	bool ok = (rt->unix_fd >= 0 || !cfg->unix_socket_dir || !*cfg->unix_socket_dir) &&
	        workers_start(rt);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!ok) {
		log_fatal("start-up failed");
		process_ready(false);
		process_remove_pidfile(ctl.pidfile);
		return 1;
	}
	log_info("pgmoat %s started: %d workers, pool_mode %s, auth_type %s", PACKAGE_VERSION,
	         rt->n_workers, pool_mode_name((enum pool_mode)cfg->pool_mode),
	         auth_type_name((enum auth_type)cfg->auth_type));
	process_ready(true);
	notify_ready("accepting connections");
	if (daemon)
		log_set_stderr(false);

	ctl.health = health_new(rt->control_loop, publish_health, rt);
	health_configure(ctl.health, rt->snap->cfg, rt->snap->users);
	ctl.metrics = metrics_new(rt);
	metrics_configure(ctl.metrics, rt->snap->cfg);
	ev_run(rt->control_loop, 0);
	health_free(ctl.health);
	metrics_free(ctl.metrics);

	workers_join(rt);
	if (rt->unix_fd >= 0) {
		close(rt->unix_fd);
		if (atomic_load(&rt->shutdown) == SHUTDOWN_NONE)
			unlink(rt->unix_path);
	}
	process_remove_pidfile(ctl.pidfile);
	free(ctl.pidfile);
	stats_free(rt->stats);
	pool_registry_destroy();
	snapshot_unref(rt->snap);
	throttle_free(rt->throttle);
	strlist_free(&rt->overrides);
	strlist_free(&rt->disabled);
	if (rt->health)
		health_view_unref(rt->health);
	log_info("pgmoat stopped");
	log_close();
	return 0;
}
