/* Prepared statements: the registry shares identical bodies, client maps
 * grow and hold odd names, the server set evicts the least recently used id
 * (checked against a plain array model). */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/prepared.h"
#include "tests/lib/tap.h"

/* A Parse body: query and NUL, int16 count, int32 OIDs (network order). */
static uint32_t parse_body(uint8_t *out, const char *query, int n_oids, const uint32_t *oids)
{
	size_t q = strlen(query) + 1;
	memcpy(out, query, q);
	uint8_t *p = out + q;
	*p++ = (uint8_t)(n_oids >> 8);
	*p++ = (uint8_t)n_oids;
	for (int i = 0; i < n_oids; i++) {
		*p++ = (uint8_t)(oids[i] >> 24);
		*p++ = (uint8_t)(oids[i] >> 16);
		*p++ = (uint8_t)(oids[i] >> 8);
		*p++ = (uint8_t)oids[i];
	}
	return (uint32_t)(p - out);
}

static struct ps_registry *registry(void)
{
	struct ps_registry *r = ps_registry_new();
	if (!r)
		tap_bail("ps_registry_new failed");
	return r;
}

static void test_registry(void)
{
	struct ps_registry *r = registry();
	uint8_t a[64], b[64], c[64];
	uint32_t int4 = 23, int8 = 20;
	uint32_t la = parse_body(a, "SELECT $1", 1, &int4);
	uint32_t lb = parse_body(b, "SELECT $1", 1, &int8);
	uint32_t lc = parse_body(c, "SELECT $2", 1, &int4);

	struct ps_stmt *s1 = ps_intern(r, a, la);
	struct ps_stmt *s2 = ps_intern(r, a, la);
	ok(s1 != NULL && s1 == s2, "same body interned twice: same entry");
	is_int(s1->refs, 2, "two references");
	is_int((long)ps_registry_count(r), 1, "one entry");
	ok(s1->len == la && memcmp(s1->body, a, la) == 0, "body stored");

	struct ps_stmt *t = ps_intern(r, b, lb);
	ok(t != NULL && t != s1, "only the parameter type differs: another entry");
	struct ps_stmt *u = ps_intern(r, c, lc);
	ok(u != NULL && u != s1 && u != t, "one byte of the query differs: another entry");
	ok(s1->id > 0 && t->id > 0 && u->id > 0, "ids start above 0");
	ok(s1->id != t->id && t->id != u->id && s1->id != u->id, "ids unique");
	char want[PS_NAME_SIZE];
	snprintf(want, sizeof(want), "pgmoat_%llu", (unsigned long long)t->id);
	is_str(t->server_name, want, "server name made from the id");
	is_int((long)ps_registry_count(r), 3, "three entries");

	struct ps_stmt *e = ps_intern(r, (const uint8_t *)"", 0);
	struct ps_stmt *e2 = ps_intern(r, NULL, 0);
	ok(e != NULL && e->len == 0 && e2 == e, "an empty body is an entry too");
	ps_unref(r, e);
	ps_unref(r, e2);

	/* Another worker's registry: same body, its own entry and a new id. */
	struct ps_registry *r2 = registry();
	struct ps_stmt *o = ps_intern(r2, a, la);
	ok(o != NULL && o != s1 && o->id != s1->id && o->id != t->id && o->id != u->id,
	   "another registry never reuses an id");
	ps_unref(r2, o);
	is_int((long)ps_registry_count(r2), 0, "unref to zero frees");

	/* Interned again after being freed: a fresh id (servers may still
	 * hold the old one). */
	uint64_t old = t->id;
	ps_unref(r, t);
	t = ps_intern(r, b, lb);
	ok(t != NULL && t->id != old, "re-created entry gets a new id");
	ps_unref(r, t);

	ps_unref(r, s1);
	is_int(s1->refs, 1, "one reference left");
	is_int((long)ps_registry_count(r), 2, "entry kept while referenced");
	ps_unref(r, s1);
	is_int((long)ps_registry_count(r), 1, "entry freed at zero");
	/* `u` still referenced: freed by ps_registry_free (shutdown). */
	ps_registry_free(r);
	ps_registry_free(r2);
	ps_registry_free(NULL);
}

