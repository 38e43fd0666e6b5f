#include <config.h>

#include "proxy/pqconn.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

static void io_cb(struct ev_loop *loop, ev_io *io, int revents);

void pqconn_one_line(char *out, size_t size, const char *msg)
{
	if (size == 0)
		return;
	size_t w = 0;
	for (const char *r = msg ? msg : ""; *r && w + 1 < size; r++) {
		if (*r == '\n' || *r == '\r' || *r == '\t') {
			while (r[1] == '\n' || r[1] == '\r' || r[1] == '\t' || r[1] == ' ')
				r++;
			if (w > 0 && out[w - 1] != ' ')
				out[w++] = ' ';
			continue;
		}
		out[w++] = *r;
	}
	while (w > 0 && out[w - 1] == ' ')
		w--;
	out[w] = '\0';
}

static void watch(struct pqconn *pc, bool rd, bool wr)
{
	int fd = pc->pg ? PQsocket(pc->pg) : -1;
	int events = (rd ? EV_READ : 0) | (wr ? EV_WRITE : 0);
	if (ev_is_active(&pc->io) &&
	    (pc->io_fd != fd || (pc->io.events & (EV_READ | EV_WRITE)) != events))
		ev_io_stop(pc->loop, &pc->io);
	if (fd < 0 || !events)
		return;
	if (!ev_is_active(&pc->io)) {
		ev_io_init(&pc->io, io_cb, fd, events);
		pc->io.data = pc;
		pc->io_fd = fd;
		ev_io_start(pc->loop, &pc->io);
	}
}

void pqconn_init(struct pqconn *pc, struct ev_loop *loop, const struct pqconn_ops *ops, void *arg,
                 const char *label)
{
	memset(pc, 0, sizeof(*pc));
	pc->loop = loop;
	pc->ops = ops;
	pc->arg = arg;
	pc->label = label;
	pc->io_fd = -1;
	pc->state = PQCONN_CLOSED;
}

void pqconn_close(struct pqconn *pc)
{
	if (ev_is_active(&pc->io))
		ev_io_stop(pc->loop, &pc->io);
	pc->io_fd = -1;
	if (pc->pg)
		PQfinish(pc->pg);
	pc->pg = NULL;
	pc->state = PQCONN_CLOSED;
}

/* Closes, then tells the owner (which may free `pc`). */
static void fail(struct pqconn *pc, const char *prefix, const char *why)
{
	char line[512], msg[600];
	pqconn_one_line(line, sizeof(line), why);
	snprintf(msg, sizeof(msg), "%s%s", prefix, line[0] ? line : "failed");
	pqconn_close(pc);
	pc->ops->failed(pc, msg);
}

static void fail_pq(struct pqconn *pc, const char *prefix)
{
	/* The message lives in the PGconn, which fail() finishes. */
	char why[512];
	strlcopy(why, pc->pg ? PQerrorMessage(pc->pg) : "out of memory", sizeof(why));
	fail(pc, prefix, why);
}

static void notice_cb(void *arg, const char *message)
{
	struct pqconn *pc = arg;
	char msg[512];
	pqconn_one_line(msg, sizeof(msg), message);
	log_debug("%s: %s", pc->label ? pc->label : "libpq", msg);
}

static void connect_step(struct pqconn *pc)
{
	switch (PQconnectPoll(pc->pg)) {
	case PGRES_POLLING_READING:
		watch(pc, true, false);
		return;
	case PGRES_POLLING_WRITING:
		watch(pc, false, true);
		return;
	case PGRES_POLLING_FAILED:
		fail_pq(pc, "could not connect: ");
		return;
	default:
		break;
	}
	if (PQsetnonblocking(pc->pg, 1) != 0) {
		fail(pc, "", "could not make the connection non-blocking");
		return;
	}
	pc->state = PQCONN_IDLE;
	watch(pc, true, false); /* notice the server going away */
	pc->ops->connected(pc);
}

