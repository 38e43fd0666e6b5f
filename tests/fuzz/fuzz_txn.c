/* libFuzzer target: the relay of transaction and statement pooling
 * (proxy/txn.c) driven from bytes, without sockets: a client linked to one
 * of two servers, fed what the input says the client and the servers
 * sent, through txn_client_messages() and txn_server_messages() (framing,
 * the queue of expected replies, the guard, prepared statements and the
 * Bind rewrite, hidden and inserted replies).
 *
 * Input: byte 0 chooses the setup
 *   bits 0-1  max_prepared_statements 0, 1, 2 or 200
 *   bits 2-3  transaction_mode_guard error, warn, off, error
 *   bit 4     the transaction was routed to a replica (auto_read: one
 *             request at a time)
 *   bit 5     statement pooling (else transaction pooling)
 *   bit 6     pkt_buf 1024 (else 4096)
 *   bit 7     max_packet_size 8192 (else the default, 2 GB)
 * then records: ctl (bit 0: from the server, else from the client; bits
 * 1-7: size of the reads it arrives in, 0 = at once), a 16-bit big-endian
 * length, and that many bytes (fewer at the end of the input).
 *
 * Writes go nowhere (a transport that takes everything): what pgmoat sends
 * each side is checked to be a well-framed message stream.  What
 * proxy/client.c and proxy/server.c do around the relay is done here in a
 * few lines (the caller of txn_client_messages() writes what it passed,
 * a quiet server in transaction pooling goes back to the pool and the next
 * transaction gets the other one); their functions that txn.c calls are
 * defined below instead: client_fatal(), server_fail_client() and
 * server_end_client() end the input (their SQLSTATE is checked),
 * server_ready_seen() and server_update_param() keep what the real ones
 * keep, without pool statistics. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>

#include "common/log.h"
#include "conf/config.h"
#include "pool/prepared.h"
#include "proxy/client.h"
#include "proxy/proto.h"
#include "proxy/server.h"
#include "proxy/txn.h"
#include "proxy/worker.h"
#include "tests/fuzz/fuzz.h"

/* A well-framed message stream, fed in pieces. */
struct stream {
	uint8_t hdr[5];
	uint32_t have; /* header bytes */
	uint64_t remaining; /* body bytes of the current message */
};

static void stream_feed(struct stream *st, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (st->remaining > 0) {
			size_t k = n < st->remaining ? n : (size_t)st->remaining;
			st->remaining -= k;
			p += k;
			n -= k;
			continue;
		}
		st->hdr[st->have++] = *p++;
		n--;
		if (st->have == 5) {
			uint32_t len = get_u32(st->hdr + 1);
			if (len < 4)
				abort(); /* pgmoat sent a broken message header */
			st->remaining = len - 4;
			st->have = 0;
		}
	}
}

static bool ended; /* a stub below ended the client or server */

static void check_sqlstate(const char *sqlstate)
{
	if (strlen(sqlstate) != 5)
		abort();
}

void client_fatal(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	check_sqlstate(sqlstate);
	proto_error(&c->conn.out, "FATAL", sqlstate, "%s", msg);
	ended = true;
}

void log_client(const struct client *c, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	(void)c;
	(void)level;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
}

void server_end_client(struct server *s, const char *sqlstate, const char *msg, const char *why)
{
	(void)s;
	(void)msg;
	(void)why;
	check_sqlstate(sqlstate);
	ended = true;
}

void server_fail_client(struct server *s, const char *sqlstate, const char *why)
{
	server_end_client(s, sqlstate, why, why);
}

void server_ready_seen(struct server *s, char status)
{
	s->ready_status = status;
}

void server_update_param(struct server *s, const uint8_t *body, uint32_t len)
{
	const char *name, *value;
	if (proto_parse_param_status(body, len, &name, &value))
		params_set(&s->params, name, value);
}

/* Writes go nowhere. */
static ssize_t sink_read(struct conn *c, void *buf, size_t n)
{
	(void)c;
	(void)buf;
	(void)n;
	return -1;
}

static ssize_t sink_write(struct conn *c, const void *buf, size_t n)
{
	(void)c;
	(void)buf;
	return (ssize_t)n;
}

