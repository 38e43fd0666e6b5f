/*
 * bench/pgconns.c: many libpq connections at once, for bench/run (which
 * compiles it with `cc -O2 pgconns.c $(pkg-config --cflags --libs libpq)`).
 *
 *   pgconns hold -n N [-p INFLIGHT] [-t SECS] [-H HOLD_SECS] CONNINFO
 *
 *     Opens N connections, at most INFLIGHT (default 100) being set up at a
 *     time, each until it has logged in (CONNECTION_OK), giving up on those
 *     not done after SECS (default 30) seconds.  Then prints one line
 *
 *       connected=K failed=F unfinished=U seconds=S
 *
 *     and holds the connections that logged in open and idle until SIGTERM
 *     or SIGINT, or HOLD_SECS (default 600) seconds; then prints
 *
 *       lost=L
 *
 *     (connections the server closed while they were held) and closes them.
 *
 *   pgconns churn -n N [-p CONCURRENCY] [-t SECS] CONNINFO
 *
 *     Connects, logs in and disconnects, CONCURRENCY (default 10)
 *     connections at a time, until N connections are done or no new one is
 *     started after SECS (default 10) seconds (those under way get 10 s more
 *     to finish); prints
 *
 *       done=K failed=F unfinished=U seconds=S rate=R mean_ms=M
 *
 *     unfinished: connections still under way when given up on; rate:
 *     connections done per second; mean_ms: mean time from PQconnectStart
 *     to CONNECTION_OK.
 *
 * Every connection is non-blocking (PQconnectStart and PQconnectPoll under
 * poll(2)).  The error messages of failed connections go to stderr, each
 * distinct one once with its count.  Exit status: 0 when every connection
 * logged in (and, for hold, none was lost), 1 otherwise, 2 on a usage error.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct slot {
	PGconn *conn; /* NULL: free */
	PostgresPollingStatusType st;
	double start;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- errors */

#define MAX_ERRS 8
static char *err_msg[MAX_ERRS];
static long err_count[MAX_ERRS];
static long err_other;

static void note_error(const char *msg)
{
	char buf[512];
	size_t len;
	int i;

	snprintf(buf, sizeof(buf), "%s", msg && *msg ? msg : "(no message)");
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	for (i = 0; i < MAX_ERRS && err_msg[i]; i++) {
		if (strcmp(err_msg[i], buf) == 0) {
			err_count[i]++;
			return;
		}
	}
	if (i < MAX_ERRS && (err_msg[i] = strdup(buf)) != NULL) {
		err_count[i] = 1;
		return;
	}
	err_other++;
}

/* Print the errors noted so far, and forget them. */
static void print_errors(void)
{
	int i;

	for (i = 0; i < MAX_ERRS && err_msg[i]; i++) {
		fprintf(stderr, "%ld x %s\n", err_count[i], err_msg[i]);
		free(err_msg[i]);
		err_msg[i] = NULL;
	}
	if (err_other)
		fprintf(stderr, "%ld x other errors\n", err_other);
	err_other = 0;
	fflush(stderr);
}

/* ---------------------------------------------------------------- setup */

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: pgconns hold -n N [-p INFLIGHT] [-t SECS] [-H HOLD_SECS] CONNINFO\n"
	        "       pgconns churn -n N [-p CONCURRENCY] [-t SECS] CONNINFO\n");
	exit(2);
}

static long parse_long(const char *s, long min)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min)
		usage();
	return v;
}

