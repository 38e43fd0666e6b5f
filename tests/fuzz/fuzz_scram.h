/* RFC 7677's example, shared by the SCRAM targets, and how they cut their
 * input: byte 0 holds option bits, the rest is split into messages at '\n'
 * (never valid inside a SCRAM message, and it keeps the seeds readable). */
#ifndef PGMOAT_TESTS_FUZZ_FUZZ_SCRAM_H
#define PGMOAT_TESTS_FUZZ_FUZZ_SCRAM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RFC_PASSWORD "pencil"
#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SECRET                                                                                 \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
/* ClientKey of the example, for the passthrough (keys) mode. */
static const uint8_t rfc_client_key[32] = {0xa6, 0x0f, 0xc9, 0x23, 0xd6, 0x7e, 0x86, 0x44,
                                           0xa9, 0x2d, 0x16, 0xb9, 0x6e, 0xda, 0x5e, 0xf4,
                                           0x65, 0x6b, 0x0c, 0x72, 0x5c, 0x48, 0x43, 0x74,
                                           0xbe, 0x25, 0x53, 0x55, 0x76, 0x99, 0x6e, 0x8b};
/* A stand-in tls-server-end-point hash. */
static const uint8_t fuzz_cb_data[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                         12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                         23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

struct fuzz_piece {
	const uint8_t *p;
	size_t len;
};

/* Cut data[0..size) at the first '\n': *a before it, *b after (empty when
 * there is none). */
static inline void fuzz_split(const uint8_t *data, size_t size, struct fuzz_piece *a,
                              struct fuzz_piece *b)
{
	const uint8_t *nl = size ? memchr(data, '\n', size) : NULL;
	a->p = data;
	a->len = nl ? (size_t)(nl - data) : size;
	b->p = nl ? nl + 1 : data + size;
	b->len = nl ? size - a->len - 1 : 0;
}

#endif
