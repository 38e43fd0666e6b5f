/* What proxy/admin.c (the console's wire handling, commands that change
 * things, SHOW CLIENTS/SERVERS across workers) shares with
 * proxy/admin_show.c (the SHOW commands answered on the console's own
 * worker).  Internal to the admin console. */
#ifndef PGMOAT_PROXY_ADMIN_INT_H
#define PGMOAT_PROXY_ADMIN_INT_H

#include <stdbool.h>

#include "common/buf.h"

struct client;
struct runtime;

/* --- result sets --- */

struct table {
	struct pkt *out;
	int cols;
	long rows;
};

/* RowDescription of `n` text columns. */
void admin_table_begin(struct table *t, struct pkt *out, const char *const *names, int n);
/* One DataRow: `n` values, NULL for SQL NULL. */
void admin_row_put(struct pkt *out, const char *const *v, int n);
void admin_table_row(struct table *t, const char *const *v);
/* CommandComplete "SHOW". */
void admin_table_end(struct table *t);
void admin_command_complete(struct pkt *out, const char *tag);

/* Formatting into a ring of small buffers, for row values. */
struct cells {
	char buf[32][128];
	int next;
};

const char *admin_fmt(struct cells *cs, const char *f, ...) __attribute__((format(printf, 2, 3)));

/* Pools of `db` (NULL: all): 0 pause, 1 resume, 2 reconnect; counts for
 * 3 (active servers), 4 (stale servers), 5 (paused pools). */
int admin_pools_do(const char *db, int op);
bool admin_is_disabled(struct runtime *rt, const char *db);

/* --- SHOW commands (proxy/admin_show.c) --- */

void admin_show_help(struct pkt *out);
void admin_show_version(struct pkt *out);
void admin_show_config(struct client *c, struct pkt *out);
void admin_show_databases(struct client *c, struct pkt *out);
void admin_show_users(struct client *c, struct pkt *out);
void admin_show_pools(struct client *c, struct pkt *out);
void admin_show_hosts(struct client *c, struct pkt *out);
void admin_show_lists(struct client *c, struct pkt *out);
void admin_show_state(struct client *c, struct pkt *out);
void admin_show_stats(struct client *c, struct pkt *out, int which);
void admin_show_mem(struct client *c, struct pkt *out);

#endif
