/* libFuzzer target: proto_parse_startup() on the input as a startup packet
 * body (after the 4-byte length), and proto_parse_error() on the same bytes
 * as an ErrorResponse body. */
#include <config.h>

#include "proxy/proto.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct startup s;
	proto_parse_startup(data, size, &s);
	if (s.kind == STARTUP_NORMAL) {
		for (uint32_t i = 0; i < s.params.n; i++)
			(void)params_get(&s.params, s.params.v[i].name);
		if ((s.user && strlen(s.user) > size) || (s.database && strlen(s.database) > size))
			abort();
	}
	startup_free(&s);

	struct pg_error e;
	if (proto_parse_error(data, size, &e) &&
	    (strnlen(e.severity, sizeof(e.severity)) == sizeof(e.severity) ||
	     strnlen(e.sqlstate, sizeof(e.sqlstate)) == sizeof(e.sqlstate) ||
	     strnlen(e.message, sizeof(e.message)) == sizeof(e.message)))
		abort(); /* fields must be NUL-terminated */
	return 0;
}
