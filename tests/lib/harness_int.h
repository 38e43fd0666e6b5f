/* What harness.c and servers.c share; not for tests. */
#ifndef PGMOAT_TESTS_HARNESS_INT_H
#define PGMOAT_TESTS_HARNESS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "tests/lib/harness.h"

#define H_MAX_PG 4
#define H_MAX_MOAT 8
#define H_MAX_CHILD 8

/* The harness's one runtime struct.  The cleanup reads it from a signal
 * handler, so it only ever grows while a test runs. */
struct h_runtime {
	char name[64];
	const char *bin;
	const char *srcdir;
	const char *builddir;
	char *base; /* the test's temp dir */
	char *sockbase; /* short dir for Unix sockets */
	pid_t owner;
	bool keep;
	bool done;
	bool failed;
	bool drop; /* run PostgreSQL as another user */
	bool no_pg_user;
	uid_t pg_uid;
	gid_t pg_gid;
	char *pg_bindir;
	struct h_pg *pgs[H_MAX_PG];
	int n_pgs;
	struct h_moat *moats[H_MAX_MOAT];
	int n_moats;
	/* Atomic: tests run programs from several threads (h_run), and the
	 * timeout's handler reads them. */
	_Atomic pid_t children[H_MAX_CHILD];
	char *rm_argv[5];
	atomic_int run_seq;
	int userlist_written;
	char *wrapper[16]; /* PGMOAT_TEST_WRAPPER split into words, NULL-terminated */
	double slow; /* h_slow() */
};

extern struct h_runtime h_rt;

/* fork + exec with output appended to `out_path`, stdin from /dev/null, in
 * its own process group, as the PostgreSQL user if `as_pg`. */
pid_t h_spawn(const char *const argv[], const char *const env[], const char *out_path, bool as_pg,
              const char *cwd);
/* Waits up to `secs` for child `pid`; true once it is gone. */
bool h_reap_within(pid_t pid, double secs, int *status);
/* Signals `pid`, escalating to SIGQUIT and SIGKILL, and reaps it. */
void h_stop_pid(pid_t pid, int first_sig, double wait1, int *status);
/* Exit status, or 128 + signal. */
int h_status_code(int wait_status);
int h_run_as(const char *const argv[], const char *const env[], double timeout, char **output,
             bool as_pg, const char *cwd);

#endif
