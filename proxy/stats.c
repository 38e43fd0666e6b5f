#include <config.h>

#include "proxy/stats.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "pool/pool.h"

struct stats {
	struct ev_loop *loop;
	ev_timer timer;
	double period;
	bool log;
	pthread_mutex_t lock;
	struct db_totals *prev; /* at the start of the current period */
	size_t n_prev;
	struct db_averages *avg; /* of the last full period */
	size_t n_avg;
};

struct collect {
	struct db_totals *v;
	size_t n, cap;
};

static void add_pool(struct pool *p, void *arg)
{
	struct collect *c = arg;
	struct db_totals *t = NULL;
	for (size_t i = 0; i < c->n && !t; i++)
		if (strcmp(c->v[i].name, p->name) == 0)
			t = &c->v[i];
	if (!t) {
		if (c->n == c->cap) {
			c->cap = c->cap ? 2 * c->cap : 8;
			c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
		}
		t = &c->v[c->n++];
		memset(t, 0, sizeof(*t));
		strlcopy(t->name, p->name, sizeof(t->name));
	}
	t->xacts += atomic_load_explicit(&p->st.xacts, memory_order_relaxed);
	t->queries += atomic_load_explicit(&p->st.queries, memory_order_relaxed);
	t->recv += atomic_load_explicit(&p->st.recv, memory_order_relaxed);
	t->sent += atomic_load_explicit(&p->st.sent, memory_order_relaxed);
	t->xact_us += atomic_load_explicit(&p->st.xact_us, memory_order_relaxed);
	t->query_us += atomic_load_explicit(&p->st.query_us, memory_order_relaxed);
	t->wait_us += atomic_load_explicit(&p->st.wait_us, memory_order_relaxed);
	t->waited += atomic_load_explicit(&p->st.waited, memory_order_relaxed);
}

struct db_totals *stats_totals(size_t *n)
{
	struct collect c = {0};
	pool_registry_foreach(add_pool, &c);
	*n = c.n;
	return c.v;
}

static double per(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0;
}

static void sample_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct stats *st = t->data;
	(void)loop;
	(void)revents;
	size_t n;
	struct db_totals *now = stats_totals(&n);
	struct db_averages *avg = xcalloc(n ? n : 1, sizeof(*avg));
	for (size_t i = 0; i < n; i++) {
		struct db_totals d = now[i];
		for (size_t j = 0; j < st->n_prev; j++) {
			const struct db_totals *p = &st->prev[j];
			if (strcmp(p->name, d.name) != 0)
				continue;
			d.xacts -= p->xacts;
			d.queries -= p->queries;
			d.recv -= p->recv;
			d.sent -= p->sent;
			d.xact_us -= p->xact_us;
			d.query_us -= p->query_us;
			d.wait_us -= p->wait_us;
			d.waited -= p->waited;
			break;
		}
		struct db_averages *a = &avg[i];
		strlcopy(a->name, d.name, sizeof(a->name));
		a->xacts = (double)d.xacts / st->period;
		a->queries = (double)d.queries / st->period;
		a->recv = (double)d.recv / st->period;
		a->sent = (double)d.sent / st->period;
		a->xact_us = per(d.xact_us, d.xacts);
		a->query_us = per(d.query_us, d.queries);
		a->wait_us = per(d.wait_us, d.waited);
		if (st->log)
			log_info("stats: %s: %.1f xacts/s, %.1f queries/s, in %.0f B/s, out %.0f "
			         "B/s, xact %.0f us, query %.0f us, wait %.0f us",
			         a->name, a->xacts, a->queries, a->recv, a->sent, a->xact_us,
			         a->query_us, a->wait_us);
	}
	pthread_mutex_lock(&st->lock);
	struct db_averages *old = st->avg;
	st->avg = avg;
	st->n_avg = n;
	pthread_mutex_unlock(&st->lock);
	free(old);
	free(st->prev);
	st->prev = now;
	st->n_prev = n;
}

struct db_averages *stats_averages(struct stats *st, size_t *n)
{
	pthread_mutex_lock(&st->lock);
	*n = st->n_avg;
	struct db_averages *copy = xcalloc(st->n_avg ? st->n_avg : 1, sizeof(*copy));
	if (st->n_avg)
		memcpy(copy, st->avg, st->n_avg * sizeof(*copy));
	pthread_mutex_unlock(&st->lock);
	return copy;
}

void stats_reconfigure(struct stats *st, const struct config *cfg)
{
	st->log = cfg->log_stats;
	if (st->period == cfg->stats_period && ev_is_active(&st->timer))
		return;
	st->period = cfg->stats_period;
	ev_timer_stop(st->loop, &st->timer);
	ev_timer_set(&st->timer, st->period, st->period);
	ev_timer_start(st->loop, &st->timer);
}

struct stats *stats_new(struct ev_loop *loop, const struct config *cfg)
{
	struct stats *st = xcalloc(1, sizeof(*st));
	st->loop = loop;
	pthread_mutex_init(&st->lock, NULL);
	ev_init(&st->timer, sample_cb);
	st->timer.data = st;
	st->prev = stats_totals(&st->n_prev);
	stats_reconfigure(st, cfg);
	return st;
}

void stats_free(struct stats *st)
{
	if (!st)
		return;
	ev_timer_stop(st->loop, &st->timer);
	pthread_mutex_destroy(&st->lock);
	free(st->prev);
	free(st->avg);
	free(st);
}
