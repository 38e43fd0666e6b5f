/* Replays a fuzz target's corpus without libFuzzer, as a TAP test: linked
 * with one tests/fuzz/fuzz_<name>.c into tests/fuzz/replay_<name>, it calls
 * LLVMFuzzerTestOneInput() once per file (sorted by name) and prints one
 * "ok" per file.  A crash fails the test (the TAP driver sees the plan
 * unmet); under AddressSanitizer a leak found after the last file is a
 * "not ok".
 *
 *   replay_<name> [DIR...]
 *
 * Without arguments DIR is $PGMOAT_SRCDIR/tests/fuzz/corpus/<name> (make
 * check), the source tree found from __FILE__ otherwise. */
#include <config.h>

#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REPLAY_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define REPLAY_ASAN 1
#endif
#ifdef REPLAY_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#define REPLAY_MAX_FILE (16u * 1024 * 1024)

static const char *srcdir(void)
{
	static char dir[4096];
	const char *env = getenv("PGMOAT_SRCDIR");
	if (env && *env)
		return env;
	const char *suffix = "tests/fuzz/replay.c";
	const char *file = __FILE__;
	size_t n = strlen(file), s = strlen(suffix);
	if (n > s && strcmp(file + n - s, suffix) == 0)
		snprintf(dir, sizeof(dir), "%.*s", (int)(n - s - 1), file);
	else
		snprintf(dir, sizeof(dir), ".");
	return dir;
}

/* The whole file into *out (malloc'd, at least 1 byte); false on error. */
static bool read_all(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	size_t cap = 4096, n = 0;
	uint8_t *buf = malloc(cap);
	bool ok = buf != NULL;
	while (ok) {
		if (n == cap) {
			uint8_t *nb = cap < REPLAY_MAX_FILE ? realloc(buf, cap * 2) : NULL;
			if (!nb) {
				ok = false;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			ok = !ferror(f);
			break;
		}
	}
	fclose(f);
	if (!ok) {
		free(buf);
		return false;
	}
	*out = buf;
	*len = n;
	return true;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_dots(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Runs every regular file of `dir`; returns how many failed. */
static int replay_dir(const char *dir, int *count)
{
	struct dirent **names;
	int failed = 0;
	int n = scandir(dir, &names, skip_dots, by_name);
	if (n < 0) {
		printf("not ok %d - cannot read the corpus %s: %s\n", ++*count, dir,
		       strerror(errno));
		return 1;
	}
	if (n == 0) {
		printf("not ok %d - the corpus %s is empty\n", ++*count, dir);
		failed++;
	}
	for (int i = 0; i < n; i++) {
		char path[8192];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			uint8_t *data;
			size_t len;
			if (!read_all(path, &data, &len)) {
				printf("not ok %d - %s: cannot read\n", ++*count, path);
				failed++;
			} else {
				fflush(stdout);
				LLVMFuzzerTestOneInput(data, len);
				free(data);
				printf("ok %d - %s (%zu bytes)\n", ++*count, names[i]->d_name, len);
			}
		}
		free(names[i]);
	}
	free(names);
	return failed;
}

int main(int argc, char **argv)
{
	int count = 0, failed = 0;
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			failed += replay_dir(argv[i], &count);
	} else {
		const char *base = strrchr(argv[0], '/');
		base = base ? base + 1 : argv[0];
		if (strncmp(base, "replay_", 7) == 0)
			base += 7;
		char dir[8192];
		snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", srcdir(), base);
		failed += replay_dir(dir, &count);
	}
#ifdef REPLAY_ASAN
	if (__lsan_do_recoverable_leak_check() != 0) {
		printf("not ok %d - leak after the corpus (see the report above)\n", ++count);
		failed++;
	} else {
		printf("ok %d - no leak\n", ++count);
	}
#endif
	printf("1..%d\n# %d test points, %d failed\n", count, count, failed);
	return failed ? 1 : 0;
}
