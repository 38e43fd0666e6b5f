/* Framing over a relay buffer: partial headers, messages split across
 * reads, messages far larger than the buffer, bad lengths. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "proxy/frame.h"
#include "tests/lib/tap.h"

static struct buf make_buf(uint32_t cap)
{
	struct buf b = {0};
	b.data = calloc(1, cap);
	b.cap = cap;
	return b;
}

static void feed(struct buf *b, const void *p, uint32_t n)
{
	memcpy(b->data + b->recvd, p, n);
	b->recvd += n;
}

/* A message of `type` with a body of `body_len` bytes of `fill`. */
static uint8_t *message(uint8_t type, uint32_t body_len, uint8_t fill, uint32_t *total)
{
	*total = 5 + body_len;
	uint8_t *m = malloc(*total);
	m[0] = type;
	put_u32(m + 1, body_len + 4);
	memset(m + 5, fill, body_len);
	return m;
}

static void test_partial_header(void)
{
	struct buf b = make_buf(64);
	struct frame f;
	frame_init(&f);
	uint8_t type;
	uint32_t len;
	uint32_t total;
	uint8_t *m = message('Q', 10, 'x', &total);
	feed(&b, m, 3);
	is_int(frame_next(&f, &b, 1000, &type, &len), FRAME_MORE, "3 header bytes: need more");
	is_int(b.parsed, 0, "nothing parsed yet");
	feed(&b, m + 3, 2);
	is_int(frame_next(&f, &b, 1000, &type, &len), FRAME_HEADER, "5 header bytes: header");
	is_int(type, 'Q', "type read");
	is_int(len, 14, "length read (counts itself)");
	ok(!frame_whole(&b, len), "body not there yet");
	frame_pass(&f, &b, len);
	is_int(b.parsed, 5, "header passed as it arrived");
	feed(&b, m + 5, total - 5);
	is_int(frame_next(&f, &b, 1000, &type, &len), FRAME_MORE, "rest of body passes");
	is_int(b.parsed, total, "whole message parsed");
	free(m);
	free(b.data);
}

static void test_two_messages_one_read(void)
{
	struct buf b = make_buf(64);
	struct frame f;
	frame_init(&f);
	uint32_t t1, t2;
	uint8_t *m1 = message('P', 3, 'a', &t1);
	uint8_t *m2 = message('Z', 1, 'I', &t2);
	feed(&b, m1, t1);
	feed(&b, m2, t2);
	uint8_t type;
	uint32_t len;
	is_int(frame_next(&f, &b, 1000, &type, &len), FRAME_HEADER, "first header");
	is_int(type, 'P', "first type");
	ok(frame_whole(&b, len), "first whole");
	frame_pass(&f, &b, len);
	is_int(frame_next(&f, &b, 1000, &type, &len), FRAME_HEADER, "second header");
	is_int(type, 'Z', "second type");
	is_int(frame_body(&b)[0], 'I', "body of second readable in place");
	frame_pass(&f, &b, len);
	is_int(b.parsed, t1 + t2, "both parsed");
	is_int(frame_next(&f, &b, 1000, &type, &len), FRAME_MORE, "then nothing");
	free(m1);
	free(m2);
	free(b.data);
}

/* A 1 MB message through a 256-byte buffer: streamed, never held whole. */
static void test_oversized_streams(void)
{
	struct buf b = make_buf(256);
	struct frame f;
	frame_init(&f);
	uint32_t total;
	uint8_t *m = message('D', 1 << 20, 'y', &total);
	uint32_t fed = 0, forwarded = 0;
	int headers = 0;
	bool bad = false;
	while (fed < total) {
		buf_reset_if_drained(&b);
		uint32_t n = total - fed;
		if (n > buf_room(&b))
			n = buf_room(&b);
		if (n > 100)
			n = 100; /* odd-sized reads */
		feed(&b, m + fed, n);
		fed += n;
		uint8_t type;
		uint32_t len;
		enum frame_status st;
		while ((st = frame_next(&f, &b, 2u << 20, &type, &len)) == FRAME_HEADER) {
			headers++;
			frame_pass(&f, &b, len);
		}
		if (st == FRAME_BAD)
			bad = true;
		/* "send" what is parsed */
		if (memcmp(b.data + b.sent, m + forwarded, b.parsed - b.sent) != 0)
			bad = true;
		forwarded += b.parsed - b.sent;
		b.sent = b.parsed;
	}
	ok(!bad, "streamed bytes are the message's bytes, in order");
	is_int(headers, 1, "one header seen");
	is_int(forwarded, total, "every byte forwarded");
	is_int(f.remaining, 0, "message finished");
	ok(!frame_fits(&b, (1u << 20) + 4), "a 1 MB message never fits a 256-byte buffer");
	free(m);
	free(b.data);
}

static void test_bad_lengths(void)
{
	struct buf b = make_buf(64);
	struct frame f;
	frame_init(&f);
	uint8_t hdr[5] = {'Q', 0, 0, 0, 3};
	feed(&b, hdr, 5);
	uint8_t type;
	uint32_t len;
	is_int(frame_next(&f, &b, 1000, &type, &len), FRAME_BAD, "length 3 is bad");
	b.sent = b.parsed = b.recvd = 0;
	uint8_t big[5] = {'Q', 0x7f, 0xff, 0xff, 0xff};
	feed(&b, big, 5);
	is_int(frame_next(&f, &b, 1 << 20, &type, &len), FRAME_BAD,
	       "length over the maximum is bad");
	is_int(frame_next(&f, &b, 0x7fffffff, &type, &len), FRAME_HEADER,
	       "the same length under a larger maximum is a header");
	free(b.data);
}

static void test_skip_and_compact(void)
{
	struct buf b = make_buf(32);
	struct frame f;
	frame_init(&f);
	uint32_t t1, t2;
	uint8_t *m1 = message('X', 0, 0, &t1);
	uint8_t *m2 = message('Q', 20, 'q', &t2);
	feed(&b, m1, t1);
	feed(&b, m2, 10);
	uint8_t type;
	uint32_t len;
	is_int(frame_next(&f, &b, 1000, &type, &len), FRAME_HEADER, "terminate header");
	frame_skip(&b, len);
	is_int(b.sent, t1, "skipped message counts as sent");
	is_int(frame_next(&f, &b, 1000, &type, &len), FRAME_HEADER, "next header");
	ok(!frame_whole(&b, len), "partial");
	buf_compact(&b);
	is_int(b.sent, 0, "compacted to the front");
	is_int(b.recvd, 10, "partial bytes kept");
	is_int(b.data[0], 'Q', "message starts at 0");
	feed(&b, m2 + 10, t2 - 10);
	ok(frame_whole(&b, len), "whole after the rest arrived");
	ok(memcmp(frame_body(&b), m2 + 5, 20) == 0, "body intact after compaction");
	free(m1);
	free(m2);
	free(b.data);
}

int main(void)
{
	test_partial_header();
	test_two_messages_one_read();
	test_oversized_streams();
	test_bad_lengths();
	test_skip_and_compact();
	return tap_done();
}
