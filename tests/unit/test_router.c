/* The router: primary discovery, replica eligibility (up, lag in seconds
 * and bytes, read-your-writes), fallbacks per route_want, and the weighted
 * power-of-two choice (weights, load, lag share) over fixed pseudo-random
 * sequences so the counts are the same on every run. */
#include <config.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/router.h"
#include "tests/lib/tap.h"

#define PICKS 10000

/* The test's own random sequence (xorshift64*), not the router's mixer. */
static uint64_t next_rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

static struct route_cand replica(uint64_t lsn)
{
	struct route_cand c = {
	        .known = true, .up = true, .primary = false, .lsn = lsn, .weight = 1};
	return c;
}

static struct route_cand primary(uint64_t lsn)
{
	struct route_cand c = replica(lsn);
	c.primary = true;
	return c;
}

/* How often each of n candidates is picked over PICKS draws; -1 results go
 * to counts[n]. */
static void tally(const struct route_cand *c, int n, enum route_want want,
                  const struct route_limits *lim, uint64_t seed, int *counts)
{
	for (int i = 0; i <= n; i++)
		counts[i] = 0;
	for (int k = 0; k < PICKS; k++) {
		int r = router_pick(c, n, want, lim, next_rnd(&seed));
		counts[r < 0 || r >= n ? n : r]++;
	}
}

static void test_empty(void)
{
	struct route_limits lim = {0};
	struct route_cand one = primary(1);
	is_int(router_pick(NULL, 0, ROUTE_PRIMARY, &lim, 1), -1, "n = 0, primary: none");
	is_int(router_pick(&one, 0, ROUTE_ANY, &lim, 1), -1, "n = 0, any: none");
	is_int(router_pick(&one, 0, ROUTE_PREFER_STANDBY, &lim, 1), -1, "n = 0, prefer: none");
	is_int(router_pick(&one, -3, ROUTE_PRIMARY, &lim, 1), -1, "n < 0: none");
	is_int(router_pick(&one, 1, ROUTE_PRIMARY, NULL, 1), 0, "lim NULL: no limits");
}

static void test_primary(void)
{
	struct route_limits lim = {0};
	struct route_cand c[3] = {replica(10), primary(20), replica(10)};
	is_int(router_pick(c, 3, ROUTE_PRIMARY, &lim, 7), 1, "the primary");

	struct route_cand p = primary(5);
	is_int(router_pick(&p, 1, ROUTE_PRIMARY, &lim, 7), 0, "primary only: primary");
	is_int(router_pick(&p, 1, ROUTE_STANDBY, &lim, 7), -1, "primary only, standby: none");
	is_int(router_pick(&p, 1, ROUTE_PREFER_STANDBY, &lim, 7), 0,
	       "primary only, prefer-standby: primary");
	is_int(router_pick(&p, 1, ROUTE_ANY, &lim, 7), 0, "primary only, any: primary");

	struct route_cand down[3] = {replica(10), primary(20), replica(10)};
	for (int i = 0; i < 3; i++)
		down[i].up = false;
	is_int(router_pick(down, 3, ROUTE_PRIMARY, &lim, 7), -1, "none up, primary: none");
	is_int(router_pick(down, 3, ROUTE_STANDBY, &lim, 7), -1, "none up, standby: none");
	is_int(router_pick(down, 3, ROUTE_PREFER_STANDBY, &lim, 7), -1, "none up, prefer: none");
	is_int(router_pick(down, 3, ROUTE_ANY, &lim, 7), -1, "none up, any: none");

	struct route_cand unk[2] = {primary(20), replica(10)};
	unk[0].known = false;
	is_int(router_pick(unk, 2, ROUTE_PRIMARY, &lim, 7), -1, "unknown primary: not chosen");
	is_int(router_pick(unk, 2, ROUTE_ANY, &lim, 7), 1, "unknown primary: any goes to replica");

	struct route_cand no_primary[2] = {replica(1), replica(2)};
	is_int(router_pick(no_primary, 2, ROUTE_PRIMARY, &lim, 7), -1, "no primary: none");
}

