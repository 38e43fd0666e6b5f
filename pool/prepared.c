/* Named prepared statements under transaction pooling: the per-worker
 * registry of statement bodies, the per-client name map and the per-server
 * LRU set of prepared ids.  See prepared.h. */
#include <config.h>

#include "pool/prepared.h"

#include <assert.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/list.h"
#include "common/util.h"

#define PS_K1 UINT64_C(0x9e3779b97f4a7c15)
#define PS_K2 UINT64_C(0xd6e8feb86659fd93)

#define PS_REGISTRY_BUCKETS 64
#define PS_CLIENT_BUCKETS 8
#define PS_SERVER_BUCKETS 16
#define PS_MAX_LEN 0x7fffffffu

static atomic_uint_fast64_t ps_next_id = 1;

/* ---- hashing ---- */

static inline uint64_t ps_avalanche(uint64_t h)
{
	h ^= h >> 32;
	h *= PS_K2;
	h ^= h >> 29;
	h *= PS_K1;
	h ^= h >> 32;
	return h;
}

/* Eight bytes at a time; the seed differs per registry so bucket positions
 * cannot be predicted from outside. */
static uint64_t ps_hash(uint64_t seed, const void *p, size_t n)
{
	const uint8_t *s = p;
	uint64_t h = seed ^ ((uint64_t)n * PS_K1);
	uint64_t w;
	while (n >= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * PS_K2;
		h ^= h >> 31;
		s += 8;
		n -= 8;
	}
	if (n > 0) {
		w = 0;
		memcpy(&w, s, n);
		h = (h ^ w) * PS_K2;
		h ^= h >> 31;
	}
	return ps_avalanche(h);
}

/* ---- registry ---- */

struct ps_registry {
	struct ps_stmt **buckets;
	size_t mask;
	size_t count;
	uint64_t seed;
};

struct ps_registry *ps_registry_new(void)
{
	struct ps_registry *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->buckets = calloc(PS_REGISTRY_BUCKETS, sizeof(*r->buckets));
	if (!r->buckets) {
		free(r);
		return NULL;
	}
	r->mask = PS_REGISTRY_BUCKETS - 1;
	if (!random_bytes(&r->seed, sizeof(r->seed)))
		r->seed = ps_avalanche((uint64_t)(uintptr_t)r ^ now_usec());
	return r;
}

void ps_registry_free(struct ps_registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i <= r->mask; i++) {
		struct ps_stmt *s = r->buckets[i];
		while (s) {
			struct ps_stmt *next = s->next;
			free(s);
			s = next;
		}
	}
	free(r->buckets);
	free(r);
}

/* Double the buckets; on OOM keep the old ones (longer chains, still right). */
static void ps_registry_grow(struct ps_registry *r)
{
	size_t n = (r->mask + 1) * 2;
	struct ps_stmt **b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i <= r->mask; i++) {
		struct ps_stmt *s = r->buckets[i];
		while (s) {
			struct ps_stmt *next = s->next;
			size_t k = s->hash & (n - 1);
			s->next = b[k];
			b[k] = s;
			s = next;
		}
	}
	free(r->buckets);
	r->buckets = b;
	r->mask = n - 1;
}

struct ps_stmt *ps_intern(struct ps_registry *r, const uint8_t *body, uint32_t len)
{
	assert(len <= PS_MAX_LEN);
	uint32_t hash = (uint32_t)ps_hash(r->seed, body, len);
	for (struct ps_stmt *s = r->buckets[hash & r->mask]; s; s = s->next) {
		if (s->hash == hash && s->len == len &&
		    (len == 0 || memcmp(s->body, body, len) == 0)) {
			assert(s->refs < UINT32_MAX);
			s->refs++;
			return s;
		}
	}
	struct ps_stmt *s = malloc(sizeof(*s) + len);
	if (!s)
		return NULL;
	s->id = atomic_fetch_add_explicit(&ps_next_id, 1, memory_order_relaxed);
	s->refs = 1;
	s->hash = hash;
	s->len = len;
	s->flags = 0;
	ps_server_name(s->id, s->server_name);
	if (len > 0)
		memcpy(s->body, body, len);
	if (r->count >= r->mask + 1)
		ps_registry_grow(r);
	struct ps_stmt **head = &r->buckets[hash & r->mask];
	s->next = *head;
	*head = s;
	r->count++;
	return s;
}

void ps_unref(struct ps_registry *r, struct ps_stmt *s)
{
	assert(s->refs > 0);
	if (--s->refs > 0)
		return;
	struct ps_stmt **pp = &r->buckets[s->hash & r->mask];
	while (*pp != s) {
		assert(*pp != NULL);
		pp = &(*pp)->next;
	}
	*pp = s->next;
	r->count--;
	free(s);
}

size_t ps_registry_count(const struct ps_registry *r)
{
	return r->count;
}

/* ---- client map ---- */

struct ps_client_entry {
	struct ps_client_entry *next;
	struct ps_stmt *stmt; /* one reference */
	uint32_t hash;
	uint32_t name_len;
	char name[]; /* name_len bytes and a NUL */
};

