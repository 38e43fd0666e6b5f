/* libFuzzer target: pp_parse() on every prefix length the relay could see
 * (the whole input, and the input cut at the byte its first byte names). */
#include <config.h>

#include "proxy/proxyproto.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pp_result r;
	char err[128];

	enum pp_status st = pp_parse(data, size, &r, err, sizeof(err));
	if (st == PP_DONE && (r.consumed == 0 || r.consumed > size))
		abort(); /* the header cannot be longer than what was given */
	(void)pp_status_name(st);
	if (size > 1) {
		/* A shorter prefix: never DONE where the whole input was BAD. */
		size_t cut = data[0] % size;
		enum pp_status st2 = pp_parse(data, cut, &r, NULL, 0);
		if (st2 == PP_DONE && st == PP_BAD)
			abort();
	}
	return 0;
}
