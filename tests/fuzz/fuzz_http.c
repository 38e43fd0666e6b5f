/* libFuzzer target: the metrics endpoint's request parser,
 * http_request_status(), on the input as the bytes a scraper sent, whole
 * and cut at a quarter, half and three quarters of its length (as reads
 * may deliver it): a request answered at some length is answered the same
 * once more bytes arrive. */
#include <config.h>

#include "proxy/httpreq.h"
#include "tests/fuzz/fuzz.h"

#define MAX_REQUEST 8192 /* METRICS_MAX_REQUEST */

static int status_of(const uint8_t *data, size_t n, bool *head)
{
	/* A copy of exactly n bytes, so reading past them is caught. */
	char *req = malloc(n ? n : 1);
	if (!req)
		abort();
	if (n)
		memcpy(req, data, n);
	*head = false;
	int st = http_request_status(req, n, MAX_REQUEST, head);
	free(req);
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_REQUEST)
		size = MAX_REQUEST; /* the endpoint never holds more */
	bool head;
	int whole = status_of(data, size, &head);
	if (whole != 0 && whole != 200 && whole != 400 && whole != 404 && whole != 405 &&
	    whole != 431)
		abort();
	for (size_t k = 1; k < 4; k++) {
		bool h;
		int early = status_of(data, size * k / 4, &h);
		if (early && (early != whole || h != head))
			abort(); /* answered early, then differently with more bytes */
	}
	return 0;
}
