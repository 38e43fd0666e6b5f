/* Client connections: applications connected to pgmoat.
 *
 *   startup -> auth -> idle -> waiting -> active -> closing
 *                       ^                    |
 *                       +--------------------+  transaction/statement pooling
 *
 * A logged-in client without a server is idle; the first message it sends
 * makes it wait for one (in the pool's FIFO), and with a server it is
 * active.  In session pooling it keeps that server until it disconnects; in
 * transaction pooling the server goes back to the pool at the end of each
 * transaction, in statement pooling after each statement.  The first client
 * of a pool waits for a server right at login: the server's parameters
 * welcome it, and later clients are welcomed with the pool's copy.
 */
#ifndef PGMOAT_PROXY_CLIENT_H
#define PGMOAT_PROXY_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "auth/scram.h"
#include "common/list.h"
#include "pool/pool.h"
#include "pool/prepared.h"
#include "proxy/proto.h"
#include "proxy/relay.h"
#include "proxy/worker.h"

#define CLIENT_STATE_LIST(X)                                                                       \
	X(CL_STARTUP, "startup")                                                                   \
	X(CL_AUTH, "auth")                                                                         \
	X(CL_IDLE, "idle")                                                                         \
	X(CL_WAITING, "waiting")                                                                   \
	X(CL_ACTIVE, "active")                                                                     \
	X(CL_CLOSING, "closing")

#define X_ENUM(id, name) id,
enum client_state { CLIENT_STATE_LIST(X_ENUM) CLIENT_STATE_COUNT };
#undef X_ENUM

struct worker;
struct server;

enum client_auth_step { CA_NONE, CA_LOOKUP, CA_CLEARTEXT, CA_MD5, CA_SCRAM_FIRST, CA_SCRAM_FINAL };

struct client {
	struct conn conn;
	enum client_state state;
	struct list node; /* on w->clients[state] */
	struct worker *w;
	uint64_t id;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer; /* formatted only when logged */
	bool is_unix;
	bool names_shared; /* user and dbname point into its pool */

	char *user;
	char *dbname;
	/* Session state to apply on each server it gets: startup parameters,
	 * then what it SET (proxy/session.h). */
	struct params params;
	struct params startup; /* what RESET goes back to */

	struct ps_client ps; /* its named prepared statements (transaction pooling) */

	struct pool *pool;
	struct pool_waiter waiter;
	struct server *server;

	uint32_t cancel_pid;
	uint32_t cancel_key;
	struct client *cancel_next;

	uint64_t created_usec;
	uint64_t state_since_usec;
	uint64_t last_recv_usec; /* client_idle_timeout */

	/* auth */
	enum client_auth_step auth_step;
	uint8_t md5_salt[4];
	char *secret; /* stored secret of the user, or NULL */
	bool secret_from_query; /* found by auth_query */
	struct aq_wait *aq; /* auth_query lookup under way (proxy/auth_query.h) */
	struct scram_server *scram;

	bool tls_handshake; /* TLS handshake under way (proxy/tls.h) */
	bool proxy_pending; /* a PROXY protocol header must come first */
	uint8_t auth_method; /* enum hba_method: how it authenticates */
	uint64_t throttle_until_usec; /* throttled: refused at this time */
	bool admin; /* logged in to the admin console (proxy/admin.h) */
	bool admin_busy; /* a console command waits for other workers' rows */
	bool admin_ext_error; /* extended protocol refused until the next Sync */
	uint8_t admin_wait; /* a console command waiting for a condition (proxy/admin.c) */
	char *admin_arg; /* its database, or NULL for all */
	bool routed; /* a host was chosen (session pooling keeps it) */
	bool route_pending; /* waiting for the router (proxy/route.h) */
	bool queued; /* had to wait in its pool's queue for this server */
	bool auto_read; /* this transaction went to a replica by read_routing = auto */
	bool on_primary; /* this transaction went to the primary of several hosts */
	uint64_t ryw_lsn; /* read-your-writes: the primary's WAL after its last write */
	bool counted; /* counts towards max_client_conn */
	bool over_limit; /* max_client_conn reached: refuse after startup */
	bool welcomed; /* got ReadyForQuery from us */
	bool closing_after_flush;
};

const char *client_state_name(enum client_state s);

/* --- proxy/client_start.c: before authentication --- */

struct snapshot;
/* Whether `allow` and the hba rules could admit a client from `sa`; if not,
 * `why` says which refused it. */
bool client_address_admitted(const struct snapshot *snap, const struct sockaddr *sa, bool is_unix,
                             enum refusal *why);
/* Handle what arrived before authentication: PROXY header, SSLRequest,
 * startup packet. */
void client_startup_step(struct client *c);
/* The socket is ready during the TLS handshake. */
void client_tls_step(struct client *c);
/* login_failure_delay of a throttled client is over: refuse it. */
void client_throttle_expired(struct client *c);
/* A failed or successful login, for the throttle. */
void client_login_failed(struct client *c);
void client_login_succeeded(struct client *c);

/* A new connection accepted by worker `w`. */
void client_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
                   bool is_unix);
/* Send a FATAL error (once flushed, close) and log it. */
void client_fatal(struct client *c, const char *sqlstate, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
void client_close(struct client *c, const char *why);
void client_set_state(struct client *c, enum client_state state);
/* Choose the host for what the client is about to run (each transaction;
 * once per session in session pooling), then ask its pool for a server. */
void client_route_acquire(struct client *c);
/* Ask the pool for a server (again). */
void client_acquire(struct client *c, bool allow_reserve);
/* No server can be had (the pool's last error says why): the request fails,
 * the client staying between transactions, else FATAL. */
void client_pool_failed(struct client *c);
/* An idle client's request arrived: ask for a server (worker_step runs it;
 * not for the admin console's clients). */
void client_begin_step(struct client *c);
/* The pool gave the waiting client a server. */
void client_got_server(struct client *c, struct server *s);
/* Its server died while linked. */
void client_server_lost(struct client *c, const char *why);
/* Relay what the client sent to its server. */
void client_pump(struct client *c);
/* Flush pgmoat's own messages and the server's relayed bytes to the client;
 * false if the client was closed. */
bool client_flush(struct client *c);
/* The linked server sent ReadyForQuery and everything it had was relayed:
 * shutdown checks, and in transaction pooling the end of a transaction. */
void client_server_idle(struct client *c);
/* Its server was lost while being prepared for it: wait for another. */
void client_retry(struct client *c);
/* A CancelRequest for a client queued for a server: it leaves the queue and
 * its request fails with 57014. */
void client_cancel_wait(struct client *c);
void client_free(struct client *c);
/* Timeouts of worker `w`'s clients, and waiters looked at again. */
void client_sweep(struct worker *w, uint64_t now);
/* Look at worker `w`'s waiters of pool `p` again (a server slot freed). */
void client_kick_pool(struct worker *w, struct pool *p);
/* Log with the client's address, database and user. */
void log_client(const struct client *c, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#endif
