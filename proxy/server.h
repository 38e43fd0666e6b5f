/* Server connections: pgmoat's connections to PostgreSQL.
 *
 *   connecting -> login -> idle <-> active
 *                            ^        |
 *                            +- reset +      setup: internal SETs for a client
 *   any -> closing
 */
#ifndef PGMOAT_PROXY_SERVER_H
#define PGMOAT_PROXY_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/scram.h"
#include "common/list.h"
#include "common/log.h"
#include "pool/pool.h"
#include "pool/prepared.h"
#include "proxy/proto.h"
#include "proxy/relay.h"
#include "proxy/txn.h"

#define SERVER_STATE_LIST(X)                                                                       \
	X(SV_CONNECTING, "connecting")                                                             \
	X(SV_LOGIN, "login")                                                                       \
	X(SV_IDLE, "idle")                                                                         \
	X(SV_SETUP, "setup")                                                                       \
	X(SV_ACTIVE, "active")                                                                     \
	X(SV_RESET, "reset")                                                                       \
	X(SV_CLOSING, "closing")

#define X_ENUM(id, name) id,
enum server_state { SERVER_STATE_LIST(X_ENUM) SERVER_STATE_COUNT };
#undef X_ENUM

struct worker;
struct client;
struct server;
struct cancel_conn;

typedef void (*server_query_cb)(struct server *s, bool ok, const struct pg_error *err);

struct server {
	struct conn conn;
	enum server_state state;
	struct list node; /* on w->servers[state] */
	struct worker *w;
	uint64_t id;

	struct pool *pool;
	struct pool_member member;
	struct client *client;

	struct pool_target target;
	uint32_t target_gen;
	char addr[96];

	struct params params; /* what the server reported (ParameterStatus) */
	/* Session state its last client left on it (proxy/session.h). */
	struct params session;
	bool session_dirty; /* the running transaction may have changed it */
	enum pool_mode mode; /* of its pool when it was given to its client */

	/* transaction and statement pooling (proxy/txn.h) */
	struct rq rq; /* replies still expected */
	struct ps_server ps; /* statements prepared on it */
	bool copy_in; /* in COPY FROM STDIN */
	bool skip_to_sync; /* after an error the server ignores all but Sync */
	bool close_on_release; /* a client did something pgmoat cannot undo */
	/* read_routing = auto sent this transaction to a replica: one request
	 * (up to a Query or Sync) at a time, so nothing after its end can
	 * reach the replica before pgmoat routes it again. */
	bool unit_hold;
	bool wrote; /* a reply said the transaction wrote (read-your-writes) */
	struct params rows; /* rows of pgmoat's own queries (read-your-writes) */

	struct cancel_conn *cancel; /* a CancelRequest on its way to the backend */
	bool offer_after_cancel; /* freed meanwhile: offered once it is delivered */
	bool offer_queued; /* its offer waits in the worker's steps (worker_step) */
	uint64_t busy_since_usec; /* when the oldest unanswered request was sent */
	uint64_t xact_since_usec; /* when the running transaction began */
	uint64_t quiet_since_usec; /* when it last answered everything */
	uint32_t backend_pid;
	uint32_t backend_key;
	uint64_t created_usec;
	uint64_t state_since_usec;

	char ready_status; /* of the last ReadyForQuery: 'I', 'T' or 'E' */
	int pending_ready; /* Query/Sync/FunctionCall sent, ReadyForQuery not yet seen */
	bool unsynced; /* extended-protocol messages sent since the last Sync */

	/* login */
	uint8_t tls_step; /* enum server_tls_step (proxy/server_login.h) */
	bool scram_started;
	struct scram_client scram;

	/* internal query */
	server_query_cb query_cb;
	struct params *query_rows; /* rows (two text columns) go here, or NULL */
	bool query_failed;
	struct pg_error query_error;
};

const char *server_state_name(enum server_state s);

/* Open a new server for `pool` on worker `w` (a pool slot is already
 * claimed).  The server is offered to the pool when logged in. */
void server_open(struct worker *w, struct pool *pool);
/* Close and release the pool slot; `why` is logged. */
void server_close(struct server *s, const char *why);
/* A free server: hand it to the oldest waiter, or keep it idle (a
 * worker_step: maybe right after the step running now). */
void server_offer(struct server *s);
/* The same, now (worker_step runs it). */
void server_offer_step(struct server *s);
/* The client is done with the server (session end): clean it and offer it. */
void server_release(struct server *s);
/* Run `sql` on the server, swallowing its replies; `cb` gets the outcome. */
void server_query(struct server *s, const char *sql, enum server_state state, server_query_cb cb);
/* The same, keeping rows of two text columns in `rows`
 * (emptied first). */
void server_query_rows(struct server *s, const char *sql, enum server_state state,
                       struct params *rows, server_query_cb cb);
/* Has the server answered everything it was sent? */
bool server_quiet(const struct server *s);
/* A ParameterStatus body from the server. */
void server_update_param(struct server *s, const uint8_t *body, uint32_t len);
/* The server is unusable while linked: the client gets the whole messages
 * relayed so far, then a FATAL error (`sqlstate`, "server connection lost:
 * why"); the server is closed. */
void server_fail_client(struct server *s, const char *sqlstate, const char *why);
/* The same with the client's message given: `msg` to it, `why` logged. */
void server_end_client(struct server *s, const char *sqlstate, const char *msg, const char *why);
/* Move a server to another worker: detach here (any state but active),
 * attach there (in that worker's thread). */
void server_detach(struct server *s);
void server_attach(struct worker *w, struct server *s);
/* Relay what the server sent to its client. */
void server_pump(struct server *s);
void server_free(struct server *s);
/* A non-blocking socket connecting to `t` (also used for cancel requests);
 * -1 with errno set on failure.  `addr` gets a printable address. */
int server_open_socket(const struct pool_target *t, char *addr, size_t addr_len);
void server_set_state(struct server *s, enum server_state state);
/* Log with the server's id, address, database and user. */
void log_server(const struct server *s, enum log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Write what pgmoat composed for the server; false if it was closed. */
bool server_flush_own(struct server *s);
/* A ReadyForQuery with `status` arrived for what a client sent: counted in
 * its pool's statistics, and remembered. */
void server_ready_seen(struct server *s, char status);
/* Timeouts of worker `w`'s servers (called by the worker's sweep). */
void server_sweep(struct worker *w, uint64_t now);

#endif