/* Many bodies of one length that differ in one byte, through growth. */
static void test_registry_many(void)
{
	struct ps_registry *r = registry();
	enum { N = 5000 };
	static struct ps_stmt *s[N];
	uint8_t body[32];
	bool good = true;
	for (int i = 0; i < N; i++) {
		int n = snprintf((char *)body, sizeof(body), "SELECT %05d", i);
		s[i] = ps_intern(r, body, (uint32_t)n + 1);
		if (!s[i])
			tap_bail("out of memory");
	}
	is_int((long)ps_registry_count(r), N, "%d distinct bodies", N);
	for (int i = 0; i < N; i++) {
		int n = snprintf((char *)body, sizeof(body), "SELECT %05d", i);
		struct ps_stmt *again = ps_intern(r, body, (uint32_t)n + 1);
		if (again != s[i] || again->refs != 2 || memcmp(again->body, body, (size_t)n + 1))
			good = false;
		ps_unref(r, again);
	}
	ok(good, "each found again after growth, with its own body");
	for (int i = 0; i < N; i++)
		ps_unref(r, s[i]);
	is_int((long)ps_registry_count(r), 0, "all freed");
	ps_registry_free(r);
}

/* The stored hash has 32 bits: among 300000 bodies some pairs share it
 * (about ten expected).  Such pairs must still be distinct entries. */
struct hash_idx {
	uint32_t hash;
	uint32_t i;
};

