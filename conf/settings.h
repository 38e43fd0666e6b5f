/* What conf/config.c (reading a file into a config) uses of conf/settings.c
 * (the tables of [pgmoat] settings and [databases]/[users] parameters, and
 * their value parsers).  Internal to conf/: the rest of pgmoat uses
 * conf/config.h.
 */
#ifndef PGMOAT_CONF_SETTINGS_H
#define PGMOAT_CONF_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"

/* Most worker threads; `workers = 0` resolves to at most this many. */
#define MAX_WORKERS 256

/* Every setting of `c` (zeroed memory) set to its default; aborts if a
 * default in the table does not parse. */
void settings_init(struct config *c);

/* Frees the values of `c`'s string, path and list settings. */
void settings_free(struct config *c);

/* Store `v` into setting `s` of `c`; `file` is where it was written (a
 * relative path is made absolute against its directory; NULL: left as is).
 * On failure writes what was expected into `msg`. */
bool settings_parse(struct config *c, const struct setting *s, const char *v, const char *file,
                    char *msg, size_t len) __attribute__((warn_unused_result));

/* The warning for `key`, which is no setting: a pgbouncer setting pgmoat
 * ignores, or unknown (with the likely intended name, if any). */
void settings_unknown(const char *key, char *msg, size_t len);

/* Which parameter table: [databases] (entry is a struct db_entry) or [users]
 * (a struct user_entry). */
enum settings_params { SETTINGS_DB_PARAMS, SETTINGS_USER_PARAMS };

/* Set parameter `key` of `entry` to `v`.  On failure (unknown, unsupported
 * or bad value) writes why into `msg`. */
bool settings_param_set(enum settings_params t, void *entry, const char *key, const char *v,
                        char *msg, size_t len) __attribute__((warn_unused_result));

/* Frees `entry`'s string parameters (not its name). */
void settings_param_clear(enum settings_params t, void *entry);

#endif
