/* The process: one runtime struct, the current configuration snapshot, and
 * the workers. */
#ifndef PGMOAT_PROXY_RUNTIME_H
#define PGMOAT_PROXY_RUNTIME_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/hba.h"
#include "auth/throttle.h"
#include "auth/userlist.h"
#include "common/cidr.h"
#include "conf/config.h"
#include "proxy/tls.h"

/* What workers read: a config and what was loaded with it (the auth file,
 * TLS contexts).  Replaced whole on reload; freed when the last worker
 * lets go. */
struct snapshot {
	struct config *cfg;
	struct userlist *users;
	struct tls_ctx *tls;
	struct hba *hba; /* auth_hba_file, or NULL */
	struct cidr_list allow; /* empty: any address */
	struct cidr_list trusted; /* proxy_protocol_trusted */
	atomic_int refs;
};

struct snapshot *snapshot_new(struct config *cfg, struct userlist *users);
void snapshot_ref(struct snapshot *s);
void snapshot_unref(struct snapshot *s);

/* How pgmoat stops, mildest first: WAIT_CLIENTS (the console's SHUTDOWN
 * WAIT_FOR_CLIENTS: stop accepting, serve the clients it has until they
 * leave), GRACEFUL (SIGTERM: let running transactions finish, then close
 * clients), FAST (SIGINT: close everything).  shutdown_timeout escalates
 * the first two to FAST. */
enum shutdown_mode { SHUTDOWN_NONE, SHUTDOWN_WAIT_CLIENTS, SHUTDOWN_GRACEFUL, SHUTDOWN_FAST };

struct worker;

struct runtime {
	int n_workers;
	struct worker *workers;

	pthread_mutex_t snap_lock;
	struct snapshot *snap; /* current; take with runtime_snapshot() */

	atomic_int n_clients; /* for max_client_conn */
	/* The health checker's latest view (proxy/health.h), guarded by
	 * health_lock; health_gen lets workers notice a new one cheaply. */
	pthread_mutex_t health_lock;
	struct health_view *health;
	atomic_uint_fast64_t health_gen;
	struct throttle *throttle; /* failed logins per address */
	struct stats *stats; /* averages per database (proxy/stats.h) */
	atomic_uint_fast64_t reloads_ok, reloads_failed;
	atomic_int shutdown; /* enum shutdown_mode */
	atomic_int workers_done;

	int unix_fd; /* shared by all workers, -1 if none */
	char unix_path[256];
	uint64_t start_usec;

	/* The control thread (main): signals, reload, shutdown timer. */
	struct ev_loop *control_loop;
	ev_async control_wake; /* a worker finished */
	/* The admin console's SETs: "key", "value" pairs applied on top of the
	 * file at each reload until SIGHUP/RELOAD rereads it. */
	pthread_mutex_t override_lock;
	struct strlist overrides;
	struct strlist disabled; /* databases DISABLEd from the console */
	ev_async override_wake; /* a SET: reload with the overrides */
	ev_async shutdown_wake; /* the console's SHUTDOWN: shutdown_request */
	atomic_int shutdown_request; /* enum shutdown_mode */
};

/* The admin console's SHUTDOWN (any thread). */
void runtime_request_shutdown(struct runtime *rt, enum shutdown_mode mode);
/* The admin console's SET key = value (any thread). */
void runtime_set_override(struct runtime *rt, const char *key, const char *value);

/* A new reference to the current snapshot. */
struct snapshot *runtime_snapshot(struct runtime *rt);

#endif
