/* The auth file, in pgbouncer's userlist.txt format:
 *
 *   "username" "password-or-hash"     ; comment
 *
 * A double quote inside a quoted field is written twice.  The secret is a
 * plain password, an md5 hash ("md5" + 32 hex) or a SCRAM verifier
 * ("SCRAM-SHA-256$...", which must parse).  Lines whose first non-blank
 * character is ';' are comments; text after the secret is ignored.  When a
 * user appears twice, the later line wins (as in pgbouncer).
 */
#ifndef PGMOAT_AUTH_USERLIST_H
#define PGMOAT_AUTH_USERLIST_H

#include <stdbool.h>

#include "common/util.h"

#define USERLIST_MAX_USER 128 /* bytes, after unescaping */
#define USERLIST_MAX_SECRET 2048 /* bytes, after unescaping */

#define SECRET_KIND_LIST(X)                                                                        \
	X(SECRET_PLAIN)                                                                            \
	X(SECRET_MD5)                                                                              \
	X(SECRET_SCRAM)

enum secret_kind {
#define SECRET_KIND_ENUM(name) name,
	SECRET_KIND_LIST(SECRET_KIND_ENUM)
#undef SECRET_KIND_ENUM
};

/* SECRET_MD5 for "md5" + 32 lowercase hex, SECRET_SCRAM for anything
 * starting "SCRAM-SHA-256$" (whether or not it parses), else SECRET_PLAIN. */
enum secret_kind secret_kind_of(const char *secret);
const char *secret_kind_name(enum secret_kind k);

struct userlist;

/* NULL and "file:line: message" errors on failure (every bad line is
 * reported; `errors` may be NULL).  A NULL or empty path gives an empty
 * list; a file that cannot be opened is an error "path: cannot open: ...". */
struct userlist *userlist_load(const char *path, struct strlist *errors)
        __attribute__((warn_unused_result));
struct userlist *userlist_parse_string(const char *name, const char *text, struct strlist *errors)
        __attribute__((warn_unused_result));
/* `len` bytes of `text`, as read from a file: a line holding a NUL byte is
 * an error. */
struct userlist *userlist_parse_text(const char *name, const char *text, size_t len,
                                     struct strlist *errors) __attribute__((warn_unused_result));
/* The stored secret for `user`, or NULL. */
const char *userlist_lookup(const struct userlist *l, const char *user);
size_t userlist_count(const struct userlist *l);
/* Zeroes the secrets. */
void userlist_free(struct userlist *l);

#endif