/* Start a connection in a free slot: 0, or -1 when it failed at once. */
static int slot_start(struct slot *s, const char *conninfo)
{
	s->start = now();
	s->conn = PQconnectStart(conninfo);
	if (s->conn == NULL) {
		note_error("PQconnectStart: out of memory");
		return -1;
	}
	if (PQstatus(s->conn) == CONNECTION_BAD) {
		note_error(PQerrorMessage(s->conn));
		PQfinish(s->conn);
		s->conn = NULL;
		return -1;
	}
	/* Just after PQconnectStart, poll as if PQconnectPoll said WRITING. */
	s->st = PGRES_POLLING_WRITING;
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode, *conninfo;
	long n = -1, par = -1, secs = -1, hold_secs = 600;
	int hold, opt;

	if (argc < 2)
		usage();
	mode = argv[1];
	if (strcmp(mode, "hold") == 0)
		hold = 1;
	else if (strcmp(mode, "churn") == 0)
		hold = 0;
	else
		usage();
	optind = 2;
	while ((opt = getopt(argc, argv, "n:p:t:H:")) != -1) {
		switch (opt) {
		case 'n':
			n = parse_long(optarg, 1);
			break;
		case 'p':
			par = parse_long(optarg, 1);
			break;
		case 't':
			secs = parse_long(optarg, 1);
			break;
		case 'H':
			hold_secs = parse_long(optarg, 1);
			break;
		default:
			usage();
		}
	}
	if (n < 0 || optind != argc - 1)
		usage();
	conninfo = argv[optind];
	if (par < 0)
		par = hold ? 100 : 10;
	if (par > n)
		par = n;
	if (secs < 0)
		secs = hold ? 30 : 10;

	raise_fd_limit();
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR */
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		signal(SIGPIPE, SIG_IGN);
	}

	struct slot *slots = calloc((size_t)par, sizeof(*slots));
	struct pollfd *pfds = calloc((size_t)(hold ? n : par), sizeof(*pfds));
	int *idx = calloc((size_t)par, sizeof(*idx));
	PGconn **held = hold ? calloc((size_t)n, sizeof(*held)) : NULL;
	if (!slots || !pfds || !idx || (hold && !held)) {
		fprintf(stderr, "pgconns: out of memory\n");
		return 1;
	}

	/* Hold: every connection must be done within SECS.  Churn: no new
	 * connection after SECS, and 10 s more for those under way. */
	double t0 = now();
	double start_until = t0 + (double)secs;
	double hard_until = hold ? start_until : start_until + 10.0;
	long started = 0, ok = 0, failed = 0, active = 0, nheld = 0;
	double sum_ms = 0, t_end;

	for (;;) {
		double t = now();
		long i, np = 0;
		int rc;

		if (!stop_flag && t < start_until) {
			for (i = 0; i < par && started < n; i++) {
				if (slots[i].conn)
					continue;
				started++;
				if (slot_start(&slots[i], conninfo) < 0)
					failed++;
				else
					active++;
			}
		}
		if (active == 0 && (started >= n || t >= start_until || stop_flag))
			break;
		if (t >= hard_until || stop_flag)
			break;

		for (i = 0; i < par; i++) {
			int fd;

			if (!slots[i].conn)
				continue;
			fd = PQsocket(slots[i].conn);
			if (fd < 0) { /* no socket: let libpq report the failure */
				slots[i].st = PQconnectPoll(slots[i].conn);
				if (slots[i].st != PGRES_POLLING_FAILED &&
				    slots[i].st != PGRES_POLLING_OK)
					continue;
				pfds[np].fd = -1; /* handled below without poll */
			} else {
				pfds[np].fd = fd;
			}
			pfds[np].events = slots[i].st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			pfds[np].revents = 0;
			idx[np++] = (int)i;
		}
		rc = poll(pfds, (nfds_t)np, 100);
		if (rc < 0 && errno != EINTR) {
			perror("pgconns: poll");
			break;
		}
		for (i = 0; i < np; i++) {
			struct slot *s = &slots[idx[i]];

			if (pfds[i].fd >= 0) {
				if (rc <= 0 || !pfds[i].revents)
					continue;
				s->st = PQconnectPoll(s->conn);
			}
			if (s->st == PGRES_POLLING_OK) {
				ok++;
				sum_ms += (now() - s->start) * 1000.0;
				if (hold)
					held[nheld++] = s->conn;
				else
					PQfinish(s->conn);
				s->conn = NULL;
				active--;
			} else if (s->st == PGRES_POLLING_FAILED) {
				note_error(PQerrorMessage(s->conn));
				PQfinish(s->conn);
				s->conn = NULL;
				failed++;
				active--;
			}
		}
	}
	t_end = now();

	/* Connections still being set up are given up. */
	for (long i = 0; i < par; i++) {
		if (slots[i].conn) {
			PQfinish(slots[i].conn);
			slots[i].conn = NULL;
		}
	}
	/* Hold: every connection not logged in; churn: those given up on. */
	long unfinished = (hold ? n : started) - ok - failed;
	double elapsed = t_end - t0;

	if (!hold) {
		printf("done=%ld failed=%ld unfinished=%ld seconds=%.3f rate=%.1f mean_ms=%.3f\n",
		       ok, failed, unfinished, elapsed, elapsed > 0 ? (double)ok / elapsed : 0.0,
		       ok ? sum_ms / (double)ok : 0.0);
		fflush(stdout);
		print_errors();
		return failed || unfinished ? 1 : 0;
	}

	printf("connected=%ld failed=%ld unfinished=%ld seconds=%.3f\n", ok, failed, unfinished,
	       elapsed);
	fflush(stdout);
	print_errors();

	/* Hold them, idle; notice the ones the server closes. */
	long lost = 0;
	double hold_until = now() + (double)hold_secs;

	while (!stop_flag && now() < hold_until) {
		long i, np = 0;
		int rc;

		for (i = 0; i < nheld; i++) {
			if (!held[i])
				continue;
			pfds[np].fd = PQsocket(held[i]);
			pfds[np].events = POLLIN;
			pfds[np].revents = 0;
			np++;
		}
		if (np == 0)
			break;
		rc = poll(pfds, (nfds_t)np, 500);
		if (rc < 0 && errno != EINTR) {
			perror("pgconns: poll");
			break;
		}
		if (rc <= 0)
			continue;
		for (i = 0, np = 0; i < nheld; i++) {
			if (!held[i])
				continue;
			if (pfds[np++].revents == 0)
				continue;
			if (!PQconsumeInput(held[i]) || PQstatus(held[i]) == CONNECTION_BAD) {
				note_error(PQerrorMessage(held[i]));
				PQfinish(held[i]);
				held[i] = NULL;
				lost++;
			} else {
				PGnotify *nf;

				while ((nf = PQnotifies(held[i])) != NULL)
					PQfreemem(nf);
			}
		}
	}
	printf("lost=%ld\n", lost);
	fflush(stdout);
	if (lost)
		print_errors();
	for (long i = 0; i < nheld; i++) {
		if (held[i])
			PQfinish(held[i]);
	}
	return ok == n && lost == 0 ? 0 : 1;
}
