/* Server pools, one per (database name, user name), shared by all workers.
 *
 * A pool does not know the client and server structs of proxy/: a server
 * connection embeds a `struct pool_member`, a client waiting for one embeds a
 * `struct pool_waiter`.  Everything in a pool is guarded by its mutex, taken
 * only when a server is handed out or given back, never while relaying.
 *
 * Idle servers and waiting clients are kept per worker, because a server's
 * socket is watched by one worker's loop.  Waiters take a ticket from the
 * pool, so the oldest waiter on any worker is served first: a server freed on
 * worker A for a waiter on worker B is detached by A and handed to B
 * (pool_give() says so; proxy/worker.c moves it).
 */
#ifndef PGMOAT_POOL_POOL_H
#define PGMOAT_POOL_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/list.h"
#include "conf/config.h"

/* Buckets of the latency histograms: upper bounds in microseconds of all
 * but the last bucket (which is +Inf). */
#define POOL_HIST_BUCKETS 12
extern const uint64_t pool_hist_bounds_us[POOL_HIST_BUCKETS - 1];
/* Count `usec` in histogram `h`. */
void pool_hist_add(atomic_uint_fast64_t *h, uint64_t usec);

struct pool_member {
	struct list node; /* on the owning worker's idle list */
	int worker;
	bool idle;
};

enum waiter_state { WAITER_NONE, WAITER_QUEUED, WAITER_HANDOFF };

struct pool_waiter {
	struct list node;
	int worker;
	uint64_t ticket;
	uint64_t since_usec;
	/* Changed with the pool's lock held, by any worker (a hand-off); read
	 * without it by the owning worker's timers: hence atomic. */
	_Atomic(enum waiter_state) state;
	uint64_t client_id; /* lets the receiving worker find the client, or see it is gone */
};

/* Where servers of a pool connect to, copied from the [databases] entry. */
struct pool_target {
	char *host; /* NULL or "/dir": unix socket */
	int port;
	char *dbname;
	char *user; /* server user */
	char *password; /* may be NULL */
	char *client_encoding, *datestyle, *timezone, *application_name;
};

/* A shared connection counter (per database name, per user name). */
struct pool_counter {
	char *name;
	atomic_int n;
	struct pool_counter *next;
};

struct pool_local {
	struct list idle; /* struct pool_member */
	struct list waiting; /* struct pool_waiter, FIFO */
	int n_idle;
	int n_waiting;
};

struct pool {
	pthread_mutex_t lock;
	char *name; /* database name as the client uses it */
	char *user; /* client user name */
	struct pool *next;

	/* A database entry that lists several hosts has one pool per host
	 * and (database, user); the pool of host 0 leads the group: it holds
	 * the members (itself first) and the routing settings.  Pools live as
	 * long as pgmoat, so these pointers stay valid; n_members only grows. */
	int host; /* index into the entry's hosts */
	struct pool *group;
	struct pool *members[DB_MAX_HOSTS]; /* group leader only */
	atomic_int n_members; /* group leader only */
	atomic_int tsa; /* enum tsa, group leader only */
	atomic_int n_clients; /* logged-in clients, group leader only */
	/* The admin console (proxy/admin.h), group leader only: PAUSE holds
	 * new transactions, DISABLE refuses new logins. */
	atomic_bool paused;
	atomic_bool disabled;
	int n_stale; /* servers of an older target_gen still open (guarded by lock) */
	atomic_int weight; /* of this pool's host */
	_Atomic uint64_t host_key; /* pool_host_key() of the target's host and port */

	/* Limits, refreshed on reload (written with lock held by the control
	 * thread, read by workers without it: hence atomic). */
	atomic_int pool_size;
	atomic_int reserve_pool;
	atomic_int min_pool_size;
	atomic_int max_db_connections;
	atomic_int max_user_connections;
	_Atomic double reserve_pool_timeout;
	_Atomic(enum pool_mode) mode;

	struct pool_target target; /* guarded by lock; copied at connect */
	_Atomic uint32_t target_gen; /* bumped when the target changes on reload */
	atomic_bool gone; /* its [databases] entry disappeared on reload */

	/* Connecting + live, all workers: changed with lock held, also read
	 * without it (the idle sweep). */
	atomic_int n_servers;
	int n_connecting;
	int n_waiting;
	uint64_t next_ticket;
	struct pool_counter *db_count;
	struct pool_counter *user_count;
	struct pool_local *local; /* [n_workers] */

	/* SCRAM keys proven by a client, used to log in to the server when the
	 * auth file holds only a verifier. */
	char *secret; /* an md5 hash auth_query found for the user, or NULL */
	bool have_scram_keys;
	uint8_t scram_client_key[32];
	uint8_t scram_server_key[32];

	/* What a server of the current target reported at login (an opaque
	 * blob built by proxy/): clients are welcomed with it without waiting
	 * for a server. */
	void *welcome;
	size_t welcome_len;
	uint32_t welcome_gen;

	/* The last failed server login, for clients that wait on this pool. */
	char last_error[256];
	char last_sqlstate[6];
	uint64_t retry_at_usec;
	/* The last login failed the way a restarting or unreachable database
	 * fails (pool_connect_failed's `down`): requests wait for it, one
	 * connection attempt at a time, instead of failing (written under
	 * lock). */
	atomic_bool down;

