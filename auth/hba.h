/* Client authentication rules in PostgreSQL's pg_hba.conf format (the
 * `auth_hba_file` setting):
 *
 *   local      DATABASE USER                  METHOD [OPTIONS]
 *   host       DATABASE USER ADDRESS [MASK]   METHOD [OPTIONS]
 *   hostssl    DATABASE USER ADDRESS [MASK]   METHOD [OPTIONS]
 *   hostnossl  DATABASE USER ADDRESS [MASK]   METHOD [OPTIONS]
 *
 * What pgmoat takes of the format:
 *   - DATABASE: comma-separated names, `all`, `sameuser`, `replication`
 *     (accepted, never matches: pgmoat takes no replication connections),
 *     "quoted" names (a quoted keyword is a plain name) and @file (names in a
 *     file, relative to the including file's directory).
 *   - USER: names, `all`, "quoted" names, @file.
 *   - ADDRESS: a CIDR (IPv4 or IPv6), an address followed by a MASK column
 *     (an address alone is an error, as in PostgreSQL), or `all`.  An IPv4 network also matches IPv4-mapped IPv6 clients.
 *   - METHOD: trust, reject, md5, scram-sha-256, password, cert.
 *   - OPTIONS: clientcert=verify-ca or clientcert=verify-full (hostssl
 *     only; cert implies verify-full).
 *   - '#' comments, blank lines, a trailing backslash continues a line.
 * Keywords and names are case-sensitive; a quoted word is always a name.
 * Refused with an error (never silently ignored): hostgssenc, hostnogssenc,
 * groups (+name, samerole, samegroup), regular expressions (/name), host
 * names, samehost, samenet, include directives, other methods and options.
 *
 * The first rule matching the connection type, database, user and address
 * decides; no match means the connection is refused.  A file with any error
 * does not load: the caller keeps the rules it has.
 */
#ifndef PGMOAT_AUTH_HBA_H
#define PGMOAT_AUTH_HBA_H

#include <stdbool.h>
#include <stddef.h>

#include "common/util.h"

struct sockaddr;

#define HBA_MAX_LINE 8192 /* bytes in one record, continuations joined */
#define HBA_MAX_RULES 100000

#define HBA_METHOD_LIST(X)                                                                         \
	X(HBA_TRUST, "trust")                                                                      \
	X(HBA_REJECT, "reject")                                                                    \
	X(HBA_MD5, "md5")                                                                          \
	X(HBA_SCRAM, "scram-sha-256")                                                              \
	X(HBA_PASSWORD, "password")                                                                \
	X(HBA_CERT, "cert")

enum hba_method {
#define HBA_METHOD_ENUM(e, name) e,
	HBA_METHOD_LIST(HBA_METHOD_ENUM)
#undef HBA_METHOD_ENUM
};

/* "trust", "scram-sha-256", ... as written in the file. */
const char *hba_method_name(enum hba_method m);

enum hba_conn {
	HBA_CONN_LOCAL, /* Unix socket */
	HBA_CONN_TCP_PLAIN,
	HBA_CONN_TCP_TLS,
};

struct hba;

struct hba_match {
	enum hba_method method;
	int line; /* of the rule, in the hba file */
	bool clientcert; /* a verified client certificate is required */
	bool clientcert_full; /* ... and its CN must equal the user name
	                       * (clientcert=verify-full, and method cert) */
	bool matched; /* false: no rule matched, refuse the connection */
};

/* Read and parse `path`.  NULL with "path:line: message" errors appended to
 * `errors` (which may be NULL) if the file cannot be read or has any error. */
struct hba *hba_load(const char *path, struct strlist *errors) __attribute__((warn_unused_result));
/* Parse `text`; errors are reported as `name_for_errors`:line, and relative
 * @file names are looked up in `dir_for_includes` (NULL: the current
 * directory). */
struct hba *hba_parse(const char *text, const char *name_for_errors, const char *dir_for_includes,
                      struct strlist *errors) __attribute__((warn_unused_result));
void hba_free(struct hba *h);
size_t hba_count(const struct hba *h);

/* The first rule matching the connection.  `addr` is the client's address
 * for TCP (NULL for a Unix socket, where it is ignored); `db` and `user` as
 * in the startup packet. */
struct hba_match hba_lookup(const struct hba *h, enum hba_conn conn, const struct sockaddr *addr,
                            const char *db, const char *user);

/* False only if no rule can ever admit a client at `addr` (NULL or AF_UNIX:
 * a Unix-socket client), whatever database and user it asks for: used to
 * close connections at accept, before reading a byte.  Rules are taken in
 * order; the first rule for that kind of socket and address with a method
 * other than reject gives true; a reject rule for all databases and all
 * users of type `host` (`local` for Unix sockets) hides every later rule and
 * gives false; so does the end of the rules. */
bool hba_may_admit(const struct hba *h, const struct sockaddr *addr);

#endif
