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

/* Bounds of pool sizes and connection counts. */
#define MAX_POOL 100000
#define MAX_CONNS 1000000

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

/* Which parameter table: [databases] (entry is a struct db_entry), [users]
 * (a struct user_entry) or [peers] (a struct peer_entry). */
enum settings_params { SETTINGS_DB_PARAMS, SETTINGS_USER_PARAMS, SETTINGS_PEER_PARAMS };

/* Set parameter `key` of `entry` to `v`.  On failure (unknown, unsupported
 * or bad value) writes why into `msg`. */
bool settings_param_set(enum settings_params t, void *entry, const char *key, const char *v,
                        char *msg, size_t len) __attribute__((warn_unused_result));

/* Frees `entry`'s string parameters (not its name). */
void settings_param_clear(enum settings_params t, void *entry);

/* --- shared with conf/settings_doc.c (doc/config.md, pgmoat.ini(5)) --- */

/* PARAM_INT_LIST: integers min..max, comma-separated, kept as written. */
enum param_kind { PARAM_STR, PARAM_INT, PARAM_INT_LIST, PARAM_POOL_MODE, PARAM_TSA };

struct param {
	const char *name; /* first, like struct setting: see closest_name() */
	enum param_kind kind;
	size_t offset;
	long min, max;
	const char *def; /* for the documentation */
	const char *doc;
};

extern const char *const settings_pool_mode_names[];
/* pgbouncer settings pgmoat accepts and ignores, NULL-terminated. */
extern const char *const settings_unsupported[];
extern const char *const settings_tsa_names[];
/* A duration in ms and a size in bytes as written in the file ("1.5s", "8kB"). */
void settings_format_ms(char *buf, size_t len, long ms);
void settings_format_bytes(char *buf, size_t len, long b);
/* Index of `word` in `names` (case-insensitive), or -1. */
int settings_find_name(const char *const *names, const char *word);
/* The name in the table at `base` (n entries of `stride` bytes, a name
 * first) closest to the misspelt `word`, or NULL. */
const char *settings_closest_name(const char *word, const void *base, size_t n, size_t stride);
/* A whole decimal integer. */
bool settings_parse_long(const char *v, long *out);
/* "a, b or c" */
void settings_join_names(char *buf, size_t len, const char *const *names);
/* The parameter table `t` names. */
void settings_param_table(enum settings_params t, const struct param **params, size_t *n);

#endif
