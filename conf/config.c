#include <config.h> /* autoconf; <> so that conf/config.h is not picked up */

/* Reading a file into a config (parse -> validate), its life cycle and the
 * lookups the proxy makes.  The tables and value parsers are conf/settings.c. */

#include "conf/config.h"
#include "common/util.h"
#include "conf/ini.h"
#include "conf/settings.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME_MAX_LEN 63 /* PostgreSQL's NAMEDATALEN - 1 */

static const char *skip_spaces(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* --- life cycle ------------------------------------------------------- */

static void db_entry_clear(struct db_entry *db)
{
	if (db->password)
		secure_zero(db->password, strlen(db->password));
	settings_param_clear(SETTINGS_DB_PARAMS, db);
	for (int i = 0; i < db->n_hosts; i++)
		free(db->hosts[i].host);
	free(db->hosts);
	free(db->name);
}

/* Split "a,b,c" into at most `max` trimmed items (empty items kept as "");
 * the count, or -1 if there are more. */
static int split_list(const char *s, char **out, int max)
{
	int n = 0;
	const char *p = s;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (n == max) {
			for (int i = 0; i < n; i++)
				free(out[i]);
			return -1;
		}
		while (len > 0 && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		while (len > 0 && isspace((unsigned char)p[len - 1]))
			len--;
		out[n++] = xstrndup(p, len);
		if (!comma)
			return n;
		p = comma + 1;
	}
}

/* A number list item: 1 or `n` items, each lo..hi. */
static bool list_numbers(const char *name, const char *s, int n, long lo, long hi, int *out,
                         char *msg, size_t len)
{
	char *items[DB_MAX_HOSTS];
	int k = split_list(s, items, DB_MAX_HOSTS);
	bool good = k == 1 || k == n;
	if (!good)
		snprintf(msg, len, "%s: expected one value or one per host (%d), got '%s'", name, n,
		         s);
	for (int i = 0; good && i < k; i++) {
		char *end;
		long x = strtol(items[i], &end, 10);
		if (!items[i][0] || *end || x < lo || x > hi) {
			snprintf(msg, len, "%s: expected integers between %ld and %ld, got '%s'",
			         name, lo, hi, items[i]);
			good = false;
		}
		for (int j = i; good && j < n; j += k)
			out[j] = (int)x;
	}
	for (int i = 0; i < k; i++)
		free(items[i]);
	return good;
}

/* host=a,b port=p[,q] weight=w[,v]: one struct db_host per host. */
static bool db_hosts(struct db_entry *db, char *msg, size_t len)
{
	char *names[DB_MAX_HOSTS];
	int n = db->host ? split_list(db->host, names, DB_MAX_HOSTS) : 1;
	if (n < 0) {
		snprintf(msg, len, "host: at most %d hosts", DB_MAX_HOSTS);
		return false;
	}
	if (!db->host)
		names[0] = NULL;
	db->hosts = xcalloc((size_t)n, sizeof(*db->hosts));
	db->n_hosts = n;
	bool good = true;
	for (int i = 0; i < n; i++) {
		db->hosts[i].host = names[i] && names[i][0] ? names[i] : NULL;
		if (names[i] && !names[i][0]) {
			free(names[i]);
			if (n > 1) {
				snprintf(msg, len, "host: empty host name in '%s'", db->host);
				good = false;
			}
		}
		db->hosts[i].port = 5432;
		db->hosts[i].weight = 1;
	}
	int v[DB_MAX_HOSTS];
	if (good && db->ports) {
		good = list_numbers("port", db->ports, n, 1, 65535, v, msg, len);
		for (int i = 0; good && i < n; i++)
			db->hosts[i].port = v[i];
	}
	if (good && db->weights) {
		good = list_numbers("weight", db->weights, n, 1, 100, v, msg, len);
		for (int i = 0; good && i < n; i++)
			db->hosts[i].weight = v[i];
	}
	db->port = db->hosts[0].port;
	return good;
}

static void config_free(struct config *c)
{
	settings_free(c);
	for (size_t i = 0; i < c->n_dbs; i++)
		db_entry_clear(&c->dbs[i]);
	free(c->dbs);
	for (size_t i = 0; i < c->n_users; i++)
		free(c->users[i].name);
	free(c->users);
	for (size_t i = 0; i < c->n_peers; i++)
		settings_param_clear(SETTINGS_PEER_PARAMS, &c->peers[i]);
	free(c->peers);
	free(c->path);
	free(c);
}

static void resolve_workers(struct config *c)
{
	if (c->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (int)n;
	}
}

struct config *config_defaults(void)
{
	struct config *c = xcalloc(1, sizeof(*c));
	settings_init(c);
	resolve_workers(c);
	atomic_init(&c->refs, 1);
	return c;
}

void config_ref(struct config *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void config_unref(struct config *c)
{
	if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		config_free(c);
}

/* --- loading ---------------------------------------------------------- */

struct loader {
	struct config *c;
	struct strlist *errors, *warnings;
	const struct setting *settings; /* the table, config_settings() */
	size_t n_settings;
	char **where; /* "file:line" where each setting was last set */
	struct strlist db_where; /* "file:line" of each c->dbs[i] */
	char *peers_where; /* "file:line" of the first [peers] entry */
	struct strlist bad_sections;
};

static void add_msg(struct strlist *l, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void add_msg(struct strlist *l, const char *file, int line, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	strlist_addf(l, "%s:%d: %s", file, line, msg);
}

static char *where_str(const char *file, int line)
{
	size_t n = strlen(file) + 16;
	char *w = xmalloc(n);
	snprintf(w, n, "%s:%d", file, line);
	return w;
}

static void load_setting(struct loader *ld, const char *file, int line, const char *key,
                         const char *value)
{
	const struct setting *s = config_find_setting(key);
	char msg[512];
	if (!s) {
		settings_unknown(key, msg, sizeof(msg));
		add_msg(ld->warnings, file, line, "%s", msg);
		return;
	}
	if (!settings_parse(ld->c, s, value, file, msg, sizeof(msg))) {
		add_msg(ld->errors, file, line, "%s: %s", s->name, msg);
		return;
	}
	size_t i = (size_t)(s - ld->settings);
	free(ld->where[i]);
	ld->where[i] = where_str(file, line);
}

/* One `key=value` of a libpq-style connection string: values may be
 * 'single-quoted', and \ escapes the next character.  Returns 1 with *key
 * and *val allocated, 0 at the end, -1 on a syntax error (msg).  Messages
 * never quote a value: it could be a password. */
static int conn_next(const char **pp, const char *prev, char **key, char **val, char *msg,
                     size_t len)
{
	const char *p = *pp;
	while (isspace((unsigned char)*p))
		p++;
	if (!*p)
		return 0;
	const char *k = p;
	while (*p && *p != '=' && !isspace((unsigned char)*p))
		p++;
	size_t klen = (size_t)(p - k);
	p = skip_spaces(p);
	if (*p != '=' || klen == 0) {
		if (prev)
			snprintf(msg, len, "expected name=value after the %s parameter", prev);
		else
			snprintf(msg, len, "expected name=value parameters");
		return -1;
	}
	p = skip_spaces(p + 1);
	char *v = xmalloc(strlen(p) + 1), *o = v;
	bool quoted = *p == '\'';
	if (quoted)
		p++;
	while (*p && (quoted ? *p != '\'' : !isspace((unsigned char)*p))) {
		if (*p == '\\' && p[1])
			p++;
		*o++ = *p++;
	}
	*o = '\0';
	if (quoted && *p++ != '\'') {
		snprintf(msg, len, "%.*s: unterminated quoted value", (int)klen, k);
		secure_zero(v, strlen(v));
		free(v);
		return -1;
	}
	*key = xstrndup(k, klen);
	*val = v;
	*pp = p;
	return 1;
}

/* Parse "k=v k=v ..." into `entry`, a struct db_entry or user_entry as `t`
 * says; every problem is reported with `what` ("database 'x'") at file:line. */
static bool parse_params(struct loader *ld, const char *file, int line, const char *what,
                         enum settings_params t, void *entry, const char *value)
{
	bool good = true;
	char *key = NULL, *v = NULL, msg[512], prev[72] = "";
	const char *p = value;
	int r;
	while ((r = conn_next(&p, prev[0] ? prev : NULL, &key, &v, msg, sizeof(msg))) > 0) {
		if (!settings_param_set(t, entry, key, v, msg, sizeof(msg))) {
			add_msg(ld->errors, file, line, "%s: %s", what, msg);
			good = false;
		}
		snprintf(prev, sizeof(prev), "'%.64s'", key);
		secure_zero(v, strlen(v));
		free(v);
		free(key);
	}
	if (r < 0) {
		add_msg(ld->errors, file, line, "%s: %s", what, msg);
		good = false;
	}
	return good;
}

static bool check_name(struct loader *ld, const char *file, int line, const char *kind,
                       const char *name)
{
	if (strlen(name) > NAME_MAX_LEN) {
		add_msg(ld->errors, file, line, "%s name '%s' is longer than %d bytes", kind, name,
		        NAME_MAX_LEN);
		return false;
	}
	return true;
}

static void load_db(struct loader *ld, const char *file, int line, const char *name,
                    const char *value)
{
	struct config *c = ld->c;
	struct db_entry db = {.port = 5432,
	                      .pool_size = -1,
	                      .min_pool_size = -1,
	                      .reserve_pool = -1,
	                      .max_db_connections = -1,
	                      .pool_mode = -1,
	                      .line = line};
	char what[96];
	snprintf(what, sizeof(what), "database '%.64s'", name);
	bool good = check_name(ld, file, line, "database", name);
	if (strcmp(name, "pgmoat") == 0) {
		add_msg(ld->errors, file, line,
		        "database name 'pgmoat' is reserved for the admin console");
		good = false;
	}
	good = parse_params(ld, file, line, what, SETTINGS_DB_PARAMS, &db, value) && good;
	char msg[256];
	if (good && !db_hosts(&db, msg, sizeof(msg))) {
		add_msg(ld->errors, file, line, "%s: %s", what, msg);
		good = false;
	}
	if (!good) {
		db_entry_clear(&db);
		return;
	}
	db.name = xstrdup(name);
	for (size_t i = 0; i < c->n_dbs; i++) {
		if (strcmp(c->dbs[i].name, name) == 0) { /* defined again: the last one wins */
			db_entry_clear(&c->dbs[i]);
			c->dbs[i] = db;
			free(ld->db_where.items[i]);
			ld->db_where.items[i] = where_str(file, line);
			return;
		}
	}
	c->dbs = xrealloc(c->dbs, (c->n_dbs + 1) * sizeof(*c->dbs));
	c->dbs[c->n_dbs++] = db;
	char *w = where_str(file, line);
	strlist_add(&ld->db_where, w);
	free(w);
}

static void load_user(struct loader *ld, const char *file, int line, const char *name,
                      const char *value)
{
	struct config *c = ld->c;
	struct user_entry u = {.pool_mode = -1, .max_user_connections = -1, .line = line};
	char what[96];
	snprintf(what, sizeof(what), "user '%.64s'", name);
	bool good = check_name(ld, file, line, "user", name);
	if (!parse_params(ld, file, line, what, SETTINGS_USER_PARAMS, &u, value) || !good)
		return;
	u.name = xstrdup(name);
	for (size_t i = 0; i < c->n_users; i++) {
		if (strcmp(c->users[i].name, name) == 0) {
			free(c->users[i].name);
			c->users[i] = u;
			return;
		}
	}
	c->users = xrealloc(c->users, (c->n_users + 1) * sizeof(*c->users));
	c->users[c->n_users++] = u;
}

/* id = host=H port=P */
static void load_peer(struct loader *ld, const char *file, int line, const char *id,
                      const char *value)
{
	struct config *c = ld->c;
	struct peer_entry p = {.port = 6432, .line = line};
	char *end;
	long n = isdigit((unsigned char)id[0]) ? strtol(id, &end, 10) : -1;
	if (n < 1 || n > PEER_ID_MAX || *end) {
		add_msg(ld->errors, file, line,
		        "peer id '%.64s': expected an integer between 1 and %d", id, PEER_ID_MAX);
		return;
	}
	p.id = (int)n;
	char what[32];
	snprintf(what, sizeof(what), "peer %d", p.id);
	bool good = parse_params(ld, file, line, what, SETTINGS_PEER_PARAMS, &p, value);
	if (good && !p.host) {
		add_msg(ld->errors, file, line,
		        "%s: host is required (a host name, an IP address or a unix socket "
		        "directory)",
		        what);
		good = false;
	}
	if (!good) {
		settings_param_clear(SETTINGS_PEER_PARAMS, &p);
		return;
	}
	if (!ld->peers_where)
		ld->peers_where = where_str(file, line);
	for (size_t i = 0; i < c->n_peers; i++) {
		if (c->peers[i].id == p.id) { /* defined again: the last one wins */
			settings_param_clear(SETTINGS_PEER_PARAMS, &c->peers[i]);
			c->peers[i] = p;
			return;
		}
	}
	c->peers = xrealloc(c->peers, (c->n_peers + 1) * sizeof(*c->peers));
	c->peers[c->n_peers++] = p;
}

static void on_key(const char *file, int line, const char *section, const char *key,
                   const char *value, void *arg)
{
	struct loader *ld = arg;
	if (str_ieq(section, "pgmoat") || str_ieq(section, "pgbouncer")) {
		if (key)
			load_setting(ld, file, line, key, value);
	} else if (str_ieq(section, "databases")) {
		if (key)
			load_db(ld, file, line, key, value);
	} else if (str_ieq(section, "users")) {
		if (key)
			load_user(ld, file, line, key, value);
	} else if (str_ieq(section, "peers")) {
		if (key)
			load_peer(ld, file, line, key, value);
	} else if (!strlist_contains_ci(&ld->bad_sections, section)) {
		/* Once per section, at its header (or its first key). */
		strlist_add(&ld->bad_sections, section);
		add_msg(ld->errors, file, line,
		        "unknown section [%s] (expected [pgmoat], [databases], [users] or [peers])",
		        section);
	}
}

/* Where setting `name` was set, else the file itself: for messages about
 * several settings together. */
static const char *where(const struct loader *ld, const char *name)
{
	const struct setting *s = config_find_setting(name);
	const char *w = ld->where[s - ld->settings];
	return w ? w : ld->c->path;
}

static void validate_tls(struct loader *ld)
{
	const struct config *c = ld->c;
	if (c->client_tls_sslmode != TLS_DISABLE &&
	    (c->client_tls_key_file[0] == '\0' || c->client_tls_cert_file[0] == '\0'))
		strlist_addf(ld->errors,
		             "%s: client_tls_sslmode %s needs client_tls_key_file and "
		             "client_tls_cert_file",
		             where(ld, "client_tls_sslmode"), tls_mode_name(c->client_tls_sslmode));
	if (c->client_tls_sslmode >= TLS_VERIFY_CA && c->client_tls_ca_file[0] == '\0')
		strlist_addf(ld->errors,
		             "%s: client_tls_sslmode %s needs client_tls_ca_file (the CA client "
		             "certificates are checked against)",
		             where(ld, "client_tls_sslmode"), tls_mode_name(c->client_tls_sslmode));
	if (c->server_tls_sslmode >= TLS_VERIFY_CA && c->server_tls_ca_file[0] == '\0')
		strlist_addf(ld->errors,
		             "%s: server_tls_sslmode %s needs server_tls_ca_file (the CA the "
		             "server's certificate is checked against)",
		             where(ld, "server_tls_sslmode"), tls_mode_name(c->server_tls_sslmode));
	if ((c->server_tls_key_file[0] == '\0') != (c->server_tls_cert_file[0] == '\0'))
		strlist_addf(ld->errors,
		             "%s: server_tls_cert_file and server_tls_key_file go together",
		             where(ld, "server_tls_cert_file"));
}

static void validate(struct loader *ld)
{
	const struct config *c = ld->c;
	if (c->min_pool_size > c->default_pool_size)
		strlist_addf(ld->errors,
		             "%s: min_pool_size (%d) must not exceed default_pool_size (%d)",
		             where(ld, "min_pool_size"), c->min_pool_size, c->default_pool_size);
	if ((c->auth_type == AUTH_MD5 || c->auth_type == AUTH_SCRAM ||
	     c->auth_type == AUTH_PLAIN) &&
	    c->auth_file[0] == '\0')
		strlist_addf(ld->errors,
		             "%s: auth_type %s needs an auth_file (without one nobody can log in)",
		             where(ld, "auth_type"), auth_type_name(c->auth_type));
	if (c->auth_type == AUTH_HBA && c->auth_hba_file[0] == '\0')
		strlist_addf(ld->errors, "%s: auth_type hba needs an auth_hba_file",
		             where(ld, "auth_type"));
	if (c->auth_type == AUTH_CERT &&
	    (c->client_tls_sslmode == TLS_DISABLE || c->client_tls_ca_file[0] == '\0'))
		strlist_addf(ld->errors,
		             "%s: auth_type cert needs client_tls_sslmode other than disable and a "
		             "client_tls_ca_file to check client certificates against",
		             where(ld, "auth_type"));
	validate_tls(ld);
	if (c->auth_user[0] && c->auth_query[0] == '\0')
		strlist_addf(ld->errors, "%s: auth_user is set but auth_query is empty",
		             where(ld, "auth_query"));
	if (c->listen_addr.n == 0 && c->unix_socket_dir[0] == '\0')
		strlist_addf(
		        ld->errors,
		        "%s: listen_addr and unix_socket_dir are both empty: nothing to listen on",
		        where(ld, "listen_addr"));
	if (c->n_peers > 0 && c->peer_id == 0)
		strlist_addf(ld->warnings,
		             "%s: [peers] is ignored while peer_id is 0 (cancel requests are not "
		             "forwarded)",
		             ld->peers_where);
	for (size_t i = 0; i < c->n_dbs; i++) {
		const struct db_entry *db = &c->dbs[i];
		int min = db_min_pool_size(c, db), size = db_pool_size(c, db);
		if (min > size && (db->min_pool_size >= 0 || db->pool_size >= 0))
			strlist_addf(ld->errors,
			             "%s: database '%s': min_pool_size (%d) must not exceed "
			             "pool_size (%d)",
			             ld->db_where.items[i], db->name, min, size);
	}
}

struct config *config_load(const char *path, struct strlist *errors, struct strlist *warnings)
{
	struct strlist own_errors, own_warnings;
	strlist_init(&own_errors);
	strlist_init(&own_warnings);
	struct loader ld = {.c = config_defaults(),
	                    .errors = errors ? errors : &own_errors,
	                    .warnings = warnings ? warnings : &own_warnings};
	ld.settings = config_settings(&ld.n_settings);
	ld.where = xcalloc(ld.n_settings, sizeof(*ld.where));
	size_t n_before = ld.errors->n;
	strlist_init(&ld.bad_sections);
	strlist_init(&ld.db_where);
	ld.c->path = xstrdup(path);
	ld.c->workers = 0; /* config_defaults resolved it; resolve after reading */

	/* Checks across settings run once every line is valid (no cascades). */
	if (ini_parse_file(path, on_key, &ld, ld.errors) && ld.errors->n == n_before)
		validate(&ld);
	if (ld.errors->n == n_before) {
		resolve_workers(ld.c);
	} else {
		config_free(ld.c);
		ld.c = NULL;
	}
	for (size_t i = 0; i < ld.n_settings; i++)
		free(ld.where[i]);
	free(ld.where);
	strlist_free(&ld.bad_sections);
	strlist_free(&ld.db_where);
	free(ld.peers_where);
	strlist_free(&own_errors);
	strlist_free(&own_warnings);
	return ld.c;
}

/* --- lookups ---------------------------------------------------------- */

const struct db_entry *config_find_db(const struct config *c, const char *name)
{
	const struct db_entry *fallback = NULL;
	for (size_t i = 0; i < c->n_dbs; i++) {
		if (strcmp(c->dbs[i].name, name) == 0)
			return &c->dbs[i];
		if (strcmp(c->dbs[i].name, "*") == 0)
			fallback = &c->dbs[i];
	}
	return fallback;
}

const struct user_entry *config_find_user(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->n_users; i++)
		if (strcmp(c->users[i].name, name) == 0)
			return &c->users[i];
	return NULL;
}

const struct peer_entry *config_find_peer(const struct config *c, int id)
{
	for (size_t i = 0; i < c->n_peers; i++)
		if (c->peers[i].id == id)
			return &c->peers[i];
	return NULL;
}

int db_pool_size(const struct config *c, const struct db_entry *db)
{
	return db && db->pool_size >= 0 ? db->pool_size : c->default_pool_size;
}

int db_min_pool_size(const struct config *c, const struct db_entry *db)
{
	return db && db->min_pool_size >= 0 ? db->min_pool_size : c->min_pool_size;
}

int db_reserve_pool(const struct config *c, const struct db_entry *db)
{
	return db && db->reserve_pool >= 0 ? db->reserve_pool : c->reserve_pool_size;
}

int db_max_connections(const struct config *c, const struct db_entry *db)
{
	return db && db->max_db_connections >= 0 ? db->max_db_connections : c->max_db_connections;
}

enum pool_mode db_pool_mode(const struct config *c, const struct db_entry *db,
                            const struct user_entry *user)
{
	if (user && user->pool_mode >= 0)
		return (enum pool_mode)user->pool_mode;
	if (db && db->pool_mode >= 0)
		return (enum pool_mode)db->pool_mode;
	return (enum pool_mode)c->pool_mode;
}

bool config_check_value(const struct setting *s, const char *value, char *err, size_t errlen)
{
	struct config *scratch = config_defaults();
	bool ok = settings_parse(scratch, s, value, NULL, err, errlen);
	config_unref(scratch);
	return ok;
}

bool config_override(struct config *c, const char *key, const char *value, char *err, size_t errlen)
{
	const struct setting *s = config_find_setting(key);
	if (!s) {
		snprintf(err, errlen, "unknown setting '%s'", key);
		return false;
	}
	return settings_parse(c, s, value, NULL, err, errlen);
}
