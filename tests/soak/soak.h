/* The soak test's clients (see soak.c for the whole run).
 *
 * Every client is a thread with its own blocking libpq connection through
 * pgmoat.  A writer runs transactions that bump two counters and insert a
 * uniquely-keyed ledger row; a reader inserts a row and reads it back at
 * once (read-your-writes).  Each client records, for every transaction it
 * started, what it saw: committed, failed, or in doubt (the connection was
 * lost after COMMIT may have reached the server). */
#ifndef PGMOAT_TESTS_SOAK_H
#define PGMOAT_TESTS_SOAK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#define SOAK_KEYS 16 /* counters: hot rows on purpose */

/* What a client saw of one transaction. */
enum soak_outcome { SOAK_NONE, SOAK_COMMITTED, SOAK_FAILED, SOAK_DOUBT };

/* How a writer sends its transaction. */
enum soak_mode { MODE_STEP, MODE_PREPARED, MODE_PIPELINE, MODE_SIMPLE, MODE_COUNT };

/* How the chaos loop asks a client to drop its connection. */
enum soak_kill { KILL_NONE, KILL_RST, KILL_FIN };

struct soak_client {
	int index; /* transaction ids are index << 32 | seq */
	bool reader;
	const char *conninfo;
	const atomic_bool *stop;
	pthread_t thread;
	atomic_bool finished;
	atomic_int kill_req; /* enum soak_kill, set by the chaos loop */
	atomic_llong progress_usec; /* last time a step completed */
	atomic_int phase; /* what it is doing, for a hang's diagnostics */

	PGconn *conn;
	pthread_mutex_t cancel_lock; /* guards cancel, against the chaos loop */
	PGcancel *cancel; /* the current connection's */
	atomic_bool cancel_sent; /* a cancel request was sent for it */
	bool prepared[2]; /* soak_upd, soak_ins exist on this connection */
	uint32_t rand;

	/* One outcome per transaction, indexed by seq. */
	unsigned char *out;
	size_t n, cap;

	/* Counts (read by the main thread once the client finished). */
	long committed, failed, doubt;
	long by_mode[MODE_COUNT];
	long killed[3];
	long deliberate; /* transactions failed on purpose (1/0, ROLLBACK) */
	long connects, connect_failures;
	long ryw_checked, ryw_missed, ryw_unchecked, reads_on_replica;
	long canceled; /* 57014 errors after a cancel request */
	long unexpected; /* errors no chaos event explains, transaction warnings */
	char first_error[200]; /* the first unexpected error, for the report */
	char first_connect_error[200];
	char ryw_detail[200]; /* the first read-your-writes miss */
};

/* The thread's body. */
void *soak_client_run(void *arg);
/* Sends a cancel request for the client's connection (chaos loop); false
 * if it has none or sending failed. */
bool soak_client_cancel(struct soak_client *c);
/* What a client is doing (soak_client.phase) as text. */
const char *soak_phase_name(int phase);
/* Monotonic microseconds. */
long long soak_usec(void);

#endif
