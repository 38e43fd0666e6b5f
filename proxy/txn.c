#include <config.h>

#include "proxy/txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "pool/prepared.h"
#include "proxy/client.h"
#include "proxy/proto.h"
#include "proxy/server.h"
#include "proxy/session.h"
#include "proxy/sqlscan.h"
#include "proxy/worker.h"

/* A Query or Parse up to this size is looked at whole (guard, statement
 * names); a larger unnamed one is relayed unexamined. */
#define WHOLE_MAX (1u << 20)
/* Room for the names at the start of a Bind. */
#define BIND_PREFIX_MAX (64u << 10)

/* What the guard refuses. */
#define GUARDED (SQL_ADVISORY_LOCK | SQL_LISTEN | SQL_WITH_HOLD | SQL_TEMP_TABLE | SQL_PREPARE)

/* --- the queue of expected replies --- */

static struct rq_entry *rq_push(struct rq *q, uint8_t kind, uint8_t flags, uint64_t id,
                                const char *name)
{
	if (q->n == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 16;
		struct rq_entry *v = malloc(cap * sizeof(*v));
		if (!v)
			return NULL;
		for (uint32_t i = 0; i < q->n; i++)
			v[i] = q->v[(q->head + i) & (q->cap - 1)];
		free(q->v);
		q->v = v;
		q->cap = cap;
		q->head = 0;
	}
	struct rq_entry *e = &q->v[(q->head + q->n) & (q->cap - 1)];
	*e = (struct rq_entry){
	        .kind = kind, .flags = flags, .stmt_id = id, .name = name ? xstrdup(name) : NULL};
	q->n++;
	return e;
}

static struct rq_entry *rq_at(struct rq *q, uint32_t i)
{
	return &q->v[(q->head + i) & (q->cap - 1)];
}

static struct rq_entry *rq_head(struct rq *q)
{
	return q->n ? &q->v[q->head] : NULL;
}

static void rq_pop(struct rq *q, struct ps_registry *r)
{
	if (q->v[q->head].stmt && r)
		ps_unref(r, q->v[q->head].stmt);
	free(q->v[q->head].name);
	q->head = (q->head + 1) & (q->cap - 1);
	q->n--;
}

void rq_free(struct rq *q, struct ps_registry *r)
{
	while (q->n)
		rq_pop(q, r);
	free(q->v);
	*q = (struct rq){0};
}

/* Sync entries after the head: the server ignores Syncs during COPY FROM
 * STDIN, so they will get no ReadyForQuery. */
static void rq_drop_syncs(struct rq *q)
{
	uint32_t keep = q->n ? 1 : 0;
	for (uint32_t i = 1; i < q->n; i++) {
		struct rq_entry e = q->v[(q->head + i) & (q->cap - 1)];
		if (e.kind != 'S')
			q->v[(q->head + keep++) & (q->cap - 1)] = e;
	}
	q->n = keep;
}

/* --- client -> server --- */

enum need { NEED_OK, NEED_MORE, NEED_TOO_BIG, NEED_FAILED };

/* Make room for `want` bytes of the message at b->parsed; NEED_OK once they
 * have arrived. */
static enum need need_bytes(struct client *c, uint32_t want, uint32_t limit)
{
	struct buf *b = &c->conn.in;
	if (buf_unparsed(b) >= want)
		return NEED_OK;
	if (want > limit)
		return NEED_TOO_BIG;
	if (want > b->cap - (b->parsed - b->sent)) {
		if (!buf_grow(b, &c->w->bufs, want + (b->parsed - b->sent))) {
			client_fatal(c, "53200", "out of memory");
			return NEED_FAILED;
		}
	} else if (want > b->cap - b->parsed) {
		buf_compact(b);
	}
	return NEED_MORE;
}

/* Bytes of the client already passed but not yet written go out before
 * anything pgmoat writes in the stream itself. */
static void c2s_hold(struct client *c, struct server *s)
{
	struct buf *b = &c->conn.in;
	if (buf_unsent(b) > 0) {
		pkt_append(&s->conn.out, b->data + b->sent, buf_unsent(b));
		b->sent = b->parsed;
	}
}

