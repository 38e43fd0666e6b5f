/* The HAProxy PROXY protocol header, versions 1 (text) and 2 (binary), as an
 * L4 load balancer sends it before the first PostgreSQL byte (HAProxy's
 * doc/proxy-protocol.txt).
 *
 * pp_parse() is pure: it is given the bytes received so far and says whether
 * they hold a whole valid header (PP_DONE), could still become one (PP_MORE)
 * or cannot (PP_BAD).  It refuses as early as it can: a first byte that is
 * neither 'P' (v1) nor '\r' (v2) is PP_BAD at once, so a PostgreSQL startup
 * packet or SSLRequest where a header is required never waits.
 *
 * v1: "PROXY TCP4|TCP6 src dst sport dport\r\n", single spaces, addresses
 *     valid for the family (inet_pton; so no leading zeros in IPv4), ports
 *     0..65535 in decimal without sign or leading zeros ("0" itself is
 *     fine); "PROXY UNKNOWN" followed by anything up to the CRLF.  At most
 *     107 bytes including the CRLF; a lone CR or LF is refused.
 * v2: signature, version 2, command LOCAL or PROXY; for PROXY the family
 *     byte must be 0x00 (AF_UNSPEC), 0x11 (TCP/IPv4), 0x21 (TCP/IPv6) or
 *     0x31 (UNIX stream); datagram transports and anything else are refused.
 *     The address block must be long enough for the family (12, 36, 216);
 *     TLVs after it are checked to be well formed and skipped (a CRC32C TLV
 *     is not verified).  The length after the 16-byte header is capped at
 *     PP_V2_MAX_LEN.  LOCAL ignores the family and the whole block, as
 *     AF_UNSPEC ignores the whole block.
 */
#ifndef PGMOAT_PROXY_PROXYPROTO_H
#define PGMOAT_PROXY_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PP_V1_MAX 107 /* bytes, with the CRLF */
/* Sanity cap on the v2 length field (address block + TLVs).  What HAProxy,
 * AWS, GCP and Azure send with their TLVs (SSL, authority, unique id, link
 * ids) stays well under 1 KB; 4 KB leaves room for custom TLVs. */
#define PP_V2_MAX_LEN 4096
/* The longest header pp_parse() accepts: a caller needs this much room. */
#define PP_MAX_HEADER (16 + PP_V2_MAX_LEN)

#define PP_STATUS_LIST(X)                                                                          \
	X(PP_MORE)                                                                                 \
	X(PP_DONE)                                                                                 \
	X(PP_BAD)

enum pp_status {
#define PP_STATUS_ENUM(name) name,
	PP_STATUS_LIST(PP_STATUS_ENUM)
#undef PP_STATUS_ENUM
};

const char *pp_status_name(enum pp_status s);

struct pp_result {
	/* AF_INET or AF_INET6 with src and dst (ports in network order) set;
	 * AF_UNSPEC (v1 UNKNOWN, v2 LOCAL, v2 AF_UNSPEC or AF_UNIX) when the
	 * connection's own addresses are to be kept: src and dst are zero. */
	int family;
	struct sockaddr_storage src, dst;
	size_t consumed; /* header length: the PostgreSQL bytes start here */
	int version; /* 1 or 2 */
};

/* Parse the `len` bytes received so far.  `out` is filled on PP_DONE only;
 * on PP_BAD `err` (when not NULL) gets a reason such as "PROXY v1 header:
 * bad source address".  Bytes after the header are left alone. */
enum pp_status pp_parse(const uint8_t *data, size_t len, struct pp_result *out, char *err,
                        size_t errlen) __attribute__((warn_unused_result));

#endif