	/* Statistics (guarded by lock). */
	uint64_t servers_opened, servers_closed, waits;
	/* Work done through the pool (relaxed atomics, added as it happens):
	 * transactions and queries (ReadyForQuery seen), their time, bytes each
	 * way, and the time clients waited for a server. */
	struct pool_stats {
		atomic_uint_fast64_t xacts, queries, xact_us, query_us, recv, sent, wait_us, waited;
		/* Latency histograms: counts per bucket of pool_hist_bounds_us
		 * (the last bucket has no upper bound). */
		atomic_uint_fast64_t xact_hist[POOL_HIST_BUCKETS];
		atomic_uint_fast64_t query_hist[POOL_HIST_BUCKETS];
		atomic_uint_fast64_t wait_hist[POOL_HIST_BUCKETS];
	} st;
};

void pool_registry_init(int n_workers);
void pool_registry_destroy(void);

/* Find or create the pools for (database, user), one per host of `db`; the
 * group leader (host 0) is returned.  The targets and limits are taken from
 * `cfg` when a pool is created. */
struct pool *pool_get(const struct config *cfg, const struct db_entry *db, const char *dbname,
                      const char *user);
/* A key for (host, port), NULL host included (proxy/health.h uses the same). */
uint64_t pool_host_key(const char *host, int port);
/* Transactions a pool is running or waiting for (servers handed out, and
 * waiters), for the router. */
int pool_load(struct pool *p);
/* Refresh limits and targets of every pool from a newly loaded config. */
void pool_registry_reload(const struct config *cfg);
void pool_registry_foreach(void (*fn)(struct pool *p, void *arg), void *arg);

enum pool_take {
	POOL_TAKE_IDLE, /* *m is an idle server on this worker */
	POOL_TAKE_CONNECT, /* waiter queued; open a new server on this worker */
	POOL_TAKE_WAIT, /* waiter queued; *steal_from >= 0: ask that worker */
	POOL_TAKE_FAIL, /* no server can be had now: last_error says why */
};

/* Ask for a server for `w` (queued or not).  On IDLE the waiter is not (or no
 * longer) queued. */
enum pool_take pool_take(struct pool *p, int worker, struct pool_waiter *w, bool allow_reserve,
                         uint64_t now, struct pool_member **m, int *steal_from);

enum pool_give_kind {
	POOL_GIVE_LOCAL, /* pair with *waiter, on this worker */
	POOL_GIVE_REMOTE, /* detach the server and hand it to worker `worker` for `client_id` */
	POOL_GIVE_IDLE, /* put on this worker's idle list (done) */
};

struct pool_give {
	enum pool_give_kind kind;
	struct pool_waiter *waiter; /* LOCAL */
	int worker; /* REMOTE */
	uint64_t client_id; /* REMOTE */
};

/* A new server of target generation `gen` finished logging in (call before
 * offering it); `welcome` is kept for pool_welcome(). */
void pool_connected(struct pool *p, uint32_t gen, const void *welcome, size_t len);
/* A copy (malloc'ed) of the latest welcome of the current target, or NULL. */
void *pool_welcome(struct pool *p, size_t *len);
/* A server on `worker` is free (new, or released and reset). */
struct pool_give pool_give(struct pool *p, int worker, struct pool_member *m, uint64_t now);
/* Take one idle server off `worker` for another worker's waiter (STEAL). */
bool pool_take_idle(struct pool *p, int worker, struct pool_member **m);
/* A waiter gives up (client gone or timed out).  Returns its state before. */
enum waiter_state pool_waiter_remove(struct pool *p, struct pool_waiter *w);
/* A server (of target generation `gen`) closed, idle or not.  Returns the
 * worker whose waiters should be looked at again (a slot freed), or -1. */
int pool_server_closed(struct pool *p, struct pool_member *m, uint32_t gen);
/* A connect or login failed: remember why; `down`: the database is
 * unreachable, starting up or shutting down, and requests should wait for
 * it.  Returns like pool_server_closed. */
int pool_connect_failed(struct pool *p, const char *sqlstate, const char *message, uint64_t now,
                        double retry_sec, bool down);
/* The pool is down, nothing is connecting, and the next attempt is due:
 * a waiter should ask again (pool_take then connects). */
bool pool_down_retry_due(struct pool *p, uint64_t now);
/* The oldest waiter on `worker`, or NULL. */
struct pool_waiter *pool_first_waiter(struct pool *p, int worker);
/* A copy of the target (free with pool_target_free). */
void pool_target_copy(struct pool *p, struct pool_target *out, uint32_t *gen);
void pool_target_free(struct pool_target *t);
/* Reserve a slot for a server opened to keep min_pool_size; false if full. */
bool pool_reserve_slot(struct pool *p);

/* Remember `secret` (an md5 hash auth_query found) for logging in to the
 * server; pool_copy_secret copies it into `out` (false if there is none or
 * it does not fit). */
void pool_set_secret(struct pool *p, const char *secret);
bool pool_copy_secret(struct pool *p, char *out, size_t n);

/* RECONNECT: servers now open are closed when next released (and counted
 * in n_stale until they are). */
void pool_reconnect(struct pool *p);
/* Servers of `p` running a transaction for a client (not idle, not
 * connecting), and stale ones still open. */
int pool_active_servers(struct pool *p);
int pool_stale_servers(struct pool *p);

#endif
