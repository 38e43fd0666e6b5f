/* libFuzzer target: the messages a client sends while it authenticates,
 * framed as proxy/client_auth.c frames them (at most 16 KB each), each 'p'
 * message read as the PasswordMessage (proto_parse_password(), then
 * md5_check_response() against a stored md5 hash) and as the
 * SASLInitialResponse (proto_parse_sasl_initial()) it may be.  The SCRAM
 * messages inside have their own target (scram_server). */
#include <config.h>

#include "auth/md5.h"
#include "common/buf.h"
#include "proxy/frame.h"
#include "proxy/proto.h"
#include "tests/fuzz/fuzz.h"

#define AUTH_MSG_MAX 16384 /* as in proxy/client_auth.c */

static void one_message(const uint8_t *body, uint32_t len)
{
	static const uint8_t salt[4] = {1, 2, 3, 4};
	/* md5("secret" "user") */
	static const char stored[] = "md520eb1b22a92b5c573dc1eb4331fc49ee";
	const char *pw = proto_parse_password(body, len);
	if (pw) {
		if (strlen(pw) + 1 != len)
			abort();
		(void)md5_check_response(stored, "user", salt, pw, len - 1);
		(void)md5_check_response("plain password", "user", salt, pw, len - 1);
	}
	const char *mech;
	const uint8_t *data;
	uint32_t n;
	if (proto_parse_sasl_initial(body, len, &mech, &data, &n) &&
	    ((const uint8_t *)mech != body || data + n != body + len ||
	     strlen(mech) + 1 + 4 + n != len))
		abort(); /* not what fills the message */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf b = {0};
	b.cap = (uint32_t)(size > AUTH_MSG_MAX ? size : AUTH_MSG_MAX);
	b.data = malloc(b.cap);
	if (!b.data)
		return 0;
	if (size)
		memcpy(b.data, data, size);
	b.recvd = (uint32_t)size;
	struct frame f;
	frame_init(&f);
	for (;;) {
		uint8_t type;
		uint32_t len;
		if (frame_next(&f, &b, AUTH_MSG_MAX, &type, &len) != FRAME_HEADER ||
		    !frame_whole(&b, len))
			break;
		uint32_t blen = len - 4;
		uint8_t *body = malloc(blen ? blen : 1);
		if (!body)
			break;
		memcpy(body, frame_body(&b), blen);
		if (type == 'p')
			one_message(body, blen);
		free(body);
		frame_skip(&b, len);
	}
	free(b.data);
	return 0;
}