static void put_parse(struct pkt *p, const char *name, const void *body, uint32_t len)
{
	pkt_begin(p, 'P');
	pkt_put_str(p, name);
	pkt_put_bytes(p, body, len);
	pkt_end(p);
}

/* SQL that raises `message` with `sqlstate` on the server; the message is
 * quoted twice (a literal inside the DO block's literal). */
static void put_raise_sql(struct pkt *p, const char *sqlstate, const char *message)
{
	struct pkt inner;
	pkt_init(&inner);
	static const char a[] = "BEGIN RAISE EXCEPTION USING ERRCODE = ";
	static const char m[] = ", MESSAGE = ";
	static const char z[] = "; END";
	pkt_put_bytes(&inner, a, sizeof(a) - 1);
	proto_put_literal(&inner, sqlstate);
	pkt_put_bytes(&inner, m, sizeof(m) - 1);
	proto_put_literal(&inner, message);
	pkt_put_bytes(&inner, z, sizeof(z));
	pkt_put_bytes(p, "DO ", 3);
	if (inner.failed)
		p->failed = true;
	else
		proto_put_literal(p, (const char *)inner.data);
	pkt_put_u8(p, 0);
	pkt_free(&inner);
}

/* The client's message of `len` at b->parsed is replaced by one that makes
 * the server raise the error: a Query for a Query, else an unnamed
 * Parse/Bind/Execute whose Execute fails (so the server skips to Sync). */
static bool replace_with_error(struct client *c, struct server *s, uint8_t type, uint32_t len,
                               const char *sqlstate, const char *message)
{
	struct pkt sql;
	pkt_init(&sql);
	put_raise_sql(&sql, sqlstate, message);
	c2s_hold(c, s);
	struct pkt *o = &s->conn.out;
	bool ok = !sql.failed;
	if (type == 'Q') {
		pkt_begin(o, 'Q');
		pkt_put_bytes(o, sql.data, sql.len);
		pkt_end(o);
		ok = ok && rq_push(&s->rq, 'Q', 0, 0, NULL);
	} else {
		static const uint8_t no_params[2] = {0, 0};
		pkt_begin(o, 'P');
		pkt_put_str(o, "");
		pkt_put_bytes(o, sql.data, sql.len);
		pkt_put_bytes(o, no_params, 2);
		pkt_end(o);
		pkt_begin(o, 'B');
		pkt_put_str(o, "");
		pkt_put_str(o, "");
		pkt_put_u16(o, 0);
		pkt_put_u16(o, 0);
		pkt_put_u16(o, 0);
		pkt_end(o);
		pkt_begin(o, 'E');
		pkt_put_str(o, "");
		pkt_put_u32(o, 0);
		pkt_end(o);
		ok = ok && rq_push(&s->rq, 'P', RQ_HIDE, 0, NULL) &&
		        rq_push(&s->rq, 'B', RQ_HIDE, 0, NULL) && rq_push(&s->rq, 'E', 0, 0, NULL);
		s->unsynced = true;
	}
	pkt_free(&sql);
	if (!ok) {
		client_fatal(c, "53200", "out of memory");
		return false;
	}
	frame_skip(&c->conn.in, len);
	log_client(c, LL_DEBUG, "refused with %s: %s", sqlstate, message);
	return true;
}

/* pgmoat's own Close of a statement on the server (evicted). */
static bool close_on_server(struct server *s, uint64_t id)
{
	char name[PS_NAME_SIZE];
	ps_server_name(id, name);
	pkt_begin(&s->conn.out, 'C');
	pkt_put_u8(&s->conn.out, 'S');
	pkt_put_str(&s->conn.out, name);
	pkt_end(&s->conn.out);
	return rq_push(&s->rq, 'C', RQ_HIDE, id, NULL) != NULL;
}

/* The statement is prepared on the server (under its server-side name) by a
 * Parse the client did not send, unless it is there already. */
static bool prepare_on_server(struct client *c, struct server *s, const struct ps_stmt *st,
                              uint8_t flags, const char *client_name)
{
	uint64_t evicted = 0;
	if (!ps_server_add(&s->ps, st->id, &evicted))
		return false;
	if (evicted && !close_on_server(s, evicted))
		return false;
	(void)c;
	put_parse(&s->conn.out, st->server_name, st->body, st->len);
	return rq_push(&s->rq, 'P', flags, st->id, client_name) != NULL;
}

