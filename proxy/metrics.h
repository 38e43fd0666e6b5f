/* The metrics endpoint: `metrics_listen = addr:port` serves the Prometheus
 * text format (version 0.0.4) on GET /metrics, from the control thread's
 * event loop.  A small HTTP/1.0-1.1 server: non-blocking sockets, one
 * request per connection (Connection: close), a bounded request size and
 * read timeout, at most METRICS_MAX_CONNS connections at once (one that
 * already got its answer is closed to make room; beyond that, a 503).
 * The metrics (doc/monitoring.md) are read at each scrape from the workers'
 * published statistics, the pools' counters and the health checker's view.
 */
#ifndef PGMOAT_PROXY_METRICS_H
#define PGMOAT_PROXY_METRICS_H

#include "conf/config.h"
#include "proxy/runtime.h"

#define METRICS_MAX_CONNS 16
#define METRICS_MAX_REQUEST 8192 /* bytes of request line and headers */
#define METRICS_READ_TIMEOUT 3.0 /* seconds to send the whole request */
#define METRICS_WRITE_TIMEOUT 10.0 /* seconds without progress writing */

struct metrics;

/* The endpoint of `rt`, on rt->control_loop; it listens once configured. */
struct metrics *metrics_new(struct runtime *rt);
/* Listen on cfg->metrics_listen: start, stop or move the listener when the
 * value changed (at start and after each successful reload).  A value that
 * does not parse or cannot be bound is logged, and nothing listens. */
void metrics_configure(struct metrics *m, const struct config *cfg);
/* Close the listener and every scrape connection; free `m` (NULL: no-op). */
void metrics_free(struct metrics *m);

/* The text of every metric, as served (malloc'd, NUL-terminated, *len
 * bytes).  Any thread. */
char *metrics_render(struct runtime *rt, size_t *len);

#endif
