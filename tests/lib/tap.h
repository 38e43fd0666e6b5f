/* A small TAP producer for the unit and integration tests. */
#ifndef PGMOAT_TESTS_TAP_H
#define PGMOAT_TESTS_TAP_H

#include <stdbool.h>
#include <stddef.h>

void tap_plan(int n);
void tap_skip_all(const char *why);
bool tap_ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool tap_is_int(long got, long want, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool tap_is_str(const char *got, const char *want, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
bool tap_is_mem(const void *got, const void *want, size_t len, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Abort the whole test with "Bail out!". */
void tap_bail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Print the plan if none was given and return the exit status. */
int tap_done(void);

#define ok(...) tap_ok(__VA_ARGS__)
#define is_int(...) tap_is_int(__VA_ARGS__)
#define is_str(...) tap_is_str(__VA_ARGS__)
#define diag(...) tap_diag(__VA_ARGS__)

#endif