/* A Parse of a statement the server has is answered by pgmoat unless the
 * server would refuse it (a failed transaction, or a query before it that
 * may fail one): then the server gets Close and Parse, and answers. */
static bool own_parse_ok(struct server *s)
{
	if (s->ready_status == 'E')
		return false;
	for (uint32_t i = 0; i < s->rq.n; i++)
		if (rq_at(&s->rq, i)->kind == 'Q' || rq_at(&s->rq, i)->kind == 'F')
			return false;
	return true;
}

/* Guard a Query or Parse string; false if the client was closed.  *flags
 * gets what the scan found. */
static bool guard_sql(struct client *c, struct server *s, uint8_t type, uint32_t len,
                      const char *sql, size_t n, bool *replaced, unsigned *flags)
{
	*replaced = false;
	struct sql_scan scan;
	sql_scan(sql, n, &scan);
	*flags = scan.flags;
	if (scan.flags & SQL_SET_CONFIG)
		s->session_dirty = true;
	if (!(scan.flags & GUARDED))
		return true;
	enum guard_mode g = (enum guard_mode)c->w->snap->cfg->transaction_mode_guard;
	if (g == GUARD_OFF)
		return true;
	char msg[256];
	snprintf(msg, sizeof(msg),
	         "%s is not allowed in transaction pooling: its effect would stay on a server "
	         "connection other clients share (transaction_mode_guard = %s)",
	         scan.what, g == GUARD_ERROR ? "error" : "warn");
	if (g == GUARD_WARN) {
		log_client(c, LL_WARNING, "%s", msg);
		return true;
	}
	log_client(c, LL_INFO, "%s", msg);
	*replaced = true;
	return replace_with_error(c, s, type, len, "0A000", msg);
}

/* A string inside a message body; its length (without NUL) or -1. */
static long body_str(const uint8_t *p, uint32_t n)
{
	const uint8_t *z = memchr(p, 0, n);
	return z ? (long)(z - p) : -1;
}

/* PostgreSQL's errors for statement names: 42P05 "already exists", 26000
 * "does not exist". */
static bool statement_error(struct client *c, struct server *s, uint8_t type, uint32_t len,
                            const char *sqlstate, const char *name)
{
	char msg[300];
	snprintf(msg, sizeof(msg), "prepared statement \"%.200s\" %s", name,
	         strcmp(sqlstate, "42P05") == 0 ? "already exists" : "does not exist");
	return replace_with_error(c, s, type, len, sqlstate, msg);
}

static enum need pushed(struct client *c, struct server *s, uint8_t type, uint8_t flags,
                        uint32_t len)
{
	if (!rq_push(&s->rq, type, flags, 0, NULL)) {
		client_fatal(c, "53200", "out of memory");
		return NEED_FAILED;
	}
	frame_pass(&c->conn.frame, &c->conn.in, len);
	return NEED_OK;
}

/* Messages relayed as they are. */
static enum need on_other(struct client *c, struct server *s, uint8_t type, uint32_t len)
{
	switch (type) {
	case 'F':
		return pushed(c, s, type, 0, len);
	case 'E':
		s->unsynced = true;
		return pushed(c, s, type, 0, len);
	case 'S':
		s->unsynced = false;
		s->skip_to_sync = false;
		/* During COPY FROM STDIN the server ignores Sync. */
		if (!s->copy_in)
			return pushed(c, s, type, 0, len);
		break;
	case 'H':
		s->unsynced = true;
		break;
	case 'c':
	case 'f':
		s->copy_in = false;
		break;
	}
	frame_pass(&c->conn.frame, &c->conn.in, len);
	return NEED_OK;
}

