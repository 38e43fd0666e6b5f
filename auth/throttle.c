#include <config.h>

#include "auth/throttle.h"

#include "common/util.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX
#define MAX_ENTRIES (1u << 24)
#define EVICT_SCAN 8 /* oldest entries looked at for one not in a cool-down */

struct entry {
	uint8_t key[16]; /* IPv6 bytes; IPv4 as ::ffff:a.b.c.d */
	uint64_t window_start; /* first failure of the current window */
	uint64_t cooldown_until; /* 0 = none */
	uint32_t count; /* failures in the current window */
	uint32_t hnext; /* next in the bucket's chain, or in the free list */
	uint32_t prev, next; /* recency list: head = least recently failed */
};

struct throttle {
	pthread_mutex_t lock;
	struct entry *e; /* max entries, allocated up front */
	uint32_t *buckets; /* heads of the chains */
	uint32_t mask; /* buckets - 1, a power of two minus one */
	uint32_t max, n;
	uint32_t free_head;
	uint32_t lru_head, lru_tail;
	uint64_t seed[2];
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint32_t bucket_of(const struct throttle *t, const uint8_t key[16])
{
	uint64_t a, b;

	memcpy(&a, key, 8);
	memcpy(&b, key + 8, 8);
	return (uint32_t)(mix64(mix64(a ^ t->seed[0]) ^ b ^ t->seed[1]) & t->mask);
}

/* The key of `sa`; false for a family that is never throttled. */
static bool make_key(const struct sockaddr *sa, uint8_t key[16])
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		memset(key, 0, 10);
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &sin->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		/* A v4-mapped address is then the same key as the IPv4 one. */
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		memcpy(key, &sin6->sin6_addr, 16);
		return true;
	}
	return false;
}

static uint64_t secs_to_usec(double s)
{
	if (!(s > 0)) /* also NaN */
		return 0;
	if (s > 1e9)
		s = 1e9;
	return (uint64_t)(s * 1e6);
}

static uint32_t find(const struct throttle *t, const uint8_t key[16])
{
	for (uint32_t i = t->buckets[bucket_of(t, key)]; i != NIL; i = t->e[i].hnext) {
		if (memcmp(t->e[i].key, key, 16) == 0)
			return i;
	}
	return NIL;
}

static void lru_unlink(struct throttle *t, uint32_t i)
{
	struct entry *e = &t->e[i];

	if (e->prev != NIL)
		t->e[e->prev].next = e->next;
	else
		t->lru_head = e->next;
	if (e->next != NIL)
		t->e[e->next].prev = e->prev;
	else
		t->lru_tail = e->prev;
	e->prev = e->next = NIL;
}

static void lru_push_tail(struct throttle *t, uint32_t i)
{
	struct entry *e = &t->e[i];

	e->prev = t->lru_tail;
	e->next = NIL;
	if (t->lru_tail != NIL)
		t->e[t->lru_tail].next = i;
	else
		t->lru_head = i;
	t->lru_tail = i;
}

static void remove_entry(struct throttle *t, uint32_t i)
{
	uint32_t *pp = &t->buckets[bucket_of(t, t->e[i].key)];

	while (*pp != i) {
		if (*pp == NIL)
			abort(); /* broken invariant: an entry not in its chain */
		pp = &t->e[*pp].hnext;
	}
	*pp = t->e[i].hnext;
	lru_unlink(t, i);
	memset(&t->e[i], 0, sizeof(t->e[i]));
	t->e[i].prev = t->e[i].next = NIL;
	t->e[i].hnext = t->free_head;
	t->free_head = i;
	t->n--;
}

/* When full: the least recently failed entry, unless it is in a cool-down
 * and one of the next few oldest is not. */
static uint32_t victim(const struct throttle *t, uint64_t now)
{
	uint32_t i = t->lru_head;

	for (int k = 0; k < EVICT_SCAN && i != NIL; k++, i = t->e[i].next) {
		if (t->e[i].cooldown_until <= now)
			return i;
	}
	return t->lru_head;
}

/* A new entry for `key`, evicting one when the table is full. */
static uint32_t add_entry(struct throttle *t, const uint8_t key[16], uint64_t now)
{
	uint32_t i, b;

	if (t->free_head == NIL)
		remove_entry(t, victim(t, now));
	i = t->free_head;
	t->free_head = t->e[i].hnext;
	memcpy(t->e[i].key, key, 16);
	t->e[i].count = 0;
	t->e[i].window_start = now;
	t->e[i].cooldown_until = 0;
	b = bucket_of(t, key);
	t->e[i].hnext = t->buckets[b];
	t->buckets[b] = i;
	lru_push_tail(t, i);
	t->n++;
	return i;
}

