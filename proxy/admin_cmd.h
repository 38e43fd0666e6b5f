/* The admin console's commands (doc/operations.md), parsed apart from
 * running them: a pure function of the text, so any bytes a console user
 * sends can be checked without a running pgmoat (tests/fuzz/fuzz_admin.c).
 *
 * Keywords are case-insensitive and end at a character that is not a
 * letter, digit or '_'; blanks and ';' around a command are ignored.
 * Commands without an argument take nothing after their keywords. */
#ifndef PGMOAT_PROXY_ADMIN_CMD_H
#define PGMOAT_PROXY_ADMIN_CMD_H

#include <stdbool.h>

/* X(id, keywords): keywords after SHOW for the SHOW commands. */
#define ADMIN_SHOW_LIST(X)                                                                         \
	X(ADMIN_SHOW_HELP, "HELP")                                                                 \
	X(ADMIN_SHOW_VERSION, "VERSION")                                                           \
	X(ADMIN_SHOW_CONFIG, "CONFIG")                                                             \
	X(ADMIN_SHOW_DATABASES, "DATABASES")                                                       \
	X(ADMIN_SHOW_USERS, "USERS")                                                               \
	X(ADMIN_SHOW_POOLS, "POOLS")                                                               \
	X(ADMIN_SHOW_HOSTS, "HOSTS")                                                               \
	X(ADMIN_SHOW_LISTS, "LISTS")                                                               \
	X(ADMIN_SHOW_STATE, "STATE")                                                               \
	X(ADMIN_SHOW_STATS, "STATS")                                                               \
	X(ADMIN_SHOW_STATS_TOTALS, "STATS_TOTALS")                                                 \
	X(ADMIN_SHOW_STATS_AVERAGES, "STATS_AVERAGES")                                             \
	X(ADMIN_SHOW_MEM, "MEM")                                                                   \
	X(ADMIN_SHOW_CLIENTS, "CLIENTS")                                                           \
	X(ADMIN_SHOW_SERVERS, "SERVERS")

#define ADMIN_CMD_X_ENUM(id, kw) id,
enum admin_cmd_kind {
	ADMIN_EMPTY, /* nothing but blanks and ';' */
	ADMIN_SHOW_LIST(ADMIN_CMD_X_ENUM) /* SHOW ... */
	ADMIN_SHOW_UNKNOWN, /* SHOW and anything else */
	ADMIN_SET, /* SET key = value: key, value */
	ADMIN_RELOAD,
	ADMIN_PAUSE, /* PAUSE [db]: arg */
	ADMIN_RESUME, /* RESUME [db] */
	ADMIN_DISABLE, /* DISABLE db */
	ADMIN_ENABLE, /* ENABLE db */
	ADMIN_RECONNECT, /* RECONNECT [db] */
	ADMIN_WAIT_CLOSE, /* WAIT_CLOSE [db] */
	ADMIN_KILL_CLIENT, /* KILL_CLIENT C-<id>: client_id */
	ADMIN_KILL, /* KILL db */
	ADMIN_SHUTDOWN, /* SHUTDOWN [WAIT_FOR_CLIENTS | WAIT_FOR_SERVERS]: shutdown */
	ADMIN_SYNTAX, /* a known command written wrong: error says how to write it */
	ADMIN_UNKNOWN, /* anything else */
};
#undef ADMIN_CMD_X_ENUM

enum admin_shutdown {
	ADMIN_SHUTDOWN_FAST,
	ADMIN_SHUTDOWN_WAIT_CLIENTS,
	ADMIN_SHUTDOWN_WAIT_SERVERS
};

struct admin_cmd {
	enum admin_cmd_kind kind;
	const char *text; /* the whole command, trimmed (for messages) */
	const char *arg; /* what follows the keyword: a database name, or "" */
	char key[128]; /* SET */
	char value[1024]; /* SET: unquoted if in '' or "" */
	unsigned long long client_id; /* KILL_CLIENT */
	enum admin_shutdown shutdown; /* SHUTDOWN */
	const char *error; /* ADMIN_SYNTAX */
};

/* Parse `sql` (NUL-terminated; trimmed in place).  text and arg point into
 * it. */
void admin_cmd_parse(char *sql, struct admin_cmd *out);
/* SHOW commands (known or not) and the empty command: what stats_users
 * may run. */
bool admin_cmd_read_only(enum admin_cmd_kind kind);

#endif
