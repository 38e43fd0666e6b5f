/* Shared by the libFuzzer targets in tests/fuzz/ (each defines
 * LLVMFuzzerTestOneInput) and by replay.c, which calls a target on every
 * file of its corpus without libFuzzer (make check). */
#ifndef PGMOAT_TESTS_FUZZ_FUZZ_H
#define PGMOAT_TESTS_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated copy of the input (free it). */
static inline char *fuzz_strdup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return NULL;
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Text naming a device or kernel file (/dev/zero, /proc/self/fd/0, ...):
 * targets whose parsers read files named in the input (%include, @file)
 * skip such inputs, so the fuzzer cannot make them block or read 16 MB. */
static inline bool fuzz_names_device(const char *s)
{
	return strstr(s, "dev/") || strstr(s, "proc/") || strstr(s, "sys/") || strstr(s, "fd/");
}

#endif
