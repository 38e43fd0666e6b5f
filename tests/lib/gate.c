#include <config.h>

#include "tests/lib/gate.h"

#include <time.h>

#include "tests/lib/harness.h"

void h_gate_init(struct h_gate *g, double seconds)
{
	*g = (struct h_gate){.deadline = h_now() + seconds};
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
}

void h_gate_destroy(struct h_gate *g)
{
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
}

void h_gate_arrive(struct h_gate *g, bool finished)
{
	pthread_mutex_lock(&g->lock);
	if (finished)
		g->finished++;
	else
		g->arrived++;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

bool h_gate_wait_open(struct h_gate *g)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(g->deadline - h_now()) + 1;
	pthread_mutex_lock(&g->lock);
	int rc = 0;
	while (!g->open && rc == 0)
		rc = pthread_cond_timedwait(&g->cond, &g->lock, &ts);
	bool open = g->open;
	pthread_mutex_unlock(&g->lock);
	return open;
}

void h_gate_open(struct h_gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

int h_gate_count(struct h_gate *g, bool finished)
{
	pthread_mutex_lock(&g->lock);
	int n = finished ? g->finished : g->arrived;
	pthread_mutex_unlock(&g->lock);
	return n;
}
