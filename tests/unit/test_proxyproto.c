/* The PROXY protocol header: v1 and v2, fed whole and byte by byte, with
 * trailing bytes, TLVs, every refusal, and PostgreSQL bytes where a header
 * is required. */
#include <config.h>

#include "proxy/proxyproto.h"
#include "tests/lib/tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* "addr:port" of a sockaddr in `buf`. */
static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		snprintf(buf, size, "%s:%u", a, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		snprintf(buf, size, "[%s]:%u", a, ntohs(s->sin6_port));
	} else {
		snprintf(buf, size, "family %d", ss->ss_family);
	}
	return buf;
}

/* Feed every prefix of `d`: PP_MORE for each, then PP_DONE for all of it. */
static bool bytewise(const uint8_t *d, size_t len, struct pp_result *r)
{
	char err[128];

	for (size_t k = 0; k < len; k++) {
		enum pp_status st = pp_parse(d, k, r, err, sizeof(err));
		if (st != PP_MORE) {
			diag("prefix of %zu bytes: %s (%s)", k, pp_status_name(st), err);
			return false;
		}
	}
	return pp_parse(d, len, r, err, sizeof(err)) == PP_DONE;
}

/* The status for `s` as a whole, and its error in `err`. */
static enum pp_status parse_str(const char *s, struct pp_result *r, char *err, size_t errlen)
{
	return pp_parse((const uint8_t *)s, strlen(s), r, err, errlen);
}

static void test_v1(void)
{
	const char *tcp4 = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 5432\r\n";
	const char *tcp6 = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
	const char *unknown = "PROXY UNKNOWN\r\n";
	const char *unknown_long = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	char buf[256], a[80];
	struct pp_result r;

	ok(bytewise((const uint8_t *)tcp4, strlen(tcp4), &r), "v1 TCP4 byte by byte");
	is_int(r.version, 1, "v1 TCP4: version");
	is_int(r.family, AF_INET, "v1 TCP4: family");
	is_int((long)r.consumed, (long)strlen(tcp4), "v1 TCP4: consumed");
	is_str(addr_str(&r.src, a, sizeof(a)), "192.168.0.1:56324", "v1 TCP4: source");
	is_str(addr_str(&r.dst, a, sizeof(a)), "192.168.0.11:5432", "v1 TCP4: destination");

	ok(bytewise((const uint8_t *)tcp6, strlen(tcp6), &r), "v1 TCP6 byte by byte");
	is_int(r.family, AF_INET6, "v1 TCP6: family");
	is_int((long)r.consumed, (long)strlen(tcp6), "v1 TCP6: consumed");
	is_str(addr_str(&r.src, a, sizeof(a)), "[2001:db8::1]:65535", "v1 TCP6: source");
	is_str(addr_str(&r.dst, a, sizeof(a)), "[::1]:0", "v1 TCP6: destination, port 0");

	ok(bytewise((const uint8_t *)unknown, strlen(unknown), &r), "v1 UNKNOWN byte by byte");
	is_int(r.family, AF_UNSPEC, "v1 UNKNOWN: keep own address");
	is_int((long)r.consumed, 15, "v1 UNKNOWN: consumed");
	is_int((long)strlen(unknown_long), PP_V1_MAX, "v1 worst case is 107 bytes");
	ok(bytewise((const uint8_t *)unknown_long, strlen(unknown_long), &r),
	   "v1 UNKNOWN with addresses, 107 bytes, byte by byte");
	is_int(r.family, AF_UNSPEC, "v1 UNKNOWN with addresses: keep own address");
	is_int((long)r.consumed, PP_V1_MAX, "v1 UNKNOWN with addresses: consumed");

	/* The PostgreSQL bytes after the header are not part of it. */
	snprintf(buf, sizeof(buf), "%s%s", tcp4, "\x00\x00\x00\x08\x04\xd2\x16\x2f");
	is_int(pp_parse((const uint8_t *)buf, strlen(tcp4) + 8, &r, NULL, 0), PP_DONE,
	       "v1 with trailing bytes: done");
	is_int((long)r.consumed, (long)strlen(tcp4),
	       "v1 with trailing bytes: consumed excludes them");
	snprintf(buf, sizeof(buf), "%sPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", unknown);
	is_int(parse_str(buf, &r, NULL, 0), PP_DONE, "v1 followed by a second header: done");
	is_int((long)r.consumed, 15, "v1 followed by a second header: only the first consumed");

	/* IPv4-mapped in TCP6 stays IPv6 (the throttle folds it). */
	is_int(parse_str("PROXY TCP6 ::ffff:10.0.0.1 ::ffff:10.0.0.2 1 2\r\n", &r, NULL, 0),
	       PP_DONE, "v1 TCP6 with IPv4-mapped addresses");
	is_str(addr_str(&r.src, a, sizeof(a)), "[::ffff:10.0.0.1]:1", "v1 TCP6 mapped: source");
	is_int(parse_str("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", &r, NULL, 0), PP_DONE,
	       "v1 TCP4 extreme values");
}

