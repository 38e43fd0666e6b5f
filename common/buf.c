#include <config.h>

#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

void buf_cache_init(struct buf_cache *c, uint32_t size, size_t max_free)
{
	c->free = xcalloc(max_free ? max_free : 1, sizeof(void *));
	c->n_free = 0;
	c->max_free = max_free;
	c->size = size;
	c->in_use = 0;
}

void buf_cache_destroy(struct buf_cache *c)
{
	for (size_t i = 0; i < c->n_free; i++)
		free(c->free[i]);
	free(c->free);
	c->free = NULL;
	c->n_free = 0;
}

bool buf_borrow(struct buf *b, struct buf_cache *c)
{
	if (b->data)
		return true;
	void *p = c->n_free ? c->free[--c->n_free] : malloc(c->size);
	if (!p)
		return false;
	b->data = p;
	b->cap = c->size;
	b->sent = b->parsed = b->recvd = 0;
	c->in_use++;
	return true;
}

bool buf_borrow_size(struct buf *b, struct buf_cache *c, uint32_t size)
{
	if (b->data)
		return true;
	void *p = malloc(size);
	if (!p)
		return false;
	b->data = p;
	b->cap = size;
	b->sent = b->parsed = b->recvd = 0;
	c->in_use++;
	return true;
}

void buf_release(struct buf *b, struct buf_cache *c, bool force)
{
	if (!b->data || (!force && !buf_empty(b)))
		return;
	/* A buffer of another size (pkt_buf changed by a reload) is not cached. */
	if (b->cap == c->size && c->n_free < c->max_free)
		c->free[c->n_free++] = b->data;
	else
		free(b->data);
	c->in_use--;
	b->data = NULL;
	b->cap = 0;
	b->sent = b->parsed = b->recvd = 0;
}

bool buf_grow(struct buf *b, struct buf_cache *c, uint32_t size)
{
	if (b->data && b->cap >= size)
		return true;
	uint8_t *d = malloc(size);
	if (!d)
		return false;
	uint32_t n = 0, parsed = 0;
	if (b->data) {
		n = b->recvd - b->sent;
		parsed = b->parsed - b->sent;
		memcpy(d, b->data + b->sent, n);
		buf_release(b, c, true);
	}
	b->data = d;
	b->cap = size;
	b->sent = 0;
	b->parsed = parsed;
	b->recvd = n;
	c->in_use++;
	return true;
}

void buf_compact(struct buf *b)
{
	if (b->sent == 0)
		return;
	uint32_t n = b->recvd - b->sent;
	if (n)
		memmove(b->data, b->data + b->sent, n);
	b->parsed -= b->sent;
	b->recvd -= b->sent;
	b->sent = 0;
}

/* --- pkt --- */

void pkt_init(struct pkt *p)
{
	memset(p, 0, sizeof(*p));
}

void pkt_free(struct pkt *p)
{
	free(p->data);
	pkt_init(p);
}

void pkt_reset(struct pkt *p)
{
	p->len = p->sent = p->msg_start = 0;
	p->failed = false;
}

static bool pkt_reserve(struct pkt *p, size_t more)
{
	if (p->failed)
		return false;
	if (p->len + more <= p->cap)
		return true;
	if (more > (1u << 30) - p->len) {
		p->failed = true;
		return false;
	}
	size_t cap = p->cap ? p->cap : 256;
	while (cap < p->len + more)
		cap *= 2;
	uint8_t *d = realloc(p->data, cap);
	if (!d) {
		p->failed = true;
		return false;
	}
	p->data = d;
	p->cap = (uint32_t)cap;
	return true;
}

void pkt_put_bytes(struct pkt *p, const void *data, size_t len)
{
	if (!pkt_reserve(p, len))
		return;
	if (len)
		memcpy(p->data + p->len, data, len);
	p->len += (uint32_t)len;
}

void pkt_begin(struct pkt *p, uint8_t type)
{
	if (type)
		pkt_put_bytes(p, &type, 1);
	p->msg_start = p->len;
	pkt_put_u32(p, 0); /* length, filled in by pkt_end */
}

void pkt_put_u8(struct pkt *p, uint8_t v)
{
	pkt_put_bytes(p, &v, 1);
}

void pkt_put_u16(struct pkt *p, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	pkt_put_bytes(p, b, 2);
}

void pkt_put_u32(struct pkt *p, uint32_t v)
{
	uint8_t b[4];
	put_u32(b, v);
	pkt_put_bytes(p, b, 4);
}

void pkt_put_str(struct pkt *p, const char *s)
{
	pkt_put_bytes(p, s, strlen(s) + 1);
}

void pkt_end(struct pkt *p)
{
	if (p->failed)
		return;
	put_u32(p->data + p->msg_start, (uint32_t)(p->len - p->msg_start));
}

void pkt_append(struct pkt *p, const void *data, size_t len)
{
	pkt_put_bytes(p, data, len);
}

/* --- msg_reader --- */

uint8_t reader_u8(struct msg_reader *r)
{
	const uint8_t *b = reader_bytes(r, 1);
	return b ? b[0] : 0;
}

uint16_t reader_u16(struct msg_reader *r)
{
	const uint8_t *b = reader_bytes(r, 2);
	return b ? get_u16(b) : 0;
}

uint32_t reader_u32(struct msg_reader *r)
{
	const uint8_t *b = reader_bytes(r, 4);
	return b ? get_u32(b) : 0;
}

const uint8_t *reader_bytes(struct msg_reader *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

const char *reader_str(struct msg_reader *r)
{
	if (r->bad)
		return NULL;
	const uint8_t *start = r->p + r->off;
	const uint8_t *nul = memchr(start, '\0', r->len - r->off);
	if (!nul) {
		r->bad = true;
		return NULL;
	}
	r->off += (size_t)(nul - start) + 1;
	return (const char *)start;
}
