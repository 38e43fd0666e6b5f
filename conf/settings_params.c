#include <config.h> /* autoconf; <> so that conf/config.h is not picked up */

/* The [databases], [users] and [peers] parameters: their tables and the
 * parsing of their values (conf/settings.h). */

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "conf/config.h"
#include "conf/settings.h"

/* --- [databases] and [users] parameters ------------------------------- */

#define P_FIELD(st, n, ctype) (offsetof(struct st, n) + _Generic(((struct st *)0)->n, ctype : 0))

/* clang-format off */
#define DB_STR(n, dv, text) {#n, PARAM_STR, P_FIELD(db_entry, n, char *), 0, 0, dv, text}
#define DB_INT(n, lo, hi, dv, text) {#n, PARAM_INT, P_FIELD(db_entry, n, int), lo, hi, dv, text}

static const struct param db_params[] = {
	DB_STR(host, "unix socket",
		"Server host name or IP address; a comma-separated list names the primary and "
		"its replicas, in any order (doc/routing.md)."),
	{"port", PARAM_INT_LIST, P_FIELD(db_entry, ports, char *), 1, 65535, "5432",
		"Server port; with several hosts, one port for all or one per host, "
		"comma-separated."},
	{"target_session_attrs", PARAM_TSA, P_FIELD(db_entry, tsa, int), 0, 0, "read-write",
		"Which host serves this name: read-write or primary (the primary), read-only or "
		"standby (a replica; none up is an error), prefer-standby (a replica, else the "
		"primary), any (the least loaded host that is up)."},
	{"weight", PARAM_INT_LIST, P_FIELD(db_entry, weights, char *), 1, 100, "1",
		"Share of reads each replica gets, 1 to 100: one for all hosts or one per host, "
		"comma-separated."},
	DB_STR(dbname, "the name used", "Database name on the server."),
	DB_STR(user, "the client's user",
		"Log in to the server as this user, whoever the client logged in as."),
	DB_STR(password, "none", "Password of that user (or of the client's user) on the server."),
	DB_INT(pool_size, 0, MAX_POOL, "`default_pool_size`", "Server connections per pool."),
	DB_INT(min_pool_size, 0, MAX_POOL, "`min_pool_size`",
		"Server connections kept open per pool."),
	DB_INT(reserve_pool, 0, MAX_POOL, "`reserve_pool_size`", "Extra connections per pool."),
	DB_INT(max_db_connections, 0, MAX_CONNS, "`max_db_connections`",
		"Most server connections to this database; 0: no limit."),
	{"pool_mode", PARAM_POOL_MODE, P_FIELD(db_entry, pool_mode, int), 0, 0, "`pool_mode`",
		"Pool mode of this database's pools."},
	DB_STR(client_encoding, "not sent", "Sent to the server as its `client_encoding`."),
	DB_STR(datestyle, "not sent", "Sent to the server as its `DateStyle`."),
	DB_STR(timezone, "not sent", "Sent to the server as its `TimeZone`."),
	DB_STR(application_name, "not sent", "Sent to the server as its `application_name`."),
};

static const struct param user_params[] = {
	{"pool_mode", PARAM_POOL_MODE, P_FIELD(user_entry, pool_mode, int), 0, 0,
		"the database's", "Pool mode of this user's pools."},
	{"max_user_connections", PARAM_INT, P_FIELD(user_entry, max_user_connections, int),
		0, MAX_CONNS, "`max_user_connections`",
		"Most server connections of this user; 0: no limit."},
};

#define PEER_STR(n, dv, text) {#n, PARAM_STR, P_FIELD(peer_entry, n, char *), 0, 0, dv, text}
#define PEER_INT(n, lo, hi, dv, text) {#n, PARAM_INT, P_FIELD(peer_entry, n, int), lo, hi, dv, \
	text}

static const struct param peer_params[] = {
	PEER_STR(host, "required",
		"The peer's host name or IP address, or the directory of its unix socket (a path "
		"starting with `/`): best its own `unix_socket_dir`, which reaches that process "
		"and no other."),
	PEER_INT(port, 1, 65535, "6432", "The peer's `listen_port`."),
	PEER_INT(pool_size, 0, MAX_POOL, "0",
		"Accepted for pgbouncer.ini's sake and ignored: each forwarded cancel request "
		"uses a connection of its own."),
};