static const struct transport sink = {"sink", sink_read, sink_write};

struct harness {
	struct worker w;
	struct snapshot snap;
	struct client c;
	struct server sv[2];
	int cur; /* the linked server, or -1 */
	int next; /* the server the next transaction gets */
	struct stream to_server[2], to_client;
};

static void server_setup(struct harness *h, int i)
{
	struct server *s = &h->sv[i];
	memset(s, 0, sizeof(*s));
	s->w = &h->w;
	s->conn.fd = -1;
	s->conn.io = &sink;
	pkt_init(&s->conn.out);
	frame_init(&s->conn.frame);
	params_init(&s->params);
	ps_server_init(&s->ps, (uint32_t)MAX(1, h->snap.cfg->max_prepared_statements));
	s->ready_status = 'I';
	h->to_server[i] = (struct stream){0};
}

static void server_teardown(struct harness *h, int i)
{
	struct server *s = &h->sv[i];
	rq_free(&s->rq, h->w.ps);
	ps_server_free(&s->ps);
	params_free(&s->params);
	pkt_free(&s->conn.out);
	buf_release(&s->conn.in, &h->w.bufs, true);
}

/* What the client or server was sent: pgmoat's own bytes, then those of
 * the other side it passed. */
static void flush_to(struct stream *st, struct pkt *own, struct buf *passed)
{
	if (own->failed)
		abort(); /* out of memory with inputs this small */
	if (pkt_unsent(own) > 0)
		stream_feed(st, own->data + own->sent, pkt_unsent(own));
	pkt_reset(own);
	if (passed && passed->data && buf_unsent(passed) > 0) {
		stream_feed(st, passed->data + passed->sent, buf_unsent(passed));
		passed->sent = passed->parsed;
	}
}

/* client_got_server(): the next server, linked. */
static bool link_server(struct harness *h, enum pool_mode mode)
{
	struct server *s = &h->sv[h->next];
	h->cur = h->next;
	h->next ^= 1;
	s->client = &h->c;
	h->c.server = s;
	s->unsynced = s->session_dirty = s->unit_hold = s->wrote = false;
	s->copy_in = s->skip_to_sync = false;
	s->mode = mode;
	if (!txn_trim_statements(s, h->snap.cfg))
		abort();
	flush_to(&h->to_server[h->cur], &s->conn.out, NULL);
	return true;
}

/* client_server_idle() and server_release(): a quiet server outside a
 * transaction goes back to the pool (closed if it cannot be reused). */
static void maybe_release(struct harness *h)
{
	if (h->cur < 0)
		return;
	struct server *s = &h->sv[h->cur];
	struct client *c = &h->c;
	if (s->ready_status != 'I' || !rq_empty(&s->rq) || s->unsynced ||
	    c->conn.frame.remaining > 0 || buf_unsent(&c->conn.in) > 0)
		return;
	s->client = NULL;
	c->server = NULL;
	if (s->close_on_release || buf_pending(&s->conn.in) > 0 || s->conn.frame.remaining > 0) {
		server_teardown(h, h->cur);
		server_setup(h, h->cur);
	}
	h->cur = -1;
}

/* client_pump(). */
static void pump_client(struct harness *h, enum pool_mode mode)
{
	struct client *c = &h->c;
	if (h->cur < 0)
		link_server(h, mode);
	struct server *s = &h->sv[h->cur];
	enum txn_c2s r = txn_client_messages(c, s);
	flush_to(&h->to_client, &c->conn.out, NULL);
	if (r == TXN_C2S_CLOSED || ended) {
		if (r != TXN_C2S_CLOSED || !ended)
			abort(); /* closed without saying why, or the other way */
		return;
	}
	flush_to(&h->to_server[h->cur], &s->conn.out, &c->conn.in);
	if (r == TXN_C2S_TERMINATE) {
		ended = true;
		return;
	}
	buf_reset_if_drained(&c->conn.in);
	maybe_release(h);
}

