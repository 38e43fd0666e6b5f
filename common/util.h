/* Small shared helpers: time, strings, string lists, secrets. */
#ifndef PGMOAT_COMMON_UTIL_H
#define PGMOAT_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define WUR __attribute__((warn_unused_result))

/* Monotonic clock, microseconds. */
uint64_t now_usec(void);
/* Microseconds from `since` to `now`, 0 if `since` is later (a timestamp
 * taken after `now` was read: never let the difference wrap). */
static inline uint64_t usec_since(uint64_t now, uint64_t since)
{
	return now > since ? now - since : 0;
}
/* Wall clock, microseconds since the epoch. */
uint64_t wall_usec(void);

/* Allocation that aborts on failure (pgmoat does not run on after OOM in
 * start-up paths; connection paths check their own allocations). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Copy at most size-1 bytes and NUL-terminate; returns strlen(src). */
size_t strlcopy(char *dst, const char *src, size_t size);
bool str_ieq(const char *a, const char *b);

/* Zero memory the compiler may not optimise away (secrets). */
void secure_zero(void *p, size_t n);
/* Constant-time comparison. */
bool ct_equal(const void *a, const void *b, size_t n);
/* Cryptographically strong random bytes; false if the kernel refused. */
bool random_bytes(void *buf, size_t n) WUR;

/* A growable list of strings (settings that take a list, error lists). */
struct strlist {
	char **items;
	size_t n;
	size_t cap;
};

void strlist_init(struct strlist *l);
void strlist_add(struct strlist *l, const char *s);
void strlist_addf(struct strlist *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool strlist_contains(const struct strlist *l, const char *s);
/* Case-insensitive variant (parameter names). */
bool strlist_contains_ci(const struct strlist *l, const char *s);
void strlist_free(struct strlist *l);
void strlist_copy(struct strlist *dst, const struct strlist *src);
/* Parse "a, b ,c" into items (whitespace trimmed, empty items skipped). */
void strlist_parse_csv(struct strlist *l, const char *s);

#endif