static enum need on_query(struct client *c, struct server *s, uint32_t len)
{
	const uint8_t type = 'Q';
	enum need nd = need_bytes(c, 1 + len, WHOLE_MAX);
	if (nd == NEED_MORE || nd == NEED_FAILED)
		return nd;
	if (nd == NEED_OK) {
		bool replaced;
		unsigned flags;
		const uint8_t *body = frame_body(&c->conn.in);
		if (!guard_sql(c, s, type, len, (const char *)body, len - 4, &replaced, &flags))
			return NEED_FAILED;
		if (replaced)
			return NEED_OK;
	}
	return pushed(c, s, type, 0, len);
}

static enum need on_parse(struct client *c, struct server *s, uint32_t len, bool ps_on)
{
	struct buf *b = &c->conn.in;
	enum need nd = need_bytes(c, 1 + len, WHOLE_MAX);
	if (nd == NEED_MORE || nd == NEED_FAILED)
		return nd;
	bool named = buf_unparsed(b) >= 6 && frame_body(b)[0] != 0;
	if (nd == NEED_TOO_BIG) {
		if (named && ps_on) {
			client_fatal(c, "54000",
			             "a named prepared statement over %u bytes is not supported in "
			             "transaction pooling",
			             WHOLE_MAX);
			return NEED_FAILED;
		}
		goto pass;
	}
	const uint8_t *body = frame_body(b);
	uint32_t blen = len - 4;
	long nlen = body_str(body, blen);
	long qlen = nlen < 0 ? -1 : body_str(body + nlen + 1, blen - (uint32_t)nlen - 1);
	if (qlen < 0)
		goto pass; /* malformed: the server says so */
	bool replaced;
	unsigned flags;
	if (!guard_sql(c, s, 'P', len, (const char *)body + nlen + 1, (size_t)qlen, &replaced,
	               &flags))
		return NEED_FAILED;
	if (replaced)
		return NEED_OK;
	if (!named || !ps_on)
		goto pass;
	const char *name = (const char *)body;
	const uint8_t *rest = body + nlen + 1;
	uint32_t rlen = blen - (uint32_t)nlen - 1;
	struct ps_stmt *st = NULL;
	switch (ps_client_define(&c->ps, c->w->ps, name, (size_t)nlen, rest, rlen, &st)) {
	case PS_EXISTS:
		return statement_error(c, s, 'P', len, "42P05", name) ? NEED_OK : NEED_FAILED;
	case PS_NOMEM:
		client_fatal(c, "53200", "out of memory");
		return NEED_FAILED;
	case PS_DEFINED:
		/* A statement that calls set_config may change settings whenever
		 * it runs. */
		st->flags |= flags & SQL_SET_CONFIG;
		break;
	}
	c2s_hold(c, s);
	bool ok;
	if (!ps_server_has(&s->ps, st->id)) {
		ok = prepare_on_server(c, s, st, 0, name);
	} else if (own_parse_ok(s)) {
		ok = rq_push(&s->rq, 'P', RQ_OWN, 0, name) != NULL;
	} else {
		pkt_begin(&s->conn.out, 'C');
		pkt_put_u8(&s->conn.out, 'S');
		pkt_put_str(&s->conn.out, st->server_name);
		pkt_end(&s->conn.out);
		put_parse(&s->conn.out, st->server_name, st->body, st->len);
		ok = rq_push(&s->rq, 'C', RQ_HIDE, st->id, NULL) &&
		        rq_push(&s->rq, 'P', 0, st->id, name);
	}
	if (!ok) {
		client_fatal(c, "53200", "out of memory");
		return NEED_FAILED;
	}
	s->unsynced = true;
	frame_skip(b, len);
	return NEED_OK;
pass:
	s->unsynced = true;
	return pushed(c, s, 'P', 0, len);
}

/* The statement a Bind or Describe names, prepared on this server. */
static const struct ps_stmt *stmt_on_server(struct client *c, struct server *s, const char *name,
                                            size_t n, bool *oom)
{
	*oom = false;
	const struct ps_stmt *st = ps_client_find(&c->ps, name, n);
	if (!st)
		return NULL;
	if (st->flags & SQL_SET_CONFIG)
		s->session_dirty = true;
	c2s_hold(c, s);
	if (!ps_server_has(&s->ps, st->id) && !prepare_on_server(c, s, st, RQ_HIDE, NULL))
		*oom = true;
	return st;
}

