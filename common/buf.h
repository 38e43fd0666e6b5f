/* I/O buffers.
 *
 * A relay buffer has three offsets into `data`:
 *
 *     0 ........ sent ........ parsed ........ recvd ........ cap
 *       written     parsed, not      received, not
 *       out         written yet      parsed yet
 *
 * Bytes are forwarded in place from the buffer they were read into.  A
 * message split across reads stays in [parsed, recvd) until the rest arrives;
 * buf_compact() moves the unsent tail to the front when room runs out.
 *
 * Buffers are borrowed from a per-worker cache when a connection has bytes to
 * move and given back when it is drained, so an idle connection owns none.
 */
#ifndef PGMOAT_COMMON_BUF_H
#define PGMOAT_COMMON_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/list.h"

struct buf {
	uint8_t *data; /* NULL while nothing is borrowed */
	uint32_t cap;
	uint32_t sent;
	uint32_t parsed;
	uint32_t recvd;
};

/* Per-worker cache of equally sized buffers.  Not thread-safe: one per
 * worker. */
struct buf_cache {
	void **free;
	size_t n_free;
	size_t max_free;
	uint32_t size;
	size_t in_use; /* counted for SHOW MEM */
};

void buf_cache_init(struct buf_cache *c, uint32_t size, size_t max_free);
void buf_cache_destroy(struct buf_cache *c);

/* Make sure `b` has storage; false on allocation failure. */
bool buf_borrow(struct buf *b, struct buf_cache *c) __attribute__((warn_unused_result));
/* Storage of `size` bytes, not from the cache (a connection that logs in
 * needs little); false on allocation failure. */
bool buf_borrow_size(struct buf *b, struct buf_cache *c, uint32_t size)
        __attribute__((warn_unused_result));
/* Give storage back if the buffer holds no bytes (or unconditionally with
 * force, when the connection is closing). */
void buf_release(struct buf *b, struct buf_cache *c, bool force);

static inline uint32_t buf_unsent(const struct buf *b)
{
	return b->parsed - b->sent;
}
static inline uint32_t buf_unparsed(const struct buf *b)
{
	return b->recvd - b->parsed;
}
static inline uint32_t buf_pending(const struct buf *b)
{
	return b->recvd - b->sent;
}
static inline uint32_t buf_room(const struct buf *b)
{
	return b->cap - b->recvd;
}
static inline bool buf_empty(const struct buf *b)
{
	return b->recvd == b->sent;
}

/* Give `b` storage of at least `size` bytes (a message that must be read
 * whole and is larger than the cache's buffers), keeping its unsent bytes.
 * The larger storage is freed, not cached, when released. */
bool buf_grow(struct buf *b, struct buf_cache *c, uint32_t size)
        __attribute__((warn_unused_result));
/* Move [sent, recvd) to offset 0. */
void buf_compact(struct buf *b);
/* Reset offsets to 0 when everything has been sent. */
static inline void buf_reset_if_drained(struct buf *b)
{
	if (b->sent == b->recvd)
		b->sent = b->parsed = b->recvd = 0;
}

/* A growable output buffer for messages pgmoat composes itself (login
 * replies, errors, internal queries).  Plain heap memory; small. */
struct pkt {
	uint8_t *data;
	uint32_t len;
	uint32_t cap;
	uint32_t sent;
	uint32_t msg_start; /* start of the message being built */
	bool failed; /* an allocation failed (or 1 GB reached); unusable */
};

void pkt_init(struct pkt *p);
void pkt_free(struct pkt *p);
void pkt_reset(struct pkt *p);
static inline size_t pkt_unsent(const struct pkt *p)
{
	return p->len - p->sent;
}

/* Begin a message of `type` (0 for the untyped startup packets). */
void pkt_begin(struct pkt *p, uint8_t type);
void pkt_put_u8(struct pkt *p, uint8_t v);
void pkt_put_u16(struct pkt *p, uint16_t v);
void pkt_put_u32(struct pkt *p, uint32_t v);
void pkt_put_bytes(struct pkt *p, const void *data, size_t len);
/* Put a NUL-terminated string including its terminator. */
void pkt_put_str(struct pkt *p, const char *s);
/* Fill in the length of the message begun last. */
void pkt_end(struct pkt *p);
/* Append raw bytes (an already framed message). */
void pkt_append(struct pkt *p, const void *data, size_t len);

/* Big-endian readers. */
static inline uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A bounds-checked reader over one received message body. */
struct msg_reader {
	const uint8_t *p;
	size_t len;
	size_t off;
	bool bad; /* a read ran past the end or a string had no terminator */
};

static inline void reader_init(struct msg_reader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
	r->bad = false;
}
uint8_t reader_u8(struct msg_reader *r);
uint16_t reader_u16(struct msg_reader *r);
uint32_t reader_u32(struct msg_reader *r);
/* A NUL-terminated string inside the message; NULL (and bad) if none. */
const char *reader_str(struct msg_reader *r);
/* `n` raw bytes; NULL (and bad) if fewer remain. */
const uint8_t *reader_bytes(struct msg_reader *r, size_t n);
static inline size_t reader_left(const struct msg_reader *r)
{
	return r->len - r->off;
}

#endif
