/* Named prepared statements under transaction pooling.
 *
 * A client's Parse with a statement name must keep working although each of
 * its transactions may run on another server connection.  Three structures:
 *
 * - ps_registry, one per worker thread: the distinct statements, keyed by the
 *   Parse body after the statement name (query string with its NUL, int16
 *   count, int32 parameter type OIDs).  Identical bodies share one refcounted
 *   ps_stmt.  Every ps_stmt gets an id from one process-wide counter (so two
 *   workers never hand out the same id) and a server-side name made from it.
 *   Bodies are compared in full; the hash only picks the bucket.
 *
 * - ps_client, embedded in the client struct: client statement name ->
 *   ps_stmt of its worker's registry.  A zeroed ps_client is empty and owns
 *   nothing; the first definition allocates.  Each entry holds one reference.
 *
 * - ps_server, embedded in the server struct: the ids prepared on that server
 *   connection, least recently used first out, bounded by a capacity
 *   (max_prepared_statements).  It holds ids only, never pointers into a
 *   registry, so a server may move between workers.  An id stays valid on a
 *   server after its ps_stmt is freed; the LRU pushes it out in time.
 *
 * A registry and the client maps that point into it belong to one worker and
 * take no locks.  A ps_server is used by one thread at a time.  Lengths come
 * from one protocol message and must be below 2^31.
 */
#ifndef PGMOAT_POOL_PREPARED_H
#define PGMOAT_POOL_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/list.h"
#include "common/util.h"

/* "pgmoat_" + up to 20 decimal digits + NUL fits. */
#define PS_NAME_SIZE 32

struct ps_stmt {
	struct ps_stmt *next; /* registry bucket chain (private) */
	uint64_t id; /* > 0, unique in the process */
	uint32_t refs;
	uint32_t hash; /* of body, picks the bucket (read-only) */
	uint32_t len; /* bytes in body */
	unsigned flags; /* the caller's, about the statement (0 when created) */
	char server_name[PS_NAME_SIZE]; /* "pgmoat_<id>", NUL-terminated */
	uint8_t body[]; /* the Parse message after the statement name */
};

struct ps_registry;

struct ps_registry *ps_registry_new(void) WUR; /* NULL on OOM */
/* Frees every entry, referenced or not (shutdown): client maps pointing into
 * it must be cleared first or never touched again. */
void ps_registry_free(struct ps_registry *r);
/* The entry for this body, created if new; the caller owns one reference.
 * NULL on OOM. */
struct ps_stmt *ps_intern(struct ps_registry *r, const uint8_t *body, uint32_t len) WUR;
/* Drop one reference; the entry is freed at zero. */
void ps_unref(struct ps_registry *r, struct ps_stmt *s);
size_t ps_registry_count(const struct ps_registry *r);

struct ps_client_table;

/* Zero-initialised = empty, no memory owned. */
struct ps_client {
	struct ps_client_table *t; /* NULL until the first definition */
};

#define PS_DEFINE_RESULT_LIST(X)                                                                   \
	X(PS_DEFINED, "defined")                                                                   \
	X(PS_EXISTS, "exists")                                                                     \
	X(PS_NOMEM, "out of memory")

#define X_ENUM(id, name) id,
enum ps_define_result { PS_DEFINE_RESULT_LIST(X_ENUM) };
#undef X_ENUM

const char *ps_define_result_name(enum ps_define_result res);

/* Define `name` (any bytes, any length; copied) as the statement with this
 * body.  PS_EXISTS if the name is taken, whatever its body (PostgreSQL's
 * duplicate_prepared_statement): nothing changes.  If `out` is not NULL it
 * gets the new entry (PS_DEFINED), the existing one (PS_EXISTS) or NULL. */
enum ps_define_result ps_client_define(struct ps_client *m, struct ps_registry *r, const char *name,
                                       size_t name_len, const uint8_t *body, uint32_t len,
                                       struct ps_stmt **out) WUR;
/* The statement defined as `name`, NULL if none.  The map keeps its
 * reference. */
struct ps_stmt *ps_client_find(const struct ps_client *m, const char *name, size_t name_len);
/* Close `name`; false if it was not defined. */
bool ps_client_close(struct ps_client *m, struct ps_registry *r, const char *name, size_t name_len);
/* Close everything and free the map's memory: `m` is zero again. */
void ps_client_clear(struct ps_client *m, struct ps_registry *r);
size_t ps_client_count(const struct ps_client *m);

struct ps_server_node;

/* Zeroed = empty: count, has, remove, clear and free work on it; call
 * ps_server_init before the first add.  Once it holds ids the struct must not
 * be copied (the LRU list points at its head). */
struct ps_server {
	struct list lru; /* struct ps_server_node, oldest first */
	struct ps_server_node **buckets;
	uint32_t mask; /* buckets - 1 */
	uint32_t count;
	uint32_t capacity;
};

void ps_server_init(struct ps_server *c, uint32_t capacity); /* capacity >= 1 */
/* Change the capacity (reload).  Shrinking evicts nothing by itself: loop over
 * ps_server_pop_excess and send a Close for each id it gives (until then an
 * add evicts one id, so the set does not grow, but does not shrink either). */
void ps_server_set_capacity(struct ps_server *c, uint32_t capacity);
/* While more ids are held than the capacity allows, remove the least recently
 * used, store it in *id and return true. */
bool ps_server_pop_excess(struct ps_server *c, uint64_t *id) WUR;
/* Is `id` prepared on this server?  If so it becomes the most recently used. */
bool ps_server_has(struct ps_server *c, uint64_t id);
/* Record `id` (> 0) as prepared, most recently used.  If the set was full the least
 * recently used id is removed and stored in *evicted (the caller closes it on
 * the server), else *evicted is 0.  An id already held is only touched.
 * False on OOM, with nothing changed. */
bool ps_server_add(struct ps_server *c, uint64_t id, uint64_t *evicted) WUR;
void ps_server_remove(struct ps_server *c, uint64_t id);
/* Forget every id (e.g. after DISCARD ALL) and free the memory; the capacity
 * is kept. */
void ps_server_clear(struct ps_server *c);
/* As clear, and the struct is zeroed. */
void ps_server_free(struct ps_server *c);
size_t ps_server_count(const struct ps_server *c);

/* The server-side name of statement `id`: "pgmoat_<id>". */
void ps_server_name(uint64_t id, char out[PS_NAME_SIZE]);

#endif
