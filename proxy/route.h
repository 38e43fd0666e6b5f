/* Routing a client's work to a host of its database (doc/routing.md): the
 * database's target_session_attrs, the health checker's latest view
 * (proxy/health.h) and the pools' load choose among the pools of the
 * client's group (one per host, pool/pool.h) through pool/router.h.
 *
 * A database with one host is never routed: its only pool serves it.
 */
#ifndef PGMOAT_PROXY_ROUTE_H
#define PGMOAT_PROXY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

struct client;
struct worker;

enum route_result {
	ROUTE_OK, /* c->pool is the pool to take a server from */
	ROUTE_LATER, /* the health checker has not reported yet: try again soon */
	ROUTE_NONE, /* no host may serve it now: `err` says why */
};

/* Choose the pool for the client's next transaction (or session). */
enum route_result route_client(struct client *c, char *err, size_t errlen);
/* The worker's copy of the health view, refreshed if a newer one was
 * published (call from the worker's thread). */
void route_refresh(struct worker *w);

#endif
