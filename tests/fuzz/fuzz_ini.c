/* libFuzzer target: the INI reader over the input (ini_parse_string), then
 * config_load() on the same bytes written to a temporary file (created once
 * per process under $TMPDIR, else /dev/shm, else /tmp; removed at exit).
 * scripts/fuzz runs it with smaller inputs than the other targets (a whole
 * configuration is built and checked per input); the reader alone, with
 * larger inputs, is the ini_reader target. */
#include <config.h>

#include "conf/config.h"
#include "conf/ini.h"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <unistd.h>

static char tmp_path[4096];

static void remove_tmp(void)
{
	if (tmp_path[0])
		unlink(tmp_path);
}

/* The temporary file, holding `size` bytes of `data`; false if it cannot be
 * written (the config_load() part is then skipped). */
static bool write_tmp(const uint8_t *data, size_t size)
{
	static int fd = -1;
	if (fd < 0) {
		const char *dir = getenv("TMPDIR");
		if (!dir || !*dir)
			dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(tmp_path, sizeof(tmp_path), "%.3000s/pgmoat-fuzz-ini.XXXXXX", dir);
		fd = mkstemp(tmp_path);
		if (fd < 0) {
			tmp_path[0] = '\0';
			return false;
		}
		atexit(remove_tmp);
	}
	if (ftruncate(fd, 0) != 0)
		return false;
	size_t off = 0;
	while (off < size) {
		ssize_t w = pwrite(fd, data + off, size - off, (off_t)off);
		if (w <= 0)
			return false;
		off += (size_t)w;
	}
	return true;
}

/* Counts what the reader reports and touches every string it passes. */
static void on_key(const char *file, int line, const char *section, const char *key,
                   const char *value, void *arg)
{
	size_t *n = arg;
	*n += strlen(file) + (size_t)(line > 0) + (section ? strlen(section) : 0);
	if (key)
		*n += strlen(key) + strlen(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strdup(data, size);
	if (!text)
		return 0;
	if (fuzz_names_device(text))
		goto done;

	struct strlist errors, warnings;
	strlist_init(&errors);
	size_t n = 0;
	bool parsed = ini_parse_string("fuzz.ini", text, on_key, &n, &errors);
	if (parsed && errors.n)
		abort(); /* "no syntax error" with errors listed */
	strlist_free(&errors);

	if (write_tmp(data, size)) {
		strlist_init(&errors);
		strlist_init(&warnings);
		struct config *c = config_load(tmp_path, &errors, &warnings);
		if (c)
			config_unref(c);
		strlist_free(&errors);
		strlist_free(&warnings);
	}
done:
	free(text);
	return 0;
}
