#include <config.h>

#include "proxy/frame.h"

#include <assert.h>

static void advance(struct frame *f, struct buf *b)
{
	uint32_t n = buf_unparsed(b);
	if (n > f->remaining)
		n = f->remaining;
	b->parsed += n;
	f->remaining -= n;
}

enum frame_status frame_next(struct frame *f, struct buf *b, uint32_t max_len, uint8_t *type,
                             uint32_t *len)
{
	if (f->remaining) {
		advance(f, b);
		if (f->remaining)
			return FRAME_MORE;
	}
	if (buf_unparsed(b) < 5)
		return FRAME_MORE;
	const uint8_t *h = b->data + b->parsed;
	*type = h[0];
	*len = get_u32(h + 1);
	if (*len < 4 || *len > max_len)
		return FRAME_BAD;
	return FRAME_HEADER;
}

void frame_pass(struct frame *f, struct buf *b, uint32_t len)
{
	assert(f->remaining == 0);
	f->remaining = 1 + len;
	advance(f, b);
}

void frame_pass_rest(struct frame *f, struct buf *b, uint32_t n)
{
	assert(f->remaining == 0);
	f->remaining = n;
	advance(f, b);
}

void frame_skip(struct buf *b, uint32_t len)
{
	assert(b->sent == b->parsed && frame_whole(b, len));
	b->parsed += 1 + len;
	b->sent = b->parsed;
}
