/* Workers: one thread and one libev loop each, with its own SO_REUSEPORT
 * listening sockets.  A client and the server it is paired with always live
 * on the same worker, so relaying never crosses threads.  Other threads talk
 * to a worker only through its inbox (a locked list + ev_async). */
#ifndef PGMOAT_PROXY_WORKER_H
#define PGMOAT_PROXY_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/list.h"
#include "proxy/runtime.h"

struct pool;
struct server;
struct client;

#define MAX_LISTENERS 16

enum wmsg_kind {
	WMSG_HANDOFF, /* a server for one of our waiting clients */
	WMSG_STEAL, /* give one idle server of `pool` to the oldest waiter */
	WMSG_KICK, /* look at our waiters of `pool` again */
	WMSG_CANCEL, /* a CancelRequest for one of our clients */
	WMSG_ADMIN_COLLECT, /* the admin console wants our rows (proxy/admin.h) */
	WMSG_ADMIN_DONE, /* every worker added its rows: answer the console */
};

struct admin_job;

struct wmsg {
	struct list node;
	enum wmsg_kind kind;
	struct pool *pool;
	struct server *server;
	uint64_t client_id;
	uint32_t pid, key;
	struct admin_job *job;
};

/* Why a connection was refused before it logged in; each refusal is logged
 * once and counted (the admin console and metrics show the counts). */
#define REFUSAL_LIST(X)                                                                            \
	X(REFUSED_ALLOW, "allow")                                                                  \
	X(REFUSED_HBA, "hba")                                                                      \
	X(REFUSED_TLS, "tls")                                                                      \
	X(REFUSED_PROXY, "proxy_protocol")                                                         \
	X(REFUSED_THROTTLE, "throttle")                                                            \
	X(REFUSED_AUTH, "auth")                                                                    \
	X(REFUSED_LOGIN_TIMEOUT, "login_timeout")

#define X_ENUM(id, name) id,
enum refusal { REFUSAL_LIST(X_ENUM) REFUSAL_COUNT };
#undef X_ENUM

const char *refusal_name(enum refusal r);

struct worker_stats {
	uint64_t tls_handshakes; /* completed, clients and servers */
	uint64_t clients_accepted;
	uint64_t refused[REFUSAL_COUNT];
	uint64_t servers_opened;
	uint64_t bytes_in, bytes_out;
};

struct worker {
	int id;
	struct runtime *rt;
	pthread_t thread;
	struct ev_loop *loop;
	struct snapshot *snap; /* this worker's reference */

	ev_async wake;
	pthread_mutex_t inbox_lock;
	struct list inbox;
	atomic_bool reload_pending;
	atomic_bool stop_pending;
	/* begin_shutdown() ran: the listeners are closed.  Only then may the
	 * loop end (rt->shutdown is set a moment before the wake-up). */
	bool stopping;

	ev_io listen_io[MAX_LISTENERS];
	int n_listen;
	ev_io unix_io;
	ev_timer accept_retry; /* accepting paused after EMFILE/ENFILE */
	bool accept_full; /* out of descriptors since the last accept */

	ev_timer sweep;
	ev_check reaper; /* frees connections closed inside callbacks */
	struct list dead_clients;
	struct list dead_servers;

	struct buf_cache bufs;
	struct ps_registry *ps; /* prepared statements of its clients */
	struct list auth_queries; /* its auth_query connections (proxy/auth_query.h) */
	struct health_view *health; /* its reference to the health view, or NULL */
	uint64_t health_gen;
	uint64_t rnd; /* state of its random numbers (routing) */
	uint64_t next_client_id;

	/* Connections by state (each state is a list). */
	struct list clients[8];
	struct list servers[8];
	int n_clients;
	int n_servers;

	/* Cancel keys -> clients. */
	struct client **cancel_table;
	uint32_t cancel_mask;
	uint32_t cancel_count;
	int cancel_peer_id; /* peer_id at start (proxy/cancel.h) */

	/* Steps queued behind the one running (worker_step). */
	struct worker_step_item *steps;
	size_t steps_head, steps_len, steps_cap;
	bool stepping;

	struct worker_stats stats;
	/* What other threads read (SHOW, metrics): copied by the sweep every
	 * 100 ms under pub_lock. */
	pthread_mutex_t pub_lock;
	struct worker_stats pub;
	int pub_clients[8]; /* by enum client_state */
	int pub_servers[8]; /* by enum server_state */
};

/* A copy of worker `w`'s published statistics and connection counts (any
 * thread). */
void worker_read_pub(struct worker *w, struct worker_stats *st, int clients[8], int servers[8]);

/* Start all workers (threads); listening sockets are opened by each worker
 * before this returns, so bind errors are reported at start-up. */
bool workers_start(struct runtime *rt) __attribute__((warn_unused_result));
void workers_join(struct runtime *rt);
/* Post a message to worker `w` and wake it (any thread). */
void worker_post(struct worker *w, struct wmsg *m);
/* Tell every worker to pick up the current snapshot. */
void workers_reload(struct runtime *rt);
/* Tell every worker to stop accepting (graceful) or close everything (fast). */
void workers_shutdown(struct runtime *rt);

/* Steps that pass a server or a client's next request on.  One can lead
 * into the other without waiting for the network (a pipelined request
 * answered by pgmoat itself, a released server handed to a waiter whose
 * request ends at once, ...), so run as plain calls they would nest once
 * per request and a long enough pipeline would exhaust the stack. */
enum worker_step_kind {
	STEP_CLIENT_BEGIN, /* client_begin_step(): an idle client sent something */
	STEP_SERVER_OFFER, /* server_offer_step(): a free server looks for a client */
};
struct worker_step_item {
	enum worker_step_kind kind;
	void *obj;
};
/* Runs the step now, or, when another step is already running on this
 * worker's stack, queues it to run right after that one: the stack stays
 * one step deep however many follow each other. */
void worker_step(struct worker *w, enum worker_step_kind kind, void *obj);
/* Queue every step until worker_steps_run(), for a caller that walks a list
 * of connections; false if steps were queued already (then nothing to run). */
bool worker_steps_hold(struct worker *w);
/* Run the queued steps, and stop queueing. */
void worker_steps_run(struct worker *w);

/* Connections closed from inside a callback are freed in the worker's
 * ev_check, after the callback returned. */
void worker_defer_free_client(struct worker *w, struct client *c);
void worker_defer_free_server(struct worker *w, struct server *s);

#endif