static enum need on_bind(struct client *c, struct server *s, uint32_t len, bool ps_on)
{
	struct buf *b = &c->conn.in;
	if (!ps_on)
		goto pass;
	/* Only the portal and statement names need to be here. */
	uint32_t have = MIN(buf_unparsed(b), 1 + len);
	const uint8_t *body = b->data + b->parsed + 5;
	uint32_t avail = have > 5 ? have - 5 : 0;
	long plen = body_str(body, avail);
	long slen = plen < 0 ? -1 : body_str(body + plen + 1, avail - (uint32_t)plen - 1);
	if (slen < 0) {
		if (have == 1 + len)
			goto pass; /* malformed: the server says so */
		enum need nd = need_bytes(c, MIN(1 + len, have + 256), BIND_PREFIX_MAX);
		if (nd == NEED_TOO_BIG) {
			client_fatal(c, "08P01", "Bind message names too long");
			return NEED_FAILED;
		}
		return nd;
	}
	if (slen == 0)
		goto pass;
	const char *name = (const char *)body + plen + 1;
	bool oom;
	const struct ps_stmt *st = stmt_on_server(c, s, name, (size_t)slen, &oom);
	if (!st) {
		/* The error replaces the whole message. */
		enum need nd = need_bytes(c, 1 + len, WHOLE_MAX);
		if (nd == NEED_TOO_BIG) {
			client_fatal(c, "26000", "prepared statement \"%s\" does not exist", name);
			return NEED_FAILED;
		}
		if (nd != NEED_OK)
			return nd;
		return statement_error(c, s, 'B', len, "26000",
		                       (const char *)frame_body(b) + plen + 1)
		        ? NEED_OK
		        : NEED_FAILED;
	}
	size_t sn = strlen(st->server_name);
	uint32_t prefix = (uint32_t)plen + 1 + (uint32_t)slen + 1;
	struct pkt *o = &s->conn.out;
	pkt_put_u8(o, 'B');
	pkt_put_u32(o, len - (uint32_t)slen + (uint32_t)sn);
	pkt_put_bytes(o, body, (size_t)plen + 1);
	pkt_put_bytes(o, st->server_name, sn + 1);
	if (oom || o->failed || !rq_push(&s->rq, 'B', 0, 0, NULL)) {
		client_fatal(c, "53200", "out of memory");
		return NEED_FAILED;
	}
	s->unsynced = true;
	/* The rest of the Bind (parameters, however large) is relayed as is. */
	b->parsed += 5 + prefix;
	b->sent = b->parsed;
	frame_pass_rest(&c->conn.frame, b, len - 4 - prefix);
	return NEED_OK;
pass:
	s->unsynced = true;
	return pushed(c, s, 'B', 0, len);
}

/* Describe ('D') or Close ('C') of a statement or portal. */
static enum need on_describe_close(struct client *c, struct server *s, uint8_t type, uint32_t len,
                                   bool ps_on)
{
	struct buf *b = &c->conn.in;
	enum need nd = need_bytes(c, 1 + len, WHOLE_MAX);
	if (nd == NEED_MORE || nd == NEED_FAILED)
		return nd;
	s->unsynced = true;
	const uint8_t *body = nd == NEED_OK ? frame_body(b) : NULL;
	bool stmt = body && len > 4 && body[0] == 'S';
	long nlen = stmt ? body_str(body + 1, len - 5) : -1;
	uint8_t flags = type == 'D' && stmt ? RQ_DESCRIBE_STMT : 0;
	if (!ps_on || nlen <= 0)
		return pushed(c, s, type, flags, len);
	const char *name = (const char *)body + 1;
	bool ok;
	if (type == 'C') {
		/* Closed for this client only; the server keeps it for others.
		 * The entry keeps what was closed, in case the server skips it. */
		struct ps_stmt *st = ps_client_find(&c->ps, name, (size_t)nlen);
		struct ps_stmt *ref = st ? ps_intern(c->w->ps, st->body, st->len) : NULL;
		ps_client_close(&c->ps, c->w->ps, name, (size_t)nlen);
		c2s_hold(c, s);
		struct rq_entry *e = rq_push(&s->rq, 'C', RQ_OWN, 0, ref ? name : NULL);
		if (e)
			e->stmt = ref;
		else if (ref)
			ps_unref(c->w->ps, ref);
		ok = e != NULL && (ref || !st);
	} else {
		bool oom;
		const struct ps_stmt *st = stmt_on_server(c, s, name, (size_t)nlen, &oom);
		if (!st)
			return statement_error(c, s, 'D', len, "26000", name) ? NEED_OK
			                                                      : NEED_FAILED;
		pkt_begin(&s->conn.out, 'D');
		pkt_put_u8(&s->conn.out, 'S');
		pkt_put_str(&s->conn.out, st->server_name);
		pkt_end(&s->conn.out);
		ok = !oom && rq_push(&s->rq, 'D', RQ_DESCRIBE_STMT, 0, NULL) != NULL;
	}
	if (!ok) {
		client_fatal(c, "53200", "out of memory");
		return NEED_FAILED;
	}
	frame_skip(b, len);
	return NEED_OK;
}