static void test_two_primaries(void)
{
	struct route_limits lim = {0};
	struct route_cand c[4] = {replica(50), primary(100), primary(300), primary(200)};
	is_int(router_pick(c, 4, ROUTE_PRIMARY, &lim, 1), 2, "two primaries: highest lsn");
	c[2].up = false;
	is_int(router_pick(c, 4, ROUTE_PRIMARY, &lim, 1), 3, "highest one down: next highest");
	c[2].up = true;
	c[3].lsn = 300;
	is_int(router_pick(c, 4, ROUTE_PRIMARY, &lim, 1), 2, "equal lsn: lowest index");
	c[0].up = false;
	is_int(router_pick(c, 4, ROUTE_PREFER_STANDBY, &lim, 1), 2,
	       "prefer-standby falls back to the chosen primary");

	/* ROUTE_ANY uses only the chosen primary, never the stale one. */
	struct route_cand d[2] = {primary(100), primary(300)};
	int counts[3];
	tally(d, 2, ROUTE_ANY, &lim, 11, counts);
	is_int(counts[1], PICKS, "any with two primaries: only the chosen one");
}

static void test_eligible(void)
{
	struct route_limits lim = {.max_lag_seconds = 10, .max_lag_bytes = 1000, .min_lsn = 0};
	struct route_cand r = replica(500);
	ok(router_replica_eligible(&r, &lim), "fresh replica eligible");
	r.lag_seconds = 10;
	r.lag_bytes = 1000;
	ok(router_replica_eligible(&r, &lim), "at both limits: eligible");
	r.lag_seconds = 10.5;
	ok(!router_replica_eligible(&r, &lim), "over the seconds limit: not");
	r.lag_seconds = 1;
	r.lag_bytes = 1001;
	ok(!router_replica_eligible(&r, &lim), "over the bytes limit: not");
	r.lag_bytes = 0;

	struct route_limits nolim = {0};
	r.lag_seconds = 1e6;
	r.lag_bytes = UINT64_C(1) << 40;
	ok(router_replica_eligible(&r, &nolim), "limits 0: any lag is fine");
	struct route_limits only_bytes = {.max_lag_bytes = 100};
	ok(!router_replica_eligible(&r, &only_bytes), "seconds unlimited, bytes over: not");
	r.lag_bytes = 50;
	ok(router_replica_eligible(&r, &only_bytes), "seconds unlimited, bytes within: eligible");
	struct route_limits only_secs = {.max_lag_seconds = 5};
	r.lag_seconds = 4;
	r.lag_bytes = UINT64_C(1) << 40;
	ok(router_replica_eligible(&r, &only_secs), "bytes unlimited, seconds within: eligible");
	r.lag_seconds = NAN;
	ok(!router_replica_eligible(&r, &only_secs), "NaN lag under a limit: not");
	r.lag_seconds = 0;

	struct route_limits ryw = {.min_lsn = 500};
	ok(router_replica_eligible(&r, &ryw), "lsn == min_lsn: eligible");
	ryw.min_lsn = 501;
	ok(!router_replica_eligible(&r, &ryw), "lsn behind min_lsn: not");

	struct route_cand p = primary(1000);
	ok(!router_replica_eligible(&p, &nolim), "the primary is not a replica");
	struct route_cand d = replica(1);
	d.up = false;
	ok(!router_replica_eligible(&d, &nolim), "down: not");
	struct route_cand u = replica(1);
	u.known = false;
	ok(!router_replica_eligible(&u, &nolim), "unknown: not");
	ok(router_replica_eligible(&r, NULL), "lim NULL: no limits");
}

