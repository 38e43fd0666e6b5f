/* INI reader.
 *
 *   ; comment          # comment       (whole lines only)
 *   [section]
 *   key = value        whitespace around key, = and value is trimmed;
 *   "key" = "value"    a key or a value may be double-quoted ("\"" and "\\"
 *                      inside stand for " and \)
 *   %include path      relative to the including file; nests up to 8 deep
 *
 * An included file is read as if pasted in place: it starts in the section
 * of the including file and the section it ends in carries on after it.
 *
 * Calls `fn` once per section header (with key and value NULL) and once per
 * key with its file, line and section; keys and section
 * names are passed as written (callers choose how to compare them).  Syntax
 * errors are reported as "file:line: message" through `errors`; reading goes
 * on after an error so that every problem in a file is listed at once.  Keys
 * under a broken section header are skipped.
 */
#ifndef PGMOAT_CONF_INI_H
#define PGMOAT_CONF_INI_H

#include <stdbool.h>

#include "common/util.h"

/* Called for every key.  The callback reports its own errors (it knows
 * `file` and `line`). */
typedef void (*ini_fn)(const char *file, int line, const char *section, const char *key,
                       const char *value, void *arg);

/* Returns false if the file could not be read or had syntax errors. */
bool ini_parse_file(const char *path, ini_fn fn, void *arg, struct strlist *errors)
        __attribute__((warn_unused_result));
/* Same over a string (unit tests); `name` stands for the file name. */
bool ini_parse_string(const char *name, const char *text, ini_fn fn, void *arg,
                      struct strlist *errors) __attribute__((warn_unused_result));

#endif
