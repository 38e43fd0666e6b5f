#include <config.h>

/* The router: which candidate host serves a transaction.
 *
 * The primary.  The candidate that is known, up and claims to be primary.
 * Should several claim it (a promotion the old primary has not noticed yet),
 * the one with the highest lsn wins, ties to the lowest index.
 *
 * Eligible replicas.  Known, up, not primary, lag_seconds <= max_lag_seconds
 * and lag_bytes <= max_lag_bytes (a limit of 0 does not apply; a NaN lag
 * under a limit is not within it), and lsn >= min_lsn (0: no constraint).
 * A candidate that is not known or not up is never chosen for anything.
 *
 * Effective weight.  w_eff = weight (clamped to 1..100) x share, in
 * thousandths.  share is 1000 at no lag and falls linearly to
 * ROUTER_LAG_FLOOR (100, a tenth) as the lag reaches the limit; the lag
 * measured is the larger of lag_seconds / max_lag_seconds and
 * lag_bytes / max_lag_bytes, over the limits that are set (no limit set:
 * share 1000).  A replica falling behind thus loses its traffic gradually,
 * well before it crosses the limit, instead of flapping between all and
 * nothing.  The primary (in ROUTE_ANY) counts as lag 0.
 *
 * The choice (power of two choices).  Two draws from the candidates in
 * play, each with probability w_eff / sum(w_eff); they may be the same.
 * The one with the lower load / w_eff wins (load below 0 counts as 0),
 * ties to the first draw.  With all loads equal to 0 a candidate is thus
 * picked in proportion to its w_eff.  The draws come from two splitmix64
 * steps seeded with `rnd`, so the result is a function of the arguments.
 *
 * By want:
 *   ROUTE_PRIMARY         the primary, else -1;
 *   ROUTE_STANDBY         the choice among eligible replicas, else -1;
 *   ROUTE_PREFER_STANDBY  the choice among eligible replicas, else the
 *                         primary, else -1;
 *   ROUTE_ANY             the choice among the primary and the eligible
 *                         replicas together, else -1.
 * n <= 0 or c == NULL gives -1; lim == NULL means no limits.
 */

#include <stddef.h>

#include "pool/router.h"

static const struct route_limits no_limits = {0};

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static bool alive(const struct route_cand *c)
{
	return c->known && c->up;
}

bool router_replica_eligible(const struct route_cand *c, const struct route_limits *lim)
{
	if (!c || !alive(c) || c->primary)
		return false;
	if (!lim)
		lim = &no_limits;
	if (lim->max_lag_seconds > 0 && !(c->lag_seconds <= lim->max_lag_seconds))
		return false;
	if (lim->max_lag_bytes > 0 && c->lag_bytes > lim->max_lag_bytes)
		return false;
	return c->lsn >= lim->min_lsn;
}

/* How far `c` is towards its lag limits, 0..1. */
static double lag_fraction(const struct route_cand *c, const struct route_limits *lim)
{
	double r = 0;
	if (lim->max_lag_seconds > 0 && c->lag_seconds > 0) {
		double s = c->lag_seconds / lim->max_lag_seconds;
		if (s > r)
			r = s;
	}
	if (lim->max_lag_bytes > 0) {
		double b = (double)c->lag_bytes / (double)lim->max_lag_bytes;
		if (b > r)
			r = b;
	}
	if (!(r <= 1)) /* also NaN */
		r = 1;
	return r;
}

static uint32_t weight_of(const struct route_cand *c)
{
	if (c->weight < 1)
		return 1;
	if (c->weight > 100)
		return 100;
	return (uint32_t)c->weight;
}

uint32_t router_effective_weight(const struct route_cand *c, const struct route_limits *lim)
{
	if (!lim)
		lim = &no_limits;
	double r = c->primary ? 0 : lag_fraction(c, lim);
	uint32_t share =
	        (uint32_t)(ROUTER_SHARE_FULL - (ROUTER_SHARE_FULL - ROUTER_LAG_FLOOR) * r + 0.5);
	if (share < ROUTER_LAG_FLOOR)
		share = ROUTER_LAG_FLOOR;
	if (share > ROUTER_SHARE_FULL)
		share = ROUTER_SHARE_FULL;
	return weight_of(c) * share;
}

static int pick_primary(const struct route_cand *c, int n)
{
	int best = -1;
	for (int i = 0; i < n; i++) {
		if (!alive(&c[i]) || !c[i].primary)
			continue;
		if (best < 0 || c[i].lsn > c[best].lsn)
			best = i;
	}
	return best;
}

static bool in_play(const struct route_cand *c, int i, int primary, const struct route_limits *lim)
{
	return i == primary || router_replica_eligible(&c[i], lim);
}

/* Index of the candidate in play that the point `x` in [0, total) falls on. */
static int draw(const struct route_cand *c, int n, int primary, const struct route_limits *lim,
                uint64_t x)
{
	int last = -1;
	for (int i = 0; i < n; i++) {
		if (!in_play(c, i, primary, lim))
			continue;
		uint64_t w = router_effective_weight(&c[i], lim);
		if (x < w)
			return i;
		x -= w;
		last = i;
	}
	return last; /* not reached when x < total */
}

/* Power of two choices among the eligible replicas, plus the candidate
 * `primary` when it is >= 0. */
static int choose(const struct route_cand *c, int n, int primary, const struct route_limits *lim,
                  uint64_t rnd)
{
	uint64_t total = 0;
	int only = -1, count = 0;
	for (int i = 0; i < n; i++) {
		if (!in_play(c, i, primary, lim))
			continue;
		total += router_effective_weight(&c[i], lim);
		only = i;
		count++;
	}
	if (count <= 1)
		return only;

	uint64_t state = rnd;
	int a = draw(c, n, primary, lim, splitmix64(&state) % total);
	int b = draw(c, n, primary, lim, splitmix64(&state) % total);
	if (a == b)
		return a;
	/* load_a / w_a <= load_b / w_b, cross-multiplied: loads < 2^31 and
	 * weights <= 100000, so the products fit. */
	uint64_t la = c[a].load > 0 ? (uint64_t)c[a].load : 0;
	uint64_t lb = c[b].load > 0 ? (uint64_t)c[b].load : 0;
	uint64_t wa = router_effective_weight(&c[a], lim);
	uint64_t wb = router_effective_weight(&c[b], lim);
	return la * wb <= lb * wa ? a : b;
}

int router_pick(const struct route_cand *c, int n, enum route_want want,
                const struct route_limits *lim, uint64_t rnd)
{
	if (!c || n <= 0)
		return -1;
	if (!lim)
		lim = &no_limits;

	switch (want) {
	case ROUTE_PRIMARY:
		return pick_primary(c, n);
	case ROUTE_STANDBY:
		return choose(c, n, -1, lim, rnd);
	case ROUTE_PREFER_STANDBY: {
		int r = choose(c, n, -1, lim, rnd);
		return r >= 0 ? r : pick_primary(c, n);
	}
	case ROUTE_ANY:
		return choose(c, n, pick_primary(c, n), lim, rnd);
	}
	return -1;
}
