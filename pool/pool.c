#include <config.h>

#include "pool/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static struct {
	pthread_mutex_t lock;
	struct pool *pools;
	struct pool_counter *dbs;
	struct pool_counter *users;
	int n_workers;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

void pool_registry_init(int n_workers)
{
	R.n_workers = n_workers;
}

static void counters_free(struct pool_counter *c)
{
	while (c) {
		struct pool_counter *next = c->next;
		free(c->name);
		free(c);
		c = next;
	}
}

void pool_target_free(struct pool_target *t)
{
	free(t->host);
	free(t->dbname);
	free(t->user);
	if (t->password) {
		secure_zero(t->password, strlen(t->password));
		free(t->password);
	}
	free(t->client_encoding);
	free(t->datestyle);
	free(t->timezone);
	free(t->application_name);
	memset(t, 0, sizeof(*t));
}

void pool_registry_destroy(void)
{
	pthread_mutex_lock(&R.lock);
	struct pool *p = R.pools;
	while (p) {
		struct pool *next = p->next;
		pool_target_free(&p->target);
		secure_zero(p->scram_client_key, sizeof(p->scram_client_key));
		if (p->secret) {
			secure_zero(p->secret, strlen(p->secret));
			free(p->secret);
		}
		pthread_mutex_destroy(&p->lock);
		free(p->local);
		free(p->name);
		free(p->user);
		free(p->welcome);
		free(p);
		p = next;
	}
	R.pools = NULL;
	counters_free(R.dbs);
	counters_free(R.users);
	R.dbs = R.users = NULL;
	pthread_mutex_unlock(&R.lock);
}