static void test_fallbacks(void)
{
	/* Replicas 1 and 2 are both too far behind, 3 is down, 4 unknown. */
	struct route_limits lim = {.max_lag_seconds = 5, .max_lag_bytes = 1000};
	struct route_cand c[5] = {primary(9000), replica(100), replica(100), replica(100),
	                          replica(100)};
	c[1].lag_seconds = 6;
	c[2].lag_bytes = 2000;
	c[3].up = false;
	c[4].known = false;
	int counts[6];
	tally(c, 5, ROUTE_STANDBY, &lim, 3, counts);
	is_int(counts[5], PICKS, "standby, none eligible: always -1");
	tally(c, 5, ROUTE_PREFER_STANDBY, &lim, 3, counts);
	is_int(counts[0], PICKS, "prefer-standby, none eligible: always the primary");
	tally(c, 5, ROUTE_ANY, &lim, 3, counts);
	is_int(counts[0], PICKS, "any, none eligible: always the primary");

	/* Limits off: both lagging replicas are back. */
	struct route_limits off = {0};
	tally(c, 5, ROUTE_STANDBY, &off, 3, counts);
	ok(counts[1] > 0 && counts[2] > 0 && counts[1] + counts[2] == PICKS,
	   "limits 0: lagging replicas serve (%d, %d)", counts[1], counts[2]);
	is_int(counts[3] + counts[4], 0, "down and unknown never chosen");

	/* Seconds limit only. */
	struct route_limits secs = {.max_lag_seconds = 5};
	tally(c, 5, ROUTE_STANDBY, &secs, 3, counts);
	is_int(counts[2], PICKS, "seconds limit excludes the one 6 s behind");
	/* Bytes limit only. */
	struct route_limits bytes = {.max_lag_bytes = 1000};
	tally(c, 5, ROUTE_STANDBY, &bytes, 3, counts);
	is_int(counts[1], PICKS, "bytes limit excludes the one 2000 bytes behind");

	/* Read-your-writes. */
	struct route_cand w[3] = {primary(1000), replica(900), replica(400)};
	struct route_limits ryw = {.min_lsn = 500};
	tally(w, 3, ROUTE_STANDBY, &ryw, 5, counts);
	is_int(counts[1], PICKS, "min_lsn: only the replica that replayed it");
	ryw.min_lsn = 950;
	tally(w, 3, ROUTE_PREFER_STANDBY, &ryw, 5, counts);
	is_int(counts[0], PICKS, "min_lsn past every replica: prefer-standby takes the primary");
	tally(w, 3, ROUTE_STANDBY, &ryw, 5, counts);
	is_int(counts[3], PICKS, "min_lsn past every replica: standby gets none");
	tally(w, 3, ROUTE_ANY, &ryw, 5, counts);
	is_int(counts[0], PICKS, "min_lsn past every replica: any takes the primary");
	ryw.min_lsn = 0;
	tally(w, 3, ROUTE_STANDBY, &ryw, 5, counts);
	ok(counts[1] > 0 && counts[2] > 0, "min_lsn 0: no constraint");
}

static void test_determinism(void)
{
	struct route_limits lim = {0};
	struct route_cand c[4] = {primary(1), replica(1), replica(1), replica(1)};
	c[2].weight = 3;
	c[3].load = 2;
	bool same = true, seen[4] = {false};
	uint64_t s = 99;
	for (int k = 0; k < 1000; k++) {
		uint64_t rnd = next_rnd(&s);
		int a = router_pick(c, 4, ROUTE_ANY, &lim, rnd);
		int b = router_pick(c, 4, ROUTE_ANY, &lim, rnd);
		if (a != b || a < 0)
			same = false;
		else
			seen[a] = true;
	}
	ok(same, "same rnd, same pick");
	ok(seen[0] && seen[1] && seen[2] && seen[3], "every candidate picked over 1000 rnd values");
	is_int(router_pick(c, 4, ROUTE_ANY, &lim, 0), router_pick(c, 4, ROUTE_ANY, &lim, 0),
	       "rnd 0 works");

	struct route_cand one[2] = {primary(1), replica(1)};
	int counts[3];
	tally(one, 2, ROUTE_STANDBY, &lim, 17, counts);
	is_int(counts[1], PICKS, "a single eligible replica: always it");
}