static void test_v1_bad(void)
{
	static const struct {
		const char *line;
		const char *err;
	} cases[] = {
	        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY v1 header: LF without CR"},
	        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "PROXY v1 header: CR without LF"},
	        {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
	         "PROXY v1 header: empty source address (single spaces only)"},
	        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "PROXY v1 header: too many fields"},
	        {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXY v1 header: missing destination port"},
	        {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "PROXY v1 header: bad source address"},
	        {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1 header: bad source address"},
	        {"PROXY TCP4 1.2.3.4 256.6.7.8 1 2\r\n",
	         "PROXY v1 header: bad destination address"},
	        {"PROXY TCP4 ::1 ::1 1 2\r\n", "PROXY v1 header: unexpected byte 0x3a"},
	        {"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "PROXY v1 header: bad source address"},
	        {"PROXY TCP6 ::1 1::2::3 1 2\r\n", "PROXY v1 header: bad destination address"},
	        {"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "PROXY v1 header: unexpected byte 0x25"},
	        {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "PROXY v1 header: bad source port"},
	        {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "PROXY v1 header: bad source port"},
	        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n", "PROXY v1 header: unexpected byte 0x2b"},
	        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "PROXY v1 header: unexpected byte 0x2d"},
	        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 000000\r\n",
	         "PROXY v1 header: bad destination port"},
	        {"PROXY TCP6 ::1 ::1 1 abc\r\n", "PROXY v1 header: bad destination port"},
	        {"PROXY TCP4\r\n", "PROXY v1 header: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
	        {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
	         "PROXY v1 header: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
	        {"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
	         "PROXY v1 header: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
	        {"PROXY UNKNOWNX\r\n",
	         "PROXY v1 header: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
	        {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
	         "PROXY v1 header: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
	        {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
	         "PROXY v1 header: unknown protocol (not TCP4, TCP6 or UNKNOWN)"},
	        {"PROXY\tTCP4", "not a PROXY protocol header"},
	        {"PROXX", "not a PROXY protocol header"},
	        {"GET / HTTP/1.1\r\n", "not a PROXY protocol header (first byte 0x47)"},
	};
	char err[128];
	struct pp_result r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum pp_status st = parse_str(cases[i].line, &r, err, sizeof(err));
		if (st != PP_BAD)
			diag("case %zu gave %s", i, pp_status_name(st));
		is_str(st == PP_BAD ? err : pp_status_name(st), cases[i].err, "v1 refused: %zu", i);
	}

	/* Bad bytes are refused as they arrive, not at the CRLF. */
	is_int(parse_str("PROXY TCP4 1.2.3.4 x", &r, NULL, 0), PP_BAD,
	       "v1 bad byte refused before the CRLF");
	is_int(parse_str("PROXY Q", &r, NULL, 0), PP_BAD, "v1 bad protocol refused at once");
	is_int(parse_str("PROXY TCP", &r, NULL, 0), PP_MORE, "v1 \"TCP\" may become TCP4 or TCP6");
	is_int(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", &r, NULL, 0), PP_MORE,
	       "v1 CR at the end: wait for the LF");

	/* Overlong: 107 bytes with no CRLF, and a CRLF one byte too far. */
	char line[200];
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	is_int(pp_parse((const uint8_t *)line, PP_V1_MAX - 1, &r, NULL, 0), PP_MORE,
	       "v1 106 bytes without CRLF: more");
	is_int(pp_parse((const uint8_t *)line, PP_V1_MAX, &r, err, sizeof(err)), PP_BAD,
	       "v1 107 bytes without CRLF: bad");
	is_str(err, "PROXY v1 header: no CRLF in the first 107 bytes", "v1 overlong: error");
	line[PP_V1_MAX - 1] = '\r';
	line[PP_V1_MAX] = '\n';
	is_int(pp_parse((const uint8_t *)line, PP_V1_MAX + 1, &r, NULL, 0), PP_BAD,
	       "v1 CRLF ending at byte 108: bad");
	line[PP_V1_MAX - 2] = '\r';
	line[PP_V1_MAX - 1] = '\n';
	is_int(pp_parse((const uint8_t *)line, sizeof(line), &r, NULL, 0), PP_DONE,
	       "v1 CRLF ending at byte 107: done");
	is_int((long)r.consumed, PP_V1_MAX, "v1 107-byte line consumed");
}

/* A v2 header in `out`: signature, ver_cmd, fam, then `blen` bytes of body. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t blen)
{
	static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
	                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(blen >> 8);
	out[15] = (uint8_t)blen;
	if (blen > 0)
		memcpy(out + 16, body, blen);
	return 16 + blen;
}

/* Append a TLV of `len` bytes of `fill` at body[*off]. */
static void tlv(uint8_t *body, size_t *off, uint8_t type, size_t len, uint8_t fill)
{
	body[(*off)++] = type;
	body[(*off)++] = (uint8_t)(len >> 8);
	body[(*off)++] = (uint8_t)len;
	memset(body + *off, fill, len);
	*off += len;
}

static void test_v2(void)
{
	uint8_t hdr[PP_MAX_HEADER + 64], body[PP_V2_MAX_LEN + 64];
	char a[80];
	struct pp_result r;
	size_t n, off;

	/* TCP over IPv4 with an authority and a unique-id TLV. */
	off = 0;
	memcpy(body, "\xc0\x00\x02\x01\x0a\x00\x00\x02\xd2\x04\x15\x38", 12);
	off = 12;
	tlv(body, &off, 0x02, 11, 'h');
	tlv(body, &off, 0x05, 128, 0x42);
	tlv(body, &off, 0x04, 0, 0);
	n = v2(hdr, 0x21, 0x11, body, off);
	ok(bytewise(hdr, n, &r), "v2 TCP4 with TLVs byte by byte");
	is_int(r.version, 2, "v2 TCP4: version");
	is_int(r.family, AF_INET, "v2 TCP4: family");
	is_int((long)r.consumed, (long)n, "v2 TCP4: consumed includes the TLVs");
	is_str(addr_str(&r.src, a, sizeof(a)), "192.0.2.1:53764", "v2 TCP4: source");
	is_str(addr_str(&r.dst, a, sizeof(a)), "10.0.0.2:5432", "v2 TCP4: destination");
	memcpy(hdr + n, "\x00\x00\x00\x08\x04\xd2\x16\x2f", 8);
	is_int(pp_parse(hdr, n + 8, &r, NULL, 0), PP_DONE, "v2 with trailing bytes: done");
	is_int((long)r.consumed, (long)n, "v2 with trailing bytes: consumed excludes them");

	/* TCP over IPv6, with an SSL TLV holding sub-TLVs. */
	memset(body, 0, 36);
	body[0] = 0x20;
	body[1] = 0x01;
	body[2] = 0x0d;
	body[3] = 0xb8;
	body[15] = 0x07;
	body[31] = 0x01;
	body[32] = 0x00;
	body[33] = 0x50;
	body[34] = 0x15;
	body[35] = 0x38;
	off = 36;
	tlv(body, &off, 0x20, 5 + 3 + 7, 0x00);
	n = v2(hdr, 0x21, 0x21, body, off);
	ok(bytewise(hdr, n, &r), "v2 TCP6 with TLVs byte by byte");
	is_int(r.family, AF_INET6, "v2 TCP6: family");
	is_int((long)r.consumed, (long)n, "v2 TCP6: consumed");
	is_str(addr_str(&r.src, a, sizeof(a)), "[2001:db8::7]:80", "v2 TCP6: source");
	is_str(addr_str(&r.dst, a, sizeof(a)), "[::1]:5432", "v2 TCP6: destination");

	/* LOCAL: no addresses, or addresses that are ignored, any family. */
	n = v2(hdr, 0x20, 0x00, NULL, 0);
	ok(bytewise(hdr, n, &r), "v2 LOCAL, empty, byte by byte");
	is_int(r.family, AF_UNSPEC, "v2 LOCAL: keep own address");
	is_int((long)r.consumed, 16, "v2 LOCAL: consumed");
	memcpy(body, "\xc0\x00\x02\x01\x0a\x00\x00\x02\xd2\x04\x15\x38", 12);
	n = v2(hdr, 0x20, 0x11, body, 12);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_DONE, "v2 LOCAL with TCP4 addresses");
	is_int(r.family, AF_UNSPEC, "v2 LOCAL with addresses: ignored");
	n = v2(hdr, 0x20, 0x12, body, 3);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_DONE, "v2 LOCAL ignores the family byte");

	/* PROXY with AF_UNSPEC: keep own, skip whatever follows. */
	memset(body, 0xAB, 40);
	n = v2(hdr, 0x21, 0x00, body, 40);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_DONE, "v2 AF_UNSPEC");
	is_int(r.family, AF_UNSPEC, "v2 AF_UNSPEC: keep own address");
	is_int((long)r.consumed, 56, "v2 AF_UNSPEC: consumed");

	/* PROXY with AF_UNIX stream and a TLV. */
	memset(body, 0, 216);
	memcpy(body, "/tmp/.s.PGSQL.5432", 18);
	off = 216;
	tlv(body, &off, 0x30, 4, 'n');
	n = v2(hdr, 0x21, 0x31, body, off);
	ok(bytewise(hdr, n, &r), "v2 AF_UNIX byte by byte");
	is_int(r.family, AF_UNSPEC, "v2 AF_UNIX: keep own address");
	is_int((long)r.consumed, 16 + 216 + 7, "v2 AF_UNIX: consumed");

	/* The length cap: at the limit is fine, over it is refused at once. */
	memset(body, 0, 12);
	off = 12;
	tlv(body, &off, 0x04, PP_V2_MAX_LEN - 12 - 3, 0);
	n = v2(hdr, 0x21, 0x11, body, off);
	is_int((long)n, PP_MAX_HEADER, "v2 header of the maximum size");
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_DONE, "v2 at the length limit: done");
	hdr[14] = (PP_V2_MAX_LEN + 1) >> 8;
	hdr[15] = (PP_V2_MAX_LEN + 1) & 0xFF;
	is_int(pp_parse(hdr, 16, &r, NULL, 0), PP_BAD, "v2 over the length limit: bad at once");
}