struct ps_client_table {
	uint64_t seed;
	uint32_t mask;
	uint32_t count;
	struct ps_client_entry *buckets[];
};

#define X_NAME(id, name) [id] = name,
static const char *const ps_define_result_names[] = {PS_DEFINE_RESULT_LIST(X_NAME)};
#undef X_NAME

const char *ps_define_result_name(enum ps_define_result res)
{
	if ((size_t)res >= ARRAY_SIZE(ps_define_result_names))
		return "?";
	return ps_define_result_names[res];
}

static struct ps_client_table *ps_client_table_new(uint64_t seed, uint32_t nbuckets)
{
	struct ps_client_table *t =
	        calloc(1, sizeof(*t) + (size_t)nbuckets * sizeof(t->buckets[0]));
	if (!t)
		return NULL;
	t->seed = seed;
	t->mask = nbuckets - 1;
	return t;
}

static void ps_client_grow(struct ps_client *m)
{
	struct ps_client_table *old = m->t;
	if (old->mask >= UINT32_MAX / 4)
		return;
	struct ps_client_table *t = ps_client_table_new(old->seed, (old->mask + 1) * 2);
	if (!t)
		return; /* keep the old table: longer chains, still right */
	for (uint32_t i = 0; i <= old->mask; i++) {
		struct ps_client_entry *e = old->buckets[i];
		while (e) {
			struct ps_client_entry *next = e->next;
			struct ps_client_entry **head = &t->buckets[e->hash & t->mask];
			e->next = *head;
			*head = e;
			e = next;
		}
	}
	t->count = old->count;
	free(old);
	m->t = t;
}

/* The link that points at the entry for `name` (or the NULL that ends its
 * chain). */
static struct ps_client_entry **ps_client_slot(struct ps_client_table *t, uint32_t hash,
                                               const char *name, size_t name_len)
{
	struct ps_client_entry **pp = &t->buckets[hash & t->mask];
	for (; *pp; pp = &(*pp)->next) {
		struct ps_client_entry *e = *pp;
		if (e->hash == hash && e->name_len == name_len &&
		    (name_len == 0 || memcmp(e->name, name, name_len) == 0))
			break;
	}
	return pp;
}

enum ps_define_result ps_client_define(struct ps_client *m, struct ps_registry *r, const char *name,
                                       size_t name_len, const uint8_t *body, uint32_t len,
                                       struct ps_stmt **out)
{
	assert(name_len <= PS_MAX_LEN);
	if (out)
		*out = NULL;
	if (!m->t) {
		m->t = ps_client_table_new(ps_avalanche(r->seed ^ PS_K2), PS_CLIENT_BUCKETS);
		if (!m->t)
			return PS_NOMEM;
	}
	struct ps_client_table *t = m->t;
	uint32_t hash = (uint32_t)ps_hash(t->seed, name, name_len);
	struct ps_client_entry *found = *ps_client_slot(t, hash, name, name_len);
	if (found) {
		if (out)
			*out = found->stmt;
		return PS_EXISTS;
	}
	struct ps_client_entry *e = malloc(sizeof(*e) + name_len + 1);
	if (!e)
		goto fail;
	e->stmt = ps_intern(r, body, len);
	if (!e->stmt) {
		free(e);
		goto fail;
	}
	e->hash = hash;
	e->name_len = (uint32_t)name_len;
	if (name_len > 0)
		memcpy(e->name, name, name_len);
	e->name[name_len] = '\0';
	if (t->count >= t->mask + 1) {
		ps_client_grow(m);
		t = m->t;
	}
	struct ps_client_entry **head = &t->buckets[hash & t->mask];
	e->next = *head;
	*head = e;
	t->count++;
	if (out)
		*out = e->stmt;
	return PS_DEFINED;
fail:
	if (t->count == 0) {
		free(t);
		m->t = NULL;
	}
	return PS_NOMEM;
}

struct ps_stmt *ps_client_find(const struct ps_client *m, const char *name, size_t name_len)
{
	struct ps_client_table *t = m->t;
	if (!t)
		return NULL;
	uint32_t hash = (uint32_t)ps_hash(t->seed, name, name_len);
	struct ps_client_entry *e = *ps_client_slot(t, hash, name, name_len);
	return e ? e->stmt : NULL;
}

bool ps_client_close(struct ps_client *m, struct ps_registry *r, const char *name, size_t name_len)
{
	struct ps_client_table *t = m->t;
	if (!t)
		return false;
	uint32_t hash = (uint32_t)ps_hash(t->seed, name, name_len);
	struct ps_client_entry **pp = ps_client_slot(t, hash, name, name_len);
	struct ps_client_entry *e = *pp;
	if (!e)
		return false;
	*pp = e->next;
	ps_unref(r, e->stmt);
	free(e);
	if (--t->count == 0) {
		free(t);
		m->t = NULL;
	}
	return true;
}

void ps_client_clear(struct ps_client *m, struct ps_registry *r)
{
	struct ps_client_table *t = m->t;
	if (!t)
		return;
	for (uint32_t i = 0; i <= t->mask; i++) {
		struct ps_client_entry *e = t->buckets[i];
		while (e) {
			struct ps_client_entry *next = e->next;
			ps_unref(r, e->stmt);
			free(e);
			e = next;
		}
	}
	free(t);
	m->t = NULL;
}

