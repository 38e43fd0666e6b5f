/* auth_query: the secret of a user missing from auth_file, looked up in
 * PostgreSQL by `auth_user` through libpq's non-blocking API, so a worker
 * never waits on the database.
 *
 * Each worker keeps one connection per target database and runs one lookup
 * at a time on it; clients queue in order.  The connection runs with
 * search_path pinned to pg_catalog, whatever a client sent, and the query's
 * user name is a parameter, never spliced into the SQL.  A lookup that
 * finds no row, or a row for another name, or a NULL secret, leaves the
 * user unknown: the login then fails like a wrong password, and never
 * borrows auth_user's rights.  A connection or query failure fails the
 * waiting logins with 08006 (the reason is logged).
 */
#ifndef PGMOAT_PROXY_AUTH_QUERY_H
#define PGMOAT_PROXY_AUTH_QUERY_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct worker;

/* Start a lookup for `c` (in CL_AUTH); client_auth_looked_up() is called
 * with the outcome, possibly before this returns. */
void auth_query_lookup(struct client *c);
/* The client leaves while its lookup is queued or running. */
void auth_query_cancel(struct client *c);
/* Connections that took longer than server_connect_timeout fail. */
void auth_query_sweep(struct worker *w, uint64_t now);
/* Close every connection of the worker (it stops). */
void auth_query_close_all(struct worker *w);

/* Implemented by client_auth.c.  `secret` is the user's secret, or NULL
 * when the user is unknown; `failed` means the lookup itself failed. */
void client_auth_looked_up(struct client *c, const char *secret, bool failed);

#endif
