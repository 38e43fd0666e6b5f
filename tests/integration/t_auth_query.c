/* auth_query / auth_user: users missing from auth_file are looked up in
 * PostgreSQL through the documented SECURITY DEFINER function (doc/security.md)
 * with libpq's non-blocking API.  A found user logs in (SCRAM verifier: keys
 * passed through; md5 hash: pgmoat logs in with it); a wrong password, an
 * unknown user and an expired one (rolvaliduntil) fail the same way, and an
 * unknown user never gets auth_user's rights; the lookup runs with
 * search_path pinned to pg_catalog whatever the client sends; 20 concurrent
 * logins are served by the queue; a lookup that cannot run fails with 08006
 * and is logged; other clients are unaffected. */
#include <config.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/gate.h"
#include "tests/lib/harness.h"
#include "tests/lib/wire.h"

/* The function doc/security.md gives, word for word. */
static const char lookup_fn[] =
        "CREATE SCHEMA pgmoat;\n"
        "CREATE FUNCTION pgmoat.user_lookup(i_username text, OUT usename name, OUT passwd text)\n"
        "RETURNS record LANGUAGE sql SECURITY DEFINER\n"
        "SET search_path = pg_catalog, pg_temp AS $$\n"
        "  SELECT rolname, CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil > now()\n"
        "                       THEN rolpassword END\n"
        "  FROM pg_catalog.pg_authid\n"
        "  WHERE rolname = i_username AND rolcanlogin AND NOT rolsuper;\n"
        "$$;\n"
        "REVOKE ALL ON FUNCTION pgmoat.user_lookup(text) FROM PUBLIC;\n"
        "GRANT USAGE ON SCHEMA pgmoat TO pgmoat_auth;\n"
        "GRANT EXECUTE ON FUNCTION pgmoat.user_lookup(text) TO pgmoat_auth;\n";

static char *login_user(struct h_moat *m, const char *user, const char *password, const char *extra)
{
	char *ci = h_strdupf("host=127.0.0.1 port=%d user=%s dbname=app password='%s' "
	                     "sslmode=disable connect_timeout=10 %s",
	                     m->port, user, password, extra ? extra : "");
	PGconn *c = PQconnectdb(ci);
	free(ci);
	char *out;
	if (PQstatus(c) != CONNECTION_OK) {
		const char *msg = PQerrorMessage(c);
		const char *fatal = strstr(msg, "FATAL:  ");
		out = h_strdupf("failed: %s", fatal ? fatal + 8 : msg);
		size_t n = strlen(out);
		while (n > 0 && out[n - 1] == '\n')
			out[--n] = '\0';
	} else {
		char *v = h_value(c, "select current_user");
		out = h_strdupf("ok %s", v ? v : "?");
		free(v);
	}
	PQfinish(c);
	return out;
}

struct racer {
	struct h_moat *m;
	struct h_gate *gate;
	bool ok;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	if (!h_gate_wait_open(r->gate))
		return NULL;
	char *out = login_user(r->m, "aq_scram", "scram pw", NULL);
	r->ok = strcmp(out, "ok aq_scram") == 0;
	if (!r->ok)
		diag("concurrent login: %s", out);
	free(out);
	return NULL;
}