static void emit_own(struct server *s);

enum txn_c2s txn_client_messages(struct client *c, struct server *s)
{
	struct buf *b = &c->conn.in;
	const struct config *cfg = c->w->snap->cfg;
	uint32_t max = (uint32_t)cfg->max_packet_size;
	bool ps_on = cfg->max_prepared_statements > 0;
	enum txn_c2s result = TXN_C2S_OK;
	for (;;) {
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&c->conn.frame, b, max, &type, &len);
		if (fs == FRAME_MORE)
			break;
		if (fs == FRAME_BAD) {
			client_fatal(c, "08P01",
			             "invalid message length %u from client (max_packet_size %u)",
			             len, max);
			return TXN_C2S_CLOSED;
		}
		if (type == 'X') {
			result = TXN_C2S_TERMINATE;
			break;
		}
		if (s->unit_hold)
			break; /* the rest waits until the request before is answered */
		if (s->skip_to_sync && type != 'S') {
			/* The server ignores it after an error: relayed as is. */
			frame_pass(&c->conn.frame, b, len);
			continue;
		}
		enum need nd;
		switch (type) {
		case 'Q':
			nd = on_query(c, s, len);
			break;
		case 'P':
			nd = on_parse(c, s, len, ps_on);
			break;
		case 'B':
			nd = on_bind(c, s, len, ps_on);
			break;
		case 'D':
		case 'C':
			nd = on_describe_close(c, s, type, len, ps_on);
			break;
		default:
			nd = on_other(c, s, type, len);
			break;
		}
		if (nd == NEED_MORE)
			break;
		if (nd != NEED_OK)
			return TXN_C2S_CLOSED;
		if (c->auto_read && (type == 'Q' || type == 'S' || type == 'F')) {
			s->unit_hold = true;
			break;
		}
	}
	/* One write rather than two when pgmoat wrote something itself. */
	if (pkt_unsent(&s->conn.out) > 0)
		c2s_hold(c, s);
	emit_own(s);
	return result;
}

/* --- server -> client --- */

/* Relayed bytes not yet written to the client go out before anything
 * pgmoat writes in the stream itself. */
static void s2c_hold(struct server *s, struct client *c)
{
	struct buf *b = &s->conn.in;
	if (buf_unsent(b) > 0) {
		pkt_append(&c->conn.out, b->data + b->sent, buf_unsent(b));
		b->sent = b->parsed;
	}
}

/* Answer the requests pgmoat answers itself that are next in line. */
static void emit_own(struct server *s)
{
	struct client *c = s->client;
	struct rq_entry *e;
	while ((e = rq_head(&s->rq)) && (e->flags & RQ_OWN)) {
		if (c) {
			s2c_hold(s, c);
			pkt_begin(&c->conn.out, e->kind == 'P' ? '1' : '3');
			pkt_end(&c->conn.out);
		}
		rq_pop(&s->rq, c ? c->w->ps : NULL);
	}
}

/* A reply pgmoat asked for itself: cut out of the stream. */
static void hide(struct buf *b, uint32_t len)
{
	uint32_t n = 1 + len, unsent = buf_unsent(b);
	if (unsent > 0)
		memmove(b->data + b->sent + n, b->data + b->sent, unsent);
	b->sent += n;
	b->parsed += n;
}

