/* Which host of a database serves a session or a transaction: the
 * primary, or a replica that is up, close enough behind, and (for
 * read-your-writes) has replayed a client's own writes.  Pure logic over a
 * list of candidates; proxy/ fills them in from the health checker's view
 * and the pools' load.  See doc/routing.md.
 */
#ifndef PGMOAT_POOL_ROUTER_H
#define PGMOAT_POOL_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

enum route_want {
	ROUTE_PRIMARY, /* read-write, primary: the primary only */
	ROUTE_STANDBY, /* read-only, standby: a replica only */
	ROUTE_PREFER_STANDBY, /* a replica, else the primary */
	ROUTE_ANY, /* any host that is up, replicas within the limits */
};

struct route_cand {
	bool known; /* the health checker has heard from it */
	bool up;
	bool primary;
	uint64_t lsn; /* replica: replayed WAL position, in bytes */
	uint64_t lag_bytes;
	double lag_seconds;
	int weight; /* 1..100 */
	int load; /* transactions it is running for pgmoat now */
};

struct route_limits {
	double max_lag_seconds; /* 0: no limit */
	uint64_t max_lag_bytes; /* 0: no limit */
	uint64_t min_lsn; /* read-your-writes: replicas must have replayed this far; 0: none */
};

/* The index of the chosen candidate, or -1 when none may serve `want`.
 * `rnd` is a random number (the choice among replicas uses it). */
int router_pick(const struct route_cand *c, int n, enum route_want want,
                const struct route_limits *lim, uint64_t rnd);

/* Whether replica `c` may take new reads under `lim` (up, known, not the
 * primary, within both lag limits, replayed past min_lsn). */
bool router_replica_eligible(const struct route_cand *c, const struct route_limits *lim);

/* The weight router_pick() draws `c` with: its weight (clamped to 1..100)
 * times its lag share in thousandths, which falls linearly from
 * ROUTER_SHARE_FULL at no lag to ROUTER_LAG_FLOOR as the larger of
 * lag_seconds / max_lag_seconds and lag_bytes / max_lag_bytes reaches 1 (a
 * primary counts as lag 0; see pool/router.c).  For SHOW HOSTS and tests;
 * it does not check eligibility. */
#define ROUTER_SHARE_FULL 1000
#define ROUTER_LAG_FLOOR 100
uint32_t router_effective_weight(const struct route_cand *c, const struct route_limits *lim);

#endif
