/* A start line for client threads in the integration tests: each thread
 * arrives (logged in), the main thread opens the gate once all are there so
 * they start together, and each counts itself finished.  Threads give up
 * waiting at the deadline. */
#ifndef PGMOAT_TESTS_GATE_H
#define PGMOAT_TESTS_GATE_H

#include <pthread.h>
#include <stdbool.h>

struct h_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	int arrived, finished;
	double deadline; /* h_now() after which threads give up */
};

/* The gate, closed, with a deadline `seconds` from now. */
void h_gate_init(struct h_gate *g, double seconds);
void h_gate_destroy(struct h_gate *g);
/* A thread arrives (or, with `finished`, is done). */
void h_gate_arrive(struct h_gate *g, bool finished);
/* Waits until the gate opens; false if the deadline passed first. */
bool h_gate_wait_open(struct h_gate *g);
void h_gate_open(struct h_gate *g);
/* How many arrived (or finished). */
int h_gate_count(struct h_gate *g, bool finished);

#endif