/* The request at the head failed, and the server skips everything up to the
 * next Sync: what was prepared by skipped Parses is not there. */
/* A request the server skipped: what pgmoat recorded for it is undone. */
static void undo(struct server *s, struct client *c, const struct rq_entry *e)
{
	if (e->kind == 'P') {
		if (e->stmt_id)
			ps_server_remove(&s->ps, e->stmt_id); /* not prepared */
		if (e->name && c)
			ps_client_close(&c->ps, c->w->ps, e->name, strlen(e->name));
	} else if (e->kind == 'C' && e->stmt_id) {
		/* Not closed: still there, even past the capacity (trimmed when
		 * the server is next given to a client). */
		uint64_t evicted;
		ps_server_set_capacity(&s->ps, (uint32_t)ps_server_count(&s->ps) + 1);
		if (!ps_server_add(&s->ps, e->stmt_id, &evicted))
			s->close_on_release = true; /* out of memory: records unsure */
	} else if (e->kind == 'C' && e->stmt && c) {
		struct ps_stmt *out;
		if (ps_client_define(&c->ps, c->w->ps, e->name, strlen(e->name), e->stmt->body,
		                     e->stmt->len, &out) == PS_NOMEM)
			log_client(c, LL_WARNING, "out of memory restoring statement %s", e->name);
	}
}

static void request_failed(struct server *s)
{
	struct client *c = s->client;
	struct rq_entry *e = rq_head(&s->rq);
	if (!e || e->kind == 'Q' || e->kind == 'F' || e->kind == 'S')
		return; /* a simple query goes on to its ReadyForQuery */
	/* The request failed and the server skips everything up to the next
	 * Sync: undone newest first, as each was done on top of the one
	 * before. */
	uint32_t n = 0;
	while (n < s->rq.n && rq_at(&s->rq, n)->kind != 'S')
		n++;
	for (uint32_t i = n; i-- > 0;)
		undo(s, c, rq_at(&s->rq, i));
	for (uint32_t i = 0; i < n; i++)
		rq_pop(&s->rq, c ? c->w->ps : NULL);
	/* No Sync sent yet: what the client sends until its Sync is skipped
	 * too. */
	if (rq_empty(&s->rq))
		s->skip_to_sync = true;
}

static bool tag_is(const uint8_t *body, uint32_t n, const char *tag)
{
	size_t t = strlen(tag);
	return n >= t + 1 && memcmp(body, tag, t) == 0 && body[t] == 0;
}

/* What a CommandComplete means for the session and its statements. */
/* Command tags of statements that write no WAL of their own (SELECT also
 * stands for SELECT INTO and CREATE TABLE AS: see doc/routing.md). */
static const char *const read_tags[] = {
        "SELECT",    "SHOW",     "BEGIN",    "START TRANSACTION",
        "COMMIT",    "ROLLBACK", "SET",      "RESET",
        "FETCH",     "MOVE",     "DECLARE",  "CLOSE",
        "SAVEPOINT", "RELEASE",  "DISCARD",  "DEALLOCATE",
        "PREPARE",   "LISTEN",   "UNLISTEN", "EXPLAIN",
};

static bool tag_writes(const uint8_t *body, uint32_t n)
{
	for (size_t i = 0; i < ARRAY_SIZE(read_tags); i++) {
		size_t t = strlen(read_tags[i]);
		if (n > t && memcmp(body, read_tags[i], t) == 0 && (body[t] == ' ' || body[t] == 0))
			return false;
	}
	return true;
}

static void command_done(struct server *s, const uint8_t *body, uint32_t n)
{
	if (session_tag_changes((const char *)body, n))
		s->session_dirty = true;
	if (tag_writes(body, n))
		s->wrote = true;
	if (tag_is(body, n, "DISCARD ALL") || tag_is(body, n, "DEALLOCATE ALL"))
		ps_server_clear(&s->ps);
	else if (tag_is(body, n, "DEALLOCATE"))
		s->close_on_release = true; /* it may have been one of pgmoat's */
}

