#include <config.h>

#include "proxy/proxyproto.h"

#include "common/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define V1_PREFIX "PROXY "
#define V1_PREFIX_LEN 6
#define V2_HEADER_LEN 16
#define V2_ADDR_INET 12 /* 2 * 4 + 2 * 2 */
#define V2_ADDR_INET6 36 /* 2 * 16 + 2 * 2 */
#define V2_ADDR_UNIX 216 /* 2 * 108 */
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V1_FIELD_MAX 64 /* longer than any address or port we accept */

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

const char *pp_status_name(enum pp_status s)
{
	switch (s) {
#define PP_STATUS_NAME(name)                                                                       \
	case name:                                                                                 \
		return #name;
		PP_STATUS_LIST(PP_STATUS_NAME)
#undef PP_STATUS_NAME
	}
	return "PP_?";
}

static enum pp_status bad(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static enum pp_status bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return PP_BAD;
}

/* ---- version 1 ---- */

enum v1_proto { V1_TCP4, V1_TCP6, V1_UNKNOWN };

static const struct {
	const char *word; /* with the byte that must follow it, when fixed */
	size_t len;
	enum v1_proto proto;
} v1_protos[] = {
        {"TCP4 ", 5, V1_TCP4},
        {"TCP6 ", 5, V1_TCP6},
        {"UNKNOWN", 7, V1_UNKNOWN},
};