/* pgbouncer parameters pgmoat does not have: named as such in errors. */
static const char *const unsupported_params[] = {
	"auth_dbname", "auth_query", "auth_user", "connect_query", "load_balance_hosts",
	"max_db_client_connections", "max_user_client_connections", "query_timeout",
	"idle_transaction_timeout", "client_idle_timeout", "server_lifetime",
	"reserve_pool_size", "pool_size", "reserve_pool", NULL,
};
/* clang-format on */

/* --- [databases] and [users] parameter values ------------------------ */

/* Set parameter `p` of `entry`. */
static bool param_set(const struct param *p, void *entry, const char *v, char *msg, size_t len)
{
	void *f = (char *)entry + p->offset;
	long x;
	switch (p->kind) {
	case PARAM_STR:
		free(*(char **)f);
		*(char **)f = v[0] ? xstrdup(v) : NULL;
		return true;
	case PARAM_INT:
		if (!settings_parse_long(v, &x) || x < p->min || x > p->max) {
			snprintf(msg, len, "%s: expected an integer between %ld and %ld, got '%s'",
			         p->name, p->min, p->max, v);
			return false;
		}
		*(int *)f = (int)x;
		return true;
	case PARAM_INT_LIST: {
		struct strlist l;
		strlist_init(&l);
		strlist_parse_csv(&l, v);
		bool good = l.n > 0;
		for (size_t i = 0; good && i < l.n; i++) {
			if (!settings_parse_long(l.items[i], &x) || x < p->min || x > p->max) {
				snprintf(msg, len,
				         "%s: expected an integer between %ld and %ld, got '%s'",
				         p->name, p->min, p->max, l.items[i]);
				good = false;
			}
		}
		if (l.n == 0)
			snprintf(msg, len, "%s: expected an integer between %ld and %ld, got '%s'",
			         p->name, p->min, p->max, v);
		strlist_free(&l);
		if (!good)
			return false;
		free(*(char **)f);
		*(char **)f = xstrdup(v);
		return true;
	}
	case PARAM_TSA:
		x = settings_find_name(settings_tsa_names, v);
		if (x < 0) {
			char names[160];
			settings_join_names(names, sizeof(names), settings_tsa_names);
			snprintf(msg, len, "%s: expected %s, got '%s'", p->name, names, v);
			return false;
		}
		*(int *)f = (int)x;
		return true;
	case PARAM_POOL_MODE:
		x = settings_find_name(settings_pool_mode_names, v);
		if (x < 0) {
			char names[128];
			settings_join_names(names, sizeof(names), settings_pool_mode_names);
			snprintf(msg, len, "%s: expected %s, got '%s'", p->name, names, v);
			return false;
		}
		*(int *)f = (int)x;
		return true;
	}
	return false;
}

/* The table `t` names. */
void settings_param_table(enum settings_params t, const struct param **params, size_t *n)
{
	*params = NULL;
	*n = 0;
	switch (t) {
	case SETTINGS_DB_PARAMS:
		*params = db_params;
		*n = ARRAY_SIZE(db_params);
		break;
	case SETTINGS_USER_PARAMS:
		*params = user_params;
		*n = ARRAY_SIZE(user_params);
		break;
	case SETTINGS_PEER_PARAMS:
		*params = peer_params;
		*n = ARRAY_SIZE(peer_params);
		break;
	}
}

bool settings_param_set(enum settings_params t, void *entry, const char *key, const char *v,
                        char *msg, size_t len)
{
	const struct param *params;
	size_t n;
	settings_param_table(t, &params, &n);
	for (size_t i = 0; i < n; i++)
		if (str_ieq(params[i].name, key))
			return param_set(&params[i], entry, v, msg, len);
	const char *hint = settings_closest_name(key, params, n, sizeof(params[0]));
	if (settings_find_name(unsupported_params, key) >= 0)
		snprintf(msg, len, "'%s' is not supported by pgmoat", key);
	else if (hint)
		snprintf(msg, len, "unknown parameter '%s' (did you mean '%s'?)", key, hint);
	else
		snprintf(msg, len, "unknown parameter '%s'", key);
	return false;
}

void settings_param_clear(enum settings_params t, void *entry)
{
	const struct param *params;
	size_t n;
	settings_param_table(t, &params, &n);
	for (size_t i = 0; i < n; i++)
		if (params[i].kind == PARAM_STR || params[i].kind == PARAM_INT_LIST)
			free(*(char **)((char *)entry + params[i].offset));
}