static int hash_idx_cmp(const void *a, const void *b)
{
	const struct hash_idx *x = a, *y = b;
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static uint32_t numbered_body(uint8_t *out, uint32_t i)
{
	return (uint32_t)snprintf((char *)out, 32, "SELECT %u", i) + 1;
}

static void test_registry_hash_collisions(void)
{
	struct ps_registry *r = registry();
	enum { N = 300000 };
	struct ps_stmt **s = malloc(N * sizeof(*s));
	struct hash_idx *h = malloc(N * sizeof(*h));
	if (!s || !h)
		tap_bail("out of memory");
	uint8_t body[32];
	for (uint32_t i = 0; i < N; i++) {
		s[i] = ps_intern(r, body, numbered_body(body, i));
		if (!s[i])
			tap_bail("out of memory");
		h[i].hash = s[i]->hash;
		h[i].i = i;
	}
	qsort(h, N, sizeof(*h), hash_idx_cmp);
	int pairs = 0;
	bool good = true;
	for (uint32_t k = 1; k < N; k++) {
		if (h[k].hash != h[k - 1].hash)
			continue;
		pairs++;
		struct ps_stmt *a = s[h[k - 1].i], *b = s[h[k].i];
		if (a == b || a->id == b->id)
			good = false;
		/* Looked up again, each body finds its own entry. */
		struct ps_stmt *a2 = ps_intern(r, body, numbered_body(body, h[k - 1].i));
		struct ps_stmt *b2 = ps_intern(r, body, numbered_body(body, h[k].i));
		if (a2 != a || b2 != b)
			good = false;
		ps_unref(r, a2);
		ps_unref(r, b2);
	}
	is_int((long)ps_registry_count(r), N, "%d bodies, %d pairs sharing a hash", N, pairs);
	ok(good, "bodies sharing a hash stay apart%s", pairs ? "" : " (no pair this run)");
	for (uint32_t i = 0; i < N; i++)
		ps_unref(r, s[i]);
	free(s);
	free(h);
	ps_registry_free(r);
}

static void test_names(void)
{
	char buf[PS_NAME_SIZE];
	ps_server_name(1, buf);
	is_str(buf, "pgmoat_1", "name of id 1");
	ps_server_name(UINT64_MAX, buf);
	is_str(buf, "pgmoat_18446744073709551615", "name of the largest id fits");
	is_str(ps_define_result_name(PS_EXISTS), "exists", "result names");
}

static void test_client(void)
{
	struct ps_registry *r = registry();
	struct ps_client m = {0};
	uint8_t a[64], b[64];
	uint32_t la = parse_body(a, "SELECT 1", 0, NULL);
	uint32_t lb = parse_body(b, "SELECT 2", 0, NULL);

	is_int((long)ps_client_count(&m), 0, "zeroed map is empty");
	ok(ps_client_find(&m, "s1", 2) == NULL, "find in an empty map");
	ok(!ps_client_close(&m, r, "s1", 2), "close in an empty map");
	ps_client_clear(&m, r);
	ok(m.t == NULL, "clear of an empty map allocates nothing");

	struct ps_stmt *s = NULL;
	is_int(ps_client_define(&m, r, "s1", 2, a, la, &s), PS_DEFINED, "define s1");
	ok(s != NULL && ps_client_find(&m, "s1", 2) == s, "find s1");
	ok(ps_client_find(&m, "s", 1) == NULL && ps_client_find(&m, "s12", 3) == NULL,
	   "prefix and extension are other names");
	struct ps_stmt *x = NULL;
	is_int(ps_client_define(&m, r, "s1", 2, b, lb, &x), PS_EXISTS, "s1 again: exists");
	ok(x == s && ps_client_find(&m, "s1", 2) == s, "existing definition kept");
	is_int((long)ps_registry_count(r), 1, "rejected body not interned");
	is_int((long)ps_client_count(&m), 1, "one name");

	is_int(ps_client_define(&m, r, "s2", 2, a, la, NULL), PS_DEFINED, "s2, same SQL");
	ok(ps_client_find(&m, "s2", 2) == s && s->refs == 2, "two names share the entry");

	/* Another client: same name, other SQL. */
	struct ps_client m2 = {0};
	struct ps_stmt *y = NULL;
	is_int(ps_client_define(&m2, r, "s1", 2, b, lb, &y), PS_DEFINED, "other client, s1");
	ok(y != NULL && y != s && ps_client_find(&m2, "s1", 2) == y,
	   "same name, other client, other statement");
	ok(ps_client_find(&m, "s1", 2) == s, "first client unaffected");

	ok(ps_client_close(&m, r, "s1", 2), "close s1");
	ok(!ps_client_close(&m, r, "s1", 2), "close s1 again: not defined");
	ok(ps_client_find(&m, "s1", 2) == NULL, "s1 gone");
	is_int(s->refs, 1, "its reference dropped");
	is_int(ps_client_define(&m, r, "s1", 2, b, lb, &x), PS_DEFINED, "s1 redefined");
	ok(x == y && y->refs == 2, "now shares the other client's body");
	ok(ps_client_close(&m, r, "s2", 2) && ps_client_close(&m, r, "s1", 2), "close both");
	ok(m.t == NULL, "map freed when its last name is closed");

	ps_client_clear(&m2, r);
	ok(m2.t == NULL && ps_client_count(&m2) == 0, "clear leaves a zeroed map");
	is_int((long)ps_registry_count(r), 0, "registry empty");
	ps_registry_free(r);
}

/* Thousands of names over a few bodies: growth keeps every one findable. */
static void test_client_many(void)
{
	struct ps_registry *r = registry();
	struct ps_client m = {0};
	enum { N = 4000, BODIES = 50 };
	char name[32];
	uint8_t body[64];
	bool good = true;
	for (int i = 0; i < N; i++) {
		int n = snprintf(name, sizeof(name), "S_%d", i);
		uint32_t len = parse_body(body, i % 2 ? "SELECT $1" : "SELECT 1", 0, NULL);
		body[0] = (uint8_t)('A' + i % BODIES); /* BODIES distinct bodies */
		if (ps_client_define(&m, r, name, (size_t)n, body, len, NULL) != PS_DEFINED)
			good = false;
	}
	ok(good, "%d names defined", N);
	is_int((long)ps_client_count(&m), N, "count");
	is_int((long)ps_registry_count(r), BODIES, "bodies shared in the registry");
	good = true;
	for (int i = 0; i < N; i++) {
		int n = snprintf(name, sizeof(name), "S_%d", i);
		struct ps_stmt *s = ps_client_find(&m, name, (size_t)n);
		if (!s || s->body[0] != 'A' + i % BODIES)
			good = false;
	}
	ok(good, "all findable after growth, each with its body");
	for (int i = 0; i < N; i += 2) {
		int n = snprintf(name, sizeof(name), "S_%d", i);
		if (!ps_client_close(&m, r, name, (size_t)n))
			good = false;
	}
	ok(good, "even names closed");
	good = true;
	for (int i = 0; i < N; i++) {
		int n = snprintf(name, sizeof(name), "S_%d", i);
		if ((ps_client_find(&m, name, (size_t)n) != NULL) != (i % 2 == 1))
			good = false;
	}
	ok(good, "odd names remain, even names gone");
	ps_client_clear(&m, r);
	is_int((long)ps_registry_count(r), 0, "clear drops every reference");
	ps_registry_free(r);
}

static void test_client_odd_names(void)
{
	struct ps_registry *r = registry();
	struct ps_client m = {0};
	uint8_t body[64];
	uint32_t len = parse_body(body, "SELECT 1", 0, NULL);
	static char longname[10000];
	memset(longname, 'n', sizeof(longname));

	is_int(ps_client_define(&m, r, "a\0b", 3, body, len, NULL), PS_DEFINED, "embedded NUL");
	is_int(ps_client_define(&m, r, "a\0c", 3, body, len, NULL), PS_DEFINED,
	       "differs after the NUL");
	is_int(ps_client_define(&m, r, "a", 1, body, len, NULL), PS_DEFINED, "its prefix");
	is_int(ps_client_define(&m, r, "\xff\x80\x01", 3, body, len, NULL), PS_DEFINED,
	       "high bytes");
	is_int(ps_client_define(&m, r, "", 0, body, len, NULL), PS_DEFINED, "empty name");
	is_int(ps_client_define(&m, r, longname, sizeof(longname), body, len, NULL), PS_DEFINED,
	       "10000-byte name");
	longname[sizeof(longname) - 1] = 'x';
	ok(ps_client_find(&m, longname, sizeof(longname)) == NULL, "last byte differs: not found");
	is_int(ps_client_define(&m, r, longname, sizeof(longname), body, len, NULL), PS_DEFINED,
	       "so it is another name");
	ok(ps_client_find(&m, longname, 63) == NULL, "no truncation to 63 bytes");
	is_int((long)ps_client_count(&m), 7, "seven names");
	ok(ps_client_find(&m, "a\0b", 3) && ps_client_find(&m, "a\0c", 3) &&
	           ps_client_find(&m, "a", 1) && ps_client_find(&m, "\xff\x80\x01", 3) &&
	           ps_client_find(&m, "", 0),
	   "all found");
	ok(ps_client_close(&m, r, "a\0b", 3) && ps_client_find(&m, "a\0c", 3) != NULL,
	   "closing one leaves its neighbour");
	ps_client_clear(&m, r);
	is_int((long)ps_registry_count(r), 0, "all released");
	ps_registry_free(r);
}

static void test_server_lru(void)
{
	struct ps_server c = {0};
	uint64_t ev = 99, id = 0;
	is_int((long)ps_server_count(&c), 0, "zeroed set is empty");
	ok(!ps_server_has(&c, 1), "has on a zeroed set");
	ps_server_remove(&c, 1);
	ps_server_clear(&c);
	ps_server_free(&c);

	ps_server_init(&c, 3);
	ok(ps_server_add(&c, 1, &ev) && ev == 0, "add 1");
	ok(ps_server_add(&c, 2, &ev) && ev == 0, "add 2");
	ok(ps_server_add(&c, 3, &ev) && ev == 0, "add 3");
	ok(ps_server_add(&c, 3, &ev) && ev == 0 && ps_server_count(&c) == 3,
	   "add 3 again: no change");
	ok(ps_server_has(&c, 1), "has 1 (touch)");
	ok(ps_server_add(&c, 4, &ev), "add 4 to a full set");
	is_int((long)ev, 2, "evicts 2, the least recently used");
	ok(!ps_server_has(&c, 2), "2 gone");
	ok(ps_server_has(&c, 1) && ps_server_has(&c, 3) && ps_server_has(&c, 4), "1, 3, 4 held");
	is_int((long)ps_server_count(&c), 3, "count 3");
	ps_server_remove(&c, 3);
	ok(!ps_server_has(&c, 3) && ps_server_count(&c) == 2, "remove 3");
	ps_server_remove(&c, 3);
	is_int((long)ps_server_count(&c), 2, "remove of an absent id");
	ok(ps_server_add(&c, 5, &ev) && ev == 0, "room again: no eviction");

	/* Order is now 1 4 5 (oldest first); shrink to 1. */
	ps_server_set_capacity(&c, 1);
	ok(ps_server_pop_excess(&c, &id) && id == 1, "shrink: pops 1");
	ok(ps_server_pop_excess(&c, &id) && id == 4, "then 4");
	ok(!ps_server_pop_excess(&c, &id), "then nothing");
	ok(ps_server_has(&c, 5) && ps_server_count(&c) == 1, "5 kept");
	ok(ps_server_add(&c, 6, &ev) && ev == 5, "capacity 1: each add evicts the last");
	ok(ps_server_add(&c, 6, &ev) && ev == 0, "re-adding the held id evicts nothing");
	ps_server_set_capacity(&c, 4);
	ok(!ps_server_pop_excess(&c, &id), "growing pops nothing");

	ps_server_clear(&c);
	ok(ps_server_count(&c) == 0 && !ps_server_has(&c, 6), "clear");
	ok(ps_server_add(&c, 7, &ev) && ev == 0 && ps_server_has(&c, 7), "usable after clear");
	ps_server_free(&c);
	is_int((long)ps_server_count(&c), 0, "freed");
}

/* ---- the server set against a plain array, oldest first ---- */

struct model {
	uint64_t ids[64];
	uint32_t n;
};

static int model_find(const struct model *m, uint64_t id)
{
	for (uint32_t i = 0; i < m->n; i++)
		if (m->ids[i] == id)
			return (int)i;
	return -1;
}

static uint64_t model_take(struct model *m, int i)
{
	uint64_t id = m->ids[i];
	memmove(m->ids + i, m->ids + i + 1, (m->n - (uint32_t)i - 1) * sizeof(m->ids[0]));
	m->n--;
	return id;
}

static bool model_has(struct model *m, uint64_t id)
{
	int i = model_find(m, id);
	if (i < 0)
		return false;
	model_take(m, i);
	m->ids[m->n++] = id; /* now the most recently used */
	return true;
}

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint32_t rng(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static void test_server_model(void)
{
	struct ps_server c;
	struct model m = {{0}, 0};
	uint32_t cap = 8;
	ps_server_init(&c, cap);
	int bad = 0, evictions = 0, pops = 0;
	for (int step = 0; step < 200000 && bad == 0; step++) {
		uint64_t id = 1 + rng(40);
		uint32_t op = rng(100);
		if (op < 50) {
			uint64_t ev = 0, want = 0;
			if (model_has(&m, id)) {
				/* touched */
			} else {
				if (m.n >= cap)
					want = model_take(&m, 0);
				m.ids[m.n++] = id;
			}
			if (!ps_server_add(&c, id, &ev) || ev != want)
				bad++;
			if (want)
				evictions++;
		} else if (op < 80) {
			if (ps_server_has(&c, id) != model_has(&m, id))
				bad++;
		} else if (op < 97) {
			int i = model_find(&m, id);
			if (i >= 0)
				model_take(&m, i);
			ps_server_remove(&c, id);
		} else if (op < 99) {
			cap = 1 + rng(12);
			ps_server_set_capacity(&c, cap);
			uint64_t got;
			while (ps_server_pop_excess(&c, &got)) {
				pops++;
				if (m.n <= cap || got != model_take(&m, 0))
					bad++;
			}
			if (m.n > cap)
				bad++;
		} else {
			ps_server_clear(&c);
			m.n = 0;
		}
		if (ps_server_count(&c) != m.n)
			bad++;
		if (bad)
			diag("step %d op %u id %llu: mismatch", step, op, (unsigned long long)id);
	}
	is_int(bad, 0, "200000 random operations agree with the model");
	ok(evictions > 1000 && pops > 100, "evictions (%d) and shrink pops (%d) exercised",
	   evictions, pops);
	/* Final order matches too: pop everything through capacity 1. */
	ps_server_set_capacity(&c, 1);
	uint64_t got;
	bool order = true;
	while (ps_server_pop_excess(&c, &got))
		if (got != model_take(&m, 0))
			order = false;
	ok(order && m.n == ps_server_count(&c) && (m.n == 0 || ps_server_has(&c, m.ids[0])),
	   "final LRU order agrees");
	ps_server_free(&c);
}

int main(void)
{
	test_registry();
	test_registry_many();
	test_registry_hash_collisions();
	test_names();
	test_client();
	test_client_many();
	test_client_odd_names();
	test_server_lru();
	test_server_model();
	return tap_done();
}