int main(void)
{
	h_init("t_auth_query", 180);
	struct h_pg_opts po = {.auth = "md5"};
	struct h_pg *pg = h_pg_start(&po);
	h_pg_create_app(pg, "app", "app", "app");
	h_pg_sql(pg, "create role pgmoat_auth login password 'auth secret'");
	/* In the database the lookup runs in (the client's: auth_dbname unset). */
	PGconn *app_db = h_pg_connect(pg, "postgres", "app");
	if (!h_exec(app_db, lookup_fn))
		h_bail("could not create pgmoat.user_lookup");
	PQfinish(app_db);
	h_pg_sql(pg, "create role aq_scram login password 'scram pw'");
	h_pg_sql(pg, "set password_encryption = 'md5'; create role aq_md5 login password 'md5 pw'");
	h_pg_sql(pg, "create role aq_expired login password 'old pw' valid until '2001-01-01'");
	h_pg_sql(pg, "create role aq_super superuser login password 'super pw'");
	h_pg_sql(pg, "grant all on database app to aq_scram, aq_md5, aq_expired, aq_super");

	struct h_moat *m = h_moat_new(pg);
	if (!h_moat_write_userlist(m, "\"app\" \"app\"\n\"pgmoat_auth\" \"auth secret\"\n") ||
	    !h_moat_write_std_ini(m, NULL,
	                          "auth_type = md5\nauth_user = pgmoat_auth\nverbose = 1\n") ||
	    !h_moat_start(m, NULL))
		h_bail("pgmoat did not start");

	char *r = login_user(m, "aq_scram", "scram pw", NULL);
	is_str(r, "ok aq_scram", "a user with a SCRAM verifier, found by auth_query, logs in");
	free(r);
	r = login_user(m, "aq_md5", "md5 pw", NULL);
	is_str(r, "ok aq_md5", "a user with an md5 hash, found by auth_query, logs in");
	free(r);
	/* Again, with the pool's server connections already there and after
	 * they are closed (pgmoat logs in to PostgreSQL with the md5 hash). */
	h_moat_log_mark(m);
	h_pg_sql(pg,
	         "select pg_terminate_backend(pid) from pg_stat_activity where usename = "
	         "'aq_md5'");
	/* Once pgmoat has seen its idle server go. */
	ok(h_moat_log_wait(m, "closing server connection", 10), "pgmoat saw its server close");
	r = login_user(m, "aq_md5", "md5 pw", NULL);
	is_str(r, "ok aq_md5", "and again once its server connection was closed");
	free(r);
	r = login_user(m, "app", "app", NULL);
	is_str(r, "ok app", "a user in auth_file does not need the lookup");
	free(r);

	const char *bad = "failed: password authentication failed for user";
	r = login_user(m, "aq_scram", "wrong", NULL);
	ok(strncmp(r, bad, strlen(bad)) == 0, "wrong password for a looked-up user: refused (%s)",
	   r);
	free(r);
	r = login_user(m, "nobody_here", "auth secret", NULL);
	ok(strncmp(r, bad, strlen(bad)) == 0,
	   "unknown user with auth_user's password: refused like a wrong password (%s)", r);
	free(r);
	r = login_user(m, "aq_expired", "old pw", NULL);
	ok(strncmp(r, bad, strlen(bad)) == 0,
	   "a role past its rolvaliduntil: refused, the lookup honors it (%s)", r);
	free(r);
	r = login_user(m, "aq_super", "super pw", NULL);
	ok(strncmp(r, bad, strlen(bad)) == 0, "the documented function never returns a superuser");
	free(r);
	ok(h_moat_log_has(m, "auth_query: user found"), "the lookups are logged (debug)");

	/* 20 logins at once share the worker's lookup connection. */
	struct h_gate gate;
	h_gate_init(&gate, 60);
	pthread_t th[20];
	struct racer rs[20];
	for (int i = 0; i < 20; i++) {
		rs[i] = (struct racer){.m = m, .gate = &gate};
		pthread_create(&th[i], NULL, race, &rs[i]);
	}
	h_gate_open(&gate);
	int good = 0;
	for (int i = 0; i < 20; i++) {
		pthread_join(th[i], NULL);
		good += rs[i].ok;
	}
	h_gate_destroy(&gate);
	is_int(good, 20, "20 concurrent logins of a looked-up user all succeed");
	h_moat_stop(m);

	/* The lookup runs with search_path = pg_catalog: a query that only
	 * answers when it does. */
	struct h_moat *m2 = h_moat_new(pg);
	if (!h_moat_write_userlist(m2, "\"pgmoat_auth\" \"auth secret\"\n") ||
	    !h_moat_write_std_ini(
	            m2, NULL,
	            "auth_type = scram-sha-256\nauth_user = pgmoat_auth\n"
	            "auth_query = \"SELECT u.usename, u.passwd FROM pgmoat.user_lookup($1) u "
	            "WHERE current_setting('search_path') = 'pg_catalog'\"\n") ||
	    !h_moat_start(m2, NULL))
		h_bail("pgmoat did not start");
	r = login_user(m2, "aq_scram", "scram pw", NULL);
	is_str(r, "ok aq_scram", "the lookup session's search_path is pinned to pg_catalog");
	free(r);
	h_moat_stop(m2);

	/* A lookup that cannot run: 08006 for the client, the reason in the
	 * log, and auth_file users unaffected. */
	struct h_moat *m3 = h_moat_new(pg);
	if (!h_moat_write_userlist(m3, "\"app\" \"app\"\n\"pgmoat_auth\" \"auth secret\"\n") ||
	    !h_moat_write_std_ini(m3, NULL,
	                          "auth_type = md5\nauth_user = pgmoat_auth\n"
	                          "auth_query = SELECT usename, passwd FROM nosuch.lookup($1)\n") ||
	    !h_moat_start(m3, NULL))
		h_bail("pgmoat did not start");
	int fd = wire_connect(m3->port);
	struct wire_login lg;
	memset(&lg, 0, sizeof(lg));
	wire_login(fd, 0, "aq_scram", "app", "scram pw", &lg);
	close(fd);
	is_str(lg.sqlstate, "08006", "a failing auth_query: the login fails with 08006");
	ok(h_moat_log_wait(m3, "auth_query failed", 10), "the log says why");
	r = login_user(m3, "app", "app", NULL);
	is_str(r, "ok app", "auth_file users still log in");
	free(r);
	h_moat_stop(m3);
	return h_done();
}