static struct pool_counter *counter_get(struct pool_counter **head, const char *name)
{
	for (struct pool_counter *c = *head; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	struct pool_counter *c = xcalloc(1, sizeof(*c));
	c->name = xstrdup(name);
	atomic_init(&c->n, 0);
	c->next = *head;
	*head = c;
	return c;
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static bool str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void target_from(struct pool_target *t, const struct db_entry *db, int host,
                        const char *dbname, const char *user)
{
	t->host = dup_or_null(db->hosts[host].host);
	t->port = db->hosts[host].port;
	t->dbname = xstrdup(db->dbname ? db->dbname : dbname);
	t->user = xstrdup(db->user ? db->user : user);
	t->password = dup_or_null(db->password);
	t->client_encoding = dup_or_null(db->client_encoding);
	t->datestyle = dup_or_null(db->datestyle);
	t->timezone = dup_or_null(db->timezone);
	t->application_name = dup_or_null(db->application_name);
}

uint64_t pool_host_key(const char *host, int port)
{
	/* FNV-1a over the host name, a separator, and the port. */
	uint64_t h = 14695981039346656037ull;
	for (const char *p = host ? host : ""; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ull;
	}
	h ^= 0xff;
	h *= 1099511628211ull;
	for (int i = 0; i < 4; i++) {
		h ^= ((uint32_t)port >> (8 * i)) & 0xff;
		h *= 1099511628211ull;
	}
	return h;
}

static bool target_equal(const struct pool_target *a, const struct pool_target *b)
{
	return str_same(a->host, b->host) && a->port == b->port && str_same(a->dbname, b->dbname) &&
	        str_same(a->user, b->user) && str_same(a->password, b->password) &&
	        str_same(a->client_encoding, b->client_encoding) &&
	        str_same(a->datestyle, b->datestyle) && str_same(a->timezone, b->timezone) &&
	        str_same(a->application_name, b->application_name);
}

/* Called with p->lock held (or before the pool is shared). */
static void limits_from(struct pool *p, const struct config *cfg, const struct db_entry *db)
{
	const struct user_entry *u = config_find_user(cfg, p->user);
	p->pool_size = db_pool_size(cfg, db);
	p->reserve_pool = db_reserve_pool(cfg, db);
	p->min_pool_size = db_min_pool_size(cfg, db);
	p->max_db_connections = db_max_connections(cfg, db);
	p->max_user_connections = cfg->max_user_connections;
	if (u && u->max_user_connections >= 0)
		p->max_user_connections = u->max_user_connections;
	p->reserve_pool_timeout = cfg->reserve_pool_timeout;
	p->mode = db_pool_mode(cfg, db, u);
	if (p->host < db->n_hosts)
		atomic_store(&p->weight, db->hosts[p->host].weight);
}

/* Find or create the pool of host `host`; called with R.lock held. */
static struct pool *pool_of_host(const struct config *cfg, const struct db_entry *db,
                                 const char *dbname, const char *user, int host, struct pool *group)
{
	struct pool *p;
	for (p = R.pools; p; p = p->next)
		if (p->host == host && strcmp(p->name, dbname) == 0 && strcmp(p->user, user) == 0)
			break;
	if (!p) {
		p = xcalloc(1, sizeof(*p));
		pthread_mutex_init(&p->lock, NULL);
		p->name = xstrdup(dbname);
		p->user = xstrdup(user);
		p->host = host;
		p->group = group ? group : p;
		p->local = xcalloc((size_t)R.n_workers, sizeof(*p->local));
		for (int i = 0; i < R.n_workers; i++) {
			list_init(&p->local[i].idle);
			list_init(&p->local[i].waiting);
		}
		target_from(&p->target, db, host, dbname, user);
		atomic_store(&p->host_key, pool_host_key(p->target.host, p->target.port));
		limits_from(p, cfg, db);
		p->db_count = counter_get(&R.dbs, dbname);
		p->user_count = counter_get(&R.users, p->target.user);
		p->next = R.pools;
		R.pools = p;
	} else if (p->gone && host < db->n_hosts) {
		/* The entry came back after a reload removed it. */
		pthread_mutex_lock(&p->lock);
		p->gone = false;
		pthread_mutex_unlock(&p->lock);
	}
	return p;
}

/* The group's members for hosts up to db->n_hosts; called with R.lock held. */
static void group_fill(struct pool *g, const struct config *cfg, const struct db_entry *db)
{
	int have = atomic_load(&g->n_members);
	if (have == 0) {
		g->members[0] = g;
		atomic_store(&g->n_members, 1);
		have = 1;
	}
	for (int h = have; h < db->n_hosts; h++) {
		g->members[h] = pool_of_host(cfg, db, g->name, g->user, h, g);
		atomic_store(&g->n_members, h + 1);
	}
	atomic_store(&g->tsa, db->tsa);
}

struct pool *pool_get(const struct config *cfg, const struct db_entry *db, const char *dbname,
                      const char *user)
{
	pthread_mutex_lock(&R.lock);
	struct pool *g = pool_of_host(cfg, db, dbname, user, 0, NULL);
	group_fill(g, cfg, db);
	pthread_mutex_unlock(&R.lock);
	return g;
}

int pool_load(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	int idle = 0;
	for (int i = 0; i < R.n_workers; i++)
		idle += p->local[i].n_idle;
	int load = p->n_servers - p->n_connecting - idle + p->n_waiting;
	pthread_mutex_unlock(&p->lock);
	return load < 0 ? 0 : load;
}

void pool_registry_reload(const struct config *cfg)
{
	pthread_mutex_lock(&R.lock);
	for (struct pool *p = R.pools; p; p = p->next) {
		const struct db_entry *db = config_find_db(cfg, p->name);
		pthread_mutex_lock(&p->lock);
		if (!db || p->host >= db->n_hosts) {
			p->gone = true;
			p->target_gen++;
		} else {
			struct pool_target t = {0};
			target_from(&t, db, p->host, p->name, p->user);
			if (!target_equal(&t, &p->target)) {
				pool_target_free(&p->target);
				p->n_stale = p->n_servers;
				p->target = t;
				atomic_store(&p->host_key, pool_host_key(t.host, t.port));
				p->target_gen++;
				p->have_scram_keys = false;
			} else {
				pool_target_free(&t);
			}
			limits_from(p, cfg, db);
			p->gone = false;
		}
		pthread_mutex_unlock(&p->lock);
	}
	/* Groups whose entry now lists more hosts get their new members. */
	for (struct pool *p = R.pools; p; p = p->next) {
		const struct db_entry *db = config_find_db(cfg, p->name);
		if (db && p->group == p)
			group_fill(p, cfg, db);
	}
	pthread_mutex_unlock(&R.lock);
}

void pool_registry_foreach(void (*fn)(struct pool *p, void *arg), void *arg)
{
	pthread_mutex_lock(&R.lock);
	for (struct pool *p = R.pools; p; p = p->next)
		fn(p, arg);
	pthread_mutex_unlock(&R.lock);
}

/* Increment `c` if it stays within `limit` (0: no limit). */
static bool counter_claim(struct pool_counter *c, int limit)
{
	int n = atomic_load(&c->n);
	do {
		if (limit > 0 && n >= limit)
			return false;
	} while (!atomic_compare_exchange_weak(&c->n, &n, n + 1));
	return true;
}

static bool claim_slot(struct pool *p, bool allow_reserve)
{
	int limit = p->pool_size + (allow_reserve ? p->reserve_pool : 0);
	if (p->gone || p->n_servers >= limit)
		return false;
	if (!counter_claim(p->db_count, p->max_db_connections))
		return false;
	if (!counter_claim(p->user_count, p->max_user_connections)) {
		atomic_fetch_sub(&p->db_count->n, 1);
		return false;
	}
	p->n_servers++;
	p->n_connecting++;
	p->servers_opened++;
	return true;
}

static void release_slot(struct pool *p)
{
	p->n_servers--;
	p->servers_closed++;
	atomic_fetch_sub(&p->db_count->n, 1);
	atomic_fetch_sub(&p->user_count->n, 1);
}

static void enqueue(struct pool *p, int worker, struct pool_waiter *w, uint64_t now)
{
	if (w->state == WAITER_QUEUED)
		return;
	w->worker = worker;
	w->ticket = p->next_ticket++;
	w->since_usec = now;
	w->state = WAITER_QUEUED;
	list_append(&p->local[worker].waiting, &w->node);
	p->local[worker].n_waiting++;
	p->n_waiting++;
	p->waits++;
}

static void dequeue(struct pool *p, struct pool_waiter *w)
{
	list_del(&w->node);
	p->local[w->worker].n_waiting--;
	p->n_waiting--;
	w->state = WAITER_NONE;
}

static struct pool_member *pop_idle(struct pool *p, int worker)
{
	struct list *n = list_pop(&p->local[worker].idle);
	if (!n)
		return NULL;
	p->local[worker].n_idle--;
	struct pool_member *m = container_of(n, struct pool_member, node);
	m->idle = false;
	return m;
}

enum pool_take pool_take(struct pool *p, int worker, struct pool_waiter *w, bool allow_reserve,
                         uint64_t now, struct pool_member **m, int *steal_from)
{
	enum pool_take r;
	*m = NULL;
	*steal_from = -1;
	pthread_mutex_lock(&p->lock);
	struct pool_local *l = &p->local[worker];
	/* Only the oldest local waiter may take a local idle server. */
	bool first = w->state != WAITER_QUEUED || list_first(&l->waiting) == &w->node;
	if (first && l->n_idle > 0) {
		*m = pop_idle(p, worker);
		if (w->state == WAITER_QUEUED)
			dequeue(p, w);
		r = POOL_TAKE_IDLE;
		goto out;
	}
	enqueue(p, worker, w, now);
	if (p->gone) {
		snprintf(p->last_error, sizeof(p->last_error), "database \"%s\" was removed",
		         p->name);
		strlcopy(p->last_sqlstate, "3D000", sizeof(p->last_sqlstate));
		dequeue(p, w);
		r = POOL_TAKE_FAIL;
		goto out;
	}
	/* Idle servers elsewhere: one of them is handed over. */
	for (int i = 0; i < R.n_workers; i++) {
		if (i != worker && p->local[i].n_idle > 0) {
			*steal_from = i;
			r = POOL_TAKE_WAIT;
			goto out;
		}
	}
	/* Connecting servers will serve the waiters ahead of us first. */
	bool down = atomic_load(&p->down);
	if (now < p->retry_at_usec || (down && p->n_connecting > 0)) {
		if (p->n_servers == 0 && !down) {
			dequeue(p, w);
			r = POOL_TAKE_FAIL;
		} else {
			r = POOL_TAKE_WAIT; /* a down pool is tried again by the sweep */
		}
		goto out;
	}
	/* Servers being opened will serve the waiters first. */
	if (p->n_connecting >= p->n_waiting) {
		r = POOL_TAKE_WAIT;
		goto out;
	}
	r = claim_slot(p, allow_reserve) ? POOL_TAKE_CONNECT : POOL_TAKE_WAIT;
out:
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* The queued waiter with the smallest ticket, on any worker. */
static struct pool_waiter *oldest_waiter(struct pool *p)
{
	struct pool_waiter *best = NULL;
	for (int i = 0; i < R.n_workers; i++) {
		struct list *n = list_first(&p->local[i].waiting);
		if (!n)
			continue;
		struct pool_waiter *w = container_of(n, struct pool_waiter, node);
		if (!best || w->ticket < best->ticket)
			best = w;
	}
	return best;
}

struct pool_give pool_give(struct pool *p, int worker, struct pool_member *m, uint64_t now)
{
	struct pool_give g = {.kind = POOL_GIVE_IDLE, .worker = worker};
	(void)now;
	pthread_mutex_lock(&p->lock);
	struct pool_waiter *w = oldest_waiter(p);
	if (w) {
		int on = w->worker;
		dequeue(p, w);
		if (on == worker) {
			g.kind = POOL_GIVE_LOCAL;
			g.waiter = w;
		} else {
			w->state = WAITER_HANDOFF;
			g.kind = POOL_GIVE_REMOTE;
			g.worker = on;
			g.client_id = w->client_id;
		}
	} else {
		m->worker = worker;
		m->idle = true;
		list_prepend(&p->local[worker].idle, &m->node); /* LIFO: warm servers first */
		p->local[worker].n_idle++;
	}
	pthread_mutex_unlock(&p->lock);
	return g;
}

bool pool_take_idle(struct pool *p, int worker, struct pool_member **m)
{
	pthread_mutex_lock(&p->lock);
	*m = pop_idle(p, worker);
	pthread_mutex_unlock(&p->lock);
	return *m != NULL;
}

enum waiter_state pool_waiter_remove(struct pool *p, struct pool_waiter *w)
{
	pthread_mutex_lock(&p->lock);
	enum waiter_state s = w->state;
	if (s == WAITER_QUEUED)
		dequeue(p, w);
	w->state = WAITER_NONE;
	pthread_mutex_unlock(&p->lock);
	return s;
}

static int worker_to_kick(struct pool *p)
{
	struct pool_waiter *w = oldest_waiter(p);
	return w ? w->worker : -1;
}

int pool_server_closed(struct pool *p, struct pool_member *m, uint32_t gen)
{
	pthread_mutex_lock(&p->lock);
	if (gen != p->target_gen && p->n_stale > 0)
		p->n_stale--;
	if (m->idle) {
		list_del(&m->node);
		p->local[m->worker].n_idle--;
		m->idle = false;
	}
	release_slot(p);
	int k = worker_to_kick(p);
	pthread_mutex_unlock(&p->lock);
	return k;
}

void pool_connected(struct pool *p, uint32_t gen, const void *welcome, size_t len)
{
	void *copy = xmalloc(len ? len : 1);
	if (len)
		memcpy(copy, welcome, len);
	pthread_mutex_lock(&p->lock);
	p->n_connecting--;
	p->retry_at_usec = 0;
	atomic_store(&p->down, false);
	p->last_error[0] = '\0';
	if (gen == p->target_gen) {
		void *old = p->welcome;
		p->welcome = copy;
		p->welcome_len = len;
		p->welcome_gen = gen;
		copy = old;
	}
	pthread_mutex_unlock(&p->lock);
	free(copy);
}

void *pool_welcome(struct pool *p, size_t *len)
{
	void *copy = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->welcome && p->welcome_gen == p->target_gen) {
		copy = xmalloc(p->welcome_len ? p->welcome_len : 1);
		if (p->welcome_len)
			memcpy(copy, p->welcome, p->welcome_len);
		*len = p->welcome_len;
	}
	pthread_mutex_unlock(&p->lock);
	return copy;
}

int pool_connect_failed(struct pool *p, const char *sqlstate, const char *message, uint64_t now,
                        double retry_sec, bool down)
{
	pthread_mutex_lock(&p->lock);
	p->n_connecting--;
	release_slot(p);
	strlcopy(p->last_sqlstate, sqlstate, sizeof(p->last_sqlstate));
	strlcopy(p->last_error, message, sizeof(p->last_error));
	p->retry_at_usec = now + (uint64_t)(retry_sec * 1e6);
	atomic_store(&p->down, down);
	int k = worker_to_kick(p);
	pthread_mutex_unlock(&p->lock);
	return k;
}

struct pool_waiter *pool_first_waiter(struct pool *p, int worker)
{
	pthread_mutex_lock(&p->lock);
	struct list *n = list_first(&p->local[worker].waiting);
	pthread_mutex_unlock(&p->lock);
	return n ? container_of(n, struct pool_waiter, node) : NULL;
}

void pool_target_copy(struct pool *p, struct pool_target *out, uint32_t *gen)
{
	pthread_mutex_lock(&p->lock);
	out->host = dup_or_null(p->target.host);
	out->port = p->target.port;
	out->dbname = dup_or_null(p->target.dbname);
	out->user = dup_or_null(p->target.user);
	out->password = dup_or_null(p->target.password);
	out->client_encoding = dup_or_null(p->target.client_encoding);
	out->datestyle = dup_or_null(p->target.datestyle);
	out->timezone = dup_or_null(p->target.timezone);
	out->application_name = dup_or_null(p->target.application_name);
	*gen = p->target_gen;
	pthread_mutex_unlock(&p->lock);
}

bool pool_reserve_slot(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	bool ok = p->n_servers < p->min_pool_size && now_usec() >= p->retry_at_usec &&
	        claim_slot(p, false);
	pthread_mutex_unlock(&p->lock);
	return ok;
}

void pool_set_secret(struct pool *p, const char *secret)
{
	char *copy = xstrdup(secret);
	pthread_mutex_lock(&p->lock);
	char *old = p->secret;
	p->secret = copy;
	pthread_mutex_unlock(&p->lock);
	if (old) {
		secure_zero(old, strlen(old));
		free(old);
	}
}

bool pool_copy_secret(struct pool *p, char *out, size_t n)
{
	pthread_mutex_lock(&p->lock);
	bool ok = p->secret && strlcopy(out, p->secret, n) < n;
	pthread_mutex_unlock(&p->lock);
	if (!ok && n > 0)
		out[0] = '\0';
	return ok;
}

void pool_reconnect(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->target_gen++;
	p->n_stale = p->n_servers;
	pthread_mutex_unlock(&p->lock);
}

int pool_active_servers(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	int idle = 0;
	for (int i = 0; i < R.n_workers; i++)
		idle += p->local[i].n_idle;
	int active = p->n_servers - p->n_connecting - idle;
	pthread_mutex_unlock(&p->lock);
	return active < 0 ? 0 : active;
}

int pool_stale_servers(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	int n = p->n_stale;
	pthread_mutex_unlock(&p->lock);
	return n;
}

const uint64_t pool_hist_bounds_us[POOL_HIST_BUCKETS - 1] = {
        500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000,
};

void pool_hist_add(atomic_uint_fast64_t *h, uint64_t usec)
{
	int i = 0;
	while (i < POOL_HIST_BUCKETS - 1 && usec > pool_hist_bounds_us[i])
		i++;
	atomic_fetch_add_explicit(&h[i], 1, memory_order_relaxed);
}
