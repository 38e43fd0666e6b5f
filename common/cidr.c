#include <config.h>

#include "common/cidr.h"

#include "common/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The longest network we accept as text: an IPv6 address (45 bytes with an
 * embedded IPv4 part) plus "/128". */
#define CIDR_MAX_TEXT 64
/* How much of a bad input goes into an error message. */
#define CIDR_ERR_ECHO 80

static void set_err(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static size_t addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

static int max_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

/* Zero every bit past the prefix. */
static void mask_host_bits(struct cidr *c)
{
	size_t len = addr_len(c->family);

	for (size_t i = 0; i < sizeof(c->addr); i++) {
		int keep = c->bits - (int)(i * 8); /* prefix bits in this byte */
		if (i >= len || keep <= 0)
			c->addr[i] = 0;
		else if (keep < 8)
			c->addr[i] &= (uint8_t)(0xff << (8 - keep));
	}
}

/* Parse the `n` bytes at `s` as a bare IPv4 or IPv6 address. */
static bool parse_addr(const char *s, size_t n, int *family, uint8_t addr[16])
{
	char buf[INET6_ADDRSTRLEN + 1];

	memset(addr, 0, 16);
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (memchr(buf, ':', n) != NULL) {
		*family = AF_INET6;
		return inet_pton(AF_INET6, buf, addr) == 1;
	}
	*family = AF_INET;
	return inet_pton(AF_INET, buf, addr) == 1;
}

bool cidr_parse(const char *s, struct cidr *out, char *err, size_t errlen)
{
	struct cidr c;
	const char *slash;
	size_t alen;

	if (s == NULL || s[0] == '\0') {
		set_err(err, errlen, "empty network address");
		return false;
	}
	slash = strchr(s, '/');
	alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	memset(&c, 0, sizeof(c));
	if (!parse_addr(s, alen, &c.family, c.addr)) {
		set_err(err, errlen, "\"%.*s\" is not a valid IPv4 or IPv6 address",
		        (int)MIN(alen, CIDR_ERR_ECHO), s);
		return false;
	}
	c.bits = max_bits(c.family);
	if (slash != NULL) {
		const char *p = slash + 1;
		size_t nd = 0;
		int v = 0;

		while (nd < 3 && p[nd] >= '0' && p[nd] <= '9')
			v = v * 10 + (p[nd++] - '0');
		if (nd == 0 || p[nd] != '\0' || v > c.bits) {
			set_err(err, errlen,
			        "invalid prefix length \"%.*s\" in \"%.*s\" (0 to %d for IPv%d)",
			        CIDR_ERR_ECHO, p, CIDR_ERR_ECHO, s, c.bits,
			        c.family == AF_INET ? 4 : 6);
			return false;
		}
		c.bits = v;
	}
	mask_host_bits(&c);
	*out = c;
	return true;
}

bool cidr_parse_mask(const char *addr, const char *mask, struct cidr *out, char *err, size_t errlen)
{
	struct cidr c;
	uint8_t m[16];
	int mfamily;
	size_t len, i;
	int bits = 0;

	if (addr == NULL || addr[0] == '\0') {
		set_err(err, errlen, "empty network address");
		return false;
	}
	if (mask == NULL || mask[0] == '\0') {
		set_err(err, errlen, "empty netmask");
		return false;
	}
	memset(&c, 0, sizeof(c));
	if (strchr(addr, '/') != NULL || !parse_addr(addr, strlen(addr), &c.family, c.addr)) {
		set_err(err, errlen, "\"%.*s\" is not a valid IPv4 or IPv6 address", CIDR_ERR_ECHO,
		        addr);
		return false;
	}
	if (!parse_addr(mask, strlen(mask), &mfamily, m)) {
		set_err(err, errlen, "\"%.*s\" is not a valid netmask", CIDR_ERR_ECHO, mask);
		return false;
	}
	if (mfamily != c.family) {
		set_err(err, errlen,
		        "address \"%.*s\" and netmask \"%.*s\" are of different families",
		        CIDR_ERR_ECHO, addr, CIDR_ERR_ECHO, mask);
		return false;
	}
	/* Count the leading ones, then insist the rest is zero. */
	len = addr_len(c.family);
	for (i = 0; i < len && m[i] == 0xff; i++)
		bits += 8;
	if (i < len) {
		uint8_t b = m[i];
		while (b & 0x80) {
			bits++;
			b = (uint8_t)(b << 1);
		}
		if (b != 0) {
			set_err(err, errlen, "netmask \"%.*s\" is not contiguous", CIDR_ERR_ECHO,
			        mask);
			return false;
		}
		for (i++; i < len; i++) {
			if (m[i] != 0) {
				set_err(err, errlen, "netmask \"%.*s\" is not contiguous",
				        CIDR_ERR_ECHO, mask);
				return false;
			}
		}
	}
	c.bits = bits;
	mask_host_bits(&c);
	*out = c;
	return true;
}

/* The first `bits` bits of `a` and `b` are equal. */
static bool prefix_eq(const uint8_t *a, const uint8_t *b, int bits)
{
	size_t full = (size_t)bits / 8;
	int rest = bits % 8;

	if (full > 0 && memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t m = (uint8_t)(0xff << (8 - rest));
	return (a[full] & m) == (b[full] & m);
}

bool cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	if (c == NULL || sa == NULL)
		return false;
	/* Copy out rather than cast: the caller's storage need not be aligned
	 * for the specific type. */
	if (sa->sa_family == AF_INET) {
		if (c->family != AF_INET)
			return false;
		memcpy(&sin, sa, sizeof(sin));
		return prefix_eq(c->addr, (const uint8_t *)&sin.sin_addr.s_addr, c->bits);
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(&sin6, sa, sizeof(sin6));
		if (c->family == AF_INET6)
			return prefix_eq(c->addr, sin6.sin6_addr.s6_addr, c->bits);
		if (c->family == AF_INET && IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr))
			return prefix_eq(c->addr, sin6.sin6_addr.s6_addr + 12, c->bits);
	}
	return false;
}

