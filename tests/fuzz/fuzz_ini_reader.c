/* libFuzzer target: the INI reader alone, ini_parse_string(), over the input
 * as text (the `ini` target also loads the bytes as a configuration, which
 * costs far more per input). */
#include <config.h>

#include "conf/ini.h"
#include "tests/fuzz/fuzz.h"

/* Counts what the reader reports and touches every string it passes. */
static void on_key(const char *file, int line, const char *section, const char *key,
                   const char *value, void *arg)
{
	size_t *n = arg;
	if (line <= 0)
		abort(); /* lines count from 1 */
	*n += strlen(file) + (section ? strlen(section) : 0);
	if (key)
		*n += strlen(key) + strlen(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strdup(data, size);
	if (!text)
		return 0;
	/* %include names a file: no device or kernel file. */
	if (!fuzz_names_device(text)) {
		struct strlist errors;
		strlist_init(&errors);
		size_t n = 0;
		bool parsed = ini_parse_string("fuzz.ini", text, on_key, &n, &errors);
		if (parsed && errors.n)
			abort(); /* "no syntax error" with errors listed */
		if (!parsed && !errors.n)
			abort(); /* a syntax error nobody is told about */
		strlist_free(&errors);
	}
	free(text);
	return 0;
}