struct throttle *throttle_new(size_t max_entries)
{
	struct throttle *t = xcalloc(1, sizeof(*t));
	uint32_t nb = 1;

	if (max_entries == 0)
		max_entries = 1;
	if (max_entries > MAX_ENTRIES)
		max_entries = MAX_ENTRIES;
	t->max = (uint32_t)max_entries;
	while (nb < t->max)
		nb <<= 1;
	t->mask = nb - 1;
	t->buckets = xmalloc(nb * sizeof(*t->buckets));
	for (uint32_t i = 0; i < nb; i++)
		t->buckets[i] = NIL;
	t->e = xcalloc(t->max, sizeof(*t->e));
	for (uint32_t i = 0; i < t->max; i++) {
		t->e[i].hnext = i + 1 < t->max ? i + 1 : NIL;
		t->e[i].prev = t->e[i].next = NIL;
	}
	t->free_head = 0;
	t->lru_head = t->lru_tail = NIL;
	if (!random_bytes(t->seed, sizeof(t->seed))) {
		/* Still correct, only easier to aim collisions at. */
		t->seed[0] = mix64(wall_usec());
		t->seed[1] = mix64(now_usec() ^ (uint64_t)(uintptr_t)t);
	}
	if (pthread_mutex_init(&t->lock, NULL) != 0)
		abort();
	return t;
}

void throttle_free(struct throttle *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->e);
	free(t->buckets);
	free(t);
}

uint64_t throttle_blocked(struct throttle *t, const struct sockaddr *addr, uint64_t now_usec,
                          const struct throttle_cfg *cfg)
{
	uint8_t key[16];
	uint64_t left = 0;
	uint32_t i;

	if (t == NULL || cfg == NULL || cfg->limit <= 0 || !make_key(addr, key))
		return 0;
	pthread_mutex_lock(&t->lock);
	i = find(t, key);
	if (i != NIL) {
		struct entry *e = &t->e[i];
		if (e->cooldown_until > now_usec)
			left = e->cooldown_until - now_usec;
		else if (e->cooldown_until != 0 ||
		         usec_since(now_usec, e->window_start) >= secs_to_usec(cfg->window))
			remove_entry(t, i); /* cool-down over, or failures too old */
	}
	pthread_mutex_unlock(&t->lock);
	return left;
}

bool throttle_failed(struct throttle *t, const struct sockaddr *addr, uint64_t now_usec,
                     const struct throttle_cfg *cfg)
{
	uint8_t key[16];
	bool started = false;
	struct entry *e;
	uint32_t i;

	if (t == NULL || cfg == NULL || cfg->limit <= 0 || !make_key(addr, key))
		return false;
	pthread_mutex_lock(&t->lock);
	i = find(t, key);
	if (i == NIL) {
		i = add_entry(t, key, now_usec);
		e = &t->e[i];
	} else {
		e = &t->e[i];
		if (e->cooldown_until > now_usec)
			goto out; /* already refused: neither counted nor extended */
		if (e->cooldown_until != 0) {
			e->cooldown_until = 0; /* over: count from 0 */
			e->count = 0;
		}
		if (e->count > 0 &&
		    usec_since(now_usec, e->window_start) >= secs_to_usec(cfg->window))
			e->count = 0;
		lru_unlink(t, i);
		lru_push_tail(t, i);
	}
	if (e->count == 0)
		e->window_start = now_usec;
	e->count++;
	if (e->count >= (uint32_t)cfg->limit) {
		uint64_t cd = secs_to_usec(cfg->cooldown);
		e->count = 0;
		if (cd == 0) {
			remove_entry(t, i);
		} else {
			e->cooldown_until = now_usec + cd;
			started = true;
		}
	}
out:
	pthread_mutex_unlock(&t->lock);
	return started;
}

void throttle_succeeded(struct throttle *t, const struct sockaddr *addr, uint64_t now_usec)
{
	uint8_t key[16];
	uint32_t i;

	if (t == NULL || !make_key(addr, key))
		return;
	pthread_mutex_lock(&t->lock);
	i = find(t, key);
	if (i != NIL && t->e[i].cooldown_until <= now_usec)
		remove_entry(t, i);
	pthread_mutex_unlock(&t->lock);
}

size_t throttle_count(struct throttle *t)
{
	size_t n;

	if (t == NULL)
		return 0;
	pthread_mutex_lock(&t->lock);
	n = t->n;
	pthread_mutex_unlock(&t->lock);
	return n;
}