void cidr_format(const struct cidr *c, char *out, size_t n)
{
	char buf[INET6_ADDRSTRLEN];

	if (out == NULL || n == 0)
		return;
	if (c == NULL || (c->family != AF_INET && c->family != AF_INET6) ||
	    inet_ntop(c->family, c->addr, buf, sizeof(buf)) == NULL) {
		snprintf(out, n, "?");
		return;
	}
	snprintf(out, n, "%s/%d", buf, c->bits);
}

static bool is_sep(char c)
{
	return c == ',' || isspace((unsigned char)c);
}

bool cidr_list_parse(const char *csv, struct cidr_list *out, char *err, size_t errlen)
{
	struct cidr_list l = {NULL, 0};
	const char *p = csv != NULL ? csv : "";
	size_t cap = 0;

	for (;;) {
		char buf[CIDR_MAX_TEXT + 1];
		const char *start;
		struct cidr c;
		size_t n;

		while (is_sep(*p))
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p != '\0' && !is_sep(*p))
			p++;
		n = (size_t)(p - start);
		if (n > CIDR_MAX_TEXT) {
			set_err(err, errlen, "\"%.*s...\" is too long for a network address",
			        CIDR_ERR_ECHO, start);
			goto fail;
		}
		memcpy(buf, start, n);
		buf[n] = '\0';
		if (!cidr_parse(buf, &c, err, errlen))
			goto fail;
		if (l.n == cap) {
			cap = cap ? cap * 2 : 8;
			l.v = xrealloc(l.v, cap * sizeof(*l.v));
		}
		l.v[l.n++] = c;
	}
	*out = l;
	return true;
fail:
	free(l.v);
	out->v = NULL;
	out->n = 0;
	return false;
}

bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
	if (l == NULL)
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (cidr_match(&l->v[i], sa))
			return true;
	return false;
}

void cidr_list_free(struct cidr_list *l)
{
	if (l == NULL)
		return;
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