bool txn_server_messages(struct server *s)
{
	struct buf *b = &s->conn.in;
	for (;;) {
		emit_own(s);
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&s->conn.frame, b, UINT32_MAX >> 1, &type, &len);
		if (fs == FRAME_MORE) {
			/* One write rather than two when pgmoat wrote something. */
			if (s->client && pkt_unsent(&s->client->conn.out) > 0)
				s2c_hold(s, s->client);
			return true;
		}
		if (fs == FRAME_BAD) {
			server_fail_client(s, "08P01",
			                   "server sent a message with an invalid length");
			return false;
		}
		/* The few whose body is read (or cut out when hidden) are small:
		 * wait until they are whole. */
		bool look = memchr("ZSC123", type, 6) != NULL;
		if (look && !frame_whole(b, len)) {
			if (frame_fits(b, len))
				return true;
			if (type != 'S' && type != 'C') {
				server_fail_client(s, "08P01", "server sent an oversized reply");
				return false;
			}
			look = false; /* a huge ParameterStatus or tag: passed on */
		}
		struct rq_entry *e = rq_head(&s->rq);
		uint8_t want = 0; /* the request this reply completes */
		switch (type) {
		case 'Z':
			if (len != 5) {
				server_fail_client(s, "08P01",
				                   "server sent a malformed ReadyForQuery");
				return false;
			}
			server_ready_seen(s, (char)frame_body(b)[0]);
			want = e && (e->kind == 'Q' || e->kind == 'F') ? e->kind : 'S';
			if (s->mode == POOL_STATEMENT && s->ready_status != 'I') {
				server_end_client(
				        s, "0A000",
				        "transaction blocks are not allowed in statement "
				        "pooling mode",
				        "client opened a transaction in statement pooling");
				return false;
			}
			break;
		case 'S':
			if (look) {
				server_update_param(s, frame_body(b), len - 4);
				s->session_dirty = true;
			}
			break;
		case 'E':
			/* An error ends COPY FROM STDIN: Syncs count again. */
			s->copy_in = false;
			request_failed(s);
			break;
		case '1':
			want = 'P';
			break;
		case '2':
			want = 'B';
			break;
		case '3':
			want = 'C';
			break;
		case 'T':
		case 'n':
			if (e && e->kind == 'D')
				want = 'D';
			break;
		case 'C':
			if (look)
				command_done(s, frame_body(b), len - 4);
			if (e && e->kind == 'E')
				want = 'E';
			break;
		case 'I':
		case 's':
			if (e && e->kind == 'E')
				want = 'E';
			break;
		case 'G':
			/* COPY FROM STDIN: the server ignores Syncs until it ends;
			 * started by Execute, it then waits for a Sync. */
			s->copy_in = true;
			if (e && e->kind == 'E')
				s->unsynced = true;
			rq_drop_syncs(&s->rq);
			break;
		}
		if (want) {
			if (!e || e->kind != want) {
				char why[80];
				snprintf(why, sizeof(why),
				         "server sent reply '%c' where none was expected", type);
				server_fail_client(s, "08P01", why);
				return false;
			}
			bool hidden = e->flags & RQ_HIDE;
			rq_pop(&s->rq, s->client ? s->client->w->ps : NULL);
			if (hidden) {
				hide(b, len);
				continue;
			}
		}
		frame_pass(&s->conn.frame, b, len);
	}
}

bool txn_trim_statements(struct server *s, const struct config *cfg)
{
	ps_server_set_capacity(&s->ps, (uint32_t)MAX(1, cfg->max_prepared_statements));
	uint64_t id;
	bool any = false;
	while (ps_server_pop_excess(&s->ps, &id)) {
		if (!close_on_server(s, id))
			return false;
		any = true;
	}
	if (!any)
		return true;
	pkt_begin(&s->conn.out, 'S');
	pkt_end(&s->conn.out);
	if (!rq_push(&s->rq, 'S', RQ_HIDE, 0, NULL))
		return false;
	enum io_result r = conn_write_pkt(&s->conn);
	if (r == IO_AGAIN)
		conn_want_write(s->w->loop, &s->conn, true);
	return r == IO_DONE || r == IO_AGAIN;
}
