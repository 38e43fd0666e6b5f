/* Statistics per database: totals summed over its pools (pool_stats,
 * updated as work happens) and averages per second over the last
 * `stats_period`, sampled by the control thread, which also logs a summary
 * line per database each period (`log_stats`).  SHOW STATS* and the metrics
 * endpoint read them. */
#ifndef PGMOAT_PROXY_STATS_H
#define PGMOAT_PROXY_STATS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"

struct db_totals {
	char name[64];
	uint64_t xacts, queries, recv, sent, xact_us, query_us, wait_us, waited;
};

struct db_averages {
	char name[64];
	/* per second over the last period, except the times: per transaction,
	 * per query, per wait (microseconds) */
	double xacts, queries, recv, sent, xact_us, query_us, wait_us;
};

struct stats;

/* Totals of every database with pools now; *n rows (malloc'd array). */
struct db_totals *stats_totals(size_t *n);
/* The averages of the last full period (malloc'd array, *n rows; none
 * before the first period ends).  Any thread. */
struct db_averages *stats_averages(struct stats *st, size_t *n);

/* Sampling on the control thread's loop; `cfg` gives stats_period and
 * log_stats (stats_reconfigure on reload). */
struct stats *stats_new(struct ev_loop *loop, const struct config *cfg);
void stats_reconfigure(struct stats *st, const struct config *cfg);
void stats_free(struct stats *st);

#endif
