/* The relay in transaction and statement pooling.
 *
 * A client's server changes between transactions, so the relay keeps, per
 * server connection, the replies still expected for what was sent (struct
 * rq, in order).  With it pgmoat can:
 *
 * - release a server only when every request has been answered;
 * - serve protocol-level named prepared statements: a client's statement
 *   names map to pgmoat's own server-side names (pool/prepared.h); a
 *   statement is prepared on demand, with a Parse the client did not send,
 *   on whichever server the client has, and that Parse's reply is hidden;
 *   a Parse of a statement the server already has, and a Close, are
 *   answered by pgmoat itself, in their place in the reply stream;
 * - refuse SQL whose session state would stay on a shared server
 *   (transaction_mode_guard), and the errors PostgreSQL would give for
 *   statement names (42P05, 26000): the offending message is replaced by a
 *   statement that raises the error on the server, so the error, the
 *   aborted transaction and the skipping up to Sync are PostgreSQL's own.
 */
#ifndef PGMOAT_PROXY_TXN_H
#define PGMOAT_PROXY_TXN_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct config;
struct server;

/* One expected reply. */
struct ps_stmt;

/* One expected reply, and what to undo if the server skips its request
 * (after an error, everything up to Sync is skipped). */
struct rq_entry {
	uint8_t kind; /* the client message type it answers: 'P', 'B', ... */
	uint8_t flags; /* RQ_* */
	/* 'P': the statement it prepares on the server; 'C' of pgmoat's own:
	 * the statement it closes there (evicted); else 0 */
	uint64_t stmt_id;
	char *name; /* 'P'/'C' of a client's named statement: its name (owned) */
	struct ps_stmt *stmt; /* 'C' of a client's statement: what it closed (a reference) */
};

#define RQ_HIDE 1u /* the request was pgmoat's: its reply is not relayed */
#define RQ_OWN 2u /* nothing was sent: pgmoat answers itself, in order */
#define RQ_DESCRIBE_STMT 4u /* 'D' of a statement: 't' comes first */

struct rq {
	struct rq_entry *v;
	uint32_t head, n, cap;
};

static inline bool rq_empty(const struct rq *q)
{
	return q->n == 0;
}
struct ps_registry;
/* `r`: the registry of the worker the server is on. */
void rq_free(struct rq *q, struct ps_registry *r);

enum txn_c2s {
	TXN_C2S_OK, /* relayed (or waiting for the rest of a message) */
	TXN_C2S_TERMINATE, /* the client sent Terminate; what came before is relayed */
	TXN_C2S_CLOSED, /* the client was closed */
};

/* Relay what the client sent to its server (transaction/statement
 * pooling): pgmoat's own messages go to s->conn.out, written before the
 * rest of the client's buffer. */
enum txn_c2s txn_client_messages(struct client *c, struct server *s);
/* A server just given to a client holds more prepared statements than
 * max_prepared_statements (after a reload, or an error that kept a Close
 * from running): Closes (and a Sync) for the least recently used go first
 * in its stream.  False on out of memory. */
bool txn_trim_statements(struct server *s, const struct config *cfg);
/* Parse what the server sent, hiding and inserting replies; false if the
 * server or its client was closed. */
bool txn_server_messages(struct server *s);

#endif