static void test_weights(void)
{
	struct route_limits lim = {0};
	struct route_cand c[3] = {replica(1), replica(1), replica(1)};
	c[0].weight = 1;
	c[1].weight = 2;
	c[2].weight = 7;
	int counts[4];
	tally(c, 3, ROUTE_STANDBY, &lim, 42, counts);
	diag("weights 1:2:7 -> %d %d %d", counts[0], counts[1], counts[2]);
	ok(counts[0] > 700 && counts[0] < 1300, "weight 1 of 10: about 10%% (%d)", counts[0]);
	ok(counts[1] > 1600 && counts[1] < 2400, "weight 2 of 10: about 20%% (%d)", counts[1]);
	ok(counts[2] > 6400 && counts[2] < 7600, "weight 7 of 10: about 70%% (%d)", counts[2]);

	c[0].weight = c[1].weight = c[2].weight = 50;
	tally(c, 3, ROUTE_STANDBY, &lim, 43, counts);
	ok(counts[0] > 2900 && counts[0] < 3770 && counts[1] > 2900 && counts[1] < 3770 &&
	           counts[2] > 2900 && counts[2] < 3770,
	   "equal weights: about a third each (%d %d %d)", counts[0], counts[1], counts[2]);

	/* Out-of-range weights are clamped, never excluded. */
	c[0].weight = 0;
	c[1].weight = 1;
	c[2].weight = 1000;
	tally(c, 3, ROUTE_STANDBY, &lim, 44, counts);
	ok(counts[0] > 0, "weight 0 counts as 1 (%d)", counts[0]);
	ok(counts[2] > 9500, "weight 1000 counts as 100 (%d)", counts[2]);
	is_int(router_effective_weight(&c[2], &lim), 100 * ROUTER_SHARE_FULL,
	       "effective weight of 1000 is 100 x full");
}

static void test_load(void)
{
	struct route_limits lim = {0};
	struct route_cand c[2] = {replica(1), replica(1)};
	c[0].load = 50;
	c[1].load = 5;
	int counts[3];
	tally(c, 2, ROUTE_STANDBY, &lim, 7, counts);
	diag("load 50 vs 5 -> %d %d", counts[0], counts[1]);
	ok(counts[0] < counts[1] / 2, "much higher load, far fewer picks (%d vs %d)", counts[0],
	   counts[1]);
	ok(counts[0] > 1800 && counts[0] < 3200,
	   "the busy one wins only when drawn twice: about 25%% (%d)", counts[0]);

	/* Load is weighed against weight: load 8 at weight 4 is 2 per unit,
	 * more than load 1 at weight 1, so the light one wins whenever drawn
	 * (1 - 0.8^2 = 36%); at load 3 (0.75 per unit) only when drawn twice
	 * (0.2^2 = 4%). */
	c[0].load = 8;
	c[0].weight = 4;
	c[1].load = 1;
	c[1].weight = 1;
	tally(c, 2, ROUTE_STANDBY, &lim, 8, counts);
	ok(counts[1] > 3000 && counts[1] < 4200, "load per weight 2 vs 1: the light one ~36%% (%d)",
	   counts[1]);
	c[0].load = 3;
	tally(c, 2, ROUTE_STANDBY, &lim, 8, counts);
	ok(counts[1] > 150 && counts[1] < 700, "load per weight 0.75 vs 1: the small one ~4%% (%d)",
	   counts[1]);

	/* Negative load (a bookkeeping slip) counts as 0. */
	c[0].load = -5;
	c[0].weight = 1;
	c[1].load = 0;
	tally(c, 2, ROUTE_STANDBY, &lim, 9, counts);
	ok(counts[0] > 4000 && counts[0] < 6000, "negative load counts as 0 (%d)", counts[0]);
}