/* A libpq keyword with its value, left out when the value is NULL or "". */
static int add_kv(const char **keys, const char **vals, int n, const char *k, const char *v)
{
	if (!v || !*v)
		return n;
	keys[n] = k;
	vals[n] = v;
	return n + 1;
}

void pqconn_open(struct pqconn *pc, const struct pqconn_target *t)
{
	static const char *const modes[] = {"disable", "allow",     "prefer",
	                                    "require", "verify-ca", "verify-full"};
	pqconn_close(pc);
	char port[16], timeout[16];
	snprintf(port, sizeof(port), "%d", t->port > 0 ? t->port : 5432);
	snprintf(timeout, sizeof(timeout), "%d", t->connect_timeout);
	const char *keys[20], *vals[20];
	int n = 0;
#define KV(k, v) n = add_kv(keys, vals, n, (k), (v))
	KV("host", t->host && *t->host ? t->host : PQCONN_SOCKDIR);
	KV("port", port);
	KV("dbname", t->dbname);
	KV("user", t->user);
	KV("password", t->password);
	KV("options", t->options);
	KV("application_name", t->application_name);
	KV("connect_timeout", timeout);
	KV("target_session_attrs", t->target_session_attrs);
	KV("sslmode",
	   t->sslmode >= 0 && t->sslmode < (int)ARRAY_SIZE(modes) ? modes[t->sslmode] : "prefer");
	KV("gssencmode", "disable");
	KV("sslrootcert", t->sslrootcert);
	if (t->sslcert && *t->sslcert) {
		KV("sslcert", t->sslcert);
		KV("sslkey", t->sslkey);
	}
#undef KV
	keys[n] = vals[n] = NULL;
	pc->pg = PQconnectStartParams(keys, vals, 0);
	pc->state = PQCONN_CONNECTING;
	if (!pc->pg || PQstatus(pc->pg) == CONNECTION_BAD) {
		fail_pq(pc, "could not connect: ");
		return;
	}
	PQsetNoticeProcessor(pc->pg, notice_cb, pc);
	connect_step(pc);
}

bool pqconn_query(struct pqconn *pc, const char *sql, int n_params, const char *const *values)
{
	pc->state = PQCONN_BUSY;
	int sent = n_params > 0
	        ? PQsendQueryParams(pc->pg, sql, n_params, NULL, values, NULL, NULL, 0)
	        : PQsendQuery(pc->pg, sql);
	int f = sent ? PQflush(pc->pg) : -1;
	if (f < 0) {
		fail_pq(pc, "");
		return false;
	}
	watch(pc, true, f == 1);
	return true;
}

/* Reads what arrived; hands on the results of the running query. */
static void read_results(struct pqconn *pc)
{
	if (!PQconsumeInput(pc->pg)) {
		fail_pq(pc, pc->state == PQCONN_BUSY ? "" : "connection lost: ");
		return;
	}
	if (pc->state != PQCONN_BUSY) {
		/* Idle: only a notice or the server going away can come. */
		if (PQstatus(pc->pg) != CONNECTION_OK)
			fail(pc, "", "connection lost");
		return;
	}
	while (!PQisBusy(pc->pg)) {
		PGresult *r = PQgetResult(pc->pg);
		if (!r) {
			pc->state = PQCONN_IDLE;
			watch(pc, true, false);
			pc->ops->done(pc);
			return;
		}
		pc->ops->result(pc, r);
		PQclear(r);
	}
	watch(pc, true, false);
}

void pqconn_step(struct pqconn *pc, int revents)
{
	if (!pc->pg)
		return;
	if (pc->state == PQCONN_CONNECTING) {
		connect_step(pc);
		return;
	}
	if (revents & EV_WRITE) {
		int f = PQflush(pc->pg);
		if (f < 0) {
			fail_pq(pc, "");
			return;
		}
		watch(pc, true, f == 1);
	}
	if ((revents & EV_READ) && pc->pg)
		read_results(pc);
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	pqconn_step(io->data, revents);
}
