/* The admin console: the virtual database `pgmoat`, answered by pgmoat
 * itself over the simple-query protocol (doc/operations.md).
 *
 * Users in admin_users may run every command, users in stats_users only
 * SHOW ones; anybody else is refused at login.  They log in like any user
 * (hba rules, allow, TLS and authentication all apply).  A command that
 * lists connections of every worker (SHOW CLIENTS, SHOW SERVERS) asks each
 * worker for its rows through its inbox and answers when all have replied.
 * Errors are ErrorResponses with a SQLSTATE; the connection stays.
 */
#ifndef PGMOAT_PROXY_ADMIN_H
#define PGMOAT_PROXY_ADMIN_H

#include <stdbool.h>

struct client;
struct worker;
struct wmsg;

#define ADMIN_DBNAME "pgmoat"

/* Was `db` DISABLEd from the console (new logins refused)? */
bool admin_db_disabled(struct worker *w, const char *db);
/* May `user` reach the console at all? */
bool admin_allowed(const struct worker *w, const char *user);
/* Authenticated: welcome the client to the console. */
void admin_login(struct client *c);
/* Handle what a console client sent. */
void admin_step(struct client *c);
/* Console commands waiting for a condition (PAUSE, WAIT_CLOSE) on worker
 * `w`: answered once it holds (called by the worker's sweep). */
void admin_sweep(struct worker *w);
/* Worker messages of the console (WMSG_ADMIN_COLLECT, WMSG_ADMIN_DONE). */
void admin_handle_msg(struct worker *w, struct wmsg *m);

#endif