size_t ps_client_count(const struct ps_client *m)
{
	return m->t ? m->t->count : 0;
}

/* ---- server LRU set ---- */

struct ps_server_node {
	struct list lru;
	struct ps_server_node *next; /* bucket chain */
	uint64_t id;
};

static inline size_t ps_server_bucket(const struct ps_server *c, uint64_t id)
{
	return (size_t)((id * PS_K1) >> 32) & c->mask;
}

void ps_server_init(struct ps_server *c, uint32_t capacity)
{
	assert(capacity >= 1);
	memset(c, 0, sizeof(*c));
	list_init(&c->lru);
	c->capacity = capacity;
}

void ps_server_set_capacity(struct ps_server *c, uint32_t capacity)
{
	assert(capacity >= 1);
	c->capacity = capacity;
}

static struct ps_server_node **ps_server_slot(struct ps_server *c, uint64_t id)
{
	struct ps_server_node **pp = &c->buckets[ps_server_bucket(c, id)];
	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

/* Take `n` off the bucket chains and the LRU list; the node is not freed. */
static void ps_server_unlink(struct ps_server *c, struct ps_server_node *n)
{
	struct ps_server_node **pp = ps_server_slot(c, n->id);
	assert(*pp == n);
	*pp = n->next;
	list_del(&n->lru);
	c->count--;
}

static struct ps_server_node *ps_server_oldest(const struct ps_server *c)
{
	assert(c->count > 0);
	return container_of(c->lru.next, struct ps_server_node, lru);
}

static bool ps_server_grow(struct ps_server *c)
{
	uint32_t old_n = c->buckets ? c->mask + 1 : 0;
	uint32_t n = old_n ? old_n * 2 : PS_SERVER_BUCKETS;
	struct ps_server_node **b = calloc(n, sizeof(*b));
	if (!b)
		return false;
	struct ps_server_node **old = c->buckets;
	c->buckets = b;
	c->mask = n - 1;
	for (uint32_t i = 0; i < old_n; i++) {
		struct ps_server_node *e = old[i];
		while (e) {
			struct ps_server_node *next = e->next;
			size_t k = ps_server_bucket(c, e->id);
			e->next = b[k];
			b[k] = e;
			e = next;
		}
	}
	free(old);
	return true;
}

bool ps_server_has(struct ps_server *c, uint64_t id)
{
	if (c->count == 0)
		return false;
	struct ps_server_node *n = *ps_server_slot(c, id);
	if (!n)
		return false;
	list_del(&n->lru);
	list_append(&c->lru, &n->lru);
	return true;
}

bool ps_server_add(struct ps_server *c, uint64_t id, uint64_t *evicted)
{
	assert(id != 0 && c->capacity >= 1 && c->lru.next != NULL);
	*evicted = 0;
	if (ps_server_has(c, id))
		return true;
	struct ps_server_node *n;
	if (c->count >= c->capacity) {
		/* Full: the oldest node makes room and is reused. */
		n = ps_server_oldest(c);
		ps_server_unlink(c, n);
		*evicted = n->id;
	} else {
		/* Grow first: failing then changes nothing.  An existing
		 * table that cannot grow still works. */
		if ((!c->buckets || c->count >= c->mask + 1) && !ps_server_grow(c) && !c->buckets)
			return false;
		n = malloc(sizeof(*n));
		if (!n)
			return false;
	}
	n->id = id;
	struct ps_server_node **head = &c->buckets[ps_server_bucket(c, id)];
	n->next = *head;
	*head = n;
	list_append(&c->lru, &n->lru);
	c->count++;
	return true;
}

void ps_server_remove(struct ps_server *c, uint64_t id)
{
	if (c->count == 0)
		return;
	struct ps_server_node *n = *ps_server_slot(c, id);
	if (!n)
		return;
	ps_server_unlink(c, n);
	free(n);
}

bool ps_server_pop_excess(struct ps_server *c, uint64_t *id)
{
	if (c->count <= c->capacity)
		return false;
	struct ps_server_node *n = ps_server_oldest(c);
	ps_server_unlink(c, n);
	*id = n->id;
	free(n);
	return true;
}

void ps_server_clear(struct ps_server *c)
{
	if (c->count > 0) {
		struct list *pos, *tmp;
		list_for_each_safe(pos, tmp, &c->lru)
		{
			free(container_of(pos, struct ps_server_node, lru));
		}
	}
	free(c->buckets);
	c->buckets = NULL;
	c->mask = 0;
	c->count = 0;
	if (c->lru.next)
		list_init(&c->lru);
}

void ps_server_free(struct ps_server *c)
{
	ps_server_clear(c);
	memset(c, 0, sizeof(*c));
}

size_t ps_server_count(const struct ps_server *c)
{
	return c->count;
}

void ps_server_name(uint64_t id, char out[PS_NAME_SIZE])
{
	snprintf(out, PS_NAME_SIZE, "pgmoat_%" PRIu64, id);
}
