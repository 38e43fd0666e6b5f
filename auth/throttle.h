/* Failed-login throttling per client source address, shared by every worker
 * thread (one mutex).
 *
 * Addresses are AF_INET and AF_INET6, keyed by the address bytes only (the
 * port is ignored); an IPv4-mapped IPv6 address is the IPv4 address.  Other
 * families (AF_UNIX) are never throttled.
 *
 * Counting is a fixed window opened by the first failure: the `limit`-th
 * failure within `window` seconds of that one starts a cool-down of
 * `cooldown` seconds; a failure after the window has run out opens a new
 * window with a count of 1.  When the cool-down ends the count starts from 0.
 * Failures reported during a cool-down are not counted and do not extend it.
 * limit <= 0 turns everything off: nothing is counted and no address is
 * refused, even one that was in a cool-down.
 *
 * Memory is bounded: the table holds at most `max_entries` addresses,
 * allocated up front.  When it is full, a new address evicts the least
 * recently failed entry, preferring one of the few oldest that is not in a
 * cool-down, so an attacker spraying addresses cannot grow memory and
 * cannot easily push out cool-downs.  The hash is seeded at random.
 */
#ifndef PGMOAT_AUTH_THROTTLE_H
#define PGMOAT_AUTH_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct throttle_cfg {
	int limit; /* failures that start a cool-down; 0 = off */
	double window; /* seconds the failures are counted in */
	double cooldown; /* seconds the address is refused after that */
};

struct throttle;

/* max_entries is clamped to 1 .. 2^24 (about 52 bytes each, allocated here). */
struct throttle *throttle_new(size_t max_entries) __attribute__((warn_unused_result));
void throttle_free(struct throttle *t);

/* Is `addr` in a cool-down?  Returns the microseconds left (0 = not
 * throttled). */
uint64_t throttle_blocked(struct throttle *t, const struct sockaddr *addr, uint64_t now_usec,
                          const struct throttle_cfg *cfg);
/* A failed login from `addr`.  Returns true when this failure starts a
 * cool-down (so the caller logs it once).  A cooldown of 0 starts none. */
bool throttle_failed(struct throttle *t, const struct sockaddr *addr, uint64_t now_usec,
                     const struct throttle_cfg *cfg);
/* A successful login from `addr`: forget its failures (not an active
 * cool-down). */
void throttle_succeeded(struct throttle *t, const struct sockaddr *addr, uint64_t now_usec);
/* Addresses in the table (for SHOW and tests). */
size_t throttle_count(struct throttle *t);

#endif