static bool v1_char_ok(enum v1_proto proto, uint8_t c)
{
	if (c == ' ' || (c >= '0' && c <= '9'))
		return true;
	if (proto == V1_TCP4)
		return c == '.';
	/* TCP6: hex groups, "::", an embedded dotted IPv4 at the end. */
	return c == ':' || c == '.' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A port: 1-5 decimal digits, no sign, no leading zero, at most 65535. */
static bool v1_port(const char *s, in_port_t *port)
{
	size_t n = strlen(s);
	unsigned long v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = htons((in_port_t)v);
	return true;
}

static bool v1_addr(enum v1_proto proto, const char *s, in_port_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (proto == V1_TCP4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = port;
		return inet_pton(AF_INET, s, &sin->sin_addr) == 1;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = port;
	return inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1;
}

/* The four fields of a TCP4/TCP6 line, [p, end) without the CRLF. */
static enum pp_status v1_fields(enum v1_proto proto, const uint8_t *p, const uint8_t *end,
                                struct pp_result *out, char *err, size_t errlen)
{
	static const char *const names[] = {"source address", "destination address", "source port",
	                                    "destination port"};
	char field[4][V1_FIELD_MAX];
	in_port_t sport, dport;
	size_t nf = 0;

	while (nf < 4) {
		const uint8_t *sp = memchr(p, ' ', (size_t)(end - p));
		const uint8_t *fend = sp != NULL ? sp : end;
		size_t n = (size_t)(fend - p);

		if (n == 0)
			return bad(err, errlen, "PROXY v1 header: empty %s (single spaces only)",
			           names[nf]);
		if (n >= V1_FIELD_MAX)
			return bad(err, errlen, "PROXY v1 header: bad %s", names[nf]);
		memcpy(field[nf], p, n);
		field[nf][n] = '\0';
		nf++;
		if (sp == NULL)
			break;
		p = sp + 1;
		if (nf == 4)
			return bad(err, errlen, "PROXY v1 header: too many fields");
	}
	if (nf < 4)
		return bad(err, errlen, "PROXY v1 header: missing %s", names[nf]);
	if (!v1_port(field[2], &sport))
		return bad(err, errlen, "PROXY v1 header: bad source port");
	if (!v1_port(field[3], &dport))
		return bad(err, errlen, "PROXY v1 header: bad destination port");
	if (!v1_addr(proto, field[0], sport, &out->src))
		return bad(err, errlen, "PROXY v1 header: bad source address");
	if (!v1_addr(proto, field[1], dport, &out->dst))
		return bad(err, errlen, "PROXY v1 header: bad destination address");
	out->family = proto == V1_TCP4 ? AF_INET : AF_INET6;
	return PP_DONE;
}

static enum pp_status parse_v1(const uint8_t *d, size_t len, struct pp_result *out, char *err,
                               size_t errlen)
{
	size_t n = MIN(len, (size_t)PP_V1_MAX), i, word_end = 0;
	enum v1_proto proto = V1_UNKNOWN;
	bool matched = false;
	struct pp_result r;

	for (i = 0; i < n && i < V1_PREFIX_LEN; i++) {
		if (d[i] != (uint8_t)V1_PREFIX[i])
			return bad(err, errlen, "not a PROXY protocol header");
	}
	if (n < V1_PREFIX_LEN)
		return PP_MORE;

	/* The protocol word: decided as soon as the bytes rule out the others. */
	for (size_t k = 0; k < ARRAY_SIZE(v1_protos); k++) {
		size_t m = MIN(n - V1_PREFIX_LEN, v1_protos[k].len);
		if (memcmp(d + V1_PREFIX_LEN, v1_protos[k].word, m) != 0)
			continue;
		if (m < v1_protos[k].len)
			return PP_MORE; /* "T" may still be TCP4 or TCP6: wait either way */
		proto = v1_protos[k].proto;
		word_end = V1_PREFIX_LEN + v1_protos[k].len;
		matched = true;
		break;
	}
	if (!matched)
		return bad(err, errlen,
		           "PROXY v1 header: unknown protocol (not TCP4, TCP6 or UNKNOWN)");
	if (proto == V1_UNKNOWN && n > word_end && d[word_end] != ' ' && d[word_end] != '\r')
		return bad(err, errlen,
		           "PROXY v1 header: unknown protocol (not TCP4, TCP6 or UNKNOWN)");

	/* Look for the CRLF, refusing bad bytes as they arrive. */
	for (i = word_end; i < n; i++) {
		if (d[i] == '\r') {
			if (i + 1 == n)
				break; /* the LF may be next, or past the limit */
			if (d[i + 1] != '\n')
				return bad(err, errlen, "PROXY v1 header: CR without LF");
			break;
		}
		if (d[i] == '\n')
			return bad(err, errlen, "PROXY v1 header: LF without CR");
		if (proto != V1_UNKNOWN && !v1_char_ok(proto, d[i]))
			return bad(err, errlen, "PROXY v1 header: unexpected byte 0x%02x", d[i]);
	}
	if (i + 1 >= n) {
		if (len >= PP_V1_MAX)
			return bad(err, errlen, "PROXY v1 header: no CRLF in the first %d bytes",
			           PP_V1_MAX);
		return PP_MORE;
	}

	/* d[i] is the CR of the CRLF. */
	memset(&r, 0, sizeof(r));
	r.family = AF_UNSPEC;
	r.version = 1;
	r.consumed = i + 2;
	if (proto != V1_UNKNOWN) {
		enum pp_status st = v1_fields(proto, d + word_end, d + i, &r, err, errlen);
		if (st != PP_DONE)
			return st;
	}
	*out = r;
	return PP_DONE;
}

/* ---- version 2 ---- */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/* How many address bytes family byte `fam` needs under the PROXY command
 * (0 for AF_UNSPEC); -1 with *why set when the family is refused. */
static int v2_addr_len(uint8_t fam, const char **why)
{
	switch (fam) {
	case 0x00:
		return 0;
	case 0x11:
		return V2_ADDR_INET;
	case 0x21:
		return V2_ADDR_INET6;
	case 0x31:
		return V2_ADDR_UNIX;
	case 0x12:
	case 0x22:
		*why = "UDP is not supported";
		return -1;
	case 0x32:
		*why = "UNIX datagram is not supported";
		return -1;
	default:
		*why = "unknown address family or transport";
		return -1;
	}
}

/* TLVs in [p, end): each a type byte, a 16-bit length and that many bytes. */
static bool v2_tlvs_ok(const uint8_t *p, const uint8_t *end)
{
	while (p < end) {
		if (end - p < 3)
			return false;
		size_t n = get16(p + 1);
		p += 3;
		if ((size_t)(end - p) < n)
			return false;
		p += n;
	}
	return true;
}

static enum pp_status parse_v2(const uint8_t *d, size_t len, struct pp_result *out, char *err,
                               size_t errlen)
{
	size_t n = MIN(len, sizeof(v2_sig)), blen;
	const char *why = NULL;
	int alen = 0;
	uint8_t cmd, fam;
	struct pp_result r;

	if (memcmp(d, v2_sig, n) != 0)
		return bad(err, errlen, "not a PROXY protocol header (bad v2 signature)");
	if (len < sizeof(v2_sig) + 1)
		return PP_MORE;
	if (d[12] >> 4 != 2)
		return bad(err, errlen, "PROXY v2 header: unsupported version %d", d[12] >> 4);
	cmd = d[12] & 0x0F;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return bad(err, errlen, "PROXY v2 header: unknown command %d", cmd);
	if (len < 14)
		return PP_MORE;
	fam = d[13];
	if (cmd == V2_CMD_PROXY) { /* LOCAL ignores the family */
		alen = v2_addr_len(fam, &why);
		if (alen < 0)
			return bad(err, errlen, "PROXY v2 header: %s (0x%02x)", why, fam);
	}
	if (len < V2_HEADER_LEN)
		return PP_MORE;
	blen = get16(d + 14);
	if (blen > PP_V2_MAX_LEN)
		return bad(err, errlen, "PROXY v2 header: length %zu over the limit of %d", blen,
		           PP_V2_MAX_LEN);
	if (blen < (size_t)alen)
		return bad(err, errlen,
		           "PROXY v2 header: length %zu too short for the address family (0x%02x)",
		           blen, fam);
	if (len < V2_HEADER_LEN + blen)
		return PP_MORE;

	memset(&r, 0, sizeof(r));
	r.family = AF_UNSPEC;
	r.version = 2;
	r.consumed = V2_HEADER_LEN + blen;
	if (cmd == V2_CMD_PROXY && fam != 0x00) {
		const uint8_t *a = d + V2_HEADER_LEN;
		if (!v2_tlvs_ok(a + alen, a + blen))
			return bad(err, errlen, "PROXY v2 header: malformed TLV");
		if (fam == 0x11) {
			struct sockaddr_in *s = (struct sockaddr_in *)&r.src;
			struct sockaddr_in *t = (struct sockaddr_in *)&r.dst;
			s->sin_family = t->sin_family = AF_INET;
			memcpy(&s->sin_addr, a, 4);
			memcpy(&t->sin_addr, a + 4, 4);
			memcpy(&s->sin_port, a + 8, 2);
			memcpy(&t->sin_port, a + 10, 2);
			r.family = AF_INET;
		} else if (fam == 0x21) {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&r.src;
			struct sockaddr_in6 *t = (struct sockaddr_in6 *)&r.dst;
			s->sin6_family = t->sin6_family = AF_INET6;
			memcpy(&s->sin6_addr, a, 16);
			memcpy(&t->sin6_addr, a + 16, 16);
			memcpy(&s->sin6_port, a + 32, 2);
			memcpy(&t->sin6_port, a + 34, 2);
			r.family = AF_INET6;
		}
		/* 0x31 (UNIX stream): keep the connection's own address. */
	}
	*out = r;
	return PP_DONE;
}

enum pp_status pp_parse(const uint8_t *data, size_t len, struct pp_result *out, char *err,
                        size_t errlen)
{
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (len == 0)
		return PP_MORE;
	if (data[0] == 'P')
		return parse_v1(data, len, out, err, errlen);
	if (data[0] == '\r')
		return parse_v2(data, len, out, err, errlen);
	return bad(err, errlen, "not a PROXY protocol header (first byte 0x%02x)", data[0]);
}
