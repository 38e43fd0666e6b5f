/* Session state of clients whose server changes (transaction and statement
 * pooling).
 *
 * A client's session state is what it changed at session level: its startup
 * parameters, SET and RESET, set_config(..., false), SET ROLE.  It is kept as
 * name -> value in the text form current_setting() returns, which
 * set_config() takes back unchanged (lists such as search_path included).
 * A server connection records the state its last client left on it.  When a
 * client gets a server, the difference is applied with set_config() and
 * RESET; when a transaction may have changed the state (a SET, RESET or
 * DISCARD command tag, a ParameterStatus, set_config in the SQL), the state
 * is read back from pg_settings before the server is released.  Values and
 * names are always sent as quoted literals and identifiers. */
#ifndef PGMOAT_PROXY_SESSION_H
#define PGMOAT_PROXY_SESSION_H

#include <stdbool.h>

#include "common/buf.h"
#include "proxy/proto.h"

/* The query that reads a session's state back: rows of (name, value). */
extern const char session_capture_sql[];

/* Append to `sql` (a NUL-terminated string built in a pkt) what turns a
 * server whose recorded state is `have` and whose reported parameters are
 * `reported` into state `want`; false if nothing needs to change. */
bool session_apply_sql(const struct params *want, const struct params *have,
                       const struct params *reported, struct pkt *sql);

/* Is `tag` (a CommandComplete tag) one that may change session settings? */
bool session_tag_changes(const char *tag, size_t len);

#endif
