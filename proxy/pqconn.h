/* A libpq connection driven by a libev loop, for pgmoat's own sessions
 * with PostgreSQL (auth_query lookups, health probes): connecting and
 * querying never block the loop.  What happens is told through callbacks;
 * messages handed to them are one line (libpq's end with a newline and may
 * hold several). */
#ifndef PGMOAT_PROXY_PQCONN_H
#define PGMOAT_PROXY_PQCONN_H

#include <ev.h>
#include <libpq-fe.h>
#include <stdbool.h>

/* The default Unix socket directory (a [databases] entry without host). */
#define PQCONN_SOCKDIR "/var/run/postgresql"

enum pqconn_state {
	PQCONN_CLOSED,
	PQCONN_CONNECTING,
	PQCONN_IDLE, /* connected, no query running */
	PQCONN_BUSY, /* a query runs */
};

struct pqconn;

struct pqconn_ops {
	/* Connected: queries can be sent. */
	void (*connected)(struct pqconn *pc);
	/* One result of the running query (cleared when this returns). */
	void (*result)(struct pqconn *pc, PGresult *r);
	/* The running query is over: every result was given. */
	void (*done)(struct pqconn *pc);
	/* The connection failed, or was lost (idle or not): it is closed
	 * already, and may be freed or reopened from here. */
	void (*failed)(struct pqconn *pc, const char *why);
};

struct pqconn {
	struct ev_loop *loop;
	const struct pqconn_ops *ops;
	void *arg;
	const char *label; /* for debug logs (notices), owned by the caller */
	PGconn *pg;
	ev_io io;
	int io_fd;
	enum pqconn_state state;
};

/* Where and how to log in; NULL or "" leaves a keyword out. */
struct pqconn_target {
	const char *host; /* NULL: PQCONN_SOCKDIR */
	int port;
	const char *dbname, *user, *password;
	const char *application_name;
	const char *options; /* e.g. "-c search_path=pg_catalog" */
	const char *target_session_attrs;
	int connect_timeout; /* seconds */
	int sslmode; /* enum tls_mode (conf/config.h) */
	const char *sslrootcert, *sslcert, *sslkey;
};

void pqconn_init(struct pqconn *pc, struct ev_loop *loop, const struct pqconn_ops *ops, void *arg,
                 const char *label);
/* Starts connecting (closing what was open); the outcome comes as
 * `connected` or `failed` (maybe before this returns). */
void pqconn_open(struct pqconn *pc, const struct pqconn_target *t);
/* Sends `sql` with text parameters (the connection must be idle); its
 * results come as `result`s then `done`, or `failed`.  False if it could
 * not even be sent: then `failed` was called. */
bool pqconn_query(struct pqconn *pc, const char *sql, int n_params, const char *const *values);
/* Closes the connection (no callback). */
void pqconn_close(struct pqconn *pc);
/* Handles socket readiness `revents` (EV_READ, EV_WRITE) now, as the
 * loop would: for a caller that polled the socket itself. */
void pqconn_step(struct pqconn *pc, int revents);
/* Copies `msg` into `out` as one line, without a trailing newline. */
void pqconn_one_line(char *out, size_t size, const char *msg);

#endif