static void test_v2_bad(void)
{
	uint8_t hdr[512], body[256];
	char err[128];
	struct pp_result r;
	size_t n, off;

	memcpy(body, "\xc0\x00\x02\x01\x0a\x00\x00\x02\xd2\x04\x15\x38", 12);

	n = v2(hdr, 0x21, 0x11, body, 12);
	is_int(pp_parse(hdr, n - 1, &r, NULL, 0), PP_MORE, "v2 truncated addresses: more");
	is_int(pp_parse(hdr, 15, &r, NULL, 0), PP_MORE, "v2 truncated header: more");

	n = v2(hdr, 0x21, 0x11, body, 12);
	hdr[6] = 'X';
	is_int(pp_parse(hdr, 7, &r, err, sizeof(err)), PP_BAD, "v2 bad signature: bad at once");
	is_str(err, "not a PROXY protocol header (bad v2 signature)", "v2 bad signature: error");

	n = v2(hdr, 0x11, 0x11, body, 12);
	is_int(pp_parse(hdr, 13, &r, err, sizeof(err)), PP_BAD, "v2 version 1 byte: bad at once");
	is_str(err, "PROXY v2 header: unsupported version 1", "v2 bad version: error");
	n = v2(hdr, 0x31, 0x11, body, 12);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_BAD, "v2 version 3: bad");

	n = v2(hdr, 0x22, 0x11, body, 12);
	is_int(pp_parse(hdr, 13, &r, err, sizeof(err)), PP_BAD, "v2 command 2: bad at once");
	is_str(err, "PROXY v2 header: unknown command 2", "v2 bad command: error");
	n = v2(hdr, 0x2F, 0x11, body, 12);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_BAD, "v2 command 15: bad");

	n = v2(hdr, 0x21, 0x12, body, 12);
	is_int(pp_parse(hdr, 14, &r, err, sizeof(err)), PP_BAD, "v2 UDP over IPv4: bad at once");
	is_str(err, "PROXY v2 header: UDP is not supported (0x12)", "v2 UDP: error");
	n = v2(hdr, 0x21, 0x22, body, 12);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_BAD, "v2 UDP over IPv6: bad");
	n = v2(hdr, 0x21, 0x32, body, 12);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_BAD, "v2 UNIX datagram: bad");
	n = v2(hdr, 0x21, 0x41, body, 12);
	is_int(pp_parse(hdr, n, &r, err, sizeof(err)), PP_BAD, "v2 family 4: bad");
	is_str(err, "PROXY v2 header: unknown address family or transport (0x41)",
	       "v2 bad family: error");
	n = v2(hdr, 0x21, 0x10, body, 12);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_BAD, "v2 AF_INET with unspecified transport: bad");

	n = v2(hdr, 0x21, 0x11, body, 11);
	is_int(pp_parse(hdr, 16, &r, err, sizeof(err)), PP_BAD, "v2 TCP4 length 11: bad at once");
	is_str(err, "PROXY v2 header: length 11 too short for the address family (0x11)",
	       "v2 short length: error");
	n = v2(hdr, 0x21, 0x21, body, 12);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_BAD, "v2 TCP6 length 12: bad");
	n = v2(hdr, 0x21, 0x31, body, 36);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_BAD, "v2 UNIX length 36: bad");

	/* TLVs that do not fit the length. */
	off = 12;
	tlv(body, &off, 0x02, 10, 'h');
	n = v2(hdr, 0x21, 0x11, body, off - 1);
	is_int(pp_parse(hdr, n, &r, err, sizeof(err)), PP_BAD, "v2 TLV past the end: bad");
	is_str(err, "PROXY v2 header: malformed TLV", "v2 bad TLV: error");
	n = v2(hdr, 0x21, 0x11, body, 14);
	is_int(pp_parse(hdr, n, &r, NULL, 0), PP_BAD, "v2 partial TLV header: bad");
}

