#include <config.h>

#include "proxy/httpreq.h"

#include <string.h>

static bool is_tchar(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	        (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Whether `p` (from the end of the request line on) holds an empty line. */
static bool headers_end(const char *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (p[i] == '\n' &&
		    (p[i + 1] == '\n' || (p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n')))
			return true;
	return false;
}

int http_request_status(const char *req, size_t len, size_t max, bool *head)
{
	const char *nl = memchr(req, '\n', len);
	if (!nl)
		return len < max ? 0 : 431;
	/* The request line: METHOD SP target SP HTTP/1.x */
	size_t line = (size_t)(nl - req);
	if (line > 0 && req[line - 1] == '\r')
		line--;
	size_t i = 0, method_len, target_at, target_len;
	while (i < line && i < 16 && is_tchar(req[i]))
		i++;
	method_len = i;
	if (method_len == 0 || i >= line || req[i] != ' ')
		return 400;
	target_at = ++i;
	while (i < line && req[i] > ' ' && req[i] < 0x7f)
		i++;
	target_len = i - target_at;
	if (target_len == 0 || req[target_at] != '/' || i >= line || req[i] != ' ')
		return 400;
	i++;
	if (line - i != 8 || memcmp(req + i, "HTTP/1.", 7) != 0 || req[i + 7] < '0' ||
	    req[i + 7] > '9')
		return 400;
	if (!headers_end(nl, len - (size_t)(nl - req)))
		return len < max ? 0 : 431;
	*head = method_len == 4 && memcmp(req, "HEAD", 4) == 0;
	bool get = method_len == 3 && memcmp(req, "GET", 3) == 0;
	if (!get && !*head)
		return 405;
	size_t path_len = 0;
	while (path_len < target_len && req[target_at + path_len] != '?')
		path_len++;
	if (path_len == 8 && memcmp(req + target_at, "/metrics", 8) == 0)
		return 200;
	return 404;
}
