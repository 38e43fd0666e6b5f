/* PostgreSQL's md5 password scheme.
 *
 *   stored   = "md5" + hex(md5(password || username))
 *   response = "md5" + hex(md5(hex_part_of(stored) || salt[4]))
 */
#ifndef PGMOAT_AUTH_MD5_H
#define PGMOAT_AUTH_MD5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MD5_PASSWD_LEN 35 /* "md5" + 32 hex digits */

/* True if `s` has the form "md5" + 32 lowercase hex digits. */
bool md5_is_hash(const char *s);
/* out = "md5" + hex(md5(password || user)), NUL-terminated. */
void md5_password_hash(const char *password, const char *user, char out[MD5_PASSWD_LEN + 1]);
/* The salted response for `stored`, which is either an md5 hash or a plain
 * password (then hashed with `user` first). */
void md5_salted_response(const char *stored, const char *user, const uint8_t salt[4],
                         char out[MD5_PASSWD_LEN + 1]);
/* Check a client's response (`resp`, `resp_len` bytes, not necessarily
 * NUL-terminated; one terminating NUL counted in `resp_len`, as in a
 * PasswordMessage body, is allowed) in constant time. */
bool md5_check_response(const char *stored, const char *user, const uint8_t salt[4],
                        const char *resp, size_t resp_len);

#endif
