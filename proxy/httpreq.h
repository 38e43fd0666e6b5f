/* The request of the metrics endpoint (proxy/metrics.h): what to answer to
 * the bytes a scraper sent so far.  A pure function of its input, so any
 * bytes from the network can be checked without a socket
 * (tests/fuzz/fuzz_http.c). */
#ifndef PGMOAT_PROXY_HTTPREQ_H
#define PGMOAT_PROXY_HTTPREQ_H

#include <stdbool.h>
#include <stddef.h>

/* `len` bytes of request line and headers (not NUL-terminated): 0 to read
 * more, or the HTTP status to answer: 200 for GET or HEAD /metrics (with
 * any query string), 404 for another path, 405 for another method, 400 for
 * a malformed request line, 431 when `max` bytes hold no complete request.
 * *head tells a HEAD request (set with 200, 404). */
int http_request_status(const char *req, size_t len, size_t max, bool *head)
        __attribute__((warn_unused_result));

#endif