/* server_pump(). */
static void pump_server(struct harness *h, int i, enum pool_mode mode)
{
	struct server *s = &h->sv[i];
	if (!txn_server_messages(s)) {
		if (!ended)
			abort();
		return;
	}
	if (ended)
		abort();
	flush_to(&h->to_client, &h->c.conn.out, &s->conn.in);
	buf_reset_if_drained(&s->conn.in);
	if (s->ready_status == 'I' && rq_empty(&s->rq)) {
		maybe_release(h);
	} else if (s->unit_hold && rq_empty(&s->rq)) {
		s->unit_hold = false;
		pump_client(h, mode);
	}
}

/* conn_read() of `n` bytes into `b`: how many fitted. */
static size_t receive(struct harness *h, struct buf *b, const uint8_t *p, size_t n)
{
	if (!buf_borrow(b, &h->w.bufs))
		abort();
	buf_reset_if_drained(b);
	if (b->sent > 0 && buf_room(b) < b->cap / 2)
		buf_compact(b);
	size_t k = MIN(n, (size_t)buf_room(b));
	memcpy(b->data + b->recvd, p, k);
	b->recvd += (uint32_t)k;
	return k;
}

static struct config *cfg;

static void run(struct harness *h, uint8_t opt, const uint8_t *data, size_t size)
{
	static const int ps[4] = {0, 1, 2, 200};
	static const int guard[4] = {GUARD_ERROR, GUARD_WARN, GUARD_OFF, GUARD_ERROR};
	cfg->max_prepared_statements = ps[opt & 3];
	cfg->transaction_mode_guard = guard[(opt >> 2) & 3];
	cfg->pkt_buf = opt & 64 ? 1024 : 4096;
	cfg->max_packet_size = opt & 128 ? 8192 : 2147483647;
	enum pool_mode mode = opt & 32 ? POOL_STATEMENT : POOL_TRANSACTION;

	h->snap.cfg = cfg;
	h->w.snap = &h->snap;
	buf_cache_init(&h->w.bufs, (uint32_t)cfg->pkt_buf, 4);
	h->w.ps = ps_registry_new();
	if (!h->w.ps)
		abort();
	h->c.w = &h->w;
	h->c.conn.fd = -1;
	h->c.conn.io = &sink;
	pkt_init(&h->c.conn.out);
	frame_init(&h->c.conn.frame);
	h->c.auto_read = opt & 16;
	server_setup(h, 0);
	server_setup(h, 1);
	h->cur = -1;
	ended = false;

	size_t off = 0;
	while (!ended && off + 3 <= size) {
		uint8_t ctl = data[off];
		size_t n = (size_t)data[off + 1] << 8 | data[off + 2];
		off += 3;
		if (n > size - off)
			n = size - off;
		size_t piece = ctl >> 1 ? ctl >> 1 : n;
		const uint8_t *p = data + off;
		off += n;
		bool from_server = ctl & 1;
		while (!ended && n > 0) {
			if (from_server) {
				/* Only the linked server speaks (an idle one that
				 * speaks is closed by server.c). */
				if (h->cur < 0)
					break;
				int i = h->cur;
				size_t k = receive(h, &h->sv[i].conn.in, p, MIN(n, piece));
				if (k == 0)
					break; /* the client is not reading: it stays */
				p += k;
				n -= k;
				pump_server(h, i, mode);
			} else {
				size_t k = receive(h, &h->c.conn.in, p, MIN(n, piece));
				if (k == 0 && !(h->cur >= 0 && h->sv[h->cur].unit_hold))
					abort(); /* a full buffer the relay never drains */
				if (k == 0)
					break;
				p += k;
				n -= k;
				pump_client(h, mode);
			}
		}
	}

	ps_client_clear(&h->c.ps, h->w.ps);
	pkt_free(&h->c.conn.out);
	buf_release(&h->c.conn.in, &h->w.bufs, true);
	server_teardown(h, 0);
	server_teardown(h, 1);
	ps_registry_free(h->w.ps);
	buf_cache_destroy(&h->w.bufs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!cfg) {
		log_set_level(LL_FATAL);
		cfg = config_defaults();
	}
	struct harness *h = calloc(1, sizeof(*h));
	if (!h)
		return 0;
	run(h, data[0], data + 1, size - 1);
	free(h);
	return 0;
}
