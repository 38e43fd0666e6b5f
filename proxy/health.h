/* The health checker: every host of a [databases] entry that lists several
 * hosts is probed every `health_check_period` from the control thread, with
 * libpq's non-blocking API on the control thread's own event loop.  Probes
 * never run through the pools and never block a worker.
 *
 * A probe (one connection per host, kept open between probes and opened
 * again after a failure) asks whether the host is in recovery, its WAL
 * position (pg_current_wal_lsn() on a primary, pg_last_wal_replay_lsn() on
 * a replica) and a replica's replay delay.  A host is down after
 * `health_check_failures` failed probes in a row (no answer within
 * `health_check_timeout` counts as failed) and up again after one success.
 * After each round the states are published as an immutable, refcounted
 * `struct health_view`; role changes (a replica promoted, a host down or
 * back) are logged.
 */
#ifndef PGMOAT_PROXY_HEALTH_H
#define PGMOAT_PROXY_HEALTH_H

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/userlist.h"
#include "conf/config.h"

struct host_health {
	char *host; /* as in the [databases] entry; NULL: the default unix socket */
	int port;
	uint64_t key; /* health_key(host, port) */
	bool known; /* a probe has answered at least once */
	bool up; /* fewer than health_check_failures failed probes in a row */
	bool primary; /* not in recovery (as of the last answer) */
	uint64_t lsn; /* WAL position in bytes: current (primary) or replayed (replica) */
	uint64_t lag_bytes; /* replica: the primary's lsn minus this one's; 0 if unknown */
	double lag_seconds; /* replica: replay delay; 0 when it replayed all it received */
	uint64_t probed_usec; /* when the last probe answered (now_usec() clock) */
};

struct health_view {
	atomic_int refs;
	uint64_t gen; /* grows with each view published */
	int n;
	struct host_health hosts[]; /* strings owned by the view */
};

/* The key of (host, port): equal for equal pairs, a NULL host included. */
uint64_t health_key(const char *host, int port);
/* The state of `key` in `v`, or NULL. */
const struct host_health *health_find(const struct health_view *v, uint64_t key);
void health_view_ref(struct health_view *v);
void health_view_unref(struct health_view *v);

struct health;

/* A checker on `loop` (the control thread's); `publish` is called on that
 * thread with a new view (one reference, which it takes over) after every
 * round of probes. */
struct health *health_new(struct ev_loop *loop, void (*publish)(struct health_view *v, void *arg),
                          void *arg);
/* The hosts to probe and the settings, from a (re)loaded configuration:
 * every host of every entry with more than one host.  Hosts no longer
 * listed are dropped, new ones probed at once.  `users` gives
 * health_check_user's password, if it has one. */
void health_configure(struct health *h, const struct config *cfg, const struct userlist *users);
/* Stop probing and free everything. */
void health_free(struct health *h);

#endif
