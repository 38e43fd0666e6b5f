/* IPv4 and IPv6 networks: "10.0.0.0/8", "127.0.0.1" (a /32), "::1" (a
 * /128), "fd00::/8", and the pg_hba "address mask" form.
 *
 * Host bits set beyond the prefix length are accepted and masked off, as
 * PostgreSQL does ("10.0.0.1/8" is 10.0.0.0/8).  An IPv4 network also
 * matches the IPv4-mapped IPv6 form of its addresses (::ffff:a.b.c.d), which
 * is how a dual-stack socket sees IPv4 clients.
 */
#ifndef PGMOAT_COMMON_CIDR_H
#define PGMOAT_COMMON_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

struct cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network byte order; bits past the prefix are zero */
	int bits; /* prefix length: 0..32 or 0..128 */
};

/* Parse "addr" or "addr/bits".  False with a message in `err` (which may be
 * NULL) for an empty string, a bad address or a bad prefix length. */
bool cidr_parse(const char *s, struct cidr *out, char *err, size_t errlen)
        __attribute__((warn_unused_result));
/* Parse the pg_hba "address mask" form, e.g. "10.1.0.0" "255.255.0.0".  Both
 * must be of one family and the mask contiguous. */
bool cidr_parse_mask(const char *addr, const char *mask, struct cidr *out, char *err, size_t errlen)
        __attribute__((warn_unused_result));
/* True if `sa` (AF_INET or AF_INET6; anything else, or NULL, never matches)
 * lies in `c`. */
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);
/* "10.0.0.0/8", "::1/128": always with the prefix length. */
void cidr_format(const struct cidr *c, char *out, size_t n);

struct cidr_list {
	struct cidr *v;
	size_t n;
};

/* Parse networks separated by commas and/or white space; an empty or NULL
 * string gives an empty list.  On failure `out` is an empty list. */
bool cidr_list_parse(const char *csv, struct cidr_list *out, char *err, size_t errlen)
        __attribute__((warn_unused_result));
/* True if any network of `l` matches `sa` (an empty list matches nothing). */
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);
void cidr_list_free(struct cidr_list *l);

#endif
