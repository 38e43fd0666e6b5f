/* What tests/unit/test_scram.c and test_scram_cb.c share: RFC 7677's
 * vector and small helpers. */
#ifndef PGMOAT_TESTS_UNIT_SCRAM_VECTORS_H
#define PGMOAT_TESTS_UNIT_SCRAM_VECTORS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/scram.h"
#include "tests/lib/tap.h"

/* RFC 7677 section 3. */
#define RFC_PASSWORD "pencil"
#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL                                                                           \
	"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* Derived from the RFC's inputs with Python. */
#define RFC_SALTED "c4a49510323ab4f952cac1fa99441939e78ea74d6be81ddf7096e87513dc615d"
#define RFC_CLIENT_KEY "a60fc923d67e8644a92d16b96eda5ef4656b0c725c484374be25535576996e8b"
#define RFC_SECRET                                                                                 \
	"SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="             \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

/* A message literal and its length, NUL bytes included. */
#define MSG(lit) lit, sizeof(lit) - 1
#define MOCK_SEED "mock-seed-123"

static inline const uint8_t *u8(const char *s)
{
	return (const uint8_t *)s;
}

static inline void hex_decode(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			tap_bail("bad hex in test");
		out[i] = (uint8_t)v;
	}
}

static inline void rfc_secret(struct scram_secret *sec)
{
	if (!scram_parse_secret(RFC_SECRET, sec))
		tap_bail("cannot parse the RFC secret");
}

/* Run a whole exchange; returns the server's final status and fills the
 * client's verify status. */
static inline enum scram_status exchange(struct scram_server *s, struct scram_client *c,
                                         enum scram_status *client_st)
{
	char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
	size_t l1, l2, l3, l4;
	enum scram_status st = SCRAM_PROTO;

	*client_st = SCRAM_PROTO;
	if (!scram_client_first(c, &m1, &l1))
		goto out;
	if (scram_server_first(s, u8(m1), l1, &m2, &l2) != SCRAM_CONTINUE)
		goto out;
	if (scram_client_final(c, u8(m2), l2, &m3, &l3) != SCRAM_CONTINUE)
		goto out;
	st = scram_server_final(s, u8(m3), l3, &m4, &l4);
	if (st == SCRAM_DONE)
		*client_st = scram_client_verify(c, u8(m4), l4);
out:
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	return st;
}

#endif