static void test_not_a_header(void)
{
	/* SSLRequest and a startup packet: length first, so a 0x00 byte. */
	static const uint8_t ssl_request[] = {0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f};
	static const uint8_t startup[] = {0x00, 0x00, 0x00, 0x21, 0x00, 0x03, 0x00, 0x00,
	                                  'u',  's',  'e',  'r',  0x00, 'b',  'o',  'b',
	                                  0x00, 'd',  'a',  't',  'a',  'b',  'a',  's',
	                                  'e',  0x00, 'b',  'o',  'b',  0x00, 0x00};
	static const uint8_t tls_hello[] = {0x16, 0x03, 0x01, 0x00, 0xc8};
	char err[128];
	struct pp_result r;

	is_int(pp_parse(ssl_request, 1, &r, err, sizeof(err)), PP_BAD,
	       "SSLRequest: bad on its first byte");
	is_str(err, "not a PROXY protocol header (first byte 0x00)", "SSLRequest: error");
	is_int(pp_parse(ssl_request, sizeof(ssl_request), &r, NULL, 0), PP_BAD, "SSLRequest: bad");
	is_int(pp_parse(startup, 1, &r, NULL, 0), PP_BAD, "startup packet: bad on its first byte");
	is_int(pp_parse(startup, sizeof(startup), &r, NULL, 0), PP_BAD, "startup packet: bad");
	is_int(pp_parse(tls_hello, sizeof(tls_hello), &r, NULL, 0), PP_BAD, "TLS ClientHello: bad");
	is_int(pp_parse((const uint8_t *)"\r\n\r\nGET", 7, &r, NULL, 0), PP_BAD,
	       "CRLF then text: bad");
	is_int(pp_parse((const uint8_t *)"", 0, &r, NULL, 0), PP_MORE, "nothing yet: more");
	is_int(pp_parse((const uint8_t *)"P", 1, &r, NULL, 0), PP_MORE, "\"P\": more");
	is_int(pp_parse((const uint8_t *)"\r", 1, &r, NULL, 0), PP_MORE, "\"\\r\": more");

	/* Garbage: every first byte but 'P' and '\r' is refused at once. */
	bool all = true;
	for (int c = 0; c < 256; c++) {
		uint8_t b = (uint8_t)c;
		enum pp_status want = c == 'P' || c == '\r' ? PP_MORE : PP_BAD;
		if (pp_parse(&b, 1, &r, NULL, 0) != want) {
			diag("first byte 0x%02x", c);
			all = false;
		}
	}
	ok(all, "garbage: any other first byte is bad");

	/* A NULL error buffer or a tiny one is fine. */
	is_int(pp_parse(ssl_request, 1, &r, err, 4), PP_BAD, "tiny error buffer");
	is_str(err, "not", "tiny error buffer: truncated reason");
	is_str(pp_status_name(PP_DONE), "PP_DONE", "status name");
}

int main(void)
{
	test_v1();
	test_v1_bad();
	test_v2();
	test_v2_bad();
	test_not_a_header();
	return tap_done();
}