static void test_lag_share(void)
{
	struct route_limits lim = {.max_lag_seconds = 10, .max_lag_bytes = 0};
	struct route_cand r = replica(1);
	r.weight = 2;
	is_int(router_effective_weight(&r, &lim), 2 * ROUTER_SHARE_FULL, "lag 0: full share");
	r.lag_seconds = 5;
	is_int(router_effective_weight(&r, &lim), 2 * 550, "half the limit: 55%%");
	r.lag_seconds = 10;
	is_int(router_effective_weight(&r, &lim), 2 * ROUTER_LAG_FLOOR, "at the limit: the floor");
	r.lag_seconds = 30;
	is_int(router_effective_weight(&r, &lim), 2 * ROUTER_LAG_FLOOR, "past the limit: floor");
	r.lag_seconds = -1;
	is_int(router_effective_weight(&r, &lim), 2 * ROUTER_SHARE_FULL, "negative lag: as 0");

	/* The larger of the two fractions counts. */
	struct route_limits both = {.max_lag_seconds = 10, .max_lag_bytes = 1000};
	r.lag_seconds = 2;
	r.lag_bytes = 800;
	is_int(router_effective_weight(&r, &both), 2 * 280, "bytes at 80%% beats seconds at 20%%");
	r.lag_seconds = 9;
	r.lag_bytes = 100;
	is_int(router_effective_weight(&r, &both), 2 * 190, "seconds at 90%% beats bytes at 10%%");
	struct route_limits none = {0};
	is_int(router_effective_weight(&r, &none), 2 * ROUTER_SHARE_FULL, "no limits: full share");

	bool down = true;
	uint32_t prev = UINT32_MAX;
	for (int i = 0; i <= 100; i++) {
		r.lag_seconds = i / 10.0;
		r.lag_bytes = 0;
		uint32_t w = router_effective_weight(&r, &lim);
		if (w >= prev)
			down = false;
		prev = w;
	}
	ok(down, "share falls strictly as lag grows to the limit");

	/* Picks: 0% and 80% of the limit, equal weight and load. */
	struct route_cand c[2] = {replica(1), replica(1)};
	c[1].lag_seconds = 8;
	int counts[3];
	tally(c, 2, ROUTE_STANDBY, &lim, 21, counts);
	diag("lag 0%% vs 80%% -> %d %d", counts[0], counts[1]);
	ok(counts[1] < counts[0] / 2, "at 80%% of the limit: clearly fewer picks (%d vs %d)",
	   counts[1], counts[0]);
	ok(counts[1] > 1000, "at 80%% of the limit: still some (%d)", counts[1]);
	/* Bytes give the same picture. */
	c[1].lag_seconds = 0;
	c[1].lag_bytes = 800;
	tally(c, 2, ROUTE_STANDBY, &both, 21, counts);
	ok(counts[1] < counts[0] / 2 && counts[1] > 1000,
	   "bytes at 80%%: fewer but some (%d vs %d)", counts[1], counts[0]);

	/* Smooth: the share of the lagging one falls step by step. */
	int last = PICKS, steps = 0;
	for (int pct = 0; pct <= 100; pct += 20) {
		c[1].lag_bytes = 0;
		c[1].lag_seconds = pct / 10.0;
		tally(c, 2, ROUTE_STANDBY, &lim, 22, counts);
		if (counts[1] < last)
			steps++;
		last = counts[1];
	}
	is_int(steps, 6, "picks fall at every step from 0%% to 100%% lag");
	ok(last > 0, "at the limit itself, still a few (%d)", last);
}

static void test_any(void)
{
	struct route_limits lim = {.max_lag_seconds = 10};
	struct route_cand c[3] = {replica(1), primary(5), replica(1)};
	c[1].lag_seconds = 100; /* a primary's lag means nothing */
	int counts[4];
	tally(c, 3, ROUTE_ANY, &lim, 31, counts);
	diag("any: %d %d %d", counts[0], counts[1], counts[2]);
	ok(counts[1] > 2900 && counts[1] < 3770, "any: the primary takes its third (%d)",
	   counts[1]);
	ok(counts[0] > 2900 && counts[2] > 2900, "any: the replicas take theirs (%d, %d)",
	   counts[0], counts[2]);
	is_int(counts[3], 0, "any: never none");
	is_int(router_effective_weight(&c[1], &lim), ROUTER_SHARE_FULL, "primary counts as lag 0");

	tally(c, 3, ROUTE_STANDBY, &lim, 31, counts);
	is_int(counts[1], 0, "standby: never the primary");
	tally(c, 3, ROUTE_PREFER_STANDBY, &lim, 31, counts);
	is_int(counts[1], 0, "prefer-standby with replicas: never the primary");

	/* A busy primary gets less of ROUTE_ANY. */
	c[1].load = 100;
	tally(c, 3, ROUTE_ANY, &lim, 32, counts);
	ok(counts[1] < 1500, "any: a busy primary gets less (%d)", counts[1]);

	/* Replicas out of limits: any is the primary alone. */
	c[0].lag_seconds = 11;
	c[2].up = false;
	tally(c, 3, ROUTE_ANY, &lim, 33, counts);
	is_int(counts[1], PICKS, "any, replicas out: the primary");
}

int main(void)
{
	test_empty();
	test_primary();
	test_two_primaries();
	test_eligible();
	test_fallbacks();
	test_determinism();
	test_weights();
	test_load();
	test_lag_share();
	test_any();
	return tap_done();
}
