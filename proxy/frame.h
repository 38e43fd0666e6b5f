/* Message framing over a relay buffer.
 *
 * Only the 5-byte header (type, length) of each message is parsed; the body
 * of a message pgmoat does not need to look at is passed on as it arrives,
 * however large it is, and never held whole.  The few messages that change
 * state are looked at whole (frame_whole) before they are passed.
 */
#ifndef PGMOAT_PROXY_FRAME_H
#define PGMOAT_PROXY_FRAME_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"

struct frame {
	uint32_t remaining; /* bytes of the current message still to pass */
};

enum frame_status {
	FRAME_MORE, /* everything received is parsed, or a header is incomplete */
	FRAME_HEADER, /* a message starts at b->parsed: *type, *len (len counts itself) */
	FRAME_BAD, /* impossible length: < 4 or > max_len */
};

static inline void frame_init(struct frame *f)
{
	f->remaining = 0;
}

enum frame_status frame_next(struct frame *f, struct buf *b, uint32_t max_len, uint8_t *type,
                             uint32_t *len);
/* Pass the message frame_next() announced: it counts as parsed as its bytes
 * arrive. */
void frame_pass(struct frame *f, struct buf *b, uint32_t len);
/* Has the whole message at b->parsed arrived? */
static inline bool frame_whole(const struct buf *b, uint32_t len)
{
	return buf_unparsed(b) >= 1 + (uint64_t)len;
}
/* Could it ever be whole in this buffer (after compaction)? */
static inline bool frame_fits(const struct buf *b, uint32_t len)
{
	return 1 + (uint64_t)len <= b->cap;
}
/* Pass the last `n` bytes of a message whose start was consumed otherwise
 * (b->parsed is just after that part). */
void frame_pass_rest(struct frame *f, struct buf *b, uint32_t n);
/* Drop the whole message at b->parsed; only when nothing unsent is before it
 * (b->sent == b->parsed). */
void frame_skip(struct buf *b, uint32_t len);
/* Body of the whole message at b->parsed. */
static inline const uint8_t *frame_body(const struct buf *b)
{
	return b->data + b->parsed + 5;
}

#endif
