/* libFuzzer target: what pgmoat parses in messages from PostgreSQL outside
 * the relay (login, its own queries, idle servers).  The input is a stream
 * of backend messages, framed as the server code frames it (frame_next()
 * over a buffer, lengths up to 64 KB looked at whole), and each whole
 * message goes to the parser its type has there:
 *
 *   'R' proto_parse_auth_request()   (AuthenticationOk/MD5/SASL mechanism
 *                                     lists/SASLContinue/SASLFinal, others)
 *   'E' 'N' proto_parse_error()      ('E' also its defaults at login)
 *   'S' proto_parse_param_status()
 *   'K' proto_parse_backend_key()
 *   'D' proto_parse_row2()           (rows of pgmoat's own queries)
 *   'C' session_tag_changes()        (a CommandComplete tag)
 *
 * The SCRAM exchange itself has its own target (scram_client); the relay's
 * view of server messages is in the txn target. */
#include <config.h>

#include "common/buf.h"
#include "proxy/frame.h"
#include "proxy/proto.h"
#include "proxy/session.h"
#include "tests/fuzz/fuzz.h"

#define MSG_MAX (64u * 1024)

static void check_str(const char *s, const uint8_t *body, size_t len)
{
	if ((const uint8_t *)s < body || (const uint8_t *)s + strlen(s) >= body + len)
		abort(); /* a string outside its message */
}

static void one_message(uint8_t type, const uint8_t *body, uint32_t len, struct params *ps)
{
	switch (type) {
	case 'R': {
		struct auth_request req;
		bool ok = proto_parse_auth_request(body, len, &req);
		if (ok && req.code == AUTH_REQ_MD5 && (!req.salt || req.salt + 4 > body + len))
			abort();
		if (ok && (req.code == AUTH_REQ_SASL_CONTINUE || req.code == AUTH_REQ_SASL_FINAL) &&
		    (!req.data || req.data + req.data_len != body + len))
			abort();
		if (!ok && len >= 4 && req.code == UINT32_MAX)
			abort(); /* a code was there */
		break;
	}
	case 'E':
	case 'N': {
		struct pg_error e;
		if (proto_parse_error(body, len, &e) &&
		    (strnlen(e.severity, sizeof(e.severity)) == sizeof(e.severity) ||
		     strnlen(e.sqlstate, sizeof(e.sqlstate)) == sizeof(e.sqlstate) ||
		     strnlen(e.message, sizeof(e.message)) == sizeof(e.message)))
			abort();
		if (e.sqlstate[0] && strlen(e.sqlstate) != 5)
			abort(); /* only 5-character codes are kept */
		break;
	}
	case 'S': {
		const char *name, *value;
		if (proto_parse_param_status(body, len, &name, &value)) {
			check_str(name, body, len);
			check_str(value, body, len);
			params_set(ps, name, value);
			if (!params_get(ps, name))
				abort();
		}
		break;
	}
	case 'K': {
		uint32_t pid, key;
		if (!proto_parse_backend_key(body, len, &pid, &key) && (pid || key))
			abort(); /* a short one leaves no half-read key */
		break;
	}
	case 'D': {
		const uint8_t *col[2];
		uint32_t n[2];
		if (proto_parse_row2(body, len, col, n)) {
			for (int i = 0; i < 2; i++)
				if (col[i] < body || col[i] + n[i] > body + len ||
				    memchr(col[i], 0, n[i]))
					abort();
			char *name = strndup((const char *)col[0], n[0]);
			char *value = strndup((const char *)col[1], n[1]);
			if (name && value)
				params_set(ps, name, value);
			free(name);
			free(value);
		}
		break;
	}
	case 'C':
		(void)session_tag_changes((const char *)body, len);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf b = {0};
	b.cap = (uint32_t)(size > MSG_MAX ? size : MSG_MAX);
	b.data = malloc(b.cap ? b.cap : 1);
	if (!b.data)
		return 0;
	if (size)
		memcpy(b.data, data, size);
	b.recvd = (uint32_t)size;
	struct frame f;
	frame_init(&f);
	struct params ps;
	params_init(&ps);
	for (;;) {
		uint8_t type;
		uint32_t len;
		enum frame_status fs = frame_next(&f, &b, MSG_MAX, &type, &len);
		if (fs != FRAME_HEADER || !frame_whole(&b, len))
			break;
		/* A copy of exactly the body, so reading past it is caught. */
		uint32_t blen = len - 4;
		uint8_t *body = malloc(blen ? blen : 1);
		if (!body)
			break;
		memcpy(body, frame_body(&b), blen);
		one_message(type, body, blen, &ps);
		free(body);
		frame_skip(&b, len);
	}
	params_free(&ps);
	free(b.data);
	return 0;
}
